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

use candle_core::{bail, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

use super::{KernelPath, Op, SendPtr};

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
    attention_with(Op::Attention.active_tier(), q, k, v, shape, bias, scale, causal, out)
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
    let AttnShape {
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim: d,
    } = shape;
    if kv_heads == 0 || heads % kv_heads != 0 {
        bail!("attention: {heads} heads are not a multiple of {kv_heads} kv heads");
    }
    if q.len() != heads * q_len * d || out.len() != q.len() {
        bail!(
            "attention: q/out have {}/{} elements, expected {heads}×{q_len}×{d}",
            q.len(),
            out.len()
        );
    }
    if k.len() != kv_heads * kv_len * d || v.len() != k.len() {
        bail!(
            "attention: k/v have {}/{} elements, expected {kv_heads}×{kv_len}×{d}",
            k.len(),
            v.len()
        );
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
    // Keys transposed once, so each block's scores are rows of `BK` contiguous keys.
    let ldk = kv_len.next_multiple_of(BK);
    let mut kt = vec![0f32; kv_heads * d * ldk];
    kt.par_chunks_mut(d * ldk)
        .zip(k.par_chunks(kv_len * d))
        .for_each(|(dst, src)| {
            // Block by block, writing contiguous runs (the block's reads stay in L1).
            for j0 in (0..kv_len).step_by(BK) {
                let block = &src[j0 * d..(j0 + BK).min(kv_len) * d];
                for dd in 0..d {
                    let row = &mut dst[dd * ldk + j0..dd * ldk + j0 + block.len() / d];
                    for (j, val) in row.iter_mut().enumerate() {
                        *val = block[j * d + dd];
                    }
                }
            }
        });
    let ctx = Ctx {
        q,
        kt: &kt,
        ldk,
        v,
        shape,
        bias,
        scale,
        causal,
        out: SendPtr(out.as_mut_ptr()),
    };
    let path = Op::Attention.tier_under(path);
    let qblocks = q_len.div_ceil(BQ);
    (0..heads * qblocks).into_par_iter().for_each(|t| {
        let (h, i0) = (t / qblocks, (t % qblocks) * BQ);
        let i1 = (i0 + BQ).min(q_len);
        match path {
            // SAFETY: each path is only chosen when the CPU supports its features.
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => unsafe { task_avx512(&ctx, h, i0, i1) },
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => unsafe { task_avx2(&ctx, h, i0, i1) },
            _ => task::<Generic<false>>(&ctx, h, i0, i1),
        }
    });
    Ok(())
}

/// [`attention`] on candle tensors (CPU), for the model code.
///
/// `q` `(…, heads, q_len, d)`, `k`/`v` `(…, kv_heads, kv_len, d)`: all leading dimensions
/// are flattened into heads (batch × heads). `rel`: SAM's `(rel_h, rel_w)` with shapes
/// `(…, q_len, kh)` and `(…, q_len, kw)` flattened the same way. Any dtype and layout is
/// accepted (converted to contiguous f32); the result has `q`'s shape and dtype.
pub fn attention_tensors(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rel: Option<(&Tensor, &Tensor)>,
    scale: f32,
    causal: bool,
) -> Result<Tensor> {
    let (qd, kd) = (q.dims(), k.dims());
    if qd.len() < 2 || kd.len() < 2 || v.dims() != kd {
        bail!(
            "attention: q {qd:?}, k {kd:?}, v {:?} are not (…, len, d) with equal k and v",
            v.dims()
        );
    }
    let (q_len, d) = (qd[qd.len() - 2], qd[qd.len() - 1]);
    let kv_len = kd[kd.len() - 2];
    let heads = q.elem_count() / (q_len * d).max(1);
    let kv_heads = k.elem_count() / (kv_len * kd[kd.len() - 1]).max(1);
    let shape = AttnShape {
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim: d,
    };
    let (q32, k32, v32) = (host_f32(q)?, host_f32(k)?, host_f32(v)?);
    let mut out = vec![0f32; q32.len()];
    match rel {
        None => attention(&q32, &k32, &v32, shape, AttnBias::None, scale, causal, &mut out)?,
        Some((rh, rw)) => {
            let (kh, kw) = (
                rh.dims().last().copied().unwrap_or(0),
                rw.dims().last().copied().unwrap_or(0),
            );
            let (rel_h, rel_w) = (host_f32(rh)?, host_f32(rw)?);
            let bias = AttnBias::RelPos {
                rel_h: &rel_h,
                rel_w: &rel_w,
                kh,
                kw,
            };
            attention(&q32, &k32, &v32, shape, bias, scale, causal, &mut out)?
        }
    }
    Tensor::from_vec(out, qd, &Device::Cpu)?.to_dtype(q.dtype())
}

/// The tensor's values as a contiguous f32 host vector (copies; errors off the CPU).
fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    if !t.device().is_cpu() {
        bail!("attention: the CPU kernel got a tensor on {:?}", t.device());
    }
    let t = t.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => bail!("attention: expected a CPU tensor"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(data[a..b].to_vec()),
        None => bail!("attention: tensor is not contiguous"),
    }
}

struct Ctx<'a> {
    q: &'a [f32],
    /// Keys transposed per kv head: `(kv_heads, head_dim, ldk)`, zero past `kv_len`.
    kt: &'a [f32],
    /// Row length of `kt`: `kv_len` rounded up to whole key blocks.
    ldk: usize,
    v: &'a [f32],
    shape: AttnShape,
    bias: AttnBias<'a>,
    scale: f32,
    causal: bool,
    out: SendPtr,
}

/// The two small matrix products of a block, per instruction set.
trait BlockKernels {
    /// `s[r][j] = Σ_d q[r·d + d'] · kt[d'·ldk + j]` for the `RB` query rows at `q`.
    ///
    /// # Safety
    /// `q` holds `RB · d` values, `kt` `d` rows of `BK` values `ldk` apart; the CPU supports
    /// the implementation.
    unsafe fn scores(q: *const f32, d: usize, kt: *const f32, ldk: usize, s: &mut [[f32; BK]; RB]);
    /// `o[r·d + d'] += Σ_{j<nb} p[r][j] · v[j·d + d']` for `RB` rows of `o`.
    ///
    /// # Safety
    /// `v` holds `nb · d` values, `o` `RB · d`; the CPU supports the implementation.
    unsafe fn pv(p: &[[f32; BK]; RB], v: *const f32, nb: usize, d: usize, o: *mut f32);
    /// `x[j] = e^(x[j] − m)` for a row whose entries are all ≤ `m` (masked ones −∞).
    ///
    /// # Safety
    /// The CPU supports the implementation.
    #[inline(always)]
    unsafe fn exp_row(x: &mut [f32; BK], m: f32) {
        for v in x.iter_mut() {
            *v = exp_neg(*v - m);
        }
    }
}

/// Plain loops; with `FMA` (compiled inside an AVX2+FMA function) the compiler fuses and
/// vectorises them.
struct Generic<const FMA: bool>;

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

impl<const FMA: bool> BlockKernels for Generic<FMA> {
    #[inline(always)]
    unsafe fn scores(q: *const f32, d: usize, kt: *const f32, ldk: usize, s: &mut [[f32; BK]; RB]) {
        *s = [[0.0; BK]; RB];
        for dd in 0..d {
            let krow = &*(kt.add(dd * ldk) as *const [f32; BK]);
            for (r, acc) in s.iter_mut().enumerate() {
                let qv = *q.add(r * d + dd);
                for j in 0..BK {
                    acc[j] = madd::<FMA>(qv, krow[j], acc[j]);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn pv(p: &[[f32; BK]; RB], v: *const f32, nb: usize, d: usize, o: *mut f32) {
        for j in 0..nb {
            let vrow = std::slice::from_raw_parts(v.add(j * d), d);
            for (r, pr) in p.iter().enumerate() {
                let orow = std::slice::from_raw_parts_mut(o.add(r * d), d);
                let pj = pr[j];
                for (ov, vv) in orow.iter_mut().zip(vrow) {
                    *ov = madd::<FMA>(pj, *vv, *ov);
                }
            }
        }
    }
}

/// AVX-512: scores keep the 4×64 block in 16 zmm registers; `pv` keeps 4 rows × 64
/// channels of the output in registers while streaming the value rows.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl BlockKernels for Avx512 {
    #[inline(always)]
    unsafe fn scores(q: *const f32, d: usize, kt: *const f32, ldk: usize, s: &mut [[f32; BK]; RB]) {
        avx512_scores(q, d, kt, ldk, s)
    }

    #[inline(always)]
    unsafe fn pv(p: &[[f32; BK]; RB], v: *const f32, nb: usize, d: usize, o: *mut f32) {
        avx512_pv(p, v, nb, d, o)
    }

    #[inline(always)]
    unsafe fn exp_row(x: &mut [f32; BK], m: f32) {
        Self::exp_row_impl(x, m)
    }
}

/// Kept out of line so the register allocator sees only this loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
#[inline(never)]
unsafe fn avx512_scores(q: *const f32, d: usize, kt: *const f32, ldk: usize, s: &mut [[f32; BK]; RB]) {
    use core::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); BK / 16]; RB];
    for dd in 0..d {
        let kp = kt.add(dd * ldk);
        let kv = [
            _mm512_loadu_ps(kp),
            _mm512_loadu_ps(kp.add(16)),
            _mm512_loadu_ps(kp.add(32)),
            _mm512_loadu_ps(kp.add(48)),
        ];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let qv = _mm512_set1_ps(*q.add(r * d + dd));
            for c in 0..BK / 16 {
                acc_r[c] = _mm512_fmadd_ps(qv, kv[c], acc_r[c]);
            }
        }
    }
    for (srow, acc_r) in s.iter_mut().zip(&acc) {
        for (c, v) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(srow.as_mut_ptr().add(16 * c), *v);
        }
    }
}

/// Kept out of line so the register allocator sees only this loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
#[inline(never)]
unsafe fn avx512_pv(p: &[[f32; BK]; RB], v: *const f32, nb: usize, d: usize, o: *mut f32) {
    use core::arch::x86_64::*;
    // Output channels in chunks of up to 64 (4 vectors), the last ones masked.
    let mut c0 = 0;
    while c0 < d {
        let width = (d - c0).min(64);
        let masks: [__mmask16; 4] = core::array::from_fn(|c| {
            let n = width.saturating_sub(16 * c).min(16);
            ((1u32 << n) - 1) as __mmask16
        });
        let mut acc = [[_mm512_setzero_ps(); 4]; RB];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for c in 0..4 {
                acc_r[c] = _mm512_maskz_loadu_ps(masks[c], o.add(r * d + c0 + 16 * c));
            }
        }
        for j in 0..nb {
            let vp = v.add(j * d + c0);
            let vv: [__m512; 4] = core::array::from_fn(|c| _mm512_maskz_loadu_ps(masks[c], vp.add(16 * c)));
            for (pr, acc_r) in p.iter().zip(acc.iter_mut()) {
                let pj = _mm512_set1_ps(pr[j]);
                for c in 0..4 {
                    acc_r[c] = _mm512_fmadd_ps(pj, vv[c], acc_r[c]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for c in 0..4 {
                _mm512_mask_storeu_ps(o.add(r * d + c0 + 16 * c), masks[c], acc_r[c]);
            }
        }
        c0 += width;
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// Same polynomial as [`exp_neg`], 16 lanes at a time.
    #[inline(always)]
    unsafe fn exp_row_impl(x: &mut [f32; BK], m: f32) {
        use core::arch::x86_64::*;
        let mv = _mm512_set1_ps(m);
        let lo = _mm512_set1_ps(-87.0);
        let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
        let c: [__m512; 7] = [
            _mm512_set1_ps(1.535_336_2e-4),
            _mm512_set1_ps(1.339_887_4e-3),
            _mm512_set1_ps(9.618_437e-3),
            _mm512_set1_ps(5.550_332_5e-2),
            _mm512_set1_ps(2.402_264_8e-1),
            _mm512_set1_ps(6.931_472e-1),
            _mm512_set1_ps(1.0),
        ];
        for i in 0..BK / 16 {
            let p = x.as_mut_ptr().add(16 * i);
            let t = _mm512_mul_ps(_mm512_max_ps(_mm512_sub_ps(_mm512_loadu_ps(p), mv), lo), log2e);
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            let f = _mm512_sub_ps(t, n);
            let mut y = c[0];
            for ck in &c[1..] {
                y = _mm512_fmadd_ps(y, f, *ck);
            }
            _mm512_storeu_ps(p, _mm512_scalef_ps(y, n));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn task_avx512(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    task::<Avx512>(ctx, h, i0, i1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    task::<Generic<true>>(ctx, h, i0, i1)
}

/// `e^x` for `x ≤ 0`, branch-free so loops over it vectorise; relative error ~2e-7.
/// Inputs below −87 give ≈ 1e-38.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits,
    // with no libm call and no saturating float → int conversion (both block vectorising).
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * LOG2E;
    let shifted = t + ROUND;
    let n = shifted - ROUND;
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let f = t - n; // in [-0.5, 0.5]
                   // Minimax polynomial for 2^f on [-0.5, 0.5].
    let p = 1.535_336_2e-4f32;
    let p = p * f + 1.339_887_4e-3;
    let p = p * f + 9.618_437e-3;
    let p = p * f + 5.550_332_5e-2;
    let p = p * f + 2.402_264_8e-1;
    let p = p * f + 6.931_472e-1;
    let p = p * f + 1.0;
    f32::from_bits(((ni + 127) << 23) as u32) * p
}

/// Lane-wise maximum and sum over a block row, written with 16 explicit lanes so the
/// compiler vectorises them (a plain fold is sequential in IEEE order).
#[inline(always)]
fn lanes_max(x: &[f32; BK]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    for c in x.chunks_exact(16) {
        for (a, b) in m.iter_mut().zip(c) {
            *a = if *b > *a { *b } else { *a };
        }
    }
    m.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b))
}

#[inline(always)]
fn lanes_sum(x: &[f32; BK]) -> f32 {
    let mut s = [0f32; 16];
    for c in x.chunks_exact(16) {
        for (a, b) in s.iter_mut().zip(c) {
            *a += *b;
        }
    }
    s.iter().sum()
}

/// Adds SAM's decomposed bias for keys `j0..j0+limit` of one query: runs of keys on the
/// same grid row share `rh[yk]` and read a contiguous slice of `rw`.
#[inline(always)]
fn add_rel_pos(srow: &mut [f32], j0: usize, rh: &[f32], rw: &[f32], gw: usize) {
    let mut j = 0;
    while j < srow.len() {
        let key = j0 + j;
        let (yk, xk) = (key / gw, key % gw);
        let run = (gw - xk).min(srow.len() - j);
        let hb = rh[yk];
        for (x, w) in srow[j..j + run].iter_mut().zip(&rw[xk..xk + run]) {
            *x += hb + w;
        }
        j += run;
    }
}

/// One task: queries `i0..i1` of head `h`.
#[inline(always)]
fn task<K: BlockKernels>(ctx: &Ctx, h: usize, i0: usize, i1: usize) {
    let AttnShape {
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim: d,
    } = ctx.shape;
    let rows = i1 - i0;
    let kvh = h / (heads / kv_heads);
    let vh = &ctx.v[kvh * kv_len * d..(kvh + 1) * kv_len * d];
    // Causal: the last query of the block sees keys up to `i1 - 1 + kv_len - q_len`.
    let shift = kv_len - q_len.min(kv_len);
    let kv_end = if ctx.causal { (i1 + shift).min(kv_len) } else { kv_len };

    // Query rows padded to whole groups of RB (zero rows are computed and dropped).
    let groups = rows.div_ceil(RB);
    let mut qb = vec![0f32; groups * RB * d];
    qb[..rows * d].copy_from_slice(&ctx.q[(h * q_len + i0) * d..(h * q_len + i1) * d]);
    let mut s = vec![[[0f32; BK]; RB]; groups]; // scores, then probabilities
    let mut o = vec![0f32; groups * RB * d];
    let mut mx = [f32::NEG_INFINITY; BQ];
    let mut l = [0f32; BQ];

    for j0 in (0..kv_end).step_by(BK) {
        let nb = BK.min(kv_end - j0);
        let kt = ctx.kt[kvh * d * ctx.ldk + j0..].as_ptr();
        for (g, sg) in s.iter_mut().enumerate() {
            // SAFETY: qb holds `groups · RB · d` values; kt has `d` rows of `ldk ≥ j0 + BK`.
            unsafe { K::scores(qb.as_ptr().add(g * RB * d), d, kt, ctx.ldk, sg) };
        }
        // Scale, bias, mask, online softmax.
        for r in 0..rows {
            let qi = i0 + r;
            let limit = if ctx.causal {
                (qi + shift + 1).saturating_sub(j0).min(nb)
            } else {
                nb
            };
            let srow = &mut s[r / RB][r % RB];
            if limit == 0 {
                srow.fill(0.0);
                continue;
            }
            for x in srow.iter_mut() {
                *x *= ctx.scale;
            }
            if let AttnBias::RelPos {
                rel_h,
                rel_w,
                kh: gh,
                kw: gw,
            } = ctx.bias
            {
                let rh = &rel_h[(h * q_len + qi) * gh..(h * q_len + qi + 1) * gh];
                let rw = &rel_w[(h * q_len + qi) * gw..(h * q_len + qi + 1) * gw];
                add_rel_pos(&mut srow[..limit], j0, rh, rw, gw);
            }
            srow[limit..].fill(f32::NEG_INFINITY);
            let m_new = mx[r].max(lanes_max(srow));
            let alpha = exp_neg(mx[r] - m_new);
            // SAFETY: the task function enabled K's instruction set.
            unsafe { K::exp_row(srow, m_new) };
            srow[limit..].fill(0.0);
            l[r] = l[r] * alpha + lanes_sum(srow);
            mx[r] = m_new;
            if alpha != 1.0 {
                for x in o[r * d..(r + 1) * d].iter_mut() {
                    *x *= alpha;
                }
            }
        }
        for (g, sg) in s.iter().enumerate() {
            // SAFETY: vh holds `kv_len · d` values from `j0`, o `groups · RB · d`.
            unsafe { K::pv(sg, vh.as_ptr().add(j0 * d), nb, d, o.as_mut_ptr().add(g * RB * d)) };
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
