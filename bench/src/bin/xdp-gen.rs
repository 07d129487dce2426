//! `xdp-gen`: sends small UDP frames (plain, or inside VXLAN/GENEVE) as fast as an AF_XDP
//! socket can, or at a fixed rate, and reports how many the kernel took.

use std::io::Write;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::traffic::{
    DEFAULT_FRAME_LEN, Encap, FrameSpec, GenConfig, GenError, GenReport, run, run_live,
};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EncapArg {
    None,
    Vxlan,
    Geneve,
}

/// How frames reach the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// A TX-only AF_XDP socket (copy mode on a veth: the kernel turns each frame into an skb).
    Afxdp,
    /// XDP frames, as a NIC driver hands them over: BPF_PROG_RUN with live frames redirects
    /// the template out of --iface (whose veth peer needs an XDP program or GRO on).
    XdpLive,
}

#[derive(Debug, Parser)]
#[command(
    name = "xdp-gen",
    version,
    about = "Send 64-byte frames (or any size) through an AF_XDP socket, as fast as possible or paced",
    long_about = "Send small UDP frames through a TX-only AF_XDP socket, as fast as possible or \
                  at --rate frames a second, and report how many the kernel took.\n\n\
                  One frame template per source port (--src-ports) is written into the socket's \
                  memory once; sending then only moves descriptors, so the generator is cheap \
                  per frame. With --encap vxlan|geneve the frame of --frame-len bytes is the \
                  inner frame, wrapped in outer Ethernet/IPv4/UDP (checksum 0)/VXLAN or GENEVE \
                  headers (50 bytes more) whose UDP source port varies with the inner one.\n\n\
                  No XDP program is loaded on --iface; on a veth the socket runs in copy mode. \
                  Run it in the sender's namespace, e.g. `ip netns exec NS xdp-gen ...`.\n\n\
                  Progress goes to stderr once a second; at the end (--duration-ms over, or \
                  SIGINT/SIGTERM; a second signal exits at once) a summary goes to stdout, or \
                  with --json exactly one JSON object: sent (frames the kernel completed), \
                  submitted, seconds, pps, bytes, tx_invalid, tx_ring_empty_descs.\n\n\
                  Exit status: 0 if frames were sent, 1 if none were or on errors, 2 for usage \
                  errors."
)]
struct Cli {
    /// Interface to send on.
    #[arg(long, value_name = "IF")]
    iface: String,
    /// How the frames are handed to --iface.
    #[arg(long, value_enum, default_value_t = ModeArg::Afxdp)]
    mode: ModeArg,
    /// Queue of the interface to bind to.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Source MAC of the (outer) frame, aa:bb:cc:dd:ee:ff.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    src_mac: [u8; 6],
    /// Destination MAC of the (outer) frame: the receiver's interface or next hop.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// Source IPv4 address of the (outer) frame.
    #[arg(long, value_name = "A")]
    src_ip: Ipv4Addr,
    /// Destination IPv4 address of the (outer) frame (the receiving VTEP when encapsulated).
    #[arg(long, value_name = "A")]
    dst_ip: Ipv4Addr,
    /// UDP destination port of the (outer) frame [default: 9, 4789 with vxlan, 6081 with
    /// geneve].
    #[arg(long, value_name = "P")]
    dst_port: Option<u16>,
    /// UDP source ports, one frame template (one flow) each: LOW-HIGH or a single port.
    #[arg(long, value_name = "LOW-HIGH", default_value = "1024-1087", value_parser = parse_ports)]
    src_ports: RangeInclusive<u16>,
    /// Encapsulation of the frames.
    #[arg(long, value_enum, default_value_t = EncapArg::None)]
    encap: EncapArg,
    /// VNI, needed with --encap vxlan|geneve.
    #[arg(long, value_name = "N")]
    vni: Option<u32>,
    /// Inner source MAC [default: 02:00:00:00:00:01].
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    inner_src_mac: Option<[u8; 6]>,
    /// Inner destination MAC [default: 02:00:00:00:00:02].
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    inner_dst_mac: Option<[u8; 6]>,
    /// Inner source IPv4 address [default: 192.168.0.4].
    #[arg(long, value_name = "A")]
    inner_src_ip: Option<Ipv4Addr>,
    /// Inner destination IPv4 address [default: 192.168.0.10].
    #[arg(long, value_name = "A")]
    inner_dst_ip: Option<Ipv4Addr>,
    /// Inner UDP destination port [default: 9].
    #[arg(long, value_name = "P")]
    inner_dst_port: Option<u16>,
    /// Length of the measured frame without FCS (the inner one when encapsulated); 60 makes
    /// a 64-byte frame on the wire.
    #[arg(long, default_value_t = DEFAULT_FRAME_LEN)]
    frame_len: usize,
    /// How long to send, in milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    duration_ms: u64,
    /// Frames a second (token bucket, burst = --batch); without it, as fast as possible.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Descriptors put on the TX ring at once.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Frames in the socket's memory (UMEM).
    #[arg(long, default_value_t = 4096)]
    frames: u32,
    /// TX and completion ring size (a power of two).
    #[arg(long, default_value_t = 2048)]
    ring: u32,
    /// Pin the sending thread to this CPU.
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
    /// Print the report as one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<ovl_wire::EthernetAddress>()
        .map(|a| a.0)
        .map_err(|_| format!("`{s}` is not a MAC address like 02:00:00:00:00:01"))
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port (0-65535)"))
    };
    let range = match s.split_once('-') {
        Some((lo, hi)) => port(lo)?..=port(hi)?,
        None => port(s)?..=port(s)?,
    };
    if range.is_empty() {
        return Err(format!("port range {s} is empty"));
    }
    Ok(range)
}

/// Turns the arguments into the library's settings; the message names the offending option.
fn settings(cli: &Cli) -> Result<(GenConfig, FrameSpec), String> {
    let encap = match (cli.encap, cli.vni) {
        (EncapArg::None, None) => Encap::None,
        (EncapArg::None, Some(_)) => {
            return Err("--vni needs --encap vxlan or --encap geneve".into());
        }
        (EncapArg::Vxlan, Some(vni)) => Encap::Vxlan { vni },
        (EncapArg::Geneve, Some(vni)) => Encap::Geneve { vni },
        (EncapArg::Vxlan, None) => return Err("--vni is needed with --encap vxlan".into()),
        (EncapArg::Geneve, None) => return Err("--vni is needed with --encap geneve".into()),
    };
    let inner_given = cli.inner_src_mac.is_some()
        || cli.inner_dst_mac.is_some()
        || cli.inner_src_ip.is_some()
        || cli.inner_dst_ip.is_some()
        || cli.inner_dst_port.is_some();
    if encap == Encap::None && inner_given {
        return Err("--inner-* options need --encap vxlan or --encap geneve".into());
    }
    let base = FrameSpec::new(cli.src_mac, cli.dst_mac, cli.src_ip, cli.dst_ip);
    let spec = FrameSpec {
        dst_port: cli.dst_port.unwrap_or(encap.default_port()),
        src_ports: cli.src_ports.clone(),
        encap,
        inner_src_mac: cli.inner_src_mac.unwrap_or(base.inner_src_mac),
        inner_dst_mac: cli.inner_dst_mac.unwrap_or(base.inner_dst_mac),
        inner_src_ip: cli.inner_src_ip.unwrap_or(base.inner_src_ip),
        inner_dst_ip: cli.inner_dst_ip.unwrap_or(base.inner_dst_ip),
        inner_dst_port: cli.inner_dst_port.unwrap_or(base.inner_dst_port),
        frame_len: cli.frame_len,
        ..base
    };
    spec.validate().map_err(|e| {
        let opt = match e {
            GenError::FrameLen(_) => "--frame-len",
            GenError::Vni(_) => "--vni",
            _ => "--src-ports",
        };
        format!("{opt}: {e}")
    })?;
    let cfg = GenConfig {
        ifname: cli.iface.clone(),
        queue: cli.queue,
        duration: Duration::from_millis(cli.duration_ms),
        rate_pps: cli.rate,
        batch: cli.batch,
        frames: cli.frames,
        ring: cli.ring,
        cpu: cli.cpu,
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok((cfg, spec))
}

fn rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.3} Mpps", pps / 1e6)
    } else {
        format!("{:.1} kpps", pps / 1e3)
    }
}

fn summary(r: &GenReport, spec: &FrameSpec) -> String {
    let mbit = if r.seconds > 0.0 {
        r.bytes as f64 * 8.0 / r.seconds / 1e6
    } else {
        0.0
    };
    format!(
        "sent {} frames of {} bytes in {:.3} s: {} ({:.1} Mbit/s without FCS); submitted {}, \
         tx_invalid {}, tx_ring_empty_descs {}",
        r.sent,
        spec.wire_len(),
        r.seconds,
        rate(r.pps),
        mbit,
        r.submitted,
        r.tx_invalid,
        r.tx_ring_empty_descs
    )
}

fn main_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    let (cfg, spec) = match settings(&cli) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("xdp-gen: error: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    let stop = bench::signals::stop_flag().context("installing signal handlers")?;
    let mut last = GenReport::default();
    let report = match cli.mode {
        ModeArg::Afxdp => run(&cfg, &spec, &stop, |r| progress(&mut last, r)),
        ModeArg::XdpLive => run_live(&cfg, &spec, &stop, |r| progress(&mut last, r)),
    }
    .with_context(|| format!("sending on {}", cfg.ifname))?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(out, "{}", summary(&report, &spec))?;
    }
    out.flush()?;
    Ok(if report.sent > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("xdp-gen: no frame was sent");
        ExitCode::from(1)
    })
}

/// The once-a-second progress line on stderr.
fn progress(last: &mut GenReport, r: &GenReport) {
    let dt = r.seconds - last.seconds;
    let now = if dt > 0.0 {
        (r.sent - last.sent) as f64 / dt
    } else {
        0.0
    };
    eprintln!(
        "xdp-gen: {:6.1} s  sent {:>12}  {:>13} now  {:>13} average",
        r.seconds,
        r.sent,
        rate(now),
        rate(r.pps)
    );
    *last = r.clone();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_inner(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xdp-gen: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = [
            "xdp-gen",
            "--iface",
            "veth0",
            "--src-mac",
            "02:00:00:00:00:01",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--src-ip",
            "10.0.0.1",
            "--dst-ip",
            "10.0.0.2",
        ];
        Cli::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn defaults_follow_the_encapsulation() {
        let (cfg, spec) = settings(&cli(&[]).unwrap()).unwrap();
        assert_eq!(spec.encap, Encap::None);
        assert_eq!((spec.dst_port, spec.frame_len), (9, 60));
        assert_eq!(spec.src_ports, 1024..=1087);
        assert_eq!(cfg, GenConfig::new("veth0"));
        let (_, spec) = settings(&cli(&["--encap", "vxlan", "--vni", "10"]).unwrap()).unwrap();
        assert_eq!(
            (spec.encap, spec.dst_port),
            (Encap::Vxlan { vni: 10 }, 4789)
        );
        assert_eq!(spec.wire_len(), 110);
        let (_, spec) = settings(&cli(&["--encap", "geneve", "--vni", "7"]).unwrap()).unwrap();
        assert_eq!(
            (spec.encap, spec.dst_port),
            (Encap::Geneve { vni: 7 }, 6081)
        );
    }

    #[test]
    fn every_option_lands() {
        let c = cli(&[
            "--queue",
            "1",
            "--dst-port",
            "8472",
            "--src-ports",
            "5000-5003",
            "--encap",
            "vxlan",
            "--vni",
            "42",
            "--inner-src-mac",
            "02:aa:00:00:00:01",
            "--inner-dst-mac",
            "02:aa:00:00:00:02",
            "--inner-src-ip",
            "172.16.0.1",
            "--inner-dst-ip",
            "172.16.0.2",
            "--inner-dst-port",
            "7",
            "--frame-len",
            "128",
            "--duration-ms",
            "1500",
            "--rate",
            "1000",
            "--batch",
            "32",
            "--frames",
            "1024",
            "--ring",
            "512",
            "--cpu",
            "1",
            "--json",
        ])
        .unwrap();
        assert!(c.json);
        let (cfg, spec) = settings(&c).unwrap();
        assert_eq!(
            cfg,
            GenConfig {
                ifname: "veth0".into(),
                queue: 1,
                duration: Duration::from_millis(1500),
                rate_pps: Some(1000),
                batch: 32,
                frames: 1024,
                ring: 512,
                cpu: Some(1),
            }
        );
        assert_eq!(spec.dst_port, 8472);
        assert_eq!(spec.src_ports, 5000..=5003);
        assert_eq!(spec.inner_src_mac, [2, 0xaa, 0, 0, 0, 1]);
        assert_eq!(spec.inner_dst_mac, [2, 0xaa, 0, 0, 0, 2]);
        assert_eq!(spec.inner_src_ip, Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(spec.inner_dst_ip, Ipv4Addr::new(172, 16, 0, 2));
        assert_eq!((spec.inner_dst_port, spec.frame_len), (7, 128));
    }

    #[test]
    fn bad_combinations_are_named() {
        let err = |extra: &[&str]| settings(&cli(extra).unwrap()).unwrap_err();
        assert_eq!(
            err(&["--encap", "vxlan"]),
            "--vni is needed with --encap vxlan"
        );
        assert_eq!(
            err(&["--encap", "geneve"]),
            "--vni is needed with --encap geneve"
        );
        assert!(err(&["--vni", "3"]).contains("--vni needs --encap"));
        assert!(err(&["--inner-src-ip", "1.2.3.4"]).contains("--inner-* options need"));
        assert!(err(&["--frame-len", "41"]).contains("frame length 41"));
        assert!(err(&["--encap", "vxlan", "--vni", "16777216"]).contains("24 bits"));
        assert!(err(&["--ring", "1000"]).contains("power of two"));
        assert!(err(&["--batch", "0"]).contains("batch 0"));
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_mac("02:0A:ff:00:01:02"), Ok([2, 10, 255, 0, 1, 2]));
        assert!(parse_mac("02:0A:ff:00:1:2").is_err());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "g2:00:00:00:00:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        assert!(parse_mac("002:00:00:00:00:00").is_err());
        assert_eq!(parse_ports("1024-1087"), Ok(1024..=1087));
        assert_eq!(parse_ports("80"), Ok(80..=80));
        assert!(parse_ports("2000-1000").is_err());
        assert!(parse_ports("1-70000").is_err());
        assert!(cli(&["--rate", "0"]).is_err());
        assert!(cli(&["--duration-ms", "0"]).is_err());
    }
}
