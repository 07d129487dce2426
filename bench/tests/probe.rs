//! The RTT probe end to end on loopback: library echo server and prober, a target that never
//! answers, and the `rtt-probe` binary. Everything uses 127.0.0.1 with kernel-picked ports.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench::probe::{EchoServer, ProbeConfig, ProbeOutcome, RttReport, probe};

const RTT_PROBE: &str = env!("CARGO_BIN_EXE_rtt-probe");

fn assert_consistent(r: &RttReport) {
    assert!(r.p50_us > 0.0, "{r:?}");
    assert!(r.min_us <= r.p50_us, "{r:?}");
    assert!(r.p50_us <= r.p90_us && r.p90_us <= r.p99_us, "{r:?}");
    assert!(r.p99_us <= r.p999_us && r.p999_us <= r.max_us, "{r:?}");
    assert!(r.min_us <= r.mean_us && r.mean_us <= r.max_us, "{r:?}");
    assert!(
        !r.curve.is_empty() && r.curve.len() <= 200,
        "{}",
        r.curve.len()
    );
    for w in r.curve.windows(2) {
        assert!(w[0].0 < w[1].0, "percentiles not increasing: {w:?}");
        assert!(w[0].1 <= w[1].1, "latency decreasing: {w:?}");
    }
    let (first, last) = (r.curve[0], r.curve[r.curve.len() - 1]);
    assert_eq!(first.0, 0.0);
    assert_eq!(last.0, 100.0);
    assert_eq!(last.1, r.max_us);
}

#[test]
fn probes_through_the_echo_server() {
    let server = EchoServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = ProbeConfig {
        count: 200,
        interval: Duration::from_millis(1),
        // Generous: other builds and tests share these two cores.
        timeout: Duration::from_secs(2),
        ..ProbeConfig::new(server.local_addr())
    };
    let stop_echo = AtomicBool::new(false);
    let stop_probe = AtomicBool::new(false);
    std::thread::scope(|s| {
        let echo = s.spawn(|| server.serve(&stop_echo));
        let mut events = Vec::new();
        let started = Instant::now();
        let r = probe(&cfg, &stop_probe, |p| events.push(*p)).unwrap();
        let took = started.elapsed();
        stop_echo.store(true, Ordering::Relaxed);
        let stats = echo.join().unwrap().unwrap();

        assert_eq!(
            (r.sent, r.received, r.lost, r.stray),
            (200, 200, 0, 0),
            "{r:?}"
        );
        assert_consistent(&r);
        // Loopback: well under a second even on a busy machine.
        assert!(r.p50_us < 1_000_000.0, "{r:?}");
        // The absolute schedule: 210 probes at 1 ms take about 209 ms, never less.
        assert!(took >= Duration::from_millis(209), "{took:?}");
        // Warm-up probes were sent and echoed but not recorded.
        assert_eq!(events.len(), 210);
        assert_eq!(events.iter().filter(|p| p.warmup).count(), 10);
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, p)| p.seq == i as u64 && matches!(p.outcome, ProbeOutcome::Reply(_)))
        );
        assert_eq!(stats.echoed, 210);
        assert_eq!(stats.bytes, 210 * 32);
    });
}

#[test]
fn silent_target_loses_everything_in_bounded_time() {
    // A bound socket that never answers: probes reach it and vanish (no ICMP refusal).
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = ProbeConfig {
        count: 10,
        warmup: 2,
        interval: Duration::from_millis(1),
        timeout: Duration::from_millis(30),
        ..ProbeConfig::new(sink.local_addr().unwrap())
    };
    let started = Instant::now();
    let r = probe(&cfg, &AtomicBool::new(false), |_| {}).unwrap();
    let took = started.elapsed();
    assert_eq!((r.sent, r.received, r.lost), (10, 0, 10), "{r:?}");
    assert!(r.curve.is_empty());
    assert_eq!(r.max_us, 0.0);
    // Each of the 12 probes waits its full timeout, and not much more.
    assert!(took >= Duration::from_millis(12 * 30), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn closed_port_loses_everything_quickly() {
    // Nobody listens: loopback answers with ICMP port unreachable, which ends each wait early.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ProbeConfig {
        count: 20,
        interval: Duration::from_millis(1),
        timeout: Duration::from_millis(500),
        ..ProbeConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let started = Instant::now();
    let r = probe(&cfg, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!((r.sent, r.received, r.lost), (20, 0, 20), "{r:?}");
    // 30 probes × 500 ms if the refusals were ignored; well under that.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A spawned echo server, killed on drop.
struct EchoChild(Child);

impl Drop for EchoChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rtt-probe echo` on a kernel-picked port and waits for its readiness line.
fn spawn_echo() -> (EchoChild, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(RTT_PROBE)
        .args(["echo", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let child = EchoChild(child);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("rtt-probe: echoing on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr, stderr)
}

#[test]
fn binary_end_to_end() {
    let (mut echo, addr, mut stderr) = spawn_echo();
    let out = Command::new(RTT_PROBE)
        .args(["client", "--target", &addr.to_string()])
        .args([
            "--count",
            "100",
            "--interval-us",
            "500",
            "--timeout-ms",
            "2000",
        ])
        .args(["--payload", "64", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let r: RttReport = serde_json::from_str(&stdout).unwrap();
    assert_eq!((r.sent, r.received, r.lost), (100, 100, 0), "{r:?}");
    assert_consistent(&r);

    // Human summary.
    let out = Command::new(RTT_PROBE)
        .args(["client", "--target", &addr.to_string(), "--count", "20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.contains("n=20, lost=0"), "{line}");
    assert!(line.contains("p99.9") && line.contains("µs"), "{line}");

    // SIGTERM stops the echo server cleanly, with its counters: 110 + 30 datagrams.
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(echo.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = echo.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "echo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("echoed 140"), "{rest}");
}

#[test]
fn binary_rejects_bad_arguments() {
    for args in [
        &["client", "--target", "not-an-address"][..],
        &["client", "--target", "127.0.0.1:9", "--payload", "8"],
        &["client", "--target", "127.0.0.1:9", "--timeout-ms", "0"],
        &["client", "--target", "127.0.0.1:9", "--count", "-3"],
        &["echo"],
        &["echo", "--bind", "256.0.0.1:1"],
        &["frobnicate"],
    ] {
        let out = Command::new(RTT_PROBE).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // The range errors name the problem.
    let out = Command::new(RTT_PROBE)
        .args(["client", "--target", "127.0.0.1:9", "--payload", "8"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("payload must be 16 to 2048"));
}
