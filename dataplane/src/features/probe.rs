//! The probes themselves: raw `bpf(2)` loads of hand-assembled programs, map creations, one
//! `BPF_PROG_TEST_RUN` each for live frames and the TC encapsulation flags, and a few socket
//! options. `bpftool feature probe` is no guide (a kernel build can refuse a helper it lists),
//! so every helper is judged by loading a program that calls it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{Avail, Feature, Kernel, Probed};
use crate::{
    testrun::TestAttr,
    worker::{SO_PREFER_BUSY_POLL, XDP_MAX_TX_SKB_BUDGET, set_int_opt},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

const PROG_SCHED_CLS: u32 = 3;
const PROG_XDP: u32 = 6;

const MAP_HASH: u32 = 1;
const MAP_ARRAY: u32 = 2;
const MAP_PERCPU_HASH: u32 = 5;
const MAP_PERCPU_ARRAY: u32 = 6;
const MAP_LRU_HASH: u32 = 9;
const MAP_XSKMAP: u32 = 17;
const MAP_DEVMAP_HASH: u32 = 25;
const MAP_RINGBUF: u32 = 27;

const FN_MAP_LOOKUP: i32 = 1;
const FN_KTIME_GET_NS: i32 = 5;
const FN_SKB_STORE_BYTES: i32 = 9;
const FN_REDIRECT: i32 = 23;
const FN_SKB_LOAD_BYTES: i32 = 26;
const FN_CSUM_DIFF: i32 = 28;
const FN_GET_HASH_RECALC: i32 = 34;
const FN_XDP_ADJUST_HEAD: i32 = 44;
const FN_SKB_ADJUST_ROOM: i32 = 50;
const FN_REDIRECT_MAP: i32 = 51;
const FN_XDP_ADJUST_META: i32 = 54;
const FN_XDP_ADJUST_TAIL: i32 = 65;
const FN_SK_RELEASE: i32 = 86;
const FN_SKC_LOOKUP_TCP: i32 = 99;
const FN_RINGBUF_OUTPUT: i32 = 130;

const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
/// The flags the TC program passes to `bpf_skb_adjust_room`: FIXED_GSO, ENCAP_L3_IPV4,
/// ENCAP_L4_UDP, ENCAP_L2_ETH and ENCAP_L2(14).
const TC_ENCAP_FLAGS: u64 = 1 | (1 << 1) | (1 << 4) | (1 << 6) | (14 << 56);
const BPF_ADJ_ROOM_MAC: i32 = 1;

const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn mov_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}

fn mov_reg(dst: u8, src: u8) -> Insn {
    Insn {
        code: 0xbf,
        regs: dst | (src << 4),
        off: 0,
        imm: 0,
    }
}

fn add_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0x07,
        regs: dst,
        off: 0,
        imm,
    }
}

/// `dst = imm64` (two slots); `src` 1 makes the value a map file descriptor.
fn ld_imm64(dst: u8, src: u8, v: u64) -> [Insn; 2] {
    [
        Insn {
            code: 0x18,
            regs: dst | (src << 4),
            off: 0,
            imm: v as u32 as i32,
        },
        Insn {
            imm: (v >> 32) as u32 as i32,
            ..Insn::default()
        },
    ]
}

/// `*(u64 *)(r10 + off) = 0`.
fn zero_stack(off: i16) -> Insn {
    Insn {
        code: 0x7a,
        regs: 10,
        off,
        imm: 0,
    }
}

fn call(helper: i32) -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: helper,
    }
}

/// `if r0 == 0 goto +skip`.
fn jeq0(skip: i16) -> Insn {
    Insn {
        code: 0x15,
        regs: 0,
        off: skip,
        imm: 0,
    }
}

fn exit() -> Insn {
    Insn {
        code: 0x95,
        ..Insn::default()
    }
}

/// A helper argument in a probe program.
#[derive(Clone, Copy, Debug)]
enum Arg {
    /// The program's context.
    Ctx,
    Imm(i64),
    /// A map (by descriptor).
    Map(i32),
    /// 64 zeroed bytes on the stack.
    Stack,
}

/// `r6 = ctx; zero the stack; set r1..; call helper; [release r0]; r0 = verdict; exit`.
fn helper_program(helper: i32, args: &[Arg], release: bool, verdict: i32) -> Vec<Insn> {
    let mut p = vec![mov_reg(6, 1)];
    if args.iter().any(|a| matches!(a, Arg::Stack)) {
        p.extend((1..=8).map(|i| zero_stack(-8 * i)));
    }
    for (i, a) in args.iter().enumerate() {
        let r = i as u8 + 1;
        match *a {
            Arg::Ctx => p.push(mov_reg(r, 6)),
            Arg::Imm(v) => match i32::try_from(v) {
                Ok(v) => p.push(mov_imm(r, v)),
                Err(_) => p.extend(ld_imm64(r, 0, v as u64)),
            },
            Arg::Map(fd) => p.extend(ld_imm64(r, 1, fd as u64)),
            Arg::Stack => {
                p.push(mov_reg(r, 10));
                p.push(add_imm(r, -64));
            }
        }
    }
    p.push(call(helper));
    if release {
        // A socket reference must be released on every path, or the verifier refuses.
        p.extend([jeq0(2), mov_reg(1, 0), call(FN_SK_RELEASE)]);
    }
    p.extend([mov_imm(0, verdict), exit()]);
    p
}

/// The leading members of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_MAP_CREATE` (leading members).
#[repr(C)]
#[derive(Default)]
struct MapAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a live, correctly laid out prefix of `union bpf_attr` for `cmd`; the
    // kernel reads at most `size_of::<T>()` bytes of it and writes only into it (and into the
    // buffers it points at, which outlive the call).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: a new descriptor the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENOPROTOOPT) => "ENOPROTOOPT".into(),
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT".into(),
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        _ => e.to_string(),
    }
}

/// What a failed load's errno and verifier log say about the helper.
pub(super) fn judge_load(errno: Option<i32>, log: &str) -> Avail {
    if errno == Some(libc::EPERM) {
        return Avail::Denied;
    }
    let refused = log.lines().find(|l| {
        l.contains("unknown func") || l.contains("invalid func") || l.contains("cannot use helper")
    });
    if let Some(l) = refused {
        return Avail::No(l.trim().to_string());
    }
    if log.trim().is_empty() {
        // No verifier output at all: the program type itself (or bpf()) is missing.
        return Avail::No(format!("errno {}", errno.unwrap_or(0)));
    }
    let last = super::verifier::summary(log);
    Avail::Imprecise(last)
}

/// A probe session: the log buffer and the maps the helper probes point at.
struct Prober {
    log: Vec<u8>,
    array: Option<OwnedFd>,
    xsk: Option<OwnedFd>,
    ringbuf: Option<OwnedFd>,
}

impl Prober {
    fn load(&mut self, prog_type: u32, insns: &[Insn]) -> Result<OwnedFd, Avail> {
        let license = b"GPL\0";
        self.log.fill(0);
        let mut attr = LoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: self.log.len() as u32,
            log_buf: self.log.as_mut_ptr() as u64,
            ..LoadAttr::default()
        };
        attr.prog_name[..9].copy_from_slice(b"ovl_probe");
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(owned(fd)),
            Err(e) => {
                let end = self
                    .log
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(self.log.len());
                let log = String::from_utf8_lossy(&self.log[..end]).into_owned();
                Err(judge_load(e.raw_os_error(), &log))
            }
        }
    }

    fn helper(&mut self, prog_type: u32, helper: i32, args: &[Arg], release: bool) -> Avail {
        let verdict = if prog_type == PROG_XDP { XDP_PASS } else { 0 };
        match self.load(prog_type, &helper_program(helper, args, release, verdict)) {
            Ok(_) => Avail::Yes,
            Err(a) => a,
        }
    }

    fn map_arg(fd: &Option<OwnedFd>) -> Arg {
        // Without the map the probe still tells "unknown func" apart, only less precisely.
        fd.as_ref().map_or(Arg::Imm(0), |f| Arg::Map(f.as_raw_fd()))
    }
}

fn create_map(map_type: u32) -> Result<OwnedFd, Avail> {
    let (key, value, entries) = if map_type == MAP_RINGBUF {
        (0, 0, 4096)
    } else {
        (4, 4, 1)
    };
    let mut attr = MapAttr {
        map_type,
        key_size: key,
        value_size: value,
        max_entries: entries,
        map_flags: 0,
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            Avail::Denied
        } else {
            Avail::No(errno_name(&e))
        }
    })
}

/// A UDP/IPv4 frame for the test runs.
fn test_frame() -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    // IPv4: 50 bytes, TTL 64, UDP, 10.0.0.1 -> 10.0.0.2 (checksum not needed by the helper).
    f[14..24].copy_from_slice(&[0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17]);
    f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f[34..42].copy_from_slice(&[0x30, 0x39, 0x12, 0xb5, 0, 30, 0, 0]);
    f
}

fn test_run(prog: &OwnedFd, data: &[u8], flags: u32) -> std::io::Result<u32> {
    let mut out = [0u8; 256];
    let live = flags & BPF_F_TEST_XDP_LIVE_FRAMES != 0;
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        // Live frames take no output buffer.
        data_size_out: if live { 0 } else { out.len() as u32 },
        data_out: if live { 0 } else { out.as_mut_ptr() as u64 },
        repeat: 1,
        flags,
        ..TestAttr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: one frame through `return XDP_DROP`.
fn probe_live_frames(p: &mut Prober) -> Avail {
    let prog = match p.load(PROG_XDP, &[mov_imm(0, XDP_DROP), exit()]) {
        Ok(f) => f,
        Err(a) => return a,
    };
    match test_run(&prog, &test_frame(), BPF_F_TEST_XDP_LIVE_FRAMES) {
        Ok(_) => Avail::Yes,
        // The program loaded, so bpf() is allowed: a refusal here is the kernel's (a build
        // can refuse live frames outright).
        Err(e) => Avail::No(format!("BPF_PROG_RUN refused it: {}", errno_name(&e))),
    }
}

/// `bpf_skb_adjust_room` with the TC program's own encapsulation flags on a real frame: a
/// kernel that does not know a flag answers -EINVAL.
fn probe_encap_flags(p: &mut Prober) -> Avail {
    let mut insns = vec![mov_imm(2, 50), mov_imm(3, BPF_ADJ_ROOM_MAC)];
    insns.extend(ld_imm64(4, 0, TC_ENCAP_FLAGS));
    insns.extend([call(FN_SKB_ADJUST_ROOM), exit()]);
    let prog = match p.load(PROG_SCHED_CLS, &insns) {
        Ok(f) => f,
        Err(a) => return a,
    };
    match test_run(&prog, &test_frame(), 0) {
        Ok(0) => Avail::Yes,
        Ok(rc) => Avail::No(format!("the helper returned {}", rc as i32)),
        Err(e) => Avail::Imprecise(format!("test run: {}", errno_name(&e))),
    }
}

fn socket(domain: libc::c_int, ty: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(owned(i64::from(fd)))
    }
}

/// A socket option's probe: unknown options answer ENOPROTOOPT; anything else (EACCES for
/// XDP_MAX_TX_SKB_BUDGET on a socket without a TX ring) means the kernel knows it.
fn judge_sockopt(r: std::io::Result<()>) -> Avail {
    match r {
        Ok(()) => Avail::Yes,
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Avail::No("ENOPROTOOPT".into()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Avail::Denied,
        Err(_) => Avail::Yes,
    }
}

fn probe_xsk(results: &mut Vec<(Feature, Avail)>) {
    let xsk = match socket(libc::AF_XDP, libc::SOCK_RAW) {
        Ok(s) => s,
        Err(e) => {
            let a = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => Avail::Denied,
                _ => Avail::No(errno_name(&e)),
            };
            for f in [Feature::AfXdp, Feature::XdpOptions, Feature::TxSkbBudget] {
                results.push((f, a.clone()));
            }
            return;
        }
    };
    results.push((Feature::AfXdp, Avail::Yes));
    let fd = xsk.as_raw_fd();
    let mut v = 0u32;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt into our own u32 with its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut v as *mut u32).cast(),
            &mut len,
        )
    };
    let opts = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    results.push((Feature::XdpOptions, judge_sockopt(opts)));
    results.push((
        Feature::TxSkbBudget,
        judge_sockopt(set_int_opt(fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, 32)),
    ));
}

fn probe_busy_poll() -> Avail {
    match socket(libc::AF_INET, libc::SOCK_DGRAM) {
        Ok(s) => judge_sockopt(set_int_opt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PREFER_BUSY_POLL,
            1,
        )),
        Err(e) => Avail::Failed(errno_name(&e)),
    }
}

fn probe_bpffs() -> Avail {
    // SAFETY: plain data, filled by the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let path = c"/sys/fs/bpf";
    // SAFETY: a NUL-terminated path and our own statfs.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    if rc == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        Avail::Yes
    } else {
        Avail::No("not mounted at /sys/fs/bpf".into())
    }
}

/// The running kernel, from uname.
pub fn kernel() -> Kernel {
    // SAFETY: plain data, filled by the call.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: our own utsname.
    let release = if unsafe { libc::uname(&mut u) } == 0 {
        // SAFETY: uname NUL-terminates the field.
        unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        "unknown".to_string()
    };
    Kernel::parse(&release)
}

/// Probes every feature once (a few dozen syscalls).
pub fn probe() -> Probed {
    let mut r: Vec<(Feature, Avail)> = Vec::new();
    let mut maps = Vec::new();
    for (f, t) in [
        (Feature::MapArray, MAP_ARRAY),
        (Feature::MapHash, MAP_HASH),
        (Feature::MapLruHash, MAP_LRU_HASH),
        (Feature::MapPercpuArray, MAP_PERCPU_ARRAY),
        (Feature::MapPercpuHash, MAP_PERCPU_HASH),
        (Feature::MapXsk, MAP_XSKMAP),
        (Feature::MapDevmapHash, MAP_DEVMAP_HASH),
        (Feature::MapRingbuf, MAP_RINGBUF),
    ] {
        match create_map(t) {
            Ok(fd) => {
                r.push((f, Avail::Yes));
                maps.push((t, fd));
            }
            Err(a) => r.push((f, a)),
        }
    }
    let mut take = |t: u32| {
        maps.iter()
            .position(|(m, _)| *m == t)
            .map(|i| maps.swap_remove(i).1)
    };
    let mut p = Prober {
        log: vec![0u8; 64 * 1024],
        array: take(MAP_ARRAY),
        xsk: take(MAP_XSKMAP),
        ringbuf: take(MAP_RINGBUF),
    };
    let (array, xsk, ring) = (
        Prober::map_arg(&p.array),
        Prober::map_arg(&p.xsk),
        Prober::map_arg(&p.ringbuf),
    );
    let prog = |p: &mut Prober, t| match p.load(t, &[mov_imm(0, 0), exit()]) {
        Ok(_) => Avail::Yes,
        Err(a) => a,
    };
    r.push((Feature::ProgXdp, prog(&mut p, PROG_XDP)));
    r.push((Feature::ProgTc, prog(&mut p, PROG_SCHED_CLS)));
    use Arg::{Ctx, Imm, Stack};
    let x = PROG_XDP;
    let tc = PROG_SCHED_CLS;
    let helpers: [(Feature, u32, i32, Vec<Arg>, bool); 17] = [
        (
            Feature::XdpAdjustHead,
            x,
            FN_XDP_ADJUST_HEAD,
            vec![Ctx, Imm(0)],
            false,
        ),
        (
            Feature::XdpAdjustTail,
            x,
            FN_XDP_ADJUST_TAIL,
            vec![Ctx, Imm(0)],
            false,
        ),
        (
            Feature::XdpAdjustMeta,
            x,
            FN_XDP_ADJUST_META,
            vec![Ctx, Imm(0)],
            false,
        ),
        (
            Feature::XdpRedirect,
            x,
            FN_REDIRECT,
            vec![Imm(1), Imm(0)],
            false,
        ),
        (
            Feature::XdpRedirectMap,
            x,
            FN_REDIRECT_MAP,
            vec![xsk, Imm(0), Imm(0)],
            false,
        ),
        (
            Feature::XdpCsumDiff,
            x,
            FN_CSUM_DIFF,
            vec![Imm(0); 5],
            false,
        ),
        (
            Feature::XdpSkcLookupTcp,
            x,
            FN_SKC_LOOKUP_TCP,
            vec![Ctx, Stack, Imm(12), Imm(-1), Imm(0)],
            true,
        ),
        // Only a socket from a lookup can be released: probed alone it is judged by whether
        // the verifier knows the helper (its argument complaint means it does).
        (Feature::XdpSkRelease, x, FN_SK_RELEASE, vec![Imm(0)], false),
        (Feature::XdpKtimeGetNs, x, FN_KTIME_GET_NS, vec![], false),
        (
            Feature::XdpMapLookup,
            x,
            FN_MAP_LOOKUP,
            vec![array, Stack],
            false,
        ),
        (
            Feature::XdpRingbufOutput,
            x,
            FN_RINGBUF_OUTPUT,
            vec![ring, Stack, Imm(8), Imm(0)],
            false,
        ),
        (
            Feature::TcAdjustRoom,
            tc,
            FN_SKB_ADJUST_ROOM,
            vec![Ctx, Imm(0), Imm(0), Imm(0)],
            false,
        ),
        (
            Feature::TcRedirect,
            tc,
            FN_REDIRECT,
            vec![Imm(1), Imm(0)],
            false,
        ),
        (
            Feature::TcGetHashRecalc,
            tc,
            FN_GET_HASH_RECALC,
            vec![Ctx],
            false,
        ),
        (
            Feature::TcLoadBytes,
            tc,
            FN_SKB_LOAD_BYTES,
            vec![Ctx, Imm(0), Stack, Imm(8)],
            false,
        ),
        (
            Feature::TcStoreBytes,
            tc,
            FN_SKB_STORE_BYTES,
            vec![Ctx, Imm(0), Stack, Imm(8), Imm(0)],
            false,
        ),
        (
            Feature::TcMapLookup,
            tc,
            FN_MAP_LOOKUP,
            vec![array, Stack],
            false,
        ),
    ];
    for (f, t, id, args, release) in helpers {
        let a = p.helper(t, id, &args, release);
        r.push((f, a));
    }
    // A lookup that loaded with its release proves the release helper too.
    if r.iter()
        .any(|(f, a)| *f == Feature::XdpSkcLookupTcp && *a == Avail::Yes)
    {
        for (f, a) in r.iter_mut() {
            if *f == Feature::XdpSkRelease {
                *a = Avail::Yes;
            }
        }
    }
    r.push((Feature::TcEncapL2Eth, probe_encap_flags(&mut p)));
    r.push((Feature::LiveFrames, probe_live_frames(&mut p)));
    probe_xsk(&mut r);
    r.push((Feature::PreferBusyPoll, probe_busy_poll()));
    let kernel = kernel();
    // aya attaches TC programs as TCX links from 6.6 on and through netlink before: it goes by
    // the version, and so does this.
    r.push((
        Feature::Tcx,
        if kernel.at_least(6, 6) {
            Avail::Yes
        } else {
            Avail::No("kernel older than 6.6".into())
        },
    ));
    r.push((Feature::Bpffs, probe_bpffs()));
    Probed { kernel, results: r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_encoded_as_the_kernel_reads_them() {
        let p = helper_program(
            FN_XDP_ADJUST_HEAD,
            &[Arg::Ctx, Arg::Imm(0)],
            false,
            XDP_PASS,
        );
        // r6 = r1; r1 = r6; r2 = 0; call 44; r0 = 2; exit
        let codes: Vec<(u8, u8, i32)> = p.iter().map(|i| (i.code, i.regs, i.imm)).collect();
        assert_eq!(
            codes,
            [
                (0xbf, 0x16, 0),
                (0xbf, 0x61, 0),
                (0xb7, 2, 0),
                (0x85, 0, 44),
                (0xb7, 0, 2),
                (0x95, 0, 0)
            ]
        );
        let m = ld_imm64(1, 1, 7);
        assert_eq!(
            (m[0].code, m[0].regs, m[0].imm, m[1].imm),
            (0x18, 0x11, 7, 0)
        );
        let f = ld_imm64(4, 0, TC_ENCAP_FLAGS);
        assert_eq!((f[0].imm as u32, f[1].imm as u32), (0x53, 14 << 24));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn a_released_lookup_checks_for_null_first() {
        let p = helper_program(FN_SKC_LOOKUP_TCP, &[Arg::Ctx, Arg::Stack], true, XDP_PASS);
        let n = p.len();
        assert_eq!((p[n - 5].code, p[n - 5].off), (0x15, 2));
        assert_eq!(p[n - 3].imm, FN_SK_RELEASE);
        // 8 stack stores, the frame pointer copied and moved down 64 bytes.
        assert_eq!(p.iter().filter(|i| i.code == 0x7a).count(), 8);
        assert!(p.iter().any(|i| i.code == 0x07 && i.imm == -64));
    }

    #[test]
    fn load_failures_are_judged_by_the_log() {
        let refused = "0: R1=ctx() R10=fp0\n0: (85) call bpf_xdp_adjust_meta#54\nprogram of this type cannot use helper bpf_xdp_adjust_meta#54\nprocessed 1 insns\n";
        assert!(
            matches!(judge_load(Some(libc::EINVAL), refused), Avail::No(l) if l.contains("cannot use helper"))
        );
        assert!(matches!(
            judge_load(Some(libc::EINVAL), "unknown func bpf_skc_lookup_tcp#99\n"),
            Avail::No(_)
        ));
        assert!(matches!(
            judge_load(Some(libc::EINVAL), "invalid func unknown#130\n"),
            Avail::No(_)
        ));
        assert_eq!(judge_load(Some(libc::EPERM), ""), Avail::Denied);
        assert!(matches!(judge_load(Some(libc::EINVAL), ""), Avail::No(_)));
        let args = "0: (85) call bpf_sk_release#86\nR1 type=scalar expected=sock_common, sock, tcp_sock, xdp_sock, ptr_, ptr_\nprocessed 2 insns (limit 1000000)\n";
        assert_eq!(
            judge_load(Some(libc::EACCES), args),
            Avail::Imprecise(
                "R1 type=scalar expected=sock_common, sock, tcp_sock, xdp_sock, ptr_, ptr_".into()
            )
        );
    }
}
