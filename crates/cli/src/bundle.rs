//! Reads evidence from disk: run directories (`run.json`, `requests.jsonl`, `server_metrics.jsonl`), loose
//! scrapes, logs and request files, into one `Evidence`. Live diagnosis writes a bundle and reads it back here.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use infer_doctor_core::aggregate::{AggregateConfig, RunContext};
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::{
    DcgmDiag, Evidence, GpuNvLinkErrors, GpuState, RequestRecord, RunAggregate, ServerReadings,
};
use infer_doctor_host::{collect_env, dcgm_diag, gpu, kernel, kube, topo};
use infer_doctor_load::scrape::read_jsonl;
use infer_doctor_observe::dialect::{self, Dialect};
use infer_doctor_observe::{config, exposition, logs, server};
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

/// A run directory; with `forced`, its scrapes are read in that dialect and the server's view summarised anew
/// (run.json's holds the dialect detected at the time).
pub fn read_run_dir(
    dir: &Path,
    forced: Option<Dialect>,
    problems: &mut Vec<String>,
) -> anyhow::Result<RunDir> {
    let path = dir.join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let document: RunDocument = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run.json", path.display()))?;
    let requests = match std::fs::read_to_string(dir.join("requests.jsonl")) {
        Ok(text) => read_requests(&dir.join("requests.jsonl"), &text, problems),
        Err(_) => Vec::new(),
    };
    let scrapes_path = dir.join("server_metrics.jsonl");
    let scrapes = if scrapes_path.exists() {
        read_scrapes(&scrapes_path, forced)?
    } else {
        Vec::new()
    };
    let mut run = RunDir {
        document,
        requests,
        scrapes,
    };
    if forced.is_some() {
        run.document.server = server::summarize(&run.scrapes);
    }
    if run.document.sweep.is_some() {
        keep_headline_point(&mut run, &path, problems);
    }
    Ok(run)
}

/// A sweep's directory holds every load it measured in one requests.jsonl and one scrape series; pooled, they
/// would read as one run whose rate changes by design. Keeps the point run.json's summary describes.
fn keep_headline_point(run: &mut RunDir, run_json: &Path, problems: &mut Vec<String>) {
    use infer_doctor_load::sweep::{POINT_ID_BLOCK, SweepOutcome};
    let outcome = run
        .document
        .sweep
        .clone()
        .map(serde_json::from_value::<SweepOutcome>);
    let span = match outcome {
        Some(Ok(outcome)) => outcome.headline_point().1,
        Some(Err(e)) => {
            problems.push(format!(
                "{}: its sweep is unreadable ({e})",
                run_json.display()
            ));
            None
        }
        None => None,
    };
    let Some(span) = span else {
        problems.push(format!(
            "{}: a sweep whose points' spans were not recorded (an older infer-doctor): its loads are pooled",
            run_json.display()
        ));
        return;
    };
    let ids = span.first_id..span.first_id.saturating_add(POINT_ID_BLOCK);
    run.requests.retain(|r| ids.contains(&r.id));
    // The last scrape before the point is its baseline: counters grow from there. A span that ends before it
    // starts (a damaged run.json) keeps no scrape rather than panicking.
    let first = run
        .scrapes
        .iter()
        .rposition(|(t, _)| *t <= span.started_s)
        .unwrap_or(0);
    let after = run
        .scrapes
        .iter()
        .position(|(t, _)| *t > span.ended_s)
        .unwrap_or(run.scrapes.len())
        .max(first);
    run.scrapes = run.scrapes[first..after].to_vec();
    run.document.server = server::summarize(&run.scrapes);
    problems.push(format!(
        "{}: a sweep; diagnosing the load its summary describes ({} requests, {:.0}–{:.0} s into the sweep), not \
         every point pooled",
        run_json.display(),
        run.requests.len(),
        span.started_s,
        span.ended_s
    ));
}

/// What a run directory without a readable `run.json` still holds (either part may be empty).
pub struct Salvaged {
    pub requests: Vec<RequestRecord>,
    pub scrapes: Vec<(f64, ServerReadings)>,
}

pub fn salvage_run_dir(
    dir: &Path,
    forced: Option<Dialect>,
    problems: &mut Vec<String>,
) -> Salvaged {
    let path = dir.join("requests.jsonl");
    let requests = std::fs::read_to_string(&path)
        .map(|text| read_requests(&path, &text, problems))
        .unwrap_or_default();
    let scrapes = read_scrapes(&dir.join("server_metrics.jsonl"), forced).unwrap_or_default();
    Salvaged { requests, scrapes }
}

/// `requests.jsonl`: one record per line. A line that is not a record is skipped and named in `problems`, so one
/// corrupt line does not cost the others (a truncated last line, from a run killed mid-write, is skipped quietly).
pub fn read_requests(path: &Path, text: &str, problems: &mut Vec<String>) -> Vec<RequestRecord> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut skipped = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(rec) => out.push(rec),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => skipped.push(format!("line {}: {e}", i + 1)),
        }
    }
    if let Some(first) = skipped.first() {
        problems.push(format!(
            "{}: {} lines are not request records and were skipped (first: {first}); the other {} were read",
            path.display(),
            skipped.len(),
            out.len()
        ));
    }
    out
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

/// Loose scrapes of one server, in the order given, with their times when something says what they are.
pub struct MetricsFiles {
    pub readings: Vec<ServerReadings>,
    /// Seconds from the first scrape: `--interval` apart, or the files' modification times where those increase
    /// in the order given; `None` when neither says (copied, untarred or checked-out files share one time).
    pub times: Option<Vec<f64>>,
}

/// Files whose modification times are closer than this were written together (a copy, an untar, a checkout),
/// not scraped one after another.
const MIN_SCRAPE_GAP_SECONDS: f64 = 0.5;

impl MetricsFiles {
    /// The server's view: one scrape as it stands, several over their window (without a clock: peaks, increases
    /// and quantiles, no rates).
    pub fn window(&self) -> Option<ServerWindow> {
        match (self.readings.as_slice(), &self.times) {
            ([], _) => None,
            ([one], _) => Some(server::snapshot(one)),
            (_, Some(_)) => server::summarize(&self.timed()),
            (all, None) => server::summarize_unclocked(all),
        }
    }

    /// The scrapes on their clock, for timelines and trends; none without a clock, rather than invented times.
    pub fn timed(&self) -> Vec<(f64, ServerReadings)> {
        let Some(times) = &self.times else {
            return Vec::new();
        };
        times
            .iter()
            .copied()
            .zip(self.readings.iter().cloned())
            .collect()
    }
}

/// Reads `--metrics` files as scrapes of one server, earlier first. A file that is missing, empty or in no known
/// dialect is an error naming it: a clean bill from evidence that was never read would be a lie.
pub fn read_metrics_files(
    files: &[PathBuf],
    interval: Option<f64>,
    forced: Option<Dialect>,
    problems: &mut Vec<String>,
) -> anyhow::Result<MetricsFiles> {
    if let Some(step) = interval.filter(|s| *s < 0.001) {
        return Err(anyhow!(
            "--interval {step} s: scrapes closer than a millisecond give no window; give the seconds between them"
        ));
    }
    let mut readings = Vec::with_capacity(files.len());
    for file in files {
        let name = file.display().to_string();
        let text = read_evidence_file(file)?;
        let scrape = exposition::parse(&text);
        if !scrape.errors.is_empty() {
            problems.push(format!(
                "{name}: {} malformed lines skipped (first: {})",
                scrape.errors.len(),
                scrape.errors[0]
            ));
        }
        let readings_of_file = dialect::read(&scrape, forced, &name)?;
        problems.extend(
            readings_of_file
                .warnings
                .iter()
                .map(|w| format!("{name}: {w}")),
        );
        readings.push(readings_of_file);
    }
    let times = match interval {
        Some(step) => Some((0..files.len()).map(|i| i as f64 * step).collect()),
        None => scrape_times_from_mtimes(files),
    };
    if files.len() > 1 && interval.is_none() && times.is_some() {
        // Modification times are when each file was written, which a slow copy also sets: say where rates come from.
        problems.push(format!(
            "the {} --metrics files' times are their modification times; if they were copied one by one rather \
             than scraped so, give --interval SECONDS",
            files.len()
        ));
    }
    if files.len() > 1 && times.is_none() {
        problems.push(format!(
            "the {} --metrics files' modification times do not increase in the order given (copied, untarred or \
             checked out?): read in that order; peaks, increases and quantiles are shown, rates need --interval \
             SECONDS",
            files.len()
        ));
    }
    Ok(MetricsFiles { readings, times })
}

/// Seconds from the first file's modification time, when every file is written well after the one before it.
fn scrape_times_from_mtimes(files: &[PathBuf]) -> Option<Vec<f64>> {
    let mtimes: Vec<std::time::SystemTime> = files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect::<Option<_>>()?;
    let first = *mtimes.first()?;
    let times: Vec<f64> = mtimes
        .iter()
        .map(|t| t.duration_since(first).ok().map(|d| d.as_secs_f64()))
        .collect::<Option<_>>()?;
    times
        .windows(2)
        .all(|w| w[1] - w[0] >= MIN_SCRAPE_GAP_SECONDS)
        .then_some(times)
}

/// The whole text of an evidence file the user named: an error naming it when it is missing, unreadable or empty.
pub fn read_evidence_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(anyhow!("{}: the file is empty", path.display()));
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
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
    e.shared_prefixes = shared_prefixes(&run.document.config).or(e.shared_prefixes);
    e.client = Some(run.document.summary);
    e.server = run
        .document
        .server
        .or_else(|| server::summarize(&run.scrapes));
    e.scrapes = run.scrapes;
    e.requests = run.requests;
    // Runs recorded before the path was timed have none; theirs stays unknown.
    e.network = serde_json::from_value(run.document.target["network"].clone()).ok();
    gathered.target = run.document.target;
}

/// Whether a bench run's prompts shared prefixes: `--prefix-tokens` says yes; synthetic prompts without it say
/// no; a dataset's prompts may or may not.
fn shared_prefixes(config: &Value) -> Option<bool> {
    if config["prefix_tokens"].as_u64().is_some_and(|p| p > 0) {
        return Some(true);
    }
    (config["dataset"].is_null() && config["prefix_tokens"].is_u64()).then_some(false)
}

/// The server's own scrapes (time-ordered, seconds on one clock) as evidence: their window, and the scrapes
/// themselves for the rules that look at the server over time.
pub fn set_server_scrapes(evidence: &mut Evidence, scrapes: Vec<(f64, ServerReadings)>) {
    evidence.server = server::summarize(&scrapes);
    evidence.scrapes = scrapes;
}

/// Reads a bundle's `host.json` (the GPU host's facts, as `collect` writes them) into the evidence. A bundle
/// without one is fine; one that cannot be read is an error naming it, since diagnosing without it would
/// silently leave every host line unknown.
pub fn add_host_facts(gathered: &mut Gathered, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("host.json");
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        read => read.with_context(|| format!("reading {name}"))?,
    };
    let facts = serde_json::from_str(&text)
        .with_context(|| format!("{name}: not the host facts `infer-doctor collect` writes"))?;
    gathered.evidence.host = Some(facts);
    Ok(())
}

/// Reads a bundle's `k8s/pod.json` (`collect --log k8s:…`) into the evidence's pod. A bundle without one is
/// fine; one that cannot be read is an error naming it and the field, never a pod read as healthy.
pub fn add_pod(gathered: &mut Gathered, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(kube::POD_JSON);
    if !path.exists() {
        return Ok(());
    }
    let name = path.display().to_string();
    let text = read_evidence_file(&path)?;
    let pod = kube::read_pod(&text, &name).map_err(|e| anyhow!("{name}: {e}"))?;
    gathered.evidence.pod = Some(pod);
    Ok(())
}

/// Reads an nvidia-smi capture (`-q`, `-q -x` or `--query-gpu` CSV), rocm-smi's JSON or a dcgm-exporter scrape
/// into the evidence's GPUs, `topo -m` into its topology, `nvlink -s` into its NVLinks, `nvlink -e` into its
/// NVLink error counters, `dcgmi diag` (JSON or table) into its DCGM diagnostic, or a kernel log into its XIDs; anything else is an error naming the file (and line,
/// where the format says).
pub fn add_gpu_capture(gathered: &mut Gathered, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    // Captures are small: read whole, with invalid UTF-8 replaced.
    let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(anyhow!("{name}: the file is empty"));
    }
    let text = String::from_utf8_lossy(&bytes);
    let evidence = &mut gathered.evidence;
    match dcgm_diag::read_dcgm_diag(&text) {
        Ok(tests) => {
            evidence.dcgm_diag = Some(DcgmDiag {
                source: name,
                tests,
            });
            return Ok(());
        }
        Err(dcgm_diag::DiagReadError::NotDcgmDiag) => {}
        Err(e) => return Err(anyhow!("{name}: {e}")),
    }
    match gpu::read_capture(&text, &name) {
        Ok(gpus) => {
            for state in gpus {
                add_gpu_state(&mut evidence.gpus, state);
            }
            return Ok(());
        }
        Err(gpu::GpuReadError::UnknownFormat) => {}
        Err(e) => return Err(anyhow!("{name}: {e}")),
    }
    match topo::read_topology(&text, &name) {
        Ok(topology) => {
            evidence.topology = Some(topology);
            return Ok(());
        }
        Err(topo::TopoReadError::NotTopology) => {}
        Err(e) => return Err(anyhow!("{name}: {e}")),
    }
    match topo::read_nvlink_errors(&text) {
        Ok(counters) => {
            add_nvlink_errors(evidence, path, name, counters);
            return Ok(());
        }
        Err(topo::TopoReadError::NotNvLinkErrors) => {}
        Err(e) => return Err(anyhow!("{name}: {e}")),
    }
    match topo::read_nvlinks(&text) {
        Ok(links) => evidence.nvlinks = Some((name, links)),
        Err(topo::TopoReadError::NotNvLink)
            if add_kernel_log(gathered, text.as_bytes(), &name)? => {}
        Err(topo::TopoReadError::NotNvLink) => {
            return Err(anyhow!("{name}: {}", gpu::GpuReadError::UnknownFormat));
        }
        Err(e) => return Err(anyhow!("{name}: {e}")),
    }
    Ok(())
}

/// Files the NVLink error counters as the reading before the probe or after it. `collect` names the later one
/// `nvlink-errors-after.txt`; any other reading fills the earlier slot first, so two files given in order
/// (`--gpu before.txt --gpu after.txt`) make a window too, whichever order a bundle's names sort in.
fn add_nvlink_errors(
    evidence: &mut Evidence,
    path: &Path,
    name: String,
    counters: Vec<GpuNvLinkErrors>,
) {
    let named_after = path
        .file_stem()
        .is_some_and(|stem| stem.to_string_lossy().ends_with("after"));
    let slot = if named_after || evidence.nvlink_errors_before.is_some() {
        &mut evidence.nvlink_errors_after
    } else {
        &mut evidence.nvlink_errors_before
    };
    *slot = Some((name, counters));
}

/// Adds one reading of a GPU. Several readings of the same GPU (`-q -x` once, `--query-gpu` every second through
/// a probe) make one: the busiest, since clocks and links are judged under load, with what it lacks taken from
/// the others (the XML's memory-repair flags, say).
fn add_gpu_state(gpus: &mut Vec<GpuState>, state: GpuState) {
    let Some(seen) = gpus.iter_mut().find(|g| g.bus_id == state.bus_id) else {
        gpus.push(state);
        return;
    };
    let busier =
        state.utilization_percent.unwrap_or(-1.0) > seen.utilization_percent.unwrap_or(-1.0);
    let (mut kept, other) = if busier {
        (state, seen.clone())
    } else {
        (seen.clone(), state)
    };
    if let (Ok(serde_json::Value::Object(mut fields)), Ok(serde_json::Value::Object(extra))) =
        (serde_json::to_value(&kept), serde_json::to_value(&other))
    {
        for (key, value) in extra {
            let entry = fields.entry(key).or_insert(serde_json::Value::Null);
            if entry.is_null() {
                *entry = value;
            }
        }
        if let Ok(merged) = serde_json::from_value(serde_json::Value::Object(fields)) {
            kept = merged;
        }
    }
    *seen = kept;
}

/// Reads what a `collect` bundle's manifest says the files cannot: which GPU tools hung past their deadline.
pub fn add_manifest(gathered: &mut Gathered, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let manifest: Value = serde_json::from_str(&read_evidence_file(path)?)
        .map_err(|e| anyhow!("{name}: line {}: {e}", e.line()))?;
    let items = manifest["items"]
        .as_array()
        .ok_or_else(|| anyhow!("{name}: no `items` list"))?;
    gathered.evidence.gpu_tool_timeouts = items
        .iter()
        .filter(|item| item["status"] == "timed_out")
        .filter_map(|item| item["source"].as_str())
        .filter(|source| source.starts_with("nvidia-smi"))
        .map(str::to_string)
        .collect();
    Ok(())
}

/// Reads `vllm collect-env` output into the evidence's environment, and its GPU topology when it has one (a
/// topology from `topo -m` itself is kept: it is the fuller capture).
pub fn add_collect_env(gathered: &mut Gathered, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let text = read_evidence_file(path)?;
    let (facts, topology) =
        collect_env::read_collect_env(&text, &name).map_err(|e| anyhow!("{name}: {e}"))?;
    let evidence = &mut gathered.evidence;
    // The server process's own variables, when a bundle has them too, say more than the shell's.
    let mut facts = facts;
    if let Some(server) = evidence.environment.take() {
        facts.variables.extend(server.variables);
        facts.server_process |= server.server_process;
    }
    evidence.environment = Some(facts);
    if evidence.topology.is_none() {
        evidence.topology = topology;
    }
    Ok(())
}

/// Reads profiler traces (files, or directories of them, one file per rank) into the evidence's trace part.
pub fn add_traces(gathered: &mut Gathered, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let report =
        infer_doctor_trace::analyse_inputs(inputs, &infer_doctor_trace::Options::default())?;
    set_trace(gathered, (&report).into());
    Ok(())
}

/// The evidence's trace part, with each rank's cut file said: what was analysed is not the whole profile.
pub fn set_trace(gathered: &mut Gathered, facts: infer_doctor_core::TraceFacts) {
    for rank in &facts.ranks {
        if let Some(cut) = &rank.cut {
            gathered.problems.push(format!("{}: {cut}", rank.source));
        }
    }
    gathered.evidence.trace = Some(facts);
}

/// Reads the server process's environment (`NAME=value` lines, as `collect --pid` writes them) into the
/// evidence's environment, beside what a collect-env output said; secret values stay out.
pub fn add_server_environment(gathered: &mut Gathered, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let text = read_evidence_file(path)?;
    let environment =
        gathered
            .evidence
            .environment
            .get_or_insert_with(|| infer_doctor_core::EnvFacts {
                source: name.clone(),
                ..Default::default()
            });
    environment.server_process = true;
    for (line, text) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("{name}: line {}: not NAME=value", line + 1))?;
        let value = if infer_doctor_core::secret::is_secret_name(key) {
            "***"
        } else {
            value
        };
        environment
            .variables
            .insert(key.to_string(), value.to_string());
    }
    Ok(())
}

/// The server's settings from every source gathered: its metrics' `cache_config_info` (the run's scrapes, else
/// `collect`'s `server/metrics-after.prom`), its log, `/v1/models` (the run's target, else a bundle's
/// `server/models.json`) and the command line `collect` recorded (`server/cmdline.txt`, else the pod's
/// container). Live and offline diagnosis both end here, once everything else is read; sources that disagree
/// are said.
pub fn add_server_config(gathered: &mut Gathered, dir: Option<&Path>) {
    let read = |name: &str| {
        dir.map(|d| d.join(name))
            .filter(|p| p.is_file())
            .and_then(|p| read_evidence_file(&p).ok())
    };
    let command_line = read("server/cmdline.txt");
    let models = gathered
        .target
        .get("models")
        .filter(|m| !m.is_null())
        .cloned()
        .or_else(|| read("server/models.json").and_then(|t| serde_json::from_str(&t).ok()));
    // vLLM's scheduler defaults depend on the GPU: the one named for the floors, else the one captured.
    let e = &gathered.evidence;
    let gpu = e
        .hardware
        .as_ref()
        .map(|h| h.gpu.clone())
        .or_else(|| e.gpus.first().map(|g| g.name.clone()));
    let batch_defaults = gpu
        .and_then(|name| infer_doctor_plan::Gpu::by_name(&name).ok())
        .map(|gpu| {
            let limits = gpu.default_batch_limits();
            config::BatchDefaults {
                max_num_seqs: limits.max_num_seqs,
                max_num_batched_tokens: limits.max_num_batched_tokens,
            }
        });
    // collect's own scrapes, for a bundle without a probe's.
    let cache_config = ["server/metrics-after.prom", "server/metrics-before.prom"]
        .iter()
        .filter_map(|name| read(name))
        .filter_map(|text| dialect::read(&exposition::parse(&text), None, "server/").ok())
        .map(|readings| readings.cache_config)
        .find(|labels| !labels.is_empty());
    let (found, conflicts) = config::assemble(
        e,
        config::Sources {
            command_line: command_line.as_deref(),
            models: models.as_ref(),
            cache_config: cache_config.as_ref(),
            batch_defaults,
        },
    );
    gathered.evidence.config = found;
    gathered.problems.extend(
        conflicts
            .into_iter()
            .map(|c| format!("the server's settings disagree: {c}")),
    );
}

/// Reads an engine log into the evidence, and a kernel log's XIDs; a log that cannot be read, or in which no
/// engine's or kernel's lines are recognised, is an error naming it. Logs can be large: each reader streams the file.
pub fn add_log(gathered: &mut Gathered, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .with_context(|| format!("reading {name}"))
    };
    let kernel = add_kernel_log(gathered, open()?, &name)?;
    let report = logs::read_log(open()?).with_context(|| format!("reading {name}"))?;
    // A kernel log's own error lines are the driver's, read as XIDs, not an unknown engine's failures.
    match report
        .facts()
        .filter(|_| !kernel || report.server.is_some())
    {
        Some(facts) => gathered.evidence.log = Some(facts),
        None if kernel => {}
        None if report.lines.read == 0 => return Err(anyhow!("{name}: the file is empty")),
        None => {
            return Err(anyhow!(
                "{name}: no vLLM, SGLang, llama.cpp or kernel lines recognised ({} lines read)",
                report.lines.read
            ));
        }
    }
    Ok(())
}

/// Adds a kernel log's XIDs, OOM kills and hung tasks; false when the text is not a kernel log.
fn add_kernel_log(
    gathered: &mut Gathered,
    reader: impl std::io::BufRead,
    name: &str,
) -> anyhow::Result<bool> {
    let Some(facts) =
        kernel::read_kernel_log(reader, name).with_context(|| format!("reading {name}"))?
    else {
        return Ok(false);
    };
    match &mut gathered.evidence.kernel {
        Some(kernel) => kernel.absorb(facts),
        none => *none = Some(facts),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_of_one_gpu_keep_the_busiest_and_fill_in_what_it_lacks() {
        let xml = GpuState {
            bus_id: "00000000:00:09.0".into(),
            utilization_percent: Some(0.0),
            sm_clock_mhz: Some(345.0),
            remapped_rows_pending: Some(true),
            ..Default::default()
        };
        let busy = GpuState {
            bus_id: xml.bus_id.clone(),
            utilization_percent: Some(97.0),
            sm_clock_mhz: Some(1980.0),
            ..Default::default()
        };
        let other = GpuState {
            bus_id: "00000000:00:0A.0".into(),
            ..Default::default()
        };
        let mut gpus = Vec::new();
        for state in [xml, busy, other] {
            add_gpu_state(&mut gpus, state);
        }
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].sm_clock_mhz, Some(1980.0));
        assert_eq!(gpus[0].remapped_rows_pending, Some(true));
    }
}
