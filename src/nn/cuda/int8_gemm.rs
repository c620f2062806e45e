//! INT8 weight-only matmul on a CUDA device: `kernels/int8_gemm.cu` wrapped as a candle
//! [`CustomOp1`] over the activation.
//!
//! `y = x · (scale ⊙ W_q)ᵀ + bias` with `W_q` the per-output-channel int8 weight of
//! [`QuantizedInt8`]. Unlike the CPU INT8 kernels the activation is not quantised (it stays
//! f32), so the result equals [`crate::quant::int8::int8_matmul_reference`] up to the order
//! of the f32 additions.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};

use crate::quant::int8::QuantizedInt8;

/// PTX of `kernels/int8_gemm.cu`, built by `build.rs`.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/int8_gemm.ptx"));
/// Name under which candle caches the loaded module (one per device).
const MODULE: &str = "deepseek_ocr_int8_gemm";
/// The kernel's `extern "C"` name.
const FUNC: &str = "int8_gemm_f32";
/// Must match `WARPS_PER_BLOCK` in the kernel: one warp per output column.
const WARPS_PER_BLOCK: u32 = 8;
/// Must match `ROWS_PER_WARP` in the kernel: activation rows per pass over a weight row.
const ROWS_PER_WARP: usize = 4;
/// The largest `gridDim.y`; the kernel loops over the remaining row blocks.
const MAX_GRID_Y: usize = 65_535;

/// An INT8 weight (with scales and bias) resident on one CUDA device.
pub struct CudaInt8Weight {
    values: CudaSlice<i8>,
    scales: CudaSlice<f32>,
    /// Always present (zeros without a bias) so the kernel has no null-pointer branch.
    bias: CudaSlice<f32>,
    device: CudaDevice,
    n: usize,
    k: usize,
}

impl std::fmt::Debug for CudaInt8Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaInt8Weight")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("device", &self.device)
            .finish()
    }
}

impl CudaInt8Weight {
    /// Uploads a quantised `N×K` weight and an optional `N` bias to `device`, which must be
    /// a CUDA device.
    pub fn new(q: &QuantizedInt8, bias: Option<&[f32]>, device: &Device) -> Result<Self> {
        let device = match device {
            Device::Cuda(d) => d.clone(),
            other => bail!("int8_gemm: expected a CUDA device, got {other:?}"),
        };
        let (n, k) = (q.n, q.k);
        if q.values.len() != n * k || q.scales.len() != n {
            bail!("int8_gemm: quantised weight does not match its {n}×{k} shape");
        }
        let zeros;
        let bias = match bias {
            Some(b) if b.len() == n => b,
            Some(b) => bail!("int8_gemm: bias has {} elements for {n} outputs", b.len()),
            None => {
                zeros = vec![0f32; n];
                &zeros
            }
        };
        Ok(Self {
            values: device.clone_htod(&q.values)?,
            scales: device.clone_htod(&q.scales)?,
            bias: device.clone_htod(bias)?,
            device,
            n,
            k,
        })
    }

    /// Output features (N).
    pub fn out_dim(&self) -> usize {
        self.n
    }

    /// Input features (K).
    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// `x · (scale ⊙ W_q)ᵀ + bias` for `x` of any shape `(…, K)` on this weight's device;
    /// computed in f32 and returned in `x`'s dtype with shape `(…, N)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        match dims.last() {
            Some(k) if *k == self.k => {}
            _ => bail!("int8_gemm: input {dims:?} does not end in {} features", self.k),
        }
        let dtype = x.dtype();
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.n;
        }
        // Nothing to launch: no outputs, or an empty input (M = 0, or K = 0 where the
        // product is just the bias).
        if self.n == 0 {
            return Tensor::zeros(out_dims, dtype, x.device());
        }
        if x.elem_count() == 0 {
            let zeros = Tensor::zeros(out_dims, DType::F32, x.device())?;
            let bias = Tensor::from_slice(&self.device.clone_dtoh(&self.bias)?, self.n, x.device())?;
            return zeros.broadcast_add(&bias)?.to_dtype(dtype);
        }
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        x32.apply_op1_no_bwd(self)?.to_dtype(dtype)
    }
}

impl CustomOp1 for CudaInt8Weight {
    fn name(&self) -> &'static str {
        "int8_gemm"
    }

    fn cpu_fwd(&self, _storage: &CpuStorage, _layout: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("int8_gemm: the weight lives on a CUDA device but the input is on the CPU")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = storage.device();
        if dev.id() != self.device.id() {
            bail!("int8_gemm: input on {dev:?}, weight on {:?}", self.device);
        }
        let x = storage.as_cuda_slice::<f32>()?;
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => x.slice(start..end),
            None => bail!("int8_gemm: input is not contiguous"),
        };
        let dims = layout.dims();
        let (k, n) = (self.k, self.n);
        let m: usize = match dims.split_last() {
            Some((last, lead)) if *last == k => lead.iter().product(),
            _ => bail!("int8_gemm: input {dims:?} does not end in {k} features"),
        };
        let (Ok(m32), Ok(n32), Ok(k32)) = (u32::try_from(m), u32::try_from(n), u32::try_from(k)) else {
            bail!("int8_gemm: {m}×{n}×{k} is too large for the kernel's 32-bit sizes");
        };
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n;
        }
        let cfg = LaunchConfig {
            grid_dim: (
                n32.div_ceil(WARPS_PER_BLOCK),
                m.div_ceil(ROWS_PER_WARP).clamp(1, MAX_GRID_Y) as u32,
                1,
            ),
            block_dim: (32 * WARPS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let func = dev.get_or_load_custom_func(FUNC, MODULE, PTX)?;
        // SAFETY: the kernel writes every one of the m·n outputs before anything reads them.
        let y = unsafe { dev.alloc::<f32>(m * n)? };
        let mut builder = func.builder();
        builder.arg(&x);
        builder.arg(&self.values);
        builder.arg(&self.scales);
        builder.arg(&self.bias);
        builder.arg(&y);
        builder.arg(&m32);
        builder.arg(&n32);
        builder.arg(&k32);
        // SAFETY: the argument list matches the kernel's signature, every buffer holds the
        // elements the kernel indexes (x: m·k, values: n·k, scales/bias: n, y: m·n), and
        // the grid covers all n columns and (with the kernel's loop) all m rows.
        unsafe { builder.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), Shape::from(out_dims)))
    }
}
