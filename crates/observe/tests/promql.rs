//! Proves that `window` computes exactly what a real Prometheus 2.42 computes: the test runs Prometheus on
//! loopback, lets it scrape an exposition server of ours, and compares PromQL's answers with ours on its samples.
//!
//! The exposition is a function of the scrape number, shaped to reach PromQL's corners: counter resets, a series
//! that starts and ends inside windows (half-interval extrapolation, zero clamp), a sparse series with explicit
//! timestamps (irregular intervals), a histogram whose distribution drifts and resets, a histogram with a
//! duplicate bound (`1` and `1.0`), a non-monotonic bucket and a negative bound, and gauges with NaN, ±Inf and
//! cancelling 1e16 magnitudes. Prometheus answers at every 50 ms over the run (`query_range`) and at instants
//! placed exactly on window edges (`query` with `time=`); we answer from the raw samples fetched with `x[1m]`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use infer_doctor_observe::window::{self, BucketSeries, Point, Window};

use infer_doctor_testkit::prometheus::RunningPrometheus;

/// Prometheus accepts sub-second intervals; 200 ms gives 25–50 samples per window in a 12 s run.
const SCRAPE_INTERVAL_MS: i64 = 200;
const SCRAPES_TO_COLLECT: usize = 60;
/// Divides the scrape interval, so that evaluation times land on sample times and window edges.
const STEP_MS: i64 = 50;
const TEST_LIMIT: Duration = Duration::from_secs(60);
const RELATIVE_TOLERANCE: f64 = 1e-9;

// What happens at which scrape number.
const REQUESTS_RESET_AT: usize = 25;
const LATENCY_RESET_AT: usize = 40;
const SHORT_LIVED_SCRAPES: Range<usize> = 15..30;
const SPARSE_UPDATES: [usize; 16] = [0, 1, 2, 3, 4, 9, 10, 18, 19, 20, 21, 33, 34, 35, 50, 51];
const SPARSE_RESET_AT: usize = 33;
const LATENCY_BOUNDS: [f64; 6] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[test]
fn window_arithmetic_equals_promql_of_a_real_prometheus_2_42() {
    let started = Instant::now();

    let exposition = ExpositionServer::start();
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let mut prometheus =
        RunningPrometheus::start(scratch.path(), &scrape_config(exposition.address));
    prometheus.wait_until_ready();

    let scrape_deadline = started + TEST_LIMIT / 2;
    while exposition.scrapes.load(Ordering::SeqCst) < SCRAPES_TO_COLLECT {
        assert!(
            Instant::now() < scrape_deadline,
            "Prometheus scraped only {} times in {:?}; its log:\n{}",
            exposition.scrapes.load(Ordering::SeqCst),
            started.elapsed(),
            prometheus.log_tail()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let end_ms = unix_now_ms();
    // A scrape stamped before `end_ms` may still be in flight; it is committed within its timeout.
    thread::sleep(Duration::from_millis(3 * SCRAPE_INTERVAL_MS as u64));

    let stored = prometheus.stored_series(end_ms);
    let checks = checks(&stored);
    let requests = stored.series("demo_requests_total");
    let first_ms = requests
        .first()
        .expect("stored demo_requests_total samples")
        .t_ms;

    let mut comparison = Comparison::default();
    for check in &checks {
        assert!(
            started.elapsed() < TEST_LIMIT,
            "test exceeded {TEST_LIMIT:?}"
        );
        // From before the first sample (no result) to the end of the run, every 50 ms.
        let theirs = prometheus.query_range(&check.promql, first_ms - 1000, end_ms);
        let mut t_ms = first_ms - 1000;
        while t_ms <= end_ms {
            comparison.record(
                &check.promql,
                t_ms,
                (check.ours)(t_ms),
                theirs.get(&t_ms).copied(),
            );
            t_ms += STEP_MS;
        }
    }
    // Instants that put a sample exactly on a window's left edge (`t - w`) or right edge (`t`): Prometheus 2.42
    // includes both.
    let edge_instants: Vec<i64> = [0, requests.len() / 3, 2 * requests.len() / 3]
        .iter()
        .flat_map(|&i| {
            [
                requests[i].t_ms,
                requests[i].t_ms + 5000,
                requests[i].t_ms + 10_000,
            ]
        })
        .filter(|&t_ms| t_ms <= end_ms)
        .collect();
    for check in &checks {
        for &t_ms in &edge_instants {
            let theirs = prometheus.query(&check.promql, t_ms);
            comparison.record(&check.promql, t_ms, (check.ours)(t_ms), theirs);
        }
    }

    println!(
        "{} comparisons ({} with a value) over {} samples of {} series; worst relative difference {:e}; {:?}",
        comparison.count,
        comparison.with_value,
        stored.series.values().map(Vec::len).sum::<usize>(),
        stored.series.len(),
        comparison.worst_relative_difference,
        started.elapsed()
    );
    assert!(
        comparison.mismatches.is_empty(),
        "{} of {} results differ from PromQL (first 20):\n{}",
        comparison.mismatches.len(),
        comparison.count,
        comparison
            .mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        comparison.with_value > 1000,
        "too few results to compare: {}",
        comparison.with_value
    );
    assert!(
        started.elapsed() < TEST_LIMIT,
        "test exceeded {TEST_LIMIT:?}"
    );
}

/// One PromQL expression and our computation of it at an evaluation time (Unix ms).
struct Check<'a> {
    promql: String,
    ours: Box<dyn Fn(i64) -> Option<f64> + 'a>,
}

fn checks(stored: &StoredSeries) -> Vec<Check<'_>> {
    fn check<'a>(promql: String, ours: impl Fn(i64) -> Option<f64> + 'a) -> Check<'a> {
        Check {
            promql,
            ours: Box::new(ours),
        }
    }
    let at = |t_ms: i64, range_ms: i64| Window::new(t_ms, range_ms).expect("a valid window");
    let requests = stored.series("demo_requests_total");
    let short_lived = stored.series("demo_short_lived_total");
    let sparse = stored.series("demo_sparse_total");
    let queue_depth = stored.series("demo_queue_depth");
    let odd_gauge = stored.series("demo_odd_gauge");
    let latency_buckets = stored.buckets("demo_latency_seconds_bucket");
    let odd_buckets = stored.buckets("demo_odd_seconds_bucket");
    let latency_sum = stored.series("demo_latency_seconds_sum");
    let latency_count = stored.series("demo_latency_seconds_count");

    let mut checks = vec![
        check("rate(demo_requests_total[5s])".into(), move |t| {
            window::rate(requests, at(t, 5000))
        }),
        check("increase(demo_requests_total[10s])".into(), move |t| {
            window::increase(requests, at(t, 10_000))
        }),
        check(
            "count_over_time(demo_requests_total[10s])".into(),
            move |t| {
                let selected = at(t, 10_000).select(requests);
                (!selected.is_empty()).then_some(selected.len() as f64)
            },
        ),
        check("increase(demo_short_lived_total[5s])".into(), move |t| {
            window::increase(short_lived, at(t, 5000))
        }),
        check("rate(demo_short_lived_total[10s])".into(), move |t| {
            window::rate(short_lived, at(t, 10_000))
        }),
        check("rate(demo_sparse_total[10s])".into(), move |t| {
            window::rate(sparse, at(t, 10_000))
        }),
        check("increase(demo_sparse_total[5s])".into(), move |t| {
            window::increase(sparse, at(t, 5000))
        }),
        check("delta(demo_queue_depth[5s])".into(), move |t| {
            window::delta(queue_depth, at(t, 5000))
        }),
        check(
            "rate(demo_latency_seconds_sum[10s]) / rate(demo_latency_seconds_count[10s])".into(),
            move |t| window::histogram_mean_over_window(latency_sum, latency_count, at(t, 10_000)),
        ),
    ];
    for (q, range) in [(0.5, "10s"), (0.9, "10s"), (0.99, "10s"), (0.9, "5s")] {
        let range_ms = if range == "5s" { 5000 } else { 10_000 };
        let buckets = latency_buckets.clone();
        checks.push(check(
            format!("histogram_quantile({q}, rate(demo_latency_seconds_bucket[{range}]))"),
            move |t| window::histogram_quantile_over_window(q, &buckets, at(t, range_ms)),
        ));
    }
    for q in [0.1, 0.4, 0.5, 0.75, 0.95] {
        let buckets = odd_buckets.clone();
        checks.push(check(
            format!("histogram_quantile({q}, rate(demo_odd_seconds_bucket[5s]))"),
            move |t| window::histogram_quantile_over_window(q, &buckets, at(t, 5000)),
        ));
    }
    for (gauge, points, range, range_ms) in [
        ("demo_queue_depth", queue_depth, "10s", 10_000),
        ("demo_odd_gauge", odd_gauge, "5s", 5000),
    ] {
        checks.extend([
            check(format!("avg_over_time({gauge}[{range}])"), move |t| {
                window::avg_over_time(points, at(t, range_ms))
            }),
            check(format!("max_over_time({gauge}[{range}])"), move |t| {
                window::max_over_time(points, at(t, range_ms))
            }),
            check(format!("min_over_time({gauge}[{range}])"), move |t| {
                window::min_over_time(points, at(t, range_ms))
            }),
            check(
                format!("quantile_over_time(0.95, {gauge}[{range}])"),
                move |t| window::quantile_over_time(0.95, points, at(t, range_ms)),
            ),
            check(
                format!("quantile_over_time(0.5, {gauge}[{range}])"),
                move |t| window::quantile_over_time(0.5, points, at(t, range_ms)),
            ),
        ]);
    }
    checks
}

#[derive(Default)]
struct Comparison {
    count: usize,
    with_value: usize,
    worst_relative_difference: f64,
    mismatches: Vec<String>,
}

impl Comparison {
    fn record(&mut self, promql: &str, t_ms: i64, ours: Option<f64>, theirs: Option<f64>) {
        self.count += 1;
        let agree = match (ours, theirs) {
            (None, None) => true,
            (Some(ours), Some(theirs)) => {
                self.with_value += 1;
                let both_nan = ours.is_nan() && theirs.is_nan();
                let relative_difference = if both_nan || ours == theirs {
                    0.0
                } else {
                    (ours - theirs).abs() / ours.abs().max(theirs.abs())
                };
                self.worst_relative_difference =
                    self.worst_relative_difference.max(relative_difference);
                relative_difference <= RELATIVE_TOLERANCE
            }
            _ => false,
        };
        if !agree {
            self.mismatches.push(format!(
                "{promql} at {}: ours {ours:?}, PromQL {theirs:?}",
                api_time(t_ms)
            ));
        }
    }
}

/// The raw samples Prometheus stored, by series: `name` or `name{le="..."}`.
struct StoredSeries {
    series: BTreeMap<String, Vec<Point>>,
}

impl StoredSeries {
    fn series(&self, key: &str) -> &[Point] {
        self.series
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("Prometheus stored no series {key}"))
    }

    fn buckets(&self, bucket_name: &str) -> Vec<BucketSeries<'_>> {
        let prefix = format!("{bucket_name}{{le=\"");
        let buckets: Vec<BucketSeries<'_>> = self
            .series
            .iter()
            .filter_map(|(key, points)| {
                let le = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let upper_bound = le
                    .parse()
                    .unwrap_or_else(|_| panic!("le {le:?} is not a number"));
                Some(BucketSeries {
                    upper_bound,
                    points,
                })
            })
            .collect();
        assert!(
            !buckets.is_empty(),
            "Prometheus stored no {bucket_name} series"
        );
        buckets
    }
}

/// The queries this test asks of the Prometheus it started.
trait Queries {
    fn stored_series(&self, end_ms: i64) -> StoredSeries;
    fn query_range(&self, promql: &str, start_ms: i64, end_ms: i64) -> BTreeMap<i64, f64>;
    fn query(&self, promql: &str, t_ms: i64) -> Option<f64>;
}

impl Queries for RunningPrometheus {
    /// Every `demo_*` sample stored up to `end_ms`, fetched as the range vector `{__name__=~"demo_.+"}[1m]`.
    fn stored_series(&self, end_ms: i64) -> StoredSeries {
        let data = self.api(
            "query",
            &[
                ("query", r#"{__name__=~"demo_.+"}[1m]"#.into()),
                ("time", api_time(end_ms)),
            ],
        );
        assert_eq!(
            data["resultType"], "matrix",
            "unexpected raw answer: {data}"
        );
        let mut series = BTreeMap::new();
        for result in data["result"].as_array().expect("a result array") {
            let metric = &result["metric"];
            let name = metric["__name__"].as_str().expect("a metric name");
            let key = match metric["le"].as_str() {
                Some(le) => format!("{name}{{le=\"{le}\"}}"),
                None => name.to_owned(),
            };
            series.insert(key, points(&result["values"]));
        }
        StoredSeries { series }
    }

    /// PromQL's answer at each evaluation time from `start_ms` to `end_ms` every [`STEP_MS`], by time.
    fn query_range(&self, promql: &str, start_ms: i64, end_ms: i64) -> BTreeMap<i64, f64> {
        let data = self.api(
            "query_range",
            &[
                ("query", promql.into()),
                ("start", api_time(start_ms)),
                ("end", api_time(end_ms)),
                ("step", format!("{STEP_MS}ms")),
            ],
        );
        let results = data["result"].as_array().expect("a result array");
        assert!(results.len() <= 1, "{promql} gave {} series", results.len());
        results
            .first()
            .map(|result| points(&result["values"]))
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.t_ms, p.v))
            .collect()
    }

    /// PromQL's answer at one instant, or `None` when the expression has no sample there.
    fn query(&self, promql: &str, t_ms: i64) -> Option<f64> {
        let data = self.api(
            "query",
            &[("query", promql.into()), ("time", api_time(t_ms))],
        );
        let results = data["result"].as_array().expect("a result array");
        assert!(results.len() <= 1, "{promql} gave {} series", results.len());
        results.first().map(|result| point(&result["value"]).v)
    }
}

/// Prometheus scraping our exposition server every [`SCRAPE_INTERVAL_MS`].
fn scrape_config(target: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL_MS}ms\n  scrape_timeout: {SCRAPE_INTERVAL_MS}ms\n\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Our `/metrics`: answers each scrape with the exposition for its scrape number, on loopback.
struct ExpositionServer {
    address: SocketAddr,
    scrapes: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ExpositionServer {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (scrapes, stopping) = (Arc::clone(&scrapes), Arc::clone(&stopping));
            thread::spawn(move || {
                for connection in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    // A broken connection only costs Prometheus one scrape; the comparison uses what it stored.
                    if let Ok(connection) = connection {
                        let _ = serve_scrape(connection, &scrapes);
                    }
                }
            })
        };
        Self {
            address,
            scrapes,
            stopping,
            thread: Some(thread),
        }
    }
}

impl Drop for ExpositionServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the thread sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_scrape(mut connection: TcpStream, scrapes: &AtomicUsize) -> std::io::Result<()> {
    connection.set_read_timeout(Some(Duration::from_secs(2)))?;
    let request = read_request_head(&mut connection)?;
    if !request.starts_with("GET /metrics") {
        return connection.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let scrape = scrapes.fetch_add(1, Ordering::SeqCst);
    let body = exposition(scrape, unix_now_ms());
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes())?;
    connection.write_all(body.as_bytes())
}

fn read_request_head(connection: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let read = connection.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The text exposition at the `scrape`-th scrape (counting from 0).
fn exposition(scrape: usize, now_ms: i64) -> String {
    let mut text = String::new();
    let mut line = |line: String| {
        text.push_str(&line);
        text.push('\n');
    };

    line("# TYPE demo_requests_total counter".into());
    line(format!(
        "demo_requests_total {}",
        number(requests_total(scrape))
    ));

    if SHORT_LIVED_SCRAPES.contains(&scrape) {
        // Starts near zero, so extrapolating it back from its first sample is clamped at the zero point.
        line("# TYPE demo_short_lived_total counter".into());
        line(format!(
            "demo_short_lived_total {}",
            number(0.5 + 3.0 * (scrape - SHORT_LIVED_SCRAPES.start) as f64)
        ));
    }

    if SPARSE_UPDATES.contains(&scrape) {
        // An explicit timestamp, and only on some scrapes: the stored intervals are irregular. Prometheus 2.42
        // does not mark such series stale when they are absent.
        line("# TYPE demo_sparse_total counter".into());
        line(format!(
            "demo_sparse_total {} {now_ms}",
            number(sparse_total(scrape))
        ));
    }

    let (latency_buckets, latency_sum, latency_count) = latency_histogram(scrape);
    line("# TYPE demo_latency_seconds histogram".into());
    for (bound, count) in LATENCY_BOUNDS.iter().zip(&latency_buckets) {
        line(format!(
            "demo_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
        ));
    }
    line(format!(
        "demo_latency_seconds_bucket{{le=\"+Inf\"}} {latency_count}"
    ));
    line(format!("demo_latency_seconds_sum {}", number(latency_sum)));
    line(format!("demo_latency_seconds_count {latency_count}"));

    line("# TYPE demo_odd_seconds histogram".into());
    for (le, count) in odd_histogram(scrape) {
        line(format!("demo_odd_seconds_bucket{{le=\"{le}\"}} {count}"));
    }

    line("# TYPE demo_queue_depth gauge".into());
    line(format!(
        "demo_queue_depth {}",
        number(((scrape * 37) % 11) as f64 * 0.5 + (scrape % 3) as f64 * 0.1)
    ));
    line("# TYPE demo_odd_gauge gauge".into());
    line(format!("demo_odd_gauge {}", number(odd_gauge(scrape))));
    text
}

/// Starts at 40, grows by 1–4 per scrape, and restarts from zero at [`REQUESTS_RESET_AT`].
fn requests_total(scrape: usize) -> f64 {
    let (base, first) = if scrape >= REQUESTS_RESET_AT {
        (0.0, REQUESTS_RESET_AT)
    } else {
        (40.0, 0)
    };
    base + (first..=scrape)
        .map(|i| 1.0 + ((i * 7) % 5) as f64 * 0.75)
        .sum::<f64>()
}

/// +2.5 per update; restarts from 1 at [`SPARSE_RESET_AT`].
fn sparse_total(scrape: usize) -> f64 {
    let (base, since) = if scrape >= SPARSE_RESET_AT {
        (1.0, SPARSE_RESET_AT)
    } else {
        (10.0, 0)
    };
    let updates = SPARSE_UPDATES
        .iter()
        .filter(|&&u| u >= since && u <= scrape)
        .count();
    base + 2.5 * updates as f64
}

/// Cumulative bucket counts (finite bounds), sum and count of observations that drift upwards over the run;
/// everything restarts at [`LATENCY_RESET_AT`].
fn latency_histogram(scrape: usize) -> (Vec<u64>, f64, u64) {
    let first = if scrape >= LATENCY_RESET_AT {
        LATENCY_RESET_AT
    } else {
        0
    };
    let observations: Vec<f64> = (first..=scrape)
        .flat_map(|i| {
            let drift = 1.0 + i as f64 / 20.0;
            (0..3 + i % 4).map(move |j| 0.02 * (1 + (i * 13 + j * 7) % 40) as f64 * drift)
        })
        .collect();
    let buckets = LATENCY_BOUNDS
        .iter()
        .map(|&bound| observations.iter().filter(|&&o| o <= bound).count() as u64);
    (
        buckets.collect(),
        observations.iter().sum(),
        observations.len() as u64,
    )
}

/// A histogram that bends the rules: a negative lowest bound, the bound 1 written twice (`1` and `1.0`, two
/// series that PromQL merges), and `le="2"` growing more slowly than the merged `le="1"`, so that its rate must
/// be raised to keep the cumulative counts monotonic. With five finite bounds the quantile search probes
/// `le="2"` first, so q = 0.4 (a rank between the two) finds a different bucket unless the rate is raised.
fn odd_histogram(scrape: usize) -> [(&'static str, usize); 7] {
    let total = |increment: fn(usize) -> usize| (0..=scrape).map(increment).sum::<usize>();
    [
        ("-0.5", total(|i| i % 2)),
        ("1", total(|i| 1 + i % 3)),
        ("1.0", total(|_| 1)),
        ("2", total(|i| 2 + usize::from(i.is_multiple_of(4)))),
        ("3", total(|_| 4)),
        ("4", total(|i| 5 + i % 2)),
        ("+Inf", total(|i| 6 + i % 2)),
    ]
}

/// Cancelling ±1e16 (where compensated summation matters), a NaN and a lone +Inf and −Inf among small values.
fn odd_gauge(scrape: usize) -> f64 {
    match scrape {
        8 => f64::NAN,
        35 => f64::INFINITY,
        37 => f64::NEG_INFINITY,
        _ if scrape.is_multiple_of(4) => 1e16,
        _ if scrape % 4 == 2 => -1e16,
        _ => scrape as f64 * 0.3,
    }
}

/// A sample value as the text format spells it.
fn number(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

/// `[[seconds, "value"], ...]` from the HTTP API.
fn points(values: &serde_json::Value) -> Vec<Point> {
    values
        .as_array()
        .expect("an array of [time, value] pairs")
        .iter()
        .map(point)
        .collect()
}

fn point(pair: &serde_json::Value) -> Point {
    let t_secs = pair[0].as_f64().expect("a time in seconds");
    let value = pair[1].as_str().expect("a value string");
    // Rust reads Go's "NaN", "+Inf" and "-Inf" spellings too.
    let v = value
        .parse()
        .unwrap_or_else(|_| panic!("value {value:?} is not a number"));
    Point::from_secs(t_secs, v).expect("a representable time")
}

/// Milliseconds as the API's decimal seconds, exact to the millisecond.
fn api_time(t_ms: i64) -> String {
    format!("{}.{:03}", t_ms.div_euclid(1000), t_ms.rem_euclid(1000))
}

fn unix_now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}
