//! The data model of a benchmark run: what the runner records and the report reads.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Names of the measurements (`Record::measurement`) the report knows about.
pub mod measurement {
    /// iperf3 TCP, 1 stream, Gbit/s at the receiver; extra "retransmits".
    pub const TCP_1: &str = "tcp_1";
    /// iperf3 TCP, 2 streams, Gbit/s at the receiver; extra "retransmits".
    pub const TCP_2: &str = "tcp_2";
    /// CPU-seconds per Gbit during the tcp_1 runs (lower is better).
    pub const CPU_PER_GBIT: &str = "cpu_per_gbit";
    /// 64-byte frames delivered, Mframes/s; extra "offered", "per_core", "cpu_cores".
    pub const FRAMES_64: &str = "frames_64";
    /// Round-trip latency, µs; extra "p50", "p90", "p99", "p999", "max", "lost".
    pub const RTT: &str = "rtt";
    /// Client-visible gap of a planned switchover, ms; extra "max", "trials", "failed_requests".
    pub const FAILOVER_PLANNED: &str = "failover_planned";
    /// Client-visible gap of an unplanned failover, ms; extra as for planned.
    pub const FAILOVER_UNPLANNED: &str = "failover_unplanned";
    /// iperf3 TCP, 1 stream, Gbit/s, over an MTU 9000 underlay (overlay MTU 8950); extra
    /// "retransmits".
    pub const TCP_1_JUMBO: &str = "tcp_1_jumbo";
    /// iperf3 TCP, 1 stream, Gbit/s, with IPv6 VTEPs (MTU 1500, overlay MTU 1430); extra
    /// "retransmits".
    pub const TCP_1_IPV6: &str = "tcp_1_ipv6";
    /// The draining soak's planned switchovers (ours): failed requests per switchover (per
    /// request load and keep-alive connections together); extra "switchovers",
    /// "failed_requests", "keep_alive_failed", "connections_reset", "drained_segments",
    /// "gap_median", "gap_max".
    pub const SOAK_PLANNED: &str = "soak_planned";
    /// The draining soak's kill -9 failovers (ours): failed requests per failover; extra
    /// "failovers", "failed_requests", "connections_reset", "timeouts", "gap_median",
    /// "gap_max", "clients_followed" (1 when every keep-alive connection followed every
    /// failover).
    pub const SOAK_UNPLANNED: &str = "soak_unplanned";
    /// Overlay gap around an uplink losing or regaining carrier (1 ms echoes), ms; extra
    /// "max", "events", "missing_per_event".
    pub const UPLINK_CARRIER: &str = "uplink_carrier";
    /// Overlay gap around an uplink device deleted or re-created, ms; extra as above.
    pub const UPLINK_DEVICE: &str = "uplink_device";
}

/// The path the traffic takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// The routed underlay alone, no overlay: the floor for latency, the ceiling for throughput.
    Underlay,
    /// The kernel VXLAN driver as the lab runs it for interop: TX checksum offload off on the
    /// vxlan devices (a veth never completes offloaded inner checksums, and only a kernel
    /// receiver would tolerate them). The first baseline.
    KernelVxlan,
    /// The kernel VXLAN driver at its best on veths: TX checksum offload left on end to end
    /// (as a real NIC would complete the checksums), so GSO super-packets cross whole. Only
    /// kernel receivers can take its traffic. The second baseline.
    KernelVxlanBest,
    /// This data plane with VXLAN, `[datapath] mode = "xdp"` (the fast path).
    OursVxlan,
    /// This data plane with GENEVE, `mode = "xdp"` (the fast path).
    OursGeneve,
    /// This data plane with VXLAN, `mode = "afxdp"`: every frame through the AF_XDP workers.
    OursVxlanAfxdp,
}

impl PathKind {
    /// Every path, in the order the report shows them.
    pub const ALL: [PathKind; 6] = [
        PathKind::Underlay,
        PathKind::KernelVxlan,
        PathKind::KernelVxlanBest,
        PathKind::OursVxlan,
        PathKind::OursGeneve,
        PathKind::OursVxlanAfxdp,
    ];

    /// The baselines every ratio of ours is taken against, in column order.
    pub const BASELINES: [PathKind; 2] = [PathKind::KernelVxlan, PathKind::KernelVxlanBest];

    /// The serde name ("kernel-vxlan"), usable in file names and on command lines.
    pub fn slug(self) -> &'static str {
        match self {
            PathKind::Underlay => "underlay",
            PathKind::KernelVxlan => "kernel-vxlan",
            PathKind::KernelVxlanBest => "kernel-vxlan-best",
            PathKind::OursVxlan => "ours-vxlan",
            PathKind::OursGeneve => "ours-geneve",
            PathKind::OursVxlanAfxdp => "ours-vxlan-afxdp",
        }
    }

    /// The path whose [`PathKind::slug`] is `s`.
    pub fn from_slug(s: &str) -> Option<PathKind> {
        PathKind::ALL.into_iter().find(|p| p.slug() == s)
    }

    /// True for this project's data plane (the paths whose ratio against the kernel is the result).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            PathKind::OursVxlan | PathKind::OursGeneve | PathKind::OursVxlanAfxdp
        )
    }

    /// True for the kernel VXLAN driver, either way it is set up.
    pub fn is_kernel(self) -> bool {
        matches!(self, PathKind::KernelVxlan | PathKind::KernelVxlanBest)
    }

    /// How a baseline is named in a ratio column: "vs kernel", "vs kernel (offload on)".
    pub fn versus(self) -> &'static str {
        match self {
            PathKind::KernelVxlanBest => "vs kernel (offload on)",
            _ => "vs kernel",
        }
    }

    /// The path's colour in every chart, as RGB.
    pub fn color(self) -> (u8, u8, u8) {
        match self {
            PathKind::Underlay => (127, 127, 127),
            PathKind::KernelVxlan => (31, 119, 180),
            PathKind::KernelVxlanBest => (23, 190, 207),
            PathKind::OursVxlan => (255, 127, 14),
            PathKind::OursGeneve => (44, 160, 44),
            PathKind::OursVxlanAfxdp => (214, 39, 40),
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Underlay => "underlay",
            PathKind::KernelVxlan => "kernel VXLAN",
            PathKind::KernelVxlanBest => "kernel VXLAN (offload on)",
            PathKind::OursVxlan => "ours VXLAN",
            PathKind::OursGeneve => "ours GENEVE",
            PathKind::OursVxlanAfxdp => "ours VXLAN (afxdp mode)",
        })
    }
}

/// One measurement over one path.
///
/// A record with no `samples` carries no value (the report shows "–" and its note): put even a
/// single derived figure into `samples`. A NaN (say the median of nothing) is shown as "–";
/// JSON has no NaN, so it is written as `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub path: PathKind,
    /// One of [`measurement`]'s names.
    pub measurement: String,
    /// "Gbit/s", "Mframes/s", "us", "CPU-s/Gbit", "ms", ...
    pub unit: String,
    /// The headline value: the median of `samples`.
    #[serde(deserialize_with = "nullable::f64")]
    pub median: f64,
    /// Every repetition, in run order.
    #[serde(deserialize_with = "nullable::vec")]
    pub samples: Vec<f64>,
    /// Named side values (see [`measurement`] for which record carries which).
    #[serde(default, deserialize_with = "nullable::map")]
    pub extra: BTreeMap<String, f64>,
    /// Latency distribution, (percentile 0..100, µs), for rtt records; empty otherwise.
    #[serde(default, deserialize_with = "nullable::pairs")]
    pub curve: Vec<(f64, f64)>,
    /// E.g. "generator offered 2.1 Mframes/s; sink is the bottleneck" or "not applicable".
    #[serde(default)]
    pub note: Option<String>,
}

impl Record {
    /// A record whose median is computed from `samples` (0 when there are none).
    pub fn from_samples(
        path: PathKind,
        measurement: &str,
        unit: &str,
        samples: Vec<f64>,
    ) -> Record {
        Record {
            path,
            measurement: measurement.to_string(),
            unit: unit.to_string(),
            median: median(&samples).unwrap_or(0.0),
            samples,
            extra: BTreeMap::new(),
            curve: Vec::new(),
            note: None,
        }
    }

    /// The headline value, if the record has one (see the type's docs).
    pub fn value(&self) -> Option<f64> {
        (!self.samples.is_empty() && self.median.is_finite()).then_some(self.median)
    }

    /// A side value, if the record has a value at all and carries this key.
    pub fn extra_value(&self, key: &str) -> Option<f64> {
        self.value()?;
        self.extra.get(key).copied().filter(|v| v.is_finite())
    }

    /// Smallest and largest sample.
    pub fn sample_range(&self) -> Option<(f64, f64)> {
        let mut it = self.samples.iter().copied().filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }
}

/// The machine the run was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    #[serde(deserialize_with = "nullable::f64")]
    pub mem_gib: f64,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    /// Reads the machine from /proc (what uname reports, /proc/cpuinfo, /proc/meminfo). Never
    /// fails: what cannot be read is "unknown" (or 0).
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let one_line = |s: Option<String>| {
            s.map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| UNKNOWN.to_string())
        };
        let counted = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let cpus = if counted > 0 {
            counted
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        Machine {
            hostname: one_line(read("/proc/sys/kernel/hostname")),
            kernel: one_line(read("/proc/sys/kernel/osrelease")),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| UNKNOWN.to_string()),
            cpus,
            mem_gib: mem_total_gib(&meminfo).unwrap_or(0.0),
        }
    }
}

/// The first "model name" of /proc/cpuinfo (x86), else "Model"/"Hardware" (arm).
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim();
            (k.trim() == *key && !v.is_empty()).then(|| v.to_string())
        })
    })
}

/// MemTotal of /proc/meminfo in GiB.
fn mem_total_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// One whole benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// UTC start, "2026-11-23T10:04:05Z".
    pub started_utc: String,
    /// Wall time of the run.
    #[serde(deserialize_with = "nullable::f64")]
    pub seconds: f64,
    pub quick: bool,
    pub git_rev: String,
    pub machine: Machine,
    /// E.g. "repetitions" -> "3", "tcp_seconds" -> "5", the data plane's batch size.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub records: Vec<Record>,
}

impl Run {
    /// The record of `measurement` over `path`, if any (the first, should there be several).
    pub fn record(&self, path: PathKind, measurement: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.path == path && r.measurement == measurement)
    }

    /// The headline value of `measurement` over `path`.
    pub fn value(&self, path: PathKind, measurement: &str) -> Option<f64> {
        self.record(path, measurement)?.value()
    }

    /// Paths with at least one record, in report order.
    pub fn paths(&self) -> Vec<PathKind> {
        PathKind::ALL
            .into_iter()
            .filter(|p| self.records.iter().any(|r| r.path == *p))
            .collect()
    }

    /// The RTT p50 of `path`: the "p50" extra, else the record's median (which is the p50).
    pub fn rtt_p50(&self, path: PathKind) -> Option<f64> {
        let r = self.record(path, measurement::RTT)?;
        r.extra_value("p50").or_else(|| r.value())
    }

    /// RTT p50 of `path` minus the underlay's: what the overlay adds to a round trip.
    pub fn added_rtt_p50(&self, path: PathKind) -> Option<f64> {
        if path == PathKind::Underlay {
            return None;
        }
        Some(self.rtt_p50(path)? - self.rtt_p50(PathKind::Underlay)?)
    }
}

/// serde_json writes a non-finite f64 as `null`; these read `null` back as NaN, so a run with a
/// NaN in it still loads.
mod nullable {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    fn or_nan(v: Option<f64>) -> f64 {
        v.unwrap_or(f64::NAN)
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Option::<f64>::deserialize(d).map(or_nan)
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Vec::<Option<f64>>::deserialize(d)?;
        Ok(v.into_iter().map(or_nan).collect())
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, or_nan(v))).collect())
    }

    pub fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let v = Vec::<(Option<f64>, Option<f64>)>::deserialize(d)?;
        Ok(v.into_iter().map(|(a, b)| (or_nan(a), or_nan(b))).collect())
    }
}

/// The median of NaN-free `xs`; the mean of the middle two for an even count; None when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[-1.0, 5.0]), Some(2.0));
    }

    #[test]
    fn path_names() {
        for p in PathKind::ALL {
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.slug()));
        }
        assert_eq!(PathKind::KernelVxlan.to_string(), "kernel VXLAN");
        assert_eq!(PathKind::OursGeneve.to_string(), "ours GENEVE");
        assert_eq!(
            PathKind::KernelVxlanBest.to_string(),
            "kernel VXLAN (offload on)"
        );
        assert_eq!(
            PathKind::OursVxlanAfxdp.to_string(),
            "ours VXLAN (afxdp mode)"
        );
        let p: PathKind = serde_json::from_str("\"ours-vxlan\"").unwrap_or(PathKind::Underlay);
        assert_eq!(p, PathKind::OursVxlan);
        for p in PathKind::ALL {
            assert_eq!(PathKind::from_slug(p.slug()), Some(p));
        }
        assert_eq!(
            PathKind::from_slug("kernel-vxlan-best"),
            Some(PathKind::KernelVxlanBest)
        );
        assert_eq!(
            PathKind::from_slug("ours-vxlan-afxdp"),
            Some(PathKind::OursVxlanAfxdp)
        );
        assert_eq!(PathKind::from_slug("kernel"), None);
        // Every path has its own colour.
        for (i, a) in PathKind::ALL.iter().enumerate() {
            for b in &PathKind::ALL[..i] {
                assert_ne!(a.color(), b.color(), "{a} and {b}");
            }
        }
    }

    #[test]
    fn proc_parsing() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("flags: x\n"), None);
        let gib = mem_total_gib("MemTotal:        8388608 kB\nMemFree: 1 kB\n");
        assert_eq!(gib, Some(8.0));
        assert_eq!(mem_total_gib("garbage"), None);
    }

    #[test]
    fn detect_never_fails() {
        let m = Machine::detect();
        assert!(!m.hostname.is_empty());
        assert!(!m.kernel.is_empty());
        assert!(!m.cpu_model.is_empty());
        // On Linux these are readable; elsewhere the defaults apply.
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(m.cpus >= 1);
            assert!(m.mem_gib > 0.0);
        }
    }

    #[test]
    fn nan_survives_json_as_null() {
        let mut r = Record::from_samples(PathKind::OursVxlan, "rtt", "us", vec![1.0, f64::NAN]);
        r.median = f64::NAN;
        r.extra.insert("p99".into(), f64::NAN);
        r.extra.insert("p50".into(), 3.0);
        r.curve = vec![(50.0, f64::NAN)];
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"median\":null"), "{json}");
        let back: Record = serde_json::from_str(&json).unwrap();
        assert!(back.median.is_nan());
        assert_eq!(back.samples[0], 1.0);
        assert!(back.samples[1].is_nan());
        assert!(back.extra["p99"].is_nan());
        assert_eq!(back.extra["p50"], 3.0);
        assert!(back.curve[0].1.is_nan());
        assert_eq!(back.value(), None);
        assert_eq!(
            back.extra_value("p50"),
            None,
            "no value, so no side values either"
        );
    }

    #[test]
    fn record_value_needs_samples() {
        let mut r = Record::from_samples(PathKind::Underlay, "tcp_1", "Gbit/s", vec![]);
        assert_eq!(r.value(), None);
        r.extra.insert("retransmits".into(), 3.0);
        assert_eq!(r.extra_value("retransmits"), None);
        let r = Record::from_samples(PathKind::Underlay, "tcp_1", "Gbit/s", vec![3.0, 1.0, 2.0]);
        assert_eq!(r.value(), Some(2.0));
        assert_eq!(r.sample_range(), Some((1.0, 3.0)));
    }
}
