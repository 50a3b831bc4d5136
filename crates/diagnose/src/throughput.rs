//! Throughput rules: memory, not compute, caps the tokens per second, or tokens per second fall as the run goes
//! on. Source rows: DESIGN.md §6 (throughput.memory_bound, throughput.degraded_over_time), sim_capacity.md §D D6.

use infer_doctor_core::{Confidence, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, percent, ratio, seen};
use crate::facts::{Facts, finite};
use crate::itl::itl_under_load;

const MEMORY_BOUND: Rule = Rule {
    id: "throughput.memory_bound",
    symptom: Symptom::Throughput,
    why: "The KV cache is full while each decode step is still cheap: the GPU could batch more requests, but there \
          is no memory to hold their context, so memory caps throughput.",
    remedies: &[
        "Add VRAM: larger GPUs, tensor parallelism, or more replicas",
        "Shorten sequences: lower --max-model-len, trim prompts, cap max_tokens",
        "Use an FP8 KV cache or quantized weights",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (Poor Throughput Scaling: KV cache full \
             and requests waiting); vllm-project/vllm: vllm/v1/core/kv_cache_utils.py (KV capacity); the batch \
             ceiling min(max_num_seqs, KV tokens / context) is infer-doctor's inference",
};

pub const DEGRADED: Rule = Rule {
    id: "throughput.degraded_over_time",
    symptom: Symptom::Throughput,
    why: "Tokens per second fall as the run goes on; with preemptions in the same window this is the KV-cache \
          fragmentation pattern of the case study: long-lived requests pin blocks and every step does less work.",
    remedies: &[
        "Check preemptions and KV usage over time (capacity.preemptions)",
        "Schedule restarts of long-running servers until the cause is fixed",
        "Lower --max-num-seqs so admitted requests fit without preemption",
    ],
    source: "infer-doctor's own rule (inference: tokens/s falling across the run, with preemptions); cf. \
             https://docs.vllm.ai/en/stable/configuration/optimization/ (Preemption) and llm-d/llm-d: \
             docs/monitoring/prometheus-alerting-rules.yaml (LLMDHighPreemptions)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![memory_bound(facts, t), degraded_over_time(facts, t)]
}

fn memory_bound(facts: &Facts, t: &Thresholds) -> Assessment {
    let (Some(kv), Some(waiting)) = (facts.kv_usage(), facts.waiting()) else {
        return MEMORY_BOUND.unknown("KV cache usage and the waiting queue", &facts.how_server());
    };
    if !(kv.max >= t.kv_full && waiting.mean > t.waiting_mean_nonempty) {
        return MEMORY_BOUND.passes(format!(
            "KV usage peaked at {} with {:.1} waiting on average",
            percent(kv.max),
            waiting.mean
        ));
    }
    let mut evidence = vec![
        compared("kv_usage max", kv.max, "≥", t.kv_full, &kv.window),
        compared(
            "requests_waiting mean",
            waiting.mean,
            ">",
            t.waiting_mean_nonempty,
            &waiting.window,
        ),
    ];
    // No GPU utilisation in the evidence: a step that barely slows with the batch is the sign of spare compute.
    match itl_under_load(facts) {
        Some(state) if state.ratio > t.itl_load_ratio => MEMORY_BOUND.passes(format!(
            "the KV cache is full, but decode steps also slowed {:.1}× under load: compute is busy too",
            state.ratio
        )),
        Some(state) => {
            evidence.push(compared(
                "itl loaded / single user",
                state.ratio,
                "≤",
                t.itl_load_ratio,
                &facts.client_window_label(),
            ));
            MEMORY_BOUND.fires(
                Severity::Warning,
                Confidence::Medium,
                format!(
                    "memory caps throughput: KV full ({}) with {:.1} waiting while decode steps are only {:.1}× \
                     slower than alone",
                    percent(kv.max),
                    waiting.mean,
                    state.ratio
                ),
                evidence,
            )
        }
        None => MEMORY_BOUND
            .fires(
                Severity::Warning,
                Confidence::Low,
                format!(
                    "memory may cap throughput: KV full ({}) with {:.1} waiting",
                    percent(kv.max),
                    waiting.mean
                ),
                evidence,
            )
            .unsettled("whether compute is saturated (ITL alone vs under load)", how::SINGLE_USER_PROBE),
    }
}

/// Tokens per second in the first and last third of a run, and where they were measured.
struct Trend {
    first: f64,
    last: f64,
    window: String,
}

/// From the client's records: output tokens arriving in each third of the sending period.
fn trend_from_requests(facts: &Facts) -> Option<Trend> {
    // Warm-up requests count: the server's throughput is what it is, whatever the client's statistics leave out.
    let measured: Vec<_> = facts.evidence.requests.iter().filter(|r| r.ok()).collect();
    if measured.len() < 10 {
        return None;
    }
    // The sending period leaves out the drain, when fewer requests are in flight by design.
    let start = measured.iter().map(|r| r.sent_us).min()?;
    let end = measured.iter().map(|r| r.sent_us).max()?;
    let third = (end.saturating_sub(start)) / 3;
    if third == 0 {
        return None;
    }
    let tokens_between = |from: u64, to: u64| -> f64 {
        measured
            .iter()
            .flat_map(|r| r.token_arrivals())
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, tokens)| tokens)
            .sum()
    };
    let seconds = third as f64 / 1e6;
    Some(Trend {
        first: tokens_between(start, start + third) / seconds,
        last: tokens_between(end - third, end) / seconds,
        window: format!(
            "client, {} requests, thirds of {:.0} s",
            measured.len(),
            (end - start) as f64 / 1e6
        ),
    })
}

/// From the scrapes: the generation-token counter's rate over the first and the last third of the scrapes
/// while the server was generating. Scrapes before the load began or after it ended show an idle server, not
/// a slow one, so they are left out.
fn trend_from_scrapes(facts: &Facts) -> Option<Trend> {
    let all: Vec<(f64, f64)> = facts
        .evidence
        .scrapes
        .iter()
        .filter_map(|(at, readings)| {
            Some((
                finite(*at)?,
                finite(readings.value(Signal::GenerationTokens)?)?,
            ))
        })
        .collect();
    // An interval is active when it generated at least a share of the busiest one's rate: a health check's
    // token now and then after the load is not load.
    let rate_of = |i: usize| ratio((all[i + 1].1 - all[i].1).max(0.0), all[i + 1].0 - all[i].0);
    let peak = (0..all.len().saturating_sub(1))
        .filter_map(rate_of)
        .fold(0.0_f64, f64::max);
    let grew = |i: usize| rate_of(i).is_some_and(|r| r > 0.0 && r >= ACTIVE_SHARE_OF_PEAK * peak);
    let first_active = (0..all.len().saturating_sub(1)).find(|&i| grew(i))?;
    let last_active = (0..all.len() - 1).rev().find(|&i| grew(i))? + 1;
    let points = &all[first_active..=last_active];
    if points.len() < 4 {
        return None;
    }
    let third = points.len() / 3;
    let rate = |a: (f64, f64), b: (f64, f64)| ratio((b.1 - a.1).max(0.0), b.0 - a.0);
    let first = rate(points[0], points[third])?;
    let last = rate(points[points.len() - 1 - third], points[points.len() - 1])?;
    Some(Trend {
        first,
        last,
        window: format!(
            "server scrapes while generating ({} of {}), first vs last third",
            points.len(),
            all.len()
        ),
    })
}

/// An interval between scrapes generating less than this share of the busiest interval's tokens/s is idle.
const ACTIVE_SHARE_OF_PEAK: f64 = 0.05;

/// A fall to this share of the degradation threshold (0.7 × 0.8 ≈ a 44% loss) is steep.
const STEEP_SHARE: f64 = 0.8;

fn degraded_over_time(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(trend) = trend_from_requests(facts).or_else(|| trend_from_scrapes(facts)) else {
        return DEGRADED.unknown("tokens/s over time", how::REQUESTS);
    };
    let Some(kept) = ratio(trend.last, trend.first) else {
        return DEGRADED.passes("no tokens in the run's first third to compare with".to_string());
    };
    if kept >= t.degradation_ratio {
        return DEGRADED.passes(format!(
            "tokens/s held: {:.0} in the first third, {:.0} in the last",
            trend.first, trend.last
        ));
    }
    let preemptions = facts
        .preemptions_in_window()
        .filter(|p| *p > t.preemptions_allowed);
    let mut evidence = vec![
        compared(
            "tokens/s last third / first third",
            kept,
            "<",
            t.degradation_ratio,
            &trend.window,
        ),
        seen("tokens/s first third", trend.first, &trend.window),
        seen("tokens/s last third", trend.last, &trend.window),
    ];
    if let Some(count) = preemptions {
        evidence.push(seen("preemptions", count, &facts.server_window_label()));
    }
    // Preemptions name a cause; a steep fall is hard to explain by anything else.
    let steep = kept < t.degradation_ratio * STEEP_SHARE;
    DEGRADED.fires(
        Severity::Warning,
        if preemptions.is_some() || steep {
            Confidence::High
        } else {
            Confidence::Low
        },
        format!(
            "tokens/s fell from {:.0} to {:.0} during the run{}",
            trend.first,
            trend.last,
            if preemptions.is_some() {
                ", with preemptions"
            } else {
                ""
            }
        ),
        evidence,
    )
}
