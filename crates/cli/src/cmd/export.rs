//! `infer-doctor export grafana|alerts`: the dashboard or the rule file the export room generates, written to a
//! file or standard output, with what the server's dialect cannot show listed on standard error.

use anyhow::Context;
use infer_doctor_export::{Omission, Target, alerts, grafana};

use crate::args::{ExportArgs, ExportCommand, ExportTargetArgs};
use crate::cmd::diagnose::thresholds;
use crate::{Failure, exit};

pub fn run(args: &ExportArgs) -> Result<u8, Failure> {
    match &args.what {
        ExportCommand::Grafana(args) => {
            let dashboard = grafana::dashboard(&target(args)?);
            let json =
                serde_json::to_string_pretty(&dashboard.json).context("rendering the dashboard")?;
            super::write_or_print(args.output.as_deref(), &(json + "\n"))?;
            eprintln!(
                "{} panels: {}",
                dashboard.panels.len(),
                dashboard.panels.join("; ")
            );
            tell_omitted("panels", &dashboard.omitted);
        }
        ExportCommand::Alerts(args) => {
            let thresholds = thresholds(args.thresholds.as_deref())?;
            let rules = alerts::rule_file(&target(&args.target)?, &thresholds, args.hold);
            super::write_or_print(args.target.output.as_deref(), &rules.yaml)?;
            eprintln!("{} alerts: {}", rules.alerts.len(), rules.alerts.join(", "));
            tell_omitted("alerts", &rules.omitted);
        }
    }
    Ok(exit::OK)
}

fn target(args: &ExportTargetArgs) -> Result<Target, Failure> {
    Target::new(
        args.dialect,
        &args.selector,
        &args.pod_label,
        args.rate_window,
    )
    .map_err(Failure::usage)
}

fn tell_omitted(what: &str, omitted: &[Omission]) {
    if !omitted.is_empty() {
        eprintln!("left out ({what} this server's metrics cannot fill):");
        for o in omitted {
            eprintln!("  {}: {}", o.what, o.why);
        }
    }
}
