//! `cargo xtask lab up|down|status`: the seed's Azure set-up on this machine, in network
//! namespaces with the prefix `lab-` (see the `ovl-lab` crate for the topology).

use std::path::Path;

use anyhow::{Result, bail};
use clap::Subcommand;
use ovl_lab::{Ensured, Lab, LabSpec, Overlay, Pair, PairBins, PairOptions};

use crate::{cargo, is_root, step};

/// Namespace prefix of the interactive lab (tests use their own, unique ones).
pub const PREFIX: &str = "lab-";

/// Packages `lab up` builds (release) first: the lab runs the data plane; the controller and
/// the workload (id-server, http-ping) are there to be started by hand or by the demo.
const LAB_PACKAGES: &[&str] = &["dataplane", "controller", "bench"];

#[derive(Subcommand)]
pub enum LabCmd {
    /// Build the binaries and bring the lab up: a fabric router, `client` (kernel VXLAN) and
    /// `pri`/`sec` (our data plane), VNI 10, overlay 192.168.0.0/24. Idempotent: a healthy
    /// lab is left alone, a partial or different one is rebuilt.
    Up {
        /// Run the kernel VXLAN driver on pri and sec instead of our data plane (the
        /// benchmark's baseline; needs no data plane binary).
        #[arg(long)]
        kernel: bool,
        /// Do not run `cargo build --release` first.
        #[arg(long)]
        no_build: bool,
        /// Give pri and sec two uplinks: `eth0` (preferred) and `eth1` (backup, same MAC and
        /// address), as a VM's virtual function and synthetic NIC. Try `ip -n lab-fabric link
        /// set to-pri down` and watch `dataplane stats` switch.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
        uplinks: u32,
        /// IPv6 underlay: every host also gets `fd00:0:{i+1}::2/64` (router `::1`), and the
        /// VTEPs (kernel VXLAN local/remote, the data plane's `local_ip` and flood list)
        /// talk over it, as in an IPv6-only cloud subnet. The IPv4 underlay stays; the
        /// overlay is IPv4 as before. Our data plane needs IPv6 underlay support for this;
        /// `--kernel --ipv6` works with the kernel driver alone.
        #[arg(long)]
        ipv6: bool,
        /// Also start the failover pair: the controller on pri and sec (pri active, no
        /// preemption, draining on planned switchovers) and the HTTP server answering PRI or
        /// SEC on both, so `controller status`, `controller switchover` and `http-ping
        /// http://192.168.0.200:3000/` work at once. Always builds the lab afresh.
        #[arg(long, conflicts_with = "kernel")]
        pair: bool,
    },
    /// Stop every process in the lab's namespaces, delete them and the state directory.
    /// Idempotent.
    Down,
    /// Namespaces, processes, overlay addresses and a one-shot ping matrix over the overlay.
    Status,
}

pub fn run(root: &Path, cmd: LabCmd) -> Result<()> {
    if !is_root() {
        bail!(
            "the lab creates network namespaces and runs processes in them: run it as root, \
             e.g. `sudo -E cargo xtask lab ...`"
        );
    }
    match cmd {
        LabCmd::Up {
            kernel,
            no_build,
            uplinks,
            ipv6,
            pair,
        } => up(root, kernel, no_build, uplinks, ipv6, pair),
        LabCmd::Down => {
            step(&format!("taking the lab {PREFIX} down"));
            Lab::down(PREFIX)?;
            println!("lab {PREFIX}: down (no namespaces, no processes, no state left)");
            Ok(())
        }
        LabCmd::Status => {
            print!("{}", Lab::status(PREFIX)?);
            Ok(())
        }
    }
}

fn up(
    root: &Path,
    kernel: bool,
    no_build: bool,
    uplinks: u32,
    ipv6: bool,
    pair: bool,
) -> Result<()> {
    let mut spec = if kernel {
        LabSpec::seed_kernel(PREFIX)
    } else {
        LabSpec::seed(
            PREFIX,
            root.join("target").join("release").join("dataplane"),
        )
    };
    spec.uplinks = uplinks;
    spec.underlay_ipv6 = ipv6;
    if !no_build {
        step(&format!("building {} (release)", LAB_PACKAGES.join(", ")));
        let mut args = vec!["build", "--release", "--quiet"];
        for p in LAB_PACKAGES {
            args.extend(["-p", p]);
        }
        cargo(root, &args)?;
    }
    if pair {
        // Draining sends with XDP_TX (see `LabSpec::router_napi`).
        spec.router_napi = true;
        return up_pair(root, &spec);
    }
    step(&format!("bringing the lab {PREFIX} up"));
    let outcome = Lab::ensure_kept(&spec, &|line| eprintln!("    {line}")).map_err(|e| {
        let mut e = anyhow::Error::from(e);
        if !kernel
            && matches!(
                e.downcast_ref(),
                Some(ovl_lab::LabError::DataplaneNotReady { .. })
            )
        {
            e = e.context(
                "the lab could not start the data plane; `cargo xtask lab up --kernel` runs the \
                 kernel VXLAN driver on pri and sec instead",
            );
        }
        e
    })?;
    match &outcome {
        Ensured::AlreadyUp => println!("lab {PREFIX}: already up and healthy; nothing to do"),
        Ensured::Built => println!("lab {PREFIX}: up"),
        Ensured::Rebuilt(_) => println!("lab {PREFIX}: rebuilt"),
    }
    print_usage(&spec);
    Ok(())
}

/// `lab up --pair`: the lab afresh, then the controllers and ID servers, kept running.
fn up_pair(root: &Path, spec: &LabSpec) -> Result<()> {
    step(&format!(
        "bringing the lab {PREFIX} up (afresh, with the pair)"
    ));
    let mut lab = Lab::up_with(spec, &|line| eprintln!("    {line}"))?;
    let release = root.join("target").join("release");
    let bin = |name: &str| release.join(name);
    step("starting the controllers and ID servers on pri and sec");
    let p = Pair::start(
        &mut lab,
        PairBins::in_dir(&release),
        PairOptions {
            preempt: false,
            ..PairOptions::default()
        },
    )?;
    let socket = |host: &str| p.control_socket(&lab, host).display().to_string();
    let (pri_sock, sec_sock) = (socket("pri"), socket("sec"));
    lab.keep()?;
    println!("lab {PREFIX}: up with the pair (pri owns the VIP 192.168.0.200)");
    print_usage(spec);
    let controller = bin("controller").display().to_string();
    let http_ping = bin("http-ping").display().to_string();
    let hints = [
        (
            format!("{controller} status --socket {pri_sock}"),
            "pri's controller: state, peer, draining, counters",
        ),
        (
            format!("{controller} switchover --socket {pri_sock}"),
            "planned switchover: the VIP to sec, pri drains",
        ),
        (
            format!("{controller} status --socket {sec_sock}"),
            "sec's controller",
        ),
        (
            format!(
                "ip netns exec {} {http_ping} --url http://192.168.0.200:3000/ --interval-ms 1 --parallel 64 --keep-alive-connections 16",
                spec.ns("client")
            ),
            "the client polling the VIP every millisecond, plus 16 keep-alive connections",
        ),
    ];
    println!("\nthe pair:");
    for (cmd, what) in hints {
        println!("  {cmd}\n      # {what}");
    }
    Ok(())
}

fn print_usage(spec: &LabSpec) {
    println!(
        "\n  {:<8} {:<12} {:<13} overlay",
        "host", "namespace", "vtep"
    );
    for (i, h) in spec.hosts.iter().enumerate() {
        let overlay = match &h.overlay {
            Overlay::None => "none".to_string(),
            Overlay::Kernel { vni, addr, .. } => {
                format!("{addr} on vxlan{vni} (kernel VXLAN, VNI {vni})")
            }
            Overlay::Ours {
                vni, encap, addr, ..
            } => format!(
                "{addr} on ovl0 (our data plane, {}, VNI {vni})",
                encap.as_str()
            ),
        };
        println!(
            "  {:<8} {:<12} {:<13} {overlay}",
            h.name,
            spec.ns(&h.name),
            spec.vtep_ip_at(i).to_string()
        );
    }
    let dir = format!("ls {}", ovl_lab::state_dir(&spec.prefix).display());
    let hints = [
        (
            format!("ip netns exec {} ping 192.168.0.10", spec.ns("client")),
            "the client reaches pri over the overlay",
        ),
        (
            format!("ip netns exec {} bash", spec.ns("pri")),
            "a shell on pri",
        ),
        (dir, "configs, logs, control sockets"),
        (
            "cargo xtask lab status".to_string(),
            "processes, addresses, ping matrix",
        ),
        ("cargo xtask lab down".to_string(), "remove it all"),
    ];
    let width = hints.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    println!("\ntry:");
    for (cmd, what) in hints {
        println!("  {cmd:<width$}  # {what}");
    }
}
