//! Weight quantisation (INT8 weight-only, per-output-channel scales).

pub mod convert;
pub mod int8;

pub use int8::QuantizedInt8;
