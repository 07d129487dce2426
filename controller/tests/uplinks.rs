//! The bonding study's test on the full pair lab: pri and sec each have two uplinks (`eth0`
//! preferred, `eth1` backup with the same MAC and address, as a VM's virtual function and
//! synthetic NIC), the kernel VXLAN client polls the VIP with `http-ping` every millisecond,
//! pings it every millisecond with sequence numbers and streams a paced TCP transfer to it,
//! while the active member's primary uplink (a) loses carrier and regains it, (b) is deleted
//! and re-created, (c) thrashes at random 1-3 s intervals. The VIP must never move, the
//! transfer must arrive intact, and every event's overlay gap must stay under `GAP_BOUND`; the
//! same, shorter, in "afxdp" mode. And the outage the uplink work started from: a single
//! uplink deleted and re-created must move the VIP away and back only when pri forwards.
//! Root required.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use bench::workload::{Summary, icmp_log};
use ovl_lab::{DatapathMode, Lab, LabSpec, Pair, PairBins, PairOptions, VIP};
use sha2::{Digest, Sha256};

/// The longest overlay gap (between two answered 1 ms pings) any single uplink event may
/// cause. Switching itself takes microseconds (see the data plane's `uplinks` stats); the
/// bound leaves room for a 2-core VM's scheduling of the pinger and the workers.
const GAP_BOUND: Duration = Duration::from_millis(100);

static SERIAL: Mutex<()> = Mutex::new(());

fn bin(name: &str) -> PathBuf {
    let p = ovl_lab::bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo xtask test` does)",
        p.display()
    );
    p
}

fn setup(tag: &str, uplinks: u32, mode: DatapathMode, opts: PairOptions) -> (Lab, Pair) {
    assert!(
        ovl_lab::is_root(),
        "the lab tests need root; CI runs them as root"
    );
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix(tag), bin("dataplane"));
    spec.ready_timeout = Duration::from_secs(20);
    spec.uplinks = uplinks;
    spec.mode = Some(mode);
    let mut lab = Lab::up(&spec).expect("lab up");
    let bins = PairBins {
        controller: bin("controller"),
        id_server: bin("id-server"),
        http_ping: bin("http-ping"),
    };
    let pair = Pair::start(&mut lab, bins, opts).expect("pair up");
    (lab, pair)
}

/// Preemption off: even a member that wrongly called itself dead could not take the VIP back
/// by priority and hide the move.
fn no_preempt() -> PairOptions {
    PairOptions {
        preempt: false,
        ..PairOptions::default()
    }
}

/// A paced TCP stream from `from` to the VIP on `to` until `stop`: bytes sent and their
/// SHA-256, and what the receiver counted and hashed.
struct Transfer {
    sent: (usize, Vec<u8>),
    got: (usize, Vec<u8>),
    /// The first error of either end.
    error: Option<String>,
}

fn transfer(lab: &Lab, stop: &AtomicBool) -> Transfer {
    let server_ns = lab.ns("pri");
    let client_ns = lab.ns("client");
    let port = 5201;
    thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = s.spawn(move || {
            ovl_lab::in_netns(&server_ns, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
                let _ = ready_tx.send(());
                let (mut c, _) = l.accept().expect("accept");
                c.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let mut h = Sha256::new();
                let mut n = 0;
                let mut buf = vec![0u8; 64 * 1024];
                let mut error = None;
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            h.update(&buf[..k]);
                            n += k;
                        }
                        Err(e) => {
                            error = Some(format!(
                                "read after {n} bytes at {:.3}: {e}",
                                icmp_log::now()
                            ));
                            break;
                        }
                    }
                }
                (n, h.finalize().to_vec(), error)
            })
            .expect("server namespace")
        });
        ready_rx.recv().expect("server listening");
        let sent = ovl_lab::in_netns(&client_ns, || {
            let addr = SocketAddr::from((VIP, port));
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            c.set_write_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut h = Sha256::new();
            let mut n = 0;
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut buf = vec![0u8; 16 * 1024];
            let mut error = None;
            // Tens of Mbit/s: long-lived, not saturating the 2 CPUs the timing needs.
            while !stop.load(Ordering::Relaxed) {
                for b in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                if let Err(e) = c.write_all(&buf) {
                    error = Some(format!(
                        "write after {n} bytes at {:.3}: {e}",
                        icmp_log::now()
                    ));
                    break;
                }
                h.update(&buf);
                n += buf.len();
                thread::sleep(Duration::from_millis(5));
            }
            let _ = c.shutdown(Shutdown::Write);
            (n, h.finalize().to_vec(), error)
        })
        .expect("client namespace");
        let got = server.join().expect("server thread");
        Transfer {
            sent: (sent.0, sent.1),
            got: (got.0, got.1),
            error: got.2.or(sent.2),
        }
    })
}

/// xorshift in [lo, hi) ms.
fn random_ms(state: &mut u64, lo: u64, hi: u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(lo + *state % (hi - lo))
}

fn count_programs() -> usize {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("name ovl_"))
        .count()
}

#[test]
fn the_vip_stays_put_while_the_primary_uplink_fails_is_replaced_and_thrashes() {
    trial("ul", DatapathMode::Xdp, 20, 10, Duration::from_secs(60));
}

/// The same, shorter, with every frame through the workers: their sending socket follows
/// the active uplink too.
#[test]
fn afxdp_mode_follows_the_uplinks_too() {
    trial("ua", DatapathMode::Afxdp, 5, 3, Duration::ZERO);
}

fn trial(tag: &str, mode: DatapathMode, carrier: usize, device: usize, thrash: Duration) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let programs_before = count_programs();
    let (mut lab, pair) = setup(tag, 2, mode, no_preempt());
    let http = pair
        .start_http_ping(&mut lab, 1, 64, "http-ping")
        .expect("http-ping");
    let vip = VIP.to_string();
    let ping = lab
        .spawn(
            "client",
            &["ping", "-D", "-n", "-i", "0.001", "-W", "1", &vip],
            "ping",
        )
        .expect("ping");
    thread::sleep(Duration::from_millis(500));

    let stop = AtomicBool::new(false);
    let moved = AtomicBool::new(false);
    let mut events: Vec<(&str, f64)> = Vec::new();
    let t = thread::scope(|s| {
        let tr = s.spawn(|| transfer(&lab, &stop));
        let watch = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if pair.owners(&lab).expect("owners") != ["pri"] {
                    moved.store(true, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        // (a) Carrier lost and regained.
        for _ in 0..carrier {
            events.push(("carrier lost", icmp_log::now()));
            lab.set_uplink_carrier("pri", 0, false)
                .expect("carrier off");
            thread::sleep(Duration::from_millis(400));
            events.push(("carrier back", icmp_log::now()));
            lab.set_uplink_carrier("pri", 0, true).expect("carrier on");
            thread::sleep(Duration::from_millis(400));
        }
        // (b) The device deleted and re-created (new index).
        for _ in 0..device {
            events.push(("device removed", icmp_log::now()));
            lab.remove_uplink("pri", 0).expect("remove eth0");
            thread::sleep(Duration::from_millis(500));
            events.push(("device returned", icmp_log::now()));
            lab.add_uplink("pri", 0).expect("re-create eth0");
            thread::sleep(Duration::from_millis(700));
        }
        // (c) Thrashing: carrier toggles every 1-3 s (random).
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let end = Instant::now() + thrash;
        let mut up = true;
        while Instant::now() < end {
            up = !up;
            events.push((
                if up { "thrash up" } else { "thrash down" },
                icmp_log::now(),
            ));
            lab.set_uplink_carrier("pri", 0, up).expect("thrash");
            thread::sleep(random_ms(&mut rng, 1000, 3000));
        }
        if !up {
            lab.set_uplink_carrier("pri", 0, true).expect("carrier on");
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        watch.join().expect("watcher");
        tr.join().expect("transfer")
    });

    lab.signal(&ping, ovl_lab::Signal::Int);
    let _ = lab.wait(&ping, Duration::from_secs(5));
    let ping_log = std::fs::read_to_string(&ping.log).expect("ping log");
    let summary = Summary::from_log(&pair.finish_http_ping(&mut lab, &http).expect("http-ping"))
        .expect("http-ping summary");
    let stats = lab.exec(
        "pri",
        &[
            bin("dataplane").to_str().expect("utf-8"),
            "stats",
            "--socket",
            lab.control_socket("pri").to_str().expect("utf-8"),
        ],
        Duration::from_secs(5),
    );
    let stats = stats
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();

    let r = icmp_log::replies(&ping_log);
    let times: Vec<f64> = events.iter().map(|e| e.1).collect();
    // Shorter than the time between two events, so each gap is charged to one event.
    let g: Vec<(Duration, u32)> = icmp_log::event_gaps(&r, &times, Duration::from_millis(350))
        .into_iter()
        .map(|e| (e.gap, e.missing))
        .collect();
    let mut report = String::new();
    for kind in [
        "carrier lost",
        "carrier back",
        "device removed",
        "device returned",
        "thrash down",
        "thrash up",
    ] {
        let mut ms: Vec<f64> = events
            .iter()
            .zip(&g)
            .filter(|(e, _)| e.0 == kind)
            .map(|(_, (d, _))| d.as_secs_f64() * 1e3)
            .collect();
        let missing: u32 = events
            .iter()
            .zip(&g)
            .filter(|(e, _)| e.0 == kind)
            .map(|(_, (_, m))| *m)
            .sum();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            continue;
        }
        report.push_str(&format!(
            "{kind}: {} events, overlay gap median {:.1} ms, max {:.1} ms, {:.1} pings missing per event\n",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            f64::from(missing) / ms.len() as f64
        ));
    }
    eprintln!(
        "{report}http-ping: {} requests, {} failed, answered by {:?}\n{stats}",
        summary.requests, summary.failed, summary.per_id
    );

    assert!(
        !moved.load(Ordering::Relaxed),
        "the VIP never left pri\n{}",
        pair.logs(&lab)
    );
    assert_eq!(
        summary.per_id.keys().collect::<Vec<_>>(),
        ["PRI"],
        "only pri ever answered: {summary}"
    );
    assert!(
        t.error.is_none(),
        "transfer: {:?}\nevents: {events:?}\n{report}{}\n--- pri data plane ---\n{}",
        t.error,
        pair.logs(&lab),
        lab.dataplane_log("pri").unwrap_or_default()
    );
    assert_eq!(t.got.0, t.sent.0, "bytes of the transfer");
    assert_eq!(t.got.1, t.sent.1, "SHA-256 of the transfer");
    assert!(t.sent.0 > 1 << 20, "the transfer ran: {} bytes", t.sent.0);
    for ((kind, _), (gap, _)) in events.iter().zip(&g) {
        assert!(
            *gap < GAP_BOUND,
            "{kind}: overlay gap {gap:?} over {GAP_BOUND:?}\n{report}{}",
            lab.dataplane_log("pri").unwrap_or_default()
        );
    }
    // The re-created device carries exactly one program of ours.
    let out = lab
        .exec(
            "pri",
            &["ip", "-d", "link", "show", "eth0"],
            Duration::from_secs(5),
        )
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("prog/xdp").count(), 1, "{text}");
    let prefix = lab.prefix().to_string();
    drop(pair);
    drop(lab);
    assert_eq!(
        count_programs(),
        programs_before,
        "every XDP/TC program of the lab is gone with it"
    );
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// The outage this issue started from: one uplink, deleted and re-created as a virtual
/// function is. The VIP must go to sec while pri cannot forward, and come back (preemption)
/// only once pri's data plane has re-attached and forwards again.
#[test]
fn a_replaced_single_uplink_moves_the_vip_away_and_back_only_when_pri_forwards() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = PairOptions {
        hold_down_ms: 1000,
        ..PairOptions::default()
    };
    let (mut lab, pair) = setup("us", 1, DatapathMode::Xdp, opts);
    lab.remove_uplink("pri", 0).expect("remove eth0");
    assert!(
        pair.wait_owner(&lab, "sec", Duration::from_secs(2))
            .expect("owners"),
        "sec took over while pri had no uplink\n{}",
        pair.logs(&lab)
    );
    lab.add_uplink("pri", 0).expect("re-create eth0");
    assert!(
        pair.wait_owner(&lab, "pri", Duration::from_secs(8))
            .expect("owners"),
        "pri took the VIP back\n{}",
        pair.logs(&lab)
    );
    // And it is reachable there: every request of a second of polling answered by pri.
    thread::sleep(Duration::from_millis(300));
    let http = pair
        .start_http_ping(&mut lab, 2, 16, "http-ping")
        .expect("http-ping");
    thread::sleep(Duration::from_secs(1));
    let summary = Summary::from_log(&pair.finish_http_ping(&mut lab, &http).expect("http-ping"))
        .expect("http-ping summary");
    assert!(summary.requests > 100, "{summary}");
    assert_eq!(summary.failed, 0, "{summary}\n{}", pair.logs(&lab));
    assert_eq!(
        summary.per_id.keys().collect::<Vec<_>>(),
        ["PRI"],
        "{summary}"
    );
}
