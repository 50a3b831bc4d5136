//! The diagnosis as one self-contained HTML page: inline CSS, inline SVG charts and a few lines of script, so it
//! opens anywhere without a network. Every piece of text from the run is escaped before it reaches the page.

mod charts;

use std::fmt::Write;

use infer_doctor_core::{CheckLine, Finding, TraceFacts};
use serde_json::Value;

use crate::document::DiagnosisDocument;
use crate::markdown::{
    error_lines, latency_rows, log_rows, number, server_heading, server_rows, severity_label,
    status_label, threshold_text,
};
use crate::term::ms;

pub(crate) const STYLE: &str = include_str!("html/style.css");

/// The only script: the escalation block's copy button. It marks the page as fully run last, so a browser test can
/// tell a page whose script stopped on an error from one that ran to the end.
const SCRIPT: &str = r#"(function () {
  var button = document.getElementById("copy-escalation");
  var text = document.getElementById("escalation-text");
  if (button && text) {
    button.addEventListener("click", function () {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text.textContent).then(
          function () { button.textContent = "Copied"; },
          function () { button.textContent = "Select the text to copy"; });
      } else {
        button.textContent = "Select the text to copy";
      }
    });
  }
  document.body.dataset.ok = "1";
})();"#;

/// Text as HTML content or attribute value: the five characters that could open markup or close a quote.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page says it diagnosed: the target's URL and models as the server announced them.
fn target_facts(target: &Value) -> Vec<String> {
    let mut facts = Vec::new();
    if let Some(url) = target.get("url").and_then(Value::as_str) {
        facts.push(url.to_string());
    }
    if let Some(models) = target.get("model_ids").and_then(Value::as_array) {
        let names: Vec<&str> = models.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            facts.push(format!("model {}", names.join(", ")));
        }
    }
    facts
}

fn hero(page: &mut String, doc: &DiagnosisDocument) {
    let worst = doc.diagnosis.findings.iter().map(|f| f.severity).min();
    let class = worst.map_or("none", severity_label);
    let mut meta = target_facts(&doc.target);
    if let Some(log) = &doc.evidence.log {
        let engine = match &log.version {
            Some(version) => format!("{} {version}", log.server),
            None => log.server.clone(),
        };
        meta.push(engine);
        if let (Some(model), true) = (&log.model, meta.iter().all(|m| !m.starts_with("model "))) {
            meta.push(format!("model {model}"));
        }
    }
    meta.push(format!("diagnosed {}", doc.created_at));
    let _ = write!(
        page,
        r#"<header class="hero worst-{class}"><div><p class="kicker">infer-doctor diagnosis</p><h1 id="headline">{}</h1><p class="meta">"#,
        escape(&doc.diagnosis.headline)
    );
    for fact in meta {
        let _ = write!(page, "<span>{}</span>", escape(&fact));
    }
    page.push_str("</p></div></header>");
}

fn finding_card(page: &mut String, finding: &Finding) {
    let severity = severity_label(finding.severity);
    let _ = write!(
        page,
        r#"<article class="card finding severity-{severity}" id="finding-{}" data-finding-id="{}"><div><span class="badge severity-{severity}">{severity}</span><span class="badge">confidence {}</span><span class="badge">explains {}</span><span class="finding-id">{}</span></div><h3>{}</h3>"#,
        escape(&finding.id),
        escape(&finding.id),
        format!("{:?}", finding.confidence).to_lowercase(),
        format!("{:?}", finding.symptom).to_uppercase(),
        escape(&finding.id),
        escape(&finding.verdict)
    );
    if !finding.evidence.is_empty() {
        page.push_str(
            r#"<table class="evidence"><thead><tr><th>signal</th><th>value</th><th>threshold</th><th>window</th></tr></thead><tbody>"#,
        );
        for observation in &finding.evidence {
            let _ = write!(
                page,
                r#"<tr><td><code>{}</code></td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
                escape(&observation.signal),
                number(observation.value),
                escape(&threshold_text(observation)),
                escape(&observation.window)
            );
        }
        page.push_str("</tbody></table>");
    }
    let _ = write!(
        page,
        r#"<p class="why"><strong>Why.</strong> {}</p>"#,
        escape(&finding.why)
    );
    if !finding.remedies.is_empty() {
        page.push_str(r#"<strong>What to do</strong><ol class="remedies">"#);
        for remedy in &finding.remedies {
            let _ = write!(page, "<li>{}</li>", escape(remedy));
        }
        page.push_str("</ol>");
    }
    let _ = write!(
        page,
        r#"<p class="source">Source: {}</p></article>"#,
        escape(&finding.source)
    );
}

fn findings(page: &mut String, doc: &DiagnosisDocument) {
    let list = &doc.diagnosis.findings;
    let _ = write!(
        page,
        r#"<section id="findings"><h2>Findings<small>{} found, most severe first</small></h2>"#,
        list.len()
    );
    if list.is_empty() {
        page.push_str(r#"<div class="ok-banner" id="no-problem">✓ No problem found in the evidence available.</div>"#);
    } else {
        page.push_str(r#"<div class="cards">"#);
        for finding in list {
            finding_card(page, finding);
        }
        page.push_str("</div>");
    }
    page.push_str("</section>");
}

fn checklist_row(page: &mut String, line: &CheckLine) {
    let status = status_label(line.status);
    let _ = write!(
        page,
        r#"<tr class="check check-{status}" data-check-id="{}"><td><span class="status status-{status}">{status}</span></td><td>{}</td><td>{}"#,
        escape(&line.id),
        escape(&line.question),
        escape(&line.detail)
    );
    if let Some(how) = &line.how_to_know {
        let _ = write!(
            page,
            r#"<span class="how">How to know: {}</span>"#,
            escape(how)
        );
    }
    page.push_str("</td></tr>");
}

fn checklist(page: &mut String, doc: &DiagnosisDocument) {
    page.push_str(r#"<section id="checklist"><h2>Checklist</h2><div class="panel">"#);
    if doc.diagnosis.checklist.is_empty() {
        page.push_str(r#"<p class="empty">No checklist lines.</p>"#);
    } else {
        page.push_str(
            r#"<table><thead><tr><th>status</th><th>check</th><th>detail</th></tr></thead><tbody>"#,
        );
        for line in &doc.diagnosis.checklist {
            checklist_row(page, line);
        }
        page.push_str("</tbody></table>");
    }
    page.push_str("</div></section>");
}

fn timeline(page: &mut String, doc: &DiagnosisDocument) {
    let evidence = &doc.evidence;
    page.push_str(r#"<section id="timeline-section"><h2>Timeline<small>each request's TTFT and E2E at its send time, against the server's queue and KV cache</small></h2><div class="panel">"#);
    if evidence.requests.is_empty() && evidence.scrapes.is_empty() {
        page.push_str(r#"<p class="empty" id="timeline-empty">No per-request records, and no server metrics were scraped: nothing to draw over time.</p>"#);
    } else {
        page.push_str(&charts::timeline(&evidence.requests, &evidence.scrapes));
    }
    page.push_str("</div></section>");
}

fn latency_cell(summary: Option<infer_doctor_core::Summary>) -> String {
    match summary {
        Some(s) => format!(
            r#"<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>"#,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99)
        ),
        None => r#"<td class="num">—</td><td class="num">—</td><td class="num">—</td>"#.into(),
    }
}

fn distributions(page: &mut String, doc: &DiagnosisDocument) {
    let evidence = &doc.evidence;
    page.push_str(r#"<section id="distributions"><h2>Latency<small>under load, and one user against load</small></h2><div class="grid-2"><div class="panel">"#);
    if evidence.requests.is_empty() {
        page.push_str(r#"<p class="empty" id="latency-cdf-empty">No per-request records to draw distributions from.</p>"#);
    } else {
        page.push_str(&charts::latency_cdf(&evidence.requests));
    }
    page.push_str(r#"</div><div class="panel">"#);
    let rows = latency_rows(evidence.single_user.as_ref(), evidence.client.as_ref());
    if rows.is_empty() {
        page.push_str(r#"<p class="empty">No client measurement in this diagnosis.</p>"#);
    } else {
        page.push_str(&charts::summary_bars(&rows));
        page.push_str(r#"<table id="latency-table"><thead><tr><th>ms</th><th>1 user p50</th><th>1 user p95</th><th>1 user p99</th><th>loaded p50</th><th>loaded p95</th><th>loaded p99</th></tr></thead><tbody>"#);
        for row in &rows {
            let _ = write!(
                page,
                "<tr><td>{}</td>{}{}</tr>",
                row.name,
                latency_cell(row.single_user),
                latency_cell(row.loaded)
            );
        }
        page.push_str("</tbody></table>");
    }
    if let Some(loaded) = &evidence.client {
        let r = &loaded.requests;
        let _ = write!(
            page,
            r#"<p class="chart-note">Loaded: {} requests sent, {} failed ({:.2}%), {} interrupted by the client, {:.2} req/s, {:.1} output tokens/s, mean concurrency {:.1}.</p>"#,
            r.sent,
            r.failed,
            r.error_rate * 100.0,
            r.interrupted,
            loaded.throughput.request_rate,
            loaded.throughput.output_tokens_per_s,
            loaded.throughput.held_in_flight()
        );
        let errors = error_lines(loaded);
        if !errors.is_empty() {
            page.push_str(r#"<ul class="errors">"#);
            for line in errors {
                let _ = write!(page, "<li>{}</li>", escape(&line));
            }
            page.push_str("</ul>");
        }
    }
    page.push_str("</div></div></section>");
}

fn server(page: &mut String, doc: &DiagnosisDocument) {
    page.push_str(r#"<section id="server"><h2>Server</h2><div class="panel">"#);
    match &doc.evidence.server {
        Some(window) => {
            let _ = write!(page, "<p>{}</p>", escape(&server_heading(window)));
            page.push_str(r#"<table><thead><tr><th>signal</th><th>kind</th><th>over the window</th></tr></thead><tbody>"#);
            for row in server_rows(window) {
                let _ = write!(
                    page,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    row.signal,
                    row.kind,
                    escape(&row.summary)
                );
            }
            page.push_str("</tbody></table>");
        }
        None => {
            page.push_str(r#"<p class="empty" id="no-server">No server metrics were scraped.</p>"#)
        }
    }
    if let Some(log) = &doc.evidence.log {
        page.push_str(r#"<h3>Engine log</h3><table id="log-facts"><tbody>"#);
        for (label, value) in log_rows(log) {
            let _ = write!(page, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
        }
        page.push_str("</tbody></table>");
    }
    page.push_str("</div></section>");
}

/// What could not be read, above the findings that rest on the rest.
fn warnings(page: &mut String, doc: &DiagnosisDocument) {
    if doc.warnings.is_empty() {
        return;
    }
    page.push_str(r#"<section id="warnings"><h2>Evidence not read</h2><ul class="warnings">"#);
    for w in &doc.warnings {
        let _ = write!(page, "<li>{}</li>", escape(w));
    }
    page.push_str("</ul></section>");
}

fn escalation(page: &mut String, doc: &DiagnosisDocument) {
    page.push_str(r#"<section id="escalation"><h2>Escalation summary<small>paste into a ticket</small></h2><button id="copy-escalation" type="button">Copy</button><pre id="escalation-text">"#);
    for (label, value) in &doc.escalation {
        let _ = writeln!(page, "{}: {}", escape(label), escape(value));
    }
    page.push_str("</pre></section>");
}

/// The page's head, with its title, and the body's opening.
fn open_page(title: &str) -> String {
    let mut page = String::with_capacity(96 * 1024);
    let _ = write!(
        page,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>infer-doctor: {}</title><style>{STYLE}</style></head><body>"#,
        escape(title)
    );
    page
}

fn close_page(page: &mut String, footer: &str) {
    let _ = write!(
        page,
        r#"<footer>{}</footer></main><script>{SCRIPT}</script></body></html>"#,
        escape(footer)
    );
}

/// The trace section of a diagnosis: per rank, the engine steps drawn side by side and the top kernels.
fn trace(page: &mut String, doc: &DiagnosisDocument) {
    if let Some(trace) = &doc.evidence.trace {
        trace_panels(page, trace);
    }
}

fn trace_panels(page: &mut String, trace: &TraceFacts) {
    page.push_str(r#"<section id="trace-section"><h2>Profiler trace<small>per engine step, what the GPU ran and how long it waited; the kernels that took its time</small></h2>"#);
    for (i, rank) in trace.ranks.iter().enumerate() {
        let label = rank
            .rank
            .map_or_else(|| format!("file {}", i + 1), |r| format!("rank {r}"));
        let _ = write!(
            page,
            r#"<div class="panel trace-rank"><h3>{} <small>{}</small></h3>"#,
            escape(&label),
            escape(&rank.source)
        );
        if rank.span_us > 0.0 {
            let _ = write!(
                page,
                r#"<p class="chart-note">GPU busy {:.1}% of {} ms, {} kernels ({} under 10 µs, {} from CUDA graphs)</p>"#,
                100.0 * rank.busy_us / rank.span_us,
                ms(rank.span_us / 1e3),
                rank.kernels,
                rank.short_kernels,
                rank.kernels_from_graphs
            );
        } else {
            page.push_str(r#"<p class="empty">No GPU operation in this trace (a CPU profile): its engine steps are drawn by their CPU time.</p>"#);
        }
        if !rank.steps.is_empty() {
            page.push_str(&charts::step_timeline(rank, &format!("steps-{i}")));
        } else if rank.span_us > 0.0 {
            page.push_str(r#"<p class="empty">No vLLM engine-step annotations in this trace: no per-step view.</p>"#);
        }
        if !rank.top_kernels.is_empty() {
            page.push_str(&charts::kernel_bars(rank, &format!("kernels-{i}")));
        }
        page.push_str("</div>");
    }
    page.push_str("</section>");
}

/// A page of tables (`trace --format html`), after a trace's charts when there is one.
pub(crate) fn render_tables(
    title: &str,
    trace: Option<&TraceFacts>,
    tables: &[crate::table::Table],
    notes: &[String],
) -> String {
    let mut page = open_page(title);
    page.push_str("<main>");
    match trace {
        Some(trace) => trace_panels(&mut page, trace),
        None => {
            let _ = write!(page, "<h1>{}</h1>", escape(title));
        }
    }
    if !notes.is_empty() {
        page.push_str(r#"<section id="trace-notes"><h2>Notes</h2><ul class="warnings">"#);
        for note in notes {
            let _ = write!(page, "<li>{}</li>", escape(note));
        }
        page.push_str("</ul></section>");
    }
    for table in tables.iter().filter(|t| !t.rows.is_empty()) {
        let _ = write!(page, r#"<section class="panel">{}</section>"#, table.html());
    }
    close_page(
        &mut page,
        &format!("infer-doctor {}", env!("CARGO_PKG_VERSION")),
    );
    page
}

/// `history --format html`: the drift finding, the trend drawn, the table.
pub(crate) fn render_trend(trend: &crate::history::Trend) -> String {
    let title = trend.title();
    let mut page = open_page(&title);
    let _ = write!(page, "<main><h1>{}</h1>", escape(&title));
    match &trend.drift {
        Some(finding) => {
            page.push_str(r#"<section id="findings"><div class="cards">"#);
            finding_card(&mut page, finding);
            page.push_str("</div></section>");
        }
        None => {
            let _ = write!(
                page,
                r#"<p id="drift-status">{}</p>"#,
                escape(&trend.drift_status())
            );
        }
    }
    let points: Vec<(String, Option<f64>)> = trend
        .runs
        .iter()
        .map(|r| (format!("#{}", r.id), r.value))
        .collect();
    let _ = write!(
        page,
        r#"<section class="panel">{}</section><section class="panel">{}</section>"#,
        charts::trend(trend.figure.label, trend.figure.unit, &points),
        trend.table().html()
    );
    close_page(
        &mut page,
        &format!("infer-doctor {}", env!("CARGO_PKG_VERSION")),
    );
    page
}

pub fn render(doc: &DiagnosisDocument) -> String {
    let mut page = open_page(&doc.diagnosis.headline);
    hero(&mut page, doc);
    page.push_str("<main>");
    warnings(&mut page, doc);
    findings(&mut page, doc);
    timeline(&mut page, doc);
    distributions(&mut page, doc);
    trace(&mut page, doc);
    checklist(&mut page, doc);
    server(&mut page, doc);
    escalation(&mut page, doc);
    close_page(
        &mut page,
        &format!(
            "{} {} · diagnosis.json schema version {} · created {}",
            doc.tool.name, doc.tool.version, doc.schema_version, doc.created_at
        ),
    );
    page
}
