//! A VM freeze on the pair lab (issue 21, item 5): every process of one member (its data plane,
//! controller and ID server) stopped with SIGSTOP for 3 s and continued with SIGCONT, as a
//! hypervisor pausing a VM does, while the kernel VXLAN client polls the VIP with `http-ping`
//! every millisecond and the VIP's owners are sampled every few milliseconds.
//!
//! - The owner frozen: exactly one unplanned move (pri -> sec) during the incident, no move
//!   back until pri's preemption after its hold-down, and that preemption (a planned, drained
//!   switchover) loses no request.
//! - The backup frozen: no move at all and no request lost.
//!
//! Unlike a real VM's, the frozen member's kernel keeps running: its XDP programs, its TCP
//! stack and the VIP address on its overlay interface stay, so the ownership samples show the
//! frozen owner's stale address next to the new owner's until its controller runs again (the
//! kill -9 trials see the same stale address until the data plane restarts). Root required.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bench::workload::{Outcome, Sample, Summary};
use ovl_lab::{Lab, LabSpec, Pair, PairBins, PairOptions, Signal};

/// Requests in flight at once (as in the failover trials): every millisecond tick goes out on
/// time even while earlier requests hang on the frozen member.
const PARALLEL: u32 = 64;
/// How long the member is frozen.
const FREEZE: Duration = Duration::from_secs(3);
/// pri's hold-down: long enough that a move back by preemption cannot be mistaken for one
/// caused by the freeze, short enough for a test.
const HOLD_DOWN_MS: u64 = 4000;
/// How often the sampler looks at who holds the VIP.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Switches less than this apart are one move (see `Summary::trials`).
const TRIAL_WINDOW: Duration = Duration::from_millis(100);
/// Longest time the frozen owner may keep its stale VIP once continued, and the longest a
/// preemption's make-before-break overlap may last.
const SETTLE: f64 = 2.0;

/// One lab at a time: millisecond timing on a 2-core machine needs the cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn bin(name: &str) -> std::path::PathBuf {
    let p = ovl_lab::bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo xtask test` does)",
        p.display()
    );
    p
}

fn setup(tag: &str, opts: PairOptions) -> (Lab, Pair) {
    assert!(
        ovl_lab::is_root(),
        "the lab tests need root; CI runs them as root"
    );
    // As in failover.rs: let the kernel finish freeing the previous test's namespaces first.
    thread::sleep(Duration::from_secs(3));
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix(tag), bin("dataplane"));
    spec.ready_timeout = Duration::from_secs(20);
    // Draining sends with XDP_TX, which a veth takes only while its peer runs NAPI.
    spec.router_napi = true;
    let mut lab = Lab::up(&spec).expect("lab up");
    let bins = PairBins {
        controller: bin("controller"),
        id_server: bin("id-server"),
        http_ping: bin("http-ping"),
    };
    let pair = Pair::start(&mut lab, bins, opts).expect("pair up");
    (lab, pair)
}

/// Seconds since the Unix epoch.
fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (years counted from March, so the leap
/// day ends each 400-year era).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-22T10:00:00.123456Z` (http-ping's request times) as seconds since the epoch.
fn parse_utc(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() != 27 || b[4] != b'-' || b[10] != b'T' || b[26] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let sod = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let micros = num(20..26)?;
    Some((days * 86_400 + sod) as f64 + micros as f64 / 1e6)
}

/// The test's time line: seconds since `origin` (wall clock, the one http-ping's lines and
/// the controllers' `ts_ns` use).
#[derive(Clone, Copy)]
struct Clock {
    origin: SystemTime,
}

impl Clock {
    fn now(&self) -> f64 {
        self.at(SystemTime::now())
    }

    fn at(&self, t: SystemTime) -> f64 {
        epoch_secs(t) - epoch_secs(self.origin)
    }

    fn of_epoch(&self, secs: f64) -> f64 {
        secs - epoch_secs(self.origin)
    }
}

/// http-ping's per-request lines (`<UTC start> <ID> <latency>ms` or `<UTC start> FAIL <kind>
/// <latency>ms`), in the order printed (the order its own summary took them), as samples on
/// the test's time line.
fn client_samples(log: &str, clock: Clock) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(start) = f.first().and_then(|t| parse_utc(t)) else {
            continue;
        };
        let latency = f
            .last()
            .and_then(|l| l.strip_suffix("ms"))
            .and_then(|l| l.parse::<f64>().ok());
        let (Some(latency), Some(what)) = (latency, f.get(1)) else {
            continue;
        };
        let outcome = match (*what, f.get(2)) {
            ("FAIL", Some(&"timeout")) => Outcome::Timeout,
            ("FAIL", Some(&"refused")) => Outcome::Refused,
            ("FAIL", Some(kind)) => Outcome::Error((*kind).to_string()),
            (id, _) => Outcome::Ok(id.to_string()),
        };
        let t = clock.of_epoch(start).max(0.0);
        out.push(Sample {
            seq: out.len() as u64,
            at: clock.origin + Duration::from_secs_f64(t),
            t: Duration::from_secs_f64(t),
            latency: Duration::from_secs_f64(latency / 1e3),
            outcome,
        });
    }
    out
}

/// Answer (or failure) time of a sample on the test's time line.
fn answered(s: &Sample) -> f64 {
    s.answered_at().as_secs_f64()
}

/// One ownership sample: when, and which members had the VIP on their overlay interface.
type Owners = (f64, Vec<&'static str>);

/// Samples `pair.owners` every `SAMPLE_EVERY` into `into` until `stop`.
fn sample_owners(
    lab: &Lab,
    pair: &Pair,
    clock: Clock,
    stop: &AtomicBool,
    into: &Mutex<Vec<Owners>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let o = pair.owners(lab).expect("owners");
        let at = clock.now();
        into.lock().unwrap_or_else(|e| e.into_inner()).push((at, o));
        thread::sleep(SAMPLE_EVERY);
    }
}

/// Sets the flag when dropped: the sampler stops also when the test body panics, so the
/// thread scope can end and the lab be taken down.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `host`'s processes stopped with SIGSTOP; SIGCONT when dropped (also on a panic).
struct Frozen<'a> {
    lab: &'a Lab,
    host: &'static str,
    pids: Vec<(u32, String)>,
}

/// `/proc/PID/comm` and the state letter of `/proc/PID/stat` (`T`: stopped).
fn proc_info(pid: u32) -> (String, Option<char>) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) S ...`: the state follows the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    (comm.trim().to_string(), state)
}

/// Freezes every process in `host`'s namespace, as a hypervisor pausing the VM: first checks
/// they are the member's data plane, controller and ID server, then that each really stopped.
fn freeze<'a>(lab: &'a Lab, host: &'static str) -> Frozen<'a> {
    let before: Vec<(u32, String)> = lab
        .host_pids(host)
        .expect("pids")
        .into_iter()
        .map(|p| (p, proc_info(p).0))
        .collect();
    for name in ["dataplane", "controller", "id-server"] {
        assert!(
            before.iter().any(|(_, c)| c == name),
            "{host}'s {name} runs in its namespace: {before:?}"
        );
    }
    let signalled = lab.signal_host(host, Signal::Stop).expect("SIGSTOP");
    let frozen = Frozen {
        lab,
        host,
        pids: before,
    };
    let deadline = Instant::now() + Duration::from_millis(500);
    for &pid in &signalled {
        while proc_info(pid).1 != Some('T') {
            assert!(
                Instant::now() < deadline,
                "{host}: process {pid} {:?} stopped",
                proc_info(pid)
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
    frozen
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lab.signal_host(self.host, Signal::Cont) {
            eprintln!("{}: SIGCONT: {e}", self.host);
        }
    }
}

/// A state change a controller logged (`transition A -> B: ...`).
#[derive(Debug)]
struct Transition {
    /// On the test's time line.
    at: f64,
    node: String,
    from: String,
    to: String,
    cause: String,
}

/// The transitions in `host`'s controller log.
fn transitions(lab: &Lab, host: &str, clock: Clock) -> Vec<Transition> {
    let path = lab.state_dir().join(format!("{host}-controller.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(" transition "))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_string())
            };
            let ts: f64 = field("ts_ns")?.parse().ok()?;
            Some(Transition {
                at: clock.of_epoch(ts / 1e9),
                node: field("node")?,
                from: field("from")?,
                to: field("to")?,
                cause: field("cause")?,
            })
        })
        .collect()
}

/// Milliseconds during which the samples in `[from, to)` show the VIP on both members (each
/// sample stands for the time until the next).
fn dual_ms(samples: &[Owners], from: f64, to: f64) -> f64 {
    samples
        .windows(2)
        .filter(|w| w[0].0 >= from && w[0].0 < to && w[0].1.len() == 2)
        .map(|w| (w[1].0.min(to) - w[0].0) * 1e3)
        .fold(0.0, |a, b| a + b)
}

/// After the continue: how long both controllers called themselves active (ms), until the
/// first of them left that state, and that transition; `None` if neither left it.
fn both_active_after(r: &Run) -> Option<(f64, &Transition)> {
    r.transitions
        .iter()
        .find(|t| t.at >= r.continued_at && t.from == "active")
        .map(|t| ((t.at - r.continued_at) * 1e3, t))
}

/// The ownership samples compressed to runs (`[pri] 0.000-1.234`, ...), for messages.
fn runs(samples: &[Owners]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < samples.len() {
        let mut j = i;
        while j + 1 < samples.len() && samples[j + 1].1 == samples[i].1 {
            j += 1;
        }
        out.push_str(&format!(
            "{:?} {:.3}-{:.3} s\n",
            samples[i].1, samples[i].0, samples[j].0
        ));
        i = j + 1;
    }
    out
}

/// What one run saw: the client's samples and summary, the ownership samples, the
/// controllers' transitions and the times of the freeze and the continue.
struct Run {
    client: Vec<Sample>,
    summary: Summary,
    owners: Vec<Owners>,
    transitions: Vec<Transition>,
    frozen_at: f64,
    continued_at: f64,
    logs: String,
}

impl Run {
    /// The client's moves: (new ID, time of the group's last switch, client-visible gap ms).
    fn moves(&self) -> Vec<(String, f64, f64)> {
        self.summary
            .trials(TRIAL_WINDOW)
            .into_iter()
            .map(|t| (t.to, t.last_switch.as_secs_f64(), t.gap.as_secs_f64() * 1e3))
            .collect()
    }

    fn describe(&self) -> String {
        let moves: Vec<String> = self
            .moves()
            .iter()
            .map(|(to, at, gap)| {
                format!(
                    "-> {to} at {:+.3} s from the freeze (gap {gap:.1} ms)",
                    at - self.frozen_at
                )
            })
            .collect();
        let tr: Vec<String> = self
            .transitions
            .iter()
            .map(|t| {
                format!(
                    "{} {:+.3} s: {} -> {} ({})",
                    t.node,
                    t.at - self.frozen_at,
                    t.from,
                    t.to,
                    t.cause
                )
            })
            .collect();
        format!(
            "frozen at {:.3} s, continued at {:.3} s\nclient moves:\n  {}\nclient: {}\n\
             controller transitions (from the freeze):\n  {}\nownership samples:\n{}{}",
            self.frozen_at,
            self.continued_at,
            moves.join("\n  "),
            self.summary,
            tr.join("\n  "),
            runs(&self.owners),
            self.logs
        )
    }

    /// Failed requests started in `[from, to)`.
    fn failed_between(&self, from: f64, to: f64) -> Vec<&Sample> {
        self.client
            .iter()
            .filter(|s| {
                let t = s.t.as_secs_f64();
                s.outcome.id().is_none() && t >= from && t < to
            })
            .collect()
    }
}

/// Freezes `host` for `FREEZE` under the client's polling, then `after` decides when the run
/// is over (called with the samples so far and the time since the continue, it returns
/// whether to stop); bounded by `limit` after the continue.
fn run(
    tag: &str,
    opts: PairOptions,
    host: &'static str,
    limit: Duration,
    after: impl Fn(&[Owners], f64) -> bool,
) -> Run {
    let (mut lab, pair) = setup(tag, opts);
    let clock = Clock {
        origin: SystemTime::now(),
    };
    let ping = pair
        .start_http_ping(&mut lab, 1, PARALLEL, "http-ping")
        .expect("http-ping");
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let (frozen_at, continued_at) = thread::scope(|s| {
        let sampler = s.spawn(|| sample_owners(&lab, &pair, clock, &stop, &samples));
        let guard = StopOnDrop(&stop);
        // Settled on pri, the client answered by it.
        thread::sleep(Duration::from_millis(500));
        let frozen_at = clock.now();
        let frozen = freeze(&lab, host);
        eprintln!("{host} frozen at {frozen_at:.3} s: {:?}", frozen.pids);
        thread::sleep(FREEZE);
        let continued_at = clock.now();
        drop(frozen);
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let done = {
                let o = samples.lock().unwrap_or_else(|e| e.into_inner());
                after(&o, clock.now() - continued_at)
            };
            if done {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        drop(guard);
        sampler.join().expect("sampler");
        (frozen_at, continued_at)
    });
    let log = pair.finish_http_ping(&mut lab, &ping).expect("http-ping");
    let summary_printed =
        Summary::from_log(&log).unwrap_or_else(|| panic!("http-ping printed no summary:\n{log}"));
    let client = client_samples(&log, clock);
    let summary = Summary::from_samples(&client);
    assert_eq!(
        (summary.requests, summary.failed, &summary.per_id),
        (
            summary_printed.requests,
            summary_printed.failed,
            &summary_printed.per_id
        ),
        "every request line read back"
    );
    let mut transitions: Vec<Transition> = ["pri", "sec"]
        .iter()
        .flat_map(|h| transitions(&lab, h, clock))
        .filter(|t| t.at >= frozen_at - 0.5)
        .collect();
    transitions.sort_by(|a, b| a.at.total_cmp(&b.at));
    let logs = pair.logs(&lab);
    Run {
        client,
        summary,
        owners: samples.into_inner().unwrap_or_else(|e| e.into_inner()),
        transitions,
        frozen_at,
        continued_at,
        logs,
    }
}

/// Whether the latest samples show the VIP on `host` alone for at least `secs`.
fn alone_for(samples: &[Owners], host: &str, secs: f64) -> bool {
    let Some(last) = samples.last() else {
        return false;
    };
    samples
        .iter()
        .rev()
        .take_while(|s| s.1 == [host])
        .last()
        .is_some_and(|first| last.0 - first.0 >= secs)
}

#[test]
fn owner_frozen_for_3_s_moves_the_vip_once_and_preemption_brings_it_back_losing_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = PairOptions {
        preempt: true,
        hold_down_ms: HOLD_DOWN_MS,
        ..PairOptions::default()
    };
    let hold_down = HOLD_DOWN_MS as f64 / 1e3;
    // Over once pri has held the VIP alone for half a second after its hold-down could have
    // run out; bounded by the hold-down plus 5 s.
    let r = run(
        "zo",
        opts,
        "pri",
        Duration::from_millis(HOLD_DOWN_MS + 5000),
        |o, since_cont| since_cont >= hold_down && alone_for(o, "pri", 0.5),
    );
    let (t_freeze, t_cont) = (r.frozen_at, r.continued_at);
    let preempt_from = t_cont + hold_down;
    let moves = r.moves();
    let path: Vec<&str> = std::iter::once("PRI")
        .chain(moves.iter().map(|m| m.0.as_str()))
        .collect();
    let unplanned: Vec<&(String, f64, f64)> = moves.iter().filter(|m| m.1 < preempt_from).collect();
    // The ownership samples: settled once the frozen owner, continued, dropped its stale VIP.
    let settled = r
        .owners
        .iter()
        .find(|s| s.0 >= t_cont && s.1 == ["sec"])
        .map(|s| s.0);
    let back = settled.and_then(|t| {
        r.owners
            .iter()
            .find(|s| s.0 > t && s.1.contains(&"pri"))
            .map(|s| s.0)
    });
    let pri_alone = back.and_then(|t| {
        r.owners
            .iter()
            .find(|s| s.0 >= t && s.1 == ["pri"])
            .map(|s| s.0)
    });
    let end = r.owners.last().map_or(0.0, |s| s.0);
    let incident_failed = r.failed_between(f64::MIN, settled.unwrap_or(end));
    let window_failed = settled.map(|t| r.failed_between(t, f64::MAX));
    let gap = moves.first().map_or(f64::NAN, |m| m.2);
    let both_active = match both_active_after(&r) {
        Some((ms, t)) => format!("{ms:.1} ms (until {} left active: {})", t.node, t.cause),
        None => "no transition out of active".to_string(),
    };
    eprintln!(
        "owner frozen {:.1} s: client saw {} ({} unplanned before pri's hold-down could end); \
         unplanned gap {gap:.1} ms, longest gap {:.1} ms; {} requests, {} failed ({} during \
         the incident, {} in the preemption window); VIP on both: {:.1} ms while frozen, {:.1} \
         ms after the continue, {:.1} ms in the preemption; both controllers active after \
         the continue: {both_active}; pri back {} after the continue",
        t_cont - t_freeze,
        path.join(" > "),
        unplanned.len(),
        r.summary
            .longest_gap
            .map_or(f64::NAN, |g| g.as_secs_f64() * 1e3),
        r.summary.requests,
        r.summary.failed,
        incident_failed.len(),
        window_failed
            .as_ref()
            .map_or("n/a".to_string(), |f| f.len().to_string()),
        dual_ms(&r.owners, t_freeze, t_cont),
        dual_ms(&r.owners, t_cont, settled.unwrap_or(t_cont)),
        back.map_or(0.0, |b| dual_ms(&r.owners, b, pri_alone.unwrap_or(end))),
        match (settled, back) {
            (None, _) => "n/a (never on sec alone after the continue)".to_string(),
            (Some(_), None) => "never".to_string(),
            (Some(_), Some(b)) => format!("{:.3} s", b - t_cont),
        },
    );

    // Before the freeze: pri alone, answering.
    for s in r.owners.iter().filter(|s| s.0 < t_freeze) {
        assert_eq!(
            s.1,
            ["pri"],
            "VIP on pri before the freeze\n{}",
            r.describe()
        );
    }
    // Exactly one unplanned move, to sec, while pri was frozen.
    assert_eq!(
        unplanned.len(),
        1,
        "exactly one unplanned move (PRI > SEC) during the incident, none back before pri's \
         hold-down ({HOLD_DOWN_MS} ms after the continue at {t_cont:.3} s) could end: the \
         client saw {}\n{}",
        path.join(" > "),
        r.describe()
    );
    let first = unplanned[0];
    assert_eq!(first.0, "SEC", "the move was to sec\n{}", r.describe());
    assert!(
        first.1 > t_freeze && first.1 < t_cont,
        "sec answered while pri was frozen\n{}",
        r.describe()
    );
    assert!(
        first.2 < 1000.0,
        "the unplanned move recovered within a second: {:.1} ms\n{}",
        first.2,
        r.describe()
    );
    // The first answer of pri after sec took over: not before the preemption could happen.
    let sec_first = r
        .client
        .iter()
        .filter(|s| s.outcome.id() == Some("SEC"))
        .map(answered)
        .fold(f64::INFINITY, f64::min);
    let pri_again = r
        .client
        .iter()
        .filter(|s| s.outcome.id() == Some("PRI") && answered(s) > sec_first)
        .map(answered)
        .fold(f64::INFINITY, f64::min);
    assert!(
        pri_again >= preempt_from,
        "no PRI answer after sec took over before pri's hold-down could end ({:.3} s after \
         the continue, not {:.3} s)\n{}",
        pri_again - t_cont,
        hold_down,
        r.describe()
    );
    // Then exactly one more move, back to pri, by preemption.
    assert_eq!(
        path,
        ["PRI", "SEC", "PRI"],
        "preemption brought the VIP back to pri, once\n{}",
        r.describe()
    );
    let preempted: Vec<&Transition> = r
        .transitions
        .iter()
        .filter(|t| t.node == "pri" && t.to == "active" && t.at > t_cont)
        .collect();
    assert!(
        preempted.len() == 1 && preempted[0].cause == "preempt" && preempted[0].at >= preempt_from,
        "pri became active again once, by preemption after its hold-down\n{}",
        r.describe()
    );
    // The ownership samples agree: the frozen owner, continued, dropped its stale VIP ...
    let settled = settled.unwrap_or_else(|| {
        panic!(
            "the VIP on sec alone after the continue (pri dropped its stale VIP)\n{}",
            r.describe()
        )
    });
    assert!(
        settled - t_cont < SETTLE,
        "pri dropped its stale VIP within {SETTLE} s of the continue: {:.3} s\n{}",
        settled - t_cont,
        r.describe()
    );
    // ... the VIP never had no owner ...
    for s in &r.owners {
        assert!(
            !s.1.is_empty(),
            "the VIP always had an owner: none at {:.3} s\n{}",
            s.0,
            r.describe()
        );
    }
    // ... stayed on sec alone until pri preempted after its hold-down ...
    let back = back.unwrap_or_else(|| panic!("pri took the VIP back\n{}", r.describe()));
    assert!(
        back >= preempt_from,
        "the VIP stayed on sec alone until pri's hold-down could end: pri had it again {:.3} \
         s after the continue\n{}",
        back - t_cont,
        r.describe()
    );
    // ... and the make-before-break overlap ended with pri alone, for good.
    let pri_alone = pri_alone.unwrap_or_else(|| panic!("VIP on pri alone\n{}", r.describe()));
    assert!(
        pri_alone - back < SETTLE,
        "the preemption's overlap ended within {SETTLE} s\n{}",
        r.describe()
    );
    for s in r.owners.iter().filter(|s| s.0 >= pri_alone) {
        assert_eq!(
            s.1,
            ["pri"],
            "VIP on pri alone after the preemption\n{}",
            r.describe()
        );
    }
    // Zero failed requests from the settled incident through the preemption.
    let window_failed = window_failed.unwrap_or_default();
    assert!(
        window_failed.is_empty(),
        "no failed request from {settled:.3} s (sec alone) through the preemption: {:?}\n{}",
        window_failed
            .iter()
            .map(|s| (s.t.as_secs_f64(), s.outcome.failure_kind()))
            .collect::<Vec<_>>(),
        r.describe()
    );
}

#[test]
fn backup_frozen_for_3_s_moves_nothing_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = PairOptions {
        preempt: true,
        hold_down_ms: HOLD_DOWN_MS,
        ..PairOptions::default()
    };
    // Two more seconds after the continue: sec catching up with its queued heartbeats and
    // timers must not take the VIP.
    let r = run(
        "zb",
        opts,
        "sec",
        Duration::from_secs(2),
        |_, since_cont| since_cont >= 2.0,
    );
    let moves = r.moves();
    let dual = dual_ms(&r.owners, f64::MIN, f64::MAX);
    eprintln!(
        "backup frozen {:.1} s: client saw {} move(s), answers {:?}, longest gap {:.1} ms; {} \
         requests, {} failed; VIP on both {dual:.1} ms",
        r.continued_at - r.frozen_at,
        moves.len(),
        r.summary.per_id,
        r.summary
            .longest_gap
            .map_or(f64::NAN, |g| g.as_secs_f64() * 1e3),
        r.summary.requests,
        r.summary.failed,
    );
    assert!(
        r.owners.last().is_some_and(|s| s.0 - r.continued_at >= 2.0),
        "sampled until 2 s after the continue\n{}",
        r.describe()
    );
    for s in &r.owners {
        assert_eq!(
            s.1,
            ["pri"],
            "the VIP on pri alone at every sample ({:.3} s)\n{}",
            s.0,
            r.describe()
        );
    }
    assert!(moves.is_empty(), "no move\n{}", r.describe());
    assert_eq!(
        r.summary.per_id.keys().collect::<Vec<_>>(),
        ["PRI"],
        "only pri answered\n{}",
        r.describe()
    );
    assert_eq!(r.summary.failed, 0, "no failed request\n{}", r.describe());
    assert!(
        r.summary.requests > 3000,
        "the client polled throughout: {}",
        r.summary
    );
    let pri_moved: Vec<&Transition> = r.transitions.iter().filter(|t| t.node == "pri").collect();
    assert!(
        pri_moved.is_empty(),
        "pri stayed active throughout\n{}",
        r.describe()
    );
}

#[test]
fn request_times_parse_back() {
    for secs in [
        0u64,
        951_782_400,
        1_709_251_199,
        1_795_341_600,
        4_107_542_400,
    ] {
        let t = UNIX_EPOCH + Duration::new(secs, 123_456_000);
        let text = bench::workload::rfc3339_micros(t);
        let back = parse_utc(&text).expect("parses");
        assert!((back - epoch_secs(t)).abs() < 1e-6, "{text}: {back}");
    }
    assert_eq!(parse_utc("FAIL"), None);
}
