//! The local history of runs and diagnoses, so a baseline outlives the terminal it was measured in: one SQLite
//! file under the XDG data directory, keyed by target, model and workload; run directories stay the source of truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infer_doctor_core::figures::RequestSamples;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use thiserror::Error;

/// Each schema change, in order; a database's `user_version` is how many it has had.
const MIGRATIONS: &[&str] = &[
    // 1: runs with their headline figures and findings.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        target TEXT NOT NULL,
        model TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        dir TEXT UNIQUE,
        document TEXT NOT NULL,
        samples TEXT
    );
    CREATE TABLE figures (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE findings (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        severity TEXT NOT NULL
    );",
    // 2: named baselines, and the index trend queries walk.
    "CREATE TABLE baselines (
        name TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE
    );
    CREATE INDEX runs_by_key ON runs (target, model, fingerprint, started_at);",
];

/// How long a writer waits for another process holding the file (two runs finishing at once).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("history {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("history {path}: cannot create its directory: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "history {path}: schema version {found} was written by a newer infer-doctor (this one knows {known}); \
         use --history FILE for another file"
    )]
    Newer {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("history {path}: cannot store the run's samples: {detail}")]
    Encode { path: PathBuf, detail: String },
    #[error("history {path}: run {id}: stored {what} is not readable: {detail}")]
    Corrupt {
        path: PathBuf,
        id: i64,
        what: &'static str,
        detail: String,
    },
}

/// What kind of run a row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Bench,
    Diagnose,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Bench => "bench",
            RunKind::Diagnose => "diagnose",
        }
    }

    fn parse(text: &str) -> RunKind {
        if text == "diagnose" {
            RunKind::Diagnose
        } else {
            RunKind::Bench
        }
    }
}

/// A run to record.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub kind: RunKind,
    /// RFC 3339 UTC; orders the history.
    pub started_at: String,
    pub target: String,
    pub model: String,
    pub fingerprint: String,
    /// The run directory, absolute; a run recorded again from the same directory updates its row.
    pub dir: Option<PathBuf>,
    /// The measured run's `run.json` (for a diagnosis, its loaded probe's), what `compare` reads back.
    pub document: String,
    pub figures: Vec<(String, f64)>,
    pub samples: Option<RequestSamples>,
    /// (finding id, severity as its JSON name).
    pub findings: Vec<(String, String)>,
}

/// A stored run as lists show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub kind: RunKind,
    pub started_at: String,
    pub target: String,
    pub model: String,
    pub fingerprint: String,
    pub dir: Option<PathBuf>,
    pub figures: BTreeMap<String, f64>,
    pub findings: Vec<String>,
}

/// Which runs a list returns; empty fields match any.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub target: Option<String>,
    pub model: Option<String>,
    pub fingerprint: Option<String>,
    /// The most recent this many, still returned oldest first.
    pub last: Option<usize>,
}

pub struct Store {
    connection: Connection,
    path: PathBuf,
}

/// `$XDG_DATA_HOME/infer-doctor/history.sqlite`, or `~/.local/share/…` as the XDG spec's default.
pub fn default_path() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("infer-doctor").join("history.sqlite"))
}

/// A short, stable name for a workload: FNV-1a over its canonical JSON (object keys sorted), so the same flags
/// give the same fingerprint in every version and on every machine.
pub fn fingerprint(workload: &serde_json::Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in workload.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Names the history file in every SQLite error.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating it and its directory if needed) and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let sqlite = sqlite_error(path);
        let connection = Connection::open(path).map_err(&sqlite)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(&sqlite)?;
        connection
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;")
            .map_err(&sqlite)?;
        let mut store = Store {
            connection,
            path: path.to_path_buf(),
        };
        store.migrate(MIGRATIONS.len())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_error(&self.path)
    }

    /// Applies the migrations this database has not had, up to `target`, each in its own transaction. The version
    /// is read inside a write transaction, so two processes opening a new file at once do not both migrate it.
    fn migrate(&mut self, target: usize) -> Result<(), StoreError> {
        let sqlite = sqlite_error(&self.path);
        loop {
            let tx = self
                .connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(&sqlite)?;
            let version: u32 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(&sqlite)?;
            if version as usize > MIGRATIONS.len() {
                return Err(StoreError::Newer {
                    path: self.path.clone(),
                    found: version,
                    known: MIGRATIONS.len() as u32,
                });
            }
            if version as usize >= target {
                return Ok(());
            }
            tx.execute_batch(MIGRATIONS[version as usize])
                .map_err(&sqlite)?;
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(&sqlite)?;
            tx.commit().map_err(&sqlite)?;
        }
    }

    /// Records a run and returns its id. A run from a directory already recorded is updated in place: its id,
    /// and the baselines pinned to it, stay.
    pub fn record(&mut self, run: &NewRun) -> Result<i64, StoreError> {
        let sqlite = sqlite_error(&self.path);
        let samples = run
            .samples
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Encode {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        let dir = run.dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let tx = self.connection.transaction().map_err(&sqlite)?;
        let existing: Option<i64> = match &dir {
            Some(dir) => tx
                .query_row("SELECT id FROM runs WHERE dir = ?1", params![dir], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(&sqlite)?,
            None => None,
        };
        let values = params![
            run.kind.as_str(),
            run.started_at,
            run.target,
            run.model,
            run.fingerprint,
            dir,
            run.document,
            samples
        ];
        let id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE runs SET kind = ?1, started_at = ?2, target = ?3, model = ?4, fingerprint = ?5,
                     dir = ?6, document = ?7, samples = ?8 WHERE id = ?9",
                    rusqlite::params_from_iter(values.iter().copied().chain([&id as &dyn rusqlite::ToSql])),
                )
                .map_err(&sqlite)?;
                tx.execute("DELETE FROM figures WHERE run_id = ?1", params![id])
                    .map_err(&sqlite)?;
                tx.execute("DELETE FROM findings WHERE run_id = ?1", params![id])
                    .map_err(&sqlite)?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO runs (kind, started_at, target, model, fingerprint, dir, document, samples)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    values,
                )
                .map_err(&sqlite)?;
                tx.last_insert_rowid()
            }
        };
        for (name, value) in &run.figures {
            tx.execute(
                "INSERT OR REPLACE INTO figures (run_id, name, value) VALUES (?1, ?2, ?3)",
                params![id, name, value],
            )
            .map_err(&sqlite)?;
        }
        for (finding, severity) in &run.findings {
            tx.execute(
                "INSERT INTO findings (run_id, id, severity) VALUES (?1, ?2, ?3)",
                params![id, finding, severity],
            )
            .map_err(&sqlite)?;
        }
        tx.commit().map_err(&sqlite)?;
        Ok(id)
    }

    /// The runs matching `filter`, oldest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let limit = filter.last.map_or(-1, |n| n as i64);
        let mut rows = self.select(
            "(?1 IS NULL OR target = ?1) AND (?2 IS NULL OR model = ?2) AND (?3 IS NULL OR fingerprint = ?3)
             ORDER BY started_at DESC, id DESC LIMIT ?4",
            params![filter.target, filter.model, filter.fingerprint, limit],
        )?;
        rows.reverse();
        Ok(rows)
    }

    /// Runs by a `WHERE` clause, with their figures and findings.
    fn select(
        &self,
        clause: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!(
                "SELECT id, kind, started_at, target, model, fingerprint, dir FROM runs WHERE {clause}"
            ))
            .map_err(self.sqlite())?;
        let mut rows: Vec<RunRow> = statement
            .query_map(values, |row| {
                Ok(RunRow {
                    id: row.get(0)?,
                    kind: RunKind::parse(&row.get::<_, String>(1)?),
                    started_at: row.get(2)?,
                    target: row.get(3)?,
                    model: row.get(4)?,
                    fingerprint: row.get(5)?,
                    dir: row.get::<_, Option<String>>(6)?.map(PathBuf::from),
                    figures: BTreeMap::new(),
                    findings: Vec::new(),
                })
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(self.sqlite())?;
        for row in &mut rows {
            row.figures = self.figures(row.id)?;
            row.findings = self.finding_ids(row.id)?;
        }
        Ok(rows)
    }

    fn figures(&self, id: i64) -> Result<BTreeMap<String, f64>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name, value FROM figures WHERE run_id = ?1")
            .map_err(self.sqlite())?;
        statement
            .query_map(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sqlite())
    }

    fn finding_ids(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT id FROM findings WHERE run_id = ?1 ORDER BY rowid")
            .map_err(self.sqlite())?;
        statement
            .query_map(params![id], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sqlite())
    }

    /// One run with its document and samples, or `None` when no run has this id.
    pub fn run(&self, id: i64) -> Result<Option<StoredRun>, StoreError> {
        let found: Option<(String, Option<String>)> = self
            .connection
            .query_row(
                "SELECT document, samples FROM runs WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.sqlite())?;
        let Some((document, samples)) = found else {
            return Ok(None);
        };
        let row = self
            .select("id = ?1", params![id])?
            .pop()
            .ok_or_else(|| self.corrupt(id, "row", "vanished while read".into()))?;
        let samples = samples
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| self.corrupt(id, "samples", e.to_string()))?;
        Ok(Some(StoredRun {
            row,
            document,
            samples,
        }))
    }

    fn corrupt(&self, id: i64, what: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            id,
            what,
            detail,
        }
    }

    /// Names run `id` as baseline `name`, replacing what the name pointed at.
    pub fn set_baseline(&mut self, name: &str, id: i64) -> Result<(), StoreError> {
        self.connection
            .execute(
                "INSERT OR REPLACE INTO baselines (name, run_id) VALUES (?1, ?2)",
                params![name, id],
            )
            .map(drop)
            .map_err(self.sqlite())
    }

    pub fn baseline(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.connection
            .query_row(
                "SELECT run_id FROM baselines WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sqlite())
    }
}

/// A run with what `compare` needs of it.
#[derive(Clone, Debug)]
pub struct StoredRun {
    pub row: RunRow,
    pub document: String,
    pub samples: Option<RequestSamples>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, started_at: &str, dir: Option<&str>, throughput: f64) -> NewRun {
        NewRun {
            kind: RunKind::Bench,
            started_at: started_at.into(),
            target: target.into(),
            model: "m".into(),
            fingerprint: fingerprint(&serde_json::json!({"concurrency": 8})),
            dir: dir.map(PathBuf::from),
            document: "{}".into(),
            figures: vec![("throughput".into(), throughput)],
            samples: Some(RequestSamples {
                ttft_ms: vec![1.0, 2.0],
                ..RequestSamples::default()
            }),
            findings: vec![("capacity.kv_saturated".into(), "critical".into())],
        }
    }

    #[test]
    fn runs_come_back_oldest_first_with_figures_findings_and_samples() {
        let scratch = tempfile::tempdir().unwrap();
        let mut store = Store::open(&scratch.path().join("a/b/history.sqlite")).unwrap();
        let late = store
            .record(&run("http://x", "2026-12-02T00:00:00Z", None, 420.0))
            .unwrap();
        let early = store
            .record(&run("http://x", "2026-12-01T00:00:00Z", None, 610.0))
            .unwrap();
        store
            .record(&run("http://y", "2026-12-03T00:00:00Z", None, 1.0))
            .unwrap();
        let rows = store
            .runs(&RunFilter {
                target: Some("http://x".into()),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [early, late]);
        assert_eq!(rows[0].figures["throughput"], 610.0);
        assert_eq!(rows[0].findings, ["capacity.kv_saturated"]);
        let last = store
            .runs(&RunFilter {
                last: Some(1),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(last[0].target, "http://y");
        let stored = store.run(early).unwrap().unwrap();
        assert_eq!(stored.samples.unwrap().ttft_ms, [1.0, 2.0]);
        assert!(store.run(9999).unwrap().is_none());
    }

    #[test]
    fn recording_a_directory_again_updates_its_row_and_keeps_its_pins() {
        let scratch = tempfile::tempdir().unwrap();
        let mut store = Store::open(&scratch.path().join("h.sqlite")).unwrap();
        store
            .record(&run("t", "2026-12-01T00:00:00Z", Some("/runs/1"), 1.0))
            .unwrap();
        let id = store
            .record(&run("t", "2026-12-01T00:00:00Z", Some("/runs/1"), 2.0))
            .unwrap();
        let rows = store.runs(&RunFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id, rows[0].figures["throughput"]), (id, 2.0));
        store.set_baseline("main", id).unwrap();
        assert_eq!(store.baseline("main").unwrap(), Some(id));
        assert_eq!(store.baseline("other").unwrap(), None);
        // Recorded a third time (a rebuild, a second pin): same id, the pin kept, one row of findings.
        let again = store
            .record(&run("t", "2026-12-01T00:00:00Z", Some("/runs/1"), 3.0))
            .unwrap();
        assert_eq!(again, id);
        assert_eq!(store.baseline("main").unwrap(), Some(id));
        let rows = store.runs(&RunFilter::default()).unwrap();
        assert_eq!(
            (rows[0].figures["throughput"], rows[0].findings.len()),
            (3.0, 1)
        );
    }

    #[test]
    fn a_first_version_database_is_migrated_keeping_its_runs() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("h.sqlite");
        {
            // A database as the first schema left it, with a run in it.
            let connection = Connection::open(&path).unwrap();
            let mut store = Store {
                connection,
                path: path.clone(),
            };
            store.migrate(1).unwrap();
            store
                .record(&run("t", "2026-12-01T00:00:00Z", None, 5.0))
                .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let version: u32 = store
            .connection
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let id = store.runs(&RunFilter::default()).unwrap()[0].id;
        store.set_baseline("b", id).unwrap();
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused_by_name() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("h.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = Store::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("schema version 99") && error.contains("h.sqlite"),
            "{error}"
        );
    }

    #[test]
    fn the_fingerprint_is_stable_and_tells_workloads_apart() {
        let a = fingerprint(&serde_json::json!({"b": 1, "a": 2}));
        assert_eq!(a, fingerprint(&serde_json::json!({"a": 2, "b": 1})));
        assert_ne!(a, fingerprint(&serde_json::json!({"a": 2, "b": 2})));
        assert_eq!(a.len(), 16);
    }
}
