//! The terminal summary: the latency table with the error rate beside it, throughput, token accounting, the
//! client's own health, SLO verdicts and warnings that name their remedy.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use infer_doctor_core::Summary;
use infer_doctor_core::signals::QuantileLimit;
use infer_doctor_core::summary::{Latencies, RunSummary};

/// A server histogram quantile (seconds) in milliseconds, written by `unit`, as a bound ("≤ 300") where the
/// buckets only bound it.
pub(crate) fn quantile_ms(
    seconds: f64,
    limit: Option<QuantileLimit>,
    unit: fn(f64) -> String,
) -> String {
    match limit {
        Some(QuantileLimit::AtMost(bound)) => format!("≤ {}", unit(bound * 1e3)),
        Some(QuantileLimit::AtLeast(bound)) => format!("≥ {}", unit(bound * 1e3)),
        None if seconds.is_finite() => unit(seconds * 1e3),
        None => "-".into(),
    }
}

pub(crate) fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn latency_rows(lat: &Latencies) -> Vec<(&'static str, &Summary)> {
    let mut rows: Vec<(&str, Option<&Summary>)> = Vec::new();
    if lat.open_loop {
        rows.push(("TTFT (from schedule)", lat.ttft_from_schedule.as_ref()));
        rows.push(("E2E (from schedule)", lat.e2e_from_schedule.as_ref()));
        rows.push(("client queue", lat.client_queue.as_ref()));
    }
    rows.push(("TTFT", lat.ttft.as_ref()));
    if lat.ttfo.is_some() && lat.ttfo.map(|t| t.p50) != lat.ttft.map(|t| t.p50) {
        rows.push(("TTFO", lat.ttfo.as_ref()));
    }
    rows.push(("TPOT", lat.tpot.as_ref()));
    rows.push(("ITL per gap", lat.itl_gap.as_ref()));
    rows.push(("ITL per token", lat.itl_token.as_ref()));
    rows.push(("E2E", lat.e2e.as_ref()));
    rows.into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect()
}

/// The latency table; its title carries the error rate so no latency is read without it.
pub fn latency_table(summary: &RunSummary) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "ms", "p50", "p90", "p95", "p99", "p99.9", "mean", "stddev", "min", "max", "n",
    ]);
    for (name, s) in latency_rows(&summary.latency) {
        let mut row = vec![Cell::new(name)];
        for v in [
            s.p50, s.p90, s.p95, s.p99, s.p999, s.mean, s.stddev, s.min, s.max,
        ] {
            row.push(Cell::new(ms(v)).set_alignment(CellAlignment::Right));
        }
        row.push(Cell::new(s.count).set_alignment(CellAlignment::Right));
        table.add_row(row);
    }
    let r = &summary.requests;
    let interrupted = if r.interrupted > 0 {
        format!(", {} interrupted by the client", r.interrupted)
    } else {
        String::new()
    };
    format!(
        "Latency over {} successful requests — errors: {} of {} ({:.2}%){interrupted}\n{table}",
        r.ok,
        r.failed,
        r.ok + r.failed,
        r.error_rate * 100.0
    )
}

pub fn render(summary: &RunSummary, heading: &str) -> String {
    let mut out = String::new();
    out.push_str(heading);
    out.push('\n');
    let r = &summary.requests;
    out.push_str(&format!(
        "requests: {} sent, {} ok, {} failed ({:.2}%){}{}\n",
        r.sent,
        r.ok,
        r.failed,
        r.error_rate * 100.0,
        if r.retried > 0 {
            format!(", {} re-sent on a fresh connection", r.retried)
        } else {
            String::new()
        },
        match (r.warmup, summary.warmup.failed) {
            (0, _) => String::new(),
            // A failed warm-up holds its user back from the measured run: never hidden behind "0 failed".
            (warmup, 0) => format!(", {warmup} warm-up not counted"),
            (warmup, failed) => format!(", {warmup} warm-up not counted ({failed} of them FAILED)"),
        },
    ));
    for e in &r.errors {
        let status = e.status.map(|s| format!(" {s}")).unwrap_or_default();
        out.push_str(&format!(
            "  {}{status}: {} — e.g. {}\n",
            e.class.as_str(),
            e.count,
            e.example
        ));
    }
    if r.ok > 0 {
        out.push_str(&latency_table(summary));
        out.push('\n');
    }
    let t = &summary.throughput;
    out.push_str(&format!(
        "throughput over {:.1} s{}: {:.2} req/s, {:.1} output tok/s, {:.1} total tok/s; concurrency mean {:.1}{}, max {}\n",
        t.window_s,
        if t.steady { " steady window" } else { " (no steady state)" },
        t.request_rate,
        t.output_tokens_per_s,
        t.total_tokens_per_s,
        t.mean_concurrency,
        // Users still on their warm-up after the window opened: the server held those requests too.
        if t.warmup_in_flight >= 0.05 {
            format!(" (+{:.1} warm-up)", t.warmup_in_flight)
        } else {
            String::new()
        },
        t.max_concurrency
    ));
    if let (Some(g), Some(f)) = (t.goodput_rate, t.good_fraction) {
        out.push_str(&format!(
            "goodput: {g:.2} req/s meeting every SLO ({:.1}% of requests sent)\n",
            f * 100.0
        ));
    }
    let k = &summary.tokens;
    out.push_str(&format!(
        "tokens: {:.0} in / {:.0} out per request (asked {:.0}); {:.2} events per token\n",
        k.mean_input, k.mean_output, k.mean_max_tokens, k.events_per_token
    ));
    if let Some(added) = &k.prompt_tokens_added {
        out.push_str(&format!(
            "prompt tokens the server added to the built prompts (BOS, chat template): {:+.1} mean, {:+} to {:+}\n",
            added.mean, added.min, added.max
        ));
    }
    let c = &summary.client;
    let mut client = format!(
        "client: {:.2} of {} cores busy ({:.1} CPU-s)",
        c.cpu_cores_used, c.cores, c.cpu_seconds
    );
    if let Some(rate) = c.requested_rate {
        client.push_str(&format!(
            "; sent {:.2} req/s of {rate:.2} requested",
            t.send_rate
        ));
    }
    if let Some(lag) = &c.schedule_lag {
        client.push_str(&format!(
            "; schedule lag p50 {} p99 {} ms",
            ms(lag.p50),
            ms(lag.p99)
        ));
    }
    out.push_str(&client);
    out.push('\n');
    for s in &summary.slo {
        let observed = s.observed.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        out.push_str(&format!(
            "SLO {}: {} (observed {observed})\n",
            s.name,
            if s.pass { "PASS" } else { "FAIL" }
        ));
    }
    for w in &summary.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// One line of a sweep's latency–throughput table.
pub struct SweepRow<'a> {
    pub label: String,
    pub summary: &'a RunSummary,
    pub slo_pass: Option<bool>,
}

/// The latency–throughput table of a sweep: one row per measured load.
pub fn sweep_table(rows: &[SweepRow<'_>]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "load",
        "sent req/s",
        "done req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "E2E p99",
        "errors",
        "SLO",
    ]);
    let opt = |s: Option<&Summary>, f: fn(&Summary) -> f64| s.map_or("-".to_string(), |s| ms(f(s)));
    for row in rows {
        let s = row.summary;
        let lat = &s.latency;
        let cells = vec![
            row.label.clone(),
            format!("{:.2}", s.throughput.send_rate),
            format!("{:.2}", s.throughput.request_rate),
            format!("{:.1}", s.throughput.output_tokens_per_s),
            opt(lat.headline_ttft(), |s| s.p50),
            opt(lat.headline_ttft(), |s| s.p99),
            opt(lat.tpot.as_ref(), |s| s.p50),
            opt(lat.tpot.as_ref(), |s| s.p99),
            opt(lat.headline_e2e(), |s| s.p99),
            format!("{:.2}%", s.requests.error_rate * 100.0),
            match row.slo_pass {
                Some(true) => "pass".into(),
                Some(false) => "FAIL".into(),
                None => "-".into(),
            },
        ];
        table.add_row(cells);
    }
    format!(
        "Sweep (latencies in ms; open-loop rows measure TTFT/E2E from the intended send time)\n{table}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::aggregate::{AggregateConfig, RunContext};
    use infer_doctor_core::{RequestRecord, RunAggregate};

    #[test]
    fn the_table_shows_the_error_rate_and_every_latency() {
        let mut agg = RunAggregate::new(AggregateConfig {
            slo: "ttft_p99=1ms".parse().unwrap(),
            ..Default::default()
        });
        for i in 0..10u64 {
            agg.add(&RequestRecord {
                id: i,
                sent_us: i * 1000,
                first_token_us: Some(i * 1000 + 5000),
                last_token_us: Some(i * 1000 + 9000),
                end_us: i * 1000 + 9000,
                streamed: true,
                usage_output_tokens: Some(5),
                token_events: 5,
                gaps_us: vec![1000; 4],
                ..Default::default()
            });
        }
        agg.add(&RequestRecord {
            error: Some(infer_doctor_core::RequestError {
                class: infer_doctor_core::ErrorClass::Connect,
                status: None,
                message: "refused".into(),
            }),
            ..Default::default()
        });
        // Stopped by the client: no outcome, so neither an error nor part of the rate.
        agg.add(&RequestRecord {
            error: Some(infer_doctor_core::RequestError {
                class: infer_doctor_core::ErrorClass::Interrupted,
                status: None,
                message: "interrupted".into(),
            }),
            ..Default::default()
        });
        let summary = agg.summarize(&RunContext {
            window_us: (0, 10_000),
            ..Default::default()
        });
        let text = render(&summary, "bench");
        assert!(
            text.contains("errors: 1 of 11 (9.09%), 1 interrupted by the client"),
            "{text}"
        );
        for row in ["TTFT", "TPOT", "ITL per gap", "ITL per token", "E2E"] {
            assert!(text.contains(row), "{row} missing:\n{text}");
        }
        assert!(text.contains("connect: 1 — e.g. refused"));
        assert!(text.contains("SLO ttft_p99<=1ms: FAIL"));
    }

    /// Issue 17: a run whose warm-up mostly timed out said "0 failed" and nothing else.
    #[test]
    fn failed_warm_up_requests_are_said_beside_the_measured_ones() {
        let mut summary = RunSummary::default();
        (
            summary.requests.sent,
            summary.requests.ok,
            summary.requests.warmup,
        ) = (24, 24, 8);
        assert!(render(&summary, "bench").contains("0 failed (0.00%), 8 warm-up not counted\n"));
        (
            summary.warmup.sent,
            summary.warmup.ok,
            summary.warmup.failed,
        ) = (8, 2, 6);
        let text = render(&summary, "bench");
        assert!(
            text.contains("8 warm-up not counted (6 of them FAILED)"),
            "{text}"
        );
    }
}
