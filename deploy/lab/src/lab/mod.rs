//! Building, using and removing a lab: [`Lab`], its accessors and one-shot commands here;
//! the network in `topology`, the processes in `process`, taking it down in `teardown`.

mod process;
mod teardown;
mod topology;

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use process::{Signal, Spawned};
pub(crate) use teardown::belongs_to;
pub(crate) use topology::interface_state;

use crate::{
    LabError, cmd,
    netns::{self, STATE_ROOT},
    spec::{FABRIC, LabSpec, Overlay},
};
use process::Proc;

/// State directory of the lab with `prefix`: configs, logs, control sockets, the recorded
/// spec (`spec.json`), the owner and the data planes' pid files.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix)
}

/// A namespace prefix no other lab of this process uses: `{tag}{pid}-{counter}-`, e.g.
/// `t4242-3-` (for tests that run in parallel). `tag` should be a few lowercase letters.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}{}-{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether we run as root (namespaces need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What [`Lab::ensure_kept`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The lab was up and healthy; nothing was touched.
    AlreadyUp,
    /// Nothing was there; the lab was built.
    Built,
    /// A partial or unhealthy lab was there (these problems); it was removed and rebuilt.
    Rebuilt(Vec<String>),
}

/// A running lab. Dropping it takes it down (unless [`Lab::keep`] was called, or another
/// `Lab::up` with the same prefix has replaced it since).
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    dir: PathBuf,
    owner: String,
    dataplanes: BTreeMap<String, Proc>,
    spawned: Vec<Proc>,
    kept: bool,
}

impl Lab {
    /// Builds the lab described by `spec`, replacing whatever is left of a lab with the same
    /// prefix. On error everything built so far is removed again.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Self::up_with(spec, &|_| {})
    }

    /// [`Lab::up`], reporting each step to `progress`.
    pub fn up_with(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<Lab, LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        if netns::list()?.iter().any(|n| belongs_to(n, &spec.prefix))
            || state_dir(&spec.prefix).exists()
        {
            progress(&format!("removing the old lab {}", spec.prefix));
            Self::down(&spec.prefix)?;
        }
        let dir = state_dir(&spec.prefix);
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let owner = owner_token();
        write_file(&dir.join("owner"), &owner)?;
        // From here on, an early return drops `lab`, which takes everything down again.
        let mut lab = Lab {
            spec: spec.clone(),
            dir,
            owner,
            dataplanes: BTreeMap::new(),
            spawned: Vec::new(),
            kept: false,
        };
        let recorded = serde_json::to_string_pretty(spec).map_err(|e| LabError::Parse {
            cmd: "record the lab spec".into(),
            detail: e.to_string(),
        })?;
        write_file(&lab.dir.join("spec.json"), &recorded)?;
        lab.build_underlay(progress)?;
        lab.build_kernel_overlays(progress)?;
        lab.start_dataplanes(progress)?;
        tracing::info!(prefix = %spec.prefix, hosts = spec.hosts.len(), "lab up");
        Ok(lab)
    }

    /// The spec this lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// Its namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// Its state directory (configs, logs, sockets).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Namespace of `host` (`fabric` names the router).
    pub fn ns(&self, host: &str) -> String {
        self.spec.ns(host)
    }

    fn ns_checked(&self, host: &str) -> Result<String, LabError> {
        if host == FABRIC || self.spec.host(host).is_some() {
            Ok(self.spec.ns(host))
        } else {
            Err(LabError::UnknownHost(host.to_string()))
        }
    }

    /// Underlay address of `host` on its `eth0`.
    pub fn underlay_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec
            .host(host)
            .map(|(i, _)| LabSpec::underlay_ip_at(i))
    }

    /// The router's address in `host`'s subnet (its default gateway).
    pub fn gateway_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec.host(host).map(|(i, _)| LabSpec::gateway_at(i))
    }

    /// IPv6 underlay address of `host` on its uplinks, if the lab has an IPv6 underlay.
    pub fn underlay_ip6(&self, host: &str) -> Option<Ipv6Addr> {
        self.spec
            .host(host)
            .filter(|_| self.spec.underlay_ipv6)
            .map(|(i, _)| LabSpec::underlay_ip6_at(i))
    }

    /// The router's IPv6 address in `host`'s subnet, if the lab has an IPv6 underlay.
    pub fn gateway_ip6(&self, host: &str) -> Option<Ipv6Addr> {
        self.spec
            .host(host)
            .filter(|_| self.spec.underlay_ipv6)
            .map(|(i, _)| LabSpec::gateway6_at(i))
    }

    /// The address `host`'s VTEP uses: IPv6 with [`LabSpec::underlay_ipv6`], else IPv4.
    pub fn vtep_ip(&self, host: &str) -> Option<IpAddr> {
        self.spec.host(host).map(|(i, _)| self.spec.vtep_ip_at(i))
    }

    /// VTEP addresses of the other hosts in `host`'s segment (see [`LabSpec::vtep_peers`]).
    pub fn vtep_peers(&self, host: &str) -> Vec<IpAddr> {
        self.spec.vtep_peers(host)
    }

    /// Overlay address of `host`, if it has an overlay.
    pub fn overlay_ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.spec
            .host(host)
            .and_then(|(_, h)| h.overlay.addr())
            .map(|a| a.addr)
    }

    /// The interface carrying `host`'s overlay address: `vxlan{vni}` or `ovl0`.
    pub fn overlay_dev(&self, host: &str) -> Option<String> {
        self.spec.host(host).and_then(|(_, h)| h.overlay.device())
    }

    /// The MAC the lab gives `host`'s overlay interface.
    pub fn overlay_mac(&self, host: &str) -> Option<[u8; 6]> {
        self.spec
            .host(host)
            .filter(|(_, h)| h.overlay != Overlay::None)
            .map(|(i, _)| LabSpec::overlay_mac_at(i))
    }

    /// Path of `host`'s data plane config.
    pub fn config_path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.toml"))
    }

    /// Path of `host`'s data plane control socket.
    pub fn control_socket(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.sock"))
    }

    fn dataplane_log_path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}-dataplane.log"))
    }

    /// Runs `args` in `host`'s namespace (`ip netns exec`), killed after `timeout` (then the
    /// error is [`LabError::Timeout`]). A non-zero exit is returned, not an error.
    pub fn exec<S: AsRef<OsStr>>(
        &self,
        host: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        let ns = self.ns_checked(host)?;
        cmd::run_timeout(
            Command::new("ip").args(["netns", "exec", &ns]).args(args),
            timeout,
        )
    }

    /// Whether `host` gets an echo reply from `dst` (up to three one-second tries).
    pub fn ping(&self, host: &str, dst: Ipv4Addr) -> Result<bool, LabError> {
        self.ping_ip(host, IpAddr::V4(dst))
    }

    /// [`Lab::ping`] for either family (e.g. a [`Lab::vtep_ip`]).
    pub fn ping_ip(&self, host: &str, dst: IpAddr) -> Result<bool, LabError> {
        for _ in 0..3 {
            if ping_once(&self.ns_checked(host)?, dst)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs `f` on a thread inside `host`'s namespace (see [`crate::in_netns`]).
    pub fn in_ns<R: Send, F: FnOnce() -> R + Send>(&self, host: &str, f: F) -> Result<R, LabError> {
        netns::in_netns(&self.ns_checked(host)?, f)
    }

    /// Makes sure the lab of `spec` is up and healthy, leaving it running afterwards (see
    /// [`Lab::keep`]): does nothing if it already is, removes and rebuilds a partial or
    /// unhealthy one.
    pub fn ensure_kept(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<Ensured, LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let problems = crate::status::problems(spec)?;
        if problems.is_empty() {
            return Ok(Ensured::AlreadyUp);
        }
        let partial = state_dir(&spec.prefix).exists()
            || netns::list()?.iter().any(|n| belongs_to(n, &spec.prefix));
        if partial {
            progress(&format!("the lab is not healthy: {}", problems.join("; ")));
        }
        Lab::up_with(spec, progress)?.keep()?;
        Ok(if partial {
            Ensured::Rebuilt(problems)
        } else {
            Ensured::Built
        })
    }

    /// A report on the lab with `prefix`: namespaces, processes, overlay interfaces and a
    /// one-shot overlay ping matrix.
    pub fn status(prefix: &str) -> Result<String, LabError> {
        crate::status::report(prefix)
    }
}

fn owner_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{} {nanos} {}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    fs::write(path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))
}

/// One echo request from namespace `ns` to `dst`, one second to answer.
pub(crate) fn ping_once(ns: &str, dst: IpAddr) -> Result<bool, LabError> {
    let out = cmd::run_timeout(
        Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ])
            .arg(dst.to_string()),
        Duration::from_secs(5),
    )?;
    Ok(out.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_prefixes_are_valid_and_distinct() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        crate::spec::check_prefix(&a).unwrap();
        assert!(a.starts_with(&format!("t{}-", std::process::id())));
    }
}
