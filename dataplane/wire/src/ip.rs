//! What IPv4 and IPv6 share: the protocol / next-header numbers.

use core::fmt;

use ovl_common::IPPROTO_UDP;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ICMPV6: u8 = 58;

/// An IPv4 protocol or IPv6 next-header number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 0: IPv6 hop-by-hop options.
    HopByHop,
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 44: IPv6 fragment header.
    Ipv6Fragment,
    /// 58.
    Icmpv6,
    /// Any other value. Never holds one of the values above when built with `From<u8>`.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            IPPROTO_HOPOPTS => IpProtocol::HopByHop,
            IPPROTO_ICMP => IpProtocol::Icmp,
            IPPROTO_TCP => IpProtocol::Tcp,
            IPPROTO_UDP => IpProtocol::Udp,
            IPPROTO_FRAGMENT => IpProtocol::Ipv6Fragment,
            IPPROTO_ICMPV6 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(v: IpProtocol) -> Self {
        match v {
            IpProtocol::HopByHop => IPPROTO_HOPOPTS,
            IpProtocol::Icmp => IPPROTO_ICMP,
            IpProtocol::Tcp => IPPROTO_TCP,
            IpProtocol::Udp => IPPROTO_UDP,
            IpProtocol::Ipv6Fragment => IPPROTO_FRAGMENT,
            IpProtocol::Icmpv6 => IPPROTO_ICMPV6,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::HopByHop => f.write_str("HOPOPT"),
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Ipv6Fragment => f.write_str("IPv6-Frag"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            IpProtocol::Unknown(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
    }
}
