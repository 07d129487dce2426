//! The control thread's bookkeeping of the forwarding database and the next hops, as plain
//! data with pure methods (no maps, sockets or clocks of their own): the daemon feeds them
//! what it observed and the time, and carries out what they decide. Tests drive them with a
//! simulated clock.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

/// An FDB key: VNI and inner MAC.
pub type MacKey = (u32, [u8; 6]);

/// What a learn report did to the FDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The MAC has a configured entry, which learning never overrides.
    Static,
    /// Known behind the same VTEP: only its time was refreshed.
    Refreshed,
    /// New, but the FDB holds `max_learned` entries already: not learned.
    Full,
    /// New: the program's map needs the entry.
    New,
    /// Moved to another VTEP: the program's map needs the new remote.
    Moved { from: IpAddr },
}

impl Learned {
    /// Whether the program's FDB map must be written.
    pub fn changed(self) -> bool {
        matches!(self, Learned::New | Learned::Moved { .. })
    }
}

/// Static and learned MAC → VTEP entries.
#[derive(Clone, Debug)]
pub struct Fdb {
    statics: HashMap<MacKey, IpAddr>,
    /// Learned entries and when they were last reported.
    learned: HashMap<MacKey, (IpAddr, Instant)>,
    ageing: Duration,
    max_learned: usize,
}

impl Fdb {
    pub fn new(
        statics: impl IntoIterator<Item = (MacKey, IpAddr)>,
        ageing: Duration,
        max_learned: usize,
    ) -> Fdb {
        Fdb {
            statics: statics.into_iter().collect(),
            learned: HashMap::new(),
            ageing,
            max_learned,
        }
    }

    /// A worker saw `key` behind `remote` at `now`.
    pub fn learn(&mut self, key: MacKey, remote: IpAddr, now: Instant) -> Learned {
        if self.statics.contains_key(&key) {
            return Learned::Static;
        }
        let outcome = match self.learned.get(&key) {
            Some((ip, _)) if *ip == remote => Learned::Refreshed,
            Some((ip, _)) => Learned::Moved { from: *ip },
            None if self.learned.len() >= self.max_learned => return Learned::Full,
            None => Learned::New,
        };
        self.learned.insert(key, (remote, now));
        outcome
    }

    /// Learned entries not reported for the ageing time. Known sources' frames never reach
    /// the workers, so these are only candidates: `settle` decides with the program's stamp.
    pub fn stale(&self, now: Instant) -> Vec<MacKey> {
        self.learned
            .iter()
            .filter(|(_, (_, seen))| now.saturating_duration_since(*seen) >= self.ageing)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Settles a stale entry given how long ago the program last forwarded from it (None: it
    /// has no stamp): kept, with that time as its last sighting, if it is within the ageing
    /// time; removed otherwise. Returns whether it was removed.
    pub fn settle(
        &mut self,
        key: MacKey,
        program_seen_ago: Option<Duration>,
        now: Instant,
    ) -> bool {
        match program_seen_ago {
            Some(ago) if ago < self.ageing => {
                if let Some(entry) = self.learned.get_mut(&key) {
                    entry.1 = now.checked_sub(ago).unwrap_or(now);
                }
                false
            }
            _ => self.learned.remove(&key).is_some(),
        }
    }

    /// What the program's map should hold for `key`: the remote, and whether it is static.
    pub fn wanted(&self, key: &MacKey) -> Option<(IpAddr, bool)> {
        self.statics
            .get(key)
            .map(|ip| (*ip, true))
            .or_else(|| self.learned.get(key).map(|(ip, _)| (*ip, false)))
    }

    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    pub fn static_len(&self) -> usize {
        self.statics.len()
    }

    /// Every entry: key, remote, static.
    pub fn entries(&self) -> impl Iterator<Item = (&MacKey, &IpAddr, bool)> {
        let learned = self.learned.iter().map(|(k, (ip, _))| (k, ip, false));
        learned.chain(self.statics.iter().map(|(k, ip)| (k, ip, true)))
    }
}

/// A change of a remote's published next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHopChange {
    pub remote: IpAddr,
    pub old: Option<[u8; 6]>,
    pub new: Option<[u8; 6]>,
}

/// The outer next-hop MAC of every remote VTEP we send to, through every uplink device, and
/// the one published for the active uplink (what the program and the workers use).
#[derive(Clone, Debug, Default)]
pub struct NextHops {
    by_uplink: HashMap<(u32, IpAddr), [u8; 6]>,
    published: HashMap<IpAddr, Option<[u8; 6]>>,
    /// Remotes whose missing route was reported (once per outage).
    unroutable: HashSet<IpAddr>,
}

impl NextHops {
    /// Starts keeping `remote`'s next hop. Returns whether it is new.
    pub fn want(&mut self, remote: IpAddr) -> bool {
        if self.published.contains_key(&remote) {
            return false;
        }
        self.published.insert(remote, None);
        true
    }

    pub fn remotes(&self) -> Vec<IpAddr> {
        self.published.keys().copied().collect()
    }

    pub fn unresolved(&self) -> Vec<IpAddr> {
        self.published
            .iter()
            .filter(|(_, mac)| mac.is_none())
            .map(|(r, _)| *r)
            .collect()
    }

    pub fn any_unresolved(&self) -> bool {
        self.published.values().any(Option::is_none)
    }

    /// Some remotes are wanted and not one of them is resolved.
    pub fn none_resolved(&self) -> bool {
        !self.published.is_empty() && self.published.values().all(Option::is_none)
    }

    /// The published next hop of `remote`: None if not wanted, Some(None) if unresolved.
    pub fn published(&self, remote: &IpAddr) -> Option<Option<[u8; 6]>> {
        self.published.get(remote).copied()
    }

    /// The resolved next hops, as published.
    pub fn resolved(&self) -> impl Iterator<Item = (IpAddr, [u8; 6])> + '_ {
        self.published
            .iter()
            .filter_map(|(r, m)| m.map(|m| (*r, m)))
    }

    /// Every wanted remote and its published next hop.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Option<[u8; 6]>)> {
        self.published.iter()
    }

    /// What a look-up through uplink device `index` found for `remote`.
    pub fn observe(&mut self, index: u32, remote: IpAddr, mac: Option<[u8; 6]>) {
        match mac {
            Some(m) => self.by_uplink.insert((index, remote), m),
            None => self.by_uplink.remove(&(index, remote)),
        };
    }

    /// Uplink device `index` is gone: what was seen through it is forgotten.
    pub fn forget_uplink(&mut self, index: u32) {
        self.by_uplink.retain(|(i, _), _| *i != index);
    }

    /// Records whether any uplink has a route to `remote`. Returns true exactly when it has
    /// just become unroutable (the moment to report it).
    pub fn routed(&mut self, remote: IpAddr, routed: bool) -> bool {
        if routed {
            self.unroutable.remove(&remote);
            false
        } else {
            self.unroutable.insert(remote)
        }
    }

    /// Publishes `remote`'s next hop through uplink device `active` (None: no uplink), as
    /// far as it is known. Returns the change, if it is one.
    pub fn choose(&mut self, remote: IpAddr, active: Option<u32>) -> Option<NextHopChange> {
        let new = active.and_then(|i| self.by_uplink.get(&(i, remote)).copied());
        let old = self.published.insert(remote, new).flatten();
        (old != new).then_some(NextHopChange { remote, old, new })
    }
}

/// Failed writes to the programs' maps, kept until a later write of the same key succeeds:
/// the control thread retries them from its tables (what the map should hold now, not the
/// write that failed), so the maps converge however many writes fail.
#[derive(Clone, Debug, Default)]
pub struct Retries {
    pub fdb: HashSet<MacKey>,
    pub nexthops: HashSet<IpAddr>,
    /// Map writes that failed, in all.
    pub failures: u64,
}

impl Retries {
    /// Notes the outcome of a write of FDB `key`.
    pub fn fdb_written(&mut self, key: MacKey, ok: bool) {
        if ok {
            self.fdb.remove(&key);
        } else {
            self.failures += 1;
            self.fdb.insert(key);
        }
    }

    /// Notes the outcome of a write of `remote`'s next hop.
    pub fn nexthop_written(&mut self, remote: IpAddr, ok: bool) {
        if ok {
            self.nexthops.remove(&remote);
        } else {
            self.failures += 1;
            self.nexthops.insert(remote);
        }
    }

    pub fn pending(&self) -> usize {
        self.fdb.len() + self.nexthops.len()
    }
}

/// Lets a repeated warning through at most once per `every`, counting what it held back.
#[derive(Clone, Debug)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    pub const fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            held: 0,
        }
    }

    /// Whether to log now; if so, how many were held back since the last one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const M1: MacKey = (7, [2, 0, 0, 0, 0, 1]);
    const M2: MacKey = (7, [2, 0, 0, 0, 0, 2]);
    const S: MacKey = (7, [2, 0, 0, 0, 0, 0x5]);
    const AGEING: Duration = Duration::from_secs(300);

    fn fdb(max: usize) -> Fdb {
        Fdb::new([(S, B)], AGEING, max)
    }

    #[test]
    fn learning_reports_new_moved_refreshed_and_never_overrides_a_static_entry() {
        let t0 = Instant::now();
        let mut f = fdb(10);
        assert_eq!(f.learn(M1, A, t0), Learned::New);
        assert_eq!(f.learn(M1, A, t0), Learned::Refreshed);
        assert_eq!(f.learn(M1, B, t0), Learned::Moved { from: A });
        assert_eq!(f.learn(S, A, t0), Learned::Static);
        assert_eq!(f.wanted(&S), Some((B, true)), "static entry untouched");
        assert_eq!(f.wanted(&M1), Some((B, false)));
        assert!(Learned::New.changed() && Learned::Moved { from: A }.changed());
        assert!(!Learned::Refreshed.changed() && !Learned::Static.changed());
        assert!(!Learned::Full.changed());
    }

    #[test]
    fn a_full_fdb_refuses_new_macs_but_still_moves_known_ones() {
        let t0 = Instant::now();
        let mut f = fdb(1);
        assert_eq!(f.learn(M1, A, t0), Learned::New);
        assert_eq!(f.learn(M2, A, t0), Learned::Full);
        assert_eq!(f.wanted(&M2), None);
        assert_eq!(f.learn(M1, B, t0), Learned::Moved { from: A });
        assert_eq!((f.learned_len(), f.static_len()), (1, 1));
    }

    #[test]
    fn ageing_keeps_what_the_program_still_forwards_and_removes_the_rest() {
        let t0 = Instant::now();
        let mut f = fdb(10);
        f.learn(M1, A, t0);
        f.learn(M2, A, t0);
        assert!(f.stale(t0 + AGEING - Duration::from_secs(1)).is_empty());
        let t1 = t0 + AGEING;
        let mut stale = f.stale(t1);
        stale.sort();
        assert_eq!(stale, vec![M1, M2], "static entries never age");
        // The program forwarded from M1 10 s ago: kept, its sighting moved to then.
        assert!(!f.settle(M1, Some(Duration::from_secs(10)), t1));
        // M2's stamp is as old as the ageing time: gone.
        assert!(f.settle(M2, Some(AGEING), t1));
        assert!(f.stale(t1).is_empty());
        assert_eq!(f.stale(t1 + AGEING - Duration::from_secs(10)), vec![M1]);
        // No stamp at all: gone.
        assert!(f.settle(M1, None, t1 + AGEING));
        assert_eq!(f.learned_len(), 0);
        let entries: Vec<_> = f.entries().collect();
        assert_eq!(entries, vec![(&S, &B, true)]);
    }

    #[test]
    fn next_hops_follow_the_active_uplink_and_report_each_change_once() {
        let mut n = NextHops::default();
        assert!(n.want(A));
        assert!(!n.want(A));
        assert!(n.none_resolved() && n.any_unresolved());
        n.observe(2, A, Some([2; 6]));
        n.observe(3, A, Some([3; 6]));
        let c = n
            .choose(A, Some(2))
            .expect("resolved through the active uplink");
        assert_eq!((c.old, c.new), (None, Some([2; 6])));
        assert_eq!(n.choose(A, Some(2)), None, "no change, nothing to publish");
        // A switch finds the other uplink's next hop already known.
        assert_eq!(n.choose(A, Some(3)).map(|c| c.new), Some(Some([3; 6])));
        n.forget_uplink(3);
        assert_eq!(n.choose(A, Some(3)).map(|c| c.new), Some(None));
        assert_eq!(n.unresolved(), vec![A]);
        assert_eq!(n.choose(A, None), None, "already unresolved");
        assert_eq!(n.published(&A), Some(None));
        assert_eq!(n.published(&B), None);
    }

    #[test]
    fn an_unroutable_remote_is_reported_once_per_outage() {
        let mut n = NextHops::default();
        assert!(n.routed(A, false));
        assert!(!n.routed(A, false));
        assert!(!n.routed(A, true));
        assert!(n.routed(A, false), "a new outage is reported again");
    }

    #[test]
    fn failed_writes_stay_pending_until_a_write_succeeds() {
        let mut r = Retries::default();
        r.fdb_written(M1, false);
        r.nexthop_written(A, false);
        r.fdb_written(M1, false);
        assert_eq!((r.pending(), r.failures), (2, 3));
        r.fdb_written(M1, true);
        r.nexthop_written(A, true);
        assert_eq!((r.pending(), r.failures), (0, 3));
    }

    #[test]
    fn a_rate_limited_warning_passes_once_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(Duration::from_secs(10));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
    }
}
