//! What a diagnosis concludes, as plain values: findings with their evidence and remedies, the quick checklist,
//! and the one-line answer to "which number is bad, and why". Rules produce these; reports render them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

/// The number a user complains about, which a finding explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symptom {
    Ttft,
    Itl,
    Throughput,
    Errors,
    Output,
    /// About the measurement itself (the client was the limit, the numbers do not add up).
    Measurement,
    /// A GPU is failing, slowed or badly linked: every number it serves can suffer.
    Hardware,
    /// The GPU host around healthy GPUs slows the server: swap, CPU frequency or quota, NUMA placement.
    Host,
}

/// One observation a finding rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The canonical signal or client statistic, e.g. `kv_usage max` or `ttft p95 (loaded)`.
    pub signal: String,
    #[serde(deserialize_with = "crate::serde_float::nan_if_null")]
    pub value: f64,
    /// The threshold it was compared with, and how (`>`, `<`, `≈`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<String>,
    /// Where and over what it was measured, e.g. `server metrics, loaded probe (30 s)`.
    pub window: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable, e.g. `capacity.kv_saturated` (DESIGN.md §6).
    pub id: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub symptom: Symptom,
    /// One line: what is wrong.
    pub verdict: String,
    pub evidence: Vec<Observation>,
    /// The mechanism, in a sentence or two.
    pub why: String,
    /// What to do, most effective first.
    pub remedies: Vec<String>,
    /// Where the rule and its threshold come from.
    pub source: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Unknown,
}

/// One line of the quick checklist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckLine {
    pub id: String,
    /// The question, e.g. "Is the KV cache below 90% under load?".
    pub question: String,
    pub status: CheckStatus,
    /// The number behind a pass or fail; for unknown, which evidence is missing.
    pub detail: String,
    /// For unknown: how to get the missing evidence (e.g. "pass --log FILE").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how_to_know: Option<String>,
}

/// A whole diagnosis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The first line of every report: which number is bad, and why (or that nothing is).
    pub headline: String,
    /// Most severe and most confident first.
    pub findings: Vec<Finding>,
    pub checklist: Vec<CheckLine>,
}
