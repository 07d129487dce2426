//! The failover state machine: plain data and a pure step function.
//!
//! [`Fsm::step`] takes one [`Event`] and the current time and returns the [`Action`]s to carry
//! out. It does no I/O and never reads a clock, so the tests drive it with a simulated clock
//! and a simulated network. [`Fsm::next_deadline`] says when the caller must step it again with
//! [`Event::Timer`] if nothing else happens first.
//!
//! Rules, in short (the README has the long form):
//! - A healthy node starts in Backup and becomes Active when the peer is dead or faulty, when
//!   both are Backup and it outranks the peer (priority, then the tie-break key, i.e. the higher
//!   underlay address), when the active peer releases the VIP (planned switchover), or by
//!   preemption: strictly higher priority, `preempt` on, and in Backup without interruption for
//!   `hold_down` (so a node that lost Active, or whose links flap, does not take the VIP back
//!   faster than that). Failover to the only live node is never delayed by hold-down.
//! - Make before break: a node that takes over from a live active peer (switchover, release,
//!   preemption) becomes Active with the `takeover` flag; the peer yields when it hears it and
//!   keeps the VIP for `release_linger` more so no client loses its way while the gratuitous
//!   ARP travels.
//! - Dual-active (both Active without a takeover in progress, e.g. after a freeze, a partition
//!   or a link loss the owner did not notice): the newer owner keeps the VIP. Every heartbeat
//!   carries the sender's ownership term, taken on becoming Active as the larger of the wall
//!   clock and one more than any term heard (a hybrid logical clock: a takeover that saw the
//!   old owner's term always beats it; concurrent ones compare by wall time). Rank decides only
//!   equal terms. The winner announces the VIP again, since the loser's announcements may have
//!   moved clients. So an incident moves the VIP once: the member that took over keeps it.
//! - Start by listening: a starting node is silent for `startup` (at least a detection time):
//!   no heartbeats, no claim. A peer that held the VIP keeps it; one that was Backup takes over
//!   from the silent node, which then finds it Active and stays Backup.
//! - A node whose own loop stalled longer than the detection time asserts nothing on resume
//!   (no announcement, no decision on what it heard before) until it hears the peer again or
//!   another detection time passes.
//! - A node that yielded to a takeover does not preempt back until it has been Active again
//!   (otherwise a planned switchover away from the preferred node would undo itself).
//! - Unhealthy: Fault, VIP removed at once, heartbeats keep going so the peer takes over without
//!   waiting for the detection time.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Time in nanoseconds on a monotonic clock with an arbitrary origin.
pub type Nanos = u64;

/// One millisecond in [`Nanos`].
pub const MS: Nanos = 1_000_000;

/// The four states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started yet.
    Init,
    /// Healthy, not owning the VIP.
    Backup,
    /// Owning the VIP.
    Active,
    /// Unhealthy (or shutting down): no VIP, never takes over.
    Fault,
}

impl State {
    /// Lower-case name, as in logs, `STATE` and the status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Backup => "backup",
            State::Active => "active",
            State::Fault => "fault",
        }
    }

    /// The state's number in a heartbeat.
    pub const fn to_wire(self) -> u8 {
        match self {
            State::Init => 1,
            State::Backup => 2,
            State::Active => 3,
            State::Fault => 4,
        }
    }

    /// The state a heartbeat's number stands for.
    pub const fn from_wire(v: u8) -> Option<State> {
        match v {
            1 => Some(State::Init),
            2 => Some(State::Backup),
            3 => Some(State::Active),
            4 => Some(State::Fault),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flags a heartbeat carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags {
    /// The (active) sender asks the peer to take the VIP over: planned switchover.
    pub release: bool,
    /// The sender became Active while the peer was Active and expects the peer to yield.
    pub takeover: bool,
    /// The sender still has the VIP on its interface (true in Active, and in Backup while it
    /// lingers after yielding).
    pub vip_held: bool,
    /// The sender handed the VIP over in a planned move and still serves its established
    /// connections (the VIP on loopback, answering no ARP/ND): the new owner sends it the
    /// segments of connections it has no socket for.
    #[serde(default)]
    pub draining: bool,
}

/// What this node tells its peer in a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Our state.
    pub state: State,
    /// Our priority.
    pub priority: u8,
    /// Our flags.
    pub flags: Flags,
    /// Our ownership term (Active) or the highest term we know of (otherwise).
    pub term: u64,
}

/// An authenticated heartbeat from the peer, as the state machine sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAdvert {
    /// The peer's state.
    pub state: State,
    /// The peer's priority.
    pub priority: u8,
    /// The peer's flags.
    pub flags: Flags,
    /// The peer's term (see [`Advert::term`]).
    pub term: u64,
    /// The peer's heartbeat interval.
    pub interval: Nanos,
    /// False for a heartbeat that arrived out of order (older than one already seen): it proves
    /// the peer alive but its state is stale and is not used.
    pub fresh: bool,
    /// The peer restarted (new epoch).
    pub restarted: bool,
}

/// Why a transition happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// Started healthy.
    Startup,
    /// No heartbeat heard within the detection time after start.
    NoPeer,
    /// The peer's heartbeats stopped.
    PeerDead,
    /// The peer reports Fault (or has not started).
    PeerFault,
    /// Both Backup and this node outranks the peer.
    Election,
    /// Both Backup for a whole detection time and the higher-ranked peer did not take over.
    PeerIdle,
    /// The active peer released the VIP (planned switchover run on the peer).
    PeerReleased,
    /// Higher priority, preemption on, hold-down over.
    Preempt,
    /// A switchover was requested on this node.
    Switchover,
    /// The peer took the VIP over (switchover or preemption).
    PeerTookOver,
    /// Both were Active with the same term and the peer outranks this node.
    SplitBrain,
    /// Both were Active and the peer took over more recently (a higher ownership term).
    NewerOwner,
    /// A health check failed; the text says which.
    HealthFailed(String),
    /// Health checks pass again.
    HealthRecovered,
    /// The controller is stopping.
    Shutdown,
}

impl Cause {
    /// Short machine-readable name (the hooks' `CAUSE`).
    pub const fn code(&self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::NoPeer => "no-peer",
            Cause::PeerDead => "peer-dead",
            Cause::PeerFault => "peer-fault",
            Cause::Election => "election",
            Cause::PeerIdle => "peer-idle",
            Cause::PeerReleased => "peer-released",
            Cause::Preempt => "preempt",
            Cause::Switchover => "switchover",
            Cause::PeerTookOver => "peer-took-over",
            Cause::SplitBrain => "split-brain",
            Cause::NewerOwner => "newer-owner",
            Cause::HealthFailed(_) => "health-failed",
            Cause::HealthRecovered => "health-recovered",
            Cause::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Startup => f.write_str("started healthy"),
            Cause::NoPeer => f.write_str("no heartbeat from the peer since start"),
            Cause::PeerDead => f.write_str("peer's heartbeats stopped"),
            Cause::PeerFault => f.write_str("peer reports fault"),
            Cause::Election => f.write_str("both backup, this node outranks the peer"),
            Cause::PeerIdle => f.write_str("both backup and the peer did not take over"),
            Cause::PeerReleased => f.write_str("peer released the VIP (switchover)"),
            Cause::Preempt => f.write_str("preemption: higher priority, hold-down over"),
            Cause::Switchover => f.write_str("switchover requested here"),
            Cause::PeerTookOver => f.write_str("peer took the VIP over"),
            Cause::SplitBrain => f.write_str("both active, the peer outranks this node"),
            Cause::NewerOwner => f.write_str("both active, the peer took over more recently"),
            Cause::HealthFailed(why) => write!(f, "health check failed: {why}"),
            Cause::HealthRecovered => f.write_str("health checks pass again"),
            Cause::Shutdown => f.write_str("controller stopping"),
        }
    }
}

/// Why a switchover did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SwitchoverError {
    /// This node cannot take part in its current state.
    #[error("this node is in state {0}")]
    NotReady(State),
    /// The peer is dead or not able to take the VIP.
    #[error("the peer cannot take part: {0}")]
    PeerUnavailable(String),
    /// Another switchover is still running.
    #[error("a switchover is already in progress")]
    InProgress,
    /// The peer did not complete its side in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// Something else decided ownership first (fault, split-brain election, peer failure).
    #[error("aborted: {0}")]
    Aborted(String),
}

/// A state change, for logs, hooks and the status history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why.
    pub cause: Cause,
    /// When (monotonic).
    pub at: Nanos,
}

/// Inputs of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Leave Init; `healthy` is the first health verdict.
    Start {
        /// Health at start.
        healthy: bool,
        /// What failed, when unhealthy.
        reason: String,
    },
    /// Time passed (see [`Fsm::next_deadline`]).
    Timer,
    /// An authenticated, non-replayed heartbeat from the peer.
    Heartbeat(PeerAdvert),
    /// The local health verdict changed.
    Health {
        /// New verdict.
        healthy: bool,
        /// What failed, when unhealthy.
        reason: String,
    },
    /// Move the VIP to the other member; answered by [`Action::SwitchoverDone`] with this id.
    Switchover {
        /// Request id.
        id: u64,
    },
    /// Stop: go to Fault for good (VIP removed, the peer told at once).
    Shutdown,
    /// While draining with [`FsmConfig::drain_keep`]: how many connections on the VIP remain.
    DrainConnections {
        /// Live TCP connections with the VIP as local address.
        open: u32,
    },
    /// The caller's loop ran `late` past a deadline: the host starved it of CPU. The peer's
    /// silence over that time says nothing (on a shared host it was most likely stalled as
    /// well, and nothing could be read meanwhile), so its death is judged that much later.
    Stalled {
        /// How late the loop woke.
        late: Nanos,
    },
}

/// Outputs of the state machine, to be carried out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat with this content now.
    SendHeartbeat(Advert),
    /// Put the VIP(s) on the overlay interface.
    AddVip,
    /// Take the VIP(s) off the overlay interface (and off loopback, if draining put them
    /// there).
    RemoveVip,
    /// Planned hand-over: move the VIP(s) from the overlay interface to loopback, so
    /// established connections keep their local address while ARP/ND no longer answers for
    /// it (draining begins).
    HandOffVip,
    /// Draining is over: take the VIP(s) off loopback; with `reset`, abort the connections
    /// still open on them first (their clients get a RST and reconnect to the new owner).
    EndDrain {
        /// Abort what is still open.
        reset: bool,
    },
    /// Start a burst of gratuitous ARP / unsolicited NA for the VIP(s).
    Announce,
    /// The state changed.
    Transition(Transition),
    /// A switchover request finished.
    SwitchoverDone {
        /// The request's id.
        id: u64,
        /// Outcome.
        result: Result<(), SwitchoverError>,
    },
}

/// Parameters of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsmConfig {
    /// This node's priority (higher wins).
    pub priority: u8,
    /// Whether a higher-priority node takes the VIP from an active lower-priority peer.
    pub preempt: bool,
    /// Heartbeat interval.
    pub interval: Nanos,
    /// The peer is dead after this many intervals without a heartbeat.
    pub multiplier: u32,
    /// Minimum uninterrupted time in Backup before preempting.
    pub hold_down: Nanos,
    /// How long a switchover (or preemption) may wait for the peer.
    pub switchover_timeout: Nanos,
    /// How long a node that yielded keeps the VIP.
    pub release_linger: Nanos,
    /// This node's tie-break key for equal priorities (higher wins), e.g. its underlay address.
    pub tie_break: u128,
    /// How long a node that handed the VIP over in a planned move keeps serving established
    /// connections (0: no draining; the VIP is removed after the linger).
    pub drain: Nanos,
    /// At the end of `drain`, keep going while connections remain (instead of resetting
    /// them).
    pub drain_keep: bool,
    /// The peer's tie-break key.
    pub peer_tie_break: u128,
    /// Silent listening after start (0: none).
    pub startup: Nanos,
    /// The wall clock, in microseconds since the Unix epoch, at time 0 of the monotonic clock
    /// `step` is given: ownership terms are taken from it.
    pub wall_origin_us: u64,
}

impl FsmConfig {
    /// Detection time against a peer sending every `peer_interval` (0: unknown).
    pub fn detect_time(&self, peer_interval: Nanos) -> Nanos {
        self.interval
            .max(peer_interval)
            .saturating_mul(Nanos::from(self.multiplier))
    }

    /// The default startup period: a detection time plus a heartbeat round trip (two
    /// intervals, at least 10 ms), so a peer that was Backup has noticed our silence, taken
    /// over and told us before we decide anything.
    pub fn default_startup(interval: Nanos, multiplier: u32) -> Nanos {
        interval
            .saturating_mul(Nanos::from(multiplier))
            .saturating_add(interval.saturating_mul(2).max(10 * MS))
    }
}

/// What the state machine knows of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Peer {
    state: State,
    priority: u8,
    flags: Flags,
    term: u64,
    interval: Nanos,
    last_heard: Nanos,
}

/// A switchover step waiting for the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    /// The control request to answer, if a person asked for it.
    id: Option<u64>,
    deadline: Nanos,
}

/// The peer as shown in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Last state it reported.
    pub state: State,
    /// Its priority.
    pub priority: u8,
    /// Its last flags.
    pub flags: Flags,
    /// Heard within the detection time.
    pub alive: bool,
    /// Time since its last heartbeat.
    pub last_heard_ns_ago: u64,
}

/// A snapshot of the state machine for the status command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsmStatus {
    /// Current state.
    pub state: State,
    /// Time in it.
    pub in_state_ns: u64,
    /// Our priority.
    pub priority: u8,
    /// Preemption configured.
    pub preempt: bool,
    /// Last health verdict.
    pub healthy: bool,
    /// Whether the VIP is on our interface.
    pub vip_held: bool,
    /// We yielded to a takeover and will not preempt until Active again.
    pub yielded: bool,
    /// A release (we asked the peer to take over) is waiting.
    pub release_pending: bool,
    /// A takeover (we wait for the peer to yield) is waiting.
    pub takeover_pending: bool,
    /// Time left before preemption is allowed (0 if allowed or not applicable).
    pub hold_down_left_ns: u64,
    /// Draining after handing the VIP over: time left (0 once over, while connections
    /// remain with `drain_keep`).
    #[serde(default)]
    pub drain_left_ns: Option<u64>,
    /// Sending the previous owner the segments of connections it still serves.
    #[serde(default)]
    pub drain_forwarding: bool,
    /// The peer, once heard.
    pub peer: Option<PeerStatus>,
    /// Our ownership term (Active) or the highest term known.
    #[serde(default)]
    pub term: u64,
    /// Silent listening after start: time left.
    #[serde(default)]
    pub startup_left_ns: Option<u64>,
    /// Back from a stall of our own longer than the detection time: asserting nothing until
    /// the peer is heard again.
    #[serde(default)]
    pub quiet_after_stall: bool,
}

/// How long after its last heartbeat a peer still gets forwarded segments while draining.
pub const DRAIN_PEER_GRACE: Nanos = 250 * MS;

/// Silence a node back from Fault must hear before it acts as if the peer were dead.
pub const RECOVERY_SILENCE: Nanos = 1_000_000_000;

/// The state machine.
#[derive(Clone, Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    state_since: Nanos,
    healthy: bool,
    stopped: bool,
    /// Entered Backup from Init or Fault at this time: decisions wait for news of the peer
    /// heard since (the old view may be stale by seconds).
    listen_since: Nanos,
    /// The listening began on recovery from Fault: the local network may still be coming
    /// back (routes, ARP), so silence from the peer means less; see `silence_needed`.
    listen_after_fault: bool,
    peer: Option<Peer>,
    vip_held: bool,
    backup_since: Nanos,
    yielded: bool,
    release: Option<Pending>,
    takeover: Option<Pending>,
    linger_until: Option<Nanos>,
    /// Switchover answered once the lingering VIP is gone.
    done_on_remove: Option<u64>,
    /// The VIP goes to loopback rather than away when the linger ends (planned hand-over).
    hand_off: bool,
    /// Draining after a hand-over until then (VIP on loopback).
    drain_until: Option<Nanos>,
    /// Connections still open, as last reported while draining (`drain_keep`).
    drain_open: Option<u32>,
    both_backup_since: Option<Nanos>,
    conflict_announced: bool,
    /// Announce again at the next evaluation (the peer came back while we were Active: it may
    /// have been active and announced meanwhile).
    reannounce: bool,
    next_tx: Nanos,
    tx_now: bool,
    last_step: Nanos,
    /// See [`Advert::term`].
    term: u64,
    /// Silent until then after start.
    startup_until: Option<Nanos>,
    /// Resumed from a long stall of our own at this time: see `end_quiet`.
    stalled_at: Option<Nanos>,
}

impl Fsm {
    /// A state machine in Init.
    pub fn new(cfg: FsmConfig) -> Fsm {
        Fsm {
            cfg,
            state: State::Init,
            state_since: 0,
            healthy: false,
            stopped: false,
            listen_since: 0,
            listen_after_fault: false,
            peer: None,
            vip_held: false,
            backup_since: 0,
            yielded: false,
            release: None,
            takeover: None,
            linger_until: None,
            done_on_remove: None,
            hand_off: false,
            drain_until: None,
            drain_open: None,
            both_backup_since: None,
            conflict_announced: false,
            reannounce: false,
            next_tx: 0,
            tx_now: false,
            last_step: 0,
            term: 0,
            startup_until: None,
            stalled_at: None,
        }
    }

    /// The parameters.
    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the VIP is (still) on our interface.
    pub fn vip_held(&self) -> bool {
        self.vip_held
    }

    /// The content of our next heartbeat.
    pub fn advert(&self) -> Advert {
        Advert {
            state: self.state,
            priority: self.cfg.priority,
            term: self.term,
            flags: Flags {
                release: self.release.is_some(),
                takeover: self.takeover.is_some(),
                vip_held: self.vip_held,
                // From the yield on: while lingering the VIP is still on the interface, and
                // the new owner must already send us what it has no socket for.
                draining: self.drain_until.is_some() || self.hand_off,
            },
        }
    }

    /// Whether the data plane should send the peer the TCP segments to the VIP that have no
    /// socket here: while the VIP is local on both members (a planned move in progress, or
    /// the old owner draining). Both ways: the new owner sends the old one's connections
    /// back, and the old owner sends on what reaches it for connections the new owner
    /// opened (a client that has not heard the announcement yet). A forwarded segment is
    /// never forwarded again, so at worst it is reset where it lands.
    ///
    /// The peer counts as there for [`DRAIN_PEER_GRACE`] after its last heartbeat, longer than
    /// the detection time: a member busy moving the VIP on a starved host can be silent for
    /// that long, and dropping the forwarding then resets the connections it serves (seen in
    /// the soak). If it really died, its connections are lost either way.
    pub fn drain_forward(&self, now: Nanos) -> bool {
        self.cfg.drain > 0
            && self.vip_local()
            && self.peer.is_some_and(|p| {
                let horizon = self.cfg.detect_time(p.interval).max(DRAIN_PEER_GRACE);
                now < p.last_heard.saturating_add(horizon)
                    && (p.flags.draining || p.flags.vip_held || p.state == State::Active)
            })
    }

    /// Whether the VIP is a local address here (on the interface or, draining, on loopback),
    /// so segments the peer forwards are ours to serve.
    pub fn vip_local(&self) -> bool {
        self.vip_held || self.drain_until.is_some()
    }

    /// Draining after a hand-over (the VIP on loopback).
    pub fn draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Whether the peer was heard within the detection time.
    pub fn peer_alive(&self, now: Nanos) -> bool {
        self.peer.is_some_and(|p| now < self.peer_dead_at(&p))
    }

    fn peer_dead_at(&self, p: &Peer) -> Nanos {
        p.last_heard
            .saturating_add(self.cfg.detect_time(p.interval))
    }

    /// The detection time against the peer as last heard (our own interval until then).
    pub fn detection_time(&self) -> Nanos {
        self.cfg.detect_time(self.peer.map_or(0, |p| p.interval))
    }

    fn wall_us(&self, now: Nanos) -> u64 {
        self.cfg.wall_origin_us.saturating_add(now / 1000)
    }

    /// Feeds one event at time `now` and returns what to do, in order.
    pub fn step(&mut self, event: Event, now: Nanos) -> Vec<Action> {
        self.last_step = self.last_step.max(now);
        let mut out = Vec::new();
        let mut log = Vec::new();
        match event {
            Event::Start { healthy, reason } => {
                self.on_start(healthy, reason, now, &mut out, &mut log)
            }
            Event::Timer => {}
            Event::Heartbeat(adv) => self.on_heartbeat(adv, now),
            Event::Health { healthy, reason } => {
                self.on_health(healthy, reason, now, &mut out, &mut log)
            }
            Event::Switchover { id } => self.on_switchover(id, now, &mut out, &mut log),
            Event::Shutdown => self.on_shutdown(now, &mut out, &mut log),
            Event::DrainConnections { open } => self.drain_open = Some(open),
            Event::Stalled { late } => {
                let detect = self.detection_time();
                if let Some(p) = &mut self.peer {
                    p.last_heard = p.last_heard.saturating_add(late).min(now);
                }
                // Longer than the detection time: the peer may have taken over meanwhile, and
                // what we knew of it is old. Assert nothing until we hear it again.
                if late > detect && matches!(self.state, State::Backup | State::Active) {
                    self.stalled_at = Some(now);
                }
            }
        }
        self.check_startup(now);
        self.check_quiet(now);
        self.evaluate(now, &mut out, &mut log);
        self.transmit(now, &mut out);
        // Transitions go last: logging and hooks must not delay the VIP, GARP and heartbeat.
        out.extend(log);
        out
    }

    /// When the caller must call [`step`](Self::step) with [`Event::Timer`] at the latest.
    pub fn next_deadline(&self) -> Option<Nanos> {
        if self.state == State::Init {
            return None;
        }
        // Silent while starting: the first heartbeat is due when the startup ends.
        let mut d = match self.startup_until {
            Some(t) if self.state == State::Backup => t,
            _ => self.next_tx,
        };
        // A deadline at or before the last step was handled by it (or cannot apply until
        // another event), so only later ones count; otherwise a caller would spin.
        let last = self.last_step;
        let mut consider = |t: Nanos| {
            if t > last {
                d = d.min(t);
            }
        };
        if let Some(t) = self.linger_until {
            consider(t);
        }
        if let Some(t) = self.drain_until {
            consider(t);
        }
        if let Some(p) = self.release {
            consider(p.deadline);
        }
        if let Some(p) = self.takeover {
            consider(p.deadline);
        }
        if let Some(p) = self.peer {
            // Timers keyed to the peer's death (failover, aborting a release) fire here.
            consider(self.peer_dead_at(&p));
        }
        if let Some(t) = self.startup_until {
            consider(t);
        }
        if let Some(t) = self.quiet_until() {
            consider(t);
        }
        if self.state == State::Backup {
            let iv = self.peer.map_or(0, |p| p.interval);
            consider(self.listen_since.saturating_add(self.silence_needed(iv)));
            if let Some(s) = self.both_backup_since {
                consider(s.saturating_add(idle_wait(self.cfg.detect_time(iv))));
            }
            if let Some(p) = self.peer
                && p.state == State::Active
                && self.preempt_candidate(&p)
            {
                consider(self.backup_since.saturating_add(self.cfg.hold_down));
            }
        }
        Some(d)
    }

    /// A snapshot for the status command.
    pub fn status(&self, now: Nanos) -> FsmStatus {
        let hold_down_left_ns = match self.peer {
            Some(p) if self.state == State::Backup && self.preempt_candidate(&p) => self
                .backup_since
                .saturating_add(self.cfg.hold_down)
                .saturating_sub(now),
            _ => 0,
        };
        FsmStatus {
            state: self.state,
            in_state_ns: now.saturating_sub(self.state_since),
            priority: self.cfg.priority,
            preempt: self.cfg.preempt,
            healthy: self.healthy,
            vip_held: self.vip_held,
            yielded: self.yielded,
            release_pending: self.release.is_some(),
            takeover_pending: self.takeover.is_some(),
            hold_down_left_ns,
            drain_left_ns: self.drain_until.map(|t| t.saturating_sub(now)),
            drain_forwarding: self.drain_forward(now),
            peer: self.peer.map(|p| PeerStatus {
                state: p.state,
                priority: p.priority,
                flags: p.flags,
                alive: self.peer_alive(now),
                last_heard_ns_ago: now.saturating_sub(p.last_heard),
            }),
            term: self.term,
            startup_left_ns: self.startup_until.map(|t| t.saturating_sub(now)),
            quiet_after_stall: self.stalled_at.is_some(),
        }
    }

    /// Ends the silent startup period. If the peer was heard meanwhile, what it said stands
    /// (listening began at start); if not, we have said nothing yet either, so a peer that
    /// started with us would not have heard us: listen a detection time more, now speaking,
    /// so that two members started together elect instead of both claiming.
    fn check_startup(&mut self, now: Nanos) {
        if let Some(t) = self.startup_until
            && now >= t
        {
            self.startup_until = None;
            self.tx_now = true;
            if self.peer.is_none() {
                self.listen_since = t;
            }
        }
    }

    fn in_startup(&self) -> bool {
        self.startup_until.is_some()
    }

    /// When the quiet after a stall ends without news: the peer, silent for a detection time
    /// after our resume, is dead.
    fn quiet_until(&self) -> Option<Nanos> {
        self.stalled_at
            .map(|t| t.saturating_add(self.detection_time()))
    }

    fn check_quiet(&mut self, now: Nanos) {
        if self.quiet_until().is_some_and(|t| now >= t) {
            self.end_quiet();
        }
    }

    /// The quiet after a stall ends. Still Active, and the peer is not (it never took over,
    /// or it did and has since died or given up): clients may have followed it meanwhile, so
    /// announce again. An active peer is left to the dual-active rule.
    fn end_quiet(&mut self) {
        if self.stalled_at.take().is_some()
            && self.state == State::Active
            && self.peer.is_none_or(|p| p.state != State::Active)
        {
            self.reannounce = true;
        }
    }

    fn on_start(
        &mut self,
        healthy: bool,
        reason: String,
        now: Nanos,
        out: &mut Vec<Action>,
        log: &mut Vec<Action>,
    ) {
        if self.state != State::Init {
            return;
        }
        self.listen_since = now;
        self.healthy = healthy;
        if self.cfg.startup > 0 {
            self.startup_until = Some(now.saturating_add(self.cfg.startup));
        }
        if healthy {
            self.enter(State::Backup, Cause::Startup, now, out, log);
        } else {
            self.enter(State::Fault, Cause::HealthFailed(reason), now, out, log);
        }
    }

    fn on_heartbeat(&mut self, adv: PeerAdvert, now: Nanos) {
        let was_alive = self.peer_alive(now);
        let news = Peer {
            state: adv.state,
            priority: adv.priority,
            flags: adv.flags,
            term: adv.term,
            interval: adv.interval,
            last_heard: now,
        };
        if adv.fresh && self.state != State::Active {
            self.term = self.term.max(adv.term);
        }
        // Heard after a stall of ours: fresh news, unless it was queued while we slept (read
        // in a burst right at resume).
        if let Some(t) = self.stalled_at
            && now >= t.saturating_add(adv.interval / 2)
        {
            self.end_quiet();
        }
        let changed = match &mut self.peer {
            Some(p) if !adv.fresh => {
                p.last_heard = p.last_heard.max(now);
                false
            }
            Some(p) => {
                let changed = (p.state, p.flags) != (news.state, news.flags);
                *p = news;
                changed
            }
            None => {
                self.peer = Some(news);
                true
            }
        };
        // Answer news at once: a peer that just appeared, restarted or changed state learns
        // ours a round trip later instead of an interval later. (Our answer carries no change,
        // so this does not ping-pong.)
        if !was_alive || adv.restarted || changed {
            self.tx_now = true;
        }
        if !was_alive && self.state == State::Active && self.stalled_at.is_none() {
            self.reannounce = true;
        }
    }

    fn on_health(
        &mut self,
        healthy: bool,
        reason: String,
        now: Nanos,
        out: &mut Vec<Action>,
        log: &mut Vec<Action>,
    ) {
        self.healthy = healthy;
        match self.state {
            State::Fault if healthy && !self.stopped => {
                self.enter(State::Backup, Cause::HealthRecovered, now, out, log)
            }
            State::Backup | State::Active if !healthy => {
                self.enter(State::Fault, Cause::HealthFailed(reason), now, out, log)
            }
            _ => {}
        }
    }

    fn on_switchover(&mut self, id: u64, now: Nanos, out: &mut Vec<Action>, log: &mut Vec<Action>) {
        let fail = |out: &mut Vec<Action>, e: SwitchoverError| {
            out.push(Action::SwitchoverDone { id, result: Err(e) })
        };
        if self.release.is_some() || self.takeover.is_some() || self.done_on_remove.is_some() {
            return fail(out, SwitchoverError::InProgress);
        }
        let alive = self.peer_alive(now);
        let peer = self.peer.filter(|_| alive);
        let deadline = now.saturating_add(self.cfg.switchover_timeout);
        match self.state {
            State::Init | State::Fault => fail(out, SwitchoverError::NotReady(self.state)),
            State::Active => match peer {
                None => fail(out, SwitchoverError::PeerUnavailable("peer is dead".into())),
                Some(p) if p.state != State::Backup => fail(
                    out,
                    SwitchoverError::PeerUnavailable(format!("peer is in state {}", p.state)),
                ),
                Some(_) => {
                    self.release = Some(Pending {
                        id: Some(id),
                        deadline,
                    });
                    self.tx_now = true;
                }
            },
            State::Backup => match peer {
                None => fail(out, SwitchoverError::PeerUnavailable("peer is dead".into())),
                Some(_) => {
                    // Take over; if the peer is not Active the takeover completes at once.
                    self.takeover = Some(Pending {
                        id: Some(id),
                        deadline,
                    });
                    self.enter(State::Active, Cause::Switchover, now, out, log);
                }
            },
        }
    }

    fn on_shutdown(&mut self, now: Nanos, out: &mut Vec<Action>, log: &mut Vec<Action>) {
        self.stopped = true;
        self.healthy = false;
        if self.state == State::Fault {
            self.remove_vip(out);
            self.tx_now = true;
        } else {
            self.enter(State::Fault, Cause::Shutdown, now, out, log);
        }
    }

    fn outranks(&self, p: &Peer) -> bool {
        (self.cfg.priority, self.cfg.tie_break) > (p.priority, self.cfg.peer_tie_break)
    }

    /// Whether preemption against active peer `p` applies at all (hold-down aside).
    fn preempt_candidate(&self, p: &Peer) -> bool {
        self.cfg.preempt && self.cfg.priority > p.priority && !self.yielded && !p.flags.takeover
    }

    fn evaluate(&mut self, now: Nanos, out: &mut Vec<Action>, log: &mut Vec<Action>) {
        // A transition can enable another (e.g. Active with a takeover that is already
        // complete); a few rounds settle it.
        for _ in 0..4 {
            let before = (self.state, self.release, self.takeover);
            self.check_linger(now, out);
            self.check_drain(now, out);
            match self.state {
                State::Backup => self.evaluate_backup(now, out, log),
                State::Active => self.evaluate_active(now, out, log),
                State::Init | State::Fault => {}
            }
            if before == (self.state, self.release, self.takeover) {
                break;
            }
        }
    }

    fn check_linger(&mut self, now: Nanos, out: &mut Vec<Action>) {
        if let Some(t) = self.linger_until
            && now >= t
        {
            self.linger_until = None;
            self.release_vip(now, out);
            self.tx_now = true;
        }
    }

    /// The VIP leaves the interface: to loopback for draining after a planned hand-over,
    /// else away.
    fn release_vip(&mut self, now: Nanos, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.hand_off) && self.vip_held {
            out.push(Action::HandOffVip);
            self.drain_until = Some(now.saturating_add(self.cfg.drain));
            self.drain_open = None;
            self.vip_held = false;
            if let Some(id) = self.done_on_remove.take() {
                out.push(Action::SwitchoverDone { id, result: Ok(()) });
            }
        } else {
            self.remove_vip(out);
        }
    }

    /// Ends draining when its time is up (and, with `drain_keep`, no connection remains).
    fn check_drain(&mut self, now: Nanos, out: &mut Vec<Action>) {
        let Some(t) = self.drain_until else {
            return;
        };
        let idle = self.drain_open == Some(0);
        if now >= t && (!self.cfg.drain_keep || idle) {
            self.end_drain(!self.cfg.drain_keep, out);
        }
    }

    fn end_drain(&mut self, reset: bool, out: &mut Vec<Action>) {
        if self.drain_until.take().is_some() {
            out.push(Action::EndDrain { reset });
            self.drain_open = None;
            self.tx_now = true;
        }
    }

    /// How long a node that (re)started listening must hear nothing before it takes the VIP
    /// as if the peer were dead. Right after a local fault (say its link came back) the node's
    /// own network may not carry heartbeats yet, and silence would make it steal the VIP from a
    /// live peer; so it waits `RECOVERY_SILENCE` then. A peer that dies while we listen is
    /// still noticed as before once we have heard it.
    fn silence_needed(&self, peer_interval: Nanos) -> Nanos {
        let detect = self.cfg.detect_time(peer_interval);
        if self.listen_after_fault {
            detect.max(RECOVERY_SILENCE)
        } else {
            detect
        }
    }

    fn evaluate_backup(&mut self, now: Nanos, out: &mut Vec<Action>, log: &mut Vec<Action>) {
        // Listening (after start, or after a stall of ours): nothing is decided yet.
        if self.in_startup() || self.stalled_at.is_some() {
            return;
        }
        let alive = self.peer_alive(now);
        let heard_since = self.peer.is_some_and(|p| p.last_heard >= self.listen_since);
        let Some(peer) = self.peer.filter(|_| alive && heard_since) else {
            self.both_backup_since = None;
            let iv = self.peer.map_or(0, |p| p.interval);
            // Heard since we began listening and now silent: it died, act at once. Never
            // heard: wait out the listening time.
            if heard_since || now >= self.listen_since.saturating_add(self.silence_needed(iv)) {
                let cause = if self.peer.is_some() {
                    Cause::PeerDead
                } else {
                    Cause::NoPeer
                };
                self.enter(State::Active, cause, now, out, log);
            }
            return;
        };
        // Just back from Init or Fault, the first heartbeats heard may be stale: a router
        // that queued them while our link was down delivers them in a burst, ahead of the
        // peer's current ones. Taking the VIP on their word waits until we have listened for
        // a detection time (after Init) or RECOVERY_SILENCE (after a fault, when the peer
        // should have taken over and its word "backup" is most likely old news).
        let settled = now
            >= self
                .listen_since
                .saturating_add(self.silence_needed(peer.interval));
        // A peer reporting Fault has lost the VIP (or is about to): only the Init listening
        // time applies, so a link failure on the peer moves the VIP without delay.
        let fault_settled = now
            >= self
                .listen_since
                .saturating_add(self.cfg.detect_time(peer.interval));
        match peer.state {
            State::Init | State::Fault => {
                self.both_backup_since = None;
                if fault_settled {
                    self.enter(State::Active, Cause::PeerFault, now, out, log);
                }
            }
            State::Backup => {
                if self.outranks(&peer) {
                    if settled {
                        self.enter(State::Active, Cause::Election, now, out, log);
                    }
                } else {
                    let since = *self.both_backup_since.get_or_insert(now);
                    if now >= since.saturating_add(idle_wait(self.cfg.detect_time(peer.interval))) {
                        self.enter(State::Active, Cause::PeerIdle, now, out, log);
                    }
                }
            }
            State::Active => {
                self.both_backup_since = None;
                let deadline = now.saturating_add(self.cfg.switchover_timeout);
                if peer.flags.release {
                    self.takeover = Some(Pending { id: None, deadline });
                    self.enter(State::Active, Cause::PeerReleased, now, out, log);
                } else if self.preempt_candidate(&peer)
                    && now >= self.backup_since.saturating_add(self.cfg.hold_down)
                {
                    self.takeover = Some(Pending { id: None, deadline });
                    self.enter(State::Active, Cause::Preempt, now, out, log);
                }
            }
        }
    }

    fn evaluate_active(&mut self, now: Nanos, out: &mut Vec<Action>, log: &mut Vec<Action>) {
        let alive = self.peer_alive(now);
        let peer = self.peer.filter(|_| alive);

        if let Some(r) = self.release {
            let abort = match peer {
                None => Some(SwitchoverError::PeerUnavailable("peer died".into())),
                Some(p) if matches!(p.state, State::Fault | State::Init) => Some(
                    SwitchoverError::PeerUnavailable(format!("peer went to state {}", p.state)),
                ),
                _ if now >= r.deadline => Some(SwitchoverError::Timeout),
                _ => None,
            };
            if let Some(e) = abort {
                self.release = None;
                self.tx_now = true;
                answer(out, r.id, Err(e));
            }
        }

        if let Some(t) = self.takeover {
            let done = match peer {
                None => Some(Ok(())),
                Some(p) if p.state != State::Active && !p.flags.vip_held => Some(Ok(())),
                _ if now >= t.deadline => Some(Err(SwitchoverError::Timeout)),
                _ => None,
            };
            if let Some(result) = done {
                self.takeover = None;
                self.tx_now = true;
                answer(out, t.id, result);
            }
        }

        let Some(p) = peer.filter(|p| p.state == State::Active) else {
            self.conflict_announced = false;
            self.flush_reannounce(out);
            return;
        };
        match (self.takeover.is_some(), p.flags.takeover) {
            // Our takeover: the peer will yield when it hears us.
            (true, false) => {}
            (false, true) => {
                self.yielded = true;
                self.enter(State::Backup, Cause::PeerTookOver, now, out, log);
            }
            // Dual-active, or both took over at once: the newer term keeps the VIP, rank
            // decides a tie.
            _ => {
                if p.term > self.term {
                    self.enter(State::Backup, Cause::NewerOwner, now, out, log);
                } else if p.term == self.term && !self.outranks(&p) {
                    self.enter(State::Backup, Cause::SplitBrain, now, out, log);
                } else {
                    if !self.conflict_announced {
                        self.conflict_announced = true;
                        self.reannounce = true;
                    }
                    self.flush_reannounce(out);
                }
            }
        }
    }

    fn flush_reannounce(&mut self, out: &mut Vec<Action>) {
        // Back from a stall the peer may own the VIP: announcing would steal it back.
        if self.stalled_at.is_none() && std::mem::take(&mut self.reannounce) {
            out.push(Action::Announce);
        }
    }

    fn remove_vip(&mut self, out: &mut Vec<Action>) {
        if self.vip_held {
            out.push(Action::RemoveVip);
            self.vip_held = false;
        }
        if let Some(id) = self.done_on_remove.take() {
            out.push(Action::SwitchoverDone { id, result: Ok(()) });
        }
    }

    fn enter(
        &mut self,
        to: State,
        cause: Cause,
        now: Nanos,
        out: &mut Vec<Action>,
        log: &mut Vec<Action>,
    ) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.state_since = now;
        self.tx_now = true;
        self.conflict_announced = false;
        self.reannounce = false;
        self.both_backup_since = None;
        match to {
            State::Active => {
                let known = self.term.max(self.peer.map_or(0, |p| p.term));
                self.term = self.wall_us(now).max(known.saturating_add(1));
                self.linger_until = None;
                self.hand_off = false;
                // Draining stops: AddVip takes the VIP back from loopback, and the
                // connections it served are local again.
                self.drain_until = None;
                self.drain_open = None;
                if let Some(id) = self.done_on_remove.take() {
                    out.push(Action::SwitchoverDone {
                        id,
                        result: Err(SwitchoverError::Aborted(format!(
                            "became active again: {cause}"
                        ))),
                    });
                }
                self.yielded = false;
                if !self.vip_held {
                    self.vip_held = true;
                    out.push(Action::AddVip);
                }
                out.push(Action::Announce);
            }
            State::Backup => {
                self.backup_since = now;
                if matches!(from, State::Init | State::Fault) {
                    self.listen_since = now;
                    self.listen_after_fault = from == State::Fault;
                }
                if let Some(r) = self.release.take() {
                    // Our release worked: answer once the VIP is off our interface.
                    self.done_on_remove = r.id;
                }
                if let Some(t) = self.takeover.take() {
                    answer(out, t.id, Err(SwitchoverError::Aborted(cause.to_string())));
                }
                // A planned move to a live peer hands the VIP over for draining.
                self.hand_off =
                    from == State::Active && cause == Cause::PeerTookOver && self.cfg.drain > 0;
                if from == State::Active && self.cfg.release_linger > 0 {
                    self.linger_until = Some(now.saturating_add(self.cfg.release_linger));
                } else {
                    self.release_vip(now, out);
                }
            }
            State::Fault => {
                let why = SwitchoverError::Aborted(cause.to_string());
                if let Some(p) = self.release.take() {
                    answer(out, p.id, Err(why.clone()));
                }
                if let Some(p) = self.takeover.take() {
                    answer(out, p.id, Err(why.clone()));
                }
                if let Some(id) = self.done_on_remove.take() {
                    out.push(Action::SwitchoverDone {
                        id,
                        result: Err(why),
                    });
                }
                self.linger_until = None;
                self.hand_off = false;
                self.remove_vip(out);
                // Unhealthy or stopping: what draining served is reset, at once.
                self.end_drain(true, out);
            }
            State::Init => {}
        }
        log.push(Action::Transition(Transition {
            from,
            to,
            cause,
            at: now,
        }));
    }

    fn transmit(&mut self, now: Nanos, out: &mut Vec<Action>) {
        // Silent while starting, except to say Fault (a start unhealthy, or a stop).
        if self.state == State::Init || (self.in_startup() && self.state == State::Backup) {
            return;
        }
        if self.tx_now || now >= self.next_tx {
            self.tx_now = false;
            self.next_tx = now.saturating_add(self.cfg.interval);
            out.push(Action::SendHeartbeat(self.advert()));
        }
    }
}

/// How long both members may be Backup before the lower-ranked one takes the VIP: two
/// detection times, so the higher-ranked one, which takes it after one, is never raced.
fn idle_wait(detect: Nanos) -> Nanos {
    detect.saturating_mul(2)
}

fn answer(out: &mut Vec<Action>, id: Option<u64>, result: Result<(), SwitchoverError>) {
    if let Some(id) = id {
        out.push(Action::SwitchoverDone { id, result });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(priority: u8, preempt: bool) -> FsmConfig {
        FsmConfig {
            priority,
            preempt,
            interval: 10 * MS,
            multiplier: 3,
            hold_down: 1000 * MS,
            switchover_timeout: 500 * MS,
            release_linger: 5 * MS,
            tie_break: 1,
            peer_tie_break: 2,
            drain: 0,
            drain_keep: false,
            startup: 0,
            wall_origin_us: 0,
        }
    }

    fn peer(state: State, priority: u8, flags: Flags) -> Event {
        Event::Heartbeat(PeerAdvert {
            state,
            priority,
            flags,
            term: 0,
            interval: 10 * MS,
            fresh: true,
            restarted: false,
        })
    }

    fn active_flags() -> Flags {
        Flags {
            vip_held: true,
            ..Flags::default()
        }
    }

    fn started(c: FsmConfig) -> Fsm {
        let mut f = Fsm::new(c);
        f.step(
            Event::Start {
                healthy: true,
                reason: String::new(),
            },
            0,
        );
        f
    }

    #[test]
    fn alone_becomes_active_after_detection_time() {
        let mut f = started(cfg(100, false));
        assert_eq!(f.state(), State::Backup);
        assert_eq!(f.next_deadline(), Some(10 * MS));
        f.step(Event::Timer, 29 * MS);
        assert_eq!(f.state(), State::Backup);
        let a = f.step(Event::Timer, 30 * MS);
        assert_eq!(f.state(), State::Active);
        let pos = |x: &Action| a.iter().position(|y| y == x);
        assert!(pos(&Action::AddVip) < pos(&Action::Announce));
        assert!(matches!(a.last(), Some(Action::Transition(t)) if t.cause == Cause::NoPeer));
    }

    /// Backup for a while under an active
    /// peer heard every 10 ms; returns the node at `T0`, the peer last heard at `T0 + 1 ms`.
    const T0: Nanos = 2000 * MS;
    fn settled_under_active_peer() -> Fsm {
        let mut f = started(cfg(200, false));
        let mut t = MS;
        while t <= T0 + MS {
            f.step(peer(State::Active, 100, active_flags()), t);
            t += 10 * MS;
        }
        assert_eq!(f.state(), State::Backup);
        f
    }

    #[test]
    fn a_local_stall_does_not_count_as_peer_silence() {
        let mut f = settled_under_active_peer();
        // Both stalled for 31 ms (heard at 1 ms, detection 30 ms): on waking at 32 ms the
        // stall is reported first, so the silence is not yet a death.
        f.step(Event::Stalled { late: 31 * MS }, T0 + 32 * MS);
        f.step(Event::Timer, T0 + 32 * MS);
        assert_eq!(f.state(), State::Backup);
        // The peer's next heartbeat keeps it alive.
        f.step(peer(State::Active, 100, active_flags()), T0 + 40 * MS);
        f.step(Event::Timer, T0 + 62 * MS);
        assert_eq!(f.state(), State::Backup);
        // Real silence is still detected, a detection time after the last heartbeat.
        f.step(Event::Timer, T0 + 69 * MS);
        assert_eq!(f.state(), State::Backup);
        let a = f.step(Event::Timer, T0 + 70 * MS);
        assert_eq!(f.state(), State::Active, "{a:?}");
    }

    fn peer_term(state: State, flags: Flags, term: u64) -> Event {
        Event::Heartbeat(PeerAdvert {
            state,
            priority: 100,
            flags,
            term,
            interval: 10 * MS,
            fresh: true,
            restarted: false,
        })
    }

    /// Active (elected at 30 ms, term 30000 us) over a backup peer heard every 10 ms until
    /// 101 ms.
    fn active_over_backup_peer() -> Fsm {
        let mut f = started(cfg(200, false));
        let mut t = MS;
        while t <= 101 * MS {
            f.step(peer_term(State::Backup, Flags::default(), 0), t);
            t += 10 * MS;
        }
        assert_eq!(f.state(), State::Active);
        f
    }

    #[test]
    fn back_from_a_long_stall_an_owner_announces_nothing_and_yields_to_a_newer_one() {
        let mut f = active_over_backup_peer();
        // Not scheduled for 3 s: the peer took over meanwhile (term 1 s).
        let resume = 3101 * MS;
        f.step(Event::Stalled { late: 3000 * MS }, resume);
        assert!(f.status(resume).quiet_after_stall);
        // What queued while we slept comes first: old news, then the takeover.
        let mut acts = f.step(peer_term(State::Backup, Flags::default(), 0), resume);
        assert_eq!(f.state(), State::Active);
        acts.extend(f.step(peer_term(State::Active, active_flags(), 1_000_000), resume));
        assert_eq!(f.state(), State::Backup);
        assert!(
            !acts.contains(&Action::Announce),
            "a member back from a stall announced: {acts:?}"
        );
        assert!(matches!(acts.last(), Some(Action::Transition(t)) if t.cause == Cause::NewerOwner));
    }

    #[test]
    fn an_owner_back_from_a_long_stall_announces_again_once_it_knows_it_is_alone() {
        let mut f = active_over_backup_peer();
        // Frozen 3 s; the peer may have taken over and died meanwhile: nothing is heard.
        let resume = 3101 * MS;
        let a = f.step(Event::Stalled { late: 3000 * MS }, resume);
        assert!(!a.contains(&Action::Announce));
        let a = f.step(Event::Timer, resume + 29 * MS);
        assert!(!a.contains(&Action::Announce));
        // A detection time of silence after the resume: alone, so clients must come back.
        let a = f.step(Event::Timer, resume + 30 * MS);
        assert!(a.contains(&Action::Announce), "{a:?}");
        assert_eq!(f.state(), State::Active);
        assert!(!f.status(resume + 30 * MS).quiet_after_stall);
    }

    #[test]
    fn back_from_a_long_stall_a_backup_decides_nothing_on_queued_news() {
        let mut f = settled_under_active_peer();
        let resume = T0 + 3000 * MS;
        f.step(Event::Stalled { late: 2990 * MS }, resume);
        // Queued: the peer went backup (it would be ours to take by rank).
        f.step(peer(State::Backup, 100, Flags::default()), resume);
        assert_eq!(f.state(), State::Backup);
        assert!(f.status(resume).quiet_after_stall);
        // Heard again a while after the resume: news to act on.
        let a = f.step(peer(State::Backup, 100, Flags::default()), resume + 10 * MS);
        assert!(!f.status(resume + 10 * MS).quiet_after_stall);
        assert_eq!(f.state(), State::Active, "{a:?}");
        // And without news the quiet ends after a detection time.
        let mut g = settled_under_active_peer();
        g.step(Event::Stalled { late: 2990 * MS }, resume);
        g.step(Event::Timer, resume + 29 * MS);
        assert!(g.status(resume + 29 * MS).quiet_after_stall);
        assert_eq!(g.next_deadline(), Some(resume + 30 * MS));
        g.step(Event::Timer, resume + 30 * MS);
        assert!(!g.status(resume + 30 * MS).quiet_after_stall);
    }

    #[test]
    fn a_silent_startup_sends_nothing_and_defers_to_an_active_peer() {
        let mut f = started(FsmConfig {
            startup: 50 * MS,
            ..cfg(200, true)
        });
        let mut sent = Vec::new();
        for t in (5..50).step_by(10) {
            sent.extend(f.step(peer_term(State::Active, active_flags(), 7), t * MS));
        }
        assert!(
            !sent.iter().any(|a| matches!(a, Action::SendHeartbeat(_))),
            "{sent:?}"
        );
        assert_eq!(f.status(45 * MS).startup_left_ns, Some(5 * MS));
        let a = f.step(Event::Timer, 50 * MS);
        assert!(
            matches!(a.first(), Some(Action::SendHeartbeat(adv)) if adv.state == State::Backup && adv.term == 7)
        );
        assert_eq!(f.state(), State::Backup);
        // Preemption (planned) still applies after the hold-down.
        let mut t = 55 * MS;
        while f.state() == State::Backup && t < 2000 * MS {
            f.step(peer_term(State::Active, active_flags(), 7), t);
            t += 10 * MS;
        }
        assert_eq!(f.state(), State::Active);
        assert!(f.status(t).takeover_pending);
    }

    #[test]
    fn without_the_stall_report_the_same_silence_is_a_death() {
        let mut f = settled_under_active_peer();
        f.step(Event::Timer, T0 + 32 * MS);
        assert_eq!(f.state(), State::Active);
    }

    #[test]
    fn unhealthy_start_is_fault_and_never_active() {
        let mut f = Fsm::new(cfg(100, false));
        f.step(
            Event::Start {
                healthy: false,
                reason: "link down".into(),
            },
            0,
        );
        assert_eq!(f.state(), State::Fault);
        f.step(Event::Timer, 1000 * MS);
        assert_eq!(f.state(), State::Fault);
        f.step(
            Event::Health {
                healthy: true,
                reason: String::new(),
            },
            1001 * MS,
        );
        // Recovered from a fault: silence counts as a dead peer only after RECOVERY_SILENCE
        // (the local network may still be coming back).
        assert_eq!(f.state(), State::Backup);
        assert_eq!(f.next_deadline(), Some(1011 * MS));
        f.step(Event::Timer, 1031 * MS);
        assert_eq!(f.state(), State::Backup);
        f.step(Event::Timer, 2000 * MS);
        assert_eq!(f.state(), State::Backup);
        f.step(Event::Timer, 2001 * MS);
        assert_eq!(f.state(), State::Active);
    }

    /// Seen in the lab: the active member's link went down and came back; the router then
    /// delivered heartbeats it had queued (the peer still Backup), and only then the peer's
    /// current ones (Active). Neither the stale burst nor the silence while the node's own
    /// routes come back may make it take the VIP from the live, active peer.
    #[test]
    fn recovery_from_a_link_fault_trusts_neither_stale_heartbeats_nor_early_silence() {
        let health = |healthy| Event::Health {
            healthy,
            reason: "underlay interface eth0 is down".into(),
        };
        // Stale burst first.
        let mut f = started(cfg(200, false));
        f.step(Event::Timer, 30 * MS);
        assert_eq!(f.state(), State::Active);
        f.step(health(false), 100 * MS);
        assert_eq!(f.state(), State::Fault);
        f.step(health(true), 140 * MS);
        assert_eq!(f.state(), State::Backup);
        f.step(peer(State::Backup, 100, Flags::default()), 141 * MS);
        f.step(peer(State::Backup, 100, Flags::default()), 142 * MS);
        assert_eq!(f.state(), State::Backup, "stale Backup heartbeats");
        f.step(peer(State::Active, 100, active_flags()), 150 * MS);
        for t in (151..2000).step_by(10) {
            if t % 10 == 1 {
                f.step(peer(State::Active, 100, active_flags()), t * MS);
            }
            assert_eq!(f.state(), State::Backup, "at {t} ms");
        }
        // Silence right after recovery.
        let mut f = started(cfg(200, false));
        f.step(Event::Timer, 30 * MS);
        f.step(health(false), 100 * MS);
        f.step(health(true), 140 * MS);
        f.step(Event::Timer, 140 * MS + 3 * 10 * MS + 1);
        assert_eq!(f.state(), State::Backup, "30 ms of silence after a fault");
        for t in (200..1500).step_by(10) {
            f.step(peer(State::Active, 100, active_flags()), t * MS);
            assert_eq!(
                f.state(),
                State::Backup,
                "the peer is heard and active, at {t} ms"
            );
        }
    }

    #[test]
    fn release_then_yield_answers_after_linger() {
        let mut f = started(cfg(200, true));
        f.step(Event::Timer, 30 * MS);
        assert_eq!(f.state(), State::Active);
        f.step(peer(State::Backup, 100, Flags::default()), 31 * MS);
        let a = f.step(Event::Switchover { id: 7 }, 32 * MS);
        assert!(matches!(
            a[0],
            Action::SendHeartbeat(Advert {
                flags: Flags { release: true, .. },
                ..
            })
        ));
        let took = Flags {
            takeover: true,
            vip_held: true,
            ..Flags::default()
        };
        let a = f.step(peer(State::Active, 100, took), 33 * MS);
        assert_eq!(f.state(), State::Backup);
        assert!(!a.contains(&Action::RemoveVip), "lingers first");
        assert!(f.vip_held());
        let a = f.step(Event::Timer, 38 * MS);
        assert!(a.contains(&Action::RemoveVip));
        assert!(a.contains(&Action::SwitchoverDone {
            id: 7,
            result: Ok(())
        }));
        // Yielded: no preemption back even after hold-down.
        f.step(peer(State::Active, 100, active_flags()), 2000 * MS);
        f.step(Event::Timer, 2001 * MS);
        assert_eq!(f.state(), State::Backup);
    }

    fn draining_cfg(keep: bool) -> FsmConfig {
        FsmConfig {
            drain: 100 * MS,
            drain_keep: keep,
            ..cfg(200, true)
        }
    }

    /// Active, then a planned switchover handed to the peer: returns the node in Backup
    /// with the VIP on loopback (at 38 ms).
    fn handed_over(c: FsmConfig) -> Fsm {
        let mut f = started(c);
        f.step(Event::Timer, 30 * MS);
        f.step(peer(State::Backup, 100, Flags::default()), 31 * MS);
        f.step(Event::Switchover { id: 7 }, 32 * MS);
        let took = Flags {
            takeover: true,
            vip_held: true,
            ..Flags::default()
        };
        let a = f.step(peer(State::Active, 100, took), 33 * MS);
        let flags = f.advert().flags;
        assert!(
            flags.vip_held && flags.draining,
            "lingering, and draining already"
        );
        assert!(!a.contains(&Action::HandOffVip));
        let a = f.step(Event::Timer, 38 * MS);
        assert!(a.contains(&Action::HandOffVip), "{a:?}");
        assert!(!a.contains(&Action::RemoveVip));
        assert!(a.contains(&Action::SwitchoverDone {
            id: 7,
            result: Ok(())
        }));
        let flags = f.advert().flags;
        assert!(flags.draining && !flags.vip_held, "{flags:?}");
        assert!(f.vip_local() && f.draining());
        assert!(
            f.drain_forward(38 * MS),
            "the old owner sends what it has no socket for to the new one"
        );
        f
    }

    /// The new owner's heartbeats every 10 ms from `from` to `to` (ms), with a timer step
    /// each ms; returns every action.
    fn active_peer_until(f: &mut Fsm, from: u64, to: u64) -> Vec<Action> {
        let mut all = Vec::new();
        for t in from..to {
            if t % 10 == 0 {
                all.extend(f.step(peer(State::Active, 100, active_flags()), t * MS));
            }
            all.extend(f.step(Event::Timer, t * MS));
        }
        all
    }

    fn ends(a: &[Action]) -> usize {
        a.iter()
            .filter(|x| matches!(x, Action::EndDrain { .. }))
            .count()
    }

    #[test]
    fn a_planned_hand_over_drains_then_resets_what_is_left() {
        let mut f = handed_over(draining_cfg(false));
        let a = active_peer_until(&mut f, 38, 138);
        assert_eq!(ends(&a), 0, "{a:?}");
        assert!(f.draining());
        let a = active_peer_until(&mut f, 138, 500);
        assert_eq!(f.state(), State::Backup);
        assert!(a.contains(&Action::EndDrain { reset: true }), "{a:?}");
        assert_eq!(ends(&a), 1, "once");
        assert!(!f.advert().flags.draining && !f.vip_local());
        assert!(!f.drain_forward(499 * MS));
    }

    #[test]
    fn keep_drains_until_the_last_connection_closes() {
        let mut f = handed_over(draining_cfg(true));
        f.step(Event::DrainConnections { open: 3 }, 100 * MS);
        let a = active_peer_until(&mut f, 38, 400);
        assert_eq!(ends(&a), 0);
        assert!(f.draining());
        let a = f.step(Event::DrainConnections { open: 0 }, 400 * MS);
        assert!(a.contains(&Action::EndDrain { reset: false }), "{a:?}");
    }

    #[test]
    fn draining_ends_at_once_on_a_fault_and_stops_when_active_again() {
        let mut f = handed_over(draining_cfg(false));
        let unhealthy = Event::Health {
            healthy: false,
            reason: "test".into(),
        };
        let a = f.step(unhealthy, 50 * MS);
        assert!(a.contains(&Action::EndDrain { reset: true }), "{a:?}");
        assert!(
            !a.contains(&Action::RemoveVip),
            "not on the interface any more"
        );

        // Back to Active while draining: the VIP returns to the interface, no reset.
        let mut f = handed_over(draining_cfg(false));
        let a = f.step(Event::Switchover { id: 8 }, 60 * MS);
        assert_eq!(f.state(), State::Active);
        assert!(a.contains(&Action::AddVip));
        assert!(!a.iter().any(|x| matches!(x, Action::EndDrain { .. })));
        assert!(!f.draining() && f.vip_local());
        let a = f.step(Event::Timer, 500 * MS);
        assert!(!a.iter().any(|x| matches!(x, Action::EndDrain { .. })));
    }

    #[test]
    fn the_new_owner_forwards_while_the_old_one_serves() {
        let mut f = started(draining_cfg(false));
        f.step(peer(State::Active, 100, active_flags()), 5 * MS);
        f.step(peer(State::Active, 100, active_flags()), 35 * MS);
        f.step(Event::Switchover { id: 1 }, 40 * MS);
        assert_eq!(f.state(), State::Active);
        assert!(
            f.drain_forward(41 * MS),
            "takeover: the peer still holds connections"
        );
        let yielded = Flags {
            vip_held: true,
            ..Flags::default()
        };
        // Lingering: the VIP still there, so connections too.
        f.step(peer(State::Backup, 100, yielded), 42 * MS);
        assert!(f.drain_forward(42 * MS));
        let draining = Flags {
            draining: true,
            ..Flags::default()
        };
        f.step(peer(State::Backup, 100, draining), 60 * MS);
        assert!(f.drain_forward(60 * MS));
        assert!(
            f.drain_forward(200 * MS),
            "a silent peer keeps its connections a while"
        );
        assert!(!f.drain_forward(400 * MS), "a dead peer serves nothing");
        f.step(peer(State::Backup, 100, Flags::default()), 410 * MS);
        assert!(!f.drain_forward(410 * MS), "its drain is over");
        // Without draining configured, never.
        let mut g = started(cfg(200, true));
        g.step(peer(State::Backup, 100, draining), 5 * MS);
        g.step(Event::Timer, 40 * MS);
        assert!(!g.drain_forward(40 * MS));
    }

    /// Two nodes exchanging heartbeats every millisecond through a perfect network.
    fn exchange(a: &mut Fsm, b: &mut Fsm, now: Nanos) {
        let hb = |f: &Fsm| {
            let adv = f.advert();
            Event::Heartbeat(PeerAdvert {
                state: adv.state,
                priority: adv.priority,
                flags: adv.flags,
                term: adv.term,
                interval: 10 * MS,
                fresh: true,
                restarted: false,
            })
        };
        let (ha, hb_) = (hb(a), hb(b));
        b.step(ha, now);
        a.step(hb_, now);
        a.step(Event::Timer, now);
        b.step(Event::Timer, now);
    }

    #[test]
    fn forwarding_never_lapses_while_the_old_owner_has_the_vip() {
        let mut a = started(draining_cfg(false));
        let mut b = started(FsmConfig {
            priority: 100,
            tie_break: 2,
            peer_tie_break: 1,
            ..draining_cfg(false)
        });
        let mut t = 1;
        while t < 100 {
            exchange(&mut a, &mut b, t * MS);
            t += 1;
        }
        assert_eq!((a.state(), b.state()), (State::Active, State::Backup));
        a.step(Event::Switchover { id: 1 }, t * MS);
        let mut forwarded = 0;
        let mut both_local = 0;
        while t < 400 {
            exchange(&mut a, &mut b, t * MS);
            if b.state() == State::Active && (a.vip_held() || a.draining()) {
                assert!(b.drain_forward(t * MS), "new owner forwards at {t} ms");
                forwarded += 1;
            }
            // The other way it starts one heartbeat later (the old owner learns first).
            both_local = if a.vip_local() && b.vip_local() {
                both_local + 1
            } else {
                0
            };
            if both_local > 1 {
                assert!(a.drain_forward(t * MS), "old owner forwards at {t} ms");
            }
            t += 1;
        }
        assert!(forwarded > 100, "{forwarded}");
        assert!(!a.draining() && b.state() == State::Active);
    }

    #[test]
    fn without_draining_a_hand_over_removes_the_vip() {
        let mut f = started(cfg(200, true));
        f.step(Event::Timer, 30 * MS);
        f.step(peer(State::Backup, 100, Flags::default()), 31 * MS);
        f.step(Event::Switchover { id: 7 }, 32 * MS);
        let took = Flags {
            takeover: true,
            vip_held: true,
            ..Flags::default()
        };
        f.step(peer(State::Active, 100, took), 33 * MS);
        let a = f.step(Event::Timer, 38 * MS);
        assert!(a.contains(&Action::RemoveVip));
        assert!(!a.contains(&Action::HandOffVip));
        assert!(!f.advert().flags.draining);
    }

    #[test]
    fn switchover_refused_without_live_peer() {
        let mut f = started(cfg(200, true));
        f.step(Event::Timer, 30 * MS);
        let a = f.step(Event::Switchover { id: 1 }, 31 * MS);
        assert!(matches!(
            &a[..],
            [Action::SwitchoverDone {
                id: 1,
                result: Err(SwitchoverError::PeerUnavailable(_))
            }]
        ));
        assert_eq!(f.state(), State::Active);
    }

    #[test]
    fn release_times_out_and_keeps_vip() {
        let mut f = started(cfg(200, true));
        f.step(Event::Timer, 30 * MS);
        f.step(peer(State::Backup, 100, Flags::default()), 31 * MS);
        f.step(Event::Switchover { id: 3 }, 32 * MS);
        let mut t = 32 * MS;
        let mut got = None;
        while t < 600 * MS {
            t += 5 * MS;
            // The peer stays alive but never takes over.
            let mut actions = f.step(peer(State::Backup, 100, Flags::default()), t);
            actions.extend(f.step(Event::Timer, t));
            for a in actions {
                if let Action::SwitchoverDone { id, result } = a {
                    got = Some((id, result, t));
                }
            }
            if got.is_some() {
                break;
            }
        }
        let (id, result, at) = got.expect("answered");
        assert_eq!((id, result), (3, Err(SwitchoverError::Timeout)));
        assert!((532 * MS..540 * MS).contains(&at), "at {at}");
        assert_eq!(f.state(), State::Active);
        assert!(!f.advert().flags.release);
    }

    #[test]
    fn preemption_waits_for_hold_down() {
        let mut f = started(cfg(200, true));
        f.step(peer(State::Active, 100, active_flags()), MS);
        assert_eq!(f.state(), State::Backup);
        assert_eq!(f.status(MS).hold_down_left_ns, 999 * MS);
        let mut t = MS;
        while t < 999 * MS {
            t += 10 * MS;
            f.step(peer(State::Active, 100, active_flags()), t.min(999 * MS));
            assert_eq!(f.state(), State::Backup, "at {t}");
        }
        f.step(Event::Timer, 1000 * MS);
        assert_eq!(f.state(), State::Active);
        assert!(f.advert().flags.takeover);
    }
}
