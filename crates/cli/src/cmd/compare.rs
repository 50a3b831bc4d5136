//! `infer-doctor compare A B`: two runs (directories, bundles, history ids or a pinned baseline) side by side,
//! with intervals, verdicts, the server-side reason, and `--fail-on` gates for CI.

use anyhow::anyhow;
use infer_doctor_core::comparison::parse_gates;
use infer_doctor_diagnose::compare::{CompareSettings, RunView, compare};
use infer_doctor_report::compare::{Labels, junit, markdown, term};

use crate::args::{CompareArgs, CompareFormat};
use crate::history::{self, Measured};
use crate::{Failure, exit};

pub fn run(args: &CompareArgs) -> Result<u8, Failure> {
    let gates = args
        .fail_on
        .as_deref()
        .map(parse_gates)
        .transpose()
        .map_err(Failure::usage)?
        .unwrap_or_default();
    let ((baseline_label, baseline), (compared_label, compared)) = runs(args)?;
    let settings = CompareSettings {
        noise: args.noise,
        ..CompareSettings::default()
    };
    let comparison = compare(view(&baseline), view(&compared), &gates, &settings);
    let labels = Labels {
        baseline: baseline_label,
        compared: compared_label,
    };
    let warnings = comparability_warnings(&baseline, &compared);
    let text = match args.format {
        CompareFormat::Term => term(&comparison, &labels, &warnings),
        CompareFormat::Md => markdown(&comparison, &labels, &warnings),
        CompareFormat::Junit => junit(&comparison, &labels),
        CompareFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "baseline": labels.baseline,
                "compared": labels.compared,
                "warnings": warnings,
                "server_reason": comparison.server_reason(),
                "comparison": comparison,
            }))
            .map_err(Failure::usage)?
                + "\n"
        }
    };
    super::write_or_print(args.output.as_deref(), &text)?;
    Ok(if comparison.failed() {
        exit::GATE_FAILED
    } else {
        exit::OK
    })
}

fn view(m: &Measured) -> RunView<'_> {
    RunView {
        summary: &m.document.summary,
        samples: m.samples.as_ref(),
        server: m.document.server.as_ref(),
    }
}

type Named = (String, Measured);

fn runs(args: &CompareArgs) -> Result<(Named, Named), Failure> {
    let history = args.history.as_deref();
    match (&args.baseline, args.runs.as_slice()) {
        (Some(name), [compared]) => {
            let store = history::open(history).map_err(Failure::usage)?;
            let id = store.baseline(name).map_err(Failure::usage)?.ok_or_else(|| {
                Failure::usage(anyhow!(
                    "--baseline {name}: no baseline of that name in {} (`history pin {name} RUN` names one)",
                    store.path().display()
                ))
            })?;
            let baseline = history::by_id(&store, id).map_err(Failure::usage)?;
            Ok((
                (format!("{name} (#{id})"), baseline),
                history::resolve(compared, history).map_err(Failure::usage)?,
            ))
        }
        (None, [a, b]) => Ok((
            history::resolve(a, history).map_err(Failure::usage)?,
            history::resolve(b, history).map_err(Failure::usage)?,
        )),
        (Some(_), _) => Err(Failure::usage(anyhow!(
            "with --baseline NAME, give only the compared run"
        ))),
        (None, _) => Err(Failure::usage(anyhow!(
            "give two runs (baseline, then compared), or --baseline NAME and one run"
        ))),
    }
}

/// Differences that make a comparison mean less than it seems: another target, model or workload.
fn comparability_warnings(a: &Measured, b: &Measured) -> Vec<String> {
    let mut warnings = Vec::new();
    for (what, x, y) in [
        ("targets", a.target(), b.target()),
        ("models", a.model(), b.model()),
    ] {
        if x != y {
            warnings.push(format!("the runs have different {what}: {x} vs {y}"));
        }
    }
    if a.fingerprint() != b.fingerprint() {
        warnings.push(
            "the runs had different workloads or load shapes: a change may be the workload's, not the server's"
                .into(),
        );
    }
    for (label, m) in [("baseline", a), ("compared", b)] {
        if m.document.interrupted {
            warnings.push(format!(
                "the {label} run was interrupted: it covers part of its load"
            ));
        }
    }
    warnings
}
