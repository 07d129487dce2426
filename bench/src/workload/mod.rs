//! The seed's failover workload: a tiny HTTP server on each member of the pair that answers its
//! ID (`PRI` or `SEC`), and a client that fetches the VIP on a fixed schedule and records who
//! answered. A failover shows up as the switch from one ID to the other; its client-visible cost
//! is the gap between the last answer of the old owner and the first answer of the new one.
//!
//! - [`IdServer`]: the server (std networking, one thread per connection, bounded timeouts).
//! - [`HttpPing`]: the client; one new TCP connection per tick, every outcome a [`Sample`].
//! - [`KeepAlive`]: N persistent HTTP/1.1 connections, one request each per interval; resets,
//!   reconnects and ID changes per connection, summed up by [`KeepAliveSummarizer`].
//! - [`Summary`]: what a run of samples says (switches, gaps, failures by kind, latency).
//! - [`HttpUrl`]: the only URL form accepted, `http://IP:PORT/path` (no DNS).
//! - [`icmp_log`]: `ping -D` output read back, and the silence around disturbances.

mod http;
pub mod icmp_log;
mod keepalive;
mod ping;
mod server;
mod summary;
mod timefmt;
mod url;

pub use keepalive::{
    ConnectionSummary, KeepAlive, KeepAliveEvent, KeepAliveStats, KeepAliveSummarizer,
    KeepAliveSummary, MAX_KEEP_ALIVE_CONNECTIONS, Via,
};
pub use ping::{HttpPing, Limit, Outcome, PingError, RunStats, Sample};
pub use server::{IdServer, IdServerHandle, ServerError, ServerStats};
pub use summary::{LatencyStats, Summarizer, Summary, Switch, Trial};
pub use timefmt::rfc3339_micros;
pub use url::{HttpUrl, UrlError};
