//! Real-time scheduling for the event loop: SCHED_FIFO for the calling thread and locked memory.
//!
//! Heartbeats every 10 ms and a 30 ms detection time leave no room for a timer wake-up that
//! waits behind ordinary work for a CPU, nor for a page fault that reads the code of a
//! transition back from disk at the moment of failover. [`enter_realtime`] asks for both:
//!
//! - `SCHED_FIFO` at the given priority for the **calling thread only**, with
//!   `SCHED_RESET_ON_FORK`: the kernel applies that flag to every clone, so threads the event
//!   loop starts later (hooks, health checks) and the commands they run start as ordinary
//!   `SCHED_OTHER` tasks and cannot hog a CPU with real-time priority.
//! - `mlockall(MCL_CURRENT | MCL_FUTURE)`, which is **process-wide**. Not `MCL_ONFAULT`: it
//!   locks pages only once touched, and the pages that matter most (the code and data of a
//!   takeover, which has not run yet) are exactly the untouched ones; without it every mapped
//!   page is faulted in now, while nothing is urgent. The price is resident memory for whole
//!   thread stacks and mapped files.
//!
//! Either can be refused; [`RtOutcome`] says which and why, so the daemon can log one warning
//! line and `controller status` can show it.

use std::{fmt, io};

use serde::{Deserialize, Serialize};

/// A suggested default: above all ordinary work, below threaded interrupt handlers (priority 50)
/// whose network processing delivers the heartbeats to us in the first place.
pub const DEFAULT_PRIORITY: u8 = 10;
/// The highest `SCHED_FIFO` priority Linux accepts.
pub const MAX_PRIORITY: u8 = 99;

/// `CAP_SYS_NICE` and `CAP_IPC_LOCK` as bit numbers in `/proc/*/status` `CapEff`.
const CAP_SYS_NICE: u32 = 23;
const CAP_IPC_LOCK: u32 = 14;

/// What became of one of the two requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Step {
    /// Not asked for (priority 0).
    #[default]
    Off,
    /// In effect.
    Applied,
    /// Refused; the reason names the errno and what would grant it.
    Refused(String),
}

impl Step {
    fn refused(&self) -> Option<&str> {
        match self {
            Step::Refused(r) => Some(r),
            Step::Off | Step::Applied => None,
        }
    }
}

/// The result of [`enter_realtime`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtOutcome {
    /// The priority asked for; 0 means real-time was off.
    pub priority: u8,
    /// `SCHED_FIFO` (with `SCHED_RESET_ON_FORK`) for the calling thread.
    pub fifo: Step,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)` for the process.
    pub memlock: Step,
}

impl RtOutcome {
    /// Real-time switched off by configuration.
    pub fn off() -> RtOutcome {
        RtOutcome::default()
    }

    /// True when real-time was asked for and both parts are in effect.
    pub fn fully_applied(&self) -> bool {
        self.fifo == Step::Applied && self.memlock == Step::Applied
    }

    /// The one warning line to log, or `None` when everything asked for is in effect (or
    /// nothing was asked for).
    pub fn warning(&self) -> Option<String> {
        if self.priority == 0 || self.fully_applied() {
            return None;
        }
        let mut parts = Vec::new();
        match &self.fifo {
            Step::Refused(r) => parts.push(format!("SCHED_FIFO {} refused ({r})", self.priority)),
            Step::Applied => parts.push(format!("SCHED_FIFO {} in effect", self.priority)),
            Step::Off => {}
        }
        match &self.memlock {
            Step::Refused(r) => parts.push(format!("memory not locked ({r})")),
            Step::Applied => parts.push("memory locked".to_string()),
            Step::Off => {}
        }
        let how = if self.fifo == Step::Applied || self.memlock == Step::Applied {
            "only partly"
        } else {
            "not"
        };
        Some(format!(
            "real-time heartbeats {how} in effect, timer wake-ups may be late under CPU load: {}",
            parts.join("; ")
        ))
    }

    /// A short form for `controller status`: `off`, `fifo 10, memory locked`,
    /// `fifo 10, memory not locked: ...`, `refused: ...; memory locked`.
    pub fn summary(&self) -> String {
        if self.priority == 0 {
            return "off".to_string();
        }
        let fifo = match self.fifo.refused() {
            Some(r) => format!("refused: {r}"),
            None => format!("fifo {}", self.priority),
        };
        let sep = if self.fifo.refused().is_some() {
            "; "
        } else {
            ", "
        };
        let mem = match self.memlock.refused() {
            Some(r) => format!("memory not locked: {r}"),
            None => "memory locked".to_string(),
        };
        format!("{fifo}{sep}{mem}")
    }
}

impl fmt::Display for RtOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority` (reset on fork) and locks the
/// process's memory; `priority` 0 does nothing. Never fails: what was refused is in the result.
pub fn enter_realtime(priority: u8) -> RtOutcome {
    if priority == 0 {
        return RtOutcome::off();
    }
    RtOutcome {
        priority,
        fifo: set_fifo(priority),
        memlock: lock_memory(),
    }
}

fn set_fifo(priority: u8) -> Step {
    if priority > MAX_PRIORITY {
        return Step::Refused(format!("priority {priority} is outside 1..={MAX_PRIORITY}"));
    }
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // pid 0 is the calling thread (not the process) for Linux's sched_setscheduler; the raw call
    // also keeps glibc's cached per-thread policy out of it.
    // SAFETY: param is a valid sched_param that lives across the call.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc == 0 {
        return Step::Applied;
    }
    let err = io::Error::last_os_error();
    Step::Refused(fifo_reason(
        &err,
        priority,
        has_capability(CAP_SYS_NICE),
        rlimit(libc::RLIMIT_RTPRIO),
    ))
}

fn lock_memory() -> Step {
    let capable = has_capability(CAP_IPC_LOCK);
    let limit = rlimit(libc::RLIMIT_MEMLOCK);
    if let Some(reason) = future_lock_hazard(capable, limit) {
        return Step::Refused(reason);
    }
    // SAFETY: mlockall takes flags only.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Step::Applied
    } else {
        Step::Refused(memlock_reason(&io::Error::last_os_error(), limit))
    }
}

/// Without `CAP_IPC_LOCK` a finite `RLIMIT_MEMLOCK` also caps every later mapping once
/// `MCL_FUTURE` is set: thread stacks and heap growth past the limit would fail (EAGAIN) long
/// after start. Better not to lock at all than to break later allocations.
fn future_lock_hazard(capable: Option<bool>, limit: Option<Limit>) -> Option<String> {
    match (capable, limit) {
        (Some(true), _) | (_, Some(Limit::Infinite)) => None,
        (_, Some(Limit::Finite(n))) => Some(format!(
            "not tried: RLIMIT_MEMLOCK is {} KiB without CAP_IPC_LOCK, and locking future \
             mappings under a limit makes later allocations fail; needs CAP_IPC_LOCK or \
             LimitMEMLOCK=infinity",
            n / 1024
        )),
        // Unknown limit: let the kernel decide.
        (_, None) => None,
    }
}

/// The reason text for a refused `sched_setscheduler`.
fn fifo_reason(
    err: &io::Error,
    priority: u8,
    cap_sys_nice: Option<bool>,
    rtprio: Option<Limit>,
) -> String {
    let name = errno_name(err);
    match err.raw_os_error() {
        Some(libc::EPERM) if cap_sys_nice == Some(true) => format!(
            "{name}: refused despite CAP_SYS_NICE: blocked by a seccomp filter (systemd \
             RestrictRealtime=yes) or a cgroup without real-time runtime (CONFIG_RT_GROUP_SCHED)"
        ),
        Some(libc::EPERM) => {
            let limit = match rtprio {
                Some(Limit::Finite(n)) => format!(" (it is {n})"),
                Some(Limit::Infinite) => " (it is unlimited)".to_string(),
                None => String::new(),
            };
            format!(
                "{name}: needs CAP_SYS_NICE or RLIMIT_RTPRIO >= {priority}{limit}; systemd units \
                 also need RestrictRealtime=no"
            )
        }
        Some(libc::EINVAL) => format!("{name}: priority {priority} not accepted for SCHED_FIFO"),
        _ => format!("{name}: {err}"),
    }
}

/// The reason text for a refused `mlockall`.
fn memlock_reason(err: &io::Error, limit: Option<Limit>) -> String {
    let name = errno_name(err);
    let limit = match limit {
        Some(Limit::Finite(n)) => format!(" (RLIMIT_MEMLOCK is {} KiB)", n / 1024),
        Some(Limit::Infinite) | None => String::new(),
    };
    match err.raw_os_error() {
        Some(libc::EPERM | libc::ENOMEM) => {
            format!("{name}: needs CAP_IPC_LOCK or LimitMEMLOCK=infinity{limit}")
        }
        Some(libc::EAGAIN) => format!("{name}: some of the process's memory could not be locked"),
        _ => format!("{name}: {err}"),
    }
}

fn errno_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENOMEM) => "ENOMEM".into(),
        Some(libc::EAGAIN) => "EAGAIN".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(n) => format!("errno {n}"),
        None => "error".into(),
    }
}

/// A resource limit's soft value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Finite(u64),
    Infinite,
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<Limit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to write into.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return None;
    }
    Some(if r.rlim_cur == libc::RLIM_INFINITY {
        Limit::Infinite
    } else {
        Limit::Finite(r.rlim_cur)
    })
}

/// Whether the calling thread has capability `bit` in effect (`None`: could not tell).
fn has_capability(bit: u32) -> Option<bool> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    cap_eff(&status).map(|caps| caps & (1 << bit) != 0)
}

/// The `CapEff` mask of a `/proc/*/status` text.
fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use std::{
        process::Command,
        sync::{Mutex, MutexGuard},
        thread,
    };

    use super::*;

    /// Tests that lock memory (process-wide) or read it run one at a time.
    static PROCESS_WIDE: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        PROCESS_WIDE.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn policy() -> libc::c_int {
        // SAFETY: no preconditions; 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    fn vm_locked_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let v = s.lines().find_map(|l| l.strip_prefix("VmLck:")).unwrap();
        v.trim().trim_end_matches("kB").trim().parse().unwrap()
    }

    /// (rt_priority, policy) from a `/proc/*/stat` text: fields 40 and 41.
    fn stat_policy(stat: &str) -> (u32, u32) {
        // Fields after the command name, which may contain spaces, start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        (f[40 - 3].parse().unwrap(), f[41 - 3].parse().unwrap())
    }

    fn eperm() -> io::Error {
        io::Error::from_raw_os_error(libc::EPERM)
    }

    #[test]
    fn priority_zero_does_nothing() {
        let _g = serial();
        let locked = vm_locked_kib();
        let out = thread::spawn(|| {
            let before = policy();
            let out = enter_realtime(0);
            assert_eq!(policy(), before);
            out
        })
        .join()
        .unwrap();
        assert_eq!(out, RtOutcome::off());
        assert_eq!(out.warning(), None);
        assert_eq!(out.summary(), "off");
        assert_eq!(vm_locked_kib(), locked);
    }

    #[test]
    fn out_of_range_priority_is_refused_without_a_system_call() {
        let before = policy();
        assert_eq!(
            set_fifo(100),
            Step::Refused("priority 100 is outside 1..=99".into())
        );
        assert_eq!(policy(), before);
    }

    #[test]
    fn warning_and_summary_texts() {
        let refused = |r: &str| Step::Refused(r.into());
        let all = RtOutcome {
            priority: 10,
            fifo: Step::Applied,
            memlock: Step::Applied,
        };
        assert_eq!(all.warning(), None);
        assert_eq!(all.summary(), "fifo 10, memory locked");
        assert_eq!(all.to_string(), "fifo 10, memory locked");

        let no_fifo = RtOutcome {
            fifo: refused("EPERM: needs CAP_SYS_NICE"),
            ..all.clone()
        };
        assert_eq!(
            no_fifo.warning().unwrap(),
            "real-time heartbeats only partly in effect, timer wake-ups may be late under CPU \
             load: SCHED_FIFO 10 refused (EPERM: needs CAP_SYS_NICE); memory locked"
        );
        assert_eq!(
            no_fifo.summary(),
            "refused: EPERM: needs CAP_SYS_NICE; memory locked"
        );

        let no_lock = RtOutcome {
            memlock: refused("ENOMEM: needs CAP_IPC_LOCK"),
            ..all.clone()
        };
        assert_eq!(
            no_lock.summary(),
            "fifo 10, memory not locked: ENOMEM: needs CAP_IPC_LOCK"
        );
        assert!(
            no_lock.warning().unwrap().ends_with(
                "SCHED_FIFO 10 in effect; memory not locked (ENOMEM: needs CAP_IPC_LOCK)"
            )
        );

        let none = RtOutcome {
            priority: 10,
            fifo: refused("a"),
            memlock: refused("b"),
        };
        let w = none.warning().unwrap();
        assert!(w.starts_with("real-time heartbeats not in effect"), "{w}");
        assert!(!w.contains('\n'));
        assert_eq!(none.summary(), "refused: a; memory not locked: b");
    }

    #[test]
    fn outcome_round_trips_through_json() {
        let o = RtOutcome {
            priority: 10,
            fifo: Step::Refused("EPERM: x".into()),
            memlock: Step::Applied,
        };
        let j = serde_json::to_string(&o).unwrap();
        assert_eq!(
            j,
            r#"{"priority":10,"fifo":{"state":"refused","reason":"EPERM: x"},"memlock":{"state":"applied"}}"#
        );
        assert_eq!(serde_json::from_str::<RtOutcome>(&j).unwrap(), o);
    }

    #[test]
    fn reasons_name_errno_and_remedy() {
        assert_eq!(
            fifo_reason(&eperm(), 10, Some(false), Some(Limit::Finite(0))),
            "EPERM: needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 10 (it is 0); systemd units also \
             need RestrictRealtime=no"
        );
        let with_cap = fifo_reason(&eperm(), 10, Some(true), Some(Limit::Finite(0)));
        assert!(with_cap.contains("RestrictRealtime=yes"), "{with_cap}");
        assert!(with_cap.contains("CONFIG_RT_GROUP_SCHED"), "{with_cap}");
        assert_eq!(
            memlock_reason(
                &io::Error::from_raw_os_error(libc::ENOMEM),
                Some(Limit::Finite(8 << 20))
            ),
            "ENOMEM: needs CAP_IPC_LOCK or LimitMEMLOCK=infinity (RLIMIT_MEMLOCK is 8192 KiB)"
        );
        assert!(
            fifo_reason(&io::Error::from_raw_os_error(libc::ESRCH), 1, None, None)
                .starts_with(&format!("errno {}: ", libc::ESRCH))
        );
    }

    #[test]
    fn future_locking_is_not_tried_under_a_finite_limit_without_the_capability() {
        let finite = Some(Limit::Finite(8 << 20));
        assert_eq!(future_lock_hazard(Some(true), finite), None);
        assert_eq!(future_lock_hazard(Some(false), Some(Limit::Infinite)), None);
        let r = future_lock_hazard(Some(false), finite).unwrap();
        assert!(r.contains("8192 KiB"), "{r}");
        assert!(r.contains("CAP_IPC_LOCK or LimitMEMLOCK=infinity"), "{r}");
        assert!(future_lock_hazard(None, finite).is_some());
    }

    #[test]
    fn cap_eff_parses_proc_status() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(cap_eff(s), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff("Name:\tx\n"), None);
        // The test process's own status parses too.
        assert!(has_capability(CAP_SYS_NICE).is_some());
    }

    /// As root (CI): the thread really runs SCHED_FIFO, memory is locked, and nothing it starts
    /// inherits real-time: not a forked child, not a thread, not a command. Unprivileged: the
    /// refusal names EPERM. Runs on its own thread so the harness's threads stay ordinary.
    #[test]
    fn fifo_applies_to_the_calling_thread_only_and_resets_on_fork() {
        let _g = serial();
        // SAFETY: no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let out = thread::spawn(move || {
            let out = enter_realtime(7);
            if out.fifo != Step::Applied {
                return out;
            }
            assert_eq!(policy(), libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK);
            let mut p = libc::sched_param { sched_priority: 0 };
            // SAFETY: p is a valid sched_param to write into.
            assert_eq!(unsafe { libc::sched_getparam(0, &mut p) }, 0);
            assert_eq!(p.sched_priority, 7);
            let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            assert_eq!(stat_policy(&own), (7, libc::SCHED_FIFO as u32));

            // SAFETY: the child only makes async-signal-safe calls (a system call, _exit).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: as above.
                let p = unsafe { libc::sched_getscheduler(0) };
                let code = if p == libc::SCHED_OTHER { 0 } else { 1 };
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            // SAFETY: pid is our child; status is valid to write into.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status));
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "forked child is not SCHED_OTHER"
            );

            assert_eq!(
                thread::spawn(policy).join().unwrap(),
                libc::SCHED_OTHER,
                "a thread started by the real-time thread"
            );
            // A command, started like the hooks are (std's posix_spawn/fork path).
            let cat = Command::new("cat").arg("/proc/self/stat").output().unwrap();
            assert!(cat.status.success());
            assert_eq!(
                stat_policy(&String::from_utf8(cat.stdout).unwrap()),
                (0, libc::SCHED_OTHER as u32)
            );
            out
        })
        .join()
        .unwrap();
        // The test's own thread never changed.
        assert_eq!(policy(), libc::SCHED_OTHER);
        if root {
            assert_eq!(out.fifo, Step::Applied, "{out:?}");
            assert_eq!(out.memlock, Step::Applied, "{out:?}");
            assert!(vm_locked_kib() > 0);
            assert_eq!(out.warning(), None);
            assert_eq!(out.summary(), "fifo 7, memory locked");
            // Leave the rest of the test binary unlocked.
            // SAFETY: no preconditions.
            assert_eq!(unsafe { libc::munlockall() }, 0);
            assert_eq!(vm_locked_kib(), 0);
        } else if let Step::Refused(r) = &out.fifo {
            assert!(r.starts_with("EPERM: "), "{r}");
            assert!(out.warning().unwrap().contains("SCHED_FIFO 7 refused"));
        }
    }
}
