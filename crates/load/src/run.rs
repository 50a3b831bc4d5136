//! One load run: closed loop (N users back to back) or open loop (arrivals on a precomputed schedule, optionally
//! capped in flight), warm-up and stop conditions, cancellation, and the summary over the steady window.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use infer_doctor_core::aggregate::{AggregateConfig, RunContext};
use infer_doctor_core::shard::ShardSpec;
use infer_doctor_core::{
    LatencyHistogram, Phase, PromptSource, RunAggregate, RunSummary, SloSet, TokenCounter,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::LoadError;
use crate::cancel::Cancel;
pub use crate::exchange::Timeouts;
use crate::exchange::{Exchange, Planned};
use crate::http::{ClientOptions, HttpClient};
use crate::openai::{BodyOptions, request_body};
use crate::recorder::Recorder;
use crate::schedule::{Arrival, offsets};
use crate::target::{Endpoint, Target};

#[derive(Clone, Debug, PartialEq)]
pub enum LoadShape {
    /// `concurrency` users, each sending its next request when the previous one ends.
    Closed { concurrency: u64 },
    /// Arrivals at `rate` per second whatever the server does; `max_concurrency` caps requests in flight and
    /// queues the rest in the client (that wait is measured).
    Open {
        rate: f64,
        arrival: Arrival,
        max_concurrency: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    Count(u64),
    Duration(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Warmup {
    None,
    Count(u64),
    Duration(Duration),
}

#[derive(Clone, Debug)]
pub struct RunSpec {
    pub target: Arc<Target>,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub ignore_eos: bool,
    pub continuous_usage: bool,
    pub shape: LoadShape,
    pub stop: Stop,
    pub warmup: Warmup,
    pub timeouts: Timeouts,
    pub connect_timeout: Duration,
    pub http2: bool,
    pub seed: u64,
    pub slo: SloSet,
    /// `requests.jsonl` to write, and whether to append to it (a sweep writes every point into one file).
    pub requests_jsonl: Option<(PathBuf, bool)>,
    /// Added to request ids, so ids stay unique across the points of a sweep.
    pub first_id: u64,
    /// The share of the whole schedule this process sends (`bench --shard I/N`): request `k` of the whole run when
    /// `k mod N == I`, with the prompt the whole run gives it; `shape` stays the whole run's.
    pub shard: ShardSpec,
}

impl RunSpec {
    /// The load this process drives: its shard's share of the users, of the rate and of the in-flight cap.
    pub fn shard_shape(&self) -> LoadShape {
        let shard = self.shard;
        match self.shape {
            LoadShape::Closed { concurrency } => LoadShape::Closed {
                concurrency: shard.share(concurrency),
            },
            LoadShape::Open {
                rate,
                arrival,
                max_concurrency,
            } => LoadShape::Open {
                rate: rate / shard.count as f64,
                arrival,
                max_concurrency: max_concurrency.map(|c| shard.share(c)),
            },
        }
    }

    pub fn check_shard(&self) -> Result<(), LoadError> {
        check_shard(&self.shape, self.shard)
    }

    /// The most requests this process keeps in flight at once.
    pub fn in_flight_limit(&self) -> Option<u64> {
        match self.shard_shape() {
            LoadShape::Closed { concurrency } => Some(concurrency),
            LoadShape::Open {
                max_concurrency, ..
            } => max_concurrency,
        }
    }

    fn warmup_count(&self) -> u64 {
        match self.warmup {
            Warmup::Count(n) => n,
            _ => 0,
        }
    }
}

/// A shard left with no user or no in-flight slot would send nothing: refused before the run.
pub fn check_shard(shape: &LoadShape, shard: ShardSpec) -> Result<(), LoadError> {
    let (flag, n) = match *shape {
        LoadShape::Closed { concurrency } => ("--concurrency", concurrency),
        LoadShape::Open {
            max_concurrency: Some(c),
            ..
        } => ("--max-concurrency", c),
        LoadShape::Open { .. } => return Ok(()),
    };
    if shard.share(n) == 0 {
        return Err(LoadError::Spec(format!(
            "{flag} {n} over {} shards leaves shard {shard} with none: give at least {} (one per shard)",
            shard.count, shard.count
        )));
    }
    Ok(())
}

/// Live counts for a progress display.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

pub struct RunOutput {
    pub summary: RunSummary,
    pub aggregate: RunAggregate,
    /// The instant every record's times count from.
    pub started: Instant,
    /// The wall clock at `started`, µs since the Unix epoch: what puts shards of one run on a common clock.
    pub started_unix_us: u64,
    /// The steady window, µs from `started`.
    pub window_us: (u64, u64),
    pub wall: Duration,
    pub interrupted: bool,
    /// TCP connections opened.
    pub connects: u64,
    /// Arrivals whose deadline the client missed by more than the catch-up bound; the schedule slid instead.
    pub schedule_slips: u64,
}

/// A prompt turned into a request body ahead of time, off the I/O threads.
struct Prepared {
    index: u64,
    body: Bytes,
    max_tokens: u32,
    input_tokens: Option<u32>,
}

/// Everything a request task needs, shared.
struct Shared {
    client: HttpClient,
    path: String,
    stream: bool,
    timeouts: Timeouts,
    started: Instant,
    counter: Option<Arc<dyn TokenCounter>>,
    recorder: Recorder,
    live: Arc<LiveCounters>,
    cancel: Cancel,
    first_id: u64,
    warmup: Warmup,
    warmup_count: u64,
    /// When the first measured request went out: the steady window's start.
    measure_start: OnceLock<Instant>,
    /// When the latest measured request went out: the steady window's end in count mode.
    last_dispatch: Mutex<Option<Instant>>,
    /// Measured requests in flight, and their most at once: the concurrency the steady window reached, apart from
    /// warm-up requests still held (a stalled warm-up keeps its user from sending measured requests).
    measured_in_flight: AtomicU64,
    max_measured_in_flight: AtomicU64,
    /// Microseconds a due request found the feed empty, counted once however many users waited.
    prompt_wait_us: AtomicU64,
}

impl Shared {
    fn phase(&self, index: u64, now: Instant) -> Phase {
        let warm = match self.warmup {
            Warmup::None => false,
            Warmup::Count(_) => index < self.warmup_count,
            Warmup::Duration(d) => now < self.started + d,
        };
        if warm {
            return Phase::Warmup;
        }
        self.measure_start.get_or_init(|| now);
        *self.last_dispatch.lock().expect("dispatch lock") = Some(now);
        Phase::Measured
    }

    async fn send(&self, prepared: Prepared, scheduled: Instant) {
        let phase = self.phase(prepared.index, Instant::now());
        let live = &self.live;
        live.sent.fetch_add(1, Ordering::Relaxed);
        let now_in_flight = live.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        live.max_in_flight
            .fetch_max(now_in_flight, Ordering::Relaxed);
        let measured = phase == Phase::Measured;
        if measured {
            let now_measured = self.measured_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            self.max_measured_in_flight
                .fetch_max(now_measured, Ordering::Relaxed);
        }
        let exchange = Exchange {
            client: &self.client,
            path: &self.path,
            stream: self.stream,
            timeouts: self.timeouts,
            run_start: self.started,
            counter: self.counter.clone(),
        };
        let planned = Planned {
            id: self.first_id + prepared.index,
            phase,
            scheduled,
            body: prepared.body,
            max_tokens: prepared.max_tokens,
            input_tokens: prepared.input_tokens,
        };
        let rec = exchange.execute(planned, &self.cancel).await;
        live.in_flight.fetch_sub(1, Ordering::Relaxed);
        if measured {
            self.measured_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let counter = if rec.ok() { &live.ok } else { &live.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.recorder.finish(rec);
    }
}

/// Threads building prompts: exact-length prompts cost a tokenizer pass or more each, and one thread building
/// 512-token prompts capped a run near 2,000 req/s. Idle builders block on a full queue and cost nothing.
fn prompt_builders() -> usize {
    (crate::cpu::cores() as usize).clamp(1, 8)
}

/// Builds request bodies ahead of the senders on `builders` threads, builder `j` taking this shard's `j`-th,
/// `j + builders`-th, … request, and hands them on in index order: the i-th request carries the same prompt
/// whatever the number of builders or shards, since a prompt is a function of (seed, index in the whole run) only.
fn spawn_feed(
    spec: &RunSpec,
    prompts: Arc<dyn PromptSource>,
    total: Option<u64>,
    depth: usize,
    builders: usize,
) -> mpsc::Receiver<Prepared> {
    let options = Arc::new(BodyOptions {
        endpoint: spec.endpoint,
        model: spec.model.clone(),
        stream: spec.stream,
        ignore_eos: spec.ignore_eos,
        continuous_usage: spec.continuous_usage,
    });
    let builders = builders.max(1);
    let shard = spec.shard;
    let built: Vec<std::sync::mpsc::Receiver<Prepared>> = (0..builders)
        .map(|first| {
            let (tx, rx) = std::sync::mpsc::sync_channel((depth / builders).max(4));
            let (prompts, options) = (prompts.clone(), options.clone());
            std::thread::Builder::new()
                .name(format!("prompt-build-{first}"))
                .spawn(move || {
                    let indices = (first as u64..).step_by(builders).map(|p| shard.nth(p));
                    for index in indices.take_while(|i| total.is_none_or(|t| *i < t)) {
                        let item = prompts.item(index);
                        let prepared = Prepared {
                            index,
                            body: Bytes::from(request_body(&options, &item)),
                            max_tokens: item.max_tokens,
                            input_tokens: item.input_tokens,
                        };
                        if tx.send(prepared).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning a prompt builder thread");
            rx
        })
        .collect();
    let (tx, rx) = mpsc::channel(depth);
    std::thread::Builder::new()
        .name("prompt-feed".into())
        .spawn(move || {
            for next in built.iter().cycle() {
                let Ok(prepared) = next.recv() else { return };
                if tx.blocking_send(prepared).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the prompt feed thread");
    rx
}

/// Runs the load and summarises it. Interruption (`cancel`) stops sending, fails what is in flight as
/// `interrupted`, and still returns everything measured.
pub async fn run(
    spec: &RunSpec,
    prompts: Arc<dyn PromptSource>,
    counter: Option<Arc<dyn TokenCounter>>,
    live: Arc<LiveCounters>,
    cancel: Cancel,
) -> Result<RunOutput, LoadError> {
    let open_loop = matches!(spec.shape, LoadShape::Open { .. });
    let config = AggregateConfig {
        open_loop,
        expect_exact_output: spec.ignore_eos,
        slo: spec.slo.clone(),
    };
    let jsonl = spec
        .requests_jsonl
        .as_ref()
        .map(|(p, append)| (p.as_path(), *append));
    spec.check_shard()?;
    let recorder = Recorder::new(config, jsonl)?;
    let in_flight_limit = spec.in_flight_limit().unwrap_or(256);
    let client_options = ClientOptions {
        http2: spec.http2,
        pool_size: in_flight_limit as usize,
        connect_timeout: spec.connect_timeout,
    };
    let cpu_before = crate::cpu::process_cpu_seconds();
    let started = Instant::now();
    let started_unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let shared = Arc::new(Shared {
        client: HttpClient::new(spec.target.clone(), client_options),
        path: spec.target.path(spec.endpoint.path()),
        stream: spec.stream,
        timeouts: spec.timeouts,
        started,
        counter,
        recorder,
        live,
        cancel: cancel.clone(),
        first_id: spec.first_id,
        warmup: spec.warmup,
        warmup_count: spec.warmup_count(),
        measure_start: OnceLock::new(),
        last_dispatch: Mutex::new(None),
        measured_in_flight: AtomicU64::new(0),
        max_measured_in_flight: AtomicU64::new(0),
        prompt_wait_us: AtomicU64::new(0),
    });
    let total = match spec.stop {
        Stop::Count(n) => Some(n + spec.warmup_count()),
        Stop::Duration(_) => None,
    };
    let depth = (in_flight_limit as usize * 2).clamp(64, 4096);
    let feed = spawn_feed(spec, prompts, total, depth, prompt_builders());
    let shape = spec.shard_shape();
    let (schedule_lag, slips) = match shape {
        LoadShape::Closed { concurrency } => {
            closed_loop(shared.clone(), feed, concurrency, spec.stop).await;
            (None, 0)
        }
        LoadShape::Open {
            rate,
            arrival,
            max_concurrency,
        } => {
            let (lag, slips) =
                open_loop_run(shared.clone(), spec, feed, rate, arrival, max_concurrency).await;
            (Some(lag), slips)
        }
    };
    let wall = started.elapsed();
    let cpu_seconds = crate::cpu::process_cpu_seconds() - cpu_before;
    let shared = Arc::into_inner(shared).expect("every request task has ended");
    let measure_start = shared.measure_start.get().copied().unwrap_or(started);
    let window_end = match spec.stop {
        Stop::Duration(d) => (measure_start + d).min(Instant::now()),
        Stop::Count(_) => shared
            .last_dispatch
            .lock()
            .expect("dispatch lock")
            .unwrap_or(measure_start),
    };
    let us = |t: Instant| t.saturating_duration_since(started).as_micros() as u64;
    let ctx = RunContext {
        window_us: (us(measure_start), us(window_end)),
        requested_rate: match shape {
            LoadShape::Open { rate, .. } => Some(rate),
            LoadShape::Closed { .. } => None,
        },
        max_concurrency: shared.max_measured_in_flight.load(Ordering::Relaxed),
        schedule_lag,
        cpu_seconds,
        wall_seconds: wall.as_secs_f64(),
        cores: crate::cpu::cores(),
        in_flight_limit: spec.in_flight_limit(),
        requested_concurrency: match shape {
            LoadShape::Closed { concurrency } => Some(concurrency),
            LoadShape::Open { .. } => None,
        },
        schedule_slips: slips,
        prompt_wait_s: shared.prompt_wait_us.load(Ordering::Relaxed) as f64 / 1e6,
        peak_rss_bytes: crate::cpu::peak_rss_bytes(),
    };
    let connects = shared.client.connects();
    let (aggregate, written) = shared.recorder.close();
    written?;
    let mut summary = aggregate.summarize(&ctx);
    if slips > 0 {
        summary.warnings.push(format!(
            "the client fell more than {} ms behind its schedule {slips} times and slid the schedule: \
             the load generator could not keep up",
            CATCHUP_BOUND.as_millis()
        ));
    }
    Ok(RunOutput {
        summary,
        aggregate,
        started,
        started_unix_us,
        window_us: ctx.window_us,
        wall,
        interrupted: cancel.is_cancelled(),
        connects,
        schedule_slips: slips,
    })
}

async fn closed_loop(
    shared: Arc<Shared>,
    feed: mpsc::Receiver<Prepared>,
    concurrency: u64,
    stop: Stop,
) {
    let feed = Arc::new(tokio::sync::Mutex::new(feed));
    let mut users = JoinSet::new();
    for _ in 0..concurrency {
        let (shared, feed) = (shared.clone(), feed.clone());
        users.spawn(async move {
            loop {
                if shared.cancel.is_cancelled() {
                    return;
                }
                if let (Stop::Duration(d), Some(start)) = (stop, shared.measure_start.get())
                    && start.elapsed() >= d
                {
                    return;
                }
                let Some(prepared) = next_prompt(&feed, &shared).await else {
                    return;
                };
                shared.send(prepared, Instant::now()).await;
            }
        });
    }
    while users.join_next().await.is_some() {}
}

/// The next prompt for a user whose request is due now, or `None` once the feed is done or the run cancelled. Only
/// the user holding the feed times an empty feed, so a wait is counted once however many users queue behind it.
async fn next_prompt(
    feed: &tokio::sync::Mutex<mpsc::Receiver<Prepared>>,
    shared: &Shared,
) -> Option<Prepared> {
    let mut feed = tokio::select! {
        feed = feed.lock() => feed,
        _ = shared.cancel.cancelled() => return None,
    };
    match feed.try_recv() {
        Ok(prepared) => return Some(prepared),
        Err(mpsc::error::TryRecvError::Disconnected) => return None,
        Err(mpsc::error::TryRecvError::Empty) => {}
    }
    let waiting = Instant::now();
    let next = tokio::select! {
        next = feed.recv() => next,
        _ = shared.cancel.cancelled() => None,
    };
    if next.is_some() {
        shared
            .prompt_wait_us
            .fetch_add(waiting.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
    next
}

/// Beyond this lateness the pacer slides the rest of the schedule instead of firing a burst of overdue arrivals.
const CATCHUP_BOUND: Duration = Duration::from_millis(100);

struct Arrived {
    prepared: Prepared,
    intended: Instant,
}

/// How well the pacer kept its schedule.
#[derive(Default)]
struct Pacing {
    lag: LatencyHistogram,
    slips: u64,
    /// Time past an arrival's deadline spent waiting for its prompt to be built.
    prompt_wait: Duration,
}

/// Sleeps until each arrival's absolute deadline on a dedicated OS thread (sub-millisecond wake-ups, unaffected by
/// busy async workers) and hands arrivals to the dispatcher.
fn spawn_pacer(
    offsets_s: Vec<f64>,
    start: Instant,
    mut feed: mpsc::Receiver<Prepared>,
    cancel: Cancel,
) -> (
    mpsc::UnboundedReceiver<Arrived>,
    std::thread::JoinHandle<Pacing>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let mut slide = Duration::ZERO;
            let mut pacing = Pacing::default();
            for offset in offsets_s {
                let mut intended = start + Duration::from_secs_f64(offset) + slide;
                let prepared = match feed.try_recv() {
                    Ok(prepared) => prepared,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        let waiting = Instant::now();
                        let Some(prepared) = feed.blocking_recv() else {
                            break;
                        };
                        // Only the wait past the deadline held the load back; before it the pacer would sleep.
                        pacing.prompt_wait +=
                            Instant::now().saturating_duration_since(waiting.max(intended));
                        prepared
                    }
                };
                loop {
                    if cancel.is_cancelled() {
                        return pacing;
                    }
                    let now = Instant::now();
                    if now >= intended {
                        let late = now - intended;
                        pacing.lag.record_us(late.as_micros() as u64);
                        if late > CATCHUP_BOUND {
                            slide += late;
                            pacing.slips += 1;
                            intended = now;
                        }
                        break;
                    }
                    std::thread::sleep((intended - now).min(Duration::from_millis(50)));
                }
                if tx.send(Arrived { prepared, intended }).is_err() {
                    break;
                }
            }
            pacing
        })
        .expect("spawning the pacer thread");
    (rx, thread)
}

/// Requests an open loop keeps in flight when the user set no `max_concurrency`: far beyond what a server
/// admits, short of exhausting this machine's tasks and sockets.
pub const OPEN_LOOP_IN_FLIGHT_BOUND: u64 = 100_000;

async fn open_loop_run(
    shared: Arc<Shared>,
    spec: &RunSpec,
    feed: mpsc::Receiver<Prepared>,
    rate: f64,
    arrival: Arrival,
    max_concurrency: Option<u64>,
) -> (LatencyHistogram, u64) {
    let warmup_count = spec.warmup_count();
    // `rate` is this shard's; the schedule and the warm-up's length are the whole run's.
    let shard = spec.shard;
    let whole_rate = rate * shard.count as f64;
    let (count, until) = match (spec.stop, spec.warmup) {
        (Stop::Count(n), _) => (Some(n + warmup_count), None),
        (Stop::Duration(d), Warmup::Duration(w)) => (None, Some((d + w).as_secs_f64())),
        (Stop::Duration(d), _) => (
            None,
            Some(d.as_secs_f64() + warmup_count as f64 / whole_rate),
        ),
    };
    // Every shard draws the whole run's schedule from the seed and keeps its own arrivals, at their times.
    let schedule: Vec<f64> = offsets(whole_rate, arrival, spec.seed, count, until)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| shard.owns(*k as u64))
        .map(|(_, at)| at)
        .collect();
    let (mut arrivals, pacer) = spawn_pacer(schedule, shared.started, feed, shared.cancel.clone());
    // Without a cap of the user's, a slow server must still not accumulate requests (and tasks) without end.
    let cap = max_concurrency.unwrap_or(OPEN_LOOP_IN_FLIGHT_BOUND);
    let slots = Arc::new(Semaphore::new(cap as usize));
    // Overdue requests leave no closer together than this, so a freed slot never releases a burst.
    let min_spacing = Duration::from_secs_f64(0.5 / rate);
    let mut last_send: Option<Instant> = None;
    let mut tasks = JoinSet::new();
    loop {
        let next = tokio::select! {
            a = arrivals.recv() => a,
            _ = shared.cancel.cancelled() => None,
        };
        let Some(Arrived { prepared, intended }) = next else {
            break;
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.ok(),
            _ = shared.cancel.cancelled() => break,
        };
        let now = Instant::now();
        if now.duration_since(intended) > Duration::from_millis(1)
            && let Some(earliest) = last_send.map(|t| t + min_spacing)
            && now < earliest
        {
            tokio::time::sleep_until(earliest.into()).await;
        }
        last_send = Some(Instant::now());
        let shared = shared.clone();
        tasks.spawn(async move {
            shared.send(prepared, intended).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(arrivals);
    while tasks.join_next().await.is_some() {}
    let pacing = pacer.join().unwrap_or_default();
    shared
        .prompt_wait_us
        .fetch_add(pacing.prompt_wait.as_micros() as u64, Ordering::Relaxed);
    (pacing.lag, pacing.slips)
}

#[cfg(test)]
mod tests {
    use infer_doctor_core::PromptItem;

    use super::*;

    /// Prompts that take uneven time to build, so parallel builders finish out of order.
    struct Uneven;

    impl PromptSource for Uneven {
        fn item(&self, index: u64) -> PromptItem {
            std::thread::sleep(Duration::from_micros((index * 7919) % 5 * 150));
            PromptItem {
                text: format!(
                    "prompt {index} of seed-like mix {}",
                    index.wrapping_mul(0x9E37_79B9)
                ),
                messages: None,
                input_tokens: Some(index as u32 % 13),
                max_tokens: 1 + index as u32 % 17,
            }
        }
    }

    fn spec() -> RunSpec {
        RunSpec {
            target: Arc::new(Target::parse("http://127.0.0.1:9", None).unwrap()),
            endpoint: Endpoint::Completions,
            model: "m".into(),
            stream: true,
            ignore_eos: false,
            continuous_usage: false,
            shape: LoadShape::Closed { concurrency: 1 },
            stop: Stop::Count(1),
            warmup: Warmup::None,
            timeouts: Timeouts {
                idle: Duration::from_secs(1),
                total: None,
            },
            connect_timeout: Duration::from_secs(1),
            http2: false,
            seed: 1,
            slo: SloSet::default(),
            requests_jsonl: None,
            first_id: 0,
            shard: Default::default(),
        }
    }

    fn fed(builders: usize, total: u64) -> Vec<(u64, Bytes, u32, Option<u32>)> {
        let mut feed = spawn_feed(&spec(), Arc::new(Uneven), Some(total), 8, builders);
        std::iter::from_fn(|| feed.blocking_recv())
            .map(|p| (p.index, p.body, p.max_tokens, p.input_tokens))
            .collect()
    }

    #[test]
    fn parallel_prompt_builders_feed_the_same_prompts_in_the_same_order() {
        let spec = spec();
        let options = BodyOptions {
            endpoint: spec.endpoint,
            model: spec.model.clone(),
            stream: spec.stream,
            ignore_eos: spec.ignore_eos,
            continuous_usage: spec.continuous_usage,
        };
        let expected: Vec<_> = (0..203)
            .map(|index| {
                let item = Uneven.item(index);
                let body = Bytes::from(request_body(&options, &item));
                (index, body, item.max_tokens, item.input_tokens)
            })
            .collect();
        assert_eq!(fed(1, 203), expected);
        // 203 is no multiple of 4 or 5: the builders end on different rounds and the feed still stops at 203.
        assert_eq!(fed(4, 203), expected);
        assert_eq!(fed(5, 203), expected);

        // Shards of the same run: each feeds its own requests with the whole run's prompts, and together all of them.
        let mut union = Vec::new();
        for index in 0..3 {
            let mut sharded = super::tests::spec();
            sharded.shard = ShardSpec { index, count: 3 };
            let mut feed = spawn_feed(&sharded, Arc::new(Uneven), Some(203), 8, 4);
            let own: Vec<_> = std::iter::from_fn(|| feed.blocking_recv())
                .map(|p| (p.index, p.body, p.max_tokens, p.input_tokens))
                .collect();
            assert!(own.iter().all(|(k, ..)| k % 3 == index));
            assert_eq!(own.len() as u64, sharded.shard.owned_below(203));
            union.extend(own);
        }
        union.sort_by_key(|(k, ..)| *k);
        assert_eq!(union, expected);
    }

    #[test]
    fn a_shard_takes_its_share_of_users_rate_and_cap() {
        let mut spec = spec();
        spec.shape = LoadShape::Closed { concurrency: 5 };
        spec.shard = ShardSpec { index: 1, count: 2 };
        assert_eq!(spec.shard_shape(), LoadShape::Closed { concurrency: 2 });
        spec.shard = ShardSpec { index: 5, count: 6 };
        let err = spec.check_shard().unwrap_err().to_string();
        assert_eq!(
            err,
            "--concurrency 5 over 6 shards leaves shard 5/6 with none: give at least 6 (one per shard)"
        );
        spec.shape = LoadShape::Open {
            rate: 12.0,
            arrival: Arrival::Poisson,
            max_concurrency: Some(7),
        };
        spec.shard = ShardSpec { index: 0, count: 3 };
        assert_eq!(
            spec.shard_shape(),
            LoadShape::Open {
                rate: 4.0,
                arrival: Arrival::Poisson,
                max_concurrency: Some(3)
            }
        );
        assert_eq!(spec.in_flight_limit(), Some(3));
    }
}
