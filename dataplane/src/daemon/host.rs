//! Host set-up and its undoing: the state file a successor reads, the run lock, leftovers of a
//! killed run, and the settings changed on devices.

use std::{
    fs,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::programs::{XdpMode, xdp::XdpLinkId};
use ovl_netlink::Netlink;
use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, XdpModeCfg},
    xdp::{Program, XdpObject},
};

/// What a run created, written before it creates anything so a successor can undo it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) pid: u32,
    pub(super) interfaces: Vec<String>,
    /// Settings the run changed on devices that outlive it.
    #[serde(default)]
    pub(super) restore: Restore,
}

/// Settings a run changed on devices it did not create (the underlay's), to set back when it
/// stops, or by its successor when it was killed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct Restore {
    /// Uplinks whose TX checksum offload the run turned off.
    #[serde(default)]
    pub(super) tx_checksum: Vec<String>,
    /// sysfs files the run changed, with their old contents.
    pub(super) sysfs: Vec<(PathBuf, String)>,
}

impl Restore {
    /// Writes `value` to sysfs file `path`, remembering the old value.
    pub(super) fn set_sysfs(&mut self, path: PathBuf, value: &str) -> Result<()> {
        let old = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        fs::write(&path, value).with_context(|| format!("write {value} to {}", path.display()))?;
        self.sysfs.push((path, old.trim().to_string()));
        Ok(())
    }

    /// Sets everything back, in reverse, logging what fails.
    pub(super) fn undo(&mut self) {
        for (path, old) in self.sysfs.drain(..).rev() {
            if let Err(e) = fs::write(&path, &old) {
                tracing::warn!("restore {}: {e}", path.display());
            }
        }
        for ifname in self.tx_checksum.drain(..).rev() {
            if let Err(e) = crate::netns::set_tx_checksum(&ifname, true) {
                tracing::warn!("turn TX checksum offload back on on {ifname}: {e}");
            }
        }
    }
}

pub(super) fn state_path(sock: &Path) -> PathBuf {
    sock.with_extension("state")
}

pub(super) fn lock_path(sock: &Path) -> PathBuf {
    sock.with_extension("lock")
}

/// An exclusive lock for the whole run: a second instance with the same control socket fails
/// at once instead of fighting over the interfaces. Released by the kernel, even on SIGKILL.
pub(super) struct RunLock {
    pub(super) _file: fs::File,
}

impl RunLock {
    pub(super) fn take(sock: &Path) -> Result<RunLock> {
        let path = lock_path(sock);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "another data plane is running with control socket {} (lock {} is held)",
                sock.display(),
                path.display()
            );
        }
        Ok(RunLock { _file: file })
    }
}

/// Removes what a dead run left behind: interfaces listed in its state file, and overlay
/// interfaces of this config that are clearly ours (a veth whose peer is `<name>-dp`).
pub(super) fn clean_leftovers(nl: &Netlink, cfg: &Config) -> Result<()> {
    let state_file = state_path(&cfg.stats.control_socket);
    let mut names: Vec<String> = Vec::new();
    if let Ok(text) = fs::read_to_string(&state_file) {
        match serde_json::from_str::<State>(&text) {
            Ok(mut st) => {
                tracing::warn!(
                    pid = st.pid,
                    "previous run did not stop cleanly; removing its leftovers"
                );
                names.extend(st.interfaces);
                st.restore.undo();
            }
            Err(e) => tracing::warn!(
                "ignoring unreadable state file {}: {e}",
                state_file.display()
            ),
        }
    }
    for v in &cfg.vnis {
        if let Some(link) = nl.link_by_name(&v.interface)? {
            let peer_is_ours = match link.peer_index {
                Some(i) => nl
                    .link_by_index(i)?
                    .is_some_and(|p| p.name == v.dp_interface()),
                None => false,
            };
            if !(peer_is_ours || names.contains(&v.interface)) {
                bail!(
                    "config vni {}: interface {} already exists and was not created by the data plane",
                    v.id,
                    v.interface
                );
            }
            names.push(v.interface.clone());
        }
        if nl.link_by_name(&v.dp_interface())?.is_some() {
            names.push(v.dp_interface());
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        if let Some(link) = nl.link_by_name(&name)? {
            tracing::warn!(interface = %name, "removing leftover interface");
            // Deleting one end of a veth deletes both; the second may already be gone.
            if let Err(e) = nl.link_delete(link.index)
                && e.errno() != Some(libc::ENODEV)
            {
                return Err(e).with_context(|| format!("delete leftover {name}"));
            }
        }
    }
    let _ = fs::remove_file(&state_file);
    Ok(())
}

/// Everything a run created, undone in reverse on drop.
pub(super) struct Host {
    pub(super) nl: Netlink,
    pub(super) created: Vec<u32>,
    pub(super) state_file: PathBuf,
    /// What the run changed on the underlay, to set back.
    pub(super) restore: Restore,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.restore.undo();
        for idx in self.created.drain(..).rev() {
            if let Err(e) = self.nl.link_delete(idx)
                && e.errno() != Some(libc::ENODEV)
            {
                tracing::warn!("delete interface {idx}: {e}");
            }
        }
        let _ = fs::remove_file(&self.state_file);
    }
}

/// The TC fast path hands the underlay TCP packets whose checksum is still to be completed
/// (the stack leaves it to the device: CHECKSUM_PARTIAL, GSO or not). A NIC completes it; a
/// veth never does and passes the partial state to a kernel receiver only, so a receiver that
/// decapsulates in XDP (ours) would see bad checksums. On a veth underlay the kernel must
/// therefore finish checksums (and segment GSO packets) in software before the frame leaves.
pub(super) fn complete_underlay_checksums(ifname: &str, restore: &mut Restore) -> Result<()> {
    let driver = crate::netns::driver(ifname).unwrap_or_default();
    if driver != "veth" || !crate::netns::tx_checksum(ifname)? {
        return Ok(());
    }
    crate::netns::set_tx_checksum(ifname, false)?;
    restore.tx_checksum.push(ifname.to_string());
    tracing::info!(
        underlay = ifname,
        "TX checksum offload off on the veth underlay while running: nothing would complete the fast path's checksums"
    );
    Ok(())
}

/// Attaches the ingress program to uplink `ifname`, in driver mode if `xdp_mode` allows and
/// the driver can, else SKB mode.
pub(super) fn attach_underlay(
    xdp: &mut XdpObject,
    ifname: &str,
    xdp_mode: XdpModeCfg,
) -> Result<(XdpLinkId, XdpMode)> {
    let mut try_mode = |mode| xdp.attach(Program::UnderlayIngress, ifname, mode);
    Ok(match xdp_mode {
        XdpModeCfg::Driver => (try_mode(XdpMode::Driver)?, XdpMode::Driver),
        XdpModeCfg::Skb => (try_mode(XdpMode::Skb)?, XdpMode::Skb),
        XdpModeCfg::Auto => match try_mode(XdpMode::Driver) {
            Ok(id) => (id, XdpMode::Driver),
            Err(e) => {
                let mtu: u32 = fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
                    .ok()
                    .and_then(|m| m.trim().parse().ok())
                    .unwrap_or(0);
                let why = if mtu > 3000 {
                    format!(
                        " (at MTU {mtu} a driver wants a multi-buffer XDP program, which this is not yet)"
                    )
                } else {
                    String::new()
                };
                tracing::warn!(
                    "driver-mode XDP on {ifname} failed ({e}){why}; falling back to SKB mode, which carries the same frames"
                );
                (try_mode(XdpMode::Skb)?, XdpMode::Skb)
            }
        },
    })
}
