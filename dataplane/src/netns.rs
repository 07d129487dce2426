//! Private network namespaces and the few interface look-ups done inside them.
//!
//! A namespace belongs to a thread: `run_in_private_netns` runs a closure on a new thread that
//! first unshares its network namespace. The namespace has no name, so nothing can leak: the
//! kernel destroys it, with every interface and attached XDP program in it, when the thread
//! ends, whether the closure returns or panics.

use std::{process::Command, thread};

/// Errors of namespace and interface operations.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("unshare(CLONE_NEWNET): {0}")]
    Unshare(std::io::Error),
    #[error("running `ip`: {0}")]
    Spawn(std::io::Error),
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("MAC address of {name}: {source}")]
    Mac {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `f` on a new thread inside a new, anonymous network namespace and returns its result.
/// A panic in `f` is resumed on the calling thread.
pub fn run_in_private_netns<R, F>(f: F) -> Result<R, NetnsError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let handle = thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespace membership.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(NetnsError::Unshare(std::io::Error::last_os_error()));
        }
        Ok(f())
    });
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip` (iproute2) with `args` in the calling thread's namespace.
pub fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::Spawn)?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32, NetnsError> {
    let c = std::ffi::CString::new(name).map_err(|_| NetnsError::NoInterface(name.into()))?;
    // SAFETY: c is NUL-terminated.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(NetnsError::NoInterface(name.into())),
        idx => Ok(idx),
    }
}

/// MAC address of `name` in the calling thread's namespace. (sysfs shows the namespace of the
/// process that mounted it, so the kernel is asked through a socket of this one.)
pub fn mac_of(name: &str) -> Result<[u8; 6], NetnsError> {
    let err = |source| NetnsError::Mac {
        name: name.into(),
        source,
    };
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(NetnsError::NoInterface(name.into()));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket creation; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of our ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let last = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(err(last));
    }
    // SAFETY: on success the kernel filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// Turns off transmit checksum offload on `ifname` (ethtool -K IF tx off). A veth "offloads"
/// checksums by never computing them; frames that leave through XDP and AF_XDP instead of the
/// kernel's stack would then carry wrong TCP/UDP checksums.
pub fn disable_tx_checksum(ifname: &str) -> Result<(), NetnsError> {
    set_tx_checksum(ifname, false)
}

/// Turns transmit checksum offload on or off on `ifname` (ethtool -K IF tx on|off).
pub fn set_tx_checksum(ifname: &str, on: bool) -> Result<(), NetnsError> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ethtool_value(
        ifname,
        ETHTOOL_STXCSUM,
        u32::from(on),
        "set TX checksum offload",
    )
    .map(drop)
}

/// Whether transmit checksum offload is on for `ifname`.
pub fn tx_checksum(ifname: &str) -> Result<bool, NetnsError> {
    const ETHTOOL_GTXCSUM: u32 = 0x16;
    ethtool_value(ifname, ETHTOOL_GTXCSUM, 0, "read TX checksum offload").map(|v| v != 0)
}

/// The name of the driver behind `ifname` (ethtool -i), e.g. "veth" or "mlx5_core".
pub fn driver(ifname: &str) -> Result<String, NetnsError> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, then driver[32] and more strings and counters (196 bytes
    // in all); only the driver name is read.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    ethtool_call(ifname, (&raw mut info).cast(), "read driver info")?;
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Turns generic receive offload on or off on `ifname` (ethtool -K IF gro on|off). A veth
/// receives frames another device redirected to its peer in XDP only while it runs NAPI,
/// which GRO switches on; without it such frames vanish without a counter.
pub fn set_gro(ifname: &str, on: bool) -> Result<(), NetnsError> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_value(ifname, ETHTOOL_SGRO, u32::from(on), "set GRO").map(drop)
}

/// Whether generic receive offload is on for `ifname`.
pub fn gro(ifname: &str) -> Result<bool, NetnsError> {
    const ETHTOOL_GGRO: u32 = 0x2b;
    ethtool_value(ifname, ETHTOOL_GGRO, 0, "read GRO").map(|v| v != 0)
}

/// One `SIOCETHTOOL` call with a `struct ethtool_value`; returns the value the kernel left.
fn ethtool_value(ifname: &str, cmd: u32, data: u32, what: &str) -> Result<u32, NetnsError> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    ethtool_call(ifname, (&raw mut value).cast(), what)?;
    Ok(value.data)
}

/// `ioctl(SIOCETHTOOL)` on `ifname` with `data` pointing at an ethtool command structure.
fn ethtool_call(ifname: &str, data: *mut libc::c_char, what: &str) -> Result<(), NetnsError> {
    let err = |e: std::io::Error| NetnsError::Io {
        what: format!("{what} on {ifname}"),
        source: e,
    };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(err(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = data;
    // SAFETY: plain socket creation; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: SIOCETHTOOL reads ifr_name and the command structure ifr_data points to, which
    // the caller keeps alive (and large enough for its command) until the call returns.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    let last = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(err(last));
    }
    Ok(())
}
