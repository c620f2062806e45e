//! The Qwen2 "decoder as encoder" of DeepEncoder V2 (spec-ocr2 §6): transformers'
//! `Qwen2Model` without token embedding over `[SAM tokens ; learnable queries]`, with the
//! mixed mask, RoPE θ = 1e6 at positions `0 … 2n−1`, pre-norm layers
//! `h = x + attn(norm_in(x))`, `y = h + mlp(norm_post(h))`, a final RMSNorm, and only the
//! query half kept (trap T9).
//!
//! The blocks are the language model's: [`RmsNorm`] (f32 normalise, then the weight),
//! the SwiGLU [`Mlp`] and the [`Rope`] tables; only attention differs (biases, GQA, mask).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lm::mlp::Mlp;
use crate::lm::rms_norm::RmsNorm;
use crate::lm::rope::{Rope, RopeFrequencies};
use crate::model::config::{QueryTable, Qwen2EncoderConfig};
use crate::nn::precision::Precision;
use crate::nn::Taps;

use super::attention::EncoderAttention;

/// One pre-norm encoder layer.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    input_layernorm: RmsNorm,
    self_attn: EncoderAttention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    /// Loads layer `vb` (`…layers.N`).
    pub fn load(vb: VarBuilder, cfg: &Qwen2EncoderConfig, precision: Precision) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(vb.pp("input_layernorm"), cfg.hidden, cfg.rms_norm_eps)?,
            self_attn: EncoderAttention::load(vb.pp("self_attn"), cfg, precision)?,
            post_attention_layernorm: RmsNorm::load(vb.pp("post_attention_layernorm"), cfg.hidden, cfg.rms_norm_eps)?,
            mlp: Mlp::load(vb.pp("mlp"), cfg.hidden, cfg.intermediate, precision)?,
        })
    }

    /// `(B, 2n, H)` → `(B, 2n, H)`.
    pub fn forward(&self, x: &Tensor, rope: &crate::lm::rope::RopeTables) -> Result<Tensor> {
        let h = (x + self.self_attn.forward(&self.input_layernorm.forward(x)?, rope)?)?;
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?
    }
}

/// Which view a forward pass encodes, for the names of its taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewRole {
    /// The global view (`enc_*_global`, all rows).
    Global,
    /// The local tiles (`enc_layerN_local0` for tile 0, `enc_out_local` for all).
    Local,
}

/// The whole encoder: layers, final norm, query tables and RoPE.
#[derive(Debug)]
pub struct Qwen2Encoder {
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
    /// `(table, (n, H) weights)` per supported view size.
    queries: Vec<(QueryTable, Tensor)>,
    rope: Rope,
    cfg: Qwen2EncoderConfig,
}

impl Qwen2Encoder {
    /// Loads from `vb` = `model.qwen2_model` (layers under `model.model`, tables beside).
    pub fn load(vb: VarBuilder, cfg: &Qwen2EncoderConfig, precision: Precision) -> Result<Self> {
        let m = vb.pp("model").pp("model");
        let layers = (0..cfg.layers)
            .map(|i| EncoderLayer::load(m.pp("layers").pp(i), cfg, precision))
            .collect::<Result<Vec<_>>>()?;
        let queries = cfg
            .query_tables
            .iter()
            .map(|q| Ok((*q, vb.pp(q.name()).get((q.tokens, cfg.hidden), "weight")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            norm: RmsNorm::load(m.pp("norm"), cfg.hidden, cfg.rms_norm_eps)?,
            queries,
            rope: Rope::new(
                cfg.head_dim,
                cfg.rope_theta,
                RopeFrequencies::F32,
                vb.dtype(),
                vb.device(),
            ),
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Qwen2EncoderConfig {
        &self.cfg
    }

    /// The RoPE inverse frequencies (f32, θ of the encoder).
    pub fn rope_inv_freq(&self) -> &[f32] {
        self.rope.inv_freq()
    }

    /// The query table for `n` visual tokens (trap T11: chosen by token count).
    pub fn query_table(&self, n: usize) -> Option<&Tensor> {
        self.queries.iter().find(|(q, _)| q.tokens == n).map(|(_, t)| t)
    }

    /// SAM features `(B, H, h, w)` → query outputs `(B, h·w, H)` after the final norm.
    pub fn forward(&self, feats: &Tensor, role: ViewRole, taps: &mut Taps) -> Result<Tensor> {
        let (b, c, fh, fw) = feats.dims4()?;
        if c != self.cfg.hidden {
            candle_core::bail!("encoder expects {} SAM channels, got {c}", self.cfg.hidden)
        }
        let n = fh * fw;
        let Some(table) = self.query_table(n) else {
            let have: Vec<usize> = self.queries.iter().map(|(q, _)| q.tokens).collect();
            candle_core::bail!(
                "no query table for {n} visual tokens ({fh}x{fw} SAM grid); the model has tables for {have:?} tokens"
            )
        };
        // Row-major flatten, channels last, then the queries in table order.
        let visual = feats.flatten_from(2)?.transpose(1, 2)?;
        let queries = table.to_dtype(visual.dtype())?.unsqueeze(0)?.repeat((b, 1, 1))?;
        let mut x = Tensor::cat(&[&visual, &queries], 1)?.contiguous()?;
        if role == ViewRole::Global {
            taps.put("enc_input_global", &x);
        }
        if taps.enabled() {
            taps.put(
                format!("enc_mask_allowed_{n}"),
                &super::mask::allowed_matrix(n, x.device())?,
            );
            let f = self.rope.inv_freq();
            taps.put("enc_rope_inv_freq", &Tensor::from_slice(f, f.len(), x.device())?);
        }
        let rope = self.rope.position_tables(0, 2 * n)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &rope)?;
            if taps.enabled() {
                match role {
                    ViewRole::Global => taps.put(format!("enc_layer{i}_global"), &x),
                    ViewRole::Local => taps.put(format!("enc_layer{i}_local0"), &x.narrow(0, 0, 1)?),
                }
            }
        }
        // The norm is per row, so normalising only the kept query rows is the same.
        let out = self.norm.forward(&x.narrow(1, n, n)?.contiguous()?)?;
        match role {
            ViewRole::Global => taps.put("enc_out_global", &out),
            ViewRole::Local => taps.put("enc_out_local", &out),
        }
        Ok(out)
    }
}
