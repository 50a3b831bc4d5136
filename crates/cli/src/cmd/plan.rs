//! `plan`: the deployment options for a load and an SLO from the planner, each checked on the simulator's
//! discrete-event clock at its per-replica rate, and the cheapest that meets the SLO with its vLLM flags.

use anyhow::{anyhow, bail};
use infer_doctor_core::{SloMetric, SloSet};
use infer_doctor_plan::options::{self, DeploymentOption, Search, Slo, Workload};
use infer_doctor_plan::{CacheConfig, Dtype, Gpu, ModelShape};
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::whatif::{self, Load, Simulated};
use serde::Serialize;

use crate::Failure;
use crate::args::{AutoscaleKind, PlanArgs, PlanFormat};
use infer_doctor_plan::autoscale::{self, AutoscaleTarget, PlannedCapacity};

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

#[derive(Serialize)]
struct PlanDocument<'a> {
    model: &'a str,
    gpu: &'a str,
    workload: Workload,
    slo: Slo,
    max_model_len: u64,
    options: Vec<Checked>,
    rejected: Vec<(String, String)>,
    recommended: Option<usize>,
    flags: Option<Vec<(String, String)>>,
    /// `--autoscale`: the manifests for the recommended option.
    autoscale: Option<String>,
}

pub fn run(args: &PlanArgs) -> Result<u8, Failure> {
    let model = ModelShape::resolve(&args.model).map_err(Failure::usage)?;
    let gpu = Gpu::by_name(&args.gpu).map_err(Failure::usage)?;
    let slo = slo(&args.slo).map_err(Failure::usage)?;
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.isl == 0 || args.osl == 0 {
        return Err(Failure::usage(anyhow!(
            "--rate, --isl and --osl must be positive (got {}, {}, {})",
            args.rate,
            args.isl,
            args.osl
        )));
    }
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
    let mut checked = Vec::new();
    for option in planned {
        checked.push(check(
            args,
            &model,
            option,
            &workload,
            &slo,
            &search,
            max_model_len,
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
    let autoscale = match (args.autoscale, recommended) {
        (Some(kind), Some(i)) => Some(manifests(args, &model, &checked[i].option, kind)?),
        (Some(_), None) => {
            return Err(Failure::usage(anyhow!(
                "--autoscale: no option meets the SLO, so there is no capacity to scale on"
            )));
        }
        (None, _) => None,
    };
    let document = PlanDocument {
        autoscale,
        model: &model.name,
        gpu: gpu.name,
        workload,
        slo,
        max_model_len,
        flags: recommended.map(|i| flags(&checked[i].option, &model, max_model_len, &search)),
        options: checked,
        rejected: rejected
            .into_iter()
            .map(|(o, e)| (o, e.to_string()))
            .collect(),
        recommended,
    };
    match args.format {
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&document)?),
        PlanFormat::Md => print!("{}", markdown(&document)),
        PlanFormat::Term => print!("{}", text(&document)),
    }
    if args.format != PlanFormat::Json
        && let Some(manifests) = &document.autoscale
    {
        print!("\n{manifests}");
    }
    Ok(crate::exit::OK)
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
fn check(
    args: &PlanArgs,
    model: &ModelShape,
    mut option: DeploymentOption,
    workload: &Workload,
    slo: &Slo,
    search: &Search,
    max_model_len: u64,
) -> Result<Checked, Failure> {
    let deployment = option.deployment;
    let setup = SimSetup {
        model: args.model.clone(),
        gpu: args.gpu.clone(),
        tensor_parallel_size: deployment.tensor_parallel,
        gpu_memory_utilization: args.gpu_memory_utilization,
        max_model_len: u32::try_from(max_model_len).unwrap_or(u32::MAX),
        quantization: (deployment.quantization != model.quantization).then(|| "fp8".to_owned()),
        kv_cache_dtype: (deployment.kv_cache_dtype == Dtype::Fp8).then(|| "fp8".to_owned()),
        ..SimSetup::default()
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
            requests: args.sim_requests.max(20),
        };
        let simulated = whatif::simulate(&setup, load).map_err(Failure::usage)?;
        let meets_slo =
            simulated.ttft_p95_s <= slo.ttft_p95_s && simulated.tpot_p95_s <= slo.tpot_p95_s;
        if meets_slo || option.replicas >= limit {
            return Ok(Checked {
                option,
                simulated,
                meets_slo,
            });
        }
        option.set_replicas(option.replicas + 1, workload, search);
    }
}

/// The autoscaler for the recommended option: its batch at the SLO is a replica's capacity, its replicas the
/// floor, twice that the ceiling.
fn manifests(
    args: &PlanArgs,
    model: &ModelShape,
    option: &DeploymentOption,
    kind: AutoscaleKind,
) -> Result<String, Failure> {
    let capacity = PlannedCapacity {
        concurrency_per_replica: option.batch_at_slo,
        replicas_needed: option.replicas,
        headroom: 2.0,
    };
    let served = args.served_model_name.as_deref().unwrap_or(&model.name);
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

/// The vLLM flags that give the recommended option, each value from the plan.
fn flags(
    option: &DeploymentOption,
    model: &ModelShape,
    max_model_len: u64,
    search: &Search,
) -> Vec<(String, String)> {
    let d = &option.deployment;
    // As many sequences as the cache holds at full length, so admitted requests are never preempted, up to
    // vLLM's own cap.
    let max_num_seqs = (option.memory.kv.tokens() / max_model_len.max(1))
        .max(option.max_concurrency.floor() as u64)
        .clamp(1, option.memory.limits.max_num_seqs);
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

/// One row per option, the same cells for the terminal and Markdown.
fn rows(document: &PlanDocument) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
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
    let rows = document
        .options
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let o = &c.option;
            vec![
                format!(
                    "{}{}",
                    i + 1,
                    if document.recommended == Some(i) {
                        " *"
                    } else {
                        ""
                    }
                ),
                o.deployment.tensor_parallel.to_string(),
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
                if c.meets_slo { "meets" } else { "misses" }.to_owned(),
            ]
        })
        .collect();
    (header, rows)
}

fn summary(document: &PlanDocument) -> String {
    let w = &document.workload;
    format!(
        "{} on {}: {} prompt + {} output tokens at {} req/s, SLO TTFT p95 ≤ {} and TPOT p95 ≤ {}, \
         max_model_len {}",
        document.model,
        document.gpu,
        w.input_tokens,
        w.output_tokens,
        w.rate,
        seconds(document.slo.ttft_p95_s),
        seconds(document.slo.tpot_p95_s),
        document.max_model_len
    )
}

fn recommendation(document: &PlanDocument) -> String {
    match (document.recommended, &document.flags) {
        (Some(i), Some(flags)) => {
            let c = &document.options[i];
            let flags: Vec<String> = flags.iter().map(|(f, v)| format!("{f} {v}")).collect();
            format!(
                "Recommended: option {} — {} replica(s) of {} GPU(s), simulated TTFT p95 {} and TPOT p95 {}: meets.\n\
                 vllm serve {} {}\n",
                i + 1,
                c.option.replicas,
                c.option.deployment.gpus(),
                seconds(c.simulated.ttft_p95_s),
                seconds(c.simulated.tpot_p95_s),
                document.model,
                flags.join(" ")
            )
        }
        _ => format!(
            "No option meets the SLO on the simulator with up to {EXTRA_REPLICAS_TRIED} replicas beyond the roofline's \
             count: relax the SLO, shorten requests, or try a larger GPU.\n"
        ),
    }
}

/// The recommended option's throughput against concurrency on one replica, with its knee.
fn curve_rows(document: &PlanDocument) -> Option<(usize, Vec<Vec<String>>)> {
    let i = document.recommended?;
    let curve = &document.options[i].option.curve;
    let knee = infer_doctor_plan::roofline::knee(curve).map(|k| k.concurrency);
    let rows = curve
        .iter()
        .map(|p| {
            vec![
                format!("{:.0}", p.concurrency),
                seconds(p.step_s),
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
    Some((i, rows))
}

const CURVE_HEADER: [&str; 6] = ["concurrency", "TPOT", "output tok/s", "req/s", "bound", ""];

fn text(document: &PlanDocument) -> String {
    let (header, rows) = rows(document);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = summary(document) + "\n\n";
    out += &line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    for (option, why) in &document.rejected {
        out += &format!("  left out: {option}: {why}\n");
    }
    out += &("\n".to_owned() + &recommendation(document));
    if let Some((i, rows)) = curve_rows(document) {
        out += &format!(
            "\nThroughput against concurrency, option {} on one replica (roofline):\n",
            i + 1
        );
        let widths: Vec<usize> = (0..CURVE_HEADER.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].len())
                    .chain([CURVE_HEADER[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(CURVE_HEADER.map(str::to_owned).to_vec()).chain(rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out += &format!("  {}\n", cells.join("  ").trim_end());
        }
    }
    out
}

fn markdown(document: &PlanDocument) -> String {
    let (header, rows) = rows(document);
    let mut out = format!(
        "# Capacity plan\n\n{}\n\n| {} |\n|{}\n",
        summary(document),
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    if !document.rejected.is_empty() {
        out += "\nLeft out:\n\n";
        for (option, why) in &document.rejected {
            out += &format!("- {option}: {why}\n");
        }
    }
    out += &("\n".to_owned() + &recommendation(document));
    if let Some((i, rows)) = curve_rows(document) {
        out += &format!(
            "\n## Throughput against concurrency (option {}, one replica, roofline)\n\n| {} |\n|{}\n",
            i + 1,
            CURVE_HEADER.join(" | "),
            "---|".repeat(CURVE_HEADER.len())
        );
        for row in rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
    }
    out
}
