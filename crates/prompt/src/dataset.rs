//! Prompts from files people already have: JSONL (one `{"prompt": ...}` or `{"messages": [...]}` per line) and
//! ShareGPT conversations. Bad input names the file and line; a run longer than the file cycles through it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use infer_doctor_core::workload::ChatMessage;
use infer_doctor_core::{PromptItem, PromptSource};
use serde::de::{SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::dist::LengthDist;
use crate::tokenizer::Tokenizer;
use crate::{PromptError, WorkloadInfo, item_rng};

/// Output length when neither the entry nor the caller gives one.
const DEFAULT_OUTPUT_TOKENS: u32 = 128;

/// Field names other benchmark tools use for an entry's output length.
const OUTPUT_FIELDS: [&str; 3] = ["max_tokens", "output_tokens", "output_len"];

/// Roles that answer a user in ShareGPT dumps (exports from several chat products use their own names).
const REPLY_ROLES: [&str; 5] = ["gpt", "assistant", "chatgpt", "bing", "bard"];

enum Output {
    Tokens(u32),
    /// A ShareGPT reply, counted with the tokenizer only when its prompt is used: counting every reply of a
    /// large dump up front would delay the run by minutes.
    Reply(String),
    Unset,
}

struct Entry {
    text: String,
    messages: Option<Vec<ChatMessage>>,
    output: Output,
}

pub struct DatasetSource {
    entries: Vec<Entry>,
    output: Option<LengthDist>,
    seed: u64,
    tokenizer: Option<Arc<Tokenizer>>,
    info: WorkloadInfo,
}

/// The usual estimate of tokens per English word, for when there is no tokenizer.
fn estimate_tokens(text: &str) -> u32 {
    let words = text.split_whitespace().count() as u64;
    ((words * 4 + 1) / 3).clamp(1, u64::from(u32::MAX)) as u32
}

/// serde_json appends "at line L column C", which the error already says in its own place.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSONL line; the error is (column if known, what is wrong).
fn jsonl_entry(line: &str) -> Result<Entry, (Option<usize>, String)> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        (
            Some(e.column()),
            format!("not valid JSON: {}", without_position(&e)),
        )
    })?;
    let Value::Object(object) = value else {
        return Err((
            None,
            format!("expected a JSON object, found {}", kind_of(&value)),
        ));
    };
    let output = output_field(&object).map_err(|reason| (None, reason))?;
    let (text, messages) = prompt_field(&object).map_err(|reason| (None, reason))?;
    Ok(Entry {
        text,
        messages,
        output,
    })
}

fn output_field(object: &Map<String, Value>) -> Result<Output, String> {
    let Some((name, value)) = OUTPUT_FIELDS
        .iter()
        .find_map(|name| Some((name, object.get(*name)?)))
    else {
        return Ok(Output::Unset);
    };
    match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n >= 1 => Ok(Output::Tokens(n)),
        _ => Err(format!(
            "\"{name}\" must be a whole number of tokens, at least 1; found {value}"
        )),
    }
}

fn prompt_field(object: &Map<String, Value>) -> Result<(String, Option<Vec<ChatMessage>>), String> {
    for name in ["prompt", "text"] {
        match object.get(name) {
            Some(Value::String(text)) if !text.trim().is_empty() => {
                return Ok((text.clone(), None));
            }
            Some(Value::String(_)) => return Err(format!("\"{name}\" is empty")),
            Some(other) => {
                return Err(format!(
                    "\"{name}\" must be a string, found {}",
                    kind_of(other)
                ));
            }
            None => {}
        }
    }
    let Some(messages) = object.get("messages") else {
        return Err("no \"prompt\", \"text\" or \"messages\" field".into());
    };
    let Some(list) = messages.as_array().filter(|l| !l.is_empty()) else {
        return Err("\"messages\" must be a non-empty array of {\"role\", \"content\"}".into());
    };
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |name: &str| match m.get(name) {
                Some(Value::String(text)) => Ok(text.clone()),
                Some(other) => Err(format!(
                    "messages[{i}].{name} must be a string, found {}",
                    kind_of(other)
                )),
                None => Err(format!("messages[{i}] has no \"{name}\"")),
            };
            Ok::<_, String>(ChatMessage {
                role: field("role")?,
                content: field("content")?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Ok((text, Some(messages)))
}

/// The first user turn and the reply right after it, which vLLM's and other benchmarks' ShareGPT readers use.
fn first_exchange(value: &Value) -> Option<(&str, &str)> {
    fn role(turn: &Value) -> Option<&str> {
        turn.get("from")
            .or_else(|| turn.get("role"))
            .and_then(Value::as_str)
    }
    fn says(turn: &Value) -> Option<&str> {
        turn.get("value")
            .or_else(|| turn.get("content"))
            .and_then(Value::as_str)
    }
    let turns = value
        .get("conversations")
        .or_else(|| value.get("conversation"))?
        .as_array()?;
    let ask = turns
        .iter()
        .position(|t| matches!(role(t), Some("human" | "user")))?;
    let reply = turns
        .get(ask + 1)
        .filter(|t| role(t).is_some_and(|r| REPLY_ROLES.contains(&r)))?;
    let prompt = says(&turns[ask]).filter(|p| !p.trim().is_empty())?;
    Some((prompt, says(reply)?))
}

/// Walks the top-level array one conversation at a time: a ShareGPT dump is hundreds of megabytes, and a
/// whole-file `Value` would take several times that in memory.
struct Conversations<'a> {
    keep_reply: bool,
    entries: &'a mut Vec<Entry>,
    seen: &'a mut usize,
}

impl<'de> Visitor<'de> for Conversations<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of ShareGPT conversations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            *self.seen += 1;
            if let Some((prompt, reply)) = first_exchange(&value) {
                let output = if self.keep_reply {
                    Output::Reply(reply.to_string())
                } else {
                    Output::Tokens(estimate_tokens(reply))
                };
                self.entries.push(Entry {
                    text: prompt.to_string(),
                    messages: None,
                    output,
                });
            }
        }
        Ok(())
    }
}

impl DatasetSource {
    /// Reads a JSONL or ShareGPT file (told apart by its first character). `output` replaces the lengths the
    /// file gives; `seed` makes those draws reproducible.
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
        let at = |line: usize, column: Option<usize>, reason: String| PromptError::Dataset {
            path: path.to_path_buf(),
            line,
            column,
            reason,
        };
        let raw = std::fs::read_to_string(path)
            .map_err(|e| file_error(format!("cannot read it: {e}")))?;
        // Editors on Windows start UTF-8 files with a byte-order mark, which JSON parsers refuse.
        let content = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
        let mut entries = Vec::new();
        let mut seen = 0;
        let kind = if content.trim_start().starts_with('[') {
            let mut de = serde_json::Deserializer::from_str(content);
            let conversations = Conversations {
                keep_reply: output.is_none() && tokenizer.is_some(),
                entries: &mut entries,
                seen: &mut seen,
            };
            serde::Deserializer::deserialize_seq(&mut de, conversations)
                .and_then(|()| de.end())
                .map_err(|e| {
                    at(
                        e.line(),
                        Some(e.column()),
                        format!("not valid ShareGPT JSON: {}", without_position(&e)),
                    )
                })?;
            "sharegpt"
        } else {
            for (i, line) in content.lines().enumerate() {
                if !line.trim().is_empty() {
                    seen += 1;
                    entries.push(
                        jsonl_entry(line).map_err(|(column, reason)| at(i + 1, column, reason))?,
                    );
                }
            }
            "jsonl"
        };
        let skipped = seen - entries.len();
        if entries.is_empty() {
            return Err(file_error(match kind {
                "sharegpt" => format!(
                    "no usable conversation among {seen}: each needs \"conversations\" with a human/user turn \
                     followed by a gpt/assistant reply"
                ),
                _ => "no prompts: the file is empty (expected one JSON object per line, or a ShareGPT array)"
                    .into(),
            }));
        }
        let info = Self::describe(kind, path, &entries, skipped, output, tokenizer.as_deref());
        Ok(DatasetSource {
            entries,
            output,
            seed,
            tokenizer,
            info,
        })
    }

    fn describe(
        kind: &'static str,
        path: &Path,
        entries: &[Entry],
        skipped: usize,
        output: Option<LengthDist>,
        tokenizer: Option<&Tokenizer>,
    ) -> WorkloadInfo {
        let mut notes = vec![format!(
            "dataset has {} entries; a run with more requests cycles through them",
            entries.len()
        )];
        if skipped > 0 {
            notes.push(format!(
                "{skipped} conversation(s) skipped: no human/user turn followed by a reply"
            ));
        }
        match output {
            Some(dist) => notes.push(format!(
                "output lengths drawn from {dist}; the file's own lengths are ignored"
            )),
            None => {
                let unset = entries
                    .iter()
                    .filter(|e| matches!(e.output, Output::Unset))
                    .count();
                if unset > 0 {
                    notes.push(format!(
                        "{unset} entries give no output length and request {DEFAULT_OUTPUT_TOKENS} tokens"
                    ));
                }
                if kind == "sharegpt" && tokenizer.is_none() {
                    notes.push(
                        "no tokenizer: output lengths are estimated as the reply's words × 4/3"
                            .into(),
                    );
                }
            }
        }
        match tokenizer {
            None => notes.push(
                "no tokenizer: input token counts are unknown; pass --tokenizer DIR for exact counts".into(),
            ),
            Some(_) if entries.iter().any(|e| e.messages.is_some()) => notes.push(
                "chat messages are counted as their text joined by newlines, without the chat template the \
                 server adds"
                    .into(),
            ),
            Some(_) => {}
        }
        WorkloadInfo {
            kind,
            source: Some(PathBuf::from(path)),
            entries: Some(entries.len()),
            skipped,
            tokenizer: tokenizer.map(Tokenizer::name),
            exact_input_lengths: tokenizer.is_some(),
            residual_mismatches: 0,
            notes,
        }
    }

    pub fn info(&self) -> WorkloadInfo {
        self.info.clone()
    }
}

impl PromptSource for DatasetSource {
    fn item(&self, index: u64) -> PromptItem {
        let entry = &self.entries[(index % self.entries.len() as u64) as usize];
        let max_tokens = match (&self.output, &entry.output) {
            (Some(dist), _) => dist.sample(&mut item_rng(self.seed, index)),
            (None, Output::Tokens(n)) => *n,
            (None, Output::Reply(reply)) => match &self.tokenizer {
                Some(tok) => (tok.encode(reply).len() as u32).max(1),
                None => estimate_tokens(reply),
            },
            (None, Output::Unset) => DEFAULT_OUTPUT_TOKENS,
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
    use crate::tokenizer::tests::fixture;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    fn load_err(content: &str) -> (String, tempfile::NamedTempFile) {
        let f = file(content);
        let err = DatasetSource::load(f.path(), None, 0, None)
            .err()
            .unwrap()
            .to_string();
        (err, f)
    }

    fn tiny() -> Arc<Tokenizer> {
        Arc::new(Tokenizer::load(&fixture("tiny-bpe")).unwrap())
    }

    #[test]
    fn jsonl_prompts_messages_and_lengths() {
        let f = file(concat!(
            "{\"prompt\": \"hello there\", \"max_tokens\": 7}\n",
            "\n",
            "   \n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"hi\"}]}\n",
            "{\"text\": \"the river\", \"output_len\": 3, \"id\": 9}\n",
            "{\"prompt\": \"x\", \"output_tokens\": 11}",
        ));
        let d = DatasetSource::load(f.path(), None, 0, None).unwrap();
        let first = d.item(0);
        assert_eq!((first.text.as_str(), first.max_tokens), ("hello there", 7));
        assert_eq!(first.input_tokens, None);
        let chat = d.item(1);
        assert_eq!(chat.text, "be brief\nhi");
        assert_eq!(chat.messages.as_ref().unwrap()[1].role, "user");
        assert_eq!(chat.max_tokens, DEFAULT_OUTPUT_TOKENS);
        assert_eq!(
            (d.item(2).text.as_str(), d.item(2).max_tokens),
            ("the river", 3)
        );
        assert_eq!(d.item(3).max_tokens, 11);
        assert_eq!(d.item(4), first, "a longer run cycles through the file");
        let info = d.info();
        assert_eq!(
            (info.kind, info.entries, info.skipped),
            ("jsonl", Some(4), 0)
        );
        assert!(
            info.notes.iter().any(|n| n.contains("4 entries; a run")),
            "{info:?}"
        );
        assert!(
            info.notes
                .iter()
                .any(|n| n.contains("1 entries give no output")),
            "{info:?}"
        );

        let drawn = DatasetSource::load(f.path(), Some("5-500".parse().unwrap()), 9, None).unwrap();
        let again = DatasetSource::load(f.path(), Some("5-500".parse().unwrap()), 9, None).unwrap();
        let lengths: Vec<u32> = (0..50).map(|i| drawn.item(i).max_tokens).collect();
        assert_eq!(
            lengths,
            (0..50)
                .map(|i| again.item(i).max_tokens)
                .collect::<Vec<_>>()
        );
        assert!(lengths.iter().all(|n| (5..=500).contains(n)));
        assert!(
            lengths.iter().any(|&n| n != lengths[0]),
            "drawn per request"
        );

        let counted = DatasetSource::load(f.path(), None, 0, Some(tiny())).unwrap();
        assert_eq!(
            counted.item(2).input_tokens,
            Some(tiny().encode("the river").len() as u32)
        );
        assert!(counted.info().exact_input_lengths);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        let (err, f) = load_err("{\"prompt\": \"ok\"}\n\n{not json\n{\"prompt\": \"ok\"}\n");
        assert!(
            err.starts_with(&format!(
                "dataset {}:3:2: not valid JSON",
                f.path().display()
            )),
            "{err}"
        );
        assert!(!err.contains("at line"), "the position is said once: {err}");
        for (line3, why) in [
            (
                "{\"other\": 1}",
                "no \"prompt\", \"text\" or \"messages\" field",
            ),
            ("[1, 2]", "expected a JSON object, found an array"),
            (
                "{\"prompt\": 5}",
                "\"prompt\" must be a string, found a number",
            ),
            ("{\"prompt\": \"  \"}", "\"prompt\" is empty"),
            (
                "{\"prompt\": \"a\", \"max_tokens\": 0}",
                "\"max_tokens\" must be a whole number",
            ),
            (
                "{\"prompt\": \"a\", \"output_len\": \"9\"}",
                "\"output_len\" must be a whole number",
            ),
            ("{\"messages\": []}", "non-empty array"),
            (
                "{\"messages\": [{\"role\": \"user\"}]}",
                "messages[0] has no \"content\"",
            ),
            (
                "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}",
                "messages[0].content must be a string, found an array",
            ),
        ] {
            let (err, f) = load_err(&format!(
                "{{\"prompt\": \"a\"}}\n{{\"text\": \"b\"}}\n{line3}\n"
            ));
            assert!(
                err.starts_with(&format!("dataset {}:3: ", f.path().display())),
                "{err}"
            );
            assert!(err.contains(why), "{line3}: {err}");
        }
    }

    #[test]
    fn sharegpt_takes_the_first_exchange_and_skips_the_rest() {
        let f = file(
            r#"[
  {"id": "a", "conversations": [{"from": "system", "value": "you help"},
                                {"from": "human", "value": "tell me"},
                                {"from": "gpt", "value": "one two three"},
                                {"from": "human", "value": "more"}, {"from": "gpt", "value": "no"}]},
  {"conversations": [{"from": "gpt", "value": "no question"}]},
  {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
  {"conversations": [{"from": "human", "value": "  "}, {"from": "gpt", "value": "x"}]},
  {"conversations": "not a list"},
  {"id": "x"},
  7,
  {"conversation": [{"role": "user", "content": "short"}, {"role": "assistant", "content": "ok sure"}]},
  {"conversations": [{"from": "human", "value": "why"}, {"from": "chatgpt", "value": ""}]}
]"#,
        );
        let d = DatasetSource::load(f.path(), None, 0, None).unwrap();
        assert_eq!(d.item(0).text, "tell me");
        assert_eq!(d.item(0).messages, None);
        assert_eq!(d.item(0).max_tokens, 4, "3 words × 4/3");
        assert_eq!(
            (d.item(1).text.as_str(), d.item(1).max_tokens),
            ("short", 3)
        );
        assert_eq!(d.item(2).max_tokens, 1, "at least 1");
        assert_eq!(d.item(3).text, "tell me");
        let info = d.info();
        assert_eq!(
            (info.kind, info.entries, info.skipped),
            ("sharegpt", Some(3), 6)
        );
        assert!(
            info.notes
                .iter()
                .any(|n| n.contains("6 conversation(s) skipped")),
            "{info:?}"
        );
        assert!(info.notes.iter().any(|n| n.contains("× 4/3")), "{info:?}");

        let tok = tiny();
        let counted = DatasetSource::load(f.path(), None, 0, Some(tok.clone())).unwrap();
        let item = counted.item(0);
        assert_eq!(item.max_tokens, tok.encode("one two three").len() as u32);
        assert_eq!(item.input_tokens, Some(tok.encode("tell me").len() as u32));
        let fixed =
            DatasetSource::load(f.path(), Some("9".parse().unwrap()), 0, Some(tok)).unwrap();
        assert!((0..3).all(|i| fixed.item(i).max_tokens == 9));
    }

    #[test]
    fn sharegpt_syntax_errors_give_line_and_column() {
        let (err, f) = load_err("[\n  {\"conversations\": []},\n  {\"conversations\": [}\n]");
        assert!(
            err.starts_with(&format!(
                "dataset {}:3:22: not valid ShareGPT JSON",
                f.path().display()
            )),
            "{err}"
        );
        let (err, _) = load_err("[{\"conversations\": []}] trailing");
        assert!(
            err.contains(":1:25: not valid ShareGPT JSON: trailing characters"),
            "{err}"
        );
        let (err, _) = load_err("[{\"conversations\": [{\"from\": \"human\"");
        assert!(err.contains("EOF"), "{err}");
    }

    #[test]
    fn files_without_prompts_are_errors_naming_the_file() {
        for (content, why) in [
            ("", "the file is empty"),
            ("\n  \n", "the file is empty"),
            ("[]", "no usable conversation among 0"),
            (
                "[{\"id\": 1}, {\"id\": 2}]",
                "no usable conversation among 2",
            ),
        ] {
            let (err, f) = load_err(content);
            assert!(
                err.starts_with(&format!("dataset {}: ", f.path().display())),
                "{err}"
            );
            assert!(err.contains(why), "{content:?}: {err}");
        }
        let missing = Path::new("/nonexistent/prompts.jsonl");
        let err = DatasetSource::load(missing, None, 0, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("dataset /nonexistent/prompts.jsonl: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_an_error() {
        let f = file("\u{feff}{\"prompt\": \"hi\"}\n");
        assert_eq!(
            DatasetSource::load(f.path(), None, 0, None)
                .unwrap()
                .item(0)
                .text,
            "hi"
        );
        let f = file(
            "\u{feff}[{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}]",
        );
        assert_eq!(
            DatasetSource::load(f.path(), None, 0, None)
                .unwrap()
                .info()
                .kind,
            "sharegpt"
        );
    }
}
