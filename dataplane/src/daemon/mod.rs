//! `dataplane run`: sets up the host (overlay veths, XDP programs, AF_XDP sockets), runs one
//! pinned worker per queue and the control loop (MAC learning and ageing, next-hop
//! resolution, stats), and undoes everything on SIGINT/SIGTERM. A run killed with SIGKILL
//! leaves a state file behind; the next run removes what it lists before starting.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Write,
    net::TcpListener,
    os::unix::net::UnixListener,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::{XdpMode, xdp::XdpLinkId};
use crossbeam_channel::{Sender, bounded};
use ovl_common::{FDB_FLAG_STATIC, FdbEntry, FdbKey, PortInfo, UdpPortInfo, VniInfo};
use ovl_netlink::{LinkWatcher, Netlink, WatchEvent};

mod api;
mod control;
mod host;

pub use api::{DrainReply, DrainRequest, request};
use api::{Health, Request, spawn_control_socket, spawn_prometheus};
use control::{Control, FastPort};
use host::{
    Host, Restore, RunLock, State, clean_leftovers, complete_underlay_checksums, state_path,
};

use crate::{
    config::{Config, DatapathMode},
    features::Feature,
    stats::QueueCounters,
    tables::{Fdb, NextHops, RateLimit, Retries},
    uplink::{Seen, Uplinks},
    worker::{FromWorker, PortSpec, WorkerSpec},
    workerset::WorkerSet,
    xdp::{Program, XdpObject},
};

/// The ports each worker serves, and what the control loop needs of them.
struct VniRuntime {
    id: u32,
    interface: String,
    kernel_index: u32,
    dp_index: u32,
}

/// Runs the data plane until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let (cfg, report) = Config::load(config_path)?;
    for n in &report.notes {
        tracing::warn!("{n}");
    }
    // Kernel features first: a kernel without an essential one stops here, in one line,
    // before anything on the host is touched.
    let features = crate::features::decide(
        &crate::features::probe(),
        &crate::features::Wanted::from_config(&cfg),
    );
    features.log();
    if let Some(line) = features.fatal() {
        bail!("{line}");
    }
    features.publish();
    let busy_poll_us = if features.uses(Feature::PreferBusyPoll) {
        cfg.workers.busy_poll_us
    } else {
        0
    };
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

    if busy_poll_us > 0 {
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
    let log_dir = sock_path
        .parent()
        .unwrap_or(Path::new(crate::xdp::VERIFIER_LOG_DIR));
    let mut xdp = XdpObject::load_logging_to(log_dir).context("load XDP programs")?;
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
        busy_poll_us,
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
        warn_bind: RateLimit::new(WARN_EVERY),
        port_names: vnis.iter().map(|r| (r.id, r.interface.clone())).collect(),
        started: Instant::now(),
        last_provoke: HashMap::new(),
        drain: DrainRequest::default(),
        kernel: features.kernel.release.clone(),
        features: features.stats_rows(),
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
    // Without the encapsulation flags the TC program could only pass everything on.
    if fast && features.uses(Feature::TcEncapL2Eth) {
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
