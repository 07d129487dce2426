//! The lab topology in network namespaces: a fabric router, a kernel-VXLAN client and the pair.
//!
//! The seed's Azure set-up on one machine ([`LabSpec::seed`]): a router namespace
//! `{prefix}fabric` and one namespace per host, each host alone in its own underlay subnet
//! (`10.0.{i+1}.2/24` on `eth0`, gateway `.1`; with [`LabSpec::underlay_ipv6`] also
//! `fd00:0:{i+1}::2/64`, the VTEPs' addresses then), so nothing but the overlay carries ARP. Hosts
//! run the kernel VXLAN driver ([`Overlay::Kernel`]), our data plane ([`Overlay::Ours`]) or no
//! overlay at all. Used by `cargo xtask lab` (prefix `lab-`), by the integration tests (one
//! [`unique_prefix`] each, so they run in parallel) and by the benchmark.
//!
//! ```no_run
//! use std::time::Duration;
//! use ovl_lab::{Lab, LabSpec, unique_prefix};
//!
//! let lab = Lab::up(&LabSpec::seed_kernel(unique_prefix("t")))?;
//! assert!(lab.ping("client", lab.overlay_ip("pri").unwrap())?);
//! let out = lab.exec("pri", &["ip", "-br", "addr"], Duration::from_secs(5))?;
//! # Ok::<(), ovl_lab::LabError>(())
//! ```
//!
//! Nothing is created in the root namespace: the veth pairs are made inside the router's
//! namespace with the peer moved straight into the host's. Configs, logs and control sockets
//! live in [`state_dir`] (`/run/ovl-lab/{prefix}`). Dropping a [`Lab`] takes it down.

mod cmd;
mod config;
mod error;
mod lab;
mod netns;
mod pair;
mod spec;
mod status;

pub use cmd::{CMD_TIMEOUT, run_ok, run_timeout, tail as tail_text};
pub use config::render as render_dataplane_config;
pub use error::LabError;
pub use lab::{Ensured, Lab, Signal, Spawned, is_root, state_dir, unique_prefix};
pub use netns::{NETNS_DIR, STATE_ROOT, in_netns};
pub use pair::{HTTP_PORT, MEMBERS, Pair, PairBins, PairOptions, VIP, other as other_member};
pub use spec::{
    DatapathMode, Encap, FABRIC, GeneveOption, HostSpec, Ipv4Cidr, LabSpec, MAX_HOST_NAME,
    MAX_PREFIX, OURS_INTERFACE, Overlay, SEED_PORT, SEED_VNI, Segment, VXLAN_OVERHEAD_V4,
    VXLAN_OVERHEAD_V6, WorkerTuning, check_prefix,
};
pub use status::{PingResult, ping_matrix};

/// `aa:bb:cc:dd:ee:ff`: [`ovl_netlink::format_mac`], taking the MAC by value as the lab's
/// accessors return it (e.g. `lab.overlay_mac(host).map(ovl_lab::format_mac)`).
pub fn format_mac(mac: [u8; 6]) -> String {
    ovl_netlink::format_mac(&mac)
}

/// Where tests find the workspace's binaries for a lab: `OVL_LAB_BIN_DIR` when set (`cargo
/// xtask test` points it at release builds, so millisecond timing is not eaten by debug
/// builds on two cores), else the running test's own profile directory (integration tests
/// live in `target/<profile>/deps`, the binaries one level up).
pub fn bin_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("OVL_LAB_BIN_DIR") {
        return d.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|d| d.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
