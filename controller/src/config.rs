//! The controller's configuration file (TOML).
//!
//! Every section refuses unknown keys, and every error names the field it is about:
//! `config heartbeat.interval_ms: must be 1..=1000, got 0`. See
//! `deploy/examples/controller-pri.toml` for a commented example.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::fsm::{FsmConfig, MS, Nanos};

/// Default heartbeat port.
pub const DEFAULT_PORT: u16 = 3785;
/// Default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ovl-controller/controller.sock";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/ovl/controller.toml";

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("config {field}: {message}")]
    Field {
        /// Dotted path of the field, e.g. `heartbeat.interval_ms`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// TOML that does not parse (the message carries the line).
    #[error("config: {0}")]
    Syntax(String),
}

impl ConfigError {
    fn field(field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field an error is about, if it is about one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ConfigError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    pub node: NodeSection,
    /// The other member.
    pub peer: PeerSection,
    /// Heartbeats.
    pub heartbeat: HeartbeatSection,
    /// The virtual IPs and their announcements.
    pub vip: VipSection,
    /// Planned switchover.
    #[serde(default)]
    pub switchover: SwitchoverSection,
    /// Health checks.
    #[serde(default)]
    pub health: HealthSection,
    /// Hook commands.
    #[serde(default)]
    pub hooks: HooksSection,
    /// The local control socket.
    #[serde(default)]
    pub control: ControlSection,
}

/// `[node]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Name in logs and status; must differ from the peer's.
    pub name: String,
    /// 1..=255, higher wins.
    pub priority: u8,
    /// Take the VIP back from a lower-priority active peer.
    #[serde(default)]
    pub preempt: bool,
    /// Time in Backup before preempting.
    #[serde(default = "default_hold_down")]
    pub hold_down_ms: u64,
    /// Silent listening after start, before claiming anything (default: the detection time
    /// plus a heartbeat round trip, see [`Config::startup`]).
    #[serde(default)]
    pub startup_ms: Option<u64>,
}

fn default_hold_down() -> u64 {
    5_000
}

/// `[peer]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's underlay address.
    pub address: IpAddr,
    /// The peer's heartbeat port (default: ours).
    pub port: Option<u16>,
}

/// `[heartbeat]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    /// Our underlay address: heartbeats leave from and arrive at it; it breaks priority ties.
    pub address: IpAddr,
    /// UDP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Interval between heartbeats.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Missed intervals before the peer is dead.
    #[serde(default = "default_multiplier")]
    pub multiplier: u32,
    /// File with the shared key (mode 0600, at least 16 bytes).
    pub key_file: PathBuf,
    /// DSCP of heartbeats (default CS6, network control).
    #[serde(default = "default_dscp")]
    pub dscp: u8,
    /// SCHED_FIFO priority of the thread that sends and receives heartbeats, with its memory
    /// locked (1..=99; 0: ordinary scheduling). Where the kernel refuses, one warning and the
    /// controller runs on.
    #[serde(default = "default_rt_priority")]
    pub realtime_priority: u8,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_interval() -> u64 {
    10
}
fn default_multiplier() -> u32 {
    3
}
fn default_dscp() -> u8 {
    48
}
fn default_rt_priority() -> u8 {
    10
}

/// `[vip]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// The overlay interface the VIPs live on.
    pub interface: String,
    /// `address/prefix`, IPv4 or IPv6.
    pub addresses: Vec<String>,
    /// Announcements (gratuitous ARP request + reply per IPv4 VIP, unsolicited NA per IPv6
    /// VIP) per burst, the first at once.
    #[serde(default = "default_garp_count")]
    pub garp_count: u32,
    /// Time between the announcements of a burst.
    #[serde(default = "default_garp_interval")]
    pub garp_interval_ms: u64,
}

fn default_garp_count() -> u32 {
    3
}
fn default_garp_interval() -> u64 {
    5
}

/// `[switchover]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverSection {
    /// How long a switchover may wait for the peer.
    #[serde(default = "default_switchover_timeout")]
    pub timeout_ms: u64,
    /// How long a node that handed the VIP over keeps it, so clients reach it until the new
    /// owner's announcement has arrived.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Draining: after a planned switchover the old owner keeps serving its established TCP
    /// connections this long (the new owner sends it their segments); 0 turns it off. Needs
    /// `health.dataplane_socket` (our data plane does the forwarding).
    #[serde(default = "default_drain")]
    pub drain_ms: u64,
    /// What happens to connections still open when `drain_ms` is over: `reset` (aborted, the
    /// clients get a RST and reconnect to the new owner) or `keep` (draining goes on until
    /// the last one closes).
    #[serde(default)]
    pub drain_end: DrainEnd,
    /// The old owner's VTEP address, where the new owner sends drained segments (default:
    /// `peer.address`, right when heartbeats run between the VTEPs).
    #[serde(default)]
    pub drain_peer: Option<IpAddr>,
}

/// `switchover.drain_end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainEnd {
    /// Abort what is still open.
    #[default]
    Reset,
    /// Drain until the last connection closes.
    Keep,
}

fn default_switchover_timeout() -> u64 {
    1_000
}
fn default_linger() -> u64 {
    20
}
fn default_drain() -> u64 {
    10_000
}

impl Default for SwitchoverSection {
    fn default() -> Self {
        SwitchoverSection {
            timeout_ms: default_switchover_timeout(),
            linger_ms: default_linger(),
            drain_ms: default_drain(),
            drain_end: DrainEnd::default(),
            drain_peer: None,
        }
    }
}

/// `[health]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Period of the data plane, command and HTTP checks.
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
    /// Consecutive failures of a periodic check before Fault.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Consecutive successes before recovering.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Underlay interface that must be up (watched through netlink: reacts at once).
    pub underlay_interface: Option<String>,
    /// Uplinks of an active-backup underlay: healthy while any of them is up (heartbeats
    /// follow the routing table to whichever carries them).
    #[serde(default)]
    pub underlay_interfaces: Vec<String>,
    /// The data plane's control socket (`ping` -> `pong`).
    pub dataplane_socket: Option<PathBuf>,
    /// Timeout of the data plane check.
    #[serde(default = "default_dataplane_timeout")]
    pub dataplane_timeout_ms: u64,
    /// A shell command; exit status 0 is healthy.
    pub command: Option<String>,
    /// Timeout of the command.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_ms: u64,
    /// `http://host:port/path`; a 2xx or 3xx answer is healthy.
    pub http_url: Option<String>,
    /// Timeout of the HTTP check.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_ms: u64,
}

fn default_health_interval() -> u64 {
    100
}
fn default_fall() -> u32 {
    2
}
fn default_rise() -> u32 {
    2
}
fn default_dataplane_timeout() -> u64 {
    50
}
fn default_command_timeout() -> u64 {
    1_000
}
fn default_http_timeout() -> u64 {
    200
}

impl HealthSection {
    /// Every underlay interface named, `underlay_interface` first.
    pub fn underlays(&self) -> Vec<&str> {
        self.underlay_interface
            .iter()
            .chain(&self.underlay_interfaces)
            .map(String::as_str)
            .collect()
    }
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            interval_ms: default_health_interval(),
            fall: default_fall(),
            rise: default_rise(),
            underlay_interface: None,
            underlay_interfaces: Vec::new(),
            dataplane_socket: None,
            dataplane_timeout_ms: default_dataplane_timeout(),
            command: None,
            command_timeout_ms: default_command_timeout(),
            http_url: None,
            http_timeout_ms: default_http_timeout(),
        }
    }
}

/// `[hooks]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Shell command run on every transition with `STATE`, `PREV_STATE`, `CAUSE`, `NODE` and
    /// `TIMESTAMP_NS` in its environment.
    pub notify: Option<String>,
    /// The command is killed after this long.
    #[serde(default = "default_hook_timeout")]
    pub timeout_ms: u64,
}

fn default_hook_timeout() -> u64 {
    10_000
}

impl Default for HooksSection {
    fn default() -> Self {
        HooksSection {
            notify: None,
            timeout_ms: default_hook_timeout(),
        }
    }
}

/// `[control]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Unix socket for `controller status` and `controller switchover`.
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            socket: default_control_socket(),
        }
    }
}

/// A VIP: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses `addr/prefix`.
pub fn parse_vip(s: &str) -> Result<Vip, String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not address/prefix"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len: u8 = p
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("prefix {p:?} must be 0..={max}"))?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!("{addr} cannot be a VIP"));
    }
    Ok(Vip { addr, prefix_len })
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::field(
            field,
            format!("must be {lo}..={hi}, got {v}"),
        ));
    }
    Ok(())
}

/// `sun_path` holds 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

fn socket_path(field: &str, path: &Path) -> Result<(), ConfigError> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(ConfigError::field(field, "must not be empty"));
    }
    if len > MAX_SOCKET_PATH {
        return Err(ConfigError::field(
            field,
            format!("{len} bytes is too long for a unix socket path (at most {MAX_SOCKET_PATH})"),
        ));
    }
    Ok(())
}

/// The kernel's rules for interface names, checked as the data plane checks its own.
fn interface_name(field: &str, name: &str) -> Result<(), ConfigError> {
    ovl_netlink::check_ifname(name).map_err(|e| ConfigError::field(field, e.to_string()))
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| from_toml(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        if n.name.is_empty() || n.name.len() > 64 || n.name.chars().any(char::is_control) {
            return Err(ConfigError::field(
                "node.name",
                "must be 1 to 64 printable characters",
            ));
        }
        in_range("node.priority", n.priority, 1, 255)?;
        in_range("node.hold_down_ms", n.hold_down_ms, 0, 3_600_000)?;

        let h = &self.heartbeat;
        in_range("heartbeat.interval_ms", h.interval_ms, 1, 1000)?;
        in_range("heartbeat.multiplier", h.multiplier, 2, 255)?;
        in_range("heartbeat.port", h.port, 1, 65535)?;
        in_range("heartbeat.dscp", h.dscp, 0, 63)?;
        in_range("heartbeat.realtime_priority", h.realtime_priority, 0, 99)?;
        if let Some(v) = n.startup_ms {
            let detect = h.interval_ms.saturating_mul(u64::from(h.multiplier));
            if v < detect {
                return Err(ConfigError::field(
                    "node.startup_ms",
                    format!(
                        "{v} is shorter than the detection time ({detect} ms = interval_ms x \
                         multiplier): a restarted node would claim the VIP before its peer \
                         could notice it was gone"
                    ),
                ));
            }
            in_range("node.startup_ms", v, detect, 600_000)?;
        }
        if h.address.is_unspecified() || h.address.is_multicast() {
            return Err(ConfigError::field(
                "heartbeat.address",
                format!("{} is not a unicast address", h.address),
            ));
        }
        if h.key_file.as_os_str().is_empty() {
            return Err(ConfigError::field(
                "heartbeat.key_file",
                "must not be empty",
            ));
        }
        let p = &self.peer;
        if p.address.is_unspecified() || p.address.is_multicast() {
            return Err(ConfigError::field(
                "peer.address",
                format!("{} is not a unicast address", p.address),
            ));
        }
        if p.address == h.address {
            return Err(ConfigError::field(
                "peer.address",
                format!("{} is this node's own heartbeat.address", p.address),
            ));
        }
        if p.address.is_ipv4() != h.address.is_ipv4() {
            return Err(ConfigError::field(
                "peer.address",
                "must be of the same family as heartbeat.address",
            ));
        }
        if p.port == Some(0) {
            return Err(ConfigError::field("peer.port", "must be 1..=65535, got 0"));
        }

        let v = &self.vip;
        interface_name("vip.interface", &v.interface)?;
        if v.addresses.is_empty() {
            return Err(ConfigError::field(
                "vip.addresses",
                "needs at least one address",
            ));
        }
        let mut seen = Vec::new();
        for (i, a) in v.addresses.iter().enumerate() {
            let field = format!("vip.addresses[{i}]");
            let vip = parse_vip(a).map_err(|m| ConfigError::field(&field, m))?;
            if seen.contains(&vip.addr) {
                return Err(ConfigError::field(
                    &field,
                    format!("{} listed twice", vip.addr),
                ));
            }
            seen.push(vip.addr);
        }
        in_range("vip.garp_count", v.garp_count, 1, 100)?;
        in_range("vip.garp_interval_ms", v.garp_interval_ms, 0, 10_000)?;

        let s = &self.switchover;
        in_range("switchover.timeout_ms", s.timeout_ms, 10, 60_000)?;
        if s.linger_ms >= s.timeout_ms {
            return Err(ConfigError::field(
                "switchover.linger_ms",
                format!(
                    "must be below switchover.timeout_ms ({}), got {}",
                    s.timeout_ms, s.linger_ms
                ),
            ));
        }
        in_range("switchover.drain_ms", s.drain_ms, 0, 3_600_000)?;
        if let Some(p) = s.drain_peer
            && p.is_ipv4() != self.peer.address.is_ipv4()
        {
            return Err(ConfigError::field(
                "switchover.drain_peer",
                format!(
                    "{p} is not of peer.address's family ({})",
                    self.peer.address
                ),
            ));
        }

        let hl = &self.health;
        in_range("health.interval_ms", hl.interval_ms, 1, 60_000)?;
        in_range("health.fall", hl.fall, 1, 100)?;
        in_range("health.rise", hl.rise, 1, 100)?;
        in_range(
            "health.dataplane_timeout_ms",
            hl.dataplane_timeout_ms,
            1,
            60_000,
        )?;
        in_range(
            "health.command_timeout_ms",
            hl.command_timeout_ms,
            1,
            600_000,
        )?;
        in_range("health.http_timeout_ms", hl.http_timeout_ms, 1, 60_000)?;
        for (k, i) in hl.underlay_interfaces.iter().enumerate() {
            interface_name(&format!("health.underlay_interfaces[{k}]"), i)?;
        }
        if let Some(i) = &hl.underlay_interface {
            interface_name("health.underlay_interface", i)?;
        }
        if let Some(p) = &hl.dataplane_socket {
            socket_path("health.dataplane_socket", p)?;
        }
        if let Some(c) = &hl.command
            && c.trim().is_empty()
        {
            return Err(ConfigError::field("health.command", "must not be empty"));
        }
        if let Some(u) = &hl.http_url {
            crate::health::HttpTarget::parse(u)
                .map_err(|m| ConfigError::field("health.http_url", m))?;
        }
        if let Some(c) = &self.hooks.notify
            && c.trim().is_empty()
        {
            return Err(ConfigError::field("hooks.notify", "must not be empty"));
        }
        in_range("hooks.timeout_ms", self.hooks.timeout_ms, 1, 3_600_000)?;
        socket_path("control.socket", &self.control.socket)?;
        Ok(())
    }

    /// The VIPs, parsed (validated already).
    pub fn vips(&self) -> Vec<Vip> {
        self.vip
            .addresses
            .iter()
            .filter_map(|a| parse_vip(a).ok())
            .collect()
    }

    /// Where heartbeats go.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.peer.address,
            self.peer.port.unwrap_or(self.heartbeat.port),
        )
    }

    /// Where heartbeats arrive.
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.heartbeat.address, self.heartbeat.port)
    }

    /// The state machine's parameters.
    pub fn fsm_config(&self) -> FsmConfig {
        let ms = |v: u64| -> Nanos { v.saturating_mul(MS) };
        FsmConfig {
            priority: self.node.priority,
            preempt: self.node.preempt,
            interval: ms(self.heartbeat.interval_ms),
            multiplier: self.heartbeat.multiplier,
            hold_down: ms(self.node.hold_down_ms),
            switchover_timeout: ms(self.switchover.timeout_ms),
            release_linger: ms(self.switchover.linger_ms),
            tie_break: rank(self.heartbeat.address),
            peer_tie_break: rank(self.peer.address),
            drain: if self.drains() {
                ms(self.switchover.drain_ms)
            } else {
                0
            },
            drain_keep: self.switchover.drain_end == DrainEnd::Keep,
            startup: self.startup(),
            wall_origin_us: 0,
        }
    }

    /// The silent listening period after start.
    pub fn startup(&self) -> Nanos {
        match self.node.startup_ms {
            Some(v) => v.saturating_mul(MS),
            None => FsmConfig::default_startup(
                self.heartbeat.interval_ms.saturating_mul(MS),
                self.heartbeat.multiplier,
            ),
        }
    }

    /// Whether planned switchovers drain: configured, and a data plane of ours to forward.
    pub fn drains(&self) -> bool {
        self.switchover.drain_ms > 0 && self.health.dataplane_socket.is_some()
    }

    /// Where the new owner sends drained segments: the old owner's VTEP.
    pub fn drain_peer(&self) -> IpAddr {
        self.switchover.drain_peer.unwrap_or(self.peer.address)
    }

    /// Time between announcements of a burst.
    pub fn garp_interval(&self) -> Duration {
        Duration::from_millis(self.vip.garp_interval_ms)
    }
}

/// An address as a number, for the equal-priority tie-break (higher wins).
pub fn rank(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Turns a TOML/serde error into one naming the field, found from the error's position.
fn from_toml(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError::Syntax(e.to_string());
    };
    // serde's own wording names the key for missing and unknown fields.
    let quoted =
        message.split('`').nth(1).map(str::to_string).filter(|_| {
            message.starts_with("missing field") || message.starts_with("unknown field")
        });
    let (table, key) = locate(text, span.start);
    let field = match (quoted, message.starts_with("missing field")) {
        (Some(name), true) => join(&table_at_or_before(text, span.start, &table), &name),
        // An unknown section is reported at its header.
        (Some(name), false) if header_name(line_at(text, span.start)).is_some() => name,
        (Some(name), false) => join(&table, &name),
        (None, _) => match key {
            Some(k) => join(&table, &k),
            None if !table.is_empty() => table,
            None => return ConfigError::Syntax(e.to_string()),
        },
    };
    ConfigError::Field { field, message }
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// For a missing field, toml points at the table's contents; when that position is the
/// header itself, the table is the header's.
fn table_at_or_before(text: &str, pos: usize, table: &str) -> String {
    let line = line_at(text, pos);
    header_name(line).unwrap_or_else(|| table.to_string())
}

fn line_at(text: &str, pos: usize) -> &str {
    let pos = pos.min(text.len());
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    &text[start..end]
}

fn header_name(line: &str) -> Option<String> {
    let l = line.trim();
    let inner = l.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_string())
}

/// The table a position lies in and the key of its line, if it is a `key = value` line.
fn locate(text: &str, pos: usize) -> (String, Option<String>) {
    let pos = pos.min(text.len());
    let mut table = String::new();
    let mut line_start = 0;
    for line in text[..pos].split_inclusive('\n') {
        if let Some(h) = header_name(line)
            && line_start + line.len() <= pos
        {
            table = h;
        }
        line_start += line.len();
    }
    let line = line_at(text, pos);
    if let Some(h) = header_name(line) {
        return (h, None);
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    (table, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[node]
name = "pri"
priority = 200

[peer]
address = "10.0.3.2"

[heartbeat]
address = "10.0.2.2"
key_file = "/etc/ovl/controller.key"

[vip]
interface = "ovl0"
addresses = ["192.168.0.200/24"]
"#;

    #[test]
    fn minimal_with_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.heartbeat.interval_ms, 10);
        assert_eq!(c.heartbeat.multiplier, 3);
        assert_eq!(c.heartbeat.port, 3785);
        assert_eq!(c.vip.garp_count, 3);
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.peer_addr(), "10.0.3.2:3785".parse().unwrap());
        let f = c.fsm_config();
        assert_eq!(f.interval, 10 * MS);
        assert!(f.tie_break < f.peer_tie_break);
        // Silent startup: 30 ms detection + 2 x 10 ms; real-time heartbeats on.
        assert_eq!(f.startup, 50 * MS);
        assert_eq!(c.heartbeat.realtime_priority, 10);
        assert_eq!(
            c.vips(),
            vec![Vip {
                addr: "192.168.0.200".parse().unwrap(),
                prefix_len: 24
            }]
        );
    }

    fn with(section: &str, line: &str) -> String {
        // Inserts `line` right after `[section]` (adding the section if absent).
        let header = format!("[{section}]\n");
        match MINIMAL.find(&header) {
            Some(i) => {
                let at = i + header.len();
                format!("{}{line}\n{}", &MINIMAL[..at], &MINIMAL[at..])
            }
            None => format!("{MINIMAL}\n{header}{line}\n"),
        }
    }

    #[test]
    fn startup_and_realtime_priority_are_checked() {
        let c = Config::parse(&with("node", "startup_ms = 2000")).unwrap();
        assert_eq!(c.fsm_config().startup, 2000 * MS);
        let (field, text) = err(&with("node", "startup_ms = 29"));
        assert_eq!(field, "node.startup_ms");
        assert!(
            text.contains("shorter than the detection time (30 ms"),
            "{text}"
        );
        let (field, _) = err(&with("node", "startup_ms = 600001"));
        assert_eq!(field, "node.startup_ms");
        let (field, text) = err(&with("heartbeat", "realtime_priority = 100"));
        assert_eq!(field, "heartbeat.realtime_priority");
        assert!(text.contains("0..=99"), "{text}");
        let c = Config::parse(&with("heartbeat", "realtime_priority = 0")).unwrap();
        assert_eq!(c.heartbeat.realtime_priority, 0);
    }

    fn err(text: &str) -> (String, String) {
        let e = Config::parse(text).unwrap_err();
        (
            e.field_name().unwrap_or("<none>").to_string(),
            e.to_string(),
        )
    }

    #[test]
    fn range_errors_name_the_field() {
        let (f, m) = err(&with("heartbeat", "interval_ms = 0"));
        assert_eq!(f, "heartbeat.interval_ms");
        assert_eq!(m, "config heartbeat.interval_ms: must be 1..=1000, got 0");
        let cases = [
            ("heartbeat", "multiplier = 1", "heartbeat.multiplier"),
            ("heartbeat", "dscp = 64", "heartbeat.dscp"),
            ("node", "priority = 0", "node.priority"),
            ("vip", "garp_count = 0", "vip.garp_count"),
            ("switchover", "linger_ms = 5000", "switchover.linger_ms"),
            ("health", "fall = 0", "health.fall"),
            (
                "health",
                "underlay_interface = \"a/b\"",
                "health.underlay_interface",
            ),
            ("health", "http_url = \"https://x/\"", "health.http_url"),
            ("hooks", "notify = \" \"", "hooks.notify"),
            ("peer", "port = 0", "peer.port"),
            ("control", "socket = \"\"", "control.socket"),
            (
                "health",
                "dataplane_socket = \"/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock\"",
                "health.dataplane_socket",
            ),
        ];
        for (section, line, field) in cases {
            assert_eq!(err(&with(section, line)).0, field, "{line}");
        }
    }

    #[test]
    fn serde_errors_name_the_field() {
        // Wrong type.
        let t = MINIMAL.replace("priority = 200", "priority = \"high\"");
        assert_eq!(err(&t).0, "node.priority");
        // Out of u8 range.
        let t = MINIMAL.replace("priority = 200", "priority = 300");
        assert_eq!(err(&t).0, "node.priority");
        // Unknown key.
        let (f, m) = err(&with("vip", "garps = 3"));
        assert_eq!(f, "vip.garps");
        assert!(m.contains("unknown field"), "{m}");
        // Missing key.
        let t = MINIMAL.replace("key_file = \"/etc/ovl/controller.key\"\n", "");
        let (f, m) = err(&t);
        assert_eq!(f, "heartbeat.key_file", "{m}");
        // Missing section.
        let t = MINIMAL.replace("[peer]\naddress = \"10.0.3.2\"\n", "");
        assert_eq!(err(&t).0, "peer");
        // Bad address.
        let t = MINIMAL.replace("\"10.0.3.2\"", "\"10.0.3\"");
        assert_eq!(err(&t).0, "peer.address");
        // Unknown section.
        let (f, _) = err(&format!("{MINIMAL}\n[bogus]\nx = 1\n"));
        assert_eq!(f, "bogus");
    }

    #[test]
    fn relation_errors() {
        let t = MINIMAL.replace("\"10.0.3.2\"", "\"10.0.2.2\"");
        assert_eq!(err(&t).0, "peer.address");
        let t = MINIMAL.replace("\"10.0.3.2\"", "\"fd00::2\"");
        assert_eq!(err(&t).0, "peer.address");
        let t = MINIMAL.replace(
            "[\"192.168.0.200/24\"]",
            "[\"192.168.0.200/24\", \"fd00::c8/33\", \"x\"]",
        );
        let (f, m) = err(&t);
        assert_eq!(f, "vip.addresses[2]", "{m}");
        let t = MINIMAL.replace("[\"192.168.0.200/24\"]", "[\"192.168.0.200/33\"]");
        assert_eq!(err(&t).0, "vip.addresses[0]");
        let t = MINIMAL.replace("[\"192.168.0.200/24\"]", "[]");
        assert_eq!(err(&t).0, "vip.addresses");
        let t = MINIMAL.replace(
            "[\"192.168.0.200/24\"]",
            "[\"10.1.1.1/24\", \"10.1.1.1/32\"]",
        );
        assert_eq!(err(&t).0, "vip.addresses[1]");
        let t = MINIMAL.replace("name = \"pri\"", "name = \"\"");
        assert_eq!(err(&t).0, "node.name");
    }

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        let t = MINIMAL.replace("interface = \"ovl0\"", "interface = \"ovl0:1\"");
        assert_eq!(
            err(&t).1,
            "config vip.interface: \"ovl0:1\" contains ':', which interface names cannot"
        );
        let (f, m) = err(&with(
            "health",
            "underlay_interfaces = [\"eth0\", \"eth%d\"]",
        ));
        assert_eq!(f, "health.underlay_interfaces[1]", "{m}");
        let (f, m) = err(&with("health", "underlay_interface = \"0123456789abcdef\""));
        assert_eq!(f, "health.underlay_interface");
        assert!(
            m.ends_with("\"0123456789abcdef\" is 16 bytes; at most 15"),
            "{m}"
        );
        let t = MINIMAL.replace("interface = \"ovl0\"", "interface = \"ovl-0123456789a\"");
        assert!(Config::parse(&t).is_ok());
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = Config::parse("[node\nname = 1").unwrap_err();
        assert!(e.to_string().starts_with("config"), "{e}");
    }

    #[test]
    fn vip_parsing() {
        assert!(parse_vip("fd00::200/64").is_ok());
        assert!(parse_vip("192.168.0.200").is_err());
        assert!(parse_vip("224.0.0.1/32").is_err());
        assert!(parse_vip("0.0.0.0/0").is_err());
    }
}
