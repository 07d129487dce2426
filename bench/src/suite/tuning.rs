//! Host tuning for the frame test: the receiver's work steered to the sink CPU (RPS, GRO,
//! threaded NAPI), and undone afterwards.

use std::{
    thread,
    time::{Duration, Instant},
};

use ovl_lab::Lab;

use super::{SuiteError, measure::exec, step_err};

/// Where the tuning's commands run: the lab's hosts (a stand-in in the tests).
pub(super) trait Hosts {
    /// Runs `args` on `host`; an error when it fails.
    fn run(&self, host: &str, args: &[&str]) -> Result<(), SuiteError>;
}

impl Hosts for Lab {
    fn run(&self, host: &str, args: &[&str]) -> Result<(), SuiteError> {
        exec(self, host, args, Duration::from_secs(5)).map(|_| ())
    }
}

/// Steers the receive work of `host`'s underlay (after XDP) to `mask` (RPS; 0 = off).
fn set_rps(lab: &dyn Hosts, host: &str, mask: u32) -> Result<(), SuiteError> {
    let script =
        format!("for f in /sys/class/net/eth0/queues/rx-*/rps_cpus; do echo {mask:x} > $f; done");
    lab.run(host, &["sh", "-c", &script])
}

/// Turns generic receive offload on `host`'s underlay on or off.
fn set_gro(lab: &dyn Hosts, host: &str, on: bool) -> Result<(), SuiteError> {
    let v = if on { "on" } else { "off" };
    lab.run(host, &["ethtool", "-K", "eth0", "gro", v])
}

/// What the frame test changed on a receiver to steer its work. [`Steering::finish`] undoes
/// it and says whether that worked; on any other way out (an early return, a panic) it is
/// undone when dropped, a failure only logged.
pub(super) struct Steering<'l> {
    lab: &'l dyn Hosts,
    host: &'static str,
    gro: bool,
    rps: bool,
    napi: Option<NapiThread<'l>>,
}

impl<'l> Steering<'l> {
    /// Nothing changed yet on `host`.
    pub(super) fn new(lab: &'l dyn Hosts, host: &'static str) -> Self {
        Steering {
            lab,
            host,
            gro: false,
            rps: false,
            napi: None,
        }
    }

    /// GRO on the underlay (off again when undone).
    pub(super) fn gro_on(&mut self) -> Result<(), SuiteError> {
        set_gro(self.lab, self.host, true)?;
        self.gro = true;
        Ok(())
    }

    /// The underlay's receive work to the CPUs of `mask` (RPS; off again when undone).
    pub(super) fn rps(&mut self, mask: u32) -> Result<(), SuiteError> {
        set_rps(self.lab, self.host, mask)?;
        self.rps = true;
        Ok(())
    }

    /// The underlay's NAPI threaded, its thread pinned to `cpu` (not threaded when undone).
    pub(super) fn napi_thread(&mut self, cpu: u32) -> Result<(), SuiteError> {
        self.napi = Some(NapiThread::steer(self.lab, self.host, cpu)?);
        Ok(())
    }

    /// Undoes everything; the first error, if any.
    pub(super) fn finish(mut self) -> Result<(), SuiteError> {
        self.undo()
    }

    /// Undoes everything not undone yet, in reverse; the first error, if any.
    fn undo(&mut self) -> Result<(), SuiteError> {
        let napi = self.napi.take().map_or(Ok(()), NapiThread::finish);
        let rps = if std::mem::take(&mut self.rps) {
            set_rps(self.lab, self.host, 0)
        } else {
            Ok(())
        };
        let gro = if std::mem::take(&mut self.gro) {
            set_gro(self.lab, self.host, false)
        } else {
            Ok(())
        };
        napi.and(rps).and(gro)
    }
}

impl Drop for Steering<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            tracing::warn!(host = self.host, "undoing the frame test's steering: {e}");
        }
    }
}

/// A host's `eth0` switched to threaded NAPI, its poll thread pinned to one CPU; switched
/// back by [`NapiThread::finish`], or when dropped.
struct NapiThread<'l> {
    lab: &'l dyn Hosts,
    host: &'static str,
    /// Whether `eth0` is (still) threaded.
    threaded: bool,
}

impl<'l> NapiThread<'l> {
    fn steer(lab: &'l dyn Hosts, host: &'static str, cpu: u32) -> Result<Self, SuiteError> {
        let before = napi_threads()?;
        write_in(lab, host, "/sys/class/net/eth0/threaded", "1")?;
        let steered = NapiThread {
            lab,
            host,
            threaded: true,
        };
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
                steered.finish()?;
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

    /// Switches `eth0` back to NAPI in softirq; the error, if that failed.
    fn finish(mut self) -> Result<(), SuiteError> {
        self.restore()
    }

    fn restore(&mut self) -> Result<(), SuiteError> {
        if !std::mem::take(&mut self.threaded) {
            return Ok(());
        }
        write_in(self.lab, self.host, "/sys/class/net/eth0/threaded", "0")
    }
}

impl Drop for NapiThread<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            tracing::warn!(host = self.host, "switching threaded NAPI off again: {e}");
        }
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

fn write_in(lab: &dyn Hosts, host: &str, path: &str, value: &str) -> Result<(), SuiteError> {
    lab.run(host, &["sh", "-c", &format!("echo {value} > {path}")])
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records the commands; fails those containing `fail`.
    struct Recorder {
        ran: RefCell<Vec<String>>,
        fail: &'static str,
    }

    impl Recorder {
        fn failing(fail: &'static str) -> Self {
            Recorder {
                ran: RefCell::default(),
                fail,
            }
        }

        fn ran(&self) -> Vec<String> {
            self.ran.borrow().clone()
        }
    }

    impl Hosts for Recorder {
        fn run(&self, host: &str, args: &[&str]) -> Result<(), SuiteError> {
            let line = format!("{host}: {}", args.join(" "));
            let failed = !self.fail.is_empty() && line.contains(self.fail);
            self.ran.borrow_mut().push(line);
            if failed {
                return Err(step_err("command", "failed"));
            }
            Ok(())
        }
    }

    const GRO_ON: &str = "v2: ethtool -K eth0 gro on";
    const GRO_OFF: &str = "v2: ethtool -K eth0 gro off";
    const RPS_0: &str =
        "v2: sh -c for f in /sys/class/net/eth0/queues/rx-*/rps_cpus; do echo 0 > $f; done";
    const RPS_1: &str =
        "v2: sh -c for f in /sys/class/net/eth0/queues/rx-*/rps_cpus; do echo 1 > $f; done";
    /// GRO and RPS set, then undone in reverse.
    const SET_AND_UNDONE: [&str; 4] = [GRO_ON, RPS_1, RPS_0, GRO_OFF];

    #[test]
    fn an_early_return_undoes_the_steering() {
        let hosts = Recorder::failing("");
        let run = || -> Result<(), SuiteError> {
            let mut steering = Steering::new(&hosts, "v2");
            steering.gro_on()?;
            steering.rps(1)?;
            Err(step_err("the measurement", "failed"))
        };
        assert!(run().is_err());
        assert_eq!(hosts.ran(), SET_AND_UNDONE);
    }

    #[test]
    fn only_what_was_changed_is_undone() {
        // RPS failed to set: only GRO is turned off again.
        let hosts = Recorder::failing("echo 1");
        let mut steering = Steering::new(&hosts, "v2");
        steering.gro_on().unwrap();
        assert!(steering.rps(1).is_err());
        drop(steering);
        assert_eq!(hosts.ran(), [GRO_ON, RPS_1, GRO_OFF]);
    }

    #[test]
    fn finish_reports_a_failed_undo_and_the_drop_does_not_repeat_it() {
        let hosts = Recorder::failing("echo 0");
        let mut steering = Steering::new(&hosts, "v2");
        steering.gro_on().unwrap();
        steering.rps(1).unwrap();
        // The first error; GRO is turned off all the same.
        assert!(steering.finish().is_err());
        assert_eq!(hosts.ran(), SET_AND_UNDONE);
    }

    #[test]
    fn a_napi_thread_is_switched_back_once_finished_or_dropped() {
        let hosts = Recorder::failing("");
        let napi = || NapiThread {
            lab: &hosts,
            host: "v2",
            threaded: true,
        };
        drop(napi());
        napi().finish().unwrap();
        let off = "v2: sh -c echo 0 > /sys/class/net/eth0/threaded";
        assert_eq!(hosts.ran(), [off, off]);
    }
}
