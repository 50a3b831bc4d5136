//! `bench --self-test`: how much load this client can generate and how exactly it times it, measured against a
//! built-in server that answers instantly. The server runs on its own thread, so its CPU is not the client's.

use std::sync::Arc;
use std::time::Duration;

use infer_doctor_core::{PromptItem, PromptSource, RequestRecord};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::cpu;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::{
    Arrival, Endpoint, LiveCounters, LoadShape, RunSpec, Stop, Target, Warmup,
};
use infer_doctor_testkit::{MockConfig, MockServer, ServedRequest};

use crate::{Failure, exit};

/// A mock server on a thread and runtime of its own, so its CPU time can be told apart from the client's.
struct ServerThread {
    url: String,
    tid: u32,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Vec<ServedRequest>>,
}

fn start_server(config: MockConfig) -> anyhow::Result<ServerThread> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("self-test-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let server = match MockServer::start(config).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Vec::new();
                    }
                };
                let _ = ready_tx.send(Ok((server.url(), cpu::current_thread_id())));
                let _ = stopped.await;
                server.truth()
            })
        })?;
    let (url, tid) = ready_rx.recv()??;
    let tid = tid.ok_or_else(|| anyhow::anyhow!("no /proc thread id"))?;
    Ok(ServerThread {
        url,
        tid,
        stop,
        thread,
    })
}

impl ServerThread {
    /// Stops the server and returns what it served.
    fn finish(self) -> Vec<ServedRequest> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

struct Measured {
    streams: u64,
    tokens: u32,
    requests_per_s: f64,
    events_per_s: f64,
    client_us_per_event: f64,
    /// p50 and p99 of (client saw the first token − server handed it to the socket), in ms.
    ttft_error_ms: Option<(f64, f64)>,
}

async fn measure(
    shape: LoadShape,
    tokens: u32,
    itl: Duration,
    seconds: u64,
    with_truth: bool,
) -> anyhow::Result<Measured> {
    let streams = match shape {
        LoadShape::Closed { concurrency } => concurrency,
        LoadShape::Open { rate, .. } => {
            (rate * itl.as_secs_f64() * f64::from(tokens)).round() as u64
        }
    };
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
        target: Arc::new(Target::parse(&server.url, None)?),
        endpoint: Endpoint::Completions,
        model: "mock-model".into(),
        stream: true,
        ignore_eos: false,
        continuous_usage: false,
        shape,
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
    let truth = server.finish();
    let ttft_error_ms = if with_truth {
        Some(ttft_error(&truth, &jsonl, &out)?)
    } else {
        None
    };
    Ok(Measured {
        streams,
        tokens,
        requests_per_s: out.summary.requests.ok as f64 / wall,
        events_per_s: events as f64 / wall,
        client_us_per_event: client_cpu * 1e6 / events.max(1) as f64,
        ttft_error_ms,
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

/// p50 and p99 of (client saw the first token − server handed it over), matched by prompt.
fn ttft_error(
    truth: &[ServedRequest],
    jsonl: &std::path::Path,
    out: &infer_doctor_load::RunOutput,
) -> anyhow::Result<(f64, f64)> {
    let truth: std::collections::HashMap<String, std::time::Instant> = truth
        .iter()
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
    let quantile = |q: f64| {
        errors
            .get((errors.len() as f64 * q) as usize)
            .or(errors.last())
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((quantile(0.5), quantile(0.99)))
}

pub async fn run(quiet: bool) -> Result<u8, Failure> {
    if !quiet {
        eprintln!(
            "self-test: this client against a built-in instant server on loopback (3 s per line)"
        );
    }
    // Client and server sockets share this process: 1,000 streams take 2,000 descriptors.
    cpu::raise_open_files_limit();
    let mut rows = Vec::new();
    for streams in [1, 100, 1000] {
        let shape = LoadShape::Closed {
            concurrency: streams,
        };
        rows.push(measure(shape.clone(), 1, Duration::ZERO, 3, false).await?);
        rows.push(measure(shape, 64, Duration::ZERO, 3, false).await?);
    }
    let rss_before_timing = cpu::peak_rss_bytes();
    // Timing exactness under load: about 1,000 streams of 20 tokens, one every 20 ms. Started together, every
    // stream's tokens fall due in the same millisecond, the worst case; Poisson arrivals at the rate that keeps
    // 1,000 in flight spread them as real traffic does.
    let itl = Duration::from_millis(20);
    let in_lockstep = measure(LoadShape::Closed { concurrency: 1000 }, 20, itl, 3, true).await?;
    let spread = LoadShape::Open {
        rate: 1000.0 / (20.0 * itl.as_secs_f64()),
        arrival: Arrival::Poisson,
        max_concurrency: None,
    };
    let spread = measure(spread, 20, itl, 3, true).await?;
    println!("streams  tokens/resp  req/s      events/s    client µs/event");
    for r in &rows {
        println!(
            "{:>7}  {:>11}  {:>9.0}  {:>10.0}  {:>15.2}",
            r.streams, r.tokens, r.requests_per_s, r.events_per_s, r.client_us_per_event
        );
    }
    for (timing, how) in [
        (&in_lockstep, "all due in the same ms"),
        (&spread, "Poisson arrivals"),
    ] {
        let (p50, p99) = timing.ttft_error_ms.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "client-added TTFT error at {} streams ({how}): p50 {p50:.3} ms, p99 {p99:.3} ms",
            timing.streams
        );
    }
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
