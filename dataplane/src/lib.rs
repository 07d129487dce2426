//! The overlay data plane: the XDP programs' userspace side (loading, maps, counters, test
//! runs), a simple AF_XDP socket, private network namespaces, and, in later stages, the AF_XDP
//! workers.

pub mod config;
pub mod daemon;
pub mod describe;
pub mod encap;
pub mod forward;
pub mod layout;
pub mod netns;
pub mod pmtu;
pub mod stats;
pub mod testrun;
pub mod uplink;
pub mod worker;
pub mod workerset;
pub mod xdp;
pub mod xsk;
