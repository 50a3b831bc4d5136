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
    source: "llm-d/llm-d: docs/monitoring/prometheus-alerting-rules.yaml (LLMDLowPrefixCacheHitRate: hit rate < \
             0.30 for 15m); aminalaee/vllm-doctor: vllm_doctor/config.py (minimum hit rate 0.50); \
             https://docs.vllm.ai/en/latest/features/automatic_prefix_caching/",
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
    // Servers that export only a ratio (SGLang's cache_hit_rate), or the log's stats lines.
    facts
        .prefix_cache_hit_rate()
        .map(|level| (level.mean, level.window))
}

/// vLLM's start-up arguments turning prefix caching off (`--no-enable-prefix-caching`).
fn caching_disabled_in_log(facts: &Facts) -> bool {
    facts.evidence.log.as_ref().is_some_and(|log| {
        log.non_default_args
            .get("enable_prefix_caching")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    })
}

fn prefix_low_hit(facts: &Facts, t: &Thresholds) -> Assessment {
    match facts.evidence.shared_prefixes {
        Some(true) => {}
        Some(false) => {
            return PREFIX_LOW_HIT
                .passes("not applicable: the workload shares no prompt prefixes".to_string());
        }
        None => {
            return PREFIX_LOW_HIT.unknown(
                "whether the workload shares prompt prefixes",
                "diagnose --url with --prefix-tokens, or a bench run directory made with them",
            );
        }
    }
    if caching_disabled_in_log(facts) {
        return PREFIX_LOW_HIT.fires(
            Severity::Warning,
            Confidence::High,
            "prefix caching is disabled (enable_prefix_caching=False) although prompts share prefixes".into(),
            vec![
                seen("enable_prefix_caching", 0.0, "engine log, non-default args"),
                seen("workload shares prefixes", 1.0, "workload"),
            ],
        );
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
