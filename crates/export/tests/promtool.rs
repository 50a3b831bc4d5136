//! The exported rule files against Prometheus's own tool (Debian's `prometheus` 2.42 ships `promtool`): every
//! dialect's file passes `promtool check rules`, and `promtool test rules` runs a unit test written here — input
//! series in, the alerts expected out — including pods and times where an alert must not fire and a week-over-week
//! regression over more than seven days of series.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use infer_doctor_diagnose::Thresholds;
use infer_doctor_diagnose::rules::{DEGRADED, KV_SATURATED};
use infer_doctor_export::{Target, alerts};
use infer_doctor_observe::dialect::Dialect;
use serde_json::{Value, json};

const PROMTOOL: &str = "/usr/bin/promtool";
const SELECTOR: &str = "{namespace=\"llm\"}";

fn promtool(args: &[&Path], verb: &[&str]) -> (bool, String) {
    infer_doctor_testkit::ensure_debian_packages(&["prometheus"]);
    let output = Command::new(PROMTOOL)
        .args(verb)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PROMTOOL}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

fn rule_file(dialect: Dialect, hold: Duration) -> alerts::RuleFile {
    let target = Target::new(dialect, SELECTOR, "pod", Duration::from_secs(300)).unwrap();
    alerts::rule_file(&target, &Thresholds::default(), hold)
}

#[test]
fn every_dialects_rule_file_passes_promtool_check_and_a_broken_one_does_not() {
    let scratch = tempfile::tempdir().unwrap();
    for dialect in Dialect::ALL.into_iter().filter(|d| *d != Dialect::Dcgm) {
        let file = rule_file(dialect, Duration::from_secs(300));
        assert!(!file.alerts.is_empty(), "{dialect:?}: no alert at all");
        let path = scratch.path().join(format!("{}.yml", dialect.name()));
        std::fs::write(&path, &file.yaml).unwrap();
        let (passed, said) = promtool(&[&path], &["check", "rules"]);
        assert!(passed, "{dialect:?}: {said}\n{}", file.yaml);
    }
    let broken = rule_file(Dialect::VllmV1, Duration::from_secs(300))
        .yaml
        .replacen("histogram_quantile(0.95,", "histogram_quantile(0.95", 1);
    let path = scratch.path().join("broken.yml");
    std::fs::write(&path, broken).unwrap();
    let (passed, said) = promtool(&[&path], &["check", "rules"]);
    assert!(!passed, "a broken rule file passed: {said}");
}

/// The labels and annotations a playbook alert carries, from the rule it mirrors.
fn expected(
    rule: &infer_doctor_diagnose::Rule,
    severity: &str,
    summary: &str,
    pod: Option<&str>,
) -> Value {
    let mut labels = json!({"severity": severity, "finding": rule.id});
    if let Some(pod) = pod {
        labels["pod"] = pod.into();
    }
    json!({
        "exp_labels": labels,
        "exp_annotations": {
            "summary": summary,
            "description": rule.why,
            "finding": rule.id,
            "remedy": rule.remedies.join("; "),
        },
    })
}

fn series(name: &str, labels: &str, values: &str) -> Value {
    json!({"series": format!("{name}{{namespace=\"llm\",{labels}}}"), "values": values})
}

#[test]
fn promtool_unit_tests_fire_the_playbook_and_regression_alerts_only_where_they_should() {
    let scratch = tempfile::tempdir().unwrap();
    let rules = scratch.path().join("rules.yml");
    std::fs::write(
        &rules,
        rule_file(Dialect::VllmV1, Duration::from_secs(300)).yaml,
    )
    .unwrap();
    let kv = "vllm:kv_cache_usage_perc";
    let waiting = "vllm:num_requests_waiting";
    let saturated = |severity, summary| expected(&KV_SATURATED, severity, summary, Some("full"));
    let week = 7 * 24 * 60;
    // JSON is YAML: the unit-test file is written as JSON.
    // The fleet's recorded series carry the selector's fixed labels, so its alert does too.
    let mut regressed = expected(
        &DEGRADED,
        "warning",
        "Fleet generated tokens/s is more than 30% below the same time 7d ago",
        None,
    );
    regressed["exp_labels"]["namespace"] = "llm".into();
    let unit_tests = json!({
        "rule_files": [rules],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "KV saturation only where requests wait, only under the selector",
                "interval": "1m",
                "input_series": [
                    series(kv, "pod=\"full\",engine=\"0\"", "0.97x40"),
                    series(waiting, "pod=\"full\",engine=\"0\"", "4x40"),
                    // As full, but nothing waits: a well-used cache, not a saturated one.
                    series(kv, "pod=\"busy\"", "0.97x40"),
                    series(waiting, "pod=\"busy\"", "0x40"),
                    // Saturated, but another namespace's.
                    {"series": format!("{kv}{{namespace=\"other\",pod=\"elsewhere\"}}"), "values": "0.99x40"},
                    {"series": format!("{waiting}{{namespace=\"other\",pod=\"elsewhere\"}}"), "values": "9x40"},
                    // Below the warning limit with a queue.
                    series(kv, "pod=\"roomy\"", "0.85x40"),
                    series(waiting, "pod=\"roomy\"", "3x40"),
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "InferDoctorKvCacheSaturated", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "InferDoctorKvCacheSaturated",
                        "exp_alerts": [saturated("warning", "KV cache > 90% full with requests waiting on full")],
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "InferDoctorKvCacheSaturatedCritical",
                        "exp_alerts": [saturated("critical", "KV cache >= 95% full with requests waiting on full")],
                    },
                    {"eval_time": "30m", "alertname": "InferDoctorPreemptions", "exp_alerts": []},
                ],
            },
            {
                "name": "tokens/s against the same time a week earlier",
                "interval": "1m",
                "input_series": [
                    // 100 tokens/s for a week and an hour, then 50.
                    series(
                        "vllm:generation_tokens_total",
                        "pod=\"a\"",
                        &format!("0+6000x{} {}+3000x120", week + 60, 6000 * (week + 60) + 3000),
                    ),
                ],
                "alert_rule_test": [
                    {"eval_time": format!("{}m", week + 30), "alertname": "InferDoctorThroughputRegression", "exp_alerts": []},
                    {
                        "eval_time": format!("{}m", week + 120),
                        "alertname": "InferDoctorThroughputRegression",
                        "exp_alerts": [regressed],
                    },
                ],
            },
        ],
    });
    let test_file = scratch.path().join("tests.yml");
    std::fs::write(&test_file, unit_tests.to_string()).unwrap();
    let (passed, said) = promtool(&[&test_file], &["test", "rules"]);
    assert!(passed, "{said}");
}
