//! What `ping -D` (iputils) printed, read back: the answered sequence numbers with their
//! receive times, and for each disturbance the longest silence around it. An ICMP echo every
//! millisecond with sequence numbers is the bonding study's probe: a gap shows how long the
//! path was broken, the missing numbers how many packets it ate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, on the clock `ping -D` stamps answers with (seconds since the Unix epoch): stamp
/// events with it to find their gaps.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One answered echo: when it arrived (seconds since the Unix epoch, as `-D` prints it) and
/// its sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    pub at: f64,
    pub seq: u32,
}

/// The answers in `ping -D` output, in the order printed. Lines that are not answers
/// (headers, "no answer yet", statistics) are skipped.
pub fn replies(log: &str) -> Vec<Reply> {
    log.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| {
            let at = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some(Reply { at, seq })
        })
        .collect()
}

/// The silence around one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventGap {
    /// The longest time between two consecutive answers from just before the event to
    /// `window` after it; `window` itself when fewer than two answers fall in it.
    pub gap: Duration,
    /// Sequence numbers never answered between those answers.
    pub missing: u32,
}

/// For each event time (epoch seconds), the longest silence among the answers from 50 ms
/// before it to `window` after it, and the sequence numbers lost there. Sequence numbers
/// wrap at 65536 in iputils; a jump backwards counts as a wrap.
pub fn event_gaps(replies: &[Reply], events: &[f64], window: Duration) -> Vec<EventGap> {
    let w = window.as_secs_f64();
    events
        .iter()
        .map(|&t| {
            let inside: Vec<&Reply> = replies
                .iter()
                .filter(|r| r.at >= t - 0.05 && r.at <= t + w)
                .collect();
            if inside.len() < 2 {
                return EventGap {
                    gap: window,
                    missing: 0,
                };
            }
            let mut longest = 0.0f64;
            let mut missing = 0;
            for pair in inside.windows(2) {
                longest = longest.max(pair[1].at - pair[0].at);
                let step = (pair[1].seq.wrapping_sub(pair[0].seq)) & 0xffff;
                missing += step.saturating_sub(1);
            }
            EventGap {
                gap: Duration::from_secs_f64(longest),
                missing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "PING 192.168.0.200 (192.168.0.200) 56(84) bytes of data.
[1764565200.000100] 64 bytes from 192.168.0.200: icmp_seq=1 ttl=64 time=0.061 ms
[1764565200.001100] 64 bytes from 192.168.0.200: icmp_seq=2 ttl=64 time=0.052 ms
[1764565200.002050] no answer yet for icmp_seq=3
[1764565200.006100] 64 bytes from 192.168.0.200: icmp_seq=7 ttl=64 time=0.070 ms
[1764565200.007100] 64 bytes from 192.168.0.200: icmp_seq=8 ttl=64 time=0.049 ms
garbage [line
[x] 64 bytes from 1.2.3.4: icmp_seq=9 ttl=64

--- 192.168.0.200 ping statistics ---
9 packets transmitted, 4 received, 55.5556% packet loss, time 8ms
";

    #[test]
    fn answers_are_read_and_everything_else_skipped() {
        let r = replies(LOG);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].seq, 1);
        assert!((r[0].at - 1_764_565_200.000_1).abs() < 1e-6);
        assert_eq!(r[2].seq, 7);
        assert!(replies("").is_empty());
    }

    #[test]
    fn the_gap_around_an_event_and_the_lost_echoes() {
        let r = replies(LOG);
        let g = event_gaps(&r, &[1_764_565_200.002], Duration::from_secs(1));
        assert_eq!(g.len(), 1);
        assert!(
            (g[0].gap.as_secs_f64() - 0.005).abs() < 1e-6,
            "{:?}",
            g[0].gap
        );
        assert_eq!(g[0].missing, 4);
        // No answers in the window at all: the whole window is the gap.
        let g = event_gaps(&r, &[1_764_565_300.0], Duration::from_millis(500));
        assert_eq!(
            g[0],
            EventGap {
                gap: Duration::from_millis(500),
                missing: 0
            }
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let r = [
            Reply {
                at: 10.000,
                seq: 65534,
            },
            Reply { at: 10.003, seq: 1 },
        ];
        let g = event_gaps(&r, &[10.001], Duration::from_secs(1));
        assert_eq!(g[0].missing, 2);
    }
}
