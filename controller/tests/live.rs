//! Live tests (root): two controller processes in their own network namespaces, a client and
//! an attacker namespace, all joined by bridges in a fifth namespace. Every namespace, process
//! and file is created here with a unique name and removed by a guard, also on failure.
//!
//! ```text
//!           namespace br:  bridge u (underlay 10.77.0.0/24)   bridge o (overlay 192.168.77.0/24)
//!                               |        |        |             |        |        |
//!   namespace a:   u0 .1 -------'        |        |             `--- ovl0 .10     |
//!   namespace b:   u0 .2 ----------------'        |    ovl0 .20 -------'          |
//!   namespace x:   u0 .9 (attacker) --------------'                  client ovl0 .4
//! ```
//! VIP 192.168.77.200/24 and fd77::c8/64 on `ovl0` of the active member.

// Test helpers outside #[test] functions: clippy.toml's allow-unwrap-in-tests does not
// reach them, and a panic is the right failure here.
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use controller::{
    auth::Key,
    control::Status,
    fsm::{Flags, State},
    packet::Heartbeat,
};
use ovl_netlink::Netlink;

const BIN: &str = env!("CARGO_BIN_EXE_controller");
const VIP4: &str = "192.168.77.200";
const VIP6: &str = "fd77::c8";
const MAC_A: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x14];
const KEY: &[u8] = b"live test key, thirty-two bytes!";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the live tests create network namespaces: run them as root (CI does)"
    );
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = fs::File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// A netlink socket bound to namespace `ns` (usable from any thread afterwards).
fn netlink_in(ns: &str) -> Netlink {
    in_ns(ns, || Netlink::open().expect("netlink"))
}

struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    procs: Vec<(String, Child)>,
    dir: PathBuf,
    nl_a: Option<Netlink>,
    nl_b: Option<Netlink>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nl_a = None;
        self.nl_b = None;
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::thread::panicking() {
            // Keep the controllers' logs for the failure report.
            for name in ["a", "b"] {
                if let Ok(log) = fs::read_to_string(self.dir.join(format!("{name}.log"))) {
                    eprintln!("---- controller {name} log ----\n{log}");
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn new(preempt: bool) -> Lab {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("ctl{}n{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ctl-live-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            procs: Vec::new(),
            dir,
            nl_a: None,
            nl_b: None,
        };
        for role in ["br", "a", "b", "client", "x"] {
            let ns = lab.ns(role);
            sh(&["ip", "netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let br = lab.ns("br");
        for bridge in ["u", "o"] {
            sh(&["ip", "-n", &br, "link", "add", bridge, "type", "bridge"]);
            // No STP/forwarding delay: ports forward at once.
            sh(&[
                "ip",
                "-n",
                &br,
                "link",
                "set",
                bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ]);
            sh(&["ip", "-n", &br, "link", "set", bridge, "up"]);
        }
        // (bridge port in br, bridge, namespace, interface there, address, mac)
        type Port<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Option<[u8; 6]>);
        let ports: [Port; 6] = [
            ("ua", "u", "a", "u0", "10.77.0.1/24", None),
            ("ub", "u", "b", "u0", "10.77.0.2/24", None),
            ("ux", "u", "x", "u0", "10.77.0.9/24", None),
            ("oa", "o", "a", "ovl0", "192.168.77.10/24", Some(MAC_A)),
            ("ob", "o", "b", "ovl0", "192.168.77.20/24", Some(MAC_B)),
            ("oc", "o", "client", "ovl0", "192.168.77.4/24", None),
        ];
        for (port, bridge, role, ifname, addr, mac) in ports {
            let ns = lab.ns(role);
            sh(&[
                "ip", "-n", &br, "link", "add", port, "type", "veth", "peer", "name", ifname,
                "netns", &ns,
            ]);
            sh(&["ip", "-n", &br, "link", "set", port, "master", bridge, "up"]);
            if let Some(m) = mac {
                let m = ovl_netlink::format_mac(&m);
                sh(&["ip", "-n", &ns, "link", "set", ifname, "address", &m]);
            }
            sh(&["ip", "-n", &ns, "addr", "add", addr, "dev", ifname]);
            sh(&["ip", "-n", &ns, "link", "set", ifname, "up"]);
        }
        for (role, v6) in [
            ("a", "fd77::a/64"),
            ("b", "fd77::14/64"),
            ("client", "fd77::4/64"),
        ] {
            let ns = lab.ns(role);
            sh(&["ip", "-n", &ns, "addr", "add", v6, "dev", "ovl0", "nodad"]);
        }
        let key = lab.dir.join("key");
        fs::write(&key, KEY).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        for (role, prio, me, peer) in [
            ("a", 200, "10.77.0.1", "10.77.0.2"),
            ("b", 100, "10.77.0.2", "10.77.0.1"),
        ] {
            let cfg = format!(
                r#"
[node]
name = "{role}"
priority = {prio}
preempt = {preempt}
hold_down_ms = 1000
[peer]
address = "{peer}"
[heartbeat]
address = "{me}"
interval_ms = 10
multiplier = 3
key_file = "{key}"
[vip]
interface = "ovl0"
addresses = ["{VIP4}/24", "{VIP6}/64"]
garp_count = 3
garp_interval_ms = 5
[switchover]
timeout_ms = 1000
linger_ms = 20
[health]
underlay_interface = "u0"
[hooks]
notify = "echo \"$PREV_STATE $STATE $CAUSE\" >> {dir}/{role}.hooks"
[control]
socket = "{dir}/{role}.sock"
"#,
                key = key.display(),
                dir = lab.dir.display(),
            );
            fs::write(lab.dir.join(format!("{role}.toml")), cfg).unwrap();
        }
        lab.nl_a = Some(netlink_in(&lab.ns("a")));
        lab.nl_b = Some(netlink_in(&lab.ns("b")));
        lab
    }

    fn config(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.toml"))
    }

    fn socket(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.sock"))
    }

    fn start(&mut self, role: &str) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{role}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role), BIN, "run", "--config"])
            .arg(self.config(role))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start controller");
        self.procs.push((role.to_string(), child));
        // Ready when the control socket answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status(role).is_none() {
            assert!(
                Instant::now() < deadline,
                "controller {role} did not come up"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn child(&mut self, role: &str) -> Child {
        let i = self
            .procs
            .iter()
            .position(|(r, _)| r == role)
            .expect("running");
        self.procs.remove(i).1
    }

    /// SIGKILL; returns when the signal was sent (reaping the process can take a while:
    /// `ip netns exec` gave it a mount namespace whose teardown waits for RCU).
    fn kill9(&mut self, role: &str) -> Instant {
        let mut c = self.child(role);
        let t = Instant::now();
        c.kill().unwrap();
        c.wait().unwrap();
        t
    }

    fn status(&self, role: &str) -> Option<Status> {
        let out = Command::new(BIN)
            .args(["status", "--json", "--socket"])
            .arg(self.socket(role))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn nl(&self, role: &str) -> &Netlink {
        match role {
            "a" => self.nl_a.as_ref(),
            _ => self.nl_b.as_ref(),
        }
        .expect("netlink")
    }

    /// How many of the two VIPs `role` has (1 only while they are being added or removed).
    fn vip_count(&self, role: &str) -> usize {
        let v4: IpAddr = VIP4.parse().unwrap();
        let v6: IpAddr = VIP6.parse().unwrap();
        let addrs = self.nl(role).addrs(None).expect("addrs");
        addrs
            .iter()
            .filter(|a| a.addr == v4 || a.addr == v6)
            .count()
    }

    fn has_vip(&self, role: &str) -> bool {
        self.vip_count(role) == 2
    }

    /// Who holds the VIPs, in a settled state: never one VIP without the other.
    fn holders(&self) -> Vec<&'static str> {
        ["a", "b"]
            .into_iter()
            .filter(|r| {
                let n = self.vip_count(r);
                assert!(n == 0 || n == 2, "{r}: only one of the two VIPs");
                n == 2
            })
            .collect()
    }

    /// Polls every millisecond until `f` holds; the time it took.
    fn wait_for(&self, limit: Duration, what: &str, f: impl Fn(&Lab) -> bool) -> Duration {
        let t = Instant::now();
        loop {
            if f(self) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn switchover(&self, role: &str) -> Result<String, String> {
        let out = Command::new(BIN)
            .args(["switchover", "--socket"])
            .arg(self.socket(role))
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The client's neighbour entries for the VIPs (IPv4, IPv6).
    fn client_macs(&self) -> (Option<[u8; 6]>, Option<[u8; 6]>) {
        in_ns(&self.ns("client"), || {
            let nl = Netlink::open().unwrap();
            let ns = nl.neighbours(None).unwrap();
            let find = |ip: &str| {
                let ip: IpAddr = ip.parse().unwrap();
                ns.iter().find(|n| n.ip == ip).and_then(|n| n.mac)
            };
            (find(VIP4), find(VIP6))
        })
    }

    fn ping_from_client(&self) {
        let ns = self.ns("client");
        sh(&[
            "ip", "netns", "exec", &ns, "ping", "-c", "1", "-W", "2", VIP4,
        ]);
        sh(&[
            "ip", "netns", "exec", &ns, "ping", "-6", "-c", "1", "-W", "2", VIP6,
        ]);
    }
}

fn state(s: &Status) -> State {
    s.fsm.state
}

#[test]
fn vip_moves_by_switchover_kill_link_down_and_stop() {
    let mut lab = Lab::new(false);
    lab.start("a");
    lab.start("b");

    // Startup: exactly one owner, the higher priority.
    lab.wait_for(Duration::from_secs(3), "a to own the VIP", |l| {
        l.has_vip("a")
    });
    thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.holders(), ["a"]);
    assert_eq!(state(&lab.status("a").unwrap()), State::Active);
    assert_eq!(state(&lab.status("b").unwrap()), State::Backup);

    // The client learns the VIP at a.
    lab.ping_from_client();
    assert_eq!(lab.client_macs(), (Some(MAC_A), Some(MAC_A)));

    // Switchover run on the active member: returns when the VIP is on b only.
    let msg = lab.switchover("a").expect("switchover on a");
    assert!(msg.contains("handed to the peer"), "{msg}");
    assert_eq!(lab.holders(), ["b"]);
    // The gratuitous ARP and NA moved the client's entries to b's MAC.
    lab.wait_for(
        Duration::from_millis(100),
        "client to map the VIP to b",
        |l| l.client_macs() == (Some(MAC_B), Some(MAC_B)),
    );

    // Switchover run on the backup member (a): takes the VIP back.
    let msg = lab.switchover("a").expect("switchover on a (backup)");
    assert!(msg.contains("taken over"), "{msg}");
    // Done means b reported it let go (or b went silent for a detection time, which on a
    // starved CPU can happen: then b lets go as soon as it runs again).
    assert!(lab.has_vip("a"));
    lab.wait_for(Duration::from_millis(200), "b to let go", |l| {
        l.vip_count("b") == 0
    });
    assert_eq!(lab.holders(), ["a"]);
    lab.wait_for(
        Duration::from_millis(100),
        "client to map the VIP to a",
        |l| l.client_macs() == (Some(MAC_A), Some(MAC_A)),
    );

    // kill -9 of the active controller: b takes over within the detection time.
    thread::sleep(Duration::from_millis(100));
    let killed = lab.kill9("a");
    lab.wait_for(Duration::from_millis(500), "b to own the VIP", |l| {
        l.has_vip("b")
    });
    let took = killed.elapsed();
    println!("failover after kill -9: {took:?}");
    assert!(took <= Duration::from_millis(100), "failover took {took:?}");
    lab.wait_for(
        Duration::from_millis(100),
        "client to map the VIP to b",
        |l| l.client_macs() == (Some(MAC_B), Some(MAC_B)),
    );
    // a's dead controller left its VIP behind; a restarted controller removes it, and with
    // preemption off b keeps the VIP.
    assert!(lab.has_vip("a"));
    lab.start("a");
    lab.wait_for(Duration::from_secs(2), "a's leftover VIP removed", |l| {
        l.vip_count("a") == 0
    });
    thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.holders(), ["b"]);
    assert_eq!(state(&lab.status("a").unwrap()), State::Backup);

    // Status shows the counters.
    let s = lab.status("b").unwrap();
    let c = &s.counters;
    assert!(c.hb_sent > 50 && c.hb_received > 50, "{c:?}");
    assert!(
        c.garp_requests_sent >= 3 && c.garp_replies_sent >= 3 && c.na_sent >= 3,
        "{c:?}"
    );
    assert!(c.peer_restarts >= 1, "{c:?}");
    assert_eq!(c.forged + c.malformed + c.replayed, 0, "{c:?}");
    assert!(
        s.transitions.iter().any(|t| t.cause == "peer-dead"),
        "{:?}",
        s.transitions
    );
    let text = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(lab.socket("b"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "state       active",
        "GARP requests",
        "forged 0",
        "replayed 0",
        "peer-dead",
    ] {
        assert!(text.contains(want), "status lacks {want:?}:\n{text}");
    }
    // The hooks ran with the environment.
    let hooks = fs::read_to_string(lab.dir.join("b.hooks")).unwrap();
    assert!(hooks.contains("backup active peer-dead"), "{hooks}");

    // b's underlay link goes down: b faults at once (link watcher), a takes over after the
    // detection time (b's fault heartbeat cannot get out).
    let nsb = lab.ns("b");
    let t = Instant::now();
    sh(&["ip", "-n", &nsb, "link", "set", "u0", "down"]);
    lab.wait_for(Duration::from_millis(100), "b to drop the VIP", |l| {
        l.vip_count("b") == 0
    });
    lab.wait_for(Duration::from_millis(300), "a to own the VIP", |l| {
        l.has_vip("a")
    });
    println!("failover after link down: {:?}", t.elapsed());
    assert!(
        t.elapsed() <= Duration::from_millis(150),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(state(&lab.status("b").unwrap()), State::Fault);
    sh(&["ip", "-n", &nsb, "link", "set", "u0", "up"]);
    lab.wait_for(
        Duration::from_secs(2),
        "b back to backup, and a hearing it",
        |l| {
            l.status("b").is_some_and(|s| state(&s) == State::Backup)
                && l.status("a").is_some_and(|s| {
                    s.fsm
                        .peer
                        .is_some_and(|p| p.alive && p.state == State::Backup)
                })
        },
    );
    assert_eq!(lab.holders(), ["a"]);

    // SIGTERM to the active controller: it hands the VIP over, then exits cleanly.
    let mut a = lab.child("a");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = a.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "a did not stop");
        thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(lab.holders(), ["b"]);
    assert_eq!(state(&lab.status("b").unwrap()), State::Active);
    let s = lab.status("b").unwrap();
    assert_eq!(
        s.transitions.last().map(|t| t.cause.as_str()),
        Some("peer-released")
    );
}

#[test]
fn forged_and_replayed_heartbeats_from_a_third_namespace_change_nothing() {
    let mut lab = Lab::new(true);
    lab.start("a");
    lab.start("b");
    lab.wait_for(Duration::from_secs(3), "a to own the VIP", |l| {
        l.has_vip("a")
    });
    thread::sleep(Duration::from_millis(300));
    let before_a = lab.status("a").unwrap();
    let before_b = lab.status("b").unwrap();

    // From x: garbage, forgeries with a wrong key claiming a top-priority takeover, and
    // heartbeats with the right key but an old epoch (a replay of an earlier life of b).
    const EACH: u64 = 50;
    let sent = in_ns(&lab.ns("x"), move || {
        let sock = std::net::UdpSocket::bind("10.77.0.9:0").unwrap();
        let evil = Key::from_bytes(b"wrong key, but long enough").unwrap();
        let right = Key::from_bytes(KEY).unwrap();
        let mut sent = 0u64;
        for i in 0..EACH {
            for to in ["10.77.0.1:3785", "10.77.0.2:3785"] {
                let forged = Heartbeat {
                    state: State::Active,
                    flags: Flags {
                        release: true,
                        takeover: true,
                        vip_held: true,
                        draining: true,
                    },
                    priority: 255,
                    node_id: controller::node::node_id("x"),
                    interval_us: 10_000,
                    epoch: u64::MAX,
                    seq: i + 1,
                    term: u64::MAX,
                };
                let old = Heartbeat {
                    epoch: 1,
                    flags: Flags::default(),
                    ..forged
                };
                sock.send_to(&[0xde, 0xad, 0xbe, 0xef], to).unwrap();
                sock.send_to(&forged.encode(&evil), to).unwrap();
                sock.send_to(&old.encode(&right), to).unwrap();
                sent += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        sent
    });
    assert_eq!(sent, 2 * EACH);
    thread::sleep(Duration::from_millis(300));

    for (role, before) in [("a", &before_a), ("b", &before_b)] {
        let after = lab.status(role).unwrap();
        let (c0, c1) = (&before.counters, &after.counters);
        assert_eq!(c1.malformed - c0.malformed, EACH, "{role} malformed");
        assert_eq!(c1.forged - c0.forged, EACH, "{role} forged");
        assert_eq!(
            c1.replayed - c0.replayed,
            EACH,
            "{role} replayed (old epoch)"
        );
        assert_eq!(
            after.transitions, before.transitions,
            "{role}: no transition"
        );
        assert_eq!(after.fsm.state, before.fsm.state);
        assert_eq!(
            after.peer_epoch, before.peer_epoch,
            "{role}: the peer's epoch kept"
        );
    }
    assert_eq!(lab.holders(), ["a"]);
}
