//! The demo as a test: the XDP programs attached in driver mode to real veths, real frames in
//! both directions through AF_XDP sockets (BPF_PROG_TEST_RUN covers the programs' logic; this
//! covers the live path: attach, redirect into XSKMAP, metadata in copy mode, AF_XDP TX).
//! Needs root; the demo's namespace is anonymous and dies with it.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[test]
fn demo_moves_real_frames_through_xdp_and_af_xdp() {
    common::require_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dataplane demo");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dataplane demo did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "attached ovl_underlay_ingress to ul0 in driver mode",
        "attached ovl_overlay_egress to ovl0-dp in driver mode",
        "received [decapsulated vxlan VNI 10 from 10.0.1.1:51000]",
        "rx_vxlan=1",
        "drop_ipv4_checksum=1 drop_vxlan_flags=1 drop_unknown_vni=1",
        "tx_vxlan=1",
        "received [to flood on VNI 10]",
        "ARP who-has 192.168.0.20 tell 192.168.0.10",
        "received [encapsulated vxlan VNI 10 to 10.0.1.1]",
        "10.0.1.10:",
        "> 10.0.1.1:4789 UDP VXLAN VNI 10 [",
        "192.168.0.10 > 192.168.0.20 ICMP",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
