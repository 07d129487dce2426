//! Benchmark records and what turns them into a report: Markdown, JSON and SVG charts.
//!
//! The runner fills a [`Run`] with one [`Record`] per (path, measurement); [`write_outputs`]
//! writes everything a user reads into one directory:
//!
//! | file | content |
//! |---|---|
//! | `run-<started_utc, ':' → '-'>.json` | the whole [`Run`], pretty JSON, kept per run |
//! | `latest.json` | the same, overwritten by every run |
//! | `records-latest.jsonl` | one [`RecordLine`] per line: a [`Record`]'s fields flattened, plus `started_utc` |
//! | `report.md` | [`markdown`] |
//! | `throughput.svg`, `frames.svg`, `latency.svg`, `failover.svg` | the charts that have data |
//!
//! Ratios against the kernel VXLAN driver (as the lab runs it, and at its best with TX
//! checksum offload on) are the result; absolute numbers on a shared VM are noise.

mod chart;
mod format;
mod markdown;
mod record;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chart::{ChartKind, nines};
pub use format::{ratio, sig3, signed};
pub use markdown::{
    Better, Goal, TARGETS, Target, TargetResult, Verdict, judged_paths, markdown, targets,
    verdict_text,
};
pub use record::{Machine, PathKind, Record, Run, measurement, median};

/// Why reading or writing the report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}, line {line}: JSON: {source}")]
    JsonLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("chart {chart}: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
}

/// One line of `records-latest.jsonl`: the record's own fields at the top level, with the run's
/// `started_utc` beside them, so lines from several runs can be concatenated and still told
/// apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    pub started_utc: String,
    #[serde(flatten)]
    pub record: Record,
}

/// The files [`write_outputs`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// `run-<started_utc>.json`.
    pub run_json: PathBuf,
    /// `latest.json`.
    pub latest_json: PathBuf,
    /// `records-latest.jsonl`.
    pub records_jsonl: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// The SVG charts, in [`ChartKind::ALL`] order, only those with data.
    pub charts: Vec<PathBuf>,
}

impl Outputs {
    /// Every file written.
    pub fn all(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = vec![
            &self.run_json,
            &self.latest_json,
            &self.records_jsonl,
            &self.markdown,
        ];
        v.extend(self.charts.iter().map(PathBuf::as_path));
        v
    }
}

/// `run-<started_utc>.json` with the characters file systems and shells dislike (':' above all)
/// replaced by '-'.
pub fn run_file_name(started_utc: &str) -> String {
    let safe: String = started_utc
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("run-{safe}.json")
}

/// Writes the run's JSON, JSON lines, Markdown report and charts into `dir` (created if
/// needed) and returns the paths written. Each file is written whole or not at all (written
/// beside, then renamed), so a reader never sees half a `latest.json`.
pub fn write_outputs(run: &Run, dir: &Path) -> Result<Outputs, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let json_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Json { path, source }
    };
    let run_json = dir.join(run_file_name(&run.started_utc));
    let pretty = serde_json::to_string_pretty(run).map_err(json_err(&run_json))? + "\n";
    write_file(&run_json, &pretty)?;
    let latest_json = dir.join("latest.json");
    write_file(&latest_json, &pretty)?;

    let records_jsonl = dir.join("records-latest.jsonl");
    let mut lines = String::new();
    for record in &run.records {
        let line = RecordLine {
            started_utc: run.started_utc.clone(),
            record: record.clone(),
        };
        lines.push_str(&serde_json::to_string(&line).map_err(json_err(&records_jsonl))?);
        lines.push('\n');
    }
    write_file(&records_jsonl, &lines)?;

    let markdown_path = dir.join("report.md");
    write_file(&markdown_path, &markdown(run))?;

    let mut charts = Vec::new();
    for kind in chart::planned(run) {
        let svg = chart::render(run, kind).map_err(|message| ReportError::Chart {
            chart: kind.file_name(),
            message,
        })?;
        let path = dir.join(kind.file_name());
        write_file(&path, &svg)?;
        charts.push(path);
    }

    Ok(Outputs {
        run_json,
        latest_json,
        records_jsonl,
        markdown: markdown_path,
        charts,
    })
}

/// Writes `content` to a temporary name beside `path`, then renames it over `path`.
fn write_file(path: &Path, content: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reads a run written by [`write_outputs`] (`latest.json` or a `run-*.json`).
pub fn load(path: impl AsRef<Path>) -> Result<Run, ReportError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `records-*.jsonl` file (blank lines are skipped).
pub fn load_records(path: impl AsRef<Path>) -> Result<Vec<RecordLine>, ReportError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ReportError::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Renders one chart as an SVG document, e.g. to serve or embed it elsewhere.
pub fn chart_svg(run: &Run, kind: ChartKind) -> Result<String, ReportError> {
    chart::render(run, kind).map_err(|message| ReportError::Chart {
        chart: kind.file_name(),
        message,
    })
}

/// The charts `run` has data for; [`write_outputs`] writes exactly these.
pub fn planned_charts(run: &Run) -> Vec<ChartKind> {
    chart::planned(run)
}
