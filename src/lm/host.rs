//! Zero-copy access to the f32 data of a CPU tensor.
//!
//! The decoder's CPU fast path does its small elementwise work (RoPE, gathers, weighted
//! sums) on plain slices between the kernel calls: one loop over a slice costs less than
//! the candle ops (and their allocations) it replaces.

use candle_core::{bail, DType, Result, Storage, Tensor};

/// Whether `t` can take the host path: an f32 tensor on the CPU.
pub fn is_host_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Runs `f` on the elements of the f32 CPU tensor `t`, in row-major order. Copies only when
/// `t` is not contiguous.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => bail!("expected an f32 tensor on the CPU"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(f(&data[a..b])),
        None => bail!("expected a contiguous tensor"),
    }
}
