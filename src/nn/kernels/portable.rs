//! Plain-Rust kernels for any CPU; also the references the SIMD paths are tested against.
//! They read the same packed layouts as the SIMD kernels, so packing is tested too.

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
