//! TCP over the underlays clouds offer besides the plain one: jumbo (MTU 9000, as AWS and
//! Azure offer; overlay MTU 8950 on both) and IPv6 VTEPs (MTU 1500; overlay MTU 1430 on both).
//! The kernel VXLAN driver and our data plane each between a pair of their own behind one
//! router, 1 stream, interleaved repetitions.

use std::{collections::BTreeMap, path::Path};

use ovl_lab::Lab;

use super::{
    Route, Settings, SuiteError, lab,
    measure::{Servers, dst_addr, tcp},
    records::Measure,
};
use crate::report::{PathKind, Record, median};

/// The underlay MTU of the jumbo row.
pub const MTU: u32 = 9000;

/// Which underlay the row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underlay {
    /// IPv4 VTEPs, MTU 9000.
    Jumbo,
    /// IPv6 VTEPs, MTU 1500.
    Ipv6,
}

impl Underlay {
    pub(super) fn measurement(self) -> Measure {
        match self {
            Underlay::Jumbo => Measure::Tcp1Jumbo,
            Underlay::Ipv6 => Measure::Tcp1Ipv6,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Underlay::Jumbo => "over an MTU 9000 underlay",
            Underlay::Ipv6 => "over IPv6 VTEPs",
        }
    }
}

pub fn run(
    s: &Settings,
    underlay: Underlay,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Record>, SuiteError> {
    let paths = [PathKind::KernelVxlan, PathKind::OursVxlan];
    let routes: Vec<Route> = paths.iter().filter_map(|p| Route::of(*p)).collect();
    let prefix = ovl_lab::unique_prefix(match underlay {
        Underlay::Jumbo => "bj",
        Underlay::Ipv6 => "b6",
    });
    let mut spec = lab::spec(
        &prefix,
        Path::new(&s.bin("dataplane")?),
        s.workers.clone(),
        s.queues,
        &paths,
    );
    match underlay {
        Underlay::Jumbo => spec.underlay_mtu = MTU,
        Underlay::Ipv6 => spec.underlay_ipv6 = true,
    }
    let mut lab = Lab::up(&spec)?;
    let _servers = Servers::start(&mut lab, s, &routes)?;
    let mut gbps: BTreeMap<PathKind, Vec<f64>> = BTreeMap::new();
    let mut retransmits: BTreeMap<PathKind, Vec<f64>> = BTreeMap::new();
    for rep in 1..=s.reps {
        for r in &routes {
            let dst = dst_addr(&lab, r)?;
            let (res, _) = tcp(&lab, r, dst, 1, s.tcp_secs)?;
            let g = res.received_bps / 1e9;
            progress(&format!(
                "{} rep {rep}/{}: TCP 1 stream {} {g:.2} Gbit/s",
                r.path,
                s.reps,
                underlay.describe()
            ));
            gbps.entry(r.path).or_default().push(g);
            retransmits
                .entry(r.path)
                .or_default()
                .push(res.retransmits as f64);
        }
    }
    Ok(gbps
        .into_iter()
        .map(|(path, samples)| {
            let mut extra = BTreeMap::new();
            extra.insert(
                "retransmits".into(),
                median(retransmits.get(&path).map_or(&[][..], Vec::as_slice)).unwrap_or(0.0),
            );
            underlay.measurement().record(path, samples, extra, None)
        })
        .collect())
}
