//! Rules that look outside the engine: requests held before they reach it (a gateway, load balancer, network),
//! or a load generator too slow to deliver the load. Source rows: sim_capacity.md §D D13; DESIGN.md §6.

use infer_doctor_core::{Confidence, Severity, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, how, ms, ratio, seen};
use crate::facts::{Facts, finite, in_system_mean};

const UPSTREAM: Rule = Rule {
    id: "upstream.bottleneck",
    symptom: Symptom::Ttft,
    why: "The client has many requests in flight but the engine sees far fewer running or waiting: the rest are \
          held before the engine, so the engine's own numbers look fine while users wait.",
    remedies: &[
        "Check the gateway or load balancer: connection limits, concurrency caps, queueing",
        "Check what runs before the model call (RAG retrieval, vector DB, auth) for its own queue",
        "Check the network path and DNS between client and server",
    ],
    source: "rh-aiservices-bu/llm-d-playbook: Performance Debugging Guide (Sanity Check: running + waiting ≈ the \
             load generator's concurrency; fewer means the bottleneck is upstream of vLLM)",
};

const CLIENT_BOUND: Rule = Rule {
    id: "client.bound",
    symptom: Symptom::Measurement,
    why: "The load generator fell behind its own schedule or could not send the rate it was asked for, so the \
          test measured the client, not the server.",
    remedies: &[
        "Run the load generator on a machine with more free cores, or closer to the server",
        "Lower the requested rate or concurrency per client and run several clients",
        "When the prompt builder could not keep up: fewer exact-length prompts to build (a dataset file, or no \
         --tokenizer), or more cores for the client",
    ],
    source: "vllm-project/vllm#54101 (coordinated omission under --max-concurrency); vllm-project/vllm#21104 \
             (request rate not honoured); ai-dynamo/aiperf (schedule lag, \"degraded\" at p99 > 500 ms); the lag, \
             rate, in-flight and CPU limits are infer-doctor's own thresholds (inference)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![upstream(facts, t), client_bound(facts, t)]
}

/// Mean running + waiting over the window, from the server or summed over its pods.
fn in_system(facts: &Facts) -> Option<(f64, String)> {
    if let Some(total) = facts.evidence.server.as_ref().and_then(in_system_mean) {
        return Some((total, facts.server_window_label()));
    }
    let pods = &facts.evidence.pods;
    let per_pod: Option<Vec<f64>> = pods.values().map(in_system_mean).collect();
    let per_pod = per_pod.filter(|p| !p.is_empty())?;
    Some((
        per_pod.iter().sum(),
        format!("server metrics summed over {} pods", pods.len()),
    ))
}

/// Also what `host.api_server_cpu_bound` asks: are requests held before the engine?
pub(crate) fn upstream(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(in_flight) = facts
        .client()
        .and_then(|c| finite(c.throughput.held_in_flight()))
    else {
        return UPSTREAM.unknown("the client's in-flight count", how::LOADED_PROBE);
    };
    let Some((server_count, server_window)) = in_system(facts) else {
        return UPSTREAM.unknown(
            "the server's running and waiting counts",
            &facts.how_server(),
        );
    };
    // Requests refused at once (an HTTP 400) are in flight at the client but never run in the engine.
    if let Some(requests) = facts.client().map(|c| &c.requests) {
        let answered = requests.ok + requests.failed;
        if ratio(requests.failed as f64, answered as f64)
            .is_some_and(|share| share > t.upstream_max_failed_share)
        {
            return UPSTREAM.unknown(
                &format!(
                    "a comparable in-flight count: {} of {answered} requests failed, and the engine never ran \
                     those",
                    requests.failed
                ),
                "fix the errors first (errors.rate), then compare again",
            );
        }
    }
    if facts
        .evidence
        .server
        .as_ref()
        .is_some_and(|s| s.scrapes > 0 && (s.scrapes as f64) < t.upstream_min_scrapes)
    {
        return UPSTREAM.unknown(
            "enough scrapes of the engine's running and waiting counts",
            "a longer run, scraped every --scrape-interval 1s",
        );
    }
    if in_flight < t.upstream_min_in_flight {
        return UPSTREAM.passes(format!(
            "only {in_flight:.1} requests in flight on average: nothing to compare"
        ));
    }
    let Some(share) = ratio(server_count, in_flight) else {
        return UPSTREAM.unknown("the client's in-flight count", how::LOADED_PROBE);
    };
    if share >= t.upstream_ratio {
        return UPSTREAM.passes(format!(
            "the server holds {server_count:.1} of the client's {in_flight:.1} requests in flight"
        ));
    }
    let well_sampled = facts
        .evidence
        .server
        .as_ref()
        .is_some_and(|s| s.scrapes >= 5);
    UPSTREAM.fires(
        Severity::Warning,
        if well_sampled { Confidence::High } else { Confidence::Medium },
        format!(
            "requests are held before the engine: the client has {in_flight:.1} in flight, the server sees \
             {server_count:.1}"
        ),
        vec![
            compared("running + waiting mean / client in-flight", share, "<", t.upstream_ratio, &server_window),
            seen("running + waiting mean", server_count, &server_window),
            seen("client mean in-flight", in_flight, &facts.client_window_label()),
        ],
    )
}

fn client_bound(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(client) = facts.client() else {
        return CLIENT_BOUND.unknown("the client's own health", how::LOADED_PROBE);
    };
    let window = facts.client_window_label();
    let health = &client.client;
    let mut evidence = Vec::new();
    let mut reasons = Vec::new();
    if let Some(lag) = health
        .schedule_lag
        .as_ref()
        .and_then(|l| finite(l.p99))
        .filter(|p99| *p99 > t.client_lag_p99_ms)
    {
        evidence.push(compared(
            "schedule_lag p99 (ms)",
            lag,
            ">",
            t.client_lag_p99_ms,
            &window,
        ));
        reasons.push(format!("it fell {} behind its schedule (p99)", ms(lag)));
    }
    if health.schedule_slips > 0 {
        evidence.push(seen(
            "schedule slides",
            health.schedule_slips as f64,
            &window,
        ));
        reasons.push(format!(
            "it slid its schedule {} times, too far behind to catch up",
            health.schedule_slips
        ));
    }
    if let Some(requested) = health.requested_rate.and_then(finite).filter(|r| *r > 0.0)
        && !health.held_at_limit
    {
        let achieved = client.throughput.send_rate;
        if ratio(achieved, requested).is_some_and(|share| share < t.client_rate_achieved_share) {
            evidence.push(compared(
                "send rate / requested rate",
                achieved / requested,
                "<",
                t.client_rate_achieved_share,
                &window,
            ));
            reasons.push(format!(
                "it sent {achieved:.1} req/s of the {requested:.1} asked for"
            ));
        }
    }
    // Without a steady part the window runs into the drain, when fewer users are left by design.
    if let Some(users) = health
        .requested_concurrency
        .filter(|u| *u > 0 && client.throughput.steady)
    {
        // A user still waiting on its warm-up holds a request at the server: a slow server's warm-up is no client
        // shortfall. Users whose warm-up the server failed may send nothing measured: when those failures cover the
        // measured shortfall it is the server's, and the run's warm-up warning says so. (A warm-up that stalled in
        // the window and then failed is in both counts, so the failures are set against measured requests alone.)
        let held = client.throughput.held_in_flight();
        let held_by_failed_warmup =
            client.warmup.failed as f64 >= users as f64 - client.throughput.mean_concurrency;
        if !held_by_failed_warmup
            && ratio(held, users as f64).is_some_and(|share| share < t.client_in_flight_share)
        {
            evidence.push(compared(
                "mean in flight / users",
                held / users as f64,
                "<",
                t.client_in_flight_share,
                &window,
            ));
            reasons.push(format!(
                "it held {held:.1} of its {users} users' requests in flight on average"
            ));
        }
    }
    if health.cores > 0 {
        let share = health.cpu_cores_used / f64::from(health.cores);
        if share.is_finite() && share > t.client_cpu_share {
            evidence.push(compared(
                "client CPU / cores",
                share,
                ">",
                t.client_cpu_share,
                &window,
            ));
            reasons.push(format!(
                "it kept {:.1} of {} cores busy",
                health.cpu_cores_used, health.cores
            ));
        }
    }
    let waited = health.prompt_wait_share;
    if waited.is_finite()
        && waited > t.client_prompt_wait_share
        && health.prompt_wait_s >= t.client_prompt_wait_min_seconds
    {
        evidence.push(compared(
            "prompt wait / run time",
            waited,
            ">",
            t.client_prompt_wait_share,
            &window,
        ));
        reasons.push(format!(
            "the prompt builder could not keep up: requests waited for their prompt {:.0}% of the run ({:.1} s)",
            waited * 100.0,
            health.prompt_wait_s
        ));
    }
    // Run directories written before this rule judged the client carry only the flag.
    if reasons.is_empty() && health.client_bound {
        evidence.push(seen("client_bound flag", 1.0, &window));
        reasons.push("it flagged itself as the limit".to_string());
    }
    if reasons.is_empty() {
        return CLIENT_BOUND.passes("the client kept its schedule".to_string());
    }
    // Two signs, or one the client measured on itself (lag, slides, CPU), are more than a ratio alone.
    let direct = evidence.iter().any(|o| {
        [
            "schedule_lag",
            "schedule slides",
            "client CPU",
            "prompt wait",
            "client_bound",
        ]
        .iter()
        .any(|name| o.signal.starts_with(name))
    });
    CLIENT_BOUND.fires(
        Severity::Warning,
        if direct || reasons.len() > 1 {
            Confidence::High
        } else {
            Confidence::Medium
        },
        format!(
            "the load generator limited the test: {}",
            reasons.join("; ")
        ),
        evidence,
    )
}
