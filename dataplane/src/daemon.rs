//! `dataplane run`: sets up the host (overlay veths, XDP programs, AF_XDP sockets), runs one
//! pinned worker per queue and the control loop (MAC learning and ageing, next-hop
//! resolution, stats), and undoes everything on SIGINT/SIGTERM. A run killed with SIGKILL
//! leaves a state file behind; the next run removes what it lists before starting.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket},
    os::{fd::AsRawFd, unix::net::UnixListener},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::{XdpMode, xdp::XdpLinkId};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use ovl_common::{FDB_FLAG_STATIC, FdbEntry, FdbKey, NextHop, PortInfo, UdpPortInfo, VniInfo};
use ovl_netlink::{Netlink, format_mac};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, DatapathMode, XdpModeCfg},
    stats::{QueueCounters, Snapshot},
    worker::{FromWorker, PortSpec, ToWorker, Worker, WorkerSpec},
    xdp::{Program, XdpObject},
};

/// What a run created, written before it creates anything so a successor can undo it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    pid: u32,
    interfaces: Vec<String>,
    /// Settings the run changed on devices that outlive it.
    #[serde(default)]
    restore: Restore,
}

/// Settings a run changed on devices it did not create (the underlay's), to set back when it
/// stops, or by its successor when it was killed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Restore {
    /// An underlay whose TX checksum offload the run turned off.
    tx_checksum: Option<String>,
    /// sysfs files the run changed, with their old contents.
    sysfs: Vec<(PathBuf, String)>,
}

impl Restore {
    /// Writes `value` to sysfs file `path`, remembering the old value.
    fn set_sysfs(&mut self, path: PathBuf, value: &str) -> Result<()> {
        let old = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        fs::write(&path, value).with_context(|| format!("write {value} to {}", path.display()))?;
        self.sysfs.push((path, old.trim().to_string()));
        Ok(())
    }

    /// Sets everything back, in reverse, logging what fails.
    fn undo(&mut self) {
        for (path, old) in self.sysfs.drain(..).rev() {
            if let Err(e) = fs::write(&path, &old) {
                tracing::warn!("restore {}: {e}", path.display());
            }
        }
        if let Some(ifname) = self.tx_checksum.take()
            && let Err(e) = crate::netns::set_tx_checksum(&ifname, true)
        {
            tracing::warn!("turn TX checksum offload back on on {ifname}: {e}");
        }
    }
}

fn state_path(sock: &Path) -> PathBuf {
    sock.with_extension("state")
}

fn lock_path(sock: &Path) -> PathBuf {
    sock.with_extension("lock")
}

/// An exclusive lock for the whole run: a second instance with the same control socket fails
/// at once instead of fighting over the interfaces. Released by the kernel, even on SIGKILL.
struct RunLock {
    _file: fs::File,
}

impl RunLock {
    fn take(sock: &Path) -> Result<RunLock> {
        let path = lock_path(sock);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "another data plane is running with control socket {} (lock {} is held)",
                sock.display(),
                path.display()
            );
        }
        Ok(RunLock { _file: file })
    }
}

/// Removes what a dead run left behind: interfaces listed in its state file, and overlay
/// interfaces of this config that are clearly ours (a veth whose peer is `<name>-dp`).
fn clean_leftovers(nl: &Netlink, cfg: &Config) -> Result<()> {
    let state_file = state_path(&cfg.stats.control_socket);
    let mut names: Vec<String> = Vec::new();
    if let Ok(text) = fs::read_to_string(&state_file) {
        match serde_json::from_str::<State>(&text) {
            Ok(mut st) => {
                tracing::warn!(
                    pid = st.pid,
                    "previous run did not stop cleanly; removing its leftovers"
                );
                names.extend(st.interfaces);
                st.restore.undo();
            }
            Err(e) => tracing::warn!(
                "ignoring unreadable state file {}: {e}",
                state_file.display()
            ),
        }
    }
    for v in &cfg.vnis {
        if let Some(link) = nl.link_by_name(&v.interface)? {
            let peer_is_ours = match link.peer_index {
                Some(i) => nl
                    .link_by_index(i)?
                    .is_some_and(|p| p.name == v.dp_interface()),
                None => false,
            };
            if !(peer_is_ours || names.contains(&v.interface)) {
                bail!(
                    "config vni {}: interface {} already exists and was not created by the data plane",
                    v.id,
                    v.interface
                );
            }
            names.push(v.interface.clone());
        }
        if nl.link_by_name(&v.dp_interface())?.is_some() {
            names.push(v.dp_interface());
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        if let Some(link) = nl.link_by_name(&name)? {
            tracing::warn!(interface = %name, "removing leftover interface");
            // Deleting one end of a veth deletes both; the second may already be gone.
            if let Err(e) = nl.link_delete(link.index)
                && e.errno() != Some(libc::ENODEV)
            {
                return Err(e).with_context(|| format!("delete leftover {name}"));
            }
        }
    }
    let _ = fs::remove_file(&state_file);
    Ok(())
}

/// Everything a run created, undone in reverse on drop.
struct Host {
    nl: Netlink,
    created: Vec<u32>,
    state_file: PathBuf,
    /// What the run changed on the underlay, to set back.
    restore: Restore,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.restore.undo();
        for idx in self.created.drain(..).rev() {
            if let Err(e) = self.nl.link_delete(idx)
                && e.errno() != Some(libc::ENODEV)
            {
                tracing::warn!("delete interface {idx}: {e}");
            }
        }
        let _ = fs::remove_file(&self.state_file);
    }
}

/// The ports each worker serves, and what the control loop needs of them.
struct VniRuntime {
    id: u32,
    interface: String,
    kernel_index: u32,
    dp_index: u32,
}

enum Request {
    Snapshot(Sender<Snapshot>),
}

/// Runs the data plane until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let (cfg, report) = Config::load(config_path)?;
    let sock_path = cfg.stats.control_socket.clone();
    if let Some(dir) = sock_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let _lock = RunLock::take(&sock_path)?;
    let nl = Netlink::open().context("netlink")?;
    clean_leftovers(&nl, &cfg)?;

    let underlay = nl
        .link_by_name(&cfg.underlay.interface)?
        .with_context(|| format!("underlay interface {} vanished", cfg.underlay.interface))?;
    let local_mac = underlay
        .mac
        .with_context(|| format!("underlay interface {} has no MAC address", underlay.name))?;

    let state_file = state_path(&sock_path);
    let mut state = State {
        pid: std::process::id(),
        interfaces: Vec::new(),
        restore: Restore::default(),
    };
    for v in &cfg.vnis {
        state.interfaces.push(v.interface.clone());
        state.interfaces.push(v.dp_interface());
    }
    fs::write(&state_file, serde_json::to_vec(&state)?)
        .with_context(|| format!("write {}", state_file.display()))?;
    let mut host = Host {
        nl: Netlink::open()?,
        created: Vec::new(),
        state_file,
        restore: Restore::default(),
    };
    let fast = cfg.datapath.mode == DatapathMode::Xdp;
    if fast {
        complete_underlay_checksums(&cfg.underlay.interface, &mut host.restore)?;
    }

    // Overlay ports: the kernel side gets the address, the data plane side the XDP program.
    let mut vnis = Vec::new();
    for (i, v) in cfg.vnis.iter().enumerate() {
        let mtu = report.mtu(i);
        let dp = v.dp_interface();
        nl.veth_create_queues(&v.interface, &dp, Some(mtu), cfg.workers.queues)
            .with_context(|| format!("create veth {} / {dp}", v.interface))?;
        let kernel = nl
            .link_by_name(&v.interface)?
            .with_context(|| format!("{} missing after creation", v.interface))?;
        host.created.push(kernel.index);
        let dpl = nl
            .link_by_name(&dp)?
            .with_context(|| format!("{dp} missing after creation"))?;
        // Without a configured MAC, one derived from the VTEP address and VNI: stable across
        // restarts, so the neighbours' ARP caches stay right.
        let ip = cfg.underlay.local_ip.octets();
        let mac = v
            .mac
            .unwrap_or([0x02, (v.id & 0xff) as u8, ip[0], ip[1], ip[2], ip[3]]);
        nl.link_set_mac(kernel.index, mac)?;
        // The kernel must finish checksums itself: nothing after XDP would.
        crate::netns::disable_tx_checksum(&v.interface)?;
        if fast {
            // The ingress fast path redirects into `dp`, which delivers on this end only while
            // it runs NAPI (GRO on); otherwise the frames vanish without a trace.
            crate::netns::set_gro(&v.interface, true)?;
            if !crate::netns::gro(&v.interface)? {
                bail!(
                    "GRO stays off on {}: the XDP fast path could not deliver to it",
                    v.interface
                );
            }
        }
        // The data plane's end never speaks IPv6 itself.
        let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{dp}/disable_ipv6"), "1");
        // The kernel side stays down until the data path can carry what it sends.
        nl.link_set_up(dpl.index, true)?;
        tracing::info!(vni = v.id, interface = %v.interface, dp = %dp, mtu, "overlay port created");
        vnis.push(VniRuntime {
            id: v.id,
            interface: v.interface.clone(),
            kernel_index: kernel.index,
            dp_index: dpl.index,
        });
    }

    if cfg.workers.busy_poll_us > 0 {
        // Preferred busy polling: interrupts (here: NAPI reschedules) stay deferred while the
        // workers poll, up to 2 x 200 µs before the device takes over again.
        let devs = std::iter::once(cfg.underlay.interface.clone())
            .chain(cfg.vnis.iter().map(|v| v.dp_interface()));
        for dev in devs {
            let dir = Path::new("/sys/class/net").join(&dev);
            host.restore
                .set_sysfs(dir.join("napi_defer_hard_irqs"), "2")?;
            host.restore
                .set_sysfs(dir.join("gro_flush_timeout"), "200000")?;
        }
    }
    // A run killed with SIGKILL never drops `host`: its successor restores these instead.
    state.restore = host.restore.clone();
    fs::write(&host.state_file, serde_json::to_vec(&state)?)
        .with_context(|| format!("write {}", host.state_file.display()))?;

    // XDP programs and maps.
    let mut xdp = XdpObject::load().context("load XDP programs")?;
    let queues = cfg.workers.queues;
    let mut ports_seen = HashSet::new();
    for v in &cfg.vnis {
        if ports_seen.insert(v.port) {
            xdp.set_udp_port(v.port, UdpPortInfo::new(v.encap))?;
        }
        let mut info = VniInfo::new(v.encap, v.port);
        if let Some(opt) = v.geneve_option {
            info = info.with_geneve_option(opt);
        }
        xdp.set_vni(v.id, info)?;
        xdp.init_vni_counters(v.id)?;
        for f in &v.fdb {
            xdp.set_fdb(
                FdbKey::new(v.id, f.mac),
                FdbEntry {
                    remote_ip_be: be(f.remote),
                    flags: FDB_FLAG_STATIC,
                    seen_ns: 0,
                },
            )?;
        }
    }
    for (i, rt) in vnis.iter().enumerate() {
        let info = PortInfo {
            vni: rt.id,
            xsk_base: queues * (1 + i as u32),
        };
        // The XDP program knows the port by the data plane's end, the TC one by the kernel's.
        xdp.set_port(rt.dp_index, info)?;
        xdp.set_port(rt.kernel_index, info)?;
    }
    xdp.set_config(ovl_common::Config {
        local_ip_be: be(cfg.underlay.local_ip),
        underlay_mtu: u16::try_from(underlay.mtu).unwrap_or(u16::MAX),
        enabled: 1,
        fast_path: u8::from(fast),
        local_mac,
        _pad1: [0; 2],
        underlay_ifindex: underlay.index,
        _pad2: 0,
    })?;

    // Workers and their sockets.
    let (learn_tx, learn_rx) = bounded::<FromWorker>(4096);
    let stop = Arc::new(AtomicBool::new(false));
    let port_specs: Vec<PortSpec> = cfg
        .vnis
        .iter()
        .enumerate()
        .map(|(i, v)| PortSpec {
            mtu: report.mtu(i),
            vni: v.id,
            dp_interface: v.dp_interface(),
            encap: v.encap,
            udp_port: v.port,
            geneve_option: v.geneve_option,
            flood: v.flood.clone(),
        })
        .collect();
    let learn_refresh =
        (cfg.fdb.ageing / 3).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut worker_ctl: Vec<Sender<ToWorker>> = Vec::new();
    let mut counters: Vec<Arc<QueueCounters>> = Vec::new();
    let mut workers = Vec::new();
    for q in 0..queues {
        let cpu = cfg
            .workers
            .cpus
            .as_ref()
            .and_then(|c| c.get(q as usize).copied());
        let qc = Arc::new(QueueCounters::new(q, cpu, port_specs.len()));
        let (ctl_tx, ctl_rx) = bounded::<ToWorker>(1024);
        let w = Worker::new(
            WorkerSpec {
                queue: q,
                cpu,
                batch: cfg.workers.batch_size as usize,
                frames: cfg.workers.frames_per_queue,
                spin: Duration::from_micros(u64::from(cfg.workers.spin_us)),
                underlay: cfg.underlay.interface.clone(),
                local_mac,
                local_ip: cfg.underlay.local_ip,
                ports: port_specs.clone(),
                learn_refresh,
                busy_poll_us: cfg.workers.busy_poll_us,
                zero_copy: cfg.workers.zero_copy,
            },
            qc.clone(),
            learn_tx.clone(),
            ctl_rx,
        )?;
        let fds = w.fds();
        xdp.set_xsk(q, fds[0])?;
        for i in 0..vnis.len() {
            xdp.set_xsk(queues * (1 + i as u32) + q, fds[1 + i])?;
        }
        worker_ctl.push(ctl_tx);
        counters.push(qc);
        workers.push(w);
    }

    // Attach last: until now the programs would have had nowhere to send frames.
    let mut links: Vec<(Program, XdpLinkId)> = Vec::new();
    let mode = attach_underlay(&mut xdp, &cfg, &mut links)?;
    for v in &cfg.vnis {
        let id = xdp
            .attach(Program::OverlayEgress, &v.dp_interface(), mode)
            .with_context(|| format!("attach egress program to {}", v.dp_interface()))?;
        links.push((Program::OverlayEgress, id));
    }
    let mut tc_links = Vec::new();
    if fast {
        for v in &cfg.vnis {
            let id = xdp
                .attach_tc_egress(&v.interface)
                .with_context(|| format!("attach TC egress program to {}", v.interface))?;
            tc_links.push(id);
        }
    }

    let handles: Vec<JoinHandle<()>> = workers
        .into_iter()
        .map(|w| {
            let stop = stop.clone();
            thread::Builder::new()
                .name("ovl-worker".into())
                .spawn(move || w.run(&stop))
        })
        .collect::<std::io::Result<_>>()
        .context("spawn worker")?;

    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("signal handler")?;
    }

    let (req_tx, req_rx) = bounded::<Request>(16);
    let _ = fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path)
        .with_context(|| format!("bind control socket {}", sock_path.display()))?;
    let health: Health = Arc::new(std::sync::RwLock::new(Ok(())));
    spawn_control_socket(listener, req_tx.clone(), health.clone())?;
    if let Some(addr) = cfg.stats.prometheus {
        let l =
            TcpListener::bind(addr).with_context(|| format!("bind Prometheus endpoint {addr}"))?;
        spawn_prometheus(l, req_tx.clone())?;
        tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
    }

    let mut ctl = Control {
        health,
        worker_handles: handles,
        mode: cfg.datapath.mode,
        fast_ports: Vec::new(),
        xdp,
        nl,
        underlay_index: underlay.index,
        underlay_name: cfg.underlay.interface.clone(),
        static_fdb: cfg
            .vnis
            .iter()
            .flat_map(|v| v.fdb.iter().map(move |f| ((v.id, f.mac), f.remote)))
            .collect(),
        learned: HashMap::new(),
        ageing: cfg.fdb.ageing,
        max_learned: cfg.fdb.max_learned,
        nexthops: HashMap::new(),
        workers: worker_ctl,
        counters,
        port_names: vnis.iter().map(|r| (r.id, r.interface.clone())).collect(),
        started: Instant::now(),
        last_provoke: HashMap::new(),
        unroutable: HashSet::new(),
    };
    for v in &cfg.vnis {
        for r in v.flood.iter().chain(v.fdb.iter().map(|f| &f.remote)) {
            ctl.nexthops.entry(*r).or_insert(None);
        }
    }
    // Ready means able to flood: give the kernel a moment to resolve the flood list's next
    // hops (ARP for the gateway), so the first broadcast is not dropped for want of a MAC.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        ctl.refresh_nexthops();
        if ctl.nexthops.values().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    for (v, rt) in cfg.vnis.iter().zip(&vnis) {
        ctl.nl.link_set_up(rt.kernel_index, true)?;
        if let Some(a) = v.address {
            ctl.nl
                .addr_add(rt.kernel_index, a.addr, a.prefix_len, true)
                .with_context(|| format!("add {a} to {}", v.interface))?;
        }
        if fast {
            // Only now can the port take redirected frames; until its device map entry exists
            // the ingress program hands them to the workers (counted as rx_fast_fallback).
            ctl.fast_ports.push(FastPort {
                vni: v.id,
                interface: v.interface.clone(),
                kernel_index: rt.kernel_index,
                dp_index: rt.dp_index,
                in_map: false,
            });
        }
        tracing::info!(vni = v.id, interface = %v.interface, "overlay port up");
    }
    // Carrier on a fresh veth follows "up" by a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        ctl.check_fast_ports();
        if ctl.fast_ports.iter().all(|p| p.in_map) || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    if let Some(p) = ctl.fast_ports.iter().find(|p| !p.in_map) {
        bail!(
            "overlay port {} cannot take redirected frames (GRO off or link down)",
            p.interface
        );
    }
    println!(
        "dataplane ready: {} mode, underlay {} ({} XDP), {} VNI(s), {} queue(s), control socket {}",
        cfg.datapath.mode,
        cfg.underlay.interface,
        if mode == XdpMode::Skb {
            "skb"
        } else {
            "driver"
        },
        cfg.vnis.len(),
        queues,
        sock_path.display()
    );
    let _ = std::io::stdout().flush();

    ctl.run(&term, &learn_rx, &req_rx);

    tracing::info!("stopping");
    for p in &ctl.fast_ports {
        let _ = ctl.xdp.remove_port_dev(p.vni);
    }
    for id in tc_links {
        if let Err(e) = ctl.xdp.detach_tc_egress(id) {
            tracing::warn!("detach TC: {e}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in ctl.worker_handles.drain(..) {
        let _ = h.join();
    }
    for (p, id) in links.into_iter().rev() {
        if let Err(e) = ctl.xdp.detach(p, id) {
            tracing::warn!("detach: {e}");
        }
    }
    for slot in 0..ovl_common::XSK_SLOTS {
        let _ = ctl.xdp.unset_xsk(slot);
    }
    drop(ctl);
    drop(host);
    let _ = fs::remove_file(&sock_path);
    println!("dataplane stopped");
    Ok(())
}

/// How often the control loop judges whether it can forward (the answer to `ping`).
const HEALTH_EVERY: Duration = Duration::from_millis(100);

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, which stamps FDB entries.
pub fn monotonic_ns() -> u64 {
    // SAFETY: plain data, filled by the call.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The TC fast path hands the underlay TCP packets whose checksum is still to be completed
/// (the stack leaves it to the device: CHECKSUM_PARTIAL, GSO or not). A NIC completes it; a
/// veth never does and passes the partial state to a kernel receiver only, so a receiver that
/// decapsulates in XDP (ours) would see bad checksums. On a veth underlay the kernel must
/// therefore finish checksums (and segment GSO packets) in software before the frame leaves.
fn complete_underlay_checksums(ifname: &str, restore: &mut Restore) -> Result<()> {
    let driver = crate::netns::driver(ifname).unwrap_or_default();
    if driver != "veth" || !crate::netns::tx_checksum(ifname)? {
        return Ok(());
    }
    crate::netns::set_tx_checksum(ifname, false)?;
    restore.tx_checksum = Some(ifname.to_string());
    tracing::info!(
        underlay = ifname,
        "TX checksum offload off on the veth underlay while running: nothing would complete the fast path's checksums"
    );
    Ok(())
}

fn attach_underlay(
    xdp: &mut XdpObject,
    cfg: &Config,
    links: &mut Vec<(Program, XdpLinkId)>,
) -> Result<XdpMode> {
    let ifname = &cfg.underlay.interface;
    let try_mode = |xdp: &mut XdpObject, mode| xdp.attach(Program::UnderlayIngress, ifname, mode);
    let (id, mode) = match cfg.underlay.xdp_mode {
        XdpModeCfg::Driver => (try_mode(xdp, XdpMode::Driver)?, XdpMode::Driver),
        XdpModeCfg::Skb => (try_mode(xdp, XdpMode::Skb)?, XdpMode::Skb),
        XdpModeCfg::Auto => match try_mode(xdp, XdpMode::Driver) {
            Ok(id) => (id, XdpMode::Driver),
            Err(e) => {
                tracing::warn!(
                    "driver-mode XDP on {ifname} failed ({e}); falling back to SKB mode"
                );
                (try_mode(xdp, XdpMode::Skb)?, XdpMode::Skb)
            }
        },
    };
    links.push((Program::UnderlayIngress, id));
    Ok(mode)
}

/// An overlay port as the fast path sees it.
struct FastPort {
    vni: u32,
    interface: String,
    kernel_index: u32,
    dp_index: u32,
    /// In the device map: the ingress program redirects to it.
    in_map: bool,
}

struct Control {
    /// Whether frames can be carried, as the control socket reports it.
    health: Health,
    /// The workers' threads (a finished one cannot carry anything).
    worker_handles: Vec<JoinHandle<()>>,
    mode: DatapathMode,
    /// The ports the fast path redirects to ("xdp" mode; empty otherwise).
    fast_ports: Vec<FastPort>,
    xdp: XdpObject,
    nl: Netlink,
    underlay_index: u32,
    underlay_name: String,
    static_fdb: HashMap<(u32, [u8; 6]), Ipv4Addr>,
    learned: HashMap<(u32, [u8; 6]), (Ipv4Addr, Instant)>,
    ageing: Duration,
    max_learned: usize,
    nexthops: HashMap<Ipv4Addr, Option<[u8; 6]>>,
    workers: Vec<Sender<ToWorker>>,
    counters: Vec<Arc<QueueCounters>>,
    port_names: Vec<(u32, String)>,
    started: Instant,
    last_provoke: HashMap<Ipv4Addr, Instant>,
    /// Remotes whose missing route was already reported.
    unroutable: HashSet<Ipv4Addr>,
}

impl Control {
    fn run(&mut self, term: &AtomicBool, events: &Receiver<FromWorker>, reqs: &Receiver<Request>) {
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        let mut next_health = Instant::now();
        while !term.load(Ordering::Relaxed) {
            if Instant::now() >= next_health {
                next_health = Instant::now() + HEALTH_EVERY;
                self.judge_health();
            }
            select! {
                recv(events) -> m => if let Ok(m) = m { self.on_worker(m) },
                recv(reqs) -> r => if let Ok(Request::Snapshot(reply)) = r {
                    let _ = reply.send(self.snapshot());
                },
                default(Duration::from_millis(50)) => {}
            }
            if Instant::now() >= next_tick {
                next_tick += Duration::from_secs(1);
                self.age();
                self.refresh_nexthops();
                self.check_fast_ports();
            } else if self.nexthops.values().any(Option::is_none) {
                // An unresolved next hop makes us unhealthy: look again every pass (the
                // provoking datagram is rate-limited), not once a second, so a member whose
                // link came back is ready in tens of milliseconds.
                self.refresh_unresolved();
            }
        }
    }

    /// Judges whether frames can be carried and publishes it for `ping`: the underlay the
    /// programs were attached to is still there (a device deleted and re-created has a new
    /// index and neither our XDP program nor our sockets) and has carrier, every worker runs,
    /// and at least one remote VTEP's next hop is resolved.
    fn judge_health(&mut self) {
        let verdict = self.forwarding_problem().map_or(Ok(()), Err);
        let Ok(mut h) = self.health.write() else {
            return;
        };
        if *h != verdict {
            match &verdict {
                Ok(()) => tracing::info!("healthy: able to forward again"),
                Err(why) => tracing::warn!("unhealthy: {why}"),
            }
            *h = verdict;
        }
    }

    fn forwarding_problem(&self) -> Option<String> {
        match self.nl.link_by_name(&self.underlay_name) {
            Ok(Some(l)) if l.index != self.underlay_index => {
                return Some(format!(
                    "underlay {} was replaced (index {} -> {}): the programs and sockets are on the old device",
                    self.underlay_name, self.underlay_index, l.index
                ));
            }
            Ok(Some(l)) if !l.oper_up => {
                return Some(format!("underlay {} has no carrier", self.underlay_name));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Some(format!("underlay {} is gone", self.underlay_name)),
            Err(e) => return Some(format!("underlay {}: {e}", self.underlay_name)),
        }
        if let Some(i) = self.worker_handles.iter().position(JoinHandle::is_finished) {
            return Some(format!("worker {i} has stopped"));
        }
        if !self.nexthops.is_empty() && self.nexthops.values().all(Option::is_none) {
            return Some("no remote VTEP's next hop is resolved".into());
        }
        None
    }

    /// Keeps each port in the device map exactly while it can take redirected frames (up, and
    /// GRO on so its veth runs NAPI): a redirect into a port that cannot take it would vanish
    /// without a counter, a frame the workers deliver instead is counted (`rx_fast_fallback`).
    fn check_fast_ports(&mut self) {
        for p in &mut self.fast_ports {
            let up = matches!(self.nl.link_by_index(p.kernel_index), Ok(Some(l)) if l.oper_up);
            let gro = crate::netns::gro(&p.interface).unwrap_or(false);
            let ready = up && gro;
            if ready == p.in_map {
                continue;
            }
            let result = if ready {
                self.xdp.set_port_dev(p.vni, p.dp_index)
            } else {
                self.xdp.remove_port_dev(p.vni)
            };
            match result {
                Ok(()) => {
                    p.in_map = ready;
                    if ready {
                        tracing::info!(vni = p.vni, interface = %p.interface, "fast path to the port on");
                    } else {
                        tracing::warn!(
                            vni = p.vni,
                            interface = %p.interface,
                            up,
                            gro,
                            "port cannot take redirected frames: the workers deliver its traffic until it can"
                        );
                    }
                }
                Err(e) => tracing::warn!(vni = p.vni, "device map update: {e}"),
            }
        }
    }

    fn on_worker(&mut self, m: FromWorker) {
        match m {
            FromWorker::Learn { vni, mac, remote } => {
                if self.static_fdb.contains_key(&(vni, mac)) {
                    return;
                }
                let now = Instant::now();
                let changed = match self.learned.get(&(vni, mac)) {
                    Some((ip, _)) => *ip != remote,
                    None => {
                        if self.learned.len() >= self.max_learned {
                            tracing::warn!(
                                "FDB full ({} learned); not learning more",
                                self.max_learned
                            );
                            return;
                        }
                        true
                    }
                };
                self.learned.insert((vni, mac), (remote, now));
                if changed {
                    tracing::debug!(vni, mac = %format_mac(&mac), %remote, "learned");
                    if let Err(e) = self.xdp.set_fdb(
                        FdbKey::new(vni, mac),
                        FdbEntry {
                            remote_ip_be: be(remote),
                            flags: 0,
                            seen_ns: monotonic_ns(),
                        },
                    ) {
                        tracing::warn!("FDB update: {e}");
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) =
                        self.nexthops.entry(remote)
                    {
                        e.insert(None);
                        self.refresh_one(remote);
                    }
                }
            }
            FromWorker::Resolve { remote } => {
                self.nexthops.entry(remote).or_insert(None);
                self.refresh_one(remote);
            }
        }
    }

    /// Removes learned entries not seen for the ageing time. Frames of known sources never
    /// reach userspace, so "seen" is the later of the last learn report and the stamp the
    /// ingress program keeps in the FDB entry.
    fn age(&mut self) {
        let now = Instant::now();
        let ageing = self.ageing;
        let stale: Vec<(u32, [u8; 6])> = self
            .learned
            .iter()
            .filter(|(_, (_, seen))| now.duration_since(*seen) >= ageing)
            .map(|(k, _)| *k)
            .collect();
        let mono = monotonic_ns();
        let mut expired = Vec::new();
        for key in stale {
            let stamp_age = match self.xdp.fdb(FdbKey::new(key.0, key.1)) {
                Ok(Some(e)) if e.seen_ns != 0 => {
                    Some(Duration::from_nanos(mono.saturating_sub(e.seen_ns)))
                }
                _ => None,
            };
            match stamp_age {
                Some(age) if age < ageing => {
                    if let Some(entry) = self.learned.get_mut(&key) {
                        entry.1 = now.checked_sub(age).unwrap_or(now);
                    }
                }
                _ => expired.push(key),
            }
        }
        for key in expired {
            self.learned.remove(&key);
            tracing::debug!(vni = key.0, mac = %format_mac(&key.1), "aged out");
            let _ = self.xdp.remove_fdb(FdbKey::new(key.0, key.1));
        }
    }

    fn refresh_unresolved(&mut self) {
        let remotes: Vec<Ipv4Addr> = self
            .nexthops
            .iter()
            .filter(|(_, mac)| mac.is_none())
            .map(|(r, _)| *r)
            .collect();
        for r in remotes {
            self.refresh_one(r);
        }
    }

    fn refresh_nexthops(&mut self) {
        let remotes: Vec<Ipv4Addr> = self.nexthops.keys().copied().collect();
        for r in remotes {
            self.refresh_one(r);
        }
    }

    /// Looks up the outer next-hop MAC for `remote` in the kernel (route, then neighbour) and
    /// pushes changes to the XDP map and the workers. An unresolved neighbour is provoked with
    /// a datagram to the discard port, so the kernel ARPs for it.
    fn refresh_one(&mut self, remote: Ipv4Addr) {
        let found = match self.nl.route_get(IpAddr::V4(remote)) {
            Ok(route) => {
                self.unroutable.remove(&remote);
                if route.oif != self.underlay_index {
                    tracing::warn!(%remote, oif = route.oif, "remote VTEP is not reached through the underlay {}", self.underlay_name);
                }
                let via = route.gateway.unwrap_or(IpAddr::V4(remote));
                match self.nl.neighbour(route.oif, via) {
                    Ok(Some(n)) if n.is_usable() => n.mac,
                    _ => {
                        self.provoke(via);
                        None
                    }
                }
            }
            Err(e) => {
                // Once per outage, not on every look.
                if self.unroutable.insert(remote) {
                    tracing::warn!(%remote, "no route to remote VTEP: {e}");
                }
                None
            }
        };
        let old = self.nexthops.insert(remote, found).flatten();
        if old == found {
            return;
        }
        match found {
            Some(mac) => {
                tracing::info!(%remote, mac = %format_mac(&mac), "next hop resolved");
                let _ = self
                    .xdp
                    .set_nexthop(be(remote), NextHop { mac, _pad: [0; 2] });
            }
            None => {
                tracing::warn!(%remote, "next hop lost");
                let _ = self.xdp.remove_nexthop(be(remote));
            }
        }
        for w in &self.workers {
            let _ = w.try_send(ToWorker::NextHop { remote, mac: found });
        }
    }

    fn provoke(&mut self, via: IpAddr) {
        let IpAddr::V4(v4) = via else { return };
        let now = Instant::now();
        if self
            .last_provoke
            .get(&v4)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(200))
        {
            return;
        }
        self.last_provoke.insert(v4, now);
        if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
            let _ = s.send_to(&[], (v4, 9));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let (xdp, xdp_drop_names) = match self.xdp.counters() {
            Ok(c) => Snapshot::xdp_from(&c),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut nexthops: Vec<(String, Option<String>)> = self
            .nexthops
            .iter()
            .map(|(ip, mac)| (ip.to_string(), mac.map(|m| format_mac(&m))))
            .collect();
        nexthops.sort();
        Snapshot {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            underlay: self.underlay_name.clone(),
            queues: self
                .counters
                .iter()
                .map(|q| Snapshot::queue_from(q, &self.port_names))
                .collect(),
            xdp,
            xdp_drop_names,
            fdb_learned: self.learned.len(),
            fdb_static: self.static_fdb.len(),
            nexthops,
            fdb: {
                let learned = self.learned.iter().map(|(k, (ip, _))| (k, ip, false));
                let fixed = self.static_fdb.iter().map(|(k, ip)| (k, ip, true));
                let mut rows: Vec<crate::stats::FdbRow> = learned
                    .chain(fixed)
                    .map(|((vni, mac), ip, fixed)| crate::stats::FdbRow {
                        vni: *vni,
                        mac: format_mac(mac),
                        remote: ip.to_string(),
                        fixed,
                    })
                    .collect();
                rows.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
                rows
            },
            mode: self.mode.to_string(),
            fast: self
                .xdp
                .vni_counters()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, c)| *c != ovl_common::VniCounters::default())
                .map(|(vni, c)| crate::stats::PortSnapshot {
                    vni,
                    interface: self
                        .port_names
                        .iter()
                        .find(|(v, _)| *v == vni)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    flood_copies: 0,
                })
                .collect(),
        }
    }
}

fn ask_snapshot(reqs: &Sender<Request>) -> Option<Snapshot> {
    let (tx, rx) = bounded(1);
    reqs.send_timeout(Request::Snapshot(tx), Duration::from_secs(1))
        .ok()?;
    rx.recv_timeout(Duration::from_secs(2)).ok()
}

/// The control socket: one request line per connection (`ping`, `stats`, `stats json`,
/// `metrics`), one answer, then close.
/// Whether the data plane can forward: `Ok`, or why not. Shared by the control loop, which
/// judges it, and the control socket, which answers `ping` with it.
type Health = Arc<std::sync::RwLock<Result<(), String>>>;

fn spawn_control_socket(
    listener: UnixListener,
    reqs: Sender<Request>,
    health: Health,
) -> Result<()> {
    thread::Builder::new()
        .name("ovl-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let mut r = BufReader::new(&conn);
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let answer = match line.trim() {
                    // `pong` only while frames can be carried: the controller takes a member
                    // that answers anything else as unhealthy.
                    "ping" => match health.read().map(|h| h.clone()) {
                        Ok(Ok(())) => "pong\n".to_string(),
                        Ok(Err(why)) => format!("unhealthy: {why}\n"),
                        Err(_) => "unhealthy: health state unreadable\n".to_string(),
                    },
                    "stats" => ask_snapshot(&reqs)
                        .map_or_else(|| "error: control loop busy\n".into(), |s| s.render_text()),
                    "stats json" => ask_snapshot(&reqs).map_or_else(
                        || "{\"error\":\"control loop busy\"}\n".into(),
                        |s| serde_json::to_string(&s).unwrap_or_default() + "\n",
                    ),
                    "metrics" => ask_snapshot(&reqs)
                        .map_or_else(|| "# control loop busy\n".into(), |s| s.render_prometheus()),
                    other => format!(
                        "error: unknown request {other:?} (try ping, stats, stats json, metrics)\n"
                    ),
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        })
        .context("spawn control socket thread")?;
    Ok(())
}

/// Minimal HTTP/1.0 responder for Prometheus scrapes (loopback only, enforced by config).
fn spawn_prometheus(listener: TcpListener, reqs: Sender<Request>) -> Result<()> {
    thread::Builder::new()
        .name("ovl-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut r = BufReader::new(&conn);
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                // Drain headers up to the blank line.
                let mut l = String::new();
                while r.read_line(&mut l).map(|n| n > 2).unwrap_or(false) {
                    l.clear();
                }
                let (status, body) = if first.starts_with("GET /metrics") || first.starts_with("GET / ") {
                    match ask_snapshot(&reqs) {
                        Some(s) => ("200 OK", s.render_prometheus()),
                        None => ("503 Service Unavailable", "control loop busy\n".into()),
                    }
                } else {
                    ("404 Not Found", "try /metrics\n".into())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .context("spawn metrics thread")?;
    Ok(())
}

/// Client side of the control socket: sends one request and returns the answer.
pub fn request(socket: &Path, what: &str) -> Result<String> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connect to {} (is `dataplane run` running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
