//! Where finished requests go: into an aggregate owned by the worker thread that finished them (no shared lock
//! on the hot path), and as one line each onto `requests.jsonl`, written in batches by a thread of its own.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use infer_doctor_core::aggregate::AggregateConfig;
use infer_doctor_core::{RequestRecord, RunAggregate};

use crate::LoadError;

/// How often the writer appends what finished since its last batch: the most a crash can lose. Waking it per
/// record instead cost a futex wake-up and a write(2) per request, more than half again the client's CPU.
const WRITE_INTERVAL: Duration = Duration::from_millis(50);

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

/// What one worker thread has recorded: its share of the aggregate, and its records not yet on disk.
struct Shard {
    aggregate: RunAggregate,
    unwritten: Vec<RequestRecord>,
}

type Shards = Arc<Mutex<Vec<Arc<Mutex<Shard>>>>>;

thread_local! {
    /// This thread's shard for the recorder with the given id.
    static LOCAL: RefCell<Option<(u64, Arc<Mutex<Shard>>)>> = const { RefCell::new(None) };
}

/// Appends every shard's unwritten records to a JSONL file from its own thread, every `WRITE_INTERVAL` and
/// once more when told to stop.
struct JsonlWriter {
    /// Dropped to tell the writer to write the last batch and end.
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<(), LoadError>>,
}

impl JsonlWriter {
    fn open(path: &Path, append: bool, shards: Shards) -> Result<JsonlWriter, LoadError> {
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
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("requests.jsonl".into())
            .spawn(move || {
                let mut out = BufWriter::new(file);
                // After a failed write, keep emptying the shards so they do not grow for the rest of the run.
                let mut outcome = Ok(());
                loop {
                    let stopping = !matches!(
                        stopped.recv_timeout(WRITE_INTERVAL),
                        Err(RecvTimeoutError::Timeout)
                    );
                    let batch = take_unwritten(&shards);
                    if outcome.is_ok() {
                        outcome = write_batch(&mut out, batch).map_err(|source| LoadError::Write {
                            path: path.clone(),
                            source,
                        });
                    }
                    if stopping {
                        return outcome;
                    }
                }
            })
            .map_err(|e| LoadError::Write {
                path: "requests.jsonl writer thread".into(),
                source: e,
            })?;
        Ok(JsonlWriter { stop, thread })
    }
}

/// Every shard's records not yet written, in the order they finished.
fn take_unwritten(shards: &Shards) -> Vec<RequestRecord> {
    let mut batch = Vec::new();
    for shard in shards.lock().expect("shard list").iter() {
        batch.append(&mut shard.lock().expect("shard").unwritten);
    }
    batch.sort_by_key(|rec| rec.end_us);
    batch
}

/// Appends one batch and hands it to the OS, so a crash of this process loses nothing written here.
fn write_batch(out: &mut BufWriter<File>, batch: Vec<RequestRecord>) -> std::io::Result<()> {
    for rec in &batch {
        serde_json::to_writer(&mut *out, rec)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub struct Recorder {
    id: u64,
    config: AggregateConfig,
    shards: Shards,
    jsonl: Option<JsonlWriter>,
}

impl Recorder {
    /// `jsonl`: the file to append each record to (created, or appended to when `append`).
    pub fn new(
        config: AggregateConfig,
        jsonl: Option<(&Path, bool)>,
    ) -> Result<Recorder, LoadError> {
        let shards = Shards::default();
        Ok(Recorder {
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            config,
            jsonl: jsonl
                .map(|(p, append)| JsonlWriter::open(p, append, shards.clone()))
                .transpose()?,
            shards,
        })
    }

    fn local_shard(&self) -> Arc<Mutex<Shard>> {
        LOCAL.with(|cell| {
            let mut cell = cell.borrow_mut();
            match cell.as_ref() {
                Some((id, shard)) if *id == self.id => shard.clone(),
                _ => {
                    let shard = Arc::new(Mutex::new(Shard {
                        aggregate: RunAggregate::new(self.config.clone()),
                        unwritten: Vec::new(),
                    }));
                    self.shards.lock().expect("shard list").push(shard.clone());
                    *cell = Some((self.id, shard.clone()));
                    shard
                }
            }
        })
    }

    pub fn finish(&self, rec: RequestRecord) {
        // Contended only by the writer taking the unwritten records, once per WRITE_INTERVAL.
        let shard = self.local_shard();
        let mut shard = shard.lock().expect("shard");
        shard.aggregate.add(&rec);
        if self.jsonl.is_some() {
            shard.unwritten.push(rec);
        }
    }

    /// Waits for the JSONL file to hold every record, and merges every thread's aggregate.
    pub fn close(self) -> (RunAggregate, Result<(), LoadError>) {
        let written = match self.jsonl {
            Some(JsonlWriter { stop, thread }) => {
                drop(stop);
                thread.join().unwrap_or_else(|_| {
                    Err(LoadError::Write {
                        path: "requests.jsonl".into(),
                        source: std::io::Error::other("writer panicked"),
                    })
                })
            }
            None => Ok(()),
        };
        let mut total = RunAggregate::new(self.config.clone());
        for shard in self.shards.lock().expect("shard list").iter() {
            total.merge(&shard.lock().expect("shard").aggregate);
        }
        (total, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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

    fn lines_in(path: &Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
    }

    #[test]
    fn finished_requests_reach_the_file_while_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let recorder = Recorder::new(AggregateConfig::default(), Some((&path, false))).unwrap();
        for id in 0..10 {
            recorder.finish(RequestRecord {
                id,
                ..Default::default()
            });
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while lines_in(&path) < 10 && Instant::now() < deadline {
            std::thread::sleep(WRITE_INTERVAL / 5);
        }
        assert_eq!(
            lines_in(&path),
            10,
            "records still unwritten 5 s after they finished"
        );
        recorder.close().1.unwrap();
        assert_eq!(lines_in(&path), 10);
    }

    /// Voluntary context switches of the writer threads: each is the writer going to sleep, so one per wake-up.
    #[cfg(target_os = "linux")]
    fn writer_wakeups() -> u64 {
        let mut wakeups = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
                continue;
            };
            if name.trim_end() != "requests.jsonl" {
                continue;
            }
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            wakeups += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map(|n| n.trim().parse::<u64>().unwrap())
                .unwrap();
        }
        wakeups
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn recording_with_out_does_not_wake_the_writer_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let recorder = Recorder::new(AggregateConfig::default(), Some((&path, false))).unwrap();
        let started = Instant::now();
        // Spaced out, as requests finish in a real run: a writer woken per record would sleep between each.
        for id in 0..2000 {
            recorder.finish(RequestRecord {
                id,
                ..Default::default()
            });
            std::thread::sleep(Duration::from_micros(100));
        }
        let wakeups = writer_wakeups();
        let intervals = started.elapsed().as_secs_f64() / WRITE_INTERVAL.as_secs_f64();
        assert!(
            wakeups as f64 <= 2.0 * intervals + 10.0,
            "the writer woke {wakeups} times for 2000 records in {intervals:.0} write intervals"
        );
        recorder.close().1.unwrap();
        assert_eq!(lines_in(&path), 2000);
    }
}
