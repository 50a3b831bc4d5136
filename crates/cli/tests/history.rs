//! Baselines end to end: bench runs against the simulator recorded in a history file, `compare` telling a
//! repeat of one configuration from a slower one, and `history` finding the drift of a degrading server.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bounded closed-loop run with prompts long enough that TTFT is tens of milliseconds, not timer noise.
fn bench(url: &str, history: &Path, out: &Path, requests: u32, extra: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args([
        "bench",
        "--url",
        url,
        "--concurrency",
        "8",
        "--input-tokens",
        "512",
    ])
    .args([
        "--output-tokens",
        "48",
        "--ignore-eos",
        "--seed",
        "7",
        "--timeout",
        "60s",
    ])
    .args([
        "--num-requests",
        &requests.to_string(),
        "--format",
        "json",
        "-q",
    ])
    .arg("--history")
    .arg(history);
    cmd.arg("--out").arg(out).args(extra);
    let output = run(&mut cmd);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    output
}

fn compare_json(args: &[&str], history: &Path) -> (Option<i32>, Value) {
    let out = run(bin()
        .arg("compare")
        .args(args)
        .args(["--format", "json", "--history"])
        .arg(history));
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code(), json)
}

fn figure<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["comparison"]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
}

/// `history --metric throughput --format json`: exit code, the trend, its values oldest first.
fn throughput_trend(history: &Path) -> (Option<i32>, Value, Vec<f64>) {
    let out = run(bin()
        .args([
            "history",
            "--metric",
            "throughput",
            "--format",
            "json",
            "--history",
        ])
        .arg(history));
    let trend: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let values = trend["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    (out.status.code(), trend, values)
}

/// `sim run --out`: the simulated server on its discrete-event clock, with the client's view in `client/`.
fn sim_run(out: &Path, args: &[&str]) {
    let output = run(bin()
        .args(["sim", "run", "--concurrency", "16", "--num-requests", "400"])
        .args([
            "--input-tokens",
            "512",
            "--output-tokens",
            "64",
            "--ignore-eos",
            "--format",
            "json",
        ])
        .args(args)
        .arg("--out")
        .arg(out));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

/// On the simulator's discrete-event clock, so the only noise is the simulated kind (step jitter, seeded), not
/// this shared machine's scheduling.
#[test]
fn a_repeat_of_one_sim_config_is_within_noise_and_a_throttled_one_is_worse_with_the_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let history = scratch.path().join("history.sqlite");
    let client = |name: &str| {
        scratch
            .path()
            .join(name)
            .join("client")
            .display()
            .to_string()
    };
    sim_run(&scratch.path().join("first"), &["--seed", "1"]);
    sim_run(&scratch.path().join("again"), &["--seed", "2"]);
    sim_run(
        &scratch.path().join("throttled"),
        &["--seed", "3", "--throttle", "1.6"],
    );

    let gates = "tpot_p95=+10%,throughput=-5%";
    let (code, same) = compare_json(
        &[&client("first"), &client("again"), "--fail-on", gates],
        &history,
    );
    assert_eq!(code, Some(0), "{same:#}");
    for f in same["comparison"]["figures"].as_array().unwrap() {
        let expected = if f["interval"].is_null() {
            "unknown"
        } else {
            "within_noise"
        };
        assert_eq!(f["verdict"], expected, "{f:#}");
    }
    assert_eq!(figure(&same, "tpot_p95")["verdict"], "within_noise");

    let (code, slow) = compare_json(
        &[&client("first"), &client("throttled"), "--fail-on", gates],
        &history,
    );
    assert_eq!(code, Some(1), "the TPOT gate fails: {slow:#}");
    let tpot = figure(&slow, "tpot_p95");
    assert_eq!(tpot["verdict"], "worse", "{slow:#}");
    let change = tpot["change"].as_f64().unwrap();
    assert!(
        (0.4..0.8).contains(&change),
        "throttle 1.6 makes decode steps ~60% slower: {change}"
    );
    assert!(tpot["interval"]["low"].as_f64().unwrap() > 0.3, "{tpot:#}");
    assert_eq!(figure(&slow, "throughput")["verdict"], "worse");
    let reason = slow["server_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("server generation"),
        "the server's own tokens/s fell too: {slow:#}"
    );

    // The same comparison as a pull-request comment and as JUnit XML.
    let md = run(bin().args([
        "compare",
        &client("first"),
        &client("throttled"),
        "--format",
        "md",
        "--fail-on",
        gates,
    ]));
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.starts_with("# infer-doctor compare: ❌ a gate failed"),
        "{md}"
    );
    assert!(
        md.contains("| TPOT p95 (ms) |") && md.contains("worse TPOT p95 +"),
        "{md}"
    );
    let junit_path = scratch.path().join("compare.xml");
    let out = run(bin()
        .args([
            "compare",
            &client("first"),
            &client("throttled"),
            "--format",
            "junit",
            "--fail-on",
            gates,
            "-o",
        ])
        .arg(&junit_path));
    assert_eq!(out.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit_path).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("failure")))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(failed, ["tpot_p95", "throughput"], "{xml}");
    assert_eq!(doc.root_element().attribute("failures"), Some("2"));
}

#[test]
fn a_degrading_server_drifts_across_runs_and_the_history_is_rebuilt_from_its_directories() {
    let scratch = tempfile::tempdir().unwrap();
    let history = scratch.path().join("history.sqlite");
    let runs = scratch.path().join("runs");
    // One server, five runs: every token it serves makes its steps slower (the five-day case study, compressed).
    let (sim, url) = infer_doctor_testkit::start_sim(
        env!("CARGO_BIN_EXE_infer-doctor"),
        &["--scenario", "degrading", "--seed", "5"],
    );
    const KEY: &str = "sk-history-must-never-hold-this-key";
    for day in 1..=5 {
        // The first day's run is sent with a key: the history keeps the run, never the key.
        let key: &[&str] = if day == 1 { &["--api-key", KEY] } else { &[] };
        bench(&url, &history, &runs.join(format!("day{day}")), 48, key);
    }
    for file in std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        if file.is_file() {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                "{}",
                file.display()
            );
        }
    }
    drop(sim);

    let (code, trend, values) = throughput_trend(&history);
    assert_eq!(values.len(), 5, "{trend:#}");
    assert!(values[4] < values[0] * 0.8, "tokens/s fell: {values:?}");
    assert_eq!(trend["drift"]["id"], "history.drift", "{trend:#}");
    assert!(
        trend["drift"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("output tokens/s drifted down across 5 runs"),
        "{trend:#}"
    );
    // Critical drift is a failed check for cron.
    let expected_code = if trend["drift"]["severity"] == "critical" {
        1
    } else {
        0
    };
    assert_eq!(code, Some(expected_code));

    let page = scratch.path().join("trend.html");
    let out = run(bin()
        .args(["history", "--format", "html", "-o"])
        .arg(&page)
        .arg("--history")
        .arg(&history));
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains(r#"<svg id="trend""#) && html.contains(r#"data-points="5""#),
        "{html}"
    );
    assert!(html.contains(r#"data-finding-id="history.drift""#));

    // A new history file from the run directories alone holds the same runs and the same figures.
    let rebuilt = scratch.path().join("rebuilt.sqlite");
    let out = run(bin()
        .args(["history", "rebuild"])
        .arg(&runs)
        .arg("--history")
        .arg(&rebuilt));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("recorded 5 of 5 run directories"),
        "{}",
        text(&out)
    );
    let (_, _, rebuilt_values) = throughput_trend(&rebuilt);
    assert_eq!(rebuilt_values, values);

    // History ids: the first run against the last.
    let (code, by_id) = compare_json(&["1", "#5"], &history);
    assert_eq!(code, Some(0), "no gate given: {by_id:#}");
    assert_eq!(
        figure(&by_id, "throughput")["verdict"],
        "worse",
        "{by_id:#}"
    );

    // A pinned baseline: the first day against the last.
    let out = run(bin()
        .args(["history", "pin", "day1"])
        .arg(runs.join("day1"))
        .arg("--history")
        .arg(&history));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, doc) = compare_json(
        &[
            "--baseline",
            "day1",
            runs.join("day5").to_str().unwrap(),
            "--fail-on",
            "throughput=-10%",
        ],
        &history,
    );
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(figure(&doc, "throughput")["verdict"], "worse");
}

#[test]
fn bad_input_is_named_and_exits_2() {
    let scratch = tempfile::tempdir().unwrap();
    let history = scratch.path().join("h.sqlite");
    let not_sqlite = scratch.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "this is not a database, it is a text file of some length\n".repeat(20),
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["compare".into(), "/nonexistent/run".into(), "7".into()],
            "/nonexistent/run",
        ),
        (
            vec![
                "compare".into(),
                "1".into(),
                "2".into(),
                "--fail-on".into(),
                "tpot_p95=10%".into(),
            ],
            "needs a sign",
        ),
        (vec!["compare".into(), "1".into(), "2".into()], "no run #1"),
        (
            vec![
                "compare".into(),
                "--baseline".into(),
                "main".into(),
                "1".into(),
            ],
            "no baseline of that name",
        ),
        (
            vec!["history".into(), "--metric".into(), "speed".into()],
            "--metric speed: unknown",
        ),
        (
            vec!["history".into(), "pin".into(), "x".into(), "42".into()],
            "no run #42",
        ),
        (
            vec![
                "history".into(),
                "rebuild".into(),
                scratch.path().display().to_string(),
            ],
            "no run directory",
        ),
    ];
    for (args, says) in cases {
        let out = run(bin().args(&args).arg("--history").arg(&history));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    // A history file that is not one is an error naming it, never an empty history.
    let out = run(bin().args(["history", "--history"]).arg(&not_sqlite));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("notes.txt"), "{}", text(&out));
}
