//! SAM neck and the two stride-2 downsampling convolutions (spec §5.5).
//!
//! `1×1 conv → LayerNorm2d → 3×3 conv → LayerNorm2d → net_2 (3×3/2) → net_3 (3×3/2)`, all
//! convolutions without bias. The result is the SAM feature map CLIP and the projector read.
//!
//! The blocks hand over channels-last tokens, on which the 1×1 convolution is a plain
//! [`Linear`] (a GEMM in the chosen precision) and the first LayerNorm2d a LayerNorm over the
//! last axis; the map turns channels-first only for the 3×3 convolutions.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder};

use crate::model::config::SamConfig;
use crate::nn::precision::Precision;
use crate::nn::{Linear, Taps};

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
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        ..Default::default()
    };
    candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)
}

/// Neck plus `net_2` / `net_3`.
#[derive(Debug)]
pub struct Neck {
    /// The 1×1 convolution, weight `(O, E, 1, 1)` held as `(O, E)`.
    conv1: Linear,
    /// LayerNorm2d `neck.1`, applied channels-last.
    norm1: LayerNorm,
    conv2: Conv2d,
    norm2: LayerNorm2d,
    net_2: Conv2d,
    net_3: Conv2d,
}

impl Neck {
    /// Loads `neck.{0,1,2,3}`, `net_2` and `net_3` from `vb` (= `sam_model`); the 1×1
    /// convolution in `precision`.
    pub fn load(vb: VarBuilder, cfg: &SamConfig, precision: Precision) -> Result<Self> {
        let n = vb.pp("neck");
        let o = cfg.out_chans;
        let w1 = n.pp("0").get((o, cfg.width, 1, 1), "weight")?.reshape((o, cfg.width))?;
        Ok(Self {
            conv1: Linear::from_tensors_with(w1, None, precision)?,
            norm1: candle_nn::layer_norm(o, cfg.norm_eps, n.pp("1"))?,
            conv2: conv(n.pp("2"), o, o, 3, 1)?,
            norm2: LayerNorm2d::load(n.pp("3"), o, cfg.norm_eps)?,
            net_2: conv(vb.pp("net_2"), o, cfg.net2_chans, 3, 2)?,
            net_3: conv(vb.pp("net_3"), cfg.net2_chans, cfg.net3_chans, 3, 2)?,
        })
    }

    /// Channels-last `(B, G, G, E)` → `(B, C3, G/4, G/4)`; taps `dbg_sam_neck` and
    /// `dbg_sam_net2` (NCHW).
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let x = self
            .norm1
            .forward(&self.conv1.forward(x)?)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let x = self.norm2.forward(&self.conv2.forward(&x)?)?;
        taps.put("dbg_sam_neck", &x);
        let x = self.net_2.forward(&x)?;
        taps.put("dbg_sam_net2", &x);
        self.net_3.forward(&x)
    }
}
