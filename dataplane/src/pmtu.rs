//! ICMP "fragmentation needed" for IPv4 packets with DF that do not fit the overlay, written
//! as if from the packet's destination and handed back to the sender's stack, the way the
//! kernel's tunnel drivers answer (iptunnel PMTU discovery). The sender then learns the
//! overlay MTU instead of losing packets silently.

use ovl_common::{ETH_HLEN, ETH_P_IPV4, IPV4_HLEN};
use ovl_wire::checksum::checksum;

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
