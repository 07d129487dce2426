//! Ethernet II frames with at most one 802.1Q tag.

use core::fmt;

use ovl_common::{ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ETH_P_TEB, VLAN_HLEN};

use crate::{Error, Result, get_u16, set_u16};

/// 802.1ad service tag; seen after an 802.1Q tag only in stacked (QinQ) frames.
const ETH_P_8021AD: u16 = 0x88a8;
/// EtherType values below this are IEEE 802.3 length fields, not protocol numbers.
const ETHERTYPE_MIN: u16 = 0x0600;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00, e.g. the unknown target of an ARP request.
    pub const ZERO: EthernetAddress = EthernetAddress([0; 6]);

    /// The address in the first six bytes of `bytes`, or `Truncated` if there are fewer.
    pub fn from_bytes(bytes: &[u8]) -> Result<EthernetAddress> {
        match bytes.get(..6) {
            Some(b) => {
                let mut a = [0; 6];
                a.copy_from_slice(b);
                Ok(EthernetAddress(a))
            }
            None => Err(Error::Truncated),
        }
    }

    /// The six address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group address (I/G bit set); broadcast is one too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Individual address (I/G bit clear).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Locally administered (U/L bit set), as generated MACs of veths and VIPs usually are.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The multicast MAC an IPv6 multicast address maps to (RFC 2464 section 7): 33:33 and the
    /// address's last four bytes.
    pub const fn from_ipv6_multicast(addr: &core::net::Ipv6Addr) -> EthernetAddress {
        let o = addr.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`: six groups of exactly two hex digits of either case. The one MAC
/// parser of the project: configs, CLIs and the lab all go through it.
impl core::str::FromStr for EthernetAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<EthernetAddress> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts
                .next()
                .ok_or(Error::Malformed("MAC address: fewer than 6 groups"))?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Malformed(
                    "MAC address: a group is not two hex digits",
                ));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| Error::Malformed("MAC address: a group is not two hex digits"))?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed("MAC address: more than 6 groups"));
        }
        Ok(EthernetAddress(mac))
    }
}

/// An EtherType (or GENEVE protocol type, which uses the same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x86dd.
    Ipv6,
    /// 0x8100, the 802.1Q tag protocol identifier.
    Vlan,
    /// 0x6558, transparent Ethernet bridging (GENEVE carrying an Ethernet frame).
    Teb,
    /// Any other value. Never holds one of the values above when built with `From<u16>`.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            ETH_P_IPV4 => EtherType::Ipv4,
            ETH_P_ARP => EtherType::Arp,
            ETH_P_IPV6 => EtherType::Ipv6,
            ETH_P_8021Q => EtherType::Vlan,
            ETH_P_TEB => EtherType::Teb,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        match v {
            EtherType::Ipv4 => ETH_P_IPV4,
            EtherType::Arp => ETH_P_ARP,
            EtherType::Ipv6 => ETH_P_IPV6,
            EtherType::Vlan => ETH_P_8021Q,
            EtherType::Teb => ETH_P_TEB,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::Teb => f.write_str("TEB"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    /// EtherType of an untagged frame, or the 802.1Q TPID of a tagged one.
    pub const TYPE_OR_TPID: usize = 12;
    pub const TCI: usize = 14;
    pub const TAGGED_TYPE: usize = 16;
}

/// A read/write view of an Ethernet II frame over a byte buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking that it holds the whole header, tag included.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header [`header_len`](Self::header_len) describes.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < ETH_HLEN || len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// 14, or 18 with an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.is_vlan_tagged() {
            ETH_HLEN + VLAN_HLEN
        } else {
            ETH_HLEN
        }
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        EthernetAddress(a)
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        EthernetAddress(a)
    }

    /// Whether the frame carries an 802.1Q tag (TPID 0x8100 where the EtherType would be).
    pub fn is_vlan_tagged(&self) -> bool {
        // Reached from check_len before the length is known to be 14, so must not index.
        self.buffer
            .as_ref()
            .get(field::TYPE_OR_TPID..field::TYPE_OR_TPID + 2)
            .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) == ETH_P_8021Q)
    }

    /// The 802.1Q tag control information (PCP, DEI, VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_vlan_tagged()
            .then(|| get_u16(self.buffer.as_ref(), field::TCI))
    }

    /// The 12-bit VLAN id, if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload: after the tag if there is one.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(get_u16(self.buffer.as_ref(), self.header_len() - 2))
    }

    /// Everything after the header (including any trailing padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Makes the frame tagged with `tci`: writes the 802.1Q TPID and the TCI. Needs 18 bytes.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        let buf = self.buffer.as_mut();
        set_u16(buf, field::TYPE_OR_TPID, ETH_P_8021Q);
        set_u16(buf, field::TCI, tci);
    }

    /// Sets the payload EtherType where the current tagging puts it, so for a tagged frame call
    /// [`set_vlan_tci`](Self::set_vlan_tci) first.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let off = if self.is_vlan_tagged() {
            field::TAGGED_TYPE
        } else {
            field::TYPE_OR_TPID
        };
        set_u16(self.buffer.as_mut(), off, ethertype.into());
    }

    /// Mutable payload, after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// An 802.1Q tag's control information.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Priority code point, 3 bits.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id, 12 bits.
    pub vid: u16,
}

impl VlanTag {
    /// Splits a TCI into its fields.
    pub const fn from_tci(tci: u16) -> VlanTag {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// The TCI; out-of-range `pcp` and `vid` bits are dropped.
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

/// A parsed Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads a frame's header. Rejects stacked tags and 802.3 length fields as `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        let raw = u16::from(frame.ethertype());
        if raw == ETH_P_8021Q || raw == ETH_P_8021AD {
            return Err(Error::Unsupported("stacked VLAN tags"));
        }
        if raw < ETHERTYPE_MIN {
            return Err(Error::Unsupported(
                "IEEE 802.3 length field instead of EtherType",
            ));
        }
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan_tci().map(VlanTag::from_tci),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length: 14, or 18 with a tag.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            ETH_HLEN + VLAN_HLEN
        } else {
            ETH_HLEN
        }
    }

    /// Same as [`header_len`](Self::header_len): what [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan {
            Some(tag) => {
                frame.set_vlan_tci(tag.tci());
                set_u16(
                    frame.buffer.as_mut(),
                    field::TAGGED_TYPE,
                    self.ethertype.into(),
                );
            }
            // Written directly: the buffer may hold a stale TPID that set_ethertype would honour.
            None => set_u16(
                frame.buffer.as_mut(),
                field::TYPE_OR_TPID,
                self.ethertype.into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn mac_text_round_trips_and_bad_text_is_refused() {
        let a: EthernetAddress = "02:AB:cd:00:0f:ff".parse().unwrap();
        assert_eq!(a, EthernetAddress([0x02, 0xab, 0xcd, 0x00, 0x0f, 0xff]));
        assert_eq!(a.to_string().parse::<EthernetAddress>(), Ok(a));
        for bad in [
            "",
            "02:ab:cd:00:0f",
            "02:ab:cd:00:0f:ff:00",
            "2:ab:cd:00:0f:ff",
            "02:ab:cd:00:0f:fg",
            "02-ab-cd-00-0f-ff",
            "02:ab:cd:00:0f:+f",
            "02:ab:cd:00:0f:ff:",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn address_classes_and_display() {
        let a = EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0xab, 0xcd]);
        assert!(a.is_unicast() && !a.is_multicast() && !a.is_broadcast() && a.is_local());
        assert_eq!(a.to_string(), "02:00:5e:10:ab:cd");
        let m = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(m.is_multicast() && !m.is_unicast() && !m.is_broadcast() && !m.is_local());
        let b = EthernetAddress::BROADCAST;
        assert!(b.is_broadcast() && b.is_multicast() && !b.is_unicast());
        assert_eq!(b.to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5]),
            Err(Error::Truncated)
        );
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Ok(EthernetAddress([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn ipv6_multicast_mapping() {
        let all_nodes = core::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(
            EthernetAddress::from_ipv6_multicast(&all_nodes),
            EthernetAddress([0x33, 0x33, 0, 0, 0, 1])
        );
    }

    #[test]
    fn ethertype_round_trips_through_u16() {
        for v in [0x0800u16, 0x0806, 0x86dd, 0x8100, 0x6558, 0x88cc, 0] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(EtherType::from(0x6558), EtherType::Teb);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }

    #[test]
    fn tci_split_and_join() {
        let tag = VlanTag::from_tci(0xb064);
        assert_eq!(
            tag,
            VlanTag {
                pcp: 5,
                dei: true,
                vid: 0x064
            }
        );
        assert_eq!(tag.tci(), 0xb064);
    }

    #[test]
    fn emit_untagged_over_stale_tpid() {
        let mut buf = [0u8; 18];
        buf[12] = 0x81;
        let repr = Repr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress::BROADCAST,
            vlan: None,
            ethertype: EtherType::Arp,
        };
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&frame), Ok(repr));
        assert_eq!(frame.payload().len(), 4);
    }
}
