//! infer-doctor against real vLLM 0.32 on CPU (installed into the cache on first use) serving the project's tiny
//! model with random weights: the playbook's findings on configurations made to show them, and our client's
//! latencies against vLLM's own histograms. Assertions are on findings and relations, not on timings.

#[path = "../../trace/tests/hta/mod.rs"]
mod hta;
mod real_servers;

use std::path::Path;
use std::time::{Duration, Instant};

use infer_doctor_core::{Buckets, Reading, Signal};
use infer_doctor_observe::{dialect, exposition};
use real_servers::{Server, finding, finding_ids, infer_doctor, read_json, tiny_model};
use serde_json::Value;

fn tokenizer() -> String {
    tiny_model().join("hf").display().to_string()
}

/// `diagnose --url` on the server with the given load; returns the stored diagnosis document and the bundle.
fn diagnose(server: &Server, load: &[&str], dir: &Path) -> Value {
    let out = dir.display().to_string();
    let log = server.log.display().to_string();
    let tokenizer = tokenizer();
    let mut args = vec!["diagnose", "--url", &server.url, "--ignore-eos", "--quiet"];
    args.extend(["--tokenizer", &tokenizer, "--log", &log, "--out", &out]);
    args.extend(load);
    let (code, stdout, stderr) = infer_doctor(&args);
    assert!(
        code == 0 || code == 1,
        "diagnose exited {code}\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    read_json(&dir.join("diagnosis.json"))
}

fn warnings(document: &Value) -> Vec<String> {
    document["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| format!("{}: {}", f["id"], f["verdict"]))
        .collect()
}

#[test]
fn a_healthy_server_its_long_prompts_its_own_latency_histograms_its_log_and_its_profile() {
    let profiles = tempfile::tempdir().unwrap();
    let profiler = format!(
        r#"{{"profiler":"torch","torch_profiler_dir":"{}"}}"#,
        profiles.path().display()
    );
    let server = Server::vllm(&[
        "--max-model-len",
        "2048",
        "--max-num-seqs",
        "8",
        "--profiler-config",
        &profiler,
    ]);
    healthy_load_gives_no_warning(&server);
    the_output_probes_compare_what_they_asked_for(&server);
    client_latencies_agree_with_vllms_histograms(&server);
    long_prompts_alone_are_prefill_bound(&server);
    logs_read_the_capacity_that_metrics_report(&server);
    its_profile_reads_as_hta_reads_it(&server, profiles.path());
}

/// A profile recorded through vLLM's own endpoints while 8 requests run: a CPU profile (the worker's Python and
/// aten ops, its engine-step annotations, no GPU ops) that we read as HTA reads it, step by step.
fn its_profile_reads_as_hta_reads_it(server: &Server, profiles: &Path) {
    let (requests, output_tokens) = (8, 16);
    let started = server.post("/start_profile", Duration::from_secs(60));
    assert_eq!(started.map(|(status, _)| status), Some(200));
    let (code, stdout, stderr) = infer_doctor(&[
        "bench",
        "--url",
        &server.url,
        "--concurrency",
        "4",
        "--num-requests",
        &requests.to_string(),
        "--input-tokens",
        "64",
        "--output-tokens",
        &output_tokens.to_string(),
        "--ignore-eos",
        "--tokenizer",
        &tokenizer(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // vLLM answers once its workers have written their traces (gzip, `with_stack` on by default).
    let stopped = server.post("/stop_profile", Duration::from_secs(120));
    assert_eq!(stopped.map(|(status, _)| status), Some(200));

    let dir = profiles.display().to_string();
    let (code, json, stderr) = infer_doctor(&["trace", &dir, "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap();
    // The worker is the one rank; the API server's own profile beside it is named and left out.
    let ranks = report["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 1, "{:#}", report["set_aside"]);
    assert!(
        report["set_aside"][0]
            .as_str()
            .is_some_and(|s| s.contains("API-server profile")),
        "{:#}",
        report["set_aside"]
    );
    let rank = &ranks[0];
    assert!(rank["temporal"].is_null(), "a CPU profile has no GPU time");
    // Every generated token but each request's first (its prefill's) is scheduled in one annotated step.
    let generated: u64 = rank["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["generation_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(generated, requests * (output_tokens - 1));
    assert_eq!(
        rank["steps"]["phases"][0]["phase"], "prefill",
        "{:#}",
        rank["steps"]["phases"]
    );

    let file = std::path::PathBuf::from(rank["source"].as_str().unwrap());
    let ours = infer_doctor_trace::analyse(
        &infer_doctor_trace::read_trace(&file).unwrap(),
        &infer_doctor_trace::Options::default(),
    );
    let theirs = hta::hta(std::slice::from_ref(&file));
    let problems = hta::compare(&file, &ours, &theirs[file.to_string_lossy().as_ref()]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `diagnose --determinism --template` on vLLM's CPU kernels. Determinism: whatever the kernels do, every prompt
/// is answered alone and in its batches, compared by vLLM's own tokens, and the verdict is the one those
/// comparisons give. Batches of 8 and 32 (the defaults) fit: the tiny model decodes 32 requests of 16 tokens in
/// a few seconds on two cores. Template: vLLM serves the tiny model's own ChatML template, so our rendering of
/// it is vLLM's (read back through its /tokenize and /detokenize) and chat and completions answer alike.
fn the_output_probes_compare_what_they_asked_for(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let document = diagnose(
        server,
        &[
            "--determinism",
            "--determinism-tokens",
            "16",
            "--template",
            "--concurrency",
            "2",
            "--input-tokens",
            "32",
            "--output-tokens",
            "16",
            // The determinism probe gets a third of it.
            "--budget",
            "90s",
            "--max-requests",
            "8",
        ],
        dir.path(),
    );
    let probe = read_json(&dir.path().join("determinism.json"));
    eprintln!("determinism on vLLM CPU: {probe:#}");
    assert_eq!(probe["lone_failed"], 0, "{probe:#}");
    // vLLM returns logprobs on /v1/completions, so the comparison is by its tokens.
    assert_eq!(
        (probe["by_tokens"].as_bool(), probe["logprobs"].as_bool()),
        (Some(true), Some(true))
    );
    let runs = probe["runs"].as_array().unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| r["batch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [8, 32]
    );
    // Every prompt was sent alone twice; one whose two lone runs differ (vLLM's prefix cache meets the second)
    // is left out of the batches, whose copies cycle through the 4 prompts.
    assert_eq!(probe["repeated"], 4, "{probe:#}");
    let unstable: Vec<u64> = probe["alone_divergences"].as_array().map_or(vec![], |a| {
        a.iter().map(|d| d["prompt"].as_u64().unwrap()).collect()
    });
    let mut differing = 0;
    let mut compared = 0;
    for run in runs {
        assert_eq!(run["failed"], 0, "{run:#}");
        let sent = run["sent"].as_u64().unwrap();
        let stable = (0..sent).filter(|k| !unstable.contains(&(k % 4))).count() as u64;
        assert_eq!(
            run["compared"], stable,
            "every batched output of a stable prompt compared: {run:#}"
        );
        differing += run["differing"].as_u64().unwrap();
        compared += run["compared"].as_u64().unwrap();
    }
    let divergences = probe["divergences"].as_array().unwrap();
    for d in divergences {
        let position = d["position"].as_u64().unwrap();
        assert!((1..=16).contains(&position), "{d:#}");
        assert_ne!(d["alone"]["token"], d["batched"]["token"], "{d:#}");
        // At temperature 0 the lone run took its argmax, so no candidate it saw was more likely.
        if let Some(margin) = d["margin"].as_f64() {
            assert!(margin >= 0.0, "{d:#}");
        }
    }
    let found = document["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "output.nondeterministic");
    let line = document["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "outputs_deterministic")
        .unwrap();
    if !unstable.is_empty() {
        let verdict = found.expect("output.nondeterministic")["verdict"]
            .as_str()
            .unwrap();
        assert!(
            verdict.starts_with(&format!(
                "{} of 4 prompts gave a different output at temperature 0 when sent alone twice",
                unstable.len()
            )),
            "{verdict}"
        );
        assert_eq!(line["status"], "fail", "{line:#}");
    } else if differing == 0 {
        assert!(divergences.is_empty() && found.is_none(), "{probe:#}");
        assert_eq!(line["status"], "pass", "{line:#}");
    } else {
        assert!(!divergences.is_empty(), "{probe:#}");
        let verdict = found.expect("output.nondeterministic")["verdict"]
            .as_str()
            .unwrap();
        assert!(
            verdict.starts_with(&format!("{differing} of {compared} outputs")),
            "{verdict}"
        );
        assert_eq!(line["status"], "fail", "{line:#}");
    }

    let probe = read_json(&dir.path().join("template.json"));
    eprintln!("template on vLLM CPU: {probe:#}");
    assert_eq!(probe["generation_prompt"], true);
    assert_eq!(probe["end_of_turn"], "<|im_end|>");
    assert_eq!(probe["server_rendered"], probe["rendered"], "{probe:#}");
    let (chat, plain) = (&probe["chat"], &probe["completion"]);
    assert!(
        chat["text"].is_string() && plain["text"].is_string(),
        "{probe:#}"
    );
    assert_eq!(chat["prompt_tokens"], plain["prompt_tokens"], "{probe:#}");
    assert_eq!(chat["text"], plain["text"], "{probe:#}");
    let findings = document["diagnosis"]["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["id"] != "output.template"),
        "{findings:#?}"
    );
}

fn healthy_load_gives_no_warning(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    // On two CPU cores vLLM's decode step is compute-bound, so four users' batch doubles ITL (measured 1.7–2.1×),
    // which a GPU's step hides; that is itl.batch_size's business, not a sign of an unhealthy server.
    let thresholds = dir.path().join("cpu.toml");
    std::fs::write(&thresholds, "itl_load_ratio = 3.0\n").unwrap();
    let document = diagnose(
        server,
        &[
            "--thresholds",
            thresholds.to_str().unwrap(),
            "--concurrency",
            "4",
            "--input-tokens",
            "128",
            // Long enough that the engine, not vLLM's API server (one busy core here), holds requests most of
            // their time: with 64 tokens the server's running count is half the client's in-flight count.
            "--output-tokens",
            "256",
            "--budget",
            "40s",
            "--max-requests",
            "48",
        ],
        dir.path(),
    );
    assert_eq!(warnings(&document), Vec::<String>::new());
    // vLLM's /health, timed on fresh connections before the load: the path line is judged, not unknown.
    assert_eq!(document["evidence"]["network"]["path"], "/health");
    let headline = document["diagnosis"]["headline"].as_str().unwrap();
    assert!(headline.starts_with("No problem found"), "{headline}");
    let loaded = read_json(&dir.path().join("loaded/run.json"));
    assert_eq!(loaded["server"]["dialect"], "vllm_v1");
    assert_eq!(loaded["summary"]["requests"]["failed"], 0);
}

/// What vLLM's histograms added during one run: the difference of two scrapes.
fn histogram_increase(before: &str, after: &str, signal: Signal) -> Buckets {
    let read = |text: &str| match dialect::read(&exposition::parse(text), None, "/metrics")
        .unwrap()
        .get(signal)
    {
        Some(Reading::Histogram(buckets)) => buckets.clone(),
        other => panic!("{signal:?} is not a histogram in vLLM's metrics: {other:?}"),
    };
    let (before, after) = (read(before), read(after));
    Buckets {
        bounds: after
            .bounds
            .iter()
            .zip(&before.bounds)
            .map(|((le, a), (_, b))| (*le, a - b))
            .collect(),
        sum: after.sum - before.sum,
        count: after.count - before.count,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// Our client times a request from the moment it is sent; vLLM from when its API server has it. So for every
/// request the client's TTFT and E2E are at least the server's, and the gap is what HTTP and the API server add.
fn client_latencies_agree_with_vllms_histograms(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let before = server.get("/metrics").unwrap().1;
    let (code, stdout, stderr) = infer_doctor(&[
        "bench",
        "--url",
        &server.url,
        "--concurrency",
        "4",
        "--num-requests",
        "60",
        "--input-tokens",
        "256",
        "--output-tokens",
        "32",
        "--ignore-eos",
        "--tokenizer",
        &tokenizer(),
        "--quiet",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let after = server.get("/metrics").unwrap().1;
    let records: Vec<Value> = std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 60);
    let seconds = |r: &Value, field: &str| {
        (r[field].as_f64().unwrap() - r["sent_us"].as_f64().unwrap()) / 1e6
    };
    for (signal, field) in [(Signal::Ttft, "first_token_us"), (Signal::E2e, "end_us")] {
        let server_side = histogram_increase(&before, &after, signal);
        assert_eq!(
            server_side.count, 60.0,
            "{signal:?}: vLLM counted other requests"
        );
        let mut client: Vec<f64> = records.iter().map(|r| seconds(r, field)).collect();
        let client_mean = client.iter().sum::<f64>() / client.len() as f64;
        let server_mean = server_side.sum / server_side.count;
        // Per request client ≥ server, so at every bucket bound no more client times than server times fit.
        for (le, server_count) in &server_side.bounds {
            let client_count = client.iter().filter(|v| **v <= *le).count() as f64;
            assert!(
                client_count <= *server_count,
                "{signal:?}: {client_count} client times ≤ {le} s but only {server_count} server times"
            );
        }
        // The server's median lies in one bucket: the client's median is not below that bucket.
        let half = server_side.count / 2.0;
        let median_bucket = server_side
            .bounds
            .iter()
            .position(|(_, c)| *c >= half)
            .unwrap();
        let bucket_floor = match median_bucket {
            0 => 0.0,
            i => server_side.bounds[i - 1].0,
        };
        let client_median = median(&mut client);
        let gap = client_mean - server_mean;
        eprintln!(
            "{signal:?}: client mean {:.2} ms, median {:.2} ms; vLLM mean {:.2} ms, median in ({:.0}, {:.0}] ms; \
             mean gap {:.2} ms",
            client_mean * 1e3,
            client_median * 1e3,
            server_mean * 1e3,
            bucket_floor * 1e3,
            server_side.bounds[median_bucket].0 * 1e3,
            gap * 1e3
        );
        assert!(
            client_median >= bucket_floor,
            "{signal:?}: client median below vLLM's"
        );
        assert!(
            client_mean >= server_mean,
            "{signal:?}: client mean below vLLM's"
        );
        // What loopback HTTP, SSE framing and the API server add: a few milliseconds on this machine.
        let bound = 0.020 + 0.25 * server_mean;
        assert!(
            gap <= bound,
            "{signal:?}: client mean {client_mean} s is {gap} s above vLLM's (bound {bound} s)"
        );
    }
}

fn long_prompts_alone_are_prefill_bound(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    // The tiny model prefills 1900 tokens in tens of milliseconds: "slow" here is what a user's SLO would say.
    let thresholds = dir.path().join("thresholds.toml");
    std::fs::write(&thresholds, "ttft_high_ms = 30\n").unwrap();
    // The first prompts of a new length pay one-time costs on CPU (a new shape for its kernels, up to seconds), and
    // after the output probes' batches the server may still be finishing their work: two long prompts first, so
    // the diagnosis sees steady prefills rather than a one-off that leaves its loaded probe too few requests.
    let tokenizer = tokenizer();
    let (code, _, stderr) = infer_doctor(&[
        "bench",
        "--url",
        &server.url,
        "--concurrency",
        "1",
        "--num-requests",
        "2",
        "--input-tokens",
        "1900",
        "--output-tokens",
        "8",
        "--ignore-eos",
        "--tokenizer",
        &tokenizer,
        "--quiet",
        "--no-history",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let document = diagnose(
        server,
        &[
            "--concurrency",
            "1",
            "--input-tokens",
            "1900",
            "--output-tokens",
            "8",
            "--budget",
            "20s",
            "--max-requests",
            "20",
            "--thresholds",
            &thresholds.display().to_string(),
        ],
        &dir.path().join("bundle"),
    );
    let diagnosis = &document["diagnosis"];
    let ids = finding_ids(diagnosis);
    assert_eq!(
        ids.first().map(String::as_str),
        Some("ttft.prefill_bound"),
        "{ids:?}: {}",
        diagnosis["headline"]
    );
    assert!(finding(diagnosis, "ttft.queueing").is_none(), "{ids:?}");
    let loaded = read_json(&dir.path().join("bundle/loaded/run.json"));
    let histograms = &loaded["server"]["histograms"];
    let (prefill, queue) = (
        histograms["prefill_time"]["mean"].as_f64().unwrap(),
        histograms["queue_time"]["mean"].as_f64().unwrap(),
    );
    assert!(
        prefill > 10.0 * queue,
        "prefill {prefill} s vs queue {queue} s"
    );
}

/// vLLM prints a stats line every 10 s while it works; wait for one after the load.
fn wait_for_stats_line(server: &Server) {
    let started = Instant::now();
    while !server.log_text().contains("Avg prompt throughput") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no stats line in vLLM's log"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn logs_read_the_capacity_that_metrics_report(server: &Server) {
    wait_for_stats_line(server);
    let log = server.log.display().to_string();
    let (code, stdout, stderr) = infer_doctor(&["logs", &log, "--format", "json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let metrics = server.get("/metrics").unwrap().1;
    let info = metrics
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .expect("cache_config_info in /metrics");
    let label = |name: &str| -> f64 {
        let start = info.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        info[start..].split('"').next().unwrap().parse().unwrap()
    };
    let kv_tokens = label("num_gpu_blocks") * label("block_size");
    // The planner sizes the same pool from the model's config.json: on CPU the budget is
    // VLLM_CPU_KVCACHE_SPACE (1 GiB here), the rest is vLLM's arithmetic (bytes per token, blocks).
    let model =
        infer_doctor_plan::ModelShape::from_config_file(&tiny_model().join("hf/config.json"))
            .unwrap();
    let gpu = infer_doctor_plan::Gpu::by_name("h100").unwrap();
    let mut deployment = infer_doctor_plan::Deployment::new(&model, &gpu, 1);
    deployment.kv_cache_dtype = infer_doctor_plan::Dtype::Bfloat16;
    let layout = infer_doctor_plan::KvLayout::of(&model, &deployment, 2048);
    let planned =
        infer_doctor_plan::KvCapacity::from_budget(1 << 30, layout, label("block_size") as u64)
            .unwrap();
    assert_eq!(planned.num_blocks as f64, label("num_gpu_blocks"), "{info}");
    assert_eq!(planned.tokens() as f64, kv_tokens);
    assert_eq!(report["server"], "vllm");
    assert_eq!(report["capacity"]["kv_cache_tokens"], kv_tokens, "{report}");
    assert_eq!(
        report["configuration"]["version"],
        server.get_json("/version")["version"]
    );
    assert_eq!(
        report["configuration"]["non_default_args"]["max_num_seqs"],
        "8"
    );
    let stats = report["stats"].as_array().unwrap();
    assert!(!stats.is_empty(), "{report}");
    // A line may fall after the load ended (running 0), but it reports the tokens generated in its interval.
    assert!(
        stats
            .iter()
            .any(|s| s["generation_throughput"].as_f64() > Some(0.0)),
        "{report}"
    );
}

/// The crowd that meets a batch cap of 2, in `diagnose`'s probe and in `collect`'s.
const EIGHT_USERS: [&str; 6] = [
    "--concurrency",
    "8",
    "--input-tokens",
    "64",
    "--output-tokens",
    "64",
];

#[test]
fn max_num_seqs_2_under_8_users_is_the_batch_cap() {
    let server = Server::vllm(&["--max-model-len", "1024", "--max-num-seqs", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let document = diagnose(
        &server,
        &[
            &EIGHT_USERS[..],
            &["--budget", "30s", "--max-requests", "64"],
        ]
        .concat(),
        dir.path(),
    );
    let diagnosis = &document["diagnosis"];
    let ids = finding_ids(diagnosis);
    assert_eq!(
        ids.first().map(String::as_str),
        Some("capacity.batch_cap"),
        "{ids:?}"
    );
    let cap = finding(diagnosis, "capacity.batch_cap").unwrap();
    assert_eq!(cap["confidence"], "high", "{cap}");
    assert!(finding(diagnosis, "ttft.queueing").is_some(), "{ids:?}");
    let loaded = read_json(&dir.path().join("loaded/run.json"));
    let server_view = &loaded["server"];
    assert_eq!(server_view["gauges"]["requests_running"]["max"], 2.0);
    assert!(
        server_view["gauges"]["requests_waiting"]["mean"]
            .as_f64()
            .unwrap()
            > 1.0
    );
    assert!(
        server_view["histograms"]["queue_time"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(server_view["gauges"]["kv_usage"]["max"].as_f64().unwrap() < 0.5);
    collect_gives_the_live_diagnosis_offline(&server, &ids[0]);
}

/// `collect` on this host finds vLLM by its port, reads its arguments, threads and collect-env, and the bundle
/// diagnosed offline gives the live diagnosis's primary finding.
fn collect_gives_the_live_diagnosis_offline(server: &Server, live_primary: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let log = server.log.display().to_string();
    let bundle_arg = bundle.display().to_string();
    let collect: [&str; 12] = [
        "collect",
        "--quiet",
        "--url",
        &server.url,
        "--log",
        &log,
        "--duration",
        "30s",
        "--item-timeout",
        "60s",
        "--out",
        &bundle_arg,
    ];
    let (code, stdout, stderr) = infer_doctor(&[&collect[..], &EIGHT_USERS[..]].concat());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let manifest = read_json(&bundle.join("manifest.json"));
    let status = |file: &str| {
        manifest["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["file"] == file)
            .map(|i| i["status"].clone())
    };
    for file in [
        "server/cmdline.txt",
        "env/server.env",
        "env/collect_env.txt",
        "server/threads.json",
    ] {
        assert_eq!(status(file), Some("ok".into()), "{file}: {manifest}");
    }
    let cmdline = std::fs::read_to_string(bundle.join("server/cmdline.txt")).unwrap();
    assert!(cmdline.contains("--max-num-seqs 2"), "{cmdline}");
    let (code, stdout, stderr) =
        infer_doctor(&["diagnose", "--bundle", &bundle_arg, "--format", "json"]);
    assert!(code == 0 || code == 1, "{stdout}\n{stderr}");
    let offline: Value = serde_json::from_str(&stdout).unwrap();
    let ids = finding_ids(&offline["diagnosis"]);
    assert_eq!(
        ids.first().map(String::as_str),
        Some(live_primary),
        "{ids:?}"
    );
    let environment = &offline["evidence"]["environment"];
    assert!(
        environment["vllm_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "collect-env read from the bundle: {environment}"
    );
}

#[test]
fn a_kv_pool_too_small_for_the_load_saturates_and_preempts() {
    // The CPU backend's blocks hold 128 tokens: 20 blocks are 2,560 tokens, four requests of 640.
    let server = Server::vllm(&[
        "--max-model-len",
        "640",
        "--max-num-seqs",
        "16",
        "--num-gpu-blocks-override",
        "20",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let document = diagnose(
        &server,
        &[
            "--concurrency",
            "16",
            "--input-tokens",
            "100",
            "--output-tokens",
            "400",
            "--budget",
            "40s",
            "--max-requests",
            "48",
        ],
        dir.path(),
    );
    let diagnosis = &document["diagnosis"];
    let ids = finding_ids(diagnosis);
    for id in ["capacity.kv_saturated", "capacity.preemptions"] {
        assert!(finding(diagnosis, id).is_some(), "{id} missing: {ids:?}");
    }
    assert!(
        ids.first()
            .is_some_and(|id| id == "capacity.kv_saturated" || id == "capacity.preemptions"),
        "{ids:?}"
    );
    let loaded = read_json(&dir.path().join("loaded/run.json"));
    let server_view = &loaded["server"];
    assert!(server_view["gauges"]["kv_usage"]["max"].as_f64().unwrap() > 0.9);
    assert!(
        server_view["gauges"]["requests_waiting"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        server_view["counters"]["preemptions"]["increase"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
