//! Shared pieces of the kernel tests: a private network namespace per test, the root check,
//! and a frame builder written independently of the programs under test.
#![allow(dead_code, clippy::too_many_arguments)]

/// Runs `f` in its own anonymous network namespace (`dataplane::netns`): nothing can leak, the
/// kernel removes the namespace with the thread whether `f` passes or panics.
pub fn in_private_netns<F: FnOnce() + Send + 'static>(f: F) {
    require_root();
    dataplane::netns::run_in_private_netns(f).expect("private network namespace");
}

/// The kernel tests need root (BPF and network namespaces). They fail, never skip, without it,
/// so a run that did not exercise them cannot look green.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the kernel tests load XDP programs and create network namespaces: run them as root \
         (CI does), e.g. `sudo -E cargo xtask test`"
    );
}

pub fn ip(args: &[&str]) {
    dataplane::netns::ip(args).expect("ip");
}

pub fn ifindex(name: &str) -> u32 {
    dataplane::netns::ifindex(name).expect("ifindex")
}

/// Internet checksum (RFC 1071) of `data`.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub const BCAST: [u8; 6] = [0xff; 6];

/// Ethernet header.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(14);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

/// IPv4 header (no options) with a correct checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize, frag: u16) -> Vec<u8> {
    let tot = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&tot.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = inet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

pub fn udp(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

pub fn vxlan(vni: u32) -> Vec<u8> {
    let v = vni.to_be_bytes();
    vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// GENEVE header followed by `options` (a multiple of 4 bytes).
pub fn geneve(vni: u32, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let v = vni.to_be_bytes();
    let mut h = vec![
        (options.len() / 4) as u8,
        0,
        0x65,
        0x58,
        v[1],
        v[2],
        v[3],
        0,
    ];
    h.extend_from_slice(options);
    h
}

/// An inner Ethernet/IPv4/UDP frame with `payload_len` bytes of payload.
pub fn inner_udp(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut f = eth(dst, src, 0x0800);
    f.extend(ipv4(sip, dip, 17, 8 + payload_len, 0x4000));
    f.extend(udp(sport, dport, payload_len));
    f.extend((0..payload_len).map(|i| (i % 251) as u8));
    f
}

/// A whole outer frame: Ethernet, IPv4, UDP to `dport`, then `tunnel` header and `inner`.
pub fn outer(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    tunnel: &[u8],
    inner: &[u8],
) -> Vec<u8> {
    let udp_payload = tunnel.len() + inner.len();
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend(ipv4(sip, dip, 17, 8 + udp_payload, 0x4000));
    f.extend(udp(sport, dport, udp_payload));
    f.extend_from_slice(tunnel);
    f.extend_from_slice(inner);
    f
}

/// Recomputes the IPv4 header checksum of the header at `off`.
pub fn fix_ipv4_checksum(frame: &mut [u8], off: usize) {
    let ihl = ((frame[off] & 0x0f) as usize) * 4;
    frame[off + 10] = 0;
    frame[off + 11] = 0;
    let c = inet_checksum(&frame[off..off + ihl]);
    frame[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
}
