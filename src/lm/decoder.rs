//! The DeepSeek-V2 decoder as DeepSeek-OCR configures it (spec §7): token embedding,
//! pre-norm layers (dense SwiGLU in the first, MoE in the others), final RMSNorm and an
//! untied `lm_head`.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::lm::attention::Attention;
use crate::lm::mlp::Mlp;
use crate::lm::moe::Moe;
use crate::lm::options::LmOptions;
use crate::lm::rms_norm::RmsNorm;
use crate::lm::rope::{Rope, RopeTables};
use crate::memory::KvCache;
use crate::model::config::LmConfig;
use crate::nn::precision::Precision;
use crate::nn::taps::Taps;
use crate::nn::Linear;

/// Above this many `L × vocab` elements the all-position logits are not recorded as a tap.
const MAX_TAPPED_LOGITS: usize = 1 << 24;
/// Rows per lm_head call when all-position logits are computed.
const LOGIT_ROWS_PER_CHUNK: usize = 256;

/// The feed-forward half of a layer.
#[derive(Debug, Clone)]
enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

/// One pre-norm decoder layer: `h = x + Attn(norm(x))`, `y = h + FFN(norm(h))`.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    ffn: Ffn,
    index: usize,
}

impl DecoderLayer {
    /// Loads layer `index` from `vb` (`model.layers.{index}`) with its linears in `precision`.
    pub fn load(vb: VarBuilder, cfg: &LmConfig, index: usize, precision: Precision) -> Result<Self> {
        let ffn = if cfg.is_moe_layer(index) {
            Ffn::Moe(Moe::load(vb.pp("mlp"), cfg, precision)?)
        } else {
            Ffn::Dense(Mlp::load(
                vb.pp("mlp"),
                cfg.hidden_size,
                cfg.intermediate_size,
                precision,
            )?)
        };
        Ok(Self {
            input_layernorm: RmsNorm::load(vb.pp("input_layernorm"), cfg.hidden_size, cfg.rms_norm_eps)?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg, precision)?,
            post_attention_layernorm: RmsNorm::load(
                vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            ffn,
            index,
        })
    }

    /// The layer's attention.
    pub fn attention_mut(&mut self) -> &mut Attention {
        &mut self.self_attn
    }

    /// `x` `(L, D)` → `(L, D)`; `rope` = the cos/sin tables of the positions; writes this
    /// layer's K/V into `cache`.
    pub fn forward(&self, x: &Tensor, rope: &RopeTables, cache: &mut KvCache, taps: &mut Taps) -> Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, rope, cache, self.index)?)?;
        let n = self.post_attention_layernorm.forward(&h)?;
        let f = match &self.ffn {
            Ffn::Dense(mlp) => mlp.forward(&n)?,
            Ffn::Moe(moe) => moe.forward(&n, self.index, taps)?,
        };
        h + f
    }
}

impl DecoderLayer {
    /// One decode step of several sequences: row `b` of `x` `(B, D)` is the next token of
    /// the sequence cached in `caches[b]` (see [`Attention::forward_step`]). The norms and
    /// the feed-forward half are row-wise, so they run once on all `B` rows (dense weights
    /// on the CPU row by row, see [`crate::lm::rows`]).
    pub fn forward_step(
        &self,
        x: &Tensor,
        ropes: &[RopeTables],
        caches: &mut [&mut KvCache],
        taps: &mut Taps,
    ) -> Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward_step(&self.input_layernorm.forward(x)?, ropes, caches, self.index)?)?;
        let n = self.post_attention_layernorm.forward(&h)?;
        let f = match &self.ffn {
            Ffn::Dense(mlp) => mlp.forward_step(&n)?,
            Ffn::Moe(moe) => moe.forward_step(&n, self.index, taps)?,
        };
        h + f
    }
}

/// The language model of DeepSeek-OCR.
#[derive(Debug, Clone)]
pub struct DeepseekV2 {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    cfg: LmConfig,
    precision: Precision,
    dtype: DType,
    device: Device,
}

impl DeepseekV2 {
    /// Loads the decoder from the checkpoint root (`model.embed_tokens`, `model.layers.N`,
    /// `model.norm`, `lm_head`) with f32 RoPE frequencies (the parity profile).
    pub fn load(vb: VarBuilder, cfg: &LmConfig) -> Result<Self> {
        Self::load_with(vb, cfg, &LmOptions::default())
    }

    /// Like [`load`](Self::load) with a choice of RoPE frequency rounding and of the
    /// precision of every linear (projections, dense MLP, routed and shared experts,
    /// `lm_head`; the router stays f32 and the embedding table in the VarBuilder's dtype).
    pub fn load_with(vb: VarBuilder, cfg: &LmConfig, opts: &LmOptions) -> Result<Self> {
        let precision = opts.precision;
        let m = vb.pp("model");
        let embed_tokens = m.pp("embed_tokens").get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let layers = (0..cfg.num_layers)
            .map(|i| DecoderLayer::load(m.pp("layers").pp(i), cfg, i, precision))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = Linear::load_with(vb.pp("lm_head"), cfg.hidden_size, cfg.vocab_size, false, precision)?;
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta, opts.freqs, vb.dtype(), vb.device());
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            cfg: cfg.clone(),
            precision,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The RoPE inverse frequencies `f_i` (as rounded by the load options).
    pub fn rope_inv_freq(&self) -> &[f32] {
        self.rope.inv_freq()
    }

    /// Bounds the attention score elements of one query chunk in every layer (default
    /// [`DEFAULT_SCORE_ELEMS_PER_CHUNK`](crate::lm::attention::DEFAULT_SCORE_ELEMS_PER_CHUNK)).
    pub fn set_attention_chunk(&mut self, score_elems: usize) {
        for layer in &mut self.layers {
            layer.attention_mut().set_score_elems_per_chunk(score_elems);
        }
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    /// Precision of the linears (as asked at load; off the CPU they run in f32).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Compute dtype (the dtype the weights were loaded in).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A KV cache sized for this model with room for `max_len` positions.
    pub fn new_cache(&self, max_len: usize) -> crate::Result<KvCache> {
        KvCache::new(
            self.cfg.num_layers,
            self.cfg.num_kv_heads,
            self.cfg.head_dim,
            max_len,
            self.dtype,
            &self.device,
        )
    }

    /// Token embeddings: `ids` (any shape of u32) → `(n, D)` rows of `embed_tokens`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens
            .index_select(&ids.flatten_all()?.to_device(&self.device)?, 0)
    }

    /// Runs `inputs_embeds` `(L, D)` at positions `cache.len() ..` and returns the f32
    /// logits `(vocab)` of the last position. Records (when `taps` is recording)
    /// `layer{i}_out`, `moe_l{i}_topk_weight`/`_topk_idx`, `final_hidden`,
    /// `prefill_logits_last`, `prefill_logits_max`, `prefill_argmax` and, when small,
    /// `prefill_logits` (all positions). Recording computes the logits of every position,
    /// which is expensive for the real vocabulary: use it for parity checks only.
    pub fn forward(&self, inputs_embeds: &Tensor, cache: &mut KvCache, taps: &mut Taps) -> crate::Result<Tensor> {
        let hidden = self.hidden(inputs_embeds, cache, taps)?;
        let len = hidden.dim(0)?;
        let logits = self
            .lm_head
            .forward(&hidden.narrow(0, len - 1, 1)?)?
            .to_dtype(DType::F32)?
            .squeeze(0)?;
        if taps.enabled() {
            taps.put("prefill_logits_last", &logits);
            let all = self.logits_all(&hidden)?;
            taps.put("prefill_logits_max", &all.max(D::Minus1)?);
            taps.put("prefill_argmax", &all.argmax(D::Minus1)?);
            if all.elem_count() <= MAX_TAPPED_LOGITS {
                taps.put("prefill_logits", &all);
            }
        }
        Ok(logits)
    }

    /// Like [`forward`](Self::forward) but returns the f32 logits of every position `(L, vocab)`.
    pub fn forward_all(&self, inputs_embeds: &Tensor, cache: &mut KvCache, taps: &mut Taps) -> crate::Result<Tensor> {
        let hidden = self.hidden(inputs_embeds, cache, taps)?;
        Ok(self.logits_all(&hidden)?)
    }

    /// The final-normed hidden states `(L, D)`; advances `cache` by `L`.
    fn hidden(&self, inputs_embeds: &Tensor, cache: &mut KvCache, taps: &mut Taps) -> crate::Result<Tensor> {
        let (len, dim) = inputs_embeds.dims2()?;
        if len == 0 || dim != self.cfg.hidden_size {
            return Err(crate::Error::request(
                format!(
                    "decoder input has shape ({len}, {dim}); expected (L > 0, {})",
                    self.cfg.hidden_size
                ),
                "pass one embedding row per prompt position",
            ));
        }
        cache.ensure_room(len)?;
        if cache.num_layers() != self.layers.len() {
            return Err(crate::Error::request(
                format!(
                    "the KV cache has {} layers, the model {}",
                    cache.num_layers(),
                    self.layers.len()
                ),
                "create the cache with DeepseekV2::new_cache",
            ));
        }
        let mut x = inputs_embeds.to_device(&self.device)?.to_dtype(self.dtype)?;
        let rope = self.rope.position_tables(cache.len(), len)?;
        for layer in &self.layers {
            x = layer.forward(&x, &rope, cache, taps)?;
            taps.put(format!("layer{}_out", layer.index), &x);
        }
        cache.advance(len)?;
        let hidden = self.norm.forward(&x)?;
        taps.put("final_hidden", &hidden);
        Ok(hidden)
    }

    /// One decode step of `B` sequences at once: row `b` of `inputs_embeds` `(B, D)` is the
    /// next token of the sequence cached in `caches[b]` (caches may hold different lengths).
    /// Returns the f32 logits `(B, vocab)` and advances every cache by one.
    ///
    /// Every linear layer runs once on the `B` rows, the MoE runs each chosen expert once on
    /// the rows routed to it, and each row attends over its own cache. With `B = 1` this is
    /// the same computation as [`forward`](Self::forward) on one token, and on the CPU each
    /// row's logits are bit for bit those of a step of its sequence alone (dense weights
    /// take the rows one at a time, see [`crate::lm::rows`]).
    pub fn forward_step(
        &self,
        inputs_embeds: &Tensor,
        caches: &mut [&mut KvCache],
        taps: &mut Taps,
    ) -> crate::Result<Tensor> {
        let (b, dim) = inputs_embeds.dims2()?;
        if b == 0 || b != caches.len() || dim != self.cfg.hidden_size {
            return Err(crate::Error::request(
                format!(
                    "decode step input has shape ({b}, {dim}) for {} caches; expected ({}, {})",
                    caches.len(),
                    caches.len(),
                    self.cfg.hidden_size
                ),
                "pass one embedding row per sequence",
            ));
        }
        let mut ropes = Vec::with_capacity(b);
        for cache in caches.iter() {
            cache.ensure_room(1)?;
            if cache.num_layers() != self.layers.len() {
                return Err(crate::Error::request(
                    format!(
                        "the KV cache has {} layers, the model {}",
                        cache.num_layers(),
                        self.layers.len()
                    ),
                    "create the cache with DeepseekV2::new_cache",
                ));
            }
            ropes.push(self.rope.position_tables(cache.len(), 1)?);
        }
        let mut x = inputs_embeds.to_device(&self.device)?.to_dtype(self.dtype)?;
        for layer in &self.layers {
            x = layer.forward_step(&x, &ropes, caches, taps)?;
        }
        for cache in caches.iter_mut() {
            cache.advance(1)?;
        }
        let hidden = self.norm.forward(&x)?;
        Ok(crate::lm::rows::linear_rows(&self.lm_head, &hidden)?.to_dtype(DType::F32)?)
    }

    /// lm_head over all rows, in chunks, as f32 `(L, vocab)`.
    fn logits_all(&self, hidden: &Tensor) -> Result<Tensor> {
        let len = hidden.dim(0)?;
        let mut parts = Vec::with_capacity(len.div_ceil(LOGIT_ROWS_PER_CHUNK));
        let mut r = 0;
        while r < len {
            let n = LOGIT_ROWS_PER_CHUNK.min(len - r);
            parts.push(self.lm_head.forward(&hidden.narrow(0, r, n)?)?.to_dtype(DType::F32)?);
            r += n;
        }
        Tensor::cat(&parts, 0)
    }
}
