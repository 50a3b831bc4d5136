//! vLLM's engine steps in a trace: each step's annotation (`execute_context_N(T)_generation_M(U)`, written by its
//! worker around every model execution) says what it ran, so its GPU work splits into prefill, decode and mixed.

use std::collections::HashMap;

use serde::Serialize;

use crate::event::{GpuKind, GpuOp};
use crate::intervals::{covered, union};
use crate::kernel::KernelClass;
use crate::read::Trace;

/// What a step ran: prompts (context requests, chunked-prefill chunks included), decodes, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prefill,
    Decode,
    Mixed,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
            Phase::Mixed => "mixed",
        }
    }
}

/// One engine step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// µs from the first step's start.
    pub start_us: f64,
    pub phase: Phase,
    pub context_requests: u64,
    pub context_tokens: u64,
    pub generation_requests: u64,
    pub generation_tokens: u64,
    /// The annotation's length on the CPU: scheduling the step's work, launching it, waiting for it.
    pub cpu_us: f64,
    /// First start to last end of the GPU ops it launched, and the time within that the GPU ran any of them.
    pub gpu_span_us: f64,
    pub gpu_busy_us: f64,
    /// Busy time per class, in `KernelClass::ALL` order (zeros omitted).
    pub classes: Vec<(KernelClass, f64)>,
    /// Host↔device copies launched inside the step: a CPU-GPU round trip on the step's path.
    pub host_copies: u64,
    pub host_copy_us: f64,
}

/// Steps, and per phase what the GPU spent them on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Steps {
    pub steps: Vec<Step>,
    pub phases: Vec<PhaseSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub phase: Phase,
    pub steps: u64,
    pub tokens: u64,
    pub mean_cpu_us: f64,
    pub mean_gpu_busy_us: f64,
    pub mean_gpu_span_us: f64,
    /// Idle share of the GPU within its steps' spans, %; none where the steps ran no GPU work (a CPU profile).
    pub gpu_idle_pct: Option<f64>,
    /// Busy time per class over the phase, largest first.
    pub classes: Vec<(KernelClass, f64)>,
    pub host_copies: u64,
    pub host_copy_us: f64,
}

/// The counts of an `execute_context_N(T)_generation_M(U)` annotation, or of its detailed form
/// `execute_S_context_N(sqT…)_generation_M(sqU…)`.
fn parse_step(name: &str) -> Option<[u64; 4]> {
    let rest = name.strip_prefix("execute_")?;
    let (context, generation) = rest.split_once("_generation_")?;
    let context = context.rsplit_once("context_")?.1;
    let counts = |part: &str| -> Option<(u64, u64)> {
        let (requests, tokens) = part.split_once('(')?;
        let tokens = tokens.strip_prefix("sq").unwrap_or(tokens);
        let digits: String = tokens.chars().take_while(char::is_ascii_digit).collect();
        Some((requests.parse().ok()?, digits.parse().ok()?))
    };
    let (cr, ct) = counts(context)?;
    let (gr, gt) = counts(generation)?;
    Some([cr, ct, gr, gt])
}

/// The engine steps of a vLLM trace; `None` when it has no step annotations (another engine, or vLLM before them).
pub fn engine_steps(trace: &Trace, ops: &[GpuOp]) -> Option<Steps> {
    let mut annotated: Vec<(f64, f64, [u64; 4])> = trace
        .annotations
        .iter()
        .filter(|a| !a.on_gpu)
        .filter_map(|a| Some((a.ts, a.dur, parse_step(trace.names.get(a.name))?)))
        .collect();
    if annotated.is_empty() {
        return None;
    }
    annotated.sort_by(|a, b| a.0.total_cmp(&b.0));
    let launch_ts: HashMap<i64, f64> = trace
        .runtime
        .iter()
        .filter_map(|c| Some((c.correlation?, c.ts)))
        .collect();
    // Each op goes to the step whose CPU range holds its launch.
    let mut launched: Vec<(f64, &GpuOp)> = ops
        .iter()
        .filter(|op| op.kind != GpuKind::Sync)
        .filter_map(|op| Some((*launch_ts.get(&op.correlation?)?, op)))
        .collect();
    launched.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = annotated[0].0;
    let steps: Vec<Step> = annotated
        .iter()
        .map(|(ts, dur, [cr, ct, gr, gt])| {
            let from = launched.partition_point(|(at, _)| *at < *ts);
            let to = launched.partition_point(|(at, _)| *at <= ts + dur);
            let own: Vec<&GpuOp> = launched[from..to].iter().map(|(_, op)| *op).collect();
            step(*ts - first, *dur, [*cr, *ct, *gr, *gt], &own, trace)
        })
        .collect();
    let phases = [Phase::Prefill, Phase::Decode, Phase::Mixed]
        .into_iter()
        .filter_map(|phase| summarise(phase, &steps))
        .collect();
    Some(Steps { steps, phases })
}

fn step(start_us: f64, cpu_us: f64, counts: [u64; 4], ops: &[&GpuOp], trace: &Trace) -> Step {
    let [
        context_requests,
        context_tokens,
        generation_requests,
        generation_tokens,
    ] = counts;
    let phase = match (context_requests > 0, generation_requests > 0) {
        (true, false) => Phase::Prefill,
        (false, _) => Phase::Decode,
        (true, true) => Phase::Mixed,
    };
    let busy = union(ops.iter().map(|op| (op.ts, op.end())));
    let gpu_span_us = match (busy.first(), busy.last()) {
        (Some(first), Some(last)) => last.1 - first.0,
        _ => 0.0,
    };
    let classes = KernelClass::ALL
        .iter()
        .filter_map(|class| {
            let time = covered(&union(
                ops.iter()
                    .filter(|op| op.class == *class)
                    .map(|op| (op.ts, op.end())),
            ));
            (time > 0.0).then_some((*class, time))
        })
        .collect();
    let copies: Vec<&&GpuOp> = ops
        .iter()
        .filter(|op| {
            let name = trace.names.get(op.name);
            op.kind == GpuKind::Memcpy && (name.contains("HtoD") || name.contains("DtoH"))
        })
        .collect();
    Step {
        start_us,
        phase,
        context_requests,
        context_tokens,
        generation_requests,
        generation_tokens,
        cpu_us,
        gpu_span_us,
        gpu_busy_us: covered(&busy),
        classes,
        host_copies: copies.len() as u64,
        host_copy_us: copies.iter().map(|op| op.dur).sum(),
    }
}

fn summarise(phase: Phase, steps: &[Step]) -> Option<PhaseSummary> {
    let of: Vec<&Step> = steps.iter().filter(|s| s.phase == phase).collect();
    if of.is_empty() {
        return None;
    }
    let n = of.len() as f64;
    let mut classes: Vec<(KernelClass, f64)> = KernelClass::ALL
        .iter()
        .map(|class| {
            let time = of
                .iter()
                .flat_map(|s| s.classes.iter())
                .filter(|(c, _)| c == class)
                .map(|(_, t)| t)
                .sum();
            (*class, time)
        })
        .filter(|(_, t)| *t > 0.0)
        .collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let spans: f64 = of.iter().map(|s| s.gpu_span_us).sum();
    let busy: f64 = of.iter().map(|s| s.gpu_busy_us).sum();
    Some(PhaseSummary {
        phase,
        steps: of.len() as u64,
        tokens: of
            .iter()
            .map(|s| s.context_tokens + s.generation_tokens)
            .sum(),
        mean_cpu_us: of.iter().map(|s| s.cpu_us).sum::<f64>() / n,
        mean_gpu_busy_us: busy / n,
        mean_gpu_span_us: spans / n,
        gpu_idle_pct: (spans > 0.0).then(|| 100.0 * (spans - busy) / spans),
        classes,
        host_copies: of.iter().map(|s| s.host_copies).sum(),
        host_copy_us: of.iter().map(|s| s.host_copy_us).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_vllms_step_annotation_are_read() {
        assert_eq!(
            parse_step("execute_context_2(1024)_generation_30(30)"),
            Some([2, 1024, 30, 30])
        );
        assert_eq!(
            parse_step(
                "execute_542_context_1(sq512sk512sqsq262144sqsk262144)_generation_30(sq30sk9000sqsq30sqsk9000)"
            ),
            Some([1, 512, 30, 30])
        );
        assert_eq!(parse_step("execute_model"), None);
        assert_eq!(parse_step("gpu_model_runner: forward"), None);
    }
}
