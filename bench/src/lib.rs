//! Workload (HTTP server answering its ID, http-ping), traffic generator, benchmark runner and
//! report.
//!
//! Not written yet: this crate is reserved by the workspace layout and is built by the
//! controller and benchmark issues. It deliberately exports nothing.
