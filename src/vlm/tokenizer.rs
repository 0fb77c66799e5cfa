//! The model's tokenizer (`tokenizer.json`, Hugging Face `tokenizers`) and the special tokens the
//! video prompt needs.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::ModelFiles;

/// The image placeholder tokens of InternVL's prompt.
pub const IMG_START: &str = "<img>";
pub const IMG_END: &str = "</img>";
pub const IMG_CONTEXT: &str = "<IMG_CONTEXT>";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, or the vocabulary of a GGUF decoder file `dir`; a host then
    /// checks its own tokens ([`Self::require`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if super::gguf_model::is_gguf(dir) {
            let json = super::gguf_model::tokenizer_json(dir)?;
            let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
                .map_err(|e| Error::config(format!("the vocabulary of {}: {e}", dir.display())))?;
            return Ok(Tokenizer { inner });
        }
        Self::from_files(&crate::weights::ModelDir(dir.to_path_buf()))
    }

    /// Loads the model's `tokenizer.json` from its files.
    pub fn from_files(files: &dyn ModelFiles) -> Result<Self> {
        let Some(json) = files.read("tokenizer.json")? else {
            return Err(Error::input(format!(
                "model directory {} has no tokenizer.json; copy it from the checkpoint",
                files.describe()
            )));
        };
        let inner = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| {
            Error::config(format!(
                "{}/tokenizer.json is not a tokenizer this crate can read: {e}",
                files.describe()
            ))
        })?;
        Ok(Tokenizer { inner })
    }

    /// Errors naming the `tokens` this tokenizer lacks; `hint` says what that means.
    pub fn require(&self, tokens: &[&str], hint: &str) -> Result<()> {
        let missing: Vec<&str> = tokens
            .iter()
            .copied()
            .filter(|t| self.inner.token_to_id(t).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!(
            "tokenizer.json lacks the token(s) {}; {hint}",
            missing.join(", ")
        )))
    }

    /// InternVL's image tokens must be there.
    pub fn require_internvl(&self) -> Result<()> {
        self.require(
            &[IMG_START, IMG_END, IMG_CONTEXT],
            "it is not an InternVL chat tokenizer (add them as special tokens, as InternVL's training does)",
        )
    }

    /// Token ids of `text` (no BOS/EOS added; special tokens in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::input(format!("cannot tokenize the prompt: {e}")))
    }

    /// Token ids of a whole prompt: as `encode`, plus whatever the tokenizer adds around a
    /// sequence (InternLM2's and LLaMA's BOS; Qwen2 adds nothing), as `tokenizer(query)` does
    /// in InternVL's `chat()`.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::input(format!("cannot tokenize the prompt: {e}")))
    }

    /// Text of `ids` with special tokens shown (for checking prompts).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::input(format!("cannot decode token ids: {e}")))
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::input(format!("cannot decode token ids: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}
