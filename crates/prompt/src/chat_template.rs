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
}
