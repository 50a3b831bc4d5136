//! The prefix-cache rule: when the workload shares prompt prefixes, the cache should serve most of them; a low
//! hit rate means caching is off or requests land on replicas without their prefix. Source: sim_capacity.md §D D16.

use infer_doctor_core::{Confidence, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, percent, ratio, seen};
use crate::facts::Facts;

const PREFIX_LOW_HIT: Rule = Rule {
    id: "cache.prefix_low_hit",
    symptom: Symptom::Ttft,
    why: "The workload repeats prompt prefixes, but the server recomputes them instead of reusing cached KV \
          blocks: prefix caching is off, the cache is too small to keep them, or the router spreads one prefix \
          over replicas.",
    remedies: &[
        "Enable prefix caching (--enable-prefix-caching; on by default in vLLM V1)",
        "Route by prefix (cache-aware routing, e.g. the llm-d scheduler) so a prefix stays on one replica",
        "Give the KV cache more room so shared prefixes are not evicted",
    ],
    source: "sim_capacity.md §D D16 (llm-d alerting: hit rate < 0.30 for 15 m; vllm-doctor < 0.50)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![prefix_low_hit(facts, t)]
}

/// Hit rate over the window: hits / queries from the server's counters, else the log's stats lines.
fn hit_rate(facts: &Facts) -> Option<(f64, String)> {
    let counters = (
        facts.counter(Signal::PrefixCacheHits),
        facts.counter(Signal::PrefixCacheQueries),
    );
    if let (Some(hits), Some(queries)) = counters
        && let Some(rate) = ratio(hits.increase, queries.increase)
    {
        return Some((rate, facts.server_window_label()));
    }
    let rates: Vec<f64> = facts
        .evidence
        .log
        .as_ref()?
        .stats
        .iter()
        .filter_map(|s| s.prefix_cache_hit_rate)
        .filter(|r| r.is_finite())
        .collect();
    let mean = ratio(rates.iter().sum(), rates.len() as f64)?;
    Some((mean, format!("engine log, {} stats lines", rates.len())))
}

fn prefix_low_hit(facts: &Facts, t: &Thresholds) -> Assessment {
    if !facts.evidence.shared_prefixes {
        return PREFIX_LOW_HIT
            .passes("not applicable: the workload shares no prompt prefixes".to_string());
    }
    // With prefix caching off, vLLM does not even count lookups: prompts flow in, no query is ever made.
    let lookups = facts
        .counter(Signal::PrefixCacheQueries)
        .map(|c| c.increase);
    let prompts = facts.counter(Signal::PromptTokens).map(|c| c.increase);
    if let (Some(lookups), Some(prompts)) = (lookups, prompts)
        && lookups == 0.0
        && prompts > 0.0
    {
        let window = facts.server_window_label();
        return PREFIX_LOW_HIT.fires(
            Severity::Warning,
            Confidence::High,
            "prefix caching looks disabled: prompts share prefixes but the cache was never consulted".into(),
            vec![
                seen("prefix_cache_queries increase", lookups, &window),
                seen("prompt_tokens increase", prompts, &window),
                seen("workload shares prefixes", 1.0, "workload"),
            ],
        );
    }
    let Some((rate, window)) = hit_rate(facts) else {
        return PREFIX_LOW_HIT.unknown("prefix-cache hits and queries", &facts.how_server());
    };
    if rate >= t.prefix_hit_low {
        return PREFIX_LOW_HIT.passes(format!("prefix cache hit rate {}", percent(rate)));
    }
    PREFIX_LOW_HIT.fires(
        Severity::Warning,
        Confidence::High,
        format!(
            "the prefix cache hits only {} although prompts share prefixes",
            percent(rate)
        ),
        vec![
            compared(
                "prefix_cache_hits / prefix_cache_queries",
                rate,
                "<",
                t.prefix_hit_low,
                &window,
            ),
            seen("workload shares prefixes", 1.0, "workload"),
        ],
    )
}
