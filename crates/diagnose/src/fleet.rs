//! Fleet rules: several replicas of one model seen side by side (per-pod series from a Prometheus that scrapes
//! them), where one replica carries far more than the others: the router, not the engines, is the bottleneck.

use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::{Confidence, Observation, Severity, Signal, Symptom, UNLABELLED_PODS};

use crate::Thresholds;
use crate::assessment::{
    Assessment, Rule, compared, confidence_from_reasons, median, percent, ratio, seen,
};
use crate::facts::{Facts, finite, in_system_mean};

const LOAD_SKEW: Rule = Rule {
    id: "fleet.load_skew",
    symptom: Symptom::Ttft,
    why: "One replica holds far more requests (or a far fuller KV cache, or a queue) than its peers over the same \
          window: the router sends it more than it can serve while the others have room, so its users wait and \
          the fleet's capacity goes unused. Equal request counts are not equal load when prompts differ in length, \
          prefixes are cached on one pod, or one replica has a smaller cache or batch cap.",
    remedies: &[
        "Route by load, not by count: nginx least_conn at the least, or a queue- and KV-aware router (llm-d's \
         endpoint picker with its queue-depth and KV-cache-utilization scorers)",
        "Check that every replica runs the same settings and hardware: a smaller KV cache, --max-num-seqs or a \
         slower GPU on one pod makes an even split uneven",
        "Check for session affinity, sticky cookies or a readiness gate that steers new traffic to one pod",
        "Balance before adding replicas: a skewed fleet saturates one pod while the others idle",
    ],
    source: "llm-d/llm-d-inference-scheduler (queue and KV-cache scorers); rh-aiservices-bu/llm-d-playbook: \
             Performance Debugging Guide (load imbalance across replicas); nginx upstream least_conn; the \
             thresholds are infer-doctor's own (inference)",
};

const REPLICA_DOWN: Rule = Rule {
    id: "fleet.replica_down",
    symptom: Symptom::Errors,
    why: "A replica Prometheus could not reach for part of the window, or whose counters started again from zero \
          (a restarted process: a crash, an OOM kill, a failed liveness probe, an eviction), served nothing while \
          it was down: its requests failed or went to the others, and after it came back it was cold (no prefix \
          cache, CUDA graphs being captured).",
    remedies: &[
        "Read the replica's last log lines and its exit reason (`kubectl describe pod`, `kubectl logs --previous`; \
         `infer-doctor collect --log k8s:NAMESPACE/POD`)",
        "Check for OOM kills and GPU faults on its node (`infer-doctor collect` there: kernel log, XIDs)",
        "Give the liveness probe time for model loading and CUDA graph capture (a startup probe), so a slow \
         start is not killed in a loop",
        "Keep the router from sending traffic to a replica until /health answers (readiness gate)",
    ],
    source: "Prometheus: the `up` series and `resets()` (prometheus.io/docs/concepts/jobs_instances, \
             prometheus.io/docs/prometheus/latest/querying/functions/#resets); llm-d/llm-d: \
             docs/monitoring/prometheus-alerting-rules.yaml (service down)",
};

const GATEWAY_ERRORS: Rule = Rule {
    id: "fleet.gateway_errors",
    symptom: Symptom::Errors,
    why: "The client got proxy errors (502 Bad Gateway, 503, 504 Gateway Timeout) while the inference servers \
          counted no such failures themselves: the requests failed in front of the engines, in the load \
          balancer, gateway or ingress (a dead or unready upstream still in rotation, a proxy timeout shorter \
          than a long generation, a connection limit), so the servers' dashboards look clean while users fail.",
    remedies: &[
        "Read the gateway's own log and error counts for the failing upstream (nginx error.log, Envoy's \
         upstream_rq_5xx, the ingress controller's metrics)",
        "Take dead or unready replicas out of rotation: health checks, readiness gates, passive health checks \
         (nginx max_fails, Envoy outlier detection), retries on the next upstream for connection failures",
        "Raise the proxy's read and idle timeouts above the longest generation (streaming responses stay open \
         for minutes)",
    ],
    source: "https://www.rfc-editor.org/rfc/rfc9110#name-502-bad-gateway (502, 503, 504: errors of a gateway or proxy); nginx \
             ngx_http_upstream_module (max_fails, proxy_next_upstream); llm-d/llm-d-inference-scheduler \
             (the gateway in front of the pool); the comparison with the servers' counts is infer-doctor's",
};

const CACHE_UNAWARE_ROUTING: Rule = Rule {
    id: "fleet.cache_unaware_routing",
    symptom: Symptom::Ttft,
    why: "The workload repeats long prompt prefixes (system prompts, few-shot examples, conversation history), \
          but each replica's prefix cache hits far less than the share of prompt tokens those prefixes make up: \
          the router sends a prefix to whichever pod it picks, so every pod computes (and caches) every prefix \
          for itself and their caches evict each other's, and prefill time that one cached copy would save is \
          spent again on each replica.",
    remedies: &[
        "Route by prefix: a prefix-cache-aware scheduler (llm-d's endpoint picker with its prefix-cache scorer, \
         or consistent hashing on the session or system prompt at the gateway) keeps a prefix on the pod that \
         cached it",
        "Where only a session id is shared, route by it (sticky sessions, nginx `hash $session consistent`), \
         with a load scorer beside it so one hot prefix does not pile onto one pod",
        "Give each replica enough KV cache to keep the prefixes routed to it (fewer, larger replicas spread \
         prefixes less)",
    ],
    source: "llm-d/llm-d-inference-scheduler (prefix-cache scorer: route to the pod holding the longest cached \
             prefix); https://docs.vllm.ai/en/latest/features/automatic_prefix_caching/; the comparison with the \
             workload's shared share is infer-doctor's (inference)",
};

/// Statuses a proxy answers for an upstream it could not use; an engine's own failures are 4xx or 500.
const GATEWAY_STATUSES: [u16; 3] = [502, 503, 504];

/// The finish reason an engine gives a request it failed itself (vLLM's `finished_reason="error"`).
const ENGINE_ERROR_REASON: &str = "error";

/// What a replica serves. A P/D split's prefill workers hold each prompt for one forward pass while decode workers
/// hold sequences for their whole generation: their running, waiting and KV are not comparable, so each kind is
/// compared with its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Prefill,
    /// A decode worker of a split, or a replica that serves requests whole.
    Generate,
}

impl Role {
    /// From what the replica did: a prefill worker answers one token per request (the routing sidecar asks it for
    /// `max_tokens: 1` and the decode pod pulls the KV). Only requests that ended by themselves count (an aborted
    /// or failed one may have made no token at all), and only enough of them to tell.
    fn of(window: &ServerWindow, t: &Thresholds) -> Role {
        let tokens = window
            .counter(Signal::GenerationTokens)
            .and_then(|c| finite(c.increase));
        let ended = window.counter(Signal::RequestsFinished).and_then(|c| {
            if c.by_label.is_empty() {
                finite(c.increase)
            } else {
                Some(
                    c.by_label
                        .iter()
                        .filter(|(reason, _)| matches!(reason.as_str(), "stop" | "length"))
                        .map(|(_, n)| n)
                        .sum(),
                )
            }
        });
        match (tokens, ended) {
            (Some(tokens), Some(ended))
                if ended >= PREFILL_ROLE_MIN_REQUESTS
                    && tokens / ended <= t.pd_prefill_tokens_per_request =>
            {
                Role::Prefill
            }
            _ => Role::Generate,
        }
    }

    /// How a replica of this role is named when the fleet is split.
    fn split_name(self) -> &'static str {
        match self {
            Role::Prefill => "prefill",
            Role::Generate => "decode",
        }
    }
}

/// Requests a replica must have finished before its tokens per request tell a prefill worker.
const PREFILL_ROLE_MIN_REQUESTS: f64 = 10.0;

/// Whether a replica pulled KV from another (vLLM's NIXL transfer series): what makes one-token replicas a P/D
/// split's prefill workers rather than replicas that were sent one-token requests.
fn pulled_kv(window: &ServerWindow) -> bool {
    window
        .histogram(Signal::KvTransferTime)
        .and_then(|h| finite(h.count))
        .is_some_and(|n| n > 0.0)
}

/// What one replica carried over the window.
struct PodLoad<'a> {
    pod: &'a str,
    role: Role,
    /// Mean running + waiting.
    in_system: Option<f64>,
    waiting: Option<f64>,
    kv: Option<f64>,
}

fn mean(window: &ServerWindow, signal: Signal) -> Option<f64> {
    window.gauge(signal).and_then(|g| finite(g.mean))
}

/// The replica highest on `measure`, and the median of the others.
fn hottest<'a>(
    loads: &[&'a PodLoad<'a>],
    measure: fn(&PodLoad) -> Option<f64>,
) -> Option<(&'a PodLoad<'a>, f64, f64)> {
    let hot = *loads
        .iter()
        .filter(|l| measure(l).is_some())
        .max_by(|a, b| {
            measure(a)
                .unwrap_or(0.0)
                .total_cmp(&measure(b).unwrap_or(0.0))
        })?;
    let others = median(
        &mut loads
            .iter()
            .filter(|l| l.pod != hot.pod)
            .filter_map(|l| measure(l))
            .collect::<Vec<_>>(),
    )?;
    Some((hot, measure(hot)?, others))
}

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![
        load_skew(facts, t),
        replica_down(facts, t),
        gateway_errors(facts, t),
        cache_unaware_routing(facts, t),
    ]
}

/// One replica's prefix-cache hits and lookups over the window, when it counted any.
fn prefix_counts(window: &ServerWindow) -> Option<(f64, f64)> {
    let hits = window.counter(Signal::PrefixCacheHits)?.increase;
    let queries = window.counter(Signal::PrefixCacheQueries)?.increase;
    (hits.is_finite() && queries.is_finite() && queries > 0.0).then_some((hits, queries))
}

fn cache_unaware_routing(facts: &Facts, t: &Thresholds) -> Assessment {
    let pods: Vec<(&String, &ServerWindow)> = facts
        .evidence
        .pods
        .iter()
        .filter(|(pod, _)| pod.as_str() != UNLABELLED_PODS)
        .collect();
    if pods.len() < 2 {
        return CACHE_UNAWARE_ROUTING.unknown(
            "per-replica prefix-cache counters of at least two replicas",
            "pass --prometheus URL (a Prometheus that scrapes every replica) with --group-by",
        );
    }
    match facts.evidence.shared_prefixes {
        Some(true) => {}
        Some(false) => {
            return CACHE_UNAWARE_ROUTING
                .passes("not applicable: the workload shares no prompt prefixes".to_string());
        }
        None => {
            return CACHE_UNAWARE_ROUTING.unknown(
                "whether the workload shares prompt prefixes",
                "diagnose --url GATEWAY with --prefix-tokens beside --prometheus",
            );
        }
    }
    let allowed = facts.evidence.workload.as_ref().and_then(|w| {
        w.prefix_tokens
            .and_then(|p| ratio(p, w.input_tokens))
            .filter(|s| (0.0..=1.0).contains(s))
    });
    let Some(allowed) = allowed else {
        return CACHE_UNAWARE_ROUTING.unknown(
            "how many tokens of each prompt are a shared prefix",
            "diagnose --url GATEWAY with --prefix-tokens beside --prometheus",
        );
    };
    if allowed < t.fleet_prefix_share_min {
        return CACHE_UNAWARE_ROUTING.passes(format!(
            "not applicable: the shared prefix is only {} of each prompt",
            percent(allowed)
        ));
    }
    let counted: Vec<(&str, f64, f64)> = pods
        .iter()
        .filter_map(|(pod, w)| prefix_counts(w).map(|(h, q)| (pod.as_str(), h, q)))
        .collect();
    if counted.len() < 2 {
        return CACHE_UNAWARE_ROUTING.unknown(
            "prefix-cache hits and queries of at least two replicas (none are counted with prefix caching off)",
            &facts.how_server(),
        );
    }
    let (hits, queries) = counted
        .iter()
        .fold((0.0, 0.0), |(h, q), (_, ph, pq)| (h + ph, q + pq));
    let rate = hits / queries;
    let floor = allowed * t.fleet_prefix_hit_share;
    let per_pod: Vec<String> = counted
        .iter()
        .map(|(pod, h, q)| format!("{pod} {}", percent(h / q)))
        .collect();
    if rate >= floor {
        return CACHE_UNAWARE_ROUTING.passes(format!(
            "the replicas' prefix caches hit {} of prompt tokens ({}), near the {} the shared prefixes allow",
            percent(rate),
            per_pod.join(", "),
            percent(allowed)
        ));
    }
    let low = counted.iter().filter(|(_, h, q)| h / q < floor).count();
    let window = format!(
        "prefix-cache counters per replica over {:.0} s",
        pods.iter().map(|(_, w)| w.seconds()).fold(0.0, f64::max)
    );
    let mut evidence = vec![
        compared(
            "prefix_cache_hits / prefix_cache_queries (all replicas)",
            rate,
            "<",
            floor,
            &window,
        ),
        seen("shared prefix share of prompt tokens", allowed, "workload"),
    ];
    evidence.extend(
        counted
            .iter()
            .map(|(pod, h, q)| seen(format!("prefix cache hit rate ({pod})"), h / q, &window)),
    );
    CACHE_UNAWARE_ROUTING.fires(
        Severity::Warning,
        if low == counted.len() {
            Confidence::High
        } else {
            Confidence::Medium
        },
        format!(
            "the {} replicas' prefix caches hit {} of prompt tokens ({}) although {} of each prompt is a shared \
             prefix: the router spreads each prefix over the pods",
            counted.len(),
            percent(rate),
            per_pod.join(", "),
            percent(allowed)
        ),
        evidence,
    )
}

fn gateway_errors(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(client) = facts.client().filter(|c| c.requests.sent > 0) else {
        return GATEWAY_ERRORS.unknown(
            "the client's requests through the gateway",
            "run the probe through the gateway with the servers' own metrics beside it (diagnose --url GATEWAY \
             --prometheus URL)",
        );
    };
    // One engine's metrics, or /metrics scraped through the gateway (another replica each time), cannot stand for
    // every replica the gateway sent to.
    let finished = facts
        .counter(Signal::RequestsFinished)
        .filter(|_| !facts.evidence.pods.is_empty());
    let Some(finished) = finished else {
        return GATEWAY_ERRORS.unknown(
            "every replica's own count of finished and failed requests",
            "pass --prometheus URL (a Prometheus that scrapes every replica) beside --url GATEWAY",
        );
    };
    let requests = &client.requests;
    let answered = (requests.ok + requests.failed) as f64;
    if answered == 0.0 {
        return GATEWAY_ERRORS.unknown(
            "a request through the gateway that got an answer",
            "run the probe again with a longer --budget",
        );
    }
    let proxy_errors: Vec<(u16, u64)> = requests
        .errors
        .iter()
        .filter_map(|e| {
            e.status
                .filter(|s| GATEWAY_STATUSES.contains(s))
                .map(|s| (s, e.count))
        })
        .collect();
    let proxied: u64 = proxy_errors.iter().map(|(_, n)| n).sum();
    let client_share = proxied as f64 / answered;
    // Only the engine's own errors: a proxy that times out hangs up on the engine, which counts an `abort`, and
    // other clients abort too, so aborts cannot clear the gateway.
    let server_failed = finished
        .by_label
        .get(ENGINE_ERROR_REASON)
        .copied()
        .filter(|n| n.is_finite())
        .unwrap_or(0.0);
    if client_share <= t.error_rate_warning {
        return GATEWAY_ERRORS.passes(format!(
            "{} of {answered:.0} requests got a proxy error (502, 503, 504)",
            percent(client_share)
        ));
    }
    // The servers failing about as many requests themselves: the engines' errors, passed through the proxy.
    if server_failed >= proxied as f64 / 2.0 {
        return GATEWAY_ERRORS.passes(format!(
            "the servers count {server_failed:.0} failed requests themselves against {proxied} proxy errors: \
             the engines' failures, not the gateway's"
        ));
    }
    let window = facts.client_window_label();
    let statuses: Vec<String> = proxy_errors
        .iter()
        .map(|(s, n)| format!("HTTP {s} ×{n}"))
        .collect();
    GATEWAY_ERRORS.fires(
        if client_share > t.error_rate_critical {
            Severity::Critical
        } else {
            Severity::Warning
        },
        Confidence::High,
        format!(
            "{} of requests failed in front of the engines ({}) while the servers counted {server_failed:.0} \
             failed requests",
            percent(client_share),
            statuses.join(", ")
        ),
        vec![
            seen("client proxy-error share", client_share, &window),
            seen(
                "server failed requests (finished error)",
                server_failed,
                &facts.server_window_label(),
            ),
        ],
    )
}

fn replica_down(facts: &Facts, t: &Thresholds) -> Assessment {
    let health = &facts.evidence.pod_health;
    if health.is_empty() {
        return REPLICA_DOWN.unknown(
            "each replica's scrape health over the window",
            "pass --prometheus URL (a Prometheus that scrapes every replica: its `up` series and counter resets), or \
             --url once per replica (each scraped through the probe)",
        );
    }
    let window = "Prometheus scrapes per replica over the window";
    let mut down = Vec::new();
    let mut evidence = Vec::new();
    let mut unread = Vec::new();
    let mut critical = false;
    for pod in facts.evidence.pods.keys() {
        let h = health.get(pod).cloned().unwrap_or_default();
        let (up, restarts) = (
            h.up_share.filter(|v| v.is_finite()),
            h.restarts.filter(|v| v.is_finite()),
        );
        if up.is_none() || restarts.is_none() {
            unread.push(pod.as_str());
        }
        if let Some(up) = up.filter(|up| *up < t.fleet_up_share_min) {
            down.push(format!(
                "{pod} unreachable in {} of the scrapes",
                percent(1.0 - up)
            ));
            evidence.push(seen(format!("up share ({pod})"), up, window));
            critical |= up < 0.5;
        }
        if let Some(restarts) = restarts.filter(|r| *r >= 1.0) {
            down.push(format!(
                "{pod} restarted {restarts:.0}× (its counters reset)"
            ));
            evidence.push(seen(format!("counter resets ({pod})"), restarts, window));
            critical = true;
        }
    }
    let missing = || {
        format!(
            "whether {} answered every scrape and kept running (no `up` or counter series carried their label)",
            unread.join(", ")
        )
    };
    if down.is_empty() {
        if !unread.is_empty() {
            return REPLICA_DOWN.unknown(&missing(), &facts.how_server());
        }
        return REPLICA_DOWN.passes(format!(
            "all {} replicas reachable through the window, none restarted",
            facts.evidence.pods.len()
        ));
    }
    let found = REPLICA_DOWN.fires(
        if critical {
            Severity::Critical
        } else {
            Severity::Warning
        },
        Confidence::High,
        format!("a replica was down in the window: {}", down.join("; ")),
        evidence,
    );
    if unread.is_empty() {
        found
    } else {
        found.unsettled(&missing(), &facts.how_server())
    }
}

/// One replica far above its peers of the same role: why, with the evidence for it.
struct Skew<'a> {
    hot: &'a PodLoad<'a>,
    reasons: Vec<String>,
    evidence: Vec<Observation>,
}

/// The replica of `peers` that carries far more than the others, when one does. Each measure may name a different
/// replica; the first one named is the finding, and only its reasons count.
fn skew_among<'a>(peers: &[&'a PodLoad<'a>], t: &Thresholds, window: &str) -> Option<Skew<'a>> {
    let mut skew: Option<Skew> = None;
    let mut note = |hot: &'a PodLoad<'a>, what: String, observed: [Observation; 2]| {
        let found = skew.get_or_insert(Skew {
            hot,
            reasons: Vec::new(),
            evidence: Vec::new(),
        });
        if found.hot.pod == hot.pod {
            found.reasons.push(what);
            found.evidence.extend(observed);
        }
    };
    if let Some((hot, value, others)) = hottest(peers, |l| l.in_system)
        && value - others >= t.fleet_min_in_system_gap
        && value >= t.fleet_skew_ratio * others
    {
        note(
            hot,
            format!("{value:.1} requests in the system against a median of {others:.1}"),
            [
                seen(format!("running+waiting mean ({})", hot.pod), value, window),
                seen(
                    "running+waiting mean (median of the others)",
                    others,
                    window,
                ),
            ],
        );
    }
    if let Some((hot, value, others)) = hottest(peers, |l| l.waiting)
        && value > t.waiting_mean_nonempty
        && value >= t.fleet_skew_ratio * others.max(t.waiting_mean_nonempty)
    {
        note(
            hot,
            format!("{value:.1} waiting against a median of {others:.1}"),
            [
                seen(
                    format!("requests_waiting mean ({})", hot.pod),
                    value,
                    window,
                ),
                seen(
                    "requests_waiting mean (median of the others)",
                    others,
                    window,
                ),
            ],
        );
    }
    if let Some((hot, value, others)) = hottest(peers, |l| l.kv)
        && value - others >= t.fleet_kv_gap
        && value >= t.batch_cap_kv_below
    {
        note(
            hot,
            format!(
                "KV usage {} against a median of {}",
                percent(value),
                percent(others)
            ),
            [
                seen(format!("kv_usage mean ({})", hot.pod), value, window),
                seen("kv_usage mean (median of the others)", others, window),
            ],
        );
    }
    skew
}

const PER_REPLICA: &str = "pass --prometheus URL (a Prometheus that scrapes every replica) with --selector and \
                           --group-by, or --url once per replica";

/// `3 replicas`, `1 decode replica`: a group of peers, named by role when the fleet is split.
fn peers_of(role: Option<Role>, count: usize) -> String {
    let kind = role
        .map(|r| format!("{} ", r.split_name()))
        .unwrap_or_default();
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {kind}replica{plural}")
}

/// No replica far above its peers: even where peers could be compared, unknown where none could.
fn no_skew(facts: &Facts, groups: &[(Option<Role>, Vec<&PodLoad>)], split: bool) -> Assessment {
    let measured = |peers: &[&PodLoad], m: fn(&PodLoad) -> Option<f64>| {
        peers.iter().filter(|l| m(l).is_some()).count()
    };
    let comparable: Vec<_> = groups
        .iter()
        .filter(|(_, peers)| {
            measured(peers, |l| l.in_system) >= 2 || measured(peers, |l| l.kv) >= 2
        })
        .collect();
    if comparable.is_empty() {
        return if split {
            LOAD_SKEW.unknown(
                "the running, waiting and KV gauges of at least two replicas of one kind (prefill or decode)",
                PER_REPLICA,
            )
        } else {
            LOAD_SKEW.unknown(
                "the replicas' running, waiting and KV gauges",
                &facts.how_server(),
            )
        };
    }
    let spreads: Vec<String> = comparable
        .iter()
        .map(|(role, peers)| {
            let spread = hottest(peers, |l| l.in_system)
                .map(|(hot, value, others)| {
                    format!(
                        "; the busiest, {}, holds {value:.1} against a median of {others:.1}",
                        hot.pod
                    )
                })
                .unwrap_or_default();
            format!("{}{spread}", peers_of(*role, peers.len()))
        })
        .collect();
    let alone: String = groups
        .iter()
        .filter(|(_, peers)| peers.len() == 1)
        .map(|(role, _)| format!("; the {} has no peer to compare", peers_of(*role, 1)))
        .collect();
    let apart = if split {
        " (prefill and decode replicas compared apart: a prefill worker makes one token per request)"
    } else {
        ""
    };
    LOAD_SKEW.passes(format!(
        "load is even across {}{alone}{apart}",
        spreads.join("; and across ")
    ))
}

/// Critical when users wait on the hot replica while a peer has room: the fleet is not full, its routing is.
fn skew_severity(skew: &Skew, peers: &[&PodLoad], t: &Thresholds) -> Severity {
    let hot = skew.hot;
    let wasted = peers
        .iter()
        .any(|l| l.pod != hot.pod && l.kv.is_some_and(|kv| kv < t.batch_cap_kv_below));
    let hot_saturated = hot.waiting.is_some_and(|w| w > t.waiting_mean_nonempty)
        && hot.kv.is_some_and(|kv| kv >= t.kv_saturated);
    if hot_saturated && wasted {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

fn load_skew(facts: &Facts, t: &Thresholds) -> Assessment {
    let pods = &facts.evidence.pods;
    if pods.len() < 2 {
        return LOAD_SKEW.unknown("per-replica series of at least two replicas", PER_REPLICA);
    }
    let window = format!(
        "server metrics per replica over {:.0} s",
        pods.values().map(ServerWindow::seconds).fold(0.0, f64::max)
    );
    // Series without the replica label are summed into one "(no label)" group: several replicas, not one.
    let loads: Vec<PodLoad> = pods
        .iter()
        .filter(|(pod, _)| pod.as_str() != UNLABELLED_PODS)
        .map(|(pod, w)| PodLoad {
            pod,
            role: Role::of(w, t),
            in_system: in_system_mean(w),
            waiting: mean(w, Signal::RequestsWaiting),
            kv: mean(w, Signal::KvUsage),
        })
        .collect();
    let of_role =
        |role: Role| -> Vec<&PodLoad> { loads.iter().filter(|l| l.role == role).collect() };
    let (prefill, generate) = (of_role(Role::Prefill), of_role(Role::Generate));
    let split = !prefill.is_empty() && !generate.is_empty() && pods.values().any(pulled_kv);
    let groups: Vec<(Option<Role>, Vec<&PodLoad>)> = if split {
        vec![
            (Some(Role::Prefill), prefill),
            (Some(Role::Generate), generate),
        ]
    } else {
        vec![(None, loads.iter().collect())]
    };
    // Each kind judged on its own; the worse of their skews is the finding.
    let found = groups
        .iter()
        .filter_map(|(role, peers)| {
            let skew = skew_among(peers, t, &window)?;
            let severity = skew_severity(&skew, peers, t);
            Some((severity, *role, peers, skew))
        })
        .min_by_key(|(severity, ..)| *severity);
    let Some((
        severity,
        role,
        peers,
        Skew {
            hot,
            reasons,
            evidence,
        },
    )) = found
    else {
        return no_skew(facts, &groups, split);
    };
    LOAD_SKEW.fires(
        severity,
        confidence_from_reasons(reasons.len()),
        format!(
            "replica {} carries far more than the other {}: {}",
            hot.pod,
            peers_of(role, peers.len() - 1),
            reasons.join("; ")
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judged;
    use infer_doctor_core::signals::GaugeStats;
    use infer_doctor_core::{Evidence, ReplicaHealth};

    fn pod(running: f64, waiting: f64, kv: f64) -> ServerWindow {
        let mut w = ServerWindow {
            dialect: "vllm_v1".into(),
            end: 300.0,
            scrapes: 20,
            ..ServerWindow::default()
        };
        w.gauges
            .insert(Signal::RequestsRunning, GaugeStats::constant(running));
        w.gauges
            .insert(Signal::RequestsWaiting, GaugeStats::constant(waiting));
        w.gauges.insert(Signal::KvUsage, GaugeStats::constant(kv));
        w
    }

    fn fleet(pods: &[(&str, ServerWindow)]) -> Evidence {
        Evidence {
            pods: pods
                .iter()
                .map(|(n, w)| (n.to_string(), w.clone()))
                .collect(),
            ..Evidence::default()
        }
    }

    fn health(up_share: f64, restarts: f64) -> ReplicaHealth {
        ReplicaHealth {
            up_share: Some(up_share),
            restarts: Some(restarts),
        }
    }

    fn down(evidence: &Evidence) -> Option<infer_doctor_core::Finding> {
        judged(evidence, "fleet.replica_down", "replicas_up").0
    }

    #[test]
    fn a_restarted_or_unreachable_replica_is_named_and_a_healthy_fleet_passes() {
        let mut evidence = fleet(&[("a", pod(5.0, 0.0, 0.3)), ("b", pod(5.0, 0.0, 0.3))]);
        evidence.pod_health = [
            ("a".to_string(), health(1.0, 0.0)),
            ("b".to_string(), health(1.0, 0.0)),
        ]
        .into();
        assert!(down(&evidence).is_none());
        // b missed 1 scrape in 5: reachable most of the time, a warning.
        evidence.pod_health.insert("b".into(), health(0.8, 0.0));
        let f = down(&evidence).expect("b was unreachable");
        assert_eq!(f.severity, Severity::Warning);
        assert!(
            f.verdict.contains("b unreachable in 20% of the scrapes"),
            "{}",
            f.verdict
        );
        // a restarted: critical, whatever its scrapes.
        evidence.pod_health.insert("a".into(), health(1.0, 1.0));
        let f = down(&evidence).expect("a restarted");
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.verdict.contains("a restarted 1×"), "{}", f.verdict);
        // Without Prometheus's view of the replicas, nothing is known.
        evidence.pod_health.clear();
        assert!(down(&evidence).is_none());
        // A replica whose `up` carried no replica label, or came back NaN, is not called reachable.
        evidence.pod_health = [
            ("a".to_string(), health(1.0, 0.0)),
            ("b".to_string(), health(f64::NAN, 0.0)),
        ]
        .into();
        assert!(down(&evidence).is_none());
        let line = judged(&evidence, "fleet.replica_down", "replicas_up").1;
        assert_eq!(
            line.status,
            infer_doctor_core::CheckStatus::Unknown,
            "{line:?}"
        );
        assert!(line.detail.contains('b'), "{}", line.detail);
    }

    #[test]
    fn an_idle_fleet_with_one_warmer_cache_is_no_skew() {
        // 35% against 4%: a gap, but no replica near full.
        let idle = fleet(&[("a", pod(1.0, 0.0, 0.35)), ("b", pod(0.0, 0.0, 0.04))]);
        assert!(finding(&idle).is_none(), "{:?}", finding(&idle));
        // One replica's gauges missing: the other alone cannot be called even.
        let mut half = fleet(&[("a", pod(5.0, 0.0, 0.3))]);
        half.pods.insert("b".into(), ServerWindow::default());
        assert_eq!(status(&half), infer_doctor_core::CheckStatus::Unknown);
    }

    fn finding(evidence: &Evidence) -> Option<infer_doctor_core::Finding> {
        judged(evidence, "fleet.load_skew", "fleet_balanced").0
    }

    fn balanced(evidence: &Evidence) -> infer_doctor_core::CheckLine {
        judged(evidence, "fleet.load_skew", "fleet_balanced").1
    }

    fn status(evidence: &Evidence) -> infer_doctor_core::CheckStatus {
        balanced(evidence).status
    }

    #[test]
    fn one_saturated_replica_beside_idle_ones_is_named_and_critical() {
        let evidence = fleet(&[
            ("vllm-a", pod(16.0, 9.0, 0.97)),
            ("vllm-b", pod(4.0, 0.0, 0.30)),
            ("vllm-c", pod(5.0, 0.0, 0.35)),
        ]);
        let f = finding(&evidence).expect("skew");
        assert!(
            f.verdict.starts_with("replica vllm-a carries far more"),
            "{}",
            f.verdict
        );
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.confidence, Confidence::High);
        assert_eq!(status(&evidence), infer_doctor_core::CheckStatus::Fail);
    }

    /// A replica that finished `requests` and generated `tokens` over the window.
    fn served(mut window: ServerWindow, requests: f64, tokens: f64) -> ServerWindow {
        for (signal, increase) in [
            (Signal::RequestsFinished, requests),
            (Signal::GenerationTokens, tokens),
        ] {
            let rate = increase / window.seconds();
            window.counters.insert(
                signal,
                infer_doctor_core::signals::CounterStats {
                    increase,
                    rate,
                    by_label: Default::default(),
                },
            );
        }
        window
    }

    /// A decode replica's KV pulled from a prefill replica `transfers` times (vLLM's NIXL histogram).
    fn pulling(mut window: ServerWindow, transfers: f64) -> ServerWindow {
        window.histograms.insert(
            Signal::KvTransferTime,
            infer_doctor_core::signals::HistogramStats {
                count: transfers,
                mean: 0.002,
                p50: 0.002,
                p90: 0.003,
                p99: 0.004,
                limits: Default::default(),
            },
        );
        window
    }

    #[test]
    fn prefill_and_decode_replicas_are_compared_apart() {
        // Prefill workers answer one token per request and hold each prompt for a pass; decode workers hold
        // every sequence to its end and pull its KV: 1.5 against 14 in the system is the split, not routing.
        let prefill = |running| served(pod(running, 0.0, 0.05), 600.0, 600.0);
        let decode = |running, waiting, kv| {
            pulling(served(pod(running, waiting, kv), 600.0, 153_600.0), 600.0)
        };
        let even = fleet(&[
            ("prefill-0", prefill(1.5)),
            ("prefill-1", prefill(1.2)),
            ("decode-0", decode(14.0, 0.0, 0.62)),
            ("decode-1", decode(13.0, 0.0, 0.58)),
        ]);
        assert!(finding(&even).is_none(), "{:?}", finding(&even));
        let line = balanced(&even);
        assert_eq!(line.status, infer_doctor_core::CheckStatus::Pass);
        assert!(
            line.detail.contains("2 prefill replicas")
                && line.detail.contains("2 decode replicas")
                && line.detail.contains("compared apart"),
            "{}",
            line.detail
        );
        // Unsplit, the same gauges would call the decode pods hot.
        let mut unsplit = even.clone();
        for (_, window) in unsplit.pods.iter_mut() {
            window.counters.clear();
        }
        assert!(finding(&unsplit).is_some());
        // One decode pod queueing while its peer has room is still routing.
        let hot = fleet(&[
            ("prefill-0", prefill(1.5)),
            ("prefill-1", prefill(1.2)),
            ("decode-0", decode(16.0, 8.0, 0.98)),
            ("decode-1", decode(5.0, 0.0, 0.30)),
        ]);
        let f = finding(&hot).expect("decode-0 is hot");
        assert!(
            f.verdict
                .starts_with("replica decode-0 carries far more than the other 1 decode replica: "),
            "{}",
            f.verdict
        );
        assert_eq!(f.severity, Severity::Critical);
        // A lone decode pod beside prefill pods has no peer to be compared with; the prefill pods still are.
        let lone = fleet(&[
            ("prefill-0", prefill(1.5)),
            ("prefill-1", prefill(1.2)),
            ("decode-0", decode(16.0, 8.0, 0.98)),
        ]);
        assert!(finding(&lone).is_none(), "{:?}", finding(&lone));
        let line = balanced(&lone);
        assert_eq!(line.status, infer_doctor_core::CheckStatus::Pass);
        assert!(
            line.detail
                .contains("the 1 decode replica has no peer to compare"),
            "{}",
            line.detail
        );
        // A mild skew among the prefill workers does not hide a decode replica queueing beside an idle peer.
        let both = fleet(&[
            ("prefill-0", prefill(4.5)),
            ("prefill-1", prefill(1.2)),
            ("prefill-2", prefill(1.3)),
            ("decode-0", decode(16.0, 8.0, 0.98)),
            ("decode-1", decode(5.0, 0.0, 0.30)),
        ]);
        let f = finding(&both).expect("skew");
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.verdict.starts_with("replica decode-0 "), "{}", f.verdict);
    }

    #[test]
    fn replicas_sent_one_token_requests_are_no_prefill_workers() {
        // One replica got only one-token requests (a classifier's traffic, say) and nothing moved KV between
        // replicas: no split, so the others' load is judged beside it.
        let one_token = served(pod(1.0, 0.0, 0.05), 600.0, 600.0);
        let busy = |running| served(pod(running, 0.0, 0.6), 600.0, 153_600.0);
        let fleet_of =
            |first: ServerWindow| fleet(&[("a", first), ("b", busy(14.0)), ("c", busy(15.0))]);
        let f = finding(&fleet_of(one_token.clone())).expect("compared with the one-token replica");
        assert!(f.verdict.contains("carries far more"), "{}", f.verdict);
        // Nor are requests that aborted with no token, nor a handful of requests.
        let mut aborted = served(pod(1.0, 0.0, 0.05), 600.0, 0.0);
        aborted
            .counters
            .get_mut(&Signal::RequestsFinished)
            .unwrap()
            .by_label = [("abort".to_string(), 600.0)].into();
        let mut pulling_fleet = fleet_of(aborted);
        let decode = pulling(pulling_fleet.pods["b"].clone(), 600.0);
        pulling_fleet.pods.insert("b".into(), decode);
        assert!(
            finding(&pulling_fleet).is_some(),
            "an aborting replica is no prefill worker"
        );
        let mut few = fleet_of(served(pod(1.0, 0.0, 0.05), 5.0, 5.0));
        let decode = pulling(few.pods["b"].clone(), 600.0);
        few.pods.insert("b".into(), decode);
        assert!(finding(&few).is_some(), "five requests tell no role");
    }

    #[test]
    fn an_even_fleet_passes_and_a_near_miss_does_not_fire() {
        let even = fleet(&[("a", pod(8.0, 0.0, 0.5)), ("b", pod(7.0, 0.0, 0.45))]);
        assert!(finding(&even).is_none());
        assert_eq!(status(&even), infer_doctor_core::CheckStatus::Pass);
        // 1.9× the others' load, a KV gap of 25 points, a queue of 0.4: each just under its threshold.
        let near = fleet(&[
            ("a", pod(9.5, 0.4, 0.70)),
            ("b", pod(5.0, 0.0, 0.45)),
            ("c", pod(5.0, 0.0, 0.45)),
        ]);
        assert!(finding(&near).is_none(), "{:?}", finding(&near));
    }

    #[test]
    fn a_full_cache_on_one_pod_alone_is_a_warning_and_one_pod_is_unknown() {
        // Equal counts (least_conn) but one replica with a smaller cache: its KV is far above the others'.
        let kv_only = fleet(&[("small", pod(6.0, 0.0, 0.95)), ("big", pod(6.0, 0.0, 0.40))]);
        let f = finding(&kv_only).expect("KV skew");
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.verdict.contains("KV usage 95%"), "{}", f.verdict);
        let single = fleet(&[("only", pod(30.0, 20.0, 1.0))]);
        assert!(finding(&single).is_none());
        assert_eq!(status(&single), infer_doctor_core::CheckStatus::Unknown);
    }

    /// A pod whose prefix cache served `hits` of 10,000 prompt tokens looked up.
    fn caching(hits: f64) -> ServerWindow {
        let mut w = pod(8.0, 0.0, 0.5);
        for (signal, increase) in [
            (Signal::PrefixCacheHits, hits),
            (Signal::PrefixCacheQueries, 10_000.0),
        ] {
            w.counters.insert(
                signal,
                infer_doctor_core::signals::CounterStats {
                    increase,
                    rate: increase / 300.0,
                    by_label: Default::default(),
                },
            );
        }
        w
    }

    /// A fleet under a workload whose prompts are `prefix` shared tokens out of 1,000.
    fn prefix_workload(pods: &[(&str, ServerWindow)], prefix: Option<f64>) -> Evidence {
        Evidence {
            shared_prefixes: Some(prefix.is_some_and(|p| p > 0.0)),
            workload: Some(infer_doctor_core::WorkloadFacts {
                input_tokens: 1000.0,
                output_tokens: 100.0,
                concurrency: 16,
                prefix_tokens: prefix,
            }),
            ..fleet(pods)
        }
    }

    fn routing(
        evidence: &Evidence,
    ) -> (
        Option<infer_doctor_core::Finding>,
        infer_doctor_core::CheckStatus,
    ) {
        let (found, line) = judged(evidence, "fleet.cache_unaware_routing", "prefix_routing");
        (found, line.status)
    }

    #[test]
    fn prefixes_spread_over_the_pods_fire_and_names_each_pods_hit_rate() {
        // 80% of each prompt is shared; the three pods hit 30%, 25%, 35%.
        let spread = prefix_workload(
            &[
                ("a", caching(3000.0)),
                ("b", caching(2500.0)),
                ("c", caching(3500.0)),
            ],
            Some(800.0),
        );
        let (f, line) = routing(&spread);
        let f = f.expect("fires");
        assert_eq!(line, infer_doctor_core::CheckStatus::Fail);
        assert_eq!(
            (f.severity, f.confidence),
            (Severity::Warning, Confidence::High)
        );
        assert!(
            f.verdict
                .contains("hit 30% of prompt tokens (a 30%, b 25%, c 35%)"),
            "{}",
            f.verdict
        );
        assert!(
            f.verdict.contains("although 80% of each prompt"),
            "{}",
            f.verdict
        );
        // 50% of 80%: above the 60% of it that routing by prefix reaches.
        let near = prefix_workload(
            &[("a", caching(5000.0)), ("b", caching(5000.0))],
            Some(800.0),
        );
        assert_eq!(routing(&near), (None, infer_doctor_core::CheckStatus::Pass));
    }

    #[test]
    fn without_the_workloads_share_or_per_pod_counters_it_is_unknown() {
        let low = [("a", caching(1000.0)), ("b", caching(1000.0))];
        let unknown = infer_doctor_core::CheckStatus::Unknown;
        // A workload without shared prefixes: nothing to route by.
        assert_eq!(
            routing(&prefix_workload(&low, None)).1,
            infer_doctor_core::CheckStatus::Pass
        );
        // Prefixes shared, but how much of the prompt is not known; then not even whether they are.
        let mut untold = prefix_workload(&low, Some(800.0));
        untold.workload.as_mut().unwrap().prefix_tokens = None;
        assert_eq!(routing(&untold), (None, unknown));
        untold.shared_prefixes = None;
        assert_eq!(routing(&untold), (None, unknown));
        // No prefix counters (caching off, or a server without them).
        let bare = prefix_workload(
            &[("a", pod(8.0, 0.0, 0.5)), ("b", pod(8.0, 0.0, 0.5))],
            Some(800.0),
        );
        assert_eq!(routing(&bare), (None, unknown));
        // One replica: nothing to route between.
        assert_eq!(
            routing(&prefix_workload(&low[..1], Some(800.0))),
            (None, unknown)
        );
        // A shared prefix of a tenth of the prompt: a low hit rate costs little.
        assert_eq!(
            routing(&prefix_workload(&low, Some(100.0))),
            (None, infer_doctor_core::CheckStatus::Pass)
        );
    }
}
