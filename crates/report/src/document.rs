//! `run.json`: the on-disk contract of a run. `schema_version` changes only when a field changes meaning or goes
//! away; new fields may appear at any version, so readers must ignore what they do not know.

use std::collections::BTreeMap;

use infer_doctor_core::RunSummary;
use infer_doctor_core::shard::ShardRun;
use infer_doctor_core::summary::ClientHealth;
use infer_doctor_core::summary::FORMULAS;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunDocument {
    pub schema_version: u32,
    pub tool: Tool,
    /// The command line with secrets replaced by `***`.
    pub command_line: Vec<String>,
    /// Wall-clock start, RFC 3339 UTC (labels only; every interval is on the monotonic clock).
    pub started_at: String,
    pub wall_seconds: f64,
    pub interrupted: bool,
    /// `/v1/models`, `/version` as the server answered them.
    pub target: Value,
    /// The run's settings, secrets removed.
    pub config: Value,
    pub workload: Value,
    pub host: Value,
    pub summary: RunSummary,
    /// A sweep's points, when the run was a sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Value>,
    /// What the server's own metrics said over the run, when they could be scraped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<infer_doctor_core::signals::ServerWindow>,
    pub formulas: BTreeMap<String, String>,
    /// The run's place among shards of one load and its clock (`bench`, `bench --shard`, `sim run`); absent in
    /// runs recorded before it was written, which `bench merge` then refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRun>,
    /// A `bench merge`'s shards, in shard order: what each sent, where its clock sat, and its own client and server
    /// views (each shard scraped the server on its own clock).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

/// One shard of a merged run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u64,
    /// The shard's run directory as given to `bench merge`.
    pub dir: String,
    pub started_unix_us: u64,
    /// µs its clock started after the earliest shard's: added to its records' times in the merged `requests.jsonl`.
    pub offset_us: u64,
    pub requests: u64,
    pub client: ClientHealth,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<infer_doctor_core::signals::ServerWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl RunDocument {
    pub fn formulas() -> BTreeMap<String, String> {
        FORMULAS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn tool() -> Tool {
        Tool {
            name: "infer-doctor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A diagnosis as stored (`diagnosis.json` in a run directory) and rendered by `report`: the evidence it read, what
/// it concluded, and the escalation summary. Versioned like `run.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiagnosisDocument {
    pub schema_version: u32,
    pub tool: Tool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// `/v1/models` and `/version` as the server answered them, when live.
    #[serde(default)]
    pub target: Value,
    pub evidence: infer_doctor_core::Evidence,
    pub diagnosis: infer_doctor_core::Diagnosis,
    /// The block a user pastes into a ticket: (label, value) in order.
    pub escalation: Vec<(String, String)>,
    /// What could not be read, or read only in part, each naming its file and line: the findings rest on the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
