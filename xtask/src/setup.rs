//! `cargo xtask setup`: installs what building and testing need, idempotently.
//!
//! The recipe is the one in shared/TOOLCHAIN.md: Debian's rustc 1.96 with its prebuilt `core`
//! for the BPF targets (rustup has no rust-src here, so `-Z build-std` is impossible), linked
//! into rustup as the toolchain `debian`; bpf-linker built against LLVM 22; clang-19 for
//! libxdp-sys (clang-22 breaks its build).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::is_root;

/// Debian packages the build and the tests need, with why.
const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "Debian's rustc 1.96, the eBPF compiler"),
    ("cargo-web", "Debian's cargo matching it"),
    (
        "libstd-rust-web-dev-bpf",
        "prebuilt core for bpfel-unknown-none",
    ),
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("libpolly-22-dev", "linked by bpf-linker's LLVM 22"),
    ("libzstd-dev", "linked by bpf-linker's LLVM 22"),
    ("zlib1g-dev", "linked by bpf-linker's LLVM 22"),
    ("clang-19", "libxdp-sys builds xdp-tools with it"),
    ("llvm-19", "llc-19 for libxdp-sys"),
    ("m4", "xdp-tools' configure"),
    ("libelf-dev", "xdp-tools / libbpf"),
    (
        "libpcap-dev",
        "xdp-tools' configure insists on pcap headers",
    ),
    ("pkg-config", "xdp-tools' configure"),
    (
        "iproute2",
        "`ip` for namespaces, veths and XDP in the tests",
    ),
    ("iputils-ping", "ping through the overlay"),
    ("iperf3", "throughput tests and the benchmark"),
    ("ethtool", "NIC queue and offload settings"),
    ("bpftool", "inspecting loaded programs and maps"),
    ("tcpdump", "capturing overlay traffic in the interop tests"),
    (
        "tshark",
        "decoding GENEVE captures with an independent dissector",
    ),
    ("systemd", "systemd-analyze verify of the deploy/ units"),
    (
        "python3-yaml",
        "the cloud-init file's YAML checked in the deploy tests",
    ),
    (
        "qemu-system-x86",
        "the VMs of the kernel matrix (`cargo xtask test --kernels`)",
    ),
    (
        "kmod",
        "depmod for the matrix's kernels, modprobe in the VMs",
    ),
    ("busybox-static", "virtme-ng's initramfs"),
    ("python3-pip", "installs virtme-ng (`vng`) from PyPI"),
];

const TOOLCHAIN: &str = ebpf_build::TOOLCHAIN;
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// virtme-ng (`vng`, from PyPI) boots the matrix's kernels on the host's root file system.
const VIRTME_NG_VERSION: &str = "1.42";

pub fn run(check_only: bool) -> Result<()> {
    if !is_debian_12() {
        print_manual_instructions();
        bail!("automatic setup supports Debian 12 (bookworm) only; see the list above");
    }
    let mut missing_pkgs: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !package_installed(p))
        .collect();
    missing_pkgs.sort_unstable();
    let toolchain_linked = toolchain_linked()?;
    let linker_ok = bpf_linker_ok();
    let vng_ok = vng_ok();

    if missing_pkgs.is_empty() && toolchain_linked && linker_ok && vng_ok {
        eprintln!(
            "setup: all present ({} Debian packages, rustup toolchain `{TOOLCHAIN}`, bpf-linker {BPF_LINKER_VERSION}, virtme-ng {VIRTME_NG_VERSION})",
            PACKAGES.len()
        );
        return Ok(());
    }
    if check_only {
        if !missing_pkgs.is_empty() {
            eprintln!("missing Debian packages: {}", missing_pkgs.join(" "));
        }
        if !toolchain_linked {
            eprintln!(
                "missing rustup toolchain `{TOOLCHAIN}` (rustup toolchain link {TOOLCHAIN} /usr)"
            );
        }
        if !linker_ok {
            eprintln!("missing bpf-linker {BPF_LINKER_VERSION}");
        }
        if !vng_ok {
            eprintln!("missing virtme-ng {VIRTME_NG_VERSION} (`vng`, from PyPI)");
        }
        bail!("setup is incomplete: run `cargo xtask setup`");
    }

    if !missing_pkgs.is_empty() {
        install_packages(&missing_pkgs)?;
    }
    if !toolchain_linked {
        eprintln!("setup: linking Debian's rustc as rustup toolchain `{TOOLCHAIN}`");
        run_cmd(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))?;
        if !toolchain_linked_now()? {
            bail!("`rustup toolchain link {TOOLCHAIN} /usr` did not register the toolchain");
        }
    }
    if !bpf_linker_ok() {
        install_bpf_linker()?;
    }
    if !vng_ok {
        install_virtme_ng()?;
    }
    eprintln!("setup: done");
    Ok(())
}

fn is_debian_12() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .map(|text| is_debian_12_release(&text))
        .unwrap_or(false)
}

/// Whether an os-release(5) text describes Debian 12.
fn is_debian_12_release(text: &str) -> bool {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    field("ID").as_deref() == Some("debian") && field("VERSION_ID").as_deref() == Some("12")
}

fn print_manual_instructions() {
    eprintln!("This machine is not Debian 12. The build needs, installed by hand:");
    eprintln!("  - Debian 12's packages, or your distribution's equivalents:");
    for (p, why) in PACKAGES {
        eprintln!("      {p:<26} {why}");
    }
    eprintln!(
        "  - a rustc that ships a prebuilt `core` for bpfel-unknown-none (Debian's rustc-web \
         1.96 with libstd-rust-web-dev-bpf), linked into rustup:\n      rustup toolchain link \
         {TOOLCHAIN} <prefix of that rustc>\n    (or a nightly rustup toolchain with rust-src; \
         then the eBPF build needs -Z build-std=core, which this project does not use)"
    );
    eprintln!(
        "  - bpf-linker built against LLVM 22:\n      LLVM_PREFIX=<llvm-22 prefix> cargo install \
         bpf-linker --version {BPF_LINKER_VERSION} --no-default-features --features llvm-22"
    );
    eprintln!("  - clang-19 and llc-19 on PATH (libxdp-sys fails with clang-22)");
}

fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

fn install_packages(pkgs: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "missing Debian packages; as root run:\n  apt-get update && apt-get install -y {}",
            pkgs.join(" ")
        );
    }
    eprintln!("setup: installing {}", pkgs.join(" "));
    run_cmd(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<_> = pkgs.iter().filter(|p| !package_installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get reported success but these are not installed: {still:?}");
    }
    Ok(())
}

fn rustup_toolchains() -> Result<String> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("run rustup (is rustup installed?)")?;
    if !out.status.success() {
        bail!("`rustup toolchain list` failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn toolchain_linked() -> Result<bool> {
    Ok(rustup_toolchains()?
        .lines()
        .any(|l| l.split_whitespace().next() == Some(TOOLCHAIN)))
}

fn toolchain_linked_now() -> Result<bool> {
    // The link must also work: Debian's rustc must be where the link points.
    Ok(toolchain_linked()?
        && Command::new("rustup")
            .args(["run", TOOLCHAIN, "rustc", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

fn install_bpf_linker() -> Result<()> {
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(
        Command::new(cargo)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            // Outside the workspace, so its .cargo/config.toml does not apply.
            .current_dir(std::env::temp_dir())
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )?;
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` does not answer \
             {BPF_LINKER_VERSION}: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

/// Where `vng` is: on PATH, else in the scripts directory of `python3` (pip's scripts
/// directory is often not on PATH), else wherever `pip show -f virtme-ng` says.
pub fn vng_path() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("vng"))
        .find(|p| p.is_file());
    if let Some(p) = on_path {
        return Some(p);
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("vng"));
    if let Some(p) = scripts.filter(|p| p.is_file()) {
        return Some(p);
    }
    // `Location: <site-packages>` and files relative to it, e.g. `../../../bin/vng`.
    let out = Command::new("python3")
        .args(["-m", "pip", "show", "-f", "virtme-ng"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .map(|l| PathBuf::from(l.trim()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| l.ends_with("bin/vng"))
        .map(|l| location.join(l))
        .find(|p| p.is_file())
}

/// Whether `vng --version` answers the pinned virtme-ng.
fn vng_ok() -> bool {
    vng_path().is_some_and(|p| {
        Command::new(p).arg("--version").output().is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|w| w == VIRTME_NG_VERSION)
        })
    })
}

fn install_virtme_ng() -> Result<()> {
    if !is_root() {
        bail!(
            "virtme-ng is missing; as root run:\n  python3 -m pip install virtme-ng=={VIRTME_NG_VERSION}"
        );
    }
    eprintln!("setup: installing virtme-ng {VIRTME_NG_VERSION} from PyPI (python3 -m pip)");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(extra)
            .arg(format!("virtme-ng=={VIRTME_NG_VERSION}"))
            .output()
            .context("run python3 -m pip")
    };
    let mut out = pip(&[])?;
    // Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("externally-managed-environment")
    {
        out = pip(&["--break-system-packages"])?;
    }
    if !out.status.success() {
        bail!(
            "python3 -m pip install virtme-ng=={VIRTME_NG_VERSION} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !vng_ok() {
        bail!("virtme-ng {VIRTME_NG_VERSION} was installed but `vng --version` does not answer it");
    }
    Ok(())
}

pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_debian_12_release;

    #[test]
    fn recognises_debian_12_only() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                        VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert!(is_debian_12_release(bookworm));
        let trixie = bookworm.replace("VERSION_ID=\"12\"", "VERSION_ID=\"13\"");
        assert!(!is_debian_12_release(&trixie));
        let ubuntu = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n";
        assert!(!is_debian_12_release(ubuntu));
        // ID_LIKE=debian must not be mistaken for ID=debian.
        let like = "ID_LIKE=debian\nVERSION_ID=12\nID=raspbian\n";
        assert!(!is_debian_12_release(like));
        assert!(!is_debian_12_release(""));
    }
}
