//! The workers of one run, as one generation at a time: when the set of present uplinks
//! changes (a device removed or returned), the generation is stopped and a new one binds
//! sockets on the devices there are now. Counters, the FDB and the overlay ports carry on;
//! only frames inside the old sockets' rings are lost.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::{Context, Result};
use crossbeam_channel::{Sender, TrySendError, bounded};
use ovl_common::XskSlots;

use crate::{
    stats::QueueCounters,
    worker::{FromWorker, ToWorker, Worker, WorkerSpec},
    xdp::XdpObject,
};

/// Capacity of each worker's control channel.
const TO_WORKER: usize = 4096;

impl std::fmt::Debug for WorkerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSet")
            .field("uplinks", &self.uplinks)
            .field("generations", &self.generations)
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
    ctl: Vec<Sender<ToWorker>>,
    /// Configured positions of the uplinks this generation has sockets on.
    uplinks: Vec<usize>,
    /// How many generations were started.
    pub generations: u64,
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
            ctl: Vec::new(),
            uplinks: Vec::new(),
            generations: 0,
        }
    }

    pub fn counters(&self) -> &[Arc<QueueCounters>] {
        &self.counters
    }

    /// Stops the running generation (if any) and starts one with sockets on `uplinks`
    /// (configured position, device name), sending on `active` (a configured position) from
    /// `local_mac`, knowing `nexthops`.
    pub fn start(
        &mut self,
        xdp: &mut XdpObject,
        uplinks: &[(usize, String)],
        active: Option<usize>,
        local_mac: [u8; 6],
        nexthops: &HashMap<Ipv4Addr, Option<[u8; 6]>>,
    ) -> Result<()> {
        self.stop_all();
        let mut workers = Vec::new();
        let mut ctl = Vec::new();
        for (q, counters) in self.counters.iter().enumerate() {
            let q = q as u32;
            let mut spec = self.template.clone();
            spec.queue = q;
            spec.cpu = self.cpus.get(q as usize).copied().flatten();
            spec.uplinks = uplinks.iter().map(|(_, n)| n.clone()).collect();
            spec.active = active.and_then(|a| uplinks.iter().position(|(u, _)| *u == a));
            spec.local_mac = local_mac;
            let (tx, rx) = bounded::<ToWorker>(TO_WORKER);
            for (&remote, &mac) in nexthops {
                if mac.is_some() {
                    let _ = tx.try_send(ToWorker::NextHop { remote, mac });
                }
            }
            let w = Worker::new(spec, counters.clone(), self.learn_tx.clone(), rx)?;
            let fds = w.fds();
            for (k, (u, _)) in uplinks.iter().enumerate() {
                xdp.set_xsk(self.slots.uplink_base(*u as u32) + q, fds[k])?;
            }
            for p in 0..self.template.ports.len() {
                xdp.set_xsk(self.slots.port_base(p as u32) + q, fds[uplinks.len() + p])?;
            }
            workers.push(w);
            ctl.push(tx);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for w in workers {
            let stop = stop.clone();
            handles.push(
                thread::Builder::new()
                    .name("ovl-worker".into())
                    .spawn(move || w.run(&stop))
                    .context("spawn worker")?,
            );
        }
        self.stop = stop;
        self.handles = handles;
        self.ctl = ctl;
        self.uplinks = uplinks.iter().map(|(u, _)| *u).collect();
        self.generations += 1;
        Ok(())
    }

    /// Stops every worker and waits for it (their sockets close as they return).
    pub fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.ctl.clear();
    }

    /// Tells every worker to send on configured uplink `active` from `local_mac`.
    pub fn set_active(&self, active: Option<usize>, local_mac: [u8; 6]) {
        let uplink = active.and_then(|a| self.uplinks.iter().position(|u| *u == a));
        self.tell(ToWorker::Active { uplink, local_mac });
    }

    /// Sends `msg` to every worker; a full channel is logged (the message is lost).
    pub fn tell(&self, msg: ToWorker) {
        for (q, c) in self.ctl.iter().enumerate() {
            match c.try_send(msg.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(queue = q, ?msg, "worker's control channel full; update lost")
                }
            }
        }
    }

    /// The position of a worker whose thread has ended.
    pub fn finished(&self) -> Option<usize> {
        self.handles.iter().position(JoinHandle::is_finished)
    }

    /// Whether the running generation has sockets on configured uplink `u`.
    pub fn has_uplink(&self, u: usize) -> bool {
        self.uplinks.contains(&u)
    }

    pub fn running(&self) -> bool {
        !self.handles.is_empty()
    }
}
