//! Kernel features the data plane relies on: probed once at start (`probe`), then judged by a
//! pure decision table (`decide`) into use, fall back (logged once, with what it costs) or
//! stop (one line: the feature, the kernel found, the oldest kernel that has it).
//!
//! XDP attach modes are not probed here: attaching in driver mode on a device is the probe,
//! and the daemon falls back to SKB mode where it attaches (see `daemon::host`); the mode it
//! got is reported with these features in `dataplane stats`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

mod probe;
pub mod verifier;

pub use probe::{kernel, probe};

/// A kernel feature the data plane (or its bench) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    ProgXdp,
    ProgTc,
    XdpAdjustHead,
    XdpAdjustTail,
    XdpAdjustMeta,
    XdpRedirect,
    XdpRedirectMap,
    XdpCsumDiff,
    XdpSkcLookupTcp,
    XdpSkRelease,
    XdpKtimeGetNs,
    XdpMapLookup,
    XdpRingbufOutput,
    TcAdjustRoom,
    TcEncapL2Eth,
    TcRedirect,
    TcGetHashRecalc,
    TcLoadBytes,
    TcStoreBytes,
    TcMapLookup,
    MapArray,
    MapHash,
    MapLruHash,
    MapPercpuArray,
    MapPercpuHash,
    MapXsk,
    MapDevmapHash,
    MapRingbuf,
    Tcx,
    AfXdp,
    XdpOptions,
    TxSkbBudget,
    PreferBusyPoll,
    LiveFrames,
    Bpffs,
}

/// How much the data plane needs a feature, given what the config asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The programs do not load, or nothing runs, without it.
    Essential,
    /// Without it the data plane works, at this cost.
    Optional { cost: &'static str },
    /// Probed for the record; this run does not use it.
    Unused { why: &'static str },
}

impl Feature {
    /// What it is, for people.
    pub const fn label(self) -> &'static str {
        use Feature::*;
        match self {
            ProgXdp => "XDP programs",
            ProgTc => "TC (sched_cls) programs",
            XdpAdjustHead => "XDP bpf_xdp_adjust_head",
            XdpAdjustTail => "XDP bpf_xdp_adjust_tail",
            XdpAdjustMeta => "XDP bpf_xdp_adjust_meta",
            XdpRedirect => "XDP bpf_redirect",
            XdpRedirectMap => "XDP bpf_redirect_map (XSKMAP)",
            XdpCsumDiff => "XDP bpf_csum_diff",
            XdpSkcLookupTcp => "XDP bpf_skc_lookup_tcp",
            XdpSkRelease => "XDP bpf_sk_release",
            XdpKtimeGetNs => "XDP bpf_ktime_get_ns",
            XdpMapLookup => "XDP map lookups",
            XdpRingbufOutput => "XDP bpf_ringbuf_output (aya-log)",
            TcAdjustRoom => "TC bpf_skb_adjust_room",
            TcEncapL2Eth => "TC adjust_room ENCAP_L2_ETH flags",
            TcRedirect => "TC bpf_redirect",
            TcGetHashRecalc => "TC bpf_get_hash_recalc",
            TcLoadBytes => "TC bpf_skb_load_bytes",
            TcStoreBytes => "TC bpf_skb_store_bytes",
            TcMapLookup => "TC map lookups",
            MapArray => "array maps",
            MapHash => "hash maps",
            MapLruHash => "LRU hash maps",
            MapPercpuArray => "per-CPU array maps",
            MapPercpuHash => "per-CPU hash maps",
            MapXsk => "XSKMAP",
            MapDevmapHash => "DEVMAP_HASH",
            MapRingbuf => "ring buffer maps",
            Tcx => "TCX links (TC attach)",
            AfXdp => "AF_XDP sockets",
            XdpOptions => "AF_XDP XDP_OPTIONS",
            TxSkbBudget => "AF_XDP XDP_MAX_TX_SKB_BUDGET",
            PreferBusyPoll => "SO_PREFER_BUSY_POLL",
            LiveFrames => "BPF_PROG_RUN live frames",
            Bpffs => "bpffs at /sys/fs/bpf",
        }
    }

    /// The oldest mainline kernel that has it, (major, minor).
    pub const fn since(self) -> (u32, u32) {
        use Feature::*;
        match self {
            ProgXdp => (4, 8),
            ProgTc => (4, 1),
            XdpAdjustHead => (4, 10),
            XdpAdjustTail => (4, 18),
            XdpAdjustMeta => (4, 15),
            XdpRedirect => (4, 14),
            XdpRedirectMap => (4, 18),
            XdpCsumDiff => (4, 6),
            XdpSkcLookupTcp => (5, 2),
            XdpSkRelease => (5, 2),
            XdpKtimeGetNs => (4, 8),
            XdpMapLookup => (4, 8),
            XdpRingbufOutput => (5, 8),
            TcAdjustRoom => (4, 13),
            TcEncapL2Eth => (5, 13),
            TcRedirect => (4, 4),
            TcGetHashRecalc => (4, 8),
            TcLoadBytes => (4, 5),
            TcStoreBytes => (4, 1),
            TcMapLookup => (4, 1),
            MapArray | MapHash => (3, 19),
            MapLruHash => (4, 10),
            MapPercpuArray | MapPercpuHash => (4, 6),
            MapXsk => (4, 18),
            MapDevmapHash => (5, 4),
            MapRingbuf => (5, 8),
            Tcx => (6, 6),
            AfXdp => (4, 18),
            XdpOptions => (5, 3),
            TxSkbBudget => (6, 17),
            PreferBusyPoll => (5, 11),
            LiveFrames => (5, 18),
            Bpffs => (4, 4),
        }
    }

    /// How much a run with `w` needs it.
    pub fn need(self, w: &Wanted) -> Need {
        use Feature::*;
        match self {
            XdpAdjustMeta => Need::Unused {
                why: "metadata is prepended with bpf_xdp_adjust_head",
            },
            Bpffs => Need::Unused {
                why: "nothing is pinned",
            },
            TcEncapL2Eth if w.fast => Need::Optional {
                cost: "no TC encapsulation: the kernel's sends go through the XDP program and workers one MTU frame at a time (no GSO super-packets, far lower TCP throughput)",
            },
            Tcx if w.fast => Need::Optional {
                cost: "the TC program is attached under a clsact qdisc (netlink); a killed run leaves it until the next run removes the overlay veth",
            },
            TcEncapL2Eth | Tcx => Need::Unused {
                why: "afxdp mode attaches no TC program",
            },
            XdpOptions => Need::Optional {
                cost: "whether a socket runs zero-copy cannot be read back; sockets are reported as copy mode",
            },
            TxSkbBudget => Need::Optional {
                cost: "copy-mode TX sends at most 32 frames per kick, so a batch takes more sendto() calls",
            },
            PreferBusyPoll if w.busy_poll => Need::Optional {
                cost: "[workers] busy_poll_us is ignored: workers wait in poll() and devices run on interrupts (more latency under load)",
            },
            PreferBusyPoll => Need::Unused {
                why: "busy_poll_us = 0",
            },
            LiveFrames if w.live_frames => Need::Optional {
                cost: "the bench cannot hand frames to XDP as a NIC would (xdp-gen --mode xdp-live); use skb frames",
            },
            LiveFrames => Need::Unused {
                why: "the bench's xdp-gen only",
            },
            _ => Need::Essential,
        }
    }
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Avail {
    Yes,
    /// The kernel knows it, but the probe program was refused for another reason (its
    /// arguments): available, the probe imprecise.
    Imprecise(String),
    /// Missing, and why the probe says so.
    No(String),
    /// The probe was not allowed (not root).
    Denied,
    /// The probe itself failed; nothing is known.
    Failed(String),
}

impl Avail {
    pub fn short(&self) -> &'static str {
        match self {
            Avail::Yes => "yes",
            Avail::Imprecise(_) => "yes?",
            Avail::No(_) => "no",
            Avail::Denied => "denied",
            Avail::Failed(_) => "?",
        }
    }
}

/// The running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// (major, minor), when the release parses.
    pub version: Option<(u32, u32)>,
}

impl Kernel {
    pub fn parse(release: &str) -> Kernel {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        let version = match (it.next().and_then(|s| s.parse().ok()), it.next()) {
            (Some(a), Some(b)) => b.parse().ok().map(|b| (a, b)),
            _ => None,
        };
        Kernel {
            release: release.to_string(),
            version,
        }
    }

    /// Whether the version is at least `major.minor` (false when unknown).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version.is_some_and(|v| v >= (major, minor))
    }
}

/// Everything `probe` found.
#[derive(Clone, Debug)]
pub struct Probed {
    pub kernel: Kernel,
    pub results: Vec<(Feature, Avail)>,
}

/// What the config asks of the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `[datapath] mode = "xdp"`: the TC egress program is attached.
    pub fast: bool,
    /// `[workers] busy_poll_us > 0`.
    pub busy_poll: bool,
    /// The bench's XDP-frame generator.
    pub live_frames: bool,
}

impl Wanted {
    pub fn from_config(cfg: &crate::config::Config) -> Wanted {
        Wanted {
            fast: cfg.datapath.mode == crate::config::DatapathMode::Xdp,
            busy_poll: cfg.workers.busy_poll_us > 0,
            live_frames: false,
        }
    }
}

/// What to do about one feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Use,
    Fallback { cost: &'static str },
    Fatal { line: String },
    NotUsed { why: &'static str },
}

/// One feature's probe result and decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub feature: Feature,
    pub avail: Avail,
    pub decision: Decision,
}

/// The decision table's answer for one run.
#[derive(Clone, Debug)]
pub struct Decisions {
    pub kernel: Kernel,
    pub rows: Vec<Row>,
}

fn since_text(f: Feature) -> String {
    let (a, b) = f.since();
    format!("{a}.{b}")
}

/// The one line for an essential feature that is missing.
fn fatal_line(f: Feature, kernel: &Kernel) -> String {
    format!(
        "kernel {} lacks {}, which the data plane needs: it came with Linux {}",
        kernel.release,
        f.label(),
        since_text(f)
    )
}

const DENIED_LINE: &str =
    "the kernel refused the feature probes (EPERM): run as root (CAP_BPF, CAP_NET_ADMIN)";

/// The decision table: probe results and the config's wishes to a choice per feature. Pure.
pub fn decide(p: &Probed, w: &Wanted) -> Decisions {
    let rows = p
        .results
        .iter()
        .map(|(f, a)| {
            let available = matches!(a, Avail::Yes | Avail::Imprecise(_));
            let decision = match (f.need(w), a) {
                (Need::Unused { why }, _) => Decision::NotUsed { why },
                (_, _) if available => Decision::Use,
                // Unknown: try it; what uses it reports its own failure.
                (_, Avail::Failed(_)) => Decision::Use,
                (Need::Essential, Avail::Denied) => Decision::Fatal {
                    line: DENIED_LINE.to_string(),
                },
                (Need::Essential, _) => Decision::Fatal {
                    line: fatal_line(*f, &p.kernel),
                },
                (Need::Optional { cost }, _) => Decision::Fallback { cost },
            };
            Row {
                feature: *f,
                avail: a.clone(),
                decision,
            }
        })
        .collect();
    Decisions {
        kernel: p.kernel.clone(),
        rows,
    }
}

/// Whether workers may set `XDP_MAX_TX_SKB_BUDGET` (true until decided otherwise, so tests
/// and the demo try it as before).
static TX_BUDGET: AtomicBool = AtomicBool::new(true);

/// See [`TX_BUDGET`].
pub fn tx_budget_usable() -> bool {
    TX_BUDGET.load(Ordering::Relaxed)
}

/// A feature's row as the stats carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureRow {
    pub feature: String,
    /// "yes", "yes?" (known, probe imprecise), "no", "denied", "?".
    pub available: String,
    /// "use", "fallback", "stop", "not used", or an XDP attach mode.
    pub decision: String,
    /// The cost of a fallback, why a feature is not used, or why it is missing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Decisions {
    pub fn decision(&self, f: Feature) -> Option<&Decision> {
        self.rows
            .iter()
            .find(|r| r.feature == f)
            .map(|r| &r.decision)
    }

    /// Whether `f` is to be used (a feature that was not probed counts as usable).
    pub fn uses(&self, f: Feature) -> bool {
        matches!(self.decision(f), Some(Decision::Use) | None)
    }

    /// The one line to stop with, if any essential feature is missing: the feature (or how
    /// many), the kernel found, the oldest kernel that has them all.
    pub fn fatal(&self) -> Option<String> {
        let fatal: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| matches!(r.decision, Decision::Fatal { .. }))
            .collect();
        if fatal.iter().any(|r| r.avail == Avail::Denied) {
            return Some(DENIED_LINE.to_string());
        }
        match fatal.as_slice() {
            [] => None,
            [one] => match &one.decision {
                Decision::Fatal { line } => Some(line.clone()),
                _ => None,
            },
            many => {
                let newest = many
                    .iter()
                    .map(|r| r.feature.since())
                    .max()
                    .unwrap_or((0, 0));
                let list: Vec<String> = many
                    .iter()
                    .map(|r| format!("{} ({})", r.feature.label(), since_text(r.feature)))
                    .collect();
                Some(format!(
                    "kernel {} lacks {} features the data plane needs: {}; it needs Linux {}.{} or newer",
                    self.kernel.release,
                    many.len(),
                    list.join(", "),
                    newest.0,
                    newest.1
                ))
            }
        }
    }

    /// Logs the outcome once: a summary, and one line per fallback.
    pub fn log(&self) {
        let used = self
            .rows
            .iter()
            .filter(|r| r.decision == Decision::Use)
            .count();
        tracing::info!(
            kernel = %self.kernel.release,
            "kernel features probed: {used} of {} in use",
            self.rows.len()
        );
        for r in &self.rows {
            if let Decision::Fallback { cost } = r.decision {
                let why = match &r.avail {
                    Avail::No(why) => format!(" ({why})"),
                    _ => String::new(),
                };
                tracing::info!(
                    "{} missing on kernel {}{why}, needs Linux {}; fallback: {cost}",
                    r.feature.label(),
                    self.kernel.release,
                    since_text(r.feature)
                );
            }
        }
    }

    /// Makes the decisions that code far from the daemon consults take effect.
    pub fn publish(&self) {
        TX_BUDGET.store(self.uses(Feature::TxSkbBudget), Ordering::Relaxed);
    }

    /// The rows for the stats.
    pub fn stats_rows(&self) -> Vec<FeatureRow> {
        self.rows
            .iter()
            .map(|r| {
                let (decision, note) = match &r.decision {
                    Decision::Use => (
                        "use",
                        match &r.avail {
                            Avail::Imprecise(n) => format!("probe imprecise: {n}"),
                            _ => String::new(),
                        },
                    ),
                    Decision::Fallback { cost } => ("fallback", (*cost).to_string()),
                    Decision::Fatal { line } => ("stop", line.clone()),
                    Decision::NotUsed { why } => ("not used", (*why).to_string()),
                };
                FeatureRow {
                    feature: r.feature.label().to_string(),
                    available: r.avail.short().to_string(),
                    decision: decision.to_string(),
                    note,
                }
            })
            .collect()
    }
}

/// The table `check-config` prints: feature, available, decision (and its cost or reason).
pub fn render_table(kernel: &str, rows: &[FeatureRow]) -> String {
    use std::fmt::Write;
    let mut s = format!("kernel {kernel}: features\n");
    let w = rows.iter().map(|r| r.feature.len()).max().unwrap_or(0);
    for r in rows {
        let _ = write!(s, "  {:<w$}  {:<6} {}", r.feature, r.available, r.decision);
        if !r.note.is_empty() && r.decision != "use" {
            let _ = write!(s, ": {}", r.note);
        }
        s.push('\n');
    }
    s
}

/// One line for `dataplane stats`: what is not simply in use.
pub fn render_summary(kernel: &str, rows: &[FeatureRow]) -> String {
    let used = rows.iter().filter(|r| r.decision == "use").count();
    let named = |d: &str| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.decision == d)
            .map(|r| r.feature.as_str())
            .collect()
    };
    let mut s = format!("kernel {kernel}: {used}/{} features in use", rows.len());
    for (what, d) in [("fallback", "fallback"), ("not used", "not used")] {
        let n = named(d);
        if !n.is_empty() {
            s.push_str(&format!("; {what}: {}", n.join(", ")));
        }
    }
    for r in rows.iter().filter(|r| r.decision.starts_with("xdp ")) {
        s.push_str(&format!("; {} {}", r.feature, r.decision));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Feature; 35] = {
        use Feature::*;
        [
            ProgXdp,
            ProgTc,
            XdpAdjustHead,
            XdpAdjustTail,
            XdpAdjustMeta,
            XdpRedirect,
            XdpRedirectMap,
            XdpCsumDiff,
            XdpSkcLookupTcp,
            XdpSkRelease,
            XdpKtimeGetNs,
            XdpMapLookup,
            XdpRingbufOutput,
            TcAdjustRoom,
            TcEncapL2Eth,
            TcRedirect,
            TcGetHashRecalc,
            TcLoadBytes,
            TcStoreBytes,
            TcMapLookup,
            MapArray,
            MapHash,
            MapLruHash,
            MapPercpuArray,
            MapPercpuHash,
            MapXsk,
            MapDevmapHash,
            MapRingbuf,
            Tcx,
            AfXdp,
            XdpOptions,
            TxSkbBudget,
            PreferBusyPoll,
            LiveFrames,
            Bpffs,
        ]
    };

    fn probed(release: &str, missing: &[Feature]) -> Probed {
        Probed {
            kernel: Kernel::parse(release),
            results: ALL
                .iter()
                .map(|&f| {
                    let a = if missing.contains(&f) {
                        Avail::No("unknown func".into())
                    } else {
                        Avail::Yes
                    };
                    (f, a)
                })
                .collect(),
        }
    }

    const FAST: Wanted = Wanted {
        fast: true,
        busy_poll: true,
        live_frames: false,
    };

    #[test]
    fn everything_there_is_used_except_what_the_run_does_not_need() {
        let d = decide(&probed("6.18.44-fc-v1300", &[]), &FAST);
        assert_eq!(d.fatal(), None);
        for r in &d.rows {
            let expect_unused = matches!(
                r.feature,
                Feature::XdpAdjustMeta | Feature::Bpffs | Feature::LiveFrames
            );
            assert_eq!(
                matches!(r.decision, Decision::NotUsed { .. }),
                expect_unused,
                "{:?}",
                r.feature
            );
        }
        assert!(d.uses(Feature::TxSkbBudget));
    }

    #[test]
    fn a_missing_helper_stops_with_one_line_naming_both_kernels() {
        let d = decide(
            &probed("5.1.0-15-amd64", &[Feature::XdpSkcLookupTcp]),
            &FAST,
        );
        let line = d.fatal().expect("fatal");
        assert_eq!(
            line,
            "kernel 5.1.0-15-amd64 lacks XDP bpf_skc_lookup_tcp, which the data plane needs: it came with Linux 5.2"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn several_missing_features_are_one_line_with_the_newest_floor() {
        let d = decide(
            &probed(
                "4.19.0",
                &[
                    Feature::XdpSkcLookupTcp,
                    Feature::MapRingbuf,
                    Feature::MapDevmapHash,
                ],
            ),
            &FAST,
        );
        let line = d.fatal().expect("fatal");
        assert!(line.starts_with("kernel 4.19.0 lacks 3 features"), "{line}");
        assert!(line.ends_with("it needs Linux 5.8 or newer"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn optional_features_fall_back_with_their_cost() {
        let d = decide(
            &probed(
                "6.12.0",
                &[
                    Feature::TxSkbBudget,
                    Feature::PreferBusyPoll,
                    Feature::TcEncapL2Eth,
                ],
            ),
            &FAST,
        );
        assert_eq!(d.fatal(), None);
        for f in [
            Feature::TxSkbBudget,
            Feature::PreferBusyPoll,
            Feature::TcEncapL2Eth,
        ] {
            assert!(
                matches!(d.decision(f), Some(Decision::Fallback { cost }) if !cost.is_empty()),
                "{f:?}"
            );
            assert!(!d.uses(f));
        }
    }

    #[test]
    fn what_the_config_does_not_ask_for_is_not_used_even_when_missing() {
        let w = Wanted {
            fast: false,
            busy_poll: false,
            live_frames: false,
        };
        let d = decide(
            &probed(
                "5.10.0",
                &[
                    Feature::PreferBusyPoll,
                    Feature::TcEncapL2Eth,
                    Feature::Tcx,
                    Feature::LiveFrames,
                    Feature::XdpAdjustMeta,
                    Feature::Bpffs,
                ],
            ),
            &w,
        );
        assert_eq!(d.fatal(), None);
        for f in [
            Feature::PreferBusyPoll,
            Feature::TcEncapL2Eth,
            Feature::Tcx,
            Feature::LiveFrames,
            Feature::XdpAdjustMeta,
            Feature::Bpffs,
        ] {
            assert!(
                matches!(d.decision(f), Some(Decision::NotUsed { .. })),
                "{f:?}"
            );
        }
        // The bench asks for live frames: missing, they are a fallback.
        let bench = Wanted {
            live_frames: true,
            ..w
        };
        let d = decide(&probed("5.10.0", &[Feature::LiveFrames]), &bench);
        assert!(matches!(
            d.decision(Feature::LiveFrames),
            Some(Decision::Fallback { .. })
        ));
    }

    #[test]
    fn an_imprecise_probe_counts_as_available_and_an_unknown_one_is_tried() {
        let mut p = probed("6.1.0", &[]);
        p.results[8].1 = Avail::Imprecise("R2 type=scalar expected=fp".into());
        p.results[9].1 = Avail::Failed("EMFILE".into());
        let d = decide(&p, &FAST);
        assert_eq!(d.fatal(), None);
        assert!(d.uses(p.results[8].0) && d.uses(p.results[9].0));
        let rows = d.stats_rows();
        assert_eq!(rows[8].available, "yes?");
        assert!(rows[8].note.contains("imprecise"));
    }

    #[test]
    fn refused_probes_stop_with_one_line_about_privileges() {
        let mut p = probed("6.18.0", &[]);
        for r in &mut p.results {
            r.1 = Avail::Denied;
        }
        let d = decide(&p, &FAST);
        assert_eq!(d.fatal().as_deref(), Some(DENIED_LINE));
        // Optional features are not stopped on: they fall back.
        assert!(matches!(
            d.decision(Feature::TxSkbBudget),
            Some(Decision::Fallback { .. })
        ));
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(Kernel::parse("6.18.44-fc-v1300").version, Some((6, 18)));
        assert_eq!(Kernel::parse("6.1.0-28-amd64").version, Some((6, 1)));
        assert_eq!(Kernel::parse("5.4").version, Some((5, 4)));
        assert_eq!(Kernel::parse("weird").version, None);
        assert!(Kernel::parse("6.6.0").at_least(6, 6));
        assert!(!Kernel::parse("6.5.9").at_least(6, 6));
        assert!(!Kernel::parse("x").at_least(3, 0));
    }

    #[test]
    fn the_table_and_the_summary_are_short() {
        let d = decide(&probed("6.18.0", &[Feature::TxSkbBudget]), &FAST);
        let rows = d.stats_rows();
        let t = render_table("6.18.0", &rows);
        assert_eq!(t.lines().count(), rows.len() + 1);
        assert!(t.contains("AF_XDP XDP_MAX_TX_SKB_BUDGET") && t.contains("fallback: copy-mode"));
        let s = render_summary("6.18.0", &rows);
        assert_eq!(s.lines().count(), 1);
        assert!(s.contains("fallback: AF_XDP XDP_MAX_TX_SKB_BUDGET"), "{s}");
    }

    /// On this host for real (root only): the probes run quickly, and what every kernel this
    /// project supports has is found. (What a particular build refuses, such as
    /// `bpf_xdp_adjust_meta` or live frames on some 6.18 builds, is not asserted.)
    #[test]
    fn this_host() {
        // SAFETY: a plain getter.
        if unsafe { libc::geteuid() } != 0 {
            panic!("needs root (the probes load BPF programs)");
        }
        let t = std::time::Instant::now();
        let p = probe();
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
        let get = |f: Feature| {
            p.results
                .iter()
                .find(|(g, _)| *g == f)
                .map(|(_, a)| a.clone())
        };
        assert_eq!(p.results.len(), ALL.len());
        for f in [
            Feature::ProgXdp,
            Feature::ProgTc,
            Feature::XdpAdjustHead,
            Feature::XdpAdjustTail,
            Feature::XdpRedirect,
            Feature::XdpRedirectMap,
            Feature::XdpCsumDiff,
            Feature::XdpSkcLookupTcp,
            Feature::XdpSkRelease,
            Feature::XdpKtimeGetNs,
            Feature::XdpMapLookup,
            Feature::XdpRingbufOutput,
            Feature::TcAdjustRoom,
            Feature::TcEncapL2Eth,
            Feature::TcGetHashRecalc,
            Feature::MapXsk,
            Feature::MapDevmapHash,
            Feature::MapRingbuf,
            Feature::AfXdp,
        ] {
            assert_eq!(get(f), Some(Avail::Yes), "{f:?}");
        }
        let d = decide(&p, &FAST);
        assert_eq!(d.fatal(), None);
    }
}
