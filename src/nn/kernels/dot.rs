//! The row-dot-product driver of the in-place GEMMs (`inplace_bf16.rs`, `inplace_int8.rs`),
//! shared by every tier: `out[i, j] = Σ_k a[i, k] · w[j, k]` for an activation `a (M×K)` and a
//! row-major weight `w (N×K)` read where it lies, with no packing.
//!
//! A tier supplies only its [`Dot`] micro-kernel: up to `MR` activation rows × `NR` weight
//! rows, each a chain of vector multiply-adds over K, reduced horizontally at the end.
//! [`drive`] splits the weight rows into blocks run in parallel (each weight row is read from
//! memory once per call while the activation stays in cache) and hands every sum to the
//! caller's `store`, which adds the bias or rescales.

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

    /// `MR × NR` dot products of length `k`: activation rows at `a`, weight rows at `b`, both
    /// with row stride `k`. Reads nothing past the `k` elements of a row.
    ///
    /// # Safety
    /// The CPU must have the tier's features; `a` must hold `MR·k` and `b` `NR·k` readable
    /// elements.
    unsafe fn dot<const MR: usize, const NR: usize>(a: *const Self::A, b: *const Self::W, k: usize) -> [[Self::S; NR]; MR];
}

/// Calls `store(i, j, Σ_k a[i, k] · b[j, k])` for every activation row `i < m` and weight row
/// `j < n`, in parallel over blocks of weight rows (so `store` is called for each `(i, j)`
/// exactly once, and two tasks never store the same column `j`).
///
/// # Safety
/// The CPU must have `K`'s features (the caller chose `K` from the tier it runs on).
pub(crate) unsafe fn drive<K: Dot>(
    a: &[K::A],
    m: usize,
    b: &[K::W],
    n: usize,
    k: usize,
    store: impl Fn(usize, usize, K::S) + Sync,
) {
    debug_assert!(K::MR <= MAX_MR && K::NR <= MAX_NR && K::MR > 0 && K::NR > 0);
    assert!(k > 0 && a.len() >= m * k && b.len() >= n * k);
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
                let (pa, pb) = (a[i * k..].as_ptr(), b[j * k..].as_ptr());
                macro_rules! go {
                    ($($m:literal, $n:literal);*) => {
                        match (mr, nr) {
                            $(($m, $n) => {
                                // SAFETY: the caller guarantees the CPU features; rows
                                // i..i+mr of `a` and j..j+nr of `b` exist (checked above).
                                let s = unsafe { K::dot::<$m, $n>(pa, pb, k) };
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
