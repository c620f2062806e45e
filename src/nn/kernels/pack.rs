//! Weight packing for the BF16 GEMM: `W (N×K)` rearranged once, at load, into the layout the
//! AMX and AVX512-BF16 instructions read directly.
//!
//! Layout ("VNNI pairs in 16-column panels"): columns are grouped in panels of 16 (N padded to
//! a multiple of 32 so AMX can always work on two panels at once), K is padded to a multiple
//! of 32 (one AMX tile of K). Inside a panel, for each pair of K indices `kk = k/2`, the 16
//! columns store their two values side by side: `[kk][col 0..16][k&1]`. One `kk` row is 64
//! bytes: exactly a `vdpbf16ps` operand and one row of an AMX B tile, and 16 rows in a row
//! form a whole B tile. Padding is zero, so padded products add nothing.

use half::bf16;
use rayon::prelude::*;

/// Columns of one panel.
pub const PANEL: usize = 16;
/// K is padded to a multiple of this (one AMX BF16 tile of K).
pub const K_ALIGN: usize = 32;

/// A weight `W (N×K)` packed for [`crate::nn::kernels::gemm_bf16`].
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    kp: usize,
    panels: usize,
    data: Vec<u16>,
}

impl PackedBf16 {
    /// Packs a row-major `N×K` bf16 weight (PyTorch `(out, in)` order).
    ///
    /// Returns `None` when `w.len() != n * k`.
    pub fn pack(w: &[bf16], n: usize, k: usize) -> Option<Self> {
        Self::pack_by(n, k, w.len(), |i| w[i].to_bits())
    }

    /// Packs a row-major `N×K` f32 weight, rounding each value to bf16 (nearest even).
    ///
    /// Returns `None` when `w.len() != n * k`.
    pub fn pack_f32(w: &[f32], n: usize, k: usize) -> Option<Self> {
        Self::pack_by(n, k, w.len(), |i| bf16::from_f32(w[i]).to_bits())
    }

    fn pack_by(n: usize, k: usize, len: usize, get: impl Fn(usize) -> u16 + Sync) -> Option<Self> {
        if n.checked_mul(k)? != len {
            return None;
        }
        let kp = k.div_ceil(K_ALIGN).max(1) * K_ALIGN;
        let panels = n.div_ceil(2 * PANEL).max(1) * 2;
        let mut data = vec![0u16; panels * PANEL * kp];
        // Panels are independent: pack them in parallel (the model has ~3e9 weights).
        data.par_chunks_mut(PANEL * kp).enumerate().for_each(|(p, dst)| {
            for c in 0..PANEL.min(n.saturating_sub(p * PANEL)) {
                let row = (p * PANEL + c) * k;
                for kk in 0..k {
                    dst[(kk / 2) * 2 * PANEL + c * 2 + (kk & 1)] = get(row + kk);
                }
            }
        });
        Some(Self { n, k, kp, panels, data })
    }

    /// Packs a row-major `N×K` weight given as bf16 bits into `buf`'s allocation, serially:
    /// the per-call packing of the in-place GEMM (`inplace_bf16.rs`) reuses one buffer per
    /// thread. Returns `None` when `w.len() != n * k`.
    pub(crate) fn pack_bits_into(mut buf: Vec<u16>, w: &[u16], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() {
            return None;
        }
        let kp = k.div_ceil(K_ALIGN).max(1) * K_ALIGN;
        let panels = n.div_ceil(2 * PANEL).max(1) * 2;
        buf.clear();
        buf.resize(panels * PANEL * kp, 0);
        for (p, dst) in buf.chunks_mut(PANEL * kp).enumerate() {
            for c in 0..PANEL.min(n.saturating_sub(p * PANEL)) {
                let row = &w[(p * PANEL + c) * k..(p * PANEL + c + 1) * k];
                for (kk2, pair) in row.chunks(2).enumerate() {
                    let at = kk2 * 2 * PANEL + c * 2;
                    dst[at..at + pair.len()].copy_from_slice(pair);
                }
            }
        }
        Some(Self {
            n,
            k,
            kp,
            panels,
            data: buf,
        })
    }

    /// Gives the packed buffer back (for reuse by [`PackedBf16::pack_bits_into`]).
    pub(crate) fn into_data(self) -> Vec<u16> {
        self.data
    }

    /// Output features `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// K padded to a multiple of [`K_ALIGN`].
    pub fn k_padded(&self) -> usize {
        self.kp
    }

    /// Number of 16-column panels (even).
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// Bytes held by the packed weight.
    pub fn size_in_bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The packed bf16 bits (see the module doc for the layout).
    pub fn data(&self) -> &[u16] {
        &self.data
    }

    /// Elements between the starts of two consecutive panels.
    pub fn panel_stride(&self) -> usize {
        PANEL * self.kp
    }

    /// Unpacks element `(col, kk)` as f32 (used by tests and references).
    pub fn get(&self, col: usize, kk: usize) -> f32 {
        let (p, c) = (col / PANEL, col % PANEL);
        let bits = self.data[p * self.panel_stride() + (kk / 2) * 2 * PANEL + c * 2 + (kk & 1)];
        bf16::from_bits(bits).to_f32()
    }
}
