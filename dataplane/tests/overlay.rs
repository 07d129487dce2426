//! The data path end to end, on the lab topology (each test its own namespaces): a stock
//! kernel VXLAN peer against our data plane, our data plane against itself over VXLAN and
//! GENEVE (checked by tshark's dissector), bad input under load, and the daemon's life cycle.
//! Root required (CI runs as root).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{eth, ipv4, require_root, udp};
use dataplane::stats::Snapshot;
use ovl_lab::{
    DatapathMode, Encap, GeneveOption, HostSpec, Ipv4Cidr, Lab, LabSpec, Overlay, Signal, in_netns,
};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_dataplane");
const T: Duration = Duration::from_secs(20);
const MB: usize = 1024 * 1024;

/// Runs a lab test once in each `[datapath] mode`, as two tests (`NAME::xdp`, `NAME::afxdp`):
/// both modes are first class.
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            #[test]
            fn xdp() {
                super::$name(ovl_lab::DatapathMode::Xdp)
            }
            #[test]
            fn afxdp() {
                super::$name(ovl_lab::DatapathMode::Afxdp)
            }
        }
    };
}

fn client_and_pri(tag: &str, port: u16, mode: DatapathMode) -> LabSpec {
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix(tag), BIN).with_mode(mode);
    spec.hosts.retain(|h| h.name != "sec");
    spec.with_overlay(
        "client",
        Overlay::Kernel {
            vni: 10,
            port,
            addr: Ipv4Cidr::new(192, 168, 0, 4, 24),
        },
    )
    .with_overlay(
        "pri",
        Overlay::Ours {
            vni: 10,
            encap: Encap::Vxlan,
            port,
            addr: Ipv4Cidr::new(192, 168, 0, 10, 24),
            geneve_option: None,
        },
    )
}

fn stats(lab: &Lab, host: &str) -> Snapshot {
    let sock = lab.control_socket(host);
    let out = lab
        .exec(
            host,
            &[
                BIN,
                "stats",
                "--json",
                "--socket",
                sock.to_str().expect("utf-8 path"),
            ],
            T,
        )
        .expect("run dataplane stats");
    assert!(
        out.status.success(),
        "dataplane stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

fn sh(lab: &Lab, host: &str, args: &[&str]) -> (bool, String) {
    let out = lab.exec(host, args, T).expect("exec");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Deterministic bytes (xorshift), so sender and receiver need not share a buffer.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Sends `bytes` over TCP from `from` to `dst:port` in `to`, and returns (bytes received,
/// receiver's SHA-256, sender's SHA-256).
fn tcp_transfer(
    lab: &Lab,
    from: &str,
    to: &str,
    dst: Ipv4Addr,
    port: u16,
    bytes: usize,
) -> (usize, Vec<u8>, Vec<u8>) {
    let to_ns = lab.ns(to);
    let from_ns = lab.ns(from);
    let server = thread::spawn(move || {
        in_netns(&to_ns, move || {
            let l = TcpListener::bind((dst, port)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let deadline = Instant::now() + T;
            let (mut s, _) = loop {
                match l.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "no connection within {T:?}");
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            s.set_nonblocking(false).expect("blocking");
            s.set_read_timeout(Some(T)).expect("timeout");
            let mut h = Sha256::new();
            let mut n = 0;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        h.update(&buf[..k]);
                        n += k;
                    }
                    Err(e) => panic!("read after {n} bytes: {e}"),
                }
            }
            (n, h.finalize().to_vec())
        })
        .expect("server namespace")
    });
    let sent = in_netns(&from_ns, move || {
        let addr = SocketAddr::from((dst, port));
        let deadline = Instant::now() + T;
        let mut s = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "connect {addr}: {e}");
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        s.set_write_timeout(Some(T)).expect("timeout");
        let mut h = Sha256::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ bytes as u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let k = left.min(buf.len());
            fill(&mut buf[..k], &mut state);
            s.write_all(&buf[..k]).expect("write");
            h.update(&buf[..k]);
            left -= k;
        }
        s.shutdown(Shutdown::Write).expect("shutdown");
        h.finalize().to_vec()
    })
    .expect("client namespace");
    let (n, got) = server.join().expect("server thread");
    (n, got, sent)
}

fn assert_transfer(lab: &Lab, from: &str, to: &str, dst: Ipv4Addr, port: u16, bytes: usize) {
    let t0 = Instant::now();
    let (n, got, sent) = tcp_transfer(lab, from, to, dst, port, bytes);
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{from} -> {to}: {} MB in {secs:.2} s ({:.0} Mbit/s)",
        n / MB,
        n as f64 * 8.0 / secs / 1e6
    );
    assert_eq!(n, bytes, "{from} -> {to}: bytes received");
    assert_eq!(got, sent, "{from} -> {to}: SHA-256 of what arrived");
}

/// `ping -M do` (DF set) of `size` payload bytes, `count` echoes 200 ms apart.
/// The bulk of a transfer (`bytes` each way at least) went where `mode` says: the fast path
/// in "xdp" mode, the workers in "afxdp" mode (which has no fast path at all).
fn assert_mode_carried(s: &Snapshot, mode: DatapathMode, bytes: u64) {
    let fast = s
        .fast
        .iter()
        .fold((0, 0), |a, p| (a.0 + p.rx_bytes, a.1 + p.tx_bytes));
    let workers = s
        .queues
        .iter()
        .flat_map(|q| q.ports.iter())
        .fold((0, 0), |a, p| (a.0 + p.rx_bytes, a.1 + p.tx_bytes));
    match mode {
        DatapathMode::Xdp => assert!(
            fast.0 > bytes && fast.1 > bytes,
            "the fast path carried it both ways: fast {fast:?}, workers {workers:?}\n{}",
            s.render_text()
        ),
        DatapathMode::Afxdp => {
            assert_eq!(fast, (0, 0), "no fast path in afxdp mode");
            assert!(
                workers.0 > bytes && workers.1 > bytes,
                "the workers carried it both ways: {workers:?}"
            );
        }
    }
}

fn ping_df(lab: &Lab, host: &str, size: u16, count: u8, dst: &str) -> (bool, String) {
    let (size, count) = (size.to_string(), count.to_string());
    let args = [
        "ping", "-M", "do", "-s", &size, "-c", &count, "-i", "0.2", "-W", "2", dst,
    ];
    sh(lab, host, &args)
}

fn neighbour_mac(lab: &Lab, host: &str, dev: &str, ip: &str) -> Option<String> {
    let (_, text) = sh(lab, host, &["ip", "neigh", "show", ip, "dev", dev]);
    text.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

both_modes!(kernel_vxlan_client_and_our_pri_interoperate);
fn kernel_vxlan_client_and_our_pri_interoperate(mode: DatapathMode) {
    require_root();
    let lab = Lab::up(&client_and_pri("ka", 4789, mode)).expect("lab up");
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);

    // ARP across the overlay, both ways, then ping both ways.
    assert!(lab.ping("client", pri_ip).expect("ping"), "client -> pri");
    assert!(lab.ping("pri", client_ip).expect("ping"), "pri -> client");
    let pri_mac = lab.overlay_mac("pri").map(ovl_lab::format_mac);
    assert_eq!(
        neighbour_mac(&lab, "client", "vxlan10", "192.168.0.10"),
        pri_mac,
        "client resolved pri's overlay MAC by ARP through the overlay"
    );
    assert!(
        neighbour_mac(&lab, "pri", "ovl0", "192.168.0.4").is_some(),
        "pri resolved the client by ARP"
    );

    // 50 MB each way, checked end to end.
    assert_transfer(&lab, "client", "pri", pri_ip, 5001, 50 * MB);
    assert_transfer(&lab, "pri", "client", client_ip, 5002, 50 * MB);

    let s = stats(&lab, "pri");
    let vni = &s.per_vni()[0];
    assert_eq!(vni.vni, 10);
    assert!(vni.rx_bytes > 50 * MB as u64, "rx bytes counted: {vni:?}");
    assert!(vni.tx_bytes > 50 * MB as u64, "tx bytes counted: {vni:?}");
    assert!(s.fdb_learned >= 1, "the client's MAC was learned");
    assert_mode_carried(&s, mode, 40 * MB as u64);
    assert_eq!(
        s.total_drops(),
        0,
        "no drops on clean traffic:\n{}\n{}",
        s.render_text(),
        lab.dataplane_log("pri").unwrap_or_default()
    );

    // Too big with DF: refused locally with the same MTU as the kernel driver's.
    let (ok_k, kernel) = ping_df(&lab, "client", 1423, 1, "192.168.0.10");
    let (ok_o, ours) = ping_df(&lab, "pri", 1423, 1, "192.168.0.4");
    assert!(!ok_k && !ok_o, "1423 + 28 > 1450 must fail on both sides");
    assert!(kernel.contains("mtu=1450"), "kernel driver: {kernel}");
    assert!(ours.contains("mtu=1450"), "our overlay port: {ours}");
    let (ok, _) = ping_df(&lab, "pri", 1422, 1, "192.168.0.4");
    assert!(ok, "exactly the overlay MTU passes");

    // A misconfigured larger MTU on pri's kernel side (the kernel driver refuses such an MTU
    // on its device): the oversized DF packet reaches the egress program, which drops and
    // counts it and, as the kernel's tunnel drivers do on a PMTU shortfall, answers with ICMP
    // "fragmentation needed", so the sender learns the overlay MTU.
    let before = stats(&lab, "pri");
    for dev in ["ovl0", "ovl0-dp"] {
        let (ok, text) = sh(&lab, "pri", &["ip", "link", "set", dev, "mtu", "1500"]);
        assert!(ok, "{text}");
    }
    let (ok, ours) = ping_df(&lab, "pri", 1472, 2, "192.168.0.4");
    assert!(
        !ok,
        "an inner packet over the overlay MTU must not get through"
    );
    assert!(
        ours.contains("Frag needed") && ours.contains("mtu = 1450"),
        "the sender is told the overlay MTU: {ours}"
    );
    let after = stats(&lab, "pri");
    let dropped = after.xdp_counter("drop_tx_too_big") - before.xdp_counter("drop_tx_too_big");
    let told: u64 = after.queues.iter().map(|q| q.icmp_frag_needed).sum::<u64>()
        - before
            .queues
            .iter()
            .map(|q| q.icmp_frag_needed)
            .sum::<u64>();
    assert!(
        dropped >= 1,
        "the oversized frame counted as drop_tx_too_big"
    );
    assert_eq!(told, dropped, "one ICMP answer per oversized DF frame");

    // The Prometheus endpoint serves the same counters.
    let addr: SocketAddr = lab_prometheus(&lab, "pri");
    let body = lab
        .in_ns("pri", move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        })
        .expect("in pri");
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(
        body.contains(&format!(
            "ovl_xdp_packets_total{{outcome=\"drop_tx_too_big\"}} {}",
            after.xdp_counter("drop_tx_too_big")
        )),
        "metrics carry the drop"
    );
    assert!(body.contains("ovl_vni_packets_total{vni=\"10\",queue=\"0\",direction=\"rx\"}"));
}

fn lab_prometheus(lab: &Lab, host: &str) -> SocketAddr {
    let text = std::fs::read_to_string(lab.config_path(host)).expect("config");
    let cfg = dataplane::config::Config::parse(&text).expect("lab config parses");
    cfg.stats
        .prometheus
        .expect("the lab configures a Prometheus endpoint")
}

both_modes!(port_8472_interoperates_and_other_vnis_see_nothing);
fn port_8472_interoperates_and_other_vnis_see_nothing(mode: DatapathMode) {
    require_root();
    // The Linux driver's historical port, and a kernel peer on VNI 20 that must stay isolated.
    let spec = client_and_pri("k8", 8472, mode).with_host(HostSpec::new(
        "other",
        Overlay::Kernel {
            vni: 20,
            port: 8472,
            addr: Ipv4Cidr::new(192, 168, 0, 30, 24),
        },
    ));
    let lab = Lab::up(&spec).expect("lab up");
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );
    assert_transfer(
        &lab,
        "client",
        "pri",
        Ipv4Addr::new(192, 168, 0, 10),
        5003,
        8 * MB,
    );

    // Point the VNI 20 peer at pri by hand: its frames carry a VNI pri does not serve.
    let pri_vtep = lab.underlay_ip("pri").expect("pri").to_string();
    let (ok, text) = sh(
        &lab,
        "other",
        &[
            "bridge",
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vxlan20",
            "dst",
            &pri_vtep,
        ],
    );
    assert!(ok, "{text}");
    let before = stats(&lab, "pri");
    let (ok, _) = sh(
        &lab,
        "other",
        &["ping", "-c", "4", "-i", "0.5", "-W", "1", "192.168.0.10"],
    );
    assert!(!ok, "a peer on VNI 20 must not reach VNI 10");
    // Broadcasts on VNI 10 (the client's ARP) must not reach the VNI 20 peer either.
    let (_, rx_before) = sh(
        &lab,
        "other",
        &["cat", "/sys/class/net/vxlan20/statistics/rx_packets"],
    );
    sh(&lab, "client", &["ip", "neigh", "flush", "dev", "vxlan10"]);
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );
    let after = stats(&lab, "pri");
    let unknown = after.xdp_counter("drop_unknown_vni") - before.xdp_counter("drop_unknown_vni");
    // The peer never resolves pri's MAC, so what it sends are its ARP retries (one a second).
    assert!(
        unknown >= 2,
        "VNI 20 frames counted as unknown VNI drops ({unknown})"
    );
    let (_, rx_after) = sh(
        &lab,
        "other",
        &["ip", "-s", "-j", "link", "show", "vxlan20"],
    );
    let rx: u64 = serde_json::from_str::<serde_json::Value>(&rx_after)
        .ok()
        .and_then(|v| v[0]["stats64"]["rx"]["packets"].as_u64())
        .expect("vxlan20 rx counter");
    let _ = rx_before;
    assert_eq!(rx, 0, "the VNI 20 peer received nothing");
}

both_modes!(our_pri_and_sec_talk_vxlan_and_geneve_and_tshark_agrees);
fn our_pri_and_sec_talk_vxlan_and_geneve_and_tshark_agrees(mode: DatapathMode) {
    require_root();
    let opt = GeneveOption {
        class: 0x0102,
        typ: 0x05,
        data: [0x0a, 0x0b, 0x0c, 0x0d],
    };
    for (encap, port, option) in [(Encap::Vxlan, 4789, None), (Encap::Geneve, 6081, Some(opt))] {
        let mut spec = LabSpec::seed(ovl_lab::unique_prefix("ps"), BIN).with_mode(mode);
        spec.hosts.retain(|h| h.name != "client");
        for (name, d) in [("pri", 10), ("sec", 20)] {
            spec = spec.with_overlay(
                name,
                Overlay::Ours {
                    vni: 10,
                    encap,
                    port,
                    addr: Ipv4Cidr::new(192, 168, 0, d, 24),
                    geneve_option: option,
                },
            );
        }
        let mut lab = Lab::up(&spec).expect("lab up");
        let pcap = lab.state_dir().join("underlay.pcap");
        let pcap_s = pcap.to_str().expect("path").to_string();
        let cap = lab
            // On the fabric: XDP takes frames before any capture tap on the hosts themselves.
            .spawn(
                "fabric",
                &[
                    "tcpdump",
                    "-i",
                    "to-sec",
                    "-n",
                    "-U",
                    "-w",
                    &pcap_s,
                    "-c",
                    "20",
                    "udp",
                    "port",
                    &port.to_string(),
                ],
                "tcpdump",
            )
            .expect("tcpdump");
        thread::sleep(Duration::from_millis(500));
        assert!(
            lab.ping("pri", Ipv4Addr::new(192, 168, 0, 20))
                .expect("ping")
        );
        assert_transfer(
            &lab,
            "pri",
            "sec",
            Ipv4Addr::new(192, 168, 0, 20),
            5004,
            20 * MB,
        );
        assert_transfer(
            &lab,
            "sec",
            "pri",
            Ipv4Addr::new(192, 168, 0, 10),
            5005,
            20 * MB,
        );
        let _ = lab.wait(&cap, Duration::from_secs(5));
        lab.stop(&cap);
        if encap == Encap::Geneve {
            let out = std::process::Command::new("tshark")
                .args([
                    "-r",
                    &pcap_s,
                    "-d",
                    &format!("udp.port=={port},geneve"),
                    "-T",
                    "fields",
                ])
                .args([
                    "-e",
                    "geneve.vni",
                    "-e",
                    "geneve.option.class",
                    "-e",
                    "geneve.option.type",
                ])
                .args([
                    "-e",
                    "geneve.option.length",
                    "-e",
                    "geneve.proto_type",
                    "-e",
                    "geneve.flags.critical",
                ])
                .output()
                .expect("run tshark");
            let text = String::from_utf8_lossy(&out.stdout);
            eprintln!(
                "tshark ({} bytes of capture):\n{text}\n{}\ntcpdump: {}",
                std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(lab.state_dir().join("tcpdump.log")).unwrap_or_default()
            );
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(lines.len() >= 10, "tshark decoded GENEVE frames: {text}");
            for l in lines {
                let f: Vec<&str> = l.split('\t').collect();
                // tshark prints hex with a 0x prefix; a field seen twice is comma-joined.
                let num = |i: usize| -> u64 {
                    let v = f
                        .get(i)
                        .copied()
                        .unwrap_or("")
                        .split(',')
                        .next()
                        .unwrap_or("");
                    match v.strip_prefix("0x") {
                        Some(h) => u64::from_str_radix(h, 16).unwrap_or(u64::MAX),
                        None => v.parse().unwrap_or(u64::MAX),
                    }
                };
                assert_eq!(num(0), 10, "VNI: {l}");
                assert_eq!(num(1), 0x0102, "option class: {l}");
                assert_eq!(num(2), 0x05, "option type: {l}");
                assert_eq!(num(3), 8, "option length (bytes, header included): {l}");
                assert_eq!(
                    num(4),
                    0x6558,
                    "protocol: transparent Ethernet bridging: {l}"
                );
                assert_eq!(num(5), 0, "critical flag clear: {l}");
            }
        }
        for host in ["pri", "sec"] {
            let s = stats(&lab, host);
            assert_eq!(s.total_drops(), 0, "{host}:\n{}", s.render_text());
            let rx = if encap == Encap::Vxlan {
                "rx_vxlan"
            } else {
                "rx_geneve"
            };
            let fast = format!("rx_fast_{}", &rx[3..]);
            let (slow, fast) = (s.xdp_counter(rx), s.xdp_counter(&fast));
            assert!(slow + fast > 10_000, "{host} decapsulated {rx}");
            match mode {
                // Known sources after the first frames: the fast path carries the transfer.
                DatapathMode::Xdp => {
                    assert!(fast > 10 * slow, "{host}: fast {fast}, to workers {slow}")
                }
                DatapathMode::Afxdp => assert_eq!(fast, 0, "{host}: afxdp mode has no fast path"),
            }
        }
    }
}

/// An Ethernet/IPv4 (DF)/UDP frame to pri's VTEP, from the shared builders; the callers then
/// break it.
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend(ipv4(src, dst, 17, 8 + payload.len(), 0x4000));
    f.extend(udp(50000, dport, payload.len()));
    f.extend_from_slice(payload);
    f
}

struct RawSocket(i32);

impl RawSocket {
    fn open(ifindex: u32) -> RawSocket {
        // SAFETY: plain socket creation; the descriptor is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a zeroed sockaddr_ll is valid; the fields we need are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        RawSocket(fd)
    }

    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: frame is a valid buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.0, frame.as_ptr().cast(), frame.len(), 0) };
        n == frame.len() as isize
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> i32 {
        self.0
    }
}

/// TX drops of the fabric's veth towards pri.
fn veth_tx_dropped(lab: &Lab) -> u64 {
    let (ok, text) = sh(lab, "fabric", &["ip", "-s", "-j", "link", "show", "to-pri"]);
    assert!(ok, "{text}");
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v[0]["stats64"]["tx"]["dropped"].as_u64())
        .expect("to-pri tx dropped counter")
}

both_modes!(bad_input_under_load_is_dropped_and_counted_while_a_transfer_completes);
fn bad_input_under_load_is_dropped_and_counted_while_a_transfer_completes(mode: DatapathMode) {
    require_root();
    let mut spec = client_and_pri("bi", 4789, mode);
    spec.ready_timeout = Duration::from_secs(20);
    let lab = Lab::up(&spec).expect("lab up");
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );
    let pri_mac = lab
        .in_ns("pri", || {
            ovl_netlink::Netlink::open()
                .and_then(|nl| nl.link_by_name("eth0"))
                .ok()
                .flatten()
                .and_then(|l| l.mac)
        })
        .expect("pri ns")
        .expect("pri eth0 MAC");
    let (fab_index, fab_mac) = lab
        .in_ns("fabric", || {
            let l = ovl_netlink::Netlink::open()
                .and_then(|nl| nl.link_by_name("to-pri"))
                .ok()
                .flatten()
                .expect("fabric's veth to pri");
            (l.index, l.mac.expect("mac"))
        })
        .expect("fabric ns");
    let before = stats(&lab, "pri");
    let lost_before = veth_tx_dropped(&lab);
    let pri_vtep = lab.underlay_ip("pri").expect("pri").octets();
    let client_vtep = lab.underlay_ip("client").expect("client").octets();

    // A 200 MB transfer runs through the overlay while the fabric fires garbage at pri.
    let fabric_ns = lab.ns("fabric");
    let attack = thread::spawn(move || {
        in_netns(&fabric_ns, move || {
            let raw = RawSocket::open(fab_index);
            let mut rng = 0x1234_5678_9abc_def0u64;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut sent = [0u64; 6];
            let inner_ok = {
                let mut i = vec![0u8; 60];
                i[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
                i[12] = 0x08;
                i
            };
            for n in 0..120_000u64 {
                let kind = (n % 6) as usize;
                let mut junk = vec![0u8; 8 + (next() % 100) as usize];
                for b in junk.iter_mut() {
                    *b = next() as u8;
                }
                let frame = match kind {
                    // VXLAN with the I flag missing.
                    0 => {
                        junk[0] &= !0x08;
                        udp_frame(pri_mac, fab_mac, client_vtep, pri_vtep, 4789, &junk)
                    }
                    // A VNI pri does not serve.
                    1 => {
                        let mut p = vec![0x08, 0, 0, 0, 0, 0x77, (n >> 8) as u8, 0];
                        p.extend_from_slice(&inner_ok);
                        udp_frame(pri_mac, fab_mac, client_vtep, pri_vtep, 4789, &p)
                    }
                    // Broken IPv4 header checksum.
                    2 => {
                        let mut f = udp_frame(pri_mac, fab_mac, client_vtep, pri_vtep, 4789, &junk);
                        f[24] ^= 0x5a;
                        f
                    }
                    // UDP length that disagrees with the IP length.
                    3 => {
                        let mut f = udp_frame(pri_mac, fab_mac, client_vtep, pri_vtep, 4789, &junk);
                        f[38] = 0xff;
                        f
                    }
                    // Valid VXLAN for VNI 10 around a runt inner frame.
                    4 => {
                        let mut p = vec![0x08, 0, 0, 0, 0, 0, 10, 0];
                        p.extend_from_slice(&junk[..(junk.len() % 13)]);
                        udp_frame(pri_mac, fab_mac, client_vtep, pri_vtep, 4789, &p)
                    }
                    // Random bytes with pri's MAC in front: not ours to judge, passed on.
                    _ => {
                        let mut f = pri_mac.to_vec();
                        f.extend_from_slice(&junk);
                        f.resize(f.len().max(14), 0);
                        f
                    }
                };
                if raw.send(&frame) {
                    sent[kind] += 1;
                }
                // Pace a little so the veth queue, not our program, is never the bottleneck.
                if n % 64 == 63 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            sent
        })
        .expect("fabric ns")
    });
    assert_transfer(
        &lab,
        "client",
        "pri",
        Ipv4Addr::new(192, 168, 0, 10),
        5006,
        200 * MB,
    );
    let sent = attack.join().expect("attack thread");
    let malformed: u64 = sent[..5].iter().sum();
    eprintln!("sent {sent:?}: {malformed} malformed + {} random", sent[5]);
    assert!(malformed >= 100_000, "at least 100k malformed frames sent");

    thread::sleep(Duration::from_millis(300));
    let after = stats(&lab, "pri");
    let delta = |name: &str| after.xdp_counter(name) - before.xdp_counter(name);
    eprintln!("{}", after.render_text());
    // A frame the veth itself dropped (its XDP ring full under load) never reached the
    // program; the veth counts those as TX drops on the fabric's side.
    let lost = veth_tx_dropped(&lab) - lost_before;
    eprintln!("veth drops before our program: {lost}");
    for (k, (name, what)) in [
        ("drop_vxlan_flags", "missing I flag"),
        ("drop_unknown_vni", "unknown VNI"),
        ("drop_ipv4_checksum", "bad checksum"),
        ("drop_udp_length", "bad UDP length"),
        ("drop_inner_truncated", "runt inner frames"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = delta(name);
        assert!(
            d <= sent[k] && d + lost >= sent[k],
            "{what}: {d} counted as {name} of {sent:?}[{k}] sent ({lost} lost in the veth)"
        );
    }
    let drops = after.total_drops() - before.total_drops();
    assert!(
        drops <= malformed && drops + lost >= malformed,
        "every malformed frame that reached the program, and nothing else, was dropped: \
         {drops} drops, {malformed} malformed, {lost} lost in the veth"
    );

    // Still up, still forwarding, and every UMEM frame accounted for after the long run.
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );
    for q in &after.queues {
        assert_eq!(
            q.frames_free + q.frames_fill + q.frames_tx,
            q.frames_total,
            "queue {}: UMEM frames conserved: {q:?}",
            q.queue
        );
        assert!(q.frames_fill > 0, "fill rings replenished");
    }
}

both_modes!(sigterm_removes_everything_and_a_killed_run_is_cleaned_up_on_restart);
fn sigterm_removes_everything_and_a_killed_run_is_cleaned_up_on_restart(mode: DatapathMode) {
    require_root();
    let mut lab = Lab::up(&client_and_pri("lc", 4789, mode)).expect("lab up");
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );

    lab.kill_dataplane("pri", Signal::Term).expect("signal");
    let status = lab
        .wait_dataplane("pri", Duration::from_secs(10))
        .expect("wait")
        .expect("exits on SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    let (_, links) = sh(&lab, "pri", &["ip", "-d", "link", "show"]);
    assert!(!links.contains("ovl0"), "overlay veths removed:\n{links}");
    assert!(
        !links.contains("prog/xdp"),
        "XDP programs detached:\n{links}"
    );
    assert!(
        !lab.control_socket("pri").exists(),
        "control socket removed"
    );
    assert!(
        underlay_tx_checksum(&lab),
        "the underlay's TX checksum offload is as before the run"
    );

    lab.restart_dataplane("pri").expect("restart");
    // "xdp" mode on a veth underlay: the kernel completes checksums while the run lasts.
    assert_eq!(underlay_tx_checksum(&lab), mode == DatapathMode::Afxdp);
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping")
    );
    lab.kill_dataplane("pri", Signal::Kill).expect("signal");
    lab.wait_dataplane("pri", Duration::from_secs(10))
        .expect("wait")
        .expect("dies on SIGKILL");
    let (_, links) = sh(&lab, "pri", &["ip", "link", "show", "ovl0"]);
    assert!(
        links.contains("ovl0"),
        "SIGKILL leaves the veths behind: {links}"
    );
    lab.restart_dataplane("pri").expect("restart after SIGKILL");
    let log = lab.dataplane_log("pri").expect("log");
    assert!(
        log.contains("leftover"),
        "the new run removed the leftovers:\n{log}"
    );
    assert!(
        lab.ping("client", Ipv4Addr::new(192, 168, 0, 10))
            .expect("ping after restart")
    );
    // What the killed run changed on the underlay is undone by its successor, which then
    // changes (and on SIGTERM restores) it itself.
    lab.kill_dataplane("pri", Signal::Term).expect("signal");
    lab.wait_dataplane("pri", Duration::from_secs(10))
        .expect("wait")
        .expect("exits on SIGTERM");
    assert!(
        underlay_tx_checksum(&lab),
        "TX checksum offload back on after kill -9, restart and stop"
    );
}

/// Whether pri's underlay `eth0` has TX checksum offload on (`ethtool -k`).
fn underlay_tx_checksum(lab: &Lab) -> bool {
    let (ok, text) = sh(lab, "pri", &["ethtool", "-k", "eth0"]);
    assert!(ok, "{text}");
    text.lines().any(|l| l.starts_with("tx-checksumming: on"))
}

#[test]
fn bad_config_is_refused_before_anything_is_touched() {
    require_root();
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix("bc"), BIN);
    spec.hosts.retain(|h| h.name == "pri");
    let spec = spec.with_overlay("pri", Overlay::None);
    let lab = Lab::up(&spec).expect("lab up");
    let dir = lab.state_dir().to_path_buf();
    let cases = [
        (
            "underlay.interface",
            "interface = \"eht0\"",
            "local_ip = \"10.0.1.2\"",
        ),
        (
            "vni[0].mtu",
            "interface = \"eth0\"",
            "local_ip = \"10.0.1.2\"\n[[vni]]\nid = 10\nencap = \"vxlan\"\ninterface = \"ovl0\"\nmtu = 1480",
        ),
        (
            "underlay.local_ip",
            "interface = \"eth0\"",
            "local_ip = \"10.9.9.9\"",
        ),
    ];
    for (field, a, b) in cases {
        let mut text = format!("[underlay]\n{a}\n");
        if !b.contains("[[vni]]") {
            text.push_str(&format!(
                "{b}\n[[vni]]\nid = 10\nencap = \"vxlan\"\ninterface = \"ovl0\"\n"
            ));
        } else {
            text.push_str(b);
            text.push('\n');
        }
        text.push_str(&format!(
            "[stats]\ncontrol_socket = \"{}\"\n",
            dir.join("bad.sock").display()
        ));
        let path: PathBuf = dir.join("bad.toml");
        std::fs::write(&path, &text).expect("write config");
        let (ok, out) = sh(
            &lab,
            "pri",
            &[BIN, "run", "--config", path.to_str().expect("utf-8")],
        );
        assert!(!ok, "{field}: must fail");
        assert!(
            out.contains(&format!("config {field}")),
            "{field}: error names the field: {out}"
        );
        let (_, links) = sh(&lab, "pri", &["ip", "link", "show"]);
        assert!(!links.contains("ovl0"), "{field}: nothing created");
    }
}

both_modes!(learned_macs_age_out_and_next_hop_changes_are_followed);
fn learned_macs_age_out_and_next_hop_changes_are_followed(mode: DatapathMode) {
    require_root();
    let mut spec = client_and_pri("ag", 4789, mode);
    spec.fdb_ageing_secs = Some(2);
    let lab = Lab::up(&spec).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    assert!(lab.ping("client", pri_ip).expect("ping"));
    assert!(
        stats(&lab, "pri").fdb_learned >= 1,
        "the client's MAC was learned"
    );

    // No traffic from the client: its entry expires (ageing is checked every second).
    let deadline = Instant::now() + Duration::from_secs(6);
    while stats(&lab, "pri").fdb_learned != 0 {
        assert!(
            Instant::now() < deadline,
            "learned entry aged out within 2 s + 1 s + slack"
        );
        thread::sleep(Duration::from_millis(200));
    }
    // Unknown again: pri's next frame to the client is flooded, and still arrives.
    let before = stats(&lab, "pri").xdp_counter("tx_unknown_unicast");
    let (ok, text) = sh(&lab, "pri", &["ping", "-c", "1", "-W", "2", "192.168.0.4"]);
    assert!(ok, "{text}");
    assert!(
        stats(&lab, "pri").xdp_counter("tx_unknown_unicast") > before,
        "the aged-out MAC was flooded"
    );

    // The outer next hop changes MAC: the data plane follows the kernel's neighbour table.
    let new_mac = "02:aa:bb:cc:dd:01";
    let gw = lab.gateway_ip("pri").expect("gateway").to_string();
    let (ok, text) = sh(
        &lab,
        "fabric",
        &["ip", "link", "set", "to-pri", "address", new_mac],
    );
    assert!(ok, "{text}");
    let (ok, text) = sh(
        &lab,
        "pri",
        &[
            "ip", "neigh", "replace", &gw, "lladdr", new_mac, "dev", "eth0",
        ],
    );
    assert!(ok, "{text}");
    let client_vtep = lab.underlay_ip("client").expect("client").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats(&lab, "pri");
        if s.nexthops
            .contains(&(client_vtep.clone(), Some(new_mac.to_string())))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "next hop updated: {:?}",
            s.nexthops
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Frames with the old MAC would be dropped by the router: traffic proves the update.
    assert!(
        lab.ping("client", pri_ip).expect("ping"),
        "client -> pri after the change"
    );
    let (ok, text) = sh(
        &lab,
        "pri",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.0.4"],
    );
    assert!(ok, "pri -> client after the change: {text}");
}

both_modes!(two_queues_two_pinned_workers_carry_traffic_and_keep_their_frames);
fn two_queues_two_pinned_workers_carry_traffic_and_keep_their_frames(mode: DatapathMode) {
    require_root();
    let mut spec = client_and_pri("mq", 4789, mode);
    spec.queues = 2;
    let lab = Lab::up(&spec).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    assert!(lab.ping("client", pri_ip).expect("ping"));
    // Several flows in both directions, so the veths spread them over the queues.
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    for i in 0..4u16 {
        if i % 2 == 0 {
            assert_transfer(&lab, "client", "pri", pri_ip, 5100 + i, 8 * MB);
        } else {
            assert_transfer(&lab, "pri", "client", client_ip, 5100 + i, 8 * MB);
        }
    }
    // Unknown unicast from 64 flows: in either mode every frame is a flood the workers copy,
    // and the flows' hashes spread them over both queues of the overlay veth (all 64 on one
    // queue has a chance of 2^-63).
    let (ok, text) = sh(
        &lab,
        "pri",
        &[
            "ip",
            "neigh",
            "replace",
            "192.168.0.99",
            "lladdr",
            "02:00:00:00:99:99",
            "dev",
            "ovl0",
            "nud",
            "permanent",
        ],
    );
    assert!(ok, "{text}");
    let flows = "import socket\n\
                 for p in range(40000, 40064):\n\
                 \x20s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 \x20s.bind(('192.168.0.10', p))\n\
                 \x20s.sendto(b'x', ('192.168.0.99', 9))\n\
                 \x20s.close()";
    let (ok, text) = sh(&lab, "pri", &["python3", "-c", flows]);
    assert!(ok, "{text}");
    thread::sleep(Duration::from_millis(300));
    let s = stats(&lab, "pri");
    assert_eq!(s.queues.len(), 2, "one worker per queue");
    assert_eq!(
        s.queues.iter().map(|q| q.cpu).collect::<Vec<_>>(),
        [Some(0), Some(1)],
        "pinned to the configured CPUs"
    );
    for q in &s.queues {
        assert_eq!(
            q.frames_free + q.frames_fill + q.frames_tx,
            q.frames_total,
            "{q:?}"
        );
    }
    eprintln!("{}", s.render_text());
    for q in &s.queues {
        assert!(q.loops > 0, "worker {} ran: {q:?}", q.queue);
        let floods: u64 = q.ports.iter().map(|p| p.flood_copies).sum();
        assert!(floods > 0, "worker {} copied floods: {q:?}", q.queue);
    }
    let floods: u64 = s
        .queues
        .iter()
        .flat_map(|q| &q.ports)
        .map(|p| p.flood_copies)
        .sum();
    assert!(
        floods >= 64,
        "every unknown-unicast frame was flooded: {floods}"
    );
    assert_mode_carried(&s, mode, 12 * MB as u64);
    assert_eq!(s.total_drops(), 0, "{}", s.render_text());
}

/// pri's FDB entry for `mac` (VNI 10): the VTEP it points at.
fn fdb_remote(lab: &Lab, host: &str, mac: [u8; 6]) -> Option<String> {
    let mac = ovl_lab::format_mac(mac);
    stats(lab, host)
        .fdb
        .into_iter()
        .find(|r| r.vni == 10 && r.mac == mac)
        .map(|r| r.remote)
}

both_modes!(a_mac_moves_to_another_vtep_with_one_frame_and_live_entries_never_age);
fn a_mac_moves_to_another_vtep_with_one_frame_and_live_entries_never_age(mode: DatapathMode) {
    require_root();
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix("mv"), BIN).with_mode(mode);
    spec.fdb_ageing_secs = Some(2);
    let lab = Lab::up(&spec).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let client_mac = lab.overlay_mac("client").expect("client MAC");
    let client_vtep = lab.underlay_ip("client").expect("client").to_string();
    let sec_vtep = lab.underlay_ip("sec").expect("sec").to_string();

    // Learned behind the client's VTEP, and kept alive by traffic for twice the ageing time
    // without a single further learn report (known sources cost a lookup, not a message).
    assert!(lab.ping("client", pri_ip).expect("ping"));
    assert_eq!(
        fdb_remote(&lab, "pri", client_mac),
        Some(client_vtep.clone())
    );
    let learns = |lab: &Lab| -> u64 {
        stats(lab, "pri")
            .queues
            .iter()
            .map(|q| q.learn_events)
            .sum()
    };
    let before = learns(&lab);
    let (ok, text) = sh(
        &lab,
        "client",
        &["ping", "-c", "20", "-i", "0.2", "-W", "1", "192.168.0.10"],
    );
    assert!(ok, "{text}");
    assert_eq!(
        fdb_remote(&lab, "pri", client_mac),
        Some(client_vtep),
        "a live entry does not age out"
    );
    assert_eq!(
        learns(&lab),
        before,
        "no learn reports for a known, live source"
    );

    // The MAC shows up behind sec's VTEP: one frame from there (sec's ARP broadcast for pri)
    // moves the entry.
    let mac = ovl_lab::format_mac(client_mac);
    let (ok, text) = sh(&lab, "sec", &["ip", "link", "set", "ovl0", "address", &mac]);
    assert!(ok, "{text}");
    let _ = sh(&lab, "sec", &["ping", "-c", "1", "-W", "1", "192.168.0.10"]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while fdb_remote(&lab, "pri", client_mac) != Some(sec_vtep.clone()) {
        assert!(
            Instant::now() < deadline,
            "moved to sec: {:?}",
            fdb_remote(&lab, "pri", client_mac)
        );
        thread::sleep(Duration::from_millis(50));
    }
    // And pri's traffic to that MAC follows it: sec answers pri's ping now.
    let (ok, text) = sh(
        &lab,
        "pri",
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "192.168.0.20"],
    );
    assert!(ok, "pri reaches the moved MAC behind sec: {text}");
}

#[test]
fn zero_copy_auto_gives_the_underlay_its_own_umem_and_off_shares_one() {
    require_root();
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    // "afxdp" mode, so every frame crosses between the underlay's and the port's sockets.
    for (zero_copy, umems) in [("off", 1u64), ("auto", 2)] {
        let mut spec = client_and_pri("zc", 4789, DatapathMode::Afxdp);
        spec.workers.zero_copy = Some(zero_copy.to_string());
        let lab = Lab::up(&spec).expect("lab up");
        assert!(lab.ping("client", pri_ip).expect("ping"));
        assert_transfer(&lab, "client", "pri", pri_ip, 5200, 8 * MB);
        assert_transfer(&lab, "pri", "client", client_ip, 5201, 8 * MB);
        let s = stats(&lab, "pri");
        let q = &s.queues[0];
        // 4096 frames per UMEM (the default frames_per_queue).
        assert_eq!(q.frames_total, 4096 * umems, "{zero_copy}: {q:?}");
        assert_eq!(q.frames_free + q.frames_fill + q.frames_tx, q.frames_total);
        // Veths never run zero-copy: "auto" fell back, per socket, and says so.
        assert_eq!(
            q.sockets,
            [
                ("ovl0-dp".to_string(), "copy".to_string()),
                ("eth0".to_string(), "copy".to_string())
            ],
            "{zero_copy}"
        );
        assert_eq!(s.total_drops(), 0, "{zero_copy}:\n{}", s.render_text());
    }
    // "on" cannot bind on a veth: the run fails with a clear error instead of starting.
    let mut spec = client_and_pri("zo", 4789, DatapathMode::Afxdp);
    spec.workers.zero_copy = Some("on".to_string());
    let Err(err) = Lab::up(&spec) else {
        panic!("zero_copy = on must be refused on a veth");
    };
    let msg = err.to_string();
    assert!(msg.contains("AF_XDP socket on eth0"), "{msg}");
}

#[test]
fn a_port_that_cannot_take_redirects_falls_back_to_the_workers_and_comes_back() {
    require_root();
    let lab = Lab::up(&client_and_pri("gr", 4789, DatapathMode::Xdp)).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let ping = |lab: &Lab| {
        let (ok, text) = sh(
            lab,
            "client",
            &["ping", "-c", "5", "-i", "0.1", "-W", "1", "192.168.0.10"],
        );
        assert!(ok, "{text}");
    };
    assert!(lab.ping("client", pri_ip).expect("ping"));
    let fallback = |lab: &Lab| stats(lab, "pri").xdp_counter("rx_fast_fallback");
    let fast = |lab: &Lab| stats(lab, "pri").xdp_counter("rx_fast_vxlan");

    // GRO off on ovl0: redirects into it would vanish, so the data plane takes the port out
    // of the device map (checked every second) and the workers deliver, counted.
    let (ok, text) = sh(&lab, "pri", &["ethtool", "-K", "ovl0", "gro", "off"]);
    assert!(ok, "{text}");
    thread::sleep(Duration::from_millis(1500));
    let before = fallback(&lab);
    ping(&lab);
    assert!(
        fallback(&lab) >= before + 5,
        "delivered by the workers, counted"
    );

    // GRO back on: the fast path again.
    let (ok, text) = sh(&lab, "pri", &["ethtool", "-K", "ovl0", "gro", "on"]);
    assert!(ok, "{text}");
    thread::sleep(Duration::from_millis(1500));
    let (before_fast, before_fallback) = (fast(&lab), fallback(&lab));
    ping(&lab);
    assert!(
        fast(&lab) >= before_fast + 5,
        "the fast path carries it again"
    );
    assert_eq!(fallback(&lab), before_fallback);
    let s = stats(&lab, "pri");
    assert_eq!(s.total_drops(), 0, "{}", s.render_text());
}

#[test]
fn busy_polling_workers_carry_traffic_and_the_devices_get_their_settings_back() {
    require_root();
    let mut spec = client_and_pri("bp", 4789, DatapathMode::Afxdp);
    spec.workers.busy_poll_us = Some(50);
    let mut lab = Lab::up(&spec).expect("lab up");
    let read = |lab: &Lab, dev: &str, knob: &str| -> String {
        let (ok, text) = sh(
            lab,
            "pri",
            &["cat", &format!("/sys/class/net/{dev}/{knob}")],
        );
        assert!(ok, "{text}");
        text.trim().to_string()
    };
    for dev in ["eth0", "ovl0-dp"] {
        assert_eq!(read(&lab, dev, "napi_defer_hard_irqs"), "2", "{dev}");
        assert_eq!(read(&lab, dev, "gro_flush_timeout"), "200000", "{dev}");
    }
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    assert!(lab.ping("client", pri_ip).expect("ping"));
    assert_transfer(&lab, "client", "pri", pri_ip, 5300, 8 * MB);
    assert_transfer(&lab, "pri", "client", client_ip, 5301, 8 * MB);
    let s = stats(&lab, "pri");
    assert_mode_carried(&s, DatapathMode::Afxdp, 8 * MB as u64);
    assert_eq!(s.total_drops(), 0, "{}", s.render_text());

    lab.kill_dataplane("pri", Signal::Term).expect("signal");
    lab.wait_dataplane("pri", Duration::from_secs(10))
        .expect("wait")
        .expect("exits on SIGTERM");
    assert_eq!(read(&lab, "eth0", "napi_defer_hard_irqs"), "0", "restored");
    assert_eq!(read(&lab, "eth0", "gro_flush_timeout"), "0", "restored");
}

/// `ping` on pri's control socket, as the controller asks it.
fn dataplane_ping(lab: &Lab) -> String {
    let sock = lab.control_socket("pri");
    dataplane::daemon::request(&sock, "ping").unwrap_or_else(|e| format!("error: {e}"))
}

both_modes!(a_replaced_underlay_is_reattached_and_carries_traffic_again);
fn a_replaced_underlay_is_reattached_and_carries_traffic_again(mode: DatapathMode) {
    require_root();
    let lab = Lab::up(&client_and_pri("hu", 4789, mode)).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    assert!(lab.ping("client", pri_ip).expect("ping"));
    assert_eq!(dataplane_ping(&lab).trim(), "pong");

    // The host-servicing event of a cloud VM: the underlay device disappears and comes back
    // with the same name and address but a new index, without our program or sockets.
    let fabric = lab.ns("fabric");
    let pri = lab.ns("pri");
    let gw = lab.gateway_ip("pri").expect("gateway").to_string();
    let me = lab.underlay_ip("pri").expect("pri").to_string();
    let (ok, text) = sh(&lab, "pri", &["ip", "link", "del", "eth0"]);
    assert!(ok, "{text}");
    let steps: [&[&str]; 6] = [
        &[
            "ip", "-n", &fabric, "link", "add", "to-pri", "type", "veth", "peer", "name", "eth0",
            "netns", &pri,
        ],
        &[
            "ip",
            "-n",
            &fabric,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "to-pri",
        ],
        &["ip", "-n", &fabric, "link", "set", "to-pri", "up"],
        &[
            "ip",
            "-n",
            &pri,
            "addr",
            "add",
            &format!("{me}/24"),
            "dev",
            "eth0",
        ],
        &["ip", "-n", &pri, "link", "set", "eth0", "up"],
        &["ip", "-n", &pri, "route", "replace", "default", "via", &gw],
    ];
    for args in steps {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The data plane saw the device go (unhealthy: nothing to send on) and come back: it
    // attaches the program to the new device, binds new sockets and forwards again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = dataplane_ping(&lab);
        if answer.trim() == "pong" && lab.ping("client", pri_ip).unwrap_or(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ping answered {answer:?}\n{}",
            lab.dataplane_log("pri").unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stats = stats(&lab, "pri");
    assert!(
        stats.uplinks.sockets_rebound >= 1,
        "the workers bound sockets on the new device: {:?}\n{}",
        stats.uplinks,
        lab.dataplane_log("pri").unwrap_or_default()
    );
    assert_eq!(
        stats.uplinks.links[0].state, "active",
        "{:?}",
        stats.uplinks
    );
    let out = std::process::Command::new("ip")
        .args(["-n", &pri, "-d", "link", "show", "eth0"])
        .output()
        .expect("ip link");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("xdp"),
        "program on the new device: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

both_modes!(a_jumbo_underlay_carries_what_the_port_promises);
/// MTU 9000 underlay with the kernel VXLAN driver as the peer. "xdp" mode carries jumbo
/// frames (8000-byte pings and TCP both ways); "afxdp" mode clamps its port to one UMEM frame,
/// and everything up to that MTU crosses both ways: no port promises what the path drops.
fn a_jumbo_underlay_carries_what_the_port_promises(mode: DatapathMode) {
    require_root();
    let mut spec = client_and_pri("jb", 4789, mode);
    spec.underlay_mtu = 9000;
    let lab = Lab::up(&spec).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    let port_mtu: u32 = lab
        .exec("pri", &["cat", "/sys/class/net/ovl0/mtu"], T)
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .expect("mtu");
    let want = match mode {
        DatapathMode::Xdp => 8950,
        DatapathMode::Afxdp => dataplane::config::one_frame_mtu(50),
    };
    assert_eq!(port_mtu, want, "{mode:?}: ovl0's MTU");
    // Short frames first, both ways, so each side's source is learned: a jumbo frame to a
    // destination not learned yet is flooded by the workers, which take one UMEM frame at
    // most and drop it (counted; README, jumbo underlays).
    for (from, to) in [("client", pri_ip), ("pri", client_ip)] {
        assert!(lab.ping(from, to).expect("ping"), "{mode:?} {from} -> {to}");
    }
    // The largest ICMP echo the port's MTU allows, DF set, both ways.
    let size = (port_mtu - 28).to_string();
    for (from, to) in [("client", "192.168.0.10"), ("pri", "192.168.0.4")] {
        let (ok, text) = sh(
            &lab,
            from,
            &[
                "ping", "-M", "do", "-c", "3", "-i", "0.2", "-W", "1", "-s", &size, to,
            ],
        );
        assert!(ok, "{mode:?} {from} -> {to}, {size} bytes: {text}");
    }
    assert_transfer(&lab, "client", "pri", pri_ip, 5202, 8 * MB);
    assert_transfer(&lab, "pri", "client", client_ip, 5203, 8 * MB);
    let s = stats(&lab, "pri");
    assert_eq!(s.total_drops(), 0, "{mode:?}:\n{}", s.render_text());
}

both_modes!(an_ipv6_underlay_carries_the_overlay_against_the_kernel_driver);
/// IPv6 VTEPs with the kernel VXLAN driver (default checksum settings: it sends UDP checksums
/// over IPv6 and refuses zero) as the peer, on a jumbo underlay: ARP floods and answers,
/// learning behind the IPv6 VTEP, the largest pings the port allows and TCP both ways, no
/// drops, and every frame either side received passed the other's checksum check.
fn an_ipv6_underlay_carries_the_overlay_against_the_kernel_driver(mode: DatapathMode) {
    require_root();
    let mut spec = client_and_pri("v6", 4789, mode);
    spec.underlay_ipv6 = true;
    spec.underlay_mtu = 9000;
    let lab = Lab::up(&spec).expect("lab up");
    let pri_ip = Ipv4Addr::new(192, 168, 0, 10);
    let client_ip = Ipv4Addr::new(192, 168, 0, 4);
    let client_vtep = lab.vtep_ip("client").expect("client VTEP");
    assert!(client_vtep.is_ipv6(), "{client_vtep}");
    let port_mtu: u32 = lab
        .exec("pri", &["cat", "/sys/class/net/ovl0/mtu"], T)
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .expect("mtu");
    // Over IPv6 every frame we send goes through a worker: one UMEM frame, both modes.
    assert_eq!(port_mtu, dataplane::config::one_frame_mtu(70), "{mode:?}");
    // First contact both ways: ARP broadcasts flooded over IPv6 (by the kernel driver one way,
    // by our workers the other), answered by unicast.
    for (from, to) in [("client", pri_ip), ("pri", client_ip)] {
        assert!(lab.ping(from, to).expect("ping"), "{mode:?} {from} -> {to}");
    }
    let (_, neigh) = sh(&lab, "client", &["ip", "neigh", "show", "192.168.0.10"]);
    assert!(
        neigh.contains("lladdr"),
        "client learned pri's MAC by ARP: {neigh}"
    );
    let s = stats(&lab, "pri");
    let learned = s
        .fdb
        .iter()
        .find(|r| !r.fixed)
        .unwrap_or_else(|| panic!("nothing learned:\n{}", s.render_text()));
    assert_eq!(
        learned.remote,
        client_vtep.to_string(),
        "learned behind the IPv6 VTEP"
    );
    let size = (port_mtu - 28).to_string();
    for (from, to) in [("client", "192.168.0.10"), ("pri", "192.168.0.4")] {
        let (ok, text) = sh(
            &lab,
            from,
            &[
                "ping", "-M", "do", "-c", "3", "-i", "0.2", "-W", "1", "-s", &size, to,
            ],
        );
        assert!(ok, "{mode:?} {from} -> {to}, {size} bytes: {text}");
    }
    assert_transfer(&lab, "client", "pri", pri_ip, 5202, 8 * MB);
    assert_transfer(&lab, "pri", "client", client_ip, 5203, 8 * MB);
    let s = stats(&lab, "pri");
    assert_eq!(s.total_drops(), 0, "{mode:?}:\n{}", s.render_text());
    let xdp = |name: &str| s.xdp.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
    assert!(
        xdp("rx_vxlan") + xdp("rx_fast_vxlan") > 0,
        "{}",
        s.render_text()
    );
    assert_eq!(
        xdp("drop_udp_checksum"),
        0,
        "the kernel driver's checksums verify"
    );
    assert_eq!(xdp("drop_udp_zero_checksum"), 0);
    if mode == DatapathMode::Xdp {
        // Sent by the egress program straight to the uplink, not through a worker.
        assert!(xdp("tx_fast_vxlan") > 1000, "{}", s.render_text());
    } else {
        assert_eq!(xdp("tx_fast_vxlan"), 0);
    }
    // The kernel driver counts what it refused; ours must all have been accepted.
    let (_, link) = sh(
        &lab,
        "client",
        &["ip", "-s", "-d", "link", "show", "vxlan10"],
    );
    assert!(link.contains("local fd00:"), "{link}");
    let (_, udp6) = sh(&lab, "client", &["cat", "/proc/net/snmp6"]);
    let csum_errors = udp6
        .lines()
        .find(|l| l.starts_with("Udp6InCsumErrors"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Udp6InCsumErrors in /proc/net/snmp6");
    assert_eq!(
        csum_errors, 0,
        "our IPv6 UDP checksums verify at the kernel driver"
    );
}
