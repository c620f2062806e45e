//! The DeepSeek-V2 MoE decoder (MHA variant).
//!
//! [`DeepseekV2`] runs a block of embeddings through the decoder at the positions that
//! follow what its [`KvCache`](crate::memory::KvCache) already holds, so the same call does
//! prefill and single-token decode. With a recording [`Taps`](crate::nn::taps::Taps) it
//! records the parity tensors named like the goldens (`layer{i}_out`,
//! `moe_l{i}_topk_weight` / `moe_l{i}_topk_idx`, `final_hidden`, `prefill_logits_last`,
//! `prefill_logits_max`, `prefill_argmax`, `prefill_logits`).

pub mod attention;
pub mod decoder;
pub mod embed;
pub mod host;
pub mod mlp;
pub mod moe;
pub mod options;
pub mod rms_norm;
pub mod rope;
pub mod router;
pub mod rows;

pub use decoder::{DecoderLayer, DeepseekV2};
pub use embed::{merge_image_embeddings, prompt_embeddings};
pub use options::LmOptions;
pub use rope::{Rope, RopeFrequencies, RopeTables};
