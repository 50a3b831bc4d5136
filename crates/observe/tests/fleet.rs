//! The Prometheus API as a source, against a real Prometheus 2.42 scraping two simulated vLLM pods on loopback:
//! per-pod and fleet-wide canonical signals must match what each pod actually did.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infer_doctor_core::Signal;
use infer_doctor_observe::dialect::Dialect;
use infer_doctor_observe::prometheus::{
    FleetView, Scope, capacity_query, detect, fleet_wide, names_in, names_query, queries, timeline,
    timeline_queries,
};
use infer_doctor_sim::server::SimServer;
use infer_doctor_sim::setup::SimSetup;
use infer_doctor_sim::text::WordTokenizer;

use infer_doctor_testkit::prometheus::RunningPrometheus;

fn pod(max_num_seqs: u32) -> SimSetup {
    SimSetup {
        model: "tiny".into(),
        served_model_name: "tiny".into(),
        gpu: "l4".into(),
        max_model_len: 2048,
        max_num_seqs: Some(max_num_seqs),
        jitter_sigma: 0.0,
        ..SimSetup::default()
    }
}

/// One blocking, non-streamed completion on its own connection.
fn complete(addr: SocketAddr, tokens: u32) {
    let body = format!(r#"{{"prompt": "a b c d", "max_tokens": {tokens}, "ignore_eos": true}}"#);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn per_pod_and_fleet_signals_come_from_prometheus_as_each_pod_did() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = |setup: SimSetup| {
        let built = setup.build().unwrap();
        let blocks = built.scheduler.num_gpu_blocks;
        let server = runtime
            .block_on(SimServer::start(
                built.core,
                built.server,
                Arc::new(WordTokenizer),
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(|_| {}),
            ))
            .unwrap();
        (server, blocks)
    };
    // Pod a takes two requests at a time, so a crowd queues there; pod b never queues.
    let ((a, blocks_a), (b, _)) = (start(pod(2)), start(pod(64)));
    let scratch = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: vllm\n    \
         static_configs:\n      - targets: ['{}']\n        labels: {{pod: a}}\n      - targets: ['{}']\n        \
         labels: {{pod: b}}\n",
        a.addr, b.addr
    );
    let mut prometheus = RunningPrometheus::start(scratch.path(), &config);
    prometheus.wait_until_ready();
    prometheus.wait_until_scraping(2);
    std::thread::sleep(Duration::from_millis(400));
    let began = Instant::now();
    let load: Vec<_> = (0..12)
        .map(|_| (a.addr, 150))
        .chain((0..6).map(|_| (b.addr, 150)))
        .map(|(addr, tokens)| std::thread::spawn(move || complete(addr, tokens)))
        .collect();
    for worker in load {
        worker.join().unwrap();
    }
    // Let Prometheus scrape the final state.
    std::thread::sleep(Duration::from_millis(800));

    let window = began.elapsed() + Duration::from_secs(2);
    let scope = Scope::new("{job=\"vllm\"}", window, "pod").unwrap();
    let names = prometheus.api("query", &[("query", names_query(&scope))]);
    assert_eq!(detect(&names), Some(Dialect::VllmV1), "{names}");
    let mut view = FleetView::new(Dialect::VllmV1, &scope);
    for q in queries(Dialect::VllmV1, &names_in(&names), &scope) {
        view.record(
            &q,
            &prometheus.api("query", &[("query", q.promql.clone())]),
            false,
        );
        let all = fleet_wide(&q, &scope);
        view.record(
            &all,
            &prometheus.api("query", &[("query", all.promql.clone())]),
            true,
        );
    }
    let (info, x, y) = capacity_query(Dialect::VllmV1, &scope).unwrap();
    view.record_capacity(&prometheus.api("query", &[("query", info)]), x, y);

    assert_eq!(view.pods.keys().collect::<Vec<_>>(), ["a", "b"]);
    // increase() extrapolates to the window's end by up to a scrape interval: within a few percent.
    let finished = |w: &infer_doctor_core::signals::ServerWindow| {
        w.counter(Signal::RequestsFinished).unwrap().by_label["length"]
    };
    let near = |got: f64, want: f64| (want..want * 1.15).contains(&got);
    assert!(
        near(finished(&view.pods["a"]), 12.0),
        "{}",
        finished(&view.pods["a"])
    );
    assert!(
        near(finished(&view.pods["b"]), 6.0),
        "{}",
        finished(&view.pods["b"])
    );
    assert!(
        near(finished(&view.fleet), 18.0),
        "{}",
        finished(&view.fleet)
    );
    let waiting = |w: &infer_doctor_core::signals::ServerWindow| {
        w.gauge(Signal::RequestsWaiting).unwrap().max
    };
    assert!(waiting(&view.pods["a"]) >= 1.0);
    assert_eq!(waiting(&view.pods["b"]), 0.0);
    let e2e = view.pods["a"].histogram(Signal::E2e).unwrap();
    assert!(near(e2e.count, 12.0) && e2e.p50 > 0.0, "{e2e:?}");
    assert_eq!(
        view.pods["a"].gauge(Signal::KvCapacityTokens).unwrap().last,
        f64::from(blocks_a) * 16.0
    );
    // The fleet's queue over time, from range queries: pod a's crowd shows up as waiting > 0.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let answers: Vec<_> = timeline_queries(Dialect::VllmV1, &names_in(&names), &scope)
        .into_iter()
        .map(|q| {
            let params = [
                ("query", q.promql.clone()),
                ("start", format!("{:.3}", now - window.as_secs_f64())),
                ("end", format!("{now:.3}")),
                ("step", "0.2".to_string()),
            ];
            let data = prometheus.api("query_range", &params);
            (q, data)
        })
        .collect();
    let series = timeline(Dialect::VllmV1, &answers);
    assert!(series.len() > 5, "{}", series.len());
    assert!(series.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        series
            .iter()
            .any(|(_, r)| r.value(Signal::RequestsWaiting) >= Some(1.0))
    );
    assert!(
        series
            .iter()
            .any(|(_, r)| r.value(Signal::RequestsRunning) >= Some(2.0))
    );
    drop(prometheus);
    drop((a, b));
}
