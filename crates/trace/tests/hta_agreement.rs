//! Our analyses against HTA's own, number by number, on every trace fixture: HolisticTraceAnalysis 0.5.0 (PyPI,
//! in the venv `scripts/real-servers/install-hta.sh` makes) runs `tests/hta_reference.py` over the same files.
//! Every figure agrees within 1%, or within the allowance docs/TRACE.md explains (HTA's kernel-type table keeps
//! whole microseconds; its queue mean depends on how it orders ties).

mod hta;

use std::path::{Path, PathBuf};

use infer_doctor_trace::{Options, analyse, read_trace};

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/trace"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
            .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
}

/// A vLLM-shaped GPU trace from `bench/peers/make_kineto_trace.py` (many engine steps, CUDA-graph decode steps,
/// eager prefill, NCCL on its own stream): what the fixtures lack in one file.
fn generated(dir: &Path) -> PathBuf {
    let file = dir.join("generated_vllm_rank0.json");
    let made = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/make_kineto_trace.py"))
        .args(["--size-mb", "4", "--seed", "7", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    file
}

#[test]
fn every_trace_fixture_agrees_with_hta() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = fixtures();
    files.push(generated(dir.path()));
    let reference = hta::hta(&files);
    let mut problems = Vec::new();
    for file in &files {
        let trace = read_trace(file).unwrap();
        let ours = analyse(&trace, &Options::default());
        let theirs = &reference[file.to_string_lossy().as_ref()];
        assert!(!theirs.is_null(), "no HTA result for {}", file.display());
        problems.extend(hta::compare(file, &ours, theirs));
    }
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
