//! The error-rate rule: what share of requests fail, and of which kind, from the client or else the server's
//! finish reasons. Source row: sim_capacity.md §D D17 (llm-d alerting rules, vllm-doctor).

use infer_doctor_core::summary::RequestCounts;
use infer_doctor_core::{Confidence, ErrorClass, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, percent, seen};
use crate::facts::{Facts, finite};

const ERROR_RATE: Rule = Rule {
    id: "errors.rate",
    symptom: Symptom::Errors,
    why: "A share of requests fail outright; users see errors whatever the latency, and failed requests also \
          distort every latency number, which only counts the successful ones.",
    remedies: &[
        "Read the error classes below: 5xx and broken streams point at backend health (crashes, OOM, restarts)",
        "429s are rate limits: raise the limit or slow the client",
        "400s about context length: budget prompt + max_tokens under max_model_len (see output.truncation)",
        "Timeouts: the server is overloaded (see the capacity findings) or the client timeout is too short",
    ],
    source: "llm-d/llm-d: docs/monitoring/prometheus-alerting-rules.yaml (LLMDElevatedErrorRate > 1% warning, \
             LLMDHighErrorRate > 5% critical); aminalaee/vllm-doctor: vllm_doctor/config.py (error rate 5%)",
};

/// Server finish reasons that are failures rather than answers.
pub const FAILED_FINISH_REASONS: [&str; 2] = ["abort", "error"];

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![error_rate(facts, t)]
}

/// The share of failed requests, where it was measured, how confident we are, and the breakdown by kind.
struct Failures {
    share: f64,
    total: f64,
    window: String,
    confidence: Confidence,
    by_kind: Vec<(String, f64)>,
}

/// Requests the client stopped itself (Ctrl-C, a probe's budget): no verdict on the server. Runs recorded before
/// they were counted apart list them as failures of class `interrupted`, so those are taken out here too.
fn stopped_by_client(requests: &RequestCounts) -> (u64, u64) {
    let listed_as_failed: u64 = requests
        .errors
        .iter()
        .filter(|e| e.class == ErrorClass::Interrupted)
        .map(|e| e.count)
        .sum();
    (requests.interrupted, listed_as_failed)
}

/// `None` when no request had an outcome: then the server's count would only see the client's own hang-ups.
fn from_client(facts: &Facts, requests: &RequestCounts) -> Option<Failures> {
    let (interrupted, listed_as_failed) = stopped_by_client(requests);
    let failed = requests.failed.saturating_sub(listed_as_failed);
    let with_outcome = requests.sent.saturating_sub(interrupted + listed_as_failed);
    if with_outcome == 0 {
        return None;
    }
    let share = if listed_as_failed > 0 {
        failed as f64 / with_outcome as f64
    } else {
        finite(requests.error_rate).unwrap_or(failed as f64 / with_outcome as f64)
    };
    let by_kind = requests
        .errors
        .iter()
        .filter(|e| e.class != ErrorClass::Interrupted)
        .map(|e| {
            let kind = match e.status {
                Some(status) => format!("{} {status}", e.class.as_str()),
                None => e.class.as_str().to_string(),
            };
            (kind, e.count as f64)
        })
        .collect();
    Some(Failures {
        share,
        total: with_outcome as f64,
        window: facts.client_window_label(),
        confidence: Confidence::High,
        by_kind,
    })
}

fn from_server(facts: &Facts) -> Option<Failures> {
    let finished = facts.counter(Signal::RequestsFinished)?;
    let total: f64 = finished.by_label.values().filter(|v| v.is_finite()).sum();
    if total <= 0.0 {
        return None;
    }
    let by_kind: Vec<(String, f64)> = FAILED_FINISH_REASONS
        .iter()
        .filter_map(|reason| {
            finished
                .by_label
                .get(*reason)
                .map(|n| (format!("finished {reason}"), *n))
        })
        .filter(|(_, n)| n.is_finite() && *n > 0.0)
        .collect();
    let failed: f64 = by_kind.iter().map(|(_, n)| n).sum();
    Some(Failures {
        share: failed / total,
        total,
        window: facts.server_window_label(),
        // Aborts include clients that hung up on purpose, so the server's count is weaker evidence.
        confidence: Confidence::Medium,
        by_kind,
    })
}

fn error_rate(facts: &Facts, t: &Thresholds) -> Assessment {
    let failures = match facts.client().filter(|c| c.requests.sent > 0) {
        Some(client) => from_client(facts, &client.requests),
        None => from_server(facts),
    };
    let Some(failures) = failures else {
        return ERROR_RATE.unknown("request outcomes", how::LOADED_PROBE);
    };
    if failures.share <= t.error_rate_warning {
        return ERROR_RATE.passes(format!(
            "{} of {:.0} requests failed",
            percent(failures.share),
            failures.total
        ));
    }
    let severity = if failures.share > t.error_rate_critical {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let threshold = if severity == Severity::Critical {
        t.error_rate_critical
    } else {
        t.error_rate_warning
    };
    let mut by_kind = failures.by_kind.clone();
    by_kind.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut evidence = vec![compared(
        "error rate",
        failures.share,
        ">",
        threshold,
        &failures.window,
    )];
    evidence.extend(
        by_kind
            .iter()
            .map(|(kind, count)| seen(format!("errors: {kind}"), *count, &failures.window)),
    );
    let breakdown = by_kind
        .iter()
        .map(|(kind, count)| format!("{kind} ×{count:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    ERROR_RATE.fires(
        severity,
        failures.confidence,
        if breakdown.is_empty() {
            format!("{} of requests fail", percent(failures.share))
        } else {
            format!("{} of requests fail ({breakdown})", percent(failures.share))
        },
        evidence,
    )
}
