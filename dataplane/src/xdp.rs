//! The XDP programs as userspace sees them: the embedded object, loading it into the kernel,
//! typed access to its maps, attaching, and running a program on a frame (`BPF_PROG_TEST_RUN`).

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues,
        XskMap, xdp::XdpMapError,
    },
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId,
        xdp::XdpLinkId,
    },
};
use ovl_common::{
    Config, Counter, DrainFlow, DrainKey, DrainVip, FdbEntry, FdbKey, NextHop, PortInfo,
    UdpPortInfo, VniCounters, VniInfo, VtepAddr, maps, programs,
};

use crate::testrun::{self, TestRun, TestRunError};

/// The compiled XDP object, built by `build.rs` with Debian's rustc for bpfel-unknown-none.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("OVL_XDP_OBJ"));

/// Errors of the XDP control path.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("device map {name}: {source}")]
    DevMap {
        name: &'static str,
        #[source]
        source: XdpMapError,
    },
    /// The verifier refused a program: one line here, the whole log in `log`.
    #[error(
        "program {program} refused by the verifier of kernel {kernel}: {verdict} (full verifier log: {log})"
    )]
    Verifier {
        program: &'static str,
        kernel: String,
        verdict: String,
        log: String,
    },
    #[error("the object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error(transparent)]
    TestRun(#[from] TestRunError),
}

/// Which of the two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Decapsulation on the underlay NIC.
    UnderlayIngress,
    /// Encapsulation on the data plane's end of an overlay veth.
    OverlayEgress,
}

impl Program {
    pub const fn name(self) -> &'static str {
        match self {
            Program::UnderlayIngress => programs::UNDERLAY_INGRESS,
            Program::OverlayEgress => programs::OVERLAY_EGRESS,
        }
    }
}

/// The TC egress program (on the kernel's end of an overlay veth, "xdp" mode).
pub const TC_EGRESS: &str = programs::OVERLAY_TC_EGRESS;

/// Counter values summed over all CPUs, indexed by `Counter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters(pub [u64; Counter::COUNT as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Per-counter difference `self - earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = [0u64; Counter::COUNT as usize];
        for (i, slot) in d.iter_mut().enumerate() {
            *slot = self.0[i].wrapping_sub(earlier.0[i]);
        }
        Counters(d)
    }

    /// Sum of the counters that record dropped frames.
    pub fn drops(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_drop())
            .map(|&c| self.get(c))
            .sum()
    }

    /// Counters that are non-zero, with their values.
    pub fn nonzero(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c, self.get(c)))
            .filter(|&(_, v)| v != 0)
            .collect()
    }
}

/// The non-zero counters as `name=value`, space-separated.
impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (c, v)) in self.nonzero().into_iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={v}", c.name())?;
        }
        Ok(())
    }
}

/// The loaded programs and their maps.
pub struct XdpObject {
    ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl std::fmt::Debug for XdpObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpObject").finish_non_exhaustive()
    }
}

macro_rules! map_mut {
    ($self:ident, $name:expr, $ty:ty) => {{
        let name: &'static str = $name;
        let map = $self
            .ebpf
            .map_mut(name)
            .ok_or(XdpError::Missing { kind: "map", name })?;
        <$ty>::try_from(map).map_err(|source| XdpError::Map { name, source })?
    }};
}

macro_rules! map_ref {
    ($self:ident, $name:expr, $ty:ty) => {{
        let name: &'static str = $name;
        let map = $self
            .ebpf
            .map(name)
            .ok_or(XdpError::Missing { kind: "map", name })?;
        <$ty>::try_from(map).map_err(|source| XdpError::Map { name, source })?
    }};
}

/// Program `name` of the object as its type `T`, read-only.
fn program_ref<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a T, XdpError>
where
    &'a T: TryFrom<&'a aya::programs::Program, Error = ProgramError>,
{
    ebpf.program(name)
        .ok_or(XdpError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| XdpError::Program { name, source })
}

fn xdp_ref(ebpf: &Ebpf, p: Program) -> Result<&Xdp, XdpError> {
    program_ref(ebpf, p.name())
}

/// Program `name` of the object as its type `T` (`Xdp`, `SchedClassifier`).
fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, XdpError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(XdpError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| XdpError::Program { name, source })
}

fn xdp_mut(ebpf: &mut Ebpf, p: Program) -> Result<&mut Xdp, XdpError> {
    program_mut(ebpf, p.name())
}

fn tc_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, XdpError> {
    program_mut(ebpf, TC_EGRESS)
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |source| XdpError::Map { name, source }
}

/// Whether adding the clsact qdisc failed only because it is there.
fn is_exists(e: &aya::programs::tc::TcError) -> bool {
    matches!(e, aya::programs::tc::TcError::AlreadyAttached)
        || e.to_string().contains("File exists")
        || std::error::Error::source(e).is_some_and(|s| s.to_string().contains("File exists"))
}

/// A map removal's result, where a key that was not there is what the caller wanted anyway.
fn absent_ok(name: &'static str, r: Result<(), MapError>) -> Result<(), XdpError> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(XdpError::Map { name, source }),
    }
}

/// Where `XdpObject::load` puts a refused program's verifier log.
pub const VERIFIER_LOG_DIR: &str = "/run/ovl-dataplane";

/// A program's load error; a verifier refusal becomes one line, its log a file under `dir`
/// (a verifier dump runs to thousands of lines: never for the console).
fn load_error(name: &'static str, source: ProgramError, dir: &Path) -> XdpError {
    match source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => refused(name, &io_error, &verifier_log.to_string(), dir),
        source => XdpError::Program { name, source },
    }
}

/// A refused program `name`: its log saved under `dir`, the error one line.
fn refused(name: &'static str, io_error: &std::io::Error, log: &str, dir: &Path) -> XdpError {
    let verdict = if log.trim().is_empty() {
        io_error.to_string()
    } else {
        crate::features::verifier::summary(log)
    };
    let full = format!("{name}: BPF_PROG_LOAD failed: {io_error}\n{log}");
    let log = crate::features::verifier::save(dir, name, &full)
        .map_or_else(|| "not saved".to_string(), |p| p.display().to_string());
    XdpError::Verifier {
        program: name,
        kernel: crate::features::kernel().release,
        verdict,
        log,
    }
}

impl XdpObject {
    /// Loads both programs into the kernel (the verifier runs here) and creates their maps.
    /// Nothing is attached yet, and until `set_config` enables them both programs pass
    /// everything. A refused program's verifier log goes to [`VERIFIER_LOG_DIR`].
    pub fn load() -> Result<XdpObject, XdpError> {
        Self::load_logging_to(Path::new(VERIFIER_LOG_DIR))
    }

    /// As `load`, with a refused program's verifier log written under `dir`.
    pub fn load_logging_to(dir: &Path) -> Result<XdpObject, XdpError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        // The programs log only on internal errors; a missing logger map is not fatal.
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        for p in [Program::UnderlayIngress, Program::OverlayEgress] {
            xdp_mut(&mut ebpf, p)?
                .load()
                .map_err(|source| load_error(p.name(), source, dir))?;
        }
        tc_mut(&mut ebpf)?
            .load()
            .map_err(|source| load_error(TC_EGRESS, source, dir))?;
        Ok(XdpObject { ebpf, logger })
    }

    /// The TC egress program's file descriptor.
    pub fn tc_program_fd(&self) -> Result<BorrowedFd<'_>, XdpError> {
        let name = TC_EGRESS;
        let p: &SchedClassifier = program_ref(&self.ebpf, name)?;
        let fd = p
            .fd()
            .map_err(|source| XdpError::Program { name, source })?;
        Ok(fd.as_fd())
    }

    /// Attaches the TC egress program to `ifname` (TCX on this kernel: a link that goes away
    /// with the process, so a killed run leaves nothing attached).
    pub fn attach_tc_egress(&mut self, ifname: &str) -> Result<SchedClassifierLinkId, XdpError> {
        let name = TC_EGRESS;
        // Before 6.6 aya attaches through netlink, which needs the clsact qdisc (same version
        // rule as aya's). One that is there already is fine.
        if !crate::features::kernel().at_least(6, 6) {
            match aya::programs::tc::qdisc_add_clsact(ifname) {
                Ok(()) => {}
                Err(e) if is_exists(&e) => {}
                Err(e) => {
                    return Err(XdpError::Program {
                        name,
                        source: ProgramError::from(e),
                    });
                }
            }
        }
        tc_mut(&mut self.ebpf)?
            .attach(ifname, TcAttachType::Egress)
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Detaches a link made by `attach_tc_egress`.
    pub fn detach_tc_egress(&mut self, link: SchedClassifierLinkId) -> Result<(), XdpError> {
        let name = TC_EGRESS;
        tc_mut(&mut self.ebpf)?
            .detach(link)
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Makes VNI `vni`'s overlay port reachable by the ingress fast path: redirects to
    /// `dp_ifindex` (the data plane's end of its veth) deliver on the kernel's end.
    pub fn set_port_dev(&mut self, vni: u32, dp_ifindex: u32) -> Result<(), XdpError> {
        let name = maps::PORT_DEVS;
        let mut m = map_mut!(self, name, DevMapHash<&mut MapData>);
        m.insert(vni, dp_ifindex, None, 0)
            .map_err(|source| XdpError::DevMap { name, source })
    }

    pub fn remove_port_dev(&mut self, vni: u32) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::PORT_DEVS, DevMapHash<&mut MapData>);
        m.remove(vni).map_err(map_err(maps::PORT_DEVS))
    }

    /// Creates VNI `vni`'s fast-path counters (zero); the programs only add to existing ones.
    pub fn init_vni_counters(&mut self, vni: u32) -> Result<(), XdpError> {
        let name = maps::VNI_COUNTERS;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| XdpError::Map {
            name,
            source: MapError::IoError(e),
        })?;
        let zero = PerCpuValues::try_from(vec![VniCounters::default(); cpus]).map_err(|e| {
            XdpError::Map {
                name,
                source: MapError::IoError(e),
            }
        })?;
        let mut m = map_mut!(self, name, PerCpuHashMap<&mut MapData, u32, VniCounters>);
        m.insert(vni, zero, 0).map_err(map_err(name))
    }

    /// The fast path's per-VNI counters, summed over CPUs.
    pub fn vni_counters(&self) -> Result<Vec<(u32, VniCounters)>, XdpError> {
        let name = maps::VNI_COUNTERS;
        let m = map_ref!(self, name, PerCpuHashMap<&MapData, u32, VniCounters>);
        let mut out = Vec::new();
        for item in m.iter() {
            let (vni, per_cpu) = item.map_err(map_err(name))?;
            let sum = per_cpu
                .iter()
                .fold(VniCounters::default(), |a, c| VniCounters {
                    rx_packets: a.rx_packets + c.rx_packets,
                    rx_bytes: a.rx_bytes + c.rx_bytes,
                    tx_packets: a.tx_packets + c.tx_packets,
                    tx_bytes: a.tx_bytes + c.tx_bytes,
                });
            out.push((vni, sum));
        }
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// The FDB entry of `key`, as the programs see it (with its last-seen stamp).
    pub fn fdb(&self, key: FdbKey) -> Result<Option<FdbEntry>, XdpError> {
        let m = map_ref!(self, maps::FDB, HashMap<&MapData, FdbKey, FdbEntry>);
        match m.get(&key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(XdpError::Map {
                name: maps::FDB,
                source,
            }),
        }
    }

    fn program_mut(&mut self, p: Program) -> Result<&mut Xdp, XdpError> {
        xdp_mut(&mut self.ebpf, p)
    }

    /// The program's file descriptor.
    pub fn program_fd(&self, p: Program) -> Result<BorrowedFd<'_>, XdpError> {
        let fd = xdp_ref(&self.ebpf, p)?
            .fd()
            .map_err(|source| XdpError::Program {
                name: p.name(),
                source,
            })?;
        Ok(fd.as_fd())
    }

    /// Size of the program as the kernel holds it after verification, in BPF instructions.
    pub fn instructions(&self, p: Program) -> Result<u32, XdpError> {
        let info = xdp_ref(&self.ebpf, p)?
            .info()
            .map_err(|source| XdpError::Program {
                name: p.name(),
                source,
            })?;
        // size_translated is in bytes; a BPF instruction is 8.
        Ok(info.size_translated().unwrap_or(0) / 8)
    }

    /// Attaches `p` to `ifname` in `mode`.
    pub fn attach(
        &mut self,
        p: Program,
        ifname: &str,
        mode: XdpMode,
    ) -> Result<XdpLinkId, XdpError> {
        let name = p.name();
        self.program_mut(p)?
            .attach(ifname, mode)
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Detaches a link made by `attach`.
    pub fn detach(&mut self, p: Program, link: XdpLinkId) -> Result<(), XdpError> {
        let name = p.name();
        self.program_mut(p)?
            .detach(link)
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Writes the global settings (enabling the programs if `cfg.enabled != 0`).
    pub fn set_config(&mut self, cfg: Config) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::CONFIG, Array<&mut MapData, Config>);
        m.set(0, cfg, 0).map_err(map_err(maps::CONFIG))
    }

    /// Declares `port` (host order) an overlay UDP port carrying `encap`.
    pub fn set_udp_port(&mut self, port: u16, info: UdpPortInfo) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::UDP_PORTS, HashMap<&mut MapData, u16, UdpPortInfo>);
        m.insert(port, info, 0).map_err(map_err(maps::UDP_PORTS))
    }

    pub fn set_vni(&mut self, vni: u32, info: VniInfo) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::VNIS, HashMap<&mut MapData, u32, VniInfo>);
        m.insert(vni, info, 0).map_err(map_err(maps::VNIS))
    }

    pub fn remove_vni(&mut self, vni: u32) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::VNIS, HashMap<&mut MapData, u32, VniInfo>);
        m.remove(&vni).map_err(map_err(maps::VNIS))
    }

    /// Declares the interface `ifindex` an overlay port.
    pub fn set_port(&mut self, ifindex: u32, info: PortInfo) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::PORTS, HashMap<&mut MapData, u32, PortInfo>);
        m.insert(ifindex, info, 0).map_err(map_err(maps::PORTS))
    }

    /// Declares `ifindex` an uplink whose queue `q` has its socket in XSKMAP slot `base + q`.
    pub fn set_uplink(&mut self, ifindex: u32, base: u32) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::UPLINKS, HashMap<&mut MapData, u32, u32>);
        m.insert(ifindex, base, 0).map_err(map_err(maps::UPLINKS))
    }

    pub fn remove_uplink(&mut self, ifindex: u32) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::UPLINKS, HashMap<&mut MapData, u32, u32>);
        m.remove(&ifindex).map_err(map_err(maps::UPLINKS))
    }

    pub fn set_fdb(&mut self, key: FdbKey, entry: FdbEntry) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::FDB, HashMap<&mut MapData, FdbKey, FdbEntry>);
        m.insert(key, entry, 0).map_err(map_err(maps::FDB))
    }

    /// Removes FDB entry `key`; one that is not there counts as removed.
    pub fn remove_fdb(&mut self, key: FdbKey) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::FDB, HashMap<&mut MapData, FdbKey, FdbEntry>);
        absent_ok(maps::FDB, m.remove(&key))
    }

    /// Sets the outer destination MAC for remote VTEP `remote`.
    pub fn set_nexthop(&mut self, remote: VtepAddr, nh: NextHop) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::NEXTHOPS, HashMap<&mut MapData, VtepAddr, NextHop>);
        m.insert(remote, nh, 0).map_err(map_err(maps::NEXTHOPS))
    }

    /// Removes `remote`'s next hop; one that is not there counts as removed.
    pub fn remove_nexthop(&mut self, remote: VtepAddr) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::NEXTHOPS, HashMap<&mut MapData, VtepAddr, NextHop>);
        absent_ok(maps::NEXTHOPS, m.remove(&remote))
    }

    /// What the ingress program does with TCP to VIP `vip` while draining.
    pub fn set_drain_vip(&mut self, vip: DrainKey, d: DrainVip) -> Result<(), XdpError> {
        let name = maps::DRAIN_VIPS;
        let mut m = map_mut!(self, name, HashMap<&mut MapData, DrainKey, DrainVip>);
        m.insert(vip, d, 0).map_err(map_err(name))
    }

    /// Forgets VIP `vip` for draining (absent is fine).
    pub fn remove_drain_vip(&mut self, vip: DrainKey) -> Result<(), XdpError> {
        let name = maps::DRAIN_VIPS;
        let mut m = map_mut!(self, name, HashMap<&mut MapData, DrainKey, DrainVip>);
        absent_ok(name, m.remove(&vip))
    }

    /// The VIPs in the drain map.
    pub fn drain_vips(&self) -> Result<Vec<(DrainKey, DrainVip)>, XdpError> {
        let name = maps::DRAIN_VIPS;
        let m = map_ref!(self, name, HashMap<&MapData, DrainKey, DrainVip>);
        m.iter().map(|r| r.map_err(map_err(name))).collect()
    }

    /// How many connections the program has forwarded since the flow map was last cleared.
    pub fn drain_flows(&self) -> Result<u64, XdpError> {
        let name = maps::DRAIN_FLOWS;
        let m = map_ref!(self, name, HashMap<&MapData, DrainFlow, u64>);
        Ok(m.keys().filter(Result::is_ok).count() as u64)
    }

    /// Empties the flow map (a new drain counts its own flows).
    pub fn clear_drain_flows(&mut self) -> Result<(), XdpError> {
        let name = maps::DRAIN_FLOWS;
        let mut m = map_mut!(self, name, HashMap<&mut MapData, DrainFlow, u64>);
        let keys: Vec<DrainFlow> = m.keys().filter_map(Result::ok).collect();
        for k in keys {
            match m.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(XdpError::Map { name, source }),
            }
        }
        Ok(())
    }

    /// Puts an AF_XDP socket into XSKMAP slot `slot`.
    pub fn set_xsk(&mut self, slot: u32, socket: impl AsRawFd) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::XSKS, XskMap<&mut MapData>);
        m.set(slot, socket, 0).map_err(map_err(maps::XSKS))
    }

    pub fn unset_xsk(&mut self, slot: u32) -> Result<(), XdpError> {
        let mut m = map_mut!(self, maps::XSKS, XskMap<&mut MapData>);
        m.unset(slot).map_err(map_err(maps::XSKS))
    }

    /// Current counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        let m = map_ref!(self, maps::COUNTERS, PerCpuArray<&MapData, u64>);
        let mut out = [0u64; Counter::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = m.get(&(i as u32), 0).map_err(map_err(maps::COUNTERS))?;
            *slot = per_cpu.iter().sum();
        }
        Ok(Counters(out))
    }

    /// Runs `p` once on `frame` in the kernel (BPF_PROG_TEST_RUN), as if it arrived on
    /// `ifindex` queue `queue` (ifindex 0: the loopback device of the caller's namespace).
    pub fn test_run(
        &self,
        p: Program,
        frame: &[u8],
        ifindex: u32,
        queue: u32,
    ) -> Result<TestRun, XdpError> {
        let fd = self.program_fd(p)?;
        Ok(testrun::run_xdp(fd, frame, ifindex, queue)?)
    }

    /// Runs the TC egress program once on `frame` in the kernel (as an skb on the loopback
    /// device of the caller's namespace).
    pub fn test_run_tc(&self, frame: &[u8]) -> Result<TestRun, XdpError> {
        let fd = self.tc_program_fd()?;
        Ok(testrun::run_skb(fd, frame)?)
    }

    /// Prints what the programs logged (internal errors only) through `tracing`/`log`.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_program_is_one_line_and_a_file() {
        let dir = std::env::temp_dir().join(format!("ovl-refused-{}", std::process::id()));
        let mut log = String::from("func#0 @0\n");
        for i in 0..2000 {
            log.push_str(&format!("{i}: (bf) r1 = r6 ; R1=ctx() R6=ctx()\n"));
        }
        log.push_str("math between pkt pointer and register with unbounded min value is not allowed\nprocessed 2001 insns (limit 1000000)\n");
        let e = refused(
            "ovl_underlay_ingress",
            &std::io::Error::from_raw_os_error(libc::EACCES),
            &log,
            &dir,
        );
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("program ovl_underlay_ingress refused by the verifier of kernel ")
        );
        assert!(line.contains(": math between pkt pointer and register with unbounded min value is not allowed (full verifier log: "));
        let path = dir.join("verifier-ovl_underlay_ingress.log");
        assert!(line.ends_with(&format!("{})", path.display())), "{line}");
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(saved.contains("1999: (bf)") && saved.contains("Permission denied"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
