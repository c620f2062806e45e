//! The one `Linear` type every layer of SAM, CLIP, the projector and the decoder uses.
//!
//! `y = x · Wᵀ + b` with `W` stored `(out, in)` as in PyTorch. Keeping a single type means
//! a faster kernel (packed BF16, INT8) is switched on for the whole model in one place.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// A dense layer `y = x · Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` `(out_dim, in_dim)` and, if `bias`, `bias` `(out_dim)` from `vb`.
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Wraps existing tensors.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The `(out, in)` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The optional bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.t()?;
        let y = match x.dims() {
            [b1, b2, m, k] => x.reshape((b1 * b2 * m, *k))?.matmul(&w)?.reshape((*b1, *b2, *m, ()))?,
            [b, m, k] => x.reshape((b * m, *k))?.matmul(&w)?.reshape((*b, *m, ()))?,
            _ => x.matmul(&w)?,
        };
        match &self.bias {
            None => Ok(y),
            Some(b) => y.broadcast_add(b),
        }
    }
}
