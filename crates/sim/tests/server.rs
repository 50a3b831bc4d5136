//! The simulated server over real HTTP on loopback: vLLM's endpoints and error shapes, streams that match the
//! engine's ground truth, and every fault the scenarios rely on, measured by infer-doctor's own client.

mod common;

use common::sample;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infer_doctor_core::{PromptItem, PromptSource, RequestRecord};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::{
    Endpoint, LiveCounters, LoadShape, RunOutput, RunSpec, Stop, Target, Warmup,
};
use infer_doctor_sim::logs::LogRecord;
use infer_doctor_sim::server::{Faults, LogSink, SimServer, StopModel};
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::WordTokenizer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small, fast, deterministic server: the tiny model steps in about α.
fn tiny() -> SimSetup {
    SimSetup {
        model: "tiny".into(),
        served_model_name: "tiny".into(),
        gpu: "l4".into(),
        max_model_len: 2048,
        jitter_sigma: 0.0,
        ..SimSetup::default()
    }
}

async fn start(setup: SimSetup, trace: Option<PathBuf>) -> (SimServer, Arc<Mutex<Vec<String>>>) {
    let mut built = setup.build().unwrap();
    built.server.trace = trace;
    built.server.log_interval = Duration::from_millis(200);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink: LogSink = {
        let lines = lines.clone();
        Arc::new(move |r: LogRecord| lines.lock().unwrap().push(r.message))
    };
    let server = SimServer::start(
        built.core,
        built.server,
        Arc::new(WordTokenizer),
        "127.0.0.1:0".parse().unwrap(),
        sink,
    )
    .await
    .unwrap();
    (server, lines)
}

/// Issue 17: with Tokio's listen backlog of 128, clients past the 128th of a thousand connecting at once lost
/// their SYNs and waited a second or more for the retry, counted as TTFT.
#[test]
fn a_thousand_clients_connecting_at_once_all_connect_without_a_syn_retry() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, _) = runtime.block_on(start(tiny(), None));
    // The runtime is not driven from here on, so nothing is accepted: every connection must wait in the backlog.
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    let somaxconn = somaxconn.trim();
    let connections: Vec<std::net::TcpStream> = (0..1000)
        .map(|i| {
            // A dropped SYN is retried after a second: well past this.
            std::net::TcpStream::connect_timeout(&server.addr, Duration::from_millis(500))
                .unwrap_or_else(|e| {
                    panic!("connection {i} of 1000: {e} (net.core.somaxconn {somaxconn})")
                })
        })
        .collect();
    assert_eq!(connections.len(), 1000);
}

/// A connection with one request already sent on it.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn http(server: &SimServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = send(server.addr, method, path, body).await;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Small bodies come back whole or as one chunk: keep the JSON part.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_string(),
        _ => body.to_string(),
    };
    (status, body)
}

struct Words {
    words: usize,
    max_tokens: u32,
}

impl PromptSource for Words {
    fn item(&self, index: u64) -> PromptItem {
        PromptItem {
            text: format!("request {index} {}", "word ".repeat(self.words)),
            messages: None,
            input_tokens: None,
            max_tokens: self.max_tokens,
        }
    }
}

async fn bench(
    server: &SimServer,
    users: u64,
    requests: u64,
    prompts: Words,
    jsonl: Option<PathBuf>,
) -> RunOutput {
    let spec = RunSpec {
        target: Arc::new(Target::parse(&server.url(), None).unwrap()),
        endpoint: Endpoint::Completions,
        model: "tiny".into(),
        stream: true,
        ignore_eos: true,
        continuous_usage: true,
        shape: LoadShape::Closed { concurrency: users },
        stop: Stop::Count(requests),
        warmup: Warmup::None,
        timeouts: Timeouts {
            idle: Duration::from_secs(2),
            total: Some(Duration::from_secs(30)),
        },
        connect_timeout: Duration::from_secs(2),
        http2: false,
        seed: 1,
        slo: Default::default(),
        requests_jsonl: jsonl.map(|p| (p, false)),
        first_id: 0,
        shard: Default::default(),
    };
    infer_doctor_load::run(
        &spec,
        Arc::new(prompts),
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_vllms_endpoints_and_errors_in_vllms_shapes() {
    let (server, _) = start(
        SimSetup {
            faults: Faults {
                loading_seconds: 0.3,
                ..tiny().faults
            },
            ..tiny()
        },
        None,
    )
    .await;
    assert_eq!(http(&server, "GET", "/health", "").await.0, 503);
    let (status, models) = http(&server, "GET", "/v1/models", "").await;
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["max_model_len"], 2048);
    let version: Value =
        serde_json::from_str(&http(&server, "GET", "/version", "").await.1).unwrap();
    assert_eq!(version["version"], "0.32.0");
    let (_, tokens) = http(
        &server,
        "POST",
        "/tokenize",
        r#"{"prompt": "one two three"}"#,
    )
    .await;
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    assert_eq!(tokens["count"], 3);
    let chat = r#"{"messages": [{"role": "user", "content": "one two three"}]}"#;
    let (_, chat_tokens) = http(&server, "POST", "/tokenize", chat).await;
    let chat_tokens: Value = serde_json::from_str(&chat_tokens).unwrap();
    assert!(
        chat_tokens["count"].as_u64().unwrap() > 3,
        "the chat template adds tokens"
    );

    let too_long = format!(
        r#"{{"model": "tiny", "prompt": "{}", "max_tokens": 100}}"#,
        "w ".repeat(2000)
    );
    let (status, body) = http(&server, "POST", "/v1/completions", &too_long).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("maximum context length is 2048 tokens. However, you requested 2100 tokens"),
        "{body}"
    );
    let (status, body) = http(
        &server,
        "POST",
        "/v1/completions",
        r#"{"model": "other", "prompt": "x"}"#,
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("The model `other` does not exist."), "{body}");
    assert_eq!(
        http(&server, "POST", "/v1/completions", "{not json")
            .await
            .0,
        400
    );
    assert_eq!(http(&server, "GET", "/nowhere", "").await.0, 404);

    let (status, body) = http(
        &server,
        "POST",
        "/v1/chat/completions",
        r#"{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "ignore_eos": true}"#,
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        5
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http(&server, "GET", "/health", "").await.0, 200);
    let (_, metrics) = http(&server, "GET", "/metrics", "").await;
    assert!(metrics.contains("vllm:request_success_total{engine=\"0\",finished_reason=\"length\",model_name=\"tiny\"} 1.0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tokens_arrive_when_the_engine_emitted_them() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let jsonl = dir.path().join("requests.jsonl");
    let (server, lines) = start(tiny(), Some(trace.clone())).await;
    // One user: client request i is server request i.
    let out = bench(
        &server,
        1,
        6,
        Words {
            words: 40,
            max_tokens: 12,
        },
        Some(jsonl.clone()),
    )
    .await;
    assert_eq!(out.summary.requests.ok, 6);
    let truth: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let client: Vec<RequestRecord> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!((truth.len(), client.len()), (6, 6));
    for (t, c) in truth.iter().zip(&client) {
        let times: Vec<f64> = serde_json::from_value(t["token_times"].clone()).unwrap();
        assert_eq!(times.len(), 12);
        assert_eq!(c.usage_output_tokens, Some(12));
        assert_eq!(c.usage_prompt_tokens, Some(42));
        assert_eq!(t["reason"], "length");
        let server_ttft = times[0] - t["times"]["arrived"].as_f64().unwrap();
        let client_ttft = c.ttft_us().unwrap() as f64 / 1e6;
        // The client's clock starts before the request reaches the engine and stops after the bytes arrive.
        assert!(
            client_ttft >= server_ttft - 1e-4,
            "{client_ttft} < {server_ttft}"
        );
        assert!(
            client_ttft - server_ttft < 0.02,
            "{client_ttft} vs {server_ttft}"
        );
        for (gap_us, pair) in c.gaps_us.iter().zip(times.windows(2)) {
            let truth_gap = pair[1] - pair[0];
            assert!(
                (f64::from(*gap_us) / 1e6 - truth_gap).abs() < 0.01,
                "{gap_us} µs vs {truth_gap}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Engine 000: Avg prompt throughput:")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_what_the_client_sees() {
    let (server, _) = start(
        SimSetup {
            faults: Faults {
                error_rate: 0.3,
                error_status: 503,
                disconnect_rate: 0.2,
                cut_after: 3,
                ..tiny().faults
            },
            ..tiny()
        },
        None,
    )
    .await;
    let out = bench(
        &server,
        4,
        60,
        Words {
            words: 8,
            max_tokens: 10,
        },
        None,
    )
    .await;
    let s = &out.summary;
    assert_eq!(s.requests.ok + s.requests.failed, 60);
    let by_class = |class: &str| {
        s.requests
            .errors
            .iter()
            .filter(|e| format!("{:?}", e.class).to_lowercase().contains(class))
            .map(|e| e.count)
            .sum::<u64>()
    };
    let status = by_class("http");
    let broken = by_class("stream");
    assert!((8..=30).contains(&status), "{:?}", s.requests.errors);
    assert!((3..=20).contains(&broken), "{:?}", s.requests.errors);
    // The engine was told about every cut stream: they finished as aborted. The abort reaches the engine a
    // moment after the client saw the cut, so the count is read until it settles (at most 5 s: a full suite on
    // 2 cores once left it one short after 2 s).
    let mut aborted = 0;
    for _ in 0..250 {
        let (_, metrics) = http(&server, "GET", "/metrics", "").await;
        aborted = sample(
            &metrics,
            "vllm:request_success_total{engine=\"0\",finished_reason=\"abort\"",
        ) as u64;
        if aborted == broken {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(aborted, broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_in_front_keeps_the_engine_below_the_clients_concurrency() {
    let (server, _) = start(
        SimSetup {
            faults: Faults {
                gateway_limit: Some(2),
                ..tiny().faults
            },
            stop: StopModel::Never,
            ..tiny()
        },
        None,
    )
    .await;
    let run = bench(
        &server,
        8,
        24,
        Words {
            words: 8,
            max_tokens: 200,
        },
        None,
    );
    let probe = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        http(&server, "GET", "/metrics", "").await.1
    };
    let (out, metrics) = tokio::join!(run, probe);
    let in_engine = sample(&metrics, "vllm:num_requests_running{")
        + sample(&metrics, "vllm:num_requests_waiting{");
    assert!((1.0..=2.0).contains(&in_engine), "{in_engine}");
    assert_eq!(out.summary.requests.ok, 24);
    assert!(out.summary.throughput.mean_concurrency > 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_keeps_its_connection_and_times_out_in_the_client() {
    let (server, _) = start(
        SimSetup {
            faults: Faults {
                stall_rate: 1.0,
                cut_after: 2,
                ..tiny().faults
            },
            ..tiny()
        },
        None,
    )
    .await;
    let out = bench(
        &server,
        2,
        2,
        Words {
            words: 8,
            max_tokens: 10,
        },
        None,
    )
    .await;
    let errors = &out.summary.requests.errors;
    assert_eq!(out.summary.requests.failed, 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.example.contains("stalled")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_are_validated_as_vllm_does_and_absurd_ones_do_not_crash_it() {
    let (server, _) = start(tiny(), None).await;
    for (body, expect) in [
        (
            r#"{"prompt": "a b c", "max_tokens": 10000000000}"#,
            "However, you requested 10000000003 tokens (3 in the messages, 10000000000 in the completion)",
        ),
        (
            r#"{"prompt": "a b c", "max_tokens": 0}"#,
            "max_tokens must be at least 1, got 0.",
        ),
        (
            r#"{"prompt": "a b c", "max_tokens": 4, "min_tokens": 9}"#,
            "min_tokens must be less than or equal to max_tokens=4, got 9.",
        ),
    ] {
        let (status, reply) = http(&server, "POST", "/v1/completions", body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains(expect), "{reply}");
    }
    // Still serving.
    assert_eq!(http(&server, "GET", "/health", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_while_queued_leaves_the_engine_at_once() {
    let (server, _) = start(
        SimSetup {
            max_num_seqs: Some(1),
            stop: StopModel::Never,
            ..tiny()
        },
        None,
    )
    .await;
    let stream = |tokens: u32| {
        format!(
            r#"{{"prompt": "x y z", "max_tokens": {tokens}, "stream": true, "ignore_eos": true}}"#
        )
    };
    // The first request holds the only sequence slot for a while.
    let long = stream(1500);
    let first = {
        let addr = server.addr;
        tokio::spawn(async move {
            let mut s = send(addr, "POST", "/v1/completions", &long).await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The second waits for it, then its client goes away.
    let queued = send(server.addr, "POST", "/v1/completions", &stream(10)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, metrics) = http(&server, "GET", "/metrics", "").await;
    assert_eq!(sample(&metrics, "vllm:num_requests_waiting{"), 1.0);
    drop(queued);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, metrics) = http(&server, "GET", "/metrics", "").await;
    assert_eq!(sample(&metrics, "vllm:num_requests_waiting{"), 0.0);
    assert_eq!(
        sample(&metrics, "vllm:num_requests_running{"),
        1.0,
        "the first still runs"
    );
    assert_eq!(
        sample(
            &metrics,
            "vllm:request_success_total{engine=\"0\",finished_reason=\"abort\""
        ),
        1.0
    );
    first.abort();
}

/// A fleet over HTTP: the router spreads requests round-robin, each replica's own `/metrics` is labelled with its
/// pod, and a replica's outage answers 503 (a failed scrape) and ends in a fresh process whose counters start at
/// zero, while the router sends everything to the replica left.
#[test]
fn a_fleet_routes_round_robin_and_a_replica_outage_fails_scrapes_then_resets_counters() {
    use infer_doctor_sim::fleet::{Outage, RouterKind};
    use infer_doctor_sim::server::{FleetMember, PickerSetup};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let member = |pod: &str, outage: Option<Outage>| {
            let built = tiny().build().unwrap();
            FleetMember {
                pod: pod.to_string(),
                core: built.core,
                config: built.server,
                outage: outage.map(|o| (o, tiny().build().unwrap().core)),
            }
        };
        let outage = Outage { from: 1.0, to: 2.0 };
        let started = std::time::Instant::now();
        let (router, replicas) = SimServer::start_fleet(
            vec![member("sim-0", None), member("sim-1", Some(outage))],
            RouterKind::RoundRobin,
            PickerSetup::default(),
            Arc::new(WordTokenizer),
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        let text = |addr: std::net::SocketAddr, path: &'static str| async move {
            let mut stream = send(addr, "GET", path, "").await;
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            let status: u16 = response[9..12].parse().unwrap();
            (
                status,
                response.split_once("\r\n\r\n").unwrap().1.to_string(),
            )
        };
        let complete =
            r#"{"model": "tiny", "prompt": "one two three", "max_tokens": 4, "ignore_eos": true}"#;
        for _ in 0..4 {
            assert_eq!(
                http(&router, "POST", "/v1/completions", complete).await.0,
                200
            );
        }
        let generated = |metrics: &str, pod: &str| {
            sample(
                metrics,
                &format!("vllm:generation_tokens_total{{pod=\"{pod}\","),
            )
        };
        let (_, all) = text(router.addr, "/metrics").await;
        assert_eq!(
            (generated(&all, "sim-0"), generated(&all, "sim-1")),
            (8.0, 8.0)
        );
        let (status, own) = text(replicas[1].addr, "/metrics").await;
        assert_eq!((status, generated(&own, "sim-1")), (200, 8.0));
        assert!(!own.contains("sim-0"));
        // The router as llm-d's endpoint picker counts its own decisions; a replica has no picker.
        let (_, picker) = text(router.addr, "/picker/metrics").await;
        let placed = |pod: &str| {
            sample(
                &picker,
                &format!("llm_d_epp_scheduler_attempts_total{{endpoint_name=\"{pod}\","),
            )
        };
        assert_eq!((placed("sim-0"), placed("sim-1")), (2.0, 2.0));
        assert_eq!(sample(&picker, "llm_d_epp_ready_endpoints{"), 2.0);
        assert_eq!(
            sample(&picker, "llm_d_epp_scheduler_e2e_duration_seconds_count"),
            4.0
        );
        assert_eq!(text(replicas[1].addr, "/picker/metrics").await.0, 404);
        // Into the outage.
        tokio::time::sleep(Duration::from_secs_f64(
            1.3 - started.elapsed().as_secs_f64(),
        ))
        .await;
        assert_eq!(text(replicas[1].addr, "/metrics").await.0, 503);
        for _ in 0..2 {
            assert_eq!(
                http(&router, "POST", "/v1/completions", complete).await.0,
                200
            );
        }
        let (_, all) = text(router.addr, "/metrics").await;
        assert_eq!(generated(&all, "sim-0"), 16.0);
        assert!(!all.contains("sim-1"));
        let (_, picker) = text(router.addr, "/picker/metrics").await;
        assert_eq!(sample(&picker, "llm_d_epp_ready_endpoints{"), 1.0);
        // Back, as a new process.
        tokio::time::sleep(Duration::from_secs_f64(
            2.3 - started.elapsed().as_secs_f64(),
        ))
        .await;
        let (status, own) = text(replicas[1].addr, "/metrics").await;
        assert_eq!((status, generated(&own, "sim-1")), (200, 0.0));
    });
}
