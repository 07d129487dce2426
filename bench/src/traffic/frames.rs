//! The frames the generator sends: one fixed template per source port, built once with
//! `ovl-wire` and never touched again while sending.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ovl_wire::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, GenevePacket, GeneveRepr, IpPair,
    IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};
use serde::{Deserialize, Serialize};

use super::GenError;

/// Ethernet header without a VLAN tag.
pub const ETH_LEN: usize = 14;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// UDP header.
pub const UDP_LEN: usize = 8;
/// VXLAN header, and GENEVE's base header (no options).
pub const TUNNEL_LEN: usize = 8;
/// What an encapsulation adds in front of the inner frame: Ethernet + IPv4 + UDP + tunnel.
pub const ENCAP_OVERHEAD: usize = ETH_LEN + IPV4_LEN + UDP_LEN + TUNNEL_LEN;
/// The shortest frame that holds Ethernet + IPv4 + UDP.
pub const MIN_FRAME_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN;
/// The longest `frame_len` accepted.
pub const MAX_FRAME_LEN: usize = 1500;
/// A 64-byte Ethernet frame without its 4-byte FCS.
pub const DEFAULT_FRAME_LEN: usize = 60;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

const TTL: u8 = 64;

/// How the test frame is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Encap {
    /// The frame itself, no tunnel.
    None,
    /// VXLAN (RFC 7348): I flag and the VNI.
    Vxlan { vni: u32 },
    /// GENEVE (RFC 8926) without options, protocol 0x6558 (Ethernet).
    Geneve { vni: u32 },
}

impl Encap {
    /// The usual destination port: 4789 for VXLAN, 6081 for GENEVE, 9 (discard) otherwise.
    pub const fn default_port(&self) -> u16 {
        match self {
            Encap::None => 9,
            Encap::Vxlan { .. } => 4789,
            Encap::Geneve { .. } => 6081,
        }
    }

    /// The tunnel's VNI, if there is a tunnel.
    pub const fn vni(&self) -> Option<u32> {
        match self {
            Encap::None => None,
            Encap::Vxlan { vni } | Encap::Geneve { vni } => Some(*vni),
        }
    }
}

/// What to send. With [`Encap::None`] the frame is Ethernet/IPv4/UDP between the outer
/// addresses; with a tunnel the *inner* frame (the `inner_*` fields) is that frame and the
/// outer addresses carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// UDP destination port of the (outer) frame: the tunnel's port when encapsulated.
    pub dst_port: u16,
    /// One template per port: the (outer) UDP source port, and the inner one when
    /// encapsulated, so flows spread over RSS queues and hash buckets.
    pub src_ports: RangeInclusive<u16>,
    pub encap: Encap,
    pub inner_src_mac: [u8; 6],
    pub inner_dst_mac: [u8; 6],
    pub inner_src_ip: Ipv4Addr,
    pub inner_dst_ip: Ipv4Addr,
    pub inner_dst_port: u16,
    /// Length without FCS of the frame being measured: the whole frame with
    /// [`Encap::None`], the inner frame otherwise (the outer one is 50 bytes longer).
    pub frame_len: usize,
}

impl FrameSpec {
    /// Unencapsulated 60-byte frames to UDP port 9 from source ports 1024-1087 (64 flows).
    /// The inner fields default to 02:00:00:00:00:01 / 192.168.0.4 sending to
    /// 02:00:00:00:00:02 / 192.168.0.10 port 9 (the lab's client and `pri` overlay IPs), for
    /// when `encap` is changed afterwards.
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Self {
        FrameSpec {
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            dst_port: Encap::None.default_port(),
            src_ports: 1024..=1087,
            encap: Encap::None,
            inner_src_mac: [0x02, 0, 0, 0, 0, 0x01],
            inner_dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            inner_src_ip: Ipv4Addr::new(192, 168, 0, 4),
            inner_dst_ip: Ipv4Addr::new(192, 168, 0, 10),
            inner_dst_port: 9,
            frame_len: DEFAULT_FRAME_LEN,
        }
    }

    /// The length of what goes on the wire (the outer frame when encapsulated).
    pub fn wire_len(&self) -> usize {
        match self.encap {
            Encap::None => self.frame_len,
            Encap::Vxlan { .. } | Encap::Geneve { .. } => self.frame_len + ENCAP_OVERHEAD,
        }
    }

    /// Checks lengths, ports and VNI.
    pub fn validate(&self) -> Result<(), GenError> {
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&self.frame_len) {
            return Err(GenError::FrameLen(self.frame_len));
        }
        if self.src_ports.is_empty() {
            return Err(GenError::EmptyPortRange);
        }
        if let Some(vni) = self.encap.vni()
            && vni > VNI_MAX
        {
            return Err(GenError::Vni(vni));
        }
        Ok(())
    }
}

/// One frame per source port of `spec.src_ports`, in port order.
pub fn build_templates(spec: &FrameSpec) -> Result<Vec<Vec<u8>>, GenError> {
    spec.validate()?;
    Ok(spec
        .src_ports
        .clone()
        .map(|port| build_one(spec, port))
        .collect())
}

fn build_one(spec: &FrameSpec, port: u16) -> Vec<u8> {
    let mut buf = vec![0u8; spec.wire_len()];
    match spec.encap {
        Encap::None => write_udp_frame(
            &mut buf,
            Endpoints {
                src_mac: spec.src_mac,
                dst_mac: spec.dst_mac,
                src_ip: spec.src_ip,
                dst_ip: spec.dst_ip,
                src_port: port,
                dst_port: spec.dst_port,
            },
            true,
        ),
        Encap::Vxlan { .. } | Encap::Geneve { .. } => {
            // The inner frame, then the outer headers over the whole buffer so that their
            // lengths include it.
            write_udp_frame(
                &mut buf[ENCAP_OVERHEAD..],
                Endpoints {
                    src_mac: spec.inner_src_mac,
                    dst_mac: spec.inner_dst_mac,
                    src_ip: spec.inner_src_ip,
                    dst_ip: spec.inner_dst_ip,
                    src_port: port,
                    dst_port: spec.inner_dst_port,
                },
                true,
            );
            write_udp_frame(
                &mut buf,
                Endpoints {
                    src_mac: spec.src_mac,
                    dst_mac: spec.dst_mac,
                    src_ip: spec.src_ip,
                    dst_ip: spec.dst_ip,
                    src_port: port,
                    dst_port: spec.dst_port,
                },
                // RFC 7348 / 8926: a zero outer UDP checksum over IPv4.
                false,
            );
            let tunnel = &mut buf[MIN_FRAME_LEN..ENCAP_OVERHEAD];
            match spec.encap {
                Encap::Vxlan { vni } => {
                    VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(tunnel));
                }
                Encap::Geneve { vni } => {
                    GeneveRepr::new(EtherType::Teb, vni)
                        .emit(&mut GenevePacket::new_unchecked(tunnel));
                }
                Encap::None => {}
            }
        }
    }
    buf
}

/// Addresses and ports of one Ethernet/IPv4/UDP frame.
struct Endpoints {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
}

/// Writes Ethernet, IPv4 (DF, TTL 64, checksum) and UDP headers over the start of `buf`; the
/// IPv4 and UDP lengths cover all of `buf`. The UDP checksum is computed over what `buf` holds
/// after the headers (zeros, or an inner frame already written) when `udp_checksum` is set.
fn write_udp_frame(buf: &mut [u8], e: Endpoints, udp_checksum: bool) {
    let ip_len = buf.len() - ETH_LEN;
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr {
        src_addr: EthernetAddress(e.src_mac),
        dst_addr: EthernetAddress(e.dst_mac),
        vlan: None,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..]);
    Ipv4Repr {
        src_addr: e.src_ip,
        dst_addr: e.dst_ip,
        protocol: IpProtocol::Udp,
        payload_len: ip_len - IPV4_LEN,
        ttl: TTL,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
    }
    .emit(&mut ip);
    let mut udp = UdpPacket::new_unchecked(&mut buf[ETH_LEN + IPV4_LEN..]);
    UdpRepr {
        src_port: e.src_port,
        dst_port: e.dst_port,
        payload_len: ip_len - IPV4_LEN - UDP_LEN,
    }
    .emit(&mut udp);
    if udp_checksum {
        udp.fill_checksum(&IpPair::V4 {
            src: e.src_ip,
            dst: e.dst_ip,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovl_wire::{EthernetFrame, GenevePacket, Ipv4Packet, UdpPacket, VxlanPacket};

    const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x00, 0x00, 0x01];
    const DST_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x00, 0x00, 0x02];

    fn spec() -> FrameSpec {
        FrameSpec {
            src_ports: 1024..=1027,
            ..FrameSpec::new(
                SRC_MAC,
                DST_MAC,
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
            )
        }
    }

    /// Parses an Ethernet/IPv4/UDP frame with ovl-wire (which verifies the IPv4 checksum,
    /// and the UDP one unless it is zero) and returns its headers and the UDP payload.
    fn parse(frame: &[u8]) -> (EthernetRepr, Ipv4Repr, UdpRepr, u16, Vec<u8>) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let eth_repr = EthernetRepr::parse(&eth).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let ip_repr = Ipv4Repr::parse(&ip).unwrap();
        let pair = IpPair::V4 {
            src: ip_repr.src_addr,
            dst: ip_repr.dst_addr,
        };
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let udp_repr = UdpRepr::parse(&udp, &pair).unwrap();
        (
            eth_repr,
            ip_repr,
            udp_repr,
            udp.checksum(),
            udp.payload().to_vec(),
        )
    }

    /// The RFC 1071 sum written independently of ovl-wire: 0xffff over a correct header.
    fn ones_complement_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u32::from);
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn plain_frame_golden_bytes() {
        let t = build_templates(&spec()).unwrap();
        assert_eq!(t.len(), 4);
        #[rustfmt::skip]
        let golden: [u8; 60] = [
            // Ethernet: dst, src, IPv4
            0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00,
            // IPv4: 45 00, total 46, ident 0, DF, TTL 64, UDP, checksum, 10.0.0.1 -> 10.0.0.2
            0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xbd,
            0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
            // UDP: 1024 -> 9, length 26, checksum
            0x04, 0x00, 0x00, 0x09, 0x00, 0x1a, 0xe7, 0xae,
            // 18 bytes of zero payload
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(t[0], golden);
        // The checksums verify by an independent sum too.
        assert_eq!(ones_complement_sum(&t[0][14..34]), 0xffff);
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 26];
        pseudo.extend_from_slice(&t[0][34..60]);
        assert_eq!(ones_complement_sum(&pseudo), 0xffff);

        let (eth, ip, udp, csum, payload) = parse(&t[0]);
        assert_eq!(eth.src_addr.0, SRC_MAC);
        assert_eq!(eth.dst_addr.0, DST_MAC);
        assert_eq!(eth.ethertype, EtherType::Ipv4);
        assert_eq!(ip.src_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dst_addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            (ip.ttl, ip.dont_frag, ip.protocol),
            (64, true, IpProtocol::Udp)
        );
        assert_eq!(ip.payload_len, 60 - 14 - 20);
        assert_eq!((udp.src_port, udp.dst_port, udp.payload_len), (1024, 9, 18));
        assert_ne!(csum, 0, "plain frames carry a real UDP checksum");
        assert_eq!(payload, vec![0u8; 18]);
    }

    #[test]
    fn ports_vary_per_template_and_nothing_else_does() {
        let t = build_templates(&spec()).unwrap();
        for (i, frame) in t.iter().enumerate() {
            let (_, _, udp, _, _) = parse(frame);
            assert_eq!(udp.src_port, 1024 + i as u16);
            assert_eq!(udp.dst_port, 9);
            // Only the source port and the UDP checksum differ from the first template.
            let differ: Vec<usize> = (0..60).filter(|&b| frame[b] != t[0][b]).collect();
            assert!(
                differ.iter().all(|b| [34, 35, 40, 41].contains(b)),
                "{differ:?}"
            );
        }
    }

    #[test]
    fn vxlan_frame_layout() {
        let s = FrameSpec {
            encap: Encap::Vxlan { vni: 0x0a0b0c },
            dst_port: 4789,
            inner_dst_port: 7777,
            ..spec()
        };
        let t = build_templates(&s).unwrap();
        assert_eq!(t.len(), 4);
        for (i, frame) in t.iter().enumerate() {
            let port = 1024 + i as u16;
            assert_eq!(frame.len(), 110);
            // Outer headers at their offsets.
            assert_eq!(&frame[0..6], &DST_MAC);
            assert_eq!(&frame[6..12], &SRC_MAC);
            assert_eq!(&frame[12..14], &[0x08, 0x00]);
            assert_eq!(frame[14], 0x45);
            assert_eq!(
                &frame[16..18],
                &96u16.to_be_bytes(),
                "outer IPv4 total length"
            );
            assert_eq!(&frame[20..22], &[0x40, 0x00], "DF");
            assert_eq!((frame[22], frame[23]), (64, 17));
            assert_eq!(ones_complement_sum(&frame[14..34]), 0xffff);
            assert_eq!(&frame[26..30], &[10, 0, 0, 1]);
            assert_eq!(&frame[30..34], &[10, 0, 0, 2]);
            assert_eq!(
                &frame[34..36],
                &port.to_be_bytes(),
                "outer source port varies"
            );
            assert_eq!(&frame[36..38], &4789u16.to_be_bytes());
            assert_eq!(&frame[38..40], &76u16.to_be_bytes(), "outer UDP length");
            assert_eq!(&frame[40..42], &[0, 0], "outer UDP checksum is zero");
            // VXLAN: I flag, reserved zero, VNI, reserved zero.
            assert_eq!(&frame[42..50], &[0x08, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0]);

            let (_, oip, oudp, ocsum, payload) = parse(frame);
            assert_eq!((oip.src_addr, oip.dst_addr), (s.src_ip, s.dst_ip));
            assert_eq!((oudp.src_port, oudp.dst_port, ocsum), (port, 4789, 0));
            let vx = VxlanPacket::new_checked(&payload[..]).unwrap();
            assert_eq!(VxlanRepr::parse(&vx).unwrap().vni, 0x0a0b0c);

            // The inner frame is the 60-byte frame with the inner addresses.
            let inner = &frame[50..];
            assert_eq!(inner.len(), 60);
            let (ieth, iip, iudp, icsum, ipayload) = parse(inner);
            assert_eq!(ieth.src_addr.0, s.inner_src_mac);
            assert_eq!(ieth.dst_addr.0, s.inner_dst_mac);
            assert_eq!(
                (iip.src_addr, iip.dst_addr),
                (s.inner_src_ip, s.inner_dst_ip)
            );
            assert_eq!(iip.payload_len, 46 - 20);
            assert_eq!((iudp.src_port, iudp.dst_port), (port, 7777));
            assert_ne!(icsum, 0);
            assert_eq!(ipayload, vec![0u8; 18]);
        }
    }

    #[test]
    fn vxlan_golden_bytes() {
        let s = FrameSpec {
            encap: Encap::Vxlan { vni: 10 },
            dst_port: 4789,
            src_ports: 49152..=49152,
            ..spec()
        };
        let t = build_templates(&s).unwrap();
        #[rustfmt::skip]
        let golden: [u8; 110] = [
            0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x60, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0x8b,
            0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
            0xc0, 0x00, 0x12, 0xb5, 0x00, 0x4c, 0x00, 0x00,
            0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00,
            // inner: 02:00:00:00:00:02 <- 02:00:00:00:00:01, IPv4
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            // 192.168.0.4 -> 192.168.0.10
            0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb9, 0x60,
            0xc0, 0xa8, 0x00, 0x04, 0xc0, 0xa8, 0x00, 0x0a,
            // 49152 -> 9, length 26
            0xc0, 0x00, 0x00, 0x09, 0x00, 0x1a, 0xbe, 0x51,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(t[0], golden);
        assert_eq!(ones_complement_sum(&t[0][64..84]), 0xffff);
    }

    #[test]
    fn geneve_frame_layout() {
        let s = FrameSpec {
            encap: Encap::Geneve { vni: 0x123456 },
            dst_port: 6081,
            ..spec()
        };
        let t = build_templates(&s).unwrap();
        for (i, frame) in t.iter().enumerate() {
            let port = 1024 + i as u16;
            assert_eq!(frame.len(), 110);
            assert_eq!(&frame[34..36], &port.to_be_bytes());
            assert_eq!(&frame[36..38], &6081u16.to_be_bytes());
            assert_eq!(&frame[40..42], &[0, 0]);
            // GENEVE: version 0, no options, no flags, protocol 0x6558, VNI, reserved.
            assert_eq!(&frame[42..50], &[0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0]);
            let (_, _, _, _, payload) = parse(frame);
            let g = GenevePacket::new_checked(&payload[..]).unwrap();
            let repr = GeneveRepr::parse(&g).unwrap();
            assert_eq!(repr.vni, 0x123456);
            assert_eq!(repr.protocol, EtherType::Teb);
            assert!(repr.options().is_empty() && !repr.oam && !repr.critical);
            assert_eq!(g.payload().len(), 60);
            let (ieth, _, iudp, _, _) = parse(g.payload());
            assert_eq!(ieth.dst_addr.0, s.inner_dst_mac);
            assert_eq!((iudp.src_port, iudp.dst_port), (port, 9));
        }
        // Same inner frame as VXLAN: only the tunnel header and port differ.
        let vx = build_templates(&FrameSpec {
            encap: Encap::Vxlan { vni: 0x123456 },
            ..s.clone()
        })
        .unwrap();
        assert_eq!(vx[2][50..], t[2][50..]);
    }

    #[test]
    fn lengths_follow_frame_len() {
        for len in [MIN_FRAME_LEN, 60, 61, 128, MAX_FRAME_LEN] {
            let plain = build_templates(&FrameSpec {
                frame_len: len,
                ..spec()
            })
            .unwrap();
            assert_eq!(plain[0].len(), len);
            let (_, ip, udp, _, _) = parse(&plain[0]);
            assert_eq!(ip.payload_len, len - 34);
            assert_eq!(udp.payload_len, len - 42);
            let vx = build_templates(&FrameSpec {
                frame_len: len,
                encap: Encap::Vxlan { vni: 1 },
                ..spec()
            })
            .unwrap();
            assert_eq!(vx[0].len(), len + 50);
            let (_, iip, _, _, _) = parse(&vx[0][50..]);
            assert_eq!(iip.payload_len, len - 34);
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for len in [0, 41, 1501, 9000] {
            let s = FrameSpec {
                frame_len: len,
                ..spec()
            };
            assert!(
                matches!(build_templates(&s), Err(GenError::FrameLen(l)) if l == len),
                "{len}"
            );
        }
        #[allow(clippy::reversed_empty_ranges)]
        let s = FrameSpec {
            src_ports: 2000..=1999,
            ..spec()
        };
        assert!(matches!(build_templates(&s), Err(GenError::EmptyPortRange)));
        let s = FrameSpec {
            encap: Encap::Geneve { vni: 1 << 24 },
            ..spec()
        };
        assert!(matches!(build_templates(&s), Err(GenError::Vni(v)) if v == 1 << 24));
        // A single port and the full range both work.
        let s = FrameSpec {
            src_ports: 7..=7,
            ..spec()
        };
        assert_eq!(build_templates(&s).unwrap().len(), 1);
        let s = FrameSpec {
            src_ports: 0..=u16::MAX,
            ..spec()
        };
        assert_eq!(build_templates(&s).unwrap().len(), 65536);
    }
}
