//! The CLIP-L part of the DeepEncoder (spec §6.1-6.3).
//!
//! CLIP never sees pixels: its patch tokens are the SAM feature map, flattened row-major,
//! behind a learned CLS token. Position table row 0 (CLS) is used as is; the 16×16 part is
//! resampled (antialiased bicubic) for other grids. Then `pre_layrnorm` and pre-norm layers
//! with quick-GELU MLPs; there is no final LayerNorm.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::model::config::ClipConfig;
use crate::nn::precision::Precision;
use crate::nn::{Linear, Taps};
use crate::vision::cpu_attention;
use crate::vision::pos_interp::resize_bicubic_aa;

/// `x · sigmoid(1.702 x)`.
fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// Full bidirectional multi-head self-attention of one layer.
#[derive(Debug)]
struct SelfAttention {
    qkv_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(vb: VarBuilder, dim: usize, heads: usize, precision: Precision) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("CLIP attention: width {dim} is not divisible by {heads} heads");
        }
        Ok(Self {
            qkv_proj: Linear::load_with(vb.pp("qkv_proj"), dim, 3 * dim, true, precision)?,
            out_proj: Linear::load_with(vb.pp("out_proj"), dim, dim, true, precision)?,
            heads,
            head_dim: dim / heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (nh, d) = (self.heads, self.head_dim);
        // qkv channels are [q | k | v], each split into heads of `d` contiguous channels.
        let qkv = self
            .qkv_proj
            .forward(x)?
            .reshape((b, t, 3, nh, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let qkv = qkv.reshape((3, b * nh, t, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let o = if qkv.device().is_cpu() {
            cpu_attention::attention(&qkv, None, scale)?.to_dtype(x.dtype())?
        } else {
            // At most 401 tokens: the full score matrix is small.
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?;
            candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?
        };
        let o = o.reshape((b, nh, t, d))?.transpose(1, 2)?.reshape((b, t, c))?;
        self.out_proj.forward(&o)
    }
}

/// One pre-norm transformer layer.
#[derive(Debug)]
struct Layer {
    layer_norm1: LayerNorm,
    self_attn: SelfAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &ClipConfig, precision: Precision) -> Result<Self> {
        Ok(Self {
            layer_norm1: candle_nn::layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            self_attn: SelfAttention::load(vb.pp("self_attn"), cfg.width, cfg.heads, precision)?,
            layer_norm2: candle_nn::layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: Linear::load_with(vb.pp("mlp").pp("fc1"), cfg.width, cfg.ffn_dim, true, precision)?,
            fc2: Linear::load_with(vb.pp("mlp").pp("fc2"), cfg.ffn_dim, cfg.width, true, precision)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let m = self
            .fc2
            .forward(&quick_gelu(&self.fc1.forward(&self.layer_norm2.forward(&x)?)?)?)?;
        x + m
    }
}

/// The CLIP-L vision transformer fed with SAM features.
#[derive(Debug)]
pub struct Clip {
    class_embedding: Tensor,
    /// `(num_positions, W)`: CLS row then the row-major pretraining grid.
    position_embedding: Tensor,
    /// Side of the pretraining grid (16).
    pos_grid: usize,
    /// Position tables `(1, 1 + n², W)` for other grids, by side `n`.
    pos_cache: Mutex<HashMap<usize, Tensor>>,
    pre_layrnorm: LayerNorm,
    layers: Vec<Layer>,
}

impl Clip {
    /// Loads the model from `vb` (= `model.vision_model`), linear layers in `precision`. The
    /// unused patch conv is not loaded.
    pub fn load(vb: VarBuilder, cfg: &ClipConfig, precision: Precision) -> Result<Self> {
        let grid = (cfg.num_positions.saturating_sub(1) as f64).sqrt() as usize;
        if grid == 0 || grid * grid + 1 != cfg.num_positions {
            candle_core::bail!("CLIP num_positions {} is not 1 + a square", cfg.num_positions);
        }
        let emb = vb.pp("embeddings");
        let tl = vb.pp("transformer").pp("layers");
        Ok(Self {
            class_embedding: emb.get(cfg.width, "class_embedding")?,
            position_embedding: emb
                .pp("position_embedding")
                .get((cfg.num_positions, cfg.width), "weight")?,
            pos_grid: grid,
            pos_cache: Mutex::new(HashMap::new()),
            pre_layrnorm: candle_nn::layer_norm(cfg.width, cfg.pre_layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers: (0..cfg.layers)
                .map(|i| Layer::load(tl.pp(i), cfg, precision))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// The position table for an `n×n` grid, `(1, 1 + n², W)` (tap `clip_pos_embed_interp_{n}`
    /// when resampled).
    pub fn pos_embed_for(&self, n: usize, taps: &mut Taps) -> Result<Tensor> {
        let (rows, w) = self.position_embedding.dims2()?;
        if n == self.pos_grid {
            return self.position_embedding.reshape((1, rows, w));
        }
        let t = {
            let mut cache = self.pos_cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.get(&n) {
                Some(t) => t.clone(),
                None => {
                    let p = self.pos_grid;
                    let host = self
                        .position_embedding
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    // Row 0 (CLS) is kept; rows 1.. form the p×p grid that is resampled.
                    let mut out = host[..w].to_vec();
                    out.extend(resize_bicubic_aa(&host[w..], p, p, w, n, n));
                    let t = Tensor::from_vec(out, (1, 1 + n * n, w), self.position_embedding.device())?
                        .to_dtype(self.position_embedding.dtype())?;
                    cache.insert(n, t.clone());
                    t
                }
            }
        };
        if taps.enabled() {
            taps.put(format!("clip_pos_embed_interp_{n}"), &t);
        }
        Ok(t)
    }

    /// SAM features `(B, C3, n, n)` → `(B, 1 + n², W)` (index 0 = CLS).
    pub fn forward(&self, sam_features: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let (b, c, nh, nw) = sam_features.dims4()?;
        if nh != nw {
            candle_core::bail!("CLIP expects a square SAM feature grid, got {nh}x{nw}");
        }
        let patches = sam_features.flatten_from(2)?.transpose(1, 2)?; // (B, n², C3)
        let cls = self.class_embedding.reshape((1, 1, c))?.broadcast_as((b, 1, c))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos_embed_for(nh, taps)?)?;
        taps.put("dbg_clip_embeddings", &x);
        let mut x = self.pre_layrnorm.forward(&x)?;
        taps.put("dbg_clip_pre_layrnorm", &x);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if taps.enabled() {
                taps.put(format!("dbg_clip_layer{i}"), &x);
            }
        }
        Ok(x)
    }
}
