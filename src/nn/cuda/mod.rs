//! Our own CUDA kernels, compiled to PTX by `build.rs` from `kernels/*.cu` (only with the
//! `cuda` feature) and launched through candle's CUDA backend.
//!
//! Every kernel here has a CPU reference it is tested against (`tests/cuda_int8.rs`).

pub mod int8_gemm;

pub use int8_gemm::CudaInt8Weight;
