//! The binary end to end: flags, exit codes, the run directory, secrets, Ctrl-C, against the mock server on
//! loopback running in this test's process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use infer_doctor_testkit::{Fault, FaultRule, MockConfig, MockServer};
use serde_json::Value;

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

/// Runs the binary off the async runtime so the in-process server keeps serving.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn fast() -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
        ..Default::default()
    }
}

/// Ctrl-C, as a terminal sends it.
fn interrupt(child: &std::process::Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
        .display()
        .to_string()
}

/// Issue 11: whether the client was the limit is one rule, in diagnose, with thresholds the user sets; bench's
/// run.json and warnings carry its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_judges_its_own_client_by_the_playbook_rule_and_the_users_thresholds() {
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Any client CPU at all counts as the limit: the strictest the user can ask for.
    let thresholds = dir.path().join("strict.toml");
    std::fs::write(&thresholds, "client_cpu_share = 0.0\n").unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--concurrency", "2"]);
    // Long enough (about a second) that the client's CPU time is more than the kernel's 10 ms accounting tick:
    // ten requests took 30 ms, and their CPU time sometimes read as zero.
    cmd.args(["--num-requests", "300", "--output-tokens", "4"]);
    cmd.args(["--thresholds", thresholds.to_str().unwrap()]);
    cmd.args(["--out", out.to_str().unwrap()]);
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let summary = &doc["summary"];
    assert_eq!(summary["client"]["client_bound"], true, "{summary}");
    let warnings = summary["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("client CPU")
                || w.as_str().unwrap().contains("cores")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_writes_a_run_directory_without_the_secret() {
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--concurrency",
        "3",
        "--num-requests",
        "12",
        "--output-tokens",
        "5",
    ]);
    cmd.args([
        "--input-tokens",
        "40",
        "--tokenizer",
        &fixture("fixtures/tokenizers/tiny-bpe"),
        "--slo",
        "ttft_p99=5s",
    ]);
    cmd.args(["--out", out.to_str().unwrap(), "--api-key", "sk-cli-secret"]);
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("TTFT") && stdout.contains("errors: 0 of 12"),
        "{stdout}"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["summary"]["requests"]["ok"], 12);
    assert_eq!(doc["summary"]["tokens"]["tokenizer_checked"], 12);
    assert_eq!(doc["target"]["model_ids"][0], "mock-model");
    assert_eq!(doc["workload"]["exact_input_lengths"], true);
    assert!(doc["formulas"]["tpot"].as_str().unwrap().contains("n - 1"));
    assert_eq!(
        std::fs::read_to_string(out.join("requests.jsonl"))
            .unwrap()
            .lines()
            .count(),
        12
    );
    for file in ["run.json", "requests.jsonl"] {
        assert!(
            !std::fs::read_to_string(out.join(file))
                .unwrap()
                .contains("sk-cli-secret"),
            "{file} leaks the key"
        );
    }
    assert!(!stdout.contains("sk-cli-secret") && !stderr.contains("sk-cli-secret"));
    // Every prompt the server received had exactly 40 tokens by the tokenizer the client used.
    let served = server.truth();
    assert_eq!(served.len(), 12);
    let tokenizer = infer_doctor_prompt::tokenizer::Tokenizer::load(Path::new(&fixture(
        "fixtures/tokenizers/tiny-bpe",
    )))
    .unwrap();
    assert!(
        served
            .iter()
            .all(|t| tokenizer.encode(t.body["prompt"].as_str().unwrap()).len() == 40)
    );
    assert!(
        served
            .iter()
            .all(|t| t.authorization.as_deref() == Some("Bearer sk-cli-secret"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_and_a_failed_slo_exit_1() {
    let server = MockServer::start(fast()).await.unwrap();
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--num-requests",
        "4",
        "--output-tokens",
        "3",
        "--format",
        "json",
    ]);
    cmd.args(["--slo", "ttft_p50=1us", "-q"]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["summary"]["slo"][0]["pass"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, "{\"prompt\": \"a\"}\n{oops\n").unwrap();
    let broken_tok = dir.path().join("tokenizer.json");
    std::fs::write(&broken_tok, "{\"not\": \"a tokenizer\"}").unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--dataset", data.to_str().unwrap()],
            format!("{}:2", data.display()),
        ),
        (
            vec!["--tokenizer", broken_tok.to_str().unwrap()],
            format!("tokenizer {}", broken_tok.display()),
        ),
        (vec!["--input-tokens", "5-2"], "--input-tokens".into()),
        (vec!["--slo", "ttft_p95=soon"], "ttft_p95=soon".into()),
        (vec!["--concurrency", "0"], "--concurrency".into()),
    ];
    for (args, expect) in cases {
        let mut cmd = bin();
        cmd.args(["bench", "--url", "http://127.0.0.1:9"])
            .args(&args);
        let output = run(cmd).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&expect),
            "{args:?}: expected `{expect}` in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    let mut cmd = bin();
    cmd.args(["bench", "--url", "ftp://127.0.0.1:9"]);
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--url `ftp://127.0.0.1:9`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_used_to_panic_are_named_errors_that_show_no_secret() {
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &[
                "--url",
                "http://127.0.0.1:9",
                "--api-key",
                "sk-ctl-secret\u{7}x",
            ],
            "control character at position 14",
            "sk-ctl-secret",
        ),
        (
            &["--url", "http://127.0.0.1:9/my proxy/v1"],
            "' ' at character 4 of `/my proxy`",
            "panicked",
        ),
        (
            &["--url", "http://user:pw-in-url-secret@127.0.0.1:9"],
            "--url `http://***@127.0.0.1:9`",
            "pw-in-url-secret",
        ),
    ];
    for (args, expect, never) in cases {
        let mut cmd = bin();
        cmd.args(["bench", "--model", "m", "--num-requests", "1"])
            .args(args);
        let output = run(cmd).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?}: expected `{expect}` in {stderr}"
        );
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains(never) && !text.contains("panicked"),
                "{args:?}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_no_model_could_take_are_refused_before_memory_is_spent() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--input-tokens", "3000000000"],
            "--input-tokens: prompts of up to 3000000000 tokens",
        ),
        (
            &["--input-tokens", "1000:1000000000"],
            "--input-tokens: prompts of up to 4000001000",
        ),
        (
            &["--prefix-tokens", "4000000000", "--input-tokens", "10"],
            "--prefix-tokens plus --input-tokens",
        ),
        (
            &["--prefix-tokens", "100000", "--prefix-groups", "1000000"],
            "--prefix-groups 1000000",
        ),
        (
            &["--concurrency", "100000000"],
            "--concurrency 100000000: at most 100000",
        ),
        // An open loop's schedule is computed whole before the first send.
        (
            &["--request-rate", "1000000", "--duration", "1h"],
            "schedules 3600000000 arrivals",
        ),
    ];
    for (args, expect) in cases {
        let mut cmd = bin();
        cmd.args(["bench", "--url", "http://127.0.0.1:9", "--model", "m"])
            .args(args);
        let started = std::time::Instant::now();
        let output = run(cmd).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?}: expected `{expect}` in {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?}");
    }
    // diagnose refuses its crowd before the single-user probe spends any of the budget.
    let mut cmd = bin();
    cmd.args([
        "diagnose",
        "--url",
        "http://127.0.0.1:9",
        "--concurrency",
        "100000000",
    ]);
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--concurrency 100000000: at most 100000"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_echoes_back_is_scrubbed_from_every_output() {
    let server = MockServer::start(MockConfig {
        faults: vec![FaultRule {
            every: 2,
            offset: 0,
            fault: Fault::EchoAuthorization(401),
        }],
        ..fast()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--num-requests", "6"])
        .args(["--output-tokens", "3", "--out", out.to_str().unwrap()])
        .env("OPENAI_API_KEY", "sk-echoed-secret-42");
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        server
            .truth()
            .iter()
            .all(|t| t.authorization.as_deref() == Some("Bearer sk-echoed-secret-42")),
        "the key was sent, and echoed back by half the answers"
    );
    let mut report = bin();
    report.args(["report", out.to_str().unwrap(), "--format", "html"]);
    let html = run(report).await;
    assert_eq!(html.status.code(), Some(0));
    let requests = std::fs::read_to_string(out.join("requests.jsonl")).unwrap();
    assert!(
        requests.contains("Bearer [redacted]"),
        "the echo arrived and was scrubbed: {requests}"
    );
    let texts = [
        ("stdout", stdout.to_string()),
        ("stderr", stderr.to_string()),
        ("requests.jsonl", requests),
        (
            "run.json",
            std::fs::read_to_string(out.join("run.json")).unwrap(),
        ),
        (
            "report.html",
            String::from_utf8_lossy(&html.stdout).to_string(),
        ),
    ];
    for (name, text) in texts {
        assert!(!text.contains("sk-echoed-secret"), "{name} leaks the key");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_path_that_is_not_utf8_still_gets_its_run_json() {
    use std::os::unix::ffi::OsStrExt;
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(std::ffi::OsStr::from_bytes(b"run-\xff"));
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--num-requests", "3"])
        .arg("--out")
        .arg(&out);
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(doc["summary"]["requests"]["ok"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_succeeding_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--num-requests",
        "3",
        "--model",
        "m",
    ]);
    let output = run(cmd).await;
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let server = MockServer::start(MockConfig {
        faults: vec![FaultRule {
            every: 1,
            offset: 0,
            fault: Fault::Status(500),
        }],
        ..fast()
    })
    .await
    .unwrap();
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--num-requests", "3"]);
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3));
    assert!(stdout.contains("http_status 500: 3"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_writes_partial_results_and_exits_130() {
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--concurrency",
        "2",
        "--duration",
        "60s",
        "--output-tokens",
        "10",
    ]);
    cmd.args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    interrupt(&child);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(doc["interrupted"], true);
    let requests = &doc["summary"]["requests"];
    assert!(requests["ok"].as_u64().unwrap() > 5);
    assert_eq!(
        requests["failed"].as_u64(),
        Some(0),
        "the requests Ctrl-C stopped are no failures: {requests}"
    );
    assert_eq!(
        requests["ok"].as_u64().unwrap() + requests["interrupted"].as_u64().unwrap(),
        requests["sent"].as_u64().unwrap()
    );
    let lines = std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, requests["sent"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_live_diagnose_and_keeps_what_it_measured() {
    // Each answer streams for 20 s: the single-user probe is mid-request when Ctrl-C comes.
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let mut cmd = bin();
    cmd.args(["diagnose", "--url", &server.url(), "--budget", "60s"])
        .args(["--output-tokens", "200", "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().unwrap();
    while server.requests() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests(), 1, "the first probe request is in flight");
    tokio::time::sleep(Duration::from_millis(300)).await;
    interrupt(&child);
    let deadline = started + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("diagnose kept running after Ctrl-C");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: no diagnosis"), "{stderr}");
    let single = out.join("single");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(single.join("run.json")).unwrap()).unwrap();
    assert_eq!(doc["interrupted"], true);
    let requests = &doc["summary"]["requests"];
    assert_eq!(
        (
            requests["interrupted"].as_u64(),
            requests["failed"].as_u64()
        ),
        (Some(1), Some(0)),
        "the request cut short is no failure of the server: {requests}"
    );
    let lines = std::fs::read_to_string(single.join("requests.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, requests["sent"].as_u64().unwrap());
    assert!(!out.join("loaded").exists(), "no loaded probe after Ctrl-C");
    assert!(
        !out.join("diagnosis.json").exists(),
        "no findings from the interruption"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_finds_the_highest_rate_meeting_the_slo() {
    // Two slots, ~120 ms per request: saturation near 16 req/s; queueing grows as the rate approaches it. The
    // objective leaves 60 ms over a request's own time for a busy machine's timer slack and the little queueing
    // of a third of saturation, yet a queue at saturation still breaks it.
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(80),
        itl: Duration::from_millis(10),
        capacity: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--sweep",
        "--sweep-points",
        "3",
        "--concurrency",
        "8",
    ]);
    cmd.args([
        "--num-requests",
        "60",
        "--output-tokens",
        "4",
        "--slo",
        "e2e_p90=180ms",
        "--format",
        "json",
        "-q",
    ]);
    let output = run(cmd).await;
    let doc: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let sweep = &doc["sweep"];
    let saturation = sweep["saturation_rate"].as_f64().unwrap();
    assert!(
        saturation > 9.0 && saturation < 22.0,
        "saturation {saturation}"
    );
    let points = sweep["points"].as_array().unwrap();
    assert!(points.len() >= 3);
    let measured: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{:.1}/s: e2e p90 {} ms, from schedule {} ms",
                p["rate"].as_f64().unwrap_or(f64::NAN),
                p["summary"]["latency"]["e2e"]["p90"],
                p["summary"]["latency"]["e2e_from_schedule"]["p90"]
            )
        })
        .collect();
    let best = sweep["best_rate"].as_f64().unwrap_or_else(|| {
        panic!("a low rate meets a 180 ms E2E objective; saturation {saturation}/s, {measured:?}")
    });
    assert!(best < saturation, "best {best} vs saturation {saturation}");
    assert_eq!(
        points.last().unwrap()["slo_pass"],
        false,
        "at saturation the queue breaks the objective"
    );
}

/// The binary under a shell that sets its open-file limits first.
fn bin_with_open_files(soft: u32, hard: u32) -> Command {
    let mut cmd = Command::new("sh");
    cmd.env_remove("OPENAI_API_KEY").args([
        "-c",
        &format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_infer-doctor"),
    ]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_or_its_shortfall_named() {
    let server = MockServer::start(fast()).await.unwrap();
    let args = |cmd: &mut Command| {
        cmd.args(["bench", "--url", &server.url(), "--concurrency", "150"]);
        cmd.args(["--num-requests", "150", "--output-tokens", "2"]);
    };
    // A low soft limit under a roomy hard one is raised: every request gets its socket.
    let mut raised = bin_with_open_files(100, 4096);
    args(&mut raised);
    let output = run(raised).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("errors: 0 of 150"), "{stdout}");
    assert!(!stderr.contains("open files"), "{stderr}");
    // A hard limit too low for the concurrency is named before the run.
    let mut capped = bin_with_open_files(100, 100);
    args(&mut capped);
    let stderr = String::from_utf8_lossy(&run(capped).await.stderr).into_owned();
    assert!(
        stderr.contains(
            "150 requests in flight need about 214 open files but this process may open 100"
        ),
        "{stderr}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_the_trust_asked_for() {
    let server = MockServer::start_tls(
        fast(),
        Path::new(&fixture("fixtures/tls/server.pem")),
        Path::new(&fixture("fixtures/tls/server.key")),
    )
    .await
    .unwrap();
    let url = format!("https://127.0.0.1:{}/v1", server.addr.port());
    let bench = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["bench", "--url", &url, "--concurrency", "2"]);
        cmd.args(["--num-requests", "6", "--output-tokens", "3"]);
        cmd.args(extra);
        cmd
    };
    let ca = fixture("fixtures/tls/ca.pem");
    for extra in [
        vec!["--ca-cert", ca.as_str()],
        vec!["--ca-cert", ca.as_str(), "--http2"],
        vec!["--insecure"],
    ] {
        let output = run(bench(&extra)).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{extra:?}: {stdout}\n{stderr}"
        );
        assert!(stdout.contains("errors: 0 of 6"), "{extra:?}: {stdout}");
    }
    // The test CA is in no public root store: without it the handshake must fail, and say why.
    let output = run(bench(&["--model", "mock-model"])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "nothing succeeded: {stdout}");
    assert!(
        stdout.contains("TLS handshake with 127.0.0.1") && stdout.contains("UnknownIssuer"),
        "{stdout}"
    );
    let output = run(bench(&["--ca-cert", "Cargo.toml"])).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ca-cert Cargo.toml: no PEM certificate"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_diagnoses_a_kv_cache_too_small_for_its_crowd() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["demo", "--out", dir.path().to_str().unwrap()]);
    let started = std::time::Instant::now();
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let ttft_p50 = |probe: &str| {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(probe).join("run.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(doc["summary"]["requests"]["failed"], 0);
        doc["summary"]["latency"]["ttft"]["p50"].as_f64().unwrap()
    };
    let (alone, crowd) = (ttft_p50("single"), ttft_p50("loaded"));
    // Waiting for KV blocks, not prefill, makes the crowd's first token late.
    assert!(
        crowd > 20.0 * alone,
        "one user {alone} ms, crowd {crowd} ms"
    );
    let diagnosis: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("diagnosis.json")).unwrap())
            .unwrap();
    assert_eq!(
        diagnosis["diagnosis"]["findings"][0]["id"], "capacity.kv_saturated",
        "{diagnosis}"
    );
    let headline = diagnosis["diagnosis"]["headline"].as_str().unwrap();
    assert!(stdout.starts_with(headline), "{stdout}");
    assert!(dir.path().join("report.html").exists());
    // `report` renders the stored diagnosis again, in any format.
    let md = dir.path().join("again.md");
    let report = bin()
        .args([
            "report",
            dir.path().to_str().unwrap(),
            "--format",
            "md",
            "-o",
            md.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0));
    assert!(std::fs::read_to_string(&md).unwrap().contains(headline));
    // A bench run directory without a diagnosis is diagnosed when reported.
    let loaded = bin()
        .args([
            "report",
            dir.path().join("loaded").to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_eq!(
        doc["diagnosis"]["findings"][0]["id"],
        "capacity.kv_saturated"
    );

    let mut cmd = bin();
    cmd.args(["demo", "--scenario", "no-such-problem"]);
    let stderr = String::from_utf8_lossy(&run(cmd).await.stderr).into_owned();
    assert!(
        stderr.contains("--scenario `no-such-problem`: unknown; one of healthy, kv-saturated"),
        "{stderr}"
    );
}

/// Starts `infer-doctor sim` with `args` on a free port; returns the process (stderr piped, to read its log)
/// and the URL it printed.
async fn sim_process(args: &[&str]) -> (std::process::Child, String) {
    let mut cmd = bin();
    cmd.args(["sim", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line.trim().to_string()
    })
    .await
    .unwrap();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_serves_logs_like_vllm_and_stops_on_ctrl_c() {
    let trace = tempfile::NamedTempFile::new().unwrap();
    let (child, url) = sim_process(&[
        "--scenario",
        "batch-capped",
        "--trace",
        trace.path().to_str().unwrap(),
    ])
    .await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut bench = bin();
    bench.args([
        "bench",
        "--url",
        &url,
        "--concurrency",
        "6",
        "--num-requests",
        "6",
    ]);
    bench.args(["--output-tokens", "8", "--ignore-eos"]);
    let output = run(bench).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    interrupt(&child);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in [
        "'max_num_seqs': 4",
        "GPU KV cache size: ",
        "Maximum concurrency for 8,192 tokens per request: ",
        "Starting vLLM server on http://127.0.0.1:",
    ] {
        assert!(stderr.contains(line), "missing `{line}` in {stderr}");
    }
    // max-num-seqs 4 under 6 users: never more than 4 running at once, so some had to wait.
    let trace: Vec<Value> = std::fs::read_to_string(trace.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(trace.len(), 6);
    let time = |t: &Value, key: &str| t["times"][key].as_f64().unwrap();
    // The most requests in one state at once, a state running from `from` to `to`.
    let most = |from: &str, to: &str| {
        trace
            .iter()
            .map(|at| {
                let moment = time(at, from);
                trace
                    .iter()
                    .filter(|t| time(t, from) <= moment && moment < time(t, to))
                    .count()
            })
            .max()
            .unwrap()
    };
    assert!(most("arrived", "last_token") > 4, "{trace:?}");
    assert!(most("scheduled", "last_token") <= 4, "{trace:?}");
    assert!(
        trace
            .iter()
            .all(|t| t["token_times"].as_array().unwrap().len() == 8)
    );
}

#[test]
fn sim_run_simulates_a_workload_and_writes_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .args([
            "sim",
            "run",
            "--scenario",
            "preemption-storm",
            "--concurrency",
            "16",
        ])
        .args([
            "--num-requests",
            "64",
            "--format",
            "json",
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["requests"], 64);
    assert!(doc["preempted_requests"].as_u64().unwrap() > 0, "{doc}");
    let requests = std::fs::read_to_string(dir.path().join("requests.jsonl")).unwrap();
    assert_eq!(requests.lines().count(), 64);
    let metrics = std::fs::read_to_string(dir.path().join("metrics.prom")).unwrap();
    assert!(metrics.contains("# TYPE vllm:num_preemptions_total counter"));
    assert!(
        std::fs::read_to_string(dir.path().join("series.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 2
    );
    let bad = bin()
        .args(["sim", "run", "--gpu", "h100", "--model", "llama-3.1-70b"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("model does not fit"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_fault_flags_reach_the_client() {
    let (mut child, url) = sim_process(&[
        "--model",
        "tiny",
        "--gpu",
        "l4",
        "--max-model-len",
        "2048",
        "--error-rate",
        "1",
        "--error-status",
        "400",
    ])
    .await;
    let mut bench = bin();
    bench.args([
        "bench",
        "--url",
        &url,
        "--concurrency",
        "2",
        "--num-requests",
        "4",
    ]);
    let output = run(bench).await;
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("4 sent, 0 ok, 4 failed"), "{stdout}");
    assert!(
        stdout.contains("maximum context length is 2048 tokens"),
        "{stdout}"
    );

    let bad = bin()
        .args(["sim", "run", "--error-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--error-rate 1.5: must be between 0 and 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scrapes_the_servers_metrics_and_reports_its_view() {
    let (mut sim, url) = sim_process(&["--scenario", "kv-saturated"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bench = bin();
    bench.args([
        "bench",
        "--url",
        &url,
        "--concurrency",
        "24",
        "--num-requests",
        "48",
    ]);
    bench.args([
        "--scrape-interval",
        "200ms",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let output = run(bench).await;
    let _ = sim.kill();
    let _ = sim.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("server (vllm_v1):"), "{stdout}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap())
            .unwrap();
    let server = &doc["server"];
    assert_eq!(server["dialect"], "vllm_v1");
    // The server finished every request the client did, and its queue filled while the KV cache did.
    let finished = &server["counters"]["requests_finished"];
    assert_eq!(finished["increase"].as_f64().unwrap(), 48.0, "{server}");
    assert!(
        server["gauges"]["requests_waiting"]["max"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(server["gauges"]["kv_usage"]["max"].as_f64().unwrap() > 0.9);
    let scrapes = std::fs::read_to_string(dir.path().join("server_metrics.jsonl")).unwrap();
    assert_eq!(
        scrapes.lines().count() as u64,
        server["scrapes"].as_u64().unwrap()
    );
}

#[test]
fn metrics_show_diff_and_logs_read_real_captures() {
    let show = bin()
        .args([
            "metrics",
            "show",
            &fixture("fixtures/vllm_cpu/metrics_during_load.txt"),
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        show.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let doc: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(doc["gauges"]["requests_running"]["last"], 6.0);
    assert_eq!(doc["gauges"]["kv_capacity_tokens"]["last"], 262144.0);
    assert_eq!(doc["histograms"]["ttft"]["count"], 51.0);
    // vLLM's queue times are microseconds, all in its first bucket (0, 300 ms]: PromQL's median of 150 ms is an
    // artefact of interpolating from 0, so it is marked as only bounded, and the table prints the bound.
    let queue = &doc["histograms"]["queue_time"];
    assert_eq!(queue["p50"], 0.15);
    assert_eq!(queue["limits"]["p50"]["at_most"], 0.3);
    assert!(doc["histograms"]["ttft"].get("limits").is_none());
    let table = bin()
        .args([
            "metrics",
            "show",
            &fixture("fixtures/vllm_cpu/metrics_during_load.txt"),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    let queue_row = table.lines().find(|l| l.contains("queue_time")).unwrap();
    assert!(
        queue_row.contains("≤ 300") && !queue_row.contains("150"),
        "{table}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.prom"), dir.path().join("b.prom"));
    std::fs::write(
        &a,
        "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total 100\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total 400\n",
    )
    .unwrap();
    let diff = bin()
        .args([
            "metrics",
            "diff",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--interval",
            "10s",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(doc["counters"]["generation_tokens"]["increase"], 300.0);
    assert_eq!(doc["counters"]["generation_tokens"]["rate"], 30.0);

    let unknown = bin()
        .args([
            "metrics",
            "show",
            a.to_str().unwrap(),
            "--dialect",
            "nonsense",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("--dialect: unknown dialect `nonsense`")
    );

    let logs = bin()
        .args(["logs", &fixture("fixtures/vllm_cpu/startup_and_run.log")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    assert_eq!(logs.status.code(), Some(0));
    assert!(
        text.contains(
            "CPU KV cache 262,144 tokens, max concurrency 128.00x at 2,048 tokens per request"
        ),
        "{text}"
    );
    assert!(text.contains("stats: 6 lines; peak running 6"), "{text}");
    let missing = bin().args(["logs", "/nonexistent.log"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("reading /nonexistent.log"));
}

/// `infer-doctor` with `args`, its exit code, stdout and stderr.
fn run_plain(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 17: `bench … | head` ended in a panic, exit 101, once head had closed the pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_ends_quietly_with_the_run_directory_written() {
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let mut list = bin();
    list.args(["sim", "--list-scenarios"]).stdout(closed_pipe());
    let listed = run(list).await;
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert_eq!(listed.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut bench = bin();
    bench.args(["bench", "--url", &server.url(), "--num-requests", "5"]);
    bench.args(["--output-tokens", "2", "--out"]).arg(&out);
    bench.stdout(closed_pipe());
    let benched = run(bench).await;
    let stderr = String::from_utf8_lossy(&benched.stderr);
    assert_eq!(benched.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("run.json").is_file());
    let records = std::fs::read_to_string(out.join("requests.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 5);
}

/// Issue 11: a data-parallel vLLM scrape (`engine="0"`, `engine="1"`) showed KV usage 120%, a duplicated line
/// was added in silently, and the model went unnamed.
#[test]
fn metrics_show_averages_engines_kv_usage_names_a_duplicate_line_and_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let scrape = dir.path().join("dp2.prom");
    std::fs::write(
        &scrape,
        "# TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"Qwen/Qwen3-8B\"} 0.6\n\
         vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"Qwen/Qwen3-8B\"} 0.6\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{engine=\"0\",model_name=\"Qwen/Qwen3-8B\"} 5\n\
         vllm:num_requests_running{engine=\"1\",model_name=\"Qwen/Qwen3-8B\"} 7\n\
         vllm:num_requests_running{engine=\"1\",model_name=\"Qwen/Qwen3-8B\"} 7\n",
    )
    .unwrap();
    let path = scrape.to_str().unwrap();
    let (code, json, stderr) = run_plain(&["metrics", "show", path, "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["gauges"]["kv_usage"]["last"], 0.6);
    assert_eq!(doc["gauges"]["requests_running"]["last"], 12.0);
    assert_eq!(doc["models"], serde_json::json!(["Qwen/Qwen3-8B"]));
    assert!(
        stderr.contains("line 7: duplicate series") && stderr.contains("first on line 6"),
        "{stderr}"
    );
    let (_, table, _) = run_plain(&["metrics", "show", path]);
    assert!(table.starts_with("model: Qwen/Qwen3-8B\n"), "{table}");
}

/// Issue 11: `diagnose --metrics` with one scrape holding `vllm:num_preemptions_total` said the server "does
/// not export" it. A counter the scrape holds is read (its total since start); one it lacks is unknown.
#[test]
fn one_scrape_holding_the_preemption_counter_is_read_not_called_unexported() {
    let preemptions_check = |scrape: &str| {
        let (code, json, stderr) =
            run_plain(&["diagnose", "--metrics", scrape, "--format", "json"]);
        assert!(matches!(code, Some(0 | 1)), "{stderr}");
        let doc: Value = serde_json::from_str(&json).unwrap();
        let check = doc["diagnosis"]["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "no_preemptions")
            .cloned()
            .unwrap();
        let fired = doc["diagnosis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "capacity.preemptions");
        (check, fired)
    };
    let (check, fired) = preemptions_check(&fixture("fixtures/vllm_cpu/metrics_during_load.txt"));
    assert_eq!(check["status"], "pass", "{check}");
    assert!(!fired);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("0 preemptions since the server started"),
        "{check}"
    );

    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.prom");
    std::fs::write(
        &with,
        "# TYPE vllm:num_preemptions_total counter\n\
         vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 12\n",
    )
    .unwrap();
    let (check, fired) = preemptions_check(with.to_str().unwrap());
    assert!(fired, "{check}");
    let how = check["how_to_know"].as_str().unwrap();
    assert!(!how.contains("do not export"), "{check}");
    assert!(how.contains("second scrape"), "{check}");

    let without = dir.path().join("without.prom");
    std::fs::write(
        &without,
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 3\n",
    )
    .unwrap();
    let (check, fired) = preemptions_check(without.to_str().unwrap());
    assert_eq!(check["status"], "unknown");
    assert!(!fired);
    assert!(
        check["how_to_know"]
            .as_str()
            .unwrap()
            .contains("do not export preemptions"),
        "{check}"
    );
}

/// Issue 11: a KV cache held small by `--num-gpu-blocks-override` (a `vllm:cache_config_info` label) was met with
/// "buy more GPUs"; the override is the cause to name first.
#[test]
fn a_full_kv_cache_names_num_gpu_blocks_override_first_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let scrape = |override_blocks: &str| {
        let path = dir.path().join(format!("override_{override_blocks}.prom"));
        std::fs::write(
            &path,
            format!(
                "# TYPE vllm:kv_cache_usage_perc gauge\n\
                 vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} 0.97\n\
                 # TYPE vllm:num_requests_waiting gauge\n\
                 vllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} 6\n\
                 # TYPE vllm:cache_config_info gauge\n\
                 vllm:cache_config_info{{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"64\",\
                 num_gpu_blocks_override=\"{override_blocks}\"}} 1.0\n"
            ),
        )
        .unwrap();
        let (code, json, stderr) = run_plain(&[
            "diagnose",
            "--metrics",
            path.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        let doc: Value = serde_json::from_str(&json).unwrap();
        let finding = doc["diagnosis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "capacity.kv_saturated")
            .cloned()
            .unwrap();
        finding["remedies"][0].as_str().unwrap().to_string()
    };
    let first = scrape("64");
    assert!(
        first.contains("64 blocks by --num-gpu-blocks-override"),
        "{first}"
    );
    let unset = scrape("None");
    assert!(!unset.contains("override"), "{unset}");
}

/// Issue 11: a dcgm-exporter scrape showed an empty table and was no GPU evidence for `--gpu`.
#[test]
fn a_dcgm_exporter_scrape_is_gpu_state_for_gpu_and_metrics_show() {
    let dir = tempfile::tempdir().unwrap();
    let scrape = dir.path().join("dcgm.prom");
    let labels = "gpu=\"0\",UUID=\"GPU-604ac76c\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",\
                  modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"";
    std::fs::write(
        &scrape,
        format!(
            "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{{{labels}}} 88\n\
             # TYPE DCGM_FI_DEV_SM_CLOCK gauge\nDCGM_FI_DEV_SM_CLOCK{{{labels}}} 1410\n\
             # TYPE DCGM_FI_DEV_FB_USED gauge\nDCGM_FI_DEV_FB_USED{{{labels}}} 79054\n"
        ),
    )
    .unwrap();
    let path = scrape.to_str().unwrap();
    let (code, json, stderr) = run_plain(&["diagnose", "--gpu", path, "--format", "json"]);
    assert!(matches!(code, Some(0 | 1)), "{stderr}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let gpus = doc["evidence"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 1, "{doc}");
    assert_eq!(gpus[0]["temperature_c"], 88.0);
    assert_eq!(gpus[0]["source"], format!("{path} (dcgm-exporter)"));
    let (code, table, stderr) = run_plain(&["metrics", "show", path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        table.contains("GPU 00000000:18:00.0 NVIDIA H100 80GB HBM3")
            && table.contains("memory 79054 MiB")
            && table.contains("SM clock 1410 MHz"),
        "{table}"
    );
}

/// Issue 11: `sim run` with extreme fault parameters grew its samples with simulated time until memory ran
/// out; now simulated time is bounded and the error names the setting.
#[test]
fn sim_run_with_extreme_faults_stops_at_its_horizon_naming_the_setting() {
    let started = std::time::Instant::now();
    let (code, _, stderr) = run_plain(&["sim", "run", "--throttle", "1e12", "--num-requests", "5"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--throttle 1000000000000") && stderr.contains("0 of 5 requests"),
        "{stderr}"
    );
    let (code, _, stderr) = run_plain(&[
        "sim",
        "run",
        "--request-rate",
        "1e-9",
        "--num-requests",
        "3",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--request-rate"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_llamacpp_server_is_read_in_its_dialect_with_capacity_from_props_and_slots() {
    let server = MockServer::start(MockConfig {
        llamacpp_slots: Some(3),
        close_after_stream: true,
        itl: Duration::from_millis(20),
        ..fast()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--concurrency",
        "3",
        "--num-requests",
        "9",
    ]);
    cmd.args([
        "--output-tokens",
        "10",
        "--scrape-interval",
        "100ms",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap())
            .unwrap();
    let server_view = &doc["server"];
    assert_eq!(server_view["dialect"], "llamacpp", "{doc}");
    assert_eq!(server_view["gauges"]["kv_capacity_tokens"]["last"], 3072.0);
    assert!(
        server_view["gauges"]["requests_running"]["max"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert_eq!(doc["target"]["props"]["total_slots"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trtllm_serve_metrics_are_found_at_their_own_path() {
    let server = MockServer::start(MockConfig {
        trtllm: true,
        ..fast()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--concurrency",
        "2",
        "--num-requests",
        "20",
    ]);
    cmd.args([
        "--scrape-interval",
        "50ms",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(doc["server"]["dialect"], "trtllm_serve", "{doc}");
    assert_eq!(doc["server"]["gauges"]["kv_usage"]["last"], 0.25);
}

/// `diagnose` with these arguments: (exit code, the diagnosis JSON, stderr).
fn diagnose_offline(args: &[&str]) -> (Option<i32>, Value, String) {
    let output = bin()
        .args(["diagnose", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.code(),
        doc,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check_line<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no checklist line {id}"))
}

fn check(doc: &Value, id: &str) -> (String, Option<String>) {
    let line = check_line(doc, id);
    (
        line["status"].as_str().unwrap().to_string(),
        line["how_to_know"].as_str().map(str::to_string),
    )
}

#[test]
fn real_captures_give_the_findings_they_support_and_say_what_they_cannot() {
    let (code, doc, _) = diagnose_offline(&[
        "--metrics",
        &fixture("fixtures/vllm_cpu/metrics_during_load.txt"),
        "--log",
        &fixture("fixtures/vllm_cpu/startup_and_run.log"),
    ]);
    assert_eq!(code, Some(0), "{doc}");
    // The scrape shows 6 running, nothing waiting, KV nearly empty: those lines pass.
    for id in ["queue_empty", "kv_below_saturation"] {
        assert_eq!(check(&doc, id).0, "pass", "{id}");
    }
    // The V1 log's stats lines cannot say there were no preemptions, but the scrape's counter can: its total
    // since the server started is 0.
    let (status, _) = check(&doc, "no_preemptions");
    assert_eq!(status, "pass");
    assert!(
        check_line(&doc, "no_preemptions")["detail"]
            .as_str()
            .unwrap()
            .contains("since"),
        "{doc}"
    );
    // No client measurement: what needs one is unknown, and says how to get it.
    let (status, how) = check(&doc, "error_rate");
    assert_eq!(status, "unknown");
    assert!(how.unwrap().contains("diagnose --url"));
    assert_eq!(doc["evidence"]["log"]["kv_capacity_tokens"], 262144);

    let (code, doc, _) = diagnose_offline(&[
        "--metrics",
        &fixture("fixtures/llamacpp/metrics_during_load.txt"),
        "--log",
        &fixture("fixtures/llamacpp/llama_server.log"),
    ]);
    assert!(code == Some(0) || code == Some(1), "{doc}");
    assert_eq!(doc["evidence"]["server"]["dialect"], "llamacpp");
    // Two requests deferred by a full set of slots; llama.cpp publishes no KV usage.
    assert_eq!(check(&doc, "queue_empty").0, "fail");
    // Its metrics were read; asking to enable them would go in a circle, so the line says what is missing.
    let (status, how) = check(&doc, "kv_below_saturation");
    assert_eq!(status, "unknown");
    let how = how.unwrap();
    assert!(
        how.contains("llamacpp") && !how.contains("metrics enabled"),
        "{how}"
    );
}

#[test]
fn bad_evidence_is_named_and_what_remains_is_still_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    // A run killed while writing run.json: its request log still diagnoses.
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("run.json"), "{\"schema_version\": 1, \"tool\"").unwrap();
    let record = |id: u64, sent_ms: u64| {
        serde_json::json!({"id": id, "phase": "measured", "scheduled_us": sent_ms * 1000, "sent_us": sent_ms * 1000,
            "first_token_us": sent_ms * 1000 + 30_000, "last_token_us": sent_ms * 1000 + 330_000,
            "end_us": sent_ms * 1000 + 331_000, "streamed": true, "max_tokens": 31, "usage_output_tokens": 31,
            "token_events": 31, "finish_reason": "stop", "gaps_us": vec![10_000; 30]})
        .to_string()
    };
    let lines: Vec<String> = (0..20).map(|i| record(i, i * 100)).collect();
    // The last line cut mid-write is dropped, not an error.
    std::fs::write(
        run.join("requests.jsonl"),
        lines.join("\n") + "\n{\"id\": 20, \"pha",
    )
    .unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--bundle", run.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("run.json: not a run.json"), "{stderr}");
    assert_eq!(doc["evidence"]["client"]["requests"]["ok"], 20);

    // Scrapes out of time order: read in the order given, with a warning that rates need --interval.
    let (a, b) = (dir.path().join("a.prom"), dir.path().join("b.prom"));
    std::fs::copy(fixture("fixtures/vllm_cpu/metrics_during_load.txt"), &a).unwrap();
    std::fs::copy(fixture("fixtures/vllm_cpu/metrics_after_load.txt"), &b).unwrap();
    let older = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_modified(older)
        .unwrap();
    let (code, doc, stderr) =
        diagnose_offline(&["--metrics", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("rates need --interval"), "{stderr}");
    assert_eq!(doc["evidence"]["server"]["scrapes"], 2);

    let nothing = bin().args(["diagnose"]).output().unwrap();
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to diagnose"));
}

#[test]
fn thresholds_from_a_toml_file_change_the_verdict_and_bad_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = fixture("fixtures/llamacpp/metrics_during_load.txt");
    let queue = |doc: &Value| check(doc, "queue_empty").0;
    let (_, doc, _) = diagnose_offline(&["--metrics", &metrics]);
    assert_eq!(queue(&doc), "fail");
    // Allow a queue of up to 5 on average: two deferred requests no longer count.
    let lenient = dir.path().join("lenient.toml");
    std::fs::write(&lenient, "waiting_mean_nonempty = 5.0\n").unwrap();
    let (_, doc, _) = diagnose_offline(&[
        "--metrics",
        &metrics,
        "--thresholds",
        lenient.to_str().unwrap(),
    ]);
    assert_eq!(queue(&doc), "pass");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "# comment\nkv_saturatd = 0.8\n").unwrap();
    let (code, _, stderr) = diagnose_offline(&[
        "--metrics",
        &metrics,
        "--thresholds",
        typo.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("typo.toml") && stderr.contains("kv_saturatd") && stderr.contains("line 2"),
        "{stderr}"
    );
}

/// nvidia-smi captures join the evidence from `--gpu FILE` or a bundle's `gpu/`: a busy, healthy H100 passes
/// the three GPU lines; the same capture with a thermal slowdown active and the SM clock down is named, and the
/// capture also names the GPU for the hardware floors.
/// A vLLM log holding only its arguments line, started with `tensor_parallel_size`.
fn vllm_log_with_tensor_parallel(dir: &Path, size: u32) -> PathBuf {
    let log = dir.join("vllm.log");
    std::fs::write(
        &log,
        format!(
            "INFO 01-01 00:00:00 [api_server.py:1] non-default args: {{'model': 'm', 'tensor_parallel_size': {size}}}\n"
        ),
    )
    .unwrap();
    log
}

/// `dcgmi diag` saved on the GPU host, as its table or as JSON, is told apart by content and judged.
#[test]
fn a_saved_dcgmi_diag_is_read_from_gpu_and_judged() {
    let table = fixture("fixtures/gpu/dcgmi_diag_r1_table_fail.txt");
    let (_, doc, stderr) = diagnose_offline(&["--gpu", &table]);
    assert_eq!(check(&doc, "gpu_dcgm_diag_pass").0, "fail", "{stderr}");
    let passing = fixture("fixtures/gpu/dcgmi_diag_r1_3x_pass.json");
    let (code, doc, stderr) = diagnose_offline(&["--gpu", &passing]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(check(&doc, "gpu_dcgm_diag_pass").0, "pass", "{doc}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("dcgmi-diag.txt");
    std::fs::write(&broken, "| Diagnostic | Result |\n| Memory | Perhaps |\n").unwrap();
    let (code, _, stderr) = diagnose_offline(&["--gpu", broken.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("dcgmi-diag.txt") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn topology_and_nvlink_captures_are_read_from_gpu_and_judged() {
    // The real H100's `topo -m` and `nvlink -s`: one GPU, 18 links up.
    let topo = fixture("fixtures/gpu/h100_topo_m.txt");
    let nvlink = fixture("fixtures/gpu/h100_nvlink_s.txt");
    let (code, doc, stderr) = diagnose_offline(&["--gpu", &topo, "--gpu", &nvlink]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(doc["evidence"]["topology"]["gpus"][0]["numa_node"], 0);
    let line = check_line(&doc, "gpu_nvlink_up");
    assert_eq!(line["status"], "pass");
    assert_eq!(line["detail"], "18 NVLinks up at 26.562 GB/s on 1 GPU");
    // Without the server's tensor-parallel size the group cannot be judged, and the line says what to pass.
    assert_eq!(check(&doc, "gpu_tp_on_nvlink").0, "unknown", "{doc}");

    // A link down, and a PCIe-only pair of GPUs serving one tensor-parallel group of 2.
    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("nvlink.txt");
    let text = std::fs::read_to_string(&nvlink).unwrap();
    std::fs::write(
        &down,
        text.replacen("Link 7: 26.562 GB/s", "Link 7: <inactive>", 1),
    )
    .unwrap();
    let pair = dir.path().join("topo.txt");
    std::fs::write(
        &pair,
        "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\nGPU0\t X \tSYS\t0-7\t0\nGPU1\tSYS\t X \t8-15\t1\n",
    )
    .unwrap();
    let log = vllm_log_with_tensor_parallel(dir.path(), 2);
    let (code, doc, stderr) = diagnose_offline(&[
        "--gpu",
        down.to_str().unwrap(),
        "--gpu",
        pair.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let ids: Vec<&str> = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"hardware.nvlink_degraded"), "{ids:?}");
    assert!(ids.contains(&"hardware.tp_over_pcie"), "{ids:?} {doc}");
}

#[test]
fn nvlink_error_counters_given_before_and_after_are_a_window() {
    // The real H100's `nvlink -e` as the reading before, and again with link 17's CRC errors grown as the one after.
    let before = fixture("fixtures/gpu/h100_nvlink_e.txt");
    let dir = tempfile::tempdir().unwrap();
    let after = dir.path().join("counters.txt");
    let text = std::fs::read_to_string(&before).unwrap();
    std::fs::write(
        &after,
        text.replacen("Link 17: CRC Errors: 0", "Link 17: CRC Errors: 40", 1),
    )
    .unwrap();
    let (code, doc, stderr) =
        diagnose_offline(&["--gpu", &before, "--gpu", after.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = check_line(&doc, "gpu_nvlink_up");
    assert_eq!(line["status"], "fail", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains("GPU 0 link 17 CRC Errors +40"),
        "{line}"
    );
    // The same reading twice: nothing grew.
    let (code, doc, stderr) = diagnose_offline(&["--gpu", &before, "--gpu", &before]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        check_line(&doc, "gpu_nvlink_up")["detail"],
        "9 NVLink error counters unchanged over the probe"
    );
}

#[test]
fn a_pasted_collect_env_is_evidence_and_its_secrets_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("collect_env.txt");
    std::fs::write(
        &env,
        "Collecting environment information...\n\
         ==============================\n       PyTorch Info\n==============================\n\
         PyTorch version              : 2.9.1+cu129\n\
         GPU models and configuration :\nGPU 0: NVIDIA L40S\nGPU 1: NVIDIA L40S\n\n\
         ==============================\n         vLLM Info\n==============================\n\
         vLLM Version                 : 0.16.0\nGPU Topology:\n\
         \x20 \tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n\
         GPU0\t X \tSYS\t0-31\t0\t\tN/A\nGPU1\tSYS\t X \t32-63\t1\t\tN/A\n\nLegend:\n\n\
         ==============================\n     Environment Variables\n==============================\n\
         CUDA_VISIBLE_DEVICES=0,1\nHF_TOKEN=hf_plantedsecret\n",
    )
    .unwrap();
    let log = vllm_log_with_tensor_parallel(dir.path(), 2);
    let (code, doc, stderr) = diagnose_offline(&[
        "--env",
        env.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let environment = &doc["evidence"]["environment"];
    assert_eq!(environment["vllm_version"], "0.16.0");
    assert_eq!(environment["variables"]["HF_TOKEN"], "***");
    assert!(!doc.to_string().contains("hf_plantedsecret"));
    let finding = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "hardware.tp_over_pcie")
        .unwrap_or_else(|| panic!("{doc}"));
    // No NVLink pair on this host: whichever GPUs the server uses, the group meets over PCIe.
    assert_eq!(finding["confidence"], "high", "{finding}");

    // Not collect-env output: an error naming the file.
    let (code, _, stderr) = diagnose_offline(&["--env", log.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("vllm.log: not `vllm collect-env` output"),
        "{stderr}"
    );
}

#[test]
fn a_bundles_server_environment_names_the_tensor_parallel_group() {
    // What `collect --pid` writes: the server's engine environment, and its GPUs' topology.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    for sub in ["env", "gpu", "logs"] {
        std::fs::create_dir_all(bundle.join(sub)).unwrap();
    }
    std::fs::write(
        bundle.join("env/server.env"),
        "CUDA_VISIBLE_DEVICES=1,2\nNCCL_DEBUG=WARN\nHF_TOKEN=hf_notredactedbyhand\n",
    )
    .unwrap();
    std::fs::write(
        bundle.join("gpu/topo.txt"),
        "\tGPU0\tGPU1\tGPU2\tCPU Affinity\tNUMA Affinity\n\
         GPU0\t X \tNV12\tSYS\t0-7\t0\nGPU1\tNV12\t X \tSYS\t0-7\t0\nGPU2\tSYS\tSYS\t X \t8-15\t1\n",
    )
    .unwrap();
    let log = vllm_log_with_tensor_parallel(&bundle.join("logs"), 2);
    assert!(log.is_file());
    let (code, doc, stderr) = diagnose_offline(&["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let variables = &doc["evidence"]["environment"]["variables"];
    assert_eq!(variables["CUDA_VISIBLE_DEVICES"], "1,2");
    assert_eq!(variables["HF_TOKEN"], "***");
    // GPUs 1 and 2 meet over SYS, though GPUs 0 and 1 have NVLink: the environment names the group.
    let finding = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "hardware.tp_over_pcie")
        .unwrap_or_else(|| panic!("{doc}"));
    assert!(
        finding["verdict"]
            .as_str()
            .unwrap()
            .contains("GPU1, GPU2, by CUDA_VISIBLE_DEVICES"),
        "{finding}"
    );
}

#[test]
fn gpu_captures_are_judged_and_name_the_gpu_for_the_floors() {
    let healthy = fixture("fixtures/gpu/h100_load_q.txt");
    let (code, doc, stderr) = diagnose_offline(&["--gpu", &healthy]);
    assert_eq!(code, Some(0), "{stderr}");
    for id in ["gpu_memory_healthy", "gpu_clocks_full", "gpu_link_full"] {
        assert_eq!(check(&doc, id).0, "pass", "{id}: {doc}");
    }
    assert_eq!(doc["evidence"]["gpus"][0]["name"], "NVIDIA H100 80GB HBM3");

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&healthy).unwrap();
    let hot = text
        .replacen(
            "            HW Thermal Slowdown                        : Not Active",
            "            HW Thermal Slowdown                        : Active",
            1,
        )
        .replacen(
            "        SM                                             : 1980 MHz",
            "        SM                                             : 1410 MHz",
            1,
        );
    assert_ne!(hot, text);
    let gpu_dir = dir.path().join("bundle/gpu");
    std::fs::create_dir_all(&gpu_dir).unwrap();
    std::fs::write(gpu_dir.join("nvidia-smi-q.txt"), &hot).unwrap();
    std::fs::write(gpu_dir.join("notes.txt"), "taken at 14:02\n").unwrap();
    let bundle = dir.path().join("bundle");
    let (code, doc, stderr) = diagnose_offline(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--model-config",
        "llama-3.1-8b",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let finding = &doc["diagnosis"]["findings"][0];
    assert_eq!(finding["id"], "hardware.clock_slowdown", "{doc}");
    assert_eq!(
        finding["verdict"],
        "clocks held down by hw_thermal_slowdown (SM 1410 of 1980 MHz)"
    );
    assert_eq!(doc["evidence"]["hardware"]["gpu"], "h100-sxm");
    // What is not nvidia-smi output is named, with the reason, and the rest is still read.
    assert!(
        stderr.contains("notes.txt: not nvidia-smi output"),
        "{stderr}"
    );

    // A GPU split by MIG gets no whole-GPU floors: said, and the rest is diagnosed.
    let mig = fixture("fixtures/gpu/a100_sxm4_mig_v12.xml");
    let (code, doc, stderr) = diagnose_offline(&["--gpu", &mig, "--model-config", "llama-3.1-8b"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("runs in MIG mode"), "{stderr}");
    assert!(doc["evidence"].get("hardware").is_none());

    // A name that is neither a file nor of use without --model-config is an error that says so.
    let (code, _, stderr) = diagnose_offline(&["--gpu", "/no/such/q.txt"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--gpu /no/such/q.txt: not a file"),
        "{stderr}"
    );
}

/// A kernel log given as `--log` (or among `--gpu` files) adds the driver's XIDs: a GPU that fell off the bus
/// is critical (exit 1); a clean kernel log passes the line and names itself.
#[test]
fn kernel_logs_bring_their_xids() {
    let dir = tempfile::tempdir().unwrap();
    let dmesg = dir.path().join("dmesg.txt");
    std::fs::write(
        &dmesg,
        "[    3.100000] nvidia: loading out-of-tree module taints kernel.\n\
         [ 1843.308145] NVRM: Xid (PCI:0000:b3:00): 79, pid=2231, GPU has fallen off the bus.\n",
    )
    .unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--log", dmesg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    let finding = &doc["diagnosis"]["findings"][0];
    assert_eq!(finding["id"], "hardware.xid_errors");
    assert_eq!(finding["severity"], "critical");
    assert_eq!(
        finding["verdict"],
        "XID 79 on 0000:b3:00 (pid=2231, GPU has fallen off the bus.)"
    );
    assert!(!stderr.contains("no vLLM"), "{stderr}");
    // `logs` reads it too.
    let logs = bin()
        .args(["logs", dmesg.to_str().unwrap()])
        .output()
        .unwrap();
    let logs = String::from_utf8(logs.stdout).unwrap();
    assert!(
        logs.contains("kernel log, GPU XID errors") && logs.contains("XID 79 on 0000:b3:00 ×1"),
        "{logs}"
    );

    let clean = dir.path().join("kernel.log");
    std::fs::write(
        &clean,
        "Feb 14 05:03:41 gpu-1 kernel: mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link ACTIVE\n",
    )
    .unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--gpu", clean.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = check_line(&doc, "gpu_no_xid");
    assert_eq!(line["status"], "pass");
    assert!(line["detail"].as_str().unwrap().contains("kernel.log"));
    assert_eq!(check_line(&doc, "host_no_oom_kill")["status"], "pass");
    assert_eq!(check_line(&doc, "host_no_hung_task")["status"], "pass");
}

/// The OOM killer taking vLLM's engine process, read from a journalctl kernel log, is a critical finding that
/// names the process; `logs` lists the kill and a hung task beside it.
#[test]
fn a_kernel_log_tells_of_the_oom_killer_and_hung_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("kernel.log");
    std::fs::write(
        &journal,
        "Jul 14 08:12:50 gpu-1 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=c1,mems_allowed=0,\
         oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=VLLM::EngineCor,pid=4242,uid=0\n\
         Jul 14 08:12:50 gpu-1 kernel: Memory cgroup out of memory: Killed process 4242 (VLLM::EngineCor) \
         total-vm:90000000kB, anon-rss:33554432kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1000kB oom_score_adj:999\n\
         Jul 14 08:20:01 gpu-1 kernel: INFO: task jbd2/nvme0n1p1-:812 blocked for more than 122 seconds.\n",
    )
    .unwrap();
    // The same lines in a second log of the host (/var/log/kern.log, among the --gpu files, beside journalctl -k)
    // count once.
    let kern = dir.path().join("kern.log");
    std::fs::copy(&journal, &kern).unwrap();
    let (code, doc, stderr) = diagnose_offline(&[
        "--log",
        journal.to_str().unwrap(),
        "--gpu",
        kern.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let findings = doc["diagnosis"]["findings"].as_array().unwrap();
    let oom = findings
        .iter()
        .find(|f| f["id"] == "host.oom_killed")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(oom["severity"], "critical");
    assert_eq!(
        oom["verdict"],
        format!(
            "VLLM::EngineCor (pid 4242) killed at 32.0 GiB resident when a cgroup's memory limit ran out ({}:2)",
            journal.display()
        )
    );
    let hung = findings
        .iter()
        .find(|f| f["id"] == "host.hung_tasks")
        .unwrap();
    assert_eq!(hung["severity"], "warning");
    let logs = bin()
        .args(["logs", journal.to_str().unwrap()])
        .output()
        .unwrap();
    let logs = String::from_utf8(logs.stdout).unwrap();
    assert!(
        logs.contains("OOM killer (a cgroup's memory limit) killed VLLM::EngineCor (pid 4242), 32.0 GiB resident")
            && logs.contains("hung task jbd2/nvme0n1p1- (pid 812) blocked over 122 s ×1"),
        "{logs}"
    );
}

/// Scrapes of the simulated vLLM server's `/metrics` every half second while `users` users load it, as a
/// scraper in front of the real server would take them.
fn simulated_scrapes(scenario: &str, users: u32) -> Vec<String> {
    use infer_doctor_sim::des;
    let scenario = infer_doctor_sim::scenario::find(scenario).unwrap();
    let mut built = (scenario.setup)().build().unwrap();
    let block_size = built.scheduler.block_size;
    let w = scenario.workload;
    let mut texts = Vec::new();
    des::run_observed(
        &mut built.core,
        &des::Arrivals::Closed {
            users,
            requests: 3 * u64::from(users),
        },
        |id| {
            des::synthetic_request(
                id,
                w.prefix_tokens + w.input_tokens,
                (w.prefix_tokens, w.prefix_groups),
                w.output_tokens,
                None,
                block_size,
            )
        },
        0.5,
        120.0,
        false,
        |_, core| texts.push(core.metrics.render()),
    );
    texts
}

/// Writes `texts` as scrape files that all carry one modification time, as a copy, an untar or a checkout leaves them.
fn same_mtime_files(dir: &Path, texts: &[&String]) -> Vec<String> {
    let when = std::time::SystemTime::now() - Duration::from_secs(60);
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            // Named so that their names sort against the order given: argument order must win.
            let path = dir.join(format!("scrape-{}.prom", texts.len() - i));
            std::fs::write(&path, text).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            path.display().to_string()
        })
        .collect()
}

#[test]
fn metrics_files_sharing_a_modification_time_are_not_collapsed_to_the_first_scrape() {
    let scrapes = simulated_scrapes("preemption-storm", 32);
    assert!(scrapes.len() >= 8, "{} scrapes", scrapes.len());
    // The first scrape is of a server at rest; the later ones of one preempting under load.
    let picked = [
        &scrapes[0],
        &scrapes[scrapes.len() / 2],
        &scrapes[scrapes.len() - 2],
    ];
    let dir = tempfile::tempdir().unwrap();
    let files = same_mtime_files(dir.path(), &picked);
    let mut args = vec!["--metrics"];
    args.extend(files.iter().map(String::as_str));
    let (code, doc, stderr) = diagnose_offline(&args);
    assert!(code == Some(0) || code == Some(1), "{stderr}");
    assert!(stderr.contains("rates need --interval"), "{stderr}");
    let server = &doc["evidence"]["server"];
    assert_eq!(server["scrapes"], 3, "{server}");
    assert_eq!(server["no_clock"], true);
    let preemptions = server["counters"]["preemptions"]["increase"]
        .as_f64()
        .unwrap();
    assert!(preemptions > 0.0, "{server}");
    // No clock, no rate: the increase stands without one.
    assert!(
        server["counters"]["preemptions"]["rate"].is_null(),
        "{server}"
    );
    assert!(
        server["gauges"]["kv_usage"]["max"].as_f64().unwrap() > 0.8,
        "{server}"
    );
    let headline = doc["diagnosis"]["headline"].as_str().unwrap();
    assert!(!headline.starts_with("No problem found"), "{headline}");
    let ids: Vec<&str> = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"capacity.preemptions"), "{ids:?}");
    // A rule that needs the clock stays silent rather than inventing one.
    assert_ne!(check(&doc, "littles_law").0, "fail");

    // With the interval given in plain seconds, as the help says, the rates are known.
    let mut timed = args.clone();
    timed.extend(["--interval", "4"]);
    let (_, doc, stderr) = diagnose_offline(&timed);
    assert!(!stderr.contains("rates need --interval"), "{stderr}");
    let rate = doc["evidence"]["server"]["counters"]["preemptions"]["rate"]
        .as_f64()
        .unwrap();
    assert!((rate - preemptions / 8.0).abs() < 1e-9, "{rate}");
    // An interval of nothing is no window: refused, not a silently empty server view.
    let mut zero = args.clone();
    zero.extend(["--interval", "0"]);
    let (code, _, stderr) = diagnose_offline(&zero);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--interval 0"), "{stderr}");

    // `metrics diff` prints every delta between them, and says what it cannot rate.
    let diff = bin()
        .args(["metrics", "diff", &files[0], &files[2], "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(String::from_utf8_lossy(&diff.stderr).contains("rates need --interval"));
    let window: Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(window["counters"]["preemptions"]["increase"], preemptions);
    assert!(
        window["counters"]["generation_tokens"]["increase"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn missing_empty_or_unreadable_evidence_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.prom");
    std::fs::write(&empty, "").unwrap();
    let node = dir.path().join("node.prom");
    std::fs::write(&node, "up 1\n").unwrap();
    let missing = dir.path().join("missing.log");
    let prose = dir.path().join("notes.log");
    std::fs::write(&prose, "the server felt slow on tuesday\n").unwrap();
    let empty_gpu = dir.path().join("smi.txt");
    std::fs::write(&empty_gpu, "\n").unwrap();
    let empty_requests = dir.path().join("requests.jsonl");
    std::fs::write(&empty_requests, "").unwrap();
    let metrics = fixture("fixtures/vllm_cpu/metrics_during_load.txt");
    for (args, named) in [
        (vec!["--metrics", empty.to_str().unwrap()], "empty.prom"),
        (
            vec!["--metrics", &metrics, node.to_str().unwrap()],
            "node.prom",
        ),
        (
            vec!["--metrics", &metrics, "--log", missing.to_str().unwrap()],
            "missing.log",
        ),
        (vec!["--log", prose.to_str().unwrap()], "notes.log"),
        (
            vec!["--metrics", &metrics, "--gpu", empty_gpu.to_str().unwrap()],
            "smi.txt",
        ),
        (
            vec!["--requests", empty_requests.to_str().unwrap()],
            "requests.jsonl",
        ),
    ] {
        let (code, doc, stderr) = diagnose_offline(&args);
        assert_eq!(code, Some(2), "{args:?}: {doc}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(doc.is_null(), "{args:?}: no diagnosis from unread evidence");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_line_in_a_bundles_requests_keeps_the_rest_and_the_report_says_so() {
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--concurrency", "2"])
        .args(["--num-requests", "30", "--output-tokens", "5", "--quiet"])
        .args(["--out", run_dir.to_str().unwrap()]);
    let output = run(cmd).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(run_dir.join("requests.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 30);
    lines[17] = "{\"id\": 17, \"phase\": garbage}";
    std::fs::write(run_dir.join("requests.jsonl"), lines.join("\n") + "\n").unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--bundle", run_dir.to_str().unwrap()]);
    assert!(code == Some(0) || code == Some(1), "{stderr}");
    assert_eq!(doc["evidence"]["requests"].as_array().unwrap().len(), 29);
    let warning = doc["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("requests.jsonl") && warning.contains("line 18"),
        "{doc}"
    );
    for format in ["term", "md", "html"] {
        let out = bin()
            .args(["report", run_dir.to_str().unwrap(), "--format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("line 18"),
            "{format}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_run_with_prefix_tokens_reaches_the_playbook_as_shared_prefixes() {
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["bench", "--url", &server.url(), "--concurrency", "2"])
        .args(["--num-requests", "6", "--output-tokens", "4", "--quiet"])
        .args(["--prefix-tokens", "64", "--prefix-groups", "2"])
        .args(["--out", run_dir.to_str().unwrap()]);
    let output = run(cmd).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, doc, stderr) = diagnose_offline(&["--bundle", run_dir.to_str().unwrap()]);
    assert_eq!(doc["evidence"]["shared_prefixes"], true, "{stderr}");
    let (status, _) = check(&doc, "prefix_cache_hitting");
    // The mock exports no prefix-cache counters: unknown, never "the workload shares no prefixes".
    assert_eq!(status, "unknown", "{doc}");
}

/// A vLLM V1 engine that ran out of memory mid-run (vllm issue #27508's traceback, under the
/// `(EngineCore_DP0 pid=…)` tags that alone say vLLM), its stats lines from before 2025-11 without a
/// preemption field.
const OOM_LOG: &str = "\
(APIServer pid=1) INFO 05-01 14:38:55 [loggers.py:271] Engine 000: Avg prompt throughput: 812.0 tokens/s, Avg generation throughput: 96.4 tokens/s, Running: 12 reqs, Waiting: 3 reqs, GPU KV cache usage: 71.5%, Prefix cache hit rate: 12.0%
(EngineCore_DP0 pid=8884) Process EngineCore_DP0:
(EngineCore_DP0 pid=8884) Traceback (most recent call last):
(EngineCore_DP0 pid=8884)   File \"/opt/conda/lib/python3.13/site-packages/vllm/v1/sample/sampler.py\", line 86, in forward
(EngineCore_DP0 pid=8884)     logits = logits.to(torch.float32)
(EngineCore_DP0 pid=8884) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 140.75 MiB is free.
(APIServer pid=1) ERROR 05-01 14:39:06 [async_llm.py:699] AsyncLLM output_handler failed.
(APIServer pid=1) ERROR 05-01 14:39:06 [async_llm.py:699] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.
";

#[test]
fn diagnose_log_with_an_out_of_memory_crash_is_critical_and_claims_no_preemption_count() {
    // Regression: the OOM traceback gave no finding, and the stats lines' silence passed "no preemptions".
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vllm.log");
    std::fs::write(&log, OOM_LOG).unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--log", log.to_str().unwrap()]);
    assert_eq!(code, Some(1), "a critical finding: {stderr}");
    assert_eq!(doc["evidence"]["log"]["server"], "vllm");
    let findings = doc["diagnosis"]["findings"].as_array().unwrap();
    let oom = findings
        .iter()
        .find(|f| f["id"] == "engine.out_of_memory")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(oom["severity"], "critical");
    let verdict = oom["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("line 6: torch.OutOfMemoryError: CUDA out of memory."),
        "{verdict}"
    );
    let dead = findings
        .iter()
        .find(|f| f["id"] == "engine.fatal_error")
        .expect("the API server's EngineDeadError");
    assert!(dead["verdict"].as_str().unwrap().contains("line 8:"));
    assert_eq!(check(&doc, "engine_ran_clean").0, "fail");
    assert_eq!(check(&doc, "no_preemptions").0, "unknown");

    let logs = bin()
        .args(["logs", log.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("preemptions not reported"), "{text}");
    assert!(
        text.contains("line 6: OutOfMemory: torch.OutOfMemoryError"),
        "{text}"
    );

    // The real run's EngineDeadError is printed while it shuts down: no failure.
    let (code, doc, _) =
        diagnose_offline(&["--log", &fixture("fixtures/vllm_cpu/startup_and_run.log")]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(check(&doc, "engine_ran_clean").0, "pass");
}

#[test]
fn diagnose_says_when_the_metrics_and_the_log_are_from_different_servers() {
    // Regression: a llama.cpp scrape and a vLLM log were mixed without a word.
    let (_, doc, stderr) = diagnose_offline(&[
        "--metrics",
        &fixture("fixtures/llamacpp/metrics_during_load.txt"),
        "--log",
        &fixture("fixtures/vllm_cpu/startup_and_run.log"),
    ]);
    let findings = doc["diagnosis"]["findings"].as_array().expect(&stderr);
    let found = findings
        .iter()
        .find(|f| f["id"] == "consistency.sources_disagree")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    let verdict = found["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("llamacpp") && verdict.contains("engine log (vllm)"),
        "{verdict}"
    );
    // The same server's scrape and log agree.
    let (_, doc, _) = diagnose_offline(&[
        "--metrics",
        &fixture("fixtures/vllm_cpu/metrics_during_load.txt"),
        "--log",
        &fixture("fixtures/vllm_cpu/startup_and_run.log"),
    ]);
    let findings = doc["diagnosis"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .all(|f| f["id"] != "consistency.sources_disagree"),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_run_directory_is_diagnosed_at_one_point_not_pooled() {
    let server = MockServer::start(fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("sweep");
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        &server.url(),
        "--sweep",
        "--sweep-points",
        "2",
    ])
    .args([
        "--concurrency",
        "4",
        "--num-requests",
        "24",
        "--output-tokens",
        "4",
    ])
    .args(["-q", "--out", run_dir.to_str().unwrap()]);
    let output = run(cmd).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let all = std::fs::read_to_string(run_dir.join("requests.jsonl")).unwrap();
    // The saturation run and two rates: three loads in one file.
    assert_eq!(all.lines().count(), 72);
    let (_, doc, stderr) = diagnose_offline(&["--bundle", run_dir.to_str().unwrap()]);
    let ids: Vec<u64> = doc["evidence"]["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("{stderr}"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 24, "{stderr}");
    // The highest rate measured: the last point, ids in its own block.
    assert!(ids.iter().all(|id| id / 1_000_000_000 == 2), "{ids:?}");
    assert!(stderr.contains("a sweep; diagnosing the load"), "{stderr}");
}

/// The highest peak RSS (`VmHWM`) seen in the processes `child` starts while it runs (its own children, by their
/// parent pid in `/proc/<pid>/stat`).
fn children_peak_rss_while_running(child: &mut std::process::Child, limit: Duration) -> u64 {
    let started = std::time::Instant::now();
    let parent = child.id().to_string();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the self-test ran past {limit:?}");
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The parent pid is the second field after the parenthesised command name.
            let ppid = stat
                .rfind(')')
                .and_then(|end| stat[end + 2..].split_whitespace().nth(1));
            if ppid == Some(parent.as_str()) {
                peak = peak.max(infer_doctor_load::cpu::peak_rss_bytes_of(&pid).unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

#[test]
fn self_test_prints_the_real_peak_rss_and_says_each_missed_target() {
    // Regression: peak RSS was read before the 1,000-stream runs that raise it, and a TTFT error p99 of 1.4 ms
    // was printed beside a 0.5 ms target without a word. The user's run is a bench process of its own: its peak
    // is what this test sees in the self-test's children, not the self-test's own (which holds the servers).
    let mut child = bin()
        .args([
            "bench",
            "--self-test",
            "--self-test-duration",
            "1s",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen_peak = children_peak_rss_while_running(&mut child, Duration::from_secs(300));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("peak RSS"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let printed_mb: f64 = rss_line
        .split(": ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{rss_line}"));
    // The printed peak is the bench process's own high-water mark, so no reading from outside is above it; the
    // kernel's RSS counters are per-CPU approximations and teardown still allocates, hence a little slack.
    let seen_mb = seen_peak as f64 / 1e6;
    // A bench child was seen at all: an in-process user's run would pass the comparison below with nothing read.
    assert!(seen_mb > 1.0, "no bench child process was seen\n{stdout}");
    assert!(
        printed_mb >= 0.95 * seen_mb,
        "printed {printed_mb} MB, /proc showed {seen_mb} MB in the self-test's bench processes\n{stdout}"
    );
    // Every figure with a target is marked, and each miss is said in words and counted.
    let marked: Vec<&str> = stdout.lines().filter(|l| l.contains(", target ")).collect();
    assert!(marked.len() >= 6, "{stdout}");
    assert!(
        marked
            .iter()
            .all(|l| l.contains("[pass, target") || l.contains("[MISS, target")),
        "{stdout}"
    );
    let marked_misses = marked.iter().filter(|l| l.contains("[MISS")).count();
    let said_misses = stdout.lines().filter(|l| l.starts_with("MISS: ")).count();
    assert_eq!(marked_misses, said_misses, "{stdout}");
    let verdict = stdout.lines().last().unwrap_or_default();
    if said_misses == 0 {
        assert!(
            verdict.starts_with("all ") && verdict.contains("met"),
            "{stdout}"
        );
    } else {
        assert_eq!(
            verdict,
            format!(
                "{said_misses} of {} figures missed their targets",
                marked.len()
            ),
            "{stdout}"
        );
    }
}

/// A bundle's `host.json` (what `collect` reads from /proc and /sys on the GPU host) joins the evidence offline:
/// swap in use under memory pressure and cores on the powersave governor are findings; a corrupt host.json is
/// an error naming it.
#[test]
fn a_bundles_host_facts_give_the_host_findings() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let host = r#"{
        "source": "/",
        "kernel": "6.8.0-51-generic",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "logical_cores": 4,
        "governors": {"0": "performance", "1": "powersave", "2": "powersave", "3": "performance"},
        "memory_total_bytes": 2164663517184,
        "swap_total_bytes": 8589934592,
        "swap_used_bytes": 3221225472,
        "pressure": {"memory": {"some_avg10": 4.2, "some_avg60": 1.9}},
        "cgroup": {"path": "/", "nr_periods": 0, "nr_throttled": 0}
    }"#;
    std::fs::write(bundle.join("host.json"), host).unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let findings = doc["diagnosis"]["findings"].as_array().unwrap();
    let found = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {doc}"))
    };
    let swap = found("host.swap_active");
    assert_eq!(swap["severity"], "warning");
    assert_eq!(
        swap["verdict"],
        "3072 MiB of swap in use of 8192 MiB; tasks stalled on memory 4.20% of the last 10 s"
    );
    let governor = found("host.cpu_governor");
    assert_eq!(governor["verdict"], "powersave on 2 of 4 cores");
    assert_eq!(check(&doc, "host_no_swap").0, "fail");
    assert_eq!(check(&doc, "host_cpu_performance").0, "fail");
    assert_eq!(check(&doc, "host_cpu_not_throttled").0, "pass");
    // No GPU node or server process in these facts: said, with how to get them.
    let (status, how) = check(&doc, "host_numa_local");
    assert_eq!(status, "unknown");
    assert!(how.is_some_and(|how| how.contains("collect")));
    assert_eq!(
        doc["evidence"]["host"]["cpu_model"],
        "Intel(R) Xeon(R) Platinum 8480+"
    );

    std::fs::write(bundle.join("host.json"), "{\"swap_used_bytes\": \"lots\"}").unwrap();
    let (code, _, stderr) = diagnose_offline(&["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("host.json") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn a_log_whose_arguments_enforce_eager_gives_the_config_finding() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vllm.log");
    std::fs::write(
        &log,
        "(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:286] non-default args: {'model': 'm', \
         'enforce_eager': True, 'max_num_seqs': 64}\n",
    )
    .unwrap();
    let (code, doc, stderr) = diagnose_offline(&["--log", log.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}{doc}");
    let config = &doc["evidence"]["config"];
    assert_eq!(config["enforce_eager"]["value"], true, "{config}");
    assert_eq!(config["enforce_eager"]["source"], "log", "{config}");
    assert_eq!(config["max_num_seqs"]["value"], 64, "{config}");
    // What the args line does not name is vLLM's default.
    assert_eq!(config["enable_prefix_caching"]["source"], "log_default");
    let finding = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "config.enforce_eager")
        .unwrap_or_else(|| panic!("no config.enforce_eager: {doc}"));
    assert!(
        finding["verdict"]
            .as_str()
            .unwrap()
            .contains("remove --enforce-eager"),
        "{finding}"
    );
    assert_eq!(check(&doc, "config_cuda_graphs").0, "fail");
    // The ticket block carries the settings, defaults marked.
    let escalation = doc["escalation"].to_string();
    assert!(
        escalation.contains("enforce_eager=true") && escalation.contains("(default)"),
        "{escalation}"
    );
}

#[test]
fn real_captures_give_the_servers_settings_from_metrics_and_log() {
    let (_, doc, stderr) = diagnose_offline(&[
        "--metrics",
        &fixture("fixtures/vllm_cpu/metrics_during_load.txt"),
        "--log",
        &fixture("fixtures/vllm_cpu/startup_and_run.log"),
    ]);
    let config = &doc["evidence"]["config"];
    // The running server's own word: vllm:cache_config_info.
    assert_eq!(
        config["gpu_memory_utilization"]["value"], 0.92,
        "{stderr}{config}"
    );
    assert_eq!(config["gpu_memory_utilization"]["source"], "metrics");
    assert_eq!(config["block_size"]["value"], 128);
    assert_eq!(config["num_gpu_blocks"]["value"], 2048);
    // The log's arguments and engine config line.
    assert_eq!(config["max_num_seqs"]["value"], 8);
    assert_eq!(config["enforce_eager"]["value"], false);
    assert_eq!(config["enforce_eager"]["source"], "log");
    assert_eq!(check(&doc, "config_cuda_graphs").0, "pass");
    // No load was measured against these settings: lines that need it say so.
    assert_eq!(check(&doc, "config_max_model_len_fits").0, "unknown");
}

#[test]
fn a_collect_bundle_gives_the_settings_from_its_command_line_models_and_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    for sub in ["logs", "server"] {
        std::fs::create_dir_all(bundle.join(sub)).unwrap();
    }
    std::fs::write(
        bundle.join("logs/vllm.log"),
        "(APIServer pid=1) INFO 11-22 11:00:36 [api_utils.py:286] non-default args: {'model': 'm', \
         'max_num_seqs': 64}\n",
    )
    .unwrap();
    std::fs::write(
        bundle.join("server/cmdline.txt"),
        "/venv/bin/python3 /venv/bin/vllm serve m --max-num-seqs 64 --enforce-eager\n",
    )
    .unwrap();
    std::fs::copy(
        fixture("fixtures/vllm_cpu/models.json"),
        bundle.join("server/models.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture("fixtures/vllm_cpu/metrics_after_load.txt"),
        bundle.join("server/metrics-after.prom"),
    )
    .unwrap();
    let (_, doc, stderr) = diagnose_offline(&["--bundle", bundle.to_str().unwrap()]);
    let config = &doc["evidence"]["config"];
    assert_eq!(config["max_model_len"]["value"], 2048, "{stderr}{config}");
    assert_eq!(config["max_model_len"]["source"], "models_endpoint");
    assert_eq!(config["gpu_memory_utilization"]["source"], "metrics");
    // The command line's flag against the args line's silence: the flag is taken, and the disagreement said.
    assert_eq!(config["enforce_eager"]["value"], true);
    assert_eq!(config["enforce_eager"]["source"], "command_line");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings
            .contains("the server's settings disagree: enforce_eager: true (server command line)"),
        "{warnings}"
    );
    assert_eq!(check(&doc, "config_cuda_graphs").0, "fail");
}
