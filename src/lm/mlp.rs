//! SwiGLU feed-forward block: `down(silu(gate(x)) ⊙ up(x))`, no biases.
//!
//! Used for the dense layer 0, for every routed expert and for the shared experts.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lm::rows::linear_rows;
use crate::nn::precision::Precision;
use crate::nn::Linear;

/// A SwiGLU MLP `hidden → intermediate → hidden`.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` from `vb` in `precision`.
    pub fn load(vb: VarBuilder, hidden: usize, intermediate: usize, precision: Precision) -> Result<Self> {
        Ok(Self {
            gate_proj: Linear::load_with(vb.pp("gate_proj"), hidden, intermediate, false, precision)?,
            up_proj: Linear::load_with(vb.pp("up_proj"), hidden, intermediate, false, precision)?,
            down_proj: Linear::load_with(vb.pp("down_proj"), intermediate, hidden, false, precision)?,
        })
    }
}

impl Mlp {
    /// [`forward`](Module::forward) for the rows of a decode step, each row computed as it
    /// is alone (see [`linear_rows`]).
    pub fn forward_step(&self, x: &Tensor) -> Result<Tensor> {
        let gate = linear_rows(&self.gate_proj, x)?.silu()?;
        let up = linear_rows(&self.up_proj, x)?;
        linear_rows(&self.down_proj, &(gate * up)?)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&(gate * up)?)
    }
}
