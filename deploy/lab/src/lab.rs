//! Building, using and removing a lab.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    LabError,
    cmd::{self, tail},
    config,
    netns::{self, STATE_ROOT},
    spec::{FABRIC, LabSpec, OURS_INTERFACE, Overlay},
};

/// How many log lines a readiness error carries.
const LOG_TAIL_LINES: usize = 40;
/// How long a stopped process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// The content of the `owner` file of a lab that outlives its creator (`cargo xtask lab up`).
const KEPT: &str = "kept";

/// State directory of the lab with `prefix`: configs, logs, control sockets, the recorded
/// spec (`spec.json`), the owner and the data planes' pid files.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix)
}

/// A namespace prefix no other lab of this process uses: `{tag}{pid}-{counter}-`, e.g.
/// `t4242-3-` (for tests that run in parallel). `tag` should be a few lowercase letters.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}{}-{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether we run as root (namespaces need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Signals the lab sends to processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Int,
    Hup,
    /// Freezes a process (e.g. a data plane that hangs without dying).
    Stop,
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

fn send_signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions. The pid is our unreaped child or
        // was just listed by `ip netns pids`, so it names the process we mean.
        unsafe { libc::kill(pid, sig.raw()) };
    }
}

/// A process started with [`Lab::spawn`]; the lab kills it at the latest when it goes down.
#[derive(Clone, Debug)]
pub struct Spawned {
    pub host: String,
    pub pid: u32,
    /// Its stdout and stderr.
    pub log: PathBuf,
    index: usize,
}

/// What [`Lab::ensure_kept`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The lab was up and healthy; nothing was touched.
    AlreadyUp,
    /// Nothing was there; the lab was built.
    Built,
    /// A partial or unhealthy lab was there (these problems); it was removed and rebuilt.
    Rebuilt(Vec<String>),
}

#[derive(Debug)]
struct Proc {
    child: Child,
    exit: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once it has ended (reaping it).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.exit = Some(st);
        }
        self.exit
    }

    fn signal(&mut self, sig: Signal) {
        // Never signal a reaped child: its pid may belong to someone else by now.
        if self.poll().is_none() {
            send_signal(self.pid(), sig);
        }
    }

    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::Term);
        // A frozen (SIGSTOPped) process only acts on the SIGTERM once it runs again.
        self.signal(Signal::Cont);
        if let Some(st) = self.wait_for(grace) {
            return Some(st);
        }
        self.signal(Signal::Kill);
        self.wait_for(Duration::from_secs(5))
    }
}

/// A running lab. Dropping it takes it down (unless [`Lab::keep`] was called, or another
/// `Lab::up` with the same prefix has replaced it since).
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    dir: PathBuf,
    owner: String,
    dataplanes: BTreeMap<String, Proc>,
    spawned: Vec<Proc>,
    kept: bool,
}

impl Lab {
    /// Builds the lab described by `spec`, replacing whatever is left of a lab with the same
    /// prefix. On error everything built so far is removed again.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Self::up_with(spec, &|_| {})
    }

    /// [`Lab::up`], reporting each step to `progress`.
    pub fn up_with(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<Lab, LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        if netns::list()?.iter().any(|n| belongs_to(n, &spec.prefix))
            || state_dir(&spec.prefix).exists()
        {
            progress(&format!("removing the old lab {}", spec.prefix));
            Self::down(&spec.prefix)?;
        }
        let dir = state_dir(&spec.prefix);
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let owner = owner_token();
        write_file(&dir.join("owner"), &owner)?;
        // From here on, an early return drops `lab`, which takes everything down again.
        let mut lab = Lab {
            spec: spec.clone(),
            dir,
            owner,
            dataplanes: BTreeMap::new(),
            spawned: Vec::new(),
            kept: false,
        };
        let recorded = serde_json::to_string_pretty(spec).map_err(|e| LabError::Parse {
            cmd: "record the lab spec".into(),
            detail: e.to_string(),
        })?;
        write_file(&lab.dir.join("spec.json"), &recorded)?;
        lab.build_underlay(progress)?;
        lab.build_kernel_overlays(progress)?;
        lab.start_dataplanes(progress)?;
        tracing::info!(prefix = %spec.prefix, hosts = spec.hosts.len(), "lab up");
        Ok(lab)
    }

    fn build_underlay(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let fabric = self.spec.ns(FABRIC);
        progress(&format!("router {fabric}"));
        netns::add(&fabric)?;
        self.set_ipv6(&fabric)?;
        netns::sysctl(&fabric, "net/ipv4/ip_forward", "1")?;
        if self.spec.underlay_ipv6 {
            // `all` also sets `default`, so every router port created later forwards.
            netns::sysctl(&fabric, "net/ipv6/conf/all/forwarding", "1")?;
        }
        if self.spec.uplinks > 1 {
            // A route through a link without carrier is skipped, so the router reaches a
            // host over whichever of its uplinks is up.
            self.ignore_linkdown_routes(&fabric)?;
        }
        for (i, h) in self.spec.hosts.iter().enumerate() {
            let ns = self.spec.ns(&h.name);
            let me = LabSpec::underlay_ip_at(i);
            let gw = LabSpec::gateway_at(i);
            if self.spec.underlay_ipv6 {
                progress(&format!(
                    "host {ns}: underlay {me}/24 via {gw}, {}/64 via {}",
                    LabSpec::underlay_ip6_at(i),
                    LabSpec::gateway6_at(i)
                ));
            } else {
                progress(&format!("host {ns}: underlay {me}/24 via {gw}"));
            }
            netns::add(&ns)?;
            self.set_ipv6(&ns)?;
            let uplinks = self.spec.uplinks_of(&h.name);
            if uplinks > 1 {
                self.ignore_linkdown_routes(&ns)?;
            }
            for k in 0..uplinks {
                self.add_uplink(&h.name, k)?;
            }
        }
        Ok(())
    }

    /// Routes through a link without carrier are skipped in `ns` (both families when the
    /// underlay has IPv6), for hosts and a router with several uplinks.
    fn ignore_linkdown_routes(&self, ns: &str) -> Result<(), LabError> {
        let families: &[&str] = if self.spec.underlay_ipv6 {
            &["ipv4", "ipv6"]
        } else {
            &["ipv4"]
        };
        for fam in families {
            for scope in ["all", "default"] {
                netns::sysctl(
                    ns,
                    &format!("net/{fam}/conf/{scope}/ignore_routes_with_linkdown"),
                    "1",
                )?;
            }
        }
        Ok(())
    }

    /// Turns IPv6 on for the underlay veth `dev` in `ns` only (the namespace's `default` may
    /// keep it off, see [`LabSpec::ipv6`]): no DAD, so addresses work at once; addresses kept
    /// when the link goes admin down (as IPv4 does), so a router port that
    /// [`Lab::set_uplink_carrier`] turns off and on again still has its gateway address.
    fn enable_underlay_ipv6(ns: &str, dev: &str) -> Result<(), LabError> {
        for (key, value) in [
            ("accept_dad", "0"),
            ("keep_addr_on_down", "1"),
            ("disable_ipv6", "0"),
        ] {
            netns::sysctl(ns, &format!("net/ipv6/conf/{dev}/{key}"), value)?;
        }
        Ok(())
    }

    /// The router's end of host `host`'s uplink `k` (the host's end is `eth{k}`).
    pub fn uplink_port(host: &str, k: u32) -> String {
        if k == 0 {
            format!("to-{host}")
        } else {
            format!("tb-{host}")
        }
    }

    /// Creates host `host`'s uplink `k`: a veth `eth{k}` to the router with the host's
    /// underlay address, routes on both sides preferring lower `k`. A backup uplink takes
    /// `eth0`'s MAC (if `eth0` exists), as a VM's two NICs share one.
    pub fn add_uplink(&self, host: &str, k: u32) -> Result<(), LabError> {
        let (i, _) = self
            .spec
            .host(host)
            .ok_or_else(|| LabError::UnknownHost(host.to_string()))?;
        let fabric = self.spec.ns(FABRIC);
        let ns = self.spec.ns(host);
        let me = LabSpec::underlay_ip_at(i);
        let gw = LabSpec::gateway_at(i);
        let mtu = self.spec.underlay_mtu.to_string();
        let port = Self::uplink_port(host, k);
        let dev = format!("eth{k}");
        let metric = (100 * k).to_string();
        let metric6 = uplink_metric6(k);
        let queues = self.spec.queues.max(1).to_string();
        // Created inside the router's namespace with the peer moved straight into the
        // host's, so nothing ever appears in the root namespace and names cannot clash
        // between labs.
        cmd::ip_ns(
            &fabric,
            &[
                "link",
                "add",
                &port,
                "mtu",
                &mtu,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "type",
                "veth",
                "peer",
                "name",
                &dev,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "mtu",
                &mtu,
                "netns",
                &ns,
            ],
        )?;
        // A VM's virtual function and synthetic NIC share one MAC: so do the uplinks here.
        let shared_mac = (0..self.spec.uplinks_of(host))
            .filter(|&j| j != k)
            .find_map(|j| link_mac(&ns, &format!("eth{j}")));
        if let Some(mac) = shared_mac {
            cmd::ip_ns(&ns, &["link", "set", &dev, "address", &mac])?;
        }
        cmd::ip_ns(
            &fabric,
            &[
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                &port,
                "metric",
                &metric,
            ],
        )?;
        if self.spec.underlay_ipv6 {
            Self::enable_underlay_ipv6(&fabric, &port)?;
            cmd::ip_ns(
                &fabric,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{}/64", LabSpec::gateway6_at(i)),
                    "dev",
                    &port,
                    "metric",
                    &metric6,
                    "nodad",
                ],
            )?;
        }
        if self.spec.router_napi || self.spec.underlay_ipv6 {
            // NAPI (GRO) on the router's end, so the host's end takes frames sent from XDP
            // (it advertises NDO_XMIT), as a NIC's driver does: over IPv6 our egress program
            // sends that way (README, IPv6 VTEPs), and draining sends with XDP_TX.
            cmd::run_ok(
                Command::new("ip").args([
                    "netns", "exec", &fabric, "ethtool", "-K", &port, "gro", "on",
                ]),
                cmd::CMD_TIMEOUT,
            )?;
        }
        cmd::ip_ns(&fabric, &["link", "set", &port, "up"])?;
        self.host_route(host, k)?;
        cmd::ip_ns(
            &ns,
            &[
                "addr",
                "add",
                &format!("{me}/24"),
                "dev",
                &dev,
                "metric",
                &metric,
            ],
        )?;
        if self.spec.underlay_ipv6 {
            // The same IPv6 address on every uplink, as the IPv4 one.
            Self::enable_underlay_ipv6(&ns, &dev)?;
            cmd::ip_ns(
                &ns,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{}/64", LabSpec::underlay_ip6_at(i)),
                    "dev",
                    &dev,
                    "metric",
                    &metric6,
                    "nodad",
                ],
            )?;
        }
        cmd::ip_ns(&ns, &["link", "set", &dev, "up"])?;
        cmd::ip_ns(
            &ns,
            &[
                "route",
                "replace",
                "default",
                "via",
                &gw.to_string(),
                "dev",
                &dev,
                "metric",
                &metric,
            ],
        )?;
        if self.spec.underlay_ipv6 {
            cmd::ip_ns(
                &ns,
                &[
                    "-6",
                    "route",
                    "replace",
                    "default",
                    "via",
                    &LabSpec::gateway6_at(i).to_string(),
                    "dev",
                    &dev,
                    "metric",
                    &metric6,
                ],
            )?;
        }
        Ok(())
    }

    /// Host `host`'s uplink `k` loses (false) or regains (true) carrier: the router's end
    /// goes down or up, as when a cable is pulled or a switch port fails.
    pub fn set_uplink_carrier(&self, host: &str, k: u32, up: bool) -> Result<(), LabError> {
        let fabric = self.spec.ns(FABRIC);
        let port = Self::uplink_port(host, k);
        cmd::ip_ns(
            &fabric,
            &["link", "set", &port, if up { "up" } else { "down" }],
        )?;
        if up {
            // Routes through a device that went down are gone; put the host route back.
            self.host_route(host, k)?;
        }
        Ok(())
    }

    /// With several uplinks, the router's route to host `host` through uplink `k`: a host
    /// route whose metric tells which link reaches the host, by preference.
    fn host_route(&self, host: &str, k: u32) -> Result<(), LabError> {
        if self.spec.uplinks_of(host) < 2 {
            return Ok(());
        }
        let (i, _) = self
            .spec
            .host(host)
            .ok_or_else(|| LabError::UnknownHost(host.to_string()))?;
        let port = Self::uplink_port(host, k);
        let metric = (100 * k).to_string();
        let metric6 = uplink_metric6(k);
        let fabric = self.spec.ns(FABRIC);
        let me = format!("{}/32", LabSpec::underlay_ip_at(i));
        cmd::ip_ns(
            &fabric,
            &["route", "replace", &me, "dev", &port, "metric", &metric],
        )?;
        if self.spec.underlay_ipv6 {
            let me6 = format!("{}/128", LabSpec::underlay_ip6_at(i));
            cmd::ip_ns(
                &fabric,
                &[
                    "-6", "route", "replace", &me6, "dev", &port, "metric", &metric6,
                ],
            )?;
        }
        Ok(())
    }

    /// Host `host`'s uplink `k` device disappears (both ends of the veth), as a VM's virtual
    /// function does while the host is serviced. `add_uplink` brings it back (new index).
    pub fn remove_uplink(&self, host: &str, k: u32) -> Result<(), LabError> {
        let ns = self.ns_checked(host)?;
        cmd::ip_ns(&ns, &["link", "del", &format!("eth{k}")]).map(drop)
    }

    /// Applies `spec.ipv6` before any interface but `lo` exists, so every later one (moved
    /// in or created) inherits the `default` setting.
    fn set_ipv6(&self, ns: &str) -> Result<(), LabError> {
        let off = if self.spec.ipv6 { "0" } else { "1" };
        netns::sysctl(ns, "net/ipv6/conf/all/disable_ipv6", off)?;
        netns::sysctl(ns, "net/ipv6/conf/default/disable_ipv6", off)
    }

    fn build_kernel_overlays(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        for (i, h) in self.spec.hosts.iter().enumerate() {
            let Overlay::Kernel { vni, port, addr } = h.overlay else {
                continue;
            };
            let ns = self.spec.ns(&h.name);
            let dev = format!("vxlan{vni}");
            let peers = self.spec.vtep_peers(&h.name);
            let local = self.spec.vtep_ip_at(i);
            progress(&format!(
                "host {ns}: kernel VXLAN {dev} (VNI {vni}, port {port}, local {local}) {addr}, \
                 {} peer(s), TX checksum offload {}",
                peers.len(),
                if self.spec.keeps_tx_offload(&h.name) {
                    "on"
                } else {
                    "off"
                }
            ));
            cmd::ip_ns(
                &ns,
                &[
                    "link",
                    "add",
                    &dev,
                    "address",
                    &config::format_mac(LabSpec::overlay_mac_at(i)),
                    "type",
                    "vxlan",
                    "id",
                    &vni.to_string(),
                    "dstport",
                    &port.to_string(),
                    // An IPv6 `local` makes the device IPv6-only (peers must be IPv6 too).
                    // Its UDP checksum settings stay at the defaults: over IPv6 it computes
                    // the outer UDP checksum on transmit (`udp6zerocsumtx` off) and drops
                    // zero-checksum packets on receive (`udp6zerocsumrx` off), so any other
                    // VTEP talking to it over IPv6 must send real UDP checksums.
                    "local",
                    &local.to_string(),
                    // Bound to eth0 so the kernel sizes the MTU: underlay minus
                    // `kernel_vxlan_overhead()` (50 over IPv4, 70 over IPv6).
                    "dev",
                    "eth0",
                ],
            )?;
            cmd::ip_ns(&ns, &["addr", "add", &addr.to_string(), "dev", &dev])?;
            // A veth never computes the checksums it "offloads"; the kernel VXLAN driver then
            // sends inner TCP/UDP with partial checksums, which only a kernel receiver (sharing
            // the skb's state) accepts. Real NICs fill them in; here the stack must, unless the
            // spec asks for the driver at its best (kernel receivers only).
            if !self.spec.keeps_tx_offload(&h.name) {
                cmd::run_ok(
                    Command::new("ip")
                        .args(["netns", "exec", &ns, "ethtool", "-K", &dev, "tx", "off"]),
                    cmd::CMD_TIMEOUT,
                )?;
                // The same for the outer UDP checksum over IPv6, which the driver leaves to
                // eth0: partial on a veth, it would reach a non-kernel receiver unfinished.
                if self.spec.underlay_ipv6 {
                    cmd::run_ok(
                        Command::new("ip")
                            .args(["netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off"]),
                        cmd::CMD_TIMEOUT,
                    )?;
                }
            }
            cmd::ip_ns(&ns, &["link", "set", &dev, "up"])?;
            for peer in peers {
                // Head-end replication: broadcast and unknown unicast go to every peer.
                cmd::bridge_ns(
                    &ns,
                    &[
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        &dev,
                        "dst",
                        &peer.to_string(),
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn start_dataplanes(&mut self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let ours: Vec<String> = self
            .spec
            .hosts
            .iter()
            .filter(|h| matches!(h.overlay, Overlay::Ours { .. }))
            .map(|h| h.name.clone())
            .collect();
        // Start them all, then wait: they come up in parallel.
        for host in &ours {
            progress(&format!(
                "host {}: starting {} run",
                self.spec.ns(host),
                self.spec.dataplane_bin.display()
            ));
            self.launch_dataplane(host)?;
        }
        let deadline = Instant::now() + self.spec.ready_timeout;
        for host in &ours {
            self.wait_ready(host, deadline)?;
            progress(&format!("host {}: data plane ready", self.spec.ns(host)));
        }
        Ok(())
    }

    /// Writes the config and starts `dataplane run` on `host`, removing what a previous
    /// instance may have left (its `ovl0`, its socket) so readiness means the new one.
    fn launch_dataplane(&mut self, host: &str) -> Result<(), LabError> {
        let ns = self.ns_checked(host)?;
        let cfg_path = self.config_path(host);
        let sock = self.control_socket(host);
        let text = config::render(&self.spec, host, &sock)?;
        write_file(&cfg_path, &text)?;
        match fs::remove_file(&sock) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("remove {}", sock.display()), e)),
        }
        if link_exists(&ns, OURS_INTERFACE) {
            cmd::ip_ns(&ns, &["link", "del", OURS_INTERFACE])?;
        }
        let log_path = self.dataplane_log_path(host);
        let mut log = open_log(&log_path, true)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns])
            .arg(&self.spec.dataplane_bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg_path)
            // Its log is a file: no colour escapes in it.
            .env("NO_COLOR", "1");
        let line = cmd::describe(&command);
        // The marker separates restarts in the one log file.
        writeln!(log, "--- ovl-lab: {line}")
            .map_err(|e| LabError::io(format!("write {}", log_path.display()), e))?;
        let child = spawn_logged(&mut command, log, &log_path)?;
        write_file(
            &self.dir.join(format!("{host}.pid")),
            &child.id().to_string(),
        )?;
        tracing::debug!(host, pid = child.id(), "data plane started");
        self.dataplanes
            .insert(host.to_string(), Proc { child, exit: None });
        Ok(())
    }

    /// Waits until `ovl0` is up with its address and the control socket accepts.
    fn wait_ready(&mut self, host: &str, deadline: Instant) -> Result<(), LabError> {
        let ns = self.spec.ns(host);
        let want = self
            .spec
            .host(host)
            .and_then(|(_, h)| h.overlay.addr())
            .ok_or_else(|| LabError::NotOurs(host.to_string()))?;
        let sock = self.control_socket(host);
        loop {
            let exited = match self.dataplanes.get_mut(host) {
                Some(p) => p.poll(),
                None => return Err(LabError::NotOurs(host.to_string())),
            };
            if let Some(st) = exited {
                return Err(self.not_ready(host, format!("it exited ({st}) before it was ready")));
            }
            let reason = match interface_state(&ns, OURS_INTERFACE) {
                None => format!("no {OURS_INTERFACE} in {ns}"),
                Some(s) if !s.up => format!("{OURS_INTERFACE} is down"),
                Some(s) if !s.addrs.contains(&want.addr) => {
                    format!("{OURS_INTERFACE} has no address {}", want.addr)
                }
                Some(_) => match UnixStream::connect(&sock) {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("control socket {}: {e}", sock.display()),
                },
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(
                    host,
                    format!(
                        "still not ready after {:?}: {reason}",
                        self.spec.ready_timeout
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, host: &str, reason: String) -> LabError {
        let log = fs::read_to_string(self.dataplane_log_path(host)).unwrap_or_default();
        LabError::DataplaneNotReady {
            host: host.to_string(),
            reason,
            log_tail: tail(log.trim_end(), LOG_TAIL_LINES),
        }
    }

    /// The spec this lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// Its namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// Its state directory (configs, logs, sockets).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Namespace of `host` (`fabric` names the router).
    pub fn ns(&self, host: &str) -> String {
        self.spec.ns(host)
    }

    fn ns_checked(&self, host: &str) -> Result<String, LabError> {
        if host == FABRIC || self.spec.host(host).is_some() {
            Ok(self.spec.ns(host))
        } else {
            Err(LabError::UnknownHost(host.to_string()))
        }
    }

    /// Underlay address of `host` on its `eth0`.
    pub fn underlay_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec
            .host(host)
            .map(|(i, _)| LabSpec::underlay_ip_at(i))
    }

    /// The router's address in `host`'s subnet (its default gateway).
    pub fn gateway_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec.host(host).map(|(i, _)| LabSpec::gateway_at(i))
    }

    /// IPv6 underlay address of `host` on its uplinks, if the lab has an IPv6 underlay.
    pub fn underlay_ip6(&self, host: &str) -> Option<Ipv6Addr> {
        self.spec
            .host(host)
            .filter(|_| self.spec.underlay_ipv6)
            .map(|(i, _)| LabSpec::underlay_ip6_at(i))
    }

    /// The router's IPv6 address in `host`'s subnet, if the lab has an IPv6 underlay.
    pub fn gateway_ip6(&self, host: &str) -> Option<Ipv6Addr> {
        self.spec
            .host(host)
            .filter(|_| self.spec.underlay_ipv6)
            .map(|(i, _)| LabSpec::gateway6_at(i))
    }

    /// The address `host`'s VTEP uses: IPv6 with [`LabSpec::underlay_ipv6`], else IPv4.
    pub fn vtep_ip(&self, host: &str) -> Option<IpAddr> {
        self.spec.host(host).map(|(i, _)| self.spec.vtep_ip_at(i))
    }

    /// VTEP addresses of the other hosts in `host`'s segment (see [`LabSpec::vtep_peers`]).
    pub fn vtep_peers(&self, host: &str) -> Vec<IpAddr> {
        self.spec.vtep_peers(host)
    }

    /// Overlay address of `host`, if it has an overlay.
    pub fn overlay_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec
            .host(host)
            .and_then(|(_, h)| h.overlay.addr())
            .map(|a| a.addr)
    }

    /// The interface carrying `host`'s overlay address: `vxlan{vni}` or `ovl0`.
    pub fn overlay_dev(&self, host: &str) -> Option<String> {
        self.spec.host(host).and_then(|(_, h)| h.overlay.device())
    }

    /// The MAC the lab gives `host`'s overlay interface.
    pub fn overlay_mac(&self, host: &str) -> Option<[u8; 6]> {
        self.spec
            .host(host)
            .filter(|(_, h)| h.overlay != Overlay::None)
            .map(|(i, _)| LabSpec::overlay_mac_at(i))
    }

    /// Path of `host`'s data plane config.
    pub fn config_path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.toml"))
    }

    /// Path of `host`'s data plane control socket.
    pub fn control_socket(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.sock"))
    }

    fn dataplane_log_path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}-dataplane.log"))
    }

    /// Runs `args` in `host`'s namespace (`ip netns exec`), killed after `timeout` (then the
    /// error is [`LabError::Timeout`]). A non-zero exit is returned, not an error.
    pub fn exec<S: AsRef<OsStr>>(
        &self,
        host: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        let ns = self.ns_checked(host)?;
        cmd::run_timeout(
            Command::new("ip").args(["netns", "exec", &ns]).args(args),
            timeout,
        )
    }

    /// Whether `host` gets an echo reply from `dst` (up to three one-second tries).
    pub fn ping(&self, host: &str, dst: Ipv4Addr) -> Result<bool, LabError> {
        self.ping_ip(host, IpAddr::V4(dst))
    }

    /// [`Lab::ping`] for either family (e.g. a [`Lab::vtep_ip`]).
    pub fn ping_ip(&self, host: &str, dst: IpAddr) -> Result<bool, LabError> {
        for _ in 0..3 {
            if ping_once(&self.ns_checked(host)?, dst)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs `f` on a thread inside `host`'s namespace (see [`crate::in_netns`]).
    pub fn in_ns<R: Send, F: FnOnce() -> R + Send>(&self, host: &str, f: F) -> Result<R, LabError> {
        netns::in_netns(&self.ns_checked(host)?, f)
    }

    /// Starts `args` in `host`'s namespace in the background, stdout and stderr to
    /// `{state dir}/{log_name}.log`. The lab kills it when it goes down.
    pub fn spawn<S: AsRef<OsStr>>(
        &mut self,
        host: &str,
        args: &[S],
        log_name: &str,
    ) -> Result<Spawned, LabError> {
        let ns = self.ns_checked(host)?;
        if log_name.is_empty() || log_name.contains('/') || log_name.starts_with('.') {
            return Err(LabError::InvalidSpec(format!("log name `{log_name}`")));
        }
        let log_path = self.dir.join(format!("{log_name}.log"));
        let log = open_log(&log_path, false)?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &ns]).args(args);
        let child = spawn_logged(&mut command, log, &log_path)?;
        let pid = child.id();
        self.spawned.push(Proc { child, exit: None });
        Ok(Spawned {
            host: host.to_string(),
            pid,
            log: log_path,
            index: self.spawned.len() - 1,
        })
    }

    fn proc_of(&mut self, p: &Spawned) -> Option<&mut Proc> {
        self.spawned.get_mut(p.index).filter(|x| x.pid() == p.pid)
    }

    /// Sends `sig` to a spawned process (nothing if it has ended).
    pub fn signal(&mut self, p: &Spawned, sig: Signal) {
        if let Some(proc) = self.proc_of(p) {
            proc.signal(sig);
        }
    }

    /// Waits up to `timeout` for a spawned process to end; `None` if it still runs.
    pub fn wait(&mut self, p: &Spawned, timeout: Duration) -> Option<ExitStatus> {
        self.proc_of(p).and_then(|x| x.wait_for(timeout))
    }

    /// Stops a spawned process (SIGTERM, SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self, p: &Spawned) -> Option<ExitStatus> {
        self.proc_of(p).and_then(|x| x.stop(TERM_GRACE))
    }

    /// Pid of `host`'s data plane while it runs.
    pub fn dataplane_pid(&mut self, host: &str) -> Option<u32> {
        let p = self.dataplanes.get_mut(host)?;
        p.poll().is_none().then(|| p.pid())
    }

    /// Sends `sig` to `host`'s data plane (nothing if it has ended). It is not restarted.
    pub fn kill_dataplane(&mut self, host: &str, sig: Signal) -> Result<(), LabError> {
        self.ours(host)?;
        if let Some(p) = self.dataplanes.get_mut(host) {
            p.signal(sig);
        }
        Ok(())
    }

    /// Waits up to `timeout` for `host`'s data plane to end; `None` if it still runs.
    pub fn wait_dataplane(
        &mut self,
        host: &str,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, LabError> {
        self.ours(host)?;
        Ok(self
            .dataplanes
            .get_mut(host)
            .and_then(|p| p.wait_for(timeout)))
    }

    /// Stops `host`'s data plane (SIGTERM, SIGKILL after a grace period) if it runs, starts
    /// it again with a freshly written config and waits until it is ready.
    pub fn restart_dataplane(&mut self, host: &str) -> Result<(), LabError> {
        self.ours(host)?;
        if let Some(mut old) = self.dataplanes.remove(host) {
            old.stop(TERM_GRACE);
        }
        self.launch_dataplane(host)?;
        let deadline = Instant::now() + self.spec.ready_timeout;
        self.wait_ready(host, deadline)
    }

    /// Everything `host`'s data plane wrote (all runs, separated by `--- ovl-lab:` lines).
    pub fn dataplane_log(&self, host: &str) -> Result<String, LabError> {
        self.ours(host)?;
        let path = self.dataplane_log_path(host);
        fs::read_to_string(&path).map_err(|e| LabError::io(format!("read {}", path.display()), e))
    }

    fn ours(&self, host: &str) -> Result<(), LabError> {
        match self.spec.host(host) {
            None => Err(LabError::UnknownHost(host.to_string())),
            Some((_, h)) if matches!(h.overlay, Overlay::Ours { .. }) => Ok(()),
            Some(_) => Err(LabError::NotOurs(host.to_string())),
        }
    }

    /// Leaves the lab running after this value is gone (`cargo xtask lab up`): processes keep
    /// running, and only [`Lab::down`] removes it.
    pub fn keep(mut self) -> Result<(), LabError> {
        write_file(&self.dir.join("owner"), KEPT)?;
        self.kept = true;
        Ok(())
    }

    /// Takes the lab with `prefix` down: stops every process in its namespaces (SIGTERM,
    /// then SIGKILL), deletes the namespaces and the state directory. Idempotent; removes
    /// only `{prefix}{name}` namespaces whose `name` has no `-`, so `lab-` never touches
    /// `lab-x-...`.
    pub fn down(prefix: &str) -> Result<(), LabError> {
        crate::spec::check_prefix(prefix)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let ours = |all: Vec<String>| -> Vec<String> {
            all.into_iter().filter(|n| belongs_to(n, prefix)).collect()
        };
        let namespaces = ours(netns::list()?);
        stop_all(&namespaces)?;
        for ns in &namespaces {
            netns::delete(ns)?;
        }
        let dir = state_dir(prefix);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("remove {}", dir.display()), e)),
        }
        let left = ours(netns::list()?);
        if !left.is_empty() {
            return Err(LabError::Command {
                cmd: format!("down {prefix}"),
                status: "incomplete".into(),
                stderr: format!("namespaces still there: {}", left.join(" ")),
            });
        }
        Ok(())
    }

    /// Takes down every lab whose creating process has died without doing so (a test that
    /// was killed), leaving kept labs and those of live processes alone. Returns their
    /// prefixes.
    pub fn down_orphans() -> Result<Vec<String>, LabError> {
        let entries = match fs::read_dir(STATE_ROOT) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LabError::io(format!("list {STATE_ROOT}"), e)),
        };
        let mut done = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(prefix) = e.file_name().into_string() else {
                continue;
            };
            if crate::spec::check_prefix(&prefix).is_err() || !e.path().is_dir() {
                continue;
            }
            let owner = fs::read_to_string(e.path().join("owner")).unwrap_or_default();
            let pid = owner
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                Self::down(&prefix)?;
                done.push(prefix);
            }
        }
        Ok(done)
    }

    /// Makes sure the lab of `spec` is up and healthy, leaving it running afterwards (see
    /// [`Lab::keep`]): does nothing if it already is, removes and rebuilds a partial or
    /// unhealthy one.
    pub fn ensure_kept(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<Ensured, LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let problems = crate::status::problems(spec)?;
        if problems.is_empty() {
            return Ok(Ensured::AlreadyUp);
        }
        let partial = state_dir(&spec.prefix).exists()
            || netns::list()?.iter().any(|n| belongs_to(n, &spec.prefix));
        if partial {
            progress(&format!("the lab is not healthy: {}", problems.join("; ")));
        }
        Lab::up_with(spec, progress)?.keep()?;
        Ok(if partial {
            Ensured::Rebuilt(problems)
        } else {
            Ensured::Built
        })
    }

    /// A report on the lab with `prefix`: namespaces, processes, overlay interfaces and a
    /// one-shot overlay ping matrix.
    pub fn status(prefix: &str) -> Result<String, LabError> {
        crate::status::report(prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Our own children first (graceful, then not), so they are reaped, not zombies.
        for p in self.dataplanes.values_mut().chain(self.spawned.iter_mut()) {
            p.signal(Signal::Term);
            p.signal(Signal::Cont);
        }
        let deadline = Instant::now() + TERM_GRACE;
        for p in self.dataplanes.values_mut().chain(self.spawned.iter_mut()) {
            if p.wait_for(deadline.saturating_duration_since(Instant::now()))
                .is_none()
            {
                p.signal(Signal::Kill);
                p.wait_for(Duration::from_secs(5));
            }
        }
        // A later `up` with the same prefix owns the namespaces now; leave its lab alone.
        let owner = fs::read_to_string(self.dir.join("owner")).unwrap_or_default();
        if owner == self.owner
            && let Err(e) = Self::down(&self.spec.prefix)
        {
            tracing::warn!(prefix = %self.spec.prefix, "taking the lab down: {e}");
        }
    }
}

/// Whether namespace `name` is `{prefix}{host}` for some valid host name.
pub(crate) fn belongs_to(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_lowercase())
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// SIGTERM (once, so a graceful shutdown is not cut short by a second one) to every process
/// in `namespaces`, SIGKILL to whatever is left after a grace period; bounded.
fn stop_all(namespaces: &[String]) -> Result<(), LabError> {
    let list = || -> Result<Vec<u32>, LabError> {
        let mut all = Vec::new();
        for ns in namespaces {
            all.extend(netns::pids(ns)?);
        }
        Ok(all)
    };
    let mut pids = list()?;
    if pids.is_empty() {
        return Ok(());
    }
    for &pid in &pids {
        send_signal(pid, Signal::Term);
        send_signal(pid, Signal::Cont);
    }
    let started = Instant::now();
    while started.elapsed() < TERM_GRACE {
        thread::sleep(Duration::from_millis(25));
        pids = list()?;
        if pids.is_empty() {
            return Ok(());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for &pid in &pids {
            send_signal(pid, Signal::Kill);
        }
        thread::sleep(Duration::from_millis(25));
        pids = list()?;
        if pids.is_empty() {
            return Ok(());
        }
    }
    Err(LabError::Command {
        cmd: "stop the lab's processes".into(),
        status: "timeout".into(),
        stderr: format!("still running: {pids:?}"),
    })
}

fn owner_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{} {nanos} {}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    fs::write(path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))
}

fn open_log(path: &Path, append: bool) -> Result<File, LabError> {
    OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .map_err(|e| LabError::io(format!("open {}", path.display()), e))
}

/// Starts `command` with stdout and stderr to `log`, in its own process group (a Ctrl-C for
/// the caller's terminal does not reach it; the lab stops it).
fn spawn_logged(command: &mut Command, log: File, log_path: &Path) -> Result<Child, LabError> {
    let err = log
        .try_clone()
        .map_err(|e| LabError::io(format!("open {}", log_path.display()), e))?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(format!("start `{}`", cmd::describe(command)), e))
}

/// Route metric of uplink `k` for IPv6: IPv6 reads metric 0 as "the default" (1024 for a
/// route, 256 for a prefix route), which would rank `eth0` below `eth1`; so start at 100.
fn uplink_metric6(k: u32) -> String {
    (100 * (k + 1)).to_string()
}

/// One echo request from namespace `ns` to `dst`, one second to answer.
pub(crate) fn ping_once(ns: &str, dst: IpAddr) -> Result<bool, LabError> {
    let out = cmd::run_timeout(
        Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ])
            .arg(dst.to_string()),
        Duration::from_secs(5),
    )?;
    Ok(out.status.success())
}

/// The MAC address of `dev` in `ns`, if it exists.
fn link_mac(ns: &str, dev: &str) -> Option<String> {
    let out = cmd::ip_ns(ns, &["-j", "link", "show", "dev", dev]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get(0)?.get("address")?.as_str().map(str::to_string)
}

fn link_exists(ns: &str, dev: &str) -> bool {
    cmd::ip_ns(ns, &["link", "show", "dev", dev]).is_ok()
}

/// Admin state and IPv4 addresses of an interface, from `ip -j addr`.
#[derive(Debug, Default)]
pub(crate) struct IfState {
    pub up: bool,
    pub addrs: Vec<Ipv4Addr>,
    pub prefixes: Vec<String>,
}

/// The state of `dev` in `ns`, `None` if it does not exist.
pub(crate) fn interface_state(ns: &str, dev: &str) -> Option<IfState> {
    let out = cmd::ip_ns(ns, &["-j", "addr", "show", "dev", dev]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let link = v.as_array()?.first()?;
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let mut st = IfState {
        up,
        ..IfState::default()
    };
    for a in link["addr_info"].as_array().into_iter().flatten() {
        if a["family"] == "inet"
            && let Some(ip) = a["local"].as_str().and_then(|s| s.parse().ok())
        {
            st.addrs.push(ip);
            st.prefixes
                .push(format!("{ip}/{}", a["prefixlen"].as_u64().unwrap_or(32)));
        }
    }
    Some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_capture_longer_ones() {
        assert!(belongs_to("lab-client", "lab-"));
        assert!(belongs_to("lab-fabric", "lab-"));
        assert!(!belongs_to("lab-x-client", "lab-"));
        assert!(!belongs_to("t12-3-pri", "t12-"));
        assert!(belongs_to("t12-3-pri", "t12-3-"));
        assert!(!belongs_to("t12-30-pri", "t12-3-"));
        assert!(!belongs_to("lab-", "lab-"));
        assert!(!belongs_to("other", "lab-"));
    }

    #[test]
    fn unique_prefixes_are_valid_and_distinct() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        crate::spec::check_prefix(&a).unwrap();
        assert!(a.starts_with(&format!("t{}-", std::process::id())));
    }
}
