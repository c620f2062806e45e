//! Incremental detokenisation that never splits a UTF-8 character.
//!
//! Byte-level BPE tokens can end in the middle of a multi-byte character; decoding such a
//! prefix yields U+FFFD. The stream holds text back until the decoded tail ends cleanly and
//! emits only new text. Only a short window of ids is re-decoded per token, so the cost
//! does not grow with the length of the output. Special tokens are kept (spec §9.3).

use crate::error::Result;
use crate::text::Tokenizer;

/// Turns generated ids into text deltas.
#[derive(Debug)]
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// Start of the ids that are re-decoded for context.
    prefix_start: usize,
    /// Ids before this index have been emitted as text.
    emitted_until: usize,
}

impl<'a> TextStream<'a> {
    /// An empty stream over `tokenizer`.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prefix_start: 0,
            emitted_until: 0,
        }
    }

    /// Adds `id`; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self
            .tokenizer
            .decode(&self.ids[self.prefix_start..self.emitted_until])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix_start..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(delta) = now.get(before.len()..).filter(|_| now.starts_with(&before)) {
                let delta = delta.to_string();
                self.prefix_start = self.emitted_until;
                self.emitted_until = self.ids.len();
                return Ok(Some(delta));
            }
        }
        Ok(None)
    }

    /// Text still held back (an incomplete character at the end), emitted as is.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.emitted_until == self.ids.len() {
            return Ok(None);
        }
        let before = self
            .tokenizer
            .decode(&self.ids[self.prefix_start..self.emitted_until])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix_start..])?;
        self.prefix_start = self.emitted_until;
        self.emitted_until = self.ids.len();
        let delta = now
            .get(before.len()..)
            .filter(|_| now.starts_with(&before))
            .unwrap_or(&now);
        Ok((!delta.is_empty()).then(|| delta.to_string()))
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
