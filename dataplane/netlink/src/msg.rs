//! Route-netlink messages as bytes: requests built, replies parsed. Pure (no sockets), so the
//! layouts are tested on golden byte arrays. Netlink uses the host's byte order.
//!
//! Every read goes through `get`/`read_*`, which check bounds: a truncated header or
//! attribute is `NetlinkError::Malformed`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Addr, Link, Neighbour, NetlinkError, Result, Route};

// <linux/netlink.h>
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// On NLMSG_ERROR: the request's payload is not echoed (NETLINK_CAP_ACK).
pub const NLM_F_CAPPED: u16 = 0x100;
/// On NLMSG_ERROR: extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// <linux/rtnetlink.h>
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;

pub const RTMGRP_LINK: u32 = 0x1;
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;
pub const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

// <linux/if.h>
pub const IFF_UP: u32 = 0x1;
pub const IFF_LOWER_UP: u32 = 0x1_0000;

// <linux/if_link.h>
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
/// Leave the counters out of link replies: a third of their size, and nobody here reads them.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

// <linux/if_addr.h>
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

// <linux/rtnetlink.h>, routes
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;

// <linux/neighbour.h>
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;

const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

// ---------------------------------------------------------------------------------------------
// Building

/// A request being built: the netlink header, a family header, then attributes. Lengths and
/// the sequence number are filled in by `finish`.
#[derive(Debug, Clone)]
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    pub fn new(msg_type: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by finish
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id 0: the kernel fills it in
        Request { buf }
    }

    /// Appends `bytes` and pads to 4 bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        // Attributes built here are at most a few dozen bytes (names are checked to be short).
        let len = u16::try_from(NLA_HDRLEN + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.push(data);
    }

    fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// A NUL-terminated string attribute, as the kernel's NLA_STRING policies expect.
    fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    fn attr_ip(&mut self, ty: u16, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    /// Opens a nested attribute; returns where its header starts, for `nest_end`.
    fn nest_begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn nest_end(&mut self, start: usize) {
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The message type (RTM_*).
    #[cfg(test)]
    pub fn msg_type(&self) -> u16 {
        u16::from_ne_bytes([self.buf[4], self.buf[5]])
    }

    /// True for a dump request (answered by a multipart reply ending with NLMSG_DONE).
    pub fn is_dump(&self) -> bool {
        let flags = u16::from_ne_bytes([self.buf[6], self.buf[7]]);
        flags & NLM_F_DUMP == NLM_F_DUMP
    }

    /// The finished message with its length and sequence number.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[0] = AF_UNSPEC; // ifi_family; [1] pad; [2..4] ifi_type
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut h = [0u8; IFADDRMSG_LEN];
    h[0] = family;
    h[1] = prefix_len;
    h[2] = flags;
    h[3] = 0; // RT_SCOPE_UNIVERSE
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

fn rtmsg(family: u8, dst_len: u8) -> [u8; RTMSG_LEN] {
    let mut h = [0u8; RTMSG_LEN];
    h[0] = family;
    h[1] = dst_len;
    h
}

fn ndmsg(family: u8, index: u32, state: u16) -> [u8; NDMSG_LEN] {
    let mut h = [0u8; NDMSG_LEN];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&state.to_ne_bytes());
    h
}

/// Checks an interface name before it is sent (the kernel would say EINVAL or ENODEV, and
/// a NUL would silently cut the name short).
fn check_ifname(name: &str) -> Result<()> {
    Ok(crate::check_ifname(name)?)
}

fn check_prefix(addr: IpAddr, prefix_len: u8) -> Result<()> {
    if prefix_len > max_prefix(addr) {
        return Err(NetlinkError::InvalidArgument(format!(
            "prefix length {prefix_len} for {addr}"
        )));
    }
    Ok(())
}

/// RTM_GETLINK for one interface by index.
pub fn get_link_by_index(index: u32) -> Request {
    let mut r = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&ifinfomsg(index, 0, 0));
    r.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    r
}

/// RTM_GETLINK for one interface by name.
pub fn get_link_by_name(name: &str) -> Result<Request> {
    check_ifname(name)?;
    let mut r = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&ifinfomsg(0, 0, 0));
    r.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    r.attr_str(IFLA_IFNAME, name);
    Ok(r)
}

/// RTM_GETLINK dump of every interface.
pub fn dump_links() -> Request {
    let mut r = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
    r.push(&ifinfomsg(0, 0, 0));
    r.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    r
}

/// RTM_NEWLINK creating a veth pair, both ends down.
pub fn new_veth(name: &str, peer: &str, mtu: Option<u32>) -> Result<Request> {
    new_veth_queues(name, peer, mtu, None)
}

const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;

/// The same with `queues` TX and RX queues on both ends (one AF_XDP socket per queue).
pub fn new_veth_queues(
    name: &str,
    peer: &str,
    mtu: Option<u32>,
    queues: Option<u32>,
) -> Result<Request> {
    check_ifname(name)?;
    check_ifname(peer)?;
    let mut r = Request::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    r.push(&ifinfomsg(0, 0, 0));
    r.attr_str(IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        r.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(q) = queues {
        r.attr_u32(IFLA_NUM_TX_QUEUES, q);
        r.attr_u32(IFLA_NUM_RX_QUEUES, q);
    }
    let info = r.nest_begin(IFLA_LINKINFO);
    r.attr(IFLA_INFO_KIND, b"veth");
    let data = r.nest_begin(IFLA_INFO_DATA);
    // The peer is described by a whole ifinfomsg followed by its own attributes.
    let peer_start = r.nest_begin(VETH_INFO_PEER);
    r.push(&ifinfomsg(0, 0, 0));
    r.attr_str(IFLA_IFNAME, peer);
    if let Some(mtu) = mtu {
        r.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(q) = queues {
        r.attr_u32(IFLA_NUM_TX_QUEUES, q);
        r.attr_u32(IFLA_NUM_RX_QUEUES, q);
    }
    r.nest_end(peer_start);
    r.nest_end(data);
    r.nest_end(info);
    Ok(r)
}

/// RTM_DELLINK by index.
pub fn del_link(index: u32) -> Request {
    let mut r = Request::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&ifinfomsg(index, 0, 0));
    r
}

/// What an RTM_SETLINK changes; `None` leaves a property alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// Move the link into the namespace this file descriptor refers to.
    pub netns_fd: Option<u32>,
}

/// RTM_SETLINK changing the properties in `change`.
pub fn set_link(index: u32, change: LinkChange) -> Request {
    let mut r = Request::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
    let (flags, mask) = match change.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    r.push(&ifinfomsg(index, flags, mask));
    if let Some(mtu) = change.mtu {
        r.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = change.mac {
        r.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(fd) = change.netns_fd {
        r.attr_u32(IFLA_NET_NS_FD, fd);
    }
    r
}

/// RTM_NEWADDR (create, fail if present) or RTM_DELADDR for `addr/prefix_len` on `index`.
/// Both IFA_LOCAL and IFA_ADDRESS carry the address, as `ip addr add` sends them.
pub fn addr_change(
    add: bool,
    index: u32,
    addr: IpAddr,
    prefix_len: u8,
    nodad: bool,
) -> Result<Request> {
    check_prefix(addr, prefix_len)?;
    let mut r = if add {
        Request::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        Request::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)
    };
    // Duplicate address detection exists for IPv6 only.
    let flags = if add && nodad && addr.is_ipv6() {
        IFA_F_NODAD
    } else {
        0
    };
    r.push(&ifaddrmsg(family_of(addr), prefix_len, flags, index));
    r.attr_ip(IFA_LOCAL, addr);
    r.attr_ip(IFA_ADDRESS, addr);
    Ok(r)
}

/// RTM_GETADDR dump of IPv4 and IPv6 addresses of every interface.
pub fn dump_addrs() -> Request {
    let mut r = Request::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
    r.push(&ifaddrmsg(AF_UNSPEC, 0, 0, 0));
    r
}

/// RTM_GETROUTE for one destination ("ip route get").
pub fn get_route(dst: IpAddr) -> Request {
    let mut r = Request::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&rtmsg(family_of(dst), max_prefix(dst)));
    r.attr_ip(RTA_DST, dst);
    r
}

/// RTM_GETROUTE for one destination leaving through interface `oif` ("ip route get DST oif
/// DEV"): the kernel considers only routes through that interface.
pub fn get_route_via(dst: IpAddr, oif: u32) -> Request {
    let mut r = get_route(dst);
    r.attr_u32(RTA_OIF, oif);
    r
}

/// RTM_GETNEIGH dump of the IPv4 and IPv6 neighbour tables.
pub fn dump_neighs() -> Request {
    let mut r = Request::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
    r.push(&ndmsg(AF_UNSPEC, 0, 0));
    r
}

/// RTM_GETNEIGH for one entry (the kernel answers ENOENT when there is none).
pub fn get_neigh(index: u32, ip: IpAddr) -> Request {
    let mut r = Request::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&ndmsg(family_of(ip), index, 0));
    r.attr_ip(NDA_DST, ip);
    r
}

/// RTM_NEWNEIGH adding or replacing a permanent entry.
pub fn new_neigh_permanent(index: u32, ip: IpAddr, mac: [u8; 6]) -> Request {
    let mut r = Request::new(
        RTM_NEWNEIGH,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    );
    r.push(&ndmsg(family_of(ip), index, NUD_PERMANENT));
    r.attr_ip(NDA_DST, ip);
    r.attr(NDA_LLADDR, &mac);
    r
}

/// RTM_DELNEIGH for one entry.
pub fn del_neigh(index: u32, ip: IpAddr) -> Request {
    let mut r = Request::new(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&ndmsg(family_of(ip), index, 0));
    r.attr_ip(NDA_DST, ip);
    r
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn read_u16(b: &[u8], off: usize) -> Result<u16> {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(NetlinkError::Malformed("field past the end of its message"))
}

fn read_u32(b: &[u8], off: usize) -> Result<u32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(NetlinkError::Malformed("field past the end of its message"))
}

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub port: u32,
    /// Everything after the 16-byte header, up to the message's own length.
    pub payload: &'a [u8],
}

/// The messages of one datagram. A header that is short or claims more bytes than remain
/// yields one error and ends the iteration.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Iterates over the netlink messages in `datagram`.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let parsed = (|| {
            let len = read_u32(b, 0).map_err(|_| NetlinkError::Malformed("short netlink header"))?
                as usize;
            if len < NLMSG_HDRLEN || len > b.len() {
                return Err(NetlinkError::Malformed(
                    "netlink message length out of bounds",
                ));
            }
            let msg = Message {
                msg_type: read_u16(b, 4)?,
                flags: read_u16(b, 6)?,
                seq: read_u32(b, 8)?,
                port: read_u32(b, 12)?,
                payload: &b[NLMSG_HDRLEN..len],
            };
            Ok((msg, align4(len).min(b.len())))
        })();
        match parsed {
            Ok((msg, used)) => {
                self.rest = &b[used..];
                Some(Ok(msg))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// One attribute: its type without the NESTED/NET_BYTEORDER bits, and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub ty: u16,
    pub data: &'a [u8],
}

/// Attributes in a byte range. A header that is short or claims more bytes than remain
/// yields one error and ends the iteration.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

/// Iterates over the attributes in `b`.
pub fn attrs(b: &[u8]) -> Attrs<'_> {
    Attrs { rest: b }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let (Ok(len), Ok(ty)) = (read_u16(b, 0), read_u16(b, 2)) else {
            self.rest = &[];
            return Some(Err(NetlinkError::Malformed("truncated attribute header")));
        };
        let len = usize::from(len);
        if len < NLA_HDRLEN || len > b.len() {
            self.rest = &[];
            return Some(Err(NetlinkError::Malformed(
                "attribute length out of bounds",
            )));
        }
        // The last attribute's padding may be missing; never step past the end.
        self.rest = &b[align4(len).min(b.len())..];
        Some(Ok(Attr {
            ty: ty & NLA_TYPE_MASK,
            data: &b[NLA_HDRLEN..len],
        }))
    }
}

fn attr_u32(a: &Attr<'_>) -> Result<u32> {
    if a.data.len() != 4 {
        return Err(NetlinkError::Malformed(
            "32-bit attribute of the wrong size",
        ));
    }
    read_u32(a.data, 0)
}

/// A string attribute up to its first NUL (names are bytes to the kernel; shown lossily).
fn attr_string(a: &Attr<'_>) -> String {
    let end = a.data.iter().position(|&c| c == 0).unwrap_or(a.data.len());
    String::from_utf8_lossy(&a.data[..end]).into_owned()
}

fn ip_from(family: u8, data: &[u8]) -> Result<IpAddr> {
    match family {
        AF_INET => <[u8; 4]>::try_from(data)
            .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            .map_err(|_| NetlinkError::Malformed("IPv4 address attribute not 4 bytes")),
        AF_INET6 => <[u8; 16]>::try_from(data)
            .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .map_err(|_| NetlinkError::Malformed("IPv6 address attribute not 16 bytes")),
        _ => Err(NetlinkError::Malformed("address of an unknown family")),
    }
}

/// What an NLMSG_ERROR says: errno 0 is an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Positive errno; 0 for success.
    pub errno: i32,
    /// The kernel's extended-ack message, if any.
    pub message: Option<String>,
    /// Sequence number of the request this answers (from the echoed header).
    pub request_seq: u32,
}

/// Parses an NLMSG_ERROR message: an `int error` (negative errno), the request's header,
/// its payload unless NLM_F_CAPPED, then extended-ack attributes if NLM_F_ACK_TLVS.
pub fn parse_ack(msg: &Message<'_>) -> Result<Ack> {
    let p = msg.payload;
    let error = read_u32(p, 0).map_err(|_| NetlinkError::Malformed("short NLMSG_ERROR"))? as i32;
    let request_len = read_u32(p, 4).map_err(|_| NetlinkError::Malformed("short NLMSG_ERROR"))?;
    let request_seq = read_u32(p, 12).map_err(|_| NetlinkError::Malformed("short NLMSG_ERROR"))?;
    let mut message = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(request_len as usize)
        };
        let tlvs = p
            .get(4 + echoed..)
            .ok_or(NetlinkError::Malformed("extended ack past the end"))?;
        for a in attrs(tlvs) {
            let a = a?;
            if a.ty == NLMSGERR_ATTR_MSG {
                message = Some(attr_string(&a));
            }
        }
    }
    Ok(Ack {
        errno: error.checked_neg().unwrap_or(i32::MAX),
        message,
        request_seq,
    })
}

/// Parses the errno an NLMSG_DONE may carry (0 when absent or successful).
pub fn parse_done(msg: &Message<'_>) -> i32 {
    read_u32(msg.payload, 0)
        .map(|v| (v as i32).checked_neg().unwrap_or(i32::MAX))
        .unwrap_or(0)
}

/// Parses an RTM_NEWLINK/RTM_DELLINK payload.
pub fn parse_link(p: &[u8]) -> Result<Link> {
    if p.len() < IFINFOMSG_LEN {
        return Err(NetlinkError::Malformed("short ifinfomsg"));
    }
    let index = read_u32(p, 4)?;
    let flags = read_u32(p, 8)?;
    let (mut name, mut mtu, mut mac, mut kind, mut peer_index) = (None, None, None, None, None);
    for a in attrs(&p[IFINFOMSG_LEN..]) {
        let a = a?;
        match a.ty {
            IFLA_IFNAME => name = Some(attr_string(&a)),
            IFLA_MTU => mtu = Some(attr_u32(&a)?),
            // Only Ethernet-like links have a 6-byte address (ipip has 4, tun none).
            IFLA_ADDRESS => mac = <[u8; 6]>::try_from(a.data).ok(),
            IFLA_LINK => peer_index = Some(attr_u32(&a)?),
            IFLA_LINKINFO => {
                for info in attrs(a.data) {
                    let info = info?;
                    if info.ty == IFLA_INFO_KIND {
                        kind = Some(attr_string(&info));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Link {
        index,
        name: name.ok_or(NetlinkError::Malformed("link without IFLA_IFNAME"))?,
        mtu: mtu.ok_or(NetlinkError::Malformed("link without IFLA_MTU"))?,
        mac,
        admin_up: flags & IFF_UP != 0,
        // The kernel reports IFF_LOWER_UP (carrier) only while the link is also admin up.
        oper_up: flags & IFF_LOWER_UP != 0,
        kind,
        peer_index,
    })
}

/// Parses an RTM_NEWADDR/RTM_DELADDR payload; `None` for families other than IPv4/IPv6.
pub fn parse_addr(p: &[u8]) -> Result<Option<Addr>> {
    if p.len() < IFADDRMSG_LEN {
        return Err(NetlinkError::Malformed("short ifaddrmsg"));
    }
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let prefix_len = p[1];
    let index = read_u32(p, 4)?;
    let (mut local, mut address) = (None, None);
    for a in attrs(&p[IFADDRMSG_LEN..]) {
        let a = a?;
        match a.ty {
            IFA_LOCAL => local = Some(ip_from(family, a.data)?),
            IFA_ADDRESS => address = Some(ip_from(family, a.data)?),
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
    let addr = local.or(address).ok_or(NetlinkError::Malformed(
        "address without IFA_LOCAL or IFA_ADDRESS",
    ))?;
    Ok(Some(Addr {
        index,
        addr,
        prefix_len,
    }))
}

/// Parses the RTM_NEWROUTE answer to an RTM_GETROUTE.
pub fn parse_route(p: &[u8]) -> Result<Route> {
    if p.len() < RTMSG_LEN {
        return Err(NetlinkError::Malformed("short rtmsg"));
    }
    let family = p[0];
    let (mut oif, mut gateway, mut prefsrc) = (None, None, None);
    for a in attrs(&p[RTMSG_LEN..]) {
        let a = a?;
        match a.ty {
            RTA_OIF => oif = Some(attr_u32(&a)?),
            RTA_GATEWAY => gateway = Some(ip_from(family, a.data)?),
            RTA_PREFSRC => prefsrc = Some(ip_from(family, a.data)?),
            // An IPv4 route with an IPv6 next hop: struct rtvia { u16 family; u8 addr[] }.
            RTA_VIA => {
                let via_family = read_u16(a.data, 0)?;
                let via_family = u8::try_from(via_family)
                    .map_err(|_| NetlinkError::Malformed("RTA_VIA of an unknown family"))?;
                gateway = Some(ip_from(via_family, &a.data[2..])?);
            }
            _ => {}
        }
    }
    Ok(Route {
        oif: oif.ok_or(NetlinkError::Malformed("route without RTA_OIF"))?,
        gateway,
        prefsrc,
    })
}

/// Parses an RTM_NEWNEIGH payload; `None` for entries that are not IPv4/IPv6 neighbours.
pub fn parse_neigh(p: &[u8]) -> Result<Option<Neighbour>> {
    if p.len() < NDMSG_LEN {
        return Err(NetlinkError::Malformed("short ndmsg"));
    }
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let index = read_u32(p, 4)?;
    let state = read_u16(p, 8)?;
    let (mut ip, mut mac) = (None, None);
    for a in attrs(&p[NDMSG_LEN..]) {
        let a = a?;
        match a.ty {
            NDA_DST => ip = Some(ip_from(family, a.data)?),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(a.data).ok(),
            _ => {}
        }
    }
    let Some(ip) = ip else {
        return Ok(None);
    };
    Ok(Some(Neighbour {
        index,
        ip,
        mac,
        state,
    }))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Golden bytes are little-endian (netlink uses host order).
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
            .collect()
    }

    /// What `ip addr add 192.168.0.200/24 dev va` sends (seen with strace), for ifindex 5.
    #[test]
    fn newaddr_request_matches_iproute2() {
        let bytes = addr_change(true, 5, "192.168.0.200".parse().unwrap(), 24, true)
            .unwrap()
            .finish(0x0102_0304);
        #[rustfmt::skip]
        let expected: [u8; 40] = [
            40, 0, 0, 0,   20, 0,   0x05, 0x06,   4, 3, 2, 1,   0, 0, 0, 0, // nlmsghdr
            2, 24, 0, 0,   5, 0, 0, 0,                                      // ifaddrmsg
            8, 0, 2, 0,   192, 168, 0, 200,                                 // IFA_LOCAL
            8, 0, 1, 0,   192, 168, 0, 200,                                 // IFA_ADDRESS
        ];
        // nodad is ignored for IPv4 (flags byte 0).
        assert_eq!(bytes, expected);
    }

    #[test]
    fn newaddr_ipv6_nodad_sets_the_flag() {
        let bytes = addr_change(true, 7, "fd00::1".parse().unwrap(), 64, true)
            .unwrap()
            .finish(1);
        assert_eq!(bytes.len(), 16 + 8 + 20 + 20);
        assert_eq!(&bytes[16..24], &[10, 64, IFA_F_NODAD, 0, 7, 0, 0, 0]);
        assert_eq!(&bytes[24..28], &[20, 0, 2, 0]);
        assert_eq!(bytes[28], 0xfd);
        assert_eq!(bytes[43], 1);
        let without = addr_change(true, 7, "fd00::1".parse().unwrap(), 64, false)
            .unwrap()
            .finish(1);
        assert_eq!(without[18], 0);
        let del = addr_change(false, 7, "fd00::1".parse().unwrap(), 64, true)
            .unwrap()
            .finish(1);
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), RTM_DELADDR);
        assert_eq!(
            u16::from_ne_bytes([del[6], del[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
    }

    #[test]
    fn prefix_beyond_address_size_is_refused() {
        let e = addr_change(true, 1, "10.0.0.1".parse().unwrap(), 33, false).unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidArgument(_)), "{e}");
        assert!(addr_change(true, 1, "::1".parse().unwrap(), 128, false).is_ok());
        assert!(addr_change(true, 1, "::1".parse().unwrap(), 129, false).is_err());
    }

    #[test]
    fn veth_request_nests_the_peer() {
        let bytes = new_veth("va", "vb", Some(1400)).unwrap().finish(9);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[100u8, 0, 0, 0, 16, 0, 0x05, 0x06, 9, 0, 0, 0, 0, 0, 0, 0][..], // nlmsghdr
            &[0; 16],                                                         // ifinfomsg
            &[7, 0, 3, 0, b'v', b'a', 0, 0],                                  // IFLA_IFNAME
            &[8, 0, 4, 0, 0x78, 0x05, 0, 0],                                  // IFLA_MTU 1400
            &[52, 0, 18, 0x80],                                               // IFLA_LINKINFO
            &[8, 0, 1, 0, b'v', b'e', b't', b'h'],                            //  INFO_KIND
            &[40, 0, 2, 0x80],                                                //  INFO_DATA
            &[36, 0, 1, 0x80],                                                //   VETH_INFO_PEER
            &[0; 16],                                                         //    ifinfomsg
            &[7, 0, 3, 0, b'v', b'b', 0, 0],                                  //    IFLA_IFNAME
            &[8, 0, 4, 0, 0x78, 0x05, 0, 0],                                  //    IFLA_MTU
        ]
        .concat();
        assert_eq!(expected.len(), 100);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        assert!(new_veth("", "x", None).is_err());
        assert!(new_veth("a", "0123456789abcdef", None).is_err()); // 16 bytes
        assert!(new_veth("0123456789abcde", "b", None).is_ok()); // 15 bytes
        assert!(get_link_by_name("a\0b").is_err());
        // The kernel's other rules too (it would answer EINVAL to a create).
        let e = new_veth("a/b", "b", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: interface name: \"a/b\" contains '/', which interface names cannot"
        );
    }

    #[test]
    fn setlink_sets_only_what_changes() {
        let up = set_link(
            3,
            LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
        .finish(1);
        assert_eq!(up.len(), 32);
        assert_eq!(
            &up[16..32],
            &[0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
        );
        let down = set_link(
            3,
            LinkChange {
                up: Some(false),
                mac: Some([2, 0, 0, 0, 0, 0xa]),
                ..Default::default()
            },
        )
        .finish(1);
        assert_eq!(&down[24..32], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&down[32..44], &[10, 0, 1, 0, 2, 0, 0, 0, 0, 0xa, 0, 0]);
        let mtu = set_link(
            3,
            LinkChange {
                mtu: Some(9000),
                ..Default::default()
            },
        )
        .finish(1);
        assert_eq!(&mtu[24..32], &[0; 8]);
        assert_eq!(&mtu[32..40], &[8, 0, 4, 0, 0x28, 0x23, 0, 0]);
    }

    #[test]
    fn route_and_neighbour_requests() {
        let r = get_route("10.1.2.3".parse().unwrap()).finish(2);
        #[rustfmt::skip]
        let expected: [u8; 36] = [
            36, 0, 0, 0, 26, 0, 5, 0, 2, 0, 0, 0, 0, 0, 0, 0,
            2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            8, 0, 1, 0, 10, 1, 2, 3,
        ];
        assert_eq!(r, expected);
        let n = new_neigh_permanent(4, "10.0.0.9".parse().unwrap(), [2, 1, 2, 3, 4, 5]).finish(3);
        #[rustfmt::skip]
        let expected: [u8; 48] = [
            48, 0, 0, 0, 28, 0, 0x05, 0x05, 3, 0, 0, 0, 0, 0, 0, 0,
            2, 0, 0, 0, 4, 0, 0, 0, 0x80, 0, 0, 0,
            8, 0, 1, 0, 10, 0, 0, 9,
            10, 0, 2, 0, 2, 1, 2, 3, 4, 5, 0, 0,
        ];
        assert_eq!(n, expected);
        let d = dump_neighs();
        assert!(d.is_dump());
        assert_eq!(d.msg_type(), RTM_GETNEIGH);
        assert!(!get_neigh(4, "::1".parse().unwrap()).is_dump());
    }

    /// An RTM_NEWLINK reply captured from kernel 6.18 (RTM_GETLINK with
    /// RTEXT_FILTER_SKIP_STATS for veth `va`, index 3, MTU 1400, MAC 02:00:00:00:00:0a, down,
    /// peer `vb` index 2).
    const CAPTURED_NEWLINK: &str = include_str!("testdata/newlink_veth.hex");

    #[test]
    fn captured_newlink_parses() {
        let bytes = hex(CAPTURED_NEWLINK);
        let msgs: Vec<_> = messages(&bytes).collect::<Result<_>>().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].msg_type, RTM_NEWLINK);
        let link = parse_link(msgs[0].payload).unwrap();
        assert_eq!(
            link,
            Link {
                index: 3,
                name: "va".into(),
                mtu: 1400,
                mac: Some([2, 0, 0, 0, 0, 0x0a]),
                admin_up: false,
                oper_up: false,
                kind: Some("veth".into()),
                peer_index: Some(2),
            }
        );
    }

    #[test]
    fn every_truncation_of_a_captured_reply_is_an_error_or_shorter_not_a_panic() {
        let bytes = hex(CAPTURED_NEWLINK);
        for cut in 0..bytes.len() {
            // As a datagram: the message header claims more than there is.
            let res: Result<Vec<_>> = messages(&bytes[..cut]).collect();
            if cut > 0 {
                assert!(res.is_err(), "cut at {cut} parsed");
            }
            // As a payload cut short: an error, or (cut at an attribute boundary after the
            // name and MTU) the same link without what was cut off. Never a panic.
            if cut >= NLMSG_HDRLEN
                && let Ok(link) = parse_link(&bytes[NLMSG_HDRLEN..cut])
            {
                assert_eq!((link.index, link.name.as_str(), link.mtu), (3, "va", 1400));
            }
        }
    }

    #[test]
    fn truncated_attributes_are_errors() {
        // Header says 8 bytes, only 6 there.
        let mut p = ifinfomsg(1, 0, 0).to_vec();
        p.extend_from_slice(&[8, 0, 4, 0, 0x00, 0x05]);
        assert!(matches!(parse_link(&p), Err(NetlinkError::Malformed(_))));
        // A 2-byte leftover cannot hold an attribute header.
        let mut p = ifinfomsg(1, 0, 0).to_vec();
        p.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0, 8, 0]);
        assert!(matches!(parse_link(&p), Err(NetlinkError::Malformed(_))));
        // Length below the header size.
        let mut p = ifinfomsg(1, 0, 0).to_vec();
        p.extend_from_slice(&[2, 0, 3, 0]);
        assert!(matches!(parse_link(&p), Err(NetlinkError::Malformed(_))));
        // A nested attribute that overruns its parent.
        let mut p = ifinfomsg(1, 0, 0).to_vec();
        p.extend_from_slice(&[12, 0, 18, 0x80, 12, 0, 1, 0, b'v', b'e', b't', b'h']);
        assert!(matches!(parse_link(&p), Err(NetlinkError::Malformed(_))));
        // MTU of the wrong size.
        let mut p = ifinfomsg(1, 0, 0).to_vec();
        p.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0, 6, 0, 4, 0, 1, 2, 0, 0]);
        assert!(matches!(parse_link(&p), Err(NetlinkError::Malformed(_))));
        // Short fixed header.
        assert!(parse_link(&[0; 15]).is_err());
        assert!(parse_addr(&[2, 24, 0]).is_err());
        assert!(parse_route(&[2; 11]).is_err());
        assert!(parse_neigh(&[2; 11]).is_err());
    }

    #[test]
    fn last_attribute_without_padding_is_accepted() {
        let mut p = ifinfomsg(9, IFF_UP | IFF_LOWER_UP, 0).to_vec();
        p.extend_from_slice(&[8, 0, 4, 0, 0xdc, 0x05, 0, 0]);
        p.extend_from_slice(&[7, 0, 3, 0, b'e', b'0', 0]); // no trailing pad byte
        let link = parse_link(&p).unwrap();
        assert_eq!(link.name, "e0");
        assert_eq!(link.mtu, 1500);
        assert!(link.admin_up && link.oper_up);
        assert_eq!(link.mac, None);
    }

    #[test]
    fn addr_reply_prefers_local() {
        #[rustfmt::skip]
        let p: [u8; 24] = [
            2, 32, 0x80, 0, 6, 0, 0, 0,
            8, 0, 1, 0, 10, 0, 0, 2,     // IFA_ADDRESS: the peer
            8, 0, 2, 0, 10, 0, 0, 1,     // IFA_LOCAL: ours
        ];
        let a = parse_addr(&p).unwrap().unwrap();
        assert_eq!(a.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((a.index, a.prefix_len), (6, 32));
        // An IPv4 address attribute of 16 bytes is malformed.
        let mut bad = p[..8].to_vec();
        bad.extend_from_slice(&[20, 0, 1, 0]);
        bad.extend_from_slice(&[0; 16]);
        assert!(parse_addr(&bad).is_err());
        // AF_PACKET or anything else is skipped, not an error.
        assert_eq!(parse_addr(&[17, 0, 0, 0, 1, 0, 0, 0]).unwrap(), None);
    }

    #[test]
    fn route_reply_fields() {
        #[rustfmt::skip]
        let p: [u8; 44] = [
            2, 32, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0,
            8, 0, 1, 0, 10, 9, 0, 1,       // RTA_DST
            8, 0, 4, 0, 3, 0, 0, 0,        // RTA_OIF 3
            8, 0, 5, 0, 10, 0, 0, 254,     // RTA_GATEWAY
            8, 0, 7, 0, 10, 0, 0, 1,       // RTA_PREFSRC
        ];
        let r = parse_route(&p).unwrap();
        assert_eq!(r.oif, 3);
        assert_eq!(r.gateway, Some("10.0.0.254".parse().unwrap()));
        assert_eq!(r.prefsrc, Some("10.0.0.1".parse().unwrap()));
        assert!(parse_route(&p[..20]).is_err(), "no RTA_OIF");
        // RTA_VIA with an IPv6 next hop.
        let mut v = p[..28].to_vec();
        v.extend_from_slice(&[22, 0, 18, 0, 10, 0]);
        v.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&[0, 0]);
        assert_eq!(
            parse_route(&v).unwrap().gateway,
            Some("fe80::1".parse().unwrap())
        );
    }

    #[test]
    fn neighbour_reply_fields() {
        #[rustfmt::skip]
        let p: [u8; 32] = [
            10, 0, 0, 0, 4, 0, 0, 0, 0x02, 0, 0, 0,
            20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        let n = parse_neigh(&p).unwrap().unwrap();
        assert_eq!(n.ip, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!((n.index, n.state, n.mac), (4, NUD_REACHABLE, None));
        assert!(!n.is_usable(), "no MAC");
        let mut with_mac = p.to_vec();
        with_mac.extend_from_slice(&[10, 0, 2, 0, 2, 0, 0, 0, 0, 1, 0, 0]);
        let n = parse_neigh(&with_mac).unwrap().unwrap();
        assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 1]));
        assert!(n.is_usable());
        // AF_BRIDGE fdb entries are skipped.
        assert_eq!(parse_neigh(&[7; 12]).unwrap(), None);
    }

    #[test]
    fn messages_split_a_datagram_and_acks_parse() {
        // An ACK (capped) for seq 5, then NLMSG_DONE carrying -EBUSY.
        #[rustfmt::skip]
        let d: [u8; 56] = [
            36, 0, 0, 0, 2, 0, 0x00, 0x01, 5, 0, 0, 0, 0x10, 0, 0, 0,
            0, 0, 0, 0, 40, 0, 0, 0, 20, 0, 5, 6, 5, 0, 0, 0, 0, 0, 0, 0,
            20, 0, 0, 0, 3, 0, 2, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff,
        ];
        let msgs: Vec<_> = messages(&d).collect::<Result<_>>().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            (msgs[0].msg_type, msgs[0].seq, msgs[0].port),
            (NLMSG_ERROR, 5, 16)
        );
        let ack = parse_ack(&msgs[0]).unwrap();
        assert_eq!((ack.errno, ack.request_seq, ack.message), (0, 5, None));
        assert_eq!(msgs[1].msg_type, NLMSG_DONE);
        assert_eq!(parse_done(&msgs[1]), libc::EBUSY);
        // Length field smaller than a header.
        assert!(messages(&[8, 0, 0, 0, 2, 0, 0, 0]).next().unwrap().is_err());
    }

    #[test]
    fn error_with_extended_ack_message() {
        // -EEXIST (0xffffffef), capped, with NLMSGERR_ATTR_MSG "nope".
        #[rustfmt::skip]
        let d: [u8; 48] = [
            48, 0, 0, 0, 2, 0, 0x00, 0x03, 7, 0, 0, 0, 0, 0, 0, 0,
            0xef, 0xff, 0xff, 0xff, 40, 0, 0, 0, 20, 0, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0,
            9, 0, 1, 0, b'n', b'o', b'p', b'e', 0, 0, 0, 0,
        ];
        let msg = messages(&d).next().unwrap().unwrap();
        let ack = parse_ack(&msg).unwrap();
        assert_eq!(ack.errno, libc::EEXIST);
        assert_eq!(ack.request_seq, 7);
        assert_eq!(ack.message.as_deref(), Some("nope"));
        // Cut inside the echoed header.
        let short = Message {
            payload: &msg.payload[..10],
            ..msg
        };
        assert!(parse_ack(&short).is_err());
    }
}
