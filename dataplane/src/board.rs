//! What the control thread wants every worker to know, kept as state rather than sent as
//! messages. A message on a full channel is lost and its worker keeps a stale next hop until
//! the next change; state cannot be lost: a worker that is busy, or started late, reads the
//! newest version the next time it looks. Looking costs one atomic load per round.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

/// The workers' view of the control thread's decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Outer next-hop MAC of each remote VTEP whose next hop is resolved.
    pub nexthops: HashMap<IpAddr, [u8; 6]>,
    /// Have sockets on exactly these uplink devices (name, index).
    pub uplinks: Vec<(String, u32)>,
    /// Send on this device (None: no uplink can carry traffic) ...
    pub active: Option<u32>,
    /// ... from this MAC.
    pub local_mac: [u8; 6],
    /// Bumped to make workers bind again the uplink sockets they are missing (a bind that
    /// failed is retried this way, with `uplinks` unchanged).
    pub rebind: u64,
}

impl Wanted {
    /// Whether a worker that applied `old` must rework its uplink sockets for `self`.
    pub fn uplinks_differ(&self, old: &Wanted) -> bool {
        self.uplinks != old.uplinks
            || self.active != old.active
            || self.local_mac != old.local_mac
            || self.rebind != old.rebind
    }
}

/// The shared board: the newest `Wanted` and its version.
#[derive(Debug, Default)]
pub struct Board {
    wanted: Mutex<Arc<Wanted>>,
    /// Moves (under the lock) whenever `wanted` changes; 0 is never a posted version, so a
    /// worker that has seen nothing yet (0) always reads the board once.
    version: AtomicU64,
}

impl Board {
    pub fn new(initial: Wanted) -> Board {
        Board {
            wanted: Mutex::new(Arc::new(initial)),
            version: AtomicU64::new(1),
        }
    }

    /// Applies `change` to a copy of the newest state and posts it if it differs. Returns
    /// whether it did.
    pub fn update(&self, change: impl FnOnce(&mut Wanted)) -> bool {
        // A panic while holding the lock cannot leave `Wanted` half-written: it is replaced
        // whole, so a poisoned lock still guards a consistent value.
        let mut current = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = (**current).clone();
        change(&mut next);
        if next == **current {
            return false;
        }
        *current = Arc::new(next);
        self.version.fetch_add(1, Ordering::Release);
        true
    }

    /// The newest state and its version, if that version is not `seen`.
    pub fn newer_than(&self, seen: u64) -> Option<(u64, Arc<Wanted>)> {
        if self.version.load(Ordering::Acquire) == seen {
            return None;
        }
        let current = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock, so the version names exactly this state.
        Some((self.version.load(Ordering::Acquire), current.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn a_reader_sees_every_change_once_and_only_the_newest_state() {
        let board = Board::new(Wanted::default());
        let (v0, w0) = board.newer_than(0).expect("a fresh reader reads once");
        assert_eq!(*w0, Wanted::default());
        assert!(board.newer_than(v0).is_none(), "nothing new");
        // Two changes before the reader looks: it gets the second, not a queue of both.
        assert!(board.update(|w| {
            w.nexthops.insert(R1, [2, 0, 0, 0, 0, 1]);
        }));
        assert!(board.update(|w| {
            w.nexthops.insert(R1, [2, 0, 0, 0, 0, 2]);
        }));
        let (v1, w1) = board.newer_than(v0).expect("changed");
        assert_eq!(w1.nexthops.get(&R1), Some(&[2, 0, 0, 0, 0, 2]));
        assert!(board.newer_than(v1).is_none());
    }

    #[test]
    fn an_update_that_changes_nothing_is_not_posted() {
        let board = Board::new(Wanted::default());
        let (v, _) = board.newer_than(0).expect("first read");
        assert!(!board.update(|w| w.active = None));
        assert!(board.newer_than(v).is_none());
    }

    #[test]
    fn only_uplink_fields_make_workers_rework_their_sockets() {
        let a = Wanted::default();
        let mut b = a.clone();
        b.nexthops.insert(R1, [2; 6]);
        assert!(!b.uplinks_differ(&a), "a next hop is not an uplink change");
        b.rebind += 1;
        assert!(b.uplinks_differ(&a), "a rebind request is");
        let mut c = a.clone();
        c.uplinks.push(("eth0".into(), 2));
        assert!(c.uplinks_differ(&a));
    }
}
