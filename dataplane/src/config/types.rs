//! The configuration's types: what a valid file decodes to, its limits and defaults, and the
//! small conversions (keywords, addresses, MACs) the file's values go through.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use ovl_common::{Encap, FDB_ENTRIES, GENEVE_OPT_LEN, VNI_MAX};
use ovl_netlink::IFNAME_MAX;

/// Worker threads (one AF_XDP socket each per interface) allowed.
pub const QUEUES: RangeInclusive<u32> = 1..=8;
/// Frames a worker handles per batch.
pub const BATCH_SIZE: RangeInclusive<u32> = 1..=1024;
pub const DEFAULT_BATCH_SIZE: u32 = 64;
/// UMEM frames per AF_XDP socket (also a power of two).
pub const FRAMES_PER_QUEUE: RangeInclusive<u32> = 64..=65536;
pub const DEFAULT_FRAMES_PER_QUEUE: u32 = 4096;
/// How long an idle worker keeps polling its rings before it sleeps in poll(), in µs.
pub const SPIN_US: RangeInclusive<u32> = 0..=100_000;
pub const DEFAULT_SPIN_US: u32 = 0;
/// `SO_BUSY_POLL` time of the AF_XDP sockets in µs; 0 turns busy polling off.
pub const BUSY_POLL_US: RangeInclusive<u32> = 0..=10_000;
pub const DEFAULT_BUSY_POLL_US: u32 = 0;
/// Lifetime of learned FDB entries, in seconds.
pub const AGEING_SECS: RangeInclusive<u64> = 1..=86400;
pub const DEFAULT_AGEING_SECS: u64 = 300;
/// Learned FDB entries (the FDB map also holds the static ones).
pub const MAX_LEARNED: RangeInclusive<usize> = 1..=FDB_ENTRIES as usize;
pub const DEFAULT_MAX_LEARNED: usize = 4096;
/// Valid VNIs (0 is reserved here: it is what an unset field looks like).
pub const VNI_RANGE: RangeInclusive<u32> = 1..=VNI_MAX;
/// Where the control socket goes unless configured: `<dir>/<underlay>.sock`.
pub const CONTROL_SOCKET_DIR: &str = "/run/ovl-dataplane";
/// Longest overlay interface name: the data plane's end is `<name>-dp` and must fit
/// IFNAMSIZ (16 bytes including the NUL).
pub const MAX_OVERLAY_IFNAME: usize = IFNAME_MAX - DP_SUFFIX.len();
/// Suffix of the data plane's end of an overlay veth.
pub const DP_SUFFIX: &str = "-dp";

/// CPU numbers must fit a `cpu_set_t` (CPU_SETSIZE).
pub(super) const MAX_CPU: usize = 1023;
/// `sun_path` is 108 bytes including the NUL.
pub(super) const MAX_SOCKET_PATH: usize = 107;
/// Minimum IPv4 MTU (RFC 791) and IPv6 MTU (RFC 8200).
pub(super) const MIN_MTU_V4: u32 = 68;
pub(super) const MIN_MTU_V6: u32 = 1280;
pub(super) const MAX_MTU: u32 = 65535;

/// Bytes of one UMEM frame (the workers build their UMEMs with it).
pub const UMEM_FRAME_SIZE: u32 = 4096;
/// Room the kernel keeps in front of a frame it hands an AF_XDP socket (XDP_PACKET_HEADROOM).
const XSK_RX_HEADROOM: u32 = 256;
/// The longest frame one AF_XDP descriptor carries behind the metadata the programs prepend
/// (the programs deliver a longer one that only wanted learning by the fast path instead).
pub const MAX_XSK_FRAME: u32 = UMEM_FRAME_SIZE - XSK_RX_HEADROOM - ovl_common::XDP_META_LEN as u32;
/// Outer Ethernet header with one VLAN tag (the ingress program accepts one).
const OUTER_ETH_MAX: u32 = 18;

/// The largest overlay MTU whose encapsulated frames fit one UMEM frame: the workers take
/// one descriptor per frame (AF_XDP multi-buffer, `XDP_USE_SG`, is not used yet), so a
/// longer frame is dropped by the kernel at the socket (`xsk_rx_dropped`).
pub fn one_frame_mtu(overhead: u32) -> u32 {
    MAX_XSK_FRAME - OUTER_ETH_MAX - overhead
}
/// GENEVE option length field value: the data is one 4-byte word.
pub(super) const GENEVE_OPT_WORDS: u8 = 1;

/// Gives an enum written as one of a few keywords in the file `as_str` (the keyword),
/// `Display` and `FromStr` (whose error lists the keywords).
macro_rules! keywords {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<$ty, ParseError> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(ParseError::expected_one_of(&[$($name),+], s)),
                }
            }
        }
    };
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub underlay: Underlay,
    pub datapath: Datapath,
    pub workers: Workers,
    pub stats: Stats,
    pub fdb: FdbConfig,
    pub vnis: Vec<Vni>,
}

/// `[underlay]`: the NICs (uplinks) the ingress program attaches to and our VTEP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Uplinks in order of preference (`interface = "x"` is a list of one). We send on one
    /// at a time (active-backup) and receive on every present one.
    pub interfaces: Vec<String>,
    /// Our VTEP address; IPv4 or IPv6, and every remote VTEP is of the same family.
    pub local_ip: IpAddr,
    pub xdp_mode: XdpModeCfg,
    /// Go back to a more preferred uplink when it returns (after `failback_hold`).
    pub failback: bool,
    /// How long a returning uplink must stay up before it takes the traffic back.
    pub failback_hold: Duration,
    /// IPv6 underlay: accept UDP checksum zero (RFC 6935/6936), like the kernel driver's
    /// `udp6zerocsumrx`. Off by default, as there. We always send checksums.
    pub udp6_zero_csum_rx: bool,
}

impl Underlay {
    /// The most preferred uplink (names the default control socket).
    pub fn primary(&self) -> &str {
        self.interfaces.first().map_or("", String::as_str)
    }

    /// One uplink, failback on with the default hold-down.
    pub fn single(interface: &str, local_ip: impl Into<IpAddr>) -> Underlay {
        Underlay {
            interfaces: vec![interface.to_string()],
            local_ip: local_ip.into(),
            xdp_mode: XdpModeCfg::default(),
            failback: true,
            failback_hold: Duration::from_millis(DEFAULT_FAILBACK_HOLD_MS),
            udp6_zero_csum_rx: false,
        }
    }

    /// Whether the VTEPs talk IPv6 (70 bytes of overhead for VXLAN instead of 50).
    pub fn ipv6(&self) -> bool {
        self.local_ip.is_ipv6()
    }
}

/// Default hold-down before failback: longer than the 1-3 s period of a thrashing link.
pub const DEFAULT_FAILBACK_HOLD_MS: u64 = 5_000;
/// Range of `underlay.failback_hold_ms`.
pub const FAILBACK_HOLD_MS: RangeInclusive<u64> = 0..=600_000;

/// `[datapath]`: where frames are forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Datapath {
    pub mode: DatapathMode,
}

/// `[datapath] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatapathMode {
    /// Known unicast never leaves the kernel's eBPF layer: XDP decapsulates and redirects to
    /// the overlay port, a TC program encapsulates and redirects to the underlay. The workers
    /// handle the rest (flooding, learning, unresolved next hops, ICMP).
    #[default]
    Xdp,
    /// Every frame through the AF_XDP workers, for users who process frames in userspace.
    Afxdp,
}

keywords!(DatapathMode {
    Xdp => "xdp",
    Afxdp => "afxdp",
});

/// How the XDP programs are attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdpModeCfg {
    /// Driver (native) mode, falling back to SKB mode with a warning.
    #[default]
    Auto,
    Driver,
    Skb,
}

keywords!(XdpModeCfg {
    Auto => "auto",
    Driver => "driver",
    Skb => "skb",
});

/// `[workers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers {
    pub queues: u32,
    /// One CPU per queue to pin its worker to; `None` leaves scheduling to the kernel.
    pub cpus: Option<Vec<usize>>,
    pub batch_size: u32,
    pub frames_per_queue: u32,
    /// After its last work, a worker keeps polling for this long before it sleeps: a frame
    /// that comes within it is taken without a wake-up, at the cost of a busy CPU.
    pub spin_us: u32,
    /// Preferred busy polling of the AF_XDP sockets (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` =
    /// this many µs, budget = batch size) with the devices' interrupts deferred
    /// (`napi_defer_hard_irqs`, `gro_flush_timeout`), so the workers run the receive
    /// processing themselves; 0: off.
    pub busy_poll_us: u32,
    /// AF_XDP zero-copy for the underlay sockets.
    pub zero_copy: ZeroCopy,
}

/// `[workers] zero_copy`: whether the underlay's AF_XDP sockets run zero-copy. The overlay
/// ports are veths, which never do, and a UMEM takes the mode of its first socket, so with
/// zero-copy possible the underlay gets a UMEM of its own and frames crossing between it and
/// the ports are copied once in userspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Try zero-copy per underlay socket, fall back to copy mode (logged).
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode, one UMEM shared by the underlay and the ports (no copy between them).
    Off,
}

keywords!(ZeroCopy {
    Auto => "auto",
    On => "on",
    Off => "off",
});

/// `[stats]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Prometheus endpoint, loopback only.
    pub prometheus: Option<SocketAddr>,
    /// Unix socket for `dataplane` CLI queries and the controller; defaulted from the
    /// underlay's name when not configured.
    pub control_socket: PathBuf,
}

/// `[fdb]`: limits of MAC learning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbConfig {
    pub ageing: Duration,
    pub max_learned: usize,
}

/// One `[[vni]]`: an overlay segment, its kernel-side interface and its remote VTEPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vni {
    pub id: u32,
    pub encap: Encap,
    /// UDP destination port (defaulted from `encap` when not configured).
    pub port: u16,
    /// The kernel's end of the overlay veth; the data plane's end is [`Vni::dp_interface`].
    pub interface: String,
    pub address: Option<IpCidr>,
    pub mac: Option<[u8; 6]>,
    /// Configured overlay MTU; the effective one (defaulted from the underlay) is in
    /// [`HostReport::vnis`].
    pub mtu: Option<u32>,
    /// Remote VTEPs that get broadcast, multicast and unknown unicast (head-end replication).
    pub flood: Vec<IpAddr>,
    pub fdb: Vec<StaticFdb>,
    /// The GENEVE option added to every encapsulated frame, as on the wire: class (2 bytes,
    /// big-endian), type, length in 4-byte words (1), data (4 bytes).
    pub geneve_option: Option<[u8; GENEVE_OPT_LEN]>,
}

impl Vni {
    /// Name of the data plane's end of this VNI's veth pair: `<interface>-dp`.
    pub fn dp_interface(&self) -> String {
        format!("{}{DP_SUFFIX}", self.interface)
    }

    /// Bytes the encapsulation adds in front of an inner frame of this VNI, over IPv6 VTEPs
    /// when `ipv6`.
    pub fn overhead(&self, ipv6: bool) -> u32 {
        let opt_len = if self.geneve_option.is_some() {
            GENEVE_OPT_LEN
        } else {
            0
        };
        self.encap.overhead(opt_len, ipv6) as u32
    }
}

/// A configured (never aged out) FDB entry: inner MAC behind a remote VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticFdb {
    pub mac: [u8; 6],
    pub remote: IpAddr,
}

/// An address with a prefix length, `192.168.0.10/24` or `fd00::10/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// Why a string is not a valid value of one of this module's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub(super) String);

impl ParseError {
    /// `expected "a", "b" or "c", got "x"`.
    fn expected_one_of(keywords: &[&str], got: &str) -> ParseError {
        let quoted: Vec<String> = keywords.iter().map(|k| format!("{k:?}")).collect();
        let list = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.concat(),
        };
        ParseError(format!("expected {list}, got {got:?}"))
    }
}

impl IpCidr {
    /// Longest prefix for the address family.
    pub fn max_prefix_len(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpCidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<IpCidr, ParseError> {
        let bad = || {
            ParseError(format!(
                "expected an address/prefix like 192.168.0.10/24, got {s:?}"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        // Only plain decimal digits: u8's parser would also take "+24".
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        let cidr = IpCidr { addr, prefix_len };
        if prefix_len > cidr.max_prefix_len() {
            return Err(ParseError(format!(
                "prefix length {prefix_len} is too long for {addr} (at most {})",
                cidr.max_prefix_len()
            )));
        }
        Ok(cidr)
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits of either case), through the project's one MAC parser.
pub fn parse_mac(s: &str) -> Result<[u8; 6], ParseError> {
    s.parse::<ovl_wire::EthernetAddress>()
        .map(|a| a.0)
        .map_err(|_| {
            ParseError(format!(
                "expected a MAC address like 02:00:00:00:00:0a, got {s:?}"
            ))
        })
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub use ovl_netlink::format_mac;

/// Name of an encapsulation as written in the file.
pub fn encap_name(encap: Encap) -> &'static str {
    match encap {
        Encap::Vxlan => "vxlan",
        Encap::Geneve => "geneve",
    }
}

/// The IANA port of an encapsulation, used when a VNI sets none.
pub fn default_port(encap: Encap) -> u16 {
    match encap {
        Encap::Vxlan => ovl_common::VXLAN_PORT,
        Encap::Geneve => ovl_common::GENEVE_PORT,
    }
}

/// The control socket used when `[stats] control_socket` is not set.
pub fn default_control_socket(underlay_interface: &str) -> PathBuf {
    Path::new(CONTROL_SOCKET_DIR).join(format!("{underlay_interface}.sock"))
}

/// The GENEVE option TLV as on the wire: class, type, length 1, 4 bytes of data.
pub fn geneve_option_bytes(class: u16, opt_type: u8, data: [u8; 4]) -> [u8; GENEVE_OPT_LEN] {
    let [c0, c1] = class.to_be_bytes();
    let [d0, d1, d2, d3] = data;
    [c0, c1, opt_type, GENEVE_OPT_WORDS, d0, d1, d2, d3]
}

impl Default for Workers {
    fn default() -> Workers {
        Workers {
            queues: *QUEUES.start(),
            cpus: None,
            batch_size: DEFAULT_BATCH_SIZE,
            frames_per_queue: DEFAULT_FRAMES_PER_QUEUE,
            spin_us: DEFAULT_SPIN_US,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

impl Default for FdbConfig {
    fn default() -> FdbConfig {
        FdbConfig {
            ageing: Duration::from_secs(DEFAULT_AGEING_SECS),
            max_learned: DEFAULT_MAX_LEARNED,
        }
    }
}

impl Stats {
    /// No Prometheus endpoint, the control socket at its default place.
    pub fn default_for(underlay_interface: &str) -> Stats {
        Stats {
            prometheus: None,
            control_socket: default_control_socket(underlay_interface),
        }
    }
}

impl Config {
    /// Where the sockets sit in the XSKMAP.
    pub fn xsk_slots(&self) -> ovl_common::XskSlots {
        ovl_common::XskSlots {
            queues: self.workers.queues,
            uplinks: self.underlay.interfaces.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip_and_list_themselves() {
        for mode in [DatapathMode::Xdp, DatapathMode::Afxdp] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for zc in [ZeroCopy::Auto, ZeroCopy::On, ZeroCopy::Off] {
            assert_eq!(zc.as_str().parse(), Ok(zc));
        }
        for xdp in [XdpModeCfg::Auto, XdpModeCfg::Driver, XdpModeCfg::Skb] {
            assert_eq!(xdp.as_str().parse(), Ok(xdp));
        }
        assert_eq!(
            "XDP".parse::<DatapathMode>().unwrap_err().to_string(),
            "expected \"xdp\" or \"afxdp\", got \"XDP\""
        );
        assert_eq!(
            "".parse::<XdpModeCfg>().unwrap_err().to_string(),
            "expected \"auto\", \"driver\" or \"skb\", got \"\""
        );
        assert_eq!(
            ParseError::expected_one_of(&["only"], "x").to_string(),
            "expected \"only\", got \"x\""
        );
    }
}
