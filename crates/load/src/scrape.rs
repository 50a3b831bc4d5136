//! Scrapes the server's `/metrics` on the run's own monotonic clock while the load runs, appending every scrape
//! (or the failure that leaves a gap) to `server_metrics.jsonl`, so server rates line up with client time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::LoadError;
use crate::cancel::{Cancel, CancelHandle};
use crate::http::HttpClient;

/// One scrape as stored: when (run clock and wall clock), and the exposition text or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScrapeLine {
    /// Seconds since the run started, on the client's monotonic clock (when the scrape was sent).
    pub t: f64,
    /// Unix seconds, for labels only.
    pub unix: f64,
    /// How long the scrape took.
    pub millis: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What to scrape, how often, and where to keep it.
pub struct ScrapeSpec {
    pub client: Arc<HttpClient>,
    /// The request path of the metrics endpoint (with any prefix).
    pub path: String,
    pub interval: Duration,
    pub jsonl: Option<PathBuf>,
}

/// A scraper running beside the load; `finish` stops it and returns every line.
pub struct Scraper {
    stop: CancelHandle,
    task: JoinHandle<Result<Vec<ScrapeLine>, LoadError>>,
}

impl Scraper {
    /// Takes the baseline scrape before returning, so the server's counters cover every request of a run started
    /// afterwards; the run clock starts when it is in (the baseline is at 0 s). Then it scrapes every interval in
    /// the background. `on_scrape` sees each line as it arrives (to parse it while the run goes on); a failing or
    /// slow scrape is recorded as a gap and never stops the run.
    pub async fn start(
        spec: ScrapeSpec,
        mut on_scrape: impl FnMut(&ScrapeLine) + Send + 'static,
    ) -> Result<Scraper, LoadError> {
        let mut out = match &spec.jsonl {
            Some(path) => Some(open_append(path)?),
            None => None,
        };
        let mut keep = move |line: ScrapeLine, lines: &mut Vec<ScrapeLine>| {
            if let Some((file, path)) = out.as_mut() {
                let write = serde_json::to_writer(&mut *file, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.flush());
                write.map_err(|source| LoadError::Write {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            on_scrape(&line);
            lines.push(line);
            Ok::<(), LoadError>(())
        };
        let mut lines = Vec::new();
        let mut baseline = scrape_once(&spec, Instant::now()).await;
        baseline.t = 0.0;
        let run_start = Instant::now();
        keep(baseline, &mut lines)?;
        let (stop, cancel) = Cancel::new();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(
                tokio::time::Instant::from_std(run_start) + spec.interval,
                spec.interval.max(Duration::from_millis(10)),
            );
            // A scrape that overran its slot is not followed by a burst of catch-up scrapes.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last = false;
            while !last {
                tokio::select! {
                    _ = ticks.tick() => {}
                    // One more scrape when the run ends, so the window covers its last requests.
                    _ = cancel.cancelled() => last = true,
                }
                keep(scrape_once(&spec, run_start).await, &mut lines)?;
            }
            Ok(lines)
        });
        Ok(Scraper { stop, task })
    }

    /// Stops scraping after one final scrape and returns every line.
    pub async fn finish(self) -> Result<Vec<ScrapeLine>, LoadError> {
        self.stop.cancel();
        self.task
            .await
            .unwrap_or_else(|e| Err(LoadError::Spec(format!("the scraper stopped: {e}"))))
    }
}

/// One scrape of `spec`'s endpoint, timed from `run_start`; a failure or a timeout is the line's `error`, with any
/// API key scrubbed from what the server said.
pub async fn scrape_once(spec: &ScrapeSpec, run_start: Instant) -> ScrapeLine {
    let sent = Instant::now();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // A scrape slower than its interval is a gap, not a reason to fall behind.
    let result = spec
        .client
        .get(&spec.path, spec.interval.max(Duration::from_secs(1)))
        .await;
    let mut line = ScrapeLine {
        t: sent.saturating_duration_since(run_start).as_secs_f64(),
        unix,
        millis: sent.elapsed().as_secs_f64() * 1e3,
        error: None,
        text: None,
    };
    // A body without the key is kept as it is, not copied.
    let scrub = |text: String| match spec.client.target().scrub(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(scrubbed) => scrubbed,
    };
    match result.and_then(|body| {
        String::from_utf8(body.to_vec()).map_err(|_| "the metrics body is not UTF-8".to_string())
    }) {
        Ok(text) => line.text = Some(scrub(text)),
        Err(e) => line.error = Some(scrub(e)),
    }
    line
}

fn open_append(path: &Path) -> Result<(std::io::BufWriter<std::fs::File>, PathBuf), LoadError> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LoadError::Write {
            path: path.display().to_string(),
            source,
        })?;
    Ok((std::io::BufWriter::new(file), path.to_path_buf()))
}

/// Reads a stored `server_metrics.jsonl`; a line that is not a scrape is reported with its number.
pub fn read_jsonl(path: &Path) -> Result<Vec<ScrapeLine>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                LoadError::Spec(format!(
                    "{}:{}: not a scrape line: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}
