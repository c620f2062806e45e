//! SAM patch embedding (spec §5.2): a `patch×patch` stride-`patch` convolution with bias,
//! returned channels-last `(B, G, G, E)` as the blocks expect.
//!
//! The patches do not overlap, so the convolution is exactly one GEMM over the flattened
//! patches `(B·G·G, C·p·p)` with the weight reshaped to `(E, C·p·p)`; going through
//! [`Linear`] lets it use the packed kernels and yields channels-last output directly.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::precision::Precision;
use crate::nn::Linear;

/// The patch-embedding convolution as a linear layer over patches.
#[derive(Debug)]
pub struct PatchEmbed {
    proj: Linear,
    in_chans: usize,
    patch: usize,
}

impl PatchEmbed {
    /// Loads `proj` from `vb` (= `sam_model.patch_embed`), computed in `precision`.
    pub fn load(vb: VarBuilder, in_chans: usize, dim: usize, patch: usize, precision: Precision) -> Result<Self> {
        let vb = vb.pp("proj");
        // Conv weight (E, C, p, p) flattened in the (c, ky, kx) order of a patch row below.
        let weight = vb
            .get((dim, in_chans, patch, patch), "weight")?
            .reshape((dim, in_chans * patch * patch))?;
        let bias = vb.get(dim, "bias")?;
        Ok(Self {
            proj: Linear::from_tensors_with(weight, Some(bias), precision)?,
            in_chans,
            patch,
        })
    }
}

impl Module for PatchEmbed {
    /// `(B, C, S, S)` → `(B, S/p, S/p, E)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, hgt, wid) = x.dims4()?;
        let p = self.patch;
        if c != self.in_chans {
            candle_core::bail!("patch embedding expects {} channels, got {c}", self.in_chans);
        }
        let (gh, gw) = (hgt / p, wid / p);
        // A strided convolution without padding ignores a partial last patch.
        let x = if gh * p != hgt || gw * p != wid {
            x.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?
        } else {
            x.clone()
        };
        let patches = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        self.proj.forward(&patches)?.reshape((b, gh, gw, ()))
    }
}
