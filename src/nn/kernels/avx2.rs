//! AVX2 + FMA kernels for CPUs without AVX-512.
//!
//! BF16: bf16 → f32 is a 16-bit shift, so a packed K pair (two bf16 in one 32-bit lane)
//! yields the even-K values with a left shift and the odd-K values with a mask; the
//! activation stays f32. Micro-kernel: up to 4 rows × 1 panel (8 ymm accumulators).
//! INT8: the portable integer loop compiled with AVX2 enabled (the compiler vectorises the
//! widening multiply-adds); results are bit-identical to the portable path.
#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use super::gemm::Dst;
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::{PackedBf16, PANEL};
use super::portable;

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM.
/// `a`: f32 activation, `M × kp`, zero padded in K.
///
/// # Safety
/// The CPU must support AVX2 and FMA; no other task writes the same output block.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_bf16_tile(a: &[f32], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    for p in p0..p1 {
        let b = w.data().as_ptr().add(p * ps);
        let mut r = r0;
        while r < r1 {
            let mr = (r1 - r).min(4);
            let ap = a.as_ptr().add(r * kp);
            match mr {
                1 => micro::<1>(ap, kp, b, r, p, dst),
                2 => micro::<2>(ap, kp, b, r, p, dst),
                3 => micro::<3>(ap, kp, b, r, p, dst),
                _ => micro::<4>(ap, kp, b, r, p, dst),
            }
            r += mr;
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn micro<const MR: usize>(a: *const f32, kp: usize, b: *const u16, row: usize, panel: usize, dst: &Dst) {
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

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM (signed activations).
///
/// # Safety
/// The CPU must support AVX2; no other task writes the same output block.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_int8_tile(a: &[i8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    portable::gemm_int8_tile(a, w, r0, r1, p0, p1, dst)
}
