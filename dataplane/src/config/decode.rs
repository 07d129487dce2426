//! Decoding the TOML tree into typed values: value types, unknown and missing keys,
//! defaults, with the key path in every error. The keys each table may hold are listed here.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use ovl_common::{Encap, GENEVE_OPT_LEN};
use toml::{Table, Value};

use super::{
    AGEING_SECS, BATCH_SIZE, BUSY_POLL_US, Config, ConfigError, DEFAULT_FAILBACK_HOLD_MS, Datapath,
    FAILBACK_HOLD_MS, FRAMES_PER_QUEUE, FdbConfig, MAX_LEARNED, ParseError, QUEUES, SPIN_US,
    StaticFdb, Stats, Underlay, VNI_RANGE, Vni, Workers, default_control_socket, default_port,
    error::invalid,
    geneve_option_bytes, parse_mac,
    types::{MAX_CPU, MAX_MTU, MIN_MTU_V4},
};

const TOP_KEYS: &[&str] = &["underlay", "datapath", "workers", "stats", "fdb", "vni"];
const DATAPATH_KEYS: &[&str] = &["mode"];
const UNDERLAY_KEYS: &[&str] = &[
    "interface",
    "interfaces",
    "local_ip",
    "xdp_mode",
    "failback",
    "failback_hold_ms",
    "udp6_zero_csum_rx",
];
const WORKERS_KEYS: &[&str] = &[
    "queues",
    "cpus",
    "batch_size",
    "frames_per_queue",
    "spin_us",
    "busy_poll_us",
    "zero_copy",
];
const STATS_KEYS: &[&str] = &["prometheus", "control_socket"];
const FDB_KEYS: &[&str] = &["ageing_secs", "max_learned"];
const VNI_KEYS: &[&str] = &[
    "id",
    "encap",
    "port",
    "interface",
    "address",
    "mac",
    "mtu",
    "flood",
    "fdb",
    "geneve_option",
];
const STATIC_FDB_KEYS: &[&str] = &["mac", "remote"];
const GENEVE_OPTION_KEYS: &[&str] = &["class", "type", "data"];

/// A table being decoded: its path and the table, whose keys were checked against the known
/// ones when it was opened.
struct Section<'a> {
    path: String,
    table: &'a Table,
}

impl<'a> Section<'a> {
    fn open(path: &str, value: &'a Value, known: &[&str]) -> Result<Section<'a>, ConfigError> {
        let table = value
            .as_table()
            .ok_or_else(|| type_error(path, "a table", value))?;
        Section::from_table(path, table, known)
    }

    fn from_table(
        path: &str,
        table: &'a Table,
        known: &[&str],
    ) -> Result<Section<'a>, ConfigError> {
        let section = Section {
            path: path.to_string(),
            table,
        };
        // Checked first: a misspelt optional key would otherwise quietly become a default.
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                section.field(key),
                format!("unknown key; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(section)
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<(&'a Value, String)> {
        self.table.get(key).map(|v| (v, self.field(key)))
    }

    fn required(&self, key: &str) -> Result<(&'a Value, String), ConfigError> {
        self.get(key)
            .ok_or_else(|| invalid(self.field(key), "missing; this key is required"))
    }

    /// Decodes `key` with `decode` if present.
    fn opt<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key).map(|(v, f)| decode(v, &f)).transpose()
    }

    fn req<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&'a Value, &str) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let (v, f) = self.required(key)?;
        decode(v, &f)
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(n) => format!("integer {n}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> ConfigError {
    invalid(field, format!("expected {expected}, got {}", describe(got)))
}

fn string<'a>(v: &'a Value, f: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| type_error(f, "a string", v))
}

fn array<'a>(v: &'a Value, f: &str) -> Result<&'a [Value], ConfigError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| type_error(f, "an array", v))
}

/// An array whose elements `item` decodes, each with its index in the path (`vni[1]`).
fn list<'a, T>(
    v: &'a Value,
    f: &str,
    item: impl Fn(&'a Value, &str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    array(v, f)?
        .iter()
        .enumerate()
        .map(|(i, v)| item(v, &format!("{f}[{i}]")))
        .collect()
}

fn boolean(v: &Value, f: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| type_error(f, "a boolean", v))
}

/// An integer in `range` (TOML integers are i64; the range keeps the message about the
/// field's meaning rather than the Rust type's limits).
fn int_in<T>(v: &Value, f: &str, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: TryFrom<i64> + PartialOrd + fmt::Display,
{
    let n = v
        .as_integer()
        .ok_or_else(|| type_error(f, "an integer", v))?;
    match T::try_from(n) {
        Ok(x) if range.contains(&x) => Ok(x),
        _ => Err(invalid(
            f,
            format!("{n} is out of range {}..={}", range.start(), range.end()),
        )),
    }
}

fn parsed<T: FromStr<Err = ParseError>>(v: &Value, f: &str) -> Result<T, ConfigError> {
    string(v, f)?
        .parse()
        .map_err(|e: ParseError| invalid(f, e.0))
}

fn vtep_ip(v: &Value, f: &str) -> Result<IpAddr, ConfigError> {
    let s = string(v, f)?;
    s.parse::<IpAddr>().map_err(|_| {
        invalid(
            f,
            format!("expected an IPv4 or IPv6 address like 10.0.2.2 or fd00:0:2::2, got {s:?}"),
        )
    })
}

fn mac(v: &Value, f: &str) -> Result<[u8; 6], ConfigError> {
    parse_mac(string(v, f)?).map_err(|e| invalid(f, e.0))
}

fn encap(v: &Value, f: &str) -> Result<Encap, ConfigError> {
    match string(v, f)? {
        "vxlan" => Ok(Encap::Vxlan),
        "geneve" => Ok(Encap::Geneve),
        other => Err(invalid(
            f,
            format!("expected \"vxlan\" or \"geneve\", got {other:?}"),
        )),
    }
}

/// The typed config of a parsed file, not validated yet.
pub(super) fn decode(root: &Table) -> Result<Config, ConfigError> {
    let top = Section::from_table("", root, TOP_KEYS)?;
    let (underlay, f) = top
        .get("underlay")
        .ok_or_else(|| invalid("underlay", "missing; the [underlay] section is required"))?;
    let underlay = decode_underlay(underlay, &f)?;
    let datapath = top.opt("datapath", decode_datapath)?.unwrap_or_default();
    let workers = top.opt("workers", decode_workers)?.unwrap_or_default();
    let stats = top
        .opt("stats", |v, f| decode_stats(v, f, underlay.primary()))?
        .unwrap_or_else(|| Stats::default_for(underlay.primary()));
    let fdb = top.opt("fdb", decode_fdb)?.unwrap_or_default();
    let vnis = top
        .opt("vni", |v, f| list(v, f, decode_vni))?
        .unwrap_or_default();
    Ok(Config {
        underlay,
        datapath,
        workers,
        stats,
        fdb,
        vnis,
    })
}

fn decode_underlay(v: &Value, f: &str) -> Result<Underlay, ConfigError> {
    let s = Section::open(f, v, UNDERLAY_KEYS)?;
    let one = s.opt("interface", |v, f| string(v, f).map(str::to_string))?;
    let many = s.opt("interfaces", |v, f| {
        list(v, f, |v, f| string(v, f).map(str::to_string))
    })?;
    let interfaces = match (one, many) {
        (Some(i), None) => vec![i],
        (None, Some(list)) => list,
        (Some(_), Some(_)) => {
            return Err(invalid(
                s.field("interfaces"),
                "give either interface or interfaces, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                s.field("interface"),
                "missing; give the underlay NIC (interface = \"eth0\") or uplinks in order of preference (interfaces = [\"vf0\", \"eth0\"])",
            ));
        }
    };
    Ok(Underlay {
        interfaces,
        local_ip: s.req("local_ip", vtep_ip)?,
        xdp_mode: s.opt("xdp_mode", parsed)?.unwrap_or_default(),
        failback: s.opt("failback", boolean)?.unwrap_or(true),
        failback_hold: Duration::from_millis(
            s.opt("failback_hold_ms", |v, f| int_in(v, f, FAILBACK_HOLD_MS))?
                .unwrap_or(DEFAULT_FAILBACK_HOLD_MS),
        ),
        udp6_zero_csum_rx: s.opt("udp6_zero_csum_rx", boolean)?.unwrap_or(false),
    })
}

fn decode_datapath(v: &Value, f: &str) -> Result<Datapath, ConfigError> {
    let s = Section::open(f, v, DATAPATH_KEYS)?;
    Ok(Datapath {
        mode: s.opt("mode", parsed)?.unwrap_or_default(),
    })
}

fn decode_workers(v: &Value, f: &str) -> Result<Workers, ConfigError> {
    let s = Section::open(f, v, WORKERS_KEYS)?;
    let d = Workers::default();
    Ok(Workers {
        queues: s
            .opt("queues", |v, f| int_in(v, f, QUEUES))?
            .unwrap_or(d.queues),
        cpus: s.opt("cpus", |v, f| list(v, f, |v, f| int_in(v, f, 0..=MAX_CPU)))?,
        batch_size: s
            .opt("batch_size", |v, f| int_in(v, f, BATCH_SIZE))?
            .unwrap_or(d.batch_size),
        frames_per_queue: s
            .opt("frames_per_queue", |v, f| int_in(v, f, FRAMES_PER_QUEUE))?
            .unwrap_or(d.frames_per_queue),
        spin_us: s
            .opt("spin_us", |v, f| int_in(v, f, SPIN_US))?
            .unwrap_or(d.spin_us),
        busy_poll_us: s
            .opt("busy_poll_us", |v, f| int_in(v, f, BUSY_POLL_US))?
            .unwrap_or(d.busy_poll_us),
        zero_copy: s.opt("zero_copy", parsed)?.unwrap_or(d.zero_copy),
    })
}

fn decode_stats(v: &Value, f: &str, underlay: &str) -> Result<Stats, ConfigError> {
    let s = Section::open(f, v, STATS_KEYS)?;
    let prometheus = s.opt("prometheus", |v, f| {
        let text = string(v, f)?;
        text.parse::<SocketAddr>().map_err(|_| {
            invalid(
                f,
                format!("expected an address and port like 127.0.0.1:9464, got {text:?}"),
            )
        })
    })?;
    let control_socket = s
        .opt("control_socket", |v, f| string(v, f).map(PathBuf::from))?
        .unwrap_or_else(|| default_control_socket(underlay));
    Ok(Stats {
        prometheus,
        control_socket,
    })
}

fn decode_fdb(v: &Value, f: &str) -> Result<FdbConfig, ConfigError> {
    let s = Section::open(f, v, FDB_KEYS)?;
    let d = FdbConfig::default();
    Ok(FdbConfig {
        ageing: s
            .opt("ageing_secs", |v, f| int_in(v, f, AGEING_SECS))?
            .map_or(d.ageing, Duration::from_secs),
        max_learned: s
            .opt("max_learned", |v, f| int_in(v, f, MAX_LEARNED))?
            .unwrap_or(d.max_learned),
    })
}

fn decode_vni(v: &Value, f: &str) -> Result<Vni, ConfigError> {
    let s = Section::open(f, v, VNI_KEYS)?;
    let id = s.req("id", |v, f| int_in(v, f, VNI_RANGE))?;
    let encap = s.req("encap", encap)?;
    let port = s
        .opt("port", |v, f| int_in(v, f, 1..=u16::MAX))?
        .unwrap_or_else(|| default_port(encap));
    let interface = s.req("interface", |v, f| string(v, f).map(str::to_string))?;
    let address = s.opt("address", parsed)?;
    let mac = s.opt("mac", mac)?;
    let mtu = s.opt("mtu", |v, f| int_in(v, f, MIN_MTU_V4..=MAX_MTU))?;
    let flood = s
        .opt("flood", |v, f| list(v, f, vtep_ip))?
        .unwrap_or_default();
    let fdb = s
        .opt("fdb", |v, f| list(v, f, decode_static_fdb))?
        .unwrap_or_default();
    let geneve_option = s.opt("geneve_option", decode_geneve_option)?;
    Ok(Vni {
        id,
        encap,
        port,
        interface,
        address,
        mac,
        mtu,
        flood,
        fdb,
        geneve_option,
    })
}

fn decode_static_fdb(v: &Value, f: &str) -> Result<StaticFdb, ConfigError> {
    let s = Section::open(f, v, STATIC_FDB_KEYS)?;
    Ok(StaticFdb {
        mac: s.req("mac", mac)?,
        remote: s.req("remote", vtep_ip)?,
    })
}

fn decode_geneve_option(v: &Value, f: &str) -> Result<[u8; GENEVE_OPT_LEN], ConfigError> {
    let s = Section::open(f, v, GENEVE_OPTION_KEYS)?;
    let class = s.req("class", |v, f| int_in(v, f, 0..=u16::MAX))?;
    let opt_type = s.req("type", |v, f| int_in(v, f, 0..=u8::MAX))?;
    let data = s.req("data", |v, f| {
        let text = string(v, f)?;
        let bad = || {
            invalid(
                f,
                format!(
                    "expected 8 hex digits (4 bytes of option data) like \"0a0b0c0d\", got {text:?}"
                ),
            )
        };
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u32::from_str_radix(text, 16)
            .map(u32::to_be_bytes)
            .map_err(|_| bad())
    })?;
    Ok(geneve_option_bytes(class, opt_type, data))
}
