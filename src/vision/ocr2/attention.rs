//! Self-attention of one OCR-2 encoder layer (transformers' `Qwen2SdpaAttention` with the
//! mixed mask): q/k/v projections **with** bias, o without (trap T10), grouped-query heads
//! (query head `h` reads KV head `h / (heads / kv_heads)`), half-split RoPE on q and k at
//! positions `0 … 2n−1` (trap T2), scale `1/√head_dim`.
//!
//! On the CPU the mask is not materialised: the visual rows are one bidirectional call of
//! the blockwise kernel over the visual keys, the query rows one causal call over all keys
//! (the kernel's causal rule, query `i` sees keys `0 ..= i + kv_len − q_len`, is exactly
//! "all visual tokens and the queries up to itself"). Elsewhere the additive mask of
//! [`super::mask`] is added to the full score matrix.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::lm::rope::{apply_tables, RopeTables};
use crate::model::config::Qwen2EncoderConfig;
use crate::nn::kernels::attention_tensors;
use crate::nn::precision::Precision;
use crate::nn::Linear;

/// Attention of one encoder layer.
#[derive(Debug, Clone)]
pub struct EncoderAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl EncoderAttention {
    /// Loads `q_proj`, `k_proj`, `v_proj` (with bias) and `o_proj` (without) from `vb`
    /// (`…self_attn`) in `precision`.
    pub fn load(vb: VarBuilder, cfg: &Qwen2EncoderConfig, precision: Precision) -> Result<Self> {
        let (h, nh, kv, hd) = (cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim);
        if kv == 0 || nh % kv != 0 {
            candle_core::bail!("{nh} encoder heads are not a multiple of {kv} key/value heads")
        }
        Ok(Self {
            q_proj: Linear::load_with(vb.pp("q_proj"), h, nh * hd, true, precision)?,
            k_proj: Linear::load_with(vb.pp("k_proj"), h, kv * hd, true, precision)?,
            v_proj: Linear::load_with(vb.pp("v_proj"), h, kv * hd, true, precision)?,
            o_proj: Linear::load_with(vb.pp("o_proj"), nh * hd, h, false, precision)?,
            heads: nh,
            kv_heads: kv,
            head_dim: hd,
        })
    }

    /// `x` `(B, 2n, H)` → `(B, 2n, H)`; `rope` holds the tables of positions `0 … 2n−1`.
    pub fn forward(&self, x: &Tensor, rope: &RopeTables) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        if l % 2 != 0 {
            candle_core::bail!("encoder input has {l} rows, expected 2n (visual tokens then queries)")
        }
        let n = l / 2;
        let heads = |t: Tensor, nh: usize| -> Result<Tensor> {
            t.reshape((b, l, nh, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(self.q_proj.forward(x)?, self.heads)?;
        let k = heads(self.k_proj.forward(x)?, self.kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.kv_heads)?;
        let q = apply_tables(&q, &rope.cos, &rope.sin)?;
        let k = apply_tables(&k, &rope.cos, &rope.sin)?;
        let out = mixed_attention(&q, &k, &v, n)?;
        let out = out.transpose(1, 2)?.reshape((b, l, self.heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// `softmax(q·kᵀ/√d + mask)·v` with the mixed mask for `n` visual tokens:
/// `q` `(B, heads, 2n, d)`, `k`/`v` `(B, kv_heads, 2n, d)` → `(B, heads, 2n, d)`.
pub fn mixed_attention(q: &Tensor, k: &Tensor, v: &Tensor, n: usize) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scale = 1.0 / (d as f64).sqrt();
    if q.device().is_cpu() {
        // Leading dims flatten into heads (b·heads, b·kv_heads), which keeps the GQA mapping.
        let visual = attention_tensors(
            &q.narrow(2, 0, n)?,
            &k.narrow(2, 0, n)?,
            &v.narrow(2, 0, n)?,
            None,
            scale as f32,
            false,
        )?;
        let queries = attention_tensors(&q.narrow(2, n, n)?, k, v, None, scale as f32, true)?;
        return Tensor::cat(&[&visual, &queries], 2);
    }
    let n_rep = q.dim(1)? / k.dim(1)?;
    let k = candle_transformers::utils::repeat_kv(k.clone(), n_rep)?.contiguous()?;
    let v = candle_transformers::utils::repeat_kv(v.clone(), n_rep)?.contiguous()?;
    let dtype = q.dtype();
    let mask = super::mask::additive(n, DType::F32, q.device())?;
    let scores = (q.matmul(&k.t()?)? * scale)?
        .to_dtype(DType::F32)?
        .broadcast_add(&mask)?;
    let p = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    p.matmul(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU split (bidirectional visual call + causal query call) against a naive masked
    /// softmax with the explicit mask, GQA with 2 query heads per KV head, batch 2.
    #[test]
    fn split_kernel_calls_equal_the_explicit_mask() {
        let dev = Device::Cpu;
        let (b, h, kv, n, d) = (2, 4, 2, 5, 8);
        let rnd = |shape: (usize, usize, usize, usize), seed: u32| {
            let len = shape.0 * shape.1 * shape.2 * shape.3;
            let v: Vec<f32> = (0..len as u32)
                .map(|i| ((i.wrapping_mul(2654435761u32).wrapping_add(seed * 40503)) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let q = rnd((b, h, 2 * n, d), 1);
        let k = rnd((b, kv, 2 * n, d), 2);
        let v = rnd((b, kv, 2 * n, d), 3);
        let got = mixed_attention(&q, &k, &v, n).unwrap();
        let kr = candle_transformers::utils::repeat_kv(k, h / kv).unwrap();
        let vr = candle_transformers::utils::repeat_kv(v, h / kv).unwrap();
        let mask = crate::vision::ocr2::mask::additive(n, DType::F32, &dev).unwrap();
        let s = (q.matmul(&kr.t().unwrap()).unwrap() * (1.0 / (d as f64).sqrt()))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let want = candle_nn::ops::softmax_last_dim(&s).unwrap().matmul(&vr).unwrap();
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
