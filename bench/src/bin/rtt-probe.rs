//! `rtt-probe`: UDP round-trip latency, the echo side and the probing side.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use bench::probe::{EchoServer, ProbeConfig, probe};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rtt-probe",
    version,
    about = "UDP round-trip latency: an echo server and a ping-pong prober",
    long_about = "UDP round-trip latency through a path. Run `rtt-probe echo` at the far end and \
                  `rtt-probe client` at the near end: the client sends one probe at a time on a \
                  fixed schedule, waits for its echo, and reports percentiles of the round-trip \
                  time (recorded in an HDR histogram, 3 significant figures). The client sleeps \
                  between probes and never spins, so it can share a small machine with what it \
                  measures."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Echo every UDP datagram back to its sender until SIGINT or SIGTERM.
    ///
    /// Prints "rtt-probe: echoing on ADDR" to stderr once the socket is bound (ADDR with the
    /// real port when --bind asks for port 0), then the counters when it stops.
    Echo {
        /// Address and port to listen on (port 0: the kernel picks one).
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Probe an echo server and report round-trip times.
    ///
    /// Prints one summary line, or with --json exactly one JSON report on stdout. SIGINT or
    /// SIGTERM end the run early with a report of what was measured so far.
    Client {
        /// The echo server, IP:PORT.
        #[arg(long)]
        target: SocketAddr,
        /// Probes recorded (the warm-up probes come on top).
        #[arg(long, default_value_t = 2000)]
        count: u64,
        /// Schedule: one probe every this many microseconds (0: back to back).
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
        /// A probe without a reply after this many milliseconds counts as lost (1 to 10000).
        #[arg(long, default_value_t = 200)]
        timeout_ms: u64,
        /// UDP payload bytes per probe (16 to 2048).
        #[arg(long, default_value_t = ProbeConfig::DEFAULT_PAYLOAD)]
        payload: usize,
        /// Probes sent first and not recorded.
        #[arg(long, default_value_t = ProbeConfig::DEFAULT_WARMUP)]
        warmup: u64,
        /// Print the report as one JSON object instead of a summary line.
        #[arg(long)]
        json: bool,
    },
}

/// A flag that SIGINT and SIGTERM set (a second signal exits at once).
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    bench::signals::stop_flag().context("installing signal handlers")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Registered before any socket exists, so an early signal is not lost.
    let stop = stop_flag()?;
    match cli.command {
        Command::Echo { bind } => {
            let server = EchoServer::bind(bind)?;
            eprintln!("rtt-probe: echoing on {}", server.local_addr());
            let stats = server.serve(&stop)?;
            eprintln!(
                "rtt-probe: stopped: received {}, echoed {}, {} bytes, {} send errors",
                stats.received, stats.echoed, stats.bytes, stats.send_errors
            );
        }
        Command::Client {
            target,
            count,
            interval_us,
            timeout_ms,
            payload,
            warmup,
            json,
        } => {
            let cfg = ProbeConfig {
                target,
                count,
                interval: Duration::from_micros(interval_us),
                timeout: Duration::from_millis(timeout_ms),
                payload,
                warmup,
            };
            let report = probe(&cfg, &stop, |_| {})?;
            if json {
                println!("{}", report.to_json().context("encoding the report")?);
            } else {
                println!("rtt to {target}: {}", report.summary());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtt-probe: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
