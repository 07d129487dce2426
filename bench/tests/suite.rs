//! The benchmark end to end at its smallest: one repetition of everything on every path (the
//! underlay, the kernel driver with TX checksum offload off and on, ours on the fast path with
//! VXLAN and GENEVE, ours in afxdp mode), one failover trial of each kind on the kernel driver
//! and on ours, then the report. Checks that
//! every record is there and plausible, not how fast anything is (that is the benchmark's
//! job). Root required; uses the release binaries `cargo xtask test` builds.

use std::{
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use bench::{
    report::{self, PathKind},
    suite::{self, Settings},
};

#[test]
fn smallest_benchmark_measures_every_path_and_writes_the_report() {
    assert!(
        ovl_lab::is_root(),
        "the benchmark test needs root; CI runs it as root"
    );
    let mut s = Settings::quick(ovl_lab::bin_dir());
    s.reps = 1;
    s.tcp_secs = 1;
    s.rtt_count = 200;
    s.frames_ms = 500;
    s.failover_planned = 1;
    s.failover_unplanned = 1;
    s.soak_planned = 2;
    s.soak_kills = 1;
    // What this kernel allows (`FramesVia::detect`), recorded in the run's settings too.
    let live_frames = s.frames_via == suite::FramesVia::XdpLive;
    let started = Instant::now();
    let mut lines = Vec::new();
    let run = suite::run(&s, &AtomicBool::new(false), &mut |l| {
        eprintln!("{l}");
        lines.push(l.to_string());
    })
    .expect("benchmark run");
    assert!(started.elapsed() < Duration::from_secs(300));
    assert!(
        lines.iter().any(|l| l.contains("left]")),
        "progress shows the time left: {lines:?}"
    );

    for p in PathKind::ALL {
        for m in ["tcp_1", "tcp_2", "cpu_per_gbit", "rtt", "frames_64"] {
            let r = run
                .records
                .iter()
                .find(|r| r.path == p && r.measurement == m)
                .unwrap_or_else(|| panic!("record {p} {m}"));
            assert_eq!(r.samples.len(), 1, "{p} {m}: one repetition");
            assert!(
                r.median.is_finite() && r.median > 0.0,
                "{p} {m}: {}",
                r.median
            );
        }
        let rtt = run.record(p, "rtt").expect("rtt");
        let x = |k: &str| rtt.extra[k];
        assert!(x("p50") <= x("p99") && x("p99") <= x("p999") && x("p999") <= x("max"));
        assert!(!rtt.curve.is_empty(), "{p}: latency curve for the chart");
        let f = run.record(p, "frames_64").expect("frames");
        assert!(
            f.median <= f.extra["offered"] * 1.01,
            "{p}: a path cannot deliver more than was offered: {f:?}"
        );
        // XDP frames, as a NIC hands them over, for every path but afxdp mode's (see the
        // report) where the kernel runs live frames, skbs everywhere where it does not;
        // nothing arrived altered.
        let live = f.extra["xdp_frames"];
        let note = f.note.clone().unwrap_or_default();
        if p == PathKind::OursVxlanAfxdp {
            assert_eq!(live, 0.0, "{p}");
            // Said only where the other paths got XDP frames.
            assert_eq!(note.contains("sent as skbs"), live_frames, "{p}: {note}");
        } else {
            assert_eq!(live, if live_frames { 1.0 } else { 0.0 }, "{p}");
        }
        assert!(!note.contains("arrived altered"), "{p}: {note}");
        // Where the receive work ran is recorded for every path.
        for k in ["sink_cpu_softirq", "gen_cpu_softirq", "sink_cpu_busy"] {
            let v = f.extra[k];
            assert!((0.0..=1.0).contains(&v), "{p} {k}: {v}");
        }
        // Which of our paths carried the bytes: the fast path in xdp mode, the workers alone
        // in afxdp mode; the kernel's paths have no such counters.
        for m in ["tcp_1", "frames_64"] {
            let share = run
                .record(p, m)
                .and_then(|r| r.extra.get("fast_path_share"));
            match p {
                PathKind::OursVxlan | PathKind::OursGeneve => {
                    let share = share
                        .copied()
                        .unwrap_or_else(|| panic!("{p} {m}: no share"));
                    assert!(share >= 0.9, "{p} {m}: fast path share {share}");
                }
                PathKind::OursVxlanAfxdp => {
                    assert_eq!(
                        share,
                        Some(&0.0),
                        "{p} {m}: afxdp mode never takes the fast path"
                    )
                }
                _ => assert_eq!(share, None, "{p} {m}"),
            }
        }
    }
    for p in [PathKind::KernelVxlan, PathKind::OursVxlan] {
        for m in ["failover_planned", "failover_unplanned"] {
            let r = run.record(p, m).unwrap_or_else(|| panic!("record {p} {m}"));
            assert_eq!(r.samples.len(), 1, "{p} {m}: the client saw the trial");
            assert!(r.median > 0.0 && r.median < 1000.0, "{p} {m}: {r:?}");
        }
    }
    for p in [
        PathKind::Underlay,
        PathKind::KernelVxlanBest,
        PathKind::OursGeneve,
        PathKind::OursVxlanAfxdp,
    ] {
        assert!(run.record(p, "failover_planned").is_none(), "{p}");
    }
    let soak = run
        .record(PathKind::OursVxlan, "soak_planned")
        .expect("soak record");
    assert_eq!(soak.extra.get("switchovers"), Some(&2.0), "{soak:?}");
    assert_eq!(soak.median, 0.0, "draining loses nothing: {soak:?}");
    let soak = run
        .record(PathKind::OursVxlan, "soak_unplanned")
        .expect("soak record");
    assert_eq!(soak.samples.len(), 1, "{soak:?}");
    assert_eq!(soak.extra.get("clients_followed"), Some(&1.0), "{soak:?}");

    let dir = std::env::temp_dir().join(format!("ovl-bench-test-{}", std::process::id()));
    let out = report::write_outputs(&run, &dir).expect("write the report");
    let md = std::fs::read_to_string(&out.markdown).expect("report.md");
    assert!(
        md.contains("## Targets")
            && md.contains("| ours VXLAN vs kernel |")
            && md.contains("| ours VXLAN vs kernel (offload on) |")
            && md.contains("| kernel VXLAN (offload on) |"),
        "{md}"
    );
    assert_eq!(report::load(&out.latest_json).expect("load"), run);
    assert!(out.charts.len() >= 4, "{:?}", out.charts);
    std::fs::remove_dir_all(&dir).expect("remove the report");
}
