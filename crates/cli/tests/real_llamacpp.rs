//! infer-doctor against a real llama.cpp `llama-server` (built from source into the cache on first use) serving
//! the project's tiny random-weight model on loopback: what a server nobody here wrote does to our numbers.

mod real_servers;

use real_servers::{Server, finding, finding_ids, infer_doctor, read_json, tiny_model};
use serde_json::Value;

fn tokenizer() -> String {
    tiny_model().join("hf").display().to_string()
}

#[test]
fn bench_loses_no_request_although_the_server_closes_every_stream() {
    let server = Server::llama(&["--parallel", "4", "--ctx-size", "4096"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = infer_doctor(&[
        "bench",
        "--url",
        &server.url,
        "--concurrency",
        "4",
        "--num-requests",
        "40",
        "--input-tokens",
        "32",
        "--output-tokens",
        "32",
        "--ignore-eos",
        "--tokenizer",
        &tokenizer(),
        "--scrape-interval",
        "250ms",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let run = read_json(&out.join("run.json"));
    let requests = &run["summary"]["requests"];
    assert_eq!(
        (requests["ok"].as_u64(), requests["failed"].as_u64()),
        (Some(40), Some(0)),
        "{requests}"
    );
    // llama-server says keep-alive but closes after each streamed response: the pool must notice or re-send.
    let tokens = &run["summary"]["tokens"];
    assert_eq!(tokens["output_total"], 40 * 32, "{tokens}");
    // The server counted exactly the prompt we built with the model's own tokenizer.
    assert_eq!(tokens["prompt_tokens_added"]["max"], 0, "{tokens}");
    assert_eq!(tokens["prompt_tokens_added"]["compared"], 40, "{tokens}");

    // The server's own view, in the llama.cpp dialect, with the capacity read from /props and /slots.
    let window = &run["server"];
    assert_eq!(window["dialect"], "llamacpp", "{window}");
    assert_eq!(window["gauges"]["kv_capacity_tokens"]["max"], 4096.0);
    assert_eq!(window["gauges"]["max_running"]["max"], 4.0);
    let running_peak = window["gauges"]["requests_running"]["max"]
        .as_f64()
        .unwrap();
    assert!((1.0..=4.0).contains(&running_peak), "{window}");
    assert_eq!(
        window["counters"]["generation_tokens"]["increase"],
        40.0 * 32.0
    );
}

#[test]
fn metrics_show_reads_the_llamacpp_dialect_with_its_slots() {
    let server = Server::llama(&["--parallel", "3", "--ctx-size", "3072"]);
    let (code, stdout, stderr) =
        infer_doctor(&["metrics", "show", &server.url, "--format", "json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(shown["dialect"], "llamacpp", "{shown}");
    let slots = server.get_json("/slots");
    assert_eq!(slots.as_array().map(Vec::len), Some(3));
    // The KV capacity is the slots' contexts together; the slot count caps the running requests.
    let gauges = &shown["gauges"];
    assert_eq!(gauges["kv_capacity_tokens"]["max"], 3072.0, "{gauges}");
    assert_eq!(gauges["max_running"]["max"], 3.0, "{gauges}");
    assert_eq!(gauges["requests_running"]["max"], 0.0, "{gauges}");
}

#[test]
fn diagnose_names_the_slot_limit_when_users_outnumber_slots() {
    let server = Server::llama(&["--parallel", "2", "--ctx-size", "2048"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let (code, stdout, stderr) = infer_doctor(&[
        "diagnose",
        "--url",
        &server.url,
        "--concurrency",
        "8",
        "--input-tokens",
        "64",
        "--output-tokens",
        "128",
        "--ignore-eos",
        "--tokenizer",
        &tokenizer(),
        "--budget",
        "20s",
        "--max-requests",
        "120",
        "--out",
        &out.display().to_string(),
        "--quiet",
    ]);
    assert!(code == 0 || code == 1, "{stdout}\n{stderr}");
    let diagnosis = read_json(&out.join("diagnosis.json"));
    let ids = finding_ids(&diagnosis["diagnosis"]);
    assert_eq!(
        ids.first().map(String::as_str),
        Some("capacity.batch_cap"),
        "{ids:?}\n{stdout}"
    );
    let cap = finding(&diagnosis["diagnosis"], "capacity.batch_cap").unwrap();
    assert!(
        cap["verdict"].as_str().unwrap().contains("slots 2"),
        "{cap}"
    );
    // The relations behind it: requests were deferred while both slots were busy.
    let loaded = read_json(&out.join("loaded/run.json"));
    let gauges = &loaded["server"]["gauges"];
    assert!(
        gauges["requests_waiting"]["mean"].as_f64().unwrap() > 0.5,
        "{gauges}"
    );
    assert_eq!(gauges["requests_running"]["max"], 2.0, "{gauges}");
    assert_eq!(loaded["summary"]["requests"]["failed"], 0);
}
