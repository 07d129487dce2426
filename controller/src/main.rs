//! `controller`: the failover daemon and its command-line client.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use controller::{
    auth::Key,
    config::{Config, DEFAULT_CONFIG, DEFAULT_CONTROL_SOCKET},
    control::{self, Request, Response},
};

#[derive(Debug, Parser)]
#[command(version, about = "VIP failover controller for an active/passive pair")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the controller (as a service).
    Run {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show the running controller's state, peer, counters and last transitions.
    Status {
        /// Control socket (default: the one in --config, else the default path).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Configuration file to take the control socket from.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print Prometheus' text exposition format (counters, state, term), e.g. for
        /// node_exporter's textfile collector.
        #[arg(long)]
        prometheus: bool,
    },
    /// Move the VIP to the other member (works on either); returns when done.
    Switchover {
        /// Control socket (default: the one in --config, else the default path).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Configuration file to take the control socket from.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Give up waiting for the answer after this long.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Measure how late timer wake-ups are under CPU load, without and with SCHED_FIFO.
    Wakeups(controller::wakeups::WakeupsArgs),
    /// Check a configuration file (and its key file) and exit.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
        /// Do not check the key file (e.g. on a build host).
        #[arg(long)]
        skip_key: bool,
    },
}

fn socket_path(socket: Option<PathBuf>, config: &Path) -> PathBuf {
    if let Some(s) = socket {
        return s;
    }
    match Config::load(config) {
        Ok(c) => c.control.socket,
        Err(_) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs to files (systemd, the lab) stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run { config } => {
            let cfg = Config::load(&config)?;
            controller::runtime::run(cfg).context("controller")?;
            Ok(())
        }
        Cmd::Status {
            socket,
            config,
            json,
            prometheus,
        } => {
            let path = socket_path(socket, &config);
            match control::request(&path, &Request::Status, Duration::from_secs(5))? {
                Response::Status(s) if prometheus => {
                    print!("{}", control::format_prometheus(&s));
                    Ok(())
                }
                Response::Status(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                    Ok(())
                }
                Response::Status(s) => {
                    print!("{}", control::format_status(&s));
                    Ok(())
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer: {other:?}"),
            }
        }
        Cmd::Switchover {
            socket,
            config,
            timeout_ms,
        } => {
            let path = socket_path(socket, &config);
            match control::request(
                &path,
                &Request::Switchover,
                Duration::from_millis(timeout_ms),
            )? {
                Response::Done { message } => {
                    println!("{message}");
                    Ok(())
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer: {other:?}"),
            }
        }
        Cmd::Wakeups(args) => Ok(controller::wakeups::main(&args)?),
        Cmd::CheckConfig { file, skip_key } => {
            let cfg = Config::load(&file)?;
            if !skip_key {
                Key::load(&cfg.heartbeat.key_file)?;
            }
            println!(
                "{}: ok (node {}, priority {}, peer {}, VIPs {} on {})",
                file.display(),
                cfg.node.name,
                cfg.node.priority,
                cfg.peer_addr(),
                cfg.vip.addresses.join(", "),
                cfg.vip.interface
            );
            Ok(())
        }
    }
}
