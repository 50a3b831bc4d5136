//! The playbook as a pure function: `Evidence` in, findings and the quick checklist out, no I/O, so every rule
//! is a table test over values. (stub: the rules are being written)

use infer_doctor_core::{Diagnosis, Evidence};

/// Every threshold a rule compares with; defaults from the sources, overridable from a TOML file.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {}

pub fn diagnose(_evidence: &Evidence, _thresholds: &Thresholds) -> Diagnosis {
    Diagnosis::default()
}
