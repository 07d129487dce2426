//! ICMPv6 (RFC 4443), as far as neighbour discovery (RFC 4861) needs: the checksum for any
//! message, and neighbour advertisements with the target link-layer address option, which VIP
//! failover sends unsolicited.

use core::net::Ipv6Addr;

use crate::checksum;
use crate::ethernet::EthernetAddress;
use crate::{Error, Result, get_u16, set_u16};

/// IPv6 next-header number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// Neighbour solicitation message type.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement message type.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Source link-layer address option type.
pub const NDP_OPT_SOURCE_LLADDR: u8 = 1;
/// Target link-layer address option type.
pub const NDP_OPT_TARGET_LLADDR: u8 = 2;
/// Hop limit every ND message is sent with; receivers drop ND messages with any other
/// (RFC 4861 section 7.1.2), which the IPv6 layer has to check since this module cannot see it.
pub const NDP_HOP_LIMIT: u8 = 255;
/// ff02::1, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The ICMPv6 header: type, code, checksum.
const HLEN: usize = 4;
/// Neighbour solicitation and advertisement: header, flags/reserved, target.
const ND_HLEN: usize = 24;
/// A link-layer address option for Ethernet: type, length 1, six bytes.
const LLADDR_OPT_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: usize = 8;
}

const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;

/// A read/write view of an ICMPv6 message. The buffer must be exactly the IPv6 payload, since
/// the checksum covers all of it.
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

    /// Checks the buffer holds the ICMPv6 header, and the target address for neighbour
    /// solicitations and advertisements.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HLEN || len < self.header_len() {
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

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf()[field::TYPE]
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buf()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf(), field::CHECKSUM)
    }

    /// Length of the fixed part of this message type: 24 for neighbour solicitations and
    /// advertisements, 4 (the common header) for the others.
    pub fn header_len(&self) -> usize {
        // get() because check_len calls this on buffers of any length.
        match self.buf().get(field::TYPE) {
            Some(&(TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT)) => ND_HLEN,
            _ => HLEN,
        }
    }

    fn sum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let buf = self.buf();
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, IPPROTO_ICMPV6, buf.len() as u32),
            checksum::data(buf),
        ])
    }

    /// Whether the checksum over the IPv6 pseudo-header and the message verifies.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.sum(src, dst) == 0xffff
    }

    /// Advertisement R flag: the sender is a router.
    pub fn router_flag(&self) -> bool {
        self.buf()[field::NA_FLAGS] & NA_FLAG_ROUTER != 0
    }

    /// Advertisement S flag: sent in response to a solicitation.
    pub fn solicited_flag(&self) -> bool {
        self.buf()[field::NA_FLAGS] & NA_FLAG_SOLICITED != 0
    }

    /// Advertisement O flag: override existing cache entries.
    pub fn override_flag(&self) -> bool {
        self.buf()[field::NA_FLAGS] & NA_FLAG_OVERRIDE != 0
    }

    /// Target address of a solicitation or advertisement.
    pub fn target_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf()[field::TARGET..field::TARGET + 16]);
        Ipv6Addr::from(a)
    }

    /// What follows the fixed part: the ND options for solicitations and advertisements.
    pub fn payload(&self) -> &[u8] {
        &self.buf()[self.header_len()..]
    }

    /// Iterates over the ND options of a solicitation or advertisement.
    pub fn ndp_options(&self) -> NdpOptions<'_> {
        NdpOptions::new(self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buf_mut()[field::TYPE] = v;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buf_mut()[field::CODE] = v;
    }

    /// Sets the checksum field as is.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf_mut(), field::CHECKSUM, v);
    }

    /// Writes the advertisement flags word: R, S, O, reserved bits zero.
    pub fn set_na_flags(&mut self, router: bool, solicited: bool, override_flag: bool) {
        let mut v = 0;
        if router {
            v |= NA_FLAG_ROUTER;
        }
        if solicited {
            v |= NA_FLAG_SOLICITED;
        }
        if override_flag {
            v |= NA_FLAG_OVERRIDE;
        }
        self.buf_mut()[field::NA_FLAGS..field::TARGET].copy_from_slice(&[v, 0, 0, 0]);
    }

    /// Sets the target address.
    pub fn set_target_addr(&mut self, a: Ipv6Addr) {
        self.buf_mut()[field::TARGET..field::TARGET + 16].copy_from_slice(&a.octets());
    }

    /// Computes and writes the checksum over the whole buffer; call last.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let sum = checksum::finish(self.sum(src, dst));
        self.set_checksum(sum);
    }

    /// What follows the fixed part, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buf_mut()[start..]
    }
}

/// A borrowed ND option (RFC 4861 section 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NdpOption<'a> {
    /// Option type.
    pub opt_type: u8,
    /// The option's bytes after its type and length.
    pub data: &'a [u8],
}

/// Iterator over ND options. Yields an error and then stops on a zero length (which RFC 4861
/// makes the whole message invalid) or an option that overruns the message.
#[derive(Clone, Debug)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// Iterates over `area`, the bytes after the message's fixed part.
    pub const fn new(area: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: area }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let Some(&[opt_type, units]) = rest.first_chunk::<2>() else {
            return Some(Err(Error::BadLength("ND option header overruns message")));
        };
        if units == 0 {
            return Some(Err(Error::Malformed("ND option with length 0")));
        }
        let len = usize::from(units) * 8;
        let Some(opt) = rest.get(..len) else {
            return Some(Err(Error::BadLength("ND option overruns message")));
        };
        self.rest = &rest[len..];
        Some(Ok(NdpOption {
            opt_type,
            data: &opt[2..],
        }))
    }
}

impl core::iter::FusedIterator for NdpOptions<'_> {}

/// A parsed neighbour advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighborAdvert {
    /// R flag.
    pub router: bool,
    /// S flag.
    pub solicited: bool,
    /// O flag.
    pub override_flag: bool,
    /// Target address.
    pub target_addr: Ipv6Addr,
    /// The target link-layer address option, if present.
    pub target_lladdr: Option<EthernetAddress>,
}

/// The ICMPv6 representation this crate supports.
pub type Repr = NeighborAdvert;

impl NeighborAdvert {
    /// An unsolicited advertisement that `target` is now at `mac`, with the O flag so
    /// neighbours replace their cache entries (RFC 4861 section 7.2.6). Send it from `target`
    /// to [`ALL_NODES`] with hop limit [`NDP_HOP_LIMIT`].
    pub const fn unsolicited(target: Ipv6Addr, mac: EthernetAddress) -> NeighborAdvert {
        NeighborAdvert {
            router: false,
            solicited: false,
            override_flag: true,
            target_addr: target,
            target_lladdr: Some(mac),
        }
    }

    /// Reads an advertisement that arrived from `src` to `dst`, applying the checks of
    /// RFC 4861 section 7.1.2 that the ICMPv6 message alone allows (the hop limit is the
    /// caller's). Errors: `Unsupported` for other message types, `Malformed` for a non-zero
    /// code, a multicast target, the S flag on a multicast destination or a zero-length option,
    /// `BadChecksum`, and `BadLength` for an option overrun or a target link-layer address
    /// option not sized for Ethernet. Unknown options are skipped, as the RFC requires.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<NeighborAdvert> {
        packet.check_len()?;
        if packet.msg_type() != TYPE_NEIGHBOR_ADVERT {
            return Err(Error::Unsupported(
                "ICMPv6 message other than neighbour advertisement",
            ));
        }
        if packet.msg_code() != 0 {
            return Err(Error::Malformed("neighbour advertisement code not 0"));
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let target_addr = packet.target_addr();
        if target_addr.is_multicast() {
            return Err(Error::Malformed(
                "neighbour advertisement target is multicast",
            ));
        }
        if dst.is_multicast() && packet.solicited_flag() {
            return Err(Error::Malformed(
                "solicited neighbour advertisement to multicast",
            ));
        }
        let mut target_lladdr = None;
        for opt in packet.ndp_options() {
            let opt = opt?;
            if opt.opt_type == NDP_OPT_TARGET_LLADDR && target_lladdr.is_none() {
                if opt.data.len() != 6 {
                    return Err(Error::BadLength(
                        "target link-layer address option not 8 bytes",
                    ));
                }
                target_lladdr = Some(EthernetAddress::from_bytes(opt.data)?);
            }
        }
        Ok(NeighborAdvert {
            router: packet.router_flag(),
            solicited: packet.solicited_flag(),
            override_flag: packet.override_flag(),
            target_addr,
            target_lladdr,
        })
    }

    /// 24, plus 8 with a target link-layer address.
    pub const fn buffer_len(&self) -> usize {
        if self.target_lladdr.is_some() {
            ND_HLEN + LLADDR_OPT_LEN
        } else {
            ND_HLEN
        }
    }

    /// Same as [`buffer_len`](Self::buffer_len): the options are part of the message.
    pub const fn header_len(&self) -> usize {
        self.buffer_len()
    }

    /// Writes the message and its checksum for a packet from `src` to `dst`. The view's
    /// buffer must be exactly [`buffer_len`](Self::buffer_len) bytes, since the checksum
    /// covers all of it.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        packet.set_msg_type(TYPE_NEIGHBOR_ADVERT);
        packet.set_msg_code(0);
        packet.set_na_flags(self.router, self.solicited, self.override_flag);
        packet.set_target_addr(self.target_addr);
        if let Some(mac) = self.target_lladdr {
            let opt = &mut packet.buf_mut()[ND_HLEN..ND_HLEN + LLADDR_OPT_LEN];
            opt[0] = NDP_OPT_TARGET_LLADDR;
            opt[1] = (LLADDR_OPT_LEN / 8) as u8;
            opt[2..].copy_from_slice(&mac.0);
        }
        packet.fill_checksum(src, dst);
    }
}
