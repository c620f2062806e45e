//! RMSNorm of the decoder, written out by hand.
//!
//! Candle's fused `rms_norm` rounds once, at the end. The reference normalises in f32,
//! casts the result to the model dtype and only then multiplies by the weight, so a
//! bf16 model rounds twice (spec §7.2, trap 28). In the f32 parity profile both casts are
//! no-ops and the computation is exactly `w · x / sqrt(mean(x²) + eps)`.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Root-mean-square normalisation over the last dimension, weight only.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads `weight` `(dim)` from `vb`.
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + self.eps)?.sqrt()?.recip()?;
        // First rounding point: the normalised value goes back to the model dtype.
        let normed = xf.broadcast_mul(&inv)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)
    }
}
