//! IPv4 headers (RFC 791).

use core::net::Ipv4Addr;

use ovl_common::IPV4_HLEN;

use crate::ip::IpProtocol;
use crate::{Error, Result, checksum, get_u16, set_u16};

/// Largest payload a header without options can describe.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize - IPV4_HLEN;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
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

    /// Checks the buffer holds the header IHL declares and the total length, and that IHL and
    /// total length agree with each other. The buffer may be longer than the total length
    /// (Ethernet padding); [`payload`](Self::payload) ends at the total length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_HLEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < IPV4_HLEN {
            return Err(Error::BadLength("IPv4 IHL below 5"));
        }
        if len < header_len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::BadLength("IPv4 total length below header length"));
        }
        if len < total_len {
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

    /// Version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buf()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL times 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point, 6 bits.
    pub fn dscp(&self) -> u8 {
        self.buf()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification, 2 bits.
    pub fn ecn(&self) -> u8 {
        self.buf()[field::DSCP_ECN] & 0x03
    }

    /// Total length: header plus payload.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buf(), field::TOTAL_LEN)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buf(), field::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        get_u16(self.buf(), field::FLAGS_FRAG)
    }

    /// The reserved flag bit (must be zero).
    pub fn reserved_flag(&self) -> bool {
        self.flags_frag() & FLAG_RESERVED != 0
    }

    /// Don't fragment.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More fragments.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (first or later) rather than a whole datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buf()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buf();
        Ipv4Addr::new(
            b[field::SRC],
            b[field::SRC + 1],
            b[field::SRC + 2],
            b[field::SRC + 3],
        )
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buf();
        Ipv4Addr::new(
            b[field::DST],
            b[field::DST + 1],
            b[field::DST + 2],
            b[field::DST + 3],
        )
    }

    /// Whether the header checksum (over the header, options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buf()[..self.header_len()]) == 0xffff
    }

    /// The options bytes, empty when IHL is 5.
    pub fn options(&self) -> &[u8] {
        &self.buf()[IPV4_HLEN..self.header_len()]
    }

    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buf()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buf_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets IHL from a header length in bytes (a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buf_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP (6 bits).
    pub fn set_dscp(&mut self, v: u8) {
        let b = &mut self.buf_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (v << 2);
    }

    /// Sets ECN (2 bits).
    pub fn set_ecn(&mut self, v: u8) {
        let b = &mut self.buf_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (v & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buf_mut(), field::TOTAL_LEN, v);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buf_mut(), field::IDENT, v);
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let v = self.flags_frag();
        let v = if on { v | flag } else { v & !flag };
        set_u16(self.buf_mut(), field::FLAGS_FRAG, v);
    }

    /// Clears all flags and the fragment offset.
    pub fn clear_flags(&mut self) {
        set_u16(self.buf_mut(), field::FLAGS_FRAG, 0);
    }

    /// Sets or clears the reserved flag.
    pub fn set_reserved_flag(&mut self, on: bool) {
        self.set_flag(FLAG_RESERVED, on);
    }

    /// Sets or clears don't fragment.
    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag(FLAG_DF, on);
    }

    /// Sets or clears more fragments.
    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag(FLAG_MF, on);
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = (self.flags_frag() & !FRAG_OFFSET_MASK) | ((bytes >> 3) & FRAG_OFFSET_MASK);
        set_u16(self.buf_mut(), field::FLAGS_FRAG, v);
    }

    /// Sets the TTL.
    pub fn set_ttl(&mut self, v: u8) {
        self.buf_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: IpProtocol) {
        self.buf_mut()[field::PROTOCOL] = v.into();
    }

    /// Sets the checksum field as is.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buf_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buf_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }

    /// Computes and writes the header checksum; call after every other header field is set.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(&self.buf()[..self.header_len()]);
        self.set_checksum(sum);
    }

    /// Mutable payload, from the end of the header to the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buf_mut()[range]
    }
}

/// A parsed IPv4 header: a whole datagram without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length (total length minus 20); at most [`MAX_PAYLOAD_LEN`].
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP, 6 bits.
    pub dscp: u8,
    /// ECN, 2 bits.
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub dont_frag: bool,
}

impl Repr {
    /// Reads a header. Errors, in the order checked: `BadVersion`, `BadChecksum`,
    /// `ReservedBitsSet` (the reserved flag), `Unsupported` for options and for fragments
    /// (first or later), plus whatever [`Packet::check_len`] finds.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::BadVersion(packet.version()));
        }
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.reserved_flag() {
            return Err(Error::ReservedBitsSet("IPv4 reserved flag"));
        }
        if packet.header_len() != IPV4_HLEN {
            return Err(Error::Unsupported("IPv4 options"));
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported("IPv4 fragment"));
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// 20: emitted headers never carry options.
    pub const fn header_len(&self) -> usize {
        IPV4_HLEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        IPV4_HLEN + self.payload_len
    }

    /// Writes the header and its checksum. `payload_len` above [`MAX_PAYLOAD_LEN`] is clamped.
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.buf_mut()[field::VER_IHL] = 0x45;
        packet.buf_mut()[field::DSCP_ECN] = (self.dscp << 2) | (self.ecn & 0x03);
        let total = self.payload_len.min(MAX_PAYLOAD_LEN) + IPV4_HLEN;
        packet.set_total_len(total as u16);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}
