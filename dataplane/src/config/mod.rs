//! The data plane's configuration file (`dataplane run --config FILE`, TOML): parsing,
//! validation and the checks against the host, all done before anything on the host is
//! touched.
//!
//! Three steps, each testable on its own:
//! - [`Config::parse`]: TOML syntax, value types, unknown or missing keys, then
//!   [`Config::validate`] (ranges and rules across fields; no host access);
//! - [`HostInfo::gather`]: what the host looks like (interfaces, their MTUs and IPv4 and
//!   IPv6 addresses, the CPUs we may run on), read in the calling thread's network namespace;
//! - [`Config::check_host`]: the config against a [`HostInfo`], pure, giving a [`HostReport`]
//!   with the effective overlay MTU of every VNI.
//!
//! [`Config::load`] does all three. Every error is one line, `config FIELD: REASON`, where
//! FIELD is the key's path in the file (`vni[1].port`, `workers.cpus[0]`); TOML syntax errors
//! give the line and column instead.
//!
//! The parts: `types` (what a file decodes to, limits, defaults), `decode` (TOML to types),
//! `validate` (the rules, no host), `host` (gathering and the checks against the host),
//! `error`. Everything public is re-exported here, at `dataplane::config::...`.

mod decode;
mod error;
mod host;
mod types;
mod validate;

use std::path::Path;

use toml::Table;

pub use error::ConfigError;
pub use host::{HostInfo, HostInterface, HostReport, VniMtu};
pub use types::{
    AGEING_SECS, BATCH_SIZE, BUSY_POLL_US, CONTROL_SOCKET_DIR, Config, DEFAULT_AGEING_SECS,
    DEFAULT_BATCH_SIZE, DEFAULT_BUSY_POLL_US, DEFAULT_FAILBACK_HOLD_MS, DEFAULT_FRAMES_PER_QUEUE,
    DEFAULT_MAX_LEARNED, DEFAULT_SPIN_US, DP_SUFFIX, Datapath, DatapathMode, FAILBACK_HOLD_MS,
    FRAMES_PER_QUEUE, FdbConfig, IpCidr, MAX_LEARNED, MAX_OVERLAY_IFNAME, MAX_XSK_FRAME,
    ParseError, QUEUES, SPIN_US, StaticFdb, Stats, UMEM_FRAME_SIZE, Underlay, VNI_RANGE, Vni,
    Workers, XdpModeCfg, ZeroCopy, default_control_socket, default_port, encap_name, format_mac,
    geneve_option_bytes, one_frame_mtu, parse_mac,
};

impl Config {
    /// Parses and validates a configuration file's text; touches nothing on the host.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let root: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::syntax(text, &e))?;
        let config = decode::decode(&root)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, parses it, gathers the host's state in the calling thread's namespace and
    /// checks the config against it.
    pub fn load(path: &Path) -> Result<(Config, HostReport), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text)?;
        let host = HostInfo::gather()?;
        let report = config.check_host(&host)?;
        Ok((config, report))
    }
}
