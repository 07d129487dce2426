//! The XDP-frame generator: frames handed to a device the way a NIC driver hands received
//! frames to XDP, as `xdp_frame`s rather than skbs.
//!
//! A four-instruction XDP program (`return bpf_redirect(ifindex, 0)`) is run by
//! `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on a frame template: the kernel builds each
//! frame in a page pool and carries the redirect out, so `ifindex` transmits XDP frames. On a
//! veth they arrive at the peer's NAPI (which must exist: an XDP program or GRO on the peer),
//! where the peer's own XDP program and stack take them like frames from a NIC. The technique is
//! xdp-trafficgen's; Debian's build of it does not load on this kernel.
//!
//! The kernel does not say how many frames the device accepted: `sent` counts frames run
//! through the program, and the receiver counts what arrived.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{FrameSpec, GenConfig, GenError, GenReport, build_templates};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const BPF_FUNC_REDIRECT: i32 = 23;
/// Frames of the first `BPF_PROG_RUN` call. Every call costs the kernel two RCU grace periods
/// (it swaps the program into the XDP dispatcher and out again, `bpf_dispatcher_change_prog`),
/// 10-30 ms on this VM, during which no frame is sent: 4096 frames a call capped the rate at
/// about 140 kpps in bursts of 4096 that overflowed a veth's 256-frame ring. So the calls grow
/// until each carries about [`CALL_TARGET`] of frames, and never run far past the deadline.
const FIRST_REPEAT: u32 = 1 << 12;
const MAX_REPEAT: u32 = 1 << 24;
/// How long one call should send for, once its rate is known: the grace periods' share of
/// the run stays small, and a stop request (or the deadline) waits at most this long.
const CALL_TARGET: Duration = Duration::from_millis(200);
/// The kernel's limit on `batch_size` for live frames.
const MAX_BATCH: usize = 256;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// One eBPF instruction, as `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `r1 = ifindex; r2 = 0; call bpf_redirect; exit` (the verdict is the helper's return value).
fn redirect_program(ifindex: u32) -> [Insn; 4] {
    const MOV64_IMM: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
    const CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT
    [
        Insn {
            code: MOV64_IMM,
            regs: 1,
            off: 0,
            imm: ifindex as i32,
        },
        Insn {
            code: MOV64_IMM,
            regs: 2,
            off: 0,
            imm: 0,
        },
        Insn {
            code: CALL,
            regs: 0,
            off: 0,
            imm: BPF_FUNC_REDIRECT,
        },
        Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
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

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a live, correctly laid out prefix of `union bpf_attr` for `cmd`; the
    // kernel reads at most `size_of::<T>()` bytes of it and writes only into it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn load_redirect(ifindex: u32) -> Result<OwnedFd, GenError> {
    let insns = redirect_program(ifindex);
    let license = b"GPL\0";
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"xdp_gen\0");
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..LoadAttr::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|source| GenError::Io {
        what: "loading the redirect program",
        source,
    })?;
    // SAFETY: a new descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `uname -r`.
fn kernel_release() -> String {
    // SAFETY: plain data, filled by the call.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: our own utsname; uname NUL-terminates the field.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: as above.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether this kernel runs `BPF_PROG_RUN` with live frames (see `probe_live`), or why not.
pub fn live_frames_refused() -> Option<String> {
    // The smallest frame a test run takes: an Ethernet header.
    probe_live(&[0u8; 64]).err().map(|e| e.to_string())
}

/// Whether the kernel runs live frames at all: one frame through `return XDP_DROP` (the
/// data plane's feature probe does the same). Older kernels do not know the flag (5.18+),
/// and a build can refuse it outright (EPERM even for root).
fn probe_live(template: &[u8]) -> Result<(), GenError> {
    let insns = [
        Insn {
            code: 0x07 | 0xb0,
            regs: 0,
            off: 0,
            imm: 1, // XDP_DROP
        },
        Insn {
            code: 0x05 | 0x90,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = b"GPL\0";
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..LoadAttr::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|source| GenError::Io {
        what: "loading the probe program",
        source,
    })?;
    // SAFETY: a new descriptor the kernel just returned to us.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut test = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: template.len() as u32,
        data_in: template.as_ptr() as u64,
        repeat: 1,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..TestAttr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut test).map(|_| ()).map_err(|e| {
        GenError::Unsupported(format!(
            "BPF_PROG_RUN with live frames is refused by kernel {} ({e}); it needs Linux 5.18 or newer and a build that allows it: use --mode afxdp (ovl-bench: --frames-via skb)",
            kernel_release()
        ))
    })
}

fn ifindex(name: &str) -> Result<u32, GenError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| GenError::Config(format!("interface name `{name}`")))?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(GenError::Config(format!("no interface `{name}` here")));
    }
    Ok(i)
}

/// Sends `spec`'s frames out of `cfg.ifname` as XDP frames until `cfg.duration` passes or
/// `stop` is set (the templates, one per source port, take turns call by call). `cfg.queue`,
/// `frames` and `ring` do not apply; pacing (`rate_pps`) is refused.
pub fn run_live(
    cfg: &GenConfig,
    spec: &FrameSpec,
    stop: &AtomicBool,
    mut progress: impl FnMut(&GenReport),
) -> Result<GenReport, GenError> {
    cfg.validate()?;
    if cfg.rate_pps.is_some() {
        return Err(GenError::Config(
            "XDP-frame mode sends as fast as it can; --rate needs the AF_XDP mode".into(),
        ));
    }
    let templates = build_templates(spec)?;
    if let Some(cpu) = cfg.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(GenError::Config(format!("cannot pin to CPU {cpu}")));
    }
    probe_live(&templates[0])?;
    let prog = load_redirect(ifindex(&cfg.ifname)?)?;
    let batch = cfg.batch.clamp(1, MAX_BATCH) as u32;
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut next_progress = start + PROGRESS_EVERY;
    let mut report = GenReport::default();
    let mut turn = 0usize;
    let mut repeat = FIRST_REPEAT;
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            progress(&finish(report.clone(), now - start));
        }
        let t = &templates[turn % templates.len()];
        turn += 1;
        let mut attr = TestAttr {
            prog_fd: prog.as_raw_fd() as u32,
            data_size_in: t.len() as u32,
            data_in: t.as_ptr() as u64,
            repeat,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: batch,
            ..TestAttr::default()
        };
        match bpf(BPF_PROG_TEST_RUN, &mut attr) {
            Ok(_) => {}
            // A signal (the stop request) ends a call early; how many of its frames went is
            // not known, so none are counted.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(source) => {
                return Err(GenError::Io {
                    what: "BPF_PROG_RUN with live frames",
                    source,
                });
            }
        }
        report.submitted += u64::from(repeat);
        report.sent += u64::from(repeat);
        report.bytes += u64::from(repeat) * t.len() as u64;
        repeat = next_repeat(
            repeat,
            now.elapsed(),
            deadline.saturating_duration_since(Instant::now()),
        );
    }
    Ok(finish(report, start.elapsed()))
}

/// Frames for the next call, from the last call's `repeat` frames in `took` (grace periods
/// included, so the rate is underestimated and calls grow cautiously): about [`CALL_TARGET`]
/// worth, and no more than the time `left` before the deadline holds.
fn next_repeat(repeat: u32, took: Duration, left: Duration) -> u32 {
    let secs = took.as_secs_f64().max(1e-6);
    let rate = f64::from(repeat) / secs;
    let want = rate * CALL_TARGET.min(left).as_secs_f64();
    // At most eight times the last call, so one fast call cannot overshoot by much.
    let cap = f64::from(repeat) * 8.0;
    want.min(cap)
        .clamp(f64::from(FIRST_REPEAT), f64::from(MAX_REPEAT)) as u32
}

fn finish(mut r: GenReport, elapsed: Duration) -> GenReport {
    r.seconds = elapsed.as_secs_f64();
    r.pps = if r.seconds > 0.0 {
        r.sent as f64 / r.seconds
    } else {
        0.0
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_redirect_to_the_interface() {
        let p = redirect_program(7);
        assert_eq!((p[0].code, p[0].regs, p[0].imm), (0xb7, 1, 7));
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0xb7, 2, 0));
        assert_eq!((p[2].code, p[2].imm), (0x85, 23));
        assert_eq!(p[3].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn calls_grow_to_the_target_and_shrink_before_the_deadline() {
        let ms = Duration::from_millis;
        // 4096 frames in 25 ms (mostly grace periods): 8 times more next, not more.
        assert_eq!(next_repeat(4096, ms(25), ms(3000)), 4096 * 8);
        // A rate of 1 Mframes/s known: 200 ms worth.
        assert_eq!(next_repeat(100_000, ms(100), ms(3000)), 200_000);
        // Only 50 ms left: 50 ms worth.
        assert_eq!(next_repeat(100_000, ms(100), ms(50)), 50_000);
        // Never below the first call's size nor above the maximum.
        assert_eq!(next_repeat(4096, ms(500), ms(1)), FIRST_REPEAT);
        assert_eq!(next_repeat(MAX_REPEAT, ms(1), ms(3000)), MAX_REPEAT);
    }
}
