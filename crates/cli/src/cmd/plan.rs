//! `plan`: the deployment options for a load and an SLO from the planner, each checked on the simulator's
//! discrete-event clock at its per-replica rate, and the cheapest that meets the SLO with its vLLM flags.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use infer_doctor_core::{RunSummary, SloMetric, SloSet};
use infer_doctor_load::sweep::SweepOutcome;
use infer_doctor_plan::autoscale::{self, AutoscaleTarget, PlannedCapacity};
use infer_doctor_plan::options::{self, DeploymentOption, Search, Slo, Workload};
use infer_doctor_plan::{CacheConfig, Dtype, Gpu, ModelShape, roofline};
use infer_doctor_report::plan::{self as plan_report, PlanReport, Table};
use infer_doctor_report::{DiagnosisDocument, RunDocument};
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::whatif::{self, Load, Simulated};
use serde::Serialize;

use crate::Failure;
use crate::args::{AutoscaleKind, PlanArgs, ReportFormat};

/// Replicas added, one at a time, when the simulator finds the roofline's count misses the SLO.
const EXTRA_REPLICAS_TRIED: u32 = 3;

/// One option as planned and as simulated.
#[derive(Serialize)]
struct Checked {
    #[serde(flatten)]
    option: DeploymentOption,
    simulated: Simulated,
    meets_slo: bool,
}

pub fn run(args: &PlanArgs) -> Result<u8, Failure> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(Failure::usage(anyhow!(
            "--rate {}: a positive number of requests per second",
            args.rate
        )));
    }
    if !(args.headroom >= 0.0 && args.headroom.is_finite()) {
        return Err(Failure::usage(anyhow!(
            "--headroom {}: a fraction ≥ 0 (0.2 is 20 %)",
            args.headroom
        )));
    }
    let report = match &args.from {
        Some(dir) => from_run(args, dir)?,
        None => planned(args)?,
    };
    if let Some(dir) = &args.out {
        write(dir, &report).map_err(Failure::usage)?;
    }
    print!("{}", render(&report, args.format)?);
    Ok(crate::exit::OK)
}

fn render(report: &PlanReport, format: ReportFormat) -> anyhow::Result<String> {
    Ok(match format {
        ReportFormat::Term => plan_report::term(report),
        ReportFormat::Md => plan_report::markdown(report),
        ReportFormat::Html => plan_report::html(report),
        ReportFormat::Json => serde_json::to_string_pretty(report)? + "\n",
    })
}

/// `report DIR` on a directory `plan --out` wrote.
pub fn report(path: &Path, format: ReportFormat, output: Option<&Path>) -> Result<u8, Failure> {
    let stored: PlanReport = read_json(path).map_err(Failure::usage)?;
    let text = render(&stored, format)?;
    match output {
        Some(out) => std::fs::write(out, text)
            .with_context(|| format!("writing {}", out.display()))
            .map_err(Failure::usage)?,
        None => print!("{text}"),
    }
    Ok(crate::exit::OK)
}

/// `plan.json` (what `report` reads), `plan.md` and `plan.html`.
pub fn write(dir: &Path, report: &PlanReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in [
        ("plan.json", serde_json::to_string_pretty(report)?),
        ("plan.md", plan_report::markdown(report)),
        ("plan.html", plan_report::html(report)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The options for a model on a GPU, each checked on the simulator.
fn planned(args: &PlanArgs) -> Result<PlanReport, Failure> {
    let (Some(model_spec), Some(gpu_name)) = (&args.model, &args.gpu) else {
        return Err(Failure::usage(anyhow!(
            "--model and --gpu, or --from RUN_DIR"
        )));
    };
    let model = ModelShape::resolve(model_spec).map_err(Failure::usage)?;
    let gpu = Gpu::by_name(gpu_name).map_err(Failure::usage)?;
    let slo = slo(&args.slo).map_err(Failure::usage)?;
    let workload = Workload {
        input_tokens: args.isl,
        output_tokens: args.osl,
        rate: args.rate,
    };
    let max_model_len = args.max_model_len.unwrap_or_else(|| {
        (2 * (args.isl + args.osl))
            .div_ceil(1024)
            .saturating_mul(1024)
            .min(model.max_position_embeddings)
    });
    if max_model_len > model.max_position_embeddings {
        return Err(Failure::usage(anyhow!(
            "--max-model-len {max_model_len} is above the {} tokens {} was trained for, which vLLM refuses",
            model.max_position_embeddings,
            model.name
        )));
    }
    if max_model_len < args.isl + args.osl {
        return Err(Failure::usage(anyhow!(
            "--max-model-len {max_model_len} is shorter than a request ({} + {} tokens)",
            args.isl,
            args.osl
        )));
    }
    let search = Search {
        max_gpus_per_replica: args.gpus,
        gpu_hour_price: args.gpu_hour_price,
        headroom: args.headroom,
        cache: CacheConfig {
            gpu_memory_utilization: args.gpu_memory_utilization,
            max_model_len: Some(max_model_len),
            ..CacheConfig::default()
        },
    };
    let (planned, rejected) = options::enumerate(&model, &gpu, &workload, &slo, &search);
    if planned.is_empty() {
        let reasons: Vec<String> = rejected.iter().map(|(o, e)| format!("{o}: {e}")).collect();
        return Err(Failure::usage(anyhow!(
            "no deployment of {} fits {} GPUs of {} per replica:\n  {}",
            model.name,
            args.gpus,
            gpu.name,
            reasons.join("\n  ")
        )));
    }
    let base = SimSetup {
        model: model_spec.clone(),
        gpu: gpu_name.clone(),
        gpu_memory_utilization: args.gpu_memory_utilization,
        max_model_len: u32::try_from(max_model_len).unwrap_or(u32::MAX),
        ..SimSetup::default()
    };
    let mut checked = Vec::new();
    for option in planned {
        checked.push(check(
            &base,
            &model,
            option,
            (&workload, &slo),
            &search,
            args.sim_requests,
        )?);
    }
    let recommended = checked
        .iter()
        .enumerate()
        .filter(|(_, c)| c.meets_slo)
        .min_by(|(_, a), (_, b)| {
            (a.option.gpus, a.simulated.tpot_p95_s)
                .partial_cmp(&(b.option.gpus, b.simulated.tpot_p95_s))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(i, _)| i);
    let manifests = match (args.autoscale, recommended) {
        (Some(kind), Some(i)) => {
            let option = &checked[i].option;
            Some(manifests(
                args,
                &model.name,
                option.batch_at_slo,
                option.replicas,
                kind,
            )?)
        }
        (Some(_), None) => {
            return Err(Failure::usage(anyhow!(
                "--autoscale: no option meets the SLO, so there is no capacity to scale on"
            )));
        }
        (None, _) => None,
    };
    let mut notes: Vec<String> = Vec::new();
    if checked
        .iter()
        .any(|c| c.option.deployment.pipeline_parallel > 1)
    {
        notes.push(
            "Pipeline-parallel options are not simulated (the simulator runs no pipeline stages), so none is \
             recommended; their memory is vLLM's and their latency a token's pass through every stage."
                .into(),
        );
    }
    notes.extend(
        rejected
            .iter()
            .map(|(option, why)| format!("Left out: {option}: {why}")),
    );
    let (tables, command) = match recommended {
        Some(i) => {
            let c = &checked[i];
            notes.push(format!(
                "Recommended: option {} — {} replica(s) of {} GPU(s); simulated TTFT p95 {} and TPOT p95 {}: meets.",
                i + 1,
                c.option.replicas,
                c.option.deployment.gpus(),
                seconds(c.simulated.ttft_p95_s),
                seconds(c.simulated.tpot_p95_s),
            ));
            notes.extend(explain(
                &c.option,
                &model,
                max_model_len,
                args.max_model_len.is_some(),
            ));
            let flags = flags(&c.option, &model, max_model_len, &search);
            let line: Vec<String> = flags.iter().map(|(f, v)| format!("{f} {v}")).collect();
            (
                vec![
                    options_table(&checked, recommended),
                    curve_table(i, &c.option),
                ],
                Some(format!("vllm serve {} {}", model.source, line.join(" "))),
            )
        }
        None if checked
            .iter()
            .all(|c| c.option.deployment.pipeline_parallel > 1) =>
        {
            notes.push("Only pipeline-parallel options fit, and none was simulated: nothing is recommended.".into());
            (vec![options_table(&checked, recommended)], None)
        }
        None => {
            notes.push(format!(
                "No option meets the SLO on the simulator with up to {EXTRA_REPLICAS_TRIED} replicas beyond the \
                 roofline's count: relax the SLO, shorten requests, or try a larger GPU."
            ));
            (vec![options_table(&checked, recommended)], None)
        }
    };
    let title = format!(
        "{} on {}: {} prompt + {} output tokens at {} req/s, SLO TTFT p95 ≤ {} and TPOT p95 ≤ {}, max_model_len {}",
        model.name,
        gpu.name,
        workload.input_tokens,
        workload.output_tokens,
        workload.rate,
        seconds(slo.ttft_p95_s),
        seconds(slo.tpot_p95_s),
        max_model_len
    );
    Ok(PlanReport {
        schema_version: infer_doctor_report::SCHEMA_VERSION,
        tool: infer_doctor_report::RunDocument::tool(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        title,
        tables,
        notes,
        command,
        manifests,
        details: serde_json::to_value(Planned {
            model: &model.name,
            gpu: gpu.name,
            workload,
            slo,
            max_model_len,
            options: &checked,
            recommended,
            left_out: rejected
                .iter()
                .map(|(o, e)| (o.clone(), e.to_string()))
                .collect(),
        })?,
    })
}

/// `plan.json`'s `details` for a plan from a model and a GPU (docs/REPORT.md).
#[derive(Serialize)]
struct Planned<'a> {
    model: &'a str,
    gpu: &'a str,
    workload: Workload,
    slo: Slo,
    max_model_len: u64,
    /// Every option with the planner's numbers and the simulator's.
    options: &'a [Checked],
    /// Index into `options`.
    recommended: Option<usize>,
    /// Options that do not fit, with vLLM's reason.
    left_out: Vec<(String, String)>,
}

/// `plan.json`'s `details` for a plan from a measured run (docs/REPORT.md).
#[derive(Serialize)]
struct FromMeasured<'a> {
    source: &'a str,
    rate_within_slo: f64,
    /// A single run that met its SLO: capacity is at least this.
    lower_bound: bool,
    mean_concurrency: f64,
    target_rate: f64,
    headroom: f64,
    replicas: u32,
}

/// The TTFT and TPOT targets of `--slo`; the planner and its simulated check judge the 95th percentile.
fn slo(text: &str) -> anyhow::Result<Slo> {
    let set: SloSet = text.parse()?;
    let target = |metric: SloMetric| -> anyhow::Result<f64> {
        let slo = set.0.iter().find(|s| s.metric == metric).ok_or_else(|| {
            anyhow!(
                "--slo {text:?}: plan needs a {}_p95 target",
                metric.as_str()
            )
        })?;
        if slo.stat != "p95" {
            bail!(
                "--slo {text:?}: plan checks the 95th percentile; give {}_p95",
                metric.as_str()
            );
        }
        Ok(slo.threshold / 1000.0)
    };
    Ok(Slo {
        ttft_p95_s: target(SloMetric::Ttft)?,
        tpot_p95_s: target(SloMetric::Tpot)?,
    })
}

/// Runs the option on the simulator at its per-replica rate, adding replicas while the SLO is missed.
/// `base` is the simulated server with the plan's model, GPU and cache settings.
fn check(
    base: &SimSetup,
    model: &ModelShape,
    mut option: DeploymentOption,
    (workload, slo): (&Workload, &Slo),
    search: &Search,
    requests: u64,
) -> Result<Checked, Failure> {
    let deployment = option.deployment;
    if deployment.pipeline_parallel > 1 {
        return Ok(Checked {
            option,
            simulated: Simulated::unmeasured(),
            meets_slo: false,
        });
    }
    let setup = SimSetup {
        tensor_parallel_size: deployment.tensor_parallel,
        quantization: (deployment.quantization != model.quantization).then(|| "fp8".to_owned()),
        kv_cache_dtype: (deployment.kv_cache_dtype == Dtype::Fp8).then(|| "fp8".to_owned()),
        // The flags the plan would print for this option, so the check covers them.
        max_num_seqs: Some(u32::try_from(max_num_seqs(&option)).unwrap_or(u32::MAX)),
        ..base.clone()
    };
    // An option no replica count can save is still simulated, on one replica, to show by how much it misses.
    let limit = match option.replicas {
        0 => 0,
        planned => planned.saturating_add(EXTRA_REPLICAS_TRIED),
    };
    loop {
        let load = Load {
            rate: workload.rate / f64::from(option.replicas.max(1)),
            input_tokens: u32::try_from(workload.input_tokens).unwrap_or(u32::MAX),
            output_tokens: u32::try_from(workload.output_tokens).unwrap_or(u32::MAX),
            requests,
        };
        let simulated = whatif::simulate(&setup, load).map_err(Failure::usage)?;
        // One output token has no time per output token to miss.
        let tpot_met = workload.output_tokens < 2 || simulated.tpot_p95_s <= slo.tpot_p95_s;
        let meets_slo = simulated.ttft_p95_s <= slo.ttft_p95_s && tpot_met;
        if meets_slo || option.replicas >= limit {
            if meets_slo && option.replicas == 0 {
                // The roofline found no count, yet one replica (what was simulated) meets the SLO.
                option.set_replicas(1, workload, search);
            }
            return Ok(Checked {
                option,
                simulated,
                meets_slo,
            });
        }
        option.set_replicas(option.replicas + 1, workload, search);
    }
}

/// The autoscaler for a replica's measured or planned capacity: `concurrency` requests at the SLO, `replicas`
/// the floor, twice that the ceiling.
fn manifests(
    args: &PlanArgs,
    model_name: &str,
    concurrency: f64,
    replicas: u32,
    kind: AutoscaleKind,
) -> Result<String, Failure> {
    let capacity = PlannedCapacity {
        concurrency_per_replica: concurrency,
        replicas_needed: replicas,
        headroom: 2.0,
    };
    let served = args.served_model_name.as_deref().unwrap_or(model_name);
    let mut target = AutoscaleTarget::from_capacity(
        &args.deployment,
        served,
        &args.prometheus_address,
        &capacity,
    )
    .map_err(Failure::usage)?;
    if let Some(namespace) = &args.namespace {
        target = target.in_namespace(namespace);
    }
    match kind {
        AutoscaleKind::Hpa => autoscale::hpa(&target),
        AutoscaleKind::Keda => autoscale::keda(&target),
    }
    .map_err(Failure::usage)
}

/// As many sequences as the cache holds at the workload's mean length, within vLLM's own cap.
fn max_num_seqs(option: &DeploymentOption) -> u64 {
    (option.max_concurrency.floor() as u64).clamp(1, option.memory.limits.max_num_seqs)
}

/// The vLLM flags that give the recommended option, each value from the plan.
fn flags(
    option: &DeploymentOption,
    model: &ModelShape,
    max_model_len: u64,
    search: &Search,
) -> Vec<(String, String)> {
    let d = &option.deployment;
    let max_num_seqs = max_num_seqs(option);
    let mut flags = vec![
        (
            "--tensor-parallel-size".to_owned(),
            d.tensor_parallel.to_string(),
        ),
        ("--max-model-len".to_owned(), max_model_len.to_string()),
        (
            "--gpu-memory-utilization".to_owned(),
            search.cache.gpu_memory_utilization.to_string(),
        ),
        ("--max-num-seqs".to_owned(), max_num_seqs.to_string()),
        (
            "--max-num-batched-tokens".to_owned(),
            option.memory.limits.max_num_batched_tokens.to_string(),
        ),
        (
            "--kv-cache-dtype".to_owned(),
            if d.kv_cache_dtype == Dtype::Fp8 {
                "fp8"
            } else {
                "auto"
            }
            .to_owned(),
        ),
    ];
    if d.quantization != model.quantization {
        flags.push(("--quantization".to_owned(), "fp8".to_owned()));
    }
    flags
}

/// Replicas and GPUs; none when no count meets the SLO.
fn count(n: u32) -> String {
    if n == 0 {
        "-".to_owned()
    } else {
        n.to_string()
    }
}

fn seconds(s: f64) -> String {
    if !s.is_finite() {
        "-".to_owned()
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// One row per option: what the planner computed and what the simulator saw.
fn options_table(checked: &[Checked], recommended: Option<usize>) -> Table {
    let header = [
        "option",
        "TP",
        "weights",
        "KV",
        "KV tokens",
        "max conc.",
        "prefill",
        "mean TPOT",
        "replicas",
        "GPUs",
        "$/M out",
        "simulated TTFT p95",
        "simulated TPOT p95",
        "SLO",
    ];
    let rows = checked
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let o = &c.option;
            vec![
                format!(
                    "{}{}",
                    i + 1,
                    if recommended == Some(i) { " *" } else { "" }
                ),
                match o.deployment.pipeline_parallel {
                    1 => o.deployment.tensor_parallel.to_string(),
                    pp => format!("{} x PP {pp}", o.deployment.tensor_parallel),
                },
                o.weights_label(),
                o.deployment.kv_cache_dtype.to_string(),
                o.memory.kv.tokens().to_string(),
                format!("{:.0}", o.max_concurrency),
                seconds(o.predicted_ttft_s),
                seconds(o.predicted_tpot_s),
                count(o.replicas),
                count(o.gpus),
                o.cost_per_million_output_tokens
                    .map_or("-".to_owned(), |c| format!("{c:.2}")),
                seconds(c.simulated.ttft_p95_s),
                seconds(c.simulated.tpot_p95_s),
                if c.meets_slo {
                    "meets"
                } else if o.deployment.pipeline_parallel > 1 {
                    "not simulated"
                } else {
                    "misses"
                }
                .to_owned(),
            ]
        })
        .collect();
    Table {
        caption: "Deployment options (* recommended): vLLM's memory arithmetic, the roofline, the simulator".into(),
        header: header.map(str::to_owned).to_vec(),
        rows,
    }
}

/// The recommended option's throughput against concurrency on one replica, with its knee.
fn curve_table(index: usize, option: &DeploymentOption) -> Table {
    let knee = roofline::knee(&option.curve).map(|k| k.concurrency);
    let rows = option
        .curve
        .iter()
        .map(|p| {
            vec![
                format!("{:.0}", p.concurrency),
                seconds(p.tpot_s),
                format!("{:.0}", p.output_tokens_per_s),
                format!("{:.2}", p.requests_per_s),
                format!("{:?}", p.bound).to_lowercase(),
                if Some(p.concurrency) == knee {
                    "knee".to_owned()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    Table {
        caption: format!(
            "Throughput against concurrency, option {} on one replica (roofline)",
            index + 1
        ),
        header: ["concurrency", "TPOT", "output tok/s", "req/s", "bound", ""]
            .map(str::to_owned)
            .to_vec(),
        rows,
    }
}

/// Why each recommended flag has its value.
fn explain(
    option: &DeploymentOption,
    model: &ModelShape,
    max_model_len: u64,
    given: bool,
) -> Vec<String> {
    let d = &option.deployment;
    let chosen = if given {
        "as given".to_owned()
    } else {
        format!(
            "twice a request's length (the model allows {})",
            model.max_position_embeddings
        )
    };
    let mut why = vec![format!(
        "--max-model-len {max_model_len}: {chosen}; the cache holds {:.0} requests of that length at once.",
        option.memory.kv.max_concurrency(max_model_len),
    )];
    if d.kv_cache_dtype == Dtype::Fp8 {
        why.push(
            "--kv-cache-dtype fp8: half the bytes a token, twice the tokens the cache holds."
                .into(),
        );
    }
    if d.quantization != model.quantization {
        why.push(
            "--quantization fp8: half the weight bytes each decode step reads, and FP8 tensor cores for prefill."
                .into(),
        );
    }
    why.push(format!(
        "--max-num-seqs {}: no more sequences than the cache holds at the workload's mean length (within vLLM's \
         cap of {}), so admitted requests are not preempted.",
        max_num_seqs(option),
        option.memory.limits.max_num_seqs
    ));
    why
}

/// What one replica showed in a measured run: the rate it served within its SLO and the concurrency that took.
struct Measured {
    source: String,
    /// Requests per second within every SLO; for a single run meeting its SLO, a lower bound.
    rate: f64,
    lower_bound: bool,
    concurrency: f64,
    slo: String,
    model: Option<String>,
}

/// Replicas for `--rate` from a bench run, a sweep or a diagnose bundle.
fn from_run(args: &PlanArgs, dir: &Path) -> Result<PlanReport, Failure> {
    let slo = slo(&args.slo).map_err(Failure::usage)?;
    let measured = measured(dir, &slo).map_err(Failure::usage)?;
    let needed = args.rate * (1.0 + args.headroom) / measured.rate;
    let replicas = needed.ceil().max(1.0) as u32;
    let headroom_now = measured.rate / args.rate - 1.0;
    let bound = if measured.lower_bound {
        "at least "
    } else {
        ""
    };
    let table = Table {
        caption: "Capacity one replica showed".into(),
        header: [
            "source",
            "served within SLO",
            "SLO",
            "mean concurrency",
            "target rate",
            "replicas",
            "headroom of one",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: vec![vec![
            measured.source.clone(),
            format!("{bound}{:.2} req/s", measured.rate),
            measured.slo.clone(),
            format!("{:.1}", measured.concurrency),
            format!("{} req/s", args.rate),
            replicas.to_string(),
            format!("{:+.0}%", headroom_now * 100.0),
        ]],
    };
    let mut notes = vec![format!(
        "replicas = ceil(target rate × (1 + {:.0}% headroom) / rate one replica serves within the SLO) = ceil({} × {:.2} / {:.2}) = {replicas}",
        args.headroom * 100.0,
        args.rate,
        1.0 + args.headroom,
        measured.rate
    )];
    if measured.lower_bound {
        notes.push(
            "A single run that met its SLO shows a lower bound of capacity; `bench --sweep` with an SLO measures the \
             highest rate that meets it."
                .into(),
        );
    }
    let manifests = match args.autoscale {
        Some(kind) => Some(manifests(
            args,
            measured.model.as_deref().unwrap_or("model"),
            measured.concurrency,
            replicas,
            kind,
        )?),
        None => None,
    };
    Ok(PlanReport {
        schema_version: infer_doctor_report::SCHEMA_VERSION,
        tool: RunDocument::tool(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        title: format!("Replicas for {} req/s from {}", args.rate, dir.display()),
        tables: vec![table],
        notes,
        command: None,
        manifests,
        details: serde_json::to_value(FromMeasured {
            source: &measured.source,
            rate_within_slo: measured.rate,
            lower_bound: measured.lower_bound,
            mean_concurrency: measured.concurrency,
            target_rate: args.rate,
            headroom: args.headroom,
            replicas,
        })?,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not the document infer-doctor wrote", path.display()))
}

fn measured(dir: &Path, slo: &Slo) -> anyhow::Result<Measured> {
    let run = [dir.join("run.json"), dir.join("loaded/run.json")]
        .into_iter()
        .find(|p| p.is_file());
    if let Some(path) = run {
        let document: RunDocument = read_json(&path)?;
        let model = document
            .target
            .pointer("/models/0")
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        if let Some(sweep) = document.sweep {
            let sweep: SweepOutcome = serde_json::from_value(sweep)
                .with_context(|| format!("{}: its sweep", path.display()))?;
            return from_sweep(&path, &sweep, slo, model);
        }
        return from_summary(&path, &document.summary, slo, model);
    }
    let diagnosis = dir.join("diagnosis.json");
    if diagnosis.is_file() {
        let document: DiagnosisDocument = read_json(&diagnosis)?;
        let summary = document
            .evidence
            .client
            .ok_or_else(|| anyhow!("{}: the diagnosis measured no load", diagnosis.display()))?;
        return from_summary(&diagnosis, &summary, slo, None);
    }
    bail!(
        "{}: no run.json, loaded/run.json or diagnosis.json (a bench run, sweep or diagnose bundle)",
        dir.display()
    )
}

/// Whether a measured load met its objectives: the run's own where it had some, else plan's `--slo` on the TTFT and
/// TPOT p95 it measured. `Ok` says which objectives, `Err` what missed.
fn within_slo(summary: &RunSummary, slo: &Slo) -> Result<String, String> {
    if !summary.slo.is_empty() {
        return match summary.slo.iter().find(|s| !s.pass) {
            Some(missed) => Err(format!(
                "{} {} > {}",
                missed.name,
                missed
                    .observed
                    .map_or("unmeasured".to_owned(), |o| format!("{o:.1}")),
                missed.threshold
            )),
            None => Ok(summary
                .slo
                .iter()
                .map(|s| format!("{}={}", s.name, s.threshold))
                .collect::<Vec<_>>()
                .join(",")),
        };
    }
    let latency = &summary.latency;
    let checks = [
        (
            "ttft_p95",
            latency.ttft.map(|s| s.p95),
            slo.ttft_p95_s * 1e3,
        ),
        (
            "tpot_p95",
            latency.tpot.map(|s| s.p95),
            slo.tpot_p95_s * 1e3,
        ),
    ];
    for (name, observed, limit) in checks {
        match observed {
            None => return Err(format!("{name} unmeasured")),
            Some(ms) if ms > limit => return Err(format!("{name} {ms:.1} ms > {limit} ms")),
            Some(_) => {}
        }
    }
    Ok(format!(
        "plan's ttft_p95={}ms,tpot_p95={}ms",
        slo.ttft_p95_s * 1e3,
        slo.tpot_p95_s * 1e3
    ))
}

fn from_sweep(
    path: &Path,
    sweep: &SweepOutcome,
    slo: &Slo,
    model: Option<String>,
) -> anyhow::Result<Measured> {
    // The sweep's own verdict where it had objectives, else each point against plan's --slo.
    let best = match sweep.best_rate {
        Some(rate) => sweep.points.iter().find(|p| p.rate == rate),
        None => sweep
            .points
            .iter()
            .filter(|p| within_slo(&p.summary, slo).is_ok())
            .max_by(|a, b| a.rate.total_cmp(&b.rate)),
    };
    let Some(best) = best else {
        bail!(
            "{}: no point of the sweep met the SLO (lower the rates, or loosen --slo); its saturation was {:.2} \
             req/s",
            path.display(),
            sweep.saturation_rate
        );
    };
    let objectives = within_slo(&best.summary, slo).unwrap_or_else(|missed| missed);
    Ok(Measured {
        source: format!("sweep: highest rate meeting the SLO ({})", path.display()),
        rate: best.summary.throughput.request_rate,
        lower_bound: false,
        concurrency: best.summary.throughput.mean_concurrency,
        slo: objectives,
        model,
    })
}

fn from_summary(
    path: &Path,
    summary: &RunSummary,
    slo: &Slo,
    model: Option<String>,
) -> anyhow::Result<Measured> {
    let objectives = within_slo(summary, slo).map_err(|missed| {
        anyhow!(
            "{}: the run missed its SLO ({missed}) at {:.2} req/s, so one replica serves less than that; a sweep \
             finds how much",
            path.display(),
            summary.throughput.request_rate
        )
    })?;
    Ok(Measured {
        source: format!("run meeting its SLO ({})", path.display()),
        rate: summary.throughput.request_rate,
        lower_bound: true,
        concurrency: summary.throughput.mean_concurrency,
        slo: objectives,
        model,
    })
}
