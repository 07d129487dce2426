//! VXLAN headers (RFC 7348).
//!
//! RFC 7348 says receivers ignore the reserved fields; [`Repr::parse`] instead rejects them,
//! like the XDP program does, so that extensions this data plane does not implement (GBP, GPE)
//! are dropped rather than misread as plain VXLAN.

use ovl_common::{VNI_MAX, VXLAN_FLAG_I, VXLAN_HLEN};

use crate::{Error, Result, get_u24, set_u24};

mod field {
    pub const FLAGS: usize = 0;
    pub const RESERVED1: usize = 1;
    pub const VNI: usize = 4;
    pub const RESERVED2: usize = 7;
}

/// A read/write view of a VXLAN header and the Ethernet frame after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds the header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VXLAN_HLEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte; only the I bit (0x08) is defined.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (VNI valid) is set.
    pub fn i_flag(&self) -> bool {
        self.flags() & VXLAN_FLAG_I != 0
    }

    /// The 24 reserved bits after the flags.
    pub fn reserved1(&self) -> u32 {
        get_u24(self.buffer.as_ref(), field::RESERVED1)
    }

    /// VXLAN network identifier, 24 bits.
    pub fn vni(&self) -> u32 {
        get_u24(self.buffer.as_ref(), field::VNI)
    }

    /// The reserved byte after the VNI.
    pub fn reserved2(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED2]
    }

    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VXLAN_HLEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the 24 reserved bits after the flags (low 24 bits of `v`).
    pub fn set_reserved1(&mut self, v: u32) {
        set_u24(self.buffer.as_mut(), field::RESERVED1, v);
    }

    /// Sets the VNI (low 24 bits of `v`).
    pub fn set_vni(&mut self, v: u32) {
        set_u24(self.buffer.as_mut(), field::VNI, v);
    }

    /// Sets the reserved byte after the VNI.
    pub fn set_reserved2(&mut self, v: u8) {
        self.buffer.as_mut()[field::RESERVED2] = v;
    }

    /// The encapsulated Ethernet frame, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[VXLAN_HLEN..]
    }
}

/// A parsed VXLAN header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// VNI, at most [`VNI_MAX`].
    pub vni: u32,
}

impl Repr {
    /// Reads a header: `Malformed` without the I flag, `ReservedBitsSet` if any other flag or
    /// reserved bit is set.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(Error::Malformed("VXLAN I flag clear"));
        }
        if packet.flags() & !VXLAN_FLAG_I != 0 {
            return Err(Error::ReservedBitsSet("VXLAN flags"));
        }
        if packet.reserved1() != 0 {
            return Err(Error::ReservedBitsSet("VXLAN reserved field after flags"));
        }
        if packet.reserved2() != 0 {
            return Err(Error::ReservedBitsSet("VXLAN reserved field after VNI"));
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// 8.
    pub const fn header_len(&self) -> usize {
        VXLAN_HLEN
    }

    /// Same as [`header_len`](Self::header_len): the payload is the caller's.
    pub const fn buffer_len(&self) -> usize {
        VXLAN_HLEN
    }

    /// Writes the header: I flag, the VNI's low 24 bits, reserved fields zero.
    ///
    /// # Panics
    /// If the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(VXLAN_FLAG_I);
        packet.set_reserved1(0);
        packet.set_vni(self.vni & VNI_MAX);
        packet.set_reserved2(0);
    }
}
