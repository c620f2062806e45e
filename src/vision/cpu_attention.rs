//! Bridge from candle tensors to the blockwise CPU attention kernel
//! ([`crate::nn::kernels::attention`]) for SAM and CLIP.
//!
//! The kernel works on contiguous f32 slices and never stores a score matrix, which is what
//! makes SAM's global layers (4096 × 4096 scores per head at 1024²) affordable on the CPU.
//! Callers use it only when their tensors live on the CPU; other devices keep candle ops.

use candle_core::{bail, DType, Device, Result, Storage, Tensor};

use crate::nn::kernels::{self, AttnBias, AttnShape};

/// SAM's decomposed relative-position bias for the kernel: `rel_h (heads, q_len, kh)` and
/// `rel_w (heads, q_len, kw)` for keys on a row-major `kh × kw` grid.
pub struct RelPosBias<'a> {
    /// `(heads, q_len, kh)`.
    pub rel_h: &'a Tensor,
    /// `(heads, q_len, kw)`.
    pub rel_w: &'a Tensor,
}

/// Runs `f` on the contiguous f32 host data of `t`.
fn with_host<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if t.dtype() != DType::F32 {
        bail!("cpu attention: {what} is {:?}, expected f32", t.dtype());
    }
    let (storage, layout) = t.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => bail!("cpu attention: {what} is not on the CPU"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => f(&data[a..b]),
        None => bail!("cpu attention: {what} is not contiguous"),
    }
}

/// `softmax(scale · q·kᵀ + bias) · v` per head, for `qkv (3, heads, n, d)` holding the
/// queries, keys and values one after the other (the layout a single permute of a fused
/// qkv projection gives). Returns `(heads, n, d)` in f32 on the CPU.
///
/// One tensor for all three keeps to a single read of the storage (and a single copy
/// before the call).
pub fn attention(qkv: &Tensor, bias: Option<RelPosBias>, scale: f64) -> Result<Tensor> {
    let (three, heads, n, d) = qkv.dims4()?;
    if three != 3 {
        bail!("cpu attention: expected stacked q, k, v, got {:?}", qkv.dims());
    }
    let shape = AttnShape {
        heads,
        kv_heads: heads,
        q_len: n,
        kv_len: n,
        head_dim: d,
    };
    let qkv = qkv.to_dtype(DType::F32)?.contiguous()?;
    let per = heads * n * d;
    let mut out = vec![0f32; per];
    with_host(&qkv, "qkv", |all| {
        let (q, rest) = all.split_at(per);
        let (k, v) = rest.split_at(per);
        match &bias {
            None => kernels::attention(q, k, v, shape, AttnBias::None, scale as f32, false, &mut out),
            Some(b) => {
                let (bh, bq, kh) = b.rel_h.dims3()?;
                let (_, _, kw) = b.rel_w.dims3()?;
                if (bh, bq) != (heads, n) {
                    bail!(
                        "cpu attention: rel-pos bias {:?} for {heads} heads of {n} queries",
                        b.rel_h.dims()
                    );
                }
                let rel_h = b.rel_h.to_dtype(DType::F32)?.contiguous()?;
                let rel_w = b.rel_w.to_dtype(DType::F32)?.contiguous()?;
                with_host(&rel_h, "rel_h", |rh| {
                    with_host(&rel_w, "rel_w", |rw| {
                        let bias = AttnBias::RelPos {
                            rel_h: rh,
                            rel_w: rw,
                            kh,
                            kw,
                        };
                        kernels::attention(q, k, v, shape, bias, scale as f32, false, &mut out)
                    })
                })
            }
        }
    })?;
    Tensor::from_vec(out, (heads, n, d), &Device::Cpu)
}
