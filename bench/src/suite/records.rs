//! The raw samples of the main measurements, their notes, and the records they become.

use std::{cmp::Ordering, collections::BTreeMap, fmt};

use crate::{
    probe::rtt::RttReport,
    report::{PathKind, Record, measurement as m, median},
};

/// A measurement the suite records: one row of the report per path. Its name in the records
/// is [`Measure::as_str`], one of [`crate::report::measurement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Measure {
    Tcp1,
    Tcp2,
    CpuPerGbit,
    Frames64,
    Rtt,
    Tcp1Jumbo,
    Tcp1Ipv6,
    FailoverPlanned,
    FailoverUnplanned,
    UplinkCarrier,
    UplinkDevice,
    SoakPlanned,
    SoakUnplanned,
}

impl Measure {
    /// The name written into the records and read by the report.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Measure::Tcp1 => m::TCP_1,
            Measure::Tcp2 => m::TCP_2,
            Measure::CpuPerGbit => m::CPU_PER_GBIT,
            Measure::Frames64 => m::FRAMES_64,
            Measure::Rtt => m::RTT,
            Measure::Tcp1Jumbo => m::TCP_1_JUMBO,
            Measure::Tcp1Ipv6 => m::TCP_1_IPV6,
            Measure::FailoverPlanned => m::FAILOVER_PLANNED,
            Measure::FailoverUnplanned => m::FAILOVER_UNPLANNED,
            Measure::UplinkCarrier => m::UPLINK_CARRIER,
            Measure::UplinkDevice => m::UPLINK_DEVICE,
            Measure::SoakPlanned => m::SOAK_PLANNED,
            Measure::SoakUnplanned => m::SOAK_UNPLANNED,
        }
    }

    /// The unit of the record's values.
    pub(super) fn unit(self) -> &'static str {
        match self {
            Measure::Tcp1 | Measure::Tcp2 | Measure::Tcp1Jumbo | Measure::Tcp1Ipv6 => "Gbit/s",
            Measure::CpuPerGbit => "CPU-s/Gbit",
            Measure::Frames64 => "Mframes/s",
            Measure::Rtt => "us",
            Measure::FailoverPlanned
            | Measure::FailoverUnplanned
            | Measure::UplinkCarrier
            | Measure::UplinkDevice => "ms",
            Measure::SoakPlanned | Measure::SoakUnplanned => "failed requests",
        }
    }

    /// The record of this measurement on `path`: `samples` and their median, no curve.
    pub(super) fn record(
        self,
        path: PathKind,
        samples: Vec<f64>,
        extra: BTreeMap<String, f64>,
        note: Option<String>,
    ) -> Record {
        Record {
            path,
            measurement: self.as_str().to_string(),
            unit: self.unit().to_string(),
            median: median(&samples).unwrap_or(f64::NAN),
            samples,
            extra,
            curve: Vec::new(),
            note,
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// By name, so records keyed by measurement come out in the order they did when the key was
/// the name itself.
impl Ord for Measure {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Measure {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Raw samples as they come, keyed by path and measurement.
#[derive(Default)]
pub(super) struct Samples {
    pub(super) values: BTreeMap<(PathKind, Measure), Vec<f64>>,
    pub(super) extra: BTreeMap<(PathKind, Measure, &'static str), Vec<f64>>,
    pub(super) rtt: BTreeMap<PathKind, Vec<RttReport>>,
    /// The latest note of each kind (the third key) per path and measurement.
    pub(super) notes: BTreeMap<(PathKind, Measure, &'static str), String>,
}

impl Samples {
    pub(super) fn push(&mut self, p: PathKind, m: Measure, v: f64) {
        self.values.entry((p, m)).or_default().push(v);
    }
    pub(super) fn push_extra(&mut self, p: PathKind, m: Measure, k: &'static str, v: f64) {
        self.extra.entry((p, m, k)).or_default().push(v);
    }
    pub(super) fn note(&mut self, p: PathKind, m: Measure, kind: &'static str, text: String) {
        self.notes.insert((p, m, kind), text);
    }
    /// Every note of a record, joined.
    pub(super) fn notes_of(&self, p: PathKind, m: Measure) -> Option<String> {
        let all: Vec<&str> = self
            .notes
            .iter()
            .filter(|((np, nm, _), _)| *np == p && *nm == m)
            .map(|(_, t)| t.as_str())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// Turns the samples into one record per path and measurement.
pub(super) fn records_of(s: &Samples) -> Vec<Record> {
    let mut out = Vec::new();
    for (&(p, meas), values) in &s.values {
        let mut extra = BTreeMap::new();
        for (&(ep, em, k), v) in &s.extra {
            if ep == p
                && em == meas
                && let Some(x) = median(v)
            {
                extra.insert(k.to_string(), x);
            }
        }
        let mut curve = Vec::new();
        if meas == Measure::Rtt
            && let Some(reps) = s.rtt.get(&p)
        {
            // Each percentile's median over the repetitions; the curve of the median rep.
            let pick = |f: fn(&RttReport) -> f64| {
                median(&reps.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            extra.insert("p50".into(), pick(|r| r.p50_us));
            extra.insert("p90".into(), pick(|r| r.p90_us));
            extra.insert("p99".into(), pick(|r| r.p99_us));
            extra.insert("p999".into(), pick(|r| r.p999_us));
            extra.insert("max".into(), pick(|r| r.max_us));
            extra.insert(
                "lost".into(),
                reps.iter().map(|r| r.lost as f64).sum::<f64>(),
            );
            let mut by_p50: Vec<&RttReport> = reps.iter().collect();
            by_p50.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
            if let Some(mid) = by_p50.get(by_p50.len() / 2) {
                curve.clone_from(&mid.curve);
            }
        }
        out.push(Record {
            curve,
            ..meas.record(p, values.clone(), extra, s.notes_of(p, meas))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Measure; 13] = [
        Measure::Tcp1,
        Measure::Tcp2,
        Measure::CpuPerGbit,
        Measure::Frames64,
        Measure::Rtt,
        Measure::Tcp1Jumbo,
        Measure::Tcp1Ipv6,
        Measure::FailoverPlanned,
        Measure::FailoverUnplanned,
        Measure::UplinkCarrier,
        Measure::UplinkDevice,
        Measure::SoakPlanned,
        Measure::SoakUnplanned,
    ];

    #[test]
    fn measures_have_distinct_names_and_sort_by_them() {
        let mut by_measure = ALL.to_vec();
        by_measure.sort();
        let mut names: Vec<&str> = ALL.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        let sorted: Vec<&str> = by_measure.iter().map(|m| m.as_str()).collect();
        assert_eq!(sorted, names);
        assert_eq!(Measure::Frames64.to_string(), "frames_64");
        assert_eq!(Measure::Tcp1Ipv6.unit(), "Gbit/s");
        let r = Measure::SoakPlanned.record(
            PathKind::OursVxlan,
            vec![3.0, 1.0, 2.0],
            BTreeMap::new(),
            None,
        );
        assert_eq!(
            (r.measurement.as_str(), r.unit.as_str(), r.median),
            ("soak_planned", "failed requests", 2.0)
        );
        let empty =
            Measure::UplinkDevice.record(PathKind::OursVxlan, Vec::new(), BTreeMap::new(), None);
        assert!(empty.median.is_nan() && empty.curve.is_empty());
    }

    #[test]
    fn records_come_out_by_path_then_name() {
        let mut s = Samples::default();
        for m in [Measure::Tcp1, Measure::Rtt, Measure::CpuPerGbit] {
            s.push(PathKind::OursVxlan, m, 1.0);
        }
        s.push(PathKind::Underlay, Measure::Tcp2, 2.0);
        s.push_extra(PathKind::OursVxlan, Measure::Tcp1, "retransmits", 3.0);
        s.note(PathKind::OursVxlan, Measure::Tcp1, "a", "note".into());
        let r = records_of(&s);
        let rows: Vec<(PathKind, &str, &str)> = r
            .iter()
            .map(|r| (r.path, r.measurement.as_str(), r.unit.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (PathKind::Underlay, "tcp_2", "Gbit/s"),
                (PathKind::OursVxlan, "cpu_per_gbit", "CPU-s/Gbit"),
                (PathKind::OursVxlan, "rtt", "us"),
                (PathKind::OursVxlan, "tcp_1", "Gbit/s"),
            ]
        );
        assert_eq!(r[3].extra.get("retransmits"), Some(&3.0));
        assert_eq!(r[3].note.as_deref(), Some("note"));
        assert_eq!(r[1].note, None);
    }
}
