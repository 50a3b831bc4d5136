//! The configuration review: vLLM's settings, as the evidence knows them, against the load the server carried and
//! the hardware it runs on; each finding names the flag to change and the value to set.

use infer_doctor_core::{Confidence, ServerConfig, Setting, Severity, Signal, Symptom};
use infer_doctor_plan::Gpu;

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, ms, percent, ratio, seen};
use crate::facts::{Facts, finite, itl};

const ENFORCE_EAGER: Rule = Rule {
    id: "config.enforce_eager",
    symptom: Symptom::Itl,
    why: "--enforce-eager turns off CUDA graphs: every decode step launches each layer's kernels one by one from \
          Python, and at small and medium batches that launch overhead, not the GPU's work, sets the step time, \
          so every token comes slower.",
    remedies: &[
        "Remove --enforce-eager (vLLM then captures CUDA graphs for decode batch sizes up to \
         max_cudagraph_capture_size)",
        "If it was set to save memory, lower --gpu-memory-utilization slightly instead: graphs take a little of it",
    ],
    source: "https://docs.vllm.ai/en/latest/configuration/engine_args.html (--enforce-eager: always eager-mode \
             PyTorch; otherwise eager mode and CUDA graphs in hybrid for performance); \
             https://docs.vllm.ai/en/latest/design/cuda_graphs.html",
};

const MAX_NUM_SEQS_VS_KV: Rule = Rule {
    id: "config.max_num_seqs_vs_kv",
    symptom: Symptom::Throughput,
    why: "--max-num-seqs caps how many requests run at once; the KV cache caps how many fit. A cap far above what \
          the cache holds admits requests that are preempted and recomputed when the cache runs out; a cap far \
          below it leaves the cache idle while requests queue.",
    remedies: &[
        "Set --max-num-seqs to the concurrency the KV cache holds for requests of this size (the value in the \
         verdict)",
        "Re-check after a change of workload: the right cap follows the mean request length",
    ],
    source: "https://docs.vllm.ai/en/stable/configuration/optimization/ (Preemption: reduce max_num_seqs or \
             max_num_batched_tokens so a batch needs less KV cache); vllm-project/vllm: \
             vllm/v1/core/sched/scheduler.py (max_num_seqs)",
};

const MAX_MODEL_LEN_OVERSIZED: Rule = Rule {
    id: "config.max_model_len_oversized",
    symptom: Symptom::Throughput,
    why: "vLLM sizes its start-up check and its per-request worst case by --max-model-len; a context far longer \
          than any request seen lowers the concurrency it promises, and lets a single request take blocks that \
          many normal ones need.",
    remedies: &[
        "Set --max-model-len to a round value above the longest request (the value in the verdict)",
        "Route the rare long-context requests to a replica configured for them",
    ],
    source: "https://docs.vllm.ai/en/latest/configuration/conserving_memory.html (reduce max_model_len); \
             vllm-project/vllm: vllm/v1/core/kv_cache_utils.py (\"Maximum concurrency for N tokens per request\")",
};

const GPU_MEMORY_UTILIZATION_LOW: Rule = Rule {
    id: "config.gpu_memory_utilization_low",
    symptom: Symptom::Throughput,
    why: "vLLM gives --gpu-memory-utilization of each GPU's memory to weights, activations and the KV cache; what \
          is left over after the weights is all KV cache, so a low fraction leaves memory unused while the cache \
          runs out.",
    remedies: &[
        "Raise --gpu-memory-utilization (the value in the verdict; up to 0.95 when nothing else uses the GPU)",
        "Check nvidia-smi first: another process on the GPU is the usual reason it was lowered",
    ],
    source: "https://docs.vllm.ai/en/latest/configuration/engine_args.html (--gpu-memory-utilization, default \
             0.9); https://docs.vllm.ai/en/stable/configuration/optimization/ (Preemption: increase \
             gpu_memory_utilization)",
};

const PREFIX_CACHING_OFF: Rule = Rule {
    id: "config.prefix_caching_off",
    symptom: Symptom::Ttft,
    why: "With prefix caching off, vLLM recomputes every prompt's shared prefix (system prompt, few-shot examples, \
          chat history) for every request, although its KV blocks could be reused: prefill work and TTFT grow \
          with the shared part.",
    remedies: &[
        "Start the server with --enable-prefix-caching (on by default in vLLM V1; remove \
         --no-enable-prefix-caching)",
        "Behind several replicas, route requests with the same prefix to the same replica (llm-d's prefix-aware \
         scheduler)",
    ],
    source: "https://docs.vllm.ai/en/latest/features/automatic_prefix_caching.html; \
             https://docs.vllm.ai/en/latest/configuration/engine_args.html (--enable-prefix-caching)",
};

const CHUNKED_PREFILL: Rule = Rule {
    id: "config.chunked_prefill",
    symptom: Symptom::Ttft,
    why: "Without chunked prefill, or with a small --max-num-batched-tokens, long prompts are prefilled in steps \
          that either stall every running decode (ITL spikes) or crawl through the token budget in many small \
          chunks (TTFT grows).",
    remedies: &[
        "Enable chunked prefill (--enable-chunked-prefill; on by default in vLLM V1) and set \
         --max-num-batched-tokens to the value in the verdict",
        "Larger --max-num-batched-tokens favours TTFT and throughput; smaller favours ITL",
    ],
    source: "https://docs.vllm.ai/en/stable/configuration/optimization/ (Chunked Prefill: larger \
             max_num_batched_tokens for TTFT and throughput, smaller for ITL); vllm-project/vllm: \
             vllm/engine/arg_utils.py (default max_num_batched_tokens by GPU memory)",
};

const TP_VS_TOPOLOGY: Rule = Rule {
    id: "config.tp_vs_topology",
    symptom: Symptom::Itl,
    why: "Tensor parallelism splits every layer over the GPUs of a group and all-reduces at each layer: it needs \
          that many GPUs, and a fast link between them; for a model that fits on one GPU, replicas serve more \
          requests per GPU than one tensor-parallel group.",
    remedies: &[
        "Set --tensor-parallel-size to the value in the verdict",
        "Without NVLink between the GPUs, prefer replicas or --pipeline-parallel-size over tensor parallelism",
    ],
    source: "https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html (tensor parallelism when the model does \
             not fit one GPU; pipeline parallelism across slow links)",
};

const KV_CACHE_DTYPE: Rule = Rule {
    id: "config.kv_cache_dtype",
    symptom: Symptom::Throughput,
    why: "The KV cache is stored in the model's 16-bit dtype (kv_cache_dtype auto) on a GPU with FP8 support, \
          while the cache runs out: FP8 KV halves the bytes per token, so the same memory holds about twice the \
          tokens, at a small accuracy cost.",
    remedies: &[
        "Start the server with --kv-cache-dtype fp8 (about 2× the KV tokens)",
        "Check accuracy on your evaluation set; calibrated scales (--calculate-kv-scales or a checkpoint's) \
         keep it closest",
    ],
    source: "https://docs.vllm.ai/en/latest/features/quantization/quantized_kvcache.html",
};

const SPEC_DECODE_LOW_ACCEPTANCE: Rule = Rule {
    id: "config.spec_decode_low_acceptance",
    symptom: Symptom::Itl,
    why: "Speculative decoding pays off only when the target model accepts most drafted tokens; rejected drafts \
          cost draft-model time and verification compute for nothing, so a low acceptance rate makes decoding \
          slower than without speculation.",
    remedies: &[
        "Lower num_speculative_tokens in --speculative-config (the value in the verdict)",
        "Or disable speculative decoding (drop --speculative-config), or use a draft better matched to the traffic",
    ],
    source: "vllm-project/vllm: vllm/v1/spec_decode/metrics.py (acceptance rate = accepted / draft tokens); \
             https://docs.vllm.ai/en/latest/features/spec_decode.html",
};

/// How to make the server's settings known.
pub(crate) const HOW_CONFIG: &str = "pass the vLLM log from the server's start (--log FILE: its non-default args and engine \
                          config lines), or run infer-doctor collect on the GPU host (it records the server's \
                          command line and /metrics with vllm:cache_config_info)";

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    let config = facts.evidence.config.as_ref();
    vec![
        enforce_eager(facts, config),
        max_num_seqs_vs_kv(facts, t, config),
        max_model_len_oversized(facts, t, config),
        gpu_memory_utilization_low(facts, t, config),
        prefix_caching_off(facts, config),
        chunked_prefill(facts, t, config),
        tp_vs_topology(facts, t, config),
        kv_cache_dtype(facts, t, config),
        spec_decode_low_acceptance(facts, t, config),
    ]
}

/// A setting's value, and the window naming where it was read.
pub(crate) fn known<'a, T>(
    config: Option<&'a ServerConfig>,
    pick: impl Fn(&'a ServerConfig) -> &'a Option<Setting<T>>,
) -> Option<(&'a T, &'static str)> {
    let setting = pick(config?).as_ref()?;
    Some((&setting.value, setting.source.describe()))
}

/// The KV cache's tokens per engine, and where they were read: the log's "GPU KV cache size" first (exact for
/// hybrid models too), else blocks × block size as the server reported them.
fn kv_tokens(facts: &Facts, config: Option<&ServerConfig>) -> Option<(f64, &'static str)> {
    if let Some(tokens) = facts
        .evidence
        .log
        .as_ref()
        .and_then(|l| l.kv_capacity_tokens)
    {
        return Some((tokens as f64, "engine log, KV cache size"));
    }
    if let Some(tokens) = config.and_then(ServerConfig::kv_tokens) {
        return Some((tokens.value as f64, tokens.source.describe()));
    }
    let server = facts.evidence.server.as_ref()?;
    let total = finite(server.gauge(Signal::KvCapacityTokens)?.max).filter(|v| *v > 0.0)?;
    Some((
        total / f64::from(server.engines.unwrap_or(1)),
        "server metrics, KV capacity",
    ))
}

/// Mean prompt + output tokens per request, and where they were read: the client's counts, the probe's
/// workload, else the server's token counters over the requests it finished.
fn mean_request_tokens(facts: &Facts) -> Option<(f64, &'static str)> {
    let output = facts
        .client()
        .map(|c| c.tokens.mean_output)
        .or_else(|| facts.evidence.workload.as_ref().map(|w| w.output_tokens))
        .and_then(finite);
    if let (Some(input), Some(output)) = (facts.mean_input_tokens(), output) {
        return Some((input + output, "client, mean prompt + output tokens"));
    }
    let prompt = facts.counter(Signal::PromptTokens)?.increase;
    let generated = facts.counter(Signal::GenerationTokens)?.increase;
    let finished = facts.counter(Signal::RequestsFinished)?.increase;
    ratio(prompt + generated, finished)
        .filter(|v| *v > 0.0)
        .map(|v| (v, "server metrics, tokens per finished request"))
}

/// The longest request seen (prompt + its output budget), and where it was read.
fn longest_request(facts: &Facts) -> Option<(f64, &'static str)> {
    let longest = facts
        .evidence
        .requests
        .iter()
        .filter_map(|r| {
            let prompt = r.usage_prompt_tokens.or(r.input_tokens_built)?;
            let output = r.usage_output_tokens.unwrap_or(0).max(r.max_tokens);
            Some(u64::from(prompt) + u64::from(output))
        })
        .max();
    if let Some(longest) = longest.filter(|l| *l > 0) {
        return Some((longest as f64, "client, longest prompt + max_tokens"));
    }
    let workload = facts.evidence.workload.as_ref()?;
    let tokens = workload.input_tokens + workload.output_tokens;
    (tokens.is_finite() && tokens > 0.0)
        .then_some((tokens, "probe workload, prompt + output tokens"))
}

/// Whether the evidence holds load: a probe's requests, or requests the server finished over a window.
fn load_measured(facts: &Facts) -> bool {
    facts.client().is_some_and(|c| c.requests.ok > 0)
        || facts
            .counter(Signal::RequestsFinished)
            .is_some_and(|c| c.increase > 0.0)
}

/// Whether the KV cache ran out (usage above the saturation line, or preemptions over the window), with the
/// evidence; `None` when neither is known, and when nothing says it did not run out under load (an idle scrape
/// shows an empty cache, not a big enough one).
fn kv_pressure(
    facts: &Facts,
    t: &Thresholds,
) -> Option<(bool, Vec<infer_doctor_core::Observation>)> {
    let kv = facts.kv_usage();
    let preempted = facts.preemptions_in_window();
    if kv.is_none() && preempted.is_none() {
        return None;
    }
    let mut evidence = Vec::new();
    let mut pressed = false;
    if let Some(kv) = &kv {
        pressed |= kv.max > t.kv_saturated;
        evidence.push(compared(
            "kv_usage max",
            kv.max,
            if kv.max > t.kv_saturated { ">" } else { "≤" },
            t.kv_saturated,
            &kv.window,
        ));
    }
    if let Some(count) = preempted {
        pressed |= count > t.preemptions_allowed;
        evidence.push(seen("preemptions", count, "server metrics or engine log"));
    }
    (pressed || load_measured(facts)).then_some((pressed, evidence))
}

/// The GPU in the built-in catalog: the one named for the floors, else the first one captured.
fn catalog_gpu(facts: &Facts) -> Option<Gpu> {
    let name = facts
        .evidence
        .hardware
        .as_ref()
        .map(|h| h.gpu.as_str())
        .or_else(|| facts.evidence.gpus.first().map(|g| g.name.as_str()))?;
    Gpu::by_name(name).ok()
}

/// `value` rounded up to a multiple of `step`.
fn round_up(value: f64, step: f64) -> u64 {
    ((value / step).ceil() * step) as u64
}

fn enforce_eager(facts: &Facts, config: Option<&ServerConfig>) -> Assessment {
    let Some((&eager, source)) = known(config, |c| &c.enforce_eager) else {
        return ENFORCE_EAGER.unknown("whether the server runs with --enforce-eager", HOW_CONFIG);
    };
    if !eager {
        return ENFORCE_EAGER.passes(format!("CUDA graphs on (enforce_eager false, {source})"));
    }
    let mut evidence = vec![seen("enforce_eager", 1.0, source)];
    // With a floor and a single-user ITL, the gap above the floor bounds what graphs can win back.
    let floor = facts
        .evidence
        .hardware
        .as_ref()
        .and_then(|h| finite(h.decode_floor_seconds * 1000.0))
        .filter(|f| *f > 0.0);
    let single = facts.single_user().and_then(itl);
    let gain = match (floor, single) {
        (Some(floor), Some(single)) if single.ms > floor => {
            evidence.push(seen(
                format!("single-user {}", single.label),
                single.ms,
                &facts.single_user_window_label(),
            ));
            evidence.push(seen(
                "decode floor (ms, weights read once per step)",
                floor,
                "model and GPU facts",
            ));
            format!(
                "; single-user ITL is {} against a {} floor, so up to {} per token is overhead CUDA graphs cut \
                 into",
                ms(single.ms),
                ms(floor),
                ms(single.ms - floor)
            )
        }
        _ => "; decode steps pay Python kernel-launch overhead on every layer".to_string(),
    };
    ENFORCE_EAGER.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "the server runs without CUDA graphs (enforce_eager, {source}){gain}: remove --enforce-eager"
        ),
        evidence,
    )
}

fn max_num_seqs_vs_kv(facts: &Facts, t: &Thresholds, config: Option<&ServerConfig>) -> Assessment {
    let Some((&cap, cap_source)) = known(config, |c| &c.max_num_seqs) else {
        return MAX_NUM_SEQS_VS_KV.unknown("max_num_seqs", HOW_CONFIG);
    };
    let Some((kv, kv_source)) = kv_tokens(facts, config) else {
        return MAX_NUM_SEQS_VS_KV.unknown("the KV cache's size in tokens", &facts.how_log());
    };
    let Some((per_request, request_source)) = mean_request_tokens(facts) else {
        return MAX_NUM_SEQS_VS_KV.unknown("the requests' mean length", how::LOADED_PROBE);
    };
    let cap = cap as f64;
    let fits = (kv / per_request).floor().max(1.0);
    let mut evidence = vec![
        seen("max_num_seqs", cap, cap_source),
        seen("KV cache tokens per engine", kv, kv_source),
        seen("mean tokens per request", per_request, request_source),
        seen(
            "requests the KV cache holds",
            fits,
            "KV tokens / mean tokens",
        ),
    ];
    if cap > t.config_seqs_over_kv_ratio * fits {
        let pressure = kv_pressure(facts, t);
        let (severity, confidence, corroborated) = match &pressure {
            Some((true, seen)) => {
                evidence.extend(seen.iter().cloned());
                (Severity::Warning, Confidence::High, " and it ran out")
            }
            Some((false, seen)) => {
                // The load was measured and the cache held it: requests are shorter than the admission
                // arithmetic fears, or fewer arrive at once.
                evidence.extend(seen.iter().cloned());
                return MAX_NUM_SEQS_VS_KV.passes(format!(
                    "max_num_seqs {cap:.0} is above the {fits:.0} requests the KV cache holds at the mean length, \
                     but under the load measured it never ran out"
                ));
            }
            None => (Severity::Info, Confidence::Medium, ""),
        };
        evidence[0] = compared(
            "max_num_seqs",
            cap,
            ">",
            t.config_seqs_over_kv_ratio * fits,
            cap_source,
        );
        return MAX_NUM_SEQS_VS_KV.fires(
            severity,
            confidence,
            format!(
                "max_num_seqs {cap:.0} admits far more requests than the KV cache holds ({fits:.0} of \
                 {per_request:.0} tokens){corroborated}: preemptions ahead; set --max-num-seqs {fits:.0}"
            ),
            evidence,
        );
    }
    // The other way round: the cap binds while the cache has room.
    let (Some(waiting), Some(running), Some(kv_usage)) =
        (facts.waiting(), facts.running(), facts.kv_usage())
    else {
        return MAX_NUM_SEQS_VS_KV.passes(format!(
            "max_num_seqs {cap:.0} within what the KV cache holds ({fits:.0} requests of {per_request:.0} tokens)"
        ));
    };
    let engines = facts
        .evidence
        .server
        .as_ref()
        .and_then(|s| s.engines)
        .unwrap_or(1);
    let ceiling = cap * f64::from(engines) * t.batch_cap_running_share;
    let capped = running.max >= ceiling
        && waiting.mean > t.waiting_mean_nonempty
        && kv_usage.max < t.config_batch_cap_kv_below
        && fits > cap * t.config_seqs_over_kv_ratio;
    if !capped {
        return MAX_NUM_SEQS_VS_KV.passes(format!(
            "max_num_seqs {cap:.0}; the KV cache holds {fits:.0} requests of {per_request:.0} tokens; running \
             peaked at {:.0} with KV at {}",
            running.max,
            percent(kv_usage.max)
        ));
    }
    evidence.extend([
        compared(
            "requests_running max",
            running.max,
            "≥",
            ceiling,
            &running.window,
        ),
        compared(
            "requests_waiting mean",
            waiting.mean,
            ">",
            t.waiting_mean_nonempty,
            &waiting.window,
        ),
        compared(
            "kv_usage max",
            kv_usage.max,
            "<",
            t.config_batch_cap_kv_below,
            &kv_usage.window,
        ),
    ]);
    MAX_NUM_SEQS_VS_KV.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "max_num_seqs {cap:.0} caps the batch while requests wait and KV peaks at {}: the cache holds \
             {fits:.0} requests of {per_request:.0} tokens; set --max-num-seqs {fits:.0}",
            percent(kv_usage.max)
        ),
        evidence,
    )
}

fn max_model_len_oversized(
    facts: &Facts,
    t: &Thresholds,
    config: Option<&ServerConfig>,
) -> Assessment {
    let Some((&length, source)) = known(config, |c| &c.max_model_len) else {
        return MAX_MODEL_LEN_OVERSIZED.unknown("max_model_len", HOW_CONFIG);
    };
    let Some((longest, longest_source)) = longest_request(facts) else {
        return MAX_MODEL_LEN_OVERSIZED.unknown("the requests' lengths", how::REQUESTS);
    };
    let length = length as f64;
    if length <= t.config_max_model_len_ratio * longest {
        return MAX_MODEL_LEN_OVERSIZED.passes(format!(
            "max_model_len {length:.0} against requests of up to {longest:.0} tokens"
        ));
    }
    let mut evidence = vec![
        compared(
            "max_model_len",
            length,
            ">",
            t.config_max_model_len_ratio * longest,
            source,
        ),
        seen("longest request (tokens)", longest, longest_source),
    ];
    // It costs only when the cache is short: full, preempting, or promising fewer requests than admitted.
    let pressure = kv_pressure(facts, t);
    // The concurrency to hold: max_num_seqs, or the load's own where it is lower (a cap never reached costs
    // nothing).
    let short_at_full_length = kv_tokens(facts, config).and_then(|(kv, kv_source)| {
        let (&cap, _) = known(config, |c| &c.max_num_seqs)?;
        let needed = facts
            .concurrency_used()
            .map_or(cap as f64, |used| used.min(cap as f64));
        let at_full = kv / length;
        Some((at_full < needed, at_full, kv_source))
    });
    let pressed = pressure.as_ref().is_some_and(|(p, _)| *p);
    // vLLM allocates blocks as tokens arrive, so a cache that promises few requests of max_model_len costs
    // something only when the load found it short; without a measured load the promise alone is the evidence.
    let short = short_at_full_length.is_some_and(|(s, _, _)| s) && pressure.is_none();
    if !pressed && !short {
        if pressure.is_none() && short_at_full_length.is_none() {
            return MAX_MODEL_LEN_OVERSIZED.unknown(
                "whether the KV cache is under pressure (KV usage, preemptions, or its size with max_num_seqs)",
                &facts.how_server(),
            );
        }
        return MAX_MODEL_LEN_OVERSIZED.passes(format!(
            "max_model_len {length:.0} is far above the longest request ({longest:.0} tokens), but the KV cache \
             is not short"
        ));
    }
    if let Some((_, seen_pressure)) = pressure.filter(|(p, _)| *p) {
        evidence.extend(seen_pressure);
    }
    if let Some((true, at_full, kv_source)) = short_at_full_length {
        evidence.push(seen(
            "requests of max_model_len the KV cache holds",
            at_full,
            kv_source,
        ));
    }
    let suggested = round_up(longest * t.config_max_model_len_margin, MAX_MODEL_LEN_STEP);
    if suggested as f64 >= length {
        return MAX_MODEL_LEN_OVERSIZED.passes(format!(
            "max_model_len {length:.0} is already within a {MAX_MODEL_LEN_STEP:.0}-token step of the longest request \
             ({longest:.0} tokens) with margin"
        ));
    }
    MAX_MODEL_LEN_OVERSIZED.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "max_model_len {length:.0} is {:.0}× the longest request measured ({longest:.0} tokens) while the KV \
             cache is short: set --max-model-len {suggested}, if no real request runs longer",
            length / longest
        ),
        evidence,
    )
}

/// The step `--max-model-len` suggestions are rounded up to.
const MAX_MODEL_LEN_STEP: f64 = 1024.0;

fn gpu_memory_utilization_low(
    facts: &Facts,
    t: &Thresholds,
    config: Option<&ServerConfig>,
) -> Assessment {
    let Some((&share, source)) = known(config, |c| &c.gpu_memory_utilization) else {
        return GPU_MEMORY_UTILIZATION_LOW.unknown("gpu_memory_utilization", HOW_CONFIG);
    };
    if share >= t.config_gpu_memory_utilization_low {
        return GPU_MEMORY_UTILIZATION_LOW
            .passes(format!("gpu_memory_utilization {share:.2} ({source})"));
    }
    let Some((pressed, pressure)) = kv_pressure(facts, t) else {
        return GPU_MEMORY_UTILIZATION_LOW.unknown(
            "whether the KV cache runs out (KV usage or preemptions)",
            &facts.how_server(),
        );
    };
    if !pressed {
        return GPU_MEMORY_UTILIZATION_LOW.passes(format!(
            "gpu_memory_utilization {share:.2} is low, but the KV cache did not run out"
        ));
    }
    let target = t.config_gpu_memory_utilization_target;
    let mut evidence = vec![compared(
        "gpu_memory_utilization",
        share,
        "<",
        t.config_gpu_memory_utilization_low,
        source,
    )];
    evidence.extend(pressure);
    let gain = extra_kv_tokens_per_step(facts, config, share).map_or(String::new(), |tokens| {
        evidence.push(seen(
            "≈ KV tokens per +0.05 of gpu_memory_utilization",
            tokens,
            "KV tokens / (utilization × VRAM − weights)",
        ));
        format!(" (each +0.05 buys ≈{tokens:.0} KV tokens)")
    });
    GPU_MEMORY_UTILIZATION_LOW.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "gpu_memory_utilization {share:.2} leaves GPU memory unused while the KV cache runs out: set \
             --gpu-memory-utilization {target:.2}{gain}"
        ),
        evidence,
    )
}

/// KV tokens another 0.05 of the GPU's memory holds: the cache's bytes per token from its size and the memory it
/// got (utilization × VRAM less the weights, activations ignored, so an estimate on the low side).
fn extra_kv_tokens_per_step(
    facts: &Facts,
    config: Option<&ServerConfig>,
    share: f64,
) -> Option<f64> {
    let (kv, _) = kv_tokens(facts, config)?;
    let hardware = facts.evidence.hardware.as_ref()?;
    let kv_memory = share * hardware.vram_bytes - hardware.weight_bytes;
    let bytes_per_token = ratio(kv_memory, kv)?;
    ratio(0.05 * hardware.vram_bytes, bytes_per_token).filter(|v| *v > 0.0)
}

fn prefix_caching_off(facts: &Facts, config: Option<&ServerConfig>) -> Assessment {
    let Some((&on, source)) = known(config, |c| &c.enable_prefix_caching) else {
        return PREFIX_CACHING_OFF.unknown("whether prefix caching is enabled", HOW_CONFIG);
    };
    if on {
        return PREFIX_CACHING_OFF.passes(format!("prefix caching on ({source})"));
    }
    match facts.evidence.shared_prefixes {
        Some(true) => PREFIX_CACHING_OFF.fires(
            Severity::Warning,
            Confidence::High,
            format!(
                "prefix caching is off ({source}) while the prompts share prefixes: start the server with \
                 --enable-prefix-caching"
            ),
            vec![
                seen("enable_prefix_caching", 0.0, source),
                seen("prompts share prefixes", 1.0, "workload (--prefix-tokens)"),
            ],
        ),
        Some(false) => PREFIX_CACHING_OFF.passes(format!(
            "prefix caching off ({source}), and the prompts share no prefixes"
        )),
        None => PREFIX_CACHING_OFF.unknown(
            "whether the prompts share prefixes (prefix caching is off)",
            "run the probes with --prefix-tokens N, or a bench run with --prefix-tokens",
        ),
    }
}

/// Whether prefills visibly interfere with the load's latency: TTFT high under load, or ITL under load well
/// above its single-user value; with what showed it.
fn prefill_interference(
    facts: &Facts,
    t: &Thresholds,
) -> Option<(bool, infer_doctor_core::Observation)> {
    if let (Some(loaded), Some(single)) = (
        facts.client().and_then(itl),
        facts.single_user().and_then(itl),
    ) && let Some(r) = ratio(loaded.ms, single.ms)
        && r >= t.itl_load_ratio
    {
        return Some((
            true,
            compared(
                "ITL under load / single-user ITL",
                r,
                "≥",
                t.itl_load_ratio,
                &facts.client_window_label(),
            ),
        ));
    }
    let ttft = facts.loaded_ttft_p95()?;
    let high = ttft.ms > t.ttft_high_ms;
    Some((
        high,
        compared(
            ttft.label,
            ttft.ms,
            if high { ">" } else { "≤" },
            t.ttft_high_ms,
            &ttft.window,
        ),
    ))
}

fn chunked_prefill(facts: &Facts, t: &Thresholds, config: Option<&ServerConfig>) -> Assessment {
    let chunked = known(config, |c| &c.enable_chunked_prefill);
    let budget = known(config, |c| &c.max_num_batched_tokens);
    if chunked.is_none() && budget.is_none() {
        return CHUNKED_PREFILL.unknown(
            "whether chunked prefill is on, and max_num_batched_tokens",
            HOW_CONFIG,
        );
    }
    let Some(prompt) = facts.mean_input_tokens() else {
        return CHUNKED_PREFILL.unknown("the prompts' mean length", how::LOADED_PROBE);
    };
    let off = chunked.is_some_and(|(on, _)| !on);
    let small = budget.filter(|(tokens, _)| {
        (**tokens as f64) < t.config_min_batched_tokens || (**tokens as f64) < prompt
    });
    if !off && small.is_none() {
        // Both settings decide; one known to be fine says nothing of the other.
        return match (chunked, budget) {
            (Some(_), Some((tokens, source))) => CHUNKED_PREFILL.passes(format!(
                "chunked prefill on, max_num_batched_tokens {tokens} ({source}) for prompts of {prompt:.0} tokens"
            )),
            (None, _) => CHUNKED_PREFILL.unknown("whether chunked prefill is on", HOW_CONFIG),
            (_, None) => CHUNKED_PREFILL.unknown("max_num_batched_tokens", HOW_CONFIG),
        };
    }
    let long =
        prompt >= t.long_input_tokens || small.is_some_and(|(tokens, _)| prompt > *tokens as f64);
    if !long {
        return CHUNKED_PREFILL.passes(format!(
            "prompts of {prompt:.0} tokens are short enough for the prefill settings"
        ));
    }
    let Some((interferes, shown)) = prefill_interference(facts, t) else {
        return CHUNKED_PREFILL.unknown("TTFT and ITL under load", how::LOADED_PROBE);
    };
    if !interferes {
        return CHUNKED_PREFILL.passes(format!(
            "long prompts ({prompt:.0} tokens), but TTFT and ITL hold under load"
        ));
    }
    let suggested = round_up(
        prompt.max(t.config_min_batched_tokens),
        t.config_min_batched_tokens,
    );
    // Long on its own, or longer than the token budget that has to chunk it.
    let length = if prompt >= t.long_input_tokens {
        compared(
            "mean prompt tokens",
            prompt,
            "≥",
            t.long_input_tokens,
            "client or probe workload",
        )
    } else {
        seen("mean prompt tokens", prompt, "client or probe workload")
    };
    let mut evidence = vec![length, shown];
    let verdict = if off {
        let (_, source) = chunked.expect("known when off");
        evidence.insert(0, seen("enable_chunked_prefill", 0.0, source));
        format!(
            "chunked prefill is off ({source}) with prompts of {prompt:.0} tokens, and prefills slow the load: \
             start the server with --enable-chunked-prefill --max-num-batched-tokens {suggested}"
        )
    } else {
        let (tokens, source) = small.expect("small when not off");
        evidence.insert(
            0,
            compared(
                "max_num_batched_tokens",
                *tokens as f64,
                "<",
                t.config_min_batched_tokens.max(prompt),
                source,
            ),
        );
        format!(
            "max_num_batched_tokens {tokens} ({source}) is small for prompts of {prompt:.0} tokens, and prefills \
             slow the load: set --max-num-batched-tokens {suggested}"
        )
    };
    CHUNKED_PREFILL.fires(Severity::Warning, Confidence::Medium, verdict, evidence)
}

/// GPUs the evidence shows on the server's host: `CUDA_VISIBLE_DEVICES` where it is the server's own, else the
/// topology matrix, else nvidia-smi's list.
pub(crate) fn visible_gpus(facts: &Facts) -> Option<(usize, &'static str)> {
    if let Some((indices, true)) = crate::facts::visible_gpu_indices(facts.evidence) {
        return Some((indices.len(), "the server's CUDA_VISIBLE_DEVICES"));
    }
    if let Some(topology) = facts
        .evidence
        .topology
        .as_ref()
        .filter(|t| !t.gpus.is_empty())
    {
        return Some((topology.gpus.len(), "nvidia-smi topo -m"));
    }
    (!facts.evidence.gpus.is_empty()).then_some((facts.evidence.gpus.len(), "nvidia-smi"))
}

fn tp_vs_topology(facts: &Facts, t: &Thresholds, config: Option<&ServerConfig>) -> Assessment {
    let Some((&tp, source)) = known(config, |c| &c.tensor_parallel_size) else {
        return TP_VS_TOPOLOGY.unknown("tensor_parallel_size", HOW_CONFIG);
    };
    let pp = known(config, |c| &c.pipeline_parallel_size).map_or(1, |(pp, _)| *pp);
    let needed = tp.saturating_mul(pp);
    let gpus = visible_gpus(facts);
    // An engine said to span hosts needs more GPUs than one host shows: multinode.pp_tp judges that split.
    let spans_hosts = known(config, |c| &c.nnodes).is_some_and(|(n, _)| *n > 1);
    if let Some((count, gpus_source)) = gpus
        && needed > count as u64
        && !spans_hosts
    {
        return TP_VS_TOPOLOGY.fires(
            Severity::Warning,
            Confidence::Medium,
            format!(
                "tensor_parallel_size {tp} × pipeline_parallel_size {pp} needs {needed} GPUs, but {count} are \
                 visible ({gpus_source}): set --tensor-parallel-size {}",
                (count as u64 / pp).max(1)
            ),
            vec![
                compared("GPUs needed (TP × PP)", needed as f64, ">", count as f64, source),
                seen("GPUs visible", count as f64, gpus_source),
            ],
        );
    }
    // The smallest TP whose share of the weights leaves room on one GPU.
    let fits_at = facts.evidence.hardware.as_ref().and_then(|h| {
        let total = h.weight_bytes * f64::from(h.tensor_parallel.max(1));
        let room = t.config_tp_weights_share * h.vram_bytes;
        (room > 0.0 && total > 0.0).then(|| {
            let mut size = 1u64;
            while total / size as f64 > room && size < 64 {
                size *= 2;
            }
            (size, total / h.vram_bytes)
        })
    });
    // Whether TP runs over PCIe is topology.tp_over_pcie's to judge: it knows which GPUs the server uses.
    if tp > 1
        && let Some((size, share)) = fits_at
        && size < tp
    {
        return TP_VS_TOPOLOGY.fires(
                Severity::Info,
                Confidence::Medium,
                format!(
                    "tensor_parallel_size {tp} for a model whose weights take {} of one GPU: for throughput, \
                     set --tensor-parallel-size {size} and run {} replicas (keep TP if the ITL SLO needs it)",
                    percent(share),
                    tp / size
                ),
                vec![
                    seen("tensor_parallel_size", tp as f64, source),
                    compared(
                        "weights / one GPU's VRAM",
                        share,
                        "<",
                        t.config_tp_weights_share,
                        "model and GPU facts",
                    ),
                ],
            );
    }
    if gpus.is_none() && fits_at.is_none() {
        return TP_VS_TOPOLOGY.unknown("the GPUs visible and the model's size", how::TOPOLOGY);
    }
    TP_VS_TOPOLOGY.passes(format!(
        "tensor_parallel_size {tp} ({source}) fits the GPUs and the model"
    ))
}

fn kv_cache_dtype(facts: &Facts, t: &Thresholds, config: Option<&ServerConfig>) -> Assessment {
    let Some((dtype, source)) = known(config, |c| &c.kv_cache_dtype) else {
        return KV_CACHE_DTYPE.unknown("kv_cache_dtype", HOW_CONFIG);
    };
    // 16-bit spellings keep the model's dtype, as `auto` does; only an 8-bit cache halves the bytes.
    let sixteen_bit = ["auto", "bfloat16", "float16", "half", "bf16", "fp16"];
    if !sixteen_bit.contains(&dtype.to_ascii_lowercase().as_str()) {
        return KV_CACHE_DTYPE.passes(format!("kv_cache_dtype {dtype} ({source})"));
    }
    let Some(gpu) = catalog_gpu(facts) else {
        return KV_CACHE_DTYPE.unknown("the GPU (for FP8 support)", how::GPU_STATE);
    };
    if gpu.fp8_flops.is_none() {
        return KV_CACHE_DTYPE.passes(format!(
            "kv_cache_dtype auto; the {} has no FP8 units",
            gpu.name
        ));
    }
    let Some((pressed, pressure)) = kv_pressure(facts, t) else {
        return KV_CACHE_DTYPE.unknown(
            "whether the KV cache runs out (KV usage or preemptions)",
            &facts.how_server(),
        );
    };
    if !pressed {
        return KV_CACHE_DTYPE.passes(format!(
            "kv_cache_dtype auto on the {}, and the KV cache did not run out",
            gpu.name
        ));
    }
    let mut evidence = vec![seen(format!("kv_cache_dtype {dtype}"), 1.0, source)];
    evidence.extend(pressure);
    KV_CACHE_DTYPE.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "the KV cache runs out in 16 bits (kv_cache_dtype {dtype}) on an FP8-capable {}: start the server \
             with --kv-cache-dtype fp8 (≈2× the KV tokens)",
            gpu.name
        ),
        evidence,
    )
}

fn spec_decode_low_acceptance(
    facts: &Facts,
    t: &Thresholds,
    config: Option<&ServerConfig>,
) -> Assessment {
    let count = |signal| {
        facts
            .counter(signal)
            .map(|c| c.increase)
            .or_else(|| facts.counter_since_start(signal))
            .and_then(finite)
    };
    let from_metrics = match (
        count(Signal::SpecDraftTokens),
        count(Signal::SpecAcceptedTokens),
    ) {
        (Some(drafted), Some(accepted)) => Some((drafted, accepted, facts.server_window_label())),
        _ => None,
    };
    // vLLM's log prints the same counts per interval where metrics were not read.
    let from_log = || {
        let (accepted, drafted) = facts.evidence.log.as_ref()?.spec_decode_tokens?;
        Some((
            drafted as f64,
            accepted as f64,
            "engine log, SpecDecoding metrics lines".to_string(),
        ))
    };
    let Some((drafted, accepted, window)) = from_metrics.clone().or_else(from_log) else {
        return match known(config, |c| &c.speculative) {
            Some((false, source)) => SPEC_DECODE_LOW_ACCEPTANCE
                .passes(format!("speculative decoding not configured ({source})")),
            _ => SPEC_DECODE_LOW_ACCEPTANCE.unknown(
                "vLLM's spec-decode counters (vllm:spec_decode_num_draft_tokens_total, \
                 …_accepted_tokens_total, or the log's SpecDecoding metrics lines)",
                &facts.how_server(),
            ),
        };
    };
    let Some(rate) = ratio(accepted, drafted) else {
        return SPEC_DECODE_LOW_ACCEPTANCE.unknown(
            "an acceptance rate: nothing was drafted in the window",
            how::LOADED_PROBE,
        );
    };
    let configured = known(config, |c| &c.num_speculative_tokens).map(|(k, _)| *k);
    // Tokens gained per draft step: from the draft count where the metrics give it, else the rate times the
    // tokens each draft proposes.
    let drafts = from_metrics.as_ref().and(count(Signal::SpecDrafts));
    let per_draft = match (drafts.and_then(|d| ratio(accepted, d)), configured) {
        (Some(per_draft), _) => per_draft,
        (None, Some(k)) => rate * k as f64,
        (None, None) => {
            return SPEC_DECODE_LOW_ACCEPTANCE.unknown(
                "how many tokens each draft proposes (num_speculative_tokens, or vllm:spec_decode_num_drafts_total)",
                HOW_CONFIG,
            );
        }
    };
    if per_draft >= t.spec_decode_accepted_per_draft_low {
        return SPEC_DECODE_LOW_ACCEPTANCE.passes(format!(
            "{per_draft:.2} tokens accepted per draft ({} of drafted tokens)",
            percent(rate)
        ));
    }
    let mut evidence = vec![
        compared(
            "tokens accepted per draft",
            per_draft,
            "<",
            t.spec_decode_accepted_per_draft_low,
            &window,
        ),
        seen("drafted tokens", drafted, &window),
        seen("accepted tokens", accepted, &window),
    ];
    if let Some(k) = configured {
        evidence.push(seen("num_speculative_tokens", k as f64, "settings"));
    }
    // Draft no more per step than are accepted on average, plus one; without the draft count, half as many.
    let suggested = match (drafts, configured) {
        (Some(_), _) => Some((per_draft.ceil() as u64 + 1).max(1)),
        (None, Some(k)) => Some((k / 2).max(1)),
        (None, None) => None,
    }
    .filter(|s| configured.is_none_or(|k| *s < k));
    let action = match suggested {
        Some(k) => {
            format!("set num_speculative_tokens to {k} in --speculative-config, or disable it")
        }
        None => "lower num_speculative_tokens in --speculative-config, or disable it".to_string(),
    };
    SPEC_DECODE_LOW_ACCEPTANCE.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "only {per_draft:.2} tokens accepted per draft ({} of drafted tokens): {action}",
            percent(rate)
        ),
        evidence,
    )
}
