//! What a run concluded, as one value: the contract printed as a table, written to `run.json`, and read back by
//! later rooms. Field names carry their unit; formulas are in `FORMULAS` and `docs/METRICS.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::ErrorClass;
use crate::slo::SloResult;
use crate::stats::Summary;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub requests: RequestCounts,
    pub latency: Latencies,
    pub throughput: Throughput,
    pub tokens: TokenAccounting,
    pub client: ClientHealth,
    /// What became of the warm-up requests, which every other number leaves out. Absent (zeros) in runs recorded
    /// before it was counted.
    #[serde(default)]
    pub warmup: WarmupCounts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo: Vec<SloResult>,
    /// Plain-language warnings, each naming what to do.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Measured requests sent (warm-up excluded); always `ok + failed + interrupted`.
    pub sent: u64,
    pub ok: u64,
    /// Requests the server failed (or that failed on the way); never the ones the client stopped.
    pub failed: u64,
    /// Requests the client itself stopped before they ended (Ctrl-C, a probe's budget running out): no verdict on
    /// the server, so outside `failed` and the error rate. Absent (0) in runs recorded before it was counted.
    #[serde(default)]
    pub interrupted: u64,
    /// Requests re-sent once on a fresh connection because the pooled one had closed before any byte went out.
    pub retried: u64,
    pub warmup: u64,
    /// failed / (ok + failed): the share of requests with an outcome that failed.
    pub error_rate: f64,
    #[serde(default)]
    pub errors: Vec<ErrorCount>,
}

/// Warm-up requests by outcome: a warm-up the server failed or stalled leaves users waiting on it, so the measured
/// window may hold far fewer requests in flight than asked for although every measured request succeeded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmupCounts {
    /// Always `ok + failed + interrupted`.
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub interrupted: u64,
    #[serde(default)]
    pub errors: Vec<ErrorCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub class: ErrorClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub count: u64,
    /// The first message seen for this class.
    pub example: String,
}

/// Latency distributions in milliseconds over successful measured requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Open loop: the headline TTFT/E2E are the queue-inclusive ones (coordinated omission).
    pub open_loop: bool,
    pub ttft: Option<Summary>,
    pub ttfo: Option<Summary>,
    pub itl_gap: Option<Summary>,
    pub itl_token: Option<Summary>,
    pub tpot: Option<Summary>,
    pub e2e: Option<Summary>,
    pub ttft_from_schedule: Option<Summary>,
    pub e2e_from_schedule: Option<Summary>,
    pub client_queue: Option<Summary>,
}

impl Latencies {
    pub fn headline_ttft(&self) -> Option<&Summary> {
        if self.open_loop {
            self.ttft_from_schedule.as_ref()
        } else {
            self.ttft.as_ref()
        }
    }

    pub fn headline_e2e(&self) -> Option<&Summary> {
        if self.open_loop {
            self.e2e_from_schedule.as_ref()
        } else {
            self.e2e.as_ref()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub window_start_s: f64,
    pub window_end_s: f64,
    pub window_s: f64,
    /// False when the run had no steady part (everything sent at once); the window is then first send → last end.
    pub steady: bool,
    pub request_rate: f64,
    pub output_tokens_per_s: f64,
    pub input_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
    /// Requests meeting every SLO per second; `None` without SLOs.
    pub goodput_rate: Option<f64>,
    /// Good requests / measured requests sent (failures count against it).
    pub good_fraction: Option<f64>,
    /// ∫ in-flight dt / window, over measured requests.
    pub mean_concurrency: f64,
    /// Measured requests in flight at once, at most (warm-up requests still in flight are not counted).
    pub max_concurrency: u64,
    /// Requests sent per second inside the window.
    pub send_rate: f64,
    /// ∫ warm-up requests in flight dt / window: users still waiting on their warm-up after the first measured
    /// send. Absent (zero) in runs recorded before it was kept.
    #[serde(default)]
    pub warmup_in_flight: f64,
}

impl Throughput {
    /// Every request the client held at the server on average over the window, warm-up requests included: what
    /// the server's running and waiting counts are compared with, and what the users asked for should reach.
    pub fn held_in_flight(&self) -> f64 {
        self.mean_concurrency + self.warmup_in_flight
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenAccounting {
    pub input_total: u64,
    pub output_total: u64,
    pub mean_input: f64,
    pub mean_output: f64,
    pub mean_max_tokens: f64,
    /// Successful streamed requests whose stream carried no `usage`.
    pub usage_missing: u64,
    /// More token-bearing events than `usage.completion_tokens`, or per-chunk counts not adding up to it.
    pub usage_vs_events_mismatches: u64,
    pub tokenizer_checked: u64,
    /// |tokenizer − usage| > max(2, 10 % of usage).
    pub usage_vs_tokenizer_mismatches: u64,
    /// Ended with fewer tokens than `max_tokens` although the run asked for exact lengths (`--ignore-eos`).
    pub output_shorter_than_requested: u64,
    pub output_longer_than_requested: u64,
    /// Token-bearing events per output token (< 1 when chunks carry several tokens).
    pub events_per_token: f64,
    #[serde(default)]
    pub finish_reasons: BTreeMap<String, u64>,
    /// `usage.prompt_tokens` − tokens built, where the prompt was built to an exact length: what the server adds
    /// (BOS, chat template), or a sign that `--tokenizer` is not the served model's.
    #[serde(default)]
    pub prompt_tokens_added: Option<PromptTokensAdded>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensAdded {
    pub compared: u64,
    pub mean: f64,
    pub min: i64,
    pub max: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientHealth {
    pub requested_rate: Option<f64>,
    /// Intended send time → the pacer waking for it (timer and CPU lag; excludes waiting for a slot).
    pub schedule_lag: Option<Summary>,
    pub cpu_seconds: f64,
    /// Average cores busy in the client process over the run.
    pub cpu_cores_used: f64,
    pub cores: u32,
    /// Users of a closed loop: the requests the client meant to keep in flight all along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_concurrency: Option<u64>,
    /// An open loop reached its in-flight cap and queued requests in the client: by design, not the client lagging.
    #[serde(default)]
    pub held_at_limit: bool,
    /// Times the client fell so far behind its schedule that it slid the schedule.
    #[serde(default)]
    pub schedule_slips: u64,
    /// Seconds a due request waited for the prompt builder (an empty feed), counted once however many waited.
    #[serde(default)]
    pub prompt_wait_s: f64,
    /// `prompt_wait_s` over the run's wall time: the share of the run the prompt builder held the load back.
    #[serde(default)]
    pub prompt_wait_share: f64,
    /// The client process's peak resident memory (`VmHWM`) by the run's end, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// The client, not the server, limited this run: the playbook's `client.bound` verdict, set by whoever ran
    /// the playbook over these numbers (bench does, before writing run.json).
    pub client_bound: bool,
}

/// Every number's formula, printed into `run.json` so the file explains itself.
pub const FORMULAS: &[(&str, &str)] = &[
    (
        "ttft",
        "t1 - t_send; t1 = first event carrying text, reasoning or a tool call",
    ),
    ("ttfo", "first content event - t_send"),
    (
        "itl_gap",
        "every gap between consecutive token-bearing events, pooled over requests",
    ),
    (
        "itl_token",
        "gap / tokens in the later event (per-chunk usage when given, else spread evenly)",
    ),
    ("tpot", "(tN - t1) / (n - 1) per request, n > 1"),
    ("e2e", "tN - t_send (non-streamed: end of body - t_send)"),
    (
        "ttft_from_schedule",
        "t1 - t_int (t_int = intended send time)",
    ),
    ("e2e_from_schedule", "tN - t_int"),
    ("client_queue", "t_send - t_int"),
    (
        "n",
        "usage.completion_tokens, else local tokenizer count, else token-bearing events",
    ),
    (
        "request_rate",
        "successful completions inside the steady window / window",
    ),
    (
        "output_tokens_per_s",
        "output tokens whose event falls inside the steady window / window",
    ),
    (
        "total_tokens_per_s",
        "(input tokens of requests completed in the window + output tokens in the window) / window",
    ),
    (
        "goodput_rate",
        "successful requests meeting every SLO completed in the window / window",
    ),
    (
        "good_fraction",
        "good requests / requests sent (failures count against it)",
    ),
    (
        "mean_concurrency",
        "integral of in-flight measured requests over the window / window",
    ),
    (
        "warmup_in_flight",
        "integral of in-flight warm-up requests over the window / window",
    ),
    (
        "error_rate",
        "failed / (ok + failed): interrupted requests have no outcome",
    ),
    (
        "prompt_wait_share",
        "time a due request found no prompt built yet (counted once, however many waited) / run wall time",
    ),
    (
        "schedule_lag",
        "pacer wake-up - t_int (timer and CPU lag, before any wait for a slot)",
    ),
];
