//! Property tests: no input makes a parser panic, and every valid representation survives
//! emit-then-parse unchanged.

mod common;

use core::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use ovl_common::{VNI_MAX, VXLAN_PORT};
use ovl_wire::{
    ArpOperation, ArpPacket, ArpRepr, Error, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, GeneveOption, GenevePacket, GeneveRepr, Icmpv6NeighborAdvert, Icmpv6Packet,
    IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VlanTag,
    VxlanPacket, VxlanRepr,
};
use proptest::collection::vec;
use proptest::prelude::*;

// ---- Strategies for valid representations ----

fn eth_addr() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn ipv4_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6_addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// Any EtherType a single-tagged Ethernet II frame can carry.
fn payload_ethertype() -> impl Strategy<Value = EtherType> {
    (0x0600u16..=u16::MAX)
        .prop_filter("tag protocol", |v| *v != 0x8100 && *v != 0x88a8)
        .prop_map(EtherType::from)
}

fn vlan_tag() -> impl Strategy<Value = VlanTag> {
    (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid })
}

fn eth_repr() -> impl Strategy<Value = EthernetRepr> {
    (
        eth_addr(),
        eth_addr(),
        proptest::option::of(vlan_tag()),
        payload_ethertype(),
    )
        .prop_map(|(src_addr, dst_addr, vlan, ethertype)| EthernetRepr {
            src_addr,
            dst_addr,
            vlan,
            ethertype,
        })
}

fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    (
        prop_oneof![Just(ArpOperation::Request), Just(ArpOperation::Reply)],
        eth_addr(),
        ipv4_addr(),
        eth_addr(),
        ipv4_addr(),
    )
        .prop_map(|(operation, sha, spa, tha, tpa)| ArpRepr {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: tha,
            target_protocol_addr: tpa,
        })
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        (ipv4_addr(), ipv4_addr(), any::<u8>(), 0usize..1500),
        (any::<u8>(), 0u8..64, 0u8..4, any::<u16>(), any::<bool>()),
    )
        .prop_map(
            |((src_addr, dst_addr, proto, payload_len), (ttl, dscp, ecn, ident, dont_frag))| {
                Ipv4Repr {
                    src_addr,
                    dst_addr,
                    protocol: IpProtocol::from(proto),
                    payload_len,
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag,
                }
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        ipv6_addr(),
        ipv6_addr(),
        any::<u8>(),
        0usize..1500,
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
    )
        .prop_map(
            |(src_addr, dst_addr, nh, payload_len, hop_limit, traffic_class, flow_label)| {
                Ipv6Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::from(nh),
                    payload_len,
                    hop_limit,
                    traffic_class,
                    flow_label,
                }
            },
        )
}

fn ip_pair() -> impl Strategy<Value = IpPair> {
    prop_oneof![
        (ipv4_addr(), ipv4_addr()).prop_map(|(src, dst)| IpPair::V4 { src, dst }),
        (ipv6_addr(), ipv6_addr()).prop_map(|(src, dst)| IpPair::V6 { src, dst }),
    ]
}

fn geneve_option() -> impl Strategy<Value = GeneveOption> {
    (any::<u16>(), any::<u8>(), 0usize..=31)
        .prop_flat_map(|(class, opt_type, words)| {
            vec(any::<u8>(), words * 4).prop_map(move |data| (class, opt_type, data))
        })
        .prop_map(|(class, opt_type, data)| {
            GeneveOption::new(class, opt_type, &data).expect("length is a multiple of 4")
        })
}

fn geneve_repr() -> impl Strategy<Value = GeneveRepr> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        0u32..=VNI_MAX,
        vec(geneve_option(), 0..6),
    )
        .prop_map(|(oam, critical, proto, vni, options)| {
            let mut repr = GeneveRepr::new(EtherType::from(proto), vni);
            repr.oam = oam;
            for o in options {
                // Options past the 252-byte limit are dropped: the limit is tested elsewhere.
                let _ = repr.push_option(o);
            }
            // After the pushes, so that C is sometimes clear despite critical options, as a
            // sender may get it wrong and the flag is carried as received.
            repr.critical = critical;
            repr
        })
}

fn na_repr() -> impl Strategy<Value = (Icmpv6NeighborAdvert, Ipv6Addr, Ipv6Addr)> {
    (
        any::<[bool; 3]>(),
        ipv6_addr().prop_filter("multicast target", |a| !a.is_multicast()),
        proptest::option::of(eth_addr()),
        ipv6_addr(),
        prop_oneof![ipv6_addr(), Just(ovl_wire::icmpv6::ALL_NODES)],
    )
        .prop_map(
            |([router, solicited, override_flag], target, lladdr, src, dst)| {
                let na = Icmpv6NeighborAdvert {
                    router,
                    // RFC 4861 forbids S on a multicast destination.
                    solicited: solicited && !dst.is_multicast(),
                    override_flag,
                    target_addr: target,
                    target_lladdr: lladdr,
                };
                (na, src, dst)
            },
        )
}

// ---- Parsing every layer that can be reached, for the no-panic properties ----

/// Parses as deep as the headers allow and returns how many layers parsed. Touches every
/// getter on each view that `new_checked` accepted, since those must not panic either.
fn parse_stack(frame: &[u8]) -> usize {
    let Ok(f) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    let _ = (f.src_addr(), f.dst_addr(), f.vlan_id(), f.vlan_tci());
    let Ok(eth) = EthernetRepr::parse(&f) else {
        return 0;
    };
    1 + match eth.ethertype {
        EtherType::Arp => parse_arp(f.payload()),
        EtherType::Ipv4 => parse_ipv4(f.payload()),
        EtherType::Ipv6 => parse_ipv6(f.payload()),
        _ => 0,
    }
}

fn parse_arp(b: &[u8]) -> usize {
    let Ok(p) = ArpPacket::new_checked(b) else {
        return 0;
    };
    let _ = (p.hardware_type(), p.protocol_type(), p.operation());
    let _ = (p.source_hardware_addr(), p.source_protocol_addr());
    let _ = (p.target_hardware_addr(), p.target_protocol_addr());
    usize::from(ArpRepr::parse(&p).is_ok())
}

fn parse_ipv4(b: &[u8]) -> usize {
    let Ok(p) = Ipv4Packet::new_checked(b) else {
        return 0;
    };
    let _ = (
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.frag_offset(),
        p.ttl(),
        p.checksum(),
    );
    let _ = (p.options(), p.verify_checksum(), p.src_addr(), p.dst_addr());
    let Ok(ip) = Ipv4Repr::parse(&p) else {
        return 0;
    };
    let pair = IpPair::V4 {
        src: ip.src_addr,
        dst: ip.dst_addr,
    };
    1 + match ip.protocol {
        IpProtocol::Udp => parse_udp(p.payload(), &pair),
        _ => 0,
    }
}

fn parse_ipv6(b: &[u8]) -> usize {
    let Ok(p) = Ipv6Packet::new_checked(b) else {
        return 0;
    };
    let _ = (p.traffic_class(), p.flow_label(), p.hop_limit());
    let Ok(ip) = Ipv6Repr::parse(&p) else {
        return 0;
    };
    1 + match ip.next_header {
        IpProtocol::Udp => parse_udp(
            p.payload(),
            &IpPair::V6 {
                src: ip.src_addr,
                dst: ip.dst_addr,
            },
        ),
        IpProtocol::Icmpv6 => parse_icmpv6(p.payload(), &ip.src_addr, &ip.dst_addr),
        _ => 0,
    }
}

fn parse_udp(b: &[u8], pair: &IpPair) -> usize {
    let Ok(p) = UdpPacket::new_checked(b) else {
        return 0;
    };
    let _ = (p.src_port(), p.checksum(), p.verify_checksum(pair));
    let Ok(udp) = UdpRepr::parse(&p, pair) else {
        return 0;
    };
    1 + match udp.dst_port {
        VXLAN_PORT => parse_vxlan(p.payload()),
        ovl_common::GENEVE_PORT => parse_geneve(p.payload()),
        _ => 0,
    }
}

fn parse_vxlan(b: &[u8]) -> usize {
    let Ok(p) = VxlanPacket::new_checked(b) else {
        return 0;
    };
    let _ = (p.flags(), p.reserved1(), p.reserved2(), p.vni());
    match VxlanRepr::parse(&p) {
        Ok(_) => 1 + parse_stack(p.payload()),
        Err(_) => 0,
    }
}

fn parse_geneve(b: &[u8]) -> usize {
    let Ok(p) = GenevePacket::new_checked(b) else {
        return 0;
    };
    let _ = (
        p.oam(),
        p.critical(),
        p.reserved_flags(),
        p.protocol_type(),
        p.vni(),
    );
    for o in p.options_iter().flatten() {
        let _ = (o.is_critical(), o.wire_len(), o.to_owned());
    }
    match GeneveRepr::parse(&p) {
        Ok(g) if g.protocol == EtherType::Teb => 1 + parse_stack(p.payload()),
        Ok(_) => 1,
        Err(_) => 0,
    }
}

fn parse_icmpv6(b: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> usize {
    let Ok(p) = Icmpv6Packet::new_checked(b) else {
        return 0;
    };
    let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.payload());
    if p.header_len() == 24 {
        let _ = (p.target_addr(), p.router_flag(), p.solicited_flag());
        let _ = p.ndp_options().count();
    }
    usize::from(Icmpv6NeighborAdvert::parse(&p, src, dst).is_ok())
}

/// `Repr::parse` on an unchecked view must fail exactly as `new_checked` does.
fn same_error<V, R: core::fmt::Debug>(
    checked: Result<V, Error>,
    parse_unchecked: Result<R, Error>,
) -> Result<(), TestCaseError> {
    if let Err(e) = checked {
        prop_assert_eq!(parse_unchecked.map(drop), Err(e));
    }
    Ok(())
}

fn golden_frames() -> [&'static [u8]; 6] {
    [
        &VXLAN_ARP,
        &GENEVE_OPT_ICMP,
        &GARP_REPLY,
        &VLAN_GARP,
        &UNSOLICITED_NA,
        &GARP_REQUEST,
    ]
}

#[test]
fn golden_frames_parse_all_the_way_down() {
    // The baseline the mutation property starts from: every layer parses when intact.
    let depths: Vec<usize> = golden_frames().iter().map(|f| parse_stack(f)).collect();
    // E.g. VXLAN_ARP: Ethernet, IPv4, UDP, VXLAN, inner Ethernet, ARP.
    assert_eq!(depths, [6, 6, 2, 2, 3, 2]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), pair in ip_pair()) {
        let b = &bytes[..];
        parse_stack(b);
        parse_arp(b);
        parse_ipv4(b);
        parse_ipv6(b);
        parse_udp(b, &pair);
        parse_vxlan(b);
        parse_geneve(b);
        parse_icmpv6(b, &Ipv6Addr::UNSPECIFIED, &Ipv6Addr::LOCALHOST);
        let _ = ovl_wire::GeneveOptions::new(b).count();
        let _ = ovl_wire::NdpOptions::new(b).count();

        same_error(EthernetFrame::new_checked(b), EthernetRepr::parse(&EthernetFrame::new_unchecked(b)))?;
        same_error(ArpPacket::new_checked(b), ArpRepr::parse(&ArpPacket::new_unchecked(b)))?;
        same_error(Ipv4Packet::new_checked(b), Ipv4Repr::parse(&Ipv4Packet::new_unchecked(b)))?;
        same_error(Ipv6Packet::new_checked(b), Ipv6Repr::parse(&Ipv6Packet::new_unchecked(b)))?;
        same_error(UdpPacket::new_checked(b), UdpRepr::parse(&UdpPacket::new_unchecked(b), &pair))?;
        same_error(VxlanPacket::new_checked(b), VxlanRepr::parse(&VxlanPacket::new_unchecked(b)))?;
        same_error(GenevePacket::new_checked(b), GeneveRepr::parse(&GenevePacket::new_unchecked(b)))?;
        same_error(
            Icmpv6Packet::new_checked(b),
            Icmpv6NeighborAdvert::parse(&Icmpv6Packet::new_unchecked(b), &Ipv6Addr::UNSPECIFIED, &Ipv6Addr::LOCALHOST),
        )?;
    }

    #[test]
    fn mutated_golden_frames_never_panic(
        which in 0usize..6,
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        fix_ip_checksum in any::<bool>(),
    ) {
        let mut frame = golden_frames()[which].to_vec();
        for (i, v) in edits {
            let i = i % frame.len();
            frame[i] = v;
        }
        // Repairing the outer IPv4 checksum lets edits to the IPv4 header and below reach the
        // UDP and tunnel parsers instead of stopping at BadChecksum.
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        if fix_ip_checksum && frame.len() >= 14 + ihl.max(20) {
            Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
        }
        let len = frame.len();
        // Cut off the tail in about half of the cases.
        frame.truncate(if cut % 2 == 0 { len } else { cut % (len + 1) });
        parse_stack(&frame);
    }

    #[test]
    fn ethernet_round_trip(repr in eth_repr(), payload in vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f);
        f.payload_mut().copy_from_slice(&payload);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f), Ok(repr));
        prop_assert_eq!(f.payload(), &payload[..]);
    }

    #[test]
    fn arp_round_trip(repr in arp_repr()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ArpRepr::parse(&p), Ok(repr));
    }

    #[test]
    fn gratuitous_arp_forms_round_trip(mac in eth_addr(), ip in ipv4_addr()) {
        for repr in [ArpRepr::gratuitous_request(mac, ip), ArpRepr::gratuitous_reply(mac, ip)] {
            let mut buf = [0u8; 28];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            let parsed = ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert!(parsed.is_gratuitous());
            prop_assert_eq!(parsed, repr);
        }
    }

    #[test]
    fn ipv4_round_trip(repr in ipv4_repr()) {
        let mut buf = vec![0xeeu8; repr.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        prop_assert!(p.verify_checksum());
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload().len(), repr.payload_len);
    }

    #[test]
    fn ipv6_round_trip(repr in ipv6_repr()) {
        let mut buf = vec![0xeeu8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&p), Ok(repr));
    }

    #[test]
    fn udp_round_trip(
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        payload in vec(any::<u8>(), 0..300),
        pair in ip_pair(),
        with_checksum in any::<bool>(),
    ) {
        let repr = UdpRepr { src_port, dst_port, payload_len: payload.len() };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&payload);
        // IPv6 always needs one; IPv4 may go without.
        let fill = with_checksum || matches!(pair, IpPair::V6 { .. });
        if fill {
            p.fill_checksum(&pair);
            prop_assert_ne!(p.checksum(), 0);
        }
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(UdpRepr::parse(&p, &pair), Ok(repr));
        prop_assert_eq!(p.payload(), &payload[..]);
        if fill && !payload.is_empty() {
            // Any single-bit flip in the payload must be caught.
            let mut bad = buf.clone();
            bad[8] ^= 0x10;
            let p = UdpPacket::new_checked(&bad[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&p, &pair), Err(Error::BadChecksum));
        }
    }

    #[test]
    fn vxlan_round_trip(vni in 0u32..=VNI_MAX) {
        let repr = VxlanRepr { vni };
        let mut buf = [0xffu8; 8];
        repr.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
        let p = VxlanPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(VxlanRepr::parse(&p), Ok(repr));
    }

    #[test]
    fn geneve_round_trip(repr in geneve_repr(), payload in vec(any::<u8>(), 0..32)) {
        let mut buf = vec![0xffu8; repr.buffer_len() + payload.len()];
        let mut p = GenevePacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&payload);
        let p = GenevePacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.header_len(), repr.header_len());
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_eq!(GeneveRepr::parse(&p), Ok(repr));
    }

    #[test]
    fn neighbor_advert_round_trip((na, src, dst) in na_repr()) {
        let mut buf = vec![0xffu8; na.buffer_len()];
        na.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(&src, &dst));
        prop_assert_eq!(Icmpv6NeighborAdvert::parse(&p, &src, &dst), Ok(na));
    }
}
