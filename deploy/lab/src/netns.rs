//! Named network namespaces (iproute2's `/run/netns/NAME` convention).

use std::{
    fs::{self, File, OpenOptions},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use crate::{
    LabError,
    cmd::{self, CMD_TIMEOUT},
};

/// Where iproute2 keeps the namespace handles.
pub const NETNS_DIR: &str = "/run/netns";
/// Parent of every lab's state directory.
pub const STATE_ROOT: &str = "/run/ovl-lab";

/// Runs `f` on a fresh thread that first joins network namespace `name` (by
/// `setns(open("/run/netns/NAME"), CLONE_NEWNET)`) and returns its result. Sockets created in
/// `f` stay in that namespace after it returns. A panic in `f` is resumed on the caller.
pub fn in_netns<R, F>(name: &str, f: F) -> Result<R, LabError>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    let path = ns_path(name)?;
    let file = File::open(&path).map_err(|source| LabError::Setns {
        ns: name.to_string(),
        source,
    })?;
    thread::scope(|s| {
        let joined = s
            .spawn(|| {
                // SAFETY: setns only changes this (fresh, scoped) thread's network namespace;
                // the descriptor is open for the whole call.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(LabError::Setns {
                        ns: name.to_string(),
                        source: std::io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join();
        match joined {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The handle of namespace `name`, refusing names that are not a plain file name.
fn ns_path(name: &str) -> Result<PathBuf, LabError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(LabError::InvalidSpec(format!("namespace name `{name}`")));
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    ns_path(name).map(|p| p.exists()).unwrap_or(false)
}

/// Every named namespace, sorted.
pub fn list() -> Result<Vec<String>, LabError> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("list {NETNS_DIR}"), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Creates namespace `name` and brings its loopback up.
pub fn add(name: &str) -> Result<(), LabError> {
    ns_path(name)?;
    {
        // The first `ip netns add` on a machine turns /run/netns into a shared mount point;
        // two doing that at once can stack mounts and hide a namespace, so adds take turns.
        let _lock = lock(".netns.lock")?;
        cmd::ip(&["netns", "add", name])?;
    }
    cmd::ip_ns(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes namespace `name` if it exists.
pub fn delete(name: &str) -> Result<(), LabError> {
    if !exists(name) {
        return Ok(());
    }
    match cmd::ip(&["netns", "delete", name]) {
        Ok(_) => Ok(()),
        // Someone else (a parallel `down` of the same lab) got there first.
        Err(_) if !exists(name) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pids of the processes in namespace `name` (`ip netns pids`), never our own.
pub fn pids(name: &str) -> Result<Vec<u32>, LabError> {
    if !exists(name) {
        return Ok(Vec::new());
    }
    let out = cmd::run_ok(
        Command::new("ip").args(["netns", "pids", name]),
        CMD_TIMEOUT,
    )?;
    let me = std::process::id();
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p != me)
        .collect())
}

/// Writes `value` to `/proc/sys/{key}` (key with `/`) inside namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let path = Path::new("/proc/sys").join(key);
    // /proc/sys/net shows the namespace of the thread that opens it.
    in_netns(ns, || fs::write(&path, value))?
        .map_err(|e| LabError::io(format!("{ns}: write {}", path.display()), e))
}

/// An exclusive `flock` on `STATE_ROOT/{file}`, held until the returned file is dropped.
pub(crate) fn lock(file: &str) -> Result<File, LabError> {
    fs::create_dir_all(STATE_ROOT).map_err(|e| LabError::io(format!("create {STATE_ROOT}"), e))?;
    let path = Path::new(STATE_ROOT).join(file);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(LabError::io(
            format!("lock {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
}
