//! `HttpPing`: fetch the target on a fixed schedule, one new TCP connection per request, and
//! record who answered.
//!
//! The schedule does not drift: tick `k` is due at `start + k * interval` whatever the previous
//! requests cost. A request that overruns makes the ticks it covered impossible; they are
//! skipped and counted, not made up for with a burst.

use std::io::{self, Read, Write};
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::http::{self, ResponseParse};
use super::url::HttpUrl;

/// Longest response accepted; the ID server's answers are under 200 bytes.
pub(super) const MAX_RESPONSE: usize = 16 * 1024;
/// Longest ID accepted in a body.
const MAX_ID: usize = 64;
/// After a complete `Connection: close` answer, how long to wait for the server's FIN before
/// closing ourselves: closing second leaves TIME_WAIT on the server instead of using up the
/// client's ports when probing every millisecond. Not part of the latency.
const FIN_WAIT: Duration = Duration::from_millis(20);
/// Longest single sleep, so a stop request is seen quickly even with long intervals.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// When a run ends (besides a stop request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many requests (skipped ticks do not count).
    Count(u64),
    /// When the next tick would be due at or after this time since the start.
    Duration(Duration),
    /// Only on a stop request.
    Unbounded,
}

/// What one request brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `200 OK` with this ID as the body (trailing newline removed).
    Ok(String),
    /// No connection or no complete answer within the timeouts.
    Timeout,
    /// The connection was refused (RST to our SYN, or ICMP port unreachable).
    Refused,
    /// Anything else; the text is a short label without spaces (`reset`, `closed_early`,
    /// `status_503`, `host_unreachable`, ...), used as the failure kind in summaries.
    Error(String),
}

impl Outcome {
    /// The ID, for a successful answer.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Ok(id) => Some(id),
            _ => None,
        }
    }

    /// `None` for a successful answer, else the failure kind: `timeout`, `refused` or the error
    /// label.
    pub fn failure_kind(&self) -> Option<&str> {
        match self {
            Self::Ok(_) => None,
            Self::Timeout => Some("timeout"),
            Self::Refused => Some("refused"),
            Self::Error(label) => Some(label),
        }
    }
}

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index of the tick this request ran on (gaps are skipped ticks).
    pub seq: u64,
    /// Wall-clock time the request started.
    pub at: SystemTime,
    /// Time since the start of the run at which the request started.
    pub t: Duration,
    /// From the start of the connection attempt to the complete answer (or the failure).
    pub latency: Duration,
    /// What came back.
    pub outcome: Outcome,
}

impl Sample {
    /// Time since the start of the run at which the answer (or the failure) arrived.
    pub fn answered_at(&self) -> Duration {
        self.t + self.latency
    }
}

/// What a run did besides its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// Requests sent (samples produced).
    pub requests: u64,
    /// Ticks that passed while a request was still running.
    pub skipped_ticks: u64,
    /// Length of the run.
    pub elapsed: Duration,
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// Interval or a timeout is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A keep-alive connection count outside 1..=1024.
    #[error("keep-alive connections must be in 1..=1024, got {0}")]
    Connections(usize),
    /// A worker thread could not be started.
    #[error("cannot start a keep-alive connection thread: {0}")]
    Spawn(String),
    /// Source and target addresses of different families.
    #[error("source address {src} and target {target} are not of the same IP family")]
    FamilyMismatch {
        /// The source asked for.
        src: IpAddr,
        /// The target.
        target: SocketAddr,
    },
}

/// The client's configuration; [`run`](Self::run) probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPing {
    /// Where to connect.
    pub target: SocketAddr,
    /// Request target (path and query).
    pub path: String,
    /// Time between ticks.
    pub interval: Duration,
    /// Longest wait for the TCP handshake.
    pub connect_timeout: Duration,
    /// Longest wait, once connected, for sending the request and reading the whole answer.
    pub request_timeout: Duration,
    /// When to stop.
    pub limit: Limit,
    /// Source address to bind before connecting (the kernel picks the port).
    pub bind: Option<IpAddr>,
    /// Requests that may be in flight at once. 1 is the seed's client: one request after the
    /// other, so a request stuck on a dead server hides everything until its timeout. More
    /// starts every tick on time, and the gaps measure the service, not the client's timeouts.
    pub parallel: usize,
}

impl HttpPing {
    /// Default time between requests, the seed's 100 ms.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
    /// Default handshake timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(50);
    /// Default timeout for the request once connected.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

    /// Probes `target` at `/` with the defaults, until stopped.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            path: "/".to_owned(),
            interval: Self::DEFAULT_INTERVAL,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            limit: Limit::Unbounded,
            bind: None,
            parallel: 1,
        }
    }

    /// Probes the URL's address and path with the defaults, until stopped.
    pub fn from_url(url: &HttpUrl) -> Self {
        Self {
            path: url.path.clone(),
            ..Self::new(url.addr)
        }
    }

    /// Checks the configuration without running it.
    pub fn validate(&self) -> Result<(), PingError> {
        for (d, name) in [
            (self.interval, "interval"),
            (self.connect_timeout, "connect timeout"),
            (self.request_timeout, "request timeout"),
        ] {
            if d.is_zero() {
                return Err(PingError::Zero(name));
            }
        }
        if let Some(src) = self.bind
            && src.is_ipv4() != self.target.is_ipv4()
        {
            return Err(PingError::FamilyMismatch {
                src,
                target: self.target,
            });
        }
        Ok(())
    }

    /// Runs until the limit, handing every sample to `sink` as soon as it is taken.
    pub fn run(&self, sink: impl FnMut(&Sample)) -> Result<RunStats, PingError> {
        self.run_until(&AtomicBool::new(false), sink)
    }

    /// Like [`run`](Self::run), but also ends soon after `stop` becomes true (checked between
    /// requests and at least every 20 ms while waiting for a tick; a request in flight finishes
    /// first, bounded by its timeouts).
    pub fn run_until(
        &self,
        stop: &AtomicBool,
        mut sink: impl FnMut(&Sample),
    ) -> Result<RunStats, PingError> {
        self.validate()?;
        if self.parallel > 1 {
            return self.run_parallel(stop, sink);
        }
        let request = self.request();
        let start = Instant::now();
        let mut stats = RunStats::default();
        let mut tick: u64 = 0;
        loop {
            if !self.await_tick(tick, stats.requests, start, stop) {
                break;
            }
            let at = SystemTime::now();
            let t = start.elapsed();
            let (outcome, latency) = self.probe(&request);
            stats.requests += 1;
            sink(&Sample {
                seq: tick,
                at,
                t,
                latency,
                outcome,
            });
            if let Limit::Count(n) = self.limit
                && stats.requests >= n
            {
                break;
            }
            let (next, mut missed) = next_tick(tick, start.elapsed(), self.interval);
            if let Limit::Duration(d) = self.limit {
                // Ticks due after the end of the run were never going to run.
                let last_possible = ticks_before(d, self.interval);
                missed = missed.min(last_possible.saturating_sub(tick + 1));
            }
            stats.skipped_ticks += missed;
            tick = next;
        }
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    /// Sleeps until tick `tick` is due (start + tick x interval). False when the run is over
    /// instead: stopped, `done` requests reach the count, or the tick falls past the duration.
    fn await_tick(&self, tick: u64, done: u64, start: Instant, stop: &AtomicBool) -> bool {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Limit::Count(n) = self.limit
            && done >= n
        {
            return false;
        }
        let Some(due) = tick_time(tick, self.interval) else {
            return false;
        };
        if let Limit::Duration(d) = self.limit
            && due >= d
        {
            return false;
        }
        let Some(deadline) = start.checked_add(due) else {
            return false;
        };
        sleep_until(deadline, stop)
    }

    /// Every tick on time, with up to `parallel` requests in flight; a tick that finds them all
    /// busy is skipped and counted. Samples reach `sink` as requests finish.
    fn run_parallel(
        &self,
        stop: &AtomicBool,
        mut sink: impl FnMut(&Sample),
    ) -> Result<RunStats, PingError> {
        use std::sync::mpsc;
        let request = self.request();
        let start = Instant::now();
        let mut stats = RunStats::default();
        let (tick_tx, tick_rx) = mpsc::sync_channel::<(u64, SystemTime, Duration)>(0);
        let tick_rx = std::sync::Mutex::new(tick_rx);
        let (sample_tx, sample_rx) = mpsc::channel::<Sample>();
        std::thread::scope(|scope| {
            for _ in 0..self.parallel {
                let sample_tx = sample_tx.clone();
                let (tick_rx, request) = (&tick_rx, &request);
                scope.spawn(move || {
                    loop {
                        let next = match tick_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, at, t)) = next else { return };
                        let (outcome, latency) = self.probe(request);
                        let sample = Sample {
                            seq,
                            at,
                            t,
                            latency,
                            outcome,
                        };
                        if sample_tx.send(sample).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(sample_tx);
            let mut tick: u64 = 0;
            let mut issued: u64 = 0;
            loop {
                while let Ok(sample) = sample_rx.try_recv() {
                    stats.requests += 1;
                    sink(&sample);
                }
                if !self.await_tick(tick, issued, start, stop) {
                    break;
                }
                // A worker is free only if it takes the tick right now (rendezvous channel).
                match tick_tx.try_send((tick, SystemTime::now(), start.elapsed())) {
                    Ok(()) => issued += 1,
                    Err(mpsc::TrySendError::Full(_)) => stats.skipped_ticks += 1,
                    Err(mpsc::TrySendError::Disconnected(_)) => break,
                }
                tick += 1;
            }
            drop(tick_tx);
            // Workers end when the channel closes; collect what they still finish.
            for sample in sample_rx.iter() {
                stats.requests += 1;
                sink(&sample);
            }
        });
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    /// One request now: the outcome and the latency.
    pub fn probe_once(&self) -> (Outcome, Duration) {
        self.probe(&self.request())
    }

    fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: http-ping\r\nConnection: close\r\n\r\n",
            self.path, self.target
        )
        .into_bytes()
    }

    fn probe(&self, request: &[u8]) -> (Outcome, Duration) {
        let begin = Instant::now();
        let connected = match self.bind {
            None => TcpStream::connect_timeout(&self.target, self.connect_timeout),
            Some(src) => connect_from(src, self.target, self.connect_timeout),
        };
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => return (connect_failure(&e), begin.elapsed()),
        };
        let deadline = Instant::now() + self.request_timeout;
        let (outcome, eof) = exchange(&mut stream, request, deadline);
        let latency = begin.elapsed();
        if outcome.id().is_some() && !eof {
            wait_for_fin(&mut stream, deadline.min(Instant::now() + FIN_WAIT));
        }
        (outcome, latency)
    }
}

/// Sends the request and reads the answer; also says whether the server's FIN was seen.
fn exchange(stream: &mut TcpStream, request: &[u8], deadline: Instant) -> (Outcome, bool) {
    let _ = stream.set_nodelay(true);
    let sent = set_timeouts(stream, deadline).and_then(|()| stream.write_all(request));
    if let Err(e) = sent {
        return (io_failure(&e), false);
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    let mut eof = false;
    loop {
        match http::parse_response(&buf, eof) {
            ResponseParse::Incomplete => {}
            ResponseParse::Invalid(label) => return (Outcome::Error(label.to_owned()), eof),
            ResponseParse::Complete {
                status: 200, body, ..
            } => return (body_outcome(body), eof),
            ResponseParse::Complete { status, .. } => {
                return (Outcome::Error(format!("status_{status}")), eof);
            }
        }
        if buf.len() > MAX_RESPONSE {
            return (Outcome::Error("response_too_large".to_owned()), eof);
        }
        if let Err(e) = set_timeouts(stream, deadline) {
            return (io_failure(&e), eof);
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (io_failure(&e), eof),
        }
    }
}

/// The body must be one short token: what the ID server sends, and what keeps the client's
/// one-line-per-request output parseable.
pub(super) fn body_outcome(body: &[u8]) -> Outcome {
    let id = body.trim_ascii();
    if id.is_empty() || id.len() > MAX_ID || !id.iter().all(u8::is_ascii_graphic) {
        return Outcome::Error("bad_body".to_owned());
    }
    Outcome::Ok(String::from_utf8_lossy(id).into_owned())
}

/// Sets both socket timeouts to what is left before `deadline`.
pub(super) fn set_timeouts(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

fn wait_for_fin(stream: &mut TcpStream, until: Instant) {
    let mut chunk = [0u8; 256];
    while set_timeouts(stream, until).is_ok() {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

pub(super) fn connect_failure(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        _ => io_failure(e),
    }
}

pub(super) fn io_failure(e: &io::Error) -> Outcome {
    use io::ErrorKind as K;
    let label = match e.kind() {
        K::TimedOut | K::WouldBlock => return Outcome::Timeout,
        K::ConnectionRefused => return Outcome::Refused,
        K::ConnectionReset | K::BrokenPipe => "reset",
        K::ConnectionAborted => "aborted",
        K::UnexpectedEof => "closed_early",
        K::HostUnreachable => "host_unreachable",
        K::NetworkUnreachable => "net_unreachable",
        K::AddrNotAvailable => "addr_not_available",
        K::AddrInUse => "addr_in_use",
        K::PermissionDenied => "permission_denied",
        _ => return Outcome::Error(format!("os_error_{}", e.raw_os_error().unwrap_or(0))),
    };
    Outcome::Error(label.to_owned())
}

/// Start time of tick `k`, `None` past what a `Duration` holds.
pub(super) fn tick_time(k: u64, interval: Duration) -> Option<Duration> {
    let nanos = interval.as_nanos().checked_mul(u128::from(k))?;
    Some(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// Number of ticks due strictly before `d` (ticks `0..n`).
fn ticks_before(d: Duration, interval: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(interval.as_nanos())).unwrap_or(u64::MAX)
}

/// After tick `current` finished at `elapsed`, the next tick to run (the first one not yet
/// past, at least `current + 1`) and how many ticks were missed in between.
pub(super) fn next_tick(current: u64, elapsed: Duration, interval: Duration) -> (u64, u64) {
    let next = ticks_before(elapsed, interval).max(current.saturating_add(1));
    (next, (next - current).saturating_sub(1))
}

/// Sleeps until `deadline`; false if `stop` was raised first.
pub(super) fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

/// `connect` from a chosen source address with a timeout (std cannot bind before connecting):
/// a non-blocking socket, bound, connected, then polled for writability.
pub(super) fn connect_from(
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // Let connect(2) pick the port knowing the destination, not bind(2): ports are then shared
    // across destinations. Best effort: without it the bind still works.
    // SAFETY: the option value points to a live c_int and its exact size is passed.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let (addr, len) = sockaddr(SocketAddr::new(src, 0));
    // SAFETY: `addr` is a sockaddr_storage holding a valid address of `len` bytes.
    if unsafe { libc::bind(sock.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let (addr, len) = sockaddr(dst);
    // SAFETY: as for bind above.
    if unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        wait_writable(&sock, Instant::now() + timeout)?;
        let mut err: libc::c_int = 0;
        let mut err_len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `err_len` are live and writable, `err_len` holds `err`'s size.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &raw mut err_len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
    }
    let stream = TcpStream::from(sock);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn wait_writable(sock: &OwnedFd, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live, initialised pollfd and the count 1.
        let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A socket address in the C layout, with its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for any
            // sockaddr type, so the write stays inside `storage` and is aligned.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn next_tick_keeps_the_schedule() {
        let i = 100 * MS;
        // Finished well inside the interval: the next tick, nothing missed.
        assert_eq!(next_tick(0, MS, i), (1, 0));
        assert_eq!(next_tick(7, 700 * MS + MS, i), (8, 0));
        // Finished exactly on the next tick: run it, nothing missed.
        assert_eq!(next_tick(0, 100 * MS, i), (1, 0));
        // Overran ticks 1 and 2: they are missed, tick 3 is next.
        assert_eq!(next_tick(0, 250 * MS, i), (3, 2));
        // Just past tick 3: 1, 2 and 3 are missed.
        assert_eq!(next_tick(0, 300 * MS + Duration::from_nanos(1), i), (4, 3));
        // A clock that reads early never goes backwards.
        assert_eq!(next_tick(5, 10 * MS, i), (6, 0));
    }

    #[test]
    fn tick_arithmetic_saturates() {
        assert_eq!(tick_time(3, 100 * MS), Some(300 * MS));
        assert_eq!(tick_time(u64::MAX, Duration::from_secs(1)), None);
        assert_eq!(ticks_before(Duration::ZERO, MS), 0);
        assert_eq!(ticks_before(MS, MS), 1);
        assert_eq!(ticks_before(MS + Duration::from_nanos(1), MS), 2);
        assert_eq!(next_tick(u64::MAX, Duration::ZERO, MS), (u64::MAX, 0));
    }

    #[test]
    fn validate_refuses_unusable_configurations() {
        let p = HttpPing::new("127.0.0.1:1".parse().unwrap());
        assert_eq!(p.validate(), Ok(()));
        let zero = HttpPing {
            interval: Duration::ZERO,
            ..p.clone()
        };
        assert_eq!(zero.validate(), Err(PingError::Zero("interval")));
        assert_eq!(zero.run(|_| {}), Err(PingError::Zero("interval")));
        let mixed = HttpPing {
            bind: Some("::1".parse().unwrap()),
            ..p
        };
        assert!(matches!(
            mixed.validate(),
            Err(PingError::FamilyMismatch { .. })
        ));
    }

    #[test]
    fn body_must_be_one_token() {
        assert_eq!(body_outcome(b"PRI\n"), Outcome::Ok("PRI".into()));
        assert_eq!(body_outcome(b"  SEC\r\n"), Outcome::Ok("SEC".into()));
        for bad in [&b""[..], b"\n", b"two words\n", b"\xff\xfe", &[b'x'; 65]] {
            assert_eq!(
                body_outcome(bad),
                Outcome::Error("bad_body".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn io_errors_map_to_failure_kinds() {
        use io::ErrorKind as K;
        let kind = |k: K| io_failure(&io::Error::from(k));
        assert_eq!(kind(K::TimedOut), Outcome::Timeout);
        assert_eq!(kind(K::WouldBlock), Outcome::Timeout);
        assert_eq!(kind(K::ConnectionRefused), Outcome::Refused);
        assert_eq!(kind(K::ConnectionReset), Outcome::Error("reset".into()));
        assert_eq!(
            io_failure(&io::Error::from_raw_os_error(libc::EPROTO)),
            Outcome::Error(format!("os_error_{}", libc::EPROTO))
        );
        assert_eq!(
            connect_failure(&io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            Outcome::Refused
        );
        assert_eq!(
            connect_failure(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            Outcome::Error("host_unreachable".into())
        );
        for o in [Outcome::Timeout, Outcome::Refused, kind(K::ConnectionReset)] {
            let k = o.failure_kind().unwrap();
            assert!(!k.is_empty() && !k.contains(char::is_whitespace));
        }
        assert_eq!(Outcome::Ok("PRI".into()).failure_kind(), None);
    }

    #[test]
    fn sockaddr_layout_matches_the_kernel() {
        let (ss, len) = sockaddr("10.1.2.3:3000".parse().unwrap());
        assert_eq!(len as usize, size_of::<libc::sockaddr_in>());
        assert_eq!(ss.ss_family, libc::AF_INET as libc::sa_family_t);
        // SAFETY: test-only read back of what sockaddr() wrote in this layout.
        let sin = unsafe { (&raw const ss).cast::<libc::sockaddr_in>().read() };
        assert_eq!(u16::from_be(sin.sin_port), 3000);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [10, 1, 2, 3]);
        let (ss, len) = sockaddr("[fd00::1]:80".parse().unwrap());
        assert_eq!(len as usize, size_of::<libc::sockaddr_in6>());
        assert_eq!(ss.ss_family, libc::AF_INET6 as libc::sa_family_t);
    }
}
