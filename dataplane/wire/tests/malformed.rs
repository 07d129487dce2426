//! Malformed and truncated input: every case must come back as the specific error, never as a
//! panic or a wrong parse.

mod common;

use core::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use ovl_wire::{
    ArpPacket, ArpRepr, Error, EthernetFrame, EthernetRepr, GeneveOption, GenevePacket, GeneveRepr,
    Icmpv6NeighborAdvert, Icmpv6Packet, IpPair, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    UdpPacket, UdpRepr, VxlanPacket, VxlanRepr, icmpv6,
};

// Where each layer starts in VXLAN_ARP and GENEVE_OPT_ICMP.
const IP_AT: usize = 14;
const UDP_AT: usize = 34;
const TUNNEL_AT: usize = 42;

const V4_PAIR: IpPair = IpPair::V4 {
    src: Ipv4Addr::new(10, 0, 0, 1),
    dst: Ipv4Addr::new(10, 0, 0, 2),
};
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fn na_icmp() -> Vec<u8> {
    UNSOLICITED_NA[54..].to_vec()
}

/// Every strict prefix of `full` shorter than `upto` must fail `check` with `Truncated`.
fn truncated_below(full: &[u8], upto: usize, check: impl Fn(&[u8]) -> Result<(), Error>) {
    for n in 0..upto {
        assert_eq!(check(&full[..n]), Err(Error::Truncated), "length {n}");
    }
}

#[test]
fn ethernet_truncated_at_every_length() {
    truncated_below(&GARP_REQUEST, 14, |b| {
        EthernetFrame::new_checked(b).map(drop)
    });
    truncated_below(&GARP_REQUEST, 14, |b| {
        EthernetRepr::parse(&EthernetFrame::new_unchecked(b)).map(drop)
    });
    // A tagged frame needs all 18 bytes.
    truncated_below(&VLAN_GARP, 18, |b| EthernetFrame::new_checked(b).map(drop));
    truncated_below(&VLAN_GARP, 18, |b| {
        EthernetRepr::parse(&EthernetFrame::new_unchecked(b)).map(drop)
    });
    assert!(EthernetFrame::new_checked(&VLAN_GARP[..18]).is_ok());
}

#[test]
fn arp_truncated_at_every_length() {
    let arp = &GARP_REQUEST[14..];
    truncated_below(arp, 28, |b| ArpPacket::new_checked(b).map(drop));
    truncated_below(arp, 28, |b| {
        ArpRepr::parse(&ArpPacket::new_unchecked(b)).map(drop)
    });
}

#[test]
fn ipv4_truncated_at_every_length() {
    // Up to the total length (78), not just the header: the payload must be there too.
    let ip = &VXLAN_ARP[IP_AT..];
    truncated_below(ip, ip.len(), |b| Ipv4Packet::new_checked(b).map(drop));
    truncated_below(ip, ip.len(), |b| {
        Ipv4Repr::parse(&Ipv4Packet::new_unchecked(b)).map(drop)
    });
}

#[test]
fn ipv6_truncated_at_every_length() {
    truncated_below(&IPV6_UDP, IPV6_UDP.len(), |b| {
        Ipv6Packet::new_checked(b).map(drop)
    });
    truncated_below(&IPV6_UDP, IPV6_UDP.len(), |b| {
        Ipv6Repr::parse(&Ipv6Packet::new_unchecked(b)).map(drop)
    });
}

#[test]
fn udp_truncated_at_every_length() {
    let udp = &VXLAN_ARP[UDP_AT..];
    truncated_below(udp, udp.len(), |b| UdpPacket::new_checked(b).map(drop));
    truncated_below(udp, udp.len(), |b| {
        UdpRepr::parse(&UdpPacket::new_unchecked(b), &V4_PAIR).map(drop)
    });
}

#[test]
fn vxlan_truncated_at_every_length() {
    let vx = &VXLAN_ARP[TUNNEL_AT..];
    truncated_below(vx, 8, |b| VxlanPacket::new_checked(b).map(drop));
    truncated_below(vx, 8, |b| {
        VxlanRepr::parse(&VxlanPacket::new_unchecked(b)).map(drop)
    });
}

#[test]
fn geneve_truncated_at_every_length() {
    // Base header plus the 8-byte option that opt_len declares.
    let g = &GENEVE_OPT_ICMP[TUNNEL_AT..];
    truncated_below(g, 16, |b| GenevePacket::new_checked(b).map(drop));
    truncated_below(g, 16, |b| {
        GeneveRepr::parse(&GenevePacket::new_unchecked(b)).map(drop)
    });
    truncated_below(&GENEVE_NO_OPT, 8, |b| {
        GenevePacket::new_checked(b).map(drop)
    });
}

#[test]
fn icmpv6_na_truncated_at_every_length() {
    let na = na_icmp();
    truncated_below(&na, 24, |b| Icmpv6Packet::new_checked(b).map(drop));
    // Past the fixed part the cut falls inside the option, which must still fail (the
    // checksum no longer covers the same bytes, and the option overruns).
    for n in 0..na.len() {
        let r = Icmpv6NeighborAdvert::parse(
            &Icmpv6Packet::new_unchecked(&na[..n]),
            &VIP6,
            &icmpv6::ALL_NODES,
        );
        assert!(r.is_err(), "length {n}: {r:?}");
    }
}

#[test]
fn ethernet_unsupported_forms() {
    // 802.1Q tag inside an 802.1Q tag.
    let mut qinq = VLAN_GARP.to_vec();
    qinq.splice(16..16, [0x81, 0x00, 0x00, 0x05]);
    let f = EthernetFrame::new_checked(&qinq[..]).unwrap();
    assert_eq!(
        EthernetRepr::parse(&f),
        Err(Error::Unsupported("stacked VLAN tags"))
    );
    // An 802.3 length where the EtherType belongs.
    let mut llc = GARP_REQUEST;
    llc[12..14].copy_from_slice(&[0x00, 0x2e]);
    let f = EthernetFrame::new_checked(&llc[..]).unwrap();
    assert!(matches!(
        EthernetRepr::parse(&f),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn arp_wrong_types_are_unsupported() {
    let base = GARP_REQUEST[14..].to_vec();
    let cases: [(usize, &[u8]); 4] = [
        (0, &[0x00, 0x06]), // IEEE 802 hardware type
        (2, &[0x86, 0xdd]), // IPv6 protocol type
        (4, &[0x08]),       // 8-byte hardware addresses (also makes it too short)
        (6, &[0x00, 0x03]), // RARP request
    ];
    for (off, bytes) in cases {
        let mut b = base.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        b.resize(40, 0);
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert!(
            matches!(ArpRepr::parse(&p), Err(Error::Unsupported(_))),
            "offset {off}"
        );
    }
    // Address lengths larger than the buffer are caught before any address is read.
    let mut b = base;
    b[4] = 0xff;
    assert_eq!(ArpPacket::new_checked(&b[..]), Err(Error::Truncated));
}

fn ipv4_with(edit: impl Fn(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
    let mut b = VXLAN_ARP[IP_AT..].to_vec();
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    edit(&mut p);
    p.fill_checksum();
    b
}

fn ipv4_parse(b: &[u8]) -> Result<Ipv4Repr, Error> {
    Ipv4Repr::parse(&Ipv4Packet::new_checked(b)?)
}

#[test]
fn ipv4_bad_ihl() {
    for hl in [0, 4, 8, 16] {
        let b = ipv4_with(|p| p.set_header_len(hl));
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]),
            Err(Error::BadLength("IPv4 IHL below 5")),
            "header length {hl}"
        );
    }
    // IHL 15 in a 20-byte buffer: the declared header is not there.
    let mut b = IPV4_CLASSIC;
    b[0] = 0x4f;
    assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Truncated));
}

#[test]
fn ipv4_options_are_flagged_not_misread() {
    // IHL 6 with a 4-byte option (NOP NOP NOP EOL) in front of the same UDP payload.
    let mut b = VXLAN_ARP[IP_AT..IP_AT + 20].to_vec();
    b.extend_from_slice(&[1, 1, 1, 0]);
    b.extend_from_slice(&VXLAN_ARP[UDP_AT..]);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_header_len(24);
    p.set_total_len(82);
    p.fill_checksum();
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.options(), &[1, 1, 1, 0]);
    assert_eq!(p.payload(), &VXLAN_ARP[UDP_AT..]);
    assert!(p.verify_checksum());
    assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported("IPv4 options")));
    truncated_below(&b, 24, |b| Ipv4Packet::new_checked(b).map(drop));
}

#[test]
fn ipv4_total_length_inconsistent() {
    let beyond = ipv4_with(|p| p.set_total_len(79));
    assert_eq!(Ipv4Packet::new_checked(&beyond[..]), Err(Error::Truncated));
    let below_header = ipv4_with(|p| p.set_total_len(19));
    assert_eq!(
        Ipv4Packet::new_checked(&below_header[..]),
        Err(Error::BadLength("IPv4 total length below header length"))
    );
    // Shorter than the buffer is fine (Ethernet padding): the payload stops at total length.
    let short = ipv4_with(|p| p.set_total_len(40));
    let p = Ipv4Packet::new_checked(&short[..]).unwrap();
    assert_eq!(p.payload().len(), 20);
    assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 20);
}

#[test]
fn ipv4_version_checksum_flags_fragments() {
    assert_eq!(
        ipv4_parse(&ipv4_with(|p| p.set_version(6))),
        Err(Error::BadVersion(6))
    );
    let mut bad_sum = VXLAN_ARP[IP_AT..].to_vec();
    bad_sum[8] = 63; // TTL changed, checksum not
    assert_eq!(ipv4_parse(&bad_sum), Err(Error::BadChecksum));
    assert_eq!(
        ipv4_parse(&ipv4_with(|p| p.set_reserved_flag(true))),
        Err(Error::ReservedBitsSet("IPv4 reserved flag"))
    );
    let first_fragment = ipv4_with(|p| p.set_more_frags(true));
    assert_eq!(
        ipv4_parse(&first_fragment),
        Err(Error::Unsupported("IPv4 fragment"))
    );
    let later_fragment = ipv4_with(|p| p.set_frag_offset(1480));
    let p = Ipv4Packet::new_checked(&later_fragment[..]).unwrap();
    assert_eq!(p.frag_offset(), 1480);
    assert!(p.is_fragment() && p.dont_frag() && !p.more_frags());
    assert_eq!(
        Ipv4Repr::parse(&p),
        Err(Error::Unsupported("IPv4 fragment"))
    );
    // Sanity: the untouched packet parses.
    assert!(ipv4_parse(&ipv4_with(|_| {})).is_ok());
}

#[test]
fn ipv6_bad_version_and_length() {
    let mut b = IPV6_UDP;
    b[0] = 0x40;
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(Ipv6Repr::parse(&p), Err(Error::BadVersion(4)));
    let mut b = IPV6_UDP;
    b[5] = 0x17; // payload length 23, one more than there is
    assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(Error::Truncated));
}

#[test]
fn udp_length_mismatch() {
    let mut b = VXLAN_ARP[UDP_AT..].to_vec();
    b[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        UdpPacket::new_checked(&b[..]),
        Err(Error::BadLength("UDP length below 8"))
    );
    b[4..6].copy_from_slice(&59u16.to_be_bytes());
    assert_eq!(UdpPacket::new_checked(&b[..]), Err(Error::Truncated));
    // Shorter than the IP payload: the view accepts it, the representation does not.
    b[4..6].copy_from_slice(&50u16.to_be_bytes());
    let p = UdpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.payload().len(), 42);
    assert_eq!(
        UdpRepr::parse(&p, &V4_PAIR),
        Err(Error::BadLength(
            "UDP length differs from IP payload length"
        ))
    );
}

#[test]
fn udp_checksums() {
    let v4 = IpPair::V4 {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(198, 51, 100, 7),
    };
    let mut b = UDP4_CSUM;
    b[10] ^= 0x01;
    let p = UdpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(UdpRepr::parse(&p, &v4), Err(Error::BadChecksum));
    // Zero means "none" over IPv4 ...
    b[6..8].copy_from_slice(&[0, 0]);
    let p = UdpPacket::new_checked(&b[..]).unwrap();
    assert!(UdpRepr::parse(&p, &v4).is_ok());
    // ... and is invalid over IPv6.
    let v6 = IpPair::V6 {
        src: "2001:db8::1".parse().unwrap(),
        dst: "2001:db8::2".parse().unwrap(),
    };
    let mut b6 = IPV6_UDP[40..].to_vec();
    b6[6..8].copy_from_slice(&[0, 0]);
    let p = UdpPacket::new_checked(&b6[..]).unwrap();
    assert_eq!(UdpRepr::parse(&p, &v6), Err(Error::BadChecksum));
}

#[test]
fn vxlan_flags_and_reserved_fields() {
    let vx = &VXLAN_ARP[TUNNEL_AT..];
    let parse = |edit: &dyn Fn(&mut [u8])| {
        let mut b = vx.to_vec();
        edit(&mut b);
        VxlanRepr::parse(&VxlanPacket::new_checked(&b[..]).unwrap())
    };
    assert_eq!(parse(&|_| {}), Ok(VxlanRepr { vni: 100 }));
    assert_eq!(
        parse(&|b| b[0] = 0x00),
        Err(Error::Malformed("VXLAN I flag clear"))
    );
    // Without I the I error wins, whatever else is set.
    assert_eq!(
        parse(&|b| b[0] = 0x80),
        Err(Error::Malformed("VXLAN I flag clear"))
    );
    for flags in [0x88, 0x0c, 0x09, 0x18] {
        assert_eq!(
            parse(&|b| b[0] = flags),
            Err(Error::ReservedBitsSet("VXLAN flags")),
            "flags {flags:#04x}"
        );
    }
    for off in 1..4 {
        assert_eq!(
            parse(&|b| b[off] = 0x01),
            Err(Error::ReservedBitsSet("VXLAN reserved field after flags")),
            "offset {off}"
        );
    }
    assert_eq!(
        parse(&|b| b[7] = 0x01),
        Err(Error::ReservedBitsSet("VXLAN reserved field after VNI"))
    );
}

#[test]
fn geneve_bad_version() {
    for version in 1..4u8 {
        let mut b = GENEVE_NO_OPT;
        b[0] = version << 6;
        let p = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), version);
        assert_eq!(GeneveRepr::parse(&p), Err(Error::BadVersion(version)));
    }
}

#[test]
fn geneve_opt_len_past_end() {
    let mut b = GENEVE_NO_OPT;
    b[0] = 0x04; // 16 bytes of options, only 14 bytes follow
    assert_eq!(GenevePacket::new_checked(&b[..]), Err(Error::Truncated));
    b[0] = 0x3f;
    assert_eq!(GenevePacket::new_checked(&b[..]), Err(Error::Truncated));
    b[0] = 0x03; // 12 bytes fit
    assert!(GenevePacket::new_checked(&b[..]).is_ok());
}

#[test]
fn geneve_option_length_past_end() {
    // The option claims 2 words of data, the options area has room for 1.
    let mut b = GENEVE_OPT_ICMP[TUNNEL_AT..].to_vec();
    b[11] = 0x02;
    let p = GenevePacket::new_checked(&b[..]).unwrap();
    let mut it = p.options_iter();
    assert_eq!(
        it.next(),
        Some(Err(Error::BadLength(
            "GENEVE option data overruns options area"
        )))
    );
    assert_eq!(it.next(), None, "the iterator stops after an error");
    assert_eq!(
        GeneveRepr::parse(&p),
        Err(Error::BadLength("GENEVE option data overruns options area"))
    );

    // An options area that ends inside an option header.
    let mut it = ovl_wire::GeneveOptions::new(&[0x01, 0x02, 0x80]);
    assert_eq!(
        it.next(),
        Some(Err(Error::BadLength(
            "GENEVE option header overruns options area"
        )))
    );
    assert_eq!(it.next(), None);
}

#[test]
fn geneve_option_constraints() {
    assert!(GeneveOption::new(1, 2, &[0; 3]).is_err());
    assert!(GeneveOption::new(1, 2, &[0; 128]).is_err());
    assert!(GeneveOption::new(1, 2, &[0; 124]).is_ok());
    let mut repr = GeneveRepr::new(ovl_wire::EtherType::Teb, 1);
    // Two 124-byte options and a bare 4-byte one fill the 252 bytes exactly.
    let big = GeneveOption::new(1, 2, &[0; 120]).unwrap();
    repr.push_option(big.clone()).unwrap();
    repr.push_option(big).unwrap();
    repr.push_option(GeneveOption::new(1, 2, &[]).unwrap())
        .unwrap();
    assert_eq!(repr.options_len(), 252);
    assert_eq!(
        repr.push_option(GeneveOption::new(1, 2, &[]).unwrap()),
        Err(Error::BadLength("GENEVE options exceed 252 bytes"))
    );
    assert!(!repr.critical);
}

fn na_with(edit: impl Fn(&mut [u8]), dst: &Ipv6Addr) -> Result<Icmpv6NeighborAdvert, Error> {
    let mut b = na_icmp();
    edit(&mut b);
    let mut p = Icmpv6Packet::new_checked(&mut b[..])?;
    p.fill_checksum(&VIP6, dst);
    Icmpv6NeighborAdvert::parse(&p, &VIP6, dst)
}

#[test]
fn icmpv6_na_malformed() {
    let all = icmpv6::ALL_NODES;
    assert!(na_with(|_| {}, &all).is_ok());
    assert!(matches!(
        na_with(|b| b[0] = icmpv6::TYPE_NEIGHBOR_SOLICIT, &all),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        na_with(|b| b[0] = 128, &all),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        na_with(|b| b[1] = 1, &all),
        Err(Error::Malformed(_))
    ));
    // Multicast target.
    assert!(matches!(
        na_with(|b| b[8] = 0xff, &all),
        Err(Error::Malformed(_))
    ));
    // S flag on a multicast destination; fine on a unicast one.
    assert!(matches!(
        na_with(|b| b[4] |= 0x40, &all),
        Err(Error::Malformed(_))
    ));
    let unicast: Ipv6Addr = "2001:db8::20".parse().unwrap();
    assert!(na_with(|b| b[4] |= 0x40, &unicast).unwrap().solicited);
    // Option length 0.
    assert_eq!(
        na_with(|b| b[25] = 0, &all),
        Err(Error::Malformed("ND option with length 0"))
    );
    // Option length 2 (16 bytes) overruns the 8 that are there.
    assert_eq!(
        na_with(|b| b[25] = 2, &all),
        Err(Error::BadLength("ND option overruns message"))
    );
    // Unknown option type: skipped, so no link-layer address.
    assert_eq!(na_with(|b| b[24] = 99, &all).unwrap().target_lladdr, None);

    let mut bad_sum = na_icmp();
    bad_sum[31] ^= 0xff;
    let p = Icmpv6Packet::new_checked(&bad_sum[..]).unwrap();
    assert_eq!(
        Icmpv6NeighborAdvert::parse(&p, &VIP6, &all),
        Err(Error::BadChecksum)
    );
    // Right bytes, wrong pseudo-header.
    let p = Icmpv6Packet::new_checked(&UNSOLICITED_NA[54..]).unwrap();
    assert_eq!(
        Icmpv6NeighborAdvert::parse(&p, &unicast, &all),
        Err(Error::BadChecksum)
    );
}

#[test]
fn icmpv6_na_lladdr_option_wrong_size() {
    // A target link-layer address option of 16 bytes is not an Ethernet address.
    let mut b = na_icmp();
    b[25] = 2;
    b.extend_from_slice(&[0; 8]);
    let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
    p.fill_checksum(&VIP6, &icmpv6::ALL_NODES);
    assert!(matches!(
        Icmpv6NeighborAdvert::parse(&p, &VIP6, &icmpv6::ALL_NODES),
        Err(Error::BadLength(_))
    ));
}
