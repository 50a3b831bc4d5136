//! The run directory: `run.json` beside the `requests.jsonl` the engine appended during the run.

use std::path::Path;

use anyhow::Context;
use infer_doctor_core::RunSummary;
use infer_doctor_report::{RunDocument, SCHEMA_VERSION};
use serde_json::Value;

pub struct DocumentParts {
    pub started_at: String,
    pub wall_seconds: f64,
    pub interrupted: bool,
    pub target: Value,
    pub config: Value,
    pub workload: Value,
    pub summary: RunSummary,
    pub sweep: Option<Value>,
}

/// The command line with the value of `--api-key` replaced, so the record can be shared.
pub fn redacted_command_line() -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in std::env::args() {
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

pub fn document(parts: DocumentParts) -> RunDocument {
    RunDocument {
        schema_version: SCHEMA_VERSION,
        tool: RunDocument::tool(),
        command_line: redacted_command_line(),
        started_at: parts.started_at,
        wall_seconds: parts.wall_seconds,
        interrupted: parts.interrupted,
        target: parts.target,
        config: parts.config,
        workload: parts.workload,
        host: serde_json::to_value(crate::host::HostInfo::read()).unwrap_or_default(),
        summary: parts.summary,
        sweep: parts.sweep,
        formulas: RunDocument::formulas(),
    }
}

pub fn write(dir: &Path, doc: &RunDocument) -> anyhow::Result<()> {
    let path = dir.join("run.json");
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
