//! IPv6 fixed headers (RFC 8200). Extension headers are left to the caller: the next header
//! is reported as is and the payload starts right after the fixed header.

use core::net::Ipv6Addr;

use ovl_common::IPV6_HLEN;

use crate::ip::IpProtocol;
use crate::{Error, Result, set_u16};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A read/write view of an IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds the fixed header and the payload length it declares. A longer
    /// buffer is fine (Ethernet padding); [`payload`](Self::payload) ends at the payload length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < IPV6_HLEN || len < IPV6_HLEN + usize::from(self.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn buf(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn word0(&self) -> u32 {
        let b = self.buf();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        self.buf()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    /// Flow label, 20 bits.
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        // get() because check_len calls this on buffers of any length.
        match self.buf().get(field::PAYLOAD_LEN..field::PAYLOAD_LEN + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buf()[field::NEXT_HEADER])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf()[field::HOP_LIMIT]
    }

    fn addr(&self, off: usize) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf()[off..off + 16]);
        Ipv6Addr::from(a)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr(field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr(field::DST)
    }

    /// The payload, `payload_len` bytes after the fixed header.
    pub fn payload(&self) -> &[u8] {
        &self.buf()[IPV6_HLEN..IPV6_HLEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_word0(&mut self, v: u32) {
        self.buffer.as_mut()[..4].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let w = (self.word0() & 0x0fff_ffff) | (u32::from(v & 0x0f) << 28);
        self.set_word0(w);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, v: u8) {
        let w = (self.word0() & 0xf00f_ffff) | (u32::from(v) << 20);
        self.set_word0(w);
    }

    /// Sets the flow label (low 20 bits of `v`).
    pub fn set_flow_label(&mut self, v: u32) {
        let w = (self.word0() & 0xfff0_0000) | (v & 0x000f_ffff);
        self.set_word0(w);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, v: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a.octets());
    }

    /// Mutable payload, `payload_len` bytes after the fixed header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = IPV6_HLEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[IPV6_HLEN..end]
    }
}

/// A parsed IPv6 fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length, at most 65535 (jumbograms are not supported).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label, 20 bits.
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header; `BadVersion` unless the version is 6.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::BadVersion(packet.version()));
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// 40.
    pub const fn header_len(&self) -> usize {
        IPV6_HLEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        IPV6_HLEN + self.payload_len
    }

    /// Writes the fixed header. `payload_len` above 65535 is clamped; the flow label keeps its
    /// low 20 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_word0(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff),
        );
        packet.set_payload_len(self.payload_len.min(usize::from(u16::MAX)) as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}
