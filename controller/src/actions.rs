//! Carrying out the state machine's decisions: VIP addresses through netlink, and
//! announcements (gratuitous ARP, request and reply forms, per IPv4 VIP; an unsolicited
//! neighbour advertisement per IPv6 VIP) as frames built with `ovl-wire` and sent on an
//! `AF_PACKET` socket on the overlay interface.
//!
//! An announcement burst sends `count` rounds `interval` apart, the first at once; the event
//! loop asks [`Announcer::next_deadline`] when to call [`Announcer::poll`] so it never sleeps
//! inside a burst.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use ovl_netlink::Netlink;
use ovl_wire::{
    ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv6NeighborAdvert, Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr,
    icmpv6::{ALL_NODES, NDP_HOP_LIMIT},
};

use crate::{config::Vip, fsm::Nanos, node::Counters};

/// Shortest Ethernet frame without FCS; ARP frames are padded to it as senders usually do.
pub const MIN_FRAME: usize = 60;

/// What failed while changing addresses or announcing.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A netlink request failed.
    #[error("{0}")]
    Netlink(#[from] ovl_netlink::NetlinkError),
    /// The overlay interface is missing.
    #[error("interface {0} does not exist")]
    NoInterface(String),
    /// The overlay interface has no MAC address.
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    /// The packet socket failed.
    #[error("{context}: {error}")]
    Io {
        /// What was done.
        context: &'static str,
        /// The error.
        error: io::Error,
    },
    /// Writing a sysctl failed.
    #[error("{0}: {1}")]
    Sysctl(String, io::Error),
}

/// Gratuitous ARP request for `ip` at `mac`, to broadcast.
pub fn garp_request(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpRepr::gratuitous_request(EthernetAddress(mac), ip), mac)
}

/// Gratuitous ARP reply for `ip` at `mac`, to broadcast.
pub fn garp_reply(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpRepr::gratuitous_reply(EthernetAddress(mac), ip), mac)
}

fn arp_frame(arp: ArpRepr, mac: [u8; 6]) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        vlan: None,
        ethertype: EtherType::Arp,
    };
    let len = (eth.buffer_len() + arp.buffer_len()).max(MIN_FRAME);
    let mut buf = vec![0u8; len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// Unsolicited neighbour advertisement (override flag set) that `ip` is at `mac`, from `ip`
/// to all nodes.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let na = Icmpv6NeighborAdvert::unsolicited(ip, EthernetAddress(mac));
    let ipv6 = Ipv6Repr {
        src_addr: ip,
        dst_addr: ALL_NODES,
        next_header: IpProtocol::Icmpv6,
        payload_len: na.buffer_len(),
        hop_limit: NDP_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::from_ipv6_multicast(&ALL_NODES),
        vlan: None,
        ethertype: EtherType::Ipv6,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ipv6.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
    ipv6.emit(&mut packet);
    na.emit(
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ip,
        &ALL_NODES,
    );
    buf
}

/// A send-only `AF_PACKET` socket (protocol 0: it receives nothing).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket (needs CAP_NET_RAW).
    pub fn open() -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSocket { fd })
    }

    /// Sends `frame` (a whole Ethernet frame) out of interface `ifindex` without blocking.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame too short",
            ));
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        sll.sll_ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and address are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Puts the VIPs on and off the overlay interface.
#[derive(Debug)]
pub struct VipManager {
    interface: String,
    vips: Vec<Vip>,
}

impl VipManager {
    /// For `vips` on `interface`.
    pub fn new(interface: &str, vips: Vec<Vip>) -> VipManager {
        VipManager {
            interface: interface.to_string(),
            vips,
        }
    }

    /// The VIPs.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    fn index(&self, nl: &Netlink) -> Result<u32, ActionError> {
        nl.link_by_name(&self.interface)?
            .map(|l| l.index)
            .ok_or_else(|| ActionError::NoInterface(self.interface.clone()))
    }

    /// Adds every VIP (IPv6 without duplicate address detection, so it is usable at once).
    /// An address already present counts as added. Tries all; returns the first error.
    pub fn add(&self, nl: &Netlink, counters: &mut Counters) -> Result<(), ActionError> {
        let index = match self.index(nl) {
            Ok(i) => i,
            Err(e) => {
                counters.vip_errors += self.vips.len() as u64;
                return Err(e);
            }
        };
        let mut first = None;
        for v in &self.vips {
            match nl.addr_add(index, v.addr, v.prefix_len, v.addr.is_ipv6()) {
                Ok(()) => counters.vip_added += 1,
                Err(e) if e.errno() == Some(libc::EEXIST) => counters.vip_added += 1,
                Err(e) => {
                    counters.vip_errors += 1;
                    first.get_or_insert(e.into());
                }
            }
        }
        // Back from draining: the loopback copies go once the interface has them.
        if let Err(e) = self.off_loopback(nl) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Planned hand-over: each VIP onto loopback as a host address, then off the interface.
    /// Established connections keep their local address; the interface no longer answers
    /// ARP/ND for it (with `arp_ignore = 1`, which this sets, as `arp_announce = 2` so no ARP
    /// request of ours names the VIP as its sender).
    pub fn hand_off(&self, nl: &Netlink, counters: &mut Counters) -> Result<(), ActionError> {
        let mut first = self.quiet_arp().err();
        let lo = loopback(nl)?;
        for v in &self.vips {
            match nl.addr_add(lo, v.addr, host_prefix(v.addr), v.addr.is_ipv6()) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) => {
                    counters.vip_errors += 1;
                    first.get_or_insert(e.into());
                }
            }
        }
        if let Err(e) = self.remove_from_interface(nl, counters) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// The end of draining: the VIPs off loopback.
    pub fn off_loopback(&self, nl: &Netlink) -> Result<(), ActionError> {
        let lo = loopback(nl)?;
        let mut first = None;
        for v in &self.vips {
            match nl.addr_del(lo, v.addr, host_prefix(v.addr)) {
                Ok(()) => {}
                Err(e) if already_gone(&e) => {}
                Err(e) => {
                    first.get_or_insert(e.into());
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Which VIPs are on loopback (draining).
    pub fn on_loopback(&self, nl: &Netlink) -> Result<Vec<Vip>, ActionError> {
        let addrs = nl.addrs(Some(loopback(nl)?))?;
        Ok(self
            .vips
            .iter()
            .filter(|v| addrs.iter().any(|a| a.addr == v.addr))
            .copied()
            .collect())
    }

    /// `arp_ignore = 1` (answer only for addresses on the interface itself) and
    /// `arp_announce = 2` (ARP requests name the interface's own address) on the interface.
    pub fn quiet_arp(&self) -> Result<(), ActionError> {
        for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            let path = format!("/proc/sys/net/ipv4/conf/{}/{key}", self.interface);
            std::fs::write(&path, value).map_err(|e| ActionError::Sysctl(path, e))?;
        }
        Ok(())
    }

    /// Removes every VIP, from the interface and from loopback (draining). An address
    /// already gone (or a missing interface) counts as removed.
    pub fn remove(&self, nl: &Netlink, counters: &mut Counters) -> Result<(), ActionError> {
        let r = self.remove_from_interface(nl, counters);
        let lo = self.off_loopback(nl);
        r.and(lo)
    }

    fn remove_from_interface(
        &self,
        nl: &Netlink,
        counters: &mut Counters,
    ) -> Result<(), ActionError> {
        let index = match self.index(nl) {
            Ok(i) => i,
            Err(ActionError::NoInterface(_)) => return Ok(()),
            Err(e) => {
                counters.vip_errors += self.vips.len() as u64;
                return Err(e);
            }
        };
        let mut first = None;
        for v in &self.vips {
            match nl.addr_del(index, v.addr, v.prefix_len) {
                Ok(()) => counters.vip_removed += 1,
                Err(e) if already_gone(&e) => {}
                Err(e) => {
                    counters.vip_errors += 1;
                    first.get_or_insert(e.into());
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Which VIPs are on the interface now.
    pub fn present(&self, nl: &Netlink) -> Result<Vec<Vip>, ActionError> {
        let index = match self.index(nl) {
            Ok(i) => i,
            Err(ActionError::NoInterface(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let addrs = nl.addrs(Some(index))?;
        Ok(self
            .vips
            .iter()
            .filter(|v| addrs.iter().any(|a| a.addr == v.addr))
            .copied()
            .collect())
    }
}

fn loopback(nl: &Netlink) -> Result<u32, ActionError> {
    nl.link_by_name("lo")?
        .map(|l| l.index)
        .ok_or_else(|| ActionError::NoInterface("lo".into()))
}

fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

/// Bursts of announcements for the VIPs.
#[derive(Debug)]
pub struct Announcer {
    sock: PacketSocket,
    interface: String,
    vips: Vec<Vip>,
    count: u32,
    interval: Nanos,
    remaining: u32,
    next_at: Option<Nanos>,
    /// Interface index and MAC, looked up once per burst.
    target: Option<(u32, [u8; 6])>,
}

impl Announcer {
    /// Opens the packet socket.
    pub fn new(
        interface: &str,
        vips: Vec<Vip>,
        count: u32,
        interval: Duration,
    ) -> Result<Announcer, ActionError> {
        let sock = PacketSocket::open().map_err(|error| ActionError::Io {
            context: "socket(AF_PACKET)",
            error,
        })?;
        Ok(Announcer {
            sock,
            interface: interface.to_string(),
            vips,
            count: count.max(1),
            interval: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            remaining: 0,
            next_at: None,
            target: None,
        })
    }

    /// Starts a burst (restarting one in progress); the first round goes out at the next
    /// [`poll`](Self::poll), which the caller makes at once.
    pub fn start(&mut self, now: Nanos, counters: &mut Counters) {
        counters.announce_bursts += 1;
        self.remaining = self.count;
        self.next_at = Some(now);
        self.target = None;
    }

    /// Stops a burst in progress (the VIP was given up).
    pub fn stop(&mut self) {
        self.remaining = 0;
        self.next_at = None;
    }

    /// When the next round is due.
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.next_at
    }

    /// Sends the rounds that are due.
    pub fn poll(
        &mut self,
        now: Nanos,
        nl: &Netlink,
        counters: &mut Counters,
    ) -> Result<(), ActionError> {
        let Some(at) = self.next_at else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        self.remaining = self.remaining.saturating_sub(1);
        self.next_at = (self.remaining > 0).then(|| now.saturating_add(self.interval));
        let (index, mac) = match self.target {
            Some(t) => t,
            None => {
                let link = nl
                    .link_by_name(&self.interface)
                    .map_err(|e| {
                        counters.announce_errors += 1;
                        ActionError::from(e)
                    })?
                    .ok_or_else(|| {
                        counters.announce_errors += 1;
                        ActionError::NoInterface(self.interface.clone())
                    })?;
                let mac = link.mac.ok_or_else(|| {
                    counters.announce_errors += 1;
                    ActionError::NoMac(self.interface.clone())
                })?;
                self.target = Some((link.index, mac));
                (link.index, mac)
            }
        };
        let mut first = None;
        let mut send = |frame: Vec<u8>, counter: &mut u64, errors: &mut u64| match self
            .sock
            .send(index, &frame)
        {
            Ok(()) => *counter += 1,
            Err(error) => {
                *errors += 1;
                first.get_or_insert(ActionError::Io {
                    context: "sending an announcement",
                    error,
                });
            }
        };
        for v in &self.vips {
            match v.addr {
                IpAddr::V4(ip) => {
                    send(
                        garp_request(mac, ip),
                        &mut counters.garp_requests_sent,
                        &mut counters.announce_errors,
                    );
                    send(
                        garp_reply(mac, ip),
                        &mut counters.garp_replies_sent,
                        &mut counters.announce_errors,
                    );
                }
                IpAddr::V6(ip) => {
                    send(
                        unsolicited_na(mac, ip),
                        &mut counters.na_sent,
                        &mut counters.announce_errors,
                    );
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A removal that failed because the address, or its device, is not there any more: what the
/// removal wanted anyway.
fn already_gone(e: &ovl_netlink::NetlinkError) -> bool {
    matches!(
        e.errno(),
        Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovl_wire::ArpOperation;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    #[test]
    fn garp_request_golden() {
        let f = garp_request(MAC, Ipv4Addr::new(192, 168, 0, 200));
        assert_eq!(f.len(), MIN_FRAME);
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0, 0, 0, 0, 0x0a, 192, 168, 0, 200,
            0, 0, 0, 0, 0, 0, 192, 168, 0, 200,
        ];
        assert_eq!(&f[..42], &want[..]);
        assert!(f[42..].iter().all(|b| *b == 0));
    }

    #[test]
    fn garp_reply_parses_back() {
        let f = garp_reply(MAC, Ipv4Addr::new(10, 1, 2, 3));
        let frame = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.ethertype(), EtherType::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
        assert_eq!(arp.operation, ArpOperation::Reply);
        assert_eq!(arp.target_hardware_addr, EthernetAddress(MAC));
        assert!(arp.is_gratuitous());
    }

    #[test]
    fn na_parses_back_with_valid_checksum() {
        let ip: Ipv6Addr = "fd00::c8".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        let frame = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]));
        let p = Ipv6Packet::new_checked(frame.payload()).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!((r.hop_limit, r.src_addr, r.dst_addr), (255, ip, ALL_NODES));
        let na = Icmpv6NeighborAdvert::parse(
            &Icmpv6Packet::new_checked(p.payload()).unwrap(),
            &ip,
            &ALL_NODES,
        )
        .unwrap();
        assert!(na.override_flag && !na.solicited && !na.router);
        assert_eq!(na.target_addr, ip);
        assert_eq!(na.target_lladdr, Some(EthernetAddress(MAC)));
    }

    #[test]
    fn short_frames_refused() {
        if let Ok(s) = PacketSocket::open() {
            assert!(s.send(1, &[0; 13]).is_err());
        }
    }
}
