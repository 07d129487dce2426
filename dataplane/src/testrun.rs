//! `BPF_PROG_TEST_RUN` for the XDP and TC programs: run a loaded program once on a frame, in
//! the kernel, and get back its verdict, the output bytes and (XDP) the metadata it
//! prepended. aya 0.14 has no public API for this, so it is the raw `bpf(2)` command.

use std::os::fd::{AsRawFd, BorrowedFd};

use ovl_common::{XDP_META_LEN, XdpMeta};

const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// Room for what the program may prepend (outer headers, metadata).
const OUT_SLACK: usize = 512;

/// Why a test run failed.
#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    Syscall(std::io::Error),
    #[error("frame of {0} bytes is too large for a test run")]
    TooLarge(usize),
    #[error("kernel reported {meta} metadata bytes in {len} output bytes")]
    BadContext { meta: usize, len: usize },
}

/// `struct xdp_md` as the kernel takes it for a test run's context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// The `test` member of `union bpf_attr` (also the feature probes').
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TestAttr {
    pub(crate) prog_fd: u32,
    pub(crate) retval: u32,
    pub(crate) data_size_in: u32,
    pub(crate) data_size_out: u32,
    pub(crate) data_in: u64,
    pub(crate) data_out: u64,
    pub(crate) repeat: u32,
    pub(crate) duration: u32,
    pub(crate) ctx_size_in: u32,
    pub(crate) ctx_size_out: u32,
    pub(crate) ctx_in: u64,
    pub(crate) ctx_out: u64,
    pub(crate) flags: u32,
    pub(crate) cpu: u32,
    pub(crate) batch_size: u32,
    pub(crate) _pad: u32,
}

/// Result of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The XDP action the program returned (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_REDIRECT` = 4).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The metadata the program prepended to the frame (or left in the metadata area), if any.
    pub meta: Vec<u8>,
}

impl TestRun {
    /// The metadata as `XdpMeta`, if it is ours.
    pub fn xdp_meta(&self) -> Option<XdpMeta> {
        if self.meta.len() != XDP_META_LEN {
            return None;
        }
        XdpMeta::from_prefix(&self.meta)
    }
}

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Name of an XDP action, for messages.
pub fn action_name(action: u32) -> &'static str {
    match action {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "unknown",
    }
}

/// `bpf(BPF_PROG_TEST_RUN, attr)`.
///
/// # Safety
/// Every pointer in `attr` must refer to a live buffer of at least the size `attr` gives it,
/// writable where the kernel writes (`data_out`, `ctx_out`).
unsafe fn test_run(attr: &mut TestAttr) -> Result<(), TestRunError> {
    // SAFETY: `attr` is a `bpf_attr.test` whose pointers the caller vouches for.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestAttr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    if rc < 0 {
        return Err(TestRunError::Syscall(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs the XDP program `prog` once on `frame` as received on `ifindex` queue `queue`
/// (`ifindex` 0 means the kernel's default, the loopback device's queue 0).
pub fn run_xdp(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    queue: u32,
) -> Result<TestRun, TestRunError> {
    let len = u32::try_from(frame.len()).map_err(|_| TestRunError::TooLarge(frame.len()))?;
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let ctx_in = XdpMd {
        data: 0,
        data_end: len,
        ingress_ifindex: ifindex,
        rx_queue_index: queue,
        ..XdpMd::default()
    };
    let mut ctx_out = XdpMd::default();
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_size_out: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx_in as *const XdpMd as u64,
        ctx_out: &mut ctx_out as *mut XdpMd as u64,
        ..TestAttr::default()
    };
    // SAFETY: the pointers refer to `frame`, `out`, `ctx_in` and `ctx_out`, live and of the
    // sizes given; the kernel writes at most `data_size_out` bytes to `out` and one `XdpMd` to
    // `ctx_out`.
    unsafe { test_run(&mut attr)? };
    let total = attr.data_size_out as usize;
    // The kernel puts the metadata first and reports its length as `data` in the output context.
    let meta_len = ctx_out.data as usize;
    if total > out.len() || meta_len > total {
        return Err(TestRunError::BadContext {
            meta: meta_len,
            len: total,
        });
    }
    out.truncate(total);
    // Our programs prepend their metadata to the frames they hand to a socket (a redirect).
    let meta_len =
        if meta_len == 0 && attr.retval == XDP_REDIRECT && XdpMeta::from_prefix(&out).is_some() {
            XDP_META_LEN
        } else {
            meta_len
        };
    let frame = out.split_off(meta_len);
    Ok(TestRun {
        action: attr.retval,
        frame,
        meta: out,
    })
}

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Runs the TC (sched_cls) program `prog` once on `frame`, as an skb on the namespace's
/// loopback device (what a test run without a context gives). `bpf_redirect` is not carried
/// out: the verdict says it was asked for.
pub fn run_skb(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<TestRun, TestRunError> {
    let len = u32::try_from(frame.len()).map_err(|_| TestRunError::TooLarge(frame.len()))?;
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestAttr::default()
    };
    // SAFETY: the pointers refer to `frame` and `out`, live and of the sizes given; no context.
    unsafe { test_run(&mut attr)? };
    let total = attr.data_size_out as usize;
    if total > out.len() {
        return Err(TestRunError::BadContext {
            meta: 0,
            len: total,
        });
    }
    out.truncate(total);
    Ok(TestRun {
        action: attr.retval,
        frame: out,
        meta: Vec::new(),
    })
}
