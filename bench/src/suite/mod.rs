//! The benchmark runner behind `cargo xtask bench`: brings up the lab, measures every path in
//! the same run (repetitions interleaved across paths, so a slow minute of the shared VM hits
//! all of them), and returns a [`Run`] of records for the report.

mod failover;
mod frames;
mod jumbo;
pub mod lab;
mod measure;
mod records;
pub mod soak;
mod tuning;
mod uplinks;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Instant, SystemTime},
};

use ovl_lab::{Lab, LabError, WorkerTuning};
use thiserror::Error;

use crate::{
    report::{Machine, PathKind, Record, Run},
    workload::rfc3339_micros,
};
use lab::Route;
use measure::{Rep, Servers, measure_rep};
use records::{Measure, Samples, records_of};

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
            frames_via: FramesVia::detect(),
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
    /// XDP frames where the kernel runs live frames, else skbs (saying so once): a kernel
    /// before 5.18, or a build that refuses them (this lab's 6.18 build since 2026-12-07).
    pub fn detect() -> FramesVia {
        static CHOICE: std::sync::OnceLock<FramesVia> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| match crate::traffic::live_frames_refused() {
            None => FramesVia::XdpLive,
            Some(why) => {
                eprintln!("ovl-bench: frames go as skbs (--frames-via skb): {why}");
                FramesVia::Skb
            }
        })
    }

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
                stopped(stop)?;
                let at = Rep {
                    lab: &lab,
                    servers: &servers,
                    s,
                    r,
                    n: rep,
                };
                measure_rep(&at, &mut samples, &mut progress)?;
            }
        }
    }
    let mut records = records_of(&samples);
    for underlay in variants {
        let rows =
            [PathKind::KernelVxlan, PathKind::OursVxlan].map(|p| (p, underlay.measurement()));
        let what = match underlay {
            jumbo::Underlay::Jumbo => "jumbo TCP",
            jumbo::Underlay::Ipv6 => "IPv6 TCP",
        };
        records.extend(late_step(stop, &mut progress, what, &rows, |p| {
            jumbo::run(s, underlay, p)
        })?);
    }
    if do_failover {
        for kind in failover_kinds {
            let rows = [Measure::FailoverPlanned, Measure::FailoverUnplanned].map(|x| (kind, x));
            let what = format!("{kind}: failover trials");
            records.extend(late_step(stop, &mut progress, &what, &rows, |p| {
                failover::run(s, kind, p)
            })?);
        }
    }
    if do_uplinks {
        let rows =
            [Measure::UplinkCarrier, Measure::UplinkDevice].map(|x| (PathKind::OursVxlan, x));
        records.extend(late_step(
            stop,
            &mut progress,
            "uplink trials",
            &rows,
            |p| uplinks::run(s, p),
        )?);
    }
    if do_soak {
        let rows = [Measure::SoakPlanned, Measure::SoakUnplanned].map(|x| (PathKind::OursVxlan, x));
        records.extend(late_step(
            stop,
            &mut progress,
            "draining soak",
            &rows,
            |p| soak::run(s, p),
        )?);
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

/// [`SuiteError::Stopped`] once SIGINT/SIGTERM asked to stop.
fn stopped(stop: &AtomicBool) -> Result<(), SuiteError> {
    if stop.load(Ordering::Relaxed) {
        return Err(SuiteError::Stopped);
    }
    Ok(())
}

/// Runs a step after the main measurements (unless asked to stop): its records, or, when it
/// failed, its `rows` (path, measurement) without values and with the error as their note: a
/// failed step costs its rows, not the measurements already taken.
fn late_step(
    stop: &AtomicBool,
    progress: &mut Progress,
    what: &str,
    rows: &[(PathKind, Measure)],
    step: impl FnOnce(&mut dyn FnMut(&str)) -> Result<Vec<Record>, SuiteError>,
) -> Result<Vec<Record>, SuiteError> {
    stopped(stop)?;
    let e = match step(&mut |msg| progress.step(msg)) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let msg = format!("{what} failed: {e}");
    progress.line(&msg);
    let short: String = msg.chars().take(300).collect();
    Ok(rows
        .iter()
        .map(|&(path, m)| m.record(path, Vec::new(), BTreeMap::new(), Some(short.clone())))
        .collect())
}

/// `2026-11-23T10:04:05Z`.
fn utc_seconds(t: SystemTime) -> String {
    let full = rfc3339_micros(t);
    match full.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => full,
    }
}
