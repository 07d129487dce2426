//! Uplink trials (ours only: this kernel has no bonding driver, so the kernel VXLAN driver has
//! nothing to fail over to): pri and sec with two uplinks each, the pair running, the client
//! pinging the VIP every millisecond with sequence numbers, while pri's primary uplink loses
//! carrier and regains it, then is deleted and re-created. Each event's overlay gap (the
//! longest silence between answers around it) and the echoes it lost are recorded.

use std::{collections::BTreeMap, thread, time::Duration};

use ovl_lab::{Signal, VIP};

use super::{Settings, SuiteError, records::Measure, step_err};
use crate::{
    report::{PathKind, Record},
    workload::icmp_log,
};

/// How long after an event its gap is looked for.
const WINDOW: Duration = Duration::from_millis(800);

pub fn run(s: &Settings, progress: &mut dyn FnMut(&str)) -> Result<Vec<Record>, SuiteError> {
    let (mut lab, pair) = super::failover::pair_lab(s, "bu", |spec| spec.uplinks = 2)?;
    let vip = VIP.to_string();
    let ping = lab.spawn(
        "client",
        &["ping", "-D", "-n", "-i", "0.001", "-W", "1", &vip],
        "uplink-ping",
    )?;
    thread::sleep(Duration::from_millis(300));
    let mut carrier = Vec::new();
    let mut device = Vec::new();
    for _ in 0..s.uplink_events {
        carrier.push(icmp_log::now());
        lab.set_uplink_carrier("pri", 0, false)?;
        thread::sleep(Duration::from_millis(WINDOW.as_millis() as u64));
        carrier.push(icmp_log::now());
        lab.set_uplink_carrier("pri", 0, true)?;
        thread::sleep(WINDOW);
    }
    for _ in 0..s.uplink_events {
        device.push(icmp_log::now());
        lab.remove_uplink("pri", 0)?;
        thread::sleep(WINDOW);
        device.push(icmp_log::now());
        lab.add_uplink("pri", 0)?;
        thread::sleep(WINDOW);
    }
    lab.signal(&ping, Signal::Int);
    let _ = lab.wait(&ping, Duration::from_secs(5));
    let log =
        std::fs::read_to_string(&ping.log).map_err(|e| step_err("read the uplink ping log", e))?;
    let owners = pair.owners(&lab)?;
    let replies = icmp_log::replies(&log);
    let mut records = Vec::new();
    for (meas, events, what) in [
        (Measure::UplinkCarrier, &carrier, "carrier lost/back"),
        (Measure::UplinkDevice, &device, "device removed/returned"),
    ] {
        let gaps = icmp_log::event_gaps(&replies, events, WINDOW);
        let ms: Vec<f64> = gaps.iter().map(|g| g.gap.as_secs_f64() * 1e3).collect();
        let missing: u32 = gaps.iter().map(|g| g.missing).sum();
        let mut extra = BTreeMap::new();
        extra.insert("max".into(), ms.iter().copied().fold(0.0, f64::max));
        extra.insert("events".into(), ms.len() as f64);
        extra.insert(
            "missing_per_event".into(),
            f64::from(missing) / ms.len().max(1) as f64,
        );
        let note = (owners != ["pri"]).then(|| {
            format!("the VIP moved off pri during the uplink trials (owners now {owners:?})")
        });
        let r = meas.record(PathKind::OursVxlan, ms, extra, note);
        progress(&format!(
            "{}: uplink {what}: {} events, gap median {:.2} ms, max {:.2} ms, {:.2} echoes lost per event",
            PathKind::OursVxlan,
            r.samples.len(),
            r.median,
            r.extra.get("max").copied().unwrap_or(f64::NAN),
            r.extra.get("missing_per_event").copied().unwrap_or(0.0)
        ));
        records.push(r);
    }
    drop(pair);
    drop(lab);
    Ok(records)
}
