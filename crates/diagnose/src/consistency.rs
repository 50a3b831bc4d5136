//! Sanity checks on the evidence itself: Little's law over the server's own numbers (§D D23, §B5), and whether
//! metrics and a log given together describe one server; when they do not, the numbers cannot be combined.

use infer_doctor_core::{Confidence, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, ratio, seen};
use crate::facts::{Facts, finite, in_system_mean};

const LITTLES_LAW: Rule = Rule {
    id: "consistency.littles_law",
    symptom: Symptom::Measurement,
    why: "By Little's law the requests in the system (running + waiting) equal the completion rate times the mean \
          end-to-end time; a large gap means the gauges and the counters describe different windows or servers \
          (scrapes too sparse, several engines behind one name, a restart), so other findings from these metrics \
          are suspect.",
    remedies: &[
        "Scrape more often (--scrape-interval 1s) over a longer steady window",
        "Make sure the metrics URL is the engine the load went to (one replica, not a load-balanced address)",
        "Check for restarts during the run (counters reset)",
    ],
    source: "Little's law, L = λW (J. D. C. Little, Operations Research 9(3), 1961); \
             rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (Sanity Check); the tolerance is \
             infer-doctor's own (inference)",
};

const SOURCES_DISAGREE: Rule = Rule {
    id: "consistency.sources_disagree",
    symptom: Symptom::Measurement,
    why: "The metrics and the engine log were given as one server's, but they describe different servers (or \
          one server restarted with other settings): a rule that reads a gauge from the metrics and a capacity \
          from the log mixes the two, and the metrics' numbers stand in for the log's stats lines wherever both \
          exist, so findings that combine them are about neither server.",
    remedies: &[
        "Pass the log of the server the metrics were scraped from (the same pod or replica, the same start)",
        "Diagnose each source alone (--metrics, then --log) to see what each says",
    ],
    source: "vllm-project/vllm: vllm/v1/metrics/loggers.py (vllm:cache_config_info) and \
             vllm/v1/core/kv_cache_utils.py (\"GPU KV cache size: N tokens\"); sgl-project/sglang \
             (sglang:max_total_num_tokens); ggml-org/llama.cpp: tools/server (/props)",
};

/// KV capacities within this share of each other are the same cache (rounding, a hybrid model's accounting).
const KV_CAPACITY_TOLERANCE: f64 = 0.1;

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![littles_law(facts, t), sources_disagree(facts)]
}

/// The metrics' dialect and the log's server, and their KV capacities, when both sources were given.
fn sources_disagree(facts: &Facts) -> Assessment {
    let (Some(server), Some(log)) = (&facts.evidence.server, &facts.evidence.log) else {
        return SOURCES_DISAGREE
            .unknown("both server metrics and an engine log", &facts.how_server());
    };
    let metrics = format!("server metrics ({} dialect)", server.dialect);
    let engine_log = format!("engine log ({})", log.server);
    let mut differences = Vec::new();
    let mut compared = Vec::new();
    let mut evidence = Vec::new();
    // Dialects are named by server first (`vllm_v1`, `sglang`, `llamacpp`); a log of no known server says nothing.
    if log.server != "unknown" {
        compared.push("the server");
    }
    if log.server != "unknown" && !server.dialect.starts_with(&log.server) {
        differences.push(format!(
            "the metrics are {}'s, the log is {}'s",
            server.dialect, log.server
        ));
    }
    // The metrics label the name the server answers to: the model, or `--served-model-name` when the log sets it.
    if let Some(model) = &log.model
        && !server.models.is_empty()
    {
        compared.push("the model");
        let served = log.non_default_args.get("served_model_name");
        let known =
            |name: &String| name == model || served.is_some_and(|s| s.contains(name.as_str()));
        if !server.models.iter().any(known) {
            differences.push(format!(
                "the metrics serve {}, the log's model is {model}",
                server.models.join(", ")
            ));
        }
    }
    // The metrics add the capacity up over data-parallel engines; the log prints one engine's.
    let metrics_capacity = server
        .gauge(Signal::KvCapacityTokens)
        .and_then(|g| finite(g.max))
        .filter(|v| *v > 0.0)
        .map(|total| total / f64::from(server.engines.unwrap_or(1)));
    if let (Some(from_metrics), Some(from_log)) = (metrics_capacity, log.kv_capacity_tokens) {
        compared.push("the KV capacity");
        let from_log = from_log as f64;
        let gap = ratio((from_metrics - from_log).abs(), from_metrics.max(from_log));
        if gap.is_some_and(|gap| gap > KV_CAPACITY_TOLERANCE) {
            differences.push(format!(
                "KV capacity {from_metrics:.0} tokens in the metrics, {from_log:.0} in the log"
            ));
            evidence.push(seen("kv_capacity_tokens", from_metrics, &metrics));
            evidence.push(seen("kv_capacity_tokens", from_log, &engine_log));
        }
    }
    if compared.is_empty() {
        // Two sources that state nothing in common were not shown to agree.
        return SOURCES_DISAGREE.unknown(
            "something both sources state (the server, the model or the KV capacity)",
            "pass the engine log from the server's start, which names the server, the model and the KV cache",
        );
    }
    if differences.is_empty() {
        return SOURCES_DISAGREE.passes(format!(
            "{metrics} and {engine_log} agree on {}",
            compared.join(", ")
        ));
    }
    evidence.insert(
        0,
        seen(
            format!("differences between {metrics} and {engine_log}"),
            differences.len() as f64,
            "metrics and log",
        ),
    );
    SOURCES_DISAGREE.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "the {metrics} and the {engine_log} describe different servers: {}",
            differences.join("; ")
        ),
        evidence,
    )
}

fn littles_law(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(server) = &facts.evidence.server else {
        return LITTLES_LAW.unknown("server metrics", &facts.how_server());
    };
    let Some(in_system) = in_system_mean(server) else {
        return LITTLES_LAW.unknown("the running and waiting counts", &facts.how_server());
    };
    let Some(e2e) = facts.histogram(Signal::E2e) else {
        return LITTLES_LAW.unknown("the end-to-end latency histogram", &facts.how_server());
    };
    // Prometheus's own windows (scrapes = 0) are sampled by it, often enough; ours must hold enough scrapes.
    let sparse = server.scrapes > 0 && (server.scrapes as f64) < t.littles_law_min_scrapes;
    if sparse || e2e.count < t.littles_law_min_completions {
        return LITTLES_LAW.unknown(
            &format!(
                "a window long enough to check ({} scrapes and {:.0} completions; at least {:.0} and {:.0} needed)",
                server.scrapes, e2e.count, t.littles_law_min_scrapes, t.littles_law_min_completions
            ),
            "a longer run: bench --duration 60s (scraped every --scrape-interval 1s)",
        );
    }
    // Completions per second: the finished counter, else the E2E histogram's own count over the window.
    let completion_rate = facts
        .counter(Signal::RequestsFinished)
        .map(|c| c.rate)
        .filter(|r| *r > 0.0)
        .or_else(|| ratio(e2e.count, server.seconds()));
    let Some(completion_rate) = completion_rate else {
        return LITTLES_LAW.unknown(
            "the completion rate (a window of two or more scrapes)",
            &facts.how_server(),
        );
    };
    let predicted = completion_rate * e2e.mean;
    let larger = in_system.max(predicted);
    if larger < t.littles_law_min_in_system {
        return LITTLES_LAW.passes(format!(
            "{in_system:.1} in the system, {predicted:.1} by Little's law: too few to disagree"
        ));
    }
    let Some(gap) = ratio((in_system - predicted).abs(), larger) else {
        return LITTLES_LAW.unknown("server metrics", &facts.how_server());
    };
    if gap <= t.littles_law_tolerance {
        return LITTLES_LAW.passes(format!(
            "{in_system:.1} in the system vs {predicted:.1} by Little's law ({completion_rate:.2}/s × {:.2} s)",
            e2e.mean
        ));
    }
    let window = facts.server_window_label();
    LITTLES_LAW.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "the server's numbers disagree: {in_system:.1} requests in the system, but {completion_rate:.2}/s × \
             {:.2} s = {predicted:.1} by Little's law",
            e2e.mean
        ),
        vec![
            compared("|L − λW| / max(L, λW)", gap, ">", t.littles_law_tolerance, &window),
            seen("running + waiting mean (L)", in_system, &window),
            seen("completion rate /s (λ)", completion_rate, &window),
            seen("e2e mean s (W)", e2e.mean, &window),
        ],
    )
}
