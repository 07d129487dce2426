//! Types shared by the XDP programs (`xdp-ebpf/programs`, built for `bpfel-unknown-none`) and
//! userspace (`dataplane`): map keys and values, the metadata the programs hand to AF_XDP
//! workers, counter indices and header sizes. Everything here is `#[repr(C)]` plain data, so
//! both sides agree on the layout without copying struct definitions.
//!
//! Byte order: fields named `*_be` hold values in network byte order exactly as they appear on
//! the wire (the programs copy them without swapping); every other integer is host order.
#![no_std]

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// 802.1Q tag length.
pub const VLAN_HLEN: usize = 4;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// VXLAN header length (RFC 7348).
pub const VXLAN_HLEN: usize = 8;
/// GENEVE base header length, before options (RFC 8926).
pub const GENEVE_HLEN: usize = 8;
/// Length of the single GENEVE option the encapsulation can add: 4 bytes of option header plus
/// 4 bytes of data.
pub const GENEVE_OPT_LEN: usize = 8;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Transparent Ethernet bridging: GENEVE's protocol type for an Ethernet payload.
pub const ETH_P_TEB: u16 = 0x6558;
pub const IPPROTO_UDP: u8 = 17;

/// IANA port for VXLAN.
pub const VXLAN_PORT: u16 = 4789;
/// The port Linux used before IANA assigned 4789; still the kernel driver's default.
pub const VXLAN_PORT_LINUX: u16 = 8472;
/// IANA port for GENEVE.
pub const GENEVE_PORT: u16 = 6081;

/// VXLAN "I" flag: the VNI field is valid.
pub const VXLAN_FLAG_I: u8 = 0x08;

/// Outer source ports are drawn from this range (RFC 7348 section 5 recommends the dynamic
/// range so that ECMP hashes on them).
pub const SRC_PORT_MIN: u16 = 49152;
pub const SRC_PORT_MAX: u16 = 65535;

/// A VTEP address as the maps and metadata hold it: IPv6, or IPv4 mapped into IPv6
/// (`::ffff:a.b.c.d`), in network order. One type for both families keeps the map keys fixed.
pub type VtepAddr = [u8; 16];

/// `a.b.c.d` (network order) as a `VtepAddr`.
pub const fn v4_mapped(v4: [u8; 4]) -> VtepAddr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// The IPv4 address inside a mapped `VtepAddr`, or `None` for a real IPv6 one.
pub const fn mapped_v4(a: &VtepAddr) -> Option<[u8; 4]> {
    let mut i = 0;
    while i < 10 {
        if a[i] != 0 {
            return None;
        }
        i += 1;
    }
    if a[10] != 0xff || a[11] != 0xff {
        return None;
    }
    Some([a[12], a[13], a[14], a[15]])
}

/// `ip` as the maps hold it.
pub const fn vtep_addr(ip: core::net::IpAddr) -> VtepAddr {
    match ip {
        core::net::IpAddr::V4(a) => v4_mapped(a.octets()),
        core::net::IpAddr::V6(a) => a.octets(),
    }
}

/// A `VtepAddr` as the address it holds (IPv4 when mapped).
pub const fn vtep_ip(a: &VtepAddr) -> core::net::IpAddr {
    match mapped_v4(a) {
        Some(v4) => core::net::IpAddr::V4(core::net::Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3])),
        None => core::net::IpAddr::V6(core::net::Ipv6Addr::from_octets(*a)),
    }
}

/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Number of slots in the XSKMAP shared by both programs: an uplink's queue `q` uses slot
/// `OVL_UPLINKS[ifindex] + q` (0 + q for a device not in that map), each overlay port uses
/// `PortInfo::xsk_base + queue`.
pub const XSK_SLOTS: u32 = 64;
/// Where the AF_XDP sockets sit in the XSKMAP: queue `q` of uplink `u` (in configured order,
/// present or not) at `uplink_base(u) + q`, then queue `q` of overlay port `p` at
/// `port_base(p) + q`. The one place this arithmetic lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskSlots {
    pub queues: u32,
    pub uplinks: u32,
}

impl XskSlots {
    pub const fn uplink_base(self, uplink: u32) -> u32 {
        uplink * self.queues
    }

    pub const fn port_base(self, port: u32) -> u32 {
        (self.uplinks + port) * self.queues
    }

    /// Slots needed with `ports` overlay ports.
    pub const fn needed(self, ports: u32) -> u32 {
        (self.uplinks + ports) * self.queues
    }
}

/// Capacity of the uplink map: the most underlay devices one data plane attaches to.
pub const UPLINK_ENTRIES: u32 = 8;
/// Capacity of the FDB map.
pub const FDB_ENTRIES: u32 = 65536;
/// Capacity of the VNI map.
pub const VNI_ENTRIES: u32 = 4096;
/// Capacity of the overlay port map.
pub const PORT_ENTRIES: u32 = 256;
/// Capacity of the next-hop map.
pub const NEXTHOP_ENTRIES: u32 = 4096;
/// Capacity of the UDP port map.
pub const UDP_PORT_ENTRIES: u32 = 16;

/// Map names, as they appear in the object file.
pub mod maps {
    pub const CONFIG: &str = "OVL_CONFIG";
    pub const UDP_PORTS: &str = "OVL_UDP_PORTS";
    pub const VNIS: &str = "OVL_VNIS";
    pub const PORTS: &str = "OVL_PORTS";
    pub const UPLINKS: &str = "OVL_UPLINKS";
    pub const FDB: &str = "OVL_FDB";
    pub const NEXTHOPS: &str = "OVL_NEXTHOPS";
    pub const XSKS: &str = "OVL_XSKS";
    pub const PORT_DEVS: &str = "OVL_PORT_DEVS";
    pub const VNI_COUNTERS: &str = "OVL_VNI_COUNTERS";
    pub const COUNTERS: &str = "OVL_COUNTERS";
    pub const DRAIN_VIPS: &str = "OVL_DRAIN_VIPS";
    pub const DRAIN_FLOWS: &str = "OVL_DRAIN_FLOWS";
}

/// Program names, as they appear in the object file.
pub mod programs {
    /// Attached to the underlay NIC: decapsulates overlay traffic addressed to us.
    pub const UNDERLAY_INGRESS: &str = "ovl_underlay_ingress";
    /// Attached to the data plane's end of each overlay veth: encapsulates what the kernel sends.
    pub const OVERLAY_EGRESS: &str = "ovl_overlay_egress";
    /// TC egress (clsact) on the kernel's end of each overlay veth, "xdp" mode only:
    /// encapsulates known unicast, GSO super-packets whole, and redirects it to the underlay.
    pub const OVERLAY_TC_EGRESS: &str = "ovl_overlay_tc_egress";
}

/// Key of the `OVL_PORT_DEVS` device map: the VNI whose overlay port the entry reaches.
pub const PORT_DEV_ENTRIES: u32 = PORT_ENTRIES;

/// Encapsulation kinds, as stored in maps and metadata.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    Vxlan = 0,
    Geneve = 1,
}

impl Encap {
    pub const fn from_u8(v: u8) -> Option<Encap> {
        match v {
            0 => Some(Encap::Vxlan),
            1 => Some(Encap::Geneve),
            _ => None,
        }
    }

    /// Bytes the encapsulation adds in front of the inner Ethernet frame (outer Ethernet, IPv4
    /// or IPv6, UDP and the tunnel header), given the GENEVE option length in bytes: 50 for
    /// VXLAN over IPv4, 70 over IPv6, as the kernel driver counts.
    pub const fn overhead(self, geneve_opt_len: usize, ipv6: bool) -> usize {
        let ip = if ipv6 { IPV6_HLEN } else { IPV4_HLEN };
        match self {
            Encap::Vxlan => ETH_HLEN + ip + UDP_HLEN + VXLAN_HLEN,
            Encap::Geneve => ETH_HLEN + ip + UDP_HLEN + GENEVE_HLEN + geneve_opt_len,
        }
    }
}

/// Global settings, the single entry of the `OVL_CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Local VTEP address.
    pub local_ip: VtepAddr,
    /// Underlay MTU: the largest outer IP packet the encapsulation may produce.
    pub underlay_mtu: u16,
    /// Non-zero once userspace has filled this entry; until then both programs pass everything.
    pub enabled: u8,
    /// Non-zero in "xdp" mode: decapsulated frames of known sources are redirected to their
    /// overlay port in XDP and the TC program encapsulates known unicast; zero in "afxdp"
    /// mode (every frame through the workers).
    pub fast_path: u8,
    /// MAC address of the underlay interface (outer source MAC).
    pub local_mac: [u8; 6],
    /// Non-zero when the VTEPs talk IPv6 (outer IPv6 headers, UDP checksums computed).
    pub ipv6: u8,
    /// Non-zero: IPv6 UDP with checksum zero is accepted (RFC 6935/6936; the kernel driver's
    /// `udp6zerocsumrx`). Off by default, as in the kernel driver.
    pub udp6_zero_csum_rx: u8,
    /// Interface index of the active underlay device (the TC program redirects to it).
    pub underlay_ifindex: u32,
    /// The longest frame an AF_XDP socket takes in one descriptor (0: no limit known).
    pub xsk_frame_max: u32,
    /// Non-zero ("xdp" mode, IPv6 VTEPs): the egress program redirects what it encapsulated
    /// straight to `underlay_ifindex` instead of handing it to a worker. Userspace sets it
    /// only while that works: the egress program runs in SKB mode, or the uplink advertises
    /// that it takes redirected frames (`NDO_XMIT`).
    pub tx_redirect: u8,
    /// Non-zero while the ingress program may send a frame back out of `underlay_ifindex`
    /// (`XDP_TX`, or a redirect from another uplink): SKB mode, or the uplink advertises
    /// `NDO_XMIT`. Draining needs it.
    pub xdp_tx: u8,
    /// Non-zero while some `OVL_DRAIN_VIPS` entry forwards: only then does the ingress
    /// program look at inner TCP headers (the drain check costs nothing otherwise).
    pub drain: u8,
    pub _pad: u8,
}

/// Tunnel header bit (second byte, reserved in both VXLAN and GENEVE) that marks a frame one
/// member of a pair forwards to the other while draining: the receiver delivers it to the
/// overlay port without learning its inner source (which stays where it is) and with the
/// port's own MAC as the inner destination. Only our data planes send or accept it; the
/// kernel driver drops frames with reserved bits set.
pub const TUN_FLAG_DRAINED: u8 = 0x01;

/// Key of `OVL_DRAIN_VIPS`: a VIP, IPv4 mapped into IPv6 like [`VtepAddr`].
pub type DrainKey = [u8; 16];

/// Value of `OVL_DRAIN_VIPS`: what the ingress program does with TCP to the VIP during a
/// planned switchover.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainVip {
    /// New owner: the previous owner's VTEP, to which segments of connections that have no
    /// socket here are forwarded.
    pub peer: VtepAddr,
    /// Old owner: the MAC of the overlay port the VIP is served on (the inner destination
    /// of a drained frame is rewritten to it).
    pub port_mac: [u8; 6],
    /// Non-zero: forward (new owner).
    pub forward: u8,
    /// Non-zero: accept drained frames for this VIP (the VIP is local here).
    pub accept: u8,
}

/// Key of the `OVL_DRAIN_FLOWS` LRU map: a connection forwarded while draining (addresses
/// IPv4-mapped, ports in network order), so userspace can count flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DrainFlow {
    pub client: [u8; 16],
    pub vip: [u8; 16],
    pub client_port_be: u16,
    pub vip_port_be: u16,
}

/// Capacity of `OVL_DRAIN_VIPS`.
pub const DRAIN_VIP_ENTRIES: u32 = 64;
/// Capacity of `OVL_DRAIN_FLOWS` (an LRU: beyond it the oldest flows are forgotten, which
/// only makes the flow count low, never the forwarding wrong).
pub const DRAIN_FLOW_ENTRIES: u32 = 65_536;

/// Value of the `OVL_UDP_PORTS` hash map, keyed by the UDP destination port (host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpPortInfo {
    /// `Encap` as u8.
    pub encap: u8,
    pub _pad: [u8; 3],
}

impl UdpPortInfo {
    pub const fn new(encap: Encap) -> UdpPortInfo {
        UdpPortInfo {
            encap: encap as u8,
            _pad: [0; 3],
        }
    }
}

/// Value of the `OVL_VNIS` hash map, keyed by the VNI (host order u32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniInfo {
    /// `Encap` as u8; a frame arriving with the other encapsulation is dropped.
    pub encap: u8,
    /// 0, or `GENEVE_OPT_LEN` when `geneve_opt` is added on encapsulation.
    pub geneve_opt_len: u8,
    /// UDP destination port for encapsulated frames (host order).
    pub udp_port: u16,
    pub _pad: u32,
    /// The GENEVE option added on encapsulation, as on the wire (class, type, length, data).
    pub geneve_opt: [u8; GENEVE_OPT_LEN],
}

impl VniInfo {
    /// A VNI carried with `encap` to UDP port `udp_port`, without GENEVE options.
    pub const fn new(encap: Encap, udp_port: u16) -> VniInfo {
        VniInfo {
            encap: encap as u8,
            geneve_opt_len: 0,
            udp_port,
            _pad: 0,
            geneve_opt: [0; GENEVE_OPT_LEN],
        }
    }

    /// The same, adding `opt` (class, type, length 1, 4 bytes of data, as on the wire) to every
    /// GENEVE header.
    pub const fn with_geneve_option(mut self, opt: [u8; GENEVE_OPT_LEN]) -> VniInfo {
        self.geneve_opt = opt;
        self.geneve_opt_len = GENEVE_OPT_LEN as u8;
        self
    }
}

/// Value of the `OVL_PORTS` hash map, keyed by the ifindex of the data plane's end of an
/// overlay veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// VNI of the segment this port belongs to.
    pub vni: u32,
    /// First `OVL_XSKS` slot of this port; its queue `q` uses slot `xsk_base + q`.
    pub xsk_base: u32,
}

/// Key of the `OVL_FDB` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdbKey {
    pub vni: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

impl FdbKey {
    pub const fn new(vni: u32, mac: [u8; 6]) -> FdbKey {
        FdbKey {
            vni,
            mac,
            _pad: [0; 2],
        }
    }
}

/// Value of the `OVL_FDB` hash map: where an inner MAC lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// Remote VTEP address.
    pub remote: VtepAddr,
    /// `FDB_FLAG_*` bits.
    pub flags: u32,
    pub _pad: u32,
    /// When a frame from this MAC behind `remote` was last seen, CLOCK_MONOTONIC ns
    /// (`bpf_ktime_get_ns`). The ingress program refreshes it in place at most every
    /// `FDB_SEEN_REFRESH_NS`, so ageing sees live entries without a map write per frame.
    pub seen_ns: u64,
}

/// The ingress program rewrites `FdbEntry::seen_ns` only when it is older than this.
pub const FDB_SEEN_REFRESH_NS: u64 = 250_000_000;

/// What the FDB says about the inner source of a decapsulated frame: the learning half of the
/// ingress program's forwarding decision (see [`source_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Multicast or all-zero: never learned.
    NotLearnable,
    /// A configured entry: never moves, never ages.
    Static,
    /// Known behind the sending VTEP; `refresh`: its last-seen stamp is due for a rewrite.
    Known { refresh: bool },
    /// Not in the FDB: the workers report it for learning.
    New,
    /// Known behind another VTEP: the workers report the move.
    Moved,
}

impl SourceState {
    /// The frame must go to a worker (which reports the source to the control thread).
    pub const fn needs_learning(self) -> bool {
        matches!(self, SourceState::New | SourceState::Moved)
    }
}

/// Classifies inner source MAC `src`, seen behind VTEP `peer` at `now_ns`, against its FDB
/// entry (if any). Pure, so the program and the host tests share it.
pub const fn source_state(
    entry: Option<&FdbEntry>,
    src: [u8; 6],
    peer: &VtepAddr,
    now_ns: u64,
) -> SourceState {
    let zero =
        src[0] == 0 && src[1] == 0 && src[2] == 0 && src[3] == 0 && src[4] == 0 && src[5] == 0;
    if src[0] & 1 != 0 || zero {
        return SourceState::NotLearnable;
    }
    match entry {
        None => SourceState::New,
        Some(e) if e.flags & FDB_FLAG_STATIC != 0 => SourceState::Static,
        Some(e) if !same_addr(&e.remote, peer) => SourceState::Moved,
        Some(e) => SourceState::Known {
            refresh: now_ns.wrapping_sub(e.seen_ns) > FDB_SEEN_REFRESH_NS,
        },
    }
}

/// Byte-wise equality usable in `const fn` (and cheap for the verifier: no memcmp call).
pub const fn same_addr(a: &VtepAddr, b: &VtepAddr) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The entry was configured, not learned: ageing never removes it.
pub const FDB_FLAG_STATIC: u32 = 1;

/// Value of the `OVL_NEXTHOPS` hash map, keyed by a remote VTEP address (`VtepAddr`):
/// the outer destination MAC to reach it, taken from the kernel's neighbour table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of the per-CPU `OVL_VNI_COUNTERS` hash map, keyed by VNI: what the fast path (the
/// ingress redirect and the TC egress program) carried for the VNI, which never reaches the
/// workers' counters. Userspace creates the entries; the programs only add to them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniCounters {
    /// Decapsulated frames redirected to the overlay port, and their (inner) bytes.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames encapsulated by the TC program (a GSO packet counts its segments), and their
    /// bytes with the outer headers.
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// What a frame handed to an AF_XDP socket is, in `XdpMeta::kind`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    /// Decapsulated on the underlay: deliver the inner frame to the VNI's overlay port.
    Decapped = 1,
    /// Encapsulated on an overlay port: transmit as is on the underlay.
    Encapped = 2,
    /// Broadcast, multicast or unknown unicast from an overlay port, not encapsulated:
    /// replicate to every VTEP in the VNI's flood list.
    Flood = 3,
    /// Known unicast whose remote VTEP has no next-hop MAC yet, not encapsulated: userspace
    /// resolves the neighbour and encapsulates.
    NoNeighbour = 4,
    /// An IPv4 packet with DF from an overlay port, too big for the overlay MTU, not
    /// encapsulated (and counted as `drop_tx_too_big`): userspace answers the sender with
    /// ICMP "fragmentation needed", as the kernel's tunnel drivers do.
    TooBig = 5,
}

impl MetaKind {
    pub const fn from_u8(v: u8) -> Option<MetaKind> {
        match v {
            1 => Some(MetaKind::Decapped),
            2 => Some(MetaKind::Encapped),
            3 => Some(MetaKind::Flood),
            4 => Some(MetaKind::NoNeighbour),
            5 => Some(MetaKind::TooBig),
            _ => None,
        }
    }
}

/// Metadata prepended to every frame the programs redirect to an AF_XDP socket: the program
/// grows the frame at its head (`bpf_xdp_adjust_head`, which every kernel since 6.1 allows in
/// XDP, unlike `bpf_xdp_adjust_meta`, which some builds refuse) and writes this first; the
/// worker reads it with `XdpMeta::from_prefix` and strips it before the frame goes on. Its
/// size is a multiple of 4, so the frame behind it keeps the alignment it had.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMeta {
    /// Magic value `XDP_META_MAGIC`, so userspace can tell our metadata from none.
    pub magic: u16,
    /// `MetaKind` as u8.
    pub kind: u8,
    /// `Encap` as u8 (the encapsulation the frame arrived with or was given).
    pub encap: u8,
    /// VNI of the frame.
    pub vni: u32,
    /// Decapped: outer source address. Encapped/NoNeighbour: remote VTEP. Flood: zero.
    pub peer_ip: VtepAddr,
    /// Decapped: outer UDP source port. Otherwise 0. Network order.
    pub peer_port_be: u16,
    /// `META_FLAG_*` bits.
    pub flags: u16,
}

/// Decapped: the inner source MAC is new in the FDB, or was known behind another VTEP, so the
/// worker reports it for learning. Frames of known sources never carry it.
pub const META_FLAG_LEARN: u16 = 1;

pub const XDP_META_MAGIC: u16 = 0x0e7a;
pub const XDP_META_LEN: usize = core::mem::size_of::<XdpMeta>();
const _: () = assert!(XDP_META_LEN.is_multiple_of(4) && XDP_META_LEN <= 32);

impl XdpMeta {
    /// The metadata at the start of `bytes` (as the program wrote it: native byte order,
    /// `repr(C)` layout), if `bytes` is long enough and carries the magic and a known kind.
    pub fn from_prefix(bytes: &[u8]) -> Option<XdpMeta> {
        let b: &[u8; XDP_META_LEN] = bytes.get(..XDP_META_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let mut peer_ip = [0u8; 16];
        peer_ip.copy_from_slice(&b[8..24]);
        let meta = XdpMeta {
            magic: u16_at(0),
            kind: b[2],
            encap: b[3],
            vni: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            peer_ip,
            peer_port_be: u16_at(24),
            flags: u16_at(26),
        };
        (meta.magic == XDP_META_MAGIC && MetaKind::from_u8(meta.kind).is_some()).then_some(meta)
    }
}

/// Outcomes counted by the programs in the per-CPU `OVL_COUNTERS` array, one slot each. Every
/// packet the programs see moves exactly one of these.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    // Underlay ingress: passed to the kernel untouched.
    /// Programs not configured yet.
    PassDisabled = 0,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    PassNonIp,
    /// IPv6 with extension headers before UDP: the kernel's IPv6 layer judges it.
    PassIpv6ExtHeaders,
    /// IPv4 not addressed to the local VTEP, or not UDP.
    PassNotForUs,
    /// UDP to the local VTEP on a port that is not an overlay port.
    PassOtherUdp,
    /// Headers end before we could tell whether the frame is overlay traffic.
    PassTruncated,
    /// Non-first IPv4 fragment to the local VTEP (no UDP header to judge it by).
    PassFragment,

    // Underlay ingress: decapsulated and redirected to an AF_XDP socket.
    RxVxlan,
    RxGeneve,
    // Underlay ingress, "xdp" mode: decapsulated and redirected to the overlay port in XDP.
    RxFastVxlan,
    RxFastGeneve,
    /// "xdp" mode, but the VNI's port is not in the device map (not ready): to the worker.
    RxFastFallback,
    /// "xdp" mode, a new or moved source in a frame too long for one UMEM frame: delivered by
    /// the fast path without learning (a later, shorter frame teaches it), not dropped.
    RxFastUnlearned,

    // Underlay ingress: overlay traffic dropped, by reason.
    DropTruncated,
    DropIpv4Options,
    DropIpv4Fragment,
    DropIpv4Checksum,
    DropIpLength,
    DropUdpLength,
    /// Outer IPv6: the UDP checksum is wrong.
    DropUdpChecksum,
    /// Outer IPv6: UDP checksum zero, not accepted unless configured (RFC 6936).
    DropUdpZeroChecksum,
    DropVxlanFlags,
    DropGeneveVersion,
    DropGeneveOptLen,
    DropGeneveCritical,
    DropGeneveProto,
    DropGeneveOam,
    DropUnknownVni,
    DropEncapMismatch,
    DropInnerTruncated,
    DropInnerTooBig,

    // Overlay egress.
    /// Encapsulated and redirected.
    TxVxlan,
    TxGeneve,
    /// Encapsulated (IPv6 VTEPs, "xdp" mode) and redirected straight to the underlay.
    TxFastVxlan,
    TxFastGeneve,
    /// Broadcast or multicast handed to userspace for head-end replication.
    TxFlood,
    /// Unknown unicast handed to userspace for head-end replication.
    TxUnknownUnicast,
    /// Known unicast without next-hop MAC handed to userspace.
    TxNoNeighbour,
    /// Frame shorter than an Ethernet header.
    DropTxTruncated,
    /// Frame arrived on an interface that is not an overlay port.
    DropTxNoPort,
    /// Port's VNI missing from the VNI map.
    DropTxUnknownVni,
    /// Encapsulated frame would exceed the underlay MTU.
    DropTxTooBig,

    // Both directions.
    /// No AF_XDP socket in the XSKMAP slot: the frame cannot reach a worker.
    DropNoSocket,
    /// A helper (adjust_head/meta/tail) failed.
    DropInternal,

    // TC egress on the kernel's end of an overlay port ("xdp" mode); its frames move one of
    // these, and the ones it hands on then move one of the overlay egress counters above.
    /// Encapsulated (GSO super-packets whole) and redirected to the underlay.
    TcTxVxlan,
    TcTxGeneve,
    /// Broadcast, multicast, unknown unicast, unresolved next hop, too big, not IPv4, or the
    /// program disabled: handed on unchanged to the XDP program and the workers.
    TcPass,
    /// Known unicast the kernel could not encapsulate (`bpf_skb_adjust_room` refused it):
    /// handed on unchanged to the workers' path.
    TcFallback,

    // Underlay ingress, draining (planned switchover).
    /// New owner: a TCP segment to a draining VIP with no socket here (not a SYN), sent on to
    /// the previous owner.
    TxDrained,
    /// New owner: such a segment could not be sent on (no next hop to the previous owner, or
    /// the uplink takes no frames from XDP): delivered here, where the kernel resets it.
    RxDrainUnsent,
    /// Old owner: a drained frame, delivered to the VIP's overlay port unlearned.
    RxDrained,
    /// A drained frame for an address that does not accept them (not a VIP served here).
    DropDrainRefused,
}

impl Counter {
    /// Number of counters (size of the `OVL_COUNTERS` array).
    pub const COUNT: u32 = Counter::DropDrainRefused as u32 + 1;

    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT as usize] = [
        Counter::PassDisabled,
        Counter::PassNonIp,
        Counter::PassIpv6ExtHeaders,
        Counter::PassNotForUs,
        Counter::PassOtherUdp,
        Counter::PassTruncated,
        Counter::PassFragment,
        Counter::RxVxlan,
        Counter::RxGeneve,
        Counter::RxFastVxlan,
        Counter::RxFastGeneve,
        Counter::RxFastFallback,
        Counter::RxFastUnlearned,
        Counter::DropTruncated,
        Counter::DropIpv4Options,
        Counter::DropIpv4Fragment,
        Counter::DropIpv4Checksum,
        Counter::DropIpLength,
        Counter::DropUdpLength,
        Counter::DropUdpChecksum,
        Counter::DropUdpZeroChecksum,
        Counter::DropVxlanFlags,
        Counter::DropGeneveVersion,
        Counter::DropGeneveOptLen,
        Counter::DropGeneveCritical,
        Counter::DropGeneveProto,
        Counter::DropGeneveOam,
        Counter::DropUnknownVni,
        Counter::DropEncapMismatch,
        Counter::DropInnerTruncated,
        Counter::DropInnerTooBig,
        Counter::TxVxlan,
        Counter::TxGeneve,
        Counter::TxFastVxlan,
        Counter::TxFastGeneve,
        Counter::TxFlood,
        Counter::TxUnknownUnicast,
        Counter::TxNoNeighbour,
        Counter::DropTxTruncated,
        Counter::DropTxNoPort,
        Counter::DropTxUnknownVni,
        Counter::DropTxTooBig,
        Counter::DropNoSocket,
        Counter::DropInternal,
        Counter::TcTxVxlan,
        Counter::TcTxGeneve,
        Counter::TcPass,
        Counter::TcFallback,
        Counter::TxDrained,
        Counter::RxDrainUnsent,
        Counter::RxDrained,
        Counter::DropDrainRefused,
    ];

    /// Stable snake_case name, used in stats output and Prometheus labels.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassDisabled => "pass_disabled",
            Counter::PassNonIp => "pass_non_ip",
            Counter::PassIpv6ExtHeaders => "pass_ipv6_ext_headers",
            Counter::PassNotForUs => "pass_not_for_us",
            Counter::PassOtherUdp => "pass_other_udp",
            Counter::PassTruncated => "pass_truncated",
            Counter::PassFragment => "pass_fragment",
            Counter::RxVxlan => "rx_vxlan",
            Counter::RxGeneve => "rx_geneve",
            Counter::RxFastVxlan => "rx_fast_vxlan",
            Counter::RxFastGeneve => "rx_fast_geneve",
            Counter::RxFastFallback => "rx_fast_fallback",
            Counter::RxFastUnlearned => "rx_fast_unlearned",
            Counter::DropTruncated => "drop_truncated",
            Counter::DropIpv4Options => "drop_ipv4_options",
            Counter::DropIpv4Fragment => "drop_ipv4_fragment",
            Counter::DropIpv4Checksum => "drop_ipv4_checksum",
            Counter::DropIpLength => "drop_ip_length",
            Counter::DropUdpLength => "drop_udp_length",
            Counter::DropUdpChecksum => "drop_udp_checksum",
            Counter::DropUdpZeroChecksum => "drop_udp_zero_checksum",
            Counter::DropVxlanFlags => "drop_vxlan_flags",
            Counter::DropGeneveVersion => "drop_geneve_version",
            Counter::DropGeneveOptLen => "drop_geneve_opt_len",
            Counter::DropGeneveCritical => "drop_geneve_critical",
            Counter::DropGeneveProto => "drop_geneve_proto",
            Counter::DropGeneveOam => "drop_geneve_oam",
            Counter::DropUnknownVni => "drop_unknown_vni",
            Counter::DropEncapMismatch => "drop_encap_mismatch",
            Counter::DropInnerTruncated => "drop_inner_truncated",
            Counter::DropInnerTooBig => "drop_inner_too_big",
            Counter::TxVxlan => "tx_vxlan",
            Counter::TxGeneve => "tx_geneve",
            Counter::TxFastVxlan => "tx_fast_vxlan",
            Counter::TxFastGeneve => "tx_fast_geneve",
            Counter::TxFlood => "tx_flood",
            Counter::TxUnknownUnicast => "tx_unknown_unicast",
            Counter::TxNoNeighbour => "tx_no_neighbour",
            Counter::DropTxTruncated => "drop_tx_truncated",
            Counter::DropTxNoPort => "drop_tx_no_port",
            Counter::DropTxUnknownVni => "drop_tx_unknown_vni",
            Counter::DropTxTooBig => "drop_tx_too_big",
            Counter::DropNoSocket => "drop_no_socket",
            Counter::DropInternal => "drop_internal",
            Counter::TcTxVxlan => "tc_tx_vxlan",
            Counter::TcTxGeneve => "tc_tx_geneve",
            Counter::TcPass => "tc_pass",
            Counter::TcFallback => "tc_fallback",
            Counter::TxDrained => "tx_drained",
            Counter::RxDrainUnsent => "rx_drain_unsent",
            Counter::RxDrained => "rx_drained",
            Counter::DropDrainRefused => "drop_drain_refused",
        }
    }

    /// True for counters that record a dropped frame.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Counter::DropTruncated
                | Counter::DropIpv4Options
                | Counter::DropIpv4Fragment
                | Counter::DropIpv4Checksum
                | Counter::DropIpLength
                | Counter::DropUdpLength
                | Counter::DropUdpChecksum
                | Counter::DropUdpZeroChecksum
                | Counter::DropVxlanFlags
                | Counter::DropGeneveVersion
                | Counter::DropGeneveOptLen
                | Counter::DropGeneveCritical
                | Counter::DropGeneveProto
                | Counter::DropGeneveOam
                | Counter::DropUnknownVni
                | Counter::DropEncapMismatch
                | Counter::DropInnerTruncated
                | Counter::DropInnerTooBig
                | Counter::DropTxTruncated
                | Counter::DropTxNoPort
                | Counter::DropTxUnknownVni
                | Counter::DropTxTooBig
                | Counter::DropNoSocket
                | Counter::DropInternal
                | Counter::DropDrainRefused
        )
    }
}

/// Outer UDP source port for an inner flow hash: folds the hash into the dynamic port range.
pub const fn src_port_from_hash(hash: u32) -> u16 {
    let span = (SRC_PORT_MAX - SRC_PORT_MIN) as u32 + 1;
    SRC_PORT_MIN + ((hash ^ (hash >> 16)) % span) as u16
}

/// A small, deterministic 32-bit mixer for the inner flow hash (no allocation, no tables, so
/// it runs in the XDP program and in userspace alike and both agree on the result).
pub const fn mix32(mut h: u32, v: u32) -> u32 {
    h ^= v.wrapping_mul(0x9e37_79b1);
    h = h.rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] structs of integers and byte arrays with explicit
    // padding fields, so every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UdpPortInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VniInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PortInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FdbKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FdbEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NextHop {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::XdpMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VniCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DrainVip {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DrainFlow {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsk_slots_never_overlap() {
        let s = XskSlots {
            queues: 3,
            uplinks: 2,
        };
        // Every slot below `needed` is used exactly once.
        let mut used = [0u8; 18];
        for q in 0..3 {
            for u in 0..2 {
                used[(s.uplink_base(u) + q) as usize] += 1;
            }
            for p in 0..4 {
                used[(s.port_base(p) + q) as usize] += 1;
            }
        }
        assert_eq!(s.needed(4), 18);
        assert!(used.iter().all(|&n| n == 1), "{used:?}");
    }

    #[test]
    fn counters_are_dense_and_named_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{c:?} out of order");
        }
        for a in Counter::ALL {
            for b in Counter::ALL {
                if a != b {
                    assert_ne!(a.name(), b.name());
                }
            }
        }
    }

    #[test]
    fn metadata_prefix_reads_what_the_program_writes() {
        use core::mem::offset_of;
        // The parser's offsets are the struct's.
        assert_eq!(offset_of!(XdpMeta, kind), 2);
        assert_eq!(offset_of!(XdpMeta, encap), 3);
        assert_eq!(offset_of!(XdpMeta, vni), 4);
        assert_eq!(offset_of!(XdpMeta, peer_ip), 8);
        assert_eq!(offset_of!(XdpMeta, peer_port_be), 24);
        assert_eq!(offset_of!(XdpMeta, flags), 26);
        let mut golden = [0u8; XDP_META_LEN + 14];
        golden[..2].copy_from_slice(&XDP_META_MAGIC.to_ne_bytes());
        golden[2] = MetaKind::Decapped as u8;
        golden[3] = Encap::Geneve as u8;
        golden[4..8].copy_from_slice(&4096u32.to_ne_bytes());
        golden[8..24].copy_from_slice(&v4_mapped([10, 1, 2, 3]));
        golden[24..26].copy_from_slice(&[0x12, 0x34]);
        golden[26..28].copy_from_slice(&META_FLAG_LEARN.to_ne_bytes());
        let meta = XdpMeta::from_prefix(&golden).expect("ours");
        assert_eq!(
            meta,
            XdpMeta {
                magic: XDP_META_MAGIC,
                kind: MetaKind::Decapped as u8,
                encap: Encap::Geneve as u8,
                vni: 4096,
                peer_ip: v4_mapped([10, 1, 2, 3]),
                peer_port_be: u16::from_ne_bytes([0x12, 0x34]),
                flags: META_FLAG_LEARN,
            }
        );
        // Too short, another magic, an unknown kind: not ours.
        assert_eq!(XdpMeta::from_prefix(&golden[..XDP_META_LEN - 1]), None);
        assert_eq!(XdpMeta::from_prefix(&[]), None);
        let mut other = golden;
        other[0] ^= 1;
        assert_eq!(XdpMeta::from_prefix(&other), None);
        let mut other = golden;
        other[2] = 0;
        assert_eq!(XdpMeta::from_prefix(&other), None);
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        use core::mem::size_of;
        assert_eq!(size_of::<Config>(), 40);
        assert_eq!(size_of::<UdpPortInfo>(), 4);
        assert_eq!(size_of::<VniInfo>(), 16);
        assert_eq!(size_of::<PortInfo>(), 8);
        assert_eq!(size_of::<FdbKey>(), 12);
        assert_eq!(size_of::<FdbEntry>(), 32);
        assert_eq!(size_of::<NextHop>(), 8);
        assert_eq!(size_of::<XdpMeta>(), 28);
        assert_eq!(size_of::<DrainVip>(), 24);
        assert_eq!(size_of::<DrainFlow>(), 36);
    }

    #[test]
    fn source_state_decides_learning() {
        const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 4];
        const PEER: VtepAddr = v4_mapped([10, 0, 1, 2]);
        const OTHER: VtepAddr = v4_mapped([10, 0, 1, 3]);
        const NOW: u64 = 10_000_000_000;
        let entry = |remote, flags, seen_ns| FdbEntry {
            remote,
            flags,
            _pad: 0,
            seen_ns,
        };
        use SourceState::*;
        let cases = [
            (None, SRC, New),
            (Some(entry(PEER, 0, NOW)), SRC, Known { refresh: false }),
            (
                Some(entry(PEER, 0, NOW - FDB_SEEN_REFRESH_NS)),
                SRC,
                Known { refresh: false },
            ),
            (
                Some(entry(PEER, 0, NOW - FDB_SEEN_REFRESH_NS - 1)),
                SRC,
                Known { refresh: true },
            ),
            // A stamp of 0 (never seen) or from the future (clock read elsewhere) refreshes.
            (Some(entry(PEER, 0, 0)), SRC, Known { refresh: true }),
            (Some(entry(PEER, 0, NOW + 1)), SRC, Known { refresh: true }),
            (Some(entry(OTHER, 0, NOW)), SRC, Moved),
            (Some(entry(OTHER, FDB_FLAG_STATIC, NOW)), SRC, Static),
            (Some(entry(PEER, FDB_FLAG_STATIC, 0)), SRC, Static),
            (None, [0x01, 0, 0x5e, 0, 0, 1], NotLearnable),
            (None, [0xff; 6], NotLearnable),
            (None, [0; 6], NotLearnable),
        ];
        for (e, src, want) in cases {
            assert_eq!(
                source_state(e.as_ref(), src, &PEER, NOW),
                want,
                "{e:?} {src:?}"
            );
        }
        assert!(New.needs_learning() && Moved.needs_learning());
        assert!(!Static.needs_learning() && !NotLearnable.needs_learning());
        assert!(!Known { refresh: true }.needs_learning());
    }

    #[test]
    fn src_port_stays_in_dynamic_range() {
        for h in [0u32, 1, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX] {
            let p = src_port_from_hash(h);
            assert!(p >= SRC_PORT_MIN, "{p}");
        }
    }

    #[test]
    fn overhead_matches_header_sizes() {
        assert_eq!(Encap::Vxlan.overhead(0, false), 50);
        assert_eq!(Encap::Geneve.overhead(0, false), 50);
        assert_eq!(Encap::Geneve.overhead(GENEVE_OPT_LEN, false), 58);
        assert_eq!(Encap::Vxlan.overhead(0, true), 70);
        assert_eq!(Encap::Geneve.overhead(GENEVE_OPT_LEN, true), 78);
    }

    #[test]
    fn ipv4_maps_into_vtep_addresses_and_back() {
        let a = v4_mapped([10, 0, 1, 2]);
        assert_eq!(mapped_v4(&a), Some([10, 0, 1, 2]));
        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        v6[15] = 2;
        assert_eq!(mapped_v4(&v6), None);
        // ::ffff:0:0/96 only; ::a.b.c.d (compatible, deprecated) is not IPv4 here.
        let mut compat = a;
        compat[10] = 0;
        assert_eq!(mapped_v4(&compat), None);
        assert!(same_addr(&a, &v4_mapped([10, 0, 1, 2])));
        assert!(!same_addr(&a, &v6));
    }
}
