//! The playbook as a pure function: `Evidence` in, findings, the quick checklist and a one-line headline out, no
//! I/O, so every rule is a table test over values. Rules live one module per family (DESIGN.md §6).

mod assessment;
mod cache;
mod capacity;
pub mod changes;
mod checklist;
pub mod compare;
mod config;
mod consistency;
mod disagg;
pub mod drift;
mod engine;
mod errors;
mod facts;
mod fleet;
mod hardware;
mod host;
mod itl;
mod multinode;
mod network;
mod output;
mod scheduler;
mod thresholds;
mod throughput;
mod topology;
mod trace;
mod ttft;
mod upstream;

use infer_doctor_core::{Diagnosis, Evidence, Finding, Severity, Symptom};

pub use assessment::Rule;
pub use errors::FAILED_FINISH_REASONS;
pub use thresholds::{ThresholdError, Thresholds};

/// The rules whose conditions a Prometheus can evaluate from the server's own metrics, so that alert rules
/// generated from the playbook (the `export` room) say what `diagnose` would say, in its words.
pub mod rules {
    pub use crate::capacity::{BATCH_CAP, KV_SATURATED, PREEMPTIONS};
    pub use crate::errors::{ERROR_RATE, FAILED_FINISH_REASONS};
    pub use crate::itl::BATCH_SIZE;
    pub use crate::throughput::DEGRADED;
    pub use crate::ttft::{PREFILL_BOUND, QUEUEING};
}

use assessment::{Assessment, ms, percent};
use facts::Facts;

/// Every rule family, in the order that breaks ties between equally severe and confident findings: failures
/// first, then root causes (capacity, upstream) before the symptoms they explain (TTFT, ITL).
const FAMILIES: [fn(&Facts, &Thresholds) -> Vec<Assessment>; 20] = [
    // An engine that died or ran out of memory explains the errors and every number after it.
    engine::assess,
    errors::assess,
    // A failing or slowed GPU is under every other number.
    hardware::assess,
    topology::assess,
    // So is an engine split over hosts whose every step waits on the network between them.
    multinode::assess,
    // So is a host that swaps, throttles or places the server far from its GPUs.
    host::assess,
    capacity::assess,
    upstream::assess,
    // A slow KV link between prefill and decode replicas is in every disaggregated request's TTFT.
    disagg::assess,
    // A router that piles requests onto one replica explains that replica's queue and the fleet's latency.
    fleet::assess,
    // So does a gateway that queues or cannot place requests before any engine sees them.
    scheduler::assess,
    // What a profiler trace shows the GPU waiting on explains the slow steps the client sees.
    trace::assess,
    network::assess,
    ttft::assess,
    // A server wearing down over the run explains slow tokens better than the batch does: it goes first.
    throughput::assess,
    itl::assess,
    output::assess,
    cache::assess,
    // Settings explain the numbers above; they follow them, so a measured symptom keeps the headline.
    config::assess,
    consistency::assess,
];

/// Runs every rule over the evidence. Deterministic: the same evidence and thresholds give the same diagnosis.
pub fn diagnose(evidence: &Evidence, thresholds: &Thresholds) -> Diagnosis {
    let facts = Facts::new(evidence);
    let assessments: Vec<Assessment> = FAMILIES
        .iter()
        .flat_map(|family| family(&facts, thresholds))
        .collect();
    let mut findings: Vec<Finding> = assessments
        .iter()
        .filter_map(|a| a.finding.clone())
        .collect();
    // Stable, so rule order breaks ties.
    findings.sort_by_key(|f| (f.severity, f.confidence));
    Diagnosis {
        headline: headline(&facts, thresholds, &findings),
        checklist: checklist::build(&facts, thresholds, &assessments),
        findings,
    }
}

/// The first line of every report: which number is bad and why, or that none is, with the key numbers.
fn headline(facts: &Facts, t: &Thresholds, findings: &[Finding]) -> String {
    let Some(primary) = findings.iter().find(|f| f.severity <= Severity::Warning) else {
        let notes: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" (notes: {})", notes.join(", "))
        };
        return format!("No problem found: {}{notes}", key_numbers(facts));
    };
    format!(
        "{}: {} ({})",
        symptom_phrase(facts, t, primary),
        primary.verdict,
        primary.id
    )
}

/// Which number is bad, with its value under load and alone when known.
fn symptom_phrase(facts: &Facts, t: &Thresholds, primary: &Finding) -> String {
    let loaded_ttft = facts.loaded_ttft_p95();
    let single_ttft = facts.single_user_ttft_p95();
    let loaded_itl = facts.client().and_then(facts::itl);
    let single_itl = facts.single_user().and_then(facts::itl);
    match primary.symptom {
        Symptom::Ttft => match (loaded_ttft, single_ttft) {
            (Some(loaded), Some(single))
                if single.ms > t.ttft_high_ms && single.ms >= loaded.ms =>
            {
                format!(
                    "TTFT is high even with one user (p95 {} alone, {} under load)",
                    ms(single.ms),
                    ms(loaded.ms)
                )
            }
            (Some(loaded), Some(single)) => {
                let high = loaded.ms > t.ttft_high_ms || loaded.ms > t.ttft_load_ratio * single.ms;
                let state = if high { "is high" } else { "is at risk" };
                format!(
                    "TTFT {state} under load (p95 {} vs {} alone)",
                    ms(loaded.ms),
                    ms(single.ms)
                )
            }
            (Some(loaded), None) => format!("TTFT is high under load (p95 {})", ms(loaded.ms)),
            (None, Some(single)) => format!("TTFT is high (p95 {} with one user)", ms(single.ms)),
            (None, None) => "TTFT is at risk".to_string(),
        },
        Symptom::Itl => match (loaded_itl, single_itl) {
            (_, Some(single)) if primary.id == "itl.single_user_slow" => {
                format!(
                    "ITL is high even for one user ({} per token)",
                    ms(single.ms)
                )
            }
            (Some(loaded), Some(single)) => {
                format!(
                    "ITL is high under load ({} per token vs {} alone)",
                    ms(loaded.ms),
                    ms(single.ms)
                )
            }
            (Some(loaded), None) => format!("ITL is high under load ({} per token)", ms(loaded.ms)),
            _ => "ITL is high".to_string(),
        },
        Symptom::Throughput => match facts.client() {
            Some(client) if client.throughput.output_tokens_per_s.is_finite() => format!(
                "Throughput is limited ({:.0} output tokens/s at {:.1} in flight)",
                client.throughput.output_tokens_per_s,
                client.throughput.held_in_flight()
            ),
            _ => "Throughput is limited".to_string(),
        },
        Symptom::Errors => match facts.client().filter(|c| c.requests.failed > 0) {
            // Requests the client stopped itself (Ctrl-C, a probe's budget) are neither answer nor failure.
            Some(client) => format!(
                "Errors are high ({} of {} answered requests failed)",
                client.requests.failed,
                client.requests.ok + client.requests.failed
            ),
            None if primary.id.starts_with("engine.") => "The engine failed".to_string(),
            None => "Errors are high".to_string(),
        },
        Symptom::Output => "Output is wrong".to_string(),
        Symptom::Measurement => "The measurement cannot be trusted".to_string(),
        Symptom::Hardware => "A GPU is not at full health".to_string(),
        // A restarted container is the pod's doing, not the host's speed.
        Symptom::Host if primary.id.starts_with("k8s.") => {
            "The server's container was restarted".to_string()
        }
        Symptom::Host => "The GPU host slows the server".to_string(),
    }
}

/// TTFT, ITL, throughput and errors in one phrase, for the "nothing wrong" headline.
fn key_numbers(facts: &Facts) -> String {
    let mut parts = Vec::new();
    if let Some(ttft) = facts.loaded_ttft_p95() {
        parts.push(format!("TTFT p95 {}", ms(ttft.ms)));
    } else if let Some(ttft) = facts.single_user_ttft_p95() {
        parts.push(format!("TTFT p95 {} with one user", ms(ttft.ms)));
    }
    if let Some(itl) = facts
        .client()
        .and_then(facts::itl)
        .or_else(|| facts.single_user().and_then(facts::itl))
    {
        parts.push(format!("ITL {} per token", ms(itl.ms)));
    }
    if let Some(client) = facts.client() {
        if client.throughput.output_tokens_per_s.is_finite()
            && client.throughput.output_tokens_per_s > 0.0
        {
            parts.push(format!(
                "{:.0} output tokens/s",
                client.throughput.output_tokens_per_s
            ));
        }
        if client.requests.ok + client.requests.failed > 0 && client.requests.error_rate.is_finite()
        {
            parts.push(format!("{} errors", percent(client.requests.error_rate)));
        }
        let held = client.throughput.held_in_flight();
        if held.is_finite() && held > 0.0 {
            parts.push(format!("at {held:.1} in flight"));
        }
    }
    if parts.is_empty() {
        "no client measurement to judge (run the probes or pass --requests)".to_string()
    } else {
        parts.join(", ")
    }
}

/// What the default playbook made of `evidence` for one rule: its finding, if it fired, and its checklist line,
/// which every diagnosis has. The rules' own tests ask both questions of each case.
#[cfg(test)]
pub(crate) fn judged(
    evidence: &Evidence,
    rule: &str,
    line: &str,
) -> (Option<Finding>, infer_doctor_core::CheckLine) {
    let diagnosis = diagnose(evidence, &Thresholds::default());
    let checked = diagnosis
        .checklist
        .into_iter()
        .find(|l| l.id == line)
        .unwrap_or_else(|| panic!("no checklist line {line}"));
    (
        diagnosis.findings.into_iter().find(|f| f.id == rule),
        checked,
    )
}
