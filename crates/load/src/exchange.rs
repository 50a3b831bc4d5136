//! One request, start to finish: send, stamp every streamed event on arrival, classify whatever goes wrong, and
//! return the `RequestRecord`. Nothing here blocks on anything but the network.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use infer_doctor_core::{ErrorClass, Phase, RequestError, RequestRecord, TokenCounter};

use crate::cancel::Cancel;
use crate::http::{HttpClient, Outgoing};
use crate::openai::{ResponseState, StreamFault};
use crate::sse::SseParser;

/// Limits on one request.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No byte for this long fails the request (a stall), however long it has been running.
    pub idle: Duration,
    /// Optional limit on the whole request.
    pub total: Option<Duration>,
}

/// What the caller knows about a request before it is sent.
pub struct Planned {
    pub id: u64,
    pub phase: Phase,
    pub scheduled: Instant,
    pub body: Bytes,
    pub max_tokens: u32,
    pub input_tokens: Option<u32>,
}

pub struct Exchange<'a> {
    pub client: &'a HttpClient,
    pub path: &'a str,
    pub stream: bool,
    pub timeouts: Timeouts,
    pub run_start: Instant,
    pub counter: Option<Arc<dyn TokenCounter>>,
}

/// Bytes of an error body kept for the message.
const ERROR_BODY_LIMIT: usize = 2048;

impl Exchange<'_> {
    fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run_start).as_micros() as u64
    }

    pub async fn execute(&self, planned: Planned, cancel: &Cancel) -> RequestRecord {
        let sent = Instant::now();
        let mut rec = RequestRecord {
            id: planned.id,
            phase: Some(planned.phase),
            scheduled_us: self.us(planned.scheduled),
            sent_us: self.us(sent),
            streamed: self.stream,
            max_tokens: planned.max_tokens,
            input_tokens_built: planned.input_tokens,
            ..Default::default()
        };
        let mut state = ResponseState::keeping_text(self.counter.is_some());
        let deadline = self.timeouts.total.map(|t| sent + t);
        let work = self.exchange(planned.body, &mut rec, &mut state);
        let outcome = tokio::select! {
            r = work => r,
            _ = cancel.cancelled() => Err(fault(ErrorClass::Interrupted, "run interrupted before the response ended".into())),
            _ = sleep_until(deadline) => Err(fault(ErrorClass::Timeout, format!(
                "request exceeded the {:?} limit", self.timeouts.total.unwrap_or_default()))),
        };
        rec.end_us = self.us(Instant::now());
        rec.token_events = state.token_events;
        rec.usage_prompt_tokens = state.usage_prompt;
        rec.usage_output_tokens = state.usage_completion;
        // Server text enters the record here, and only here: scrubbed of the key before anything can write it.
        let target = self.client.target();
        rec.finish_reason = state
            .finish_reason
            .take()
            .map(|r| target.scrub(&r).into_owned());
        rec.event_tokens = state.take_event_tokens();
        if let Err(f) = outcome {
            rec.error = Some(RequestError {
                class: f.class,
                status: rec.status.filter(|s| *s >= 400),
                message: target.scrub(&f.message).into_owned(),
            });
        } else if let (Some(counter), Some(text)) = (self.counter.clone(), state.text.take()) {
            // After the clock stopped, and off the I/O threads, so tokenizing delays no other stream's timestamps.
            let counted = tokio::task::spawn_blocking(move || counter.count(&text)).await;
            rec.tokenizer_output_tokens = counted.ok().map(|n| n as u32);
        }
        rec
    }

    async fn exchange(
        &self,
        body: Bytes,
        rec: &mut RequestRecord,
        state: &mut ResponseState,
    ) -> Result<(), StreamFault> {
        let out = Outgoing {
            method: hyper::Method::POST,
            path: self.path.to_string(),
            body,
            accept_stream: self.stream,
        };
        // The idle clock starts when the request goes out: a server that accepts it and never answers is a stall.
        // A non-streamed answer is silent by design until it is whole: its head may take the whole generation.
        let head_limit = if self.stream {
            self.timeouts.idle
        } else {
            self.timeouts
                .total
                .unwrap_or(self.timeouts.idle * NON_STREAMED_HEAD_IDLES)
        };
        let mut watch = IdleWatch::new(self.timeouts.idle, head_limit);
        let (response, lease, retries) = watch
            .guard(self.client.send(&out))
            .await?
            .map_err(|e| fault(e.class, e.message))?;
        rec.retries = retries;
        rec.headers_us = Some(self.us(watch.saw_data()));
        let status = response.status();
        rec.status = Some(status.as_u16());
        let keep_alive = !response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = response.into_body();
        if !status.is_success() {
            let text = read_prefix(&mut watch, &mut body).await;
            return Err(fault(
                ErrorClass::HttpStatus,
                format!("HTTP {}: {}", status.as_u16(), summarize_error_body(&text)),
            ));
        }
        let ended = if self.stream {
            self.read_stream(&mut watch, &mut body, rec, state).await?
        } else {
            let bytes = read_all(&mut watch, &mut body).await?;
            state.on_body(&bytes)?;
            true
        };
        if let Some(lease) = lease {
            lease.release(keep_alive && ended);
        }
        Ok(())
    }

    /// Reads the stream up to `[DONE]` or the end of the body; says whether the body ended, which a server that
    /// keeps it open after `[DONE]` never does.
    async fn read_stream(
        &self,
        watch: &mut IdleWatch,
        body: &mut Incoming,
        rec: &mut RequestRecord,
        state: &mut ResponseState,
    ) -> Result<bool, StreamFault> {
        let mut parser = SseParser::default();
        let mut last_token: Option<Instant> = None;
        // One timestamp per network read: events that arrived together happened together.
        while let Some((data, now)) = watch.next_frame(body).await? {
            let mut failure = None;
            let fed = parser.feed(&data, |event| {
                if failure.is_some() || state.done {
                    return;
                }
                match state.on_event(event.data, event.name) {
                    Err(f) => failure = Some(f),
                    Ok(meaning) if meaning.token => {
                        let at = self.us(now);
                        match last_token {
                            None => rec.first_token_us = Some(at),
                            Some(prev) => rec
                                .gaps_us
                                .push(now.duration_since(prev).as_micros() as u32),
                        }
                        if meaning.content && rec.first_content_us.is_none() {
                            rec.first_content_us = Some(at);
                        }
                        rec.last_token_us = Some(at);
                        last_token = Some(now);
                    }
                    Ok(_) => {}
                }
            });
            if fed.is_err() {
                return Err(fault(
                    ErrorClass::MalformedSse,
                    format!(
                        "an SSE event exceeded {} MiB",
                        crate::sse::MAX_EVENT_BYTES >> 20
                    ),
                ));
            }
            if let Some(f) = failure {
                return Err(f);
            }
            // A server that ignores max_tokens and never finishes would hold the request, and its memory, forever.
            let allowed = rec
                .max_tokens
                .saturating_mul(2)
                .saturating_add(RUNAWAY_SLACK_EVENTS);
            if rec.max_tokens > 0 && state.token_events > allowed {
                return Err(fault(
                    ErrorClass::StreamBroken,
                    format!(
                        "runaway stream stopped: {} token events for max_tokens {}",
                        state.token_events, rec.max_tokens
                    ),
                ));
            }
            if state.done {
                return Ok(body_ends_soon(body).await);
            }
        }
        if state.done || state.finish_reason.is_some() {
            Ok(true)
        } else {
            Err(fault(
                ErrorClass::StreamBroken,
                format!(
                    "stream ended after {} token events without a finish reason or [DONE]",
                    state.token_events
                ),
            ))
        }
    }
}

async fn read_all(watch: &mut IdleWatch, body: &mut Incoming) -> Result<Vec<u8>, StreamFault> {
    let mut all = Vec::new();
    while let Some((data, _)) = watch.next_frame(body).await? {
        all.extend_from_slice(&data);
    }
    Ok(all)
}

async fn read_prefix(watch: &mut IdleWatch, body: &mut Incoming) -> String {
    let mut all = Vec::new();
    while all.len() < ERROR_BODY_LIMIT {
        match watch.next_frame(body).await {
            Ok(Some((data, _))) => all.extend_from_slice(&data),
            _ => break,
        }
    }
    all.truncate(ERROR_BODY_LIMIT);
    String::from_utf8_lossy(&all).into_owned()
}

/// Token events beyond twice `max_tokens` a stream may carry before it counts as runaway (chunks may split a
/// token, and a server may add a few events of its own).
const RUNAWAY_SLACK_EVENTS: u32 = 64;

/// How long the end of a body may trail its `[DONE]` before the connection is given up rather than reused.
const END_AFTER_DONE: Duration = Duration::from_millis(50);

/// Whether the body ends (nothing but its terminator follows `[DONE]`) within [`END_AFTER_DONE`]; a body that
/// sends more or stays open leaves its connection unusable for the next request.
async fn body_ends_soon(body: &mut Incoming) -> bool {
    let end = async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Ok(frame)) if frame.is_data() => return false,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(END_AFTER_DONE, end)
        .await
        .unwrap_or(false)
}

/// Fails a body that sends nothing for `limit`. Its one timer is re-armed only when it fires, not on every
/// frame, which keeps timer bookkeeping off the per-token path.
/// Without `--timeout`, a non-streamed request waits this many idle limits for its answer (10 min at the default
/// 60 s): long generations fit, and a server that never answers still cannot hold the run forever.
const NON_STREAMED_HEAD_IDLES: u32 = 10;

struct IdleWatch {
    limit: Duration,
    /// The wait allowed for the response head.
    head_limit: Duration,
    last_data: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleWatch {
    fn new(limit: Duration, head_limit: Duration) -> IdleWatch {
        let now = Instant::now();
        IdleWatch {
            limit,
            head_limit,
            last_data: now,
            timer: Box::pin(tokio::time::sleep_until((now + head_limit).into())),
        }
    }

    /// Runs `work` (sending the request and waiting for the response head) unless the head limit passes first.
    async fn guard<T>(&mut self, work: impl Future<Output = T>) -> Result<T, StreamFault> {
        tokio::select! {
            biased;
            done = work => Ok(done),
            () = self.timer.as_mut() => Err(fault(
                ErrorClass::Timeout,
                format!("no response for {:?} after the request was sent", self.head_limit),
            )),
        }
    }

    /// Marks data as seen now (the response head) and returns the time; the body's idle clock starts here.
    fn saw_data(&mut self) -> Instant {
        self.last_data = Instant::now();
        self.timer
            .as_mut()
            .reset((self.last_data + self.limit).into());
        self.last_data
    }

    /// The next data frame and when it arrived; `None` at the end of the body.
    async fn next_frame(
        &mut self,
        body: &mut Incoming,
    ) -> Result<Option<(Bytes, Instant)>, StreamFault> {
        loop {
            tokio::select! {
                biased;
                frame = body.frame() => match frame {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        return Err(fault(
                            ErrorClass::StreamBroken,
                            format!("connection lost mid-response: {e}"),
                        ));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.last_data = Instant::now();
                            return Ok(Some((data, self.last_data)));
                        }
                    }
                },
                () = self.timer.as_mut() => {
                    let due = self.last_data + self.limit;
                    if Instant::now() >= due {
                        return Err(fault(
                            ErrorClass::Timeout,
                            format!("no data for {:?} (stalled stream)", self.limit),
                        ));
                    }
                    self.timer.as_mut().reset(due.into());
                }
            }
        }
    }
}

fn fault(class: ErrorClass, message: String) -> StreamFault {
    StreamFault { class, message }
}

/// The `error.message` of an OpenAI-style error body, else the body itself.
fn summarize_error_body(text: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            let error = v.get("error").unwrap_or(&v);
            error
                .get("message")
                .or(v.get("detail"))
                .and_then(|m| m.as_str().map(str::to_string))
                .or_else(|| error.as_str().map(str::to_string))
        });
    let message = message.unwrap_or_else(|| text.trim().to_string());
    message.chars().take(300).collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
