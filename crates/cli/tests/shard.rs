//! Load from many machines, end to end: `sim run --shard` on the discrete-event clock proves that `bench merge` of
//! the shards is exactly the whole run, and two `bench --shard` processes against one simulator over HTTP merge
//! into the run one `bench` would have sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use infer_doctor_testkit::{Running, command, start_sim};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_infer-doctor");

fn run(args: &[&str]) -> Output {
    command(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running infer-doctor")
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} exited {:?}:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// requests.jsonl by request id.
fn requests(dir: &Path) -> BTreeMap<u64, Value> {
    std::fs::read_to_string(dir.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| (r["id"].as_u64().unwrap(), r))
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The whole simulated run, and the same run as `n` shards, each with its client view on a clock of its own.
fn simulated_shards(scratch: &Path, load: &[&str], n: u64) -> Vec<std::path::PathBuf> {
    let mut args = vec!["sim", "run", "--num-requests", "240", "--seed", "11"];
    args.extend(load);
    let whole = scratch.join("whole");
    let mut whole_args = args.clone();
    whole_args.extend(["--out", path(&whole)]);
    ok(&whole_args);
    (0..n)
        .map(|i| {
            let dir = scratch.join(format!("shard{i}"));
            let shard = format!("{i}/{n}");
            let mut shard_args = args.clone();
            shard_args.extend(["--out", path(&dir), "--shard", &shard]);
            ok(&shard_args);
            dir.join("client")
        })
        .collect()
}

fn merge(dirs: &[std::path::PathBuf], out: &Path) -> Output {
    let mut args = vec!["bench", "merge", "--quiet", "--out", path(out)];
    args.extend(dirs.iter().map(|d| path(d)));
    run(&args)
}

#[test]
fn merged_shards_of_a_simulated_run_are_exactly_the_whole_run() {
    for (load, n) in [
        (&["--request-rate", "25"][..], 3u64),
        (&["--concurrency", "10"][..], 4),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let shards = simulated_shards(scratch.path(), load, n);
        // Each shard holds its own requests on its own clock: not the whole run's times.
        let starts: Vec<u64> = shards
            .iter()
            .map(|d| run_json(d)["shard"]["started_unix_us"].as_u64().unwrap())
            .collect();
        // The shard holding request 0 starts with the simulation; in the open loop the others start later (their
        // first arrivals), so the merge must shift them; the closed loop's users all start at once.
        let later = starts.iter().filter(|s| **s > 0).count() as u64;
        let open = load[0] == "--request-rate";
        assert_eq!(later, if open { n - 1 } else { 0 }, "{starts:?}");
        for (i, dir) in shards.iter().enumerate() {
            assert!(requests(dir).keys().all(|k| k % n == i as u64));
        }
        let merged = scratch.path().join("merged");
        let out = merge(&shards, &merged);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let whole = scratch.path().join("whole/client");
        let (mut got, mut want) = (requests(&merged), requests(&whole));
        assert_eq!(got.len(), 240);
        assert_eq!(
            got, want,
            "{load:?}: the merged requests are not the whole run's"
        );
        // Exactly, not nearly: every figure the summary holds, bar the client's own resources (N client
        // processes, each counted once: cores add up). Sums over f64 token counts run in another order, but the
        // simulator's per-event counts are whole numbers, so their sums are exact in any order.
        let (mut merged_doc, whole_doc) = (run_json(&merged), run_json(&whole));
        let (m, w) = (&mut merged_doc["summary"], &whole_doc["summary"]);
        assert_eq!(m["client"]["cores"], n);
        m["client"]["cores"] = w["client"]["cores"].clone();
        assert_eq!(m, w, "{load:?}: the merged summary differs");
        assert_eq!(
            merged_doc["shard"]["window_us"],
            whole_doc["shard"]["window_us"]
        );
        assert_eq!(
            merged_doc["merged_from"].as_array().unwrap().len() as u64,
            n
        );
        got.clear();
        want.clear();

        // The merged directory is a run directory: report, compare and diagnose read it.
        ok(&["report", path(&merged), "--format", "json"]);
        let compared = ok(&["compare", path(&whole), path(&merged), "--format", "json"]);
        let compared: Value = serde_json::from_slice(&compared.stdout).unwrap();
        assert!(compared.is_object(), "{compared}");
        // A diagnosis exits 0, or 1 for a critical finding; either way it read the merged run.
        let diagnosed = run(&["diagnose", "--bundle", path(&merged), "--format", "json"]);
        assert!(
            matches!(diagnosed.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&diagnosed.stderr)
        );
        let diagnosis: Value = serde_json::from_slice(&diagnosed.stdout).unwrap();
        assert_eq!(
            diagnosis["evidence"]["requests"].as_array().map(Vec::len),
            Some(240)
        );
    }
}

#[test]
fn shards_that_do_not_make_one_run_are_refused_by_name() {
    let scratch = tempfile::tempdir().unwrap();
    let shards = simulated_shards(scratch.path(), &["--request-rate", "40"], 3);
    let out_dir = scratch.path().join("merged");
    let refused = |dirs: &[std::path::PathBuf], expected: &str| {
        let out = merge(dirs, &out_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "no {expected:?} in {stderr}");
        assert!(!out_dir.join("run.json").exists());
    };
    refused(
        &shards[..2],
        "shard 2/3 missing: the union of the given 2 is not the whole run",
    );
    let twice = [shards[0].clone(), shards[1].clone(), shards[1].clone()];
    refused(
        &twice,
        &format!(
            "shard 1/3 given twice: {} and {}",
            shards[1].display(),
            shards[1].display()
        ),
    );
    // The same shard of a run with another seed.
    let other = scratch.path().join("other");
    ok(&[
        "sim",
        "run",
        "--num-requests",
        "240",
        "--seed",
        "12",
        "--request-rate",
        "40",
        "--out",
        path(&other),
        "--shard",
        "2/3",
    ]);
    let mixed = [shards[0].clone(), shards[1].clone(), other.join("client")];
    refused(
        &mixed,
        &format!(
            "{}: seed 12, but {}: seed 11",
            other.join("client").display(),
            shards[0].display()
        ),
    );
    // A run.json from before shards were recorded cannot be placed on the common clock.
    let old = scratch.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(shards[2].join("requests.jsonl"), old.join("requests.jsonl")).unwrap();
    let mut doc = run_json(&shards[2]);
    doc.as_object_mut().unwrap().remove("shard");
    std::fs::write(old.join("run.json"), doc.to_string()).unwrap();
    refused(
        &[shards[0].clone(), shards[1].clone(), old.clone()],
        "run.json records no shard or clock",
    );
    // …though it is still a readable run directory.
    ok(&["report", path(&old), "--format", "json"]);
    // A shard that never finished, waited for within a bound.
    let never = scratch.path().join("never");
    let out = run(&[
        "bench",
        "merge",
        "--wait",
        "1s",
        path(&shards[0]),
        path(&shards[1]),
        path(&never),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("no run.json yet in {}", never.display())),
        "{stderr}"
    );
}

#[test]
fn bad_shard_values_are_usage_errors_naming_the_value() {
    for (value, expected) in [
        ("0/0", "N must be at least 1"),
        ("3/2", "I counts from 0 and must be below N (2)"),
        ("x", "expected I/N"),
    ] {
        for args in [
            &["bench", "--url", "http://127.0.0.1:9", "--shard", value][..],
            &["sim", "run", "--out", "/nonexistent", "--shard", value][..],
        ] {
            let out = run(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("--shard `{value}`: {expected}")),
                "{args:?}: {stderr}"
            );
        }
    }
    // More shards than users: one would send nothing.
    let out = run(&[
        "bench",
        "--url",
        "http://127.0.0.1:9",
        "--concurrency",
        "2",
        "--shard",
        "2/3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--concurrency 2 over 3 shards leaves shard 2/3 with none")
    );
}

/// One bench process against `url`, writing `out`.
fn bench(url: &str, out: &Path, shard: Option<&str>) -> Running {
    let mut cmd = command(EXE);
    cmd.args([
        "bench",
        "--url",
        url,
        "--request-rate",
        "40",
        "--num-requests",
        "60",
        "--input-tokens",
        "16-96",
        "--output-tokens",
        "4-24",
        "--seed",
        "9",
        "--quiet",
        "--no-history",
        "--scrape-interval",
        "200ms",
        "--out",
    ])
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(shard) = shard {
        cmd.args(["--shard", shard]);
    }
    Running(cmd.spawn().expect("starting bench"))
}

#[test]
fn two_bench_shards_over_http_merge_into_the_run_one_bench_sends() {
    let (_sim, url) = start_sim(EXE, &["--max-num-seqs", "64"]);
    let scratch = tempfile::tempdir().unwrap();
    let dirs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| scratch.path().join(format!("s{i}")))
        .collect();
    // Both shards at once, as two machines would send them.
    let mut shards: Vec<Running> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| bench(&url, d, Some(&format!("{i}/2"))))
        .collect();
    for s in &mut shards {
        assert_eq!(s.wait_for(Duration::from_secs(60)), Some(0));
    }
    let single = scratch.path().join("single");
    assert_eq!(
        bench(&url, &single, None).wait_for(Duration::from_secs(60)),
        Some(0)
    );

    let merged = scratch.path().join("merged");
    let out = merge(&dirs, &merged);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, one) = (requests(&merged), requests(&single));
    assert_eq!(got.len(), 60);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        one.keys().collect::<Vec<_>>()
    );
    // The same prompts: each request asked for the same output and carried a prompt the server counted the same.
    for (id, r) in &got {
        for field in ["max_tokens", "usage_prompt_tokens"] {
            assert_eq!(r[field], one[id][field], "request {id}: {field}");
        }
    }
    let (doc, single_doc) = (run_json(&merged), run_json(&single));
    assert_eq!(doc["config"]["seed"], single_doc["config"]["seed"]);
    assert_eq!(doc["summary"]["requests"]["sent"], 60);
    // Shards follow the whole run's schedule: on its own clock each request was due when the single run's was.
    for (i, dir) in dirs.iter().enumerate() {
        let shard = run_json(dir);
        assert_eq!(shard["shard"]["index"], i);
        assert_eq!(shard["summary"]["client"]["requested_rate"], 20.0);
        if shard["summary"]["client"]["schedule_slips"] == 0 {
            for (id, r) in requests(dir) {
                assert_eq!(r["scheduled_us"], one[&id]["scheduled_us"], "request {id}");
            }
        }
    }
    // The window is the union of the shards' windows on the common clock.
    let starts: Vec<u64> = dirs
        .iter()
        .map(|d| run_json(d)["shard"]["started_unix_us"].as_u64().unwrap())
        .collect();
    let origin = *starts.iter().min().unwrap();
    assert_eq!(doc["shard"]["started_unix_us"], origin);
    let (mut from, mut to) = (u64::MAX, 0);
    for (dir, start) in dirs.iter().zip(&starts) {
        let w = &run_json(dir)["shard"]["window_us"];
        from = from.min(start - origin + w[0].as_u64().unwrap());
        to = to.max(start - origin + w[1].as_u64().unwrap());
    }
    assert_eq!(doc["shard"]["window_us"], serde_json::json!([from, to]));
    // Each request sits on the common clock: its shard's times, shifted by that shard's start.
    for (dir, start) in dirs.iter().zip(&starts) {
        for (id, r) in requests(dir) {
            assert_eq!(
                got[&id]["sent_us"].as_u64().unwrap(),
                r["sent_us"].as_u64().unwrap() + (start - origin)
            );
        }
    }
    assert_eq!(doc["summary"]["client"]["requested_rate"], 40.0);
    // Each shard's scrapes are kept, and one shard's stand for the run's, moved onto the common clock.
    for i in 0..2 {
        assert!(
            merged
                .join(format!("shards/{i}/server_metrics.jsonl"))
                .is_file()
        );
    }
    let scrapes = |file: &Path| -> Vec<Value> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let top = scrapes(&merged.join("server_metrics.jsonl"));
    assert!(!top.is_empty());
    let (i, own) = (0..2)
        .map(|i| (i, scrapes(&dirs[i].join("server_metrics.jsonl"))))
        .find(|(_, own)| {
            own.iter()
                .map(|l| &l["unix"])
                .eq(top.iter().map(|l| &l["unix"]))
        })
        .expect("the merged scrapes are one shard's");
    let offset_s = (starts[i] - origin) as f64 / 1e6;
    for (m, o) in top.iter().zip(&own) {
        let shifted = o["t"].as_f64().unwrap() + offset_s;
        assert!(
            (m["t"].as_f64().unwrap() - shifted).abs() < 1e-9,
            "{m} vs {o}"
        );
        assert_eq!(m["text"], o["text"]);
    }
}

#[test]
fn the_emitted_job_carries_the_bench_flags_and_never_the_key() {
    let emit = |extra: &[&str]| {
        command(EXE)
            .env("OPENAI_API_KEY", "sk-never-in-a-manifest")
            .args([
                "bench",
                "--url",
                "http://vllm:8000",
                "--request-rate",
                "300",
                "--seed",
                "4",
                "--emit",
                "k8s-job",
                "--shards",
                "3",
                "--image",
                "registry.example/infer-doctor:1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = emit(&[]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("pass --api-key-secret NAME"), "{stderr}");
    assert!(refused.stdout.is_empty());

    let out = emit(&["--api-key-secret", "llm-key:token"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(!yaml.contains("sk-never"), "{yaml}");
    for line in [
        "- \"--request-rate\"\n",
        "- \"300\"\n",
        "- \"$(JOB_COMPLETION_INDEX)/3\"\n",
        "key: \"token\"\n",
        "name: \"llm-key\"\n",
        "completionMode: \"Indexed\"\n",
    ] {
        assert!(yaml.contains(line), "no {line:?} in\n{yaml}");
    }
    for flag in ["--emit", "--shards", "--image", "--api-key-secret"] {
        assert!(
            !yaml.contains(&format!("\"{flag}\"")),
            "{flag} reached the pods:\n{yaml}"
        );
    }
    // Three pods cannot share two users.
    let out = command(EXE)
        .args([
            "bench",
            "--url",
            "http://vllm:8000",
            "--concurrency",
            "2",
            "--emit",
            "k8s-job",
            "--shards",
            "3",
            "--image",
            "img",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaves shard 2/3 with none"));
}
