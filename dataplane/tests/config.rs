//! The data plane's config file: parsing, defaults, one clear error per mistake, checks
//! against synthetic hosts, and host gathering in real namespaces (root).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use dataplane::{
    config::{
        Config, ConfigError, Datapath, DatapathMode, FdbConfig, HostInfo, HostInterface, IpCidr,
        StaticFdb, Stats, Underlay, Vni, Workers, XdpModeCfg, ZeroCopy, format_mac, parse_mac,
    },
    netns,
};
use ovl_common::Encap;

/// The example from the config file's specification, every key set.
const FULL: &str = r#"
# Underlay: the NIC the XDP ingress program attaches to, and our VTEP address on it.
[underlay]
interface = "eth0"
local_ip = "10.0.2.2"          # IPv4; must be configured on `interface`
xdp_mode = "auto"               # auto (driver, falling back to skb with a warning) | driver | skb

[datapath]
mode = "afxdp"                  # xdp (default: fast path in XDP/TC) | afxdp (every frame via workers)

[workers]
queues = 1                      # AF_XDP sockets / worker threads, one per queue (1..=8)
cpus = [1]                      # optional; one CPU per queue to pin its worker to
batch_size = 64                 # optional, 1..=1024
frames_per_queue = 4096         # optional UMEM frames per socket, power of two, 64..=65536

[stats]
prometheus = "127.0.0.1:9464"   # optional; must be a loopback address
control_socket = "/run/ovl-dataplane/eth0.sock"   # optional; default /run/ovl-dataplane/<underlay>.sock

[fdb]
ageing_secs = 300               # learned MAC entries expire after this (optional, 1..=86400)
max_learned = 4096              # optional

[[vni]]
id = 10                         # 1..=16777215, unique
encap = "vxlan"                 # vxlan | geneve
port = 4789                     # optional; default 4789 for vxlan, 6081 for geneve
interface = "ovl0"              # kernel-side overlay interface; the data plane side is "<name>-dp"
                                # so the name must be at most 12 bytes (IFNAMSIZ 16 incl. NUL)
address = "192.168.0.10/24"     # optional IPv4 or IPv6 CIDR given to `interface`
mac = "02:00:00:00:00:0a"       # optional MAC for `interface` (unicast, not all-zero)
mtu = 1450                      # optional; default and maximum = underlay MTU - encap overhead
flood = ["10.0.1.2", "10.0.3.2"]  # remote VTEPs for broadcast/unknown unicast (head-end replication)
[[vni.fdb]]                     # optional static entries
mac = "02:00:00:00:00:04"
remote = "10.0.1.2"

[[vni]]
id = 20
encap = "geneve"
interface = "ovl1"
geneve_option = { class = 0x0102, type = 0x80, data = "0a0b0c0d" }
"#;

/// The smallest valid config: everything else defaulted.
const MINIMAL: &str = r#"
[underlay]
interface = "eth0"
local_ip = "10.0.2.2"

[[vni]]
id = 10
encap = "vxlan"
interface = "ovl0"
flood = ["10.0.1.2", "10.0.3.2"]
"#;

/// A second VNI appended to MINIMAL by `with_vni`.
fn with_vni(base: &str, vni: &str) -> String {
    format!("{base}\n[[vni]]\n{vni}\n")
}

/// `base` with the first `from` replaced by `to`; `from` must be there, so a case cannot
/// silently test the unchanged base.
#[track_caller]
fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from:?} not in the base config");
    base.replacen(from, to, 1)
}

/// Asserts that `text` is rejected with one line `config FIELD: ...` containing `reason`.
#[track_caller]
fn assert_invalid(text: &str, field: &str, reason: &str) {
    let err = match Config::parse(text) {
        Ok(c) => panic!("accepted, expected an error on {field}: {c:#?}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.field(), Some(field), "{msg}");
    assert!(msg.starts_with(&format!("config {field}: ")), "{msg}");
    assert!(msg.contains(reason), "{msg:?} lacks {reason:?}");
    assert!(!msg.contains('\n'), "not one line: {msg:?}");
}

#[track_caller]
fn parse(text: &str) -> Config {
    match Config::parse(text) {
        Ok(c) => c,
        Err(e) => panic!("rejected: {e}"),
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn spec_example_parses_to_the_expected_struct() {
    let expected = Config {
        underlay: Underlay {
            interfaces: vec!["eth0".into()],
            local_ip: ip(10, 0, 2, 2),
            udp6_zero_csum_rx: false,
            xdp_mode: XdpModeCfg::Auto,
            failback: true,
            failback_hold: std::time::Duration::from_secs(5),
        },
        datapath: Datapath {
            mode: DatapathMode::Afxdp,
        },
        workers: Workers {
            queues: 1,
            cpus: Some(vec![1]),
            batch_size: 64,
            frames_per_queue: 4096,
            spin_us: 0,
            busy_poll_us: 0,
            zero_copy: ZeroCopy::Auto,
        },
        stats: Stats {
            prometheus: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            control_socket: PathBuf::from("/run/ovl-dataplane/eth0.sock"),
        },
        fdb: FdbConfig {
            ageing: Duration::from_secs(300),
            max_learned: 4096,
        },
        vnis: vec![
            Vni {
                id: 10,
                encap: Encap::Vxlan,
                port: 4789,
                interface: "ovl0".into(),
                address: Some(IpCidr {
                    addr: ip(192, 168, 0, 10),
                    prefix_len: 24,
                }),
                mac: Some([2, 0, 0, 0, 0, 0x0a]),
                mtu: Some(1450),
                flood: vec![ip(10, 0, 1, 2), ip(10, 0, 3, 2)],
                fdb: vec![StaticFdb {
                    mac: [2, 0, 0, 0, 0, 4],
                    remote: ip(10, 0, 1, 2),
                }],
                geneve_option: None,
            },
            Vni {
                id: 20,
                encap: Encap::Geneve,
                port: 6081,
                interface: "ovl1".into(),
                address: None,
                mac: None,
                mtu: None,
                flood: vec![],
                fdb: vec![],
                // Wire TLV: class 0x0102 big-endian, type, length 1 word, data.
                geneve_option: Some([0x01, 0x02, 0x80, 0x01, 0x0a, 0x0b, 0x0c, 0x0d]),
            },
        ],
    };
    assert_eq!(parse(FULL), expected);
    assert_eq!(expected.vnis[0].dp_interface(), "ovl0-dp");
    assert_eq!(expected.vnis[0].overhead(false), 50);
    assert_eq!(expected.vnis[1].overhead(false), 58);
}

#[test]
fn deploy_example_for_pri_parses() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/dataplane-pri.toml"),
    )
    .expect("read deploy/examples/dataplane-pri.toml");
    let c = parse(&text);
    assert_eq!(c.underlay.primary(), "eth0");
    assert_eq!(c.underlay.local_ip, ip(10, 0, 2, 2));
    assert_eq!(c.vnis.len(), 1);
    let v = &c.vnis[0];
    assert_eq!((v.id, v.encap, v.port), (10, Encap::Vxlan, 4789));
    assert_eq!(v.interface, "ovl0");
    assert_eq!(
        v.address.map(|a| a.to_string()).as_deref(),
        Some("192.168.0.10/24")
    );
    assert_eq!(v.flood, vec![ip(10, 0, 1, 2), ip(10, 0, 3, 2)]);
    assert_ne!(
        c.stats.control_socket,
        PathBuf::from("/run/ovl-dataplane/eth0.sock"),
        "pri and sec both have eth0: the lab needs distinct sockets"
    );

    // The commented GENEVE block is valid too once uncommented.
    let geneve: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# [[vni]]"))
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(geneve.contains("encap = \"geneve\""), "{geneve}");
    let c = parse(&format!("{text}\n{geneve}\n"));
    assert_eq!(c.vnis[1].encap, Encap::Geneve);
    assert_eq!(c.vnis[1].port, 6081);
    assert!(c.vnis[1].geneve_option.is_some());
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL);
    assert_eq!(c.underlay.xdp_mode, XdpModeCfg::Auto);
    assert_eq!(
        c.datapath.mode,
        DatapathMode::Xdp,
        "the fast path by default"
    );
    assert_eq!(
        c.workers,
        Workers {
            queues: 1,
            cpus: None,
            batch_size: 64,
            frames_per_queue: 4096,
            spin_us: 0,
            busy_poll_us: 0,
            zero_copy: ZeroCopy::Auto
        }
    );
    assert_eq!(c.stats.prometheus, None);
    assert_eq!(
        c.stats.control_socket,
        PathBuf::from("/run/ovl-dataplane/eth0.sock")
    );
    assert_eq!(c.fdb.ageing, Duration::from_secs(300));
    assert_eq!(c.fdb.max_learned, 4096);
    let v = &c.vnis[0];
    assert_eq!(v.port, 4789);
    assert_eq!(
        (v.address, v.mac, v.mtu, v.geneve_option),
        (None, None, None, None)
    );
    assert!(v.fdb.is_empty());

    let c = parse(&edit(MINIMAL, "encap = \"vxlan\"", "encap = \"geneve\""));
    assert_eq!(c.vnis[0].port, 6081);
    let c = parse(&edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interface = \"ens5\"",
    ));
    assert_eq!(
        c.stats.control_socket,
        PathBuf::from("/run/ovl-dataplane/ens5.sock")
    );
    let c = parse(&edit(
        MINIMAL,
        "local_ip = \"10.0.2.2\"",
        "local_ip = \"10.0.2.2\"\nxdp_mode = \"skb\"",
    ));
    assert_eq!(c.underlay.xdp_mode, XdpModeCfg::Skb);
}

#[test]
fn syntax_errors_give_line_and_column() {
    let text = "[underlay]\ninterface = \"eth0\"\nlocal_ip = \"10.0.2.2\n";
    let err = Config::parse(text).expect_err("unterminated string");
    let msg = err.to_string();
    match err {
        ConfigError::Syntax { line, column, .. } => {
            assert_eq!(line, 3, "{msg}");
            assert!(column > 1, "{msg}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(msg.starts_with("config line 3, column "), "{msg}");
    assert!(!msg.contains('\n'), "{msg:?}");

    let dup = edit(MINIMAL, "local_ip", "interface = \"eth1\"\nlocal_ip");
    let err = Config::parse(&dup).expect_err("duplicate key");
    assert!(matches!(err, ConfigError::Syntax { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("duplicate key"), "{err}");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    assert_invalid(
        &edit(MINIMAL, "interface = \"eth0\"", "intreface = \"eth0\""),
        "underlay.intreface",
        "unknown key; expected one of: interface, interfaces, local_ip, xdp_mode, failback, failback_hold_ms",
    );
    assert_invalid(
        &format!("{MINIMAL}\n[wrokers]\nqueues = 1\n"),
        "wrokers",
        "unknown key",
    );
    assert_invalid(
        &edit(MINIMAL, "id = 10", "id = 10\nmtuu = 1400"),
        "vni[0].mtuu",
        "unknown key",
    );
    assert_invalid(
        &format!("{MINIMAL}\n[workers]\nqueue = 2\n"),
        "workers.queue",
        "unknown key",
    );
    assert_invalid(
        &format!("{MINIMAL}\n[stats]\nprometheus_addr = \"127.0.0.1:1\"\n"),
        "stats.prometheus_addr",
        "unknown key",
    );
    assert_invalid(
        &format!("{MINIMAL}\n[fdb]\nageing = 3\n"),
        "fdb.ageing",
        "unknown key",
    );
    assert_invalid(
        &format!(
            "{MINIMAL}\n[[vni.fdb]]\nmac = \"02:00:00:00:00:04\"\nremote = \"10.0.1.2\"\nvlan = 3\n"
        ),
        "vni[0].fdb[0].vlan",
        "unknown key",
    );
    assert_invalid(
        &edit(
            MINIMAL,
            "encap = \"vxlan\"",
            "encap = \"geneve\"\ngeneve_option = { class = 1, type = 1, data = \"00000000\", crit = true }",
        ),
        "vni[0].geneve_option.crit",
        "unknown key",
    );
}

#[test]
fn zero_copy_and_busy_poll_settings() {
    let with = |line: &str| format!("[workers]\n{line}\n{MINIMAL}");
    for (v, z) in [
        ("auto", ZeroCopy::Auto),
        ("on", ZeroCopy::On),
        ("off", ZeroCopy::Off),
    ] {
        assert_eq!(
            parse(&with(&format!("zero_copy = \"{v}\"")))
                .workers
                .zero_copy,
            z
        );
    }
    assert_invalid(
        &with("zero_copy = \"yes\""),
        "workers.zero_copy",
        "expected \"auto\", \"on\" or \"off\"",
    );
    assert_invalid(
        &with("zero_copy = true"),
        "workers.zero_copy",
        "expected a string",
    );
    assert_eq!(parse(&with("busy_poll_us = 50")).workers.busy_poll_us, 50);
    assert_invalid(
        &with("busy_poll_us = 20000"),
        "workers.busy_poll_us",
        "10000",
    );
    assert_invalid(&with("busy_poll_us = -1"), "workers.busy_poll_us", "");
}

#[test]
fn datapath_errors() {
    let with = |section: &str| format!("{MINIMAL}\n[datapath]\n{section}\n");
    assert_eq!(
        parse(&with("mode = \"xdp\"")).datapath.mode,
        DatapathMode::Xdp
    );
    assert_eq!(
        parse(&with("mode = \"afxdp\"")).datapath.mode,
        DatapathMode::Afxdp
    );
    assert_invalid(
        &with("mode = \"fast\""),
        "datapath.mode",
        "expected \"xdp\" or \"afxdp\"",
    );
    assert_invalid(&with("mode = 1"), "datapath.mode", "expected a string");
    assert_invalid(&with("mood = \"xdp\""), "datapath.mood", "unknown key");
    assert_invalid(
        &format!("datapath = 5\n{MINIMAL}"),
        "datapath",
        "expected a table",
    );
}

#[test]
fn underlay_errors() {
    assert_invalid(
        "[[vni]]\nid = 10\nencap = \"vxlan\"\ninterface = \"ovl0\"\n",
        "underlay",
        "missing",
    );
    assert_invalid(
        "underlay = 5\n",
        "underlay",
        "expected a table, got integer 5",
    );
    assert_invalid(
        &edit(MINIMAL, "local_ip = \"10.0.2.2\"", ""),
        "underlay.local_ip",
        "missing",
    );
    assert_invalid(
        &edit(MINIMAL, "interface = \"eth0\"", ""),
        "underlay.interface",
        "missing",
    );
    assert_invalid(
        &edit(MINIMAL, "interface = \"eth0\"", "interface = 5"),
        "underlay.interface",
        "expected a string, got integer 5",
    );
    assert_invalid(
        &edit(MINIMAL, "\"eth0\"", "\"sixteen-bytes-xx\""),
        "underlay.interface",
        "is 16 bytes; at most 15",
    );
    assert_invalid(
        &edit(MINIMAL, "\"eth0\"", "\"eth0:1\""),
        "underlay.interface",
        "contains ':'",
    );
    assert_invalid(
        &edit(MINIMAL, "\"eth0\"", "\"\""),
        "underlay.interface",
        "must not be empty",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"10.0.2\""),
        "underlay.local_ip",
        "expected an IPv4 or IPv6 address",
    );
    // An IPv6 VTEP with IPv4 remotes: one family per data plane.
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"fd00::2\""),
        "vni[0].flood[0]",
        "10.0.1.2 is IPv4 but underlay.local_ip fd00::2 is IPv6",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"fe80::2\""),
        "underlay.local_ip",
        "link-local",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"::ffff:10.0.2.2\""),
        "underlay.local_ip",
        "IPv4-mapped",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"ff02::1\""),
        "underlay.local_ip",
        "multicast",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"::1\""),
        "underlay.local_ip",
        "loopback",
    );
    assert_invalid(
        &edit(MINIMAL, "local_ip", "udp6_zero_csum_rx = 1\nlocal_ip"),
        "underlay.udp6_zero_csum_rx",
        "boolean",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"0.0.0.0\""),
        "underlay.local_ip",
        "unspecified",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"239.1.1.1\""),
        "underlay.local_ip",
        "multicast",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.2.2\"", "\"127.0.0.1\""),
        "underlay.local_ip",
        "loopback",
    );
    assert_invalid(
        &edit(
            MINIMAL,
            "local_ip = \"10.0.2.2\"",
            "local_ip = \"10.0.2.2\"\nxdp_mode = \"native\"",
        ),
        "underlay.xdp_mode",
        "expected \"auto\", \"driver\" or \"skb\"",
    );
}

#[test]
fn workers_errors() {
    let w = |body: &str| format!("{MINIMAL}\n[workers]\n{body}\n");
    assert_eq!(
        parse(&w("queues = 2\ncpus = [0, 1]")).workers.cpus,
        Some(vec![0, 1])
    );
    assert_invalid(
        &w("queues = 0"),
        "workers.queues",
        "0 is out of range 1..=8",
    );
    assert_invalid(&w("queues = 9"), "workers.queues", "out of range 1..=8");
    assert_invalid(
        &w("queues = \"2\""),
        "workers.queues",
        "expected an integer",
    );
    assert_invalid(
        &w("queues = 2\ncpus = [1]"),
        "workers.cpus",
        "1 CPUs for 2 queues",
    );
    assert_invalid(&w("cpus = [0, 1]"), "workers.cpus", "2 CPUs for 1 queues");
    assert_invalid(
        &w("queues = 2\ncpus = [1, 1]"),
        "workers.cpus[1]",
        "already given to queue 0",
    );
    assert_invalid(&w("cpus = [-1]"), "workers.cpus[0]", "out of range");
    assert_invalid(&w("cpus = 1"), "workers.cpus", "expected an array");
    assert_invalid(
        &w("batch_size = 0"),
        "workers.batch_size",
        "0 is out of range 1..=1024",
    );
    assert_invalid(
        &w("batch_size = 1025"),
        "workers.batch_size",
        "out of range",
    );
    assert_invalid(
        &w("frames_per_queue = 3000"),
        "workers.frames_per_queue",
        "3000 is not a power of two",
    );
    assert_invalid(
        &w("frames_per_queue = 32"),
        "workers.frames_per_queue",
        "out of range 64..=65536",
    );
    assert_invalid(
        &w("frames_per_queue = 131072"),
        "workers.frames_per_queue",
        "out of range",
    );
    assert_invalid(
        &w("frames_per_queue = 256\nbatch_size = 512"),
        "workers.batch_size",
        "larger than frames_per_queue 256",
    );
    // 8 queues: the underlay's 8 sockets and 8 per VNI must fit the 64 XSKMAP slots.
    let mut text = w("queues = 8");
    for i in 1..8 {
        text = with_vni(
            &text,
            &format!("id = {}\nencap = \"vxlan\"\ninterface = \"ovl{i}\"", 10 + i),
        );
    }
    assert_invalid(
        &text,
        "vni",
        "8 VNIs and 1 uplinks with 8 queues need 72 AF_XDP socket slots",
    );
}

#[test]
fn stats_errors() {
    let s = |body: &str| format!("{MINIMAL}\n[stats]\n{body}\n");
    let c = parse(&s("prometheus = \"[::1]:9464\""));
    assert_eq!(
        c.stats.prometheus,
        Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 9464)))
    );
    let err = Config::parse(&s("prometheus = \"0.0.0.0:9464\"")).expect_err("wildcard");
    assert_eq!(
        err.to_string(),
        "config stats.prometheus: must be a loopback address, got 0.0.0.0:9464"
    );
    assert_invalid(
        &s("prometheus = \"10.0.2.2:9464\""),
        "stats.prometheus",
        "loopback",
    );
    assert_invalid(
        &s("prometheus = \"localhost:9464\""),
        "stats.prometheus",
        "expected an address and port",
    );
    assert_invalid(
        &s("prometheus = \"127.0.0.1:0\""),
        "stats.prometheus",
        "port 0",
    );
    assert_invalid(
        &s("control_socket = \"run/x.sock\""),
        "stats.control_socket",
        "not an absolute path",
    );
    assert_invalid(
        &s("control_socket = \"/run/ovl/\""),
        "stats.control_socket",
        "directory",
    );
    let long = format!("control_socket = \"/{}\"", "x".repeat(107));
    assert_invalid(&s(&long), "stats.control_socket", "108 bytes is too long");
}

#[test]
fn fdb_section_errors() {
    let f = |body: &str| format!("{MINIMAL}\n[fdb]\n{body}\n");
    assert_eq!(
        parse(&f("ageing_secs = 86400")).fdb.ageing,
        Duration::from_secs(86400)
    );
    assert_invalid(
        &f("ageing_secs = 0"),
        "fdb.ageing_secs",
        "out of range 1..=86400",
    );
    assert_invalid(&f("ageing_secs = 86401"), "fdb.ageing_secs", "out of range");
    assert_invalid(
        &f("ageing_secs = 1.5"),
        "fdb.ageing_secs",
        "expected an integer, got float 1.5",
    );
    assert_invalid(
        &f("max_learned = 0"),
        "fdb.max_learned",
        "out of range 1..=65536",
    );
    assert_invalid(&f("max_learned = 65537"), "fdb.max_learned", "out of range");
    let text = edit(
        MINIMAL,
        "flood",
        "fdb = [{ mac = \"02:00:00:00:00:04\", remote = \"10.0.1.2\" }]\nflood",
    );
    assert_invalid(
        &format!("{text}\n[fdb]\nmax_learned = 65536\n"),
        "fdb.max_learned",
        "65536 learned + 1 static entries exceed",
    );
}

#[test]
fn vni_id_and_port_errors() {
    assert_invalid(
        &edit(
            MINIMAL,
            "[[vni]]\nid = 10\nencap = \"vxlan\"\ninterface = \"ovl0\"\nflood = [\"10.0.1.2\", \"10.0.3.2\"]",
            "",
        ),
        "vni",
        "at least one",
    );
    assert_invalid(
        &edit(MINIMAL, "id = 10", "id = 0"),
        "vni[0].id",
        "0 is out of range 1..=16777215",
    );
    assert_invalid(
        &edit(MINIMAL, "id = 10", "id = 16777216"),
        "vni[0].id",
        "16777216 is out of range",
    );
    assert_eq!(
        parse(&edit(MINIMAL, "id = 10", "id = 16777215")).vnis[0].id,
        16_777_215
    );
    assert_invalid(&edit(MINIMAL, "id = 10\n", ""), "vni[0].id", "missing");
    assert_invalid(
        &edit(MINIMAL, "\"vxlan\"", "\"gre\""),
        "vni[0].encap",
        "expected \"vxlan\" or \"geneve\", got \"gre\"",
    );
    assert_invalid(
        &edit(MINIMAL, "encap = \"vxlan\"\n", ""),
        "vni[0].encap",
        "missing",
    );
    assert_invalid(
        &edit(MINIMAL, "id = 10", "id = 10\nport = 0"),
        "vni[0].port",
        "out of range 1..=65535",
    );
    assert_invalid(
        &edit(MINIMAL, "id = 10", "id = 10\nport = 65536"),
        "vni[0].port",
        "out of range",
    );
    assert_invalid(
        "vni = 3\n[underlay]\ninterface = \"eth0\"\nlocal_ip = \"10.0.2.2\"\n",
        "vni",
        "expected an array, got integer 3",
    );
    assert_invalid(
        &MINIMAL.replace("[[vni]]", "[vni]"),
        "vni",
        "expected an array, got a table",
    );

    let text = with_vni(MINIMAL, "id = 11\nencap = \"vxlan\"\ninterface = \"ovl1\"");
    let text = with_vni(&text, "id = 10\nencap = \"vxlan\"\ninterface = \"ovl2\"");
    let err = Config::parse(&text).expect_err("duplicate VNI");
    assert_eq!(
        err.to_string(),
        "config vni[2].id: duplicate VNI 10 (also vni[0])"
    );

    let text = with_vni(
        MINIMAL,
        "id = 20\nencap = \"geneve\"\nport = 4789\ninterface = \"ovl1\"",
    );
    let err = Config::parse(&text).expect_err("port carrying two encapsulations");
    assert_eq!(
        err.to_string(),
        "config vni[1].port: 4789 already carries vxlan for vni 10; a port carries one encapsulation"
    );
    // Two VNIs of one encapsulation share a port.
    let c = parse(&with_vni(
        MINIMAL,
        "id = 20\nencap = \"vxlan\"\ninterface = \"ovl1\"",
    ));
    assert_eq!((c.vnis[0].port, c.vnis[1].port), (4789, 4789));
    // A geneve VNI on its own port is fine next to vxlan.
    let c = parse(&with_vni(
        MINIMAL,
        "id = 20\nencap = \"geneve\"\ninterface = \"ovl1\"",
    ));
    assert_eq!(c.vnis[1].port, 6081);
}

#[test]
fn vni_interface_errors() {
    let c = parse(&edit(MINIMAL, "\"ovl0\"", "\"twelve-bytes\""));
    assert_eq!(c.vnis[0].dp_interface(), "twelve-bytes-dp");
    assert_invalid(
        &edit(MINIMAL, "\"ovl0\"", "\"thirteen-byte\""),
        "vni[0].interface",
        "\"thirteen-byte\" is 13 bytes; at most 12 so that \"thirteen-byte-dp\" fits IFNAMSIZ",
    );
    assert_invalid(
        &edit(MINIMAL, "\"ovl0\"", "\"eth0\""),
        "vni[0].interface",
        "\"eth0\" is an underlay interface",
    );
    assert_invalid(
        &edit(MINIMAL, "interface = \"eth0\"", "interface = \"ovl0-dp\""),
        "vni[0].interface",
        "\"ovl0-dp\" is an underlay interface",
    );
    assert_invalid(
        &edit(MINIMAL, "\"ovl0\"", "\"ovl 0\""),
        "vni[0].interface",
        "contains ' '",
    );
    assert_invalid(
        &edit(MINIMAL, "\"ovl0\"", "\"a/b\""),
        "vni[0].interface",
        "contains '/'",
    );
    assert_invalid(
        &edit(MINIMAL, "\"ovl0\"", "\"..\""),
        "vni[0].interface",
        "not a valid interface name",
    );
    assert_invalid(
        &with_vni(MINIMAL, "id = 11\nencap = \"vxlan\"\ninterface = \"ovl0\""),
        "vni[1].interface",
        "\"ovl0\" is already used by vni[0]",
    );
    // ovl0's data plane end would be the other VNI's kernel end.
    let text = edit(MINIMAL, "\"ovl0\"", "\"ovl0-dp\"");
    assert_invalid(
        &with_vni(&text, "id = 11\nencap = \"vxlan\"\ninterface = \"ovl0\""),
        "vni[1].interface",
        "\"ovl0-dp\" is already used by vni[0]",
    );
}

#[test]
fn vni_address_mac_and_mtu_errors() {
    let set = |line: &str| edit(MINIMAL, "id = 10", &format!("id = 10\n{line}"));
    let c = parse(&set("address = \"fd00::10/64\""));
    assert_eq!(
        c.vnis[0].address.map(|a| a.to_string()).as_deref(),
        Some("fd00::10/64")
    );
    assert_eq!(
        parse(&set("address = \"192.168.0.1/31\"")).vnis[0]
            .address
            .map(|a| a.prefix_len),
        Some(31)
    );
    assert_invalid(
        &set("address = \"192.168.0.10\""),
        "vni[0].address",
        "expected an address/prefix",
    );
    assert_invalid(
        &set("address = \"192.168.0.10/33\""),
        "vni[0].address",
        "prefix length 33 is too long",
    );
    assert_invalid(
        &set("address = \"192.168.0.10/+4\""),
        "vni[0].address",
        "expected an address/prefix",
    );
    assert_invalid(
        &set("address = \"192.168.0/24\""),
        "vni[0].address",
        "expected an address/prefix",
    );
    assert_invalid(
        &set("address = \"fd00::1/129\""),
        "vni[0].address",
        "too long",
    );
    assert_invalid(
        &set("address = \"192.168.0.0/24\""),
        "vni[0].address",
        "network address",
    );
    assert_invalid(
        &set("address = \"192.168.0.255/24\""),
        "vni[0].address",
        "broadcast address",
    );
    assert_invalid(
        &set("address = \"224.0.0.5/24\""),
        "vni[0].address",
        "not a unicast address",
    );

    assert_eq!(
        parse(&set("mac = \"02:AB:cd:00:00:01\"")).vnis[0].mac,
        Some([2, 0xab, 0xcd, 0, 0, 1])
    );
    assert_invalid(
        &set("mac = \"02:00:00:00:00\""),
        "vni[0].mac",
        "expected a MAC address",
    );
    assert_invalid(
        &set("mac = \"02:00:00:00:00:0g\""),
        "vni[0].mac",
        "expected a MAC address",
    );
    assert_invalid(
        &set("mac = \"02:00:00:00:00:00:01\""),
        "vni[0].mac",
        "expected a MAC address",
    );
    assert_invalid(
        &set("mac = \"020000000001\""),
        "vni[0].mac",
        "expected a MAC address",
    );
    assert_invalid(
        &set("mac = \"01:00:5e:00:00:01\""),
        "vni[0].mac",
        "01:00:5e:00:00:01 is a multicast MAC address",
    );
    assert_invalid(
        &set("mac = \"ff:ff:ff:ff:ff:ff\""),
        "vni[0].mac",
        "multicast",
    );
    assert_invalid(
        &set("mac = \"00:00:00:00:00:00\""),
        "vni[0].mac",
        "not a usable MAC",
    );

    assert_invalid(
        &set("mtu = 67"),
        "vni[0].mtu",
        "67 is out of range 68..=65535",
    );
    assert_invalid(&set("mtu = 65536"), "vni[0].mtu", "out of range");
    assert_invalid(
        &set("mtu = 1279\naddress = \"fd00::10/64\""),
        "vni[0].mtu",
        "at least 1280",
    );
    assert_eq!(
        parse(&set("mtu = 1280\naddress = \"fd00::10/64\"")).vnis[0].mtu,
        Some(1280)
    );
}

#[test]
fn vni_remote_errors() {
    assert_invalid(
        &edit(MINIMAL, "\"10.0.3.2\"]", "\"10.0.2.2\"]"),
        "vni[0].flood[1]",
        "10.0.2.2 is our own underlay.local_ip",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.3.2\"]", "\"10.0.1.2\"]"),
        "vni[0].flood[1]",
        "already in the list (flood[0])",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.3.2\"]", "\"fd00::3\"]"),
        "vni[0].flood[1]",
        "fd00::3 is IPv6 but underlay.local_ip 10.0.2.2 is IPv4",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.3.2\"]", "\"239.0.0.1\"]"),
        "vni[0].flood[1]",
        "multicast",
    );
    assert_invalid(
        &edit(MINIMAL, "\"10.0.3.2\"]", "3]"),
        "vni[0].flood[1]",
        "expected a string, got integer 3",
    );
    assert_invalid(
        &edit(
            MINIMAL,
            "flood = [\"10.0.1.2\", \"10.0.3.2\"]",
            "flood = \"10.0.1.2\"",
        ),
        "vni[0].flood",
        "expected an array",
    );

    let fdb = |entries: &[(&str, &str)]| {
        let mut text = MINIMAL.to_string();
        for (mac, remote) in entries {
            text.push_str(&format!(
                "[[vni.fdb]]\nmac = \"{mac}\"\nremote = \"{remote}\"\n"
            ));
        }
        text
    };
    let c = parse(&fdb(&[
        ("02:00:00:00:00:04", "10.0.1.2"),
        ("02:00:00:00:00:05", "10.0.1.2"),
    ]));
    assert_eq!(c.vnis[0].fdb.len(), 2);
    assert_invalid(
        &fdb(&[("02:00:00:00:00:04", "10.0.2.2")]),
        "vni[0].fdb[0].remote",
        "our own underlay.local_ip",
    );
    assert_invalid(
        &fdb(&[
            ("02:00:00:00:00:04", "10.0.1.2"),
            ("02:00:00:00:00:04", "10.0.3.2"),
        ]),
        "vni[0].fdb[1].mac",
        "duplicate MAC 02:00:00:00:00:04 (also fdb[0])",
    );
    assert_invalid(
        &fdb(&[("33:33:00:00:00:01", "10.0.1.2")]),
        "vni[0].fdb[0].mac",
        "multicast",
    );
    assert_invalid(
        &fdb(&[("02-00-00-00-00-04", "10.0.1.2")]),
        "vni[0].fdb[0].mac",
        "expected a MAC address",
    );
    assert_invalid(
        &fdb(&[("02:00:00:00:00:04", "10.0.1")]),
        "vni[0].fdb[0].remote",
        "expected an IPv4 or IPv6 address",
    );
    assert_invalid(
        &format!("{MINIMAL}[[vni.fdb]]\nmac = \"02:00:00:00:00:04\"\n"),
        "vni[0].fdb[0].remote",
        "missing",
    );
    assert_invalid(
        &edit(MINIMAL, "flood", "fdb = [5]\nflood"),
        "vni[0].fdb[0]",
        "expected a table, got integer 5",
    );
}

#[test]
fn geneve_option_errors() {
    let opt = |o: &str| {
        edit(
            MINIMAL,
            "encap = \"vxlan\"",
            &format!("encap = \"geneve\"\ngeneve_option = {o}"),
        )
    };
    let c = parse(&opt("{ class = 0xffff, type = 0x01, data = \"DEADbeef\" }"));
    assert_eq!(
        c.vnis[0].geneve_option,
        Some([0xff, 0xff, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef])
    );
    assert_invalid(
        &edit(
            MINIMAL,
            "id = 10",
            "id = 10\ngeneve_option = { class = 1, type = 1, data = \"00000000\" }",
        ),
        "vni[0].geneve_option",
        "only for geneve VNIs; this one is vxlan",
    );
    assert_invalid(
        &opt("{ class = 1, type = 1, data = \"0a0b0c\" }"),
        "vni[0].geneve_option.data",
        "expected 8 hex digits",
    );
    assert_invalid(
        &opt("{ class = 1, type = 1, data = \"0a0b0c0g\" }"),
        "vni[0].geneve_option.data",
        "expected 8 hex digits",
    );
    assert_invalid(
        &opt("{ class = 1, type = 1, data = 168496141 }"),
        "vni[0].geneve_option.data",
        "expected a string",
    );
    assert_invalid(
        &opt("{ class = 65536, type = 1, data = \"00000000\" }"),
        "vni[0].geneve_option.class",
        "out of range 0..=65535",
    );
    assert_invalid(
        &opt("{ class = 1, type = 256, data = \"00000000\" }"),
        "vni[0].geneve_option.type",
        "out of range 0..=255",
    );
    assert_invalid(
        &opt("{ class = 1, data = \"00000000\" }"),
        "vni[0].geneve_option.type",
        "missing",
    );
    assert_invalid(
        &opt("\"0102800a0b0c0d\""),
        "vni[0].geneve_option",
        "expected a table",
    );
}

#[test]
fn validate_checks_configs_changed_in_code() {
    let mut c = parse(MINIMAL);
    assert!(c.validate().is_ok());
    c.vnis[0].id = 0;
    let err = c.validate().expect_err("VNI 0");
    assert_eq!(err.field(), Some("vni[0].id"), "{err}");

    let mut c = parse(MINIMAL);
    c.vnis[0].geneve_option = Some([0, 1, 0, 2, 0, 0, 0, 0]);
    c.vnis[0].encap = Encap::Geneve;
    let err = c.validate().expect_err("option length 2");
    assert_eq!(err.field(), Some("vni[0].geneve_option"), "{err}");

    // check_host validates first: the overlay may not take the underlay's name.
    let mut c = parse(MINIMAL);
    c.vnis[0].interface = "eth0".into();
    let err = c
        .check_host(&host(1500))
        .expect_err("overlay named like the underlay");
    assert_eq!(err.field(), Some("vni[0].interface"), "{err}");
    assert!(
        err.to_string().contains("is an underlay interface"),
        "{err}"
    );

    let mut c = parse(MINIMAL);
    c.fdb.ageing = Duration::from_millis(500);
    let err = c.validate().expect_err("sub-second ageing");
    assert_eq!(err.field(), Some("fdb.ageing_secs"), "{err}");
}

#[test]
fn helpers_round_trip() {
    let cidr: IpCidr = "192.168.0.10/24".parse().expect("cidr");
    assert_eq!(cidr.to_string(), "192.168.0.10/24");
    assert_eq!(cidr.addr, ip(192, 168, 0, 10));
    assert!("192.168.0.10/24/1".parse::<IpCidr>().is_err());
    let mac = parse_mac("02:00:5E:10:00:0a").expect("mac");
    assert_eq!(format_mac(&mac), "02:00:5e:10:00:0a");
    assert_eq!("driver".parse::<XdpModeCfg>(), Ok(XdpModeCfg::Driver));
    assert_eq!(XdpModeCfg::Skb.to_string(), "skb");
}

/// A host like the lab's pri: `eth0` with the VTEP address and MTU `mtu`, `eth1` elsewhere.
fn host(mtu: u32) -> HostInfo {
    HostInfo {
        interfaces: vec![
            HostInterface {
                name: "lo".into(),
                mtu: 65536,
                addrs: vec![ip(127, 0, 0, 1)],
            },
            HostInterface {
                name: "eth0".into(),
                mtu,
                addrs: vec![ip(10, 0, 2, 2)],
            },
            HostInterface {
                name: "eth1".into(),
                mtu: 1500,
                addrs: vec![ip(10, 0, 9, 9)],
            },
        ],
        cpus: vec![0, 1],
    }
}

#[track_caller]
fn host_err(c: &Config, host: &HostInfo, field: &str) -> String {
    let err = c.check_host(host).expect_err("host check should fail");
    assert_eq!(err.field(), Some(field), "{err}");
    err.to_string()
}

#[test]
fn check_host_gives_effective_mtus() {
    let text = with_vni(MINIMAL, "id = 20\nencap = \"geneve\"\ninterface = \"ovl1\"");
    let text = with_vni(
        &text,
        "id = 30\nencap = \"geneve\"\ninterface = \"ovl2\"\ngeneve_option = { class = 1, type = 1, data = \"00000001\" }",
    );
    let text = with_vni(
        &text,
        "id = 40\nencap = \"vxlan\"\ninterface = \"ovl3\"\nmtu = 1400",
    );
    let report = parse(&text).check_host(&host(1500)).expect("fits");
    assert_eq!(report.underlay_mtu, 1500);
    assert_eq!(report.mtu_of_vni(10), Some(1450));
    assert_eq!(report.mtu_of_vni(20), Some(1450));
    assert_eq!(report.mtu_of_vni(30), Some(1442));
    assert_eq!(report.mtu_of_vni(40), Some(1400));
    assert_eq!(report.mtu_of_vni(50), None);
    // By index, in the config's order.
    assert_eq!(
        (0..4).map(|i| report.mtu(i)).collect::<Vec<_>>(),
        vec![1450, 1450, 1442, 1400]
    );
    assert_eq!(report.vnis.len(), 4);
}

#[test]
fn check_host_rejects_an_overlay_mtu_too_large() {
    let set = |mtu: u32| parse(&edit(MINIMAL, "id = 10", &format!("id = 10\nmtu = {mtu}")));
    let msg = host_err(&set(1480), &host(1500), "vni[0].mtu");
    assert_eq!(
        msg,
        "config vni[0].mtu: 1480 is too large: underlay MTU 1500 - vxlan overhead 50 = 1450"
    );
    assert_eq!(
        set(1450)
            .check_host(&host(1500))
            .expect("fits")
            .mtu_of_vni(10),
        Some(1450)
    );

    let geneve = parse(&edit(
        MINIMAL,
        "encap = \"vxlan\"",
        "encap = \"geneve\"\nmtu = 1450\ngeneve_option = { class = 1, type = 1, data = \"00000001\" }",
    ));
    let msg = host_err(&geneve, &host(1500), "vni[0].mtu");
    assert!(
        msg.ends_with("1450 is too large: underlay MTU 1500 - geneve overhead 58 = 1442"),
        "{msg}"
    );

    let msg = host_err(&parse(MINIMAL), &host(100), "vni[0].mtu");
    assert!(
        msg.contains("underlay MTU 100 - vxlan overhead 50 = 50, below the minimum overlay MTU 68"),
        "{msg}"
    );
    let v6 = parse(&edit(
        MINIMAL,
        "id = 10",
        "id = 10\naddress = \"fd00::10/64\"",
    ));
    let msg = host_err(&v6, &host(1300), "vni[0].mtu");
    assert!(msg.contains("below the minimum overlay MTU 1280"), "{msg}");
}

#[test]
fn check_host_with_a_jumbo_underlay() {
    let c = parse(MINIMAL);
    assert_eq!(
        c.check_host(&host(9000)).expect("fits").mtu_of_vni(10),
        Some(8950)
    );
    let set = |mtu: u32| parse(&edit(MINIMAL, "id = 10", &format!("id = 10\nmtu = {mtu}")));
    assert_eq!(
        set(8950)
            .check_host(&host(9000))
            .expect("fits")
            .mtu_of_vni(10),
        Some(8950)
    );
    let msg = host_err(&set(8951), &host(9000), "vni[0].mtu");
    assert!(
        msg.ends_with("8951 is too large: underlay MTU 9000 - vxlan overhead 50 = 8950"),
        "{msg}"
    );
    // 8950 does not fit a standard underlay.
    host_err(&set(8950), &host(1500), "vni[0].mtu");
}

#[test]
fn check_host_rejects_a_missing_underlay_interface() {
    let c = parse(&edit(MINIMAL, "\"eth0\"", "\"eht0\""));
    let msg = host_err(&c, &host(1500), "underlay.interface");
    assert!(
        msg.starts_with(
            "config underlay.interface: no interface \"eht0\" in this network namespace"
        ),
        "{msg}"
    );
    assert!(msg.contains("lo, eth0, eth1"), "{msg}");
    let msg = host_err(&c, &HostInfo::default(), "underlay.interface");
    assert!(msg.contains("(it has: none)"), "{msg}");
}

#[test]
fn check_host_rejects_a_local_ip_not_on_the_underlay() {
    let c = parse(&edit(MINIMAL, "\"10.0.2.2\"", "\"10.0.9.9\""));
    let msg = host_err(&c, &host(1500), "underlay.local_ip");
    assert!(
        msg.contains("10.0.9.9 is not configured on eth0 (eth0 has 10.0.2.2; it is on eth1)"),
        "{msg}"
    );
    let c = parse(&edit(MINIMAL, "\"10.0.2.2\"", "\"10.0.2.3\""));
    let mut h = host(1500);
    h.interfaces[1].addrs.clear();
    let msg = host_err(&c, &h, "underlay.local_ip");
    assert!(msg.contains("eth0 has no IPv4 address"), "{msg}");
}

#[test]
fn check_host_rejects_cpus_we_may_not_use() {
    let c = parse(&format!(
        "{MINIMAL}\n[workers]\nqueues = 2\ncpus = [1, 5]\n"
    ));
    let msg = host_err(&c, &host(1500), "workers.cpus[1]");
    assert!(
        msg.contains("CPU 5 is not available to this process (it may use 0, 1)"),
        "{msg}"
    );
    // Unknown CPUs: not checked.
    let h = HostInfo::from_interfaces(host(1500).interfaces);
    assert!(c.check_host(&h).is_ok());
}

#[test]
fn gather_finds_loopback_in_this_namespace() {
    let host = HostInfo::gather().expect("gather");
    let lo = host.interface("lo").expect("lo in this namespace");
    assert!(
        lo.addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{lo:?}"
    );
    assert!(lo.mtu >= 1280, "{lo:?}");
    // The affinity mask of a test thread is never empty.
    assert!(!host.cpus.is_empty(), "{:?}", host.cpus);
}

/// A file in the temp directory, removed on drop (also when the test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ovl-config-test-{}-{}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn load_reads_parses_and_checks_in_a_private_namespace() {
    // Anonymous namespace on its own thread: the kernel removes it and its veths when the
    // thread ends, whatever happens in the closure.
    let result = netns::run_in_private_netns(|| {
        netns::ip(&[
            "link", "add", "veth0", "mtu", "9000", "type", "veth", "peer", "name", "veth1",
        ])
        .expect("veth pair");
        netns::ip(&["addr", "add", "10.0.2.2/24", "dev", "veth0"]).expect("address");
        netns::ip(&[
            "addr",
            "add",
            "10.0.2.9/24",
            "dev",
            "veth0",
            "label",
            "veth0:1",
        ])
        .expect("labelled address");
        netns::ip(&["link", "set", "veth1", "mtu", "1400"]).expect("peer mtu");
        netns::ip(&["link", "set", "veth0", "up"]).expect("up");

        let host = HostInfo::gather().expect("gather");
        let veth0 = host.interface("veth0").expect("veth0").clone();
        let veth1 = host.interface("veth1").expect("veth1").clone();
        assert!(host.interface("veth0:1").is_none(), "{host:?}");

        let good = TempFile::new(&edit(MINIMAL, "\"eth0\"", "\"veth0\""));
        let (config, report) = Config::load(&good.0).expect("load");
        assert_eq!(config.underlay.primary(), "veth0");

        let typo = TempFile::new(&edit(MINIMAL, "\"eth0\"", "\"veht0\""));
        let typo_err = Config::load(&typo.0).expect_err("no veht0").to_string();
        let other = TempFile::new(&edit(MINIMAL, "\"eth0\"", "\"veth1\""));
        let other_err = Config::load(&other.0)
            .expect_err("not on veth1")
            .to_string();
        (veth0, veth1, report, typo_err, other_err)
    })
    .expect("private namespace");
    let (veth0, veth1, report, typo_err, other_err) = result;
    assert_eq!(veth0.mtu, 9000);
    let v4 = |i: &HostInterface| -> Vec<IpAddr> {
        i.addrs.iter().copied().filter(IpAddr::is_ipv4).collect()
    };
    assert_eq!(v4(&veth0), vec![ip(10, 0, 2, 2), ip(10, 0, 2, 9)]);
    assert_eq!(veth1.mtu, 1400);
    assert!(v4(&veth1).is_empty());
    assert_eq!(report.underlay_mtu, 9000);
    assert_eq!(report.mtu_of_vni(10), Some(8950));
    assert!(
        typo_err.starts_with(
            "config underlay.interface: no interface \"veht0\" in this network namespace"
        ),
        "{typo_err}"
    );
    assert!(other_err.starts_with("config underlay.local_ip: 10.0.2.2 is not configured on veth1 (veth1 has no IPv4 address; it is on veth0)"), "{other_err}");
}

#[test]
fn load_reports_unreadable_files_and_syntax_errors() {
    let missing =
        std::env::temp_dir().join(format!("ovl-config-missing-{}.toml", std::process::id()));
    let err = Config::load(&missing).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("config {}: cannot read: ", missing.display())),
        "{err}"
    );

    let bad = TempFile::new("[underlay]\ninterface = \"eth0\"\nlocal_ip = 10.0.2.2\n");
    let err = Config::load(&bad.0).expect_err("bare address");
    assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{err}");
}

#[test]
fn uplinks_parse_in_order_of_preference_with_failback_settings() {
    let c = parse(&edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"vf0\", \"eth0\"]\nfailback = false\nfailback_hold_ms = 2500",
    ));
    assert_eq!(c.underlay.interfaces, ["vf0", "eth0"]);
    assert_eq!(c.underlay.primary(), "vf0");
    assert!(!c.underlay.failback);
    assert_eq!(
        c.underlay.failback_hold,
        std::time::Duration::from_millis(2500)
    );
    // The control socket is named after the most preferred uplink.
    assert!(
        c.stats.control_socket.ends_with("vf0.sock"),
        "{:?}",
        c.stats.control_socket
    );
    // One interface: failback on, 5 s hold-down.
    let c = parse(MINIMAL);
    assert!(c.underlay.failback);
    assert_eq!(c.underlay.failback_hold, std::time::Duration::from_secs(5));
}

#[test]
fn uplink_errors() {
    let both = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interface = \"eth0\"\ninterfaces = [\"eth1\"]",
    );
    assert_invalid(
        &both,
        "underlay.interfaces",
        "either interface or interfaces",
    );
    let none = edit(MINIMAL, "interface = \"eth0\"\n", "");
    assert_invalid(&none, "underlay.interface", "missing");
    let empty = edit(MINIMAL, "interface = \"eth0\"", "interfaces = []");
    assert_invalid(&empty, "underlay.interfaces", "at least one uplink");
    let twice = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"eth0\", \"eth0\"]",
    );
    assert_invalid(&twice, "underlay.interfaces[1]", "listed twice");
    let bad = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"eth0\", \"a/b\"]",
    );
    assert_invalid(&bad, "underlay.interfaces[1]", "contains '/'");
    let not_str = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"eth0\", 3]",
    );
    assert_invalid(&not_str, "underlay.interfaces[1]", "expected a string");
    let many = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"a1\", \"a2\", \"a3\", \"a4\", \"a5\", \"a6\", \"a7\", \"a8\", \"a9\"]",
    );
    assert_invalid(&many, "underlay.interfaces", "at most 8");
    let hold = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interface = \"eth0\"\nfailback_hold_ms = 600001",
    );
    assert_invalid(&hold, "underlay.failback_hold_ms", "out of range");
    let fb = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interface = \"eth0\"\nfailback = \"yes\"",
    );
    assert_invalid(&fb, "underlay.failback", "expected a boolean");
    // An overlay port may not take an uplink's name.
    let clash = edit(
        &edit(
            MINIMAL,
            "interface = \"eth0\"",
            "interfaces = [\"eth0\", \"ovl0\"]",
        ),
        "interface = \"ovl0\"",
        "interface = \"ovl9\"",
    );
    parse(&clash);
    let clash = edit(
        MINIMAL,
        "interface = \"eth0\"",
        "interfaces = [\"eth0\", \"ovl0\"]",
    );
    assert_invalid(&clash, "vni[0].interface", "is an underlay interface");
}

#[test]
fn check_host_with_uplinks_needs_one_present_carrying_the_vtep_address() {
    let two = |list: &str| {
        parse(&edit(
            MINIMAL,
            "interface = \"eth0\"",
            &format!("interfaces = {list}"),
        ))
    };
    // The backup is absent (a virtual function being serviced): fine, and reported.
    let c = two("[\"vf0\", \"eth0\"]");
    let r = c.check_host(&host(1500)).expect("host check");
    assert_eq!(r.absent_uplinks, ["vf0"]);
    // Both present: the overlay fits the smaller MTU (eth1 has 1500, eth0 9000 here) ...
    let mut h = host(9000);
    h.interfaces[2].addrs.push(ip(10, 0, 2, 2));
    let c = two("[\"eth0\", \"eth1\"]");
    let r = c.check_host(&h).expect("host check");
    assert_eq!(r.underlay_mtu, 1500);
    assert_eq!(r.mtu(0), 1450);
    assert!(r.absent_uplinks.is_empty());
    // ... and the VTEP address on any one of them is enough (a VF carries none).
    let c = two("[\"eth1\", \"eth0\"]");
    c.check_host(&host(1500))
        .expect("address on the second uplink");
    // None present.
    let c = two("[\"vf0\", \"vf1\"]");
    let msg = host_err(&c, &host(1500), "underlay.interfaces");
    assert!(msg.contains("no interface of [\"vf0\", \"vf1\"]"), "{msg}");
    // Present, but the address is on neither.
    let c = two("[\"eth1\", \"lo\"]");
    let msg = host_err(&c, &host(1500), "underlay.local_ip");
    assert!(
        msg.contains("is not configured on any present uplink") && msg.contains("it is on eth0"),
        "{msg}"
    );
}

#[test]
fn afxdp_mode_clamps_the_overlay_mtu_to_one_umem_frame_and_says_so() {
    let afxdp = |extra: &str| {
        parse(&format!(
            "[datapath]\nmode = \"afxdp\"\n{}",
            edit(MINIMAL, "flood = [", &format!("{extra}flood = ["))
        ))
    };
    // Underlay MTU 9000: the default overlay MTU would be 8950; one 4096-byte UMEM frame less
    // the kernel's 256 bytes of headroom, the programs' 28 bytes of metadata, an outer
    // Ethernet header with a VLAN tag and the VXLAN overhead holds 3744.
    let c = afxdp("");
    let r = c.check_host(&host(9000)).expect("host check");
    assert_eq!(r.mtu(0), 3744);
    assert_eq!(dataplane::config::one_frame_mtu(50), 3744);
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(
        r.notes[0].contains("clamped to 3744") && r.notes[0].contains("8950"),
        "{:?}",
        r.notes
    );
    // At 1500 nothing is clamped and nothing is said.
    let r = c.check_host(&host(1500)).expect("host check");
    assert_eq!(r.mtu(0), 1450);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // A configured MTU the mode cannot carry is an error naming the limit, not a clamp.
    let c = afxdp("mtu = 8000\n");
    let msg = host_err(&c, &host(9000), "vni[0].mtu");
    assert!(msg.contains("at most 3744"), "{msg}");
    // "xdp" mode keeps the jumbo MTU (the fast path carries it) and says what the workers drop.
    let r = parse(MINIMAL).check_host(&host(9000)).expect("host check");
    assert_eq!(r.mtu(0), 8950);
    assert!(
        r.notes.len() == 1 && r.notes[0].contains("dropped above 3744"),
        "{:?}",
        r.notes
    );
}

/// MINIMAL with IPv6 VTEPs.
const MINIMAL6: &str = r#"
[underlay]
interface = "eth0"
local_ip = "fd00:0:2::2"

[[vni]]
id = 10
encap = "vxlan"
interface = "ovl0"
flood = ["fd00:0:1::2", "fd00:0:3::2"]
fdb = [{ mac = "02:00:00:00:00:04", remote = "fd00:0:1::2" }]
"#;

fn host6(mtu: u32) -> HostInfo {
    let mut h = host(mtu);
    h.interfaces[1]
        .addrs
        .push("fd00:0:2::2".parse::<IpAddr>().expect("address"));
    h
}

#[test]
fn ipv6_vteps_parse_cost_70_bytes_and_send_through_the_workers() {
    let c = parse(MINIMAL6);
    assert!(c.underlay.ipv6());
    assert!(
        !c.underlay.udp6_zero_csum_rx,
        "off by default, as in the kernel driver"
    );
    assert_eq!(c.vnis[0].flood.len(), 2);
    assert!(c.vnis[0].flood.iter().all(IpAddr::is_ipv6));
    assert_eq!(
        c.vnis[0].fdb[0].remote,
        "fd00:0:1::2".parse::<IpAddr>().expect("address")
    );
    assert_eq!(c.vnis[0].overhead(true), 70);
    let r = c.check_host(&host6(1500)).expect("host check");
    assert_eq!(r.mtu(0), 1430, "1500 - 70, as the kernel driver over IPv6");
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // A jumbo IPv6 underlay: every frame goes through a worker, so one UMEM frame is the limit
    // in "xdp" mode too, and the note says why.
    let r = c.check_host(&host6(9000)).expect("host check");
    let one = dataplane::config::one_frame_mtu(70);
    assert_eq!(r.mtu(0), one);
    assert!(
        r.notes.len() == 1
            && r.notes[0].contains(&format!("clamped to {one}"))
            && r.notes[0].contains("IPv6"),
        "{:?}",
        r.notes
    );
    // The address must be on the uplink; the error lists the IPv6 ones it has.
    let msg = host_err(&c, &host(1500), "underlay.local_ip");
    assert!(msg.contains("eth0 has no IPv6 address"), "{msg}");
    let zero = parse(&edit(
        MINIMAL6,
        "local_ip",
        "udp6_zero_csum_rx = true\nlocal_ip",
    ));
    assert!(zero.underlay.udp6_zero_csum_rx);
}
