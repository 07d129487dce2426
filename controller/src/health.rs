//! Local health: is this node fit to own the VIP?
//!
//! Two kinds of checks:
//! - link checks (underlay interface up, overlay interface present), cheap netlink look-ups the
//!   event loop runs itself whenever the link watcher reports a change, so a link going down
//!   is seen at once;
//! - periodic checks that may block (the data plane answering `ping` on its control socket, a
//!   user command, an HTTP GET), run on their own thread every `health.interval_ms`, each with
//!   its own timeout, debounced by `fall`/`rise`, and reported to the event loop over a channel.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::config::HealthSection;

/// Where an HTTP check goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address (for the connection and the Host header).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path with query.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://host[:port][/path]` (plain HTTP only; IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            let port = v6[end + 1..].strip_prefix(':');
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(format!("{url:?}: bad host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{url:?}: bad path"));
        }
        Ok(HttpTarget {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Asks the data plane `ping` on its control socket and expects `pong`.
pub fn check_dataplane(socket: &Path, timeout: Duration) -> Result<(), String> {
    let what = |e: std::io::Error| format!("data plane socket {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(what)?;
    s.set_read_timeout(Some(timeout)).map_err(what)?;
    s.set_write_timeout(Some(timeout)).map_err(what)?;
    s.write_all(b"ping\n").map_err(what)?;
    let mut line = String::new();
    BufReader::new(s.take(64))
        .read_line(&mut line)
        .map_err(what)?;
    if line.trim_end() == "pong" {
        Ok(())
    } else {
        Err(format!(
            "data plane socket {}: answered {:?}, not pong",
            socket.display(),
            line.trim_end()
        ))
    }
}

/// What the controller asks the data plane to do with TCP to the VIPs (its `drain` request).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainWish {
    /// All VIPs.
    pub vips: Vec<std::net::IpAddr>,
    /// New owner: the previous owner's VTEP.
    pub forward_to: Option<std::net::IpAddr>,
    /// The VIPs are local here: serve what the peer forwards.
    pub accept: bool,
    /// The overlay interface.
    pub interface: Option<String>,
}

/// The data plane's answer to `drain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct DrainAnswer {
    pub error: String,
    pub warning: String,
    pub flows: u64,
    pub tx_drained: u64,
    pub rx_drain_unsent: u64,
    pub rx_drained: u64,
}

/// Sends `wish` to the data plane's control socket and returns its answer.
pub fn request_drain(
    socket: &Path,
    wish: &DrainWish,
    timeout: Duration,
) -> Result<DrainAnswer, String> {
    let what = |e: std::io::Error| format!("data plane socket {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(what)?;
    s.set_read_timeout(Some(timeout)).map_err(what)?;
    s.set_write_timeout(Some(timeout)).map_err(what)?;
    let json = serde_json::to_string(wish).map_err(|e| e.to_string())?;
    s.write_all(format!("drain {json}\n").as_bytes())
        .map_err(what)?;
    let mut line = String::new();
    BufReader::new(s.take(4096))
        .read_line(&mut line)
        .map_err(what)?;
    let answer: DrainAnswer = serde_json::from_str(line.trim())
        .map_err(|e| format!("data plane answered {:?} to drain: {e}", line.trim()))?;
    if answer.error.is_empty() {
        Ok(answer)
    } else {
        Err(format!("data plane refused drain: {}", answer.error))
    }
}

/// Runs `/bin/sh -c command`; healthy when it exits 0 within `timeout` (killed otherwise).
pub fn check_command(command: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("health command: {e}"))?;
    match wait_timeout(&mut child, timeout) {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => Err(format!("health command exited with {status}")),
        Ok(None) => Err(format!("health command timed out after {timeout:?}")),
        Err(e) => Err(format!("health command: {e}")),
    }
}

/// Waits for `child` up to `timeout`; kills and reaps it on timeout (`Ok(None)`).
pub fn wait_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// GET on `target`; healthy on a 2xx or 3xx status within `timeout`.
pub fn check_http(target: &HttpTarget, timeout: Duration) -> Result<(), String> {
    let what = |e: std::io::Error| format!("http check {}:{}: {e}", target.host, target.port);
    let deadline = Instant::now() + timeout;
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(what)?
        .next()
        .ok_or_else(|| format!("http check: {} does not resolve", target.host))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(what)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).map_err(what)?;
    s.set_write_timeout(Some(left)).map_err(what)?;
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: ovl-controller\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    s.write_all(req.as_bytes()).map_err(what)?;
    let mut line = String::new();
    BufReader::new(s.take(512))
        .read_line(&mut line)
        .map_err(what)?;
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("http check: not an HTTP status line: {:?}", line.trim_end()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("http check: status {code}"))
    }
}

/// Turns a stream of pass/fail results into a verdict that changes only after `fall`
/// consecutive failures or `rise` consecutive successes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debounce {
    fall: u32,
    rise: u32,
    healthy: bool,
    streak: u32,
}

impl Debounce {
    /// Starts from `healthy`.
    pub fn new(fall: u32, rise: u32, healthy: bool) -> Debounce {
        Debounce {
            fall: fall.max(1),
            rise: rise.max(1),
            healthy,
            streak: 0,
        }
    }

    /// Current verdict.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Feeds one result; returns the new verdict when it changed.
    pub fn feed(&mut self, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let need = if ok { self.rise } else { self.fall };
        if self.streak >= need {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// The periodic checks of a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodicChecks {
    dataplane: Option<(PathBuf, Duration)>,
    command: Option<(String, Duration)>,
    http: Option<(HttpTarget, Duration)>,
}

impl PeriodicChecks {
    /// From the `[health]` section (already validated).
    pub fn from_config(h: &HealthSection) -> PeriodicChecks {
        let ms = Duration::from_millis;
        PeriodicChecks {
            dataplane: h
                .dataplane_socket
                .clone()
                .map(|p| (p, ms(h.dataplane_timeout_ms))),
            command: h.command.clone().map(|c| (c, ms(h.command_timeout_ms))),
            http: h
                .http_url
                .as_deref()
                .and_then(|u| HttpTarget::parse(u).ok())
                .map(|t| (t, ms(h.http_timeout_ms))),
        }
    }

    /// Whether any check is configured.
    pub fn is_empty(&self) -> bool {
        self.dataplane.is_none() && self.command.is_none() && self.http.is_none()
    }

    /// Runs every check; the first failure's message.
    pub fn run(&self) -> Result<(), String> {
        if let Some((p, t)) = &self.dataplane {
            check_dataplane(p, *t)?;
        }
        if let Some((c, t)) = &self.command {
            check_command(c, *t)?;
        }
        if let Some((u, t)) = &self.http {
            check_http(u, *t)?;
        }
        Ok(())
    }
}

/// A verdict change of the periodic checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// New verdict.
    pub healthy: bool,
    /// The last failure's message when unhealthy.
    pub reason: String,
}

/// Runs `checks` every `interval` on a new thread until `stop` is set, starting from the
/// verdict `initial`, and calls `report` on every change (after `fall`/`rise`).
pub fn spawn_periodic(
    checks: PeriodicChecks,
    interval: Duration,
    fall: u32,
    rise: u32,
    initial: bool,
    stop: Arc<AtomicBool>,
    report: impl Fn(HealthReport) + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("health".into()).spawn(move || {
        let mut d = Debounce::new(fall, rise, initial);
        let mut next = Instant::now() + interval;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                // Short naps keep shutdown prompt.
                thread::sleep((next - now).min(Duration::from_millis(50)));
                continue;
            }
            next += interval;
            if next < Instant::now() {
                next = Instant::now() + interval;
            }
            let result = checks.run();
            if let Some(healthy) = d.feed(result.is_ok()) {
                report(HealthReport {
                    healthy,
                    reason: result.err().unwrap_or_default(),
                });
            }
        }
    })
}

/// The link part of health: `underlay` (if set) must be up, `overlay` must exist.
pub fn check_links(
    nl: &ovl_netlink::Netlink,
    underlays: &[&str],
    overlay: &str,
) -> Result<(), String> {
    // Healthy while any uplink is up: losing one of several is the data plane's business
    // (it switches), not a reason to give up the VIP.
    let mut problems = Vec::new();
    for name in underlays {
        match nl.link_by_name(name) {
            Ok(Some(l)) if l.oper_up => {
                problems.clear();
                break;
            }
            Ok(Some(_)) => problems.push(format!("underlay interface {name} is down")),
            Ok(None) => problems.push(format!("underlay interface {name} does not exist")),
            Err(e) => problems.push(format!("underlay interface {name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    match nl.link_by_name(overlay) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("overlay interface {overlay} does not exist")),
        Err(e) => Err(format!("overlay interface {overlay}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn http_urls() {
        let t = HttpTarget::parse("http://127.0.0.1:3000/health?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3000, "/health?x=1")
        );
        let t = HttpTarget::parse("http://[fd00::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("fd00::1", 8080, "/")
        );
        assert_eq!(HttpTarget::parse("http://example").unwrap().port, 80);
        for bad in [
            "https://x/",
            "http://",
            "http://x:0/",
            "http://x:99999/",
            "ftp://x",
            "http://x/a b",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debounce_needs_streaks() {
        let mut d = Debounce::new(2, 3, true);
        assert_eq!(d.feed(false), None);
        assert_eq!(d.feed(true), None, "streak broken");
        assert_eq!(d.feed(false), None);
        assert_eq!(d.feed(false), Some(false));
        assert_eq!(d.feed(true), None);
        assert_eq!(d.feed(true), None);
        assert_eq!(d.feed(true), Some(true));
        assert!(d.healthy());
    }

    #[test]
    fn command_check() {
        assert!(check_command("exit 0", Duration::from_secs(5)).is_ok());
        let e = check_command("exit 3", Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("exit status: 3"), "{e}");
        let t = Instant::now();
        let e = check_command("sleep 5", Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    fn temp_sock(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ctl-health-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn dataplane_check() {
        let p = temp_sock("dp");
        let listener = UnixListener::bind(&p).unwrap();
        let server = thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut line = String::new();
                BufReader::new(conn.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                assert_eq!(line, "ping\n");
                conn.write_all(if i == 0 { b"pong\n" } else { b"nope\n" })
                    .unwrap();
            }
        });
        assert_eq!(check_dataplane(&p, Duration::from_secs(2)), Ok(()));
        let e = check_dataplane(&p, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        server.join().unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(check_dataplane(&p, Duration::from_millis(50)).is_err());
    }

    #[test]
    fn dataplane_check_times_out_on_silence() {
        let p = temp_sock("silent");
        let listener = UnixListener::bind(&p).unwrap();
        let t = Instant::now();
        let e = check_dataplane(&p, Duration::from_millis(100)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{e}");
        drop(listener);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn http_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut line = String::new();
                BufReader::new(conn.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                assert_eq!(line, "GET /h HTTP/1.0\r\n");
                let status = if i == 0 { "200 OK" } else { "503 Busy" };
                let _ = conn.write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes());
            }
        });
        let t = HttpTarget::parse(&format!("http://127.0.0.1:{port}/h")).unwrap();
        assert_eq!(check_http(&t, Duration::from_secs(2)), Ok(()));
        let e = check_http(&t, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("503"), "{e}");
        server.join().unwrap();
    }

    #[test]
    fn periodic_thread_reports_changes() {
        let flag = std::env::temp_dir().join(format!("ctl-health-{}-flag", std::process::id()));
        let _ = std::fs::remove_file(&flag);
        let checks = PeriodicChecks {
            dataplane: None,
            command: Some((
                format!("test ! -e {}", flag.display()),
                Duration::from_secs(5),
            )),
            http: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let h = spawn_periodic(
            checks,
            Duration::from_millis(10),
            2,
            2,
            true,
            stop.clone(),
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        std::fs::write(&flag, b"").unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(!r.healthy);
        assert!(r.reason.contains("exit status: 1"), "{}", r.reason);
        std::fs::remove_file(&flag).unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(r.healthy);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
