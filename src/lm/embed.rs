//! Placing the vision embeddings into the prompt's `<image>` positions (spec §7.6).

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::lm::DeepseekV2;
use crate::text::PromptIds;

/// The decoder input `(L, D)` of a prompt: token embeddings, with the vision embeddings
/// `(N, D)` (the local block, global block and separator, in that order) at the image
/// positions. `None` is only valid for a prompt without image positions.
pub fn prompt_embeddings(model: &DeepseekV2, prompt: &PromptIds, image_embeds: Option<&Tensor>) -> Result<Tensor> {
    let ids = Tensor::new(prompt.ids.as_slice(), model.device())?;
    let text = model.embed(&ids)?;
    match image_embeds {
        Some(img) => merge_image_embeddings(&text, &prompt.image_mask, img),
        None if prompt.image_mask.iter().any(|&m| m) => Err(Error::request(
            "the prompt has image positions but no image embeddings were given",
            "run the vision encoder first, or build a text-only prompt",
        )),
        None => Ok(text),
    }
}

/// Returns `text_embeds` `(L, D)` with the rows where `image_mask` is true replaced, in
/// order, by the rows of `image_embeds` `(N, D)`. The number of true entries must be `N`.
pub fn merge_image_embeddings(text_embeds: &Tensor, image_mask: &[bool], image_embeds: &Tensor) -> Result<Tensor> {
    let (len, dim) = text_embeds.dims2()?;
    let (n_img, img_dim) = image_embeds.dims2()?;
    let n_mask = image_mask.iter().filter(|&&m| m).count();
    if image_mask.len() != len || n_mask != n_img || img_dim != dim {
        return Err(Error::request(
            format!(
                "cannot place {n_img} image embeddings of width {img_dim} into a prompt of {len} positions \
                 (width {dim}) with {n_mask} image positions (mask length {})",
                image_mask.len()
            ),
            "the number of <image> tokens in the prompt must equal the vision sequence length",
        ));
    }
    if n_img == 0 {
        return Ok(text_embeds.clone());
    }
    // Stack [text; image] and gather each position from the right half.
    let image_embeds = image_embeds
        .to_device(text_embeds.device())?
        .to_dtype(text_embeds.dtype())?;
    let both = Tensor::cat(&[text_embeds, &image_embeds], 0)?;
    let mut next_image = len as u32;
    let index: Vec<u32> = image_mask
        .iter()
        .enumerate()
        .map(|(i, &is_image)| {
            if is_image {
                next_image += 1;
                next_image - 1
            } else {
                i as u32
            }
        })
        .collect();
    let index = Tensor::from_vec(index, len, text_embeds.device())?;
    Ok(both.index_select(&index, 0)?)
}
