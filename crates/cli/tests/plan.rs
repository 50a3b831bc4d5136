//! `plan` end to end: options from vLLM's memory arithmetic, each checked on the simulator, the recommendation
//! and its flags consistent with the planner's numbers, plans from measured runs, and input errors named.

use std::process::Command;
use std::time::Duration;

use infer_doctor_testkit::{MockConfig, MockServer};
use serde_json::Value;

fn plan(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_infer-doctor"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_option_is_simulated_and_the_recommendation_meets_the_slo() {
    let (code, stdout, stderr) = plan(&[
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100",
        "--gpus",
        "2",
        "--isl",
        "2000",
        "--osl",
        "300",
        "--rate",
        "20",
        "--slo",
        "ttft_p95=1s,tpot_p95=50ms",
        "--gpu-hour-price",
        "2.5",
        "--sim-requests",
        "200",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let doc = &report["details"];
    let options = doc["options"].as_array().unwrap();
    // TP 1 and 2, each with the checkpoint's weights, FP8 KV, and FP8 weights with FP8 KV.
    assert_eq!(options.len(), 6, "{doc}");
    for option in options {
        let simulated = &option["simulated"];
        let meets = simulated["ttft_p95_s"].as_f64().unwrap() <= 1.0
            && simulated["tpot_p95_s"].as_f64().unwrap() <= 0.05;
        assert_eq!(option["meets_slo"].as_bool(), Some(meets), "{option}");
        let gpus = option["replicas"].as_u64().unwrap()
            * option["deployment"]["tensor_parallel"].as_u64().unwrap();
        assert_eq!(option["gpus"].as_u64(), Some(gpus));
    }
    // FP8 KV holds about twice the tokens of BF16 KV on the same GPUs.
    let tokens = |i: usize| options[i]["memory"]["kv"]["num_blocks"].as_f64().unwrap();
    assert!((1.95..2.05).contains(&(tokens(1) / tokens(0))), "{doc}");
    let best = &options[doc["recommended"].as_u64().unwrap() as usize];
    assert_eq!(best["meets_slo"], true);
    let fewest = options
        .iter()
        .filter(|o| o["meets_slo"] == true)
        .map(|o| o["gpus"].as_u64().unwrap())
        .min();
    assert_eq!(best["gpus"].as_u64(), fewest);
    let command = report["command"].as_str().unwrap();
    let flag = |name: &str| {
        let at = command
            .find(&format!("{name} "))
            .unwrap_or_else(|| panic!("{name}: {command}"));
        command[at..].split(' ').nth(1).unwrap().to_owned()
    };
    assert_eq!(
        flag("--tensor-parallel-size"),
        best["deployment"]["tensor_parallel"].to_string()
    );
    assert_eq!(flag("--max-model-len"), doc["max_model_len"].to_string());
    let seqs: f64 = flag("--max-num-seqs").parse().unwrap();
    let cap = best["memory"]["limits"]["max_num_seqs"].as_f64().unwrap();
    assert_eq!(
        seqs,
        best["max_concurrency"].as_f64().unwrap().floor().min(cap)
    );
    // The options table has a row per option, the recommended one starred.
    let rows = report["tables"][0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), options.len());
    let starred = rows[doc["recommended"].as_u64().unwrap() as usize][0]
        .as_str()
        .unwrap();
    assert!(starred.ends_with('*'), "{starred}");
}

#[test]
fn an_slo_nothing_meets_recommends_nothing_and_bad_input_is_named() {
    let (code, stdout, stderr) = plan(&[
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "l4",
        "--gpus",
        "1",
        "--rate",
        "50",
        "--slo",
        "ttft_p95=1ms,tpot_p95=1ms",
        "--sim-requests",
        "60",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No option meets the SLO"), "{stdout}");
    assert!(
        stdout.contains("misses") && !stdout.lines().any(|l| l.ends_with("meets")),
        "{stdout}"
    );
    let (code, _, stderr) = plan(&[
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "l4",
        "--gpus",
        "1",
        "--slo",
        "ttft_p95=1ms,tpot_p95=1ms",
        "--sim-requests",
        "60",
        "--autoscale",
        "hpa",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--autoscale"), "{stderr}");
    let (code, _, stderr) = plan(&["--model", "gpt-9", "--gpu", "h100"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"gpt-9\""), "{stderr}");
    let (code, _, stderr) = plan(&[
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100",
        "--slo",
        "ttft_p99=1s,tpot_p95=50ms",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ttft_p95"), "{stderr}");
    // 70B in BF16 on one 24 GB card: every option is left out, each with its reason.
    let (code, _, stderr) = plan(&["--model", "llama-3.1-70b", "--gpu", "l4", "--gpus", "1"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("model does not fit"), "{stderr}");
}

#[test]
fn autoscale_manifests_follow_the_recommended_option() {
    let (code, stdout, stderr) = plan(&[
        "--model",
        "qwen3-8b",
        "--gpu",
        "l40s",
        "--gpus",
        "1",
        "--rate",
        "5",
        "--sim-requests",
        "100",
        "--format",
        "json",
        "--autoscale",
        "hpa",
        "--namespace",
        "llm",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let doc = &report["details"];
    let best = &doc["options"][doc["recommended"].as_u64().unwrap() as usize];
    let manifest = report["manifests"].as_str().unwrap();
    assert!(
        manifest.contains("kind: HorizontalPodAutoscaler"),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("minReplicas: {}", best["replicas"])),
        "{manifest}"
    );
    assert!(manifest.contains("vllm_num_requests_waiting"), "{manifest}");
}

#[test]
fn a_stored_plan_renders_again_through_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan");
    let (code, stdout, stderr) = plan(&[
        "--model",
        "qwen3-8b",
        "--gpu",
        "h100",
        "--gpus",
        "1",
        "--rate",
        "5",
        "--sim-requests",
        "60",
        "--format",
        "md",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for file in ["plan.json", "plan.md", "plan.html"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let again = Command::new(env!("CARGO_BIN_EXE_infer-doctor"))
        .args(["report", out.to_str().unwrap(), "--format", "md"])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
}

/// Runs `bench` against the mock server (two slots, ~100 ms a request) into `out`.
async fn bench(server: &MockServer, out: &std::path::Path, extra: &[&str]) {
    let mut cmd = infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"));
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--num-requests",
        "40",
        "--output-tokens",
        "4",
        "-q",
    ]);
    cmd.args(["--out", out.to_str().unwrap()]).args(extra);
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success() || output.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_from_a_sweep_and_a_run_use_the_rate_served_within_the_slo() {
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(60),
        itl: Duration::from_millis(10),
        capacity: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    // A loose objective, so the sweep's lower points meet it however busy this machine is.
    bench(
        &server,
        &sweep,
        &[
            "--sweep",
            "--sweep-points",
            "3",
            "--concurrency",
            "8",
            "--slo",
            "e2e_p90=2s",
        ],
    )
    .await;
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("run.json")).unwrap()).unwrap();
    let best_rate = run["sweep"]["best_rate"].as_f64().unwrap();
    let point = run["sweep"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["rate"] == best_rate)
        .unwrap();
    let served = point["summary"]["throughput"]["request_rate"]
        .as_f64()
        .unwrap();
    let (code, stdout, stderr) = plan(&[
        "--from",
        sweep.to_str().unwrap(),
        "--rate",
        "100",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let details = &report["details"];
    assert_eq!(details["rate_within_slo"].as_f64(), Some(served));
    assert_eq!(details["lower_bound"], false);
    assert_eq!(
        details["replicas"].as_f64(),
        Some((100.0 * 1.2 / served).ceil())
    );

    // A single run that met its SLO is a lower bound; one that missed it plans nothing.
    let met = dir.path().join("met");
    bench(
        &server,
        &met,
        &["--concurrency", "2", "--slo", "e2e_p90=5s"],
    )
    .await;
    let (code, stdout, stderr) = plan(&[
        "--from",
        met.to_str().unwrap(),
        "--rate",
        "10",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["details"]["lower_bound"],
        true
    );
    let missed = dir.path().join("missed");
    bench(
        &server,
        &missed,
        &["--concurrency", "8", "--slo", "e2e_p90=1ms"],
    )
    .await;
    let (code, _, stderr) = plan(&["--from", missed.to_str().unwrap(), "--rate", "10"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missed its SLO"), "{stderr}");
    // A run with no objectives of its own (a diagnose probe's, say) is judged by plan's --slo.
    let plain = dir.path().join("plain");
    bench(&server, &plain, &["--concurrency", "2"]).await;
    let from = |slo: &str| {
        plan(&[
            "--from",
            plain.to_str().unwrap(),
            "--rate",
            "10",
            "--slo",
            slo,
            "--format",
            "json",
        ])
    };
    let (code, stdout, stderr) = from("ttft_p95=5s,tpot_p95=1s");
    assert_eq!(code, 0, "{stderr}");
    let table = &serde_json::from_str::<Value>(&stdout).unwrap()["tables"][0]["rows"][0];
    assert!(
        table[2]
            .as_str()
            .unwrap()
            .starts_with("plan's ttft_p95=5000ms"),
        "{table}"
    );
    let (code, _, stderr) = from("ttft_p95=1ms,tpot_p95=1s");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("ttft_p95") && stderr.contains("missed"),
        "{stderr}"
    );
    let (code, _, stderr) = plan(&["--from", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no run.json"), "{stderr}");
}

#[test]
fn edge_loads_are_measured_not_guessed() {
    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json", "--sim-requests", "40"]);
        let (code, stdout, stderr) = plan(&all);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let best = |report: &Value| -> Option<Value> {
        let details = &report["details"];
        let i = details["recommended"].as_u64()? as usize;
        Some(details["options"][i].clone())
    };
    // Prompt-heavy: the recommended option is one the simulator ran, with at least one replica.
    let heavy = json(&[
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100",
        "--gpus",
        "1",
        "--isl",
        "8000",
        "--osl",
        "20",
        "--rate",
        "0.02",
        "--slo",
        "ttft_p95=2s,tpot_p95=8ms",
    ]);
    let option = best(&heavy).expect("an option meets");
    assert!(
        option["replicas"].as_u64() >= Some(1) && option["gpus"].as_u64() >= Some(1),
        "{option}"
    );
    // A request every day: every measured request still finishes inside the simulated horizon.
    let sparse = json(&[
        "--model", "qwen3-8b", "--gpu", "h100", "--gpus", "1", "--rate", "0.00001",
    ]);
    let option = best(&sparse).expect("an option meets");
    assert!(
        option["simulated"]["ttft_p95_s"].as_f64().unwrap() < 1.0,
        "{option}"
    );
    // One output token: no TPOT to miss, so TTFT alone decides.
    let single = json(&[
        "--model", "qwen3-8b", "--gpu", "h100", "--gpus", "1", "--osl", "1", "--rate", "2",
    ]);
    assert!(best(&single).is_some(), "{single}");
    // Only pipeline stages fit DeepSeek-V3 on H100s: shown, not simulated, not recommended.
    let deepseek = json(&[
        "--model",
        "deepseek-v3",
        "--gpu",
        "h100",
        "--gpus",
        "16",
        "--rate",
        "1",
    ]);
    assert!(best(&deepseek).is_none());
    let rows = deepseek["tables"][0]["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r[13] == "not simulated" && r[1] == "8 x PP 2"),
        "{rows:?}"
    );
    let notes = deepseek["notes"].to_string();
    assert!(notes.contains("not simulated"), "{notes}");
}
