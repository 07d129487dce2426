//! `IdServer`: answers every HTTP GET with its ID, one thread per connection.
//!
//! A request that asks for it (`Connection: close`, HTTP/1.0) gets one answer and the server
//! closes the connection, so the server, not the probing client, holds the TIME_WAIT state and
//! a client probing every millisecond does not run out of ports. An HTTP/1.1 request without
//! `close` is answered with `Connection: keep-alive` and the connection stays open for the next
//! request (HTTP/1.1 persistent connections, pipelining included), until the client closes it,
//! it stays idle for the idle timeout, or the server stops. Every wait is bounded: a silent or
//! slow client is cut off after the read timeout, and the number of connection threads is
//! capped (a kept-alive connection holds its slot until it closes).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::http::{self, Verdict};

/// Longest request head accepted; the workload's requests are well under 200 bytes.
const MAX_HEAD: usize = 8 * 1024;
/// After answering, how long unread request bytes are drained so that closing does not reset
/// the connection (a reset can destroy the answer before the client has read it).
const LINGER: Duration = Duration::from_millis(100);
/// At most this much is drained while lingering.
const LINGER_MAX: usize = 64 * 1024;
/// How often the accept loop re-checks its stop flag even without a wake-up.
const POLL_MS: libc::c_int = 1000;
/// How often an idle kept-alive connection re-checks the stop flag.
const IDLE_STOP_CHECK: Duration = Duration::from_millis(100);
/// Connection threads do little; a small stack keeps many of them cheap.
const CONN_STACK: usize = 128 * 1024;

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The ID must be 1..=64 printable ASCII characters without spaces, so that the client's
    /// one-line-per-request output stays parseable.
    #[error("invalid server ID {0:?}: use 1 to 64 printable ASCII characters without spaces")]
    InvalidId(String),
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Setting up the listener or starting its thread failed.
    #[error("cannot start the server: {0}")]
    Start(#[source] io::Error),
}

/// Counters of a running server (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ServerStats {
    /// Connections accepted and handed to a thread.
    pub connections: u64,
    /// Requests answered `200 OK` (GET and HEAD), on new and kept-alive connections alike.
    pub served: u64,
    /// Requests answered on a kept-alive connection after its first answer (included in
    /// `served`, `bad_requests`, ... as well).
    pub reused: u64,
    /// Kept-alive connections closed by the server while waiting for the next request: idle
    /// for the idle timeout, or idle when the server stopped.
    pub idle_closed: u64,
    /// Requests answered `400 Bad Request` or `431` (garbage, oversized heads).
    pub bad_requests: u64,
    /// Well-formed requests with another method, answered `405`.
    pub not_allowed: u64,
    /// Connections closed because the request head did not arrive within the read timeout.
    pub timeouts: u64,
    /// Connections closed by the client before sending anything (port probes).
    pub closed_without_request: u64,
    /// Connections closed at once because `max_connections` were busy.
    pub rejected_overload: u64,
    /// Connections lost to socket errors (resets, failed writes, accept errors).
    pub io_errors: u64,
    /// Connection threads running now.
    pub active: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    served: AtomicU64,
    reused: AtomicU64,
    idle_closed: AtomicU64,
    bad_requests: AtomicU64,
    not_allowed: AtomicU64,
    timeouts: AtomicU64,
    closed_without_request: AtomicU64,
    rejected_overload: AtomicU64,
    io_errors: AtomicU64,
    active: AtomicUsize,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ServerStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            connections: l(&self.connections),
            served: l(&self.served),
            reused: l(&self.reused),
            idle_closed: l(&self.idle_closed),
            bad_requests: l(&self.bad_requests),
            not_allowed: l(&self.not_allowed),
            timeouts: l(&self.timeouts),
            closed_without_request: l(&self.closed_without_request),
            rejected_overload: l(&self.rejected_overload),
            io_errors: l(&self.io_errors),
            active: self.active.load(Ordering::Relaxed) as u64,
        }
    }
}

/// A server configuration; [`IdServer::spawn`] starts it.
#[derive(Debug, Clone)]
pub struct IdServer {
    id: String,
    listen: SocketAddr,
    read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

impl IdServer {
    /// Default time a client gets to send its request head.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default time a kept-alive connection may stay idle before the server closes it.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default cap on concurrent connections.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

    /// A server answering `id` on `listen` (port 0 picks a free port).
    pub fn new(id: impl Into<String>, listen: SocketAddr) -> Result<Self, ServerError> {
        let id = id.into();
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServerError::InvalidId(id));
        }
        Ok(Self {
            id,
            listen,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Time a client gets to send its whole request head (at least 1 ms).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Time a kept-alive connection gets to send its next whole request head after an answer
    /// (at least 1 ms); then the server closes it.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Concurrent connections served, kept-alive ones included; more are closed at once and
    /// counted (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Binds and starts the accept loop in its own thread.
    pub fn spawn(self) -> Result<IdServerHandle, ServerError> {
        let listener = TcpListener::bind(self.listen).map_err(|source| ServerError::Bind {
            addr: self.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(ServerError::Start)?;
        listener.set_nonblocking(true).map_err(ServerError::Start)?;
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(ServerError::Start)?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(ConnConfig {
            body: format!("{}\n", self.id).into_bytes(),
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            stop: Arc::clone(&stop),
        });
        let looper = AcceptLoop {
            listener,
            wake: wake_rx,
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            conn,
            max_connections: self.max_connections,
        };
        let thread = std::thread::Builder::new()
            .name(format!("id-server-{}", local_addr.port()))
            .spawn(move || looper.run())
            .map_err(ServerError::Start)?;
        debug!(id = %self.id, %local_addr, "id server listening");
        Ok(IdServerHandle {
            id: self.id,
            local_addr,
            counters,
            stop,
            wake: Some(wake_tx),
            thread: Some(thread),
        })
    }
}

/// A running server; stops on [`stop`](Self::stop) or when dropped.
#[derive(Debug)]
pub struct IdServerHandle {
    id: String,
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl IdServerHandle {
    /// The address actually bound (with the port picked when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The ID this server answers.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// Stops accepting and closes the listening socket before returning, so new connections are
    /// refused from then on. Connections already accepted finish on their own: a pending
    /// request is answered with `Connection: close` (bounded by the read timeout), and an idle
    /// kept-alive connection is closed within 100 ms. Calling it again does nothing.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing our end of the pair wakes the accept loop's poll at once.
        self.wake = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!(id = %self.id, "accept loop panicked");
        }
    }
}

impl Drop for IdServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct ConnConfig {
    body: Vec<u8>,
    read_timeout: Duration,
    idle_timeout: Duration,
    stop: Arc<AtomicBool>,
}

struct AcceptLoop {
    listener: TcpListener,
    wake: UnixStream,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    conn: Arc<ConnConfig>,
    max_connections: usize,
}

impl AcceptLoop {
    fn run(self) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live, writable array of two initialised pollfd structs whose
            // length is passed alongside; both descriptors stay open for the call.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
            if self.stop.load(Ordering::SeqCst) || fds[1].revents != 0 {
                return;
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "poll on the listening socket failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            if fds[0].revents != 0 {
                self.accept_all();
            }
        }
    }

    /// Accepts until the backlog is empty (the listener is non-blocking).
    fn accept_all(&self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE and the like: count, back off so a full table does not spin.
                    Counters::bump(&self.counters.io_errors);
                    warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let active = &self.counters.active;
        if active.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            Counters::bump(&self.counters.rejected_overload);
            debug!(%peer, "too many connections, closing");
            return;
        }
        Counters::bump(&self.counters.connections);
        let guard = ActiveGuard(Arc::clone(&self.counters));
        let conn = Arc::clone(&self.conn);
        let spawned = std::thread::Builder::new()
            .name("id-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                // Moves the whole guard in, so it drops when the thread ends.
                let guard = guard;
                serve(stream, peer, &conn, &guard.0);
            });
        if let Err(e) = spawned {
            // The closure (and with it the guard and the stream) was dropped: count and go on.
            Counters::bump(&self.counters.io_errors);
            warn!(error = %e, "cannot start a connection thread");
        }
    }
}

/// Decrements the active-connection gauge however the connection thread ends.
struct ActiveGuard(Arc<Counters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How reading the request head ended.
enum Head {
    Complete(usize),
    TooLarge,
    Eof,
    TimedOut,
    /// Idle (nothing of a next request read) when the server stopped.
    Stopped,
}

/// Reads until `buf` holds a whole request head, for at most `timeout`. With `stop`, an idle
/// wait (nothing buffered) also ends soon after the flag is raised.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
    stop: Option<&AtomicBool>,
) -> io::Result<Head> {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(n) = http::head_len(buf) {
            return Ok(Head::Complete(n));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let idle_stop = stop.filter(|_| buf.is_empty());
        if idle_stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Ok(Head::Stopped);
        }
        let mut left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::TimedOut);
        }
        if idle_stop.is_some() {
            left = left.min(IDLE_STOP_CHECK);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(Head::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A slice of an idle wait ended: the loop re-checks the flag and the deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && idle_stop.is_some() => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TimedOut);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Serves requests on one connection: one, or as many as the client sends while it keeps the
/// connection alive.
fn serve(mut stream: TcpStream, peer: SocketAddr, conn: &ConnConfig, counters: &Counters) {
    // The answer is one small write; do not let Nagle hold it back.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(512);
    let mut answered: u64 = 0;
    loop {
        // The first request gets the read timeout; the next ones on a kept-alive connection
        // the idle timeout, and an idle wait ends when the server stops.
        let (timeout, stop) = if answered == 0 {
            (conn.read_timeout, None)
        } else {
            (conn.idle_timeout, Some(&*conn.stop))
        };
        let head = match read_head(&mut stream, &mut buf, timeout, stop) {
            Ok(h) => h,
            Err(e) => {
                Counters::bump(&counters.io_errors);
                debug!(%peer, error = %e, answered, "reading request failed");
                return;
            }
        };
        let (status, reason, head_only, keep_alive, counter, used) = match head {
            Head::Stopped => {
                Counters::bump(&counters.idle_closed);
                debug!(%peer, answered, "server stopping, closing an idle connection");
                return;
            }
            Head::TimedOut if answered > 0 && buf.is_empty() => {
                Counters::bump(&counters.idle_closed);
                debug!(%peer, answered, "idle kept-alive connection, closing");
                return;
            }
            Head::TimedOut => {
                Counters::bump(&counters.timeouts);
                debug!(%peer, "no request within the read timeout, closing");
                return;
            }
            // The client closed between requests: the normal end of a kept-alive connection.
            Head::Eof if buf.is_empty() && answered > 0 => return,
            Head::Eof if buf.is_empty() => {
                Counters::bump(&counters.closed_without_request);
                return;
            }
            // A head cut off by the client's half-close is as malformed as garbage.
            Head::Eof => (
                400,
                "Bad Request",
                false,
                false,
                &counters.bad_requests,
                buf.len(),
            ),
            Head::TooLarge => (
                431,
                "Request Header Fields Too Large",
                false,
                false,
                &counters.bad_requests,
                buf.len(),
            ),
            Head::Complete(n) => match http::classify_request(&buf[..n]) {
                Verdict::Answer {
                    head_only,
                    keep_alive,
                } => (200, "OK", head_only, keep_alive, &counters.served, n),
                Verdict::MethodNotAllowed => (
                    405,
                    "Method Not Allowed",
                    false,
                    false,
                    &counters.not_allowed,
                    n,
                ),
                Verdict::BadRequest => {
                    (400, "Bad Request", false, false, &counters.bad_requests, n)
                }
            },
        };
        // A stopping server answers what it was asked, then closes.
        let keep_alive = keep_alive && !conn.stop.load(Ordering::SeqCst);
        let body: &[u8] = if status == 200 { &conn.body } else { b"" };
        let response = http::response(status, reason, body, head_only, keep_alive);
        let written = stream
            .set_write_timeout(Some(conn.read_timeout))
            .and_then(|()| stream.write_all(&response));
        if let Err(e) = written {
            Counters::bump(&counters.io_errors);
            debug!(%peer, error = %e, answered, "writing the answer failed");
            return;
        }
        Counters::bump(counter);
        if answered > 0 {
            Counters::bump(&counters.reused);
        }
        answered += 1;
        debug!(%peer, status, keep_alive, answered, "answered");
        if !keep_alive {
            linger(&mut stream);
            return;
        }
        // Pipelined bytes of the next request stay in the buffer.
        buf.drain(..used);
    }
}

/// Sends our FIN, then reads and discards whatever the client still sends (a keep-alive
/// client's next request, a request body) until it closes, briefly: closing with unread data
/// would answer with a reset instead.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut chunk = [0u8; 2048];
    while drained < LINGER_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
