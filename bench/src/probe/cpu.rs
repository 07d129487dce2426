//! CPU time from /proc: the whole machine (`/proc/stat`) and one process (`/proc/PID/stat`).
//!
//! Take a reading before and after a measurement and subtract. The kernel counts in USER_HZ
//! ticks (`sysconf(_SC_CLK_TCK)`, 100 on Linux), so a delta is only as fine as 10 ms: measure
//! over seconds, not milliseconds.

use super::ProbeError;

const STAT: &str = "/proc/stat";
/// Sanity bound on CPU numbers, so a corrupt line cannot make a huge vector.
const MAX_CPUS: usize = 1 << 16;

/// The aggregate `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemCpu {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    /// Already included in `user` by the kernel.
    pub guest: u64,
    /// Already included in `nice` by the kernel.
    pub guest_nice: u64,
    /// Ticks per second.
    pub hz: u64,
}

/// CPU seconds spent between two [`SystemCpu`] readings, summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuDelta {
    /// Everything but idle and iowait.
    pub busy_s: f64,
    /// Busy plus idle plus iowait (about wall time × CPUs).
    pub total_s: f64,
    /// User mode, niced included (and guests, which the kernel counts there).
    pub user_s: f64,
    pub system_s: f64,
    pub softirq_s: f64,
    pub irq_s: f64,
    /// Taken by the hypervisor while this VM wanted to run.
    pub steal_s: f64,
}

impl SystemCpu {
    /// Reads `/proc/stat`.
    pub fn read() -> Result<Self, ProbeError> {
        let text = std::fs::read_to_string("/proc/stat")
            .map_err(|e| ProbeError::io("reading /proc/stat", e))?;
        Self::parse(&text, clock_ticks()?)
    }

    /// Reads the per-CPU lines of `/proc/stat`, indexed by CPU number (see
    /// [`SystemCpu::parse_per_cpu`]).
    pub fn read_per_cpu() -> Result<Vec<Self>, ProbeError> {
        let text = std::fs::read_to_string("/proc/stat")
            .map_err(|e| ProbeError::io("reading /proc/stat", e))?;
        Self::parse_per_cpu(&text, clock_ticks()?)
    }

    /// Parses the text of `/proc/stat`; `hz` is the tick rate.
    pub fn parse(text: &str, hz: u64) -> Result<Self, ProbeError> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some("cpu"))
            .ok_or_else(|| ProbeError::parse(STAT, "no aggregate \"cpu\" line"))?;
        Self::parse_line(line, hz)
    }

    /// Parses the `cpuN` lines of `/proc/stat`. Element `N` is CPU `N`; offline CPUs have no
    /// line and stay all zero (so their deltas are zero too).
    pub fn parse_per_cpu(text: &str, hz: u64) -> Result<Vec<Self>, ProbeError> {
        let mut cpus: Vec<Self> = Vec::new();
        for line in text.lines() {
            let Some(n) = line
                .split_whitespace()
                .next()
                .and_then(|name| name.strip_prefix("cpu"))
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            let n: usize = n
                .parse()
                .ok()
                .filter(|&n| n < MAX_CPUS)
                .ok_or_else(|| ProbeError::parse(STAT, format!("bad CPU line {line:?}")))?;
            if cpus.len() <= n {
                cpus.resize(
                    n + 1,
                    Self {
                        hz,
                        ..Self::default()
                    },
                );
            }
            if let Some(slot) = cpus.get_mut(n) {
                *slot = Self::parse_line(line, hz)?;
            }
        }
        if cpus.is_empty() {
            return Err(ProbeError::parse(STAT, "no per-CPU lines"));
        }
        Ok(cpus)
    }

    /// One `cpu` or `cpuN` line.
    fn parse_line(line: &str, hz: u64) -> Result<Self, ProbeError> {
        const WHAT: &str = STAT;
        if hz == 0 {
            return Err(ProbeError::parse(WHAT, "tick rate 0"));
        }
        let fields = line
            .split_whitespace()
            .skip(1)
            .map(|f| {
                f.parse::<u64>()
                    .map_err(|_| ProbeError::parse(WHAT, format!("bad number {f:?} in {line:?}")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        // user nice system idle exist since forever; later fields came with later kernels.
        if fields.len() < 4 {
            return Err(ProbeError::parse(
                WHAT,
                format!("only {} fields in {line:?}", fields.len()),
            ));
        }
        let f = |i: usize| fields.get(i).copied().unwrap_or(0);
        Ok(Self {
            user: f(0),
            nice: f(1),
            system: f(2),
            idle: f(3),
            iowait: f(4),
            irq: f(5),
            softirq: f(6),
            steal: f(7),
            guest: f(8),
            guest_nice: f(9),
            hz,
        })
    }

    /// CPU time since `earlier`. Counters that went backwards (iowait can) count as zero.
    pub fn busy_seconds_since(&self, earlier: &SystemCpu) -> CpuDelta {
        let hz = self.hz.max(1) as f64;
        let d = |now: u64, then: u64| now.saturating_sub(then) as f64 / hz;
        let user_s = d(self.user, earlier.user) + d(self.nice, earlier.nice);
        let system_s = d(self.system, earlier.system);
        let irq_s = d(self.irq, earlier.irq);
        let softirq_s = d(self.softirq, earlier.softirq);
        let steal_s = d(self.steal, earlier.steal);
        // guest and guest_nice are inside user and nice already: not added again.
        let busy_s = user_s + system_s + irq_s + softirq_s + steal_s;
        let total_s = busy_s + d(self.idle, earlier.idle) + d(self.iowait, earlier.iowait);
        CpuDelta {
            busy_s,
            total_s,
            user_s,
            system_s,
            softirq_s,
            irq_s,
            steal_s,
        }
    }
}

/// User and system time of one process (all its threads), in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCpu {
    pub pid: u32,
    pub utime: u64,
    pub stime: u64,
    /// Ticks per second.
    pub hz: u64,
}

impl ProcessCpu {
    /// Reads `/proc/PID/stat`.
    pub fn read(pid: u32) -> Result<Self, ProbeError> {
        let path = format!("/proc/{pid}/stat");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ProbeError::io(format!("reading {path}"), e))?;
        Self::parse(pid, &text, clock_ticks()?)
    }

    /// Parses the text of `/proc/PID/stat`; `hz` is the tick rate.
    pub fn parse(pid: u32, text: &str, hz: u64) -> Result<Self, ProbeError> {
        const WHAT: &str = "/proc/PID/stat";
        if hz == 0 {
            return Err(ProbeError::parse(WHAT, "tick rate 0"));
        }
        // Field 2 is "(comm)", and comm may contain spaces and parentheses: the fields that
        // follow start after the last ')'.
        let close = text
            .rfind(')')
            .ok_or_else(|| ProbeError::parse(WHAT, "no ')' closing the command name"))?;
        let rest = text.get(close + 1..).unwrap_or_default();
        // Field 3 (state) is the first after ')', so field N is at index N - 3.
        let field = |n: usize| -> Result<u64, ProbeError> {
            let f = rest
                .split_whitespace()
                .nth(n - 3)
                .ok_or_else(|| ProbeError::parse(WHAT, format!("field {n} missing")))?;
            f.parse()
                .map_err(|_| ProbeError::parse(WHAT, format!("field {n} is {f:?}, not a number")))
        };
        Ok(Self {
            pid,
            utime: field(14)?,
            stime: field(15)?,
            hz,
        })
    }

    /// CPU seconds (user + system) used since `earlier`.
    pub fn seconds_since(&self, earlier: &ProcessCpu) -> f64 {
        let now = self.utime.saturating_add(self.stime);
        let then = earlier.utime.saturating_add(earlier.stime);
        now.saturating_sub(then) as f64 / self.hz.max(1) as f64
    }
}

/// USER_HZ, the unit of /proc's CPU times.
pub fn clock_ticks() -> Result<u64, ProbeError> {
    // SAFETY: sysconf only reads a configuration value; no pointers are involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .ok_or_else(|| ProbeError::parse("sysconf(_SC_CLK_TCK)", format!("returned {hz}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = "\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335943 28543 373596 13457700 5230 0 3142 0 21330 0
intr 199292311 57 0 0 0 0 0 0
ctxt 435342543
btime 1700000000
";
    const STAT_B: &str = "\
cpu  10132253 290716 3084769 46828683 16673 5 25225 40 175700 0
cpu0 1393330 32976 572081 13343392 6125 5 17890 20 23969 0
";

    #[test]
    fn parses_the_aggregate_line() {
        let a = SystemCpu::parse(STAT_A, 100).unwrap();
        assert_eq!(
            a,
            SystemCpu {
                user: 10132153,
                nice: 290696,
                system: 3084719,
                idle: 46828483,
                iowait: 16683,
                irq: 0,
                softirq: 25195,
                steal: 0,
                guest: 175628,
                guest_nice: 0,
                hz: 100,
            }
        );
    }

    #[test]
    fn delta_counts_busy_without_double_counting_guest() {
        let a = SystemCpu::parse(STAT_A, 100).unwrap();
        let b = SystemCpu::parse(STAT_B, 100).unwrap();
        let d = b.busy_seconds_since(&a);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
        // user +100, nice +20 -> 1.2 s; guest +72 is inside user and not added.
        assert!(close(d.user_s, 1.2), "{d:?}");
        assert!(close(d.system_s, 0.5), "{d:?}");
        assert!(close(d.irq_s, 0.05), "{d:?}");
        assert!(close(d.softirq_s, 0.3), "{d:?}");
        assert!(close(d.steal_s, 0.4), "{d:?}");
        assert!(close(d.busy_s, 1.2 + 0.5 + 0.05 + 0.3 + 0.4), "{d:?}");
        // idle +200; iowait went backwards (-10) and counts as 0.
        assert!(close(d.total_s, d.busy_s + 2.0), "{d:?}");
    }

    #[test]
    fn per_cpu_lines_by_number() {
        let cpus = SystemCpu::parse_per_cpu(STAT_A, 100).unwrap();
        assert_eq!(cpus.len(), 2);
        assert_eq!((cpus[0].user, cpus[0].softirq), (1393280, 17875));
        assert_eq!((cpus[1].user, cpus[1].softirq), (1335943, 3142));
        // CPU 1 offline: no line, a zero entry keeps the numbering.
        let gap = "cpu 3 3 3 3\ncpu0 1 1 1 1\ncpu2 2 2 2 2\n";
        let cpus = SystemCpu::parse_per_cpu(gap, 100).unwrap();
        assert_eq!(cpus.len(), 3);
        assert_eq!((cpus[0].idle, cpus[1].idle, cpus[2].idle), (1, 0, 2));
        assert_eq!(cpus[1].busy_seconds_since(&cpus[1]).total_s, 0.0);
        for bad in [
            "",
            "cpu 1 2 3 4\n",
            "cpux 1 2 3 4\n",
            "cpu99999999 1 2 3 4\n",
            "cpu0 1 2\n",
        ] {
            assert!(SystemCpu::parse_per_cpu(bad, 100).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn old_kernels_with_four_fields() {
        let s = SystemCpu::parse("cpu 1 2 3 4\n", 100).unwrap();
        assert_eq!((s.user, s.idle, s.iowait, s.steal), (1, 4, 0, 0));
    }

    #[test]
    fn malformed_proc_stat_is_an_error() {
        for bad in [
            "",
            "intr 1 2 3\n",
            "cpu0 1 2 3 4\n",
            "cpu 1 2 3\n",
            "cpu 1 2 x 4 5\n",
            "cpu -1 2 3 4\n",
            "cpu 99999999999999999999999 2 3 4\n",
        ] {
            assert!(
                matches!(SystemCpu::parse(bad, 100), Err(ProbeError::Parse { .. })),
                "{bad:?}"
            );
        }
        assert!(SystemCpu::parse(STAT_A, 0).is_err());
    }

    #[test]
    fn parses_process_stat_with_a_nasty_comm() {
        // comm with spaces and parentheses; utime 1234, stime 567.
        let text = "4242 (my (evil) proc) ) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    1234 567 0 0 20 0 3 0 12345 123456789 2000 18446744073709551615\n";
        let p = ProcessCpu::parse(4242, text, 100).unwrap();
        assert_eq!((p.pid, p.utime, p.stime), (4242, 1234, 567));
        let later = ProcessCpu {
            utime: 1334,
            stime: 617,
            ..p
        };
        assert!((later.seconds_since(&p) - 1.5).abs() < 1e-9);
        assert_eq!(p.seconds_since(&later), 0.0);
    }

    #[test]
    fn malformed_process_stat_is_an_error() {
        for bad in [
            "",
            "4242 no parenthesis S 1 2 3 4 5 6 7 8 9 10 11 12 13",
            "4242 (short) S 1 2 3",
            "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 12x 567 0",
            "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 -5 567 0",
            "4242 (x)",
        ] {
            assert!(
                matches!(
                    ProcessCpu::parse(1, bad, 100),
                    Err(ProbeError::Parse { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn live_readings_move_forward() {
        let hz = clock_ticks().unwrap();
        assert!(hz > 0);
        let sys0 = SystemCpu::read().unwrap();
        let me0 = ProcessCpu::read(std::process::id()).unwrap();
        // Burn ~60 ms of CPU so that at least a few ticks pass.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let sys1 = SystemCpu::read().unwrap();
        let per_cpu = SystemCpu::read_per_cpu().unwrap();
        assert!(!per_cpu.is_empty());
        let me1 = ProcessCpu::read(std::process::id()).unwrap();
        let d = sys1.busy_seconds_since(&sys0);
        assert!(d.total_s > 0.0 && d.busy_s <= d.total_s, "{d:?}");
        assert!(d.busy_s > 0.0, "{d:?}");
        let mine = me1.seconds_since(&me0);
        assert!((0.0..1.0).contains(&mine), "{mine}");
        assert!(ProcessCpu::read(u32::MAX).is_err());
    }
}
