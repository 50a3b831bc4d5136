//! Prompts from files people already have: JSONL (one `{"prompt": ...}` or `{"messages": [...]}` per line) and
//! ShareGPT conversations. Bad input names the file and line; the run cycles through the entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use infer_doctor_core::workload::ChatMessage;
use infer_doctor_core::{PromptItem, PromptSource};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::dist::LengthDist;
use crate::tokenizer::Tokenizer;
use crate::{PromptError, WorkloadInfo};

/// Output length when neither the entry nor `--output-tokens` gives one.
const DEFAULT_OUTPUT_TOKENS: u32 = 128;

struct Entry {
    text: String,
    messages: Option<Vec<ChatMessage>>,
    output_tokens: Option<u32>,
}

pub struct DatasetSource {
    entries: Vec<Entry>,
    output: Option<LengthDist>,
    seed: u64,
    tokenizer: Option<Arc<Tokenizer>>,
    info: WorkloadInfo,
}

fn line_error(
    path: &Path,
    line: usize,
    column: Option<usize>,
    reason: impl Into<String>,
) -> PromptError {
    PromptError::Dataset {
        path: path.to_path_buf(),
        line,
        column,
        reason: reason.into(),
    }
}

fn jsonl_entry(path: &Path, line_no: usize, line: &str) -> Result<Entry, PromptError> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| line_error(path, line_no, Some(e.column()), format!("not JSON: {e}")))?;
    let output_tokens = ["max_tokens", "output_tokens", "output_len"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_u64))
        .map(|v| v as u32);
    if let Some(text) = value
        .get("prompt")
        .or(value.get("text"))
        .and_then(Value::as_str)
    {
        return Ok(Entry {
            text: text.to_string(),
            messages: None,
            output_tokens,
        });
    }
    if let Some(messages) = value.get("messages") {
        let messages: Vec<ChatMessage> = serde_json::from_value(messages.clone()).map_err(|e| {
            line_error(
                path,
                line_no,
                None,
                format!("`messages` must be [{{role, content}}]: {e}"),
            )
        })?;
        let text = messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(Entry {
            text,
            messages: Some(messages),
            output_tokens,
        });
    }
    Err(line_error(
        path,
        line_no,
        None,
        "no \"prompt\", \"text\" or \"messages\" field",
    ))
}

/// The first user turn and the length of the reply that followed it.
fn sharegpt_entry(value: &Value, count: &dyn Fn(&str) -> u32) -> Option<Entry> {
    let turns = value
        .get("conversations")
        .or(value.get("conversation"))?
        .as_array()?;
    let role = |t: &Value| {
        t.get("from")
            .or(t.get("role"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let text = |t: &Value| {
        t.get("value")
            .or(t.get("content"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let ask = turns
        .iter()
        .position(|t| matches!(role(t).as_str(), "human" | "user"))?;
    let reply = turns
        .get(ask + 1)
        .filter(|t| matches!(role(t).as_str(), "gpt" | "assistant" | "chatgpt"))?;
    Some(Entry {
        text: text(&turns[ask])?,
        messages: None,
        output_tokens: Some(count(&text(reply)?).max(1)),
    })
}

impl DatasetSource {
    pub fn load(
        path: &Path,
        output: Option<LengthDist>,
        seed: u64,
        tokenizer: Option<Arc<Tokenizer>>,
    ) -> Result<DatasetSource, PromptError> {
        let file_error = |reason: String| PromptError::DatasetFile {
            path: path.to_path_buf(),
            reason,
        };
        let content = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let mut skipped = 0;
        let (kind, entries) = if content.trim_start().starts_with('[') {
            let all: Vec<Value> = serde_json::from_str(&content).map_err(|e| {
                line_error(
                    path,
                    e.line(),
                    Some(e.column()),
                    format!("not a JSON array: {e}"),
                )
            })?;
            let count = |text: &str| match &tokenizer {
                Some(t) => t.encode(text).len() as u32,
                None => (text.split_whitespace().count() as u32 * 4).div_ceil(3),
            };
            let entries: Vec<Entry> = all
                .iter()
                .filter_map(|v| sharegpt_entry(v, &count))
                .collect();
            skipped = all.len() - entries.len();
            ("sharegpt", entries)
        } else {
            let mut entries = Vec::new();
            for (i, line) in content.lines().enumerate() {
                if !line.trim().is_empty() {
                    entries.push(jsonl_entry(path, i + 1, line)?);
                }
            }
            ("jsonl", entries)
        };
        if entries.is_empty() {
            return Err(file_error(format!(
                "no usable prompts ({skipped} entries skipped)"
            )));
        }
        let mut notes = vec![format!(
            "{} prompts; a run longer than that cycles through them",
            entries.len()
        )];
        if skipped > 0 {
            notes.push(format!(
                "{skipped} conversations without a user turn followed by a reply were skipped"
            ));
        }
        let info = WorkloadInfo {
            kind,
            source: Some(PathBuf::from(path)),
            entries: Some(entries.len()),
            skipped,
            tokenizer: tokenizer.as_ref().map(|t| t.name()),
            exact_input_lengths: tokenizer.is_some(),
            residual_mismatches: 0,
            notes,
        };
        Ok(DatasetSource {
            entries,
            output,
            seed,
            tokenizer,
            info,
        })
    }

    pub fn info(&self) -> WorkloadInfo {
        self.info.clone()
    }
}

impl PromptSource for DatasetSource {
    fn item(&self, index: u64) -> PromptItem {
        let entry = &self.entries[(index % self.entries.len() as u64) as usize];
        let max_tokens = match &self.output {
            Some(dist) => dist.sample(&mut StdRng::seed_from_u64(
                self.seed ^ index.wrapping_mul(0x9E37_79B9),
            )),
            None => entry.output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
        };
        PromptItem {
            text: entry.text.clone(),
            messages: entry.messages.clone(),
            input_tokens: self
                .tokenizer
                .as_ref()
                .map(|t| t.encode(&entry.text).len() as u32),
            max_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    #[test]
    fn jsonl_prompts_messages_and_lengths() {
        let f = file(
            "{\"prompt\": \"hello there\", \"max_tokens\": 7}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
        );
        let d = DatasetSource::load(f.path(), None, 0, None).unwrap();
        assert_eq!(d.item(0).text, "hello there");
        assert_eq!(d.item(0).max_tokens, 7);
        assert_eq!(d.item(1).messages.as_ref().unwrap()[0].content, "hi");
        assert_eq!(d.item(1).max_tokens, DEFAULT_OUTPUT_TOKENS);
        assert_eq!(d.item(2).text, "hello there", "cycles");
        let fixed = DatasetSource::load(f.path(), Some("5".parse().unwrap()), 0, None).unwrap();
        assert_eq!(fixed.item(0).max_tokens, 5);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        let f = file("{\"prompt\": \"ok\"}\n{\"prompt\": \"ok\"}\n{not json\n");
        let err = DatasetSource::load(f.path(), None, 0, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("{}:3:", f.path().display())), "{err}");
        let f = file("{\"other\": 1}\n");
        let err = DatasetSource::load(f.path(), None, 0, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(":1") && err.contains("no \"prompt\""), "{err}");
    }

    #[test]
    fn sharegpt_takes_the_first_exchange_and_skips_the_rest() {
        let f = file(
            r#"[{"conversations": [{"from": "human", "value": "tell me"}, {"from": "gpt", "value": "one two three"}]},
                {"conversations": [{"from": "gpt", "value": "no question"}]},
                {"id": "x"}]"#,
        );
        let d = DatasetSource::load(f.path(), None, 0, None).unwrap();
        assert_eq!(d.item(0).text, "tell me");
        assert_eq!(
            d.item(0).max_tokens,
            4,
            "3 words ≈ 4 tokens without a tokenizer"
        );
        assert_eq!(d.info().skipped, 2);
        let broken = file("[{\"conversations\": [}\n]");
        let err = DatasetSource::load(broken.path(), None, 0, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
