//! External commands, each with a deadline.
//!
//! Every command runs in its own process group, so a timeout kills it together with anything
//! it started, and a Ctrl-C meant for the caller's terminal does not reach it.

use std::{
    io::Read,
    os::unix::process::CommandExt,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::LabError;

/// Deadline of the short configuration commands (`ip`, `bridge`).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// `cmd` as a shell-like line for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with stdin closed and its output captured; kills its process group after
/// `timeout`. A non-zero exit is not an error here: see [`run_ok`].
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    let line = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(format!("start `{line}`"), e))?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = Duration::from_millis(1);
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id());
                let status = child
                    .wait()
                    .map_err(|e| LabError::io(format!("wait for `{line}`"), e))?;
                break (status, true);
            }
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(LabError::io(format!("wait for `{line}`"), e)),
        }
    };
    // A background grandchild may keep a pipe open; do not wait for it beyond a grace period.
    let grace = Instant::now() + Duration::from_millis(500);
    let stdout = out.map(|h| collect(h, grace)).unwrap_or_default();
    let stderr = err.map(|h| collect(h, grace)).unwrap_or_default();
    if timed_out {
        let mut output = String::from_utf8_lossy(&stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&stderr));
        return Err(LabError::Timeout {
            cmd: line,
            after: timeout,
            output: tail(output.trim(), 20),
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run_timeout`], and a non-zero exit becomes [`LabError::Command`] with its stderr.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    let out = run_timeout(cmd, timeout)?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(LabError::Command {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(out)
}

/// `ip ARGS` in the caller's namespace; stdout on success.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    let out = run_ok(Command::new("ip").args(args), CMD_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ARGS`; stdout on success.
pub fn ip_ns(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let out = run_ok(Command::new("ip").args(["-n", ns]).args(args), CMD_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `bridge -n NS ARGS`; stdout on success.
pub fn bridge_ns(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let out = run_ok(
        Command::new("bridge").args(["-n", ns]).args(args),
        CMD_TIMEOUT,
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGKILL to the process group led by `pid`.
pub(crate) fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names the group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture; what was read so far is still useful.
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn collect(h: thread::JoinHandle<Vec<u8>>, until: Instant) -> Vec<u8> {
    while !h.is_finished() && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        b"[output still held open by a background process]".to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let e = run_ok(
            Command::new("sh").args(["-c", "echo nope >&2; exit 1"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn kills_at_the_deadline_with_its_children() {
        let started = Instant::now();
        let e = run_timeout(
            Command::new("sh").args(["-c", "echo started; sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match e {
            LabError::Timeout { output, .. } => assert!(output.contains("started"), "{output}"),
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let e = run_timeout(
            &mut Command::new("/nonexistent/ovl-lab-test"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, LabError::Io { .. }), "{e}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
