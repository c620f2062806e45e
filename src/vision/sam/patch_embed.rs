//! SAM patch embedding (spec §5.2): a `patch×patch` stride-`patch` convolution with bias,
//! returned channels-last `(B, G, G, E)` as the blocks expect.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

/// The patch-embedding convolution.
#[derive(Debug)]
pub struct PatchEmbed {
    proj: Conv2d,
}

impl PatchEmbed {
    /// Loads `proj` from `vb` (= `sam_model.patch_embed`).
    pub fn load(vb: VarBuilder, in_chans: usize, dim: usize, patch: usize) -> Result<Self> {
        let cfg = Conv2dConfig { stride: patch, ..Default::default() };
        Ok(Self { proj: candle_nn::conv2d(in_chans, dim, patch, cfg, vb.pp("proj"))? })
    }
}

impl Module for PatchEmbed {
    /// `(B, 3, S, S)` → `(B, S/p, S/p, E)` (a permuted view; the position add materialises it).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj.forward(x)?.permute((0, 2, 3, 1))
    }
}
