//! UDP headers (RFC 768) and their checksum over the IPv4 or IPv6 pseudo-header.

use ovl_common::{IPPROTO_UDP, UDP_HLEN};

use crate::checksum::{self, IpPair};
use crate::{Error, Result, get_u16, set_u16};

/// Largest payload the 16-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize - UDP_HLEN;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A read/write view of a UDP datagram. The buffer is normally the IP payload.
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

    /// Checks the buffer holds the header and the length field's bytes, and that the length
    /// covers at least the header.
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < UDP_HLEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < UDP_HLEN {
            return Err(Error::BadLength("UDP length below 8"));
        }
        if buf_len < len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field: header plus payload.
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= UDP_HLEN
    }

    /// Checksum field; 0 means "not computed" over IPv4.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Folded sum over pseudo-header, header and payload: 0xffff when the checksum is right.
    fn sum(&self, ip: &IpPair) -> u16 {
        let len = usize::from(self.len());
        checksum::combine(&[
            ip.pseudo_header(IPPROTO_UDP, len),
            checksum::data(&self.buffer.as_ref()[..len]),
        ])
    }

    /// Whether the checksum verifies. A zero checksum passes over IPv4, where it means "none",
    /// and fails over IPv6, where RFC 8200 makes it mandatory.
    pub fn verify_checksum(&self, ip: &IpPair) -> bool {
        if self.checksum() == 0 {
            return matches!(ip, IpPair::V4 { .. });
        }
        self.sum(ip) == 0xffff
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HLEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field as is (0 to send none over IPv4).
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and writes the checksum over pseudo-header, header and payload; call once the
    /// payload is in place.
    pub fn fill_checksum(&mut self, ip: &IpPair) {
        self.set_checksum(0);
        let sum = checksum::finish(self.sum(ip));
        // A computed 0 goes out as its ones' complement twin so it is not read as "none".
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    /// Mutable payload, up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[UDP_HLEN..end]
    }
}

/// A parsed UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (length field minus 8); at most [`MAX_PAYLOAD_LEN`].
    pub payload_len: usize,
}

impl Repr {
    /// Reads a header whose buffer is exactly the IP payload, and verifies the checksum
    /// against `ip`. Errors: `BadLength` when the length field and the IP payload length differ
    /// (either way), `BadChecksum`, plus whatever [`Packet::check_len`] finds.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, ip: &IpPair) -> Result<Repr> {
        packet.check_len()?;
        let len = usize::from(packet.len());
        if len != packet.buffer.as_ref().len() {
            return Err(Error::BadLength(
                "UDP length differs from IP payload length",
            ));
        }
        if !packet.verify_checksum(ip) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: len - UDP_HLEN,
        })
    }

    /// 8.
    pub const fn header_len(&self) -> usize {
        UDP_HLEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        UDP_HLEN + self.payload_len
    }

    /// Writes the header with a zero checksum, which over IPv4 means "none" (what RFC 7348
    /// recommends for VXLAN). For a real checksum, and always over IPv6, write the payload and
    /// then call [`Packet::fill_checksum`]. `payload_len` above [`MAX_PAYLOAD_LEN`] is clamped.
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((self.payload_len.min(MAX_PAYLOAD_LEN) + UDP_HLEN) as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn computed_zero_checksum_is_sent_as_ffff() {
        let ip = IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src_port: 1234,
            dst_port: 5678,
            payload_len: 2,
        }
        .emit(&mut p);
        // Choose the two payload bytes so that the whole sum is 0xffff, i.e. the checksum
        // computes to zero.
        let rest = checksum::combine(&[
            ip.pseudo_header(IPPROTO_UDP, 10),
            checksum::data(&p.buffer[..8]),
        ]);
        p.payload_mut().copy_from_slice(&(!rest).to_be_bytes());
        p.fill_checksum(&ip);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&ip));
        assert_eq!(
            Repr::parse(&p, &ip).map(|r| r.payload_len),
            Ok(2),
            "0xffff verifies like the zero it stands for"
        );
    }
}
