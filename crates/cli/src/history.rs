//! The history as the commands use it: a finished run recorded from what it wrote (the same reading `history
//! rebuild` does later), and a run named on the command line (a directory, a bundle, an id) found again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use infer_doctor_core::figures::{RequestSamples, figures};
use infer_doctor_host::archive;
use infer_doctor_report::{DiagnosisDocument, RunDocument, SCHEMA_VERSION};
use infer_doctor_store::{NewRun, RunKind, Store, fingerprint};
use serde_json::{Value, json};

use crate::args::HistoryFlags;
use crate::bundle;

/// The longest unpacking of a bundle's tarball may take.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Opens `explicit`, or the default history file.
pub fn open(explicit: Option<&Path>) -> anyhow::Result<Store> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => infer_doctor_store::default_path().ok_or_else(|| {
            anyhow!("no history file: neither XDG_DATA_HOME nor HOME is set; give --history FILE")
        })?,
    };
    Ok(Store::open(&path)?)
}

/// A measured run as the history keeps it and `compare` reads it.
pub struct Measured {
    pub kind: RunKind,
    pub started_at: String,
    /// The measured run; for a diagnosis, its loaded probe (or what its evidence holds of the client's view).
    pub document: RunDocument,
    pub samples: Option<RequestSamples>,
    /// (finding id, severity).
    pub findings: Vec<(String, String)>,
}

impl Measured {
    pub fn target(&self) -> String {
        self.document.target["url"]
            .as_str()
            .unwrap_or("unknown")
            .trim_end_matches('/')
            .to_string()
    }

    pub fn model(&self) -> String {
        let d = &self.document;
        d.config["model"]
            .as_str()
            .or_else(|| d.target["model_ids"][0].as_str())
            .or_else(|| {
                d.server
                    .as_ref()
                    .and_then(|s| s.models.first().map(String::as_str))
            })
            .unwrap_or("unknown")
            .to_string()
    }

    /// What makes two runs comparable: the request shape and the load, not the seed, the output paths or the
    /// timeouts.
    pub fn fingerprint(&self) -> String {
        let c = &self.document.config;
        let load: Value = [
            "endpoint",
            "stream",
            "ignore_eos",
            "shape",
            "input_tokens",
            "output_tokens",
            "prefix_tokens",
            "prefix_groups",
            "dataset",
            "sweep",
        ]
        .iter()
        .map(|k| (k.to_string(), c[*k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
        fingerprint(&json!({ "load": load, "workload": self.document.workload }))
    }

    pub fn new_run(&self, dir: Option<PathBuf>) -> anyhow::Result<NewRun> {
        Ok(NewRun {
            kind: self.kind,
            started_at: self.started_at.clone(),
            target: self.target(),
            model: self.model(),
            fingerprint: self.fingerprint(),
            dir,
            document: serde_json::to_string(&self.document)?,
            figures: figures(&self.document.summary)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            samples: self.samples.clone(),
            findings: self.findings.clone(),
        })
    }
}

/// A bench run directory (`run.json`, `requests.jsonl`).
fn from_run_dir(dir: &Path, kind: RunKind) -> anyhow::Result<Measured> {
    let mut problems = Vec::new();
    let run = bundle::read_run_dir(dir, None, &mut problems)?;
    let samples = (!run.requests.is_empty())
        .then(|| RequestSamples::from_records(&run.requests, &run.document.summary));
    Ok(Measured {
        kind,
        started_at: run.document.started_at.clone(),
        document: run.document,
        samples,
        findings: Vec::new(),
    })
}

/// A diagnosis: its loaded probe's run directory where the bundle has one, else the client's view its evidence
/// holds; the findings from the diagnosis.
pub fn from_diagnosis(doc: &DiagnosisDocument, bundle_dir: Option<&Path>) -> Measured {
    let findings = doc
        .diagnosis
        .findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                serde_json::to_value(f.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let loaded = bundle_dir
        .map(|d| d.join("loaded"))
        .filter(|d| d.join("run.json").is_file())
        .and_then(|d| from_run_dir(&d, RunKind::Diagnose).ok());
    let mut measured = loaded.unwrap_or_else(|| {
        let e = &doc.evidence;
        let summary = e.client.clone().unwrap_or_default();
        let samples =
            (!e.requests.is_empty()).then(|| RequestSamples::from_records(&e.requests, &summary));
        Measured {
            kind: RunKind::Diagnose,
            started_at: doc.created_at.clone(),
            document: RunDocument {
                schema_version: SCHEMA_VERSION,
                tool: doc.tool.clone(),
                command_line: Vec::new(),
                started_at: doc.created_at.clone(),
                wall_seconds: 0.0,
                interrupted: false,
                target: doc.target.clone(),
                config: Value::Null,
                workload: serde_json::to_value(&e.workload).unwrap_or_default(),
                host: Value::Null,
                summary,
                sweep: None,
                server: e.server.clone(),
                shard: None,
                merged_from: Vec::new(),
                formulas: RunDocument::formulas(),
            },
            samples,
            findings: Vec::new(),
        }
    });
    measured.findings = findings;
    measured
}

/// What a directory holds: a diagnose bundle (`diagnosis.json`, or `loaded/run.json` not yet diagnosed) or a
/// bench run directory.
pub fn read_dir(dir: &Path) -> anyhow::Result<Measured> {
    let diagnosis = dir.join("diagnosis.json");
    if diagnosis.is_file() {
        let text = std::fs::read_to_string(&diagnosis)
            .with_context(|| format!("reading {}", diagnosis.display()))?;
        let doc: DiagnosisDocument = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a diagnosis.json", diagnosis.display()))?;
        return Ok(from_diagnosis(&doc, Some(dir)));
    }
    if dir.join("loaded").join("run.json").is_file() {
        return from_run_dir(&dir.join("loaded"), RunKind::Diagnose);
    }
    if dir.join("run.json").is_file() {
        return from_run_dir(dir, RunKind::Bench);
    }
    Err(anyhow!(
        "{}: no run.json, loaded/run.json or diagnosis.json (a bench run directory or a diagnose bundle)",
        dir.display()
    ))
}

/// A run named on the command line: a directory, a bundle's `.tar.gz`, or a history id (`12`, `#12`).
pub fn resolve(spec: &str, history: Option<&Path>) -> anyhow::Result<(String, Measured)> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok((spec.to_string(), read_dir(path)?));
    }
    if path.is_file() && archive::is_archive(path) {
        let scratch = tempfile::tempdir()?;
        let root = archive::unpack(path, scratch.path(), ARCHIVE_TIMEOUT)
            .map_err(|why| anyhow!("{spec}: {why}"))?;
        return Ok((spec.to_string(), read_dir(&root)?));
    }
    let Ok(id) = spec.trim_start_matches('#').parse::<i64>() else {
        return Err(anyhow!(
            "{spec}: not a run directory, a bundle (.tar.gz) or a history id (e.g. 12)"
        ));
    };
    let store = open(history)?;
    by_id(&store, id).map(|m| (format!("#{id}"), m))
}

/// A recorded run by id.
pub fn by_id(store: &Store, id: i64) -> anyhow::Result<Measured> {
    let stored = store.run(id)?.ok_or_else(|| {
        anyhow!(
            "history {}: no run #{id} (`infer-doctor history` lists them)",
            store.path().display()
        )
    })?;
    let document: RunDocument = serde_json::from_str(&stored.document)
        .with_context(|| format!("history {}: run #{id}'s document", store.path().display()))?;
    Ok(Measured {
        kind: stored.row.kind,
        started_at: stored.row.started_at,
        document,
        samples: stored.samples,
        findings: Vec::new(),
    })
}

/// Records a finished run unless `--no-history`; the history is an index, so a failure to record is a warning,
/// never a failed run. `keep` is the run's directory when it outlives the command (`--out`).
pub fn record(
    flags: &HistoryFlags,
    measured: &Measured,
    keep: Option<&Path>,
    quiet: bool,
) -> Option<i64> {
    if flags.no_history {
        return None;
    }
    if figures(&measured.document.summary).is_empty() {
        if !quiet {
            eprintln!("not recorded in the history: no client measurements to compare later");
        }
        return None;
    }
    let recorded = (|| {
        let mut store = open(flags.history.as_deref())?;
        let dir = keep.map(std::path::absolute).transpose()?;
        anyhow::Ok(store.record(&measured.new_run(dir)?)?)
    })();
    match recorded {
        Ok(id) => {
            if !quiet {
                eprintln!("recorded in the history as #{id}");
            }
            Some(id)
        }
        Err(e) => {
            eprintln!("warning: not recorded in the history: {e:#} (--no-history skips it)");
            None
        }
    }
}

/// Every run directory under `roots` (each a run directory itself, or holding them up to two levels down).
pub fn find_run_dirs(roots: &[PathBuf]) -> Vec<PathBuf> {
    fn is_run(dir: &Path) -> bool {
        ["run.json", "diagnosis.json", "loaded/run.json"]
            .iter()
            .any(|f| dir.join(f).is_file())
    }
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        if is_run(dir) {
            out.push(dir.to_path_buf());
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        children.sort();
        for child in children {
            walk(&child, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    for root in roots {
        walk(root, 2, &mut out);
    }
    out
}
