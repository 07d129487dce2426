//! `ovl-bench`: the side-by-side benchmark (what `cargo xtask bench` runs after building).

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::{Context, Result, bail};
use bench::{
    report::{self, PathKind},
    suite::{self, Settings},
};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ovl-bench",
    about = "Measure the underlay, the kernel VXLAN driver and our data plane (VXLAN, GENEVE) side by side",
    long_about = "Measure the underlay, the kernel VXLAN driver (TX checksum offload off as the \
        lab runs it, and on: the driver at its best on veths) and our data plane (VXLAN and \
        GENEVE on the XDP fast path, VXLAN with every frame through the AF_XDP workers) side by \
        side, in one run on one lab of network namespaces: iperf3 TCP with 1 and \
        2 streams, CPU time per gigabit, the rate of 64-byte frames handed over as XDP \
        frames (as a NIC does), round-trip latency percentiles, and failover gaps (planned \
        and link down) for the kernel driver and ours. Repetitions are interleaved across \
        paths. Writes report.md, JSON and SVG charts to --out and prints the Markdown table. \
        Root needed. `cargo xtask bench` builds everything and runs this."
)]
struct Cli {
    /// Directory with the release binaries (dataplane, controller, id-server, http-ping,
    /// xdp-gen, rtt-probe).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// About two minutes instead of about twelve: fewer and shorter repetitions and trials.
    #[arg(long)]
    quick: bool,
    /// Repetitions per path (default 7, or 2 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds per iperf3 run.
    #[arg(long)]
    tcp_secs: Option<u32>,
    /// Only these paths (comma separated: underlay, kernel-vxlan, kernel-vxlan-best,
    /// ours-vxlan, ours-geneve, ours-vxlan-afxdp).
    #[arg(long, value_delimiter = ',')]
    paths: Vec<String>,
    /// Skip the failover trials (VIP moves and uplink events).
    #[arg(long)]
    no_failover: bool,
    /// Skip the TCP row over an MTU 9000 underlay.
    #[arg(long)]
    no_jumbo: bool,
    /// Skip the TCP row with IPv6 VTEPs.
    #[arg(long)]
    no_ipv6: bool,
    /// Our data plane's `workers.batch_size` (its default otherwise).
    #[arg(long)]
    batch_size: Option<u32>,
    /// Our data plane's `workers.frames_per_queue` (its default otherwise).
    #[arg(long)]
    frames_per_queue: Option<u32>,
    /// Our data plane's `workers.spin_us`: how long an idle worker keeps polling before it
    /// sleeps (its default otherwise).
    #[arg(long)]
    spin_us: Option<u32>,
    /// Our data plane's `workers.busy_poll_us`: preferred busy polling, the workers spinning
    /// on their cores (off otherwise). Meant for the afxdp path alone, e.g. `--paths
    /// underlay,kernel-vxlan,ours-vxlan-afxdp --busy-poll-us 50`: spinning workers take the
    /// cores the fast path's kernel work needs.
    #[arg(long)]
    busy_poll_us: Option<u32>,
    /// How the frame test's generator hands frames to the receiver: `xdp-live` (XDP frames,
    /// as a NIC driver does; ours in afxdp mode gets skbs all the same, see the report), `skb`
    /// (an AF_XDP socket in copy mode for every path, each frame an skb that a veth copies
    /// again before an XDP program sees it), or `auto` (the default): `xdp-live` where the
    /// kernel runs `BPF_PROG_RUN` with live frames, `skb` otherwise.
    #[arg(long, value_parser = ["auto", "xdp-live", "skb"], default_value = "auto")]
    frames_via: String,
    /// Queues (and workers) per underlay veth; with 2, workers are pinned to CPUs 0 and 1.
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Git revision to record in the report.
    #[arg(long, default_value = "")]
    git_rev: String,
}

fn parse_path(s: &str) -> Result<PathKind> {
    let s = s.trim();
    PathKind::from_slug(s).with_context(|| {
        let all: Vec<&str> = PathKind::ALL.iter().map(|p| p.slug()).collect();
        format!("--paths: unknown path `{s}` ({})", all.join(", "))
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovl-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut s = if cli.quick {
        Settings::quick(cli.bin_dir.clone())
    } else {
        Settings::full(cli.bin_dir.clone())
    };
    if let Some(r) = cli.reps {
        if r == 0 {
            bail!("--reps: must be at least 1");
        }
        s.reps = r;
    }
    if let Some(t) = cli.tcp_secs {
        if !(1..=60).contains(&t) {
            bail!("--tcp-secs: must be 1..=60, got {t}");
        }
        s.tcp_secs = t;
    }
    if !cli.paths.is_empty() {
        s.paths = cli
            .paths
            .iter()
            .map(|p| parse_path(p))
            .collect::<Result<_>>()?;
    }
    if cli.no_failover {
        s.failover_planned = 0;
        s.failover_unplanned = 0;
        s.uplink_events = 0;
        s.soak_planned = 0;
        s.soak_kills = 0;
    }
    if cli.no_ipv6 {
        s.ipv6 = false;
    }
    if cli.no_jumbo {
        s.jumbo = false;
    }
    if !(1..=2).contains(&cli.queues) {
        bail!("--queues: 1 or 2 on this lab, got {}", cli.queues);
    }
    s.queues = cli.queues;
    if cli.queues == 2 {
        s.workers.host_cpus.clear();
        s.workers.cpus = Some(vec![0, 1]);
    }
    s.frames_via = match cli.frames_via.as_str() {
        "skb" => suite::FramesVia::Skb,
        "xdp-live" => suite::FramesVia::XdpLive,
        _ => suite::FramesVia::detect(),
    };
    s.workers.batch_size = cli.batch_size;
    s.workers.frames_per_queue = cli.frames_per_queue;
    s.workers.spin_us = cli.spin_us;
    s.workers.busy_poll_us = cli.busy_poll_us;
    s.git_rev = cli.git_rev;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("signal handler")?;
    }
    let t0 = Instant::now();
    let run = suite::run(&s, &stop, &mut |line| eprintln!("bench: {line}")).context("benchmark")?;
    if stop.load(Ordering::Relaxed) {
        bail!("stopped");
    }
    let written = report::write_outputs(&run, &cli.out).context("write the report")?;
    println!("{}", report::markdown(&run));
    eprintln!(
        "bench: done in {:.0} s; wrote {} ({} charts) in {}",
        t0.elapsed().as_secs_f64(),
        written.markdown.display(),
        written.charts.len(),
        cli.out.display()
    );
    Ok(())
}
