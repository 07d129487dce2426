//! The raw samples of the main measurements, their notes, and the records they become.

use std::collections::BTreeMap;

use crate::{
    probe::rtt::RttReport,
    report::{PathKind, Record, median},
};

/// Raw samples as they come, keyed by path and measurement.
#[derive(Default)]
pub(super) struct Samples {
    pub(super) values: BTreeMap<(PathKind, &'static str), Vec<f64>>,
    pub(super) extra: BTreeMap<(PathKind, &'static str, &'static str), Vec<f64>>,
    pub(super) rtt: BTreeMap<PathKind, Vec<RttReport>>,
    /// The latest note of each kind (the third key) per path and measurement.
    pub(super) notes: BTreeMap<(PathKind, &'static str, &'static str), String>,
}

impl Samples {
    pub(super) fn push(&mut self, p: PathKind, m: &'static str, v: f64) {
        self.values.entry((p, m)).or_default().push(v);
    }
    pub(super) fn push_extra(&mut self, p: PathKind, m: &'static str, k: &'static str, v: f64) {
        self.extra.entry((p, m, k)).or_default().push(v);
    }
    pub(super) fn note(&mut self, p: PathKind, m: &'static str, kind: &'static str, text: String) {
        self.notes.insert((p, m, kind), text);
    }
    /// Every note of a record, joined.
    pub(super) fn notes_of(&self, p: PathKind, m: &str) -> Option<String> {
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
    let unit = |m: &str| match m {
        "tcp_1" | "tcp_2" => "Gbit/s",
        "cpu_per_gbit" => "CPU-s/Gbit",
        "frames_64" => "Mframes/s",
        "rtt" => "us",
        _ => "",
    };
    let mut out = Vec::new();
    for (&(p, m), values) in &s.values {
        let mut extra = BTreeMap::new();
        for (&(ep, em, k), v) in &s.extra {
            if ep == p
                && em == m
                && let Some(x) = median(v)
            {
                extra.insert(k.to_string(), x);
            }
        }
        let mut curve = Vec::new();
        if m == "rtt"
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
            path: p,
            measurement: m.to_string(),
            unit: unit(m).to_string(),
            median: median(values).unwrap_or(f64::NAN),
            samples: values.clone(),
            extra,
            curve,
            note: s.notes_of(p, m),
        });
    }
    out
}
