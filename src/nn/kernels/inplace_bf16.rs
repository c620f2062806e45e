//! The BF16 GEMM on a weight kept in its checkpoint layout: row-major `W (N×K)` bf16, read in
//! place (typically straight from the memory-mapped safetensors file), with no packing at load.
//!
//! `out (M×N) = x (M×K) · Wᵀ + bias`, f32 in and out, bf16 products, f32 sums. Two drivers:
//!
//! * **Row dot products** (AVX512-BF16, every M on CPUs without AMX): a register-blocked
//!   micro-kernel of up to 4 activation rows × 4 weight rows, each a `vdpbf16ps` chain over K
//!   (32 values per instruction, read straight from the row-major weight), summed
//!   horizontally at the end. Parallel over blocks of weight rows, so each weight row is read
//!   from memory once per call while the activation stays in cache; M = 1 is the decode GEMV.
//! * **Packing while computing** (BLIS style; AMX at M ≥ 16, AVX2, portable): each task packs
//!   a block of weight rows into a per-thread, cache-sized [`PackedBf16`] buffer (the layout of
//!   `pack.rs`) and runs the packed micro-kernels of `amx.rs` / `avx512.rs` / `avx2.rs` /
//!   `portable.rs` on it for every activation row block.
//!
//! Only the weight rows a call touches are read: an expert that no token is routed to is never
//! paged in from the file.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::gemm::{bf16_rows, f32_rows, to_bf16, Dst, AMX_MIN_M};
use super::pack::{PackedBf16, K_ALIGN, PANEL};
#[cfg(target_arch = "x86_64")]
use super::{amx, avx2, avx512};
use super::{portable, KernelPath, Op, SendPtr};

/// Bytes that own a weight's storage (a memory-mapped tensor, or a plain buffer).
pub trait WeightBytes: AsRef<[u8]> + Send + Sync {}
impl<T: AsRef<[u8]> + Send + Sync> WeightBytes for T {}

enum Source {
    /// Little-endian bf16 bytes held elsewhere (a memory map), 2-byte aligned.
    Shared(Arc<dyn WeightBytes>),
    /// bf16 bits owned here (an f32 checkpoint rounded at load, or a misaligned file).
    Owned(Vec<u16>),
}

/// A bf16 weight `W (N×K)` in row-major (PyTorch `(out, in)`) order, computed on in place.
pub struct RowMajorBf16 {
    n: usize,
    k: usize,
    src: Source,
}

impl std::fmt::Debug for RowMajorBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RowMajorBf16({}×{}, {})",
            self.n,
            self.k,
            if self.is_shared() { "in place" } else { "owned" }
        )
    }
}

impl RowMajorBf16 {
    /// Uses `bytes` (little-endian bf16, `n·k·2` bytes) in place. A buffer that is not 2-byte
    /// aligned (or a big-endian host) is copied once instead. `None` when the length is wrong.
    pub fn from_shared(bytes: Arc<dyn WeightBytes>, n: usize, k: usize) -> Option<Self> {
        let b = (*bytes).as_ref();
        if n.checked_mul(k)?.checked_mul(2)? != b.len() {
            return None;
        }
        if cfg!(target_endian = "little") && (b.as_ptr() as usize).is_multiple_of(std::mem::align_of::<u16>()) {
            return Some(Self {
                n,
                k,
                src: Source::Shared(bytes),
            });
        }
        let bits = b.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
        Some(Self {
            n,
            k,
            src: Source::Owned(bits),
        })
    }

    /// Owns bf16 bits, row-major `n×k`. `None` when `bits.len() != n * k`.
    pub fn from_bits(bits: Vec<u16>, n: usize, k: usize) -> Option<Self> {
        (n.checked_mul(k)? == bits.len()).then_some(Self {
            n,
            k,
            src: Source::Owned(bits),
        })
    }

    /// Rounds a row-major `n×k` f32 weight to bf16 (nearest even) and owns it.
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() {
            return None;
        }
        let mut bits = vec![0u16; w.len()];
        to_bf16(w, &mut bits);
        Self::from_bits(bits, n, k)
    }

    /// Output features `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether the weight is used in place (not copied into memory of its own).
    pub fn is_shared(&self) -> bool {
        matches!(self.src, Source::Shared(_))
    }

    /// Bytes of memory this weight owns (0 when it is used in place).
    pub fn owned_bytes(&self) -> usize {
        match &self.src {
            Source::Shared(_) => 0,
            Source::Owned(v) => v.len() * 2,
        }
    }

    /// The weight as bf16 bits, row-major `N×K`.
    pub fn bits(&self) -> &[u16] {
        match &self.src {
            Source::Owned(v) => v,
            Source::Shared(b) => {
                let b = (**b).as_ref();
                // SAFETY: `from_shared` checked that the buffer is 2-byte aligned and holds
                // exactly `n·k` u16 (any bit pattern is a valid u16, the host is little-endian
                // like the file); the slice borrows `self`, which keeps the bytes alive.
                unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u16, b.len() / 2) }
            }
        }
    }

    /// Element `(row, col)` as f32 (for tests and references).
    pub fn get(&self, row: usize, col: usize) -> f32 {
        f32::from_bits((self.bits()[row * self.k + col] as u32) << 16)
    }
}

/// Which driver computes a product (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InplaceStrategy {
    /// The driver this path uses by default.
    Auto,
    /// Row dot products on the row-major weight (AVX512-BF16 only; elsewhere `Auto`).
    Dot,
    /// Pack weight blocks per call into per-thread buffers (BLIS style).
    Pack,
}

/// `out = x · Wᵀ + bias` on the active kernel path; see [`gemm_bf16_inplace_with`].
pub fn gemm_bf16_inplace(x: &[f32], m: usize, w: &RowMajorBf16, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    gemm_bf16_inplace_with(Op::Bf16Gemm.active_tier(), InplaceStrategy::Auto, x, m, w, bias, out)
}

/// `out (M×N, row-major) = x (M×K, row-major) · Wᵀ + bias (N)` with the row-major weight
/// `w`, on `path` (or the best available path below it) with `strategy`.
///
/// Numerics are those of [`super::gemm_bf16_with`]: x is rounded to bf16 on the AMX and
/// AVX-512 paths (kept f32 on AVX2 / portable), sums are f32. Errors when a slice length does
/// not match `m`, `N`, `K`.
pub fn gemm_bf16_inplace_with(
    path: KernelPath,
    strategy: InplaceStrategy,
    x: &[f32],
    m: usize,
    w: &RowMajorBf16,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let (n, k) = (w.n, w.k);
    if x.len() != m * k {
        bail!("gemm_bf16: x has {} elements, expected {m}×{k}", x.len());
    }
    if out.len() != m * n {
        bail!("gemm_bf16: out has {} elements, expected {m}×{n}", out.len());
    }
    if let Some(b) = bias {
        if b.len() != n {
            bail!("gemm_bf16: bias has {} elements, expected {n}", b.len());
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let path = Op::Bf16Gemm.tier_under(path);
    let bf16_dot = matches!(path, KernelPath::Avx512Bf16 | KernelPath::Amx);
    let dot = match strategy {
        InplaceStrategy::Dot => bf16_dot,
        InplaceStrategy::Pack => false,
        // AMX tiles need the packed layout; without AMX the dot kernel needs no packing.
        InplaceStrategy::Auto => bf16_dot && !(path == KernelPath::Amx && m >= AMX_MIN_M),
    };
    if k == 0 {
        for row in out.chunks_exact_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
        }
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if dot {
        dot_driver(x, m, w, bias, out);
        return Ok(());
    }
    let _ = dot;
    pack_driver(path, x, m, w, bias, out);
    Ok(())
}

/// Weight rows per dot-product micro-kernel, and activation rows.
const DOT_NR: usize = 4;
const DOT_MR: usize = 4;

#[cfg(target_arch = "x86_64")]
fn dot_driver(x: &[f32], m: usize, w: &RowMajorBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let mut a = vec![0u16; m * k];
    to_bf16(x, &mut a);
    let bits = w.bits();
    let dst = SendPtr(out.as_mut_ptr());
    let threads = rayon::current_num_threads().max(1);
    // Enough blocks to balance the threads; at least 16 rows so tiny calls stay serial.
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
                // SAFETY: the dot path is only chosen when the CPU has AVX512-BF16; rows
                // i..i+mr of `a` and j..j+nr of `bits` exist; this task alone writes output
                // columns n0..n1.
                unsafe { dot_block(&a[i * k..], &bits[j * k..], k, mr, nr, i, j, n, bias, dst) };
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

/// Dispatches one `mr × nr` block to the monomorphised micro-kernel.
///
/// # Safety
/// AVX512-BF16 available; `a` holds `mr` rows of `k`, `b` `nr` rows of `k`; output rows
/// `row..row+mr`, columns `col..col+nr` of the `·×n` output at `dst` are this task's alone.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_block(
    a: &[u16],
    b: &[u16],
    k: usize,
    mr: usize,
    nr: usize,
    row: usize,
    col: usize,
    n: usize,
    bias: Option<&[f32]>,
    dst: SendPtr,
) {
    macro_rules! go {
        ($($m:literal, $n:literal);*) => {
            match (mr, nr) {
                $(($m, $n) => {
                    let s = avx512_dot::micro::<$m, $n>(a.as_ptr(), b.as_ptr(), k);
                    for (r, sr) in s.iter().enumerate() {
                        for (c, v) in sr.iter().enumerate() {
                            let bv = bias.map_or(0.0, |b| b[col + c]);
                            *dst.0.add((row + r) * n + col + c) = v + bv;
                        }
                    }
                })*
                _ => unreachable!(),
            }
        };
    }
    go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4);
}

#[cfg(target_arch = "x86_64")]
mod avx512_dot {
    use core::arch::x86_64::*;
    use core::mem::transmute;

    /// `MR × NR` dot products of bf16 rows of length `k`: activation rows at `a`, weight rows
    /// at `b` (both with row stride `k`), 32 values per `vdpbf16ps`, a masked load for the tail.
    ///
    /// # Safety
    /// The CPU must support AVX512F/BW and AVX512-BF16; `a` must hold `MR·k` and `b` `NR·k`
    /// readable u16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    #[inline]
    pub unsafe fn micro<const MR: usize, const NR: usize>(a: *const u16, b: *const u16, k: usize) -> [[f32; NR]; MR] {
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        let full = k / 32 * 32;
        let mut kk = 0;
        while kk < full {
            let mut bv = [_mm512_setzero_si512(); NR];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(b.add(j * k + kk) as *const __m512i);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av: __m512bh = transmute(_mm512_loadu_si512(a.add(r * k + kk) as *const __m512i));
                for j in 0..NR {
                    acc_r[j] = _mm512_dpbf16_ps(acc_r[j], av, transmute::<__m512i, __m512bh>(bv[j]));
                }
            }
            kk += 32;
        }
        if full < k {
            let mask: __mmask32 = (1u32 << (k - full)) - 1;
            let mut bv = [_mm512_setzero_si512(); NR];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_epi16(mask, b.add(j * k + full) as *const i16);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av: __m512bh = transmute(_mm512_maskz_loadu_epi16(mask, a.add(r * k + full) as *const i16));
                for j in 0..NR {
                    acc_r[j] = _mm512_dpbf16_ps(acc_r[j], av, transmute::<__m512i, __m512bh>(bv[j]));
                }
            }
        }
        let mut s = [[0f32; NR]; MR];
        for (sr, acc_r) in s.iter_mut().zip(&acc) {
            for (v, a) in sr.iter_mut().zip(acc_r) {
                *v = _mm512_reduce_add_ps(*a);
            }
        }
        s
    }
}

/// Packed activation rows for the packing driver, in the form the path's micro-kernel reads.
enum Rows<'a> {
    Bf16(Vec<u16>),
    F32(std::borrow::Cow<'a, [f32]>),
}

/// Bytes of one packed weight block a task keeps in L2 while the activation streams past.
const BLOCK_BYTES: usize = 512 << 10;
/// Activation rows per micro-kernel call (a multiple of the AMX block of 32 rows).
const ROW_BLOCK: usize = 64;

thread_local! {
    /// The packing buffer of this thread, reused across calls.
    static PACK_BUF: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

fn pack_driver(path: KernelPath, x: &[f32], m: usize, w: &RowMajorBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let kp = k.div_ceil(K_ALIGN) * K_ALIGN;
    let use_amx = path == KernelPath::Amx && m >= AMX_MIN_M;
    let rows = match path {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Amx if use_amx => Rows::Bf16(bf16_rows(x, m, k, amx::lda(kp), m.next_multiple_of(amx::MR))),
        KernelPath::Amx | KernelPath::Avx512Bf16 => Rows::Bf16(bf16_rows(x, m, k, kp, m)),
        _ => Rows::F32(f32_rows(x, m, k, kp)),
    };
    let threads = rayon::current_num_threads().max(1);
    let panels = n.div_ceil(PANEL);
    // Panels per block (even, as the packer pads to pairs): as many as fit the cache budget,
    // fewer when that leaves threads idle.
    let by_cache = (BLOCK_BYTES / (PANEL * kp * 2)).max(2) / 2 * 2;
    let by_threads = panels.div_ceil(4 * threads).next_multiple_of(2).max(2);
    let pc = by_cache.min(by_threads);
    let blocks = panels.div_ceil(pc);
    // Split the rows too when there are fewer blocks than threads have work for.
    let row_blocks = m.div_ceil(ROW_BLOCK);
    let splits = (4 * threads).div_ceil(blocks).min(row_blocks).max(1);
    let rows_per_split = row_blocks.div_ceil(splits) * ROW_BLOCK;
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |t: usize| {
        // Capture the whole pointer wrapper (Sync), not its raw field.
        #[allow(clippy::redundant_locals)]
        let out_ptr = out_ptr;
        let (b, s) = (t / splits, t % splits);
        let c0 = b * pc * PANEL;
        let cols = (pc * PANEL).min(n - c0);
        let (r0, r1) = (s * rows_per_split, ((s + 1) * rows_per_split).min(m));
        if r0 >= r1 {
            return;
        }
        PACK_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let src = &w.bits()[c0 * k..(c0 + cols) * k];
            let Some(packed) = PackedBf16::pack_bits_into(std::mem::take(&mut *buf), src, cols, k) else {
                return;
            };
            let width = packed.panels() * PANEL;
            // A block whose padded width fits inside the output is written in place; the
            // last, partial block goes through a scratch buffer.
            let in_place = c0 + width <= n;
            // Rows 0..r1 so that the kernels' absolute row indices stay inside it.
            let mut scratch = if in_place { Vec::new() } else { vec![0f32; r1 * width] };
            let dst = if in_place {
                Dst {
                    // SAFETY: c0 < n, inside the output.
                    ptr: SendPtr(unsafe { out_ptr.0.add(c0) }),
                    n,
                    bias: bias.map(|b| &b[c0..]),
                }
            } else {
                Dst {
                    ptr: SendPtr(scratch.as_mut_ptr()),
                    n: width,
                    bias: None,
                }
            };
            let mut r = r0;
            while r < r1 {
                let re = (r + ROW_BLOCK).min(r1);
                tile(path, use_amx, &rows, &packed, r, re, &dst);
                r = re;
            }
            if !in_place {
                for (row, srow) in scratch.chunks_exact(width).enumerate().skip(r0) {
                    // SAFETY: output row `row`, columns c0..c0+cols belong to this task only.
                    let orow = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(row * n + c0), cols) };
                    for (c, (o, v)) in orow.iter_mut().zip(srow).enumerate() {
                        *o = v + bias.map_or(0.0, |b| b[c0 + c]);
                    }
                }
            }
            *buf = packed.into_data();
        });
    };
    let tasks = blocks * splits;
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// Runs the path's packed micro-kernel on rows `r0..r1` of every panel of `w`.
fn tile(path: KernelPath, use_amx: bool, rows: &Rows, w: &PackedBf16, r0: usize, r1: usize, dst: &Dst) {
    let p1 = w.panels();
    match (path, rows) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AMX is only chosen when the CPU and OS support it; r0 is a multiple of
        // 32 (ROW_BLOCK is), the panel count is even, and the rows are padded to 32.
        (KernelPath::Amx, Rows::Bf16(a)) if use_amx => unsafe { amx::gemm_bf16_tile(a, w, r0, r1, 0, p1, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX512-BF16 path is only chosen when the CPU supports it.
        (KernelPath::Amx | KernelPath::Avx512Bf16, Rows::Bf16(a)) => unsafe {
            avx512::gemm_bf16_tile(a, w, r0, r1, 0, p1, dst)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-512 path is only chosen when the CPU supports AVX-512F/BW/VL.
        (KernelPath::Avx512, Rows::F32(a)) => unsafe { avx512::gemm_bf16_wide_tile(a, w, r0, r1, 0, p1, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX2 path is only chosen when the CPU supports AVX2 and FMA.
        (KernelPath::Avx2, Rows::F32(a)) => unsafe { avx2::gemm_bf16_tile(a, w, r0, r1, 0, p1, dst) },
        (_, Rows::F32(a)) => portable::gemm_bf16_tile(a, w, r0, r1, 0, p1, dst),
        (_, Rows::Bf16(_)) => unreachable!("bf16 rows are only made for the AVX512-BF16 and AMX paths"),
    }
}
