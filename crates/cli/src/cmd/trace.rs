//! `infer-doctor trace`: reads profiler traces with the trace room and prints its analysis, or two side by side.

use infer_doctor_report::trace::{self as render, Written};
use infer_doctor_trace::{Options, TraceReport, analyse_inputs, diff::diff};

use crate::args::{ReportFormat, TraceAnalysisArgs, TraceArgs, TraceCommand};
use crate::{Failure, exit};

pub fn run(args: &TraceArgs) -> Result<u8, Failure> {
    match &args.action {
        Some(TraceCommand::Diff(diff_args)) => {
            let baseline = analysed(
                std::slice::from_ref(&diff_args.baseline),
                &diff_args.analysis,
            )?;
            let compared = analysed(
                std::slice::from_ref(&diff_args.compared),
                &diff_args.analysis,
            )?;
            let (Some(a), Some(b)) = (baseline.ranks.first(), compared.ranks.first()) else {
                return Err(Failure::usage(anyhow::anyhow!(
                    "trace diff needs a trace on each side"
                )));
            };
            let changes = diff(a, b);
            match diff_args.analysis.format {
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
                ReportFormat::Term => print!("{}", render::diff_text(&changes, Written::Term)),
                ReportFormat::Md => print!("{}", render::diff_text(&changes, Written::Markdown)),
                ReportFormat::Html => print!("{}", render::diff_html(&changes)),
            }
        }
        None => {
            let report = analysed(&args.files, &args.analysis)?;
            match args.analysis.format {
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                ReportFormat::Term => print!("{}", render::text(&report, Written::Term)),
                ReportFormat::Md => print!("{}", render::text(&report, Written::Markdown)),
                ReportFormat::Html => print!("{}", render::html(&report)),
            }
        }
    }
    Ok(exit::OK)
}

fn analysed(
    inputs: &[std::path::PathBuf],
    args: &TraceAnalysisArgs,
) -> Result<TraceReport, Failure> {
    let options = Options {
        include_last_profiler_step: args.include_last_step,
        ..Options::default()
    };
    analyse_inputs(inputs, &options).map_err(Failure::usage)
}
