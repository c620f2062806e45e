//! Blockwise ("flash-style") scaled-dot-product attention on the CPU, f32.
//!
//! For each head and block of queries, keys and values are visited in blocks; the softmax is
//! computed on the fly with a running maximum and sum (online softmax), so no `Lq × Lk`
//! score matrix is ever stored. This is what makes SAM's global layers (4096 × 4096 scores
//! per head) cheap in memory, and it lets the decomposed relative-position bias of SAM be
//! added per block from two small per-query vectors instead of a full bias tensor.
//!
//! Covers: SAM window/global attention (with [`AttnBias::RelPos`]), CLIP (no mask), decoder
//! prefill (`causal`) and decode (one query over the whole cache, `causal` or not).

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::{clamp, KernelPath, SendPtr};

/// Queries per task.
const BQ: usize = 32;
/// Keys per block.
const BK: usize = 64;
/// Query rows sharing each loaded key / value row.
const RB: usize = 4;

/// Sizes of one attention call. Tensors are contiguous and row-major:
/// `q` and `out` `(heads, q_len, head_dim)`, `k` and `v` `(kv_heads, kv_len, head_dim)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; must divide `heads` (query head `h` reads kv head `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Queries per head.
    pub q_len: usize,
    /// Keys per head.
    pub kv_len: usize,
    /// Channels per head.
    pub head_dim: usize,
}

/// An additive bias on the scaled logits.
#[derive(Debug, Clone, Copy)]
pub enum AttnBias<'a> {
    /// No bias.
    None,
    /// SAM's decomposed relative position: keys form a `kh × kw` grid (row-major, so
    /// `kv_len == kh · kw`) and `bias(q, key) = rel_h[h, q, key / kw] + rel_w[h, q, key % kw]`,
    /// with `rel_h` `(heads, q_len, kh)` and `rel_w` `(heads, q_len, kw)` contiguous
    /// (SAM: `rel_h[h,q,yk] = ⟨q_unscaled, R_h[yq, yk]⟩`).
    RelPos {
        /// `(heads, q_len, kh)`.
        rel_h: &'a [f32],
        /// `(heads, q_len, kw)`.
        rel_w: &'a [f32],
        /// Key grid height.
        kh: usize,
        /// Key grid width.
        kw: usize,
    },
}

/// Attention on the active kernel path; see [`attention_with`].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttnShape,
    bias: AttnBias,
    scale: f32,
    causal: bool,
    out: &mut [f32],
) -> Result<()> {
    attention_with(super::active_path(), q, k, v, shape, bias, scale, causal, out)
}

/// `out = softmax(scale · q·kᵀ + bias [+ causal mask]) · v`, per head.
///
/// `causal`: query `i` sees keys `0..=i + kv_len − q_len` (the queries are the last `q_len`
/// positions of the sequence, as in prefill with or without a cache, and decode).
/// Errors on inconsistent sizes.
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    path: KernelPath,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttnShape,
    bias: AttnBias,
    scale: f32,
    causal: bool,
    out: &mut [f32],
) -> Result<()> {
    let AttnShape { heads, kv_heads, q_len, kv_len, head_dim: d } = shape;
    if kv_heads == 0 || heads % kv_heads != 0 {
        bail!("attention: {heads} heads are not a multiple of {kv_heads} kv heads");
    }
    if q.len() != heads * q_len * d || out.len() != q.len() {
        bail!("attention: q/out have {}/{} elements, expected {heads}×{q_len}×{d}", q.len(), out.len());
    }
    if k.len() != kv_heads * kv_len * d || v.len() != k.len() {
        bail!("attention: k/v have {}/{} elements, expected {kv_heads}×{kv_len}×{d}", k.len(), v.len());
    }
    if causal && q_len > kv_len {
        bail!("attention: causal with {q_len} queries but only {kv_len} keys");
    }
    if let AttnBias::RelPos { rel_h, rel_w, kh, kw } = bias {
        if kh * kw != kv_len || rel_h.len() != heads * q_len * kh || rel_w.len() != heads * q_len * kw {
            bail!(
                "attention: rel-pos bias {}/{} elements for a {kh}×{kw} key grid, expected {heads}×{q_len}×({kh}|{kw}) and {kv_len} keys",
                rel_h.len(),
                rel_w.len()
            );
        }
    }
    if q_len == 0 || heads == 0 || d == 0 {
        return Ok(());
    }
    if kv_len == 0 {
        bail!("attention: no keys");
    }
    let ctx = Ctx { q, k, v, shape, bias, scale, causal, out: SendPtr(out.as_mut_ptr()) };
    let path = clamp(path);
    let qblocks = q_len.div_ceil(BQ);
    (0..heads * qblocks).into_par_iter().for_each(|t| {
        let (h, i0) = (t / qblocks, (t % qblocks) * BQ);
        let i1 = (i0 + BQ).min(q_len);
        match path {
            // SAFETY: each path is only chosen when the CPU supports its features.
            #[cfg(target_arch = "x86_64")]
            KernelPath::Amx | KernelPath::Avx512 => unsafe { task_avx512(&ctx, h, i0, i1) },
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => unsafe { task_avx2(&ctx, h, i0, i1) },
            _ => task::<false>(&ctx, h, i0, i1),
        }
    });
    Ok(())
}

struct Ctx<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    shape: AttnShape,
    bias: AttnBias<'a>,
    scale: f32,
    causal: bool,
    out: SendPtr,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn task_avx512(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    task::<true>(ctx, h, i0, i1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    task::<true>(ctx, h, i0, i1)
}

/// `a·b + c`, fused when the target has FMA (`FMA`), plain otherwise (a software `fmaf`
/// would be far slower than the rounding it saves).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` for `x ≤ 0`, branch-free so loops over it vectorise; relative error ~2e-7.
/// Inputs below −87 give ≈ 1e-38 (treated as zero weight by the softmax).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let t = x.max(-87.0) * LOG2E;
    let n = (t + ROUND) - ROUND;
    let f = t - n; // in [-0.5, 0.5]
    // Minimax polynomial for 2^f on [-0.5, 0.5].
    let p = 1.535_336_2e-4f32;
    let p = p * f + 1.339_887_4e-3;
    let p = p * f + 9.618_437e-3;
    let p = p * f + 5.550_332_5e-2;
    let p = p * f + 2.402_264_8e-1;
    let p = p * f + 6.931_472e-1;
    let p = p * f + 1.0;
    f32::from_bits(((n as i32 + 127) << 23) as u32) * p
}

/// One task: queries `i0..i1` of head `h`.
#[inline(always)]
fn task<const FMA: bool>(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    let AttnShape { heads, kv_heads, q_len, kv_len, head_dim: d } = ctx.shape;
    let rows = i1 - i0;
    let kvh = h / (heads / kv_heads);
    let qh = &ctx.q[(h * q_len + i0) * d..(h * q_len + i1) * d];
    let kh = &ctx.k[kvh * kv_len * d..(kvh + 1) * kv_len * d];
    let vh = &ctx.v[kvh * kv_len * d..(kvh + 1) * kv_len * d];
    // Causal: the last query of the block sees keys up to `i1 - 1 + kv_len - q_len`.
    let shift = kv_len - q_len.min(kv_len);
    let kv_end = if ctx.causal { (i1 + shift).min(kv_len) } else { kv_len };

    let mut kt = vec![0f32; d * BK]; // key block transposed: (d, BK)
    let mut s = vec![[0f32; BK]; BQ]; // scores, then probabilities
    let mut o = vec![0f32; BQ * d];
    let mut mx = [f32::NEG_INFINITY; BQ];
    let mut l = [0f32; BQ];

    for j0 in (0..kv_end).step_by(BK) {
        let nb = BK.min(kv_end - j0);
        for (jj, key) in kh[j0 * d..(j0 + nb) * d].chunks_exact(d).enumerate() {
            for (dd, val) in key.iter().enumerate() {
                kt[dd * BK + jj] = *val;
            }
        }
        if nb < BK {
            for row in kt.chunks_exact_mut(BK) {
                row[nb..].fill(0.0);
            }
        }
        // Scores: RB query rows at a time share each row of the transposed key block.
        let mut r0 = 0;
        while r0 < rows {
            let rb = RB.min(rows - r0);
            let mut acc = [[0f32; BK]; RB];
            for dd in 0..d {
                let krow: &[f32; BK] = kt[dd * BK..(dd + 1) * BK].try_into().unwrap_or(&[0.0; BK]);
                for (r, acc_r) in acc.iter_mut().enumerate().take(rb) {
                    let qv = qh[(r0 + r) * d + dd];
                    for j in 0..BK {
                        acc_r[j] = madd::<FMA>(qv, krow[j], acc_r[j]);
                    }
                }
            }
            s[r0..r0 + rb].copy_from_slice(&acc[..rb]);
            r0 += rb;
        }
        // Scale, bias, mask, online softmax.
        for r in 0..rows {
            let qi = i0 + r;
            let limit = if ctx.causal { (qi + shift + 1).saturating_sub(j0).min(nb) } else { nb };
            let srow = &mut s[r];
            if limit == 0 {
                srow.fill(0.0);
                continue;
            }
            for x in srow[..limit].iter_mut() {
                *x *= ctx.scale;
            }
            if let AttnBias::RelPos { rel_h, rel_w, kh: gh, kw: gw } = ctx.bias {
                let rh = &rel_h[(h * q_len + qi) * gh..(h * q_len + qi + 1) * gh];
                let rw = &rel_w[(h * q_len + qi) * gw..(h * q_len + qi + 1) * gw];
                let (mut yk, mut xk) = (j0 / gw, j0 % gw);
                for x in srow[..limit].iter_mut() {
                    *x += rh[yk] + rw[xk];
                    xk += 1;
                    if xk == gw {
                        xk = 0;
                        yk += 1;
                    }
                }
            }
            let bm = srow[..limit].iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
            let m_new = mx[r].max(bm);
            let alpha = exp_neg(mx[r] - m_new);
            let mut sum = 0f32;
            for x in srow[..limit].iter_mut() {
                *x = exp_neg(*x - m_new);
                sum += *x;
            }
            srow[limit..].fill(0.0);
            l[r] = l[r] * alpha + sum;
            mx[r] = m_new;
            if alpha != 1.0 {
                for x in o[r * d..(r + 1) * d].iter_mut() {
                    *x *= alpha;
                }
            }
        }
        // o += p · v, RB rows per loaded value row.
        let mut r0 = 0;
        while r0 < rows {
            let rb = RB.min(rows - r0);
            let ob = &mut o[r0 * d..(r0 + rb) * d];
            for (j, vrow) in vh[j0 * d..(j0 + nb) * d].chunks_exact(d).enumerate() {
                for (r, orow) in ob.chunks_exact_mut(d).enumerate() {
                    let p = s[r0 + r][j];
                    for (ov, vv) in orow.iter_mut().zip(vrow) {
                        *ov = madd::<FMA>(p, *vv, *ov);
                    }
                }
            }
            r0 += rb;
        }
    }
    for r in 0..rows {
        let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
        let base = (h * q_len + i0 + r) * d;
        for (dd, val) in o[r * d..(r + 1) * d].iter().enumerate() {
            // SAFETY: each task owns rows `i0..i1` of head `h` of the output.
            unsafe { *ctx.out.0.add(base + dd) = val * inv };
        }
    }
}
