//! What a profiler trace says about where the GPU's time went, per rank, in the terms the trace rules judge: the
//! trace room fills it from its analyses, `diagnose` reads it without knowing any trace format.

use serde::{Deserialize, Serialize};

/// Every rank of one profiling session (`diagnose --trace`, a bundle's `trace/`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceFacts {
    pub ranks: Vec<RankTrace>,
}

/// One rank's trace. Times in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RankTrace {
    /// The file it was read from.
    pub source: String,
    pub rank: Option<u32>,
    /// First GPU op start to last end; 0 in a CPU-only trace.
    pub span_us: f64,
    /// HTA's temporal breakdown: no op on any stream; HTA's COMPUTATION ops; the rest.
    pub idle_us: f64,
    pub compute_us: f64,
    /// HTA's idle-time breakdown summed over streams: the CPU launched late, gaps between kernels, other waits.
    pub idle_host_wait_us: f64,
    pub idle_kernel_wait_us: f64,
    pub idle_other_us: f64,
    /// The union of every op: the time the GPU ran anything.
    pub busy_us: f64,
    pub kernels: u64,
    /// Kernels under 10 µs (TraceLens's short-kernel threshold).
    pub short_kernels: u64,
    pub kernels_from_graphs: u64,
    pub launch_delay_p50_us: Option<f64>,
    /// Communication (NCCL/RCCL and vLLM's custom all-reduce) busy time, and the part of it no compute ran under.
    pub communication_us: f64,
    pub communication_exposed_us: f64,
    /// vLLM's engine steps by phase, where its annotations are in the trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseTrace>,
    /// The steps one by one, in time order, for drawing: all of them up to `MAX_DRAWN_STEPS`, else evenly spaced
    /// ones; `steps_total` counts them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTrace>,
    #[serde(default)]
    pub steps_total: u64,
    /// The kernels that took the most GPU time, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_kernels: Vec<KernelTrace>,
    /// Where the file ended early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
}

/// Steps kept per rank for drawing: a bar each is still legible at this many.
pub const MAX_DRAWN_STEPS: usize = 600;

/// One engine step: when it began (µs after the first), its phase, and what the GPU did during it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    pub start_us: f64,
    pub phase: String,
    pub cpu_us: f64,
    /// First op start to last op end of the ops launched in the step, and the union of those ops within it.
    pub gpu_span_us: f64,
    pub gpu_busy_us: f64,
    /// GPU busy time per kernel class (`GEMM`, `attention (paged)`, …), in one fixed order for every step.
    pub classes: Vec<(String, f64)>,
}

/// One kernel name's share of the GPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelTrace {
    pub name: String,
    pub class: String,
    pub count: u64,
    pub total_us: f64,
}

/// The engine steps of one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTrace {
    /// `prefill`, `decode` or `mixed`.
    pub phase: String,
    pub steps: u64,
    /// Tokens scheduled over the phase's steps: prompt tokens and generated ones.
    #[serde(default)]
    pub tokens: u64,
    /// Per step, what the GPU was busy with, and the span from its first op's start to its last op's end.
    pub mean_gpu_busy_us: f64,
    pub mean_gpu_span_us: f64,
    /// The class that took the most GPU time (`GEMM`, `attention (paged)`, …) and its share of the busy time.
    pub dominant_class: String,
    pub dominant_share: f64,
    /// Host↔device copies launched inside the steps, and their time.
    pub host_copies: u64,
    pub host_copy_us: f64,
    /// The phase's whole GPU busy time.
    pub gpu_busy_us: f64,
}
