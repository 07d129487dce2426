//! The smoke test of the kernel matrix (`cargo xtask test --kernels host,6.1,6.12`): the seed's
//! pair lab (kernel VXLAN client, pri and sec on our data plane with both controllers), once
//! per data-path mode. The client pings the VIP and sends it a few MB over TCP (compared by
//! SHA-256), the VIP moves by one planned switchover, and the transfer is repeated to the new
//! owner; `dataplane stats` of pri is printed. Short on the host (part of `cargo test
//! --workspace`); the VM legs run the same binary inside an emulated guest (TCG, about ten
//! times slower), hence the generous controller timers. Root required.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use ovl_lab::{DatapathMode, Lab, LabSpec, Pair, PairBins, PairOptions, VIP};
use sha2::{Digest, Sha256};

/// One lab at a time (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes per transfer.
const BYTES: usize = 4 << 20;
/// Bound of every wait (transfer, ownership): generous for an emulated guest.
const T: Duration = Duration::from_secs(30);

fn bin(name: &str) -> PathBuf {
    let p = ovl_lab::bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo xtask test` does)",
        p.display()
    );
    p
}

/// Detection 100 ms x 5 and a second for the data plane to answer the health check (50 ms by
/// default, which a data plane under TCG misses now and then: the controllers flapped through
/// fault): an emulated VM must not flap. No preemption, so the VIP stays where the switchover
/// put it.
fn options() -> PairOptions {
    PairOptions {
        preempt: false,
        interval_ms: 100,
        multiplier: 5,
        dataplane_timeout_ms: 1000,
        ..PairOptions::default()
    }
}

/// Sends [`BYTES`] pseudo-random bytes from the client to `VIP:port`, received by a listener
/// in `owner`'s namespace; panics unless both ends saw the same count and SHA-256.
fn transfer(lab: &Lab, owner: &str, port: u16) {
    let started = Instant::now();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (got, sent) = thread::scope(|s| {
        let server = s.spawn(move || {
            lab.in_ns(owner, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
                l.set_nonblocking(true).expect("nonblocking");
                let _ = ready_tx.send(());
                let deadline = Instant::now() + T;
                let mut c = loop {
                    match l.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            assert!(
                                Instant::now() < deadline,
                                "no connection on {owner} within {T:?}"
                            );
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                };
                c.set_nonblocking(false).expect("blocking");
                c.set_read_timeout(Some(T)).expect("timeout");
                let mut h = Sha256::new();
                let mut n = 0;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            h.update(&buf[..k]);
                            n += k;
                        }
                        Err(e) => panic!("{owner}: read after {n} bytes: {e}"),
                    }
                }
                (n, h.finalize().to_vec())
            })
            .expect("server namespace")
        });
        ready_rx.recv().expect("server listening");
        let sent = lab
            .in_ns("client", || {
                let addr = SocketAddr::from((VIP, port));
                let mut c = TcpStream::connect_timeout(&addr, T).expect("connect to the VIP");
                c.set_write_timeout(Some(T)).expect("timeout");
                let mut h = Sha256::new();
                let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(port);
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0;
                while n < BYTES {
                    for b in buf.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                    c.write_all(&buf)
                        .unwrap_or_else(|e| panic!("write after {n} bytes: {e}"));
                    h.update(&buf);
                    n += buf.len();
                }
                c.shutdown(Shutdown::Write).expect("shutdown");
                (n, h.finalize().to_vec())
            })
            .expect("client namespace");
        (server.join().expect("server thread"), sent)
    });
    assert_eq!(
        got.0, sent.0,
        "bytes received by {owner} (port {port}) = bytes sent"
    );
    assert_eq!(got.1, sent.1, "SHA-256 of what {owner} received");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} MB client -> VIP on {owner}: SHA-256 equal, {secs:.2} s ({:.0} Mbit/s)",
        BYTES >> 20,
        (BYTES * 8) as f64 / secs / 1e6
    );
}

fn smoke(tag: &str, mode: DatapathMode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        ovl_lab::is_root(),
        "the lab tests need root; CI runs them as root"
    );
    let started = Instant::now();
    let mut spec = LabSpec::seed(ovl_lab::unique_prefix(tag), bin("dataplane")).with_mode(mode);
    spec.ready_timeout = T;
    let mut lab = Lab::up(&spec).expect("lab up");
    let bins = PairBins {
        controller: bin("controller"),
        id_server: bin("id-server"),
        http_ping: bin("http-ping"),
    };
    let pair = Pair::start(&mut lab, bins, options()).expect("pair up (VIP on pri)");
    eprintln!(
        "{mode:?}: lab and pair up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert!(
        lab.ping("client", VIP).expect("ping"),
        "client pings the VIP on pri\n{}",
        pair.logs(&lab)
    );
    transfer(&lab, "pri", 5301);

    let out = pair.switchover(&lab, "pri").expect("switchover");
    assert!(
        out.status.success(),
        "controller switchover on pri: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        pair.wait_owner(&lab, "sec", T).expect("owners"),
        "the VIP moved pri -> sec\n{}",
        pair.logs(&lab)
    );
    assert!(
        lab.ping("client", VIP).expect("ping"),
        "client pings the VIP on sec\n{}",
        pair.logs(&lab)
    );
    transfer(&lab, "sec", 5302);

    let stats = lab
        .exec(
            "pri",
            &[
                bin("dataplane").to_str().expect("utf-8 path"),
                "stats",
                "--socket",
                lab.control_socket("pri").to_str().expect("utf-8 path"),
            ],
            T,
        )
        .expect("run dataplane stats");
    eprintln!(
        "--- dataplane stats of pri ({mode:?}) ---\n{}{}",
        String::from_utf8_lossy(&stats.stdout),
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(stats.status.success(), "dataplane stats of pri succeeds");
    eprintln!(
        "{mode:?}: smoke test done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn smoke_xdp_mode() {
    smoke("kx", DatapathMode::Xdp);
}

#[test]
fn smoke_afxdp_mode() {
    smoke("ka", DatapathMode::Afxdp);
}
