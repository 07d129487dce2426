//! The seed's failover set-up on top of a lab: the failover controller and the HTTP server
//! answering its ID on pri and sec, the VIP 192.168.0.200 on the active one's overlay
//! interface, and `http-ping` on the client. Used by the controller's lab tests, the demo and
//! the benchmark.

use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Output,
    thread,
    time::{Duration, Instant},
};

use crate::{Lab, LabError, Signal, Spawned};

/// The seed's VIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 200);
/// The seed's HTTP port.
pub const HTTP_PORT: u16 = 3000;
/// The two members, in priority order.
pub const MEMBERS: [&str; 2] = ["pri", "sec"];

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct PairBins {
    pub controller: PathBuf,
    pub id_server: PathBuf,
    pub http_ping: PathBuf,
}

impl PairBins {
    /// The binaries in `dir` (e.g. `target/release`).
    pub fn in_dir(dir: &std::path::Path) -> PairBins {
        PairBins {
            controller: dir.join("controller"),
            id_server: dir.join("id-server"),
            http_ping: dir.join("http-ping"),
        }
    }
}

/// Controller settings the trials vary.
#[derive(Clone, Debug)]
pub struct PairOptions {
    pub preempt: bool,
    pub hold_down_ms: u64,
    pub interval_ms: u64,
    pub multiplier: u32,
    pub garp_count: u32,
    pub garp_interval_ms: u64,
    /// `switchover.drain_ms` (0: no draining).
    pub drain_ms: u64,
    /// `switchover.drain_end = "keep"` rather than `"reset"`.
    pub drain_keep: bool,
    /// `health.dataplane_timeout_ms` (the controller's default is 50; an emulated VM needs
    /// more).
    pub dataplane_timeout_ms: u64,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            preempt: true,
            hold_down_ms: 5000,
            interval_ms: 10,
            multiplier: 3,
            garp_count: 3,
            garp_interval_ms: 5,
            drain_ms: 10_000,
            drain_keep: false,
            dataplane_timeout_ms: 50,
        }
    }
}

/// The running pair: controllers and ID servers on pri and sec.
#[derive(Debug)]
pub struct Pair {
    bins: PairBins,
    opts: PairOptions,
    controllers: BTreeMap<String, Spawned>,
}

fn priority(host: &str) -> u32 {
    if host == "pri" { 200 } else { 100 }
}

/// The other member of the pair.
pub fn other(host: &str) -> &'static str {
    if host == "pri" { "sec" } else { "pri" }
}

impl Pair {
    /// Writes the key and configs, starts both ID servers and controllers, and waits until
    /// pri owns the VIP.
    pub fn start(lab: &mut Lab, bins: PairBins, opts: PairOptions) -> Result<Pair, LabError> {
        let key = lab.state_dir().join("controller.key");
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| LabError::Io {
                what: "read /dev/urandom".into(),
                source: e,
            })?;
        fs::write(&key, bytes).map_err(|e| LabError::Io {
            what: format!("write {}", key.display()),
            source: e,
        })?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(|e| LabError::Io {
            what: format!("chmod {}", key.display()),
            source: e,
        })?;
        let mut pair = Pair {
            bins,
            opts,
            controllers: BTreeMap::new(),
        };
        for host in MEMBERS {
            let id = host.to_uppercase();
            let listen = format!("0.0.0.0:{HTTP_PORT}");
            let bin = pair.bins.id_server.to_string_lossy().into_owned();
            lab.spawn(
                host,
                &[bin.as_str(), "--id", &id, "--listen", &listen],
                &format!("{host}-id-server"),
            )?;
        }
        for host in MEMBERS {
            pair.start_controller(lab, host)?;
        }
        if !pair.wait_owner(lab, "pri", Duration::from_secs(5))? {
            return Err(LabError::NotReady {
                what: "the VIP on pri after start".into(),
                log: pair.logs(lab),
            });
        }
        Ok(pair)
    }

    /// The controller config of `host`.
    pub fn config(&self, lab: &Lab, host: &str) -> String {
        let dir = lab.state_dir();
        let o = &self.opts;
        // Heartbeats go between the VTEP addresses: over IPv6 with an IPv6 underlay.
        let peer = lab
            .vtep_ip(other(host))
            .map(|a| a.to_string())
            .unwrap_or_default();
        let me = lab.vtep_ip(host).map(|a| a.to_string()).unwrap_or_default();
        format!(
            "# Written by ovl-lab for {host}.\n\
             [node]\nname = \"{host}\"\npriority = {prio}\npreempt = {preempt}\nhold_down_ms = {hold}\n\n\
             [peer]\naddress = \"{peer}\"\n\n\
             [heartbeat]\naddress = \"{me}\"\ninterval_ms = {interval}\nmultiplier = {mult}\nkey_file = \"{key}\"\n\n\
             [vip]\ninterface = \"{dev}\"\naddresses = [\"{VIP}/24\"]\ngarp_count = {garps}\ngarp_interval_ms = {garp_iv}\n\n\
             [switchover]\ndrain_ms = {drain}\ndrain_end = \"{drain_end}\"\n\n\
             [health]\n{underlays}\n{dp}\n\
             [control]\nsocket = \"{ctl}\"\n",
            // Healthy while any uplink is up: switching between them is the data plane's job.
            underlays = match lab.spec().uplinks_of(host) {
                1 => "underlay_interface = \"eth0\"".to_string(),
                n => format!(
                    "underlay_interfaces = [{}]",
                    (0..n)
                        .map(|k| format!("\"eth{k}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            drain = o.drain_ms,
            drain_end = if o.drain_keep { "keep" } else { "reset" },
            prio = priority(host),
            preempt = o.preempt,
            hold = o.hold_down_ms,
            interval = o.interval_ms,
            mult = o.multiplier,
            key = dir.join("controller.key").display(),
            garps = o.garp_count,
            garp_iv = o.garp_interval_ms,
            dev = lab.overlay_dev(host).unwrap_or_default(),
            // The kernel driver has no process to watch; our data plane does.
            dp = match lab.spec().host(host).map(|(_, h)| &h.overlay) {
                Some(crate::spec::Overlay::Ours { .. }) => format!(
                    "dataplane_socket = \"{}\"\ndataplane_timeout_ms = {}\n",
                    lab.control_socket(host).display(),
                    o.dataplane_timeout_ms
                ),
                _ => String::new(),
            },
            ctl = self.control_socket(lab, host).display(),
        )
    }

    /// The controller's control socket of `host`.
    pub fn control_socket(&self, lab: &Lab, host: &str) -> PathBuf {
        lab.state_dir().join(format!("{host}-controller.sock"))
    }

    /// (Re)starts `host`'s controller with a freshly written config.
    pub fn start_controller(&mut self, lab: &mut Lab, host: &str) -> Result<(), LabError> {
        if let Some(old) = self.controllers.remove(host) {
            lab.stop(&old);
        }
        let path = lab.state_dir().join(format!("{host}-controller.toml"));
        fs::write(&path, self.config(lab, host)).map_err(|e| LabError::Io {
            what: format!("write {}", path.display()),
            source: e,
        })?;
        let _ = fs::remove_file(self.control_socket(lab, host));
        let bin = self.bins.controller.to_string_lossy().into_owned();
        let cfg = path.to_string_lossy().into_owned();
        let p = lab.spawn(
            host,
            &[bin.as_str(), "run", "--config", &cfg],
            &format!("{host}-controller"),
        )?;
        self.controllers.insert(host.to_string(), p);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.control_socket(lab, host).exists() {
            if Instant::now() > deadline {
                return Err(LabError::NotReady {
                    what: format!("{host}'s controller control socket"),
                    log: self.logs(lab),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Sends `sig` to `host`'s controller.
    pub fn signal_controller(&mut self, lab: &mut Lab, host: &str, sig: Signal) {
        if let Some(p) = self.controllers.get(host) {
            lab.signal(p, sig);
        }
    }

    /// Waits for `host`'s controller to exit.
    pub fn wait_controller(&mut self, lab: &mut Lab, host: &str, timeout: Duration) -> bool {
        match self.controllers.get(host) {
            Some(p) => lab.wait(p, timeout).is_some(),
            None => true,
        }
    }

    /// Members whose overlay interface carries the VIP right now.
    pub fn owners(&self, lab: &Lab) -> Result<Vec<&'static str>, LabError> {
        let mut out = Vec::new();
        for host in MEMBERS {
            let dev = lab.overlay_dev(host).unwrap_or_default();
            let has = lab.in_ns(host, || {
                let nl = ovl_netlink::Netlink::open().ok()?;
                let link = nl.link_by_name(&dev).ok()??;
                let addrs = nl.addrs(Some(link.index)).ok()?;
                Some(addrs.iter().any(|a| a.addr == IpAddr::V4(VIP)))
            })?;
            if has == Some(true) {
                out.push(host);
            }
        }
        Ok(out)
    }

    /// Waits until `host` and only `host` owns the VIP.
    pub fn wait_owner(&self, lab: &Lab, host: &str, timeout: Duration) -> Result<bool, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.owners(lab)? == [host] {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `controller switchover` on `host`.
    pub fn switchover(&self, lab: &Lab, host: &str) -> Result<Output, LabError> {
        self.controller_command(lab, host, "switchover", Duration::from_secs(10))
    }

    /// `controller status` of `host`.
    pub fn status(&self, lab: &Lab, host: &str) -> Result<String, LabError> {
        let out = self.controller_command(lab, host, "status", Duration::from_secs(5))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `controller COMMAND --socket SOCK` on `host`, talking to its running controller;
    /// killed after `timeout`.
    fn controller_command(
        &self,
        lab: &Lab,
        host: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<Output, LabError> {
        let bin = self.bins.controller.to_string_lossy().into_owned();
        let sock = self
            .control_socket(lab, host)
            .to_string_lossy()
            .into_owned();
        lab.exec(host, &[bin.as_str(), command, "--socket", &sock], timeout)
    }

    /// Starts `http-ping` against the VIP on the client, one request every `interval_ms`, with
    /// up to `parallel` in flight.
    pub fn start_http_ping(
        &self,
        lab: &mut Lab,
        interval_ms: u64,
        parallel: u32,
        log_name: &str,
    ) -> Result<Spawned, LabError> {
        self.start_http_ping_with(lab, interval_ms, parallel, None, log_name)
    }

    /// [`Pair::start_http_ping`], plus `keep_alive = Some((n, every_ms))`: `n` long-lived
    /// keep-alive connections, each sending a request every `every_ms`.
    pub fn start_http_ping_with(
        &self,
        lab: &mut Lab,
        interval_ms: u64,
        parallel: u32,
        keep_alive: Option<(u32, u64)>,
        log_name: &str,
    ) -> Result<Spawned, LabError> {
        let bin = self.bins.http_ping.to_string_lossy().into_owned();
        let url = format!("http://{VIP}:{HTTP_PORT}/");
        let iv = interval_ms.to_string();
        let par = parallel.to_string();
        let mut args: Vec<String> = [
            bin.as_str(),
            "--url",
            &url,
            "--interval-ms",
            &iv,
            "--connect-timeout-ms",
            "50",
            "--parallel",
            &par,
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((n, every)) = keep_alive {
            args.extend([
                "--keep-alive-connections".to_string(),
                n.to_string(),
                "--keep-alive-interval-ms".to_string(),
                every.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn("client", &args, log_name)
    }

    /// Stops an `http-ping` (SIGINT: it prints its summary) and returns its whole output.
    pub fn finish_http_ping(&self, lab: &mut Lab, p: &Spawned) -> Result<String, LabError> {
        lab.signal(p, Signal::Int);
        if lab.wait(p, Duration::from_secs(10)).is_none() {
            lab.stop(p);
        }
        fs::read_to_string(&p.log).map_err(|e| LabError::Io {
            what: format!("read {}", p.log.display()),
            source: e,
        })
    }

    /// The tails of the controllers' logs, for error messages.
    pub fn logs(&self, lab: &Lab) -> String {
        let mut s = String::new();
        for host in MEMBERS {
            let path = lab.state_dir().join(format!("{host}-controller.log"));
            let text = fs::read_to_string(&path).unwrap_or_default();
            s.push_str(&format!(
                "--- {host} controller ---\n{}\n",
                crate::cmd::tail(&text, 30)
            ));
        }
        s
    }
}
