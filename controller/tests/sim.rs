//! Two controllers wired through a simulated network, on a simulated clock: no sleeps, no
//! sockets. Every datagram goes through the real receive path (length, HMAC, replay window).
//!
//! The harness checks invariants after every event: a node's idea of holding the VIP matches
//! the VIP actions it issued, and while the network is whole, two nodes never hold the VIP
//! longer than a takeover's overlap allows.

// Test helpers outside #[test] functions: clippy.toml's allow-unwrap-in-tests does not
// reach them, and a panic is the right failure here.
#![allow(clippy::unwrap_used)]

use std::{cmp::Reverse, collections::BinaryHeap};

use controller::{
    auth::Key,
    fsm::{
        Action, Cause, Event, Flags, FsmConfig, MS, Nanos, RECOVERY_SILENCE, State,
        SwitchoverError, Transition,
    },
    node::{Node, NodeConfig},
    packet::{HEARTBEAT_LEN, Heartbeat},
};

const INTERVAL: Nanos = 10 * MS;
const DETECT: Nanos = 3 * INTERVAL;
const LINGER: Nanos = 20 * MS;
/// Draining after planned hand-overs, in every scenario.
const DRAIN: Nanos = 300 * MS;
const DELAY: Nanos = 100_000; // 100 us one way
const SEC: Nanos = 1_000 * MS;
/// The default silent startup: a detection time and a round trip (two intervals).
const STARTUP: Nanos = DETECT + 2 * INTERVAL;

fn key() -> Key {
    Key::from_bytes(b"sim key: at least sixteen bytes").unwrap()
}

/// Node 0 is "pri" (10.0.2.2), node 1 "sec" (10.0.3.2).
fn fsm_cfg(me: usize, priority: u8, preempt: bool, hold_down: Nanos) -> FsmConfig {
    let addr = |i: usize| {
        if i == 0 {
            0x0a00_0202u128
        } else {
            0x0a00_0302u128
        }
    };
    FsmConfig {
        priority,
        preempt,
        interval: INTERVAL,
        multiplier: 3,
        hold_down,
        switchover_timeout: 500 * MS,
        release_linger: LINGER,
        tie_break: addr(me),
        peer_tie_break: addr(1 - me),
        drain: DRAIN,
        drain_keep: false,
        startup: STARTUP,
        wall_origin_us: 0,
    }
}

/// xorshift64*: deterministic randomness for drops and flap timing.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: Nanos, hi: Nanos) -> Nanos {
        lo + self.below(hi - lo + 1)
    }
}

/// (delivery time, send order, destination, datagram)
type InFlight = (Nanos, u64, usize, Vec<u8>);

struct Member {
    node: Node,
    cfg: FsmConfig,
    alive: bool,
    /// Frozen (a paused VM, a stopped process) since then: no steps; what reaches it waits.
    frozen: Option<Nanos>,
    held: Vec<Vec<u8>>,
    epoch: u64,
    vip: bool,
    /// The VIP on loopback: draining after a planned hand-over.
    lo: bool,
}

struct Sim {
    now: Nanos,
    m: [Member; 2],
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: Rng,
    /// Node i's underlay link up (down: its datagrams are lost both ways).
    link: [bool; 2],
    /// The path between the two is cut.
    partition: bool,
    drop_percent: u64,
    delay: Nanos,
    /// Time the network last became whole.
    healed_at: Nanos,
    /// Since when both hold the VIP.
    dual_since: Option<Nanos>,
    /// Which node the client's ARP cache points at, and how often that changed.
    client: Option<usize>,
    moves: u32,
    transitions: Vec<(usize, Transition)>,
    done: Vec<(usize, u64, Result<(), SwitchoverError>, Nanos)>,
    /// Every datagram sent, for replay attacks.
    sent: Vec<(usize, Vec<u8>)>,
    /// Longest time without any live holder, since `gap_reset`.
    no_owner_since: Option<Nanos>,
    max_no_owner: Nanos,
    /// Longest time two running members held the VIP after the network last became whole
    /// (or a member thawed).
    max_dual: Nanos,
}

impl Sim {
    fn new(cfg0: FsmConfig, cfg1: FsmConfig) -> Sim {
        let member = |i: usize, cfg: FsmConfig| Member {
            node: Node::new(
                NodeConfig {
                    fsm: cfg,
                    node_id: i as u32 + 1,
                    epoch: 1_000,
                },
                key(),
            ),
            cfg,
            alive: false,
            frozen: None,
            held: Vec::new(),
            epoch: 1_000,
            vip: false,
            lo: false,
        };
        Sim {
            now: 0,
            m: [member(0, cfg0), member(1, cfg1)],
            in_flight: BinaryHeap::new(),
            seq: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            link: [true, true],
            partition: false,
            drop_percent: 0,
            delay: DELAY,
            healed_at: 0,
            dual_since: None,
            client: None,
            moves: 0,
            transitions: Vec::new(),
            done: Vec::new(),
            sent: Vec::new(),
            no_owner_since: None,
            max_no_owner: 0,
            max_dual: 0,
        }
    }

    fn pair(preempt: bool, hold_down: Nanos) -> Sim {
        Sim::new(
            fsm_cfg(0, 200, preempt, hold_down),
            fsm_cfg(1, 100, preempt, hold_down),
        )
    }

    fn whole(&self) -> bool {
        !self.partition && self.link[0] && self.link[1]
    }

    fn state(&self, i: usize) -> State {
        self.m[i].node.fsm().state()
    }

    fn active_count(&self) -> usize {
        (0..2)
            .filter(|&i| self.running(i) && self.state(i) == State::Active)
            .count()
    }

    fn holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| self.running(i) && self.m[i].vip)
            .collect()
    }

    /// Alive and not frozen. A frozen member's VIP serves nobody, so it is not a holder.
    fn running(&self, i: usize) -> bool {
        self.m[i].alive && self.m[i].frozen.is_none()
    }

    /// Freezes node i: the process stops being scheduled (its VM paused).
    fn freeze(&mut self, i: usize) {
        self.m[i].frozen = Some(self.now);
    }

    /// Thaws node i, as its runtime resumes: it notices how late its loop woke, then reads
    /// what queued in its socket meanwhile, in order, then runs its timers.
    fn thaw(&mut self, i: usize) {
        let Some(since) = self.m[i].frozen.take() else {
            return;
        };
        let deadline = self.m[i].node.next_deadline().unwrap_or(since).max(since);
        let late = self.now.saturating_sub(deadline);
        // A thawed member is like a healed network: resolution is measured from here.
        self.healed_at = self.now;
        if late > 0 {
            self.event(i, Event::Stalled { late });
        }
        for wire in std::mem::take(&mut self.m[i].held) {
            let a = self.m[i].node.receive(&wire, self.now);
            self.apply(i, a);
        }
    }

    /// Cuts node i's link without its health check noticing (a link lost and returned
    /// faster than the check's fall count).
    fn cut_link_unnoticed(&mut self, i: usize, cut: bool) {
        let was_whole = self.whole();
        self.link[i] = !cut;
        if !was_whole && self.whole() {
            self.healed_at = self.now;
        }
    }

    fn start(&mut self, i: usize) {
        self.m[i].alive = true;
        let a = self.m[i].node.handle(
            Event::Start {
                healthy: true,
                reason: String::new(),
            },
            self.now,
        );
        self.apply(i, a);
    }

    /// Process death: no more steps, nothing delivered. Its VIP is treated as gone (the real
    /// daemon removes a leftover VIP when it starts again, and never announces it).
    fn crash(&mut self, i: usize) {
        self.m[i].alive = false;
        self.m[i].vip = false;
        self.m[i].frozen = None;
        self.m[i].held.clear();
    }

    /// A new process with a higher epoch.
    fn restart(&mut self, i: usize) {
        let epoch = self.m[i].epoch + 1;
        self.m[i].epoch = epoch;
        self.m[i].node = Node::new(
            NodeConfig {
                fsm: self.m[i].cfg,
                node_id: i as u32 + 1,
                epoch,
            },
            key(),
        );
        self.start(i);
    }

    fn event(&mut self, i: usize, e: Event) {
        let a = self.m[i].node.handle(e, self.now);
        self.apply(i, a);
    }

    fn set_health(&mut self, i: usize, healthy: bool) {
        self.event(
            i,
            Event::Health {
                healthy,
                reason: if healthy {
                    String::new()
                } else {
                    "test".into()
                },
            },
        );
    }

    /// Underlay link of node i: cuts its datagrams and, as the link watcher would, its health.
    fn set_link(&mut self, i: usize, up: bool) {
        let was_whole = self.whole();
        self.link[i] = up;
        if !was_whole && self.whole() {
            self.healed_at = self.now;
        }
        if self.m[i].alive {
            self.set_health(i, up);
        }
    }

    fn set_partition(&mut self, cut: bool) {
        let was_whole = self.whole();
        self.partition = cut;
        if !was_whole && self.whole() {
            self.healed_at = self.now;
        }
    }

    fn switchover(&mut self, i: usize, id: u64) {
        self.event(i, Event::Switchover { id });
    }

    /// Injects raw bytes at node i (an attacker on the underlay).
    fn inject(&mut self, i: usize, bytes: &[u8]) {
        let a = self.m[i].node.receive(bytes, self.now);
        self.apply(i, a);
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendHeartbeat(adv) => {
                    let wire = self.m[i].node.seal(&adv).to_vec();
                    self.sent.push((i, wire.clone()));
                    let lost = !self.whole() || self.rng.below(100) < self.drop_percent;
                    if !lost {
                        self.seq += 1;
                        self.in_flight.push(Reverse((
                            self.now + self.delay,
                            self.seq,
                            1 - i,
                            wire,
                        )));
                    }
                }
                Action::AddVip => {
                    assert!(!self.m[i].vip, "node {i}: AddVip while holding it");
                    self.m[i].vip = true;
                    // Back from draining: the VIP leaves loopback for the interface.
                    self.m[i].lo = false;
                }
                Action::RemoveVip => {
                    assert!(self.m[i].vip, "node {i}: RemoveVip while not holding it");
                    self.m[i].vip = false;
                }
                Action::HandOffVip => {
                    assert!(self.m[i].vip, "node {i}: HandOffVip while not holding it");
                    assert!(!self.m[i].lo, "node {i}: HandOffVip while draining");
                    self.m[i].vip = false;
                    self.m[i].lo = true;
                }
                Action::EndDrain { .. } => {
                    assert!(self.m[i].lo, "node {i}: EndDrain while not draining");
                    self.m[i].lo = false;
                }
                Action::Announce => {
                    assert!(self.m[i].vip, "node {i}: announcing a VIP it does not hold");
                    // The client hears it only over a working link.
                    if self.link[i] && self.client != Some(i) {
                        if self.client.is_some() {
                            self.moves += 1;
                        }
                        self.client = Some(i);
                    }
                }
                Action::Transition(t) => self.transitions.push((i, t)),
                Action::SwitchoverDone { id, result } => self.done.push((i, id, result, self.now)),
            }
        }
        assert_eq!(
            self.m[i].node.fsm().vip_held(),
            self.m[i].vip,
            "node {i} VIP bookkeeping"
        );
        self.check();
    }

    fn check(&mut self) {
        let holders = self.holders();
        // Two holders: only briefly while a takeover completes, unless the network is split.
        if holders.len() == 2 {
            let since = *self.dual_since.get_or_insert(self.now);
            if self.whole() {
                let from = since.max(self.healed_at);
                self.max_dual = self.max_dual.max(self.now - from);
                // With random loss, resolution waits for a heartbeat to get through.
                let rounds = if self.drop_percent > 0 { 10 } else { 1 };
                let allowed = LINGER + rounds * INTERVAL + 4 * self.delay + MS;
                assert!(
                    self.now - from <= allowed,
                    "both hold the VIP for {} ms at t={} ms with the network whole",
                    (self.now - from) / MS,
                    self.now / MS
                );
            }
        } else {
            self.dual_since = None;
        }
        if holders.is_empty() {
            let since = *self.no_owner_since.get_or_insert(self.now);
            self.max_no_owner = self.max_no_owner.max(self.now - since);
        } else {
            self.no_owner_since = None;
        }
    }

    fn gap_reset(&mut self) {
        self.max_no_owner = 0;
        self.no_owner_since = if self.holders().is_empty() {
            Some(self.now)
        } else {
            None
        };
    }

    /// Runs until `until`, processing deliveries and timers in time order.
    fn run_until(&mut self, until: Nanos) {
        loop {
            let mut next = until;
            if let Some(Reverse((t, ..))) = self.in_flight.peek() {
                next = next.min(*t);
            }
            for i in 0..2 {
                if self.running(i)
                    && let Some(d) = self.m[i].node.next_deadline()
                {
                    next = next.min(d);
                }
            }
            if next >= until {
                self.now = until.max(self.now);
                self.check();
                return;
            }
            self.now = next.max(self.now);
            while let Some(Reverse((t, ..))) = self.in_flight.peek() {
                if *t > self.now {
                    break;
                }
                let Some(Reverse((_, _, to, wire))) = self.in_flight.pop() else {
                    break;
                };
                // Lost if the path broke while it was in flight.
                if self.whole() && self.m[to].alive {
                    if self.m[to].frozen.is_some() {
                        self.m[to].held.push(wire);
                    } else {
                        let a = self.m[to].node.receive(&wire, self.now);
                        self.apply(to, a);
                    }
                }
            }
            for i in 0..2 {
                if self.running(i)
                    && self.m[i]
                        .node
                        .next_deadline()
                        .is_some_and(|d| d <= self.now)
                {
                    self.event(i, Event::Timer);
                }
            }
        }
    }

    fn run_for(&mut self, d: Nanos) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `pred` holds (checked after every event), at most `limit`; returns the time.
    fn run_until_pred(&mut self, limit: Nanos, pred: impl Fn(&Sim) -> bool) -> Option<Nanos> {
        let end = self.now + limit;
        let step = 50_000; // 50 us resolution for the check
        while self.now < end {
            if pred(self) {
                return Some(self.now);
            }
            let t = (self.now + step).min(end);
            self.run_until(t);
        }
        pred(self).then_some(self.now)
    }

    fn transitions_of(&self, i: usize) -> Vec<(State, State, String)> {
        self.transitions
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, t)| (t.from, t.to, t.cause.code().to_string()))
            .collect()
    }
}

fn steady_pair(preempt: bool, hold_down: Nanos) -> Sim {
    let mut s = Sim::pair(preempt, hold_down);
    s.start(0);
    s.start(1);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
    s
}

#[test]
fn startup_of_one_node_then_the_other() {
    let mut s = Sim::pair(false, SEC);
    s.start(0);
    let t = s
        .run_until_pred(SEC, |s| s.state(0) == State::Active)
        .unwrap();
    // Silent for the startup period, then speaking for a detection time: no peer heard in
    // either, so active then and not before.
    assert!(
        (STARTUP + DETECT..STARTUP + DETECT + MS).contains(&t),
        "active at {t}"
    );
    assert_eq!(s.transitions_of(0).last().unwrap().2, "no-peer");
    s.run_for(2 * SEC);
    s.start(1);
    s.run_for(5 * SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
    assert_eq!(s.holders(), vec![0]);
    assert_eq!(
        s.transitions_of(1),
        vec![(State::Init, State::Backup, "startup".into())]
    );
    assert_eq!(s.moves, 0);
}

#[test]
fn startup_of_both_at_once_elects_the_higher_priority_without_overlap() {
    for offset in [0, MS, 7 * MS] {
        let mut s = Sim::pair(false, SEC);
        s.start(1);
        s.run_for(offset);
        s.start(0);
        let t = s
            .run_until_pred(SEC, |s| s.state(0) == State::Active)
            .unwrap();
        // A node fresh from Init is silent for the startup period and then, if it heard
        // nothing, listens a detection time more before electing itself.
        assert!(
            t <= offset + STARTUP + DETECT + MS,
            "elected at {t} (offset {offset})"
        );
        s.run_for(3 * SEC);
        assert_eq!(
            (s.state(0), s.state(1)),
            (State::Active, State::Backup),
            "offset {offset}"
        );
        // Node 1 was never active and never held the VIP.
        assert!(
            s.transitions_of(1).iter().all(|t| t.1 != State::Active),
            "offset {offset}"
        );
        assert_eq!(s.transitions_of(0).last().unwrap().2, "election");
    }
}

#[test]
fn equal_priority_tie_break_by_higher_address() {
    // Same priority: node 1 (10.0.3.2) outranks node 0 (10.0.2.2).
    let mut s = Sim::new(fsm_cfg(0, 100, true, SEC), fsm_cfg(1, 100, true, SEC));
    s.start(0);
    s.start(1);
    s.run_for(2 * SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    // Equal priority never preempts: after node 1 restarts, node 0 keeps the VIP.
    s.crash(1);
    s.run_for(SEC);
    assert_eq!(s.state(0), State::Active);
    s.restart(1);
    s.run_for(10 * SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
}

#[test]
fn peer_loss_fails_over_within_detection_time() {
    for kill_at in [SEC + 3 * MS, SEC + 9 * MS] {
        let mut s = steady_pair(false, SEC);
        s.run_until(kill_at);
        s.crash(0);
        s.gap_reset();
        let t = s
            .run_until_pred(SEC, |s| s.state(1) == State::Active)
            .unwrap();
        let took = t - kill_at;
        // Last heartbeat at most one interval before the kill; detection is 3 intervals.
        assert!(
            took > DETECT - INTERVAL && took <= DETECT + MS,
            "failover took {took}"
        );
        assert_eq!(s.holders(), vec![1]);
        assert_eq!(s.client, Some(1));
        assert!(s.max_no_owner <= DETECT + MS);
        assert_eq!(s.transitions_of(1).last().unwrap().2, "peer-dead");
    }
}

#[test]
fn peer_return_with_preemption_waits_for_hold_down() {
    let hold = 2 * SEC;
    let mut s = steady_pair(true, hold);
    s.crash(0);
    s.run_for(SEC);
    assert_eq!(s.state(1), State::Active);
    let back = s.now;
    s.restart(0);
    // Not before the hold-down...
    s.run_until(back + hold - MS);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    // ...then at once, make before break, and the old owner lets go.
    let t = s
        .run_until_pred(SEC, |s| s.state(0) == State::Active)
        .unwrap();
    assert!(t <= back + hold + INTERVAL + MS, "preempted at {t}");
    assert_eq!(s.transitions_of(0).last().unwrap().2, "preempt");
    s.gap_reset();
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
    assert_eq!(s.holders(), vec![0]);
    assert_eq!(s.max_no_owner, 0, "no gap in a preemption");
    assert_eq!(s.transitions_of(1).last().unwrap().2, "peer-took-over");
    assert_eq!(s.moves, 2);
}

#[test]
fn peer_return_without_preemption_stays_backup() {
    let mut s = steady_pair(false, SEC);
    s.crash(0);
    s.run_for(SEC);
    s.restart(0);
    s.run_for(30 * SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    assert_eq!(s.holders(), vec![1]);
    assert_eq!(s.moves, 1);
}

#[test]
fn partition_then_healing_leaves_exactly_one_active() {
    for (heal_after, drop) in [(SEC, 0), (3 * SEC + 7 * MS, 0), (2 * SEC, 20)] {
        let mut s = steady_pair(false, SEC);
        s.drop_percent = drop;
        s.set_partition(true);
        s.run_for(heal_after);
        // Split brain: both active (each thinks the other died).
        assert_eq!(s.active_count(), 2);
        assert_eq!(s.client, Some(1), "the newer announcement won the client");
        assert_eq!(s.moves, 1);
        let healed = s.now;
        s.set_partition(false);
        let t = s
            .run_until_pred(SEC, |s| s.active_count() == 1 && s.holders().len() == 1)
            .unwrap();
        // One heartbeat interval (more with losses), the delay, and the loser's linger.
        let bound = if drop == 0 {
            INTERVAL + LINGER + MS
        } else {
            6 * INTERVAL + LINGER
        };
        assert!(
            t - healed <= bound,
            "resolved after {} us",
            (t - healed) / 1000
        );
        // The newer owner keeps the VIP, so the incident moved it once: no move back.
        assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
        assert_eq!(s.client, Some(1));
        assert_eq!(s.transitions_of(0).last().unwrap().2, "newer-owner");
        assert_eq!(s.moves, 1, "heal after {heal_after}, drop {drop}%");
        // And it stays resolved; the harness asserts at most one holder at every step. (With
        // 20% loss, three lost heartbeats in a row happen every second or so: each is a
        // detection, and moves, by design; so moves are counted only on a clean network.)
        s.run_for(10 * SEC);
        assert_eq!(s.active_count(), 1);
        if drop == 0 {
            assert_eq!(s.moves, 1, "heal after {heal_after}");
        }
    }
}

#[test]
fn local_health_failure_moves_the_vip_at_once() {
    let mut s = steady_pair(true, SEC);
    let t0 = s.now;
    s.set_health(0, false);
    assert_eq!(s.state(0), State::Fault);
    assert!(!s.m[0].vip, "VIP removed at once");
    // The fault heartbeat tells the peer right away: no detection time.
    let t = s
        .run_until_pred(SEC, |s| s.state(1) == State::Active)
        .unwrap();
    assert!(t - t0 <= DELAY + 100_000, "took {}", t - t0);
    assert_eq!(s.transitions_of(1).last().unwrap().2, "peer-fault");
    s.run_for(5 * SEC);
    assert_eq!(s.state(0), State::Fault);
    let back = s.now;
    s.set_health(0, true);
    assert_eq!(s.state(0), State::Backup);
    s.run_until(back + SEC - MS);
    assert_eq!(s.state(0), State::Backup, "hold-down after recovery");
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
}

#[test]
fn fault_on_both_then_recovery() {
    let mut s = steady_pair(false, SEC);
    s.set_health(1, false);
    s.set_health(0, false);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Fault, State::Fault));
    assert!(s.holders().is_empty());
    s.set_health(1, true);
    let t0 = s.now;
    // The recovered node asks (its heartbeat), the faulty peer answers at once; back from a
    // fault, the node acts on that news only after RECOVERY_SILENCE of listening (news heard
    // right after a fault may be stale).
    let t = s
        .run_until_pred(2 * SEC, |s| s.state(1) == State::Active)
        .unwrap();
    assert!(
        t - t0 <= RECOVERY_SILENCE + 2 * DELAY + 100_000,
        "took {} us",
        (t - t0) / 1000
    );
    // The other recovers right after, before the news reached it: it decides on fresh news
    // only, so it stays backup.
    s.set_health(0, true);
    s.run_for(5 * SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    assert_eq!(s.moves, 1);

    // Both recover at the same instant: exactly one active within RECOVERY_SILENCE and a few
    // round trips.
    let mut s = steady_pair(false, SEC);
    s.set_health(0, false);
    s.set_health(1, false);
    s.run_for(SEC);
    s.set_health(0, true);
    s.set_health(1, true);
    let t0 = s.now;
    let t = s
        .run_until_pred(2 * SEC, |s| s.active_count() == 1)
        .unwrap();
    assert!(
        t - t0 <= RECOVERY_SILENCE + 4 * DELAY + 100_000,
        "took {} us",
        (t - t0) / 1000
    );
    // Which one is not fixed: the higher rank, fresh from a fault, does not trust the "both
    // backup" news for RECOVERY_SILENCE, and the other takes the idle VIP after a detection
    // time. Either way exactly one stays active and the VIP does not move again.
    let holder = s.holders();
    s.run_for(5 * SEC);
    assert_eq!(s.active_count(), 1);
    assert_eq!(s.holders(), holder, "no further move");
}

/// Flaps node `flapper`'s underlay link for `duration` (down and up phases of 1 to 3 s) and
/// returns the number of client-visible VIP moves.
fn flap(hold_down: Nanos, flapper: usize, seed: u64, duration: Nanos) -> u32 {
    let mut s = steady_pair(true, hold_down);
    s.rng = Rng(seed);
    let start = s.now;
    let moves_before = s.moves;
    let mut up = true;
    while s.now < start + duration {
        let phase = s.rng.range(SEC, 3 * SEC);
        up = !up;
        s.set_link(flapper, up);
        s.run_for(phase);
        if up {
            // Healed: exactly one active (asserted at every step by the harness for the VIP).
            assert!(s.active_count() <= 1, "two active at {} ms", s.now / MS);
        }
    }
    s.set_link(flapper, true);
    let moves = s.moves - moves_before;
    // After the flapping stops the pair settles on the preferred node (preemption on).
    s.run_for(hold_down + 2 * SEC);
    assert_eq!(
        (s.state(0), s.state(1)),
        (State::Active, State::Backup),
        "settles on pri"
    );
    moves
}

#[test]
fn flapping_links_do_not_move_the_vip_faster_than_hold_down() {
    let duration = 60 * SEC;
    for hold_down in [SEC, 2 * SEC, 5 * SEC] {
        for seed in [1u64, 2, 3, 0xdead_beef] {
            for flapper in [0, 1] {
                let moves = flap(hold_down, flapper, seed, duration);
                let bound = (duration / hold_down) as u32 + 1;
                assert!(
                    moves <= bound,
                    "hold-down {} s, node {flapper} flapping, seed {seed}: {moves} moves > {bound}",
                    hold_down / SEC
                );
                if flapper == 1 {
                    // The backup's link flapping never moves the VIP.
                    assert_eq!(moves, 0);
                }
                if hold_down == 5 * SEC && flapper == 0 {
                    // Up phases are at most 3 s, shorter than hold-down: pri never preempts
                    // back during the flapping, so the VIP moved exactly once.
                    assert_eq!(moves, 1, "seed {seed}");
                }
            }
        }
    }
}

fn answers(s: &Sim, id: u64) -> Vec<(usize, Result<(), SwitchoverError>, Nanos)> {
    s.done
        .iter()
        .filter(|d| d.1 == id)
        .map(|d| (d.0, d.2.clone(), d.3))
        .collect()
}

#[test]
fn planned_switchover_run_on_the_active_node_both_directions() {
    let mut s = steady_pair(true, SEC);
    for (id, from, to) in [(1u64, 0usize, 1usize), (2, 1, 0), (3, 0, 1)] {
        assert_eq!(s.state(from), State::Active);
        let t0 = s.now;
        s.gap_reset();
        s.switchover(from, id);
        s.run_until_pred(SEC, |s| !answers(s, id).is_empty())
            .unwrap();
        let [(node, result, t)] = &answers(&s, id)[..] else {
            panic!("one answer")
        };
        assert_eq!((*node, result.clone()), (from, Ok(())));
        let t = *t;
        // Release -> takeover -> yield -> linger: the answer comes once the VIP left `from`.
        assert!(
            t - t0 <= 4 * DELAY + LINGER + 2 * MS,
            "took {} us",
            (t - t0) / 1000
        );
        assert_eq!((s.state(from), s.state(to)), (State::Backup, State::Active));
        assert_eq!(s.holders(), vec![to]);
        assert_eq!(s.client, Some(to));
        assert_eq!(
            s.max_no_owner, 0,
            "make before break: never without an owner"
        );
        assert_eq!(s.transitions_of(to).last().unwrap().2, "peer-released");
        assert_eq!(s.transitions_of(from).last().unwrap().2, "peer-took-over");
        // Preemption does not undo a planned switchover, however long we wait.
        s.run_for(10 * SEC);
        assert_eq!((s.state(from), s.state(to)), (State::Backup, State::Active));
    }
    assert_eq!(s.moves, 3);
}

#[test]
fn planned_switchover_run_on_the_backup_node_both_directions() {
    let mut s = steady_pair(true, SEC);
    for (id, from, to) in [(10u64, 0usize, 1usize), (11, 1, 0)] {
        let t0 = s.now;
        s.gap_reset();
        s.switchover(to, id);
        // The requesting node is active at once (VIP added, announced).
        assert_eq!(s.state(to), State::Active);
        assert_eq!(s.client, Some(to));
        s.run_until_pred(SEC, |s| !answers(s, id).is_empty())
            .unwrap();
        let [(node, result, t)] = &answers(&s, id)[..] else {
            panic!("one answer")
        };
        assert_eq!((*node, result.clone()), (to, Ok(())));
        let t = *t;
        // Answered once the old owner reported it no longer holds the VIP.
        assert!(
            t - t0 >= LINGER && t - t0 <= LINGER + 4 * DELAY + 2 * MS,
            "took {}",
            t - t0
        );
        assert_eq!(s.holders(), vec![to]);
        assert_eq!(s.state(from), State::Backup);
        assert_eq!(s.max_no_owner, 0);
        assert_eq!(s.transitions_of(to).last().unwrap().2, "switchover");
        s.run_for(10 * SEC);
        assert_eq!((s.state(from), s.state(to)), (State::Backup, State::Active));
    }
}

#[test]
fn switchover_refused_when_the_peer_cannot_take_over() {
    let mut s = steady_pair(false, SEC);
    s.set_health(1, false);
    s.run_for(SEC);
    s.switchover(0, 5);
    assert!(matches!(
        &answers(&s, 5)[..],
        [(0, Err(SwitchoverError::PeerUnavailable(_)), _)]
    ));
    s.switchover(1, 6);
    assert!(matches!(
        &answers(&s, 6)[..],
        [(1, Err(SwitchoverError::NotReady(State::Fault)), _)]
    ));
    s.set_health(1, true);
    s.run_for(SEC);
    // The peer dies while the release waits: aborted, VIP kept.
    s.switchover(0, 7);
    s.set_partition(true);
    s.run_for(SEC);
    let a = answers(&s, 7);
    assert!(
        matches!(&a[..], [(0, Err(SwitchoverError::PeerUnavailable(_)), _)]),
        "{a:?}"
    );
    assert_eq!(s.state(0), State::Active);
    assert!(s.m[0].vip);
}

#[test]
fn forged_and_replayed_heartbeats_change_nothing() {
    let mut s = steady_pair(false, SEC);
    // Capture a real heartbeat of node 0 saying Fault, then let node 0 recover.
    s.set_health(0, false);
    s.run_for(SEC);
    let fault_hb = s
        .sent
        .iter()
        .rev()
        .find(|(i, _)| *i == 0)
        .unwrap()
        .1
        .clone();
    s.set_health(0, true);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    let before: Vec<_> = (0..2).map(|i| s.transitions_of(i).len()).collect();
    let c1 = s.m[1].node.counters.clone();
    let c0 = s.m[0].node.counters.clone();

    // Replays: node 0's old fault heartbeat (would make node 1 stay active... and node 0's
    // earlier heartbeats), node 1's own old release-free heartbeats at node 0.
    let old0: Vec<Vec<u8>> = s
        .sent
        .iter()
        .filter(|(i, _)| *i == 0)
        .take(50)
        .map(|x| x.1.clone())
        .collect();
    let old1: Vec<Vec<u8>> = s
        .sent
        .iter()
        .filter(|(i, _)| *i == 1)
        .take(50)
        .map(|x| x.1.clone())
        .collect();
    for w in &old0 {
        s.inject(1, w);
    }
    s.inject(1, &fault_hb);
    for w in &old1 {
        s.inject(0, w);
    }
    // Forgeries: a wrong key claiming a takeover with top priority, at both nodes.
    let evil = Key::from_bytes(b"not the shared key at all!").unwrap();
    for (to, seq) in [(0usize, 1u64), (1, 2), (1, u64::MAX)] {
        let hb = Heartbeat {
            state: State::Active,
            flags: Flags {
                release: true,
                takeover: true,
                vip_held: true,
                draining: true,
            },
            priority: 255,
            node_id: 99,
            interval_us: 10_000,
            epoch: u64::MAX,
            seq,
            term: u64::MAX,
        };
        s.inject(to, &hb.encode(&evil));
        // The right bytes with one bit flipped in the tag.
        let mut w = old0.last().unwrap().clone();
        w[63] ^= 0x80;
        s.inject(to, &w);
    }
    // Garbage.
    s.inject(1, b"");
    s.inject(1, &[0u8; HEARTBEAT_LEN]);
    s.inject(0, &[0xffu8; 200]);

    s.run_for(5 * SEC);
    let after: Vec<_> = (0..2).map(|i| s.transitions_of(i).len()).collect();
    assert_eq!(before, after, "no transition");
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    let d1 = &s.m[1].node.counters;
    let d0 = &s.m[0].node.counters;
    assert_eq!(d1.replayed - c1.replayed, old0.len() as u64 + 1);
    assert_eq!(d0.replayed - c0.replayed, old1.len() as u64);
    // Four forgeries and a heartbeat's length of zero bytes (no valid tag).
    assert_eq!(d1.forged - c1.forged, 5);
    assert_eq!(d0.forged - c0.forged, 2);
    assert_eq!(d1.malformed - c1.malformed, 1, "empty datagram");
    assert_eq!(d0.malformed - c0.malformed, 1, "200 bytes");
}

#[test]
fn restarted_peer_with_new_epoch_is_accepted_old_epoch_is_not() {
    let mut s = steady_pair(false, SEC);
    let old: Vec<Vec<u8>> = s
        .sent
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|x| x.1.clone())
        .collect();
    s.crash(0);
    s.run_for(SEC);
    s.restart(0);
    s.run_for(SEC);
    assert_eq!(s.m[1].node.counters.peer_restarts, 1);
    assert_eq!(s.m[1].node.peer_epoch(), Some(1_001));
    assert!(s.m[1].node.fsm().peer_alive(s.now));
    let replayed = s.m[1].node.counters.replayed;
    // The previous life's heartbeats (state Active!) are replays now.
    for w in old.iter().rev().take(5) {
        s.inject(1, w);
    }
    assert_eq!(s.m[1].node.counters.replayed, replayed + 5);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
}

#[test]
fn lossy_network_keeps_one_owner() {
    // 30% loss: the peer is rarely declared dead (3 losses in a row ~ 2.7%), and every time
    // the pair heals back to one owner. The harness checks the overlap bound at every step.
    let mut s = steady_pair(false, SEC);
    s.drop_percent = 30;
    s.run_for(60 * SEC);
    s.drop_percent = 0;
    s.run_for(SEC);
    assert_eq!(s.active_count(), 1);
    assert_eq!(s.holders().len(), 1);
}

#[test]
fn shutdown_tells_the_peer_at_once() {
    let mut s = steady_pair(false, SEC);
    let t0 = s.now;
    s.event(0, Event::Shutdown);
    assert_eq!(s.state(0), State::Fault);
    assert!(!s.m[0].vip);
    let t = s
        .run_until_pred(SEC, |s| s.state(1) == State::Active)
        .unwrap();
    assert!(t - t0 <= MS);
    // Health recovering after a shutdown does not bring it back.
    s.set_health(0, true);
    assert_eq!(s.state(0), State::Fault);
    let causes: Vec<_> = s.transitions.iter().map(|(_, t)| t.cause.clone()).collect();
    assert!(causes.contains(&Cause::Shutdown));
}

// --- Incidents: the VIP moves at most once without being asked ------------------------------

/// Bound on dual-active after an incident ends: a heartbeat interval, the delay both ways and
/// the loser's linger.
const DUAL_BOUND: Nanos = INTERVAL + LINGER + 4 * DELAY + MS;

#[test]
fn a_frozen_owner_moves_the_vip_once_and_only_preemption_brings_it_back() {
    // Shorter than the detection time: nothing moves. Longer: one move, and the member that
    // took over keeps the VIP when the frozen one resumes believing it is active.
    for (freeze, moves) in [
        (20 * MS, 0),
        (50 * MS, 1),
        (300 * MS, 1),
        (3 * SEC, 1),
        (10 * SEC, 1),
    ] {
        let hold_down = 30 * SEC;
        let mut s = steady_pair(true, hold_down);
        s.max_dual = 0;
        let t0 = s.now;
        s.freeze(0);
        s.run_for(freeze);
        s.thaw(0);
        s.run_for(5 * SEC);
        assert_eq!(s.moves, moves, "frozen {} ms", freeze / MS);
        assert!(
            s.max_dual <= DUAL_BOUND,
            "frozen {} ms: both held the VIP for {} us after the resume",
            freeze / MS,
            s.max_dual / 1000
        );
        if moves == 0 {
            assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
            continue;
        }
        assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
        assert_eq!(s.transitions_of(0).last().unwrap().2, "newer-owner");
        // The one that yielded learned the owner's term.
        assert_eq!(
            s.m[0].node.fsm().status(s.now).term,
            s.m[1].node.fsm().status(s.now).term
        );
        // Back only by preemption after the hold-down: a planned move.
        let back = s
            .run_until_pred(2 * hold_down, |s| s.state(0) == State::Active)
            .unwrap();
        assert!(back >= t0 + freeze + hold_down, "back at {back}");
        assert_eq!(s.transitions_of(0).last().unwrap().2, "preempt");
        s.run_for(SEC);
        assert_eq!(s.moves, 2);
        assert_eq!(s.holders(), vec![0]);
    }
}

#[test]
fn a_frozen_backup_moves_nothing() {
    for freeze in [50 * MS, 3 * SEC, 10 * SEC] {
        let mut s = steady_pair(true, SEC);
        let before = s.transitions.len();
        s.freeze(1);
        s.run_for(freeze);
        s.thaw(1);
        s.run_for(3 * SEC);
        assert_eq!(s.moves, 0, "frozen {} ms", freeze / MS);
        assert_eq!(s.transitions.len(), before, "no transition at all");
        assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
    }
}

#[test]
fn both_stalled_at_once_moves_nothing() {
    // One host starving both members (or both VMs paused together).
    for (freeze, first) in [(100 * MS, 0), (3 * SEC, 1), (3 * SEC, 0)] {
        let mut s = steady_pair(false, SEC);
        let before = s.transitions.len();
        s.freeze(0);
        s.freeze(1);
        s.run_for(freeze);
        s.thaw(first);
        s.run_for(MS);
        s.thaw(1 - first);
        s.run_for(3 * SEC);
        assert_eq!(s.moves, 0, "frozen {} ms", freeze / MS);
        assert_eq!(s.transitions.len(), before, "no transition at all");
        assert_eq!(s.holders(), vec![0]);
    }
}

#[test]
fn the_owner_restarted_moves_the_vip_at_most_once() {
    // Killed and started again after `down`, sooner or later than the survivor's detection:
    // the restarted member listens silently first, so the survivor takes over (once) or the
    // restarted one finds the VIP with it; never there and back.
    for down in [5 * MS, 25 * MS, 40 * MS, 100 * MS, 2 * SEC] {
        let mut s = steady_pair(true, 30 * SEC);
        s.crash(0);
        s.run_for(down);
        s.restart(0);
        s.run_for(5 * SEC);
        assert!(s.moves <= 1, "down {} ms: {} moves", down / MS, s.moves);
        assert_eq!(s.holders().len(), 1, "down {} ms", down / MS);
        assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
        assert_eq!(s.max_dual, 0, "down {} ms", down / MS);
    }
}

#[test]
fn the_owner_restarted_while_the_survivor_stalls_moves_the_vip_at_most_once() {
    // The survivor is not scheduled while the owner restarts: it resumes before, during or
    // after the restarted member's silent startup.
    for (restart_after, stall) in [
        (10 * MS, 30 * MS),
        (10 * MS, 70 * MS),
        (10 * MS, 200 * MS),
        (100 * MS, 500 * MS),
        (100 * MS, 3 * SEC),
    ] {
        let mut s = steady_pair(true, 30 * SEC);
        s.crash(0);
        s.freeze(1);
        s.run_for(restart_after);
        s.restart(0);
        s.run_for(stall - restart_after);
        s.thaw(1);
        s.run_for(5 * SEC);
        let case = format!(
            "restart after {} ms, stall {} ms",
            restart_after / MS,
            stall / MS
        );
        assert!(s.moves <= 1, "{case}: {} moves", s.moves);
        assert_eq!(s.holders().len(), 1, "{case}");
        assert_eq!(s.active_count(), 1, "{case}");
        assert!(
            s.max_dual <= DUAL_BOUND,
            "{case}: dual {} us",
            s.max_dual / 1000
        );
    }
}

#[test]
fn the_owners_link_lost_and_back_before_its_health_check_noticed_moves_once() {
    for down in [50 * MS, 200 * MS, 2 * SEC] {
        let mut s = steady_pair(false, SEC);
        s.max_dual = 0;
        s.cut_link_unnoticed(0, true);
        s.run_for(down);
        s.cut_link_unnoticed(0, false);
        s.run_for(3 * SEC);
        assert_eq!(s.moves, 1, "down {} ms", down / MS);
        assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
        assert_eq!(s.transitions_of(0).last().unwrap().2, "newer-owner");
        assert!(s.max_dual <= DUAL_BOUND, "dual {} us", s.max_dual / 1000);
    }
}

#[test]
fn concurrent_takeovers_are_ordered_by_wall_clock_and_rank_breaks_a_tie() {
    // Both take over during a partition; the later takeover keeps the VIP whichever member it
    // is, even with the member's clocks apart by less than the time between takeovers.
    let mut cfg0 = fsm_cfg(0, 200, false, SEC);
    let cfg1 = fsm_cfg(1, 100, false, SEC);
    cfg0.wall_origin_us = 20_000; // node 0's clock is 20 ms ahead
    let mut s = Sim::new(cfg0, cfg1);
    s.start(0);
    s.start(1);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Active, State::Backup));
    s.set_partition(true);
    s.run_for(SEC);
    assert_eq!(s.active_count(), 2);
    s.set_partition(false);
    s.run_for(SEC);
    assert_eq!((s.state(0), s.state(1)), (State::Backup, State::Active));
    assert_eq!(s.moves, 1);
}
