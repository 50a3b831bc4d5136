//! `plan` end to end: options from vLLM's memory arithmetic, each checked on the simulator, the recommendation
//! and its flags consistent with the planner's numbers, and input errors named.

use std::process::Command;

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
    let doc: Value = serde_json::from_str(&stdout).unwrap();
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
    let flags: Vec<(String, String)> = serde_json::from_value(doc["flags"].clone()).unwrap();
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        flag("--tensor-parallel-size").unwrap(),
        best["deployment"]["tensor_parallel"].to_string()
    );
    assert_eq!(
        flag("--max-model-len").unwrap(),
        doc["max_model_len"].to_string()
    );
    let seqs: f64 = flag("--max-num-seqs").unwrap().parse().unwrap();
    assert!(seqs >= 1.0 && seqs <= best["memory"]["limits"]["max_num_seqs"].as_f64().unwrap());
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
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let best = &doc["options"][doc["recommended"].as_u64().unwrap() as usize];
    let manifest = doc["autoscale"].as_str().unwrap();
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
