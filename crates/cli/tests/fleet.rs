//! A real fleet on loopback: simulated vLLM replicas behind a real nginx with the seed's `least_conn` upstream or
//! behind the simulator's own router, scraped by a real Prometheus 2.42; `diagnose --prometheus` must name the
//! replica the load piles on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infer_doctor_testkit::Running;
use infer_doctor_testkit::prometheus::{RunningPrometheus, free_loopback_port, http_get};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_infer-doctor");

/// nginx in the foreground with a configuration of the test's own, its files under `scratch`.
fn start_nginx(scratch: &Path, port: u16, backends: &[&str], location_extra: &str) -> Running {
    infer_doctor_testkit::ensure_debian_packages(&["nginx"]);
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {};\n", b.trim_start_matches("http://")))
        .collect();
    let dir = scratch.display();
    let config = format!(
        "daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  \
         upstream vllm {{\n    least_conn;\n{servers}  }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://vllm;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n      \
         proxy_read_timeout 120s;\n      {location_extra}\n    }}\n  }}\n}}\n"
    );
    let path = scratch.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    let nginx = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    while http_get(address, "/health").map(|(code, _)| code) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "nginx did not proxy /health: {}",
            std::fs::read_to_string(scratch.join("nginx-error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nginx
}

/// Prometheus scraping the given replicas (pod name, URL) every second, and the simulated fleet router's endpoint
/// picker series (its `/picker/metrics`) as a target of their own when `picker` names the router.
fn scrape(scratch: &Path, replicas: &[(&str, &str)], picker: Option<&str>) -> RunningPrometheus {
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let targets: String = replicas
        .iter()
        .map(|(pod, url)| {
            format!(
                "      - targets: ['{}']\n        labels: {{pod: {pod}}}\n",
                host(url)
            )
        })
        .collect();
    let picker_job = picker
        .map(|router| {
            format!(
                "  - job_name: epp\n    metrics_path: /picker/metrics\n    static_configs:\n      - targets: ['{}']\n",
                host(router)
            )
        })
        .unwrap_or_default();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: vllm\n    \
         static_configs:\n{targets}{picker_job}"
    );
    let mut prometheus = RunningPrometheus::start(scratch, &config);
    prometheus.wait_until_ready();
    prometheus.wait_until_scraping(replicas.len() + usize::from(picker.is_some()));
    prometheus
}

/// Prometheus scraping a simulated fleet: one target per replica port (each exposition labels itself with the
/// same pod the target does) and the router's picker series.
fn scrape_sim_fleet(scratch: &Path, router: &str, pods: &[(String, String)]) -> RunningPrometheus {
    let targets: Vec<(&str, &str)> = pods
        .iter()
        .map(|(pod, url)| (pod.as_str(), url.as_str()))
        .collect();
    scrape(scratch, &targets, Some(router))
}

/// `diagnose --prometheus` over the last `window`, as JSON.
fn diagnose_fleet(prometheus: &RunningPrometheus, window: &str) -> Value {
    let out = infer_doctor_testkit::command(EXE)
        .args([
            "diagnose",
            "--prometheus",
            &format!("http://{}", prometheus.address),
        ])
        .args(["--window", window, "--format", "json", "--no-history"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn finding<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {:#}", doc["diagnosis"]))
}

fn check<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no checklist line {id}"))
}

fn check_status<'a>(doc: &'a Value, id: &str) -> &'a Value {
    &check(doc, id)["status"]
}

/// Ten seconds of load through `front` (still running when the diagnosis reads the last 8 s of it), then the
/// diagnosis through Prometheus.
fn diagnose_under_load(prometheus: &RunningPrometheus, front: &str) -> Value {
    let mut loading = load(front, "400");
    std::thread::sleep(Duration::from_secs(10));
    let doc = diagnose_fleet(prometheus, "8s");
    assert!(
        loading.0.try_wait().unwrap().is_none(),
        "the load must cover the window diagnosed"
    );
    doc
}

/// The diagnosis under load and its `fleet.load_skew` verdict.
fn skew_under_load(prometheus: &RunningPrometheus, front: &str) -> (Value, String) {
    let doc = diagnose_under_load(prometheus, front);
    let verdict = finding(&doc, "fleet.load_skew")["verdict"]
        .as_str()
        .unwrap()
        .to_string();
    (doc, verdict)
}

/// A bounded closed-loop load against `url`, in the background.
fn load(url: &str, requests: &str) -> Running {
    Running(
        infer_doctor_testkit::command(EXE)
            .args([
                "bench",
                "--url",
                url,
                "--concurrency",
                "16",
                "--num-requests",
                requests,
            ])
            .args([
                "--output-tokens",
                "64",
                "--ignore-eos",
                "--timeout",
                "60s",
                "--no-history",
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A replica that died before the window and stayed down has no engine series in it, only Prometheus's `up` at 0:
/// it is still one of the fleet's (its engine series within the hour say so) and named down.
#[test]
fn a_replica_down_for_the_whole_window_is_still_named() {
    let scratch = tempfile::tempdir().unwrap();
    let (dead_soon, dead) = infer_doctor_testkit::start_sim(EXE, &["--seed", "1"]);
    let (_alive, alive) = infer_doctor_testkit::start_sim(EXE, &["--seed", "2"]);
    let prometheus = scrape(scratch.path(), &[("gone", &dead), ("alive", &alive)], None);
    std::thread::sleep(Duration::from_secs(2));
    drop(dead_soon);
    // Longer than the 5 s window diagnosed: none of its engine samples falls inside it.
    std::thread::sleep(Duration::from_secs(7));
    let doc = diagnose_fleet(&prometheus, "5s");
    let down = finding(&doc, "fleet.replica_down");
    let verdict = down["verdict"].as_str().unwrap();
    assert!(verdict.contains("gone unreachable in 100%"), "{verdict}");
    assert!(!verdict.contains("alive"), "{verdict}");
    assert_eq!(down["severity"], "critical");
}

#[test]
fn a_replica_that_restarted_is_named_down_and_its_peer_is_not() {
    let scratch = tempfile::tempdir().unwrap();
    let port = free_loopback_port().to_string();
    let (first_life, flaky) =
        infer_doctor_testkit::start_sim(EXE, &["--port", &port, "--seed", "1"]);
    let (_steady, steady) = infer_doctor_testkit::start_sim(EXE, &["--seed", "2"]);
    let prometheus = scrape(
        scratch.path(),
        &[("flaky", &flaky), ("steady", &steady)],
        None,
    );
    // Counters that have counted something, so a restart shows as a reset.
    for url in [&flaky, &steady] {
        let mut warm = load(url, "32");
        assert_eq!(warm.wait_for(Duration::from_secs(60)), Some(0));
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(first_life);
    // Down for five scrapes, a quarter of the window diagnosed, then back on its port with its counters at zero.
    std::thread::sleep(Duration::from_secs(5));
    let (_second_life, _) = infer_doctor_testkit::start_sim(EXE, &["--port", &port, "--seed", "1"]);
    std::thread::sleep(Duration::from_secs(3));
    let doc = diagnose_fleet(&prometheus, "20s");
    let down = finding(&doc, "fleet.replica_down");
    let verdict = down["verdict"].as_str().unwrap();
    assert!(verdict.contains("flaky unreachable in"), "{verdict}");
    assert!(verdict.contains("flaky restarted"), "{verdict}");
    assert!(!verdict.contains("steady"), "{verdict}");
    assert_eq!(down["severity"], "critical");
    assert_eq!(*check_status(&doc, "replicas_up"), "fail");
}

#[test]
fn a_replica_with_a_smaller_batch_behind_least_conn_is_named_through_prometheus() {
    let scratch = tempfile::tempdir().unwrap();
    // Replica `narrow` runs two requests at a time; `wide` runs all it is given. least_conn splits the open
    // connections evenly, so the queue builds on `narrow` alone.
    let (_narrow, narrow) =
        infer_doctor_testkit::start_sim(EXE, &["--max-num-seqs", "2", "--seed", "1"]);
    let (_wide, wide) = infer_doctor_testkit::start_sim(EXE, &["--seed", "2"]);
    let port = free_loopback_port();
    let _nginx = start_nginx(scratch.path(), port, &[&narrow, &wide], "");
    let prometheus = scrape(
        scratch.path(),
        &[("narrow", &narrow), ("wide", &wide)],
        None,
    );

    // Load through nginx, bounded in count and time, while Prometheus watches.
    let (doc, verdict) = skew_under_load(&prometheus, &format!("http://127.0.0.1:{port}"));
    assert!(
        verdict.starts_with("replica narrow carries far more"),
        "{verdict}"
    );
    assert!(verdict.contains("waiting"), "{verdict}");
    assert_eq!(*check_status(&doc, "fleet_balanced"), "fail");
    assert_eq!(*check_status(&doc, "replicas_up"), "pass");
}

#[test]
fn a_dead_upstream_left_in_rotation_is_the_gateways_error_not_the_servers() {
    let scratch = tempfile::tempdir().unwrap();
    let (_live, live) = infer_doctor_testkit::start_sim(EXE, &["--seed", "1"]);
    // An upstream nothing listens on (port 1: privileged, so no other test can take it), never taken out of
    // rotation (max_fails=0), no retry on the next one: about half the requests get nginx's 502.
    let dead = "127.0.0.1:1 max_fails=0".to_string();
    let port = free_loopback_port();
    let _nginx = start_nginx(
        scratch.path(),
        port,
        &[&live, &dead],
        "proxy_next_upstream off;",
    );
    let prometheus = scrape(scratch.path(), &[("live", &live)], None);
    let bundle = scratch.path().join("bundle");
    let out = infer_doctor_testkit::command(EXE)
        .args(["diagnose", "--url", &format!("http://127.0.0.1:{port}")])
        .args(["--prometheus", &format!("http://{}", prometheus.address)])
        .args(["--window", "60s", "--budget", "20s", "--concurrency", "4"])
        // /v1/models through the gateway fails half the time too.
        .args(["--model", "sim-llama-3.1-8b"])
        .args(["--format", "json", "--no-history", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let gateway = finding(&doc, "fleet.gateway_errors");
    let verdict = gateway["verdict"].as_str().unwrap();
    assert!(verdict.contains("HTTP 502"), "{verdict}");
    assert!(
        verdict.contains("the servers counted 0 failed requests"),
        "{verdict}"
    );
    assert_eq!(*check_status(&doc, "gateway_passes_requests"), "fail");
    // The bundle keeps the fleet's view: diagnosed again offline, with no Prometheus, the verdict is the same.
    let again = infer_doctor_testkit::command(EXE)
        .args(["diagnose", "--bundle"])
        .arg(&bundle)
        .args(["--format", "json", "--no-history"])
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(finding(&again, "fleet.gateway_errors")["verdict"], verdict);
}

/// An endpoint picker's `/metrics` as the Gateway API Inference Extension's Go client writes it (the shape of its
/// pkg/epp/metrics/testdata goldens), `success` and `failure` scheduling attempts so far and 2 ready pods.
fn picker_scrape(success: u32, failure: u32, decisions: u32) -> String {
    let bucket = |le: &str, n: u32| {
        format!("inference_extension_scheduler_e2e_duration_seconds_bucket{{le=\"{le}\"}} {n}\n")
    };
    format!(
        "# HELP inference_extension_scheduler_attempts_total [ALPHA] Total number of scheduling attempts.\n\
         # TYPE inference_extension_scheduler_attempts_total counter\n\
         inference_extension_scheduler_attempts_total{{namespace=\"\",pod_name=\"\",port=\"\",status=\"failure\",target_model_name=\"\"}} {failure}\n\
         inference_extension_scheduler_attempts_total{{namespace=\"llm\",pod_name=\"vllm-0\",port=\"8000\",status=\"success\",target_model_name=\"m\"}} {success}\n\
         # HELP inference_extension_scheduler_e2e_duration_seconds [ALPHA] End-to-end scheduling latency distribution in seconds.\n\
         # TYPE inference_extension_scheduler_e2e_duration_seconds histogram\n\
         {}{}{}inference_extension_scheduler_e2e_duration_seconds_sum {}\n\
         inference_extension_scheduler_e2e_duration_seconds_count {decisions}\n\
         # HELP inference_pool_ready_pods [ALPHA] The number of ready pods in the inference server pool.\n\
         # TYPE inference_pool_ready_pods gauge\ninference_pool_ready_pods{{name=\"pool\"}} 2\n",
        bucket("0.001", decisions),
        bucket("0.1", decisions),
        bucket("+Inf", decisions),
        f64::from(decisions) * 0.0005,
    )
}

#[test]
fn scrapes_of_the_endpoint_picker_name_its_failed_scheduling_attempts() {
    let scratch = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = scratch.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let before = write("epp-0.prom", picker_scrape(100, 0, 100));
    // 300 placed and 40 failed in the 30 s between the scrapes: 12% of attempts found no replica.
    let after = write("epp-1.prom", picker_scrape(400, 40, 440));
    let diagnose = |files: &[&Path]| {
        infer_doctor_testkit::command(EXE)
            .args(["diagnose", "--scheduler-metrics"])
            .args(files)
            .args(["--interval", "30s", "--format", "json", "--no-history"])
            .output()
            .unwrap()
    };
    let out = diagnose(&[&before, &after]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let picker = finding(&doc, "llmd.scheduler");
    assert_eq!(picker["severity"], "critical");
    let verdict = picker["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("12% of 340 scheduling attempts failed"),
        "{verdict}"
    );
    assert_eq!(*check_status(&doc, "scheduler_keeps_up"), "fail");

    // Every attempt placed in a half-millisecond: the picker keeps up.
    let calm = write("epp-2.prom", picker_scrape(700, 40, 740));
    let out = diagnose(&[&after, &calm]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(*check_status(&doc, "scheduler_keeps_up"), "pass");

    // An engine's scrape is no picker's: said, naming the flag.
    let engine = write(
        "vllm.prom",
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 3\n".into(),
    );
    let out = diagnose(&[&engine, &engine]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--scheduler-metrics"), "{stderr}");
}

/// `diagnose --url A --url B`: each replica probed directly with its share of the users, scraped on its own; the
/// replica with a narrow batch cap queues where its peer does not, and is named. The bundle diagnosed again
/// offline names it the same way.
#[test]
fn replicas_probed_side_by_side_name_the_one_that_queues() {
    let scratch = tempfile::tempdir().unwrap();
    let (_narrow, narrow) =
        infer_doctor_testkit::start_sim(EXE, &["--max-num-seqs", "2", "--seed", "1"]);
    let (_wide, wide) = infer_doctor_testkit::start_sim(EXE, &["--seed", "2"]);
    let bundle = scratch.path().join("bundle");
    let out = infer_doctor_testkit::command(EXE)
        .args(["diagnose", "--url", &narrow, "--url", &wide])
        .args([
            "--concurrency",
            "16",
            "--budget",
            "16s",
            "--max-requests",
            "200",
        ])
        .args(["--format", "json", "--no-history", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let narrow_name = narrow.trim_start_matches("http://");
    let skew = finding(&doc, "fleet.load_skew");
    let verdict = skew["verdict"].as_str().unwrap().to_string();
    assert!(
        verdict.starts_with(&format!("replica {narrow_name} carries far more")),
        "{verdict}"
    );
    assert_eq!(*check_status(&doc, "replicas_up"), "pass");
    // Both replicas' requests are the client's view.
    let replicas = bundle.join("replicas");
    let sent: u64 = ["replica-0", "replica-1"]
        .iter()
        .map(|r| {
            let run: Value = serde_json::from_str(
                &std::fs::read_to_string(replicas.join(r).join("loaded/run.json")).unwrap(),
            )
            .unwrap();
            run["summary"]["requests"]["sent"].as_u64().unwrap()
        })
        .sum();
    assert!(sent > 0);
    assert_eq!(doc["evidence"]["client"]["requests"]["sent"], sent);
    let health = &doc["evidence"]["pod_health"][narrow_name];
    assert_eq!(health["up_share"], 1.0);
    assert_eq!(health["restarts"], 0.0);
    let again = infer_doctor_testkit::command(EXE)
        .args(["diagnose", "--bundle"])
        .arg(&bundle)
        .args(["--format", "json", "--no-history"])
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(finding(&again, "fleet.load_skew")["verdict"], verdict);
}

#[test]
fn the_weak_replica_of_a_simulated_fleet_behind_round_robin_is_named_through_prometheus() {
    let scratch = tempfile::tempdir().unwrap();
    // The imbalanced-routing fleet: sim-2 runs four requests at a time, its peers all they are given.
    let (_fleet, router, pods) = infer_doctor_testkit::start_sim_fleet(
        EXE,
        &[
            "--scenario",
            "imbalanced-routing",
            "--replicas",
            "3",
            "--router",
            "round-robin",
        ],
        3,
    );
    let names: Vec<&str> = pods.iter().map(|(pod, _)| pod.as_str()).collect();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2"]);
    let prometheus = scrape_sim_fleet(scratch.path(), &router, &pods);
    let (doc, verdict) = skew_under_load(&prometheus, &router);
    assert!(
        verdict.starts_with("replica sim-2 carries far more"),
        "{verdict}"
    );
    assert_eq!(*check_status(&doc, "fleet_balanced"), "fail");
    assert_eq!(*check_status(&doc, "replicas_up"), "pass");
    // The router's picker series, read through Prometheus beside the engines': it placed every request in
    // microseconds with all three endpoints ready.
    let picker = check(&doc, "scheduler_keeps_up");
    assert_eq!(picker["status"], "pass", "{picker}");
    let detail = picker["detail"].as_str().unwrap();
    for read in [
        "ready endpoints",
        "scheduling attempts",
        "scheduling latency",
    ] {
        assert!(detail.contains(read), "{detail}");
    }
}

/// The same router as a slow endpoint picker (30 ms per decision, as a heavy scorer plugin takes) whose flow
/// control lets 4 of the 16 users' requests through at once: its own histograms, scraped by a real Prometheus as a
/// target apart from the engines and read with histogram_quantile, name both.
#[test]
fn a_slow_endpoint_picker_holding_requests_in_flow_control_is_named_through_prometheus() {
    let scratch = tempfile::tempdir().unwrap();
    let (_fleet, router, pods) = infer_doctor_testkit::start_sim_fleet(
        EXE,
        &[
            "--replicas",
            "2",
            "--router",
            "least-request",
            "--scheduling-delay",
            "30ms",
            "--flow-control-limit",
            "4",
        ],
        2,
    );
    let prometheus = scrape_sim_fleet(scratch.path(), &router, &pods);
    let doc = diagnose_under_load(&prometheus, &router);
    let picker = finding(&doc, "llmd.scheduler");
    let verdict = picker["verdict"].as_str().unwrap();
    assert!(verdict.contains("choosing a replica took"), "{verdict}");
    // 30 ms decisions fall in the (20 ms, 50 ms] bucket: Prometheus interpolates the p99 inside it.
    let p99 = picker["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["signal"] == "scheduling latency p99 (s)")
        .and_then(|o| o["value"].as_f64())
        .unwrap_or_else(|| panic!("{picker:#}"));
    assert!((0.02..=0.05).contains(&p99), "{p99}");
    // Twelve of the sixteen users wait in the router for one of four places: no TTFT of its own to set that
    // against (no client probe here), so the wait alone counts.
    assert!(
        verdict.contains("in the picker's flow-control queue"),
        "{verdict}"
    );
    let queue_p90 = picker["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["signal"] == "flow-control queue time p90 (s)")
        .and_then(|o| o["value"].as_f64())
        .unwrap_or_else(|| panic!("{picker:#}"));
    assert!(queue_p90 >= 0.1, "{queue_p90}");
    assert_eq!(*check_status(&doc, "scheduler_keeps_up"), "fail");
}

/// One of the replicas given is dead: the probe learns the model from the live one, still probes the dead one,
/// and its failed scrapes name it down, while the live replica's numbers are judged as usual.
#[test]
fn a_dead_replica_among_those_probed_is_named_down() {
    let (_live, live) = infer_doctor_testkit::start_sim(EXE, &["--seed", "1"]);
    let dead = format!("http://127.0.0.1:{}", free_loopback_port());
    let out = infer_doctor_testkit::command(EXE)
        .args(["diagnose", "--url", &live, "--url", &dead])
        .args([
            "--concurrency",
            "4",
            "--budget",
            "8s",
            "--max-requests",
            "40",
        ])
        .args(["--format", "json", "--no-history"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let down = finding(&doc, "fleet.replica_down");
    let verdict = down["verdict"].as_str().unwrap();
    let dead_name = dead.trim_start_matches("http://");
    assert!(
        verdict.contains(&format!("{dead_name} unreachable in 100%")),
        "{verdict}"
    );
    assert!(
        !verdict.contains(live.trim_start_matches("http://")),
        "{verdict}"
    );
    assert_eq!(down["severity"], "critical");
    // The fleet's server view is the live replica's, not lost to the dead one.
    assert!(doc["evidence"]["server"]["scrapes"].as_u64().unwrap() >= 2);
}
