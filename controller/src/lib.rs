//! VIP ownership for an active/passive pair: peers, authenticated heartbeats, the state
//! machine, gratuitous ARP / unsolicited NA, and the CLI.
//!
//! Not written yet: this crate is reserved by the workspace layout and is built by the
//! controller issue. It deliberately exports nothing.
