//! `bench --self-test`: how much load this client can generate, what a user's run costs it in CPU and memory, and
//! how exactly it times a first token, measured against built-in servers whose own cost is kept out of the figures.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use infer_doctor_core::{PromptItem, PromptSource, RequestRecord};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::cpu;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::{
    Arrival, Endpoint, LiveCounters, LoadShape, RunSpec, Stop, Target, Warmup,
};
use infer_doctor_sim::server::SimServer;
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::WordTokenizer;
use infer_doctor_testkit::{MockConfig, MockServer, ServedRequest};

use crate::{Failure, exit};

/// What a self-test line runs against.
enum TestServer {
    /// The test kit's server: every stream's tokens on a timer of their own, and the moment each token is handed
    /// to the socket kept, for the TTFT error.
    Mock(MockConfig),
    /// The built-in vLLM simulator: tokens come in engine steps, one event per stream per step as from a real
    /// engine, so a client's reads and wake-ups per token are those of a user's run against vLLM.
    Sim(SimSetup),
}

/// A test server on a thread and runtime of its own, apart from the client's.
struct ServerThread {
    url: String,
    model: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Vec<ServedRequest>>,
}

fn start_server(server: TestServer) -> anyhow::Result<ServerThread> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("self-test-server".into())
        .spawn(move || {
            // The mock on one thread, so it takes as little as it can from the client it times; the simulator with
            // as many workers as a server process of its own would have.
            let runtime = match server {
                TestServer::Mock(_) => tokio::runtime::Builder::new_current_thread(),
                TestServer::Sim(_) => tokio::runtime::Builder::new_multi_thread(),
            }
            .enable_all()
            .build()
            .expect("server runtime");
            runtime.block_on(async move {
                match server {
                    TestServer::Mock(config) => {
                        let model = config.model.clone();
                        match MockServer::start(config).await {
                            Ok(mock) => {
                                let _ = ready_tx.send(Ok((mock.url(), model)));
                                let _ = stopped.await;
                                mock.truth()
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                                Vec::new()
                            }
                        }
                    }
                    TestServer::Sim(setup) => {
                        let started = async {
                            let built = setup.build()?;
                            let sim = SimServer::start(
                                built.core,
                                built.server,
                                Arc::new(WordTokenizer),
                                "127.0.0.1:0".parse()?,
                                Arc::new(|_| {}),
                            )
                            .await?;
                            anyhow::Ok(sim)
                        };
                        match started.await {
                            Ok(sim) => {
                                let _ = ready_tx.send(Ok((sim.url(), setup.served_model_name)));
                                let _ = stopped.await;
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                            }
                        }
                        Vec::new()
                    }
                }
            })
        })?;
    let (url, model) = ready_rx.recv()??;
    Ok(ServerThread {
        url,
        model,
        stop,
        thread,
    })
}

impl ServerThread {
    /// Stops the server and returns what it served (the mock's record; nothing from the simulator).
    fn finish(self) -> Vec<ServedRequest> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// One load the self-test puts on the mock, with this process as the client.
struct Case {
    mock: MockConfig,
    shape: LoadShape,
    tokens: u32,
    /// Write `--out`'s requests.jsonl as a user's run does; the mock then also keeps its token times, for the
    /// TTFT error.
    records: bool,
}

struct Measured {
    requests_per_s: f64,
    events_per_s: f64,
    /// p50 and p99 of (client saw the first token − the mock handed it to the socket), in ms.
    ttft_error_ms: Option<(f64, f64)>,
}

/// A model name as long as real ones, so each token event is about as many bytes as a real server's.
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// The mock as the self-test runs it: a real server's model name, `tokens` one-token events `itl` apart.
fn mock(tokens: u32, itl: Duration, record_truth: bool) -> MockConfig {
    MockConfig {
        model: MODEL.into(),
        ttft: itl,
        itl,
        tokens_per_chunk: 1,
        default_output_tokens: tokens,
        record_truth,
        ..Default::default()
    }
}

async fn measure(case: Case, duration: Duration) -> anyhow::Result<Measured> {
    let Case {
        mock,
        shape,
        tokens,
        records,
    } = case;
    let server = start_server(TestServer::Mock(mock))?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("requests.jsonl");
    let spec = RunSpec {
        target: Arc::new(Target::parse(&server.url, None)?),
        endpoint: Endpoint::Completions,
        model: server.model.clone(),
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
        shard: Default::default(),
    };
    let prompts = Arc::new(SizedPrompts { max_tokens: tokens });
    let out = infer_doctor_load::run(
        &spec,
        prompts,
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await?;
    let wall = out.wall.as_secs_f64();
    let truth = server.finish();
    let ttft_error_ms = if records {
        Some(ttft_error(&truth, &jsonl, &out)?)
    } else {
        None
    };
    Ok(Measured {
        requests_per_s: out.summary.requests.ok as f64 / wall,
        events_per_s: token_events(&out.summary.tokens) as f64 / wall,
        ttft_error_ms,
    })
}

fn token_events(tokens: &infer_doctor_core::summary::TokenAccounting) -> u64 {
    (tokens.events_per_token * tokens.output_total as f64).round() as u64
}

/// What a user's run cost, read from the kernel as `time -v` reads it.
struct UsersRun {
    requests_per_s: f64,
    events_per_s: f64,
    token_events: u64,
    /// The bench process's user + system CPU, from start-up to exit.
    client_cpu_seconds: f64,
    /// The bench process's peak resident memory (`VmHWM`, read every 10 ms while it ran and by itself at the
    /// run's end).
    client_peak_rss_bytes: u64,
    /// This process's CPU meanwhile: the simulator serving it.
    server_cpu_seconds: f64,
}

impl UsersRun {
    fn per_event_us(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1e6 / self.token_events.max(1) as f64
    }
}

/// Runs this binary's `bench` in a process of its own, as a user would, against the simulator served from this
/// process: `users` users asking for `tokens` tokens each for `duration`, with `--out` when `records`.
fn users_run(
    users: u64,
    tokens: u32,
    records: bool,
    duration: Duration,
) -> anyhow::Result<UsersRun> {
    let server = start_server(TestServer::Sim(SimSetup {
        model: "tiny".into(),
        served_model_name: "sim-tiny".into(),
        max_num_seqs: Some(1024),
        ..SimSetup::default()
    }))?;
    let dir = tempfile::tempdir()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args([
            "bench",
            "--quiet",
            "--format",
            "json",
            "--ignore-eos",
            "--url",
        ])
        .arg(&server.url)
        .args(["--model", &server.model])
        .args(["--concurrency", &users.to_string()])
        .args(["--output-tokens", &tokens.to_string()])
        .args(["--duration", &format!("{}ms", duration.as_millis())]);
    if records {
        command.arg("--out").arg(dir.path().join("run"));
    }
    // Into files, not pipes: a document larger than a pipe's buffer would stall the run at its end.
    let document = dir.path().join("document.json");
    let errors = dir.path().join("stderr.txt");
    command
        .stdout(std::fs::File::create(&document)?)
        .stderr(std::fs::File::create(&errors)?);
    let children_before = cpu::waited_children_cpu_seconds();
    let own_before = cpu::process_cpu_seconds();
    let started = std::time::Instant::now();
    let mut child = command
        .spawn()
        .context("starting bench in a process of its own")?;
    let pid = child.id().to_string();
    let mut peak = 0;
    let status = loop {
        peak = peak.max(cpu::peak_rss_bytes_of(&pid).unwrap_or(0));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > duration * 3 + Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("bench ran past {duration:?} by more than a minute");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let client_cpu_seconds = cpu::waited_children_cpu_seconds() - children_before;
    let server_cpu_seconds = cpu::process_cpu_seconds() - own_before;
    server.finish();
    if !status.success() {
        anyhow::bail!(
            "bench exited with {status}: {}",
            std::fs::read_to_string(&errors).unwrap_or_default().trim()
        );
    }
    let document: infer_doctor_report::document::RunDocument =
        serde_json::from_str(&std::fs::read_to_string(&document)?)
            .context("reading bench's JSON document")?;
    let summary = &document.summary;
    let wall = document.wall_seconds.max(f64::MIN_POSITIVE);
    let token_events = token_events(&summary.tokens);
    Ok(UsersRun {
        requests_per_s: summary.requests.ok as f64 / wall,
        events_per_s: token_events as f64 / wall,
        token_events,
        client_cpu_seconds,
        // The process's own reading at the run's end holds the high-water mark a busy machine's polling can miss.
        client_peak_rss_bytes: peak.max(summary.client.peak_rss_bytes.unwrap_or(0)),
        server_cpu_seconds,
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

/// p50 and p99 of (client saw the first token − the mock handed it to the socket), matched by prompt.
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
            "self-test: this client against built-in servers on loopback ({} per line)",
            humantime::format_duration(per_line)
        );
    }
    // Client and server sockets share this process: 1,000 streams take 2,000 descriptors.
    cpu::raise_open_files_limit();
    let mut checks = Vec::new();

    // Capacity: back-to-back tokens from a server that never waits, so a response's events share few reads;
    // what it shows is the most this client can drive, not what a token costs.
    let mut capacity = Vec::new();
    for streams in [1, 100, 1000] {
        for tokens in [1, 64] {
            let case = Case {
                mock: mock(tokens, Duration::ZERO, false),
                shape: LoadShape::Closed {
                    concurrency: streams,
                },
                tokens,
                records: false,
            };
            capacity.push((streams, tokens, measure(case, per_line).await?));
        }
    }
    println!("capacity, back-to-back tokens (events coalesce into few reads):");
    println!("streams  tokens/resp  req/s      events/s");
    for (streams, tokens, m) in &capacity {
        println!(
            "{streams:>7}  {tokens:>11}  {:>9.0}  {:>10.0}",
            m.requests_per_s, m.events_per_s
        );
    }
    if let Some((streams, _, best)) = capacity
        .iter()
        .filter(|(_, tokens, _)| *tokens == 1)
        .max_by(|a, b| a.2.requests_per_s.total_cmp(&b.2.requests_per_s))
    {
        let check = Check {
            figure: format!("the best one-token request rate (at concurrency {streams})"),
            value: best.requests_per_s,
            unit: "req/s",
            decimals: 0,
            bound: ONE_TOKEN_REQUESTS_PER_S,
        };
        println!("one-token request rate: {}", check.marked());
        checks.push(check);
    }

    // What a user's run costs: this binary's bench in a process of its own, measured from outside as `time -v`
    // measures it, against the simulated vLLM server, whose engine steps hand every stream its token at once.
    let users = 1000;
    let tokens = 20;
    println!(
        "a user's run: `bench --concurrency {users} --output-tokens {tokens} --ignore-eos` in a process of its own, \
         against the built-in vLLM simulator (tiny model, max-num-seqs 1024):"
    );
    let mut peak_rss_bytes = 0;
    let mut bench_cpu_seconds = 0.0;
    for records in [true, false] {
        let run = tokio::task::spawn_blocking(move || users_run(users, tokens, records, per_line))
            .await
            .map_err(|e| Failure::usage(anyhow::anyhow!("the user's run: {e}")))??;
        peak_rss_bytes = peak_rss_bytes.max(run.client_peak_rss_bytes);
        bench_cpu_seconds += run.client_cpu_seconds;
        let out = if records {
            "with --out"
        } else {
            "without --out"
        };
        let cpu_check = Check {
            figure: format!("client CPU per token event at {users} users ({out})"),
            value: run.per_event_us(run.client_cpu_seconds),
            unit: "µs",
            decimals: 2,
            bound: CLIENT_US_PER_EVENT,
        };
        println!(
            "  {out}: {:.0} req/s, {:.0} events/s, client CPU per token event {} (the simulator's, apart: {:.2} µs)",
            run.requests_per_s,
            run.events_per_s,
            cpu_check.marked(),
            run.per_event_us(run.server_cpu_seconds)
        );
        checks.push(cpu_check);
    }
    println!(
        "  client CPU = the bench process's user+system time from start to exit (the kernel's count for a waited \
         child, as time -v reads it) ÷ token events received"
    );
    let rss_check = Check {
        figure: "the peak RSS of a user's run".into(),
        value: if peak_rss_bytes > 0 {
            peak_rss_bytes as f64 / 1e6
        } else {
            f64::NAN
        },
        unit: "MB",
        decimals: 1,
        bound: PEAK_RSS_MB,
    };
    println!(
        "  peak RSS (the bench process's VmHWM, read every 10 ms while it ran and by bench at the run's end): {}",
        rss_check.marked()
    );
    checks.push(rss_check);

    // Timing: 1,000 streams of one token per SSE event every 20 ms. Started together, every stream's tokens fall
    // due in the same millisecond, the worst case; Poisson arrivals at the rate that keeps 1,000 in flight spread
    // them as real traffic does. The mock keeps the moment it handed each first token to the socket.
    let itl = Duration::from_millis(20);
    let poisson = LoadShape::Open {
        rate: users as f64 / (f64::from(tokens) * itl.as_secs_f64()),
        arrival: Arrival::Poisson,
        max_concurrency: None,
    };
    println!(
        "client-added TTFT error, {users} streams of {tokens} tokens, one token per SSE event every {} ms:",
        itl.as_millis()
    );
    for (how, shape) in [
        (
            "all due in the same ms",
            LoadShape::Closed { concurrency: users },
        ),
        ("Poisson arrivals", poisson),
    ] {
        let m = measure(
            Case {
                mock: mock(tokens, itl, true),
                shape,
                tokens,
                records: true,
            },
            per_line,
        )
        .await?;
        let (p50, p99) = m.ttft_error_ms.unwrap_or((f64::NAN, f64::NAN));
        let ttft_check = Check {
            figure: format!("the client-added TTFT error p99 at {users} streams ({how})"),
            value: p99,
            unit: "ms",
            decimals: 3,
            bound: TTFT_ERROR_P99_MS,
        };
        println!(
            "  {how}: {:.0} events/s, p50 {p50:.3} ms, p99 {}",
            m.events_per_s,
            ttft_check.marked()
        );
        checks.push(ttft_check);
    }
    println!(
        "CPU of the whole self-test: {:.2} s in this process (clients and test servers), {bench_cpu_seconds:.2} s in \
         the bench processes",
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
