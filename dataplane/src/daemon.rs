//! `dataplane run`: sets up the host (overlay veths, XDP programs, AF_XDP sockets), runs one
//! pinned worker per queue and the control loop (MAC learning and ageing, next-hop
//! resolution, stats), and undoes everything on SIGINT/SIGTERM. A run killed with SIGKILL
//! leaves a state file behind; the next run removes what it lists before starting.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket},
    os::{fd::AsRawFd, unix::net::UnixListener},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::{XdpMode, xdp::XdpLinkId};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use ovl_common::{FDB_FLAG_STATIC, FdbEntry, FdbKey, NextHop, PortInfo, UdpPortInfo, VniInfo};
use ovl_netlink::{LinkWatcher, Netlink, WatchEvent, format_mac};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, DatapathMode, XdpModeCfg},
    stats::{QueueCounters, Snapshot},
    tables::{Fdb, Learned, MacKey, NextHopChange, NextHops, RateLimit, Retries},
    uplink::{Action as UplinkAction, Cause, Seen, Uplinks},
    worker::{FromWorker, PortSpec, WorkerSpec},
    workerset::WorkerSet,
    xdp::{Program, XdpObject},
};

/// What a run created, written before it creates anything so a successor can undo it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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
    /// Uplinks whose TX checksum offload the run turned off.
    #[serde(default)]
    tx_checksum: Vec<String>,
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
        for ifname in self.tx_checksum.drain(..).rev() {
            if let Err(e) = crate::netns::set_tx_checksum(&ifname, true) {
                tracing::warn!("turn TX checksum offload back on on {ifname}: {e}");
            }
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
    Drain(DrainRequest, Sender<String>),
}

/// `drain <json>` on the control socket: what the controller wants the programs to do with
/// TCP to its VIPs during a planned switchover. Level-triggered: each request states the
/// whole wish, and the controller repeats it, so a restarted data plane catches up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// The VIPs (all of them, also when neither forwarding nor accepting: they are then
    /// removed from the map).
    pub vips: Vec<IpAddr>,
    /// New owner: the previous owner's VTEP, to which segments of connections that have no
    /// socket here go.
    #[serde(default)]
    pub forward_to: Option<IpAddr>,
    /// Old owner (and owner): serve drained frames for the VIPs.
    #[serde(default)]
    pub accept: bool,
    /// The overlay interface the VIPs are on (its MAC becomes a drained frame's destination);
    /// may be omitted with a single VNI.
    #[serde(default)]
    pub interface: Option<String>,
}

/// The answer to `drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DrainReply {
    /// Empty when applied; else why not (nothing was changed).
    pub error: String,
    /// Applied, but forwarding cannot work: why (segments are then delivered here).
    pub warning: String,
    /// Connections forwarded since forwarding last started.
    pub flows: u64,
    /// Segments forwarded, delivered though meant to be forwarded, and drained frames
    /// received, since the data plane started.
    pub tx_drained: u64,
    pub rx_drain_unsent: u64,
    pub rx_drained: u64,
}

/// Runs the data plane until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let (cfg, report) = Config::load(config_path)?;
    for n in &report.notes {
        tracing::warn!("{n}");
    }
    let sock_path = cfg.stats.control_socket.clone();
    if let Some(dir) = sock_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let _lock = RunLock::take(&sock_path)?;
    let nl = Netlink::open().context("netlink")?;
    clean_leftovers(&nl, &cfg)?;

    // Which uplinks are there now; the control loop follows them from here on.
    let mut uplinks = Uplinks::new(
        &cfg.underlay.interfaces,
        cfg.underlay.failback,
        cfg.underlay.failback_hold,
    );
    let started_at = Instant::now();
    let mut first_actions = Vec::new();
    for (u, name) in cfg.underlay.interfaces.iter().enumerate() {
        first_actions.extend(uplinks.observe(u, seen(&nl, name)?, started_at));
    }
    let present: Vec<String> = uplinks
        .links()
        .iter()
        .filter(|l| l.seen.index().is_some())
        .map(|l| l.name.clone())
        .collect();
    let first_mac_of = |name: &str| -> Result<[u8; 6]> {
        nl.link_by_name(name)?
            .and_then(|l| l.mac)
            .with_context(|| format!("underlay interface {name} has no MAC address"))
    };
    let local_mac = match uplinks.active() {
        Some((u, _)) => first_mac_of(&cfg.underlay.interfaces[u])?,
        None => first_mac_of(present.first().context("no uplink is present")?)?,
    };

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
        for name in &present {
            complete_underlay_checksums(name, &mut host.restore)?;
        }
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
        let ip = ovl_common::vtep_addr(cfg.underlay.local_ip);
        let mac = v
            .mac
            .unwrap_or([0x02, (v.id & 0xff) as u8, ip[12], ip[13], ip[14], ip[15]]);
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
        // Uplinks that appear later run without (the workers still poll them).
        let devs = present
            .iter()
            .cloned()
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
                    remote: ovl_common::vtep_addr(f.remote),
                    flags: FDB_FLAG_STATIC,
                    _pad: 0,
                    seen_ns: 0,
                },
            )?;
        }
    }
    let slots = cfg.xsk_slots();
    for (i, rt) in vnis.iter().enumerate() {
        let info = PortInfo {
            vni: rt.id,
            xsk_base: slots.port_base(i as u32),
        };
        // The XDP program knows the port by the data plane's end, the TC one by the kernel's.
        xdp.set_port(rt.dp_index, info)?;
        xdp.set_port(rt.kernel_index, info)?;
    }
    let base_config = ovl_common::Config {
        local_ip: ovl_common::vtep_addr(cfg.underlay.local_ip),
        underlay_mtu: u16::try_from(report.underlay_mtu).unwrap_or(u16::MAX),
        enabled: 1,
        fast_path: u8::from(fast),
        local_mac,
        ipv6: u8::from(cfg.underlay.ipv6()),
        udp6_zero_csum_rx: u8::from(cfg.underlay.udp6_zero_csum_rx),
        // Set when an uplink is activated.
        underlay_ifindex: 0,
        xsk_frame_max: crate::config::MAX_XSK_FRAME,
        // Decided per active uplink (`tx_redirect_ok`).
        tx_redirect: 0,
        xdp_tx: 0,
        drain: 0,
        _pad: 0,
    };
    xdp.set_config(base_config)?;

    // Workers: one per queue, (re)started by the control loop with sockets on every present
    // uplink and every overlay port.
    let (learn_tx, learn_rx) = bounded::<FromWorker>(4096);
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
    let cpus: Vec<Option<usize>> = (0..queues as usize)
        .map(|q| cfg.workers.cpus.as_ref().and_then(|c| c.get(q).copied()))
        .collect();
    let counters: Vec<Arc<QueueCounters>> = (0..queues)
        .map(|q| Arc::new(QueueCounters::new(q, cpus[q as usize], port_specs.len())))
        .collect();
    let template = WorkerSpec {
        queue: 0,
        cpu: None,
        batch: cfg.workers.batch_size as usize,
        frames: cfg.workers.frames_per_queue,
        spin: Duration::from_micros(u64::from(cfg.workers.spin_us)),
        uplinks: Vec::new(),
        active: None,
        uplink_slots: cfg.underlay.interfaces.len(),
        local_mac,
        local_ip: cfg.underlay.local_ip,
        ports: port_specs,
        learn_refresh,
        busy_poll_us: cfg.workers.busy_poll_us,
        zero_copy: cfg.workers.zero_copy,
    };
    let workers = WorkerSet::new(template, cpus, counters, learn_tx, slots);

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

    let (link_tx, link_rx) = bounded::<(Instant, WatchEvent)>(1024);
    spawn_link_watcher(link_tx, term.clone())?;
    let mut ctl = Control {
        health,
        workers,
        mode: cfg.datapath.mode,
        fast_ports: Vec::new(),
        xdp,
        nl,
        uplinks,
        attached: HashMap::new(),
        xdp_mode: cfg.underlay.xdp_mode,
        attach_mode: None,
        base_config,
        config: base_config,
        fast,
        restore: Restore::default(),
        state: state.clone(),
        state_file: state_path(&sock_path),
        last_switch: None,
        bound: HashSet::new(),
        sockets_rebound: 0,
        fdb: Fdb::new(
            cfg.vnis
                .iter()
                .flat_map(|v| v.fdb.iter().map(move |f| ((v.id, f.mac), f.remote))),
            cfg.fdb.ageing,
            cfg.fdb.max_learned,
        ),
        nexthops: NextHops::default(),
        retries: Retries::default(),
        warn_fdb_full: RateLimit::new(WARN_EVERY),
        warn_map: RateLimit::new(WARN_EVERY),
        port_names: vnis.iter().map(|r| (r.id, r.interface.clone())).collect(),
        started: Instant::now(),
        last_provoke: HashMap::new(),
        drain: DrainRequest::default(),
    };
    // Attach to the uplinks there are, start the workers, activate one.
    ctl.apply(first_actions, started_at);
    if ctl.attached.is_empty() {
        bail!("could not attach to any uplink (see the warnings above)");
    }
    if !ctl.workers.running() {
        bail!("the workers could not start (see the errors above)");
    }
    let mode = ctl.attach_mode.unwrap_or(XdpMode::Skb);
    let mut links: Vec<(Program, XdpLinkId)> = Vec::new();
    for v in &cfg.vnis {
        let id = ctl
            .xdp
            .attach(Program::OverlayEgress, &v.dp_interface(), mode)
            .with_context(|| format!("attach egress program to {}", v.dp_interface()))?;
        links.push((Program::OverlayEgress, id));
    }
    let mut tc_links = Vec::new();
    if fast {
        for v in &cfg.vnis {
            let id = ctl
                .xdp
                .attach_tc_egress(&v.interface)
                .with_context(|| format!("attach TC egress program to {}", v.interface))?;
            tc_links.push(id);
        }
    }
    for v in &cfg.vnis {
        for r in v.flood.iter().chain(v.fdb.iter().map(|f| &f.remote)) {
            ctl.nexthops.want(*r);
        }
    }
    // Ready means able to flood: give the kernel a moment to resolve the flood list's next
    // hops (ARP for the gateway), so the first broadcast is not dropped for want of a MAC.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        ctl.refresh_nexthops();
        if !ctl.nexthops.any_unresolved() || Instant::now() >= deadline {
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
    let active = ctl
        .uplinks
        .active()
        .map_or("none", |(u, _)| cfg.underlay.interfaces[u].as_str());
    println!(
        "dataplane ready: {} mode, underlay {active} ({} XDP), {} VNI(s), {} queue(s), control socket {}",
        cfg.datapath.mode,
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

    ctl.run(&term, &learn_rx, &req_rx, &link_rx);

    tracing::info!("stopping");
    for p in &ctl.fast_ports {
        let _ = ctl.xdp.remove_port_dev(p.vni);
    }
    for id in tc_links {
        if let Err(e) = ctl.xdp.detach_tc_egress(id) {
            tracing::warn!("detach TC: {e}");
        }
    }
    ctl.workers.stop_all();
    for (p, id) in links.into_iter().rev() {
        if let Err(e) = ctl.xdp.detach(p, id) {
            tracing::warn!("detach: {e}");
        }
    }
    let attached: Vec<usize> = ctl.attached.keys().copied().collect();
    for u in attached {
        ctl.detach_uplink(u);
    }
    for slot in 0..ovl_common::XSK_SLOTS {
        let _ = ctl.xdp.unset_xsk(slot);
    }
    ctl.restore.undo();
    drop(ctl);
    drop(host);
    let _ = fs::remove_file(&sock_path);
    println!("dataplane stopped");
    Ok(())
}

/// How often the control loop judges whether it can forward (the answer to `ping`).
const HEALTH_EVERY: Duration = Duration::from_millis(100);
/// At most one of a kind of repeated warning per this time.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, which stamps FDB entries.
pub fn monotonic_ns() -> u64 {
    // SAFETY: plain data, filled by the call.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
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
    restore.tx_checksum.push(ifname.to_string());
    tracing::info!(
        underlay = ifname,
        "TX checksum offload off on the veth underlay while running: nothing would complete the fast path's checksums"
    );
    Ok(())
}

/// Attaches the ingress program to uplink `ifname`, in driver mode if `xdp_mode` allows and
/// the driver can, else SKB mode.
fn attach_underlay(
    xdp: &mut XdpObject,
    ifname: &str,
    xdp_mode: XdpModeCfg,
) -> Result<(XdpLinkId, XdpMode)> {
    let mut try_mode = |mode| xdp.attach(Program::UnderlayIngress, ifname, mode);
    Ok(match xdp_mode {
        XdpModeCfg::Driver => (try_mode(XdpMode::Driver)?, XdpMode::Driver),
        XdpModeCfg::Skb => (try_mode(XdpMode::Skb)?, XdpMode::Skb),
        XdpModeCfg::Auto => match try_mode(XdpMode::Driver) {
            Ok(id) => (id, XdpMode::Driver),
            Err(e) => {
                let mtu: u32 = fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
                    .ok()
                    .and_then(|m| m.trim().parse().ok())
                    .unwrap_or(0);
                let why = if mtu > 3000 {
                    format!(
                        " (at MTU {mtu} a driver wants a multi-buffer XDP program, which this is not yet)"
                    )
                } else {
                    String::new()
                };
                tracing::warn!(
                    "driver-mode XDP on {ifname} failed ({e}){why}; falling back to SKB mode, which carries the same frames"
                );
                (try_mode(XdpMode::Skb)?, XdpMode::Skb)
            }
        },
    })
}

/// What netlink says about uplink `name` now.
fn seen(nl: &Netlink, name: &str) -> Result<Seen> {
    Ok(match nl.link_by_name(name)? {
        None => Seen::Absent,
        Some(l) if l.oper_up => Seen::Up { index: l.index },
        Some(l) => Seen::Down { index: l.index },
    })
}

/// Forwards link notifications, stamped with when they were read, to the control loop, so
/// it reacts to an uplink's carrier loss or removal at once rather than on its next poll.
fn spawn_link_watcher(tx: Sender<(Instant, WatchEvent)>, term: Arc<AtomicBool>) -> Result<()> {
    let mut watcher = LinkWatcher::open().context("subscribe to link changes")?;
    thread::Builder::new()
        .name("ovl-links".into())
        .spawn(move || {
            while !term.load(Ordering::Relaxed) {
                match watcher.wait_events(Duration::from_millis(200)) {
                    Ok(events) => {
                        let at = Instant::now();
                        for ev in events {
                            if tx.send((at, ev)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!("link notifications: {e}");
                        thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .context("spawn link watcher")?;
    Ok(())
}

/// The last change of the active uplink.
#[derive(Clone, Debug)]
struct Switch {
    from: Option<String>,
    to: Option<String>,
    cause: Cause,
    /// From reading the event to telling the programs and workers.
    took: Duration,
    at: Instant,
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
    workers: WorkerSet,
    mode: DatapathMode,
    /// The ports the fast path redirects to ("xdp" mode; empty otherwise).
    fast_ports: Vec<FastPort>,
    xdp: XdpObject,
    nl: Netlink,
    uplinks: Uplinks,
    /// Uplinks with the ingress program attached: position -> (device index, link).
    attached: HashMap<usize, (u32, XdpLinkId)>,
    xdp_mode: XdpModeCfg,
    /// How the first uplink attached (the overlay ports' programs follow it).
    attach_mode: Option<XdpMode>,
    /// The programs' config without the active uplink's index and MAC.
    base_config: ovl_common::Config,
    /// What the programs were last given (`base_config` with the active uplink's settings).
    config: ovl_common::Config,
    fast: bool,
    /// Settings changed on uplinks that appeared while running.
    restore: Restore,
    /// The state file's contents as the run started (plus `restore` when written again).
    state: State,
    state_file: PathBuf,
    last_switch: Option<Switch>,
    /// The workers' uplink sockets in the XSKMAP: (queue, device index).
    bound: HashSet<(u32, u32)>,
    /// Uplink sockets bound after start (devices that returned).
    sockets_rebound: u64,
    fdb: Fdb,
    /// Next hops of the remote VTEPs through every uplink device (so a switch finds the new
    /// uplink's already resolved), and through the active one: what the programs and the
    /// workers use.
    nexthops: NextHops,
    /// Map writes that failed, retried every second.
    retries: Retries,
    /// Warnings that could repeat for every frame or every second.
    warn_fdb_full: RateLimit,
    warn_map: RateLimit,
    port_names: Vec<(u32, String)>,
    started: Instant,
    last_provoke: HashMap<(u32, IpAddr), Instant>,
    /// The controller's last drain request.
    drain: DrainRequest,
}

impl Control {
    fn run(
        &mut self,
        term: &AtomicBool,
        events: &Receiver<FromWorker>,
        reqs: &Receiver<Request>,
        links: &Receiver<(Instant, WatchEvent)>,
    ) {
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        let mut next_health = Instant::now();
        while !term.load(Ordering::Relaxed) {
            if Instant::now() >= next_health {
                next_health = Instant::now() + HEALTH_EVERY;
                self.judge_health();
            }
            select! {
                recv(links) -> e => if let Ok((at, e)) = e { self.on_link_event(at, e) },
                recv(events) -> m => if let Ok(m) = m { self.on_worker(m) },
                recv(reqs) -> r => match r {
                    Ok(Request::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Ok(Request::Drain(req, reply)) => {
                        let answer = self.drain(req);
                        let _ = reply.send(serde_json::to_string(&answer).unwrap_or_default());
                    }
                    Err(_) => {}
                },
                default(Duration::from_millis(50)) => {}
            }
            // The programs log only on internal errors; unread, the ring would drop them.
            self.xdp.flush_logs();
            let now = Instant::now();
            if self.uplinks.next_deadline().is_some_and(|d| now >= d) {
                let actions = self.uplinks.tick(now);
                self.apply(actions, now);
            }
            if Instant::now() >= next_tick {
                next_tick += Duration::from_secs(1);
                // Level-triggered too: a lost notification costs at most this second.
                self.reobserve_uplinks();
                self.age();
                self.refresh_nexthops();
                self.retry_map_writes();
                self.rebind_missing_sockets();
                self.check_fast_ports();
                self.recheck_tx_redirect();
            } else if self.nexthops.any_unresolved() {
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
        let Some((u, index)) = self.uplinks.active() else {
            let states: Vec<String> = self
                .uplinks
                .links()
                .iter()
                .map(|l| {
                    let st = match l.seen {
                        Seen::Absent => "absent",
                        Seen::Down { .. } => "no carrier",
                        Seen::Up { .. } => "up",
                    };
                    format!("{} {st}", l.name)
                })
                .collect();
            return Some(format!(
                "no uplink can carry traffic ({})",
                states.join(", ")
            ));
        };
        if !self.attached.contains_key(&u) {
            return Some(format!(
                "active uplink {} has no XDP program",
                self.uplink_name(u)
            ));
        }
        let queues = self.workers.counters().len() as u32;
        if !self.workers.running() || !(0..queues).all(|q| self.bound.contains(&(q, index))) {
            return Some(format!(
                "no AF_XDP sockets on active uplink {}",
                self.uplink_name(u)
            ));
        }
        if let Some(i) = self.workers.finished() {
            return Some(format!("worker {i} has stopped"));
        }
        if self.nexthops.none_resolved() {
            return Some("no remote VTEP's next hop is resolved".into());
        }
        None
    }

    fn uplink_name(&self, u: usize) -> &str {
        &self.uplinks.links()[u].name
    }

    /// A link notification: an uplink changed (carrier, index) or went away.
    fn on_link_event(&mut self, at: Instant, e: WatchEvent) {
        let (name, seen) = match &e {
            WatchEvent::Link(l) => (
                l.name.as_str(),
                if l.oper_up {
                    Seen::Up { index: l.index }
                } else {
                    Seen::Down { index: l.index }
                },
            ),
            WatchEvent::LinkRemoved(l) => (l.name.as_str(), Seen::Absent),
            WatchEvent::Overrun => {
                self.reobserve_uplinks();
                return;
            }
            _ => return,
        };
        let Some(u) = self.uplinks.links().iter().position(|l| l.name == name) else {
            return;
        };
        // A removal of an index we no longer track is old news.
        if seen == Seen::Absent
            && let WatchEvent::LinkRemoved(l) = &e
            && self.uplinks.links()[u].seen.index() != Some(l.index)
        {
            return;
        }
        let actions = self.uplinks.observe(u, seen, at);
        self.apply(actions, at);
    }

    /// Reads every uplink's state from the kernel and acts on what changed.
    fn reobserve_uplinks(&mut self) {
        for u in 0..self.uplinks.links().len() {
            let Ok(seen) = seen(&self.nl, self.uplink_name(u)) else {
                continue;
            };
            let now = Instant::now();
            let actions = self.uplinks.observe(u, seen, now);
            self.apply(actions, now);
        }
    }

    /// Carries out the uplink selection's actions; the workers are restarted once at the end
    /// if the set of devices changed.
    fn apply(&mut self, actions: Vec<UplinkAction>, at: Instant) {
        let mut rebuild = false;
        for a in actions {
            match a {
                UplinkAction::Attach { uplink, index } => {
                    self.attach_uplink(uplink, index);
                    rebuild = true;
                }
                UplinkAction::Forget { uplink, index } => {
                    tracing::warn!(uplink = %self.uplink_name(uplink), index, "uplink device gone");
                    self.detach_uplink(uplink);
                    self.nexthops.forget_uplink(index);
                    self.bound.retain(|(_, i)| *i != index);
                    rebuild = true;
                }
                UplinkAction::Activate {
                    uplink,
                    index,
                    cause,
                } => self.activate(Some((uplink, index)), cause, at),
                UplinkAction::Deactivate { cause } => self.activate(None, cause, at),
            }
        }
        if rebuild {
            self.sync_workers();
        }
    }

    fn attach_uplink(&mut self, u: usize, index: u32) {
        let name = self.uplink_name(u).to_string();
        self.detach_uplink(u);
        if self.fast {
            let before = self.restore.tx_checksum.len();
            if let Err(e) = complete_underlay_checksums(&name, &mut self.restore) {
                tracing::warn!(uplink = %name, "{e:#}");
            }
            if self.restore.tx_checksum.len() != before {
                self.write_state();
            }
        }
        match attach_underlay(&mut self.xdp, &name, self.xdp_mode) {
            Ok((id, mode)) => {
                self.attach_mode.get_or_insert(mode);
                self.attached.insert(u, (index, id));
                if let Err(e) = self
                    .xdp
                    .set_uplink(index, self.workers.slots().uplink_base(u as u32))
                {
                    tracing::warn!(uplink = %name, "uplink map: {e}");
                }
                tracing::info!(uplink = %name, index, ?mode, "uplink attached");
            }
            Err(e) => tracing::warn!(uplink = %name, index, "attach ingress program: {e:#}"),
        }
    }

    /// Forgets uplink `u`'s program (detached if its device still exists) and map entry.
    fn detach_uplink(&mut self, u: usize) {
        let Some((index, id)) = self.attached.remove(&u) else {
            return;
        };
        let _ = self.xdp.remove_uplink(index);
        let _ = self.xdp.detach(Program::UnderlayIngress, id);
    }

    /// The attached uplinks (position, name, device index), in order of preference.
    fn attached_list(&self) -> Vec<(usize, String, u32)> {
        let mut list: Vec<(usize, String, u32)> = self
            .attached
            .iter()
            .map(|(&u, &(index, _))| (u, self.uplink_name(u).to_string(), index))
            .collect();
        list.sort();
        list
    }

    /// Brings the workers' sockets in line with the attached uplinks and the active one:
    /// starts the workers the first time, then tells them (new sockets come back as
    /// `FromWorker::Sockets`).
    fn sync_workers(&mut self) {
        let list = self.attached_list();
        let active = self.uplinks.active().map(|(_, i)| i);
        let mac = self.base_config.local_mac;
        if self.workers.running() {
            let devices = list.into_iter().map(|(_, n, i)| (n, i)).collect();
            self.workers.set_uplinks(devices, active, mac);
            return;
        }
        match self.workers.start(
            &mut self.xdp,
            &list,
            active,
            mac,
            self.nexthops.resolved().collect(),
        ) {
            Ok(()) => {
                for q in 0..self.workers.counters().len() as u32 {
                    for (_, _, index) in &list {
                        self.bound.insert((q, *index));
                    }
                }
            }
            Err(e) => tracing::error!("starting the workers: {e:#}"),
        }
    }

    /// Sockets the workers bound on a returned uplink: into the XSKMAP.
    fn on_sockets(&mut self, queue: u32, bound: Vec<(u32, i32)>, failed: Vec<(String, String)>) {
        let slots = self.workers.slots();
        for (index, fd) in bound {
            let Some((&u, _)) = self.attached.iter().find(|(_, (i, _))| *i == index) else {
                continue;
            };
            match self.xdp.set_xsk(slots.uplink_base(u as u32) + queue, fd) {
                Ok(()) => {
                    self.bound.insert((queue, index));
                    self.sockets_rebound += 1;
                }
                Err(e) => tracing::warn!(queue, uplink = %self.uplink_name(u), "XSKMAP: {e}"),
            }
        }
        for (name, why) in failed {
            tracing::warn!(queue, uplink = %name, "binding the uplink's socket failed: {why}");
        }
    }

    /// Whether the egress program may redirect what it encapsulated straight to uplink
    /// `index` ("xdp" mode, IPv6 VTEPs only; over IPv4 the TC program sends). In SKB mode a
    /// redirect is a plain transmit; in driver mode the device must take XDP frames
    /// (`NDO_XMIT`: a NIC with `ndo_xdp_xmit`, a veth whose peer has NAPI), or they would be
    /// dropped where no counter of ours sees it.
    fn tx_redirect_ok(&self, index: u32) -> bool {
        self.base_config.fast_path != 0 && self.base_config.ipv6 != 0 && self.xdp_tx_ok(index)
    }

    /// Whether the ingress program on uplink `index` may send frames out of it (`XDP_TX`, or a
    /// redirect from another uplink): draining needs it.
    fn xdp_tx_ok(&self, index: u32) -> bool {
        match self.attach_mode {
            Some(XdpMode::Skb) => true,
            _ => matches!(
                ovl_netlink::xdp_features(index),
                Ok(Some(f)) if f & ovl_netlink::xdp_act::NDO_XMIT != 0
            ),
        }
    }

    /// Re-decides `tx_redirect` for the active uplink (a veth's peer may have gained or lost
    /// NAPI), writing the config only on a change.
    fn recheck_tx_redirect(&mut self) {
        if self.config.underlay_ifindex == 0 {
            return;
        }
        let xdp_tx = u8::from(self.xdp_tx_ok(self.config.underlay_ifindex));
        if xdp_tx != self.config.xdp_tx {
            self.config.xdp_tx = xdp_tx;
            tracing::info!(on = xdp_tx != 0, "the active uplink takes frames from XDP");
            if let Err(e) = self.xdp.set_config(self.config) {
                tracing::error!("program config: {e}");
            }
        }
        let ok = u8::from(self.tx_redirect_ok(self.config.underlay_ifindex));
        if ok != self.config.tx_redirect {
            self.config.tx_redirect = ok;
            tracing::info!(
                on = ok != 0,
                "egress redirect to the uplink (IPv6 VTEPs): workers {}",
                if ok != 0 { "bypassed" } else { "send" }
            );
            if let Err(e) = self.xdp.set_config(self.config) {
                tracing::error!("program config: {e}");
            }
        }
    }

    /// Makes uplink `to` (position, device index) the one we send on, or none.
    fn activate(&mut self, to: Option<(usize, u32)>, cause: Cause, at: Instant) {
        let from = self.last_switch.as_ref().and_then(|s| s.to.clone());
        let mut cfg = self.base_config;
        if let Some((u, index)) = to {
            match self.nl.link_by_index(index) {
                Ok(Some(l)) => {
                    if let Some(mac) = l.mac {
                        cfg.local_mac = mac;
                    }
                }
                _ => {
                    tracing::warn!(uplink = %self.uplink_name(u), "uplink vanished while being activated")
                }
            }
            cfg.underlay_ifindex = index;
            cfg.tx_redirect = u8::from(self.tx_redirect_ok(index));
            cfg.xdp_tx = u8::from(self.xdp_tx_ok(index));
        }
        cfg.drain = self.config.drain;
        self.base_config.local_mac = cfg.local_mac;
        self.config = cfg;
        if let Err(e) = self.xdp.set_config(cfg) {
            tracing::error!("program config: {e}");
        }
        let devices = self
            .attached_list()
            .into_iter()
            .map(|(_, n, i)| (n, i))
            .collect();
        self.workers
            .set_uplinks(devices, to.map(|(_, i)| i), cfg.local_mac);
        // The new uplink's next hops, as far as they are known already.
        for r in self.nexthops.remotes() {
            if let Some(change) = self.nexthops.choose(r, to.map(|(_, i)| i)) {
                self.publish_nexthop(change);
            }
        }
        let took = at.elapsed();
        let to_name = to.map(|(u, _)| self.uplink_name(u).to_string());
        match (&to_name, cause) {
            (Some(n), Cause::Start) => tracing::info!(uplink = %n, "sending on uplink"),
            (Some(n), _) => tracing::warn!(
                from = from.as_deref().unwrap_or("none"),
                to = %n,
                %cause,
                took_us = took.as_micros() as u64,
                "uplink switched"
            ),
            (None, _) => tracing::warn!(%cause, "no uplink can carry traffic"),
        }
        self.last_switch = Some(Switch {
            from,
            to: to_name,
            cause,
            took,
            at,
        });
        self.refresh_unresolved();
    }

    /// Writes the state file again with what the run changed since it started.
    fn write_state(&self) {
        let mut st = self.state.clone();
        st.restore
            .tx_checksum
            .extend(self.restore.tx_checksum.iter().cloned());
        if let Ok(bytes) = serde_json::to_vec(&st)
            && let Err(e) = fs::write(&self.state_file, bytes)
        {
            tracing::warn!("write {}: {e}", self.state_file.display());
        }
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
                let now = Instant::now();
                match self.fdb.learn((vni, mac), remote, now) {
                    Learned::Full => {
                        if let Some(held) = self.warn_fdb_full.allow(now) {
                            tracing::warn!(
                                held,
                                "FDB full ({} learned); not learning more",
                                self.fdb.learned_len()
                            );
                        }
                    }
                    l if l.changed() => {
                        tracing::debug!(vni, mac = %format_mac(&mac), %remote, "learned");
                        self.write_fdb((vni, mac));
                        if self.nexthops.want(remote) {
                            self.refresh_one(remote);
                        }
                    }
                    _ => {}
                }
            }
            FromWorker::Sockets {
                queue,
                bound,
                failed,
            } => self.on_sockets(queue, bound, failed),
            FromWorker::Resolve { remote } => {
                self.nexthops.want(remote);
                self.refresh_one(remote);
            }
        }
    }

    /// Removes learned entries not seen for the ageing time. Frames of known sources never
    /// reach userspace, so "seen" is the later of the last learn report and the stamp the
    /// ingress program keeps in the FDB entry.
    fn age(&mut self) {
        let now = Instant::now();
        let mono = monotonic_ns();
        for key in self.fdb.stale(now) {
            let seen_ago = match self.xdp.fdb(FdbKey::new(key.0, key.1)) {
                Ok(Some(e)) if e.seen_ns != 0 => {
                    Some(Duration::from_nanos(mono.saturating_sub(e.seen_ns)))
                }
                _ => None,
            };
            if self.fdb.settle(key, seen_ago, now) {
                tracing::debug!(vni = key.0, mac = %format_mac(&key.1), "aged out");
                self.write_fdb(key);
            }
        }
    }

    /// Makes the program's FDB entry of `key` what the table holds (removed if nothing);
    /// a failure is counted, logged (rate-limited) and retried every second.
    fn write_fdb(&mut self, key: MacKey) {
        let map_key = FdbKey::new(key.0, key.1);
        let result = match self.fdb.wanted(&key) {
            Some((remote, fixed)) => self.xdp.set_fdb(
                map_key,
                FdbEntry {
                    remote: ovl_common::vtep_addr(remote),
                    flags: if fixed { FDB_FLAG_STATIC } else { 0 },
                    _pad: 0,
                    seen_ns: monotonic_ns(),
                },
            ),
            // Already absent is what we want.
            None => self.xdp.remove_fdb(map_key).map(|_| ()),
        };
        let ok = self.map_write("FDB", result);
        self.retries.fdb_written(key, ok);
    }

    /// Makes the program's next hop of `remote` what the table publishes.
    fn write_nexthop(&mut self, remote: IpAddr) {
        let addr = ovl_common::vtep_addr(remote);
        let result = match self.nexthops.published(&remote).flatten() {
            Some(mac) => self.xdp.set_nexthop(addr, NextHop { mac, _pad: [0; 2] }),
            None => self.xdp.remove_nexthop(addr).map(|_| ()),
        };
        let ok = self.map_write("next-hop", result);
        self.retries.nexthop_written(remote, ok);
    }

    fn map_write(&mut self, map: &str, result: Result<(), crate::xdp::XdpError>) -> bool {
        let Err(e) = result else {
            return true;
        };
        if let Some(held) = self.warn_map.allow(Instant::now()) {
            tracing::warn!(held, "{map} map update failed (retried every second): {e}");
        }
        false
    }

    /// Writes again what failed to reach the maps.
    fn retry_map_writes(&mut self) {
        for key in std::mem::take(&mut self.retries.fdb) {
            self.write_fdb(key);
        }
        for remote in std::mem::take(&mut self.retries.nexthops) {
            self.write_nexthop(remote);
        }
    }

    /// Asks the workers to bind again where an attached uplink lacks a socket (a bind that
    /// failed, or a descriptor the XSKMAP refused), once a second until it has them all.
    fn rebind_missing_sockets(&mut self) {
        if !self.workers.running() {
            return;
        }
        let queues = self.workers.counters().len() as u32;
        let missing = self
            .attached
            .values()
            .any(|(index, _)| (0..queues).any(|q| !self.bound.contains(&(q, *index))));
        if missing {
            self.workers.rebind();
        }
    }

    fn refresh_unresolved(&mut self) {
        for r in self.nexthops.unresolved() {
            self.refresh_one(r);
        }
    }

    fn refresh_nexthops(&mut self) {
        for r in self.nexthops.remotes() {
            self.refresh_one(r);
        }
    }

    /// Looks up the outer next-hop MAC for `remote` through every attached uplink with
    /// carrier (route through that device, then its neighbour entry) and publishes the active
    /// uplink's. An unresolved neighbour is provoked with a datagram to the discard port sent
    /// out of that device, so the kernel ARPs for it there.
    fn refresh_one(&mut self, remote: IpAddr) {
        let devices: Vec<(u32, String)> = self
            .uplinks
            .links()
            .iter()
            .filter_map(|l| match l.seen {
                Seen::Up { index } => Some((index, l.name.clone())),
                _ => None,
            })
            .collect();
        let mut routed = false;
        let mut last_err = None;
        for (index, name) in devices {
            let mac = match self.nl.route_get_via(remote, index) {
                Ok(route) => {
                    routed = true;
                    let via = route.gateway.unwrap_or(remote);
                    match self.nl.neighbour(index, via) {
                        Ok(Some(n)) if n.is_usable() => n.mac,
                        _ => {
                            self.provoke(index, &name, via);
                            None
                        }
                    }
                }
                Err(e) => {
                    last_err = Some(e.to_string());
                    None
                }
            };
            self.nexthops.observe(index, remote, mac);
        }
        if let Some(e) = last_err.filter(|_| !routed)
            && self.nexthops.routed(remote, false)
        {
            tracing::warn!(%remote, "no route to remote VTEP through any uplink: {e}");
        } else if routed {
            self.nexthops.routed(remote, true);
        }
        let active = self.uplinks.active().map(|(_, i)| i);
        if let Some(change) = self.nexthops.choose(remote, active) {
            self.publish_nexthop(change);
        }
    }

    /// Gives a changed next hop to the program and the workers.
    fn publish_nexthop(&mut self, c: NextHopChange) {
        match c.new {
            Some(mac) => {
                tracing::info!(remote = %c.remote, mac = %format_mac(&mac), "next hop resolved")
            }
            None => tracing::warn!(remote = %c.remote, "next hop lost"),
        }
        self.write_nexthop(c.remote);
        self.workers.set_nexthop(c.remote, c.new);
    }

    /// Makes the kernel resolve `via` out of `device` (ARP, or neighbour discovery for IPv6)
    /// by sending it an empty datagram to the discard port, at most every 200 ms.
    fn provoke(&mut self, index: u32, device: &str, via: IpAddr) {
        let now = Instant::now();
        if self
            .last_provoke
            .get(&(index, via))
            .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(200))
        {
            return;
        }
        self.last_provoke.insert((index, via), now);
        let (bind, dst) = match via {
            IpAddr::V4(_) => ("0.0.0.0:0", SocketAddr::new(via, 9)),
            // A link-local gateway (the usual IPv6 next hop) needs the device as its scope.
            IpAddr::V6(a) => ("[::]:0", SocketAddr::V6(SocketAddrV6::new(a, 9, 0, index))),
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            return;
        };
        // Out of this uplink, whatever the routing table prefers.
        // SAFETY: setsockopt on our own socket with a buffer of the given length.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                device.as_ptr().cast(),
                device.len() as libc::socklen_t,
            )
        };
        if rc == 0 {
            let _ = s.send_to(&[], dst);
        }
    }
}

impl Control {
    /// Applies a drain request (see [`DrainRequest`]).
    fn drain(&mut self, req: DrainRequest) -> DrainReply {
        let mut reply = DrainReply::default();
        let port = match (&req.interface, self.port_names.as_slice()) {
            (Some(name), _) => Some(name.clone()),
            (None, [(_, only)]) => Some(only.clone()),
            (None, _) => None,
        };
        let port_mac = match port.as_deref().map(|n| self.nl.link_by_name(n)) {
            Some(Ok(Some(l))) => l.mac.unwrap_or_default(),
            Some(Ok(None)) => {
                reply.error = format!("no interface {}", port.unwrap_or_default());
                return reply;
            }
            Some(Err(e)) => {
                reply.error = format!("interface {}: {e}", port.unwrap_or_default());
                return reply;
            }
            None if req.accept => {
                reply.error = "several overlay ports: name the VIPs' interface".into();
                return reply;
            }
            None => [0; 6],
        };
        if let Some(to) = req.forward_to
            && to.is_ipv6() != (self.base_config.ipv6 != 0)
        {
            reply.error = format!("forward_to {to}: not of the VTEPs' address family");
            return reply;
        }
        let starting = req.forward_to.is_some() && req.forward_to != self.drain.forward_to;
        if starting {
            let _ = self.xdp.clear_drain_flows();
            tracing::info!(to = %req.forward_to.unwrap_or(IpAddr::from([0u8; 4])), vips = ?req.vips, "drain: forwarding connections without a socket here to the previous owner");
        } else if req.forward_to.is_none()
            && let Some(to) = self.drain.forward_to
        {
            let flows = self.xdp.drain_flows().unwrap_or(0);
            tracing::info!(%to, flows, "drain: forwarding ended");
        }
        if req.accept != self.drain.accept {
            tracing::info!(vips = ?req.vips, on = req.accept, "drain: serving drained frames");
        }
        // Entries of VIPs no longer listed go; the listed ones are written whole.
        let keep: Vec<[u8; 16]> = req.vips.iter().map(|v| ovl_common::vtep_addr(*v)).collect();
        if let Ok(present) = self.xdp.drain_vips() {
            for (k, _) in present {
                if !keep.contains(&k) {
                    let _ = self.xdp.remove_drain_vip(k);
                }
            }
        }
        let peer = req
            .forward_to
            .map(ovl_common::vtep_addr)
            .unwrap_or_default();
        for k in &keep {
            let d = ovl_common::DrainVip {
                peer,
                port_mac,
                forward: u8::from(req.forward_to.is_some()),
                accept: u8::from(req.accept),
            };
            let r = if d.forward == 0 && d.accept == 0 {
                self.xdp.remove_drain_vip(*k)
            } else {
                self.xdp.set_drain_vip(*k, d)
            };
            if let Err(e) = r {
                reply.error = format!("drain map: {e}");
                tracing::error!("{}", reply.error);
            }
        }
        if let Some(to) = req.forward_to
            && self.nexthops.want(to)
        {
            // The previous owner is a VTEP like any: its next hop is kept resolved.
            self.refresh_one(to);
        }
        let drain = u8::from(req.forward_to.is_some());
        if drain != self.config.drain {
            self.config.drain = drain;
            if let Err(e) = self.xdp.set_config(self.config) {
                reply.error = format!("program config: {e}");
            }
        }
        if req.forward_to.is_some() && self.config.xdp_tx == 0 {
            reply.warning = "the active uplink takes no frames from XDP (no NDO_XMIT): \
                             segments meant for the previous owner are delivered here"
                .into();
        } else if let Some(to) = req.forward_to
            && self.nexthops.published(&to) == Some(None)
        {
            reply.warning = format!("no next hop to {to} yet");
        }
        self.drain = req;
        reply.flows = self.xdp.drain_flows().unwrap_or(0);
        if let Ok(c) = self.xdp.counters() {
            reply.tx_drained = c.get(ovl_common::Counter::TxDrained);
            reply.rx_drain_unsent = c.get(ovl_common::Counter::RxDrainUnsent);
            reply.rx_drained = c.get(ovl_common::Counter::RxDrained);
        }
        reply
    }

    fn uplink_snapshot(&self) -> crate::stats::UplinksSnapshot {
        let active = self.uplinks.active().map(|(u, _)| u);
        crate::stats::UplinksSnapshot {
            links: self
                .uplinks
                .links()
                .iter()
                .enumerate()
                .map(|(u, l)| crate::stats::UplinkRow {
                    name: l.name.clone(),
                    state: match l.seen {
                        _ if active == Some(u) => "active",
                        Seen::Up { .. } => "backup",
                        Seen::Down { .. } => "no-carrier",
                        Seen::Absent => "absent",
                    }
                    .to_string(),
                    index: l.seen.index(),
                    attached: self.attached.contains_key(&u),
                })
                .collect(),
            switches: self.uplinks.switches,
            sockets_rebound: self.sockets_rebound,
            last_switch: self.last_switch.as_ref().map(|s| crate::stats::SwitchRow {
                from: s.from.clone(),
                to: s.to.clone(),
                cause: s.cause.to_string(),
                took_us: s.took.as_micros() as u64,
                ago_ms: s.at.elapsed().as_millis() as u64,
            }),
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
            drain: crate::stats::DrainSnapshot {
                vips: self.drain.vips.iter().map(IpAddr::to_string).collect(),
                forward_to: self.drain.forward_to.map(|t| t.to_string()),
                accept: self.drain.accept,
                flows: self.xdp.drain_flows().unwrap_or(0),
                xdp_tx: self.config.xdp_tx != 0,
            },
            uptime_ms: self.started.elapsed().as_millis() as u64,
            underlay: self
                .uplinks
                .active()
                .map_or_else(String::new, |(u, _)| self.uplink_name(u).to_string()),
            uplinks: self.uplink_snapshot(),
            queues: self
                .workers
                .counters()
                .iter()
                .map(|q| Snapshot::queue_from(q, &self.port_names))
                .collect(),
            xdp,
            xdp_drop_names,
            fdb_learned: self.fdb.learned_len(),
            fdb_static: self.fdb.static_len(),
            nexthops,
            map_write_failures: self.retries.failures,
            map_writes_pending: self.retries.pending() as u64,
            fdb: {
                let mut rows: Vec<crate::stats::FdbRow> = self
                    .fdb
                    .entries()
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
                let line = line.trim();
                if let Some(json) = line.strip_prefix("drain ") {
                    let answer = match serde_json::from_str::<DrainRequest>(json) {
                        Ok(req) => {
                            let (tx, rx) = bounded(1);
                            let sent =
                                reqs.send_timeout(Request::Drain(req, tx), Duration::from_secs(1));
                            match sent.ok().and_then(|()| rx.recv_timeout(Duration::from_secs(2)).ok()) {
                                Some(a) => a,
                                None => serde_json::to_string(&DrainReply {
                                    error: "control loop busy".into(),
                                    ..DrainReply::default()
                                })
                                .unwrap_or_default(),
                            }
                        }
                        Err(e) => serde_json::to_string(&DrainReply {
                            error: format!("bad drain request: {e}"),
                            ..DrainReply::default()
                        })
                        .unwrap_or_default(),
                    };
                    let _ = conn.write_all(format!("{answer}\n").as_bytes());
                    continue;
                }
                let answer = match line {
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
                        "error: unknown request {other:?} (try ping, stats, stats json, metrics, drain JSON)\n"
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
