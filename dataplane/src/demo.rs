//! `dataplane demo`: the XDP programs on real veths and real frames, in a private network
//! namespace that disappears with the demo.
//!
//! ```text
//!   ul1 (10.0.1.1, a remote VTEP) ==veth== ul0 (10.0.1.10, our VTEP; XDP underlay ingress)
//!   ovl0 (192.168.0.10/24, kernel) ==veth== ovl0-dp (XDP overlay egress)
//! ```
//! AF_XDP sockets on ul0 queue 0 and ovl0-dp queue 0 stand in for the workers of later stages.

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::programs::XdpMode;
use dataplane::{
    describe,
    xdp::{Counters, Program, XdpObject},
};
use ovl_common::{
    Config, Counter, Encap, FdbEntry, FdbKey, NextHop, PortInfo, UdpPortInfo, VniInfo,
    XDP_META_LEN, XDP_META_MAGIC, XdpMeta,
};
use ovl_wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{LibxdpFlags, SocketConfig, UmemConfig},
};

const VTEP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const OVERLAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
const OVERLAY_PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 20);
const OVERLAY_PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x14];
const VNI: u32 = 10;
const UNKNOWN_VNI: u32 = 99;
const PORT_XSK_BASE: u32 = 8;
const FRAMES: u32 = 64;

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo loads XDP programs and creates a network namespace: run it as root");
    }
    // Namespaces belong to threads: this thread's private namespace, and every veth in it, is
    // destroyed by the kernel when the thread ends, however it ends.
    thread::spawn(|| -> Result<()> {
        // SAFETY: unshare only changes this thread's namespace membership.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        in_private_netns()
    })
    .join()
    .map_err(|_| anyhow!("the demo thread panicked"))??;
    println!("done: the namespace, its veths and the attached programs are gone");
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: c is NUL-terminated.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {name}");
    }
    Ok(idx)
}

/// MAC address of `name` in this thread's namespace (sysfs shows the mounting process's
/// namespace, so ask the kernel through a socket of this one).
fn mac_of(name: &str) -> Result<[u8; 6]> {
    // SAFETY: plain socket creation; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed ifreq is valid; the name is copied in with its NUL kept.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        bail!("interface name {name} too long");
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of our ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        bail!("MAC address of {name}: {err}");
    }
    // SAFETY: on success the kernel filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// An AF_XDP socket on queue 0 of an interface, with its own UMEM: half the frames feed the
/// fill ring, the other half are for transmission.
struct Xsk {
    umem: Umem,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    tx_frames: Vec<FrameDesc>,
}

impl Xsk {
    fn open(ifname: &str) -> Result<Xsk> {
        let (umem, frames) = Umem::new(
            UmemConfig::default(),
            FRAMES.try_into().context("frame count")?,
            false,
        )
        .context("create UMEM")?;
        let cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .build();
        // SAFETY: the UMEM lives in the same struct as the socket's queues and outlives them.
        let (tx, rx, fq_cq) = unsafe { xsk_rs::Socket::new(cfg, &umem, &ifname.parse()?, 0) }
            .with_context(|| format!("AF_XDP socket on {ifname} queue 0"))?;
        let (mut fq, cq) = fq_cq.ok_or_else(|| anyhow!("no fill/completion queue"))?;
        let (fill, tx_frames) = frames.split_at(frames.len() / 2);
        // SAFETY: these frames belong to this UMEM and are owned by nobody else.
        let given = unsafe { fq.produce(fill) };
        if given != fill.len() {
            bail!("fill ring took {given} of {} frames", fill.len());
        }
        Ok(Xsk {
            umem,
            tx,
            rx,
            fq,
            cq,
            tx_frames: tx_frames.to_vec(),
        })
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.rx.fd().as_raw_fd()
    }

    /// Waits up to `timeout` for a frame; returns its metadata (if ours) and bytes, and gives
    /// the frame back to the fill ring.
    fn recv(&mut self, timeout: Duration) -> Result<Option<(Option<XdpMeta>, Vec<u8>)>> {
        let mut desc = [self.tx_frames[0]];
        // SAFETY: `desc` is overwritten by the kernel's descriptor of a frame of our UMEM.
        let n = unsafe {
            self.rx
                .poll_and_consume(&mut desc, timeout.as_millis() as i32)
        }
        .context("poll AF_XDP RX")?;
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the descriptor came from our RX ring, so it points into our UMEM and the
        // kernel is done with the frame until we put it back on the fill ring.
        let data = unsafe { self.umem.data(&desc[0]) };
        let bytes = data.contents().to_vec();
        // The XDP program's metadata sits right before the frame, inside the UMEM's
        // XDP_PACKET_HEADROOM, which copy mode copies along.
        // SAFETY: the frame starts at least XDP_PACKET_HEADROOM (256) bytes into its UMEM
        // chunk, so the XDP_META_LEN bytes before it are inside the mapping.
        let meta: XdpMeta = unsafe {
            std::ptr::read_unaligned(data.contents().as_ptr().sub(XDP_META_LEN).cast::<XdpMeta>())
        };
        // SAFETY: the frame is ours again and goes back to the kernel for reuse.
        unsafe { self.fq.produce(&desc) };
        Ok(Some((
            (meta.magic == XDP_META_MAGIC).then_some(meta),
            bytes,
        )))
    }

    /// Transmits `frame` and waits for its completion.
    fn send(&mut self, frame: &[u8]) -> Result<()> {
        let mut desc = self.tx_frames[0];
        // SAFETY: the TX frames are ours; nobody else writes them.
        unsafe { self.umem.data_mut(&mut desc) }
            .cursor()
            .write_all(frame)
            .context("frame too large for a UMEM chunk")?;
        // SAFETY: the descriptor refers to our UMEM and holds `frame`.
        let sent = unsafe { self.tx.produce_and_wakeup(&[desc]) }.context("AF_XDP TX")?;
        if sent != 1 {
            bail!("TX ring full");
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut done = [desc];
        // SAFETY: completions return our own descriptors.
        while unsafe { self.cq.consume(&mut done) } == 0 {
            if Instant::now() > deadline {
                bail!("no TX completion within 1 s");
            }
            self.tx.wakeup().context("TX wakeup")?;
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
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
    let moved = obj.counters()?.since(since).nonzero();
    Ok(moved
        .iter()
        .map(|(c, v)| format!("{}={v}", c.name()))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Waits for a frame on `xsk` that `want` accepts, skipping others (e.g. IPv6 multicast the
/// kernel sends when an interface comes up).
fn wait_for(
    xsk: &mut Xsk,
    what: &str,
    want: impl Fn(&Option<XdpMeta>, &[u8]) -> bool,
) -> Result<(Option<XdpMeta>, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some((meta, bytes)) = xsk.recv(Duration::from_millis(100))?
            && want(&meta, &bytes)
        {
            return Ok((meta, bytes));
        }
    }
    bail!("no {what} within 3 s")
}

fn print_received(on: &str, meta: &Option<XdpMeta>, bytes: &[u8]) {
    let m = meta
        .as_ref()
        .map(describe::meta)
        .unwrap_or_else(|| "no metadata".into());
    println!("    AF_XDP socket on {on} received [{m}]");
    println!("      {}", describe::frame(bytes));
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
    let overlay_mtu = 1500 - Encap::Vxlan.overhead(0);
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
        local_ip_be: be(VTEP),
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
            remote_ip_be: be(REMOTE_VTEP),
            flags: ovl_common::FDB_FLAG_STATIC,
        },
    )?;
    obj.set_nexthop(
        be(REMOTE_VTEP),
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
    let (meta, bytes) = wait_for(&mut ul_xsk, "decapsulated frame", |m, _| m.is_some())?;
    print_received("ul0", &meta, &bytes);
    if bytes != inner {
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
    let (meta, bytes) = wait_for(&mut dp_xsk, "ARP request from ovl0", |_, b| {
        EthernetFrame::new_checked(b)
            .map(|f| f.ethertype() == EtherType::Arp)
            .unwrap_or(false)
    })?;
    print_received("ovl0-dp", &meta, &bytes);
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
    let (meta, bytes) = wait_for(&mut dp_xsk, "encapsulated ICMP echo", |m, _| {
        m.is_some_and(|m| m.kind == ovl_common::MetaKind::Encapped as u8)
    })?;
    println!("[8] the kernel sends the ICMP echo as unicast; XDP encapsulates it");
    print_received("ovl0-dp", &meta, &bytes);
    println!("    XDP counters moved: {}", show_counters(&obj, &before)?);
    let _ = ping.kill();
    let _ = ping.wait();

    obj.flush_logs();
    let all = obj.counters()?;
    let drops: u64 = Counter::ALL
        .iter()
        .filter(|c| c.is_drop())
        .map(|&c| all.get(c))
        .sum();
    println!(
        "[9] totals: {} (drops: {drops})",
        all.nonzero()
            .iter()
            .map(|(c, v)| format!("{}={v}", c.name()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}
