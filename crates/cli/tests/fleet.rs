//! A real fleet on loopback: two simulated vLLM replicas behind a real nginx with the seed's `least_conn`
//! upstream, scraped by a real Prometheus 2.42; `diagnose --prometheus` must name the replica the load piles on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infer_doctor_testkit::Running;
use infer_doctor_testkit::prometheus::{RunningPrometheus, free_loopback_port, http_get};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_infer-doctor");

/// nginx in the foreground with a configuration of the test's own, its files under `scratch`.
fn start_nginx(scratch: &Path, port: u16, backends: &[&str]) -> Running {
    infer_doctor_testkit::ensure_debian_packages(&["nginx"]);
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {};\n", b.trim_start_matches("http://")))
        .collect();
    let dir = scratch.display();
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  \
         upstream vllm {{\n    least_conn;\n{servers}  }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://vllm;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n      \
         proxy_read_timeout 120s;\n    }}\n  }}\n}}\n"
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

#[test]
fn a_replica_with_a_smaller_batch_behind_least_conn_is_named_through_prometheus() {
    let scratch = tempfile::tempdir().unwrap();
    // Replica `narrow` runs two requests at a time; `wide` runs all it is given. least_conn splits the open
    // connections evenly, so the queue builds on `narrow` alone.
    let (_narrow, narrow) =
        infer_doctor_testkit::start_sim(EXE, &["--max-num-seqs", "2", "--seed", "1"]);
    let (_wide, wide) = infer_doctor_testkit::start_sim(EXE, &["--seed", "2"]);
    let port = free_loopback_port();
    let _nginx = start_nginx(scratch.path(), port, &[&narrow, &wide]);
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n  - job_name: vllm\n    \
         static_configs:\n      - targets: ['{}']\n        labels: {{pod: narrow}}\n      - targets: ['{}']\n        \
         labels: {{pod: wide}}\n",
        narrow.trim_start_matches("http://"),
        wide.trim_start_matches("http://")
    );
    let mut prometheus = RunningPrometheus::start(scratch.path(), &config);
    prometheus.wait_until_ready();
    prometheus.wait_until_scraping(2);

    // Load through nginx, bounded in count and time, while Prometheus watches.
    let mut load = Running(
        infer_doctor_testkit::command(EXE)
            .args([
                "bench",
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--concurrency",
                "16",
            ])
            .args([
                "--num-requests",
                "400",
                "--output-tokens",
                "64",
                "--ignore-eos",
                "--timeout",
                "60s",
            ])
            .args(["--no-history", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(10));
    let out = infer_doctor_testkit::command(EXE)
        .args([
            "diagnose",
            "--prometheus",
            &format!("http://{}", prometheus.address),
        ])
        .args(["--window", "8s", "--format", "json", "--no-history"])
        .output()
        .unwrap();
    let still_loading = load.0.try_wait().unwrap().is_none();
    drop(load);
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(still_loading, "the load must cover the window diagnosed");
    let findings = doc["diagnosis"]["findings"].as_array().unwrap();
    let skew = findings
        .iter()
        .find(|f| f["id"] == "fleet.load_skew")
        .unwrap_or_else(|| panic!("no fleet.load_skew in {:#}", doc["diagnosis"]));
    let verdict = skew["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("replica narrow carries far more"),
        "{verdict}"
    );
    assert!(verdict.contains("waiting"), "{verdict}");
    let line = doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "fleet_balanced")
        .unwrap();
    assert_eq!(line["status"], "fail");
}
