//! Rules over PyTorch profiler traces: a GPU waiting on its host, launches paid one by one, collectives nothing
//! hides, copies inside steps, decode steps far above the roofline floor. Each rank is judged; the worst speaks.

use infer_doctor_core::{
    Confidence, HardwareFacts, Observation, PhaseTrace, RankTrace, Severity, Symptom,
};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, percent, ratio, seen};
use crate::facts::Facts;

const HOW_TRACE: &str = "record a trace with vLLM's profiler (vllm serve … --profiler-config \
     '{\"profiler\":\"torch\",\"torch_profiler_dir\":\"/traces\"}', then POST /start_profile, some load, POST \
     /stop_profile) and pass --trace /traces";

const GPU_IDLE: Rule = Rule {
    id: "trace.gpu_idle",
    symptom: Symptom::Throughput,
    why: "The GPU ran nothing for much of the traced time. When the gaps open because the CPU launched the next \
          kernel only after the previous one ended (HTA's host wait), the host — Python scheduling, input \
          preparation, sampling, detokenizing, launching — sets the pace and a faster GPU would not help.",
    remedies: &[
        "Keep CUDA graphs on (drop --enforce-eager) so a decode step is one launch",
        "Use vLLM's async scheduling (--async-scheduling) so the CPU prepares the next step while the GPU runs",
        "Give the engine core a fast, dedicated CPU core (no CPU quota, performance governor) and keep tokenization \
         and detokenization off its path (several API server processes: --api-server-count)",
        "Larger batches (more concurrency, higher --max-num-seqs) give the GPU more work per launch",
    ],
    source: "facebookresearch/HolisticTraceAnalysis: docs (temporal and idle time breakdown; host wait = the \
             kernel launched after the previous one ended); AMD-AGI/TraceLens: \
             TraceLens/Agent/Analysis/category_analyses/cpu_idle_analysis.py (flags idle above 15%); \
             https://docs.vllm.ai/en/latest/contributing/profiling.html",
};

const LAUNCH_BOUND: Rule = Rule {
    id: "trace.launch_bound",
    symptom: Symptom::Itl,
    why: "Most kernels run for less than the few microseconds it costs the CPU to launch one, and they are \
          launched one by one rather than replayed from CUDA graphs: the GPU finishes each before the next \
          arrives, so the step's time is the launches', not the math's.",
    remedies: &[
        "Keep CUDA graphs on: drop --enforce-eager (vLLM captures decode batches up to max_cudagraph_capture_size)",
        "Let torch.compile fuse the small elementwise kernels (vLLM's default compilation level)",
        "Batch more requests per step so each kernel does more work",
    ],
    source: "facebookresearch/HolisticTraceAnalysis: hta/analyzers/cuda_kernel_analysis.py (short kernels: GPU \
             time under the launch's CPU time; launch delay); AMD-AGI/TraceLens (short kernels under 10 µs); \
             https://docs.vllm.ai/en/latest/design/cuda_graphs.html",
};

const COMM_EXPOSED: Rule = Rule {
    id: "trace.comm_exposed",
    symptom: Symptom::Itl,
    why: "Tensor parallelism all-reduces every layer's output; in inference nothing overlaps those collectives, \
          so their time adds to every step. A large share means the GPUs' link is slow for the model's size (PCIe \
          instead of NVLink, a degraded link, across nodes) or the tensor-parallel degree is higher than needed.",
    remedies: &[
        "Check the GPUs meet over NVLink (`nvidia-smi topo -m`; diagnose's hardware.tp_over_pcie) and that every \
         link is up (`nvidia-smi nvlink -s`)",
        "Keep vLLM's custom all-reduce on (do not pass --disable-custom-all-reduce) on NVLink machines",
        "Use fewer GPUs per replica (lower --tensor-parallel-size, more replicas) when the model fits, or pipeline \
         parallelism across nodes instead of tensor parallelism",
    ],
    source: "facebookresearch/HolisticTraceAnalysis: hta/analyzers/communication_analysis.py (communication \
             computation overlap); https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html",
};

const MEMCPY_IN_STEP: Rule = Rule {
    id: "trace.memcpy_in_step",
    symptom: Symptom::Itl,
    why: "Engine steps copy data between host and GPU memory over PCIe while the step waits: weights or KV blocks \
          offloaded to CPU memory, swapped-out requests coming back, or pageable host tensors the model reads. \
          vLLM's own per-step copies (token ids in, sampled tokens out) are small and stay far below this.",
    remedies: &[
        "If the server offloads (--cpu-offload-gb, KV offloading, --swap-space with preemption by swapping), give \
         it enough GPU memory to keep weights and KV on the GPU",
        "Find the copies' CPU-side callers in the trace (the launching cudaMemcpyAsync's stack with with_stack) \
         and keep those tensors on the GPU or pinned",
    ],
    source: "facebookresearch/HolisticTraceAnalysis: hta/analyzers/trace_counters.py (memory copy bandwidth by \
             kind); https://docs.vllm.ai/en/latest/configuration/optimization.html",
};

const STEP_OVER_FLOOR: Rule = Rule {
    id: "trace.step_over_floor",
    symptom: Symptom::Itl,
    why: "A decode step must at least read the weights once from GPU memory, and a prefill step must at least \
          multiply its prompt tokens through them at the GPU's peak FLOPs; the traced steps take the GPU much longer \
          than that floor. The class of kernel that dominates them says why: attention grows with the batch's \
          context lengths, GEMMs with the batch and the weights' precision.",
    remedies: &[
        "Attention-dominated: shorter contexts per step (a lower --max-num-seqs, prefix caching), an FP8 KV cache \
         (--kv-cache-dtype fp8), or a faster attention backend",
        "GEMM-dominated: quantized weights (FP8, AWQ), or more tensor parallelism to split the weights' read; for \
         prefill, FP8 GEMMs run at twice the BF16 peak",
        "Other-dominated: many small kernels between the GEMMs; CUDA graphs and torch.compile fusion",
    ],
    source: "https://docs.vllm.ai/en/latest/contributing/profiling.html; vllm-project/vllm: \
             vllm/v1/worker/gpu_worker.py (the execute_context_N_generation_M step annotation)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![
        gpu_idle(facts, t),
        launch_bound(facts, t),
        comm_exposed(facts, t),
        memcpy_in_step(facts, t),
        step_over_floor(facts, t),
    ]
}

/// Ranks with GPU activity, each with the window label its observations carry.
fn gpu_ranks<'e>(facts: &Facts<'e>) -> Vec<(&'e RankTrace, String)> {
    let Some(trace) = &facts.evidence.trace else {
        return Vec::new();
    };
    trace
        .ranks
        .iter()
        .filter(|r| r.busy_us > 0.0)
        .map(|r| {
            let who = r
                .rank
                .map_or_else(|| "trace".to_string(), |n| format!("trace rank {n}"));
            let cut = if r.cut.is_some() { ", cut short" } else { "" };
            (r, format!("{who} ({}{cut})", r.source))
        })
        .collect()
}

/// The GPU's idle share: within engine steps where they are annotated (gaps between requests are not the host's
/// doing), else over the whole trace; and whether it was measured within steps.
fn idle_share(rank: &RankTrace) -> Option<(f64, bool)> {
    let spans: f64 = rank
        .phases
        .iter()
        .map(|p| p.mean_gpu_span_us * p.steps as f64)
        .sum();
    let busy: f64 = rank.phases.iter().map(|p| p.gpu_busy_us).sum();
    match ratio(spans - busy, spans) {
        Some(share) => Some((share.max(0.0), true)),
        None => ratio(rank.idle_us, rank.span_us).map(|share| (share, false)),
    }
}

/// The share of the idle time the host caused (HTA's host wait).
fn host_wait_share(rank: &RankTrace) -> Option<f64> {
    ratio(
        rank.idle_host_wait_us,
        rank.idle_host_wait_us + rank.idle_kernel_wait_us + rank.idle_other_us,
    )
}

/// The rank with the largest value among those that have one.
fn worst<'r>(
    ranks: &'r [(&'r RankTrace, String)],
    value: impl Fn(&RankTrace) -> Option<f64>,
) -> Option<(&'r RankTrace, &'r str, f64)> {
    ranks
        .iter()
        .filter_map(|(r, w)| Some((*r, w.as_str(), value(r)?)))
        .max_by(|a, b| a.2.total_cmp(&b.2))
}

fn gpu_idle(facts: &Facts, t: &Thresholds) -> Assessment {
    let ranks = gpu_ranks(facts);
    let Some((rank, window, share)) = worst(&ranks, |r| idle_share(r).map(|(s, _)| s)) else {
        return GPU_IDLE.unknown("a profiler trace with GPU activity", HOW_TRACE);
    };
    let in_steps = idle_share(rank).is_some_and(|(_, steps)| steps);
    let scope = if in_steps {
        "within its engine steps"
    } else {
        "over the whole trace"
    };
    if share <= t.trace_gpu_idle_share {
        return GPU_IDLE.passes(format!("GPU idle {} {scope} ({window})", percent(share)));
    }
    let host = host_wait_share(rank);
    let host_bound = host.is_some_and(|h| h >= 0.5);
    let mut evidence = vec![compared(
        format!("GPU idle share {scope}"),
        share,
        ">",
        t.trace_gpu_idle_share,
        window,
    )];
    if let Some(host) = host {
        evidence.push(seen("host wait share of idle (HTA)", host, window));
    }
    let cause = match host {
        Some(h) if h >= 0.5 => format!(
            "the host launched work late: {} of the idle time is HTA's host wait",
            percent(h)
        ),
        Some(h) => format!(
            "only {} of it is the host launching late; the rest is waits between kernels or on syncs",
            percent(h)
        ),
        None => "the trace does not say what the GPU waited on".to_string(),
    };
    // Idle over a whole trace can be time with no requests at all; within steps it cannot.
    let confidence = match (in_steps, host_bound) {
        (true, true) => Confidence::High,
        (true, false) | (false, true) => Confidence::Medium,
        (false, false) => Confidence::Low,
    };
    GPU_IDLE.fires(
        Severity::Warning,
        confidence,
        format!(
            "the GPU sat idle {} of the time {scope}: {cause}",
            percent(share)
        ),
        evidence,
    )
}

fn launch_bound(facts: &Facts, t: &Thresholds) -> Assessment {
    let ranks: Vec<_> = gpu_ranks(facts)
        .into_iter()
        .filter(|(r, _)| r.kernels as f64 >= t.trace_min_kernels)
        .collect();
    let Some((rank, window, short)) =
        worst(&ranks, |r| ratio(r.short_kernels as f64, r.kernels as f64))
    else {
        return LAUNCH_BOUND.unknown(
            &format!("a trace of at least {:.0} kernels", t.trace_min_kernels),
            HOW_TRACE,
        );
    };
    let graphs = ratio(rank.kernels_from_graphs as f64, rank.kernels as f64).unwrap_or(0.0);
    let idle = idle_share(rank).map_or(0.0, |(s, _)| s);
    let host = host_wait_share(rank).unwrap_or(0.0);
    let detail = format!(
        "{} of {} kernels under 10 µs, {} from CUDA graphs, GPU idle {} ({} of it host wait)",
        percent(short),
        rank.kernels,
        percent(graphs),
        percent(idle),
        percent(host)
    );
    // Short kernels cost nothing while the GPU stays busy: only with a GPU waiting on its host do they set the pace.
    if short < t.trace_short_kernel_share
        || graphs >= t.trace_graph_kernel_share
        || idle <= t.trace_gpu_idle_share
        || host < 0.5
    {
        return LAUNCH_BOUND.passes(format!("{detail} ({window})"));
    }
    let mut evidence = vec![
        compared(
            "kernels under 10 µs",
            short,
            ">",
            t.trace_short_kernel_share,
            window,
        ),
        compared(
            "kernels from CUDA graphs",
            graphs,
            "<",
            t.trace_graph_kernel_share,
            window,
        ),
        compared("GPU idle share", idle, ">", t.trace_gpu_idle_share, window),
    ];
    if let Some(delay) = rank.launch_delay_p50_us {
        evidence.push(seen("launch delay p50 (µs)", delay, window));
    }
    LAUNCH_BOUND.fires(
        Severity::Warning,
        Confidence::High,
        format!("kernel launches set the pace: {detail}"),
        evidence,
    )
}

fn comm_exposed(facts: &Facts, t: &Thresholds) -> Assessment {
    let ranks = gpu_ranks(facts);
    let Some((rank, window, share)) =
        worst(&ranks, |r| ratio(r.communication_exposed_us, r.busy_us))
    else {
        return COMM_EXPOSED.unknown("a profiler trace with GPU activity", HOW_TRACE);
    };
    if rank.communication_us <= 0.0 {
        return COMM_EXPOSED.passes(format!(
            "no communication kernels ({window}): one GPU, or no collective in the traced steps"
        ));
    }
    let detail = format!(
        "communication {} of the GPU's busy time with nothing overlapping it ({:.1} ms of {:.1} ms)",
        percent(share),
        rank.communication_exposed_us / 1e3,
        rank.busy_us / 1e3
    );
    if share <= t.trace_comm_exposed_share {
        return COMM_EXPOSED.passes(format!("{detail} ({window})"));
    }
    COMM_EXPOSED.fires(
        Severity::Warning,
        if share > 2.0 * t.trace_comm_exposed_share {
            Confidence::High
        } else {
            Confidence::Medium
        },
        detail,
        vec![
            compared(
                "exposed communication / GPU busy",
                share,
                ">",
                t.trace_comm_exposed_share,
                window,
            ),
            seen("communication busy (µs)", rank.communication_us, window),
        ],
    )
}

fn memcpy_in_step(facts: &Facts, t: &Thresholds) -> Assessment {
    let ranks: Vec<_> = gpu_ranks(facts)
        .into_iter()
        .filter(|(r, _)| !r.phases.is_empty())
        .collect();
    let copy_share = |r: &RankTrace| {
        let copies: f64 = r.phases.iter().map(|p| p.host_copy_us).sum();
        ratio(copies, r.phases.iter().map(|p| p.gpu_busy_us).sum())
    };
    let Some((rank, window, share)) = worst(&ranks, copy_share) else {
        return MEMCPY_IN_STEP.unknown(
            "a trace with vLLM's engine-step annotations (execute_context_…_generation_…)",
            HOW_TRACE,
        );
    };
    let copies: u64 = rank.phases.iter().map(|p| p.host_copies).sum();
    let steps: u64 = rank.phases.iter().map(|p| p.steps).sum();
    let detail = format!(
        "{copies} host↔device copies in {steps} steps, {} of the steps' GPU time",
        percent(share)
    );
    if share <= t.trace_host_copy_share {
        return MEMCPY_IN_STEP.passes(format!("{detail} ({window})"));
    }
    MEMCPY_IN_STEP.fires(
        Severity::Warning,
        Confidence::Medium,
        detail,
        vec![
            compared(
                "host↔device copy time / step GPU time",
                share,
                ">",
                t.trace_host_copy_share,
                window,
            ),
            seen(
                "copies per step",
                copies as f64 / steps.max(1) as f64,
                window,
            ),
        ],
    )
}

/// A phase's floor per step: a decode step reads the weights once; a prefill step multiplies its prompt tokens
/// through them at peak FLOPs (attention over earlier tokens left out, so the floor is low), or reads them, when
/// that is longer. Mixed steps have no single floor.
fn step_floor_us(phase: &PhaseTrace, hardware: &HardwareFacts) -> Option<f64> {
    let read = hardware.decode_floor_seconds * 1e6;
    let floor = match phase.phase.as_str() {
        "decode" => read,
        "prefill" if hardware.prefill_token_seconds > 0.0 && phase.steps > 0 => {
            let tokens = phase.tokens as f64 / phase.steps as f64;
            read.max(tokens * hardware.prefill_token_seconds * 1e6)
        }
        _ => return None,
    };
    (floor > 0.0 && phase.mean_gpu_busy_us > 0.0).then_some(floor)
}

fn step_over_floor(facts: &Facts, t: &Thresholds) -> Assessment {
    let ranks = gpu_ranks(facts);
    let judged_phase = |p: &PhaseTrace| p.phase == "decode" || p.phase == "prefill";
    if !ranks.iter().any(|(r, _)| {
        r.phases
            .iter()
            .any(|p| judged_phase(p) && p.mean_gpu_busy_us > 0.0)
    }) {
        return STEP_OVER_FLOOR.unknown(
            "decode or prefill steps in a trace with vLLM's step annotations",
            HOW_TRACE,
        );
    }
    let Some(hardware) = facts
        .evidence
        .hardware
        .as_ref()
        .filter(|h| h.decode_floor_seconds > 0.0)
    else {
        return STEP_OVER_FLOOR.unknown("the roofline floor", crate::assessment::how::HARDWARE);
    };
    // Every judged phase of every rank against its floor; the worst speaks, with its rank's other phase beside it.
    let judged: Vec<(&RankTrace, &str, &PhaseTrace, f64, f64)> = ranks
        .iter()
        .flat_map(|(rank, window)| {
            rank.phases.iter().filter_map(move |p| {
                let floor = step_floor_us(p, hardware)?;
                Some((*rank, window.as_str(), p, floor, p.mean_gpu_busy_us / floor))
            })
        })
        .collect();
    let Some(&(rank, window, worst, floor_us, times)) =
        judged.iter().max_by(|a, b| a.4.total_cmp(&b.4))
    else {
        return STEP_OVER_FLOOR.unknown(
            "the prompt tokens per prefill step and a prefill floor",
            crate::assessment::how::HARDWARE,
        );
    };
    let said = |p: &PhaseTrace, floor_us: f64| {
        let tokens = if p.phase == "prefill" {
            format!(
                " ({:.0} prompt tokens each)",
                p.tokens as f64 / p.steps as f64
            )
        } else {
            String::new()
        };
        format!(
            "{} steps{tokens} take {:.2} ms of GPU each, {:.1}× their {:.2} ms floor; {} takes {} of it",
            p.phase,
            p.mean_gpu_busy_us / 1e3,
            p.mean_gpu_busy_us / floor_us,
            floor_us / 1e3,
            p.dominant_class,
            percent(p.dominant_share)
        )
    };
    let mut parts = vec![said(worst, floor_us)];
    parts.extend(
        judged
            .iter()
            .filter(|(r, _, p, _, _)| std::ptr::eq(*r, rank) && !std::ptr::eq(*p, worst))
            .map(|(_, _, p, floor, _)| said(p, *floor)),
    );
    let detail = parts.join("; ");
    if times <= t.trace_step_floor_ratio {
        return STEP_OVER_FLOOR.passes(format!("{detail} ({window})"));
    }
    let evidence: Vec<Observation> = vec![
        compared(
            format!("{} step GPU time / floor", worst.phase),
            times,
            ">",
            t.trace_step_floor_ratio,
            window,
        ),
        seen(
            format!("{} share of {} GPU time", worst.dominant_class, worst.phase),
            worst.dominant_share,
            window,
        ),
    ];
    // A slow prefill is felt as time to first token, a slow decode between tokens.
    let rule = if worst.phase == "prefill" {
        Rule {
            symptom: Symptom::Ttft,
            ..STEP_OVER_FLOOR
        }
    } else {
        STEP_OVER_FLOOR
    };
    rule.fires(Severity::Warning, Confidence::Medium, detail, evidence)
}
