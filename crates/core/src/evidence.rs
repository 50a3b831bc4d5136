//! Everything a diagnosis may look at, in canonical terms only: what the client measured, what the server's
//! metrics said, what its log said. Live runs and bundles on disk fill the same value; `diagnose` reads only it.

use std::collections::BTreeMap;

use crate::signals::{ServerReadings, ServerWindow};
use crate::summary::RunSummary;

/// One diagnosis's inputs; every part is optional, because partial evidence still supports some findings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// The client's measurement of a run under load (the loaded probe, or `bench`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<RunSummary>,
    /// The same measurement with one user at a time (the single-user probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_user: Option<RunSummary>,
    /// Model and GPU facts when known (a simulator, or `--gpu/--model`): the hardware floors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareFacts>,
    /// The workload the probes sent, when they were ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadFacts>,
    /// Whether the workload shares prompt prefixes (so a low prefix-cache hit rate matters); `None` when the
    /// workload is not known (scrapes alone, or a dataset's prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefixes: Option<bool>,
    /// Whether the run asked for exact output lengths (`ignore_eos`), so outputs ending by length are expected.
    #[serde(default)]
    pub exact_output_lengths: bool,
    /// The client's per-request records of the loaded run, for time-resolved rules (cold start, degradation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<crate::RequestRecord>,
    /// The server's metrics over the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerWindow>,
    /// Every scrape of that window, time-ordered (seconds on the run clock), for timelines and peaks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrapes: Vec<(f64, ServerReadings)>,
    /// Per pod, when read from a Prometheus that scrapes a fleet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pods: BTreeMap<String, ServerWindow>,
    /// Per pod, whether Prometheus could reach it and whether it started again over the same window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_health: BTreeMap<String, ReplicaHealth>,
    /// llm-d's endpoint picker, the gateway that chooses a replica per request, over the window: its scheduling
    /// latency, flow-control queue, ready replicas and failed attempts (its own series, not an engine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ServerWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogFacts>,
    /// Each GPU's health as nvidia-smi reported it (`--gpu FILE`, a bundle's `gpu/`), ideally under load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<crate::GpuState>,
    /// The GPU host's kernel log: the driver's XID errors (`--log FILE` with `journalctl -k` or `dmesg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<crate::KernelFacts>,
    /// How the host's GPUs reach each other (`nvidia-smi topo -m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<crate::GpuTopology>,
    /// Each GPU's NVLinks (`nvidia-smi nvlink -s`), with the file they were read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvlinks: Option<(String, Vec<crate::GpuNvLinks>)>,
    /// Each GPU's NVLink error counters (`nvidia-smi nvlink -e`) before the probe, with the file they were read
    /// from; with `nvlink_errors_after`, a window over which counters that grew grew under load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvlink_errors_before: Option<(String, Vec<crate::GpuNvLinkErrors>)>,
    /// The same counters read again after the probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvlink_errors_after: Option<(String, Vec<crate::GpuNvLinkErrors>)>,
    /// DCGM's diagnostic on the GPU host (`dcgmi diag -r 1`, which `collect --dcgm` runs after the probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcgm_diag: Option<crate::DcgmDiag>,
    /// The GPU host's software and environment as `vllm collect-env` printed it (`--env FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::EnvFacts>,
    /// GPU tools that did not answer within their deadline on the GPU host (`nvidia-smi -q -x`, as
    /// `collect`'s manifest records them): a wedged driver shows as a hang, not as an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_tool_timeouts: Vec<String>,
    /// How long reaching the server takes before any model work (`/health`), and how much a gateway adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkFacts>,
    /// The GPU host's own facts from /proc and /sys (a bundle's `host.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::HostFacts>,
    /// The server process's threads' CPU use over the probe (a bundle's `server/threads.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_threads: Option<crate::ServerThreads>,
    /// The server's Kubernetes pod: its containers' limits and restarts (a bundle's `k8s/pod.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::PodFacts>,
    /// The server's settings, gathered from its metrics, log, `/v1/models` and command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::ServerConfig>,
    /// What PyTorch profiler traces of the server say (`--trace FILE..`, a bundle's `trace/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceFacts>,
    /// The same prompts at temperature 0 alone and inside concurrent batches (`diagnose --determinism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determinism: Option<crate::DeterminismFacts>,
    /// One conversation through chat and, rendered with the model's template, completions (`--template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<crate::TemplateFacts>,
}

/// The name `Evidence::pods` files series under that carry no replica label: several replicas summed, never one.
pub const UNLABELLED_PODS: &str = "(no label)";

/// One replica's availability over a window, as the Prometheus that scrapes it saw it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaHealth {
    /// The share of scrapes that reached it (`avg_over_time(up[window])`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_share: Option<f64>,
    /// How many times its counters went back to zero (`resets()`): each is a restart of the server process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<f64>,
}

/// What the hardware could do at best, for "slower than it should be" rules.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HardwareFacts {
    pub gpu: String,
    pub model: String,
    pub tensor_parallel: u32,
    /// One decode step at batch 1 reading the weights at full memory bandwidth.
    pub decode_floor_seconds: f64,
    /// One prompt token's FLOPs at the GPU's peak (attention over earlier tokens left out); 0 where unknown.
    #[serde(default)]
    pub prefill_token_seconds: f64,
    /// Total VRAM and the weights' share of it, per GPU.
    pub vram_bytes: f64,
    pub weight_bytes: f64,
}

/// The prompt and output lengths the probes asked for.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadFacts {
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// The probe's concurrency (users).
    pub concurrency: u64,
    /// Tokens at the start of each prompt (within `input_tokens`) shared with other prompts, when known: the
    /// share of prompt tokens a prefix cache can serve at best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_tokens: Option<f64>,
}

/// What an engine log says, whatever server wrote it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogFacts {
    /// `vllm`, `sglang` or `llamacpp`; `unknown` for a log of no known server that still holds errors (a bare
    /// Python traceback).
    pub server: String,
    pub version: Option<String>,
    pub model: Option<String>,
    pub max_model_len: Option<u64>,
    /// Start-up arguments that differ from the server's defaults.
    pub non_default_args: BTreeMap<String, String>,
    /// Settings the log states outright whatever their value: vLLM's engine config line
    /// (`Initializing a V1 LLM engine … with config: enforce_eager=False, …`) and its chunked-prefill line
    /// (`max_num_batched_tokens`). Values as printed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engine_config: BTreeMap<String, String>,
    pub kv_capacity_tokens: Option<u64>,
    /// vLLM's "Maximum concurrency for N tokens per request: X": (X, N).
    pub max_concurrency: Option<(f64, u64)>,
    pub stats: Vec<LogStats>,
    /// Preemptions the log reports; `None` when it cannot report them (vLLM V1's stats lines before 2025-11
    /// carry no preemption field, SGLang's carry none), so silence is not "no preemptions". Older bundles
    /// stored a plain number, which still reads.
    #[serde(default)]
    pub preemptions: Option<u64>,
    /// vLLM's speculative decoding as its `SpecDecoding metrics` lines report it: (accepted, drafted) tokens,
    /// summed over the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_decode_tokens: Option<(u64, u64)>,
    /// The network NCCL said its collectives between hosts take (`Socket`: TCP; `IB`, `IBext…`: RDMA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective_network: Option<String>,
    pub out_of_memory: u64,
    pub errors: u64,
    /// Out-of-memory errors, fatal engine errors and other error records, one per distinct message, first
    /// seen first; errors printed while the server was being shut down are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<LogFailure>,
}

/// An error record of an engine log, quoted as the log printed it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogFailure {
    pub kind: LogFailureKind,
    /// 1-based number of the quoted line (its first occurrence).
    pub line: u64,
    /// The line that says what failed, e.g. `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate …`.
    pub message: String,
    /// The record's first line, where it says more than the message (`EngineCore encountered a fatal error.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Records with this message.
    pub count: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFailureKind {
    /// CUDA (or host) memory ran out: PyTorch's OutOfMemoryError, `CUDA error: out of memory`, llama.cpp's
    /// `failed to allocate`.
    OutOfMemory,
    /// The engine died: vLLM's EngineDeadError or fatal-error record, a dead engine process, SGLang's scheduler
    /// exception, llama.cpp's GGML_ASSERT.
    Fatal,
    /// Any other error record (a request's exception, a failed start-up check).
    #[default]
    Error,
}

/// One periodic stats line.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogStats {
    /// Seconds on the log's own clock, when it has one.
    pub t: Option<f64>,
    pub prompt_throughput: Option<f64>,
    pub generation_throughput: Option<f64>,
    pub running: Option<u64>,
    pub waiting: Option<u64>,
    pub preemptions: Option<u64>,
    /// 0–1.
    pub kv_usage: Option<f64>,
    /// 0–1.
    pub prefix_cache_hit_rate: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_bundles_log_facts_still_read() {
        // Before preemptions could be unknown and failures were kept: a plain count, no failures.
        let old = r#"{"server": "vllm", "version": null, "model": null, "max_model_len": null,
            "non_default_args": {}, "kv_capacity_tokens": null, "max_concurrency": null, "stats": [],
            "preemptions": 4, "out_of_memory": 1, "errors": 2}"#;
        let facts: LogFacts = serde_json::from_str(old).expect("an older bundle reads");
        assert_eq!(facts.preemptions, Some(4));
        assert!(facts.failures.is_empty());
        let unknown: LogFacts =
            serde_json::from_str(&old.replace("\"preemptions\": 4", "\"preemptions\": null"))
                .expect("unknown preemptions read");
        assert_eq!(unknown.preemptions, None);
    }
}

/// The path to the server before any model work, in the phases `curl -w` reports, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathTiming {
    pub connect_ms: f64,
    /// The TLS handshake; `None` over plain HTTP.
    pub tls_ms: Option<f64>,
    /// From the request sent to the response's first byte.
    pub first_byte_ms: f64,
}

/// Timings of a cheap endpoint (`/health`) through the URL users reach and, when given, straight to one server,
/// each the median of a few fresh connections.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkFacts {
    pub url: String,
    pub path: String,
    pub samples: u32,
    pub through: PathTiming,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<PathTiming>,
}
