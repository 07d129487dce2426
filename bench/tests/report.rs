//! The benchmark report: Markdown ratios and targets, JSON round trip, SVG charts, from a
//! synthetic run with all six paths and some records missing.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

use std::collections::BTreeMap;
use std::path::PathBuf;

use bench::report::{
    self, ChartKind, Machine, PathKind, Record, Run, TargetResult, Verdict, measurement as m,
};

/// A directory under the system temp dir, unique to this process and test, removed on drop
/// (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("bench-report-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rec(path: PathKind, meas: &str, unit: &str, samples: &[f64]) -> Record {
    Record::from_samples(path, meas, unit, samples.to_vec())
}

fn with_extra(mut r: Record, extra: &[(&str, f64)]) -> Record {
    r.extra = extra.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    r
}

fn rtt(path: PathKind, p50s: &[f64], p50: f64, p99: f64, p999: f64) -> Record {
    let mut r = with_extra(
        rec(path, m::RTT, "us", p50s),
        &[
            ("p50", p50),
            ("p90", p50 * 1.2),
            ("p99", p99),
            ("p999", p999),
            ("max", p999 * 3.0),
            ("lost", 0.0),
        ],
    );
    r.median = p50;
    r.curve = vec![
        (0.0, p50 * 0.6),
        (50.0, p50),
        (90.0, p50 * 1.2),
        (99.0, p99),
        (99.9, p999),
        (99.99, p999 * 2.0),
        (100.0, p999 * 3.0),
    ];
    r
}

/// Kernel tcp_1 2.0, kernel with offload on 4.0; ours VXLAN 1.0 (×0.50 and ×0.25, both targets
/// missed), ours GENEVE 3.8 (×1.90 and ×0.95, both met), ours afxdp mode 0.8 (×0.40, ×0.20,
/// not judged); per core kernel 0.5, offload on 0.55, ours VXLAN 2.0 (×4.00, met), ours GENEVE
/// no frames record; RTT p50 underlay 30, kernel 55, offload on 40, ours VXLAN 36.5 (+6.50,
/// met), ours GENEVE 47 (+17.0, missed), ours afxdp mode 75 (+45.0, met against 50);
/// failover only for ours VXLAN (and a "not applicable" underlay record without samples).
fn synthetic_run() -> Run {
    use PathKind::*;
    let mut frames_ours = with_extra(
        rec(OursVxlan, m::FRAMES_64, "Mframes/s", &[1.9, 2.0, 2.1]),
        &[("offered", 2.1), ("per_core", 2.0), ("cpu_cores", 1.0)],
    );
    frames_ours.note = Some("generator offered 2.1 Mframes/s; sink is the bottleneck".into());
    let mut failover_underlay = rec(Underlay, m::FAILOVER_PLANNED, "ms", &[]);
    failover_underlay.note = Some("not applicable".into());

    let records = vec![
        with_extra(
            rec(Underlay, m::TCP_1, "Gbit/s", &[9.5, 10.0, 10.2]),
            &[("retransmits", 0.0)],
        ),
        rec(Underlay, m::TCP_2, "Gbit/s", &[10.5, 10.8, 11.0]),
        rtt(Underlay, &[29.0, 30.0, 31.0], 30.0, 45.0, 60.0),
        failover_underlay,
        with_extra(
            rec(KernelVxlan, m::TCP_1, "Gbit/s", &[1.9, 2.0, 2.1]),
            &[("retransmits", 12.0)],
        ),
        rec(KernelVxlan, m::TCP_2, "Gbit/s", &[2.3, 2.5, 2.6]),
        rec(KernelVxlan, m::CPU_PER_GBIT, "CPU-s/Gbit", &[0.8, 0.9, 1.0]),
        with_extra(
            rec(KernelVxlan, m::FRAMES_64, "Mframes/s", &[0.9, 1.0, 1.1]),
            &[("offered", 2.1), ("per_core", 0.5), ("cpu_cores", 2.0)],
        ),
        rtt(KernelVxlan, &[54.0, 55.0, 56.0], 55.0, 80.0, 120.0),
        rec(KernelVxlanBest, m::TCP_1, "Gbit/s", &[3.9, 4.0, 4.1]),
        rec(KernelVxlanBest, m::TCP_2, "Gbit/s", &[5.0]),
        with_extra(
            rec(KernelVxlanBest, m::FRAMES_64, "Mframes/s", &[1.0, 1.1, 1.2]),
            &[("offered", 2.1), ("per_core", 0.55)],
        ),
        rtt(KernelVxlanBest, &[39.0, 40.0, 41.0], 40.0, 60.0, 100.0),
        rec(OursVxlan, m::TCP_1, "Gbit/s", &[0.9, 1.0, 1.1]),
        rec(OursVxlan, m::TCP_2, "Gbit/s", &[1.5, 1.6]),
        rec(OursVxlan, m::CPU_PER_GBIT, "CPU-s/Gbit", &[1.8]),
        frames_ours,
        rtt(OursVxlan, &[36.0, 36.5, 37.0], 36.5, 52.0, 70.0),
        with_extra(
            rec(
                OursVxlan,
                m::FAILOVER_PLANNED,
                "ms",
                &[10.0, 12.0, 15.0, 11.0, 30.0],
            ),
            &[("max", 30.0), ("trials", 5.0), ("failed_requests", 0.0)],
        ),
        with_extra(
            rec(OursVxlan, m::FAILOVER_UNPLANNED, "ms", &[40.0, 42.0, 45.0]),
            &[("max", 45.0), ("trials", 3.0), ("failed_requests", 1.0)],
        ),
        rec(OursGeneve, m::TCP_1, "Gbit/s", &[3.6, 3.8, 3.9]),
        rtt(OursGeneve, &[46.0, 47.0, 48.0], 47.0, 66.0, 90.0),
        rec(OursVxlanAfxdp, m::TCP_1, "Gbit/s", &[0.7, 0.8, 0.9]),
        rtt(OursVxlanAfxdp, &[74.0, 75.0, 76.0], 75.0, 150.0, 400.0),
    ];
    Run {
        started_utc: "2026-11-23T10:04:05Z".into(),
        seconds: 312.4,
        quick: false,
        git_rev: "abc1234".into(),
        machine: Machine {
            hostname: "bench-vm".into(),
            kernel: "6.18.0-1-amd64".into(),
            cpu_model: "Test CPU @ 2.20GHz".into(),
            cpus: 2,
            mem_gib: 7.75,
        },
        settings: BTreeMap::from([
            ("repetitions".to_string(), "3".to_string()),
            ("tcp_seconds".to_string(), "5".to_string()),
        ]),
        records,
    }
}

/// The cell of the table row whose label starts with `label` in the column headed `column`.
fn cell(md: &str, label: &str, column: &str) -> String {
    let header = row(md, "metric");
    let i = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column:?} in {header:?}"));
    row(md, label)[i].clone()
}

/// The cells of the table row whose label starts with `label`, label and direction included.
fn row(md: &str, label: &str) -> Vec<String> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{md}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

fn targets_section(md: &str) -> &str {
    &md[md.find("## Targets").unwrap()..md.find("## How to read").unwrap()]
}

#[test]
fn table_values_ratios_and_spread() {
    let md = report::markdown(&synthetic_run());
    let header = row(&md, "metric");
    assert_eq!(
        header,
        [
            "metric",
            "direction",
            "underlay",
            "kernel VXLAN",
            "kernel VXLAN (offload on)",
            "ours VXLAN",
            "ours VXLAN vs kernel",
            "ours VXLAN vs kernel (offload on)",
            "ours GENEVE",
            "ours GENEVE vs kernel",
            "ours GENEVE vs kernel (offload on)",
            "ours VXLAN (afxdp mode)",
            "ours VXLAN (afxdp mode) vs kernel",
            "ours VXLAN (afxdp mode) vs kernel (offload on)",
        ]
    );
    assert_eq!(
        row(&md, "TCP 1 stream"),
        [
            "TCP 1 stream (Gbit/s)",
            "↑ better",
            "10.0 (9.50–10.2)",
            "2.00 (1.90–2.10)",
            "4.00 (3.90–4.10)",
            "1.00 (0.900–1.10)",
            "×0.50",
            "×0.25",
            "3.80 (3.60–3.90)",
            "×1.90",
            "×0.95",
            "0.800 (0.700–0.900)",
            "×0.40",
            "×0.20",
        ]
    );
    // Two samples: no spread shown; GENEVE has no record: "–" and no ratio.
    let tcp2 = |c: &str| cell(&md, "TCP 2 streams", c);
    assert_eq!(tcp2("ours VXLAN"), "1.55");
    assert_eq!(tcp2("ours VXLAN vs kernel"), "×0.62");
    assert_eq!(tcp2("ours VXLAN vs kernel (offload on)"), "×0.31");
    assert_eq!(tcp2("ours GENEVE"), "–");
    assert_eq!(tcp2("ours GENEVE vs kernel"), "–");
    assert_eq!(tcp2("ours GENEVE vs kernel (offload on)"), "–");
    let cpu = row(&md, "CPU per Gbit");
    assert_eq!(cpu[1], "↓ better");
    assert_eq!(cpu[2], "–");
    assert_eq!(cell(&md, "CPU per Gbit", "ours VXLAN"), "1.80");
    assert_eq!(cell(&md, "CPU per Gbit", "ours VXLAN vs kernel"), "×2.00");
    assert_eq!(
        cell(&md, "CPU per Gbit", "ours VXLAN vs kernel (offload on)"),
        "–",
        "no CPU record for the offload-on kernel"
    );

    let per_core = |c: &str| cell(&md, "64 B frames per core", c);
    assert_eq!(per_core("kernel VXLAN"), "0.500");
    assert_eq!(per_core("kernel VXLAN (offload on)"), "0.550");
    assert!(per_core("ours VXLAN").starts_with("2.00"));
    assert_eq!(per_core("ours VXLAN vs kernel"), "×4.00");
    assert_eq!(per_core("ours VXLAN vs kernel (offload on)"), "×3.64");
    // The note of ours VXLAN's frames record is marked on its first row, not again.
    assert!(
        cell(&md, "64 B frames (Mframes/s)", "ours VXLAN").ends_with("[^1]"),
        "{md}"
    );
    assert!(!per_core("ours VXLAN").contains("[^"));

    let p99 = |c: &str| cell(&md, "RTT p99 (µs)", c);
    assert_eq!(
        (p99("underlay"), p99("kernel VXLAN")),
        ("45.0".into(), "80.0".into())
    );
    assert_eq!(p99("ours VXLAN vs kernel"), "×0.65");
    assert_eq!(p99("ours VXLAN vs kernel (offload on)"), "×0.87");
    assert_eq!(cell(&md, "RTT p99.9", "ours GENEVE"), "90.0");
}

#[test]
fn added_rtt_over_underlay() {
    let run = synthetic_run();
    assert_eq!(run.added_rtt_p50(PathKind::Underlay), None);
    assert_eq!(run.added_rtt_p50(PathKind::KernelVxlan), Some(25.0));
    assert_eq!(run.added_rtt_p50(PathKind::KernelVxlanBest), Some(10.0));
    assert_eq!(run.added_rtt_p50(PathKind::OursVxlan), Some(6.5));
    let md = report::markdown(&run);
    assert_eq!(
        row(&md, "added RTT p50"),
        [
            "added RTT p50 over underlay (µs)",
            "↓ better",
            "—",
            "+25.0",
            "+10.0",
            "+6.50",
            "×0.26",
            "×0.65",
            "+17.0",
            "×0.68",
            "×1.70",
            "+45.0",
            "×1.80",
            "×4.50",
        ]
    );
}

#[test]
fn failover_rows_and_missing_paths() {
    let md = report::markdown(&synthetic_run());
    let planned = |c: &str| cell(&md, "failover planned, median", c);
    // Underlay's record has no samples ("not applicable"): a dash with its footnote.
    assert_eq!(planned("underlay"), "–[^2]");
    assert_eq!(planned("kernel VXLAN"), "–");
    assert_eq!(planned("ours VXLAN"), "12.0 (10.0–30.0)");
    assert_eq!(planned("ours VXLAN vs kernel"), "–");
    assert_eq!(planned("ours VXLAN (afxdp mode)"), "–");
    assert_eq!(cell(&md, "failover planned, max", "ours VXLAN"), "30.0");
    assert_eq!(cell(&md, "failover unplanned, max", "ours VXLAN"), "45.0");
    assert!(md.contains("[^2]: underlay, failover_planned: not applicable"));
    assert!(md.contains(
        "[^1]: ours VXLAN, frames_64: generator offered 2.1 Mframes/s; sink is the bottleneck"
    ));
}

#[test]
fn header_and_explanation() {
    let md = report::markdown(&synthetic_run());
    assert!(md.contains("2026-11-23T10:04:05Z"));
    assert!(md.contains("Test CPU @ 2.20GHz, 2 CPUs, 7.8 GiB, kernel 6.18.0-1-amd64"));
    assert!(md.contains("bench-vm"));
    assert!(md.contains("full run"));
    assert!(md.contains("`abc1234`"));
    assert!(md.contains("repetitions=3, tcp_seconds=5"));
    assert!(md.contains("## How to read this"));
    assert!(md.contains("median over 3 repetitions"));
    assert!(md.contains("copy mode"));
    // Both baselines and every path's steering are explained.
    for words in [
        "\"vs kernel (offload on)\" column",
        "TX checksum offload off on the vxlan devices",
        "offload left on end to end",
        "mode = \"xdp\"",
        "mode = \"afxdp\"",
        "RPS on `eth0`",
        "NAPI runs threaded",
        "runs in the worker's context",
        "`gen_cpu_softirq`",
        "`fast_path_share`",
        "What cannot be made fair on veths",
        "`skb_pp_cow_data`",
    ] {
        assert!(md.contains(words), "{words:?} not in the explanation");
    }
    // A run whose generator handed XDP frames over says so, and how each path was steered then.
    let mut live = synthetic_run();
    live.settings
        .insert("frames_via".to_string(), "xdp-live".to_string());
    let md = report::markdown(&live);
    for words in [
        "as XDP frames, the way a NIC driver",
        "with GRO on `eth0` during the test",
        "its thread pinned to the sink CPU",
        "runs in the worker's context",
        "each path builds one skb per frame",
        "two RCU grace periods a call",
        "Ours in afxdp mode cannot take live frames",
    ] {
        assert!(md.contains(words), "{words:?} not in the explanation");
    }
    assert!(!md.contains("RPS on `eth0`"));
    for chart in [
        "throughput.svg",
        "frames.svg",
        "latency.svg",
        "failover.svg",
    ] {
        assert!(md.contains(&format!("]({chart})")), "{chart} not linked");
    }
}

fn verdict(results: &[TargetResult], path: PathKind, target: usize) -> &Verdict {
    &results
        .iter()
        .find(|t| t.path == path && t.target == target)
        .unwrap()
        .verdict
}

#[test]
fn targets_met_missed_and_not_measured() {
    let run = synthetic_run();
    let t = report::targets(&run);
    assert_eq!(
        t.len(),
        9,
        "four targets for two fast-path rows, one for afxdp mode"
    );
    use PathKind::*;
    let missed = |value: f64, needed: f64| Verdict::Missed { value, needed };
    assert_eq!(verdict(&t, OursVxlan, 1), &missed(0.5, 1.5));
    assert_eq!(verdict(&t, OursGeneve, 1), &Verdict::Met { value: 1.9 });
    assert_eq!(verdict(&t, OursVxlan, 2), &missed(0.25, 0.9));
    assert_eq!(verdict(&t, OursGeneve, 2), &Verdict::Met { value: 0.95 });
    assert_eq!(verdict(&t, OursVxlan, 3), &Verdict::Met { value: 4.0 });
    assert_eq!(verdict(&t, OursGeneve, 3), &Verdict::NotMeasured);
    assert_eq!(verdict(&t, OursVxlan, 4), &Verdict::Met { value: 6.5 });
    assert_eq!(verdict(&t, OursGeneve, 4), &missed(17.0, 10.0));
    assert_eq!(
        verdict(&t, OursVxlanAfxdp, 5),
        &Verdict::Met { value: 45.0 }
    );
    // Each target judges only its rows.
    assert!(!t.iter().any(|r| r.path == OursVxlanAfxdp && r.target != 5));
    assert!(!t.iter().any(|r| r.target == 5 && r.path != OursVxlanAfxdp));

    let md = report::markdown(&run);
    let targets = targets_section(&md);
    assert!(
        targets.contains("| target | ours VXLAN | ours GENEVE | ours VXLAN (afxdp mode) |"),
        "{targets}"
    );
    assert_eq!(
        row(&md, "1. TCP 1 stream"),
        [
            "1. TCP 1 stream vs kernel VXLAN ≥ ×1.5",
            "missed: ×0.50, needs ×1.5",
            "met (×1.90)",
            "—"
        ]
    );
    assert_eq!(
        row(&md, "2. TCP 1 stream"),
        [
            "2. TCP 1 stream vs kernel VXLAN (offload on) ≥ ×0.9",
            "missed: ×0.25, needs ×0.9",
            "met (×0.95)",
            "—"
        ]
    );
    assert_eq!(
        row(&md, "3. 64 B frames"),
        [
            "3. 64 B frames per core vs kernel VXLAN ≥ ×3.0",
            "met (×4.00)",
            "not measured",
            "—"
        ]
    );
    assert_eq!(
        row(&md, "4. added RTT"),
        [
            "4. added RTT p50 over underlay ≤ 10 µs",
            "met (+6.50 µs)",
            "missed: +17.0 µs, needs ≤ 10 µs",
            "—"
        ]
    );
    assert_eq!(
        row(&md, "5. added RTT"),
        [
            "5. added RTT p50 over underlay, afxdp mode ≤ 50 µs",
            "—",
            "—",
            "met (+45.0 µs)"
        ]
    );
    // The afxdp row misses when it adds more than 50 µs.
    let mut slow = run.clone();
    for r in &mut slow.records {
        if r.path == OursVxlanAfxdp && r.measurement == m::RTT {
            r.median = 95.0;
            r.extra.insert("p50".into(), 95.0);
        }
    }
    assert_eq!(
        verdict(&report::targets(&slow), OursVxlanAfxdp, 5),
        &missed(65.0, 50.0)
    );
}

#[test]
fn without_kernel_or_underlay_nothing_is_claimed() {
    let mut run = synthetic_run();
    run.records.retain(|r| {
        !matches!(
            r.path,
            PathKind::KernelVxlan | PathKind::KernelVxlanBest | PathKind::Underlay
        )
    });
    let t = report::targets(&run);
    assert!(t.iter().all(|t| t.verdict == Verdict::NotMeasured), "{t:?}");
    let md = report::markdown(&run);
    let header = row(&md, "metric");
    assert!(
        !header
            .iter()
            .any(|c| c.starts_with("kernel VXLAN") || c == "underlay")
    );
    assert_eq!(
        cell(&md, "TCP 1 stream", "ours VXLAN vs kernel"),
        "–",
        "no ratio without the kernel"
    );
    assert_eq!(
        cell(&md, "TCP 1 stream", "ours VXLAN vs kernel (offload on)"),
        "–"
    );
    assert!(!md.contains("×0.50"));
    let targets = targets_section(&md);
    assert_eq!(targets.matches("not measured").count(), 9, "{targets}");
}

/// Only the offload-on baseline is missing: its ratios and target are not claimed, the others
/// are.
#[test]
fn each_baseline_on_its_own() {
    let mut run = synthetic_run();
    run.records.retain(|r| r.path != PathKind::KernelVxlanBest);
    let t = report::targets(&run);
    assert_eq!(verdict(&t, PathKind::OursGeneve, 2), &Verdict::NotMeasured);
    assert_eq!(
        verdict(&t, PathKind::OursGeneve, 1),
        &Verdict::Met { value: 1.9 }
    );
    let md = report::markdown(&run);
    assert_eq!(cell(&md, "TCP 1 stream", "ours GENEVE vs kernel"), "×1.90");
    assert_eq!(
        cell(&md, "TCP 1 stream", "ours GENEVE vs kernel (offload on)"),
        "–"
    );
}

#[test]
fn json_round_trip_and_files() {
    let dir = TempDir::new("files");
    let run = synthetic_run();
    let out = report::write_outputs(&run, &dir.0).unwrap();

    assert_eq!(
        out.run_json.file_name().unwrap(),
        "run-2026-11-23T10-04-05Z.json"
    );
    for p in out.all() {
        assert!(p.is_file(), "{} not written", p.display());
    }
    assert_eq!(report::load(&out.latest_json).unwrap(), run);
    assert_eq!(report::load(&out.run_json).unwrap(), run);
    assert_eq!(
        std::fs::read_to_string(&out.markdown).unwrap(),
        report::markdown(&run)
    );

    // JSON lines: one record per line, flattened, with the run's start beside it.
    let text = std::fs::read_to_string(&out.records_jsonl).unwrap();
    assert_eq!(text.lines().count(), run.records.len());
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["started_utc"], "2026-11-23T10:04:05Z");
    assert_eq!(first["path"], "underlay");
    assert_eq!(first["measurement"], "tcp_1");
    let lines = report::load_records(&out.records_jsonl).unwrap();
    let back: Vec<Record> = lines.iter().map(|l| l.record.clone()).collect();
    assert_eq!(back, run.records);
    assert!(lines.iter().all(|l| l.started_utc == run.started_utc));

    // Serde names of the paths as specified.
    let latest = std::fs::read_to_string(&out.latest_json).unwrap();
    for slug in [
        "\"underlay\"",
        "\"kernel-vxlan\"",
        "\"kernel-vxlan-best\"",
        "\"ours-vxlan\"",
        "\"ours-geneve\"",
        "\"ours-vxlan-afxdp\"",
    ] {
        assert!(latest.contains(slug), "{slug} missing");
    }

    // A second write replaces latest.json and leaves no temporary files.
    let mut second = run.clone();
    second.started_utc = "2026-11-24T08:00:00Z".into();
    let out2 = report::write_outputs(&second, &dir.0).unwrap();
    assert_eq!(report::load(&out2.latest_json).unwrap(), second);
    assert!(out.run_json.is_file() && out2.run_json.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert!(report::load(dir.0.join("missing.json")).is_err());
    std::fs::write(dir.0.join("bad.json"), "{").unwrap();
    assert!(matches!(
        report::load(dir.0.join("bad.json")),
        Err(report::ReportError::Json { .. })
    ));
}

#[test]
fn nan_values_still_load() {
    // The runner writes NaN for the median of no samples; JSON makes that null, and the files
    // must still load and the report show a dash.
    let dir = TempDir::new("nan");
    let mut run = synthetic_run();
    let mut empty = rec(PathKind::OursGeneve, m::FRAMES_64, "Mframes/s", &[]);
    empty.median = f64::NAN;
    empty.extra.insert("per_core".into(), f64::NAN);
    run.records.push(empty);
    let out = report::write_outputs(&run, &dir.0).unwrap();
    let back = report::load(&out.latest_json).unwrap();
    let r = back.records.last().unwrap();
    assert!(r.median.is_nan() && r.extra["per_core"].is_nan());
    assert_eq!(back.records.len(), run.records.len());
    let lines = report::load_records(&out.records_jsonl).unwrap();
    assert!(lines.last().unwrap().record.median.is_nan());
    let md = report::markdown(&back);
    assert_eq!(cell(&md, "64 B frames per core", "ours GENEVE"), "–");
}

#[test]
fn svg_charts() {
    let dir = TempDir::new("charts");
    let run = synthetic_run();
    let out = report::write_outputs(&run, &dir.0).unwrap();
    let names: Vec<String> = out
        .charts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "throughput.svg",
            "frames.svg",
            "latency.svg",
            "failover.svg"
        ]
    );
    for p in &out.charts {
        let svg = std::fs::read_to_string(p).unwrap();
        let name = p.display();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{name}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        assert_eq!(
            svg.matches("<text").count(),
            svg.matches("</text>").count(),
            "{name}"
        );
        // Legend entries, with the same colour for a path in every chart.
        assert!(svg.contains("ours VXLAN"), "{name}");
        assert!(svg.contains("#FF7F0E"), "{name}: ours VXLAN's orange");
        if !name.to_string().ends_with("failover.svg") {
            assert!(svg.contains("kernel VXLAN"), "{name}");
            assert!(svg.contains("#1F77B4"), "{name}: kernel VXLAN's blue");
        }
    }
    let read = |n: &str| std::fs::read_to_string(dir.0.join(n)).unwrap();
    // Every path with data appears in the bar and latency charts.
    for n in ["throughput.svg", "latency.svg"] {
        let svg = read(n);
        for p in PathKind::ALL {
            assert!(svg.contains(&p.to_string()), "{n} lacks {p}");
        }
    }
    let latency = read("latency.svg");
    for tick in ["p50", "p90", "p99", "p99.9", "p99.99"] {
        assert!(latency.contains(&format!("{tick}\n</text>")), "tick {tick}");
    }
    assert!(read("throughput.svg").contains("TCP 2 streams"));
    assert!(read("frames.svg").contains("per busy CPU core"));

    // No failover records: no failover chart, and the report does not link it.
    let mut run = synthetic_run();
    run.records
        .retain(|r| !r.measurement.starts_with("failover"));
    assert!(!report::planned_charts(&run).contains(&ChartKind::Failover));
    let dir2 = TempDir::new("charts-nofailover");
    let out = report::write_outputs(&run, &dir2.0).unwrap();
    assert_eq!(out.charts.len(), 3);
    assert!(!dir2.0.join("failover.svg").exists());
    assert!(!report::markdown(&run).contains("failover.svg"));
}

#[test]
fn latency_chart_from_percentiles_alone() {
    // A record without a curve still gets a line from its p50/p90/p99/p99.9.
    let mut run = synthetic_run();
    for r in &mut run.records {
        r.curve.clear();
    }
    let svg = report::chart_svg(&run, ChartKind::Latency).unwrap();
    assert!(svg.contains("ours GENEVE"));
    assert!(svg.contains("<circle"), "the few points are marked");
}

#[test]
fn charts_survive_sparse_data() {
    // One path, single samples, zeros: every chart still renders a whole document.
    let mut run = synthetic_run();
    run.quick = true;
    run.records = vec![
        rec(PathKind::OursGeneve, m::TCP_1, "Gbit/s", &[0.0]),
        with_extra(
            rec(PathKind::OursGeneve, m::FRAMES_64, "Mframes/s", &[0.0]),
            &[("per_core", 0.0)],
        ),
        rtt(PathKind::OursGeneve, &[40.0], 40.0, 40.0, 40.0),
        rec(PathKind::OursGeneve, m::FAILOVER_UNPLANNED, "ms", &[0.0]),
    ];
    assert_eq!(report::planned_charts(&run), ChartKind::ALL);
    for kind in ChartKind::ALL {
        let svg = report::chart_svg(&run, kind).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("ours GENEVE"), "{kind:?}");
    }
    let md = report::markdown(&run);
    assert!(md.contains("quick run"));
    // Nothing to compare against: no ratio, every target "not measured".
    assert_eq!(
        row(&md, "TCP 1 stream"),
        ["TCP 1 stream (Gbit/s)", "↑ better", "0", "–", "–"]
    );

    // No records at all: no charts, a report that says so.
    run.records.clear();
    assert!(report::planned_charts(&run).is_empty());
    let md = report::markdown(&run);
    assert!(!md.contains("## Charts"));
    assert_eq!(targets_section(&md).matches("not measured").count(), 9);
}

#[test]
fn median_of_samples() {
    assert_eq!(report::median(&[]), None);
    assert_eq!(report::median(&[5.0, 1.0, 3.0]), Some(3.0));
    assert_eq!(report::median(&[5.0, 1.0, 3.0, 4.0]), Some(3.5));
    let r = Record::from_samples(PathKind::OursVxlan, m::TCP_1, "Gbit/s", vec![3.0, 1.0]);
    assert_eq!(r.median, 2.0);
}

#[test]
fn sig3_helper_is_public() {
    assert_eq!(report::sig3(2.3148), "2.31");
    assert_eq!(report::sig3(0.0123456), "0.0123");
    assert_eq!(report::ratio(1.0 / 2.0), "×0.50");
}
