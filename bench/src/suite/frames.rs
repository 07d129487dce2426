//! The frame test: 64-byte frames from a generator on the router straight into the receiving
//! host's underlay, with the receiver's work steered to one core, and what its numbers mean.

use std::{thread, time::Duration};

use ovl_lab::{DatapathMode, FABRIC, Lab};

use super::{
    FramesVia, Progress, Route, Settings, SuiteError, lab,
    measure::{Rep, Servers, dp_stats, exec, fast_share, read_file_in},
    records::{Measure, Samples},
    step_err,
    tuning::Steering,
};
use crate::{probe::cpu::SystemCpu, traffic::GenReport};

/// What one run of the generator gave.
struct FrameResult {
    /// Frames the generator sent.
    sent: u64,
    offered_mpps: f64,
    delivered_mpps: f64,
    /// Busy fraction (0..1) of the sink's and of the generator's CPU over the run.
    sink_busy: f64,
    gen_busy: f64,
    /// Fraction (0..1) of the sink's and of the generator's CPU time spent in softirqs: where
    /// the receive work ran that is not in a thread of its own.
    sink_softirq: f64,
    gen_softirq: f64,
    /// Our receiver's decapsulated bytes: (fast path, workers); `None` on the kernel's paths.
    carried: Option<(u64, u64)>,
    /// Frames our receiver's program passed to the kernel during the test; `None` on the
    /// kernel's paths.
    passed: Option<u64>,
    /// Whether the frames went as XDP frames (else as skbs).
    live: bool,
}

/// The frame test of one repetition, its samples and notes.
pub(super) fn measure(
    at: &Rep,
    samples: &mut Samples,
    progress: &mut Progress,
) -> Result<(), SuiteError> {
    let (r, rep) = (at.r, at.n);
    let p = r.path;
    let f = frames(at.lab, at.servers, at.s, r)?;
    samples.push(p, Measure::Frames64, f.delivered_mpps);
    samples.push_extra(p, Measure::Frames64, "offered", f.offered_mpps);
    samples.push_extra(p, Measure::Frames64, "sink_cpu_busy", f.sink_busy);
    samples.push_extra(p, Measure::Frames64, "gen_cpu_busy", f.gen_busy);
    samples.push_extra(p, Measure::Frames64, "sink_cpu_softirq", f.sink_softirq);
    samples.push_extra(p, Measure::Frames64, "gen_cpu_softirq", f.gen_softirq);
    if let Some((fast, workers)) = f.carried
        && let Some(share) = fast_share(r, fast, workers, rep, samples, Measure::Frames64)
    {
        samples.push_extra(p, Measure::Frames64, "fast_path_share", share);
    }
    if f.sink_busy > 0.05 {
        samples.push_extra(
            p,
            Measure::Frames64,
            "per_core",
            f.delivered_mpps / f.sink_busy,
        );
    }
    samples.push_extra(
        p,
        Measure::Frames64,
        "xdp_frames",
        if f.live { 1.0 } else { 0.0 },
    );
    if at.s.frames_via == FramesVia::XdpLive && !f.live {
        samples.note(
            p,
            Measure::Frames64,
            "generator",
            "sent as skbs through an AF_XDP socket, not as XDP frames like the other paths: \
             live XDP frames return to the generator's page pool with what the receiver wrote \
             into them, and in afxdp mode our program writes its metadata over every frame's \
             outer headers; per core here includes the veth's copy of each skb"
                .to_string(),
        );
    }
    if let Some(passed) = f.passed
        && passed as f64 > ALTERED_SHARE * f.sent as f64
    {
        samples.note(
            p,
            Measure::Frames64,
            "altered",
            format!(
                "{passed} of the {} frames sent in rep {rep} reached the receiver's program as \
                 not overlay traffic for it (its pass counters): they arrived altered, and the \
                 rate is not this path's",
                f.sent
            ),
        );
    }
    if f.gen_softirq > GEN_SOFTIRQ_LEAK {
        // The generator's side of a veth runs no softirq of its own worth counting (its
        // transmit runs in the generator's system calls): receive work that ran there escaped
        // the steering, and per core counts only the sink's share of it.
        samples.note(
            p,
            Measure::Frames64,
            "steering",
            format!(
                "{:.0}% of the generator CPU's time went to softirqs in rep {rep}: part of the \
                 receiver's work ran outside the sink core, so per core flatters this path",
                f.gen_softirq * 100.0
            ),
        );
    }
    if f.sink_busy < 0.9 && f.delivered_mpps >= 0.9 * f.offered_mpps {
        // All of the receiver's work is steered to the sink core (see `frames`): below
        // saturation, with (nearly) everything delivered, the sending side was the limit, and
        // "per core" extrapolates. (With frames dropped at the receiver, an idle share of the
        // sink core is the generator's pauses between its calls.)
        samples.note(
            p,
            Measure::Frames64,
            "saturation",
            format!(
                "{p}: the sink core was {:.0}% busy in rep {rep}: the sending side (the \
                 generator and the veth's transmit) was the limit, and per core extrapolates",
                f.sink_busy * 100.0
            ),
        );
    }
    progress.step(&format!(
        "{}: 64 B frames {:.3} Mframes/s delivered of {:.3} offered; sink CPU {:.0}% busy \
         ({:.0}% softirq), generator CPU {:.0}% ({:.0}% softirq)",
        at.tag(),
        f.delivered_mpps,
        f.offered_mpps,
        f.sink_busy * 100.0,
        f.sink_softirq * 100.0,
        f.gen_busy * 100.0,
        f.gen_softirq * 100.0
    ));
    Ok(())
}

/// Above this share of the frames sent passed to the kernel by our receiver's program, the
/// frames arrived altered (measured: 0.03 %, the first frames of a new source, which the
/// worker learns from).
const ALTERED_SHARE: f64 = 0.01;

/// Above this share of the generator CPU's time in softirqs, the frame test's steering leaked
/// (measured: 0 % on every path when it works).
const GEN_SOFTIRQ_LEAK: f64 = 0.05;

fn rx_packets(lab: &Lab, host: &str, dev: &str) -> Result<u64, SuiteError> {
    let path = format!("/sys/class/net/{dev}/statistics/rx_packets");
    read_file_in(lab, host, &path)?
        .parse()
        .map_err(|e| step_err(format!("rx_packets of {dev} on {host}"), e))
}

/// 64-byte frames from the router straight into the receiving host's underlay veth,
/// addressed as the path's traffic from its sending host; delivered = what the path's
/// interface on the receiver got.
fn frames(
    lab: &Lab,
    servers: &Servers,
    s: &Settings,
    r: &Route,
) -> Result<FrameResult, SuiteError> {
    let port = format!("to-{}", r.dst);
    let fab_mac = read_file_in(lab, FABRIC, &format!("/sys/class/net/{port}/address"))?;
    let dst_mac = read_file_in(lab, r.dst, "/sys/class/net/eth0/address")?;
    let src_ip = lab
        .underlay_ip(r.src)
        .ok_or_else(|| step_err("underlay address", r.src))?
        .to_string();
    let dst_ip = lab
        .underlay_ip(r.dst)
        .ok_or_else(|| step_err("underlay address", r.dst))?
        .to_string();
    let (encap, vni, dport) = match r.encap() {
        None => ("none", 0, 9),
        Some((ovl_lab::Encap::Vxlan, vni, port)) => ("vxlan", vni, port),
        Some((ovl_lab::Encap::Geneve, vni, port)) => ("geneve", vni, port),
    };
    let inner_src = lab::overlay_addr(r.path, 1).to_string();
    let inner_dst = lab::overlay_addr(r.path, 2).to_string();
    let (vni_s, dport_s, dur, cpu) = (
        vni.to_string(),
        dport.to_string(),
        s.frames_ms.to_string(),
        s.gen_cpu.to_string(),
    );
    let mut args = vec![
        servers.xdp_gen.as_str(),
        "--iface",
        &port,
        "--src-mac",
        &fab_mac,
        "--dst-mac",
        &dst_mac,
        "--src-ip",
        &src_ip,
        "--dst-ip",
        &dst_ip,
        "--dst-port",
        &dport_s,
        "--src-ports",
        "1024-1087",
        "--encap",
        encap,
        "--duration-ms",
        &dur,
        "--cpu",
        &cpu,
        "--json",
    ];
    if encap != "none" {
        // The inner frames are for another MAC on the segment: the receiving kernel counts
        // them on the overlay interface and drops them at once, the same work on every path.
        args.extend([
            "--vni",
            &vni_s,
            "--inner-src-mac",
            "02:be:00:00:00:01",
            "--inner-dst-mac",
            "02:be:00:00:00:02",
            "--inner-src-ip",
            &inner_src,
            "--inner-dst-ip",
            &inner_dst,
            "--inner-dst-port",
            "9",
        ]);
    }
    // Live frames' pages come back to the generator's page pool once the receiver is done
    // with them, with whatever the receiver wrote into them, and are sent again as they are.
    // In afxdp mode our program writes its metadata over every frame's outer headers, so that
    // path would be sent corrupted frames: it gets skbs (and a note says so).
    let live = s.frames_via == FramesVia::XdpLive && r.mode() != Some(DatapathMode::Afxdp);
    if live {
        args.extend(["--mode", "xdp-live"]);
    }
    let sink = r.sink_dev(lab.spec());
    let dp_before = if r.path.is_ours() {
        Some(dp_stats(lab, servers, r, r.dst)?)
    } else {
        None
    };
    // All of the receiver's work goes to the sink CPU:
    // - frames as skbs (`FramesVia::Skb`), the kernel's paths: no XDP on the receiver's eth0,
    //   so the veth hands each frame to the backlog, and RPS moves all of the receive (IP,
    //   UDP, VXLAN, the vxlan device's GRO cell, the inner stack) to the sink CPU;
    // - XDP frames (`FramesVia::XdpLive`), the kernel's paths: they arrive in eth0's NAPI,
    //   which needs GRO on there (as a NIC has it), and that NAPI runs threaded, its thread
    //   pinned to the sink CPU, the whole stack after it in that thread (no RPS: it would only
    //   queue the frames once more on the same CPU);
    // - ours, either way: the XDP program runs in eth0's NAPI poll, which a veth runs on the
    //   sender's CPU; in a kernel thread pinned to the sink CPU instead. In xdp mode the
    //   program redirects into the overlay veth, whose NAPI that thread schedules, so the
    //   kernel side runs as a softirq on the same CPU; in afxdp mode the worker (pinned to
    //   the sink CPU by the settings) copies each frame there, and the overlay veth's receive
    //   runs in the worker's context.
    // Undone at the end, or by the guard on an early return.
    let mut steering = Steering::new(lab, r.dst);
    if live && !r.path.is_ours() {
        steering.gro_on()?;
    }
    if !live {
        steering.rps(1 << s.sink_cpu)?;
    }
    if live || r.path.is_ours() {
        steering.napi_thread(s.sink_cpu)?;
    }
    let before = rx_packets(lab, r.dst, &sink)?;
    let cpu0 = SystemCpu::read_per_cpu().map_err(|e| step_err("read /proc/stat", e))?;
    let out = exec(
        lab,
        FABRIC,
        &args,
        Duration::from_millis(s.frames_ms) + Duration::from_secs(20),
    );
    let cpu1 = SystemCpu::read_per_cpu().map_err(|e| step_err("read /proc/stat", e))?;
    // Frames still in flight land within a few milliseconds.
    thread::sleep(Duration::from_millis(100));
    let after = rx_packets(lab, r.dst, &sink)?;
    steering.finish()?;
    let (carried, passed) = match dp_before {
        Some(b) => {
            let a = dp_stats(lab, servers, r, r.dst)?;
            (
                Some((
                    a.rx.fast.saturating_sub(b.rx.fast),
                    a.rx.workers.saturating_sub(b.rx.workers),
                )),
                Some(a.passed.saturating_sub(b.passed)),
            )
        }
        None => (None, None),
    };
    let gen_report: GenReport = serde_json::from_str(out?.trim())
        .map_err(|e| step_err(format!("xdp-gen JSON ({})", r.path), e))?;
    // (busy, softirq) fractions of one CPU over the run.
    let share = |cpu: u32| {
        let (a, b) = (cpu0.get(cpu as usize), cpu1.get(cpu as usize));
        match (a, b) {
            (Some(a), Some(b)) => {
                let d = b.busy_seconds_since(a);
                if d.total_s > 0.0 {
                    (d.busy_s / d.total_s, d.softirq_s / d.total_s)
                } else {
                    (0.0, 0.0)
                }
            }
            _ => (0.0, 0.0),
        }
    };
    let secs = gen_report.seconds.max(1e-3);
    let (sink_busy, sink_softirq) = share(s.sink_cpu);
    let (gen_busy, gen_softirq) = share(s.gen_cpu);
    Ok(FrameResult {
        sent: gen_report.sent,
        offered_mpps: gen_report.sent as f64 / secs / 1e6,
        delivered_mpps: after.saturating_sub(before) as f64 / secs / 1e6,
        sink_busy,
        gen_busy,
        sink_softirq,
        gen_softirq,
        carried,
        passed,
        live,
    })
}
