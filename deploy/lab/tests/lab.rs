//! The lab built for real, in namespaces (root needed; CI runs as root). Every test has its
//! own prefix (`unique_prefix`), so they run in parallel, and a `Lab` (or a `DownGuard` for
//! kept labs) that takes everything down again when the test ends, passed or failed.
//!
//! The overlays here are the kernel's VXLAN driver everywhere (the benchmark's baseline);
//! the `Ours` path is exercised with `ovl-lab-fake-dataplane`, a stand-in that does what the
//! readiness check looks for but carries no traffic.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::unix::{fs::MetadataExt, net::UnixStream},
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use ovl_lab::{
    Ensured, HostSpec, Ipv4Cidr, Lab, LabError, LabSpec, Overlay, Signal, ping_matrix, state_dir,
    unique_prefix,
};

const T: Duration = Duration::from_secs(10);

fn require_root() {
    assert!(
        ovl_lab::is_root(),
        "the lab tests create network namespaces: run them as root (CI does)"
    );
}

/// Takes a lab down when dropped (for labs no `Lab` value owns: kept or failed ones).
struct DownGuard(String);

impl Drop for DownGuard {
    fn drop(&mut self) {
        if let Err(e) = Lab::down(&self.0) {
            eprintln!("cleanup of {}: {e}", self.0);
        }
    }
}

fn kernel_spec() -> LabSpec {
    require_root();
    LabSpec::seed_kernel(unique_prefix("t"))
}

fn namespaces_of(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn run(lab: &Lab, host: &str, args: &[&str]) -> String {
    let out = lab.exec(host, args, T).expect("exec");
    assert!(
        out.status.success(),
        "{host}: {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(lab: &Lab, host: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run(lab, host, args)).expect("JSON from ip/bridge")
}

/// The entry for `dst` in `host`'s neighbour table on `dev` (`ip -j neigh`).
fn neighbour(lab: &Lab, host: &str, dev: &str, dst: &str) -> serde_json::Value {
    let all = json(lab, host, &["ip", "-j", "neigh", "show", "dev", dev]);
    all.as_array()
        .expect("ip -j neigh: an array")
        .iter()
        .find(|n| n["dst"] == dst)
        .cloned()
        .unwrap_or_else(|| panic!("{host}: no neighbour {dst} on {dev}: {all}"))
}

/// Asserts that `host` learned `mac` on `vxlan10` behind the VTEP `dst`.
fn assert_learned_behind(lab: &Lab, host: &str, mac: &str, dst: &str) {
    let fdb = json(
        lab,
        host,
        &["bridge", "-j", "fdb", "show", "dev", "vxlan10"],
    );
    assert!(
        fdb.as_array()
            .expect("bridge -j fdb: an array")
            .iter()
            .any(|e| e["mac"] == mac && e["dst"] == dst),
        "{host}: {mac} not behind {dst}: {fdb}"
    );
}

/// Asserts that each of `hosts` pings every other one's overlay address.
fn assert_overlay_pings(lab: &Lab, hosts: &[&str]) {
    for from in hosts {
        for to in hosts {
            if from != to {
                let dst = lab.overlay_ip(to).expect("an overlay host");
                assert!(lab.ping(from, dst).expect("ping"), "{from} -> {to} ({dst})");
            }
        }
    }
}

/// `ping -M do` (no fragmentation) from `host`: `count` echoes of `size` bytes of payload to
/// `dst`, `wait` seconds each.
fn ping_unfragmented(lab: &Lab, host: &str, count: u32, wait: u32, size: u32, dst: &str) -> Output {
    let (count, wait, size) = (count.to_string(), wait.to_string(), size.to_string());
    lab.exec(
        host,
        &[
            "ping", "-n", "-q", "-c", &count, "-W", &wait, "-M", "do", "-s", &size, dst,
        ],
        T,
    )
    .expect("exec ping")
}

/// `host`'s data plane config as the lab wrote it.
fn dataplane_config(lab: &Lab, host: &str) -> toml::Table {
    fs::read_to_string(lab.config_path(host))
        .expect("read the data plane config")
        .parse()
        .expect("the data plane config is TOML")
}

/// pri's overlay address in the seed lab.
const PRI: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);

/// A TCP listener on pri's overlay address (any port), bound inside pri's namespace, and its
/// port.
fn listen_in_pri(lab: &Lab) -> (TcpListener, u16) {
    let listener = lab
        .in_ns("pri", || TcpListener::bind((PRI, 0)))
        .expect("enter pri")
        .expect("listen on pri's overlay address");
    let port = listener
        .local_addr()
        .expect("the listener's address")
        .port();
    (listener, port)
}

fn process_gone(pid: u32) -> bool {
    // A zombie still has a /proc entry; it counts as gone (it runs nothing).
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn every_host_pings_every_overlay_address() {
    let lab = Lab::up(&kernel_spec()).unwrap();
    let hosts = ["client", "pri", "sec"];
    assert_overlay_pings(&lab, &hosts);
    assert_eq!(lab.overlay_ip("sec"), Some(Ipv4Addr::new(192, 168, 0, 20)));
    // The underlay is routed by the fabric between different subnets.
    assert_eq!(lab.underlay_ip("sec"), Some(Ipv4Addr::new(10, 0, 3, 2)));
    assert!(lab.ping("client", lab.underlay_ip("sec").unwrap()).unwrap());
    // The kernel sized the overlay MTU from the underlay: 1500 - 50.
    let link = json(
        &lab,
        "client",
        &["ip", "-j", "link", "show", "dev", "vxlan10"],
    );
    assert_eq!(link[0]["mtu"], 1450);
    assert_eq!(link[0]["address"], "02:00:00:00:00:01");
    // No IPv6 chatter unless asked for: no IPv6 address anywhere (the sysctl reached the
    // namespace, not ours).
    for host in hosts {
        assert_eq!(run(&lab, host, &["ip", "-6", "-o", "addr"]), "", "{host}");
    }
    assert_eq!(run(&lab, "fabric", &["ip", "-6", "-o", "addr"]), "");
    assert_eq!(
        run(&lab, "fabric", &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    // The one-shot matrix agrees.
    let m = ping_matrix(lab.spec());
    assert_eq!(m.len(), 6);
    assert!(m.iter().all(|r| r.expected && r.answered), "{m:?}");
}

#[test]
fn arp_travels_only_over_the_overlay() {
    let lab = Lab::up(&kernel_spec()).unwrap();
    assert!(lab.ping("client", lab.overlay_ip("pri").unwrap()).unwrap());
    // The client resolved pri's overlay address on the VXLAN device, to pri's overlay MAC...
    let pri = neighbour(&lab, "client", "vxlan10", "192.168.0.10");
    assert_eq!(pri["lladdr"], "02:00:00:00:00:02");
    // ...learned behind pri's VTEP...
    assert_learned_behind(&lab, "client", "02:00:00:00:00:02", "10.0.2.2");
    // ...while on the underlay it only ever knows its gateway.
    let under = json(
        &lab,
        "client",
        &["ip", "-j", "neigh", "show", "dev", "eth0"],
    );
    for n in under.as_array().unwrap() {
        assert_eq!(n["dst"], "10.0.1.1", "underlay neighbour {n}");
    }
    // An L2 trick on the underlay fails: pretend pri's subnet is on-link and ARP for it.
    run(
        &lab,
        "client",
        &["ip", "route", "add", "10.0.2.0/24", "dev", "eth0"],
    );
    let out = lab
        .exec("client", &["ping", "-c", "1", "-W", "1", "10.0.2.2"], T)
        .unwrap();
    assert!(!out.status.success(), "pri answered over the underlay's L2");
    let entry = neighbour(&lab, "client", "eth0", "10.0.2.2");
    assert!(entry.get("lladdr").is_none(), "resolved over L2: {entry}");
    run(
        &lab,
        "client",
        &["ip", "route", "del", "10.0.2.0/24", "dev", "eth0"],
    );
    assert!(lab.ping("client", lab.underlay_ip("pri").unwrap()).unwrap());
}

#[test]
fn down_leaves_no_namespace_and_no_process() {
    let spec = kernel_spec();
    let prefix = spec.prefix.clone();
    let mut lab = Lab::up(&spec).unwrap();
    assert_eq!(namespaces_of(&prefix).len(), 4);
    let ours = lab.spawn("pri", &["sleep", "300"], "sleeper").unwrap();
    let router = lab
        .spawn("fabric", &["sleep", "300"], "router-sleeper")
        .unwrap();
    // A daemon the lab did not start (reparented away from us): found by namespace.
    run(
        &lab,
        "sec",
        &["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 &"],
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns("sec")])
        .output()
        .unwrap();
    let daemon: u32 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("the daemon runs in sec")
        .parse()
        .unwrap();
    assert!(!process_gone(daemon) && !process_gone(ours.pid) && !process_gone(router.pid));

    let started = Instant::now();
    Lab::down(&prefix).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(lab);
    assert!(namespaces_of(&prefix).is_empty());
    assert!(!state_dir(&prefix).exists());
    for pid in [ours.pid, router.pid, daemon] {
        assert!(process_gone(pid), "pid {pid} survived");
    }
    // Idempotent.
    Lab::down(&prefix).unwrap();
    assert!(Lab::status(&prefix).unwrap().contains("down"));
}

#[test]
fn dropping_the_lab_takes_it_down() {
    let spec = kernel_spec();
    let prefix = spec.prefix.clone();
    let mut lab = Lab::up(&spec).unwrap();
    let p = lab.spawn("client", &["sleep", "300"], "sleeper").unwrap();
    drop(lab);
    assert!(namespaces_of(&prefix).is_empty());
    assert!(!state_dir(&prefix).exists());
    assert!(process_gone(p.pid));
}

#[test]
fn two_labs_side_by_side() {
    let a = Lab::up(&kernel_spec()).unwrap();
    let b = Lab::up(&LabSpec {
        ipv6: true,
        ..kernel_spec()
    })
    .unwrap();
    assert_ne!(a.prefix(), b.prefix());
    let pri = Ipv4Addr::new(192, 168, 0, 10);
    assert!(a.ping("client", pri).unwrap());
    assert!(b.ping("client", pri).unwrap());
    // IPv6 where asked for: link-local addresses on the overlay, none in the other lab.
    let v6 = run(
        &b,
        "client",
        &["ip", "-6", "-o", "addr", "show", "dev", "vxlan10"],
    );
    assert!(v6.contains("fe80::"), "{v6}");
    assert_eq!(run(&a, "client", &["ip", "-6", "-o", "addr"]), "");
    let b_prefix = b.prefix().to_string();
    drop(b);
    assert!(namespaces_of(&b_prefix).is_empty());
    assert_eq!(namespaces_of(a.prefix()).len(), 4);
    assert!(a.ping("sec", pri).unwrap());
}

#[test]
fn up_again_replaces_the_old_lab_and_the_stale_handle_leaves_it_alone() {
    let spec = kernel_spec();
    let first = Lab::up(&spec).unwrap();
    let second = Lab::up(&spec).unwrap();
    assert_eq!(namespaces_of(&spec.prefix).len(), 4);
    drop(first);
    assert_eq!(namespaces_of(&spec.prefix).len(), 4);
    assert!(
        second
            .ping("client", Ipv4Addr::new(192, 168, 0, 20))
            .unwrap()
    );
}

#[test]
fn ensure_kept_is_idempotent_and_rebuilds_a_partial_lab() {
    let spec = kernel_spec();
    let _guard = DownGuard(spec.prefix.clone());
    let inode = |host: &str| {
        fs::metadata(format!("/run/netns/{}", spec.ns(host)))
            .unwrap()
            .ino()
    };
    assert_eq!(Lab::ensure_kept(&spec, &|_| {}).unwrap(), Ensured::Built);
    let before = inode("pri");
    assert_eq!(
        Lab::ensure_kept(&spec, &|_| {}).unwrap(),
        Ensured::AlreadyUp
    );
    assert_eq!(inode("pri"), before, "a healthy lab was rebuilt");

    // Break it: one host gone.
    let out = std::process::Command::new("ip")
        .args(["netns", "delete", &spec.ns("sec")])
        .output()
        .unwrap();
    assert!(out.status.success());
    match Lab::ensure_kept(&spec, &|_| {}).unwrap() {
        Ensured::Rebuilt(problems) => assert!(
            problems.iter().any(|p| p.contains(&spec.ns("sec"))),
            "{problems:?}"
        ),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(namespaces_of(&spec.prefix).len(), 4);
    assert_eq!(
        Lab::ensure_kept(&spec, &|_| {}).unwrap(),
        Ensured::AlreadyUp
    );

    // A different spec for the same prefix is rebuilt too.
    let wider = spec
        .clone()
        .with_host(HostSpec::new("extra", Overlay::None));
    assert!(matches!(
        Lab::ensure_kept(&wider, &|_| {}).unwrap(),
        Ensured::Rebuilt(_)
    ));
    assert_eq!(namespaces_of(&spec.prefix).len(), 5);
}

#[test]
fn a_bogus_dataplane_binary_fails_and_cleans_up() {
    require_root();
    let spec = LabSpec::seed(unique_prefix("t"), "/nonexistent/ovl-dataplane");
    let _guard = DownGuard(spec.prefix.clone());
    let err = Lab::up(&spec).unwrap_err();
    assert!(matches!(err, LabError::DataplaneNotReady { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("exited"), "{msg}");
    // The log tail: ip netns exec's complaint about the missing binary.
    assert!(msg.contains("/nonexistent/ovl-dataplane"), "{msg}");
    assert!(namespaces_of(&spec.prefix).is_empty());
    assert!(!state_dir(&spec.prefix).exists());
}

/// A script in a temporary directory, removed on drop.
struct Script(PathBuf);

impl Script {
    fn new(body: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(unique_prefix("ovl-lab-test"));
        fs::create_dir_all(&dir).expect("script directory");
        let path = dir.join("fake-dataplane.sh");
        fs::write(&path, body).expect("write the script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the script");
        Script(path)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn a_dataplane_that_never_gets_ready_times_out_with_its_log() {
    require_root();
    let pidfile = std::env::temp_dir().join(format!("{}.pid", unique_prefix("ovl-lab-test")));
    let script = Script::new(&format!(
        "#!/bin/sh\necho \"booting $*\"\necho $$ > {}\nexec sleep 60\n",
        pidfile.display()
    ));
    let mut spec = LabSpec::seed(unique_prefix("t"), &script.0);
    spec.ready_timeout = Duration::from_millis(1500);
    let _guard = DownGuard(spec.prefix.clone());
    let started = Instant::now();
    let err = Lab::up(&spec).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    let msg = err.to_string();
    assert!(msg.contains("still not ready"), "{msg}");
    assert!(msg.contains("no ovl0"), "{msg}");
    let config = format!(
        "booting run --config {}/pri.toml",
        state_dir(&spec.prefix).display()
    );
    assert!(msg.contains(&config), "{msg}");
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = fs::remove_file(&pidfile);
    assert!(process_gone(pid), "the stuck data plane survived");
    assert!(namespaces_of(&spec.prefix).is_empty());
}

fn fake_spec() -> LabSpec {
    require_root();
    LabSpec::seed(
        unique_prefix("t"),
        env!("CARGO_BIN_EXE_ovl-lab-fake-dataplane"),
    )
}

#[test]
fn ours_hosts_get_a_config_a_log_and_a_restart() {
    let spec = fake_spec();
    let mut lab = Lab::up(&spec).unwrap();
    assert_eq!(lab.overlay_dev("pri").as_deref(), Some("ovl0"));
    assert_eq!(lab.overlay_dev("client").as_deref(), Some("vxlan10"));

    let cfg = dataplane_config(&lab, "sec");
    assert_eq!(cfg["underlay"]["local_ip"].as_str(), Some("10.0.3.2"));
    let flood = cfg["vni"][0]["flood"].as_array().unwrap();
    assert_eq!(flood.len(), 2);
    assert_eq!(flood[0].as_str(), Some("10.0.1.2"));
    assert_eq!(flood[1].as_str(), Some("10.0.2.2"));

    // Ready means: ovl0 up with its address and MAC, and the control socket answers.
    let addr = json(&lab, "pri", &["ip", "-j", "addr", "show", "dev", "ovl0"]);
    assert_eq!(addr[0]["address"], "02:00:00:00:00:02");
    assert_eq!(addr[0]["addr_info"][0]["local"], "192.168.0.10");
    let mut answer = String::new();
    UnixStream::connect(lab.control_socket("pri"))
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(answer, "fake dataplane\n");
    assert!(
        lab.dataplane_log("pri")
            .unwrap()
            .contains("fake dataplane: ready")
    );

    // Killed: gone, and not restarted behind our back.
    let old = lab.dataplane_pid("pri").unwrap();
    lab.kill_dataplane("pri", Signal::Kill).unwrap();
    assert!(lab.wait_dataplane("pri", T).unwrap().is_some());
    assert_eq!(lab.dataplane_pid("pri"), None);
    assert!(process_gone(old));
    // Restarted (its stale ovl0 and socket are cleared first, so ready means the new one).
    lab.restart_dataplane("pri").unwrap();
    let new = lab.dataplane_pid("pri").unwrap();
    assert_ne!(new, old);
    let log = lab.dataplane_log("pri").unwrap();
    assert_eq!(log.matches("--- ovl-lab:").count(), 2, "{log}");
    assert_eq!(log.matches("fake dataplane: ready").count(), 2, "{log}");
    // A running one is restarted too (stopped gracefully first).
    lab.restart_dataplane("sec").unwrap();

    let status = Lab::status(lab.prefix()).unwrap();
    assert!(status.contains(&new.to_string()), "{status}");
    assert!(status.contains("ours/vxlan"), "{status}");

    // Data plane operations on a host without our data plane are refused.
    assert!(matches!(
        lab.kill_dataplane("client", Signal::Term),
        Err(LabError::NotOurs(_))
    ));
    assert!(matches!(
        lab.restart_dataplane("nobody"),
        Err(LabError::UnknownHost(_))
    ));
    let prefix = lab.prefix().to_string();
    drop(lab);
    assert!(process_gone(new));
    assert!(namespaces_of(&prefix).is_empty());
}

#[test]
fn status_shows_hosts_processes_and_isolation() {
    let spec = kernel_spec()
        .with_host(HostSpec::new(
            "vni20",
            Overlay::Kernel {
                vni: 20,
                port: 4789,
                addr: Ipv4Cidr::new(192, 168, 0, 30, 24),
            },
        ))
        .with_host(HostSpec::new(
            "port8472",
            Overlay::Kernel {
                vni: 10,
                port: 8472,
                addr: Ipv4Cidr::new(192, 168, 0, 40, 24),
            },
        ))
        .with_host(HostSpec::new("plain", Overlay::None));
    let mut lab = Lab::up(&spec).unwrap();
    let sleeper = lab.spawn("plain", &["sleep", "300"], "sleeper").unwrap();
    // Other VNI, other port: separate segments, nothing gets through.
    assert!(!lab.ping("client", Ipv4Addr::new(192, 168, 0, 30)).unwrap());
    assert!(!lab.ping("client", Ipv4Addr::new(192, 168, 0, 40)).unwrap());
    assert!(!lab.ping("vni20", Ipv4Addr::new(192, 168, 0, 10)).unwrap());
    // The underlay-only host still reaches everyone's underlay.
    assert!(
        lab.ping("plain", lab.underlay_ip("client").unwrap())
            .unwrap()
    );

    let s = Lab::status(lab.prefix()).unwrap();
    for ns in spec.namespaces() {
        assert!(s.contains(&ns), "{ns} missing from\n{s}");
    }
    assert!(s.contains(&format!("{}  sleep 300", sleeper.pid)), "{s}");
    assert!(s.contains("192.168.0.4/24"), "{s}");
    assert!(s.contains("vxlan20"), "{s}");
    // The matrix: rows after the `from \ to` header, one cell per overlay host.
    let rows: Vec<Vec<&str>> = s
        .lines()
        .skip_while(|l| !l.contains("from \\ to"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expect = [
        ["client", ".", "ok", "ok", "-", "-"],
        ["pri", "ok", ".", "ok", "-", "-"],
        ["sec", "ok", "ok", ".", "-", "-"],
        ["vni20", "-", "-", "-", ".", "-"],
        ["port8472", "-", "-", "-", "-", "."],
    ];
    assert_eq!(rows, expect, "{s}");
    assert!(lab.stop(&sleeper).is_some());
}

#[test]
fn in_netns_and_exec_run_inside_the_lab() {
    let lab = Lab::up(&kernel_spec()).unwrap();
    // A TCP conversation over the overlay with std sockets, one end in each namespace.
    let (listener, port) = listen_in_pri(&lab);
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(b"PRI\n").unwrap();
        peer
    });
    let got = lab
        .in_ns("client", || {
            let mut s = TcpStream::connect_timeout(&(PRI, port).into(), T)?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok::<_, std::io::Error>(buf)
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, "PRI\n");
    assert_eq!(server.join().unwrap().ip(), Ipv4Addr::new(192, 168, 0, 4));
    // Outside the lab that address does not exist.
    assert!(TcpListener::bind("192.168.0.10:0").is_err());

    let started = Instant::now();
    let err = lab
        .exec("client", &["sleep", "30"], Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(err, LabError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        lab.exec("nobody", &["true"], T),
        Err(LabError::UnknownHost(_))
    ));
    assert!(matches!(
        ovl_lab::in_netns("ovl-lab-no-such-namespace", || ()),
        Err(LabError::Setns { .. })
    ));
    assert!(
        lab.in_ns("fabric", || Path::new("/proc/self").exists())
            .unwrap()
    );
}

#[test]
fn orphaned_labs_are_taken_down_and_live_ones_are_not() {
    let orphan = kernel_spec();
    let _guard = DownGuard(orphan.prefix.clone());
    Lab::up(&orphan).unwrap().keep().unwrap();
    // Pretend its creator died: a pid above any pid_max.
    fs::write(state_dir(&orphan.prefix).join("owner"), "999999999 0 0").unwrap();
    let live = Lab::up(&kernel_spec()).unwrap();
    let done = Lab::down_orphans().unwrap();
    assert!(done.contains(&orphan.prefix), "{done:?}");
    assert!(!done.iter().any(|p| p == live.prefix()), "{done:?}");
    assert!(namespaces_of(&orphan.prefix).is_empty());
    assert_eq!(namespaces_of(live.prefix()).len(), 4);
}

/// `ethtool -k DEV` of `host`: is `tx-checksumming` on?
fn tx_checksumming(lab: &Lab, host: &str, dev: &str) -> bool {
    let out = run(lab, host, &["ethtool", "-k", dev]);
    let line = out
        .lines()
        .find(|l| l.starts_with("tx-checksumming:"))
        .unwrap_or_else(|| panic!("no tx-checksumming in ethtool -k {dev}:\n{out}"));
    line.contains(": on")
}

#[test]
fn kernel_tx_offload_is_kept_where_asked_and_kernel_peers_still_talk() {
    let spec = kernel_spec()
        .with_kernel_tx_offload("client")
        .with_kernel_tx_offload("pri");
    let lab = Lab::up(&spec).unwrap();
    assert!(tx_checksumming(&lab, "client", "vxlan10"));
    assert!(tx_checksumming(&lab, "pri", "vxlan10"));
    assert!(
        !tx_checksumming(&lab, "sec", "vxlan10"),
        "the lab's default: off"
    );
    // Partial checksums from the client's side reach pri's kernel intact: 4 MB of a known
    // pattern over TCP, compared byte by byte.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let (listener, port) = listen_in_pri(&lab);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let sent = data.clone();
    lab.in_ns("client", move || {
        let mut s = TcpStream::connect_timeout(&(PRI, port).into(), T)?;
        s.write_all(&sent)
    })
    .unwrap()
    .unwrap();
    let got = server.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the payload arrived altered");
    // The default hosts still reach the ones with offload on.
    assert!(lab.ping("sec", Ipv4Addr::new(192, 168, 0, 4)).unwrap());
}

fn ipv6_kernel_spec(underlay_mtu: u32) -> LabSpec {
    let mut spec = kernel_spec();
    spec.underlay_ipv6 = true;
    spec.underlay_mtu = underlay_mtu;
    spec
}

#[test]
fn kernel_vxlan_runs_over_an_ipv6_underlay() {
    let spec = ipv6_kernel_spec(9000);
    let lab = Lab::up(&spec).unwrap();
    let hosts = ["client", "pri", "sec"];
    let v6 = |h: &str| lab.underlay_ip6(h).unwrap();
    assert_eq!(v6("pri").to_string(), "fd00:0:2::2");
    assert_eq!(lab.vtep_ip("pri"), Some(v6("pri").into()));
    assert_eq!(lab.gateway_ip6("sec").unwrap().to_string(), "fd00:0:3::1");
    // The IPv6 underlay is routed by the fabric; the IPv4 one is still there.
    for from in hosts {
        for to in hosts {
            if from != to {
                assert!(lab.ping_ip(from, v6(to).into()).unwrap(), "{from} -> {to}");
            }
        }
    }
    assert!(lab.ping("client", lab.underlay_ip("sec").unwrap()).unwrap());
    assert_eq!(
        run(
            &lab,
            "fabric",
            &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]
        )
        .trim(),
        "1"
    );
    for (i, host) in hosts.iter().enumerate() {
        // VXLAN device on the IPv6 VTEP address, sized for the 70-byte IPv6 overhead.
        let detail = run(&lab, host, &["ip", "-d", "link", "show", "dev", "vxlan10"]);
        let local = format!("local {}", LabSpec::underlay_ip6_at(i));
        assert!(detail.contains(&local), "{host}: no `{local}` in\n{detail}");
        assert!(
            detail.contains("mtu 8930 "),
            "{host}: 9000 - 70 expected\n{detail}"
        );
        // The driver's IPv6 checksum defaults, which our data plane must interoperate with:
        // real UDP checksums sent, zero-checksum packets refused.
        assert!(
            detail.contains("noudp6zerocsumtx noudp6zerocsumrx"),
            "{host}: {detail}"
        );
        assert_eq!(spec.kernel_vxlan_mtu(), 8930);
        // Head-end replication to the others' IPv6 VTEPs.
        let fdb = json(
            &lab,
            host,
            &["bridge", "-j", "fdb", "show", "dev", "vxlan10"],
        );
        let flood: Vec<String> = fdb
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["mac"] == "00:00:00:00:00:00")
            .filter_map(|e| e["dst"].as_str().map(str::to_string))
            .collect();
        let want: Vec<String> = lab.vtep_peers(host).iter().map(|a| a.to_string()).collect();
        assert_eq!(flood, want, "{host}: {fdb}");
        assert!(want.iter().all(|a| a.starts_with("fd00:0:")), "{want:?}");
        // IPv6 only on the underlay: the overlay device has none (no chatter over it).
        assert_eq!(
            run(
                &lab,
                host,
                &["ip", "-6", "-o", "addr", "show", "dev", "vxlan10"]
            ),
            "",
            "{host}"
        );
    }
    // The overlay works over it.
    assert_overlay_pings(&lab, &hosts);
    // The client resolved pri's overlay address over the tunnel and learned pri's MAC behind
    // pri's IPv6 VTEP (so the encapsulated reply came from fd00:0:2::2).
    let pri = neighbour(&lab, "client", "vxlan10", "192.168.0.10");
    assert_eq!(pri["lladdr"], "02:00:00:00:00:02");
    assert_learned_behind(&lab, "client", "02:00:00:00:00:02", "fd00:0:2::2");
    // Jumbo frames: 8000 bytes of ICMP payload, no fragmentation, inside 8930.
    let out = ping_unfragmented(&lab, "client", 3, 2, 8000, "192.168.0.20");
    assert!(
        out.status.success(),
        "8000-byte ping over the IPv6 underlay: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One byte more than the overlay MTU allows is refused: 8930 really is the limit.
    let out = ping_unfragmented(&lab, "client", 1, 1, 8903, "192.168.0.20");
    assert!(!out.status.success(), "an 8931-byte packet left vxlan10");
}

#[test]
fn ipv6_underlay_follows_the_uplinks() {
    let mut spec = fake_spec();
    spec.underlay_ipv6 = true;
    spec.uplinks = 2;
    let lab = Lab::up(&spec).unwrap();
    let cfg = dataplane_config(&lab, "pri");
    assert_eq!(cfg["underlay"]["local_ip"].as_str(), Some("fd00:0:2::2"));
    let pri6 = lab.underlay_ip6("pri").unwrap();
    // Both uplinks carry the same IPv6 address.
    for dev in ["eth0", "eth1"] {
        let a = run(&lab, "pri", &["ip", "-6", "-o", "addr", "show", "dev", dev]);
        assert!(a.contains(&format!("{pri6}/64")), "{dev}: {a}");
    }
    // The router port the fabric sends pri's IPv6 traffic through, once it settles on
    // `want` (carrier changes reach the routes asynchronously); the last answer otherwise.
    let via = |lab: &Lab, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let r = json(
                lab,
                "fabric",
                &["ip", "-j", "-6", "route", "get", &pri6.to_string()],
            );
            let dev = r[0]["dev"].as_str().unwrap_or_default().to_string();
            if dev == want || Instant::now() > deadline {
                let routes = run(lab, "fabric", &["ip", "-6", "route"]);
                return (dev, routes);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let expect_via = |want: &str| {
        let (dev, routes) = via(&lab, want);
        assert_eq!(dev, want, "ip -6 route in the fabric:\n{routes}");
    };
    expect_via("to-pri");
    assert!(lab.ping_ip("client", pri6.into()).unwrap());
    // eth0 loses carrier: the router and pri both go over eth1.
    lab.set_uplink_carrier("pri", 0, false).unwrap();
    expect_via("tb-pri");
    assert!(lab.ping_ip("client", pri6.into()).unwrap());
    // Back: the router port kept its gateway address and the preferred route returns.
    lab.set_uplink_carrier("pri", 0, true).unwrap();
    let port = run(
        &lab,
        "fabric",
        &["ip", "-6", "-o", "addr", "show", "dev", "to-pri"],
    );
    assert!(port.contains("fd00:0:2::1/64"), "{port}");
    expect_via("to-pri");
    assert!(lab.ping_ip("client", pri6.into()).unwrap());
    // eth0 vanishes and comes back.
    lab.remove_uplink("pri", 0).unwrap();
    expect_via("tb-pri");
    assert!(lab.ping_ip("client", pri6.into()).unwrap());
    lab.add_uplink("pri", 0).unwrap();
    expect_via("to-pri");
    assert!(lab.ping_ip("client", pri6.into()).unwrap());
}
