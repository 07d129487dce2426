//! ICMP "fragmentation needed" for IPv4 packets with DF, and ICMPv6 "packet too big" for IPv6
//! packets, that do not fit the overlay, written as if from the packet's destination and
//! handed back to the sender's stack, the way the kernel's tunnel drivers answer (iptunnel
//! PMTU discovery). The sender then learns the overlay MTU instead of losing packets silently.

use std::net::Ipv6Addr;

use ovl_common::{ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN};
use ovl_wire::checksum::{self, checksum};

const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const IPPROTO_ICMPV6: u8 = 58;
/// An ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 section 2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;
/// The longest answer either function writes: an Ethernet frame of the IPv6 minimum MTU.
pub const MAX_ANSWER: usize = ETH_HLEN + IPV6_MIN_MTU;

/// The answer to `frame`, too big for overlay MTU `mtu`: ICMP for IPv4 with DF, ICMPv6 for
/// IPv6; `None` for anything else.
pub fn too_big(frame: &[u8], mtu: u32, out: &mut [u8]) -> Option<usize> {
    match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        ETH_P_IPV4 => frag_needed(frame, u16::try_from(mtu).unwrap_or(u16::MAX), out),
        ETH_P_IPV6 => packet_too_big(frame, mtu, out),
        _ => None,
    }
}

/// Writes, into `out`, the Ethernet frame carrying ICMPv6 "packet too big" (MTU `mtu`) in
/// answer to the IPv6 packet in `frame`, quoting as much of it as fits the IPv6 minimum MTU.
/// `None` if `frame` is not IPv6 with a whole header, its source cannot be answered
/// (unspecified or multicast), or `out` is too small.
pub fn packet_too_big(frame: &[u8], mtu: u32, out: &mut [u8]) -> Option<usize> {
    let eth = frame.get(..ETH_HLEN)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IPV6 {
        return None;
    }
    let ip = frame.get(ETH_HLEN..)?;
    if ip.len() < IPV6_HLEN || ip[0] >> 4 != 6 {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
    // Never answer what cannot be answered (RFC 4443 section 2.4 (e)).
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let quoted = &ip[..ip.len().min(IPV6_MIN_MTU - IPV6_HLEN - ICMP_HLEN)];
    let icmp_len = ICMP_HLEN + quoted.len();
    let total = ETH_HLEN + IPV6_HLEN + icmp_len;
    let out = out.get_mut(..total)?;
    out[0..6].copy_from_slice(&eth[6..12]);
    out[6..12].copy_from_slice(&eth[0..6]);
    out[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let (hdr, rest) = out[ETH_HLEN..].split_at_mut(IPV6_HLEN);
    hdr[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    hdr[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    hdr[6] = IPPROTO_ICMPV6;
    hdr[7] = 64;
    // From the destination, which is where the sender expects path errors to come from.
    hdr[8..24].copy_from_slice(&dst.octets());
    hdr[24..40].copy_from_slice(&src.octets());
    rest[0] = ICMPV6_PACKET_TOO_BIG;
    rest[1] = 0;
    rest[2..4].copy_from_slice(&[0, 0]);
    rest[4..8].copy_from_slice(&mtu.to_be_bytes());
    rest[ICMP_HLEN..].copy_from_slice(quoted);
    let sum = checksum::combine(&[
        checksum::pseudo_header_v6(&dst, &src, IPPROTO_ICMPV6, icmp_len as u32),
        checksum::data(rest),
    ]);
    rest[2..4].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    Some(total)
}

const ICMP_HLEN: usize = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const IPPROTO_ICMP: u8 = 1;
/// Bytes of the offending packet's payload quoted after its IP header (RFC 792's minimum).
const QUOTED_PAYLOAD: usize = 8;

/// Writes, into `out`, the Ethernet frame carrying ICMP "fragmentation needed" (next-hop MTU
/// `mtu`) in answer to `frame`. `None` if `frame` is not an IPv4 packet with DF and a sane
/// header, or `out` is too small.
pub fn frag_needed(frame: &[u8], mtu: u16, out: &mut [u8]) -> Option<usize> {
    let eth = frame.get(..ETH_HLEN)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_HLEN..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN || ip.len() < ihl || ip.get(6)? & 0x40 == 0 {
        return None;
    }
    let quoted = &ip[..(ihl + QUOTED_PAYLOAD).min(ip.len())];
    let total = ETH_HLEN + IPV4_HLEN + ICMP_HLEN + quoted.len();
    let out = out.get_mut(..total)?;

    out[0..6].copy_from_slice(&eth[6..12]);
    out[6..12].copy_from_slice(&eth[0..6]);
    out[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());

    let ip_len = (IPV4_HLEN + ICMP_HLEN + quoted.len()) as u16;
    let (hdr, rest) = out[ETH_HLEN..].split_at_mut(IPV4_HLEN);
    hdr[..12].copy_from_slice(&[0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0]);
    hdr[2..4].copy_from_slice(&ip_len.to_be_bytes());
    hdr[12..16].copy_from_slice(&ip[16..20]);
    hdr[16..20].copy_from_slice(&ip[12..16]);
    let c = checksum(hdr);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());

    rest[0] = ICMP_DEST_UNREACH;
    rest[1] = ICMP_FRAG_NEEDED;
    rest[2..6].copy_from_slice(&[0, 0, 0, 0]);
    rest[6..8].copy_from_slice(&mtu.to_be_bytes());
    rest[ICMP_HLEN..].copy_from_slice(quoted);
    let c = checksum(rest);
    rest[2..4].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(df: bool, payload: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 10, 0x08, 0x00];
        let total = (20 + payload) as u16;
        let mut ip = vec![
            0x45,
            0,
            0,
            0,
            0x12,
            0x34,
            if df { 0x40 } else { 0 },
            0,
            64,
            1,
            0,
            0,
        ];
        ip.extend_from_slice(&[192, 168, 0, 10, 192, 168, 0, 4]);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    #[test]
    fn answers_from_the_destination_with_the_mtu_and_a_quote() {
        let p = packet(true, 1480);
        let mut out = [0u8; 256];
        let n = frag_needed(&p, 1450, &mut out).expect("answer");
        assert_eq!(n, 14 + 20 + 8 + 20 + 8);
        assert_eq!(&out[0..6], &p[6..12], "back to the sender's MAC");
        assert_eq!(&out[6..12], &p[0..6]);
        let ip = ovl_wire::ipv4::Packet::new_checked(&out[14..n]).expect("IPv4");
        assert!(ip.verify_checksum());
        assert_eq!(
            ip.src_addr().octets(),
            [192, 168, 0, 4],
            "from the destination"
        );
        assert_eq!(ip.dst_addr().octets(), [192, 168, 0, 10]);
        let icmp = &out[34..n];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450);
        assert_eq!(checksum(icmp), 0, "ICMP checksum verifies");
        assert_eq!(&icmp[8..], &p[14..14 + 28], "IP header and 8 bytes quoted");
    }

    fn packet6(payload: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 10, 0x86, 0xdd];
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
        ip[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        ip.extend("fd00::10".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend("fd00::4".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    #[test]
    fn ipv6_gets_packet_too_big_from_the_destination_within_1280_bytes() {
        let p = packet6(1600);
        let mut out = [0u8; MAX_ANSWER];
        let n = too_big(&p, 1430, &mut out).expect("answer");
        assert_eq!(n, 14 + 1280, "as much quoted as fits the IPv6 minimum MTU");
        assert_eq!(&out[0..6], &p[6..12]);
        let ip = ovl_wire::ipv6::Packet::new_checked(&out[14..n]).expect("IPv6");
        assert_eq!(ip.src_addr(), "fd00::4".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "fd00::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(u8::from(ip.next_header()), 58);
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (2, 0));
        assert_eq!(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
            1430
        );
        let sum = checksum::combine(&[
            checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), 58, icmp.len() as u32),
            checksum::data(icmp),
        ]);
        assert_eq!(sum, 0xffff, "ICMPv6 checksum verifies");
        assert_eq!(&icmp[8..], &p[14..14 + 1232]);
        // A short packet is quoted whole; truncated headers and multicast sources get nothing.
        let short = packet6(8);
        assert_eq!(too_big(&short, 1430, &mut out), Some(14 + 40 + 8 + 48));
        for cut in 0..54 {
            assert_eq!(
                packet_too_big(&p[..cut], 1430, &mut out),
                None,
                "cut at {cut}"
            );
        }
        let mut mcast = p.clone();
        mcast[14 + 8] = 0xff;
        assert_eq!(too_big(&mcast, 1430, &mut out), None);
        let mut small = [0u8; 100];
        assert_eq!(too_big(&p, 1430, &mut small), None, "out too small");
    }

    #[test]
    fn no_answer_without_df_or_for_garbage() {
        let mut out = [0u8; 256];
        assert_eq!(frag_needed(&packet(false, 1480), 1450, &mut out), None);
        let p = packet(true, 100);
        for cut in 0..34 {
            assert_eq!(frag_needed(&p[..cut], 1450, &mut out), None, "cut at {cut}");
        }
        let mut arp = p.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(frag_needed(&arp, 1450, &mut out), None);
        let mut tiny = [0u8; 40];
        assert_eq!(frag_needed(&p, 1450, &mut tiny), None, "out too small");
    }
}
