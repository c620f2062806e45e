//! The one `Linear` type every layer of SAM, CLIP, the projector and the decoder uses.
//!
//! `y = x · Wᵀ + b` with `W` stored `(out, in)` as in PyTorch. Keeping a single type means
//! a faster kernel (packed BF16, INT8) is switched on for the whole model in one place:
//! [`Linear::load`] keeps the f32 candle matmul (the parity mode), [`Linear::load_with`]
//! packs the weight once for the kernels of [`crate::nn::kernels`] according to a
//! [`Precision`].

use std::sync::Arc;

use candle_core::{bail, DType, Device, Module, Result, Storage, Tensor};
use candle_nn::VarBuilder;

use super::kernels::{self, PackedBf16, PackedInt8};
use super::precision::Precision;

/// How the weight is held.
#[derive(Debug, Clone)]
enum Weight {
    /// `(out, in)` tensor, candle matmul.
    Tensor(Tensor),
    /// Packed bf16 for the CPU GEMM kernels.
    Bf16(Arc<PackedBf16>),
    /// Packed per-channel int8 for the CPU GEMM kernels.
    Int8(Arc<PackedInt8>),
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
    /// Bf16 reads the weight as bf16 (no f32 copy of a bf16 checkpoint) and packs it; Int8
    /// reads it as f32 and quantises it per output channel. The bias stays f32. On a CUDA
    /// device Int8 runs our CUDA kernel; every other non-CPU case falls back to
    /// [`Linear::load`].
    pub fn load_with(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool, precision: Precision) -> Result<Self> {
        let cuda_int8 = precision == Precision::Int8 && vb.device().is_cuda();
        if precision == Precision::F32 || (!vb.device().is_cpu() && !cuda_int8) {
            return Self::load(vb, in_dim, out_dim, bias);
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
                Weight::Bf16(Arc::new(pack_or_err(PackedBf16::pack(&w, out_dim, in_dim))?))
            }
            _ => {
                let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Weight::Int8(Arc::new(pack_or_err(PackedInt8::quantize(&w, out_dim, in_dim))?))
            }
        };
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
            Weight::Int8(_) => Precision::Int8,
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
                Weight::Bf16(w) => kernels::gemm_bf16(xs, m, w, bias, &mut out)?,
                Weight::Int8(w) => kernels::gemm_int8(xs, m, w, bias, &mut out)?,
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
