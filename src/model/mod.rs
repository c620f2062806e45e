//! The model folder: configuration and memory-mapped weights.

pub mod config;
pub mod layout;
pub mod layout_ocr2;
pub mod random;
pub mod weights;

pub use config::{ModelConfig, ModelVariant};
pub use weights::Weights;
