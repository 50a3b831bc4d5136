//! Engine failure rules: an engine log that shows the server ran out of GPU memory, died, or logged errors
//! outweighs every latency number, so each is a finding quoting the log's own line, never a silent count.

use infer_doctor_core::{
    CheckStatus, Confidence, LogFacts, LogFailure, LogFailureKind, Severity, Symptom,
};

use crate::assessment::{Assessment, Rule, how, seen};
use crate::facts::Facts;

const OUT_OF_MEMORY: Rule = Rule {
    id: "engine.out_of_memory",
    symptom: Symptom::Errors,
    why: "The engine asked for GPU memory that was not there. vLLM gives --gpu-memory-utilization of the GPU \
          to weights and KV cache and runs activations, sampling and CUDA graphs in what is left; a batch larger \
          than that headroom, or another process on the GPU, makes PyTorch's allocator fail and the engine dies \
          with every request in flight.",
    remedies: &[
        "Lower --gpu-memory-utilization (e.g. 0.90 → 0.85) to leave more headroom outside vLLM's pool",
        "Lower --max-num-seqs and --max-num-batched-tokens: smaller steps need smaller activation buffers",
        "Lower --max-model-len if requests never need the full context",
        "Make sure no other process holds memory on the GPU (nvidia-smi), then restart",
        "Quantize the weights or the KV cache (--kv-cache-dtype fp8), or add GPUs (--tensor-parallel-size); \
         llama.cpp: lower --n-gpu-layers, --ctx-size or --parallel",
    ],
    source: "vLLM docs: https://docs.vllm.ai/en/latest/configuration/conserving_memory.html and \
             https://docs.vllm.ai/en/latest/usage/troubleshooting.html; PyTorch torch.OutOfMemoryError",
};

const FATAL_ERROR: Rule = Rule {
    id: "engine.fatal_error",
    symptom: Symptom::Errors,
    why: "The engine process died: every request in flight failed, and the server answers nothing (or only \
          errors) until it is restarted. The quoted line names the failure; the root cause is the first \
          exception of its traceback, above the EngineDeadError lines that follow it.",
    remedies: &[
        "Read the traceback at the quoted line: the first exception is the cause, EngineDeadError only the echo",
        "A CUDA error (illegal memory access, device-side assert) can be a bad GPU: check the kernel log for XIDs",
        "Search the vLLM / SGLang / llama.cpp issue trackers for the exception; upgrade if it is a known bug",
        "Restart on failure: a liveness probe on /health and a restart policy replace a dead engine",
    ],
    source: "vLLM vllm/v1/engine/exceptions.py (EngineDeadError), vllm/v1/engine/core.py (\"EngineCore \
             encountered a fatal error\"), https://docs.vllm.ai/en/latest/usage/troubleshooting.html; SGLang \
             python/sglang/srt/managers/scheduler.py (run_scheduler_process); ggml ggml_abort (GGML_ASSERT)",
};

const ERRORS: Rule = Rule {
    id: "engine.errors",
    symptom: Symptom::Errors,
    why: "The engine logged error records that did not kill it: failed requests or failed checks, which the \
          client sees as errors and which latency numbers, counting only answered requests, do not show.",
    remedies: &[
        "Read the quoted record: a request's exception names the input that broke it",
        "Compare with the client's error classes (errors.rate) to see which requests failed",
    ],
    source: "vLLM https://docs.vllm.ai/en/latest/usage/troubleshooting.html; uvicorn \"Exception in ASGI \
             application\"",
};

/// The checklist line's rules, in the order the line reports them.
pub(crate) const RULES: [&str; 3] = [OUT_OF_MEMORY.id, FATAL_ERROR.id, ERRORS.id];

/// Quotes longer than this are cut: a PyTorch OOM line runs to several hundred characters.
const QUOTE_CHARS: usize = 200;

pub(crate) fn assess(facts: &Facts, _: &crate::Thresholds) -> Vec<Assessment> {
    let rules = [
        (&OUT_OF_MEMORY, LogFailureKind::OutOfMemory),
        (&FATAL_ERROR, LogFailureKind::Fatal),
        (&ERRORS, LogFailureKind::Error),
    ];
    rules
        .into_iter()
        .map(|(rule, kind)| match &facts.evidence.log {
            Some(log) => failure(log, rule, kind),
            None => rule.unknown("an engine log", how::LOG),
        })
        .collect()
}

fn failure(log: &LogFacts, rule: &Rule, kind: LogFailureKind) -> Assessment {
    let of_kind: Vec<&LogFailure> = log.failures.iter().filter(|f| f.kind == kind).collect();
    let Some(first) = of_kind.first() else {
        return rule.passes(format!("the engine log ({}) has none", log.server));
    };
    let count: u64 = of_kind.iter().map(|f| f.count).sum();
    let (severity, confidence, what, records) = match kind {
        LogFailureKind::OutOfMemory => (
            Severity::Critical,
            Confidence::High,
            "the engine ran out of memory",
            "out-of-memory records",
        ),
        LogFailureKind::Fatal => (
            Severity::Critical,
            Confidence::High,
            "the engine died",
            "fatal error records",
        ),
        LogFailureKind::Error => (
            Severity::Warning,
            Confidence::Medium,
            "the engine logged errors",
            "error records",
        ),
    };
    let mut evidence = vec![seen(records, count as f64, "engine log")];
    evidence.extend(
        of_kind
            .iter()
            .map(|f| seen(quote(f), f.count as f64, "engine log")),
    );
    let more = if count > 1 {
        format!(" ({count} records)")
    } else {
        String::new()
    };
    rule.fires(
        severity,
        confidence,
        format!("{what}{more}: {}", quote(first)),
        evidence,
    )
}

/// `line 5: torch.OutOfMemoryError: …` with the record's first line when it says more.
fn quote(failure: &LogFailure) -> String {
    let mut text = format!("line {}: {}", failure.line, cut(&failure.message));
    if let Some(headline) = &failure.headline {
        text.push_str(&format!(" (in the record \"{}\")", cut(headline)));
    }
    text
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The checklist's answer from the three rules: failed if any fired, unknown without a log.
pub(crate) fn check_status(assessments: &[&Assessment]) -> (CheckStatus, String, Option<String>) {
    let failed: Vec<&str> = assessments
        .iter()
        .filter(|a| a.status == CheckStatus::Fail)
        .map(|a| a.detail.as_str())
        .collect();
    if !failed.is_empty() {
        return (CheckStatus::Fail, failed.join("; "), None);
    }
    if let Some(unknown) = assessments
        .iter()
        .find(|a| a.status == CheckStatus::Unknown)
    {
        return (
            CheckStatus::Unknown,
            unknown.detail.clone(),
            unknown.how_to_know.clone(),
        );
    }
    (
        CheckStatus::Pass,
        "the engine log has no out-of-memory, fatal or error record".to_string(),
        None,
    )
}
