//! The numbers the benchmark needs from `iperf3 -c ... -J` (TCP, any `-P`).
//!
//! Only `end.sum_sent`, `end.sum_received` and `end.cpu_utilization_percent` are read; the
//! per-stream and per-interval detail is ignored, so output from other iperf3 3.x versions
//! with extra fields parses too.

use serde::Deserialize;

use super::ProbeError;

/// One iperf3 client run, summed over its parallel streams.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IperfResult {
    /// Sender-side throughput (`end.sum_sent.bits_per_second`).
    pub sent_bps: f64,
    /// Receiver-side throughput (`end.sum_received.bits_per_second`): what got through.
    pub received_bps: f64,
    /// TCP retransmissions on the sending side (0 when iperf3 does not report them).
    pub retransmits: u64,
    /// Duration of the test as the sender measured it.
    pub seconds: f64,
    /// iperf3's own CPU use on this host (`host_total`: its user + system time over wall
    /// time, so percent of one CPU).
    pub cpu_host_pct: f64,
    /// The same on the server side (`remote_total`).
    pub cpu_remote_pct: f64,
}

#[derive(Deserialize)]
struct Doc {
    error: Option<String>,
    end: Option<End>,
}

#[derive(Deserialize)]
struct End {
    sum_sent: Option<Sum>,
    sum_received: Option<Sum>,
    cpu_utilization_percent: Option<Cpu>,
}

#[derive(Deserialize)]
struct Sum {
    seconds: f64,
    bits_per_second: f64,
    #[serde(default)]
    retransmits: u64,
}

#[derive(Deserialize)]
struct Cpu {
    host_total: f64,
    remote_total: f64,
}

/// Parses the JSON that `iperf3 -J` printed. A top-level `error` field (iperf3 writes one
/// when it cannot connect or the test fails) becomes [`ProbeError::Iperf`] with its text.
pub fn parse_iperf3(json: &str) -> Result<IperfResult, ProbeError> {
    const WHAT: &str = "iperf3 JSON";
    let doc: Doc =
        serde_json::from_str(json).map_err(|e| ProbeError::parse(WHAT, e.to_string()))?;
    if let Some(error) = doc.error {
        return Err(ProbeError::Iperf(error));
    }
    let end = doc
        .end
        .ok_or_else(|| ProbeError::parse(WHAT, "no \"end\" section"))?;
    let sent = end
        .sum_sent
        .ok_or_else(|| ProbeError::parse(WHAT, "no end.sum_sent (not a TCP client run?)"))?;
    let received = end
        .sum_received
        .ok_or_else(|| ProbeError::parse(WHAT, "no end.sum_received"))?;
    let cpu = end
        .cpu_utilization_percent
        .ok_or_else(|| ProbeError::parse(WHAT, "no end.cpu_utilization_percent"))?;
    Ok(IperfResult {
        sent_bps: sent.bits_per_second,
        received_bps: received.bits_per_second,
        retransmits: sent.retransmits,
        seconds: sent.seconds,
        cpu_host_pct: cpu.host_total,
        cpu_remote_pct: cpu.remote_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iperf3 -c 127.0.0.1 -p 5299 -t 1 -J -P 2` (iperf 3.12, this project's VM), with
    /// `start` trimmed to a few keys and the leaf objects put on one line each.
    const SAMPLE: &str = r#"
{
  "start": {
    "connected": [
      {"socket": 5, "local_host": "127.0.0.1", "local_port": 32824, "remote_host": "127.0.0.1", "remote_port": 5299},
      {"socket": 7, "local_host": "127.0.0.1", "local_port": 32836, "remote_host": "127.0.0.1", "remote_port": 5299}
    ],
    "version": "iperf 3.12",
    "system_info": "Linux vm 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0 x86_64",
    "connecting_to": {"host": "127.0.0.1", "port": 5299},
    "test_start": {"protocol": "TCP", "num_streams": 2, "blksize": 131072, "omit": 0, "duration": 1, "bytes": 0, "blocks": 0, "reverse": 0, "tos": 0, "target_bitrate": 0}
  },
  "intervals": [
    {
      "streams": [
        {"socket": 5, "start": 0, "end": 1.000171, "seconds": 1.0001709461212158, "bytes": 1196687360, "bits_per_second": 9571862607.214485, "retransmits": 0, "snd_cwnd": 916762, "snd_wnd": 13014016, "rtt": 40, "rttvar": 16, "pmtu": 65535, "omitted": false, "sender": true},
        {"socket": 7, "start": 0, "end": 1.000175, "seconds": 1.0001749992370605, "bytes": 1195376640, "bits_per_second": 9561339892.81348, "retransmits": 0, "snd_cwnd": 916762, "snd_wnd": 2494464, "rtt": 72, "rttvar": 28, "pmtu": 65535, "omitted": false, "sender": true}
      ],
      "sum": {"start": 0, "end": 1.000171, "seconds": 1.0001709461212158, "bytes": 2392064000, "bits_per_second": 19133241246.6226, "retransmits": 0, "omitted": false, "sender": true}
    }
  ],
  "end": {
    "streams": [
      {
        "sender": {"socket": 5, "start": 0, "end": 1.000171, "seconds": 1.000171, "bytes": 1196687360, "bits_per_second": 9571862091.58234, "retransmits": 0, "max_snd_cwnd": 916762, "max_snd_wnd": 13014016, "max_rtt": 40, "min_rtt": 40, "mean_rtt": 40, "sender": true},
        "receiver": {"socket": 5, "start": 0, "end": 1.000235, "seconds": 1.000171, "bytes": 1196687360, "bits_per_second": 9571249636.33546, "sender": true}
      },
      {
        "sender": {"socket": 7, "start": 0, "end": 1.000171, "seconds": 1.000171, "bytes": 1195376640, "bits_per_second": 9561378124.34074, "retransmits": 0, "max_snd_cwnd": 916762, "max_snd_wnd": 2494464, "max_rtt": 72, "min_rtt": 72, "mean_rtt": 72, "sender": true},
        "receiver": {"socket": 7, "start": 0, "end": 1.000235, "seconds": 1.000171, "bytes": 1195245568, "bits_per_second": 9559718010.26759, "sender": true}
      }
    ],
    "sum_sent": {"start": 0, "end": 1.000171, "seconds": 1.000171, "bytes": 2392064000, "bits_per_second": 19133240215.92308, "retransmits": 0, "sender": true},
    "sum_received": {"start": 0, "end": 1.000235, "seconds": 1.000235, "bytes": 2391932928, "bits_per_second": 19130967646.60305, "sender": true},
    "cpu_utilization_percent": {"host_total": 97.1655638615106, "host_user": 2.810588121899137, "host_system": 94.35477700613987, "remote_total": 56.957149398260064, "remote_user": 2.59021100387297, "remote_system": 54.366838420980024},
    "sender_tcp_congestion": "bbr",
    "receiver_tcp_congestion": "bbr"
  }
}
"#;

    /// iperf3 3.12 against a port with no server.
    const REFUSED: &str = r#"{
	"start":	{
		"connected":	[],
		"version":	"iperf 3.12",
		"system_info":	"Linux vm 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
	},
	"intervals":	[],
	"end":	{
	},
	"error":	"unable to connect to server: Connection refused"
}"#;

    #[test]
    fn parses_a_real_two_stream_run() {
        let r = parse_iperf3(SAMPLE).unwrap();
        assert_eq!(
            r,
            IperfResult {
                sent_bps: 19133240215.92308,
                received_bps: 19130967646.60305,
                retransmits: 0,
                seconds: 1.000171,
                cpu_host_pct: 97.1655638615106,
                cpu_remote_pct: 56.957149398260064,
            }
        );
    }

    #[test]
    fn retransmits_come_from_the_sender_sum() {
        let json = SAMPLE.replacen(
            r#""bits_per_second": 19133240215.92308, "retransmits": 0"#,
            r#""bits_per_second": 19133240215.92308, "retransmits": 1234"#,
            1,
        );
        assert_ne!(json, SAMPLE);
        assert_eq!(parse_iperf3(&json).unwrap().retransmits, 1234);
    }

    #[test]
    fn error_field_becomes_an_iperf_error() {
        match parse_iperf3(REFUSED) {
            Err(ProbeError::Iperf(text)) => {
                assert_eq!(text, "unable to connect to server: Connection refused")
            }
            other => panic!("expected an iperf error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_output_is_a_parse_error() {
        let truncated = &SAMPLE[..SAMPLE.len() / 2];
        let no_cpu = SAMPLE.replace("cpu_utilization_percent", "cpu_something_else");
        let no_sent = SAMPLE.replace("sum_sent", "sum_sent_not");
        let text_bps = SAMPLE.replace("19130967646.60305", r#""fast""#);
        for bad in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"end": {}}"#,
            truncated,
            &no_cpu,
            &no_sent,
            &text_bps,
        ] {
            assert!(
                matches!(parse_iperf3(bad), Err(ProbeError::Parse { .. })),
                "{bad:.60}"
            );
        }
    }
}
