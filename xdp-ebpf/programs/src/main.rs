//! The XDP programs of the overlay data plane.
//!
//! - `ovl_underlay_ingress`, on the underlay NIC: picks out VXLAN/GENEVE frames addressed to the
//!   local VTEP, validates them and strips the outer headers. In "xdp" mode a frame whose inner
//!   source MAC is already known behind the sending VTEP is redirected through the `OVL_PORT_DEVS`
//!   device map straight to its overlay port (the fast path); a new or moved source, and every
//!   frame in "afxdp" mode, goes with `XdpMeta` prepended to it to the AF_XDP socket of the
//!   receive queue. Everything that is not provably overlay traffic for us is passed to the
//!   kernel untouched.
//! - `ovl_overlay_tc_egress` ("xdp" mode), TC egress on the kernel's end of an overlay veth:
//!   encapsulates known unicast with a resolved next hop, GSO super-packets whole, and redirects
//!   it to the underlay; everything else continues unchanged to the veth and the next program.
//! - `ovl_overlay_egress`, XDP on the data plane's end of an overlay veth: encapsulates known
//!   unicast frames the kernel sends and redirects them to an AF_XDP socket for transmission on
//!   the underlay; broadcast, multicast, unknown unicast and frames whose next hop is unresolved
//!   go to userspace unencapsulated.
//!
//! Every frame moves exactly one counter of its program in `OVL_COUNTERS`. Logging (aya-log) is
//! kept for events that indicate a bug, never per packet.
//!
//! Map values are read in place. The hash maps are preallocated, so the memory of an entry
//! that userspace replaces or deletes while a program holds it stays valid but can be reused
//! for another key at once (aya's caveat on `HashMap::get`): the program may read a value half
//! old and half new, or another key's. The values are plain data (any bytes are valid), so the
//! worst is one frame handled with a wrong value.
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

use aya_ebpf::{
    bindings::{
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        xdp_action,
    },
    helpers::generated::{
        bpf_csum_diff, bpf_get_hash_recalc, bpf_ktime_get_ns, bpf_redirect, bpf_sk_release,
        bpf_skc_lookup_tcp, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
    },
    macros::{classifier, map, xdp},
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, XskMap},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::error;
use ovl_common::{
    Config, Counter, DrainFlow, DrainVip, ETH_HLEN, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ETH_P_TEB,
    Encap, FdbEntry, FdbKey, GENEVE_HLEN, GENEVE_OPT_LEN, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN,
    META_FLAG_LEARN, MetaKind, NextHop, PortInfo, SourceState, TUN_FLAG_DRAINED, UDP_HLEN,
    UdpPortInfo, VLAN_HLEN, VXLAN_FLAG_I, VXLAN_HLEN, VniCounters, VniInfo, VtepAddr, XDP_META_LEN,
    XDP_META_MAGIC, XdpMeta, source_state, v4_mapped,
};

#[map]
static OVL_CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static OVL_UDP_PORTS: HashMap<u16, UdpPortInfo> =
    HashMap::with_max_entries(ovl_common::UDP_PORT_ENTRIES, 0);
#[map]
static OVL_VNIS: HashMap<u32, VniInfo> = HashMap::with_max_entries(ovl_common::VNI_ENTRIES, 0);
#[map]
static OVL_PORTS: HashMap<u32, PortInfo> = HashMap::with_max_entries(ovl_common::PORT_ENTRIES, 0);

/// Uplink ifindex -> first XSKMAP slot of its sockets (one uplink's queues after another's).
#[map]
static OVL_UPLINKS: HashMap<u32, u32> = HashMap::with_max_entries(ovl_common::UPLINK_ENTRIES, 0);
#[map]
static OVL_FDB: HashMap<FdbKey, FdbEntry> = HashMap::with_max_entries(ovl_common::FDB_ENTRIES, 0);
#[map]
static OVL_NEXTHOPS: HashMap<VtepAddr, NextHop> =
    HashMap::with_max_entries(ovl_common::NEXTHOP_ENTRIES, 0);
#[map]
static OVL_XSKS: XskMap = XskMap::with_max_entries(ovl_common::XSK_SLOTS, 0);
/// VNI -> the data plane's end of its overlay veth; redirecting there delivers on the kernel's
/// end. Userspace adds an entry only once the port can receive (NAPI on the kernel side).
#[map]
static OVL_PORT_DEVS: DevMapHash = DevMapHash::with_max_entries(ovl_common::PORT_DEV_ENTRIES, 0);
#[map]
static OVL_VNI_COUNTERS: PerCpuHashMap<u32, VniCounters> =
    PerCpuHashMap::with_max_entries(ovl_common::VNI_ENTRIES, 0);
#[map]
static OVL_DRAIN_VIPS: HashMap<[u8; 16], DrainVip> =
    HashMap::with_max_entries(ovl_common::DRAIN_VIP_ENTRIES, 0);
#[map]
static OVL_DRAIN_FLOWS: LruHashMap<DrainFlow, u64> =
    LruHashMap::with_max_entries(ovl_common::DRAIN_FLOW_ENTRIES, 0);
#[map]
static OVL_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

type Verdict = (u32, Counter);

#[inline(always)]
fn pass(c: Counter) -> Verdict {
    (xdp_action::XDP_PASS, c)
}

#[inline(always)]
fn drop(c: Counter) -> Verdict {
    (xdp_action::XDP_DROP, c)
}

#[inline(always)]
fn count(c: Counter) {
    if let Some(slot) = OVL_COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: this CPU's slot; programs run with migration disabled, so no other CPU
        // writes it (a program preempting another on this CPU may lose an increment).
        unsafe { *slot += 1 };
    }
}

// Packet access. Every read and write of packet bytes in the XDP programs goes through
// `Span` or `read_at`, which check the bytes against the end themselves, so none can happen
// unchecked (the TC program uses the kernel's checked `bpf_skb_load/store_bytes`). Where one
// check covers several fields, the repeated checks are the same comparison and the compiler
// folds them. These are safe functions over plain addresses: they trust `end` to be the
// packet's `data_end`, and an address is stale once the packet is resized
// (`bpf_xdp_adjust_*`). The verifier backs both: it refuses to load a program with an access
// it cannot prove inside the packet.

/// Types every byte pattern is a valid value of, with no padding: safe to read from packet
/// bytes.
///
/// # Safety
/// Implement only for such types.
unsafe trait Plain: Copy {}
// SAFETY: integers: every bit pattern is a value, no padding.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: arrays of such types have no padding either.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// The `T` at `addr`, as stored (packet fields are unaligned), or `None` if its bytes do not
/// all lie before `end`.
#[inline(always)]
fn read_at<T: Plain>(addr: usize, end: usize) -> Option<T> {
    if addr + size_of::<T>() > end {
        return None;
    }
    // SAFETY: the bytes lie inside the packet (checked just above), and any bytes are a `T`.
    Some(unsafe { core::ptr::read_unaligned(addr as *const T) })
}

/// Byte at `addr`, or `None` if it lies past `end`.
#[inline(always)]
fn u8_at(addr: usize, end: usize) -> Option<u8> {
    read_at(addr, end)
}

/// Big-endian u16 at `addr`, or `None` past `end`.
#[inline(always)]
fn be16_at(addr: usize, end: usize) -> Option<u16> {
    read_at(addr, end).map(be16_of)
}

/// u32 at `addr` exactly as stored (network order kept), or `None` past `end`.
#[inline(always)]
fn raw32_at(addr: usize, end: usize) -> Option<u32> {
    read_at(addr, end)
}

/// `N` packet bytes at an address, checked against the end once, when made: a header whose
/// fields are then read and written at constant offsets, each checked against `N` at compile
/// time, so they need no check of their own.
#[derive(Clone, Copy)]
struct Span<const N: usize>(usize);

impl<const N: usize> Span<N> {
    /// The `N` bytes at `addr`, or `None` if they do not all lie before `end`.
    #[inline(always)]
    fn at(addr: usize, end: usize) -> Option<Self> {
        if addr + N > end {
            None
        } else {
            Some(Span(addr))
        }
    }

    #[inline(always)]
    fn addr(self) -> usize {
        self.0
    }

    /// The `T` at offset `OFF`, as stored. A small array comes back packed into one integer
    /// (the calling convention), which can cost shifts to take apart: where a header's bytes
    /// are used one by one, read them one by one (as `decap` does).
    #[inline(always)]
    fn get<const OFF: usize, T: Plain>(self) -> T {
        const { assert!(OFF + size_of::<T>() <= N) };
        // SAFETY: inside the span (asserted at compile time), which lies inside the packet
        // (checked when it was made); any bytes are a `T`.
        unsafe { core::ptr::read_unaligned((self.0 + OFF) as *const T) }
    }

    #[inline(always)]
    fn u8<const OFF: usize>(self) -> u8 {
        self.get::<OFF, u8>()
    }

    /// Big-endian u16 at `OFF`.
    #[inline(always)]
    fn be16<const OFF: usize>(self) -> u16 {
        be16_of(self.get::<OFF, [u8; 2]>())
    }

    /// u32 at `OFF` exactly as stored (network order kept).
    #[inline(always)]
    fn raw32<const OFF: usize>(self) -> u32 {
        self.get::<OFF, u32>()
    }

    /// The 16-byte address at `OFF`.
    #[inline(always)]
    fn addr16<const OFF: usize>(self) -> VtepAddr {
        self.get::<OFF, VtepAddr>()
    }

    /// Writes `v` at offset `OFF` (called as `put::<OFF>(v)`; `put_t` names the type).
    #[inline(always)]
    fn put<const OFF: usize>(self, v: impl Copy) {
        self.put_t::<OFF, _>(v)
    }

    #[inline(always)]
    fn put_t<const OFF: usize, T: Copy>(self, v: T) {
        const { assert!(OFF + size_of::<T>() <= N) };
        // SAFETY: inside the span, as in `get`.
        unsafe { core::ptr::write_unaligned((self.0 + OFF) as *mut T, v) }
    }

    /// Sum of the span's big-endian 16-bit words (an IPv4 header's, for its checksum; `N` is
    /// even).
    #[inline(always)]
    fn be16_sum(self) -> u32 {
        let mut sum = 0u32;
        let mut off = 0;
        while off + 2 <= N {
            // SAFETY: off + 2 <= N: inside the span.
            let w: [u8; 2] = unsafe { core::ptr::read_unaligned((self.0 + off) as *const [u8; 2]) };
            sum += u16::from_be_bytes(w) as u32;
            off += 2;
        }
        sum
    }
}

/// `u16::from_be_bytes`, with its range made visible to older verifiers (`within`): the byte
/// swap it compiles to leaves a register that 6.1's and 6.12's verifiers know nothing of, so
/// a length read that way could not be added to a packet pointer even after a check.
#[inline(always)]
fn be16_of(b: [u8; 2]) -> u16 {
    within::<0xffff>(usize::from(u16::from_be_bytes(b))) as u16
}

/// Ones' complement sum of 16-bit words, folded.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Sum of the two 16-bit halves of a u32 given in network order.
#[inline(always)]
fn sum_be32(v_be: u32) -> u32 {
    let b = v_be.to_ne_bytes();
    u16::from_be_bytes([b[0], b[1]]) as u32 + u16::from_be_bytes([b[2], b[3]]) as u32
}

/// Sum of `b`'s 16-bit words in memory order: the order `bpf_csum_diff` adds packet bytes
/// in, so the two can be mixed; a ones' complement sum folds to the same result either way
/// round only when every part is added in one order.
#[inline(always)]
fn ne_sum<const N: usize>(b: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_ne_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// The IPv6 pseudo-header's sum (RFC 8200 section 8.1) for UDP of `len` bytes, memory order.
#[inline(always)]
fn pseudo6_sum(src: &VtepAddr, dst: &VtepAddr, len: u32) -> u32 {
    ne_sum(src) + ne_sum(dst) + ne_sum(&len.to_be_bytes()) + ne_sum(&[0, 0, 0, IPPROTO_UDP])
}

/// `data_end`, read so that the compiler cannot reuse an earlier comparison: it would drop a
/// check against it that an earlier one against a shorter bound seems to imply, and the
/// verifier, which tracks bounds per register, would then refuse the access.
#[inline(always)]
fn fresh_end(ctx: &XdpContext) -> usize {
    // SAFETY: a field read of the program's own context.
    unsafe { core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize }
}

/// Adds the `len` bytes of the packet from `p` to `sum`, memory order: in 512-byte helper
/// calls (the most `bpf_csum_diff` takes), then halving constant sizes, then the last two and
/// one bytes by hand. `None` if the bytes are not all inside the packet or a helper fails.
/// Frames up to 9216 bytes.
#[inline(always)]
fn packet_sum(ctx: &XdpContext, mut p: usize, len: usize, mut sum: u32) -> Option<u32> {
    const CHUNK: usize = 512;
    let mut left = len;
    let mut i = 0;
    while i < 18 {
        if left < CHUNK {
            break;
        }
        let bytes = Span::<CHUNK>::at(p, fresh_end(ctx))?;
        // SAFETY: the helper only reads the span's CHUNK bytes, inside the packet.
        let r = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                bytes.addr() as *mut u32,
                CHUNK as u32,
                sum,
            )
        };
        if r < 0 {
            return None;
        }
        sum = r as u32;
        p += CHUNK;
        left -= CHUNK;
        i += 1;
    }
    if left >= CHUNK {
        return None;
    }
    macro_rules! step {
        ($n:expr) => {
            if left >= $n {
                let bytes = Span::<{ $n }>::at(p, fresh_end(ctx))?;
                // SAFETY: as above, for $n bytes.
                let r = unsafe {
                    bpf_csum_diff(core::ptr::null_mut(), 0, bytes.addr() as *mut u32, $n, sum)
                };
                if r < 0 {
                    return None;
                }
                sum = r as u32;
                p += $n as usize;
                left -= $n as usize;
            }
        };
    }
    step!(256);
    step!(128);
    step!(64);
    step!(32);
    step!(16);
    step!(8);
    step!(4);
    if left >= 2 {
        let w: [u8; 2] = read_at(p, fresh_end(ctx))?;
        sum = fold(sum) as u32 + u16::from_ne_bytes(w) as u32;
        p += 2;
        left -= 2;
    }
    if left == 1 {
        // A trailing odd byte is the high-order byte of a word padded with zero (RFC 1071).
        let b = u8_at(p, fresh_end(ctx))?;
        sum = fold(sum) as u32 + u16::from_ne_bytes([b, 0]) as u32;
    }
    Some(sum)
}

/// IPv6 extension headers (RFC 8200 section 4, and the IANA list): a UDP header may follow
/// them, but the programs do not walk them.
#[inline(always)]
fn is_ipv6_ext_header(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

#[xdp]
pub fn ovl_underlay_ingress(ctx: XdpContext) -> u32 {
    let (action, counter) = underlay_ingress(&ctx);
    count(counter);
    action
}

#[xdp]
pub fn ovl_overlay_egress(ctx: XdpContext) -> u32 {
    let (action, counter) = overlay_egress(&ctx);
    count(counter);
    action
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    let cfg = OVL_CONFIG.get(0)?;
    if cfg.enabled == 0 { None } else { Some(cfg) }
}

#[inline(always)]
fn underlay_ingress(ctx: &XdpContext) -> Verdict {
    let Some(cfg) = config() else {
        return pass(Counter::PassDisabled);
    };
    let data = ctx.data();
    let end = ctx.data_end();

    let Some(eth) = Span::<ETH_HLEN>::at(data, end) else {
        return pass(Counter::PassTruncated);
    };
    let mut ip = data + ETH_HLEN;
    let mut ethertype = eth.be16::<12>();
    if ethertype == ETH_P_8021Q {
        let Some(tagged) = Span::<{ ETH_HLEN + VLAN_HLEN }>::at(data, end) else {
            return pass(Counter::PassTruncated);
        };
        ethertype = tagged.be16::<16>();
        ip = data + ETH_HLEN + VLAN_HLEN;
    }
    if ethertype == ETH_P_IPV6 {
        return underlay_ingress_v6(ctx, cfg, data, ip, end);
    }
    if ethertype != ETH_P_IPV4 {
        return pass(Counter::PassNonIp);
    }

    let Some(iph) = Span::<IPV4_HLEN>::at(ip, end) else {
        return pass(Counter::PassTruncated);
    };
    let ver_ihl = iph.u8::<0>();
    let proto = iph.u8::<9>();
    let daddr = iph.raw32::<16>();
    if cfg.ipv6 != 0
        || ver_ihl >> 4 != 4
        || v4_mapped(daddr.to_ne_bytes()) != cfg.local_ip
        || proto != IPPROTO_UDP
    {
        return pass(Counter::PassNotForUs);
    }
    let frag = iph.be16::<6>();
    if frag & 0x1fff != 0 {
        return pass(Counter::PassFragment);
    }
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ihl < IPV4_HLEN {
        // Malformed; the kernel's IP layer drops and counts it.
        return pass(Counter::PassNotForUs);
    }
    let Some(udp) = Span::<UDP_HLEN>::at(ip + ihl, end) else {
        return pass(Counter::PassTruncated);
    };
    let dport = udp.be16::<2>();
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(port) = (unsafe { OVL_UDP_PORTS.get(dport) }) else {
        return pass(Counter::PassOtherUdp);
    };
    let encap = port.encap;

    // From here on the frame claims to be overlay traffic for us: anything wrong is a drop.
    if ihl != IPV4_HLEN {
        return drop(Counter::DropIpv4Options);
    }
    if frag & 0x2000 != 0 {
        return drop(Counter::DropIpv4Fragment);
    }
    // The IP layer is bypassed, so its checks are ours to make.
    if fold(iph.be16_sum()) != 0xffff {
        return drop(Counter::DropIpv4Checksum);
    }
    let tot_len = iph.be16::<2>() as usize;
    if tot_len < IPV4_HLEN + UDP_HLEN || ip + tot_len > end {
        return drop(Counter::DropIpLength);
    }
    let pkt_end = ip + tot_len;
    if udp.be16::<4>() as usize != tot_len - IPV4_HLEN {
        return drop(Counter::DropUdpLength);
    }
    // The UDP checksum is optional over IPv4 and the kernel driver sends none (RFC 7348).
    let peer = v4_mapped(iph.get::<12, _>());
    decap(ctx, cfg, data, udp, pkt_end, encap, peer)
}

/// Outer IPv6: the fixed header must be followed by UDP directly (extension headers go to the
/// kernel), the lengths must agree, and the UDP checksum must be right, since IPv6 has no
/// header checksum and the UDP one is all that protects the addresses (RFC 6935/6936). A zero
/// checksum is refused unless configured, as by the kernel driver (`udp6zerocsumrx` off).
#[inline(always)]
fn underlay_ingress_v6(
    ctx: &XdpContext,
    cfg: &Config,
    data: usize,
    ip: usize,
    end: usize,
) -> Verdict {
    let Some(ip6) = Span::<IPV6_HLEN>::at(ip, end) else {
        return pass(Counter::PassTruncated);
    };
    let ver = ip6.u8::<0>();
    if cfg.ipv6 == 0 || ver >> 4 != 6 || ip6.addr16::<24>() != cfg.local_ip {
        return pass(Counter::PassNotForUs);
    }
    let next = ip6.u8::<6>();
    if next != IPPROTO_UDP {
        if is_ipv6_ext_header(next) {
            return pass(Counter::PassIpv6ExtHeaders);
        }
        return pass(Counter::PassNotForUs);
    }
    let Some(udp) = Span::<UDP_HLEN>::at(ip + IPV6_HLEN, end) else {
        return pass(Counter::PassTruncated);
    };
    let dport = udp.be16::<2>();
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(port) = (unsafe { OVL_UDP_PORTS.get(dport) }) else {
        return pass(Counter::PassOtherUdp);
    };
    let encap = port.encap;

    let payload_len = ip6.be16::<4>() as usize;
    if payload_len < UDP_HLEN || udp.addr() + payload_len > end {
        return drop(Counter::DropIpLength);
    }
    let pkt_end = udp.addr() + payload_len;
    if udp.be16::<4>() as usize != payload_len {
        return drop(Counter::DropUdpLength);
    }
    let peer = ip6.addr16::<8>();
    if udp.be16::<6>() == 0 {
        if cfg.udp6_zero_csum_rx == 0 {
            return drop(Counter::DropUdpZeroChecksum);
        }
    } else {
        let seed = pseudo6_sum(&peer, &cfg.local_ip, payload_len as u32);
        match packet_sum(ctx, udp.addr(), payload_len, seed) {
            Some(sum) if fold(sum) == 0xffff => {}
            Some(_) => return drop(Counter::DropUdpChecksum),
            None => return drop(Counter::DropInternal),
        }
    }
    decap(ctx, cfg, data, udp, pkt_end, encap, peer)
}

/// The tunnel header after the UDP header `udp` (`encap`'s, by the destination port), then
/// the inner frame up to `pkt_end`: validated, stripped, and handed on to the overlay port or
/// a worker (or, while draining, sent on to the previous owner of a VIP: see `drain_target`).
#[inline(always)]
fn decap(
    ctx: &XdpContext,
    cfg: &Config,
    data: usize,
    udp: Span<UDP_HLEN>,
    pkt_end: usize,
    encap: u8,
    peer: VtepAddr,
) -> Verdict {
    let end = ctx.data_end();
    let tun = udp.addr() + UDP_HLEN;
    let Some(th) = Span::<8>::at(tun, end) else {
        return drop(Counter::DropTruncated);
    };
    if tun + 8 > pkt_end {
        return drop(Counter::DropTruncated);
    }
    // Byte by byte: read whole, it would be loaded as one integer and taken apart with shifts.
    let tb = [
        th.u8::<0>(),
        th.u8::<1>(),
        th.u8::<2>(),
        th.u8::<3>(),
        th.u8::<4>(),
        th.u8::<5>(),
        th.u8::<6>(),
        th.u8::<7>(),
    ];
    let vni = ((tb[4] as u32) << 16) | ((tb[5] as u32) << 8) | tb[6] as u32;
    let tun_len;
    let rx_counter;
    if encap == Encap::Vxlan as u8 {
        // RFC 7348: I flag set, every reserved bit zero (as the kernel driver insists).
        // (The drained mark is ours, between the members of a pair.)
        if tb[0] != VXLAN_FLAG_I
            || tb[1] & !TUN_FLAG_DRAINED != 0
            || tb[2] != 0
            || tb[3] != 0
            || tb[7] != 0
        {
            return drop(Counter::DropVxlanFlags);
        }
        tun_len = VXLAN_HLEN;
        rx_counter = Counter::RxVxlan;
    } else {
        if tb[0] >> 6 != 0 {
            return drop(Counter::DropGeneveVersion);
        }
        let opt_len = ((tb[0] & 0x3f) as usize) * 4;
        if tun + GENEVE_HLEN + opt_len > pkt_end {
            return drop(Counter::DropGeneveOptLen);
        }
        if u16::from_be_bytes([tb[2], tb[3]]) != ETH_P_TEB {
            return drop(Counter::DropGeneveProto);
        }
        // We understand no options, so critical ones must be dropped (RFC 8926 section 3.5).
        if tb[1] & 0x40 != 0 {
            return drop(Counter::DropGeneveCritical);
        }
        // OAM frames are control traffic for the tunnel endpoint, not data for the segment.
        if tb[1] & 0x80 != 0 {
            return drop(Counter::DropGeneveOam);
        }
        tun_len = GENEVE_HLEN + opt_len;
        rx_counter = Counter::RxGeneve;
    }

    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(vinfo) = (unsafe { OVL_VNIS.get(vni) }) else {
        return drop(Counter::DropUnknownVni);
    };
    if vinfo.encap != encap {
        return drop(Counter::DropEncapMismatch);
    }
    let inner = tun + tun_len;
    if inner + ETH_HLEN > pkt_end {
        return drop(Counter::DropInnerTruncated);
    }
    let overlay_mtu = overlay_mtu(cfg, vinfo);
    if pkt_end - inner - ETH_HLEN > overlay_mtu {
        return drop(Counter::DropInnerTooBig);
    }

    // Draining (planned switchover). The counter a delivered frame moves instead of the
    // usual one, if any.
    let drained = tb[1] & TUN_FLAG_DRAINED != 0;
    let mut instead = None;
    if drained {
        // Sent on by the new owner: ours to serve if the VIP accepts, never learned from
        // (its source lives behind the client's VTEP, not the sender's).
        match drain_vip(inner_dst_ip(inner, pkt_end, end)) {
            Some(d) if d.accept != 0 => {
                // Inside the packet (`pkt_end` is); checked for the verifier.
                let Some(eth) = Span::<ETH_HLEN>::at(inner, end) else {
                    return drop(Counter::DropInnerTruncated);
                };
                eth.put::<0>(d.port_mac);
                instead = Some(Counter::RxDrained);
            }
            _ => return drop(Counter::DropDrainRefused),
        }
    }

    // As stored: network order.
    let peer_port_be = udp.get::<0, u16>();
    let strip = (inner - data) as i32;
    let excess = (end - pkt_end) as i32;
    // Ethernet padding after the IP packet is not part of the inner frame.
    // SAFETY: helper call on the program's own context.
    if excess > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -excess) } != 0 {
        error!(ctx, "adjust_tail failed");
        return drop(Counter::DropInternal);
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip) } != 0 {
        error!(ctx, "adjust_head failed");
        return drop(Counter::DropInternal);
    }
    if !drained
        && cfg.drain != 0
        && let Some(to) = drain_target(ctx)
    {
        // Checked after the outer headers are gone, when the verifier tracks far fewer packet
        // pointers (before, this path alone exceeded its budget).
        if let Some(action) = send_drained(ctx, cfg, strip as usize, udp.addr() - data, &to) {
            return (action, Counter::TxDrained);
        }
        instead = Some(Counter::RxDrainUnsent);
    }
    // The inner frame now starts at data; the verifier wants its bounds checked afresh.
    let data = ctx.data();
    let Some(eth) = Span::<ETH_HLEN>::at(data, ctx.data_end()) else {
        return drop(Counter::DropInternal);
    };
    let src: [u8; 6] = eth.get::<6, _>();
    let learn = !drained && needs_learning(vni, src, &peer);
    let meta = XdpMeta {
        magic: XDP_META_MAGIC,
        kind: MetaKind::Decapped as u8,
        encap,
        vni,
        peer_ip: peer,
        peer_port_be,
        flags: if learn { META_FLAG_LEARN } else { 0 },
    };
    // A frame no socket could take is delivered unlearned rather than dropped.
    let frame_len = (ctx.data_end() - data) as u32;
    let unlearned = learn && cfg.xsk_frame_max != 0 && frame_len > cfg.xsk_frame_max;
    if cfg.fast_path != 0 && (!learn || unlearned) {
        let fast = if unlearned {
            Counter::RxFastUnlearned
        } else if encap == Encap::Vxlan as u8 {
            Counter::RxFastVxlan
        } else {
            Counter::RxFastGeneve
        };
        if let Ok(action) = OVL_PORT_DEVS.redirect(vni, 0) {
            let bytes = (ctx.data_end() - data) as u64;
            if let Some(c) = OVL_VNI_COUNTERS.get_ptr_mut(vni) {
                // SAFETY: this CPU's slot of the entry; see `count`.
                unsafe {
                    (*c).rx_packets += 1;
                    (*c).rx_bytes += bytes;
                }
            }
            return (action, instead.unwrap_or(fast));
        }
        let c = instead.unwrap_or(Counter::RxFastFallback);
        return to_socket(ctx, meta, uplink_slot(ctx), c);
    }
    to_socket(ctx, meta, uplink_slot(ctx), instead.unwrap_or(rx_counter))
}

/// The inner IPv4 or IPv6 destination of the inner frame at `inner`, IPv4 mapped.
#[inline(always)]
fn inner_dst_ip(inner: usize, pkt_end: usize, end: usize) -> Option<[u8; 16]> {
    let ip = inner + ETH_HLEN;
    let ethertype = be16_at(inner + 12, end)?;
    if ethertype == ETH_P_IPV6 && ip + IPV6_HLEN <= pkt_end {
        return Some(Span::<IPV6_HLEN>::at(ip, end)?.addr16::<24>());
    }
    if ethertype == ETH_P_IPV4 && ip + IPV4_HLEN <= pkt_end {
        return Some(v4_mapped(Span::<IPV4_HLEN>::at(ip, end)?.get::<16, _>()));
    }
    None
}

#[inline(always)]
fn drain_vip(dst: Option<[u8; 16]>) -> Option<DrainVip> {
    // SAFETY: plain data, copied out (see the crate docs on map values).
    dst.and_then(|d| unsafe { OVL_DRAIN_VIPS.get(d) }.copied())
}

const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// `TCP_LISTEN` and `TCP_TIME_WAIT` in the kernel's socket states.
const TCP_LISTEN: u32 = 10;
const TCP_TIME_WAIT: u32 = 6;

/// `struct bpf_sock_tuple`'s IPv4 and IPv6 forms, fields in network order.
#[repr(C)]
struct Tuple4 {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
}

#[repr(C)]
struct Tuple6 {
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
}

/// The new owner's check, while draining: the previous owner's VTEP if the inner frame is a
/// TCP segment to a forwarding VIP that opens nothing (not a SYN) and for which this host has
/// no connection: no socket, only a listener (the kernel would answer with a reset), or a
/// time-wait one (a connection that ended here; the client reused its port for one the peer
/// serves, which the soak hit: the time-wait socket swallows its segments). Request sockets
/// (a handshake begun here) count as connections here.
#[inline(always)]
fn drain_target(ctx: &XdpContext) -> Option<VtepAddr> {
    let inner = ctx.data();
    let pkt_end = ctx.data_end();
    let d = drain_vip(inner_dst_ip(inner, pkt_end, pkt_end))?;
    if d.forward == 0 {
        return None;
    }
    // Bounds checked afresh against an end the compiler cannot relate to the checks above
    // (it would drop them as redundant; the verifier needs them on this path).
    let end = fresh_end(ctx);
    let ip = inner + ETH_HLEN;
    let v6 = be16_at(inner + 12, end)? == ETH_P_IPV6;
    let (tcp, proto) = if v6 {
        (ip + IPV6_HLEN, Span::<IPV6_HLEN>::at(ip, end)?.u8::<6>())
    } else {
        let iph = Span::<IPV4_HLEN>::at(ip, end)?;
        let ver_ihl = iph.u8::<0>();
        // A fragment's ports are not where we look; fragments stay here.
        if ver_ihl >> 4 != 4 || iph.be16::<6>() & 0x3fff != 0 {
            return None;
        }
        (ip + ((ver_ihl & 0x0f) as usize) * 4, iph.u8::<9>())
    };
    // The TCP header up to its flags byte.
    if proto != IPPROTO_TCP || tcp + 14 > pkt_end {
        return None;
    }
    let tcph = Span::<14>::at(tcp, end)?;
    let flags = tcph.u8::<13>();
    if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
        return None;
    }
    let ports: [u16; 2] = tcph.get::<0, _>();
    let flow;
    let sk = if v6 {
        let ip6 = Span::<IPV6_HLEN>::at(ip, fresh_end(ctx))?;
        let mut t = Tuple6 {
            saddr: ip6.addr16::<8>(),
            daddr: ip6.addr16::<24>(),
            sport: ports[0],
            dport: ports[1],
        };
        flow = DrainFlow {
            client: t.saddr,
            vip: t.daddr,
            client_port_be: t.sport,
            vip_port_be: t.dport,
        };
        // SAFETY: helper call with a tuple on the stack and its exact size; a socket it
        // returns is released below.
        unsafe {
            bpf_skc_lookup_tcp(
                ctx.ctx as *mut _,
                &mut t as *mut Tuple6 as *mut _,
                size_of::<Tuple6>() as u32,
                u64::MAX,
                0,
            )
        }
    } else {
        let iph = Span::<IPV4_HLEN>::at(ip, fresh_end(ctx))?;
        let mut t = Tuple4 {
            saddr: iph.raw32::<12>(),
            daddr: iph.raw32::<16>(),
            sport: ports[0],
            dport: ports[1],
        };
        flow = DrainFlow {
            client: v4_mapped(t.saddr.to_ne_bytes()),
            vip: v4_mapped(t.daddr.to_ne_bytes()),
            client_port_be: t.sport,
            vip_port_be: t.dport,
        };
        // SAFETY: as above.
        unsafe {
            bpf_skc_lookup_tcp(
                ctx.ctx as *mut _,
                &mut t as *mut Tuple4 as *mut _,
                size_of::<Tuple4>() as u32,
                u64::MAX,
                0,
            )
        }
    };
    if !sk.is_null() {
        // SAFETY: a socket the lookup returned, read once and released.
        let state = unsafe { core::ptr::read_volatile(&(*sk).state) };
        // SAFETY: as above.
        unsafe { bpf_sk_release(sk as *mut _) };
        if state != TCP_LISTEN && state != TCP_TIME_WAIT {
            return None;
        }
    }
    // Counting flows; a full LRU forgets old ones, which only lowers the count.
    let _ = OVL_DRAIN_FLOWS.insert(flow, 0u64, 1 /* BPF_NOEXIST */);
    Some(d.peer)
}

/// `v`, which the caller knows is at most `MASK` (a power of two less one), with that bound
/// made visible to the verifier: an offset the program computed (a difference of packet
/// pointers, a value an older verifier, 6.12's included, lost track of) can then be added to
/// a packet pointer on every kernel since 6.1. Written in assembly so that the compiler, which
/// may know the mask changes nothing, keeps it; it also stops the compiler from folding the
/// arithmetic that made `v` into a pointer computation the verifier would refuse.
#[inline(always)]
fn within<const MASK: u64>(v: usize) -> usize {
    const { assert!((MASK + 1).is_power_of_two()) };
    #[cfg(target_arch = "bpf")]
    {
        let mut r = v as u64;
        // SAFETY: one ALU instruction on a register; no memory, no stack.
        unsafe {
            core::arch::asm!("{0} &= {1}", inout(reg) r, const MASK, options(pure, nomem, nostack));
        }
        r as usize
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        v & MASK as usize
    }
}

/// Strips the `strip` bytes of outer headers again after `send_drained` put them back.
#[inline(always)]
fn restrip(ctx: &XdpContext, strip: usize) -> Option<u32> {
    // SAFETY: helper call on the program's own context, undoing its own growth.
    unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) };
    None
}

/// Sends the frame on to `to` (the previous owner), marked as drained, back out of the
/// active uplink: the `strip` bytes of outer headers decapsulation removed are still in
/// front of it, so they are taken back and rewritten in place (addresses ours to theirs, hop
/// limit, checksums; the UDP header with the client's flow entropy stays). `udp_off` is the
/// UDP header's offset in them. `None`, with the frame as it was, without a next hop, when
/// the uplink takes no frames from XDP, or if a helper fails; it is then delivered here.
#[inline(always)]
fn send_drained(
    ctx: &XdpContext,
    cfg: &Config,
    strip: usize,
    udp_off: usize,
    to: &VtepAddr,
) -> Option<u32> {
    if cfg.xdp_tx == 0 || cfg.underlay_ifindex == 0 {
        return None;
    }
    // SAFETY: plain data, copied out (see the crate docs on map values).
    let nh = unsafe { OVL_NEXTHOPS.get(*to) }.copied()?;
    let ip_len = if cfg.ipv6 == 0 { IPV4_HLEN } else { IPV6_HLEN };
    // Ethernet, at most one VLAN tag, IP: the bounds let the verifier follow the offsets.
    if udp_off > ETH_HLEN + VLAN_HLEN + IPV6_HLEN || udp_off < ETH_HLEN + ip_len {
        return None;
    }
    // SAFETY: helper call on the program's own context; the bytes are those decap removed.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(strip as i32)) } != 0 {
        return None;
    }
    // Each bound against its own read of the end, so the compiler keeps every one.
    let data = ctx.data();
    // The UDP header and the tunnel header's first word.
    let Some(udp) = Span::<{ UDP_HLEN + 4 }>::at(data + within::<63>(udp_off), fresh_end(ctx))
    else {
        return restrip(ctx, strip);
    };
    let Some(eth) = Span::<ETH_HLEN>::at(data, fresh_end(ctx)) else {
        return restrip(ctx, strip);
    };
    eth.put::<0>(nh.mac);
    eth.put::<6>(cfg.local_mac);
    let tun1 = udp.u8::<{ UDP_HLEN + 1 }>();
    if cfg.ipv6 == 0 {
        // From data, not back from udp: the verifier allows no access below a checked pointer.
        let Some(ip) =
            Span::<IPV4_HLEN>::at(data + within::<63>(udp_off - IPV4_HLEN), fresh_end(ctx))
        else {
            return restrip(ctx, strip);
        };
        udp.put::<{ UDP_HLEN + 1 }>([tun1 | TUN_FLAG_DRAINED]);
        let l = &cfg.local_ip;
        ip.put::<8>([64u8]);
        ip.put::<10>([0u8, 0]);
        ip.put::<12>([l[12], l[13], l[14], l[15]]);
        ip.put::<16>([to[12], to[13], to[14], to[15]]);
        ip.put::<10>((!fold(ip.be16_sum())).to_be_bytes());
        // Optional over IPv4, and the addresses it covered changed.
        udp.put::<6>([0u8, 0]);
    } else {
        let Some(ip) =
            Span::<IPV6_HLEN>::at(data + within::<63>(udp_off - IPV6_HLEN), fresh_end(ctx))
        else {
            return restrip(ctx, strip);
        };
        // The checksum follows the changed words (addresses, the tunnel header's first word)
        // incrementally; a zero one (accepted by configuration) stays zero.
        let old_sum = udp.get::<6, u16>();
        let old_tun: [u8; 4] = udp.get::<UDP_HLEN, _>();
        let mut old = [0u8; 36];
        old[..16].copy_from_slice(&ip.addr16::<8>());
        old[16..32].copy_from_slice(&ip.addr16::<24>());
        old[32..].copy_from_slice(&old_tun);
        let mut new = [0u8; 36];
        new[..16].copy_from_slice(&cfg.local_ip);
        new[16..32].copy_from_slice(to);
        new[32..].copy_from_slice(&old_tun);
        new[33] |= TUN_FLAG_DRAINED;
        ip.put::<7>([64u8]);
        ip.put::<8>(cfg.local_ip);
        ip.put::<24>(*to);
        udp.put::<UDP_HLEN>([new[32], new[33], new[34], new[35]]);
        if old_sum != 0 {
            // SAFETY: helper call on two 36-byte stack buffers.
            let diff = unsafe {
                bpf_csum_diff(
                    old.as_mut_ptr() as *mut u32,
                    36,
                    new.as_mut_ptr() as *mut u32,
                    36,
                    !old_sum as u32,
                )
            };
            let csum = match !fold(diff as u32) {
                0 => 0xffff,
                c => c,
            };
            udp.put::<6>(csum.to_ne_bytes());
        }
    }
    if ctx.ingress_ifindex() as u32 == cfg.underlay_ifindex {
        return Some(xdp_action::XDP_TX);
    }
    // SAFETY: helper call; the index comes from userspace's configuration.
    Some(unsafe { bpf_redirect(cfg.underlay_ifindex, 0) } as u32)
}

/// The XSKMAP slot of the socket on this uplink's receive queue: every present uplink has
/// sockets of its own (a socket only takes frames of the device and queue it is bound to).
#[inline(always)]
fn uplink_slot(ctx: &XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: plain data, only read (see the crate docs on map values).
    let base = unsafe { OVL_UPLINKS.get(ifindex) }.copied().unwrap_or(0);
    base + ctx.rx_queue_index()
}

/// Whether the inner source `src` of VNI `vni`, seen behind VTEP `peer`, is news for
/// the FDB (`ovl_common::source_state`). A known one costs this lookup and, at most every
/// `FDB_SEEN_REFRESH_NS`, a store of its last-seen stamp.
#[inline(always)]
fn needs_learning(vni: u32, src: [u8; 6], peer: &VtepAddr) -> bool {
    let e = OVL_FDB.get_ptr_mut(FdbKey::new(vni, src));
    // SAFETY: the map's memory stays allocated, so the pointer is valid for this run. Others
    // may write the entry meanwhile (another CPU its stamp; userspace replacing it, whose
    // memory can then hold another key: see the crate docs on map values), so the entry read
    // may be torn, and a stamp stored may land in another key's entry and keep it from ageing
    // for one more refresh period. Plain data: wrong values at worst, never invalid ones.
    let entry = e.map(|p| unsafe { &*p });
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let state = source_state(entry, src, peer, now);
    if let (SourceState::Known { refresh: true }, Some(p)) = (state, e) {
        // SAFETY: as above.
        unsafe { (*p).seen_ns = now };
    }
    state.needs_learning()
}

/// Largest inner L3 packet the VNI's overlay port carries: the underlay MTU less the outer
/// IP/UDP/tunnel headers and the inner Ethernet header (which `overhead` counts in place of
/// the outer one).
#[inline(always)]
fn overlay_mtu(cfg: &Config, vinfo: &VniInfo) -> usize {
    let v6 = cfg.ipv6 != 0;
    let overhead = if vinfo.encap == Encap::Vxlan as u8 {
        Encap::Vxlan.overhead(0, v6)
    } else {
        Encap::Geneve.overhead(vinfo.geneve_opt_len as usize, v6)
    };
    (cfg.underlay_mtu as usize).saturating_sub(overhead)
}

/// Prepends `meta` to the frame and redirects to XSKMAP slot `slot`; the worker strips it.
/// In the frame, not in the metadata area: some kernels refuse `bpf_xdp_adjust_meta`.
#[inline(always)]
fn to_socket(ctx: &XdpContext, meta: XdpMeta, slot: u32, ok: Counter) -> Verdict {
    // SAFETY: helper call on the program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(XDP_META_LEN as i32)) } != 0 {
        error!(ctx, "adjust_head for the metadata failed");
        return drop(Counter::DropInternal);
    }
    let Some(area) = Span::<XDP_META_LEN>::at(ctx.data(), ctx.data_end()) else {
        return drop(Counter::DropInternal);
    };
    area.put::<0>(meta);
    match OVL_XSKS.redirect(slot, 0) {
        Ok(action) => (action, ok),
        Err(_) => drop(Counter::DropNoSocket),
    }
}

#[inline(always)]
fn overlay_egress(ctx: &XdpContext) -> Verdict {
    let Some(cfg) = config() else {
        return pass(Counter::PassDisabled);
    };
    let data = ctx.data();
    let end = ctx.data_end();
    let Some(eth) = Span::<ETH_HLEN>::at(data, end) else {
        return drop(Counter::DropTxTruncated);
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(port) = (unsafe { OVL_PORTS.get(ifindex) }) else {
        return drop(Counter::DropTxNoPort);
    };
    let vni = port.vni;
    let slot = port.xsk_base + ctx.rx_queue_index();
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(vinfo) = (unsafe { OVL_VNIS.get(vni) }) else {
        return drop(Counter::DropTxUnknownVni);
    };
    let frame_len = end - data;
    let mut meta = XdpMeta {
        magic: XDP_META_MAGIC,
        kind: MetaKind::Flood as u8,
        encap: vinfo.encap,
        vni,
        peer_ip: [0; 16],
        peer_port_be: 0,
        flags: 0,
    };
    if frame_len - ETH_HLEN > overlay_mtu(cfg, vinfo) {
        // IPv4 with DF, and IPv6 (never fragmented on the way): userspace tells the sender
        // the MTU (ICMP "fragmentation needed", ICMPv6 "packet too big"), as the kernel's
        // tunnel drivers do. Either way the frame itself is dropped, and counted.
        let ethertype = eth.be16::<12>();
        let answer = match u8_at(data + ETH_HLEN + 6, end) {
            Some(flags) => {
                (ethertype == ETH_P_IPV4 && flags & 0x40 != 0) || ethertype == ETH_P_IPV6
            }
            None => false,
        };
        if answer {
            meta.kind = MetaKind::TooBig as u8;
            return to_socket(ctx, meta, slot, Counter::DropTxTooBig);
        }
        return drop(Counter::DropTxTooBig);
    }
    let dst: [u8; 6] = eth.get::<0, _>();
    if dst[0] & 1 != 0 {
        return to_socket(ctx, meta, slot, Counter::TxFlood);
    }
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(fdb) = (unsafe { OVL_FDB.get(FdbKey::new(vni, dst)) }) else {
        return to_socket(ctx, meta, slot, Counter::TxUnknownUnicast);
    };
    let remote = fdb.remote;
    meta.peer_ip = remote;
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(nh) = (unsafe { OVL_NEXTHOPS.get(remote) }) else {
        meta.kind = MetaKind::NoNeighbour as u8;
        return to_socket(ctx, meta, slot, Counter::TxNoNeighbour);
    };
    let nh_mac = nh.mac;
    let src_port = ovl_common::src_port_from_hash(flow_hash(data, end));
    let geneve = vinfo.encap == Encap::Geneve as u8;
    let opt_len = if geneve && vinfo.geneve_opt_len as usize == GENEVE_OPT_LEN {
        GENEVE_OPT_LEN
    } else {
        0
    };
    let tun_len = if geneve {
        GENEVE_HLEN + opt_len
    } else {
        VXLAN_HLEN
    };
    let counter = if geneve {
        Counter::TxGeneve
    } else {
        Counter::TxVxlan
    };
    meta.kind = MetaKind::Encapped as u8;
    if cfg.ipv6 != 0 {
        return encap_v6(
            ctx, cfg, meta, slot, nh_mac, vinfo, src_port, tun_len, counter,
        );
    }
    let ip_len = IPV4_HLEN + UDP_HLEN + tun_len + frame_len;
    let outer_len = ETH_HLEN + ip_len - frame_len;

    // SAFETY: helper call on the program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        error!(ctx, "adjust_head failed");
        return drop(Counter::DropInternal);
    }
    // Cannot fail (the inner frame is at least 14 bytes); keeps the verifier informed.
    let Some(hdr) = Span::<OUTER_MAX>::at(ctx.data(), ctx.data_end()) else {
        return drop(Counter::DropInternal);
    };

    let outer = outer_header(cfg, nh_mac, &remote, vinfo, vni, src_port, ip_len as u16);
    let mut base = [0u8; OUTER_BASE];
    base.copy_from_slice(&outer[..OUTER_BASE]);
    hdr.put::<0>(base);
    if opt_len != 0 {
        let mut opt = [0u8; GENEVE_OPT_LEN];
        opt.copy_from_slice(&outer[OUTER_BASE..]);
        hdr.put::<OUTER_BASE>(opt);
    }
    to_socket(ctx, meta, slot, counter)
}

/// Outer Ethernet, IPv6, UDP and tunnel header without option, and with the GENEVE option.
const OUTER6_BASE: usize = ETH_HLEN + IPV6_HLEN + UDP_HLEN + VXLAN_HLEN;
const OUTER6_MAX: usize = OUTER6_BASE + GENEVE_OPT_LEN;

/// `overlay_egress` over IPv6: the outer headers, then the UDP checksum over the whole
/// datagram, which IPv6 requires (RFC 8200 section 8.1; the kernel driver's receivers refuse
/// zero by default).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn encap_v6(
    ctx: &XdpContext,
    cfg: &Config,
    meta: XdpMeta,
    slot: u32,
    nh_mac: [u8; 6],
    vinfo: &VniInfo,
    src_port: u16,
    tun_len: usize,
    counter: Counter,
) -> Verdict {
    let frame_len = ctx.data_end() - ctx.data();
    let udp_len = UDP_HLEN + tun_len + frame_len;
    let outer_len = ETH_HLEN + IPV6_HLEN + UDP_HLEN + tun_len;
    // SAFETY: helper call on the program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        error!(ctx, "adjust_head failed");
        return drop(Counter::DropInternal);
    }
    let data = ctx.data();
    let end = ctx.data_end();
    // Cannot fail (the inner frame is at least 14 bytes); keeps the verifier informed.
    let Some(hdr) = Span::<OUTER6_MAX>::at(data, end) else {
        return drop(Counter::DropInternal);
    };
    let remote = meta.peer_ip;
    let outer = outer_header6(
        cfg,
        nh_mac,
        &remote,
        vinfo,
        meta.vni,
        src_port,
        udp_len as u16,
    );
    let mut base = [0u8; OUTER6_BASE];
    base.copy_from_slice(&outer[..OUTER6_BASE]);
    hdr.put::<0>(base);
    if tun_len == GENEVE_HLEN + GENEVE_OPT_LEN {
        let mut opt = [0u8; GENEVE_OPT_LEN];
        opt.copy_from_slice(&outer[OUTER6_BASE..]);
        hdr.put::<OUTER6_BASE>(opt);
    }
    let udp = data + ETH_HLEN + IPV6_HLEN;
    let seed = pseudo6_sum(&cfg.local_ip, &remote, udp_len as u32);
    let Some(sum) = packet_sum(ctx, udp, udp_len, seed) else {
        return drop(Counter::DropInternal);
    };
    // Memory order throughout, so the result is stored as such; zero is sent as all ones.
    let csum = match !fold(sum) {
        0 => 0xffff,
        c => c,
    };
    hdr.put::<{ ETH_HLEN + IPV6_HLEN + 6 }>(csum.to_ne_bytes());
    if cfg.tx_redirect != 0 && cfg.underlay_ifindex != 0 {
        if let Some(c) = OVL_VNI_COUNTERS.get_ptr_mut(meta.vni) {
            // SAFETY: this CPU's slot of the entry; see `count`.
            unsafe {
                (*c).tx_packets += 1;
                (*c).tx_bytes += (end - data) as u64;
            }
        }
        let fast = if counter == Counter::TxGeneve {
            Counter::TxFastGeneve
        } else {
            Counter::TxFastVxlan
        };
        // SAFETY: helper call; the index comes from userspace's configuration.
        let action = unsafe { bpf_redirect(cfg.underlay_ifindex, 0) };
        return (action as u32, fast);
    }
    to_socket(ctx, meta, slot, counter)
}

#[classifier]
pub fn ovl_overlay_tc_egress(ctx: TcContext) -> i32 {
    let (action, counter) = tc_egress(&ctx);
    count(counter);
    action
}

/// Outer Ethernet, IPv4, UDP and tunnel header, then the inner Ethernet header: what the TC
/// program writes in front of the inner L3 packet, without and with the GENEVE option.
const TC_HDR: usize = OUTER_BASE + ETH_HLEN;
const TC_HDR_OPT: usize = TC_HDR + GENEVE_OPT_LEN;

/// TC verdicts (`TC_ACT_OK`, `TC_ACT_SHOT`), as i32: the bindings type them differently per
/// target, and the program returns an i32.
const TC_OK: i32 = 0;
const TC_SHOT: i32 = 2;

#[inline(always)]
fn tc_pass() -> (i32, Counter) {
    (TC_OK, Counter::TcPass)
}

/// Encapsulates known unicast IPv4 from the kernel's end of an overlay port and redirects it
/// to the underlay. GSO super-packets stay whole: `bpf_skb_adjust_room` with the encapsulation
/// flags marks them as UDP-tunnelled, so the underlay (or a NIC with tunnel TSO) segments them
/// and fixes the outer lengths per segment. Anything else continues unchanged to the XDP
/// program on the veth's other end, which hands it to the workers.
#[inline(always)]
fn tc_egress(ctx: &TcContext) -> (i32, Counter) {
    let Some(cfg) = config() else {
        return tc_pass();
    };
    // Over IPv6 the outer UDP checksum is required, and `bpf_skb_adjust_room` marks GSO
    // packets SKB_GSO_UDP_TUNNEL without _CSUM: their segments would leave with checksum zero,
    // which the kernel driver refuses. So IPv6 underlays encapsulate in XDP (per segment).
    if cfg.fast_path == 0 || cfg.underlay_ifindex == 0 || cfg.ipv6 != 0 {
        return tc_pass();
    }
    let skb = ctx.skb.skb;
    // SAFETY: the context pointer the kernel handed the program; plain field reads.
    let (ifindex, protocol, gso_size, gso_segs) = unsafe {
        (
            (*skb).ifindex,
            (*skb).protocol,
            (*skb).gso_size,
            (*skb).gso_segs,
        )
    };
    // Inner IPv6 and ARP go the workers' way: GSO would segment by the inner protocol, and
    // the kernel only adjusts room for IP.
    if protocol != u32::from(ETH_P_IPV4.to_be()) {
        return tc_pass();
    }
    // SAFETY: plain data, only read (see the crate docs on map values).
    let Some(port) = (unsafe { OVL_PORTS.get(ifindex) }) else {
        return tc_pass();
    };
    let vni = port.vni;
    // SAFETY: as above.
    let Some(vinfo) = (unsafe { OVL_VNIS.get(vni) }) else {
        return tc_pass();
    };
    let Ok(eth) = ctx.load::<[u8; ETH_HLEN]>(0) else {
        return tc_pass();
    };
    if eth[0] & 1 != 0 {
        return tc_pass();
    }
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&eth[..6]);
    // SAFETY: as above.
    let Some(fdb) = (unsafe { OVL_FDB.get(FdbKey::new(vni, dst)) }) else {
        return tc_pass();
    };
    let remote = fdb.remote;
    // SAFETY: as above.
    let Some(nh) = (unsafe { OVL_NEXTHOPS.get(remote) }) else {
        return tc_pass();
    };
    let len = ctx.len() as usize;
    // A GSO packet's segments fit the port's MTU; a single frame over it is the XDP program's
    // to answer (ICMP for DF) or drop.
    if gso_size == 0 && len.saturating_sub(ETH_HLEN) > overlay_mtu(cfg, vinfo) {
        return tc_pass();
    }
    let geneve = vinfo.encap == Encap::Geneve as u8;
    let with_opt = geneve && vinfo.geneve_opt_len as usize == GENEVE_OPT_LEN;
    let tun_len = if with_opt {
        GENEVE_HLEN + GENEVE_OPT_LEN
    } else {
        VXLAN_HLEN
    };
    // Room for the outer headers, inserted after the (inner) Ethernet header, which moves.
    let room = IPV4_HLEN + UDP_HLEN + tun_len + ETH_HLEN;
    let flags = (BPF_F_ADJ_ROOM_FIXED_GSO
        | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
        | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
        | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) as u64
        | ((ETH_HLEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);
    // The inner flow's hash (a socket's own, or dissected now): once the room is made the
    // packet no longer parses as the inner flow.
    // SAFETY: helper call on the program's own context.
    let hash = unsafe { bpf_get_hash_recalc(skb) };
    if ctx
        .adjust_room(room as i32, BPF_ADJ_ROOM_MAC, flags)
        .is_err()
    {
        return (TC_OK, Counter::TcFallback);
    }
    // Past GSO's 64 KB the length field is rewritten per segment anyway.
    let ip_len = (len + room - ETH_HLEN).min(0xffff) as u16;
    let src_port = ovl_common::src_port_from_hash(hash);
    let outer = outer_header(cfg, nh.mac, &remote, vinfo, vni, src_port, ip_len);
    let mut hdr = [0u8; TC_HDR_OPT];
    hdr[..OUTER_MAX].copy_from_slice(&outer);
    let counter = if geneve {
        Counter::TcTxGeneve
    } else {
        Counter::TcTxVxlan
    };
    let inner = ETH_HLEN + IPV4_HLEN + UDP_HLEN + tun_len;
    hdr[inner..inner + ETH_HLEN].copy_from_slice(&eth);
    let stored = if with_opt {
        ctx.store(0, &hdr, 0)
    } else {
        let mut short = [0u8; TC_HDR];
        short.copy_from_slice(&hdr[..TC_HDR]);
        ctx.store(0, &short, 0)
    };
    if stored.is_err() {
        // The room is there but the headers are not: the frame is garbage now.
        return (TC_SHOT, Counter::DropInternal);
    }
    if let Some(c) = OVL_VNI_COUNTERS.get_ptr_mut(vni) {
        // SAFETY: this CPU's slot of the entry; see `count`.
        unsafe {
            (*c).tx_packets += u64::from(gso_segs.max(1));
            (*c).tx_bytes += (len + room) as u64;
        }
    }
    // SAFETY: helper call; the index comes from userspace's configuration.
    let action = unsafe { bpf_redirect(cfg.underlay_ifindex, 0) };
    (action as i32, counter)
}

/// Outer Ethernet, IPv4 and UDP headers and the tunnel header without option.
const OUTER_BASE: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/// The same with the GENEVE option.
const OUTER_MAX: usize = OUTER_BASE + GENEVE_OPT_LEN;

/// The outer headers both egress programs put in front of an inner frame for `remote_be`:
/// Ethernet to the next hop `nh_mac`; IPv4 without options, DF, TTL 64, `ip_len` bytes, its
/// checksum; UDP from `src_port` to the VNI's port, checksum 0; VXLAN, or GENEVE with the
/// VNI's option in the last 8 bytes (unused without one).
#[inline(always)]
fn outer_header(
    cfg: &Config,
    nh_mac: [u8; 6],
    remote: &VtepAddr,
    vinfo: &VniInfo,
    vni: u32,
    src_port: u16,
    ip_len: u16,
) -> [u8; OUTER_MAX] {
    const TTL_PROTO: u16 = (64 << 8) | IPPROTO_UDP as u16;
    const DF: u16 = 0x4000;
    // IPv4 VTEPs are stored mapped into IPv6: the last four bytes.
    let local_be = u32::from_ne_bytes([
        cfg.local_ip[12],
        cfg.local_ip[13],
        cfg.local_ip[14],
        cfg.local_ip[15],
    ]);
    let remote_be = u32::from_ne_bytes([remote[12], remote[13], remote[14], remote[15]]);
    let mut h = [0u8; OUTER_MAX];
    h[0..6].copy_from_slice(&nh_mac);
    h[6..12].copy_from_slice(&cfg.local_mac);
    h[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    let ip = ETH_HLEN;
    let csum = !fold(
        0x4500
            + ip_len as u32
            + DF as u32
            + TTL_PROTO as u32
            + sum_be32(local_be)
            + sum_be32(remote_be),
    );
    let [l0, l1] = ip_len.to_be_bytes();
    let [c0, c1] = csum.to_be_bytes();
    h[ip..ip + 12].copy_from_slice(&[0x45, 0, l0, l1, 0, 0, 0x40, 0, 64, IPPROTO_UDP, c0, c1]);
    h[ip + 12..ip + 16].copy_from_slice(&local_be.to_ne_bytes());
    h[ip + 16..ip + 20].copy_from_slice(&remote_be.to_ne_bytes());
    let udp = ip + IPV4_HLEN;
    h[udp..udp + 2].copy_from_slice(&src_port.to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&vinfo.udp_port.to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&ip_len.saturating_sub(IPV4_HLEN as u16).to_be_bytes());
    let tun = udp + UDP_HLEN;
    let v = vni.to_be_bytes();
    if vinfo.encap == Encap::Geneve as u8 {
        let with_opt = vinfo.geneve_opt_len as usize == GENEVE_OPT_LEN;
        let words = if with_opt {
            (GENEVE_OPT_LEN / 4) as u8
        } else {
            0
        };
        let [p0, p1] = ETH_P_TEB.to_be_bytes();
        h[tun..tun + 8].copy_from_slice(&[words, 0, p0, p1, v[1], v[2], v[3], 0]);
        if with_opt {
            h[OUTER_BASE..].copy_from_slice(&vinfo.geneve_opt);
        }
    } else {
        h[tun..tun + 8].copy_from_slice(&[VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
    h
}

/// The IPv6 counterpart of `outer_header`: Ethernet to `nh_mac`; IPv6 with traffic class and
/// flow label zero, hop limit 64, payload `udp_len`; UDP with checksum zero (the caller sums
/// the datagram and fills it in); the tunnel header as there.
#[inline(always)]
fn outer_header6(
    cfg: &Config,
    nh_mac: [u8; 6],
    remote: &VtepAddr,
    vinfo: &VniInfo,
    vni: u32,
    src_port: u16,
    udp_len: u16,
) -> [u8; OUTER6_MAX] {
    let mut h = [0u8; OUTER6_MAX];
    h[0..6].copy_from_slice(&nh_mac);
    h[6..12].copy_from_slice(&cfg.local_mac);
    h[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = ETH_HLEN;
    let [l0, l1] = udp_len.to_be_bytes();
    h[ip..ip + 8].copy_from_slice(&[0x60, 0, 0, 0, l0, l1, IPPROTO_UDP, 64]);
    h[ip + 8..ip + 24].copy_from_slice(&cfg.local_ip);
    h[ip + 24..ip + 40].copy_from_slice(remote);
    let udp = ip + IPV6_HLEN;
    h[udp..udp + 2].copy_from_slice(&src_port.to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&vinfo.udp_port.to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&[l0, l1]);
    let tun = udp + UDP_HLEN;
    let v = vni.to_be_bytes();
    if vinfo.encap == Encap::Geneve as u8 {
        let with_opt = vinfo.geneve_opt_len as usize == GENEVE_OPT_LEN;
        let words = if with_opt {
            (GENEVE_OPT_LEN / 4) as u8
        } else {
            0
        };
        let [p0, p1] = ETH_P_TEB.to_be_bytes();
        h[tun..tun + 8].copy_from_slice(&[words, 0, p0, p1, v[1], v[2], v[3], 0]);
        if with_opt {
            h[OUTER6_BASE..].copy_from_slice(&vinfo.geneve_opt);
        }
    } else {
        h[tun..tun + 8].copy_from_slice(&[VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
    h
}

/// Hash of the inner flow for the outer source port: MAC addresses, and for IPv4 the
/// addresses, protocol and (unless fragmented) TCP/UDP ports, so one flow keeps one path.
#[inline(always)]
fn flow_hash(data: usize, end: usize) -> u32 {
    let mut h = 0u32;
    let Some(eth) = Span::<ETH_HLEN>::at(data, end) else {
        return h;
    };
    h = ovl_common::mix32(h, eth.raw32::<0>());
    h = ovl_common::mix32(h, eth.raw32::<4>());
    h = ovl_common::mix32(h, eth.raw32::<8>());
    let ethertype = eth.be16::<12>();
    h = ovl_common::mix32(h, ethertype as u32);
    if ethertype != ETH_P_IPV4 {
        return h;
    }
    let ip = data + ETH_HLEN;
    let Some(iph) = Span::<IPV4_HLEN>::at(ip, end) else {
        return h;
    };
    h = ovl_common::mix32(h, iph.raw32::<12>());
    h = ovl_common::mix32(h, iph.raw32::<16>());
    let proto = iph.u8::<9>();
    h = ovl_common::mix32(h, proto as u32);
    let ihl = ((iph.u8::<0>() & 0x0f) as usize) * 4;
    let fragmented = iph.be16::<6>() & 0x3fff != 0;
    if (proto == 6 || proto == 17) && !fragmented && ihl >= IPV4_HLEN {
        // The ports.
        if let Some(ports) = raw32_at(ip + ihl, end) {
            h = ovl_common::mix32(h, ports);
        }
    }
    h
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
