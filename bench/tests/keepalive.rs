//! HTTP/1.1 keep-alive on loopback: the ID server keeping connections open, the keep-alive
//! client against it, a server that goes away and comes back (in-process and the binaries,
//! with kill -9). Everything listens on 127.0.0.1 with kernel-picked ports.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench::workload::{
    IdServer, IdServerHandle, KeepAlive, KeepAliveSummarizer, KeepAliveSummary, Summary,
};

const LOCALHOST: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Polls `cond` until it holds or 10 s pass.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads one response framed by its Content-Length: (head, body).
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "EOF inside a head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// True once the server has closed `s` (EOF), false if it is still open after `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn server_answers_many_requests_on_one_connection() {
    let srv = IdServer::new("PRI", LOCALHOST).unwrap().spawn().unwrap();
    let mut s = connect(srv.local_addr());
    // One after the other, asked explicitly and by default (HTTP/1.1 without close).
    for i in 0..5 {
        let req: &[u8] = if i % 2 == 0 {
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        } else {
            b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
        };
        s.write_all(req).unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
        assert_eq!(body, "PRI\n");
    }
    // Two pipelined in one write, then one asking to close.
    s.write_all(b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).1, "PRI\n");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 4\r\n"));
    s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert_eq!(body, "PRI\n");
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    wait_for("the counters", || {
        let st = srv.stats();
        st.served == 8 && st.active == 0
    });
    let st = srv.stats();
    assert_eq!(
        (st.connections, st.reused, st.idle_closed),
        (1, 7, 0),
        "{st:?}"
    );

    // HTTP/1.0 closes after one answer, as before.
    let mut s = connect(srv.local_addr());
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s);
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert!(closed_within(&mut s, Duration::from_secs(5)));
}

#[test]
fn idle_and_stopping_close_kept_alive_connections_and_they_hold_a_slot() {
    let mut srv = IdServer::new("PRI", LOCALHOST)
        .unwrap()
        .idle_timeout(Duration::from_millis(300))
        .max_connections(1)
        .spawn()
        .unwrap();
    let addr = srv.local_addr();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_response(s).1
    };
    let mut s = connect(addr);
    assert_eq!(ask(&mut s), "PRI\n");
    // The kept-alive connection holds the only slot: another one is turned away.
    let mut other = connect(addr);
    let _ = other.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut out = Vec::new();
    let _ = other.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert_eq!(srv.stats().rejected_overload, 1);
    // Requests within the idle timeout keep it open.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(&mut s), "PRI\n");
    }
    // Idle past the timeout: closed, counted as idle, not as a read timeout.
    let idle = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert!(idle.elapsed() >= Duration::from_millis(250), "{idle:?}");
    wait_for("the idle close", || srv.stats().active == 0);
    let st = srv.stats();
    assert_eq!(
        (st.idle_closed, st.timeouts, st.reused),
        (1, 0, 3),
        "{st:?}"
    );

    // Stopping closes an idle kept-alive connection at once, not after the idle timeout.
    let mut srv2 = IdServer::new("SEC", LOCALHOST)
        .unwrap()
        .idle_timeout(Duration::from_secs(60))
        .spawn()
        .unwrap();
    let mut s = connect(srv2.local_addr());
    assert_eq!(ask(&mut s), "SEC\n");
    let stopping = Instant::now();
    srv2.stop();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert!(stopping.elapsed() < Duration::from_secs(2));
    wait_for("the stop close", || srv2.stats().idle_closed == 1);
    srv.stop();
}

fn keep_alive(addr: SocketAddr, n: usize, interval_ms: u64) -> KeepAlive {
    KeepAlive {
        interval: Duration::from_millis(interval_ms),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..KeepAlive::from_url(
            &bench::workload::HttpUrl::parse(&format!("http://{addr}/")).unwrap(),
            n,
        )
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `k` in a thread while `script` runs, then stops it: its summary.
fn run_while(k: &KeepAlive, script: impl FnOnce()) -> KeepAliveSummary {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            let mut sum = KeepAliveSummarizer::new(k.connections, k.interval);
            let mut vias = Vec::new();
            let stats = k
                .run_until(&stop, |ev| {
                    if let bench::workload::KeepAliveEvent::Request { via, .. } = ev {
                        vias.push(*via);
                    }
                    sum.push(ev);
                })
                .unwrap();
            sum.add_skipped_ticks(stats.skipped_ticks);
            (sum.finish(), vias)
        });
        {
            // Stops the client even if the script panics, so the test fails instead of hanging.
            let _stop = StopOnDrop(&stop);
            script();
        }
        let (summary, vias) = t.join().unwrap();
        assert_eq!(vias.len() as u64, summary.requests);
        summary
    })
}

#[test]
fn keep_alive_client_reuses_its_connections() {
    let srv = IdServer::new("PRI", LOCALHOST).unwrap().spawn().unwrap();
    let k = keep_alive(srv.local_addr(), 4, 5);
    let s = run_while(&k, || {
        wait_for("40 answers", || srv.stats().served >= 40);
    });
    assert!(s.ok >= 40, "{s}");
    assert_eq!(
        (s.failed, s.connections_opened, s.reconnects),
        (0, 4, 0),
        "{s}"
    );
    assert_eq!(s.reused, s.requests - 4, "{s}");
    assert_eq!(s.connections_reset, 0, "{s}");
    assert_eq!(s.per_id["PRI"], s.ok);
    assert_eq!(s.id_changes, 0);
    assert!(
        s.per_connection
            .iter()
            .all(|c| c.ids == ["PRI"] && c.opened == 1)
    );
    // Every request reached the server on the four connections.
    wait_for("the server to count every request", || {
        srv.stats().served == s.ok
    });
    let st = srv.stats();
    assert_eq!(st.connections, 4, "{st:?}");
    assert_eq!(st.reused, s.ok - 4, "{st:?}");
}

#[test]
fn keep_alive_client_reconnects_to_the_new_server() {
    let mut pri = IdServer::new("PRI", LOCALHOST).unwrap().spawn().unwrap();
    let addr = pri.local_addr();
    let k = keep_alive(addr, 4, 5);
    let mut sec: Option<IdServerHandle> = None;
    let s = run_while(&k, || {
        wait_for("PRI answers", || pri.stats().served >= 20);
        pri.stop();
        std::thread::sleep(Duration::from_millis(100));
        // The same port, another server: what the client sees after a switchover.
        let new = IdServer::new("SEC", addr).unwrap().spawn().unwrap();
        wait_for("SEC answers on every connection", || {
            new.stats().connections == 4 && new.stats().served >= 20
        });
        sec = Some(new);
    });
    // Each connection lost once (FIN while idle, or `Connection: close` on an answer to a
    // request the stopping server was reading), reopened once, and moved from PRI to SEC.
    assert_eq!(s.connections_reset + s.server_closes, 4, "{s}");
    assert_eq!(s.resets["timeout"], 0, "{s}");
    assert_eq!((s.connections_opened, s.reconnects), (8, 4), "{s}");
    assert!(s.connect_failures > 0, "refused while no one listened: {s}");
    assert_eq!(s.failures["refused"], s.connect_failures, "{s}");
    assert_eq!((s.id_changes, s.id_changes_same_connection), (4, 0), "{s}");
    for c in &s.per_connection {
        assert_eq!(c.ids, ["PRI", "SEC"], "{s}");
        assert_eq!(c.opened, 2, "{s}");
    }
    assert!(s.per_id["PRI"] >= 20 && s.per_id["SEC"] >= 20, "{s}");
    assert_eq!(sec.unwrap().stats().connections, 4);
}

#[test]
fn connection_closed_while_idle_is_a_loss_but_not_a_failed_request() {
    // A server that answers one request per connection (keep-alive framing, no close
    // announced), then closes it: the client finds the FIN before its next request.
    let listener = TcpListener::bind(LOCALHOST).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for conn in listener.incoming().take(5) {
            let mut c = conn.unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            while !buf.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut chunk).unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            assert!(String::from_utf8_lossy(&buf).contains("Connection: keep-alive"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nONE\n")
                .unwrap();
        }
    });
    let k = keep_alive(addr, 1, 200);
    let mut s = run_while(&k, || {
        wait_for("five connections", || server.is_finished());
        // Let the fifth answer reach the client.
        std::thread::sleep(Duration::from_millis(100));
    });
    // The sixth connection attempt may have been refused after the listener closed.
    s.failures.remove("refused");
    assert!(s.failures.is_empty(), "{s}");
    assert_eq!(s.per_id["ONE"], 5, "{s}");
    assert_eq!(s.reused, 0, "{s}");
    assert!(s.resets["eof"] >= 4, "{s}");
    assert!(s.reconnects >= 4, "{s}");
    assert_eq!(s.id_changes, 0, "{s}");
}

// ---- the binaries, with kill -9 ----

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ID_SERVER: &str = env!("CARGO_BIN_EXE_id-server");
const HTTP_PING: &str = env!("CARGO_BIN_EXE_http-ping");

fn id_server(id: &str, listen: &str) -> ChildGuard {
    let child = Command::new(ID_SERVER)
        .args(["--id", id, "--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    let addr: SocketAddr = listen.parse().unwrap();
    wait_for("id-server to listen", || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    });
    guard
}

#[test]
fn http_ping_counts_resets_and_reconnects_when_the_server_is_killed() {
    let port = TcpListener::bind(LOCALHOST)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut pri = id_server("PRI", &listen);
    let url = format!("http://{listen}/");
    let ping = Command::new(HTTP_PING)
        .args([
            "--url",
            &url,
            "--interval-ms",
            "5",
            "--duration-s",
            "3",
            "--connect-timeout-ms",
            "1000",
            "--timeout-ms",
            "2000",
            "--keep-alive-connections",
            "4",
            "--keep-alive-interval-ms",
            "10",
            "--quiet",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ping = ChildGuard(ping);
    std::thread::sleep(Duration::from_millis(800));
    pri.0.kill().unwrap(); // SIGKILL: the kernel closes its sockets
    pri.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _sec = id_server("SEC", &listen);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ping.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "http-ping did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = String::new();
    ping.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(ping.0.wait().unwrap().success(), "{stdout}");
    assert!(
        stdout.contains("keep-alive connections: opened "),
        "{stdout}"
    );

    // The field names the soak test reads.
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ka = &json["keep_alive"];
    for field in [
        "connections",
        "interval_ms",
        "requests",
        "ok",
        "failed",
        "reused",
        "skipped_ticks",
        "connections_opened",
        "connect_failures",
        "connections_reset",
        "server_closes",
        "reconnects",
        "id_changes",
        "id_changes_same_connection",
    ] {
        assert!(ka[field].is_number(), "{field} in {ka}");
    }
    for kind in ["reset", "eof", "timeout"] {
        assert!(ka["resets"][kind].is_u64(), "{kind} in {ka}");
    }
    assert!(
        ka["failures"].is_object() && ka["per_id"].is_object(),
        "{ka}"
    );
    assert_eq!(ka["connections"], 4);
    assert_eq!(ka["interval_ms"], 10.0);
    assert_eq!(ka["per_connection"].as_array().unwrap().len(), 4);

    // And through the library type.
    let summary = Summary::from_log(&stdout).unwrap();
    let k = summary.keep_alive.clone().unwrap();
    // Every connection was lost to the kill (eof or reset), then reopened to SEC.
    assert!(k.connections_reset >= 4, "{k}");
    assert_eq!(
        k.connections_reset,
        k.resets["reset"] + k.resets["eof"] + k.resets["timeout"],
        "{k}"
    );
    assert!(k.reconnects >= 4, "{k}");
    assert_eq!(k.connections_opened, 4 + k.reconnects, "{k}");
    assert_eq!(k.server_closes, 0, "{k}");
    assert!(k.connect_failures > 0, "refused while down: {k}");
    assert_eq!((k.id_changes, k.id_changes_same_connection), (4, 0), "{k}");
    for c in &k.per_connection {
        assert_eq!(c.ids, ["PRI", "SEC"], "{k}");
        assert_eq!(c.id_changes, 1, "{k}");
    }
    assert!(k.per_id["PRI"] > 0 && k.per_id["SEC"] > 0, "{k}");
    assert!(k.reused > k.requests / 2, "{k}");
    assert_eq!(k.ok + k.failed, k.requests);
    // The per-request schedule ran alongside and saw the same switch.
    assert!(
        summary.per_id["PRI"] > 0 && summary.per_id["SEC"] > 0,
        "{summary}"
    );
    assert!(summary.failures.contains_key("refused"), "{summary}");
}

#[test]
fn http_ping_refuses_bad_keep_alive_flags() {
    for args in [
        &["--keep-alive-connections", "0"][..],
        &["--keep-alive-connections", "1025"],
        &["--keep-alive-interval-ms", "10"], // needs --keep-alive-connections
    ] {
        let out = Command::new(HTTP_PING)
            .args(["--url", "http://127.0.0.1:1/", "--count", "1"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
