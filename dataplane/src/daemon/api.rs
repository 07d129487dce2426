//! The control socket (`ping`, `stats`, `drain`, ...) and the Prometheus endpoint: the
//! daemon's outside, talking to the control thread through requests.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, TcpListener},
    os::unix::net::UnixListener,
    path::Path,
    sync::Arc,
    thread,
    time::Duration,
};

use anyhow::{Context, Result};
use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::stats::Snapshot;

pub(super) enum Request {
    Snapshot(Sender<Snapshot>),
    Drain(DrainRequest, Sender<String>),
}

/// `drain <json>` on the control socket: what the controller wants the programs to do with
/// TCP to its VIPs during a planned switchover. Level-triggered: each request states the
/// whole wish, and the controller repeats it, so a restarted data plane catches up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// The VIPs (all of them, also when neither forwarding nor accepting: they are then
    /// removed from the map).
    pub vips: Vec<IpAddr>,
    /// New owner: the previous owner's VTEP, to which segments of connections that have no
    /// socket here go.
    #[serde(default)]
    pub forward_to: Option<IpAddr>,
    /// Old owner (and owner): serve drained frames for the VIPs.
    #[serde(default)]
    pub accept: bool,
    /// The overlay interface the VIPs are on (its MAC becomes a drained frame's destination);
    /// may be omitted with a single VNI.
    #[serde(default)]
    pub interface: Option<String>,
}

/// The answer to `drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DrainReply {
    /// Empty when applied; else why not (nothing was changed).
    pub error: String,
    /// Applied, but forwarding cannot work: why (segments are then delivered here).
    pub warning: String,
    /// Connections forwarded since forwarding last started.
    pub flows: u64,
    /// Segments forwarded, delivered though meant to be forwarded, and drained frames
    /// received, since the data plane started.
    pub tx_drained: u64,
    pub rx_drain_unsent: u64,
    pub rx_drained: u64,
}

pub(super) fn ask_snapshot(reqs: &Sender<Request>) -> Option<Snapshot> {
    let (tx, rx) = bounded(1);
    reqs.send_timeout(Request::Snapshot(tx), Duration::from_secs(1))
        .ok()?;
    rx.recv_timeout(Duration::from_secs(2)).ok()
}

/// Whether the data plane can forward: `Ok`, or why not. Shared by the control loop, which
/// judges it, and the control socket, which answers `ping` with it.
pub(super) type Health = Arc<std::sync::RwLock<Result<(), String>>>;

/// The control socket: one request line per connection (`ping`, `stats`, `stats json`,
/// `metrics`, `drain <json>`), one answer, then close.
pub(super) fn spawn_control_socket(
    listener: UnixListener,
    reqs: Sender<Request>,
    health: Health,
) -> Result<()> {
    thread::Builder::new()
        .name("ovl-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let mut r = BufReader::new(&conn);
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let line = line.trim();
                if let Some(json) = line.strip_prefix("drain ") {
                    let answer = match serde_json::from_str::<DrainRequest>(json) {
                        Ok(req) => {
                            let (tx, rx) = bounded(1);
                            let sent =
                                reqs.send_timeout(Request::Drain(req, tx), Duration::from_secs(1));
                            match sent.ok().and_then(|()| rx.recv_timeout(Duration::from_secs(2)).ok()) {
                                Some(a) => a,
                                None => serde_json::to_string(&DrainReply {
                                    error: "control loop busy".into(),
                                    ..DrainReply::default()
                                })
                                .unwrap_or_default(),
                            }
                        }
                        Err(e) => serde_json::to_string(&DrainReply {
                            error: format!("bad drain request: {e}"),
                            ..DrainReply::default()
                        })
                        .unwrap_or_default(),
                    };
                    let _ = conn.write_all(format!("{answer}\n").as_bytes());
                    continue;
                }
                let answer = match line {
                    // `pong` only while frames can be carried: the controller takes a member
                    // that answers anything else as unhealthy.
                    "ping" => match health.read().map(|h| h.clone()) {
                        Ok(Ok(())) => "pong\n".to_string(),
                        Ok(Err(why)) => format!("unhealthy: {why}\n"),
                        Err(_) => "unhealthy: health state unreadable\n".to_string(),
                    },
                    "stats" => ask_snapshot(&reqs)
                        .map_or_else(|| "error: control loop busy\n".into(), |s| s.render_text()),
                    "stats json" => ask_snapshot(&reqs).map_or_else(
                        || "{\"error\":\"control loop busy\"}\n".into(),
                        |s| serde_json::to_string(&s).unwrap_or_default() + "\n",
                    ),
                    "metrics" => ask_snapshot(&reqs)
                        .map_or_else(|| "# control loop busy\n".into(), |s| s.render_prometheus()),
                    other => format!(
                        "error: unknown request {other:?} (try ping, stats, stats json, metrics, drain JSON)\n"
                    ),
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        })
        .context("spawn control socket thread")?;
    Ok(())
}

/// Minimal HTTP/1.0 responder for Prometheus scrapes (loopback only, enforced by config).
pub(super) fn spawn_prometheus(listener: TcpListener, reqs: Sender<Request>) -> Result<()> {
    thread::Builder::new()
        .name("ovl-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut r = BufReader::new(&conn);
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                // Drain headers up to the blank line.
                let mut l = String::new();
                while r.read_line(&mut l).map(|n| n > 2).unwrap_or(false) {
                    l.clear();
                }
                let (status, body) = if first.starts_with("GET /metrics") || first.starts_with("GET / ") {
                    match ask_snapshot(&reqs) {
                        Some(s) => ("200 OK", s.render_prometheus()),
                        None => ("503 Service Unavailable", "control loop busy\n".into()),
                    }
                } else {
                    ("404 Not Found", "try /metrics\n".into())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .context("spawn metrics thread")?;
    Ok(())
}

/// Client side of the control socket: sends one request and returns the answer.
pub fn request(socket: &Path, what: &str) -> Result<String> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connect to {} (is `dataplane run` running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
