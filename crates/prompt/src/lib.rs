//! What to send: prompts of an exact token length built with a local Hugging Face tokenizer, prompts read from
//! JSONL or ShareGPT files, and the length distributions both draw from.

pub mod chat_template;
pub mod dataset;
pub mod dist;
pub mod synth;
pub mod tokenizer;

use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use thiserror::Error;

/// Errors name the input and where in it things went wrong, so the user can fix the file or flag directly.
#[derive(Debug, Error)]
pub enum PromptError {
    #[error(
        "`{text}`: {reason} (accepted: 512 for a fixed length, 512:64 for mean:stddev, 256-768 for a range)"
    )]
    BadLength { text: String, reason: String },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("dataset {path}:{line}{column}: {reason}", column = column.map(|c| format!(":{c}")).unwrap_or_default())]
    Dataset {
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// 1-based, when the parser knows it.
        column: Option<usize>,
        reason: String,
    },
    #[error("dataset {path}: {reason}")]
    DatasetFile { path: PathBuf, reason: String },
    #[error("chat template {path}: {reason}")]
    Template { path: PathBuf, reason: String },
    #[error("synthetic workload: {0}")]
    Spec(String),
}

/// What the workload is, for the run record and for warnings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadInfo {
    /// `synthetic`, `jsonl` or `sharegpt`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Usable entries of a dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    /// Dataset entries left out because they held no usable prompt.
    pub skipped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Whether `input_tokens` of every item is a count by the local tokenizer rather than an estimate.
    pub exact_input_lengths: bool,
    /// Synthetic prompts (and shared prefixes) built so far that missed their exact length; each prompt carries
    /// its true count in `input_tokens`.
    pub residual_mismatches: u64,
    /// Caveats in plain language, for the report.
    pub notes: Vec<String>,
}

/// SplitMix64 finaliser: a bijection on u64 that decorrelates nearby seeds and indices.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An item's own random stream: a function of (seed, index) only, so items can be built in any order or thread.
pub(crate) fn item_rng(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(index)))
}
