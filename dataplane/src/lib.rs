//! The overlay data plane: the XDP programs' userspace side (loading, maps, counters, test
//! runs), the daemon (host set-up, control thread, control socket), the AF_XDP workers and
//! their pure forwarding decisions (`forward`), the control thread's tables (`tables`), a
//! single AF_XDP socket for the demo and tests (`xsk`), and private network namespaces.

pub mod board;
pub mod config;
pub mod daemon;
pub mod describe;
pub mod encap;
pub mod features;
pub mod forward;
pub mod layout;
pub mod netns;
pub mod pmtu;
pub mod stats;
pub mod tables;
pub mod testrun;
pub mod uplink;
pub mod worker;
pub mod workerset;
pub mod xdp;
pub mod xsk;
