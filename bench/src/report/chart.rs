//! SVG charts drawn with plotters' SVG backend. Text is laid out by plotters' built-in size
//! estimate (no font files, no system libraries); the browser renders it in its sans-serif.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::sig3;
use super::record::{PathKind, Run, measurement as m};

/// The charts the report can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// Grouped bars of TCP 1 and 2 streams per path, min–max whiskers.
    Throughput,
    /// Bars of 64 B frames delivered and per busy core, per path.
    Frames,
    /// Latency distribution per path on a "nines" percentile axis.
    Latency,
    /// Every failover trial's gap, per kind and path.
    Failover,
}

impl ChartKind {
    pub const ALL: [ChartKind; 4] = [
        ChartKind::Throughput,
        ChartKind::Frames,
        ChartKind::Latency,
        ChartKind::Failover,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ChartKind::Throughput => "throughput.svg",
            ChartKind::Frames => "frames.svg",
            ChartKind::Latency => "latency.svg",
            ChartKind::Failover => "failover.svg",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ChartKind::Throughput => "TCP throughput (iperf3, median, whiskers min–max)",
            ChartKind::Frames => "64 B frames delivered (median, whiskers min–max)",
            ChartKind::Latency => "Round-trip latency distribution",
            ChartKind::Failover => "Failover: client-visible gap of every trial",
        }
    }
}

/// The charts `run` has data for (a chart without data is not drawn).
pub fn planned(run: &Run) -> Vec<ChartKind> {
    ChartKind::ALL
        .into_iter()
        .filter(|k| match k {
            ChartKind::Throughput => !bar_groups(run, *k).is_empty(),
            ChartKind::Frames => !bar_groups(run, *k).is_empty(),
            ChartKind::Latency => !latency_curves(run).is_empty(),
            ChartKind::Failover => !failover_trials(run).is_empty(),
        })
        .collect()
}

/// The SVG document of one chart. Errors are plotters' drawing errors, as text.
pub fn render(run: &Run, kind: ChartKind) -> Result<String, String> {
    let mut svg = String::new();
    {
        let backend = SVGBackend::with_string(&mut svg, SIZE);
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        match kind {
            ChartKind::Throughput => {
                draw_bars(&root, kind.title(), "Gbit/s", &bar_groups(run, kind))?
            }
            ChartKind::Frames => {
                draw_bars(&root, kind.title(), "Mframes/s", &bar_groups(run, kind))?
            }
            ChartKind::Latency => draw_latency(&root, kind.title(), &latency_curves(run))?,
            ChartKind::Failover => draw_failover(&root, kind.title(), &failover_trials(run))?,
        }
        root.present().map_err(text)?;
    }
    Ok(svg)
}

const SIZE: (u32, u32) = (960, 560);
const FONT: &str = "sans-serif";

/// An axis tick label: 3 significant digits without trailing zeros ("2.5", "20", "0.05").
fn tick(v: &f64) -> String {
    let s = sig3(*v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Head room above the tallest bar or point, so the legend in the upper corner clears it.
const HEADROOM: f64 = 1.4;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn color(p: PathKind) -> RGBColor {
    let (r, g, b) = p.color();
    RGBColor(r, g, b)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A numeric axis with the tick marks we choose (plotters' own key-point decorator on f64
/// drops the label formatter), linear or logarithmic.
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    fn linear(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
        Axis {
            lo,
            hi,
            log: false,
            ticks,
        }
    }

    /// A linear axis from 0 with about seven round ticks (1, 2, 2.5 or 5 times a power of ten).
    fn from_zero(hi: f64) -> Axis {
        let raw = hi / 7.0;
        let pow = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|f| f * pow)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * pow);
        let ticks = (0..)
            .map(|i| f64::from(i) * step)
            .take_while(|v| *v <= hi * (1.0 + 1e-9))
            .take(100)
            .collect();
        Axis::linear(0.0, hi, ticks)
    }

    fn log(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
        Axis {
            lo,
            hi,
            log: true,
            ticks,
        }
    }

    /// Where `v` sits between `lo` (0) and `hi` (1).
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = self.fraction(*v);
        let t = if t.is_finite() { t } else { 0.0 };
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Light (minor) grid lines: none; bold ones and labels: our ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// One bar: a path's value and, when it has several samples, their range.
#[derive(Debug, Clone)]
struct Bar {
    path: PathKind,
    value: f64,
    range: Option<(f64, f64)>,
}

/// (group label, bars) for a bar chart; groups without any bar are left out.
fn bar_groups(run: &Run, kind: ChartKind) -> Vec<(String, Vec<Bar>)> {
    let median_bar = |p: PathKind, meas: &str| {
        let r = run.record(p, meas)?;
        let value = r.value()?;
        let range = r.sample_range().filter(|_| r.samples.len() > 1);
        Some(Bar {
            path: p,
            value,
            range,
        })
    };
    let groups: Vec<(String, Vec<Bar>)> = match kind {
        ChartKind::Throughput => vec![
            (
                "TCP 1 stream".to_string(),
                PathKind::ALL
                    .into_iter()
                    .filter_map(|p| median_bar(p, m::TCP_1))
                    .collect(),
            ),
            (
                "TCP 2 streams".to_string(),
                PathKind::ALL
                    .into_iter()
                    .filter_map(|p| median_bar(p, m::TCP_2))
                    .collect(),
            ),
        ],
        ChartKind::Frames => vec![
            (
                "64 B frames delivered".to_string(),
                PathKind::ALL
                    .into_iter()
                    .filter_map(|p| median_bar(p, m::FRAMES_64))
                    .collect(),
            ),
            (
                "per busy CPU core".to_string(),
                PathKind::ALL
                    .into_iter()
                    .filter_map(|p| {
                        let r = run.record(p, m::FRAMES_64)?;
                        Some(Bar {
                            path: p,
                            value: r.extra_value("per_core")?,
                            range: None,
                        })
                    })
                    .collect(),
            ),
        ],
        ChartKind::Latency | ChartKind::Failover => Vec::new(),
    };
    groups.into_iter().filter(|(_, b)| !b.is_empty()).collect()
}

/// A chart with one category per label along x (at 0, 1, ...), a linear y from zero to
/// `y_top`, and the mesh drawn: the frame both the bar and the failover charts use.
fn category_chart<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    labels: &[String],
    y_top: f64,
    y_desc: &str,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<Axis, Axis>>, String> {
    let n = labels.len().max(1) as f64;
    let centers: Vec<f64> = (0..labels.len()).map(|i| i as f64).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(Axis::linear(-0.5, n - 0.5, centers), Axis::from_zero(y_top))
        .map_err(text)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if i >= 0.0 && (x - i).abs() < 1e-9 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&label_of)
        .y_label_formatter(&tick)
        .y_desc(y_desc)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE)
        .draw()
        .map_err(text)?;
    Ok(chart)
}

/// Grouped bars: one group per metric, one bar per path in the path's colour, the value above
/// each bar, min–max whiskers where there are several samples.
fn draw_bars(
    root: &Area<'_>,
    title: &str,
    unit: &str,
    groups: &[(String, Vec<Bar>)],
) -> Result<(), String> {
    let y_top = groups
        .iter()
        .flat_map(|(_, bars)| bars)
        .map(|b| b.range.map_or(b.value, |(_, hi)| hi.max(b.value)))
        .fold(0.0_f64, f64::max);
    let y_top = if y_top > 0.0 { y_top * HEADROOM } else { 1.0 };
    let labels: Vec<String> = groups.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = category_chart(root, title, &labels, y_top, unit)?;

    // Every group has a slot for each path that appears anywhere, so a path sits at the same
    // place in every group.
    let paths: Vec<PathKind> = PathKind::ALL
        .into_iter()
        .filter(|p| {
            groups
                .iter()
                .any(|(_, bars)| bars.iter().any(|b| b.path == *p))
        })
        .collect();
    // Slots of at most a quarter of a group, so two paths do not make two slabs.
    let slot = 0.8 / paths.len().max(3) as f64;
    let first = -slot * paths.len() as f64 / 2.0;
    let value_style = TextStyle::from((FONT, 14).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));

    for (pi, &p) in paths.iter().enumerate() {
        let c = color(p);
        let x_of = |gi: usize| gi as f64 + first + slot * (pi as f64 + 0.5);
        let bars: Vec<(f64, &Bar)> = groups
            .iter()
            .enumerate()
            .filter_map(|(gi, (_, bars))| bars.iter().find(|b| b.path == p).map(|b| (x_of(gi), b)))
            .collect();
        let half = slot * 0.42;
        chart
            .draw_series(
                bars.iter().map(|(x, b)| {
                    Rectangle::new([(x - half, 0.0), (x + half, b.value)], c.filled())
                }),
            )
            .map_err(text)?
            .label(p.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        // Whiskers: a vertical line from min to max with caps.
        let whisker = BLACK.stroke_width(2);
        for (x, b) in &bars {
            if let Some((lo, hi)) = b.range {
                let cap = half * 0.45;
                chart
                    .draw_series([
                        PathElement::new(vec![(*x, lo), (*x, hi)], whisker),
                        PathElement::new(vec![(x - cap, lo), (x + cap, lo)], whisker),
                        PathElement::new(vec![(x - cap, hi), (x + cap, hi)], whisker),
                    ])
                    .map_err(text)?;
            }
            let top = b.range.map_or(b.value, |(_, hi)| hi.max(b.value));
            chart
                .draw_series([Text::new(
                    sig3(b.value),
                    (*x, top + y_top * 0.015),
                    value_style.clone(),
                )])
                .map_err(text)?;
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn draw_legend<'a, 's: 'a>(
    chart: &mut ChartContext<'a, SVGBackend<'s>, Cartesian2d<Axis, Axis>>,
    pos: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(pos)
        .margin(12)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(text)
}

/// x of a percentile on the "nines" scale: 50 → 0.30, 90 → 1, 99 → 2, 99.9 → 3.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

/// Percentiles above this are not drawn (p100, the maximum, is at infinity on a nines axis).
const MAX_PERCENTILE: f64 = 99.999;

/// (path, [(nines x, µs)]) for every path with latency data: the record's curve, or else its
/// p50/p90/p99/p99.9 side values. Points must be positive for the log axis.
fn latency_curves(run: &Run) -> Vec<(PathKind, Vec<(f64, f64)>)> {
    PathKind::ALL
        .into_iter()
        .filter_map(|p| {
            let r = run.record(p, m::RTT)?;
            let mut pts: Vec<(f64, f64)> = if r.curve.is_empty() {
                [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p999")]
                    .iter()
                    .filter_map(|(pc, key)| Some((*pc, r.extra_value(key)?)))
                    .collect()
            } else {
                r.curve.clone()
            };
            pts.retain(|(pc, us)| {
                pc.is_finite() && *pc >= 0.0 && *pc <= MAX_PERCENTILE && us.is_finite() && *us > 0.0
            });
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let pts: Vec<(f64, f64)> = pts.into_iter().map(|(pc, us)| (nines(pc), us)).collect();
            (!pts.is_empty()).then_some((p, pts))
        })
        .collect()
}

/// Ticks for a log axis over [lo, hi] (lo > 0): 1-2-5 per decade, finer when the range is
/// narrow, so there are at least three.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const MANTISSAS: [&[f64]; 3] = [
        &[1.0, 2.0, 5.0],
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    for mantissas in MANTISSAS {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi && out.len() < 100 {
            for f in mantissas {
                let v = decade * f;
                if v >= lo && v <= hi {
                    out.push(v);
                }
            }
            decade *= 10.0;
        }
        if out.len() >= 3 {
            return out;
        }
    }
    vec![lo, (lo * hi).sqrt(), hi]
}

/// A percentile label: 0.30103 → "p50", 3 → "p99.9".
fn percentile_label(x: f64) -> String {
    let pc = 100.0 * (1.0 - 10f64.powf(-x));
    let s = format!("{pc:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{s}")
}

fn draw_latency(
    root: &Area<'_>,
    title: &str,
    curves: &[(PathKind, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let all = curves.iter().flat_map(|(_, pts)| pts.iter());
    let (mut y_lo, mut y_hi, mut x_hi) = (f64::MAX, 0.0_f64, 0.0_f64);
    for (x, y) in all {
        y_lo = y_lo.min(*y);
        y_hi = y_hi.max(*y);
        x_hi = x_hi.max(*x);
    }
    if y_hi <= 0.0 {
        (y_lo, y_hi) = (1.0, 10.0);
    }
    let (y_lo, y_hi) = (y_lo / 1.25, y_hi * 1.25);
    // At least up to p99.99, and always to a whole number of nines.
    let x_hi = x_hi.max(4.0).ceil();
    let mut x_ticks = vec![0.0, nines(50.0)];
    x_ticks.extend((1..=x_hi as u32).map(f64::from));
    let y_ticks = log_ticks(y_lo, y_hi);

    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .margin_right(40)
        .build_cartesian_2d(
            Axis::linear(0.0, x_hi, x_ticks),
            Axis::log(y_lo, y_hi, y_ticks),
        )
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| {
            if *x == 0.0 {
                "p0".to_string()
            } else {
                percentile_label(*x)
            }
        })
        .y_label_formatter(&tick)
        .x_desc("percentile (nines scale: each step is ten times rarer)")
        .y_desc("round trip (µs, log scale)")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .draw()
        .map_err(text)?;

    for (p, pts) in curves {
        let c = color(*p);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))
            .map_err(text)?
            .label(p.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        // Few points (the p50/p90/p99/p99.9 fallback) are worth marking.
        if pts.len() <= 12 {
            chart
                .draw_series(pts.iter().map(|pt| Circle::new(*pt, 4, c.filled())))
                .map_err(text)?;
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// (kind label, path, every trial's gap in ms, median).
type Trials = (&'static str, PathKind, Vec<f64>, f64);

fn failover_trials(run: &Run) -> Vec<Trials> {
    let mut out = Vec::new();
    for (label, meas) in [
        ("planned switchover", m::FAILOVER_PLANNED),
        ("unplanned failover", m::FAILOVER_UNPLANNED),
    ] {
        for p in PathKind::ALL {
            if let Some(r) = run.record(p, meas)
                && let Some(v) = r.value()
            {
                let gaps: Vec<f64> = r
                    .samples
                    .iter()
                    .copied()
                    .filter(|g| g.is_finite())
                    .collect();
                out.push((label, p, gaps, v));
            }
        }
    }
    out
}

fn draw_failover(root: &Area<'_>, title: &str, trials: &[Trials]) -> Result<(), String> {
    let kinds: Vec<&str> = {
        let mut k: Vec<&str> = trials.iter().map(|t| t.0).collect();
        k.dedup();
        k
    };
    let paths: Vec<PathKind> = PathKind::ALL
        .into_iter()
        .filter(|p| trials.iter().any(|t| t.1 == *p))
        .collect();
    let y_top = trials
        .iter()
        .flat_map(|t| t.2.iter().copied().chain([t.3]))
        .fold(0.0_f64, f64::max);
    let y_top = if y_top > 0.0 { y_top * HEADROOM } else { 1.0 };
    let labels: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let mut chart = category_chart(root, title, &labels, y_top, "gap seen by the client (ms)")?;

    let slot = 0.8 / paths.len().max(3) as f64;
    let first = -slot * paths.len() as f64 / 2.0;
    for (pi, &p) in paths.iter().enumerate() {
        let c = color(p);
        let mut points = Vec::new();
        let mut medians = Vec::new();
        for (ki, kind) in kinds.iter().enumerate() {
            let Some((_, _, gaps, med)) = trials.iter().find(|t| t.0 == *kind && t.1 == p) else {
                continue;
            };
            let center = ki as f64 + first + slot * (pi as f64 + 0.5);
            // Trials spread across the slot in run order, so equal gaps stay visible.
            let spread = slot * 0.6;
            let count = gaps.len();
            for (i, g) in gaps.iter().enumerate() {
                let off = if count > 1 {
                    spread * (i as f64 / (count - 1) as f64 - 0.5)
                } else {
                    0.0
                };
                points.push((center + off, *g));
            }
            medians.push((center, spread, *med));
        }
        chart
            .draw_series(
                points
                    .iter()
                    .map(|pt| Circle::new(*pt, 4, c.mix(0.75).filled())),
            )
            .map_err(text)?
            .label(p.to_string())
            .legend(move |(x, y)| Circle::new((x + 7, y), 5, c.filled()));
        for (center, spread, med) in medians {
            let half = spread * 0.7;
            chart
                .draw_series([PathElement::new(
                    vec![(center - half, med), (center + half, med)],
                    BLACK.stroke_width(2),
                )])
                .map_err(text)?;
        }
    }
    chart
        .draw_series([Text::new(
            "black line: median",
            (-0.45, y_top * 0.97),
            TextStyle::from((FONT, 14).into_font()).color(&BLACK.mix(0.7)),
        )])
        .map_err(text)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(99.99) - 4.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(percentile_label(nines(50.0)), "p50");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(4.0), "p99.99");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick(&20.0), "20");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.5), "0.5");
        assert_eq!(tick(&0.05), "0.05");
        assert_eq!(tick(&0.0), "0");
        assert_eq!(tick(&1500.0), "1500");
    }

    #[test]
    fn round_linear_ticks() {
        let a = Axis::from_zero(15.12);
        assert_eq!(a.ticks, vec![0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]);
        let a = Axis::from_zero(12.74);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        let a = Axis::from_zero(0.7);
        assert_eq!(a.ticks.len(), 8, "{:?}", a.ticks);
        assert_eq!(a.map(&0.0, (500, 0)), 500);
        assert_eq!(a.map(&0.7, (500, 0)), 0);
        let l = Axis::log(10.0, 1000.0, vec![]);
        assert_eq!(l.map(&100.0, (0, 100)), 50);
    }

    #[test]
    fn log_axis_ticks() {
        assert_eq!(
            log_ticks(15.0, 600.0),
            vec![20.0, 50.0, 100.0, 200.0, 500.0]
        );
        assert_eq!(log_ticks(24.0, 44.0), vec![25.0, 30.0, 40.0]);
        assert_eq!(log_ticks(1.0, 2.0), vec![1.0, 1.5, 2.0]);
    }
}
