//! `infer-doctor trace`: reads profiler traces with the trace room and prints its analysis, or two side by side.

use infer_doctor_report::trace as render;
use infer_doctor_trace::{Options, TraceReport, analyse_files, diff::diff, trace_files};

use crate::args::{Format, TraceAnalysisArgs, TraceArgs, TraceCommand};
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
                Format::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
                Format::Term => print!("{}", render::diff_term(&changes)),
            }
        }
        None => {
            let report = analysed(&args.files, &args.analysis)?;
            match args.analysis.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Term => print!("{}", render::term(&report)),
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
    let files = trace_files(inputs).map_err(Failure::usage)?;
    analyse_files(&files, &options).map_err(Failure::usage)
}
