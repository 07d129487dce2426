//! The configuration file the lab writes for `dataplane run --config FILE` on an
//! [`Overlay::Ours`] host (schema: the data plane's config, one `[[vni]]`).

use std::path::Path;

use ovl_netlink::format_mac;
use serde::Serialize;

use crate::{
    LabError,
    spec::{LabSpec, OURS_INTERFACE, Overlay},
};

#[derive(Serialize)]
struct File {
    underlay: Underlay,
    #[serde(skip_serializing_if = "Option::is_none")]
    datapath: Option<Datapath>,
    workers: Workers,
    stats: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    fdb: Option<Fdb>,
    vni: Vec<Vni>,
}

#[derive(Serialize)]
struct Underlay {
    /// One uplink: `interface`; more: `interfaces`, in order of preference.
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interfaces: Option<Vec<String>>,
    local_ip: String,
    xdp_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failback_hold_ms: Option<u64>,
}

#[derive(Serialize)]
struct Datapath {
    mode: &'static str,
}

#[derive(Serialize)]
struct Workers {
    queues: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_per_queue: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spin_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    busy_poll_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zero_copy: Option<String>,
}

#[derive(Serialize)]
struct Fdb {
    ageing_secs: u64,
}

#[derive(Serialize)]
struct Stats {
    control_socket: String,
    prometheus: &'static str,
}

#[derive(Serialize)]
struct Vni {
    id: u32,
    encap: &'static str,
    port: u16,
    interface: &'static str,
    address: String,
    mac: String,
    flood: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geneve_option: Option<GeneveOpt>,
}

#[derive(Serialize)]
struct GeneveOpt {
    class: u16,
    #[serde(rename = "type")]
    typ: u8,
    data: String,
}

/// Where the lab's data planes serve Prometheus metrics (inside their own namespace).
pub const PROMETHEUS: &str = "127.0.0.1:9464";

/// The config file of host `name` of `spec`, whose control socket is `control_socket`.
pub fn render(spec: &LabSpec, name: &str, control_socket: &Path) -> Result<String, LabError> {
    let (index, host) = spec
        .host(name)
        .ok_or_else(|| LabError::UnknownHost(name.to_string()))?;
    let Overlay::Ours {
        vni,
        encap,
        port,
        addr,
        geneve_option,
    } = host.overlay
    else {
        return Err(LabError::NotOurs(name.to_string()));
    };
    let file = File {
        underlay: Underlay {
            interface: (spec.uplinks_of(name) == 1).then(|| "eth0".to_string()),
            interfaces: (spec.uplinks_of(name) > 1).then(|| {
                (0..spec.uplinks_of(name))
                    .map(|k| format!("eth{k}"))
                    .collect()
            }),
            failback_hold_ms: spec.failback_hold_ms,
            // IPv6 with `underlay_ipv6`: the data plane then encapsulates over IPv6 and must
            // send real outer UDP checksums (kernel VXLAN peers drop zero-checksum IPv6 UDP).
            local_ip: spec.vtep_ip_at(index).to_string(),
            // Driver mode works on veth; auto still falls back (with a warning) if not.
            xdp_mode: "auto",
        },
        datapath: spec.mode_of(name).map(|m| Datapath { mode: m.as_str() }),
        workers: Workers {
            queues: spec.queues,
            cpus: spec
                .workers
                .host_cpus
                .get(name)
                .or(spec.workers.cpus.as_ref())
                .cloned()
                .or_else(|| (spec.queues > 1).then(|| (0..spec.queues).collect())),
            batch_size: spec.workers.batch_size,
            frames_per_queue: spec.workers.frames_per_queue,
            spin_us: spec.workers.spin_us,
            busy_poll_us: spec.workers.busy_poll_us,
            zero_copy: spec.workers.zero_copy.clone(),
        },
        stats: Stats {
            // Each data plane has its own namespace, so the same loopback port never clashes.
            prometheus: PROMETHEUS,
            control_socket: control_socket.to_string_lossy().into_owned(),
        },
        fdb: spec.fdb_ageing_secs.map(|ageing_secs| Fdb { ageing_secs }),
        vni: vec![Vni {
            id: vni,
            encap: encap.as_str(),
            port,
            interface: OURS_INTERFACE,
            address: addr.to_string(),
            mac: format_mac(&LabSpec::overlay_mac_at(index)),
            flood: spec
                .vtep_peers(name)
                .iter()
                .map(|a| a.to_string())
                .collect(),
            geneve_option: geneve_option.map(|o| GeneveOpt {
                class: o.class,
                typ: o.typ,
                data: o.data.iter().map(|b| format!("{b:02x}")).collect(),
            }),
        }],
    };
    let body = toml::to_string(&file).map_err(|e| LabError::Parse {
        cmd: format!("render the data plane config of {name}"),
        detail: e.to_string(),
    })?;
    Ok(format!(
        "# Written by ovl-lab for host {name} of lab {}; rewritten on every start.\n{body}",
        spec.prefix
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Encap, GeneveOption, HostSpec};
    use toml::Value;

    fn parse(s: &str) -> toml::Table {
        s.parse::<toml::Table>().expect("valid TOML")
    }

    /// The strings in the TOML array `v`.
    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .expect("an array")
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn seed_pri_config_has_every_field() {
        let spec = LabSpec::seed("lab-", "/usr/bin/dataplane");
        let text = render(&spec, "pri", Path::new("/run/ovl-lab/lab-/pri.sock")).unwrap();
        let t = parse(&text);
        let keys: Vec<&String> = t.keys().collect();
        assert_eq!(keys, ["stats", "underlay", "vni", "workers"]);
        assert_eq!(t["underlay"]["interface"].as_str(), Some("eth0"));
        assert_eq!(t["underlay"]["local_ip"].as_str(), Some("10.0.2.2"));
        assert_eq!(t["underlay"]["xdp_mode"].as_str(), Some("auto"));
        assert!(t["underlay"].get("interfaces").is_none());
        // Two uplinks: listed in order of preference; the kernel client keeps one.
        let mut two = spec.clone();
        two.uplinks = 2;
        let t2 = parse(&render(&two, "pri", Path::new("/s")).unwrap());
        assert!(t2["underlay"].get("interface").is_none());
        assert_eq!(strings(&t2["underlay"]["interfaces"]), ["eth0", "eth1"]);
        assert_eq!(two.uplinks_of("client"), 1);
        assert_eq!(t["workers"]["queues"].as_integer(), Some(1));
        assert_eq!(
            t["stats"]["control_socket"].as_str(),
            Some("/run/ovl-lab/lab-/pri.sock")
        );
        let vnis = t["vni"].as_array().unwrap();
        assert_eq!(vnis.len(), 1);
        let v = vnis[0].as_table().unwrap();
        assert_eq!(v["id"].as_integer(), Some(10));
        assert_eq!(v["encap"].as_str(), Some("vxlan"));
        assert_eq!(v["port"].as_integer(), Some(4789));
        assert_eq!(v["interface"].as_str(), Some("ovl0"));
        assert_eq!(v["address"].as_str(), Some("192.168.0.10/24"));
        assert_eq!(v["mac"].as_str(), Some("02:00:00:00:00:02"));
        let flood: Vec<&str> = v["flood"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        // The kernel client and the other member, never ourselves.
        assert_eq!(flood, ["10.0.1.2", "10.0.3.2"]);
        assert!(!v.contains_key("geneve_option"));
        assert!(text.starts_with("# Written by ovl-lab"));
    }

    #[test]
    fn geneve_config_carries_the_option_and_only_geneve_peers() {
        let g = |d| Overlay::Ours {
            vni: 30,
            encap: Encap::Geneve,
            port: 6081,
            addr: crate::Ipv4Cidr::new(192, 168, 30, d, 24),
            geneve_option: Some(GeneveOption {
                class: 0x0102,
                typ: 0x80,
                data: [0x0a, 0x0b, 0x0c, 0x0d],
            }),
        };
        let spec = LabSpec::seed("t-", "/bin/dp")
            .with_host(HostSpec::new("ga", g(1)))
            .with_host(HostSpec::new("gb", g(2)));
        spec.validate().unwrap();
        let t = parse(&render(&spec, "ga", Path::new("/s")).unwrap());
        let v = t["vni"][0].as_table().unwrap();
        assert_eq!(v["encap"].as_str(), Some("geneve"));
        assert_eq!(v["port"].as_integer(), Some(6081));
        assert_eq!(v["flood"].as_array().unwrap(), &[Value::from("10.0.5.2")]);
        let o = v["geneve_option"].as_table().unwrap();
        assert_eq!(o["class"].as_integer(), Some(0x0102));
        assert_eq!(o["type"].as_integer(), Some(0x80));
        assert_eq!(o["data"].as_str(), Some("0a0b0c0d"));
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn datapath_mode_per_host_before_the_lab_wide_one() {
        let dp = |spec: &LabSpec, host: &str| {
            let t = parse(&render(spec, host, Path::new("/s")).unwrap());
            t.get("datapath")
                .map(|d| d["mode"].as_str().unwrap().to_string())
        };
        let spec = LabSpec::seed("t-", "/bin/dp");
        assert_eq!(dp(&spec, "pri"), None, "no mode: the data plane's default");
        let spec = spec
            .with_mode(crate::DatapathMode::Xdp)
            .with_host_mode("sec", crate::DatapathMode::Afxdp);
        assert_eq!(dp(&spec, "pri").as_deref(), Some("xdp"));
        assert_eq!(dp(&spec, "sec").as_deref(), Some("afxdp"));
        let only_sec =
            LabSpec::seed("t-", "/bin/dp").with_host_mode("sec", crate::DatapathMode::Afxdp);
        assert_eq!(dp(&only_sec, "pri"), None);
        assert_eq!(dp(&only_sec, "sec").as_deref(), Some("afxdp"));
    }

    #[test]
    fn ipv6_underlay_puts_ipv6_vteps_in_local_ip_and_flood() {
        let mut spec = LabSpec::seed("t-", "/bin/dp");
        spec.underlay_ipv6 = true;
        spec.uplinks = 2;
        let t = parse(&render(&spec, "pri", Path::new("/s")).unwrap());
        assert_eq!(t["underlay"]["local_ip"].as_str(), Some("fd00:0:2::2"));
        // The same address on both uplinks: nothing else in [underlay] changes.
        assert_eq!(t["underlay"]["interfaces"].as_array().unwrap().len(), 2);
        let flood = strings(&t["vni"][0]["flood"]);
        assert_eq!(flood, ["fd00:0:1::2", "fd00:0:3::2"]);
        // Overlay addressing stays IPv4.
        assert_eq!(t["vni"][0]["address"].as_str(), Some("192.168.0.10/24"));
        // And every address parses as what the data plane will read.
        for a in flood
            .iter()
            .chain([&t["underlay"]["local_ip"].as_str().unwrap()])
        {
            assert!(a.parse::<std::net::Ipv6Addr>().is_ok(), "{a}");
        }
    }

    #[test]
    fn only_ours_hosts_have_a_config() {
        let spec = LabSpec::seed("t-", "/bin/dp");
        assert!(matches!(
            render(&spec, "client", Path::new("/s")),
            Err(LabError::NotOurs(_))
        ));
        assert!(matches!(
            render(&spec, "nobody", Path::new("/s")),
            Err(LabError::UnknownHost(_))
        ));
    }
}
