//! Taking labs down: [`Lab::down`], orphans of dead creators, and a dropped [`Lab`]; or
//! keeping one up ([`Lab::keep`]).

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use super::{
    Lab, is_root,
    process::{Signal, TERM_GRACE, send_signal},
    state_dir, write_file,
};
use crate::{
    LabError,
    netns::{self, STATE_ROOT},
};

/// The content of the `owner` file of a lab that outlives its creator (`cargo xtask lab up`).
const KEPT: &str = "kept";

impl Lab {
    /// Leaves the lab running after this value is gone (`cargo xtask lab up`): processes keep
    /// running, and only [`Lab::down`] removes it.
    pub fn keep(mut self) -> Result<(), LabError> {
        write_file(&self.dir.join("owner"), KEPT)?;
        self.kept = true;
        Ok(())
    }

    /// Takes the lab with `prefix` down: stops every process in its namespaces (SIGTERM,
    /// then SIGKILL), deletes the namespaces and the state directory. Idempotent; removes
    /// only `{prefix}{name}` namespaces whose `name` has no `-`, so `lab-` never touches
    /// `lab-x-...`.
    pub fn down(prefix: &str) -> Result<(), LabError> {
        crate::spec::check_prefix(prefix)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let ours = |all: Vec<String>| -> Vec<String> {
            all.into_iter().filter(|n| belongs_to(n, prefix)).collect()
        };
        let namespaces = ours(netns::list()?);
        stop_all(&namespaces)?;
        for ns in &namespaces {
            netns::delete(ns)?;
        }
        let dir = state_dir(prefix);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("remove {}", dir.display()), e)),
        }
        let left = ours(netns::list()?);
        if !left.is_empty() {
            return Err(LabError::Command {
                cmd: format!("down {prefix}"),
                status: "incomplete".into(),
                stderr: format!("namespaces still there: {}", left.join(" ")),
            });
        }
        Ok(())
    }

    /// Takes down every lab whose creating process has died without doing so (a test that
    /// was killed), leaving kept labs and those of live processes alone. Returns their
    /// prefixes.
    pub fn down_orphans() -> Result<Vec<String>, LabError> {
        let entries = match fs::read_dir(STATE_ROOT) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LabError::io(format!("list {STATE_ROOT}"), e)),
        };
        let mut done = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(prefix) = e.file_name().into_string() else {
                continue;
            };
            if crate::spec::check_prefix(&prefix).is_err() || !e.path().is_dir() {
                continue;
            }
            let owner = fs::read_to_string(e.path().join("owner")).unwrap_or_default();
            let pid = owner
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                Self::down(&prefix)?;
                done.push(prefix);
            }
        }
        Ok(done)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Our own children first (graceful, then not), so they are reaped, not zombies.
        for p in self.dataplanes.values_mut().chain(self.spawned.iter_mut()) {
            p.signal(Signal::Term);
            p.signal(Signal::Cont);
        }
        let deadline = Instant::now() + TERM_GRACE;
        for p in self.dataplanes.values_mut().chain(self.spawned.iter_mut()) {
            if p.wait_for(deadline.saturating_duration_since(Instant::now()))
                .is_none()
            {
                p.signal(Signal::Kill);
                p.wait_for(Duration::from_secs(5));
            }
        }
        // A later `up` with the same prefix owns the namespaces now; leave its lab alone.
        let owner = fs::read_to_string(self.dir.join("owner")).unwrap_or_default();
        if owner == self.owner
            && let Err(e) = Self::down(&self.spec.prefix)
        {
            tracing::warn!(prefix = %self.spec.prefix, "taking the lab down: {e}");
        }
    }
}

/// Whether namespace `name` is `{prefix}{host}` for some valid host name.
pub(crate) fn belongs_to(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_lowercase())
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// SIGTERM (once, so a graceful shutdown is not cut short by a second one) to every process
/// in `namespaces`, SIGKILL to whatever is left after a grace period; bounded.
fn stop_all(namespaces: &[String]) -> Result<(), LabError> {
    let list = || -> Result<Vec<u32>, LabError> {
        let mut all = Vec::new();
        for ns in namespaces {
            all.extend(netns::pids(ns)?);
        }
        Ok(all)
    };
    let mut pids = list()?;
    if pids.is_empty() {
        return Ok(());
    }
    for &pid in &pids {
        send_signal(pid, Signal::Term);
        send_signal(pid, Signal::Cont);
    }
    let started = Instant::now();
    while started.elapsed() < TERM_GRACE {
        thread::sleep(Duration::from_millis(25));
        pids = list()?;
        if pids.is_empty() {
            return Ok(());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for &pid in &pids {
            send_signal(pid, Signal::Kill);
        }
        thread::sleep(Duration::from_millis(25));
        pids = list()?;
        if pids.is_empty() {
            return Ok(());
        }
    }
    Err(LabError::Command {
        cmd: "stop the lab's processes".into(),
        status: "timeout".into(),
        stderr: format!("still running: {pids:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_capture_longer_ones() {
        assert!(belongs_to("lab-client", "lab-"));
        assert!(belongs_to("lab-fabric", "lab-"));
        assert!(!belongs_to("lab-x-client", "lab-"));
        assert!(!belongs_to("t12-3-pri", "t12-"));
        assert!(belongs_to("t12-3-pri", "t12-3-"));
        assert!(!belongs_to("t12-30-pri", "t12-3-"));
        assert!(!belongs_to("lab-", "lab-"));
        assert!(!belongs_to("other", "lab-"));
    }
}
