//! Answers one HTTP request the way an OpenAI-compatible inference server would, faults included.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::body::{ChannelBody, Outgoing};
use crate::{Fault, MockConfig, ServedRequest, Shared, TokenStamps};

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

fn error_reply(status: u16, message: &str) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body =
        json!({"error": {"message": message, "type": "mock_error", "code": status.as_u16()}});
    let mut reply = json_reply(status, &body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        reply
            .headers_mut()
            .insert("retry-after", "1".parse().expect("valid header"));
    }
    reply
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    hang_up: Arc<Notify>,
) -> Result<Reply, std::io::Error> {
    let path = req.uri().path().to_string();
    let model = &shared.config.model;
    if req.method() == hyper::Method::GET {
        return Ok(match path.rsplit('/').next().unwrap_or("") {
            "models" => json_reply(
                StatusCode::OK,
                &json!({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "testkit", "max_model_len": 4096}]}),
            ),
            "version" => json_reply(StatusCode::OK, &json!({"version": "testkit-1"})),
            "health" => full(StatusCode::OK, "text/plain", ""),
            "metrics" if shared.config.trtllm && path != "/prometheus/metrics" => {
                error_reply(404, "not found")
            }
            "metrics" => {
                tokio::time::sleep(shared.config.metrics_delay).await;
                let served = shared.next_index.load(Ordering::Relaxed);
                let in_flight = shared.in_flight.load(Ordering::Relaxed);
                let text = match shared.config.llamacpp_slots {
                    _ if shared.config.trtllm => format!(
                        "# TYPE trtllm_num_requests_running gauge\ntrtllm_num_requests_running {in_flight}\n\
                         # TYPE trtllm_num_requests_waiting gauge\ntrtllm_num_requests_waiting 0\n\
                         # TYPE trtllm_kv_cache_utilization gauge\ntrtllm_kv_cache_utilization 0.25\n"
                    ),
                    Some(_) => format!(
                        "# HELP llamacpp:requests_processing Number of requests processing.\n\
                         # TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing {}\n\
                         # HELP llamacpp:requests_deferred Number of requests deferred.\n\
                         # TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n",
                        shared.in_flight.load(Ordering::Relaxed)
                    ),
                    None => format!(
                        "# TYPE testkit_requests_total counter\ntestkit_requests_total {served}\n"
                    ),
                };
                full(StatusCode::OK, "text/plain; version=0.0.4", text)
            }
            "props" if shared.config.llamacpp_slots.is_some() => json_reply(
                StatusCode::OK,
                &json!({"total_slots": shared.config.llamacpp_slots, "default_generation_settings": {"n_ctx": 1024}}),
            ),
            "slots" => match shared.config.llamacpp_slots {
                Some(n) => json_reply(
                    StatusCode::OK,
                    &Value::Array(
                        (0..n)
                            .map(|id| json!({"id": id, "n_ctx": 1024, "is_processing": false}))
                            .collect(),
                    ),
                ),
                None => error_reply(404, "not found"),
            },
            _ => error_reply(404, "not found"),
        });
    }
    let chat = path.ends_with("/chat/completions");
    if !chat && !path.ends_with("/completions") {
        return Ok(error_reply(404, "not found"));
    }
    let arrived = Instant::now();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(error_reply(400, "request body is not JSON"));
    };
    let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
    let in_flight = InFlight::enter(&shared);
    let slot = match &shared.slots {
        Some(slots) => slots.clone().acquire_owned().await.ok(),
        None => None,
    };
    let plan = Plan::new(&shared, &body, chat, index);
    let served = ServedRequest {
        index,
        path,
        arrived,
        chunk_times: Vec::new(),
        body,
        authorization,
    };
    if let Some(Fault::Status(code)) = &plan.fault {
        shared.record(served);
        return Ok(error_reply(*code, "injected failure"));
    }
    if let Some(Fault::EchoAuthorization(code)) = &plan.fault {
        let message = format!(
            "rejected Authorization header `{}`",
            served.authorization.as_deref().unwrap_or("")
        );
        shared.record(served);
        return Ok(error_reply(*code, &message));
    }
    if !plan.stream {
        tokio::time::sleep(plan.config_delay(&shared)).await;
        drop(slot);
        let reply = json_reply(StatusCode::OK, &plan.whole_response());
        shared.record(served);
        return Ok(reply);
    }
    let (tx, rx) = mpsc::channel(16);
    let stamps = shared.record(served);
    tokio::spawn(async move {
        stream_tokens(plan, &shared.config, tx, hang_up).await;
        drop(slot);
        drop(in_flight);
    });
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody { rx, stamps }.boxed())
        .expect("static response parts are valid"))
}

/// Counts a completion request as in flight until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// Keeps the request as ground truth; its token stamps fill in as the body is written.
    fn record(&self, served: ServedRequest) -> Option<TokenStamps> {
        if !self.config.record_truth {
            return None;
        }
        let stamps = TokenStamps::default();
        self.truth
            .lock()
            .expect("truth lock")
            .push((served, stamps.clone()));
        Some(stamps)
    }
}

/// What one response will contain.
struct Plan {
    chat: bool,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
    prompt_tokens: u32,
    output_tokens: u32,
    finish_reason: &'static str,
    fault: Option<Fault>,
    id: String,
    model: String,
}

impl Plan {
    fn new(shared: &Shared, body: &Value, chat: bool, index: u64) -> Plan {
        let cfg = &shared.config;
        let max_tokens = body
            .get("max_tokens")
            .or_else(|| body.get("max_completion_tokens"))
            .and_then(Value::as_u64)
            .map_or(cfg.default_output_tokens, |v| v as u32);
        let (output_tokens, finish_reason) = match cfg.stop_after {
            Some(stop) if stop < max_tokens => (stop, "stop"),
            _ => (max_tokens, "length"),
        };
        let prompt_text = if chat {
            body["messages"].as_array().map_or(String::new(), |m| {
                m.iter()
                    .filter_map(|msg| msg["content"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        } else {
            body["prompt"].as_str().unwrap_or_default().to_string()
        };
        let options = &body["stream_options"];
        Plan {
            chat,
            stream: body["stream"].as_bool().unwrap_or(false),
            include_usage: options["include_usage"].as_bool().unwrap_or(false),
            continuous_usage: options["continuous_usage_stats"].as_bool().unwrap_or(false),
            prompt_tokens: prompt_text.split_whitespace().count() as u32,
            output_tokens,
            finish_reason,
            fault: shared.fault_for(index),
            id: format!("cmpl-{index}"),
            model: cfg.model.clone(),
        }
    }

    fn config_delay(&self, shared: &Shared) -> Duration {
        shared.config.ttft + shared.config.itl * self.output_tokens.saturating_sub(1)
    }

    fn usage(&self, completion: u32) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
               "total_tokens": self.prompt_tokens + completion})
    }

    fn choice(&self, text: &str, finish: Option<&str>) -> Value {
        if self.chat {
            let delta = if text.is_empty() {
                json!({})
            } else {
                json!({"content": text})
            };
            json!({"index": 0, "delta": delta, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": text, "finish_reason": finish})
        }
    }

    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut v = json!({"id": self.id, "object": object, "created": now_secs(), "model": self.model, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        Bytes::from(format!("data: {v}\n\n"))
    }

    fn whole_response(&self) -> Value {
        let text = token_text(0, self.output_tokens);
        let choice = if self.chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": self.finish_reason})
        } else {
            json!({"index": 0, "text": text, "finish_reason": self.finish_reason})
        };
        let object = if self.chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        json!({"id": self.id, "object": object, "created": now_secs(), "model": self.model,
               "choices": [choice], "usage": self.usage(self.output_tokens)})
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn token_text(from: u32, count: u32) -> String {
    (from..from + count).map(|i| format!(" w{i}")).collect()
}

/// Streams the planned response; the body stamps each token chunk as hyper takes it.
async fn stream_tokens(
    plan: Plan,
    cfg: &MockConfig,
    tx: mpsc::Sender<Outgoing>,
    hang_up: Arc<Notify>,
) {
    let send = |bytes: Bytes, token: bool| {
        let tx = tx.clone();
        async move {
            tx.send(Outgoing {
                frame: Ok(Frame::data(bytes)),
                token,
            })
            .await
            .is_ok()
        }
    };
    if plan.chat && !send(plan.chunk(vec![json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})], None), false).await {
        return;
    }
    // Token times count from when the request got a slot, not from its arrival.
    let start = Instant::now();
    let per_chunk = cfg.tokens_per_chunk.max(1);
    let mut emitted = 0;
    let mut chunk_no = 0u32;
    while emitted < plan.output_tokens {
        match &plan.fault {
            Some(Fault::StallAfter(k)) if emitted >= *k => {
                // Hold the stream open until the client gives up.
                tx.closed().await;
                return;
            }
            Some(Fault::DropAfter(k)) if emitted >= *k => {
                let reset = std::io::Error::other("injected connection reset");
                let _ = tx
                    .send(Outgoing {
                        frame: Err(reset),
                        token: false,
                    })
                    .await;
                return;
            }
            Some(Fault::MalformedAfter(k)) if emitted >= *k => {
                send(
                    Bytes::from_static(b"data: {\"choices\": [ this is not json\n\n"),
                    false,
                )
                .await;
                break;
            }
            Some(Fault::ErrorEvent(k)) if emitted >= *k => {
                let err = json!({"error": {"message": "injected engine error", "type": "InternalServerError", "code": 500}});
                send(Bytes::from(format!("data: {err}\n\n")), false).await;
                send(Bytes::from_static(b"data: [DONE]\n\n"), false).await;
                return;
            }
            _ => {}
        }
        let deadline = start + cfg.ttft + cfg.itl * chunk_no;
        // Tokio rounds timers up to the next millisecond tick; an instant server must not pay that.
        if deadline > Instant::now() {
            tokio::time::sleep_until(deadline.into()).await;
        }
        let count = per_chunk.min(plan.output_tokens - emitted);
        let mut text = token_text(emitted, count);
        if let Some(Fault::HugeLine(bytes)) = &plan.fault
            && chunk_no == 0
        {
            text.push_str(&"x".repeat(*bytes));
        }
        emitted += count;
        chunk_no += 1;
        let last = emitted == plan.output_tokens && !matches!(plan.fault, Some(Fault::NoDone));
        let finish = last.then_some(plan.finish_reason);
        let usage = plan.continuous_usage.then(|| plan.usage(emitted));
        if !send(plan.chunk(vec![plan.choice(&text, finish)], usage), true).await {
            return;
        }
    }
    if !matches!(
        plan.fault,
        Some(Fault::NoDone) | Some(Fault::MalformedAfter(_))
    ) {
        if plan.include_usage {
            send(
                plan.chunk(Vec::new(), Some(plan.usage(plan.output_tokens))),
                false,
            )
            .await;
        }
        send(Bytes::from_static(b"data: [DONE]\n\n"), false).await;
    }
    drop(tx);
    if cfg.close_after_stream {
        hang_up.notify_one();
    }
}
