//! `infer-doctor history`: one figure across the recorded runs of a target (a table, a chart, the drift finding),
//! `history rebuild` from run directories, and `history pin` to name a baseline.

use std::path::Path;

use anyhow::anyhow;
use infer_doctor_core::Severity;
use infer_doctor_core::figures::parse_figure;
use infer_doctor_diagnose::drift::{DriftSettings, drift};
use infer_doctor_report::history::{Trend, TrendRun};
use infer_doctor_store::{RunFilter, Store};

use crate::args::{HistoryArgs, HistoryCommand, HistoryPinArgs, HistoryRebuildArgs, ReportFormat};
use crate::history;
use crate::{Failure, exit};

pub fn run(args: &HistoryArgs) -> Result<u8, Failure> {
    let mut store = history::open(args.history.as_deref()).map_err(Failure::usage)?;
    match &args.action {
        Some(HistoryCommand::Rebuild(rebuild_args)) => rebuild(&mut store, rebuild_args),
        Some(HistoryCommand::Pin(pin_args)) => pin(&mut store, pin_args),
        None => trend(&store, args),
    }
}

fn trend(store: &Store, args: &HistoryArgs) -> Result<u8, Failure> {
    let figure = parse_figure(&args.metric)
        .map_err(|e| Failure::usage(anyhow!("--metric {}: {e}", args.metric)))?;
    // As runs record it: the URL as bench shows it, so `host:8000/v1/` finds runs of `http://host:8000/v1`.
    let target = args
        .target
        .as_deref()
        .map(|url| {
            infer_doctor_load::Target::parse(url, None)
                .map(|t| t.display_url().trim_end_matches('/').to_string())
                .map_err(|e| Failure::usage(anyhow!("--target {url}: {e}")))
        })
        .transpose()?;
    let latest = store
        .runs(&RunFilter {
            target: target.clone(),
            model: args.model.clone(),
            last: Some(1),
            ..RunFilter::default()
        })
        .map_err(Failure::usage)?;
    let Some(latest) = latest.into_iter().next() else {
        println!(
            "no runs recorded{} in {}",
            target
                .as_ref()
                .map(|t| format!(" for {t}"))
                .unwrap_or_default(),
            store.path().display()
        );
        return Ok(exit::OK);
    };
    let same_key = RunFilter {
        target: Some(latest.target.clone()),
        model: Some(latest.model.clone()),
        fingerprint: Some(latest.fingerprint.clone()),
        last: Some(args.last as usize),
    };
    let rows = store.runs(&same_key).map_err(Failure::usage)?;
    let others = store
        .runs(&RunFilter {
            fingerprint: None,
            last: None,
            ..same_key.clone()
        })
        .map_err(Failure::usage)?
        .len()
        .saturating_sub(
            store
                .runs(&RunFilter {
                    last: None,
                    ..same_key
                })
                .map_err(Failure::usage)?
                .len(),
        );
    let runs: Vec<TrendRun> = rows
        .iter()
        .map(|r| TrendRun {
            id: r.id,
            started_at: r.started_at.clone(),
            kind: r.kind.as_str().to_string(),
            value: r.figures.get(figure.name).copied(),
            findings: r.findings.clone(),
        })
        .collect();
    let settings = DriftSettings::default();
    let series: Vec<(String, f64)> = runs
        .iter()
        .filter_map(|r| r.value.map(|v| (format!("#{} {}", r.id, r.started_at), v)))
        .collect();
    let trend = Trend {
        figure,
        metric: figure.name,
        target: latest.target,
        model: latest.model,
        workload: latest.fingerprint,
        runs,
        drift: drift(figure, &series, &settings),
        drift_min_runs: settings.min_runs,
    };
    let mut text = match args.format {
        ReportFormat::Term => trend.term(),
        ReportFormat::Md => trend.markdown(),
        ReportFormat::Html => trend.html(),
        ReportFormat::Json => trend.json(),
    };
    if others > 0 && matches!(args.format, ReportFormat::Term | ReportFormat::Md) {
        text += &format!(
            "{others} other runs of this target and model had other workloads or load shapes; they are left out\n"
        );
    }
    super::write_or_print(args.output.as_deref(), &text)?;
    Ok(match &trend.drift {
        Some(f) if f.severity == Severity::Critical => exit::GATE_FAILED,
        _ => exit::OK,
    })
}

fn rebuild(store: &mut Store, args: &HistoryRebuildArgs) -> Result<u8, Failure> {
    for dir in &args.dirs {
        if !dir.is_dir() {
            return Err(Failure::usage(anyhow!(
                "{}: not a directory",
                dir.display()
            )));
        }
    }
    let found = history::find_run_dirs(&args.dirs);
    if found.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no run directory (run.json, diagnosis.json or loaded/run.json) under {}",
            args.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut recorded = 0;
    for dir in &found {
        let outcome = history::read_dir(dir).and_then(|measured| {
            let absolute = std::path::absolute(dir)?;
            Ok(store.record(&measured.new_run(Some(absolute))?)?)
        });
        match outcome {
            Ok(id) => {
                recorded += 1;
                println!("#{id} {}", dir.display());
            }
            Err(e) => eprintln!("warning: skipped {}: {e:#}", dir.display()),
        }
    }
    println!(
        "recorded {recorded} of {} run directories in {}",
        found.len(),
        store.path().display()
    );
    Ok(if recorded == 0 { exit::USAGE } else { exit::OK })
}

fn pin(store: &mut Store, args: &HistoryPinArgs) -> Result<u8, Failure> {
    let path = Path::new(&args.run);
    let id = if path.is_dir() {
        let measured = history::read_dir(path).map_err(Failure::usage)?;
        let absolute = std::path::absolute(path).map_err(Failure::usage)?;
        let run = measured.new_run(Some(absolute)).map_err(Failure::usage)?;
        store.record(&run).map_err(Failure::usage)?
    } else {
        let id = args
            .run
            .trim_start_matches('#')
            .parse::<i64>()
            .map_err(|_| {
                Failure::usage(anyhow!(
                    "{}: not a history id (e.g. 12) or a run directory",
                    args.run
                ))
            })?;
        if store.run(id).map_err(Failure::usage)?.is_none() {
            return Err(Failure::usage(anyhow!(
                "history {}: no run #{id}",
                store.path().display()
            )));
        }
        id
    };
    store.set_baseline(&args.name, id).map_err(Failure::usage)?;
    println!("baseline {} is run #{id}", args.name);
    Ok(exit::OK)
}
