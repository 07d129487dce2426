//! `id-server`: the seed's demo HTTP server; answers every GET with its ID (HTTP/1.1
//! keep-alive when the client asks for it).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::workload::IdServer;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Parser)]
#[command(
    name = "id-server",
    version,
    about = "Tiny HTTP server that answers every GET with its ID",
    long_about = "Tiny HTTP server that answers every GET with its ID and a newline \
                  (200 OK with Content-Length), so a client probing a virtual IP sees which \
                  member of an active/passive pair owns it. Run one per member (--id PRI, --id \
                  SEC) and point http-ping at the VIP.\n\n\
                  A request with Connection: close, or any HTTP/1.0 request, gets its answer \
                  with Connection: close and the server closes the connection (http-ping's \
                  per-request mode). An HTTP/1.1 request without close (Connection: keep-alive \
                  or nothing) is answered with Connection: keep-alive and the connection stays \
                  open for further requests, pipelined ones included, until the client closes \
                  it, it stays idle for --idle-timeout-ms, or the server stops; a kept-alive \
                  connection holds one of --max-connections while open.\n\n\
                  Malformed requests get 400, other methods 405 (both close); a client that \
                  sends nothing is cut off after --read-timeout-ms. Stops on SIGINT or SIGTERM \
                  and logs its counters to stderr (requests served, those served on kept-alive \
                  connections after their first as reused, idle connections closed)."
)]
struct Cli {
    /// The ID to answer (1 to 64 printable ASCII characters, no spaces), e.g. PRI or SEC.
    #[arg(long)]
    id: String,
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:3000")]
    listen: SocketAddr,
    /// Time a client gets to send its request, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    read_timeout_ms: u64,
    /// Time a kept-alive connection may stay idle (no next request) before it is closed, in
    /// milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// Concurrent connections served; more are closed at once and counted.
    #[arg(long, default_value_t = IdServer::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Register before binding, so a signal right after start-up is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let mut server = IdServer::new(cli.id, cli.listen)?
        .read_timeout(Duration::from_millis(cli.read_timeout_ms))
        .idle_timeout(Duration::from_millis(cli.idle_timeout_ms))
        .max_connections(cli.max_connections)
        .spawn()?;
    tracing::info!(id = server.id(), addr = %server.local_addr(), "listening");
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    server.stop();
    let stats = server.stats();
    tracing::info!(
        connections = stats.connections,
        served = stats.served,
        reused = stats.reused,
        idle_closed = stats.idle_closed,
        bad_requests = stats.bad_requests,
        not_allowed = stats.not_allowed,
        timeouts = stats.timeouts,
        rejected_overload = stats.rejected_overload,
        io_errors = stats.io_errors,
        "stopped"
    );
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("id-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
