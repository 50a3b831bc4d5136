//! The HTML and Markdown reports over a realistic KV-saturation diagnosis: structure, escaping, graceful gaps, page
//! size, and a real render in headless Chromium (screenshot, no script errors, charts in the DOM).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infer_doctor_core::signals::{CounterStats, GaugeStats, HistogramStats, ServerWindow};
use infer_doctor_core::summary::{ErrorCount, Latencies, RequestCounts, RunSummary, Throughput};
use infer_doctor_core::{
    CheckLine, CheckStatus, Confidence, Diagnosis, ErrorClass, Evidence, Finding, KernelTrace,
    LogFacts, Observation, Phase, RankTrace, Reading, RequestError, RequestRecord, ServerReadings,
    Severity, Signal, StepTrace, Summary, Symptom, TraceFacts,
};
use infer_doctor_report::document::{DiagnosisDocument, RunDocument};
use infer_doctor_report::{SCHEMA_VERSION, html, markdown};

const HOSTILE_MODEL: &str = "<script>alert('pwned')</script>-7b";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);
const SCRAPES: usize = 71;
const REQUESTS: usize = 300;

fn latency(p50: f64, p95: f64, p99: f64) -> Summary {
    Summary {
        count: REQUESTS as u64,
        mean: p50 * 1.1,
        stddev: p50 * 0.3,
        min: p50 * 0.5,
        max: p99 * 1.2,
        p50,
        p90: (p50 + p95) / 2.0,
        p95,
        p99,
        p999: p99 * 1.1,
    }
}

fn run_summary(ttft: Summary, tpot: Summary, e2e: Summary, sent: u64, failed: u64) -> RunSummary {
    RunSummary {
        requests: RequestCounts {
            sent,
            ok: sent - failed,
            failed,
            error_rate: failed as f64 / sent as f64,
            errors: (failed > 0)
                .then(|| ErrorCount {
                    class: ErrorClass::HttpStatus,
                    status: Some(500),
                    count: failed,
                    example: "<img src=x onerror=alert(1)> engine overloaded".into(),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        },
        latency: Latencies {
            ttft: Some(ttft),
            tpot: Some(tpot),
            itl_gap: Some(tpot),
            itl_token: Some(tpot),
            e2e: Some(e2e),
            ..Default::default()
        },
        throughput: Throughput {
            request_rate: 4.2,
            output_tokens_per_s: 540.0,
            mean_concurrency: 48.0,
            max_concurrency: 64,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// 300 requests, one every 200 ms: fast for the first 20 s, then queued behind a full KV cache; three fail.
fn requests() -> Vec<RequestRecord> {
    (0..REQUESTS as u64)
        .map(|i| {
            let sent_us = i * 200_000;
            let t = sent_us as f64 / 1e6;
            let ttft_us = if t < 20.0 {
                40_000 + i * 300
            } else {
                ((t - 20.0) * 150_000.0) as u64 + 300_000
            };
            let tpot_us = if t < 20.0 { 12_000 } else { 30_000 };
            let first_token_us = sent_us + ttft_us;
            let last_token_us = first_token_us + 127 * tpot_us;
            let failed = i % 100 == 99;
            RequestRecord {
                id: i,
                phase: Some(Phase::Measured),
                scheduled_us: sent_us,
                sent_us,
                first_token_us: (!failed).then_some(first_token_us),
                last_token_us: (!failed).then_some(last_token_us),
                end_us: last_token_us + 1_000,
                status: Some(if failed { 500 } else { 200 }),
                error: failed.then(|| RequestError {
                    class: ErrorClass::HttpStatus,
                    status: Some(500),
                    message: "<img src=x onerror=alert(1)> engine overloaded".into(),
                }),
                streamed: true,
                max_tokens: 128,
                usage_output_tokens: (!failed).then_some(128),
                token_events: if failed { 0 } else { 128 },
                ..Default::default()
            }
        })
        .collect()
}

/// One scrape a second: running climbs to the batch limit, the queue grows once KV usage nears 100 %.
fn scrapes() -> Vec<(f64, ServerReadings)> {
    (0..SCRAPES)
        .map(|s| {
            let t = s as f64;
            let readings = BTreeMap::from([
                (Signal::RequestsRunning, Reading::Value((t * 2.5).min(48.0))),
                (
                    Signal::RequestsWaiting,
                    Reading::Value(((t - 20.0) * 1.5).clamp(0.0, 60.0)),
                ),
                (Signal::KvUsage, Reading::Value((0.2 + t * 0.04).min(0.995))),
            ]);
            (
                t,
                ServerReadings {
                    dialect: "vllm_v1".into(),
                    readings,
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn server_window() -> ServerWindow {
    let gauge = |mean, max| GaugeStats {
        mean,
        min: 0.0,
        max,
        last: max,
    };
    ServerWindow {
        dialect: "vllm_v1".into(),
        start: 0.0,
        end: 70.0,
        scrapes: SCRAPES,
        no_clock: false,
        cache_config: BTreeMap::new(),
        gauges: BTreeMap::from([
            (Signal::KvUsage, gauge(0.86, 0.995)),
            (Signal::RequestsRunning, gauge(41.0, 48.0)),
            (Signal::RequestsWaiting, gauge(22.0, 60.0)),
        ]),
        counters: BTreeMap::from([(
            Signal::Preemptions,
            CounterStats {
                increase: 37.0,
                rate: 0.53,
                by_label: BTreeMap::new(),
            },
        )]),
        histograms: BTreeMap::from([(
            Signal::QueueTime,
            HistogramStats {
                count: 297.0,
                mean: 2.1,
                p50: 1.8,
                p90: 5.2,
                p99: 6.9,
                limits: BTreeMap::new(),
            },
        )]),
        ..Default::default()
    }
}

fn findings() -> Vec<Finding> {
    vec![
        Finding {
            id: "capacity.kv_saturated".into(),
            severity: Severity::Critical,
            confidence: Confidence::High,
            symptom: Symptom::Ttft,
            verdict: format!("TTFT is high because the KV cache of {HOSTILE_MODEL} is full"),
            evidence: vec![
                Observation {
                    signal: "kv_usage max".into(),
                    value: 0.995,
                    threshold: Some(0.9),
                    comparison: Some(">".into()),
                    window: "server metrics, loaded probe (70 s)".into(),
                },
                Observation {
                    signal: "ttft p95 (loaded) / (single user)".into(),
                    value: 171.4,
                    threshold: Some(3.0),
                    comparison: Some(">".into()),
                    window: "client, both probes".into(),
                },
            ],
            why: "New requests wait for KV blocks to free up, so they queue before their first token.".into(),
            remedies: vec![
                "Raise --gpu-memory-utilization (e.g. 0.90 → 0.95).".into(),
                "Lower --max-num-seqs or the offered concurrency.".into(),
                "Add a replica.".into(),
            ],
            source: "vLLM docs, Optimization and Tuning: preemption".into(),
        },
        Finding {
            id: "queue.waiting_grows".into(),
            severity: Severity::Warning,
            confidence: Confidence::Medium,
            symptom: Symptom::Throughput,
            verdict: "The waiting queue grows through the run: the offered load exceeds capacity.".into(),
            evidence: vec![Observation {
                signal: "requests_waiting max".into(),
                value: 60.0,
                threshold: Some(0.0),
                comparison: Some(">".into()),
                window: "server metrics, loaded probe (70 s)".into(),
            }],
            why: "Little's law: arrivals faster than completions can only queue.".into(),
            remedies: vec!["Send less, or serve more.".into()],
            source: "DESIGN.md §6".into(),
        },
    ]
}

fn checklist() -> Vec<CheckLine> {
    vec![
        CheckLine {
            id: "metrics.reachable".into(),
            question: "Are the server's metrics readable?".into(),
            status: CheckStatus::Pass,
            detail: "71 scrapes of vllm_v1".into(),
            how_to_know: None,
        },
        CheckLine {
            id: "kv.below_90".into(),
            question: "Is the KV cache below 90% under load?".into(),
            status: CheckStatus::Fail,
            detail: "max 99.5%".into(),
            how_to_know: None,
        },
        CheckLine {
            id: "startup.capacity".into(),
            question: "Does the start-up capacity fit the workload?".into(),
            status: CheckStatus::Unknown,
            detail: "no engine log".into(),
            how_to_know: Some("pass --log FILE".into()),
        },
    ]
}

fn saturated_document() -> DiagnosisDocument {
    let single_user = run_summary(
        latency(35.0, 42.0, 50.0),
        latency(11.0, 12.5, 14.0),
        latency(1_450.0, 1_600.0, 1_700.0),
        20,
        0,
    );
    let loaded = run_summary(
        latency(2_400.0, 7_200.0, 8_100.0),
        latency(28.0, 31.0, 33.0),
        latency(6_000.0, 11_000.0, 12_000.0),
        REQUESTS as u64,
        3,
    );
    DiagnosisDocument {
        schema_version: SCHEMA_VERSION,
        tool: RunDocument::tool(),
        created_at: "2025-01-01T00:00:00Z".into(),
        target: serde_json::json!({
            "url": "http://127.0.0.1:8000",
            "model_ids": [HOSTILE_MODEL],
        }),
        evidence: Evidence {
            client: Some(loaded),
            single_user: Some(single_user),
            requests: requests(),
            server: Some(server_window()),
            scrapes: scrapes(),
            log: Some(LogFacts {
                server: "vllm".into(),
                version: Some("0.11.0".into()),
                model: Some(HOSTILE_MODEL.into()),
                kv_capacity_tokens: Some(65_536),
                max_concurrency: Some((4.0, 16_384)),
                preemptions: Some(37),
                ..Default::default()
            }),
            trace: Some(traced()),
            ..Default::default()
        },
        diagnosis: Diagnosis {
            headline: "TTFT is bad under load (p95 7.2 s vs 42 ms alone): the KV cache is full"
                .into(),
            findings: findings(),
            checklist: checklist(),
        },
        escalation: vec![
            ("model".into(), HOSTILE_MODEL.into()),
            ("server".into(), "vllm 0.11.0 --max-num-seqs 256".into()),
            ("TTFT p95".into(), "7.2 s loaded, 42 ms single user".into()),
        ],
        warnings: vec![format!(
            "{HOSTILE_MODEL}/requests.jsonl: 1 lines are not request records and were skipped"
        )],
    }
}

/// A decode-heavy trace: per step 300 µs of GEMM and 100 µs of paged attention in a 500 µs span (100 µs idle),
/// a prefill step first; a kernel name that tries to open markup.
fn traced() -> TraceFacts {
    let step = |phase: &str, gemm: f64| StepTrace {
        start_us: 0.0,
        phase: phase.into(),
        cpu_us: 450.0,
        gpu_span_us: gemm + 200.0,
        gpu_busy_us: gemm + 100.0,
        classes: vec![("GEMM".into(), gemm), ("attention (paged)".into(), 100.0)],
    };
    let mut steps = vec![step("prefill", 3_000.0)];
    steps.extend((0..40).map(|_| step("decode", 300.0)));
    TraceFacts {
        ranks: vec![RankTrace {
            source: "worker_rank0.pt.trace.json.gz".into(),
            rank: Some(0),
            span_us: 30_000.0,
            busy_us: 20_000.0,
            kernels: 2_000,
            steps_total: steps.len() as u64,
            steps,
            top_kernels: vec![
                KernelTrace {
                    name: "<b>ampere_bf16_s16816gemm</b>".into(),
                    class: "GEMM".into(),
                    count: 1_200,
                    total_us: 15_000.0,
                },
                KernelTrace {
                    name: "paged_attention_v2_kernel".into(),
                    class: "attention (paged)".into(),
                    count: 800,
                    total_us: 5_000.0,
                },
            ],
            ..Default::default()
        }],
    }
}

/// An empty diagnosis: nothing measured, nothing scraped, nothing wrong.
fn bare_document() -> DiagnosisDocument {
    DiagnosisDocument {
        schema_version: SCHEMA_VERSION,
        tool: RunDocument::tool(),
        created_at: "2025-01-01T00:00:00Z".into(),
        target: serde_json::Value::Null,
        evidence: Evidence::default(),
        diagnosis: Diagnosis {
            headline: "No problem found".into(),
            ..Default::default()
        },
        escalation: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The value of `attribute` on the first element carrying `class`.
fn attribute_of<'a>(page: &'a str, class: &str, attribute: &str) -> &'a str {
    let at = page
        .find(&format!(r#"class="{class}""#))
        .unwrap_or_else(|| panic!("no element with class {class}"));
    let element = &page[at..at + page[at..].find('>').expect("element closes")];
    let key = format!(r#" {attribute}=""#);
    let start = element
        .find(&key)
        .unwrap_or_else(|| panic!("{class} has no {attribute}"))
        + key.len();
    &element[start..start + element[start..].find('"').expect("attribute closes")]
}

#[test]
fn page_leads_with_the_headline_and_shows_every_finding_and_check() {
    let doc = saturated_document();
    let page = html::render(&doc);
    assert!(page.starts_with("<!DOCTYPE html>"));
    let headline = page
        .find(r#"<h1 id="headline">TTFT is bad under load"#)
        .expect("headline");
    for finding in &doc.diagnosis.findings {
        let card = page
            .find(&format!(r#"id="finding-{}""#, finding.id))
            .unwrap_or_else(|| panic!("no card for {}", finding.id));
        assert!(card > headline, "findings come after the headline");
    }
    assert!(page.contains(r#"class="card finding severity-critical""#));
    assert!(page.contains(r#"class="card finding severity-warning""#));
    assert!(page.contains("<li>Raise --gpu-memory-utilization (e.g. 0.90 → 0.95).</li>"));
    assert!(page.contains("vLLM docs, Optimization and Tuning: preemption"));
    for (id, status) in [
        ("metrics.reachable", "pass"),
        ("kv.below_90", "fail"),
        ("startup.capacity", "unknown"),
    ] {
        assert!(
            page.contains(&format!(
                r#"<tr class="check check-{status}" data-check-id="{id}">"#
            )),
            "checklist line {id} should be {status}"
        );
    }
    assert!(page.contains("How to know: pass --log FILE"));
    assert!(page.contains("header class=\"hero worst-critical\""));
    for fetching in [
        "<link", "<img", "<iframe", " src=\"", " href=\"", "url(", "@import",
    ] {
        assert!(
            !page.contains(fetching),
            "the page must fetch nothing: found {fetching}"
        );
    }
}

/// The heights of the rects of `class` inside the first element with id `chart`.
fn heights(page: &str, chart: &str, class: &str) -> Vec<f64> {
    let at = page.find(&format!(r#"id="{chart}""#)).expect("the chart");
    let svg = &page[at..at + page[at..].find("</svg>").unwrap()];
    svg.split(&format!(r#"<rect class="{class}""#))
        .skip(1)
        .map(|rect| {
            let h = &rect[rect.find(r#"height=""#).unwrap() + 8..];
            h[..h.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn a_trace_draws_each_step_stacked_by_class_and_its_top_kernels() {
    let page = html::render(&saturated_document());
    assert!(page.contains(r#"id="trace-section""#));
    assert_eq!(
        attribute_of(&page, "chart step-timeline", "data-steps"),
        "41"
    );
    // Stacked in proportion: a decode step's GEMM three times its attention, its idle time as tall as attention.
    let gemm = heights(&page, "steps-0", "k-gemm");
    let paged = heights(&page, "steps-0", "k-attention-paged");
    let idle = heights(&page, "steps-0", "k-idle");
    assert_eq!((gemm.len(), paged.len(), idle.len()), (41, 41, 41));
    assert!(
        (gemm[1] / paged[1] - 3.0).abs() < 0.05,
        "{gemm:?} {paged:?}"
    );
    assert!((idle[1] - paged[1]).abs() < 0.05);
    // The prefill step ten times the decode steps' GEMM, and marked as prefill in the phase strip.
    assert!((gemm[0] / gemm[1] - 10.0).abs() < 0.1);
    assert_eq!(heights(&page, "steps-0", "phase-prefill").len(), 1);
    assert_eq!(heights(&page, "steps-0", "phase-decode").len(), 40);

    assert_eq!(
        attribute_of(&page, "chart kernel-bars", "data-kernels"),
        "2"
    );
    assert_eq!(attribute_of(&page, "kernel-bar", "data-class"), "GEMM");
    assert!(!page.contains("<b>ampere"), "kernel names are escaped");
    assert!(page.contains("&lt;b&gt;ampere_bf16_s16816gemm"));

    // No trace, no section; a CPU profile draws its steps by CPU time.
    assert!(!html::render(&bare_document()).contains("trace-section"));
    let mut cpu = bare_document();
    let mut facts = traced();
    for step in &mut facts.ranks[0].steps {
        (step.gpu_span_us, step.gpu_busy_us, step.classes) = (0.0, 0.0, Vec::new());
    }
    (facts.ranks[0].span_us, facts.ranks[0].top_kernels) = (0.0, Vec::new());
    cpu.evidence.trace = Some(facts);
    let page = html::render(&cpu);
    assert!(page.contains("CPU time of the step") && page.contains("a CPU profile"));
    assert!(!page.contains("kernel-bars"));
}

#[test]
fn timeline_draws_one_server_point_per_scrape_and_every_request() {
    let page = html::render(&saturated_document());
    assert!(page.contains(r#"<svg id="timeline" class="chart""#));
    for series in [
        "series-running",
        "series-waiting",
        "series-kv",
        "series-inflight",
    ] {
        assert_eq!(
            attribute_of(&page, series, "data-points"),
            SCRAPES.to_string(),
            "{series}"
        );
        let points = attribute_of(&page, series, "points");
        assert_eq!(points.split(' ').count(), SCRAPES, "{series} coordinates");
    }
    let failed = REQUESTS / 100;
    assert_eq!(
        attribute_of(&page, "series-ttft", "data-points"),
        (REQUESTS - failed).to_string()
    );
    assert_eq!(
        attribute_of(&page, "series-e2e", "data-points"),
        (REQUESTS - failed).to_string()
    );
    assert_eq!(
        attribute_of(&page, "series-failed", "data-points"),
        failed.to_string()
    );
    for label in [
        "KV cache usage (%)",
        "requests (count)",
        "time since the run started (s)",
        "client latency (log scale)",
    ] {
        assert!(page.contains(label), "axis title {label}");
    }
    assert!(page.contains(r#"<svg id="latency-cdf" class="chart""#));
    assert!(page.contains(r#"<svg id="latency-bars" class="chart""#));
    assert!(
        page.contains("loaded p50 ×68.6"),
        "TTFT slowed 2400/35 times"
    );
}

#[test]
fn text_from_the_run_cannot_inject_markup() {
    let page = html::render(&saturated_document());
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
    assert!(page.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;-7b"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; engine overloaded"));
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the page's own script"
    );

    let text = markdown::render(&saturated_document());
    let (prose, code_block) = text
        .split_once("## Escalation summary")
        .expect("escalation section");
    assert!(!prose.contains("<script"), "Markdown renders raw HTML too");
    assert!(!prose.contains("<img"), "Markdown renders raw HTML too");
    assert!(prose.contains("http_status (500): 3 — &lt;img src=x onerror=alert(1)> engine"));
    assert!(
        code_block.contains(&format!("model: {HOSTILE_MODEL}")),
        "the code block keeps text verbatim"
    );
}

#[test]
fn missing_evidence_is_said_not_drawn() {
    let page = html::render(&bare_document());
    assert!(page.contains(r#"id="no-problem""#));
    assert!(page.contains("header class=\"hero worst-none\""));
    assert!(page.contains(r#"id="timeline-empty""#));
    assert!(page.contains("no server metrics were scraped"));
    assert!(page.contains(r#"id="latency-cdf-empty""#));
    assert!(!page.contains(r#"id="timeline""#));

    let mut requests_only = saturated_document();
    requests_only.evidence.scrapes.clear();
    requests_only.evidence.server = None;
    let page = html::render(&requests_only);
    assert!(page.contains(r#"<svg id="timeline""#));
    assert!(page.contains(r#"class="panel-message no-scrapes""#));
    assert!(page.contains("no server metrics were scraped"));
    assert!(page.contains(r#"id="no-server""#));

    let mut scrapes_only = saturated_document();
    scrapes_only.evidence.requests.clear();
    let page = html::render(&scrapes_only);
    assert!(page.contains(r#"class="panel-message no-requests""#));
    assert_eq!(
        attribute_of(&page, "series-kv", "data-points"),
        SCRAPES.to_string()
    );

    let text = markdown::render(&bare_document());
    assert!(text.starts_with("# No problem found\n"));
    assert!(text.contains("No problem found in the evidence available."));
    assert!(text.contains("No server metrics were scraped."));
}

#[test]
fn page_stays_small() {
    let page = html::render(&saturated_document());
    assert!(
        page.len() < 200 * 1024,
        "{} bytes for {REQUESTS} requests",
        page.len()
    );

    let mut long_run = saturated_document();
    let base = requests();
    long_run.evidence.requests = (0..40)
        .flat_map(|copy| {
            base.iter().map(move |r| RequestRecord {
                id: r.id + copy * REQUESTS as u64,
                sent_us: r.sent_us + copy,
                ..r.clone()
            })
        })
        .collect();
    let page = html::render(&long_run);
    assert!(
        page.len() < 300 * 1024,
        "{} bytes for 12 000 requests",
        page.len()
    );
    assert!(page.contains("of 12000 requests drawn"));
}

#[test]
fn markdown_reads_top_down() {
    let text = markdown::render(&saturated_document());
    assert!(text.starts_with(
        "# TTFT is bad under load (p95 7.2 s vs 42 ms alone): the KV cache is full\n"
    ));
    let order = [
        "## Findings",
        "### 🔴 critical: TTFT is high because the KV cache of &lt;script>alert",
        "`capacity.kv_saturated`",
        "| kv_usage max | 0.995 | > 0.900 | server metrics, loaded probe (70 s) |",
        "1. Raise --gpu-memory-utilization",
        "3. Add a replica.",
        "*Source:* vLLM docs",
        "### 🟠 warning:",
        "## Checklist",
        "| ✅ pass | Are the server's metrics readable? |",
        "| ❌ fail | Is the KV cache below 90% under load? |",
        "| ❔ unknown | Does the start-up capacity fit the workload? | no engine log — *how to know:* pass --log FILE |",
        "## Client latency (ms)",
        "| TTFT | 35.0 | 42.0 | 50.0 | 2400 | 7200 | 8100 |",
        "| E2E | 1450 | 1600 | 1700 | 6000 | 11.0s | 12.0s |",
        "## Server",
        "| queue_time | histogram | p50 1800 ms",
        "| kv_usage | gauge | mean 86.0% · min 0.0% · max 99.5% · last 99.5% |",
        "| preemptions | counter | +37 (0.530/s) |",
        "### Engine log",
        "## Escalation summary",
        "```text\nmodel: ",
        "server: vllm 0.11.0 --max-num-seqs 256\n",
    ];
    let mut from = 0;
    for needle in order {
        let at = text[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing or out of order in:\n{text}"));
        from += at + needle.len();
    }
    assert!(text.trim_end().ends_with("```"));
}

/// Runs Chromium with its output in files (a full pipe would stall it), killing its whole process group if it
/// outlives the timeout; returns (stdout, stderr).
fn chromium(work: &Path, name: &str, args: &[String]) -> (String, String) {
    infer_doctor_testkit::ensure_debian_packages(&["chromium"]);
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get install -y chromium` (Debian 12; CI installs it)"
    );
    let stdout_path = work.join(format!("{name}.stdout"));
    let stderr_path = work.join(format!("{name}.stderr"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join(format!("{name}-profile")).display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            assert!(
                status.success(),
                "chromium {name} failed ({status}):\n{stderr}"
            );
            return (fs::read_to_string(&stdout_path).unwrap_or_default(), stderr);
        }
        if Instant::now() > deadline {
            // Chromium forks renderer and zygote processes; the group takes them all.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {name} did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Renders a page and returns (the DOM after its scripts ran, Chromium's log with console messages).
fn dump_dom(work: &Path, page: &str) -> (String, String) {
    let file = work.join("page.html");
    fs::write(&file, page).expect("write page");
    chromium(
        work,
        "dom",
        &["--dump-dom".into(), format!("file://{}", file.display())],
    )
}

/// Width, height and distinct byte values of a PNG: a blank screenshot compresses to a few repeated bytes.
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    let mut seen = [false; 256];
    for &b in png {
        seen[usize::from(b)] = true;
    }
    (width, height, seen.iter().filter(|s| **s).count())
}

#[test]
fn chromium_renders_the_page_without_script_errors() {
    let work = tempfile::tempdir().expect("temp dir");
    let page = html::render(&saturated_document());
    let (dom, log) = dump_dom(work.path(), &page);
    assert!(!log.contains("Uncaught"), "script error:\n{log}");
    assert!(
        dom.contains(r#"data-ok="1""#),
        "the page's script did not run to its end:\n{log}"
    );
    for id in ["timeline", "latency-cdf", "latency-bars"] {
        assert!(
            dom.contains(&format!(r#"<svg id="{id}" class="chart""#)),
            "{id} in the DOM"
        );
    }
    assert!(dom.contains(r#"class="series-kv""#));
    for chart in [
        r#"<svg id="steps-0" class="chart step-timeline""#,
        r#"<svg id="kernels-0" class="chart kernel-bars""#,
    ] {
        assert!(dom.contains(chart), "{chart} in the DOM");
    }

    let png = work.path().join("page.png");
    chromium(
        work.path(),
        "screenshot",
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
            "--hide-scrollbars".into(),
            format!("file://{}", work.path().join("page.html").display()),
        ],
    );
    let bytes = fs::read(&png).expect("screenshot written");
    let (width, height, distinct) = png_facts(&bytes);
    assert_eq!((width, height), (1280, 2000));
    assert!(
        bytes.len() > 40_000,
        "screenshot only {} bytes: a blank page?",
        bytes.len()
    );
    assert!(
        distinct > 200,
        "screenshot uses {distinct} byte values: a blank page?"
    );
}

/// The detection itself: a page whose script throws must be caught, or the test above proves nothing.
#[test]
fn chromium_check_catches_a_script_error() {
    let work = tempfile::tempdir().expect("temp dir");
    let broken = "<!DOCTYPE html><html><body><p>x</p><script>missingFunction();document.body.dataset.ok = \"1\";</script></body></html>";
    let (dom, log) = dump_dom(work.path(), broken);
    assert!(
        log.contains("Uncaught ReferenceError"),
        "console errors reach the log:\n{log}"
    );
    assert!(!dom.contains(r#"data-ok="1""#));
}
