//! The one `Linear` type every layer of SAM, CLIP, the projector and the decoder uses.
//!
//! `y = x · Wᵀ + b` with `W` stored `(out, in)` as in PyTorch. Keeping a single type means
//! a faster kernel (BF16, INT8) is switched on for the whole model in one place:
//! [`Linear::load`] keeps the f32 candle matmul (the parity mode), [`Linear::load_with`]
//! prepares the weight for the kernels of [`crate::nn::kernels`] according to a
//! [`Precision`]: bf16 weights of a memory-mapped checkpoint are used in place (no copy, no
//! packing; pages are read when a product first needs them), int8 weights are quantised (or,
//! from a folder written by `dsocr convert`, read as stored) and packed.

use std::sync::Arc;

use candle_core::{bail, DType, Device, Module, Result, Storage, Tensor};
use candle_nn::VarBuilder;

use super::kernels::{self, PackedInt8, RowMajorBf16, RowMajorInt8};
use super::precision::Precision;
use crate::model::Weights;

/// How the weight is held.
#[derive(Debug, Clone)]
enum Weight {
    /// `(out, in)` tensor, candle matmul.
    Tensor(Tensor),
    /// Row-major bf16 for the in-place CPU GEMM (usually a view of the memory map).
    Bf16(Arc<RowMajorBf16>),
    /// Packed per-channel int8 for the CPU GEMM kernels.
    Int8(Arc<PackedInt8>),
    /// Row-major per-channel int8 as `dsocr convert` stores it, used in place.
    Int8InPlace(Arc<RowMajorInt8>),
    /// Per-channel int8 (and the bias) on a CUDA device, for `kernels/int8_gemm.cu`.
    #[cfg(feature = "cuda")]
    CudaInt8(Arc<super::cuda::CudaInt8Weight>),
}

/// A dense layer `y = x · Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    /// The bias as a host vector, for the CPU kernels.
    bias_host: Option<Arc<Vec<f32>>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `weight` `(out_dim, in_dim)` and, if `bias`, `bias` `(out_dim)` from `vb`, in
    /// the VarBuilder's dtype, computed with candle's matmul ([`Precision::F32`]).
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Self::from_tensors(weight, bias))
    }

    /// Like [`Linear::load`], with the weight held and multiplied in `precision`.
    ///
    /// Bf16 on the CPU keeps a view of a bf16 weight inside the memory map of
    /// [`Weights::var_builder`] (no copy, nothing read at load); other checkpoints and
    /// VarBuilders are read as bf16 and kept row-major. Int8 uses an int8 weight with its
    /// `weight_scale` in place (a folder written by `dsocr convert`), or reads the weight as
    /// f32, quantises it per output channel and packs it. The bias stays f32. On a CUDA
    /// device Int8 runs our CUDA kernel; every other non-CPU case falls back to
    /// [`Linear::load`].
    pub fn load_with(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool, precision: Precision) -> Result<Self> {
        let cuda_int8 = precision == Precision::Int8 && vb.device().is_cuda();
        if precision == Precision::F32 || (!vb.device().is_cpu() && !cuda_int8) {
            return Self::load(vb, in_dim, out_dim, bias);
        }
        if vb.device().is_cpu() {
            if let Some(weight) = mapped_weight(&vb, in_dim, out_dim, precision)? {
                let bias = if bias {
                    Some(vb.get_with_hints_dtype(out_dim, "bias", Default::default(), DType::F32)?)
                } else {
                    None
                };
                return Self::with_weight(weight, bias, in_dim, out_dim);
            }
        }
        let dtype = if precision == Precision::Bf16 {
            DType::BF16
        } else {
            DType::F32
        };
        let weight = vb.get_with_hints_dtype((out_dim, in_dim), "weight", Default::default(), dtype)?;
        let bias = if bias {
            Some(vb.get_with_hints_dtype(out_dim, "bias", Default::default(), DType::F32)?)
        } else {
            None
        };
        Self::from_tensors_with(weight, bias, precision)
    }

    /// Wraps existing tensors (candle matmul, any device and dtype).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        let (out_dim, in_dim) = weight.dims2().unwrap_or((0, 0));
        Self {
            weight: Weight::Tensor(weight),
            bias,
            bias_host: None,
            in_dim,
            out_dim,
        }
    }

    /// Wraps existing tensors, packing the `(out, in)` weight for `precision` when the
    /// weight lives on the CPU, or quantising it for the CUDA INT8 kernel when it is Int8 on
    /// a CUDA device (elsewhere this is [`Linear::from_tensors`]).
    pub fn from_tensors_with(weight: Tensor, bias: Option<Tensor>, precision: Precision) -> Result<Self> {
        #[cfg(feature = "cuda")]
        if precision == Precision::Int8 && weight.device().is_cuda() {
            return Self::cuda_int8(weight, bias);
        }
        if precision == Precision::F32 || !weight.device().is_cpu() {
            return Ok(Self::from_tensors(weight, bias));
        }
        let (out_dim, in_dim) = weight.dims2()?;
        let packed = match precision {
            Precision::Bf16 => {
                let w = weight.to_dtype(DType::BF16)?.flatten_all()?.to_vec1::<half::bf16>()?;
                let bits = w.into_iter().map(|v| v.to_bits()).collect();
                Weight::Bf16(Arc::new(pack_or_err(RowMajorBf16::from_bits(bits, out_dim, in_dim))?))
            }
            _ => {
                let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Weight::Int8(Arc::new(pack_or_err(PackedInt8::quantize(&w, out_dim, in_dim))?))
            }
        };
        Self::with_weight(packed, bias, in_dim, out_dim)
    }

    fn with_weight(packed: Weight, bias: Option<Tensor>, in_dim: usize, out_dim: usize) -> Result<Self> {
        let bias_host = match &bias {
            Some(b) => Some(Arc::new(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)),
            None => None,
        };
        if let Some(b) = &bias_host {
            if b.len() != out_dim {
                bail!("linear: bias has {} elements for {out_dim} outputs", b.len());
            }
        }
        Ok(Self {
            weight: packed,
            bias,
            bias_host,
            in_dim,
            out_dim,
        })
    }

    /// The precision the layer computes in.
    pub fn precision(&self) -> Precision {
        match self.weight {
            Weight::Tensor(_) => Precision::F32,
            Weight::Bf16(_) => Precision::Bf16,
            Weight::Int8(_) | Weight::Int8InPlace(_) => Precision::Int8,
            #[cfg(feature = "cuda")]
            Weight::CudaInt8(_) => Precision::Int8,
        }
    }

    /// The `(out, in)` weight tensor; `None` once it has been packed for the CPU kernels
    /// (the packed copy replaces it to save memory).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Tensor(w) => Some(w),
            _ => None,
        }
    }

    /// Whether the weight is used in place from the memory-mapped checkpoint (no copy of its
    /// own: its pages are read from the file when a product first touches them).
    pub fn weight_in_place(&self) -> bool {
        match &self.weight {
            Weight::Bf16(w) => w.is_shared(),
            Weight::Int8InPlace(w) => w.is_shared(),
            _ => false,
        }
    }

    /// The optional bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// `x · Wᵀ + b` with the packed kernels: `x` on the CPU with last dim `in_dim`.
    fn forward_packed(&self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() {
            bail!(
                "linear: a {} layer packed for the CPU got an input on {:?}",
                self.precision(),
                x.device()
            );
        }
        let dims = x.dims();
        match dims.last() {
            Some(k) if *k == self.in_dim => {}
            _ => bail!("linear: input {:?} does not end in {} features", dims, self.in_dim),
        }
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let m = x32.elem_count() / self.in_dim.max(1);
        let mut out = vec![0f32; m * self.out_dim];
        {
            let (storage, layout) = x32.storage_and_layout();
            let data = match &*storage {
                Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
                _ => bail!("linear: expected a CPU tensor"),
            };
            let xs = match layout.contiguous_offsets() {
                Some((a, b)) => &data[a..b],
                None => bail!("linear: input is not contiguous"),
            };
            let bias = self.bias_host.as_deref().map(|b| b.as_slice());
            match &self.weight {
                Weight::Bf16(w) => kernels::gemm_bf16_inplace(xs, m, w, bias, &mut out)?,
                Weight::Int8(w) => kernels::gemm_int8(xs, m, w, bias, &mut out)?,
                Weight::Int8InPlace(w) => kernels::gemm_int8_inplace(xs, m, w, bias, &mut out)?,
                _ => bail!("linear: not a layer packed for the CPU"),
            }
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.out_dim;
        }
        Tensor::from_vec(out, shape, &Device::Cpu)?.to_dtype(dtype)
    }
}

#[cfg(feature = "cuda")]
impl Linear {
    /// Quantises a CUDA `(out, in)` weight per output channel (on the host, once) and
    /// uploads it with the bias for the CUDA INT8 kernel.
    fn cuda_int8(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let q = pack_or_err(crate::quant::QuantizedInt8::quantize(&w, out_dim, in_dim))?;
        let b = match &bias {
            Some(b) => Some(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let dev = super::cuda::CudaInt8Weight::new(&q, b.as_deref(), weight.device())?;
        Ok(Self {
            weight: Weight::CudaInt8(Arc::new(dev)),
            bias,
            bias_host: None,
            in_dim,
            out_dim,
        })
    }
}

/// The weight of `vb` straight from its memory map when it is stored as `precision` needs:
/// bf16 used in place, or int8 values plus `weight_scale` (as `dsocr convert` writes them)
/// used in place without quantising again. `None` when `vb` is not backed by [`Weights`] or the
/// stored tensor does not fit.
fn mapped_weight(vb: &VarBuilder, in_dim: usize, out_dim: usize, precision: Precision) -> Result<Option<Weight>> {
    let Some(weights) = Weights::of_var_builder(vb) else {
        return Ok(None);
    };
    let prefix = vb.prefix();
    let name = |leaf: &str| {
        if prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{prefix}.{leaf}")
        }
    };
    let Some((bytes, e)) = weights.mapped(&name("weight")) else {
        return Ok(None);
    };
    if e.shape != [out_dim, in_dim] {
        return Ok(None);
    }
    match precision {
        Precision::Bf16 if e.dtype == DType::BF16 => {
            let w = RowMajorBf16::from_shared(Arc::new(bytes), out_dim, in_dim);
            Ok(Some(Weight::Bf16(Arc::new(pack_or_err(w)?))))
        }
        Precision::Int8 if e.int8 => {
            let scale_name = name("weight_scale");
            let Some((scales, se)) = weights.mapped(&scale_name) else {
                bail!("linear: int8 weight `{}` has no `{scale_name}`", name("weight"));
            };
            if se.dtype != DType::F32 || se.shape != [out_dim] {
                bail!(
                    "linear: `{scale_name}` must be f32 [{out_dim}], found {:?} {:?}",
                    se.dtype,
                    se.shape
                );
            }
            let scales = scales
                .bytes()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let w = RowMajorInt8::from_shared(Arc::new(bytes), scales, out_dim, in_dim);
            Ok(Some(Weight::Int8InPlace(Arc::new(pack_or_err(w)?))))
        }
        _ => Ok(None),
    }
}

fn pack_or_err<T>(p: Option<T>) -> Result<T> {
    match p {
        Some(p) => Ok(p),
        None => bail!("linear: weight size does not match its shape"),
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = match &self.weight {
            Weight::Tensor(w) => w.t()?,
            // The kernel adds the bias itself.
            #[cfg(feature = "cuda")]
            Weight::CudaInt8(w) => return w.forward(x),
            _ => return self.forward_packed(x),
        };
        let y = match x.dims() {
            [b1, b2, m, k] => x.reshape((b1 * b2 * m, *k))?.matmul(&w)?.reshape((*b1, *b2, *m, ()))?,
            [b, m, k] => x.reshape((b * m, *k))?.matmul(&w)?.reshape((*b, *m, ()))?,
            _ => x.matmul(&w)?,
        };
        match &self.bias {
            None => Ok(y),
            Some(b) => y.broadcast_add(b),
        }
    }
}
