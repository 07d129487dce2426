//! `dataplane`: the overlay data plane's command line.

mod demo;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dataplane",
    version,
    about = "Userspace VXLAN/GENEVE overlay data plane on XDP and AF_XDP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the XDP programs at work: load them (the kernel verifier checks them), attach them
    /// to veth pairs in a private network namespace, push real frames through them and print
    /// what each program and AF_XDP socket did. Needs root; leaves nothing behind.
    Demo,
    /// Run the data plane: create the overlay ports, attach the XDP programs, start one pinned
    /// AF_XDP worker per queue, and serve stats; SIGINT/SIGTERM undo everything. Needs root.
    /// A bad config is reported (naming the field) before anything on the host is touched.
    Run {
        /// The TOML config (see deploy/examples/dataplane-pri.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file against this host and exit: nothing is changed.
    CheckConfig {
        /// The TOML config.
        config: PathBuf,
    },
    /// Ask a running data plane for its counters: per VNI and per queue packets and bytes,
    /// drops by reason, UMEM frame accounting, XDP program outcomes, next hops.
    Stats {
        /// The running data plane's control socket.
        #[arg(long, conflicts_with = "config")]
        socket: Option<PathBuf>,
        /// Take the control socket path from this config file instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print the Prometheus text exposition.
        #[arg(long)]
        prometheus: bool,
    },
}

fn stats(
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
    prometheus: bool,
) -> anyhow::Result<()> {
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => {
            let text =
                std::fs::read_to_string(&c).with_context(|| format!("read {}", c.display()))?;
            dataplane::config::Config::parse(&text)?
                .stats
                .control_socket
        }
        (None, None) => anyhow::bail!("give --socket PATH or --config FILE"),
    };
    let what = if json {
        "stats json"
    } else if prometheus {
        "metrics"
    } else {
        "stats"
    };
    print!("{}", dataplane::daemon::request(&socket, what)?);
    Ok(())
}

/// Probes this host's kernel and prints the feature table, and the line `run` would stop
/// with, if any.
fn features(cfg: &dataplane::config::Config) {
    use dataplane::features;
    let d = features::decide(&features::probe(), &features::Wanted::from_config(cfg));
    print!(
        "{}",
        features::render_table(&d.kernel.release, &d.stats_rows())
    );
    if let Some(line) = d.fatal() {
        println!("`dataplane run` would stop: {line}");
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs to files (systemd, the lab) stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Demo => demo::run(),
        Cmd::Run { config } => dataplane::daemon::run(&config),
        Cmd::CheckConfig { config } => dataplane::config::Config::load(&config)
            .map(|(c, report)| {
                let mtus: Vec<String> = c
                    .vnis
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("vni {} mtu {}", v.id, report.mtu(i)))
                    .collect();
                let uplinks = if c.underlay.interfaces.len() == 1 {
                    format!("underlay {}", c.underlay.primary())
                } else {
                    let absent = if report.absent_uplinks.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", absent now: {} (attached when they appear)",
                            report.absent_uplinks.join(" ")
                        )
                    };
                    format!(
                        "uplinks {} (failback {}{absent})",
                        c.underlay.interfaces.join(" > "),
                        if c.underlay.failback {
                            format!("after {} ms up", c.underlay.failback_hold.as_millis())
                        } else {
                            "off".to_string()
                        }
                    )
                };
                println!(
                    "{}: ok ({} mode, {uplinks}, zero_copy {}, {})",
                    config.display(),
                    c.datapath.mode,
                    c.workers.zero_copy,
                    mtus.join(", ")
                );
                for n in &report.notes {
                    println!("note: {n}");
                }
                features(&c);
            })
            .map_err(Into::into),
        Cmd::Stats {
            socket,
            config,
            json,
            prometheus,
        } => stats(socket, config, json, prometheus),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
