//! `infer-doctor metrics show URL|FILE` and `metrics diff A B`: a server's Prometheus exposition read in its own
//! dialect and printed as canonical signals, for one scrape or for the interval between two.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use infer_doctor_core::ServerReadings;
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_host::gpu;
use infer_doctor_load::Target;
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_observe::dialect::{self, Dialect};
use infer_doctor_observe::exposition::parse;
use infer_doctor_observe::llamacpp;
use infer_doctor_observe::prometheus::{self, FleetView, Scope};
use infer_doctor_observe::server::snapshot;
use infer_doctor_report::server::server_table;

use crate::args::{Format, MetricsArgs, MetricsCommand};
use crate::server_watch::forced_dialect;
use crate::{Failure, exit};

pub async fn run(args: MetricsArgs) -> Result<u8, Failure> {
    match args.action {
        MetricsCommand::Show(a) => {
            let forced = forced_dialect(a.dialect.as_deref())?;
            if let Some(prometheus) = &a.prometheus {
                let view = fleet(prometheus, &a.selector, a.window, &a.group_by, forced).await?;
                return print_fleet(&view, a.format);
            }
            let source = a.source.as_deref().unwrap_or_default();
            let text = fetch(source).await?;
            let mut readings = read(source, &text, forced)?;
            if readings.dialect == Dialect::Dcgm.name() {
                return print_gpus(source, &text, a.format);
            }
            if readings.dialect == Dialect::LlamaCpp.name() && is_url(source) {
                add_llamacpp_capacity(source, &mut readings).await;
            }
            print(&snapshot(&readings), a.format)
        }
        MetricsCommand::Diff(a) => {
            let forced = forced_dialect(a.dialect.as_deref())?;
            let mut problems = Vec::new();
            let files = crate::bundle::read_metrics_files(
                &[a.earlier.clone(), a.later.clone()],
                a.interval.map(|d| d.as_secs_f64()),
                forced,
                &mut problems,
            )
            .map_err(Failure::usage)?;
            for p in &problems {
                eprintln!("warning: {p}");
            }
            let window = files.window().ok_or_else(|| {
                Failure::usage(anyhow!(
                    "the two scrapes must be at least a millisecond apart"
                ))
            })?;
            print(&window, a.format)
        }
    }
}

/// A client for a base URL, for one-off GETs.
fn client_for(url: &str) -> Result<HttpClient, Failure> {
    let target = Arc::new(Target::parse(url, None).map_err(Failure::usage)?);
    Ok(HttpClient::new(
        target,
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
        },
    ))
}

/// The fleet's canonical signals, per pod (told apart by `group_by`) and in total, over the last `window`, from
/// the Prometheus at `url` that scrapes it.
pub async fn fleet(
    url: &str,
    selector: &str,
    window: Duration,
    group_by: &str,
    forced: Option<Dialect>,
) -> Result<FleetView, Failure> {
    let client = client_for(url)?;
    let ask = |promql: String| {
        let client = &client;
        async move {
            let path = client.target().path(&prometheus::query_path(&promql, None));
            let body = client
                .get(&path, Duration::from_secs(30))
                .await
                .map_err(|e| Failure::usage(anyhow!("{url}: {e}")))?;
            prometheus::answer_data(&body)
                .map_err(|e| Failure::usage(anyhow!("{url}: {e} (query: {promql})")))
        }
    };
    let mut scope = Scope::new(selector, window, group_by)
        .map_err(|e| Failure::usage(anyhow!("--selector/--window: {e}")))?;
    let mut names = ask(prometheus::names_query(&scope)).await?;
    let labelled = |answer: &serde_json::Value, label: &str| {
        answer["result"]
            .as_array()
            .is_some_and(|r| r.iter().any(|s| s["metric"].get(label).is_some()))
    };
    if !labelled(&names, &scope.group_by) && scope.group_by != "instance" {
        scope.group_by = "instance".into();
        names = ask(prometheus::names_query(&scope)).await?;
    }
    let dialect = forced.or_else(|| prometheus::detect(&names)).ok_or_else(|| {
        Failure::usage(anyhow!(
            "{url}: no inference-server metrics match selector `{selector}` (give --dialect if they have other names)"
        ))
    })?;
    let mut view = FleetView::new(dialect, &scope);
    for q in prometheus::queries(dialect, &prometheus::names_in(&names), &scope) {
        view.record(&q, &ask(q.promql.clone()).await?, false);
        let all = prometheus::fleet_wide(&q, &scope);
        view.record(&all, &ask(all.promql.clone()).await?, true);
    }
    // llm-d's endpoint picker scraped beside the engines: its own window, for the whole pool.
    let names_present = prometheus::names_in(&names);
    if dialect != Dialect::LlmdEpp && names_present.iter().any(|n| Dialect::LlmdEpp.owns_name(n)) {
        let mut picker = FleetView::new(Dialect::LlmdEpp, &scope);
        for q in prometheus::queries(Dialect::LlmdEpp, &names_present, &scope) {
            let all = prometheus::fleet_wide(&q, &scope);
            picker.record(&all, &ask(all.promql.clone()).await?, true);
        }
        view.scheduler = Some(picker.fleet);
    }
    if let Some((info, x, y)) = prometheus::capacity_query(dialect, &scope) {
        view.record_capacity(&ask(info).await?, x, y);
    }
    for (health, promql) in
        prometheus::health_queries(dialect, &prometheus::names_in(&names), &scope)
    {
        view.record_health(health, &ask(promql).await?);
    }
    // About 60 points over the window, for the queue's shape over time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let step = (scope.window_seconds / 60.0).max(1.0);
    let mut answers = Vec::new();
    for q in prometheus::timeline_queries(dialect, &prometheus::names_in(&names), &scope) {
        let path = prometheus::range_path(&q.promql, now - scope.window_seconds, now, step);
        let body = client
            .get(&client.target().path(&path), Duration::from_secs(30))
            .await
            .map_err(|e| Failure::usage(anyhow!("{url}: {e}")))?;
        let data =
            prometheus::answer_data(&body).map_err(|e| Failure::usage(anyhow!("{url}: {e}")))?;
        answers.push((q, data));
    }
    view.timeline = prometheus::timeline(dialect, &answers);
    Ok(view)
}

fn print_fleet(view: &FleetView, format: Format) -> Result<u8, Failure> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(view)
                .map_err(|e| Failure::usage(anyhow::Error::from(e)))?
        ),
        Format::Term => {
            for (pod, window) in &view.pods {
                println!("── {} {pod} ──", view.group_by);
                print!("{}", server_table(window));
            }
            println!(
                "── the whole fleet ({} {}s) ──",
                view.pods.len(),
                view.group_by
            );
            print!("{}", server_table(&view.fleet));
        }
    }
    Ok(exit::OK)
}

/// dcgm-exporter speaks of GPUs, not of an engine: its scrape is shown as the GPU state `--gpu` reads from it.
fn print_gpus(source: &str, text: &str, format: Format) -> Result<u8, Failure> {
    let gpus =
        gpu::read_capture(text, source).map_err(|e| Failure::usage(anyhow!("{source}: {e}")))?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&gpus)
                .map_err(|e| Failure::usage(anyhow::Error::from(e)))?
        ),
        Format::Term => {
            let number =
                |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.0} {unit}"));
            for g in &gpus {
                println!(
                    "GPU {} {}: util {}, memory {} of {}, power {}, SM clock {}, temperature {}",
                    g.bus_id,
                    g.name,
                    number(g.utilization_percent, "%"),
                    number(g.memory_used_mib, "MiB"),
                    number(g.memory_total_mib, "MiB"),
                    number(g.power_draw_watts, "W"),
                    number(g.sm_clock_mhz, "MHz"),
                    number(g.temperature_c, "C"),
                );
            }
        }
    }
    Ok(exit::OK)
}

fn read_file(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::usage)
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// llama.cpp keeps its capacity out of `/metrics`: read it from `/props` and `/slots` beside it, if they answer.
async fn add_llamacpp_capacity(source: &str, readings: &mut ServerReadings) {
    let Ok(client) = client_for(source) else {
        return;
    };
    let get = |path: &'static str| {
        let client = &client;
        async move {
            let body = client.get(path, Duration::from_secs(5)).await.ok()?;
            serde_json::from_slice::<serde_json::Value>(&body).ok()
        }
    };
    let (props, slots) = (get("/props").await, get("/slots").await);
    if let Some(capacity) = llamacpp::capacity(props.as_ref(), slots.as_ref()) {
        llamacpp::add_to(readings, &capacity);
    }
}

/// The exposition text at a URL (`/metrics` when it names no path) or in a file.
async fn fetch(source: &str) -> Result<String, Failure> {
    if !is_url(source) {
        return read_file(Path::new(source));
    }
    let client = client_for(source)?;
    let path = if client.target().base_path.is_empty() {
        "/metrics".to_string()
    } else {
        client.target().path("")
    };
    let body = client
        .get(&path, Duration::from_secs(10))
        .await
        .map_err(|e| Failure::usage(anyhow!("{source}: {e}")))?;
    String::from_utf8(body.to_vec())
        .map_err(|_| Failure::usage(anyhow!("{source}: the body is not UTF-8")))
}

/// Parses and maps one scrape; malformed lines are reported with their numbers and the rest is used, and so are
/// the doubts of the reading (a histogram without its `+Inf` bucket).
fn read(source: &str, text: &str, forced: Option<Dialect>) -> Result<ServerReadings, Failure> {
    let scrape = parse(text);
    for e in scrape.errors.iter().take(5) {
        eprintln!("warning: {source}: {e}");
    }
    if scrape.errors.len() > 5 {
        eprintln!(
            "warning: {source}: {} more malformed lines",
            scrape.errors.len() - 5
        );
    }
    let readings = dialect::read(&scrape, forced, source).map_err(Failure::usage)?;
    for warning in &readings.warnings {
        eprintln!("warning: {source}: {warning}");
    }
    Ok(readings)
}

fn print(window: &ServerWindow, format: Format) -> Result<u8, Failure> {
    match format {
        Format::Term => {
            if !window.models.is_empty() {
                println!("model: {}", window.models.join(", "));
            }
            print!("{}", server_table(window))
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(window)
                .map_err(|e| Failure::usage(anyhow::Error::from(e)))?
        ),
    }
    Ok(exit::OK)
}
