//! `KeepAlive`: N persistent HTTP/1.1 connections to the target, each sending one GET per
//! interval and reading the answer before the next, and what they saw: who answered, which
//! connections were lost and how, how often they had to reconnect.
//!
//! Each connection runs in its own thread on its own fixed schedule (tick `k` of connection `i`
//! is due at `start + i * interval / N + k * interval`: the connections are spread over the
//! interval), skipping the ticks a slow request covered, like [`HttpPing`](super::HttpPing).
//!
//! A connection is lost when, before a complete answer, the socket reports a reset
//! (`ECONNRESET`, `EPIPE`: kind `reset`), the server's FIN (`eof`), or the request timeout
//! passes (`timeout`; the late answer would desynchronise the next request). Before sending on
//! a connection that already answered, the client checks without waiting whether the server
//! closed or reset it while it was idle, so such a loss is counted but does not fail the
//! request. Either way the connection is dropped and the next request (the same one, for an
//! idle loss) opens a new one: a reconnect. A server that announces `Connection: close` in its
//! answer ends the connection too (`server_close`), without a failure.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::http::{self, ResponseParse};
use super::ping::{
    MAX_RESPONSE, Outcome, PingError, Sample, body_outcome, connect_failure, connect_from,
    io_failure, next_tick, set_timeouts, sleep_until, tick_time,
};
use super::summary::{Latencies, LatencyStats, counts, fmt_ms, ms};
use super::url::HttpUrl;

/// Worker threads do little; a small stack keeps 1024 of them cheap.
const WORKER_STACK: usize = 256 * 1024;
/// How often the collecting thread passes a stop request on to the workers.
const STOP_CHECK: Duration = Duration::from_millis(20);
/// The loss kinds every summary lists, even at zero.
const RESET_KINDS: [&str; 3] = ["eof", "reset", "timeout"];
/// Loss kind of a connection the server ended with `Connection: close` after an answer.
const SERVER_CLOSE: &str = "server_close";

/// Most connections one run opens at once.
pub const MAX_KEEP_ALIVE_CONNECTIONS: usize = 1024;

/// The keep-alive client's configuration; [`run_until`](Self::run_until) runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// Where to connect.
    pub target: SocketAddr,
    /// Request target (path and query).
    pub path: String,
    /// Persistent connections (1..=1024).
    pub connections: usize,
    /// Time between the requests of one connection.
    pub interval: Duration,
    /// Longest wait for a TCP handshake.
    pub connect_timeout: Duration,
    /// Longest wait for sending a request and reading its whole answer.
    pub request_timeout: Duration,
    /// Source address to bind before connecting (the kernel picks the port).
    pub bind: Option<IpAddr>,
}

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// On a connection opened for it (the first request, or after a loss).
    New,
    /// On a connection that had already answered.
    Reused,
    /// Nowhere: opening the connection failed (the sample holds the connect failure).
    ConnectFailed,
}

/// What the keep-alive connections report, in order per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveEvent {
    /// Connection `conn` was (re)opened.
    Opened {
        /// Index of the connection, `0..connections`.
        conn: usize,
        /// Since the start of the run.
        t: Duration,
        /// Not its first connection.
        reconnect: bool,
    },
    /// Connection `conn` was lost or closed.
    Lost {
        /// Index of the connection.
        conn: usize,
        /// Since the start of the run.
        t: Duration,
        /// `reset`, `eof`, `timeout`, `server_close`, or another failure label.
        kind: String,
    },
    /// A request of connection `conn` and its outcome.
    Request {
        /// Index of the connection.
        conn: usize,
        /// Where it was sent.
        via: Via,
        /// Its outcome (`seq` is the tick of this connection's schedule).
        sample: Sample,
    },
}

/// What a run did besides its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepAliveStats {
    /// Ticks, over all connections, that passed while a request was still running.
    pub skipped_ticks: u64,
    /// Length of the run.
    pub elapsed: Duration,
}

impl KeepAlive {
    /// Default time between the requests of one connection.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

    /// `connections` connections to the URL's address and path, with [`HttpPing`]'s default
    /// timeouts.
    ///
    /// [`HttpPing`]: super::HttpPing
    pub fn from_url(url: &HttpUrl, connections: usize) -> Self {
        Self {
            target: url.addr,
            path: url.path.clone(),
            connections,
            interval: Self::DEFAULT_INTERVAL,
            connect_timeout: super::HttpPing::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: super::HttpPing::DEFAULT_REQUEST_TIMEOUT,
            bind: None,
        }
    }

    /// Checks the configuration without running it.
    pub fn validate(&self) -> Result<(), PingError> {
        if !(1..=MAX_KEEP_ALIVE_CONNECTIONS).contains(&self.connections) {
            return Err(PingError::Connections(self.connections));
        }
        super::HttpPing {
            interval: self.interval,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            bind: self.bind,
            ..super::HttpPing::new(self.target)
        }
        .validate()
    }

    /// Runs until `stop` becomes true (seen within 20 ms; requests in flight finish first,
    /// bounded by their timeouts), handing every event to `sink` in the calling thread.
    pub fn run_until(
        &self,
        stop: &AtomicBool,
        mut sink: impl FnMut(&KeepAliveEvent),
    ) -> Result<KeepAliveStats, PingError> {
        self.validate()?;
        let start = Instant::now();
        let halt = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<KeepAliveEvent>();
        let mut stats = KeepAliveStats::default();
        let mut spawn_error = None;
        std::thread::scope(|scope| {
            let mut workers = Vec::with_capacity(self.connections);
            for conn in 0..self.connections {
                let (tx, halt) = (tx.clone(), &halt);
                let spawned = std::thread::Builder::new()
                    .name(format!("keep-alive-{conn}"))
                    .stack_size(WORKER_STACK)
                    .spawn_scoped(scope, move || self.worker(conn, start, halt, &tx));
                match spawned {
                    Ok(w) => workers.push(w),
                    Err(e) => {
                        spawn_error = Some(e.to_string());
                        halt.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
            drop(tx);
            loop {
                if stop.load(Ordering::Relaxed) {
                    halt.store(true, Ordering::SeqCst);
                }
                match rx.recv_timeout(STOP_CHECK) {
                    Ok(ev) => sink(&ev),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            for w in workers {
                stats.skipped_ticks += w.join().unwrap_or(0);
            }
        });
        stats.elapsed = start.elapsed();
        match spawn_error {
            Some(e) => Err(PingError::Spawn(e)),
            None => Ok(stats),
        }
    }

    fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: http-ping\r\nConnection: keep-alive\r\n\r\n",
            self.path, self.target
        )
        .into_bytes()
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let stream = match self.bind {
            None => TcpStream::connect_timeout(&self.target, self.connect_timeout),
            Some(src) => connect_from(src, self.target, self.connect_timeout),
        }?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// One connection's loop; returns the ticks it skipped. Ends when `halt` is raised or the
    /// collector is gone.
    fn worker(
        &self,
        conn: usize,
        start: Instant,
        halt: &AtomicBool,
        tx: &mpsc::Sender<KeepAliveEvent>,
    ) -> u64 {
        let request = self.request();
        let n = self.connections.max(1) as u128;
        let offset = Duration::from_nanos(
            u64::try_from(self.interval.as_nanos() * conn as u128 / n).unwrap_or(0),
        );
        let mut stream: Option<TcpStream> = None;
        let mut ever_opened = false;
        let mut skipped = 0;
        let mut tick: u64 = 0;
        let send = |ev| tx.send(ev).is_ok();
        while let Some(deadline) = tick_time(tick, self.interval)
            .and_then(|d| d.checked_add(offset))
            .and_then(|d| start.checked_add(d))
        {
            if !sleep_until(deadline, halt) {
                break;
            }
            if let Some(kind) = stream.as_ref().and_then(idle_loss) {
                stream = None;
                if !send(KeepAliveEvent::Lost {
                    conn,
                    t: start.elapsed(),
                    kind: kind.to_owned(),
                }) {
                    break;
                }
            }
            let at = SystemTime::now();
            let t = start.elapsed();
            let begin = Instant::now();
            let (via, s) = match stream.take() {
                Some(s) => (Via::Reused, s),
                None => match self.connect() {
                    Ok(s) => {
                        let opened = KeepAliveEvent::Opened {
                            conn,
                            t: start.elapsed(),
                            reconnect: ever_opened,
                        };
                        ever_opened = true;
                        if !send(opened) {
                            break;
                        }
                        (Via::New, s)
                    }
                    Err(e) => {
                        let sample = Sample {
                            seq: tick,
                            at,
                            t,
                            latency: begin.elapsed(),
                            outcome: connect_failure(&e),
                        };
                        let via = Via::ConnectFailed;
                        if !send(KeepAliveEvent::Request { conn, via, sample }) {
                            break;
                        }
                        (tick, skipped) = self.advance(tick, skipped, start, offset);
                        continue;
                    }
                },
            };
            let mut s = s;
            let (outcome, loss) = exchange(&mut s, &request, begin + self.request_timeout);
            let sample = Sample {
                seq: tick,
                at,
                t,
                latency: begin.elapsed(),
                outcome,
            };
            if !send(KeepAliveEvent::Request { conn, via, sample }) {
                break;
            }
            match loss {
                None => stream = Some(s),
                Some(kind) => {
                    drop(s);
                    let lost = KeepAliveEvent::Lost {
                        conn,
                        t: start.elapsed(),
                        kind,
                    };
                    if !send(lost) {
                        break;
                    }
                }
            }
            (tick, skipped) = self.advance(tick, skipped, start, offset);
        }
        skipped
    }

    /// The next tick after `tick` and the skipped count with the ticks missed added.
    fn advance(&self, tick: u64, skipped: u64, start: Instant, offset: Duration) -> (u64, u64) {
        let (next, missed) = next_tick(tick, start.elapsed().saturating_sub(offset), self.interval);
        (next, skipped + missed)
    }
}

/// A connection the server closed or reset while it was idle: its loss kind, found without
/// waiting (a peek at the receive queue). Unsolicited bytes make the connection unusable too.
fn idle_loss(stream: &TcpStream) -> Option<&'static str> {
    let mut byte = 0u8;
    // SAFETY: recv(2) writes at most 1 byte into the live local `byte`; the descriptor is
    // open for the call (borrowed from `stream`).
    let r = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        0 => Some("eof"),
        n if n > 0 => Some("unexpected_data"),
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                _ => Some(loss_kind(&e)),
            }
        }
    }
}

/// The loss kind of a socket error on an established connection.
fn loss_kind(e: &io::Error) -> &'static str {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => "reset",
        K::TimedOut | K::WouldBlock => "timeout",
        K::UnexpectedEof => "eof",
        _ => match io_failure(e) {
            Outcome::Error(label) if label == "host_unreachable" => "host_unreachable",
            Outcome::Error(label) if label == "net_unreachable" => "net_unreachable",
            _ => "io_error",
        },
    }
}

/// The request's outcome for a connection lost with `kind`.
fn lost_outcome(kind: &str) -> Outcome {
    match kind {
        "timeout" => Outcome::Timeout,
        k => Outcome::Error(k.to_owned()),
    }
}

/// Sends the request on a kept-alive connection and reads exactly one answer. Returns the
/// outcome and, when the connection cannot be used again, why (its loss kind).
fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    deadline: Instant,
) -> (Outcome, Option<String>) {
    let lost = |kind: &str| (lost_outcome(kind), Some(kind.to_owned()));
    if let Err(e) = set_timeouts(stream, deadline).and_then(|()| stream.write_all(request)) {
        return lost(loss_kind(&e));
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    let mut eof = false;
    loop {
        match http::parse_response(&buf, eof) {
            ResponseParse::Incomplete => {}
            ResponseParse::Invalid("closed_early") => return lost("eof"),
            ResponseParse::Invalid(label) => return lost(label),
            ResponseParse::Complete {
                status,
                body,
                close,
            } => {
                let outcome = if status == 200 {
                    body_outcome(body)
                } else {
                    Outcome::Error(format!("status_{status}"))
                };
                let used = http::head_len(&buf).unwrap_or(buf.len()) + body.len();
                let loss = if close || eof {
                    Some(SERVER_CLOSE.to_owned())
                } else if used != buf.len() {
                    // More than one answer to one request: the framing cannot be trusted.
                    Some("unexpected_data".to_owned())
                } else {
                    None
                };
                return (outcome, loss);
            }
        }
        if buf.len() > MAX_RESPONSE {
            return lost("response_too_large");
        }
        if let Err(e) = set_timeouts(stream, deadline) {
            return lost(loss_kind(&e));
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return lost(loss_kind(&e)),
        }
    }
}

/// One keep-alive connection's part of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSummary {
    /// Requests made.
    pub requests: u64,
    /// Requests answered with an ID.
    pub ok: u64,
    /// Requests that failed (connect failures included).
    pub failed: u64,
    /// TCP connections opened (1 + its reconnects).
    pub opened: u64,
    /// Connections lost (reset, eof, timeout or another error; not `server_close`).
    pub resets: u64,
    /// Times the answering ID differed from this connection's previous answer.
    pub id_changes: u64,
    /// The answering IDs in order, one entry per change (`["PRI", "SEC"]`: one change).
    pub ids: Vec<String>,
}

/// What the keep-alive connections saw; the `keep_alive` object of the JSON summary
/// (durations as float milliseconds, `_ms` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeepAliveSummary {
    /// Persistent connections run.
    pub connections: u64,
    /// Time between the requests of one connection.
    #[serde(rename = "interval_ms", with = "ms")]
    pub interval: Duration,
    /// Requests made, over all connections.
    pub requests: u64,
    /// Requests answered with an ID.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Failed requests by kind (`reset`, `eof`, `timeout` on a connection; `refused`,
    /// `timeout`, ... when connecting; `status_503`, `bad_body`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Requests sent on a connection that had already answered (the keep-alive at work).
    pub reused: u64,
    /// Ticks skipped because the connection's previous request was still running.
    pub skipped_ticks: u64,
    /// TCP connections opened, first ones and reconnects.
    pub connections_opened: u64,
    /// Failed attempts to open a connection (each also a failed request).
    pub connect_failures: u64,
    /// Connections lost: the sum of `resets`.
    pub connections_reset: u64,
    /// Connections lost by kind: always `reset` (ECONNRESET, EPIPE), `eof` (the server's FIN
    /// before an answer, or while idle) and `timeout`, plus any other error label seen.
    pub resets: BTreeMap<String, u64>,
    /// Connections the server ended with `Connection: close` after an answer (not resets).
    pub server_closes: u64,
    /// Connections opened to replace a lost or closed one.
    pub reconnects: u64,
    /// Answers per ID.
    pub per_id: BTreeMap<String, u64>,
    /// Changes of the answering ID, summed over the connections.
    pub id_changes: u64,
    /// Of those, changes between two answers on the same TCP connection (without a
    /// reconnect in between); a VIP switchover should cause none.
    pub id_changes_same_connection: u64,
    /// Per connection, in index order.
    pub per_connection: Vec<ConnectionSummary>,
    /// Latency of the answers (connect included for the first request on a connection);
    /// `None` without answers.
    pub latency: Option<LatencyStats>,
}

/// Builds a [`KeepAliveSummary`] from events as they come.
#[derive(Debug)]
pub struct KeepAliveSummarizer {
    interval: Duration,
    requests: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    reused: u64,
    skipped_ticks: u64,
    connections_opened: u64,
    connect_failures: u64,
    resets: BTreeMap<String, u64>,
    server_closes: u64,
    reconnects: u64,
    per_id: BTreeMap<String, u64>,
    id_changes_same_connection: u64,
    per_connection: Vec<ConnectionSummary>,
    /// Per connection: its last answer's ID, and whether its connection is the one that
    /// answered it.
    last: Vec<Option<(String, bool)>>,
    latencies: Latencies,
}

impl KeepAliveSummarizer {
    /// An empty summary of `connections` connections every `interval`.
    pub fn new(connections: usize, interval: Duration) -> Self {
        Self {
            interval,
            requests: 0,
            ok: 0,
            failures: BTreeMap::new(),
            reused: 0,
            skipped_ticks: 0,
            connections_opened: 0,
            connect_failures: 0,
            resets: RESET_KINDS.iter().map(|k| ((*k).to_owned(), 0)).collect(),
            server_closes: 0,
            reconnects: 0,
            per_id: BTreeMap::new(),
            id_changes_same_connection: 0,
            per_connection: vec![ConnectionSummary::default(); connections],
            last: vec![None; connections],
            latencies: Latencies::new(),
        }
    }

    /// The per-connection slot of `conn`, grown if an event names a new one.
    fn slot(&mut self, conn: usize) -> usize {
        if conn >= self.per_connection.len() {
            self.per_connection
                .resize(conn + 1, ConnectionSummary::default());
            self.last.resize(conn + 1, None);
        }
        conn
    }

    /// Adds an event (in the order each connection reported them).
    pub fn push(&mut self, ev: &KeepAliveEvent) {
        match ev {
            KeepAliveEvent::Opened {
                conn, reconnect, ..
            } => {
                let c = self.slot(*conn);
                self.connections_opened += 1;
                self.per_connection[c].opened += 1;
                if *reconnect {
                    self.reconnects += 1;
                }
                if let Some((_, same)) = &mut self.last[c] {
                    *same = false;
                }
            }
            KeepAliveEvent::Lost { conn, kind, .. } => {
                let c = self.slot(*conn);
                if kind == SERVER_CLOSE {
                    self.server_closes += 1;
                } else {
                    *self.resets.entry(kind.clone()).or_default() += 1;
                    self.per_connection[c].resets += 1;
                }
            }
            KeepAliveEvent::Request { conn, via, sample } => {
                let c = self.slot(*conn);
                self.requests += 1;
                self.per_connection[c].requests += 1;
                match via {
                    Via::Reused => self.reused += 1,
                    Via::ConnectFailed => self.connect_failures += 1,
                    Via::New => {}
                }
                let Some(id) = sample.outcome.id() else {
                    let kind = sample.outcome.failure_kind().unwrap_or("unknown");
                    *self.failures.entry(kind.to_owned()).or_default() += 1;
                    self.per_connection[c].failed += 1;
                    return;
                };
                self.ok += 1;
                *self.per_id.entry(id.to_owned()).or_default() += 1;
                self.latencies.record(sample.latency);
                let pc = &mut self.per_connection[c];
                pc.ok += 1;
                match &self.last[c] {
                    Some((prev, _)) if prev == id => {}
                    Some((_, same)) => {
                        pc.id_changes += 1;
                        pc.ids.push(id.to_owned());
                        if *same {
                            self.id_changes_same_connection += 1;
                        }
                    }
                    None => pc.ids.push(id.to_owned()),
                }
                self.last[c] = Some((id.to_owned(), true));
            }
        }
    }

    /// Adds ticks skipped by the connections (from [`KeepAliveStats`]).
    pub fn add_skipped_ticks(&mut self, n: u64) {
        self.skipped_ticks += n;
    }

    /// The summary of everything pushed so far.
    pub fn finish(&self) -> KeepAliveSummary {
        KeepAliveSummary {
            connections: self.per_connection.len() as u64,
            interval: self.interval,
            requests: self.requests,
            ok: self.ok,
            failed: self.requests - self.ok,
            failures: self.failures.clone(),
            reused: self.reused,
            skipped_ticks: self.skipped_ticks,
            connections_opened: self.connections_opened,
            connect_failures: self.connect_failures,
            connections_reset: self.resets.values().sum(),
            resets: self.resets.clone(),
            server_closes: self.server_closes,
            reconnects: self.reconnects,
            per_id: self.per_id.clone(),
            id_changes: self.per_connection.iter().map(|c| c.id_changes).sum(),
            id_changes_same_connection: self.id_changes_same_connection,
            per_connection: self.per_connection.clone(),
            latency: self.latencies.stats(),
        }
    }
}

impl fmt::Display for KeepAliveSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "keep-alive: {} connections, a request each every {}",
            self.connections,
            fmt_ms(self.interval)
        )?;
        write!(
            f,
            "keep-alive requests {}, ok {}, failed {}",
            self.requests, self.ok, self.failed
        )?;
        if !self.failures.is_empty() {
            write!(f, " ({})", counts(&self.failures))?;
        }
        writeln!(
            f,
            ", reused {}, skipped ticks {}",
            self.reused, self.skipped_ticks
        )?;
        writeln!(
            f,
            "keep-alive connections: opened {}, reset {} ({}), server closes {}, reconnects {}, \
             connect failures {}",
            self.connections_opened,
            self.connections_reset,
            counts(&self.resets),
            self.server_closes,
            self.reconnects,
            self.connect_failures
        )?;
        if !self.per_id.is_empty() {
            writeln!(f, "keep-alive answers: {}", counts(&self.per_id))?;
        }
        let per_conn: Vec<String> = self
            .per_connection
            .iter()
            .map(|c| c.id_changes.to_string())
            .collect();
        writeln!(
            f,
            "keep-alive ID changes: {} ({} on the same connection); per connection: {}",
            self.id_changes,
            self.id_changes_same_connection,
            per_conn.join(" ")
        )?;
        match &self.latency {
            Some(l) => write!(f, "keep-alive latency: {l}"),
            None => write!(f, "keep-alive latency: n/a (no answers)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn req(conn: usize, via: Via, outcome: Outcome) -> KeepAliveEvent {
        KeepAliveEvent::Request {
            conn,
            via,
            sample: Sample {
                seq: 0,
                at: UNIX_EPOCH,
                t: Duration::ZERO,
                latency: Duration::from_micros(300),
                outcome,
            },
        }
    }

    fn opened(conn: usize, reconnect: bool) -> KeepAliveEvent {
        KeepAliveEvent::Opened {
            conn,
            t: Duration::ZERO,
            reconnect,
        }
    }

    fn lost(conn: usize, kind: &str) -> KeepAliveEvent {
        KeepAliveEvent::Lost {
            conn,
            t: Duration::ZERO,
            kind: kind.to_owned(),
        }
    }

    fn ok(id: &str) -> Outcome {
        Outcome::Ok(id.to_owned())
    }

    #[test]
    fn summary_counts_resets_reconnects_and_id_changes() {
        let mut s = KeepAliveSummarizer::new(2, Duration::from_millis(10));
        for ev in [
            opened(0, false),
            req(0, Via::New, ok("PRI")),
            opened(1, false),
            req(1, Via::New, ok("PRI")),
            req(0, Via::Reused, ok("PRI")),
            // Connection 0 reset in flight, then refused once, then SEC.
            req(0, Via::Reused, Outcome::Error("reset".into())),
            lost(0, "reset"),
            req(0, Via::ConnectFailed, Outcome::Refused),
            opened(0, true),
            req(0, Via::New, ok("SEC")),
            // Connection 1 found closed while idle: no failed request.
            lost(1, "eof"),
            opened(1, true),
            req(1, Via::New, ok("SEC")),
            // A change on the same connection, and a server close.
            req(1, Via::Reused, ok("PRI")),
            lost(1, SERVER_CLOSE),
        ] {
            s.push(&ev);
        }
        s.add_skipped_ticks(2);
        let k = s.finish();
        assert_eq!((k.requests, k.ok, k.failed), (8, 6, 2));
        assert_eq!(
            k.failures,
            BTreeMap::from([("refused".into(), 1), ("reset".into(), 1)])
        );
        assert_eq!(k.reused, 3);
        assert_eq!(k.connect_failures, 1);
        assert_eq!(k.connections_opened, 4);
        assert_eq!(k.reconnects, 2);
        assert_eq!(k.connections_reset, 2);
        assert_eq!(
            k.resets,
            BTreeMap::from([
                ("eof".into(), 1),
                ("reset".into(), 1),
                ("timeout".into(), 0)
            ])
        );
        assert_eq!(k.server_closes, 1);
        assert_eq!(
            k.per_id,
            BTreeMap::from([("PRI".into(), 4), ("SEC".into(), 2)])
        );
        assert_eq!(k.id_changes, 3);
        assert_eq!(k.id_changes_same_connection, 1);
        assert_eq!(k.per_connection[0].ids, ["PRI", "SEC"]);
        assert_eq!(k.per_connection[1].ids, ["PRI", "SEC", "PRI"]);
        assert_eq!(
            (k.per_connection[0].opened, k.per_connection[0].resets),
            (2, 1)
        );
        assert_eq!(k.skipped_ticks, 2);
        assert_eq!(k.latency.unwrap().max, Duration::from_micros(300));
        let json = serde_json::to_string(&k).unwrap();
        let back: KeepAliveSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, k);
        let text = k.to_string();
        assert!(
            text.contains("reset 2 (eof 1, reset 1, timeout 0)"),
            "{text}"
        );
        assert!(text.contains("per connection: 1 2"), "{text}");
        assert!(
            text.contains("\nkeep-alive latency: p50 ") && text.ends_with(", max 0.300 ms"),
            "{text}"
        );
    }

    #[test]
    fn loss_kinds() {
        use io::ErrorKind as K;
        assert_eq!(loss_kind(&K::ConnectionReset.into()), "reset");
        assert_eq!(loss_kind(&K::BrokenPipe.into()), "reset");
        assert_eq!(loss_kind(&K::WouldBlock.into()), "timeout");
        assert_eq!(loss_kind(&K::UnexpectedEof.into()), "eof");
        assert_eq!(lost_outcome("timeout"), Outcome::Timeout);
        assert_eq!(lost_outcome("eof"), Outcome::Error("eof".into()));
    }

    #[test]
    fn validate_bounds_the_connections() {
        let url = HttpUrl::parse("http://127.0.0.1:1/").unwrap();
        assert_eq!(KeepAlive::from_url(&url, 16).validate(), Ok(()));
        for n in [0, 1025] {
            assert_eq!(
                KeepAlive::from_url(&url, n).validate(),
                Err(PingError::Connections(n))
            );
        }
    }
}
