//! `cargo xtask`: the project's single entry point for setting up the toolchain, building the
//! XDP programs, running the tests and the demo.

mod failover_demo;
mod kernels;
mod lab;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ovl_lab::is_root;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, build, test and demo the AF_XDP overlay data plane",
    long_about = "Set up, build, test and demo the AF_XDP overlay data plane.\n\n\
        Start with `cargo xtask setup` on a fresh Debian 12 machine (as root): it installs the \
        Debian packages, links Debian's rustc as the rustup toolchain `debian` and builds \
        bpf-linker. Then `cargo xtask test` runs everything CI runs."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (Debian packages, the `debian` rustup toolchain,
    /// bpf-linker). Idempotent: prints one line when everything is already there.
    Setup {
        /// Only report what is missing; install nothing (exit code 1 if anything is).
        #[arg(long)]
        check: bool,
    },
    /// Build the XDP programs (bpfel-unknown-none, Debian's rustc) and print the object path.
    BuildEbpf,
    /// Run the whole test suite: format and lint checks, unit and property tests, and the
    /// kernel tests of the XDP programs (root needed; CI runs as root); then the kernel tests
    /// and the lab smoke test in VMs booted with Debian's 6.1 and 6.12 kernels.
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy -D warnings`.
        #[arg(long)]
        no_lint: bool,
        /// Kernels to test on, comma-separated: `host` (the whole suite on this machine's
        /// kernel), `6.1` (Debian 12), `6.12` (Debian 13 / bookworm-backports). The VM legs
        /// run the XDP kernel tests, the config tests and the lab smoke test in a VM each
        /// (QEMU, TCG unless KVM works), one after another, with Debian's kernels fetched
        /// into /var/cache/ovl-kernels once.
        #[arg(long, default_value = "host,6.1,6.12", value_name = "LIST")]
        kernels: String,
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// The seed's demo, automated: bring the lab up (kernel VXLAN client, pri and sec on our
    /// data plane with the failover controller), poll http://192.168.0.200:3000 from the
    /// client every 100 ms, and move the VIP PRI -> SEC (planned) and back (sec killed),
    /// live in the client's output; then take the lab down. Root needed.
    Demo {
        /// Instead: the XDP programs alone, attached to veths in a private namespace, with
        /// real frames pushed through them (`dataplane demo`).
        #[arg(long)]
        xdp: bool,
    },
    /// The side-by-side benchmark: the underlay, the kernel VXLAN driver (as the lab runs it,
    /// and at its best with TX checksum offload on) and our data plane (fast path with VXLAN
    /// and GENEVE, afxdp mode with VXLAN) in one lab, one run: iperf3 TCP (1 and 2 streams),
    /// CPU per Gbit, 64-byte frame rate (XDP frames from the generator, as a NIC hands them
    /// over), RTT percentiles, failover gaps. Builds release binaries, prints the Markdown
    /// table, writes JSON, report.md and SVG charts to target/bench/. About 12 minutes,
    /// `--quick` about 2. Root needed.
    Bench {
        /// Arguments for `ovl-bench` (see `cargo xtask bench -- --help`), e.g. `--quick`,
        /// `--paths ours-vxlan,kernel-vxlan`, `--no-failover`, `--batch-size 32`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The lab: the seed's set-up in network namespaces (prefix `lab-`; root needed).
    Lab {
        #[command(subcommand)]
        cmd: lab::LabCmd,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Setup { check } => setup::run(check),
        Cmd::BuildEbpf => build_ebpf(&root).map(|_| ()),
        // The README's two commands set the machine up themselves (idempotent: one line when
        // everything is there), so nothing has to come before them.
        Cmd::Test {
            no_lint,
            kernels,
            cargo_test_args,
        } => {
            let legs = kernels::parse_legs(&kernels)?;
            setup::run(false)?;
            if legs == [kernels::Leg::Host] {
                test(&root, no_lint, &cargo_test_args)
            } else {
                matrix(&root, no_lint, &cargo_test_args, &legs)
            }
        }
        Cmd::Demo { xdp: false } => setup::run(false).and_then(|()| failover_demo::run(&root)),
        Cmd::Demo { xdp: true } => setup::run(false).and_then(|()| demo(&root)),
        Cmd::Lab { cmd } => lab::run(&root, cmd),
        Cmd::Bench { args } => bench(&root, &args),
    }
}

fn workspace_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(xtask_dir)
}

pub(crate) fn step(what: &str) {
    eprintln!("==> {what}");
}

fn build_ebpf(root: &Path) -> Result<PathBuf> {
    step("building the XDP programs (Debian rustc, bpfel-unknown-none)");
    let started = Instant::now();
    let layout = ebpf_build::Layout::new(root);
    let object = ebpf_build::build(&layout)?;
    let size = std::fs::metadata(&object)
        .with_context(|| format!("stat {}", object.display()))?
        .len();
    eprintln!(
        "    {} ({} KiB) in {:.1} s",
        object.display(),
        size / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(object)
}

/// Runs `cargo` with `args` in directory `dir`, streaming its output.
fn cargo(dir: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn require_root_for_tests() -> Result<()> {
    if !is_root() {
        bail!(
            "the kernel tests load XDP programs and create network namespaces, so the test \
             suite runs as root (CI does): `sudo -E cargo xtask test`"
        );
    }
    Ok(())
}

/// The host leg alone (`--kernels host`).
fn test(root: &Path, no_lint: bool, extra: &[String]) -> Result<()> {
    require_root_for_tests()?;
    let started = Instant::now();
    let totals = host_leg(root, no_lint, extra)?;
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !totals.ok {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    eprintln!(
        "==> all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The kernel matrix: the host leg (if asked for), then one VM per other kernel, one after
/// another; a summary at the end. Every leg runs even if an earlier one failed.
fn matrix(root: &Path, no_lint: bool, extra: &[String], legs: &[kernels::Leg]) -> Result<()> {
    require_root_for_tests()?;
    let started = Instant::now();
    let series: Vec<&'static kernels::Series> = legs
        .iter()
        .filter_map(|l| match l {
            kernels::Leg::Vm(s) => Some(*s),
            kernels::Leg::Host => None,
        })
        .collect();
    step(&format!(
        "the matrix's kernels ({})",
        kernels::cache_dir().display()
    ));
    let vms: Vec<kernels::Kernel> = series
        .iter()
        .map(|s| kernels::fetch(s))
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    if legs.contains(&kernels::Leg::Host) {
        let t0 = Instant::now();
        let host = host_leg(root, no_lint, extra);
        let release = Command::new("uname")
            .arg("-r")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "host".into());
        rows.push(match host {
            Ok(t) => kernels::LegResult {
                kernel: release,
                how: "host".into(),
                passed: t.passed,
                failed: t.failed,
                ignored: t.ignored,
                ok: t.ok && t.passed > 0,
                note: if t.passed == 0 {
                    "no test ran".into()
                } else {
                    String::new()
                },
                wall: t0.elapsed(),
                boot: None,
            },
            Err(e) => {
                eprintln!("xtask: host leg failed: {e:#}");
                kernels::LegResult {
                    kernel: release,
                    how: "host".into(),
                    passed: 0,
                    failed: 0,
                    ignored: 0,
                    ok: false,
                    note: format!("{e:#}").lines().next().unwrap_or("").to_string(),
                    wall: t0.elapsed(),
                    boot: None,
                }
            }
        });
    } else {
        build_ebpf(root)?;
        step("building the lab's binaries (release) for the VMs");
        build_release_bins(root)?;
    }
    if let Some(first) = vms.first() {
        step("building the test binaries the VMs run");
        let bins = kernels::build_test_bins(root, extra)?;
        let (accel, why) = kernels::probe_kvm(root, first)?;
        step(&format!("VMs run under {} ({why})", accel.as_str()));
        let budget_end = Instant::now() + kernels::MATRIX_BUDGET;
        for k in &vms {
            let left = budget_end.saturating_duration_since(Instant::now());
            if left < Duration::from_secs(60) {
                eprintln!(
                    "xtask: {}: not run, the VMs' {} s are used up",
                    k.release,
                    kernels::MATRIX_BUDGET.as_secs()
                );
                rows.push(kernels::LegResult {
                    kernel: k.release.clone(),
                    how: accel.as_str().into(),
                    passed: 0,
                    failed: 0,
                    ignored: 0,
                    ok: false,
                    note: "not run: the matrix's time is used up".into(),
                    wall: Duration::ZERO,
                    boot: None,
                });
                continue;
            }
            let timeout = kernels::vm_timeout().min(left);
            rows.push(kernels::run_vm(root, k, accel, &bins, timeout)?);
        }
    }
    kernels::print_summary(&rows);
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.kernel.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("tests failed on {}", failed.join(", "));
    }
    eprintln!(
        "==> all tests passed on every kernel in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds, lints and runs `cargo test --workspace` on the host's kernel.
fn host_leg(root: &Path, no_lint: bool, extra: &[String]) -> Result<Totals> {
    build_ebpf(root)?;
    if !no_lint {
        step("cargo fmt --check (workspace and the XDP programs)");
        cargo(root, &["fmt", "--all", "--", "--check"])?;
        let programs = ebpf_build::Layout::new(root).crate_dir;
        cargo(&programs, &["fmt", "--all", "--", "--check"])?;
        step("cargo clippy -D warnings (workspace, and the XDP programs checked for the host)");
        cargo(
            root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        // Clippy is not part of Debian's toolchain, so the programs are linted with rustup's
        // for the host target: same source, same lints, no BPF code generation.
        cargo(
            &programs,
            &[
                "clippy",
                "--quiet",
                "--target",
                "x86_64-unknown-linux-gnu",
                "--target-dir",
                "target/host-clippy",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    // The failover trials time heartbeats to the millisecond on two cores: the lab's data
    // planes, controllers and workload run release builds there, so debug-build CPU cost does
    // not starve the 10 ms x 3 detection (see controller/tests/failover.rs).
    step("building the lab's binaries (release) for the failover trials");
    build_release_bins(root)?;
    step("cargo test --workspace (unit, property and kernel tests)");
    let mut args = vec!["test", "--workspace"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo_test(root, &args)
}

#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    ok: bool,
}

/// Runs `cargo test`, passing its output through, and adds up its `test result:` lines.
fn cargo_test(root: &Path, args: &[&str]) -> Result<Totals> {
    use std::io::{BufRead, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(&cargo)
        .args(args)
        .env(
            "OVL_LAB_BIN_DIR",
            root.join("target").join("release").as_os_str(),
        )
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cargo}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => totals.passed += n,
                    "failed" => totals.failed += n,
                    "ignored" => totals.ignored += n,
                    _ => {}
                }
            }
        }
    }
    totals.ok = child.wait().context("wait for cargo test")?.success() && totals.failed == 0;
    Ok(totals)
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    if !is_root() && !help {
        bail!("the benchmark creates network namespaces and loads XDP programs: run it as root");
    }
    if help {
        cargo(
            root,
            &[
                "build",
                "--release",
                "--quiet",
                "-p",
                "bench",
                "--bin",
                "ovl-bench",
            ],
        )?;
        let status = Command::new(root.join("target").join("release").join("ovl-bench"))
            .arg("--help")
            .status()
            .context("run ovl-bench")?;
        return if status.success() {
            Ok(())
        } else {
            bail!("ovl-bench --help failed")
        };
    }
    build_ebpf(root)?;
    step("building the release binaries (data plane, controller, workload, generator, probes)");
    build_release_bins(root)?;
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let rev = if dirty { format!("{rev}-dirty") } else { rev };
    step("ovl-bench");
    let release = root.join("target").join("release");
    let status = Command::new(release.join("ovl-bench"))
        .arg("--bin-dir")
        .arg(&release)
        .arg("--out")
        .arg(root.join("target").join("bench"))
        .args(["--git-rev", &rev])
        .args(args)
        .current_dir(root)
        .status()
        .context("run ovl-bench")?;
    if !status.success() {
        bail!("ovl-bench failed ({status})");
    }
    Ok(())
}

/// The release binaries the lab runs: data plane, controller, and the bench tools.
pub(crate) fn build_release_bins(root: &Path) -> Result<()> {
    cargo(
        root,
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "dataplane",
            "-p",
            "controller",
            "-p",
            "bench",
        ],
    )
}

fn demo(root: &Path) -> Result<()> {
    if !is_root() {
        bail!("the demo loads XDP programs and creates a network namespace: run it as root");
    }
    build_ebpf(root)?;
    step("building the data plane");
    cargo(root, &["build", "--release", "--quiet", "-p", "dataplane"])?;
    step("dataplane demo");
    let bin = root.join("target").join("release").join("dataplane");
    let status = Command::new(&bin)
        .arg("demo")
        .status()
        .with_context(|| format!("run {}", bin.display()))?;
    if !status.success() {
        bail!("dataplane demo failed ({status})");
    }
    Ok(())
}
