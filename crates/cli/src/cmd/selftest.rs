//! `bench --self-test`: how much load this client can generate, what a token costs it and how exactly it times it,
//! measured against a built-in server on a thread of its own, whose CPU is read apart and kept out of the client's.

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

/// One load the self-test puts on the test server.
struct Case {
    shape: LoadShape,
    tokens: u32,
    itl: Duration,
    /// Write `--out`'s requests.jsonl as a user's run does; the server then also keeps its token times, for the
    /// TTFT error.
    records: bool,
}

struct Measured {
    streams: u64,
    tokens: u32,
    requests_per_s: f64,
    events_per_s: f64,
    /// The whole process's CPU during the run (all threads) less the test server thread's.
    client_cpu_seconds: f64,
    server_cpu_seconds: f64,
    token_events: u64,
    /// p50 and p99 of (client saw the first token − server handed it to the socket), in ms.
    ttft_error_ms: Option<(f64, f64)>,
}

impl Measured {
    fn client_us_per_event(&self) -> f64 {
        self.client_cpu_seconds * 1e6 / self.token_events.max(1) as f64
    }
}

/// A model name as long as real ones, so each token event is about as many bytes as a real server's.
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

async fn measure(case: Case, duration: Duration) -> anyhow::Result<Measured> {
    let Case {
        shape,
        tokens,
        itl,
        records,
    } = case;
    let streams = match shape {
        LoadShape::Closed { concurrency } => concurrency,
        LoadShape::Open { rate, .. } => {
            (rate * itl.as_secs_f64() * f64::from(tokens)).round() as u64
        }
    };
    let server = start_server(MockConfig {
        model: MODEL.into(),
        ttft: if itl.is_zero() { Duration::ZERO } else { itl },
        itl,
        tokens_per_chunk: 1,
        default_output_tokens: tokens,
        record_truth: records,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("requests.jsonl");
    let spec = RunSpec {
        target: Arc::new(Target::parse(&server.url, None)?),
        endpoint: Endpoint::Completions,
        model: MODEL.into(),
        stream: true,
        ignore_eos: false,
        // As `bench` asks by default: a usage object on every token event.
        continuous_usage: true,
        shape,
        stop: Stop::Duration(duration),
        warmup: Warmup::None,
        timeouts: Timeouts {
            idle: Duration::from_secs(30),
            total: None,
        },
        connect_timeout: Duration::from_secs(10),
        http2: false,
        seed: 0,
        slo: Default::default(),
        requests_jsonl: records.then(|| (jsonl.clone(), false)),
        first_id: 0,
    };
    let server_cpu = || {
        cpu::thread_cpu_seconds(server.tid).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot read the test server thread's CPU time from /proc/self/task/{}/stat",
                server.tid
            )
        })
    };
    let prompts = Arc::new(SizedPrompts { max_tokens: tokens });
    // Around the whole run, the record writer's last flush and the connections' teardown included.
    let process_before = cpu::process_cpu_seconds();
    let server_before = server_cpu()?;
    let out = infer_doctor_load::run(
        &spec,
        prompts,
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await?;
    let server_cpu_seconds = server_cpu()? - server_before;
    let process_cpu = cpu::process_cpu_seconds() - process_before;
    let tokens_out = &out.summary.tokens;
    let token_events =
        (tokens_out.events_per_token * tokens_out.output_total as f64).round() as u64;
    let wall = out.wall.as_secs_f64();
    let truth = server.finish();
    let ttft_error_ms = if records {
        Some(ttft_error(&truth, &jsonl, &out)?)
    } else {
        None
    };
    Ok(Measured {
        streams,
        tokens,
        requests_per_s: out.summary.requests.ok as f64 / wall,
        events_per_s: token_events as f64 / wall,
        client_cpu_seconds: (process_cpu - server_cpu_seconds).max(0.0),
        server_cpu_seconds,
        token_events,
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

/// Which side of its target a figure must stay on.
#[derive(Clone, Copy, Debug)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// A printed figure with the target the self-test promises for it.
#[derive(Debug)]
struct Check {
    /// What was measured, in words that stand alone in a sentence.
    figure: String,
    value: f64,
    unit: &'static str,
    decimals: usize,
    bound: Bound,
}

impl Check {
    /// A figure that could not be measured (NaN) has not met its target.
    fn met(&self) -> bool {
        match self.bound {
            Bound::AtMost(limit) => self.value <= limit,
            Bound::AtLeast(limit) => self.value >= limit,
        }
    }

    fn amount(&self, value: f64) -> String {
        format!("{value:.*} {}", self.decimals, self.unit)
    }

    fn target(&self) -> String {
        match self.bound {
            Bound::AtMost(limit) => format!("≤ {}", self.amount(limit)),
            Bound::AtLeast(limit) => format!("≥ {}", self.amount(limit)),
        }
    }

    /// The figure with its mark, for the line that prints it.
    fn marked(&self) -> String {
        let mark = if self.met() { "pass" } else { "MISS" };
        format!(
            "{} [{mark}, target {}]",
            self.amount(self.value),
            self.target()
        )
    }

    /// A sentence saying how the figure missed its target; `None` when it met it.
    fn miss(&self) -> Option<String> {
        if self.met() {
            return None;
        }
        if self.value.is_nan() {
            return Some(format!(
                "MISS: {} could not be measured, so its target ({}) is not known to be met",
                self.figure,
                self.target()
            ));
        }
        let side = match self.bound {
            Bound::AtMost(_) => "above",
            Bound::AtLeast(_) => "below",
        };
        Some(format!(
            "MISS: {} was {}, {side} its target of {}",
            self.figure,
            self.amount(self.value),
            self.target()
        ))
    }
}

/// The targets, set for a 2-core machine.
const ONE_TOKEN_REQUESTS_PER_S: Bound = Bound::AtLeast(10_000.0);
const CLIENT_US_PER_EVENT: Bound = Bound::AtMost(5.0);
const PEAK_RSS_MB: Bound = Bound::AtMost(100.0);
const TTFT_ERROR_P99_MS: Bound = Bound::AtMost(0.5);

pub async fn run(quiet: bool, per_line: Duration) -> Result<u8, Failure> {
    if !quiet {
        eprintln!(
            "self-test: this client against a built-in instant server on loopback ({} per line)",
            humantime::format_duration(per_line)
        );
    }
    // Client and server sockets share this process: 1,000 streams take 2,000 descriptors.
    cpu::raise_open_files_limit();
    let mut checks = Vec::new();
    let mut server_cpu_seconds = 0.0;

    // Capacity: back-to-back tokens from a server that never waits, so a response's events share few reads;
    // what it shows is the most this client can drive, not what a token costs.
    let mut capacity = Vec::new();
    for streams in [1, 100, 1000] {
        for tokens in [1, 64] {
            let case = Case {
                shape: LoadShape::Closed {
                    concurrency: streams,
                },
                tokens,
                itl: Duration::ZERO,
                records: false,
            };
            capacity.push(measure(case, per_line).await?);
        }
    }
    server_cpu_seconds += capacity.iter().map(|m| m.server_cpu_seconds).sum::<f64>();
    println!("capacity, back-to-back tokens (events coalesce into few reads):");
    println!("streams  tokens/resp  req/s      events/s");
    for r in &capacity {
        println!(
            "{:>7}  {:>11}  {:>9.0}  {:>10.0}",
            r.streams, r.tokens, r.requests_per_s, r.events_per_s
        );
    }
    if let Some(best) = capacity
        .iter()
        .filter(|r| r.tokens == 1)
        .max_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s))
    {
        let check = Check {
            figure: format!(
                "the best one-token request rate (at concurrency {})",
                best.streams
            ),
            value: best.requests_per_s,
            unit: "req/s",
            decimals: 0,
            bound: ONE_TOKEN_REQUESTS_PER_S,
        };
        println!("one-token request rate: {}", check.marked());
        checks.push(check);
    }

    // Streams shaped like a user's run: about 1,000 streams of 20 tokens, one token per SSE event every 20 ms,
    // each event as long as a real server's. Started together, every stream's tokens fall due in the same
    // millisecond, the worst case; Poisson arrivals at the rate that keeps 1,000 in flight spread them as real
    // traffic does.
    let itl = Duration::from_millis(20);
    let tokens = 20;
    let poisson = LoadShape::Open {
        rate: 1000.0 / (f64::from(tokens) * itl.as_secs_f64()),
        arrival: Arrival::Poisson,
        max_concurrency: None,
    };
    let paced = [
        (
            "all due in the same ms",
            LoadShape::Closed { concurrency: 1000 },
            true,
        ),
        ("Poisson arrivals", poisson.clone(), true),
        ("Poisson arrivals", poisson, false),
    ];
    println!(
        "streams shaped like real ones ({tokens} tokens each, one token per SSE event every {} ms):",
        itl.as_millis()
    );
    for (how, shape, records) in paced {
        let m = measure(
            Case {
                shape,
                tokens,
                itl,
                records,
            },
            per_line,
        )
        .await?;
        server_cpu_seconds += m.server_cpu_seconds;
        let out = if records {
            "--out records on"
        } else {
            "--out records off"
        };
        let cpu_check = Check {
            figure: format!(
                "client CPU per token event at {} streams ({how}, {out})",
                m.streams
            ),
            value: m.client_us_per_event(),
            unit: "µs",
            decimals: 2,
            bound: CLIENT_US_PER_EVENT,
        };
        println!(
            "  {} streams, {how}, {out}: {:.0} events/s, client CPU per token event {} (test server's, kept \
             out: {:.2} µs)",
            m.streams,
            m.events_per_s,
            cpu_check.marked(),
            m.server_cpu_seconds * 1e6 / m.token_events.max(1) as f64
        );
        checks.push(cpu_check);
        if let Some((p50, p99)) = m.ttft_error_ms {
            let ttft_check = Check {
                figure: format!(
                    "the client-added TTFT error p99 at {} streams ({how})",
                    m.streams
                ),
                value: p99,
                unit: "ms",
                decimals: 3,
                bound: TTFT_ERROR_P99_MS,
            };
            println!(
                "    client-added TTFT error: p50 {p50:.3} ms, p99 {}",
                ttft_check.marked()
            );
            checks.push(ttft_check);
        }
    }
    println!(
        "  client CPU = this process's CPU (all threads: runtime workers, pacer, prompt feed, record writer) during \
         the run, less the test server's thread (read from /proc/self/task/<tid>/stat), ÷ token events received"
    );

    // At the end, after the heaviest runs: the high-water mark, not what is resident now.
    let rss_check = Check {
        figure: "peak RSS (client and test server)".into(),
        value: cpu::peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / 1e6),
        unit: "MB",
        decimals: 1,
        bound: PEAK_RSS_MB,
    };
    println!(
        "peak RSS (VmHWM; the test server runs in this process, its memory is inside): {}",
        rss_check.marked()
    );
    checks.push(rss_check);
    println!(
        "CPU of the whole self-test: {:.2} s user+sys, all threads, the test server's {server_cpu_seconds:.2} s \
         included",
        cpu::process_cpu_seconds()
    );

    let misses: Vec<String> = checks.iter().filter_map(Check::miss).collect();
    println!(
        "targets are set for a 2-core machine; this one has {} cores",
        cpu::cores()
    );
    if misses.is_empty() {
        println!("all {} figures met their targets", checks.len());
    } else {
        for miss in &misses {
            println!("{miss}");
        }
        println!(
            "{} of {} figures missed their targets",
            misses.len(),
            checks.len()
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttft_p99(value: f64) -> Check {
        Check {
            figure: "the client-added TTFT error p99 at 1000 streams (all due in the same ms)"
                .into(),
            value,
            unit: "ms",
            decimals: 3,
            bound: TTFT_ERROR_P99_MS,
        }
    }

    #[test]
    fn a_ttft_error_p99_over_its_target_is_marked_and_said() {
        // The figure the issue saw printed beside its 0.5 ms target without a word.
        let missed = ttft_p99(1.4);
        assert_eq!(missed.marked(), "1.400 ms [MISS, target ≤ 0.500 ms]");
        assert_eq!(
            missed.miss().unwrap(),
            "MISS: the client-added TTFT error p99 at 1000 streams (all due in the same ms) was 1.400 ms, \
             above its target of ≤ 0.500 ms"
        );
        let met = ttft_p99(0.3);
        assert_eq!(met.marked(), "0.300 ms [pass, target ≤ 0.500 ms]");
        assert_eq!(met.miss(), None);
        let unmeasured = ttft_p99(f64::NAN);
        assert!(unmeasured.marked().contains("MISS"));
        assert!(unmeasured.miss().unwrap().contains("could not be measured"));
        let slow = Check {
            figure: "the best one-token request rate (at concurrency 100)".into(),
            value: 8_000.0,
            unit: "req/s",
            decimals: 0,
            bound: ONE_TOKEN_REQUESTS_PER_S,
        };
        assert!(
            slow.miss()
                .unwrap()
                .contains("below its target of ≥ 10000 req/s")
        );
    }
}
