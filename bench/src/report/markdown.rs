//! The Markdown report: header, one table of medians and ratios, the targets, how to read it.

use std::fmt::Write as _;

use super::chart;
use super::format::{ratio, sig3, signed};
use super::record::{PathKind, Record, Run, measurement as m};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    fn label(self) -> &'static str {
        match self {
            Better::Higher => "↑ better",
            Better::Lower => "↓ better",
        }
    }
}

/// What a table row shows of a record.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The record's median, with the sample spread.
    Median(&'static str),
    /// A side value of the record.
    Extra(&'static str, &'static str),
    /// RTT p50 of the path minus the underlay's.
    AddedRtt,
}

struct Row {
    label: &'static str,
    better: Better,
    source: Source,
}

const ROWS: &[Row] = &[
    Row {
        label: "TCP 1 stream (Gbit/s)",
        better: Better::Higher,
        source: Source::Median(m::TCP_1),
    },
    Row {
        label: "TCP 2 streams (Gbit/s)",
        better: Better::Higher,
        source: Source::Median(m::TCP_2),
    },
    Row {
        label: "TCP 1 stream, MTU 9000 underlay (Gbit/s)",
        better: Better::Higher,
        source: Source::Median(m::TCP_1_JUMBO),
    },
    Row {
        label: "TCP 1 stream, IPv6 VTEPs (Gbit/s)",
        better: Better::Higher,
        source: Source::Median(m::TCP_1_IPV6),
    },
    Row {
        label: "CPU per Gbit (CPU-s/Gbit)",
        better: Better::Lower,
        source: Source::Median(m::CPU_PER_GBIT),
    },
    Row {
        label: "64 B frames (Mframes/s)",
        better: Better::Higher,
        source: Source::Median(m::FRAMES_64),
    },
    Row {
        label: "64 B frames per core (Mframes/s)",
        better: Better::Higher,
        source: Source::Extra(m::FRAMES_64, "per_core"),
    },
    Row {
        label: "RTT p50 (µs)",
        better: Better::Lower,
        source: Source::Median(m::RTT),
    },
    Row {
        label: "RTT p99 (µs)",
        better: Better::Lower,
        source: Source::Extra(m::RTT, "p99"),
    },
    Row {
        label: "RTT p99.9 (µs)",
        better: Better::Lower,
        source: Source::Extra(m::RTT, "p999"),
    },
    Row {
        label: "added RTT p50 over underlay (µs)",
        better: Better::Lower,
        source: Source::AddedRtt,
    },
    Row {
        label: "failover planned, median (ms)",
        better: Better::Lower,
        source: Source::Median(m::FAILOVER_PLANNED),
    },
    Row {
        label: "failover planned, max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::FAILOVER_PLANNED, "max"),
    },
    Row {
        label: "failover planned, failed requests per trial",
        better: Better::Lower,
        source: Source::Extra(m::FAILOVER_PLANNED, "failed_per_trial"),
    },
    Row {
        label: "drain soak: planned switchovers, failed requests per switchover",
        better: Better::Lower,
        source: Source::Median(m::SOAK_PLANNED),
    },
    Row {
        label: "drain soak: planned, keep-alive connections reset",
        better: Better::Lower,
        source: Source::Extra(m::SOAK_PLANNED, "connections_reset"),
    },
    Row {
        label: "drain soak: planned, gap median (ms)",
        better: Better::Lower,
        source: Source::Extra(m::SOAK_PLANNED, "gap_median"),
    },
    Row {
        label: "drain soak: planned, gap max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::SOAK_PLANNED, "gap_max"),
    },
    Row {
        label: "drain soak: kill -9, failed requests per failover",
        better: Better::Lower,
        source: Source::Median(m::SOAK_UNPLANNED),
    },
    Row {
        label: "drain soak: kill -9, gap median (ms)",
        better: Better::Lower,
        source: Source::Extra(m::SOAK_UNPLANNED, "gap_median"),
    },
    Row {
        label: "failover unplanned, median (ms)",
        better: Better::Lower,
        source: Source::Median(m::FAILOVER_UNPLANNED),
    },
    Row {
        label: "failover unplanned, max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::FAILOVER_UNPLANNED, "max"),
    },
    Row {
        label: "uplink carrier lost/back, gap median (ms)",
        better: Better::Lower,
        source: Source::Median(m::UPLINK_CARRIER),
    },
    Row {
        label: "uplink carrier lost/back, gap max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::UPLINK_CARRIER, "max"),
    },
    Row {
        label: "uplink carrier, 1 ms echoes lost per event",
        better: Better::Lower,
        source: Source::Extra(m::UPLINK_CARRIER, "missing_per_event"),
    },
    Row {
        label: "uplink device removed/returned, gap median (ms)",
        better: Better::Lower,
        source: Source::Median(m::UPLINK_DEVICE),
    },
    Row {
        label: "uplink device removed/returned, gap max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::UPLINK_DEVICE, "max"),
    },
    Row {
        label: "uplink device, 1 ms echoes lost per event",
        better: Better::Lower,
        source: Source::Extra(m::UPLINK_DEVICE, "missing_per_event"),
    },
];

/// Shown where a path has no record for a row.
const MISSING: &str = "–";
/// Shown for the underlay's own "added RTT" (zero by definition, not a measurement).
const NOT_APPLICABLE: &str = "—";

impl Row {
    /// The number the row shows for `path`, if any.
    fn value(&self, run: &Run, path: PathKind) -> Option<f64> {
        match self.source {
            Source::Median(meas) => run.value(path, meas),
            Source::Extra(meas, key) => {
                let r = run.record(path, meas)?;
                // rtt's median is its p50; failover's "max" falls back to the largest trial.
                r.extra_value(key).or_else(|| match key {
                    "max" => r.value().and(r.sample_range().map(|(_, hi)| hi)),
                    _ => None,
                })
            }
            Source::AddedRtt => run.added_rtt_p50(path),
        }
    }

    fn record<'a>(&self, run: &'a Run, path: PathKind) -> Option<&'a Record> {
        match self.source {
            Source::Median(meas) | Source::Extra(meas, _) => run.record(path, meas),
            Source::AddedRtt => run.record(path, m::RTT),
        }
    }

    /// The cell text: the value, its spread for a median of 3 or more samples.
    fn cell(&self, run: &Run, path: PathKind) -> String {
        if matches!(self.source, Source::AddedRtt) && path == PathKind::Underlay {
            return NOT_APPLICABLE.to_string();
        }
        let Some(v) = self.value(run, path) else {
            return MISSING.to_string();
        };
        match self.source {
            Source::AddedRtt => signed(v),
            Source::Median(_) => match self.record(run, path) {
                Some(r) if r.samples.len() >= 3 => match r.sample_range() {
                    Some((lo, hi)) => format!("{} ({}–{})", sig3(v), sig3(lo), sig3(hi)),
                    None => sig3(v),
                },
                _ => sig3(v),
            },
            Source::Extra(..) => sig3(v),
        }
    }

    /// ours / baseline for this row, when both are there and the baseline's is positive. For
    /// the added latency, the added latency against the baseline's (meaningless when the
    /// baseline adds nothing measurable).
    fn ratio(&self, run: &Run, path: PathKind, baseline: PathKind) -> Option<f64> {
        let (ours, base) = match self.source {
            Source::AddedRtt => (run.added_rtt_p50(path)?, run.added_rtt_p50(baseline)?),
            _ => (self.value(run, path)?, self.value(run, baseline)?),
        };
        (base > 0.0 && ours >= 0.0).then(|| ours / base)
    }
}

/// The outcome of one target for one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Reached; `value` is the ratio (or µs for a latency target).
    Met { value: f64 },
    /// Not reached; `value` is what was measured, `needed` the threshold.
    Missed { value: f64, needed: f64 },
    /// A record the target needs is absent.
    NotMeasured,
}

/// One of the project's performance targets, evaluated for one of our paths.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetResult {
    pub path: PathKind,
    /// Which target: 1-based, as listed in [`TARGETS`].
    pub target: usize,
    pub verdict: Verdict,
}

/// What a target asks of a path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The path's value of `measurement` (its side value `extra` when given) over the
    /// baseline's, at least `needed`.
    RatioAtLeast {
        measurement: &'static str,
        extra: Option<&'static str>,
        baseline: PathKind,
        needed: f64,
    },
    /// RTT p50 minus the underlay's, at most `max_us` µs.
    AddedRttAtMost { max_us: f64 },
}

/// A performance target and the paths it judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub what: &'static str,
    pub paths: &'static [PathKind],
    pub goal: Goal,
}

/// The fast path's rows: our data plane in xdp mode.
const FAST_PATH: &[PathKind] = &[PathKind::OursVxlan, PathKind::OursGeneve];
/// Every frame through the workers.
const AFXDP_MODE: &[PathKind] = &[PathKind::OursVxlanAfxdp];

/// The targets, in order.
pub const TARGETS: [Target; 5] = [
    Target {
        what: "TCP 1 stream vs kernel VXLAN ≥ ×1.5",
        paths: FAST_PATH,
        goal: Goal::RatioAtLeast {
            measurement: m::TCP_1,
            extra: None,
            baseline: PathKind::KernelVxlan,
            needed: 1.5,
        },
    },
    Target {
        what: "TCP 1 stream vs kernel VXLAN (offload on) ≥ ×0.9",
        paths: FAST_PATH,
        goal: Goal::RatioAtLeast {
            measurement: m::TCP_1,
            extra: None,
            baseline: PathKind::KernelVxlanBest,
            needed: 0.9,
        },
    },
    Target {
        what: "64 B frames per core vs kernel VXLAN ≥ ×3.0",
        paths: FAST_PATH,
        goal: Goal::RatioAtLeast {
            measurement: m::FRAMES_64,
            extra: Some("per_core"),
            baseline: PathKind::KernelVxlan,
            needed: 3.0,
        },
    },
    Target {
        what: "added RTT p50 over underlay ≤ 10 µs",
        paths: FAST_PATH,
        goal: Goal::AddedRttAtMost { max_us: 10.0 },
    },
    Target {
        what: "added RTT p50 over underlay, afxdp mode ≤ 50 µs",
        paths: AFXDP_MODE,
        goal: Goal::AddedRttAtMost { max_us: 50.0 },
    },
];

/// The paths any target judges, in report order: the target table's columns.
pub fn judged_paths() -> Vec<PathKind> {
    PathKind::ALL
        .into_iter()
        .filter(|p| TARGETS.iter().any(|t| t.paths.contains(p)))
        .collect()
}

fn at_least(value: Option<f64>, needed: f64) -> Verdict {
    match value {
        None => Verdict::NotMeasured,
        Some(value) if value >= needed => Verdict::Met { value },
        Some(value) => Verdict::Missed { value, needed },
    }
}

fn at_most(value: Option<f64>, max: f64) -> Verdict {
    match value {
        None => Verdict::NotMeasured,
        Some(value) if value <= max => Verdict::Met { value },
        Some(value) => Verdict::Missed { value, needed: max },
    }
}

impl Target {
    /// This target's verdict for `path` in `run`.
    pub fn judge(&self, run: &Run, path: PathKind) -> Verdict {
        match self.goal {
            Goal::RatioAtLeast {
                measurement,
                extra,
                baseline,
                needed,
            } => {
                let value = |p: PathKind| match extra {
                    None => run.value(p, measurement),
                    Some(key) => run.record(p, measurement)?.extra_value(key),
                };
                let ratio = match (value(path), value(baseline)) {
                    (Some(o), Some(b)) if b > 0.0 => Some(o / b),
                    _ => None,
                };
                at_least(ratio, needed)
            }
            Goal::AddedRttAtMost { max_us } => at_most(run.added_rtt_p50(path), max_us),
        }
    }

    fn is_latency(&self) -> bool {
        matches!(self.goal, Goal::AddedRttAtMost { .. })
    }
}

/// Every target for every path it judges, target by target (always the same list, measured
/// or not).
pub fn targets(run: &Run) -> Vec<TargetResult> {
    let mut out = Vec::new();
    for (i, t) in TARGETS.iter().enumerate() {
        for &path in t.paths {
            out.push(TargetResult {
                path,
                target: i + 1,
                verdict: t.judge(run, path),
            });
        }
    }
    out
}

/// A verdict as the report writes it: "met (×1.12)", "missed: ×0.52, needs ×1.5",
/// "met (+4.20 µs)", "missed: +14.3 µs, needs ≤ 10 µs", "not measured".
pub fn verdict_text(t: &TargetResult) -> String {
    let latency = t
        .target
        .checked_sub(1)
        .and_then(|i| TARGETS.get(i))
        .is_some_and(Target::is_latency);
    match t.verdict {
        Verdict::NotMeasured => "not measured".to_string(),
        Verdict::Met { value } if latency => format!("met ({} µs)", signed(value)),
        Verdict::Met { value } => format!("met ({})", ratio(value)),
        Verdict::Missed { value, needed } if latency => {
            format!("missed: {} µs, needs ≤ {needed} µs", signed(value))
        }
        Verdict::Missed { value, needed } => {
            format!("missed: {}, needs ×{needed:.1}", ratio(value))
        }
    }
}

/// Repetitions per measurement: the "repetitions" setting, else the most samples of any record.
fn repetitions(run: &Run) -> String {
    run.settings.get("repetitions").cloned().unwrap_or_else(|| {
        run.records
            .iter()
            .map(|r| r.samples.len())
            .max()
            .unwrap_or(0)
            .to_string()
    })
}

/// Escapes what would break a table cell or start Markdown formatting by accident.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The whole report as Markdown.
pub fn markdown(run: &Run) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = write_report(&mut out, run);
    out
}

fn write_report(out: &mut String, run: &Run) -> std::fmt::Result {
    let mc = &run.machine;
    writeln!(out, "# Overlay benchmark, {}", run.started_utc)?;
    writeln!(out)?;
    writeln!(
        out,
        "- **Machine**: {}, {} CPUs, {:.1} GiB, kernel {}, host `{}`",
        mc.cpu_model, mc.cpus, mc.mem_gib, mc.kernel, mc.hostname
    )?;
    writeln!(
        out,
        "- **Run**: {} run, {:.0} s, git `{}`",
        if run.quick { "quick" } else { "full" },
        run.seconds,
        run.git_rev
    )?;
    if !run.settings.is_empty() {
        let settings: Vec<String> = run
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "- **Settings**: {}", settings.join(", "))?;
    }
    writeln!(out)?;

    write_table(out, run)?;
    write_targets(out, run)?;
    write_how_to_read(out, run)?;

    let charts = chart::planned(run);
    if !charts.is_empty() {
        writeln!(out, "## Charts")?;
        writeln!(out)?;
        for c in charts {
            writeln!(out, "![{}]({})", c.title(), c.file_name())?;
            writeln!(out)?;
        }
    }

    let notes = notes(run);
    if !notes.is_empty() {
        writeln!(out, "## Notes")?;
        writeln!(out)?;
        for (i, r) in notes.iter().enumerate() {
            writeln!(
                out,
                "[^{}]: {}, {}: {}",
                i + 1,
                r.path,
                r.measurement,
                cell_text(r.note.as_deref().unwrap_or_default())
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Records with a note, in the order the table first shows them (then those it does not show);
/// index + 1 is the footnote number.
fn notes(run: &Run) -> Vec<&Record> {
    let mut out: Vec<&Record> = Vec::new();
    let paths = run.paths();
    let shown = ROWS
        .iter()
        .flat_map(|row| paths.iter().filter_map(move |&p| row.record(run, p)));
    for r in shown.chain(run.records.iter()) {
        if r.note.is_some() && !out.iter().any(|n| std::ptr::eq(*n, r)) {
            out.push(r);
        }
    }
    out
}

fn write_table(out: &mut String, run: &Run) -> std::fmt::Result {
    let paths = run.paths();
    let notes = notes(run);
    // A note is marked once, on the first row showing its record.
    let mut marked = vec![false; notes.len()];

    let mut header = vec!["metric".to_string(), "direction".to_string()];
    for p in &paths {
        header.push(p.to_string());
        if p.is_ours() {
            for b in PathKind::BASELINES {
                header.push(format!("{p} {}", b.versus()));
            }
        }
    }
    writeln!(out, "## Results")?;
    writeln!(out)?;
    writeln!(out, "| {} |", header.join(" | "))?;
    let align: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(i, _)| if i < 2 { "---" } else { "---:" })
        .collect();
    writeln!(out, "|{}|", align.join("|"))?;

    for row in ROWS {
        let mut cells = vec![row.label.to_string(), row.better.label().to_string()];
        for &p in &paths {
            let mut cell = row.cell(run, p);
            if let Some(r) = row.record(run, p)
                && let Some(i) = notes.iter().position(|n| std::ptr::eq(*n, r))
                && !marked[i]
            {
                marked[i] = true;
                let _ = write!(cell, "[^{}]", i + 1);
            }
            cells.push(cell);
            if p.is_ours() {
                for b in PathKind::BASELINES {
                    let r = row.ratio(run, p, b);
                    cells.push(r.map_or_else(|| MISSING.to_string(), ratio));
                }
            }
        }
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    writeln!(out)?;

    // Notes of records no row shows (an unknown measurement) still get their marker here.
    let unmarked: Vec<String> = marked
        .iter()
        .enumerate()
        .filter(|(_, m)| !**m)
        .map(|(i, _)| format!("[^{}]", i + 1))
        .collect();
    if !unmarked.is_empty() {
        writeln!(out, "Other notes: {}", unmarked.join(" "))?;
        writeln!(out)?;
    }
    Ok(())
}

fn write_targets(out: &mut String, run: &Run) -> std::fmt::Result {
    let results = targets(run);
    let columns = judged_paths();
    writeln!(out, "## Targets")?;
    writeln!(out)?;
    let names: Vec<String> = columns.iter().map(ToString::to_string).collect();
    writeln!(out, "| target | {} |", names.join(" | "))?;
    writeln!(out, "|---|{}", "---|".repeat(columns.len()))?;
    for (i, t) in TARGETS.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|&p| {
                if !t.paths.contains(&p) {
                    return NOT_APPLICABLE.to_string();
                }
                results
                    .iter()
                    .find(|r| r.path == p && r.target == i + 1)
                    .map_or_else(|| "not measured".to_string(), verdict_text)
            })
            .collect();
        writeln!(out, "| {}. {} | {} |", i + 1, t.what, cells.join(" | "))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "The fast path's rows are {} and {} (`mode = \"xdp\"`); {} is judged on its \
         latency alone. \"—\": the target does not judge that path.",
        PathKind::OursVxlan,
        PathKind::OursGeneve,
        PathKind::OursVxlanAfxdp
    )?;
    writeln!(out)?;
    Ok(())
}

fn write_how_to_read(out: &mut String, run: &Run) -> std::fmt::Result {
    let n = repetitions(run);
    writeln!(out, "## How to read this")?;
    writeln!(out)?;
    writeln!(
        out,
        "The ratios are the result: every \"vs kernel\" column is this data plane's value divided \
         by the kernel VXLAN driver's as the lab runs it, every \"vs kernel (offload on)\" column \
         by the same driver's at its best, both measured in the same run on the same machine \
         (×1.00 is parity; read the arrow to know whether above 1 is better). Absolute numbers \
         depend on this shared VM and are noise from run to run. Each value is the median over \
         {n} repetitions (failover: over its trials); with 3 or more the range (min–max) follows \
         in brackets. \"–\" means not measured."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "**The paths**, each between a pair of hosts of its own behind the same router: \
         **underlay**: no overlay. **kernel VXLAN**: the kernel driver as the lab must run it \
         next to our data plane, TX checksum offload off on the vxlan devices (a veth never \
         completes the inner checksums the driver leaves to the hardware, and a receiver that \
         decapsulates in XDP would see them unfinished), so its sender checksums and segments \
         in software. **kernel VXLAN (offload on)**: the same driver at its best on veths, \
         offload left on end to end as a NIC would complete the checksums: GSO super-packets \
         cross the veths and the router whole; only kernel receivers can take this traffic. \
         **ours VXLAN**, **ours GENEVE**: this data plane with `[datapath] mode = \"xdp\"`, the \
         fast path: XDP decapsulates known unicast and redirects it to the overlay veth, a TC \
         program on `ovl0` encapsulates (GSO packets whole) and redirects to the underlay, and \
         the AF_XDP workers see only ARP, floods and new sources; on a veth underlay the data \
         plane turns the underlay's TX checksum offload off while it runs (nothing would \
         complete the checksums), so its sender too checksums and segments in software. \
         **ours VXLAN (afxdp mode)**: `mode = \"afxdp\"`, every frame through the workers \
         (copy-mode AF_XDP on veths)."
    )?;
    writeln!(
        out,
        "\nTCP is iperf3 throughput at the receiver with 1 and 2 streams; CPU per Gbit is the \
         whole machine's CPU-seconds per Gbit moved during the 1-stream runs. RTT is the \
         round-trip latency distribution of a UDP ping-pong (p50, p99, p99.9), and \"added RTT\" \
         subtracts the underlay's p50, leaving what the overlay itself costs. Failover is the gap \
         a client sees while the virtual IP moves (planned switchover, and unplanned when the \
         active member's underlay link goes down; the client polls every millisecond), median \
         and worst of the trials, with the kernel driver and with our fast path carrying the \
         overlay."
    )?;
    writeln!(out)?;
    let live = run.settings.get("frames_via").map(String::as_str) == Some("xdp-live");
    let (handed, steering, unfair) = if live {
        (
            "as XDP frames, the way a NIC driver hands received frames over (`xdp-gen --mode \
             xdp-live`: `BPF_PROG_RUN` with live frames redirected out of the router's veth, on \
             the generator's CPU), straight into the receiver's underlay veth",
            "on every path the receiver's `eth0` takes them in its NAPI, which runs threaded, \
             its thread pinned to the sink CPU (the underlay and both kernel paths: with GRO on \
             `eth0` during the test, as a NIC has it, the skb built from each frame and the \
             whole stack after it, IP, UDP, VXLAN decapsulation, the vxlan device's GRO cell and \
             the inner stack, run in that thread; the two kernel paths do the same receive work \
             here, offload only changes the sender). Ours (xdp mode): our XDP program \
             decapsulates in that thread and redirects into the overlay veth, whose NAPI the \
             thread schedules, so the overlay veth's receive and the kernel stack after it run \
             as a softirq on the same CPU; the worker, pinned there too, sees only a new \
             source's first frame. Ours (afxdp mode): the same NAPI thread runs XDP and the copy \
             into the UMEM, the worker pinned to the sink CPU moves each frame to the overlay \
             veth, and that veth's receive runs in the worker's context",
            "each path builds one skb per frame (the kernel's at `eth0`, ours at the overlay \
             veth), as with a NIC. The generator pauses between its calls (the kernel swaps its \
             program in and out of the XDP dispatcher, two RCU grace periods a call), so the \
             sink core idles for a part of the run on every path; per core divides by the busy \
             share and is not affected. Ours in afxdp mode cannot take live frames: their pages \
             return to the generator, which sends them again as they are, with what the \
             receiver wrote into them, and in that mode our program writes its metadata over \
             every frame's outer headers. That path is sent skbs through an AF_XDP socket \
             instead (its note says so), so its per core also pays the veth's copy of each skb \
             into a page of its own (`skb_pp_cow_data`), which no other path pays here. A \
             frame of the test that our receiver's program passes to the kernel as not overlay \
             traffic arrived altered: more than 1 % of them gets a note",
        )
    } else {
        (
            "through an AF_XDP socket in copy mode on the router's veth (on the generator's \
             CPU), each frame an skb, straight into the receiver's underlay veth",
            "underlay and both kernel paths: no XDP on the receiver's `eth0`, so the veth hands \
             each frame to the backlog, and RPS on `eth0` moves the whole receive (IP, UDP, \
             VXLAN decapsulation, the vxlan device's GRO cell, the inner stack) to the sink CPU; \
             the two kernel paths do the same receive work here (offload only changes the \
             sender). Ours (xdp mode): `eth0`'s NAPI runs threaded, its thread pinned to the \
             sink CPU; our XDP program decapsulates there and redirects into the overlay veth, \
             whose NAPI that thread schedules, so the overlay veth's receive and the kernel \
             stack after it run as a softirq on the same CPU; the worker, pinned there too, \
             sees only a new source's first frame. Ours (afxdp mode): the same pinned NAPI \
             thread runs XDP and the copy into the UMEM, the worker pinned to the sink CPU moves \
             each frame to the overlay veth, and that veth's receive runs in the worker's \
             context",
            "A frame reaches the receiver's `eth0` as the generator's skb; before an XDP program \
             sees it the veth copies it into a page of its own (`skb_pp_cow_data`), and a \
             redirected frame becomes a new skb on the overlay veth, where a NIC driver would \
             give XDP its DMA buffer without a copy and the kernel paths keep the skb they got. \
             That copy is in our per-core figure and in no kernel path's (`--frames-via \
             xdp-live`, the default, avoids it)",
        )
    };
    writeln!(
        out,
        "**64 B frames** is the rate of minimum-size frames the path delivers to its interface, \
         sent {handed}; per core divides it by the busy share of the one sink CPU all of the \
         receiver's work is steered to, so it is one core's work on every path: {steering}. \
         The check: the generator CPU's softirq share is recorded for every path \
         (`gen_cpu_softirq`, next to `sink_cpu_softirq`), and a path whose receive work ran \
         there gets a note; for ours, the share of the bytes that took the fast path \
         (`fast_path_share`, from the data plane's counters) is recorded for TCP and the frames, \
         with a note when it does not match the mode. What cannot be made fair on veths: \
         {unfair}. The sender's work (the generator and the veth's transmit) is in no path's \
         figure. The lab is veth pairs in network namespaces on one shared 2-core VM: no NIC \
         offloads, AF_XDP in copy mode, so this compares designs, not hardware limits."
    )?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_texts() {
        let t = |target, verdict| TargetResult {
            path: PathKind::OursVxlan,
            target,
            verdict,
        };
        assert_eq!(
            verdict_text(&t(
                1,
                Verdict::Missed {
                    value: 0.52,
                    needed: 1.0
                }
            )),
            "missed: ×0.52, needs ×1.0"
        );
        assert_eq!(
            verdict_text(&t(
                5,
                Verdict::Missed {
                    value: 83.0,
                    needed: 50.0
                }
            )),
            "missed: +83.0 µs, needs ≤ 50 µs"
        );
        assert_eq!(
            verdict_text(&t(3, Verdict::Met { value: 3.5 })),
            "met (×3.50)"
        );
        assert_eq!(
            verdict_text(&t(4, Verdict::Met { value: 4.2 })),
            "met (+4.20 µs)"
        );
        assert_eq!(
            verdict_text(&t(
                4,
                Verdict::Missed {
                    value: 14.3,
                    needed: 10.0
                }
            )),
            "missed: +14.3 µs, needs ≤ 10 µs"
        );
        assert_eq!(verdict_text(&t(1, Verdict::NotMeasured)), "not measured");
    }

    #[test]
    fn targets_judge_the_fast_path_and_the_afxdp_mode() {
        assert_eq!(TARGETS.len(), 5);
        for t in &TARGETS[..4] {
            assert_eq!(t.paths, FAST_PATH, "{}", t.what);
        }
        assert_eq!(TARGETS[4].paths, AFXDP_MODE);
        assert_eq!(
            judged_paths(),
            [
                PathKind::OursVxlan,
                PathKind::OursGeneve,
                PathKind::OursVxlanAfxdp
            ]
        );
        // Both baselines are judged against.
        let baselines: Vec<PathKind> = TARGETS
            .iter()
            .filter_map(|t| match t.goal {
                Goal::RatioAtLeast { baseline, .. } => Some(baseline),
                Goal::AddedRttAtMost { .. } => None,
            })
            .collect();
        assert!(baselines.contains(&PathKind::KernelVxlan));
        assert!(baselines.contains(&PathKind::KernelVxlanBest));
        assert_eq!(at_most(Some(10.0), 10.0), Verdict::Met { value: 10.0 });
        assert_eq!(at_least(Some(1.5), 1.5), Verdict::Met { value: 1.5 });
        assert_eq!(at_most(None, 10.0), Verdict::NotMeasured);
    }

    #[test]
    fn cell_escaping() {
        assert_eq!(cell_text("a|b\nc"), "a\\|b c");
    }
}
