//! Builds the XDP programs crate (`xdp-ebpf/programs`) for `bpfel-unknown-none`.
//!
//! The machines this project targets have no `rust-src` for rustup's toolchain, so
//! `-Z build-std` is impossible; Debian ships a prebuilt `core` for the BPF targets matching its
//! own rustc, linked into rustup as the toolchain `debian` (`cargo xtask setup` does that). The
//! build runs `rustup run debian cargo build` with a cleared environment, because a build script
//! inherits the outer cargo's variables (RUSTC, RUSTFLAGS, CARGO_TARGET_DIR, ...) which would
//! point the inner build at the wrong compiler.

use std::{
    env, fmt,
    path::{Path, PathBuf},
    process::Command,
};

/// The rustup toolchain name Debian's rustc is linked under.
pub const TOOLCHAIN: &str = "debian";
/// The BPF target.
pub const TARGET: &str = "bpfel-unknown-none";
/// Name of the object the programs crate produces.
pub const OBJECT_NAME: &str = "ovl-xdp";

/// Why the eBPF build failed.
#[derive(Debug)]
pub enum Error {
    /// `rustup` is not on PATH nor in `$CARGO_HOME/bin`.
    NoRustup,
    /// The command could not be started.
    Spawn(std::io::Error),
    /// The build ran and failed; its output is kept for the message.
    Failed { status: String, output: String },
    /// The build said it succeeded but the object is missing.
    NoObject(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";
        match self {
            Error::NoRustup => write!(f, "rustup not found; {HINT}"),
            Error::Spawn(e) => write!(f, "cannot run rustup: {e}; {HINT}"),
            Error::Failed { status, output } => {
                write!(f, "eBPF build failed ({status}); {HINT}\n{output}")
            }
            Error::NoObject(p) => write!(f, "eBPF build produced no object at {}", p.display()),
        }
    }
}

impl std::error::Error for Error {}

/// Paths of the programs crate inside a checkout.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `xdp-ebpf/programs`.
    pub crate_dir: PathBuf,
    /// `xdp-ebpf/common`, shared with userspace.
    pub common_dir: PathBuf,
}

impl Layout {
    /// Layout of the checkout whose workspace root is `root`.
    pub fn new(root: &Path) -> Layout {
        Layout {
            crate_dir: root.join("xdp-ebpf").join("programs"),
            common_dir: root.join("xdp-ebpf").join("common"),
        }
    }

    /// Where the release object lands.
    pub fn object(&self) -> PathBuf {
        self.crate_dir
            .join("target")
            .join(TARGET)
            .join("release")
            .join(OBJECT_NAME)
    }

    /// Files and directories whose change must trigger a rebuild.
    pub fn inputs(&self) -> Vec<PathBuf> {
        vec![
            self.crate_dir.join("src"),
            self.crate_dir.join("Cargo.toml"),
            self.crate_dir.join("Cargo.lock"),
            self.crate_dir.join(".cargo").join("config.toml"),
            self.common_dir.join("src"),
            self.common_dir.join("Cargo.toml"),
        ]
    }
}

fn find_rustup() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("rustup"))
        .find(|p| p.is_file())
}

/// The command that builds the programs (exposed so callers can show it).
pub fn command(layout: &Layout) -> Result<Command, Error> {
    let rustup = find_rustup().ok_or(Error::NoRustup)?;
    let mut cmd = Command::new(rustup);
    cmd.args([
        "run",
        TOOLCHAIN,
        "cargo",
        "build",
        "--release",
        "--target",
        TARGET,
    ])
    .current_dir(&layout.crate_dir)
    .env_clear();
    // Only what the inner build needs; everything cargo-specific from an outer build is dropped.
    for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "LANG", "TERM"] {
        if let Some(v) = env::var_os(key) {
            cmd.env(key, v);
        }
    }
    // aya-ebpf enables `asm_experimental_arch` on BPF, a nightly feature of Debian's stable rustc.
    cmd.env("RUSTC_BOOTSTRAP", "1");
    Ok(cmd)
}

/// Builds the programs and returns the object's path.
pub fn build(layout: &Layout) -> Result<PathBuf, Error> {
    let out = command(layout)?.output().map_err(Error::Spawn)?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(Error::Failed {
            status: out.status.to_string(),
            output,
        });
    }
    let object = layout.object();
    if !object.is_file() {
        return Err(Error::NoObject(object));
    }
    Ok(object)
}

/// Workspace root seen from a crate's manifest directory (`CARGO_MANIFEST_DIR` of a direct
/// child of the root, such as `dataplane`).
pub fn root_from_manifest_dir(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|d| d.join("xdp-ebpf").join("programs").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}
