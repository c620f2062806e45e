//! The linear projector (spec §6.4): `[CLIP tokens without CLS | SAM tokens]` → LM width.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::config::ProjectorConfig;
use crate::nn::precision::Precision;
use crate::nn::Linear;

/// `model.projector.layers`, a single linear layer with bias.
#[derive(Debug)]
pub struct Projector {
    layers: Linear,
}

impl Projector {
    /// Loads from `vb` (= `model.projector`), computed in `precision`.
    pub fn load(vb: VarBuilder, cfg: &ProjectorConfig, precision: Precision) -> Result<Self> {
        Ok(Self {
            layers: Linear::load_with(vb.pp("layers"), cfg.input_dim, cfg.n_embed, true, precision)?,
        })
    }

    /// CLIP output `(B, 1 + n², W)` and SAM features `(B, C3, n, n)` → `(B, n², D)`.
    ///
    /// The CLS token is dropped and CLIP features come first, SAM second.
    pub fn forward(&self, clip: &Tensor, sam: &Tensor) -> Result<Tensor> {
        let t = clip.dim(1)?;
        let clip = clip.narrow(1, 1, t.saturating_sub(1))?;
        let sam = sam.flatten_from(2)?.transpose(1, 2)?;
        self.layers.forward(&Tensor::cat(&[&clip, &sam], 2)?)
    }
}
