//! The diagnosis as Markdown, for a ticket or a pull request: the headline, findings with their evidence, the
//! checklist, single-user versus loaded latency, the server's summary and the escalation block.

use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::summary::RunSummary;
use infer_doctor_core::{
    CheckStatus, Finding, LogFacts, Observation, Severity, Signal, SignalKind, Summary,
};

use crate::document::DiagnosisDocument;
use crate::term::{ms, quantile_ms};

/// One row of the single-user versus loaded latency comparison.
pub(crate) struct LatencyRow {
    pub name: &'static str,
    pub single_user: Option<Summary>,
    pub loaded: Option<Summary>,
}

/// Reads one latency distribution out of a run summary.
type LatencyOf = fn(&RunSummary) -> Option<Summary>;

/// The latencies people compare between one user and load. Open-loop runs headline the queue-inclusive TTFT and
/// E2E, so the names say so.
pub(crate) fn latency_rows(
    single_user: Option<&RunSummary>,
    loaded: Option<&RunSummary>,
) -> Vec<LatencyRow> {
    let open_loop = loaded.is_some_and(|s| s.latency.open_loop);
    let pick = |summary: Option<&RunSummary>, metric: LatencyOf| summary.and_then(metric);
    let metrics: [(&'static str, LatencyOf); 5] = [
        (
            if open_loop {
                "TTFT (from schedule)"
            } else {
                "TTFT"
            },
            |s| s.latency.headline_ttft().copied(),
        ),
        ("TPOT", |s| s.latency.tpot),
        ("ITL per gap", |s| s.latency.itl_gap),
        ("ITL per token", |s| s.latency.itl_token),
        (
            if open_loop {
                "E2E (from schedule)"
            } else {
                "E2E"
            },
            |s| s.latency.headline_e2e().copied(),
        ),
    ];
    metrics
        .into_iter()
        .map(|(name, metric)| LatencyRow {
            name,
            single_user: pick(single_user, metric),
            loaded: pick(loaded, metric),
        })
        .filter(|row| row.single_user.is_some() || row.loaded.is_some())
        .collect()
}

/// One line of the server summary: the canonical signal and what the window says about it.
pub(crate) struct ServerRow {
    pub signal: &'static str,
    pub kind: &'static str,
    pub summary: String,
}

/// KV usage is a 0–1 fraction everywhere in the model; people read it as a percentage.
fn gauge_value(signal: Signal, v: f64) -> String {
    if signal == Signal::KvUsage {
        format!("{:.1}%", v * 100.0)
    } else {
        number(v)
    }
}

pub(crate) fn server_rows(window: &ServerWindow) -> Vec<ServerRow> {
    let mut rows = Vec::new();
    for signal in Signal::ALL {
        let summary = match signal.kind() {
            SignalKind::Histogram => window.histogram(signal).map(|h| {
                let quantiles = h
                    .quantiles()
                    .map(|(name, v, limit)| format!("{name} {}", quantile_ms(v, limit, duration)));
                format!(
                    "{} · mean {} · n {}",
                    quantiles.join(" · "),
                    duration(h.mean * 1000.0),
                    number(h.count)
                )
            }),
            SignalKind::Gauge => window.gauge(signal).map(|g| {
                format!(
                    "mean {} · min {} · max {} · last {}",
                    gauge_value(signal, g.mean),
                    gauge_value(signal, g.min),
                    gauge_value(signal, g.max),
                    gauge_value(signal, g.last)
                )
            }),
            SignalKind::Counter => window.counter(signal).map(|c| {
                let mut text = format!("+{} ({}/s)", number(c.increase), number(c.rate));
                if !c.by_label.is_empty() {
                    let labels: Vec<String> = c
                        .by_label
                        .iter()
                        .map(|(label, v)| format!("{label} {}", number(*v)))
                        .collect();
                    text.push_str(&format!(" — {}", labels.join(", ")));
                }
                text
            }),
        };
        if let Some(summary) = summary {
            rows.push(ServerRow {
                signal: signal.name(),
                kind: match signal.kind() {
                    SignalKind::Histogram => "histogram",
                    SignalKind::Gauge => "gauge",
                    SignalKind::Counter => "counter",
                },
                summary,
            });
        }
    }
    rows
}

/// The heading of the server summary: which server and over what window.
pub(crate) fn server_heading(window: &ServerWindow) -> String {
    if window.seconds() > 0.0 {
        format!(
            "{}: {} scrapes over {:.1} s",
            window.dialect,
            window.scrapes,
            window.seconds()
        )
    } else {
        format!(
            "{}: one scrape, totals since the server started",
            window.dialect
        )
    }
}

/// The failures of a run, one line per class: `http_status (500): 3 — first message`.
pub(crate) fn error_lines(summary: &RunSummary) -> Vec<String> {
    summary
        .requests
        .errors
        .iter()
        .map(|e| {
            let status = e.status.map(|s| format!(" ({s})")).unwrap_or_default();
            format!("{}{status}: {} — {}", e.class.as_str(), e.count, e.example)
        })
        .collect()
}

/// What the engine log said, as (label, value) lines; only what it said.
pub(crate) fn log_rows(log: &LogFacts) -> Vec<(&'static str, String)> {
    let mut rows = vec![("server", log.server.clone())];
    let optional = [
        ("version", log.version.clone()),
        ("model", log.model.clone()),
        ("max model length", log.max_model_len.map(|v| v.to_string())),
        (
            "KV cache capacity (tokens)",
            log.kv_capacity_tokens.map(|v| v.to_string()),
        ),
        (
            "maximum concurrency",
            log.max_concurrency
                .map(|(x, tokens)| format!("{x:.2}× at {tokens} tokens per request")),
        ),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter_map(|(label, value)| value.map(|v| (label, v))),
    );
    if !log.non_default_args.is_empty() {
        let args: Vec<String> = log
            .non_default_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push(("non-default arguments", args.join(" ")));
    }
    rows.push((
        "preemptions / out of memory / errors",
        format!(
            "{} / {} / {}",
            log.preemptions
                .map_or_else(|| "not reported".to_string(), |n| n.to_string()),
            log.out_of_memory,
            log.errors
        ),
    ));
    rows
}

/// A latency in milliseconds with its unit: `ms` below ten seconds, where `term::ms` switches to seconds itself.
pub(crate) fn duration(ms_value: f64) -> String {
    let text = ms(ms_value);
    if text.ends_with('s') {
        text
    } else {
        format!("{text} ms")
    }
}

/// Compact numbers for evidence and counters: integers stay integers, fractions keep three significant digits.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn threshold_text(observation: &Observation) -> String {
    match (&observation.comparison, observation.threshold) {
        (Some(how), Some(t)) => format!("{how} {}", number(t)),
        (None, Some(t)) => number(t),
        (Some(how), None) => how.clone(),
        (None, None) => "—".into(),
    }
}

/// A severity as one lower-case word, as reports and `watch` print it.
pub fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

pub(crate) fn status_label(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Unknown => "unknown",
    }
}

/// Markdown renders raw HTML and treats `|` as a cell boundary and a newline as the end of a row, so text taken
/// from servers and error messages is neutralised before it lands in a table or a paragraph. Escaping `<` alone
/// is enough to keep any tag from opening, and leaves `>` and `&` readable in the plain text.
fn inline(text: &str) -> String {
    text.replace('<', "&lt;")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn severity_icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

fn status_icon(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "✅",
        CheckStatus::Fail => "❌",
        CheckStatus::Unknown => "❔",
    }
}

fn finding(out: &mut String, finding: &Finding) {
    out.push_str(&format!(
        "### {} {}: {}\n\n",
        severity_icon(finding.severity),
        severity_label(finding.severity),
        inline(&finding.verdict)
    ));
    out.push_str(&format!(
        "`{}` · confidence {:?} · explains {:?}\n\n",
        finding.id.replace('`', "'"),
        finding.confidence,
        finding.symptom
    ));
    if !finding.evidence.is_empty() {
        out.push_str("| signal | value | threshold | window |\n|---|---:|---|---|\n");
        for observation in &finding.evidence {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                inline(&observation.signal),
                number(observation.value),
                inline(&threshold_text(observation)),
                inline(&observation.window)
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!("**Why:** {}\n\n", inline(&finding.why)));
    if !finding.remedies.is_empty() {
        out.push_str("**What to do:**\n\n");
        for (i, remedy) in finding.remedies.iter().enumerate() {
            out.push_str(&format!("{}. {}\n", i + 1, inline(remedy)));
        }
        out.push('\n');
    }
    out.push_str(&format!("*Source:* {}\n\n", inline(&finding.source)));
}

fn latency_cells(summary: Option<Summary>) -> String {
    match summary {
        Some(s) => format!("{} | {} | {}", ms(s.p50), ms(s.p95), ms(s.p99)),
        None => "— | — | —".into(),
    }
}

/// A fence longer than any run of backticks inside, so an error message cannot close the block early.
fn code_fence(content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

pub fn render(doc: &DiagnosisDocument) -> String {
    let diagnosis = &doc.diagnosis;
    let evidence = &doc.evidence;
    let mut out = format!("# {}\n\n", inline(&diagnosis.headline));
    out.push_str(&format!(
        "*{} {} · {}*\n\n",
        doc.tool.name,
        doc.tool.version,
        inline(&doc.created_at)
    ));

    for w in &doc.warnings {
        out.push_str(&format!("> ⚠️ {}\n>\n", inline(w)));
    }
    if !doc.warnings.is_empty() {
        out.push('\n');
    }
    out.push_str("## Findings\n\n");
    if diagnosis.findings.is_empty() {
        out.push_str("✅ No problem found in the evidence available.\n\n");
    }
    for f in &diagnosis.findings {
        finding(&mut out, f);
    }

    out.push_str("## Checklist\n\n");
    if diagnosis.checklist.is_empty() {
        out.push_str("No checklist lines.\n\n");
    } else {
        out.push_str("| | check | detail |\n|---|---|---|\n");
        for line in &diagnosis.checklist {
            let mut detail = inline(&line.detail);
            if let Some(how) = &line.how_to_know {
                detail.push_str(&format!(" — *how to know:* {}", inline(how)));
            }
            out.push_str(&format!(
                "| {} {} | {} | {} |\n",
                status_icon(line.status),
                status_label(line.status),
                inline(&line.question),
                detail
            ));
        }
        out.push('\n');
    }

    out.push_str("## Client latency (ms)\n\n");
    let rows = latency_rows(evidence.single_user.as_ref(), evidence.client.as_ref());
    if rows.is_empty() {
        out.push_str("No client measurement in this diagnosis.\n\n");
    } else {
        out.push_str(
            "| metric | 1 user p50 | 1 user p95 | 1 user p99 | loaded p50 | loaded p95 | loaded p99 |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for row in rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                row.name,
                latency_cells(row.single_user),
                latency_cells(row.loaded)
            ));
        }
        out.push('\n');
        if let Some(loaded) = &evidence.client {
            let r = &loaded.requests;
            out.push_str(&format!(
                "Loaded: {} requests sent, {} failed ({:.2}%), {:.2} req/s, {:.1} output tokens/s, mean concurrency {:.1}.\n\n",
                r.sent,
                r.failed,
                r.error_rate * 100.0,
                loaded.throughput.request_rate,
                loaded.throughput.output_tokens_per_s,
                loaded.throughput.held_in_flight()
            ));
            for line in error_lines(loaded) {
                out.push_str(&format!("- {}\n", inline(&line)));
            }
            out.push('\n');
        }
    }

    out.push_str("## Server\n\n");
    match &evidence.server {
        Some(window) => {
            out.push_str(&format!("{}\n\n", inline(&server_heading(window))));
            let rows = server_rows(window);
            if !rows.is_empty() {
                out.push_str("| signal | kind | over the window |\n|---|---|---|\n");
                for row in rows {
                    out.push_str(&format!(
                        "| {} | {} | {} |\n",
                        row.signal,
                        row.kind,
                        inline(&row.summary)
                    ));
                }
                out.push('\n');
            }
        }
        None => out.push_str("No server metrics were scraped.\n\n"),
    }
    if let Some(log) = &evidence.log {
        out.push_str("### Engine log\n\n| | |\n|---|---|\n");
        for (label, value) in log_rows(log) {
            out.push_str(&format!("| {label} | {} |\n", inline(&value)));
        }
        out.push('\n');
    }

    out.push_str("## Escalation summary\n\n");
    let block: String = doc
        .escalation
        .iter()
        .map(|(label, value)| format!("{label}: {value}\n"))
        .collect();
    let fence = code_fence(&block);
    out.push_str(&format!("{fence}text\n{block}{fence}\n"));
    out
}
