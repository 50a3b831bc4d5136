//! Capacity rules: is the engine full (KV cache, batch cap, preemptions), and could it ever hold the load
//! (weights' share of VRAM, the startup "maximum concurrency" line)? Source rows: sim_capacity.md §D D1–D6, D14, D15.

use infer_doctor_core::{Confidence, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, percent, ratio, seen};
use crate::facts::{Facts, PINNED_SHARE, finite};

pub const KV_SATURATED: Rule = Rule {
    id: "capacity.kv_saturated",
    symptom: Symptom::Ttft,
    why: "Every KV-cache block is in use, so the scheduler cannot admit new requests: they wait in the queue \
          until a running request finishes and frees its blocks, and time to first token grows with the queue.",
    remedies: &[
        "Add capacity: more or larger GPUs, or more replicas behind the load balancer",
        "Make room for KV: FP8 KV cache (--kv-cache-dtype fp8) or a quantized model",
        "Lower --max-model-len if requests never need the full context",
        "Cap concurrency at what the cache holds (admission control at the gateway)",
    ],
    source: "llm-d/llm-d: docs/monitoring/prometheus-alerting-rules.yaml (LLMDKVCacheSaturation: KV usage > 0.90 \
             for 10m); aminalaee/vllm-doctor: vllm_doctor/config.py (KV pressure at 0.90); \
             rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (waiting > 0 and KV > 90%: the system is \
             full); vllm-project/vllm: vllm/v1/core/sched/scheduler.py",
};

pub const BATCH_CAP: Rule = Rule {
    id: "capacity.batch_cap",
    symptom: Symptom::Ttft,
    why: "The engine runs at most a fixed number of requests at once (vLLM's max_num_seqs, llama.cpp's slots); \
          requests beyond it wait, or are deferred, although memory still has room, so the limit, not memory, \
          makes the queue.",
    remedies: &[
        "Raise the limit: vLLM --max-num-seqs (the KV cache has room for more sequences); llama.cpp --parallel, \
         with --ctx-size raised in proportion since the context is split across slots",
        "Add replicas if ITL must not grow with the batch",
    ],
    source: "microsoft/vidur: vidur/config_optimizer/analyzer/bottleneck_analyzer.py (batch at 0.9 of its cap); \
             kubernetes-sigs/gateway-api-inference-extension: pkg/epp/saturationdetector/config.go (KV 0.8); \
             combining them is infer-doctor's inference; vllm-project/vllm: vllm/v1/core/sched/scheduler.py \
             (max_num_seqs); ggml-org/llama.cpp: tools/server (llamacpp:requests_deferred)",
};

pub const PREEMPTIONS: Rule = Rule {
    id: "capacity.preemptions",
    symptom: Symptom::Throughput,
    why: "The KV cache ran out while requests were generating: vLLM preempted running requests (freeing their \
          blocks) and recomputes them later, which wastes GPU time and stalls their tokens.",
    remedies: &[
        "Lower --max-num-seqs or --max-num-batched-tokens so admitted requests fit in the cache",
        "Give the KV cache more memory: raise --gpu-memory-utilization, FP8 KV cache, quantized weights, more GPUs",
        "Route long-context requests to dedicated replicas",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (preemptions should be 0); llm-d/llm-d: \
             docs/monitoring/prometheus-alerting-rules.yaml (LLMDHighPreemptions); aminalaee/vllm-doctor: \
             vllm_doctor/rules/preemption_pressure.py; https://docs.vllm.ai/en/stable/configuration/optimization/ \
             (Preemption)",
};

const WEIGHTS_DOMINATE: Rule = Rule {
    id: "capacity.weights_dominate",
    symptom: Symptom::Throughput,
    why: "The model's weights take most of each GPU's memory, leaving little for the KV cache, so only a few \
          requests fit at once whatever the other settings.",
    remedies: &[
        "Use a GPU with more memory, or split the model with tensor parallelism",
        "Quantize the weights (FP8, AWQ/GPTQ) to free memory for the KV cache",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (Capacity Bottleneck: model weights > 75% \
             of VRAM)",
};

const STARTUP_HEADROOM: Rule = Rule {
    id: "capacity.startup_headroom",
    symptom: Symptom::Ttft,
    why: "At startup vLLM logs how many requests of max_model_len tokens its KV cache holds; the load uses more \
          concurrent requests than that, so long requests will queue or be preempted.",
    remedies: &[
        "Lower --max-model-len to what requests need",
        "Raise tensor parallelism to pool more KV memory",
        "Use an FP8 KV cache (--kv-cache-dtype fp8)",
    ],
    source: "vllm-project/vllm: vllm/v1/core/kv_cache_utils.py (get_max_concurrency_for_kv_cache_config, the \
             \"Maximum concurrency for N tokens per request\" line); rh-aiservices-bu/llm-d-playbook: Performance \
             Debugging Guide (Startup Capacity Checks)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    // Preemptions come from a full cache too: when the override holds it small, both findings name it.
    let (kv, preempted) = (
        kv_saturated(facts, t),
        name_blocks_override(facts, preemptions(facts, t)),
    );
    // A full cache usually preempts a little; when requests are preempted about as often as they finish, the
    // recomputation is the problem to fix first (the order breaks ties between equally severe findings).
    let storm =
        preemptions_per_finished(facts).is_some_and(|p| p >= t.preemption_storm_per_request);
    let (first, second) = if storm {
        (preempted, kv)
    } else {
        (kv, preempted)
    };
    vec![
        first,
        batch_cap(facts, t),
        second,
        weights_dominate(facts, t),
        startup_headroom(facts),
    ]
}

/// Preemptions per request finished in the window.
fn preemptions_per_finished(facts: &Facts) -> Option<f64> {
    let server = facts.evidence.server.as_ref()?;
    let preemptions = server.counter(Signal::Preemptions)?.increase;
    let finished = server.counter(Signal::RequestsFinished)?.increase;
    (finished > 0.0).then(|| preemptions / finished)
}

fn kv_saturated(facts: &Facts, t: &Thresholds) -> Assessment {
    name_blocks_override(facts, kv_saturation(facts, t))
}

/// vLLM's `--num-gpu-blocks-override` sizes the KV cache whatever the memory allows: when the server says it is
/// set (a `cache_config_info` label), it is the first suspect for a cache that fills up or preempts.
fn name_blocks_override(facts: &Facts, mut assessment: Assessment) -> Assessment {
    let blocks = facts
        .evidence
        .server
        .as_ref()
        .and_then(|s| s.gauge(Signal::KvBlocksOverride))
        .and_then(|g| finite(g.last));
    if let (Some(blocks), Some(finding)) = (blocks, assessment.finding.as_mut()) {
        finding.remedies.insert(
            0,
            format!(
                "The cache is held at {blocks:.0} blocks by --num-gpu-blocks-override: drop the flag so vLLM sizes \
                 the cache from --gpu-memory-utilization, or raise it"
            ),
        );
        finding.evidence.push(seen(
            "num_gpu_blocks_override",
            blocks,
            "vllm:cache_config_info",
        ));
    }
    assessment
}

fn kv_saturation(facts: &Facts, t: &Thresholds) -> Assessment {
    let kv = facts.kv_usage();
    let capacity_queue = facts.waiting_for_capacity();
    // vLLM's `reason="capacity"` separates real capacity waits from prefills deferred on purpose (D2).
    let queue = capacity_queue.clone().or_else(|| facts.waiting());
    let (Some(queue), Some(kv)) = (queue.clone(), kv.clone()) else {
        return match (queue, kv) {
            (Some(queue), None)
                if capacity_queue.is_some() && queue.mean > t.waiting_mean_nonempty =>
            {
                KV_SATURATED
                    .fires(
                        Severity::Warning,
                        Confidence::Low,
                        format!(
                            "{:.1} requests wait for capacity on average (KV usage not reported)",
                            queue.mean
                        ),
                        vec![compared(
                            "requests_waiting{reason=capacity} mean",
                            queue.mean,
                            ">",
                            t.waiting_mean_nonempty,
                            &queue.window,
                        )],
                    )
                    .unsettled("KV cache usage", &facts.how_server())
            }
            _ => KV_SATURATED.unknown("KV cache usage and the waiting queue", &facts.how_server()),
        };
    };
    let queued = queue.mean > t.waiting_mean_nonempty;
    if !(queued && kv.max > t.kv_saturated) {
        return KV_SATURATED.passes(format!(
            "KV usage peaked at {} with {:.1} requests waiting on average",
            percent(kv.max),
            queue.mean
        ));
    }
    let severity = if kv.max >= t.kv_critical {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let from_metrics = facts
        .evidence
        .server
        .as_ref()
        .is_some_and(|s| s.gauge(Signal::KvUsage).is_some());
    let confidence = if from_metrics {
        Confidence::High
    } else {
        Confidence::Medium
    };
    let queue_signal = if capacity_queue.is_some() {
        "requests_waiting{reason=capacity} mean"
    } else {
        "requests_waiting mean"
    };
    KV_SATURATED.fires(
        severity,
        confidence,
        format!(
            "requests wait for KV cache blocks (KV usage peaked at {}, {:.1} waiting on average)",
            percent(kv.max),
            queue.mean
        ),
        vec![
            compared("kv_usage max", kv.max, ">", t.kv_saturated, &kv.window),
            seen("kv_usage mean", kv.mean, &kv.window),
            compared(
                queue_signal,
                queue.mean,
                ">",
                t.waiting_mean_nonempty,
                &queue.window,
            ),
            seen("requests_waiting max", queue.max, &queue.window),
        ],
    )
}

fn batch_cap(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(waiting) = facts.waiting() else {
        return BATCH_CAP.unknown("the waiting queue", &facts.how_server());
    };
    if waiting.mean <= t.waiting_mean_nonempty {
        return BATCH_CAP.passes(format!(
            "no queue ({:.1} waiting on average), so no batch limit binds",
            waiting.mean
        ));
    }
    let kv = facts.kv_usage();
    let cap = facts.running_cap();
    if let Some(kv) = &kv
        && kv.max >= t.batch_cap_kv_below
    {
        return BATCH_CAP.passes(format!(
            "the queue comes with a full KV cache (peak {}), not with a batch limit",
            percent(kv.max)
        ));
    }
    let Some(running) = facts.running() else {
        return BATCH_CAP.unknown("the running count", &facts.how_server());
    };
    // A log's timeline shows whether running sat at its ceiling while requests waited; its peak alone does not.
    if let Some(queued) = facts.queued_log_stats(t) {
        let ceiling = cap.as_ref().map_or_else(
            || queued.max_running(),
            |cap| cap.value * t.batch_cap_running_share,
        );
        let share = queued.share_at(ceiling);
        if share < PINNED_SHARE && queued.prefill_backlog() {
            return BATCH_CAP.passes(format!(
                "running climbs from {:.0} to {:.0} while prompt throughput stays flat: prefill, not a batch cap, \
                 holds the queue (see ttft.prefill_bound)",
                queued.first_running(),
                queued.last_running()
            ));
        }
        if share < PINNED_SHARE {
            return BATCH_CAP.passes(format!(
                "running reached {ceiling:.0} on only {} of the {} stats lines with requests waiting: not pinned \
                 at a cap",
                percent(share),
                queued.running.len()
            ));
        }
    }
    let mut evidence = vec![compared(
        "requests_waiting mean",
        waiting.mean,
        ">",
        t.waiting_mean_nonempty,
        &waiting.window,
    )];
    let memory = match &kv {
        Some(kv) => {
            evidence.push(compared(
                "kv_usage max",
                kv.max,
                "<",
                t.batch_cap_kv_below,
                &kv.window,
            ));
            format!("KV peaks at {}", percent(kv.max))
        }
        // Slots own their context from the start, so with a slot count the cache cannot be what fills up.
        None if cap.as_ref().is_some_and(|c| c.name == "slots") => {
            "each slot holds its own context".to_string()
        }
        None => return BATCH_CAP.unknown("KV cache usage", &facts.how_server()),
    };
    match cap {
        Some(cap) => {
            let cap_reached = cap.value * t.batch_cap_running_share;
            if running.max < cap_reached {
                return BATCH_CAP.passes(format!(
                    "running peaked at {:.0} of {} {:.0}",
                    running.max, cap.name, cap.value
                ));
            }
            evidence.push(compared(
                "requests_running max",
                running.max,
                "≥",
                cap_reached,
                &running.window,
            ));
            evidence.push(seen(cap.name, cap.value, cap.source));
            BATCH_CAP.fires(
                Severity::Warning,
                Confidence::High,
                format!(
                    "the batch cap binds: {:.0} running = {} {:.0} while {:.1} {}; {memory}",
                    running.max, cap.name, cap.value, waiting.mean, cap.beyond,
                ),
                evidence,
            )
        }
        None => {
            evidence.push(seen("requests_running max", running.max, &running.window));
            // Without the configured cap this is a hint, not a verdict.
            BATCH_CAP
                .fires(
                    Severity::Info,
                    Confidence::Low,
                    format!(
                        "requests queue while the KV cache has room ({memory}): a batch limit likely binds at \
                         {:.0} running (max_num_seqs not known)",
                        running.max
                    ),
                    evidence,
                )
                .unsettled("max_num_seqs (vLLM's default depends on the GPU)", &how_max_num_seqs(facts))
        }
    }
}

/// A vLLM log whose arguments line was read but does not set max_num_seqs: the default holds, and only the
/// server's owner knows which one.
fn how_max_num_seqs(facts: &Facts) -> String {
    match &facts.evidence.log {
        Some(log) if log.server == "vllm" && !log.non_default_args.is_empty() => {
            "its arguments line does not set max_num_seqs, so vLLM's default for the GPU holds: start the server \
             with --max-num-seqs to know the cap"
                .to_string()
        }
        _ => facts.how_log(),
    }
}

fn preemptions(facts: &Facts, t: &Thresholds) -> Assessment {
    let kv_peak = facts.kv_usage().map(|kv| kv.max);
    let confidence_from_kv = |otherwise: Confidence| match kv_peak {
        Some(peak) if peak >= t.preemption_kv_high_confidence => Confidence::High,
        _ => otherwise,
    };
    if let Some(counter) = facts.counter(Signal::Preemptions) {
        let window = facts.server_window_label();
        if counter.increase <= t.preemptions_allowed {
            return PREEMPTIONS
                .passes(format!("{:.0} preemptions in the window", counter.increase));
        }
        let storm =
            preemptions_per_finished(facts).is_some_and(|p| p >= t.preemption_storm_per_request);
        let severity = if counter.rate > t.preemption_rate_critical || storm {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut evidence = vec![compared(
            "preemptions increase",
            counter.increase,
            ">",
            t.preemptions_allowed,
            &window,
        )];
        // Scrapes without a clock give the count, not the rate.
        let rate = finite(counter.rate);
        if let Some(rate) = rate {
            evidence.push(compared(
                "preemptions rate /s",
                rate,
                "vs critical",
                t.preemption_rate_critical,
                &window,
            ));
        }
        if let Some(peak) = kv_peak {
            evidence.push(seen("kv_usage max", peak, &window));
        }
        return PREEMPTIONS.fires(
            severity,
            confidence_from_kv(Confidence::Medium),
            format!(
                "the KV cache ran out mid-generation: {:.0} preemptions{}",
                counter.increase,
                rate.map(|r| format!(" ({r:.2}/s)")).unwrap_or_default()
            ),
            evidence,
        );
    }
    // One scrape's counter covers the server's life, not a window, so it cannot be rated either.
    if let Some(total) = facts.counter_since_start(Signal::Preemptions) {
        if total <= t.preemptions_allowed {
            return PREEMPTIONS.passes(format!(
                "{total:.0} preemptions since the server started (one scrape)"
            ));
        }
        return PREEMPTIONS
            .fires(
                Severity::Warning,
                Confidence::Low,
                format!(
                    "the KV cache ran out mid-generation: {total:.0} preemptions since the server started"
                ),
                vec![compared(
                    "preemptions since start",
                    total,
                    ">",
                    t.preemptions_allowed,
                    "server metrics, one scrape",
                )],
            )
            .unsettled(
                "the preemption rate",
                &facts.how_server_for(Signal::Preemptions),
            );
    }
    let Some(log) = &facts.evidence.log else {
        return PREEMPTIONS.unknown(
            "the preemption counter",
            &facts.how_server_for(Signal::Preemptions),
        );
    };
    // vLLM V1's stats lines name preemptions only when there are some (and only since 2025-11), SGLang's
    // never: a log that cannot report them says nothing about them.
    let Some(count) = log.preemptions.map(|n| n as f64) else {
        return PREEMPTIONS.unknown(
            &format!(
                "the preemption counter ({}'s log lines do not report preemptions)",
                log.server
            ),
            &facts.how_server(),
        );
    };
    if count <= t.preemptions_allowed {
        return PREEMPTIONS.passes("the engine log reports no preemptions".to_string());
    }
    // A log covers the server's life, not this run's window, so it cannot rate the preemptions.
    PREEMPTIONS.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "the KV cache ran out mid-generation: the engine log reports {count:.0} preemptions"
        ),
        vec![compared(
            "preemptions",
            count,
            ">",
            t.preemptions_allowed,
            "engine log",
        )],
    )
}

fn weights_dominate(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(hardware) = &facts.evidence.hardware else {
        return WEIGHTS_DOMINATE.unknown("model and GPU memory sizes", how::HARDWARE);
    };
    let Some(share) =
        ratio(hardware.weight_bytes, hardware.vram_bytes).filter(|_| hardware.weight_bytes > 0.0)
    else {
        return WEIGHTS_DOMINATE.unknown("model and GPU memory sizes", how::HARDWARE);
    };
    if share <= t.weights_vram_share {
        return WEIGHTS_DOMINATE.passes(format!("weights use {} of VRAM", percent(share)));
    }
    // Only a problem when the load actually needs the KV room the weights took.
    let under_pressure = facts.kv_usage().is_some_and(|kv| kv.max > t.kv_saturated)
        || facts
            .waiting()
            .is_some_and(|w| w.mean > t.waiting_mean_nonempty);
    let severity = if under_pressure {
        Severity::Warning
    } else {
        Severity::Info
    };
    WEIGHTS_DOMINATE.fires(
        severity,
        Confidence::High,
        format!(
            "the weights take {} of each GPU's memory, leaving little for the KV cache",
            percent(share)
        ),
        vec![
            compared(
                "weights / VRAM",
                share,
                ">",
                t.weights_vram_share,
                "model and GPU facts",
            ),
            seen(
                "weight bytes per GPU",
                hardware.weight_bytes,
                "model and GPU facts",
            ),
            seen(
                "VRAM bytes per GPU",
                hardware.vram_bytes,
                "model and GPU facts",
            ),
        ],
    )
}

fn startup_headroom(facts: &Facts) -> Assessment {
    let Some((max_concurrency, tokens_per_request)) = facts
        .evidence
        .log
        .as_ref()
        .and_then(|log| log.max_concurrency)
        .filter(|(x, _)| x.is_finite())
    else {
        return STARTUP_HEADROOM
            .unknown("the startup \"Maximum concurrency\" line", &facts.how_log());
    };
    let Some(concurrency) = facts.concurrency_used() else {
        return STARTUP_HEADROOM.unknown("the concurrency in use", how::LOADED_PROBE);
    };
    if max_concurrency >= concurrency {
        return STARTUP_HEADROOM.passes(format!(
            "the KV cache holds {max_concurrency:.1} requests of {tokens_per_request} tokens; {concurrency:.0} in use"
        ));
    }
    let mut evidence = vec![compared(
        "maximum concurrency at max_model_len",
        max_concurrency,
        "<",
        concurrency,
        "engine log, startup",
    )];
    // The log's figure is the worst case (every request at max_model_len); real requests may be much shorter.
    let actual_fit = facts
        .evidence
        .log
        .as_ref()
        .and_then(|log| log.kv_capacity_tokens)
        .and_then(|capacity| {
            let output = facts
                .client()
                .map(|c| c.tokens.mean_output)
                .or_else(|| facts.evidence.workload.as_ref().map(|w| w.output_tokens))
                .and_then(finite)?;
            let per_request = facts.mean_input_tokens()? + output;
            ratio(capacity as f64, per_request)
        });
    let (severity, confidence) = match actual_fit {
        Some(fit) => {
            evidence.push(seen(
                "requests of the actual length the KV cache holds",
                fit,
                "log capacity / mean tokens",
            ));
            if fit >= concurrency {
                (Severity::Info, Confidence::Low)
            } else {
                (Severity::Warning, Confidence::High)
            }
        }
        None => (Severity::Warning, Confidence::Medium),
    };
    STARTUP_HEADROOM.fires(
        severity,
        confidence,
        format!(
            "the KV cache holds {max_concurrency:.1} requests of {tokens_per_request} tokens but {concurrency:.0} \
             run at once"
        ),
        evidence,
    )
}
