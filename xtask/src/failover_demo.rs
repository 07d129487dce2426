//! `cargo xtask demo`: the seed's demo, automated. The lab comes up (kernel VXLAN client, pri
//! and sec on our data plane with the failover controller and the HTTP server answering its
//! ID), the client polls http://192.168.0.200:3000 every 100 ms like the seed's script, and
//! the VIP moves: a planned switchover PRI -> SEC (the seed's vip-failover.sh, as one
//! command), then an unplanned failover back to PRI when sec's controller and data plane are
//! killed. The client's output is shown live; the lab is removed at the end.

use std::{
    fs,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ovl_lab::{Lab, LabSpec, Pair, PairBins, PairOptions, Signal};

use crate::{is_root, step};

const PREFIX: &str = "demo-";

pub fn run(root: &Path) -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and loads XDP programs: run it as root");
    }
    step("building dataplane, controller and bench (release)");
    crate::build_release_bins(root)?;
    let bin = |n: &str| root.join("target").join("release").join(n);
    step("bringing the lab up: fabric router, client (kernel VXLAN), pri and sec (our data plane)");
    let mut spec = LabSpec::seed(PREFIX, bin("dataplane"));
    spec.ready_timeout = Duration::from_secs(20);
    let mut lab = Lab::up_with(&spec, &|l| eprintln!("    {l}")).context("lab up")?;
    step(
        "starting the HTTP servers (PRI, SEC) and the failover controllers; VIP 192.168.0.200 on pri",
    );
    let mut pair = Pair::start(
        &mut lab,
        PairBins::in_dir(&root.join("target").join("release")),
        PairOptions {
            preempt: false,
            ..PairOptions::default()
        },
    )
    .context("start the pair")?;

    step("client: http-ping http://192.168.0.200:3000/ every 100 ms (the seed's script)");
    let ping = pair.start_http_ping(&mut lab, 100, 1, "http-ping")?;
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let stop = stop.clone();
        let log = ping.log.clone();
        thread::spawn(move || follow(&log, &stop))
    };
    thread::sleep(Duration::from_millis(1500));
    println!(
        "\n>>> planned switchover: `controller switchover` on pri (the seed's vip-failover.sh)\n"
    );
    let out = pair.switchover(&lab, "pri")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    thread::sleep(Duration::from_millis(1500));
    println!("\n>>> unplanned failover: kill -9 of sec's controller and data plane\n");
    pair.signal_controller(&mut lab, "sec", Signal::Kill);
    lab.kill_dataplane("sec", Signal::Kill)?;
    thread::sleep(Duration::from_millis(1500));
    println!();
    let summary = pair.finish_http_ping(&mut lab, &ping)?;
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    // The summary is the text after the per-request lines (and the JSON line is for tools).
    let text: Vec<&str> = summary
        .lines()
        .filter(|l| !l.starts_with('{'))
        .skip_while(|l| !l.to_ascii_lowercase().contains("summary") && !l.starts_with("requests"))
        .collect();
    if !text.is_empty() {
        println!("{}", text.join("\n"));
    }
    println!("\npri's controller:\n{}", pair.status(&lab, "pri")?);
    step("taking the lab down");
    drop(pair);
    drop(lab);
    println!("demo done: no namespaces or processes left");
    Ok(())
}

/// Prints new lines of `path` as they appear, until `stop`.
fn follow(path: &Path, stop: &AtomicBool) {
    let Ok(mut f) = fs::File::open(path) else {
        return;
    };
    let mut pos = 0u64;
    let mut partial = String::new();
    while !stop.load(Ordering::Relaxed) {
        if f.seek(SeekFrom::Start(pos)).is_err() {
            return;
        }
        let mut r = BufReader::new(&f);
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line) {
            if n == 0 {
                break;
            }
            pos += n as u64;
            if line.ends_with('\n') {
                partial.push_str(&line);
                let l = partial.trim_end();
                if !l.starts_with('{') {
                    println!("  client | {l}");
                }
                partial.clear();
            } else {
                partial.push_str(&line);
            }
            line.clear();
        }
        thread::sleep(Duration::from_millis(20));
    }
}
