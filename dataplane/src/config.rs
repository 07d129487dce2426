//! The data plane's configuration file (`dataplane run --config FILE`, TOML): parsing,
//! validation and the checks against the host, all done before anything on the host is
//! touched.
//!
//! Three steps, each testable on its own:
//! - [`Config::parse`]: TOML syntax, value types, unknown or missing keys, then
//!   [`Config::validate`] (ranges and rules across fields; no host access);
//! - [`HostInfo::gather`]: what the host looks like (interfaces, their MTUs and IPv4
//!   addresses, the CPUs we may run on), read in the calling thread's network namespace;
//! - [`Config::check_host`]: the config against a [`HostInfo`], pure, giving a [`HostReport`]
//!   with the effective overlay MTU of every VNI.
//!
//! [`Config::load`] does all three. Every error is one line, `config FIELD: REASON`, where
//! FIELD is the key's path in the file (`vni[1].port`, `workers.cpus[0]`); TOML syntax errors
//! give the line and column instead.

use std::{
    collections::HashMap,
    ffi::CStr,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::RangeInclusive,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use ovl_common::{Encap, FDB_ENTRIES, GENEVE_OPT_LEN, UDP_PORT_ENTRIES, VNI_MAX, XSK_SLOTS};
use toml::{Table, Value};

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
pub const MAX_OVERLAY_IFNAME: usize = IFNAMSIZ - 1 - DP_SUFFIX.len();
/// Suffix of the data plane's end of an overlay veth.
pub const DP_SUFFIX: &str = "-dp";

const IFNAMSIZ: usize = 16;
/// CPU numbers must fit a `cpu_set_t` (CPU_SETSIZE).
const MAX_CPU: usize = 1023;
/// `sun_path` is 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Minimum IPv4 MTU (RFC 791) and IPv6 MTU (RFC 8200).
const MIN_MTU_V4: u32 = 68;
const MIN_MTU_V6: u32 = 1280;
const MAX_MTU: u32 = 65535;

/// Bytes of one UMEM frame (the workers build their UMEMs with it).
pub const UMEM_FRAME_SIZE: u32 = 4096;
/// Room the kernel keeps in front of a frame it hands an AF_XDP socket (XDP_PACKET_HEADROOM).
const XSK_RX_HEADROOM: u32 = 256;
/// The longest frame one AF_XDP descriptor carries (the programs deliver a longer one that
/// only wanted learning by the fast path instead).
pub const MAX_XSK_FRAME: u32 = UMEM_FRAME_SIZE - XSK_RX_HEADROOM;
/// Outer Ethernet header with one VLAN tag (the ingress program accepts one).
const OUTER_ETH_MAX: u32 = 18;

/// The largest overlay MTU whose encapsulated frames fit one UMEM frame: the workers take
/// one descriptor per frame (AF_XDP multi-buffer, `XDP_USE_SG`, is not used yet), so a
/// longer frame is dropped by the kernel at the socket (`xsk_rx_dropped`).
pub fn one_frame_mtu(overhead: u32) -> u32 {
    MAX_XSK_FRAME - OUTER_ETH_MAX - overhead
}
/// GENEVE option length field value: the data is one 4-byte word.
const GENEVE_OPT_WORDS: u8 = 1;

const TOP_KEYS: &[&str] = &["underlay", "datapath", "workers", "stats", "fdb", "vni"];
const DATAPATH_KEYS: &[&str] = &["mode"];
const UNDERLAY_KEYS: &[&str] = &[
    "interface",
    "interfaces",
    "local_ip",
    "xdp_mode",
    "failback",
    "failback_hold_ms",
    "udp6_zero_csum_rx",
];
const WORKERS_KEYS: &[&str] = &[
    "queues",
    "cpus",
    "batch_size",
    "frames_per_queue",
    "spin_us",
    "busy_poll_us",
    "zero_copy",
];
const STATS_KEYS: &[&str] = &["prometheus", "control_socket"];
const FDB_KEYS: &[&str] = &["ageing_secs", "max_learned"];
const VNI_KEYS: &[&str] = &[
    "id",
    "encap",
    "port",
    "interface",
    "address",
    "mac",
    "mtu",
    "flood",
    "fdb",
    "geneve_option",
];
const STATIC_FDB_KEYS: &[&str] = &["mac", "remote"];
const GENEVE_OPTION_KEYS: &[&str] = &["class", "type", "data"];

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

impl DatapathMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            DatapathMode::Xdp => "xdp",
            DatapathMode::Afxdp => "afxdp",
        }
    }
}

impl fmt::Display for DatapathMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatapathMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<DatapathMode, ParseError> {
        match s {
            "xdp" => Ok(DatapathMode::Xdp),
            "afxdp" => Ok(DatapathMode::Afxdp),
            _ => Err(ParseError(format!(
                "expected \"xdp\" or \"afxdp\", got {s:?}"
            ))),
        }
    }
}

/// How the XDP programs are attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdpModeCfg {
    /// Driver (native) mode, falling back to SKB mode with a warning.
    #[default]
    Auto,
    Driver,
    Skb,
}

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

impl ZeroCopy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ZeroCopy::Auto => "auto",
            ZeroCopy::On => "on",
            ZeroCopy::Off => "off",
        }
    }
}

impl fmt::Display for ZeroCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ZeroCopy {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ZeroCopy, ParseError> {
        match s {
            "auto" => Ok(ZeroCopy::Auto),
            "on" => Ok(ZeroCopy::On),
            "off" => Ok(ZeroCopy::Off),
            _ => Err(ParseError(format!(
                "expected \"auto\", \"on\" or \"off\", got {s:?}"
            ))),
        }
    }
}

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
pub struct ParseError(String);

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

impl XdpModeCfg {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpModeCfg::Auto => "auto",
            XdpModeCfg::Driver => "driver",
            XdpModeCfg::Skb => "skb",
        }
    }
}

impl fmt::Display for XdpModeCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for XdpModeCfg {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<XdpModeCfg, ParseError> {
        match s {
            "auto" => Ok(XdpModeCfg::Auto),
            "driver" => Ok(XdpModeCfg::Driver),
            "skb" => Ok(XdpModeCfg::Skb),
            _ => Err(ParseError(format!(
                "expected \"auto\", \"driver\" or \"skb\", got {s:?}"
            ))),
        }
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

/// A configuration error: one line naming the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config line {line}, column {column}: invalid TOML: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("reading this host's interfaces: {what}: {source}")]
    Host {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The key path of an `Invalid` error (`vni[0].mtu`).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn syntax(text: &str, err: &toml::de::Error) -> ConfigError {
        let at = err.span().map_or(0, |s| s.start).min(text.len());
        let before = text.get(..at).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        // toml's messages span lines; ours are one line.
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Syntax {
            line,
            column,
            message,
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What the host looks like, gathered before validation so that validation is pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub interfaces: Vec<HostInterface>,
    /// CPUs this process may run on; empty when unknown (then `workers.cpus` is not checked).
    pub cpus: Vec<usize>,
}

/// One interface of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub mtu: u32,
    /// Its IPv4 and IPv6 addresses.
    pub addrs: Vec<IpAddr>,
}

/// What the host checks found out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReport {
    /// MTU of the underlay (the smallest of the present uplinks').
    pub underlay_mtu: u32,
    /// Effective overlay MTU of every VNI, in the order of [`Config::vnis`].
    pub vnis: Vec<VniMtu>,
    /// Configured uplinks with no device now (attached when they appear).
    pub absent_uplinks: Vec<String>,
    /// Limits the host and mode impose that a user should know of (one line each).
    pub notes: Vec<String>,
}

/// The effective overlay MTU of one VNI: the configured one, or underlay MTU - overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VniMtu {
    pub id: u32,
    pub mtu: u32,
}

impl HostReport {
    /// Effective MTU of `config.vnis[index]`, for the config this report was made for.
    ///
    /// # Panics
    /// If `index` is out of range: the report has one entry per configured VNI, so that is a
    /// bug in the caller, not bad input.
    pub fn mtu(&self, index: usize) -> u32 {
        self.vnis[index].mtu
    }

    /// Effective MTU of the VNI with id `id`.
    pub fn mtu_of_vni(&self, id: u32) -> Option<u32> {
        self.vnis.iter().find(|v| v.id == id).map(|v| v.mtu)
    }
}

impl HostInfo {
    /// A host with these interfaces and unknown CPUs.
    pub fn from_interfaces(interfaces: Vec<HostInterface>) -> HostInfo {
        HostInfo {
            interfaces,
            cpus: Vec::new(),
        }
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&HostInterface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// Interfaces (getifaddrs), their MTUs (SIOCGIFMTU) and IPv4 addresses in the calling
    /// thread's network namespace, and the CPUs in this thread's affinity mask.
    pub fn gather() -> Result<HostInfo, ConfigError> {
        let host_err = |what| move |source| ConfigError::Host { what, source };
        let (names, addrs) = if_addrs().map_err(host_err("getifaddrs"))?;
        // SAFETY: plain socket creation; the fd is owned by `sock` right below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(host_err("socket")(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a freshly created socket nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut interfaces = Vec::with_capacity(names.len());
        for name in names {
            let mtu = match if_mtu(&sock, &name) {
                Ok(mtu) => mtu,
                // Gone since getifaddrs listed it: it is not there any more.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(host_err("SIOCGIFMTU")(e)),
            };
            let addrs = addrs
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, ip)| *ip)
                .collect();
            interfaces.push(HostInterface { name, mtu, addrs });
        }
        let cpus = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        Ok(HostInfo { interfaces, cpus })
    }
}

/// Frees a getifaddrs list on every path out.
struct IfAddrs(*mut libc::ifaddrs);

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful getifaddrs and is freed once.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// Interface names (in the kernel's order) and IP addresses with their interface.
type IfAddrList = (Vec<String>, Vec<(String, IpAddr)>);

fn if_addrs() -> std::io::Result<IfAddrList> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocated into `head` on success.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let list = IfAddrs(head);
    let mut names: Vec<String> = Vec::new();
    let mut addrs = Vec::new();
    let mut cur = list.0;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list, alive until `list` is dropped.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points at a sockaddr, whose family field every variant starts with.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            // Every interface has one AF_PACKET entry, addresses or not.
            libc::AF_PACKET if !names.contains(&name) => names.push(name),
            libc::AF_INET => {
                // SAFETY: an AF_INET entry's address is a sockaddr_in; read unaligned to make
                // no assumption about the allocation.
                let sin =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                // Addresses added with a label (`eth0:1`) are listed under the label.
                let dev = match name.split_once(':') {
                    Some((dev, _)) => dev.to_string(),
                    None => name,
                };
                addrs.push((dev, IpAddr::V4(ip)));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 entry's address is a sockaddr_in6; read unaligned.
                let sin6 =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>()) };
                addrs.push((name, IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))));
            }
            _ => {}
        }
    }
    for (dev, _) in &addrs {
        if !names.contains(dev) {
            names.push(dev.clone());
        }
    }
    Ok((names, addrs))
}

fn if_mtu(sock: &OwnedFd, name: &str) -> std::io::Result<u32> {
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu of our ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the kernel filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

impl Config {
    /// Parses and validates a configuration file's text; touches nothing on the host.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let root: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::syntax(text, &e))?;
        let config = decode(&root)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, parses it, gathers the host's state in the calling thread's namespace and
    /// checks the config against it.
    pub fn load(path: &Path) -> Result<(Config, HostReport), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text)?;
        let host = HostInfo::gather()?;
        let report = config.check_host(&host)?;
        Ok((config, report))
    }

    /// Checks the config against the host: the underlay interface exists and carries
    /// `local_ip`, every VNI's overlay MTU fits the underlay's, pinned CPUs are ours, and
    /// everything [`Config::validate`] checks (so configs built in code are covered too).
    pub fn check_host(&self, host: &HostInfo) -> Result<HostReport, ConfigError> {
        self.validate()?;
        let u = &self.underlay;
        let present: Vec<&HostInterface> = u
            .interfaces
            .iter()
            .filter_map(|n| host.interface(n))
            .collect();
        let field = if u.interfaces.len() == 1 {
            "underlay.interface"
        } else {
            "underlay.interfaces"
        };
        let Some(first) = present.first() else {
            let have: Vec<&str> = host.interfaces.iter().map(|i| i.name.as_str()).collect();
            let wanted = if u.interfaces.len() == 1 {
                format!("{:?}", u.primary())
            } else {
                format!("of {:?}", u.interfaces)
            };
            return Err(invalid(
                field,
                format!(
                    "no interface {wanted} in this network namespace (it has: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        };
        if !present.iter().any(|i| i.addrs.contains(&u.local_ip)) {
            let iface = first;
            let elsewhere = host
                .interfaces
                .iter()
                .find(|i| i.addrs.contains(&u.local_ip))
                .map(|i| format!("; it is on {}", i.name))
                .unwrap_or_default();
            let family = if u.ipv6() { "IPv6" } else { "IPv4" };
            let same: Vec<String> = iface
                .addrs
                .iter()
                .filter(|a| a.is_ipv6() == u.ipv6())
                .map(IpAddr::to_string)
                .collect();
            let has = if same.is_empty() {
                format!("{} has no {family} address", iface.name)
            } else {
                format!("{} has {}", iface.name, same.join(", "))
            };
            let on = if present.len() == 1 {
                iface.name.clone()
            } else {
                "any present uplink".to_string()
            };
            return Err(invalid(
                "underlay.local_ip",
                format!(
                    "{} is not configured on {on} ({has}{elsewhere})",
                    u.local_ip
                ),
            ));
        }
        // Every uplink may carry the traffic: the overlay must fit the smallest.
        let underlay_mtu = present.iter().map(|i| i.mtu).min().unwrap_or(first.mtu);
        let absent: Vec<String> = u
            .interfaces
            .iter()
            .filter(|n| host.interface(n).is_none())
            .cloned()
            .collect();
        if let Some(cpus) = &self.workers.cpus
            && !host.cpus.is_empty()
        {
            for (i, cpu) in cpus.iter().enumerate() {
                if !host.cpus.contains(cpu) {
                    let allowed: Vec<String> = host.cpus.iter().map(usize::to_string).collect();
                    return Err(invalid(
                        format!("workers.cpus[{i}]"),
                        format!(
                            "CPU {cpu} is not available to this process (it may use {})",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut vnis = Vec::with_capacity(self.vnis.len());
        let mut notes = Vec::new();
        for (i, vni) in self.vnis.iter().enumerate() {
            let field = format!("vni[{i}].mtu");
            let overhead = vni.overhead(self.underlay.ipv6());
            let max = underlay_mtu.saturating_sub(overhead);
            let formula = format!(
                "underlay MTU {underlay_mtu} - {} overhead {overhead} = {max}",
                encap_name(vni.encap)
            );
            let min = min_mtu(vni);
            if max < min {
                return Err(invalid(
                    field,
                    format!("{formula}, below the minimum overlay MTU {min}"),
                ));
            }
            // Every frame of an "afxdp" port crosses a socket: it must fit one UMEM frame. So
            // does every frame sent over IPv6 VTEPs, in either mode (the TC fast path is IPv4
            // only: it cannot give GSO segments the UDP checksum IPv6 requires).
            let one_frame = one_frame_mtu(overhead);
            let afxdp = self.datapath.mode == DatapathMode::Afxdp;
            let why = if afxdp {
                "in mode \"afxdp\" every frame must fit one".to_string()
            } else {
                "over IPv6 VTEPs the workers send every frame, and it must fit one".to_string()
            };
            let clamped = afxdp || self.underlay.ipv6();
            let alternative = if afxdp {
                "mode \"xdp\" carries jumbo frames over IPv4 VTEPs"
            } else {
                "IPv4 VTEPs carry jumbo frames in mode \"xdp\""
            };
            let mtu = match vni.mtu {
                Some(mtu) if mtu > max => {
                    return Err(invalid(field, format!("{mtu} is too large: {formula}")));
                }
                Some(mtu) if clamped && mtu > one_frame => {
                    return Err(invalid(
                        field,
                        format!(
                            "{mtu} is too large: {why} {UMEM_FRAME_SIZE}-byte UMEM frame, so the overlay MTU is at most {one_frame} ({alternative})"
                        ),
                    ));
                }
                Some(mtu) => mtu,
                None if clamped && max.min(MAX_MTU) > one_frame => {
                    notes.push(format!(
                        "vni {}: overlay MTU clamped to {one_frame} (the underlay allows {}): {why} {UMEM_FRAME_SIZE}-byte UMEM frame; {alternative}",
                        vni.id,
                        max.min(MAX_MTU)
                    ));
                    one_frame
                }
                None => max.min(MAX_MTU),
            };
            if !clamped && mtu > one_frame {
                notes.push(format!(
                    "vni {}: frames up to MTU {mtu} take the fast path; the few the workers handle (floods, unknown or unresolved destinations) are dropped above {one_frame}, counted as xsk_rx_dropped",
                    vni.id
                ));
            }
            vnis.push(VniMtu { id: vni.id, mtu });
        }
        Ok(HostReport {
            underlay_mtu,
            vnis,
            absent_uplinks: absent,
            notes,
        })
    }

    /// Where the sockets sit in the XSKMAP.
    pub fn xsk_slots(&self) -> ovl_common::XskSlots {
        ovl_common::XskSlots {
            queues: self.workers.queues,
            uplinks: self.underlay.interfaces.len() as u32,
        }
    }

    /// Checks ranges and the rules across fields, without looking at the host. `parse` runs
    /// it; call it on configs built or changed in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_underlay()?;
        self.validate_workers()?;
        self.validate_stats()?;
        self.validate_fdb()?;
        self.validate_vnis()
    }

    fn validate_underlay(&self) -> Result<(), ConfigError> {
        let u = &self.underlay;
        if u.interfaces.is_empty() {
            return Err(invalid(
                "underlay.interfaces",
                "must name at least one uplink",
            ));
        }
        let max = ovl_common::UPLINK_ENTRIES as usize;
        if u.interfaces.len() > max {
            return Err(invalid(
                "underlay.interfaces",
                format!("{} uplinks; at most {max}", u.interfaces.len()),
            ));
        }
        for (i, name) in u.interfaces.iter().enumerate() {
            let field = if u.interfaces.len() == 1 {
                "underlay.interface".to_string()
            } else {
                format!("underlay.interfaces[{i}]")
            };
            check_ifname(&field, name, IFNAMSIZ - 1, "")?;
            if u.interfaces[..i].contains(name) {
                return Err(invalid(field, format!("{name:?} is listed twice")));
            }
        }
        if u.failback_hold > Duration::from_millis(*FAILBACK_HOLD_MS.end()) {
            return Err(invalid(
                "underlay.failback_hold_ms",
                format!("at most {} ms", FAILBACK_HOLD_MS.end()),
            ));
        }
        check_unicast_ip("underlay.local_ip", u.local_ip, "the VTEP address")
    }

    fn validate_workers(&self) -> Result<(), ConfigError> {
        let w = &self.workers;
        check_range("workers.queues", w.queues, &QUEUES)?;
        if let Some(cpus) = &w.cpus {
            if cpus.len() != w.queues as usize {
                return Err(invalid(
                    "workers.cpus",
                    format!(
                        "{} CPUs for {} queues; give one CPU per queue",
                        cpus.len(),
                        w.queues
                    ),
                ));
            }
            for (i, cpu) in cpus.iter().enumerate() {
                let field = format!("workers.cpus[{i}]");
                check_range(&field, *cpu, &(0..=MAX_CPU))?;
                if let Some(j) = cpus[..i].iter().position(|c| c == cpu) {
                    return Err(invalid(
                        field,
                        format!("CPU {cpu} is already given to queue {j}; one CPU per queue"),
                    ));
                }
            }
        }
        check_range("workers.batch_size", w.batch_size, &BATCH_SIZE)?;
        check_range(
            "workers.frames_per_queue",
            w.frames_per_queue,
            &FRAMES_PER_QUEUE,
        )?;
        if !w.frames_per_queue.is_power_of_two() {
            return Err(invalid(
                "workers.frames_per_queue",
                format!("{} is not a power of two", w.frames_per_queue),
            ));
        }
        if w.batch_size > w.frames_per_queue {
            return Err(invalid(
                "workers.batch_size",
                format!(
                    "{} is larger than frames_per_queue {}",
                    w.batch_size, w.frames_per_queue
                ),
            ));
        }
        Ok(())
    }

    fn validate_stats(&self) -> Result<(), ConfigError> {
        let s = &self.stats;
        if let Some(addr) = s.prometheus {
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "stats.prometheus",
                    format!("must be a loopback address, got {addr}"),
                ));
            }
            if addr.port() == 0 {
                return Err(invalid(
                    "stats.prometheus",
                    format!("port 0 in {addr}; give a fixed port"),
                ));
            }
        }
        let path = &s.control_socket;
        let field = "stats.control_socket";
        if !path.is_absolute() {
            return Err(invalid(
                field,
                format!("{} is not an absolute path", path.display()),
            ));
        }
        if path.file_name().is_none() || path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return Err(invalid(
                field,
                format!("{} names a directory, not a socket", path.display()),
            ));
        }
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(invalid(
                field,
                format!(
                    "{len} bytes is too long for a unix socket path (at most {MAX_SOCKET_PATH})"
                ),
            ));
        }
        Ok(())
    }

    fn validate_fdb(&self) -> Result<(), ConfigError> {
        let f = &self.fdb;
        if f.ageing < Duration::from_secs(*AGEING_SECS.start())
            || f.ageing > Duration::from_secs(*AGEING_SECS.end())
        {
            return Err(invalid(
                "fdb.ageing_secs",
                format!(
                    "{} s is out of range {}..={}",
                    f.ageing.as_secs_f64(),
                    AGEING_SECS.start(),
                    AGEING_SECS.end()
                ),
            ));
        }
        check_range("fdb.max_learned", f.max_learned, &MAX_LEARNED)?;
        let statics: usize = self.vnis.iter().map(|v| v.fdb.len()).sum();
        if f.max_learned + statics > FDB_ENTRIES as usize {
            return Err(invalid(
                "fdb.max_learned",
                format!(
                    "{} learned + {statics} static entries exceed the FDB's {FDB_ENTRIES}",
                    f.max_learned
                ),
            ));
        }
        Ok(())
    }

    fn validate_vnis(&self) -> Result<(), ConfigError> {
        if self.vnis.is_empty() {
            return Err(invalid("vni", "no [[vni]]; at least one is required"));
        }
        // Every uplink's queues and every overlay port's queues share the XSKMAP.
        let slots = self.xsk_slots().needed(self.vnis.len() as u32);
        if slots > XSK_SLOTS {
            return Err(invalid(
                "vni",
                format!(
                    "{} VNIs and {} uplinks with {} queues need {slots} AF_XDP socket slots; there are {XSK_SLOTS}",
                    self.vnis.len(),
                    self.underlay.interfaces.len(),
                    self.workers.queues
                ),
            ));
        }
        let local_ip = self.underlay.local_ip;
        let uplinks = &self.underlay.interfaces;
        let mut ids: HashMap<u32, usize> = HashMap::new();
        let mut ports: HashMap<u16, (Encap, u32)> = HashMap::new();
        // Every kernel-side and data-plane-side name, with the VNI index that uses it.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, vni) in self.vnis.iter().enumerate() {
            let f = |key: &str| format!("vni[{i}].{key}");
            check_range(&f("id"), vni.id, &VNI_RANGE)?;
            if let Some(j) = ids.insert(vni.id, i) {
                return Err(invalid(
                    f("id"),
                    format!("duplicate VNI {} (also vni[{j}])", vni.id),
                ));
            }

            if vni.port == 0 {
                return Err(invalid(f("port"), "0 is not a usable UDP port"));
            }
            match ports.get(&vni.port) {
                Some((encap, other)) if *encap != vni.encap => {
                    return Err(invalid(
                        f("port"),
                        format!(
                            "{} already carries {} for vni {other}; a port carries one encapsulation",
                            vni.port,
                            encap_name(*encap)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    if ports.len() == UDP_PORT_ENTRIES as usize {
                        return Err(invalid(
                            f("port"),
                            format!("more than {UDP_PORT_ENTRIES} different UDP ports"),
                        ));
                    }
                    ports.insert(vni.port, (vni.encap, vni.id));
                }
            }

            let why = format!(
                " so that {:?} fits IFNAMSIZ (15 bytes and a NUL)",
                vni.dp_interface()
            );
            check_ifname(&f("interface"), &vni.interface, MAX_OVERLAY_IFNAME, &why)?;
            for name in [vni.interface.clone(), vni.dp_interface()] {
                if uplinks.contains(&name) {
                    return Err(invalid(
                        f("interface"),
                        format!("{name:?} is an underlay interface"),
                    ));
                }
                if let Some(j) = names.get(&name) {
                    return Err(invalid(
                        f("interface"),
                        format!("{name:?} is already used by vni[{j}]"),
                    ));
                }
            }
            names.insert(vni.interface.clone(), i);
            names.insert(vni.dp_interface(), i);

            if let Some(cidr) = &vni.address {
                check_cidr(&f("address"), cidr)?;
            }
            if let Some(mac) = &vni.mac {
                check_unicast_mac(&f("mac"), mac)?;
            }
            if let Some(mtu) = vni.mtu {
                let min = min_mtu(vni);
                if mtu < min || mtu > MAX_MTU {
                    let v6 = if min == MIN_MTU_V6 {
                        " (IPv6 address: at least 1280)"
                    } else {
                        ""
                    };
                    return Err(invalid(
                        f("mtu"),
                        format!("{mtu} is out of range {min}..={MAX_MTU}{v6}"),
                    ));
                }
            }

            for (k, remote) in vni.flood.iter().enumerate() {
                let field = format!("vni[{i}].flood[{k}]");
                check_remote(&field, *remote, local_ip)?;
                if let Some(j) = vni.flood[..k].iter().position(|r| r == remote) {
                    return Err(invalid(
                        field,
                        format!("{remote} is already in the list (flood[{j}])"),
                    ));
                }
            }
            for (k, entry) in vni.fdb.iter().enumerate() {
                let mac_field = format!("vni[{i}].fdb[{k}].mac");
                check_unicast_mac(&mac_field, &entry.mac)?;
                if let Some(j) = vni.fdb[..k].iter().position(|e| e.mac == entry.mac) {
                    return Err(invalid(
                        mac_field,
                        format!("duplicate MAC {} (also fdb[{j}])", format_mac(&entry.mac)),
                    ));
                }
                check_remote(&format!("vni[{i}].fdb[{k}].remote"), entry.remote, local_ip)?;
            }

            if let Some(opt) = &vni.geneve_option {
                if vni.encap != Encap::Geneve {
                    return Err(invalid(
                        f("geneve_option"),
                        format!(
                            "only for geneve VNIs; this one is {}",
                            encap_name(vni.encap)
                        ),
                    ));
                }
                if opt[3] != GENEVE_OPT_WORDS {
                    return Err(invalid(
                        f("geneve_option"),
                        format!(
                            "length byte is {}; the option carries exactly 4 bytes of data (length 1)",
                            opt[3]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn min_mtu(vni: &Vni) -> u32 {
    match vni.address {
        Some(IpCidr {
            addr: IpAddr::V6(_),
            ..
        }) => MIN_MTU_V6,
        _ => MIN_MTU_V4,
    }
}

fn check_range<T: PartialOrd + fmt::Display>(
    field: &str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The kernel's rules for interface names (dev_valid_name), plus `%` (a name pattern) and a
/// length limit of `max` bytes, explained by `why` when it is shorter than IFNAMSIZ allows.
fn check_ifname(field: &str, name: &str, max: usize, why: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | ':' | '%') || c.is_whitespace())
    {
        return Err(invalid(
            field,
            format!("{name:?} contains {c:?}, which interface names cannot"),
        ));
    }
    if name.len() > max {
        return Err(invalid(
            field,
            format!("{name:?} is {} bytes; at most {max}{why}", name.len()),
        ));
    }
    Ok(())
}

fn check_unicast_ip(field: &str, ip: IpAddr, what: &str) -> Result<(), ConfigError> {
    let link_local_v6 = matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
    let mapped = matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
    let problem = if ip.is_unspecified() {
        "is the unspecified address"
    } else if matches!(ip, IpAddr::V4(a) if a.is_broadcast()) {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else if link_local_v6 {
        "is link-local (fe80::/10), which needs an interface scope; use a global or ULA address"
    } else if mapped {
        "is IPv4-mapped; write the IPv4 address itself"
    } else {
        return Ok(());
    };
    Err(invalid(
        field,
        format!("{ip} {problem}; {what} must be a unicast underlay address"),
    ))
}

fn check_remote(field: &str, remote: IpAddr, local_ip: IpAddr) -> Result<(), ConfigError> {
    check_unicast_ip(field, remote, "a remote VTEP")?;
    if remote.is_ipv6() != local_ip.is_ipv6() {
        let (r, l) = if remote.is_ipv6() {
            ("IPv6", "IPv4")
        } else {
            ("IPv4", "IPv6")
        };
        return Err(invalid(
            field,
            format!(
                "{remote} is {r} but underlay.local_ip {local_ip} is {l}; the VTEPs of one data plane share one family, as in the kernel driver"
            ),
        ));
    }
    if remote == local_ip {
        return Err(invalid(
            field,
            format!("{remote} is our own underlay.local_ip, not a remote VTEP"),
        ));
    }
    Ok(())
}

fn check_unicast_mac(field: &str, mac: &[u8; 6]) -> Result<(), ConfigError> {
    if mac.iter().all(|b| *b == 0) {
        return Err(invalid(
            field,
            "00:00:00:00:00:00 is not a usable MAC address",
        ));
    }
    if mac[0] & 1 != 0 {
        return Err(invalid(
            field,
            format!(
                "{} is a multicast MAC address; it must be unicast",
                format_mac(mac)
            ),
        ));
    }
    Ok(())
}

fn check_cidr(field: &str, cidr: &IpCidr) -> Result<(), ConfigError> {
    if cidr.prefix_len > cidr.max_prefix_len() {
        return Err(invalid(
            field,
            format!(
                "prefix length {} is too long for {} (at most {})",
                cidr.prefix_len,
                cidr.addr,
                cidr.max_prefix_len()
            ),
        ));
    }
    if cidr.addr.is_unspecified() || cidr.addr.is_multicast() {
        return Err(invalid(field, format!("{cidr} is not a unicast address")));
    }
    if let IpAddr::V4(v4) = cidr.addr {
        if v4.is_broadcast() {
            return Err(invalid(field, format!("{cidr} is the broadcast address")));
        }
        // /31 and /32 have no network or broadcast address (RFC 3021).
        if cidr.prefix_len <= 30 {
            let host_mask = u32::MAX >> cidr.prefix_len;
            let host = u32::from(v4) & host_mask;
            if host == 0 {
                return Err(invalid(
                    field,
                    format!("{cidr} is the subnet's network address, not a host address"),
                ));
            }
            if host == host_mask {
                return Err(invalid(
                    field,
                    format!("{cidr} is the subnet's broadcast address, not a host address"),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decoding the TOML tree into typed values, with the key path in every error.

/// A table being decoded: its path and the table, whose keys were checked against the known
/// ones when it was opened.
struct Section<'a> {
    path: String,
    table: &'a Table,
}

impl<'a> Section<'a> {
    fn open(path: &str, value: &'a Value, known: &[&str]) -> Result<Section<'a>, ConfigError> {
        let table = value
            .as_table()
            .ok_or_else(|| type_error(path, "a table", value))?;
        Section::from_table(path, table, known)
    }

    fn from_table(
        path: &str,
        table: &'a Table,
        known: &[&str],
    ) -> Result<Section<'a>, ConfigError> {
        let section = Section {
            path: path.to_string(),
            table,
        };
        // Checked first: a misspelt optional key would otherwise quietly become a default.
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                section.field(key),
                format!("unknown key; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(section)
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<(&'a Value, String)> {
        self.table.get(key).map(|v| (v, self.field(key)))
    }

    fn required(&self, key: &str) -> Result<(&'a Value, String), ConfigError> {
        self.get(key)
            .ok_or_else(|| invalid(self.field(key), "missing; this key is required"))
    }

    /// Decodes `key` with `decode` if present.
    fn opt<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key).map(|(v, f)| decode(v, &f)).transpose()
    }

    fn req<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let (v, f) = self.required(key)?;
        decode(v, &f)
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(n) => format!("integer {n}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> ConfigError {
    invalid(field, format!("expected {expected}, got {}", describe(got)))
}

fn string<'a>(v: &'a Value, f: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| type_error(f, "a string", v))
}

fn array<'a>(v: &'a Value, f: &str) -> Result<&'a [Value], ConfigError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| type_error(f, "an array", v))
}

/// An integer in `range` (TOML integers are i64; the range keeps the message about the
/// field's meaning rather than the Rust type's limits).
fn int_in<T>(v: &Value, f: &str, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: TryFrom<i64> + PartialOrd + fmt::Display,
{
    let n = v
        .as_integer()
        .ok_or_else(|| type_error(f, "an integer", v))?;
    match T::try_from(n) {
        Ok(x) if range.contains(&x) => Ok(x),
        _ => Err(invalid(
            f,
            format!("{n} is out of range {}..={}", range.start(), range.end()),
        )),
    }
}

fn parsed<T: FromStr<Err = ParseError>>(v: &Value, f: &str) -> Result<T, ConfigError> {
    string(v, f)?
        .parse()
        .map_err(|e: ParseError| invalid(f, e.0))
}

fn vtep_ip(v: &Value, f: &str) -> Result<IpAddr, ConfigError> {
    let s = string(v, f)?;
    s.parse::<IpAddr>().map_err(|_| {
        invalid(
            f,
            format!("expected an IPv4 or IPv6 address like 10.0.2.2 or fd00:0:2::2, got {s:?}"),
        )
    })
}

fn mac(v: &Value, f: &str) -> Result<[u8; 6], ConfigError> {
    parse_mac(string(v, f)?).map_err(|e| invalid(f, e.0))
}

fn encap(v: &Value, f: &str) -> Result<Encap, ConfigError> {
    match string(v, f)? {
        "vxlan" => Ok(Encap::Vxlan),
        "geneve" => Ok(Encap::Geneve),
        other => Err(invalid(
            f,
            format!("expected \"vxlan\" or \"geneve\", got {other:?}"),
        )),
    }
}

fn decode(root: &Table) -> Result<Config, ConfigError> {
    let top = Section::from_table("", root, TOP_KEYS)?;
    let (underlay, f) = top
        .get("underlay")
        .ok_or_else(|| invalid("underlay", "missing; the [underlay] section is required"))?;
    let underlay = decode_underlay(underlay, &f)?;
    let datapath = top.opt("datapath", decode_datapath)?.unwrap_or_default();
    let workers = top.opt("workers", decode_workers)?.unwrap_or_default();
    let stats = top
        .opt("stats", |v, f| decode_stats(v, f, underlay.primary()))?
        .unwrap_or_else(|| Stats::default_for(underlay.primary()));
    let fdb = top.opt("fdb", decode_fdb)?.unwrap_or_default();
    let vnis = top
        .opt("vni", |v, f| {
            array(v, f)?
                .iter()
                .enumerate()
                .map(|(i, v)| decode_vni(v, &format!("{f}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_default();
    Ok(Config {
        underlay,
        datapath,
        workers,
        stats,
        fdb,
        vnis,
    })
}

fn decode_underlay(v: &Value, f: &str) -> Result<Underlay, ConfigError> {
    let s = Section::open(f, v, UNDERLAY_KEYS)?;
    let one = s.opt("interface", |v, f| string(v, f).map(str::to_string))?;
    let many = s.opt("interfaces", |v, f| {
        array(v, f)?
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, &format!("{f}[{i}]")).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let interfaces = match (one, many) {
        (Some(i), None) => vec![i],
        (None, Some(list)) => list,
        (Some(_), Some(_)) => {
            return Err(invalid(
                s.field("interfaces"),
                "give either interface or interfaces, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                s.field("interface"),
                "missing; give the underlay NIC (interface = \"eth0\") or uplinks in order of preference (interfaces = [\"vf0\", \"eth0\"])",
            ));
        }
    };
    Ok(Underlay {
        interfaces,
        local_ip: s.req("local_ip", vtep_ip)?,
        xdp_mode: s.opt("xdp_mode", parsed)?.unwrap_or_default(),
        failback: s
            .opt("failback", |v, f| {
                v.as_bool().ok_or_else(|| type_error(f, "a boolean", v))
            })?
            .unwrap_or(true),
        failback_hold: Duration::from_millis(
            s.opt("failback_hold_ms", |v, f| int_in(v, f, FAILBACK_HOLD_MS))?
                .unwrap_or(DEFAULT_FAILBACK_HOLD_MS),
        ),
        udp6_zero_csum_rx: s
            .opt("udp6_zero_csum_rx", |v, f| {
                v.as_bool().ok_or_else(|| type_error(f, "a boolean", v))
            })?
            .unwrap_or(false),
    })
}

fn decode_datapath(v: &Value, f: &str) -> Result<Datapath, ConfigError> {
    let s = Section::open(f, v, DATAPATH_KEYS)?;
    Ok(Datapath {
        mode: s.opt("mode", parsed)?.unwrap_or_default(),
    })
}

fn decode_workers(v: &Value, f: &str) -> Result<Workers, ConfigError> {
    let s = Section::open(f, v, WORKERS_KEYS)?;
    let d = Workers::default();
    Ok(Workers {
        queues: s
            .opt("queues", |v, f| int_in(v, f, QUEUES))?
            .unwrap_or(d.queues),
        cpus: s.opt("cpus", |v, f| {
            array(v, f)?
                .iter()
                .enumerate()
                .map(|(i, v)| int_in(v, &format!("{f}[{i}]"), 0..=MAX_CPU))
                .collect::<Result<Vec<_>, _>>()
        })?,
        batch_size: s
            .opt("batch_size", |v, f| int_in(v, f, BATCH_SIZE))?
            .unwrap_or(d.batch_size),
        frames_per_queue: s
            .opt("frames_per_queue", |v, f| int_in(v, f, FRAMES_PER_QUEUE))?
            .unwrap_or(d.frames_per_queue),
        spin_us: s
            .opt("spin_us", |v, f| int_in(v, f, SPIN_US))?
            .unwrap_or(d.spin_us),
        busy_poll_us: s
            .opt("busy_poll_us", |v, f| int_in(v, f, BUSY_POLL_US))?
            .unwrap_or(d.busy_poll_us),
        zero_copy: s.opt("zero_copy", parsed)?.unwrap_or(d.zero_copy),
    })
}

fn decode_stats(v: &Value, f: &str, underlay: &str) -> Result<Stats, ConfigError> {
    let s = Section::open(f, v, STATS_KEYS)?;
    let prometheus = s.opt("prometheus", |v, f| {
        let text = string(v, f)?;
        text.parse::<SocketAddr>().map_err(|_| {
            invalid(
                f,
                format!("expected an address and port like 127.0.0.1:9464, got {text:?}"),
            )
        })
    })?;
    let control_socket = s
        .opt("control_socket", |v, f| string(v, f).map(PathBuf::from))?
        .unwrap_or_else(|| default_control_socket(underlay));
    Ok(Stats {
        prometheus,
        control_socket,
    })
}

fn decode_fdb(v: &Value, f: &str) -> Result<FdbConfig, ConfigError> {
    let s = Section::open(f, v, FDB_KEYS)?;
    let d = FdbConfig::default();
    Ok(FdbConfig {
        ageing: s
            .opt("ageing_secs", |v, f| int_in(v, f, AGEING_SECS))?
            .map_or(d.ageing, Duration::from_secs),
        max_learned: s
            .opt("max_learned", |v, f| int_in(v, f, MAX_LEARNED))?
            .unwrap_or(d.max_learned),
    })
}

fn decode_vni(v: &Value, f: &str) -> Result<Vni, ConfigError> {
    let s = Section::open(f, v, VNI_KEYS)?;
    let id = s.req("id", |v, f| int_in(v, f, VNI_RANGE))?;
    let encap = s.req("encap", encap)?;
    let port = s
        .opt("port", |v, f| int_in(v, f, 1..=u16::MAX))?
        .unwrap_or_else(|| default_port(encap));
    let interface = s.req("interface", |v, f| string(v, f).map(str::to_string))?;
    let address = s.opt("address", parsed)?;
    let mac = s.opt("mac", mac)?;
    let mtu = s.opt("mtu", |v, f| int_in(v, f, MIN_MTU_V4..=MAX_MTU))?;
    let flood = s
        .opt("flood", |v, f| {
            array(v, f)?
                .iter()
                .enumerate()
                .map(|(i, v)| vtep_ip(v, &format!("{f}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_default();
    let fdb = s
        .opt("fdb", |v, f| {
            array(v, f)?
                .iter()
                .enumerate()
                .map(|(i, v)| decode_static_fdb(v, &format!("{f}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_default();
    let geneve_option = s.opt("geneve_option", decode_geneve_option)?;
    Ok(Vni {
        id,
        encap,
        port,
        interface,
        address,
        mac,
        mtu,
        flood,
        fdb,
        geneve_option,
    })
}

fn decode_static_fdb(v: &Value, f: &str) -> Result<StaticFdb, ConfigError> {
    let s = Section::open(f, v, STATIC_FDB_KEYS)?;
    Ok(StaticFdb {
        mac: s.req("mac", mac)?,
        remote: s.req("remote", vtep_ip)?,
    })
}

fn decode_geneve_option(v: &Value, f: &str) -> Result<[u8; GENEVE_OPT_LEN], ConfigError> {
    let s = Section::open(f, v, GENEVE_OPTION_KEYS)?;
    let class = s.req("class", |v, f| int_in(v, f, 0..=u16::MAX))?;
    let opt_type = s.req("type", |v, f| int_in(v, f, 0..=u8::MAX))?;
    let data = s.req("data", |v, f| {
        let text = string(v, f)?;
        let bad = || {
            invalid(
                f,
                format!(
                    "expected 8 hex digits (4 bytes of option data) like \"0a0b0c0d\", got {text:?}"
                ),
            )
        };
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u32::from_str_radix(text, 16)
            .map(u32::to_be_bytes)
            .map_err(|_| bad())
    })?;
    Ok(geneve_option_bytes(class, opt_type, data))
}
