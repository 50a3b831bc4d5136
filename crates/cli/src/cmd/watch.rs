//! `infer-doctor watch`: a server's signals and findings, re-diagnosed every interval from its own metrics (or the
//! Prometheus that scrapes it) by the same playbook as `diagnose`, as a live view, a check for cron, or JSON lines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use clap::Parser;
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::summary::RunSummary;
use infer_doctor_core::{Evidence, Finding, Severity};
use infer_doctor_diagnose::changes::{ChangeKind, changes};
use infer_doctor_diagnose::{Thresholds, diagnose};
use infer_doctor_load::scrape::{ScrapeSpec, scrape_once};
use infer_doctor_load::{ApiKey, Cancel, Target};
use infer_doctor_observe::dialect::Dialect;
use infer_doctor_observe::prometheus::FleetView;
use infer_doctor_observe::server::RecentScrapes;
use infer_doctor_report::markdown::severity_label;
use tokio::sync::mpsc;

use crate::args::{Cli, Command, DiagnoseArgs, WatchArgs, WatchFormat};
use crate::bundle::{self, Gathered};
use crate::server_watch::{MetricsEndpoint, forced_dialect, read_scrape};
use crate::{Failure, exit};

/// Scrapes closer than this say more about the scraper than the server.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The probe's requests per interval: enough for a TTFT and an ITL, too few to load any server.
const PROBE_REQUESTS: u64 = 2;

pub async fn run(args: Box<WatchArgs>) -> Result<u8, Failure> {
    if args.interval < MIN_INTERVAL {
        return Err(Failure::usage(anyhow!(
            "--interval {:?}: at least {MIN_INTERVAL:?}",
            args.interval
        )));
    }
    if args.window < args.interval {
        return Err(Failure::usage(anyhow!(
            "--window {:?} is shorter than --interval {:?}: it must hold at least two scrapes",
            args.window,
            args.interval
        )));
    }
    if !args.once && args.format == WatchFormat::Tui && !std::io::stdout().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "the live view needs a terminal: give --format jsonl to pipe the findings' changes, or --once"
        )));
    }
    let mut watcher = Watcher {
        thresholds: crate::cmd::diagnose::thresholds(args.thresholds.as_deref())?,
        probe: Probe::new(&args)?,
        source: Source::open(&args).await?,
    };
    if args.once {
        return once(&mut watcher, &args).await;
    }
    let source = watcher.source.name().to_string();
    let span = watcher.source.span(args.interval);
    let snapshots = observe(watcher, args.interval);
    match args.format {
        WatchFormat::Jsonl => jsonl(&source, snapshots).await,
        WatchFormat::Tui => crate::watch_view::run(source, span, snapshots).await,
    }
}

/// What one look at the server gave.
pub struct Snapshot {
    pub at: SystemTime,
    /// The span the findings judge; `None` until there is one (two scrapes).
    pub window: Option<ServerWindow>,
    /// What the server did just now: the last interval between scrapes (with --prometheus, the window again).
    pub latest: Option<ServerWindow>,
    /// The findings over `window`; `None` when this look could not diagnose (no window yet, or it failed).
    pub findings: Option<Vec<Finding>>,
    /// Why this look failed (the scrape, the query or the probe), naming what failed.
    pub problem: Option<String>,
}

/// Where the server's signals come from.
enum Source {
    /// Its own `/metrics`, scraped every interval; the window slides over the scrapes.
    Server {
        spec: ScrapeSpec,
        clock: Instant,
        recent: RecentScrapes,
        forced: Option<Dialect>,
        url: String,
    },
    /// A Prometheus that scrapes the fleet, asked for its window every interval.
    Prometheus {
        url: String,
        selector: String,
        window: Duration,
        group_by: String,
        forced: Option<Dialect>,
        /// Boxed: a fleet's view is large beside the other source's fields.
        latest: Option<Box<FleetView>>,
    },
}

impl Source {
    async fn open(args: &WatchArgs) -> Result<Source, Failure> {
        let forced = forced_dialect(args.dialect.as_deref())?;
        if let Some(url) = &args.prometheus {
            // Checked now, not at the first query; and only the URL as shown (no credentials, no query string)
            // is kept, since it is printed in the view's title and in every event line.
            let shown = infer_doctor_load::Target::parse(url, None)
                .map_err(|e| Failure::usage(anyhow!("--prometheus: {e}")))?
                .display_url();
            return Ok(Source::Prometheus {
                url: shown,
                selector: args.selector.clone(),
                window: args.window,
                group_by: args.group_by.clone(),
                forced,
                latest: None,
            });
        }
        let url = args
            .url
            .as_deref()
            .expect("clap requires --url or --prometheus");
        let endpoint =
            MetricsEndpoint::find(&target(url, args)?, args.metrics_url.as_deref()).await?;
        Ok(Source::Server {
            spec: ScrapeSpec {
                client: endpoint.client,
                path: endpoint.path,
                interval: args.interval,
                jsonl: None,
            },
            clock: Instant::now(),
            recent: RecentScrapes::new(args.window.as_secs_f64()),
            forced,
            url: endpoint.url,
        })
    }

    fn name(&self) -> &str {
        match self {
            Source::Server { url, .. } | Source::Prometheus { url, .. } => url,
        }
    }

    /// What the numbers cover, for the view's titles.
    fn span(&self, interval: Duration) -> String {
        match self {
            Source::Server { recent, .. } => format!(
                "findings judge the last {}, sparklines show each {} interval",
                humantime::format_duration(Duration::from_secs_f64(recent.span_seconds())),
                humantime::format_duration(interval)
            ),
            Source::Prometheus { window, .. } => format!(
                "Prometheus's last {} (rates and quantiles as PromQL computes them), refreshed every {}",
                humantime::format_duration(*window),
                humantime::format_duration(interval)
            ),
        }
    }

    /// Takes a scrape, or asks Prometheus again.
    async fn refresh(&mut self) -> Result<(), String> {
        match self {
            Source::Server {
                spec,
                clock,
                recent,
                forced,
                url,
            } => {
                let line = scrape_once(spec, *clock).await;
                recent.push(line.t, read_scrape(&line, *forced, url)?);
            }
            Source::Prometheus {
                url,
                selector,
                window,
                group_by,
                forced,
                latest,
            } => {
                let view =
                    crate::cmd::metrics::fleet(url, selector, *window, group_by, *forced).await;
                *latest = Some(Box::new(view.map_err(|f| format!("{:#}", f.error))?));
            }
        }
        Ok(())
    }

    /// The evidence over the window, and what the server did just now; `None` before there is a window.
    fn evidence(&self) -> Option<(Evidence, ServerWindow)> {
        match self {
            Source::Server { recent, .. } => {
                let latest = recent.latest_interval()?;
                let mut evidence = Evidence::default();
                bundle::set_server_scrapes(&mut evidence, recent.scrapes().to_vec());
                Some((evidence, latest))
            }
            Source::Prometheus { latest, .. } => {
                let view = latest.as_ref()?;
                let evidence = Evidence {
                    server: Some(view.fleet.clone()),
                    pods: view.pods.clone(),
                    pod_health: view.health.clone(),
                    scheduler: view.picker(),
                    ..Default::default()
                };
                Some((evidence, view.fleet.clone()))
            }
        }
    }
}

fn target(url: &str, args: &WatchArgs) -> Result<Target, Failure> {
    let key = match &args.api_key {
        Some(key) => ApiKey::new(key.clone()).map_err(Failure::usage)?,
        None => None,
    };
    Target::parse(url, key).map_err(|e| Failure::usage(anyhow!("--url: {e}")))
}

/// `--probe`: diagnose's single-user probe, made tiny, sent once per interval.
struct Probe {
    url: String,
    args: DiagnoseArgs,
    /// The longest one probe may take: the interval.
    limit: Duration,
}

impl Probe {
    fn new(args: &WatchArgs) -> Result<Option<Probe>, Failure> {
        let (true, Some(url)) = (args.probe, &args.url) else {
            return Ok(None);
        };
        // Short prompts and outputs: the probe measures latency, it must not add load worth the name. Its outputs
        // are exact (ignore_eos), so each measures the same number of tokens.
        let mut argv: Vec<&str> = vec![
            "infer-doctor",
            "diagnose",
            "--url",
            url,
            "--input-tokens",
            "64",
            "--output-tokens",
            "16",
            "--ignore-eos",
        ];
        for (flag, value) in [
            ("--model", &args.model),
            ("--api-key", &args.api_key),
            ("--metrics-url", &args.metrics_url),
            ("--dialect", &args.dialect),
        ] {
            if let Some(value) = value {
                argv.extend([flag, value.as_str()]);
            }
        }
        let Command::Diagnose(diagnose_args) = Cli::try_parse_from(argv)?.command else {
            unreachable!("a diagnose command line parses as diagnose")
        };
        Ok(Some(Probe {
            url: url.clone(),
            args: *diagnose_args,
            limit: args.interval,
        }))
    }

    async fn run(&self) -> Result<RunSummary, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("probe: {e}"))?;
        let bench =
            crate::cmd::diagnose::bench_args(&self.url, &self.args, 1, PROBE_REQUESTS, dir.path())
                .map_err(|f| format!("probe: {:#}", f.error))?;
        let executed =
            crate::cmd::bench::execute(&bench, Cancel::never().or_at(Instant::now() + self.limit))
                .await
                .map_err(|f| format!("probe of {}: {:#}", self.url, f.error))?;
        // A probe the interval cut short is judged by nobody, as `diagnose` refuses an interrupted probe.
        if executed.document.interrupted {
            return Err(format!(
                "probe of {}: not finished within the interval; single-user latency left unknown",
                self.url
            ));
        }
        Ok(executed.document.summary)
    }
}

struct Watcher {
    source: Source,
    thresholds: Thresholds,
    probe: Option<Probe>,
}

impl Watcher {
    /// Probes (with --probe), reads the server once more and diagnoses the window as `diagnose` would.
    async fn look(&mut self) -> Snapshot {
        let single_user = match &self.probe {
            Some(probe) => Some(probe.run().await),
            None => None,
        };
        let refreshed = self.source.refresh().await;
        let read = refreshed.is_ok();
        let mut snapshot = Snapshot {
            at: SystemTime::now(),
            window: None,
            latest: None,
            findings: None,
            problem: refreshed.err(),
        };
        let Some((evidence, latest)) = self.source.evidence() else {
            return snapshot;
        };
        let mut gathered = Gathered {
            evidence,
            ..Default::default()
        };
        // The probe's outputs end by length in the server's finish reasons beside the real traffic's: whether
        // outputs run away cannot be told from them any more, so that rule stays unknown.
        gathered.evidence.exact_output_lengths = self.probe.is_some();
        match single_user {
            Some(Ok(summary)) => gathered.evidence.single_user = Some(summary),
            Some(Err(why)) => {
                snapshot.problem.get_or_insert(why);
            }
            None => {}
        }
        bundle::add_server_config(&mut gathered, None);
        // A failed read leaves the window as it was: judging it again would report nothing new. A failed probe
        // does not: the server's window is judged without its single-user latency.
        if read {
            snapshot.findings = Some(diagnose(&gathered.evidence, &self.thresholds).findings);
        }
        snapshot.window = gathered.evidence.server;
        snapshot.latest = Some(latest);
        snapshot
    }
}

/// Looks at the server every `interval` in a task of its own, so the view stays responsive while a scrape is
/// slow; it stops when the receiver is dropped.
fn observe(mut watcher: Watcher, interval: Duration) -> mpsc::Receiver<Snapshot> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        // A look that overran its interval is not followed by a burst of catch-up looks.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if tx.send(watcher.look().await).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// `--once`: the first diagnosis (two scrapes --interval apart, or one Prometheus window), printed.
async fn once(watcher: &mut Watcher, args: &WatchArgs) -> Result<u8, Failure> {
    // A server's first scrape has no window yet; its second has one: at most two looks.
    let mut looks = 0;
    let (snapshot, findings) = loop {
        let mut snapshot = watcher.look().await;
        looks += 1;
        if let Some(problem) = &snapshot.problem {
            return Err(Failure::usage(anyhow!("{problem}")));
        }
        match snapshot.findings.take() {
            Some(findings) => break (snapshot, findings),
            None if looks < 2 => tokio::time::sleep(args.interval).await,
            None => {
                return Err(Failure::usage(anyhow!(
                    "{}: no window after two scrapes",
                    watcher.source.name()
                )));
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        WatchFormat::Jsonl => write_events(&mut out, &finding_events(&snapshot, &[], &findings)),
        WatchFormat::Tui => writeln!(
            out,
            "{}",
            summary(watcher.source.name(), &snapshot, &findings)
        ),
    };
    if let Err(e) = written {
        return Err(Failure::usage(anyhow!("writing the findings: {e}")));
    }
    Ok(
        if findings.iter().any(|f| f.severity == Severity::Critical) {
            exit::GATE_FAILED
        } else {
            exit::OK
        },
    )
}

/// `--once`'s plain text: what was judged, then one line per finding, most severe first.
fn summary(source: &str, snapshot: &Snapshot, findings: &[Finding]) -> String {
    let span = snapshot
        .window
        .as_ref()
        .map_or(String::new(), |w| format!(" over {:.1} s", w.seconds()));
    let mut text = match findings.len() {
        0 => format!("{source}{span}: no findings"),
        1 => format!("{source}{span}: 1 finding"),
        n => format!("{source}{span}: {n} findings"),
    };
    for f in findings {
        text.push_str(&format!(
            "\n{:<8}  {}  {}",
            severity_label(f.severity),
            f.id,
            f.verdict
        ));
    }
    text
}

/// `--format jsonl` without --once: a line for each change, flushed as it happens, until Ctrl-C.
async fn jsonl(source: &str, mut snapshots: mpsc::Receiver<Snapshot>) -> Result<u8, Failure> {
    let mut reported: Vec<Finding> = Vec::new();
    let mut failing = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let snapshot = tokio::select! {
            snapshot = snapshots.recv() => snapshot,
            _ = &mut ctrl_c => return Ok(exit::INTERRUPTED),
        };
        let Some(snapshot) = snapshot else {
            return Ok(exit::OK);
        };
        let mut events = Vec::new();
        // A failing source is told once when it starts failing and once when it recovers, not every interval.
        match (&snapshot.problem, failing) {
            (Some(problem), false) => events.push(Event {
                source: Some(source),
                error: Some(problem),
                ..Event::new(&snapshot, "scrape_failed")
            }),
            (None, true) => events.push(Event {
                source: Some(source),
                ..Event::new(&snapshot, "scrape_recovered")
            }),
            _ => {}
        }
        failing = snapshot.problem.is_some();
        if let Some(findings) = &snapshot.findings {
            events.extend(finding_events(&snapshot, &reported, findings));
        }
        let written = write_events(&mut std::io::stdout().lock(), &events);
        if let Some(findings) = &snapshot.findings {
            reported.clone_from(findings);
        }
        if let Err(e) = written {
            // Whoever read the lines has gone (`watch … | head`): end quietly, as the rest of the tool does.
            return if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(exit::BROKEN_PIPE)
            } else {
                Err(Failure::usage(anyhow!("writing the findings: {e}")))
            };
        }
    }
}

/// One line of `--format jsonl`: when, what happened, and the finding or the failure it is about.
#[derive(serde::Serialize)]
struct Event<'a> {
    time: String,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Event<'_> {
    fn new(snapshot: &Snapshot, event: &'static str) -> Self {
        Event {
            time: humantime::format_rfc3339_millis(snapshot.at).to_string(),
            event,
            id: None,
            severity: None,
            verdict: None,
            source: None,
            error: None,
        }
    }
}

/// One line per finding that appeared, cleared or changed severity since `before`.
fn finding_events<'a>(
    snapshot: &Snapshot,
    before: &'a [Finding],
    after: &'a [Finding],
) -> Vec<Event<'a>> {
    changes(before, after)
        .into_iter()
        .map(|change| {
            let f = change.finding;
            Event {
                id: Some(&f.id),
                severity: Some(f.severity),
                verdict: Some(&f.verdict),
                ..Event::new(
                    snapshot,
                    match change.kind {
                        ChangeKind::Appeared => "appeared",
                        ChangeKind::Cleared => "cleared",
                        ChangeKind::Changed => "changed",
                    },
                )
            }
        })
        .collect()
}

/// Writes each event as one line and flushes, so a pipe sees it now and not when a buffer fills.
fn write_events(out: &mut impl Write, events: &[Event<'_>]) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut *out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
