//! Watches the server's own metrics: beside a run (the load room scrapes on the run clock, the observe room reads
//! each scrape as canonical signals, the window is summarised for the report), and where the scrapes are for `watch`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use infer_doctor_core::ServerReadings;
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_load::Target;
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::scrape::{ScrapeLine, ScrapeSpec, Scraper};
use infer_doctor_observe::{dialect, exposition, server};

use crate::Failure;

/// What the scrapes gave, as they arrive.
#[derive(Default)]
struct Gathered {
    readings: Vec<(f64, ServerReadings)>,
    gaps: usize,
    /// The first reason a scrape could not be used.
    first_problem: Option<String>,
}

pub struct ServerWatch {
    scraper: Scraper,
    gathered: Arc<Mutex<Gathered>>,
    url: String,
}

/// How the watch ended: the server's window, or why there is none.
pub struct Watched {
    pub window: Option<ServerWindow>,
    pub note: Option<String>,
}

impl ServerWatch {
    /// Starts scraping `metrics_url` (default: the target's `/metrics`) every `interval`; `None` interval or
    /// zero turns it off.
    pub async fn start(
        target: &Target,
        metrics_url: Option<&str>,
        dialect: Option<&str>,
        interval: Duration,
        jsonl: Option<std::path::PathBuf>,
    ) -> Result<Option<ServerWatch>, Failure> {
        let forced = forced_dialect(dialect)?;
        if interval.is_zero() {
            return Ok(None);
        }
        let endpoint = MetricsEndpoint::find(target, metrics_url).await?;
        let gathered = Arc::new(Mutex::new(Gathered::default()));
        let sink = gathered.clone();
        let source = endpoint.url.clone();
        let scraper = Scraper::start(
            ScrapeSpec {
                client: endpoint.client,
                path: endpoint.path,
                interval,
                jsonl,
            },
            move |line| {
                let mut g = sink.lock().expect("scrape lock");
                match read_scrape(line, forced, &source) {
                    Ok(readings) => g.readings.push((line.t, readings)),
                    Err(why) => {
                        g.gaps += 1;
                        g.first_problem.get_or_insert(why);
                    }
                }
            },
        )
        .await
        .map_err(Failure::usage)?;
        Ok(Some(ServerWatch {
            scraper,
            gathered,
            url: endpoint.url,
        }))
    }

    pub async fn finish(self) -> Watched {
        let scraped = self.scraper.finish().await;
        let g = std::mem::take(&mut *self.gathered.lock().expect("scrape lock"));
        let window = server::summarize(&g.readings);
        let note = match (&scraped, &window, g.first_problem) {
            (Err(e), _, _) => Some(format!("server metrics: {e}")),
            (_, None, Some(why)) => Some(format!(
                "server metrics unavailable ({why}); pass --metrics-url, or --scrape-interval 0 to stop trying"
            )),
            (_, None, None) => Some(format!(
                "server metrics: fewer than two scrapes of {} (run longer than the scrape interval)",
                self.url
            )),
            (_, Some(_), _) if g.gaps > 0 => Some(format!(
                "server metrics: {} of {} scrapes failed and were left out as gaps",
                g.gaps,
                g.gaps + g.readings.len()
            )),
            _ => None,
        };
        Watched { window, note }
    }
}

/// `--dialect`, checked.
pub fn forced_dialect(name: Option<&str>) -> Result<Option<dialect::Dialect>, Failure> {
    name.map(|d| {
        d.parse::<dialect::Dialect>()
            .map_err(|e| Failure::usage(anyhow!("--dialect: {e}")))
    })
    .transpose()
}

/// Where a server's metrics are: `--metrics-url`, else the target's `/metrics` (or TensorRT-LLM's own path).
pub struct MetricsEndpoint {
    pub client: Arc<HttpClient>,
    /// The request path (with any prefix).
    pub path: String,
    /// The whole URL, for messages.
    pub url: String,
}

impl MetricsEndpoint {
    pub async fn find(
        target: &Target,
        metrics_url: Option<&str>,
    ) -> Result<MetricsEndpoint, Failure> {
        let (metrics_target, path) = match metrics_url {
            Some(url) => {
                let t = Target::parse(url, target.api_key.clone())
                    .map_err(|e| Failure::usage(anyhow!("--metrics-url: {e}")))?;
                let path = if t.base_path.is_empty() {
                    "/metrics".to_string()
                } else {
                    t.path("")
                };
                (t, path)
            }
            None => (target.clone(), target.path("/metrics")),
        };
        let client = Arc::new(HttpClient::new(
            Arc::new(metrics_target),
            ClientOptions {
                http2: false,
                pool_size: 1,
                connect_timeout: Duration::from_secs(2),
            },
        ));
        // TensorRT-LLM's `trtllm-serve` serves its metrics at /prometheus/metrics: take it when /metrics is 404.
        let mut path = path;
        if metrics_url.is_none()
            && let Err(e) = client.get(&path, Duration::from_secs(2)).await
            && e.contains("HTTP 404")
        {
            let alternative = target.path("/prometheus/metrics");
            if client
                .get(&alternative, Duration::from_secs(2))
                .await
                .is_ok()
            {
                path = alternative;
            }
        }
        let url = format!(
            "{}://{}{path}",
            client.target().scheme(),
            client.target().authority()
        );
        Ok(MetricsEndpoint { client, path, url })
    }
}

/// One scrape of `source` read as canonical signals, or why it cannot be (the failure, an empty body, no known
/// dialect), naming the source.
pub fn read_scrape(
    line: &ScrapeLine,
    forced: Option<dialect::Dialect>,
    source: &str,
) -> Result<ServerReadings, String> {
    match (&line.text, &line.error) {
        (Some(text), _) => {
            dialect::read(&exposition::parse(text), forced, source).map_err(|e| e.to_string())
        }
        (None, Some(e)) => Err(format!("{source}: {e}")),
        (None, None) => Err(format!("{source}: empty scrape")),
    }
}
