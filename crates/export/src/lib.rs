//! The `export` room: the playbook carried into the monitoring people already run — a Grafana dashboard and
//! Prometheus alert rules whose metric names come from `observe`'s dialect tables and whose limits are `diagnose`'s.

pub mod alerts;
pub mod grafana;
pub mod promql;
mod yaml;

use infer_doctor_core::Signal;
use infer_doctor_observe::dialect::Dialect;

pub use promql::{Target, TargetError};

/// Something the dialect's server does not export, so it was left out of what was generated, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Omission {
    /// The panel or alert left out.
    pub what: String,
    /// Which signal the server lacks.
    pub why: String,
}

impl Omission {
    /// `what`, left out because the dialect exports none of `signals`.
    pub(crate) fn lacking(
        what: impl Into<String>,
        dialect: Dialect,
        signals: &[Signal],
    ) -> Omission {
        let mut names: Vec<&str> = signals.iter().map(|s| s.name()).collect();
        names.dedup();
        Omission {
            what: what.into(),
            why: format!(
                "{} exports no {} metric",
                dialect.name(),
                names.join(" or ")
            ),
        }
    }
}
