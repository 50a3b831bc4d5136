//! `infer-doctor bench`: validates the flags, builds the workload, runs the load (or a sweep), prints the summary
//! and writes the run directory. Ctrl-C stops sending, keeps what was measured and exits 130.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use infer_doctor_core::shard::ShardRun;
use infer_doctor_core::{PromptSource, RunSummary, SloSet, TokenCounter};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::cpu;
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::probe::{TargetInfo, probe};
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::schedule::Arrival;
use infer_doctor_load::sweep::{SweepOutcome, sweep};
use infer_doctor_load::{
    ApiKey, Endpoint, LiveCounters, LoadShape, RunSpec, Stop, Target, Trust, Warmup,
    run as run_load,
};
use infer_doctor_prompt::dataset::DatasetSource;
use infer_doctor_prompt::dist::LengthDist;
use infer_doctor_prompt::synth::{SyntheticSource, SyntheticSpec};
use infer_doctor_prompt::tokenizer::Tokenizer;
use infer_doctor_report::{RunDocument, SCHEMA_VERSION};
use serde_json::{Value, json};

use crate::args::{ArrivalArg, BenchArgs, BenchCommand, EndpointArg, Format, WarmupArg};
use crate::server_watch::ServerWatch;
use crate::{Failure, exit, history, progress, rundir};

/// A validated bench: everything resolved before any request goes out.
pub struct Plan {
    pub spec: RunSpec,
    pub prompts: Arc<dyn PromptSource>,
    pub counter: Option<Arc<dyn TokenCounter>>,
    pub workload: Value,
    pub target_info: TargetInfo,
}

/// The most requests kept in flight: the open loop's own bound, which a flag may not exceed.
const MAX_IN_FLIGHT: u64 = infer_doctor_load::run::OPEN_LOOP_IN_FLIGHT_BOUND;
/// The longest prompt (shared prefix plus input) built: twice the longest context windows served today.
const MAX_PROMPT_TOKENS: u64 = 2_097_152;
/// The most shared-prefix tokens held in memory over every prefix group.
const MAX_PREFIX_TOKENS_HELD: u64 = 16 * 1_048_576;

/// The most arrivals an open loop schedules ahead (8 bytes each: 400 MB).
const MAX_SCHEDULED_ARRIVALS: f64 = 50_000_000.0;

/// An open loop computes its whole schedule before the first send: one too long for memory is refused.
fn scheduled_arrivals(shape: &LoadShape, stop: Stop, warmup: Warmup) -> Result<(), Failure> {
    let LoadShape::Open { rate, .. } = *shape else {
        return Ok(());
    };
    let warmup_arrivals = match warmup {
        Warmup::None => 0.0,
        Warmup::Count(n) => n as f64,
        Warmup::Duration(d) => rate * d.as_secs_f64(),
    };
    let arrivals = warmup_arrivals
        + match stop {
            Stop::Count(n) => n as f64,
            Stop::Duration(d) => rate * d.as_secs_f64(),
        };
    if arrivals > MAX_SCHEDULED_ARRIVALS {
        return Err(Failure::usage(anyhow!(
            "--request-rate {rate} schedules {arrivals:.0} arrivals for this run; at most {MAX_SCHEDULED_ARRIVALS:.0} \
             are scheduled ahead: shorten the run or split it over several"
        )));
    }
    Ok(())
}

pub(crate) fn in_flight(flag: &str, n: Option<u64>) -> Result<Option<u64>, Failure> {
    match n {
        Some(0) => Err(Failure::usage(anyhow!("{flag} must be at least 1"))),
        Some(n) if n > MAX_IN_FLIGHT => Err(Failure::usage(anyhow!(
            "{flag} {n}: at most {MAX_IN_FLIGHT} requests in flight"
        ))),
        n => Ok(n),
    }
}

pub(crate) fn shape(args: &BenchArgs) -> Result<LoadShape, Failure> {
    let concurrency = in_flight("--concurrency", args.concurrency)?;
    let max_concurrency = in_flight("--max-concurrency", args.max_concurrency)?;
    match (concurrency, args.request_rate) {
        (_, Some(r)) if !(r.is_finite() && r > 0.0) => Err(Failure::usage(anyhow!(
            "--request-rate must be a positive number of requests per second, got {r}"
        ))),
        (_, Some(rate)) => {
            let arrival = match (args.burstiness, args.arrival) {
                (Some(b), _) if !(b.is_finite() && b > 0.0) => {
                    return Err(Failure::usage(anyhow!(
                        "--burstiness must be positive, got {b}"
                    )));
                }
                (Some(burstiness), _) => Arrival::Gamma { burstiness },
                (None, ArrivalArg::Gamma) => Arrival::Gamma { burstiness: 1.0 },
                (None, ArrivalArg::Constant) => Arrival::Constant,
                (None, ArrivalArg::Poisson) => Arrival::Poisson,
            };
            Ok(LoadShape::Open {
                rate,
                arrival,
                max_concurrency,
            })
        }
        (concurrency, None) => Ok(LoadShape::Closed {
            concurrency: concurrency.unwrap_or(1),
        }),
    }
}

pub(crate) fn length(flag: &str, text: &str) -> Result<LengthDist, Failure> {
    text.parse::<LengthDist>()
        .map_err(|e| Failure::usage(anyhow!("{flag}: {e}")))
}

/// What requests will carry, and how generated text is counted.
struct Workload {
    prompts: Arc<dyn PromptSource>,
    counter: Option<Arc<dyn TokenCounter>>,
    info: Value,
}

/// Builds the prompts: a dataset file, or synthetic prompts of exact length when a tokenizer is given.
fn workload(args: &BenchArgs) -> Result<Workload, Failure> {
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(Arc::new(Tokenizer::load(path).map_err(Failure::usage)?)),
        None => None,
    };
    let counter = tokenizer.clone().map(|t| t as Arc<dyn TokenCounter>);
    if let Some(path) = &args.dataset {
        let output = args
            .output_tokens
            .as_deref()
            .map(|t| length("--output-tokens", t))
            .transpose()?;
        let source =
            DatasetSource::load(path, output, args.seed, tokenizer).map_err(Failure::usage)?;
        let info = serde_json::to_value(source.info()).unwrap_or_default();
        return Ok(Workload {
            prompts: Arc::new(source),
            counter,
            info,
        });
    }
    let input = length("--input-tokens", &args.input_tokens)?;
    prompt_fits(&input, args.prefix_tokens, args.prefix_groups)?;
    let spec = SyntheticSpec {
        input,
        output: length(
            "--output-tokens",
            args.output_tokens.as_deref().unwrap_or("128"),
        )?,
        prefix_tokens: args.prefix_tokens,
        prefix_groups: args.prefix_groups.max(1),
        seed: args.seed,
    };
    let source = SyntheticSource::new(spec, tokenizer).map_err(Failure::usage)?;
    let info = serde_json::to_value(source.info()).unwrap_or_default();
    Ok(Workload {
        prompts: Arc::new(source),
        counter,
        info,
    })
}

/// Refuses prompts no model could take, before they are built in memory.
fn prompt_fits(input: &LengthDist, prefix_tokens: u32, prefix_groups: u32) -> Result<(), Failure> {
    // A normal length is drawn above mean + 4σ once in 30,000 draws: that is the longest planned for.
    let longest_input = match *input {
        LengthDist::Fixed(n) => u64::from(n),
        LengthDist::Normal { mean, stddev } => u64::from(mean) + 4 * u64::from(stddev),
        LengthDist::Uniform { max, .. } => u64::from(max),
    };
    let prefix = u64::from(prefix_tokens);
    if longest_input + prefix > MAX_PROMPT_TOKENS {
        let flags = if prefix > 0 {
            "--prefix-tokens plus --input-tokens"
        } else {
            "--input-tokens"
        };
        return Err(Failure::usage(anyhow!(
            "{flags}: prompts of up to {} tokens are beyond any model's context window (at most \
             {MAX_PROMPT_TOKENS} tokens)",
            longest_input + prefix
        )));
    }
    let held = prefix * u64::from(prefix_groups.max(1));
    if held > MAX_PREFIX_TOKENS_HELD {
        return Err(Failure::usage(anyhow!(
            "--prefix-tokens {prefix_tokens} × --prefix-groups {prefix_groups}: {held} prefix tokens to hold \
             in memory (at most {MAX_PREFIX_TOKENS_HELD})"
        )));
    }
    Ok(())
}

pub async fn plan(args: &BenchArgs, requests_jsonl: Option<PathBuf>) -> Result<Plan, Failure> {
    let url = args
        .url
        .as_deref()
        .ok_or_else(|| Failure::usage(anyhow!("--url is required")))?;
    let api_key = match args.api_key.clone() {
        Some(key) => ApiKey::new(key).map_err(Failure::usage)?,
        None => None,
    };
    let trust = match (&args.ca_cert, args.insecure) {
        (Some(pem), _) => Trust::CaFile(pem.clone()),
        (None, true) => Trust::AnyCertificate,
        (None, false) => Trust::PublicRoots,
    };
    let target = Target::parse(url, api_key)
        .and_then(|t| t.with_trust(&trust))
        .map_err(Failure::usage)?;
    let target = Arc::new(target);
    let shape = shape(args)?;
    let stop = match (args.num_requests, args.duration) {
        (Some(0), _) => return Err(Failure::usage(anyhow!("--num-requests must be at least 1"))),
        (_, Some(d)) if d.is_zero() => {
            return Err(Failure::usage(anyhow!("--duration must be longer than 0")));
        }
        (_, Some(d)) => Stop::Duration(d),
        (n, None) => Stop::Count(n.unwrap_or(100)),
    };
    let warmup = match args.warmup {
        None | Some(WarmupArg::Requests(0)) => Warmup::None,
        Some(WarmupArg::Requests(n)) => Warmup::Count(n),
        Some(WarmupArg::Time(d)) => Warmup::Duration(d),
    };
    scheduled_arrivals(&shape, stop, warmup)?;
    // A shard left without users is refused before anything is probed.
    infer_doctor_load::run::check_shard(&shape, args.shard.unwrap_or_default())
        .map_err(Failure::usage)?;
    let slo = match &args.slo {
        Some(text) => text.parse::<SloSet>().map_err(Failure::usage)?,
        None => SloSet::default(),
    };
    let Workload {
        prompts,
        counter,
        info: workload,
    } = workload(args)?;

    let probe_client = HttpClient::new(
        target.clone(),
        ClientOptions {
            http2: args.http2,
            pool_size: 1,
            connect_timeout: args.connect_timeout,
        },
    );
    let target_info = probe(&probe_client, Duration::from_secs(10)).await;
    let model = match (&args.model, target_info.model_ids.first()) {
        (Some(m), _) => m.clone(),
        (None, Some(first)) => first.clone(),
        (None, None) => {
            let why = target_info
                .models_error
                .clone()
                .unwrap_or_else(|| "it listed no model".into());
            return Err(Failure {
                code: exit::NOTHING_SUCCEEDED,
                error: anyhow!(
                    "could not learn the model from {}/v1/models ({why}); pass --model",
                    target.display_url()
                ),
            });
        }
    };
    let spec = RunSpec {
        target,
        endpoint: match args.endpoint {
            EndpointArg::Completions => Endpoint::Completions,
            EndpointArg::Chat => Endpoint::Chat,
        },
        model,
        stream: !args.no_stream,
        ignore_eos: args.ignore_eos,
        continuous_usage: !args.no_continuous_usage,
        shape,
        stop,
        warmup,
        timeouts: Timeouts {
            idle: args.idle_timeout,
            total: args.timeout,
        },
        connect_timeout: args.connect_timeout,
        http2: args.http2,
        seed: args.seed,
        slo,
        requests_jsonl: requests_jsonl.map(|p| (p, false)),
        first_id: 0,
        shard: args.shard.unwrap_or_default(),
    };
    Ok(Plan {
        spec,
        prompts,
        counter,
        workload,
        target_info,
    })
}

/// Fires `cancel` on the first Ctrl-C.
pub(crate) fn cancel_on_ctrl_c() -> Cancel {
    let (handle, cancel) = Cancel::new();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            handle.cancel();
        }
    });
    cancel
}

fn describe_shape(spec: &RunSpec) -> String {
    let stop = match spec.stop {
        Stop::Count(n) => format!("{n} requests"),
        Stop::Duration(d) => format!("{}", humantime::format_duration(d)),
    };
    let load = match &spec.shape {
        LoadShape::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
        LoadShape::Open {
            rate,
            arrival,
            max_concurrency,
        } => {
            let cap = max_concurrency
                .map(|c| format!(", at most {c} in flight"))
                .unwrap_or_default();
            format!("open loop, {rate} req/s {arrival:?}{cap}")
        }
    };
    let shard = if spec.shard.is_whole() {
        String::new()
    } else {
        format!(
            " · shard {} (request k when k mod {} = {})",
            spec.shard, spec.shard.count, spec.shard.index
        )
    };
    format!(
        "{} {} · model {} · {load} · {stop}{shard}",
        spec.target.display_url(),
        spec.endpoint.path(),
        spec.model
    )
}

fn config_json(args: &BenchArgs, spec: &RunSpec) -> Value {
    json!({
        "endpoint": spec.endpoint,
        "model": spec.model,
        "stream": spec.stream,
        "ignore_eos": spec.ignore_eos,
        "continuous_usage": spec.continuous_usage,
        "shape": format!("{:?}", spec.shape),
        "stop": format!("{:?}", spec.stop),
        "warmup": format!("{:?}", spec.warmup),
        "idle_timeout_s": spec.timeouts.idle.as_secs_f64(),
        "timeout_s": spec.timeouts.total.map(|t| t.as_secs_f64()),
        "http2": spec.http2,
        "seed": spec.seed,
        "slo": spec.slo,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "prefix_tokens": args.prefix_tokens,
        "prefix_groups": args.prefix_groups,
        "dataset": args.dataset,
        "tokenizer": args.tokenizer,
        "sweep": args.sweep.then_some(args.sweep_points),
        "shards": spec.shard.count,
        "api_key": if args.api_key.is_some() { "***" } else { "" },
    })
}

fn exit_code(summary: &RunSummary, interrupted: bool) -> u8 {
    if interrupted {
        exit::INTERRUPTED
    } else if summary.requests.ok == 0 {
        exit::NOTHING_SUCCEEDED
    } else if summary.slo.iter().any(|s| !s.pass) {
        exit::GATE_FAILED
    } else {
        exit::OK
    }
}

/// What the user should know before the run starts: limits that will bite.
fn preflight_notes(spec: &RunSpec) -> Vec<String> {
    let mut notes = Vec::new();
    // Sockets, plus a margin for the runtime, output files and the tokenizer.
    let open_files = cpu::raise_open_files_limit();
    if let (Some(limit), Some(in_flight)) = (open_files, spec.in_flight_limit())
        && in_flight + 64 > limit
    {
        notes.push(format!(
            "{in_flight} requests in flight need about {} open files but this process may open {limit}; \
             raise the hard limit (ulimit -Hn) or connections will fail",
            in_flight + 64
        ));
    }
    notes
}

/// A finished measurement: the document written to the run directory, and what the terminal view needs.
pub struct Executed {
    pub document: RunDocument,
    pub heading: String,
    pub sweep: Option<SweepOutcome>,
    pub slo_given: bool,
}

pub async fn run(args: Box<BenchArgs>) -> Result<u8, Failure> {
    if let Some(BenchCommand::Merge(merge)) = &args.command {
        return crate::cmd::bench_merge::run(merge).await;
    }
    if args.emit.is_some() {
        return crate::cmd::bench_emit::run(&args);
    }
    if args.self_test {
        return crate::cmd::selftest::run(args.quiet, args.self_test_duration).await;
    }
    // Recorded runs always have their requests on disk, for the samples a comparison's intervals come from; without
    // --out they go to a scratch directory that the history outlives.
    let scratch = match (&args.out, args.history.no_history) {
        (None, false) => Some(tempfile::tempdir().map_err(Failure::usage)?),
        _ => None,
    };
    let mut measured_args = args.clone();
    if let Some(dir) = &scratch {
        measured_args.out = Some(dir.path().to_path_buf());
    }
    let executed = execute(&measured_args, cancel_on_ctrl_c()).await?;
    // An interrupted run or one where nothing succeeded is no baseline.
    let worth_recording =
        !executed.document.interrupted && executed.document.summary.requests.ok > 0;
    if let Some(dir) = &measured_args.out
        && !args.history.no_history
        && worth_recording
    {
        match history::read_dir(dir) {
            Ok(measured) => {
                history::record(&args.history, &measured, args.out.as_deref(), args.quiet);
            }
            Err(e) => eprintln!("warning: not recorded in the history: {e:#}"),
        }
    }
    print(&args, &executed)?;
    let summary = &executed.document.summary;
    let code = exit_code(summary, executed.document.interrupted);
    if code == exit::NOTHING_SUCCEEDED && !args.quiet {
        eprintln!("error: no request succeeded");
    }
    Ok(code)
}

/// Runs the measurement (and the scraper beside it) until it ends or `cancel` fires, and writes the run directory,
/// printing only progress.
pub async fn execute(args: &BenchArgs, cancel: Cancel) -> Result<Executed, Failure> {
    let thresholds = crate::cmd::diagnose::thresholds(args.thresholds.as_deref())?;
    let out_dir = args.out.clone();
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating --out {}", dir.display()))
            .map_err(Failure::usage)?;
        // A run.json left by an earlier run would pass for this one's (to `bench merge --wait`) until it ends.
        let stale = dir.join("run.json");
        if stale.is_file() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing the earlier run's {}", stale.display()))
                .map_err(Failure::usage)?;
        }
    }
    let plan = plan(args, out_dir.as_ref().map(|d| d.join("requests.jsonl"))).await?;
    let heading = describe_shape(&plan.spec);
    let notes = preflight_notes(&plan.spec);
    if !args.quiet {
        eprintln!("infer-doctor bench: {heading}");
        for n in &notes {
            eprintln!("note: {n}");
        }
    }
    let watch = ServerWatch::start(
        &plan.spec.target,
        args.metrics_url.as_deref(),
        args.dialect.as_deref(),
        args.scrape_interval,
        out_dir.as_ref().map(|d| d.join("server_metrics.jsonl")),
    )
    .await?;
    let live = Arc::new(LiveCounters::default());
    let display = progress::start(live.clone(), args.quiet);
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let clock = std::time::Instant::now();
    let (summary, interrupted, sweep_outcome, shard) = if args.sweep {
        let saturation_concurrency = args.concurrency.unwrap_or(64);
        let outcome = sweep(
            &plan.spec,
            args.sweep_points,
            saturation_concurrency,
            plan.prompts.clone(),
            plan.counter.clone(),
            live,
            cancel,
        )
        .await
        .map_err(Failure::usage)?;
        let summary = outcome.headline_point().0.clone();
        (summary, outcome.interrupted, Some(outcome), None)
    } else {
        let out = run_load(
            &plan.spec,
            plan.prompts.clone(),
            plan.counter.clone(),
            live,
            cancel,
        )
        .await
        .map_err(Failure::usage)?;
        let shard = ShardRun {
            index: plan.spec.shard.index,
            count: plan.spec.shard.count,
            started_unix_us: out.started_unix_us,
            window_us: out.window_us,
        };
        (out.summary, out.interrupted, None, Some(shard))
    };
    display.finish();
    let watched = match watch {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let mut summary = summary;
    summary.warnings.extend(notes);
    summary
        .warnings
        .extend(watched.as_ref().and_then(|w| w.note.clone()));
    let mut server = watched.and_then(|w| w.window);
    // llama.cpp's metrics lack its capacity; its /props and /slots, read before the run, have it.
    if let (Some(window), Some(capacity)) = (
        server.as_mut(),
        infer_doctor_observe::llamacpp::capacity(
            plan.target_info.props.as_ref(),
            plan.target_info.slots.as_ref(),
        ),
    ) {
        for (signal, stats) in infer_doctor_observe::llamacpp::gauges(&capacity) {
            window.gauges.entry(signal).or_insert(stats);
        }
    }
    judge_client(&mut summary, &thresholds);
    let document = RunDocument {
        schema_version: SCHEMA_VERSION,
        tool: RunDocument::tool(),
        command_line: rundir::redacted_command_line(),
        host: serde_json::to_value(infer_doctor_host::machine::HostInfo::read())
            .unwrap_or_default(),
        formulas: RunDocument::formulas(),
        started_at,
        wall_seconds: clock.elapsed().as_secs_f64(),
        interrupted,
        target: serde_json::to_value(&plan.target_info).unwrap_or_default(),
        config: config_json(args, &plan.spec),
        workload: plan.workload.clone(),
        summary: summary.clone(),
        sweep: sweep_outcome
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default()),
        server,
        shard,
        merged_from: Vec::new(),
    };
    if let Some(dir) = &out_dir {
        rundir::write(dir, &document).map_err(Failure::usage)?;
    }
    Ok(Executed {
        document,
        heading,
        sweep: sweep_outcome,
        slo_given: !plan.spec.slo.is_empty(),
    })
}

/// The playbook's `client.bound` rule over this run's client numbers: its verdict becomes run.json's flag and a
/// warning, so bench and diagnose judge the client by one rule and one set of thresholds.
fn judge_client(summary: &mut RunSummary, thresholds: &infer_doctor_diagnose::Thresholds) {
    let evidence = infer_doctor_core::Evidence {
        client: Some(summary.clone()),
        ..Default::default()
    };
    let diagnosis = infer_doctor_diagnose::diagnose(&evidence, thresholds);
    if let Some(finding) = diagnosis.findings.iter().find(|f| f.id == "client.bound") {
        summary.client.client_bound = true;
        summary.warnings.push(format!(
            "{}: {}",
            finding.verdict,
            finding.remedies.join("; ")
        ));
    }
}

fn print(args: &BenchArgs, executed: &Executed) -> Result<(), Failure> {
    let document = &executed.document;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(document).map_err(Failure::usage)?
        ),
        Format::Term => {
            if let Some(outcome) = &executed.sweep {
                println!(
                    "{}",
                    infer_doctor_report::term::sweep_table(&sweep_rows(outcome))
                );
                match outcome.best_rate {
                    Some(rate) => println!("highest rate meeting every SLO: {rate:.2} req/s"),
                    None if executed.slo_given => println!("no measured rate met every SLO"),
                    None => {}
                }
            } else {
                println!(
                    "{}",
                    infer_doctor_report::term::render(&document.summary, &executed.heading)
                );
            }
            if let Some(window) = &document.server {
                print!("{}", infer_doctor_report::server::server_table(window));
            }
            if document.interrupted {
                println!("interrupted: results cover what was measured before Ctrl-C");
            }
            if let Some(dir) = &args.out {
                println!("wrote {}", dir.display());
            }
        }
    }
    Ok(())
}

fn sweep_rows(outcome: &SweepOutcome) -> Vec<infer_doctor_report::term::SweepRow<'_>> {
    let mut rows = vec![infer_doctor_report::term::SweepRow {
        label: format!("saturation (c={})", outcome.saturation_concurrency),
        summary: &outcome.saturation,
        slo_pass: None,
    }];
    rows.extend(
        outcome
            .points
            .iter()
            .map(|p| infer_doctor_report::term::SweepRow {
                label: format!("{:.2} req/s", p.rate),
                summary: &p.summary,
                slo_pass: p.slo_pass,
            }),
    );
    rows
}
