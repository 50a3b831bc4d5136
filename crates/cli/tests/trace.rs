//! `infer-doctor trace` and `diagnose --trace` as a user runs them: the profiler's files or its directory in, the
//! analysis (terminal or JSON) out, two traces side by side, the trace rules in a diagnosis, bad input named.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/trace")
        .join(name)
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_infer-doctor"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NCCL: &str = "hta__nccl_parser_config__nccl_data.json.gz";
const SGLANG: &str = "tracelens__sglang_Qwen3-8B_decode_mi300x.json.gz";

#[test]
fn a_profiler_directory_is_read_rank_by_rank_and_printed() {
    // As vLLM's torch_profiler_dir holds them: one gzipped trace per worker, beside a text summary.
    let dir = tempfile::tempdir().unwrap();
    for (rank, name) in [(0, NCCL), (1, SGLANG)] {
        std::fs::copy(
            fixture(name),
            dir.path()
                .join(format!("worker_rank{rank}.1765000000000.pt.trace.json.gz")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("profiler_out_0.txt"), "key averages").unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let dir = dir.path().to_str().unwrap();
    let (code, json, stderr) = run(&["trace", dir, "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let ranks = report["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    // The NCCL trace's last profiler step is left out, as HTA leaves it out; the SGLang trace has vLLM-style steps.
    assert_eq!(ranks[0]["dropped_step"]["name"], "ProfilerStep#6");
    assert!(ranks[0]["comm_comp_overlap_pct"].as_f64().unwrap() > 10.0);
    assert_eq!(ranks[1]["steps"]["phases"][0]["phase"], "decode");

    let (code, text, _) = run(&["trace", dir]);
    assert_eq!(code, Some(0));
    for heading in [
        "Where the GPU's time went",
        "Kernel classes",
        "Top 10 kernels",
        "vLLM engine steps",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(
        text.contains("ProfilerStep#6") && text.contains("--include-last-step"),
        "{text}"
    );
    // The page draws the SGLang rank's steps and each rank's top kernels; Markdown gives the same tables.
    let (code, page, _) = run(&["trace", dir, "--format", "html"]);
    assert_eq!(code, Some(0));
    assert!(page.contains(r#"<svg id="steps-1" class="chart step-timeline""#));
    assert!(
        !page.contains(r#"id="steps-0""#),
        "the NCCL trace has no engine steps"
    );
    for rank in 0..2 {
        assert!(page.contains(&format!(
            r#"<svg id="kernels-{rank}" class="chart kernel-bars""#
        )));
    }
    let (_, md, _) = run(&["trace", dir, "--format", "md"]);
    assert!(
        md.contains("## Kernel classes") && md.contains("| rank |"),
        "{md}"
    );

    let (_, kept, _) = run(&["trace", dir, "--include-last-step", "--format", "json"]);
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert!(kept["ranks"][0]["dropped_step"].is_null());
}

#[test]
fn trace_diff_lines_two_traces_up() {
    let (a, b) = (
        fixture("hta__amd_mi250_rocm6.2.json.gz"),
        fixture("hta__critical_path_alexnet_cuda_sync.json.gz"),
    );
    let (code, json, stderr) = run(&[
        "trace",
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let diff: Value = serde_json::from_str(&json).unwrap();
    let copy = diff["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "Memcpy HtoD (Pageable -> Device)")
        .expect("the alexnet trace's pageable copies");
    assert_eq!(
        (copy["change"].as_str(), copy["baseline_count"].as_u64()),
        (Some("added"), Some(0))
    );
    // The same trace against itself changes nothing.
    let (_, same, _) = run(&[
        "trace",
        "diff",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let same: Value = serde_json::from_str(&same).unwrap();
    assert!(
        same["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["change"] == "unchanged")
    );
}

#[test]
fn what_is_no_trace_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.json");
    std::fs::write(&text, "not json at all").unwrap();
    for (input, words) in [
        (text.to_str().unwrap().to_string(), "not a profiler trace"),
        (
            dir.path()
                .join("missing.json.gz")
                .to_str()
                .unwrap()
                .to_string(),
            "cannot read",
        ),
    ] {
        let (code, _, stderr) = run(&["trace", &input]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&input) && stderr.contains(words),
            "{stderr}"
        );
    }
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["trace", empty.path().to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no trace files"), "{stderr}");
}

#[test]
fn diagnose_with_a_trace_judges_it_and_says_where_the_file_was_cut() {
    let (code, json, stderr) = run(&[
        "diagnose",
        "--trace",
        fixture(SGLANG).to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let idle = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "trace.gpu_idle")
        .expect("the decode step's GPU idles while the host launches");
    assert!(
        idle["verdict"]
            .as_str()
            .unwrap()
            .contains("within its engine steps"),
        "{idle}"
    );
    assert_eq!(
        doc["evidence"]["trace"]["ranks"][0]["phases"][0]["phase"],
        "decode"
    );

    // A trace the profiler was killed writing: analysed up to the cut, which the diagnosis names.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture(NCCL)).unwrap();
    let cut = dir.path().join("rank0.pt.trace.json.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 4 / 5]).unwrap();
    let (code, json, stderr) = run(&[
        "diagnose",
        "--trace",
        cut.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let said = serde_json::to_string(&doc).unwrap();
    assert!(said.contains("ends early"), "the cut is not said: {stderr}");
    assert!(
        doc["evidence"]["trace"]["ranks"][0]["busy_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
