//! The typed events a log line becomes, shared by the per-server parsers and the report that sums them up.
//! Units are the canonical ones (ratios 0–1, seconds, GiB, tokens), whatever the server printed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::prefix::{Level, LogTime};

/// The inference server a log came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    Vllm,
    Sglang,
    LlamaCpp,
}

/// One recognised record: where it is in the log, who wrote it, and what it says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEvent {
    /// 1-based number of the record's first line.
    pub line: u64,
    pub time: Option<LogTime>,
    pub level: Option<Level>,
    /// The process tag's name, e.g. `EngineCore_DP0`.
    pub process: Option<String>,
    pub server: Option<ServerKind>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// From vLLM's banner, `vLLM API server version X`, or `Initializing a V1 LLM engine (vX)`.
    Version {
        version: String,
        /// `V1` or `V0`, when the line names the engine generation.
        engine: Option<String>,
    },
    /// The model the server serves, from vLLM's banner or version line.
    Model { model: String },
    /// vLLM's `non-default args: {...}`, values as their Python repr without string quotes.
    NonDefaultArgs { args: BTreeMap<String, String> },
    /// Settings vLLM states whatever their value: its engine config line (`Initializing a V1 LLM engine (vX)
    /// with config: enforce_eager=False, …`) and `Chunked prefill is enabled with max_num_batched_tokens=N`.
    EngineConfig { settings: BTreeMap<String, String> },
    /// vLLM's `Using max model len N`.
    MaxModelLen { tokens: u64 },
    /// `Model loading took X GiB memory and Y seconds` and its older forms.
    ModelLoaded {
        memory_gib: Option<f64>,
        seconds: Option<f64>,
    },
    /// vLLM's `Available KV cache memory: X GiB` (V0: `the rest of the memory reserved for KV Cache is X GiB`).
    AvailableKvMemory { gib: f64 },
    /// vLLM's `GPU KV cache size: N tokens` (`CPU` on the CPU backend).
    KvCacheSize { device: String, tokens: u64 },
    /// vLLM's `Maximum concurrency for N tokens per request: X.XXx`.
    MaxConcurrency {
        tokens_per_request: u64,
        concurrency: f64,
    },
    /// vLLM V0's `# GPU blocks: N, # CPU blocks: M` (also `# cuda blocks`).
    CacheBlocks {
        device: String,
        device_blocks: u64,
        cpu_blocks: Option<u64>,
    },
    /// vLLM's `Graph capturing finished in X secs, took Y GiB`.
    GraphCapture {
        seconds: f64,
        memory_gib: Option<f64>,
    },
    /// vLLM's `init engine (profile, create kv cache, warmup model) took X s`.
    EngineInit {
        seconds: f64,
        compilation_seconds: Option<f64>,
    },
    /// The HTTP server is up: vLLM's `Starting vLLM API server on ...`, llama.cpp's `listening on ...`.
    ServerStarted { address: String },
    /// A periodic stats line from any server.
    Stats(StatsSample),
    /// vLLM's `SpecDecoding metrics: …, Accepted: N tokens, Drafted: M tokens, …`: the tokens of one interval.
    SpecDecoding { accepted: u64, drafted: u64 },
    /// NCCL's `NCCL INFO Using network Socket` (or `IB`, `IBext_v8`, `AWS Libfabric`, …) under `NCCL_DEBUG=INFO`:
    /// the transport its collectives between hosts take.
    CollectiveNetwork { network: String },
    /// vLLM V0's separate `Prefix cache hit rate: GPU: X%, CPU: Y%` line, belonging to the stats line before.
    PrefixCacheHitRate { rate: f64 },
    /// SGLang's `max_total_num_tokens=..., max_prefill_tokens=..., max_running_requests=..., context_len=...`.
    SglangCapacity {
        max_total_num_tokens: Option<u64>,
        max_prefill_tokens: Option<u64>,
        max_running_requests: Option<u64>,
        context_len: Option<u64>,
        available_gpu_memory_gb: Option<f64>,
    },
    /// SGLang's `KV Cache is allocated. dtype: ..., #tokens: N, K size: X GB, V size: Y GB` (its "GB" are 2³⁰
    /// bytes); the memory is K and V together.
    KvCacheAllocated {
        tokens: u64,
        memory_gib: Option<f64>,
    },
    /// llama.cpp's `n_slots = 4, n_ctx_slot = 1024`.
    SlotCapacity {
        slots: Option<u64>,
        context_per_slot: Option<u64>,
    },
    /// llama.cpp's `llama_context: n_ctx = N` (all slots together).
    ContextSize { tokens: u64 },
    /// llama.cpp's per-request `print_timing` block (three lines, one event).
    RequestTiming(RequestTiming),
    /// A request lost its KV cache: vLLM V0's preemption warning, SGLang's retraction.
    Preemption {
        message: String,
        /// vLLM V0: `RECOMPUTE` or `SWAP`.
        mode: Option<String>,
        /// vLLM V0: preemptions since start (the warning is printed at the 1st and every 50th).
        cumulative: Option<u64>,
        /// SGLang: requests retracted at once.
        retracted: Option<u64>,
    },
    /// An out-of-memory error, with its traceback folded in.
    OutOfMemory {
        /// The line that says so, e.g. `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ...`.
        message: String,
        /// Its 1-based line number.
        message_line: u64,
        /// The record's first line (`AsyncLLM output_handler failed.`, `Traceback ...`).
        headline: String,
        lines: u64,
    },
    /// Any other error, with its traceback folded in.
    Error {
        /// The last exception line when there is a traceback, else the headline.
        message: String,
        /// Its 1-based line number.
        message_line: u64,
        headline: String,
        lines: u64,
    },
    /// A warning-level line no parser knows more about.
    Warning { message: String },
}

/// What produced a stats sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsSource {
    /// `Engine 000: Avg prompt throughput: ...` (and its 2025 form without `Engine`).
    VllmV1,
    /// `Avg prompt throughput: ..., Swapped: ..., Pending: ...`.
    VllmV0,
    /// `Decode batch. #running-req: ...`.
    SglangDecode,
    /// `Prefill batch. #new-seq: ...`.
    SglangPrefill,
}

/// One point of the stats timeline, whichever server printed it; absent fields were not on the line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsSample {
    pub source: Option<StatsSource>,
    /// vLLM's `Engine NNN`.
    pub engine: Option<u32>,
    /// Prompt tokens per second (vLLM: computed, not cached, since 2026-02; SGLang prefill: input throughput).
    pub prompt_throughput: Option<f64>,
    pub generation_throughput: Option<f64>,
    pub running: Option<u64>,
    /// vLLM V1 `Waiting` (deferred included), V0 `Pending`, SGLang `#queue-req`.
    pub waiting: Option<u64>,
    pub deferred: Option<u64>,
    /// vLLM V0's requests swapped to CPU.
    pub swapped: Option<u64>,
    /// Preemptions during the interval (vLLM V1 prints them only when non-zero).
    pub preemptions: Option<u64>,
    /// KV cache in use, 0–1.
    pub kv_usage: Option<f64>,
    /// vLLM V0's swap-space usage, 0–1.
    pub cpu_kv_usage: Option<f64>,
    /// KV tokens in use (SGLang `#token`).
    pub kv_tokens: Option<u64>,
    /// 0–1. vLLM: its sliding window; SGLang prefill: cached / (new + cached) tokens of the batch.
    pub prefix_cache_hit_rate: Option<f64>,
}

/// One llama.cpp request's timings.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestTiming {
    pub slot: Option<u64>,
    pub task: Option<u64>,
    pub prompt_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub generation_ms: Option<f64>,
    pub generated_tokens: Option<u64>,
    pub total_ms: Option<f64>,
    pub total_tokens: Option<u64>,
}
