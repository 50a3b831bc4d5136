//! Server dialects → canonical signals: which metric each server (and each version of it) uses for each concept
//! of DESIGN.md §5, detected from the names in a scrape, so the diagnosis never needs to know a server's words.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use infer_doctor_core::{Buckets, Reading, ServerReadings, Signal, SignalKind};

use crate::exposition::{Sample, Scrape};

/// A server's way of naming its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    VllmV1,
    VllmV0,
    Sglang,
    Tgi,
    LlamaCpp,
    /// `trtllm-serve` at `/prometheus/metrics`.
    TrtllmServe,
    /// Triton with the TensorRT-LLM backend (`nv_trt_llm_*`, `nv_inference_*`).
    Triton,
    /// llm-d's endpoint picker (Gateway API Inference Extension).
    LlmdEpp,
    /// NVIDIA dcgm-exporter: GPU facts, no engine signals.
    Dcgm,
}

impl Dialect {
    pub const ALL: [Dialect; 9] = [
        Dialect::VllmV1,
        Dialect::VllmV0,
        Dialect::Sglang,
        Dialect::Tgi,
        Dialect::LlamaCpp,
        Dialect::TrtllmServe,
        Dialect::Triton,
        Dialect::LlmdEpp,
        Dialect::Dcgm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dialect::VllmV1 => "vllm_v1",
            Dialect::VllmV0 => "vllm_v0",
            Dialect::Sglang => "sglang",
            Dialect::Tgi => "tgi",
            Dialect::LlamaCpp => "llamacpp",
            Dialect::TrtllmServe => "trtllm_serve",
            Dialect::Triton => "triton",
            Dialect::LlmdEpp => "llmd_epp",
            Dialect::Dcgm => "dcgm",
        }
    }

    /// Names that only this dialect uses, by prefix.
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Dialect::VllmV1 | Dialect::VllmV0 => &["vllm:"],
            Dialect::Sglang => &["sglang:"],
            Dialect::Tgi => &["tgi_"],
            Dialect::LlamaCpp => &["llamacpp:"],
            Dialect::TrtllmServe => &["trtllm_"],
            Dialect::Triton => &["nv_trt_llm_", "nv_inference_"],
            Dialect::LlmdEpp => &[
                "inference_objective_",
                "inference_pool_",
                "inference_model_",
                "inference_extension_",
                "llm_d_epp_",
            ],
            Dialect::Dcgm => &["DCGM_FI_", "DCGM_EXP_"],
        }
    }

    /// Unprefixed names only this dialect uses: trtllm-serve from 2025-08 to 2026-03 (collector.py @89fd9b74)
    /// named its histograms without a prefix, with `engine_type`/`model_name` labels.
    fn bare_names(self) -> &'static [&'static str] {
        match self {
            Dialect::TrtllmServe => &[
                "time_to_first_token_seconds",
                "e2e_request_latency_seconds",
                "time_per_output_token_seconds",
                "request_queue_time_seconds",
            ],
            _ => &[],
        }
    }

    /// Whether a metric (family or sample) name is one of this dialect's.
    pub fn owns_name(self, name: &str) -> bool {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        self.prefixes().iter().any(|p| name.starts_with(p))
            || self.bare_names().iter().any(|n| *n == name || *n == family)
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Dialect, String> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Dialect::ALL
            .into_iter()
            .find(|d| d.name() == wanted || short_name(wanted.as_str()) == Some(*d))
            .ok_or_else(|| {
                let known: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dialect `{s}`; one of {}", known.join(", "))
            })
    }
}

/// The servers' own short names for their current dialect, as users type them (`--dialect vllm`, `trtllm`).
fn short_name(name: &str) -> Option<Dialect> {
    match name {
        "vllm" => Some(Dialect::VllmV1),
        "trtllm" => Some(Dialect::TrtllmServe),
        _ => None,
    }
}

/// Metrics only vLLM's V0 engine exposed (removed in 2025).
const VLLM_V0_ONLY: [&str; 4] = [
    "vllm:num_requests_swapped",
    "vllm:cpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_hit_rate",
    "vllm:time_in_queue_requests",
];

/// The dialect of a scrape, from its metric names; `None` when no known server's names are in it. Engine
/// dialects win over dcgm-exporter when a scrape mixes them (a federated endpoint).
pub fn detect(scrape: &Scrape<'_>) -> Option<Dialect> {
    detect_names(scrape.families.iter().map(|f| f.name))
}

/// The dialect of a set of metric names, however they were obtained (a scrape, a Prometheus label query).
pub fn detect_names<'n>(names: impl Iterator<Item = &'n str> + Clone) -> Option<Dialect> {
    let found = Dialect::ALL
        .into_iter()
        .find(|d| names.clone().any(|n| d.owns_name(n)))?;
    if found == Dialect::VllmV1 && names.clone().any(|n| VLLM_V0_ONLY.contains(&n)) {
        return Some(Dialect::VllmV0);
    }
    Some(found)
}

/// Where one signal comes from in one dialect. A signal may have several sources in a dialect's table: the
/// first one the scrape holds is read. Public so that what is generated for a dialect (dashboards, alert rules)
/// names its metrics from this one table.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// The first of these metrics present, read as the signal's kind says (a histogram from its `_bucket`,
    /// `_sum` and `_count` samples, in seconds), whatever type the scrape declares or omits.
    Family(&'static [&'static str]),
    /// A histogram in milliseconds.
    HistogramMs(&'static str),
    /// The series of a family whose label `key` has `value`.
    Labeled(&'static str, &'static str, &'static str),
    /// Per value of label `key` (e.g. finished requests by reason).
    ByLabel(&'static str, &'static str),
    /// An info metric's two numeric labels, multiplied (blocks × tokens per block).
    InfoProduct(&'static str, &'static str, &'static str),
    /// An info metric's numeric label (a setting such as `num_gpu_blocks_override`; `None` when unset).
    InfoLabel(&'static str, &'static str),
    /// A block count times the tokens per block: blocks add up over engines, the block size is each one's.
    BlocksTimesSize(&'static str, &'static str),
    /// The same from two series of one family picked by a label (Triton's max blocks and tokens per block).
    LabeledBlocksTimesSize(&'static str, &'static str, &'static str, &'static str),
}

use Signal as S;
use Source::*;

/// vLLM V1 and V0 share most names; where they were renamed the current name comes first
/// (research/server_signals.md §1.2).
const VLLM: &[(Signal, Source)] = &[
    (S::Ttft, Family(&["vllm:time_to_first_token_seconds"])),
    (
        S::Itl,
        Family(&[
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
        ]),
    ),
    (
        S::Tpot,
        Family(&["vllm:request_time_per_output_token_seconds"]),
    ),
    (S::E2e, Family(&["vllm:e2e_request_latency_seconds"])),
    (
        S::QueueTime,
        Family(&[
            "vllm:request_queue_time_seconds",
            "vllm:time_in_queue_requests",
        ]),
    ),
    (
        S::PrefillTime,
        Family(&["vllm:request_prefill_time_seconds"]),
    ),
    (S::DecodeTime, Family(&["vllm:request_decode_time_seconds"])),
    (S::RequestsRunning, Family(&["vllm:num_requests_running"])),
    (S::RequestsWaiting, Family(&["vllm:num_requests_waiting"])),
    (
        S::RequestsWaitingCapacity,
        Labeled("vllm:num_requests_waiting_by_reason", "reason", "capacity"),
    ),
    (
        S::RequestsWaitingDeferred,
        Labeled("vllm:num_requests_waiting_by_reason", "reason", "deferred"),
    ),
    (
        S::KvUsage,
        Family(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]),
    ),
    (
        S::KvCapacityTokens,
        InfoProduct(CACHE_CONFIG_INFO, "num_gpu_blocks", "block_size"),
    ),
    (
        S::KvBlocksOverride,
        InfoLabel(CACHE_CONFIG_INFO, "num_gpu_blocks_override"),
    ),
    (
        S::Preemptions,
        Family(&["vllm:num_preemptions_total", "vllm:num_preemptions"]),
    ),
    (
        S::PromptTokens,
        Family(&["vllm:prompt_tokens_total", "vllm:prompt_tokens"]),
    ),
    (
        S::GenerationTokens,
        Family(&["vllm:generation_tokens_total", "vllm:generation_tokens"]),
    ),
    (
        S::PrefixCacheQueries,
        Family(&[
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_queries",
            "vllm:gpu_prefix_cache_queries_total",
            "vllm:gpu_prefix_cache_queries",
        ]),
    ),
    (
        S::PrefixCacheHits,
        Family(&[
            "vllm:prefix_cache_hits_total",
            "vllm:prefix_cache_hits",
            "vllm:gpu_prefix_cache_hits_total",
            "vllm:gpu_prefix_cache_hits",
        ]),
    ),
    (
        S::RequestsFinished,
        ByLabel("vllm:request_success_total", "finished_reason"),
    ),
    // vllm/v1/spec_decode/metrics.py (research/server_signals.md §1); V0 had the same two token counters.
    (
        S::SpecDrafts,
        Family(&["vllm:spec_decode_num_drafts_total"]),
    ),
    (
        S::SpecDraftTokens,
        Family(&["vllm:spec_decode_num_draft_tokens_total"]),
    ),
    (
        S::SpecAcceptedTokens,
        Family(&["vllm:spec_decode_num_accepted_tokens_total"]),
    ),
    // vLLM's NixlConnector (kv_connector/v1/nixl/stats.py): the transfers a decode replica pulled.
    (S::KvTransferTime, Family(&["vllm:nixl_xfer_time_seconds"])),
    (
        S::KvTransferBytes,
        Family(&["vllm:nixl_bytes_transferred_sum"]),
    ),
    (
        S::KvTransferFailures,
        Family(&["vllm:nixl_num_failed_transfers_total"]),
    ),
];

const SGLANG: &[(Signal, Source)] = &[
    (S::Ttft, Family(&["sglang:time_to_first_token_seconds"])),
    (
        S::Itl,
        Family(&[
            "sglang:inter_token_latency_seconds",
            "sglang:time_per_output_token_seconds",
        ]),
    ),
    (S::E2e, Family(&["sglang:e2e_request_latency_seconds"])),
    (S::QueueTime, Family(&["sglang:queue_time_seconds"])),
    (S::RequestsRunning, Family(&["sglang:num_running_reqs"])),
    (S::RequestsWaiting, Family(&["sglang:num_queue_reqs"])),
    (S::KvUsage, Family(&["sglang:token_usage"])),
    (
        S::KvCapacityTokens,
        Family(&["sglang:max_total_num_tokens"]),
    ),
    (
        S::Preemptions,
        Family(&[
            "sglang:num_retracted_requests_total",
            "sglang:num_retracted_requests",
        ]),
    ),
    (
        S::PromptTokens,
        Family(&["sglang:prompt_tokens_total", "sglang:prompt_tokens"]),
    ),
    (
        S::GenerationTokens,
        Family(&["sglang:generation_tokens_total", "sglang:generation_tokens"]),
    ),
    (
        S::PrefixCacheHits,
        Family(&["sglang:cached_tokens_total", "sglang:cached_tokens"]),
    ),
    (S::PrefixCacheHitRate, Family(&["sglang:cache_hit_rate"])),
    (
        S::KvUsedTokens,
        Family(&["sglang:kv_used_tokens", "sglang:num_used_tokens"]),
    ),
    (S::GenerationThroughput, Family(&["sglang:gen_throughput"])),
];

const TGI: &[(Signal, Source)] = &[
    (S::E2e, Family(&["tgi_request_duration"])),
    (
        S::Tpot,
        Family(&["tgi_request_mean_time_per_token_duration"]),
    ),
    (S::QueueTime, Family(&["tgi_request_queue_duration"])),
    (S::RequestsRunning, Family(&["tgi_batch_current_size"])),
    (S::RequestsWaiting, Family(&["tgi_queue_size"])),
    (S::KvCapacityTokens, Family(&["tgi_batch_max_total_tokens"])),
];

const LLAMACPP: &[(Signal, Source)] = &[
    (
        S::RequestsRunning,
        Family(&["llamacpp:requests_processing"]),
    ),
    (S::RequestsWaiting, Family(&["llamacpp:requests_deferred"])),
    (
        S::PromptTokens,
        Family(&["llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens"]),
    ),
    (
        S::GenerationTokens,
        Family(&[
            "llamacpp:tokens_predicted_total",
            "llamacpp:tokens_predicted",
        ]),
    ),
    (
        S::PromptThroughput,
        Family(&["llamacpp:prompt_tokens_seconds"]),
    ),
    (
        S::GenerationThroughput,
        Family(&["llamacpp:predicted_tokens_seconds"]),
    ),
];

const TRTLLM_SERVE: &[(Signal, Source)] = &[
    (
        S::Ttft,
        Family(&[
            "trtllm_time_to_first_token_seconds",
            "time_to_first_token_seconds",
        ]),
    ),
    (
        S::Tpot,
        Family(&[
            "trtllm_time_per_output_token_seconds",
            "time_per_output_token_seconds",
        ]),
    ),
    (
        S::E2e,
        Family(&[
            "trtllm_e2e_request_latency_seconds",
            "e2e_request_latency_seconds",
        ]),
    ),
    (
        S::QueueTime,
        Family(&[
            "trtllm_request_queue_time_seconds",
            "request_queue_time_seconds",
        ]),
    ),
    (
        S::PrefillTime,
        Family(&["trtllm_request_prefill_time_seconds"]),
    ),
    (
        S::DecodeTime,
        Family(&["trtllm_request_decode_time_seconds"]),
    ),
    (S::RequestsRunning, Family(&["trtllm_num_requests_running"])),
    (S::RequestsWaiting, Family(&["trtllm_num_requests_waiting"])),
    (S::KvUsage, Family(&["trtllm_kv_cache_utilization"])),
    (
        S::KvCapacityTokens,
        BlocksTimesSize(
            "trtllm_kv_cache_max_blocks",
            "trtllm_kv_cache_tokens_per_block",
        ),
    ),
    (
        S::KvUsedTokens,
        BlocksTimesSize(
            "trtllm_kv_cache_used_blocks",
            "trtllm_kv_cache_tokens_per_block",
        ),
    ),
    (S::MaxRunning, Family(&["trtllm_max_batch_size_runtime"])),
    (S::PromptTokens, Family(&["trtllm_prompt_tokens_total"])),
    (
        S::GenerationTokens,
        Family(&["trtllm_generation_tokens_total"]),
    ),
    (S::PrefixCacheHitRate, Family(&["trtllm_kv_cache_hit_rate"])),
    (
        S::RequestsFinished,
        ByLabel("trtllm_request_success_total", "finished_reason"),
    ),
    (
        S::RequestsFinished,
        ByLabel("request_success_total", "finished_reason"),
    ),
];

const TRITON: &[(Signal, Source)] = &[
    (
        S::Ttft,
        HistogramMs("nv_inference_first_response_histogram_ms"),
    ),
    (
        S::RequestsRunning,
        Labeled("nv_trt_llm_request_metrics", "request_type", "scheduled"),
    ),
    (
        S::RequestsWaiting,
        Labeled("nv_trt_llm_request_metrics", "request_type", "waiting"),
    ),
    (
        S::KvUsage,
        Labeled(
            "nv_trt_llm_kv_cache_block_metrics",
            "kv_cache_block_type",
            "fraction",
        ),
    ),
    (
        S::KvCapacityTokens,
        LabeledBlocksTimesSize(
            "nv_trt_llm_kv_cache_block_metrics",
            "kv_cache_block_type",
            "max",
            "tokens_per",
        ),
    ),
    (
        S::KvUsedTokens,
        LabeledBlocksTimesSize(
            "nv_trt_llm_kv_cache_block_metrics",
            "kv_cache_block_type",
            "used",
            "tokens_per",
        ),
    ),
    (
        S::MaxRunning,
        Labeled("nv_trt_llm_request_metrics", "request_type", "max"),
    ),
];

// llm-d's endpoint picker names its series `llm_d_epp_*` (llm-d-router pkg/epp/metrics), keeping the Gateway API
// Inference Extension's `inference_objective_*`, `inference_pool_*` and `inference_extension_*` as deprecated twins:
// the new names are read first.
const LLMD_EPP: &[(Signal, Source)] = &[
    (
        S::Ttft,
        Family(&[
            "llm_d_epp_request_ttft_seconds",
            "inference_objective_request_ttft_seconds",
        ]),
    ),
    (
        S::Tpot,
        Family(&[
            "llm_d_epp_request_streaming_tpot_seconds",
            "inference_objective_request_tpot_seconds",
        ]),
    ),
    (
        S::E2e,
        Family(&[
            "llm_d_epp_request_duration_seconds",
            "inference_objective_request_duration_seconds",
            "inference_model_request_duration_seconds",
        ]),
    ),
    (
        S::RequestsRunning,
        Family(&[
            "llm_d_epp_average_running_requests",
            "inference_pool_average_running_requests",
            "inference_objective_running_requests",
        ]),
    ),
    (
        S::RequestsWaiting,
        Family(&[
            "llm_d_epp_average_queue_size",
            "inference_pool_average_queue_size",
        ]),
    ),
    (
        S::KvUsage,
        Family(&[
            "llm_d_epp_average_kv_cache_utilization",
            "inference_pool_average_kv_cache_utilization",
        ]),
    ),
    // The picker's own work.
    (
        S::SchedulingLatency,
        Family(&[
            "llm_d_epp_scheduler_e2e_duration_seconds",
            "inference_extension_scheduler_e2e_duration_seconds",
        ]),
    ),
    (
        S::GatewayQueueTime,
        Family(&[
            "llm_d_epp_flow_control_request_queue_duration_seconds",
            "inference_extension_flow_control_request_queue_duration_seconds",
        ]),
    ),
    (
        S::ReadyReplicas,
        Family(&["llm_d_epp_ready_endpoints", "inference_pool_ready_pods"]),
    ),
    (
        S::SchedulingAttempts,
        ByLabel("llm_d_epp_scheduler_attempts_total", "status"),
    ),
    (
        S::SchedulingAttempts,
        ByLabel("inference_extension_scheduler_attempts_total", "status"),
    ),
];

/// A dialect's table: each canonical signal with its sources, current names before older ones.
pub fn mapping(dialect: Dialect) -> &'static [(Signal, Source)] {
    match dialect {
        Dialect::VllmV1 | Dialect::VllmV0 => VLLM,
        Dialect::Sglang => SGLANG,
        Dialect::Tgi => TGI,
        Dialect::LlamaCpp => LLAMACPP,
        Dialect::TrtllmServe => TRTLLM_SERVE,
        Dialect::Triton => TRITON,
        Dialect::LlmdEpp => LLMD_EPP,
        Dialect::Dcgm => &[],
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    #[error(
        "no known inference-server metrics in {input} (looked for names starting with vllm:, sglang:, tgi_, \
         llamacpp:, trtllm_, nv_trt_llm_, inference_objective_, DCGM_FI_); force one with --dialect"
    )]
    Unknown { input: String },
}

/// Reads a scrape in its dialect (detected unless given) as canonical signals; `source` names the input in
/// errors. A signal is read wherever the scrape holds it; one it does not hold is absent ("unknown"), never 0.
pub fn read(
    scrape: &Scrape<'_>,
    dialect: Option<Dialect>,
    source: &str,
) -> Result<ServerReadings, DialectError> {
    let dialect = dialect
        .or_else(|| detect(scrape))
        .ok_or(DialectError::Unknown {
            input: source.to_string(),
        })?;
    let samples = SamplesByName::new(scrape);
    let mut out = ServerReadings {
        dialect: dialect.name().to_string(),
        models: samples.models(),
        engines: samples.engines(),
        ..Default::default()
    };
    out.cache_config = cache_config_labels(&samples);
    for &(signal, from) in mapping(dialect) {
        if out.readings.contains_key(&signal) {
            continue;
        }
        if let Some(reading) = extract(&samples, signal, from, &mut out.warnings) {
            out.readings.insert(signal, reading);
        }
    }
    Ok(out)
}

/// The info metric that carries vLLM's cache settings as labels.
const CACHE_CONFIG_INFO: &str = "vllm:cache_config_info";

/// `vllm:cache_config_info`'s labels as text, of the lowest-numbered engine (data-parallel engines share one
/// configuration); empty when the scrape has none.
fn cache_config_labels(samples: &SamplesByName<'_, '_>) -> BTreeMap<String, String> {
    samples
        .named(CACHE_CONFIG_INFO)
        .iter()
        // Numerically: engine "10" comes after engine "2".
        .min_by_key(|s| {
            let engine = s.label("engine").unwrap_or_default();
            (
                engine.parse::<u64>().unwrap_or(u64::MAX),
                engine.to_string(),
            )
        })
        .map(|s| {
            s.labels
                .iter()
                .filter(|(k, _)| *k != "engine")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every sample of a scrape by its own name, whichever family the parser filed it under: a histogram scraped
/// without its `# TYPE` line, or a counter declared the OpenMetrics way, is found all the same.
struct SamplesByName<'s, 'a> {
    by_name: HashMap<&'s str, Vec<&'s Sample<'a>>>,
}

impl<'s, 'a> SamplesByName<'s, 'a> {
    fn new(scrape: &'s Scrape<'a>) -> Self {
        let mut by_name: HashMap<&'s str, Vec<&'s Sample<'a>>> = HashMap::new();
        for sample in scrape.families.iter().flat_map(|f| &f.samples) {
            by_name.entry(sample.name).or_default().push(sample);
        }
        SamplesByName { by_name }
    }

    fn named(&self, name: &str) -> &[&'s Sample<'a>] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// How many data-parallel engines label their series (vLLM's `engine="0"`, `engine="1"`), when more than one.
    fn engines(&self) -> Option<u32> {
        let engines: BTreeSet<&str> = self
            .by_name
            .values()
            .flatten()
            .filter_map(|s| s.label("engine"))
            .collect();
        u32::try_from(engines.len()).ok().filter(|n| *n > 1)
    }

    /// The served models named by `model_name` labels (trtllm-serve writes `undefined` when it does not know).
    fn models(&self) -> Vec<String> {
        let models: BTreeSet<&str> = self
            .by_name
            .values()
            .flatten()
            .filter_map(|s| s.label("model_name"))
            .filter(|m| !m.is_empty() && *m != "undefined")
            .collect();
        models.into_iter().map(str::to_string).collect()
    }
}

fn extract(
    samples: &SamplesByName<'_, '_>,
    signal: Signal,
    from: Source,
    warnings: &mut Vec<String>,
) -> Option<Reading> {
    let values = |name: &str| samples.named(name).iter().map(|s| s.value);
    let labeled = |name: &str, key: &str, value: &str| {
        samples
            .named(name)
            .iter()
            .filter(move |s| s.label(key) == Some(value))
            .map(|s| s.value)
            .collect::<Vec<f64>>()
    };
    let blocks_times_size = |blocks: Vec<f64>, sizes: Vec<f64>| {
        let blocks = Signal::KvCapacityTokens.across().combine(blocks)?;
        let size = sizes.iter().sum::<f64>() / sizes.len() as f64;
        Some(Reading::Value(blocks * size)).filter(|_| !sizes.is_empty())
    };
    match from {
        Family(names) if signal.kind() == SignalKind::Histogram => names
            .iter()
            .find_map(|name| histogram(samples, name, 1.0, warnings)),
        Family(names) => names
            .iter()
            .find_map(|name| signal.across().combine(values(name)))
            .map(Reading::Value),
        HistogramMs(name) => histogram(samples, name, 1e-3, warnings),
        Labeled(name, key, value) => signal
            .across()
            .combine(labeled(name, key, value))
            .map(Reading::Value),
        ByLabel(name, key) => {
            let family = samples.named(name);
            let mut by: BTreeMap<String, f64> = BTreeMap::new();
            for s in family {
                if let Some(v) = s.label(key) {
                    *by.entry(v.to_string()).or_default() += s.value;
                }
            }
            (!family.is_empty()).then_some(Reading::ByLabel(by))
        }
        InfoProduct(name, a, b) => {
            let total: f64 = samples
                .named(name)
                .iter()
                .filter_map(|s| Some(number_label(s, a)? * number_label(s, b)?))
                .sum();
            (total > 0.0).then_some(Reading::Value(total))
        }
        InfoLabel(name, key) => signal
            .across()
            .combine(
                samples
                    .named(name)
                    .iter()
                    .filter_map(|s| number_label(s, key)),
            )
            .map(Reading::Value),
        BlocksTimesSize(blocks, size) => {
            blocks_times_size(values(blocks).collect(), values(size).collect())
        }
        LabeledBlocksTimesSize(name, key, blocks, size) => {
            blocks_times_size(labeled(name, key, blocks), labeled(name, key, size))
        }
    }
}

/// A label holding a number (vLLM writes `None` for settings left unset).
fn number_label(sample: &Sample<'_>, key: &str) -> Option<f64> {
    sample
        .label(key)?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// A histogram sample's series: its labels but `le`, sorted.
fn series_key<'s>(sample: &'s Sample<'_>) -> Vec<(&'s str, &'s str)> {
    let mut key: Vec<(&str, &str)> = sample
        .labels
        .iter()
        .filter(|(k, _)| *k != "le")
        .map(|(k, v)| (*k, v.as_ref()))
        .collect();
    key.sort_unstable();
    key
}

/// One series of a histogram: its buckets (bound scaled to seconds, cumulative count), sum and count.
#[derive(Default)]
struct HistogramSeries {
    bounds: Vec<(f64, f64)>,
    sum: f64,
    count: Option<f64>,
}

/// A histogram's series merged by bucket bound (bounds scaled to seconds); `None` when the scrape holds no
/// sample of it. A series without its `+Inf` bucket is completed from its `_count`, or else counts only what
/// its buckets hold; either way a warning says so.
fn histogram(
    samples: &SamplesByName<'_, '_>,
    name: &str,
    scale: f64,
    warnings: &mut Vec<String>,
) -> Option<Reading> {
    let mut series: BTreeMap<Vec<(&str, &str)>, HistogramSeries> = BTreeMap::new();
    let (buckets, sums, counts) = (
        samples.named(&format!("{name}_bucket")),
        samples.named(&format!("{name}_sum")),
        samples.named(&format!("{name}_count")),
    );
    for s in buckets {
        if let Some(le) = s.label("le").and_then(parse_bound) {
            let entry = series.entry(series_key(s)).or_default();
            entry.bounds.push((le * scale, s.value));
        }
    }
    for s in sums {
        series.entry(series_key(s)).or_default().sum += s.value * scale;
    }
    for s in counts {
        series.entry(series_key(s)).or_default().count = Some(s.value);
    }
    if series.is_empty() {
        return None;
    }
    let (mut completed_from_count, mut top_only) = (false, None::<(f64, f64)>);
    let mut bounds: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let (mut sum, mut count) = (0.0, 0.0);
    for (_, mut one) in series {
        one.bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        match (one.bounds.last().copied(), one.count) {
            (Some((le, at_inf)), counted) if le == f64::INFINITY => {
                count += counted.unwrap_or(at_inf);
            }
            (Some(_), Some(counted)) => {
                one.bounds.push((f64::INFINITY, counted));
                completed_from_count = true;
                count += counted;
            }
            (Some((le, held)), None) => {
                one.bounds.push((f64::INFINITY, held));
                let (top, total) = top_only.unwrap_or((le, 0.0));
                top_only = Some((top.max(le), total + held));
                count += held;
            }
            (None, counted) => count += counted.unwrap_or(0.0),
        }
        sum += one.sum;
        for (le, c) in one.bounds {
            // Keyed by the bound's bits so equal bounds from different series merge.
            bounds.entry(ordered_bits(le)).or_insert((le, 0.0)).1 += c;
        }
    }
    if completed_from_count {
        warnings.push(format!(
            "{name}: no +Inf bucket; its total is taken from {name}_count"
        ));
    }
    if let Some((top, held)) = top_only {
        warnings.push(format!(
            "{name}: no +Inf bucket and no {name}_count, so what lies above its highest bucket ({top} s) is not \
             known: its numbers are of the {held} observations its buckets hold"
        ));
    }
    Some(Reading::Histogram(Buckets {
        bounds: bounds.into_values().collect(),
        sum,
        count,
    }))
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => text.parse().ok(),
    }
}

/// A key that sorts like the (non-negative, non-NaN) float it encodes.
fn ordered_bits(x: f64) -> u64 {
    if x.is_sign_negative() {
        !x.to_bits()
    } else {
        x.to_bits() | (1 << 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    fn fixture(rel: &str) -> String {
        let path = format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_real_vllm_scrape_reads_as_canonical_signals() {
        let text = fixture("vllm_cpu/metrics_during_load.txt");
        let scrape = parse(&text);
        assert_eq!(detect(&scrape), Some(Dialect::VllmV1));
        let r = read(&scrape, None, "during_load").unwrap();
        assert_eq!(r.dialect, "vllm_v1");
        assert_eq!(r.value(Signal::RequestsRunning), Some(6.0));
        assert_eq!(r.value(Signal::RequestsWaitingCapacity), Some(0.0));
        assert_eq!(r.value(Signal::KvCapacityTokens), Some(262_144.0));
        assert_eq!(r.value(Signal::PromptTokens), Some(1137.0));
        let Some(Reading::ByLabel(finished)) = r.get(Signal::RequestsFinished) else {
            panic!("no finished requests");
        };
        assert_eq!(finished["length"], 45.0);
        let Some(Reading::Histogram(ttft)) = r.get(Signal::Ttft) else {
            panic!("no TTFT histogram");
        };
        assert_eq!(ttft.count, 51.0);
        assert_eq!(ttft.bounds.last().unwrap(), &(f64::INFINITY, 51.0));
        assert!(ttft.bounds.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_real_llamacpp_scrape_reads_as_canonical_signals() {
        let text = fixture("llamacpp/metrics_during_load.txt");
        let r = read(&parse(&text), None, "llama.cpp").unwrap();
        assert_eq!(r.dialect, "llamacpp");
        assert_eq!(r.value(Signal::RequestsRunning), Some(4.0));
        assert_eq!(r.value(Signal::RequestsWaiting), Some(2.0));
        assert_eq!(r.value(Signal::GenerationTokens), Some(15648.0));
        assert_eq!(
            r.get(Signal::KvUsage),
            None,
            "llama.cpp has no KV gauge since May 2025"
        );
    }

    #[test]
    fn renamed_and_v0_names_are_read_and_dialects_can_be_forced() {
        let text = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n\
                    # TYPE vllm:num_requests_swapped gauge\nvllm:num_requests_swapped{model_name=\"m\"} 0\n\
                    # TYPE vllm:time_per_output_token_seconds histogram\n\
                    vllm:time_per_output_token_seconds_bucket{le=\"0.1\",model_name=\"m\"} 2\n\
                    vllm:time_per_output_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 3\n\
                    vllm:time_per_output_token_seconds_sum{model_name=\"m\"} 0.4\n\
                    vllm:time_per_output_token_seconds_count{model_name=\"m\"} 3\n";
        let scrape = parse(text);
        assert!(scrape.errors.is_empty(), "{:?}", scrape.errors);
        let r = read(&scrape, None, "old").unwrap();
        assert_eq!(r.dialect, "vllm_v0");
        assert_eq!(r.value(Signal::KvUsage), Some(0.5));
        assert!(matches!(r.get(Signal::Itl), Some(Reading::Histogram(b)) if b.count == 3.0));
        assert_eq!("sglang".parse::<Dialect>(), Ok(Dialect::Sglang));
        assert!("ollama".parse::<Dialect>().unwrap_err().contains("vllm_v1"));
        let forced = read(&scrape, Some(Dialect::Sglang), "old").unwrap();
        assert!(forced.readings.is_empty());
    }

    #[test]
    fn histograms_of_several_engines_merge_by_bound() {
        let text = "# TYPE vllm:e2e_request_latency_seconds histogram\n\
                    vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"1.0\"} 1\n\
                    vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"+Inf\"} 2\n\
                    vllm:e2e_request_latency_seconds_bucket{engine=\"1\",le=\"1.0\"} 3\n\
                    vllm:e2e_request_latency_seconds_bucket{engine=\"1\",le=\"+Inf\"} 3\n\
                    vllm:e2e_request_latency_seconds_count{engine=\"0\"} 2\n\
                    vllm:e2e_request_latency_seconds_count{engine=\"1\"} 3\n";
        let r = read(&parse(text), None, "two engines").unwrap();
        let Some(Reading::Histogram(b)) = r.get(Signal::E2e) else {
            panic!()
        };
        assert_eq!(b.bounds, vec![(1.0, 4.0), (f64::INFINITY, 5.0)]);
        assert_eq!(b.count, 5.0);
    }

    /// A decode replica of a prefill/decode split, as vLLM's NixlConnector exposes it: its transfers' times as a
    /// histogram, their bytes as the sum of another, failures as a counter.
    #[test]
    fn nixl_transfer_metrics_are_read_as_kv_transfer_signals() {
        let text = "# TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3\n\
                    # TYPE vllm:nixl_xfer_time_seconds histogram\n\
                    vllm:nixl_xfer_time_seconds_bucket{engine=\"0\",le=\"0.5\",model_name=\"m\"} 3\n\
                    vllm:nixl_xfer_time_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 4\n\
                    vllm:nixl_xfer_time_seconds_count{engine=\"0\",model_name=\"m\"} 4\n\
                    vllm:nixl_xfer_time_seconds_sum{engine=\"0\",model_name=\"m\"} 1.7\n\
                    # TYPE vllm:nixl_bytes_transferred histogram\n\
                    vllm:nixl_bytes_transferred_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 4\n\
                    vllm:nixl_bytes_transferred_count{engine=\"0\",model_name=\"m\"} 4\n\
                    vllm:nixl_bytes_transferred_sum{engine=\"0\",model_name=\"m\"} 2147483648\n\
                    # TYPE vllm:nixl_num_failed_transfers counter\n\
                    vllm:nixl_num_failed_transfers_total{engine=\"0\",model_name=\"m\"} 1\n";
        let r = read(&parse(text), None, "decode pod").unwrap();
        let Some(Reading::Histogram(b)) = r.get(Signal::KvTransferTime) else {
            panic!("{r:?}")
        };
        assert_eq!((b.count, b.sum), (4.0, 1.7));
        assert_eq!(r.value(Signal::KvTransferBytes), Some(2147483648.0));
        assert_eq!(r.value(Signal::KvTransferFailures), Some(1.0));
    }

    #[test]
    fn spec_decode_counters_and_cache_config_labels() {
        let text = "# TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3\n\
                    # TYPE vllm:spec_decode_num_drafts counter\n\
                    vllm:spec_decode_num_drafts_total{engine=\"0\",model_name=\"m\"} 100\n\
                    # TYPE vllm:spec_decode_num_draft_tokens counter\n\
                    vllm:spec_decode_num_draft_tokens_total{engine=\"0\",model_name=\"m\"} 500\n\
                    # TYPE vllm:spec_decode_num_accepted_tokens counter\n\
                    vllm:spec_decode_num_accepted_tokens_total{engine=\"0\",model_name=\"m\"} 180\n\
                    # TYPE vllm:cache_config_info gauge\n\
                    vllm:cache_config_info{block_size=\"16\",cache_dtype=\"auto\",engine=\"10\"} 1\n\
                    vllm:cache_config_info{block_size=\"16\",cache_dtype=\"fp8\",engine=\"2\"} 1\n";
        let r = read(&parse(text), None, "spec").unwrap();
        assert_eq!(r.value(Signal::SpecDrafts), Some(100.0));
        assert_eq!(r.value(Signal::SpecDraftTokens), Some(500.0));
        assert_eq!(r.value(Signal::SpecAcceptedTokens), Some(180.0));
        // The lowest-numbered engine's labels (2 before 10), less the engine's own.
        assert_eq!(
            r.cache_config.get("cache_dtype").map(String::as_str),
            Some("fp8")
        );
        assert!(!r.cache_config.contains_key("engine"));
    }

    /// Issue 11: a data-parallel vLLM (one series per `engine`) read as KV usage 120%.
    #[test]
    fn several_engines_average_their_kv_usage_and_add_their_amounts() {
        let text = "# TYPE vllm:kv_cache_usage_perc gauge\n\
                    vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.6\n\
                    vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.6\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3\n\
                    vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 4\n\
                    # TYPE vllm:num_preemptions_total counter\n\
                    vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 2\n\
                    vllm:num_preemptions_total{engine=\"1\",model_name=\"m\"} 5\n\
                    # TYPE vllm:cache_config_info gauge\n\
                    vllm:cache_config_info{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"1000\"} 1\n\
                    vllm:cache_config_info{block_size=\"16\",engine=\"1\",num_gpu_blocks=\"1000\"} 1\n";
        let r = read(&parse(text), None, "dp2").unwrap();
        assert_eq!(r.value(Signal::KvUsage), Some(0.6));
        assert_eq!(r.value(Signal::RequestsRunning), Some(7.0));
        assert_eq!(r.value(Signal::Preemptions), Some(7.0));
        assert_eq!(r.value(Signal::KvCapacityTokens), Some(32_000.0));
        assert_eq!(r.models, ["m"]);
        assert_eq!(r.engines, Some(2));
        let trtllm = "trtllm_kv_cache_max_blocks{engine=\"0\"} 100\ntrtllm_kv_cache_max_blocks{engine=\"1\"} 100\n\
                      trtllm_kv_cache_tokens_per_block{engine=\"0\"} 32\ntrtllm_kv_cache_tokens_per_block{engine=\"1\"} 32\n";
        let r = read(&parse(trtllm), None, "trtllm dp2").unwrap();
        assert_eq!(r.value(Signal::KvCapacityTokens), Some(6_400.0));
    }

    /// Issue 11: a scrape holding `num_preemptions_total` was said not to export it. A metric is read wherever
    /// the scrape holds it: without `# TYPE` lines (`curl | grep -v '^#'`), declared the OpenMetrics way, or
    /// under a name the parser filed elsewhere.
    #[test]
    fn a_signal_the_scrape_holds_is_read_whatever_its_declarations() {
        let bare = "vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 4\n\
                    vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.1\",model_name=\"m\"} 3\n\
                    vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 5\n\
                    vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} 1.5\n\
                    vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 5\n";
        let r = read(&parse(bare), None, "no TYPE lines").unwrap();
        assert_eq!(r.value(Signal::Preemptions), Some(4.0));
        let Some(Reading::Histogram(ttft)) = r.get(Signal::Ttft) else {
            panic!("TTFT not read: {r:?}")
        };
        assert_eq!(ttft.bounds, [(0.1, 3.0), (f64::INFINITY, 5.0)]);
        assert_eq!((ttft.count, ttft.sum), (5.0, 1.5));
        let open_metrics = "# TYPE vllm:num_preemptions counter\n\
                            vllm:num_preemptions_total{engine=\"0\"} 4\n\
                            vllm:num_preemptions_created{engine=\"0\"} 1.7e9\n# EOF\n";
        let r = read(&parse(open_metrics), None, "OpenMetrics").unwrap();
        assert_eq!(r.value(Signal::Preemptions), Some(4.0));
        let absent = read(&parse("vllm:num_requests_running 1\n"), None, "x").unwrap();
        assert_eq!(
            absent.get(Signal::Preemptions),
            None,
            "absent is unknown, not 0"
        );
    }

    /// Issue 11: a histogram cut short (no `+Inf` bucket, or no `_count` either) gave no quantiles at all.
    #[test]
    fn a_histogram_without_inf_is_read_from_what_its_buckets_hold_with_a_warning() {
        let with_count = "# TYPE vllm:e2e_request_latency_seconds histogram\n\
                          vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 4\n\
                          vllm:e2e_request_latency_seconds_bucket{le=\"2.0\"} 6\n\
                          vllm:e2e_request_latency_seconds_count 9\n";
        let r = read(&parse(with_count), None, "cut").unwrap();
        let Some(Reading::Histogram(e2e)) = r.get(Signal::E2e) else {
            panic!()
        };
        assert_eq!(e2e.bounds, [(1.0, 4.0), (2.0, 6.0), (f64::INFINITY, 9.0)]);
        assert_eq!(e2e.count, 9.0);
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("no +Inf bucket") && r.warnings[0].contains("_count"),
            "{:?}",
            r.warnings
        );
        let buckets_only = "vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 4\n\
                            vllm:e2e_request_latency_seconds_bucket{le=\"2.0\"} 6\n";
        let r = read(&parse(buckets_only), None, "cut").unwrap();
        let Some(Reading::Histogram(e2e)) = r.get(Signal::E2e) else {
            panic!()
        };
        assert_eq!(e2e.bounds, [(1.0, 4.0), (2.0, 6.0), (f64::INFINITY, 6.0)]);
        assert_eq!(e2e.count, 6.0);
        assert!(
            r.warnings[0].contains("above its highest bucket (2 s)")
                && r.warnings[0].contains("the 6 observations"),
            "{:?}",
            r.warnings
        );
        let stats = crate::server::snapshot(&r);
        let p50 = stats.histogram(Signal::E2e).unwrap().p50;
        // The 3rd of 6 observations, in the first bucket's 4: three quarters of the way to 1 s.
        assert!((p50 - 0.75).abs() < 1e-9, "p50 of 6 observations: {p50}");
        let whole = read(
            &parse(&fixture("vllm_cpu/metrics_during_load.txt")),
            None,
            "x",
        )
        .unwrap();
        assert_eq!(whole.warnings, Vec::<String>::new());
    }

    /// Issue 11: trtllm-serve's 2025 names have no prefix (`time_to_first_token_seconds`, labels
    /// `engine_type`, `model_name`; TensorRT-LLM PR #5785).
    #[test]
    fn trtllm_serve_unprefixed_names_read_as_trtllm() {
        let text = "# TYPE time_to_first_token_seconds histogram\n\
                    time_to_first_token_seconds_bucket{engine_type=\"trtllm\",le=\"0.5\",model_name=\"llama\"} 2\n\
                    time_to_first_token_seconds_bucket{engine_type=\"trtllm\",le=\"+Inf\",model_name=\"llama\"} 3\n\
                    time_to_first_token_seconds_count{engine_type=\"trtllm\",model_name=\"llama\"} 3\n\
                    time_to_first_token_seconds_sum{engine_type=\"trtllm\",model_name=\"llama\"} 1.2\n\
                    # TYPE e2e_request_latency_seconds histogram\n\
                    e2e_request_latency_seconds_bucket{engine_type=\"trtllm\",le=\"+Inf\",model_name=\"llama\"} 3\n\
                    e2e_request_latency_seconds_count{engine_type=\"trtllm\",model_name=\"llama\"} 3\n\
                    # TYPE request_success_total counter\n\
                    request_success_total{engine_type=\"trtllm\",finished_reason=\"stop\",model_name=\"llama\"} 3\n";
        let scrape = parse(text);
        assert_eq!(detect(&scrape), Some(Dialect::TrtllmServe));
        let r = read(&scrape, None, "trtllm-serve").unwrap();
        assert!(matches!(r.get(Signal::Ttft), Some(Reading::Histogram(b)) if b.count == 3.0));
        assert!(matches!(r.get(Signal::E2e), Some(Reading::Histogram(b)) if b.count == 3.0));
        assert_eq!(r.value(Signal::RequestsFinished), Some(3.0));
        assert_eq!(r.models, ["llama"]);
        let names = ["e2e_request_latency_seconds_bucket", "up"];
        assert_eq!(
            detect_names(names.into_iter()),
            Some(Dialect::TrtllmServe),
            "Prometheus lists series names"
        );
        assert_eq!(detect(&parse("request_count 1\n")), None);
    }

    /// Issue 11: gauges several servers export about themselves were dropped.
    #[test]
    fn cache_throughput_batch_and_override_gauges_are_read() {
        let sglang = "sglang:cache_hit_rate{model_name=\"m\",tp_rank=\"0\"} 0.4\n\
                      sglang:cache_hit_rate{model_name=\"m\",tp_rank=\"1\"} 0.6\n\
                      sglang:num_used_tokens{model_name=\"m\",tp_rank=\"0\"} 1200\n\
                      sglang:gen_throughput{model_name=\"m\",tp_rank=\"0\"} 850.5\n";
        let r = read(&parse(sglang), None, "sglang").unwrap();
        assert_eq!(r.value(Signal::PrefixCacheHitRate), Some(0.5));
        assert_eq!(r.value(Signal::KvUsedTokens), Some(1200.0));
        assert_eq!(r.value(Signal::GenerationThroughput), Some(850.5));
        let r = read(
            &parse(&fixture("llamacpp/metrics_during_load.txt")),
            None,
            "l",
        )
        .unwrap();
        assert!(
            r.value(Signal::PromptThroughput).is_some_and(|v| v > 0.0),
            "{r:?}"
        );
        assert!(
            r.value(Signal::GenerationThroughput)
                .is_some_and(|v| v > 0.0)
        );
        let triton = "nv_trt_llm_request_metrics{model=\"tensorrt_llm\",request_type=\"max\",version=\"1\"} 64\n";
        let r = read(&parse(triton), None, "triton").unwrap();
        assert_eq!(r.value(Signal::MaxRunning), Some(64.0));
        let info = |override_blocks: &str| {
            format!(
                "vllm:cache_config_info{{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"512\",\
                 num_gpu_blocks_override=\"{override_blocks}\"}} 1.0\n"
            )
        };
        let r = read(&parse(&info("512")), None, "vllm").unwrap();
        assert_eq!(r.value(Signal::KvBlocksOverride), Some(512.0));
        let r = read(&parse(&info("None")), None, "vllm").unwrap();
        assert_eq!(
            r.value(Signal::KvBlocksOverride),
            None,
            "unset is no override"
        );
        assert_eq!(r.value(Signal::KvCapacityTokens), Some(8192.0));
    }

    #[test]
    fn text_from_no_known_server_is_an_error_naming_it() {
        let err = read(&parse("up 1\n"), None, "node.prom")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node.prom") && err.contains("--dialect"),
            "{err}"
        );
    }

    /// The endpoint picker as the Gateway API Inference Extension's metric goldens write it (pkg/epp/metrics/
    /// testdata), with llm-d's `llm_d_epp_*` renames beside the old names: the new ones are read, once.
    #[test]
    fn the_endpoint_pickers_own_series_are_read_under_either_name() {
        let old = "# TYPE inference_extension_scheduler_e2e_duration_seconds histogram\n\
            inference_extension_scheduler_e2e_duration_seconds_bucket{le=\"0.0001\"} 0\n\
            inference_extension_scheduler_e2e_duration_seconds_bucket{le=\"0.0002\"} 1\n\
            inference_extension_scheduler_e2e_duration_seconds_bucket{le=\"0.1\"} 8\n\
            inference_extension_scheduler_e2e_duration_seconds_bucket{le=\"+Inf\"} 9\n\
            inference_extension_scheduler_e2e_duration_seconds_sum{} 0.2835\n\
            inference_extension_scheduler_e2e_duration_seconds_count{} 9\n\
            # TYPE inference_extension_scheduler_attempts_total counter\n\
            inference_extension_scheduler_attempts_total{namespace=\"\",pod_name=\"\",port=\"\",status=\"failure\",target_model_name=\"\"} 5\n\
            inference_extension_scheduler_attempts_total{namespace=\"\",pod_name=\"\",port=\"\",status=\"success\",target_model_name=\"modelA\"} 10\n\
            # TYPE inference_pool_ready_pods gauge\ninference_pool_ready_pods{name=\"pool\"} 3\n";
        let r = read(&parse(old), None, "gie").unwrap();
        assert_eq!(r.dialect, "llmd_epp");
        let Some(Reading::Histogram(h)) = r.readings.get(&Signal::SchedulingLatency) else {
            panic!("no scheduling latency: {r:?}");
        };
        assert_eq!((h.count, h.sum), (9.0, 0.2835));
        let Some(Reading::ByLabel(by)) = r.readings.get(&Signal::SchedulingAttempts) else {
            panic!("no attempts: {r:?}");
        };
        assert_eq!(by.get("failure"), Some(&5.0));
        assert_eq!(by.get("success"), Some(&10.0));
        assert_eq!(r.value(Signal::ReadyReplicas), Some(3.0));

        let renamed = format!(
            "{old}# TYPE llm_d_epp_scheduler_attempts_total counter\n\
             llm_d_epp_scheduler_attempts_total{{status=\"success\",target_model_name=\"m\",endpoint_name=\"p\",namespace=\"n\",port=\"8000\"}} 12\n\
             # TYPE llm_d_epp_ready_endpoints gauge\nllm_d_epp_ready_endpoints{{name=\"pool\"}} 4\n\
             # TYPE llm_d_epp_average_queue_size gauge\nllm_d_epp_average_queue_size{{name=\"pool\"}} 1.5\n\
             # TYPE inference_pool_average_queue_size gauge\ninference_pool_average_queue_size{{name=\"pool\"}} 1.5\n"
        );
        let r = read(&parse(&renamed), None, "llm-d").unwrap();
        let Some(Reading::ByLabel(by)) = r.readings.get(&Signal::SchedulingAttempts) else {
            panic!("no attempts: {r:?}");
        };
        assert_eq!(by.len(), 1, "the twin's counts are not added: {by:?}");
        assert_eq!(by.get("success"), Some(&12.0));
        assert_eq!(r.value(Signal::ReadyReplicas), Some(4.0));
        assert_eq!(
            r.value(Signal::RequestsWaiting),
            Some(1.5),
            "one twin, not both"
        );
    }

    /// One short exposition per other server, in the names research/server_signals.md §6 records.
    #[test]
    fn every_dialect_is_detected_and_read_from_its_own_names() {
        let cases: [(&str, Dialect, Signal, f64); 7] = [
            (
                "# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs{model_name=\"m\",tp_rank=\"0\"} 7\n\
                 # TYPE sglang:token_usage gauge\nsglang:token_usage{model_name=\"m\"} 0.93\n",
                Dialect::Sglang,
                Signal::RequestsWaiting,
                7.0,
            ),
            (
                "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 12\n",
                Dialect::Tgi,
                Signal::RequestsRunning,
                12.0,
            ),
            (
                "# TYPE trtllm_kv_cache_max_blocks gauge\ntrtllm_kv_cache_max_blocks 1000\n\
                 # TYPE trtllm_kv_cache_tokens_per_block gauge\ntrtllm_kv_cache_tokens_per_block 32\n",
                Dialect::TrtllmServe,
                Signal::KvCapacityTokens,
                32_000.0,
            ),
            (
                "# TYPE nv_trt_llm_request_metrics gauge\n\
                 nv_trt_llm_request_metrics{model=\"ensemble\",request_type=\"waiting\",version=\"1\"} 4\n\
                 nv_trt_llm_request_metrics{model=\"ensemble\",request_type=\"scheduled\",version=\"1\"} 9\n\
                 # TYPE nv_trt_llm_kv_cache_block_metrics gauge\n\
                 nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\",model=\"m\",version=\"1\"} 200\n\
                 nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"tokens_per\",model=\"m\",version=\"1\"} 64\n",
                Dialect::Triton,
                Signal::KvCapacityTokens,
                12_800.0,
            ),
            (
                "# TYPE inference_pool_average_queue_size gauge\ninference_pool_average_queue_size{name=\"pool\"} 2.5\n",
                Dialect::LlmdEpp,
                Signal::RequestsWaiting,
                2.5,
            ),
            (
                "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 2\n",
                Dialect::LlamaCpp,
                Signal::RequestsWaiting,
                2.0,
            ),
            (
                "# TYPE vllm:num_requests_waiting_by_reason gauge\n\
                 vllm:num_requests_waiting_by_reason{engine=\"0\",model_name=\"m\",reason=\"capacity\"} 5\n\
                 vllm:num_requests_waiting_by_reason{engine=\"0\",model_name=\"m\",reason=\"deferred\"} 1\n",
                Dialect::VllmV1,
                Signal::RequestsWaitingCapacity,
                5.0,
            ),
        ];
        for (text, dialect, signal, value) in cases {
            let scrape = parse(text);
            assert!(scrape.errors.is_empty(), "{:?}", scrape.errors);
            assert_eq!(detect(&scrape), Some(dialect), "{text}");
            let r = read(&scrape, None, "case").unwrap();
            assert_eq!(r.value(signal), Some(value), "{dialect:?} {signal:?}");
        }
        let gpu = parse("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 87\n");
        assert_eq!(detect(&gpu), Some(Dialect::Dcgm));
        assert!(read(&gpu, None, "dcgm").unwrap().readings.is_empty());
    }
}
