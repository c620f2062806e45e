//! The INT8 GEMM on a weight kept in the plain layout `dsocr convert` writes: row-major int8
//! `W (N×K)` plus one f32 scale per output row, read in place from the memory map.
//!
//! `out (M×N) = x (M×K) · Wᵀ + bias` with each activation row quantised to int8 (symmetric,
//! per row, exactly as [`super::gemm_int8`] does) and the products summed exactly in i32, so
//! the results are bit-identical to those of the packed INT8 GEMM on the same values:
//!
//! * **Row dot products** (M < 64, every tier; `dot.rs`): the weight rows straight from the
//!   file against the quantised activation rows. `vpdpbusd` (AVX512-VNNI and AMX, AVX-VNNI)
//!   takes the activation offset to unsigned (`q + 128`); the offset is removed with
//!   `128 · Σ_k w[n,k]`, computed once per weight on its first call (not at load, so a weight
//!   no token reaches is never read). AVX2 (`vpmaddubsw` with the sign trick) and the
//!   portable kernel take the signed activation and need no offset.
//! * **Packing while computing** (M ≥ 64): each task packs a block of weight rows into a
//!   [`PackedInt8`] and runs [`super::gemm_int8_with`] on it.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::dot::{self, DotInt8};
use super::gemv_int8::PackedInt8;
use super::inplace_bf16::{InplaceStrategy, WeightBytes, DOT_MAX_M};
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512, avxvnni};
use super::{portable, KernelPath, Op, SendPtr};
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
    /// `128 · Σ_k w[n,k]` per row (the VNNI offset correction), made on first use.
    offsets: OnceLock<Vec<i32>>,
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
            offsets: OnceLock::new(),
        })
    }

    /// Owns `values` (`n·k`, row-major) and `scales` (`n`). `None` when a length is wrong.
    pub fn from_parts(values: Vec<i8>, scales: Vec<f32>, n: usize, k: usize) -> Option<Self> {
        (n.checked_mul(k)? == values.len() && scales.len() == n).then_some(Self {
            n,
            k,
            values: Values::Owned(values),
            scales,
            offsets: OnceLock::new(),
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

    /// `128 · Σ_k w[n,k]` for every row `n`, computed on the first call (in parallel).
    fn offsets(&self) -> &[i32] {
        self.offsets.get_or_init(|| {
            let k = self.k.max(1);
            self.values()
                .par_chunks(k)
                .map(|row| 128 * row.iter().map(|&v| v as i32).sum::<i32>())
                .collect()
        })
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
    // Every tier has a row-dot micro-kernel; packing pays off from DOT_MAX_M rows on.
    let dot = match strategy {
        InplaceStrategy::Dot => true,
        InplaceStrategy::Pack => false,
        InplaceStrategy::Auto => m < DOT_MAX_M,
    };
    if !dot || k == 0 {
        return pack_driver(path, x, m, w, bias, out);
    }
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: tier_under only returns tiers the CPU has; AMX implies AVX512-VNNI.
        KernelPath::Amx | KernelPath::Avx512Vnni => unsafe { dot_driver::<avx512::Int8VnniDot>(x, m, w, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-VNNI tier is only returned when the CPU has AVX2 and AVX-VNNI.
        KernelPath::AvxVnni => unsafe { dot_driver::<avxvnni::Int8Dot>(x, m, w, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX2 tier is only returned when the CPU has AVX2.
        KernelPath::Avx2 => unsafe { dot_driver::<avx2::Int8Dot>(x, m, w, bias, out) },
        // SAFETY: the portable kernel needs no CPU feature. (Portable, and every tier on
        // CPUs other than x86-64, where only it is available.)
        _ => unsafe { dot_driver::<portable::Int8Dot>(x, m, w, bias, out) },
    }
    Ok(())
}

/// `out = x · Wᵀ + bias` with the row-dot micro-kernel `D` (K > 0): the activation rows
/// quantised as the packed GEMM does, exact i32 sums, the same rescaling.
///
/// # Safety
/// The CPU must have `D`'s features.
unsafe fn dot_driver<D: DotInt8>(x: &[f32], m: usize, w: &RowMajorInt8, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let mut q = vec![0i8; m * k];
    let mut sx = vec![0f32; m];
    for (r, (row, s)) in q.chunks_exact_mut(k).zip(&mut sx).enumerate() {
        *s = quantize_row(&x[r * k..(r + 1) * k], row).1;
    }
    let a = D::rows(q);
    let offsets = D::OFFSET.then(|| w.offsets());
    let scales = &w.scales;
    let dst = SendPtr(out.as_mut_ptr());
    let store = |i: usize, j: usize, sum: i32| {
        let sum = match offsets {
            Some(o) => sum - o[j],
            None => sum,
        };
        // The packed GEMM's rescaling (`DstI8::store16`), operation for operation.
        let y = sum as f32 * (sx[i] * scales[j]) + bias.map_or(0.0, |b| b[j]);
        // SAFETY: i < m, j < n (inside the output); `drive` stores each (i, j) once, and
        // only from the task that owns column j.
        unsafe { *dst.get().add(i * n + j) = y };
    };
    // SAFETY: the caller guarantees the features; `a` holds m×K, the weight N×K.
    unsafe { dot::drive::<D>(&a, k, m, w.values(), n, k, store) };
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
        let (c0, c1) = (b * PACK_ROWS, ((b + 1) * PACK_ROWS).min(n));
        let cols = c1 - c0;
        let packed = PackedInt8::pack_parts(&values[c0 * k..c1 * k], &w.scales[c0..c1], cols, k);
        let mut tmp = vec![0f32; m * cols];
        super::gemm_int8_with(path, x, m, &packed, bias.map(|b| &b[c0..c1]), &mut tmp)?;
        for (r, trow) in tmp.chunks_exact(cols).enumerate() {
            // SAFETY: output row r, columns c0..c1 belong to this task only.
            let orow = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(r * n + c0), cols) };
            orow.copy_from_slice(trow);
        }
        Ok(())
    })
}
