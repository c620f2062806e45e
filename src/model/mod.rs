//! The model folder: configuration and memory-mapped weights.

pub mod config;
pub mod layout;
pub mod random;
pub mod weights;

pub use config::ModelConfig;
pub use weights::Weights;
