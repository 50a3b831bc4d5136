//! A diagnosis in the terminal, and the escalation summary (the block a user pastes into a ticket), both from the
//! same `DiagnosisDocument` every other format renders, so they can never disagree.

use std::fmt::Write as _;

use infer_doctor_core::{CheckStatus, Evidence, RunSummary, Severity, Signal};
use serde_json::Value;

use crate::document::DiagnosisDocument;
use crate::server::number;

fn ms(v: f64) -> String {
    crate::term::ms(v)
}

/// The facts an escalation needs, in the order a reader wants them.
pub fn escalation(evidence: &Evidence, target: &Value, slo: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| out.push((k.to_string(), v));
    let model = target["model_ids"]
        .as_array()
        .and_then(|m| m.first())
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| evidence.log.as_ref().and_then(|l| l.model.clone()));
    push("model", model.unwrap_or_else(|| "unknown".into()));
    let server_version = target["version"]["version"]
        .as_str()
        .map(str::to_string)
        .or_else(|| evidence.log.as_ref().and_then(|l| l.version.clone()));
    let dialect = evidence.server.as_ref().map(|s| s.dialect.clone());
    push(
        "server",
        match (dialect, server_version) {
            (Some(d), Some(v)) => format!("{d} {v}"),
            (Some(d), None) => d,
            (None, Some(v)) => v,
            (None, None) => "unknown (no metrics, no /version)".into(),
        },
    );
    if let Some(log) = &evidence.log {
        let args: Vec<String> = log
            .non_default_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        push("server args", args.join(" "));
    }
    if let Some(config) = &evidence.config {
        // Defaults inferred from the log's silence are marked, so a reader does not take them for flags.
        let settings: Vec<String> = config
            .entries()
            .into_iter()
            .map(|(name, value, source)| match source {
                infer_doctor_core::ConfigSource::LogDefault => format!("{name}={value} (default)"),
                _ => format!("{name}={value}"),
            })
            .collect();
        push("server settings", settings.join(" "));
    }
    if let Some(log) = &evidence.log {
        if let (Some(tokens), Some((x, len))) = (log.kv_capacity_tokens, log.max_concurrency) {
            push(
                "KV capacity",
                format!("{tokens} tokens, max concurrency {x:.2}x at {len} tokens"),
            );
        }
    } else if let Some(tokens) = evidence
        .server
        .as_ref()
        .and_then(|s| s.gauge(Signal::KvCapacityTokens))
    {
        push("KV capacity", format!("{:.0} tokens", tokens.last));
    }
    if let Some(h) = &evidence.hardware {
        push(
            "hardware",
            format!(
                "{} × {} ({}), decode floor {:.2} ms",
                h.tensor_parallel,
                h.gpu,
                h.model,
                h.decode_floor_seconds * 1e3
            ),
        );
    }
    for gpu in &evidence.gpus {
        let mut facts = vec![gpu.name.clone()];
        if let Some(util) = gpu.utilization_percent {
            facts.push(format!("{util:.0}% busy"));
        }
        if let (Some(used), Some(total)) = (gpu.memory_used_mib, gpu.memory_total_mib) {
            facts.push(format!("{used:.0} of {total:.0} MiB"));
        }
        if let (Some(draw), Some(limit)) = (gpu.power_draw_watts, gpu.power_limit_watts) {
            facts.push(format!("{draw:.0} of {limit:.0} W"));
        }
        if let Some(temperature) = gpu.temperature_c {
            facts.push(format!("{temperature:.0} °C"));
        }
        push(&format!("GPU {}", gpu.bus_id), facts.join(", "));
    }
    if let Some(w) = &evidence.workload {
        push(
            "workload",
            format!(
                "ISL {:.0} / OSL {:.0} tokens, {} concurrent users",
                w.input_tokens, w.output_tokens, w.concurrency
            ),
        );
    }
    let latency = |s: &RunSummary| {
        let l = &s.latency;
        let p = |x: &Option<infer_doctor_core::Summary>| {
            x.map_or("-".to_string(), |v| {
                format!("p50 {} / p95 {} ms", ms(v.p50), ms(v.p95))
            })
        };
        format!(
            "TTFT {}, TPOT {}, {:.1} output tok/s, errors {:.1}%",
            p(&l.ttft),
            p(&l.tpot),
            s.throughput.output_tokens_per_s,
            s.requests.error_rate * 100.0
        )
    };
    if let Some(s) = &evidence.single_user {
        push("one user", latency(s));
    }
    if let Some(s) = &evidence.client {
        push(
            "under load",
            format!(
                "{} at {:.1} in flight",
                latency(s),
                s.throughput.held_in_flight()
            ),
        );
    }
    if let Some(slo) = slo {
        push("SLO goal", slo.to_string());
    }
    out
}

/// The terminal view: headline first, then findings, the checklist, and the escalation block.
pub fn render_term(doc: &DiagnosisDocument) -> String {
    let d = &doc.diagnosis;
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", d.headline);
    for w in &doc.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if !doc.warnings.is_empty() {
        out.push('\n');
    }
    if d.findings.is_empty() {
        let _ = writeln!(out, "no findings\n");
    }
    for (i, f) in d.findings.iter().enumerate() {
        let tag = match f.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "info",
        };
        let _ = writeln!(
            out,
            "{}. [{tag}] {} — {} (confidence {:?})",
            i + 1,
            f.id,
            f.verdict,
            f.confidence
        );
        for o in &f.evidence {
            let threshold = match (&o.comparison, o.threshold) {
                (Some(c), Some(t)) => format!(" {c} {}", number(t)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "     {} = {}{threshold}  [{}]",
                o.signal,
                number(o.value),
                o.window
            );
        }
        let _ = writeln!(out, "     why: {}", f.why);
        for (n, r) in f.remedies.iter().enumerate() {
            let _ = writeln!(out, "     {}) {r}", n + 1);
        }
        let _ = writeln!(out, "     source: {}\n", f.source);
    }
    let _ = writeln!(out, "checklist:");
    for c in &d.checklist {
        let mark = match c.status {
            CheckStatus::Pass => "pass   ",
            CheckStatus::Fail => "FAIL   ",
            CheckStatus::Unknown => "unknown",
        };
        let how = c
            .how_to_know
            .as_ref()
            .map(|h| format!(" → {h}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  [{mark}] {} {}{how}", c.question, c.detail);
    }
    let _ = writeln!(out, "\nescalation summary:");
    for (k, v) in &doc.escalation {
        let _ = writeln!(out, "  {k}: {v}");
    }
    out
}
