//! INT8 weight-only GEMM / GEMV: `out (M×N) = x (M×K) · Wᵀ + bias` with `W` stored as int8
//! with one scale per output channel, for every K and N (no multiple-of-256 restriction).
//!
//! Each activation row is quantised on the fly to int8 with its own scale (symmetric,
//! `max |x| / 127`), the products are summed exactly in i32 and rescaled:
//! `y[m,n] = sx[m] · sw[n] · Σ_k qx[m,k]·qw[n,k] + b[n]`.
//! * AMX: `tdpbssd` (signed × signed) for M ≥ 16.
//! * AVX512-VNNI / AVX-VNNI: `vpdpbusd` multiplies *unsigned* by signed bytes, so the
//!   activation is offset to `qx + 128` and `128 · Σ_k qw[n,k]` (precomputed per column) is
//!   subtracted.
//! * AVX2: `vpmaddubsw` with the sign trick (see `avx2.rs`); portable: plain integer sums.
//!
//! All paths produce the same i32 sums, hence (nearly) bit-identical outputs. Error versus
//! the f32 product: weight rounding (≤ sw/2 per weight) plus activation rounding (≤ sx/2 per
//! element) — about 1% of `|x|·|w|` in the worst case, far less on average.
//!
//! Packed layout: like the BF16 one with K quads instead of pairs: 16-column panels, K padded
//! to a multiple of 64 (one AMX INT8 tile), `[kq = k/4][col 0..16][k&3]`, 64 bytes per `kq`.

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::gemm::run_tiles;
#[cfg(target_arch = "x86_64")]
use super::gemm::Micro;
use super::pack::PANEL;
#[cfg(target_arch = "x86_64")]
use super::{amx, avx2, avx512, avxvnni};
use super::{portable, KernelPath, Op, SendPtr};
use crate::quant::int8::{quantize_row, QuantizedInt8};

/// K is padded to a multiple of this (one AMX INT8 tile of K).
pub const K_ALIGN_I8: usize = 64;

/// An INT8 weight packed for [`gemm_int8`].
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    n: usize,
    k: usize,
    kp: usize,
    panels: usize,
    data: Vec<i8>,
    /// Per column (padded to the panels): weight scale.
    scales: Vec<f32>,
    /// Per column: `128 · Σ_k q[n,k]`, the VNNI offset correction.
    offset: Vec<i32>,
}

impl PackedInt8 {
    /// Quantises (per output channel) and packs a row-major `N×K` f32 weight.
    /// Returns `None` when `w.len() != n * k`.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Option<Self> {
        Some(Self::pack(&QuantizedInt8::quantize(w, n, k)?))
    }

    /// Packs an already quantised weight.
    pub fn pack(q: &QuantizedInt8) -> Self {
        Self::pack_parts(&q.values, &q.scales, q.n, q.k)
    }

    /// Packs row-major int8 `values` (`n·k`) with their per-row `scales` (`n`), as stored;
    /// also the per-call packing of the in-place INT8 GEMM (`inplace_int8.rs`).
    pub(crate) fn pack_parts(values: &[i8], scales_in: &[f32], n: usize, k: usize) -> Self {
        let kp = k.div_ceil(K_ALIGN_I8).max(1) * K_ALIGN_I8;
        let panels = n.div_ceil(2 * PANEL).max(1) * 2;
        let ps = PANEL * kp;
        let mut data = vec![0i8; panels * ps];
        let mut scales = vec![0f32; panels * PANEL];
        let mut offset = vec![0i32; panels * PANEL];
        for col in 0..n {
            let (p, c) = (col / PANEL, col % PANEL);
            let src = &values[col * k..(col + 1) * k];
            let dst = &mut data[p * ps..(p + 1) * ps];
            for (kk, v) in src.iter().enumerate() {
                dst[(kk / 4) * 4 * PANEL + c * 4 + (kk & 3)] = *v;
            }
            scales[col] = scales_in[col];
            offset[col] = 128 * src.iter().map(|v| *v as i32).sum::<i32>();
        }
        Self {
            n,
            k,
            kp,
            panels,
            data,
            scales,
            offset,
        }
    }

    /// Output features `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// K padded to a multiple of [`K_ALIGN_I8`].
    pub fn k_padded(&self) -> usize {
        self.kp
    }

    /// Number of 16-column panels (even).
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// Elements between the starts of two consecutive panels.
    pub fn panel_stride(&self) -> usize {
        PANEL * self.kp
    }

    /// The packed int8 values (see the module doc for the layout).
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// Per-column weight scales (length `panels · 16`, zero past N).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Bytes held by the packed weight, scales included.
    pub fn size_in_bytes(&self) -> usize {
        self.data.len() + self.scales.len() * 4 + self.offset.len() * 4
    }

    /// The dequantised weight value `(col, kk)` (for tests and references).
    pub fn get(&self, col: usize, kk: usize) -> f32 {
        let (p, c) = (col / PANEL, col % PANEL);
        let q = self.data[p * self.panel_stride() + (kk / 4) * 4 * PANEL + c * 4 + (kk & 3)];
        q as f32 * self.scales[col]
    }
}

/// Where an INT8 kernel writes: rescales the i32 sums and adds the bias.
pub(crate) struct DstI8<'a> {
    pub ptr: SendPtr,
    pub n: usize,
    pub bias: Option<&'a [f32]>,
    /// Activation scale per row.
    pub x_scale: &'a [f32],
    pub w_scale: &'a [f32],
    /// Subtracted from the sums (VNNI offset correction), when present.
    pub offset: Option<&'a [i32]>,
}

impl DstI8<'_> {
    /// Writes the 16 columns `col0..col0+16` of `row` (those below N).
    ///
    /// # Safety
    /// `row` must be a valid output row and no other task may write this block.
    #[inline(always)]
    pub unsafe fn store16(&self, row: usize, col0: usize, acc: &[i32; PANEL]) {
        if col0 >= self.n {
            return;
        }
        let len = PANEL.min(self.n - col0);
        let sx = self.x_scale[row];
        let dst = self.ptr.0.add(row * self.n + col0);
        for c in 0..len {
            let sum = match self.offset {
                Some(o) => acc[c] - o[col0 + c],
                None => acc[c],
            };
            let b = self.bias.map_or(0.0, |b| b[col0 + c]);
            *dst.add(c) = sum as f32 * (sx * self.w_scale[col0 + c]) + b;
        }
    }
}

/// `out = x · Wᵀ + bias` on the active int8 tier; see [`gemm_int8_with`].
pub fn gemm_int8(x: &[f32], m: usize, w: &PackedInt8, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    gemm_int8_with(Op::Int8Gemm.active_tier(), x, m, w, bias, out)
}

/// `out (M×N) = x (M×K) · Wᵀ + bias` with the INT8 weight `w`, on the best int8 tier at or
/// below `path` that the CPU has ([`Op::tier_under`]). M = 1 is the decode GEMV. Errors when a slice length does not
/// match `m`, `N`, `K`.
pub fn gemm_int8_with(
    path: KernelPath,
    x: &[f32],
    m: usize,
    w: &PackedInt8,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let (n, k, kp) = (w.n, w.k, w.kp);
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
    let tier = Op::Int8Gemm.tier_under(path);
    let use_amx = tier == KernelPath::Amx && m >= super::gemm::AMX_MIN_M;
    let mpad = if use_amx {
        m.next_multiple_of(super::gemm::AMX_ROWS)
    } else {
        m
    };
    #[cfg(target_arch = "x86_64")]
    let lda = if use_amx { amx::lda(kp) } else { kp };
    #[cfg(not(target_arch = "x86_64"))]
    let lda = kp;
    // The VNNI tiers read the activation offset to unsigned.
    let unsigned = matches!(tier, KernelPath::Amx | KernelPath::Avx512Vnni | KernelPath::AvxVnni) && !use_amx;
    let (a, x_scale) = quantize_rows(x, m, k, lda, mpad, unsigned);
    let mut dst = DstI8 {
        ptr: SendPtr(out.as_mut_ptr()),
        n,
        bias,
        x_scale: &x_scale,
        w_scale: &w.scales,
        offset: None,
    };
    if unsigned {
        dst.offset = Some(&w.offset);
    }
    // SAFETY: `q + 128 == q ^ 0x80` was stored in place; i8 and u8 have the same layout.
    #[cfg(target_arch = "x86_64")]
    let au: &[u8] = unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, a.len()) };
    match tier {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Amx if use_amx => run_tiles(m, w.panels, amx::MR, 2, |r0, r1, p0, p1| {
            // SAFETY: the AMX tier is only chosen when the CPU and OS support it.
            unsafe { amx::gemm_int8_tile(&a, w, r0, r1, p0, p1, &dst) }
        }),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Amx | KernelPath::Avx512Vnni => {
            run_tiles(
                m,
                w.panels,
                avx512::Int8Vnni::MR,
                avx512::Int8Vnni::NR,
                |r0, r1, p0, p1| {
                    // SAFETY: the AVX512-VNNI tier is only chosen when the CPU supports it.
                    unsafe { avx512::gemm_int8_tile(au, w, r0, r1, p0, p1, &dst) }
                },
            )
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::AvxVnni => run_tiles(m, w.panels, avxvnni::Int8::MR, avxvnni::Int8::NR, |r0, r1, p0, p1| {
            // SAFETY: the AVX-VNNI tier is only chosen when the CPU supports it.
            unsafe { avxvnni::gemm_int8_tile(au, w, r0, r1, p0, p1, &dst) }
        }),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => run_tiles(m, w.panels, avx2::Int8::MR, avx2::Int8::NR, |r0, r1, p0, p1| {
            // SAFETY: the AVX2 tier is only chosen when the CPU supports it.
            unsafe { avx2::gemm_int8_tile(&a, w, r0, r1, p0, p1, &dst) }
        }),
        // Portable, and every tier on CPUs other than x86-64 (where only it is available).
        _ => run_tiles(m, w.panels, 4, 1, |r0, r1, p0, p1| {
            portable::gemm_int8_tile(&a, w, r0, r1, p0, p1, &dst)
        }),
    }
    Ok(())
}

/// Quantises each row of `x` to int8 (`mpad × kp`, zero padded) with its scale; with
/// `unsigned`, every value of the first `m` rows is stored offset by 128 (`q ^ 0x80`, the
/// padding included, so padded products cancel against the column sums too).
fn quantize_rows(x: &[f32], m: usize, k: usize, kp: usize, mpad: usize, unsigned: bool) -> (Vec<i8>, Vec<f32>) {
    let mut a = vec![0i8; mpad * kp];
    let mut scales = vec![0f32; mpad];
    a.par_chunks_mut(kp)
        .zip(scales.par_iter_mut())
        .take(m)
        .enumerate()
        .for_each(|(r, (row, s))| {
            *s = quantize_row(&x[r * k..(r + 1) * k], &mut row[..k]).1;
            if unsigned {
                for q in row.iter_mut() {
                    *q ^= i8::MIN;
                }
            }
        });
    (a, scales)
}
