//! `controller wakeups`: how late the event loop's timer wake-ups are under CPU load, with and
//! without real-time scheduling.
//!
//! A thread sleeps in `ppoll(2)` until a deadline every interval, as the event loop does
//! between heartbeats, and records how late each wake-up is, while busy-spinning threads
//! (`SCHED_OTHER`, nice 0) keep every CPU busy. The same run is made once as an ordinary
//! thread and once after [`rt::enter_realtime`], and the results are printed as a table.
//!
//! The load threads live inside a scope and are stopped and joined however a row ends (error,
//! panic); an interrupted process takes them with it.

use std::{
    hint::black_box,
    io,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::rt::{self, Step};

/// Lateness thresholds counted separately: one heartbeat interval and the default detection
/// time (10 ms x 3).
const OVER: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(30)];
/// Progress on stderr this often, for rows longer than this.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The load runs this long before measuring starts, so every spinner is on a CPU.
const SETTLE: Duration = Duration::from_millis(200);

/// The command line of `controller wakeups`.
#[derive(Clone, Debug, clap::Args)]
pub struct WakeupsArgs {
    /// Seconds to measure each row.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// The timer interval in milliseconds (the heartbeat interval).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub interval_ms: u64,
    /// Busy-spinning load threads (SCHED_OTHER, nice 0) [default: one per usable CPU].
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub load: Option<u16>,
    /// SCHED_FIFO priority of the real-time row.
    #[arg(long, default_value_t = rt::DEFAULT_PRIORITY,
          value_parser = clap::value_parser!(u8).range(1..=99))]
    pub realtime_priority: u8,
    /// Also measure an ordinary thread at this nice value (e.g. -10).
    #[arg(long, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub with_nice: Option<i32>,
}

/// How the measuring thread is scheduled in one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER` at this nice value.
    Other {
        /// The nice value.
        nice: i32,
    },
    /// [`rt::enter_realtime`] at this priority.
    Fifo {
        /// The `SCHED_FIFO` priority.
        priority: u8,
    },
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Measuring time per row.
    pub duration: Duration,
    /// Timer interval.
    pub interval: Duration,
    /// Load threads.
    pub load: usize,
    /// One row each, in this order.
    pub rows: Vec<Policy>,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Plan {
    /// The plan for the command line: ordinary (nice 0), the optional nice row, real-time last
    /// (memory locking is process-wide, so nothing is measured after it).
    pub fn from_args(a: &WakeupsArgs) -> Plan {
        let mut rows = vec![Policy::Other { nice: 0 }];
        rows.extend(a.with_nice.map(|nice| Policy::Other { nice }));
        rows.push(Policy::Fifo {
            priority: a.realtime_priority,
        });
        Plan {
            duration: Duration::from_secs(a.seconds),
            interval: Duration::from_millis(a.interval_ms),
            load: a.load.map_or_else(usable_cpus, usize::from),
            rows,
            progress: true,
        }
    }
}

/// Lateness of the wake-ups of one row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Wake-ups measured.
    pub wakeups: u64,
    /// Quantiles and maximum, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// The latest wake-up (exact).
    pub max_ns: u64,
    /// Wake-ups later than 10 ms and later than 30 ms ([`OVER`]).
    pub over: [u64; 2],
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// How the measuring thread ran, as applied (e.g. `SCHED_FIFO 10, memory locked`).
    pub label: String,
    /// Why the row's policy could not be applied; then nothing was measured.
    pub refused: Option<String>,
    /// The figures, when measured.
    pub lateness: Option<Lateness>,
    /// CPUs the load threads used on average while the row ran.
    pub load_cpus: f64,
    /// Their nice value, when all got the same one.
    pub load_nice: Option<i32>,
    /// CPUs busy on the whole machine on average (all non-idle time but steal), when
    /// /proc/stat tells: more than `load_cpus` + the measuring thread means other work ran.
    pub busy_cpus: Option<f64>,
    /// Share of CPU time the hypervisor took (steal), percent, when /proc/stat tells.
    pub steal_pct: Option<f64>,
}

/// Everything printed.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// `uname`: system, release, version, machine.
    pub kernel: String,
    /// CPUs online, and usable by this process (affinity, quota).
    pub cpus_online: usize,
    /// See above.
    pub cpus_usable: usize,
    /// The timer slack of ordinary threads, nanoseconds (real-time threads have none).
    pub timer_slack_ns: Option<u64>,
    /// The plan measured.
    pub interval: Duration,
    /// See [`Plan`].
    pub duration: Duration,
    /// See [`Plan`].
    pub load: usize,
    /// The rows.
    pub rows: Vec<Row>,
}

/// `controller wakeups`: measures and prints the table on stdout.
pub fn main(args: &WakeupsArgs) -> io::Result<()> {
    let report = measure(&Plan::from_args(args))?;
    print!("{}", format_report(&report));
    Ok(())
}

/// Measures every row of `plan`, one after the other.
pub fn measure(plan: &Plan) -> io::Result<Report> {
    let mut rows = Vec::with_capacity(plan.rows.len());
    for (i, &policy) in plan.rows.iter().enumerate() {
        if plan.progress {
            eprintln!(
                "wakeups: row {}/{}: {} for {} s, {} load threads",
                i + 1,
                plan.rows.len(),
                policy_name(policy),
                plan.duration.as_secs_f64(),
                plan.load
            );
        }
        rows.push(run_row(plan, policy, &AtomicUsize::new(0))?);
    }
    Ok(Report {
        kernel: kernel(),
        cpus_online: cpus_online(),
        cpus_usable: usable_cpus(),
        timer_slack_ns: timer_slack_ns(),
        interval: plan.interval,
        duration: plan.duration,
        load: plan.load,
        rows,
    })
}

fn policy_name(p: Policy) -> String {
    match p {
        Policy::Other { nice } => format!("SCHED_OTHER nice {nice}"),
        Policy::Fifo { priority } => format!("SCHED_FIFO {priority}"),
    }
}

/// Progress of the measuring thread, read by the thread that reports it.
#[derive(Default)]
struct Shared {
    wakeups: AtomicU64,
    max_ns: AtomicU64,
}

/// One row: load on, measure, load off. `live` counts running load threads (for the tests).
fn run_row(plan: &Plan, policy: Policy, live: &AtomicUsize) -> io::Result<Row> {
    let shared = Shared::default();
    let stat0 = cpu_stat();
    let started = Instant::now();
    let (measured, load) = with_load(plan.load, live, || {
        thread::sleep(SETTLE);
        thread::scope(|s| -> io::Result<_> {
            let h = thread::Builder::new()
                .name("wakeups".into())
                .spawn_scoped(s, || {
                    measure_thread(policy, plan.duration, plan.interval, &shared)
                })?;
            let mut report_at = Instant::now() + PROGRESS_EVERY;
            while !h.is_finished() {
                thread::sleep(Duration::from_millis(100));
                if plan.progress && plan.duration > PROGRESS_EVERY && Instant::now() >= report_at {
                    report_at += PROGRESS_EVERY;
                    eprintln!(
                        "wakeups:   {:.0}/{} s, {} wake-ups, latest {:.3} ms",
                        (Instant::now() - started).as_secs_f64(),
                        plan.duration.as_secs(),
                        shared.wakeups.load(Ordering::Relaxed),
                        shared.max_ns.load(Ordering::Relaxed) as f64 / 1e6
                    );
                }
            }
            match h.join() {
                Ok(r) => Ok(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    })?;
    let wall = started.elapsed();
    let stat1 = cpu_stat();
    let measured = measured?;
    let (busy_cpus, steal_pct) = match (stat0, stat1) {
        (Some(a), Some(b)) if b.total > a.total => {
            let total = (b.total - a.total) as f64;
            let idle = b.idle.saturating_sub(a.idle) as f64;
            let steal = b.steal.saturating_sub(a.steal) as f64;
            (
                Some((total - idle - steal) / total * cpus_online() as f64),
                Some(steal * 100.0 / total),
            )
        }
        _ => (None, None),
    };
    let (label, refused, lateness) = match measured {
        Ok((label, lateness)) => (label, None, Some(lateness)),
        Err(why) => (policy_name(policy), Some(why), None),
    };
    Ok(Row {
        label,
        refused,
        lateness,
        load_cpus: load.cpu.as_secs_f64() / wall.as_secs_f64(),
        load_nice: load.nice,
        busy_cpus,
        steal_pct,
    })
}

/// What the load threads did.
#[derive(Debug, Default)]
struct LoadReport {
    cpu: Duration,
    nice: Option<i32>,
}

/// Runs `body` while `k` threads spin at SCHED_OTHER nice 0, then stops and joins them, also
/// when `body` panics or a spawn fails.
fn with_load<R>(
    k: usize,
    live: &AtomicUsize,
    body: impl FnOnce() -> R,
) -> io::Result<(R, LoadReport)> {
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // Dropped before the scope joins its threads, whichever way this closure ends.
        let _stop = StopOnDrop(&stop);
        let mut spinners = Vec::with_capacity(k);
        for i in 0..k {
            spinners.push(
                thread::Builder::new()
                    .name(format!("load{i}"))
                    .spawn_scoped(s, || spin(&stop, live))?,
            );
        }
        let r = body();
        stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        let mut nices = Vec::with_capacity(k);
        for h in spinners {
            let (cpu, nice) = h.join().unwrap_or_default();
            report.cpu += cpu;
            nices.push(nice);
        }
        if nices.windows(2).all(|w| w[0] == w[1]) {
            report.nice = nices.first().copied();
        }
        Ok((r, report))
    })
}

/// A load thread: ordinary scheduling, nice 0 (best effort), spinning until `stop`. Returns its
/// CPU time and nice value.
fn spin(stop: &AtomicBool, live: &AtomicUsize) -> (Duration, i32) {
    struct Live<'a>(&'a AtomicUsize);
    impl Drop for Live<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(live);
    // Best effort: the load is whatever the process can get (e.g. nice 0 from a nice 5 shell
    // needs CAP_SYS_NICE); the table shows the nice value it got.
    let _ = set_ordinary(0);
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    (thread_cpu_time(), current_nice())
}

/// The measuring thread: applies `policy`, then sleeps to a deadline every `interval` for
/// `duration`. Returns the applied policy's label and the lateness, or why the policy was
/// refused.
fn measure_thread(
    policy: Policy,
    duration: Duration,
    interval: Duration,
    shared: &Shared,
) -> Result<(String, Lateness), String> {
    let label = match policy {
        Policy::Other { nice } => {
            set_ordinary(nice).map_err(|e| {
                format!("SCHED_OTHER nice {nice} refused: {e} (a lower nice needs CAP_SYS_NICE)")
            })?;
            format!("SCHED_OTHER nice {}", current_nice())
        }
        Policy::Fifo { priority } => {
            let out = rt::enter_realtime(priority);
            if let Step::Refused(why) = &out.fifo {
                return Err(format!("SCHED_FIFO {priority} refused: {why}"));
            }
            match &out.memlock {
                Step::Refused(why) => format!("SCHED_FIFO {priority}, memory not locked: {why}"),
                Step::Applied | Step::Off => format!("SCHED_FIFO {priority}, memory locked"),
            }
        }
    };
    let lateness = sleep_loop(duration, interval, shared);
    if matches!(policy, Policy::Fifo { .. }) {
        // Leave the process as it was for whatever runs after this row.
        // SAFETY: no preconditions.
        unsafe { libc::munlockall() };
    }
    Ok((label, lateness))
}

/// The measurement proper: deadlines on a fixed grid (like heartbeats), a wake-up late by more
/// than an interval restarts the grid from the wake-up instead of catching up in a burst.
fn sleep_loop(duration: Duration, interval: Duration, shared: &Shared) -> Lateness {
    #[allow(clippy::expect_used)] // constant, valid arguments
    let mut hist = Histogram::<u64>::new_with_max(60_000_000_000, 3).expect("histogram bounds");
    let mut l = Lateness::default();
    let start = Instant::now();
    let end = start + duration;
    let mut deadline = start + interval;
    while deadline <= end {
        let mut now = Instant::now();
        while now < deadline {
            ppoll_sleep(deadline - now);
            now = Instant::now();
        }
        let late = now - deadline;
        let ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record(ns);
        l.wakeups += 1;
        l.max_ns = l.max_ns.max(ns);
        for (count, limit) in l.over.iter_mut().zip(OVER) {
            *count += u64::from(late > limit);
        }
        shared.wakeups.store(l.wakeups, Ordering::Relaxed);
        shared.max_ns.store(l.max_ns, Ordering::Relaxed);
        deadline = if late < interval {
            deadline + interval
        } else {
            now + interval
        };
    }
    l.p50_ns = hist.value_at_quantile(0.5);
    l.p99_ns = hist.value_at_quantile(0.99);
    l.p999_ns = hist.value_at_quantile(0.999);
    l
}

/// The event loop's sleep: `ppoll` with a relative timeout (here without descriptors; the
/// timer path is the same).
fn ppoll_sleep(d: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    };
    // SAFETY: no descriptors (a null array of length 0); ts lives across the call. EINTR only
    // makes the caller sleep again.
    unsafe { libc::ppoll(std::ptr::null_mut(), 0, &ts, std::ptr::null()) };
}

/// SCHED_OTHER at `nice` for the calling thread.
fn set_ordinary(nice: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param lives across the call; 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: no preconditions.
    let tid = unsafe { libc::gettid() };
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value.
    // SAFETY: plain system call.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn current_nice() -> i32 {
    // SAFETY: no preconditions. (-1 is also a valid nice value; the thread id cannot fail.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid to write into.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Jiffies of all CPUs together, from /proc/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuStat {
    total: u64,
    /// idle + iowait
    idle: u64,
    steal: u64,
}

fn cpu_stat() -> Option<CpuStat> {
    parse_cpu_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_cpu_stat(text: &str) -> Option<CpuStat> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 8).then(|| CpuStat {
        total: v.iter().sum(),
        idle: v[3] + v[4],
        steal: v[7],
    })
}

fn kernel() -> String {
    // SAFETY: utsname is plain old data; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is valid to write into.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {} {}",
        field(&u.sysname),
        field(&u.release),
        field(&u.version),
        field(&u.machine)
    )
}

fn cpus_online() -> usize {
    // SAFETY: no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(0)
}

fn usable_cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

fn timer_slack_ns() -> Option<u64> {
    // SAFETY: PR_GET_TIMERSLACK takes no pointers.
    let r = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    u64::try_from(r).ok()
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

/// The report as text: a header and a Markdown table (for the README).
pub fn format_report(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "timer wake-ups of a {} ms ppoll loop, {} s per row",
        r.interval.as_millis(),
        r.duration.as_secs_f64()
    );
    let _ = writeln!(o, "kernel: {}", r.kernel);
    let _ = writeln!(
        o,
        "CPUs: {} online, {} usable; load: {} busy-spinning threads",
        r.cpus_online, r.cpus_usable, r.load
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| event loop thread | wake-ups | p50 ms | p99 ms | p99.9 ms | max ms | > {} ms | > {} ms \
         | load CPUs | busy CPUs | steal |",
        OVER[0].as_millis(),
        OVER[1].as_millis()
    );
    let _ = writeln!(o, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in &r.rows {
        let load = match row.load_nice {
            Some(n) if n != 0 => format!("{:.2} (nice {n})", row.load_cpus),
            _ => format!("{:.2}", row.load_cpus),
        };
        let busy = row
            .busy_cpus
            .map_or_else(|| "?".to_string(), |b| format!("{b:.2}"));
        let steal = row
            .steal_pct
            .map_or_else(|| "?".to_string(), |s| format!("{s:.1}%"));
        match (&row.refused, &row.lateness) {
            (None, Some(l)) => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {load} | {busy} | {steal} |",
                    row.label,
                    l.wakeups,
                    ms(l.p50_ns),
                    ms(l.p99_ns),
                    ms(l.p999_ns),
                    ms(l.max_ns),
                    l.over[0],
                    l.over[1]
                );
            }
            (refused, _) => {
                let why = refused.as_deref().unwrap_or("not measured");
                let _ = writeln!(
                    o,
                    "| {why} (not measured) | – | – | – | – | – | – | – | {load} | {busy} \
                     | {steal} |"
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "\nload CPUs: used by the load threads; busy CPUs: all CPU time used on the machine \
         (more than load + the event loop thread: other work ran too)."
    );
    if let Some(slack) = r.timer_slack_ns {
        let _ = writeln!(
            o,
            "SCHED_OTHER sleeps end up to {} us late by design (timer slack); SCHED_FIFO \
             sleeps have no slack.",
            slack / 1000
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_an_ordinary_loop_under_load() {
        let plan = Plan {
            duration: Duration::from_millis(300),
            interval: Duration::from_millis(10),
            load: 1,
            rows: vec![Policy::Other { nice: 0 }],
            progress: false,
        };
        let live = AtomicUsize::new(0);
        let row = run_row(&plan, Policy::Other { nice: 0 }, &live).unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 0, "load threads left running");
        assert_eq!(row.refused, None);
        assert_eq!(row.label, "SCHED_OTHER nice 0");
        assert_eq!(row.load_nice, Some(0));
        let l = row.lateness.clone().unwrap();
        // 300 ms at 10 ms; a late wake-up can skip deadlines, so allow fewer.
        assert!((5..=30).contains(&l.wakeups), "{l:?}");
        assert!(l.p50_ns <= l.p99_ns && l.p99_ns <= l.p999_ns, "{l:?}");
        // The histogram rounds up by < 0.1%.
        assert!(l.p999_ns <= l.max_ns + l.max_ns / 500 + 1, "{l:?}");
        assert!(l.over[1] <= l.over[0] && l.over[0] <= l.wakeups, "{l:?}");
        // The spinner ran: it is the only one, so it had most of a CPU for ~0.5 s.
        assert!(row.load_cpus > 0.2, "{row:?}");
    }

    #[test]
    fn load_threads_stop_when_the_body_panics() {
        let live = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(|| {
            with_load(2, &live, || {
                while live.load(Ordering::SeqCst) < 2 {
                    thread::yield_now();
                }
                panic!("measurement failed");
            })
        });
        assert!(r.is_err());
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn load_threads_report_their_cpu_time() {
        let live = AtomicUsize::new(0);
        let (seen, load) = with_load(2, &live, || {
            thread::sleep(Duration::from_millis(100));
            live.load(Ordering::SeqCst)
        })
        .unwrap();
        assert_eq!(seen, 2);
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert!(load.cpu > Duration::from_millis(10), "{load:?}");
        assert_eq!(load.nice, Some(0));
    }

    #[test]
    fn a_refused_row_says_so_and_shows_no_figures() {
        let measured = Row {
            label: "SCHED_OTHER nice 0".into(),
            refused: None,
            lateness: Some(Lateness {
                wakeups: 2000,
                p50_ns: 57_000,
                p99_ns: 4_100_000,
                p999_ns: 12_000_000,
                max_ns: 31_500_000,
                over: [3, 1],
            }),
            load_cpus: 1.97,
            load_nice: Some(0),
            busy_cpus: Some(2.0),
            steal_pct: Some(0.25),
        };
        let refused = Row {
            label: "SCHED_FIFO 10".into(),
            refused: Some("SCHED_FIFO 10 refused: EPERM: needs CAP_SYS_NICE".into()),
            lateness: None,
            load_cpus: 1.5,
            load_nice: Some(0),
            busy_cpus: None,
            steal_pct: None,
        };
        let r = Report {
            kernel: "Linux 6.1.0 #1 SMP x86_64".into(),
            cpus_online: 2,
            cpus_usable: 2,
            timer_slack_ns: Some(50_000),
            interval: Duration::from_millis(10),
            duration: Duration::from_secs(20),
            load: 2,
            rows: vec![measured, refused],
        };
        let text = format_report(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "timer wake-ups of a 10 ms ppoll loop, 20 s per row"
        );
        assert_eq!(lines[1], "kernel: Linux 6.1.0 #1 SMP x86_64");
        assert_eq!(
            lines[2],
            "CPUs: 2 online, 2 usable; load: 2 busy-spinning threads"
        );
        assert!(lines[4].starts_with("| event loop thread | wake-ups | p50 ms |"));
        assert!(lines[4].contains("| > 10 ms | > 30 ms |"));
        assert_eq!(
            lines[6],
            "| SCHED_OTHER nice 0 | 2000 | 0.057 | 4.100 | 12.000 | 31.500 | 3 | 1 | 1.97 | 2.00 \
             | 0.2% |"
        );
        assert_eq!(
            lines[7],
            "| SCHED_FIFO 10 refused: EPERM: needs CAP_SYS_NICE (not measured) | – | – | – | – \
             | – | – | – | 1.50 | ? | ? |"
        );
        assert!(text.contains("up to 50 us late by design"));
    }

    #[test]
    fn plan_puts_the_real_time_row_last() {
        let args = WakeupsArgs {
            seconds: 20,
            interval_ms: 10,
            load: Some(4),
            realtime_priority: 10,
            with_nice: Some(-10),
        };
        let p = Plan::from_args(&args);
        assert_eq!(
            p.rows,
            vec![
                Policy::Other { nice: 0 },
                Policy::Other { nice: -10 },
                Policy::Fifo { priority: 10 }
            ]
        );
        assert_eq!(
            (p.duration, p.interval, p.load),
            (Duration::from_secs(20), Duration::from_millis(10), 4)
        );
    }

    #[test]
    fn parses_proc_stat() {
        let t = "cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 5 0 2 50 1 0 1 3 0 0\n";
        assert_eq!(
            parse_cpu_stat(t),
            Some(CpuStat {
                total: 128,
                idle: 102,
                steal: 7
            })
        );
        assert_eq!(parse_cpu_stat("cpu0 1 2\n"), None);
    }
}
