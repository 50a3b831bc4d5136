//! Autoscaling manifests for a vLLM Deployment (`plan --autoscale hpa|keda`): a Kubernetes
//! `HorizontalPodAutoscaler` (through the Prometheus Adapter) or a KEDA `ScaledObject` that scale on vLLM's
//! queue, `vllm:num_requests_waiting`, and on its KV-cache usage, with thresholds derived from the measured or
//! planned capacity of one replica instead of guessed.
//!
//! Why these signals: a vLLM replica admits up to `max_num_seqs` requests (fewer when the KV cache is full) and
//! queues the rest, so requests *waiting* for a sustained time mean the replica is at its concurrency limit and
//! every new request pays queueing delay in its TTFT; KV usage near full means the next long request waits or
//! preempts another. The seeds' HPA example scales on `vllm:num_requests_waiting`; the Gateway API Inference
//! Extension's saturation detector and llm-d's Workload Variant Autoscaler call a replica saturated at a queue
//! of 5 or a KV usage of 0.8 (`research/sim_capacity.md` §B4), and [`from_capacity`](AutoscaleTarget::from_capacity)
//! takes its limits from there.
//!
//! The YAML is written by hand: every string that comes from the user (names, the model name, the Prometheus
//! address, PromQL holding the model name) is emitted as a double-quoted scalar with JSON's escapes, which YAML
//! reads the same way, so no value can end a line, start a comment or turn into a number or a boolean. Names
//! Kubernetes restricts (the Deployment, the namespace) are checked against its rules first, so a manifest that
//! renders is one the API server accepts. The module only returns text; it never prints.

use std::fmt::Write as _;

use crate::HardwareError;

/// vLLM's gauge of requests queued (not yet scheduled), per engine, labelled `model_name`.
pub const WAITING_METRIC: &str = "vllm:num_requests_waiting";
/// vLLM's gauge of KV-cache blocks in use, 0..1, per engine (vLLM < 0.10 called it `vllm:gpu_cache_usage_perc`).
pub const KV_USAGE_METRIC: &str = "vllm:kv_cache_usage_perc";
/// The name under which the Prometheus Adapter rule of [`prometheus_adapter_rules`] exposes [`WAITING_METRIC`]
/// in `custom.metrics.k8s.io` (a colon is not allowed there).
pub const ADAPTER_WAITING_METRIC: &str = "vllm_num_requests_waiting";
/// The adapter's name for [`KV_USAGE_METRIC`].
pub const ADAPTER_KV_USAGE_METRIC: &str = "vllm_kv_cache_usage_perc";
/// The KV usage at which a replica counts as saturated: GIE's `DefaultKVCacheUtilThreshold` and llm-d WVA's
/// KV threshold.
pub const KV_USAGE_TARGET: f64 = 0.8;
/// The queue at which GIE and llm-d WVA call a replica saturated (`DefaultQueueDepthThreshold`): the derived
/// target of waiting requests per replica never exceeds it.
pub const MAX_WAITING_TARGET: f64 = 5.0;
/// The derived target of waiting requests per replica, as a fraction of the concurrency one replica holds at the
/// SLO: a request that finds that queue waits about this fraction of one request's duration before it starts.
pub const WAITING_FRACTION_OF_CONCURRENCY: f64 = 0.1;
/// The Prometheus that KEDA queries when the user names none: the Service the Prometheus Operator creates.
pub const DEFAULT_PROMETHEUS_ADDRESS: &str = "http://prometheus-operated.monitoring.svc:9090";

/// Seconds the autoscaler waits, after load drops, before it removes a replica: a vLLM pod takes minutes to come
/// back (image pull, weight load, CUDA-graph capture), so removing one on a short dip costs far more than
/// keeping it.
pub const SCALE_DOWN_STABILIZATION_S: u32 = 600;

/// What one replica was measured or planned to hold, from which [`AutoscaleTarget::from_capacity`] derives the
/// thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCapacity {
    /// Concurrent requests one replica serves while still meeting the SLO: a sweep's highest passing
    /// concurrency, or the plan's.
    pub concurrency_per_replica: f64,
    /// Replicas the target request rate needs (0 is taken as 1: the model stays served).
    pub replicas_needed: u32,
    /// How far above `replicas_needed` the autoscaler may grow, as a factor (at least 1; 2 absorbs bursts of
    /// twice the planned rate).
    pub headroom: f64,
}

/// One Deployment to autoscale and the thresholds to scale it on.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleTarget {
    /// The vLLM `Deployment` (apps/v1) to scale; also the name of the HPA or ScaledObject.
    pub deployment: String,
    /// Its namespace; `None` leaves `metadata.namespace` out (kubectl's current namespace applies).
    pub namespace: Option<String>,
    /// vLLM's `model_name` label (`--served-model-name`, else the model path), which KEDA's queries filter on.
    pub model_name: String,
    /// Replicas the autoscaler never goes below (at least 1: no scale to zero).
    pub min_replicas: u32,
    /// Replicas the autoscaler never goes above.
    pub max_replicas: u32,
    /// Scale out when the average number of waiting requests per replica is above this.
    pub waiting_per_replica: f64,
    /// Also scale out when the average KV usage (0..1) is above this; `None` scales on the queue alone.
    pub kv_usage_threshold: Option<f64>,
    /// The Prometheus KEDA queries (`serverAddress`); unused by the HPA, which reads the Prometheus Adapter.
    pub prometheus_address: String,
}

impl AutoscaleTarget {
    /// Thresholds from capacity:
    ///
    /// - `waiting_per_replica` = `WAITING_FRACTION_OF_CONCURRENCY` × `concurrency_per_replica`, rounded, at
    ///   least 1 (any sustained queue means the replica is full; a target of 0 would scale on noise) and at most
    ///   `MAX_WAITING_TARGET` (5, where GIE and llm-d WVA already call the replica saturated). By Little's law
    ///   a request that finds q requests queued ahead of c running waits about q / c of a request's duration, so
    ///   a tenth of c adds about a tenth of a request's duration to TTFT before a replica is added.
    /// - `kv_usage_threshold` = 0.8 (`KV_USAGE_TARGET`): it keeps replicas while they are busy but the queue is
    ///   momentarily empty, so the queue metric alone does not shrink a full fleet.
    /// - `min_replicas` = `replicas_needed` (at least 1): the planned rate is served without waiting for the
    ///   autoscaler, which takes minutes to add a vLLM pod.
    /// - `max_replicas` = ⌈`replicas_needed` × `headroom`⌉.
    pub fn from_capacity(
        deployment: &str,
        model_name: &str,
        prometheus_address: &str,
        capacity: &PlannedCapacity,
    ) -> Result<Self, HardwareError> {
        let concurrency = capacity.concurrency_per_replica;
        if !(concurrency.is_finite() && concurrency > 0.0) {
            return Err(invalid(
                "concurrency_per_replica",
                concurrency,
                "a positive number of concurrent requests",
            ));
        }
        if !(capacity.headroom.is_finite() && capacity.headroom >= 1.0) {
            return Err(invalid(
                "headroom",
                capacity.headroom,
                "a factor of at least 1 over the replicas needed",
            ));
        }
        let min_replicas = capacity.replicas_needed.max(1);
        let max_replicas = (f64::from(min_replicas) * capacity.headroom).ceil();
        if max_replicas > f64::from(i32::MAX as u32) {
            return Err(invalid(
                "headroom",
                capacity.headroom,
                "small enough that the replicas fit Kubernetes' int32",
            ));
        }
        let target = AutoscaleTarget {
            deployment: deployment.to_string(),
            namespace: None,
            model_name: model_name.to_string(),
            min_replicas,
            max_replicas: max_replicas as u32,
            waiting_per_replica: (WAITING_FRACTION_OF_CONCURRENCY * concurrency)
                .round()
                .clamp(1.0, MAX_WAITING_TARGET),
            kv_usage_threshold: Some(KV_USAGE_TARGET),
            prometheus_address: prometheus_address.to_string(),
        };
        target.validate()?;
        Ok(target)
    }

    /// The same target in `namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Checks every field as Kubernetes and KEDA will, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), HardwareError> {
        if let Err(problem) = dns_subdomain(&self.deployment) {
            return Err(invalid_text("deployment", &self.deployment, &problem));
        }
        if let Some(namespace) = &self.namespace
            && let Err(problem) = dns_label(namespace)
        {
            return Err(invalid_text("namespace", namespace, &problem));
        }
        if self.model_name.is_empty() {
            return Err(invalid_text(
                "model_name",
                "",
                "vLLM's model_name label, not empty",
            ));
        }
        if self.min_replicas < 1 {
            return Err(invalid(
                "min_replicas",
                self.min_replicas,
                "at least 1 (scaling to zero is not supported)",
            ));
        }
        if self.max_replicas < self.min_replicas {
            return Err(invalid(
                "max_replicas",
                self.max_replicas,
                &format!("at least min_replicas ({})", self.min_replicas),
            ));
        }
        if self.max_replicas > i32::MAX as u32 {
            return Err(invalid(
                "max_replicas",
                self.max_replicas,
                "at most 2147483647 (Kubernetes' int32)",
            ));
        }
        if !(self.waiting_per_replica.is_finite() && milli(self.waiting_per_replica) >= 1) {
            return Err(invalid(
                "waiting_per_replica",
                self.waiting_per_replica,
                "a positive number of waiting requests per replica (at least 0.001)",
            ));
        }
        if let Some(kv) = self.kv_usage_threshold
            && !(kv.is_finite() && kv > 0.0 && kv <= 1.0 && milli(kv) >= 1)
        {
            return Err(invalid(
                "kv_usage_threshold",
                kv,
                "a fraction of the KV cache in (0, 1]",
            ));
        }
        let address = &self.prometheus_address;
        let rest = address
            .strip_prefix("http://")
            .or_else(|| address.strip_prefix("https://"));
        if !rest.is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace)) {
            return Err(invalid_text(
                "prometheus_address",
                address,
                "an http:// or https:// URL of the Prometheus server, without spaces",
            ));
        }
        Ok(())
    }
}

/// An `autoscaling/v2` `HorizontalPodAutoscaler` for the target: a `Pods` metric on the average number of
/// waiting requests per pod and, when the target has a KV threshold, one on KV usage; fast scale-up (double or
/// +2 pods a minute, no stabilization) and slow scale-down (one pod per 5 minutes after 10 minutes of lower
/// recommendations). The HPA reads pod metrics from `custom.metrics.k8s.io`, which the Prometheus Adapter serves:
/// the rules of [`prometheus_adapter_rules`] must be in its configuration, and the manifest's leading comment
/// repeats them.
pub fn hpa(target: &AutoscaleTarget) -> Result<String, HardwareError> {
    target.validate()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HorizontalPodAutoscaler for the vLLM Deployment {}, written by `infer-doctor plan --autoscale hpa`.",
        q(&target.deployment)
    );
    let _ = writeln!(
        out,
        "# Scales out above {} waiting requests ({WAITING_METRIC}) per pod on average{}.",
        number(target.waiting_per_replica),
        match target.kv_usage_threshold {
            Some(kv) => format!(
                ",\n# or above a KV-cache usage ({KV_USAGE_METRIC}) of {}",
                number(kv)
            ),
            None => String::new(),
        }
    );
    out.push_str(
        "# Needs the Prometheus Adapter (custom.metrics.k8s.io) with these rules in its config.yaml (Helm chart\n\
         # prometheus-community/prometheus-adapter: under rules.custom), and Prometheus scraping the vLLM pods\n\
         # with `namespace` and `pod` labels (a PodMonitor or ServiceMonitor does):\n",
    );
    for line in prometheus_adapter_rules(target).lines() {
        let _ = writeln!(out, "#   {line}");
    }
    out.push_str("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n");
    metadata(&mut out, target);
    out.push_str("spec:\n");
    scale_target_ref(&mut out, target, 2);
    let _ = writeln!(out, "  minReplicas: {}", target.min_replicas);
    let _ = writeln!(out, "  maxReplicas: {}", target.max_replicas);
    out.push_str("  metrics:\n");
    pods_metric(
        &mut out,
        ADAPTER_WAITING_METRIC,
        &quantity(target.waiting_per_replica),
    );
    if let Some(kv) = target.kv_usage_threshold {
        pods_metric(&mut out, ADAPTER_KV_USAGE_METRIC, &quantity(kv));
    }
    behavior(&mut out, 2);
    Ok(out)
}

/// The Prometheus Adapter rules (its `config.yaml` format: a `rules:` list) that expose [`WAITING_METRIC`] and,
/// when the target has a KV threshold, [`KV_USAGE_METRIC`] per pod under the names the HPA of [`hpa`] asks for:
/// the waiting requests summed over a pod's engines, the KV usage as the fullest engine's.
pub fn prometheus_adapter_rules(target: &AutoscaleTarget) -> String {
    let mut out = String::from("rules:\n");
    adapter_rule(&mut out, WAITING_METRIC, ADAPTER_WAITING_METRIC, "sum");
    if target.kv_usage_threshold.is_some() {
        adapter_rule(&mut out, KV_USAGE_METRIC, ADAPTER_KV_USAGE_METRIC, "max");
    }
    out
}

/// A KEDA `keda.sh/v1alpha1` `ScaledObject` for the target: a `prometheus` trigger on the model's waiting
/// requests summed over its pods, compared per replica (`AverageValue`), and, when the target has a KV
/// threshold, one on the average KV usage across its pods (`Value`); the same scaling behavior as [`hpa`] in
/// `advanced.horizontalPodAutoscalerConfig`. KEDA creates and owns the HPA; no Prometheus Adapter is needed.
pub fn keda(target: &AutoscaleTarget) -> Result<String, HardwareError> {
    target.validate()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# KEDA ScaledObject for the vLLM Deployment {}, written by `infer-doctor plan --autoscale keda`.",
        q(&target.deployment)
    );
    let _ = writeln!(
        out,
        "# Scales out above {} waiting requests ({WAITING_METRIC}) per replica{}.\n\
         # KEDA 2.x must be installed; it queries the Prometheus at serverAddress, which must scrape the vLLM pods.",
        number(target.waiting_per_replica),
        match target.kv_usage_threshold {
            Some(kv) => format!(
                ",\n# or above an average KV-cache usage ({KV_USAGE_METRIC}) of {}",
                number(kv)
            ),
            None => String::new(),
        }
    );
    out.push_str("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n");
    metadata(&mut out, target);
    out.push_str("spec:\n");
    scale_target_ref(&mut out, target, 2);
    let _ = writeln!(out, "  minReplicaCount: {}", target.min_replicas);
    let _ = writeln!(out, "  maxReplicaCount: {}", target.max_replicas);
    out.push_str("  pollingInterval: 15\n");
    let _ = writeln!(
        out,
        "  # Applies only to scaling to zero, which minReplicaCount >= 1 rules out; the behavior below paces\n  \
         # scale-down.\n  cooldownPeriod: {SCALE_DOWN_STABILIZATION_S}"
    );
    out.push_str("  advanced:\n    horizontalPodAutoscalerConfig:\n");
    behavior(&mut out, 6);
    out.push_str("  triggers:\n");
    let selector = series_selector(target);
    keda_trigger(
        &mut out,
        target,
        "vllm-requests-waiting",
        "AverageValue",
        &format!("sum({WAITING_METRIC}{selector})"),
        target.waiting_per_replica,
    );
    if let Some(kv) = target.kv_usage_threshold {
        keda_trigger(
            &mut out,
            target,
            "vllm-kv-cache-usage",
            "Value",
            &format!("avg({KV_USAGE_METRIC}{selector})"),
            kv,
        );
    }
    Ok(out)
}

/// A PromQL string literal holding `value`: double-quoted, with Go's escapes, which PromQL uses.
pub fn promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The label matchers KEDA's queries filter on: the model and, when known, the namespace.
fn series_selector(target: &AutoscaleTarget) -> String {
    let mut matchers = format!("model_name={}", promql_string(&target.model_name));
    if let Some(namespace) = &target.namespace {
        let _ = write!(matchers, ",namespace={}", promql_string(namespace));
    }
    format!("{{{matchers}}}")
}

fn metadata(out: &mut String, target: &AutoscaleTarget) {
    out.push_str("metadata:\n");
    let _ = writeln!(out, "  name: {}", q(&target.deployment));
    if let Some(namespace) = &target.namespace {
        let _ = writeln!(out, "  namespace: {}", q(namespace));
    }
    out.push_str("  labels:\n    app.kubernetes.io/managed-by: infer-doctor\n");
    let _ = writeln!(
        out,
        "  annotations:\n    infer-doctor/model-name: {}",
        q(&target.model_name)
    );
}

fn scale_target_ref(out: &mut String, target: &AutoscaleTarget, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(
        out,
        "{pad}scaleTargetRef:\n{pad}  apiVersion: apps/v1\n{pad}  kind: Deployment\n{pad}  name: {}",
        q(&target.deployment)
    );
}

fn pods_metric(out: &mut String, name: &str, average: &str) {
    let _ = writeln!(
        out,
        "  - type: Pods\n    pods:\n      metric:\n        name: {name}\n      target:\n        \
         type: AverageValue\n        averageValue: {}",
        q(average)
    );
}

/// `behavior` of an `autoscaling/v2` HPA at `indent`: up fast, down slowly.
fn behavior(out: &mut String, indent: usize) {
    let text = format!(
        "behavior:
  scaleUp:
    stabilizationWindowSeconds: 0
    selectPolicy: Max
    policies:
    - type: Percent
      value: 100
      periodSeconds: 60
    - type: Pods
      value: 2
      periodSeconds: 60
  scaleDown:
    stabilizationWindowSeconds: {SCALE_DOWN_STABILIZATION_S}
    selectPolicy: Min
    policies:
    - type: Pods
      value: 1
      periodSeconds: 300
"
    );
    let pad = " ".repeat(indent);
    for line in text.lines() {
        let _ = writeln!(out, "{pad}{line}");
    }
}

fn adapter_rule(out: &mut String, series: &str, exposed_as: &str, aggregate: &str) {
    let _ = writeln!(
        out,
        "- seriesQuery: {}\n  resources:\n    overrides:\n      namespace:\n        resource: namespace\n      \
         pod:\n        resource: pod\n  name:\n    matches: {}\n    as: {}\n  metricsQuery: {}",
        q(&format!("{series}{{namespace!=\"\",pod!=\"\"}}")),
        q(&format!("^{series}$")),
        q(exposed_as),
        q(&format!(
            "{aggregate}(<<.Series>>{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)"
        )),
    );
}

fn keda_trigger(
    out: &mut String,
    target: &AutoscaleTarget,
    name: &str,
    metric_type: &str,
    query: &str,
    threshold: f64,
) {
    // KEDA's trigger metadata is a map of strings: the threshold is quoted like the rest.
    let _ = writeln!(
        out,
        "  - type: prometheus\n    name: {name}\n    metricType: {metric_type}\n    metadata:\n      \
         serverAddress: {}\n      query: {}\n      threshold: {}",
        q(&target.prometheus_address),
        q(query),
        q(&number(threshold)),
    );
}

/// A YAML double-quoted scalar: JSON's string syntax is a subset of YAML's double-quoted style. JSON leaves some
/// characters raw that YAML may not: DEL and the C1 controls are not printable in YAML, and NEL, LS and PS are
/// line breaks to a YAML 1.1 parser (a raw one would be folded into a space); those are written as `\u` escapes,
/// which both read the same way.
pub(crate) fn q(value: &str) -> String {
    let json = serde_json::Value::String(value.to_string()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` in thousandths, rounded, as Kubernetes quantities count them.
fn milli(value: f64) -> u64 {
    (value * 1000.0).round().max(0.0) as u64
}

/// A Kubernetes quantity: whole numbers as they are, fractions in milli-units (`0.8` → `800m`).
fn quantity(value: f64) -> String {
    let milli = milli(value);
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// A number as KEDA parses it and people read it (`2`, `0.8`), to the thousandth.
fn number(value: f64) -> String {
    let rounded = milli(value) as f64 / 1000.0;
    format!("{rounded}")
}

pub(crate) fn invalid(
    setting: &'static str,
    value: impl std::fmt::Display,
    expected: &str,
) -> HardwareError {
    HardwareError::InvalidSetting {
        setting,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn invalid_text(setting: &'static str, value: &str, expected: &str) -> HardwareError {
    invalid(setting, format!("{value:?}"), expected)
}

/// Kubernetes' DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending with an alphanumeric.
pub(crate) fn dns_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("a DNS-1123 label of at most 63 characters".into());
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = name.chars().next().is_some_and(alnum)
        && name.chars().last().is_some_and(alnum)
        && name.chars().all(|c| alnum(c) || c == '-');
    if ok {
        Ok(())
    } else {
        Err("a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// Kubernetes' DNS-1123 subdomain (the rule for Deployment names): at most 253 characters, labels joined by '.'.
pub(crate) fn dns_subdomain(name: &str) -> Result<(), String> {
    let expected = "a DNS-1123 subdomain of at most 253 characters: lower-case letters, digits, '-' and '.', \
                    each part starting and ending with a letter or digit";
    if name.len() > 253 || name.split('.').any(|part| dns_label(part).is_err()) {
        return Err(expected.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(concurrency: f64, replicas: u32, headroom: f64) -> PlannedCapacity {
        PlannedCapacity {
            concurrency_per_replica: concurrency,
            replicas_needed: replicas,
            headroom,
        }
    }

    fn target(concurrency: f64, replicas: u32, headroom: f64) -> AutoscaleTarget {
        AutoscaleTarget::from_capacity(
            "vllm-llama",
            "meta-llama/Llama-3.1-8B-Instruct",
            DEFAULT_PROMETHEUS_ADDRESS,
            &capacity(concurrency, replicas, headroom),
        )
        .unwrap()
    }

    /// The value of the first `key: "…"` line, unquoted as a YAML (JSON) double-quoted scalar.
    fn scalar(yaml: &str, key: &str) -> String {
        let prefix = format!("{key}: ");
        let line = yaml
            .lines()
            .map(str::trim_start)
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {key} in\n{yaml}"));
        serde_json::from_str(&line[prefix.len()..]).unwrap()
    }

    #[test]
    fn thresholds_follow_the_capacity() {
        // 32 concurrent at the SLO: a tenth of it waiting, 3; min the 3 replicas needed, max twice that.
        let t = target(32.0, 3, 2.0);
        assert_eq!(t.waiting_per_replica, 3.0);
        assert_eq!((t.min_replicas, t.max_replicas), (3, 6));
        assert_eq!(t.kv_usage_threshold, Some(0.8));
        // A small replica still needs a whole request waiting; a huge one is capped at GIE's queue of 5.
        assert_eq!(target(4.0, 1, 1.0).waiting_per_replica, 1.0);
        assert_eq!(target(256.0, 1, 1.0).waiting_per_replica, 5.0);
        // Headroom rounds the maximum up; no replicas needed still keeps one.
        let t = target(16.0, 3, 1.5);
        assert_eq!((t.min_replicas, t.max_replicas), (3, 5));
        let t = target(16.0, 0, 3.0);
        assert_eq!((t.min_replicas, t.max_replicas), (1, 3));
    }

    #[test]
    fn hpa_scales_on_the_adapter_metrics_with_the_derived_targets() {
        let yaml = hpa(&target(32.0, 3, 2.0).in_namespace("inference")).unwrap();
        assert!(yaml.contains("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"));
        assert!(yaml.contains("  minReplicas: 3\n  maxReplicas: 6\n"));
        assert!(yaml.contains("name: vllm_num_requests_waiting\n"));
        assert!(yaml.contains("averageValue: \"3\"\n"));
        assert!(yaml.contains("name: vllm_kv_cache_usage_perc\n"));
        assert!(yaml.contains("averageValue: \"800m\"\n"));
        assert!(yaml.contains("stabilizationWindowSeconds: 600\n"));
        assert_eq!(scalar(&yaml, "namespace"), "inference");
        // The adapter rules ride along as a comment, line for line.
        for line in prometheus_adapter_rules(&target(32.0, 3, 2.0)).lines() {
            assert!(yaml.contains(&format!("#   {line}\n")), "{line}");
        }
        // Without a KV threshold there is one metric and one rule.
        let queue_only = AutoscaleTarget {
            kv_usage_threshold: None,
            ..target(32.0, 3, 2.0)
        };
        let yaml = hpa(&queue_only).unwrap();
        assert_eq!(yaml.matches("- type: Pods\n    pods:").count(), 1);
        assert!(!yaml.contains("kv_cache"));
    }

    #[test]
    fn keda_queries_the_model_per_replica() {
        let yaml = keda(&target(32.0, 3, 2.0).in_namespace("inference")).unwrap();
        assert!(yaml.contains("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n"));
        assert!(yaml.contains("  minReplicaCount: 3\n  maxReplicaCount: 6\n"));
        assert_eq!(
            scalar(&yaml, "query"),
            r#"sum(vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct",namespace="inference"})"#
        );
        assert_eq!(scalar(&yaml, "threshold"), "3");
        assert_eq!(scalar(&yaml, "serverAddress"), DEFAULT_PROMETHEUS_ADDRESS);
        assert!(yaml.contains(
            r#"query: "avg(vllm:kv_cache_usage_perc{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",namespace=\"inference\"})""#
        ));
        assert!(yaml.contains("threshold: \"0.8\"\n"));
        assert!(yaml.contains("metricType: AverageValue\n"));
        assert!(yaml.contains("metricType: Value\n"));
    }

    #[test]
    fn hostile_model_names_stay_inside_their_strings() {
        let model = "a\"b\\c: d # e\n- f: {g}";
        let t = AutoscaleTarget::from_capacity(
            "vllm",
            model,
            DEFAULT_PROMETHEUS_ADDRESS,
            &capacity(32.0, 1, 2.0),
        )
        .unwrap();
        assert_eq!(promql_string(model), r#""a\"b\\c: d # e\n- f: {g}""#);
        let yaml = keda(&t).unwrap();
        assert_eq!(
            scalar(&yaml, "query"),
            r#"sum(vllm:num_requests_waiting{model_name="a\"b\\c: d # e\n- f: {g}"})"#
        );
        assert_eq!(scalar(&yaml, "infer-doctor/model-name"), model);
        // No raw newline of the name reaches the text: every line is the renderer's own.
        assert!(!yaml.contains("- f: {g}\n"));
        let yaml = hpa(&t).unwrap();
        assert_eq!(scalar(&yaml, "infer-doctor/model-name"), model);
        assert!(!yaml.lines().any(|line| line.starts_with("- f")));
    }

    #[test]
    fn characters_yaml_reads_as_line_breaks_are_escaped() {
        let model = "a\u{85}b\u{2028}c\u{7f}d\u{9f}é";
        assert_eq!(q(model), r#""a\u0085b\u2028c\u007fd\u009fé""#);
        // Still JSON, so it still reads back as the same string.
        assert_eq!(serde_json::from_str::<String>(&q(model)).unwrap(), model);
        assert_eq!(
            promql_string(model),
            "\"a\\u0085b\u{2028}c\\u007fd\\u009fé\""
        );
    }

    #[test]
    fn names_that_yaml_would_retype_are_quoted() {
        let t = AutoscaleTarget {
            deployment: "1234".into(),
            namespace: Some("true".into()),
            ..target(8.0, 1, 2.0)
        };
        let yaml = hpa(&t).unwrap();
        assert!(yaml.contains("  name: \"1234\"\n"));
        assert!(yaml.contains("  namespace: \"true\"\n"));
    }

    #[test]
    fn quantities_and_numbers() {
        assert_eq!(quantity(2.0), "2");
        assert_eq!(quantity(0.8), "800m");
        assert_eq!(quantity(1.5), "1500m");
        assert_eq!(number(0.8), "0.8");
        assert_eq!(number(3.0), "3");
    }

    #[test]
    fn wrong_settings_name_the_field() {
        let setting_of = |result: Result<AutoscaleTarget, HardwareError>| match result {
            Err(HardwareError::InvalidSetting { setting, .. }) => setting,
            other => panic!("expected InvalidSetting, got {other:?}"),
        };
        let check = |t: AutoscaleTarget| setting_of(t.validate().map(|()| t));
        let base = target(32.0, 3, 2.0);
        assert_eq!(
            check(AutoscaleTarget {
                min_replicas: 7,
                ..base.clone()
            }),
            "max_replicas"
        );
        assert_eq!(
            check(AutoscaleTarget {
                min_replicas: 0,
                ..base.clone()
            }),
            "min_replicas"
        );
        for kv in [0.0, 1.2, f64::NAN] {
            assert_eq!(
                check(AutoscaleTarget {
                    kv_usage_threshold: Some(kv),
                    ..base.clone()
                }),
                "kv_usage_threshold"
            );
        }
        for waiting in [0.0, -1.0, f64::INFINITY, 0.0001] {
            assert_eq!(
                check(AutoscaleTarget {
                    waiting_per_replica: waiting,
                    ..base.clone()
                }),
                "waiting_per_replica"
            );
        }
        for name in ["", "Vllm", "vllm_8b", "-vllm", "vllm.", "a b"] {
            assert_eq!(
                check(AutoscaleTarget {
                    deployment: name.into(),
                    ..base.clone()
                }),
                "deployment",
                "{name:?}"
            );
        }
        assert_eq!(
            check(AutoscaleTarget {
                namespace: Some("infer.ence".into()),
                ..base.clone()
            }),
            "namespace"
        );
        assert_eq!(
            check(AutoscaleTarget {
                model_name: String::new(),
                ..base.clone()
            }),
            "model_name"
        );
        for address in ["prometheus:9090", "http://", "http://a b"] {
            assert_eq!(
                check(AutoscaleTarget {
                    prometheus_address: address.into(),
                    ..base.clone()
                }),
                "prometheus_address"
            );
        }
        // The renderers refuse what validate refuses.
        let bad = AutoscaleTarget {
            max_replicas: 1,
            ..base.clone()
        };
        assert!(hpa(&bad).is_err() && keda(&bad).is_err());
        // And the constructor refuses capacity it cannot derive from.
        let from = |c: PlannedCapacity| {
            AutoscaleTarget::from_capacity("vllm", "m", DEFAULT_PROMETHEUS_ADDRESS, &c)
        };
        assert_eq!(
            setting_of(from(capacity(0.0, 1, 2.0))),
            "concurrency_per_replica"
        );
        assert_eq!(setting_of(from(capacity(8.0, 1, 0.5))), "headroom");
        assert_eq!(setting_of(from(capacity(8.0, 1, f64::NAN))), "headroom");
        // Accepted names of every kind Kubernetes allows.
        assert!(
            AutoscaleTarget {
                deployment: "vllm-8b.prod".into(),
                namespace: Some("ml-serving".into()),
                ..base
            }
            .validate()
            .is_ok()
        );
    }
}
