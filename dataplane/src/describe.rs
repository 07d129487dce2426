//! One-line, human-readable summaries of frames, for logs and the demo.

use core::net::Ipv4Addr;

use ovl_common::{MetaKind, XdpMeta};
use ovl_wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, GenevePacket, IpProtocol,
    Ipv4Packet, UdpPacket, VxlanPacket,
};

/// Summarises an Ethernet frame: addresses and, where recognised, ARP, IPv4/UDP and VXLAN
/// (recursively, for the inner frame). Never fails: what cannot be parsed is said so.
pub fn frame(buf: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(buf) else {
        return format!("{} bytes, truncated Ethernet header", buf.len());
    };
    let head = format!("{} > {}", eth.src_addr(), eth.dst_addr());
    let body = match eth.ethertype() {
        EtherType::Arp => arp(eth.payload()),
        EtherType::Ipv4 => ipv4(eth.payload()),
        EtherType::Ipv6 => "IPv6".to_string(),
        other => format!("ethertype {:#06x}", u16::from(other)),
    };
    format!("{head} {body} ({} bytes)", buf.len())
}

fn arp(buf: &[u8]) -> String {
    let parsed = ArpPacket::new_checked(buf).and_then(|p| ArpRepr::parse(&p));
    match parsed {
        Ok(a) if a.operation == ArpOperation::Request => format!(
            "ARP who-has {} tell {}",
            a.target_protocol_addr, a.source_protocol_addr
        ),
        Ok(a) => format!(
            "ARP {} is-at {}",
            a.source_protocol_addr, a.source_hardware_addr
        ),
        Err(e) => format!("ARP, malformed: {e}"),
    }
}

fn ipv4(buf: &[u8]) -> String {
    let ip = match Ipv4Packet::new_checked(buf) {
        Ok(ip) => ip,
        Err(e) => return format!("IPv4, malformed: {e}"),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        IpProtocol::Udp => udp(src, dst, ip.payload()),
        IpProtocol::Icmp => format!("IPv4 {src} > {dst} ICMP"),
        IpProtocol::Tcp => format!("IPv4 {src} > {dst} TCP"),
        p => format!("IPv4 {src} > {dst} protocol {}", u8::from(p)),
    }
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, buf: &[u8]) -> String {
    let Ok(u) = UdpPacket::new_checked(buf) else {
        return format!("IPv4 {src} > {dst} UDP, malformed");
    };
    let head = format!("IPv4 {src}:{} > {dst}:{} UDP", u.src_port(), u.dst_port());
    match u.dst_port() {
        ovl_common::VXLAN_PORT | ovl_common::VXLAN_PORT_LINUX => {
            match VxlanPacket::new_checked(u.payload()) {
                Ok(vx) => format!("{head} VXLAN VNI {} [{}]", vx.vni(), frame(vx.payload())),
                Err(e) => format!("{head} VXLAN, malformed: {e}"),
            }
        }
        ovl_common::GENEVE_PORT => match GenevePacket::new_checked(u.payload()) {
            Ok(g) => format!(
                "{head} GENEVE VNI {} options {} B [{}]",
                g.vni(),
                g.options().len(),
                frame(g.payload())
            ),
            Err(e) => format!("{head} GENEVE, malformed: {e}"),
        },
        _ => head,
    }
}

/// Summarises the metadata the XDP programs put in front of a frame.
pub fn meta(m: &XdpMeta) -> String {
    let encap = match ovl_common::Encap::from_u8(m.encap) {
        Some(ovl_common::Encap::Vxlan) => "vxlan",
        Some(ovl_common::Encap::Geneve) => "geneve",
        None => "?",
    };
    let peer = ovl_common::vtep_ip(&m.peer_ip);
    match MetaKind::from_u8(m.kind) {
        Some(MetaKind::Decapped) => format!(
            "decapsulated {encap} VNI {} from {peer}:{}",
            m.vni,
            u16::from_be(m.peer_port_be)
        ),
        Some(MetaKind::Encapped) => format!("encapsulated {encap} VNI {} to {peer}", m.vni),
        Some(MetaKind::Flood) => format!("to flood on VNI {}", m.vni),
        Some(MetaKind::NoNeighbour) => {
            format!("VNI {} to {peer}, next hop unresolved", m.vni)
        }
        Some(MetaKind::TooBig) => format!("VNI {}, too big for the overlay", m.vni),
        None => format!("unknown kind {}", m.kind),
    }
}
