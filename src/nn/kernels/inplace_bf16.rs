//! The BF16 GEMM on a weight kept in its checkpoint layout: row-major `W (N×K)` bf16, read in
//! place (typically straight from the memory-mapped safetensors file), with no packing at load.
//!
//! `out (M×N) = x (M×K) · Wᵀ + bias`, f32 in and out, f32 sums. Two drivers:
//!
//! * **Row dot products** (M < 64, every tier): register-blocked micro-kernels of up to 4
//!   activation rows × 4 weight rows, each a multiply-add chain over K read straight from the
//!   row-major weight, summed horizontally at the end (`dot.rs`): `vdpbf16ps` on bf16
//!   activations (AVX512-BF16, AMX), the weight widened to f32 in registers with an f32
//!   activation on AVX-512F and AVX2 + FMA, plain Rust on the portable tier. Parallel over
//!   blocks of weight rows, so each weight row is read from memory once per call while the
//!   activation stays in cache; M = 1 is the decode GEMV.
//! * **Packing while computing** (BLIS style, M ≥ 64): each task packs a block of weight rows
//!   into a per-thread, cache-sized [`PackedBf16`] buffer (the layout of `pack.rs`) and runs
//!   the packed micro-kernels of `amx.rs` / `avx512.rs` / `avx2.rs` / `portable.rs` on it for
//!   every activation row block.
//!
//! Only the weight rows a call touches are read: an expert that no token is routed to is never
//! paged in from the file.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{bail, Result};
use rayon::prelude::*;

use super::dot::{self, DotBf16};
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
    /// Row dot products below 64 activation rows, packing from there on.
    Auto,
    /// Row dot products on the row-major weight (every tier; the default below 64 rows).
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
    // Every tier has a row-dot micro-kernel; packing pays off from DOT_MAX_M rows on (and
    // AMX tiles need the packed layout).
    let dot = match strategy {
        InplaceStrategy::Dot => true,
        InplaceStrategy::Pack => false,
        InplaceStrategy::Auto => m < DOT_MAX_M,
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
    if !dot {
        pack_driver(path, x, m, w, bias, out);
        return Ok(());
    }
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: tier_under only returns tiers the CPU has; AMX implies AVX512-BF16.
        KernelPath::Amx | KernelPath::Avx512Bf16 => unsafe { dot_driver::<avx512::Bf16Dot>(x, m, w, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-512 tier is only returned when the CPU has AVX-512F/BW/VL and FMA.
        KernelPath::Avx512 => unsafe { dot_driver::<avx512::Bf16WideDot>(x, m, w, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX2 tier is only returned when the CPU has AVX2 and FMA.
        KernelPath::Avx2 => unsafe { dot_driver::<avx2::Bf16Dot>(x, m, w, bias, out) },
        // SAFETY: the portable kernel needs no CPU feature. (Portable, and every tier on
        // CPUs other than x86-64, where only it is available.)
        _ => unsafe { dot_driver::<portable::Bf16Dot>(x, m, w, bias, out) },
    }
    Ok(())
}

/// Below this many activation rows the row-dot driver is used; from it on, weight blocks
/// are packed per call (the packing is then amortised over the rows, and the packed
/// micro-kernels keep the sums in registers instead of reducing them horizontally).
pub(crate) const DOT_MAX_M: usize = 64;

/// `out = x · Wᵀ + bias` with the row-dot micro-kernel `D` (K > 0).
///
/// # Safety
/// The CPU must have `D`'s features.
unsafe fn dot_driver<D: DotBf16>(x: &[f32], m: usize, w: &RowMajorBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let (a, lda) = D::rows(x, m, k);
    let dst = SendPtr(out.as_mut_ptr());
    let store = |i: usize, j: usize, v: f32| {
        let y = v + bias.map_or(0.0, |b| b[j]);
        // SAFETY: i < m, j < n (inside the output); `drive` stores each (i, j) once, and
        // only from the task that owns column j.
        unsafe { *dst.get().add(i * n + j) = y };
    };
    // SAFETY: the caller guarantees the features; `a` holds m×K, the weight N×K.
    unsafe { dot::drive::<D>(&a, lda, m, w.bits(), n, k, store) };
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
                    ptr: SendPtr(unsafe { out_ptr.get().add(c0) }),
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
                    let orow = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(row * n + c0), cols) };
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
