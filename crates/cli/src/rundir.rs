//! The run directory: `run.json` beside the `requests.jsonl` the engine appended during the run.

use std::path::Path;

use anyhow::Context;
use infer_doctor_report::RunDocument;

/// The command line with the value of `--api-key` replaced, so the record can be shared.
pub fn redacted_command_line() -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    // `args_os`: a path argument that is not UTF-8 (a legal file name) must not panic here, after the run.
    for arg in std::env::args_os().map(|a| a.to_string_lossy().into_owned()) {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
        } else if arg == "--api-key" {
            hide_next = true;
            out.push(arg);
        } else if arg.starts_with("--api-key=") {
            out.push("--api-key=***".to_string());
        } else {
            out.push(arg);
        }
    }
    out
}

pub fn write(dir: &Path, doc: &RunDocument) -> anyhow::Result<()> {
    let path = dir.join("run.json");
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
