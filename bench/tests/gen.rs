//! The AF_XDP generator on a real veth: a generator namespace and a peer namespace joined by
//! a veth pair (uniquely named, removed by a Drop guard even when a test fails). Checks that
//! what the generator counts as sent arrives at the peer, that a kernel VXLAN device
//! decapsulates every frame, that the frames on the wire are the templates, that pacing
//! holds its rate, and the binary's JSON, signals and argument errors.
//!
//! The tests that need namespaces fail without root (CI runs them as root); they take turns so
//! their rates do not disturb each other.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bench::traffic::{Encap, FrameSpec, GenConfig, GenError, GenReport, build_templates, run};
use ovl_lab::{CMD_TIMEOUT, in_netns, is_root, run_ok};

const GEN_IF: &str = "xg0";
const PEER_IF: &str = "xp0";
const GEN_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xc9, 0x00, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xc9, 0x00, 0x02];
const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// An inner destination MAC that is not the VXLAN device's: decapsulated frames are counted
/// by the device and then dropped as "other host", so nothing answers them.
const INNER_DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// The rate tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// These tests need root (namespaces, XDP); without it they fail, never skip, so a run that
/// did not exercise them cannot look green.
fn require_root() {
    assert!(
        is_root(),
        "the frame generator tests need root (namespaces, XDP): CI runs them as root"
    );
}

fn mac_text(m: [u8; 6]) -> String {
    ovl_lab::format_mac(m)
}

fn ip(args: &[&str]) -> String {
    let out = run_ok(Command::new("ip").args(args), CMD_TIMEOUT).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair, optionally with a kernel VXLAN device (VNI 10, port
/// 4789, local = the peer's veth address) in the peer. Dropping it deletes both namespaces
/// (and with them the veths and the VXLAN device).
struct Topo {
    gen_ns: String,
    peer_ns: String,
}

impl Topo {
    fn new(vxlan: bool) -> Topo {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // The guard exists before the first namespace does, so any failing step cleans up.
        let topo = Topo {
            gen_ns: format!("xgen{pid}-{n}-g"),
            peer_ns: format!("xgen{pid}-{n}-p"),
        };
        for ns in [&topo.gen_ns, &topo.peer_ns] {
            add_netns(ns);
            // No IPv6: no router solicitations or MLD reports on the link to miscount.
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &topo.gen_ns,
            "link",
            "add",
            GEN_IF,
            "address",
            &mac_text(GEN_MAC),
            "type",
            "veth",
            "peer",
            "name",
            PEER_IF,
            "address",
            &mac_text(PEER_MAC),
            "netns",
            &topo.peer_ns,
        ]);
        ip(&[
            "-n",
            &topo.gen_ns,
            "addr",
            "add",
            "10.201.0.1/24",
            "dev",
            GEN_IF,
        ]);
        ip(&[
            "-n",
            &topo.peer_ns,
            "addr",
            "add",
            "10.201.0.2/24",
            "dev",
            PEER_IF,
        ]);
        // The peer answers the frames with ICMP port unreachable; a permanent neighbour
        // saves it the ARP exchange, so the generator's frames are all the peer receives.
        ip(&[
            "-n",
            &topo.peer_ns,
            "neigh",
            "add",
            "10.201.0.1",
            "lladdr",
            &mac_text(GEN_MAC),
            "dev",
            PEER_IF,
            "nud",
            "permanent",
        ]);
        ip(&["-n", &topo.gen_ns, "link", "set", GEN_IF, "up"]);
        ip(&["-n", &topo.peer_ns, "link", "set", PEER_IF, "up"]);
        if vxlan {
            ip(&[
                "-n",
                &topo.peer_ns,
                "link",
                "add",
                "vxlan10",
                "type",
                "vxlan",
                "id",
                "10",
                "dstport",
                "4789",
                "local",
                "10.201.0.2",
                "nolearning",
            ]);
            ip(&["-n", &topo.peer_ns, "link", "set", "vxlan10", "up"]);
        }
        topo
    }

    fn peer_rx(&self, dev: &str) -> u64 {
        rx_packets(&self.peer_ns, dev)
    }

    /// Runs the library generator in the generator's namespace.
    fn run(
        &self,
        cfg: &GenConfig,
        spec: &FrameSpec,
        progress: impl FnMut(&GenReport) + Send,
    ) -> Result<GenReport, GenError> {
        let stop = AtomicBool::new(false);
        in_netns(&self.gen_ns, || run(cfg, spec, &stop, progress)).unwrap()
    }

    /// `ip netns exec GEN xdp-gen` with the topology's addresses and `extra` arguments.
    fn xdp_gen(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.gen_ns, env!("CARGO_BIN_EXE_xdp-gen")])
            .args(["--iface", GEN_IF, "--src-mac", &mac_text(GEN_MAC)])
            .args(["--dst-mac", &mac_text(PEER_MAC)])
            .args(["--src-ip", "10.201.0.1", "--dst-ip", "10.201.0.2"])
            .args(extra);
        cmd
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.peer_ns] {
            if fs::metadata(format!("/run/netns/{ns}")).is_ok() {
                let _ = run_ok(
                    Command::new("ip").args(["netns", "delete", ns]),
                    CMD_TIMEOUT,
                );
            }
        }
    }
}

/// `ip netns add`, taking the same lock as the lab: the first add on a machine makes
/// /run/netns a shared mount, and two doing that at once can hide a namespace.
fn add_netns(name: &str) {
    fs::create_dir_all(ovl_lab::STATE_ROOT).unwrap();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}/.netns.lock", ovl_lab::STATE_ROOT))
        .unwrap();
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    ip(&["netns", "add", name]);
}

/// RX packets of `dev` in `ns`, from `ip -s -j link`.
fn rx_packets(ns: &str, dev: &str) -> u64 {
    let text = ip(&["-j", "-s", "-n", ns, "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packets for {dev} in {text}"))
}

fn plain_spec() -> FrameSpec {
    FrameSpec::new(GEN_MAC, PEER_MAC, GEN_IP, PEER_IP)
}

fn vxlan_spec(vni: u32) -> FrameSpec {
    FrameSpec {
        encap: Encap::Vxlan { vni },
        dst_port: 4789,
        inner_dst_mac: INNER_DST_MAC,
        ..plain_spec()
    }
}

fn one_second(cfg_rate: Option<u64>) -> GenConfig {
    GenConfig {
        duration: Duration::from_secs(1),
        rate_pps: cfg_rate,
        ..GenConfig::new(GEN_IF)
    }
}

#[test]
fn full_speed_frames_reach_the_peer() {
    require_root();
    let _turn = serial();
    let topo = Topo::new(false);

    // A missing interface is a set-up error naming it.
    let err = topo
        .run(
            &GenConfig::new("xgmissing0"),
            &plain_spec(),
            |_: &GenReport| {},
        )
        .unwrap_err();
    assert!(
        matches!(&err, GenError::Setup { ifname, .. } if ifname == "xgmissing0"),
        "{err}"
    );

    let before = topo.peer_rx(PEER_IF);
    let r = topo.run(&one_second(None), &plain_spec(), |_| {}).unwrap();
    let got = topo.peer_rx(PEER_IF) - before;
    eprintln!(
        "plain 60-byte frames at full speed: sent {} in {:.3} s = {:.0} pps; peer veth received {got}",
        r.sent, r.seconds, r.pps
    );
    assert!(r.sent > 0, "{r:?}");
    assert!(r.submitted >= r.sent, "{r:?}");
    assert_eq!(r.tx_invalid, 0, "{r:?}");
    assert_eq!(r.bytes, r.sent * 60, "{r:?}");
    assert!((0.95..1.3).contains(&r.seconds), "{r:?}");
    assert!((r.pps - r.sent as f64 / r.seconds).abs() < 1.0, "{r:?}");
    assert!(
        got as f64 >= 0.95 * r.sent as f64,
        "peer got {got} of {r:?}"
    );
    // Nothing else crosses the link (no IPv6), so the peer never sees more than was sent.
    assert!(got <= r.submitted, "peer got {got} of {r:?}");
}

#[test]
fn kernel_vxlan_device_decapsulates_every_frame() {
    require_root();
    let _turn = serial();
    let topo = Topo::new(true);

    // The wrong VNI reaches the veth but not the VXLAN device: its counter means something.
    let (veth0, vx0) = (topo.peer_rx(PEER_IF), topo.peer_rx("vxlan10"));
    let cfg = GenConfig {
        duration: Duration::from_millis(200),
        rate_pps: Some(2000),
        ..GenConfig::new(GEN_IF)
    };
    let r = topo.run(&cfg, &vxlan_spec(11), |_| {}).unwrap();
    assert!(r.sent > 0, "{r:?}");
    assert!(topo.peer_rx(PEER_IF) - veth0 >= r.sent * 95 / 100);
    assert_eq!(
        topo.peer_rx("vxlan10"),
        vx0,
        "VNI 11 must not reach vxlan10"
    );

    let (veth0, vx0) = (topo.peer_rx(PEER_IF), topo.peer_rx("vxlan10"));
    let r = topo
        .run(&one_second(None), &vxlan_spec(10), |_| {})
        .unwrap();
    let veth = topo.peer_rx(PEER_IF) - veth0;
    let vx = topo.peer_rx("vxlan10") - vx0;
    eprintln!(
        "VXLAN (110-byte outer, 60-byte inner) into the kernel vxlan device at full speed: \
         sent {} in {:.3} s = {:.0} pps; peer veth received {veth}, vxlan10 decapsulated {vx}",
        r.sent, r.seconds, r.pps
    );
    assert!(r.sent > 0, "{r:?}");
    assert_eq!(r.tx_invalid, 0, "{r:?}");
    assert_eq!(r.bytes, r.sent * 110, "{r:?}");
    assert!(
        veth as f64 >= 0.95 * r.sent as f64,
        "veth got {veth} of {r:?}"
    );
    assert!(
        vx as f64 >= 0.95 * r.sent as f64,
        "vxlan10 got {vx} of {r:?}"
    );
    assert!(vx <= veth, "vxlan10 {vx} > veth {veth}");
}

/// An AF_PACKET socket on `ifname` (in the calling thread's namespace) with a receive timeout.
fn packet_socket(ifname: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation; the descriptor is checked and owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    assert!(raw >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = CString::new(ifname).unwrap();
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 300_000,
    };
    // SAFETY: a timeval of the right size for SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    fd
}

/// The next frame the interface received (not one it sent), or None after the timeout.
fn recv_incoming(fd: &OwnedFd) -> Option<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; 2048];
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are valid for the sizes passed.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return None;
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        buf.truncate(n as usize);
        return Some(buf);
    }
}

#[test]
fn frames_on_the_wire_are_the_templates_in_turn() {
    require_root();
    let _turn = serial();
    let topo = Topo::new(false);
    let spec = vxlan_spec(10);
    let templates: HashSet<Vec<u8>> = build_templates(&spec).unwrap().into_iter().collect();
    assert_eq!(templates.len(), 64);
    let capture = in_netns(&topo.peer_ns, || packet_socket(PEER_IF)).unwrap();
    let cfg = GenConfig {
        duration: Duration::from_millis(1200),
        rate_pps: Some(2000),
        ..GenConfig::new(GEN_IF)
    };
    let mut progress = Vec::new();
    let r = topo.run(&cfg, &spec, |p| progress.push(p.clone())).unwrap();
    // One progress call after about a second, with the running totals.
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert!((0.99..1.2).contains(&progress[0].seconds), "{progress:?}");
    assert!(
        progress[0].sent > 1500 && progress[0].sent <= r.sent,
        "{progress:?}"
    );

    let mut ours = Vec::new();
    while ours.len() < 200 {
        let Some(frame) = recv_incoming(&capture) else {
            break;
        };
        // From the generator and IPv4 (the kernel's own frames would be ARP).
        if frame.get(6..12) == Some(&GEN_MAC[..]) && frame.get(12..14) == Some(&[8, 0][..]) {
            ours.push(frame);
        }
    }
    assert!(
        ours.len() >= 128,
        "captured only {} frames of {r:?}",
        ours.len()
    );
    for f in &ours {
        assert!(templates.contains(f), "not a template: {f:02x?}");
    }
    // Frames (and so templates) take turns: any 64 in a row cover every source port.
    for w in ours.windows(64).step_by(16) {
        let distinct: HashSet<&Vec<u8>> = w.iter().collect();
        assert_eq!(distinct.len(), 64);
    }
}

/// Waits for `child` up to `timeout`; kills it if it does not exit.
fn wait_output(mut child: std::process::Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "xdp-gen did not exit within {timeout:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The one JSON object the binary prints with --json.
fn json_report(out: &Output) -> GenReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout}");
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn paced_binary_run_holds_its_rate() {
    require_root();
    let _turn = serial();
    let topo = Topo::new(false);
    let before = topo.peer_rx(PEER_IF);
    let child = topo
        .xdp_gen(&["--rate", "10000", "--duration-ms", "1000", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = json_report(&wait_output(child, Duration::from_secs(10)));
    let got = topo.peer_rx(PEER_IF) - before;
    eprintln!(
        "paced at 10000 pps for 1 s: sent {} in {:.3} s; peer got {got}",
        r.sent, r.seconds
    );
    assert!((8_500..=11_500).contains(&r.sent), "{r:?}");
    assert!(
        got as f64 >= 0.95 * r.sent as f64,
        "peer got {got} of {r:?}"
    );
    assert!((0.95..1.3).contains(&r.seconds), "{r:?}");
}

#[test]
fn sigint_ends_the_run_with_a_report() {
    require_root();
    let _turn = serial();
    let topo = Topo::new(false);
    // A long paced run (`ip netns exec` execs the generator, so the pid is its own).
    let child = topo
        .xdp_gen(&["--rate", "20000", "--duration-ms", "60000", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = wait_output(child, Duration::from_secs(5));
    let r = json_report(&out);
    assert!(r.sent > 10_000 && r.seconds < 5.0, "{r:?}");
    // Progress went to stderr, one line a second.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("xdp-gen:") && l.contains("sent")),
        "stderr: {stderr}"
    );
}

#[test]
fn bad_arguments_give_one_line_errors() {
    let bin = env!("CARGO_BIN_EXE_xdp-gen");
    let base = [
        "--iface",
        "xg0",
        "--src-mac",
        "02:00:00:00:00:01",
        "--dst-mac",
        "02:00:00:00:00:02",
        "--src-ip",
        "10.0.0.1",
        "--dst-ip",
        "10.0.0.2",
    ];
    for (extra, expect) in [
        (
            &["--encap", "vxlan"][..],
            "xdp-gen: error: --vni is needed with --encap vxlan",
        ),
        (
            &["--encap", "geneve"][..],
            "xdp-gen: error: --vni is needed with --encap geneve",
        ),
        (
            &["--frame-len", "20"][..],
            "xdp-gen: error: --frame-len: frame length 20 is out of range",
        ),
        (
            &["--inner-dst-ip", "1.2.3.4"][..],
            "xdp-gen: error: --inner-* options need --encap vxlan or --encap geneve",
        ),
    ] {
        let out = Command::new(bin).args(base).args(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        assert!(stderr.starts_with(expect), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    // A malformed value is refused by the parser, naming the option.
    let out = Command::new(bin)
        .args(["--iface", "xg0", "--src-mac", "02:00:00:00:00"])
        .args(&base[4..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--src-mac"));
}
