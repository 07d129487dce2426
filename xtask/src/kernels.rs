//! The kernel matrix of `cargo xtask test --kernels host,6.1,6.12`: besides the host's kernel,
//! the test binaries run inside VMs booted with Debian's kernels that users run (Debian 12's
//! 6.1, bookworm-backports' 6.12; see shared/TOOLCHAIN.md, "Kernels").
//!
//! - **Kernels**: the generic-flavour `linux-image-*-amd64-unsigned` packages (the `-cloud-`
//!   flavour has no 9p), fetched with a private apt configuration (own sources list, lists
//!   and package cache under the cache directory: the system's apt state is untouched),
//!   unpacked with `dpkg -x` and indexed with `depmod -b` into [`cache_dir`]
//!   (`/var/lib/ovl-kernels/<release>/`, outside the checkout, so fresh clones reuse it). A
//!   cached kernel needs no network. Each series pins one package; when the archive no longer
//!   has it, the newest of the series is taken (and remembered as the pin's stand-in).
//! - **VMs**: `vng --force-9p --run <vmlinuz> --cpus 2 --memory 3G --rwdir <checkout>` on the
//!   host's root file system, one after another (two cores). KVM is used only if a bounded
//!   probe boots (on this machine kind a KVM guest fails or hangs: nested virtualisation), else
//!   TCG. virtme-ng's script I/O ports are not found by its guest init on these kernels, so
//!   the command runs in its console fallback: vng runs `--verbose`, the console is captured
//!   to `target/kernels/<release>.log`, and the guest script prints markers (`OVL-VM: ...`)
//!   that say it started, which binary ran with which exit code, and how it ended. A VM that
//!   does not boot, crashes or overruns [`vm_timeout`] is a failure with the console's tail
//!   printed, never a skip; on timeout the VM's process group is killed.
//! - **Tests**: prebuilt test binaries (`cargo test --no-run --message-format=json`), run in
//!   the guest as root by absolute path, with bpffs mounted, `veth` and `vxlan` loaded by
//!   modprobe from the kernel's own modules, and `OVL_LAB_BIN_DIR` pointing at the release
//!   binaries as on the host.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// One series of Debian kernels.
#[derive(Debug)]
pub struct Series {
    /// As given to `--kernels`.
    pub name: &'static str,
    /// Where it comes from, for messages.
    pub origin: &'static str,
    /// The pinned package.
    pub pinned: &'static str,
    /// Package names of the series are `{prefix}N{suffix}` with N all digits.
    prefix: &'static str,
    suffix: &'static str,
}

/// The series `--kernels` knows besides `host`. Pins checked against the archive on
/// 2026-12-07 (bookworm-security carries both).
pub const SERIES: &[Series] = &[
    Series {
        name: "6.1",
        origin: "Debian 12 (bookworm)",
        pinned: "linux-image-6.1.0-57-amd64-unsigned",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64-unsigned",
    },
    Series {
        name: "6.12",
        origin: "Debian 13 / bookworm-backports",
        pinned: "linux-image-6.12.118+deb12-amd64-unsigned",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-amd64-unsigned",
    },
];

/// The suites the kernels are looked up in.
const SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
";

/// Bound of one VM's whole run (boot, every test binary, power-off). Under TCG here: boot
/// ~15 s, config ~5 s, the smoke test ~100 s, xdp_kernel 180-300 s (its programs' loads are
/// kernel time, emulated; slower on 6.12 and whenever the two cores are shared).
pub const VM_TIMEOUT: Duration = Duration::from_secs(540);
/// Bound of all the VMs of one run together: the matrix leg stays under 15 minutes. A VM
/// gets the smaller of [`vm_timeout`] and what is left of this.
pub const MATRIX_BUDGET: Duration = Duration::from_secs(870);

/// [`VM_TIMEOUT`], or `OVL_VM_TIMEOUT_S` seconds.
pub fn vm_timeout() -> Duration {
    std::env::var("OVL_VM_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(VM_TIMEOUT)
}
/// Bound of the boot: from start until the guest's script runs (10-25 s under TCG here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of the KVM probe.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the console shown when a VM fails.
const TAIL: usize = 40;

/// One leg of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Host,
    Vm(&'static Series),
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Series {}

/// Parses `--kernels`: comma-separated `host`, `6.1`, `6.12`, in the order given.
pub fn parse_legs(list: &str) -> Result<Vec<Leg>> {
    let mut legs = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let leg = if word == "host" {
            Leg::Host
        } else if let Some(s) = SERIES.iter().find(|s| s.name == word) {
            Leg::Vm(s)
        } else {
            let known: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
            bail!(
                "--kernels: unknown kernel `{word}` (known: host, {})",
                known.join(", ")
            );
        };
        if !legs.contains(&leg) {
            legs.push(leg);
        }
    }
    if legs.is_empty() {
        bail!("--kernels: empty list");
    }
    Ok(legs)
}

/// Where kernels are unpacked: `OVL_KERNEL_CACHE`, else `/var/lib/ovl-kernels`. Not under
/// `/var/cache`: virtme-ng's guest init mounts an empty tmpfs there, and the guest finds its
/// modules through a link to this directory on the host's file system.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("OVL_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/ovl-kernels"))
}

/// An unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub series: &'static str,
    pub package: String,
    pub version: String,
    /// `uname -r` of it.
    pub release: String,
    /// The `dpkg -x` root (`boot/`, `lib/modules/<release>/`).
    pub dir: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }
}

/// The marker a complete unpack leaves, `key=value` lines.
const READY: &str = ".ovl-ready";

fn read_ready(dir: &Path) -> Option<Vec<(String, String)>> {
    let text = fs::read_to_string(dir.join(READY)).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn field<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The cached kernel for `series`' pin: the pinned package itself, or the stand-in fetched
/// when the pin was gone.
fn cached(cache: &Path, series: &'static Series) -> Option<Kernel> {
    let mut found: Vec<Kernel> = fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let dir = e.path();
            let kv = read_ready(&dir)?;
            if field(&kv, "pinned")? != series.pinned {
                return None;
            }
            let k = Kernel {
                series: series.name,
                package: field(&kv, "package")?.to_string(),
                version: field(&kv, "version")?.to_string(),
                release: field(&kv, "release")?.to_string(),
                dir,
            };
            k.vmlinuz().exists().then_some(k)
        })
        .collect();
    // The pin itself first.
    found.sort_by_key(|k| k.package != series.pinned);
    found.into_iter().next()
}

/// The private apt configuration.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(cache: &Path) -> Result<Apt> {
        let dir = cache.join("apt");
        for sub in ["lists/partial", "cache/archives/partial", "debs"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("create {}", dir.join(sub).display()))?;
        }
        fs::write(dir.join("sources.list"), SOURCES).context("write the private sources.list")?;
        Ok(Apt { dir })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        [
            format!("Dir::Etc::SourceList={d}/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".to_string(),
            "Dir::Etc::Preferences=/dev/null".to_string(),
            "Dir::Etc::PreferencesParts=/dev/null".to_string(),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}/cache"),
            // The downloads land in our own directory, which `_apt` cannot write.
            "APT::Sandbox::User=root".to_string(),
            "Acquire::Languages=none".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options())
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn update(&self) -> Result<()> {
        eprintln!(
            "    apt-get update (private lists in {})",
            self.dir.display()
        );
        let out = self
            .cmd("apt-get")
            .args(["update", "-q"])
            .output()
            .context("run apt-get update")?;
        if !out.status.success() {
            bail!(
                "apt-get update (private configuration) failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The candidate version of `pkg`, if the archive has it.
    fn version(&self, pkg: &str) -> Option<String> {
        let out = self.cmd("apt-cache").args(["show", pkg]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(|v| v.trim().to_string())
    }

    fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self
            .cmd("apt-cache")
            .args(["pkgnames", prefix])
            .output()
            .context("run apt-cache pkgnames")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect())
    }

    /// Downloads `pkg` into `debs/` (emptied first) and returns the file.
    fn download(&self, pkg: &str) -> Result<PathBuf> {
        let debs = self.dir.join("debs");
        for e in fs::read_dir(&debs)?.flatten() {
            let _ = fs::remove_file(e.path());
        }
        let out = self
            .cmd("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(&debs)
            .output()
            .context("run apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {pkg} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .with_context(|| format!("apt-get download {pkg} left no .deb"))
    }
}

/// The newest package of `series` among `names` (by the number between prefix and suffix).
fn newest<'a>(series: &Series, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|n| {
            let mid = n.strip_prefix(series.prefix)?.strip_suffix(series.suffix)?;
            let num: u32 = mid.parse().ok()?;
            Some((num, n.as_str()))
        })
        .max_by_key(|(num, _)| *num)
        .map(|(_, n)| n)
}

/// Returns `series`' kernel, fetching and unpacking it unless cached.
pub fn fetch(series: &'static Series) -> Result<Kernel> {
    let cache = cache_dir();
    if let Some(k) = cached(&cache, series) {
        eprintln!(
            "    {}: {} {} (cached in {})",
            series.name,
            k.package,
            k.version,
            k.dir.display()
        );
        return Ok(k);
    }
    if !crate::is_root() {
        bail!("fetching kernels writes {}: run as root", cache.display());
    }
    eprintln!(
        "    {}: fetching {} ({})",
        series.name, series.pinned, series.origin
    );
    let apt = Apt::new(&cache)?;
    apt.update()?;
    let (package, version) = match apt.version(series.pinned) {
        Some(v) => (series.pinned.to_string(), v),
        None => {
            let names = apt.names(series.prefix)?;
            let Some(n) = newest(series, &names) else {
                bail!(
                    "the archive has neither {} nor any other {}{{N}}{}",
                    series.pinned,
                    series.prefix,
                    series.suffix
                );
            };
            let v = apt
                .version(n)
                .with_context(|| format!("apt-cache show {n}"))?;
            eprintln!(
                "    {}: {} is gone from the archive; using the newest of the series, {n} {v}",
                series.name, series.pinned
            );
            (n.to_string(), v)
        }
    };
    let deb = apt.download(&package)?;
    let tmp = cache.join(format!(".unpack-{package}"));
    let _ = fs::remove_dir_all(&tmp);
    crate::setup::run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp))?;
    let release = fs::read_dir(tmp.join("boot"))
        .with_context(|| format!("{package} has no boot/"))?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    // virtme looks for the modules next to the image's root, under lib/modules.
    if !tmp.join("lib/modules").exists() && tmp.join("usr/lib/modules").exists() {
        std::os::unix::fs::symlink("usr/lib", tmp.join("lib")).context("symlink lib")?;
    }
    crate::setup::run_cmd(Command::new("depmod").arg("-b").arg(&tmp).arg(&release))?;
    fs::write(
        tmp.join(READY),
        format!(
            "series={}\npinned={}\npackage={package}\nversion={version}\nrelease={release}\n",
            series.name, series.pinned
        ),
    )?;
    let dir = cache.join(&release);
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).with_context(|| format!("move the kernel to {}", dir.display()))?;
    let _ = fs::remove_file(&deb);
    eprintln!(
        "    {}: {package} {version} unpacked in {}",
        series.name,
        dir.display()
    );
    Ok(Kernel {
        series: series.name,
        package,
        version,
        release,
        dir,
    })
}

/// A prebuilt test binary to run in the guests.
#[derive(Debug, Clone)]
pub struct TestBin {
    /// `package/test`.
    pub name: String,
    pub exe: PathBuf,
    /// The package's directory (cargo runs tests there).
    pub dir: PathBuf,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Bound inside the guest (the binary is killed after it).
    pub timeout: Duration,
}

/// The test binaries the VM legs run, in this order: the config tests, the lab smoke test in
/// both modes, the XDP programs' kernel tests; the config tests (no XDP: shows the plumbing works whatever the verifier
/// says).
const VM_TESTS: &[(&str, &str, u64, bool)] = &[
    // (package, test target, guest timeout in s, --nocapture)
    ("dataplane", "config", 45, false),
    ("controller", "kernel_smoke", 180, true),
    // Last: the slowest, bounded by what is left of the VM's time.
    ("dataplane", "xdp_kernel", 480, false),
];

/// Builds the VM legs' test binaries and returns them.
pub fn build_test_bins(root: &Path, extra: &[String]) -> Result<Vec<TestBin>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut bins = Vec::new();
    for &(pkg, test, timeout, nocapture) in VM_TESTS {
        let out = Command::new(&cargo)
            .args([
                "test",
                "--no-run",
                "--quiet",
                "--message-format=json",
                "-p",
                pkg,
                "--test",
                test,
            ])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {cargo}"))?;
        if !out.status.success() {
            bail!("`cargo test --no-run -p {pkg} --test {test}` failed");
        }
        let exe = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == test)
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .with_context(|| format!("cargo named no executable for {pkg} --test {test}"))?;
        // The guest's console is a terminal: no colour codes in the log.
        let mut args = vec!["--color".to_string(), "never".to_string()];
        args.extend(extra.iter().cloned());
        if nocapture && !args.iter().any(|a| a == "--nocapture") {
            args.push("--nocapture".into());
        }
        bins.push(TestBin {
            name: format!("{pkg}/{test}"),
            exe,
            dir: root.join(pkg),
            args,
            timeout: Duration::from_secs(timeout),
        });
    }
    Ok(bins)
}

/// How the guests are accelerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        }
    }
}

/// The result of one leg, for the summary.
#[derive(Debug, Clone)]
pub struct LegResult {
    /// `uname -r` of the kernel (or the leg's name when it never got that far).
    pub kernel: String,
    /// `host`, `TCG` or `KVM`.
    pub how: String,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub ok: bool,
    /// Why it failed, beyond failed tests (boot, timeout, a binary's exit).
    pub note: String,
    pub wall: Duration,
    /// Seconds from start until the guest's script began.
    pub boot: Option<Duration>,
}

/// Prints the per-kernel summary.
pub fn print_summary(rows: &[LegResult]) {
    println!("xtask: kernel matrix");
    println!(
        "  {:<24} {:<5} {:>6} {:>6} {:>7} {:>7} {:>7}  result",
        "kernel", "accel", "passed", "failed", "ignored", "boot s", "wall s"
    );
    for r in rows {
        println!(
            "  {:<24} {:<5} {:>6} {:>6} {:>7} {:>7} {:>7.0}  {}{}",
            r.kernel,
            r.how,
            r.passed,
            r.failed,
            r.ignored,
            r.boot
                .map(|b| format!("{:.1}", b.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            r.wall.as_secs_f64(),
            if r.ok { "ok" } else { "FAILED" },
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            }
        );
    }
}

/// `vng` (installed by `cargo xtask setup`).
fn vng() -> Result<PathBuf> {
    crate::setup::vng_path().context("vng (virtme-ng) not found: run `cargo xtask setup`")
}

/// PATH with /usr/lib/qemu first (vng looks for its QEMU there too).
fn qemu_path() -> String {
    let old = std::env::var("PATH").unwrap_or_default();
    format!("/usr/lib/qemu:{old}")
}

/// A process group killed on drop (the VM on every way out).
struct Group {
    child: std::process::Child,
}

impl Group {
    fn kill(&mut self) {
        // vng execs QEMU, which leads the group; kill whatever else joined it too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// What one VM run saw.
struct Run {
    lines: Vec<String>,
    timed_out: bool,
    started: Option<Duration>,
    exit: Option<i32>,
    wall: Duration,
}

/// Boots `kernel` with `accel` running `command`; every console line goes to `log`, and, once
/// the guest script has started (`OVL-VM: start`), to `show` too. Killed after `timeout`.
fn boot(
    root: &Path,
    kernel: &Kernel,
    accel: Accel,
    command: &str,
    timeout: Duration,
    log: &Path,
    show: &dyn Fn(&str),
) -> Result<Run> {
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let mut cmd = Command::new(vng()?);
    cmd.args(["--verbose", "--force-9p"]);
    if accel == Accel::Tcg {
        cmd.arg("--disable-kvm");
    }
    cmd.arg("--run")
        .arg(kernel.vmlinuz())
        .args(["--cpus", "2", "--memory", "3G", "--rwdir"])
        .arg(root)
        .arg("--")
        .arg(command)
        .current_dir(root)
        .env("PATH", qemu_path())
        .stdin(Stdio::null())
        .stdout(writer.try_clone().context("pipe")?)
        .stderr(writer);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let started = Instant::now();
    let child = cmd.spawn().context("run vng")?;
    // The writers now live in the child only: the reader sees EOF when the VM is gone.
    drop(cmd);
    let mut group = Group { child };
    let (tx, rx) = mpsc::channel::<String>();
    let pump = thread::spawn(move || {
        for line in BufReader::new(reader).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut file = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    // The VM has its own process group (so a timeout can kill all of it), which also keeps
    // a terminal's Ctrl-C from reaching it: kill it ourselves on SIGINT, SIGTERM or SIGHUP.
    let interrupted = Arc::new(AtomicBool::new(false));
    let hooks: Vec<signal_hook::SigId> = [SIGINT, SIGTERM, SIGHUP]
        .iter()
        .filter_map(|&sig| signal_hook::flag::register(sig, Arc::clone(&interrupted)).ok())
        .collect();
    let deadline = started + timeout;
    let boot_deadline = started + BOOT_TIMEOUT.min(timeout);
    let mut run = Run {
        lines: Vec::new(),
        timed_out: false,
        started: None,
        exit: None,
        wall: Duration::ZERO,
    };
    loop {
        if interrupted.load(Ordering::Relaxed) {
            group.kill();
            for h in hooks {
                signal_hook::low_level::unregister(h);
            }
            bail!("interrupted: the VM was killed");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if line.contains("OVL-VM: start") && run.started.is_none() {
                    run.started = Some(started.elapsed());
                }
                if let Some(rc) = marker_value(&line, "OVL-VM: exit ") {
                    run.exit = Some(rc);
                }
                if run.started.is_some() {
                    show(&line);
                }
                run.lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout)
                if Instant::now() >= deadline
                    || (run.started.is_none() && Instant::now() >= boot_deadline) =>
            {
                run.timed_out = true;
                group.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for h in hooks {
        signal_hook::low_level::unregister(h);
    }
    let _ = group.child.wait();
    let _ = pump.join();
    run.wall = started.elapsed();
    Ok(run)
}

/// The integer after `key` in `line` (at the line's end, e.g. `OVL-VM: exit 0`).
fn marker_value(line: &str, key: &str) -> Option<i32> {
    let at = line.find(key)?;
    line[at + key.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a KVM guest boots here (bounded; this machine kind's nested KVM fails or hangs).
pub fn probe_kvm(root: &Path, kernel: &Kernel) -> Result<(Accel, String)> {
    if !Path::new("/dev/kvm").exists() {
        return Ok((Accel::Tcg, "no /dev/kvm".into()));
    }
    let dir = root.join("target").join("kernels");
    fs::create_dir_all(&dir)?;
    let run = boot(
        root,
        kernel,
        Accel::Kvm,
        "echo 'OVL-VM: start'; echo 'OVL-VM: exit 0'",
        KVM_PROBE_TIMEOUT,
        &dir.join("kvm-probe.log"),
        &|_| {},
    )?;
    if run.exit == Some(0) {
        return Ok((
            Accel::Kvm,
            format!("KVM guest booted in {:.1} s", run.wall.as_secs_f64()),
        ));
    }
    let why = if run.timed_out {
        format!("no boot within {} s", KVM_PROBE_TIMEOUT.as_secs())
    } else {
        run.lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| "no output".into())
    };
    Ok((Accel::Tcg, why))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The guest's script: set-up, each test binary bounded by `timeout`, markers around.
fn guest_script(root: &Path, bins: &[TestBin]) -> String {
    let mut s = String::new();
    let release_dir = root.join("target").join("release");
    let _ = writeln!(
        s,
        "# Written by cargo xtask test --kernels: runs in the VM as root.\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root RUST_BACKTRACE=1 OVL_LAB_BIN_DIR={}\n\
         dmesg -n 1\n\
         echo \"OVL-VM: start $(uname -r)\"\n\
         mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || echo 'OVL-VM: bpffs mount failed'\n\
         for m in veth vxlan; do\n\
         \x20 modprobe $m || echo \"OVL-VM: modprobe $m failed\"\n\
         done\n\
         echo \"OVL-VM: modules $(cut -d' ' -f1 /proc/modules | grep -E '^(veth|vxlan)$' | tr '\\n' ' ')\"\n\
         rc=0",
        sh_quote(&release_dir.to_string_lossy())
    );
    for b in bins {
        let args: Vec<String> = b.args.iter().map(|a| sh_quote(a)).collect();
        let _ = writeln!(
            s,
            "echo 'OVL-VM: begin {name}'\n\
             cd {dir} && CARGO_MANIFEST_DIR={dir} timeout -k 5 {t} {exe} {args}\n\
             r=$?\n\
             echo \"OVL-VM: end {name} $r\"\n\
             [ $r -eq 0 ] || rc=1",
            name = b.name,
            dir = sh_quote(&b.dir.to_string_lossy()),
            t = b.timeout.as_secs(),
            exe = sh_quote(&b.exe.to_string_lossy()),
            args = args.join(" "),
        );
    }
    s.push_str("echo \"OVL-VM: exit $rc\"\n");
    s
}

/// Adds up `test result:` lines (as `cargo_test` does on the host).
fn count_results(lines: &[String]) -> (u64, u64, u64) {
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    for line in lines {
        let Some(at) = line.find("test result: ") else {
            continue;
        };
        for part in line[at + "test result: ".len()..].split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => passed += n,
                "failed" => failed += n,
                "ignored" => ignored += n,
                _ => {}
            }
        }
    }
    (passed, failed, ignored)
}

/// Counts per binary (between its `OVL-VM: begin` and the next marker): its `test result:`
/// line, or, for a binary killed before printing one, its `test NAME ... ok|FAILED|ignored`
/// lines so far.
fn count_per_binary(lines: &[String]) -> (u64, u64, u64) {
    let mut total = (0, 0, 0);
    let mut add = |section: &[String]| {
        let (p, f, i) = if section.iter().any(|l| l.contains("test result: ")) {
            count_results(section)
        } else {
            let ends = |s: &str| {
                section
                    .iter()
                    .filter(|l| l.starts_with("test ") && l.ends_with(s))
                    .count() as u64
            };
            (ends(" ... ok"), ends(" ... FAILED"), ends(" ... ignored"))
        };
        total.0 += p;
        total.1 += f;
        total.2 += i;
    };
    let mut start = None;
    for (k, line) in lines.iter().enumerate() {
        if line.contains("OVL-VM: ") {
            if let Some(s) = start.take() {
                add(&lines[s..k]);
            }
            if line.contains("OVL-VM: begin ") {
                start = Some(k + 1);
            }
        }
    }
    if let Some(s) = start {
        add(&lines[s..]);
    }
    total
}

/// Runs `bins` in a VM booted with `kernel`, killed after `timeout`.
pub fn run_vm(
    root: &Path,
    kernel: &Kernel,
    accel: Accel,
    bins: &[TestBin],
    timeout: Duration,
) -> Result<LegResult> {
    let dir = root.join("target").join("kernels");
    fs::create_dir_all(&dir)?;
    let script = dir.join(format!("run-{}.sh", kernel.release));
    fs::write(&script, guest_script(root, bins))
        .with_context(|| format!("write {}", script.display()))?;
    let log = dir.join(format!("{}.log", kernel.release));
    crate::step(&format!(
        "{} ({} {}) under {}: {} test binaries, console in {}",
        kernel.release,
        kernel.package,
        kernel.version,
        accel.as_str(),
        bins.len(),
        log.display()
    ));
    let tag = format!("[{}] ", kernel.series);
    let run = boot(
        root,
        kernel,
        accel,
        &format!("sh {}", sh_quote(&script.to_string_lossy())),
        timeout,
        &log,
        &|l| println!("{tag}{l}"),
    )?;
    let (passed, failed, ignored) = count_per_binary(&run.lines);
    let mut notes = Vec::new();
    // Binaries that ended badly: a crash without a `test result` line shows only here.
    for line in &run.lines {
        if let Some(rest) = line.split("OVL-VM: end ").nth(1) {
            let mut w = rest.split_whitespace();
            if let (Some(name), Some(rc)) = (w.next(), w.next())
                && rc != "0"
            {
                notes.push(if rc == "124" || rc == "137" {
                    format!("{name} timed out")
                } else {
                    format!("{name} exit {rc}")
                });
            }
        }
        if line.contains("OVL-VM: modprobe") || line.contains("OVL-VM: bpffs") {
            notes.push(line.trim().to_string());
        }
    }
    if run.started.is_none() {
        notes.insert(
            0,
            if run.timed_out {
                format!(
                    "did not boot within {} s",
                    BOOT_TIMEOUT.min(timeout).as_secs()
                )
            } else {
                "did not boot".to_string()
            },
        );
    } else if run.timed_out {
        notes.insert(0, format!("killed after {} s", timeout.as_secs()));
    } else if run.exit.is_none() {
        notes.insert(0, "the guest ended without its exit marker".into());
    }
    let ok =
        run.started.is_some() && !run.timed_out && run.exit == Some(0) && failed == 0 && passed > 0;
    if run.exit == Some(0) && passed == 0 {
        notes.push("no test ran".into());
    }
    if !ok {
        eprintln!(
            "xtask: {} failed ({}); console tail ({}):",
            kernel.release,
            notes.join("; "),
            log.display()
        );
        let start = run.lines.len().saturating_sub(TAIL);
        for l in &run.lines[start..] {
            eprintln!("    | {l}");
        }
        if run.lines.is_empty() {
            eprintln!("    | (no console output at all)");
        }
    }
    Ok(LegResult {
        kernel: kernel.release.clone(),
        how: accel.as_str().to_string(),
        passed,
        failed,
        ignored,
        ok,
        note: notes.join("; "),
        wall: run.wall,
        boot: run.started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lists() {
        assert_eq!(parse_legs("host").unwrap(), [Leg::Host]);
        let all = parse_legs("host,6.1,6.12").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1], Leg::Vm(&SERIES[0]));
        assert_eq!(parse_legs(" 6.12 ,6.12").unwrap(), [Leg::Vm(&SERIES[1])]);
        assert!(parse_legs("6.2").is_err());
        assert!(parse_legs(",").is_err());
    }

    #[test]
    fn picks_the_newest_of_a_series_only() {
        let names: Vec<String> = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-47-amd64-unsigned",
            "linux-image-6.1.0-47-rt-amd64-unsigned",
            "linux-image-6.12.118+deb12-amd64-unsigned",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            newest(&SERIES[0], &names),
            Some("linux-image-6.1.0-47-amd64-unsigned")
        );
        assert_eq!(
            newest(&SERIES[1], &names),
            Some("linux-image-6.12.118+deb12-amd64-unsigned")
        );
        assert_eq!(newest(&SERIES[1], &names[..4]), None);
    }

    #[test]
    fn counts_results_and_markers() {
        let lines: Vec<String> = [
            "[6.1] test result: FAILED. 3 passed; 36 failed; 1 ignored; 0 measured; 0 filtered out",
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s",
            "OVL-VM: exit 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(count_results(&lines), (15, 36, 1));
        let killed: Vec<String> = [
            "OVL-VM: begin a/config",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "OVL-VM: end a/config 0",
            "OVL-VM: begin a/xdp_kernel",
            "running 3 tests",
            "test one ... ok",
            "test two ... FAILED",
            "test three has been running for over 60 seconds",
            "OVL-VM: end a/xdp_kernel 124",
            "OVL-VM: begin a/smoke",
            "test s ... ok",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(count_per_binary(&killed), (5, 1, 0));
        assert_eq!(marker_value(&lines[2], "OVL-VM: exit "), Some(1));
        assert_eq!(marker_value("OVL-VM: start", "OVL-VM: exit "), None);
    }

    #[test]
    fn guest_script_quotes_and_bounds_every_binary() {
        let bins = [TestBin {
            name: "dataplane/config".into(),
            exe: "/w/target/debug/deps/config-1".into(),
            dir: "/w/dataplane".into(),
            args: vec!["it's".into()],
            timeout: Duration::from_secs(60),
        }];
        let s = guest_script(Path::new("/w"), &bins);
        assert!(s.contains("timeout -k 5 60 '/w/target/debug/deps/config-1' 'it'\\''s'"));
        assert!(s.contains("OVL_LAB_BIN_DIR='/w/target/release'"));
        assert!(s.contains("modprobe $m"));
        assert!(s.ends_with("echo \"OVL-VM: exit $rc\"\n"));
    }
}
