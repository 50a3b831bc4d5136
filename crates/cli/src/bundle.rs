//! Reads evidence from disk: run directories (`run.json`, `requests.jsonl`, `server_metrics.jsonl`), loose
//! scrapes, logs and request files, into one `Evidence`. Live diagnosis writes a bundle and reads it back here.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use infer_doctor_core::aggregate::{AggregateConfig, RunContext};
use infer_doctor_core::{Evidence, RequestRecord, RunAggregate, ServerReadings};
use infer_doctor_load::scrape::read_jsonl;
use infer_doctor_observe::dialect::{self, Dialect};
use infer_doctor_observe::{exposition, gpu, logs, server};
use infer_doctor_report::RunDocument;
use serde_json::Value;

/// One run directory's contents.
pub struct RunDir {
    pub document: RunDocument,
    pub requests: Vec<RequestRecord>,
    pub scrapes: Vec<(f64, ServerReadings)>,
}

/// What was read, and what could not be (said in the report, never fatal when something else was read).
#[derive(Default)]
pub struct Gathered {
    pub evidence: Evidence,
    pub target: Value,
    pub problems: Vec<String>,
}

pub fn read_run_dir(dir: &Path) -> anyhow::Result<RunDir> {
    let path = dir.join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let document: RunDocument = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run.json", path.display()))?;
    let requests = match std::fs::read_to_string(dir.join("requests.jsonl")) {
        Ok(text) => read_requests(&dir.join("requests.jsonl"), &text)?,
        Err(_) => Vec::new(),
    };
    let scrapes_path = dir.join("server_metrics.jsonl");
    let scrapes = if scrapes_path.exists() {
        read_scrapes(&scrapes_path, None)?
    } else {
        Vec::new()
    };
    Ok(RunDir {
        document,
        requests,
        scrapes,
    })
}

/// What a run directory without a readable `run.json` still holds (either part may be empty).
pub struct Salvaged {
    pub requests: Vec<RequestRecord>,
    pub scrapes: Vec<(f64, ServerReadings)>,
}

pub fn salvage_run_dir(dir: &Path, forced: Option<Dialect>) -> Salvaged {
    let path = dir.join("requests.jsonl");
    let requests = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| read_requests(&path, &text).ok())
        .unwrap_or_default();
    let scrapes = read_scrapes(&dir.join("server_metrics.jsonl"), forced).unwrap_or_default();
    Salvaged { requests, scrapes }
}

/// `requests.jsonl`: one record per line; a bad line is an error naming the file and line (a truncated last
/// line, from a run killed mid-write, is skipped).
pub fn read_requests(path: &Path, text: &str) -> anyhow::Result<Vec<RequestRecord>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(rec) => out.push(rec),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(anyhow!(
                    "{}:{}: not a request record: {e}",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

/// `server_metrics.jsonl` as canonical readings in time order; failed scrapes and unknown dialects are gaps.
pub fn read_scrapes(
    path: &Path,
    forced: Option<Dialect>,
) -> anyhow::Result<Vec<(f64, ServerReadings)>> {
    let lines = read_jsonl(path)?;
    let source = path.display().to_string();
    let mut out: Vec<(f64, ServerReadings)> = lines
        .iter()
        .filter_map(|line| {
            let text = line.text.as_ref()?;
            let readings = dialect::read(&exposition::parse(text), forced, &source).ok()?;
            Some((line.t, readings))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// A client summary from bare request records (no run.json): the window is first send to last end.
pub fn summarize_requests(requests: &[RequestRecord]) -> Option<infer_doctor_core::RunSummary> {
    let first = requests.iter().map(|r| r.sent_us).min()?;
    let last = requests.iter().map(|r| r.end_us).max()?;
    let mut aggregate = RunAggregate::new(AggregateConfig::default());
    for r in requests {
        aggregate.add(r);
    }
    Some(aggregate.summarize(&RunContext {
        window_us: (first, last.max(first + 1)),
        wall_seconds: (last - first) as f64 / 1e6,
        cores: 1,
        ..Default::default()
    }))
}

/// Scrapes of one server given as files, earlier first: their times from the files' modification times, or
/// `interval` apart.
pub fn read_metrics_files(
    files: &[PathBuf],
    interval: Option<f64>,
    forced: Option<Dialect>,
    problems: &mut Vec<String>,
) -> Vec<(f64, ServerReadings)> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let first = files.first().and_then(|f| mtime(f));
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let t = match (interval, first, mtime(file)) {
            (Some(step), _, _) => i as f64 * step,
            (None, Some(first), Some(this)) => match this.duration_since(first) {
                Ok(d) => d.as_secs_f64(),
                Err(_) => {
                    problems.push(format!(
                        "{} is older than {}: give the scrapes in time order, or --interval",
                        file.display(),
                        files[0].display()
                    ));
                    continue;
                }
            },
            _ => i as f64,
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let scrape = exposition::parse(&text);
        if !scrape.errors.is_empty() {
            problems.push(format!(
                "{}: {} malformed lines skipped (first: {})",
                file.display(),
                scrape.errors.len(),
                scrape.errors[0]
            ));
        }
        match dialect::read(&scrape, forced, &file.display().to_string()) {
            Ok(readings) => out.push((t, readings)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if files.len() > 1 && interval.is_none() && out.windows(2).any(|w| w[1].0 <= w[0].0) {
        problems.push(
            "several --metrics files share a modification time: give --interval to say how far apart they are"
                .into(),
        );
    }
    out
}

/// The scrapes after the run's warm-up (when at least two remain): a crowd arriving at once queues for a
/// moment, and that moment is not how the server behaves under the load.
pub fn steady_scrapes(
    scrapes: &[(f64, ServerReadings)],
    requests: &[RequestRecord],
) -> Vec<(f64, ServerReadings)> {
    let warmup_end = requests
        .iter()
        .filter(|r| !r.measured())
        .map(|r| r.end_us)
        .max()
        .map_or(0.0, |us| us as f64 / 1e6);
    let steady: Vec<(f64, ServerReadings)> = scrapes
        .iter()
        .filter(|(t, _)| *t >= warmup_end)
        .cloned()
        .collect();
    if steady.len() >= 2 {
        steady
    } else {
        scrapes.to_vec()
    }
}

/// Adds a run directory's evidence: the loaded run (or, for `single/`, the single-user probe).
pub fn add_run(gathered: &mut Gathered, run: RunDir, single_user: bool) {
    let e = &mut gathered.evidence;
    if single_user {
        e.single_user = Some(run.document.summary);
        return;
    }
    e.exact_output_lengths |= run.document.config["ignore_eos"] == true;
    e.client = Some(run.document.summary);
    e.server = run
        .document
        .server
        .or_else(|| server::summarize(&run.scrapes));
    e.scrapes = run.scrapes;
    e.requests = run.requests;
    gathered.target = run.document.target;
}

/// Reads an nvidia-smi capture (`-q`, `-q -x` or `--query-gpu` CSV) into the evidence's GPUs, or a kernel log
/// into its XIDs; anything else is a problem named with its file and line, not a failure.
pub fn add_gpu_capture(gathered: &mut Gathered, path: &Path) {
    let name = path.display().to_string();
    // Captures are small: read whole, with invalid UTF-8 replaced.
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return gathered.problems.push(format!("{name}: {e}")),
    };
    match gpu::read_nvidia_smi(&text, &name) {
        Ok(gpus) => gathered.evidence.gpus.extend(gpus),
        Err(gpu::GpuReadError::UnknownFormat)
            if add_kernel_log(gathered, text.as_bytes(), &name) => {}
        Err(e) => gathered.problems.push(format!("{name}: {e}")),
    }
}

/// Reads an engine log into the evidence, and a kernel log's XIDs; unreadable or unrecognised logs are
/// problems, not failures. Logs can be large: each reader streams the file.
pub fn add_log(gathered: &mut Gathered, path: &Path) {
    let name = path.display().to_string();
    let open = || std::fs::File::open(path).map(std::io::BufReader::new);
    let read = open().and_then(|file| {
        let kernel = add_kernel_log(gathered, file, &name);
        Ok((kernel, logs::read_log(open()?)?))
    });
    match read {
        Ok((kernel, report)) => match report.facts() {
            Some(facts) => gathered.evidence.log = Some(facts),
            None if kernel => {}
            None => gathered.problems.push(format!(
                "{name}: no vLLM, SGLang, llama.cpp or kernel lines recognised ({} lines read)",
                report.lines.read
            )),
        },
        Err(e) => gathered.problems.push(format!("{name}: {e}")),
    }
}

/// Adds a kernel log's XIDs; false when the text is not a kernel log (or could not be read, said as a problem).
fn add_kernel_log(gathered: &mut Gathered, reader: impl std::io::BufRead, name: &str) -> bool {
    let xids = match gpu::read_kernel_log(reader, name) {
        Ok(Some(xids)) => xids,
        Ok(None) => return false,
        Err(e) => {
            gathered.problems.push(format!("{name}: {e}"));
            return false;
        }
    };
    let kernel = gathered
        .evidence
        .kernel
        .get_or_insert_with(Default::default);
    kernel.sources.push(name.to_string());
    kernel.xids.extend(xids);
    true
}
