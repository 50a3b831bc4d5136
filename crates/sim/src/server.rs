//! The simulated server on a real clock: an engine thread that sleeps through each step's cost and streams the
//! tokens it produced, behind vLLM's OpenAI-compatible HTTP API, `/metrics`, `/health`, `/tokenize` and faults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, Semaphore, mpsc as amsc, oneshot};

use crate::core::{SimCore, TokenOut};
use crate::engine::{FinishReason, NewRequest};
use crate::fleet::{Outage, Router, RouterKind};
use crate::logs::LogRecord;
use crate::metrics::with_label;
use crate::picker::PickerMetrics;
use crate::text::{Generated, Generation, Tokenize, block_hashes};

/// Where the model would stop on its own, when the client does not say `ignore_eos`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum StopModel {
    /// Output lengths drawn from a lognormal with this median and σ (chat-like answers).
    LogNormal { median: f64, sigma: f64 },
    /// The stop token never comes: every request runs to `max_tokens` (a broken chat template).
    Never,
}

impl StopModel {
    /// Where one request's stop token falls; `None` when it never comes.
    pub fn sample(&self, rng: &mut impl Rng) -> Option<u32> {
        match *self {
            StopModel::Never => None,
            StopModel::LogNormal { median, sigma } => {
                let normal: f64 = rng.sample(rand_distr::StandardNormal);
                Some((median * (sigma * normal).exp()).round().max(1.0) as u32)
            }
        }
    }
}

/// Things that go wrong in front of or inside the engine.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Faults {
    /// Share of completion requests answered with `error_status` instead of being served.
    pub error_rate: f64,
    pub error_status: u16,
    /// Share of streams cut (connection reset) after `cut_after` tokens.
    pub disconnect_rate: f64,
    /// Share of streams that stop sending after `cut_after` tokens but keep the connection open.
    pub stall_rate: f64,
    pub cut_after: u32,
    /// A gateway in front of the engine that lets only this many requests through at once.
    pub gateway_limit: Option<usize>,
    /// Seconds during which `/health` answers 503, as while vLLM loads weights.
    pub loading_seconds: f64,
    /// Batch-variant kernels: outputs depend on how many requests share the forward pass.
    pub batch_variant: Option<BatchVariant>,
    /// The server's chat template, unlike the model's, never opens the assistant's turn.
    pub chat_template_without_generation_prompt: bool,
}

/// The model has a near tie at generated token `at` (1-based) of every prompt, and a forward pass of more than
/// `above` requests rounds it the other way, as batch-variant matmul and attention kernels do.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BatchVariant {
    pub above: u32,
    pub at: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerConfig {
    pub model: String,
    pub max_model_len: u32,
    pub block_size: u32,
    pub vllm_version: String,
    pub stop: StopModel,
    pub faults: Faults,
    pub seed: u64,
    /// How often the engine writes its "Engine 000: Avg prompt throughput ..." line.
    pub log_interval: Duration,
    /// Ground truth for tests: one JSON line per request with its arrival, scheduling, every token's emit
    /// time (server seconds since start) and finish reason.
    pub trace: Option<std::path::PathBuf>,
}

/// Receives the server's log records (the binary prints them; tests may keep them).
pub type LogSink = Arc<dyn Fn(LogRecord) + Send + Sync>;

enum Command {
    Add {
        request: NewRequest,
        /// Seconds since the server started, stamped by the HTTP front: TTFT and E2E start here.
        arrived: f64,
        tokens: amsc::UnboundedSender<TokenOut>,
    },
    Abort(u64),
    RenderMetrics(oneshot::Sender<String>),
    /// The replica's process died: a fresh engine (empty cache, counters from zero) takes its place, and the
    /// requests it held end with it.
    Restart(Box<SimCore>),
}

/// One engine as the HTTP side sees it: where to send commands, how loaded it is, when it is down.
#[derive(Clone)]
struct EngineRef {
    tx: mpsc::Sender<Command>,
    /// The `pod` label on its metrics, in a fleet.
    pod: Option<String>,
    /// Requests running and waiting, as the engine thread last published them (for least-request routing).
    load: Arc<AtomicU32>,
    outage: Option<Outage>,
}

impl EngineRef {
    fn down(&self, started: Instant) -> bool {
        let t = started.elapsed().as_secs_f64();
        self.outage.is_some_and(|o| t >= o.from && t < o.to)
    }
}

/// How a fleet's router behaves as llm-d's endpoint picker.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickerSetup {
    /// Time each scheduling decision takes on top of the pick itself, as a slow scorer plugin would.
    pub scheduling_delay: Duration,
    /// Requests let through to the replicas at once; the rest wait in the router, as in the picker's flow-control
    /// queue.
    pub flow_control_limit: Option<usize>,
}

/// A fleet's front: the router's policy and state, and its own account of its decisions as llm-d's endpoint
/// picker keeps it.
struct Front {
    router: std::sync::Mutex<Router>,
    picker: std::sync::Mutex<PickerMetrics>,
    /// [`PickerSetup::scheduling_delay`].
    scheduling_delay: Duration,
}

struct Shared {
    config: ServerConfig,
    tokenizer: Arc<dyn Tokenize>,
    /// One engine, or a fleet's behind `front`.
    engines: Vec<EngineRef>,
    front: Option<Front>,
    started: Instant,
    /// Shared by the router and the replicas' own fronts, so request ids never collide in an engine.
    next_id: Arc<AtomicU64>,
    gateway: Option<Arc<Semaphore>>,
    fault_rng: std::sync::Mutex<StdRng>,
}

impl Shared {
    fn new(
        config: ServerConfig,
        tokenizer: Arc<dyn Tokenize>,
        engines: Vec<EngineRef>,
        front: Option<Front>,
        started: Instant,
        next_id: Arc<AtomicU64>,
    ) -> Shared {
        Shared {
            gateway: config
                .faults
                .gateway_limit
                .map(|n| Arc::new(Semaphore::new(n))),
            fault_rng: std::sync::Mutex::new(StdRng::seed_from_u64(config.seed ^ 0x5eed)),
            config,
            tokenizer,
            engines,
            front,
            started,
            next_id,
        }
    }

    /// The engine for a request with these prompt blocks: the only one, or the router's pick among those up,
    /// each decision timed and counted as the picker does.
    async fn engine_for(&self, block_hashes: &[u64]) -> Option<&EngineRef> {
        let Some(front) = &self.front else {
            return self.engines.first().filter(|e| !e.down(self.started));
        };
        let deciding = Instant::now();
        if !front.scheduling_delay.is_zero() {
            tokio::time::sleep(front.scheduling_delay).await;
        }
        let picked = self.pick(front, block_hashes);
        front.picker.lock().expect("picker lock").observe_decision(
            deciding.elapsed().as_secs_f64(),
            picked.and_then(|e| e.pod.as_deref()),
        );
        picked
    }

    fn pick(&self, front: &Front, block_hashes: &[u64]) -> Option<&EngineRef> {
        let loads: Vec<Option<u32>> = self
            .engines
            .iter()
            .map(|e| (!e.down(self.started)).then(|| e.load.load(Ordering::Relaxed)))
            .collect();
        let i = front
            .router
            .lock()
            .expect("router lock")
            .pick(block_hashes, &loads)?;
        let engine = self.engines.get(i)?;
        // Counted now: the engine publishes its own count only when it next takes its commands.
        engine.load.fetch_add(1, Ordering::Relaxed);
        Some(engine)
    }

    /// A replica's own front while its outage lasts: nothing answers.
    fn down(&self) -> bool {
        self.front.is_none() && self.engines.iter().all(|e| e.down(self.started))
    }
}

/// One member of a simulated fleet served over HTTP: its engine, its setup's HTTP configuration, its pod name,
/// and for an outage the fresh engine it comes back with.
pub struct FleetMember {
    pub pod: String,
    pub core: SimCore,
    pub config: ServerConfig,
    pub outage: Option<(Outage, SimCore)>,
}

/// The InferencePool the simulated picker serves, as its ready-endpoints gauge names it.
const PICKER_POOL: &str = "sim-pool";

/// Connections the kernel holds for the accept loop. Tokio's `bind` asks for 128, and a thousand clients
/// connecting at once then lose SYNs and wait a second or more for retries, which shows up as TTFT. Linux caps
/// it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running simulated server; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    shutdown: Arc<Notify>,
}

impl SimServer {
    /// Binds `addr` (port 0 for any) and starts serving on the current Tokio runtime, with the engine on a
    /// thread of its own.
    pub async fn start(
        core: SimCore,
        config: ServerConfig,
        tokenizer: Arc<dyn Tokenize>,
        addr: SocketAddr,
        log: LogSink,
    ) -> std::io::Result<SimServer> {
        let started = Instant::now();
        let engine = spawn_engine(core, &config, None, None, started, log)?;
        let shared = Shared::new(
            config,
            tokenizer,
            vec![engine],
            None,
            started,
            Arc::new(AtomicU64::new(0)),
        );
        SimServer::serve(shared, addr)
    }

    /// A fleet: the router on `addr` and each replica on a free port of its own (same host), in `members`'
    /// order. The router's `/metrics` holds every replica's, each sample labelled with its pod; each replica's
    /// own `/metrics` holds its own, labelled too, and answers 503 (as everything it serves) while it is down.
    /// The router's `/picker/metrics` holds its own series as llm-d's endpoint picker names them (a picker
    /// serves them on a port apart from the engines', so a Prometheus scrapes them as a target of their own).
    pub async fn start_fleet(
        members: Vec<FleetMember>,
        router: RouterKind,
        picker: PickerSetup,
        tokenizer: Arc<dyn Tokenize>,
        addr: SocketAddr,
        log: LogSink,
    ) -> std::io::Result<(SimServer, Vec<SimServer>)> {
        let started = Instant::now();
        let next_id = Arc::new(AtomicU64::new(0));
        let front_config = members
            .first()
            .map(|m| m.config.clone())
            .ok_or_else(|| std::io::Error::other("a fleet needs at least one replica"))?;
        let mut engines = Vec::new();
        let mut replicas = Vec::new();
        for member in members {
            let (outage, comeback) = member
                .outage
                .map_or((None, None), |(o, c)| (Some(o), Some(c)));
            let engine = spawn_engine(
                member.core,
                &member.config,
                Some(member.pod.clone()),
                outage.zip(comeback),
                started,
                log.clone(),
            )?;
            let own = Shared::new(
                member.config,
                tokenizer.clone(),
                vec![engine.clone()],
                None,
                started,
                next_id.clone(),
            );
            replicas.push(SimServer::serve(own, SocketAddr::new(addr.ip(), 0))?);
            engines.push(engine);
        }
        let seed = front_config.seed;
        let front = Shared::new(
            // The router passes requests on; faults are the replicas' own. Its one limit is flow control's.
            ServerConfig {
                faults: Faults {
                    gateway_limit: picker.flow_control_limit,
                    ..Faults::default()
                },
                trace: None,
                ..front_config
            },
            tokenizer,
            engines,
            Some(Front {
                router: std::sync::Mutex::new(Router::new(router, seed)),
                picker: std::sync::Mutex::new(PickerMetrics::default()),
                scheduling_delay: picker.scheduling_delay,
            }),
            started,
            next_id,
        );
        Ok((SimServer::serve(front, addr)?, replicas))
    }

    fn serve(shared: Shared, addr: SocketAddr) -> std::io::Result<SimServer> {
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let shutdown = Arc::new(Notify::new());
        tokio::spawn(accept_loop(listener, Arc::new(shared), shutdown.clone()));
        Ok(SimServer { addr, shutdown })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.notify_waiters();
    }
}

/// Starts an engine thread (and, for an outage, the clock that restarts it when the outage begins).
fn spawn_engine(
    core: SimCore,
    config: &ServerConfig,
    pod: Option<String>,
    outage: Option<(Outage, SimCore)>,
    started: Instant,
    log: LogSink,
) -> std::io::Result<EngineRef> {
    let (tx, rx) = mpsc::channel();
    let interval = config.log_interval;
    let trace = match &config.trace {
        Some(path) => Some(Trace::create(path)?),
        None => None,
    };
    let load = Arc::new(AtomicU32::new(0));
    let published = load.clone();
    std::thread::Builder::new()
        .name("sim-engine".into())
        .spawn(move || engine_loop(core, rx, started, interval, log, trace, published))?;
    let window = outage.as_ref().map(|(o, _)| *o);
    if let Some((o, fresh)) = outage {
        let restart = tx.clone();
        std::thread::Builder::new()
            .name("sim-outage".into())
            .spawn(move || {
                let wait = (o.from - started.elapsed().as_secs_f64()).max(0.0);
                std::thread::sleep(Duration::from_secs_f64(wait));
                let _ = restart.send(Command::Restart(Box::new(fresh)));
            })?;
    }
    Ok(EngineRef {
        tx,
        pod,
        load,
        outage: window,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: Arc<Notify>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = shutdown.notified() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The engine on the real clock: schedule, sleep for the step's cost, hand out the tokens, repeat.
fn engine_loop(
    mut core: SimCore,
    commands: mpsc::Receiver<Command>,
    started: Instant,
    log_interval: Duration,
    log: LogSink,
    mut trace: Option<Trace>,
    load: Arc<AtomicU32>,
) {
    let now = || started.elapsed().as_secs_f64();
    let mut sinks: HashMap<u64, amsc::UnboundedSender<TokenOut>> = HashMap::new();
    let mut next_log = log_interval.as_secs_f64();
    let apply = |core: &mut SimCore,
                 sinks: &mut HashMap<u64, amsc::UnboundedSender<TokenOut>>,
                 trace: &mut Option<Trace>,
                 command: Command| match command {
        Command::Add {
            request,
            arrived,
            tokens,
        } => {
            sinks.insert(request.id, tokens);
            core.add(request, arrived);
        }
        Command::Abort(id) => {
            sinks.remove(&id);
            if let (Some(done), Some(trace)) = (core.abort(id, now()), trace.as_mut()) {
                trace.finish(&done);
            }
        }
        Command::RenderMetrics(reply) => {
            let _ = reply.send(core.metrics.render());
        }
        Command::Restart(fresh) => {
            *core = *fresh;
            // Dropping the senders ends every stream the dead process held.
            sinks.clear();
        }
    };
    let publish = |core: &SimCore| {
        load.store(
            core.engine.running() + core.engine.waiting(),
            Ordering::Relaxed,
        );
    };
    loop {
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut core, &mut sinks, &mut trace, command),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        publish(&core);
        let t = now();
        if t >= next_log {
            if let Some(line) = core.stats_line(t) {
                log(line);
            }
            next_log += log_interval.as_secs_f64();
        }
        let Some((step, seconds)) = core.begin_step(t) else {
            let wait = Duration::from_secs_f64((next_log - t).max(0.001));
            match commands.recv_timeout(wait) {
                Ok(command) => apply(&mut core, &mut sinks, &mut trace, command),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            continue;
        };
        let end = t + seconds;
        // The forward pass "runs" while arrivals, aborts and scrapes are still served, as vLLM's API server
        // serves them beside its engine.
        loop {
            let left = end - now();
            if left <= 0.0 {
                break;
            }
            match commands.recv_timeout(Duration::from_secs_f64(left)) {
                Ok(command) => apply(&mut core, &mut sinks, &mut trace, command),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        for token in core.end_step(&step, end) {
            let id = token.id;
            if let Some(trace) = trace.as_mut() {
                trace.token(&token);
            }
            let last = token.finished.is_some();
            let delivered = sinks.get(&id).is_some_and(|s| s.send(token).is_ok());
            if last || !delivered {
                sinks.remove(&id);
            }
            if !delivered
                && !last
                && let (Some(done), Some(trace)) = (core.abort(id, end), trace.as_mut())
            {
                trace.finish(&done);
            }
        }
    }
}

/// The `--trace` file: token times gathered per request, one line written when the request leaves.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    tokens: HashMap<u64, Vec<f64>>,
}

impl Trace {
    fn create(path: &std::path::Path) -> std::io::Result<Trace> {
        let file = std::fs::File::create(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("--trace {}: {e}", path.display()))
        })?;
        Ok(Trace {
            out: std::io::BufWriter::new(file),
            tokens: HashMap::new(),
        })
    }

    fn token(&mut self, token: &TokenOut) {
        self.tokens.entry(token.id).or_default().push(token.at);
        if let Some(done) = &token.finished {
            self.finish(done);
        }
    }

    /// Written and flushed per request, so a killed server loses nothing already finished.
    fn finish(&mut self, done: &crate::engine::Finished) {
        use std::io::Write;
        let tokens = self.tokens.remove(&done.id).unwrap_or_default();
        let mut line = serde_json::to_value(done).unwrap_or_default();
        line["token_times"] = json!(tokens);
        let _ = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
    }
}

type Reply = Response<BoxBody<Bytes, std::io::Error>>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts are valid")
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    full(status, "application/json", value.to_string())
}

/// vLLM's error body.
fn error_reply(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}}),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Reply, std::io::Error> {
    let path = req.uri().path().to_string();
    let cfg = &shared.config;
    let loading = shared.started.elapsed().as_secs_f64() < cfg.faults.loading_seconds;
    if shared.down() {
        // A replica in its outage: what a scraper or client meets is the error, not the server.
        return Ok(error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "replica down (simulated outage)",
        ));
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => Ok(if loading {
            full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "")
        } else {
            full(StatusCode::OK, "text/plain", "")
        }),
        (&Method::GET, "/version") => Ok(json_reply(
            StatusCode::OK,
            &json!({"version": cfg.vllm_version}),
        )),
        (&Method::GET, "/v1/models") => Ok(json_reply(
            StatusCode::OK,
            &json!({"object": "list", "data": [{
                "id": cfg.model, "object": "model", "created": unix_now(), "owned_by": "vllm",
                "root": cfg.model, "parent": null, "max_model_len": cfg.max_model_len,
                "permission": []}]}),
        )),
        (&Method::GET, "/metrics") => {
            let mut text = String::new();
            for engine in shared.engines.iter().filter(|e| !e.down(shared.started)) {
                let (tx, rx) = oneshot::channel();
                let _ = engine.tx.send(Command::RenderMetrics(tx));
                let own = rx.await.unwrap_or_default();
                match &engine.pod {
                    Some(pod) => text += &with_label(&own, "pod", pod),
                    None => text += &own,
                }
            }
            Ok(full(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ))
        }
        (&Method::GET, "/picker/metrics") => Ok(picker_metrics(&shared)),
        (&Method::POST, "/tokenize") => {
            let body = read_json(req).await?;
            let Ok(body) = body else {
                return Ok(body.unwrap_err());
            };
            let tokens = prompt_tokens(&shared, &body);
            Ok(json_reply(
                StatusCode::OK,
                &json!({"count": tokens.len(), "max_model_len": cfg.max_model_len, "tokens": tokens}),
            ))
        }
        (&Method::POST, "/v1/completions") => complete(req, shared, false).await,
        (&Method::POST, "/v1/chat/completions") => complete(req, shared, true).await,
        _ => Ok(error_reply(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            &format!("no route for {} {path}", req.method()),
        )),
    }
}

/// A fleet router's own series as llm-d's endpoint picker exposes them; a lone server has no picker.
fn picker_metrics(shared: &Shared) -> Reply {
    let Some(front) = &shared.front else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            "no endpoint picker: this is one server, not a fleet's router",
        );
    };
    let ready = shared
        .engines
        .iter()
        .filter(|e| !e.down(shared.started))
        .count();
    let text =
        front
            .picker
            .lock()
            .expect("picker lock")
            .render(PICKER_POOL, &shared.config.model, ready);
    full(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}

async fn read_json(req: Request<Incoming>) -> Result<Result<Value, Reply>, std::io::Error> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(serde_json::from_slice::<Value>(&bytes).map_err(|e| {
        error_reply(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            &format!("request body is not valid JSON: {e}"),
        )
    }))
}

/// The prompt's tokens; chat messages go through a ChatML-like template, as the served model's would.
fn prompt_tokens(shared: &Shared, body: &Value) -> Vec<u32> {
    let text = match body.get("messages").and_then(Value::as_array) {
        Some(messages) => {
            let mut text = String::new();
            for m in messages {
                let role = m["role"].as_str().unwrap_or("user");
                let content = match &m["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                text.push_str(&format!("<|im_start|> {role} {content} <|im_end|> "));
            }
            if !shared.config.faults.chat_template_without_generation_prompt {
                text.push_str("<|im_start|> assistant");
            }
            text
        }
        None => match &body["prompt"] {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
    };
    shared.tokenizer.encode(&text)
}

/// What one completion request asked for, checked.
struct Ask {
    chat: bool,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
    prompt: Vec<u32>,
    max_tokens: u32,
    min_tokens: u32,
    ignore_eos: bool,
    /// Candidates per position asked for by a completions request (`logprobs: N`), answered when not streamed.
    logprobs: Option<u32>,
}

fn parse_ask(shared: &Shared, body: &Value, chat: bool) -> Result<Ask, Box<Reply>> {
    let cfg = &shared.config;
    if let Some(model) = body["model"].as_str()
        && model != cfg.model
    {
        return Err(Box::new(error_reply(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            &format!("The model `{model}` does not exist."),
        )));
    }
    let prompt = prompt_tokens(shared, body);
    if prompt.is_empty() {
        return Err(Box::new(error_reply(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            "the prompt is empty",
        )));
    }
    let bad = |message: String| {
        Box::new(error_reply(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            &message,
        ))
    };
    let prompt_len = prompt.len() as u64;
    let room = u64::from(cfg.max_model_len).saturating_sub(prompt_len);
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    if max_tokens == Some(0) {
        return Err(bad("max_tokens must be at least 1, got 0.".into()));
    }
    if room == 0 || max_tokens.is_some_and(|m| m > room) {
        let asked = max_tokens.unwrap_or(0);
        return Err(bad(format!(
            "This model's maximum context length is {} tokens. However, you requested {} tokens ({prompt_len} in \
             the messages, {asked} in the completion). Please reduce the length of the messages or completion.",
            cfg.max_model_len,
            prompt_len.saturating_add(asked),
        )));
    }
    // Both fit in u32 now: bounded by max_model_len.
    let max_tokens = max_tokens.unwrap_or(room) as u32;
    let min_tokens = body["min_tokens"].as_u64().unwrap_or(0);
    if min_tokens > u64::from(max_tokens) {
        return Err(bad(format!(
            "min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
        )));
    }
    let options = &body["stream_options"];
    Ok(Ask {
        chat,
        stream: body["stream"].as_bool().unwrap_or(false),
        include_usage: options["include_usage"].as_bool().unwrap_or(false),
        continuous_usage: options["continuous_usage_stats"].as_bool().unwrap_or(false),
        max_tokens,
        min_tokens: min_tokens as u32,
        ignore_eos: body["ignore_eos"].as_bool().unwrap_or(false),
        logprobs: (!chat)
            .then(|| body["logprobs"].as_u64())
            .flatten()
            .map(|n| n.min(20) as u32),
        prompt,
    })
}

/// The injected failure, worded as vLLM words that status.
fn injected_error(config: &ServerConfig, prompt_tokens: usize) -> Reply {
    let status = StatusCode::from_u16(config.faults.error_status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, message) = match status.as_u16() {
        400 => (
            "BadRequestError",
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens \
                 ({prompt_tokens} in the messages, {} in the completion). Please reduce the length of the \
                 messages or completion.",
                config.max_model_len,
                config.max_model_len as usize + 1,
                (config.max_model_len as usize + 1).saturating_sub(prompt_tokens)
            ),
        ),
        429 => ("RateLimitError", "Too many requests (injected)".to_string()),
        503 => (
            "ServiceUnavailableError",
            "The server is overloaded (injected)".to_string(),
        ),
        _ => ("InternalServerError", "injected failure".to_string()),
    };
    error_reply(status, kind, &message)
}

/// A fault drawn for one request.
#[derive(Clone, Copy, PartialEq)]
enum Drawn {
    None,
    Error,
    Disconnect,
    Stall,
}

fn draw(shared: &Shared) -> (Drawn, Option<u32>) {
    let f = &shared.config.faults;
    let mut rng = shared.fault_rng.lock().expect("fault rng lock");
    let fault = if rng.random_bool(f.error_rate.clamp(0.0, 1.0)) {
        Drawn::Error
    } else if rng.random_bool(f.disconnect_rate.clamp(0.0, 1.0)) {
        Drawn::Disconnect
    } else if rng.random_bool(f.stall_rate.clamp(0.0, 1.0)) {
        Drawn::Stall
    } else {
        Drawn::None
    };
    let stop = shared.config.stop.sample(&mut *rng);
    (fault, stop)
}

async fn complete(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    chat: bool,
) -> Result<Reply, std::io::Error> {
    let body = match read_json(req).await? {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let ask = match parse_ask(&shared, &body, chat) {
        Ok(ask) => ask,
        Err(reply) => return Ok(*reply),
    };
    let (fault, stop) = draw(&shared);
    if fault == Drawn::Error {
        return Ok(injected_error(&shared.config, ask.prompt.len()));
    }
    // The gateway holds the request before the engine ever sees it, as a saturated proxy would; a fleet's
    // router holds it as the picker's flow control does, and counts the wait.
    let queued = Instant::now();
    let permit = match &shared.gateway {
        Some(gate) => gate.clone().acquire_owned().await.ok(),
        None => None,
    };
    if let (Some(front), Some(_)) = (&shared.front, &permit) {
        front
            .picker
            .lock()
            .expect("picker lock")
            .observe_queue(queued.elapsed().as_secs_f64());
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let variant = shared.config.faults.batch_variant;
    let mut generation = Generation::new(&ask.prompt, variant.map(|v| v.at));
    let flips = move |batch: u32| variant.is_some_and(|v| batch > v.above);
    let request = NewRequest {
        id,
        prompt_tokens: ask.prompt.len() as u32,
        block_hashes: block_hashes(&ask.prompt, shared.config.block_size),
        max_tokens: ask.max_tokens,
        stop_after: if ask.ignore_eos { None } else { stop },
        min_tokens: ask.min_tokens,
    };
    let Some(engine) = shared.engine_for(&request.block_hashes).await else {
        return Ok(error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "no replica is up",
        ));
    };
    let (tx, mut rx) = amsc::unbounded_channel();
    if engine
        .tx
        .send(Command::Add {
            request,
            arrived: shared.started.elapsed().as_secs_f64(),
            tokens: tx,
        })
        .is_err()
    {
        return Ok(error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "engine stopped",
        ));
    }
    let writer = ChunkWriter::new(&shared.config.model, id, &ask);
    // Until the last token is out, a client that goes away takes its request out of the engine with it.
    let mut in_engine = AbortOnDrop {
        engine: engine.tx.clone(),
        id,
        armed: true,
    };
    if !ask.stream {
        let mut generated = 0;
        let mut tokens = Vec::new();
        let mut reason = FinishReason::Length;
        while let Some(token) = rx.recv().await {
            generated = token.index;
            tokens.push(generation.next(token.index, flips(token.batch)));
            if let Some(done) = token.finished {
                reason = done.reason;
                break;
            }
        }
        in_engine.armed = false;
        drop(permit);
        return Ok(json_reply(
            StatusCode::OK,
            &writer.whole(&tokens, ask.logprobs, reason, generated),
        ));
    }
    let (frames, body_rx) = amsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let cut_after = shared.config.faults.cut_after;
    tokio::spawn(async move {
        let _permit = permit;
        let send = |bytes: Bytes| frames.send(Ok(Frame::data(bytes)));
        if ask.chat && send(writer.role_prelude()).await.is_err() {
            return;
        }
        loop {
            let token = tokio::select! {
                token = rx.recv() => token,
                // The client hung up while the request waited or between tokens.
                () = frames.closed() => return,
            };
            let Some(token) = token else { return };
            if token.index > cut_after && fault != Drawn::None {
                in_engine.abort_now();
                if fault == Drawn::Disconnect {
                    let _ = frames
                        .send(Err(std::io::Error::other("injected disconnect")))
                        .await;
                } else {
                    frames.closed().await;
                }
                return;
            }
            let reason = token.finished.as_ref().map(|f| f.reason);
            if reason.is_some() {
                in_engine.armed = false;
            }
            let chunk = writer.token_chunk(
                generation.next(token.index, flips(token.batch)).word,
                token.index,
                reason,
                ask.continuous_usage,
            );
            if send(chunk).await.is_err() {
                return;
            }
            if reason.is_some() {
                if ask.include_usage {
                    let _ = send(writer.usage_chunk(token.index)).await;
                }
                let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
                return;
            }
        }
    });
    Ok(Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(ChannelBody { rx: body_rx }.boxed())
        .expect("static response parts are valid"))
}

/// Tells the engine to drop a request when its HTTP side ends early (disconnect, cut, dropped handler).
struct AbortOnDrop {
    engine: mpsc::Sender<Command>,
    id: u64,
    armed: bool,
}

impl AbortOnDrop {
    fn abort_now(&mut self) {
        if std::mem::take(&mut self.armed) {
            let _ = self.engine.send(Command::Abort(self.id));
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.abort_now();
    }
}

struct ChannelBody {
    rx: amsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx)
    }
}

/// Writes the response in vLLM's exact chunk shapes (see fixtures/sse/vllm_cpu_*).
struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    chat: bool,
    prompt_tokens: u32,
}

impl ChunkWriter {
    fn new(model: &str, id: u64, ask: &Ask) -> ChunkWriter {
        let prefix = if ask.chat { "chatcmpl" } else { "cmpl" };
        ChunkWriter {
            id: format!("{prefix}-sim{id:012x}"),
            model: model.to_string(),
            created: unix_now(),
            chat: ask.chat,
            prompt_tokens: ask.prompt.len() as u32,
        }
    }

    fn usage(&self, generated: u32) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens + generated,
               "completion_tokens": generated})
    }

    fn event(value: &Value) -> Bytes {
        Bytes::from(format!("data: {value}\n\n"))
    }

    fn role_prelude(&self) -> Bytes {
        Self::event(
            &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
            "logprobs": null, "finish_reason": null}]}),
        )
    }

    fn token_chunk(
        &self,
        text: &str,
        generated: u32,
        reason: Option<FinishReason>,
        continuous_usage: bool,
    ) -> Bytes {
        let finish = reason.map(FinishReason::label);
        let mut v = if self.chat {
            json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": {"content": text},
                "logprobs": null, "finish_reason": finish, "stop_reason": null}]})
        } else {
            json!({"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "text": text, "logprobs": null,
                "finish_reason": finish, "stop_reason": null}]})
        };
        if continuous_usage {
            v["usage"] = self.usage(generated);
        }
        Self::event(&v)
    }

    fn usage_chunk(&self, generated: u32) -> Bytes {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        Self::event(
            &json!({"id": self.id, "object": object, "created": self.created,
            "model": self.model, "choices": [], "usage": self.usage(generated)}),
        )
    }

    /// The whole answer; with `logprobs`, vLLM's completions shape for them (tokens, their logprobs, the top
    /// candidates per position, text offsets).
    fn whole(
        &self,
        tokens: &[Generated],
        logprobs: Option<u32>,
        reason: FinishReason,
        generated: u32,
    ) -> Value {
        let text: String = tokens.iter().map(|t| t.word).collect();
        let logprobs = logprobs.map_or(Value::Null, |n| {
            let mut offset = 0;
            let offsets: Vec<usize> = tokens
                .iter()
                .map(|t| {
                    offset += t.word.len();
                    offset - t.word.len()
                })
                .collect();
            json!({
                "tokens": tokens.iter().map(|t| t.word).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens.iter().map(|t| t.top.iter().take(n as usize)
                    .map(|(w, l)| (w.to_string(), json!(l))).collect::<serde_json::Map<_, _>>())
                    .collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        });
        let (object, choice) = if self.chat {
            (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                       "logprobs": null, "finish_reason": reason.label(), "stop_reason": null}),
            )
        } else {
            (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": logprobs,
                       "finish_reason": reason.label(), "stop_reason": null}),
            )
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": [choice], "usage": self.usage(generated)})
    }
}
