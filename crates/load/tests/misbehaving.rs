//! The load engine against servers written byte by byte to break HTTP's unwritten rules (silence after accepting,
//! bodies left open after `[DONE]`, resets of kept-alive connections), or greedy decoding's (a prefix cache that
//! changes an answer), which a well-behaved mock cannot produce.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infer_doctor_core::{ErrorClass, PromptItem, PromptSource};
use infer_doctor_load::cancel::Cancel;
use infer_doctor_load::http::{ClientOptions, HttpClient, MAX_GET_BODY};
use infer_doctor_load::probe::probe;
use infer_doctor_load::run::Timeouts;
use infer_doctor_load::scrape::{ScrapeSpec, Scraper};
use infer_doctor_load::{
    ApiKey, Endpoint, LiveCounters, LoadShape, RunOutput, RunSpec, Stop, Target, Warmup, run,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Fixed;

impl PromptSource for Fixed {
    fn item(&self, _: u64) -> PromptItem {
        PromptItem {
            text: "hello".into(),
            messages: None,
            input_tokens: Some(1),
            max_tokens: 2,
        }
    }
}

/// Serves every accepted connection with `serve` on loopback; returns the base URL.
async fn raw_server<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    url
}

/// Reads one request (head and `Content-Length` body) and returns it whole; `None` when the client closed the
/// connection.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&buf[..end + 4 + length]).to_string());
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete completion stream: two tokens, a finish reason, usage and `[DONE]`.
const COMPLETE_STREAM: &str = "data: {\"choices\":[{\"text\":\" a\"}]}\n\n\
data: {\"choices\":[{\"text\":\" b\",\"finish_reason\":\"length\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";

/// The head and body of a streamed response with a `Content-Length` and no `Connection: close`.
fn complete_response() -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{COMPLETE_STREAM}",
        COMPLETE_STREAM.len()
    )
}

fn spec(url: &str, concurrency: u64, requests: u64, idle: Duration) -> RunSpec {
    RunSpec {
        target: Arc::new(Target::parse(url, None).unwrap()),
        endpoint: Endpoint::Completions,
        model: "m".into(),
        stream: true,
        ignore_eos: false,
        continuous_usage: false,
        shape: LoadShape::Closed { concurrency },
        stop: Stop::Count(requests),
        warmup: Warmup::None,
        timeouts: Timeouts { idle, total: None },
        connect_timeout: Duration::from_secs(2),
        http2: false,
        seed: 1,
        slo: Default::default(),
        requests_jsonl: None,
        first_id: 0,
        shard: Default::default(),
    }
}

/// Runs the load, failing the test instead of hanging when the client never gives up.
async fn go_within(spec: &RunSpec, limit: Duration) -> RunOutput {
    let running = run(
        spec,
        Arc::new(Fixed),
        None,
        Arc::new(LiveCounters::default()),
        Cancel::never(),
    );
    tokio::time::timeout(limit, running)
        .await
        .unwrap_or_else(|_| panic!("the run did not end within {limit:?}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_never_answers_fails_at_the_idle_timeout() {
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        // Keep the connection open and say nothing.
        std::future::pending::<()>().await;
    })
    .await;
    let started = Instant::now();
    let out = go_within(
        &spec(&url, 2, 4, Duration::from_millis(300)),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let requests = &out.summary.requests;
    assert_eq!((requests.sent, requests.failed), (4, 4), "{requests:?}");
    assert_eq!(requests.errors[0].class, ErrorClass::Timeout);
    assert!(
        requests.errors[0].example.contains("no response"),
        "{:?}",
        requests.errors[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_stream_whose_body_stays_open_ends_at_done() {
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        // Chunked, and the terminating chunk never comes.
        let chunk = format!("{:x}\r\n{COMPLETE_STREAM}\r\n", COMPLETE_STREAM.len());
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = stream.write_all(format!("{head}{chunk}").as_bytes()).await;
        std::future::pending::<()>().await;
    })
    .await;
    let started = Instant::now();
    let out = go_within(
        &spec(&url, 1, 3, Duration::from_secs(2)),
        Duration::from_secs(20),
    )
    .await;
    let requests = &out.summary.requests;
    assert_eq!((requests.ok, requests.failed), (3, 0), "{requests:?}");
    assert_eq!(out.summary.tokens.output_total, 6);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited for the body to end: {:?}",
        started.elapsed()
    );
    assert_eq!(out.connects, 3, "a connection left mid-body is not reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_of_a_reused_connection_is_retried_not_lost() {
    // Answers one request per connection without `Connection: close`, then resets the connection when the
    // client sends the next one on it, as a server that closes after each response does once the race is lost.
    let url = raw_server(|mut stream| async move {
        if read_request(&mut stream).await.is_none() {
            return;
        }
        if stream
            .write_all(complete_response().as_bytes())
            .await
            .is_err()
        {
            return;
        }
        if read_request(&mut stream).await.is_some() {
            let _ = stream.set_zero_linger();
        }
    })
    .await;
    let out = go_within(
        &spec(&url, 8, 40, Duration::from_secs(5)),
        Duration::from_secs(20),
    )
    .await;
    let requests = &out.summary.requests;
    assert_eq!(requests.sent, 40);
    assert_eq!(requests.failed, 0, "{:?}", requests.errors);
    assert!(
        requests.retried > 0,
        "the resets happened and were retried: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_body_that_never_ends_is_capped_and_recorded_as_failed() {
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let line = "vllm:num_requests_running 1\n".repeat(1 << 15);
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        // Until the client hangs up, bounded by twice the cap in case it never does.
        for _ in 0..(2 * MAX_GET_BODY / line.len()) {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let target = Arc::new(Target::parse(&url, None).unwrap());
    let spec = ScrapeSpec {
        client: Arc::new(HttpClient::new(
            target,
            ClientOptions {
                http2: false,
                pool_size: 1,
                connect_timeout: Duration::from_secs(2),
            },
        )),
        path: "/metrics".into(),
        // Long enough that the cap, not the scrape's time limit, ends the first scrape.
        interval: Duration::from_secs(30),
        jsonl: None,
    };
    let scraping = async {
        let scraper = Scraper::start(spec, |_| {}).await.unwrap();
        scraper.finish().await.unwrap()
    };
    let lines = tokio::time::timeout(Duration::from_secs(60), scraping)
        .await
        .expect("the scraper stopped");
    assert_eq!(lines.len(), 2, "the baseline and the final scrape");
    for line in lines {
        assert!(line.text.is_none());
        let error = line.error.unwrap();
        assert!(error.contains("exceeded the 64 MiB cap"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_by_models_or_metrics_is_scrubbed_before_it_is_kept() {
    // Every GET answer quotes the request's Authorization header back.
    let url = raw_server(|mut stream| async move {
        while let Some(head) = read_request(&mut stream).await {
            let authorization = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: "))
                .unwrap_or("")
                .to_string();
            let body = if head.starts_with("GET /metrics") {
                format!("# caller {authorization}\nvllm:num_requests_running 1\n")
            } else {
                format!(r#"{{"data":[{{"id":"m","owned_by":"{authorization}"}}]}}"#)
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let key = ApiKey::new("sk-echoed-by-get".into()).unwrap();
    let client = Arc::new(HttpClient::new(
        Arc::new(Target::parse(&url, key).unwrap()),
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(2),
        },
    ));
    let info = probe(&client, Duration::from_secs(5)).await;
    let models = serde_json::to_string(&info).unwrap();
    assert!(models.contains("Bearer [redacted]"), "{models}");
    let scraper = Scraper::start(
        ScrapeSpec {
            client,
            path: "/metrics".into(),
            interval: Duration::from_secs(30),
            jsonl: None,
        },
        |_| {},
    )
    .await
    .unwrap();
    let lines = scraper.finish().await.unwrap();
    let text = lines[0].text.as_deref().unwrap();
    assert!(text.contains("# caller Bearer [redacted]"), "{text}");
    for kept in [models, serde_json::to_string(&lines).unwrap()] {
        assert!(!kept.contains("sk-echoed"), "{kept}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ignores_max_tokens_and_never_ends_is_stopped_as_runaway() {
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let event = "data: {\"choices\":[{\"text\":\" a\"}]}\n\n";
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        // Tokens without end, each soon after the last, so no idle limit ever fires.
        for _ in 0..100_000 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await;
    let out = go_within(
        &spec(&url, 1, 2, Duration::from_secs(2)),
        Duration::from_secs(20),
    )
    .await;
    let requests = &out.summary.requests;
    assert_eq!((requests.sent, requests.failed), (2, 2), "{requests:?}");
    assert!(
        requests.errors[0]
            .example
            .contains("runaway stream stopped"),
        "{:?}",
        requests.errors[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_answer_may_take_longer_than_the_idle_limit_to_begin() {
    // Silent for 600 ms (the whole generation), then the whole answer: idle limit 200 ms.
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let body = "{\"choices\":[{\"text\":\" a b\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await;
    let mut unstreamed = spec(&url, 1, 2, Duration::from_millis(200));
    unstreamed.stream = false;
    let out = go_within(&unstreamed, Duration::from_secs(20)).await;
    let requests = &out.summary.requests;
    assert_eq!((requests.ok, requests.failed), (2, 0), "{requests:?}");
    // Streamed, the same silence is a stall.
    let url = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        std::future::pending::<()>().await;
    })
    .await;
    let out = go_within(
        &spec(&url, 1, 1, Duration::from_millis(200)),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.summary.requests.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_health_answer_is_timed_as_the_first_byte_not_the_connect() {
    // Answers every request 150 ms after reading it, on connections it accepts at once.
    let url = raw_server(|mut stream| async move {
        while read_request(&mut stream).await.is_some() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let client = HttpClient::new(
        Arc::new(Target::parse(&url, None).unwrap()),
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(2),
        },
    );
    let network = infer_doctor_load::probe::time_path(&client, Duration::from_secs(5))
        .await
        .expect("the server answered");
    assert_eq!((network.samples, network.path.as_str()), (5, "/health"));
    assert!(
        network.through.first_byte_ms >= 150.0,
        "{:?}",
        network.through
    );
    assert!(network.through.connect_ms < 150.0, "{:?}", network.through);
    assert_eq!(network.through.tls_ms, None);
    // Nothing listening: no timing, not a made-up one.
    let closed = HttpClient::new(
        Arc::new(Target::parse("http://127.0.0.1:9", None).unwrap()),
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(2),
        },
    );
    assert_eq!(
        infer_doctor_load::probe::time_path(&closed, Duration::from_secs(2)).await,
        None
    );
}

/// A server whose prefix cache changes greedy answers: a prompt's first request gets " red green", every later one
/// (a cache hit, alone or batched) " red blue"; a prompt containing "steady" always gets " red green".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_effect_is_reported_as_nondeterminism_alone_not_as_the_batchs() {
    use infer_doctor_load::determinism::{DeterminismSpec, probe as determinism};
    let seen = Arc::new(std::sync::Mutex::new(
        std::collections::HashSet::<String>::new(),
    ));
    let url = raw_server(move |mut stream| {
        let seen = seen.clone();
        async move {
            while let Some(request) = read_request(&mut stream).await {
                let body = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let prompt = serde_json::from_str::<serde_json::Value>(body).unwrap()["prompt"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let cached = !seen.lock().unwrap().insert(prompt.clone());
                let text = if cached && !prompt.contains("steady") {
                    " red blue"
                } else {
                    " red green"
                };
                let answer = serde_json::json!({"choices": [{"text": text, "finish_reason": "length"}]})
                    .to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let client = Arc::new(HttpClient::new(
        Arc::new(Target::parse(&url, None).unwrap()),
        ClientOptions {
            http2: false,
            pool_size: 8,
            connect_timeout: Duration::from_secs(2),
        },
    ));
    let facts = tokio::time::timeout(
        Duration::from_secs(20),
        determinism(
            client,
            DeterminismSpec {
                model: "m".into(),
                prompts: vec!["cached prompt".into(), "steady prompt".into()],
                max_tokens: 2,
                batches: vec![4],
                top_logprobs: 0,
                request_timeout: Duration::from_secs(5),
                deadline: Instant::now() + Duration::from_secs(10),
            },
        ),
    )
    .await
    .expect("the probe ended");
    assert_eq!(facts.repeated, 2, "{facts:#?}");
    assert_eq!(facts.alone_divergences.len(), 1, "{facts:#?}");
    let d = &facts.alone_divergences[0];
    assert_eq!(
        (
            d.prompt,
            d.position,
            d.alone.token.as_str(),
            d.batched.token.as_str()
        ),
        (0, 2, "green", "blue")
    );
    // The batch's copies of the cached prompt differ from its first lone run too, but that is the cache's doing:
    // only the steady prompt's two copies are compared, and they match.
    let run = &facts.runs[0];
    assert_eq!(
        (run.sent, run.compared, run.differing, run.failed),
        (4, 2, 0, 0),
        "{facts:#?}"
    );
    assert!(facts.divergences.is_empty(), "{facts:#?}");
}

/// A strict server that refuses unknown request fields: the template probe asks again without
/// `skip_special_tokens`, both ways, and reads both answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_skip_special_tokens_is_asked_again_without_it() {
    use infer_doctor_load::template::{TemplateSpec, probe as template};
    let url = raw_server(|mut stream| async move {
        while let Some(request) = read_request(&mut stream).await {
            let (status, body) = if request.contains("skip_special_tokens") {
                (
                    "400 Bad Request",
                    r#"{"error":{"message":"Unrecognized request argument supplied: skip_special_tokens"}}"#
                        .to_string(),
                )
            } else if request.starts_with("POST /v1/chat/completions") {
                ("200 OK", r#"{"choices":[{"message":{"content":" Green."},"finish_reason":"stop"}]}"#.into())
            } else if request.starts_with("POST /v1/completions") {
                ("200 OK", r#"{"choices":[{"text":" Green.","finish_reason":"stop"}]}"#.into())
            } else {
                ("404 Not Found", "{}".into())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let client = HttpClient::new(
        Arc::new(Target::parse(&url, None).unwrap()),
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(2),
        },
    );
    let spec = TemplateSpec {
        model: "m".into(),
        messages: vec![],
        rendered: "<s>[INST] hi [/INST]".into(),
        max_tokens: 8,
        timeout: Duration::from_secs(5),
    };
    let facts = tokio::time::timeout(Duration::from_secs(20), template(&client, &spec))
        .await
        .expect("the probe ended");
    assert_eq!(facts.chat.text.as_deref(), Some(" Green."), "{facts:#?}");
    assert_eq!(
        facts.completion.text.as_deref(),
        Some(" Green."),
        "{facts:#?}"
    );
}
