//! Where finished requests go: into an aggregate owned by the worker thread that finished them (no shared lock
//! on the hot path), and as one line each onto `requests.jsonl`, written and flushed by a thread of its own.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use infer_doctor_core::aggregate::AggregateConfig;
use infer_doctor_core::{RequestRecord, RunAggregate};

use crate::LoadError;

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's aggregate for the recorder with the given id.
    static LOCAL: RefCell<Option<(u64, Arc<Mutex<RunAggregate>>)>> = const { RefCell::new(None) };
}

/// Appends records to a JSONL file from its own thread, flushing whenever it has caught up.
struct JsonlWriter {
    tx: mpsc::Sender<RequestRecord>,
    thread: JoinHandle<Result<(), LoadError>>,
}

impl JsonlWriter {
    fn open(path: &Path, append: bool) -> Result<JsonlWriter, LoadError> {
        let write_err = |source| LoadError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = File::options()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(write_err)?;
        let (tx, rx) = mpsc::channel::<RequestRecord>();
        let path: PathBuf = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("requests.jsonl".into())
            .spawn(move || {
                let write_err = |source| LoadError::Write {
                    path: path.display().to_string(),
                    source,
                };
                let mut out = BufWriter::new(file);
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(rec) = next {
                        serde_json::to_writer(&mut out, &rec).map_err(|e| write_err(e.into()))?;
                        out.write_all(b"\n").map_err(write_err)?;
                        next = rx.try_recv().ok();
                    }
                    // Caught up: make every finished request durable before waiting for more.
                    out.flush().map_err(write_err)?;
                }
                out.flush().map_err(write_err)
            })
            .map_err(|e| LoadError::Write {
                path: "requests.jsonl writer thread".into(),
                source: e,
            })?;
        Ok(JsonlWriter { tx, thread })
    }
}

pub struct Recorder {
    id: u64,
    config: AggregateConfig,
    shards: Mutex<Vec<Arc<Mutex<RunAggregate>>>>,
    jsonl: Option<JsonlWriter>,
}

impl Recorder {
    /// `jsonl`: the file to append each record to (created, or appended to when `append`).
    pub fn new(
        config: AggregateConfig,
        jsonl: Option<(&Path, bool)>,
    ) -> Result<Recorder, LoadError> {
        Ok(Recorder {
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            config,
            shards: Mutex::new(Vec::new()),
            jsonl: jsonl
                .map(|(p, append)| JsonlWriter::open(p, append))
                .transpose()?,
        })
    }

    fn local_shard(&self) -> Arc<Mutex<RunAggregate>> {
        LOCAL.with(|cell| {
            let mut cell = cell.borrow_mut();
            match cell.as_ref() {
                Some((id, shard)) if *id == self.id => shard.clone(),
                _ => {
                    let shard = Arc::new(Mutex::new(RunAggregate::new(self.config.clone())));
                    self.shards.lock().expect("shard list").push(shard.clone());
                    *cell = Some((self.id, shard.clone()));
                    shard
                }
            }
        })
    }

    pub fn finish(&self, rec: RequestRecord) {
        // Uncontended: only this thread locks its shard until the run merges them.
        self.local_shard().lock().expect("shard").add(&rec);
        if let Some(w) = &self.jsonl {
            let _ = w.tx.send(rec);
        }
    }

    /// Merges every thread's aggregate and waits for the JSONL file to be complete.
    pub fn close(self) -> (RunAggregate, Result<(), LoadError>) {
        let mut total = RunAggregate::new(self.config.clone());
        for shard in self.shards.lock().expect("shard list").iter() {
            total.merge(&shard.lock().expect("shard"));
        }
        let written = match self.jsonl {
            Some(JsonlWriter { tx, thread }) => {
                drop(tx);
                thread.join().unwrap_or_else(|_| {
                    Err(LoadError::Write {
                        path: "requests.jsonl".into(),
                        source: std::io::Error::other("writer panicked"),
                    })
                })
            }
            None => Ok(()),
        };
        (total, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_many_threads_are_merged_and_each_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let recorder =
            Arc::new(Recorder::new(AggregateConfig::default(), Some((&path, false))).unwrap());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let recorder = recorder.clone();
                s.spawn(move || {
                    for i in 0..250 {
                        recorder.finish(RequestRecord {
                            id: t * 1000 + i,
                            end_us: 10,
                            ..Default::default()
                        });
                    }
                });
            }
        });
        let recorder = Arc::into_inner(recorder).unwrap();
        let (agg, written) = recorder.close();
        written.unwrap();
        assert_eq!(agg.sent(), 1000);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut ids: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<RequestRecord>(l).unwrap().id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1000);
    }
}
