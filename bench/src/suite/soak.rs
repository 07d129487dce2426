//! The draining soak: on the seed's lab with our data plane and the controller, planned
//! switchovers alternating in direction under `http-ping` every millisecond plus long-lived
//! keep-alive connections, which must lose nothing; then unplanned failovers (kill -9 of the
//! active member's controller and data plane) under the same load, which lose what was in
//! flight, and after which every client must be with the new owner at once. Run shortened by
//! the controller's lab tests and in full by `cargo xtask bench`.

use std::{
    thread,
    time::{Duration, Instant},
};

use ovl_lab::{Lab, MEMBERS, Pair, Signal, other_member};
use serde::{Deserialize, Serialize};

use super::{SuiteError, failover::single_owner, records::Measure, step_err};
use crate::workload::{KeepAliveSummary, Summary};

/// Requests in flight at once for the per-request load (see the failover trials).
const PARALLEL: u32 = 64;
/// Long-lived keep-alive connections, and how often each sends a request.
pub const KEEP_ALIVE: u32 = 16;
pub const KEEP_ALIVE_EVERY_MS: u64 = 10;
/// Switches less than this apart are one trial.
const TRIAL_WINDOW: Duration = Duration::from_millis(100);

/// What the soak saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    pub planned: usize,
    pub kills: usize,
    /// Per-request load during the planned switchovers.
    pub planned_requests: u64,
    pub planned_failed: u64,
    /// Client-visible gap of each planned switchover (ms).
    pub planned_gaps_ms: Vec<f64>,
    /// The planned phase's failed requests by kind, and their lines (time, kind).
    pub planned_failures: std::collections::BTreeMap<String, u64>,
    pub planned_fail_lines: Vec<String>,
    /// When each planned switchover was asked for (UTC, as http-ping prints times).
    pub switched_at: Vec<String>,
    /// The keep-alive connections during the planned switchovers.
    pub planned_keep_alive: Option<KeepAliveSummary>,
    /// TCP segments the new owners sent on to the old ones, and connections, over the
    /// planned phase (both members' data planes).
    pub drained_segments: u64,
    pub drained_served: u64,
    /// Per-request load during the unplanned failovers.
    pub unplanned_requests: u64,
    pub unplanned_failed: u64,
    pub unplanned_gaps_ms: Vec<f64>,
    /// Failed requests of each unplanned failover.
    pub failed_per_kill: Vec<u64>,
    pub unplanned_keep_alive: Option<KeepAliveSummary>,
    /// Moves nobody asked for after a killed member restarted (on a starved host a
    /// survivor's heartbeats can pause longer than the detection time, and the restarted,
    /// higher-ranked member takes the VIP); each is one more switch the clients follow.
    pub unexpected_moves: usize,
    /// The member that owned the VIP at the end.
    pub final_owner: String,
    /// The log tails, for messages when something is off.
    pub logs: String,
}

/// `tx_drained` and `rx_drained` of `host`'s data plane.
fn drain_counters(lab: &Lab, host: &str) -> (u64, u64) {
    let Ok(text) = request(&lab.control_socket(host), "stats json") else {
        return (0, 0);
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return (0, 0);
    };
    let get = |name: &str| {
        v["xdp"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|p| p[0].as_str() == Some(name))
                    .and_then(|p| p[1].as_u64())
            })
            .unwrap_or(0)
    };
    (get("tx_drained"), get("rx_drained"))
}

fn request(socket: &std::path::Path, what: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The per-request lines' failures (`<time> FAIL ...`), each counted for the last kill at or
/// before its start time. Both times are UTC in the same fixed format, so text order is time
/// order.
fn failures_after(log: &str, killed_at: &[String]) -> Vec<u64> {
    let mut per = vec![0u64; killed_at.len()];
    for line in log.lines() {
        let mut f = line.split_whitespace();
        let (Some(at), Some("FAIL")) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(k) = killed_at.iter().rposition(|k| k.as_str() <= at) {
            per[k] += 1;
        }
    }
    per
}

fn summary(log: &str, what: &str) -> Result<Summary, SuiteError> {
    Summary::from_log(log).ok_or_else(|| {
        let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        step_err(format!("http-ping summary ({what})"), tail)
    })
}

/// Runs the soak on a lab whose pair is up (pri owning the VIP): `planned` switchovers, asked
/// alternately on the owner and on the backup, `hold` apart, then `kills` kill -9 failovers.
pub fn run_soak(
    lab: &mut Lab,
    pair: &mut Pair,
    planned: usize,
    kills: usize,
    hold: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<SoakReport, SuiteError> {
    let mut r = SoakReport {
        planned,
        kills,
        ..SoakReport::default()
    };
    let before: Vec<(u64, u64)> = MEMBERS.iter().map(|h| drain_counters(lab, h)).collect();
    let ping = pair.start_http_ping_with(
        lab,
        1,
        PARALLEL,
        Some((KEEP_ALIVE, KEEP_ALIVE_EVERY_MS)),
        "soak-planned-http-ping",
    )?;
    thread::sleep(Duration::from_millis(500));
    for i in 0..planned {
        let from = single_owner(lab, pair)?;
        let to = other_member(from);
        let ask = if i % 2 == 0 { from } else { to };
        r.switched_at
            .push(crate::workload::rfc3339_micros(std::time::SystemTime::now()));
        let out = pair.switchover(lab, ask)?;
        if !out.status.success() {
            return Err(step_err(
                format!("soak switchover {i} on {ask}"),
                format!(
                    "{}{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    pair.logs(lab)
                ),
            ));
        }
        if !pair.wait_owner(lab, to, Duration::from_secs(3))? {
            return Err(step_err(
                format!("soak switchover {i}"),
                format!("VIP not on {to} alone\n{}", pair.logs(lab)),
            ));
        }
        thread::sleep(hold);
        if (i + 1) % 20 == 0 {
            progress(&format!("soak: {} of {planned} planned switchovers", i + 1));
        }
    }
    thread::sleep(Duration::from_millis(300));
    let log = pair.finish_http_ping(lab, &ping)?;
    let s = summary(&log, "planned")?;
    r.planned_requests = s.requests;
    r.planned_failed = s.failed;
    r.planned_failures = s.failures.clone();
    r.planned_fail_lines = log
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("FAIL"))
        .map(str::to_string)
        .collect();
    r.planned_gaps_ms = s
        .trials(TRIAL_WINDOW)
        .iter()
        .map(|t| t.gap.as_secs_f64() * 1e3)
        .collect();
    r.planned_keep_alive = s.keep_alive.clone();
    for (h, (tx0, rx0)) in MEMBERS.iter().zip(before) {
        let (tx, rx) = drain_counters(lab, h);
        r.drained_segments += tx.saturating_sub(tx0);
        r.drained_served += rx.saturating_sub(rx0);
    }

    let ping = pair.start_http_ping_with(
        lab,
        1,
        PARALLEL,
        Some((KEEP_ALIVE, KEEP_ALIVE_EVERY_MS)),
        "soak-unplanned-http-ping",
    )?;
    thread::sleep(Duration::from_millis(500));
    let mut killed_at = Vec::new();
    for i in 0..kills {
        let dead = single_owner(lab, pair)?;
        killed_at.push(crate::workload::rfc3339_micros(std::time::SystemTime::now()));
        let survivor = other_member(dead);
        pair.signal_controller(lab, dead, Signal::Kill);
        lab.kill_dataplane(dead, Signal::Kill)?;
        // The dead member's stale port keeps its VIP until it restarts (and carries nothing).
        let deadline = Instant::now() + Duration::from_secs(3);
        while !pair.owners(lab)?.contains(&survivor) {
            if Instant::now() > deadline {
                return Err(step_err(
                    format!("soak kill {i}"),
                    format!("{survivor} did not take over\n{}", pair.logs(lab)),
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
        pair.wait_controller(lab, dead, Duration::from_secs(5));
        lab.wait_dataplane(dead, Duration::from_secs(5))?;
        // Long enough for every client to have moved before the next kill.
        thread::sleep(Duration::from_millis(400));
        lab.restart_dataplane(dead)?;
        pair.start_controller(lab, dead)?;
        thread::sleep(Duration::from_millis(600));
        let deadline = Instant::now() + Duration::from_secs(3);
        let owner = loop {
            if let [one] = pair.owners(lab)?.as_slice() {
                break *one;
            }
            if Instant::now() > deadline {
                return Err(step_err(
                    format!("soak kill {i}"),
                    format!("no single VIP owner after the restart\n{}", pair.logs(lab)),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        };
        if owner != survivor {
            r.unexpected_moves += 1;
            tracing::warn!(
                trial = i,
                "the VIP moved back to the restarted {owner} on its own"
            );
        }
    }
    r.final_owner = single_owner(lab, pair)?.to_uppercase();
    thread::sleep(Duration::from_millis(300));
    let log = pair.finish_http_ping(lab, &ping)?;
    let s = summary(&log, "unplanned")?;
    r.unplanned_requests = s.requests;
    r.unplanned_failed = s.failed;
    let trials = s.trials(TRIAL_WINDOW);
    r.unplanned_gaps_ms = trials.iter().map(|t| t.gap.as_secs_f64() * 1e3).collect();
    r.failed_per_kill = failures_after(&log, &killed_at);
    r.unplanned_keep_alive = s.keep_alive.clone();
    r.logs = pair.logs(lab);
    Ok(r)
}

/// Whether every keep-alive connection followed every move of the unplanned phase: as many
/// answering IDs in a row as moves plus one, the last the final owner's.
pub fn clients_followed(r: &SoakReport, ka: &KeepAliveSummary) -> bool {
    ka.per_connection.iter().all(|c| {
        c.ids.len() == r.kills + r.unexpected_moves + 1
            && c.ids.last().is_some_and(|id| *id == r.final_owner)
    })
}

fn median_ms(v: &[f64]) -> f64 {
    crate::report::median(v).unwrap_or(f64::NAN)
}

/// The soak as `cargo xtask bench` runs it: its own pair lab, `s.soak_planned` switchovers
/// and `s.soak_kills` kill -9 failovers, as two records.
pub(super) fn run(
    s: &super::Settings,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<crate::report::Record>, SuiteError> {
    use crate::report::PathKind;
    let (mut lab, mut pair) = super::failover::pair_lab(s, "bs", |spec| spec.router_napi = true)?;
    let r = run_soak(
        &mut lab,
        &mut pair,
        s.soak_planned,
        s.soak_kills,
        Duration::from_millis(150),
        &mut |line| progress(line),
    )?;
    let missing = || step_err("draining soak", "http-ping printed no keep-alive summary");
    let ka = r.planned_keep_alive.clone().ok_or_else(missing)?;
    let planned_failed = r.planned_failed + ka.failed;
    let per = |n: u64, of: usize| n as f64 / of.max(1) as f64;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("switchovers".into(), r.planned as f64);
    extra.insert("failed_requests".into(), r.planned_failed as f64);
    extra.insert("keep_alive_failed".into(), ka.failed as f64);
    extra.insert("connections_reset".into(), ka.connections_reset as f64);
    extra.insert("drained_segments".into(), r.drained_segments as f64);
    extra.insert("gap_median".into(), median_ms(&r.planned_gaps_ms));
    extra.insert(
        "gap_max".into(),
        r.planned_gaps_ms.iter().copied().fold(0.0, f64::max),
    );
    let planned_note = (planned_failed > 0 || ka.connections_reset > 0).then(|| {
        format!(
            "draining soak: {planned_failed} failed requests and {} reset connections over {} \
             planned switchovers",
            ka.connections_reset, r.planned
        )
    });
    let planned = Measure::SoakPlanned.record(
        PathKind::OursVxlan,
        vec![per(planned_failed, r.planned)],
        extra,
        planned_note,
    );
    progress(&format!(
        "draining soak: {} planned switchovers, {} requests + {} keep-alive, {} failed, {} \
         connections reset, gap median {:.2} ms max {:.2} ms, {} segments drained",
        r.planned,
        r.planned_requests,
        ka.requests,
        planned_failed,
        ka.connections_reset,
        median_ms(&r.planned_gaps_ms),
        r.planned_gaps_ms.iter().copied().fold(0.0, f64::max),
        r.drained_segments
    ));

    let ka = r.unplanned_keep_alive.clone().ok_or_else(missing)?;
    let per_kill: Vec<f64> = r.failed_per_kill.iter().map(|&n| n as f64).collect();
    let followed = clients_followed(&r, &ka);
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("failovers".into(), r.kills as f64);
    extra.insert("failed_requests".into(), r.unplanned_failed as f64);
    extra.insert("connections_reset".into(), ka.connections_reset as f64);
    extra.insert(
        "timeouts".into(),
        ka.resets.get("timeout").copied().unwrap_or(0) as f64,
    );
    extra.insert("gap_median".into(), median_ms(&r.unplanned_gaps_ms));
    extra.insert(
        "gap_max".into(),
        r.unplanned_gaps_ms.iter().copied().fold(0.0, f64::max),
    );
    extra.insert("clients_followed".into(), f64::from(u8::from(followed)));
    extra.insert("unexpected_moves".into(), r.unexpected_moves as f64);
    let unplanned = Measure::SoakUnplanned.record(
        PathKind::OursVxlan,
        per_kill,
        extra,
        (!followed).then(|| {
            "draining soak: some keep-alive connection did not follow every kill -9 failover"
                .to_string()
        }),
    );
    progress(&format!(
        "draining soak: {} kill -9 failovers, {} failed requests ({:?} per failover), gap \
         median {:.2} ms, {} keep-alive connections reset, every client followed: {followed}",
        r.kills,
        r.unplanned_failed,
        r.failed_per_kill,
        median_ms(&r.unplanned_gaps_ms),
        ka.connections_reset
    ));
    Ok(vec![planned, unplanned])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_for_the_last_kill_before_them() {
        let log = "2026-12-03T10:00:00.100000Z PRI 0.2ms\n\
                   2026-12-03T10:00:00.200000Z FAIL timeout 50ms\n\
                   2026-12-03T10:00:01.500000Z FAIL reset 0.1ms\n\
                   2026-12-03T10:00:01.600000Z FAIL reset 0.1ms\n\
                   2026-12-03T10:00:00.050000Z FAIL timeout 50ms\n\
                   {\"requests\": 5}\n";
        let kills = [
            "2026-12-03T10:00:00.150000Z".to_string(),
            "2026-12-03T10:00:01.000000Z".to_string(),
        ];
        // The one before the first kill counts for none.
        assert_eq!(failures_after(log, &kills), vec![1, 2]);
    }
}
