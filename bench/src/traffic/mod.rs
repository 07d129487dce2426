//! AF_XDP traffic generator: small frames at a rate no socket API reaches, for the frame-rate
//! benchmark (how many 64-byte frames a second a data plane decapsulates).
//!
//! [`build_templates`] makes one frame per source port of a [`FrameSpec`] (plain
//! Ethernet/IPv4/UDP, or that frame inside VXLAN or GENEVE); [`run`] writes them into a UMEM
//! once and then only cycles descriptors through a TX-only AF_XDP socket (copy mode on a
//! veth), so the cost per frame is the ring work and the kernel's transmit path. No XDP
//! program is loaded on the sending interface.
//!
//! On a veth the receiver's work runs in the sender's `sendto` (the peer's softirq on the
//! sending CPU), so the rate measured is that of sender and receiver together. Steering the
//! peer's receive queue to another CPU (RPS, `rps_cpus`) separates the two.
//!
//! ```no_run
//! use std::{net::Ipv4Addr, sync::atomic::AtomicBool, time::Duration};
//! use bench::traffic::{Encap, FrameSpec, GenConfig, run};
//!
//! let spec = FrameSpec {
//!     encap: Encap::Vxlan { vni: 10 },
//!     dst_port: 4789,
//!     ..FrameSpec::new(
//!         [0x02, 0, 0, 0, 0, 1],
//!         [0x02, 0, 0, 0, 0, 2],
//!         Ipv4Addr::new(10, 0, 0, 1),
//!         Ipv4Addr::new(10, 0, 0, 2),
//!     )
//! };
//! let cfg = GenConfig { duration: Duration::from_secs(1), ..GenConfig::new("veth0") };
//! let report = run(&cfg, &spec, &AtomicBool::new(false), |r| eprintln!("{:.0} pps", r.pps))?;
//! println!("{} frames, {:.0} pps", report.sent, report.pps);
//! # Ok::<(), bench::traffic::GenError>(())
//! ```

mod frames;
mod live;
mod pacing;
mod sender;

pub use frames::{
    DEFAULT_FRAME_LEN, ENCAP_OVERHEAD, Encap, FrameSpec, MAX_FRAME_LEN, MIN_FRAME_LEN, VNI_MAX,
    build_templates,
};
pub use live::{live_frames_refused, run_live};
pub use pacing::TokenBucket;
pub use sender::{GenConfig, GenReport, run};

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(
        "frame length {0} is out of range: {MIN_FRAME_LEN} (Ethernet + IPv4 + UDP headers) to {MAX_FRAME_LEN}"
    )]
    FrameLen(usize),
    #[error("the source port range is empty")]
    EmptyPortRange,
    #[error("VNI {0} does not fit in 24 bits")]
    Vni(u32),
    #[error("{0}")]
    Config(String),
    /// A kernel feature the mode needs is missing: one line naming it and the way around.
    #[error("{0}")]
    Unsupported(String),
    #[error("AF_XDP socket on {ifname} queue {queue}: {what}")]
    Setup {
        ifname: String,
        queue: u32,
        what: String,
    },
    #[error("AF_XDP {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}
