//! The benchmark's lab: one pair of hosts per path, all behind the same router, so every path
//! crosses the same veths and the same forwarding hop.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use ovl_lab::{DatapathMode, Encap, HostSpec, Ipv4Cidr, LabSpec, Overlay, WorkerTuning};

use crate::report::PathKind;

/// VNI (and third octet of the overlay subnet) of each overlay path: each pair is a segment
/// of its own, so no flood or ARP of one path reaches another.
const KERNEL_VNI: u32 = 10;
const KERNEL_BEST_VNI: u32 = 11;
const VXLAN_VNI: u32 = 20;
const AFXDP_VNI: u32 = 21;
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
    pub const ALL: [Route; 6] = [
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
            path: PathKind::KernelVxlanBest,
            src: "kb1",
            dst: "kb2",
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
        Route {
            path: PathKind::OursVxlanAfxdp,
            src: "a1",
            dst: "a2",
        },
    ];

    /// The route of `path`.
    pub fn of(path: PathKind) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.path == path)
    }

    /// The VNI and UDP port of the encapsulation, `None` for the underlay.
    pub fn encap(&self) -> Option<(Encap, u32, u16)> {
        match self.path {
            PathKind::Underlay => None,
            PathKind::KernelVxlan => Some((Encap::Vxlan, KERNEL_VNI, VXLAN_PORT)),
            PathKind::KernelVxlanBest => Some((Encap::Vxlan, KERNEL_BEST_VNI, VXLAN_PORT)),
            PathKind::OursVxlan => Some((Encap::Vxlan, VXLAN_VNI, VXLAN_PORT)),
            PathKind::OursGeneve => Some((Encap::Geneve, GENEVE_VNI, GENEVE_PORT)),
            PathKind::OursVxlanAfxdp => Some((Encap::Vxlan, AFXDP_VNI, VXLAN_PORT)),
        }
    }

    /// The `[datapath] mode` the path's data planes run in; `None` for the kernel's paths.
    pub fn mode(&self) -> Option<DatapathMode> {
        match self.path {
            PathKind::OursVxlan | PathKind::OursGeneve => Some(DatapathMode::Xdp),
            PathKind::OursVxlanAfxdp => Some(DatapathMode::Afxdp),
            PathKind::Underlay | PathKind::KernelVxlan | PathKind::KernelVxlanBest => None,
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

/// Overlay address `.n` of `path`'s subnet (192.168.{vni}.n; the underlay's is kernel VXLAN's,
/// whose hosts it runs between).
pub fn overlay_addr(path: PathKind, n: u8) -> Ipv4Addr {
    let net = match Route::of(path).and_then(|r| r.encap()) {
        Some((_, vni, _)) => vni,
        None => KERNEL_VNI,
    };
    Ipv4Addr::new(192, 168, net as u8, n)
}

/// The hosts of the routes of `paths`, each route's pair once: k1, k2 (kernel VXLAN, TX
/// checksum offload off as the lab sets it; also the underlay's pair), kb1, kb2 (kernel VXLAN
/// with TX checksum offload left on), v1, v2 (ours, VXLAN, xdp mode), g1, g2 (ours, GENEVE, xdp
/// mode), a1, a2 (ours, VXLAN, afxdp mode): `.1` and `.2` of their overlay subnets. Workers
/// tuned by `workers`.
pub fn spec(
    prefix: &str,
    dataplane: &Path,
    workers: WorkerTuning,
    queues: u32,
    paths: &[PathKind],
) -> LabSpec {
    let cidr = |p: PathKind, n: u8| {
        let a = overlay_addr(p, n).octets();
        Ipv4Cidr::new(a[0], a[1], a[2], a[3], 24)
    };
    let mut spec = LabSpec::seed(prefix, dataplane);
    spec.hosts.clear();
    let mut pairs: Vec<Route> = Vec::new();
    for r in Route::ALL {
        if paths.contains(&r.path) && !pairs.iter().any(|p| p.src == r.src) {
            pairs.push(r);
        }
    }
    for r in pairs {
        // The underlay runs between the kernel VXLAN pair.
        let path = match r.path {
            PathKind::Underlay => PathKind::KernelVxlan,
            p => p,
        };
        let Some((encap, vni, port)) = Route::of(path).and_then(|r| r.encap()) else {
            continue;
        };
        for (n, host) in [(1u8, r.src), (2, r.dst)] {
            let overlay = if path.is_kernel() {
                Overlay::Kernel {
                    vni,
                    port,
                    addr: cidr(path, n),
                }
            } else {
                Overlay::Ours {
                    vni,
                    encap,
                    port,
                    addr: cidr(path, n),
                    geneve_option: None,
                }
            };
            spec = spec.with_host(HostSpec::new(host, overlay));
            if path == PathKind::KernelVxlanBest {
                spec = spec.with_kernel_tx_offload(host);
            }
            if let Some(mode) = r.mode() {
                spec = spec.with_host_mode(host, mode);
            }
        }
    }
    // Explicit, not the data plane's default: the fast path unless a host says otherwise.
    spec = spec.with_mode(DatapathMode::Xdp);
    spec.ready_timeout = Duration::from_secs(30);
    spec.workers = workers;
    spec.queues = queues;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<'a>(spec: &'a LabSpec, name: &str) -> &'a Overlay {
        &spec
            .host(name)
            .unwrap_or_else(|| panic!("host {name}"))
            .1
            .overlay
    }

    #[test]
    fn every_path_has_its_own_pair_and_segment() {
        let spec = spec(
            "t-",
            Path::new("/bin/dp"),
            WorkerTuning::default(),
            1,
            &PathKind::ALL,
        );
        spec.validate().expect("valid spec");
        let names: Vec<&str> = spec.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["k1", "k2", "kb1", "kb2", "v1", "v2", "g1", "g2", "a1", "a2"]
        );
        // Each overlay path's hosts are one segment and see only each other.
        for r in Route::ALL {
            assert_eq!(spec.peers(r.src), [spec_ip(&spec, r.dst)], "{}", r.path);
            assert_eq!(
                host(&spec, r.dst).addr().map(|a| a.addr),
                Some(overlay_addr(
                    if r.path == PathKind::Underlay {
                        PathKind::KernelVxlan
                    } else {
                        r.path
                    },
                    2
                ))
            );
        }
        // Offload on only on kb1/kb2; modes explicit on ours.
        assert!(spec.keeps_tx_offload("kb1") && spec.keeps_tx_offload("kb2"));
        assert!(!spec.keeps_tx_offload("k1") && !spec.keeps_tx_offload("k2"));
        assert!(matches!(
            host(&spec, "kb1"),
            Overlay::Kernel { vni: 11, .. }
        ));
        for h in ["v1", "v2", "g1", "g2"] {
            assert_eq!(spec.mode_of(h), Some(DatapathMode::Xdp), "{h}");
        }
        for h in ["a1", "a2"] {
            assert_eq!(spec.mode_of(h), Some(DatapathMode::Afxdp), "{h}");
            assert!(matches!(
                host(&spec, h),
                Overlay::Ours {
                    vni: 21,
                    encap: Encap::Vxlan,
                    ..
                }
            ));
        }
    }

    fn spec_ip(spec: &LabSpec, name: &str) -> Ipv4Addr {
        LabSpec::underlay_ip_at(spec.host(name).map(|(i, _)| i).unwrap_or(usize::MAX))
    }

    #[test]
    fn only_the_pairs_of_the_chosen_paths() {
        let s = spec(
            "t-",
            Path::new("/bin/dp"),
            WorkerTuning::default(),
            1,
            &[PathKind::Underlay, PathKind::OursVxlanAfxdp],
        );
        s.validate().expect("valid spec");
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["k1", "k2", "a1", "a2"]);
        let s = spec(
            "t-",
            Path::new("/bin/dp"),
            WorkerTuning::default(),
            1,
            &[PathKind::KernelVxlan, PathKind::Underlay],
        );
        assert_eq!(s.hosts.len(), 2, "one pair for both");
        assert!(!s.needs_dataplane());
    }
}
