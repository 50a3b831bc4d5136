//! The load engine against the in-process mock server: numbers checked against the server's own token times,
//! every fault class counted, every request accounted for.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infer_doctor_core::{ErrorClass, PromptItem, PromptSource, RequestRecord};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::schedule::Arrival;
use infer_doctor_load::{
    ApiKey, Endpoint, LiveCounters, LoadShape, RunOutput, RunSpec, Stop, Target, Warmup, run,
};
use infer_doctor_testkit::{Fault, FaultRule, MockConfig, MockServer};

/// Prompt `i` is "request i", so the server's record of a request can be matched to the client's.
struct Numbered {
    max_tokens: u32,
}

impl PromptSource for Numbered {
    fn item(&self, index: u64) -> PromptItem {
        PromptItem {
            text: format!("request {index}"),
            messages: None,
            input_tokens: Some(2),
            max_tokens: self.max_tokens,
        }
    }
}

fn spec(url: &str, shape: LoadShape, stop: Stop) -> RunSpec {
    RunSpec {
        target: Arc::new(Target::parse(url, None).unwrap()),
        endpoint: Endpoint::Completions,
        model: "mock-model".into(),
        stream: true,
        ignore_eos: false,
        continuous_usage: false,
        shape,
        stop,
        warmup: Warmup::None,
        timeouts: Timeouts {
            idle: Duration::from_secs(5),
            total: Some(Duration::from_secs(20)),
        },
        connect_timeout: Duration::from_secs(2),
        http2: false,
        seed: 1,
        slo: Default::default(),
        requests_jsonl: None,
        first_id: 0,
        shard: Default::default(),
    }
}

/// A mock server with a first-token delay and a gap between tokens, in ms.
async fn mock(ttft_ms: u64, itl_ms: u64) -> MockServer {
    let timing = MockConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        ..Default::default()
    };
    MockServer::start(timing).await.unwrap()
}

fn closed(n: u64) -> LoadShape {
    LoadShape::Closed { concurrency: n }
}

async fn go(spec: &RunSpec, max_tokens: u32) -> RunOutput {
    run(
        spec,
        Arc::new(Numbered { max_tokens }),
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await
    .unwrap()
}

fn read_records(path: &Path) -> Vec<RequestRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_accounted(out: &RunOutput, sent: u64) {
    let r = &out.summary.requests;
    assert_eq!(r.sent, sent, "{r:?}");
    assert_eq!(r.ok + r.failed + r.interrupted, r.sent, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_times_match_the_servers_token_times() {
    let server = mock(30, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    let mut s = spec(&server.url(), closed(4), Stop::Count(24));
    s.requests_jsonl = Some((jsonl.clone(), false));
    let out = go(&s, 12).await;
    assert_accounted(&out, 24);
    assert_eq!(out.summary.requests.ok, 24);

    let truth: HashMap<String, _> = server
        .truth()
        .into_iter()
        .map(|t| (t.body["prompt"].as_str().unwrap().to_string(), t))
        .collect();
    let records = read_records(&jsonl);
    assert_eq!(records.len(), 24);
    // Stated bound: on loopback the client sees a token within 10 ms of the server emitting it (debug build,
    // shared 2-core machine), and never before. Nine in ten must keep it; a rare scheduler hiccup while the
    // rest of the suite runs beside this test may not exceed 100 ms.
    let at = |us: u64| out.started + Duration::from_micros(us);
    let mut misses_us: Vec<u64> = Vec::new();
    for rec in &records {
        let served = &truth[&format!("request {}", rec.id)];
        assert_eq!(rec.token_events as usize, served.chunk_times.len());
        assert_eq!(rec.usage_output_tokens, Some(12));
        let delay = at(rec.first_token_us.unwrap())
            .checked_duration_since(served.chunk_times[0])
            .expect("token seen before it was sent");
        misses_us.push(delay.as_micros() as u64);
        assert!(
            at(rec.sent_us) <= served.arrived,
            "sent after the server received it"
        );
        for (i, gap) in rec.gaps_us.iter().enumerate() {
            let truth_gap = served.chunk_times[i + 1] - served.chunk_times[i];
            misses_us.push((i64::from(*gap) - truth_gap.as_micros() as i64).unsigned_abs());
        }
    }
    misses_us.sort_unstable();
    let p90 = misses_us[misses_us.len() * 9 / 10];
    let worst = *misses_us.last().unwrap();
    assert!(
        p90 < 10_000 && worst < 100_000,
        "client vs server token times: p90 {p90} µs, worst {worst} µs"
    );
    let lat = &out.summary.latency;
    let ttft = lat.ttft.unwrap();
    assert!(ttft.p50 >= 30.0 && ttft.p50 < 40.0, "ttft {ttft:?}");
    let tpot = lat.tpot.unwrap();
    assert!(tpot.p50 >= 9.0 && tpot.p50 < 12.0, "tpot {tpot:?}");
    assert_eq!(lat.itl_gap.unwrap().count, 24 * 11);
    assert!(
        out.summary.throughput.mean_concurrency > 2.5,
        "{:?}",
        out.summary.throughput
    );
    assert_eq!(out.summary.throughput.max_concurrency, 4);
    assert!(
        out.connects <= 4,
        "keep-alive pool reused connections: {} connects",
        out.connects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_path_prefix_key_and_role_prelude() {
    let server = mock(0, 0).await;
    let key = "sk-test-secret-123";
    let mut s = spec(
        &format!("{}/gateway/v1", server.url()),
        closed(2),
        Stop::Count(6),
    );
    s.endpoint = Endpoint::Chat;
    s.target = Arc::new(
        Target::parse(
            &format!("{}/gateway/v1", server.url()),
            ApiKey::new(key.into()).unwrap(),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    s.requests_jsonl = Some((jsonl.clone(), false));
    let out = go(&s, 5).await;
    assert_eq!(out.summary.requests.ok, 6);
    for t in server.truth() {
        assert_eq!(t.path, "/gateway/v1/chat/completions");
        assert_eq!(
            t.authorization.as_deref(),
            Some(format!("Bearer {key}").as_str())
        );
    }
    for rec in read_records(&jsonl) {
        assert_eq!(rec.token_events, 5, "the role-only prelude is not a token");
    }
    assert!(!std::fs::read_to_string(&jsonl).unwrap().contains(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_requests_take_usage_from_the_body() {
    let server = mock(20, 2).await;
    let mut s = spec(&server.url(), closed(2), Stop::Count(4));
    s.stream = false;
    let out = go(&s, 11).await;
    assert_eq!(out.summary.requests.ok, 4);
    assert_eq!(out.summary.tokens.output_total, 44);
    assert!(
        out.summary.latency.ttft.is_none(),
        "no TTFT without streaming"
    );
    let e2e = out.summary.latency.e2e.unwrap();
    assert!(e2e.p50 >= 40.0 && e2e.p50 < 60.0, "{e2e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_after_every_stream_costs_no_request() {
    let server = MockServer::start(MockConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        close_after_stream: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let out = go(&spec(&server.url(), closed(2), Stop::Count(60)), 4).await;
    assert_accounted(&out, 60);
    assert_eq!(
        out.summary.requests.failed, 0,
        "{:?}",
        out.summary.requests.errors
    );
    assert!(
        server.connections() >= 30,
        "the server really closed: {} connections",
        server.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_a_counted_failure_of_its_class() {
    let rule = |offset, fault| FaultRule {
        every: 10,
        offset,
        fault,
    };
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
        faults: vec![
            rule(1, Fault::Status(503)),
            rule(2, Fault::Status(429)),
            rule(3, Fault::StallAfter(2)),
            rule(4, Fault::DropAfter(2)),
            rule(5, Fault::MalformedAfter(1)),
            rule(6, Fault::NoDone),
            rule(7, Fault::ErrorEvent(3)),
            rule(8, Fault::HugeLine(1 << 20)),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = spec(&server.url(), closed(1), Stop::Count(20));
    s.timeouts.idle = Duration::from_millis(300);
    let started = Instant::now();
    let out = go(&s, 6).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stalls end at the idle timeout"
    );
    assert_accounted(&out, 20);
    let count = |class: ErrorClass, status: Option<u16>| {
        out.summary
            .requests
            .errors
            .iter()
            .filter(|e| e.class == class && e.status == status)
            .map(|e| e.count)
            .sum::<u64>()
    };
    assert_eq!(count(ErrorClass::HttpStatus, Some(503)), 2);
    assert_eq!(count(ErrorClass::HttpStatus, Some(429)), 2);
    assert_eq!(count(ErrorClass::Timeout, None), 2);
    assert_eq!(
        count(ErrorClass::StreamBroken, None),
        4,
        "dropped connections and streams without an end"
    );
    assert_eq!(count(ErrorClass::MalformedSse, None), 2);
    assert_eq!(count(ErrorClass::ServerErrorEvent, None), 2);
    assert_eq!(out.summary.requests.failed, 14);
    assert_eq!(
        out.summary.requests.ok, 6,
        "the 1 MB line is a long token, not a failure"
    );
    assert!((out.summary.requests.error_rate - 0.7).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_fast_and_counts_every_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = go(
        &spec(
            &format!("http://127.0.0.1:{port}"),
            closed(2),
            Stop::Count(5),
        ),
        4,
    )
    .await;
    assert_accounted(&out, 5);
    assert_eq!(out.summary.requests.errors[0].class, ErrorClass::Connect);
    assert_eq!(out.summary.requests.errors[0].count, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_rate_and_measures_client_queueing() {
    let server = mock(2, 1).await;
    let shape = LoadShape::Open {
        rate: 100.0,
        arrival: Arrival::Constant,
        max_concurrency: None,
    };
    let out = go(&spec(&server.url(), shape, Stop::Count(101)), 3).await;
    assert_accounted(&out, 101);
    let t = &out.summary.throughput;
    assert!(
        (t.send_rate - 100.0).abs() < 5.0,
        "sent at {} req/s",
        t.send_rate
    );
    let lag = out.summary.client.schedule_lag.unwrap();
    assert!(lag.p50 < 2.0, "schedule lag {lag:?}");
    assert!(
        out.wall >= Duration::from_millis(990),
        "the last arrival is at 1 s"
    );

    // A server slower than the arrival rate behind a cap of one: the wait moves into the client's queue.
    let slow = mock(40, 1).await;
    let shape = LoadShape::Open {
        rate: 50.0,
        arrival: Arrival::Poisson,
        max_concurrency: Some(1),
    };
    let out = go(&spec(&slow.url(), shape, Stop::Count(20)), 2).await;
    assert_accounted(&out, 20);
    let lat = &out.summary.latency;
    assert!(
        lat.client_queue.unwrap().p90 > 100.0,
        "{:?}",
        lat.client_queue
    );
    assert!(lat.headline_ttft().unwrap().p50 > lat.ttft.unwrap().p50 + 50.0);
    assert_eq!(out.summary.throughput.max_concurrency, 1);
    assert!(
        !out.summary.client.client_bound,
        "held back by --max-concurrency, not by the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_is_recorded_but_excluded_and_duration_stops_the_run() {
    let server = mock(5, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    let mut s = spec(&server.url(), closed(2), Stop::Count(10));
    s.warmup = Warmup::Count(4);
    s.requests_jsonl = Some((jsonl.clone(), false));
    let out = go(&s, 3).await;
    assert_eq!(
        (out.summary.requests.sent, out.summary.requests.warmup),
        (10, 4)
    );
    assert_eq!(read_records(&jsonl).len(), 14);

    let mut s = spec(
        &server.url(),
        closed(2),
        Stop::Duration(Duration::from_millis(800)),
    );
    s.warmup = Warmup::Duration(Duration::from_millis(200));
    let started = Instant::now();
    let out = go(&s, 3).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(out.summary.requests.warmup > 0 && out.summary.requests.sent > 20);
    let window = out.summary.throughput.window_s;
    assert!((window - 0.8).abs() < 0.05, "steady window {window}");
}

/// Regression: a run whose warm-up requests timed out said "0 failed" and nothing about the users those requests
/// held, though the measured window had far fewer requests in flight than the users asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_warmup_requests_are_counted_warned_and_the_concurrency_reached_is_said() {
    // The first four requests stall after a token and the next two end in an error event, both after the first
    // token's delay: by then every one of the eight warm-up requests has arrived, so the faults hit only them.
    let stalled = (0..4).map(|offset| FaultRule {
        every: u64::MAX,
        offset,
        fault: Fault::StallAfter(1),
    });
    let errored = (4..6).map(|offset| FaultRule {
        every: u64::MAX,
        offset,
        fault: Fault::ErrorEvent(1),
    });
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(150),
        itl: Duration::from_millis(5),
        faults: stalled.chain(errored).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = spec(&server.url(), closed(8), Stop::Count(24));
    s.warmup = Warmup::Count(8);
    // Longer than the measured requests take, so the stalled users never come back within the run.
    s.timeouts.idle = Duration::from_secs(3);
    let out = go(&s, 3).await;
    let summary = &out.summary;
    assert_accounted(&out, 24);
    assert_eq!((summary.requests.ok, summary.requests.failed), (24, 0));
    let warm = &summary.warmup;
    assert_eq!(
        (warm.sent, warm.ok, warm.failed, warm.interrupted),
        (8, 2, 6, 0),
        "{warm:?}"
    );
    let classes: Vec<_> = warm.errors.iter().map(|e| (e.class, e.count)).collect();
    assert_eq!(
        classes,
        [(ErrorClass::Timeout, 4), (ErrorClass::ServerErrorEvent, 2)]
    );
    // Four users were held by stalled warm-up requests all along: the window reached four in flight, not eight.
    assert_eq!(summary.throughput.max_concurrency, 4);
    assert!(
        summary.throughput.mean_concurrency <= 4.0,
        "{}",
        summary.throughput.mean_concurrency
    );
    // The four stalled warm-ups were held at the server through the whole window, apart from the measured ones
    // (the window's edge bins are prorated, so the others' last milliseconds may add a little).
    let warmup = summary.throughput.warmup_in_flight;
    assert!((3.5..4.5).contains(&warmup), "{warmup}");
    let warning = summary
        .warnings
        .iter()
        .find(|w| w.contains("warm-up requests failed"))
        .unwrap_or_else(|| panic!("no warm-up warning in {:?}", summary.warnings));
    assert!(
        warning.starts_with("6 of 8 warm-up requests failed (4 timeout, 2 server_error_event)"),
        "{warning}"
    );
    assert!(
        warning.contains("(4 at most) of the 8 users asked for"),
        "{warning}"
    );
}

/// A prompt source as slow as a tokenizer building long exact-length prompts on a busy machine.
struct SlowToBuild;

impl PromptSource for SlowToBuild {
    fn item(&self, index: u64) -> PromptItem {
        std::thread::sleep(Duration::from_millis(40));
        Numbered { max_tokens: 2 }.item(index)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_their_prompt_are_measured_as_the_prompt_builders_wait() {
    // Issue 17: one prompt-building thread capped a run without a word. The builders run ahead of the senders, but
    // when they cannot keep up, the time requests wait for their prompt is measured for the client.bound rule.
    let server = mock(1, 1).await;
    let s = spec(&server.url(), closed(8), Stop::Count(48));
    let builders = (infer_doctor_load::cpu::cores() as u64).clamp(1, 8);
    let started = Instant::now();
    let out = run(
        &s,
        Arc::new(SlowToBuild),
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    )
    .await
    .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_accounted(&out, 48);
    let client = &out.summary.client;
    // 48 prompts of 40 ms on `builders` threads: the run cannot beat that, and its requests waited most of it.
    let building = 48.0 * 0.040 / builders as f64;
    assert!(
        took >= 0.9 * building,
        "{took} s for {building} s of building"
    );
    assert!(
        client.prompt_wait_share > 0.3 && client.prompt_wait_s > 0.0,
        "{client:?} over {took} s"
    );
    // Against a fast prompt source the same run waits for nothing worth a word.
    let out = go(&s, 2).await;
    assert!(
        out.summary.client.prompt_wait_share < 0.05,
        "{:?}",
        out.summary.client
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_keeps_what_was_measured() {
    let server = mock(10, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    let mut s = spec(&server.url(), closed(3), Stop::Count(1000));
    s.requests_jsonl = Some((jsonl.clone(), false));
    let (handle, cancel) = Cancel::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        handle.cancel();
    });
    let out = run(
        &s,
        Arc::new(Numbered { max_tokens: 5 }),
        None,
        Arc::new(LiveCounters::default()),
        cancel,
    )
    .await
    .unwrap();
    assert!(out.interrupted);
    assert_accounted(&out, out.summary.requests.sent);
    assert!(out.summary.requests.ok >= 3, "{:?}", out.summary.requests);
    assert_eq!(out.summary.requests.interrupted, 3, "the three in flight");
    assert_eq!(read_records(&jsonl).len() as u64, out.summary.requests.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_client_stops_are_interrupted_not_failures_of_the_server() {
    let server = mock(10, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    let mut s = spec(&server.url(), closed(3), Stop::Count(1000));
    s.requests_jsonl = Some((jsonl.clone(), false));
    // A budget, as diagnose's probes have: it runs out while three requests are in flight.
    let budget = Cancel::never().or_at(Instant::now() + Duration::from_millis(700));
    let out = run(
        &s,
        Arc::new(Numbered { max_tokens: 5 }),
        None,
        Arc::new(LiveCounters::default()),
        budget,
    )
    .await
    .unwrap();
    let requests = &out.summary.requests;
    assert_eq!(
        (requests.interrupted, requests.failed, requests.error_rate),
        (3, 0, 0.0),
        "{requests:?}"
    );
    assert!(requests.errors.is_empty(), "{:?}", requests.errors);
    let stopped: Vec<RequestRecord> = read_records(&jsonl)
        .into_iter()
        .filter(|r| r.error.is_some())
        .collect();
    assert_eq!(stopped.len(), 3);
    assert!(
        stopped
            .iter()
            .all(|r| r.error.as_ref().unwrap().class == ErrorClass::Interrupted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_multiplexes_on_one_connection() {
    let server = mock(5, 1).await;
    let mut s = spec(&server.url(), closed(8), Stop::Count(32));
    s.http2 = true;
    let out = go(&s, 4).await;
    assert_eq!(
        out.summary.requests.ok, 32,
        "{:?}",
        out.summary.requests.errors
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_token_chunks_are_counted_per_token() {
    let server = MockServer::start(MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(12),
        tokens_per_chunk: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = spec(&server.url(), closed(1), Stop::Count(3));
    s.continuous_usage = true;
    let out = go(&s, 12).await;
    let lat = &out.summary.latency;
    assert_eq!(out.summary.tokens.output_total, 36);
    assert!((out.summary.tokens.events_per_token - 1.0 / 3.0).abs() < 1e-9);
    let (gap, per_token) = (lat.itl_gap.unwrap().p50, lat.itl_token.unwrap().p50);
    assert!(
        (gap / per_token - 3.0).abs() < 0.1,
        "gap {gap} per token {per_token}"
    );
    // TPOT spreads the 3 chunk gaps over the 11 tokens after the first.
    assert!(
        (lat.tpot.unwrap().p50 - 36.0 / 11.0).abs() < 1.0,
        "{:?}",
        lat.tpot
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_shorter_than_asked_are_flagged_under_ignore_eos() {
    let server = MockServer::start(MockConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        stop_after: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = spec(&server.url(), closed(1), Stop::Count(4));
    s.ignore_eos = true;
    let out = go(&s, 8).await;
    assert_eq!(out.summary.tokens.output_shorter_than_requested, 4);
    assert_eq!(out.summary.tokens.finish_reasons["stop"], 4);
    assert!(
        out.summary
            .warnings
            .iter()
            .any(|w| w.contains("ignore_eos"))
    );
    let body = &server.truth()[0].body;
    assert_eq!(
        (body["ignore_eos"].as_bool(), body["min_tokens"].as_u64()),
        (Some(true), Some(8))
    );
}
