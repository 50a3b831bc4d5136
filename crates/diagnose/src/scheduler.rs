//! llm-d's endpoint picker, the gateway that chooses a replica for every request: when it is the slow part (slow
//! scheduling, its flow-control queue holding requests back, no ready replica to pick) users wait while engines idle.

use infer_doctor_core::signals::{HistogramStats, ServerWindow};
use infer_doctor_core::{Confidence, Observation, Severity, Signal, Symptom, UNLABELLED_PODS};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, ms, percent, seen};
use crate::facts::{Facts, finite};

const SCHEDULER: Rule = Rule {
    id: "llmd.scheduler",
    symptom: Symptom::Ttft,
    why: "Every request passes llm-d's endpoint picker (EPP) before any engine sees it: the picker scores the \
          replicas (queue depth, KV-cache use, prefix-cache affinity) and, with flow control on, holds requests in \
          its own queue while it judges the pool saturated. A slow scoring pass, a queue in the picker, failed \
          scheduling attempts (no replica could take the request) or a pool with no ready replica all add to the \
          time to first token or fail the request, while the engines' own metrics look calm.",
    remedies: &[
        "A queue in the picker with engines that have room: its saturation detector's thresholds (queue depth, KV \
         use) are tighter than the engines need; raise them, or add replicas if the engines are in fact full",
        "Slow scheduling: fewer or cheaper scorer plugins (the prefix-cache scorer's indexer grows with the \
         traffic), more EPP replicas or CPU for the EPP pod; read `llm_d_epp_plugin_duration_seconds` per plugin",
        "Failed attempts or no ready endpoints: check the InferencePool's selector and target port against the \
         model server pods, the pods' readiness probes, and the picker's log for endpoints it dropped as stale",
    ],
    source: "llm-d/llm-d-router: pkg/epp/metrics (llm_d_epp_scheduler_e2e_duration_seconds, \
             llm_d_epp_scheduler_attempts_total by status, llm_d_epp_flow_control_request_queue_duration_seconds, \
             llm_d_epp_ready_endpoints); kubernetes-sigs/gateway-api-inference-extension: pkg/epp/metrics (their \
             inference_extension_* twins); \
             https://github.com/kubernetes-sigs/gateway-api-inference-extension/tree/main/docs/proposals/006-scheduler \
             (decide within O(10 ms)); the thresholds are infer-doctor's own (inference)",
};

/// Scheduling decisions a tail quantile needs before it means anything.
const MIN_DECISIONS: f64 = 20.0;

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![scheduler(facts, t)]
}

/// A histogram that saw something in the window.
fn observed(window: &ServerWindow, signal: Signal) -> Option<&HistogramStats> {
    window
        .histogram(signal)
        .filter(|h| finite(h.count).is_some_and(|n| n > 0.0))
}

/// One thing the picker got wrong, with its numbers.
struct Problem {
    what: String,
    severity: Severity,
    evidence: Vec<Observation>,
}

fn scheduler(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(picker) = &facts.evidence.scheduler else {
        return SCHEDULER.unknown(
            "llm-d endpoint picker metrics",
            "pass --prometheus URL (one that scrapes the EPP beside the replicas), or --scheduler-metrics FILE.. \
             (scrapes of the EPP's /metrics)",
        );
    };
    let window = if picker.no_clock || picker.seconds() <= 0.0 {
        "endpoint picker metrics".to_string()
    } else {
        format!("endpoint picker metrics over {:.0} s", picker.seconds())
    };
    let mut problems = Vec::new();
    let mut read = Vec::new();

    if let Some(ready) = picker.gauge(Signal::ReadyReplicas) {
        read.push("ready endpoints");
        // Replicas with engine samples in the window: one down all along is no endpoint to be ready.
        let serving = facts
            .evidence
            .pods
            .iter()
            .filter(|(p, w)| p.as_str() != UNLABELLED_PODS && !w.gauges.is_empty())
            .count();
        if finite(ready.min).is_some_and(|m| m < 1.0) {
            problems.push(Problem {
                what: "the pool had no ready endpoint for part of the window".into(),
                severity: Severity::Critical,
                evidence: vec![seen("ready endpoints (least)", ready.min, &window)],
            });
        } else if serving > 0 && finite(ready.max).is_some_and(|m| m < serving as f64) {
            problems.push(Problem {
                what: format!(
                    "the picker counted at most {:.0} ready endpoints while {serving} replicas served",
                    ready.max
                ),
                severity: Severity::Warning,
                evidence: vec![seen("ready endpoints (most)", ready.max, &window)],
            });
        }
    }

    if let Some(attempts) = picker.counter(Signal::SchedulingAttempts) {
        let total = finite(attempts.increase).filter(|n| *n > 0.0);
        if let Some(total) = total {
            read.push("scheduling attempts");
            let failed = attempts.by_label.get("failure").copied().unwrap_or(0.0);
            let share = failed / total;
            if share > t.error_rate_warning {
                problems.push(Problem {
                    what: format!(
                        "{} of {total:.0} scheduling attempts failed (no replica could take the request)",
                        percent(share)
                    ),
                    severity: if share > t.error_rate_critical {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    evidence: vec![seen("failed scheduling share", share, &window)],
                });
            }
        }
    }

    if let Some(latency) = observed(picker, Signal::SchedulingLatency)
        .filter(|h| h.count >= MIN_DECISIONS)
        .filter(|h| finite(h.p99).is_some())
    {
        read.push("scheduling latency");
        if latency.p99 > t.epp_scheduling_p99_seconds {
            problems.push(Problem {
                what: format!("choosing a replica took {} at p99", ms(latency.p99 * 1e3)),
                severity: Severity::Warning,
                evidence: vec![seen("scheduling latency p99 (s)", latency.p99, &window)],
            });
        }
    }

    if let Some(queue) =
        observed(picker, Signal::GatewayQueueTime).filter(|h| finite(h.p90).is_some())
    {
        read.push("flow-control queue time");
        // The gateway's own TTFT, else the client's: the wait the queue is a share of.
        let ttft = observed(picker, Signal::Ttft)
            .and_then(|h| finite(h.p90))
            .or_else(|| {
                facts
                    .client()
                    .and_then(crate::facts::ttft)
                    .and_then(|s| finite(s.p90))
            });
        let long = queue.p90 >= t.epp_queue_min_seconds;
        let large_share = ttft.is_none_or(|ttft| queue.p90 >= t.epp_queue_ttft_share * ttft);
        if long && large_share {
            let share = ttft
                .map(|ttft| {
                    format!(
                        ", {} of TTFT p90 {}",
                        percent(queue.p90 / ttft),
                        ms(ttft * 1e3)
                    )
                })
                .unwrap_or_default();
            let mut evidence = vec![seen("flow-control queue time p90 (s)", queue.p90, &window)];
            if let Some(ttft) = ttft {
                evidence.push(seen("TTFT p90 (s)", ttft, &window));
            }
            problems.push(Problem {
                what: format!(
                    "requests waited {} (p90) in the picker's flow-control queue{share}",
                    ms(queue.p90 * 1e3)
                ),
                severity: Severity::Warning,
                evidence,
            });
        }
    }

    // Ready endpoints alone say nothing of how the picker schedules: a pass needs its own work read.
    if read.iter().all(|r| *r == "ready endpoints") && problems.is_empty() {
        return SCHEDULER.unknown(
            "the picker's scheduling latency, attempts, flow-control queue or ready endpoints (its metrics had none \
             of them, or too few decisions in the window)",
            "scrape the EPP's /metrics over a window with traffic (llm_d_epp_* or inference_extension_* series)",
        );
    }
    if problems.is_empty() {
        return SCHEDULER.passes(format!(
            "the endpoint picker kept up ({} read)",
            read.join(", ")
        ));
    }
    let severity = problems
        .iter()
        .map(|p| p.severity)
        .min()
        .unwrap_or(Severity::Warning);
    let verdict = problems
        .iter()
        .map(|p| p.what.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    SCHEDULER.fires(
        severity,
        Confidence::High,
        format!("llm-d's endpoint picker holds requests up: {verdict}"),
        problems.into_iter().flat_map(|p| p.evidence).collect(),
    )
}
