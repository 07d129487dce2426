//! Building a lab's network: the router and host namespaces, the uplink veths with their
//! addresses and routes, the kernel VXLAN overlays; and the uplink faults tests inject.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
};

use ovl_netlink::format_mac;

use super::Lab;
use crate::{
    LabError, cmd, netns,
    spec::{FABRIC, LabSpec, Overlay},
};

impl Lab {
    pub(super) fn build_underlay(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let fabric = self.spec.ns(FABRIC);
        progress(&format!("router {fabric}"));
        netns::add(&fabric)?;
        self.set_ipv6(&fabric)?;
        netns::sysctl(&fabric, "net/ipv4/ip_forward", "1")?;
        if self.spec.underlay_ipv6 {
            // `all` also sets `default`, so every router port created later forwards.
            netns::sysctl(&fabric, "net/ipv6/conf/all/forwarding", "1")?;
        }
        if self.spec.uplinks > 1 {
            // A route through a link without carrier is skipped, so the router reaches a
            // host over whichever of its uplinks is up.
            self.ignore_linkdown_routes(&fabric)?;
        }
        for (i, h) in self.spec.hosts.iter().enumerate() {
            let ns = self.spec.ns(&h.name);
            let me = LabSpec::underlay_ip_at(i);
            let gw = LabSpec::gateway_at(i);
            if self.spec.underlay_ipv6 {
                progress(&format!(
                    "host {ns}: underlay {me}/24 via {gw}, {}/64 via {}",
                    LabSpec::underlay_ip6_at(i),
                    LabSpec::gateway6_at(i)
                ));
            } else {
                progress(&format!("host {ns}: underlay {me}/24 via {gw}"));
            }
            netns::add(&ns)?;
            self.set_ipv6(&ns)?;
            let uplinks = self.spec.uplinks_of(&h.name);
            if uplinks > 1 {
                self.ignore_linkdown_routes(&ns)?;
            }
            for k in 0..uplinks {
                self.add_uplink(&h.name, k)?;
            }
        }
        Ok(())
    }

    /// Routes through a link without carrier are skipped in `ns` (both families when the
    /// underlay has IPv6), for hosts and a router with several uplinks.
    fn ignore_linkdown_routes(&self, ns: &str) -> Result<(), LabError> {
        let families: &[&str] = if self.spec.underlay_ipv6 {
            &["ipv4", "ipv6"]
        } else {
            &["ipv4"]
        };
        for fam in families {
            for scope in ["all", "default"] {
                netns::sysctl(
                    ns,
                    &format!("net/{fam}/conf/{scope}/ignore_routes_with_linkdown"),
                    "1",
                )?;
            }
        }
        Ok(())
    }

    /// Turns IPv6 on for the underlay veth `dev` in `ns` only (the namespace's `default` may
    /// keep it off, see [`LabSpec::ipv6`]): no DAD, so addresses work at once; addresses kept
    /// when the link goes admin down (as IPv4 does), so a router port that
    /// [`Lab::set_uplink_carrier`] turns off and on again still has its gateway address.
    fn enable_underlay_ipv6(ns: &str, dev: &str) -> Result<(), LabError> {
        for (key, value) in [
            ("accept_dad", "0"),
            ("keep_addr_on_down", "1"),
            ("disable_ipv6", "0"),
        ] {
            netns::sysctl(ns, &format!("net/ipv6/conf/{dev}/{key}"), value)?;
        }
        Ok(())
    }

    /// The router's end of host `host`'s uplink `k` (the host's end is `eth{k}`).
    pub fn uplink_port(host: &str, k: u32) -> String {
        if k == 0 {
            format!("to-{host}")
        } else {
            format!("tb-{host}")
        }
    }

    /// Creates host `host`'s uplink `k`: a veth `eth{k}` to the router with the host's
    /// underlay address, routes on both sides preferring lower `k`. A backup uplink takes
    /// `eth0`'s MAC (if `eth0` exists), as a VM's two NICs share one.
    pub fn add_uplink(&self, host: &str, k: u32) -> Result<(), LabError> {
        let (i, _) = self
            .spec
            .host(host)
            .ok_or_else(|| LabError::UnknownHost(host.to_string()))?;
        let fabric = self.spec.ns(FABRIC);
        let ns = self.spec.ns(host);
        let mtu = self.spec.underlay_mtu.to_string();
        let port = Self::uplink_port(host, k);
        let dev = format!("eth{k}");
        let queues = self.spec.queues.max(1).to_string();
        // Created inside the router's namespace with the peer moved straight into the
        // host's, so nothing ever appears in the root namespace and names cannot clash
        // between labs.
        cmd::ip_ns(
            &fabric,
            &[
                "link",
                "add",
                &port,
                "mtu",
                &mtu,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "type",
                "veth",
                "peer",
                "name",
                &dev,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "mtu",
                &mtu,
                "netns",
                &ns,
            ],
        )?;
        // A VM's virtual function and synthetic NIC share one MAC: so do the uplinks here.
        let shared_mac = (0..self.spec.uplinks_of(host))
            .filter(|&j| j != k)
            .find_map(|j| link_mac(&ns, &format!("eth{j}")));
        if let Some(mac) = shared_mac {
            cmd::ip_ns(&ns, &["link", "set", &dev, "address", &mac])?;
        }
        self.address_uplink_end(
            &fabric,
            &port,
            k,
            LabSpec::gateway_at(i),
            LabSpec::gateway6_at(i),
        )?;
        if self.spec.router_napi || self.spec.underlay_ipv6 {
            // NAPI (GRO) on the router's end, so the host's end takes frames sent from XDP
            // (it advertises NDO_XMIT), as a NIC's driver does: over IPv6 our egress program
            // sends that way (README, IPv6 VTEPs), and draining sends with XDP_TX.
            ethtool_set(&fabric, &port, "gro", "on")?;
        }
        cmd::ip_ns(&fabric, &["link", "set", &port, "up"])?;
        self.host_route(host, k)?;
        // The same IPv6 address on every uplink, as the IPv4 one.
        self.address_uplink_end(
            &ns,
            &dev,
            k,
            LabSpec::underlay_ip_at(i),
            LabSpec::underlay_ip6_at(i),
        )?;
        cmd::ip_ns(&ns, &["link", "set", &dev, "up"])?;
        self.replace_routes(
            &ns,
            &dev,
            k,
            UplinkRoute::DefaultVia,
            LabSpec::gateway_at(i),
            LabSpec::gateway6_at(i),
        )
    }

    /// Addresses one end of uplink `k`, `dev` in `ns`: `v4/24` and, with an IPv6 underlay,
    /// IPv6 turned on there and `v6/64` (no DAD), each at the uplink's metric.
    fn address_uplink_end(
        &self,
        ns: &str,
        dev: &str,
        k: u32,
        v4: Ipv4Addr,
        v6: Ipv6Addr,
    ) -> Result<(), LabError> {
        let metric = uplink_metric(k, v4.into());
        cmd::ip_ns(
            ns,
            &[
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                dev,
                "metric",
                &metric,
            ],
        )?;
        if self.spec.underlay_ipv6 {
            Self::enable_underlay_ipv6(ns, dev)?;
            let metric6 = uplink_metric(k, v6.into());
            cmd::ip_ns(
                ns,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    dev,
                    "metric",
                    &metric6,
                    "nodad",
                ],
            )?;
        }
        Ok(())
    }

    /// Host `host`'s uplink `k` loses (false) or regains (true) carrier: the router's end
    /// goes down or up, as when a cable is pulled or a switch port fails.
    pub fn set_uplink_carrier(&self, host: &str, k: u32, up: bool) -> Result<(), LabError> {
        let fabric = self.spec.ns(FABRIC);
        let port = Self::uplink_port(host, k);
        cmd::ip_ns(
            &fabric,
            &["link", "set", &port, if up { "up" } else { "down" }],
        )?;
        if up {
            // Routes through a device that went down are gone; put the host route back.
            self.host_route(host, k)?;
        }
        Ok(())
    }

    /// With several uplinks, the router's route to host `host` through uplink `k`: a host
    /// route whose metric tells which link reaches the host, by preference.
    fn host_route(&self, host: &str, k: u32) -> Result<(), LabError> {
        if self.spec.uplinks_of(host) < 2 {
            return Ok(());
        }
        let (i, _) = self
            .spec
            .host(host)
            .ok_or_else(|| LabError::UnknownHost(host.to_string()))?;
        let port = Self::uplink_port(host, k);
        let fabric = self.spec.ns(FABRIC);
        self.replace_routes(
            &fabric,
            &port,
            k,
            UplinkRoute::Host,
            LabSpec::underlay_ip_at(i),
            LabSpec::underlay_ip6_at(i),
        )
    }

    /// [`replace_route`] through uplink `k`'s end `dev` in `ns`, to or via `v4` and, with an
    /// IPv6 underlay, `v6`.
    fn replace_routes(
        &self,
        ns: &str,
        dev: &str,
        k: u32,
        route: fn(IpAddr) -> UplinkRoute,
        v4: Ipv4Addr,
        v6: Ipv6Addr,
    ) -> Result<(), LabError> {
        replace_route(ns, route(v4.into()), dev, k)?;
        if self.spec.underlay_ipv6 {
            replace_route(ns, route(v6.into()), dev, k)?;
        }
        Ok(())
    }

    /// Host `host`'s uplink `k` device disappears (both ends of the veth), as a VM's virtual
    /// function does while the host is serviced. `add_uplink` brings it back (new index).
    pub fn remove_uplink(&self, host: &str, k: u32) -> Result<(), LabError> {
        let ns = self.ns_checked(host)?;
        cmd::ip_ns(&ns, &["link", "del", &format!("eth{k}")]).map(drop)
    }

    /// Applies `spec.ipv6` before any interface but `lo` exists, so every later one (moved
    /// in or created) inherits the `default` setting.
    fn set_ipv6(&self, ns: &str) -> Result<(), LabError> {
        let off = if self.spec.ipv6 { "0" } else { "1" };
        netns::sysctl(ns, "net/ipv6/conf/all/disable_ipv6", off)?;
        netns::sysctl(ns, "net/ipv6/conf/default/disable_ipv6", off)
    }

    pub(super) fn build_kernel_overlays(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        for (i, h) in self.spec.hosts.iter().enumerate() {
            let Overlay::Kernel { vni, port, addr } = h.overlay else {
                continue;
            };
            let ns = self.spec.ns(&h.name);
            let dev = format!("vxlan{vni}");
            let peers = self.spec.vtep_peers(&h.name);
            let local = self.spec.vtep_ip_at(i);
            progress(&format!(
                "host {ns}: kernel VXLAN {dev} (VNI {vni}, port {port}, local {local}) {addr}, \
                 {} peer(s), TX checksum offload {}",
                peers.len(),
                if self.spec.keeps_tx_offload(&h.name) {
                    "on"
                } else {
                    "off"
                }
            ));
            cmd::ip_ns(
                &ns,
                &[
                    "link",
                    "add",
                    &dev,
                    "address",
                    &format_mac(&LabSpec::overlay_mac_at(i)),
                    "type",
                    "vxlan",
                    "id",
                    &vni.to_string(),
                    "dstport",
                    &port.to_string(),
                    // An IPv6 `local` makes the device IPv6-only (peers must be IPv6 too).
                    // Its UDP checksum settings stay at the defaults: over IPv6 it computes
                    // the outer UDP checksum on transmit (`udp6zerocsumtx` off) and drops
                    // zero-checksum packets on receive (`udp6zerocsumrx` off), so any other
                    // VTEP talking to it over IPv6 must send real UDP checksums.
                    "local",
                    &local.to_string(),
                    // Bound to eth0 so the kernel sizes the MTU: underlay minus
                    // `kernel_vxlan_overhead()` (50 over IPv4, 70 over IPv6).
                    "dev",
                    "eth0",
                ],
            )?;
            cmd::ip_ns(&ns, &["addr", "add", &addr.to_string(), "dev", &dev])?;
            // A veth never computes the checksums it "offloads"; the kernel VXLAN driver then
            // sends inner TCP/UDP with partial checksums, which only a kernel receiver (sharing
            // the skb's state) accepts. Real NICs fill them in; here the stack must, unless the
            // spec asks for the driver at its best (kernel receivers only).
            if !self.spec.keeps_tx_offload(&h.name) {
                ethtool_set(&ns, &dev, "tx", "off")?;
                // The same for the outer UDP checksum over IPv6, which the driver leaves to
                // eth0: partial on a veth, it would reach a non-kernel receiver unfinished.
                if self.spec.underlay_ipv6 {
                    ethtool_set(&ns, "eth0", "tx", "off")?;
                }
            }
            cmd::ip_ns(&ns, &["link", "set", &dev, "up"])?;
            for peer in peers {
                // Head-end replication: broadcast and unknown unicast go to every peer.
                cmd::bridge_ns(
                    &ns,
                    &[
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        &dev,
                        "dst",
                        &peer.to_string(),
                    ],
                )?;
            }
        }
        Ok(())
    }
}

/// Route metric of uplink `k` (the lowest wins) in `ip`'s family: `100 k` for IPv4. IPv6 reads
/// metric 0 as "the default" (1024 for a route, 256 for a prefix route), which would rank
/// `eth0` below `eth1`; so there it starts at 100.
fn uplink_metric(k: u32, ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => 100 * k,
        IpAddr::V6(_) => 100 * (k + 1),
    }
    .to_string()
}

/// A route through an uplink: the default one via a gateway, or the host route to an address.
#[derive(Clone, Copy, Debug)]
enum UplinkRoute {
    DefaultVia(IpAddr),
    Host(IpAddr),
}

/// `ip [-6] route replace` of `route` through `dev` in `ns`, at uplink `k`'s metric.
fn replace_route(ns: &str, route: UplinkRoute, dev: &str, k: u32) -> Result<(), LabError> {
    let (ip, to, via) = match route {
        UplinkRoute::DefaultVia(gw) => (gw, "default".to_string(), Some(gw.to_string())),
        UplinkRoute::Host(ip) => (
            ip,
            format!("{ip}/{}", if ip.is_ipv6() { 128 } else { 32 }),
            None,
        ),
    };
    let metric = uplink_metric(k, ip);
    let mut args = Vec::new();
    if ip.is_ipv6() {
        args.push("-6");
    }
    args.extend(["route", "replace", &to]);
    if let Some(via) = &via {
        args.extend(["via", via]);
    }
    args.extend(["dev", dev, "metric", &metric]);
    cmd::ip_ns(ns, &args).map(drop)
}

/// `ethtool -K DEV FEATURE VALUE` inside `ns`.
fn ethtool_set(ns: &str, dev: &str, feature: &str, value: &str) -> Result<(), LabError> {
    cmd::run_ok(
        Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", dev, feature, value]),
        cmd::CMD_TIMEOUT,
    )
    .map(drop)
}

/// The MAC address of `dev` in `ns`, if it exists.
fn link_mac(ns: &str, dev: &str) -> Option<String> {
    let out = cmd::ip_ns(ns, &["-j", "link", "show", "dev", dev]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get(0)?.get("address")?.as_str().map(str::to_string)
}

pub(super) fn link_exists(ns: &str, dev: &str) -> bool {
    cmd::ip_ns(ns, &["link", "show", "dev", dev]).is_ok()
}

/// Admin state and IPv4 addresses of an interface, from `ip -j addr`.
#[derive(Debug, Default)]
pub(crate) struct IfState {
    pub up: bool,
    pub addrs: Vec<Ipv4Addr>,
    pub prefixes: Vec<String>,
}

/// The state of `dev` in `ns`, `None` if it does not exist.
pub(crate) fn interface_state(ns: &str, dev: &str) -> Option<IfState> {
    let out = cmd::ip_ns(ns, &["-j", "addr", "show", "dev", dev]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let link = v.as_array()?.first()?;
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let mut st = IfState {
        up,
        ..IfState::default()
    };
    for a in link["addr_info"].as_array().into_iter().flatten() {
        if a["family"] == "inet"
            && let Some(ip) = a["local"].as_str().and_then(|s| s.parse().ok())
        {
            st.addrs.push(ip);
            st.prefixes
                .push(format!("{ip}/{}", a["prefixlen"].as_u64().unwrap_or(32)));
        }
    }
    Some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_metrics_prefer_lower_uplinks_and_avoid_ipv6_metric_zero() {
        let v4 = IpAddr::from(Ipv4Addr::new(10, 0, 1, 2));
        let v6 = IpAddr::from(Ipv6Addr::LOCALHOST);
        assert_eq!(uplink_metric(0, v4), "0");
        assert_eq!(uplink_metric(1, v4), "100");
        assert_eq!(uplink_metric(0, v6), "100");
        assert_eq!(uplink_metric(1, v6), "200");
    }
}
