//! Plain-Rust kernels for any CPU; also the references the SIMD paths are tested against.
//! They read the same packed layouts as the SIMD kernels, so packing is tested too.

use std::borrow::Cow;

use super::dot::{Dot, DotBf16, DotInt8};
use super::gemm::Dst;
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::{PackedBf16, PANEL};

/// bf16 bits → f32 (exact).
#[inline(always)]
fn bf(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM.
/// `a`: f32 activation, `M × kp`, zero padded in K.
pub fn gemm_bf16_tile(a: &[f32], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    for p in p0..p1 {
        let panel = &w.data()[p * ps..(p + 1) * ps];
        for r in r0..r1 {
            let x = &a[r * kp..(r + 1) * kp];
            let mut acc = [0f32; PANEL];
            for (pair, b) in x.chunks_exact(2).zip(panel.chunks_exact(2 * PANEL)) {
                for c in 0..PANEL {
                    acc[c] += pair[0] * bf(b[2 * c]) + pair[1] * bf(b[2 * c + 1]);
                }
            }
            // SAFETY: rows and panels of this task are disjoint from all other tasks.
            unsafe { dst.store16(r, p * PANEL, &acc) };
        }
    }
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM with signed
/// activations (`M × kp`), exactly the integer sums the SIMD paths produce.
#[inline(always)]
pub fn gemm_int8_tile(a: &[i8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    for p in p0..p1 {
        let panel = &w.data()[p * ps..(p + 1) * ps];
        for r in r0..r1 {
            let x = &a[r * kp..(r + 1) * kp];
            let mut acc = [0i32; PANEL];
            for (quad, b) in x.chunks_exact(4).zip(panel.chunks_exact(4 * PANEL)) {
                for c in 0..PANEL {
                    let wq = &b[4 * c..4 * c + 4];
                    acc[c] += quad[0] as i32 * wq[0] as i32
                        + quad[1] as i32 * wq[1] as i32
                        + quad[2] as i32 * wq[2] as i32
                        + quad[3] as i32 * wq[3] as i32;
                }
            }
            // SAFETY: rows and panels of this task are disjoint from all other tasks.
            unsafe { dst.store16(r, p * PANEL, &acc) };
        }
    }
}

/// BF16 row dots of the in-place GEMM (see `dot.rs`) in plain Rust: f32 activation, bf16
/// weight widened per element, 8 partial sums per dot product (which the compiler keeps in
/// one vector register where it can).
pub(crate) struct Bf16Dot;

impl Dot for Bf16Dot {
    type A = f32;
    type W = u16;
    type S = f32;
    const MR: usize = 4;
    const NR: usize = 4;

    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const f32,
        lda: usize,
        b: *const u16,
        k: usize,
    ) -> [[f32; NR]; MR] {
        // SAFETY: the caller guarantees `MR` rows of `lda` readable f32 at `a` (the last one
        // needs only `k`) and `NR·k` u16 at `b`.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, (MR - 1) * lda + k),
                std::slice::from_raw_parts(b, NR * k),
            )
        };
        let mut s = [[0f32; NR]; MR];
        for (r, sr) in s.iter_mut().enumerate() {
            let x = &a[r * lda..r * lda + k];
            for (v, w) in sr.iter_mut().zip(b.chunks_exact(k)) {
                let mut lanes = [0f32; 8];
                let (xc, wc) = (x.chunks_exact(8), w.chunks_exact(8));
                let (xt, wt) = (xc.remainder(), wc.remainder());
                for (x8, w8) in xc.zip(wc) {
                    for l in 0..8 {
                        lanes[l] += x8[l] * bf(w8[l]);
                    }
                }
                for (l, (x1, w1)) in xt.iter().zip(wt).enumerate() {
                    lanes[l] += x1 * bf(*w1);
                }
                *v = lanes.iter().sum();
            }
        }
        s
    }
}

impl DotBf16 for Bf16Dot {
    fn rows(x: &[f32], _m: usize, k: usize) -> (Cow<'_, [f32]>, usize) {
        (Cow::Borrowed(x), k)
    }
}

/// INT8 row dots of the in-place GEMM in plain Rust, on the signed activation: exact i32 sums.
pub(crate) struct Int8Dot;

impl Dot for Int8Dot {
    type A = i8;
    type W = i8;
    type S = i32;
    const MR: usize = 4;
    const NR: usize = 4;

    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const i8,
        lda: usize,
        b: *const i8,
        k: usize,
    ) -> [[i32; NR]; MR] {
        // SAFETY: the caller guarantees `MR` rows of `lda` readable bytes at `a` (the last
        // one needs only `k`) and `NR·k` at `b`.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, (MR - 1) * lda + k),
                std::slice::from_raw_parts(b, NR * k),
            )
        };
        let mut s = [[0i32; NR]; MR];
        for (r, sr) in s.iter_mut().enumerate() {
            let x = &a[r * lda..r * lda + k];
            for (v, w) in sr.iter_mut().zip(b.chunks_exact(k)) {
                *v = x.iter().zip(w).map(|(p, q)| *p as i32 * *q as i32).sum();
            }
        }
        s
    }
}

impl DotInt8 for Int8Dot {
    const OFFSET: bool = false;
    fn rows(q: Vec<i8>) -> Vec<i8> {
        q
    }
}
