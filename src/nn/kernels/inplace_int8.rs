//! The INT8 GEMM on a weight kept in the plain layout `dsocr convert` writes: row-major int8
//! `W (N×K)` plus one f32 scale per output row, read in place from the memory map.
//!
//! `out (M×N) = x (M×K) · Wᵀ + bias` with each activation row quantised to int8 (symmetric,
//! per row, exactly as [`super::gemm_int8`] does) and the products summed exactly in i32, so
//! the results are bit-identical to those of the packed INT8 GEMM on the same values:
//!
//! * **Row dot products** (AVX-512 VNNI, every M on CPUs without AMX): `vpdpbusd` takes the
//!   activation offset to unsigned (`q + 128`) and the weight row straight from the file; the
//!   offset is removed with the weight row's sum, accumulated by one more `vpdpbusd` against
//!   ones while the row streams past (nothing is precomputed at load).
//! * **Packing while computing** (AMX at M ≥ 16, AVX2, portable): each task packs a block of
//!   weight rows into a [`PackedInt8`] and runs [`super::gemm_int8_with`] on it.

use std::sync::Arc;

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::gemm::AMX_MIN_M;
use super::gemv_int8::PackedInt8;
use super::inplace_bf16::{InplaceStrategy, WeightBytes};
use super::{KernelPath, Op, SendPtr};
use crate::quant::int8::quantize_row;

enum Values {
    Shared(Arc<dyn WeightBytes>),
    Owned(Vec<i8>),
}

/// An int8 weight `W (N×K)`, row-major, with one f32 scale per row, computed on in place.
pub struct RowMajorInt8 {
    n: usize,
    k: usize,
    values: Values,
    scales: Vec<f32>,
}

impl std::fmt::Debug for RowMajorInt8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowMajorInt8({}×{})", self.n, self.k)
    }
}

impl RowMajorInt8 {
    /// Uses `values` (`n·k` int8 bytes, row-major) in place with `scales` (`n`). `None` when a
    /// length is wrong.
    pub fn from_shared(values: Arc<dyn WeightBytes>, scales: Vec<f32>, n: usize, k: usize) -> Option<Self> {
        (n.checked_mul(k)? == (*values).as_ref().len() && scales.len() == n).then_some(Self {
            n,
            k,
            values: Values::Shared(values),
            scales,
        })
    }

    /// Owns `values` (`n·k`, row-major) and `scales` (`n`). `None` when a length is wrong.
    pub fn from_parts(values: Vec<i8>, scales: Vec<f32>, n: usize, k: usize) -> Option<Self> {
        (n.checked_mul(k)? == values.len() && scales.len() == n).then_some(Self {
            n,
            k,
            values: Values::Owned(values),
            scales,
        })
    }

    /// Output features `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether the values are used in place (not copied).
    pub fn is_shared(&self) -> bool {
        matches!(self.values, Values::Shared(_))
    }

    /// The per-row scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The int8 values, row-major `N×K`.
    pub fn values(&self) -> &[i8] {
        match &self.values {
            Values::Owned(v) => v,
            Values::Shared(b) => {
                let b = (**b).as_ref();
                // SAFETY: i8 and u8 have the same size, alignment and valid bit patterns; the
                // slice borrows `self`, which keeps the bytes alive.
                unsafe { std::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
            }
        }
    }
}

/// `out = x · Wᵀ + bias` on the active kernel path; see [`gemm_int8_inplace_with`].
pub fn gemm_int8_inplace(x: &[f32], m: usize, w: &RowMajorInt8, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    gemm_int8_inplace_with(Op::Int8Gemm.active_tier(), InplaceStrategy::Auto, x, m, w, bias, out)
}

/// `out (M×N) = x (M×K) · Wᵀ + bias` with the row-major int8 weight `w` on `path` (or the
/// best available path below it) with `strategy`; bit-identical to [`super::gemm_int8_with`]
/// on the same values. Errors when a slice length does not match `m`, `N`, `K`.
pub fn gemm_int8_inplace_with(
    path: KernelPath,
    strategy: InplaceStrategy,
    x: &[f32],
    m: usize,
    w: &RowMajorInt8,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let (n, k) = (w.n, w.k);
    if x.len() != m * k {
        bail!("gemm_int8: x has {} elements, expected {m}×{k}", x.len());
    }
    if out.len() != m * n {
        bail!("gemm_int8: out has {} elements, expected {m}×{n}", out.len());
    }
    if let Some(b) = bias {
        if b.len() != n {
            bail!("gemm_int8: bias has {} elements, expected {n}", b.len());
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let path = Op::Int8Gemm.tier_under(path);
    let vnni = matches!(path, KernelPath::Avx512Vnni | KernelPath::Amx);
    let dot = match strategy {
        InplaceStrategy::Dot => vnni,
        InplaceStrategy::Pack => false,
        InplaceStrategy::Auto => vnni && !(path == KernelPath::Amx && m >= AMX_MIN_M),
    };
    #[cfg(target_arch = "x86_64")]
    if dot && k > 0 {
        dot_driver(x, m, w, bias, out);
        return Ok(());
    }
    let _ = dot;
    pack_driver(path, x, m, w, bias, out)
}

/// Weight rows per micro-kernel, and activation rows.
const DOT_NR: usize = 4;
const DOT_MR: usize = 4;

#[cfg(target_arch = "x86_64")]
fn dot_driver(x: &[f32], m: usize, w: &RowMajorInt8, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    // Activation rows quantised as the packed GEMM does, offset to unsigned for vpdpbusd.
    let mut a = vec![0u8; m * k];
    let mut sx = vec![0f32; m];
    let mut q = vec![0i8; k];
    for (r, (row, s)) in a.chunks_exact_mut(k).zip(&mut sx).enumerate() {
        *s = quantize_row(&x[r * k..(r + 1) * k], &mut q).1;
        for (d, v) in row.iter_mut().zip(&q) {
            *d = (*v as u8) ^ 0x80;
        }
    }
    let values = w.values();
    let scales = &w.scales;
    let dst = SendPtr(out.as_mut_ptr());
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = n.div_ceil(4 * threads).next_multiple_of(DOT_NR).max(16);
    let tasks = n.div_ceil(rows_per_task);
    let run = |t: usize| {
        // Capture the whole pointer wrapper (Sync), not its raw field.
        #[allow(clippy::redundant_locals)]
        let dst = dst;
        let (n0, n1) = (t * rows_per_task, ((t + 1) * rows_per_task).min(n));
        let mut j = n0;
        while j < n1 {
            let nr = (n1 - j).min(DOT_NR);
            let mut i = 0;
            while i < m {
                let mr = (m - i).min(DOT_MR);
                macro_rules! go {
                    ($($m:literal, $n:literal);*) => {
                        match (mr, nr) {
                            $(($m, $n) => {
                                // SAFETY: the dot path is only chosen when the CPU has
                                // AVX-512 VNNI; rows i..i+mr of `a` and j..j+nr of `values`
                                // exist.
                                let s = unsafe {
                                    vnni_dot::micro::<$m, $n>(a[i * k..].as_ptr(), values[j * k..].as_ptr(), k)
                                };
                                for (r, sr) in s.iter().enumerate() {
                                    for (c, sum) in sr.iter().enumerate() {
                                        let b = bias.map_or(0.0, |b| b[j + c]);
                                        let y = *sum as f32 * (sx[i + r] * scales[j + c]) + b;
                                        // SAFETY: this task alone writes columns n0..n1.
                                        unsafe { *dst.0.add((i + r) * n + j + c) = y };
                                    }
                                }
                            })*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4);
                i += mr;
            }
            j += nr;
        }
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni_dot {
    use core::arch::x86_64::*;

    /// `MR × NR` exact dot products `Σ_k q[r,k]·w[j,k]` of activation rows `a` (offset
    /// to unsigned: `q + 128`) and int8 weight rows `b`, both with row stride `k`.
    ///
    /// # Safety
    /// The CPU must support AVX512F/BW and AVX512-VNNI; `a` must hold `MR·k` and `b` `NR·k`
    /// readable bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    pub unsafe fn micro<const MR: usize, const NR: usize>(a: *const u8, b: *const i8, k: usize) -> [[i32; NR]; MR] {
        let mut acc = [[_mm512_setzero_si512(); NR]; MR];
        let mut wsum = [_mm512_setzero_si512(); NR];
        let ones = _mm512_set1_epi8(1);
        let full = k / 64 * 64;
        let mut kk = 0;
        while kk <= k {
            let (mask, at): (__mmask64, usize) = if kk < full {
                (!0, kk)
            } else if full < k {
                ((1u64 << (k - full)) - 1, full)
            } else {
                break;
            };
            let mut bv = [_mm512_setzero_si512(); NR];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_epi8(mask, b.add(j * k + at));
                wsum[j] = _mm512_dpbusd_epi32(wsum[j], ones, *v);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_maskz_loadu_epi8(mask, a.add(r * k + at) as *const i8);
                for j in 0..NR {
                    acc_r[j] = _mm512_dpbusd_epi32(acc_r[j], av, bv[j]);
                }
            }
            if at == full {
                break;
            }
            kk += 64;
        }
        let mut s = [[0i32; NR]; MR];
        let off: [i32; NR] = core::array::from_fn(|j| 128 * _mm512_reduce_add_epi32(wsum[j]));
        for (sr, acc_r) in s.iter_mut().zip(&acc) {
            for (j, (v, a)) in sr.iter_mut().zip(acc_r).enumerate() {
                *v = _mm512_reduce_add_epi32(*a) - off[j];
            }
        }
        s
    }
}

/// Weight rows per packed block.
const PACK_ROWS: usize = 256;

fn pack_driver(
    path: KernelPath,
    x: &[f32],
    m: usize,
    w: &RowMajorInt8,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let (n, k) = (w.n, w.k);
    let values = w.values();
    let blocks = n.div_ceil(PACK_ROWS);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..blocks).into_par_iter().try_for_each(|b| -> Result<()> {
        // Capture the whole pointer wrapper (Sync), not its raw field.
        #[allow(clippy::redundant_locals)]
        let out_ptr = out_ptr;
        let (c0, c1) = (b * PACK_ROWS, ((b + 1) * PACK_ROWS).min(n));
        let cols = c1 - c0;
        let packed = PackedInt8::pack_parts(&values[c0 * k..c1 * k], &w.scales[c0..c1], cols, k);
        let mut tmp = vec![0f32; m * cols];
        super::gemm_int8_with(path, x, m, &packed, bias.map(|b| &b[c0..c1]), &mut tmp)?;
        for (r, trow) in tmp.chunks_exact(cols).enumerate() {
            // SAFETY: output row r, columns c0..c1 belong to this task only.
            let orow = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(r * n + c0), cols) };
            orow.copy_from_slice(trow);
        }
        Ok(())
    })
}
