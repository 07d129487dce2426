//! `http-ping`: the seed's client; fetches the VIP on a fixed schedule and prints who answered.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use bench::workload::{HttpPing, HttpUrl, Limit, Sample, Summarizer, rfc3339_micros};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "http-ping",
    version,
    about = "Fetch an HTTP URL on a fixed schedule and print who answered",
    long_about = "Fetch an HTTP URL on a fixed schedule, one new TCP connection per request, and \
                  print one line per request:\n\n  \
                  2026-11-22T10:00:00.123456Z PRI 0.412ms\n  \
                  2026-11-22T10:00:00.223456Z FAIL timeout 50.081ms\n\n\
                  (UTC start time of the request, the body the server answered or FAIL and the \
                  failure kind, and the latency). Pointed at a virtual IP served by id-server on \
                  both members of a pair, a failover shows as the switch from PRI to SEC.\n\n\
                  Requests start at start + k * interval; a request that overruns skips the \
                  ticks it covered (counted, not made up for). At the end (--count reached, \
                  --duration-s over, or SIGINT/SIGTERM; a second SIGINT exits at once) a \
                  summary follows: requests, answers, failures by kind, each switch of ID with \
                  its gap (last answer of the old ID to first answer of the new one), the \
                  longest gap between any two answers and latency percentiles. With --json the \
                  summary is also printed as one JSON object on the last line.\n\n\
                  Exit status: 0 if at least one answer came back, 1 if none did, 2 for usage \
                  errors."
)]
struct Cli {
    /// URL to fetch, of the form http://IP:PORT/path (an IP literal, no DNS; IPv6 in brackets).
    #[arg(long)]
    url: HttpUrl,
    /// Time between requests, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Stop after this many requests.
    #[arg(long, conflicts_with = "duration_s", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_parser = parse_seconds)]
    duration_s: Option<Duration>,
    /// Longest wait for the TCP handshake, in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout_ms: u64,
    /// Longest wait for the answer once connected, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Source address to connect from.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Requests allowed in flight at once. 1 (the seed's script) waits for each request, so a
    /// request stuck on a dead server delays the next until its timeout; more keeps every
    /// tick on time, and the gaps then measure the service rather than the client.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    parallel: u64,
    /// Also print the summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Print only the summary, not a line per request.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s} is not a positive number of seconds")),
    }
}

/// One line per request: time, ID or `FAIL kind`, latency.
fn line(s: &Sample) -> String {
    let what = match s.outcome.id() {
        Some(id) => id.to_owned(),
        None => format!("FAIL {}", s.outcome.failure_kind().unwrap_or("unknown")),
    };
    format!(
        "{} {what} {:.3}ms",
        rfc3339_micros(s.at),
        s.latency.as_nanos() as f64 / 1e6
    )
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let stop = bench::signals::stop_flag().context("installing signal handlers")?;
    let ping = HttpPing {
        interval: Duration::from_millis(cli.interval_ms),
        connect_timeout: Duration::from_millis(cli.connect_timeout_ms),
        request_timeout: Duration::from_millis(cli.timeout_ms),
        limit: match (cli.count, cli.duration_s) {
            (Some(n), _) => Limit::Count(n),
            (None, Some(d)) => Limit::Duration(d),
            (None, None) => Limit::Unbounded,
        },
        bind: cli.bind,
        parallel: usize::try_from(cli.parallel).unwrap_or(1),
        ..HttpPing::from_url(&cli.url)
    };
    ping.validate()?;
    let mut out = std::io::stdout().lock();
    let mut summary = Summarizer::new();
    let mut output_ok = true;
    let stats = ping.run_until(&stop, |s| {
        summary.push(s);
        if !cli.quiet && output_ok {
            // A closed stdout (piped into head) ends the run like a signal would.
            if writeln!(out, "{}", line(s))
                .and_then(|()| out.flush())
                .is_err()
            {
                output_ok = false;
                stop.store(true, Ordering::Relaxed);
            }
        }
    })?;
    summary.add_skipped_ticks(stats.skipped_ticks);
    let summary = summary.finish();
    let mut text = format!("--- http-ping {} summary ---\n{summary}\n", cli.url);
    if cli.json {
        text.push_str(&summary.to_json());
        text.push('\n');
    }
    // Failing to print the summary (stdout gone) does not change what the run found.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(summary.ok > 0)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("http-ping: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
