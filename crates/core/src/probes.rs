//! What the output probes measured: the same prompts at temperature 0 alone and inside concurrent batches
//! (determinism), kept as evidence so `diagnose` judges them as a pure function, live or from a bundle.

use serde::{Deserialize, Serialize};

/// The determinism probe: each prompt's lone output against the same prompt's outputs inside batches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeterminismFacts {
    /// Distinct prompts, each sent alone first.
    pub prompts: u32,
    /// Prompts whose lone run failed: nothing of theirs was compared.
    #[serde(default)]
    pub lone_failed: u32,
    pub max_tokens: u32,
    /// Outputs were compared by the server's own tokens (its logprobs); otherwise by whitespace-separated words
    /// of the text, and positions count words.
    pub by_tokens: bool,
    /// The server returned logprobs, so each divergence says how close its two tokens were.
    pub logprobs: bool,
    /// One per batch size, in the order they ran.
    pub runs: Vec<DeterminismRun>,
    /// Per batch size and prompt, where its earliest-differing batched output left the lone output.
    #[serde(default)]
    pub divergences: Vec<Divergence>,
    /// Prompts sent alone a second time, as a control: a batched copy may hit the prefix cache the first lone run
    /// filled, so a prompt must repeat itself alone before a batch can be blamed.
    #[serde(default)]
    pub repeated: u32,
    /// Per prompt whose second lone run differed from its first (`batch` 1, `batched` the second run): it is
    /// nondeterministic alone, and its batched copies were not compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alone_divergences: Vec<Divergence>,
    /// Why the probe stopped early or could not ask for logprobs, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One batch: `sent` requests at once, each a copy of one of the prompts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeterminismRun {
    pub batch: u32,
    pub sent: u32,
    /// Outputs compared with their prompt's lone output (answered, the lone run answered too, and the prompt's
    /// two lone runs agreed).
    pub compared: u32,
    pub differing: u32,
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Where a batched output first differs from the lone output of the same prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    pub batch: u32,
    /// Index of the prompt in the probe's set.
    pub prompt: u32,
    /// 1-based position of the first differing generated token (or word): the tokens before it were equal.
    pub position: u32,
    /// What the lone run produced there; empty when it had ended.
    pub alone: TokenPick,
    pub batched: TokenPick,
    /// The lone run's logprob of its own token minus the logprob it gave the batched token: how far the batch
    /// had to move the logits to flip the argmax. `None` without logprobs, or when the batched token was not
    /// among the lone run's top candidates (then the gap is larger than any of them shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenPick {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
}

impl DeterminismFacts {
    /// Outputs compared and outputs that differed, over every batch.
    pub fn totals(&self) -> (u32, u32) {
        self.runs
            .iter()
            .fold((0, 0), |(c, d), r| (c + r.compared, d + r.differing))
    }
}

/// The chat-template probe: one conversation through the server's chat endpoint and, rendered with the model's
/// own template, through its completions endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateFacts {
    /// Where the model's template was read from.
    pub template: String,
    /// Whether the template opens the assistant's turn when asked: false only for one that reads
    /// `add_generation_prompt` and renders the same without it (one that never reads it, like Mistral's, opens the
    /// turn itself).
    pub generation_prompt: bool,
    /// Why the model's template could not be rendered here; the probe then sent nothing and judges nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_error: Option<String>,
    /// The conversation as the model's template renders it: the completions request's prompt.
    pub rendered: String,
    /// The same conversation as the server renders it, where it shows that (vLLM's `/tokenize` then
    /// `/detokenize`, llama.cpp's `/apply-template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rendered: Option<String>,
    /// What the template writes after an assistant's message (`<|im_end|>`, `<|eot_id|>`): the model's stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_turn: Option<String>,
    pub max_tokens: u32,
    pub chat: TemplateAnswer,
    pub completion: TemplateAnswer,
}

/// One endpoint's answer at temperature 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What a server's reasoning parser took out of a chat answer (`reasoning_content`, or `reasoning`): the
    /// completions text still holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
