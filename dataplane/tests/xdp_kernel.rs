//! The XDP programs, run in the kernel with BPF_PROG_TEST_RUN on crafted frames. Each case
//! asserts the verdict, the output bytes and that exactly the expected counter moved.
//!
//! Needs root. Every test runs in its own anonymous network namespace (see `common`), loads its
//! own copy of the programs (so counters and maps are private to it), and leaves nothing behind:
//! the programs are never attached, and the namespace dies with the test's thread.

#![allow(clippy::unwrap_used)] // test code: a failed set-up step should stop the test

mod common;

use common::*;
use dataplane::{
    testrun::{XDP_DROP, XDP_PASS, XDP_REDIRECT, action_name},
    xdp::{Program, XdpObject},
};
use ovl_common::{
    Config, Counter, Encap, FdbEntry, FdbKey, MetaKind, NextHop, PortInfo, UdpPortInfo, VniInfo,
    XdpMeta,
};

const LOCAL_IP: [u8; 4] = [10, 0, 1, 10];
const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x0a];
const REMOTE_IP: [u8; 4] = [10, 0, 2, 20];
/// The fabric router's MAC: the outer next hop.
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0x01];
const MTU: u16 = 1500;

const VNI_VXLAN: u32 = 10;
const VNI_GENEVE: u32 = 20;
const VNI_GENEVE_OPT: u32 = 30;
const VNI_UNKNOWN: u32 = 99;
/// The option VNI_GENEVE_OPT adds: class 0x0102, type 0x03 (not critical), 1 word of data.
const GENEVE_OPT: [u8; 8] = [0x01, 0x02, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef];

const INNER_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
const INNER_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const INNER_UNKNOWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];
const INNER_NO_NH: [u8; 6] = [0x02, 0, 0, 0, 0, 0x88];
const NO_NH_IP: [u8; 4] = [10, 0, 3, 30];

/// XSKMAP slot base of the overlay port in these tests.
const PORT_XSK_BASE: u32 = 8;

/// An IPv4 VTEP address as the maps hold it (mapped into IPv6).
fn be(ip: [u8; 4]) -> ovl_common::VtepAddr {
    ovl_common::v4_mapped(ip)
}

/// A configured copy of the programs with AF_XDP sockets in the underlay's slot 0 and the
/// overlay port's slot `PORT_XSK_BASE`.
struct Env {
    obj: XdpObject,
    lo: u32,
    _socks: Vec<dataplane::xsk::Xsk>,
}

impl Env {
    fn new() -> Env {
        Env::with_sockets(true)
    }

    /// The receiving VTEP: the same programs, configured with the remote's address.
    fn peer() -> Env {
        let mut peer = Env::new();
        peer.obj
            .set_config(Config {
                local_ip: be(REMOTE_IP),
                underlay_mtu: MTU,
                enabled: 1,
                local_mac: GW_MAC,
                ..Config::default()
            })
            .unwrap();
        peer
    }

    fn with_sockets(sockets: bool) -> Env {
        let mut obj = XdpObject::load().expect("load XDP programs");
        obj.set_config(Config {
            local_ip: be(LOCAL_IP),
            underlay_mtu: MTU,
            enabled: 1,
            local_mac: LOCAL_MAC,
            ..Config::default()
        })
        .unwrap();
        for (port, encap) in [
            (4789, Encap::Vxlan),
            (8472, Encap::Vxlan),
            (6081, Encap::Geneve),
        ] {
            obj.set_udp_port(port, UdpPortInfo::new(encap)).unwrap();
        }
        for (vni, info) in [
            (VNI_VXLAN, VniInfo::new(Encap::Vxlan, 4789)),
            (VNI_GENEVE, VniInfo::new(Encap::Geneve, 6081)),
            (
                VNI_GENEVE_OPT,
                VniInfo::new(Encap::Geneve, 6081).with_geneve_option(GENEVE_OPT),
            ),
        ] {
            obj.set_vni(vni, info).unwrap();
        }
        let lo = ifindex("lo");
        obj.set_port(
            lo,
            PortInfo {
                vni: VNI_VXLAN,
                xsk_base: PORT_XSK_BASE,
            },
        )
        .unwrap();
        for (vni, mac, ip) in [
            (VNI_VXLAN, INNER_B, REMOTE_IP),
            (VNI_GENEVE, INNER_B, REMOTE_IP),
            (VNI_GENEVE_OPT, INNER_B, REMOTE_IP),
            (VNI_VXLAN, INNER_NO_NH, NO_NH_IP),
        ] {
            obj.set_fdb(
                FdbKey::new(vni, mac),
                FdbEntry {
                    remote: be(ip),
                    flags: 0,
                    _pad: 0,
                    seen_ns: 0,
                },
            )
            .unwrap();
        }
        obj.set_nexthop(
            be(REMOTE_IP),
            NextHop {
                mac: GW_MAC,
                ..Default::default()
            },
        )
        .unwrap();
        let mut socks = Vec::new();
        if sockets {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (xa, xb) = (format!("xa{n}"), format!("xb{n}"));
            ip(&["link", "add", &xa, "type", "veth", "peer", "name", &xb]);
            ip(&["link", "set", &xa, "up"]);
            ip(&["link", "set", &xb, "up"]);
            let a = dataplane::xsk::Xsk::open(&xa).unwrap();
            let b = dataplane::xsk::Xsk::open(&xb).unwrap();
            obj.set_xsk(0, a.fd()).unwrap();
            obj.set_xsk(PORT_XSK_BASE, b.fd()).unwrap();
            socks.push(a);
            socks.push(b);
        }
        Env {
            obj,
            lo,
            _socks: socks,
        }
    }

    /// Makes the test's overlay port (`lo`) a port of `vni`.
    fn port_vni(&mut self, vni: u32) {
        let info = PortInfo {
            vni,
            xsk_base: PORT_XSK_BASE,
        };
        self.obj.set_port(self.lo, info).unwrap();
    }

    /// Runs `p` on `frame` and checks that exactly `counter` moved, by one.
    fn run(&self, p: Program, frame: &[u8], counter: Counter) -> dataplane::testrun::TestRun {
        let before = self.obj.counters().unwrap();
        let out = self.obj.test_run(p, frame, 0, 0).expect("test run");
        let moved = self.obj.counters().unwrap().since(&before).nonzero();
        assert_eq!(
            moved,
            vec![(counter, 1)],
            "expected exactly {} to move (verdict {})",
            counter.name(),
            action_name(out.action)
        );
        out
    }

    fn ingress(&self, frame: &[u8], counter: Counter) -> dataplane::testrun::TestRun {
        self.run(Program::UnderlayIngress, frame, counter)
    }

    fn egress(&self, frame: &[u8], counter: Counter) -> dataplane::testrun::TestRun {
        self.run(Program::OverlayEgress, frame, counter)
    }

    /// Ingress must pass `frame` unchanged and count `counter`.
    fn expect_pass(&self, frame: &[u8], counter: Counter) {
        let out = self.ingress(frame, counter);
        assert_eq!(action_name(out.action), action_name(XDP_PASS));
        assert_eq!(out.frame, frame, "passed frames must be untouched");
        assert!(out.meta.is_empty());
    }

    /// Ingress must drop `frame` and count `counter`, leaving it unmodified.
    fn expect_drop(&self, frame: &[u8], counter: Counter) {
        let out = self.ingress(frame, counter);
        assert_eq!(action_name(out.action), action_name(XDP_DROP));
        assert_eq!(
            out.frame, frame,
            "frames dropped on validation are not modified"
        );
    }
}

fn inner_frame(dst: [u8; 6], payload: usize) -> Vec<u8> {
    inner_udp(
        dst,
        INNER_A,
        [192, 168, 0, 4],
        [192, 168, 0, 10],
        40000,
        5201,
        payload,
    )
}

/// A frame from the remote VTEP to ours, UDP port `port`, with `tunnel` header and `inner`.
fn to_us(port: u16, tunnel: &[u8], inner: &[u8]) -> Vec<u8> {
    outer(
        LOCAL_MAC, GW_MAC, REMOTE_IP, LOCAL_IP, 51000, port, tunnel, inner,
    )
}

fn vxlan_frame(port: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    to_us(port, &vxlan(vni), inner)
}

fn geneve_frame(vni: u32, options: &[u8], inner: &[u8]) -> Vec<u8> {
    to_us(6081, &geneve(vni, options), inner)
}

fn assert_meta(out: &dataplane::testrun::TestRun, expected: XdpMeta) {
    let meta = out.xdp_meta().expect("our metadata in front of the frame");
    assert_eq!(meta, expected);
}

fn decapped_meta(encap: Encap, vni: u32) -> XdpMeta {
    XdpMeta {
        magic: ovl_common::XDP_META_MAGIC,
        kind: MetaKind::Decapped as u8,
        encap: encap as u8,
        vni,
        peer_ip: be(REMOTE_IP),
        peer_port_be: 51000u16.to_be(),
        // The test frames' inner source is not in the FDB: new, so flagged for learning.
        flags: ovl_common::META_FLAG_LEARN,
    }
}

// ---------------------------------------------------------------------------------------------
// Underlay ingress: decapsulation

#[test]
fn vxlan_decap_on_4789_and_8472() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 100);
        for port in [4789, 8472] {
            let out = env.ingress(&vxlan_frame(port, VNI_VXLAN, &inner), Counter::RxVxlan);
            assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
            assert_eq!(out.frame, inner, "the inner frame exactly");
            assert_meta(&out, decapped_meta(Encap::Vxlan, VNI_VXLAN));
        }
    });
}

#[test]
fn vxlan_decap_behind_a_vlan_tag() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 64);
        let plain = vxlan_frame(4789, VNI_VXLAN, &inner);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&plain[12..]);
        let out = env.ingress(&tagged, Counter::RxVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
    });
}

#[test]
fn geneve_decap_without_and_with_options() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 200);
        let out = env.ingress(&geneve_frame(VNI_GENEVE, &[], &inner), Counter::RxGeneve);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
        assert_meta(&out, decapped_meta(Encap::Geneve, VNI_GENEVE));

        // Two non-critical options (12 bytes): skipped, inner frame delivered as is.
        let opts = [
            0x01, 0x02, 0x03, 0x01, 1, 2, 3, 4, // class 0x0102 type 3, 4 bytes
            0xff, 0xff, 0x10, 0x00, // class 0xffff type 0x10, no data
        ];
        let out = env.ingress(&geneve_frame(VNI_GENEVE, &opts, &inner), Counter::RxGeneve);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
    });
}

#[test]
fn decap_trims_ethernet_padding() {
    in_private_netns(|| {
        let env = Env::new();
        // A tiny inner frame: the outer frame is padded past the IP packet's end.
        let inner = eth(INNER_B, INNER_A, 0x0806);
        let mut frame = vxlan_frame(4789, VNI_VXLAN, &inner);
        frame.extend_from_slice(&[0u8; 20]);
        let out = env.ingress(&frame, Counter::RxVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(
            out.frame, inner,
            "padding after the IP packet is not inner data"
        );
    });
}

#[test]
fn decap_without_a_socket_is_a_counted_drop() {
    in_private_netns(|| {
        let env = Env::with_sockets(false);
        let inner = inner_frame(INNER_B, 10);
        let out = env.ingress(&vxlan_frame(4789, VNI_VXLAN, &inner), Counter::DropNoSocket);
        assert_eq!(action_name(out.action), action_name(XDP_DROP));
    });
}

// ---------------------------------------------------------------------------------------------
// Underlay ingress: pass-through of everything that is not overlay traffic for us

#[test]
fn non_overlay_traffic_passes_untouched() {
    in_private_netns(|| {
        let env = Env::new();
        let mut arp = eth(BCAST, GW_MAC, 0x0806);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&GW_MAC);
        arp.extend_from_slice(&[10, 0, 1, 1]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&LOCAL_IP);
        env.expect_pass(&arp, Counter::PassNonIp);

        let mut v6 = eth(LOCAL_MAC, GW_MAC, 0x86dd);
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        v6.extend_from_slice(&[0xfe; 32]);
        v6.extend(udp(1000, 4789, 0));
        // Outer IPv6 to a data plane whose VTEP is IPv4: not ours.
        env.expect_pass(&v6, Counter::PassNotForUs);
        env.expect_pass(&v6[..14 + 39], Counter::PassTruncated);

        // ssh (TCP 22) to the local VTEP address.
        let mut ssh = eth(LOCAL_MAC, GW_MAC, 0x0800);
        ssh.extend(ipv4(REMOTE_IP, LOCAL_IP, 6, 20, 0x4000));
        ssh.extend_from_slice(&[
            0xc0, 0x00, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ]);
        ssh.extend_from_slice(&[0, 0, 0, 0]);
        env.expect_pass(&ssh, Counter::PassNotForUs);

        // ICMP echo to the local VTEP address.
        let mut icmp = eth(LOCAL_MAC, GW_MAC, 0x0800);
        icmp.extend(ipv4(REMOTE_IP, LOCAL_IP, 1, 8, 0));
        icmp.extend_from_slice(&[8, 0, 0xf7, 0xfe, 0, 1, 0, 0]);
        env.expect_pass(&icmp, Counter::PassNotForUs);

        // DNS: UDP to us on a port that is not an overlay port.
        let dns = outer(
            LOCAL_MAC,
            GW_MAC,
            REMOTE_IP,
            LOCAL_IP,
            5353,
            53,
            &[],
            &[0; 12],
        );
        env.expect_pass(&dns, Counter::PassOtherUdp);

        // VXLAN addressed to another VTEP: not ours to take.
        let inner = inner_frame(INNER_B, 10);
        let other = outer(
            LOCAL_MAC,
            GW_MAC,
            REMOTE_IP,
            [10, 0, 1, 99],
            51000,
            4789,
            &vxlan(VNI_VXLAN),
            &inner,
        );
        env.expect_pass(&other, Counter::PassNotForUs);

        // A non-first fragment has no UDP header to judge it by: the kernel reassembles.
        let mut frag = vxlan_frame(4789, VNI_VXLAN, &inner);
        frag[20..22].copy_from_slice(&0x00b9u16.to_be_bytes());
        fix_ipv4_checksum(&mut frag, 14);
        env.expect_pass(&frag, Counter::PassFragment);
    });
}

#[test]
fn programs_pass_everything_until_configured() {
    in_private_netns(|| {
        let mut env = Env::new();
        env.obj.set_config(Config::default()).unwrap();
        let frame = vxlan_frame(4789, VNI_VXLAN, &inner_frame(INNER_B, 10));
        env.expect_pass(&frame, Counter::PassDisabled);
        let out = env.egress(&inner_frame(INNER_B, 10), Counter::PassDisabled);
        assert_eq!(action_name(out.action), action_name(XDP_PASS));
    });
}

// ---------------------------------------------------------------------------------------------
// Underlay ingress: bad input

/// Cutting a valid frame short at every length: until the UDP header is complete we cannot
/// tell it is ours, so it is passed (the kernel drops it); after that the IP length no longer
/// matches the frame and it is a counted drop.
#[test]
fn truncation_at_every_length() {
    // The same verdicts with the fast path on: validation comes before any redirect.
    for fast in [false, true] {
        in_private_netns(move || truncation_at_every_length_in(fast));
    }
}

fn truncation_at_every_length_in(fast: bool) {
    {
        let mut env = Env::new();
        env.set_fast(fast);
        let vx = vxlan_frame(4789, VNI_VXLAN, &inner_frame(INNER_B, 18));
        let ge = geneve_frame(VNI_GENEVE_OPT, &GENEVE_OPT, &inner_frame(INNER_B, 18));
        for full in [vx, ge] {
            // The kernel refuses test input shorter than an Ethernet header.
            for len in 14..full.len() {
                let cut = &full[..len];
                if len < 14 + 20 + 8 {
                    env.expect_pass(cut, Counter::PassTruncated);
                } else {
                    env.expect_drop(cut, Counter::DropIpLength);
                }
            }
        }
        // Behind a VLAN tag, a cut inside the tag.
        let mut tagged = eth(LOCAL_MAC, GW_MAC, 0x8100);
        tagged.extend_from_slice(&[0, 0x64, 0x08]);
        env.expect_pass(&tagged, Counter::PassTruncated);
    }
}

/// Frames whose IP and UDP lengths agree with a truncated tunnel header or inner frame, as a
/// broken or hostile sender would make them: cut at each header boundary inside the tunnel.
#[test]
fn consistent_truncation_inside_the_tunnel() {
    for fast in [false, true] {
        in_private_netns(move || consistent_truncation_inside_the_tunnel_in(fast));
    }
}

fn consistent_truncation_inside_the_tunnel_in(fast: bool) {
    {
        let mut env = Env::new();
        env.set_fast(fast);
        let inner = inner_frame(INNER_B, 18);
        // VXLAN header cut at every byte.
        for n in 0..8 {
            let f = to_us(4789, &vxlan(VNI_VXLAN)[..n], &[]);
            env.expect_drop(&f, Counter::DropTruncated);
        }
        // GENEVE base header cut at every byte.
        for n in 0..8 {
            let g = geneve(VNI_GENEVE, &[]);
            let f = to_us(6081, &g[..n], &[]);
            env.expect_drop(&f, Counter::DropTruncated);
        }
        // Inner Ethernet header cut at every byte, after VXLAN and after GENEVE.
        for n in 0..14 {
            env.expect_drop(
                &vxlan_frame(4789, VNI_VXLAN, &inner[..n]),
                Counter::DropInnerTruncated,
            );
            env.expect_drop(
                &geneve_frame(VNI_GENEVE, &[], &inner[..n]),
                Counter::DropInnerTruncated,
            );
        }
    }
}

#[test]
fn wrong_vxlan_flags_are_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 10);
        let cases: [(usize, u8); 5] = [
            (0, 0x00), // I flag clear
            (0, 0x88), // I flag plus a reserved flag
            (1, 0x02), // reserved (0x01 there is the drained mark, see below)
            (3, 0x80), // reserved
            (7, 0x01), // reserved byte after the VNI
        ];
        for (off, val) in cases {
            let mut hdr = vxlan(VNI_VXLAN);
            hdr[off] = val;
            let f = to_us(4789, &hdr, &inner);
            env.expect_drop(&f, Counter::DropVxlanFlags);
        }
    });
}

#[test]
fn unknown_vni_and_encapsulation_mismatch_are_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 10);
        env.expect_drop(
            &vxlan_frame(4789, VNI_UNKNOWN, &inner),
            Counter::DropUnknownVni,
        );
        env.expect_drop(
            &geneve_frame(VNI_UNKNOWN, &[], &inner),
            Counter::DropUnknownVni,
        );
        // VNI 10 is a VXLAN segment: GENEVE frames claiming it are not accepted.
        env.expect_drop(
            &geneve_frame(VNI_VXLAN, &[], &inner),
            Counter::DropEncapMismatch,
        );
        env.expect_drop(
            &vxlan_frame(4789, VNI_GENEVE, &inner),
            Counter::DropEncapMismatch,
        );
    });
}

#[test]
fn udp_length_disagreeing_with_ip_length_is_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        let good = vxlan_frame(4789, VNI_VXLAN, &inner_frame(INNER_B, 10));
        let udp_len = u16::from_be_bytes([good[38], good[39]]);
        for bad in [udp_len - 1, udp_len + 1, 8, 0, 0xffff] {
            let mut f = good.clone();
            f[38..40].copy_from_slice(&bad.to_be_bytes());
            env.expect_drop(&f, Counter::DropUdpLength);
        }
        // IP total length shorter than its own header plus UDP.
        let mut f = good.clone();
        f[16..18].copy_from_slice(&24u16.to_be_bytes());
        fix_ipv4_checksum(&mut f, 14);
        env.expect_drop(&f, Counter::DropIpLength);
    });
}

#[test]
fn ipv4_options_fragments_and_bad_checksums_are_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 10);
        let good = vxlan_frame(4789, VNI_VXLAN, &inner);

        // IHL 6: one word of options (NOP NOP NOP EOL) before the UDP header.
        let mut opt = good[..14 + 20].to_vec();
        opt.extend_from_slice(&[1, 1, 1, 0]);
        opt.extend_from_slice(&good[34..]);
        opt[14] = 0x46;
        let tot = u16::from_be_bytes([opt[16], opt[17]]) + 4;
        opt[16..18].copy_from_slice(&tot.to_be_bytes());
        fix_ipv4_checksum(&mut opt, 14);
        env.expect_drop(&opt, Counter::DropIpv4Options);

        // First fragment (MF set, offset 0) of a VXLAN datagram.
        let mut mf = good.clone();
        mf[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        fix_ipv4_checksum(&mut mf, 14);
        env.expect_drop(&mf, Counter::DropIpv4Fragment);

        let mut bad = good.clone();
        bad[24] ^= 0x01;
        env.expect_drop(&bad, Counter::DropIpv4Checksum);
    });
}

#[test]
fn bad_geneve_headers_are_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 10);
        let base = geneve(VNI_GENEVE, &[]);

        let mut v1 = base.clone();
        v1[0] = 0x40; // version 1
        let f = to_us(6081, &v1, &inner);
        env.expect_drop(&f, Counter::DropGeneveVersion);

        // Option length claims more words than the datagram holds.
        let mut long = base.clone();
        long[0] = 0x3f; // 252 bytes of options
        let f = to_us(6081, &long, &inner[..20]);
        env.expect_drop(&f, Counter::DropGeneveOptLen);

        let mut proto = base.clone();
        proto[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        let f = to_us(6081, &proto, &inner);
        env.expect_drop(&f, Counter::DropGeneveProto);

        let mut crit = geneve(VNI_GENEVE, &[0x01, 0x02, 0x83, 0x00]);
        crit[1] = 0x40; // C: a critical option is present
        let f = to_us(6081, &crit, &inner);
        env.expect_drop(&f, Counter::DropGeneveCritical);

        let mut oam = base.clone();
        oam[1] = 0x80;
        let f = to_us(6081, &oam, &inner);
        env.expect_drop(&f, Counter::DropGeneveOam);
    });
}

#[test]
fn inner_frames_over_the_overlay_mtu_are_dropped() {
    in_private_netns(|| {
        let env = Env::new();
        // Overlay MTU for VXLAN on a 1500-byte underlay: 1450 bytes of inner L3 packet.
        let fits = inner_frame(INNER_B, 1450 - 28);
        let out = env.ingress(&vxlan_frame(4789, VNI_VXLAN, &fits), Counter::RxVxlan);
        assert_eq!(out.frame, fits);
        let over = inner_frame(INNER_B, 1451 - 28);
        env.expect_drop(
            &vxlan_frame(4789, VNI_VXLAN, &over),
            Counter::DropInnerTooBig,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Overlay egress: encapsulation

/// The outer headers the egress program must build for `inner`, with `src_port` as the outer
/// UDP source port (the one field the test cannot know in advance: it is a flow hash).
fn expected_encap(tunnel: &[u8], port: u16, inner: &[u8], src_port: u16) -> Vec<u8> {
    let mut f = eth(GW_MAC, LOCAL_MAC, 0x0800);
    let payload = 8 + tunnel.len() + inner.len();
    // DF set, ID 0, TTL 64: what the program promises.
    let mut ip = ipv4(LOCAL_IP, REMOTE_IP, 17, payload, 0x4000);
    ip[4] = 0;
    ip[5] = 0;
    ip[10] = 0;
    ip[11] = 0;
    let c = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(ip);
    let mut u = udp(src_port, port, tunnel.len() + inner.len());
    u[6] = 0; // checksum zero (RFC 7348 / RFC 8926 allow it over IPv4)
    u[7] = 0;
    f.extend(u);
    f.extend_from_slice(tunnel);
    f.extend_from_slice(inner);
    f
}

fn encapped_meta(encap: Encap, vni: u32) -> XdpMeta {
    XdpMeta {
        magic: ovl_common::XDP_META_MAGIC,
        kind: MetaKind::Encapped as u8,
        encap: encap as u8,
        vni,
        peer_ip: be(REMOTE_IP),
        peer_port_be: 0,
        flags: 0,
    }
}

fn src_port_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34], frame[35]])
}

#[test]
fn vxlan_encap_builds_exact_outer_headers() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 300);
        let out = env.egress(&inner, Counter::TxVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        let sport = src_port_of(&out.frame);
        assert!(
            sport >= ovl_common::SRC_PORT_MIN,
            "source port {sport} outside the dynamic range"
        );
        assert_eq!(
            out.frame,
            expected_encap(&vxlan(VNI_VXLAN), 4789, &inner, sport)
        );
        assert_eq!(
            inet_checksum(&out.frame[14..34]),
            0,
            "outer IPv4 checksum verifies"
        );
        assert_meta(&out, encapped_meta(Encap::Vxlan, VNI_VXLAN));
    });
}

#[test]
fn geneve_encap_without_and_with_an_option() {
    in_private_netns(|| {
        let mut env = Env::new();
        let inner = inner_frame(INNER_B, 300);
        for (vni, opt) in [(VNI_GENEVE, &[][..]), (VNI_GENEVE_OPT, &GENEVE_OPT[..])] {
            env.port_vni(vni);
            let out = env.egress(&inner, Counter::TxGeneve);
            assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
            let sport = src_port_of(&out.frame);
            assert_eq!(
                out.frame,
                expected_encap(&geneve(vni, opt), 6081, &inner, sport)
            );
            assert_eq!(inet_checksum(&out.frame[14..34]), 0);
            assert_meta(&out, encapped_meta(Encap::Geneve, vni));
        }
    });
}

#[test]
fn outer_source_port_is_a_stable_hash_of_the_inner_flow() {
    in_private_netns(|| {
        let env = Env::new();
        let mut ports = std::collections::BTreeSet::new();
        for sport in 40000..40032u16 {
            let inner = inner_udp(
                INNER_B,
                INNER_A,
                [192, 168, 0, 4],
                [192, 168, 0, 10],
                sport,
                80,
                20,
            );
            let first = src_port_of(&env.egress(&inner, Counter::TxVxlan).frame);
            let again = src_port_of(&env.egress(&inner, Counter::TxVxlan).frame);
            assert_eq!(first, again, "one flow, one outer source port");
            assert!(first >= ovl_common::SRC_PORT_MIN);
            ports.insert(first);
        }
        // 32 flows spread over 16384 ports: a hash that ignored the inner ports would give 1.
        assert!(
            ports.len() >= 24,
            "only {} distinct source ports for 32 flows",
            ports.len()
        );
    });
}

#[test]
fn broadcast_multicast_and_unknown_unicast_go_to_userspace_for_flooding() {
    in_private_netns(|| {
        let env = Env::new();
        let flood = XdpMeta {
            magic: ovl_common::XDP_META_MAGIC,
            kind: MetaKind::Flood as u8,
            encap: Encap::Vxlan as u8,
            vni: VNI_VXLAN,
            peer_ip: [0; 16],
            peer_port_be: 0,
            flags: 0,
        };
        for (dst, counter) in [
            (BCAST, Counter::TxFlood),
            ([0x01, 0x00, 0x5e, 0, 0, 0xfb], Counter::TxFlood),
            ([0x33, 0x33, 0, 0, 0, 1], Counter::TxFlood),
            (INNER_UNKNOWN, Counter::TxUnknownUnicast),
        ] {
            let inner = inner_frame(dst, 40);
            let out = env.egress(&inner, counter);
            assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
            assert_eq!(out.frame, inner, "flooded frames stay unencapsulated");
            assert_meta(&out, flood);
        }
    });
}

#[test]
fn unresolved_next_hop_goes_to_userspace() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_NO_NH, 40);
        let out = env.egress(&inner, Counter::TxNoNeighbour);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
        let meta = out.xdp_meta().expect("metadata");
        assert_eq!(meta.kind, MetaKind::NoNeighbour as u8);
        assert_eq!(meta.peer_ip, be(NO_NH_IP));
    });
}

#[test]
fn egress_bad_input_is_counted() {
    in_private_netns(|| {
        let mut env = Env::new();
        // Exactly the overlay MTU encapsulates to a full-size underlay packet...
        let fits = inner_frame(INNER_B, 1450 - 28);
        let out = env.egress(&fits, Counter::TxVxlan);
        assert_eq!(out.frame.len(), 14 + MTU as usize);
        // ...one byte more would not fit. With DF set the frame goes up, marked, for the
        // worker's ICMP "fragmentation needed"; still counted as the drop it is.
        let over = inner_frame(INNER_B, 1451 - 28);
        let out = env.egress(&over, Counter::DropTxTooBig);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, over);
        assert_eq!(
            out.xdp_meta().expect("metadata").kind,
            MetaKind::TooBig as u8
        );
        // Without DF nobody is told: a plain drop.
        let mut no_df = over.clone();
        no_df[14 + 6] = 0;
        fix_ipv4_checksum(&mut no_df, 14);
        let out = env.egress(&no_df, Counter::DropTxTooBig);
        assert_eq!(action_name(out.action), action_name(XDP_DROP));
        assert_eq!(out.frame, no_df);

        // With the GENEVE option, the overlay MTU is 8 bytes smaller.
        env.obj
            .set_port(
                env.lo,
                PortInfo {
                    vni: VNI_GENEVE_OPT,
                    xsk_base: PORT_XSK_BASE,
                },
            )
            .unwrap();
        env.egress(&inner_frame(INNER_B, 1442 - 28), Counter::TxGeneve);
        env.egress(&inner_frame(INNER_B, 1443 - 28), Counter::DropTxTooBig);

        // A port whose VNI was removed.
        env.obj.remove_vni(VNI_GENEVE_OPT).unwrap();
        let out = env.egress(&fits, Counter::DropTxUnknownVni);
        assert_eq!(action_name(out.action), action_name(XDP_DROP));

        // A frame from an interface that is not an overlay port.
        ip(&["link", "add", "np0", "type", "veth", "peer", "name", "np1"]);
        let np0 = ifindex("np0");
        let before = env.obj.counters().unwrap();
        let out = env
            .obj
            .test_run(Program::OverlayEgress, &fits, np0, 0)
            .unwrap();
        assert_eq!(action_name(out.action), action_name(XDP_DROP));
        let moved = env.obj.counters().unwrap().since(&before).nonzero();
        assert_eq!(moved, vec![(Counter::DropTxNoPort, 1)]);
    });
}

/// What one side encapsulates, the other decapsulates back to the same frame.
#[test]
fn encap_then_decap_round_trips() {
    in_private_netns(|| {
        let env = Env::new();
        let inner = inner_frame(INNER_B, 777);
        let wire = env.egress(&inner, Counter::TxVxlan).frame;
        let peer = Env::peer();
        let out = peer.ingress(&wire, Counter::RxVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
        let meta = out.xdp_meta().unwrap();
        assert_eq!((meta.vni, meta.peer_ip), (VNI_VXLAN, be(LOCAL_IP)));
    });
}

#[test]
fn userspace_encap_matches_the_program_byte_for_byte() {
    // Flood copies are encapsulated by the workers; they must be indistinguishable from what
    // the egress program writes for the same frame and remote.
    in_private_netns(|| {
        let mut env = Env::new();
        let cases: [(u32, Encap, u16, Option<[u8; 8]>); 3] = [
            (VNI_VXLAN, Encap::Vxlan, 4789, None),
            (VNI_GENEVE, Encap::Geneve, 6081, None),
            (VNI_GENEVE_OPT, Encap::Geneve, 6081, Some(GENEVE_OPT)),
        ];
        for (vni, encap, port, opt) in cases {
            env.port_vni(vni);
            for inner in [
                inner_frame(INNER_B, 300),
                inner_udp(
                    INNER_B,
                    INNER_A,
                    [192, 168, 0, 4],
                    [192, 168, 0, 10],
                    40001,
                    53,
                    64,
                ),
                inner_frame(INNER_B, 0),
                // The flood path's real inputs, as unicast so the program encapsulates them
                // too: TCP (its ports feed the outer source port's hash) and an ARP reply.
                inner_tcp(
                    INNER_B,
                    [192, 168, 0, 4],
                    [192, 168, 0, 10],
                    40002,
                    80,
                    TCP_ACK,
                ),
                inner_arp(INNER_B, 2),
            ] {
                let counter = match encap {
                    Encap::Vxlan => Counter::TxVxlan,
                    Encap::Geneve => Counter::TxGeneve,
                };
                let out = env.egress(&inner, counter);
                let outer = dataplane::encap::Outer {
                    src_mac: LOCAL_MAC,
                    dst_mac: GW_MAC,
                    src_ip: LOCAL_IP.into(),
                    dst_ip: REMOTE_IP.into(),
                    udp_port: port,
                    vni,
                    encap,
                    geneve_option: opt,
                };
                let mut buf = vec![0u8; 2048];
                let n = dataplane::encap::encapsulate(&inner, &outer, &mut buf).unwrap();
                assert_eq!(buf[..n], out.frame[..], "vni {vni}");
            }
        }
    });
}

#[test]
fn a_flooded_broadcast_arp_encapsulated_in_userspace_decapsulates_at_the_peer() {
    // What the program does not encapsulate (it goes to the workers) cannot be compared with
    // its output; the receiving program is the judge instead: the copy must come out whole.
    in_private_netns(|| {
        let env = Env::new();
        let request = inner_arp(BCAST, 1);
        let out = env.egress(&request, Counter::TxFlood);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        let outer = dataplane::encap::Outer {
            src_mac: LOCAL_MAC,
            dst_mac: GW_MAC,
            src_ip: LOCAL_IP.into(),
            dst_ip: REMOTE_IP.into(),
            udp_port: 4789,
            vni: VNI_VXLAN,
            encap: Encap::Vxlan,
            geneve_option: None,
        };
        let mut buf = vec![0u8; 2048];
        let n = dataplane::encap::encapsulate(&request, &outer, &mut buf).unwrap();
        let peer = Env::peer();
        let got = peer.ingress(&buf[..n], Counter::RxVxlan);
        assert_eq!(action_name(got.action), action_name(XDP_REDIRECT));
        assert_eq!(got.frame, request);
        let meta = got.xdp_meta().unwrap();
        assert_eq!((meta.vni, meta.peer_ip), (VNI_VXLAN, be(LOCAL_IP)));
    });
}

/// An ARP packet (`op` 1 request, 2 reply) from INNER_A's 192.168.0.4 about 192.168.0.10.
fn inner_arp(dst: [u8; 6], op: u16) -> Vec<u8> {
    let mut f = eth(dst, INNER_A, 0x0806);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&INNER_A);
    f.extend_from_slice(&[192, 168, 0, 4]);
    f.extend_from_slice(if op == 1 { &[0; 6] } else { &dst });
    f.extend_from_slice(&[192, 168, 0, 10]);
    f
}

// ---------------------------------------------------------------------------------------------
// The fast path ("xdp" mode): ingress redirect for known sources, learning, TC encapsulation

use dataplane::testrun::{TC_ACT_OK, TC_ACT_REDIRECT};

impl Env {
    /// The same programs in "xdp" mode (fast path on), sending encapsulated frames to `lo`.
    fn fast() -> Env {
        let mut env = Env::new();
        env.set_fast(true);
        env
    }

    fn set_fast(&mut self, on: bool) {
        self.obj
            .set_config(Config {
                local_ip: be(LOCAL_IP),
                underlay_mtu: MTU,
                enabled: 1,
                fast_path: u8::from(on),
                local_mac: LOCAL_MAC,
                underlay_ifindex: self.lo,
                ..Config::default()
            })
            .unwrap();
    }

    /// A veth pair `fp0`/`fp1` whose `fp0` the device map reaches for `vni`.
    fn port_dev(&mut self, vni: u32) {
        ip(&["link", "add", "fp0", "type", "veth", "peer", "name", "fp1"]);
        ip(&["link", "set", "fp0", "up"]);
        ip(&["link", "set", "fp1", "up"]);
        self.obj.set_port_dev(vni, ifindex("fp0")).unwrap();
    }

    /// Runs the TC program on `frame` and checks that exactly `counter` moved, by one.
    fn tc(&self, frame: &[u8], counter: Counter) -> dataplane::testrun::TestRun {
        let before = self.obj.counters().unwrap();
        let out = self.obj.test_run_tc(frame).expect("TC test run");
        let moved = self.obj.counters().unwrap().since(&before).nonzero();
        assert_eq!(
            moved,
            vec![(counter, 1)],
            "expected exactly {} to move (TC verdict {})",
            counter.name(),
            out.action
        );
        out
    }

    /// TC must hand `frame` on unchanged, counted as `tc_pass`.
    fn tc_expect_pass(&self, frame: &[u8], what: &str) {
        let out = self.tc(frame, Counter::TcPass);
        assert_eq!(out.action, TC_ACT_OK, "{what}: handed on");
        assert_eq!(out.frame, frame, "{what}: untouched");
    }
}

/// A VXLAN frame on VNI_VXLAN from VTEP `from` whose inner source MAC is `src`.
fn from_vtep(from: [u8; 4], src: [u8; 6]) -> (Vec<u8>, Vec<u8>) {
    from_vtep_sized(from, src, 100)
}

/// The same with `payload` bytes of inner UDP payload.
fn from_vtep_sized(from: [u8; 4], src: [u8; 6], payload: usize) -> (Vec<u8>, Vec<u8>) {
    let inner = inner_udp(
        INNER_UNKNOWN,
        src,
        [192, 168, 0, 4],
        [192, 168, 0, 10],
        40000,
        5201,
        payload,
    );
    let frame = outer(
        LOCAL_MAC,
        GW_MAC,
        from,
        LOCAL_IP,
        51000,
        4789,
        &vxlan(VNI_VXLAN),
        &inner,
    );
    (frame, inner)
}

fn learn_meta(peer: [u8; 4], flags: u16) -> XdpMeta {
    XdpMeta {
        peer_ip: be(peer),
        flags,
        ..decapped_meta(Encap::Vxlan, VNI_VXLAN)
    }
}

#[test]
fn fast_path_redirects_known_sources_to_the_port_and_hands_new_and_moved_ones_to_the_workers() {
    in_private_netns(|| {
        let mut env = Env::fast();
        env.port_dev(VNI_VXLAN);

        // INNER_B is known behind REMOTE_IP: straight to the overlay port, decapsulated.
        let (frame, inner) = from_vtep(REMOTE_IP, INNER_B);
        let out = env.ingress(&frame, Counter::RxFastVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
        assert!(out.meta.is_empty(), "no metadata on the fast path");

        // A new source goes to the workers, flagged for learning.
        let (frame, inner) = from_vtep(REMOTE_IP, INNER_A);
        let out = env.ingress(&frame, Counter::RxVxlan);
        assert_eq!(out.frame, inner);
        assert_meta(&out, learn_meta(REMOTE_IP, ovl_common::META_FLAG_LEARN));

        // A known source seen behind another VTEP has moved: to the workers, flagged, with the
        // new VTEP in the metadata (one frame is enough for the FDB to follow).
        let (frame, _) = from_vtep(NO_NH_IP, INNER_B);
        let out = env.ingress(&frame, Counter::RxVxlan);
        assert_meta(&out, learn_meta(NO_NH_IP, ovl_common::META_FLAG_LEARN));

        // Static entries never move: the fast path keeps carrying them.
        env.obj
            .set_fdb(
                FdbKey::new(VNI_VXLAN, INNER_NO_NH),
                FdbEntry {
                    remote: be(REMOTE_IP),
                    flags: ovl_common::FDB_FLAG_STATIC,
                    _pad: 0,
                    seen_ns: 0,
                },
            )
            .unwrap();
        let (frame, _) = from_vtep(NO_NH_IP, INNER_NO_NH);
        env.ingress(&frame, Counter::RxFastVxlan);

        // Multicast and all-zero sources are never learned, so never flagged either.
        for src in [[0x03, 0, 0, 0, 0, 1], [0; 6]] {
            let (frame, _) = from_vtep(REMOTE_IP, src);
            env.ingress(&frame, Counter::RxFastVxlan);
        }

        // The port not ready (no device map entry): the workers deliver, counted as fallback.
        env.obj.remove_port_dev(VNI_VXLAN).unwrap();
        let (frame, _) = from_vtep(REMOTE_IP, INNER_B);
        let out = env.ingress(&frame, Counter::RxFastFallback);
        assert_meta(&out, learn_meta(REMOTE_IP, 0));

        // "afxdp" mode: every frame to the workers, known sources unflagged.
        env.set_fast(false);
        let out = env.ingress(&frame, Counter::RxVxlan);
        assert_meta(&out, learn_meta(REMOTE_IP, 0));
    });
}

#[test]
fn a_new_source_in_a_frame_no_socket_could_take_is_delivered_unlearned() {
    in_private_netns(|| {
        let mut env = Env::fast();
        env.port_dev(VNI_VXLAN);
        // Sockets take frames of up to 200 bytes here (3840 with 4 KB UMEM frames).
        env.obj
            .set_config(Config {
                local_ip: be(LOCAL_IP),
                underlay_mtu: MTU,
                enabled: 1,
                fast_path: 1,
                local_mac: LOCAL_MAC,
                underlay_ifindex: env.lo,
                xsk_frame_max: 200,
                ..Config::default()
            })
            .unwrap();
        let big = |src| from_vtep_sized(REMOTE_IP, src, 300);
        // New source, 342-byte inner frame: delivered by the fast path, not learned.
        let (frame, inner) = big(INNER_A);
        let out = env.ingress(&frame, Counter::RxFastUnlearned);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert_eq!(out.frame, inner);
        assert!(out.meta.is_empty(), "no metadata on the fast path");
        // The same source in a short frame goes to the workers to be learned.
        let (frame, _) = from_vtep(REMOTE_IP, INNER_A);
        let out = env.ingress(&frame, Counter::RxVxlan);
        assert_meta(&out, learn_meta(REMOTE_IP, ovl_common::META_FLAG_LEARN));
        // A known source's long frame is ordinary fast-path traffic.
        let (frame, _) = big(INNER_B);
        env.ingress(&frame, Counter::RxFastVxlan);
        // With no limit known (0), the old behaviour: to the workers.
        env.set_fast(true);
        let (frame, _) = big(INNER_A);
        env.ingress(&frame, Counter::RxVxlan);
    });
}

#[test]
fn known_sources_refresh_their_last_seen_stamp_at_most_every_quarter_second() {
    in_private_netns(|| {
        let mut env = Env::fast();
        env.port_dev(VNI_VXLAN);
        let key = FdbKey::new(VNI_VXLAN, INNER_B);
        let (frame, _) = from_vtep(REMOTE_IP, INNER_B);

        let t0 = dataplane::daemon::monotonic_ns();
        env.ingress(&frame, Counter::RxFastVxlan);
        let t1 = dataplane::daemon::monotonic_ns();
        let seen = env.obj.fdb(key).unwrap().expect("entry").seen_ns;
        assert!(
            (t0..=t1).contains(&seen),
            "stamped now: {t0} <= {seen} <= {t1}"
        );

        // Within the refresh interval the entry is only read.
        env.ingress(&frame, Counter::RxFastVxlan);
        assert_eq!(env.obj.fdb(key).unwrap().expect("entry").seen_ns, seen);

        // An older stamp is refreshed by the next frame.
        let old = t0 - ovl_common::FDB_SEEN_REFRESH_NS - 1_000_000;
        let stamp_old = |env: &mut Env| {
            let e = FdbEntry {
                remote: be(REMOTE_IP),
                flags: 0,
                _pad: 0,
                seen_ns: old,
            };
            env.obj.set_fdb(key, e).unwrap();
        };
        stamp_old(&mut env);
        env.ingress(&frame, Counter::RxFastVxlan);
        assert!(env.obj.fdb(key).unwrap().expect("entry").seen_ns >= t1);

        // A frame of a moved source leaves the stamp to userspace's learning.
        stamp_old(&mut env);
        let (moved, _) = from_vtep(NO_NH_IP, INNER_B);
        env.ingress(&moved, Counter::RxVxlan);
        assert_eq!(env.obj.fdb(key).unwrap().expect("entry").seen_ns, old);
    });
}

#[test]
fn tc_encapsulates_known_unicast_exactly_as_the_xdp_program_does() {
    in_private_netns(|| {
        let mut env = Env::fast();
        let inner = inner_frame(INNER_B, 300);
        let out = env.tc(&inner, Counter::TcTxVxlan);
        assert_eq!(out.action, TC_ACT_REDIRECT, "redirected to the underlay");
        let sport = src_port_of(&out.frame);
        assert!(sport >= ovl_common::SRC_PORT_MIN, "source port {sport}");
        assert_eq!(
            out.frame,
            expected_encap(&vxlan(VNI_VXLAN), 4789, &inner, sport)
        );
        assert_eq!(inet_checksum(&out.frame[14..34]), 0, "outer IPv4 checksum");
        // The same flow keeps its source port, other flows get others (ECMP entropy per flow).
        assert_eq!(
            src_port_of(&env.tc(&inner, Counter::TcTxVxlan).frame),
            sport
        );
        let ports: std::collections::HashSet<u16> = (0..8u16)
            .map(|i| {
                let f = inner_udp(
                    INNER_B,
                    INNER_A,
                    [192, 168, 0, 4],
                    [192, 168, 0, 10],
                    40000 + i,
                    5201,
                    100,
                );
                src_port_of(&env.tc(&f, Counter::TcTxVxlan).frame)
            })
            .collect();
        assert!(ports.len() >= 6, "8 flows, source ports {ports:?}");

        for (vni, opt) in [(VNI_GENEVE, &[][..]), (VNI_GENEVE_OPT, &GENEVE_OPT[..])] {
            env.port_vni(vni);
            let out = env.tc(&inner, Counter::TcTxGeneve);
            assert_eq!(out.action, TC_ACT_REDIRECT);
            let sport = src_port_of(&out.frame);
            assert_eq!(
                out.frame,
                expected_encap(&geneve(vni, opt), 6081, &inner, sport)
            );
        }
    });
}

#[test]
fn tc_hands_everything_but_resolved_known_unicast_ipv4_on_unchanged() {
    in_private_netns(|| {
        let mut env = Env::fast();
        env.tc_expect_pass(&inner_frame([0xff; 6], 64), "broadcast");
        env.tc_expect_pass(&inner_frame([0x01, 0, 0x5e, 0, 0, 1], 64), "multicast");
        env.tc_expect_pass(&inner_frame(INNER_UNKNOWN, 64), "unknown unicast");
        env.tc_expect_pass(&inner_frame(INNER_NO_NH, 64), "unresolved next hop");
        let mut arp = eth(INNER_B, INNER_A, 0x0806);
        arp.extend([0u8; 28]);
        env.tc_expect_pass(&arp, "not IPv4 (ARP)");
        // Over the overlay MTU (1450) and not GSO: the XDP program answers or drops it.
        env.tc_expect_pass(&inner_frame(INNER_B, 1450), "too big");
        env.tc_expect_pass(&[0u8; 14], "runt");
        env.set_fast(false);
        env.tc_expect_pass(&inner_frame(INNER_B, 300), "afxdp mode");
    });
}

// ---------------------------------------------------------------------------------------------
// IPv6 VTEPs: outer IPv6 decapsulation (UDP checksum verified) and encapsulation (computed)

const LOCAL6: [u8; 16] = [0xfd, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
const REMOTE6: [u8; 16] = [0xfd, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14];
/// A jumbo underlay, so that inner frames longer than the checksum's 512-byte chunks fit.
const MTU6: u16 = 9000;

impl Env {
    /// The programs with IPv6 VTEPs: local `LOCAL6`, INNER_B behind `REMOTE6`, resolved.
    fn v6(fast: bool, zero_csum_rx: bool) -> Env {
        let mut env = Env::new();
        env.obj
            .set_config(Config {
                local_ip: LOCAL6,
                underlay_mtu: MTU6,
                enabled: 1,
                fast_path: u8::from(fast),
                local_mac: LOCAL_MAC,
                ipv6: 1,
                udp6_zero_csum_rx: u8::from(zero_csum_rx),
                underlay_ifindex: env.lo,
                ..Config::default()
            })
            .unwrap();
        for vni in [VNI_VXLAN, VNI_GENEVE, VNI_GENEVE_OPT] {
            env.obj
                .set_fdb(
                    FdbKey::new(vni, INNER_B),
                    FdbEntry {
                        remote: REMOTE6,
                        flags: 0,
                        _pad: 0,
                        seen_ns: 0,
                    },
                )
                .unwrap();
        }
        env.obj
            .set_nexthop(
                REMOTE6,
                NextHop {
                    mac: GW_MAC,
                    ..Default::default()
                },
            )
            .unwrap();
        env
    }
}

fn outer6(
    from: [u8; 16],
    to: [u8; 16],
    port: u16,
    vni: u32,
    encap: Encap,
) -> dataplane::encap::Outer {
    dataplane::encap::Outer {
        src_mac: GW_MAC,
        dst_mac: LOCAL_MAC,
        src_ip: std::net::Ipv6Addr::from(from).into(),
        dst_ip: std::net::Ipv6Addr::from(to).into(),
        udp_port: port,
        vni,
        encap,
        geneve_option: None,
    }
}

/// `inner` encapsulated by the userspace code (its checksum is checked against `ovl_wire`
/// in the unit tests), from `REMOTE6` to `LOCAL6`.
fn to_us6(port: u16, vni: u32, encap: Encap, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; inner.len() + 128];
    let n =
        dataplane::encap::encapsulate(inner, &outer6(REMOTE6, LOCAL6, port, vni, encap), &mut buf)
            .unwrap();
    buf.truncate(n);
    buf
}

/// The offset of the outer UDP checksum in a frame from `to_us6`.
const CSUM6: usize = 14 + 40 + 6;

/// Inner frames of odd and even lengths, below, at and above the 512-byte chunks and their
/// halvings, up to what BPF_PROG_TEST_RUN takes in one buffer.
fn inner_sizes() -> Vec<Vec<u8>> {
    [0usize, 1, 2, 3, 5, 300, 466, 467, 979, 1400, 3001]
        .iter()
        .map(|&p| inner_frame(INNER_B, p))
        .collect()
}

#[test]
fn ipv6_vteps_decapsulate_with_a_verified_udp_checksum() {
    for fast in [false, true] {
        in_private_netns(move || {
            let env = Env::v6(fast, false);
            for inner in inner_sizes() {
                for (port, vni, encap, counter) in [
                    (4789, VNI_VXLAN, Encap::Vxlan, Counter::RxVxlan),
                    (6081, VNI_GENEVE, Encap::Geneve, Counter::RxGeneve),
                ] {
                    let frame = to_us6(port, vni, encap, &inner);
                    // A new source (INNER_A): to the worker even with the fast path on.
                    let out = env.ingress(&frame, counter);
                    assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
                    assert_eq!(out.frame, inner, "{} bytes inner", inner.len());
                    let meta = out.xdp_meta().expect("metadata");
                    assert_eq!(meta.peer_ip, REMOTE6, "the IPv6 peer, for learning");
                    assert_eq!(meta.vni, vni);
                }
            }
        });
    }
}

#[test]
fn ipv6_checksums_wrong_or_zero_are_dropped_and_zero_only_allowed_when_configured() {
    in_private_netns(|| {
        let env = Env::v6(false, false);
        for inner in inner_sizes() {
            let good = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner);
            // One bit anywhere after the UDP header, the tunnel header or the last byte.
            for at in [CSUM6 + 2, CSUM6 + 6, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x10;
                env.expect_drop(&bad, Counter::DropUdpChecksum);
            }
            // The source address is covered too (the pseudo-header): a spoofed peer fails.
            let mut spoofed = good.clone();
            spoofed[14 + 8 + 15] ^= 1;
            env.expect_drop(&spoofed, Counter::DropUdpChecksum);
            let mut zero = good.clone();
            zero[CSUM6..CSUM6 + 2].copy_from_slice(&[0, 0]);
            env.expect_drop(&zero, Counter::DropUdpZeroChecksum);
        }
        // RFC 6935/6936 zero checksums, when the operator allows them (udp6zerocsumrx).
        let env = Env::v6(false, true);
        let inner = inner_frame(INNER_B, 100);
        let mut zero = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner);
        zero[CSUM6..CSUM6 + 2].copy_from_slice(&[0, 0]);
        let out = env.ingress(&zero, Counter::RxVxlan);
        assert_eq!(out.frame, inner);
        // A wrong non-zero checksum is still wrong.
        let mut bad = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner);
        bad[CSUM6] ^= 1;
        env.expect_drop(&bad, Counter::DropUdpChecksum);
    });
}

#[test]
fn ipv6_extension_headers_other_destinations_and_families_pass() {
    in_private_netns(|| {
        let env = Env::v6(false, false);
        let good = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner_frame(INNER_B, 50));
        // Extension headers before UDP: the kernel's IPv6 layer walks them, not us.
        for nh in [0u8, 43, 44, 60] {
            let mut ext = good.clone();
            ext[14 + 6] = nh;
            env.expect_pass(&ext, Counter::PassIpv6ExtHeaders);
        }
        let mut tcp = good.clone();
        tcp[14 + 6] = 6;
        env.expect_pass(&tcp, Counter::PassNotForUs);
        let mut elsewhere = good.clone();
        elsewhere[14 + 24 + 15] ^= 1;
        env.expect_pass(&elsewhere, Counter::PassNotForUs);
        let mut version = good.clone();
        version[14] = 0x40;
        env.expect_pass(&version, Counter::PassNotForUs);
        let mut other_port = good.clone();
        other_port[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&53u16.to_be_bytes());
        env.expect_pass(&other_port, Counter::PassOtherUdp);
        // IPv4 overlay traffic to an IPv6 VTEP is not ours.
        env.expect_pass(
            &vxlan_frame(4789, VNI_VXLAN, &inner_frame(INNER_B, 50)),
            Counter::PassNotForUs,
        );
    });
}

#[test]
fn ipv6_truncation_at_every_length_and_disagreeing_lengths() {
    in_private_netns(|| {
        let env = Env::v6(false, false);
        for encap in [Encap::Vxlan, Encap::Geneve] {
            let port = if encap == Encap::Vxlan { 4789 } else { 6081 };
            let full = to_us6(port, VNI_VXLAN, encap, &inner_frame(INNER_B, 18));
            for len in 14..full.len() {
                let cut = &full[..len];
                if len < 14 + 40 + 8 {
                    env.expect_pass(cut, Counter::PassTruncated);
                } else {
                    env.expect_drop(cut, Counter::DropIpLength);
                }
            }
        }
        let good = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner_frame(INNER_B, 18));
        let payload = u16::from_be_bytes([good[18], good[19]]);
        let mut short_udp = good.clone();
        short_udp[14 + 44..14 + 46].copy_from_slice(&(payload - 1).to_be_bytes());
        env.expect_drop(&short_udp, Counter::DropUdpLength);
        let mut tiny = good.clone();
        tiny[18..20].copy_from_slice(&7u16.to_be_bytes());
        env.expect_drop(&tiny, Counter::DropIpLength);
        // Consistent lengths around a cut tunnel header: the tunnel's own checks (the
        // checksum is made right for the cut datagram, so only the length can fail).
        let inner = inner_frame(INNER_B, 18);
        let mut cut = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &inner);
        cut.truncate(14 + 40 + 8 + 4);
        let udp_len = (8 + 4) as u16;
        cut[18..20].copy_from_slice(&udp_len.to_be_bytes());
        cut[14 + 44..14 + 46].copy_from_slice(&udp_len.to_be_bytes());
        cut[CSUM6..CSUM6 + 2].copy_from_slice(&[0, 0]);
        let src = std::net::Ipv6Addr::from(REMOTE6);
        let dst = std::net::Ipv6Addr::from(LOCAL6);
        let sum = ovl_wire::checksum::combine(&[
            ovl_wire::checksum::pseudo_header_v6(&src, &dst, 17, u32::from(udp_len)),
            ovl_wire::checksum::data(&cut[14 + 40..]),
        ]);
        cut[CSUM6..CSUM6 + 2].copy_from_slice(&(!sum).to_be_bytes());
        env.expect_drop(&cut, Counter::DropTruncated);
        // Ethernet padding after the IPv6 packet is trimmed, not delivered.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0u8; 20]);
        let out = env.ingress(&padded, Counter::RxVxlan);
        assert_eq!(out.frame, inner);
    });
}

#[test]
fn ipv6_encap_matches_userspace_byte_for_byte_with_a_valid_checksum() {
    in_private_netns(|| {
        let mut env = Env::v6(false, false);
        let cases: [(u32, Encap, u16, Option<[u8; 8]>); 3] = [
            (VNI_VXLAN, Encap::Vxlan, 4789, None),
            (VNI_GENEVE, Encap::Geneve, 6081, None),
            (VNI_GENEVE_OPT, Encap::Geneve, 6081, Some(GENEVE_OPT)),
        ];
        for (vni, encap, port, opt) in cases {
            env.port_vni(vni);
            for inner in inner_sizes() {
                let counter = match encap {
                    Encap::Vxlan => Counter::TxVxlan,
                    Encap::Geneve => Counter::TxGeneve,
                };
                let out = env.egress(&inner, counter);
                let meta = out.xdp_meta().expect("metadata");
                assert_eq!(meta.peer_ip, REMOTE6);
                let mut outer = outer6(LOCAL6, REMOTE6, port, vni, encap);
                outer.src_mac = LOCAL_MAC;
                outer.dst_mac = GW_MAC;
                outer.geneve_option = opt;
                let mut buf = vec![0u8; inner.len() + 128];
                let n = dataplane::encap::encapsulate(&inner, &outer, &mut buf).unwrap();
                assert_eq!(buf[..n], out.frame[..], "vni {vni}, {} bytes", inner.len());
                let eth = ovl_wire::ethernet::Frame::new_checked(&out.frame[..]).unwrap();
                let ip = ovl_wire::ipv6::Packet::new_checked(eth.payload()).unwrap();
                let udp = ovl_wire::udp::Packet::new_checked(ip.payload()).unwrap();
                let pair = ovl_wire::checksum::IpPair::V6 {
                    src: LOCAL6.into(),
                    dst: REMOTE6.into(),
                };
                assert!(
                    udp.verify_checksum(&pair),
                    "vni {vni}, {} bytes",
                    inner.len()
                );
            }
        }
    });
}

#[test]
fn ipv6_overlay_mtu_is_70_bytes_less_and_too_big_ipv6_is_answered() {
    in_private_netns(|| {
        let mut env = Env::v6(false, false);
        env.obj
            .set_config(Config {
                local_ip: LOCAL6,
                underlay_mtu: MTU,
                enabled: 1,
                local_mac: LOCAL_MAC,
                ipv6: 1,
                ..Config::default()
            })
            .unwrap();
        env.port_vni(VNI_VXLAN);
        // 1500 - 70 = 1430 bytes of inner L3 packet fit; one more does not.
        env.egress(&inner_frame(INNER_B, 1430 - 28), Counter::TxVxlan);
        let too_big = inner_frame(INNER_B, 1430 - 28 + 1);
        let out = env.egress(&too_big, Counter::DropTxTooBig);
        assert_eq!(out.xdp_meta().unwrap().kind, MetaKind::TooBig as u8);
        // An inner IPv6 packet too big is answered too (ICMPv6 packet too big), never DF-less.
        let mut v6 = eth(INNER_B, INNER_A, 0x86dd);
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0x05, 0x70, 17, 64]);
        v6.extend_from_slice(&[0xfd; 32]);
        v6.extend(std::iter::repeat_n(0u8, 1392));
        let out = env.egress(&v6, Counter::DropTxTooBig);
        assert_eq!(out.xdp_meta().unwrap().kind, MetaKind::TooBig as u8);
        // Decapsulation refuses inner frames over the port's MTU the same way.
        let big = to_us6(4789, VNI_VXLAN, Encap::Vxlan, &too_big);
        env.expect_drop(&big, Counter::DropInnerTooBig);
    });
}

#[test]
fn tc_hands_everything_on_over_an_ipv6_underlay() {
    // bpf_skb_adjust_room gives GSO packets no outer checksum, which IPv6 needs: the XDP
    // program encapsulates instead.
    in_private_netns(|| {
        let env = Env::v6(true, false);
        env.tc_expect_pass(&inner_frame(INNER_B, 300), "known unicast over IPv6");
    });
}

#[test]
fn ipv6_egress_redirects_to_the_uplink_when_allowed() {
    // "xdp" mode over IPv6 with `tx_redirect`: encapsulated (checksum included) and redirected
    // to the underlay device, counted per VNI; without it, handed to a worker as before.
    in_private_netns(|| {
        let mut env = Env::v6(true, false);
        env.port_vni(VNI_VXLAN);
        env.obj.init_vni_counters(VNI_VXLAN).unwrap();
        let inner = inner_frame(INNER_B, 300);
        let to_worker = env.egress(&inner, Counter::TxVxlan);
        assert_eq!(action_name(to_worker.action), action_name(XDP_REDIRECT));
        let mut cfg = Config {
            local_ip: LOCAL6,
            underlay_mtu: MTU6,
            enabled: 1,
            fast_path: 1,
            local_mac: LOCAL_MAC,
            ipv6: 1,
            underlay_ifindex: env.lo,
            tx_redirect: 1,
            ..Config::default()
        };
        env.obj.set_config(cfg).unwrap();
        let out = env.egress(&inner, Counter::TxFastVxlan);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        assert!(out.xdp_meta().is_none(), "no metadata: not for a socket");
        assert_eq!(
            out.frame, to_worker.frame,
            "the same frame, checksum included"
        );
        // Not without an active uplink.
        cfg.underlay_ifindex = 0;
        env.obj.set_config(cfg).unwrap();
        env.egress(&inner, Counter::TxVxlan);
    });
}

// ---------------------------------------------------------------------------------------------
// Draining (planned switchover): the new owner sends segments of connections it has no socket
// for on to the previous owner; the previous owner serves what it receives so marked.

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// An inner Ethernet/IPv4/TCP frame (20-byte TCP header, no payload) with `flags`.
fn inner_tcp(
    dst: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let mut f = eth(dst, INNER_A, 0x0800);
    f.extend(ipv4(sip, dip, 6, 20, 0x4000));
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

fn drained_vxlan(vni: u32) -> Vec<u8> {
    let mut t = vxlan(vni);
    t[1] = ovl_common::TUN_FLAG_DRAINED;
    t
}

#[test]
fn draining_forwards_segments_without_a_socket_here_and_keeps_the_rest() {
    in_private_netns(|| {
        ip(&["link", "set", "lo", "up"]);
        let mut env = Env::new();
        let vip = [127, 0, 0, 1];
        // A listener and one established connection to it, in this namespace.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let lport = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", lport)).unwrap();
        let cport = client.local_addr().unwrap().port();
        let (_served, _) = listener.accept().unwrap();
        // A connection that ended here, closed by the server first: its socket is in
        // time-wait, and a client reusing the port may be talking to the peer now.
        let ended = std::net::TcpStream::connect(("127.0.0.1", lport)).unwrap();
        let ended_port = ended.local_addr().unwrap().port();
        let (closing, _) = listener.accept().unwrap();
        drop(closing);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(ended);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
        let time_wait_here = tcp.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[1].ends_with(&format!(":{lport:04X}"))
                && f[2].ends_with(&format!(":{ended_port:04X}"))
                && f[3] == "06"
        });
        assert!(
            time_wait_here,
            "the server's socket is in time-wait:\n{tcp}"
        );

        env.obj
            .set_config(Config {
                local_ip: be(LOCAL_IP),
                underlay_mtu: MTU,
                enabled: 1,
                local_mac: LOCAL_MAC,
                underlay_ifindex: env.lo,
                xdp_tx: 1,
                drain: 1,
                ..Config::default()
            })
            .unwrap();
        env.obj
            .set_drain_vip(
                be(vip),
                ovl_common::DrainVip {
                    peer: be(REMOTE_IP),
                    forward: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        let frame = |sport, dport, flags| {
            vxlan_frame(
                4789,
                VNI_VXLAN,
                &inner_tcp(INNER_B, vip, vip, sport, dport, flags),
            )
        };

        // The established connection and a new one (SYN) stay here.
        for f in [frame(cport, lport, TCP_ACK), frame(40001, lport, TCP_SYN)] {
            let out = env.ingress(&f, Counter::RxVxlan);
            assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        }
        // Not TCP, or not to the VIP: here too.
        let udp = vxlan_frame(
            4789,
            VNI_VXLAN,
            &inner_udp(INNER_B, INNER_A, vip, vip, 1, lport, 10),
        );
        env.ingress(&udp, Counter::RxVxlan);
        let other = vxlan_frame(
            4789,
            VNI_VXLAN,
            &inner_tcp(INNER_B, vip, [127, 0, 0, 2], 40002, lport, TCP_ACK),
        );
        env.ingress(&other, Counter::RxVxlan);

        // A segment only a listener would take (or nothing at all): sent on, outer headers
        // rewritten from us to the previous owner, marked, inner frame untouched.
        let unknown = frame(40003, lport, TCP_ACK);
        let no_listener = frame(40004, 1, TCP_ACK | 0x08);
        let time_wait = frame(ended_port, lport, TCP_ACK);
        for f in [&unknown, &no_listener, &unknown, &time_wait] {
            let out = env.ingress(f, Counter::TxDrained);
            assert_eq!(action_name(out.action), "XDP_TX");
            let inner = &f[50..];
            let mut tunnel = vxlan(VNI_VXLAN);
            tunnel[1] = ovl_common::TUN_FLAG_DRAINED;
            let mut want = outer(
                GW_MAC, LOCAL_MAC, LOCAL_IP, REMOTE_IP, 51000, 4789, &tunnel, inner,
            );
            want[22] = 64; // TTL
            fix_ipv4_checksum(&mut want, 14);
            assert_eq!(out.frame, want);
            assert_eq!(
                inet_checksum(&out.frame[14..34]),
                0,
                "valid IPv4 header checksum"
            );
        }
        assert_eq!(
            env.obj.drain_flows().unwrap(),
            3,
            "three connections, one counted twice"
        );
        env.obj.clear_drain_flows().unwrap();
        assert_eq!(env.obj.drain_flows().unwrap(), 0);

        // Without a next hop, or when the uplink takes nothing from XDP: delivered here.
        env.obj.remove_nexthop(be(REMOTE_IP)).unwrap();
        env.ingress(&unknown, Counter::RxDrainUnsent);
        drop(client);
    });
}

#[test]
fn drained_frames_are_served_unlearned_where_the_vip_accepts_them() {
    in_private_netns(|| {
        let env = Env::new();
        let vip = [192, 168, 0, 200];
        let port_mac = [0x02, 0, 0, 0, 0x0c, 0x01];
        let inner = inner_tcp(INNER_UNKNOWN, [192, 168, 0, 4], vip, 40000, 3000, TCP_ACK);
        let f = to_us(4789, &drained_vxlan(VNI_VXLAN), &inner);
        // No entry for the VIP: refused.
        env.expect_drop(&f, Counter::DropDrainRefused);
        let mut env = env;
        env.obj
            .remove_drain_vip(be(vip))
            .expect("removing an absent VIP is fine");
        env.obj
            .set_drain_vip(
                be(vip),
                ovl_common::DrainVip {
                    port_mac,
                    accept: 0,
                    ..Default::default()
                },
            )
            .unwrap();
        env.expect_drop(&f, Counter::DropDrainRefused);
        env.obj
            .set_drain_vip(
                be(vip),
                ovl_common::DrainVip {
                    port_mac,
                    accept: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        let out = env.ingress(&f, Counter::RxDrained);
        assert_eq!(action_name(out.action), action_name(XDP_REDIRECT));
        let mut want = inner.clone();
        want[..6].copy_from_slice(&port_mac);
        assert_eq!(out.frame, want, "the port's MAC as the inner destination");
        let mut meta = decapped_meta(Encap::Vxlan, VNI_VXLAN);
        meta.flags = 0; // never learned: the client lives behind its own VTEP
        assert_meta(&out, meta);
        // Other reserved VXLAN bits are still refused.
        let mut t = drained_vxlan(VNI_VXLAN);
        t[1] |= 0x02;
        env.expect_drop(&to_us(4789, &t, &inner), Counter::DropVxlanFlags);
    });
}
