//! What a run of samples says: failures by kind, answers per ID, the switches from one ID to
//! another and the client-visible gaps, latency percentiles.
//!
//! Times are "answer times", [`Sample::answered_at`]: a switch's gap runs from the moment the
//! last answer of the old owner arrived to the moment the first answer of the new one arrived.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::keepalive::KeepAliveSummary;
use super::ping::Sample;

/// Largest latency the histogram tells apart (one hour, in nanoseconds).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// One change of the answering ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// ID answering before.
    pub from: String,
    /// ID answering after.
    pub to: String,
    /// When the last answer from `from` arrived (since the start of the run).
    #[serde(rename = "last_from_ms", with = "ms")]
    pub last_from: Duration,
    /// When the first answer from `to` arrived.
    #[serde(rename = "first_to_ms", with = "ms")]
    pub first_to: Duration,
    /// `first_to - last_from`: what a client saw of the failover.
    #[serde(rename = "gap_ms", with = "ms")]
    pub gap: Duration,
    /// Failed requests between the two answers.
    pub failures_between: u64,
}

/// Latency of the successful answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Median (within 0.1%: an HDR histogram with 3 significant digits).
    #[serde(rename = "p50_ms", with = "ms")]
    pub p50: Duration,
    /// 99th percentile (within 0.1%).
    #[serde(rename = "p99_ms", with = "ms")]
    pub p99: Duration,
    /// Largest, exact.
    #[serde(rename = "max_ms", with = "ms")]
    pub max: Duration,
}

impl LatencyStats {
    /// The percentiles of a histogram of nanoseconds, with the exact maximum `max`. The
    /// histogram reports a bucket's upper edge; a percentile is never above the maximum.
    pub(super) fn from_hist(h: &Histogram<u64>, max: Duration) -> Self {
        let q = |q: f64| Duration::from_nanos(h.value_at_quantile(q)).min(max);
        LatencyStats {
            p50: q(0.5),
            p99: q(0.99),
            max,
        }
    }
}

/// The latencies of the answers as they come, in constant memory: an HDR histogram and the
/// exact maximum.
#[derive(Debug)]
pub(super) struct Latencies {
    /// In nanoseconds; `None` only if the histogram could not be created.
    hist: Option<Histogram<u64>>,
    max: Duration,
}

impl Latencies {
    pub(super) fn new() -> Self {
        Latencies {
            // 1 ns to 1 h at 3 significant digits, a fixed ~300 KB; latencies are bounded by
            // the client's timeouts, anything longer would be clamped. Creation only fails
            // for bounds or digits out of range, which these are not.
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).ok(),
            max: Duration::ZERO,
        }
    }

    pub(super) fn record(&mut self, latency: Duration) {
        if let Some(h) = &mut self.hist {
            h.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
        self.max = self.max.max(latency);
    }

    /// The summary of the latencies recorded; `None` before the first.
    pub(super) fn stats(&self) -> Option<LatencyStats> {
        match &self.hist {
            Some(h) if !h.is_empty() => Some(LatencyStats::from_hist(h, self.max)),
            _ => None,
        }
    }
}

/// The summary of a run; also its JSON form (durations as float milliseconds, `_ms` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests made.
    pub requests: u64,
    /// Requests answered with an ID.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Failed requests by kind (`timeout`, `refused`, `reset`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Ticks skipped because a request was still running.
    pub skipped_ticks: u64,
    /// Answers per ID.
    pub per_id: BTreeMap<String, u64>,
    /// Every change of answering ID, in order (a flapping pair shows many).
    pub switches: Vec<Switch>,
    /// Longest time between two consecutive answers, whatever their IDs; `None` with fewer
    /// than two answers.
    #[serde(rename = "longest_gap_ms", with = "ms_opt")]
    pub longest_gap: Option<Duration>,
    /// Latency of the answers; `None` without answers.
    pub latency: Option<LatencyStats>,
    /// When the last request ended (since the start of the run).
    #[serde(rename = "duration_ms", with = "ms")]
    pub duration: Duration,
    /// What the keep-alive connections saw, when they ran alongside (`http-ping
    /// --keep-alive-connections`); absent from the JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<KeepAliveSummary>,
}

impl Summary {
    /// Summarises samples in the order they were taken.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut s = Summarizer::new();
        for sample in samples {
            s.push(sample);
        }
        s.finish()
    }

    /// The summary `http-ping --json` printed last in `log` (its other lines are progress).
    pub fn from_log(log: &str) -> Option<Summary> {
        let last = log
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))?;
        serde_json::from_str(last).ok()
    }

    /// Groups switches into failover trials. With requests in parallel an answer from the
    /// old owner that was already on its way can arrive just after the first one from the
    /// new owner (both hold the VIP for the linger time), which shows as a flicker of extra
    /// switches. Switches less than `window` apart belong to one trial; its gap is the first
    /// switch's (last answer of the old owner before it, first answer of the new one) and it
    /// ends on the last switch's new owner.
    pub fn trials(&self, window: Duration) -> Vec<Trial> {
        let mut out: Vec<Trial> = Vec::new();
        for w in &self.switches {
            match out.last_mut() {
                Some(last) if w.first_to.saturating_sub(last.last_switch) < window => {
                    last.to.clone_from(&w.to);
                    last.last_switch = w.first_to;
                }
                _ => out.push(Trial {
                    to: w.to.clone(),
                    gap: w.gap,
                    last_switch: w.first_to,
                }),
            }
        }
        out
    }

    /// The JSON form on one line.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and string-keyed maps always serialises.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// One failover as the client saw it: a run of switches close together.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Who answers after it.
    pub to: String,
    /// Last answer of the old owner to first answer of the new one.
    pub gap: Duration,
    /// When its last switch happened (since the start of the run).
    pub last_switch: Duration,
}

/// Builds a [`Summary`] one sample at a time, in constant memory apart from the per-ID and
/// per-kind maps and the list of switches, so a long run at 1 ms need not keep its samples.
#[derive(Debug)]
pub struct Summarizer {
    requests: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    skipped_ticks: u64,
    per_id: BTreeMap<String, u64>,
    switches: Vec<Switch>,
    longest_gap: Option<Duration>,
    /// The last answer: its ID and when it arrived.
    last_ok: Option<(String, Duration)>,
    failures_since_ok: u64,
    latencies: Latencies,
    end: Duration,
}

impl Default for Summarizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Summarizer {
    /// An empty summary.
    pub fn new() -> Self {
        Self {
            requests: 0,
            ok: 0,
            failures: BTreeMap::new(),
            skipped_ticks: 0,
            per_id: BTreeMap::new(),
            switches: Vec::new(),
            longest_gap: None,
            last_ok: None,
            failures_since_ok: 0,
            latencies: Latencies::new(),
            end: Duration::ZERO,
        }
    }

    /// Adds the next sample (samples must come in the order they were taken).
    pub fn push(&mut self, s: &Sample) {
        self.requests += 1;
        let answered = s.answered_at();
        self.end = self.end.max(answered);
        let Some(id) = s.outcome.id() else {
            let kind = s.outcome.failure_kind().unwrap_or("unknown");
            *self.failures.entry(kind.to_owned()).or_default() += 1;
            self.failures_since_ok += 1;
            return;
        };
        self.ok += 1;
        *self.per_id.entry(id.to_owned()).or_default() += 1;
        self.latencies.record(s.latency);
        if let Some((prev_id, prev_at)) = &self.last_ok {
            let gap = answered.saturating_sub(*prev_at);
            self.longest_gap = Some(self.longest_gap.map_or(gap, |g| g.max(gap)));
            if prev_id != id {
                self.switches.push(Switch {
                    from: prev_id.clone(),
                    to: id.to_owned(),
                    last_from: *prev_at,
                    first_to: answered,
                    gap,
                    failures_between: self.failures_since_ok,
                });
            }
        }
        match &mut self.last_ok {
            // Reuse the string while the same ID keeps answering.
            Some((prev_id, prev_at)) if prev_id == id => *prev_at = answered,
            last => *last = Some((id.to_owned(), answered)),
        }
        self.failures_since_ok = 0;
    }

    /// Adds ticks skipped by the client (from [`RunStats`](super::RunStats)).
    pub fn add_skipped_ticks(&mut self, n: u64) {
        self.skipped_ticks += n;
    }

    /// The summary of everything pushed so far.
    pub fn finish(&self) -> Summary {
        Summary {
            requests: self.requests,
            ok: self.ok,
            failed: self.requests - self.ok,
            failures: self.failures.clone(),
            skipped_ticks: self.skipped_ticks,
            per_id: self.per_id.clone(),
            switches: self.switches.clone(),
            longest_gap: self.longest_gap,
            latency: self.latencies.stats(),
            duration: self.end,
            keep_alive: None,
        }
    }
}

/// Milliseconds with microsecond digits, for people.
pub(super) fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `key n, key n, ...`.
pub(super) fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `p50 <ms>, p99 <ms>, max <ms>`.
impl fmt::Display for LatencyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}, p99 {}, max {}",
            fmt_ms(self.p50),
            fmt_ms(self.p99),
            fmt_ms(self.max)
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {}, ok {}, failed {}",
            self.requests, self.ok, self.failed
        )?;
        if !self.failures.is_empty() {
            write!(f, " ({})", counts(&self.failures))?;
        }
        writeln!(f, ", skipped ticks {}", self.skipped_ticks)?;
        if !self.per_id.is_empty() {
            writeln!(f, "answers: {}", counts(&self.per_id))?;
        }
        if self.switches.is_empty() {
            writeln!(f, "switches: none")?;
        }
        for s in &self.switches {
            writeln!(
                f,
                "switch {} -> {}: last {} at {}, first {} at {}, gap {} ({} failed in between)",
                s.from,
                s.to,
                s.from,
                fmt_ms(s.last_from),
                s.to,
                fmt_ms(s.first_to),
                fmt_ms(s.gap),
                s.failures_between
            )?;
        }
        match self.longest_gap {
            Some(g) => writeln!(f, "longest gap between answers: {}", fmt_ms(g))?,
            None => writeln!(
                f,
                "longest gap between answers: n/a (fewer than two answers)"
            )?,
        }
        match &self.latency {
            Some(l) => write!(f, "latency: {l}"),
            None => write!(f, "latency: n/a (no answers)"),
        }?;
        if let Some(k) = &self.keep_alive {
            write!(f, "\n{k}")?;
        }
        Ok(())
    }
}

/// `Duration` as float milliseconds in JSON.
pub(super) mod ms {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // Integer nanoseconds over 1e6: whole and half milliseconds come out exact.
        s.serialize_f64(d.as_nanos() as f64 / 1e6)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(D::Error::custom)
    }
}

/// `Option<Duration>` as float milliseconds or null in JSON.
mod ms_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|ms| Duration::try_from_secs_f64(ms / 1000.0).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Outcome;
    use std::time::UNIX_EPOCH;

    const MS: Duration = Duration::from_millis(1);

    /// A sample started at `t_ms` that took `lat_us`.
    fn sample(seq: u64, t_ms: u64, lat_us: u64, outcome: Outcome) -> Sample {
        Sample {
            seq,
            at: UNIX_EPOCH + Duration::from_secs(1_795_341_600) + Duration::from_millis(t_ms),
            t: Duration::from_millis(t_ms),
            latency: Duration::from_micros(lat_us),
            outcome,
        }
    }

    fn ok(id: &str) -> Outcome {
        Outcome::Ok(id.to_owned())
    }

    /// One sample per 10 ms from a script of outcomes, each taking 500 us.
    fn run(script: &[Outcome]) -> Vec<Sample> {
        script
            .iter()
            .enumerate()
            .map(|(i, o)| sample(i as u64, 10 * i as u64, 500, o.clone()))
            .collect()
    }

    fn us(x: u64) -> Duration {
        Duration::from_micros(x)
    }

    #[test]
    fn empty_run() {
        let s = Summary::from_samples(&[]);
        assert_eq!((s.requests, s.ok, s.failed), (0, 0, 0));
        assert!(s.switches.is_empty() && s.per_id.is_empty() && s.failures.is_empty());
        assert_eq!(s.longest_gap, None);
        assert_eq!(s.latency, None);
        assert_eq!(s.duration, Duration::ZERO);
    }

    #[test]
    fn flicker_within_the_window_is_one_trial() {
        // PRI until 20 ms, SEC at 30, a late PRI answer at 40, SEC from 50; later back to PRI.
        let mut script = vec![ok("PRI"), ok("PRI"), ok("PRI"), ok("SEC"), ok("PRI")];
        script.extend(std::iter::repeat_n(ok("SEC"), 30));
        script.extend([ok("PRI"), ok("PRI")]);
        let s = Summary::from_samples(&run(&script));
        assert_eq!(s.switches.len(), 4);
        let t = s.trials(Duration::from_millis(100));
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].to.as_str(), t[0].gap), ("SEC", 10 * MS));
        assert_eq!((t[1].to.as_str(), t[1].gap), ("PRI", 10 * MS));
        // A window shorter than the flicker sees every switch as its own trial.
        assert_eq!(s.trials(Duration::from_millis(5)).len(), 4);
        assert_eq!(
            Summary::from_log(&format!("progress\n{}\n", s.to_json())),
            Some(s)
        );
        assert_eq!(Summary::from_log("no json here"), None);
    }

    #[test]
    fn no_switch() {
        let s = Summary::from_samples(&run(&[ok("PRI"), ok("PRI"), ok("PRI"), ok("PRI")]));
        assert_eq!((s.requests, s.ok, s.failed), (4, 4, 0));
        assert_eq!(s.per_id, BTreeMap::from([("PRI".to_owned(), 4)]));
        assert!(s.switches.is_empty());
        assert_eq!(s.longest_gap, Some(10 * MS));
        assert_eq!(s.duration, us(30500));
        let l = s.latency.unwrap();
        assert_eq!(l.max, Duration::from_micros(500));
        assert_eq!(l.p50, Duration::from_micros(500));
    }

    #[test]
    fn one_switch_with_failures_in_between() {
        let script = [
            ok("PRI"),
            ok("PRI"),
            Outcome::Timeout,
            Outcome::Refused,
            Outcome::Error("reset".into()),
            Outcome::Timeout,
            ok("SEC"),
            ok("SEC"),
        ];
        let s = Summary::from_samples(&run(&script));
        assert_eq!((s.requests, s.ok, s.failed), (8, 4, 4));
        assert_eq!(
            s.failures,
            BTreeMap::from([
                ("refused".to_owned(), 1),
                ("reset".to_owned(), 1),
                ("timeout".to_owned(), 2)
            ])
        );
        assert_eq!(
            s.per_id,
            BTreeMap::from([("PRI".to_owned(), 2), ("SEC".to_owned(), 2)])
        );
        assert_eq!(
            s.switches,
            vec![Switch {
                from: "PRI".into(),
                to: "SEC".into(),
                last_from: us(10500),
                first_to: us(60500),
                gap: 50 * MS,
                failures_between: 4,
            }]
        );
        assert_eq!(s.longest_gap, Some(50 * MS));
    }

    #[test]
    fn flapping_shows_every_switch() {
        let script = [
            ok("PRI"),
            ok("SEC"),
            Outcome::Timeout,
            ok("PRI"),
            ok("PRI"),
            ok("SEC"),
        ];
        let s = Summary::from_samples(&run(&script));
        let pairs: Vec<(&str, &str, Duration, u64)> = s
            .switches
            .iter()
            .map(|w| (w.from.as_str(), w.to.as_str(), w.gap, w.failures_between))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("PRI", "SEC", 10 * MS, 0),
                ("SEC", "PRI", 20 * MS, 1),
                ("PRI", "SEC", 10 * MS, 0)
            ]
        );
        assert_eq!(s.longest_gap, Some(20 * MS));
        assert_eq!(s.per_id["PRI"], 3);
        assert_eq!(s.per_id["SEC"], 2);
    }

    #[test]
    fn all_failures() {
        let script = [
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Error("host_unreachable".into()),
        ];
        let s = Summary::from_samples(&run(&script));
        assert_eq!((s.requests, s.ok, s.failed), (4, 0, 4));
        assert_eq!(s.failures["refused"], 2);
        assert_eq!(s.failures["timeout"], 1);
        assert_eq!(s.failures["host_unreachable"], 1);
        assert!(s.per_id.is_empty() && s.switches.is_empty());
        assert_eq!(s.longest_gap, None);
        assert_eq!(s.latency, None);
        assert_eq!(s.duration, us(30500));
    }

    #[test]
    fn gap_uses_answer_times_and_latency_only_counts_answers() {
        // A slow last PRI answer shortens the gap; the timeout's 50 ms is not a latency.
        let samples = [
            sample(0, 0, 100, ok("PRI")),
            sample(1, 10, 4_000, ok("PRI")),
            sample(2, 20, 50_000, Outcome::Timeout),
            sample(3, 70, 200, ok("SEC")),
        ];
        let s = Summary::from_samples(&samples);
        assert_eq!(s.switches[0].last_from, 14 * MS);
        assert_eq!(s.switches[0].first_to, us(70200));
        assert_eq!(s.switches[0].gap, us(56200));
        assert_eq!(s.longest_gap, Some(us(56200)));
        assert_eq!(s.latency.unwrap().max, 4 * MS);
        assert_eq!(s.duration, us(70200));
    }

    #[test]
    fn latencies_start_empty_and_stay_within_the_maximum() {
        let mut l = Latencies::new();
        assert_eq!(l.stats(), None);
        // 1_000_001 ns falls in a bucket whose upper edge is above it.
        l.record(Duration::from_nanos(1_000_001));
        let s = l.stats().unwrap();
        assert_eq!(s.max, Duration::from_nanos(1_000_001));
        assert_eq!((s.p50, s.p99), (s.max, s.max));
    }

    #[test]
    fn percentiles_are_within_a_tenth_of_a_percent() {
        // Latencies 1..=1000 us: p50 = 500 us, p99 = 990 us (nearest rank).
        let samples: Vec<Sample> = (1..=1000u64).map(|i| sample(i, i, i, ok("PRI"))).collect();
        let l = Summary::from_samples(&samples).latency.unwrap();
        let close = |got: Duration, want_us: f64| {
            let got_us = got.as_secs_f64() * 1e6;
            assert!(
                (got_us - want_us).abs() <= want_us * 0.001 + 0.001,
                "{got_us} vs {want_us}"
            );
        };
        close(l.p50, 500.0);
        close(l.p99, 990.0);
        assert_eq!(l.max, Duration::from_micros(1000));
    }

    #[test]
    fn skipped_ticks_and_json_round_trip() {
        let mut b = Summarizer::new();
        for s in run(&[ok("PRI"), Outcome::Timeout, ok("SEC")]) {
            b.push(&s);
        }
        b.add_skipped_ticks(3);
        let s = b.finish();
        assert_eq!(s.skipped_ticks, 3);
        let json = s.to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["requests"], 3);
        assert_eq!(v["failures"]["timeout"], 1);
        assert_eq!(v["switches"][0]["from"], "PRI");
        assert_eq!(v["switches"][0]["gap_ms"], 20.0);
        assert_eq!(v["longest_gap_ms"], 20.0);
        assert_eq!(v["latency"]["max_ms"], 0.5);
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.switches, s.switches);
        assert_eq!(back.per_id, s.per_id);
        assert_eq!(back.requests, 3);
        // Bad input is an error, not a panic.
        let bad = json.replace("\"duration_ms\":20.5", "\"duration_ms\":-1.0");
        assert_ne!(bad, json);
        assert!(serde_json::from_str::<Summary>(&bad).is_err());
    }

    #[test]
    fn display_names_the_switch_and_gap() {
        let text =
            Summary::from_samples(&run(&[ok("PRI"), Outcome::Refused, ok("SEC")])).to_string();
        assert!(
            text.contains("requests 3, ok 2, failed 1 (refused 1)"),
            "{text}"
        );
        assert!(text.contains("switch PRI -> SEC"), "{text}");
        assert!(text.contains("\nanswers: PRI 1, SEC 1\n"), "{text}");
        assert!(text.contains("\nlatency: p50 "), "{text}");
        assert!(
            text.contains("gap 20.000 ms (1 failed in between)"),
            "{text}"
        );
        assert!(
            text.contains("longest gap between answers: 20.000 ms"),
            "{text}"
        );
        let none = Summary::from_samples(&run(&[Outcome::Timeout])).to_string();
        assert!(none.contains("n/a (no answers)"), "{none}");
    }
}
