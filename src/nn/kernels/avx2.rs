//! AVX2 + FMA micro-kernels for CPUs without AVX-512 (and the forced `avx2` tier).
//!
//! BF16: bf16 → f32 is a 16-bit shift, so a packed K pair (two bf16 in one 32-bit lane)
//! yields the even-K values with a left shift and the odd-K values with a mask; the
//! activation stays f32. Micro-kernel: up to 4 rows × 1 panel (8 ymm accumulators).
//!
//! INT8: `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs into saturating i16.
//! It is made exact with the sign trick: `|w| · (x · sign w)`, where both factors are at most
//! 127 (the quantisers are symmetric), so a pair sums to at most 2·127·128 < 2¹⁵; `vpmaddwd`
//! with ones then widens the pairs into the i32 sums of 4 K values. The results are the same
//! exact integer sums as every other tier's. Micro-kernel: 4 rows × 1 panel.
//!
//! Also the row-dot micro-kernels of the in-place GEMMs ([`Dot`], `dot.rs`), the same
//! arithmetic on the row-major weight: 2 activation rows × 4 weight rows.
#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use std::borrow::Cow;

use super::dot::{split_pairs, Dot, DotBf16, DotInt8};
use super::gemm::{drive, Dst, Micro};
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::{PackedBf16, PANEL};

/// BF16 weight widened to f32 (AVX2 + FMA), f32 activation.
pub(crate) struct Bf16;

impl Micro for Bf16 {
    type A = f32;
    type W = u16;
    type D<'d> = Dst<'d>;
    const MR: usize = 4;
    const NR: usize = 1;

    unsafe fn run(
        mr: usize,
        _nr: usize,
        a: *const f32,
        lda: usize,
        b: *const u16,
        _ps: usize,
        row: usize,
        panel: usize,
        dst: &Dst,
    ) {
        match mr {
            1 => micro_bf16::<1>(a, lda, b, row, panel, dst),
            2 => micro_bf16::<2>(a, lda, b, row, panel, dst),
            3 => micro_bf16::<3>(a, lda, b, row, panel, dst),
            _ => micro_bf16::<4>(a, lda, b, row, panel, dst),
        }
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM.
/// `a`: f32 activation, `M × kp`, zero padded in K.
///
/// # Safety
/// The CPU must support AVX2 and FMA; no other task writes the same output block.
pub unsafe fn gemm_bf16_tile(a: &[f32], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    drive::<Bf16>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn micro_bf16<const MR: usize>(a: *const f32, kp: usize, b: *const u16, row: usize, panel: usize, dst: &Dst) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let hi = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
    for kk in 0..kp / 2 {
        let bp = b.add(kk * 2 * PANEL);
        let lo8 = _mm256_loadu_si256(bp as *const __m256i);
        let hi8 = _mm256_loadu_si256(bp.add(PANEL) as *const __m256i);
        let e0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(lo8));
        let o0 = _mm256_castsi256_ps(_mm256_and_si256(lo8, hi));
        let e1 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(hi8));
        let o1 = _mm256_castsi256_ps(_mm256_and_si256(hi8, hi));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x0 = _mm256_broadcast_ss(&*a.add(r * kp + 2 * kk));
            let x1 = _mm256_broadcast_ss(&*a.add(r * kp + 2 * kk + 1));
            acc_r[0] = _mm256_fmadd_ps(x0, e0, acc_r[0]);
            acc_r[1] = _mm256_fmadd_ps(x0, e1, acc_r[1]);
            acc_r[0] = _mm256_fmadd_ps(x1, o0, acc_r[0]);
            acc_r[1] = _mm256_fmadd_ps(x1, o1, acc_r[1]);
        }
    }
    let mut t = [0f32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_ps(t.as_mut_ptr(), acc_r[0]);
        _mm256_storeu_ps(t.as_mut_ptr().add(8), acc_r[1]);
        dst.store16(row + r, panel * PANEL, &t);
    }
}

/// INT8 with `vpmaddubsw` (signed activation, no offset).
pub(crate) struct Int8;

impl Micro for Int8 {
    type A = i8;
    type W = i8;
    type D<'d> = DstI8<'d>;
    const MR: usize = 4;
    const NR: usize = 1;

    unsafe fn run(
        mr: usize,
        _nr: usize,
        a: *const i8,
        lda: usize,
        b: *const i8,
        _ps: usize,
        row: usize,
        panel: usize,
        dst: &DstI8,
    ) {
        match mr {
            1 => micro_i8::<1>(a, lda, b, row, panel, dst),
            2 => micro_i8::<2>(a, lda, b, row, panel, dst),
            3 => micro_i8::<3>(a, lda, b, row, panel, dst),
            _ => micro_i8::<4>(a, lda, b, row, panel, dst),
        }
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM (signed activations,
/// `M × kp`).
///
/// # Safety
/// The CPU must support AVX2; no other task writes the same output block.
pub unsafe fn gemm_int8_tile(a: &[i8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    drive::<Int8>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn micro_i8<const MR: usize>(a: *const i8, kp: usize, b: *const i8, row: usize, panel: usize, dst: &DstI8) {
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let ones = _mm256_set1_epi16(1);
    for kq in 0..kp / 4 {
        let bp = b.add(kq * 4 * PANEL);
        // Columns 0..8 and 8..16, four K values each.
        let w0 = _mm256_loadu_si256(bp as *const __m256i);
        let w1 = _mm256_loadu_si256(bp.add(2 * PANEL) as *const __m256i);
        let u0 = _mm256_abs_epi8(w0);
        let u1 = _mm256_abs_epi8(w1);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_epi32((a.add(r * kp + 4 * kq) as *const i32).read_unaligned());
            let p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(x, w0));
            let p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(x, w1));
            acc_r[0] = _mm256_add_epi32(acc_r[0], _mm256_madd_epi16(p0, ones));
            acc_r[1] = _mm256_add_epi32(acc_r[1], _mm256_madd_epi16(p1, ones));
        }
    }
    let mut t = [0i32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, acc_r[0]);
        _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, acc_r[1]);
        dst.store16(row + r, panel * PANEL, &t);
    }
}

// Row-dot micro-kernels of the in-place GEMMs (see `dot.rs`): the weight rows are read
// straight from the row-major checkpoint layout. AVX2 has no byte / 16-bit masked loads, so
// the K tail of each weight row is copied into a zeroed register-sized buffer. 2 activation
// rows × 4 weight rows (8 ymm accumulators, leaving registers for the operands).

/// Loads the `len < N` first elements at `p` into a zeroed `N`-element buffer.
///
/// # Safety
/// `p` must hold `len` readable elements.
#[inline(always)]
pub(crate) unsafe fn tail<T: Copy + Default, const N: usize>(p: *const T, len: usize) -> [T; N] {
    let mut t = [T::default(); N];
    std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), len.min(N));
    t
}

/// BF16 row dots on AVX2 + FMA: the weight widened to f32 in registers, f32 activation.
/// One 256-bit load takes 16 bf16 weights as 8 pairs; `<< 16` gives the even-K weights as
/// f32, masking the low half the odd-K ones, against the pair-split activation (see
/// [`split_pairs`]): 2 FMAs per 16 weights and no shuffles.
pub(crate) struct Bf16Dot;

impl Dot for Bf16Dot {
    type A = f32;
    type W = u16;
    type S = f32;
    const MR: usize = 2;
    const NR: usize = 4;

    #[inline(always)]
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const f32,
        lda: usize,
        b: *const u16,
        k: usize,
    ) -> [[f32; NR]; MR] {
        dot_bf16::<MR, NR>(a, lda, b, k)
    }
}

impl DotBf16 for Bf16Dot {
    fn rows(x: &[f32], m: usize, k: usize) -> (Cow<'_, [f32]>, usize) {
        let (a, lda) = split_pairs(x, m, k, 16);
        (Cow::Owned(a), lda)
    }
}

/// `MR × NR` dot products of pair-split f32 activation rows (stride `lda`, a multiple of
/// 16) and bf16 weight rows.
///
/// # Safety
/// AVX2 and FMA; `a` holds `MR` rows of `lda` f32 and `b` `NR·k` readable u16.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_bf16<const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const u16,
    k: usize,
) -> [[f32; NR]; MR] {
    /// One group of 16 values at `kk`; `TAIL`: only `k - kk` weights are there.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn step<const MR: usize, const NR: usize, const TAIL: bool>(
        acc: &mut [[__m256; NR]; MR],
        a: *const f32,
        lda: usize,
        b: *const u16,
        k: usize,
        kk: usize,
    ) {
        let hi = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        let mut xe = [_mm256_setzero_ps(); MR];
        let mut xo = [_mm256_setzero_ps(); MR];
        for r in 0..MR {
            xe[r] = _mm256_loadu_ps(a.add(r * lda + kk));
            xo[r] = _mm256_loadu_ps(a.add(r * lda + kk + 8));
        }
        for j in 0..NR {
            let p = b.add(j * k + kk);
            let v = if TAIL {
                let t: [u16; 16] = tail(p, k - kk);
                _mm256_loadu_si256(t.as_ptr() as *const __m256i)
            } else {
                _mm256_loadu_si256(p as *const __m256i)
            };
            let ev = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
            let od = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
            for (acc_r, (e, o)) in acc.iter_mut().zip(xe.iter().zip(&xo)) {
                acc_r[j] = _mm256_fmadd_ps(*e, ev, acc_r[j]);
                acc_r[j] = _mm256_fmadd_ps(*o, od, acc_r[j]);
            }
        }
    }
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let full = k / 16 * 16;
    let mut kk = 0;
    while kk < full {
        step::<MR, NR, false>(&mut acc, a, lda, b, k, kk);
        kk += 16;
    }
    if full < k {
        step::<MR, NR, true>(&mut acc, a, lda, b, k, full);
    }
    let mut s = [[0f32; NR]; MR];
    for (sr, acc_r) in s.iter_mut().zip(&acc) {
        for (v, a) in sr.iter_mut().zip(acc_r) {
            *v = hsum_ps(*a);
        }
    }
    s
}

/// The sum of the 8 lanes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The sum of the 8 i32 lanes (wrapping, as the lanes themselves).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// INT8 row dots with `vpmaddubsw` and the sign trick, on the *signed* activation (no offset):
/// `|w| · (q · sign w)` (`|w| ≤ 128` unsigned, `|q| ≤ 127`, so a pair stays below 2¹⁵), then
/// `vpmaddwd` with ones into i32. Exact sums, 32 values per step.
pub(crate) struct Int8Dot;

impl Dot for Int8Dot {
    type A = i8;
    type W = i8;
    type S = i32;
    const MR: usize = 2;
    const NR: usize = 4;

    #[inline(always)]
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const i8,
        _lda: usize,
        b: *const i8,
        k: usize,
    ) -> [[i32; NR]; MR] {
        dot_i8::<MR, NR>(a, b, k)
    }
}

impl DotInt8 for Int8Dot {
    const OFFSET: bool = false;
    fn rows(q: Vec<i8>) -> Vec<i8> {
        q
    }
}

/// `MR × NR` exact sums `Σ_k a[r,k]·b[j,k]` of int8 rows (activation in -127..=127).
///
/// # Safety
/// AVX2; `a` holds `MR·k` and `b` `NR·k` readable bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_i8<const MR: usize, const NR: usize>(a: *const i8, b: *const i8, k: usize) -> [[i32; NR]; MR] {
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn step<const MR: usize, const NR: usize>(
        acc: &mut [[__m256i; NR]; MR],
        a: [*const i8; MR],
        b: [*const i8; NR],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut av = [_mm256_setzero_si256(); MR];
        for (v, p) in av.iter_mut().zip(a) {
            *v = _mm256_loadu_si256(p as *const __m256i);
        }
        for (j, p) in b.iter().enumerate() {
            let w = _mm256_loadu_si256(*p as *const __m256i);
            let u = _mm256_abs_epi8(w);
            for (acc_r, x) in acc.iter_mut().zip(&av) {
                let p16 = _mm256_maddubs_epi16(u, _mm256_sign_epi8(*x, w));
                acc_r[j] = _mm256_add_epi32(acc_r[j], _mm256_madd_epi16(p16, ones));
            }
        }
    }
    let mut acc = [[_mm256_setzero_si256(); NR]; MR];
    let full = k / 32 * 32;
    let mut kk = 0;
    while kk < full {
        step(
            &mut acc,
            std::array::from_fn(|r| a.add(r * k + kk)),
            std::array::from_fn(|j| b.add(j * k + kk)),
        );
        kk += 32;
    }
    if full < k {
        let ta: [[i8; 32]; MR] = std::array::from_fn(|r| tail(a.add(r * k + full), k - full));
        let tb: [[i8; 32]; NR] = std::array::from_fn(|j| tail(b.add(j * k + full), k - full));
        step(
            &mut acc,
            std::array::from_fn(|r| ta[r].as_ptr()),
            std::array::from_fn(|j| tb[j].as_ptr()),
        );
    }
    let mut s = [[0i32; NR]; MR];
    for (sr, acc_r) in s.iter_mut().zip(&acc) {
        for (v, a) in sr.iter_mut().zip(acc_r) {
            *v = hsum_epi32(*a);
        }
    }
    s
}
