//! The packed BF16 GEMM driver: `out (M×N) = x (M×K) · Wᵀ + bias`, f32 in and out, bf16
//! weights with f32 accumulation. It checks shapes, prepares the activation (converted to
//! bf16 once for the tiers with bf16 instructions, f32 for the widening tiers), and splits the
//! output into (row block × panel block) tasks run in parallel with rayon.
//!
//! Also home of the one generic register-blocking loop every SIMD GEMM tier shares
//! ([`Micro`], [`drive`]): a tier only supplies its `MR × NR` micro-kernel.

use std::borrow::Cow;

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::pack::{PackedBf16, PANEL};
#[cfg(target_arch = "x86_64")]
use super::{amx, avx2, avx512};
use super::{portable, KernelPath, Op, SendPtr};

/// Smallest M for which the AMX path uses tiles; thinner products go to AVX512-BF16, whose
/// cost scales with M instead of a fixed 16 rows.
pub const AMX_MIN_M: usize = 16;

/// Rows per AMX block; the activation is padded to a multiple of it on the AMX path.
pub(crate) const AMX_ROWS: usize = 32;

/// `out = x · Wᵀ + bias` on the active bf16 tier; see [`gemm_bf16_with`].
pub fn gemm_bf16(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    gemm_bf16_with(Op::Bf16Gemm.active_tier(), x, m, w, bias, out)
}

/// `out (M×N, row-major) = x (M×K, row-major) · Wᵀ + bias (N)` on the best bf16 tier at or
/// below `path` that the CPU has ([`Op::tier_under`]).
///
/// The products are taken in bf16 on the AMX and AVX512-BF16 tiers (x is rounded to bf16);
/// the widening tiers (AVX-512F, AVX2, portable) keep x in f32. Sums are f32. Expect a
/// relative error of a few 1e-3 of `|x|·|w|` per output. Errors when a slice length does not
/// match `m`, `N`, `K`.
pub fn gemm_bf16_with(
    path: KernelPath,
    x: &[f32],
    m: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    if x.len() != m * k {
        bail!("gemm_bf16: x has {} elements, expected {m}×{k}", x.len());
    }
    if out.len() != m * n {
        bail!("gemm_bf16: out has {} elements, expected {m}×{n}", out.len());
    }
    if let Some(b) = bias {
        if b.len() != n {
            bail!("gemm_bf16: bias has {} elements, expected {n}", b.len());
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dst = Dst {
        ptr: SendPtr(out.as_mut_ptr()),
        n,
        bias,
    };
    match Op::Bf16Gemm.tier_under(path) {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Amx if m >= AMX_MIN_M => {
            let a = bf16_rows(x, m, k, amx::lda(w.k_padded()), m.next_multiple_of(amx::MR));
            run_tiles(m, w.panels(), amx::MR, 2, |r0, r1, p0, p1| {
                // SAFETY: the AMX tier is only chosen when the CPU and OS support it.
                unsafe { amx::gemm_bf16_tile(&a, w, r0, r1, p0, p1, &dst) }
            });
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Amx | KernelPath::Avx512Bf16 => {
            let a = bf16_rows(x, m, k, w.k_padded(), m);
            run_tiles(m, w.panels(), avx512::Bf16::MR, avx512::Bf16::NR, |r0, r1, p0, p1| {
                // SAFETY: the AVX512-BF16 tier is only chosen when the CPU supports it.
                unsafe { avx512::gemm_bf16_tile(&a, w, r0, r1, p0, p1, &dst) }
            });
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => {
            let a = f32_rows(x, m, k, w.k_padded());
            run_tiles(
                m,
                w.panels(),
                avx512::Bf16Wide::MR,
                avx512::Bf16Wide::NR,
                |r0, r1, p0, p1| {
                    // SAFETY: the AVX-512 tier is only chosen when the CPU supports AVX-512F/BW/VL.
                    unsafe { avx512::gemm_bf16_wide_tile(&a, w, r0, r1, p0, p1, &dst) }
                },
            );
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => {
            let a = f32_rows(x, m, k, w.k_padded());
            run_tiles(m, w.panels(), avx2::Bf16::MR, avx2::Bf16::NR, |r0, r1, p0, p1| {
                // SAFETY: the AVX2 tier is only chosen when the CPU supports AVX2 and FMA.
                unsafe { avx2::gemm_bf16_tile(&a, w, r0, r1, p0, p1, &dst) }
            });
        }
        // Portable, and every tier on CPUs other than x86-64 (where only it is available).
        _ => {
            let a = f32_rows(x, m, k, w.k_padded());
            run_tiles(m, w.panels(), 4, 1, |r0, r1, p0, p1| {
                portable::gemm_bf16_tile(&a, w, r0, r1, p0, p1, &dst)
            });
        }
    }
    Ok(())
}

/// One register-blocked micro-kernel of a packed GEMM tier: it computes `mr ≤ MR` rows ×
/// `nr ≤ NR` panels (`nr` a power of two) over the whole padded K and stores them.
pub(crate) trait Micro {
    /// Activation element as the kernel reads it.
    type A;
    /// Packed weight element.
    type W;
    /// Where results go ([`Dst`] or [`super::gemv_int8::DstI8`]).
    type D<'d>;
    /// Most rows per call.
    const MR: usize;
    /// Most panels per call (a power of two).
    const NR: usize;

    /// # Safety
    /// The CPU must have the tier's features; `a` points at row `row` of the activation
    /// (`lda` elements per row, `mr` rows readable over the padded K), `b` at panel `panel`
    /// of the weight (`ps` elements per panel, `nr` panels); no other task writes the block.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        mr: usize,
        nr: usize,
        a: *const Self::A,
        lda: usize,
        b: *const Self::W,
        ps: usize,
        row: usize,
        panel: usize,
        dst: &Self::D<'_>,
    );
}

/// The register-blocking loop shared by every SIMD tier: output rows `r0..r1` × panels
/// `p0..p1` in `K::MR × K::NR` steps (narrower at the edges).
///
/// # Safety
/// As for [`Micro::run`], for every row in `r0..r1` and panel in `p0..p1`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn drive<K: Micro>(
    a: *const K::A,
    lda: usize,
    b: *const K::W,
    ps: usize,
    r0: usize,
    r1: usize,
    p0: usize,
    p1: usize,
    dst: &K::D<'_>,
) {
    let mut p = p0;
    while p < p1 {
        let mut nr = K::NR;
        while nr > p1 - p {
            nr /= 2;
        }
        let bp = b.add(p * ps);
        let mut r = r0;
        while r < r1 {
            let mr = K::MR.min(r1 - r);
            K::run(mr, nr, a.add(r * lda), lda, bp, ps, r, p, dst);
            r += mr;
        }
        p += nr;
    }
}

/// Where a kernel writes its results: row-major `M×N` output plus the optional bias.
pub(crate) struct Dst<'a> {
    pub ptr: SendPtr,
    pub n: usize,
    pub bias: Option<&'a [f32]>,
}

impl Dst<'_> {
    /// Writes the 16 values of panel column block `col0..col0+16` of `row`, skipping the
    /// padded columns past N and adding the bias.
    ///
    /// # Safety
    /// `row` must be a valid output row and no other task may write this block.
    #[inline(always)]
    pub unsafe fn store16(&self, row: usize, col0: usize, vals: &[f32; PANEL]) {
        if col0 >= self.n {
            return;
        }
        let len = PANEL.min(self.n - col0);
        let dst = self.ptr.0.add(row * self.n + col0);
        let out = std::slice::from_raw_parts_mut(dst, len);
        match self.bias {
            Some(b) => {
                for ((y, v), bv) in out.iter_mut().zip(vals).zip(&b[col0..col0 + len]) {
                    *y = v + bv;
                }
            }
            None => out.copy_from_slice(&vals[..len]),
        }
    }
}

/// Calls `f(r0, r1, p0, p1)` in parallel over blocks of the (rows × panels) grid. Row blocks
/// are multiples of `mr` rows, panel blocks multiples of `pr` panels; blocks are sized so
/// that a panel block stays in L2 while the rows of its task stream through it.
pub(crate) fn run_tiles<F>(m: usize, panels: usize, mr: usize, pr: usize, f: F)
where
    F: Fn(usize, usize, usize, usize) + Sync + Send,
{
    let threads = rayon::current_num_threads().max(1);
    let mc = (64usize).next_multiple_of(mr);
    let row_blocks = m.div_ceil(mc);
    // Enough panel blocks to keep every thread busy, without going below `pr` panels.
    let want_blocks = (4 * threads).div_ceil(row_blocks).max(1);
    let mut pc = panels.div_ceil(want_blocks).next_multiple_of(pr).max(pr);
    pc = pc.min(32usize.next_multiple_of(pr));
    let panel_blocks = panels.div_ceil(pc);
    let tasks = row_blocks * panel_blocks;
    let run = |t: usize| {
        let (i, j) = (t / panel_blocks, t % panel_blocks);
        f(i * mc, ((i + 1) * mc).min(m), j * pc, ((j + 1) * pc).min(panels));
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// `x` as bf16 bits, `mpad` rows of `kp` (the row stride, ≥ padded K), zero padded.
pub(crate) fn bf16_rows(x: &[f32], m: usize, k: usize, kp: usize, mpad: usize) -> Vec<u16> {
    let mut a = vec![0u16; mpad * kp];
    a.par_chunks_mut(kp * 16).enumerate().for_each(|(blk, chunk)| {
        for (i, row) in chunk.chunks_mut(kp).enumerate() {
            let r = blk * 16 + i;
            if r < m {
                to_bf16(&x[r * k..(r + 1) * k], &mut row[..k]);
            }
        }
    });
    a
}

/// Rounds f32 to bf16 bits (nearest even), with AVX512-BF16 when available.
pub(crate) fn to_bf16(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if KernelPath::Avx512Bf16.is_available() {
        // SAFETY: AVX512-BF16 is present.
        unsafe { avx512::to_bf16(src, dst) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = half::bf16::from_f32(*s).to_bits();
    }
}

/// `x` as f32, `m × kp`, zero padded in K (borrowed as is when K is already aligned).
pub(crate) fn f32_rows(x: &[f32], m: usize, k: usize, kp: usize) -> Cow<'_, [f32]> {
    if k == kp {
        return Cow::Borrowed(x);
    }
    let mut a = vec![0f32; m * kp];
    a.par_chunks_mut(kp)
        .zip(x.par_chunks(k))
        .for_each(|(d, s)| d[..k].copy_from_slice(s));
    Cow::Owned(a)
}
