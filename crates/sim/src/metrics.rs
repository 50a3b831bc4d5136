//! vLLM V1's Prometheus exposition, family by family (names, HELP, TYPE, labels, buckets, `_created`), so a
//! scraper cannot tell the simulator's `/metrics` from a real vLLM 0.32 server's and the diagnoser sees real data.

use std::fmt::{self, Write};

/// The `engine` label: the simulator is one data-parallel rank.
const ENGINE: &str = "0";

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const ITERATION_TOKENS_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
const PARAMS_N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
const PREEMPTIONS_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0];

/// vLLM's `build_1_2_5_buckets`: 1, 2, 5, 10, 20, 50, … while the bound stays within `max_value`.
pub fn one_two_five_buckets(max_value: u32) -> Vec<f64> {
    let max_value = f64::from(max_value);
    let mut bounds = Vec::new();
    let mut decade = 1.0_f64;
    loop {
        for mantissa in [1.0, 2.0, 5.0] {
            let bound = mantissa * decade;
            if bound > max_value {
                return bounds;
            }
            bounds.push(bound);
        }
        decade *= 10.0;
    }
}

/// Why a request left the engine, as the `finished_reason` label spells it (and serialized the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    Abort,
    Error,
    /// vLLM's repetition detector; the simulator never produces it, but the series exists from start-up.
    Repetition,
}

impl FinishReason {
    /// In the order vLLM registers the series.
    pub const ALL: [FinishReason; 5] = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::Abort,
        FinishReason::Error,
        FinishReason::Repetition,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
            FinishReason::Error => "error",
            FinishReason::Repetition => "repetition",
        }
    }
}

/// How far a request got before it finished; vLLM observes only the phase histograms it reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestTiming {
    /// Finished while still waiting (e.g. aborted before the scheduler picked it): no phase histograms.
    NeverScheduled,
    /// Scheduled, but finished before its first token (aborted or failed mid-prefill): queue time only.
    Scheduled { queue_s: f64 },
    /// Produced at least one token; phases are measured on the engine clock from the first SCHEDULED event
    /// (later re-schedules after preemption do not move it), so preempted time lands inside the phases.
    Completed {
        /// QUEUED → first SCHEDULED.
        queue_s: f64,
        /// First SCHEDULED → first token.
        prefill_s: f64,
        /// First token → last token.
        decode_s: f64,
        /// First SCHEDULED → last token.
        inference_s: f64,
    },
}

/// Everything vLLM records when a request finishes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FinishedRequest {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub generation_tokens: u32,
    /// The request's `max_tokens` parameter after the server filled in its default.
    pub max_tokens: u32,
    /// The request's `n` parameter.
    pub n: u32,
    /// Frontend arrival → finish, wall clock.
    pub e2e_s: f64,
    pub timing: RequestTiming,
    pub preemptions: u32,
    /// Prompt tokens served from the prefix cache when the request was first scheduled.
    pub cached_prompt_tokens: u32,
}

/// What the scheduler did in one engine step, beyond the tokens it emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Prompt tokens whose KV was computed this step: prefill chunks, recomputation after preemption included,
    /// prefix-cache hits excluded. vLLM credits these to `prompt_tokens` as each chunk completes.
    pub computed_prefill_tokens: u64,
    /// Requests preempted this step.
    pub preemptions: u64,
    /// New requests that looked up the prefix cache this step; resumed (preempted) requests do not count.
    pub prefix_cache_requests: u64,
    /// Prompt tokens those new requests looked up.
    pub prefix_cache_queries: u64,
    /// Of those, tokens found in the cache.
    pub prefix_cache_hits: u64,
}

/// The labels real vLLM puts on `vllm:cache_config_info` that depend on the configuration; the rest are fixed
/// at the values a plain full-attention GPU deployment shows.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfigInfo {
    pub block_size: u32,
    pub num_gpu_blocks: u64,
    pub gpu_memory_utilization: f64,
    pub enable_prefix_caching: bool,
    /// `auto`, `fp8`, `fp8_e4m3`, …
    pub cache_dtype: String,
    /// Set only when the user passed `--kv-cache-memory`.
    pub kv_cache_memory_bytes: Option<u64>,
    pub kv_cache_size_tokens: u64,
    pub kv_cache_max_concurrency: f64,
    pub num_gpu_blocks_override: Option<u64>,
    pub sliding_window: Option<u32>,
    pub user_specified_block_size: bool,
}

impl CacheConfigInfo {
    /// A full-attention model's cache as vLLM reports it: tokens = blocks × block size, concurrency = blocks
    /// over the blocks one `max_model_len` request needs.
    pub fn full_attention(
        block_size: u32,
        num_gpu_blocks: u64,
        gpu_memory_utilization: f64,
        max_model_len: u32,
    ) -> CacheConfigInfo {
        let blocks_per_request = u64::from(max_model_len.div_ceil(block_size.max(1))).max(1);
        CacheConfigInfo {
            block_size,
            num_gpu_blocks,
            gpu_memory_utilization,
            enable_prefix_caching: true,
            cache_dtype: "auto".to_owned(),
            kv_cache_memory_bytes: None,
            kv_cache_size_tokens: num_gpu_blocks.saturating_mul(u64::from(block_size)),
            kv_cache_max_concurrency: num_gpu_blocks as f64 / blocks_per_request as f64,
            num_gpu_blocks_override: None,
            sliding_window: None,
            user_specified_block_size: false,
        }
    }

    /// The whole sample line; it never changes after start-up, so it is built once.
    fn sample_line(&self) -> String {
        let py_bool = |b: bool| if b { "True" } else { "False" };
        let py_option = |v: Option<u64>| v.map_or_else(|| "None".to_owned(), |n| n.to_string());
        let mut utilization = String::new();
        let mut concurrency = String::new();
        // Writing into a String cannot fail.
        let _ = write_python_float(&mut utilization, self.gpu_memory_utilization);
        let _ = write_python_float(&mut concurrency, self.kv_cache_max_concurrency);
        let block_size = self.block_size.to_string();
        let labels: [(&str, String); 37] = [
            ("_block_size_resolved", "True".to_owned()),
            ("block_size", block_size.clone()),
            ("cache_dtype", escape_label_value(&self.cache_dtype)),
            ("cache_hit_alignment_tokens", "None".to_owned()),
            ("effective_attention_block_size", block_size),
            ("enable_mamba_shared_prefix_checkpoint", "False".to_owned()),
            (
                "enable_prefix_caching",
                py_bool(self.enable_prefix_caching).to_owned(),
            ),
            ("engine", ENGINE.to_owned()),
            ("gpu_memory_utilization", utilization),
            ("hash_block_size", "None".to_owned()),
            ("is_attention_free", "False".to_owned()),
            ("kv_cache_dtype_skip_layers", "[]".to_owned()),
            ("kv_cache_layout", "None".to_owned()),
            ("kv_cache_max_concurrency", concurrency),
            (
                "kv_cache_memory_bytes",
                py_option(self.kv_cache_memory_bytes),
            ),
            (
                "kv_cache_size_tokens",
                self.kv_cache_size_tokens.to_string(),
            ),
            ("kv_offloading_backend", "native".to_owned()),
            ("kv_offloading_size", "None".to_owned()),
            ("kv_sharing_fast_prefill", "False".to_owned()),
            ("mamba_block_size", "None".to_owned()),
            ("mamba_cache_dtype", "auto".to_owned()),
            ("mamba_cache_mode", "none".to_owned()),
            ("mamba_page_size_padded", "None".to_owned()),
            ("mamba_ssm_cache_dtype", "float32".to_owned()),
            ("num_cpu_blocks", "None".to_owned()),
            ("num_gpu_blocks", self.num_gpu_blocks.to_string()),
            (
                "num_gpu_blocks_override",
                py_option(self.num_gpu_blocks_override),
            ),
            ("prefix_cache_retention_interval", "0".to_owned()),
            ("prefix_caching_hash_algo", "sha256".to_owned()),
            ("prefix_match_unit", "None".to_owned()),
            ("replayssm_buffer_len", "16".to_owned()),
            ("skip_page_size_padded", "None".to_owned()),
            (
                "sliding_window",
                py_option(self.sliding_window.map(u64::from)),
            ),
            ("swa_bounded_replay", "True".to_owned()),
            ("use_kda_recoverssm", "False".to_owned()),
            ("use_replayssm", "False".to_owned()),
            (
                "user_specified_block_size",
                py_bool(self.user_specified_block_size).to_owned(),
            ),
        ];
        // Keys in the sorted order prometheus_client writes them; vLLM puts no `model_name` on this gauge.
        let mut line = String::from("vllm:cache_config_info{");
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let _ = write!(line, "{key}=\"{value}\"");
        }
        line.push_str("} 1.0\n");
        line
    }
}

/// A histogram's counts as a Prometheus client keeps them, whatever its labels and text format.
#[derive(Clone, Debug)]
pub(crate) struct Buckets {
    bounds: Vec<f64>,
    /// Per-bucket (not cumulative) counts; one more than `bounds` for `+Inf`.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Buckets {
    pub(crate) fn new(bounds: &[f64]) -> Buckets {
        Buckets {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }

    /// Non-finite values are dropped: one NaN would poison `_sum` for the life of the server.
    pub(crate) fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        // Prometheus clients put a value in the first bucket whose bound is >= it.
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        if let Some(slot) = self.counts.get_mut(bucket) {
            *slot += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// Each upper bound (`+Inf` last) with the count at or below it.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(move |(bound, count)| {
                total += count;
                (bound, total)
            })
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }
}

/// One histogram series (fixed `engine`/`model_name` labels), with its bucket line prefixes built once so a
/// render only appends counts.
#[derive(Clone, Debug)]
struct Histogram {
    buckets: Buckets,
    bucket_prefixes: Vec<String>,
}

impl Histogram {
    fn new(name: &str, bounds: &[f64], model_label: &str) -> Histogram {
        let mut bucket_prefixes = Vec::with_capacity(bounds.len() + 1);
        for bound in bounds.iter().copied().chain([f64::INFINITY]) {
            let mut le = String::new();
            let _ = write_go_float(&mut le, bound);
            bucket_prefixes.push(format!(
                "{name}_bucket{{engine=\"{ENGINE}\",le=\"{le}\",model_name=\"{model_label}\"}} "
            ));
        }
        Histogram {
            buckets: Buckets::new(bounds),
            bucket_prefixes,
        }
    }

    fn observe(&mut self, value: f64) {
        self.buckets.observe(value);
    }
}

/// The registry the engine feeds and `/metrics` renders: vLLM V1's `PrometheusStatLogger` for one engine.
#[derive(Clone, Debug)]
pub struct VllmMetrics {
    /// `model_name` label value, already escaped for the exposition.
    model_label: String,
    start_unix_s: f64,
    cache_config_line: String,

    running: u64,
    waiting_capacity: u64,
    waiting_deferred: u64,
    kv_usage: f64,

    prefix_cache_queries: u64,
    prefix_cache_hits: u64,
    preemptions: u64,
    prompt_tokens: u64,
    prompt_tokens_local_compute: u64,
    prompt_tokens_local_cache_hit: u64,
    prompt_tokens_cached: u64,
    generation_tokens: u64,
    finished_by_reason: [u64; FinishReason::ALL.len()],

    /// Prompt lengths of requests whose first token came in the current step; vLLM's per-iteration prompt
    /// count still charges the whole prompt at first output.
    step_prompt_tokens: u64,
    step_generation_tokens: u64,

    request_prompt_tokens: Histogram,
    request_generation_tokens: Histogram,
    iteration_tokens: Histogram,
    request_max_num_generation_tokens: Histogram,
    request_params_n: Histogram,
    request_params_max_tokens: Histogram,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
    request_time_per_output_token: Histogram,
    e2e_request_latency: Histogram,
    request_queue_time: Histogram,
    request_inference_time: Histogram,
    request_prefill_time: Histogram,
    request_decode_time: Histogram,
    request_num_preemptions: Histogram,
    request_prefill_kv_computed_tokens: Histogram,
    /// vLLM's NIXL connector families, on a decode replica that pulls KV from prefill replicas.
    nixl: Option<Box<NixlMetrics>>,
}

/// `NixlPromMetrics` (vLLM `kv_connector/v1/nixl/stats.py`): per transfer its duration, post time, bytes and
/// descriptors, and the failed transfers and notifications.
#[derive(Clone, Debug)]
struct NixlMetrics {
    xfer_time: Histogram,
    post_time: Histogram,
    bytes_transferred: Histogram,
    num_descriptors: Histogram,
    failed_transfers: u64,
    failed_notifications: u64,
}

/// `NixlPromMetrics`' time buckets; the transfer time uses them without the first.
const NIXL_TIME_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0,
];
const NIXL_DESCRIPTOR_BUCKETS: &[f64] = &[
    10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 400.0, 1000.0, 2000.0, 4000.0, 10000.0, 20000.0,
    50000.0,
];

/// One KV transfer as the NIXL connector records it on the receiving side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvTransfer {
    pub seconds: f64,
    pub post_seconds: f64,
    pub bytes: f64,
    pub descriptors: u64,
    pub failed: bool,
}

impl VllmMetrics {
    /// Once, at engine start-up; `start_unix_s` becomes every `_created` sample.
    pub fn new(
        model_name: &str,
        cache: CacheConfigInfo,
        max_model_len: u32,
        start_unix_s: f64,
    ) -> VllmMetrics {
        let model_label = escape_label_value(model_name);
        let token_buckets = one_two_five_buckets(max_model_len);
        let histogram = |name: &str, bounds: &[f64]| Histogram::new(name, bounds, &model_label);
        VllmMetrics {
            cache_config_line: cache.sample_line(),
            start_unix_s,
            running: 0,
            waiting_capacity: 0,
            waiting_deferred: 0,
            kv_usage: 0.0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            preemptions: 0,
            prompt_tokens: 0,
            prompt_tokens_local_compute: 0,
            prompt_tokens_local_cache_hit: 0,
            prompt_tokens_cached: 0,
            generation_tokens: 0,
            finished_by_reason: [0; FinishReason::ALL.len()],
            step_prompt_tokens: 0,
            step_generation_tokens: 0,
            request_prompt_tokens: histogram("vllm:request_prompt_tokens", &token_buckets),
            request_generation_tokens: histogram("vllm:request_generation_tokens", &token_buckets),
            iteration_tokens: histogram("vllm:iteration_tokens_total", ITERATION_TOKENS_BUCKETS),
            request_max_num_generation_tokens: histogram(
                "vllm:request_max_num_generation_tokens",
                &token_buckets,
            ),
            request_params_n: histogram("vllm:request_params_n", PARAMS_N_BUCKETS),
            request_params_max_tokens: histogram("vllm:request_params_max_tokens", &token_buckets),
            time_to_first_token: histogram("vllm:time_to_first_token_seconds", TTFT_BUCKETS),
            inter_token_latency: histogram("vllm:inter_token_latency_seconds", ITL_BUCKETS),
            request_time_per_output_token: histogram(
                "vllm:request_time_per_output_token_seconds",
                ITL_BUCKETS,
            ),
            e2e_request_latency: histogram(
                "vllm:e2e_request_latency_seconds",
                REQUEST_LATENCY_BUCKETS,
            ),
            request_queue_time: histogram(
                "vllm:request_queue_time_seconds",
                REQUEST_LATENCY_BUCKETS,
            ),
            request_inference_time: histogram(
                "vllm:request_inference_time_seconds",
                REQUEST_LATENCY_BUCKETS,
            ),
            request_prefill_time: histogram(
                "vllm:request_prefill_time_seconds",
                REQUEST_LATENCY_BUCKETS,
            ),
            request_decode_time: histogram(
                "vllm:request_decode_time_seconds",
                REQUEST_LATENCY_BUCKETS,
            ),
            request_num_preemptions: histogram("vllm:request_num_preemptions", PREEMPTIONS_BUCKETS),
            request_prefill_kv_computed_tokens: histogram(
                "vllm:request_prefill_kv_computed_tokens",
                &token_buckets,
            ),
            nixl: None,
            model_label,
        }
    }

    /// Registers the NIXL connector's families (a decode replica of a prefill/decode split).
    pub fn enable_nixl(&mut self) {
        // 2 KiB to 8 GiB in powers of four, as `NixlPromMetrics` spans its byte buckets.
        let byte_buckets: Vec<f64> = (1..25).step_by(2).map(|i| 2f64.powi(10 + i)).collect();
        let histogram =
            |name: &str, bounds: &[f64]| Histogram::new(name, bounds, &self.model_label);
        self.nixl = Some(Box::new(NixlMetrics {
            xfer_time: histogram("vllm:nixl_xfer_time_seconds", &NIXL_TIME_BUCKETS[1..]),
            post_time: histogram("vllm:nixl_post_time_seconds", NIXL_TIME_BUCKETS),
            bytes_transferred: histogram("vllm:nixl_bytes_transferred", &byte_buckets),
            num_descriptors: histogram("vllm:nixl_num_descriptors", NIXL_DESCRIPTOR_BUCKETS),
            failed_transfers: 0,
            failed_notifications: 0,
        }));
    }

    /// A KV transfer this replica pulled; a failed one counts only as a failure (vLLM then recomputes).
    pub fn observe_kv_transfer(&mut self, transfer: &KvTransfer) {
        let Some(nixl) = self.nixl.as_mut() else {
            return;
        };
        if transfer.failed {
            nixl.failed_transfers += 1;
            return;
        }
        nixl.xfer_time.observe(transfer.seconds);
        nixl.post_time.observe(transfer.post_seconds);
        nixl.bytes_transferred.observe(transfer.bytes);
        nixl.num_descriptors.observe(transfer.descriptors as f64);
    }

    /// When a request emits its first token (also counts that token as generated); `ttft_s` is frontend arrival → now.
    pub fn observe_first_token(
        &mut self,
        ttft_s: f64,
        prompt_tokens: u32,
        cached_prompt_tokens: u32,
    ) {
        let cached = u64::from(cached_prompt_tokens.min(prompt_tokens));
        self.time_to_first_token.observe(ttft_s);
        // The computed part of the prompt was credited chunk by chunk in `observe_step`; only the cache
        // reuse is credited at first output.
        self.prompt_tokens = self.prompt_tokens.saturating_add(cached);
        self.prompt_tokens_local_cache_hit += cached;
        self.prompt_tokens_cached += cached;
        self.step_prompt_tokens += u64::from(prompt_tokens);
        self.count_generated_token();
    }

    /// When a request emits any later token, including the first one after a preemption; `itl_s` is the gap
    /// since its previous token.
    pub fn observe_later_token(&mut self, itl_s: f64) {
        self.inter_token_latency.observe(itl_s);
        self.count_generated_token();
    }

    fn count_generated_token(&mut self) {
        self.generation_tokens += 1;
        self.step_generation_tokens += 1;
    }

    /// Once per engine step, after that step's token and finish observations: closes the iteration.
    pub fn observe_step(&mut self, step: &StepStats) {
        // Saturating: a caller's absurd count must not panic a server that is being scraped.
        self.prompt_tokens = self
            .prompt_tokens
            .saturating_add(step.computed_prefill_tokens);
        self.prompt_tokens_local_compute = self
            .prompt_tokens_local_compute
            .saturating_add(step.computed_prefill_tokens);
        self.preemptions = self.preemptions.saturating_add(step.preemptions);
        self.prefix_cache_queries = self
            .prefix_cache_queries
            .saturating_add(step.prefix_cache_queries);
        self.prefix_cache_hits = self
            .prefix_cache_hits
            .saturating_add(step.prefix_cache_hits);
        let iteration_tokens = self
            .step_prompt_tokens
            .saturating_add(self.step_generation_tokens);
        self.iteration_tokens.observe(iteration_tokens as f64);
        self.step_prompt_tokens = 0;
        self.step_generation_tokens = 0;
    }

    /// After each step, with the scheduler's queues and the block pool as they stand; `kv_usage` is 0–1.
    pub fn set_state(
        &mut self,
        running: u64,
        waiting_capacity: u64,
        waiting_deferred: u64,
        kv_usage: f64,
    ) {
        self.running = running;
        self.waiting_capacity = waiting_capacity;
        self.waiting_deferred = waiting_deferred;
        self.kv_usage = kv_usage;
    }

    /// When a request finishes for any reason (stop, length, abort, error).
    pub fn observe_finished(&mut self, request: &FinishedRequest) {
        if let Some(slot) = FinishReason::ALL
            .iter()
            .position(|&reason| reason == request.reason)
            .and_then(|i| self.finished_by_reason.get_mut(i))
        {
            *slot += 1;
        }
        self.e2e_request_latency.observe(request.e2e_s);
        self.request_prompt_tokens
            .observe(f64::from(request.prompt_tokens));
        self.request_generation_tokens
            .observe(f64::from(request.generation_tokens));
        // With n > 1 this is the longest of the siblings; the simulator serves one sequence per request.
        self.request_max_num_generation_tokens
            .observe(f64::from(request.generation_tokens));
        self.request_params_n.observe(f64::from(request.n));
        self.request_params_max_tokens
            .observe(f64::from(request.max_tokens));
        self.request_num_preemptions
            .observe(f64::from(request.preemptions));
        match request.timing {
            RequestTiming::NeverScheduled => {}
            RequestTiming::Scheduled { queue_s } => self.request_queue_time.observe(queue_s),
            RequestTiming::Completed {
                queue_s,
                prefill_s,
                decode_s,
                inference_s,
            } => {
                self.request_queue_time.observe(queue_s);
                self.request_prefill_time.observe(prefill_s);
                self.request_decode_time.observe(decode_s);
                self.request_inference_time.observe(inference_s);
                // The first token is the prefill's; a one-token request has no per-output-token time.
                if request.generation_tokens > 1 {
                    self.request_time_per_output_token
                        .observe(decode_s / f64::from(request.generation_tokens - 1));
                }
                let computed = request
                    .prompt_tokens
                    .saturating_sub(request.cached_prompt_tokens);
                self.request_prefill_kv_computed_tokens
                    .observe(f64::from(computed));
            }
        }
    }

    /// The full `/metrics` body (text format 0.0.4), every family vLLM 0.32 registers on a plain GPU server.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(48 * 1024);
        // Writing into a String cannot fail.
        let _ = self.write_exposition(&mut out);
        out
    }

    fn write_exposition(&self, out: &mut String) -> fmt::Result {
        // MFU estimates need `--enable-mfu-metrics`; the families exist regardless, at zero.
        const MFU_HELP: &str = " per GPU (for Model Flops Utilization calculations).";
        let mut help = String::with_capacity(96);
        for (name, what) in [
            (
                "vllm:estimated_flops_per_gpu",
                "Estimated number of floating point operations",
            ),
            (
                "vllm:estimated_read_bytes_per_gpu",
                "Estimated number of bytes read from memory",
            ),
            (
                "vllm:estimated_write_bytes_per_gpu",
                "Estimated number of bytes written to memory",
            ),
        ] {
            help.clear();
            help.push_str(what);
            help.push_str(MFU_HELP);
            self.write_counter(out, name, &help, true, None, &[("", 0)])?;
        }

        self.write_gauge(
            out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            None,
            &[("", self.running as f64)],
        )?;
        self.write_gauge(
            out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            None,
            &[(
                "",
                self.waiting_capacity.saturating_add(self.waiting_deferred) as f64,
            )],
        )?;
        self.write_gauge(
            out,
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            Some("reason"),
            &[
                ("capacity", self.waiting_capacity as f64),
                ("deferred", self.waiting_deferred as f64),
            ],
        )?;
        self.write_gauge(
            out,
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            Some("sleep_state"),
            &[("awake", 1.0), ("weights_offloaded", 0.0), ("discard_all", 0.0)],
        )?;
        self.write_gauge(
            out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            None,
            &[("", self.kv_usage)],
        )?;

        self.write_counter(
            out,
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            true,
            None,
            &[("", self.prefix_cache_queries)],
        )?;
        self.write_counter(
            out,
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            true,
            None,
            &[("", self.prefix_cache_hits)],
        )?;
        // No KV connector and no multi-modal inputs in the simulator: these stay at zero.
        self.write_counter(
            out,
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
            true,
            None,
            &[("", 0)],
        )?;
        self.write_counter(
            out,
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
            true,
            None,
            &[("", 0)],
        )?;
        self.write_counter(
            out,
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
            true,
            None,
            &[("", 0)],
        )?;
        self.write_counter(
            out,
            "vllm:mm_cache_hits",
            "Multi-modal cache hits, in terms of number of cached items.",
            true,
            None,
            &[("", 0)],
        )?;
        self.write_counter(
            out,
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            true,
            None,
            &[("", self.preemptions)],
        )?;
        self.write_counter(
            out,
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            true,
            None,
            &[("", self.prompt_tokens)],
        )?;
        self.write_counter(
            out,
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            true,
            Some("source"),
            &[
                ("local_compute", self.prompt_tokens_local_compute),
                ("local_cache_hit", self.prompt_tokens_local_cache_hit),
                ("external_kv_transfer", 0),
            ],
        )?;
        self.write_counter(
            out,
            "vllm:prompt_tokens_cached",
            "Number of cached prompt tokens (local + external).",
            true,
            None,
            &[("", self.prompt_tokens_cached)],
        )?;
        // Counted at admission like `prefix_cache_hits`, and every local hit comes from device memory.
        self.write_counter(
            out,
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            true,
            Some("source"),
            &[
                ("device", self.prefix_cache_hits),
                ("host", 0),
                ("p2p", 0),
                ("disk", 0),
                ("external_unspecified", 0),
            ],
        )?;
        self.write_counter(
            out,
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            true,
            None,
            &[("", self.generation_tokens)],
        )?;
        let mut finished = [("", 0_u64); FinishReason::ALL.len()];
        for ((slot, reason), count) in finished
            .iter_mut()
            .zip(FinishReason::ALL)
            .zip(self.finished_by_reason)
        {
            *slot = (reason.label(), count);
        }
        self.write_counter(
            out,
            "vllm:request_success",
            "Count of successfully processed requests.",
            true,
            Some("finished_reason"),
            &finished,
        )?;
        // vLLM's scheduler has no queue limit unless configured; this API-server family has no engine label.
        self.write_counter(
            out,
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            false,
            Some("reason"),
            &[("max_num_queued_reqs", 0), ("max_num_queued_tokens", 0)],
        )?;

        for (histogram, name, help) in [
            (
                &self.request_prompt_tokens,
                "vllm:request_prompt_tokens",
                "Number of prefill tokens processed.",
            ),
            (
                &self.request_generation_tokens,
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
            ),
            (
                &self.iteration_tokens,
                "vllm:iteration_tokens_total",
                "Histogram of number of tokens per engine_step.",
            ),
            (
                &self.request_max_num_generation_tokens,
                "vllm:request_max_num_generation_tokens",
                "Histogram of maximum number of requested generation tokens.",
            ),
            (
                &self.request_params_n,
                "vllm:request_params_n",
                "Histogram of the n request parameter.",
            ),
            (
                &self.request_params_max_tokens,
                "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.",
            ),
            (
                &self.time_to_first_token,
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
            ),
            (
                &self.inter_token_latency,
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
            ),
            (
                &self.request_time_per_output_token,
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
            ),
            (
                &self.e2e_request_latency,
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
            ),
            (
                &self.request_queue_time,
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
            ),
            (
                &self.request_inference_time,
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
            ),
            (
                &self.request_prefill_time,
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
            ),
            (
                &self.request_decode_time,
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
            ),
            (
                &self.request_num_preemptions,
                "vllm:request_num_preemptions",
                "Histogram of the number of times a request was preempted.",
            ),
            (
                &self.request_prefill_kv_computed_tokens,
                "vllm:request_prefill_kv_computed_tokens",
                "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            ),
        ] {
            self.write_histogram(out, name, help, histogram)?;
        }
        if let Some(nixl) = &self.nixl {
            for (histogram, name, help) in [
                (
                    &nixl.xfer_time,
                    "vllm:nixl_xfer_time_seconds",
                    "Histogram of transfer duration for NIXL KV Cache transfers.",
                ),
                (
                    &nixl.post_time,
                    "vllm:nixl_post_time_seconds",
                    "Histogram of transfer post time for NIXL KV Cache transfers.",
                ),
                (
                    &nixl.bytes_transferred,
                    "vllm:nixl_bytes_transferred",
                    "Histogram of bytes transferred per NIXL KV Cache transfers.",
                ),
                (
                    &nixl.num_descriptors,
                    "vllm:nixl_num_descriptors",
                    "Histogram of number of descriptors per NIXL  KV Cache transfers.",
                ),
            ] {
                self.write_histogram(out, name, help, histogram)?;
            }
            self.write_counter(
                out,
                "vllm:nixl_num_failed_transfers",
                "Number of failed NIXL KV Cache transfers.",
                true,
                None,
                &[("", nixl.failed_transfers)],
            )?;
            self.write_counter(
                out,
                "vllm:nixl_num_failed_notifications",
                "Number of failed NIXL KV Cache notifications.",
                true,
                None,
                &[("", nixl.failed_notifications)],
            )?;
        }

        write_header(
            out,
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            "gauge",
        )?;
        out.push_str(&self.cache_config_line);
        Ok(())
    }

    /// `{engine="0",model_name="…"}` plus one optional label, keys sorted as prometheus_client writes them.
    fn write_labels(
        &self,
        out: &mut String,
        with_engine: bool,
        extra: Option<(&str, &str)>,
    ) -> fmt::Result {
        out.push('{');
        if with_engine {
            write!(out, "engine=\"{ENGINE}\",")?;
        }
        match extra {
            Some((key, value)) if key < "model_name" => {
                write!(
                    out,
                    "{key}=\"{value}\",model_name=\"{}\"}}",
                    self.model_label
                )
            }
            Some((key, value)) => {
                write!(
                    out,
                    "model_name=\"{}\",{key}=\"{value}\"}}",
                    self.model_label
                )
            }
            None => write!(out, "model_name=\"{}\"}}", self.model_label),
        }
    }

    /// One series per `(label value, count)`; an empty label value with `label_key == None` is the bare series.
    fn write_counter(
        &self,
        out: &mut String,
        base: &str,
        help: &str,
        with_engine: bool,
        label_key: Option<&str>,
        series: &[(&str, u64)],
    ) -> fmt::Result {
        write_header(out, format_args!("{base}_total"), help, "counter")?;
        for &(label_value, count) in series {
            write!(out, "{base}_total")?;
            self.write_labels(out, with_engine, label_key.map(|key| (key, label_value)))?;
            out.push(' ');
            write_count(out, count)?;
            out.push('\n');
        }
        write_header(out, format_args!("{base}_created"), help, "gauge")?;
        for &(label_value, _) in series {
            write!(out, "{base}_created")?;
            self.write_labels(out, with_engine, label_key.map(|key| (key, label_value)))?;
            out.push(' ');
            write_go_float(out, self.start_unix_s)?;
            out.push('\n');
        }
        Ok(())
    }

    fn write_gauge(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        label_key: Option<&str>,
        series: &[(&str, f64)],
    ) -> fmt::Result {
        write_header(out, name, help, "gauge")?;
        for &(label_value, value) in series {
            out.push_str(name);
            self.write_labels(out, true, label_key.map(|key| (key, label_value)))?;
            out.push(' ');
            write_go_float(out, value)?;
            out.push('\n');
        }
        Ok(())
    }

    fn write_histogram(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        histogram: &Histogram,
    ) -> fmt::Result {
        write_header(out, name, help, "histogram")?;
        for (prefix, (_, cumulative)) in histogram
            .bucket_prefixes
            .iter()
            .zip(histogram.buckets.cumulative())
        {
            out.push_str(prefix);
            write_count(out, cumulative)?;
            out.push('\n');
        }
        write!(out, "{name}_count")?;
        self.write_labels(out, true, None)?;
        out.push(' ');
        write_count(out, histogram.buckets.count())?;
        write!(out, "\n{name}_sum")?;
        self.write_labels(out, true, None)?;
        out.push(' ');
        write_go_float(out, histogram.buckets.sum())?;
        out.push('\n');
        write_header(out, format_args!("{name}_created"), help, "gauge")?;
        write!(out, "{name}_created")?;
        self.write_labels(out, true, None)?;
        out.push(' ');
        write_go_float(out, self.start_unix_s)?;
        out.push('\n');
        Ok(())
    }
}

/// An exposition with one more label on every sample (`pod="sim-0"`), so a fleet's replicas stay apart in one
/// scrape or in a Prometheus that keeps the scraped labels.
pub fn with_label(exposition: &str, key: &str, value: &str) -> String {
    let label = format!("{key}=\"{}\"", escape_label_value(value));
    let mut out = String::with_capacity(exposition.len() + exposition.len() / 8);
    for line in exposition.lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else if let Some(open) = line.find('{').filter(|&i| !line[..i].contains(' ')) {
            let rest = &line[open + 1..];
            out.push_str(&line[..=open]);
            out.push_str(&label);
            if !rest.starts_with('}') {
                out.push(',');
            }
            out.push_str(rest);
        } else {
            let end = line.find(' ').unwrap_or(line.len());
            out.push_str(&line[..end]);
            out.push('{');
            out.push_str(&label);
            out.push('}');
            out.push_str(&line[end..]);
        }
        out.push('\n');
    }
    out
}

pub(crate) fn write_header(
    out: &mut String,
    name: impl fmt::Display,
    help: &str,
    kind: &str,
) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")
}

/// Counts are floats in the exposition; small ones skip the general float path, which is most of a render.
fn write_count(out: &mut String, count: u64) -> fmt::Result {
    if count < 1_000_000 {
        write!(out, "{count}.0")
    } else {
        write_go_float(out, count as f64)
    }
}

/// Escapes a label value as the text format requires (`\`, `"`, newline).
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// A float's shortest round-trip decimal digits and exponent: `digits[0].digits[1..] × 10^exponent`.
struct Decimal {
    negative: bool,
    digits: [u8; 20],
    len: usize,
    exponent: i32,
}

impl Decimal {
    /// `None` for NaN and infinities, which have no digits.
    fn of(value: f64) -> Option<Decimal> {
        if !value.is_finite() {
            return None;
        }
        // Rust's `{:e}` already gives the shortest round-trip digits, e.g. `-1.25e-5`.
        let mut text = StackText::default();
        write!(text, "{value:e}").ok()?;
        let text = text.as_str();
        let (mantissa, exponent) = text.split_once('e')?;
        let mut decimal = Decimal {
            negative: mantissa.starts_with('-'),
            digits: [0; 20],
            len: 0,
            exponent: exponent.parse().ok()?,
        };
        for byte in mantissa.bytes().filter(u8::is_ascii_digit) {
            *decimal.digits.get_mut(decimal.len)? = byte;
            decimal.len += 1;
        }
        Some(decimal)
    }

    fn digits(&self) -> &[u8] {
        self.digits.get(..self.len).unwrap_or_default()
    }
}

/// A fixed buffer for one `{:e}` rendering, so formatting a float allocates nothing.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn write_digits(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|&d| char::from(d)));
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents −4…15, else `1.5e-05` style.
pub(crate) fn write_python_float(out: &mut String, value: f64) -> fmt::Result {
    let Some(decimal) = Decimal::of(value) else {
        out.push_str(if value.is_nan() {
            "nan"
        } else if value > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        return Ok(());
    };
    if decimal.negative {
        out.push('-');
    }
    let digits = decimal.digits();
    let exponent = decimal.exponent;
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            write_digits(out, digits);
        } else {
            let int_len = exponent.unsigned_abs() as usize + 1;
            let (int_part, frac_part) = digits.split_at(int_len.min(digits.len()));
            write_digits(out, int_part);
            for _ in int_part.len()..int_len {
                out.push('0');
            }
            out.push('.');
            if frac_part.is_empty() {
                out.push('0');
            } else {
                write_digits(out, frac_part);
            }
        }
        Ok(())
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        write_digits(out, first);
        if !rest.is_empty() {
            out.push('.');
            write_digits(out, rest);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// prometheus_client's `floatToGoString`: Python's repr, except `+Inf`/`-Inf`/`NaN`, and positive numbers with
/// more than six integer digits written as `1.7953453682653773e+09` (its `e+0` prefix is kept verbatim).
pub(crate) fn write_go_float(out: &mut String, value: f64) -> fmt::Result {
    if value.is_nan() {
        out.push_str("NaN");
        return Ok(());
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return Ok(());
    }
    match Decimal::of(value) {
        Some(decimal) if value > 0.0 && (6..16).contains(&decimal.exponent) => {
            let digits = decimal.digits();
            let (first, rest) = digits.split_at(1.min(digits.len()));
            write_digits(out, first);
            if !rest.is_empty() {
                out.push('.');
                write_digits(out, rest);
            }
            write!(out, "e+0{}", decimal.exponent)
        }
        _ => write_python_float(out, value),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vllm_cpu/metrics_after_load.txt"
    ));

    /// One sample line: name, labels (sorted by key), value.
    #[derive(Clone, Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    #[derive(Debug, Default)]
    struct Exposition {
        /// TYPE lines in order: (family, type).
        types: Vec<(String, String)>,
        help: BTreeMap<String, String>,
        samples: Vec<Sample>,
    }

    impl Exposition {
        fn parse(text: &str) -> Exposition {
            let mut exposition = Exposition::default();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
                    exposition.types.push((name.to_owned(), kind.to_owned()));
                } else if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').expect("HELP line has text");
                    exposition.help.insert(name.to_owned(), help.to_owned());
                } else if !line.is_empty() {
                    exposition.samples.push(parse_sample(line));
                }
            }
            exposition
        }

        fn vllm_only(mut self) -> Exposition {
            self.types.retain(|(name, _)| name.starts_with("vllm:"));
            self.help.retain(|name, _| name.starts_with("vllm:"));
            self.samples.retain(|s| s.name.starts_with("vllm:"));
            self
        }

        fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let matching: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect();
            assert_eq!(matching.len(), 1, "{name} {labels:?}: {matching:?}");
            matching[0].value
        }

        fn bucket(&self, family: &str, le: &str) -> f64 {
            self.value(&format!("{family}_bucket"), &[("le", le)])
        }
    }

    fn parse_sample(line: &str) -> Sample {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().expect("numeric sample value"),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'));
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next().expect("escaped char") {
                                'n' => value.push('\n'),
                                escaped => value.push(escaped),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name, labels)
            }
        };
        Sample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    /// The fixture's own cache configuration, so even `cache_config_info` can be compared label by label.
    fn fixture_cache() -> CacheConfigInfo {
        CacheConfigInfo {
            kv_cache_memory_bytes: Some(1_073_741_824),
            gpu_memory_utilization: 0.92,
            ..CacheConfigInfo::full_attention(128, 2048, 0.92, 2048)
        }
    }

    fn fixture_like() -> VllmMetrics {
        VllmMetrics::new("tiny", fixture_cache(), 2048, 1_795_345_368.265_377_3)
    }

    /// A label set with the values that are data (not shape) blanked: `_created` timestamps are values,
    /// so only label keys and the fixed label values (le, reason, source, …) are compared.
    fn shape(samples: &[Sample]) -> BTreeSet<(String, Vec<(String, String)>)> {
        samples
            .iter()
            .map(|s| (s.name.clone(), s.labels.clone().into_iter().collect()))
            .collect()
    }

    /// vLLM's `NixlPromMetrics`: the families, types and buckets of `kv_connector/v1/nixl/stats.py`, only on a
    /// replica that pulls KV.
    #[test]
    fn a_decode_replica_exposes_the_nixl_connector_families() {
        let mut metrics = fixture_like();
        assert!(!metrics.render().contains("nixl"));
        metrics.enable_nixl();
        metrics.observe_kv_transfer(&KvTransfer {
            seconds: 0.43,
            post_seconds: 0.001,
            bytes: 512.0 * 1048576.0,
            descriptors: 1024,
            failed: false,
        });
        metrics.observe_kv_transfer(&KvTransfer {
            seconds: 0.0,
            post_seconds: 0.0,
            bytes: 0.0,
            descriptors: 0,
            failed: true,
        });
        let e = Exposition::parse(&metrics.render());
        let types: BTreeMap<&str, &str> = e
            .types
            .iter()
            .filter(|(name, _)| name.contains("nixl"))
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            types,
            BTreeMap::from([
                ("vllm:nixl_bytes_transferred", "histogram"),
                ("vllm:nixl_num_descriptors", "histogram"),
                ("vllm:nixl_num_failed_notifications_total", "counter"),
                ("vllm:nixl_num_failed_transfers_total", "counter"),
                ("vllm:nixl_post_time_seconds", "histogram"),
                ("vllm:nixl_xfer_time_seconds", "histogram"),
                ("vllm:nixl_bytes_transferred_created", "gauge"),
                ("vllm:nixl_num_descriptors_created", "gauge"),
                ("vllm:nixl_num_failed_notifications_created", "gauge"),
                ("vllm:nixl_num_failed_transfers_created", "gauge"),
                ("vllm:nixl_post_time_seconds_created", "gauge"),
                ("vllm:nixl_xfer_time_seconds_created", "gauge"),
            ])
        );
        // The transfer time's buckets start at 5 ms, the post time's at 1 ms; bytes from 2 KiB to 8 GiB.
        assert_eq!(e.bucket("vllm:nixl_xfer_time_seconds", "0.005"), 0.0);
        assert_eq!(e.bucket("vllm:nixl_xfer_time_seconds", "0.5"), 1.0);
        assert_eq!(e.bucket("vllm:nixl_post_time_seconds", "0.001"), 1.0);
        assert_eq!(e.bucket("vllm:nixl_bytes_transferred", "2048.0"), 0.0);
        assert_eq!(
            e.bucket("vllm:nixl_bytes_transferred", "8.589934592e+09"),
            1.0
        );
        assert_eq!(
            e.value("vllm:nixl_bytes_transferred_sum", &[]),
            512.0 * 1048576.0
        );
        assert_eq!(e.value("vllm:nixl_num_failed_transfers_total", &[]), 1.0);
    }

    #[test]
    fn a_pod_label_goes_on_every_sample_and_nowhere_else() {
        let text = "# HELP a A.\n# TYPE a counter\na_total{engine=\"0\"} 3\nb 1.5\nc{} 2\n";
        assert_eq!(
            with_label(text, "pod", "sim-1"),
            "# HELP a A.\n# TYPE a counter\na_total{pod=\"sim-1\",engine=\"0\"} 3\nb{pod=\"sim-1\"} 1.5\n\
             c{pod=\"sim-1\"} 2\n"
        );
        let labelled = Exposition::parse(&with_label(&fixture_like().render(), "pod", "p"));
        assert!(
            labelled
                .samples
                .iter()
                .all(|s| s.labels.get("pod").map(String::as_str) == Some("p"))
        );
    }

    #[test]
    fn fixture_path_resolves_to_a_real_vllm_scrape() {
        assert!(FIXTURE.contains("vllm:cache_config_info"));
    }

    #[test]
    fn families_types_help_labels_and_buckets_equal_the_real_vllm_scrape() {
        // Allowed difference: python_*, process_* and http_* families are not vllm: families (they come from
        // prometheus_client's process collector and FastAPI's instrumentator), so they are left out.
        let real = Exposition::parse(FIXTURE).vllm_only();
        let ours = Exposition::parse(&fixture_like().render());
        assert_eq!(ours.types, real.types, "families, types and their order");
        assert_eq!(ours.help, real.help);
        assert_eq!(shape(&ours.samples), shape(&real.samples));
        assert_eq!(
            ours.samples.len(),
            real.samples.len(),
            "no duplicated series"
        );
    }

    #[test]
    fn cache_config_info_line_is_byte_identical_for_the_fixture_configuration() {
        let ours = fixture_like().render();
        let line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("vllm:cache_config_info{"))
                .map(str::to_owned)
        };
        assert_eq!(line(&ours), line(FIXTURE));
    }

    #[test]
    fn idle_render_matches_the_fixture_style_for_gauges_and_created() {
        let ours = fixture_like().render();
        for expected in [
            "vllm:num_requests_waiting{engine=\"0\",model_name=\"tiny\"} 0.0\n",
            "vllm:engine_sleep_state{engine=\"0\",model_name=\"tiny\",sleep_state=\"awake\"} 1.0\n",
            "vllm:estimated_flops_per_gpu_created{engine=\"0\",model_name=\"tiny\"} 1.7953453682653773e+09\n",
            "vllm:request_success_total{engine=\"0\",finished_reason=\"repetition\",model_name=\"tiny\"} 0.0\n",
            "vllm:admission_rejections_total{model_name=\"tiny\",reason=\"max_num_queued_reqs\"} 0.0\n",
            "vllm:request_prompt_tokens_bucket{engine=\"0\",le=\"2000.0\",model_name=\"tiny\"} 0.0\n",
            "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"tiny\"} 0.0\n",
        ] {
            assert!(ours.contains(expected), "missing {expected:?}");
        }
    }

    #[test]
    fn token_buckets_follow_max_model_len() {
        assert_eq!(
            one_two_five_buckets(2048),
            [
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0
            ]
        );
        assert_eq!(one_two_five_buckets(1), [1.0]);
        assert!(one_two_five_buckets(0).is_empty());
        assert_eq!(
            one_two_five_buckets(u32::MAX).last(),
            Some(&2_000_000_000.0)
        );
        let render = VllmMetrics::new("m", fixture_cache(), 1_000_000, 0.0).render();
        assert!(render.contains(
            "vllm:request_prompt_tokens_bucket{engine=\"0\",le=\"1e+06\",model_name=\"m\"} 0.0\n"
        ));
    }

    #[test]
    fn observations_land_where_vllm_puts_them() {
        let mut metrics = fixture_like();
        // Step 1: request A (20-token prompt, 16 from the prefix cache) and B (10 tokens, nothing cached) are
        // admitted; both prefills complete and emit their first tokens.
        metrics.observe_first_token(0.02, 20, 16);
        metrics.observe_first_token(0.25, 10, 0);
        metrics.observe_step(&StepStats {
            computed_prefill_tokens: 4 + 10,
            preemptions: 0,
            prefix_cache_requests: 2,
            prefix_cache_queries: 30,
            prefix_cache_hits: 16,
        });
        metrics.set_state(2, 3, 1, 0.125);
        // Step 2: both decode; B is preempted at the end of the step.
        metrics.observe_later_token(0.01);
        metrics.observe_later_token(0.0100001);
        metrics.observe_step(&StepStats {
            preemptions: 1,
            ..StepStats::default()
        });
        // Step 3: A finishes by length after 3 tokens; an empty step follows.
        metrics.observe_later_token(0.5);
        metrics.observe_finished(&FinishedRequest {
            reason: FinishReason::Length,
            prompt_tokens: 20,
            generation_tokens: 3,
            max_tokens: 3,
            n: 1,
            e2e_s: 0.53,
            timing: RequestTiming::Completed {
                queue_s: 0.001,
                prefill_s: 0.019,
                decode_s: 0.51,
                inference_s: 0.529,
            },
            preemptions: 0,
            cached_prompt_tokens: 16,
        });
        metrics.observe_step(&StepStats::default());
        // B is aborted while waiting to resume; C is aborted before it was ever scheduled.
        metrics.observe_finished(&FinishedRequest {
            reason: FinishReason::Abort,
            prompt_tokens: 10,
            generation_tokens: 2,
            max_tokens: 100,
            n: 1,
            e2e_s: 3.0,
            timing: RequestTiming::Completed {
                queue_s: 0.2,
                prefill_s: 0.05,
                decode_s: 0.02,
                inference_s: 0.07,
            },
            preemptions: 1,
            cached_prompt_tokens: 0,
        });
        metrics.observe_finished(&FinishedRequest {
            reason: FinishReason::Abort,
            prompt_tokens: 7,
            generation_tokens: 0,
            max_tokens: 5,
            n: 2,
            e2e_s: 9.0,
            timing: RequestTiming::NeverScheduled,
            preemptions: 0,
            cached_prompt_tokens: 0,
        });

        let e = Exposition::parse(&metrics.render());
        let plain: &[(&str, &str)] = &[];
        // Gauges.
        assert_eq!(e.value("vllm:num_requests_running", plain), 2.0);
        assert_eq!(e.value("vllm:num_requests_waiting", plain), 4.0);
        assert_eq!(
            e.value(
                "vllm:num_requests_waiting_by_reason",
                &[("reason", "capacity")]
            ),
            3.0
        );
        assert_eq!(
            e.value(
                "vllm:num_requests_waiting_by_reason",
                &[("reason", "deferred")]
            ),
            1.0
        );
        assert_eq!(e.value("vllm:kv_cache_usage_perc", plain), 0.125);
        // Counters: the prompt is credited as computed (14) plus cache reuse (16) = 30.
        assert_eq!(e.value("vllm:prompt_tokens_total", plain), 30.0);
        let by_source = |s| e.value("vllm:prompt_tokens_by_source_total", &[("source", s)]);
        assert_eq!(by_source("local_compute"), 14.0);
        assert_eq!(by_source("local_cache_hit"), 16.0);
        assert_eq!(by_source("external_kv_transfer"), 0.0);
        assert_eq!(e.value("vllm:prompt_tokens_cached_total", plain), 16.0);
        assert_eq!(
            e.value(
                "vllm:prompt_tokens_cached_by_source_total",
                &[("source", "device")]
            ),
            16.0
        );
        assert_eq!(e.value("vllm:prefix_cache_queries_total", plain), 30.0);
        assert_eq!(e.value("vllm:prefix_cache_hits_total", plain), 16.0);
        assert_eq!(e.value("vllm:generation_tokens_total", plain), 5.0);
        assert_eq!(e.value("vllm:num_preemptions_total", plain), 1.0);
        let success = |r| e.value("vllm:request_success_total", &[("finished_reason", r)]);
        assert_eq!(success("length"), 1.0);
        assert_eq!(success("abort"), 2.0);
        assert_eq!(success("stop"), 0.0);
        // Iterations: 20+10 prompt + 2 first tokens, then 2 tokens, then 1 token, then nothing.
        let iteration = "vllm:iteration_tokens_total";
        assert_eq!(e.value(&format!("{iteration}_count"), plain), 3.0);
        assert_eq!(e.value(&format!("{iteration}_sum"), plain), 35.0);
        assert_eq!(e.bucket(iteration, "1.0"), 1.0);
        assert_eq!(e.bucket(iteration, "8.0"), 2.0);
        assert_eq!(e.bucket(iteration, "16.0"), 2.0);
        assert_eq!(e.bucket(iteration, "32.0"), 3.0);
        // TTFT: a value on a bound falls in that bound's bucket.
        let ttft = "vllm:time_to_first_token_seconds";
        assert_eq!(e.bucket(ttft, "0.01"), 0.0);
        assert_eq!(e.bucket(ttft, "0.02"), 1.0);
        assert_eq!(e.bucket(ttft, "0.1"), 1.0);
        assert_eq!(e.bucket(ttft, "0.25"), 2.0);
        assert_eq!(e.value(&format!("{ttft}_sum"), plain), 0.27);
        // ITL: one observation per later token.
        let itl = "vllm:inter_token_latency_seconds";
        assert_eq!(e.value(&format!("{itl}_count"), plain), 3.0);
        assert_eq!(e.bucket(itl, "0.01"), 1.0);
        assert_eq!(e.bucket(itl, "0.025"), 2.0);
        assert_eq!(e.bucket(itl, "0.5"), 3.0);
        // Per-request histograms: three finished requests, phases only for the two that produced tokens.
        for family in [
            "vllm:e2e_request_latency_seconds",
            "vllm:request_prompt_tokens",
            "vllm:request_generation_tokens",
            "vllm:request_max_num_generation_tokens",
            "vllm:request_params_n",
            "vllm:request_params_max_tokens",
            "vllm:request_num_preemptions",
        ] {
            assert_eq!(e.value(&format!("{family}_count"), plain), 3.0, "{family}");
        }
        for family in [
            "vllm:request_queue_time_seconds",
            "vllm:request_prefill_time_seconds",
            "vllm:request_decode_time_seconds",
            "vllm:request_inference_time_seconds",
            "vllm:request_time_per_output_token_seconds",
            "vllm:request_prefill_kv_computed_tokens",
        ] {
            assert_eq!(e.value(&format!("{family}_count"), plain), 2.0, "{family}");
        }
        assert_eq!(
            e.value("vllm:request_prefill_kv_computed_tokens_sum", plain),
            4.0 + 10.0
        );
        assert_eq!(
            e.value("vllm:request_time_per_output_token_seconds_sum", plain),
            0.51 / 2.0 + 0.02
        );
        assert_eq!(e.value("vllm:request_params_n_sum", plain), 4.0);
        assert_eq!(e.bucket("vllm:request_num_preemptions", "1.0"), 3.0);
        assert_eq!(e.value("vllm:request_num_preemptions_sum", plain), 1.0);
        assert_eq!(e.bucket("vllm:e2e_request_latency_seconds", "0.5"), 0.0);
        assert_eq!(e.bucket("vllm:e2e_request_latency_seconds", "0.8"), 1.0);
        assert_eq!(e.bucket("vllm:e2e_request_latency_seconds", "5.0"), 2.0);
        assert_eq!(e.bucket("vllm:e2e_request_latency_seconds", "10.0"), 3.0);
        assert_eq!(e.bucket("vllm:request_generation_tokens", "1.0"), 1.0);
        assert_eq!(e.bucket("vllm:request_generation_tokens", "2.0"), 2.0);
        assert_eq!(e.bucket("vllm:request_generation_tokens", "5.0"), 3.0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_equals_count() {
        let mut metrics = fixture_like();
        for i in 0..500_u32 {
            let x = f64::from(i);
            metrics.observe_first_token(x * 0.013, i % 300, i % 7);
            metrics.observe_later_token(x * 0.0021);
            metrics.observe_step(&StepStats {
                computed_prefill_tokens: u64::from(i),
                ..StepStats::default()
            });
            metrics.observe_finished(&FinishedRequest {
                reason: FinishReason::ALL[i as usize % 5],
                prompt_tokens: i * 5,
                generation_tokens: i % 40,
                max_tokens: i,
                n: i % 3 + 1,
                e2e_s: x * 0.3,
                timing: RequestTiming::Completed {
                    queue_s: x * 0.01,
                    prefill_s: x * 0.02,
                    decode_s: x * 0.2,
                    inference_s: x * 0.22,
                },
                preemptions: i % 25,
                cached_prompt_tokens: i % 11,
            });
        }
        let e = Exposition::parse(&metrics.render());
        let histograms: Vec<&str> = e
            .types
            .iter()
            .filter(|(_, kind)| kind == "histogram")
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(histograms.len(), 16);
        for family in histograms {
            let bucket_name = format!("{family}_bucket");
            let buckets: Vec<&Sample> =
                e.samples.iter().filter(|s| s.name == bucket_name).collect();
            let mut previous_bound = f64::NEG_INFINITY;
            let mut previous_count = 0.0;
            for bucket in &buckets {
                let bound = match bucket.labels["le"].as_str() {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().expect("numeric le"),
                };
                assert!(bound > previous_bound, "{family}: bounds ascend");
                assert!(bucket.value >= previous_count, "{family}: cumulative");
                previous_bound = bound;
                previous_count = bucket.value;
            }
            assert_eq!(previous_bound, f64::INFINITY, "{family}: ends with +Inf");
            assert_eq!(
                previous_count,
                e.value(&format!("{family}_count"), &[]),
                "{family}: +Inf equals _count"
            );
        }
    }

    #[test]
    fn non_finite_observations_are_dropped() {
        let mut metrics = fixture_like();
        metrics.observe_first_token(f64::NAN, 1, 5);
        metrics.observe_later_token(f64::INFINITY);
        let e = Exposition::parse(&metrics.render());
        assert_eq!(e.value("vllm:time_to_first_token_seconds_count", &[]), 0.0);
        assert_eq!(e.value("vllm:inter_token_latency_seconds_sum", &[]), 0.0);
        // The tokens themselves still count, and cached never exceeds the prompt.
        assert_eq!(e.value("vllm:generation_tokens_total", &[]), 2.0);
        assert_eq!(e.value("vllm:prompt_tokens_cached_total", &[]), 1.0);
    }

    #[test]
    fn model_names_are_escaped_in_labels() {
        let render = VllmMetrics::new("a\"b\\c\nd", fixture_cache(), 16, 0.0).render();
        assert!(render.contains(
            "vllm:num_requests_running{engine=\"0\",model_name=\"a\\\"b\\\\c\\nd\"} 0.0\n"
        ));
        let e = Exposition::parse(&render);
        assert_eq!(e.samples[0].labels["model_name"], "a\"b\\c\nd");
    }

    fn go(value: f64) -> String {
        let mut s = String::new();
        write_go_float(&mut s, value).expect("write to String");
        s
    }

    fn py(value: f64) -> String {
        let mut s = String::new();
        write_python_float(&mut s, value).expect("write to String");
        s
    }

    #[test]
    fn floats_are_written_like_prometheus_client() {
        for (value, expected) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (2.5e-5, "2.5e-05"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.005862237420615535, "0.005862237420615535"),
            (30.278758556999037, "30.278758556999037"),
            (4896.0, "4896.0"),
            (999_999.0, "999999.0"),
            (1_000_000.0, "1e+06"),
            (1_795_345_368.265_377_3, "1.7953453682653773e+09"),
            (4_847_718_400.0, "4.8477184e+09"),
            (967_303_168.0, "9.67303168e+08"),
            (1.795_345_368_668e9, "1.795345368668e+09"),
            (1.5e15, "1.5e+015"),
            (1e16, "1e+16"),
            (-2_000_000.0, "-2000000.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        ] {
            assert_eq!(go(value), expected, "{value:e}");
        }
        assert_eq!(py(0.92), "0.92");
        assert_eq!(py(128.0), "128.0");
        assert_eq!(py(1e22), "1e+22");
        assert_eq!(py(123_456_789.0), "123456789.0");
        assert_eq!(py(f64::NAN), "nan");
    }

    #[test]
    fn large_counts_switch_to_exponent_form() {
        let mut s = String::new();
        write_count(&mut s, 12_345_678).expect("write to String");
        assert_eq!(s, "1.2345678e+07");
    }

    proptest::proptest! {
        #[test]
        fn any_input_renders_a_parseable_exposition(
            seconds in proptest::num::f64::ANY,
            tokens in proptest::num::u32::ANY,
            counts in proptest::num::u64::ANY,
        ) {
            let mut metrics = VllmMetrics::new("m", fixture_cache(), tokens, seconds);
            metrics.observe_first_token(seconds, tokens, tokens);
            metrics.observe_later_token(seconds);
            let huge = StepStats {
                computed_prefill_tokens: counts,
                preemptions: counts,
                prefix_cache_requests: counts,
                prefix_cache_queries: counts,
                prefix_cache_hits: counts,
            };
            metrics.observe_step(&huge);
            metrics.observe_step(&huge);
            metrics.set_state(counts, counts, counts, seconds);
            metrics.observe_finished(&FinishedRequest {
                reason: FinishReason::Error,
                prompt_tokens: tokens,
                generation_tokens: tokens,
                max_tokens: tokens,
                n: tokens,
                e2e_s: seconds,
                timing: RequestTiming::Completed {
                    queue_s: seconds,
                    prefill_s: seconds,
                    decode_s: seconds,
                    inference_s: seconds,
                },
                preemptions: tokens,
                cached_prompt_tokens: tokens,
            });
            let rendered = metrics.render();
            let parsed = Exposition::parse(&rendered);
            proptest::prop_assert!(!parsed.samples.is_empty());
            let mut python = String::new();
            write_python_float(&mut python, seconds).expect("write to String");
            if seconds.is_finite() {
                proptest::prop_assert_eq!(python.parse::<f64>().ok(), Some(seconds));
            }
        }
    }
}
