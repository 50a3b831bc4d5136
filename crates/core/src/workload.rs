//! What a load generator sends, as seen by the room that sends it: prompts by index and a token counter.
//! The `prompt` room implements these; `load` uses them without knowing about tokenizers or datasets.

use serde::{Deserialize, Serialize};

/// One request's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptItem {
    /// The prompt text (sent as `prompt`, or as the user message for chat).
    pub text: String,
    /// Chat messages from a dataset, when it had a conversation; `text` is then their concatenation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Prompt tokens verified by the local tokenizer; `None` without a tokenizer.
    pub input_tokens: Option<u32>,
    /// `max_tokens` to request.
    pub max_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A reproducible sequence of prompts. `item(i)` is the same for the same seed and index, whatever the order of
/// calls, so prompts can be built ahead of time off the I/O threads.
pub trait PromptSource: Send + Sync {
    fn item(&self, index: u64) -> PromptItem;
}

/// Counts tokens of generated text, to cross-check the server's `usage`.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> usize;
}
