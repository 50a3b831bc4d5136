//! `bench --self-test`: how much load this client can generate and how exactly it times it, measured against a
//! built-in server that answers instantly. The server runs on its own thread, so its CPU is not the client's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infer_doctor_core::{PromptItem, PromptSource, RequestRecord};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::cpu;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::{Endpoint, LiveCounters, LoadShape, RunSpec, Stop, Target, Warmup};
use infer_doctor_testkit::{MockConfig, MockServer};

use crate::{Failure, exit};

/// A mock server on a one-thread runtime of its own, with that thread's id for CPU accounting.
struct ServerThread {
    server: MockServer,
    tid: u32,
    _runtime: tokio::runtime::Runtime,
}

fn start_server(config: MockConfig) -> anyhow::Result<ServerThread> {
    let tid = Arc::new(Mutex::new(None));
    let seen = tid.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || *seen.lock().expect("tid lock") = cpu::current_thread_id())
        .build()?;
    let server = runtime.block_on(async { MockServer::start(config).await })?;
    // The worker thread has started by the time the listener task is spawned on it.
    let tid = tid
        .lock()
        .expect("tid lock")
        .ok_or_else(|| anyhow::anyhow!("no /proc thread id"))?;
    Ok(ServerThread {
        server,
        tid,
        _runtime: runtime,
    })
}

struct Measured {
    streams: u64,
    tokens: u32,
    requests_per_s: f64,
    events_per_s: f64,
    client_us_per_event: f64,
    ttft_error_p99_ms: Option<f64>,
}

async fn measure(
    streams: u64,
    tokens: u32,
    itl: Duration,
    seconds: u64,
    with_truth: bool,
) -> anyhow::Result<Measured> {
    let server = start_server(MockConfig {
        ttft: if itl.is_zero() { Duration::ZERO } else { itl },
        itl,
        default_output_tokens: tokens,
        record_truth: with_truth,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("requests.jsonl");
    let spec = RunSpec {
        target: Arc::new(Target::parse(&server.server.url(), None)?),
        endpoint: Endpoint::Completions,
        model: "mock-model".into(),
        stream: true,
        ignore_eos: false,
        continuous_usage: false,
        shape: LoadShape::Closed {
            concurrency: streams,
        },
        stop: Stop::Duration(Duration::from_secs(seconds)),
        warmup: Warmup::None,
        timeouts: Timeouts {
            idle: Duration::from_secs(30),
            total: None,
        },
        connect_timeout: Duration::from_secs(10),
        http2: false,
        seed: 0,
        slo: Default::default(),
        requests_jsonl: with_truth.then(|| (jsonl.clone(), false)),
        first_id: 0,
    };
    let server_cpu_before = cpu::thread_cpu_seconds(server.tid).unwrap_or(0.0);
    let prompts = Arc::new(SizedPrompts { max_tokens: tokens });
    let out = infer_doctor_load::run(
        &spec,
        prompts,
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await?;
    let server_cpu = cpu::thread_cpu_seconds(server.tid).unwrap_or(0.0) - server_cpu_before;
    let client_cpu = (out.summary.client.cpu_seconds - server_cpu).max(0.0);
    let tokens_out = &out.summary.tokens;
    let events = (tokens_out.events_per_token * tokens_out.output_total as f64).round() as u64;
    let wall = out.wall.as_secs_f64();
    let ttft_error_p99_ms = if with_truth {
        Some(ttft_error_p99(&server.server, &jsonl, &out)?)
    } else {
        None
    };
    Ok(Measured {
        streams,
        tokens,
        requests_per_s: out.summary.requests.ok as f64 / wall,
        events_per_s: events as f64 / wall,
        client_us_per_event: client_cpu * 1e6 / events.max(1) as f64,
        ttft_error_p99_ms,
    })
}

struct SizedPrompts {
    max_tokens: u32,
}

impl PromptSource for SizedPrompts {
    fn item(&self, index: u64) -> PromptItem {
        PromptItem {
            text: format!("self-test {index}"),
            messages: None,
            input_tokens: Some(2),
            max_tokens: self.max_tokens,
        }
    }
}

/// p99 of (client saw the first token − server emitted it), matched by prompt.
fn ttft_error_p99(
    server: &MockServer,
    jsonl: &std::path::Path,
    out: &infer_doctor_load::RunOutput,
) -> anyhow::Result<f64> {
    let truth: std::collections::HashMap<String, std::time::Instant> = server
        .truth()
        .into_iter()
        .filter_map(|t| {
            Some((
                t.body["prompt"].as_str()?.to_string(),
                *t.chunk_times.first()?,
            ))
        })
        .collect();
    let mut errors: Vec<f64> = Vec::new();
    for line in std::fs::read_to_string(jsonl)?.lines() {
        let rec: RequestRecord = serde_json::from_str(line)?;
        let (Some(first), Some(emitted)) = (
            rec.first_token_us,
            truth.get(&format!("self-test {}", rec.id)),
        ) else {
            continue;
        };
        let seen = out.started + Duration::from_micros(first);
        errors.push(seen.saturating_duration_since(*emitted).as_secs_f64() * 1000.0);
    }
    errors.sort_by(f64::total_cmp);
    Ok(errors
        .get((errors.len() as f64 * 0.99) as usize)
        .or(errors.last())
        .copied()
        .unwrap_or(f64::NAN))
}

pub async fn run(quiet: bool) -> Result<u8, Failure> {
    if !quiet {
        eprintln!(
            "self-test: this client against a built-in instant server on loopback (3 s per line)"
        );
    }
    let mut rows = Vec::new();
    for streams in [1, 100, 1000] {
        rows.push(measure(streams, 1, Duration::ZERO, 3, false).await?);
        rows.push(measure(streams, 64, Duration::ZERO, 3, false).await?);
    }
    let rss_before_timing = cpu::peak_rss_bytes();
    // Timing exactness under load: 1,000 streams, a token every 20 ms, first-token delay vs the server's clock.
    let timing = measure(1000, 20, Duration::from_millis(20), 3, true).await?;
    println!("streams  tokens/resp  req/s      events/s    client µs/event");
    for r in &rows {
        println!(
            "{:>7}  {:>11}  {:>9.0}  {:>10.0}  {:>15.2}",
            r.streams, r.tokens, r.requests_per_s, r.events_per_s, r.client_us_per_event
        );
    }
    println!(
        "client-added TTFT error at {} streams: p99 {:.3} ms",
        timing.streams,
        timing.ttft_error_p99_ms.unwrap_or(f64::NAN)
    );
    if let Some(rss) = rss_before_timing.or(cpu::peak_rss_bytes()) {
        println!(
            "peak RSS (client and test server, one process): {:.1} MB",
            rss as f64 / 1e6
        );
    }
    println!(
        "targets on a 2-core machine: ≥ 10,000 req/s one-token, ≤ 5 µs client CPU per event, ≤ 100 MB RSS at 1,000 streams, TTFT error p99 ≤ 0.5 ms"
    );
    Ok(exit::OK)
}
