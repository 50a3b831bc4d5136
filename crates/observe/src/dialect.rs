//! Server dialects → canonical signals: which metric each server (and each version of it) uses for each concept
//! of DESIGN.md §5, detected from the names in a scrape, so the diagnosis never needs to know a server's words.

use std::collections::BTreeMap;
use std::str::FromStr;

use infer_doctor_core::{Buckets, Reading, ServerReadings, Signal};

use crate::exposition::{Family, Scrape};

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
            ],
            Dialect::Dcgm => &["DCGM_FI_", "DCGM_EXP_"],
        }
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Dialect, String> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Dialect::ALL
            .into_iter()
            .find(|d| d.name() == wanted || (wanted == "vllm" && *d == Dialect::VllmV1))
            .ok_or_else(|| {
                let known: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dialect `{s}`; one of {}", known.join(", "))
            })
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
    let found = Dialect::ALL.into_iter().find(|d| {
        names
            .clone()
            .any(|n| d.prefixes().iter().any(|p| n.starts_with(p)))
    })?;
    if found == Dialect::VllmV1 && names.clone().any(|n| VLLM_V0_ONLY.contains(&n)) {
        return Some(Dialect::VllmV0);
    }
    Some(found)
}

/// Where one signal comes from in one dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    /// The first of these families present; histograms in seconds, others summed over their series.
    Family(&'static [&'static str]),
    /// A histogram in milliseconds.
    HistogramMs(&'static str),
    /// The series of a family whose label `key` has `value`, summed.
    Labeled(&'static str, &'static str, &'static str),
    /// Per value of label `key` (e.g. finished requests by reason).
    ByLabel(&'static str, &'static str),
    /// An info metric's two numeric labels, multiplied (blocks × tokens per block).
    InfoProduct(&'static str, &'static str, &'static str),
    /// Two gauges multiplied.
    Product(&'static str, &'static str),
    /// Two series of one family picked by a label, multiplied (Triton's max blocks × tokens per block).
    LabeledProduct(&'static str, &'static str, &'static str, &'static str),
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
        InfoProduct("vllm:cache_config_info", "num_gpu_blocks", "block_size"),
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
];

const TRTLLM_SERVE: &[(Signal, Source)] = &[
    (
        S::Ttft,
        Family(&[
            "trtllm_time_to_first_token_seconds",
            "time_to_first_token_seconds",
        ]),
    ),
    (S::Tpot, Family(&["trtllm_time_per_output_token_seconds"])),
    (S::E2e, Family(&["trtllm_e2e_request_latency_seconds"])),
    (S::QueueTime, Family(&["trtllm_request_queue_time_seconds"])),
    (S::RequestsRunning, Family(&["trtllm_num_requests_running"])),
    (S::RequestsWaiting, Family(&["trtllm_num_requests_waiting"])),
    (S::KvUsage, Family(&["trtllm_kv_cache_utilization"])),
    (
        S::KvCapacityTokens,
        Product(
            "trtllm_kv_cache_max_blocks",
            "trtllm_kv_cache_tokens_per_block",
        ),
    ),
    (S::PromptTokens, Family(&["trtllm_prompt_tokens_total"])),
    (
        S::GenerationTokens,
        Family(&["trtllm_generation_tokens_total"]),
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
        LabeledProduct(
            "nv_trt_llm_kv_cache_block_metrics",
            "kv_cache_block_type",
            "max",
            "tokens_per",
        ),
    ),
];

const LLMD_EPP: &[(Signal, Source)] = &[
    (
        S::Ttft,
        Family(&["inference_objective_request_ttft_seconds"]),
    ),
    (
        S::Tpot,
        Family(&["inference_objective_request_tpot_seconds"]),
    ),
    (
        S::E2e,
        Family(&[
            "inference_objective_request_duration_seconds",
            "inference_model_request_duration_seconds",
        ]),
    ),
    (
        S::RequestsRunning,
        Family(&[
            "inference_pool_average_running_requests",
            "inference_objective_running_requests",
        ]),
    ),
    (
        S::RequestsWaiting,
        Family(&["inference_pool_average_queue_size"]),
    ),
    (
        S::KvUsage,
        Family(&["inference_pool_average_kv_cache_utilization"]),
    ),
];

pub(crate) fn mapping(dialect: Dialect) -> &'static [(Signal, Source)] {
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
/// errors. Signals the server does not expose are simply absent.
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
    let families: BTreeMap<&str, &Family<'_>> =
        scrape.families.iter().map(|f| (f.name, f)).collect();
    let mut readings = BTreeMap::new();
    for &(signal, from) in mapping(dialect) {
        if let Some(reading) = extract(&families, from) {
            readings.insert(signal, reading);
        }
    }
    Ok(ServerReadings {
        dialect: dialect.name().to_string(),
        readings,
    })
}

fn extract(families: &BTreeMap<&str, &Family<'_>>, from: Source) -> Option<Reading> {
    let labeled_sum = |name: &str, key: &str, value: &str| {
        let family = families.get(name)?;
        let matching: Vec<f64> = family
            .samples
            .iter()
            .filter(|s| label(s, key) == Some(value))
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum::<f64>())
    };
    match from {
        Family(names) => {
            let family = names.iter().find_map(|n| families.get(n))?;
            Some(family_reading(family, 1.0))
        }
        HistogramMs(name) => Some(family_reading(families.get(name)?, 1e-3)),
        Labeled(name, key, value) => labeled_sum(name, key, value).map(Reading::Value),
        ByLabel(name, key) => {
            let family = families.get(name)?;
            let mut by: BTreeMap<String, f64> = BTreeMap::new();
            for s in &family.samples {
                if let Some(v) = label(s, key) {
                    *by.entry(v.to_string()).or_default() += s.value;
                }
            }
            Some(Reading::ByLabel(by))
        }
        InfoProduct(name, a, b) => {
            let family = families.get(name)?;
            let total: f64 = family
                .samples
                .iter()
                .filter_map(|s| {
                    let x: f64 = label(s, a)?.parse().ok()?;
                    let y: f64 = label(s, b)?.parse().ok()?;
                    Some(x * y)
                })
                .sum();
            (total > 0.0).then_some(Reading::Value(total))
        }
        Product(a, b) => {
            let sum = |n: &str| {
                Some(
                    families
                        .get(n)?
                        .samples
                        .iter()
                        .map(|s| s.value)
                        .sum::<f64>(),
                )
            };
            Some(Reading::Value(sum(a)? * sum(b)?))
        }
        LabeledProduct(name, key, a, b) => Some(Reading::Value(
            labeled_sum(name, key, a)? * labeled_sum(name, key, b)?,
        )),
    }
}

fn label<'s>(sample: &'s crate::exposition::Sample<'_>, key: &str) -> Option<&'s str> {
    sample
        .labels
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_ref())
}

/// A family as one reading: histogram buckets merged over series (bounds scaled to seconds), or the sum of a
/// gauge's or counter's series.
fn family_reading(family: &Family<'_>, scale: f64) -> Reading {
    if matches!(
        family.kind,
        crate::exposition::MetricType::Histogram | crate::exposition::MetricType::GaugeHistogram
    ) {
        let mut bounds: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let (mut sum, mut count) = (0.0, 0.0);
        for s in &family.samples {
            let suffix = &s.name[family.name.len().min(s.name.len())..];
            match suffix {
                "_bucket" => {
                    let Some(le) = label(s, "le").and_then(parse_bound) else {
                        continue;
                    };
                    let le = le * scale;
                    // Keyed by the bound's bits so equal bounds from different series merge.
                    let entry = bounds.entry(ordered_bits(le)).or_insert((le, 0.0));
                    entry.1 += s.value;
                }
                "_sum" => sum += s.value * scale,
                "_count" => count += s.value,
                _ => {}
            }
        }
        return Reading::Histogram(Buckets {
            bounds: bounds.into_values().collect(),
            sum,
            count,
        });
    }
    let total: f64 = family
        .samples
        .iter()
        .filter(|s| !s.name.ends_with("_created"))
        .map(|s| s.value)
        .sum();
    Reading::Value(total)
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
