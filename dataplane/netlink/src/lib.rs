//! Route netlink (rtnetlink) over a plain socket: links, veth pairs, addresses, routes,
//! neighbours.
//!
//! A small synchronous client: every call is one request and its reply on a socket opened
//! once (no process spawned, no allocation beyond the results). It works in the network
//! namespace of the thread that called [`Netlink::open`]; the socket stays in that namespace
//! even when used from other threads.
//!
//! - [`Netlink`]: requests (links, veth pairs, addresses, `ip route get`, neighbours).
//! - [`LinkWatcher`]: a socket subscribed to link and address changes, to sleep until one.
//! - [`sock_diag`]: TCP connections on given local addresses, listed and aborted (`ss -K`).
//! - [`check_ifname`]: the kernel's rules for interface names, checked before a request and
//!   by the config files that name interfaces.
//! - `msg` (private): message layouts, built and parsed without a socket, tested on bytes.

mod error;
mod genl;
mod ifname;
mod msg;
pub mod sock_diag;
mod socket;

use std::net::IpAddr;

pub use error::{NetlinkError, Result};
pub use genl::{xdp_act, xdp_features};
pub use ifname::{IFNAME_MAX, IfnameError, check_ifname, check_ifname_len};
pub use socket::{LinkWatcher, Netlink, WatchEvent};

/// Neighbour states (`ndm_state`, NUD_*), for [`Neighbour::state`].
pub mod nud {
    pub use crate::msg::{
        NUD_DELAY as DELAY, NUD_FAILED as FAILED, NUD_INCOMPLETE as INCOMPLETE, NUD_NOARP as NOARP,
        NUD_PERMANENT as PERMANENT, NUD_PROBE as PROBE, NUD_REACHABLE as REACHABLE,
        NUD_STALE as STALE,
    };
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// The link-layer address when it is 6 bytes long (Ethernet, veth, VXLAN...).
    pub mac: Option<[u8; 6]>,
    /// IFF_UP: administratively up.
    pub admin_up: bool,
    /// IFF_LOWER_UP: carrier, which the kernel reports only while the link is admin up too.
    /// For a veth this means both ends are up.
    pub oper_up: bool,
    /// IFLA_INFO_KIND, e.g. "veth", "vxlan"; `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace if it was moved).
    pub peer_index: Option<u32>,
}

/// One IPv4 or IPv6 address on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// The kernel's answer to `ip route get DST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Output interface.
    pub oif: u32,
    /// Next hop; `None` when the destination is on a connected subnet.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would use.
    pub prefsrc: Option<IpAddr>,
}

/// One ARP (IPv4) or neighbour-discovery (IPv6) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    /// Link-layer address; `None` while incomplete or failed.
    pub mac: Option<[u8; 6]>,
    /// NUD_* bits, see [`nud`].
    pub state: u16,
}

impl Neighbour {
    /// True when frames can be sent to `mac` now: the entry has a MAC and is REACHABLE,
    /// STALE, DELAY, PROBE, PERMANENT or NOARP (not INCOMPLETE, FAILED or NONE).
    pub fn is_usable(&self) -> bool {
        const USABLE: u16 =
            nud::REACHABLE | nud::STALE | nud::DELAY | nud::PROBE | nud::PERMANENT | nud::NOARP;
        self.mac.is_some() && self.state & USABLE != 0
    }
}

/// `aa:bb:cc:dd:ee:ff`, for messages.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(state: u16, mac: Option<[u8; 6]>) -> Neighbour {
        Neighbour {
            index: 1,
            ip: "10.0.0.1".parse().unwrap(),
            mac,
            state,
        }
    }

    #[test]
    fn usable_neighbour_states() {
        let mac = Some([2, 0, 0, 0, 0, 1]);
        for s in [
            nud::REACHABLE,
            nud::STALE,
            nud::DELAY,
            nud::PROBE,
            nud::PERMANENT,
            nud::NOARP,
        ] {
            assert!(n(s, mac).is_usable(), "state {s:#x}");
            assert!(!n(s, None).is_usable(), "state {s:#x} without MAC");
        }
        for s in [0, nud::INCOMPLETE, nud::FAILED] {
            assert!(!n(s, mac).is_usable(), "state {s:#x}");
        }
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(format_mac(&[2, 0, 0xab, 0, 0, 0x0a]), "02:00:ab:00:00:0a");
    }
}
