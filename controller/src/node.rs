//! One member of the pair without I/O: the state machine behind the heartbeat receive path
//! (length, tag, own-echo, replay checks) and the send path (sequence numbers, tags).
//!
//! The daemon ([`crate::runtime`]) feeds it datagrams and timer ticks and carries out its
//! actions; the simulation tests do the same with a simulated network and clock.

use serde::{Deserialize, Serialize};

use crate::{
    auth::{Key, Order, PeerReplay},
    fsm::{Action, Advert, Event, Fsm, FsmConfig, Nanos},
    packet::{self, HEARTBEAT_LEN, Heartbeat, OpenError},
};

/// Everything the controller counts. The runtime fills in the fields the node does not see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Heartbeats sealed for sending.
    pub hb_sent: u64,
    /// Heartbeats the socket refused.
    pub hb_send_errors: u64,
    /// Heartbeats accepted from the peer.
    pub hb_received: u64,
    /// Datagrams that were not heartbeats (length, or bad fields under a good tag).
    pub malformed: u64,
    /// Datagrams with a wrong tag (wrong key or altered).
    pub forged: u64,
    /// Authentic heartbeats refused as replays (duplicate, older than the window, old epoch).
    pub replayed: u64,
    /// Accepted heartbeats that arrived out of order (liveness only).
    pub reordered: u64,
    /// Our own heartbeats coming back (misconfigured peer address).
    pub looped: u64,
    /// Times the peer restarted (new epoch).
    pub peer_restarts: u64,
    /// State transitions.
    pub transitions: u64,
    /// VIP addresses added.
    pub vip_added: u64,
    /// VIP addresses removed.
    pub vip_removed: u64,
    /// Failed VIP additions or removals.
    pub vip_errors: u64,
    /// Announcement bursts started.
    pub announce_bursts: u64,
    /// Gratuitous ARP requests sent.
    pub garp_requests_sent: u64,
    /// Gratuitous ARP replies sent.
    pub garp_replies_sent: u64,
    /// Unsolicited neighbour advertisements sent.
    pub na_sent: u64,
    /// Announcements that could not be sent.
    pub announce_errors: u64,
    /// Health verdicts that went from good to bad.
    pub health_failures: u64,
    /// Hook commands started.
    pub hooks_run: u64,
    /// Hook commands that failed, timed out, or were dropped because too many were queued.
    pub hooks_failed: u64,
    /// Switchovers that completed.
    pub switchovers_ok: u64,
    /// Switchovers that failed.
    pub switchovers_failed: u64,
    /// Times the event loop woke more than 5 ms after a deadline (CPU starvation).
    pub late_wakeups: u64,
    /// Late wake-ups longer than the detection time (a frozen VM, a stopped process, hard
    /// starvation): after each, ownership was not asserted until the peer was heard again.
    #[serde(default)]
    pub stalls: u64,
    /// The longest of those, in milliseconds.
    #[serde(default)]
    pub longest_stall_ms: u64,
    /// Drains begun after handing the VIP over (VIP moved to loopback).
    #[serde(default)]
    pub drains: u64,
    /// Connections still open at a drain's end and reset (`drain_end = "reset"`).
    #[serde(default)]
    pub drain_resets: u64,
    /// Drain requests the data plane refused or did not answer.
    #[serde(default)]
    pub drain_errors: u64,
}

/// Parameters of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The state machine's parameters.
    pub fsm: FsmConfig,
    /// Our node id (see [`node_id`]).
    pub node_id: u32,
    /// Our epoch: must increase across restarts (wall-clock nanoseconds at start).
    pub epoch: u64,
}

/// A node id from a node name (FNV-1a), so configs need no extra number.
pub fn node_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// One member of the pair, without I/O.
#[derive(Clone, Debug)]
pub struct Node {
    fsm: Fsm,
    key: Key,
    node_id: u32,
    epoch: u64,
    next_seq: u64,
    interval_us: u32,
    peer: PeerReplay,
    /// Counters.
    pub counters: Counters,
}

impl Node {
    /// A node in Init.
    pub fn new(cfg: NodeConfig, key: Key) -> Node {
        let interval_us = u32::try_from(cfg.fsm.interval / 1_000)
            .unwrap_or(u32::MAX)
            .max(1);
        Node {
            fsm: Fsm::new(cfg.fsm),
            key,
            node_id: cfg.node_id,
            epoch: cfg.epoch,
            next_seq: 1,
            interval_us,
            peer: PeerReplay::default(),
            counters: Counters::default(),
        }
    }

    /// The state machine.
    pub fn fsm(&self) -> &Fsm {
        &self.fsm
    }

    /// Our epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The peer's epoch, once heard.
    pub fn peer_epoch(&self) -> Option<u64> {
        self.peer.epoch()
    }

    /// Feeds an event other than a heartbeat (those come through [`receive`](Self::receive)).
    pub fn handle(&mut self, event: Event, now: Nanos) -> Vec<Action> {
        let actions = self.fsm.step(event, now);
        self.count(&actions);
        actions
    }

    /// When to call [`handle`](Self::handle) with [`Event::Timer`] at the latest.
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.fsm.next_deadline()
    }

    /// Processes a received datagram. Anything that is not a fresh, authentic heartbeat from
    /// the peer is counted and dropped without reaching the state machine.
    pub fn receive(&mut self, datagram: &[u8], now: Nanos) -> Vec<Action> {
        let hb = match packet::open(datagram, &self.key) {
            Ok(hb) => hb,
            Err(OpenError::Forged) => {
                self.counters.forged += 1;
                return Vec::new();
            }
            Err(OpenError::Malformed(_)) => {
                self.counters.malformed += 1;
                return Vec::new();
            }
        };
        if hb.node_id == self.node_id {
            self.counters.looped += 1;
            return Vec::new();
        }
        let accepted = match self.peer.accept(hb.epoch, hb.seq) {
            Ok(a) => a,
            Err(_) => {
                self.counters.replayed += 1;
                return Vec::new();
            }
        };
        self.counters.hb_received += 1;
        if accepted.restarted {
            self.counters.peer_restarts += 1;
        }
        let fresh = accepted.order == Order::InOrder;
        if !fresh {
            self.counters.reordered += 1;
        }
        let event = Event::Heartbeat(crate::fsm::PeerAdvert {
            state: hb.state,
            priority: hb.priority,
            flags: hb.flags,
            term: hb.term,
            interval: Nanos::from(hb.interval_us).saturating_mul(1_000),
            fresh,
            restarted: accepted.restarted,
        });
        self.handle(event, now)
    }

    /// The datagram for a [`Action::SendHeartbeat`]: numbers and tags it.
    pub fn seal(&mut self, advert: &Advert) -> [u8; HEARTBEAT_LEN] {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.counters.hb_sent += 1;
        Heartbeat {
            state: advert.state,
            flags: advert.flags,
            priority: advert.priority,
            node_id: self.node_id,
            interval_us: self.interval_us,
            epoch: self.epoch,
            seq,
            term: advert.term,
        }
        .encode(&self.key)
    }

    fn count(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Transition(_) => self.counters.transitions += 1,
                Action::SwitchoverDone { result: Ok(()), .. } => self.counters.switchovers_ok += 1,
                Action::SwitchoverDone { result: Err(_), .. } => {
                    self.counters.switchovers_failed += 1
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{Flags, MS, State};

    fn cfg(priority: u8, id: u32, epoch: u64) -> NodeConfig {
        NodeConfig {
            fsm: FsmConfig {
                priority,
                preempt: false,
                interval: 10 * MS,
                multiplier: 3,
                hold_down: 1000 * MS,
                switchover_timeout: 500 * MS,
                release_linger: 0,
                tie_break: u128::from(id),
                peer_tie_break: 0,
                drain: 0,
                drain_keep: false,
                startup: 0,
                wall_origin_us: 0,
            },
            node_id: id,
            epoch,
        }
    }

    fn key() -> Key {
        Key::from_bytes(&[9; 32]).unwrap()
    }

    #[test]
    fn node_ids_differ_and_are_stable() {
        assert_eq!(node_id(""), 0x811c_9dc5);
        assert_eq!(node_id("a"), 0xe40c_292c);
        assert_ne!(node_id("pri"), node_id("sec"));
    }

    #[test]
    fn receive_path_counts_and_filters() {
        let mut a = Node::new(cfg(100, 1, 50), key());
        let mut b = Node::new(cfg(200, 2, 60), key());
        a.handle(
            Event::Start {
                healthy: true,
                reason: String::new(),
            },
            0,
        );
        b.handle(
            Event::Start {
                healthy: true,
                reason: String::new(),
            },
            0,
        );
        let adv = Advert {
            state: State::Active,
            priority: 200,
            flags: Flags::default(),
            term: 0,
        };
        let w1 = b.seal(&adv);
        let w2 = b.seal(&adv);
        assert!(!a.receive(&w2, MS).is_empty());
        assert_eq!(a.counters.hb_received, 1);
        // Seq 1 after seq 2: reordered, liveness only.
        a.receive(&w1, MS);
        assert_eq!(a.counters.reordered, 1);
        // Replays.
        assert!(a.receive(&w1, MS).is_empty());
        assert!(a.receive(&w2, MS).is_empty());
        assert_eq!(a.counters.replayed, 2);
        // Our own heartbeat looped back.
        let own = a.seal(&adv);
        assert!(a.receive(&own, MS).is_empty());
        assert_eq!(a.counters.looped, 1);
        // Garbage and forgeries.
        assert!(a.receive(b"hello", MS).is_empty());
        let mut forged = b.seal(&adv);
        forged[5] = 255;
        assert!(a.receive(&forged, MS).is_empty());
        assert_eq!((a.counters.malformed, a.counters.forged), (1, 1));
        // The peer restarts with a higher epoch: accepted from seq 1.
        let mut b2 = Node::new(cfg(200, 2, 61), key());
        assert!(!a.receive(&b2.seal(&adv), 2 * MS).is_empty());
        assert_eq!(a.counters.peer_restarts, 1);
        assert_eq!(a.peer_epoch(), Some(61));
        // And the old life's heartbeats are replays now.
        a.receive(&b.seal(&adv), 2 * MS);
        assert_eq!(a.counters.replayed, 3);
        assert_eq!(a.counters.hb_received, 3);
    }
}
