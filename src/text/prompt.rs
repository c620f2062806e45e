//! Building the prompt's token ids (spec §8, traps 19 and 27).
//!
//! The official HF path formats the user text with the `plain` template, which amounts to
//! stripping surrounding whitespace; the text is split at the literal `<image>`, each piece
//! is encoded without special tokens, the image placeholder is expanded to one id per
//! vision embedding, and BOS is prepended once. No role tokens reach the model.
//!
//! Text-only prompts (no image and no `<image>` in the text) are allowed and give
//! `BOS + text`, as vLLM does; HF `infer` would crash on them.

use crate::error::{Error, Result};
use crate::model::config::TokenIds;
use crate::text::tokenizer::Tokenizer;

/// The literal placeholder for the image in prompt text.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// Token ids of a prompt and which positions receive vision embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptIds {
    /// BOS, text ids and `n_image_tokens` copies of the image id.
    pub ids: Vec<u32>,
    /// `true` at the image-token positions (same length as `ids`).
    pub image_mask: Vec<bool>,
}

impl PromptIds {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ids (never true for a built prompt: BOS is always there).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Builds the ids of `prompt_text` for one image of `n_image_tokens` vision embeddings
/// (0 = no image). `max_len` is the most positions the job may occupy (the position limit,
/// or the reserved KV cache): the prompt must leave room for at least one new token;
/// generation is then bounded by what is left.
///
/// Errors: empty prompt; an image but no `<image>` in the text, or more than one;
/// `<image>` in the text but no image; prompt too long for `max_len`.
pub fn build_prompt(
    tokenizer: &Tokenizer,
    prompt_text: &str,
    n_image_tokens: usize,
    tokens: &TokenIds,
    max_len: usize,
) -> Result<PromptIds> {
    let text = prompt_text.trim();
    if text.is_empty() {
        return Err(Error::request(
            "the prompt is empty",
            "give a prompt such as \"<image>\\nFree OCR.\"",
        ));
    }
    let pieces: Vec<&str> = text.split(IMAGE_PLACEHOLDER).collect();
    let n_placeholders = pieces.len() - 1;
    match (n_image_tokens > 0, n_placeholders) {
        (true, 0) => {
            return Err(Error::request(
                "an image was given but the prompt has no `<image>` placeholder",
                "start the prompt with \"<image>\\n\", e.g. \"<image>\\nFree OCR.\"",
            ))
        }
        (true, n) if n > 1 => {
            return Err(Error::request(
                format!("the prompt has {n} `<image>` placeholders for one image"),
                "use exactly one `<image>` per image",
            ))
        }
        (false, n) if n > 0 => {
            return Err(Error::request(
                "the prompt has an `<image>` placeholder but no image was given",
                "pass an image, or remove `<image>` from the prompt for a text-only request",
            ))
        }
        _ => {}
    }
    let mut ids = vec![tokens.bos];
    let mut image_mask = vec![false];
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            ids.extend(std::iter::repeat_n(tokens.image, n_image_tokens));
            image_mask.extend(std::iter::repeat_n(true, n_image_tokens));
        }
        let piece_ids = tokenizer.encode_plain(piece)?;
        image_mask.extend(std::iter::repeat_n(false, piece_ids.len()));
        ids.extend(piece_ids);
    }
    if ids.len() >= max_len {
        return Err(Error::request(
            format!(
                "the prompt takes {} positions; the limit is {max_len}, which leaves no room to generate",
                ids.len()
            ),
            "use a smaller image mode or a shorter prompt, or allow more positions",
        ));
    }
    Ok(PromptIds { ids, image_mask })
}
