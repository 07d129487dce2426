//! The control thread: uplink selection carried out, workers and their sockets, MAC learning
//! and ageing, next hops, draining, and the snapshots the API serves.

use std::{
    collections::{HashMap, HashSet},
    fs,
    net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;
use aya::programs::{XdpMode, xdp::XdpLinkId};
use crossbeam_channel::{Receiver, select};
use ovl_common::{FDB_FLAG_STATIC, FdbEntry, FdbKey, NextHop};
use ovl_netlink::{Netlink, WatchEvent, format_mac};

use crate::{
    config::{DatapathMode, XdpModeCfg},
    stats::Snapshot,
    tables::{Fdb, Learned, MacKey, NextHopChange, NextHops, RateLimit, Retries},
    uplink::{Action as UplinkAction, Cause, Seen, Uplinks},
    worker::FromWorker,
    workerset::WorkerSet,
    xdp::{Program, XdpObject},
};

use super::{
    api::{DrainReply, DrainRequest, Health, Request},
    host::{Restore, State, attach_underlay, complete_underlay_checksums},
    monotonic_ns, seen,
};

/// The last change of the active uplink.
#[derive(Clone, Debug)]
pub(super) struct Switch {
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) cause: Cause,
    /// From reading the event to telling the programs and workers.
    pub(super) took: Duration,
    pub(super) at: Instant,
}

/// An overlay port as the fast path sees it.
pub(super) struct FastPort {
    pub(super) vni: u32,
    pub(super) interface: String,
    pub(super) kernel_index: u32,
    pub(super) dp_index: u32,
    /// In the device map: the ingress program redirects to it.
    pub(super) in_map: bool,
}

pub(super) struct Control {
    /// Whether frames can be carried, as the control socket reports it.
    pub(super) health: Health,
    pub(super) workers: WorkerSet,
    pub(super) mode: DatapathMode,
    /// The ports the fast path redirects to ("xdp" mode; empty otherwise).
    pub(super) fast_ports: Vec<FastPort>,
    pub(super) xdp: XdpObject,
    pub(super) nl: Netlink,
    pub(super) uplinks: Uplinks,
    /// Uplinks with the ingress program attached: position -> (device index, link).
    pub(super) attached: HashMap<usize, (u32, XdpLinkId)>,
    pub(super) xdp_mode: XdpModeCfg,
    /// How the first uplink attached (the overlay ports' programs follow it).
    pub(super) attach_mode: Option<XdpMode>,
    /// `uname -r`, and the kernel features as probed at start, for the stats.
    pub(super) kernel: String,
    pub(super) features: Vec<crate::features::FeatureRow>,
    /// The programs' config without the active uplink's index and MAC.
    pub(super) base_config: ovl_common::Config,
    /// What the programs were last given (`base_config` with the active uplink's settings).
    pub(super) config: ovl_common::Config,
    pub(super) fast: bool,
    /// Settings changed on uplinks that appeared while running.
    pub(super) restore: Restore,
    /// The state file's contents as the run started (plus `restore` when written again).
    pub(super) state: State,
    pub(super) state_file: PathBuf,
    pub(super) last_switch: Option<Switch>,
    /// The workers' uplink sockets in the XSKMAP: (queue, device index).
    pub(super) bound: HashSet<(u32, u32)>,
    /// Uplink sockets bound after start (devices that returned).
    pub(super) sockets_rebound: u64,
    pub(super) fdb: Fdb,
    /// Next hops of the remote VTEPs through every uplink device (so a switch finds the new
    /// uplink's already resolved), and through the active one: what the programs and the
    /// workers use.
    pub(super) nexthops: NextHops,
    /// Map writes that failed, retried every second.
    pub(super) retries: Retries,
    /// Warnings that could repeat for every frame or every second.
    pub(super) warn_fdb_full: RateLimit,
    pub(super) warn_map: RateLimit,
    pub(super) warn_bind: RateLimit,
    pub(super) port_names: Vec<(u32, String)>,
    pub(super) started: Instant,
    pub(super) last_provoke: HashMap<(u32, IpAddr), Instant>,
    /// The controller's last drain request.
    pub(super) drain: DrainRequest,
}

impl Control {
    pub(super) fn run(
        &mut self,
        term: &AtomicBool,
        events: &Receiver<FromWorker>,
        reqs: &Receiver<Request>,
        links: &Receiver<(Instant, WatchEvent)>,
    ) {
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        while !term.load(Ordering::Relaxed) {
            // Judged on every pass, right after whatever changed the state: a verdict kept
            // for a period would answer `pong` for that long after the uplink went.
            self.judge_health();
            select! {
                recv(links) -> e => if let Ok((at, e)) = e { self.on_link_event(at, e) },
                recv(events) -> m => if let Ok(m) = m { self.on_worker(m) },
                recv(reqs) -> r => match r {
                    Ok(Request::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Ok(Request::Drain(req, reply)) => {
                        let answer = self.drain(req);
                        let _ = reply.send(serde_json::to_string(&answer).unwrap_or_default());
                    }
                    Err(_) => {}
                },
                default(Duration::from_millis(50)) => {}
            }
            // The programs log only on internal errors; unread, the ring would drop them.
            self.xdp.flush_logs();
            let now = Instant::now();
            if self.uplinks.next_deadline().is_some_and(|d| now >= d) {
                let actions = self.uplinks.tick(now);
                self.apply(actions, now);
            }
            if Instant::now() >= next_tick {
                next_tick += Duration::from_secs(1);
                // Level-triggered too: a lost notification costs at most this second.
                self.reobserve_uplinks();
                self.age();
                self.refresh_nexthops();
                self.retry_map_writes();
                self.rebind_missing_sockets();
                self.check_fast_ports();
                self.recheck_tx_redirect();
            } else if self.nexthops.any_unresolved() {
                // An unresolved next hop makes us unhealthy: look again every pass (the
                // provoking datagram is rate-limited), not once a second, so a member whose
                // link came back is ready in tens of milliseconds.
                self.refresh_unresolved();
            }
        }
    }

    /// Judges whether frames can be carried and publishes it for `ping`: the underlay the
    /// programs were attached to is still there (a device deleted and re-created has a new
    /// index and neither our XDP program nor our sockets) and has carrier, every worker runs,
    /// and at least one remote VTEP's next hop is resolved.
    pub(super) fn judge_health(&mut self) {
        let verdict = self.forwarding_problem().map_or(Ok(()), Err);
        if self.health.read().is_ok_and(|h| *h == verdict) {
            return;
        }
        let Ok(mut h) = self.health.write() else {
            return;
        };
        if *h != verdict {
            match &verdict {
                Ok(()) => tracing::info!("healthy: able to forward again"),
                Err(why) => tracing::warn!("unhealthy: {why}"),
            }
            *h = verdict;
        }
    }

    pub(super) fn forwarding_problem(&self) -> Option<String> {
        let Some((u, index)) = self.uplinks.active() else {
            let states: Vec<String> = self
                .uplinks
                .links()
                .iter()
                .map(|l| {
                    let st = match l.seen {
                        Seen::Absent => "absent",
                        Seen::Down { .. } => "no carrier",
                        Seen::Up { .. } => "up",
                    };
                    format!("{} {st}", l.name)
                })
                .collect();
            return Some(format!(
                "no uplink can carry traffic ({})",
                states.join(", ")
            ));
        };
        if !self.attached.contains_key(&u) {
            return Some(format!(
                "active uplink {} has no XDP program",
                self.uplink_name(u)
            ));
        }
        let queues = self.workers.counters().len() as u32;
        if !self.workers.running() || !(0..queues).all(|q| self.bound.contains(&(q, index))) {
            return Some(format!(
                "no AF_XDP sockets on active uplink {}",
                self.uplink_name(u)
            ));
        }
        if let Some(i) = self.workers.finished() {
            return Some(format!("worker {i} has stopped"));
        }
        if self.nexthops.none_resolved() {
            return Some("no remote VTEP's next hop is resolved".into());
        }
        None
    }

    pub(super) fn uplink_name(&self, u: usize) -> &str {
        &self.uplinks.links()[u].name
    }

    /// A link notification: an uplink changed (carrier, index) or went away.
    pub(super) fn on_link_event(&mut self, at: Instant, e: WatchEvent) {
        let (name, seen) = match &e {
            WatchEvent::Link(l) => (
                l.name.as_str(),
                if l.oper_up {
                    Seen::Up { index: l.index }
                } else {
                    Seen::Down { index: l.index }
                },
            ),
            WatchEvent::LinkRemoved(l) => (l.name.as_str(), Seen::Absent),
            WatchEvent::Overrun => {
                self.reobserve_uplinks();
                return;
            }
            _ => return,
        };
        let Some(u) = self.uplinks.links().iter().position(|l| l.name == name) else {
            return;
        };
        // A removal of an index we no longer track is old news.
        if seen == Seen::Absent
            && let WatchEvent::LinkRemoved(l) = &e
            && self.uplinks.links()[u].seen.index() != Some(l.index)
        {
            return;
        }
        let actions = self.uplinks.observe(u, seen, at);
        self.apply(actions, at);
    }

    /// Reads every uplink's state from the kernel and acts on what changed.
    pub(super) fn reobserve_uplinks(&mut self) {
        for u in 0..self.uplinks.links().len() {
            let Ok(seen) = seen(&self.nl, self.uplink_name(u)) else {
                continue;
            };
            let now = Instant::now();
            let actions = self.uplinks.observe(u, seen, now);
            self.apply(actions, now);
        }
    }

    /// Carries out the uplink selection's actions; the workers are restarted once at the end
    /// if the set of devices changed.
    pub(super) fn apply(&mut self, actions: Vec<UplinkAction>, at: Instant) {
        let mut rebuild = false;
        for a in actions {
            match a {
                UplinkAction::Attach { uplink, index } => {
                    self.attach_uplink(uplink, index);
                    rebuild = true;
                }
                UplinkAction::Forget { uplink, index } => {
                    tracing::warn!(uplink = %self.uplink_name(uplink), index, "uplink device gone");
                    self.detach_uplink(uplink);
                    self.nexthops.forget_uplink(index);
                    self.bound.retain(|(_, i)| *i != index);
                    rebuild = true;
                }
                UplinkAction::Activate {
                    uplink,
                    index,
                    cause,
                } => self.activate(Some((uplink, index)), cause, at),
                UplinkAction::Deactivate { cause } => self.activate(None, cause, at),
            }
        }
        if rebuild {
            self.sync_workers();
        }
    }

    pub(super) fn attach_uplink(&mut self, u: usize, index: u32) {
        let name = self.uplink_name(u).to_string();
        self.detach_uplink(u);
        if self.fast {
            let before = self.restore.tx_checksum.len();
            if let Err(e) = complete_underlay_checksums(&name, &mut self.restore) {
                tracing::warn!(uplink = %name, "{e:#}");
            }
            if self.restore.tx_checksum.len() != before {
                self.write_state();
            }
        }
        match attach_underlay(&mut self.xdp, &name, self.xdp_mode) {
            Ok((id, mode)) => {
                self.attach_mode.get_or_insert(mode);
                self.attached.insert(u, (index, id));
                if let Err(e) = self
                    .xdp
                    .set_uplink(index, self.workers.slots().uplink_base(u as u32))
                {
                    tracing::warn!(uplink = %name, "uplink map: {e}");
                }
                tracing::info!(uplink = %name, index, ?mode, "uplink attached");
            }
            Err(e) => tracing::warn!(uplink = %name, index, "attach ingress program: {e:#}"),
        }
    }

    /// Forgets uplink `u`'s program (detached if its device still exists) and map entry.
    pub(super) fn detach_uplink(&mut self, u: usize) {
        let Some((index, id)) = self.attached.remove(&u) else {
            return;
        };
        let _ = self.xdp.remove_uplink(index);
        let _ = self.xdp.detach(Program::UnderlayIngress, id);
    }

    /// The attached uplinks (position, name, device index), in order of preference.
    pub(super) fn attached_list(&self) -> Vec<(usize, String, u32)> {
        let mut list: Vec<(usize, String, u32)> = self
            .attached
            .iter()
            .map(|(&u, &(index, _))| (u, self.uplink_name(u).to_string(), index))
            .collect();
        list.sort();
        list
    }

    /// Brings the workers' sockets in line with the attached uplinks and the active one:
    /// starts the workers the first time, then tells them (new sockets come back as
    /// `FromWorker::Sockets`).
    pub(super) fn sync_workers(&mut self) {
        let list = self.attached_list();
        let active = self.uplinks.active().map(|(_, i)| i);
        let mac = self.base_config.local_mac;
        if self.workers.running() {
            let devices = list.into_iter().map(|(_, n, i)| (n, i)).collect();
            self.workers.set_uplinks(devices, active, mac);
            return;
        }
        match self.workers.start(
            &mut self.xdp,
            &list,
            active,
            mac,
            self.nexthops.resolved().collect(),
        ) {
            Ok(()) => {
                for q in 0..self.workers.counters().len() as u32 {
                    for (_, _, index) in &list {
                        self.bound.insert((q, *index));
                    }
                }
            }
            Err(e) => tracing::error!("starting the workers: {e:#}"),
        }
    }

    /// Sockets the workers bound on a returned uplink: into the XSKMAP.
    pub(super) fn on_sockets(
        &mut self,
        queue: u32,
        bound: Vec<(u32, i32)>,
        failed: Vec<(String, String)>,
    ) {
        let slots = self.workers.slots();
        for (index, fd) in bound {
            let Some((&u, _)) = self.attached.iter().find(|(_, (i, _))| *i == index) else {
                continue;
            };
            match self.xdp.set_xsk(slots.uplink_base(u as u32) + queue, fd) {
                Ok(()) => {
                    self.bound.insert((queue, index));
                    self.sockets_rebound += 1;
                }
                Err(e) => tracing::warn!(queue, uplink = %self.uplink_name(u), "XSKMAP: {e}"),
            }
        }
        // Retried every second (`rebind_missing_sockets`): say so once per period, not per try.
        for (name, why) in failed {
            if let Some(held) = self.warn_bind.allow(Instant::now()) {
                tracing::warn!(
                    queue,
                    uplink = %name,
                    held,
                    "binding the uplink's socket failed (retried every second): {why}"
                );
            }
        }
    }

    /// Whether the egress program may redirect what it encapsulated straight to uplink
    /// `index` ("xdp" mode, IPv6 VTEPs only; over IPv4 the TC program sends). In SKB mode a
    /// redirect is a plain transmit; in driver mode the device must take XDP frames
    /// (`NDO_XMIT`: a NIC with `ndo_xdp_xmit`, a veth whose peer has NAPI), or they would be
    /// dropped where no counter of ours sees it.
    pub(super) fn tx_redirect_ok(&self, index: u32) -> bool {
        self.base_config.fast_path != 0 && self.base_config.ipv6 != 0 && self.xdp_tx_ok(index)
    }

    /// Whether the ingress program on uplink `index` may send frames out of it (`XDP_TX`, or a
    /// redirect from another uplink): draining needs it.
    pub(super) fn xdp_tx_ok(&self, index: u32) -> bool {
        match self.attach_mode {
            Some(XdpMode::Skb) => true,
            _ => matches!(
                ovl_netlink::xdp_features(index),
                Ok(Some(f)) if f & ovl_netlink::xdp_act::NDO_XMIT != 0
            ),
        }
    }

    /// Re-decides `tx_redirect` for the active uplink (a veth's peer may have gained or lost
    /// NAPI), writing the config only on a change.
    pub(super) fn recheck_tx_redirect(&mut self) {
        if self.config.underlay_ifindex == 0 {
            return;
        }
        let xdp_tx = u8::from(self.xdp_tx_ok(self.config.underlay_ifindex));
        if xdp_tx != self.config.xdp_tx {
            self.config.xdp_tx = xdp_tx;
            tracing::info!(on = xdp_tx != 0, "the active uplink takes frames from XDP");
            if let Err(e) = self.xdp.set_config(self.config) {
                tracing::error!("program config: {e}");
            }
        }
        let ok = u8::from(self.tx_redirect_ok(self.config.underlay_ifindex));
        if ok != self.config.tx_redirect {
            self.config.tx_redirect = ok;
            tracing::info!(
                on = ok != 0,
                "egress redirect to the uplink (IPv6 VTEPs): workers {}",
                if ok != 0 { "bypassed" } else { "send" }
            );
            if let Err(e) = self.xdp.set_config(self.config) {
                tracing::error!("program config: {e}");
            }
        }
    }

    /// Makes uplink `to` (position, device index) the one we send on, or none.
    pub(super) fn activate(&mut self, to: Option<(usize, u32)>, cause: Cause, at: Instant) {
        let from = self.last_switch.as_ref().and_then(|s| s.to.clone());
        let mut cfg = self.base_config;
        if let Some((u, index)) = to {
            match self.nl.link_by_index(index) {
                Ok(Some(l)) => {
                    if let Some(mac) = l.mac {
                        cfg.local_mac = mac;
                    }
                }
                _ => {
                    tracing::warn!(uplink = %self.uplink_name(u), "uplink vanished while being activated")
                }
            }
            cfg.underlay_ifindex = index;
            cfg.tx_redirect = u8::from(self.tx_redirect_ok(index));
            cfg.xdp_tx = u8::from(self.xdp_tx_ok(index));
        }
        cfg.drain = self.config.drain;
        self.base_config.local_mac = cfg.local_mac;
        self.config = cfg;
        if let Err(e) = self.xdp.set_config(cfg) {
            tracing::error!("program config: {e}");
        }
        let devices = self
            .attached_list()
            .into_iter()
            .map(|(_, n, i)| (n, i))
            .collect();
        self.workers
            .set_uplinks(devices, to.map(|(_, i)| i), cfg.local_mac);
        // The new uplink's next hops, as far as they are known already.
        for r in self.nexthops.remotes() {
            if let Some(change) = self.nexthops.choose(r, to.map(|(_, i)| i)) {
                self.publish_nexthop(change);
            }
        }
        let took = at.elapsed();
        let to_name = to.map(|(u, _)| self.uplink_name(u).to_string());
        match (&to_name, cause) {
            (Some(n), Cause::Start) => tracing::info!(uplink = %n, "sending on uplink"),
            (Some(n), _) => tracing::warn!(
                from = from.as_deref().unwrap_or("none"),
                to = %n,
                %cause,
                took_us = took.as_micros() as u64,
                "uplink switched"
            ),
            (None, _) => tracing::warn!(%cause, "no uplink can carry traffic"),
        }
        self.last_switch = Some(Switch {
            from,
            to: to_name,
            cause,
            took,
            at,
        });
        self.refresh_unresolved();
    }

    /// Writes the state file again with what the run changed since it started.
    pub(super) fn write_state(&self) {
        let mut st = self.state.clone();
        st.restore
            .tx_checksum
            .extend(self.restore.tx_checksum.iter().cloned());
        if let Ok(bytes) = serde_json::to_vec(&st)
            && let Err(e) = fs::write(&self.state_file, bytes)
        {
            tracing::warn!("write {}: {e}", self.state_file.display());
        }
    }

    /// Keeps each port in the device map exactly while it can take redirected frames (up, and
    /// GRO on so its veth runs NAPI): a redirect into a port that cannot take it would vanish
    /// without a counter, a frame the workers deliver instead is counted (`rx_fast_fallback`).
    pub(super) fn check_fast_ports(&mut self) {
        for p in &mut self.fast_ports {
            let up = matches!(self.nl.link_by_index(p.kernel_index), Ok(Some(l)) if l.oper_up);
            let gro = crate::netns::gro(&p.interface).unwrap_or(false);
            let ready = up && gro;
            if ready == p.in_map {
                continue;
            }
            let result = if ready {
                self.xdp.set_port_dev(p.vni, p.dp_index)
            } else {
                self.xdp.remove_port_dev(p.vni)
            };
            match result {
                Ok(()) => {
                    p.in_map = ready;
                    if ready {
                        tracing::info!(vni = p.vni, interface = %p.interface, "fast path to the port on");
                    } else {
                        tracing::warn!(
                            vni = p.vni,
                            interface = %p.interface,
                            up,
                            gro,
                            "port cannot take redirected frames: the workers deliver its traffic until it can"
                        );
                    }
                }
                Err(e) => tracing::warn!(vni = p.vni, "device map update: {e}"),
            }
        }
    }

    pub(super) fn on_worker(&mut self, m: FromWorker) {
        match m {
            FromWorker::Learn { vni, mac, remote } => {
                let now = Instant::now();
                match self.fdb.learn((vni, mac), remote, now) {
                    Learned::Full => {
                        if let Some(held) = self.warn_fdb_full.allow(now) {
                            tracing::warn!(
                                held,
                                "FDB full ({} learned); not learning more",
                                self.fdb.learned_len()
                            );
                        }
                    }
                    l if l.changed() => {
                        tracing::debug!(vni, mac = %format_mac(&mac), %remote, "learned");
                        self.write_fdb((vni, mac));
                        if self.nexthops.want(remote) {
                            self.refresh_one(remote);
                        }
                    }
                    _ => {}
                }
            }
            FromWorker::Sockets {
                queue,
                bound,
                failed,
            } => self.on_sockets(queue, bound, failed),
            FromWorker::Resolve { remote } => {
                self.nexthops.want(remote);
                self.refresh_one(remote);
            }
        }
    }

    /// Removes learned entries not seen for the ageing time. Frames of known sources never
    /// reach userspace, so "seen" is the later of the last learn report and the stamp the
    /// ingress program keeps in the FDB entry.
    pub(super) fn age(&mut self) {
        let now = Instant::now();
        let mono = monotonic_ns();
        for key in self.fdb.stale(now) {
            let seen_ago = match self.xdp.fdb(FdbKey::new(key.0, key.1)) {
                Ok(Some(e)) if e.seen_ns != 0 => {
                    Some(Duration::from_nanos(mono.saturating_sub(e.seen_ns)))
                }
                _ => None,
            };
            if self.fdb.settle(key, seen_ago, now) {
                tracing::debug!(vni = key.0, mac = %format_mac(&key.1), "aged out");
                self.write_fdb(key);
            }
        }
    }

    /// Makes the program's FDB entry of `key` what the table holds (removed if nothing);
    /// a failure is counted, logged (rate-limited) and retried every second.
    pub(super) fn write_fdb(&mut self, key: MacKey) {
        let map_key = FdbKey::new(key.0, key.1);
        let result = match self.fdb.wanted(&key) {
            Some((remote, fixed)) => self.xdp.set_fdb(
                map_key,
                FdbEntry {
                    remote: ovl_common::vtep_addr(remote),
                    flags: if fixed { FDB_FLAG_STATIC } else { 0 },
                    _pad: 0,
                    seen_ns: if fixed { 0 } else { monotonic_ns() },
                },
            ),
            // Already absent is what we want.
            None => self.xdp.remove_fdb(map_key).map(|_| ()),
        };
        let ok = self.map_write("FDB", result);
        self.retries.fdb_written(key, ok);
    }

    /// Makes the program's next hop of `remote` what the table publishes.
    pub(super) fn write_nexthop(&mut self, remote: IpAddr) {
        let addr = ovl_common::vtep_addr(remote);
        let result = match self.nexthops.published(&remote).flatten() {
            Some(mac) => self.xdp.set_nexthop(addr, NextHop { mac, _pad: [0; 2] }),
            None => self.xdp.remove_nexthop(addr).map(|_| ()),
        };
        let ok = self.map_write("next-hop", result);
        self.retries.nexthop_written(remote, ok);
    }

    pub(super) fn map_write(
        &mut self,
        map: &str,
        result: Result<(), crate::xdp::XdpError>,
    ) -> bool {
        let Err(e) = result else {
            return true;
        };
        if let Some(held) = self.warn_map.allow(Instant::now()) {
            tracing::warn!(held, "{map} map update failed (retried every second): {e}");
        }
        false
    }

    /// Writes again what failed to reach the maps.
    pub(super) fn retry_map_writes(&mut self) {
        for key in std::mem::take(&mut self.retries.fdb) {
            self.write_fdb(key);
        }
        for remote in std::mem::take(&mut self.retries.nexthops) {
            self.write_nexthop(remote);
        }
    }

    /// Asks the workers to bind again where an attached uplink lacks a socket (a bind that
    /// failed, or a descriptor the XSKMAP refused), once a second until it has them all.
    pub(super) fn rebind_missing_sockets(&mut self) {
        if !self.workers.running() {
            return;
        }
        let queues = self.workers.counters().len() as u32;
        let missing = self
            .attached
            .values()
            .any(|(index, _)| (0..queues).any(|q| !self.bound.contains(&(q, *index))));
        if missing {
            self.workers.rebind();
        }
    }

    pub(super) fn refresh_unresolved(&mut self) {
        for r in self.nexthops.unresolved() {
            self.refresh_one(r);
        }
    }

    pub(super) fn refresh_nexthops(&mut self) {
        for r in self.nexthops.remotes() {
            self.refresh_one(r);
        }
    }

    /// Looks up the outer next-hop MAC for `remote` through every attached uplink with
    /// carrier (route through that device, then its neighbour entry) and publishes the active
    /// uplink's. An unresolved neighbour is provoked with a datagram to the discard port sent
    /// out of that device, so the kernel ARPs for it there.
    pub(super) fn refresh_one(&mut self, remote: IpAddr) {
        let devices: Vec<(u32, String)> = self
            .uplinks
            .links()
            .iter()
            .filter_map(|l| match l.seen {
                Seen::Up { index } => Some((index, l.name.clone())),
                _ => None,
            })
            .collect();
        let mut routed = false;
        let mut last_err = None;
        for (index, name) in devices {
            let mac = match self.nl.route_get_via(remote, index) {
                Ok(route) => {
                    routed = true;
                    let via = route.gateway.unwrap_or(remote);
                    match self.nl.neighbour(index, via) {
                        Ok(Some(n)) if n.is_usable() => n.mac,
                        _ => {
                            self.provoke(index, &name, via);
                            None
                        }
                    }
                }
                Err(e) => {
                    last_err = Some(e.to_string());
                    None
                }
            };
            self.nexthops.observe(index, remote, mac);
        }
        if let Some(e) = last_err.filter(|_| !routed)
            && self.nexthops.routed(remote, false)
        {
            tracing::warn!(%remote, "no route to remote VTEP through any uplink: {e}");
        } else if routed {
            self.nexthops.routed(remote, true);
        }
        let active = self.uplinks.active().map(|(_, i)| i);
        if let Some(change) = self.nexthops.choose(remote, active) {
            self.publish_nexthop(change);
        }
    }

    /// Gives a changed next hop to the program and the workers.
    pub(super) fn publish_nexthop(&mut self, c: NextHopChange) {
        match c.new {
            Some(mac) => {
                tracing::info!(remote = %c.remote, mac = %format_mac(&mac), "next hop resolved")
            }
            None => tracing::warn!(remote = %c.remote, "next hop lost"),
        }
        self.write_nexthop(c.remote);
        self.workers.set_nexthop(c.remote, c.new);
    }

    /// Makes the kernel resolve `via` out of `device` (ARP, or neighbour discovery for IPv6)
    /// by sending it an empty datagram to the discard port, at most every 200 ms.
    pub(super) fn provoke(&mut self, index: u32, device: &str, via: IpAddr) {
        let now = Instant::now();
        if self
            .last_provoke
            .get(&(index, via))
            .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(200))
        {
            return;
        }
        self.last_provoke.insert((index, via), now);
        let (bind, dst) = match via {
            IpAddr::V4(_) => ("0.0.0.0:0", SocketAddr::new(via, 9)),
            // A link-local gateway (the usual IPv6 next hop) needs the device as its scope.
            IpAddr::V6(a) => ("[::]:0", SocketAddr::V6(SocketAddrV6::new(a, 9, 0, index))),
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            return;
        };
        // Out of this uplink, whatever the routing table prefers.
        // SAFETY: setsockopt on our own socket with a buffer of the given length.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                device.as_ptr().cast(),
                device.len() as libc::socklen_t,
            )
        };
        if rc == 0 {
            let _ = s.send_to(&[], dst);
        }
    }
}

impl Control {
    /// Applies a drain request (see [`DrainRequest`]).
    pub(super) fn drain(&mut self, req: DrainRequest) -> DrainReply {
        let mut reply = DrainReply::default();
        let port = match (&req.interface, self.port_names.as_slice()) {
            (Some(name), _) => Some(name.clone()),
            (None, [(_, only)]) => Some(only.clone()),
            (None, _) => None,
        };
        let port_mac = match port.as_deref().map(|n| self.nl.link_by_name(n)) {
            Some(Ok(Some(l))) => l.mac.unwrap_or_default(),
            Some(Ok(None)) => {
                reply.error = format!("no interface {}", port.unwrap_or_default());
                return reply;
            }
            Some(Err(e)) => {
                reply.error = format!("interface {}: {e}", port.unwrap_or_default());
                return reply;
            }
            None if req.accept => {
                reply.error = "several overlay ports: name the VIPs' interface".into();
                return reply;
            }
            None => [0; 6],
        };
        if let Some(to) = req.forward_to
            && to.is_ipv6() != (self.base_config.ipv6 != 0)
        {
            reply.error = format!("forward_to {to}: not of the VTEPs' address family");
            return reply;
        }
        let starting = req.forward_to.is_some() && req.forward_to != self.drain.forward_to;
        if starting {
            let _ = self.xdp.clear_drain_flows();
            tracing::info!(to = %req.forward_to.unwrap_or(IpAddr::from([0u8; 4])), vips = ?req.vips, "drain: forwarding connections without a socket here to the previous owner");
        } else if req.forward_to.is_none()
            && let Some(to) = self.drain.forward_to
        {
            let flows = self.xdp.drain_flows().unwrap_or(0);
            tracing::info!(%to, flows, "drain: forwarding ended");
        }
        if req.accept != self.drain.accept {
            tracing::info!(vips = ?req.vips, on = req.accept, "drain: serving drained frames");
        }
        // Entries of VIPs no longer listed go; the listed ones are written whole.
        let keep: Vec<[u8; 16]> = req.vips.iter().map(|v| ovl_common::vtep_addr(*v)).collect();
        if let Ok(present) = self.xdp.drain_vips() {
            for (k, _) in present {
                if !keep.contains(&k) {
                    let _ = self.xdp.remove_drain_vip(k);
                }
            }
        }
        let peer = req
            .forward_to
            .map(ovl_common::vtep_addr)
            .unwrap_or_default();
        for k in &keep {
            let d = ovl_common::DrainVip {
                peer,
                port_mac,
                forward: u8::from(req.forward_to.is_some()),
                accept: u8::from(req.accept),
            };
            let r = if d.forward == 0 && d.accept == 0 {
                self.xdp.remove_drain_vip(*k)
            } else {
                self.xdp.set_drain_vip(*k, d)
            };
            if let Err(e) = r {
                reply.error = format!("drain map: {e}");
                tracing::error!("{}", reply.error);
            }
        }
        if let Some(to) = req.forward_to
            && self.nexthops.want(to)
        {
            // The previous owner is a VTEP like any: its next hop is kept resolved.
            self.refresh_one(to);
        }
        let drain = u8::from(req.forward_to.is_some());
        if drain != self.config.drain {
            self.config.drain = drain;
            if let Err(e) = self.xdp.set_config(self.config) {
                reply.error = format!("program config: {e}");
            }
        }
        if req.forward_to.is_some() && self.config.xdp_tx == 0 {
            reply.warning = "the active uplink takes no frames from XDP (no NDO_XMIT): \
                             segments meant for the previous owner are delivered here"
                .into();
        } else if let Some(to) = req.forward_to
            && self.nexthops.published(&to) == Some(None)
        {
            reply.warning = format!("no next hop to {to} yet");
        }
        self.drain = req;
        reply.flows = self.xdp.drain_flows().unwrap_or(0);
        if let Ok(c) = self.xdp.counters() {
            reply.tx_drained = c.get(ovl_common::Counter::TxDrained);
            reply.rx_drain_unsent = c.get(ovl_common::Counter::RxDrainUnsent);
            reply.rx_drained = c.get(ovl_common::Counter::RxDrained);
        }
        reply
    }

    pub(super) fn uplink_snapshot(&self) -> crate::stats::UplinksSnapshot {
        let active = self.uplinks.active().map(|(u, _)| u);
        crate::stats::UplinksSnapshot {
            links: self
                .uplinks
                .links()
                .iter()
                .enumerate()
                .map(|(u, l)| crate::stats::UplinkRow {
                    name: l.name.clone(),
                    state: match l.seen {
                        _ if active == Some(u) => "active",
                        Seen::Up { .. } => "backup",
                        Seen::Down { .. } => "no-carrier",
                        Seen::Absent => "absent",
                    }
                    .to_string(),
                    index: l.seen.index(),
                    attached: self.attached.contains_key(&u),
                })
                .collect(),
            switches: self.uplinks.switches,
            sockets_rebound: self.sockets_rebound,
            last_switch: self.last_switch.as_ref().map(|s| crate::stats::SwitchRow {
                from: s.from.clone(),
                to: s.to.clone(),
                cause: s.cause.to_string(),
                took_us: s.took.as_micros() as u64,
                ago_ms: s.at.elapsed().as_millis() as u64,
            }),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let (xdp, xdp_drop_names) = match self.xdp.counters() {
            Ok(c) => Snapshot::xdp_from(&c),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut nexthops: Vec<(String, Option<String>)> = self
            .nexthops
            .iter()
            .map(|(ip, mac)| (ip.to_string(), mac.map(|m| format_mac(&m))))
            .collect();
        nexthops.sort();
        let mut features = self.features.clone();
        // Attach modes are probed where the programs attach: report what that found.
        features.push(crate::features::FeatureRow {
            feature: "XDP attach mode".to_string(),
            available: "yes".to_string(),
            decision: match self.attach_mode {
                Some(XdpMode::Skb) => "xdp skb",
                Some(_) => "xdp driver",
                None => "xdp none",
            }
            .to_string(),
            note: String::new(),
        });
        Snapshot {
            kernel: self.kernel.clone(),
            features,
            drain: crate::stats::DrainSnapshot {
                vips: self.drain.vips.iter().map(IpAddr::to_string).collect(),
                forward_to: self.drain.forward_to.map(|t| t.to_string()),
                accept: self.drain.accept,
                flows: self.xdp.drain_flows().unwrap_or(0),
                xdp_tx: self.config.xdp_tx != 0,
            },
            uptime_ms: self.started.elapsed().as_millis() as u64,
            underlay: self
                .uplinks
                .active()
                .map_or_else(String::new, |(u, _)| self.uplink_name(u).to_string()),
            uplinks: self.uplink_snapshot(),
            queues: self
                .workers
                .counters()
                .iter()
                .map(|q| Snapshot::queue_from(q, &self.port_names))
                .collect(),
            xdp,
            xdp_drop_names,
            fdb_learned: self.fdb.learned_len(),
            fdb_static: self.fdb.static_len(),
            nexthops,
            map_write_failures: self.retries.failures,
            map_writes_pending: self.retries.pending() as u64,
            fdb: {
                let mut rows: Vec<crate::stats::FdbRow> = self
                    .fdb
                    .entries()
                    .map(|((vni, mac), ip, fixed)| crate::stats::FdbRow {
                        vni: *vni,
                        mac: format_mac(mac),
                        remote: ip.to_string(),
                        fixed,
                    })
                    .collect();
                rows.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
                rows
            },
            mode: self.mode.to_string(),
            fast: self
                .xdp
                .vni_counters()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, c)| *c != ovl_common::VniCounters::default())
                .map(|(vni, c)| crate::stats::PortSnapshot {
                    vni,
                    interface: self
                        .port_names
                        .iter()
                        .find(|(v, _)| *v == vni)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    flood_copies: 0,
                })
                .collect(),
        }
    }
}
