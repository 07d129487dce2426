//! Measurement primitives: UDP round-trip probe, CPU accounting from /proc, iperf3 results.
//!
//! - [`rtt`]: a UDP echo server and a ping-pong prober that records round-trip times in an
//!   HDR histogram and reports percentiles plus a latency-distribution curve for charts.
//! - [`cpu`]: system-wide and per-process CPU time from `/proc`, for "CPU time per gigabit"
//!   and "frames per CPU-second".
//! - [`iperf`]: the numbers the benchmark needs from `iperf3 -J` output.
//!
//! The parsers are pure functions over text so that they are tested with literal inputs.

pub mod cpu;
pub mod iperf;
pub mod rtt;

use std::io;

pub use cpu::{CpuDelta, ProcessCpu, SystemCpu};
pub use iperf::{IperfResult, parse_iperf3};
pub use rtt::{
    EchoServer, EchoStats, ProbeConfig, ProbeOutcome, ProbeProgress, RttReport, echo_serve, probe,
};

/// Errors of the measurement primitives.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A system call or file access failed; `context` says which.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid probe configuration: {0}")]
    InvalidConfig(String),
    /// Text from /proc or a tool did not have the expected shape.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was being parsed, e.g. "/proc/stat".
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// iperf3 reported an error in its JSON output (its `error` field).
    #[error("iperf3 reported an error: {0}")]
    Iperf(String),
}

impl ProbeError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn parse(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Parse {
            what,
            detail: detail.into(),
        }
    }
}
