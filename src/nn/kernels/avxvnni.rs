//! AVX-VNNI micro-kernel (VEX-encoded 256-bit `vpdpbusd`): the INT8 GEMM on CPUs with VNNI
//! but without AVX-512 (Alder Lake and later client Intel, Zen 5 client parts), and a forced
//! tier everywhere AVX-VNNI exists.
//!
//! Like the AVX512-VNNI kernel, the activation is offset to unsigned (`q + 128`) and the
//! offset removed with the weight column sums in [`DstI8::store16`]. Micro-kernel: 4 rows ×
//! 1 panel of 16 columns (8 ymm accumulators).
//!
//! Also the row-dot micro-kernel of the in-place INT8 GEMM ([`Dot`], `dot.rs`).
#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use super::avx2::{hsum_epi32, tail};
use super::dot::{offset_rows, Dot, DotInt8};
use super::gemm::{drive, Micro};
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::PANEL;

/// INT8 with 256-bit `vpdpbusd`; activation offset to unsigned.
pub(crate) struct Int8;

impl Micro for Int8 {
    type A = u8;
    type W = i8;
    type D<'d> = DstI8<'d>;
    const MR: usize = 4;
    const NR: usize = 1;

    unsafe fn run(
        mr: usize,
        _nr: usize,
        a: *const u8,
        lda: usize,
        b: *const i8,
        _ps: usize,
        row: usize,
        panel: usize,
        dst: &DstI8,
    ) {
        match mr {
            1 => micro::<1>(a, lda, b, row, panel, dst),
            2 => micro::<2>(a, lda, b, row, panel, dst),
            3 => micro::<3>(a, lda, b, row, panel, dst),
            _ => micro::<4>(a, lda, b, row, panel, dst),
        }
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM; `a` is the activation
/// offset to unsigned, `M × kp`.
///
/// # Safety
/// The CPU must support AVX2 and AVX-VNNI; no other task writes the same output block.
pub unsafe fn gemm_int8_tile(a: &[u8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    drive::<Int8>(a.as_ptr(), kp, w.data().as_ptr(), w.panel_stride(), r0, r1, p0, p1, dst);
}

#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn micro<const MR: usize>(a: *const u8, kp: usize, b: *const i8, row: usize, panel: usize, dst: &DstI8) {
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for kq in 0..kp / 4 {
        let bp = b.add(kq * 4 * PANEL);
        let w0 = _mm256_loadu_si256(bp as *const __m256i);
        let w1 = _mm256_loadu_si256(bp.add(2 * PANEL) as *const __m256i);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_epi32((a.add(r * kp + 4 * kq) as *const i32).read_unaligned());
            acc_r[0] = _mm256_dpbusd_avx_epi32(acc_r[0], x, w0);
            acc_r[1] = _mm256_dpbusd_avx_epi32(acc_r[1], x, w1);
        }
    }
    let mut t = [0i32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, acc_r[0]);
        _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, acc_r[1]);
        dst.store16(row + r, panel * PANEL, &t);
    }
}

/// INT8 row dots of the in-place GEMM (see `dot.rs`) with 256-bit `vpdpbusd`, 32 values per
/// step straight from the row-major weight; the activation is offset to unsigned (`q + 128`),
/// so the sums carry `128 · Σ_k w[j,k]`, which the caller removes. The K tail is copied into
/// zeroed buffers (AVX-VNNI has no masked byte loads). 2 activation rows × 4 weight rows.
pub(crate) struct Int8Dot;

impl Dot for Int8Dot {
    type A = u8;
    type W = i8;
    type S = i32;
    const MR: usize = 2;
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

impl DotInt8 for Int8Dot {
    const OFFSET: bool = true;
    fn rows(q: Vec<i8>) -> Vec<u8> {
        offset_rows(q)
    }
}

/// `MR × NR` exact sums `Σ_k a[r,k]·b[j,k]` (u8 × i8).
///
/// # Safety
/// AVX2 and AVX-VNNI; `a` holds `MR·k` and `b` `NR·k` readable bytes.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn dot_i8<const MR: usize, const NR: usize>(a: *const u8, b: *const i8, k: usize) -> [[i32; NR]; MR] {
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn step<const MR: usize, const NR: usize>(
        acc: &mut [[__m256i; NR]; MR],
        a: [*const u8; MR],
        b: [*const i8; NR],
    ) {
        let mut bv = [_mm256_setzero_si256(); NR];
        for (v, p) in bv.iter_mut().zip(b) {
            *v = _mm256_loadu_si256(p as *const __m256i);
        }
        for (acc_r, p) in acc.iter_mut().zip(a) {
            let av = _mm256_loadu_si256(p as *const __m256i);
            for j in 0..NR {
                acc_r[j] = _mm256_dpbusd_avx_epi32(acc_r[j], av, bv[j]);
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
        let ta: [[u8; 32]; MR] = std::array::from_fn(|r| tail(a.add(r * k + full), k - full));
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
