//! What a lab consists of, as data: hosts, their overlays and the addressing plan.
//!
//! Every host `i` (0-based, in `LabSpec::hosts` order) sits in its own underlay subnet
//! `10.0.{i+1}.0/24`: the host is `.2` on its `eth0`, the fabric router is `.1`. With
//! [`LabSpec::underlay_ipv6`] every host also sits in `fd00:0:{i+1}::/64` (host `::2`, router
//! `::1`) and the VTEPs use those addresses ([`LabSpec::vtep_ip_at`]), as in an IPv6-only cloud
//! subnet; the IPv4 addresses stay (dual stack) but carry no tunnel traffic. Hosts whose
//! overlays share a [`Segment`] (VNI, encapsulation, UDP port) are one layer-2 segment: their
//! flood lists and head-end replication entries name each other, whatever runs them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::LabError;

/// Longest host name: the fabric side of a host's veth is `to-{name}` and interface names
/// have at most 15 bytes.
pub const MAX_HOST_NAME: usize = 12;
/// Longest prefix; it keeps namespace names and socket paths (108 bytes) comfortably short.
pub const MAX_PREFIX: usize = 24;
/// Name of the router namespace's suffix (`{prefix}fabric`); no host may use it.
pub const FABRIC: &str = "fabric";
/// Kernel-side overlay interface our data plane creates (config key `vni.interface`).
pub const OURS_INTERFACE: &str = "ovl0";
/// Bytes the kernel VXLAN driver adds over an IPv4 underlay (outer Ethernet 14, IPv4 20,
/// UDP 8, VXLAN 8): it sizes its device at the lower device's MTU minus this.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// The same over IPv6 (a 40-byte outer IPv6 header instead of 20).
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// An IPv4 address with a prefix length, written `192.168.0.10/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `a.b.c.d/prefix_len`; a prefix length over 32 is clamped to 32.
    pub const fn new(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Self {
        Self {
            addr: Ipv4Addr::new(a, b, c, d),
            prefix_len: if prefix_len > 32 { 32 } else { prefix_len },
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LabError::InvalidSpec(format!("`{s}` is not an IPv4 address/prefix"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = LabError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> Self {
        c.to_string()
    }
}

/// Tunnel encapsulation of an overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    Vxlan,
    Geneve,
}

impl Encap {
    /// The IANA port: 4789 for VXLAN, 6081 for GENEVE.
    pub fn default_port(self) -> u16 {
        match self {
            Encap::Vxlan => 4789,
            Encap::Geneve => 6081,
        }
    }

    /// The name the data plane's config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
        }
    }
}

/// One 8-byte GENEVE option TLV (4 bytes of data) our data plane adds to every frame of a VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneveOption {
    pub class: u16,
    #[serde(rename = "type")]
    pub typ: u8,
    pub data: [u8; 4],
}

/// What carries a host's overlay, if anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlay {
    /// Underlay only.
    None,
    /// The kernel's VXLAN driver: device `vxlan{vni}`, local = the host's underlay address,
    /// head-end replication to every other host of the segment through all-zero fdb entries.
    Kernel { vni: u32, port: u16, addr: Ipv4Cidr },
    /// Our data plane (`dataplane run --config FILE`), overlay interface `ovl0`.
    Ours {
        vni: u32,
        encap: Encap,
        port: u16,
        addr: Ipv4Cidr,
        geneve_option: Option<GeneveOption>,
    },
}

/// The layer-2 segment an overlay belongs to: only hosts with equal segments can talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    pub vni: u32,
    pub encap: Encap,
    pub port: u16,
}

impl Overlay {
    /// The segment, or `None` for an underlay-only host.
    pub fn segment(&self) -> Option<Segment> {
        match *self {
            Overlay::None => None,
            Overlay::Kernel { vni, port, .. } => Some(Segment {
                vni,
                encap: Encap::Vxlan,
                port,
            }),
            Overlay::Ours {
                vni, encap, port, ..
            } => Some(Segment { vni, encap, port }),
        }
    }

    /// The overlay address, or `None` for an underlay-only host.
    pub fn addr(&self) -> Option<Ipv4Cidr> {
        match *self {
            Overlay::None => None,
            Overlay::Kernel { addr, .. } | Overlay::Ours { addr, .. } => Some(addr),
        }
    }

    /// The kernel interface that carries the overlay address in the host's namespace.
    pub fn device(&self) -> Option<String> {
        match self {
            Overlay::None => None,
            Overlay::Kernel { vni, .. } => Some(format!("vxlan{vni}")),
            Overlay::Ours { .. } => Some(OURS_INTERFACE.to_string()),
        }
    }
}

/// One host namespace, `{prefix}{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    pub name: String,
    pub overlay: Overlay,
}

impl HostSpec {
    pub fn new(name: impl Into<String>, overlay: Overlay) -> Self {
        Self {
            name: name.into(),
            overlay,
        }
    }
}

/// A whole lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Namespace prefix, e.g. `lab-` or a test's `t1234-3-`; must end with `-`.
    pub prefix: String,
    pub hosts: Vec<HostSpec>,
    /// MTU of every underlay veth (both ends).
    pub underlay_mtu: u32,
    /// The data plane binary for [`Overlay::Ours`] hosts (not checked until it is started).
    pub dataplane_bin: PathBuf,
    /// How long a started data plane gets to become ready.
    pub ready_timeout: Duration,
    /// IPv6 in the namespaces. Off by default, so no router solicitations, MLD reports or
    /// DAD probes cross the overlay and counters stay exact; turn it on for IPv6 VIPs.
    pub ipv6: bool,
    /// `[fdb] ageing_secs` for our data planes (their default when `None`).
    pub fdb_ageing_secs: Option<u64>,
    /// Queues of every underlay veth, and AF_XDP workers of our data planes (one per queue,
    /// queue i's worker pinned to CPU i when there is more than one).
    pub queues: u32,
    /// Worker settings of our data planes beyond the defaults (the benchmark varies them).
    #[serde(default)]
    pub workers: WorkerTuning,
    /// `[datapath] mode` of our data planes (their default when `None`).
    #[serde(default)]
    pub mode: Option<DatapathMode>,
    /// Per-host `[datapath] mode`, overriding `mode` for the hosts named (so one lab can run
    /// the fast path on some hosts and every frame through the workers on others).
    #[serde(default)]
    pub host_modes: BTreeMap<String, DatapathMode>,
    /// Kernel VXLAN hosts whose `vxlan{vni}` device keeps TX checksum offload on. By default
    /// the lab turns it off (see [`crate::Lab`]: on a veth nobody completes the inner
    /// checksums, which only a kernel receiver tolerates); left on, the kernel driver runs as
    /// fast as it can on veths (GSO super-packets end to end, no software checksums), as it
    /// would with a NIC that completes the checksums. Only kernel receivers can talk to them.
    #[serde(default)]
    pub kernel_tx_offload: BTreeSet<String>,
    /// Uplinks of each host running our data plane: `eth0` and, with 2, a backup `eth1` with
    /// the same MAC and address (a VM's virtual function and its synthetic NIC). The router
    /// prefers the first and moves to the other when the first loses carrier or vanishes.
    #[serde(default = "one")]
    pub uplinks: u32,
    /// `[underlay] failback_hold_ms` of our data planes (their default when `None`).
    #[serde(default)]
    pub failback_hold_ms: Option<u64>,
    /// An IPv6 underlay besides the IPv4 one: `fd00:0:{i+1}::2/64` on every uplink of host
    /// `i`, the router `::1`, and the VTEPs (kernel VXLAN `local`/`dst`, our data planes'
    /// `local_ip` and `flood`, the pair's heartbeats) on those addresses. Independent of
    /// [`LabSpec::ipv6`]: only the underlay veths get IPv6, the overlays stay quiet.
    #[serde(default)]
    pub underlay_ipv6: bool,
    /// NAPI (GRO) on the router's end of every underlay veth, so the hosts' ends take frames
    /// sent from XDP (`XDP_TX`, redirects), as a NIC does: draining sends that way. Off by
    /// default, as the labs ran before draining (the other trials and the benchmark's
    /// figures are comparable with earlier runs); the draining soak and `lab up --pair` turn
    /// it on. Over IPv6 it is on regardless: our egress redirect needs it.
    #[serde(default)]
    pub router_napi: bool,
}

fn one() -> u32 {
    1
}

/// Our data plane's `[datapath] mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathMode {
    /// Known unicast in XDP/TC, the workers for the rest.
    Xdp,
    /// Every frame through the AF_XDP workers.
    Afxdp,
}

impl DatapathMode {
    pub const BOTH: [DatapathMode; 2] = [DatapathMode::Xdp, DatapathMode::Afxdp];

    pub const fn as_str(self) -> &'static str {
        match self {
            DatapathMode::Xdp => "xdp",
            DatapathMode::Afxdp => "afxdp",
        }
    }
}

/// `[workers]` settings of our data planes; `None` keeps the data plane's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTuning {
    /// CPUs to pin the workers to (queue i on `cpus[i]`); by default pinned to 0..queues
    /// when there is more than one queue.
    pub cpus: Option<Vec<u32>>,
    /// Per-host CPUs, overriding `cpus` for the hosts named.
    #[serde(default)]
    pub host_cpus: std::collections::BTreeMap<String, Vec<u32>>,
    pub batch_size: Option<u32>,
    pub frames_per_queue: Option<u32>,
    pub spin_us: Option<u32>,
    /// `busy_poll_us` (preferred busy polling of the AF_XDP sockets).
    #[serde(default)]
    pub busy_poll_us: Option<u32>,
    /// `zero_copy`: "auto", "on" or "off".
    #[serde(default)]
    pub zero_copy: Option<String>,
}

/// VNI, port and overlay subnet of the seed set-up.
pub const SEED_VNI: u32 = 10;
pub const SEED_PORT: u16 = 4789;

impl LabSpec {
    /// The seed's set-up: `client` (kernel VXLAN, 192.168.0.4), `pri` (192.168.0.10) and
    /// `sec` (192.168.0.20) running our data plane, VNI 10 on UDP 4789, underlay MTU 1500.
    pub fn seed(prefix: impl Into<String>, dataplane_bin: impl Into<PathBuf>) -> Self {
        let ours = |d| Overlay::Ours {
            vni: SEED_VNI,
            encap: Encap::Vxlan,
            port: SEED_PORT,
            addr: Ipv4Cidr::new(192, 168, 0, d, 24),
            geneve_option: None,
        };
        Self {
            prefix: prefix.into(),
            hosts: vec![
                HostSpec::new(
                    "client",
                    Overlay::Kernel {
                        vni: SEED_VNI,
                        port: SEED_PORT,
                        addr: Ipv4Cidr::new(192, 168, 0, 4, 24),
                    },
                ),
                HostSpec::new("pri", ours(10)),
                HostSpec::new("sec", ours(20)),
            ],
            underlay_mtu: 1500,
            dataplane_bin: dataplane_bin.into(),
            ready_timeout: Duration::from_secs(10),
            ipv6: false,
            fdb_ageing_secs: None,
            queues: 1,
            workers: WorkerTuning::default(),
            mode: None,
            host_modes: BTreeMap::new(),
            kernel_tx_offload: BTreeSet::new(),
            uplinks: 1,
            failback_hold_ms: None,
            underlay_ipv6: false,
            router_napi: false,
        }
    }

    /// The seed set-up with the kernel driver on every host: the benchmark's baseline, and a
    /// lab that needs no data plane binary.
    pub fn seed_kernel(prefix: impl Into<String>) -> Self {
        Self::seed(prefix, PathBuf::new()).kernel_everywhere()
    }

    /// Replaces every VXLAN [`Overlay::Ours`] by [`Overlay::Kernel`] with the same VNI, port
    /// and address (GENEVE hosts stay: the kernel here has no GENEVE); their
    /// [`LabSpec::host_modes`] entries go with them.
    pub fn kernel_everywhere(mut self) -> Self {
        for h in &mut self.hosts {
            if let Overlay::Ours {
                vni,
                encap: Encap::Vxlan,
                port,
                addr,
                ..
            } = h.overlay
            {
                h.overlay = Overlay::Kernel { vni, port, addr };
                self.host_modes.remove(&h.name);
            }
        }
        self
    }

    /// Runs our data planes in `mode`.
    pub fn with_mode(mut self, mode: DatapathMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Runs host `name`'s data plane in `mode`, whatever [`LabSpec::mode`] says.
    pub fn with_host_mode(mut self, name: impl Into<String>, mode: DatapathMode) -> Self {
        self.host_modes.insert(name.into(), mode);
        self
    }

    /// Leaves TX checksum offload on on kernel VXLAN host `name`'s device (see
    /// [`LabSpec::kernel_tx_offload`]).
    pub fn with_kernel_tx_offload(mut self, name: impl Into<String>) -> Self {
        self.kernel_tx_offload.insert(name.into());
        self
    }

    /// The `[datapath] mode` of host `name`'s data plane: its own, else the lab's, else
    /// `None` (the data plane's default).
    pub fn mode_of(&self, name: &str) -> Option<DatapathMode> {
        self.host_modes.get(name).copied().or(self.mode)
    }

    /// How many uplinks host `name` has: `uplinks` for our data planes, one for the others.
    pub fn uplinks_of(&self, name: &str) -> u32 {
        match self.host(name) {
            Some((_, h)) if matches!(h.overlay, Overlay::Ours { .. }) => self.uplinks,
            _ => 1,
        }
    }

    /// Whether host `name`'s kernel VXLAN device keeps TX checksum offload on.
    pub fn keeps_tx_offload(&self, name: &str) -> bool {
        self.kernel_tx_offload.contains(name)
    }

    /// Adds a host (it gets the next underlay subnet).
    pub fn with_host(mut self, host: HostSpec) -> Self {
        self.hosts.push(host);
        self
    }

    /// Replaces the overlay of host `name` (no-op for an unknown name; `validate` catches
    /// nothing there, so check the result if it matters).
    pub fn with_overlay(mut self, name: &str, overlay: Overlay) -> Self {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == name) {
            h.overlay = overlay;
        }
        self
    }

    /// The host called `name`, with its index.
    pub fn host(&self, name: &str) -> Option<(usize, &HostSpec)> {
        self.hosts.iter().enumerate().find(|(_, h)| h.name == name)
    }

    /// Namespace of `host` (or of the router for [`FABRIC`]).
    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Every namespace of the lab, the router first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.ns(FABRIC))
            .chain(self.hosts.iter().map(|h| self.ns(&h.name)))
            .collect()
    }

    /// Underlay address of host `index` (`10.0.{index+1}.2`).
    pub fn underlay_ip_at(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, subnet_octet(index), 2)
    }

    /// The fabric router's address in host `index`'s subnet (`10.0.{index+1}.1`).
    pub fn gateway_at(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, subnet_octet(index), 1)
    }

    /// IPv6 underlay address of host `index` (`fd00:0:{index+1}::2`), present only with
    /// [`LabSpec::underlay_ipv6`]. The group is written with the IPv4 octet's decimal
    /// digits, so the two read alike: host 9 is `10.0.10.2` and `fd00:0:10::2`.
    pub fn underlay_ip6_at(index: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, subnet_group(index), 0, 0, 0, 0, 2)
    }

    /// The fabric router's IPv6 address in host `index`'s subnet (`fd00:0:{index+1}::1`).
    pub fn gateway6_at(index: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, subnet_group(index), 0, 0, 0, 0, 1)
    }

    /// The address host `index`'s VTEP sends from and receives on: the IPv6 underlay
    /// address with [`LabSpec::underlay_ipv6`], else the IPv4 one.
    pub fn vtep_ip_at(&self, index: usize) -> IpAddr {
        if self.underlay_ipv6 {
            IpAddr::V6(Self::underlay_ip6_at(index))
        } else {
            IpAddr::V4(Self::underlay_ip_at(index))
        }
    }

    /// What the kernel VXLAN driver adds to each frame on this lab's underlay: 70 bytes
    /// over IPv6, 50 over IPv4.
    pub fn kernel_vxlan_overhead(&self) -> u32 {
        if self.underlay_ipv6 {
            VXLAN_OVERHEAD_V6
        } else {
            VXLAN_OVERHEAD_V4
        }
    }

    /// The MTU the kernel gives a `vxlan{vni}` device bound to `eth0`: underlay MTU minus
    /// [`LabSpec::kernel_vxlan_overhead`].
    pub fn kernel_vxlan_mtu(&self) -> u32 {
        self.underlay_mtu
            .saturating_sub(self.kernel_vxlan_overhead())
    }

    /// Deterministic, locally administered MAC of host `index`'s overlay interface
    /// (`02:00:00:00:HH:LL` with HHLL = index + 1), so tests can look for it in FDBs.
    pub fn overlay_mac_at(index: usize) -> [u8; 6] {
        let n = u16::try_from(index + 1).unwrap_or(u16::MAX).to_be_bytes();
        [0x02, 0, 0, 0, n[0], n[1]]
    }

    /// IPv4 underlay addresses of the other hosts in `host`'s segment, in host order
    /// (whatever [`LabSpec::underlay_ipv6`] says; [`LabSpec::vtep_peers`] follows it).
    pub fn peers(&self, host: &str) -> Vec<Ipv4Addr> {
        self.peer_indices(host)
            .into_iter()
            .map(Self::underlay_ip_at)
            .collect()
    }

    /// VTEP addresses ([`LabSpec::vtep_ip_at`]) of the other hosts in `host`'s segment, in
    /// host order: what its flood list and head-end replication entries name.
    pub fn vtep_peers(&self, host: &str) -> Vec<IpAddr> {
        self.peer_indices(host)
            .into_iter()
            .map(|i| self.vtep_ip_at(i))
            .collect()
    }

    fn peer_indices(&self, host: &str) -> Vec<usize> {
        let Some((me, h)) = self.host(host) else {
            return Vec::new();
        };
        let Some(seg) = h.overlay.segment() else {
            return Vec::new();
        };
        self.hosts
            .iter()
            .enumerate()
            .filter(|(i, o)| *i != me && o.overlay.segment() == Some(seg))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether any host runs our data plane.
    pub fn needs_dataplane(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| matches!(h.overlay, Overlay::Ours { .. }))
    }

    /// Checks names, numbers and addresses; everything [`crate::Lab::up`] relies on.
    pub fn validate(&self) -> Result<(), LabError> {
        let bad = |m: String| Err(LabError::InvalidSpec(m));
        check_prefix(&self.prefix)?;
        if self.hosts.is_empty() || self.hosts.len() > 254 {
            return bad(format!("{} hosts: 1..=254 allowed", self.hosts.len()));
        }
        if !(1..=2).contains(&self.uplinks) {
            return bad(format!("{} uplinks: 1 or 2", self.uplinks));
        }
        if !(1280..=9000).contains(&self.underlay_mtu) {
            return bad(format!("underlay MTU {}: 1280..=9000", self.underlay_mtu));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            // No `-` in host names: then `{prefix}{name}` can never also read as another
            // lab's `{longer-prefix}{name}`, and `down` deletes exactly its own namespaces.
            if h.name.is_empty()
                || h.name.len() > MAX_HOST_NAME
                || !h.name.starts_with(|c: char| c.is_ascii_lowercase())
                || !h
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return bad(format!(
                    "host name `{}`: 1..={MAX_HOST_NAME} characters of a-z and 0-9, starting \
                     with a letter",
                    h.name
                ));
            }
            if h.name == FABRIC {
                return bad(format!("host name `{FABRIC}` is the router's"));
            }
            if self.hosts[..i].iter().any(|o| o.name == h.name) {
                return bad(format!("host name `{}` used twice", h.name));
            }
            match &h.overlay {
                Overlay::None => {}
                Overlay::Kernel { vni, port, addr } => {
                    check_overlay(&h.name, *vni, *port, *addr)?;
                }
                Overlay::Ours {
                    vni,
                    encap,
                    port,
                    addr,
                    geneve_option,
                } => {
                    check_overlay(&h.name, *vni, *port, *addr)?;
                    if geneve_option.is_some() && *encap != Encap::Geneve {
                        return bad(format!(
                            "host {}: a GENEVE option needs encap geneve",
                            h.name
                        ));
                    }
                }
            }
            if let (Some(seg), Some(addr)) = (h.overlay.segment(), h.overlay.addr()) {
                let clash = self.hosts[..i].iter().find(|o| {
                    o.overlay.segment() == Some(seg)
                        && o.overlay.addr().map(|a| a.addr) == Some(addr.addr)
                });
                if let Some(o) = clash {
                    return bad(format!(
                        "hosts {} and {} share the segment and the overlay address {}",
                        o.name, h.name, addr.addr
                    ));
                }
            }
        }
        // A UDP port carries one encapsulation on a host; across hosts of one lab the same
        // rule keeps kernel peers from receiving GENEVE on their VXLAN port.
        for (i, a) in self.hosts.iter().enumerate() {
            for b in &self.hosts[..i] {
                if let (Some(x), Some(y)) = (a.overlay.segment(), b.overlay.segment())
                    && x.port == y.port
                    && x.encap != y.encap
                {
                    return bad(format!(
                        "hosts {} and {} use UDP port {} for different encapsulations",
                        b.name, a.name, x.port
                    ));
                }
            }
        }
        // Per-host settings must name a host that has what they change, or they silently do
        // nothing.
        for name in self.host_modes.keys() {
            if !matches!(
                self.host(name).map(|(_, h)| &h.overlay),
                Some(Overlay::Ours { .. })
            ) {
                return bad(format!(
                    "host_modes names `{name}`, which is not a host running our data plane"
                ));
            }
        }
        for name in &self.kernel_tx_offload {
            if !matches!(
                self.host(name).map(|(_, h)| &h.overlay),
                Some(Overlay::Kernel { .. })
            ) {
                return bad(format!(
                    "kernel_tx_offload names `{name}`, which is not a kernel VXLAN host"
                ));
            }
        }
        if self.ready_timeout.is_zero() {
            return bad("ready_timeout must be positive".into());
        }
        Ok(())
    }
}

/// Checks a namespace prefix: 2..=24 characters of a-z, 0-9 and `-`, starting with a letter
/// and ending with `-`.
pub fn check_prefix(p: &str) -> Result<(), LabError> {
    if p.len() < 2
        || p.len() > MAX_PREFIX
        || !p.ends_with('-')
        || !p.starts_with(|c: char| c.is_ascii_lowercase())
        || !p
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(LabError::InvalidSpec(format!(
            "prefix `{p}`: 2..={MAX_PREFIX} characters of a-z, 0-9 and `-`, starting with a \
             letter and ending with `-`"
        )));
    }
    Ok(())
}

fn subnet_octet(index: usize) -> u8 {
    // validate() allows at most 254 hosts, so index + 1 fits.
    u8::try_from(index + 1).unwrap_or(u8::MAX)
}

/// The IPv6 subnet group of host `index`: `subnet_octet`'s decimal digits read as hex
/// (at most `0x254`).
fn subnet_group(index: usize) -> u16 {
    u16::from_str_radix(&subnet_octet(index).to_string(), 16).unwrap_or(u16::MAX)
}

fn check_overlay(host: &str, vni: u32, port: u16, addr: Ipv4Cidr) -> Result<(), LabError> {
    if !(1..=0x00ff_ffff).contains(&vni) {
        return Err(LabError::InvalidSpec(format!(
            "host {host}: VNI {vni} not in 1..=16777215"
        )));
    }
    if port == 0 {
        return Err(LabError::InvalidSpec(format!("host {host}: UDP port 0")));
    }
    if addr.prefix_len == 0 || addr.prefix_len > 30 {
        return Err(LabError::InvalidSpec(format!(
            "host {host}: overlay prefix length /{} not in 1..=30",
            addr.prefix_len
        )));
    }
    if addr.addr.octets()[0] == 10 && addr.addr.octets()[1] == 0 {
        return Err(LabError::InvalidSpec(format!(
            "host {host}: overlay address {addr} lies in the underlay's 10.0.0.0/16"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_matches_the_design() {
        let s = LabSpec::seed("lab-", "/bin/dp");
        s.validate().unwrap();
        assert_eq!(s.ns("client"), "lab-client");
        assert_eq!(
            s.namespaces(),
            ["lab-fabric", "lab-client", "lab-pri", "lab-sec"]
        );
        assert_eq!(LabSpec::underlay_ip_at(1), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(LabSpec::gateway_at(2), Ipv4Addr::new(10, 0, 3, 1));
        assert_eq!(
            s.peers("pri"),
            [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 3, 2)]
        );
        assert!(s.needs_dataplane());
        let k = LabSpec::seed_kernel("lab-");
        assert!(!k.needs_dataplane());
        assert_eq!(
            k.hosts[1].overlay,
            Overlay::Kernel {
                vni: 10,
                port: 4789,
                addr: "192.168.0.10/24".parse().unwrap()
            }
        );
    }

    #[test]
    fn peers_are_the_same_segment_only() {
        let s = LabSpec::seed_kernel("t-")
            .with_host(HostSpec::new(
                "vni20",
                Overlay::Kernel {
                    vni: 20,
                    port: 4789,
                    addr: "192.168.0.30/24".parse().unwrap(),
                },
            ))
            .with_host(HostSpec::new(
                "port8472",
                Overlay::Kernel {
                    vni: 10,
                    port: 8472,
                    addr: "192.168.0.40/24".parse().unwrap(),
                },
            ))
            .with_host(HostSpec::new("plain", Overlay::None));
        s.validate().unwrap();
        assert_eq!(s.peers("client").len(), 2);
        assert!(s.peers("vni20").is_empty());
        assert!(s.peers("port8472").is_empty());
        assert!(s.peers("plain").is_empty());
        assert!(s.peers("nobody").is_empty());
    }

    #[test]
    fn bad_specs_are_refused() {
        let ok = LabSpec::seed_kernel("t-");
        let cases: Vec<LabSpec> = vec![
            LabSpec {
                prefix: "lab".into(),
                ..ok.clone()
            },
            LabSpec {
                prefix: "Lab-".into(),
                ..ok.clone()
            },
            LabSpec {
                prefix: "a/b-".into(),
                ..ok.clone()
            },
            ok.clone().with_host(HostSpec::new("client", Overlay::None)),
            ok.clone().with_host(HostSpec::new("fabric", Overlay::None)),
            ok.clone().with_host(HostSpec::new("a-b", Overlay::None)),
            ok.clone()
                .with_host(HostSpec::new("thirteenchars", Overlay::None)),
            ok.clone().with_overlay(
                "pri",
                Overlay::Kernel {
                    vni: 0,
                    port: 4789,
                    addr: "192.168.0.10/24".parse().unwrap(),
                },
            ),
            ok.clone().with_overlay(
                "pri",
                Overlay::Kernel {
                    vni: 10,
                    port: 4789,
                    addr: "192.168.0.4/24".parse().unwrap(),
                },
            ),
            ok.clone().with_overlay(
                "pri",
                Overlay::Ours {
                    vni: 10,
                    encap: Encap::Vxlan,
                    port: 4789,
                    addr: "192.168.0.10/24".parse().unwrap(),
                    geneve_option: Some(GeneveOption {
                        class: 1,
                        typ: 2,
                        data: [0; 4],
                    }),
                },
            ),
            ok.clone().with_overlay(
                "pri",
                Overlay::Ours {
                    vni: 30,
                    encap: Encap::Geneve,
                    port: 4789,
                    addr: "192.168.0.10/24".parse().unwrap(),
                    geneve_option: None,
                },
            ),
            LabSpec {
                underlay_mtu: 100,
                ..ok.clone()
            },
            LabSpec {
                hosts: vec![],
                ..ok.clone()
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(
                matches!(c.validate(), Err(LabError::InvalidSpec(_))),
                "case {i} accepted: {c:?}"
            );
        }
    }

    #[test]
    fn cidr_round_trips_and_rejects_garbage() {
        let c: Ipv4Cidr = "192.168.0.10/24".parse().unwrap();
        assert_eq!(c, Ipv4Cidr::new(192, 168, 0, 10, 24));
        assert_eq!(c.to_string(), "192.168.0.10/24");
        for bad in ["192.168.0.10", "192.168.0.10/33", "x/24", "1.2.3/8", ""] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"192.168.0.10/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Cidr>(&json).unwrap(), c);
    }

    #[test]
    fn per_host_modes_override_the_lab_mode() {
        let s = LabSpec::seed("t-", "/bin/dp")
            .with_mode(DatapathMode::Xdp)
            .with_host_mode("sec", DatapathMode::Afxdp);
        s.validate().unwrap();
        assert_eq!(s.mode_of("pri"), Some(DatapathMode::Xdp));
        assert_eq!(s.mode_of("sec"), Some(DatapathMode::Afxdp));
        let no_global = LabSpec::seed("t-", "/bin/dp").with_host_mode("pri", DatapathMode::Afxdp);
        assert_eq!(no_global.mode_of("pri"), Some(DatapathMode::Afxdp));
        assert_eq!(no_global.mode_of("sec"), None, "the data plane's default");
        // A mode for a host that does not run our data plane would do nothing: refused.
        for bad in ["client", "nobody"] {
            let s = LabSpec::seed("t-", "/bin/dp").with_host_mode(bad, DatapathMode::Xdp);
            assert!(
                matches!(s.validate(), Err(LabError::InvalidSpec(m)) if m.contains(bad)),
                "{bad}"
            );
        }
        // Turning pri and sec into kernel hosts takes their modes with them.
        let k = s.clone().kernel_everywhere();
        assert!(k.host_modes.is_empty());
        k.validate().unwrap();
    }

    #[test]
    fn tx_offload_is_kept_only_where_asked_and_only_on_kernel_hosts() {
        let s = LabSpec::seed_kernel("t-").with_kernel_tx_offload("pri");
        s.validate().unwrap();
        assert!(s.keeps_tx_offload("pri"));
        assert!(!s.keeps_tx_offload("client") && !s.keeps_tx_offload("sec"));
        for bad in ["nobody", "pri"] {
            let s = LabSpec::seed("t-", "/bin/dp").with_kernel_tx_offload(bad);
            assert!(
                matches!(s.validate(), Err(LabError::InvalidSpec(m)) if m.contains(bad)),
                "{bad}: our data plane's host has no kernel VXLAN device"
            );
        }
    }

    #[test]
    fn specs_written_before_the_per_host_fields_still_load() {
        let s = LabSpec::seed("t-", "/bin/dp")
            .with_host_mode("pri", DatapathMode::Afxdp)
            .with_mode(DatapathMode::Xdp);
        let mut v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["host_modes"]["pri"], "afxdp");
        assert_eq!(v["mode"], "xdp");
        let obj = v.as_object_mut().unwrap();
        obj.remove("host_modes");
        obj.remove("kernel_tx_offload");
        let old: LabSpec = serde_json::from_value(v).unwrap();
        assert!(old.host_modes.is_empty() && old.kernel_tx_offload.is_empty());
        assert_eq!(old.mode_of("pri"), Some(DatapathMode::Xdp));
        let with_offload = LabSpec::seed_kernel("t-").with_kernel_tx_offload("client");
        let text = serde_json::to_string(&with_offload).unwrap();
        assert_eq!(
            serde_json::from_str::<LabSpec>(&text).unwrap(),
            with_offload
        );
    }

    #[test]
    fn overlay_macs_are_distinct_and_local() {
        let a = LabSpec::overlay_mac_at(0);
        let b = LabSpec::overlay_mac_at(255);
        assert_eq!(a, [2, 0, 0, 0, 0, 1]);
        assert_eq!(b, [2, 0, 0, 0, 1, 0]);
        assert_eq!(a[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn ipv6_underlay_moves_the_vteps_and_leaves_the_ipv4_api_alone() {
        let v4 = LabSpec::seed_kernel("t-");
        let mut v6 = v4.clone();
        v6.underlay_ipv6 = true;
        v6.validate().unwrap();
        assert_eq!(
            LabSpec::underlay_ip6_at(0),
            "fd00:0:1::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            LabSpec::gateway6_at(2),
            "fd00:0:3::1".parse::<Ipv6Addr>().unwrap()
        );
        // The group reads like the IPv4 octet, also past 9.
        assert_eq!(LabSpec::underlay_ip6_at(9).to_string(), "fd00:0:10::2");
        assert_eq!(LabSpec::underlay_ip6_at(253).to_string(), "fd00:0:254::2");
        assert_eq!(v4.vtep_ip_at(1), IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(v6.vtep_ip_at(1).to_string(), "fd00:0:2::2");
        let text = |a: Vec<IpAddr>| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(text(v4.vtep_peers("pri")), ["10.0.1.2", "10.0.3.2"]);
        assert_eq!(text(v6.vtep_peers("pri")), ["fd00:0:1::2", "fd00:0:3::2"]);
        assert!(v6.vtep_peers("nobody").is_empty());
        // The IPv4-typed helpers keep answering IPv4.
        assert_eq!(v6.peers("pri"), v4.peers("pri"));
        assert_eq!(v4.kernel_vxlan_overhead(), 50);
        assert_eq!(v6.kernel_vxlan_overhead(), 70);
        assert_eq!(v4.kernel_vxlan_mtu(), 1450);
        assert_eq!(v6.kernel_vxlan_mtu(), 1430);
    }

    #[test]
    fn specs_without_underlay_ipv6_load_as_ipv4() {
        let mut s = LabSpec::seed_kernel("t-");
        s.underlay_ipv6 = true;
        let mut v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["underlay_ipv6"], true);
        v.as_object_mut().unwrap().remove("underlay_ipv6");
        let old: LabSpec = serde_json::from_value(v).unwrap();
        assert!(!old.underlay_ipv6);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<LabSpec>(&text).unwrap(), s);
    }
}
