//! The benchmark's lab: one pair of hosts per path, all behind the same router, so every path
//! crosses the same veths and the same forwarding hop.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use ovl_lab::{Encap, HostSpec, Ipv4Cidr, LabSpec, Overlay, WorkerTuning};

use crate::report::PathKind;

/// VNI and overlay subnet of each overlay path.
const KERNEL_VNI: u32 = 10;
const VXLAN_VNI: u32 = 20;
const GENEVE_VNI: u32 = 30;
pub const VXLAN_PORT: u16 = 4789;
pub const GENEVE_PORT: u16 = 6081;

/// The hosts a path runs between, and what the traffic is addressed to.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub path: PathKind,
    /// Sends the traffic (iperf3 client, RTT prober).
    pub src: &'static str,
    /// Receives it (iperf3 server, echo server, frame sink).
    pub dst: &'static str,
}

impl Route {
    pub const ALL: [Route; 4] = [
        Route {
            path: PathKind::Underlay,
            src: "k1",
            dst: "k2",
        },
        Route {
            path: PathKind::KernelVxlan,
            src: "k1",
            dst: "k2",
        },
        Route {
            path: PathKind::OursVxlan,
            src: "v1",
            dst: "v2",
        },
        Route {
            path: PathKind::OursGeneve,
            src: "g1",
            dst: "g2",
        },
    ];

    /// The VNI and UDP port of the encapsulation, `None` for the underlay.
    pub fn encap(&self) -> Option<(Encap, u32, u16)> {
        match self.path {
            PathKind::Underlay => None,
            PathKind::KernelVxlan => Some((Encap::Vxlan, KERNEL_VNI, VXLAN_PORT)),
            PathKind::OursVxlan => Some((Encap::Vxlan, VXLAN_VNI, VXLAN_PORT)),
            PathKind::OursGeneve => Some((Encap::Geneve, GENEVE_VNI, GENEVE_PORT)),
        }
    }

    /// The kernel interface on `dst` whose received packets are the path's delivered frames.
    pub fn sink_dev(&self, spec: &LabSpec) -> String {
        match self.path {
            PathKind::Underlay => "eth0".to_string(),
            _ => spec
                .host(self.dst)
                .and_then(|(_, h)| h.overlay.device())
                .unwrap_or_default(),
        }
    }
}

/// Overlay address `.n` of `path`'s subnet (192.168.{vni}.n).
pub fn overlay_addr(path: PathKind, n: u8) -> Ipv4Addr {
    let net = match path {
        PathKind::Underlay | PathKind::KernelVxlan => KERNEL_VNI,
        PathKind::OursVxlan => VXLAN_VNI,
        PathKind::OursGeneve => GENEVE_VNI,
    };
    Ipv4Addr::new(192, 168, net as u8, n)
}

/// Hosts k1, k2 (kernel VXLAN), v1, v2 (ours, VXLAN), g1, g2 (ours, GENEVE): `.1` and `.2` of
/// their overlay subnets. Workers pinned to `worker_cpus` when given.
pub fn spec(prefix: &str, dataplane: &Path, workers: WorkerTuning, queues: u32) -> LabSpec {
    let cidr = |p: PathKind, n: u8| {
        let a = overlay_addr(p, n).octets();
        Ipv4Cidr::new(a[0], a[1], a[2], a[3], 24)
    };
    let mut spec = LabSpec::seed(prefix, dataplane);
    spec.hosts.clear();
    for n in 1..=2u8 {
        spec = spec.with_host(HostSpec::new(
            format!("k{n}"),
            Overlay::Kernel {
                vni: KERNEL_VNI,
                port: VXLAN_PORT,
                addr: cidr(PathKind::KernelVxlan, n),
            },
        ));
    }
    for (name, path, encap, vni, port) in [
        (
            "v",
            PathKind::OursVxlan,
            Encap::Vxlan,
            VXLAN_VNI,
            VXLAN_PORT,
        ),
        (
            "g",
            PathKind::OursGeneve,
            Encap::Geneve,
            GENEVE_VNI,
            GENEVE_PORT,
        ),
    ] {
        for n in 1..=2u8 {
            spec = spec.with_host(HostSpec::new(
                format!("{name}{n}"),
                Overlay::Ours {
                    vni,
                    encap,
                    port,
                    addr: cidr(path, n),
                    geneve_option: None,
                },
            ));
        }
    }
    spec.ready_timeout = Duration::from_secs(30);
    spec.workers = workers;
    spec.queues = queues;
    spec
}
