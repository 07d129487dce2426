//! deploy/: the example configs parse and agree with each other, the systemd units pass
//! `systemd-analyze verify`, and the cloud-init file renders configs that parse.

// Test helpers outside #[test] functions: clippy.toml's allow-unwrap-in-tests does not
// reach them, and a panic is the right failure here.
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use controller::config::Config;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A fresh directory under the target's temp dir, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ctl-deploy-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn example_configs_parse_and_mirror_each_other() {
    let ex = deploy().join("examples");
    let pri = Config::load(&ex.join("controller-pri.toml")).unwrap();
    let sec = Config::load(&ex.join("controller-sec.toml")).unwrap();
    assert_eq!(
        (pri.node.name.as_str(), sec.node.name.as_str()),
        ("pri", "sec")
    );
    assert!(pri.node.priority > sec.node.priority);
    assert_eq!(pri.heartbeat.address.to_string(), "10.0.2.2");
    assert_eq!(sec.heartbeat.address.to_string(), "10.0.3.2");
    assert_eq!(pri.peer_addr().ip(), sec.heartbeat.address);
    assert_eq!(sec.peer_addr().ip(), pri.heartbeat.address);
    assert_eq!(pri.peer_addr().port(), sec.heartbeat.port);
    assert_eq!(sec.peer_addr().port(), pri.heartbeat.port);
    assert_eq!(pri.vip, sec.vip);
    assert_eq!(pri.vip.interface, "ovl0");
    assert_eq!(pri.vip.addresses, vec!["192.168.0.200/24".to_string()]);
    assert_eq!(pri.heartbeat.interval_ms, 10);
    assert_eq!(pri.heartbeat.multiplier, 3);
    assert_eq!(pri.heartbeat.key_file, sec.heartbeat.key_file);
    // The lab's namespaces share /run: sockets must not collide.
    assert_ne!(pri.control.socket, sec.control.socket);
    assert_ne!(pri.health.dataplane_socket, sec.health.dataplane_socket);
}

#[test]
fn example_config_errors_name_the_field() {
    let text = fs::read_to_string(deploy().join("examples/controller-pri.toml")).unwrap();
    for (from, to, field) in [
        (
            "interval_ms = 10 ",
            "interval_ms = 0 ",
            "heartbeat.interval_ms",
        ),
        (
            "multiplier = 3 ",
            "multiplier = 300 ",
            "heartbeat.multiplier",
        ),
        ("priority = 200 ", "priority = 0 ", "node.priority"),
        ("garp_count = 3 ", "garp_count = 1000 ", "vip.garp_count"),
        (
            "linger_ms = 20 ",
            "linger_ms = 2000 ",
            "switchover.linger_ms",
        ),
        (
            "address = \"10.0.3.2\"",
            "address = \"10.0.2.2\"",
            "peer.address",
        ),
        (
            "interface = \"ovl0\"",
            "interface = \"this-name-is-too-long\"",
            "vip.interface",
        ),
        ("fall = 2 ", "fall = 0 ", "health.fall"),
        ("preempt = true ", "preempt = 1 ", "node.preempt"),
        ("dscp = 48 ", "dscp = 64 ", "heartbeat.dscp"),
        ("[hooks]", "[hooks]\nnotify_cmd = \"x\"", "hooks.notify_cmd"),
    ] {
        assert!(text.contains(from), "{from:?} not in the example");
        let e = Config::parse(&text.replacen(from, to, 1)).unwrap_err();
        assert_eq!(e.field_name(), Some(field), "{e}");
        assert!(
            e.to_string().starts_with(&format!("config {field}: ")),
            "{e}"
        );
    }
}

/// Copies the units into `dir` with `/usr/local/bin/` pointing at executable stubs there
/// (verify checks that every command exists and is executable).
fn units_with_stub_binaries(dir: &Path) -> Vec<PathBuf> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for b in ["dataplane", "controller"] {
        let p = bin.join(b);
        fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    ["ovl-dataplane.service", "ovl-controller.service"]
        .iter()
        .map(|u| {
            let text = fs::read_to_string(deploy().join("systemd").join(u)).unwrap();
            assert!(
                text.contains("/usr/local/bin/"),
                "{u} runs /usr/local/bin binaries"
            );
            let out = dir.join(u);
            fs::write(
                &out,
                text.replace("/usr/local/bin/", &format!("{}/", bin.display())),
            )
            .unwrap();
            out
        })
        .collect()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze (Debian package systemd, which `cargo xtask setup` installs)");
    assert!(version.status.success());
    let dir = TempDir::new("units");
    let units = units_with_stub_binaries(&dir.0);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    // Warnings (unknown keys, bad values) do not fail verify; they fail this test.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("ovl-")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warnings:\n{text}");

    // And the check has teeth: a unit with a typo fails it.
    let bad = dir.0.join("ovl-bad.service");
    fs::write(
        &bad,
        "[Service]\nExecStart=/nonexistent/controller run\nRestartt=always\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() || text.contains("ovl-bad"), "{text}");
}

#[test]
fn systemd_units_say_what_the_design_needs() {
    let read = |u: &str| fs::read_to_string(deploy().join("systemd").join(u)).unwrap();
    let dp = read("ovl-dataplane.service");
    let ctl = read("ovl-controller.service");
    for want in [
        "ExecStart=/usr/local/bin/dataplane run --config /etc/ovl/dataplane.toml",
        "Restart=on-failure",
        "RuntimeDirectory=ovl-dataplane",
        "LimitMEMLOCK=infinity",
    ] {
        assert!(dp.contains(want), "data plane unit lacks {want}");
    }
    let caps = dp
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .unwrap();
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_BPF",
        "CAP_SYS_ADMIN",
        "CAP_IPC_LOCK",
    ] {
        assert!(caps.contains(cap), "data plane needs {cap}");
    }
    for want in [
        "ExecStart=/usr/local/bin/controller run --config /etc/ovl/controller.toml",
        "BindsTo=ovl-dataplane.service",
        "After=ovl-dataplane.service",
        "Restart=on-failure",
        "RuntimeDirectory=ovl-controller",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(ctl.contains(want), "controller unit lacks {want}");
    }
    let caps = ctl
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .unwrap();
    // CAP_SYS_NICE and CAP_IPC_LOCK: SCHED_FIFO and mlockall for the event loop (rt.rs).
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SYS_NICE",
        "CAP_IPC_LOCK",
    ] {
        assert!(caps.contains(cap), "controller needs {cap}");
    }
    assert!(
        !caps.contains("CAP_SYS_ADMIN"),
        "controller needs no CAP_SYS_ADMIN"
    );
    // Real-time heartbeats: systemd's default is to allow real-time, but the unit must not
    // turn it off, and mlockall(MCL_FUTURE) must not run into a memory lock limit.
    let settings: Vec<&str> = ctl.lines().map(str::trim).collect();
    assert!(settings.contains(&"RestrictRealtime=no"));
    assert!(
        !settings
            .iter()
            .any(|l| l.starts_with("RestrictRealtime=yes"))
    );
    assert!(settings.contains(&"LimitMEMLOCK=infinity"));
}

/// The system calls in a `SystemCallFilter=` list, with `@group`s expanded by systemd-analyze.
fn expand_syscall_filter(items: &[&str]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(item) = todo.pop() {
        if !item.starts_with('@') {
            out.insert(item);
            continue;
        }
        if !seen.insert(item.clone()) {
            continue;
        }
        let o = Command::new("systemd-analyze")
            .args(["syscall-filter", &item])
            .output()
            .unwrap();
        assert!(o.status.success(), "systemd-analyze syscall-filter {item}");
        let text = String::from_utf8(o.stdout).unwrap();
        // The first line names the group; comments start with '#'.
        for line in text.lines().skip(1).map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                todo.push(line.to_string());
            }
        }
    }
    out
}

#[test]
fn controller_unit_syscall_filter_allows_sched_fifo_and_mlockall() {
    let ctl = fs::read_to_string(deploy().join("systemd/ovl-controller.service")).unwrap();
    let filters: Vec<&str> = ctl
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
        .collect();
    assert!(
        !filters.is_empty(),
        "the controller unit has a system call filter"
    );
    // systemd applies the lines in order: the first one's kind sets the default (a deny list
    // allows everything else), then each allow line adds and each deny line removes.
    let mut allowed = [filters[0].starts_with('~'); 2];
    let needed = ["sched_setscheduler", "mlockall"];
    for f in &filters {
        let (deny, list) = match f.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, *f),
        };
        let items: Vec<&str> = list.split_whitespace().collect();
        let calls = expand_syscall_filter(&items);
        // The expansion did expand something.
        assert!(calls.len() > items.len(), "{f}: {calls:?}");
        for (ok, call) in allowed.iter_mut().zip(needed) {
            if calls.contains(call) {
                *ok = !deny;
            }
        }
    }
    for (ok, call) in allowed.iter().zip(needed) {
        assert!(ok, "SystemCallFilter= lines {filters:?} block {call}");
    }
}

/// The `content: |` block of the write_files entry at `path` in the cloud-init file.
fn write_file_content(yaml: &str, path: &str) -> String {
    let start = yaml
        .find(&format!("- path: {path}\n"))
        .unwrap_or_else(|| panic!("{path} not in write_files"));
    let rest = &yaml[start..];
    let content = rest.find("content: |\n").expect("content block") + "content: |\n".len();
    let mut out = String::new();
    for line in rest[content..].lines() {
        if let Some(l) = line.strip_prefix("      ") {
            out.push_str(l);
        } else if line.trim().is_empty() {
        } else {
            break;
        }
        out.push('\n');
    }
    out
}

#[test]
fn cloud_init_renders_configs_that_parse() {
    let yaml = fs::read_to_string(deploy().join("cloud-init/pair-member.yaml")).unwrap();
    assert!(yaml.starts_with("#cloud-config\n"));
    // Full YAML check with PyYAML (Debian: python3-yaml, which `cargo xtask setup` installs).
    match Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); \
                     assert isinstance(d['write_files'], list) and d['runcmd']",
        ])
        .arg(deploy().join("cloud-init/pair-member.yaml"))
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            panic!("PyYAML is missing (Debian python3-yaml): run `cargo xtask setup`")
        }
        Ok(o) => panic!("cloud-init YAML: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("python3 (for the YAML check): {e}"),
    }

    let script = write_file_content(&yaml, "/usr/local/sbin/ovl-member-setup");
    let env = write_file_content(&yaml, "/etc/ovl/pair.env");
    assert!(script.starts_with("#!/bin/sh\n"));
    let dir = TempDir::new("cloud-init");
    let script_path = dir.0.join("setup");
    fs::write(&script_path, &script).unwrap();
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&script_path)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    let mut configs = Vec::new();
    for role in ["pri", "sec"] {
        let etc = dir.0.join(role);
        let env_path = dir.0.join(format!("{role}.env"));
        fs::write(
            &env_path,
            env.replace("OVL_ROLE=pri", &format!("OVL_ROLE={role}")),
        )
        .unwrap();
        let out = Command::new("sh")
            .arg(&script_path)
            .env("OVL_ENV", &env_path)
            .env("OVL_ETC", &etc)
            .env("OVL_RENDER_ONLY", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Config::load(&etc.join("controller.toml")).unwrap();
        assert_eq!(c.node.name, role);
        assert_eq!(c.heartbeat.key_file, etc.join("controller.key"));
        let dp: toml::Table =
            toml::from_str(&fs::read_to_string(etc.join("dataplane.toml")).unwrap())
                .expect("dataplane.toml is TOML");
        assert_eq!(
            dp["underlay"]["local_ip"].as_str(),
            Some(c.heartbeat.address.to_string().as_str())
        );
        configs.push(c);
    }
    assert_eq!(configs[0].peer_addr().ip(), configs[1].heartbeat.address);
    assert_eq!(configs[1].peer_addr().ip(), configs[0].heartbeat.address);
    assert!(configs[0].node.priority > configs[1].node.priority);

    // A bad role is refused before anything is written.
    let env_path = dir.0.join("bad.env");
    fs::write(&env_path, env.replace("OVL_ROLE=pri", "OVL_ROLE=third")).unwrap();
    let out = Command::new("sh")
        .arg(&script_path)
        .env("OVL_ENV", &env_path)
        .env("OVL_ETC", dir.0.join("bad"))
        .env("OVL_RENDER_ONLY", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.0.join("bad").exists());
}
