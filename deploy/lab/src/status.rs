//! Looking at a lab from outside: the health check behind `ensure_kept` and the status report.

use std::{fmt::Write as _, fs, os::unix::net::UnixStream, thread};

use ovl_netlink::format_mac;

use crate::{
    LabError, cmd,
    lab::{belongs_to, interface_state, ping_once, state_dir},
    netns,
    spec::{LabSpec, Overlay, check_prefix},
};

/// One overlay ping: from host, to host, whether the two share a segment, whether it
/// answered.
#[derive(Clone, Debug)]
pub struct PingResult {
    pub from: String,
    pub to: String,
    pub expected: bool,
    pub answered: bool,
}

/// One echo from every overlay host to every other host's overlay address, in parallel.
pub fn ping_matrix(spec: &LabSpec) -> Vec<PingResult> {
    let hosts: Vec<_> = spec
        .hosts
        .iter()
        .filter(|h| h.overlay.addr().is_some() && netns::exists(&spec.ns(&h.name)))
        .collect();
    let mut jobs = Vec::new();
    for a in &hosts {
        for b in &hosts {
            if a.name != b.name
                && let Some(dst) = b.overlay.addr()
            {
                let expected = a.overlay.segment() == b.overlay.segment();
                jobs.push((a.name.clone(), b.name.clone(), dst.addr, expected));
            }
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    // A few at a time: each is a process, and a failing one waits its full second.
    for chunk in jobs.chunks(16) {
        thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(from, to, dst, expected)| {
                    let ns = spec.ns(from);
                    let h = s.spawn(move || ping_once(&ns, (*dst).into()).unwrap_or(false));
                    (from, to, *expected, h)
                })
                .collect();
            for (from, to, expected, h) in handles {
                out.push(PingResult {
                    from: from.clone(),
                    to: to.clone(),
                    expected,
                    answered: h.join().unwrap_or(false),
                });
            }
        });
    }
    out
}

fn recorded_spec(prefix: &str) -> Option<LabSpec> {
    let text = fs::read_to_string(state_dir(prefix).join("spec.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// What is wrong with the running lab of `spec` (empty: it is up, kept and healthy).
pub fn problems(spec: &LabSpec) -> Result<Vec<String>, LabError> {
    let mut p = Vec::new();
    let dir = state_dir(&spec.prefix);
    match recorded_spec(&spec.prefix) {
        None => p.push(format!("no recorded spec in {}", dir.display())),
        Some(r) if r != *spec => p.push("it was built from a different spec".into()),
        Some(_) => {}
    }
    let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
    if owner != "kept" {
        p.push("it is not a kept lab (a process owns it)".into());
    }
    let want = spec.namespaces();
    let have: Vec<String> = netns::list()?
        .into_iter()
        .filter(|n| belongs_to(n, &spec.prefix))
        .collect();
    for ns in &want {
        if !have.contains(ns) {
            p.push(format!("namespace {ns} is missing"));
        }
    }
    for ns in &have {
        if !want.contains(ns) {
            p.push(format!("unexpected namespace {ns}"));
        }
    }
    if !p.is_empty() {
        return Ok(p);
    }
    for h in &spec.hosts {
        let ns = spec.ns(&h.name);
        let (Some(dev), Some(addr)) = (h.overlay.device(), h.overlay.addr()) else {
            continue;
        };
        match interface_state(&ns, &dev) {
            None => p.push(format!("{ns}: no {dev}")),
            Some(s) if !s.up => p.push(format!("{ns}: {dev} is down")),
            Some(s) if !s.addrs.contains(&addr.addr) => {
                p.push(format!("{ns}: {dev} lacks {}", addr.addr))
            }
            Some(_) => {}
        }
        if matches!(h.overlay, Overlay::Ours { .. }) {
            let pid = fs::read_to_string(dir.join(format!("{}.pid", h.name)))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            match pid {
                Some(pid) if netns::pids(&ns)?.contains(&pid) => {}
                _ => p.push(format!("{ns}: the data plane is not running")),
            }
            let sock = dir.join(format!("{}.sock", h.name));
            if UnixStream::connect(&sock).is_err() {
                p.push(format!("{ns}: control socket {} refuses", sock.display()));
            }
        }
    }
    if !p.is_empty() {
        return Ok(p);
    }
    for r in ping_matrix(spec) {
        if r.expected && !r.answered {
            p.push(format!("{} cannot ping {} over the overlay", r.from, r.to));
        }
    }
    Ok(p)
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

/// The text of `Lab::status(prefix)`.
pub fn report(prefix: &str) -> Result<String, LabError> {
    check_prefix(prefix)?;
    let dir = state_dir(prefix);
    let namespaces: Vec<String> = netns::list()?
        .into_iter()
        .filter(|n| belongs_to(n, prefix))
        .collect();
    let mut o = String::new();
    if namespaces.is_empty() && !dir.exists() {
        let _ = writeln!(o, "lab {prefix}: down (no namespaces, no state directory)");
        return Ok(o);
    }
    let owner = fs::read_to_string(dir.join("owner")).unwrap_or_else(|_| "none".into());
    let owner = if owner == "kept" {
        "kept (runs until `down`)".to_string()
    } else {
        format!("process {}", owner.split_whitespace().next().unwrap_or("?"))
    };
    let _ = writeln!(
        o,
        "lab {prefix}: {} namespace(s), state in {}, owner: {owner}",
        namespaces.len(),
        dir.display()
    );
    let _ = writeln!(o, "\nnamespaces and processes:");
    for ns in &namespaces {
        let pids = netns::pids(ns)?;
        if pids.is_empty() {
            let _ = writeln!(o, "  {ns:<20} (no processes)");
        }
        for pid in pids {
            let _ = writeln!(o, "  {ns:<20} {pid:>7}  {}", cmdline(pid));
        }
    }
    let Some(spec) = recorded_spec(prefix) else {
        let _ = writeln!(o, "\nno recorded spec; addresses as the kernel has them:");
        for ns in &namespaces {
            let addrs = cmd::ip_ns(ns, &["-br", "addr"]).unwrap_or_else(|e| e.to_string());
            for line in addrs.lines() {
                let _ = writeln!(o, "  {ns:<20} {line}");
            }
        }
        return Ok(o);
    };
    let _ = writeln!(o, "\nhosts:");
    let _ = writeln!(
        o,
        "  {:<12} {:<13} {:<11} {:<10} {:<18} {:<17} state",
        "host", "vtep", "overlay", "device", "address", "mac"
    );
    for (i, h) in spec.hosts.iter().enumerate() {
        let ns = spec.ns(&h.name);
        let kind = match &h.overlay {
            Overlay::None => "none".to_string(),
            Overlay::Kernel { .. } => "kernel".to_string(),
            Overlay::Ours { encap, .. } => format!("ours/{}", encap.as_str()),
        };
        let dev = h.overlay.device().unwrap_or_else(|| "-".into());
        let (addr, state) = match h.overlay.device() {
            None => ("-".to_string(), String::new()),
            Some(d) if !netns::exists(&ns) => (d, "namespace missing".into()),
            Some(d) => match interface_state(&ns, &d) {
                None => ("-".into(), format!("no {d}")),
                Some(s) => (
                    s.prefixes.join(","),
                    if s.up { "UP".into() } else { "DOWN".into() },
                ),
            },
        };
        let mac = if h.overlay == Overlay::None {
            "-".to_string()
        } else {
            format_mac(&LabSpec::overlay_mac_at(i))
        };
        let _ = writeln!(
            o,
            "  {:<12} {:<13} {:<11} {:<10} {:<18} {:<17} {state}",
            h.name,
            spec.vtep_ip_at(i).to_string(),
            kind,
            dev,
            addr,
            mac
        );
    }
    let results = ping_matrix(&spec);
    if results.is_empty() {
        return Ok(o);
    }
    let names: Vec<&str> = spec
        .hosts
        .iter()
        .filter(|h| h.overlay.addr().is_some())
        .map(|h| h.name.as_str())
        .collect();
    let _ = writeln!(
        o,
        "\noverlay ping matrix (one echo, 1 s): ok / FAIL where the hosts share a segment, \
         - / LEAK where they do not"
    );
    let _ = write!(o, "  {:<12}", "from \\ to");
    for n in &names {
        let _ = write!(o, " {n:>8}");
    }
    let _ = writeln!(o);
    for from in &names {
        let _ = write!(o, "  {from:<12}");
        for to in &names {
            let cell = results
                .iter()
                .find(|r| r.from == *from && r.to == *to)
                .map(|r| match (r.expected, r.answered) {
                    (true, true) => "ok",
                    (true, false) => "FAIL",
                    (false, false) => "-",
                    (false, true) => "LEAK",
                })
                .unwrap_or(".");
            let _ = write!(o, " {cell:>8}");
        }
        let _ = writeln!(o);
    }
    Ok(o)
}
