//! Benchmark for the simulated server's HTTP front: SSE token events delivered per second of the server's own
//! CPU (its HTTP thread plus its engine thread), with infer-doctor's client on the other threads (target ≥ 20,000).

use std::sync::Arc;
use std::time::Duration;

use infer_doctor_core::{PromptItem, PromptSource};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::cpu;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::{Endpoint, LiveCounters, LoadShape, RunSpec, Stop, Target, Warmup};
use infer_doctor_sim::server::SimServer;
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::WordTokenizer;

/// Threads that belong to the server, by name.
const SERVER_THREADS: [&str; 2] = ["sim-http", "sim-engine"];

fn server_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            SERVER_THREADS
                .contains(&comm.trim())
                .then(|| cpu::thread_cpu_seconds(tid))
                .flatten()
        })
        .sum()
}

struct Short;

impl PromptSource for Short {
    fn item(&self, index: u64) -> PromptItem {
        PromptItem {
            text: format!("stream {index} of the benchmark"),
            messages: None,
            input_tokens: None,
            max_tokens: 512,
        }
    }
}

fn main() {
    cpu::raise_open_files_limit();
    let setup = SimSetup {
        model: "tiny".into(),
        served_model_name: "tiny".into(),
        max_model_len: 2048,
        jitter_sigma: 0.0,
        ..SimSetup::default()
    };
    let built = setup.build().expect("tiny setup builds");
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sim-http".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let server = SimServer::start(
                    built.core,
                    built.server,
                    Arc::new(WordTokenizer),
                    "127.0.0.1:0".parse().expect("loopback"),
                    Arc::new(|_| {}),
                )
                .await
                .expect("server starts");
                url_tx.send(server.url()).expect("main waits");
                std::future::pending::<()>().await;
            });
        })
        .expect("server thread");
    let url = url_rx.recv().expect("server url");
    let client = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    for streams in [64, 256] {
        let spec = RunSpec {
            target: Arc::new(Target::parse(&url, None).expect("url")),
            endpoint: Endpoint::Completions,
            model: "tiny".into(),
            stream: true,
            ignore_eos: true,
            continuous_usage: false,
            shape: LoadShape::Closed {
                concurrency: streams,
            },
            stop: Stop::Duration(Duration::from_secs(4)),
            warmup: Warmup::None,
            timeouts: Timeouts {
                idle: Duration::from_secs(10),
                total: None,
            },
            connect_timeout: Duration::from_secs(5),
            http2: false,
            seed: 0,
            slo: Default::default(),
            requests_jsonl: None,
            first_id: 0,
            shard: Default::default(),
        };
        let before = server_cpu_seconds();
        let out = client
            .block_on(infer_doctor_load::run(
                &spec,
                Arc::new(Short),
                None,
                Arc::new(LiveCounters::default()),
                Cancel::never(),
            ))
            .expect("run");
        let server_cpu = server_cpu_seconds() - before;
        let events = out.summary.tokens.output_total as f64 * out.summary.tokens.events_per_token;
        let wall = out.wall.as_secs_f64();
        println!(
            "{streams:>4} streams: {:.0} events/s delivered, server CPU {:.2} cores → {:.0} events per server CPU-second; {} failed",
            events / wall,
            server_cpu / wall,
            events / server_cpu.max(1e-9),
            out.summary.requests.failed
        );
    }
}
