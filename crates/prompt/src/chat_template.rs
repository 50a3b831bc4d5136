//! A model's own chat template (the Jinja in its `tokenizer_config.json`) rendered locally as Hugging Face's
//! `apply_chat_template` renders it, so a conversation can be sent as plain text and compared with the server's chat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infer_doctor_core::workload::ChatMessage;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, context};
use serde_json::Value;

use crate::PromptError;

/// The template and the special tokens it may name (`bos_token`, `eos_token`, …), as one model ships them.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    /// The file the template came from.
    pub path: PathBuf,
    specials: BTreeMap<String, String>,
}

/// A special token as `tokenizer_config.json` writes it: a string, or an object with its `content`.
fn token_text(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["content"].as_str())
        .map(str::to_string)
}

impl ChatTemplate {
    /// Reads the template from a tokenizer directory, its `tokenizer.json` (the config beside it) or a
    /// `tokenizer_config.json`; a `chat_template.jinja` beside the config (newer Hugging Face models) wins.
    pub fn load(path: &Path) -> Result<ChatTemplate, PromptError> {
        let config = if path.is_dir() {
            path.join("tokenizer_config.json")
        } else if path
            .file_name()
            .is_some_and(|n| n == "tokenizer_config.json")
        {
            path.to_path_buf()
        } else {
            path.with_file_name("tokenizer_config.json")
        };
        let bad = |path: &Path, reason: String| PromptError::Template {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&config).map_err(|e| bad(&config, e.to_string()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            bad(
                &config,
                format!("line {}, column {}: {e}", e.line(), e.column()),
            )
        })?;
        let specials = [
            "bos_token",
            "eos_token",
            "unk_token",
            "pad_token",
            "sep_token",
            "cls_token",
            "mask_token",
        ]
        .into_iter()
        .filter_map(|name| Some((name.to_string(), token_text(&json[name])?)))
        .collect();
        let jinja = config.with_file_name("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|e| bad(&jinja, e.to_string()))?;
            return Ok(ChatTemplate {
                source,
                path: jinja,
                specials,
            });
        }
        let source = match &json["chat_template"] {
            Value::String(s) => s.clone(),
            // Several named templates: the one called "default" is what chat uses.
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .ok_or_else(|| {
                    bad(
                        &config,
                        "field `chat_template`: a list without a template named \"default\"".into(),
                    )
                })?
                .to_string(),
            Value::Null => {
                return Err(bad(
                    &config,
                    "no field `chat_template` (and no chat_template.jinja beside it)".into(),
                ));
            }
            _ => {
                return Err(bad(
                    &config,
                    "field `chat_template`: neither a string nor a list of named templates".into(),
                ));
            }
        };
        Ok(ChatTemplate {
            source,
            path: config,
            specials,
        })
    }

    /// A special token's text, e.g. `eos_token`.
    pub fn special(&self, name: &str) -> Option<&str> {
        self.specials.get(name).map(String::as_str)
    }

    /// Whether the template opens the assistant's turn for `messages` when asked to. A template that never reads
    /// `add_generation_prompt` opens it by itself (Mistral's and Llama 2's `[/INST]` ends every user turn), so
    /// only one that reads the flag and renders the same either way leaves the turn unopened.
    pub fn opens_assistant_turn(&self, messages: &[ChatMessage]) -> Result<bool, PromptError> {
        if !self.source.contains("add_generation_prompt") {
            return Ok(true);
        }
        Ok(self.render(messages, true)? != self.render(messages, false)?)
    }

    /// The prompt text for `messages`, with the assistant's opening when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, PromptError> {
        // Hugging Face renders with trim_blocks and lstrip_blocks, `raise_exception` and Python's string methods.
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        // Hugging Face's `strftime_now`: Llama 3.1 and 3.2 write today's date into the system turn with it.
        env.add_function("strftime_now", |format: String| -> String {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            strftime_utc(now, &format)
        });
        let messages: Vec<BTreeMap<String, String>> = messages
            .iter()
            .map(|m| {
                BTreeMap::from([
                    ("role".to_string(), m.role.clone()),
                    ("content".to_string(), m.content.clone()),
                ])
            })
            .collect();
        let specials = minijinja::Value::from(self.specials.clone());
        env.render_str(
            &self.source,
            context! { messages, add_generation_prompt, ..specials },
        )
        .map_err(|e| PromptError::Template {
            path: self.path.clone(),
            reason: match e.line() {
                Some(line) => format!("template line {line}: {e}"),
                None => e.to_string(),
            },
        })
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `format` (C's strftime specifiers, as Python's `datetime.strftime` takes them) of the UTC time `unix` seconds
/// after the epoch; an unknown specifier is written as it stands, as glibc does.
fn strftime_utc(unix: u64, format: &str) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Days since 1970-01-01 to a civil date: eras of 400 years (146,097 days) starting on 1 March.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out += &format!("{day:02}"),
            Some('e') => out += &format!("{day:2}"),
            Some('m') => out += &format!("{month:02}"),
            Some('b' | 'h') => out += &month_name[..3],
            Some('B') => out += month_name,
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &format!("{:02}", year % 100),
            Some('H') => out += &format!("{:02}", secs / 3_600),
            Some('M') => out += &format!("{:02}", secs / 60 % 60),
            Some('S') => out += &format!("{:02}", secs % 60),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        [("user", "hi"), ("assistant", "hello"), ("user", "bye")]
            .map(|(role, content)| ChatMessage {
                role: role.into(),
                content: content.into(),
            })
            .to_vec()
    }

    fn write(dir: &Path, config: &Value) {
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    }

    #[test]
    fn chatml_renders_as_hugging_face_does_with_and_without_the_generation_prompt() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &serde_json::json!({
                "eos_token": "<|endoftext|>",
                "chat_template": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            }),
        );
        let template = ChatTemplate::load(dir.path()).unwrap();
        assert_eq!(template.special("eos_token"), Some("<|endoftext|>"));
        assert_eq!(
            template.render(&conversation(), true).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(
            !template
                .render(&conversation(), false)
                .unwrap()
                .ends_with("assistant\n")
        );
    }

    #[test]
    fn llama_style_templates_use_bos_raise_exception_python_methods_and_block_trimming() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &serde_json::json!({
                "bos_token": {"content": "<s>", "lstrip": false},
                "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}{% for message in messages %}\n    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n    {% endif %}\n    {% if message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}{% else %}{{ message['content'] | tojson }}{% endif %}\n{% endfor %}"}],
            }),
        );
        let template = ChatTemplate::load(&dir.path().join("tokenizer.json")).unwrap();
        assert_eq!(
            template.render(&conversation(), true).unwrap(),
            "<s>[INST] hi [/INST]\"hello\"[INST] bye [/INST]"
        );
        let mut odd = conversation();
        odd.swap(0, 1);
        let err = template.render(&odd, true).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("must alternate"),
            "{err}"
        );
    }

    #[test]
    fn a_config_without_a_template_or_with_bad_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &serde_json::json!({"eos_token": "</s>"}));
        let err = ChatTemplate::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no field `chat_template`"), "{err}");
        std::fs::write(dir.path().join("tokenizer_config.json"), "{\n  \"a\": }").unwrap();
        let err = ChatTemplate::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    /// mistralai/Mistral-7B-Instruct-v0.1's `chat_template` from its tokenizer_config.json (v0.2 ships the same).
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
    /// meta-llama/Llama-2-13b-chat-hf's `chat_template` from its tokenizer_config.json.
    const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    fn template_of(source: &str) -> (tempfile::TempDir, ChatTemplate) {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &serde_json::json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": source}),
        );
        let template = ChatTemplate::load(dir.path()).unwrap();
        (dir, template)
    }

    #[test]
    fn inst_templates_open_the_answer_without_reading_add_generation_prompt() {
        for (name, source, rendered) in [
            (
                "mistral",
                MISTRAL,
                "<s>[INST] hi [/INST]hello</s>[INST] bye [/INST]",
            ),
            (
                "llama-2",
                LLAMA2,
                "<s>[INST] hi [/INST] hello </s><s>[INST] bye [/INST]",
            ),
        ] {
            let (_dir, template) = template_of(source);
            assert_eq!(
                template.render(&conversation(), true).unwrap(),
                rendered,
                "{name}"
            );
            assert_eq!(
                template.render(&conversation(), false).unwrap(),
                rendered,
                "{name}: the flag changes nothing"
            );
            assert!(
                template.opens_assistant_turn(&conversation()).unwrap(),
                "{name}"
            );
        }
        // A ChatML template that reads the flag but opens no turn with it does leave the model mid-message.
        let (_dir, broken) = template_of(
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}{% endif %}",
        );
        assert!(!broken.opens_assistant_turn(&conversation()).unwrap());
        let (_dir, chatml) = template_of(
            "{% for message in messages %}{{ message['content'] }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        );
        assert!(chatml.opens_assistant_turn(&conversation()).unwrap());
    }

    #[test]
    fn strftime_now_writes_the_utc_date_as_llama_3_templates_ask() {
        assert_eq!(strftime_utc(0, "%d %b %Y"), "01 Jan 1970");
        assert_eq!(strftime_utc(1_700_000_000, "%d %b %Y"), "14 Nov 2023");
        assert_eq!(
            strftime_utc(1_700_000_000, "%Y-%m-%d %H:%M:%S"),
            "2023-11-14 22:13:20"
        );
        // A leap day, and the last day of a century year that is not a leap year's February.
        assert_eq!(strftime_utc(951_782_400, "%d %B %Y"), "29 February 2000");
        assert_eq!(strftime_utc(4_107_456_000, "%Y-%m-%d"), "2100-02-28");
        assert_eq!(strftime_utc(4_107_542_400, "%Y-%m-%d"), "2100-03-01");
        assert_eq!(strftime_utc(0, "100%% %q"), "100% %q");
        // Llama 3.1's own use: `{%- set date_string = strftime_now("%d %b %Y") %}`.
        let (_dir, template) = template_of(
            "{%- if not date_string is defined %}{%- set date_string = strftime_now(\"%d %b %Y\") %}{%- endif %}Today Date: {{ date_string }}",
        );
        let text = template.render(&conversation(), true).unwrap();
        let date = text.strip_prefix("Today Date: ").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            [
                strftime_utc(now, "%d %b %Y"),
                strftime_utc(now - 60, "%d %b %Y")
            ]
            .contains(&date.to_string()),
            "{text}"
        );
    }
}
