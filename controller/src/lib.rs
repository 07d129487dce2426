//! VIP ownership for an active/passive pair: authenticated heartbeats, a pure state machine,
//! gratuitous ARP / unsolicited NA, health checks, hooks, a control socket and the daemon.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML configuration, validated, errors naming the field |
//! | [`packet`] | the heartbeat wire format |
//! | [`auth`] | the shared key, HMAC-SHA256, the replay window |
//! | [`fsm`] | the state machine: plain data and a pure `step` |
//! | [`node`] | a member without I/O: receive path (auth, replay) + state machine + counters |
//! | [`actions`] | VIP add/remove through netlink, GARP/NA frames on an `AF_PACKET` socket |
//! | [`health`] | link, data plane, command and HTTP checks |
//! | [`hooks`] | notify commands on transitions, off the event loop |
//! | [`control`] | the unix control socket: status and switchover |
//! | [`runtime`] | the daemon's event loop |
//! | [`rt`] | real-time scheduling (SCHED_FIFO) and locked memory for the heartbeat thread |
//! | [`wakeups`] | `controller wakeups`: how late timer wake-ups are under load, with and without it |

pub mod actions;
pub mod auth;
pub mod config;
pub mod control;
pub mod fsm;
pub mod health;
pub mod hooks;
pub mod node;
pub mod packet;
pub mod rt;
pub mod runtime;
pub mod wakeups;
