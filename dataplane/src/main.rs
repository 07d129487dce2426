//! `dataplane`: the overlay data plane's command line.

mod demo;

use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
