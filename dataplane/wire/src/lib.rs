//! Wire formats of the overlay data plane, as typed views over byte buffers.
//!
//! Each protocol module follows the same shape:
//!
//! - a view (`Frame`/`Packet`) over any `T: AsRef<[u8]>`, built with `new_unchecked` (no checks;
//!   accessors may panic on a short buffer) or `new_checked` (checks the buffer holds the header
//!   and everything its length fields declare, so accessors cannot panic); getters, setters when
//!   `T: AsMut<[u8]>`, and `payload()`;
//! - a `Repr`, the header's meaning as plain values: `Repr::parse` validates a view (versions,
//!   checksums, reserved bits, unsupported features) and `Repr::emit` writes one back, filling
//!   checksums where the header has one.
//!
//! Parsing never panics and never indexes out of bounds, whatever the input: every parse path
//! goes through the same length checks as `new_checked`.
//!
//! Constants shared with the XDP programs (EtherTypes, ports, header lengths) come from
//! `ovl-common`; this crate only adds the ones the programs do not need.
//!
//! ```
//! use core::net::Ipv4Addr;
//! use ovl_wire::{ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
//!
//! // Build a gratuitous ARP request for a VIP that moved to this host ...
//! let mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
//! let vip = Ipv4Addr::new(192, 168, 1, 100);
//! let eth = EthernetRepr {
//!     src_addr: mac,
//!     dst_addr: EthernetAddress::BROADCAST,
//!     vlan: None,
//!     ethertype: EtherType::Arp,
//! };
//! let arp = ArpRepr::gratuitous_request(mac, vip);
//! let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
//! let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
//! eth.emit(&mut frame);
//! arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
//!
//! // ... and read it back.
//! let frame = EthernetFrame::new_checked(&buf[..])?;
//! assert_eq!(EthernetRepr::parse(&frame)?, eth);
//! let parsed = ArpRepr::parse(&ArpPacket::new_checked(frame.payload())?)?;
//! assert!(parsed.is_gratuitous());
//! # Ok::<(), ovl_wire::Error>(())
//! ```
#![no_std]

extern crate alloc;

pub mod arp;
pub mod checksum;
pub mod error;
pub mod ethernet;
pub mod geneve;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod vxlan;

pub use arp::{Operation as ArpOperation, Packet as ArpPacket, Repr as ArpRepr};
pub use checksum::IpPair;
pub use error::{Error, Result};
pub use ethernet::{
    EtherType, EthernetAddress, Frame as EthernetFrame, Repr as EthernetRepr, VlanTag,
};
pub use geneve::{
    GeneveOption, OptionRef as GeneveOptionRef, Options as GeneveOptions, Packet as GenevePacket,
    Repr as GeneveRepr,
};
pub use icmpv6::{
    NdpOption, NdpOptions, NeighborAdvert as Icmpv6NeighborAdvert, Packet as Icmpv6Packet,
    Repr as Icmpv6Repr,
};
pub use ip::IpProtocol;
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};
pub use vxlan::{Packet as VxlanPacket, Repr as VxlanRepr};

/// Reads a big-endian u16 at `off`; callers have checked the length.
pub(crate) fn get_u16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([buf[off], buf[off + 1]])
}

/// Writes a big-endian u16 at `off`.
pub(crate) fn set_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Reads a big-endian 24-bit value at `off` (VNIs).
pub(crate) fn get_u24(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([0, buf[off], buf[off + 1], buf[off + 2]])
}

/// Writes the low 24 bits of `v` big-endian at `off`.
pub(crate) fn set_u24(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}
