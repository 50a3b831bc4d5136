//! `infer-doctor bench merge DIR..`: shards of one run (`bench --shard I/N --out DIR`, from one machine or many)
//! read back, checked to be one run, and written as the run directory one process would have produced.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use infer_doctor_core::aggregate::AggregateConfig;
use infer_doctor_core::shard::{self, ShardInput};
use infer_doctor_report::RunDocument;
use infer_doctor_report::document::MergedShard;
use serde_json::Value;

use crate::args::{BenchMergeArgs, Format};
use crate::bundle::{RunDir, read_run_dir};
use crate::{Failure, exit, rundir};

/// The settings that make two shards parts of one run: the schedule, the prompts and what was asked of the server.
/// Timeouts, HTTP/2, the tokenizer's path and the URL (one service, reached by each machine its own way) may differ.
const SAME_RUN_KEYS: [&str; 13] = [
    "seed",
    "shape",
    "stop",
    "warmup",
    "endpoint",
    "model",
    "stream",
    "ignore_eos",
    "input_tokens",
    "output_tokens",
    "prefix_tokens",
    "prefix_groups",
    "slo",
];

pub async fn run(args: &BenchMergeArgs) -> Result<u8, Failure> {
    // A shard whose run started before this is a previous run's, left on the volume under the same path.
    let not_before_us = args.started_within.map(|within| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(within).as_micros() as u64
    });
    if let Some(wait) = args.wait {
        wait_for_shards(&args.dirs, wait, not_before_us, args.quiet).await?;
    }
    let mut problems = Vec::new();
    let mut runs = Vec::new();
    for dir in &args.dirs {
        let run = read_run_dir(dir, None, &mut problems).map_err(Failure::usage)?;
        if let (Some(not_before), Some(started)) =
            (not_before_us, run.document.shard.map(|s| s.started_unix_us))
            && started < not_before
        {
            return Err(Failure::usage(anyhow!(
                "{}: its run started {}, before --started-within allows ({}): a previous run's shard",
                dir.join("run.json").display(),
                unix_us_text(started),
                unix_us_text(not_before)
            )));
        }
        runs.push((dir.clone(), run));
    }
    same_run(&runs)?;
    let (first_dir, first) = &runs[0];
    let config = AggregateConfig {
        open_loop: first.document.summary.latency.open_loop,
        expect_exact_output: first.document.config["ignore_eos"] == true,
        slo: serde_json::from_value(first.document.config["slo"].clone()).unwrap_or_default(),
    };
    let mut inputs = Vec::new();
    for (dir, run) in &runs {
        let Some(shard_run) = run.document.shard else {
            return Err(Failure::usage(anyhow!(
                "{}: run.json records no shard or clock (written by an older infer-doctor, or not by bench): it \
                 cannot be placed on a common clock",
                dir.join("run.json").display()
            )));
        };
        inputs.push(ShardInput {
            name: dir.display().to_string(),
            run: shard_run,
            records: run.requests.clone(),
            client: run.document.summary.client.clone(),
            wall_seconds: run.document.wall_seconds,
        });
    }
    let merged = shard::merge(config, inputs).map_err(Failure::usage)?;
    let mut by_index: Vec<&(PathBuf, RunDir)> = runs.iter().collect();
    by_index.sort_by_key(|(_, r)| r.document.shard.map(|s| s.index));
    let merged_from: Vec<MergedShard> = by_index
        .iter()
        .zip(&merged.offsets_us)
        .map(|((dir, run), &offset_us)| {
            let s = run.document.shard.unwrap_or(merged.run);
            MergedShard {
                index: s.index,
                dir: dir.display().to_string(),
                started_unix_us: s.started_unix_us,
                offset_us,
                requests: run.requests.len() as u64,
                client: run.document.summary.client.clone(),
                warnings: run.document.summary.warnings.clone(),
                server: run.document.server.clone(),
            }
        })
        .collect();
    // Every shard scraped the same server on its own clock: the view with the most scrapes stands for the run
    // (its scrapes, moved onto the common clock, are the merged run's), and every shard's are kept beside it.
    let chosen = (0..by_index.len())
        .max_by_key(|&i| by_index[i].1.scrapes.len())
        .filter(|&i| !by_index[i].1.scrapes.is_empty());
    let server = chosen.and_then(|i| by_index[i].1.document.server.clone());
    let scrapes = chosen.map(|i| (by_index[i].0.as_path(), merged.offsets_us[i]));
    let mut summary = merged.summary;
    summary.warnings.extend(problems);
    let started = UNIX_EPOCH + Duration::from_micros(merged.run.started_unix_us);
    let document = RunDocument {
        schema_version: infer_doctor_report::SCHEMA_VERSION,
        tool: RunDocument::tool(),
        command_line: rundir::redacted_command_line(),
        started_at: humantime::format_rfc3339_micros(started).to_string(),
        wall_seconds: merged.wall_seconds,
        interrupted: runs.iter().any(|(_, r)| r.document.interrupted),
        target: first.document.target.clone(),
        config: merged_config(&first.document.config),
        workload: first.document.workload.clone(),
        host: first.document.host.clone(),
        summary,
        sweep: None,
        server,
        formulas: RunDocument::formulas(),
        shard: Some(merged.run),
        merged_from,
    };
    if let Some(out) = &args.out {
        write(out, &document, &merged.records, &by_index, scrapes).map_err(Failure::usage)?;
    }
    let heading = format!(
        "{} shards of {} merged: {} requests on one clock",
        runs.len(),
        first_dir.display(),
        merged.records.len()
    );
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&document).map_err(Failure::usage)?
        ),
        Format::Term => {
            println!(
                "{}",
                infer_doctor_report::term::render(&document.summary, &heading)
            );
            if let Some(out) = &args.out {
                println!("wrote {}", out.display());
            }
        }
    }
    Ok(if document.summary.requests.ok == 0 {
        exit::NOTHING_SUCCEEDED
    } else {
        exit::OK
    })
}

/// The whole run's settings: a shard's, less its place among the shards.
fn merged_config(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.insert("shards".into(), Value::from(1));
    }
    config
}

/// Refuses shards whose schedule, prompts or requests differ, naming the setting and both directories.
fn same_run(runs: &[(PathBuf, RunDir)]) -> Result<(), Failure> {
    let Some((first_dir, first)) = runs.first() else {
        return Err(Failure::usage(anyhow!("no shard directory given")));
    };
    for (dir, run) in &runs[1..] {
        let differs = |what: &str, a: &Value, b: &Value| {
            Failure::usage(anyhow!(
                "{}: {what} {b}, but {}: {what} {a}: shards of different runs",
                dir.display(),
                first_dir.display()
            ))
        };
        for key in SAME_RUN_KEYS {
            let (a, b) = (&first.document.config[key], &run.document.config[key]);
            if a != b {
                return Err(differs(key, a, b));
            }
        }
        if first.document.workload != run.document.workload {
            return Err(differs(
                "workload",
                &first.document.workload,
                &run.document.workload,
            ));
        }
    }
    Ok(())
}

/// When a shard's run started, as text for an error.
fn unix_us_text(us: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(us)).to_string()
}

/// Whether `dir` holds a finished shard: a readable run.json (a shard writes it last), from a run that started no
/// earlier than `not_before_us` when given.
fn finished(dir: &Path, not_before_us: Option<u64>) -> bool {
    let path = dir.join("run.json");
    let Some(not_before) = not_before_us else {
        return path.is_file();
    };
    std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|doc| doc["shard"]["started_unix_us"].as_u64())
        .is_some_and(|started| started >= not_before)
}

/// Waits until every directory holds a finished shard (see `finished`), for at most `limit`.
async fn wait_for_shards(
    dirs: &[PathBuf],
    limit: Duration,
    not_before_us: Option<u64>,
    quiet: bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    let mut told = false;
    loop {
        let missing: Vec<&PathBuf> = dirs
            .iter()
            .filter(|d| !finished(d, not_before_us))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = missing.iter().map(|d| d.display().to_string()).collect();
            let fresh = if not_before_us.is_some() {
                " from this run"
            } else {
                ""
            };
            return Err(Failure::usage(anyhow!(
                "after waiting {}: no run.json{fresh} yet in {}: those shards have not finished",
                humantime::format_duration(limit),
                names.join(", ")
            )));
        }
        if !quiet && !told {
            eprintln!(
                "bench merge: waiting for {} of {} shards to finish",
                missing.len(),
                dirs.len()
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
    }
}

/// The merged run directory: `run.json`, `requests.jsonl` on the common clock, and under `shards/I/` each shard's
/// `run.json` and `server_metrics.jsonl` as it recorded them; `scrapes` (a shard's directory and its offset, µs)
/// becomes the merged `server_metrics.jsonl`, each scrape moved onto the common clock.
fn write(
    out: &Path,
    document: &RunDocument,
    records: &[infer_doctor_core::RequestRecord],
    shards: &[&(PathBuf, RunDir)],
    scrapes: Option<(&Path, u64)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating --out {}", out.display()))?;
    if let Some((dir, offset_us)) = scrapes {
        let mut lines = String::new();
        for mut line in infer_doctor_load::scrape::read_jsonl(&dir.join("server_metrics.jsonl"))? {
            line.t += offset_us as f64 / 1e6;
            lines += &serde_json::to_string(&line)?;
            lines.push('\n');
        }
        let path = out.join("server_metrics.jsonl");
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut lines = String::new();
    for record in records {
        lines += &serde_json::to_string(record)?;
        lines.push('\n');
    }
    let path = out.join("requests.jsonl");
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    for (dir, run) in shards {
        let index = run.document.shard.map_or(0, |s| s.index);
        let into = out.join("shards").join(index.to_string());
        std::fs::create_dir_all(&into).with_context(|| format!("creating {}", into.display()))?;
        for name in ["run.json", "server_metrics.jsonl"] {
            let from = dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, into.join(name)).with_context(|| {
                    format!("copying {} into {}", from.display(), into.display())
                })?;
            }
        }
    }
    rundir::write(out, document)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_runs_shard_is_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!finished(dir.path(), None) && !finished(dir.path(), Some(0)));
        let doc =
            |started: u64| serde_json::json!({"shard": {"started_unix_us": started}}).to_string();
        std::fs::write(dir.path().join("run.json"), doc(1_000)).unwrap();
        assert!(finished(dir.path(), None));
        assert!(finished(dir.path(), Some(1_000)));
        assert!(
            !finished(dir.path(), Some(1_001)),
            "a stale run.json passed"
        );
        // Half written: not yet.
        std::fs::write(dir.path().join("run.json"), "{\"shard\": {").unwrap();
        assert!(!finished(dir.path(), Some(0)));
    }
}
