//! The summary of a whole log: what the server is, its capacity and configuration, the stats timeline,
//! per-request timings and the problems, serialisable into run directories and JSON output.

use std::collections::BTreeMap;

use serde::Serialize;

use infer_doctor_core::{LogFailure, LogFailureKind};

use super::events::{RequestTiming, ServerKind, StatsSample, StatsSource};
use super::prefix::LogTime;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LogReport {
    /// The server with the most recognised lines; `None` when nothing was recognised.
    pub server: Option<ServerKind>,
    pub capacity: Capacity,
    pub configuration: Configuration,
    pub stats: Vec<StatsPoint>,
    /// llama.cpp's per-request timings.
    pub requests: Vec<RequestPoint>,
    /// Preemptions, out-of-memory errors and other errors, in log order.
    pub problems: Vec<Problem>,
    /// Distinct warning messages, first seen first.
    pub warnings: Vec<WarningSummary>,
    /// Warnings beyond [`super::MAX_DISTINCT_WARNINGS`] distinct messages, counted but not kept.
    pub warnings_not_kept: u64,
    /// vLLM's speculative decoding over the log: tokens accepted and drafted, summed over its metrics lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_decode_tokens: Option<(u64, u64)>,
    /// The network NCCL said its collectives use between hosts (`Socket`, `IB`, …), the last one logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collective_network: Option<String>,
    pub lines: LineCounts,
}

/// What the server can hold, as its start-up lines say. With several start-ups in one log, the last wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Capacity {
    /// vLLM's `KV cache size`, SGLang's `max_total_num_tokens`, llama.cpp's `n_ctx` (or slots × per-slot context).
    pub kv_cache_tokens: Option<u64>,
    /// `GPU`, or `CPU` on vLLM's CPU backend.
    pub kv_cache_device: Option<String>,
    /// vLLM V0's (and January 2025 V1's) block counts.
    pub device_blocks: Option<u64>,
    pub cpu_blocks: Option<u64>,
    /// vLLM's `Maximum concurrency for N tokens per request: X.XXx`: X, and N (the max model length it assumes).
    pub max_concurrency: Option<f64>,
    pub max_concurrency_tokens_per_request: Option<u64>,
    /// Memory given to the KV cache: vLLM's `Available KV cache memory`, SGLang's K + V sizes.
    pub kv_memory_gib: Option<f64>,
    /// SGLang's request and prefill limits.
    pub max_running_requests: Option<u64>,
    pub max_prefill_tokens: Option<u64>,
    /// llama.cpp's slots and the context each gets.
    pub slots: Option<u64>,
    pub context_per_slot: Option<u64>,
}

/// How the server was started and how long start-up took.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Configuration {
    pub version: Option<String>,
    /// vLLM's engine generation, `V1` or `V0`.
    pub engine: Option<String>,
    pub model: Option<String>,
    /// vLLM's `non-default args`.
    pub non_default_args: BTreeMap<String, String>,
    /// Settings vLLM states outright (its engine config line, its chunked-prefill line).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub engine_config: BTreeMap<String, String>,
    /// vLLM's `Using max model len`, SGLang's `context_len`.
    pub max_model_len: Option<u64>,
    pub model_memory_gib: Option<f64>,
    pub model_load_seconds: Option<f64>,
    pub graph_capture_seconds: Option<f64>,
    pub graph_memory_gib: Option<f64>,
    pub engine_init_seconds: Option<f64>,
    pub compilation_seconds: Option<f64>,
    pub server_address: Option<String>,
}

/// A stats sample and where it was logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsPoint {
    pub line: u64,
    pub time: Option<LogTime>,
    #[serde(flatten)]
    pub sample: StatsSample,
}

/// One request's timings and where they were logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestPoint {
    pub line: u64,
    pub time: Option<LogTime>,
    #[serde(flatten)]
    pub timing: RequestTiming,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Preemption,
    OutOfMemory,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub line: u64,
    pub time: Option<LogTime>,
    pub process: Option<String>,
    pub kind: ProblemKind,
    pub message: String,
    /// The message's own line number (`line` is the record's first line).
    pub message_line: u64,
    /// The record's first line, when the message came from further down a traceback.
    pub headline: Option<String>,
    /// Log lines the record spans.
    pub lines: u64,
    /// Printed after the server announced its shutdown: processes being torn down, not a crash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub during_shutdown: bool,
}

/// Distinct failure messages a log's facts keep; a request error repeated per request would otherwise grow
/// without bound.
const MAX_FAILURES_KEPT: usize = 20;

/// Words that mean the engine itself died, not one request: vLLM V1's engine-core records and exceptions,
/// SGLang's scheduler exception (it exits after it), ggml's assertion abort, CUDA's sticky errors.
const FATAL_MARKERS: [&str; 8] = [
    "EngineDeadError",
    "encountered a fatal error",
    "died unexpectedly",
    "Got fatal signal",
    "Scheduler hit an exception",
    "GGML_ASSERT",
    "CUDA error",
    "Fatal Python error",
];

impl Problem {
    /// What kind of failure this problem is, or `None` for a preemption or a shutdown's noise.
    fn failure_kind(&self) -> Option<LogFailureKind> {
        match self.kind {
            ProblemKind::Preemption => None,
            ProblemKind::OutOfMemory => Some(LogFailureKind::OutOfMemory),
            ProblemKind::Error if self.during_shutdown => None,
            ProblemKind::Error => {
                let says = |marker: &&str| {
                    self.message.contains(marker)
                        || self.headline.as_deref().is_some_and(|h| h.contains(marker))
                };
                Some(if FATAL_MARKERS.iter().any(says) {
                    LogFailureKind::Fatal
                } else {
                    LogFailureKind::Error
                })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WarningSummary {
    pub message: String,
    pub count: u64,
    pub first_line: u64,
    pub first_time: Option<LogTime>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LineCounts {
    pub read: u64,
    /// Lines that became (or are part of) an event.
    pub recognised: u64,
    pub skipped: u64,
}

impl LogReport {
    /// The canonical facts a diagnosis reads, without this server's vocabulary; `None` when nothing in the log
    /// was recognised. A log of no known server that holds errors (a bare traceback) still gives facts, with
    /// the server `unknown`, so its failures are not lost.
    pub fn facts(&self) -> Option<infer_doctor_core::LogFacts> {
        let failures = self.failures();
        let server = match self.server {
            Some(ServerKind::Vllm) => "vllm",
            Some(ServerKind::Sglang) => "sglang",
            Some(ServerKind::LlamaCpp) => "llamacpp",
            None if !failures.is_empty() => "unknown",
            None => return None,
        };
        let c = &self.configuration;
        let count =
            |kind: ProblemKind| self.problems.iter().filter(|p| p.kind == kind).count() as u64;
        Some(infer_doctor_core::LogFacts {
            server: server.to_string(),
            version: c.version.clone(),
            model: c.model.clone(),
            max_model_len: c.max_model_len,
            non_default_args: c.non_default_args.clone(),
            engine_config: c.engine_config.clone(),
            kv_capacity_tokens: self.capacity.kv_cache_tokens,
            max_concurrency: self
                .capacity
                .max_concurrency
                .zip(self.capacity.max_concurrency_tokens_per_request),
            stats: self
                .stats
                .iter()
                .map(|p| infer_doctor_core::LogStats {
                    t: p.time.as_ref().map(|t| t.seconds),
                    prompt_throughput: p.sample.prompt_throughput,
                    generation_throughput: p.sample.generation_throughput,
                    running: p.sample.running,
                    waiting: p.sample.waiting,
                    preemptions: p.sample.preemptions,
                    kv_usage: p.sample.kv_usage,
                    prefix_cache_hit_rate: p.sample.prefix_cache_hit_rate,
                })
                .collect(),
            preemptions: self.preemptions(),
            spec_decode_tokens: self.spec_decode_tokens,
            collective_network: self.collective_network.clone(),
            out_of_memory: count(ProblemKind::OutOfMemory),
            errors: count(ProblemKind::Error),
            failures,
        })
    }

    /// Preemptions, when this log can report them: a stats line with a preemption field, vLLM V0's stats (V0
    /// warns at the first preemption), or a preemption warning. vLLM V1 prints `Preemptions: N` only when
    /// non-zero, only since 2025-11 (vllm PR #28522), and then never because of a reset bug (vllm PR #38452);
    /// SGLang's batch lines never: their silence is not zero.
    pub fn preemptions(&self) -> Option<u64> {
        let warnings = self
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Preemption)
            .count() as u64;
        let reported = warnings > 0
            || self.stats.iter().any(|p| {
                p.sample.preemptions.is_some() || p.sample.source == Some(StatsSource::VllmV0)
            });
        reported.then(|| {
            self.stats
                .iter()
                .filter_map(|p| p.sample.preemptions)
                .sum::<u64>()
                + warnings
        })
    }

    /// Failures by distinct message, first seen first, shutdown noise left out. The cap holds per kind, so twenty
    /// varied request errors cannot crowd out the out-of-memory crash that follows them.
    fn failures(&self) -> Vec<LogFailure> {
        let mut failures: Vec<LogFailure> = Vec::new();
        for problem in &self.problems {
            let Some(kind) = problem.failure_kind() else {
                continue;
            };
            if let Some(seen) = failures
                .iter_mut()
                .find(|f| f.kind == kind && f.message == problem.message)
            {
                seen.count += 1;
            } else if failures.iter().filter(|f| f.kind == kind).count() < MAX_FAILURES_KEPT {
                failures.push(LogFailure {
                    kind,
                    line: problem.message_line,
                    message: problem.message.clone(),
                    headline: problem.headline.clone(),
                    count: 1,
                });
            }
        }
        failures
    }
}
