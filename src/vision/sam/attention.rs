//! SAM multi-head attention with decomposed relative position (spec §5.4).
//!
//! `logits = (q·k)/√d + ⟨q, R_h[yq, yk]⟩ + ⟨q, R_w[xq, xk]⟩` with the unscaled q in the bias.
//! Queries are processed in chunks of whole grid rows so that a global layer never holds the
//! full `heads × N × N` score matrix: at 1024² (N = 4096, 12 heads) that matrix alone would be
//! 0.8 GB, whereas one chunk stays within [`SCORE_BUDGET`] elements. The bias rows of a chunk
//! are formed from the gathered tables as two small batched matmuls.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::biased_softmax::biased_softmax;
use super::rel_pos::RelPos;
use crate::nn::{Linear, Taps};

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
    /// Loads `qkv`, `proj` and the relative tables of `rel_len` rows from `vb` (= `blocks.i.attn`).
    pub fn load(vb: VarBuilder, dim: usize, heads: usize, rel_len: usize, index: usize) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("SAM attention: width {dim} is not divisible by {heads} heads");
        }
        let head_dim = dim / heads;
        Ok(Self {
            qkv: Linear::load(vb.pp("qkv"), dim, 3 * dim, true)?,
            proj: Linear::load(vb.pp("proj"), dim, dim, true)?,
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
        let bh = b * nh;
        // qkv channels are [q | k | v], each split into heads of `d` contiguous channels.
        let qkv = self.qkv.forward(x)?.reshape((b, n, 3, nh, d))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
        let q = qkv.get(0)?.reshape((bh, n, d))?;
        let k_t = qkv.get(1)?.reshape((bh, n, d))?.t()?;
        let v = qkv.get(2)?.reshape((bh, n, d))?;

        let rel = self.rel_pos.gathered(h, w)?;
        if rel.resized && taps.enabled() {
            taps.put(format!("dbg_sam_block{}_rel_pos_h_resized", self.index), &rel.h);
            taps.put(format!("dbg_sam_block{}_rel_pos_w_resized", self.index), &rel.w);
        }
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
            let q4 = qc.reshape((bh, r, w, d))?;
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
                .matmul(&rw_t)?
                .reshape((w, bh, r, w))?
                .permute((1, 2, 0, 3))?
                .reshape((bh, r * w, w))?;
            // Keys are flattened row-major: (ky, kx) → ky·w + kx.
            let probs = biased_softmax(&scores, &rel_h, &rel_w)?;
            outs.push(probs.matmul(&v)?);
        }
        let o = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 1)? };
        let o = o.reshape((b, nh, h, w, d))?.permute((0, 2, 3, 1, 4))?.reshape((b, h, w, c))?;
        self.proj.forward(&o)
    }
}
