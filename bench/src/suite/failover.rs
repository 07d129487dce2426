//! Failover trials on the seed's set-up (client, pri, sec; VIP 192.168.0.200 moved by our
//! controller), once with the kernel VXLAN driver on pri and sec and once with our data
//! plane: planned switchovers, then unplanned failovers by the active member's underlay link
//! going down (the one unplanned fault that is the same for both: the kernel driver has no
//! process to kill). The client polls every millisecond with up to 64 requests in flight.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use ovl_lab::{Lab, LabSpec, Pair, PairBins, PairOptions, other_member};

use super::{Settings, SuiteError, records::Measure, step_err};
use crate::{
    report::{PathKind, Record},
    workload::Summary,
};

const PARALLEL: u32 = 64;

/// Switches less than this apart are one trial (see [`Summary::trials`]).
const TRIAL_WINDOW: Duration = Duration::from_millis(100);

pub fn run(
    s: &Settings,
    kind: PathKind,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Record>, SuiteError> {
    let (mut lab, pair) = pair_lab(s, "bf", |spec| {
        if kind == PathKind::KernelVxlan {
            *spec = spec.clone().kernel_everywhere();
        }
    })?;
    let mut records = Vec::new();

    let mut unexpected = 0;
    let ping = pair.start_http_ping(&mut lab, 1, PARALLEL, "planned-http-ping")?;
    thread::sleep(Duration::from_millis(300));
    for i in 0..s.failover_planned {
        let owner = single_owner(&lab, &pair)?;
        // Asked alternately on the owner and on the backup: both must work.
        let ask = if i % 2 == 0 {
            owner
        } else {
            other_member(owner)
        };
        let out = pair.switchover(&lab, ask)?;
        if !out.status.success() {
            return Err(step_err(
                format!("switchover on {ask} ({kind})"),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        settle(
            &lab,
            &pair,
            other_member(owner),
            &format!("planned trial {i}"),
            &mut unexpected,
        )?;
    }
    let log = pair.finish_http_ping(&mut lab, &ping)?;
    let planned = record(
        kind,
        Measure::FailoverPlanned,
        &log,
        s.failover_planned,
        unexpected,
    )?;
    progress(&describe(kind, "planned", &planned));
    records.push(planned);

    let mut unexpected = 0;
    let ping = pair.start_http_ping(&mut lab, 1, PARALLEL, "unplanned-http-ping")?;
    thread::sleep(Duration::from_millis(300));
    let t = Duration::from_secs(5);
    for i in 0..s.failover_unplanned {
        let down = single_owner(&lab, &pair)?;
        let survivor = other_member(down);
        lab.exec(down, &["ip", "link", "set", "eth0", "down"], t)?;
        if !pair.wait_owner(&lab, survivor, Duration::from_secs(2))? {
            return Err(step_err(
                format!("unplanned trial {i} ({kind})"),
                format!("{survivor} did not take over\n{}", pair.logs(&lab)),
            ));
        }
        let gw = lab
            .gateway_ip(down)
            .ok_or_else(|| step_err("gateway", down))?
            .to_string();
        lab.exec(down, &["ip", "link", "set", "eth0", "up"], t)?;
        lab.exec(down, &["ip", "route", "replace", "default", "via", &gw], t)?;
        // Back as backup after its recovery silence; the VIP stays with the survivor.
        thread::sleep(Duration::from_millis(1200));
        settle(
            &lab,
            &pair,
            survivor,
            &format!("unplanned trial {i}"),
            &mut unexpected,
        )?;
    }
    let log = pair.finish_http_ping(&mut lab, &ping)?;
    let unplanned = record(
        kind,
        Measure::FailoverUnplanned,
        &log,
        s.failover_unplanned,
        unexpected,
    )?;
    progress(&describe(kind, "unplanned (link down)", &unplanned));
    records.push(unplanned);
    Ok(records)
}

/// The seed's lab (client, pri, sec) as `adjust` changes it, with the pair's controllers and
/// ID servers running. Preemption off, so a move is never undone by pri taking the VIP back.
pub(super) fn pair_lab(
    s: &Settings,
    tag: &str,
    adjust: impl FnOnce(&mut LabSpec),
) -> Result<(Lab, Pair), SuiteError> {
    let bins = PairBins {
        controller: PathBuf::from(s.bin("controller")?),
        id_server: PathBuf::from(s.bin("id-server")?),
        http_ping: PathBuf::from(s.bin("http-ping")?),
    };
    let prefix = ovl_lab::unique_prefix(tag);
    let mut spec = LabSpec::seed(&prefix, PathBuf::from(s.bin("dataplane")?));
    spec.ready_timeout = Duration::from_secs(20);
    adjust(&mut spec);
    let mut lab = Lab::up(&spec)?;
    let opts = PairOptions {
        preempt: false,
        ..PairOptions::default()
    };
    let pair = Pair::start(&mut lab, bins, opts)?;
    Ok((lab, pair))
}

/// The one member owning the VIP; an error when none or both do.
pub(super) fn single_owner(lab: &Lab, pair: &Pair) -> Result<&'static str, SuiteError> {
    match pair.owners(lab)?.as_slice() {
        [one] => Ok(one),
        other => Err(step_err(
            "VIP owner",
            format!("expected exactly one, found {other:?}\n{}", pair.logs(lab)),
        )),
    }
}

/// Waits for `host` to own the VIP alone, then holds 300 ms so the next trial starts clean.
/// A move nobody asked for (a spurious failover) is counted, not fatal: the benchmark
/// reports it, and the next trial starts from whoever owns the VIP once it is settled.
fn settle(
    lab: &Lab,
    pair: &Pair,
    host: &str,
    trial: &str,
    unexpected: &mut u32,
) -> Result<(), SuiteError> {
    if !pair.wait_owner(lab, host, Duration::from_secs(3))? {
        return Err(step_err(
            trial,
            format!("VIP not on {host} alone\n{}", pair.logs(lab)),
        ));
    }
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        if pair.owners(lab)? != [host] {
            *unexpected += 1;
            tracing::warn!(trial, host, "the VIP moved on its own after settling");
            let deadline = Instant::now() + Duration::from_secs(3);
            while pair.owners(lab)?.len() != 1 {
                if Instant::now() > deadline {
                    return Err(step_err(
                        trial,
                        format!("no single VIP owner after a move\n{}", pair.logs(lab)),
                    ));
                }
                thread::sleep(Duration::from_millis(10));
            }
            thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn record(
    kind: PathKind,
    m: Measure,
    log: &str,
    expect: usize,
    unexpected: u32,
) -> Result<Record, SuiteError> {
    let summary = Summary::from_log(log)
        .ok_or_else(|| step_err(format!("http-ping summary ({kind} {m})"), log))?;
    let gaps: Vec<f64> = summary
        .trials(TRIAL_WINDOW)
        .iter()
        .map(|t| t.gap.as_secs_f64() * 1e3)
        .collect();
    let mut extra = BTreeMap::new();
    extra.insert("max".into(), gaps.iter().copied().fold(0.0, f64::max));
    extra.insert("trials".into(), gaps.len() as f64);
    extra.insert("failed_requests".into(), summary.failed as f64);
    extra.insert(
        "failed_per_trial".into(),
        summary.failed as f64 / expect.max(1) as f64,
    );
    extra.insert("requests".into(), summary.requests as f64);
    extra.insert("unexpected_moves".into(), f64::from(unexpected));
    let mut notes = Vec::new();
    if gaps.len() != expect {
        notes.push(format!(
            "the client saw {} switches for {expect} trials",
            gaps.len()
        ));
    }
    if unexpected > 0 {
        notes.push(format!(
            "the VIP moved {unexpected} time(s) on its own between trials (a spurious \
             failover; its gap is among the samples)"
        ));
    }
    let note = (!notes.is_empty()).then(|| format!("{kind} {m}: {}", notes.join("; ")));
    Ok(m.record(kind, gaps, extra, note))
}

fn describe(kind: PathKind, what: &str, r: &Record) -> String {
    format!(
        "{kind}: failover {what}: {} trials, median {:.2} ms, max {:.2} ms, {} failed requests",
        r.samples.len(),
        r.median,
        r.extra.get("max").copied().unwrap_or(f64::NAN),
        r.extra.get("failed_requests").copied().unwrap_or(0.0)
    )
}
