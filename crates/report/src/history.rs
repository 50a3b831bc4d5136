//! `history`'s output: one figure across the runs of a target as a table (terminal, Markdown) or a page with a
//! trend chart, and the drift finding when the figure got steadily worse.

use infer_doctor_core::Finding;
use infer_doctor_core::figures::Figure;
use serde::Serialize;

use crate::markdown::severity_label;
use crate::table::Table;

/// One run's point on the trend.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrendRun {
    pub id: i64,
    pub started_at: String,
    pub kind: String,
    pub value: Option<f64>,
    pub findings: Vec<String>,
}

/// A figure over the runs of one target, model and workload, oldest first.
#[derive(Clone, Debug, Serialize)]
pub struct Trend {
    #[serde(skip)]
    pub figure: &'static Figure,
    pub metric: &'static str,
    pub target: String,
    pub model: String,
    pub workload: String,
    pub runs: Vec<TrendRun>,
    /// `history.drift`, when the figure drifted the wrong way.
    pub drift: Option<Finding>,
    /// Runs the drift test needs before it says anything.
    pub drift_min_runs: usize,
}

impl Trend {
    pub fn title(&self) -> String {
        format!(
            "{} of {} ({}, workload {})",
            self.figure.label, self.target, self.model, self.workload
        )
    }

    pub fn table(&self) -> Table {
        let first = self.runs.iter().find_map(|r| r.value);
        Table {
            caption: self.title(),
            header: [
                "run",
                "started",
                "kind",
                &format!("{} ({})", self.figure.label, self.figure.unit),
                "vs first",
                "findings",
            ]
            .map(String::from)
            .to_vec(),
            rows: self
                .runs
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.started_at.clone(),
                        r.kind.clone(),
                        r.value.map_or_else(|| "—".into(), |v| format!("{v:.2}")),
                        match (first, r.value) {
                            (Some(a), Some(b)) if a != 0.0 => {
                                format!("{:+.1}%", (b / a - 1.0) * 100.0)
                            }
                            _ => "—".into(),
                        },
                        if r.findings.is_empty() {
                            "—".into()
                        } else {
                            r.findings.join(", ")
                        },
                    ]
                })
                .collect(),
        }
    }

    /// What the drift test concluded, in one line: found, not found, or unknown for want of runs.
    pub fn drift_status(&self) -> String {
        let with_value = self.runs.iter().filter(|r| r.value.is_some()).count();
        match &self.drift {
            Some(f) => format!("{} [{}]: {}", f.id, severity_label(f.severity), f.verdict),
            None if with_value < self.drift_min_runs => format!(
                "drift: unknown (needs at least {} runs with {}; {with_value} so far)",
                self.drift_min_runs, self.figure.name
            ),
            None => format!("no drift in {} across these runs", self.figure.name),
        }
    }

    fn verdict_lines(&self) -> Vec<String> {
        let mut lines = vec![self.drift_status()];
        if let Some(f) = &self.drift {
            lines.push(format!("why: {}", f.why));
            lines.push(format!("do: {}", f.remedies.join("; ")));
        }
        lines
    }

    pub fn term(&self) -> String {
        let mut out = self.table().term();
        for line in self.verdict_lines() {
            out += &line;
            out.push('\n');
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = self.table().markdown();
        out.push('\n');
        for line in self.verdict_lines() {
            out += &format!("- {line}\n");
        }
        out
    }

    /// The trend as JSON, with the drift test's status beside its finding.
    pub fn json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["drift_status"] = self.drift_status().into();
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    }

    pub fn html(&self) -> String {
        crate::html::render_trend(self)
    }
}
