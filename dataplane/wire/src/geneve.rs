//! GENEVE headers and option TLVs (RFC 8926).
//!
//! Reserved bits are ignored on receipt and written as zero, as the RFC says. Whether an
//! option is understood is the caller's decision: [`Repr::has_critical_options`] and
//! [`GeneveOption::is_critical`] tell it what RFC 8926 requires it to drop if not.

use alloc::vec::Vec;

use ovl_common::{GENEVE_HLEN, VNI_MAX};

use crate::ethernet::EtherType;
use crate::{Error, Result, get_u16, get_u24, set_u16, set_u24};

/// Length of an option's own header (class, type, flags and length).
pub const OPTION_HLEN: usize = 4;
/// Largest option data: the 5-bit length field counts up to 31 words.
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// Largest options area: the 6-bit `opt_len` counts up to 63 words.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// High bit of the option type: the receiver must drop the packet if it does not know it.
pub const OPTION_TYPE_CRITICAL: u8 = 0x80;

mod field {
    pub const VER_OPTLEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const VNI: usize = 4;
    pub const RESERVED: usize = 7;
}

const FLAG_OAM: u8 = 0x80;
const FLAG_CRITICAL: u8 = 0x40;

/// A read/write view of a GENEVE header, its options and the payload after them.
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

    /// Checks the buffer holds the base header and the options `opt_len` declares.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < GENEVE_HLEN || len < self.header_len() {
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

    /// Version, 2 bits (0 is the only one defined).
    pub fn version(&self) -> u8 {
        self.buf()[field::VER_OPTLEN] >> 6
    }

    /// The `opt_len` field: length of the options in 4-byte words.
    pub fn opt_len(&self) -> u8 {
        // get() because check_len calls this through header_len on buffers of any length.
        self.buf().get(field::VER_OPTLEN).map_or(0, |b| b & 0x3f)
    }

    /// Length of the options in bytes.
    pub fn options_len(&self) -> usize {
        usize::from(self.opt_len()) * 4
    }

    /// Base header plus options.
    pub fn header_len(&self) -> usize {
        GENEVE_HLEN + self.options_len()
    }

    /// O flag: the payload is a control (OAM) message.
    pub fn oam(&self) -> bool {
        self.buf()[field::FLAGS] & FLAG_OAM != 0
    }

    /// C flag: at least one option is critical.
    pub fn critical(&self) -> bool {
        self.buf()[field::FLAGS] & FLAG_CRITICAL != 0
    }

    /// The six reserved bits after the flags.
    pub fn reserved_flags(&self) -> u8 {
        self.buf()[field::FLAGS] & 0x3f
    }

    /// Protocol type of the payload (0x6558 for Ethernet).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(get_u16(self.buf(), field::PROTOCOL))
    }

    /// Virtual network identifier, 24 bits.
    pub fn vni(&self) -> u32 {
        get_u24(self.buf(), field::VNI)
    }

    /// The reserved byte after the VNI.
    pub fn reserved2(&self) -> u8 {
        self.buf()[field::RESERVED]
    }

    /// The raw options area.
    pub fn options(&self) -> &[u8] {
        &self.buf()[GENEVE_HLEN..self.header_len()]
    }

    /// Iterates over the option TLVs.
    pub fn options_iter(&self) -> Options<'_> {
        Options::new(self.options())
    }

    /// What follows the options.
    pub fn payload(&self) -> &[u8] {
        &self.buf()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the version (2 bits).
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buf_mut()[field::VER_OPTLEN];
        *b = (*b & 0x3f) | (v << 6);
    }

    /// Sets `opt_len` in 4-byte words (6 bits).
    pub fn set_opt_len(&mut self, words: u8) {
        let b = &mut self.buf_mut()[field::VER_OPTLEN];
        *b = (*b & 0xc0) | (words & 0x3f);
    }

    /// Writes the flags byte: O, C, reserved bits zero.
    pub fn set_flags(&mut self, oam: bool, critical: bool) {
        let mut v = 0;
        if oam {
            v |= FLAG_OAM;
        }
        if critical {
            v |= FLAG_CRITICAL;
        }
        self.buf_mut()[field::FLAGS] = v;
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, v: EtherType) {
        set_u16(self.buf_mut(), field::PROTOCOL, v.into());
    }

    /// Sets the VNI (low 24 bits of `v`).
    pub fn set_vni(&mut self, v: u32) {
        set_u24(self.buf_mut(), field::VNI, v);
    }

    /// Sets the reserved byte after the VNI.
    pub fn set_reserved2(&mut self, v: u8) {
        self.buf_mut()[field::RESERVED] = v;
    }

    /// The raw options area, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buf_mut()[GENEVE_HLEN..end]
    }

    /// What follows the options, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buf_mut()[start..]
    }
}

/// A borrowed option TLV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptionRef<'a> {
    /// Option class (namespace of the type).
    pub class: u16,
    /// Type, high bit being the critical bit.
    pub opt_type: u8,
    /// The three reserved flag bits before the length (ignored on receipt).
    pub reserved: u8,
    /// Option data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

impl OptionRef<'_> {
    /// Whether the receiver must drop the packet if it does not understand this option.
    pub const fn is_critical(&self) -> bool {
        self.opt_type & OPTION_TYPE_CRITICAL != 0
    }

    /// Bytes this option takes on the wire.
    pub const fn wire_len(&self) -> usize {
        OPTION_HLEN + self.data.len()
    }

    /// An owned copy.
    pub fn to_owned(&self) -> GeneveOption {
        GeneveOption {
            class: self.class,
            opt_type: self.opt_type,
            data: self.data.to_vec(),
        }
    }
}

/// Iterator over an options area. Yields an error and then stops if an option overruns the
/// area, so a corrupt length cannot make it read out of bounds or loop.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// Iterates over `area`, the bytes between the base header and the payload.
    pub const fn new(area: &'a [u8]) -> Options<'a> {
        Options { rest: area }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<OptionRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let Some(&[c0, c1, opt_type, len_byte]) = rest.first_chunk::<OPTION_HLEN>() else {
            return Some(Err(Error::BadLength(
                "GENEVE option header overruns options area",
            )));
        };
        let data_len = usize::from(len_byte & 0x1f) * 4;
        let Some(data) = rest.get(OPTION_HLEN..OPTION_HLEN + data_len) else {
            return Some(Err(Error::BadLength(
                "GENEVE option data overruns options area",
            )));
        };
        self.rest = &rest[OPTION_HLEN + data_len..];
        Some(Ok(OptionRef {
            class: u16::from_be_bytes([c0, c1]),
            opt_type,
            reserved: len_byte >> 5,
            data,
        }))
    }
}

impl core::iter::FusedIterator for Options<'_> {}

/// An owned option TLV.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GeneveOption {
    /// Option class.
    pub class: u16,
    /// Type, high bit being the critical bit.
    pub opt_type: u8,
    // Private so that its length is always one the 5-bit field can carry.
    data: Vec<u8>,
}

impl GeneveOption {
    /// An option; `BadLength` unless `data` is a multiple of 4 bytes and at most
    /// [`MAX_OPTION_DATA_LEN`].
    pub fn new(class: u16, opt_type: u8, data: &[u8]) -> Result<GeneveOption> {
        if !data.len().is_multiple_of(4) || data.len() > MAX_OPTION_DATA_LEN {
            return Err(Error::BadLength(
                "GENEVE option data not a multiple of 4 bytes up to 124",
            ));
        }
        Ok(GeneveOption {
            class,
            opt_type,
            data: data.to_vec(),
        })
    }

    /// Option data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether the receiver must drop the packet if it does not understand this option.
    pub const fn is_critical(&self) -> bool {
        self.opt_type & OPTION_TYPE_CRITICAL != 0
    }

    /// Bytes this option takes on the wire.
    pub fn wire_len(&self) -> usize {
        OPTION_HLEN + self.data.len()
    }

    /// Writes the TLV at the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`wire_len`](Self::wire_len).
    pub fn emit(&self, buf: &mut [u8]) {
        set_u16(buf, 0, self.class);
        buf[2] = self.opt_type;
        // The constructor bounds data.len() to 124, so the word count fits 5 bits.
        buf[3] = (self.data.len() / 4) as u8;
        buf[OPTION_HLEN..self.wire_len()].copy_from_slice(&self.data);
    }
}

/// A parsed GENEVE header with its options.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// O flag: control message.
    pub oam: bool,
    /// C flag: critical options present. Kept as received; [`push_option`](Self::push_option)
    /// sets it when it adds a critical option.
    pub critical: bool,
    /// Protocol type of the payload.
    pub protocol: EtherType,
    /// VNI, at most [`VNI_MAX`].
    pub vni: u32,
    // Private so the total always fits the 6-bit opt_len.
    options: Vec<GeneveOption>,
}

impl Repr {
    /// A header without options or flags.
    pub const fn new(protocol: EtherType, vni: u32) -> Repr {
        Repr {
            oam: false,
            critical: false,
            protocol,
            vni,
            options: Vec::new(),
        }
    }

    /// Reads a header and its options. Errors: `BadVersion` unless the version is 0,
    /// `BadLength` if an option overruns the options area, plus whatever
    /// [`Packet::check_len`] finds. Any protocol type is accepted; checking it is the
    /// caller's business.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 0 {
            return Err(Error::BadVersion(packet.version()));
        }
        let options = packet
            .options_iter()
            .map(|o| o.map(|o| o.to_owned()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Repr {
            oam: packet.oam(),
            critical: packet.critical(),
            protocol: packet.protocol_type(),
            vni: packet.vni(),
            options,
        })
    }

    /// The options, in wire order.
    pub fn options(&self) -> &[GeneveOption] {
        &self.options
    }

    /// Appends an option, setting the C flag if it is critical. `BadLength` if the options
    /// would exceed [`MAX_OPTIONS_LEN`].
    pub fn push_option(&mut self, option: GeneveOption) -> Result<()> {
        if self.options_len() + option.wire_len() > MAX_OPTIONS_LEN {
            return Err(Error::BadLength("GENEVE options exceed 252 bytes"));
        }
        self.critical |= option.is_critical();
        self.options.push(option);
        Ok(())
    }

    /// Removes every option (the C flag is left alone).
    pub fn clear_options(&mut self) {
        self.options.clear();
    }

    /// Whether any option has the critical bit, whatever the C flag says.
    pub fn has_critical_options(&self) -> bool {
        self.options.iter().any(GeneveOption::is_critical)
    }

    /// Length of the options in bytes.
    pub fn options_len(&self) -> usize {
        self.options.iter().map(GeneveOption::wire_len).sum()
    }

    /// Base header plus options.
    pub fn header_len(&self) -> usize {
        GENEVE_HLEN + self.options_len()
    }

    /// Same as [`header_len`](Self::header_len): the payload is the caller's.
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes the header and options: version 0, reserved bits zero, the VNI's low 24 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        // push_option bounds the total to 252 bytes, 63 words.
        let words = (self.options_len() / 4) as u8;
        packet.buf_mut()[field::VER_OPTLEN] = words;
        packet.set_flags(self.oam, self.critical);
        packet.set_protocol_type(self.protocol);
        packet.set_vni(self.vni & VNI_MAX);
        packet.set_reserved2(0);
        let area = packet.options_mut();
        let mut off = 0;
        for opt in &self.options {
            opt.emit(&mut area[off..]);
            off += opt.wire_len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_options_area_round_trips() {
        let mut repr = Repr::new(EtherType::Teb, VNI_MAX);
        // 2 x (4 + 120) + 4 = 252.
        let data: Vec<u8> = (0..120).collect();
        repr.push_option(GeneveOption::new(0xffff, 0xff, &data).unwrap())
            .unwrap();
        repr.push_option(GeneveOption::new(0x0001, 0x01, &data).unwrap())
            .unwrap();
        repr.push_option(GeneveOption::new(0x0002, 0x02, &[]).unwrap())
            .unwrap();
        assert_eq!(repr.header_len(), GENEVE_HLEN + MAX_OPTIONS_LEN);
        assert!(repr.critical);
        let mut buf = [0u8; GENEVE_HLEN + MAX_OPTIONS_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[0], 63, "version 0, opt_len 63");
        assert_eq!(buf[1], FLAG_CRITICAL);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.payload().is_empty());
        assert_eq!(Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        // Reserved flag bits and the byte after the VNI set: still parses (RFC 8926 3.4).
        let buf = [0x00, 0x3f, 0x65, 0x58, 0x00, 0x00, 0x07, 0xff];
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.reserved_flags(), 0x3f);
        assert_eq!(packet.reserved2(), 0xff);
        assert_eq!(Repr::parse(&packet), Ok(Repr::new(EtherType::Teb, 7)));
    }
}
