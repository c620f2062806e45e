//! AVX-512 kernels: BF16 GEMM with `vdpbf16ps`, INT8 GEMM with `vpdpbusd` (VNNI), and the
//! f32 → bf16 conversion of activations.
//!
//! Both GEMMs use the same register-blocked micro-kernel shape: `MR ≤ 4` rows times `NR ≤ 4`
//! panels of 16 columns, i.e. up to 16 zmm accumulators, with the weight operand read
//! straight from the packed layout (one 64-byte row per K pair / quad) and the activation
//! broadcast from memory.
#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;
use core::mem::transmute;

use super::gemm::Dst;
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

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM.
///
/// `a` holds the activation as bf16 bits, `M × kp` (K padded with zeros).
///
/// # Safety
/// The CPU must support AVX512F/BW/VL and AVX512-BF16; `r1` ≤ rows of `a`; `p1` ≤ panels;
/// no other task writes the same output block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub unsafe fn gemm_bf16_tile(a: &[u16], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    let mut p = p0;
    while p < p1 {
        let nr = if p1 - p >= 4 {
            4
        } else if p1 - p >= 2 {
            2
        } else {
            1
        };
        let b = w.data().as_ptr().add(p * ps);
        let mut r = r0;
        while r < r1 {
            let mr = (r1 - r).min(4);
            let ap = a.as_ptr().add(r * kp);
            macro_rules! go {
                ($($m:literal, $n:literal);*) => {
                    match (mr, nr) {
                        $(($m, $n) => micro_bf16::<$m, $n>(ap, kp, b, ps, r, p, dst),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1,1; 1,2; 1,4; 2,1; 2,2; 2,4; 3,1; 3,2; 3,4; 4,1; 4,2; 4,4);
            r += mr;
        }
        p += nr;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
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
    let mut t = [0f32; PANEL];
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, v) in acc_r.iter().enumerate() {
            _mm512_storeu_ps(t.as_mut_ptr(), *v);
            dst.store16(row + r, (panel + j) * PANEL, &t);
        }
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM with VNNI.
///
/// `a` holds the quantised activation offset to unsigned (`q + 128`), `M × kp`; the
/// offset is removed in [`DstI8::store16`] with the weight column sums.
///
/// # Safety
/// The CPU must support AVX512F/BW/VL and AVX512-VNNI; bounds as for [`gemm_bf16_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_int8_tile(a: &[u8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    let mut p = p0;
    while p < p1 {
        let nr = if p1 - p >= 4 {
            4
        } else if p1 - p >= 2 {
            2
        } else {
            1
        };
        let b = w.data().as_ptr().add(p * ps);
        let mut r = r0;
        while r < r1 {
            let mr = (r1 - r).min(4);
            let ap = a.as_ptr().add(r * kp);
            macro_rules! go {
                ($($m:literal, $n:literal);*) => {
                    match (mr, nr) {
                        $(($m, $n) => micro_i8::<$m, $n>(ap, kp, b, ps, r, p, dst),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1,1; 1,2; 1,4; 2,1; 2,2; 2,4; 3,1; 3,2; 3,4; 4,1; 4,2; 4,4);
            r += mr;
        }
        p += nr;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
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
            *v = transmute::<__m512, __m512i>(_mm512_loadu_ps(b.add(j * ps + kq * 4 * PANEL) as *const f32));
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
