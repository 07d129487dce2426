//! The main measurements of one path and repetition: TCP throughput (with the CPU it cost and
//! which of our carriers took the bytes) and round-trip latency, and the tools behind them.

use std::{
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use ovl_lab::{DatapathMode, Lab};

use super::{
    Progress, Route, Settings, SuiteError, frames,
    records::{Measure, Samples},
    step_err,
};
use crate::{
    probe::{
        cpu::{CpuDelta, SystemCpu},
        iperf::{IperfResult, parse_iperf3},
        rtt::RttReport,
    },
    report::PathKind,
};

/// TCP port of the iperf3 servers and UDP port of the echo servers.
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 7007;

/// What each destination host runs for the whole benchmark, and the tools run against it.
pub(super) struct Servers {
    rtt_probe: String,
    pub(super) xdp_gen: String,
    dataplane: String,
}

impl Servers {
    pub(super) fn start(
        lab: &mut Lab,
        s: &Settings,
        routes: &[Route],
    ) -> Result<Servers, SuiteError> {
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
pub(super) fn dst_addr(lab: &Lab, r: &Route) -> Result<Ipv4Addr, SuiteError> {
    let a = match r.path {
        PathKind::Underlay => lab.underlay_ip(r.dst),
        _ => lab.overlay_ip(r.dst),
    };
    a.ok_or_else(|| step_err(format!("address of {}", r.dst), "unknown host"))
}

/// Runs a command in a host's namespace; its stdout, or an error with its stderr.
pub(super) fn exec(
    lab: &Lab,
    host: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, SuiteError> {
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

/// One repetition on one route, and what its measurements run against.
#[derive(Clone, Copy)]
pub(super) struct Rep<'a> {
    pub(super) lab: &'a Lab,
    pub(super) servers: &'a Servers,
    pub(super) s: &'a Settings,
    pub(super) r: &'a Route,
    /// Its number, from 1.
    pub(super) n: usize,
}

impl Rep<'_> {
    /// `<path> rep <n>/<reps>`: what its progress lines start with.
    pub(super) fn tag(&self) -> String {
        format!("{} rep {}/{}", self.r.path, self.n, self.s.reps)
    }
}

/// Every measurement of one repetition on one route: TCP, RTT, frames.
pub(super) fn measure_rep(
    at: &Rep,
    samples: &mut Samples,
    progress: &mut Progress,
) -> Result<(), SuiteError> {
    let Rep {
        lab,
        servers,
        s,
        r,
        n: rep,
    } = *at;
    let dst = dst_addr(lab, r)?;
    let p = r.path;
    let tag = at.tag();

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
        let m = if streams == 1 {
            Measure::Tcp1
        } else {
            Measure::Tcp2
        };
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
            samples.push(p, Measure::CpuPerGbit, per_gbit);
            msg.push_str(&format!(", {per_gbit:.2} CPU-s/Gbit"));
        }
        progress.step(&msg);
    }

    let rtt = rtt(lab, servers, s, r, dst)?;
    progress.step(&format!(
        "{tag}: RTT p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us ({} lost)",
        rtt.p50_us, rtt.p99_us, rtt.p999_us, rtt.lost
    ));
    samples.push(p, Measure::Rtt, rtt.p50_us);
    samples.rtt.entry(p).or_default().push(rtt);

    frames::measure(at, samples, progress)
}

/// One iperf3 run; the machine's CPU time over it.
pub(super) fn tcp(
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

/// Bytes one of our data planes carried in one direction, by who carried them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Carried {
    /// The XDP/TC fast path.
    pub(super) fast: u64,
    /// The AF_XDP workers.
    pub(super) workers: u64,
}

/// What `dataplane stats --json` says about one of our hosts.
#[derive(Clone, Debug)]
pub(super) struct DpStats {
    /// Decapsulated (underlay to overlay port) and encapsulated (overlay port to underlay).
    pub(super) rx: Carried,
    tx: Carried,
    /// Frames the underlay program passed to the kernel as not overlay traffic for us (its
    /// `pass_*` counters): a frame of the test counted here arrived altered.
    pub(super) passed: u64,
}

/// Asks host `host`'s data plane for its counters, and checks that it runs in the mode the
/// route's results are labelled with.
pub(super) fn dp_stats(
    lab: &Lab,
    servers: &Servers,
    r: &Route,
    host: &str,
) -> Result<DpStats, SuiteError> {
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
pub(super) fn fast_share(
    r: &Route,
    fast: u64,
    workers: u64,
    rep: usize,
    samples: &mut Samples,
    m: Measure,
) -> Option<f64> {
    let total = fast + workers;
    if total == 0 {
        return None;
    }
    let share = fast as f64 / total as f64;
    let what = if m == Measure::Frames64 {
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

/// Below this share of the bytes on the fast path, an xdp-mode measurement gets a note.
const FAST_SHARE_XDP: f64 = 0.95;

pub(super) fn read_file_in(lab: &Lab, host: &str, path: &str) -> Result<String, SuiteError> {
    Ok(exec(lab, host, &["cat", path], Duration::from_secs(5))?
        .trim()
        .to_string())
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
        let share = fast_share(&route(PathKind::OursVxlan), 99, 1, 1, &mut s, Measure::Tcp1);
        assert_eq!(share, Some(0.99));
        assert!(s.notes.is_empty());
        fast_share(
            &route(PathKind::OursVxlan),
            50,
            50,
            2,
            &mut s,
            Measure::Tcp1,
        );
        let note = s.notes_of(PathKind::OursVxlan, Measure::Tcp1).unwrap();
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
                Measure::Frames64
            ),
            Some(0.0)
        );
        assert!(
            s.notes_of(PathKind::OursVxlanAfxdp, Measure::Frames64)
                .is_none()
        );
        fast_share(
            &route(PathKind::OursVxlanAfxdp),
            1,
            10,
            1,
            &mut s,
            Measure::Frames64,
        );
        assert!(
            s.notes_of(PathKind::OursVxlanAfxdp, Measure::Frames64)
                .is_some()
        );
        assert_eq!(
            fast_share(&route(PathKind::OursGeneve), 0, 0, 1, &mut s, Measure::Tcp1),
            None
        );
        // Notes of different kinds on one record are joined.
        s.note(PathKind::OursVxlan, Measure::Tcp1, "other", "second".into());
        let joined = s.notes_of(PathKind::OursVxlan, Measure::Tcp1).unwrap();
        assert!(joined.contains("; second"), "{joined}");
    }
}
