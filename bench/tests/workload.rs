//! The workload end to end on loopback: IdServer and HttpPing together, a failover through a
//! forwarder whose target flips, a server that goes away, bad clients, and the two binaries.
//! Everything listens on 127.0.0.1 with kernel-picked ports; nothing leaves the machine.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bench::workload::{
    HttpPing, IdServer, IdServerHandle, Limit, Outcome, Sample, Summarizer, Summary,
};

const LOCALHOST: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

fn server(id: &str) -> IdServerHandle {
    IdServer::new(id, LOCALHOST).unwrap().spawn().unwrap()
}

/// A client at 1 ms with timeouts generous enough for a loaded 2-core machine.
fn fast_ping(target: SocketAddr, limit: Limit) -> HttpPing {
    HttpPing {
        interval: Duration::from_millis(1),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        limit,
        ..HttpPing::new(target)
    }
}

/// Polls `cond` until it holds or 5 s pass.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn every_answer_carries_the_id() {
    let srv = server("PRI");
    let mut samples = Vec::new();
    let run = fast_ping(
        srv.local_addr(),
        Limit::Duration(Duration::from_millis(200)),
    )
    .run(|s| samples.push(s.clone()))
    .unwrap();
    assert_eq!(run.requests, samples.len() as u64);
    // Every tick before the end either ran or was counted as skipped.
    assert_eq!(run.requests + run.skipped_ticks, 200, "{run:?}");
    assert!(
        run.requests >= 20,
        "only {} requests in 200 ms",
        run.requests
    );
    for s in &samples {
        assert_eq!(s.outcome, Outcome::Ok("PRI".into()), "{s:?}");
        // Scheduled inside the 200 ms window (its start may be later on a starved CPU: a CI
        // run started tick 199 after 200 ms; the start is checked against its tick below).
        assert!(s.seq < 200 && s.latency < Duration::from_secs(2), "{s:?}");
    }
    // The fixed schedule: each request starts no earlier than its tick.
    for s in &samples {
        assert!(s.t >= Duration::from_millis(s.seq), "{s:?}");
    }
    assert!(samples.windows(2).all(|w| w[0].seq < w[1].seq));
    let summary = Summary::from_samples(&samples);
    assert_eq!(summary.ok, run.requests);
    assert!(summary.switches.is_empty() && summary.failures.is_empty());
    wait_for("the server to count every request", || {
        srv.stats().served == run.requests
    });
    assert_eq!(srv.stats().connections, run.requests);
}

/// A TCP forwarder whose target can change, with a blackout of a few connections (closed at
/// once) in between: a failover as a client sees it.
struct Forwarder {
    addr: SocketAddr,
    state: Arc<Mutex<(u32, SocketAddr)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind(LOCALHOST).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new((0, target)));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let target = {
                    let mut s = st.lock().unwrap();
                    if s.0 > 0 {
                        s.0 -= 1;
                        None
                    } else {
                        Some(s.1)
                    }
                };
                // Blackout: the connection is closed without an answer.
                let Some(target) = target else { continue };
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                else {
                    continue;
                };
                pipe(&client, &upstream);
                pipe(&upstream, &client);
            }
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// From the next connection on: `blackout` connections closed, then `target`.
    fn flip(&self, blackout: u32, target: SocketAddr) {
        *self.state.lock().unwrap() = (blackout, target);
    }
}

/// Copies `from` to `to` in a thread, then passes the end of stream on.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    from.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn failover_through_a_forwarder_is_one_switch() {
    let pri = server("PRI");
    let sec = server("SEC");
    let fwd = Forwarder::start(pri.local_addr());
    let mut summary = Summarizer::new();
    let mut n = 0;
    let run = fast_ping(fwd.addr, Limit::Count(120))
        .run(|s| {
            summary.push(s);
            n += 1;
            if n == 50 {
                fwd.flip(5, sec.local_addr());
            }
        })
        .unwrap();
    summary.add_skipped_ticks(run.skipped_ticks);
    let s = summary.finish();
    assert_eq!(s.requests, 120);
    assert_eq!(s.per_id["PRI"], 50, "{s}");
    assert_eq!(s.per_id["SEC"], 65, "{s}");
    assert_eq!(s.failed, 5, "{s}");
    assert_eq!(s.switches.len(), 1, "{s}");
    let w = &s.switches[0];
    assert_eq!((w.from.as_str(), w.to.as_str()), ("PRI", "SEC"));
    assert_eq!(w.failures_between, 5);
    // Five failed requests and the first SEC one run on six distinct later ticks.
    assert!(w.gap >= Duration::from_millis(5), "{s}");
    assert!(w.gap < Duration::from_secs(2), "{s}");
    assert_eq!(w.gap, w.first_to - w.last_from);
    // On a loaded machine a slow request elsewhere can leave a longer gap than the switch.
    assert!(s.longest_gap.unwrap() >= w.gap, "{s}");
    // The blackout's closes show as connection failures, not as timeouts.
    assert!(
        s.failures
            .keys()
            .all(|k| k == "closed_early" || k == "reset"),
        "{s}"
    );
    wait_for("PRI to count 50 answers", || pri.stats().served == 50);
    wait_for("SEC to count 65 answers", || sec.stats().served == 65);
}

#[test]
fn stopped_server_means_refused() {
    let mut srv = Some(server("PRI"));
    let mut samples: Vec<Sample> = Vec::new();
    fast_ping(srv.as_ref().unwrap().local_addr(), Limit::Count(30))
        .run(|s| {
            samples.push(s.clone());
            if samples.len() == 10 {
                let mut handle = srv.take().unwrap();
                handle.stop();
                assert_eq!(handle.stats().served, 10);
            }
        })
        .unwrap();
    assert!(srv.is_none());
    assert_eq!(samples.len(), 30);
    assert!(
        samples[..10]
            .iter()
            .all(|s| s.outcome == Outcome::Ok("PRI".into()))
    );
    assert!(
        samples[10..].iter().all(|s| s.outcome == Outcome::Refused),
        "{:?}",
        &samples[10..]
    );
    let summary = Summary::from_samples(&samples);
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures["refused"], 20);
    assert_eq!(summary.ok, 10);
}

#[test]
fn bound_source_address_is_used() {
    let listener = TcpListener::bind(LOCALHOST).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nALT\n")
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        peer
    });
    let ping = HttpPing {
        bind: Some("127.0.0.2".parse().unwrap()),
        ..fast_ping(addr, Limit::Count(1))
    };
    let (outcome, _) = ping.probe_once();
    assert_eq!(outcome, Outcome::Ok("ALT".into()));
    assert_eq!(peer.join().unwrap().ip().to_string(), "127.0.0.2");

    // A source address this machine does not have fails at bind time, before any packet.
    let ping = HttpPing {
        bind: Some("192.0.2.1".parse().unwrap()),
        ..fast_ping(addr, Limit::Count(1))
    };
    assert_eq!(
        ping.probe_once().0,
        Outcome::Error("addr_not_available".into())
    );
}

#[test]
fn silent_server_is_a_timeout() {
    let listener = TcpListener::bind(LOCALHOST).unwrap();
    let ping = HttpPing {
        request_timeout: Duration::from_millis(50),
        ..fast_ping(listener.local_addr().unwrap(), Limit::Count(2))
    };
    let mut samples = Vec::new();
    let run = ping.run(|s| samples.push(s.clone())).unwrap();
    assert!(
        samples.iter().all(|s| s.outcome == Outcome::Timeout),
        "{samples:?}"
    );
    assert!(
        samples
            .iter()
            .all(|s| s.latency >= Duration::from_millis(50))
    );
    // Each 50 ms wait covers the following 1 ms ticks: skipped, not made up for.
    assert!(run.skipped_ticks >= 40, "{run:?}");
    assert!(samples[1].seq >= 50, "{samples:?}");
}

/// Sends `request` on a fresh connection and reads until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn server_answers_keep_alive_head_and_garbage_without_panicking() {
    let srv = server("SEC");
    let addr = srv.local_addr();

    // A keep-alive client pipelining two requests gets both answered on the connection, the
    // second (which asks to close) with a clean close.
    let r = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n\
          GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(
        r.matches("\r\nConnection: keep-alive\r\n").count(),
        1,
        "{r}"
    );
    assert_eq!(r.matches("\r\nConnection: close\r\n").count(), 1, "{r}");
    assert!(r.ends_with("\r\n\r\nSEC\n"), "{r}");
    assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "{r}");

    let r = exchange(addr, b"HEAD / HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    assert!(r.contains("Content-Length: 4\r\n"), "{r}");

    let r = exchange(addr, b"DELETE / HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");

    for garbage in [
        &b"hello\r\n\r\n"[..],
        b"\x16\x03\x01\x00\xff\x01\x00\x00\n\n",
        b"GET / HTTP/1.1\r\n\0\r\n\r\n",
    ] {
        let r = exchange(addr, garbage);
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    }
    // A head that never ends is cut off at its size limit.
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(16 * 1024, b'a');
    let r = exchange(addr, &huge);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    // Half a request, then the client's half-close.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HT").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

    wait_for("the counters", || {
        let st = srv.stats();
        st.served == 3 && st.reused == 1 && st.not_allowed == 1 && st.bad_requests == 5
    });
    // The server still answers.
    let (outcome, _) = fast_ping(addr, Limit::Count(1)).probe_once();
    assert_eq!(outcome, Outcome::Ok("SEC".into()));
}

#[test]
fn silent_clients_time_out_and_extra_connections_are_refused() {
    let srv = IdServer::new("PRI", LOCALHOST)
        .unwrap()
        .read_timeout(Duration::from_millis(300))
        .max_connections(1)
        .spawn()
        .unwrap();
    let addr = srv.local_addr();
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    wait_for("the silent connection to be served", || {
        srv.stats().active == 1
    });
    // The only slot is taken: the next connection is closed without an answer.
    let r = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    assert!(r.is_empty(), "{}", String::from_utf8_lossy(&r));
    assert_eq!(srv.stats().rejected_overload, 1);
    // The silent client is cut off after the read timeout, without an answer.
    let mut out = Vec::new();
    silent.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    wait_for("the timeout to be counted", || {
        let st = srv.stats();
        st.timeouts == 1 && st.active == 0
    });
    let (outcome, _) = fast_ping(addr, Limit::Count(1)).probe_once();
    assert_eq!(outcome, Outcome::Ok("PRI".into()));
}

#[test]
fn invalid_ids_are_refused() {
    for id in ["", "two words", "tab\t", "é", &"x".repeat(65)] {
        assert!(IdServer::new(id, LOCALHOST).is_err(), "{id:?}");
    }
    assert!(IdServer::new("PRI-1", LOCALHOST).is_ok());
}

// ---- the binaries ----

/// Kills and reaps the child if a test fails before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_bin(bin: &str, args: &[&str]) -> Output {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while guard.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{bin} {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = Output {
        status: guard.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out.stdout)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut out.stderr)
        .unwrap();
    out
}

const ID_SERVER: &str = env!("CARGO_BIN_EXE_id-server");
const HTTP_PING: &str = env!("CARGO_BIN_EXE_http-ping");

#[test]
fn binaries_explain_themselves() {
    let out = run_bin(ID_SERVER, &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--id",
        "--listen",
        "--read-timeout-ms",
        "--idle-timeout-ms",
        "--max-connections",
    ] {
        assert!(text.contains(flag), "{text}");
    }
    let out = run_bin(HTTP_PING, &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--url",
        "--interval-ms",
        "--count",
        "--duration-s",
        "--connect-timeout-ms",
        "--keep-alive-connections",
        "--keep-alive-interval-ms",
        "--json",
        "Exit status",
    ] {
        assert!(text.contains(flag), "{text}");
    }
}

#[test]
fn http_ping_prints_a_line_per_request_and_a_json_summary() {
    let srv = server("PRI");
    let url = format!("http://{}/", srv.local_addr());
    let out = run_bin(
        HTTP_PING,
        &[
            "--url",
            &url,
            "--interval-ms",
            "1",
            "--count",
            "5",
            "--json",
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    for l in &lines[..5] {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "{l}");
        // 2026-11-22T10:00:00.123456Z
        assert_eq!(f[0].len(), 27, "{l}");
        assert!(f[0].ends_with('Z') && f[0].as_bytes()[10] == b'T', "{l}");
        assert_eq!(f[1], "PRI", "{l}");
        let ms: f64 = f[2].strip_suffix("ms").unwrap().parse().unwrap();
        assert!(ms > 0.0, "{l}");
    }
    assert!(lines[5].starts_with("--- http-ping"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(json["requests"], 5);
    assert_eq!(json["ok"], 5);
    assert_eq!(json["per_id"]["PRI"], 5);
    assert_eq!(json["switches"].as_array().unwrap().len(), 0);
    // The summary parses back into the library type.
    let summary: Summary = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(summary.ok, 5);
}

#[test]
fn http_ping_without_answers_exits_1() {
    // A port that was free a moment ago: connections are refused.
    let addr = TcpListener::bind(LOCALHOST).unwrap().local_addr().unwrap();
    let url = format!("http://{addr}/");
    let out = run_bin(
        HTTP_PING,
        &[
            "--url",
            &url,
            "--interval-ms",
            "1",
            "--count",
            "3",
            "--json",
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" FAIL refused "))
            .count(),
        3
    );
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["failures"]["refused"], 3);
    assert_eq!(json["ok"], 0);
}

#[test]
fn http_ping_rejects_urls_it_cannot_use() {
    for url in [
        "http://localhost:3000/",
        "https://127.0.0.1:3000/",
        "127.0.0.1:3000",
    ] {
        let out = run_bin(HTTP_PING, &["--url", url, "--count", "1"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("--url"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = run_bin(
        HTTP_PING,
        &[
            "--url",
            "http://127.0.0.1:1/",
            "--count",
            "1",
            "--duration-s",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn id_server_binary_serves_and_stops_on_sigterm() {
    // Borrow a free port from the kernel; the binary binds it right after.
    let port = TcpListener::bind(LOCALHOST)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(ID_SERVER)
        .args(["--id", "SEC", "--listen", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let ping = fast_ping(listen.parse().unwrap(), Limit::Count(1));
    wait_for("id-server to answer", || {
        ping.probe_once().0 == Outcome::Ok("SEC".into())
    });
    let pid = libc::pid_t::try_from(guard.0.id()).unwrap();
    // SAFETY: signalling our own child, which the guard has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = guard.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "id-server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let mut err = String::new();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopped"), "{err}");
    assert_eq!(ping.probe_once().0, Outcome::Refused);
}

#[test]
fn parallel_ticks_stay_on_time_while_a_request_hangs() {
    // A server that accepts but never answers the first connection: with one request at a
    // time the client would lose 200 ms of ticks; in parallel mode the others go on.
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut c) = conn else { break };
            if i == 0 {
                held.push(c);
                continue;
            }
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nPRI\n",
            );
            if i > 60 {
                break;
            }
        }
    });
    let mut ping = bench::workload::HttpPing::new(addr);
    ping.interval = std::time::Duration::from_millis(2);
    ping.limit = bench::workload::Limit::Count(50);
    ping.parallel = 8;
    let mut samples = Vec::new();
    let stats = ping.run(|s| samples.push(s.clone())).unwrap();
    let s = bench::workload::Summary::from_samples(&samples);
    assert_eq!(stats.requests, 50);
    assert_eq!(s.ok, 49, "{s}");
    assert_eq!(s.failed, 1, "the hung request timed out: {s}");
    assert!(
        s.longest_gap.unwrap() < std::time::Duration::from_millis(50),
        "answers kept coming while one request hung: {s}"
    );
    drop(server);
}
