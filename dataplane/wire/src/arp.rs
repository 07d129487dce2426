//! ARP (RFC 826), parsed for Ethernet/IPv4 only.

use core::net::Ipv4Addr;

use ovl_common::ETH_P_IPV4;

use crate::ethernet::EthernetAddress;
use crate::{Error, Result, get_u16, set_u16};

/// Hardware type for Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// Length of the fixed part before the addresses.
const FIXED_LEN: usize = 8;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = FIXED_LEN + 2 * (6 + 4);

/// ARP operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// 1.
    Request,
    /// 2.
    Reply,
    /// Any other value (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(v: Operation) -> Self {
        match v {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
}

/// A read/write view of an ARP packet of any hardware and protocol type; the address fields are
/// sized by the packet's own `hlen` and `plen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the fixed part and the four addresses.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds the fixed part and the addresses `hlen`/`plen` declare.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN || len < self.packet_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length the packet's `hlen` and `plen` imply: 28 for Ethernet/IPv4.
    pub fn packet_len(&self) -> usize {
        FIXED_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (an EtherType; 0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        // get() because packet_len() runs inside check_len on buffers of any length.
        self.buffer.as_ref().get(field::HLEN).copied().unwrap_or(0)
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref().get(field::PLEN).copied().unwrap_or(0)
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        Operation::from(get_u16(self.buffer.as_ref(), field::OPER))
    }

    fn hl(&self) -> usize {
        usize::from(self.hardware_len())
    }

    fn pl(&self) -> usize {
        usize::from(self.protocol_len())
    }

    /// Sender hardware address bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        let start = FIXED_LEN;
        &self.buffer.as_ref()[start..start + self.hl()]
    }

    /// Sender protocol address bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        let start = FIXED_LEN + self.hl();
        &self.buffer.as_ref()[start..start + self.pl()]
    }

    /// Target hardware address bytes.
    pub fn target_hardware_addr(&self) -> &[u8] {
        let start = FIXED_LEN + self.hl() + self.pl();
        &self.buffer.as_ref()[start..start + self.hl()]
    }

    /// Target protocol address bytes.
    pub fn target_protocol_addr(&self) -> &[u8] {
        let start = FIXED_LEN + 2 * self.hl() + self.pl();
        &self.buffer.as_ref()[start..start + self.pl()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::HTYPE, v);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PTYPE, v);
    }

    /// Sets the hardware address length; set it before writing addresses.
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length; set it before writing addresses.
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: Operation) {
        set_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets the sender hardware address; `addr` must be `hlen` bytes.
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let start = FIXED_LEN;
        let end = start + self.hl();
        self.buffer.as_mut()[start..end].copy_from_slice(addr);
    }

    /// Sets the sender protocol address; `addr` must be `plen` bytes.
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let start = FIXED_LEN + self.hl();
        let end = start + self.pl();
        self.buffer.as_mut()[start..end].copy_from_slice(addr);
    }

    /// Sets the target hardware address; `addr` must be `hlen` bytes.
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let start = FIXED_LEN + self.hl() + self.pl();
        let end = start + self.hl();
        self.buffer.as_mut()[start..end].copy_from_slice(addr);
    }

    /// Sets the target protocol address; `addr` must be `plen` bytes.
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let start = FIXED_LEN + 2 * self.hl() + self.pl();
        let end = start + self.pl();
        self.buffer.as_mut()[start..end].copy_from_slice(addr);
    }
}

/// A parsed Ethernet/IPv4 ARP request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Request or reply; never `Unknown` after [`parse`](Self::parse).
    pub operation: Operation,
    /// Sender MAC.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

impl Repr {
    /// Reads an Ethernet/IPv4 request or reply; anything else is `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET || packet.hardware_len() != 6 {
            return Err(Error::Unsupported("ARP hardware type other than Ethernet"));
        }
        if packet.protocol_type() != ETH_P_IPV4 || packet.protocol_len() != 4 {
            return Err(Error::Unsupported("ARP protocol type other than IPv4"));
        }
        let operation = match packet.operation() {
            op @ (Operation::Request | Operation::Reply) => op,
            Operation::Unknown(_) => return Err(Error::Unsupported("ARP operation")),
        };
        Ok(Repr {
            operation,
            source_hardware_addr: EthernetAddress::from_bytes(packet.source_hardware_addr())?,
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: EthernetAddress::from_bytes(packet.target_hardware_addr())?,
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// Gratuitous ARP request announcing that `ip` is at `mac` (RFC 5227 announcement form:
    /// sender and target IP both `ip`, target MAC zero). Send it to the broadcast MAC.
    pub const fn gratuitous_request(mac: EthernetAddress, ip: Ipv4Addr) -> Repr {
        Repr {
            operation: Operation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: ip,
            target_hardware_addr: EthernetAddress::ZERO,
            target_protocol_addr: ip,
        }
    }

    /// Gratuitous ARP reply announcing that `ip` is at `mac` (RFC 2002 section 4.6 form: target
    /// MAC and IP repeat the sender's). Some hosts only update their caches from replies, which
    /// is why failover sends both forms. Send it to the broadcast MAC.
    pub const fn gratuitous_reply(mac: EthernetAddress, ip: Ipv4Addr) -> Repr {
        Repr {
            operation: Operation::Reply,
            source_hardware_addr: mac,
            source_protocol_addr: ip,
            target_hardware_addr: mac,
            target_protocol_addr: ip,
        }
    }

    /// Whether this announces the sender's own address (sender IP equals target IP).
    pub fn is_gratuitous(&self) -> bool {
        self.source_protocol_addr == self.target_protocol_addr
    }

    /// 28.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the packet.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(ETH_P_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}
