//! Decoder self-attention: plain multi-head attention with RoPE and a causal mask.
//!
//! With `use_mla = false` the reference runs transformers' Llama attention (spec §7.3,
//! trap 8): q/k/v/o projections without bias, half-split RoPE on q and k, scores scaled
//! by `head_dim^-0.5`, softmax in f32. Keys and values go into the preallocated
//! [`KvCache`] in place; queries are processed in chunks so a long prefill never holds
//! the full `heads × L × L` score matrix.
//!
//! On the CPU in f32 activations (every [`Precision`]), the step goes through the blockwise
//! kernel instead: RoPE is applied while the projection rows are laid out per head, K/V go
//! straight into the cache's host buffers, and one kernel call per key/value head attends
//! over the cached rows in place, so a decode step costs four projections and one small
//! tensor, whatever the context length.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::lm::host::{is_host_f32, with_f32};
use crate::lm::rope::{apply_tables, RopeTables};
use crate::lm::rows::linear_rows;
use crate::memory::KvCache;
use crate::model::config::LmConfig;
use crate::nn::kernels::{self, AttnBias, AttnShape};
use crate::nn::precision::Precision;
use crate::nn::Linear;

/// Default bound on the score elements (heads × query rows × keys) of one query chunk:
/// 16 MiB of f32 scores, ~320 query rows of the real model at 1300 keys.
pub const DEFAULT_SCORE_ELEMS_PER_CHUNK: usize = 1 << 22;

/// Multi-head self-attention of one decoder layer.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    score_elems_per_chunk: usize,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `o_proj` from `vb` (`…self_attn`) in `precision`.
    pub fn load(vb: VarBuilder, cfg: &LmConfig, precision: Precision) -> Result<Self> {
        let (d, h, kv, hd) = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        if kv == 0 || h % kv != 0 {
            candle_core::bail!("{h} attention heads are not a multiple of {kv} key/value heads")
        }
        Ok(Self {
            q_proj: Linear::load_with(vb.pp("q_proj"), d, h * hd, false, precision)?,
            k_proj: Linear::load_with(vb.pp("k_proj"), d, kv * hd, false, precision)?,
            v_proj: Linear::load_with(vb.pp("v_proj"), d, kv * hd, false, precision)?,
            o_proj: Linear::load_with(vb.pp("o_proj"), h * hd, d, false, precision)?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
            score_elems_per_chunk: DEFAULT_SCORE_ELEMS_PER_CHUNK,
        })
    }

    /// Bounds the score elements one query chunk may hold (trades memory for speed).
    pub fn set_score_elems_per_chunk(&mut self, elems: usize) {
        self.score_elems_per_chunk = elems.max(1);
    }

    /// `x` `(L, D)` holds positions `cache.len() .. cache.len() + L`; `rope` holds the
    /// tables of those positions. Writes this layer's K/V rows into `cache` (the caller
    /// advances the cache after the last layer).
    pub fn forward(&self, x: &Tensor, rope: &RopeTables, cache: &mut KvCache, layer: usize) -> Result<Tensor> {
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        let out = self.core(&q, &k, &v, rope, cache, layer)?;
        self.o_proj.forward(&out)
    }

    /// One decode step of several sequences: row `b` of `x` `(B, D)` is the next token of
    /// the sequence whose cache is `caches[b]`, at position `caches[b].len()`, rotated with
    /// `ropes[b]`. The projections take all `B` rows at once (a packed weight is read once;
    /// see [`linear_rows`]); each row attends over its own cache, exactly as a
    /// single-sequence step does.
    pub fn forward_step(
        &self,
        x: &Tensor,
        ropes: &[RopeTables],
        caches: &mut [&mut KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let (b, _) = x.dims2()?;
        if b != caches.len() || b != ropes.len() {
            candle_core::bail!("{b} rows for {} caches and {} rope tables", caches.len(), ropes.len())
        }
        let q = linear_rows(&self.q_proj, x)?;
        let k = linear_rows(&self.k_proj, x)?;
        let v = linear_rows(&self.v_proj, x)?;
        let out = if b == 1 {
            self.core(&q, &k, &v, &ropes[0], caches[0], layer)?
        } else {
            let mut rows = Vec::with_capacity(b);
            for (i, cache) in caches.iter_mut().enumerate() {
                let row = |t: &Tensor| t.narrow(0, i, 1);
                rows.push(self.core(&row(&q)?, &row(&k)?, &row(&v)?, &ropes[i], cache, layer)?);
            }
            Tensor::cat(&rows, 0)?
        };
        linear_rows(&self.o_proj, &out)
    }

    /// Attention of projected rows `q` `(L, H·d)`, `k`, `v` `(L, KV·d)` at positions
    /// `cache.len() ..`: RoPE, K/V into `cache`, causal attention; returns `(L, H·d)`
    /// (before `o_proj`).
    fn core(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rope: &RopeTables,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        if is_host_f32(q) && cache.is_host() {
            return self.core_host(q, k, v, rope, cache, layer);
        }
        let (len, _) = q.dims2()?;
        let start = cache.len();
        let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
            t.reshape((1, len, n, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(q, self.num_heads)?;
        let k = heads(k, self.num_kv_heads)?;
        let v = heads(v, self.num_kv_heads)?;
        let q = apply_tables(&q, &rope.cos, &rope.sin)?;
        let k = apply_tables(&k, &rope.cos, &rope.sin)?;
        let (k_all, v_all) = cache.write(layer, &k, &v)?;
        let n_rep = self.num_heads / self.num_kv_heads;
        let k_all = candle_transformers::utils::repeat_kv(k_all, n_rep)?;
        let v_all = candle_transformers::utils::repeat_kv(v_all, n_rep)?;
        let total = start + len;
        let chunk = (self.score_elems_per_chunk / (self.num_heads * total)).max(1);
        let out = attend(&q, &k_all, &v_all, start, chunk)?;
        out.transpose(1, 2)?.reshape((len, self.num_heads * self.head_dim))
    }

    /// The CPU path: f32 rows, host cache, blockwise kernel (the kernel never materialises
    /// the score matrix, so no query chunking is needed).
    fn core_host(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rope: &RopeTables,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (len, _) = q.dims2()?;
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let start = cache.len();
        let total = start + len;
        // Queries as (heads, L, d), rotated on the way.
        let mut q_heads = vec![0f32; h * len * hd];
        with_f32(q, |qs| {
            for l in 0..len {
                for head in 0..h {
                    let src = &qs[(l * h + head) * hd..][..hd];
                    rope.rotate_into(l, src, &mut q_heads[(head * len + l) * hd..][..hd]);
                }
            }
        })?;
        let Some(slot) = cache.host_layer_mut(layer) else {
            candle_core::bail!("KV cache has no layer {layer}")
        };
        let max_len = slot.max_len;
        if total > max_len {
            candle_core::bail!("KV cache overflow: {start} + {len} > {max_len}")
        }
        // This step's keys (rotated) and values go to positions start.. of each head.
        with_f32(k, |ks| {
            for l in 0..len {
                for g in 0..kvh {
                    let src = &ks[(l * kvh + g) * hd..][..hd];
                    rope.rotate_into(l, src, &mut slot.k[(g * max_len + start + l) * hd..][..hd]);
                }
            }
        })?;
        with_f32(v, |vs| {
            for l in 0..len {
                for g in 0..kvh {
                    let at = (g * max_len + start + l) * hd;
                    slot.v[at..at + hd].copy_from_slice(&vs[(l * kvh + g) * hd..][..hd]);
                }
            }
        })?;
        // Each key/value head's rows are contiguous in the cache, so one kernel call per
        // kv head (with its group of query heads) reads them in place.
        let n_rep = h / kvh;
        let shape = AttnShape {
            heads: n_rep,
            kv_heads: 1,
            q_len: len,
            kv_len: total,
            head_dim: hd,
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let group = n_rep * len * hd;
        let (kc, vc) = (&*slot.k, &*slot.v);
        let mut out = vec![0f32; h * len * hd];
        out.par_chunks_mut(group)
            .zip(q_heads.par_chunks(group))
            .enumerate()
            .try_for_each(|(g, (o, qg))| {
                let rows = g * max_len * hd..(g * max_len + total) * hd;
                kernels::attention(qg, &kc[rows.clone()], &vc[rows], shape, AttnBias::None, scale, true, o)
            })?;
        // Back to (L, heads · d) for o_proj.
        let mut merged = vec![0f32; len * h * hd];
        for head in 0..h {
            for l in 0..len {
                merged[(l * h + head) * hd..][..hd].copy_from_slice(&out[(head * len + l) * hd..][..hd]);
            }
        }
        Tensor::from_vec(merged, (len, h * hd), q.device())
    }
}

/// Causal attention of `q` `(1, H, L, d)` at positions `start ..` over all cached keys and
/// values `(1, H, start + L, d)`, `chunk` query rows at a time. Returns `(1, H, L, d)`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, chunk: usize) -> Result<Tensor> {
    let (_, _, len, head_dim) = q.dims4()?;
    let total = k.dim(2)?;
    let k_t = k.t()?;
    let chunk = chunk.clamp(1, len.max(1));
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut outs = Vec::with_capacity(len.div_ceil(chunk));
    let mut c0 = 0;
    while c0 < len {
        let rows = chunk.min(len - c0);
        let qc = q.narrow(2, c0, rows)?;
        let scores = (qc.matmul(&k_t)? * scale)?.to_dtype(DType::F32)?;
        let scores = match causal_mask(start + c0, rows, total, q.device())? {
            Some(mask) => scores.broadcast_add(&mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        outs.push(probs.matmul(v)?);
        c0 += rows;
    }
    if outs.len() == 1 {
        Ok(outs.remove(0))
    } else {
        Tensor::cat(&outs, 2)
    }
}

/// Additive mask `(1, 1, rows, total)` for query rows at positions `first ..`: key `j` is
/// visible to the query at position `p` iff `j <= p`. `None` when every key is visible.
fn causal_mask(first: usize, rows: usize, total: usize, device: &candle_core::Device) -> Result<Option<Tensor>> {
    if first + rows >= total && rows == 1 {
        return Ok(None);
    }
    let mut m = vec![0f32; rows * total];
    for r in 0..rows {
        let p = first + r;
        for v in &mut m[r * total + p + 1..(r + 1) * total] {
            *v = f32::NEG_INFINITY;
        }
    }
    Ok(Some(Tensor::from_vec(m, (1, 1, rows, total), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Reference: one query at a time against its visible keys, softmax by hand.
    fn naive(q: &[Vec<f32>], k: &[Vec<f32>], v: &[Vec<f32>], start: usize) -> Vec<Vec<f32>> {
        let d = q[0].len();
        q.iter()
            .enumerate()
            .map(|(i, qi)| {
                let visible = start + i + 1;
                let s: Vec<f32> = (0..visible)
                    .map(|j| qi.iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt())
                    .collect();
                let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f32 = e.iter().sum();
                (0..d).map(|c| (0..visible).map(|j| e[j] / z * v[j][c]).sum()).collect()
            })
            .collect()
    }

    #[test]
    fn chunked_causal_attention_matches_naive() {
        let dev = Device::Cpu;
        let (start, len, d) = (3usize, 7usize, 4usize);
        let total = start + len;
        let gen = |seed: u32, rows: usize| -> Vec<Vec<f32>> {
            (0..rows)
                .map(|r| {
                    (0..d)
                        .map(|c| {
                            ((((r * 7 + c * 3 + 1) as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 500.0
                                - 1.0
                        })
                        .collect()
                })
                .collect()
        };
        let (qv, kv, vv) = (gen(1, len), gen(2, total), gen(3, total));
        let t = |m: &Vec<Vec<f32>>| {
            Tensor::new(m.clone(), &dev)
                .unwrap()
                .reshape((1, 1, m.len(), d))
                .unwrap()
        };
        let want = naive(&qv, &kv, &vv, start);
        for chunk in [1, 2, 3, 7, 100] {
            let got: Vec<Vec<f32>> = attend(&t(&qv), &t(&kv), &t(&vv), start, chunk)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2()
                .unwrap();
            for (a, b) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((a - b).abs() < 1e-5, "chunk {chunk}: {a} vs {b}");
            }
        }
    }
}
