//! Active-backup uplinks: which underlay device carries our traffic, as plain data and a pure
//! `observe`/`tick` that turn what netlink says about the devices into actions, so tests
//! drive it with a simulated clock.
//!
//! Uplinks are listed in order of preference. Every present one is attached (its frames are
//! received whatever the fabric chooses); one is active (we send on it). The active one is
//! left at once when it loses carrier or disappears. A more preferred uplink that comes back
//! takes over again only with `failback`, and only after staying up for the hold-down time,
//! so a link that thrashes up and down does not drag the traffic along.

use std::time::{Duration, Instant};

/// What netlink says about one uplink's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No device of that name.
    Absent,
    /// Present with this index, no carrier (or administratively down).
    Down { index: u32 },
    /// Present with this index and carrier.
    Up { index: u32 },
}

impl Seen {
    pub fn index(self) -> Option<u32> {
        match self {
            Seen::Absent => None,
            Seen::Down { index } | Seen::Up { index } => Some(index),
        }
    }

    pub fn is_up(self) -> bool {
        matches!(self, Seen::Up { .. })
    }
}

/// Why the active uplink changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The first uplink to carry traffic.
    Start,
    /// The active uplink lost carrier.
    CarrierLost,
    /// The active uplink's device disappeared.
    Removed,
    /// The active uplink's device was replaced (same name, new index).
    Replaced,
    /// A more preferred uplink stayed up for the hold-down time.
    Failback,
    /// An uplink came up while none was usable.
    Recovered,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Start => "start",
            Cause::CarrierLost => "carrier lost",
            Cause::Removed => "device removed",
            Cause::Replaced => "device replaced",
            Cause::Failback => "failback",
            Cause::Recovered => "an uplink came up",
        })
    }
}

/// What the data plane must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Device `index` is uplink `uplink` now: attach the program, bind sockets.
    Attach { uplink: usize, index: u32 },
    /// Device `index` of uplink `uplink` is gone: forget its program and sockets.
    Forget { uplink: usize, index: u32 },
    /// Send on uplink `uplink` (device `index`) from now on.
    Activate {
        uplink: usize,
        index: u32,
        cause: Cause,
    },
    /// No uplink can carry traffic.
    Deactivate { cause: Cause },
}

/// One uplink as the selection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub seen: Seen,
    /// Since when it has been up without interruption.
    up_since: Option<Instant>,
}

/// The uplinks and which one is active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplinks {
    links: Vec<Uplink>,
    active: Option<usize>,
    failback: bool,
    hold: Duration,
    /// How many times the active uplink changed (the first activation not counted).
    pub switches: u64,
    /// Some uplink was ever active.
    started: bool,
}

impl Uplinks {
    /// `names` in order of preference, none of them seen yet.
    pub fn new(names: &[String], failback: bool, hold: Duration) -> Uplinks {
        Uplinks {
            links: names
                .iter()
                .map(|n| Uplink {
                    name: n.clone(),
                    seen: Seen::Absent,
                    up_since: None,
                })
                .collect(),
            active: None,
            failback,
            hold,
            switches: 0,
            started: false,
        }
    }

    pub fn links(&self) -> &[Uplink] {
        &self.links
    }

    /// The active uplink's position and device index.
    pub fn active(&self) -> Option<(usize, u32)> {
        let a = self.active?;
        Some((a, self.links[a].seen.index()?))
    }

    /// Takes in what netlink says about uplink `uplink` now.
    pub fn observe(&mut self, uplink: usize, seen: Seen, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(link) = self.links.get_mut(uplink) else {
            return out;
        };
        let before = link.seen;
        if before == seen {
            return out;
        }
        link.seen = seen;
        let replaced = before.index().is_some() && before.index() != seen.index();
        if let (true, Some(index)) = (replaced, before.index()) {
            out.push(Action::Forget { uplink, index });
        }
        if let Some(index) = seen.index()
            && before.index() != Some(index)
        {
            out.push(Action::Attach { uplink, index });
        }
        if !seen.is_up() {
            link.up_since = None;
        } else if !before.is_up() || replaced {
            link.up_since = Some(now);
        }
        let cause = match seen {
            Seen::Absent => Cause::Removed,
            Seen::Down { .. } => Cause::CarrierLost,
            Seen::Up { .. } if replaced => Cause::Replaced,
            Seen::Up { .. } => Cause::Recovered,
        };
        if self.active == Some(uplink) && seen.is_up() && replaced {
            // Same uplink, new device: traffic must move to the new index.
            if let Some(index) = seen.index() {
                out.push(Action::Activate {
                    uplink,
                    index,
                    cause,
                });
            }
            return out;
        }
        out.extend(self.select(now, cause));
        out
    }

    /// Re-judges with time passing (failback after the hold-down).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.select(now, Cause::Failback)
    }

    /// When `tick` may next have something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.active?;
        if !self.failback {
            return None;
        }
        self.links[..a]
            .iter()
            .filter_map(|l| l.up_since)
            .map(|t| t + self.hold)
            .min()
    }

    fn held(&self, i: usize, now: Instant) -> bool {
        self.links[i]
            .up_since
            .is_some_and(|t| now.duration_since(t) >= self.hold)
    }

    fn select(&mut self, now: Instant, cause: Cause) -> Vec<Action> {
        let usable = |l: &Uplink| l.seen.is_up();
        let current = self.active.filter(|&a| usable(&self.links[a]));
        let choice = match current {
            Some(a) if self.failback => (0..a).find(|&i| self.held(i, now)).or(Some(a)),
            Some(a) => Some(a),
            // Nothing active: rather an uplink that has stayed up, else any that is up.
            None => (0..self.links.len())
                .find(|&i| self.held(i, now))
                .or_else(|| (0..self.links.len()).find(|&i| usable(&self.links[i]))),
        };
        if choice == self.active {
            return Vec::new();
        }
        let first = !self.started;
        self.started = true;
        let was = self.active;
        self.active = choice;
        match choice {
            Some(uplink) => {
                let index = self.links[uplink].seen.index().unwrap_or(0);
                let cause = match (was, current) {
                    (None, _) if first => Cause::Start,
                    (Some(_), Some(_)) => Cause::Failback,
                    _ => cause,
                };
                if cause != Cause::Start {
                    self.switches += 1;
                }
                vec![Action::Activate {
                    uplink,
                    index,
                    cause,
                }]
            }
            None => vec![Action::Deactivate { cause }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two(failback: bool) -> (Uplinks, Instant) {
        let names = ["vf0".to_string(), "eth0".to_string()];
        (
            Uplinks::new(&names, failback, Duration::from_secs(5)),
            Instant::now(),
        )
    }

    fn activated(actions: &[Action]) -> Option<(usize, Cause)> {
        actions.iter().find_map(|a| match a {
            Action::Activate { uplink, cause, .. } => Some((*uplink, *cause)),
            _ => None,
        })
    }

    #[test]
    fn starts_on_the_most_preferred_uplink_that_is_up() {
        let (mut u, t) = two(true);
        let a = u.observe(1, Seen::Up { index: 3 }, t);
        assert_eq!(
            a,
            vec![
                Action::Attach {
                    uplink: 1,
                    index: 3
                },
                Action::Activate {
                    uplink: 1,
                    index: 3,
                    cause: Cause::Start
                }
            ]
        );
        // The primary appears a moment later: attached, but failback waits for the hold-down.
        let a = u.observe(0, Seen::Up { index: 7 }, t);
        assert_eq!(
            a,
            vec![Action::Attach {
                uplink: 0,
                index: 7
            }]
        );
        assert_eq!(u.active(), Some((1, 3)));
        assert!(u.tick(t + Duration::from_secs(4)).is_empty());
        let a = u.tick(t + Duration::from_secs(5));
        assert_eq!(activated(&a), Some((0, Cause::Failback)));
        assert_eq!(u.switches, 1);
    }

    #[test]
    fn carrier_loss_switches_at_once_and_failback_waits_for_the_hold_down() {
        let (mut u, t) = two(true);
        u.observe(0, Seen::Up { index: 7 }, t);
        u.observe(1, Seen::Up { index: 3 }, t);
        assert_eq!(u.active(), Some((0, 7)));
        let a = u.observe(0, Seen::Down { index: 7 }, t + Duration::from_secs(1));
        assert_eq!(activated(&a), Some((1, Cause::CarrierLost)));
        // Back up, then down again before the hold-down: the traffic never moves back.
        let t2 = t + Duration::from_secs(2);
        assert!(u.observe(0, Seen::Up { index: 7 }, t2).is_empty());
        assert_eq!(u.next_deadline(), Some(t2 + Duration::from_secs(5)));
        assert!(u.tick(t2 + Duration::from_secs(3)).is_empty());
        assert!(
            u.observe(0, Seen::Down { index: 7 }, t2 + Duration::from_secs(3))
                .is_empty()
        );
        let t3 = t2 + Duration::from_secs(4);
        assert!(u.observe(0, Seen::Up { index: 7 }, t3).is_empty());
        assert!(u.tick(t3 + Duration::from_millis(4999)).is_empty());
        assert_eq!(
            activated(&u.tick(t3 + Duration::from_secs(5))),
            Some((0, Cause::Failback))
        );
        assert_eq!(u.switches, 2);
    }

    #[test]
    fn without_failback_the_backup_keeps_the_traffic() {
        let (mut u, t) = two(false);
        u.observe(0, Seen::Up { index: 7 }, t);
        u.observe(1, Seen::Up { index: 3 }, t);
        u.observe(0, Seen::Down { index: 7 }, t);
        assert_eq!(u.active(), Some((1, 3)));
        u.observe(0, Seen::Up { index: 7 }, t);
        assert!(u.tick(t + Duration::from_secs(3600)).is_empty());
        assert_eq!(u.next_deadline(), None);
        // Until the backup fails in turn.
        let a = u.observe(1, Seen::Absent, t + Duration::from_secs(3601));
        assert_eq!(
            a,
            vec![
                Action::Forget {
                    uplink: 1,
                    index: 3
                },
                Action::Activate {
                    uplink: 0,
                    index: 7,
                    cause: Cause::Removed
                }
            ]
        );
    }

    #[test]
    fn a_replaced_device_is_forgotten_reattached_and_takes_the_traffic_back() {
        let (mut u, t) = two(true);
        u.observe(0, Seen::Up { index: 7 }, t);
        u.observe(1, Seen::Up { index: 3 }, t);
        let a = u.observe(0, Seen::Absent, t);
        assert_eq!(
            a,
            vec![
                Action::Forget {
                    uplink: 0,
                    index: 7
                },
                Action::Activate {
                    uplink: 1,
                    index: 3,
                    cause: Cause::Removed
                }
            ]
        );
        // Re-created with a new index, first without carrier.
        let a = u.observe(0, Seen::Down { index: 9 }, t);
        assert_eq!(
            a,
            vec![Action::Attach {
                uplink: 0,
                index: 9
            }]
        );
        assert!(u.observe(0, Seen::Up { index: 9 }, t).is_empty());
        assert_eq!(
            activated(&u.tick(t + Duration::from_secs(5))),
            Some((0, Cause::Failback))
        );
        assert_eq!(u.active(), Some((0, 9)));
    }

    #[test]
    fn the_active_device_replaced_while_up_moves_to_the_new_index() {
        let (mut u, t) = two(true);
        u.observe(0, Seen::Up { index: 7 }, t);
        let a = u.observe(0, Seen::Up { index: 9 }, t);
        assert_eq!(
            a,
            vec![
                Action::Forget {
                    uplink: 0,
                    index: 7
                },
                Action::Attach {
                    uplink: 0,
                    index: 9
                },
                Action::Activate {
                    uplink: 0,
                    index: 9,
                    cause: Cause::Replaced
                }
            ]
        );
    }

    #[test]
    fn no_uplink_up_deactivates_and_the_first_one_back_recovers() {
        let (mut u, t) = two(true);
        u.observe(0, Seen::Up { index: 7 }, t);
        u.observe(1, Seen::Down { index: 3 }, t);
        let a = u.observe(0, Seen::Down { index: 7 }, t);
        assert_eq!(
            a,
            vec![Action::Deactivate {
                cause: Cause::CarrierLost
            }]
        );
        assert_eq!(u.active(), None);
        // The backup comes up first: it takes the traffic at once, no hold-down.
        let a = u.observe(1, Seen::Up { index: 3 }, t);
        assert_eq!(activated(&a), Some((1, Cause::Recovered)));
    }

    #[test]
    fn unknown_uplinks_and_repeated_observations_do_nothing() {
        let (mut u, t) = two(true);
        assert!(u.observe(5, Seen::Up { index: 1 }, t).is_empty());
        u.observe(0, Seen::Up { index: 7 }, t);
        assert!(u.observe(0, Seen::Up { index: 7 }, t).is_empty());
        assert_eq!(u.switches, 0);
    }
}
