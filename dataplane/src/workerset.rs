//! The workers of one run. They start with sockets on the uplinks present then; when a
//! device disappears or returns they close or bind that one socket themselves (told through
//! the board by `set_uplinks`) and report new descriptors for the XSKMAP, so sockets on the
//! other devices, counters, the FDB and the overlay ports carry on untouched.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use ovl_common::XskSlots;

use crate::{
    board::{Board, Wanted},
    stats::QueueCounters,
    worker::{FromWorker, Worker, WorkerSpec},
    xdp::XdpObject,
};

impl std::fmt::Debug for WorkerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSet")
            .field("workers", &self.handles.len())
            .finish_non_exhaustive()
    }
}

pub struct WorkerSet {
    /// The spec every worker starts from (queue, CPU, uplinks and active set per start).
    template: WorkerSpec,
    cpus: Vec<Option<usize>>,
    counters: Vec<Arc<QueueCounters>>,
    learn_tx: Sender<FromWorker>,
    slots: XskSlots,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// What every worker is to know; they read it themselves, so nothing sent can be lost.
    board: Arc<Board>,
}

impl WorkerSet {
    pub fn new(
        template: WorkerSpec,
        cpus: Vec<Option<usize>>,
        counters: Vec<Arc<QueueCounters>>,
        learn_tx: Sender<FromWorker>,
        slots: XskSlots,
    ) -> WorkerSet {
        WorkerSet {
            template,
            cpus,
            counters,
            learn_tx,
            slots,
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
            board: Arc::new(Board::new(Wanted::default())),
        }
    }

    /// Where the sockets sit in the XSKMAP.
    pub fn slots(&self) -> XskSlots {
        self.slots
    }

    pub fn counters(&self) -> &[Arc<QueueCounters>] {
        &self.counters
    }

    /// Starts one worker per queue with sockets on `uplinks` (configured position, device
    /// name, device index), sending on device `active` from `local_mac`, knowing the resolved
    /// `nexthops`.
    pub fn start(
        &mut self,
        xdp: &mut XdpObject,
        uplinks: &[(usize, String, u32)],
        active: Option<u32>,
        local_mac: [u8; 6],
        nexthops: HashMap<IpAddr, [u8; 6]>,
    ) -> Result<()> {
        self.board.update(|w| {
            w.nexthops = nexthops;
            w.uplinks = uplinks.iter().map(|(_, n, i)| (n.clone(), *i)).collect();
            w.active = active;
            w.local_mac = local_mac;
        });
        let mut workers = Vec::new();
        let nports = self.template.ports.len();
        for (q, counters) in self.counters.iter().enumerate() {
            let q = q as u32;
            let mut spec = self.template.clone();
            spec.queue = q;
            spec.cpu = self.cpus.get(q as usize).copied().flatten();
            spec.uplinks = uplinks.iter().map(|(_, n, i)| (n.clone(), *i)).collect();
            spec.active = active.and_then(|a| uplinks.iter().position(|u| u.2 == a));
            spec.local_mac = local_mac;
            let w = Worker::new(
                spec,
                counters.clone(),
                self.learn_tx.clone(),
                self.board.clone(),
            )?;
            let fds = w.fds();
            for (p, fd) in fds.iter().take(nports).enumerate() {
                xdp.set_xsk(self.slots.port_base(p as u32) + q, *fd)?;
            }
            for (k, (u, _, _)) in uplinks.iter().enumerate() {
                xdp.set_xsk(self.slots.uplink_base(*u as u32) + q, fds[nports + k])?;
            }
            workers.push(w);
        }
        for w in workers {
            let stop = self.stop.clone();
            self.handles.push(
                thread::Builder::new()
                    .name("ovl-worker".into())
                    .spawn(move || w.run(&stop))
                    .context("spawn worker")?,
            );
        }
        Ok(())
    }

    /// Wants every worker to have sockets on exactly `uplinks` (name, device index) and send
    /// on device `active` from `local_mac`. New sockets are reported as `FromWorker::Sockets`.
    pub fn set_uplinks(
        &self,
        uplinks: Vec<(String, u32)>,
        active: Option<u32>,
        local_mac: [u8; 6],
    ) {
        self.board.update(|w| {
            w.uplinks = uplinks;
            w.active = active;
            w.local_mac = local_mac;
        });
    }

    /// Makes `mac` the outer next hop of `remote` for every worker (None: unresolved).
    pub fn set_nexthop(&self, remote: IpAddr, mac: Option<[u8; 6]>) {
        self.board.update(|w| match mac {
            Some(mac) => {
                w.nexthops.insert(remote, mac);
            }
            None => {
                w.nexthops.remove(&remote);
            }
        });
    }

    /// Makes every worker bind again the uplink sockets it lacks (a failed bind's retry).
    pub fn rebind(&self) {
        self.board.update(|w| w.rebind += 1);
    }

    /// Stops every worker and waits for it (their sockets close as they return).
    pub fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }

    /// The position of a worker whose thread has ended.
    pub fn finished(&self) -> Option<usize> {
        self.handles.iter().position(JoinHandle::is_finished)
    }

    pub fn running(&self) -> bool {
        !self.handles.is_empty()
    }
}
