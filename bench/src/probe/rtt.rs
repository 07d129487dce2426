//! UDP round-trip latency: an echo server and a ping-pong prober.
//!
//! The prober keeps exactly one probe outstanding, sends on an absolute schedule
//! (`t0 + k * interval`, so a slow round does not shift all later ones) and only ever sleeps:
//! the benchmark runs on a 2-core VM next to the data plane it measures, and a spinning prober
//! would steal the CPU it is supposed to observe. Round-trip times go into an HDR histogram
//! (1 ns .. 10 s, 3 significant figures) that is reduced to an [`RttReport`].

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::ProbeError;

/// First four bytes of every probe ("RTTP"), so replies from anything else are told apart.
pub const MAGIC: u32 = 0x5254_5450;
/// Magic (4 bytes) and sequence number (8 bytes), both big-endian.
const HEADER_LEN: usize = 12;
/// How often a blocked echo server looks at its stop flag.
const ECHO_POLL: Duration = Duration::from_millis(50);
/// Echo buffer: any UDP payload fits, so every datagram is echoed whole.
const ECHO_BUF: usize = 65_536;
/// How often a sleeping prober looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Histogram range in nanoseconds and precision.
const HIST_LOW_NS: u64 = 1;
const HIST_HIGH_NS: u64 = 10_000_000_000;
const HIST_SIGFIG: u8 = 3;
/// Quantile ticks per half distance to 100 %: HdrHistogram's usual percentile-distribution
/// density, a few dozen points for typical runs.
const CURVE_TICKS_PER_HALF: u32 = 5;
/// Upper bound on chart points, so a report stays small whatever the sample count.
pub const CURVE_MAX_POINTS: usize = 200;

/// Counters of an echo server run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EchoStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent back.
    pub echoed: u64,
    /// Payload bytes sent back.
    pub bytes: u64,
    /// Echoes the kernel refused to send (counted, then ignored).
    pub send_errors: u64,
}

/// A bound UDP echo server; bind first to learn the port, then [`EchoServer::serve`].
#[derive(Debug)]
pub struct EchoServer {
    socket: UdpSocket,
    local: SocketAddr,
}

impl EchoServer {
    /// Binds the server's socket (port 0 lets the kernel pick).
    pub fn bind(addr: SocketAddr) -> Result<Self, ProbeError> {
        let socket =
            UdpSocket::bind(addr).map_err(|e| ProbeError::io(format!("binding UDP {addr}"), e))?;
        // A bounded wait, so the stop flag is seen even when nobody sends.
        socket
            .set_read_timeout(Some(ECHO_POLL))
            .map_err(|e| ProbeError::io("setting the echo read timeout", e))?;
        let local = socket
            .local_addr()
            .map_err(|e| ProbeError::io("reading the echo socket address", e))?;
        Ok(Self { socket, local })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends every datagram back to its sender unchanged until `stop` is set (seen within
    /// about 50 ms).
    pub fn serve(&self, stop: &AtomicBool) -> Result<EchoStats, ProbeError> {
        let mut buf = vec![0u8; ECHO_BUF];
        let mut stats = EchoStats::default();
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    stats.received += 1;
                    let Some(payload) = buf.get(..n) else {
                        continue;
                    };
                    match self.socket.send_to(payload, peer) {
                        Ok(_) => {
                            stats.echoed += 1;
                            stats.bytes += n as u64;
                        }
                        Err(_) => stats.send_errors += 1,
                    }
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors about earlier echoes: not this server's problem.
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(ProbeError::io("receiving on the echo socket", e)),
            }
        }
        Ok(stats)
    }
}

/// Binds a UDP echo server on `bind` and serves until `stop` is set.
pub fn echo_serve(bind: SocketAddr, stop: &AtomicBool) -> Result<EchoStats, ProbeError> {
    EchoServer::bind(bind)?.serve(stop)
}

/// What and how to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The echo server.
    pub target: SocketAddr,
    /// Probes recorded (after the warm-up).
    pub count: u64,
    /// Schedule: probe `k` is due at `t0 + k * interval`.
    pub interval: Duration,
    /// How long to wait for each reply before the probe counts as lost (at most 10 s).
    pub timeout: Duration,
    /// UDP payload bytes per probe, 16 ..= 2048.
    pub payload: usize,
    /// Probes sent first and not recorded (ARP, caches, the echo server's wake-up).
    pub warmup: u64,
}

impl ProbeConfig {
    /// Default payload size.
    pub const DEFAULT_PAYLOAD: usize = 32;
    /// Default number of unrecorded warm-up probes.
    pub const DEFAULT_WARMUP: u64 = 10;
    /// Smallest payload: magic and sequence number plus some padding.
    pub const MIN_PAYLOAD: usize = 16;
    /// Largest payload: the echo side's documented limit.
    pub const MAX_PAYLOAD: usize = 2048;

    /// 1000 probes at 1 ms, 200 ms timeout, 32-byte payload, 10 warm-up probes.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            count: 1000,
            interval: Duration::from_millis(1),
            timeout: Duration::from_millis(200),
            payload: Self::DEFAULT_PAYLOAD,
            warmup: Self::DEFAULT_WARMUP,
        }
    }

    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.count == 0 {
            return Err(ProbeError::InvalidConfig("count must be at least 1".into()));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_nanos(HIST_HIGH_NS) {
            return Err(ProbeError::InvalidConfig(format!(
                "timeout must be more than 0 and at most 10 s, not {:?}",
                self.timeout
            )));
        }
        if !(Self::MIN_PAYLOAD..=Self::MAX_PAYLOAD).contains(&self.payload) {
            return Err(ProbeError::InvalidConfig(format!(
                "payload must be {} to {} bytes, not {}",
                Self::MIN_PAYLOAD,
                Self::MAX_PAYLOAD,
                self.payload
            )));
        }
        if self.target.port() == 0 {
            return Err(ProbeError::InvalidConfig(
                "the target needs a port other than 0".into(),
            ));
        }
        Ok(())
    }
}

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The matching reply came back after this round-trip time.
    Reply(Duration),
    /// No matching reply within the timeout (or the network said it cannot be delivered).
    Lost,
}

/// Passed to the progress callback after every probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeProgress {
    /// Sequence number, counting the warm-up probes (the first recorded one is `warmup`).
    pub seq: u64,
    /// A warm-up probe, not recorded.
    pub warmup: bool,
    /// What happened.
    pub outcome: ProbeOutcome,
}

/// Result of a probe run. Latencies are in microseconds; all zero when nothing came back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RttReport {
    /// Recorded probes sent (warm-up excluded).
    pub sent: u64,
    /// Of those, answered in time.
    pub received: u64,
    /// Of those, not answered in time.
    pub lost: u64,
    /// Datagrams that were not the reply awaited (wrong magic, stale or foreign sequence
    /// number, wrong length), warm-up included.
    pub stray: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Latency distribution for charts: (percentile 0..=100, µs), both non-decreasing.
    pub curve: Vec<(f64, f64)>,
}

impl RttReport {
    /// Reduces a histogram of round-trip times in nanoseconds to a report.
    pub fn from_histogram(hist: &Histogram<u64>, sent: u64, lost: u64, stray: u64) -> Self {
        let received = hist.len();
        let at = |q: f64| ns_to_us(hist.value_at_quantile(q));
        if hist.is_empty() {
            return Self {
                sent,
                received,
                lost,
                stray,
                min_us: 0.0,
                mean_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
                curve: Vec::new(),
            };
        }
        Self {
            sent,
            received,
            lost,
            stray,
            min_us: ns_to_us(hist.min()),
            mean_us: hist.mean() / 1000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: ns_to_us(hist.max()),
            curve: curve(hist),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// One human-readable line.
    pub fn summary(&self) -> String {
        format!(
            "n={}, lost={}, stray={}, min {:.1}, p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, \
             max {:.1} µs (mean {:.1})",
            self.received,
            self.lost,
            self.stray,
            self.min_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.mean_us
        )
    }
}

/// A histogram for round-trip times in nanoseconds with the probe's range and precision.
pub fn new_histogram() -> Result<Histogram<u64>, ProbeError> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, HIST_SIGFIG)
        .map_err(|e| ProbeError::InvalidConfig(format!("histogram bounds: {e:?}")))
}

fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The percentile distribution as chart points: HdrHistogram's quantile iteration, reduced to
/// strictly increasing percentiles, flat runs shortened to their two ends, thinned to at most
/// [`CURVE_MAX_POINTS`] (first and last kept).
pub fn curve(hist: &Histogram<u64>) -> Vec<(f64, f64)> {
    curve_capped(hist, CURVE_MAX_POINTS)
}

fn curve_capped(hist: &Histogram<u64>, max_points: usize) -> Vec<(f64, f64)> {
    if hist.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = Vec::new();
    for v in hist.iter_quantiles(CURVE_TICKS_PER_HALF) {
        // Rounded to 1e-6 so that 30 % reads 30, not 30.000000000000004.
        let pct = ((v.quantile_iterated_to() * 1e8).round() / 1e6).clamp(0.0, 100.0);
        let us = ns_to_us(v.value_iterated_to());
        match points.last_mut() {
            // Same percentile again: keep the higher value, as a step curve would.
            Some(last) if pct <= last.0 => last.1 = last.1.max(us),
            Some(last) => {
                let us = us.max(last.1);
                points.push((pct, us));
            }
            None => points.push((pct, us)),
        }
    }
    thin(collapse_flat_runs(points), max_points)
}

/// Keeps only the first and last point of each run of equal values.
fn collapse_flat_runs(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let same_as_prev = i > 0 && points.get(i - 1).is_some_and(|q| q.1 == p.1);
        let same_as_next = points.get(i + 1).is_some_and(|q| q.1 == p.1);
        if !(same_as_prev && same_as_next) {
            out.push(*p);
        }
    }
    out
}

/// Evenly picks at most `max` points, always including the first and the last.
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let last = points.len() - 1;
    (0..max)
        .filter_map(|i| points.get(i * last / (max - 1)).copied())
        .collect()
}

/// Probes `cfg.target` and reports round-trip times. Returns early with what it has when
/// `stop` is set (seen within about 100 ms while sleeping, or after the probe in flight).
/// `progress` is called after every probe, warm-up included.
pub fn probe(
    cfg: &ProbeConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&ProbeProgress),
) -> Result<RttReport, ProbeError> {
    cfg.validate()?;
    let local: SocketAddr = match cfg.target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket =
        UdpSocket::bind(local).map_err(|e| ProbeError::io("binding the probe socket", e))?;
    // connect(): the kernel then drops datagrams from anyone but the target.
    socket
        .connect(cfg.target)
        .map_err(|e| ProbeError::io(format!("connecting the probe socket to {}", cfg.target), e))?;

    let mut hist = new_histogram()?;
    let mut prober = Prober {
        socket: &socket,
        tx: vec![0u8; cfg.payload],
        // Larger than any valid reply, so an oversized one is seen as such.
        rx: vec![0u8; ProbeConfig::MAX_PAYLOAD + 1],
        timeout: cfg.timeout,
        stray: 0,
    };
    let (mut sent, mut lost) = (0u64, 0u64);
    let total = cfg.warmup.saturating_add(cfg.count);
    let interval_ns = cfg.interval.as_nanos();
    let t0 = Instant::now();
    let mut slot: u128 = 0;
    for seq in 0..total {
        let due = t0 + Duration::from_nanos(u64::try_from(interval_ns * slot).unwrap_or(u64::MAX));
        if !sleep_until(due, stop) {
            break;
        }
        let warmup = seq < cfg.warmup;
        let outcome = prober.one(seq)?;
        if !warmup {
            sent += 1;
            match outcome {
                ProbeOutcome::Reply(rtt) => {
                    let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
                    hist.saturating_record(ns.max(HIST_LOW_NS));
                }
                ProbeOutcome::Lost => lost += 1,
            }
        }
        progress(&ProbeProgress {
            seq,
            warmup,
            outcome,
        });
        slot += 1;
        // Fell behind by whole slots (a slow reply, a timeout): skip them rather than send a
        // burst; the next probe goes out at once and the grid stays where it was.
        if let Some(behind) = t0.elapsed().as_nanos().checked_div(interval_ns) {
            slot = slot.max(behind);
        }
    }
    Ok(RttReport::from_histogram(&hist, sent, lost, prober.stray))
}

/// The probe socket and its buffers.
struct Prober<'a> {
    socket: &'a UdpSocket,
    tx: Vec<u8>,
    rx: Vec<u8>,
    timeout: Duration,
    stray: u64,
}

impl Prober<'_> {
    /// Sends probe `seq` and waits for its reply.
    fn one(&mut self, seq: u64) -> Result<ProbeOutcome, ProbeError> {
        if let Some(h) = self.tx.get_mut(..HEADER_LEN) {
            h[..4].copy_from_slice(&MAGIC.to_be_bytes());
            h[4..].copy_from_slice(&seq.to_be_bytes());
        }
        // Set before taking the timestamp, so the syscall is not part of the round trip.
        self.set_timeout(self.timeout)?;
        let mut sent_at = Instant::now();
        if let Err(e) = self.socket.send(&self.tx) {
            if !is_transient(&e) {
                return Err(ProbeError::io("sending a probe", e));
            }
            // Often a pending ICMP error about an earlier probe, reported (and cleared) by this
            // send; one retry tells that apart from a path that is down right now.
            sent_at = Instant::now();
            match self.socket.send(&self.tx) {
                Ok(_) => {}
                Err(e) if is_transient(&e) => return Ok(ProbeOutcome::Lost),
                Err(e) => return Err(ProbeError::io("sending a probe", e)),
            }
        }
        let deadline = sent_at + self.timeout;
        loop {
            match self.socket.recv(&mut self.rx) {
                Ok(n) => {
                    let at = Instant::now();
                    if self.rx.get(..n) == Some(&self.tx[..]) {
                        return Ok(ProbeOutcome::Reply(at - sent_at));
                    }
                    self.stray += 1;
                }
                Err(e) if is_timeout(&e) => return Ok(ProbeOutcome::Lost),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The network said this probe cannot be delivered: it is lost, and waiting out
                // the timeout would only delay the schedule.
                Err(e) if is_transient(&e) => return Ok(ProbeOutcome::Lost),
                Err(e) => return Err(ProbeError::io("receiving a reply", e)),
            }
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => self.set_timeout(left)?,
                _ => return Ok(ProbeOutcome::Lost),
            }
        }
    }

    fn set_timeout(&self, t: Duration) -> Result<(), ProbeError> {
        self.socket
            .set_read_timeout(Some(t))
            .map_err(|e| ProbeError::io("setting the probe read timeout", e))
    }
}

/// Sleeps until `due` in slices short enough to notice `stop`; false if stopped.
fn sleep_until(due: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match due.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => std::thread::sleep(left.min(STOP_POLL)),
            _ => return true,
        }
    }
}

/// A read timeout expired (Linux reports EAGAIN for SO_RCVTIMEO).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Errors that say "this datagram did not get through", which a probe records as a loss
/// instead of giving up: ICMP unreachable reports, a missing route during a failover, a full
/// queue.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::ENOBUFS
                | libc::EPERM // a firewall rule dropping the probe
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values_ns: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram().unwrap();
        for &v in values_ns {
            h.record(v).unwrap();
        }
        h
    }

    fn assert_monotone(curve: &[(f64, f64)]) {
        for w in curve.windows(2) {
            assert!(w[0].0 < w[1].0, "percentiles not increasing: {w:?}");
            assert!(w[0].1 <= w[1].1, "values decreasing: {w:?}");
        }
        for &(p, _) in curve {
            assert!((0.0..=100.0).contains(&p), "percentile {p} out of range");
        }
    }

    #[test]
    fn report_of_uniform_values() {
        // 1..=1000 µs, one each.
        let values: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
        let r = RttReport::from_histogram(&hist_of(&values), 1000, 0, 0);
        assert_eq!(r.received, 1000);
        // 3 significant figures: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(r.min_us, 1.0), "{}", r.min_us);
        assert!(close(r.p50_us, 500.0), "{}", r.p50_us);
        assert!(close(r.p90_us, 900.0), "{}", r.p90_us);
        assert!(close(r.p99_us, 990.0), "{}", r.p99_us);
        assert!(close(r.p999_us, 999.0), "{}", r.p999_us);
        assert!(close(r.max_us, 1000.0), "{}", r.max_us);
        assert!(close(r.mean_us, 500.5), "{}", r.mean_us);
        assert!(r.min_us <= r.p50_us && r.p50_us <= r.p90_us && r.p90_us <= r.p99_us);
        assert!(r.p99_us <= r.p999_us && r.p999_us <= r.max_us);
    }

    #[test]
    fn curve_spans_min_to_max_and_is_monotone() {
        let values: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
        let h = hist_of(&values);
        let c = curve(&h);
        assert!(c.len() >= 20, "too few points: {}", c.len());
        assert!(c.len() <= CURVE_MAX_POINTS);
        assert_monotone(&c);
        let first = c.first().unwrap();
        let last = c.last().unwrap();
        assert_eq!(first.0, 0.0);
        assert!((first.1 - 1.0).abs() < 0.01, "{first:?}");
        assert_eq!(last.0, 100.0);
        assert_eq!(last.1, ns_to_us(h.max()));
        // The 50th-percentile point carries the median.
        let mid = c.iter().find(|p| p.0 == 50.0).unwrap();
        assert!((mid.1 - 500.0).abs() <= 0.5, "{mid:?}");
    }

    #[test]
    fn curve_of_constant_values_is_two_points() {
        let h = hist_of(&[42_000; 500]);
        let c = curve(&h);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].0, 0.0);
        assert_eq!(c[1].0, 100.0);
        assert!((c[0].1 - 42.0).abs() < 0.05 && c[0].1 == c[1].1, "{c:?}");
    }

    #[test]
    fn curve_is_capped() {
        let values: Vec<u64> = (1..=100_000).map(|ns| ns * 97).collect();
        let h = hist_of(&values);
        let full = curve(&h);
        assert!(full.len() > 30, "{}", full.len());
        let capped = curve_capped(&h, 12);
        assert_eq!(capped.len(), 12);
        assert_monotone(&capped);
        assert_eq!(capped.first(), full.first());
        assert_eq!(capped.last(), full.last());
        assert!(capped.iter().all(|p| full.contains(p)));
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let r = RttReport::from_histogram(&new_histogram().unwrap(), 5, 5, 1);
        assert_eq!((r.sent, r.received, r.lost, r.stray), (5, 0, 5, 1));
        assert_eq!(r.p50_us, 0.0);
        assert_eq!(r.max_us, 0.0);
        assert!(r.curve.is_empty());
        // Serializable (no NaN) and round-trips.
        let back: RttReport = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn collapse_and_thin_helpers() {
        let pts = vec![
            (0.0, 1.0),
            (10.0, 1.0),
            (20.0, 1.0),
            (30.0, 2.0),
            (40.0, 3.0),
        ];
        assert_eq!(
            collapse_flat_runs(pts),
            vec![(0.0, 1.0), (20.0, 1.0), (30.0, 2.0), (40.0, 3.0)]
        );
        let many: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64 / 10.0, i as f64)).collect();
        let t = thin(many, 10);
        assert_eq!(t.len(), 10);
        assert_eq!(t[0], (0.0, 0.0));
        assert_eq!(t[9], (99.9, 999.0));
    }

    #[test]
    fn config_validation() {
        let target: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert!(ProbeConfig::new(target).validate().is_ok());
        let bad = [
            ProbeConfig {
                payload: 15,
                ..ProbeConfig::new(target)
            },
            ProbeConfig {
                payload: 2049,
                ..ProbeConfig::new(target)
            },
            ProbeConfig {
                count: 0,
                ..ProbeConfig::new(target)
            },
            ProbeConfig {
                timeout: Duration::ZERO,
                ..ProbeConfig::new(target)
            },
            ProbeConfig {
                timeout: Duration::from_secs(11),
                ..ProbeConfig::new(target)
            },
            ProbeConfig::new("127.0.0.1:0".parse().unwrap()),
        ];
        for cfg in bad {
            assert!(
                matches!(cfg.validate(), Err(ProbeError::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn echo_answers_any_size_and_stops() {
        let server = EchoServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| server.serve(&stop));
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.connect(addr).unwrap();
            let mut buf = vec![0u8; 4096];
            for size in [0usize, 1, 11, 12, 2048, 3000] {
                let msg: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
                c.send(&msg).unwrap();
                let n = c.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &msg[..], "size {size}");
            }
            let t = Instant::now();
            stop.store(true, Ordering::Relaxed);
            let stats = h.join().unwrap().unwrap();
            assert!(t.elapsed() < Duration::from_millis(500));
            assert_eq!(stats.received, 6);
            assert_eq!(stats.echoed, 6);
            assert_eq!(stats.bytes, (1 + 11 + 12 + 2048 + 3000) as u64);
        });
    }

    #[test]
    fn strays_are_counted_and_skipped() {
        // A fake echo that first sends garbage and a stale sequence number, then the reply.
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let target = srv.local_addr().unwrap();
        let cfg = ProbeConfig {
            count: 3,
            warmup: 0,
            interval: Duration::from_millis(1),
            timeout: Duration::from_secs(2),
            ..ProbeConfig::new(target)
        };
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = [0u8; 64];
                for _ in 0..3 {
                    let (n, peer) = srv.recv_from(&mut buf).unwrap();
                    srv.send_to(b"garbage that is not a probe", peer).unwrap();
                    let mut stale = buf[..n].to_vec();
                    stale[4..12].copy_from_slice(&u64::MAX.to_be_bytes());
                    srv.send_to(&stale, peer).unwrap();
                    srv.send_to(&buf[..n], peer).unwrap();
                }
            });
            let mut seen = Vec::new();
            let r = probe(&cfg, &stop, |p| seen.push(*p)).unwrap();
            assert_eq!((r.sent, r.received, r.lost, r.stray), (3, 3, 0, 6), "{r:?}");
            assert_eq!(seen.len(), 3);
            assert!(
                seen.iter()
                    .all(|p| matches!(p.outcome, ProbeOutcome::Reply(_)))
            );
        });
    }

    #[test]
    fn stop_ends_a_probe_run_early() {
        let stop = AtomicBool::new(true);
        let cfg = ProbeConfig {
            count: 1_000_000,
            ..ProbeConfig::new("127.0.0.1:9".parse().unwrap())
        };
        let r = probe(&cfg, &stop, |_| {}).unwrap();
        assert_eq!(r.sent, 0);
    }
}
