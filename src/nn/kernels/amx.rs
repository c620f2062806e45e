//! Intel AMX kernels (BF16 `tdpbf16ps`, INT8 `tdpbssd`), written with `asm!` because the AMX
//! intrinsics are not stable in Rust.
//!
//! Tiles: tmm0..3 hold a 2×2 block of 16×16 f32/i32 results (32 rows × 32 columns), tmm4/5
//! two 16-row slices of the activation, tmm6/7 two weight panels. The packed weight layout
//! (see `pack.rs`, `gemv_int8.rs`) makes one K step of one panel a contiguous 1 KiB tile with
//! a 64-byte row stride, so weight tiles load without any rearrangement. The activation is
//! read row-major with its padded row length as stride, and padded to whole 32-row blocks so
//! every tile is full; rows past M are computed and dropped.
#![cfg(target_arch = "x86_64")]

use core::arch::asm;

use super::gemm::Dst;
use super::gemv_int8::{DstI8, PackedInt8};
use super::pack::{PackedBf16, PANEL};

/// Rows per AMX block (two tiles of 16).
pub const MR: usize = super::gemm::AMX_ROWS;

/// Row stride (in elements) of the activation on the AMX path: one 64-byte line more than
/// the padded K, so the 16 rows of a tile do not all fall into the same few L1 sets (row
/// lengths like 2 KiB would otherwise alias).
pub fn lda(kp: usize) -> usize {
    kp + 64
}

/// Asks Linux for permission to use the AMX tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); without it the first tile instruction kills the process.
pub fn request_permission() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments; it only changes this process's
        // permitted extended-state set.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The 64-byte tile configuration: palette 1, all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes per row, little-endian u16
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

/// 64-byte aligned scratch for the four result tiles.
#[repr(C, align(64))]
struct Scratch<T: Copy>([[T; PANEL * 16]; 4]);

/// Loads the tile configuration for this thread; [`release`] must follow.
unsafe fn configure() {
    let cfg = TileConfig::full();
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
}

/// Frees the tile state of this thread.
unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the BF16 GEMM on AMX tiles.
///
/// `a`: activation bf16 bits, rows padded to a multiple of [`MR`], [`lda`]`(kp)` per row.
///
/// # Safety
/// AMX must be available and permitted; `r0` a multiple of [`MR`], `p0`/`p1` even; no other
/// task writes the same output block.
pub unsafe fn gemm_bf16_tile(a: &[u16], w: &PackedBf16, r0: usize, r1: usize, p0: usize, p1: usize, dst: &Dst) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    let lda_el = lda(kp);
    let lda = lda_el * 2;
    let mut c = Scratch([[0f32; PANEL * 16]; 4]);
    configure();
    for r in (r0..r1).step_by(MR) {
        for p in (p0..p1).step_by(2) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            let a0 = a.as_ptr().add(r * lda_el);
            let a1 = a0.add(16 * lda_el);
            let b0 = w.data().as_ptr().add(p * ps);
            let b1 = b0.add(ps);
            for kb in 0..kp / 32 {
                asm!(
                    // Loads interleaved with the products that first need them, so
                    // the next load overlaps the running product.
                    "tileloadd tmm4, [{a0} + {lda}*1]",
                    "tileloadd tmm6, [{b0} + {ldb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {ldb}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {lda}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(kb * 32),
                    a1 = in(reg) a1.add(kb * 32),
                    b0 = in(reg) b0.add(kb * 16 * 2 * PANEL),
                    b1 = in(reg) b1.add(kb * 16 * 2 * PANEL),
                    lda = in(reg) lda,
                    ldb = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            if r + MR <= r1 && (p + 2) * PANEL <= dst.n {
                // The whole 32×32 block is inside the output: store the tiles in place.
                let out = dst.ptr.0.add(r * dst.n + p * PANEL);
                asm!(
                    "tilestored [{c0} + {ld}*1], tmm0",
                    "tilestored [{c1} + {ld}*1], tmm1",
                    "tilestored [{c2} + {ld}*1], tmm2",
                    "tilestored [{c3} + {ld}*1], tmm3",
                    c0 = in(reg) out,
                    c1 = in(reg) out.add(PANEL),
                    c2 = in(reg) out.add(16 * dst.n),
                    c3 = in(reg) out.add(16 * dst.n + PANEL),
                    ld = in(reg) dst.n * 4,
                    options(nostack),
                );
                if let Some(b) = dst.bias {
                    let b = &b[p * PANEL..(p + 2) * PANEL];
                    for i in 0..MR {
                        let row = std::slice::from_raw_parts_mut(out.add(i * dst.n), 2 * PANEL);
                        for (y, bv) in row.iter_mut().zip(b) {
                            *y += bv;
                        }
                    }
                }
                continue;
            }
            store_tiles(&mut c.0);
            for i in 0..16 {
                for (t, (dr, dp)) in [(0, 0), (0, 1), (16, 0), (16, 1)].into_iter().enumerate() {
                    let row = r + dr + i;
                    if row < r1 {
                        let vals: &[f32; PANEL] =
                            c.0[t][i * PANEL..(i + 1) * PANEL].try_into().unwrap_or(&[0.0; PANEL]);
                        dst.store16(row, (p + dp) * PANEL, vals);
                    }
                }
            }
        }
    }
    release();
}

/// Computes output rows `r0..r1` × panels `p0..p1` of the INT8 GEMM on AMX tiles
/// (signed activation × signed weight, no offset).
///
/// # Safety
/// As for [`gemm_bf16_tile`]; `a` is the signed quantised activation, `lda(kp)` bytes per row.
pub unsafe fn gemm_int8_tile(a: &[i8], w: &PackedInt8, r0: usize, r1: usize, p0: usize, p1: usize, dst: &DstI8) {
    let kp = w.k_padded();
    let ps = w.panel_stride();
    let mut c = Scratch([[0i32; PANEL * 16]; 4]);
    configure();
    for r in (r0..r1).step_by(MR) {
        for p in (p0..p1).step_by(2) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            let a0 = a.as_ptr().add(r * lda(kp));
            let a1 = a0.add(16 * lda(kp));
            let b0 = w.data().as_ptr().add(p * ps);
            let b1 = b0.add(ps);
            for kb in 0..kp / 64 {
                asm!(
                    // Loads interleaved with the products that first need them, so
                    // the next load overlaps the running product.
                    "tileloadd tmm4, [{a0} + {lda}*1]",
                    "tileloadd tmm6, [{b0} + {ldb}*1]",
                    "tdpbssd tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {ldb}*1]",
                    "tdpbssd tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {lda}*1]",
                    "tdpbssd tmm2, tmm5, tmm6",
                    "tdpbssd tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(kb * 64),
                    a1 = in(reg) a1.add(kb * 64),
                    b0 = in(reg) b0.add(kb * 16 * 4 * PANEL),
                    b1 = in(reg) b1.add(kb * 16 * 4 * PANEL),
                    lda = in(reg) lda(kp),
                    ldb = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            store_tiles(&mut c.0);
            for i in 0..16 {
                for (t, (dr, dp)) in [(0, 0), (0, 1), (16, 0), (16, 1)].into_iter().enumerate() {
                    let row = r + dr + i;
                    if row < r1 {
                        let vals: &[i32; PANEL] = c.0[t][i * PANEL..(i + 1) * PANEL].try_into().unwrap_or(&[0; PANEL]);
                        dst.store16(row, (p + dp) * PANEL, vals);
                    }
                }
            }
        }
    }
    release();
}

/// Stores tmm0..3 into four 16×16 blocks of 4-byte elements.
unsafe fn store_tiles<T: Copy>(c: &mut [[T; PANEL * 16]; 4]) {
    asm!(
        "tilestored [{c0} + {ld}*1], tmm0",
        "tilestored [{c1} + {ld}*1], tmm1",
        "tilestored [{c2} + {ld}*1], tmm2",
        "tilestored [{c3} + {ld}*1], tmm3",
        c0 = in(reg) c[0].as_mut_ptr(),
        c1 = in(reg) c[1].as_mut_ptr(),
        c2 = in(reg) c[2].as_mut_ptr(),
        c3 = in(reg) c[3].as_mut_ptr(),
        ld = in(reg) 64usize,
        options(nostack),
    );
}
