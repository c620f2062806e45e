//! Building blocks shared by the vision encoder and the language model.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod kernels;
pub mod linear;
pub mod precision;
pub mod taps;

pub use linear::Linear;
pub use precision::Precision;
pub use taps::Taps;
