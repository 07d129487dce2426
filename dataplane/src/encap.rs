//! Userspace encapsulation, for the frames the egress program hands up unencapsulated
//! (broadcast, multicast and unknown unicast, replicated to every VTEP of the flood list).
//! It writes exactly what `ovl_overlay_egress` writes for the same frame and remote, flow hash
//! and (over IPv6) UDP checksum included; a kernel test holds the two to byte equality.

use std::net::IpAddr;

use ovl_common::{
    ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, ETH_P_TEB, Encap, GENEVE_HLEN, GENEVE_OPT_LEN, IPPROTO_UDP,
    IPV4_HLEN, IPV6_HLEN, UDP_HLEN, VXLAN_FLAG_I, VXLAN_HLEN, mix32, src_port_from_hash,
};
use ovl_wire::checksum;

/// Everything the outer headers need besides the inner frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Both of one family (the configuration guarantees it).
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub udp_port: u16,
    pub vni: u32,
    pub encap: Encap,
    pub geneve_option: Option<[u8; GENEVE_OPT_LEN]>,
}

impl Outer {
    /// Bytes added in front of the inner frame.
    pub fn overhead(&self) -> usize {
        let opt = match (self.encap, self.geneve_option) {
            (Encap::Geneve, Some(_)) => GENEVE_OPT_LEN,
            _ => 0,
        };
        self.encap.overhead(opt, self.src_ip.is_ipv6())
    }
}

/// The largest outer header (IPv6, GENEVE with its option).
pub const MAX_OUTER: usize = ETH_HLEN + IPV6_HLEN + UDP_HLEN + GENEVE_HLEN + GENEVE_OPT_LEN;

/// Writes the outer headers followed by `inner` into `out` and returns the frame length, or
/// `None` if `out` is too small.
pub fn encapsulate(inner: &[u8], outer: &Outer, out: &mut [u8]) -> Option<usize> {
    let hdr = outer_header(inner, outer, out)?;
    let total = hdr + inner.len();
    out.get_mut(hdr..total)?.copy_from_slice(inner);
    Some(total)
}

/// Writes only the outer headers for `inner` (lengths, flow hash and, over IPv6, the UDP
/// checksum depend on it) into `out` and returns their length, so a caller can place the
/// inner frame itself without a copy. `None` if `out` is too small, `inner` is shorter than
/// an Ethernet header or the addresses are of two families.
pub fn outer_header(inner: &[u8], outer: &Outer, out: &mut [u8]) -> Option<usize> {
    let hdr = outer.overhead();
    let total = hdr + inner.len();
    if out.len() < hdr || inner.len() < ETH_HLEN {
        return None;
    }
    let ip_hlen = match (outer.src_ip, outer.dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
        _ => return None,
    };
    let ip_len = u16::try_from(total - ETH_HLEN).ok()?;
    let udp_len = ip_len - ip_hlen as u16;
    let (eth, rest) = out.split_at_mut(ETH_HLEN);
    eth[0..6].copy_from_slice(&outer.dst_mac);
    eth[6..12].copy_from_slice(&outer.src_mac);
    let (ip, rest) = rest.split_at_mut(ip_hlen);
    match (outer.src_ip, outer.dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            eth[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF: the underlay must not fragment
            ip[8] = 64;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let csum = checksum::checksum(ip);
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            eth[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
            // Traffic class and flow label zero, hop limit 64, as the program writes.
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
        }
        _ => return None,
    }

    let (udp, rest) = rest.split_at_mut(UDP_HLEN);
    let src_port = src_port_from_hash(flow_hash(inner));
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&outer.udp_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);

    let v = outer.vni.to_be_bytes();
    let tun_len = match outer.encap {
        Encap::Vxlan => {
            rest[..VXLAN_HLEN].copy_from_slice(&[VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
            VXLAN_HLEN
        }
        Encap::Geneve => {
            let opt_words = if outer.geneve_option.is_some() {
                (GENEVE_OPT_LEN / 4) as u8
            } else {
                0
            };
            let [p0, p1] = ETH_P_TEB.to_be_bytes();
            rest[..GENEVE_HLEN].copy_from_slice(&[opt_words, 0, p0, p1, v[1], v[2], v[3], 0]);
            match outer.geneve_option {
                Some(opt) => {
                    rest[GENEVE_HLEN..GENEVE_HLEN + GENEVE_OPT_LEN].copy_from_slice(&opt);
                    GENEVE_HLEN + GENEVE_OPT_LEN
                }
                None => GENEVE_HLEN,
            }
        }
    };
    debug_assert_eq!(ETH_HLEN + ip_hlen + UDP_HLEN + tun_len, hdr);
    // IPv6 requires the UDP checksum (RFC 8200 section 8.1), and the kernel driver's
    // receivers refuse zero unless told otherwise. Over IPv4 it stays zero (RFC 7348).
    if let (IpAddr::V6(src), IpAddr::V6(dst)) = (outer.src_ip, outer.dst_ip) {
        let sum = checksum::combine(&[
            checksum::pseudo_header_v6(&src, &dst, IPPROTO_UDP, u32::from(udp_len)),
            checksum::data(udp),
            checksum::data(&rest[..tun_len]),
            checksum::data(inner),
        ]);
        let csum = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&csum.to_be_bytes());
    }
    Some(hdr)
}

fn raw32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let w = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([w[0], w[1]]))
}

/// The inner flow hash, as the egress program computes it: MACs and EtherType, then for IPv4
/// the addresses, protocol and (unfragmented TCP/UDP) the ports.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = 0u32;
    if frame.len() < ETH_HLEN {
        return h;
    }
    for at in [0, 4, 8] {
        h = mix32(h, raw32(frame, at).unwrap_or(0));
    }
    let ethertype = be16(frame, 12).unwrap_or(0);
    h = mix32(h, u32::from(ethertype));
    if ethertype != ETH_P_IPV4 {
        return h;
    }
    let ip = ETH_HLEN;
    if frame.len() < ip + IPV4_HLEN {
        return h;
    }
    for at in [12, 16] {
        h = mix32(h, raw32(frame, ip + at).unwrap_or(0));
    }
    let proto = frame[ip + 9];
    h = mix32(h, u32::from(proto));
    let ihl = usize::from(frame[ip] & 0x0f) * 4;
    let fragmented = be16(frame, ip + 6).unwrap_or(0) & 0x3fff != 0;
    if (proto == 6 || proto == 17)
        && !fragmented
        && ihl >= IPV4_HLEN
        && let Some(ports) = raw32(frame, ip + ihl)
    {
        h = mix32(h, ports);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn outer(encap: Encap, opt: Option<[u8; 8]>) -> Outer {
        Outer {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
            udp_port: 4789,
            vni: 10,
            encap,
            geneve_option: opt,
        }
    }

    fn arp_broadcast() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0x0a, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    }

    #[test]
    fn vxlan_headers_parse_back_with_ovl_wire() {
        let inner = arp_broadcast();
        let o = outer(Encap::Vxlan, None);
        let mut buf = [0u8; 256];
        let n = encapsulate(&inner, &o, &mut buf).expect("fits");
        assert_eq!(n, inner.len() + 50);
        let eth = ovl_wire::ethernet::Frame::new_checked(&buf[..n]).expect("eth");
        assert_eq!(eth.dst_addr().0, o.dst_mac);
        let ip = ovl_wire::ipv4::Packet::new_checked(eth.payload()).expect("ip");
        assert!(ip.verify_checksum());
        assert!(ip.dont_frag());
        assert_eq!(ip.dst_addr(), o.dst_ip);
        let udp = ovl_wire::udp::Packet::new_checked(ip.payload()).expect("udp");
        assert_eq!(udp.dst_port(), 4789);
        assert!(udp.src_port() >= 49152);
        let vx = ovl_wire::vxlan::Packet::new_checked(udp.payload()).expect("vxlan");
        assert_eq!(vx.vni(), 10);
        assert_eq!(vx.payload(), &inner[..]);
    }

    #[test]
    fn geneve_carries_the_option() {
        let inner = arp_broadcast();
        let opt = [0x01, 0x02, 0x80, 0x01, 0x0a, 0x0b, 0x0c, 0x0d];
        let o = outer(Encap::Geneve, Some(opt));
        let mut buf = [0u8; 256];
        let n = encapsulate(&inner, &o, &mut buf).expect("fits");
        assert_eq!(n, inner.len() + 58);
        assert_eq!(&buf[42..50], &[2, 0, 0x65, 0x58, 0, 0, 10, 0]);
        assert_eq!(&buf[50..58], &opt);
        assert_eq!(&buf[58..n], &inner[..]);
    }

    #[test]
    fn ipv6_headers_carry_a_checksum_that_verifies() {
        let inner = arp_broadcast();
        let mut o = outer(Encap::Vxlan, None);
        let src: Ipv6Addr = "fd00:0:2::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00:0:1::2".parse().unwrap();
        o.src_ip = IpAddr::V6(src);
        o.dst_ip = IpAddr::V6(dst);
        let mut buf = [0u8; 256];
        let n = encapsulate(&inner, &o, &mut buf).expect("fits");
        assert_eq!(
            n,
            inner.len() + 70,
            "70 bytes over IPv6, as the kernel driver"
        );
        let eth = ovl_wire::ethernet::Frame::new_checked(&buf[..n]).expect("eth");
        assert_eq!(eth.ethertype(), ovl_wire::ethernet::EtherType::Ipv6);
        let ip = ovl_wire::ipv6::Packet::new_checked(eth.payload()).expect("ipv6");
        assert_eq!((ip.src_addr(), ip.dst_addr()), (src, dst));
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(usize::from(ip.payload_len()), n - 14 - 40);
        let udp = ovl_wire::udp::Packet::new_checked(ip.payload()).expect("udp");
        assert_ne!(udp.checksum(), 0, "IPv6 UDP needs a checksum");
        let pair = ovl_wire::checksum::IpPair::V6 { src, dst };
        assert!(udp.verify_checksum(&pair));
        let vx = ovl_wire::vxlan::Packet::new_checked(udp.payload()).expect("vxlan");
        assert_eq!(vx.payload(), &inner[..]);
        // One flipped bit anywhere in the inner frame breaks it.
        buf[n - 1] ^= 1;
        let eth = ovl_wire::ethernet::Frame::new_checked(&buf[..n]).unwrap();
        let ip = ovl_wire::ipv6::Packet::new_checked(eth.payload()).unwrap();
        let udp = ovl_wire::udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(!udp.verify_checksum(&pair));
        // Mixed families are refused, not half-written.
        o.dst_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(encapsulate(&inner, &o, &mut buf), None);
    }

    #[test]
    fn too_small_buffers_and_runt_frames_are_refused() {
        let inner = arp_broadcast();
        let o = outer(Encap::Vxlan, None);
        let mut small = [0u8; 60];
        assert_eq!(encapsulate(&inner, &o, &mut small), None);
        let mut buf = [0u8; 256];
        assert_eq!(encapsulate(&inner[..13], &o, &mut buf), None);
    }

    #[test]
    fn flow_hash_uses_ports_only_when_unfragmented() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 17;
        let a = flow_hash(&f);
        f[34] = 1; // source port
        let b = flow_hash(&f);
        assert_ne!(a, b);
        f[14 + 6] = 0x20; // more fragments: ports must not count
        let c = flow_hash(&f);
        f[34] = 2;
        assert_eq!(c, flow_hash(&f));
    }
}
