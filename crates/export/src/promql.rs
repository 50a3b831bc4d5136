//! PromQL for canonical signals in one server's dialect. Every metric name comes from `observe`'s dialect table,
//! so a dashboard panel or an alert asks for exactly what `diagnose` reads, renamed metrics included.

use std::time::Duration;

use infer_doctor_core::{Signal, SignalKind};
use infer_doctor_observe::dialect::{Dialect, Source, mapping};
use infer_doctor_observe::prometheus::Scope;

/// An export target that cannot be asked for, naming the input at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "--dialect {0}: it exports GPU facts, not an inference engine's signals; pick an engine's dialect"
    )]
    NoEngineSignals(&'static str),
    #[error("--selector `{selector}`: {message}")]
    Selector { selector: String, message: String },
    #[error(
        "--pod-label `{0}`: a Prometheus label name is letters, digits and `_`, and does not start with a digit"
    )]
    PodLabel(String),
    #[error("--rate-window {0:?}: rate() needs a window of whole seconds, at least one")]
    Window(Duration),
}

/// Whether a query adds the fleet up or keeps one series per pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Fleet,
    Pod,
}

/// Which value of a gauge: the latest, or its mean or maximum over the rate window (as `diagnose` judges a
/// window of scrapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Now,
    WindowMean,
    WindowMax,
}

/// One series a signal can be read from: a metric, a matcher where the dialect picks series by a label, the
/// factor that turns its values into seconds, and the label a counter is broken down by.
struct Series {
    metric: &'static str,
    matcher: String,
    scale: f64,
    breakdown: Option<&'static str>,
}

/// A PromQL string literal at the start of `text` (in `"`, `'` or backticks; escapes undone inside quotes, none
/// inside backticks), and what follows it.
fn quoted_value(text: &str) -> Option<(String, &str)> {
    let quote = text
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let mut value = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quote != '`' => {
                let (_, escaped) = chars.next()?;
                value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            c if c == quote => return Some((value, &text[1 + i + c.len_utf8()..])),
            c => value.push(c),
        }
    }
    None
}

/// What to ask a Prometheus for: one dialect's metrics, under a selector, per pod by a label, over a rate window.
#[derive(Clone, Debug)]
pub struct Target {
    dialect: Dialect,
    scope: Scope,
    window: String,
}

impl Target {
    pub fn new(
        dialect: Dialect,
        selector: &str,
        pod_label: &str,
        rate_window: Duration,
    ) -> Result<Target, TargetError> {
        if mapping(dialect).is_empty() {
            return Err(TargetError::NoEngineSignals(dialect.name()));
        }
        let label_name = |name: &str| {
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !label_name(pod_label) {
            return Err(TargetError::PodLabel(pod_label.to_string()));
        }
        if rate_window.subsec_nanos() != 0 || rate_window.is_zero() {
            return Err(TargetError::Window(rate_window));
        }
        let scope = Scope::new(selector, rate_window, pod_label).map_err(|message| {
            TargetError::Selector {
                selector: selector.to_string(),
                message,
            }
        })?;
        Ok(Target {
            dialect,
            scope,
            window: prometheus_duration(rate_window),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pod_label(&self) -> &str {
        &self.scope.group_by
    }

    /// The selector's `label="value"` matchers: what a fleet-wide recorded series is labelled with, so two rule
    /// files for two fleets (two namespaces, say) record two series instead of colliding on one.
    pub fn fixed_labels(&self) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        let mut rest = self.scope.matchers.trim();
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_end);
            let after = after.trim_start();
            let Some((operator, after)) = ["=~", "!=", "!~", "="]
                .iter()
                .find_map(|op| after.strip_prefix(op).map(|a| (*op, a.trim_start())))
            else {
                break;
            };
            let Some((value, after)) = quoted_value(after) else {
                break;
            };
            // `=~`, `!=` and `!~` select several values: no one label to record.
            if operator == "=" && !name.is_empty() {
                labels.push((name.to_string(), value));
            }
            rest = after;
        }
        labels
    }

    /// The rate window as PromQL writes it (`5m`).
    pub fn rate_window(&self) -> &str {
        &self.window
    }

    /// The label a counter signal is broken down by in this dialect (finished requests by reason), if any.
    pub fn breakdown(&self, signal: Signal) -> Option<&'static str> {
        self.series(signal).iter().find_map(|s| s.breakdown)
    }

    /// `histogram_quantile(q, …)` of a histogram signal's bucket rates, in seconds.
    pub fn quantile(&self, signal: Signal, q: f64, per: Per) -> Option<String> {
        self.any_of(signal, |s| {
            scaled(
                format!(
                    "histogram_quantile({q}, sum{} (rate({}[{}])))",
                    self.grouping(per, &["le"]),
                    self.select(s, "_bucket", ""),
                    self.window
                ),
                s.scale,
            )
        })
    }

    /// A histogram signal's mean observation over the window, in seconds.
    pub fn mean(&self, signal: Signal, per: Per) -> Option<String> {
        self.any_of(signal, |s| {
            let by = self.grouping(per, &[]);
            scaled(
                format!(
                    "sum{by} (rate({}[{w}])) / sum{by} (rate({}[{w}]))",
                    self.select(s, "_sum", ""),
                    self.select(s, "_count", ""),
                    w = self.window
                ),
                s.scale,
            )
        })
    }

    /// A counter signal's increase per second over the window.
    pub fn per_second(&self, signal: Signal, per: Per) -> Option<String> {
        self.counter(signal, per, "rate", &[], "")
    }

    /// A counter signal's increase over the window.
    pub fn increase(&self, signal: Signal, per: Per) -> Option<String> {
        self.counter(signal, per, "increase", &[], "")
    }

    /// A counter signal's increase per second, one series per value of its breakdown label.
    pub fn per_second_by_breakdown(&self, signal: Signal, per: Per) -> Option<String> {
        let key = self.breakdown(signal)?;
        self.counter(signal, per, "rate", &[key], "")
    }

    /// A counter signal's increase per second, counting only the breakdown values given (failed finish reasons).
    pub fn per_second_where(&self, signal: Signal, per: Per, values: &[&str]) -> Option<String> {
        let key = self.breakdown(signal)?;
        self.counter(
            signal,
            per,
            "rate",
            &[],
            &format!("{key}=~\"{}\"", values.join("|")),
        )
    }

    /// A gauge signal, its engines' and pods' series combined as [`Signal::across`] says.
    pub fn gauge(&self, signal: Signal, per: Per, over: Over) -> Option<String> {
        let across = signal.across().promql();
        self.any_of(signal, |s| {
            let selected = self.select(s, "", "");
            let value = match over {
                Over::Now => selected,
                Over::WindowMean => format!("avg_over_time({selected}[{}])", self.window),
                Over::WindowMax => format!("max_over_time({selected}[{}])", self.window),
            };
            format!("{across}{} ({value})", self.grouping(per, &[]))
        })
    }

    fn counter(
        &self,
        signal: Signal,
        per: Per,
        function: &str,
        by: &[&str],
        matcher: &str,
    ) -> Option<String> {
        debug_assert_eq!(signal.kind(), SignalKind::Counter);
        self.any_of(signal, |s| {
            format!(
                "sum{} ({function}({}[{}]))",
                self.grouping(per, by),
                self.select(s, "", matcher),
                self.window
            )
        })
    }

    /// The query for each series the signal may be read from, joined by `or`, so that whichever name the server
    /// exports (a current one, or the one an older version used) answers; `None` when the dialect has none.
    fn any_of(&self, signal: Signal, query: impl Fn(&Series) -> String) -> Option<String> {
        let queries: Vec<String> = self.series(signal).iter().map(query).collect();
        match queries.len() {
            0 => None,
            1 => queries.into_iter().next(),
            _ => Some(format!("({})", queries.join(" or "))),
        }
    }

    /// ` by (pod, extra…)`, or ` by (extra…)` over the fleet, or nothing.
    fn grouping(&self, per: Per, extra: &[&str]) -> String {
        let labels: Vec<&str> = (per == Per::Pod)
            .then_some(self.pod_label())
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        if labels.is_empty() {
            String::new()
        } else {
            format!(" by ({})", labels.join(", "))
        }
    }

    fn select(&self, series: &Series, suffix: &str, matcher: &str) -> String {
        let matchers: Vec<&str> = [series.matcher.as_str(), matcher]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect();
        let metric = format!("{}{suffix}", series.metric);
        if matchers.is_empty() && self.scope.matchers.is_empty() {
            // `name{}` selects the same; the bare name reads better on a dashboard.
            return metric;
        }
        self.scope.select(&metric, &matchers.join(","))
    }

    /// The series of a signal in the dialect's table order (current names first). Sources PromQL cannot read
    /// (label values multiplied into a capacity) are left out.
    fn series(&self, signal: Signal) -> Vec<Series> {
        let plain = |metric, matcher: String, scale, breakdown| Series {
            metric,
            matcher,
            scale,
            breakdown,
        };
        mapping(self.dialect)
            .iter()
            .filter(|(s, _)| *s == signal)
            .flat_map(|(_, source)| match *source {
                Source::Family(names) => names
                    .iter()
                    .filter(|name| !is_counter_family_name(signal, name, names))
                    .map(|name| plain(*name, String::new(), 1.0, None))
                    .collect(),
                Source::HistogramMs(name) => vec![plain(name, String::new(), 1e-3, None)],
                Source::Labeled(name, key, value) => {
                    vec![plain(name, format!("{key}=\"{value}\""), 1.0, None)]
                }
                Source::ByLabel(name, key) => vec![plain(name, String::new(), 1.0, Some(key))],
                Source::InfoProduct(..)
                | Source::InfoLabel(..)
                | Source::BlocksTimesSize(..)
                | Source::LabeledBlocksTimesSize(..) => Vec::new(),
            })
            .collect()
    }
}

/// The dialect tables list a counter both as `x_total` and as `x`, the family name a text parser files it under;
/// Prometheus stores only `x_total`, so asking for `x` as well would only lengthen every query.
fn is_counter_family_name(signal: Signal, name: &str, names: &[&str]) -> bool {
    signal.kind() == SignalKind::Counter && names.contains(&format!("{name}_total").as_str())
}

/// One query's values over another's, matched series by series (each in parentheses: a mean is itself a ratio).
pub fn ratio(numerator: &str, denominator: &str) -> String {
    format!("({numerator}) / ({denominator})")
}

/// A query in milliseconds brought to seconds.
fn scaled(query: String, scale: f64) -> String {
    if scale == 1.0 {
        query
    } else {
        format!("{query} * {scale}")
    }
}

/// A duration as PromQL and rule files write one: `5m`, `30s`, `7d`, `1500ms`.
pub fn prometheus_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let seconds = ms / 1000;
    [("d", 86_400), ("h", 3_600), ("m", 60)]
        .into_iter()
        .find(|(_, unit)| seconds != 0 && seconds.is_multiple_of(*unit))
        .map_or_else(
            || format!("{seconds}s"),
            |(name, unit)| format!("{}{name}", seconds / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vllm() -> Target {
        Target::new(
            Dialect::VllmV1,
            "{namespace=\"llm\"}",
            "pod",
            Duration::from_secs(300),
        )
        .unwrap()
    }

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        let written: Vec<String> = [0, 30, 300, 7_200, 604_800]
            .into_iter()
            .map(|s| prometheus_duration(Duration::from_secs(s)))
            .collect();
        assert_eq!(written, ["0s", "30s", "5m", "2h", "7d"]);
        assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn renamed_metrics_are_asked_for_by_every_name_the_table_knows() {
        let kv = vllm()
            .gauge(Signal::KvUsage, Per::Pod, Over::WindowMax)
            .unwrap();
        assert_eq!(
            kv,
            "(avg by (pod) (max_over_time(vllm:kv_cache_usage_perc{namespace=\"llm\"}[5m])) or \
             avg by (pod) (max_over_time(vllm:gpu_cache_usage_perc{namespace=\"llm\"}[5m])))"
        );
        let preemptions = vllm().per_second(Signal::Preemptions, Per::Fleet).unwrap();
        assert_eq!(
            preemptions, "sum (rate(vllm:num_preemptions_total{namespace=\"llm\"}[5m]))",
            "the parser's family name `vllm:num_preemptions` is not a series Prometheus stores"
        );
    }

    #[test]
    fn millisecond_histograms_and_labelled_series_are_read_as_the_table_says() {
        let triton = Target::new(Dialect::Triton, "", "instance", Duration::from_secs(60)).unwrap();
        assert_eq!(
            triton.quantile(Signal::Ttft, 0.5, Per::Fleet).unwrap(),
            "histogram_quantile(0.5, sum by (le) (rate(nv_inference_first_response_histogram_ms_bucket[1m]))) * 0.001"
        );
        assert_eq!(
            triton
                .gauge(Signal::RequestsWaiting, Per::Pod, Over::Now)
                .unwrap(),
            "sum by (instance) (nv_trt_llm_request_metrics{request_type=\"waiting\"})"
        );
        assert_eq!(triton.per_second(Signal::Preemptions, Per::Fleet), None);
    }

    #[test]
    fn bad_targets_name_the_input() {
        let window = Duration::from_secs(60);
        let dcgm = Target::new(Dialect::Dcgm, "", "pod", window).unwrap_err();
        assert!(dcgm.to_string().contains("--dialect dcgm"), "{dcgm}");
        let label = Target::new(Dialect::VllmV1, "", "9pod", window).unwrap_err();
        assert_eq!(label, TargetError::PodLabel("9pod".into()));
        let labelled = Target::new(
            Dialect::VllmV1,
            r#"{namespace="llm", pod=~"vllm-.*", env!="dev", zone!~"x", team='ml', note="a \"quoted\", value"}"#,
            "pod",
            window,
        )
        .unwrap();
        assert_eq!(
            labelled.fixed_labels(),
            [
                ("namespace".to_string(), "llm".to_string()),
                ("team".to_string(), "ml".to_string()),
                ("note".to_string(), r#"a "quoted", value"#.to_string())
            ]
        );
        let selector = Target::new(Dialect::VllmV1, "{a=\"b\"", "pod", window).unwrap_err();
        assert!(selector.to_string().starts_with("--selector `{a=\"b\"`"));
        let subsecond = Target::new(Dialect::VllmV1, "", "pod", Duration::from_millis(1500));
        assert!(matches!(subsecond, Err(TargetError::Window(_))));
    }
}
