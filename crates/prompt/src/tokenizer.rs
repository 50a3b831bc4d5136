//! A local Hugging Face tokenizer (`tokenizer.json`), loaded offline: it makes prompt lengths exact and
//! cross-checks the token counts servers report.

use std::path::{Path, PathBuf};

use infer_doctor_core::TokenCounter;

use crate::PromptError;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl Tokenizer {
    /// Loads `tokenizer.json`, or the one inside a model directory (as downloaded from a model hub).
    pub fn load(path: &Path) -> Result<Tokenizer, PromptError> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let err = |reason: String| PromptError::Tokenizer {
            path: file.clone(),
            reason,
        };
        if !file.is_file() {
            return Err(err(if path.is_dir() {
                "this directory has no tokenizer.json (pass the model directory or the file itself)"
                    .into()
            } else {
                "no such file (pass a tokenizer.json or a model directory holding one)".into()
            }));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| err(format!("not a Hugging Face tokenizer.json: {e}")))?;
        // Truncation or padding configured in the file would hide a prompt's true length.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        Ok(Tokenizer { inner, path: file })
    }

    /// Token ids of `text` alone: servers count BOS and chat-template tokens on top, so none are added here.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }

    /// Entries of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The file it was loaded from, to say in reports which tokenizer counted.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }
}

impl TokenCounter for Tokenizer {
    fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/tokenizers")
            .join(name)
    }

    #[test]
    fn loads_a_directory_or_the_file_and_round_trips_text() {
        let dir = Tokenizer::load(&fixture("tiny-bpe")).unwrap();
        let file = Tokenizer::load(&fixture("tiny-bpe/tokenizer.json")).unwrap();
        assert_eq!(dir.name(), file.name());
        assert!(dir.name().ends_with("tokenizer.json"));
        assert_eq!(dir.vocab_size(), 1200);
        let text = "The river 12345 and the history of art.";
        let ids = dir.encode(text);
        assert_eq!(ids, file.encode(text));
        assert!(ids.len() > 5 && ids.len() < text.len());
        assert_eq!(dir.decode(&ids), text);
        assert_eq!(dir.count(text), ids.len());
        let special = dir.encode("<|im_start|>the");
        assert_eq!(special.len(), 2, "special tokens in text are recognised");
        assert_eq!(dir.decode(&special), "the", "and skipped when decoding");
    }

    #[test]
    fn adds_no_special_tokens_even_when_the_file_has_a_post_processor() {
        // The BERT-style file wraps every encoding in [CLS] … [SEP] unless told not to.
        let bert = Tokenizer::load(&fixture("all-minilm-l6-v2")).unwrap();
        assert_eq!(bert.encode("hello world").len(), 2);
        assert_eq!(bert.decode(&bert.encode("hello world")), "hello world");
    }

    #[test]
    fn unusable_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("tokenizer.json");
        for (content, why) in [
            (
                "{\"not\": \"a tokenizer\"}",
                "not a Hugging Face tokenizer.json",
            ),
            (
                "{\"version\": \"1.0\", \"model\": {",
                "not a Hugging Face tokenizer.json",
            ),
            ("", "not a Hugging Face tokenizer.json"),
        ] {
            std::fs::write(&broken, content).unwrap();
            for path in [dir.path(), broken.as_path()] {
                let err = Tokenizer::load(path).err().unwrap().to_string();
                assert!(
                    err.starts_with(&format!("tokenizer {}: ", broken.display())),
                    "{err}"
                );
                assert!(err.contains(why), "{err}");
            }
        }
        std::fs::remove_file(&broken).unwrap();
        let err = Tokenizer::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("has no tokenizer.json"), "{err}");
        let err = Tokenizer::load(&dir.path().join("nope.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nope.json: no such file"), "{err}");
    }
}
