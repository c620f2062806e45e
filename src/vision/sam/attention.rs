//! SAM multi-head attention with decomposed relative position (spec §5.4).
//!
//! `logits = (q·k)/√d + ⟨q, R_h[yq, yk]⟩ + ⟨q, R_w[xq, xk]⟩` with the unscaled q in the bias.
//! A global layer must never hold the full `heads × N × N` score matrix: at 1024² (N = 4096,
//! 12 heads) it alone would be 0.8 GB. On the CPU the blockwise kernel adds the bias per key
//! block from two small per-query terms; elsewhere queries are processed in chunks of whole
//! grid rows whose score matrix stays within [`SCORE_BUDGET`] elements. The bias terms are
//! formed from the gathered tables as two small batched matmuls.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::biased_softmax::biased_softmax;
use super::rel_pos::{Gathered, RelPos};
use crate::nn::precision::Precision;
use crate::nn::{Linear, Taps};
use crate::vision::cpu_attention::{self, RelPosBias};

/// Upper bound on the elements of one chunk's score matrix (16 Mi f32 = 64 MB; with the
/// probabilities of the same size the transient stays around 130 MB).
pub const SCORE_BUDGET: usize = 1 << 24;

/// One SAM attention layer.
#[derive(Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    rel_pos: RelPos,
    heads: usize,
    head_dim: usize,
    /// Block index, used to name the debug taps.
    index: usize,
}

impl Attention {
    /// Loads `qkv`, `proj` (in `precision`) and the relative tables of `rel_len` rows from
    /// `vb` (= `blocks.i.attn`).
    pub fn load(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        rel_len: usize,
        index: usize,
        precision: Precision,
    ) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("SAM attention: width {dim} is not divisible by {heads} heads");
        }
        let head_dim = dim / heads;
        Ok(Self {
            qkv: Linear::load_with(vb.pp("qkv"), dim, 3 * dim, true, precision)?,
            proj: Linear::load_with(vb.pp("proj"), dim, dim, true, precision)?,
            rel_pos: RelPos::load(vb.clone(), rel_len, head_dim)?,
            heads,
            head_dim,
            index,
        })
    }

    /// Attends over each `(H, W)` grid of `x` `(B, H, W, C)` and returns `(B, H, W, C)`.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let (nh, d) = (self.heads, self.head_dim);
        let n = h * w;
        // qkv channels are [q | k | v], each split into heads of `d` contiguous channels;
        // one copy puts them head-major: (3, B·heads, N, d).
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, nh, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let qkv = qkv.reshape((3, b * nh, n, d))?;
        let rel = self.rel_pos.gathered(h, w)?;
        if rel.resized && taps.enabled() {
            taps.put(format!("dbg_sam_block{}_rel_pos_h_resized", self.index), &rel.h);
            taps.put(format!("dbg_sam_block{}_rel_pos_w_resized", self.index), &rel.w);
        }
        let o = if qkv.device().is_cpu() {
            self.attend_cpu(&qkv, &rel, (h, w))?
        } else {
            self.attend_chunked(&qkv, &rel, (h, w))?
        };
        let o = o
            .reshape((b, nh, h, w, d))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, h, w, c))?;
        self.proj.forward(&o)
    }

    /// The decomposed bias terms of queries `q (bh, r, w, d)` lying on grid rows
    /// `y0..y0 + r`: `rel_h (bh, r·w, h)` and `rel_w (bh, r·w, w)`, from the UNSCALED q.
    fn bias_terms(&self, q4: &Tensor, rh_t: &Tensor, rw_t: &Tensor, y0: usize, h: usize) -> Result<(Tensor, Tensor)> {
        let (bh, r, w, d) = q4.dims4()?;
        // rel_h[b, y, x, ky] = Σ_c q[b, y, x, c] · R_h[y, ky, c]: batched over query rows y.
        let rel_h = q4
            .permute((1, 0, 2, 3))?
            .contiguous()?
            .reshape((r, bh * w, d))?
            .matmul(&rh_t.narrow(0, y0, r)?)?
            .reshape((r, bh, w, h))?
            .permute((1, 0, 2, 3))?
            .reshape((bh, r * w, h))?;
        // rel_w[b, y, x, kx] = Σ_c q[b, y, x, c] · R_w[x, kx, c]: batched over query columns x.
        let rel_w = q4
            .permute((2, 0, 1, 3))?
            .contiguous()?
            .reshape((w, bh * r, d))?
            .matmul(rw_t)?
            .reshape((w, bh, r, w))?
            .permute((1, 2, 0, 3))?
            .reshape((bh, r * w, w))?;
        Ok((rel_h, rel_w))
    }

    /// CPU: the blockwise kernel with the bias added per key block (no score matrix).
    fn attend_cpu(&self, qkv: &Tensor, rel: &Gathered, (h, w): (usize, usize)) -> Result<Tensor> {
        let (_, bh, _, d) = qkv.dims4()?;
        let rh_t = rel.h.transpose(1, 2)?.contiguous()?;
        let rw_t = rel.w.transpose(1, 2)?.contiguous()?;
        let q4 = qkv.get(0)?.reshape((bh, h, w, d))?;
        let (rel_h, rel_w) = self.bias_terms(&q4, &rh_t, &rw_t, 0, h)?;
        let bias = RelPosBias {
            rel_h: &rel_h,
            rel_w: &rel_w,
        };
        cpu_attention::attention(qkv, Some(bias), 1.0 / (d as f64).sqrt())?.to_dtype(qkv.dtype())
    }

    /// Other devices: candle ops over chunks of whole query rows, so that one chunk's score
    /// matrix stays within [`SCORE_BUDGET`] elements.
    fn attend_chunked(&self, qkv: &Tensor, rel: &Gathered, (h, w): (usize, usize)) -> Result<Tensor> {
        let (_, bh, n, d) = qkv.dims4()?;
        let q = qkv.get(0)?;
        let k_t = qkv.get(1)?.t()?;
        let v = qkv.get(2)?;
        // (rows, d, keys) so that a chunk's bias is a plain batched matmul.
        let rh_t = rel.h.transpose(1, 2)?.contiguous()?;
        let rw_t = rel.w.transpose(1, 2)?.contiguous()?;
        let scale = 1.0 / (d as f64).sqrt();
        let rows = (SCORE_BUDGET / (bh * n * w).max(1)).clamp(1, h);
        let mut outs = Vec::with_capacity(h.div_ceil(rows));
        for y0 in (0..h).step_by(rows) {
            let r = rows.min(h - y0);
            let qc = q.narrow(1, y0 * w, r * w)?.contiguous()?; // (bh, r·w, d)
                                                                // Scaling the chunk's queries costs r·w·d instead of a pass over the scores.
            let scores = (&qc * scale)?.matmul(&k_t)?; // (bh, r·w, n)
            let (rel_h, rel_w) = self.bias_terms(&qc.reshape((bh, r, w, d))?, &rh_t, &rw_t, y0, h)?;
            // Keys are flattened row-major: (ky, kx) → ky·w + kx.
            let probs = biased_softmax(&scores, &rel_h, &rel_w)?;
            outs.push(probs.matmul(&v)?);
        }
        if outs.len() == 1 {
            Ok(outs.remove(0))
        } else {
            Tensor::cat(&outs, 1)
        }
    }
}
