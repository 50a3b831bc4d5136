//! `infer-doctor diagnose` and `report`: gather evidence (live: a single-user probe and a loaded probe written
//! as a bundle; offline: a bundle, scrapes, a log, request records), run the playbook, and render the result.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Parser;
use infer_doctor_core::{Evidence, GpuState, HardwareFacts, RunSummary, Severity, WorkloadFacts};
use infer_doctor_diagnose::{Thresholds, diagnose};
use infer_doctor_observe::dialect::Dialect;
use infer_doctor_observe::server;
use infer_doctor_report::DiagnosisDocument;
use infer_doctor_report::diagnosis::{escalation, render_term};

use crate::args::{Cli, Command, DiagnoseArgs, ReportArgs, ReportFormat};
use crate::bundle::{self, Gathered};
use crate::{Failure, exit};
use infer_doctor_host::archive;
use infer_doctor_host::kube::POD_CAPTURE_PREFIX;

/// The longest unpacking a bundle's tarball may take (a 60 s probe's bundle is a few MB).
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The single-user probe's size: enough for a stable TTFT and ITL, short enough to leave the budget for load.
const SINGLE_USER_REQUESTS: u64 = 5;

pub async fn run(args: Box<DiagnoseArgs>) -> Result<u8, Failure> {
    let thresholds = thresholds(args.thresholds.as_deref())?;
    let forced = crate::server_watch::forced_dialect(args.dialect.as_deref())?;
    let mut scratch = None;
    let bundle_dir: Option<PathBuf> = match (args.url.as_slice(), &args.bundle) {
        ([], Some(file)) if archive::is_archive(file) => {
            let tmp = tempfile::tempdir().map_err(|e| Failure::usage(anyhow::Error::from(e)))?;
            let root = archive::unpack(file, tmp.path(), ARCHIVE_TIMEOUT)
                .map_err(|why| Failure::usage(anyhow!("--bundle {}: {why}", file.display())))?;
            // Kept until the diagnosis is done: the bundle is read from it.
            scratch.replace(tmp);
            Some(root)
        }
        ([], Some(dir)) => Some(dir.clone()),
        ([], None) => None,
        (urls, _) => {
            let dir = match &args.out {
                Some(dir) => dir.clone(),
                None => {
                    let tmp =
                        tempfile::tempdir().map_err(|e| Failure::usage(anyhow::Error::from(e)))?;
                    let path = tmp.path().to_path_buf();
                    scratch = Some(tmp);
                    path
                }
            };
            let probed = match urls {
                [url] => probe(url, &args, args.concurrency, &dir).await?,
                replicas => probe_replicas(replicas, &args, &dir).await?,
            };
            if probed == Probed::Interrupted {
                // What was measured stays on disk; a diagnosis of a probe cut short would judge the cut.
                let kept = match scratch.take() {
                    Some(tmp) => tmp.keep(),
                    None => dir,
                };
                if !args.quiet {
                    eprintln!(
                        "interrupted: no diagnosis; what was measured is in {} (diagnose it with --bundle)",
                        kept.display()
                    );
                }
                return Ok(exit::INTERRUPTED);
            }
            // The output probes ask about the model and its serving settings, which every replica shares: the
            // first one answers for the fleet.
            let first = &urls[0];
            if args.determinism {
                super::output_probes::determinism(first, &args, &dir).await?;
            }
            if args.template {
                super::output_probes::template(first, &args, &dir).await?;
            }
            Some(dir)
        }
    };
    if bundle_dir.is_none()
        && args.prometheus.is_none()
        && args.metrics.is_empty()
        && args.scheduler_metrics.is_empty()
        && args.log.is_none()
        && args.requests.is_none()
        && args.gpu.is_empty()
        && args.env.is_none()
        && args.trace.is_empty()
    {
        return Err(Failure::usage(anyhow!(
            "nothing to diagnose: give --url URL (live), --bundle DIR, --prometheus URL (a fleet), or any of \
             --metrics FILE.., --scheduler-metrics FILE.., --log FILE, --requests FILE, --gpu FILE.., --env FILE, --trace FILE.."
        )));
    }
    let mut gathered = Gathered::default();
    if let Some(dir) = &bundle_dir {
        read_bundle(&mut gathered, dir, forced)?;
    }
    if let Some(url) = &args.prometheus {
        let view =
            crate::cmd::metrics::fleet(url, &args.selector, args.window, &args.group_by, forced)
                .await?;
        // Kept in the bundle, so diagnosing it again (--bundle) judges the same replicas over the same window.
        if let Some(dir) = bundle_dir.as_deref().or(args.out.as_deref()) {
            let path = dir.join(FLEET_FILE);
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&view)?))
                .map_err(|e| Failure::usage(anyhow!("writing {}: {e}", path.display())))?;
        }
        set_fleet(&mut gathered, view);
    }
    add_loose_evidence(&mut gathered, &args, forced)?;
    if !args.url.is_empty() {
        gathered.evidence.workload = Some(WorkloadFacts {
            input_tokens: f64::from(args.prefix_tokens + args.input_tokens),
            output_tokens: f64::from(args.output_tokens),
            concurrency: args.concurrency,
            prefix_tokens: Some(f64::from(args.prefix_tokens)),
        });
        gathered.evidence.shared_prefixes = Some(args.prefix_tokens > 0);
        gathered.evidence.exact_output_lengths = args.ignore_eos;
    }
    gathered.evidence.hardware = hardware(&args, &gathered.evidence.gpus, &mut gathered.problems)?;
    bundle::add_server_config(&mut gathered, bundle_dir.as_deref());
    let document = document(&gathered, &thresholds, args.slo.as_deref());
    if let Some(dir) = &args.out {
        write_bundle_reports(dir, &document).map_err(Failure::usage)?;
    }
    // A bundle diagnosed again replaces its earlier row rather than adding the same run twice.
    let kept = args
        .out
        .as_deref()
        .or(args.bundle.as_deref().filter(|b| b.is_dir()));
    crate::history::record(
        &args.history,
        &crate::history::from_diagnosis(&document, bundle_dir.as_deref()),
        kept,
        args.quiet,
    );
    // The terminal report carries the warnings itself; the other formats keep stdout for the document.
    if !args.quiet && args.format != ReportFormat::Term {
        for p in &document.warnings {
            eprintln!("warning: {p}");
        }
    }
    emit(&document, args.format, None)?;
    Ok(verdict_code(&document))
}

pub async fn report(args: &ReportArgs) -> Result<u8, Failure> {
    let stored = args.dir.join("diagnosis.json");
    let plan = args.dir.join("plan.json");
    if !stored.exists() && plan.exists() {
        return crate::cmd::plan::report(&plan, args.format, args.output.as_deref());
    }
    let document = if stored.exists() {
        let text = std::fs::read_to_string(&stored)
            .with_context(|| format!("reading {}", stored.display()))
            .map_err(Failure::usage)?;
        serde_json::from_str::<DiagnosisDocument>(&text)
            .with_context(|| format!("{}: not a diagnosis.json", stored.display()))
            .map_err(Failure::usage)?
    } else {
        let mut gathered = Gathered::default();
        read_bundle(&mut gathered, &args.dir, None)?;
        bundle::add_server_config(&mut gathered, Some(&args.dir));
        document(&gathered, &Thresholds::default(), None)
    };
    if args.format != ReportFormat::Term || args.output.is_some() {
        for p in &document.warnings {
            eprintln!("warning: {p}");
        }
    }
    emit(&document, args.format, args.output.as_deref())?;
    Ok(exit::OK)
}

/// The playbook's thresholds: the defaults, or a TOML file's overrides (bad keys named with their line).
pub fn thresholds(path: Option<&Path>) -> Result<Thresholds, Failure> {
    let Some(path) = path else {
        return Ok(Thresholds::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::usage)?;
    Thresholds::from_toml(&text).map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))
}

/// `--budget`, with a floor that leaves the probes room for a request or two.
fn probe_budget(args: &DiagnoseArgs) -> Duration {
    args.budget.max(Duration::from_secs(5))
}

/// How the live probes ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probed {
    Done,
    /// Ctrl-C: the probes stopped, and what they measured is written.
    Interrupted,
}

/// Runs the two probes into `dir/single` and `dir/loaded`, keeping the whole run inside the budget: a probe still
/// running when its share of the budget ends is stopped, and its requests in flight count as interrupted (the
/// client's cut-off, not the server's failure).
pub(crate) async fn probe(
    url: &str,
    args: &DiagnoseArgs,
    concurrency: u64,
    dir: &Path,
) -> Result<Probed, Failure> {
    let started = Instant::now();
    let budget = probe_budget(args);
    // Checked now, not after the single-user probe has spent its share of the budget.
    crate::cmd::bench::in_flight("--concurrency", Some(concurrency))?;
    let ctrl_c = crate::cmd::bench::cancel_on_ctrl_c();
    let single = bench_args(url, args, 1, SINGLE_USER_REQUESTS, &dir.join("single"))?;
    if !args.quiet {
        eprintln!("diagnose: single-user probe ({SINGLE_USER_REQUESTS} requests)");
    }
    let single_run =
        crate::cmd::bench::execute(&single, ctrl_c.or_at(started + budget / 3)).await?;
    if ctrl_c.is_cancelled() {
        return Ok(Probed::Interrupted);
    }
    // Size the loaded probe from what one request cost alone, so it fits in what is left of the budget.
    let left = budget.saturating_sub(started.elapsed());
    let e2e = single_run
        .document
        .summary
        .latency
        .e2e
        .map_or(1.0, |s| s.p50 / 1e3)
        .max(0.001);
    // Under load each request takes longer than alone; assume three times, and at least one round.
    let rounds = (left.as_secs_f64() / (3.0 * e2e)).floor().max(1.0) as u64;
    let requests = rounds
        .saturating_mul(concurrency)
        .clamp(concurrency, args.max_requests.max(concurrency));
    let loaded = bench_args(url, args, concurrency, requests, &dir.join("loaded"))?;
    if !args.quiet {
        eprintln!("diagnose: loaded probe of {url} ({concurrency} users, {requests} requests)");
    }
    crate::cmd::bench::execute(&loaded, ctrl_c.or_at(started + budget)).await?;
    Ok(if ctrl_c.is_cancelled() {
        Probed::Interrupted
    } else {
        Probed::Done
    })
}

/// Where a probe of several replicas keeps each one's run, `replica-0`, `replica-1`, … under it.
const REPLICAS_DIR: &str = "replicas";

/// Several `--url`s, the replicas of one fleet: each probed at the same time with its share of the users (as an
/// even router would split them), each into its own run directory. The model is learnt once from the replicas
/// that answer, so a dead replica is still probed: its failed requests and scrapes are what say it is down. Only
/// when every replica's probe fails is the diagnosis a failure.
async fn probe_replicas(
    urls: &[String],
    args: &DiagnoseArgs,
    dir: &Path,
) -> Result<Probed, Failure> {
    if args.metrics_url.is_some() {
        return Err(Failure::usage(anyhow!(
            "--metrics-url names one server's metrics: with several --url, each replica's /metrics is scraped"
        )));
    }
    let count = urls.len() as u64;
    if args.concurrency < count {
        return Err(Failure::usage(anyhow!(
            "--concurrency {} is fewer users than the {count} replicas: give each at least one",
            args.concurrency
        )));
    }
    let mut shared = args.clone();
    // The requests are shared out like the users.
    shared.max_requests = (args.max_requests / count).max(1);
    if shared.model.is_none() {
        shared.model = Some(first_model(urls, args).await?);
    }
    let shared = &shared;
    let probes = urls.iter().enumerate().map(|(i, url)| {
        let users = infer_doctor_core::shard::ShardSpec {
            index: i as u64,
            count,
        }
        .share(args.concurrency);
        let replica = dir.join(REPLICAS_DIR).join(format!("replica-{i}"));
        async move {
            let outcome = probe(url, shared, users, &replica).await;
            if let Err(failure) = &outcome {
                let written = std::fs::create_dir_all(&replica).and_then(|()| {
                    std::fs::write(replica.join(PROBE_FAILED), format!("{:#}", failure.error))
                });
                if let Err(e) = written {
                    return Err(Failure::usage(anyhow!(
                        "writing {}: {e}",
                        replica.display()
                    )));
                }
            }
            outcome
        }
    });
    let outcomes = futures_util::future::join_all(probes).await;
    if outcomes.iter().all(Result::is_err) {
        return outcomes.into_iter().next().unwrap_or(Ok(Probed::Done));
    }
    Ok(
        if outcomes
            .iter()
            .any(|o| matches!(o, Ok(Probed::Interrupted)))
        {
            Probed::Interrupted
        } else {
            Probed::Done
        },
    )
}

/// Why a replica's probe failed, kept in its directory for the diagnosis (and `--bundle`) to say.
const PROBE_FAILED: &str = "probe_failed.txt";

/// The model the first answering replica lists (`/v1/models`), for every replica's probe to ask for.
async fn first_model(urls: &[String], args: &DiagnoseArgs) -> Result<String, Failure> {
    let key = args
        .api_key
        .clone()
        .map(infer_doctor_load::target::ApiKey::new)
        .transpose()
        .map_err(Failure::usage)?
        .flatten();
    let mut why = Vec::new();
    for url in urls {
        let target = std::sync::Arc::new(
            infer_doctor_load::Target::parse(url, key.clone()).map_err(Failure::usage)?,
        );
        let client = infer_doctor_load::http::HttpClient::new(
            target.clone(),
            infer_doctor_load::http::ClientOptions {
                http2: false,
                pool_size: 1,
                connect_timeout: Duration::from_secs(5),
            },
        );
        let info = infer_doctor_load::probe::probe(&client, Duration::from_secs(10)).await;
        if let Some(model) = info.model_ids.first() {
            return Ok(model.clone());
        }
        why.push(format!(
            "{}: {}",
            target.display_url(),
            info.models_error.as_deref().unwrap_or("it listed no model")
        ));
    }
    Err(Failure::usage(anyhow!(
        "no replica named its model (/v1/models): {}; pass --model",
        why.join("; ")
    )))
}

/// A bench command line for one probe, parsed by the same definitions users type.
pub(crate) fn bench_args(
    url: &str,
    args: &DiagnoseArgs,
    concurrency: u64,
    requests: u64,
    out: &Path,
) -> Result<crate::args::BenchArgs, Failure> {
    // OS strings throughout: a path that is not UTF-8 must reach the probe's bench as it is, not mangled.
    let mut argv: Vec<OsString> = [
        "infer-doctor",
        "bench",
        "--quiet",
        "--url",
        url,
        "--scrape-interval",
        "500ms",
    ]
    .map(OsString::from)
    .to_vec();
    if args.ignore_eos {
        argv.push("--ignore-eos".into());
    }
    let mut flag = |name: &str, value: OsString| {
        argv.push(name.into());
        argv.push(value);
    };
    flag("--concurrency", concurrency.to_string().into());
    flag("--num-requests", requests.to_string().into());
    if concurrency > 1 {
        // The first wave arrives at once and queues for a moment: measured, but kept out of the statistics.
        flag("--warmup", concurrency.to_string().into());
    }
    // bench's own idle limit judges a stall; a request still queued or streaming when the budget ends is only cut
    // off (interrupted): a saturated server's long queue is what diagnose is for, not its failure.
    flag("--input-tokens", args.input_tokens.to_string().into());
    flag("--output-tokens", args.output_tokens.to_string().into());
    flag("--out", out.into());
    if args.prefix_tokens > 0 {
        flag("--prefix-tokens", args.prefix_tokens.to_string().into());
        flag("--prefix-groups", args.prefix_groups.to_string().into());
    }
    if let Some(tokenizer) = &args.tokenizer {
        flag("--tokenizer", tokenizer.into());
    }
    if let Some(path) = &args.thresholds {
        flag("--thresholds", path.into());
    }
    for (name, value) in [
        ("--model", &args.model),
        ("--api-key", &args.api_key),
        ("--metrics-url", &args.metrics_url),
        ("--dialect", &args.dialect),
    ] {
        if let Some(v) = value {
            flag(name, v.into());
        }
    }
    match Cli::try_parse_from(argv)?.command {
        Command::Bench(b) => Ok(*b),
        _ => unreachable!("a bench command line parses as bench"),
    }
}

/// The fleet a `--prometheus` diagnosis read, in its bundle.
const FLEET_FILE: &str = "fleet.json";

/// Every replica's view from Prometheus, and the fleet's as the server's. A probe through a gateway scraped
/// `/metrics` through it too, one replica or another at each scrape, so those scrapes give way.
fn set_fleet(gathered: &mut Gathered, view: infer_doctor_observe::prometheus::FleetView) {
    let e = &mut gathered.evidence;
    e.scheduler = view.picker();
    e.pods = view.pods;
    e.pod_health = view.health;
    e.server = Some(view.fleet);
    e.scrapes.clear();
}

/// A bundle: a diagnose bundle (`single/` and `loaded/`), a plain bench run directory, or a fleet's view from
/// Prometheus (`fleet.json`), with or without a probe beside it.
fn read_bundle(
    gathered: &mut Gathered,
    dir: &Path,
    forced: Option<Dialect>,
) -> Result<(), Failure> {
    let fleet_path = dir.join(FLEET_FILE);
    let fleet = if fleet_path.is_file() {
        let text = std::fs::read_to_string(&fleet_path)
            .map_err(|e| Failure::usage(anyhow!("reading {}: {e}", fleet_path.display())))?;
        Some(serde_json::from_str(&text).map_err(|e| {
            Failure::usage(anyhow!("{}: not a fleet view: {e}", fleet_path.display()))
        })?)
    } else {
        None
    };
    let parts: Vec<(PathBuf, bool)> = if dir.join(REPLICAS_DIR).is_dir() {
        read_replicas(gathered, &dir.join(REPLICAS_DIR), forced)?;
        Vec::new()
    } else if dir.join("loaded").join("run.json").exists() {
        vec![(dir.join("single"), true), (dir.join("loaded"), false)]
    } else if fleet.is_some() && !dir.join("run.json").exists() {
        // The fleet alone was diagnosed: no probe ran.
        Vec::new()
    } else {
        vec![(dir.to_path_buf(), false)]
    };
    for (part, single_user) in parts {
        match bundle::read_run_dir(&part, forced, &mut gathered.problems) {
            Ok(run) => bundle::add_run(gathered, run, single_user),
            // The single-user part is optional.
            Err(e) if single_user => gathered.problems.push(format!("{e:#}")),
            // A run killed mid-write keeps its line-by-line files: diagnose from what they hold.
            Err(e) => {
                let salvaged = bundle::salvage_run_dir(&part, forced, &mut gathered.problems);
                if salvaged.requests.is_empty() && salvaged.scrapes.is_empty() {
                    // A bundle gathered on the server host may hold only its logs, GPU captures and host facts.
                    if ["logs", "gpu"].iter().any(|d| dir.join(d).is_dir())
                        || dir.join("host.json").is_file()
                    {
                        gathered.problems.push(format!(
                            "{e:#}; reading the bundle's logs/, gpu/ and host.json"
                        ));
                        continue;
                    }
                    return Err(Failure::usage(e));
                }
                gathered.problems.push(format!(
                    "{e:#}; diagnosing from what requests.jsonl and server_metrics.jsonl hold"
                ));
                let e = &mut gathered.evidence;
                e.client = bundle::summarize_requests(&salvaged.requests);
                bundle::set_server_scrapes(e, salvaged.scrapes);
                e.requests = salvaged.requests;
            }
        }
    }
    if let Some(view) = fleet {
        set_fleet(gathered, view);
    }
    gathered.evidence.determinism =
        collected_json(gathered, &dir.join(super::output_probes::DETERMINISM_FILE));
    gathered.evidence.template =
        collected_json(gathered, &dir.join(super::output_probes::TEMPLATE_FILE));
    let files_in = |name: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(name))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
    };
    bundle::add_host_facts(gathered, dir).map_err(Failure::usage)?;
    // A bundle's extra files are the sender's choice: one that cannot be read is said, not fatal.
    for path in files_in("logs") {
        if let Err(e) = bundle::add_log(gathered, &path) {
            gathered.problems.push(format!("{e:#}"));
        }
    }
    if let Err(e) = bundle::add_pod(gathered, dir) {
        gathered.problems.push(format!("{e:#}"));
    }
    // The host's own GPU captures first; those taken inside the server's pod stand in when the host's gave no
    // GPU (kubectl run from a machine without the GPUs).
    let (in_pod, on_host): (Vec<PathBuf>, Vec<PathBuf>) =
        files_in("gpu").into_iter().partition(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(POD_CAPTURE_PREFIX))
        });
    let add_captures = |gathered: &mut Gathered, paths: Vec<PathBuf>| {
        for path in paths {
            if let Err(e) = bundle::add_gpu_capture(gathered, &path) {
                gathered.problems.push(format!("{e:#}"));
            }
        }
    };
    add_captures(gathered, on_host);
    if gathered.evidence.gpus.is_empty() {
        add_captures(gathered, in_pod);
    }
    for path in files_in("env") {
        // collect's copy of the server process's environment, else a `vllm collect-env` output.
        let added = if path.file_name().is_some_and(|n| n == "server.env") {
            bundle::add_server_environment(gathered, &path)
        } else {
            bundle::add_collect_env(gathered, &path)
        };
        if let Err(e) = added {
            gathered.problems.push(format!("{e:#}"));
        }
    }
    // collect's analysis of the traces it was given, else traces put in the bundle's trace/ by hand.
    let traces = dir.join("trace");
    if let Some(facts) = collected_json(gathered, &dir.join(super::collect::TRACE_FACTS)) {
        bundle::set_trace(gathered, facts);
    } else if traces.is_dir()
        && let Err(e) = bundle::add_traces(gathered, &[traces])
    {
        gathered.problems.push(format!("{e:#}"));
    }
    // collect's own timing of the path, with the direct server when it was given one.
    if let Some(network) = collected_json(gathered, &dir.join("server/network.json")) {
        gathered.evidence.network = Some(network);
    }
    gathered.evidence.server_threads = collected_json(gathered, &dir.join("server/threads.json"));
    let manifest = dir.join("manifest.json");
    if manifest.is_file()
        && let Err(e) = bundle::add_manifest(gathered, &manifest)
    {
        gathered.problems.push(format!("{e:#}"));
    }
    Ok(())
}

/// A probe of several replicas: each replica's own server window and health (the share of its scrapes that
/// answered, its counters' resets), the fleet's client view from all their requests, and the fleet as one server
/// from their scrapes added up as Prometheus's `sum` would. A replica whose probe failed is still one of the
/// fleet: what its scrapes said, and why it failed, are kept.
fn read_replicas(
    gathered: &mut Gathered,
    replicas: &Path,
    forced: Option<Dialect>,
) -> Result<(), Failure> {
    let mut dirs: Vec<(u64, PathBuf)> = std::fs::read_dir(replicas)
        .map_err(|e| Failure::usage(anyhow!("reading {}: {e}", replicas.display())))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .map(|path| {
            let index = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_prefix("replica-")?.parse().ok())
                .unwrap_or(u64::MAX);
            (index, path)
        })
        .collect();
    // By number: replica-10 after replica-2.
    dirs.sort();
    let mut runs = Vec::new();
    for (_, dir) in &dirs {
        let problems = &mut gathered.problems;
        let loaded = bundle::read_run_dir(&dir.join("loaded"), forced, problems);
        // Alone, each replica answered on its own: its single-user records keep its own clock.
        let single = bundle::read_run_dir(&dir.join("single"), forced, problems);
        if let Ok(failed) = std::fs::read_to_string(dir.join(PROBE_FAILED)) {
            problems.push(format!(
                "{}: its probe failed: {}",
                dir.display(),
                failed.trim()
            ));
        }
        // The run that says most about the replica: the loaded one, else the single-user one it got to.
        let (main, main_dir, alone) = match (loaded, single) {
            (Ok(loaded), single) => (loaded, dir.join("loaded"), single.ok()),
            (Err(_), Ok(single)) => (single, dir.join("single"), None),
            (Err(e), Err(_)) => return Err(Failure::usage(e)),
        };
        let main_is_single = main_dir.ends_with("single");
        runs.push((main, main_dir, alone, main_is_single));
    }
    // Every replica's records and scrapes on the clock of the one that started first (they start within moments
    // of each other; runs recorded before the wall-clock start was kept stay on their own).
    let started = |run: &bundle::RunDir| run.document.shard.map(|s| s.started_unix_us);
    let origin = runs.iter().filter_map(|(run, ..)| started(run)).min();
    let (mut single, mut loaded, mut scrapes) = (Vec::new(), Vec::new(), Vec::new());
    for (mut run, dir, alone, main_is_single) in runs {
        let offset_us = started(&run)
            .zip(origin)
            .map_or(0, |(s, o)| s.saturating_sub(o));
        for record in &mut run.requests {
            infer_doctor_core::shard::shift_times(record, offset_us as i64);
        }
        for (t, _) in &mut run.scrapes {
            *t += offset_us as f64 / 1e6;
        }
        let name = run.document.target["url"]
            .as_str()
            .map(|url| {
                url.trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .unwrap_or_else(|| dir.display().to_string());
        let attempted = infer_doctor_load::scrape::read_jsonl(&dir.join("server_metrics.jsonl"))
            .map_or(0, |lines| lines.len());
        let health = infer_doctor_core::ReplicaHealth {
            up_share: (attempted > 0).then(|| run.scrapes.len() as f64 / attempted as f64),
            // A restart shows only between two scrapes.
            restarts: (run.scrapes.len() >= 2)
                .then(|| f64::from(server::counter_resets(&run.scrapes))),
        };
        let e = &mut gathered.evidence;
        e.exact_output_lengths |= run.document.config["ignore_eos"] == true;
        e.pod_health.insert(name.clone(), health);
        // A replica no scrape reached is still one of the fleet, with nothing known of its load.
        e.pods
            .insert(name, server::summarize(&run.scrapes).unwrap_or_default());
        if gathered.target.is_null() {
            gathered.target = run.document.target.clone();
        }
        single.extend(alone.map(|a| a.requests).unwrap_or_default());
        if main_is_single {
            single.extend(run.requests);
        } else {
            loaded.extend(run.requests);
        }
        scrapes.push(run.scrapes);
    }
    let e = &mut gathered.evidence;
    e.single_user = bundle::summarize_requests(&single);
    e.client = bundle::summarize_requests(&loaded);
    e.requests = loaded;
    bundle::set_server_scrapes(e, server::combine_replicas(&scrapes));
    Ok(())
}

/// The files named on the command line: the user chose each, so one that cannot be read is an error naming it.
fn add_loose_evidence(
    gathered: &mut Gathered,
    args: &DiagnoseArgs,
    forced: Option<Dialect>,
) -> Result<(), Failure> {
    if !args.metrics.is_empty() {
        let files = bundle::read_metrics_files(
            &args.metrics,
            args.interval.map(|d| d.as_secs_f64()),
            forced,
            &mut gathered.problems,
        )
        .map_err(Failure::usage)?;
        gathered.evidence.server = files.window();
        gathered.evidence.scrapes = files.timed();
    }
    if !args.scheduler_metrics.is_empty() {
        let files = bundle::read_metrics_files(
            &args.scheduler_metrics,
            args.interval.map(|d| d.as_secs_f64()),
            Some(Dialect::LlmdEpp),
            &mut gathered.problems,
        )
        .map_err(Failure::usage)?;
        let window = files
            .window()
            .filter(|w| !(w.gauges.is_empty() && w.counters.is_empty() && w.histograms.is_empty()));
        if window.is_none() {
            return Err(Failure::usage(anyhow!(
                "--scheduler-metrics: no llm-d endpoint picker metrics (llm_d_epp_*, inference_extension_*, \
                 inference_pool_*) in two or more of the files"
            )));
        }
        gathered.evidence.scheduler = window;
    }
    if let Some(path) = &args.log {
        bundle::add_log(gathered, path).map_err(Failure::usage)?;
    }
    for capture in args.gpu.iter().map(Path::new).filter(|p| p.is_file()) {
        bundle::add_gpu_capture(gathered, capture).map_err(Failure::usage)?;
    }
    if let Some(path) = &args.env {
        bundle::add_collect_env(gathered, path).map_err(Failure::usage)?;
    }
    if !args.trace.is_empty() {
        bundle::add_traces(gathered, &args.trace).map_err(Failure::usage)?;
    }
    if let Some(path) = &args.requests {
        let text = bundle::read_evidence_file(path).map_err(Failure::usage)?;
        let requests = bundle::read_requests(path, &text, &mut gathered.problems);
        if requests.is_empty() {
            return Err(Failure::usage(anyhow!(
                "{}: no request records in it",
                path.display()
            )));
        }
        gathered.evidence.client = bundle::summarize_requests(&requests);
        gathered.evidence.requests = requests;
    }
    Ok(())
}

/// The hardware floors from `--model-config` and the GPU: named in `--gpu`, else as an nvidia-smi capture
/// reports it, through the planner's catalogs and roofline.
/// A captured GPU the catalog lacks, or one split by MIG, gives no floors: said as a problem, not a failure.
fn hardware(
    args: &DiagnoseArgs,
    gpus: &[GpuState],
    problems: &mut Vec<String>,
) -> Result<Option<HardwareFacts>, Failure> {
    let named: Vec<&String> = args
        .gpu
        .iter()
        .filter(|v| !Path::new(v).is_file())
        .collect();
    let gpu = match (named.as_slice(), gpus.first()) {
        ([], Some(captured)) if args.model_config.is_some() => {
            let skipped = if captured.mig_enabled == Some(true) {
                Some("it runs in MIG mode, and a slice is not the whole GPU the floors assume")
            } else if infer_doctor_plan::Gpu::by_name(&captured.name).is_err() {
                Some("it is not in the built-in catalog (give --gpu NAME of the nearest one)")
            } else {
                None
            };
            if let Some(why) = skipped {
                problems.push(format!("no hardware floors for {}: {why}", captured.name));
                return Ok(None);
            }
            captured.name.clone()
        }
        ([], Some(captured)) => captured.name.clone(),
        ([name], _) => name.to_string(),
        ([], None) if args.model_config.is_some() => {
            return Err(Failure::usage(anyhow!(
                "--model-config needs the GPU: --gpu NAME, or an nvidia-smi capture (--gpu FILE, a bundle's gpu/)"
            )));
        }
        ([], None) => return Ok(None),
        (names, _) => {
            return Err(Failure::usage(anyhow!(
                "--gpu: one GPU name at most (got {}); files are read as nvidia-smi captures, and these are not \
                 files",
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let Some(model) = &args.model_config else {
        if let [name] = named.as_slice() {
            return Err(Failure::usage(anyhow!(
                "--gpu {name}: not a file, and a GPU name only serves the hardware floors with --model-config"
            )));
        }
        return Ok(None);
    };
    let facts = infer_doctor_plan::ModelShape::resolve(model)
        .and_then(|model| {
            let gpu = infer_doctor_plan::Gpu::by_name(&gpu)?;
            infer_doctor_plan::hardware_facts(&model, &gpu, args.tensor_parallel_size)
        })
        .map_err(|e| Failure::usage(anyhow::Error::from(e)))?;
    Ok(Some(facts))
}

pub fn document(
    gathered: &Gathered,
    thresholds: &Thresholds,
    slo: Option<&str>,
) -> DiagnosisDocument {
    let evidence: &Evidence = &gathered.evidence;
    DiagnosisDocument {
        schema_version: infer_doctor_report::SCHEMA_VERSION,
        tool: infer_doctor_report::RunDocument::tool(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        target: gathered.target.clone(),
        diagnosis: diagnose(evidence, thresholds),
        escalation: escalation(evidence, &gathered.target, slo),
        evidence: evidence.clone(),
        warnings: gathered.problems.clone(),
    }
}

fn write_bundle_reports(dir: &Path, doc: &DiagnosisDocument) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("diagnosis.json", serde_json::to_string_pretty(doc)?),
        ("report.html", infer_doctor_report::html::render(doc)),
        ("report.md", infer_doctor_report::markdown::render(doc)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn emit(
    doc: &DiagnosisDocument,
    format: ReportFormat,
    output: Option<&Path>,
) -> Result<(), Failure> {
    let text = match format {
        ReportFormat::Term => render_term(doc),
        ReportFormat::Md => infer_doctor_report::markdown::render(doc),
        ReportFormat::Html => infer_doctor_report::html::render(doc),
        ReportFormat::Json => {
            serde_json::to_string_pretty(doc).map_err(|e| Failure::usage(anyhow::Error::from(e)))?
        }
    };
    match output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(Failure::usage),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// The exit code DESIGN.md §1 gives diagnose: 3 when no probe got an answer, 1 for any critical finding, 3 again
/// when only the loaded probe came back empty and nothing critical was found, else 0. A loaded probe that
/// finished nothing while the lone user was served is what a thrashing server looks like: its critical findings
/// are the verdict.
fn verdict_code(doc: &DiagnosisDocument) -> u8 {
    let answered = |run: &Option<RunSummary>| {
        run.as_ref()
            .map_or((0, 0), |run| (run.requests.sent, run.requests.ok))
    };
    let critical = doc
        .diagnosis
        .findings
        .iter()
        .any(|f| f.severity == Severity::Critical);
    exit_for(
        answered(&doc.evidence.client),
        answered(&doc.evidence.single_user),
        critical,
    )
}

/// `loaded` and `alone` are each probe's (sent, answered).
fn exit_for(loaded: (u64, u64), alone: (u64, u64), critical: bool) -> u8 {
    let none_answered = |(sent, ok): (u64, u64)| sent > 0 && ok == 0;
    if none_answered((loaded.0 + alone.0, loaded.1 + alone.1)) {
        exit::NOTHING_SUCCEEDED
    } else if critical {
        exit::GATE_FAILED
    } else if none_answered(loaded) {
        exit::NOTHING_SUCCEEDED
    } else {
        exit::OK
    }
}

/// One of collect's JSON files in a bundle, when it holds one; one that cannot be read is said, not fatal.
fn collected_json<T: serde::de::DeserializeOwned>(
    gathered: &mut Gathered,
    path: &Path,
) -> Option<T> {
    if !path.is_file() {
        return None;
    }
    match bundle::read_evidence_file(path)
        .and_then(|text| serde_json::from_str(&text).map_err(anyhow::Error::from))
    {
        Ok(facts) => Some(facts),
        Err(e) => {
            gathered.problems.push(format!("{}: {e:#}", path.display()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    /// Issue 11: the probe's own cut-off, derived from `--budget`, was recorded as server timeouts. A request still
    /// queued when the budget ends is only interrupted: the probe's bench gets no request timeout of its own.
    #[test]
    fn the_probe_gives_its_bench_no_timeout_from_the_budget() {
        for budget in ["20s", "3s"] {
            let argv = [
                "infer-doctor",
                "diagnose",
                "--url",
                "http://127.0.0.1:9",
                "--budget",
                budget,
            ];
            let Command::Diagnose(args) = Cli::try_parse_from(argv).unwrap().command else {
                unreachable!("a diagnose command line parses as diagnose")
            };
            let bench =
                bench_args("http://127.0.0.1:9", &args, 8, 100, Path::new("/tmp/probe")).unwrap();
            assert_eq!(bench.timeout, None, "--budget {budget}");
        }
    }

    /// CI, 2026-12-07: real vLLM with 20 KV blocks for 16 users thrashed so hard that its 27 s loaded probe
    /// finished none of 16 requests, while the lone user was served; diagnose named the preemptions (critical)
    /// and still exited 3 as if nothing had been measured.
    #[test]
    fn an_empty_loaded_probe_exits_by_its_findings_when_the_lone_user_was_served() {
        let thrashing = ((16, 0), (5, 5));
        assert_eq!(exit_for(thrashing.0, thrashing.1, true), exit::GATE_FAILED);
        assert_eq!(
            exit_for(thrashing.0, thrashing.1, false),
            exit::NOTHING_SUCCEEDED,
            "no rule said why the loaded probe is empty"
        );
        assert_eq!(exit_for((16, 0), (5, 0), true), exit::NOTHING_SUCCEEDED);
        assert_eq!(exit_for((16, 3), (5, 5), false), exit::OK);
        assert_eq!(exit_for((0, 0), (0, 0), false), exit::OK, "offline");
    }
}
