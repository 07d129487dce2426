//! Workload (HTTP server answering its ID, http-ping), traffic generator, benchmark runner and
//! report.
//!
//! One module per part; the traffic generator and the benchmark runner come with the benchmark
//! issue.

pub mod workload;
