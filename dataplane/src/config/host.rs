//! The host side: what the host looks like ([`HostInfo::gather`], through route netlink)
//! and the config checked against it ([`Config::check_host`], pure).

use std::net::IpAddr;

use ovl_netlink::Netlink;

use super::{
    Config, ConfigError, DatapathMode, UMEM_FRAME_SIZE, encap_name, error::invalid, one_frame_mtu,
    types::MAX_MTU, validate::min_mtu,
};

/// What the host looks like, gathered before validation so that validation is pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub interfaces: Vec<HostInterface>,
    /// CPUs this process may run on; empty when unknown (then `workers.cpus` is not checked).
    pub cpus: Vec<usize>,
}

/// One interface of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub mtu: u32,
    /// Its IPv4 and IPv6 addresses.
    pub addrs: Vec<IpAddr>,
}

/// What the host checks found out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReport {
    /// MTU of the underlay (the smallest of the present uplinks').
    pub underlay_mtu: u32,
    /// Effective overlay MTU of every VNI, in the order of [`Config::vnis`].
    pub vnis: Vec<VniMtu>,
    /// Configured uplinks with no device now (attached when they appear).
    pub absent_uplinks: Vec<String>,
    /// Limits the host and mode impose that a user should know of (one line each).
    pub notes: Vec<String>,
}

/// The effective overlay MTU of one VNI: the configured one, or underlay MTU - overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VniMtu {
    pub id: u32,
    pub mtu: u32,
}

impl HostReport {
    /// Effective MTU of `config.vnis[index]`, for the config this report was made for.
    ///
    /// # Panics
    /// If `index` is out of range: the report has one entry per configured VNI, so that is a
    /// bug in the caller, not bad input.
    pub fn mtu(&self, index: usize) -> u32 {
        self.vnis[index].mtu
    }

    /// Effective MTU of the VNI with id `id`.
    pub fn mtu_of_vni(&self, id: u32) -> Option<u32> {
        self.vnis.iter().find(|v| v.id == id).map(|v| v.mtu)
    }
}

impl HostInfo {
    /// A host with these interfaces and unknown CPUs.
    pub fn from_interfaces(interfaces: Vec<HostInterface>) -> HostInfo {
        HostInfo {
            interfaces,
            cpus: Vec::new(),
        }
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&HostInterface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// Interfaces, their MTUs and IPv4 and IPv6 addresses (route netlink dumps, as `ip
    /// link` and `ip addr` read them) in the calling thread's network namespace, and the CPUs
    /// in this thread's affinity mask.
    pub fn gather() -> Result<HostInfo, ConfigError> {
        // The netlink error names the request ("dump links: ...").
        let host_err = |e: ovl_netlink::NetlinkError| ConfigError::Host {
            what: "route netlink",
            source: std::io::Error::other(e),
        };
        let nl = Netlink::open().map_err(host_err)?;
        // Links first: an address whose link came after the dump is left out with its link.
        let links = nl.links().map_err(host_err)?;
        let addrs = nl.addrs(None).map_err(host_err)?;
        let interfaces = links
            .into_iter()
            .map(|link| HostInterface {
                // Addresses added with a label (`eth0:1`) are the link's like any other.
                addrs: addrs
                    .iter()
                    .filter(|a| a.index == link.index)
                    .map(|a| a.addr)
                    .collect(),
                name: link.name,
                mtu: link.mtu,
            })
            .collect();
        let cpus = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        Ok(HostInfo { interfaces, cpus })
    }
}

impl Config {
    /// Checks the config against the host: the underlay interface exists and carries
    /// `local_ip`, every VNI's overlay MTU fits the underlay's, pinned CPUs are ours, and
    /// everything [`Config::validate`] checks (so configs built in code are covered too).
    pub fn check_host(&self, host: &HostInfo) -> Result<HostReport, ConfigError> {
        self.validate()?;
        let u = &self.underlay;
        let present: Vec<&HostInterface> = u
            .interfaces
            .iter()
            .filter_map(|n| host.interface(n))
            .collect();
        let field = if u.interfaces.len() == 1 {
            "underlay.interface"
        } else {
            "underlay.interfaces"
        };
        let Some(first) = present.first() else {
            let have: Vec<&str> = host.interfaces.iter().map(|i| i.name.as_str()).collect();
            let wanted = if u.interfaces.len() == 1 {
                format!("{:?}", u.primary())
            } else {
                format!("of {:?}", u.interfaces)
            };
            return Err(invalid(
                field,
                format!(
                    "no interface {wanted} in this network namespace (it has: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        };
        if !present.iter().any(|i| i.addrs.contains(&u.local_ip)) {
            let iface = first;
            let elsewhere = host
                .interfaces
                .iter()
                .find(|i| i.addrs.contains(&u.local_ip))
                .map(|i| format!("; it is on {}", i.name))
                .unwrap_or_default();
            let family = if u.ipv6() { "IPv6" } else { "IPv4" };
            let same: Vec<String> = iface
                .addrs
                .iter()
                .filter(|a| a.is_ipv6() == u.ipv6())
                .map(IpAddr::to_string)
                .collect();
            let has = if same.is_empty() {
                format!("{} has no {family} address", iface.name)
            } else {
                format!("{} has {}", iface.name, same.join(", "))
            };
            let on = if present.len() == 1 {
                iface.name.clone()
            } else {
                "any present uplink".to_string()
            };
            return Err(invalid(
                "underlay.local_ip",
                format!(
                    "{} is not configured on {on} ({has}{elsewhere})",
                    u.local_ip
                ),
            ));
        }
        // Every uplink may carry the traffic: the overlay must fit the smallest.
        let underlay_mtu = present.iter().map(|i| i.mtu).min().unwrap_or(first.mtu);
        let absent: Vec<String> = u
            .interfaces
            .iter()
            .filter(|n| host.interface(n).is_none())
            .cloned()
            .collect();
        if let Some(cpus) = &self.workers.cpus
            && !host.cpus.is_empty()
        {
            for (i, cpu) in cpus.iter().enumerate() {
                if !host.cpus.contains(cpu) {
                    let allowed: Vec<String> = host.cpus.iter().map(usize::to_string).collect();
                    return Err(invalid(
                        format!("workers.cpus[{i}]"),
                        format!(
                            "CPU {cpu} is not available to this process (it may use {})",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut vnis = Vec::with_capacity(self.vnis.len());
        let mut notes = Vec::new();
        for (i, vni) in self.vnis.iter().enumerate() {
            let field = format!("vni[{i}].mtu");
            let overhead = vni.overhead(self.underlay.ipv6());
            let max = underlay_mtu.saturating_sub(overhead);
            let formula = format!(
                "underlay MTU {underlay_mtu} - {} overhead {overhead} = {max}",
                encap_name(vni.encap)
            );
            let min = min_mtu(vni);
            if max < min {
                return Err(invalid(
                    field,
                    format!("{formula}, below the minimum overlay MTU {min}"),
                ));
            }
            // Every frame of an "afxdp" port crosses a socket: it must fit one UMEM frame. So
            // does every frame sent over IPv6 VTEPs, in either mode (the TC fast path is IPv4
            // only: it cannot give GSO segments the UDP checksum IPv6 requires).
            let one_frame = one_frame_mtu(overhead);
            let afxdp = self.datapath.mode == DatapathMode::Afxdp;
            let why = if afxdp {
                "in mode \"afxdp\" every frame must fit one".to_string()
            } else {
                "over IPv6 VTEPs the workers send every frame, and it must fit one".to_string()
            };
            let clamped = afxdp || self.underlay.ipv6();
            let alternative = if afxdp {
                "mode \"xdp\" carries jumbo frames over IPv4 VTEPs"
            } else {
                "IPv4 VTEPs carry jumbo frames in mode \"xdp\""
            };
            let mtu = match vni.mtu {
                Some(mtu) if mtu > max => {
                    return Err(invalid(field, format!("{mtu} is too large: {formula}")));
                }
                Some(mtu) if clamped && mtu > one_frame => {
                    return Err(invalid(
                        field,
                        format!(
                            "{mtu} is too large: {why} {UMEM_FRAME_SIZE}-byte UMEM frame, so the overlay MTU is at most {one_frame} ({alternative})"
                        ),
                    ));
                }
                Some(mtu) => mtu,
                None if clamped && max.min(MAX_MTU) > one_frame => {
                    notes.push(format!(
                        "vni {}: overlay MTU clamped to {one_frame} (the underlay allows {}): {why} {UMEM_FRAME_SIZE}-byte UMEM frame; {alternative}",
                        vni.id,
                        max.min(MAX_MTU)
                    ));
                    one_frame
                }
                None => max.min(MAX_MTU),
            };
            if !clamped && mtu > one_frame {
                notes.push(format!(
                    "vni {}: frames up to MTU {mtu} take the fast path; the few the workers handle (floods, unknown or unresolved destinations) are dropped above {one_frame}, counted as xsk_rx_dropped",
                    vni.id
                ));
            }
            vnis.push(VniMtu { id: vni.id, mtu });
        }
        Ok(HostReport {
            underlay_mtu,
            vnis,
            absent_uplinks: absent,
            notes,
        })
    }
}
