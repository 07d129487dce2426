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
        label: "failover unplanned, median (ms)",
        better: Better::Lower,
        source: Source::Median(m::FAILOVER_UNPLANNED),
    },
    Row {
        label: "failover unplanned, max (ms)",
        better: Better::Lower,
        source: Source::Extra(m::FAILOVER_UNPLANNED, "max"),
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

    /// ours / kernel for this row, when both are there and the kernel's is positive.
    fn ratio(&self, run: &Run, path: PathKind) -> Option<f64> {
        let ours = self.value(run, path)?;
        let kernel = self.value(run, PathKind::KernelVxlan)?;
        if kernel > 0.0 && ours >= 0.0 {
            Some(ours / kernel)
        } else {
            None
        }
    }
}

/// The outcome of one target for one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Reached; `value` is the ratio (or µs for the latency target).
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
    /// Which target: 1, 2 or 3 as listed in [`TARGETS`].
    pub target: usize,
    pub verdict: Verdict,
}

/// The targets, in order: what each asks for.
pub const TARGETS: [&str; 3] = [
    "TCP 1 stream vs kernel VXLAN ≥ ×1.0",
    "64 B frames per core vs kernel VXLAN ≥ ×3.0",
    "added RTT p50 over underlay ≤ 10 µs",
];

const TCP_RATIO_NEEDED: f64 = 1.0;
const PER_CORE_RATIO_NEEDED: f64 = 3.0;
const ADDED_RTT_MAX_US: f64 = 10.0;

fn ratio_vs_kernel(ours: Option<f64>, kernel: Option<f64>) -> Option<f64> {
    match (ours, kernel) {
        (Some(o), Some(k)) if k > 0.0 => Some(o / k),
        _ => None,
    }
}

fn at_least(value: Option<f64>, needed: f64) -> Verdict {
    match value {
        None => Verdict::NotMeasured,
        Some(value) if value >= needed => Verdict::Met { value },
        Some(value) => Verdict::Missed { value, needed },
    }
}

/// The three targets for ours-vxlan and ours-geneve (always six results, path by path).
pub fn targets(run: &Run) -> Vec<TargetResult> {
    let per_core = |p: PathKind| {
        run.record(p, m::FRAMES_64)
            .and_then(|r| r.extra_value("per_core"))
    };
    let mut out = Vec::new();
    for path in [PathKind::OursVxlan, PathKind::OursGeneve] {
        let tcp = ratio_vs_kernel(
            run.value(path, m::TCP_1),
            run.value(PathKind::KernelVxlan, m::TCP_1),
        );
        let frames = ratio_vs_kernel(per_core(path), per_core(PathKind::KernelVxlan));
        let added = match run.added_rtt_p50(path) {
            None => Verdict::NotMeasured,
            Some(value) if value <= ADDED_RTT_MAX_US => Verdict::Met { value },
            Some(value) => Verdict::Missed {
                value,
                needed: ADDED_RTT_MAX_US,
            },
        };
        let verdicts = [
            at_least(tcp, TCP_RATIO_NEEDED),
            at_least(frames, PER_CORE_RATIO_NEEDED),
            added,
        ];
        for (i, verdict) in verdicts.into_iter().enumerate() {
            out.push(TargetResult {
                path,
                target: i + 1,
                verdict,
            });
        }
    }
    out
}

/// A verdict as the report writes it: "met (×1.12)", "missed: ×0.52, needs ×1.0",
/// "met (+4.20 µs)", "missed: +14.3 µs, needs ≤ 10 µs", "not measured".
pub fn verdict_text(t: &TargetResult) -> String {
    let latency = t.target == 3;
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
            header.push(format!("{p} vs kernel"));
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
                let r = match row.source {
                    Source::AddedRtt => {
                        // Added latency against the kernel's added latency; meaningless when
                        // the kernel adds nothing measurable.
                        match (
                            run.added_rtt_p50(p),
                            run.added_rtt_p50(PathKind::KernelVxlan),
                        ) {
                            (Some(o), Some(k)) if k > 0.0 && o >= 0.0 => Some(o / k),
                            _ => None,
                        }
                    }
                    _ => row.ratio(run, p),
                };
                cells.push(r.map_or_else(|| MISSING.to_string(), ratio));
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
    writeln!(out, "## Targets")?;
    writeln!(out)?;
    writeln!(
        out,
        "| target | {} | {} |",
        PathKind::OursVxlan,
        PathKind::OursGeneve
    )?;
    writeln!(out, "|---|---|---|")?;
    for (i, what) in TARGETS.iter().enumerate() {
        let verdict = |p: PathKind| {
            results
                .iter()
                .find(|t| t.path == p && t.target == i + 1)
                .map_or_else(|| "not measured".to_string(), verdict_text)
        };
        writeln!(
            out,
            "| {}. {what} | {} | {} |",
            i + 1,
            verdict(PathKind::OursVxlan),
            verdict(PathKind::OursGeneve)
        )?;
    }
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
         by the kernel VXLAN driver's, measured in the same run on the same machine (×1.00 is \
         parity; read the arrow to know whether above 1 is better). Absolute numbers depend on \
         this shared VM and are noise from run to run. Each value is the median over {n} \
         repetitions (failover: over its trials); with 3 or more the range (min–max) follows in \
         brackets. TCP is iperf3 throughput at the receiver with 1 and 2 streams; CPU per Gbit \
         is the CPU-seconds spent per Gbit moved during the 1-stream runs; 64 B frames is \
         the rate of minimum-size frames (from an AF_XDP generator on the router, straight into \
         the receiver's underlay veth) the path delivers to its interface, and per core divides \
         it by the busy share of the one CPU all of the receiver's work is steered to (RPS for \
         the kernel paths, threaded NAPI and the pinned worker for ours); RTT is the round-trip latency distribution (p50, p99, p99.9), \
         and \"added RTT\" subtracts the underlay's p50, leaving what the overlay itself costs; \
         failover is the gap a client sees while the virtual IP moves (planned switchover, and \
         unplanned when the active member's underlay link goes down; the client polls every \
         millisecond), median and worst of the trials. \
         \"–\" means not measured. The lab is veth pairs in network namespaces on one shared \
         2-core VM: no NIC offloads, AF_XDP in copy mode, so this compares designs, not \
         hardware limits."
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
            verdict_text(&t(2, Verdict::Met { value: 3.5 })),
            "met (×3.50)"
        );
        assert_eq!(
            verdict_text(&t(3, Verdict::Met { value: 4.2 })),
            "met (+4.20 µs)"
        );
        assert_eq!(
            verdict_text(&t(
                3,
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
    fn cell_escaping() {
        assert_eq!(cell_text("a|b\nc"), "a\\|b c");
    }
}
