//! The metrics scraper against loopback servers: it keeps its interval on the run clock, stores every scrape as
//! it arrives, and turns a dead, slow or failing endpoint into recorded gaps without stopping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infer_doctor_load::Target;
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::scrape::{ScrapeLine, ScrapeSpec, Scraper, read_jsonl};
use infer_doctor_testkit::{MockConfig, MockServer};

fn spec(url: &str, interval_ms: u64, jsonl: Option<std::path::PathBuf>) -> ScrapeSpec {
    let target = Arc::new(Target::parse(url, None).unwrap());
    let path = target.path("/metrics");
    ScrapeSpec {
        client: Arc::new(HttpClient::new(
            target,
            ClientOptions {
                http2: false,
                pool_size: 1,
                connect_timeout: Duration::from_millis(500),
            },
        )),
        path,
        interval: Duration::from_millis(interval_ms),
        jsonl,
    }
}

async fn scrape_for(spec: ScrapeSpec, run: Duration) -> (Vec<ScrapeLine>, usize) {
    let seen = Arc::new(Mutex::new(0usize));
    let counter = seen.clone();
    let scraper = Scraper::start(spec, move |_| *counter.lock().unwrap() += 1)
        .await
        .unwrap();
    tokio::time::sleep(run).await;
    let lines = scraper.finish().await.unwrap();
    let seen = *seen.lock().unwrap();
    (lines, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_on_its_interval_and_stores_each_as_it_arrives() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("server_metrics.jsonl");
    let (lines, seen) = scrape_for(
        spec(&server.url(), 100, Some(jsonl.clone())),
        Duration::from_millis(1050),
    )
    .await;
    assert!((10..=13).contains(&lines.len()), "{}", lines.len());
    assert_eq!(seen, lines.len());
    assert!(lines.iter().all(|l| l.error.is_none()));
    assert!(
        lines[0]
            .text
            .as_deref()
            .unwrap()
            .contains("testkit_requests_total 0")
    );
    // On the run clock, 100 ms apart: the baseline taken before `start` returned is its zero, the last is taken
    // when the scraper is stopped.
    assert_eq!(lines[0].t, 0.0);
    assert!((1.0..1.2).contains(&lines.last().unwrap().t));
    for pair in lines[..lines.len() - 1].windows(2) {
        let gap = pair[1].t - pair[0].t;
        assert!((0.08..0.15).contains(&gap), "{gap}");
    }
    let stored = read_jsonl(&jsonl).unwrap();
    assert_eq!(stored.len(), lines.len());
    for (a, b) in stored.iter().zip(&lines) {
        assert_eq!(a.text, b.text);
        assert!((a.t - b.t).abs() < 1e-9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_or_slow_endpoints_are_gaps_not_failures() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (lines, _) = scrape_for(
        spec(&format!("http://{dead}"), 100, None),
        Duration::from_millis(450),
    )
    .await;
    assert!(lines.len() >= 3);
    assert!(
        lines
            .iter()
            .all(|l| l.text.is_none() && l.error.as_deref().unwrap().contains("connect"))
    );

    let slow = MockServer::start(MockConfig {
        metrics_delay: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (lines, _) = scrape_for(spec(&slow.url(), 200, None), Duration::from_millis(2300)).await;
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.error.as_deref().unwrap().contains("no answer within 1s"))
    );
}
