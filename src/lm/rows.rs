//! Decode steps of several sequences give each row exactly what a step of that sequence
//! alone gives.
//!
//! The packed CPU kernels (bf16, int8 weights) compute every row of a product the same way
//! whatever the number of rows. Candle's dense matmul does not: its blocking, packing and
//! accumulation order depend on the row count, so a row of an `M > 1` product differs from
//! the same row alone in the last bits (on the mini model, batched f32 decode logits differ
//! from single-page ones by up to ~1.5e-5, which can flip a greedy choice between near-equal
//! tokens). A decode step therefore runs dense weights on the CPU one row at a time (f32
//! weights, and the f32 MoE router in every precision); the step still shares everything
//! else (one call per layer, packed weights read once for all rows). On CUDA the rows stay
//! together: there batched rows are not bit-identical to a page alone.

use candle_core::{Module, Result, Tensor};

use crate::nn::Linear;

/// `x · Wᵀ (+ b)` for the rows `x` `(B, in)` of a decode step, each row as it is computed alone.
pub fn linear_rows(linear: &Linear, x: &Tensor) -> Result<Tensor> {
    let rows = x.dim(0)?;
    if rows <= 1 || !row_dependent(linear, x) {
        return linear.forward(x);
    }
    let parts = (0..rows)
        .map(|r| linear.forward(&x.narrow(0, r, 1)?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

/// Whether `linear`'s product of several rows may round a row differently from that row
/// alone: a dense weight (candle's matmul) on the CPU.
fn row_dependent(linear: &Linear, x: &Tensor) -> bool {
    linear.weight().is_some() && x.device().is_cpu()
}
