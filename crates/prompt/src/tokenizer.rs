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
    /// Loads `tokenizer.json`, or the one inside a model directory.
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
            return Err(err(
                "no such file (pass a tokenizer.json or a directory holding one)".into(),
            ));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| err(format!("does not parse: {e}")))?;
        // Model-side truncation and padding would hide the true length of a prompt.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        Ok(Tokenizer { inner, path: file })
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
    }
}

impl TokenCounter for Tokenizer {
    fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }
}
