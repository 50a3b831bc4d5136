//! The OpenAI wire format: request bodies for completions and chat, and the meaning of each streamed chunk
//! (does it carry a token, content, a finish, usage, an error?) across vLLM, llama.cpp, SGLang and TGI quirks.

use std::borrow::Cow;

use infer_doctor_core::{ErrorClass, PromptItem};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::target::Endpoint;

/// What every request of a run asks for, besides its prompt.
#[derive(Clone, Debug)]
pub struct BodyOptions {
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub ignore_eos: bool,
    /// Ask for usage on every chunk (`continuous_usage_stats`, vLLM and SGLang) to count tokens per chunk.
    pub continuous_usage: bool,
}

pub fn request_body(opts: &BodyOptions, item: &PromptItem) -> Vec<u8> {
    let mut body = match opts.endpoint {
        Endpoint::Completions => json!({"model": opts.model, "prompt": item.text}),
        Endpoint::Chat => {
            let messages = match &item.messages {
                Some(m) => serde_json::to_value(m).unwrap_or_default(),
                None => json!([{"role": "user", "content": item.text}]),
            };
            json!({"model": opts.model, "messages": messages})
        }
    };
    body["max_tokens"] = json!(item.max_tokens);
    body["stream"] = json!(opts.stream);
    if opts.stream {
        let mut options = json!({"include_usage": true});
        if opts.continuous_usage {
            options["continuous_usage_stats"] = json!(true);
        }
        body["stream_options"] = options;
    }
    if opts.ignore_eos {
        // vLLM and SGLang read `ignore_eos`; `min_tokens` makes others (TGI, llama.cpp via n_predict) honour it too.
        body["ignore_eos"] = json!(true);
        body["min_tokens"] = json!(item.max_tokens);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    message: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// What one streamed event meant.
#[derive(Debug, Default, PartialEq)]
pub struct EventMeaning {
    /// The event carries generated tokens (text, reasoning or a tool call).
    pub token: bool,
    /// The event carries answer content (not only reasoning).
    pub content: bool,
    pub done: bool,
}

/// A stream that went wrong.
#[derive(Debug, PartialEq)]
pub struct StreamFault {
    pub class: ErrorClass,
    pub message: String,
}

/// What a response has said so far.
#[derive(Debug, Default)]
pub struct ResponseState {
    pub token_events: u32,
    pub usage_prompt: Option<u32>,
    pub usage_completion: Option<u32>,
    pub finish_reason: Option<String>,
    /// Tokens per token-bearing event, from usage increments; meaningful only if every such event had usage.
    event_tokens: Vec<u32>,
    /// Generated text, kept only when a tokenizer will count it.
    pub text: Option<String>,
    pub done: bool,
}

fn error_message(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string)
}

impl ResponseState {
    pub fn keeping_text(keep: bool) -> Self {
        ResponseState {
            text: keep.then(String::new),
            ..Default::default()
        }
    }

    /// Interprets one SSE `data` payload.
    pub fn on_event(
        &mut self,
        data: &[u8],
        name: Option<&[u8]>,
    ) -> Result<EventMeaning, StreamFault> {
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            return Ok(EventMeaning {
                done: true,
                ..Default::default()
            });
        }
        let chunk: Chunk = serde_json::from_slice(data).map_err(|e| StreamFault {
            class: if name == Some(b"error") {
                ErrorClass::ServerErrorEvent
            } else {
                ErrorClass::MalformedSse
            },
            message: format!(
                "event is not JSON ({e}): {}",
                String::from_utf8_lossy(&data[..data.len().min(200)])
            ),
        })?;
        if let Some(error) = &chunk.error {
            return Err(StreamFault {
                class: ErrorClass::ServerErrorEvent,
                message: error_message(error),
            });
        }
        if name == Some(b"error") {
            return Err(StreamFault {
                class: ErrorClass::ServerErrorEvent,
                message: String::from_utf8_lossy(data).into_owned(),
            });
        }
        Ok(self.absorb(&chunk))
    }

    /// Interprets a whole non-streamed response body.
    pub fn on_body(&mut self, body: &[u8]) -> Result<(), StreamFault> {
        let chunk: Chunk = serde_json::from_slice(body).map_err(|e| StreamFault {
            class: ErrorClass::MalformedSse,
            message: format!("response body is not JSON: {e}"),
        })?;
        if let Some(error) = &chunk.error {
            return Err(StreamFault {
                class: ErrorClass::ServerErrorEvent,
                message: error_message(error),
            });
        }
        self.absorb(&chunk);
        self.done = true;
        Ok(())
    }

    fn absorb(&mut self, chunk: &Chunk) -> EventMeaning {
        let mut meaning = EventMeaning::default();
        for choice in &chunk.choices {
            let delta = choice.delta.as_ref().or(choice.message.as_ref());
            let content = choice
                .text
                .as_deref()
                .or(delta.and_then(|d| d.content.as_deref()))
                .unwrap_or("");
            let reasoning = delta
                .and_then(|d| d.reasoning_content.as_deref().or(d.reasoning.as_deref()))
                .unwrap_or("");
            let tool_call =
                delta.is_some_and(|d| d.tool_calls.as_ref().is_some_and(|t| !t.is_null()));
            meaning.content |= !content.is_empty();
            meaning.token |= !content.is_empty() || !reasoning.is_empty() || tool_call;
            if let Some(text) = &mut self.text {
                text.push_str(reasoning);
                text.push_str(content);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.to_string());
            }
        }
        let previous = self.usage_completion;
        if let Some(usage) = chunk.usage {
            self.usage_prompt = usage.prompt_tokens.or(self.usage_prompt);
            self.usage_completion = usage.completion_tokens.or(self.usage_completion);
        }
        // Only an increment over usage already seen on an earlier chunk counts: a server that reports usage once,
        // at the end, says nothing about which chunk carried what.
        let increment = match (previous, self.usage_completion) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        };
        // A chunk whose text is empty but whose usage grew still carried tokens (vLLM holds back partial UTF-8).
        if increment > 0 && !chunk.choices.is_empty() {
            meaning.token = true;
        }
        if meaning.token {
            self.token_events += 1;
            if chunk.usage.is_some() {
                let tokens = if previous.is_none() {
                    self.usage_completion.unwrap_or(1)
                } else {
                    increment
                };
                self.event_tokens.push(tokens.max(1));
            }
        }
        meaning
    }

    /// Per-chunk token counts when every token-bearing event carried usage (`continuous_usage_stats`), else
    /// nothing.
    pub fn take_event_tokens(&mut self) -> Vec<u32> {
        if self.token_events > 1 && self.event_tokens.len() == self.token_events as usize {
            std::mem::take(&mut self.event_tokens)
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    fn replay(raw: &[u8]) -> (ResponseState, Vec<EventMeaning>) {
        let mut state = ResponseState::keeping_text(true);
        let mut meanings = Vec::new();
        let mut parser = SseParser::default();
        parser
            .feed(raw, |e| {
                meanings.push(state.on_event(e.data, e.name).unwrap())
            })
            .unwrap();
        (state, meanings)
    }

    #[test]
    fn real_vllm_chat_stream() {
        let (state, meanings) = replay(include_bytes!(
            "../../../fixtures/sse/vllm_cpu_stream_chat.txt"
        ));
        assert!(
            !meanings[0].token,
            "the role prelude with empty content is not a token"
        );
        assert!(meanings[1].token && meanings[1].content);
        assert_eq!(state.usage_completion, Some(16));
        assert_eq!(state.usage_prompt, Some(19));
        assert_eq!(state.finish_reason.as_deref(), Some("length"));
        assert!(state.done);
        assert!(
            state.token_events <= 16 && state.token_events >= 14,
            "{}",
            state.token_events
        );
    }

    #[test]
    fn real_llamacpp_streams_end_with_usage_in_the_finish_chunk() {
        for raw in [
            &include_bytes!("../../../fixtures/sse/llamacpp_stream_chat.txt")[..],
            &include_bytes!("../../../fixtures/sse/llamacpp_stream_completions.txt")[..],
        ] {
            let (mut state, _) = replay(raw);
            assert_eq!(state.usage_completion, Some(16));
            assert_eq!(state.finish_reason.as_deref(), Some("length"));
            assert!(state.token_events <= 16 && state.token_events > 10);
            assert!(
                state.take_event_tokens().is_empty(),
                "usage only at the end is not per-chunk"
            );
        }
    }

    #[test]
    fn continuous_usage_counts_tokens_per_chunk_including_empty_text() {
        let raw = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":0}}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        let (mut state, meanings) = replay(raw);
        assert_eq!(meanings.iter().filter(|m| m.token).count(), 3);
        assert_eq!(state.take_event_tokens(), vec![2, 1, 1]);
        assert_eq!(state.text.as_deref(), Some("abc"));
    }

    #[test]
    fn reasoning_is_a_token_but_not_content_and_errors_are_classified() {
        let mut s = ResponseState::default();
        let m = s
            .on_event(
                br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
                None,
            )
            .unwrap();
        assert!(m.token && !m.content);
        let err = s
            .on_event(br#"{"error":{"message":"boom","code":500}}"#, None)
            .unwrap_err();
        assert_eq!(
            (err.class, err.message.as_str()),
            (ErrorClass::ServerErrorEvent, "boom")
        );
        let err = s.on_event(b"{not json", None).unwrap_err();
        assert_eq!(err.class, ErrorClass::MalformedSse);
    }

    #[test]
    fn bodies_carry_usage_options_and_ignore_eos() {
        let item = PromptItem {
            text: "hi".into(),
            messages: None,
            input_tokens: Some(1),
            max_tokens: 7,
        };
        let opts = BodyOptions {
            endpoint: Endpoint::Chat,
            model: "m".into(),
            stream: true,
            ignore_eos: true,
            continuous_usage: true,
        };
        let v: Value = serde_json::from_slice(&request_body(&opts, &item)).unwrap();
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(v["max_tokens"], 7);
        assert_eq!(v["stream_options"]["continuous_usage_stats"], true);
        assert_eq!(
            (v["ignore_eos"].as_bool(), v["min_tokens"].as_u64()),
            (Some(true), Some(7))
        );
    }
}
