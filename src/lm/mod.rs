//! The DeepSeek-V2 MoE decoder (MHA variant).

pub mod attention;
pub mod decoder;
pub mod embed;
pub mod mlp;
pub mod moe;
pub mod rms_norm;
pub mod rope;
pub mod router;

pub use decoder::{DecoderLayer, DeepseekV2};
pub use embed::merge_image_embeddings;
pub use rope::{Rope, RopeFrequencies};
