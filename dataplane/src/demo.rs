//! `dataplane demo`: the XDP programs on real veths and real frames, in a private network
//! namespace that disappears with the demo.
//!
//! ```text
//!   ul1 (10.0.1.1, a remote VTEP) ==veth== ul0 (10.0.1.10, our VTEP; XDP underlay ingress)
//!   ovl0 (192.168.0.10/24, kernel) ==veth== ovl0-dp (XDP overlay egress)
//! ```
//! Single AF_XDP sockets on ul0 queue 0 and ovl0-dp queue 0 stand in for the daemon's workers.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::XdpMode;
use dataplane::{
    describe,
    netns::{self, ifindex, ip, mac_of},
    xdp::{Counters, Program, XdpObject},
    xsk::{Received, Xsk},
};
use ovl_common::{Config, Encap, FdbEntry, FdbKey, NextHop, PortInfo, UdpPortInfo, VniInfo};
use ovl_wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};

const VTEP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const OVERLAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
const OVERLAY_PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 20);
const OVERLAY_PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x14];
const VNI: u32 = 10;
const UNKNOWN_VNI: u32 = 99;
const PORT_XSK_BASE: u32 = 8;

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo loads XDP programs and creates a network namespace: run it as root");
    }
    netns::run_in_private_netns(in_private_netns)??;
    println!("done: the namespace, its veths and the attached programs are gone");
    Ok(())
}

fn vtep(ip: Ipv4Addr) -> ovl_common::VtepAddr {
    ovl_common::v4_mapped(ip.octets())
}

/// Sends `frame` out of `ifname` through an AF_PACKET socket, as a remote host would.
fn inject(ifname: &str, frame: &[u8]) -> Result<()> {
    let idx = ifindex(ifname)?;
    // SAFETY: plain socket creation; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; the fields we need are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = idx as i32;
    addr.sll_halen = 6;
    // SAFETY: the buffer and the address are valid for the given lengths.
    let rc = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        bail!("send on {ifname}: {err}");
    }
    Ok(())
}

/// A VXLAN frame from the remote VTEP to ours carrying `inner`.
fn vxlan_frame(dst_mac: [u8; 6], src_mac: [u8; 6], vni: u32, inner: &[u8]) -> Vec<u8> {
    use ovl_wire::{Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr};
    let vx = VxlanRepr { vni };
    let udp = UdpRepr {
        src_port: 51000,
        dst_port: ovl_common::VXLAN_PORT,
        payload_len: vx.buffer_len() + inner.len(),
    };
    let ipr = Ipv4Repr {
        src_addr: REMOTE_VTEP,
        dst_addr: VTEP,
        protocol: ovl_wire::IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        vlan: None,
        ethertype: EtherType::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ipr.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut ipp = Ipv4Packet::new_unchecked(f.payload_mut());
    ipr.emit(&mut ipp);
    let mut up = UdpPacket::new_unchecked(ipp.payload_mut());
    udp.emit(&mut up);
    let mut vp = VxlanPacket::new_unchecked(up.payload_mut());
    vx.emit(&mut vp);
    vp.payload_mut().copy_from_slice(inner);
    buf
}

fn arp_frame(
    op: ArpOperation,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_mac: [u8; 6],
    dst_ip: Ipv4Addr,
) -> Vec<u8> {
    let arp = ArpRepr {
        operation: op,
        source_hardware_addr: EthernetAddress(src_mac),
        source_protocol_addr: src_ip,
        target_hardware_addr: EthernetAddress(if op == ArpOperation::Request {
            [0; 6]
        } else {
            dst_mac
        }),
        target_protocol_addr: dst_ip,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        vlan: None,
        ethertype: EtherType::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    buf
}

fn show_counters(obj: &XdpObject, since: &Counters) -> Result<String> {
    Ok(obj.counters()?.since(since).to_string())
}

/// Waits for a frame on `xsk` that `want` accepts, skipping others.
fn wait_for(xsk: &mut Xsk, what: &str, want: impl Fn(&Received) -> bool) -> Result<Received> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(r) = xsk.recv(Duration::from_millis(100))?
            && want(&r)
        {
            return Ok(r);
        }
    }
    bail!("no {what} within 3 s")
}

fn print_received(on: &str, r: &Received) {
    let m = r
        .meta
        .as_ref()
        .map(describe::meta)
        .unwrap_or_else(|| "no metadata".into());
    println!("    AF_XDP socket on {on} received [{m}]");
    println!("      {}", describe::frame(&r.frame));
}

fn in_private_netns() -> Result<()> {
    println!("dataplane demo: a private network namespace with two veth pairs");
    println!("  underlay: ul0 ({VTEP}, our VTEP) <-> ul1 ({REMOTE_VTEP}, a remote VTEP)");
    println!("  overlay:  ovl0 ({OVERLAY_IP}/24, kernel side) <-> ovl0-dp (data plane side)");
    // No IPv6 chatter (router solicitations, MLD) in the counters the demo prints. /proc/sys/net
    // answers for the namespace of the thread that opens it, i.e. this private one.
    for knob in ["all", "default"] {
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1")
            .with_context(|| format!("disable IPv6 ({knob}) in the demo namespace"))?;
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"])?;
    ip(&[
        "link", "add", "ovl0", "type", "veth", "peer", "name", "ovl0-dp",
    ])?;
    ip(&["addr", "add", "10.0.1.10/24", "dev", "ul0"])?;
    ip(&["addr", "add", "10.0.1.1/24", "dev", "ul1"])?;
    ip(&["addr", "add", "192.168.0.10/24", "dev", "ovl0"])?;
    let overlay_mtu = 1500 - Encap::Vxlan.overhead(0, false);
    ip(&["link", "set", "ovl0", "mtu", &overlay_mtu.to_string()])?;
    for dev in ["ul0", "ul1", "ovl0", "ovl0-dp"] {
        ip(&["link", "set", dev, "up"])?;
    }

    let started = Instant::now();
    let mut obj = XdpObject::load().context("load the XDP programs")?;
    println!(
        "[1] loaded {} ({} insns) and {} ({} insns): the kernel's verifier accepted both ({} ms)",
        Program::UnderlayIngress.name(),
        obj.instructions(Program::UnderlayIngress)?,
        Program::OverlayEgress.name(),
        obj.instructions(Program::OverlayEgress)?,
        started.elapsed().as_millis()
    );

    let ul0_mac = mac_of("ul0")?;
    let ul1_mac = mac_of("ul1")?;
    let dp_ifindex = ifindex("ovl0-dp")?;
    obj.set_config(Config {
        local_ip: vtep(VTEP),
        underlay_mtu: 1500,
        enabled: 1,
        local_mac: ul0_mac,
        ..Config::default()
    })?;
    obj.set_udp_port(ovl_common::VXLAN_PORT, UdpPortInfo::new(Encap::Vxlan))?;
    obj.set_vni(VNI, VniInfo::new(Encap::Vxlan, ovl_common::VXLAN_PORT))?;
    obj.set_port(
        dp_ifindex,
        PortInfo {
            vni: VNI,
            xsk_base: PORT_XSK_BASE,
        },
    )?;
    obj.set_fdb(
        FdbKey::new(VNI, OVERLAY_PEER_MAC),
        FdbEntry {
            remote: vtep(REMOTE_VTEP),
            flags: ovl_common::FDB_FLAG_STATIC,
            _pad: 0,
            seen_ns: 0,
        },
    )?;
    obj.set_nexthop(
        vtep(REMOTE_VTEP),
        NextHop {
            mac: ul1_mac,
            ..Default::default()
        },
    )?;

    let mut attach = |p: Program, dev: &str| -> Result<()> {
        let mode = match obj.attach(p, dev, XdpMode::Driver) {
            Ok(_) => "driver",
            Err(e) => {
                tracing::warn!(
                    "driver-mode attach of {} to {dev} failed ({e}); using SKB mode",
                    p.name()
                );
                obj.attach(p, dev, XdpMode::Skb)?;
                "SKB"
            }
        };
        println!("[2] attached {} to {dev} in {mode} mode", p.name());
        Ok(())
    };
    attach(Program::UnderlayIngress, "ul0")?;
    attach(Program::OverlayEgress, "ovl0-dp")?;

    let mut ul_xsk = Xsk::open("ul0")?;
    let mut dp_xsk = Xsk::open("ovl0-dp")?;
    obj.set_xsk(0, ul_xsk.fd())?;
    obj.set_xsk(PORT_XSK_BASE, dp_xsk.fd())?;
    println!(
        "[3] VTEP {VTEP}, VXLAN port 4789, VNI {VNI} on ovl0-dp; AF_XDP sockets on ul0/0 and ovl0-dp/0; \
         FDB: {} on VNI {VNI} is behind {REMOTE_VTEP}",
        EthernetAddress(OVERLAY_PEER_MAC)
    );

    // Underlay -> overlay: a VXLAN frame from the remote VTEP is decapsulated.
    let before = obj.counters()?;
    let inner = arp_frame(
        ArpOperation::Request,
        OVERLAY_PEER_MAC,
        OVERLAY_PEER,
        [0xff; 6],
        OVERLAY_IP,
    );
    let outer = vxlan_frame(ul0_mac, ul1_mac, VNI, &inner);
    println!("[4] ul1 sends {}", describe::frame(&outer));
    inject("ul1", &outer)?;
    let got = wait_for(&mut ul_xsk, "decapsulated frame", |r| r.meta.is_some())?;
    print_received("ul0", &got);
    if got.frame != inner {
        bail!("the decapsulated frame differs from what was encapsulated");
    }
    println!("    XDP counters moved: {}", show_counters(&obj, &before)?);

    // Bad and foreign input on the underlay.
    let before = obj.counters()?;
    inject("ul1", &vxlan_frame(ul0_mac, ul1_mac, UNKNOWN_VNI, &inner))?;
    let mut no_i_flag = outer.clone();
    no_i_flag[14 + 20 + 8] = 0;
    inject("ul1", &no_i_flag)?;
    let mut bad_csum = outer.clone();
    bad_csum[14 + 10] ^= 0xff;
    inject("ul1", &bad_csum)?;
    thread::sleep(Duration::from_millis(100));
    println!(
        "[5] ul1 sends VNI {UNKNOWN_VNI} (unknown), VXLAN without the I flag, and a bad IP \
         checksum: XDP drops and counts each: {}",
        show_counters(&obj, &before)?
    );

    // Overlay -> underlay: the kernel pings a host behind the remote VTEP.
    let before = obj.counters()?;
    let mut ping: Child = Command::new("ping")
        .args(["-c", "1", "-W", "2", &OVERLAY_PEER.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("run ping")?;
    println!("[6] the kernel pings {OVERLAY_PEER} through ovl0: first it asks ARP (broadcast)");
    let got = wait_for(&mut dp_xsk, "ARP request from ovl0", |r| {
        EthernetFrame::new_checked(&r.frame[..])
            .map(|f| f.ethertype() == EtherType::Arp)
            .unwrap_or(false)
    })?;
    print_received("ovl0-dp", &got);
    let ovl0_mac = mac_of("ovl0")?;
    let reply = arp_frame(
        ArpOperation::Reply,
        OVERLAY_PEER_MAC,
        OVERLAY_PEER,
        ovl0_mac,
        OVERLAY_IP,
    );
    dp_xsk.send(&reply)?;
    println!(
        "[7] userspace answers through ovl0-dp's AF_XDP TX ring: {}",
        describe::frame(&reply)
    );
    let got = wait_for(&mut dp_xsk, "encapsulated ICMP echo", |r| {
        r.meta
            .is_some_and(|m| m.kind == ovl_common::MetaKind::Encapped as u8)
    })?;
    println!("[8] the kernel sends the ICMP echo as unicast; XDP encapsulates it");
    print_received("ovl0-dp", &got);
    println!("    XDP counters moved: {}", show_counters(&obj, &before)?);
    let _ = ping.kill();
    let _ = ping.wait();

    obj.flush_logs();
    let all = obj.counters()?;
    println!("[9] totals: {all} (drops: {})", all.drops());
    Ok(())
}
