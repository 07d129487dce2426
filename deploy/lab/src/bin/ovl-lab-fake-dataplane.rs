//! A stand-in for `dataplane run --config FILE` that does exactly what the lab checks for
//! readiness and nothing more: it creates `ovl0` (a veth with peer `ovl0-dp`) with the
//! configured MAC and address, and accepts connections on the control socket. It carries no
//! traffic. The lab's tests use it to exercise the [`ovl_lab::Overlay::Ours`] path (config,
//! start, readiness, kill, restart, logs) independently of the real data plane.

use std::{
    io::Write,
    os::unix::net::UnixListener,
    process::{Command, ExitCode},
    time::Duration,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake dataplane: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    ovl_lab::run_ok(Command::new("ip").args(args), Duration::from_secs(10))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn str_at<'a>(t: &'a toml::Table, path: &[&str]) -> Result<&'a str, String> {
    let mut v: Option<&toml::Value> = None;
    let mut table = Some(t);
    for key in path {
        v = table.and_then(|t| t.get(*key));
        table = v.and_then(|v| v.as_table());
    }
    v.and_then(|v| v.as_str())
        .ok_or_else(|| format!("config has no string {}", path.join(".")))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, flag, file] = args.as_slice() else {
        return Err("usage: ovl-lab-fake-dataplane run --config FILE".into());
    };
    if cmd != "run" || flag != "--config" {
        return Err("usage: ovl-lab-fake-dataplane run --config FILE".into());
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("read {file}: {e}"))?;
    let cfg: toml::Table = text.parse().map_err(|e| format!("parse {file}: {e}"))?;
    let vni = cfg
        .get("vni")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_table())
        .ok_or("config has no [[vni]]")?;
    let dev = str_at(vni, &["interface"])?;
    let addr = str_at(vni, &["address"])?;
    let mac = str_at(vni, &["mac"])?;
    let sock = str_at(&cfg, &["stats", "control_socket"])?;
    println!(
        "fake dataplane: local_ip {} interface {dev} address {addr}",
        str_at(&cfg, &["underlay", "local_ip"])?
    );
    let peer = format!("{dev}-dp");
    ip(&[
        "link", "add", dev, "address", mac, "type", "veth", "peer", "name", &peer,
    ])?;
    ip(&["addr", "add", addr, "dev", dev])?;
    ip(&["link", "set", &peer, "up"])?;
    ip(&["link", "set", dev, "up"])?;
    let listener = UnixListener::bind(sock).map_err(|e| format!("bind {sock}: {e}"))?;
    println!("fake dataplane: ready");
    for conn in listener.incoming() {
        // Each connection gets one line and is closed; enough to prove we answer.
        match conn {
            Ok(mut c) => {
                let _ = c.write_all(b"fake dataplane\n");
            }
            Err(e) => eprintln!("fake dataplane: accept: {e}"),
        }
    }
    Ok(())
}
