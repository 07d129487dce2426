//! Counters the workers keep (atomics, relaxed: each has one writer) and the snapshot the
//! control socket and the Prometheus endpoint serve.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use serde::{Deserialize, Serialize};

use crate::xdp::Counters;

/// Why a worker dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerDrop {
    /// The TX ring of the destination socket was full.
    TxRingFull,
    /// No free UMEM frame for a flood copy.
    NoFrame,
    /// The remote VTEP's next-hop MAC is not known yet (resolution was requested).
    NoNextHop,
    /// A frame without our metadata, or of a kind the socket should never see.
    BadMeta,
    /// Decapsulated for a VNI this worker has no port for.
    UnknownVni,
    /// Flood with an empty flood list.
    NoFloodTarget,
    /// No uplink can carry traffic (none present with carrier).
    NoUplink,
}

impl WorkerDrop {
    pub const ALL: [WorkerDrop; 7] = [
        WorkerDrop::TxRingFull,
        WorkerDrop::NoFrame,
        WorkerDrop::NoNextHop,
        WorkerDrop::BadMeta,
        WorkerDrop::UnknownVni,
        WorkerDrop::NoFloodTarget,
        WorkerDrop::NoUplink,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            WorkerDrop::TxRingFull => "worker_tx_ring_full",
            WorkerDrop::NoFrame => "worker_no_free_frame",
            WorkerDrop::NoNextHop => "worker_no_nexthop",
            WorkerDrop::BadMeta => "worker_bad_metadata",
            WorkerDrop::UnknownVni => "worker_unknown_vni",
            WorkerDrop::NoFloodTarget => "worker_no_flood_target",
            WorkerDrop::NoUplink => "worker_no_uplink",
        }
    }
}

/// Per overlay port (one VNI) counters of one queue.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Decapsulated frames delivered to the overlay port.
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames from the overlay port sent encapsulated on the underlay (flood copies included).
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Of those, copies made by head-end replication.
    pub flood_copies: AtomicU64,
}

/// The counters of one worker (one queue).
/// A worker's UMEM frames: all of them, and where they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub total: u64,
    /// On the worker's free lists.
    pub free: u64,
    /// With the kernel: on fill rings or received, not yet taken.
    pub fill: u64,
    /// On TX rings, not yet completed.
    pub tx: u64,
}

#[derive(Debug)]
pub struct QueueCounters {
    pub queue: u32,
    pub cpu: Option<usize>,
    pub ports: Vec<PortCounters>,
    pub drops: [AtomicU64; WorkerDrop::ALL.len()],
    pub loops: AtomicU64,
    pub idle_polls: AtomicU64,
    /// Where the worker's UMEM frames are, published whole so a reader never sees the
    /// parts of different moments (the worker skips a publication rather than wait).
    pub frames: std::sync::Mutex<FrameCounts>,
    pub learn_events: AtomicU64,
    /// ICMP "fragmentation needed" answers sent back into the overlay ports.
    pub icmp_frag_needed: AtomicU64,
    /// The kernel's own AF_XDP counters, summed over this worker's sockets: frames it could
    /// not hand us (RX ring full, no fill descriptor, other), and bad TX descriptors.
    pub xsk_rx_ring_full: AtomicU64,
    pub xsk_rx_dropped: AtomicU64,
    pub xsk_fill_ring_empty: AtomicU64,
    pub xsk_tx_invalid: AtomicU64,
    /// Each socket's interface and AF_XDP mode ("zero-copy" or "copy"), set once bound.
    pub sockets: std::sync::Mutex<Vec<(String, String)>>,
}

impl QueueCounters {
    pub fn new(queue: u32, cpu: Option<usize>, ports: usize) -> QueueCounters {
        QueueCounters {
            queue,
            cpu,
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            drops: Default::default(),
            loops: AtomicU64::new(0),
            idle_polls: AtomicU64::new(0),
            frames: Default::default(),
            learn_events: AtomicU64::new(0),
            icmp_frag_needed: AtomicU64::new(0),
            xsk_rx_ring_full: AtomicU64::new(0),
            xsk_rx_dropped: AtomicU64::new(0),
            xsk_fill_ring_empty: AtomicU64::new(0),
            xsk_tx_invalid: AtomicU64::new(0),
            sockets: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn count_drop(&self, why: WorkerDrop, n: u64) {
        self.drops[why as usize].fetch_add(n, Relaxed);
    }
}

/// Adds to a counter that has a single writer.
pub fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSnapshot {
    pub vni: u32,
    pub interface: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub flood_copies: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub queue: u32,
    pub cpu: Option<usize>,
    pub ports: Vec<PortSnapshot>,
    pub drops: Vec<(String, u64)>,
    pub frames_total: u64,
    pub frames_free: u64,
    pub frames_fill: u64,
    pub frames_tx: u64,
    pub loops: u64,
    pub idle_polls: u64,
    pub learn_events: u64,
    pub icmp_frag_needed: u64,
    /// Fill ring found empty by the kernel (descriptors; not drops by themselves).
    pub xsk_fill_ring_empty: u64,
    /// Each socket's interface and AF_XDP mode ("zero-copy" or "copy").
    #[serde(default)]
    pub sockets: Vec<(String, String)>,
}

/// One FDB entry: inner MAC `mac` of VNI `vni` lives behind VTEP `remote`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub vni: u32,
    pub mac: String,
    pub remote: String,
    /// Configured, not learned (never ages).
    pub fixed: bool,
}

/// Everything `dataplane stats` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub uptime_ms: u64,
    /// The active uplink ("" when none can carry traffic).
    pub underlay: String,
    #[serde(default)]
    pub uplinks: UplinksSnapshot,
    pub queues: Vec<QueueSnapshot>,
    /// The XDP programs' counters (summed over CPUs), by name.
    pub xdp: Vec<(String, u64)>,
    /// Names of the XDP counters that are drops.
    pub xdp_drop_names: Vec<String>,
    pub fdb_learned: usize,
    pub fdb_static: usize,
    pub nexthops: Vec<(String, Option<String>)>,
    /// Writes to the programs' FDB and next-hop maps that failed, in all, and how many keys
    /// still wait for their retry.
    #[serde(default)]
    pub map_write_failures: u64,
    #[serde(default)]
    pub map_writes_pending: u64,
    /// The FDB as the control thread holds it: learned and static entries.
    #[serde(default)]
    pub fdb: Vec<FdbRow>,
    /// `[datapath] mode` of the run ("xdp" or "afxdp").
    #[serde(default)]
    pub mode: String,
    /// Per VNI, what the fast path carried without the workers (XDP redirect in, TC
    /// encapsulation out); `per_vni` adds it to the workers' counts.
    #[serde(default)]
    pub fast: Vec<PortSnapshot>,
    /// Draining for a planned switchover, as the controller last set it.
    #[serde(default)]
    pub drain: DrainSnapshot,
    /// `uname -r` of the host, and the kernel features probed at start (with the XDP
    /// attach mode found), each with its decision.
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub features: Vec<crate::features::FeatureRow>,
}

/// What the programs do with TCP to the VIPs during a planned switchover (see the
/// controller's draining).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSnapshot {
    /// The VIPs in the drain map.
    pub vips: Vec<String>,
    /// New owner: segments of connections with no socket here go to this VTEP.
    pub forward_to: Option<String>,
    /// Old owner: drained frames for the VIPs are served here.
    pub accept: bool,
    /// Connections forwarded since forwarding last started.
    pub flows: u64,
    /// Whether the active uplink can send from XDP (draining needs it).
    pub xdp_tx: bool,
}

/// The uplinks and the last change of the active one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinksSnapshot {
    pub links: Vec<UplinkRow>,
    /// Changes of the active uplink since start.
    pub switches: u64,
    /// Uplink sockets the workers bound after start (on devices that returned).
    pub sockets_rebound: u64,
    pub last_switch: Option<SwitchRow>,
}

/// One uplink, in order of preference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkRow {
    pub name: String,
    /// "active", "backup", "no-carrier" or "absent".
    pub state: String,
    pub index: Option<u32>,
    /// The ingress program is attached.
    pub attached: bool,
}

/// The last change of the active uplink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRow {
    pub from: Option<String>,
    pub to: Option<String>,
    pub cause: String,
    /// From reading the netlink event to programs and workers sending on the new uplink.
    pub took_us: u64,
    pub ago_ms: u64,
}

impl Snapshot {
    pub fn queue_from(q: &QueueCounters, names: &[(u32, String)]) -> QueueSnapshot {
        let frames = *q
            .frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        QueueSnapshot {
            queue: q.queue,
            cpu: q.cpu,
            ports: q
                .ports
                .iter()
                .zip(names)
                .map(|(p, (vni, name))| PortSnapshot {
                    vni: *vni,
                    interface: name.clone(),
                    rx_packets: p.rx_packets.load(Relaxed),
                    rx_bytes: p.rx_bytes.load(Relaxed),
                    tx_packets: p.tx_packets.load(Relaxed),
                    tx_bytes: p.tx_bytes.load(Relaxed),
                    flood_copies: p.flood_copies.load(Relaxed),
                })
                .collect(),
            drops: WorkerDrop::ALL
                .iter()
                .map(|d| (d.name().to_string(), q.drops[*d as usize].load(Relaxed)))
                .chain([
                    (
                        "xsk_rx_ring_full".to_string(),
                        q.xsk_rx_ring_full.load(Relaxed),
                    ),
                    ("xsk_rx_dropped".to_string(), q.xsk_rx_dropped.load(Relaxed)),
                    ("xsk_tx_invalid".to_string(), q.xsk_tx_invalid.load(Relaxed)),
                ])
                .collect(),
            frames_total: frames.total,
            frames_free: frames.free,
            frames_fill: frames.fill,
            frames_tx: frames.tx,
            loops: q.loops.load(Relaxed),
            idle_polls: q.idle_polls.load(Relaxed),
            learn_events: q.learn_events.load(Relaxed),
            icmp_frag_needed: q.icmp_frag_needed.load(Relaxed),
            xsk_fill_ring_empty: q.xsk_fill_ring_empty.load(Relaxed),
            sockets: q.sockets.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }

    pub fn xdp_from(c: &Counters) -> (Vec<(String, u64)>, Vec<String>) {
        let all = ovl_common::Counter::ALL
            .iter()
            .map(|k| (k.name().to_string(), c.get(*k)))
            .collect();
        let drops = ovl_common::Counter::ALL
            .iter()
            .filter(|k| k.is_drop())
            .map(|k| k.name().to_string())
            .collect();
        (all, drops)
    }

    /// One XDP counter by name (0 if absent).
    pub fn xdp_counter(&self, name: &str) -> u64 {
        self.xdp
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// All drops, XDP and worker, summed.
    pub fn total_drops(&self) -> u64 {
        let xdp: u64 = self
            .xdp
            .iter()
            .filter(|(n, _)| self.xdp_drop_names.contains(n))
            .map(|(_, v)| v)
            .sum();
        let workers: u64 = self
            .queues
            .iter()
            .flat_map(|q| q.drops.iter().map(|(_, v)| v))
            .sum();
        xdp + workers
    }

    /// Per-VNI totals over all queues: (vni, interface, rx pkts, rx bytes, tx pkts, tx bytes,
    /// flood copies).
    pub fn per_vni(&self) -> Vec<PortSnapshot> {
        let mut out: Vec<PortSnapshot> = Vec::new();
        let worker_ports = self.queues.iter().flat_map(|q| q.ports.iter());
        for p in worker_ports.chain(self.fast.iter()) {
            {
                match out.iter_mut().find(|o| o.vni == p.vni) {
                    Some(o) => {
                        o.rx_packets += p.rx_packets;
                        o.rx_bytes += p.rx_bytes;
                        o.tx_packets += p.tx_packets;
                        o.tx_bytes += p.tx_bytes;
                        o.flood_copies += p.flood_copies;
                    }
                    None => out.push(p.clone()),
                }
            }
        }
        out
    }

    /// The human-readable form `dataplane stats` prints.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} mode  underlay {}  up {:.1} s  fdb: {} learned, {} static",
            if self.mode.is_empty() {
                "?"
            } else {
                &self.mode
            },
            self.underlay,
            self.uptime_ms as f64 / 1000.0,
            self.fdb_learned,
            self.fdb_static
        );
        if !self.features.is_empty() {
            s.push_str(&crate::features::render_summary(
                &self.kernel,
                &self.features,
            ));
        }
        if self.map_write_failures != 0 {
            let _ = writeln!(
                s,
                "map writes: {} failed, {} waiting for a retry",
                self.map_write_failures, self.map_writes_pending
            );
        }
        if !self.drain.vips.is_empty() {
            let d = &self.drain;
            let _ = writeln!(
                s,
                "drain: vips {}  {}  accept {}  flows {}{}",
                d.vips.join(","),
                d.forward_to
                    .as_ref()
                    .map_or("not forwarding".to_string(), |t| format!(
                        "forwarding to {t}"
                    )),
                if d.accept { "on" } else { "off" },
                d.flows,
                if d.xdp_tx {
                    ""
                } else {
                    "  (uplink takes no frames from XDP: cannot forward)"
                }
            );
        }
        let _ = writeln!(s, "\nuplinks ({} switches):", self.uplinks.switches);
        for l in &self.uplinks.links {
            let _ = writeln!(
                s,
                "  {:<16} {:<10} index {:<6} {}",
                l.name,
                l.state,
                l.index.map_or("-".to_string(), |i| i.to_string()),
                if l.attached {
                    "attached"
                } else {
                    "not attached"
                }
            );
        }
        if let Some(w) = &self.uplinks.last_switch {
            let _ = writeln!(
                s,
                "  last switch: {} -> {} ({}), took {} µs, {:.1} s ago",
                w.from.as_deref().unwrap_or("none"),
                w.to.as_deref().unwrap_or("none"),
                w.cause,
                w.took_us,
                w.ago_ms as f64 / 1000.0
            );
        }
        let _ = writeln!(s, "\nper VNI:");
        let _ = writeln!(
            s,
            "  {:>8} {:<12} {:>12} {:>14} {:>12} {:>14} {:>10}",
            "vni", "interface", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "flooded"
        );
        for p in self.per_vni() {
            let _ = writeln!(
                s,
                "  {:>8} {:<12} {:>12} {:>14} {:>12} {:>14} {:>10}",
                p.vni,
                p.interface,
                p.rx_packets,
                p.rx_bytes,
                p.tx_packets,
                p.tx_bytes,
                p.flood_copies
            );
        }
        if !self.fast.is_empty() {
            let _ = writeln!(
                s,
                "\nof which the fast path (XDP redirect in, TC encapsulation out):"
            );
            for p in &self.fast {
                let _ = writeln!(
                    s,
                    "  {:>8} {:<12} {:>12} {:>14} {:>12} {:>14}",
                    p.vni, p.interface, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
                );
            }
        }
        let _ = writeln!(s, "\nper queue:");
        for q in &self.queues {
            let (rx, rxb, tx, txb) = q.ports.iter().fold((0, 0, 0, 0), |a, p| {
                (
                    a.0 + p.rx_packets,
                    a.1 + p.rx_bytes,
                    a.2 + p.tx_packets,
                    a.3 + p.tx_bytes,
                )
            });
            let _ = writeln!(
                s,
                "  queue {} cpu {}: rx {} pkts {} bytes, tx {} pkts {} bytes | frames {} = free {} + fill {} + tx {} | loops {} idle {} | fill ring found empty {} | ICMP frag needed sent {}",
                q.queue,
                q.cpu.map_or("-".to_string(), |c| c.to_string()),
                rx,
                rxb,
                tx,
                txb,
                q.frames_total,
                q.frames_free,
                q.frames_fill,
                q.frames_tx,
                q.loops,
                q.idle_polls,
                q.xsk_fill_ring_empty,
                q.icmp_frag_needed
            );
            if !q.sockets.is_empty() {
                let socks: Vec<String> =
                    q.sockets.iter().map(|(i, m)| format!("{i} {m}")).collect();
                let _ = writeln!(s, "    AF_XDP sockets: {}", socks.join(", "));
            }
            for (name, v) in q.drops.iter().filter(|(_, v)| *v != 0) {
                let _ = writeln!(s, "    drop {name}: {v}");
            }
        }
        let _ = writeln!(s, "\nXDP (all CPUs):");
        for (name, v) in self.xdp.iter().filter(|(_, v)| *v != 0) {
            let tag = if self.xdp_drop_names.contains(name) {
                "drop"
            } else {
                "    "
            };
            let _ = writeln!(s, "  {tag} {name:<28} {v}");
        }
        let _ = writeln!(s, "\nnext hops:");
        for (ip, mac) in &self.nexthops {
            let _ = writeln!(s, "  {ip} -> {}", mac.as_deref().unwrap_or("unresolved"));
        }
        let _ = writeln!(s, "\ntotal drops: {}", self.total_drops());
        s
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        let metric = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        metric(
            &mut s,
            "ovl_vni_packets_total",
            "counter",
            "Frames per VNI, queue and direction (rx: decapsulated to the overlay port; tx: encapsulated to the underlay; queue=\"fast\": the XDP/TC fast path).",
        );
        for q in &self.queues {
            for p in &q.ports {
                for (dir, v) in [("rx", p.rx_packets), ("tx", p.tx_packets)] {
                    let _ = writeln!(
                        s,
                        "ovl_vni_packets_total{{vni=\"{}\",queue=\"{}\",direction=\"{dir}\"}} {v}",
                        p.vni, q.queue
                    );
                }
            }
        }
        // The fast path has no queue of ours: it is labelled queue="fast".
        for p in &self.fast {
            for (dir, v) in [("rx", p.rx_packets), ("tx", p.tx_packets)] {
                let _ = writeln!(
                    s,
                    "ovl_vni_packets_total{{vni=\"{}\",queue=\"fast\",direction=\"{dir}\"}} {v}",
                    p.vni
                );
            }
        }
        metric(
            &mut s,
            "ovl_vni_bytes_total",
            "counter",
            "Bytes per VNI, queue and direction.",
        );
        for q in &self.queues {
            for p in &q.ports {
                for (dir, v) in [("rx", p.rx_bytes), ("tx", p.tx_bytes)] {
                    let _ = writeln!(
                        s,
                        "ovl_vni_bytes_total{{vni=\"{}\",queue=\"{}\",direction=\"{dir}\"}} {v}",
                        p.vni, q.queue
                    );
                }
            }
        }
        // The fast path has no queue of ours: it is labelled queue="fast".
        for p in &self.fast {
            for (dir, v) in [("rx", p.rx_bytes), ("tx", p.tx_bytes)] {
                let _ = writeln!(
                    s,
                    "ovl_vni_bytes_total{{vni=\"{}\",queue=\"fast\",direction=\"{dir}\"}} {v}",
                    p.vni
                );
            }
        }
        metric(
            &mut s,
            "ovl_uplink_up",
            "gauge",
            "Per uplink: 1 if its device is present with carrier.",
        );
        for l in &self.uplinks.links {
            let up = u8::from(l.state == "active" || l.state == "backup");
            let _ = writeln!(s, "ovl_uplink_up{{uplink=\"{}\"}} {up}", l.name);
        }
        metric(
            &mut s,
            "ovl_uplink_active",
            "gauge",
            "Per uplink: 1 if we send on it.",
        );
        for l in &self.uplinks.links {
            let a = u8::from(l.state == "active");
            let _ = writeln!(s, "ovl_uplink_active{{uplink=\"{}\"}} {a}", l.name);
        }
        metric(
            &mut s,
            "ovl_uplink_switches_total",
            "counter",
            "Changes of the active uplink.",
        );
        let _ = writeln!(s, "ovl_uplink_switches_total {}", self.uplinks.switches);
        metric(
            &mut s,
            "ovl_uplink_last_switch_seconds",
            "gauge",
            "How long the last change of the active uplink took, from reading the netlink event.",
        );
        let took = self
            .uplinks
            .last_switch
            .as_ref()
            .map_or(0.0, |w| w.took_us as f64 / 1e6);
        let _ = writeln!(s, "ovl_uplink_last_switch_seconds {took}");
        metric(
            &mut s,
            "ovl_flood_copies_total",
            "counter",
            "Copies made by head-end replication.",
        );
        for q in &self.queues {
            for p in &q.ports {
                let _ = writeln!(
                    s,
                    "ovl_flood_copies_total{{vni=\"{}\",queue=\"{}\"}} {}",
                    p.vni, q.queue, p.flood_copies
                );
            }
        }
        metric(
            &mut s,
            "ovl_worker_drops_total",
            "counter",
            "Frames dropped by the AF_XDP workers or, for xsk_*, by the kernel on their sockets, by reason.",
        );
        for q in &self.queues {
            for (name, v) in &q.drops {
                let _ = writeln!(
                    s,
                    "ovl_worker_drops_total{{queue=\"{}\",reason=\"{name}\"}} {v}",
                    q.queue
                );
            }
        }
        metric(
            &mut s,
            "ovl_xdp_packets_total",
            "counter",
            "Outcomes of the XDP programs, summed over CPUs.",
        );
        for (name, v) in &self.xdp {
            let _ = writeln!(s, "ovl_xdp_packets_total{{outcome=\"{name}\"}} {v}");
        }
        metric(
            &mut s,
            "ovl_umem_frames",
            "gauge",
            "UMEM frames per queue by where they are.",
        );
        for q in &self.queues {
            for (place, v) in [
                ("free", q.frames_free),
                ("fill", q.frames_fill),
                ("tx", q.frames_tx),
            ] {
                let _ = writeln!(
                    s,
                    "ovl_umem_frames{{queue=\"{}\",place=\"{place}\"}} {v}",
                    q.queue
                );
            }
        }
        metric(&mut s, "ovl_fdb_entries", "gauge", "FDB entries by origin.");
        let _ = writeln!(
            s,
            "ovl_fdb_entries{{origin=\"learned\"}} {}\novl_fdb_entries{{origin=\"static\"}} {}",
            self.fdb_learned, self.fdb_static
        );
        metric(
            &mut s,
            "ovl_map_write_failures_total",
            "counter",
            "Writes to the programs' FDB and next-hop maps that failed (each is retried).",
        );
        let _ = writeln!(
            s,
            "ovl_map_write_failures_total {}",
            self.map_write_failures
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let port = |rx, tx| PortSnapshot {
            vni: 10,
            interface: "ovl0".into(),
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: tx,
            tx_bytes: tx * 100,
            flood_copies: 1,
        };
        let queue = |q, rx, tx, drops| QueueSnapshot {
            queue: q,
            ports: vec![port(rx, tx)],
            drops: vec![("worker_no_nexthop".into(), drops)],
            frames_total: 64,
            frames_free: 32,
            frames_fill: 32,
            ..QueueSnapshot::default()
        };
        Snapshot {
            underlay: "eth0".into(),
            queues: vec![queue(0, 5, 7, 1), queue(1, 3, 2, 0)],
            xdp: vec![("rx_vxlan".into(), 8), ("drop_unknown_vni".into(), 4)],
            xdp_drop_names: vec!["drop_unknown_vni".into()],
            ..Snapshot::default()
        }
    }

    #[test]
    fn per_vni_sums_the_queues_and_drops_sum_both_sides() {
        let s = snapshot();
        let v = s.per_vni();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].rx_packets, v[0].tx_packets), (8, 9));
        assert_eq!((v[0].rx_bytes, v[0].flood_copies), (800, 2));
        assert_eq!(s.total_drops(), 5);
        assert_eq!(s.xdp_counter("drop_unknown_vni"), 4);
        assert_eq!(s.xdp_counter("absent"), 0);
        let text = s.render_text();
        assert!(text.contains("queue 1 cpu -: rx 3 pkts 300 bytes, tx 2 pkts 200 bytes"));
        assert!(text.contains("drop worker_no_nexthop: 1"));
        assert!(text.contains("total drops: 5"));
    }

    #[test]
    fn prometheus_text_has_one_sample_per_label_set() {
        let p = snapshot().render_prometheus();
        assert!(p.contains("ovl_vni_packets_total{vni=\"10\",queue=\"1\",direction=\"tx\"} 2\n"));
        assert!(p.contains("ovl_worker_drops_total{queue=\"0\",reason=\"worker_no_nexthop\"} 1\n"));
        assert!(p.contains("ovl_xdp_packets_total{outcome=\"drop_unknown_vni\"} 4\n"));
        assert!(p.contains("ovl_umem_frames{queue=\"0\",place=\"free\"} 32\n"));
        // Every sample line belongs to a family announced by # TYPE.
        for line in p.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(p.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
