//! The overlay data plane: the XDP programs' userspace side (loading, maps, counters) and, in
//! later stages, the AF_XDP workers.

pub mod describe;
pub mod testrun;
pub mod xdp;
