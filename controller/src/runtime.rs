//! The daemon: one event loop around a [`Node`].
//!
//! The loop sleeps in `ppoll(2)` with a nanosecond timeout until the next deadline (heartbeat,
//! peer detection, hold-down, switchover, announcement round), a heartbeat arrives, the link
//! watcher reports a change, or another thread wakes it (health verdicts, control requests,
//! signals). Nothing it does blocks for long: VIP changes and announcements are single netlink
//! and packet-socket calls; health checks, hooks and control clients run on their own threads.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{SocketAddr, UdpSocket},
    os::{
        fd::{AsRawFd, FromRawFd, RawFd},
        unix::net::UnixDatagram,
    },
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, unbounded};
use ovl_netlink::{LinkWatcher, Netlink};

use crate::{
    actions::{Announcer, VipManager},
    auth::Key,
    config::Config,
    control::{self, ControlMsg, DrainView, Request, Response, Status, TransitionRecord},
    fsm::{Action, Event, FsmConfig, Nanos, State, SwitchoverError},
    health::{self, DrainWish, HealthReport, PeriodicChecks},
    hooks::{HookJob, HookRunner},
    node::{Node, NodeConfig, node_id},
};

/// Transitions kept for the status.
const HISTORY: usize = 32;
/// Id of the switchover started by a graceful shutdown.
const SHUTDOWN_SWITCHOVER: u64 = 0;
/// Waking this much after a deadline is logged.
const LATE_WARNING: Nanos = 5 * crate::fsm::MS;
/// Links are re-checked at least this often even without watcher events.
const LINK_RECHECK: Duration = Duration::from_millis(500);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The key.
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
    /// The control socket.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// Netlink at start.
    #[error("netlink: {0}")]
    Netlink(#[from] ovl_netlink::NetlinkError),
    /// Announcements.
    #[error(transparent)]
    Action(#[from] crate::actions::ActionError),
    /// Other system calls.
    #[error("{context}: {error}")]
    Io {
        /// What was done.
        context: String,
        /// The error.
        error: io::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let context = context.into();
    move |error| RunError::Io { context, error }
}

/// Wall-clock nanoseconds now.
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Wakes the event loop from another thread (or a signal handler, through signal-hook).
#[derive(Clone, Debug)]
pub struct Waker(Arc<UnixDatagram>);

impl Waker {
    /// Wakes the loop; a wake already pending is enough, so a full buffer is fine.
    pub fn wake(&self) {
        let _ = self.0.send(&[1]);
    }
}

/// The heartbeat socket: UDP bound to our underlay address, non-blocking, with the DSCP set,
/// and IP_FREEBIND so it can start before the address is configured.
fn heartbeat_socket(local: SocketAddr, dscp: u8) -> Result<UdpSocket, RunError> {
    let ctx = |what: &str| format!("heartbeat socket {local}: {what}");
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io_ctx(ctx("socket"))(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that the UdpSocket now owns.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let tos = libc::c_int::from(dscp) << 2;
    let (level, opt) = if local.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_TOS)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    };
    // Best effort: a missing DSCP or priority does not stop heartbeats.
    let _ = setsockopt_int(fd, level, opt, tos);
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY, 6);
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)
        .map_err(io_ctx(ctx("IP_FREEBIND")))?;
    let (storage, len) = sockaddr(local);
    // SAFETY: storage holds a sockaddr of `len` bytes for this family.
    let rc = unsafe { libc::bind(fd, (&raw const storage).cast(), len) };
    if rc != 0 {
        return Err(io_ctx(ctx("bind"))(io::Error::last_os_error()));
    }
    Ok(sock)
}

fn setsockopt_int(fd: RawFd, level: i32, opt: i32, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
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
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no timeout). Returns the
/// readable flags.
fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: pfds is a valid array of its length; tsp is null or points at a live timespec.
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
        .collect())
}

/// A switchover request waiting for the state machine.
struct PendingSwitchover {
    reply: crossbeam_channel::Sender<Response>,
    started: Instant,
    was_active: bool,
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), RunError> {
    let key = Key::load(&config.heartbeat.key_file)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (wake_rx, wake_tx) = UnixDatagram::pair().map_err(io_ctx("socketpair"))?;
    wake_rx
        .set_nonblocking(true)
        .map_err(io_ctx("wake socket"))?;
    wake_tx
        .set_nonblocking(true)
        .map_err(io_ctx("wake socket"))?;
    let waker = Waker(Arc::new(wake_tx));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(io_ctx("signal handler"))?;
        let w = waker.0.try_clone().map_err(io_ctx("wake socket"))?;
        signal_hook::low_level::pipe::register(sig, w).map_err(io_ctx("signal handler"))?;
    }
    let mut d = Daemon::new(config, key, waker, stop.clone())?;
    let result = d.run(&wake_rx);
    stop.store(true, Ordering::Relaxed);
    d.finish();
    result
}

/// Sends the controller's drain wishes to the data plane off the event loop: each new one at
/// once (unless the loop already did), the last one again every second.
fn drain_thread(
    socket: &std::path::Path,
    wishes: &Receiver<(DrainWish, bool)>,
    answers: &crossbeam_channel::Sender<Result<health::DrainAnswer, String>>,
    waker: &Waker,
    stop: &AtomicBool,
) {
    let mut last: Option<DrainWish> = None;
    let mut sent = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Short waits, so a stopping controller is not held up.
        let send = match wishes.recv_timeout(Duration::from_millis(100)) {
            Ok((mut w, _)) => {
                // Only the newest wish matters. It is sent even when the event loop sent it
                // already: a request of ours to an older wish may have crossed it, and the
                // data plane applies them in order of arrival.
                while let Ok((w2, _)) = wishes.try_recv() {
                    w = w2;
                }
                last = Some(w);
                true
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                sent.elapsed() >= Duration::from_secs(1)
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        if let (true, Some(w)) = (send, &last) {
            sent = Instant::now();
            let r = health::request_drain(socket, w, Duration::from_millis(500));
            if answers.send(r).is_err() {
                return;
            }
            waker.wake();
        }
    }
}

struct Daemon {
    cfg: Config,
    node: Node,
    nl: Netlink,
    udp: UdpSocket,
    peer: SocketAddr,
    vip: VipManager,
    announcer: Announcer,
    watcher: Option<LinkWatcher>,
    hooks: Option<HookRunner>,
    control_rx: Receiver<ControlMsg>,
    health_rx: Receiver<HealthReport>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    start: Instant,
    realtime_origin: u64,
    history: VecDeque<TransitionRecord>,
    pending: HashMap<u64, PendingSwitchover>,
    next_id: u64,
    link_ok: Result<(), String>,
    periodic_ok: (bool, String),
    healthy: bool,
    next_link_check: Nanos,
    send_failing: bool,
    stopping: Option<Nanos>,
    /// Draining: what the data plane was last asked, what it last answered, and the drain
    /// thread (wishes in; `true`: send it now; answers back).
    drain_wish: Option<DrainWish>,
    drain_view: DrainView,
    drain_tx: Option<crossbeam_channel::Sender<(DrainWish, bool)>>,
    drain_rx: Receiver<Result<health::DrainAnswer, String>>,
    /// Next poll of the connections left on the VIP (draining with `drain_end = "keep"`).
    next_drain_poll: Nanos,
    /// What became of real-time scheduling for this (the heartbeat) thread.
    realtime: crate::rt::RtOutcome,
}

impl Daemon {
    fn new(cfg: Config, key: Key, waker: Waker, stop: Arc<AtomicBool>) -> Result<Daemon, RunError> {
        let start = Instant::now();
        let epoch = realtime_ns();
        let realtime_origin = epoch;
        let nl = Netlink::open()?;
        nl.set_timeout(Duration::from_millis(500))?;
        let vips = cfg.vips();
        let vip = VipManager::new(&cfg.vip.interface, vips.clone());
        let announcer = Announcer::new(
            &cfg.vip.interface,
            vips,
            cfg.vip.garp_count,
            cfg.garp_interval(),
        )?;
        let udp = heartbeat_socket(cfg.local_addr(), cfg.heartbeat.dscp)?;
        let watcher = match LinkWatcher::open() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no link watcher; links are polled every {LINK_RECHECK:?}");
                None
            }
        };
        let hooks = HookRunner::new(
            cfg.hooks.notify.clone(),
            Duration::from_millis(cfg.hooks.timeout_ms),
        )
        .map_err(io_ctx("hook thread"))?;

        let node = Node::new(
            NodeConfig {
                fsm: FsmConfig {
                    wall_origin_us: realtime_origin / 1000,
                    ..cfg.fsm_config()
                },
                node_id: node_id(&cfg.node.name),
                epoch,
            },
            key,
        );

        let mut threads = Vec::new();
        let listener = control::bind(&cfg.control.socket)?;
        let (control_tx, control_rx) = unbounded();
        let w = waker.clone();
        let answer_timeout =
            Duration::from_millis(cfg.switchover.timeout_ms + cfg.switchover.linger_ms)
                + Duration::from_secs(2);
        threads.push(
            control::spawn_server(
                listener,
                cfg.control.socket.clone(),
                control_tx,
                move || w.wake(),
                answer_timeout,
                stop.clone(),
            )
            .map_err(io_ctx("control thread"))?,
        );

        // The first verdict of the periodic checks is taken here, before Start.
        let checks = PeriodicChecks::from_config(&cfg.health);
        let first = if checks.is_empty() {
            Ok(())
        } else {
            checks.run()
        };
        let periodic_ok = (first.is_ok(), first.err().unwrap_or_default());
        let (health_tx, health_rx) = unbounded();
        if !checks.is_empty() {
            let w = waker.clone();
            threads.push(
                health::spawn_periodic(
                    checks,
                    Duration::from_millis(cfg.health.interval_ms),
                    cfg.health.fall,
                    cfg.health.rise,
                    periodic_ok.0,
                    stop.clone(),
                    move |r| {
                        let _ = health_tx.send(r);
                        w.wake();
                    },
                )
                .map_err(io_ctx("health thread"))?,
            );
        }

        let (answer_tx, drain_rx) = unbounded();
        let drain_tx = match (&cfg.health.dataplane_socket, cfg.drains()) {
            (Some(socket), true) => {
                let (tx, rx) = unbounded::<(DrainWish, bool)>();
                let socket = socket.clone();
                let w = waker.clone();
                let stop = stop.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("drain".into())
                        .spawn(move || drain_thread(&socket, &rx, &answer_tx, &w, &stop))
                        .map_err(io_ctx("drain thread"))?,
                );
                Some(tx)
            }
            _ => None,
        };
        let peer = cfg.peer_addr();
        Ok(Daemon {
            cfg,
            node,
            nl,
            udp,
            peer,
            vip,
            announcer,
            watcher,
            hooks: Some(hooks),
            control_rx,
            health_rx,
            threads,
            stop,
            start,
            realtime_origin,
            history: VecDeque::new(),
            pending: HashMap::new(),
            next_id: SHUTDOWN_SWITCHOVER + 1,
            link_ok: Ok(()),
            periodic_ok,
            healthy: false,
            next_link_check: 0,
            send_failing: false,
            stopping: None,
            drain_wish: None,
            drain_view: DrainView::default(),
            drain_tx,
            drain_rx,
            next_drain_poll: 0,
            realtime: crate::rt::RtOutcome::off(),
        })
    }

    fn now(&self) -> Nanos {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn run(&mut self, wake_rx: &UnixDatagram) -> Result<(), RunError> {
        // This thread sends and receives the heartbeats: it must wake on time under load and
        // never wait for a page. Threads started later are ordinary (reset on fork).
        self.realtime = crate::rt::enter_realtime(self.cfg.heartbeat.realtime_priority);
        match self.realtime.warning() {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!(realtime = %self.realtime, "heartbeat thread scheduling"),
        }
        tracing::info!(
            node = %self.cfg.node.name,
            priority = self.cfg.node.priority,
            local = %self.cfg.local_addr(),
            peer = %self.peer,
            epoch = self.node.epoch(),
            "controller starting"
        );
        // A VIP left behind by a previous run that died while active must go: the peer may
        // own it now.
        if let Err(e) = self.vip.remove(&self.nl, &mut self.node.counters) {
            tracing::warn!(error = %e, "removing leftover VIPs");
        }
        let now = self.now();
        self.check_links(now);
        let (healthy, reason) = self.verdict();
        self.healthy = healthy;
        if !healthy {
            self.node.counters.health_failures += 1;
        }
        let actions = self.node.handle(Event::Start { healthy, reason }, now);
        self.execute(actions);

        let mut buf = [0u8; 2048];
        loop {
            let now = self.now();
            let deadline = [
                self.node.next_deadline(),
                self.announcer.next_deadline(),
                self.stopping,
            ]
            .into_iter()
            .flatten()
            .fold(self.next_link_check, Nanos::min);
            let timeout = Duration::from_nanos(deadline.saturating_sub(now));
            let mut fds = vec![self.udp.as_raw_fd(), wake_rx.as_raw_fd()];
            if let Some(w) = &self.watcher {
                fds.push(w.fd());
            }
            let ready = wait_readable(&fds, Some(timeout)).map_err(io_ctx("ppoll"))?;
            let woke = self.now();
            if woke.saturating_sub(deadline) > LATE_WARNING {
                let late = woke - deadline;
                self.node.counters.late_wakeups += 1;
                let detect = self.node.fsm().detection_time();
                if late > detect {
                    // Frozen (live migration, a stopped process) or starved past the detection
                    // time: the peer may have taken over meanwhile.
                    let c = &mut self.node.counters;
                    c.stalls += 1;
                    c.longest_stall_ms = c.longest_stall_ms.max(late / crate::fsm::MS);
                    tracing::warn!(
                        "not scheduled for {} ms (longer than the {} ms detection time): \
                         asserting nothing until the peer is heard again",
                        late / crate::fsm::MS,
                        detect / crate::fsm::MS
                    );
                } else {
                    // Timers fire late when the host starves us of CPU; detection times
                    // stretch by as much, so say so.
                    tracing::warn!(
                        late_ms = late as f64 / 1e6,
                        "event loop woke late (CPU starvation?)"
                    );
                }
                // Before anything else is judged: our own stall is not the peer's silence.
                let actions = self.node.handle(Event::Stalled { late }, woke);
                self.execute(actions);
            }

            if ready[0] {
                loop {
                    match self.udp.recv_from(&mut buf) {
                        Ok((n, _from)) => {
                            let now = self.now();
                            let actions = self.node.receive(&buf[..n], now);
                            self.execute(actions);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // ICMP errors from earlier sends surface here; they say nothing new.
                        Err(_) => break,
                    }
                }
            }
            let mut relink = false;
            if ready.get(2).copied().unwrap_or(false)
                && let Some(w) = &mut self.watcher
            {
                // Drain; any change means "look again".
                match w.wait_events(Duration::ZERO) {
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "link watcher"),
                }
                relink = true;
            }
            if ready[1] {
                let mut b = [0u8; 64];
                while wake_rx.recv(&mut b).is_ok() {}
            }
            while let Ok(r) = self.health_rx.try_recv() {
                if !r.healthy {
                    tracing::warn!(reason = %r.reason, "periodic health check failing");
                }
                self.periodic_ok = (r.healthy, r.reason);
                relink = true;
            }
            while let Ok(msg) = self.control_rx.try_recv() {
                self.control(msg);
            }
            while let Ok(r) = self.drain_rx.try_recv() {
                self.on_drain_answer(r);
            }

            let now = self.now();
            if relink || now >= self.next_link_check {
                self.check_links(now);
                self.update_health(now);
            }
            if self.node.next_deadline().is_some_and(|d| now >= d) {
                let actions = self.node.handle(Event::Timer, now);
                self.execute(actions);
            }
            if self.node.fsm().draining()
                && self.cfg.switchover.drain_end == crate::config::DrainEnd::Keep
                && now >= self.next_drain_poll
            {
                self.next_drain_poll = now + 200 * crate::fsm::MS;
                let open = u32::try_from(self.drain_connections()).unwrap_or(u32::MAX);
                let actions = self.node.handle(Event::DrainConnections { open }, now);
                self.execute(actions);
            } else {
                // The wish also changes with time (the peer's silence).
                self.sync_drain();
            }
            if let Err(e) = self.announcer.poll(now, &self.nl, &mut self.node.counters) {
                tracing::warn!(error = %e, "announcement");
            }

            if self.stop.load(Ordering::Relaxed) && self.begin_stop(now) {
                break;
            }
            if self.stopping.is_some_and(|d| now >= d) {
                tracing::warn!("graceful hand-over did not finish in time");
                break;
            }
            if self.stopping.is_some() && !self.pending.contains_key(&SHUTDOWN_SWITCHOVER) {
                break;
            }
        }
        let now = self.now();
        let actions = self.node.handle(Event::Shutdown, now);
        self.execute(actions);
        tracing::info!("controller stopped");
        Ok(())
    }

    /// First stop request: hand the VIP over gracefully if we are active and the peer can
    /// take it; returns true to stop at once.
    fn begin_stop(&mut self, now: Nanos) -> bool {
        if self.stopping.is_some() {
            // A second signal while handing over: stop now.
            return true;
        }
        let st = self.node.fsm().status(now);
        let peer_ready = st
            .peer
            .as_ref()
            .is_some_and(|p| p.alive && p.state == State::Backup);
        if st.state != State::Active || !peer_ready {
            tracing::info!(
                state = %st.state,
                peer = ?st.peer.as_ref().map(|p| (p.state, p.alive)),
                "stopping without hand-over"
            );
            return true;
        }
        tracing::info!("stopping: handing the VIP to the peer first");
        let (tx, _rx) = crossbeam_channel::bounded(1);
        self.pending.insert(
            SHUTDOWN_SWITCHOVER,
            PendingSwitchover {
                reply: tx,
                started: Instant::now(),
                was_active: true,
            },
        );
        let limit = self.cfg.switchover.timeout_ms + self.cfg.switchover.linger_ms + 100;
        self.stopping = Some(now + limit * crate::fsm::MS);
        self.stop.store(false, Ordering::Relaxed);
        let actions = self.node.handle(
            Event::Switchover {
                id: SHUTDOWN_SWITCHOVER,
            },
            now,
        );
        self.execute(actions);
        false
    }

    fn check_links(&mut self, now: Nanos) {
        self.next_link_check = now + u64::try_from(LINK_RECHECK.as_nanos()).unwrap_or(u64::MAX);
        self.link_ok = health::check_links(
            &self.nl,
            &self.cfg.health.underlays(),
            &self.cfg.vip.interface,
        );
    }

    fn verdict(&self) -> (bool, String) {
        match (&self.link_ok, &self.periodic_ok) {
            (Err(e), _) => (false, e.clone()),
            (Ok(()), (false, why)) => (false, why.clone()),
            (Ok(()), (true, _)) => (true, String::new()),
        }
    }

    fn update_health(&mut self, now: Nanos) {
        let (healthy, reason) = self.verdict();
        if healthy == self.healthy {
            return;
        }
        self.healthy = healthy;
        if healthy {
            tracing::info!("health checks pass");
        } else {
            self.node.counters.health_failures += 1;
            tracing::warn!(%reason, "health check failed");
        }
        let actions = self.node.handle(Event::Health { healthy, reason }, now);
        self.execute(actions);
    }

    fn control(&mut self, msg: ControlMsg) {
        match msg.request {
            Request::Status => {
                let status = self.status();
                let _ = msg.reply.try_send(Response::Status(Box::new(status)));
            }
            Request::Switchover => {
                let id = self.next_id;
                self.next_id += 1;
                let was_active = self.node.fsm().state() == State::Active;
                self.pending.insert(
                    id,
                    PendingSwitchover {
                        reply: msg.reply,
                        started: Instant::now(),
                        was_active,
                    },
                );
                tracing::info!(id, "switchover requested");
                let now = self.now();
                let actions = self.node.handle(Event::Switchover { id }, now);
                self.execute(actions);
            }
        }
    }

    fn status(&self) -> Status {
        let now = self.now();
        let mut counters = self.node.counters.clone();
        if let Some(h) = &self.hooks {
            counters.hooks_run = h.stats().run.load(Ordering::Relaxed);
            counters.hooks_failed = h.stats().failed.load(Ordering::Relaxed);
        }
        Status {
            node: self.cfg.node.name.clone(),
            epoch: self.node.epoch(),
            uptime_ns: now,
            fsm: self.node.fsm().status(now),
            peer_address: self.peer.to_string(),
            peer_epoch: self.node.peer_epoch(),
            vips: self.vip.vips().iter().map(ToString::to_string).collect(),
            vips_present: self
                .vip
                .present(&self.nl)
                .map(|v| v.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            counters,
            transitions: self.history.iter().cloned().collect(),
            drain: self.drain_view.clone(),
            realtime: self.realtime.clone(),
        }
    }

    /// Tells the data plane what to do with TCP to the VIPs when that changed. Only the new
    /// owner's start of forwarding is sent from here and waited for (before the VIP moves and
    /// the announcement goes out, so no segment finds the new owner unready; the data plane
    /// answers in well under a millisecond); everything else goes through the drain thread,
    /// which also repeats the last wish every second (level-triggered: a restarted data plane
    /// catches up), so the event loop never waits on it.
    fn sync_drain(&mut self) {
        let Some(socket) = self.cfg.health.dataplane_socket.clone() else {
            return;
        };
        let Some(thread_tx) = self.drain_tx.clone() else {
            return;
        };
        let now = self.now();
        let fsm = self.node.fsm();
        let wish = DrainWish {
            vips: self.vip.vips().iter().map(|v| v.addr).collect(),
            forward_to: fsm.drain_forward(now).then(|| self.cfg.drain_peer()),
            accept: fsm.vip_local(),
            interface: Some(self.cfg.vip.interface.clone()),
        };
        if self.drain_wish.as_ref() == Some(&wish) {
            return;
        }
        let was_forwarding = self
            .drain_wish
            .as_ref()
            .is_some_and(|w| w.forward_to.is_some());
        match (was_forwarding, wish.forward_to) {
            (false, Some(to)) => tracing::info!(
                peer_vtep = %to,
                "drain: TCP segments to the VIP with no socket here go to the peer"
            ),
            (true, None) => tracing::info!(
                flows = self.drain_view.flows,
                "drain: forwarding to the peer ended: {} connections sent on",
                self.drain_view.flows
            ),
            _ => {}
        }
        let critical = !was_forwarding
            && wish.forward_to.is_some()
            && fsm.state() == State::Active
            && fsm.vip_held();
        if critical {
            let r = health::request_drain(&socket, &wish, Duration::from_millis(10));
            self.on_drain_answer(r);
        }
        self.drain_wish = Some(wish.clone());
        let _ = thread_tx.send((wish, !critical));
    }

    /// The data plane's answer to a drain request (from here or the drain thread).
    fn on_drain_answer(&mut self, r: Result<health::DrainAnswer, String>) {
        match r {
            Ok(a) => {
                if !a.warning.is_empty() && a.warning != self.drain_view.problem {
                    tracing::warn!("drain: {}", a.warning);
                }
                self.drain_view = DrainView {
                    flows: a.flows,
                    tx_drained: a.tx_drained,
                    rx_drained: a.rx_drained,
                    rx_drain_unsent: a.rx_drain_unsent,
                    problem: a.warning,
                };
            }
            Err(e) => {
                self.node.counters.drain_errors += 1;
                if self.drain_view.problem != e {
                    tracing::warn!(error = %e, "drain request (retried every second)");
                }
                self.drain_view.problem = e;
            }
        }
    }

    /// Live TCP connections on the VIPs (draining); 0 if they cannot be read.
    fn drain_connections(&self) -> usize {
        let vips: Vec<_> = self.vip.vips().iter().map(|v| v.addr).collect();
        ovl_netlink::sock_diag::tcp_connections(&vips).map_or(0, |c| c.len())
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut drain_synced = false;
        for a in actions {
            // Before the VIP moves or is announced: see `sync_drain`.
            if !drain_synced
                && matches!(
                    a,
                    Action::AddVip | Action::Announce | Action::HandOffVip | Action::RemoveVip
                )
            {
                self.sync_drain();
                drain_synced = true;
            }
            match a {
                Action::SendHeartbeat(adv) => {
                    let wire = self.node.seal(&adv);
                    match self.udp.send_to(&wire, self.peer) {
                        Ok(_) => self.send_failing = false,
                        Err(e) => {
                            self.node.counters.hb_send_errors += 1;
                            if !self.send_failing {
                                tracing::warn!(error = %e, peer = %self.peer, "sending heartbeats fails");
                            }
                            self.send_failing = true;
                        }
                    }
                }
                Action::AddVip => {
                    if let Err(e) = self.vip.add(&self.nl, &mut self.node.counters) {
                        tracing::error!(error = %e, "adding the VIP");
                    }
                }
                Action::RemoveVip => {
                    self.announcer.stop();
                    if let Err(e) = self.vip.remove(&self.nl, &mut self.node.counters) {
                        tracing::error!(error = %e, "removing the VIP");
                    }
                }
                Action::HandOffVip => {
                    self.announcer.stop();
                    if let Err(e) = self.vip.hand_off(&self.nl, &mut self.node.counters) {
                        tracing::error!(error = %e, "handing the VIP over (to loopback)");
                    }
                    self.node.counters.drains += 1;
                    let open = self.drain_connections();
                    tracing::info!(
                        connections = open,
                        drain_ms = self.cfg.switchover.drain_ms,
                        "drain: VIP handed over; serving {open} established connections on loopback"
                    );
                }
                Action::EndDrain { reset } => {
                    let vips: Vec<_> = self.vip.vips().iter().map(|v| v.addr).collect();
                    let mut closed = 0;
                    if reset {
                        match ovl_netlink::sock_diag::destroy_all(&vips) {
                            Ok(n) => closed = n,
                            Err(e) => tracing::warn!(error = %e, "drain: resetting connections"),
                        }
                        self.node.counters.drain_resets += closed as u64;
                    }
                    if let Err(e) = self.vip.off_loopback(&self.nl) {
                        tracing::error!(error = %e, "drain: removing the VIP from loopback");
                    }
                    tracing::info!(reset = closed, "drain ended: {closed} connections reset");
                }
                Action::Announce => {
                    let now = self.now();
                    self.announcer.start(now, &mut self.node.counters);
                    if let Err(e) = self.announcer.poll(now, &self.nl, &mut self.node.counters) {
                        tracing::warn!(error = %e, "announcement");
                    }
                }
                Action::Transition(t) => {
                    let ts = self.realtime_origin.saturating_add(t.at);
                    tracing::info!(
                        ts_ns = ts,
                        node = %self.cfg.node.name,
                        from = %t.from,
                        to = %t.to,
                        cause = t.cause.code(),
                        "transition {} -> {}: {}",
                        t.from,
                        t.to,
                        t.cause
                    );
                    let record = TransitionRecord {
                        timestamp_ns: ts,
                        from: t.from,
                        to: t.to,
                        cause: t.cause.code().to_string(),
                        cause_text: t.cause.to_string(),
                    };
                    if self.history.len() == HISTORY {
                        self.history.pop_front();
                    }
                    self.history.push_back(record);
                    if let Some(h) = &self.hooks {
                        h.notify(HookJob {
                            state: t.to.as_str().into(),
                            prev_state: t.from.as_str().into(),
                            cause: t.cause.code().into(),
                            cause_text: t.cause.to_string(),
                            node: self.cfg.node.name.clone(),
                            timestamp_ns: u128::from(ts),
                        });
                    }
                }
                Action::SwitchoverDone { id, result } => self.switchover_done(id, result),
            }
        }
        if !drain_synced {
            self.sync_drain();
        }
    }

    fn switchover_done(&mut self, id: u64, result: Result<(), SwitchoverError>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let took = p.started.elapsed();
        let response = match result {
            Ok(()) => {
                let message = if p.was_active {
                    format!(
                        "VIP handed to the peer in {:.1} ms",
                        took.as_secs_f64() * 1e3
                    )
                } else {
                    format!(
                        "VIP taken over from the peer in {:.1} ms",
                        took.as_secs_f64() * 1e3
                    )
                };
                tracing::info!(id, "switchover done: {message}");
                Response::Done { message }
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "switchover failed");
                Response::Error {
                    message: format!("switchover failed: {e}"),
                }
            }
        };
        let _ = p.reply.try_send(response);
    }

    fn finish(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(h) = self.hooks.take() {
            h.finish();
        }
    }
}
