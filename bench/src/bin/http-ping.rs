//! `http-ping`: the seed's client; fetches the VIP on a fixed schedule and prints who answered.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bench::workload::{
    HttpPing, HttpUrl, KeepAlive, KeepAliveEvent, KeepAliveSummarizer, Limit, Sample, Summarizer,
    rfc3339_micros,
};
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
                  With --keep-alive-connections N, N persistent HTTP/1.1 connections to the same \
                  URL run alongside (threads in the same process), each sending one GET \
                  (Connection: keep-alive) every --keep-alive-interval-ms on its own schedule \
                  (spread over the interval) and reading the answer before the next. A \
                  connection reset (ECONNRESET/EPIPE: reset), closed by the server before an \
                  answer or while idle (eof), or without an answer within --timeout-ms \
                  (timeout) is counted, dropped and reopened on the next request (a reconnect). \
                  They print no per-request lines; the summary gains keep-alive lines and, in \
                  the JSON, a keep_alive object: requests, ok, failed, failures by kind, reused, \
                  skipped_ticks, connections_opened, connect_failures, connections_reset, resets \
                  by kind (reset, eof, timeout, ...), server_closes, reconnects, per_id, \
                  id_changes, id_changes_same_connection, per_connection (requests, ok, failed, \
                  opened, resets, id_changes, ids) and latency. They stop when the per-request \
                  schedule ends.\n\n\
                  Exit status: 0 if at least one answer came back (in either mode), 1 if none \
                  did, 2 for usage errors."
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
    /// Also run this many persistent keep-alive connections (1 to 1024), each sending one
    /// request every --keep-alive-interval-ms and reconnecting when lost.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    keep_alive_connections: Option<u64>,
    /// Time between the requests of each keep-alive connection, in milliseconds.
    #[arg(
        long,
        default_value_t = 10,
        requires = "keep_alive_connections",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    keep_alive_interval_ms: u64,
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
    let keep_alive = cli.keep_alive_connections.map(|n| KeepAlive {
        interval: Duration::from_millis(cli.keep_alive_interval_ms),
        connect_timeout: ping.connect_timeout,
        request_timeout: ping.request_timeout,
        bind: ping.bind,
        ..KeepAlive::from_url(&cli.url, usize::try_from(n).unwrap_or(1))
    });
    if let Some(k) = &keep_alive {
        k.validate()?;
    }
    // The keep-alive connections stop when the per-request schedule ends, however it ends.
    let keep_alive_stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let keep_alive = keep_alive.as_ref().map(|k| {
            let stop = &keep_alive_stop;
            scope.spawn(move || {
                let mut summary = KeepAliveSummarizer::new(k.connections, k.interval);
                let stats = k.run_until(stop, |ev| {
                    log_event(ev);
                    summary.push(ev);
                })?;
                summary.add_skipped_ticks(stats.skipped_ticks);
                Ok::<_, anyhow::Error>(summary.finish())
            })
        });
        let result = per_request(&cli, &ping, &stop);
        keep_alive_stop.store(true, Ordering::SeqCst);
        let keep_alive = match keep_alive {
            Some(t) => Some(
                t.join()
                    .map_err(|_| anyhow::anyhow!("the keep-alive connections panicked"))??,
            ),
            None => None,
        };
        let (mut summary, mut out) = result?;
        summary.keep_alive = keep_alive;
        let mut text = format!("--- http-ping {} summary ---\n{summary}\n", cli.url);
        if cli.json {
            text.push_str(&summary.to_json());
            text.push('\n');
        }
        // Failing to print the summary (stdout gone) does not change what the run found.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        Ok(summary.ok > 0 || summary.keep_alive.is_some_and(|k| k.ok > 0))
    })
}

/// Keep-alive connection events, for `RUST_LOG=info`.
fn log_event(ev: &KeepAliveEvent) {
    match ev {
        KeepAliveEvent::Opened { conn, t, reconnect } => {
            tracing::info!(
                conn,
                t_ms = t.as_secs_f64() * 1e3,
                reconnect,
                "keep-alive connection opened"
            );
        }
        KeepAliveEvent::Lost { conn, t, kind } => {
            tracing::info!(
                conn,
                t_ms = t.as_secs_f64() * 1e3,
                kind,
                "keep-alive connection lost"
            );
        }
        KeepAliveEvent::Request { .. } => {}
    }
}

/// The per-request schedule: prints a line per request, returns its summary and stdout.
fn per_request(
    cli: &Cli,
    ping: &HttpPing,
    stop: &AtomicBool,
) -> anyhow::Result<(bench::workload::Summary, std::io::StdoutLock<'static>)> {
    let mut out = std::io::stdout().lock();
    let mut summary = Summarizer::new();
    let mut output_ok = true;
    let stats = ping.run_until(stop, |s| {
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
    Ok((summary.finish(), out))
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
