//! The benchmark runner behind `cargo xtask bench`: brings up the lab, measures every path in
//! the same run (repetitions interleaved across paths, so a slow minute of the shared VM hits
//! all of them), and returns a [`Run`] of records for the report.

mod failover;
mod jumbo;
pub mod lab;
pub mod soak;
mod uplinks;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant, SystemTime},
};

use ovl_lab::{DatapathMode, FABRIC, Lab, LabError, WorkerTuning};
use thiserror::Error;

use crate::{
    probe::{
        cpu::{CpuDelta, SystemCpu},
        iperf::{IperfResult, parse_iperf3},
        rtt::RttReport,
    },
    report::{Machine, PathKind, Record, Run, median},
    traffic::GenReport,
    workload::rfc3339_micros,
};
use lab::Route;

/// TCP port of the iperf3 servers and UDP port of the echo servers.
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 7007;

#[derive(Debug, Error)]
pub enum SuiteError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
    #[error("stopped (SIGINT/SIGTERM)")]
    Stopped,
}

fn step_err(what: impl Into<String>, detail: impl ToString) -> SuiteError {
    SuiteError::Step {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// What to measure and how long.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `dataplane`, `controller`, `id-server`, `http-ping`, `xdp-gen` and `rtt-probe` are.
    pub bin_dir: PathBuf,
    pub quick: bool,
    /// Repetitions of every throughput, latency and frame-rate measurement per path.
    pub reps: usize,
    pub tcp_secs: u32,
    pub rtt_count: u64,
    pub rtt_interval_us: u64,
    pub frames_ms: u64,
    /// How the generator hands frames to the receiver's underlay veth.
    pub frames_via: FramesVia,
    /// Failover trials per overlay (kernel VXLAN and ours); 0 skips them.
    pub failover_planned: usize,
    pub failover_unplanned: usize,
    /// Uplink events of each kind (carrier cycle, device cycle) on ours; 0 skips them.
    pub uplink_events: usize,
    /// The draining soak on ours: planned switchovers, then kill -9 failovers; 0 and 0
    /// skip it.
    pub soak_planned: usize,
    pub soak_kills: usize,
    /// The TCP row over an MTU 9000 underlay (kernel VXLAN and ours).
    pub jumbo: bool,
    /// The TCP row with IPv6 VTEPs (kernel VXLAN and ours).
    pub ipv6: bool,
    pub paths: Vec<PathKind>,
    pub queues: u32,
    pub workers: WorkerTuning,
    /// The generator's CPU, and the one the receiving host's work is steered to (RPS for the
    /// kernel paths, worker pinning for ours), so the frame test sees one "worker core".
    pub gen_cpu: u32,
    pub sink_cpu: u32,
    pub git_rev: String,
}

impl Settings {
    /// About twelve minutes on the 2-core VM (six paths, seven repetitions, the failover trials).
    pub fn full(bin_dir: PathBuf) -> Self {
        Settings {
            bin_dir,
            quick: false,
            reps: 7,
            tcp_secs: 5,
            rtt_count: 3000,
            rtt_interval_us: 1000,
            frames_ms: 3000,
            frames_via: FramesVia::XdpLive,
            failover_planned: 20,
            failover_unplanned: 10,
            uplink_events: 10,
            soak_planned: 200,
            soak_kills: 20,
            jumbo: true,
            ipv6: true,
            paths: Route::ALL.iter().map(|r| r.path).collect(),
            queues: 1,
            // Each sending host's worker on the generator's CPU, each receiving host's on
            // the sink CPU: two hosts squeezed onto two cores still get one core each.
            workers: WorkerTuning {
                host_cpus: [
                    ("v1", 1),
                    ("g1", 1),
                    ("a1", 1),
                    ("v2", 0),
                    ("g2", 0),
                    ("a2", 0),
                ]
                .into_iter()
                .map(|(h, c)| (h.to_string(), vec![c]))
                .collect(),
                ..WorkerTuning::default()
            },
            gen_cpu: 1,
            sink_cpu: 0,
            git_rev: String::new(),
        }
    }

    /// About two minutes.
    pub fn quick(bin_dir: PathBuf) -> Self {
        Settings {
            quick: true,
            reps: 2,
            tcp_secs: 2,
            rtt_count: 1000,
            frames_ms: 1500,
            failover_planned: 4,
            failover_unplanned: 2,
            uplink_events: 3,
            soak_planned: 6,
            soak_kills: 2,
            ..Settings::full(bin_dir)
        }
    }

    fn bin(&self, name: &str) -> Result<String, SuiteError> {
        let p = self.bin_dir.join(name);
        if !p.exists() {
            return Err(step_err(
                format!("binary {}", p.display()),
                "missing: build the workspace in release mode first (cargo xtask bench does)",
            ));
        }
        Ok(p.to_string_lossy().into_owned())
    }

    fn as_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("repetitions", self.reps.to_string());
        put("tcp_seconds", self.tcp_secs.to_string());
        put("rtt_probes", self.rtt_count.to_string());
        put("rtt_interval_us", self.rtt_interval_us.to_string());
        put("frames_ms", self.frames_ms.to_string());
        put("frames_via", self.frames_via.as_str().to_string());
        put("failover_planned_trials", self.failover_planned.to_string());
        put(
            "failover_unplanned_trials",
            self.failover_unplanned.to_string(),
        );
        put("uplink_events", self.uplink_events.to_string());
        put("soak_planned", self.soak_planned.to_string());
        put("soak_kills", self.soak_kills.to_string());
        put("jumbo", self.jumbo.to_string());
        put("ipv6", self.ipv6.to_string());
        put("queues", self.queues.to_string());
        put("gen_cpu", self.gen_cpu.to_string());
        put("sink_cpu", self.sink_cpu.to_string());
        if let Some(c) = &self.workers.cpus {
            put("worker_cpus", format!("{c:?}"));
        }
        for (h, c) in &self.workers.host_cpus {
            put(&format!("worker_cpus_{h}"), format!("{c:?}"));
        }
        if let Some(b) = self.workers.batch_size {
            put("batch_size", b.to_string());
        }
        if let Some(f) = self.workers.frames_per_queue {
            put("frames_per_queue", f.to_string());
        }
        if let Some(f) = self.workers.spin_us {
            put("spin_us", f.to_string());
        }
        if let Some(f) = self.workers.busy_poll_us {
            put("busy_poll_us", f.to_string());
        }
        m
    }
}

/// How the frame generator hands its frames to the receiver's underlay veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramesVia {
    /// As XDP frames (`xdp-gen --mode xdp-live`), the way a NIC driver hands received frames
    /// over: the receiver's `eth0` takes them in its NAPI (an XDP program there, or GRO on).
    XdpLive,
    /// Through an AF_XDP socket in copy mode: each frame reaches the receiver as an skb, which
    /// a veth copies once more before an XDP program may see it.
    Skb,
}

impl FramesVia {
    pub fn as_str(self) -> &'static str {
        match self {
            FramesVia::XdpLive => "xdp-live",
            FramesVia::Skb => "skb",
        }
    }
}

/// Progress lines with an estimate of the time left.
struct Progress<'a> {
    total: usize,
    done: usize,
    start: Instant,
    out: &'a mut dyn FnMut(&str),
}

impl Progress<'_> {
    fn line(&mut self, msg: &str) {
        let el = self.start.elapsed().as_secs();
        let left = if self.done > 0 {
            let per = self.start.elapsed().as_secs_f64() / self.done as f64;
            format!(
                ", ~{}s left",
                (per * (self.total - self.done) as f64) as u64
            )
        } else {
            String::new()
        };
        (self.out)(&format!(
            "[{:>3}/{} {}:{:02}{left}] {msg}",
            self.done,
            self.total,
            el / 60,
            el % 60
        ));
    }

    fn step(&mut self, msg: &str) {
        self.done += 1;
        self.line(msg);
    }
}

/// Raw samples as they come, keyed by path and measurement.
#[derive(Default)]
struct Samples {
    values: BTreeMap<(PathKind, &'static str), Vec<f64>>,
    extra: BTreeMap<(PathKind, &'static str, &'static str), Vec<f64>>,
    rtt: BTreeMap<PathKind, Vec<RttReport>>,
    /// The latest note of each kind (the third key) per path and measurement.
    notes: BTreeMap<(PathKind, &'static str, &'static str), String>,
}

impl Samples {
    fn push(&mut self, p: PathKind, m: &'static str, v: f64) {
        self.values.entry((p, m)).or_default().push(v);
    }
    fn push_extra(&mut self, p: PathKind, m: &'static str, k: &'static str, v: f64) {
        self.extra.entry((p, m, k)).or_default().push(v);
    }
    fn note(&mut self, p: PathKind, m: &'static str, kind: &'static str, text: String) {
        self.notes.insert((p, m, kind), text);
    }
    /// Every note of a record, joined.
    fn notes_of(&self, p: PathKind, m: &str) -> Option<String> {
        let all: Vec<&str> = self
            .notes
            .iter()
            .filter(|((np, nm, _), _)| *np == p && *nm == m)
            .map(|(_, t)| t.as_str())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// Runs the whole benchmark. `stop` (set by SIGINT/SIGTERM) ends it between steps; the lab
/// is taken down in every case.
pub fn run(s: &Settings, stop: &AtomicBool, out: &mut dyn FnMut(&str)) -> Result<Run, SuiteError> {
    if !ovl_lab::is_root() {
        return Err(step_err(
            "the benchmark",
            "needs root (network namespaces, XDP)",
        ));
    }
    let t0 = Instant::now();
    let started = SystemTime::now();
    let routes: Vec<Route> = Route::ALL
        .into_iter()
        .filter(|r| s.paths.contains(&r.path))
        .collect();
    let failover_kinds: Vec<PathKind> = [PathKind::KernelVxlan, PathKind::OursVxlan]
        .into_iter()
        .filter(|p| s.paths.contains(p))
        .collect();
    let do_failover = s.failover_planned + s.failover_unplanned > 0;
    let do_uplinks = s.uplink_events > 0 && s.paths.contains(&PathKind::OursVxlan);
    let do_soak = s.soak_planned + s.soak_kills > 0 && s.paths.contains(&PathKind::OursVxlan);
    let both = s.paths.contains(&PathKind::OursVxlan) && s.paths.contains(&PathKind::KernelVxlan);
    let variants: Vec<jumbo::Underlay> = [
        (s.jumbo, jumbo::Underlay::Jumbo),
        (s.ipv6, jumbo::Underlay::Ipv6),
    ]
    .into_iter()
    .filter_map(|(on, u)| (on && both).then_some(u))
    .collect();
    let mut progress = Progress {
        total: s.reps * routes.len() * 4
            + if do_failover {
                failover_kinds.len() * 2
            } else {
                0
            }
            + usize::from(do_uplinks) * 2
            + usize::from(do_soak) * 2
            + variants.len() * s.reps * 2
            + 1,
        done: 0,
        start: t0,
        out,
    };
    let mut samples = Samples::default();
    {
        let prefix = ovl_lab::unique_prefix("bn");
        let spec = lab::spec(
            &prefix,
            Path::new(&s.bin("dataplane")?),
            s.workers.clone(),
            s.queues,
            &s.paths,
        );
        let pairs: Vec<String> = routes
            .iter()
            .map(|r| format!("{}/{} {}", r.src, r.dst, r.path))
            .collect();
        progress.line(&format!("lab {prefix}*: {}, one router", pairs.join(", ")));
        let mut lab = Lab::up(&spec)?;
        let servers = Servers::start(&mut lab, s, &routes)?;
        progress.step("lab up; iperf3 and echo servers running");
        for rep in 1..=s.reps {
            for r in &routes {
                if stop.load(Ordering::Relaxed) {
                    return Err(SuiteError::Stopped);
                }
                measure_rep(&lab, &servers, s, r, rep, &mut samples, &mut progress)?;
            }
        }
    }
    let mut records = records_of(&samples);
    use crate::report::measurement as m;
    for underlay in variants {
        if stop.load(Ordering::Relaxed) {
            return Err(SuiteError::Stopped);
        }
        let result = jumbo::run(s, underlay, &mut |msg| progress.step(msg));
        let rows =
            [PathKind::KernelVxlan, PathKind::OursVxlan].map(|p| (p, underlay.measurement()));
        let what = match underlay {
            jumbo::Underlay::Jumbo => "jumbo TCP",
            jumbo::Underlay::Ipv6 => "IPv6 TCP",
        };
        records.extend(rows_or_failure(
            result,
            what,
            &rows,
            "Gbit/s",
            &mut progress,
        ));
    }
    if do_failover {
        for kind in failover_kinds {
            if stop.load(Ordering::Relaxed) {
                return Err(SuiteError::Stopped);
            }
            let result = failover::run(s, kind, &mut |msg| progress.step(msg));
            let rows = [(kind, m::FAILOVER_PLANNED), (kind, m::FAILOVER_UNPLANNED)];
            let what = format!("{kind}: failover trials");
            records.extend(rows_or_failure(result, &what, &rows, "ms", &mut progress));
        }
    }
    if do_uplinks {
        if stop.load(Ordering::Relaxed) {
            return Err(SuiteError::Stopped);
        }
        let result = uplinks::run(s, &mut |msg| progress.step(msg));
        let rows = [m::UPLINK_CARRIER, m::UPLINK_DEVICE].map(|x| (PathKind::OursVxlan, x));
        records.extend(rows_or_failure(
            result,
            "uplink trials",
            &rows,
            "ms",
            &mut progress,
        ));
    }
    if do_soak {
        if stop.load(Ordering::Relaxed) {
            return Err(SuiteError::Stopped);
        }
        let result = soak::run(s, &mut |msg| progress.step(msg));
        let rows = [m::SOAK_PLANNED, m::SOAK_UNPLANNED].map(|x| (PathKind::OursVxlan, x));
        records.extend(rows_or_failure(
            result,
            "draining soak",
            &rows,
            "failed requests",
            &mut progress,
        ));
    }
    Ok(Run {
        started_utc: utc_seconds(started),
        seconds: t0.elapsed().as_secs_f64(),
        quick: s.quick,
        git_rev: s.git_rev.clone(),
        machine: Machine::detect(),
        settings: s.as_map(),
        records,
    })
}

/// The records of a step run after the main measurements, or, when it failed, its `rows`
/// (path, measurement) without values and with the error as their note: a failed step costs
/// its rows, not the measurements already taken.
fn rows_or_failure(
    result: Result<Vec<Record>, SuiteError>,
    what: &str,
    rows: &[(PathKind, &str)],
    unit: &str,
    progress: &mut Progress,
) -> Vec<Record> {
    let e = match result {
        Ok(r) => return r,
        Err(e) => e,
    };
    let msg = format!("{what} failed: {e}");
    progress.line(&msg);
    let short: String = msg.chars().take(300).collect();
    rows.iter()
        .map(|&(path, measurement)| Record {
            path,
            measurement: measurement.to_string(),
            unit: unit.into(),
            median: f64::NAN,
            samples: Vec::new(),
            extra: BTreeMap::new(),
            curve: Vec::new(),
            note: Some(short.clone()),
        })
        .collect()
}

/// `2026-11-23T10:04:05Z`.
fn utc_seconds(t: SystemTime) -> String {
    let full = rfc3339_micros(t);
    match full.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => full,
    }
}

/// What each destination host runs for the whole benchmark, and the tools run against it.
struct Servers {
    rtt_probe: String,
    xdp_gen: String,
    dataplane: String,
}

impl Servers {
    fn start(lab: &mut Lab, s: &Settings, routes: &[Route]) -> Result<Servers, SuiteError> {
        let rtt_probe = s.bin("rtt-probe")?;
        let xdp_gen = s.bin("xdp-gen")?;
        let dataplane = s.bin("dataplane")?;
        let mut dsts: Vec<&str> = routes.iter().map(|r| r.dst).collect();
        dsts.dedup();
        let mut echoes = Vec::new();
        for d in dsts {
            let port = IPERF_PORT.to_string();
            lab.spawn(
                d,
                &["iperf3", "-s", "-p", &port, "--forceflush"],
                &format!("{d}-iperf3"),
            )?;
            let bind = format!("0.0.0.0:{ECHO_PORT}");
            echoes.push(lab.spawn(
                d,
                &[rtt_probe.as_str(), "echo", "--bind", &bind],
                &format!("{d}-echo"),
            )?);
        }
        // Both announce themselves once listening; iperf3 says "Server listening".
        let deadline = Instant::now() + Duration::from_secs(10);
        for e in &echoes {
            let iperf_log = e.log.with_file_name(format!("{}-iperf3.log", e.host));
            loop {
                let echo = std::fs::read_to_string(&e.log).unwrap_or_default();
                let iperf = std::fs::read_to_string(&iperf_log).unwrap_or_default();
                if echo.contains("echoing on") && iperf.contains("listening") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(step_err(
                        format!("servers on {}", e.host),
                        format!("not ready after 10 s:\n{echo}\n{iperf}"),
                    ));
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Servers {
            rtt_probe,
            xdp_gen,
            dataplane,
        })
    }
}

/// The address the path's traffic goes to.
fn dst_addr(lab: &Lab, r: &Route) -> Result<Ipv4Addr, SuiteError> {
    let a = match r.path {
        PathKind::Underlay => lab.underlay_ip(r.dst),
        _ => lab.overlay_ip(r.dst),
    };
    a.ok_or_else(|| step_err(format!("address of {}", r.dst), "unknown host"))
}

/// Runs a command in a host's namespace; its stdout, or an error with its stderr.
fn exec(lab: &Lab, host: &str, args: &[&str], timeout: Duration) -> Result<String, SuiteError> {
    let out = lab.exec(host, args, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(step_err(
            format!("{} on {host}", args.join(" ")),
            format!(
                "{}\n{}",
                out.status,
                ovl_lab::tail_text(
                    &format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
                    15
                )
            ),
        ));
    }
    Ok(stdout)
}

fn measure_rep(
    lab: &Lab,
    servers: &Servers,
    s: &Settings,
    r: &Route,
    rep: usize,
    samples: &mut Samples,
    progress: &mut Progress,
) -> Result<(), SuiteError> {
    let dst = dst_addr(lab, r)?;
    let p = r.path;
    let tag = format!("{p} rep {rep}/{}", s.reps);

    for streams in [1u32, 2] {
        // Which of our paths carried the bytes: both ends' counters around the run.
        let carried = |lab: &Lab| -> Result<Option<[DpStats; 2]>, SuiteError> {
            if !p.is_ours() || streams != 1 {
                return Ok(None);
            }
            Ok(Some([
                dp_stats(lab, servers, r, r.src)?,
                dp_stats(lab, servers, r, r.dst)?,
            ]))
        };
        let before = carried(lab)?;
        let (res, cpu) = tcp(lab, r, dst, streams, s.tcp_secs)?;
        let after = carried(lab)?;
        let gbps = res.received_bps / 1e9;
        let m = if streams == 1 { "tcp_1" } else { "tcp_2" };
        samples.push(p, m, gbps);
        samples.push_extra(p, m, "retransmits", res.retransmits as f64);
        if let (Some([sb, db]), Some([sa, da])) = (&before, &after) {
            let fast =
                sa.tx.fast.saturating_sub(sb.tx.fast) + da.rx.fast.saturating_sub(db.rx.fast);
            let workers = sa.tx.workers.saturating_sub(sb.tx.workers)
                + da.rx.workers.saturating_sub(db.rx.workers);
            if let Some(share) = fast_share(r, fast, workers, rep, samples, m) {
                samples.push_extra(p, m, "fast_path_share", share);
            }
        }
        let mut msg = format!("{tag}: TCP {streams} stream(s) {gbps:.2} Gbit/s");
        if streams == 1 && gbps > 0.0 {
            let per_gbit = cpu.busy_s / (gbps * res.seconds);
            samples.push(p, "cpu_per_gbit", per_gbit);
            msg.push_str(&format!(", {per_gbit:.2} CPU-s/Gbit"));
        }
        progress.step(&msg);
    }

    let rtt = rtt(lab, servers, s, r, dst)?;
    progress.step(&format!(
        "{tag}: RTT p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us ({} lost)",
        rtt.p50_us, rtt.p99_us, rtt.p999_us, rtt.lost
    ));
    samples.push(p, "rtt", rtt.p50_us);
    samples.rtt.entry(p).or_default().push(rtt);

    let f = frames(lab, servers, s, r)?;
    samples.push(p, "frames_64", f.delivered_mpps);
    samples.push_extra(p, "frames_64", "offered", f.offered_mpps);
    samples.push_extra(p, "frames_64", "sink_cpu_busy", f.sink_busy);
    samples.push_extra(p, "frames_64", "gen_cpu_busy", f.gen_busy);
    samples.push_extra(p, "frames_64", "sink_cpu_softirq", f.sink_softirq);
    samples.push_extra(p, "frames_64", "gen_cpu_softirq", f.gen_softirq);
    if let Some((fast, workers)) = f.carried
        && let Some(share) = fast_share(r, fast, workers, rep, samples, "frames_64")
    {
        samples.push_extra(p, "frames_64", "fast_path_share", share);
    }
    if f.sink_busy > 0.05 {
        samples.push_extra(p, "frames_64", "per_core", f.delivered_mpps / f.sink_busy);
    }
    samples.push_extra(p, "frames_64", "xdp_frames", if f.live { 1.0 } else { 0.0 });
    if s.frames_via == FramesVia::XdpLive && !f.live {
        samples.note(
            p,
            "frames_64",
            "generator",
            "sent as skbs through an AF_XDP socket, not as XDP frames like the other paths: \
             live XDP frames return to the generator's page pool with what the receiver wrote \
             into them, and in afxdp mode our program writes its metadata over every frame's \
             outer headers; per core here includes the veth's copy of each skb"
                .to_string(),
        );
    }
    if let Some(passed) = f.passed
        && passed as f64 > ALTERED_SHARE * f.sent as f64
    {
        samples.note(
            p,
            "frames_64",
            "altered",
            format!(
                "{passed} of the {} frames sent in rep {rep} reached the receiver's program as \
                 not overlay traffic for it (its pass counters): they arrived altered, and the \
                 rate is not this path's",
                f.sent
            ),
        );
    }
    if f.gen_softirq > GEN_SOFTIRQ_LEAK {
        // The generator's side of a veth runs no softirq of its own worth counting (its
        // transmit runs in the generator's system calls): receive work that ran there escaped
        // the steering, and per core counts only the sink's share of it.
        samples.note(
            p,
            "frames_64",
            "steering",
            format!(
                "{:.0}% of the generator CPU's time went to softirqs in rep {rep}: part of the \
                 receiver's work ran outside the sink core, so per core flatters this path",
                f.gen_softirq * 100.0
            ),
        );
    }
    if f.sink_busy < 0.9 && f.delivered_mpps >= 0.9 * f.offered_mpps {
        // All of the receiver's work is steered to the sink core (see `frames`): below
        // saturation, with (nearly) everything delivered, the sending side was the limit, and
        // "per core" extrapolates. (With frames dropped at the receiver, an idle share of the
        // sink core is the generator's pauses between its calls.)
        samples.note(
            p,
            "frames_64",
            "saturation",
            format!(
                "{p}: the sink core was {:.0}% busy in rep {rep}: the sending side (the \
                 generator and the veth's transmit) was the limit, and per core extrapolates",
                f.sink_busy * 100.0
            ),
        );
    }
    progress.step(&format!(
        "{tag}: 64 B frames {:.3} Mframes/s delivered of {:.3} offered; sink CPU {:.0}% busy \
         ({:.0}% softirq), generator CPU {:.0}% ({:.0}% softirq)",
        f.delivered_mpps,
        f.offered_mpps,
        f.sink_busy * 100.0,
        f.sink_softirq * 100.0,
        f.gen_busy * 100.0,
        f.gen_softirq * 100.0
    ));
    Ok(())
}

/// One iperf3 run; the machine's CPU time over it.
fn tcp(
    lab: &Lab,
    r: &Route,
    dst: Ipv4Addr,
    streams: u32,
    secs: u32,
) -> Result<(IperfResult, CpuDelta), SuiteError> {
    let (d, p, t, n) = (
        dst.to_string(),
        IPERF_PORT.to_string(),
        secs.to_string(),
        streams.to_string(),
    );
    let args = ["iperf3", "-c", &d, "-p", &p, "-t", &t, "-P", &n, "-J"];
    let timeout = Duration::from_secs(u64::from(secs) + 20);
    let mut last = None;
    // A server left busy by an aborted client answers "the server is busy": one retry.
    for _ in 0..2 {
        let before = SystemCpu::read().map_err(|e| step_err("read /proc/stat", e))?;
        let out = lab.exec(r.src, &args, timeout)?;
        let after = SystemCpu::read().map_err(|e| step_err("read /proc/stat", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match parse_iperf3(&text) {
            Ok(res) => return Ok((res, after.busy_seconds_since(&before))),
            Err(e) => {
                last = Some(e.to_string());
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
    Err(step_err(
        format!("iperf3 {} -> {dst} ({})", r.src, r.path),
        last.unwrap_or_default(),
    ))
}

fn rtt(
    lab: &Lab,
    servers: &Servers,
    s: &Settings,
    r: &Route,
    dst: Ipv4Addr,
) -> Result<RttReport, SuiteError> {
    let target = format!("{dst}:{ECHO_PORT}");
    let count = s.rtt_count.to_string();
    let iv = s.rtt_interval_us.to_string();
    let timeout = Duration::from_micros(s.rtt_count * s.rtt_interval_us) + Duration::from_secs(30);
    let out = exec(
        lab,
        r.src,
        &[
            servers.rtt_probe.as_str(),
            "client",
            "--target",
            &target,
            "--count",
            &count,
            "--interval-us",
            &iv,
            "--json",
        ],
        timeout,
    )?;
    serde_json::from_str(out.trim())
        .map_err(|e| step_err(format!("rtt-probe JSON ({})", r.path), e))
}

struct FrameResult {
    /// Frames the generator sent.
    sent: u64,
    offered_mpps: f64,
    delivered_mpps: f64,
    /// Busy fraction (0..1) of the sink's and of the generator's CPU over the run.
    sink_busy: f64,
    gen_busy: f64,
    /// Fraction (0..1) of the sink's and of the generator's CPU time spent in softirqs: where
    /// the receive work ran that is not in a thread of its own.
    sink_softirq: f64,
    gen_softirq: f64,
    /// Our receiver's decapsulated bytes: (fast path, workers); `None` on the kernel's paths.
    carried: Option<(u64, u64)>,
    /// Frames our receiver's program passed to the kernel during the test; `None` on the
    /// kernel's paths.
    passed: Option<u64>,
    /// Whether the frames went as XDP frames (else as skbs).
    live: bool,
}

/// Bytes one of our data planes carried in one direction, by who carried them.
#[derive(Clone, Copy, Debug, Default)]
struct Carried {
    /// The XDP/TC fast path.
    fast: u64,
    /// The AF_XDP workers.
    workers: u64,
}

/// What `dataplane stats --json` says about one of our hosts.
#[derive(Clone, Debug)]
struct DpStats {
    /// Decapsulated (underlay to overlay port) and encapsulated (overlay port to underlay).
    rx: Carried,
    tx: Carried,
    /// Frames the underlay program passed to the kernel as not overlay traffic for us (its
    /// `pass_*` counters): a frame of the test counted here arrived altered.
    passed: u64,
}

/// Asks host `host`'s data plane for its counters, and checks that it runs in the mode the
/// route's results are labelled with.
fn dp_stats(lab: &Lab, servers: &Servers, r: &Route, host: &str) -> Result<DpStats, SuiteError> {
    let sock = lab.control_socket(host).to_string_lossy().into_owned();
    let out = exec(
        lab,
        host,
        &[
            servers.dataplane.as_str(),
            "stats",
            "--socket",
            &sock,
            "--json",
        ],
        Duration::from_secs(10),
    )?;
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| step_err(format!("dataplane stats JSON of {host}"), e))?;
    parse_dp_stats(&v, r.mode()).map_err(|e| step_err(format!("dataplane stats of {host}"), e))
}

/// The per-VNI byte counters of a `dataplane stats --json` snapshot: `fast` (the fast path's)
/// and every queue's `ports` (the workers'). An error when the snapshot names a mode other
/// than `expect`: the numbers would be labelled with the wrong path.
fn parse_dp_stats(v: &serde_json::Value, expect: Option<DatapathMode>) -> Result<DpStats, String> {
    let sum = |ports: &serde_json::Value, key: &str| -> u64 {
        ports
            .as_array()
            .map(|a| a.iter().filter_map(|p| p[key].as_u64()).sum())
            .unwrap_or(0)
    };
    let queues = v["queues"]
        .as_array()
        .ok_or_else(|| format!("no queues in {v}"))?;
    let workers = |key: &str| queues.iter().map(|q| sum(&q["ports"], key)).sum::<u64>();
    let mode = v["mode"].as_str().unwrap_or_default();
    if let Some(m) = expect
        && mode != m.as_str()
    {
        return Err(format!(
            "runs in mode `{mode}`, the benchmark expects `{}`",
            m.as_str()
        ));
    }
    // `xdp` is a list of [name, count] pairs.
    let passed = v["xdp"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c[0].as_str().is_some_and(|n| n.starts_with("pass_")))
                .filter_map(|c| c[1].as_u64())
                .sum()
        })
        .unwrap_or(0);
    Ok(DpStats {
        passed,
        rx: Carried {
            fast: sum(&v["fast"], "rx_bytes"),
            workers: workers("rx_bytes"),
        },
        tx: Carried {
            fast: sum(&v["fast"], "tx_bytes"),
            workers: workers("tx_bytes"),
        },
    })
}

/// The fast path's share of the bytes our data planes carried in a measurement, with a note
/// on the record when that does not match the route's mode: nearly everything on the fast
/// path in xdp mode (the workers only learn new sources and flood), nothing in afxdp mode.
fn fast_share(
    r: &Route,
    fast: u64,
    workers: u64,
    rep: usize,
    samples: &mut Samples,
    m: &'static str,
) -> Option<f64> {
    let total = fast + workers;
    if total == 0 {
        return None;
    }
    let share = fast as f64 / total as f64;
    let what = if m == "frames_64" {
        "the frames"
    } else {
        "the bytes"
    };
    match r.mode() {
        Some(DatapathMode::Xdp) if share < FAST_SHARE_XDP => samples.note(
            r.path,
            m,
            "fast_path",
            format!(
                "only {:.1}% of {what} took the fast path in rep {rep} (xdp mode); the rest \
                 went through the AF_XDP workers",
                share * 100.0
            ),
        ),
        Some(DatapathMode::Afxdp) if fast > 0 => samples.note(
            r.path,
            m,
            "fast_path",
            format!(
                "{:.1}% of {what} took the fast path in rep {rep}, although the data plane \
                 runs in afxdp mode",
                share * 100.0
            ),
        ),
        _ => {}
    }
    Some(share)
}

/// Above this share of the frames sent passed to the kernel by our receiver's program, the
/// frames arrived altered (measured: 0.03 %, the first frames of a new source, which the
/// worker learns from).
const ALTERED_SHARE: f64 = 0.01;

/// Above this share of the generator CPU's time in softirqs, the frame test's steering leaked
/// (measured: 0 % on every path when it works).
const GEN_SOFTIRQ_LEAK: f64 = 0.05;

/// Below this share of the bytes on the fast path, an xdp-mode measurement gets a note.
const FAST_SHARE_XDP: f64 = 0.95;

fn read_file_in(lab: &Lab, host: &str, path: &str) -> Result<String, SuiteError> {
    Ok(exec(lab, host, &["cat", path], Duration::from_secs(5))?
        .trim()
        .to_string())
}

fn rx_packets(lab: &Lab, host: &str, dev: &str) -> Result<u64, SuiteError> {
    let path = format!("/sys/class/net/{dev}/statistics/rx_packets");
    read_file_in(lab, host, &path)?
        .parse()
        .map_err(|e| step_err(format!("rx_packets of {dev} on {host}"), e))
}

/// Steers the receive work of `host`'s underlay (after XDP) to `mask` (RPS; 0 = off).
fn set_rps(lab: &Lab, host: &str, mask: u32) -> Result<(), SuiteError> {
    let script =
        format!("for f in /sys/class/net/eth0/queues/rx-*/rps_cpus; do echo {mask:x} > $f; done");
    exec(lab, host, &["sh", "-c", &script], Duration::from_secs(5)).map(|_| ())
}

/// Turns generic receive offload on `host`'s underlay on or off.
fn set_gro(lab: &Lab, host: &str, on: bool) -> Result<(), SuiteError> {
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
struct Steering {
    host: &'static str,
    gro: bool,
    rps: bool,
    napi: Option<NapiThread>,
}

impl Steering {
    /// Undoes everything, in reverse; the first error, if any.
    fn undo(self, lab: &Lab) -> Result<(), SuiteError> {
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
struct NapiThread {
    host: &'static str,
}

impl NapiThread {
    fn steer(lab: &Lab, host: &'static str, cpu: u32) -> Result<NapiThread, SuiteError> {
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

/// 64-byte frames from the router straight into the receiving host's underlay veth,
/// addressed as the path's traffic from its sending host; delivered = what the path's
/// interface on the receiver got.
fn frames(
    lab: &Lab,
    servers: &Servers,
    s: &Settings,
    r: &Route,
) -> Result<FrameResult, SuiteError> {
    let port = format!("to-{}", r.dst);
    let fab_mac = read_file_in(lab, FABRIC, &format!("/sys/class/net/{port}/address"))?;
    let dst_mac = read_file_in(lab, r.dst, "/sys/class/net/eth0/address")?;
    let src_ip = lab
        .underlay_ip(r.src)
        .ok_or_else(|| step_err("underlay address", r.src))?
        .to_string();
    let dst_ip = lab
        .underlay_ip(r.dst)
        .ok_or_else(|| step_err("underlay address", r.dst))?
        .to_string();
    let (encap, vni, dport) = match r.encap() {
        None => ("none", 0, 9),
        Some((ovl_lab::Encap::Vxlan, vni, port)) => ("vxlan", vni, port),
        Some((ovl_lab::Encap::Geneve, vni, port)) => ("geneve", vni, port),
    };
    let inner_src = lab::overlay_addr(r.path, 1).to_string();
    let inner_dst = lab::overlay_addr(r.path, 2).to_string();
    let (vni_s, dport_s, dur, cpu) = (
        vni.to_string(),
        dport.to_string(),
        s.frames_ms.to_string(),
        s.gen_cpu.to_string(),
    );
    let mut args = vec![
        servers.xdp_gen.as_str(),
        "--iface",
        &port,
        "--src-mac",
        &fab_mac,
        "--dst-mac",
        &dst_mac,
        "--src-ip",
        &src_ip,
        "--dst-ip",
        &dst_ip,
        "--dst-port",
        &dport_s,
        "--src-ports",
        "1024-1087",
        "--encap",
        encap,
        "--duration-ms",
        &dur,
        "--cpu",
        &cpu,
        "--json",
    ];
    if encap != "none" {
        // The inner frames are for another MAC on the segment: the receiving kernel counts
        // them on the overlay interface and drops them at once, the same work on every path.
        args.extend([
            "--vni",
            &vni_s,
            "--inner-src-mac",
            "02:be:00:00:00:01",
            "--inner-dst-mac",
            "02:be:00:00:00:02",
            "--inner-src-ip",
            &inner_src,
            "--inner-dst-ip",
            &inner_dst,
            "--inner-dst-port",
            "9",
        ]);
    }
    // Live frames' pages come back to the generator's page pool once the receiver is done
    // with them, with whatever the receiver wrote into them, and are sent again as they are.
    // In afxdp mode our program writes its metadata over every frame's outer headers, so that
    // path would be sent corrupted frames: it gets skbs (and a note says so).
    let live = s.frames_via == FramesVia::XdpLive && r.mode() != Some(DatapathMode::Afxdp);
    if live {
        args.extend(["--mode", "xdp-live"]);
    }
    let sink = r.sink_dev(lab.spec());
    let dp_before = if r.path.is_ours() {
        Some(dp_stats(lab, servers, r, r.dst)?)
    } else {
        None
    };
    // All of the receiver's work goes to the sink CPU:
    // - frames as skbs (`FramesVia::Skb`), the kernel's paths: no XDP on the receiver's eth0,
    //   so the veth hands each frame to the backlog, and RPS moves all of the receive (IP,
    //   UDP, VXLAN, the vxlan device's GRO cell, the inner stack) to the sink CPU;
    // - XDP frames (`FramesVia::XdpLive`), the kernel's paths: they arrive in eth0's NAPI,
    //   which needs GRO on there (as a NIC has it), and that NAPI runs threaded, its thread
    //   pinned to the sink CPU, the whole stack after it in that thread (no RPS: it would only
    //   queue the frames once more on the same CPU);
    // - ours, either way: the XDP program runs in eth0's NAPI poll, which a veth runs on the
    //   sender's CPU; in a kernel thread pinned to the sink CPU instead. In xdp mode the
    //   program redirects into the overlay veth, whose NAPI that thread schedules, so the
    //   kernel side runs as a softirq on the same CPU; in afxdp mode the worker (pinned to
    //   the sink CPU by the settings) copies each frame there, and the overlay veth's receive
    //   runs in the worker's context.
    let mut steering = Steering {
        host: r.dst,
        gro: false,
        rps: false,
        napi: None,
    };
    let set_up = (|| {
        if live && !r.path.is_ours() {
            set_gro(lab, r.dst, true)?;
            steering.gro = true;
        }
        if !live {
            set_rps(lab, r.dst, 1 << s.sink_cpu)?;
            steering.rps = true;
        }
        if live || r.path.is_ours() {
            steering.napi = Some(NapiThread::steer(lab, r.dst, s.sink_cpu)?);
        }
        Ok::<_, SuiteError>(())
    })();
    if let Err(e) = set_up {
        let _ = steering.undo(lab);
        return Err(e);
    }
    let measured = (|| {
        let before = rx_packets(lab, r.dst, &sink)?;
        let cpu0 = SystemCpu::read_per_cpu().map_err(|e| step_err("read /proc/stat", e))?;
        let out = exec(
            lab,
            FABRIC,
            &args,
            Duration::from_millis(s.frames_ms) + Duration::from_secs(20),
        );
        let cpu1 = SystemCpu::read_per_cpu().map_err(|e| step_err("read /proc/stat", e))?;
        // Frames still in flight land within a few milliseconds.
        thread::sleep(Duration::from_millis(100));
        let after = rx_packets(lab, r.dst, &sink)?;
        Ok::<_, SuiteError>((before, after, cpu0, cpu1, out))
    })();
    // Undone whatever happened in between.
    let undone = steering.undo(lab);
    let (before, after, cpu0, cpu1, out) = measured?;
    undone?;
    let (carried, passed) = match dp_before {
        Some(b) => {
            let a = dp_stats(lab, servers, r, r.dst)?;
            (
                Some((
                    a.rx.fast.saturating_sub(b.rx.fast),
                    a.rx.workers.saturating_sub(b.rx.workers),
                )),
                Some(a.passed.saturating_sub(b.passed)),
            )
        }
        None => (None, None),
    };
    let gen_report: GenReport = serde_json::from_str(out?.trim())
        .map_err(|e| step_err(format!("xdp-gen JSON ({})", r.path), e))?;
    // (busy, softirq) fractions of one CPU over the run.
    let share = |cpu: u32| {
        let (a, b) = (cpu0.get(cpu as usize), cpu1.get(cpu as usize));
        match (a, b) {
            (Some(a), Some(b)) => {
                let d = b.busy_seconds_since(a);
                if d.total_s > 0.0 {
                    (d.busy_s / d.total_s, d.softirq_s / d.total_s)
                } else {
                    (0.0, 0.0)
                }
            }
            _ => (0.0, 0.0),
        }
    };
    let secs = gen_report.seconds.max(1e-3);
    let (sink_busy, sink_softirq) = share(s.sink_cpu);
    let (gen_busy, gen_softirq) = share(s.gen_cpu);
    Ok(FrameResult {
        sent: gen_report.sent,
        offered_mpps: gen_report.sent as f64 / secs / 1e6,
        delivered_mpps: after.saturating_sub(before) as f64 / secs / 1e6,
        sink_busy,
        gen_busy,
        sink_softirq,
        gen_softirq,
        carried,
        passed,
        live,
    })
}

/// Turns the samples into one record per path and measurement.
fn records_of(s: &Samples) -> Vec<Record> {
    let unit = |m: &str| match m {
        "tcp_1" | "tcp_2" => "Gbit/s",
        "cpu_per_gbit" => "CPU-s/Gbit",
        "frames_64" => "Mframes/s",
        "rtt" => "us",
        _ => "",
    };
    let mut out = Vec::new();
    for (&(p, m), values) in &s.values {
        let mut extra = BTreeMap::new();
        for (&(ep, em, k), v) in &s.extra {
            if ep == p
                && em == m
                && let Some(x) = median(v)
            {
                extra.insert(k.to_string(), x);
            }
        }
        let mut curve = Vec::new();
        if m == "rtt"
            && let Some(reps) = s.rtt.get(&p)
        {
            // Each percentile's median over the repetitions; the curve of the median rep.
            let pick = |f: fn(&RttReport) -> f64| {
                median(&reps.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            extra.insert("p50".into(), pick(|r| r.p50_us));
            extra.insert("p90".into(), pick(|r| r.p90_us));
            extra.insert("p99".into(), pick(|r| r.p99_us));
            extra.insert("p999".into(), pick(|r| r.p999_us));
            extra.insert("max".into(), pick(|r| r.max_us));
            extra.insert(
                "lost".into(),
                reps.iter().map(|r| r.lost as f64).sum::<f64>(),
            );
            let mut by_p50: Vec<&RttReport> = reps.iter().collect();
            by_p50.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
            if let Some(mid) = by_p50.get(by_p50.len() / 2) {
                curve.clone_from(&mid.curve);
            }
        }
        out.push(Record {
            path: p,
            measurement: m.to_string(),
            unit: unit(m).to_string(),
            median: median(values).unwrap_or(f64::NAN),
            samples: values.clone(),
            extra,
            curve,
            note: s.notes_of(p, m),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(mode: &str, fast_rx: u64, worker_rx: u64) -> serde_json::Value {
        serde_json::json!({
            "mode": mode,
            "queues": [
                {"queue": 0, "ports": [{"vni": 20, "rx_bytes": worker_rx, "tx_bytes": 7}]},
                {"queue": 1, "ports": [{"vni": 20, "rx_bytes": 1, "tx_bytes": 1}]}
            ],
            "fast": [{"vni": 20, "rx_bytes": fast_rx, "tx_bytes": 50}],
            "xdp": [["pass_non_ip", 2], ["pass_other_udp", 5], ["rx_vxlan", 9]]
        })
    }

    #[test]
    fn data_plane_counters_by_carrier_and_mode() {
        let s = parse_dp_stats(&snapshot("xdp", 100, 5), Some(DatapathMode::Xdp)).unwrap();
        assert_eq!((s.rx.fast, s.rx.workers), (100, 6));
        assert_eq!((s.tx.fast, s.tx.workers), (50, 8));
        assert_eq!(s.passed, 7, "the pass_ counters only");
        // A data plane in another mode than the path's label is an error, not a number.
        let err = parse_dp_stats(&snapshot("afxdp", 0, 5), Some(DatapathMode::Xdp)).unwrap_err();
        assert!(err.contains("afxdp"), "{err}");
        // No fast-path counters (afxdp mode, or an older data plane): zero.
        let mut v = snapshot("afxdp", 0, 5);
        v.as_object_mut().unwrap().remove("fast");
        let s = parse_dp_stats(&v, Some(DatapathMode::Afxdp)).unwrap();
        assert_eq!((s.rx.fast, s.rx.workers), (0, 6));
        assert!(parse_dp_stats(&serde_json::json!({"mode": "xdp"}), None).is_err());
    }

    #[test]
    fn a_share_that_does_not_match_the_mode_is_noted() {
        let route = |p| Route::of(p).unwrap();
        let mut s = Samples::default();
        let share = fast_share(&route(PathKind::OursVxlan), 99, 1, 1, &mut s, "tcp_1");
        assert_eq!(share, Some(0.99));
        assert!(s.notes.is_empty());
        fast_share(&route(PathKind::OursVxlan), 50, 50, 2, &mut s, "tcp_1");
        let note = s.notes_of(PathKind::OursVxlan, "tcp_1").unwrap();
        assert!(
            note.contains("only 50.0% of the bytes") && note.contains("rep 2"),
            "{note}"
        );
        assert_eq!(
            fast_share(
                &route(PathKind::OursVxlanAfxdp),
                0,
                10,
                1,
                &mut s,
                "frames_64"
            ),
            Some(0.0)
        );
        assert!(s.notes_of(PathKind::OursVxlanAfxdp, "frames_64").is_none());
        fast_share(
            &route(PathKind::OursVxlanAfxdp),
            1,
            10,
            1,
            &mut s,
            "frames_64",
        );
        assert!(s.notes_of(PathKind::OursVxlanAfxdp, "frames_64").is_some());
        assert_eq!(
            fast_share(&route(PathKind::OursGeneve), 0, 0, 1, &mut s, "tcp_1"),
            None
        );
        // Notes of different kinds on one record are joined.
        s.note(PathKind::OursVxlan, "tcp_1", "other", "second".into());
        let joined = s.notes_of(PathKind::OursVxlan, "tcp_1").unwrap();
        assert!(joined.contains("; second"), "{joined}");
    }
}
