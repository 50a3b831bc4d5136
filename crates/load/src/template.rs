//! The chat-template probe's requests: one conversation through `/v1/chat/completions`, and the same conversation
//! rendered by the caller with the model's template through `/v1/completions`, at temperature 0.

use std::time::Duration;

use infer_doctor_core::workload::ChatMessage;
use infer_doctor_core::{TemplateAnswer, TemplateFacts};
use serde_json::{Value, json};

use crate::http::HttpClient;

#[derive(Clone, Debug)]
pub struct TemplateSpec {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// `messages` rendered with the model's own template and its generation prompt.
    pub rendered: String,
    pub max_tokens: u32,
    pub timeout: Duration,
}

/// What an answer said, whichever endpoint gave it.
fn answer(result: Result<bytes::Bytes, String>) -> TemplateAnswer {
    let body = match result.and_then(|b| {
        serde_json::from_slice::<Value>(&b).map_err(|e| format!("response is not JSON: {e}"))
    }) {
        Ok(body) => body,
        Err(error) => {
            return TemplateAnswer {
                error: Some(error),
                ..Default::default()
            };
        }
    };
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let reasoning = message["reasoning_content"]
        .as_str()
        .or_else(|| message["reasoning"].as_str())
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    // A reasoning parser may leave `content` null when the answer is all reasoning (cut at max_tokens).
    let text = choice["text"]
        .as_str()
        .or_else(|| message["content"].as_str())
        .or_else(|| reasoning.is_some().then_some(""))
        .map(str::to_string);
    TemplateAnswer {
        error: text
            .is_none()
            .then(|| "the response has no choices[0] text".to_string()),
        text,
        reasoning,
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        prompt_tokens: body["usage"]["prompt_tokens"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
    }
}

async fn post(
    client: &HttpClient,
    api_path: &str,
    body: &Value,
    timeout: Duration,
) -> Result<bytes::Bytes, String> {
    let path = client.target().path(api_path);
    client
        .post_json(&path, serde_json::to_vec(body).unwrap_or_default(), timeout)
        .await
}

/// The server's own rendering of the conversation, where it shows one: llama.cpp's `/apply-template`, else vLLM's
/// `/tokenize` with the messages followed by `/detokenize` of the tokens.
async fn server_rendering(client: &HttpClient, spec: &TemplateSpec) -> Option<String> {
    let parse = |bytes: bytes::Bytes| serde_json::from_slice::<Value>(&bytes).ok();
    if let Some(prompt) = post(
        client,
        "/apply-template",
        &json!({"messages": spec.messages}),
        spec.timeout,
    )
    .await
    .ok()
    .and_then(parse)
    .and_then(|v| v["prompt"].as_str().map(str::to_string))
    {
        return Some(prompt);
    }
    let tokens = post(
        client,
        "/tokenize",
        &json!({"model": spec.model, "messages": spec.messages, "add_generation_prompt": true,
               "add_special_tokens": false}),
        spec.timeout,
    )
    .await
    .ok()
    .and_then(parse)?["tokens"]
        .clone();
    tokens.as_array()?;
    post(
        client,
        "/detokenize",
        &json!({"model": spec.model, "tokens": tokens}),
        spec.timeout,
    )
    .await
    .ok()
    .and_then(parse)
    .and_then(|v| v["prompt"].as_str().map(str::to_string))
}

/// The chat and the completions request bodies. The completions request asks for no special tokens of its own
/// (`add_special_tokens`, a vLLM extension others ignore), because the rendered text carries them already, as
/// the chat endpoint's does. Both ask for special tokens in the answer (`skip_special_tokens`, vLLM's and
/// SGLang's; others ignore it), so an end-of-turn that failed to stop generation shows in the text.
fn bodies(spec: &TemplateSpec) -> (Value, Value) {
    let chat = json!({"model": spec.model, "messages": spec.messages, "max_tokens": spec.max_tokens,
                      "temperature": 0, "stream": false, "skip_special_tokens": false});
    let completion = json!({"model": spec.model, "prompt": spec.rendered, "max_tokens": spec.max_tokens,
                            "temperature": 0, "stream": false, "add_special_tokens": false,
                            "skip_special_tokens": false});
    (chat, completion)
}

/// Sends the conversation both ways. A server that refuses `skip_special_tokens` (rather than ignoring it) is asked
/// both ways again without it, so the two requests still differ in nothing but the prompt's form.
pub async fn probe(client: &HttpClient, spec: &TemplateSpec) -> TemplateFacts {
    let (mut chat, mut completion) = bodies(spec);
    let mut answers = send_both(client, spec, &chat, &completion).await;
    let refused = |r: &Result<bytes::Bytes, String>| {
        r.as_ref().is_err_and(|e| e.contains("skip_special_tokens"))
    };
    if refused(&answers.0) || refused(&answers.1) {
        for body in [&mut chat, &mut completion] {
            body.as_object_mut()
                .map(|b| b.remove("skip_special_tokens"));
        }
        answers = send_both(client, spec, &chat, &completion).await;
    }
    let (chat, completion) = (answer(answers.0), answer(answers.1));
    TemplateFacts {
        rendered: spec.rendered.clone(),
        server_rendered: server_rendering(client, spec).await,
        max_tokens: spec.max_tokens,
        chat,
        completion,
        ..Default::default()
    }
}

async fn send_both(
    client: &HttpClient,
    spec: &TemplateSpec,
    chat: &Value,
    completion: &Value,
) -> (Result<bytes::Bytes, String>, Result<bytes::Bytes, String>) {
    (
        post(client, "/v1/chat/completions", chat, spec.timeout).await,
        post(client, "/v1/completions", completion, spec.timeout).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_endpoints_answers_are_read_and_failures_kept() {
        let chat = answer(Ok(bytes::Bytes::from_static(
            br#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12}}"#,
        )));
        assert_eq!(
            (
                chat.text.as_deref(),
                chat.finish_reason.as_deref(),
                chat.prompt_tokens,
                chat.error
            ),
            (Some("hi"), Some("stop"), Some(12), None)
        );
        let completion = answer(Ok(bytes::Bytes::from_static(
            br#"{"choices":[{"text":" a b","finish_reason":"length"}]}"#,
        )));
        assert_eq!(completion.text.as_deref(), Some(" a b"));
        let failed = answer(Err("HTTP 400: bad".into()));
        assert_eq!(failed.error.as_deref(), Some("HTTP 400: bad"));
        assert!(answer(Ok(bytes::Bytes::from_static(b"{}"))).error.is_some());
    }

    #[test]
    fn a_reasoning_parsers_split_is_kept() {
        let chat = answer(Ok(bytes::Bytes::from_static(
            br#"{"choices":[{"message":{"role":"assistant","reasoning_content":"Think.","content":"Green."},"finish_reason":"stop"}]}"#,
        )));
        assert_eq!(
            (chat.reasoning.as_deref(), chat.text.as_deref()),
            (Some("Think."), Some("Green."))
        );
        let cut = answer(Ok(bytes::Bytes::from_static(
            br#"{"choices":[{"message":{"reasoning":"Still thinking","content":null},"finish_reason":"length"}]}"#,
        )));
        assert_eq!(
            (cut.reasoning.as_deref(), cut.text.as_deref(), cut.error),
            (Some("Still thinking"), Some(""), None)
        );
    }

    #[test]
    fn both_requests_ask_to_see_special_tokens() {
        let spec = TemplateSpec {
            model: "m".into(),
            messages: vec![],
            rendered: "<s>[INST] hi [/INST]".into(),
            max_tokens: 8,
            timeout: Duration::from_secs(1),
        };
        let (chat, completion) = bodies(&spec);
        assert_eq!(chat["skip_special_tokens"], false);
        assert_eq!(completion["skip_special_tokens"], false);
        assert_eq!(completion["add_special_tokens"], false);
        assert_eq!(completion["prompt"], "<s>[INST] hi [/INST]");
    }
}
