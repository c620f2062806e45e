//! The text tokenizer: a thin wrapper over the `tokenizers` crate with the calls the
//! pipeline needs (spec §8). Text pieces are encoded without special tokens (the prompt
//! builder adds BOS itself) and output is decoded with special tokens kept.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The tokenizer of a model folder (`tokenizer.json`).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model folder.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::model(
                path,
                "tokenizer.json is missing",
                "put the tokenizer.json of deepseek-ai/DeepSeek-OCR into the model folder",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            Error::model(
                path,
                format!("tokenizer.json cannot be loaded: {e}"),
                "re-download tokenizer.json (it is corrupt or from an incompatible tokenizers version)",
            )
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Ids of `text` without special tokens added (no BOS/EOS). Special-token strings that
    /// appear literally in `text` (e.g. `<|grounding|>`) still map to their ids.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| self.failure("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` with special tokens kept; ids without a token are skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.failure("decode", e))
    }

    /// The final text of generated `ids` as HF `infer` returns it: decoded with special
    /// tokens kept, the EOS string removed from the end, surrounding whitespace stripped.
    pub fn decode_output(&self, ids: &[u32], eos: u32) -> Result<String> {
        let text = self.decode(ids)?;
        let eos_text = self.id_to_token(eos).unwrap_or_default();
        let text = match text.strip_suffix(eos_text.as_str()) {
            Some(t) if !eos_text.is_empty() => t,
            _ => text.as_str(),
        };
        Ok(text.trim().to_string())
    }

    /// The id of a token string (added tokens included), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id, if it has one.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `<image>`, checked against the id the model config expects.
    pub fn image_token_id(&self, expected: u32) -> Result<u32> {
        match self.token_to_id(crate::text::prompt::IMAGE_PLACEHOLDER) {
            Some(id) if id == expected => Ok(id),
            Some(id) => Err(Error::model(
                &self.path,
                format!("`<image>` has id {id} in the tokenizer but the model config expects {expected}"),
                "use the tokenizer.json that belongs to this checkpoint",
            )),
            None => Err(Error::model(
                &self.path,
                "the tokenizer has no `<image>` token",
                "use the tokenizer.json of DeepSeek-OCR",
            )),
        }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn failure(&self, what: &str, e: tokenizers::Error) -> Error {
        Error::model(
            &self.path,
            format!("tokenizer failed to {what}: {e}"),
            "check that tokenizer.json belongs to this model",
        )
    }
}
