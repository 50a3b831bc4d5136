//! PyTorch profiler traces, read fast: a streaming reader of Kineto's Chrome-trace JSON and the analyses Meta's
//! HolisticTraceAnalysis defines (temporal, idle, kernel, overlap, launch, memory, queue), per rank and per step.

pub mod analysis;
pub mod diff;
pub mod event;
pub mod facts;
pub mod intervals;
pub mod kernel;
pub mod read;
pub mod steps;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use analysis::{Options, RankAnalysis, analyse};
pub use read::{Trace, read_trace};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a profiler trace: {reason}", path.display())]
    NotATrace { path: PathBuf, reason: String },
    #[error("{}: no trace files in this directory (*.json, *.json.gz)", path.display())]
    EmptyDirectory { path: PathBuf },
}

/// The traces named, and the files of a profiler directory left out with why: files as given; in a directory (a
/// profiler's output folder) its traces by name, the profiler's own `*.pt.trace.json[.gz]` when there are any
/// (beside them lie other files, some JSON), else every `*.json[.gz]`. vLLM writes its API server's profile
/// (`*.async_llm.*`, the frontend's Python) beside the workers' traces: it is no rank, so it is set aside unless
/// it is all there is.
fn trace_files(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>), TraceError> {
    let mut files = Vec::new();
    let mut set_aside = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let listing = std::fs::read_dir(input).map_err(|source| TraceError::Open {
            path: input.clone(),
            source,
        })?;
        let mut json: Vec<PathBuf> = listing
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|p| p.is_file() && name_ends(p, &[".json", ".json.gz"]))
            .collect();
        json.sort();
        let profiler: Vec<PathBuf> = json
            .iter()
            .filter(|p| name_ends(p, &[".pt.trace.json", ".pt.trace.json.gz"]))
            .cloned()
            .collect();
        let found = if profiler.is_empty() { json } else { profiler };
        let (frontend, ranks): (Vec<PathBuf>, Vec<PathBuf>) = found
            .into_iter()
            .partition(|p| file_name(p).contains(".async_llm."));
        if ranks.is_empty() {
            if frontend.is_empty() {
                return Err(TraceError::EmptyDirectory {
                    path: input.clone(),
                });
            }
            files.extend(frontend);
            continue;
        }
        set_aside.extend(frontend.iter().map(|p| {
            format!(
                "{}: vLLM's API-server profile (the frontend's Python, no engine rank) is left out; name the file \
                 to read it alone",
                p.display()
            )
        }));
        files.extend(ranks);
    }
    Ok((files, set_aside))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn name_ends(path: &Path, endings: &[&str]) -> bool {
    let name = file_name(path);
    endings.iter().any(|e| name.ends_with(e))
}

/// Every rank of one profiling session.
#[derive(Clone, Debug, Serialize)]
pub struct TraceReport {
    pub ranks: Vec<RankAnalysis>,
    pub options: Options,
    /// How far apart the ranks' first events are in Unix time (`baseTimeNanoseconds`), where every trace carries
    /// it: hosts' clocks apart, or profilers started apart. Per-rank figures stand whatever it is; a comparison
    /// across ranks must allow for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_start_spread_ms: Option<f64>,
    /// Files of a profiler directory that are no rank's trace, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<String>,
}

/// Reads and analyses each trace named (files, or profiler directories) as one rank, in order.
pub fn analyse_inputs(inputs: &[PathBuf], options: &Options) -> Result<TraceReport, TraceError> {
    let (files, set_aside) = trace_files(inputs)?;
    let mut ranks = Vec::with_capacity(files.len());
    let mut starts = Vec::new();
    for file in &files {
        let trace = read_trace(file)?;
        if let (Some(base), Some((first, _))) = (trace.base_time_ns, trace.span) {
            starts.push(base as f64 / 1e6 + first / 1e3);
        }
        ranks.push(analyse(&trace, options));
    }
    let rank_start_spread_ms = (starts.len() == files.len() && starts.len() > 1).then(|| {
        let (min, max) = starts
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        max - min
    });
    Ok(TraceReport {
        ranks,
        options: *options,
        rank_start_spread_ms,
        set_aside,
    })
}
