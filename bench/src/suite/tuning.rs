//! Host tuning for the frame test: the receiver's work steered to the sink CPU (RPS, GRO,
//! threaded NAPI), and undone afterwards.

use std::{
    thread,
    time::{Duration, Instant},
};

use ovl_lab::Lab;

use super::{SuiteError, measure::exec, step_err};

/// Steers the receive work of `host`'s underlay (after XDP) to `mask` (RPS; 0 = off).
pub(super) fn set_rps(lab: &Lab, host: &str, mask: u32) -> Result<(), SuiteError> {
    let script =
        format!("for f in /sys/class/net/eth0/queues/rx-*/rps_cpus; do echo {mask:x} > $f; done");
    exec(lab, host, &["sh", "-c", &script], Duration::from_secs(5)).map(|_| ())
}

/// Turns generic receive offload on `host`'s underlay on or off.
pub(super) fn set_gro(lab: &Lab, host: &str, on: bool) -> Result<(), SuiteError> {
    let v = if on { "on" } else { "off" };
    exec(
        lab,
        host,
        &["ethtool", "-K", "eth0", "gro", v],
        Duration::from_secs(5),
    )
    .map(|_| ())
}

/// What the frame test changed on the receiver to steer its work, to undo afterwards.
pub(super) struct Steering {
    pub(super) host: &'static str,
    pub(super) gro: bool,
    pub(super) rps: bool,
    pub(super) napi: Option<NapiThread>,
}

impl Steering {
    /// Undoes everything, in reverse; the first error, if any.
    pub(super) fn undo(self, lab: &Lab) -> Result<(), SuiteError> {
        let napi = self.napi.map(|n| n.restore(lab)).transpose().map(|_| ());
        let rps = if self.rps {
            set_rps(lab, self.host, 0)
        } else {
            Ok(())
        };
        let gro = if self.gro {
            set_gro(lab, self.host, false)
        } else {
            Ok(())
        };
        napi.and(rps).and(gro)
    }
}

/// A host's `eth0` switched to threaded NAPI, its poll thread pinned to one CPU.
pub(super) struct NapiThread {
    host: &'static str,
}

impl NapiThread {
    pub(super) fn steer(lab: &Lab, host: &'static str, cpu: u32) -> Result<NapiThread, SuiteError> {
        let before = napi_threads()?;
        write_in(lab, host, "/sys/class/net/eth0/threaded", "1")?;
        let steered = NapiThread { host };
        // The kernel names the thread napi/eth0-<id>; every host's underlay is eth0, so
        // ours is the one that was not there before.
        let deadline = Instant::now() + Duration::from_secs(2);
        let new = loop {
            let now = napi_threads()?;
            let new: Vec<u32> = now.into_iter().filter(|p| !before.contains(p)).collect();
            if !new.is_empty() {
                break new;
            }
            if Instant::now() > deadline {
                steered.restore(lab)?;
                return Err(step_err(
                    "threaded NAPI",
                    format!("no napi/eth0 thread on {host}"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        };
        for pid in new {
            let mut set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
            // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it and
            // sched_setaffinity reads it; a thread that ended meanwhile gives ESRCH, ignored.
            unsafe {
                let set = set.assume_init_mut();
                libc::CPU_SET(cpu as usize, set);
                libc::sched_setaffinity(
                    pid as libc::pid_t,
                    std::mem::size_of::<libc::cpu_set_t>(),
                    set,
                );
            }
        }
        Ok(steered)
    }

    fn restore(&self, lab: &Lab) -> Result<(), SuiteError> {
        write_in(lab, self.host, "/sys/class/net/eth0/threaded", "0")
    }
}

/// Pids of the kernel's `napi/eth0-*` threads.
fn napi_threads() -> Result<Vec<u32>, SuiteError> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir("/proc").map_err(|e| step_err("read /proc", e))?;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
            && comm.starts_with("napi/eth0-")
        {
            out.push(pid);
        }
    }
    Ok(out)
}

fn write_in(lab: &Lab, host: &str, path: &str, value: &str) -> Result<(), SuiteError> {
    let script = format!("echo {value} > {path}");
    exec(lab, host, &["sh", "-c", &script], Duration::from_secs(5)).map(|_| ())
}
