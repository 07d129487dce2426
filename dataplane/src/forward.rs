//! What a worker does with each frame it receives: a pure decision from the frame's metadata
//! (and, for learning, its source MAC), so it is tested without sockets. The worker carries the
//! decision out (`worker.rs`).

use std::net::IpAddr;

use ovl_common::{META_FLAG_LEARN, MetaKind, XdpMeta};

use crate::stats::WorkerDrop;

/// The worker's action for one received frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Decapsulated: deliver to overlay port `port` (index into the worker's ports); `learn`:
    /// report this source behind this VTEP to the control thread first.
    Deliver { port: usize, learn: Option<Learn> },
    /// Encapsulated by the program: transmit on the underlay as it is.
    Transmit,
    /// Broadcast, multicast or unknown unicast: one encapsulated copy per VTEP of the port's
    /// flood list.
    Flood,
    /// Known unicast whose next hop the program did not have: encapsulate for `remote`.
    Encapsulate { remote: IpAddr },
    /// Too big with DF: answer the sender with ICMP "fragmentation needed".
    AnswerTooBig,
    /// Counted drop.
    Drop(WorkerDrop),
}

/// A source to learn: inner MAC `mac` of VNI `vni` behind VTEP `remote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learn {
    pub vni: u32,
    pub mac: [u8; 6],
    pub remote: IpAddr,
}

/// A frame from the underlay socket: `meta` as the ingress program left it, `port_vnis` the
/// worker's overlay ports' VNIs in order, `frame` the decapsulated inner frame.
pub fn from_underlay(meta: Option<XdpMeta>, port_vnis: &[u32], frame: &[u8]) -> Forward {
    let Some(meta) = meta.filter(|m| m.kind == MetaKind::Decapped as u8) else {
        return Forward::Drop(WorkerDrop::BadMeta);
    };
    let Some(port) = port_vnis.iter().position(|v| *v == meta.vni) else {
        return Forward::Drop(WorkerDrop::UnknownVni);
    };
    // Known sources are not flagged: the program already refreshed their stamp.
    let learn = match frame.get(6..12) {
        Some(src) if meta.flags & META_FLAG_LEARN != 0 => {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(src);
            Some(Learn {
                vni: meta.vni,
                mac,
                remote: ovl_common::vtep_ip(&meta.peer_ip),
            })
        }
        _ => None,
    };
    Forward::Deliver { port, learn }
}

/// A frame from an overlay port's socket, as the egress program marked it.
pub fn from_port(meta: Option<XdpMeta>) -> Forward {
    let Some(meta) = meta else {
        return Forward::Drop(WorkerDrop::BadMeta);
    };
    match MetaKind::from_u8(meta.kind) {
        Some(MetaKind::Encapped) => Forward::Transmit,
        Some(MetaKind::Flood) => Forward::Flood,
        Some(MetaKind::TooBig) => Forward::AnswerTooBig,
        Some(MetaKind::NoNeighbour) => Forward::Encapsulate {
            remote: ovl_common::vtep_ip(&meta.peer_ip),
        },
        Some(MetaKind::Decapped) | None => Forward::Drop(WorkerDrop::BadMeta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovl_common::XDP_META_MAGIC;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 2));

    fn meta(kind: MetaKind, vni: u32, flags: u16) -> XdpMeta {
        XdpMeta {
            magic: XDP_META_MAGIC,
            kind: kind as u8,
            encap: 0,
            vni,
            peer_ip: ovl_common::vtep_addr(PEER),
            peer_port_be: 0,
            flags,
        }
    }

    fn frame(src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend(src);
        f.extend([0x08, 0x00]);
        f
    }

    #[test]
    fn decapsulated_frames_go_to_their_port_and_flagged_sources_are_learned() {
        let src = [0x02, 0, 0, 0, 0, 4];
        let ports = [10, 20];
        assert_eq!(
            from_underlay(Some(meta(MetaKind::Decapped, 20, 0)), &ports, &frame(src)),
            Forward::Deliver {
                port: 1,
                learn: None
            }
        );
        assert_eq!(
            from_underlay(
                Some(meta(MetaKind::Decapped, 10, META_FLAG_LEARN)),
                &ports,
                &frame(src)
            ),
            Forward::Deliver {
                port: 0,
                learn: Some(Learn {
                    vni: 10,
                    mac: src,
                    remote: PEER
                })
            }
        );
        // Too short to carry a source: delivered (the kernel judges it), nothing learned.
        assert_eq!(
            from_underlay(
                Some(meta(MetaKind::Decapped, 10, META_FLAG_LEARN)),
                &ports,
                &[0u8; 11]
            ),
            Forward::Deliver {
                port: 0,
                learn: None
            }
        );
    }

    #[test]
    fn bad_underlay_metadata_is_a_counted_drop() {
        let ports = [10];
        let f = frame([2, 0, 0, 0, 0, 1]);
        assert_eq!(
            from_underlay(None, &ports, &f),
            Forward::Drop(WorkerDrop::BadMeta)
        );
        for kind in [MetaKind::Encapped, MetaKind::Flood, MetaKind::TooBig] {
            assert_eq!(
                from_underlay(Some(meta(kind, 10, 0)), &ports, &f),
                Forward::Drop(WorkerDrop::BadMeta),
                "{kind:?} never comes from the underlay"
            );
        }
        assert_eq!(
            from_underlay(Some(meta(MetaKind::Decapped, 99, 0)), &ports, &f),
            Forward::Drop(WorkerDrop::UnknownVni)
        );
    }

    #[test]
    fn port_frames_follow_the_egress_programs_mark() {
        assert_eq!(
            from_port(Some(meta(MetaKind::Encapped, 10, 0))),
            Forward::Transmit
        );
        assert_eq!(
            from_port(Some(meta(MetaKind::Flood, 10, 0))),
            Forward::Flood
        );
        assert_eq!(
            from_port(Some(meta(MetaKind::TooBig, 10, 0))),
            Forward::AnswerTooBig
        );
        assert_eq!(
            from_port(Some(meta(MetaKind::NoNeighbour, 10, 0))),
            Forward::Encapsulate { remote: PEER }
        );
        assert_eq!(
            from_port(Some(meta(MetaKind::Decapped, 10, 0))),
            Forward::Drop(WorkerDrop::BadMeta)
        );
        assert_eq!(from_port(None), Forward::Drop(WorkerDrop::BadMeta));
        let mut unknown = meta(MetaKind::Flood, 10, 0);
        unknown.kind = 77;
        assert_eq!(from_port(Some(unknown)), Forward::Drop(WorkerDrop::BadMeta));
    }
}
