//! Hand-written packets, with checksums worked out independently of this crate, parsed to the
//! expected representations and emitted back to the same bytes.

mod common;

use core::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use ovl_common::{ETH_HLEN, GENEVE_PORT, IPV4_HLEN, IPV6_HLEN, UDP_HLEN, VXLAN_HLEN, VXLAN_PORT};
use ovl_wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    GeneveOption, GenevePacket, GeneveRepr, Icmpv6NeighborAdvert, Icmpv6Packet, IpPair, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VlanTag, VxlanPacket,
    VxlanRepr, icmpv6,
};

const OUTER_DST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OUTER_SRC_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
const VIP_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xaa]);

#[test]
fn ipv4_classic_header() {
    let mut buf = [0u8; 0x73];
    buf[..20].copy_from_slice(&IPV4_CLASSIC);
    let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(packet.checksum(), 0xb861);
    assert!(packet.verify_checksum());
    assert_eq!(packet.payload().len(), 0x73 - 20);
    let repr = Ipv4Repr::parse(&packet).unwrap();
    assert_eq!(
        repr,
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: IpProtocol::Udp,
            payload_len: 95,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
        }
    );
    assert_eq!(repr.buffer_len(), 0x73);

    // Emitting over garbage must overwrite every header byte, checksum included.
    let mut out = [0xa5u8; 20];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    assert_eq!(out, IPV4_CLASSIC);

    let mut refill = IPV4_CLASSIC;
    let mut p = Ipv4Packet::new_unchecked(&mut refill[..]);
    p.set_checksum(0);
    p.fill_checksum();
    assert_eq!(p.checksum(), 0xb861);
}

#[test]
fn vxlan_encapsulated_arp_request() {
    let frame = EthernetFrame::new_checked(&VXLAN_ARP[..]).unwrap();
    let eth = EthernetRepr::parse(&frame).unwrap();
    assert_eq!(
        eth,
        EthernetRepr {
            src_addr: OUTER_SRC_MAC,
            dst_addr: OUTER_DST_MAC,
            vlan: None,
            ethertype: EtherType::Ipv4,
        }
    );

    let ip_packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
    let ip = Ipv4Repr::parse(&ip_packet).unwrap();
    assert_eq!(
        ip,
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Udp,
            payload_len: 58,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0x1234,
            dont_frag: true,
        }
    );
    let pair = IpPair::V4 {
        src: ip.src_addr,
        dst: ip.dst_addr,
    };

    let udp_packet = UdpPacket::new_checked(ip_packet.payload()).unwrap();
    assert_eq!(udp_packet.checksum(), 0);
    let udp = UdpRepr::parse(&udp_packet, &pair).unwrap();
    assert_eq!(
        udp,
        UdpRepr {
            src_port: 50085,
            dst_port: VXLAN_PORT,
            payload_len: 50,
        }
    );

    let vxlan_packet = VxlanPacket::new_checked(udp_packet.payload()).unwrap();
    let vxlan = VxlanRepr::parse(&vxlan_packet).unwrap();
    assert_eq!(vxlan, VxlanRepr { vni: 100 });

    let inner_frame = EthernetFrame::new_checked(vxlan_packet.payload()).unwrap();
    let inner = EthernetRepr::parse(&inner_frame).unwrap();
    let inner_mac = EthernetAddress([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
    assert_eq!(
        inner,
        EthernetRepr {
            src_addr: inner_mac,
            dst_addr: EthernetAddress::BROADCAST,
            vlan: None,
            ethertype: EtherType::Arp,
        }
    );

    let arp_packet = ArpPacket::new_checked(inner_frame.payload()).unwrap();
    let arp = ArpRepr::parse(&arp_packet).unwrap();
    assert_eq!(
        arp,
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: inner_mac,
            source_protocol_addr: Ipv4Addr::new(192, 168, 10, 1),
            target_hardware_addr: EthernetAddress::ZERO,
            target_protocol_addr: Ipv4Addr::new(192, 168, 10, 2),
        }
    );
    assert!(!arp.is_gratuitous());

    // Rebuild the whole frame from the representations, as the encapsulation path would.
    let mut out = [0u8; 92];
    let mut off = 0;
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[off..]));
    off += eth.buffer_len();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[off..]));
    off += ip.header_len();
    udp.emit(&mut UdpPacket::new_unchecked(&mut out[off..]));
    off += udp.header_len();
    vxlan.emit(&mut VxlanPacket::new_unchecked(&mut out[off..]));
    off += vxlan.buffer_len();
    inner.emit(&mut EthernetFrame::new_unchecked(&mut out[off..]));
    off += inner.buffer_len();
    arp.emit(&mut ArpPacket::new_unchecked(&mut out[off..]));
    off += arp.buffer_len();
    assert_eq!(off, out.len());
    assert_eq!(out, VXLAN_ARP);
    assert_eq!(
        ip.buffer_len(),
        IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN + 28
    );
}

#[test]
fn geneve_frame_with_critical_option() {
    let frame = EthernetFrame::new_checked(&GENEVE_OPT_ICMP[..]).unwrap();
    let eth = EthernetRepr::parse(&frame).unwrap();
    let ip_packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
    let ip = Ipv4Repr::parse(&ip_packet).unwrap();
    assert_eq!(ip.dst_addr, Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(ip.ident, 0);
    let pair = IpPair::V4 {
        src: ip.src_addr,
        dst: ip.dst_addr,
    };
    let udp_packet = UdpPacket::new_checked(ip_packet.payload()).unwrap();
    let udp = UdpRepr::parse(&udp_packet, &pair).unwrap();
    assert_eq!(udp.dst_port, GENEVE_PORT);

    let gp = GenevePacket::new_checked(udp_packet.payload()).unwrap();
    assert_eq!(gp.opt_len(), 2);
    assert_eq!(gp.header_len(), 16);
    assert_eq!(
        gp.options(),
        &[0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]
    );
    let geneve = GeneveRepr::parse(&gp).unwrap();
    let mut expected = GeneveRepr::new(EtherType::Teb, 0x1234);
    expected
        .push_option(GeneveOption::new(0x0102, 0x80, &[0xde, 0xad, 0xbe, 0xef]).unwrap())
        .unwrap();
    assert!(
        expected.critical,
        "push_option sets C for a critical option"
    );
    assert_eq!(geneve, expected);
    assert!(geneve.has_critical_options());
    assert!(!geneve.oam);

    let inner_frame = EthernetFrame::new_checked(gp.payload()).unwrap();
    let inner = EthernetRepr::parse(&inner_frame).unwrap();
    assert_eq!(inner.ethertype, EtherType::Ipv4);
    let inner_ip_packet = Ipv4Packet::new_checked(inner_frame.payload()).unwrap();
    let inner_ip = Ipv4Repr::parse(&inner_ip_packet).unwrap();
    assert_eq!(inner_ip.protocol, IpProtocol::Icmp);
    assert!(!inner_ip.dont_frag);
    assert_eq!(inner_ip.src_addr, Ipv4Addr::new(172, 17, 0, 2));

    let mut out = [0u8; 100];
    let mut off = 0;
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[off..]));
    off += eth.header_len();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[off..]));
    off += ip.header_len();
    udp.emit(&mut UdpPacket::new_unchecked(&mut out[off..]));
    off += udp.header_len();
    geneve.emit(&mut GenevePacket::new_unchecked(&mut out[off..]));
    off += geneve.buffer_len();
    inner.emit(&mut EthernetFrame::new_unchecked(&mut out[off..]));
    off += inner.header_len();
    inner_ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[off..]));
    off += inner_ip.header_len();
    out[off..].copy_from_slice(inner_ip_packet.payload());
    assert_eq!(out, GENEVE_OPT_ICMP);
}

#[test]
fn geneve_without_options() {
    let gp = GenevePacket::new_checked(&GENEVE_NO_OPT[..]).unwrap();
    assert_eq!(gp.version(), 0);
    assert_eq!(gp.header_len(), 8);
    assert!(gp.options().is_empty());
    assert_eq!(gp.options_iter().count(), 0);
    assert_eq!(gp.payload(), &GENEVE_NO_OPT[8..]);
    let repr = GeneveRepr::parse(&gp).unwrap();
    assert_eq!(repr, GeneveRepr::new(EtherType::Teb, 10));
    assert!(!repr.critical && !repr.has_critical_options());

    let mut out = [0xffu8; 22];
    repr.emit(&mut GenevePacket::new_unchecked(&mut out[..]));
    out[8..].copy_from_slice(&GENEVE_NO_OPT[8..]);
    assert_eq!(out, GENEVE_NO_OPT);
}

#[test]
fn geneve_two_options_iterate_in_order() {
    let gp = GenevePacket::new_checked(&GENEVE_TWO_OPTS[..]).unwrap();
    assert_eq!(gp.vni(), 0xabcdef);
    let opts: Vec<_> = gp.options_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(opts.len(), 2);
    assert_eq!((opts[0].class, opts[0].opt_type), (0xffff, 0x01));
    assert!(opts[0].data.is_empty());
    assert_eq!((opts[1].class, opts[1].opt_type), (0x0103, 0x05));
    assert_eq!(opts[1].reserved, 0b111);
    assert_eq!(
        opts[1].data,
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    assert!(opts.iter().all(|o| !o.is_critical()));
    assert!(gp.payload().is_empty());

    let repr = GeneveRepr::parse(&gp).unwrap();
    assert_eq!(repr.options().len(), 2);
    assert_eq!(repr.options_len(), 16);
    let mut out = [0u8; 24];
    repr.emit(&mut GenevePacket::new_unchecked(&mut out[..]));
    // Same bytes except the option's reserved bits, which are written as zero.
    let mut expected = GENEVE_TWO_OPTS;
    expected[15] = 0x02;
    assert_eq!(out, expected);
}

#[test]
fn gratuitous_arp_request_and_reply() {
    let vip = Ipv4Addr::new(192, 168, 1, 100);
    for (bytes, repr) in [
        (GARP_REQUEST, ArpRepr::gratuitous_request(VIP_MAC, vip)),
        (GARP_REPLY, ArpRepr::gratuitous_reply(VIP_MAC, vip)),
    ] {
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let eth = EthernetRepr::parse(&frame).unwrap();
        assert!(eth.dst_addr.is_broadcast());
        assert_eq!(eth.src_addr, VIP_MAC);
        assert_eq!(eth.ethertype, EtherType::Arp);
        let arp_packet = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(arp_packet.hardware_len(), 6);
        assert_eq!(arp_packet.source_protocol_addr(), &[192, 168, 1, 100]);
        let parsed = ArpRepr::parse(&arp_packet).unwrap();
        assert_eq!(parsed, repr);
        assert!(parsed.is_gratuitous());

        let mut out = [0u8; 42];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[ETH_HLEN..]));
        assert_eq!(out, bytes);
    }
}

#[test]
fn vlan_tagged_frame() {
    let frame = EthernetFrame::new_checked(&VLAN_GARP[..]).unwrap();
    assert!(frame.is_vlan_tagged());
    assert_eq!(frame.vlan_id(), Some(100));
    assert_eq!(frame.vlan_tci(), Some(0xa064));
    assert_eq!(frame.header_len(), 18);
    assert_eq!(frame.ethertype(), EtherType::Arp);
    assert_eq!(frame.payload(), &GARP_REQUEST[ETH_HLEN..]);
    let repr = EthernetRepr::parse(&frame).unwrap();
    assert_eq!(
        repr.vlan,
        Some(VlanTag {
            pcp: 5,
            dei: false,
            vid: 100
        })
    );
    assert_eq!(repr.header_len(), 18);
    let mut out = [0u8; 46];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    out[18..].copy_from_slice(&GARP_REQUEST[ETH_HLEN..]);
    assert_eq!(out, VLAN_GARP);

    let untagged = EthernetFrame::new_checked(&GARP_REQUEST[..]).unwrap();
    assert_eq!(untagged.vlan_id(), None);
    assert_eq!(untagged.header_len(), 14);
}

#[test]
fn udp_over_ipv4_with_checksum() {
    let pair = IpPair::V4 {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(198, 51, 100, 7),
    };
    let packet = UdpPacket::new_checked(&UDP4_CSUM[..]).unwrap();
    assert_eq!(packet.checksum(), 0x5661);
    assert!(packet.verify_checksum(&pair));
    assert_eq!(packet.payload(), b"hello, overlay!");
    let repr = UdpRepr::parse(&packet, &pair).unwrap();
    assert_eq!(
        repr,
        UdpRepr {
            src_port: 53000,
            dst_port: 7777,
            payload_len: 15,
        }
    );

    let mut out = [0u8; 23];
    let mut p = UdpPacket::new_unchecked(&mut out[..]);
    repr.emit(&mut p);
    assert_eq!(p.checksum(), 0, "emit leaves the checksum as none");
    p.payload_mut().copy_from_slice(b"hello, overlay!");
    p.fill_checksum(&pair);
    assert_eq!(out, UDP4_CSUM);

    // The same datagram between other addresses does not verify.
    let other = IpPair::V4 {
        src: Ipv4Addr::new(192, 0, 2, 2),
        dst: Ipv4Addr::new(198, 51, 100, 7),
    };
    assert!(!packet.verify_checksum(&other));
}

#[test]
fn udp_over_ipv6() {
    let ip_packet = Ipv6Packet::new_checked(&IPV6_UDP[..]).unwrap();
    let ip = Ipv6Repr::parse(&ip_packet).unwrap();
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    assert_eq!(
        ip,
        Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 22,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    );
    let pair = IpPair::V6 { src, dst };
    let udp_packet = UdpPacket::new_checked(ip_packet.payload()).unwrap();
    assert_eq!(udp_packet.checksum(), 0x1dfb);
    let udp = UdpRepr::parse(&udp_packet, &pair).unwrap();
    assert_eq!(
        udp,
        UdpRepr {
            src_port: 49200,
            dst_port: GENEVE_PORT,
            payload_len: 14,
        }
    );

    let mut out = [0u8; 62];
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    let mut p = UdpPacket::new_unchecked(&mut out[IPV6_HLEN..]);
    udp.emit(&mut p);
    p.payload_mut().copy_from_slice(udp_packet.payload());
    p.fill_checksum(&pair);
    assert_eq!(out, IPV6_UDP);
}

#[test]
fn unsolicited_neighbor_advertisement() {
    let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let frame = EthernetFrame::new_checked(&UNSOLICITED_NA[..]).unwrap();
    let eth = EthernetRepr::parse(&frame).unwrap();
    assert_eq!(
        eth.dst_addr,
        EthernetAddress::from_ipv6_multicast(&icmpv6::ALL_NODES)
    );
    assert!(eth.dst_addr.is_multicast());
    let ip_packet = Ipv6Packet::new_checked(frame.payload()).unwrap();
    let ip = Ipv6Repr::parse(&ip_packet).unwrap();
    assert_eq!(ip.next_header, IpProtocol::Icmpv6);
    assert_eq!(ip.hop_limit, icmpv6::NDP_HOP_LIMIT);
    assert_eq!(ip.src_addr, vip);
    assert_eq!(ip.dst_addr, icmpv6::ALL_NODES);

    let icmp = Icmpv6Packet::new_checked(ip_packet.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmpv6::TYPE_NEIGHBOR_ADVERT);
    assert_eq!(icmp.checksum(), 0xf863);
    assert!(icmp.verify_checksum(&ip.src_addr, &ip.dst_addr));
    let na = Icmpv6NeighborAdvert::parse(&icmp, &ip.src_addr, &ip.dst_addr).unwrap();
    assert_eq!(na, Icmpv6NeighborAdvert::unsolicited(vip, VIP_MAC));
    assert!(na.override_flag && !na.solicited && !na.router);
    assert_eq!(na.buffer_len(), 32);

    let mut out = [0u8; 86];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[ETH_HLEN..]));
    let start = ETH_HLEN + IPV6_HLEN;
    na.emit(
        &mut Icmpv6Packet::new_unchecked(&mut out[start..start + na.buffer_len()]),
        &ip.src_addr,
        &ip.dst_addr,
    );
    assert_eq!(out, UNSOLICITED_NA);
}
