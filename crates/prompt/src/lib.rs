//! What to send: prompts of an exact token length built with a local Hugging Face tokenizer, prompts read from
//! JSONL or ShareGPT files, and the length distributions both draw from.

pub mod dataset;
pub mod dist;
pub mod synth;
pub mod tokenizer;

use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PromptError {
    #[error(
        "{flag} `{text}`: {reason} (expected 512, 512:64 for mean:stddev, or 256-768 for a range)"
    )]
    BadLength {
        flag: &'static str,
        text: String,
        reason: String,
    },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("dataset {path}:{line}{column}: {reason}", column = column.map(|c| format!(":{c}")).unwrap_or_default())]
    Dataset {
        path: PathBuf,
        line: usize,
        column: Option<usize>,
        reason: String,
    },
    #[error("dataset {path}: {reason}")]
    DatasetFile { path: PathBuf, reason: String },
}

/// What the workload is, for the run record and for warnings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadInfo {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    pub skipped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    pub exact_input_lengths: bool,
    /// Prompts that could not be built to the exact length (counted as they are built).
    pub residual_mismatches: u64,
    pub notes: Vec<String>,
}
