//! SAM neck and the two stride-2 downsampling convolutions (spec §5.5), channels-first.
//!
//! `1×1 conv → LayerNorm2d → 3×3 conv → LayerNorm2d → net_2 (3×3/2) → net_3 (3×3/2)`, all
//! convolutions without bias. The result is the SAM feature map CLIP and the projector read.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use crate::model::config::SamConfig;
use crate::nn::Taps;

/// LayerNorm over the channel axis of an NCHW map (biased variance), then per-channel affine.
#[derive(Debug)]
pub struct LayerNorm2d {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm2d {
    /// Loads `weight` / `bias` `(channels)` from `vb`.
    pub fn load(vb: VarBuilder, channels: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(channels, "weight")?.reshape((1, channels, 1, 1))?,
            bias: vb.get(channels, "bias")?.reshape((1, channels, 1, 1))?,
            eps,
        })
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mu = x.mean_keepdim(1)?;
        let d = x.broadcast_sub(&mu)?;
        let var = d.sqr()?.mean_keepdim(1)?;
        let y = d.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

fn conv(vb: VarBuilder, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Conv2d> {
    let cfg = Conv2dConfig { padding: k / 2, stride, ..Default::default() };
    candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)
}

/// Neck plus `net_2` / `net_3`.
#[derive(Debug)]
pub struct Neck {
    conv1: Conv2d,
    norm1: LayerNorm2d,
    conv2: Conv2d,
    norm2: LayerNorm2d,
    net_2: Conv2d,
    net_3: Conv2d,
}

impl Neck {
    /// Loads `neck.{0,1,2,3}`, `net_2` and `net_3` from `vb` (= `sam_model`).
    pub fn load(vb: VarBuilder, cfg: &SamConfig) -> Result<Self> {
        let n = vb.pp("neck");
        let o = cfg.out_chans;
        Ok(Self {
            conv1: conv(n.pp("0"), cfg.width, o, 1, 1)?,
            norm1: LayerNorm2d::load(n.pp("1"), o, cfg.norm_eps)?,
            conv2: conv(n.pp("2"), o, o, 3, 1)?,
            norm2: LayerNorm2d::load(n.pp("3"), o, cfg.norm_eps)?,
            net_2: conv(vb.pp("net_2"), o, cfg.net2_chans, 3, 2)?,
            net_3: conv(vb.pp("net_3"), cfg.net2_chans, cfg.net3_chans, 3, 2)?,
        })
    }

    /// `(B, E, G, G)` → `(B, C3, G/4, G/4)`; taps `dbg_sam_neck` and `dbg_sam_net2` (NCHW).
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let x = self.norm1.forward(&self.conv1.forward(x)?)?;
        let x = self.norm2.forward(&self.conv2.forward(&x)?)?;
        taps.put("dbg_sam_neck", &x);
        let x = self.net_2.forward(&x)?;
        taps.put("dbg_sam_net2", &x);
        self.net_3.forward(&x)
    }
}
