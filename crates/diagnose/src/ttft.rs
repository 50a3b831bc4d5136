//! Time-to-first-token rules: is a high TTFT waiting in the queue, computing a long prefill, or paying for a
//! cold engine? Source rows: sim_capacity.md §D D5, D7, D8 and DESIGN.md §6.

use infer_doctor_core::{Confidence, Observation, RequestRecord, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, median, ms, percent, ratio, seen};
use crate::facts::{Facts, Measured, finite};

pub const QUEUEING: Rule = Rule {
    id: "ttft.queueing",
    symptom: Symptom::Ttft,
    why: "Requests spend most of their time to first token waiting for a slot in the engine, not being computed: \
          the engine is at capacity for this load.",
    remedies: &[
        "Fix the capacity limit the capacity findings name (KV cache or max-num-seqs)",
        "Add replicas, or cap concurrency at the gateway so requests queue where they can be shed",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (High TTFT: queueing issue); \
             aminalaee/vllm-doctor: vllm_doctor/rules/queue_latency.py (queue time p95 > 1 s); vllm-project/vllm: \
             vllm/v1/metrics/loggers.py (vllm:request_queue_time_seconds)",
};

pub const PREFILL_BOUND: Rule = Rule {
    id: "ttft.prefill_bound",
    symptom: Symptom::Ttft,
    why: "With no queue, TTFT is the prefill itself: the prompt's forward pass is compute-bound, so long prompts \
          or a large model take seconds before the first token.",
    remedies: &[
        "Enable chunked prefill (--enable-chunked-prefill) so prefills share steps with decodes",
        "Enable prefix caching if prompts share a prefix",
        "Disaggregate prefill and decode (P/D, e.g. llm-d) for long prompts",
        "Add GPUs (tensor parallelism) to cut prefill time",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (High TTFT: compute-bound prefill, \
             waiting ≈ 0); aminalaee/vllm-doctor: vllm_doctor/rules/ttft_bottleneck.py (TTFT p95 > 2 s); \
             https://docs.vllm.ai/en/stable/configuration/optimization/ (chunked prefill)",
};

const COLD_START: Rule = Rule {
    id: "ttft.cold_start",
    symptom: Symptom::Ttft,
    why: "The first requests after start pay for work a warm engine has already done (CUDA graph capture, \
          torch.compile, memory pools), so they are far slower than the rest.",
    remedies: &[
        "Warm the server up before it takes traffic (send a few requests of each shape at boot)",
        "Gate readiness on the warm-up, not on the port opening",
        "Keep CUDA graphs and compile caches between restarts",
    ],
    source: "infer-doctor's own threshold (inference: the first requests' TTFT far above the steady TTFT); cf. \
             ai-dynamo/aiperf (a warm-up phase, --warmup-request-count, kept out of the results) and \
             https://docs.vllm.ai/en/stable/configuration/optimization/ (compilation and CUDA graphs trade start-up \
             time for speed)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![
        queueing(facts, t),
        prefill_bound(facts, t),
        cold_start(facts, t),
    ]
}

/// Whether TTFT under load is high, absolutely or against the single-user probe, with the numbers.
struct TtftUnderLoad {
    loaded: Measured,
    single: Option<Measured>,
    high: bool,
}

fn ttft_under_load(facts: &Facts, t: &Thresholds) -> Option<TtftUnderLoad> {
    let loaded = facts.loaded_ttft_p95()?;
    let single = facts.single_user_ttft_p95();
    let against_single = single
        .as_ref()
        .and_then(|s| ratio(loaded.ms, s.ms))
        .is_some_and(|r| r > t.ttft_load_ratio && loaded.ms >= t.ttft_ratio_min_ms);
    let high = loaded.ms > t.ttft_high_ms || against_single;
    Some(TtftUnderLoad {
        loaded,
        single,
        high,
    })
}

fn describe(state: &TtftUnderLoad) -> String {
    match &state.single {
        Some(single) => format!(
            "TTFT p95 {} under load vs {} alone",
            ms(state.loaded.ms),
            ms(single.ms)
        ),
        None => format!("TTFT p95 {} under load", ms(state.loaded.ms)),
    }
}

/// The comparison that made TTFT high: above the absolute threshold, or many times the single-user TTFT.
fn ttft_observations(state: &TtftUnderLoad, t: &Thresholds) -> Vec<Observation> {
    let loaded = &state.loaded;
    let mut evidence = Vec::new();
    if loaded.ms > t.ttft_high_ms {
        evidence.push(compared(
            loaded.label,
            loaded.ms,
            ">",
            t.ttft_high_ms,
            &loaded.window,
        ));
    } else {
        evidence.push(seen(loaded.label, loaded.ms, &loaded.window));
    }
    if let Some(single) = &state.single {
        evidence.push(seen(single.label, single.ms, &single.window));
        if loaded.ms <= t.ttft_high_ms
            && let Some(times) = ratio(loaded.ms, single.ms)
        {
            evidence.push(compared(
                "ttft p95 loaded / single user",
                times,
                ">",
                t.ttft_load_ratio,
                &loaded.window,
            ));
        }
    }
    evidence
}

/// The share of the server's TTFT spent in `part` (queue or prefill), from the server's histograms; the client's
/// mean TTFT stands in when the server does not export TTFT.
fn share_of_ttft(facts: &Facts, part: Signal) -> Option<f64> {
    let part_mean = finite(facts.histogram(part)?.mean)?;
    let ttft_mean_seconds = facts
        .histogram(Signal::Ttft)
        .and_then(|h| finite(h.mean))
        .or_else(|| {
            facts
                .client()
                .and_then(crate::facts::ttft)
                .map(|s| s.mean / 1000.0)
        })?;
    ratio(part_mean, ttft_mean_seconds).map(|share| share.min(1.0))
}

fn queueing(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(state) = ttft_under_load(facts, t) else {
        return QUEUEING.unknown("TTFT under load", how::LOADED_PROBE);
    };
    if !state.high {
        return QUEUEING.passes(describe(&state));
    }
    let mut evidence = ttft_observations(&state, t);
    if let Some(share) = share_of_ttft(facts, Signal::QueueTime) {
        let window = facts.server_window_label();
        if share < t.queue_share_of_ttft {
            return QUEUEING.passes(format!(
                "{}, but only {} of it is queueing",
                describe(&state),
                percent(share)
            ));
        }
        evidence.push(compared(
            "queue_time mean / ttft mean",
            share,
            "≥",
            t.queue_share_of_ttft,
            &window,
        ));
        return QUEUEING.fires(
            Severity::Warning,
            Confidence::High,
            format!(
                "requests wait for a slot ({} of TTFT is queue time)",
                percent(share)
            ),
            evidence,
        );
    }
    let Some(waiting) = facts.waiting() else {
        return QUEUEING.unknown("queue time or the waiting queue", &facts.how_server());
    };
    if waiting.mean <= t.waiting_mean_nonempty {
        return QUEUEING.passes(format!(
            "{} with no queue ({:.1} waiting on average)",
            describe(&state),
            waiting.mean
        ));
    }
    evidence.push(compared(
        "requests_waiting mean",
        waiting.mean,
        ">",
        t.waiting_mean_nonempty,
        &waiting.window,
    ));
    let from_metrics = facts
        .evidence
        .server
        .as_ref()
        .is_some_and(|s| s.gauge(Signal::RequestsWaiting).is_some());
    QUEUEING.fires(
        Severity::Warning,
        if from_metrics {
            Confidence::Medium
        } else {
            Confidence::Low
        },
        format!(
            "requests wait for a slot ({:.1} queued on average)",
            waiting.mean
        ),
        evidence,
    )
}

fn prefill_bound(facts: &Facts, t: &Thresholds) -> Assessment {
    let loaded = ttft_under_load(facts, t);
    let single = facts.single_user_ttft_p95();
    // High TTFT with one user cannot be a queue: it is the prefill itself.
    let slow_alone = single.as_ref().is_some_and(|s| s.ms > t.ttft_high_ms);
    let slow_loaded = loaded
        .as_ref()
        .is_some_and(|l| l.loaded.ms > t.ttft_high_ms);
    // An engine log can show prefill falling behind without any TTFT measured: see `prefill_backlog`.
    let backlog = facts
        .queued_log_stats(t)
        .filter(crate::facts::QueuedStats::prefill_backlog);
    if loaded.is_none() && single.is_none() {
        return match backlog {
            Some(queued) => prefill_backlog(&queued),
            None => PREFILL_BOUND.unknown("TTFT (no probe or bench run)", how::LOADED_PROBE),
        };
    }
    if !slow_alone && !slow_loaded {
        let detail = loaded.as_ref().map_or_else(
            || {
                format!(
                    "TTFT p95 {} alone",
                    ms(single.as_ref().map_or(f64::NAN, |s| s.ms))
                )
            },
            describe,
        );
        return PREFILL_BOUND.passes(format!("{detail}, below {}", ms(t.ttft_high_ms)));
    }
    let mut evidence = Vec::new();
    if let Some(state) = &loaded {
        evidence.extend(ttft_observations(state, t));
    } else if let Some(single) = &single {
        evidence.push(compared(
            single.label,
            single.ms,
            ">",
            t.ttft_high_ms,
            &single.window,
        ));
    }
    let queue_share = share_of_ttft(facts, Signal::QueueTime);
    let waiting = facts.waiting();
    let queued = !slow_alone
        && (queue_share.is_some_and(|s| s >= t.queue_share_of_ttft)
            || waiting
                .as_ref()
                .is_some_and(|w| w.mean > t.waiting_mean_nonempty));
    if queued {
        // A queue that grows because prefill cannot keep up is still a prefill problem.
        if let Some(queued) = backlog {
            return prefill_backlog(&queued);
        }
        return PREFILL_BOUND.passes(
            "TTFT is high because of the queue, not the prefill (see ttft.queueing)".into(),
        );
    }
    // When the engine's own TTFT is a small part of what the client waits, the time goes before the engine.
    let engine_share = facts.histogram(Signal::Ttft).and_then(|server| {
        let client_mean_seconds = facts.client().and_then(crate::facts::ttft)?.mean / 1000.0;
        ratio(server.mean, client_mean_seconds)
    });
    if let Some(share) = engine_share.filter(|s| *s < t.queue_share_of_ttft) {
        return PREFILL_BOUND.passes(format!(
            "the engine accounts for only {} of the client's TTFT: the time goes before the engine",
            percent(share)
        ));
    }
    if let Some(waiting) = &waiting {
        evidence.push(waiting.stayed_empty(t));
    }
    let input = facts.mean_input_tokens();
    if let Some(tokens) = input {
        evidence.push(compared(
            "mean input tokens",
            tokens,
            "vs long",
            t.long_input_tokens,
            "client",
        ));
    }
    let long_prompts = input.is_some_and(|tokens| tokens >= t.long_input_tokens);
    let verdict_tail =
        input.map_or_else(String::new, |tokens| format!(", {tokens:.0}-token prompts"));
    match share_of_ttft(facts, Signal::PrefillTime) {
        Some(share) if share < t.prefill_share_of_ttft => PREFILL_BOUND.passes(format!(
            "TTFT is high but prefill is only {} of it and there is no queue: look at the API server and network",
            percent(share)
        )),
        Some(share) => {
            evidence.push(compared(
                "prefill_time mean / ttft mean",
                share,
                "≥",
                t.prefill_share_of_ttft,
                &facts.server_window_label(),
            ));
            PREFILL_BOUND.fires(
                Severity::Warning,
                Confidence::High,
                format!("prefill dominates TTFT ({} of it) with no queue{verdict_tail}", percent(share)),
                evidence,
            )
        }
        None => {
            let confidence = if long_prompts || slow_alone {
                Confidence::Medium
            } else {
                Confidence::Low
            };
            let finding = PREFILL_BOUND.fires(
                Severity::Warning,
                confidence,
                format!("TTFT is high with no queue: the prefill is slow{verdict_tail}"),
                evidence,
            );
            if waiting.is_none() && !slow_alone {
                finding.unsettled("whether requests queue", &facts.how_server())
            } else {
                finding
            }
        }
    }
}

/// Requests wait while the engine admits them only as fast as it prefills: running climbs, prompt throughput
/// holds at one rate, so the prefill rate, not a batch limit, sets how fast the queue drains.
fn prefill_backlog(queued: &crate::facts::QueuedStats) -> Assessment {
    let Some((prompt_mean, spread)) = queued.prompt else {
        return PREFILL_BOUND.unknown("prompt throughput in the log's stats lines", how::LOG);
    };
    let window = &queued.window;
    PREFILL_BOUND.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "prefill cannot keep up: prompt throughput stays at {prompt_mean:.0} tokens/s while {:.1} requests \
             wait on average and running climbs from {:.0} to {:.0}",
            queued.waiting_mean,
            queued.first_running(),
            queued.last_running()
        ),
        vec![
            compared(
                "prompt throughput spread (stddev / mean)",
                spread,
                "≤",
                crate::facts::FLAT_PROMPT_SPREAD,
                window,
            ),
            seen("prompt throughput mean (tokens/s)", prompt_mean, window),
            seen("requests_waiting mean", queued.waiting_mean, window),
            seen("requests_running first", queued.first_running(), window),
            seen("requests_running last", queued.last_running(), window),
        ],
    )
}

/// Fewer requests than this cannot separate the first ones from the steady state.
const COLD_START_MIN_REQUESTS: usize = 10;

fn cold_start(facts: &Facts, t: &Thresholds) -> Assessment {
    // Warm-up requests count here: they are exactly the ones a cold engine slows down. Decode speed (TPOT) tells
    // a cold engine from a crowd arriving at once, which delays first tokens in the queue but not later ones.
    let mut answered: Vec<&RequestRecord> = facts
        .evidence
        .requests
        .iter()
        .filter(|r| r.ok() && r.tpot_us().is_some())
        .collect();
    if answered.len() < COLD_START_MIN_REQUESTS {
        return COLD_START.unknown(
            &format!("per-request timings ({} answered requests)", answered.len()),
            how::REQUESTS,
        );
    }
    answered.sort_by_key(|r| (r.sent_us, r.id));
    let early_count = ((answered.len() as f64 * t.cold_start_early_share).ceil() as usize)
        .clamp(1, answered.len() / 2);
    let medians = |pick: &dyn Fn(&RequestRecord) -> Option<f64>| {
        let mut early: Vec<f64> = answered[..early_count]
            .iter()
            .filter_map(|r| pick(r))
            .collect();
        let mut steady: Vec<f64> = answered[answered.len() / 2..]
            .iter()
            .filter_map(|r| pick(r))
            .collect();
        Some((median(&mut early)?, median(&mut steady)?))
    };
    let (Some((early_tpot, steady_tpot)), Some((early_ttft, steady_ttft))) = (
        medians(&|r| r.tpot_us().map(|v| v / 1000.0)),
        medians(&|r| r.ttft_us().map(|v| v as f64 / 1000.0)),
    ) else {
        return COLD_START.unknown("per-request timings", how::REQUESTS);
    };
    let window = format!(
        "client, first {early_count} of {} requests vs the second half",
        answered.len()
    );
    if early_ttft < t.cold_start_min_ms {
        return COLD_START.passes(format!(
            "the first requests answer fast (TTFT median {} < {})",
            ms(early_ttft),
            ms(t.cold_start_min_ms)
        ));
    }
    if !ratio(early_tpot, steady_tpot).is_some_and(|r| r > t.cold_start_ratio) {
        return COLD_START.passes(format!(
            "the first requests decode no slower than {}× the later ones (TPOT median {} vs {})",
            t.cold_start_ratio,
            ms(early_tpot),
            ms(steady_tpot)
        ));
    }
    let confidence = if early_count >= 3 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    COLD_START.fires(
        Severity::Warning,
        confidence,
        format!(
            "the first requests are slow: TPOT median {} for the first {early_count} vs {} later (TTFT {} vs {})",
            ms(early_tpot),
            ms(steady_tpot),
            ms(early_ttft),
            ms(steady_ttft)
        ),
        vec![
            compared(
                "tpot median, first requests",
                early_tpot,
                ">",
                t.cold_start_ratio * steady_tpot,
                &window,
            ),
            seen("tpot median, second half", steady_tpot, &window),
            seen("ttft median, first requests", early_ttft, &window),
            seen("ttft median, second half", steady_ttft, &window),
        ],
    )
}
