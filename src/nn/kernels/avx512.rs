//! AVX-512 micro-kernels: BF16 GEMM with `vdpbf16ps` (AVX512-BF16), BF16 GEMM by widening
//! bf16 → f32 (AVX-512F only, for CPUs like Ice Lake and Skylake-SP without AVX512-BF16),
//! INT8 GEMM with `vpdpbusd` (AVX512-VNNI), and the f32 → bf16 conversion of activations.
//!
//! Every GEMM here is a [`Micro`] kernel of the same register-blocked shape, run by the one
//! loop [`drive`]: `MR ≤ 4` rows times `NR ≤ 4` panels of 16 columns, i.e. up to 16 zmm
//! accumulators, with the weight operand read straight from the packed layout (one 64-byte
//! row per K pair / quad) and the activation broadcast from memory.
//!
//! Also the row-dot micro-kernels of the in-place GEMMs ([`Dot`], `dot.rs`) for the same
//! three instruction sets, on the row-major weight: up to 4 activation rows × 4 weight rows.
#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;
use core::mem::transmute;

use std::borrow::Cow;

use super::dot::{offset_rows, split_pairs, Dot, DotBf16, DotInt8};
use super::gemm::{self, drive, Dst, Micro};
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::{PackedBf16, PANEL};

/// Rounds `src` to bf16 bits into `dst` (nearest even).
///
/// # Safety
/// The CPU must support AVX512F and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub unsafe fn to_bf16(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(src.as_ptr().add(i));
        let h: __m256i = transmute(_mm512_cvtneps_pbh(v));
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
        i += 16;
    }
    for j in i..n {
        dst[j] = half::bf16::from_f32(src[j]).to_bits();
    }
}

/// Dispatches a `(mr, nr)` pair to the const-generic instantiations of a micro-kernel.
macro_rules! blocks {
    ($f:ident, $mr:expr, $nr:expr, $($arg:expr),*) => {
        match ($mr, $nr) {
            (1, 1) => $f::<1, 1>($($arg),*),
            (1, 2) => $f::<1, 2>($($arg),*),
            (1, _) => $f::<1, 4>($($arg),*),
            (2, 1) => $f::<2, 1>($($arg),*),
            (2, 2) => $f::<2, 2>($($arg),*),
            (2, _) => $f::<2, 4>($($arg),*),
            (3, 1) => $f::<3, 1>($($arg),*),
            (3, 2) => $f::<3, 2>($($arg),*),
            (3, _) => $f::<3, 4>($($arg),*),
            (_, 1) => $f::<4, 1>($($arg),*),
            (_, 2) => $f::<4, 2>($($arg),*),
            _ => $f::<4, 4>($($arg),*),
        }
    };
}

/// BF16 × BF16 with `vdpbf16ps`; activation as bf16 bits.
pub(crate) struct Bf16;

impl Micro for Bf16 {
    type A = u16;
    type W = u16;
    type D<'d> = Dst<'d>;
    const MR: usize = 4;
    const NR: usize = 4;

    unsafe fn run(
        mr: usize,
        nr: usize,
        a: *const u16,
        lda: usize,
        b: *const u16,
        ps: usize,
        row: usize,
        panel: usize,
        dst: &Dst,
    ) {
        blocks!(micro_bf16, mr, nr, a, lda, b, ps, row, panel, dst)
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM with `vdpbf16ps`.
///
/// `a` holds the activation as bf16 bits, `M × kp` (K padded with zeros).
///
/// # Safety
/// The CPU must support AVX512F/BW/VL and AVX512-BF16; `r1` ≤ rows of `a`; `p1` ≤ panels;
/// no other task writes the same output block.
pub unsafe fn gemm_bf16_tile(a: &[u16], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    drive::<Bf16>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

/// BF16 weight widened to f32 (AVX-512F), f32 activation.
pub(crate) struct Bf16Wide;

impl Micro for Bf16Wide {
    type A = f32;
    type W = u16;
    type D<'d> = Dst<'d>;
    const MR: usize = 4;
    const NR: usize = 4;

    unsafe fn run(
        mr: usize,
        nr: usize,
        a: *const f32,
        lda: usize,
        b: *const u16,
        ps: usize,
        row: usize,
        panel: usize,
        dst: &Dst,
    ) {
        blocks!(micro_bf16_wide, mr, nr, a, lda, b, ps, row, panel, dst)
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM on AVX-512F without
/// bf16 instructions: `a` is the f32 activation, `M × kp`, zero padded in K.
///
/// # Safety
/// The CPU must support AVX512F/BW/VL and FMA; bounds as for [`gemm_bf16_tile`].
pub unsafe fn gemm_bf16_wide_tile(a: &[f32], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    drive::<Bf16Wide>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

/// INT8 with `vpdpbusd`; activation offset to unsigned.
pub(crate) struct Int8Vnni;

impl Micro for Int8Vnni {
    type A = u8;
    type W = i8;
    type D<'d> = DstI8<'d>;
    const MR: usize = 4;
    const NR: usize = 4;

    unsafe fn run(
        mr: usize,
        nr: usize,
        a: *const u8,
        lda: usize,
        b: *const i8,
        ps: usize,
        row: usize,
        panel: usize,
        dst: &DstI8,
    ) {
        blocks!(micro_i8, mr, nr, a, lda, b, ps, row, panel, dst)
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM with VNNI.
///
/// `a` holds the quantised activation offset to unsigned (`q + 128`), `M × kp`; the
/// offset is removed in [`DstI8::store16`] with the weight column sums.
///
/// # Safety
/// The CPU must support AVX512F/BW/VL and AVX512-VNNI; bounds as for [`gemm_bf16_tile`].
pub unsafe fn gemm_int8_tile(a: &[u8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    drive::<Int8Vnni>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_bf16<const MR: usize, const NR: usize>(
    a: *const u16,
    kp: usize,
    b: *const u16,
    ps: usize,
    row: usize,
    panel: usize,
    dst: &Dst,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    for kk in 0..kp / 2 {
        let mut bv = [_mm512_setzero_ps(); NR];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(b.add(j * ps + kk * 2 * PANEL) as *const f32);
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // One bf16 pair of row r, broadcast to all 16 lanes.
            let av = _mm512_set1_epi32((a.add(r * kp + 2 * kk) as *const i32).read_unaligned());
            for j in 0..NR {
                acc_r[j] = _mm512_dpbf16_ps(
                    acc_r[j],
                    transmute::<__m512i, __m512bh>(av),
                    transmute::<__m512, __m512bh>(bv[j]),
                );
            }
        }
    }
    store_f32(&acc, row, panel, dst);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_bf16_wide<const MR: usize, const NR: usize>(
    a: *const f32,
    kp: usize,
    b: *const u16,
    ps: usize,
    row: usize,
    panel: usize,
    dst: &Dst,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let hi = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    for kk in 0..kp / 2 {
        // One packed row holds (even K, odd K) bf16 pairs per column: the even value is the
        // low half (shift it up), the odd one the high half (mask the low half away).
        let mut ev = [_mm512_setzero_ps(); NR];
        let mut od = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            let v = _mm512_loadu_si512(b.add(j * ps + kk * 2 * PANEL) as *const __m512i);
            ev[j] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
            od[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x0 = _mm512_set1_ps(*a.add(r * kp + 2 * kk));
            let x1 = _mm512_set1_ps(*a.add(r * kp + 2 * kk + 1));
            for j in 0..NR {
                acc_r[j] = _mm512_fmadd_ps(x0, ev[j], acc_r[j]);
                acc_r[j] = _mm512_fmadd_ps(x1, od[j], acc_r[j]);
            }
        }
    }
    store_f32(&acc, row, panel, dst);
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_f32<const MR: usize, const NR: usize>(acc: &[[__m512; NR]; MR], row: usize, panel: usize, dst: &Dst) {
    let mut t = [0f32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, v) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(t.as_mut_ptr(), *v);
            dst.store16(row + r, (panel + j) * PANEL, &t);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_i8<const MR: usize, const NR: usize>(
    a: *const u8,
    kp: usize,
    b: *const i8,
    ps: usize,
    row: usize,
    panel: usize,
    dst: &DstI8,
) {
    let mut acc = [[_mm512_setzero_si512(); NR]; MR];
    for kq in 0..kp / 4 {
        let mut bv = [_mm512_setzero_si512(); NR];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(b.add(j * ps + kq * 4 * PANEL) as *const __m512i);
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // Four u8 activations of row r, broadcast to all 16 lanes.
            let av = _mm512_set1_epi32((a.add(r * kp + 4 * kq) as *const i32).read_unaligned());
            for j in 0..NR {
                acc_r[j] = _mm512_dpbusd_epi32(acc_r[j], av, bv[j]);
            }
        }
    }
    let mut t = [0i32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, v) in acc_r.iter().enumerate() {
            _mm512_storeu_si512(t.as_mut_ptr() as *mut __m512i, *v);
            dst.store16(row + r, (panel + j) * PANEL, &t);
        }
    }
}

// Row-dot micro-kernels of the in-place GEMMs (see `dot.rs`): the weight rows are read
// straight from the row-major checkpoint layout, K tails with masked loads.

/// BF16 row dots with `vdpbf16ps`; activation as bf16 bits.
pub(crate) struct Bf16Dot;

impl Dot for Bf16Dot {
    type A = u16;
    type W = u16;
    type S = f32;
    const MR: usize = 4;
    const NR: usize = 4;

    #[inline(always)]
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const u16,
        _lda: usize,
        b: *const u16,
        k: usize,
    ) -> [[f32; NR]; MR] {
        dot_bf16::<MR, NR>(a, b, k)
    }
}

impl DotBf16 for Bf16Dot {
    fn rows(x: &[f32], _m: usize, k: usize) -> (Cow<'_, [u16]>, usize) {
        let mut a = vec![0u16; x.len()];
        gemm::to_bf16(x, &mut a);
        (Cow::Owned(a), k)
    }
}

/// `MR × NR` dot products of bf16 rows, 32 values per `vdpbf16ps`, a masked load for the tail.
///
/// # Safety
/// AVX512F/BW and AVX512-BF16; `a` holds `MR·k` and `b` `NR·k` readable u16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
unsafe fn dot_bf16<const MR: usize, const NR: usize>(a: *const u16, b: *const u16, k: usize) -> [[f32; NR]; MR] {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let full = k / 32 * 32;
    let mut kk = 0;
    while kk < full {
        let mut bv = [_mm512_setzero_si512(); NR];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(b.add(j * k + kk) as *const __m512i);
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av: __m512bh = transmute(_mm512_loadu_si512(a.add(r * k + kk) as *const __m512i));
            for j in 0..NR {
                acc_r[j] = _mm512_dpbf16_ps(acc_r[j], av, transmute::<__m512i, __m512bh>(bv[j]));
            }
        }
        kk += 32;
    }
    if full < k {
        let mask: __mmask32 = (1u32 << (k - full)) - 1;
        let mut bv = [_mm512_setzero_si512(); NR];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm512_maskz_loadu_epi16(mask, b.add(j * k + full) as *const i16);
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av: __m512bh = transmute(_mm512_maskz_loadu_epi16(mask, a.add(r * k + full) as *const i16));
            for j in 0..NR {
                acc_r[j] = _mm512_dpbf16_ps(acc_r[j], av, transmute::<__m512i, __m512bh>(bv[j]));
            }
        }
    }
    reduce_ps(&acc)
}

/// BF16 row dots on AVX-512F without bf16 instructions: the weight widened to f32 in
/// registers, f32 activation. One 512-bit load takes 32 bf16 weights as 16 pairs; `<< 16`
/// gives the even-K weights as f32, masking the low half the odd-K ones, against the
/// pair-split activation (see [`split_pairs`]): 2 FMAs per 32 weights and no shuffles.
pub(crate) struct Bf16WideDot;

impl Dot for Bf16WideDot {
    type A = f32;
    type W = u16;
    type S = f32;
    const MR: usize = 4;
    const NR: usize = 4;

    #[inline(always)]
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const f32,
        lda: usize,
        b: *const u16,
        k: usize,
    ) -> [[f32; NR]; MR] {
        dot_bf16_wide::<MR, NR>(a, lda, b, k)
    }
}

impl DotBf16 for Bf16WideDot {
    fn rows(x: &[f32], m: usize, k: usize) -> (Cow<'_, [f32]>, usize) {
        let (a, lda) = split_pairs(x, m, k, 32);
        (Cow::Owned(a), lda)
    }
}

/// `MR × NR` dot products of pair-split f32 activation rows (stride `lda`, a multiple of
/// 32) and bf16 weight rows; masked loads for the weights' K tail.
///
/// # Safety
/// AVX512F/BW/VL and FMA; `a` holds `MR` rows of `lda` f32 and `b` `NR·k` readable u16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
#[inline]
unsafe fn dot_bf16_wide<const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const u16,
    k: usize,
) -> [[f32; NR]; MR] {
    /// One group of 32 values at `kk`; `TAIL`: only `k - kk` weights are there.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    #[inline]
    unsafe fn step<const MR: usize, const NR: usize, const TAIL: bool>(
        acc: &mut [[__m512; NR]; MR],
        a: *const f32,
        lda: usize,
        b: *const u16,
        k: usize,
        kk: usize,
    ) {
        let hi = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        let mut ev = [_mm512_setzero_ps(); NR];
        let mut od = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            let p = b.add(j * k + kk);
            let v = if TAIL {
                _mm512_maskz_loadu_epi16((1u32 << (k - kk)) - 1, p as *const i16)
            } else {
                _mm512_loadu_si512(p as *const __m512i)
            };
            ev[j] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
            od[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xe = _mm512_loadu_ps(a.add(r * lda + kk));
            let xo = _mm512_loadu_ps(a.add(r * lda + kk + 16));
            for j in 0..NR {
                acc_r[j] = _mm512_fmadd_ps(xe, ev[j], acc_r[j]);
                acc_r[j] = _mm512_fmadd_ps(xo, od[j], acc_r[j]);
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let full = k / 32 * 32;
    let mut kk = 0;
    while kk < full {
        step::<MR, NR, false>(&mut acc, a, lda, b, k, kk);
        kk += 32;
    }
    if full < k {
        step::<MR, NR, true>(&mut acc, a, lda, b, k, full);
    }
    reduce_ps(&acc)
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce_ps<const MR: usize, const NR: usize>(acc: &[[__m512; NR]; MR]) -> [[f32; NR]; MR] {
    let mut s = [[0f32; NR]; MR];
    for (sr, acc_r) in s.iter_mut().zip(acc) {
        for (v, a) in sr.iter_mut().zip(acc_r) {
            *v = _mm512_reduce_add_ps(*a);
        }
    }
    s
}

/// INT8 row dots with 512-bit `vpdpbusd`; activation offset to unsigned (`q + 128`), so the
/// sums carry `128 · Σ_k w[j,k]`, which the caller removes.
pub(crate) struct Int8VnniDot;

impl Dot for Int8VnniDot {
    type A = u8;
    type W = i8;
    type S = i32;
    const MR: usize = 4;
    const NR: usize = 4;

    #[inline(always)]
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const u8,
        _lda: usize,
        b: *const i8,
        k: usize,
    ) -> [[i32; NR]; MR] {
        dot_i8::<MR, NR>(a, b, k)
    }
}

impl DotInt8 for Int8VnniDot {
    const OFFSET: bool = true;
    fn rows(q: Vec<i8>) -> Vec<u8> {
        offset_rows(q)
    }
}

/// `MR × NR` exact sums `Σ_k a[r,k]·b[j,k]` (u8 × i8), 64 values per step, masked tail.
///
/// # Safety
/// AVX512F/BW and AVX512-VNNI; `a` holds `MR·k` and `b` `NR·k` readable bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn dot_i8<const MR: usize, const NR: usize>(a: *const u8, b: *const i8, k: usize) -> [[i32; NR]; MR] {
    /// One step of 64 values at `kk`; `TAIL`: only the first `k - kk` (masked loads).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn step<const MR: usize, const NR: usize, const TAIL: bool>(
        acc: &mut [[__m512i; NR]; MR],
        a: *const u8,
        b: *const i8,
        k: usize,
        kk: usize,
    ) {
        let mask: __mmask64 = if TAIL { (1u64 << (k - kk)) - 1 } else { !0 };
        let mut bv = [_mm512_setzero_si512(); NR];
        for (j, v) in bv.iter_mut().enumerate() {
            let p = b.add(j * k + kk);
            *v = if TAIL {
                _mm512_maskz_loadu_epi8(mask, p)
            } else {
                _mm512_loadu_si512(p as *const __m512i)
            };
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let p = a.add(r * k + kk) as *const i8;
            let av = if TAIL {
                _mm512_maskz_loadu_epi8(mask, p)
            } else {
                _mm512_loadu_si512(p as *const __m512i)
            };
            for j in 0..NR {
                acc_r[j] = _mm512_dpbusd_epi32(acc_r[j], av, bv[j]);
            }
        }
    }
    let mut acc = [[_mm512_setzero_si512(); NR]; MR];
    let full = k / 64 * 64;
    let mut kk = 0;
    while kk < full {
        step::<MR, NR, false>(&mut acc, a, b, k, kk);
        kk += 64;
    }
    if full < k {
        step::<MR, NR, true>(&mut acc, a, b, k, full);
    }
    let mut s = [[0i32; NR]; MR];
    for (sr, acc_r) in s.iter_mut().zip(&acc) {
        for (v, a) in sr.iter_mut().zip(acc_r) {
            *v = _mm512_reduce_add_epi32(*a);
        }
    }
    s
}
