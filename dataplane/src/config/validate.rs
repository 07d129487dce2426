//! Validation without the host: ranges, and the rules across fields and sections.

use std::{collections::HashMap, fmt, net::IpAddr, ops::RangeInclusive, time::Duration};

use ovl_common::{Encap, FDB_ENTRIES, UDP_PORT_ENTRIES, XSK_SLOTS};
use ovl_netlink::{IFNAME_MAX, IfnameError, check_ifname_len};

use super::{
    AGEING_SECS, BATCH_SIZE, Config, ConfigError, FAILBACK_HOLD_MS, FRAMES_PER_QUEUE, IpCidr,
    MAX_LEARNED, MAX_OVERLAY_IFNAME, QUEUES, VNI_RANGE, Vni, encap_name,
    error::invalid,
    format_mac,
    types::{GENEVE_OPT_WORDS, MAX_CPU, MAX_MTU, MAX_SOCKET_PATH, MIN_MTU_V4, MIN_MTU_V6},
};

impl Config {
    /// Checks ranges and the rules across fields, without looking at the host. `parse` runs
    /// it; call it on configs built or changed in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_underlay()?;
        self.validate_workers()?;
        self.validate_stats()?;
        self.validate_fdb()?;
        self.validate_vnis()
    }

    fn validate_underlay(&self) -> Result<(), ConfigError> {
        let u = &self.underlay;
        if u.interfaces.is_empty() {
            return Err(invalid(
                "underlay.interfaces",
                "must name at least one uplink",
            ));
        }
        let max = ovl_common::UPLINK_ENTRIES as usize;
        if u.interfaces.len() > max {
            return Err(invalid(
                "underlay.interfaces",
                format!("{} uplinks; at most {max}", u.interfaces.len()),
            ));
        }
        for (i, name) in u.interfaces.iter().enumerate() {
            let field = if u.interfaces.len() == 1 {
                "underlay.interface".to_string()
            } else {
                format!("underlay.interfaces[{i}]")
            };
            check_ifname(&field, name, IFNAME_MAX, "")?;
            if u.interfaces[..i].contains(name) {
                return Err(invalid(field, format!("{name:?} is listed twice")));
            }
        }
        if u.failback_hold > Duration::from_millis(*FAILBACK_HOLD_MS.end()) {
            return Err(invalid(
                "underlay.failback_hold_ms",
                format!("at most {} ms", FAILBACK_HOLD_MS.end()),
            ));
        }
        check_unicast_ip("underlay.local_ip", u.local_ip, "the VTEP address")
    }

    fn validate_workers(&self) -> Result<(), ConfigError> {
        let w = &self.workers;
        check_range("workers.queues", w.queues, &QUEUES)?;
        if let Some(cpus) = &w.cpus {
            if cpus.len() != w.queues as usize {
                return Err(invalid(
                    "workers.cpus",
                    format!(
                        "{} CPUs for {} queues; give one CPU per queue",
                        cpus.len(),
                        w.queues
                    ),
                ));
            }
            for (i, cpu) in cpus.iter().enumerate() {
                let field = format!("workers.cpus[{i}]");
                check_range(&field, *cpu, &(0..=MAX_CPU))?;
                if let Some(j) = cpus[..i].iter().position(|c| c == cpu) {
                    return Err(invalid(
                        field,
                        format!("CPU {cpu} is already given to queue {j}; one CPU per queue"),
                    ));
                }
            }
        }
        check_range("workers.batch_size", w.batch_size, &BATCH_SIZE)?;
        check_range(
            "workers.frames_per_queue",
            w.frames_per_queue,
            &FRAMES_PER_QUEUE,
        )?;
        if !w.frames_per_queue.is_power_of_two() {
            return Err(invalid(
                "workers.frames_per_queue",
                format!("{} is not a power of two", w.frames_per_queue),
            ));
        }
        if w.batch_size > w.frames_per_queue {
            return Err(invalid(
                "workers.batch_size",
                format!(
                    "{} is larger than frames_per_queue {}",
                    w.batch_size, w.frames_per_queue
                ),
            ));
        }
        Ok(())
    }

    fn validate_stats(&self) -> Result<(), ConfigError> {
        let s = &self.stats;
        if let Some(addr) = s.prometheus {
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "stats.prometheus",
                    format!("must be a loopback address, got {addr}"),
                ));
            }
            if addr.port() == 0 {
                return Err(invalid(
                    "stats.prometheus",
                    format!("port 0 in {addr}; give a fixed port"),
                ));
            }
        }
        let path = &s.control_socket;
        let field = "stats.control_socket";
        if !path.is_absolute() {
            return Err(invalid(
                field,
                format!("{} is not an absolute path", path.display()),
            ));
        }
        if path.file_name().is_none() || path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return Err(invalid(
                field,
                format!("{} names a directory, not a socket", path.display()),
            ));
        }
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(invalid(
                field,
                format!(
                    "{len} bytes is too long for a unix socket path (at most {MAX_SOCKET_PATH})"
                ),
            ));
        }
        Ok(())
    }

    fn validate_fdb(&self) -> Result<(), ConfigError> {
        let f = &self.fdb;
        if f.ageing < Duration::from_secs(*AGEING_SECS.start())
            || f.ageing > Duration::from_secs(*AGEING_SECS.end())
        {
            return Err(invalid(
                "fdb.ageing_secs",
                format!(
                    "{} s is out of range {}..={}",
                    f.ageing.as_secs_f64(),
                    AGEING_SECS.start(),
                    AGEING_SECS.end()
                ),
            ));
        }
        check_range("fdb.max_learned", f.max_learned, &MAX_LEARNED)?;
        let statics: usize = self.vnis.iter().map(|v| v.fdb.len()).sum();
        if f.max_learned + statics > FDB_ENTRIES as usize {
            return Err(invalid(
                "fdb.max_learned",
                format!(
                    "{} learned + {statics} static entries exceed the FDB's {FDB_ENTRIES}",
                    f.max_learned
                ),
            ));
        }
        Ok(())
    }

    fn validate_vnis(&self) -> Result<(), ConfigError> {
        if self.vnis.is_empty() {
            return Err(invalid("vni", "no [[vni]]; at least one is required"));
        }
        // Every uplink's queues and every overlay port's queues share the XSKMAP.
        let slots = self.xsk_slots().needed(self.vnis.len() as u32);
        if slots > XSK_SLOTS {
            return Err(invalid(
                "vni",
                format!(
                    "{} VNIs and {} uplinks with {} queues need {slots} AF_XDP socket slots; there are {XSK_SLOTS}",
                    self.vnis.len(),
                    self.underlay.interfaces.len(),
                    self.workers.queues
                ),
            ));
        }
        let local_ip = self.underlay.local_ip;
        let uplinks = &self.underlay.interfaces;
        let mut ids: HashMap<u32, usize> = HashMap::new();
        let mut ports: HashMap<u16, (Encap, u32)> = HashMap::new();
        // Every kernel-side and data-plane-side name, with the VNI index that uses it.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, vni) in self.vnis.iter().enumerate() {
            let f = |key: &str| format!("vni[{i}].{key}");
            check_range(&f("id"), vni.id, &VNI_RANGE)?;
            if let Some(j) = ids.insert(vni.id, i) {
                return Err(invalid(
                    f("id"),
                    format!("duplicate VNI {} (also vni[{j}])", vni.id),
                ));
            }

            if vni.port == 0 {
                return Err(invalid(f("port"), "0 is not a usable UDP port"));
            }
            match ports.get(&vni.port) {
                Some((encap, other)) if *encap != vni.encap => {
                    return Err(invalid(
                        f("port"),
                        format!(
                            "{} already carries {} for vni {other}; a port carries one encapsulation",
                            vni.port,
                            encap_name(*encap)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    if ports.len() == UDP_PORT_ENTRIES as usize {
                        return Err(invalid(
                            f("port"),
                            format!("more than {UDP_PORT_ENTRIES} different UDP ports"),
                        ));
                    }
                    ports.insert(vni.port, (vni.encap, vni.id));
                }
            }

            let why = format!(
                " so that {:?} fits IFNAMSIZ (15 bytes and a NUL)",
                vni.dp_interface()
            );
            check_ifname(&f("interface"), &vni.interface, MAX_OVERLAY_IFNAME, &why)?;
            for name in [vni.interface.clone(), vni.dp_interface()] {
                if uplinks.contains(&name) {
                    return Err(invalid(
                        f("interface"),
                        format!("{name:?} is an underlay interface"),
                    ));
                }
                if let Some(j) = names.get(&name) {
                    return Err(invalid(
                        f("interface"),
                        format!("{name:?} is already used by vni[{j}]"),
                    ));
                }
            }
            names.insert(vni.interface.clone(), i);
            names.insert(vni.dp_interface(), i);

            if let Some(cidr) = &vni.address {
                check_cidr(&f("address"), cidr)?;
            }
            if let Some(mac) = &vni.mac {
                check_unicast_mac(&f("mac"), mac)?;
            }
            if let Some(mtu) = vni.mtu {
                let min = min_mtu(vni);
                if mtu < min || mtu > MAX_MTU {
                    let v6 = if min == MIN_MTU_V6 {
                        " (IPv6 address: at least 1280)"
                    } else {
                        ""
                    };
                    return Err(invalid(
                        f("mtu"),
                        format!("{mtu} is out of range {min}..={MAX_MTU}{v6}"),
                    ));
                }
            }

            for (k, remote) in vni.flood.iter().enumerate() {
                let field = format!("vni[{i}].flood[{k}]");
                check_remote(&field, *remote, local_ip)?;
                if let Some(j) = vni.flood[..k].iter().position(|r| r == remote) {
                    return Err(invalid(
                        field,
                        format!("{remote} is already in the list (flood[{j}])"),
                    ));
                }
            }
            for (k, entry) in vni.fdb.iter().enumerate() {
                let mac_field = format!("vni[{i}].fdb[{k}].mac");
                check_unicast_mac(&mac_field, &entry.mac)?;
                if let Some(j) = vni.fdb[..k].iter().position(|e| e.mac == entry.mac) {
                    return Err(invalid(
                        mac_field,
                        format!("duplicate MAC {} (also fdb[{j}])", format_mac(&entry.mac)),
                    ));
                }
                check_remote(&format!("vni[{i}].fdb[{k}].remote"), entry.remote, local_ip)?;
            }

            if let Some(opt) = &vni.geneve_option {
                if vni.encap != Encap::Geneve {
                    return Err(invalid(
                        f("geneve_option"),
                        format!(
                            "only for geneve VNIs; this one is {}",
                            encap_name(vni.encap)
                        ),
                    ));
                }
                if opt[3] != GENEVE_OPT_WORDS {
                    return Err(invalid(
                        f("geneve_option"),
                        format!(
                            "length byte is {}; the option carries exactly 4 bytes of data (length 1)",
                            opt[3]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The smallest overlay MTU of a VNI: IPv6 needs 1280.
pub(super) fn min_mtu(vni: &Vni) -> u32 {
    match vni.address {
        Some(IpCidr {
            addr: IpAddr::V6(_),
            ..
        }) => MIN_MTU_V6,
        _ => MIN_MTU_V4,
    }
}

fn check_range<T: PartialOrd + fmt::Display>(
    field: &str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The kernel's rules for interface names (one check for every config and request, in
/// ovl-netlink), with a length limit of `max` bytes, explained by `why` when it is shorter
/// than IFNAMSIZ allows.
fn check_ifname(field: &str, name: &str, max: usize, why: &str) -> Result<(), ConfigError> {
    check_ifname_len(name, max).map_err(|e| {
        let why = if matches!(e, IfnameError::TooLong { .. }) {
            why
        } else {
            ""
        };
        invalid(field, format!("{e}{why}"))
    })
}

fn check_unicast_ip(field: &str, ip: IpAddr, what: &str) -> Result<(), ConfigError> {
    let link_local_v6 = matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
    let mapped = matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
    let problem = if ip.is_unspecified() {
        "is the unspecified address"
    } else if matches!(ip, IpAddr::V4(a) if a.is_broadcast()) {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else if link_local_v6 {
        "is link-local (fe80::/10), which needs an interface scope; use a global or ULA address"
    } else if mapped {
        "is IPv4-mapped; write the IPv4 address itself"
    } else {
        return Ok(());
    };
    Err(invalid(
        field,
        format!("{ip} {problem}; {what} must be a unicast underlay address"),
    ))
}

fn check_remote(field: &str, remote: IpAddr, local_ip: IpAddr) -> Result<(), ConfigError> {
    check_unicast_ip(field, remote, "a remote VTEP")?;
    if remote.is_ipv6() != local_ip.is_ipv6() {
        let (r, l) = if remote.is_ipv6() {
            ("IPv6", "IPv4")
        } else {
            ("IPv4", "IPv6")
        };
        return Err(invalid(
            field,
            format!(
                "{remote} is {r} but underlay.local_ip {local_ip} is {l}; the VTEPs of one data plane share one family, as in the kernel driver"
            ),
        ));
    }
    if remote == local_ip {
        return Err(invalid(
            field,
            format!("{remote} is our own underlay.local_ip, not a remote VTEP"),
        ));
    }
    Ok(())
}

fn check_unicast_mac(field: &str, mac: &[u8; 6]) -> Result<(), ConfigError> {
    if mac.iter().all(|b| *b == 0) {
        return Err(invalid(
            field,
            "00:00:00:00:00:00 is not a usable MAC address",
        ));
    }
    if mac[0] & 1 != 0 {
        return Err(invalid(
            field,
            format!(
                "{} is a multicast MAC address; it must be unicast",
                format_mac(mac)
            ),
        ));
    }
    Ok(())
}

fn check_cidr(field: &str, cidr: &IpCidr) -> Result<(), ConfigError> {
    if cidr.prefix_len > cidr.max_prefix_len() {
        return Err(invalid(
            field,
            format!(
                "prefix length {} is too long for {} (at most {})",
                cidr.prefix_len,
                cidr.addr,
                cidr.max_prefix_len()
            ),
        ));
    }
    if cidr.addr.is_unspecified() || cidr.addr.is_multicast() {
        return Err(invalid(field, format!("{cidr} is not a unicast address")));
    }
    if let IpAddr::V4(v4) = cidr.addr {
        if v4.is_broadcast() {
            return Err(invalid(field, format!("{cidr} is the broadcast address")));
        }
        // /31 and /32 have no network or broadcast address (RFC 3021).
        if cidr.prefix_len <= 30 {
            let host_mask = u32::MAX >> cidr.prefix_len;
            let host = u32::from(v4) & host_mask;
            if host == 0 {
                return Err(invalid(
                    field,
                    format!("{cidr} is the subnet's network address, not a host address"),
                ));
            }
            if host == host_mask {
                return Err(invalid(
                    field,
                    format!("{cidr} is the subnet's broadcast address, not a host address"),
                ));
            }
        }
    }
    Ok(())
}
