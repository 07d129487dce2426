//! The local control socket: `controller status` and `controller switchover`.
//!
//! A unix stream socket (mode 0600). A client writes one JSON request line and reads one JSON
//! response line. The server side accepts on its own thread and hands each request to the
//! event loop over a channel, so the loop never blocks on a client.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::{
        fd::AsRawFd,
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::{
    fsm::{FsmStatus, State},
    node::Counters,
};

/// Longest request or response line accepted.
const MAX_LINE: u64 = 1 << 20;
/// Connections served at once; more are refused.
const MAX_CLIENTS: usize = 16;

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The status.
    Status,
    /// Move the VIP to the other member.
    Switchover,
}

/// A past transition, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Cause code.
    pub cause: String,
    /// Cause in words.
    pub cause_text: String,
}

/// Everything `controller status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Our node name.
    pub node: String,
    /// Our epoch.
    pub epoch: u64,
    /// Time since start.
    pub uptime_ns: u64,
    /// The state machine.
    pub fsm: FsmStatus,
    /// The peer's underlay address and port.
    pub peer_address: String,
    /// The peer's epoch, once heard.
    pub peer_epoch: Option<u64>,
    /// Configured VIPs.
    pub vips: Vec<String>,
    /// VIPs on the overlay interface right now.
    pub vips_present: Vec<String>,
    /// Counters.
    pub counters: Counters,
    /// The last transitions, oldest first.
    pub transitions: Vec<TransitionRecord>,
    /// Draining, as the data plane last reported it.
    #[serde(default)]
    pub drain: DrainView,
    /// Real-time scheduling of the heartbeat thread.
    #[serde(default)]
    pub realtime: crate::rt::RtOutcome,
}

/// The data plane's side of draining, from its last answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainView {
    /// Connections forwarded to the peer since forwarding last started.
    pub flows: u64,
    /// Segments forwarded to the peer, and drained frames served here, since it started.
    pub tx_drained: u64,
    pub rx_drained: u64,
    /// Segments that could not be forwarded (delivered here instead).
    pub rx_drain_unsent: u64,
    /// The data plane's last complaint, if any.
    pub problem: String,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    /// The status.
    Status(Box<Status>),
    /// A switchover completed.
    Done {
        /// What happened, in words.
        message: String,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A request handed to the event loop, with where to send the answer.
#[derive(Debug)]
pub struct ControlMsg {
    /// The request.
    pub request: Request,
    /// The answer goes here (capacity 1; the loop never blocks on it).
    pub reply: Sender<Response>,
}

/// Control socket failures.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Could not connect or talk.
    #[error("control socket {path}: {error}")]
    Io {
        /// Socket path.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// Another controller answers on the socket.
    #[error("control socket {0}: another controller is running")]
    InUse(String),
    /// The answer was not understood.
    #[error("control socket {path}: bad response: {message}")]
    Protocol {
        /// Socket path.
        path: String,
        /// Why.
        message: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ControlError + '_ {
    move |error| ControlError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// Sends `request` to the controller at `path` and waits up to `timeout` for the answer.
pub fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let err = io_err(path);
    let mut s = UnixStream::connect(path).map_err(&err)?;
    s.set_read_timeout(Some(timeout)).map_err(&err)?;
    s.set_write_timeout(Some(timeout)).map_err(&err)?;
    let mut line = serde_json::to_string(request).map_err(|e| ControlError::Protocol {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(&err)?;
    let mut answer = String::new();
    BufReader::new(s.take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(&err)?;
    serde_json::from_str(answer.trim_end()).map_err(|e| ControlError::Protocol {
        path: path.display().to_string(),
        message: format!("{e}: {:?}", answer.chars().take(200).collect::<String>()),
    })
}

/// Binds the control socket at `path`: creates the parent directory, removes a stale socket
/// file (refusing if a controller still answers on it), and restricts it to its owner.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = io_err(path);
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(&err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(&err)?;
    }
    let listener = UnixListener::bind(path).map_err(&err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(&err)?;
    Ok(listener)
}

/// Serves `listener` on a new thread until `stop` is set: each request goes to `to_loop`
/// (then `wake` is called) and its answer back to the client, which waits at most
/// `answer_timeout`.
pub fn spawn_server(
    listener: UnixListener,
    path: PathBuf,
    to_loop: Sender<ControlMsg>,
    wake: impl Fn() + Send + Sync + 'static,
    answer_timeout: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let wake = Arc::new(wake);
    let clients = Arc::new(AtomicUsize::new(0));
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; the timeout bounds how late a stop is noticed.
                let rc = unsafe { libc::poll(&mut pfd, 1, 200) };
                if rc <= 0 {
                    continue;
                }
                let Ok((conn, _)) = listener.accept() else {
                    continue;
                };
                if clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    let _ = reply(
                        &conn,
                        &Response::Error {
                            message: "too many clients".into(),
                        },
                    );
                    continue;
                }
                clients.fetch_add(1, Ordering::Relaxed);
                let (to_loop, wake, clients) = (to_loop.clone(), wake.clone(), clients.clone());
                let spawned =
                    thread::Builder::new()
                        .name("control-client".into())
                        .spawn(move || {
                            serve(conn, &to_loop, &*wake, answer_timeout);
                            clients.fetch_sub(1, Ordering::Relaxed);
                        });
                if spawned.is_err() {
                    tracing::warn!("control: could not start a client thread");
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn reply(mut conn: &UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(response).map_err(std::io::Error::other)?;
    line.push('\n');
    conn.write_all(line.as_bytes())
}

fn serve(
    conn: UnixStream,
    to_loop: &Sender<ControlMsg>,
    wake: &dyn Fn(),
    answer_timeout: Duration,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let read = match conn.try_clone() {
        Ok(c) => BufReader::new(c.take(4096)).read_line(&mut line),
        Err(e) => Err(e),
    };
    let response = match read {
        Err(e) => Response::Error {
            message: format!("reading the request: {e}"),
        },
        Ok(_) => match serde_json::from_str::<Request>(line.trim_end()) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(request) => {
                let (tx, rx) = bounded(1);
                if to_loop.send(ControlMsg { request, reply: tx }).is_err() {
                    Response::Error {
                        message: "the controller is stopping".into(),
                    }
                } else {
                    wake();
                    rx.recv_timeout(answer_timeout)
                        .unwrap_or_else(|_| Response::Error {
                            message: "no answer from the event loop".into(),
                        })
                }
            }
        },
    };
    let _ = reply(&conn, &response);
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// The status as text for people.
pub fn format_status(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = &s.fsm;
    let _ = writeln!(
        o,
        "node        {} (priority {}, preempt {})",
        s.node,
        f.priority,
        if f.preempt { "on" } else { "off" }
    );
    let _ = writeln!(
        o,
        "state       {} for {}{}, term {}",
        f.state,
        ms(f.in_state_ns),
        if f.healthy { "" } else { " (unhealthy)" },
        f.term
    );
    let mut notes = Vec::new();
    if let Some(left) = f.startup_left_ns {
        notes.push(format!("starting: listening silently, {} left", ms(left)));
    }
    if f.quiet_after_stall {
        notes.push("back from a stall: asserting nothing until the peer is heard".to_string());
    }
    if f.yielded {
        notes.push("yielded: no preemption until active again".to_string());
    }
    if f.release_pending {
        notes.push("release pending".to_string());
    }
    if f.takeover_pending {
        notes.push("takeover pending".to_string());
    }
    if f.hold_down_left_ns > 0 {
        notes.push(format!("hold-down {} left", ms(f.hold_down_left_ns)));
    }
    match f.drain_left_ns {
        Some(0) => notes.push("draining: serving old connections until they close".into()),
        Some(left) => notes.push(format!(
            "draining: serving old connections (VIP on loopback), {} left",
            ms(left)
        )),
        None => {}
    }
    if f.drain_forwarding {
        notes.push("draining: old connections' segments go to the peer".into());
    }
    if s.drain.flows > 0 || f.drain_forwarding {
        notes.push(format!(
            "data plane: {} connections drained to the peer, {} segments",
            s.drain.flows, s.drain.tx_drained
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(o, "            {}", notes.join(", "));
    }
    match &f.peer {
        Some(p) => {
            let _ = writeln!(
                o,
                "peer        {} {} (priority {}), {}, last heard {} ago{}",
                s.peer_address,
                p.state,
                p.priority,
                if p.alive { "alive" } else { "DEAD" },
                ms(p.last_heard_ns_ago),
                if p.flags.vip_held {
                    ", holds the VIP"
                } else {
                    ""
                },
            );
        }
        None => {
            let _ = writeln!(o, "peer        {} never heard", s.peer_address);
        }
    }
    let _ = writeln!(
        o,
        "vip         {} ({} on the interface: {})",
        s.vips.join(", "),
        if f.vip_held { "held" } else { "not held" },
        if s.vips_present.is_empty() {
            "none".to_string()
        } else {
            s.vips_present.join(", ")
        }
    );
    let c = &s.counters;
    let _ = writeln!(
        o,
        "heartbeats  sent {} (errors {}), received {}, malformed {}, forged {}, replayed {}, reordered {}, looped {}, peer restarts {}",
        c.hb_sent,
        c.hb_send_errors,
        c.hb_received,
        c.malformed,
        c.forged,
        c.replayed,
        c.reordered,
        c.looped,
        c.peer_restarts
    );
    let _ = writeln!(
        o,
        "vip changes added {}, removed {}, errors {}",
        c.vip_added, c.vip_removed, c.vip_errors
    );
    let _ = writeln!(
        o,
        "announce    bursts {}, GARP requests {}, GARP replies {}, NA {}, errors {}",
        c.announce_bursts, c.garp_requests_sent, c.garp_replies_sent, c.na_sent, c.announce_errors
    );
    let _ = writeln!(o, "heartbeat   thread scheduling: {}", s.realtime);
    let _ = writeln!(
        o,
        "other       transitions {}, health failures {}, hooks run {} (failed {}), switchovers ok {}, failed {}, late wake-ups {}, stalls {} (longest {} ms)",
        c.transitions,
        c.health_failures,
        c.hooks_run,
        c.hooks_failed,
        c.switchovers_ok,
        c.switchovers_failed,
        c.late_wakeups,
        c.stalls,
        c.longest_stall_ms
    );
    if !s.transitions.is_empty() {
        let _ = writeln!(o, "transitions (oldest first, wall clock ns):");
        for t in &s.transitions {
            let _ = writeln!(
                o,
                "  {} {} -> {}: {} ({})",
                t.timestamp_ns, t.from, t.to, t.cause_text, t.cause
            );
        }
    }
    o
}

/// The status in Prometheus' text exposition format (for node_exporter's textfile collector,
/// or any scraper that runs `controller status --prometheus`). Every counter is exported, so a
/// new counter needs no change here.
pub fn format_prometheus(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let node = s.node.replace(['\\', '"', '\n'], "_");
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP ovl_controller_{name} {help}");
        let _ = writeln!(o, "# TYPE ovl_controller_{name} {kind}");
        let _ = writeln!(o, "ovl_controller_{name}{{node=\"{node}\"}} {v}");
    };
    let f = &s.fsm;
    metric(
        "state",
        "gauge",
        "State: 1 init, 2 backup, 3 active, 4 fault.",
        u64::from(f.state.to_wire()),
    );
    metric(
        "term",
        "gauge",
        "Ownership term (wall-clock microseconds, or one more than the last term heard).",
        f.term,
    );
    metric(
        "vip_held",
        "gauge",
        "1 while the VIP is on the overlay interface.",
        u64::from(f.vip_held),
    );
    metric(
        "peer_alive",
        "gauge",
        "1 while the peer is heard within the detection time.",
        u64::from(f.peer.as_ref().is_some_and(|p| p.alive)),
    );
    metric(
        "quiet_after_stall",
        "gauge",
        "1 while back from a stall and asserting nothing until the peer is heard.",
        u64::from(f.quiet_after_stall),
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Time since start.",
        s.uptime_ns / 1_000_000_000,
    );
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&s.counters) {
        for (k, v) in map {
            let Some(v) = v.as_u64() else { continue };
            if k.ends_with("_ms") {
                metric(&k, "gauge", &format!("{k} (see controller status)."), v);
            } else {
                metric(
                    &format!("{k}_total"),
                    "counter",
                    &format!("{k} (see controller status)."),
                    v,
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_exposition_carries_every_counter_and_the_stall_figures() {
        let fsm = crate::fsm::Fsm::new(crate::fsm::FsmConfig {
            priority: 1,
            preempt: false,
            interval: crate::fsm::MS,
            multiplier: 3,
            hold_down: 0,
            switchover_timeout: 0,
            release_linger: 0,
            tie_break: 0,
            drain: 0,
            drain_keep: false,
            peer_tie_break: 0,
            startup: 0,
            wall_origin_us: 0,
        });
        let counters = crate::node::Counters {
            stalls: 2,
            longest_stall_ms: 3100,
            hb_sent: 7,
            ..Default::default()
        };
        let s = Status {
            node: "pri\"x".into(),
            epoch: 1,
            uptime_ns: 5_000_000_000,
            fsm: fsm.status(0),
            peer_address: "10.0.0.2:3785".into(),
            peer_epoch: None,
            vips: vec![],
            vips_present: vec![],
            counters,
            transitions: vec![],
            drain: DrainView::default(),
            realtime: crate::rt::RtOutcome::off(),
        };
        let text = format_prometheus(&s);
        for want in [
            "ovl_controller_stalls_total{node=\"pri_x\"} 2",
            "ovl_controller_longest_stall_ms{node=\"pri_x\"} 3100",
            "ovl_controller_hb_sent_total{node=\"pri_x\"} 7",
            "ovl_controller_state{node=\"pri_x\"} 1",
            "# TYPE ovl_controller_late_wakeups_total counter",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let counters = serde_json::to_value(crate::node::Counters::default()).unwrap();
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 6 + counters.as_object().unwrap().len());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(
                name.starts_with("ovl_controller_") && name.ends_with('}'),
                "{line}"
            );
            value.parse::<u64>().unwrap();
        }
    }

    #[test]
    fn request_and_response_roundtrip_over_a_socket() {
        let path = std::env::temp_dir().join(format!("ctl-control-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second bind while served is refused.
        assert!(matches!(bind(&path), Err(ControlError::InUse(_))));
        let (tx, rx) = crossbeam_channel::unbounded::<ControlMsg>();
        let stop = Arc::new(AtomicBool::new(false));
        let server = spawn_server(
            listener,
            path.clone(),
            tx,
            || {},
            Duration::from_secs(2),
            stop.clone(),
        )
        .unwrap();
        let lp = thread::spawn(move || {
            for msg in rx.iter().take(2) {
                let answer = match msg.request {
                    Request::Status => Response::Error {
                        message: "no status here".into(),
                    },
                    Request::Switchover => Response::Done {
                        message: "moved".into(),
                    },
                };
                msg.reply.send(answer).unwrap();
            }
        });
        let r = request(&path, &Request::Switchover, Duration::from_secs(2)).unwrap();
        assert_eq!(
            r,
            Response::Done {
                message: "moved".into()
            }
        );
        let r = request(&path, &Request::Status, Duration::from_secs(2)).unwrap();
        assert_eq!(
            r,
            Response::Error {
                message: "no status here".into()
            }
        );
        lp.join().unwrap();
        // Garbage gets an error answer, not a hang.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":\"reboot\"}\n").unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        assert!(answer.contains("bad request"), "{answer}");
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert!(!path.exists(), "socket removed on stop");
        // A stale socket file (nobody listening) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(bind(&path).is_ok());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Switchover).unwrap(),
            r#"{"cmd":"switchover"}"#
        );
    }
}
