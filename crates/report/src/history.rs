//! `history`'s output: one figure across the runs of a target as a table (terminal, Markdown) or a page with a
//! trend chart, and the drift finding when the figure got steadily worse.

use infer_doctor_core::Finding;
use infer_doctor_core::figures::Figure;
use serde::Serialize;

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

    fn verdict_lines(&self) -> Vec<String> {
        match &self.drift {
            Some(f) => vec![
                format!(
                    "{} [{}]: {}",
                    f.id,
                    format!("{:?}", f.severity).to_lowercase(),
                    f.verdict
                ),
                format!("why: {}", f.why),
                format!("do: {}", f.remedies.join("; ")),
            ],
            None if self.runs.iter().filter(|r| r.value.is_some()).count() < 4 => vec![format!(
                "drift: unknown (needs at least 4 runs with {}; {} so far)",
                self.figure.name,
                self.runs.iter().filter(|r| r.value.is_some()).count()
            )],
            None => vec![format!(
                "no drift in {} across these runs",
                self.figure.name
            )],
        }
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

    pub fn html(&self) -> String {
        crate::html::render_trend(self)
    }
}
