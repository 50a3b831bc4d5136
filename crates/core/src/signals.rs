//! The server-side concepts every dialect maps to (DESIGN.md §5), so the diagnosis reads "KV usage" or "queue
//! time" without knowing that vLLM, SGLang, TGI, llama.cpp and TensorRT-LLM each spell them differently.

use std::collections::BTreeMap;

/// How several series of one signal combine into one number, in a scrape, across replicas and in PromQL alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Across {
    /// A share (0–1): averaged, since a sum is no share at all (two engines at 60% KV are not at 120%).
    Average,
    /// An amount (requests, tokens, seconds): added up.
    Add,
    /// One count every series reports alike (the ready replicas each endpoint-picker replica of a pool counts):
    /// the largest, never a sum.
    Same,
}

impl Across {
    /// The PromQL aggregation operator.
    pub fn promql(self) -> &'static str {
        match self {
            Across::Average => "avg",
            Across::Add => "sum",
            Across::Same => "max",
        }
    }

    /// The values as one number; `None` for none. A NaN among them makes the whole NaN, whatever the rule: one
    /// series that could not say is no reason to trust the others' sum, mean or largest.
    pub fn combine(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        let (count, sum, max) =
            values
                .into_iter()
                .fold((0usize, 0.0, f64::NEG_INFINITY), |(n, total, most), v| {
                    // `f64::max` passes over a NaN; the rule above keeps it.
                    let most = if v.is_nan() || most.is_nan() {
                        f64::NAN
                    } else {
                        most.max(v)
                    };
                    (n + 1, total + v, most)
                });
        (count > 0).then(|| match self {
            Across::Average => sum / count as f64,
            Across::Add => sum,
            Across::Same => max,
        })
    }
}

/// One concept a server may report about itself.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Ttft,
    Itl,
    Tpot,
    E2e,
    QueueTime,
    PrefillTime,
    DecodeTime,
    RequestsRunning,
    RequestsWaiting,
    /// Waiting for KV blocks or a sequence slot (vLLM's `reason="capacity"`).
    RequestsWaitingCapacity,
    /// Held back by the scheduler on purpose, e.g. long prefills (`reason="deferred"`).
    RequestsWaitingDeferred,
    /// 0–1.
    KvUsage,
    KvCapacityTokens,
    /// Tokens the KV cache holds now (SGLang's `num_used_tokens`).
    KvUsedTokens,
    /// KV blocks forced by vLLM's `--num-gpu-blocks-override` (a `cache_config_info` label), which sizes the cache
    /// whatever the memory allows.
    KvBlocksOverride,
    /// The most requests the engine runs at once: llama.cpp's slots (`/props` `total_slots`).
    MaxRunning,
    Preemptions,
    PromptTokens,
    GenerationTokens,
    PrefixCacheQueries,
    PrefixCacheHits,
    /// 0–1, as a server computes it itself (SGLang's `cache_hit_rate` gauge).
    PrefixCacheHitRate,
    /// Tokens per second the server reports itself (llama.cpp's averages, SGLang's `gen_throughput`).
    PromptThroughput,
    GenerationThroughput,
    /// By finish reason.
    RequestsFinished,
    /// Speculative decoding: draft steps, tokens drafted and tokens of them accepted (vLLM's
    /// `vllm:spec_decode_num_*_total`); accepted / drafted is the acceptance rate.
    SpecDrafts,
    SpecDraftTokens,
    SpecAcceptedTokens,
    /// llm-d's endpoint picker (a gateway, not an engine): how long choosing a replica took per request.
    SchedulingLatency,
    /// Time requests waited in the endpoint picker's flow-control queue before it dispatched them to a replica.
    GatewayQueueTime,
    /// Replicas the endpoint picker counts ready in its pool.
    ReadyReplicas,
    /// The endpoint picker's scheduling attempts by `status` (success, failure: no replica could take it).
    SchedulingAttempts,
    /// Prefill/decode disaggregation: each KV transfer's duration on the receiving replica (vLLM's
    /// `vllm:nixl_xfer_time_seconds`).
    KvTransferTime,
    /// Bytes those transfers moved (the sum of `vllm:nixl_bytes_transferred`).
    KvTransferBytes,
    /// KV transfers that failed (`vllm:nixl_num_failed_transfers`).
    KvTransferFailures,
}

/// How a signal's numbers behave over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Seconds, as cumulative buckets: quantiles come from bucket rates over a window.
    Histogram,
    Gauge,
    /// Only grows (resets on restart): rates and increases over a window.
    Counter,
}

impl Signal {
    pub const ALL: [Signal; 35] = [
        Signal::Ttft,
        Signal::Itl,
        Signal::Tpot,
        Signal::E2e,
        Signal::QueueTime,
        Signal::PrefillTime,
        Signal::DecodeTime,
        Signal::RequestsRunning,
        Signal::RequestsWaiting,
        Signal::RequestsWaitingCapacity,
        Signal::RequestsWaitingDeferred,
        Signal::KvUsage,
        Signal::KvCapacityTokens,
        Signal::KvUsedTokens,
        Signal::KvBlocksOverride,
        Signal::MaxRunning,
        Signal::Preemptions,
        Signal::PromptTokens,
        Signal::GenerationTokens,
        Signal::PrefixCacheQueries,
        Signal::PrefixCacheHits,
        Signal::PrefixCacheHitRate,
        Signal::PromptThroughput,
        Signal::GenerationThroughput,
        Signal::RequestsFinished,
        Signal::SpecDrafts,
        Signal::SpecDraftTokens,
        Signal::SpecAcceptedTokens,
        Signal::SchedulingLatency,
        Signal::GatewayQueueTime,
        Signal::ReadyReplicas,
        Signal::SchedulingAttempts,
        Signal::KvTransferTime,
        Signal::KvTransferBytes,
        Signal::KvTransferFailures,
    ];

    pub fn kind(self) -> SignalKind {
        use Signal::*;
        match self {
            Ttft | Itl | Tpot | E2e | QueueTime | PrefillTime | DecodeTime | SchedulingLatency
            | GatewayQueueTime | KvTransferTime => SignalKind::Histogram,
            RequestsRunning
            | RequestsWaiting
            | RequestsWaitingCapacity
            | RequestsWaitingDeferred
            | KvUsage
            | KvCapacityTokens
            | KvUsedTokens
            | KvBlocksOverride
            | MaxRunning
            | PrefixCacheHitRate
            | PromptThroughput
            | GenerationThroughput
            | ReadyReplicas => SignalKind::Gauge,
            Preemptions | PromptTokens | GenerationTokens | PrefixCacheQueries
            | PrefixCacheHits | RequestsFinished | SpecDrafts | SpecDraftTokens
            | SpecAcceptedTokens | SchedulingAttempts | KvTransferBytes | KvTransferFailures => {
                SignalKind::Counter
            }
        }
    }

    /// How the series of several engines, models, replicas or pods make one number for this signal.
    pub fn across(self) -> Across {
        match self {
            Signal::KvUsage | Signal::PrefixCacheHitRate => Across::Average,
            Signal::ReadyReplicas => Across::Same,
            _ => Across::Add,
        }
    }

    /// The canonical name, as in reports and JSON.
    pub fn name(self) -> &'static str {
        use Signal::*;
        match self {
            Ttft => "ttft",
            Itl => "itl",
            Tpot => "tpot",
            E2e => "e2e",
            QueueTime => "queue_time",
            PrefillTime => "prefill_time",
            DecodeTime => "decode_time",
            RequestsRunning => "requests_running",
            RequestsWaiting => "requests_waiting",
            RequestsWaitingCapacity => "requests_waiting_capacity",
            RequestsWaitingDeferred => "requests_waiting_deferred",
            KvUsage => "kv_usage",
            KvCapacityTokens => "kv_capacity_tokens",
            KvUsedTokens => "kv_used_tokens",
            KvBlocksOverride => "kv_blocks_override",
            MaxRunning => "max_running",
            Preemptions => "preemptions",
            PromptTokens => "prompt_tokens",
            GenerationTokens => "generation_tokens",
            PrefixCacheQueries => "prefix_cache_queries",
            PrefixCacheHits => "prefix_cache_hits",
            PrefixCacheHitRate => "prefix_cache_hit_rate",
            PromptThroughput => "prompt_throughput",
            GenerationThroughput => "generation_throughput",
            RequestsFinished => "requests_finished",
            SpecDrafts => "spec_decode_drafts",
            SpecDraftTokens => "spec_decode_draft_tokens",
            SpecAcceptedTokens => "spec_decode_accepted_tokens",
            SchedulingLatency => "scheduling_latency",
            GatewayQueueTime => "gateway_queue_time",
            ReadyReplicas => "ready_replicas",
            SchedulingAttempts => "scheduling_attempts",
            KvTransferTime => "kv_transfer_time",
            KvTransferBytes => "kv_transfer_bytes",
            KvTransferFailures => "kv_transfer_failures",
        }
    }
}

/// Cumulative histogram buckets as a server exposes them, in seconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Buckets {
    /// (upper bound, cumulative count), ascending by bound, the last one `+Inf`.
    #[serde(
        serialize_with = "crate::serde_float::serialize_bounds",
        deserialize_with = "crate::serde_float::deserialize_bounds"
    )]
    pub bounds: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// What one scrape says about one signal, over the server's engines and models, combined as [`Signal::across`]
/// says.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    Value(f64),
    Histogram(Buckets),
    /// Per label value, e.g. finished requests by reason.
    ByLabel(BTreeMap<String, f64>),
}

impl Reading {
    /// The single number of a gauge or counter, or the total over labels.
    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Value(v) => Some(*v),
            Reading::ByLabel(by) => Some(by.values().sum()),
            Reading::Histogram(_) => None,
        }
    }
}

/// One scrape in canonical terms.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerReadings {
    /// The dialect the names were read in (e.g. `vllm_v1`).
    pub dialect: String,
    /// The models served, from the `model_name` labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Data-parallel engines behind the one endpoint (vLLM's `engine` label), when more than one: their amounts
    /// (running, KV capacity) are added up, while settings such as `max_num_seqs` hold per engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<u32>,
    pub readings: BTreeMap<Signal, Reading>,
    /// The labels of vLLM's `vllm:cache_config_info` (the engine's cache settings as text: `block_size`,
    /// `enable_prefix_caching`, `cache_dtype`, `gpu_memory_utilization`, …), of its first engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_config: BTreeMap<String, String>,
    /// What the scrape left uncertain (a histogram without its `+Inf` bucket), said so the numbers are not
    /// taken for more than they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ServerReadings {
    pub fn get(&self, signal: Signal) -> Option<&Reading> {
        self.readings.get(&signal)
    }

    pub fn value(&self, signal: Signal) -> Option<f64> {
        self.get(signal).and_then(Reading::value)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaugeStats {
    /// `avg_over_time`: the plain mean of the scraped values.
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub min: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub max: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub last: f64,
}

impl GaugeStats {
    /// A gauge seen at one value only: one scrape, a fact from `/props`, or NaN for "not known yet".
    pub fn constant(v: f64) -> GaugeStats {
        GaugeStats {
            mean: v,
            min: v,
            max: v,
            last: v,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterStats {
    /// Growth over the window, counter resets handled.
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub increase: f64,
    /// `increase` / window length, per second.
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub rate: f64,
    /// Per label value where the counter has one (finished requests by reason).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_label: BTreeMap<String, f64>,
}

/// Seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistogramStats {
    /// Observations in the window.
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub count: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub p50: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub p90: f64,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub p99: f64,
    /// The quantiles above ("p50", "p90", "p99") that the buckets only bound, although PromQL gives a number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, QuantileLimit>,
}

/// What the buckets really say about a quantile PromQL turns into a number at a histogram's edges.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantileLimit {
    /// It fell in the first bucket: PromQL interpolates from 0, but the value is only known to be at most
    /// this bound (vLLM's queue time p50 reads "150 ms" for a queue of microseconds, its first bucket being 300 ms).
    AtMost(f64),
    /// It fell in the +Inf bucket: PromQL returns the highest finite bound, and the value is at least that.
    AtLeast(f64),
}

impl HistogramStats {
    /// Each quantile by name, with its limit where the buckets only bound it.
    pub fn quantiles(&self) -> [(&'static str, f64, Option<QuantileLimit>); 3] {
        [("p50", self.p50), ("p90", self.p90), ("p99", self.p99)]
            .map(|(name, value)| (name, value, self.limits.get(name).copied()))
    }
}

/// A run's server-side view.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerWindow {
    pub dialect: String,
    /// The models served, from the `model_name` labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Data-parallel engines whose amounts were added up, when more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<u32>,
    /// Seconds on the run clock of the first and last usable scrape.
    pub start: f64,
    pub end: f64,
    pub scrapes: usize,
    /// The scrapes' times are unknown (files sharing one modification time, no `--interval`): peaks, increases
    /// and quantiles need no clock and hold; rates and the window's length do not, and are left unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_clock: bool,
    /// The last scrape's `vllm:cache_config_info` labels, where it had them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_config: BTreeMap<String, String>,
    pub gauges: BTreeMap<Signal, GaugeStats>,
    pub counters: BTreeMap<Signal, CounterStats>,
    pub histograms: BTreeMap<Signal, HistogramStats>,
}

impl ServerWindow {
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }

    pub fn gauge(&self, signal: Signal) -> Option<&GaugeStats> {
        self.gauges.get(&signal)
    }

    pub fn counter(&self, signal: Signal) -> Option<&CounterStats> {
        self.counters.get(&signal)
    }

    pub fn histogram(&self, signal: Signal) -> Option<&HistogramStats> {
        self.histograms.get(&signal)
    }

    /// Prefix-cache hits over lookups in the window, else the mean of the server's own hit-rate gauge (SGLang).
    pub fn prefix_cache_hit_rate(&self) -> Option<f64> {
        let counted = self
            .counter(Signal::PrefixCacheHits)
            .zip(self.counter(Signal::PrefixCacheQueries))
            .filter(|(_, queries)| queries.increase > 0.0)
            .map(|(hits, queries)| hits.increase / queries.increase);
        counted
            .or_else(|| self.gauge(Signal::PrefixCacheHitRate).map(|g| g.mean))
            .filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_series_combine_by_their_rule_and_a_nan_spoils_each() {
        let values = [0.2, 0.6, 0.4];
        assert!((Across::Average.combine(values).unwrap() - 0.4).abs() < 1e-12);
        assert!((Across::Add.combine(values).unwrap() - 1.2).abs() < 1e-12);
        assert_eq!(Across::Same.combine(values), Some(0.6));
        for across in [Across::Average, Across::Add, Across::Same] {
            assert!(
                across.combine([3.0, f64::NAN, 1.0]).unwrap().is_nan(),
                "{across:?}"
            );
            assert_eq!(across.combine([]), None, "{across:?}");
        }
    }
}
