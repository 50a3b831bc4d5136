//! A Prometheus server as the source, for fleets it already scrapes: the PromQL that asks it for each canonical
//! signal in the fleet's dialect, per pod and in total, and the reading of its answers. HTTP is the caller's.

use std::collections::BTreeMap;

use infer_doctor_core::Signal;
use infer_doctor_core::signals::{CounterStats, GaugeStats, HistogramStats, ServerWindow};
use serde_json::Value;

use crate::dialect::{Dialect, Source, detect_names, mapping};

/// What to ask: which series (a selector such as `{namespace="llm"}`), over which window, split by which label.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The label matchers inside the braces, e.g. `namespace="llm"`; empty for everything.
    pub matchers: String,
    /// PromQL duration, e.g. `300000ms`, and the same in seconds.
    pub window: String,
    pub window_seconds: f64,
    /// The label that tells pods apart (`pod` under Kubernetes, `instance` otherwise).
    pub group_by: String,
}

impl Scope {
    /// Parses a selector as users write it: `{namespace="llm"}`, `namespace="llm"`, or nothing.
    pub fn new(
        selector: &str,
        window: std::time::Duration,
        group_by: &str,
    ) -> Result<Scope, String> {
        let inner = selector.trim();
        let inner = inner
            .strip_prefix('{')
            .map(|s| {
                s.strip_suffix('}')
                    .ok_or("a selector that opens with { must close with }")
            })
            .transpose()?
            .unwrap_or(inner);
        if window.as_millis() == 0 {
            return Err("the window must be at least a millisecond".into());
        }
        Ok(Scope {
            matchers: inner.trim().to_string(),
            window: format!("{}ms", window.as_millis()),
            window_seconds: window.as_secs_f64(),
            group_by: group_by.to_string(),
        })
    }

    /// `metric{scope's matchers,extra}`: a selector of one metric under the scope, with one more matcher if any.
    pub fn select(&self, metric: &str, extra: &str) -> String {
        let parts: Vec<&str> = [self.matchers.as_str(), extra]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        format!("{metric}{{{}}}", parts.join(","))
    }
}

/// The query that lists which metric names (and pod labels) exist under the scope, for dialect detection.
pub fn names_query(scope: &Scope) -> String {
    format!(
        "group by (__name__, {}) ({{__name__=~\"(vllm|sglang|llamacpp):.+|tgi_.+|trtllm_.+|nv_trt_llm_.+|nv_inference_.+|inference_(objective|pool|model|extension)_.+|llm_d_epp_.+|(time_to_first_token|e2e_request_latency|time_per_output_token|request_queue_time)_seconds_.+\"{}}})",
        scope.group_by,
        if scope.matchers.is_empty() {
            String::new()
        } else {
            format!(",{}", scope.matchers)
        }
    )
}

/// The metric names in a `names_query` answer.
pub fn names_in(answer: &Value) -> Vec<String> {
    vector(answer)
        .filter_map(|(labels, _)| labels.get("__name__").cloned())
        .collect()
}

/// The dialect the fleet speaks, from a `names_query` answer.
pub fn detect(answer: &Value) -> Option<Dialect> {
    let names = names_in(answer);
    detect_names(names.iter().map(String::as_str))
}

/// Which statistic of a signal one query asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    GaugeMean,
    GaugeMin,
    GaugeMax,
    GaugeLast,
    CounterIncrease,
    HistogramCount,
    HistogramMean,
    Quantile(f64),
}

/// One PromQL instant query and what its answer means.
#[derive(Clone, Debug)]
pub struct Query {
    pub signal: Signal,
    pub stat: Stat,
    pub promql: String,
    /// The label a counter is broken down by (finished requests by reason).
    pub by_label: Option<&'static str>,
}

/// Every query for the fleet's canonical signals, grouped by pod. `names` are the metric names present (from
/// [`names_in`]), so renamed metrics are asked for by the name this fleet uses. Capacity from info labels is
/// read by [`capacity_query`] instead, since PromQL cannot multiply label values.
pub fn queries(dialect: Dialect, names: &[String], scope: &Scope) -> Vec<Query> {
    let present = |n: &str| is_present(names, n);
    let g = &scope.group_by;
    let w = &scope.window;
    let mut out: Vec<Query> = Vec::new();
    for &(signal, source) in mapping(dialect) {
        // A signal with several sources is asked for by the first this fleet has.
        if out.iter().any(|q| q.signal == signal) {
            continue;
        }
        let (metric, extra, scale, by_label) = match source {
            Source::Family(candidates) => match candidates.iter().find(|n| present(n)) {
                Some(n) => (*n, String::new(), 1.0, None),
                None => continue,
            },
            Source::HistogramMs(name) if present(name) => (name, String::new(), 1e-3, None),
            Source::Labeled(name, key, value) if present(name) => {
                (name, format!("{key}=\"{value}\""), 1.0, None)
            }
            Source::ByLabel(name, key) if present(name) => (name, String::new(), 1.0, Some(key)),
            _ => continue,
        };
        let sel = |suffix: &str| scope.select(&format!("{metric}{suffix}"), &extra);
        let group = match by_label {
            Some(key) => format!("{g}, {key}"),
            None => g.clone(),
        };
        let mut push = |stat, promql: String| {
            out.push(Query {
                signal,
                stat,
                promql,
                by_label,
            })
        };
        match signal.kind() {
            infer_doctor_core::SignalKind::Gauge => {
                let across = signal.across().promql();
                push(
                    Stat::GaugeMean,
                    format!("{across} by ({g}) (avg_over_time({}[{w}]))", sel("")),
                );
                push(
                    Stat::GaugeMin,
                    format!("{across} by ({g}) (min_over_time({}[{w}]))", sel("")),
                );
                push(
                    Stat::GaugeMax,
                    format!("{across} by ({g}) (max_over_time({}[{w}]))", sel("")),
                );
                push(Stat::GaugeLast, format!("{across} by ({g}) ({})", sel("")));
            }
            infer_doctor_core::SignalKind::Counter => {
                push(
                    Stat::CounterIncrease,
                    format!("sum by ({group}) (increase({}[{w}]))", sel("")),
                );
            }
            infer_doctor_core::SignalKind::Histogram => {
                let scaled = |q: String| {
                    if scale == 1.0 {
                        q
                    } else {
                        format!("({q}) * {scale}")
                    }
                };
                push(
                    Stat::HistogramCount,
                    format!("sum by ({g}) (increase({}[{w}]))", sel("_count")),
                );
                push(
                    Stat::HistogramMean,
                    scaled(format!(
                        "sum by ({g}) (rate({}[{w}])) / sum by ({g}) (rate({}[{w}]))",
                        sel("_sum"),
                        sel("_count")
                    )),
                );
                for q in [0.5, 0.9, 0.99] {
                    push(
                        Stat::Quantile(q),
                        scaled(format!(
                            "histogram_quantile({q}, sum by ({g}, le) (rate({}[{w}])))",
                            sel("_bucket")
                        )),
                    );
                }
            }
        }
    }
    out
}

/// Whether the fleet exports metric `n` (a histogram counts by its `_bucket` or `_count` series).
fn is_present(names: &[String], n: &str) -> bool {
    names.iter().any(|x| {
        x == n || x.strip_suffix("_bucket") == Some(n) || x.strip_suffix("_count") == Some(n)
    })
}

/// What a replica-health query measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The share of scrapes that reached the replica.
    UpShare,
    /// How often its counters went back to zero.
    Restarts,
}

/// How far back a target's engine series make it one of the fleet's replicas: one down for the whole window has
/// no engine sample in it, only its `up` at 0, and its engine series from before.
const REPLICA_LOOKBACK_SECONDS: f64 = 3600.0;

/// Each replica's availability over the window: the share of Prometheus's scrapes that reached it (`up`), and how
/// often the engine's counters started again from zero (`resets`, a restarted process; the most of any counter).
/// `up` is asked only of the targets (pod and job) that served the engine's series within the lookback, so a
/// sidecar or a gateway sharing the pod label is not averaged in, and a replica down all window is still seen.
pub fn health_queries(dialect: Dialect, names: &[String], scope: &Scope) -> Vec<(Health, String)> {
    let (g, w) = (&scope.group_by, &scope.window);
    let up = format!("avg_over_time({}[{w}])", scope.select("up", ""));
    let engine_gauge = mapping(dialect)
        .iter()
        .filter(|(signal, _)| *signal == Signal::RequestsRunning)
        .find_map(|(_, source)| match source {
            Source::Family(candidates) => candidates.iter().copied().find(|n| is_present(names, n)),
            _ => None,
        });
    let up_share = match engine_gauge {
        Some(gauge) => {
            let lookback_ms = (scope.window_seconds.max(REPLICA_LOOKBACK_SECONDS) * 1e3) as u64;
            format!(
                "avg by ({g}) ({up} and on ({g}, job) group by ({g}, job) \
                 (present_over_time({}[{lookback_ms}ms])))",
                scope.select(gauge, "")
            )
        }
        None => format!("avg by ({g}) ({up})"),
    };
    let mut out = vec![(Health::UpShare, up_share)];
    // Every counter the fleet exports: one that never moves (preemptions on a healthy server) cannot show a reset.
    let counters: Vec<&str> = mapping(dialect)
        .iter()
        .filter(|(signal, _)| signal.kind() == infer_doctor_core::SignalKind::Counter)
        .filter_map(|(_, source)| match source {
            Source::Family(candidates) => candidates.iter().copied().find(|n| is_present(names, n)),
            Source::ByLabel(name, _) if is_present(names, name) => Some(*name),
            _ => None,
        })
        .collect();
    // One query per counter: `resets` drops the metric name, so several counters in one selector collide.
    for counter in counters {
        out.push((
            Health::Restarts,
            format!("max by ({g}) (resets({}[{w}]))", scope.select(counter, "")),
        ));
    }
    out
}

/// The same query over the whole fleet: the per-pod grouping dropped (`le` and breakdown labels kept).
pub fn fleet_wide(query: &Query, scope: &Scope) -> Query {
    let g = &scope.group_by;
    Query {
        promql: query
            .promql
            .replace(&format!("sum by ({g}, "), "sum by (")
            .replace(&format!("sum by ({g}) "), "sum ")
            .replace(&format!("avg by ({g}) "), "avg ")
            .replace(&format!("max by ({g}) "), "max "),
        ..query.clone()
    }
}

/// The info series that carry KV capacity in their labels (vLLM's `cache_config_info`), if the dialect has one.
pub fn capacity_query(
    dialect: Dialect,
    scope: &Scope,
) -> Option<(String, &'static str, &'static str)> {
    mapping(dialect)
        .iter()
        .find_map(|&(signal, source)| match (signal, source) {
            (Signal::KvCapacityTokens, Source::InfoProduct(name, a, b)) => {
                Some((scope.select(name, ""), a, b))
            }
            _ => None,
        })
}

/// The (labels, value) pairs of an instant-vector answer's `data`.
fn vector(data: &Value) -> impl Iterator<Item = (BTreeMap<String, String>, f64)> + '_ {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let labels = r["metric"]
                .as_object()?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
            let value = match r["value"].get(1)?.as_str()? {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((labels, value))
        })
}

/// The fleet in canonical terms: one window per pod and one for everything.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetView {
    pub dialect: String,
    pub group_by: String,
    pub window_seconds: f64,
    pub pods: BTreeMap<String, ServerWindow>,
    pub fleet: ServerWindow,
    /// Per pod: reachable for what share of the window, restarted how often.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health: BTreeMap<String, infer_doctor_core::ReplicaHealth>,
    /// llm-d's endpoint picker over the window, where the Prometheus scrapes one beside the engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ServerWindow>,
    /// The fleet's queue, batch and KV gauges over the window (Unix seconds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<(f64, infer_doctor_core::ServerReadings)>,
}

impl FleetView {
    pub fn new(dialect: Dialect, scope: &Scope) -> FleetView {
        FleetView {
            dialect: dialect.name().to_string(),
            group_by: scope.group_by.clone(),
            window_seconds: scope.window_seconds,
            fleet: empty_window(dialect.name(), scope.window_seconds),
            ..Default::default()
        }
    }

    /// llm-d's endpoint picker over the window: beside the engines, or the whole view when the Prometheus
    /// scrapes only the picker.
    pub fn picker(&self) -> Option<ServerWindow> {
        if self.dialect == Dialect::LlmdEpp.name() {
            Some(self.fleet.clone())
        } else {
            self.scheduler.clone()
        }
    }

    /// Files one answer (`data` of `/api/v1/query`) under its pods, or under the fleet when `fleet_wide`.
    pub fn record(&mut self, query: &Query, data: &Value, fleet_wide: bool) {
        for (labels, value) in vector(data) {
            let window = if fleet_wide {
                &mut self.fleet
            } else {
                let pod = labels
                    .get(&self.group_by)
                    .cloned()
                    .unwrap_or_else(|| infer_doctor_core::UNLABELLED_PODS.to_string());
                let (dialect, seconds) = (self.dialect.clone(), self.window_seconds);
                self.pods
                    .entry(pod)
                    .or_insert_with(|| empty_window(&dialect, seconds))
            };
            let label = query.by_label.and_then(|key| labels.get(key).cloned());
            file(window, query, value, label);
        }
    }

    /// Adds a health query's answer to the replicas. `up` is asked of engine targets only, and names a replica the
    /// window has no engine series of (down all along: kept, with nothing else known of it); a counter's resets
    /// count only for replicas already known.
    pub fn record_health(&mut self, health: Health, data: &Value) {
        for (labels, value) in vector(data) {
            let Some(pod) = labels.get(&self.group_by) else {
                continue;
            };
            if health == Health::UpShare && !self.pods.contains_key(pod) {
                let (dialect, seconds) = (self.dialect.clone(), self.window_seconds);
                self.pods
                    .insert(pod.clone(), empty_window(&dialect, seconds));
            }
            if !self.pods.contains_key(pod) {
                continue;
            }
            // A value Prometheus could not compute stays unknown, never a confident zero.
            let value = Some(value).filter(|v| v.is_finite());
            let entry = self.health.entry(pod.clone()).or_default();
            match health {
                Health::UpShare => entry.up_share = value,
                Health::Restarts => {
                    entry.restarts = match (entry.restarts, value) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    }
                }
            }
        }
    }

    /// Adds KV capacity from the info series' labels (`capacity_query`'s answer), per pod and in total.
    pub fn record_capacity(&mut self, data: &Value, a: &str, b: &str) {
        let mut total = 0.0;
        for (labels, _) in vector(data) {
            let (Some(x), Some(y)) = (
                labels.get(a).and_then(|v| v.parse::<f64>().ok()),
                labels.get(b).and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            total += x * y;
            if let Some(pod) = labels
                .get(&self.group_by)
                .and_then(|p| self.pods.get_mut(p))
            {
                set_gauge(pod, Signal::KvCapacityTokens, x * y);
            }
        }
        if total > 0.0 {
            set_gauge(&mut self.fleet, Signal::KvCapacityTokens, total);
        }
    }
}

fn empty_window(dialect: &str, seconds: f64) -> ServerWindow {
    ServerWindow {
        dialect: dialect.to_string(),
        start: 0.0,
        end: seconds,
        ..Default::default()
    }
}

fn set_gauge(window: &mut ServerWindow, signal: Signal, v: f64) {
    window.gauges.insert(signal, GaugeStats::constant(v));
}

fn file(window: &mut ServerWindow, query: &Query, value: f64, label: Option<String>) {
    let nan_gauge = || GaugeStats::constant(f64::NAN);
    let nan_histogram = || HistogramStats {
        count: f64::NAN,
        mean: f64::NAN,
        p50: f64::NAN,
        p90: f64::NAN,
        p99: f64::NAN,
        // Prometheus gives the quantiles alone, not the buckets that would bound them.
        limits: BTreeMap::new(),
    };
    match query.stat {
        Stat::GaugeMean | Stat::GaugeMin | Stat::GaugeMax | Stat::GaugeLast => {
            let g = window.gauges.entry(query.signal).or_insert_with(nan_gauge);
            match query.stat {
                Stat::GaugeMean => g.mean = value,
                Stat::GaugeMin => g.min = value,
                Stat::GaugeMax => g.max = value,
                _ => g.last = value,
            }
        }
        Stat::CounterIncrease => {
            let seconds = window.seconds();
            let c = window.counters.entry(query.signal).or_insert(CounterStats {
                increase: 0.0,
                rate: 0.0,
                by_label: BTreeMap::new(),
            });
            c.increase += value;
            c.rate = c.increase / seconds;
            if let Some(label) = label {
                *c.by_label.entry(label).or_default() += value;
            }
        }
        Stat::HistogramCount | Stat::HistogramMean | Stat::Quantile(_) => {
            let h = window
                .histograms
                .entry(query.signal)
                .or_insert_with(nan_histogram);
            match query.stat {
                Stat::HistogramCount => h.count = value,
                Stat::HistogramMean => h.mean = value,
                Stat::Quantile(0.5) => h.p50 = value,
                Stat::Quantile(0.9) => h.p90 = value,
                _ => h.p99 = value,
            }
        }
    }
}

/// The request path of an instant query (`/api/v1/query`), at `time` (Unix seconds) or now.
pub fn query_path(promql: &str, time: Option<f64>) -> String {
    let mut path = format!("/api/v1/query?query={}", percent_encode(promql));
    if let Some(t) = time {
        path.push_str(&format!("&time={t:.3}"));
    }
    path
}

/// URL query-string encoding: everything but unreserved characters as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The `data` of a successful API answer, or what Prometheus said went wrong.
pub fn answer_data(body: &[u8]) -> Result<Value, String> {
    let mut answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus said {}: {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or("(no message)")
        ));
    }
    Ok(answer["data"].take())
}

/// The gauges worth seeing over time (queue, batch, KV), fleet-wide, as `query_range` expressions.
pub fn timeline_queries(dialect: Dialect, names: &[String], scope: &Scope) -> Vec<Query> {
    queries(dialect, names, scope)
        .into_iter()
        .filter(|q| q.stat == Stat::GaugeLast)
        .map(|q| fleet_wide(&q, scope))
        .collect()
}

/// The request path of a range query from `start` to `end` (Unix seconds) every `step_seconds`.
pub fn range_path(promql: &str, start: f64, end: f64, step_seconds: f64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step_seconds:.3}",
        percent_encode(promql)
    )
}

/// Merges `query_range` answers (one per timeline query) into time-ordered canonical readings.
pub fn timeline(
    dialect: Dialect,
    answers: &[(Query, Value)],
) -> Vec<(f64, infer_doctor_core::ServerReadings)> {
    let mut by_time: BTreeMap<i64, infer_doctor_core::ServerReadings> = BTreeMap::new();
    for (query, data) in answers {
        let series = data["result"].as_array().into_iter().flatten();
        for s in series {
            for pair in s["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(v)) = (
                    pair.get(0).and_then(Value::as_f64),
                    pair.get(1)
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let readings = by_time.entry((t * 1e3).round() as i64).or_insert_with(|| {
                    infer_doctor_core::ServerReadings {
                        dialect: dialect.name().to_string(),
                        ..Default::default()
                    }
                });
                readings
                    .readings
                    .insert(query.signal, infer_doctor_core::Reading::Value(v));
            }
        }
    }
    by_time
        .into_iter()
        .map(|(ms, r)| (ms as f64 / 1e3, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: the fleet view summed KV usage over a pod's engines and over pods (120% and more).
    #[test]
    fn shares_are_averaged_across_engines_and_pods_and_amounts_summed() {
        let scope = Scope::new("", std::time::Duration::from_secs(60), "pod").unwrap();
        let names = ["vllm:kv_cache_usage_perc", "vllm:num_requests_running"].map(String::from);
        let queries = queries(Dialect::VllmV1, &names, &scope);
        let promql = |signal: Signal, stat: Stat| {
            let q = queries
                .iter()
                .find(|q| q.signal == signal && q.stat == stat)
                .unwrap();
            (q.promql.clone(), fleet_wide(q, &scope).promql)
        };
        let (per_pod, fleet) = promql(Signal::KvUsage, Stat::GaugeMax);
        assert_eq!(
            per_pod,
            "avg by (pod) (max_over_time(vllm:kv_cache_usage_perc{}[60000ms]))"
        );
        assert_eq!(
            fleet,
            "avg (max_over_time(vllm:kv_cache_usage_perc{}[60000ms]))"
        );
        let (per_pod, _) = promql(Signal::RequestsRunning, Stat::GaugeLast);
        assert_eq!(per_pod, "sum by (pod) (vllm:num_requests_running{})");
    }

    #[test]
    fn replica_health_is_asked_per_counter_and_kept_for_engine_pods_only() {
        let scope = Scope::new("", std::time::Duration::from_secs(60), "pod").unwrap();
        let names = [
            "vllm:generation_tokens_total",
            "vllm:num_preemptions_total",
            "vllm:num_requests_running",
        ]
        .map(String::from);
        let asked = health_queries(Dialect::VllmV1, &names, &scope);
        assert_eq!(
            asked[0].1,
            "avg by (pod) (avg_over_time(up{}[60000ms]) and on (pod, job) group by (pod, job) \
             (present_over_time(vllm:num_requests_running{}[3600000ms])))"
        );
        let resets: Vec<&str> = asked
            .iter()
            .filter(|(h, _)| *h == Health::Restarts)
            .map(|(_, q)| q.as_str())
            .collect();
        assert!(
            resets.contains(&"max by (pod) (resets(vllm:generation_tokens_total{}[60000ms]))"),
            "{resets:?}"
        );
        assert_eq!(resets.len(), 2, "{resets:?}");
        let mut view = FleetView::new(Dialect::VllmV1, &scope);
        view.pods.insert("a".into(), ServerWindow::default());
        let answer = |a: &str, other: (&str, &str)| {
            serde_json::json!({"resultType": "vector", "result": [
                {"metric": {"pod": "a"}, "value": [0, a]},
                {"metric": {"pod": other.0}, "value": [0, other.1]},
            ]})
        };
        // `up` answers for engine targets only: "b" served the engine's series within the lookback but none in
        // the window, down all along.
        view.record_health(Health::UpShare, &answer("0.75", ("b", "0")));
        view.record_health(Health::Restarts, &answer("1", ("gateway", "3")));
        view.record_health(Health::Restarts, &answer("0", ("gateway", "3")));
        assert_eq!(view.health.len(), 2, "the gateway is no replica");
        assert!(view.pods.contains_key("b"));
        assert_eq!(view.health["b"].up_share, Some(0.0));
        assert_eq!(view.health["a"].up_share, Some(0.75));
        assert_eq!(
            view.health["a"].restarts,
            Some(1.0),
            "the most of any counter"
        );
    }

    /// The least ready replicas over the window is asked for (an outage inside it), and the endpoint pickers of one
    /// pool, each counting the same replicas, are not added up.
    #[test]
    fn ready_replicas_are_asked_at_their_least_and_not_summed_over_pickers() {
        let scope = Scope::new("", std::time::Duration::from_secs(60), "pod").unwrap();
        let names = ["llm_d_epp_ready_endpoints".to_string()];
        let asked: Vec<Query> = queries(Dialect::LlmdEpp, &names, &scope);
        let least = asked
            .iter()
            .find(|q| q.signal == Signal::ReadyReplicas && q.stat == Stat::GaugeMin)
            .expect("a min query");
        assert_eq!(
            fleet_wide(least, &scope).promql,
            "max (min_over_time(llm_d_epp_ready_endpoints{}[60000ms]))"
        );
    }

    #[test]
    fn a_signal_with_two_sources_is_asked_for_once() {
        let scope = Scope::new("", std::time::Duration::from_secs(60), "pod").unwrap();
        let names = ["trtllm_request_success_total", "request_success_total"].map(String::from);
        let finished: Vec<Query> = queries(Dialect::TrtllmServe, &names, &scope)
            .into_iter()
            .filter(|q| q.signal == Signal::RequestsFinished)
            .collect();
        assert_eq!(finished.len(), 1);
        assert!(
            finished[0]
                .promql
                .contains("(trtllm_request_success_total{}")
        );
    }
}
