//! Inter-token latency rules: slow for one user (the hardware or its interconnect) or slow only under load (the
//! batch is too large for the SLO). Source rows: sim_capacity.md §D D9, D10 and §B3's decode floor.

use infer_doctor_core::{Confidence, Severity, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, ms, ratio, seen};
use crate::facts::{Facts, Latency, finite, itl, tpot};

const SINGLE_USER_SLOW: Rule = Rule {
    id: "itl.single_user_slow",
    symptom: Symptom::Itl,
    why: "With one user a decode step should take about the time to read the weights once from GPU memory; it \
          takes far longer, so the GPU runs below its memory bandwidth (throttling, a degraded link) or tensor \
          parallelism pays for slow all-reduces over PCIe.",
    remedies: &[
        "Check the GPU: clocks, throttle reasons, PCIe link (nvidia-smi -q, nvidia-smi topo -m)",
        "Run tensor parallelism only over NVLink; prefer fewer, larger GPUs",
        "Quantize the weights (FP8/INT4) to cut the bytes read per token",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (High ITL with one user: GPU memory \
             bandwidth, or tensor parallelism over PCIe); the 2× margin over the weights-read floor is \
             infer-doctor's own threshold (inference); cf. inference-sim/inference-sim: sim/latency/roofline.go",
};

pub const BATCH_SIZE: Rule = Rule {
    id: "itl.batch_size",
    symptom: Symptom::Itl,
    why: "Every running request shares each decode step, so a larger batch makes every step longer; with no queue \
          the server admits everyone and ITL grows with the batch.",
    remedies: &[
        "Lower --max-num-seqs to the batch that meets the ITL SLO",
        "Add replicas to spread the load",
        "Enable chunked prefill so long prefills do not stall decodes",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (High ITL only under load: batch size); \
             aminalaee/vllm-doctor: vllm_doctor/rules/tpot_bottleneck.py (TPOT p95 > 0.2 s); microsoft/vidur: \
             vidur/config_optimizer/analyzer/bottleneck_analyzer.py",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![single_user_slow(facts, t), batch_size(facts, t)]
}

/// ITL under load, alone, and their ratio.
pub(crate) struct ItlUnderLoad {
    pub loaded: Latency,
    pub single: Latency,
    pub ratio: f64,
}

pub(crate) fn itl_under_load(facts: &Facts) -> Option<ItlUnderLoad> {
    let loaded = itl(facts.client()?)?;
    let single = itl(facts.single_user()?)?;
    let ratio = ratio(loaded.ms, single.ms)?;
    Some(ItlUnderLoad {
        loaded,
        single,
        ratio,
    })
}

fn single_user_slow(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(single) = facts.single_user().and_then(itl) else {
        return SINGLE_USER_SLOW.unknown("single-user ITL", how::SINGLE_USER_PROBE);
    };
    let Some(floor_ms) = facts
        .evidence
        .hardware
        .as_ref()
        .and_then(|h| finite(h.decode_floor_seconds))
        .filter(|s| *s > 0.0)
        .map(|s| s * 1000.0)
    else {
        return SINGLE_USER_SLOW.unknown("the hardware's decode floor", how::HARDWARE);
    };
    let Some(over_floor) = ratio(single.ms, floor_ms) else {
        return SINGLE_USER_SLOW.unknown("single-user ITL", how::SINGLE_USER_PROBE);
    };
    if over_floor <= t.itl_floor_ratio {
        return SINGLE_USER_SLOW.passes(format!(
            "single-user ITL {} is {over_floor:.1}× the {} floor",
            ms(single.ms),
            ms(floor_ms)
        ));
    }
    let window = facts.single_user_window_label();
    SINGLE_USER_SLOW.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "one user already gets {} per token, {over_floor:.1}× the {} the GPU's memory bandwidth allows",
            ms(single.ms),
            ms(floor_ms)
        ),
        vec![
            compared(single.label, single.ms, ">", t.itl_floor_ratio * floor_ms, &window),
            seen("decode floor (ms)", floor_ms, "model and GPU facts"),
        ],
    )
}

fn batch_size(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(client) = facts.client() else {
        return BATCH_SIZE.unknown("ITL under load", how::LOADED_PROBE);
    };
    let client_window = facts.client_window_label();
    let waiting = facts.waiting();
    let queued = waiting
        .as_ref()
        .is_some_and(|w| w.mean > t.waiting_mean_nonempty);
    let (mut evidence, verdict, confidence) = if let Some(state) = itl_under_load(facts) {
        if state.ratio <= t.itl_load_ratio {
            return BATCH_SIZE.passes(format!(
                "ITL {} under load vs {} alone ({:.1}×)",
                ms(state.loaded.ms),
                ms(state.single.ms),
                state.ratio
            ));
        }
        (
            vec![
                compared(
                    state.loaded.label,
                    state.loaded.ms,
                    ">",
                    t.itl_load_ratio * state.single.ms,
                    &client_window,
                ),
                seen(
                    state.single.label,
                    state.single.ms,
                    &facts.single_user_window_label(),
                ),
            ],
            format!(
                "ITL grows with the batch: {} under load vs {} alone ({:.1}×) with no queue",
                ms(state.loaded.ms),
                ms(state.single.ms),
                state.ratio
            ),
            if waiting.is_some() {
                Confidence::High
            } else {
                Confidence::Medium
            },
        )
    } else {
        let Some(tpot_p95) = tpot(client).map(|s| s.p95) else {
            return BATCH_SIZE.unknown("ITL under load", how::LOADED_PROBE);
        };
        if tpot_p95 <= t.tpot_high_ms {
            return BATCH_SIZE.unknown(
                "single-user ITL to compare the loaded ITL with",
                how::SINGLE_USER_PROBE,
            );
        }
        (
            vec![compared(
                "tpot p95 (loaded)",
                tpot_p95,
                ">",
                t.tpot_high_ms,
                &client_window,
            )],
            format!(
                "ITL is high under load (TPOT p95 {}) with no queue",
                ms(tpot_p95)
            ),
            Confidence::Low,
        )
    };
    if queued {
        return BATCH_SIZE.passes(
            "ITL grows under load, but requests also queue: the capacity findings explain it"
                .to_string(),
        );
    }
    if let Some(waiting) = &waiting {
        evidence.push(waiting.stayed_empty(t));
    }
    let finding = BATCH_SIZE.fires(Severity::Warning, confidence, verdict, evidence);
    if waiting.is_none() {
        finding.unsettled("whether requests queue", &facts.how_server())
    } else {
        finding
    }
}
