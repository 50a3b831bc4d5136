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

/// The traces named: files as given, and in a directory (a profiler's output folder) its traces by name: the
/// profiler's own `*.pt.trace.json[.gz]` when there are any (beside them lie other files, some JSON), else every
/// `*.json[.gz]`.
pub fn trace_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, TraceError> {
    let mut files = Vec::new();
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
        if found.is_empty() {
            return Err(TraceError::EmptyDirectory {
                path: input.clone(),
            });
        }
        files.extend(found);
    }
    Ok(files)
}

fn name_ends(path: &Path, endings: &[&str]) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
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
}

/// Reads and analyses each file as one rank, in order.
pub fn analyse_files(files: &[PathBuf], options: &Options) -> Result<TraceReport, TraceError> {
    let mut ranks = Vec::with_capacity(files.len());
    let mut starts = Vec::new();
    for file in files {
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
    })
}
