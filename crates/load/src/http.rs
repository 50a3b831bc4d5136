//! HTTP/1.1 keep-alive pool and HTTP/2 connection on hyper's connection-level API, so connects are counted and a
//! request that never reached the server on a stale pooled connection is re-sent once, and counted.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use infer_doctor_core::ErrorClass;
use tokio::net::TcpStream;

use crate::target::Target;

/// The byte stream under a connection: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// A failed send, classified.
#[derive(Debug)]
pub struct SendError {
    pub class: ErrorClass,
    pub message: String,
}

/// What one request sends; kept so a retry can rebuild it.
pub struct Outgoing {
    pub method: hyper::Method,
    pub path: String,
    pub body: Bytes,
    pub accept_stream: bool,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// A connection lent to one request until its body is read; `release` returns a healthy one to the pool.
pub struct Lease {
    sender: Option<http1::SendRequest<Full<Bytes>>>,
    pool: Arc<Pool>,
}

impl Lease {
    /// Returns the connection for reuse unless the server asked to close it or already did.
    pub fn release(mut self, keep_alive: bool) {
        if let Some(sender) = self.sender.take()
            && keep_alive
            && !sender.is_closed()
        {
            let mut idle = self.pool.idle.lock().expect("pool lock");
            if idle.len() < self.pool.max_idle {
                idle.push(sender);
            }
        }
    }
}

struct Pool {
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
    max_idle: usize,
}

/// The largest body `get` reads: far above any real `/metrics` or `/v1/models`, and a bound on one that never ends.
pub const MAX_GET_BODY: usize = 64 << 20;

#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    pub http2: bool,
    /// Idle connections kept: the run's in-flight limit.
    pub pool_size: usize,
    pub connect_timeout: Duration,
}

/// The client every request of a run goes through.
pub struct HttpClient {
    target: Arc<Target>,
    options: ClientOptions,
    pool: Arc<Pool>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
    connects: AtomicU64,
}

/// Whether the connection died under the request: hyper's own verdicts, or an I/O error anywhere in its source
/// chain (hyper reports a reset as a generic connection error whose source is the `io::Error`).
fn connection_lost(err: &hyper::Error) -> bool {
    use std::error::Error;
    use std::io::ErrorKind;
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn describe(err: &hyper::Error) -> String {
    use std::error::Error;
    match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

impl HttpClient {
    pub fn new(target: Arc<Target>, options: ClientOptions) -> HttpClient {
        HttpClient {
            target,
            options,
            pool: Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
                max_idle: options.pool_size.max(1),
            }),
            h2: tokio::sync::Mutex::new(None),
            connects: AtomicU64::new(0),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// TCP connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// A new connection to the target: TCP, then TLS for https.
    async fn connect(&self) -> Result<TokioIo<Box<dyn Io>>, SendError> {
        let stream = self.tcp().await?;
        self.secure(stream).await
    }

    async fn tcp(&self) -> Result<TcpStream, SendError> {
        let addr = (self.target.host.as_str(), self.target.port);
        let stream = match tokio::time::timeout(
            self.options.connect_timeout,
            TcpStream::connect(addr),
        )
        .await
        {
            Err(_) => {
                return Err(SendError {
                    class: ErrorClass::Timeout,
                    message: format!("connect to {} timed out", self.target.authority()),
                });
            }
            Ok(Err(e)) => {
                return Err(SendError {
                    class: ErrorClass::Connect,
                    message: format!("connect to {}: {e}", self.target.authority()),
                });
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// TLS over the stream for https; the stream as it is for http.
    async fn secure(&self, stream: TcpStream) -> Result<TokioIo<Box<dyn Io>>, SendError> {
        let io: Box<dyn Io> = match &self.target.tls {
            None => Box::new(stream),
            #[cfg(feature = "tls")]
            Some(config) => {
                let handshake =
                    crate::tls::connect(config, self.options.http2, &self.target.host, stream);
                match tokio::time::timeout(self.options.connect_timeout, handshake).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => {
                        return Err(SendError {
                            class: ErrorClass::Connect,
                            message: format!("TLS handshake with {}: {e}", self.target.authority()),
                        });
                    }
                    Err(_) => {
                        return Err(SendError {
                            class: ErrorClass::Timeout,
                            message: format!(
                                "TLS handshake with {} timed out",
                                self.target.authority()
                            ),
                        });
                    }
                }
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        };
        Ok(TokioIo::new(io))
    }

    /// One GET of `path` on a connection of its own, timed in the phases `curl -w` reports: TCP connect, TLS
    /// handshake (https only), and the first byte of the response after the request was sent. Any answer
    /// counts (a 404 from `/health` still measured the path); no answer within `timeout` is an error.
    pub async fn time_path(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<infer_doctor_core::PathTiming, String> {
        let timed = async {
            let started = std::time::Instant::now();
            let stream = self.tcp().await.map_err(|e| e.message)?;
            let connected = started.elapsed();
            let io = self.secure(stream).await.map_err(|e| e.message)?;
            let secured = started.elapsed();
            let (mut sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| self.handshake_error(e).message)?;
            tokio::spawn(conn);
            let request = self.build(&Outgoing {
                method: hyper::Method::GET,
                path: path.to_string(),
                body: Bytes::new(),
                accept_stream: false,
            });
            let sent = started.elapsed();
            sender
                .send_request(request)
                .await
                .map_err(|e| format!("GET {path}: {}", describe(&e)))?;
            let answered = started.elapsed();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            Ok(infer_doctor_core::PathTiming {
                connect_ms: ms(connected),
                tls_ms: self.target.tls.is_some().then(|| ms(secured - connected)),
                first_byte_ms: ms(answered - sent),
            })
        };
        tokio::time::timeout(timeout, timed)
            .await
            .unwrap_or_else(|_| Err(format!("no answer to GET {path} within {timeout:?}")))
    }

    fn handshake_error(&self, e: hyper::Error) -> SendError {
        SendError {
            class: ErrorClass::Connect,
            message: format!(
                "handshake with {}: {}",
                self.target.authority(),
                describe(&e)
            ),
        }
    }

    async fn fresh_h1(&self) -> Result<http1::SendRequest<Full<Bytes>>, SendError> {
        let io = self.connect().await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(crate::sse::MAX_EVENT_BYTES)
            .handshake(io)
            .await
            .map_err(|e| self.handshake_error(e))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn h2_sender(&self, fresh: bool) -> Result<http2::SendRequest<Full<Bytes>>, SendError> {
        let mut slot = self.h2.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !fresh && !s.is_closed()) {
            return Ok(sender.clone());
        }
        let io = self.connect().await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .max_concurrent_reset_streams(usize::MAX >> 1)
            .handshake(io)
            .await
            .map_err(|e| self.handshake_error(e))?;
        tokio::spawn(conn);
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// An idle pooled connection that still looks open, else a new one. The flag says whether it was reused.
    async fn h1_sender(&self) -> Result<(http1::SendRequest<Full<Bytes>>, bool), SendError> {
        loop {
            let candidate = self.pool.idle.lock().expect("pool lock").pop();
            let Some(mut sender) = candidate else { break };
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.fresh_h1().await?, false))
    }

    fn build(&self, out: &Outgoing) -> Request<Full<Bytes>> {
        let path = &out.path;
        let uri = if self.options.http2 {
            format!(
                "{}://{}{path}",
                self.target.scheme(),
                self.target.authority()
            )
        } else {
            path.clone()
        };
        let mut builder = Request::builder().method(out.method.clone()).uri(uri);
        if !self.options.http2 {
            builder = builder.header("host", self.target.authority());
        }
        if let Some(key) = &self.target.api_key {
            builder = builder.header("authorization", key.bearer());
        }
        if !out.body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        if out.accept_stream {
            builder = builder.header("accept", "text/event-stream");
        }
        builder
            .body(Full::new(out.body.clone()))
            .expect("request parts are valid")
    }

    /// GETs `path` and reads the whole body, up to [`MAX_GET_BODY`]; anything but a 2xx within `timeout` is an
    /// error saying what.
    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Bytes, String> {
        let out = Outgoing {
            method: hyper::Method::GET,
            path: path.to_string(),
            body: Bytes::new(),
            accept_stream: false,
        };
        match self.fetch(&out, timeout).await? {
            (status, body) if status.is_success() => Ok(body),
            (status, _) => Err(format!("HTTP {}", status.as_u16())),
        }
    }

    /// POSTs a JSON body to `path` and reads the whole answer; anything but a 2xx is an error carrying the
    /// status and the start of what the server said (its reason for a 400).
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let out = Outgoing {
            method: hyper::Method::POST,
            path: path.to_string(),
            body: Bytes::from(body),
            accept_stream: false,
        };
        match self.fetch(&out, timeout).await? {
            (status, body) if status.is_success() => Ok(body),
            (status, body) => {
                let said = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                Err(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    self.target.scrub(said.trim())
                ))
            }
        }
    }

    /// One request and its whole body, up to [`MAX_GET_BODY`], within `timeout`.
    async fn fetch(
        &self,
        out: &Outgoing,
        timeout: Duration,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let fetch = async {
            let (response, lease, _) = self.send(out).await.map_err(|e| e.message)?;
            let status = response.status();
            let mut body = response.into_body();
            let mut all = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                    if all.len() + data.len() > MAX_GET_BODY {
                        return Err(format!(
                            "the body exceeded the {} MiB cap",
                            MAX_GET_BODY >> 20
                        ));
                    }
                    all.extend_from_slice(&data);
                }
            }
            if let Some(lease) = lease {
                lease.release(true);
            }
            Ok((status, Bytes::from(all)))
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    /// Sends a request and returns the response head. A request that failed before any byte of a response
    /// arrived, on a connection that was reused or never took it, is re-sent once on a fresh connection.
    pub async fn send(
        &self,
        out: &Outgoing,
    ) -> Result<(Response<Incoming>, Option<Lease>, u32), SendError> {
        let mut retries = 0;
        loop {
            let (sender, reused) = if self.options.http2 {
                (Sender::H2(self.h2_sender(retries > 0).await?), retries == 0)
            } else if retries > 0 {
                (Sender::H1(self.fresh_h1().await?), false)
            } else {
                let (s, reused) = self.h1_sender().await?;
                (Sender::H1(s), reused)
            };
            let request = self.build(out);
            let result = match sender {
                Sender::H1(mut s) => match s.try_send_request(request).await {
                    Ok(resp) => Ok((
                        resp,
                        Some(Lease {
                            sender: Some(s),
                            pool: self.pool.clone(),
                        }),
                    )),
                    Err(mut e) => Err((e.take_message().is_some(), e.into_error())),
                },
                Sender::H2(mut s) => match s.try_send_request(request).await {
                    Ok(resp) => Ok((resp, None)),
                    Err(mut e) => Err((e.take_message().is_some(), e.into_error())),
                },
            };
            match result {
                Ok((resp, lease)) => return Ok((resp, lease, retries)),
                Err((unsent, err)) => {
                    let stale = unsent || (reused && connection_lost(&err));
                    if stale && retries == 0 {
                        retries = 1;
                        continue;
                    }
                    let class = if err.is_timeout() {
                        ErrorClass::Timeout
                    } else {
                        ErrorClass::StreamBroken
                    };
                    return Err(SendError {
                        class,
                        message: format!("connection lost before a response: {}", describe(&err)),
                    });
                }
            }
        }
    }
}
