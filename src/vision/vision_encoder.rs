//! The one interface every model variant's vision side implements: mode rules,
//! preprocessing, token counts and the encoder itself. The engine, the memory plan, the
//! benchmark and the parity runner only talk to a `dyn VisionEncoder`, so a variant is added
//! by implementing this trait, not by branching in each of them.
//!
//! * DeepSeek-OCR: [`DeepEncoder`] (SAM + CLIP, 2-D token grid with newlines);
//! * DeepSeek-OCR 2: [`DeepEncoderV2`] (SAM + Qwen2 with learnable queries, flat blocks).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use image::RgbImage;

use crate::error::Result;
use crate::model::{ModelConfig, ModelVariant};
use crate::nn::precision::Precision;
use crate::nn::Taps;
use crate::vision::encoder::DeepEncoder;
use crate::vision::mode::Mode;
use crate::vision::ocr2::DeepEncoderV2;
use crate::vision::preprocess::Preprocessed;

/// The views one page becomes, known before any pixel is touched (for the memory plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewPlan {
    /// The resolved mode.
    pub mode: Mode,
    /// `(width_tiles, height_tiles)`; `(1, 1)` when not tiled.
    pub grid: (usize, usize),
    /// Number of tiles (0 when not tiled).
    pub tiles: usize,
    /// Side of the global (or only) view.
    pub global_side: usize,
    /// Side of a tile.
    pub tile_side: usize,
    /// Image-token positions in the prompt.
    pub image_tokens: usize,
}

/// The variant rules that need no weights: mode mapping, views, token counts.
pub mod rules {
    use super::*;

    /// Maps a requested mode onto the variant (OCR 2: `gundam` → 768 tiles, at most 6;
    /// sizes without a query table are refused). Version 1 takes every mode as given.
    pub fn resolve_mode(variant: ModelVariant, mode: Mode) -> Result<Mode> {
        match variant {
            ModelVariant::DeepSeekOcr => Ok(mode),
            ModelVariant::DeepSeekOcr2 => crate::vision::ocr2::preprocess::resolve_mode(mode),
        }
    }

    /// The views of a `w × h` page in `mode` (resolved first).
    pub fn view_plan(variant: ModelVariant, mode: Mode, w: u32, h: u32) -> Result<ViewPlan> {
        let mode = resolve_mode(variant, mode)?;
        Ok(match variant {
            ModelVariant::DeepSeekOcr => {
                use crate::vision::preprocess as v1;
                let grid = v1::tile_grid(mode, w, h);
                let tiles = if grid.0 * grid.1 > 1 { grid.0 * grid.1 } else { 0 };
                ViewPlan {
                    mode,
                    grid,
                    tiles,
                    global_side: if mode.crop { mode.base_size } else { mode.image_size },
                    tile_side: mode.image_size,
                    image_tokens: v1::num_image_tokens(mode, grid),
                }
            }
            ModelVariant::DeepSeekOcr2 => {
                use crate::vision::ocr2::preprocess as v2;
                let grid = v2::tile_grid(mode, w, h);
                ViewPlan {
                    mode,
                    grid,
                    tiles: v2::tile_count(grid),
                    global_side: v2::global_side(mode),
                    tile_side: v2::TILE_SIZE,
                    image_tokens: v2::num_image_tokens(mode, grid),
                }
            }
        })
    }

    /// Cuts a page into the views of `mode` (resolved first).
    pub fn preprocess(variant: ModelVariant, image: &RgbImage, mode: Mode) -> Result<Preprocessed> {
        let mode = resolve_mode(variant, mode)?;
        Ok(match variant {
            ModelVariant::DeepSeekOcr => crate::vision::preprocess::preprocess(image, mode),
            ModelVariant::DeepSeekOcr2 => crate::vision::ocr2::preprocess::preprocess(image, mode),
        })
    }
}

/// A model variant's vision side.
pub trait VisionEncoder: Send + Sync + std::fmt::Debug {
    /// The model variant.
    fn variant(&self) -> ModelVariant;

    /// The image embedding sequence `(n_image_tokens, D)` of one image from its normalised
    /// `(1, 3, S, S)` global view and its `(k, 3, T, T)` tiles (row-major, `grid` =
    /// `(w_tiles, h_tiles)`), recording the stage tensors in `taps`.
    fn encode(&self, global: &Tensor, tiles: Option<&Tensor>, grid: (usize, usize), taps: &mut Taps) -> Result<Tensor>;

    /// See [`rules::resolve_mode`].
    fn resolve_mode(&self, mode: Mode) -> Result<Mode> {
        rules::resolve_mode(self.variant(), mode)
    }

    /// See [`rules::view_plan`].
    fn view_plan(&self, mode: Mode, w: u32, h: u32) -> Result<ViewPlan> {
        rules::view_plan(self.variant(), mode, w, h)
    }

    /// See [`rules::preprocess`].
    fn preprocess(&self, image: &RgbImage, mode: Mode) -> Result<Preprocessed> {
        rules::preprocess(self.variant(), image, mode)
    }
}

impl VisionEncoder for DeepEncoder {
    fn variant(&self) -> ModelVariant {
        ModelVariant::DeepSeekOcr
    }
    fn encode(&self, global: &Tensor, tiles: Option<&Tensor>, grid: (usize, usize), taps: &mut Taps) -> Result<Tensor> {
        DeepEncoder::encode(self, global, tiles, grid, taps)
    }
}

impl VisionEncoder for DeepEncoderV2 {
    fn variant(&self) -> ModelVariant {
        ModelVariant::DeepSeekOcr2
    }
    fn encode(&self, global: &Tensor, tiles: Option<&Tensor>, grid: (usize, usize), taps: &mut Taps) -> Result<Tensor> {
        DeepEncoderV2::encode(self, global, tiles, grid, taps)
    }
}

/// Loads the vision encoder of `cfg`'s variant with its linear layers in `precision`.
pub fn load_encoder(vb: VarBuilder, cfg: &ModelConfig, precision: Precision) -> Result<Box<dyn VisionEncoder>> {
    Ok(match cfg.variant() {
        ModelVariant::DeepSeekOcr => Box::new(DeepEncoder::load_with(vb, cfg, precision)?),
        ModelVariant::DeepSeekOcr2 => Box::new(DeepEncoderV2::load_with(vb, cfg, precision)?),
    })
}
