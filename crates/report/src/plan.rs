//! A capacity plan as people read it: the options table, the recommendation with its flags, throughput against
//! concurrency and any manifests, stored as `plan.json` so `report` renders a plan like any other document.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::Tool;
use crate::html::{STYLE, escape};
pub use crate::table::Table;

/// A plan (`plan`, or `plan --from` a measured run) as stored and rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub created_at: String,
    /// What was planned for: the model, GPU, workload and SLO, or the run it came from.
    pub title: String,
    pub tables: Vec<Table>,
    /// Lines under the tables: options left out and why, the recommendation, the flags.
    pub notes: Vec<String>,
    /// `vllm serve …` with the recommended flags.
    pub command: Option<String>,
    /// Autoscaling manifests (YAML), when asked for.
    pub manifests: Option<String>,
    /// Every number behind the tables, for tools.
    pub details: Value,
}

pub fn term(plan: &PlanReport) -> String {
    let mut out = format!("{}\n", plan.title);
    for table in &plan.tables {
        out += &table.term();
    }
    out += "\n";
    for note in &plan.notes {
        out += &format!("{note}\n");
    }
    if let Some(command) = &plan.command {
        out += &format!("\n{command}\n");
    }
    if let Some(manifests) = &plan.manifests {
        out += &format!("\n{manifests}");
    }
    out
}

pub fn markdown(plan: &PlanReport) -> String {
    let mut out = format!("# Capacity plan\n\n{}\n", plan.title);
    for table in &plan.tables {
        out += &table.markdown();
    }
    out += "\n";
    for note in &plan.notes {
        out += &format!("- {note}\n");
    }
    if let Some(command) = &plan.command {
        out += &format!("\n```sh\n{command}\n```\n");
    }
    if let Some(manifests) = &plan.manifests {
        out += &format!("\n```yaml\n{manifests}```\n");
    }
    out
}

pub fn html(plan: &PlanReport) -> String {
    let mut out = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>infer-doctor: capacity plan</title><style>{STYLE}</style></head><body><main><h1>Capacity plan</h1><p>{}</p>"#,
        escape(&plan.title)
    );
    for table in &plan.tables {
        out += &table.html();
    }
    out += "<ul>";
    for note in &plan.notes {
        out += &format!("<li>{}</li>", escape(note));
    }
    out += "</ul>";
    for block in [&plan.command, &plan.manifests].into_iter().flatten() {
        out += &format!("<pre>{}</pre>", escape(block));
    }
    out + "</main></body></html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PlanReport {
        PlanReport {
            schema_version: crate::SCHEMA_VERSION,
            tool: crate::RunDocument::tool(),
            created_at: "2026-12-06T00:00:00Z".into(),
            title: "m on g".into(),
            tables: vec![Table {
                caption: "Options".into(),
                header: vec!["TP".into(), "SLO".into()],
                rows: vec![vec!["1".into(), "<meets>".into()]],
            }],
            notes: vec!["left out: TP 8".into()],
            command: Some("vllm serve m --tensor-parallel-size 1".into()),
            manifests: None,
            details: Value::Null,
        }
    }

    #[test]
    fn every_format_carries_the_cells_and_the_command() {
        let plan = plan();
        for text in [term(&plan), markdown(&plan)] {
            assert!(
                text.contains("<meets>") && text.contains("--tensor-parallel-size 1"),
                "{text}"
            );
            assert!(text.contains("left out: TP 8"));
        }
        let page = html(&plan);
        assert!(
            page.contains("&lt;meets&gt;") && !page.contains("<meets>"),
            "{page}"
        );
        let stored: PlanReport =
            serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(stored, plan);
    }
}
