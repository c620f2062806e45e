//! The row-dot-product driver of the in-place GEMMs (`inplace_bf16.rs`, `inplace_int8.rs`),
//! shared by every tier: `out[i, j] = Σ_k a[i, k] · w[j, k]` for an activation `a (M×K)` and a
//! row-major weight `w (N×K)` read where it lies, with no packing.
//!
//! A tier supplies only its [`Dot`] micro-kernel: up to `MR` activation rows × `NR` weight
//! rows, each a chain of vector multiply-adds over K, reduced horizontally at the end.
//! [`drive`] splits the weight rows into blocks run in parallel (each weight row is read from
//! memory once per call while the activation stays in cache) and hands every sum to the
//! caller's `store`, which adds the bias or rescales.

use std::borrow::Cow;

use rayon::prelude::*;

/// Most activation rows and weight rows of any micro-kernel (the dispatch covers 1..=4 × 1..=4).
const MAX_MR: usize = 4;
const MAX_NR: usize = 4;

/// One register-blocked row-dot micro-kernel.
pub(crate) trait Dot {
    /// Activation element as the kernel reads it.
    type A: Copy + Sync;
    /// Weight element (as stored in the checkpoint).
    type W: Copy + Sync;
    /// Sum (f32, or the exact i32 of the int8 kernels).
    type S: Copy;
    /// Most activation rows per call (≤ 4).
    const MR: usize;
    /// Most weight rows per call (≤ 4).
    const NR: usize;

    /// `MR × NR` dot products of length `k`: activation rows at `a` (row stride `lda`, laid
    /// out by the op's `rows`), weight rows at `b` (row stride `k`). Reads nothing of a weight
    /// row past its `k` elements.
    ///
    /// # Safety
    /// The CPU must have the tier's features; `a` must hold `MR` rows of `lda` and `b` `NR·k`
    /// readable elements.
    unsafe fn dot<const MR: usize, const NR: usize>(
        a: *const Self::A,
        lda: usize,
        b: *const Self::W,
        k: usize,
    ) -> [[Self::S; NR]; MR];
}

/// A BF16 row-dot kernel (bf16 weight, f32 sums), which also lays out the activation.
pub(crate) trait DotBf16: Dot<W = u16, S = f32> {
    /// The `m × k` f32 activation as the kernel reads it, and its row stride.
    fn rows(x: &[f32], m: usize, k: usize) -> (Cow<'_, [Self::A]>, usize);
}

/// An INT8 row-dot kernel (int8 weight, exact i32 sums).
pub(crate) trait DotInt8: Dot<W = i8, S = i32> {
    /// Whether the activation is read offset to unsigned (`q + 128`, for `vpdpbusd`): the
    /// sums then carry `128 · Σ_k w[j,k]`, which the caller removes.
    const OFFSET: bool;
    /// The quantised `m × k` activation as the kernel reads it (row stride `k`).
    fn rows(q: Vec<i8>) -> Vec<Self::A>;
}

/// The activation rows in "pair-split" groups of `g` values: within each group, the values at
/// even K first, then those at odd K, zero padded to a multiple of `g` (the row stride,
/// returned). A kernel that loads `g` bf16 weights as `g/2` 32-bit lanes gets the even-K
/// weights as f32 with a left shift by 16 and the odd-K ones by masking the low half, and
/// multiplies them by the two halves of the group.
pub(crate) fn split_pairs(x: &[f32], m: usize, k: usize, g: usize) -> (Vec<f32>, usize) {
    let lda = k.next_multiple_of(g);
    let mut a = vec![0f32; m * lda];
    for (dst, src) in a.chunks_exact_mut(lda).zip(x.chunks_exact(k)) {
        for (d, s) in dst.chunks_exact_mut(g).zip(src.chunks(g)) {
            for (i, v) in s.iter().enumerate() {
                d[(i & 1) * (g / 2) + i / 2] = *v;
            }
        }
    }
    (a, lda)
}

/// Calls `store(i, j, Σ_k a[i, k] · b[j, k])` for every activation row `i < m` (row stride
/// `lda`) and weight row `j < n`, in parallel over blocks of weight rows (so `store` is called
/// for each `(i, j)` exactly once, and two tasks never store the same column `j`).
///
/// # Safety
/// The CPU must have `K`'s features (the caller chose `K` from the tier it runs on).
pub(crate) unsafe fn drive<K: Dot>(
    a: &[K::A],
    lda: usize,
    m: usize,
    b: &[K::W],
    n: usize,
    k: usize,
    store: impl Fn(usize, usize, K::S) + Sync,
) {
    debug_assert!(K::MR <= MAX_MR && K::NR <= MAX_NR && K::MR > 0 && K::NR > 0);
    assert!(k > 0 && lda >= k && a.len() >= m * lda && b.len() >= n * k);
    let threads = rayon::current_num_threads().max(1);
    // Enough blocks to balance the threads; at least 16 rows so tiny calls stay serial.
    let rows_per_task = n.div_ceil(4 * threads).next_multiple_of(K::NR).max(16);
    let tasks = n.div_ceil(rows_per_task);
    let run = |t: usize| {
        let (n0, n1) = (t * rows_per_task, ((t + 1) * rows_per_task).min(n));
        let mut j = n0;
        while j < n1 {
            let nr = (n1 - j).min(K::NR);
            let mut i = 0;
            while i < m {
                let mr = (m - i).min(K::MR);
                let (pa, pb) = (a[i * lda..].as_ptr(), b[j * k..].as_ptr());
                macro_rules! go {
                    ($($m:literal, $n:literal);*) => {
                        match (mr, nr) {
                            $(($m, $n) => {
                                // SAFETY: the caller guarantees the CPU features; rows
                                // i..i+mr of `a` and j..j+nr of `b` exist (checked above).
                                let s = unsafe { K::dot::<$m, $n>(pa, lda, pb, k) };
                                for (r, sr) in s.iter().enumerate() {
                                    for (c, v) in sr.iter().enumerate() {
                                        store(i + r, j + c, *v);
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

/// The quantised activation offset to unsigned (`q + 128 == q ^ 0x80` as a byte).
pub(crate) fn offset_rows(q: Vec<i8>) -> Vec<u8> {
    q.into_iter().map(|v| (v as u8) ^ 0x80).collect()
}
