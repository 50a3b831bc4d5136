//! An OpenAI-compatible server that runs inside a test: streams tokens on a timetable, injects every fault a real
//! server shows, and records when it emitted each token, so tests can check the client's clock against the truth.

mod body;
mod handler;
mod packages;
mod process;
pub mod prometheus;

pub use packages::ensure_debian_packages;
pub use process::{Running, command, start_sim, start_sim_fleet};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the server does to one request instead of answering it well.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this HTTP status and an OpenAI-style error body.
    Status(u16),
    /// Stop sending after this many tokens, keeping the connection open.
    StallAfter(u32),
    /// Reset the connection after this many tokens.
    DropAfter(u32),
    /// Send an event that is not JSON after this many tokens.
    MalformedAfter(u32),
    /// Send one token event whose line is this many bytes long, then continue normally.
    HugeLine(usize),
    /// End the stream after the tokens with neither a finish reason nor `[DONE]`.
    NoDone,
    /// Send an error object as an SSE event after this many tokens, then `[DONE]`.
    ErrorEvent(u32),
    /// Answer with this HTTP status and an error message quoting the request's `Authorization` header, as some
    /// gateways do.
    EchoAuthorization(u16),
}

/// Applies `fault` to the requests whose index `i` (0-based, in arrival order) satisfies `i % every == offset`.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub every: u64,
    pub offset: u64,
    pub fault: Fault,
}

#[derive(Clone, Debug)]
pub struct MockConfig {
    pub model: String,
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay between token chunks.
    pub itl: Duration,
    /// Tokens per SSE chunk (several, as with speculative decoding or a slow client).
    pub tokens_per_chunk: u32,
    /// Output length when the request gives no `max_tokens`.
    pub default_output_tokens: u32,
    /// Finish with `stop` after this many tokens even when `ignore_eos` is set (a server that ignores it).
    pub stop_after: Option<u32>,
    /// Close the TCP connection after every streamed response, as llama.cpp's server does.
    pub close_after_stream: bool,
    /// Answer `/props`, `/slots` and `/metrics` as llama.cpp's `llama-server` does, with this many slots of
    /// 1,024 tokens (`None`: those endpoints are 404, `/metrics` a plain counter).
    pub llamacpp_slots: Option<u32>,
    /// Serve metrics as `trtllm-serve` does: TensorRT-LLM's names at `/prometheus/metrics`, 404 at `/metrics`.
    pub trtllm: bool,
    /// Keep a record of every request and token time (off for speed benchmarks).
    pub record_truth: bool,
    /// Requests processed at once; the rest wait inside the server, as behind a full engine.
    pub capacity: Option<usize>,
    /// How long `/metrics` takes to answer (a slow or hung metrics endpoint).
    pub metrics_delay: Duration,
    pub faults: Vec<FaultRule>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            model: "mock-model".into(),
            ttft: Duration::from_millis(20),
            itl: Duration::from_millis(5),
            tokens_per_chunk: 1,
            default_output_tokens: 16,
            stop_after: None,
            close_after_stream: false,
            llamacpp_slots: None,
            trtllm: false,
            record_truth: true,
            capacity: None,
            metrics_delay: Duration::ZERO,
            faults: Vec::new(),
        }
    }
}

/// What the server did for one request: the ground truth the client's measurements are checked against.
#[derive(Clone, Debug)]
pub struct ServedRequest {
    pub index: u64,
    pub path: String,
    pub arrived: Instant,
    /// When hyper took each token chunk from the response body for writing.
    pub chunk_times: Vec<Instant>,
    pub body: serde_json::Value,
    pub authorization: Option<String>,
}

pub(crate) type TokenStamps = Arc<Mutex<Vec<Instant>>>;

pub(crate) struct Shared {
    pub config: MockConfig,
    pub next_index: AtomicU64,
    /// Each request with its token stamps, which keep arriving until the body is fully written.
    pub truth: Mutex<Vec<(ServedRequest, TokenStamps)>>,
    pub connections: AtomicU64,
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Completion requests being answered now.
    pub in_flight: AtomicU64,
}

impl Shared {
    pub fn fault_for(&self, index: u64) -> Option<Fault> {
        self.config
            .faults
            .iter()
            .find(|r| index % r.every == r.offset)
            .map(|r| r.fault.clone())
    }
}

/// A running mock server; stops when dropped.
pub struct MockServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Arc<Notify>,
}

impl MockServer {
    /// Starts on an ephemeral loopback port on the current Tokio runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockServer> {
        MockServer::listen(config, None).await
    }

    /// Starts an https server presenting the PEM certificate chain and key given.
    #[cfg(feature = "tls")]
    pub async fn start_tls(
        config: MockConfig,
        cert_pem: &std::path::Path,
        key_pem: &std::path::Path,
    ) -> std::io::Result<MockServer> {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::crypto::ring;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert_pem)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::from_pem_file(key_pem).map_err(std::io::Error::other)?;
        let mut tls = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(std::io::Error::other)?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        MockServer::listen(config, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn listen(config: MockConfig, tls: Option<Acceptor>) -> std::io::Result<MockServer> {
        // As the simulator does (`sim::server::LISTEN_BACKLOG`): tokio's `bind` asks for a backlog of 128, and the
        // self-test's thousand streams connecting at once would then lose SYNs and wait a second for retries.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
        let listener = socket.listen(4096)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            next_index: AtomicU64::new(0),
            truth: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            slots: config
                .capacity
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        });
        let shutdown = Arc::new(Notify::new());
        tokio::spawn(accept_loop(listener, tls, shared.clone(), shutdown.clone()));
        Ok(MockServer {
            addr,
            shared,
            shutdown,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request served so far, in arrival order.
    pub fn truth(&self) -> Vec<ServedRequest> {
        let mut all: Vec<ServedRequest> = self
            .shared
            .truth
            .lock()
            .expect("truth lock")
            .iter()
            .map(|(served, stamps)| ServedRequest {
                chunk_times: stamps.lock().expect("stamp lock").clone(),
                ..served.clone()
            })
            .collect();
        all.sort_by_key(|r| r.index);
        all
    }

    /// Completion requests received.
    pub fn requests(&self) -> u64 {
        self.shared.next_index.load(Ordering::Relaxed)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown.notify_waiters();
    }
}

#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
/// Without the `tls` feature no server is started with TLS.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum Acceptor {}

/// The byte stream under a connection: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Acceptor>,
    shared: Arc<Shared>,
    shutdown: Arc<Notify>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = shutdown.notified() => return,
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream: Box<dyn Io> = match tls {
                None => Box::new(stream),
                #[cfg(feature = "tls")]
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => Box::new(tls),
                    Err(_) => return,
                },
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            };
            // Signalled by a streamed response's last frame when the server must hang up after it.
            let hang_up = Arc::new(Notify::new());
            let service = {
                let hang_up = hang_up.clone();
                service_fn(move |req| handler::handle(req, shared.clone(), hang_up.clone()))
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = hang_up.notified() => {
                    // Finish writing the response, then close; its head is already out, so the client gets no
                    // `Connection: close` warning, exactly like llama.cpp's server.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
