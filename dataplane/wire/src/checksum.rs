//! The internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers that UDP and ICMPv6 cover.
//!
//! Sums are kept folded to 16 bits but not complemented, so partial sums over separate pieces
//! (pseudo-header, header, payload) can be [`combine`]d; [`finish`] complements the total. A
//! piece other than the last must have even length, or the byte pairing of what follows shifts.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Ones' complement sum of `data` as big-endian 16-bit words, folded to 16 bits. An odd final
/// byte is padded with a zero low byte.
pub fn data(data: &[u8]) -> u16 {
    // u64 so that no slice a caller can hold overflows before the fold.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// Ones' complement sum of several partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum field value for a folded sum: its ones' complement.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Checksum of a single contiguous buffer, as written in an IPv4 header.
pub fn checksum(bytes: &[u8]) -> u16 {
    finish(data(bytes))
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    acc as u16
}

/// Partial sum of the IPv4 pseudo-header (RFC 768): addresses, zero, protocol, length.
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, length: u16) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        u16::from(protocol),
        length,
    ])
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses, upper-layer packet
/// length as 32 bits, three zero bytes, next header.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        (length >> 16) as u16,
        length as u16,
        u16::from(next_header),
    ])
}

/// The source and destination addresses an upper-layer checksum covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// Carried in IPv4.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// Carried in IPv6.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// Partial sum of the pseudo-header for an upper-layer packet of `length` bytes.
    ///
    /// For IPv4 the length is the 16-bit field the upper layer carries; callers never pass more
    /// than 65535 there because the IPv4 total length bounds it.
    pub fn pseudo_header(&self, protocol: u8, length: usize) -> u16 {
        match self {
            IpPair::V4 { src, dst } => pseudo_header_v4(src, dst, protocol, length as u16),
            IpPair::V6 { src, dst } => pseudo_header_v6(src, dst, protocol, length as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[0xff]), 0xff00);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn carries_wrap_around() {
        // 0xffff + 0x0001 = 0x1_0000, folded to 0x0001.
        assert_eq!(data(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        assert_eq!(combine(&[0xffff, 0xffff]), 0xffff);
    }

    #[test]
    fn combine_matches_contiguous_sum() {
        let bytes: [u8; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(
            combine(&[data(&bytes[..4]), data(&bytes[4..])]),
            data(&bytes)
        );
    }

    #[test]
    fn pseudo_header_v6_splits_length() {
        let a = Ipv6Addr::UNSPECIFIED;
        // A length above 16 bits contributes its high half too.
        assert_eq!(pseudo_header_v6(&a, &a, 17, 0x0001_0002), 1 + 2 + 17);
        assert_eq!(
            pseudo_header_v4(&Ipv4Addr::UNSPECIFIED, &Ipv4Addr::UNSPECIFIED, 17, 8),
            25
        );
    }
}
