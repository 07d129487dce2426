//! Workload (HTTP server answering its ID, http-ping), traffic generator, measurement probes,
//! the benchmark runner and its report.

pub mod probe;
pub mod report;
pub mod signals;
pub mod suite;
pub mod traffic;
pub mod workload;
