//! One pre-norm SAM transformer block (spec §5.3): windowed or global attention, then an
//! erf-GELU MLP, each with a residual connection. Tensors are channels-last `(B, H, W, C)`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::attention::Attention;
use super::window;
use crate::model::config::SamConfig;
use crate::nn::precision::Precision;
use crate::nn::{Linear, Taps};

/// The `lin1 → GELU(erf) → lin2` MLP of a block.
#[derive(Debug)]
pub struct Mlp {
    lin1: Linear,
    lin2: Linear,
}

impl Mlp {
    /// Loads `lin1` / `lin2` from `vb` (= `blocks.i.mlp`) in `precision`.
    pub fn load(vb: VarBuilder, dim: usize, hidden: usize, precision: Precision) -> Result<Self> {
        Ok(Self {
            lin1: Linear::load_with(vb.pp("lin1"), dim, hidden, true, precision)?,
            lin2: Linear::load_with(vb.pp("lin2"), hidden, dim, true, precision)?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // SAM uses the exact erf GELU, not the tanh approximation.
        self.lin2.forward(&self.lin1.forward(x)?.gelu_erf()?)
    }
}

/// A SAM block.
#[derive(Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    /// Window side, or `None` for a global-attention block.
    window: Option<usize>,
}

impl Block {
    /// Loads block `index` from `vb` (= `sam_model.blocks.{index}`), linear layers in `precision`.
    pub fn load(vb: VarBuilder, cfg: &SamConfig, index: usize, precision: Precision) -> Result<Self> {
        let global = cfg.global_attn_indexes.contains(&index);
        // Window blocks hold tables for a window, global ones for the pretraining grid.
        let side = if global { cfg.pos_grid() } else { cfg.window_size };
        if side == 0 {
            candle_core::bail!("SAM block {index}: window size and position grid must be positive");
        }
        Ok(Self {
            norm1: candle_nn::layer_norm(cfg.width, cfg.norm_eps, vb.pp("norm1"))?,
            attn: Attention::load(vb.pp("attn"), cfg.width, cfg.heads, 2 * side - 1, index, precision)?,
            norm2: candle_nn::layer_norm(cfg.width, cfg.norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::load(vb.pp("mlp"), cfg.width, cfg.mlp_dim, precision)?,
            window: if global { None } else { Some(cfg.window_size) },
        })
    }

    /// `(B, H, W, C)` → `(B, H, W, C)`.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let (_, h, w, _) = x.dims4()?;
        let y = self.norm1.forward(x)?;
        // Padding comes after the norm, so padded tokens are exact zeros.
        let y = match self.window {
            Some(ws) => {
                let (win, padded) = window::partition(&y, ws)?;
                let a = self.attn.forward(&win, taps)?;
                window::unpartition(&a, ws, padded, (h, w))?
            }
            None => self.attn.forward(&y, taps)?,
        };
        let x = (x + y)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
        x + m
    }
}
