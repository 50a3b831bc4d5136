//! `export grafana|alerts` end to end: what the binary writes is loaded by a real Prometheus 2.42 scraping
//! `infer-doctor sim` every second while `infer-doctor bench` loads it (loopback only, bounded in requests and in
//! time). Every dashboard query must answer with data; under load `kv-saturated` must fire the KV alert and
//! `healthy` none. Bad input exits 2 naming it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infer_doctor_testkit::Running;
use infer_doctor_testkit::prometheus::RunningPrometheus;
use serde_json::Value;

/// Short enough for rate() to have a few 1 s scrapes in it soon after load starts.
const RATE_WINDOW: &str = "15s";
/// No scenario needs longer to show what it shows; the load stops by itself well before.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Requests per load run: at 32 users about 30 s against `kv-saturated`, less against `healthy`.
const LOAD_REQUESTS: &str = "160";

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

/// `infer-doctor export …`'s standard output; the command must succeed.
fn export(args: &[&str]) -> String {
    let output = bin().arg("export").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "export {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `infer-doctor sim --scenario S` on a free loopback port, and its address (host:port).
fn start_sim(scenario: &str) -> (Running, String) {
    let (sim, url) = infer_doctor_testkit::start_sim(
        env!("CARGO_BIN_EXE_infer-doctor"),
        &["--scenario", scenario],
    );
    (sim, url.trim_start_matches("http://").to_string())
}

/// `infer-doctor bench` against the simulator: 32 users, chat-sized requests, a bounded count.
fn start_load(address: &str) -> Running {
    let child = bin()
        .args([
            "bench",
            "--url",
            &format!("http://{address}"),
            "--concurrency",
            "32",
        ])
        .args(["--num-requests", LOAD_REQUESTS, "--input-tokens", "512"])
        .args(["--output-tokens", "256", "--ignore-eos"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// Prometheus scraping the simulator every second as pod `sim-0`, evaluating `rules` (if any) every second.
fn start_prometheus(scratch: &Path, address: &str, rules: Option<&Path>) -> RunningPrometheus {
    let rule_files = rules.map_or(String::new(), |path| {
        format!("rule_files:\n  - '{}'\n", path.display())
    });
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}\
         scrape_configs:\n  - job_name: vllm\n    static_configs:\n      - targets: ['{address}']\n        \
         labels: {{pod: sim-0}}\n"
    );
    let mut prometheus = RunningPrometheus::start(scratch, &config);
    prometheus.wait_until_ready();
    prometheus.wait_until_scraping(1);
    prometheus
}

/// Whether an instant query answers with at least one finite value now.
fn has_data(prometheus: &RunningPrometheus, promql: &str) -> bool {
    let data = prometheus.api("query", &[("query", promql.to_string())]);
    data["result"].as_array().into_iter().flatten().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

#[test]
fn every_dashboard_query_answers_from_a_prometheus_scraping_the_loaded_simulator() {
    let dashboard: Value =
        serde_json::from_str(&export(&["grafana", "--rate-window", RATE_WINDOW])).unwrap();
    let mut waiting: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap().to_string();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().map(move |t| {
                let name = format!("{title} / {}", t["legendFormat"].as_str().unwrap());
                (name, t["expr"].as_str().unwrap().to_string())
            })
        })
        .collect();
    assert!(waiting.len() > 20, "only {} queries", waiting.len());
    let (_sim, address) = start_sim("kv-saturated");
    let scratch = tempfile::tempdir().unwrap();
    let prometheus = start_prometheus(scratch.path(), &address, None);
    let _load = start_load(&address);
    // Each query must answer at some point of the run: latency quantiles once requests finish inside the window,
    // rates once the window holds two scrapes.
    let deadline = Instant::now() + TIME_LIMIT;
    while !waiting.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        waiting.retain(|(_, promql)| !has_data(&prometheus, promql));
    }
    assert!(
        waiting.is_empty(),
        "no data within {TIME_LIMIT:?} from: {waiting:#?}"
    );
}

/// The alerts Prometheus reported (pending or firing) while `scenario` ran under load, polled every second until
/// `enough` says so, the load is over, or the time limit passes; and whether the rules had data at the end.
fn alerts_under_load(scenario: &str, enough: impl Fn(&Value) -> bool) -> (BTreeSet<String>, bool) {
    let scratch = tempfile::tempdir().unwrap();
    let rules = scratch.path().join("rules.yml");
    let yaml = export(&["alerts", "--for", "0s", "--rate-window", RATE_WINDOW]);
    std::fs::write(&rules, yaml).unwrap();
    let (_sim, address) = start_sim(scenario);
    let prometheus = start_prometheus(scratch.path(), &address, Some(&rules));
    let mut load = start_load(&address);
    let deadline = Instant::now() + TIME_LIMIT;
    let mut seen = BTreeSet::new();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let alerts = prometheus.api("alerts", &[]);
        for alert in alerts["alerts"].as_array().into_iter().flatten() {
            seen.insert(format!(
                "{} ({})",
                alert["labels"]["alertname"].as_str().unwrap(),
                alert["state"].as_str().unwrap()
            ));
        }
        let load_over = load.0.try_wait().unwrap().is_some();
        if enough(&alerts) || load_over || Instant::now() > deadline {
            break;
        }
    }
    let recorded = format!("infer_doctor:generation_tokens:rate{RATE_WINDOW}");
    (seen, has_data(&prometheus, &recorded))
}

#[test]
fn kv_saturated_under_load_fires_the_kv_alert_from_the_exported_rules() {
    let firing = |alerts: &Value| {
        alerts["alerts"].as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == "InferDoctorKvCacheSaturated" && a["state"] == "firing"
        })
    };
    let (seen, _) = alerts_under_load("kv-saturated", firing);
    assert!(
        seen.contains("InferDoctorKvCacheSaturated (firing)"),
        "the KV alert never fired; seen: {seen:?}"
    );
}

#[test]
fn healthy_under_the_same_load_fires_no_exported_alert() {
    let (seen, rules_had_data) = alerts_under_load("healthy", |_| false);
    assert!(
        rules_had_data,
        "the recording rules never saw the load, so no alert could have fired"
    );
    assert!(seen.is_empty(), "alerts on a healthy server: {seen:?}");
}

/// Runs `export` expecting exit 2; its standard error.
fn usage_error(args: &[&str]) -> String {
    let output = bin().arg("export").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(2), "export {args:?}: {stderr}");
    stderr
}

#[test]
fn bad_export_input_exits_2_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let said = usage_error(&["grafana", "--dialect", "nosuch"]);
    assert!(said.contains("nosuch") && said.contains("sglang"), "{said}");
    let said = usage_error(&["alerts", "--dialect", "dcgm"]);
    assert!(said.contains("--dialect dcgm"), "{said}");
    let missing = scratch.path().join("missing.toml");
    let said = usage_error(&["alerts", "--thresholds", missing.to_str().unwrap()]);
    assert!(said.contains(missing.to_str().unwrap()), "{said}");
    let unknown_key = scratch.path().join("thresholds.toml");
    std::fs::write(&unknown_key, "kv_saturated = 0.8\nkv_saturation = 0.9\n").unwrap();
    let said = usage_error(&["alerts", "--thresholds", unknown_key.to_str().unwrap()]);
    assert!(
        said.contains("thresholds.toml") && said.contains("line 2"),
        "{said}"
    );
    let said = usage_error(&["grafana", "--selector", "{namespace=\"llm\""]);
    assert!(said.contains("--selector"), "{said}");
    let said = usage_error(&["grafana", "--pod-label", "pod-name"]);
    assert!(said.contains("--pod-label `pod-name`"), "{said}");
    let unwritable = scratch.path().join("no/such/dir/dashboard.json");
    let said = usage_error(&["grafana", "-o", unwritable.to_str().unwrap()]);
    assert!(said.contains(unwritable.to_str().unwrap()), "{said}");
}

#[test]
fn thresholds_from_a_file_set_the_alerts_limits() {
    let scratch = tempfile::tempdir().unwrap();
    let thresholds = scratch.path().join("thresholds.toml");
    std::fs::write(&thresholds, "kv_saturated = 0.8\n").unwrap();
    let path = thresholds.to_str().unwrap();
    let tuned = export(&["alerts", "--thresholds", path]);
    let default = export(&["alerts"]);
    let kv_line = |yaml: &str| {
        let mut lines = yaml.lines();
        lines
            .find(|l| l.contains("alert: \"InferDoctorKvCacheSaturated\""))
            .and_then(|_| lines.next())
            .unwrap()
            .to_string()
    };
    assert!(
        kv_line(&default).contains(") > 0.9)"),
        "{}",
        kv_line(&default)
    );
    assert!(kv_line(&tuned).contains(") > 0.8)"), "{}", kv_line(&tuned));
    let mut stderr = String::new();
    let mut child = bin()
        .args(["export", "alerts", "-o"])
        .arg(scratch.path().join("rules.yml"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        stderr.contains("InferDoctorBatchCap: vllm_v1 exports no max_running metric"),
        "what vLLM cannot alert on is said: {stderr}"
    );
}
