//! The memory plan: peak memory of a job, predicted before it starts.
//!
//! Peak = weights (owned copies + mapped in place, counted in full as an upper bound) + KV cache
//! (preallocated for the job's maximum length) + the
//! largest of the vision and language-model activation peaks and the loading transient + a fixed overhead
//! (allocator, tokenizer, runtime). The activation terms follow the buffers the forward
//! passes really allocate; `dsocr bench` prints the prediction beside the measured
//! high-water mark so the formula is kept honest.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::config::VisionTower;
use crate::model::ModelConfig;

/// Bytes per part of a job.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Weights in memory: the engine's own copies plus the weights used in place from the
    /// memory map, counted in full (an upper bound: mapped pages become resident only when a
    /// product touches them, and an expert no token is routed to never does).
    pub weights: u64,
    /// The preallocated KV cache.
    pub kv_cache: u64,
    /// Largest transient of the vision encoder.
    pub vision_activations: u64,
    /// Largest transient of the decoder (prefill).
    pub lm_activations: u64,
    /// Largest transient while loading: one tensor as read from the file plus its
    /// converted copy (the file's pages are released as each tensor is copied out).
    pub load_transient: u64,
    /// Runtime, tokenizer, allocator slack.
    pub overhead: u64,
}

impl MemoryPlan {
    /// Predicted peak bytes.
    pub fn total(&self) -> u64 {
        self.weights
            + self.kv_cache
            + self
                .vision_activations
                .max(self.lm_activations)
                .max(self.load_transient)
            + self.overhead
    }

    /// Fails with a clear error when the plan exceeds `budget` bytes.
    pub fn check(&self, budget: Option<u64>) -> Result<()> {
        match budget {
            Some(b) if self.total() > b => Err(Error::Memory {
                needed: self.total(),
                budget: b,
                what: format!(
                    "weights {} MB, KV cache {} MB, activations {} MB",
                    self.weights >> 20,
                    self.kv_cache >> 20,
                    self.vision_activations.max(self.lm_activations) >> 20
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// KV-cache bytes: layers × 2 (K and V) × kv heads × head dim × max length × dtype size.
pub fn kv_cache_bytes(cfg: &ModelConfig, max_len: usize, dtype_size: usize) -> u64 {
    (cfg.lm.num_layers * 2 * cfg.lm.num_kv_heads * cfg.lm.head_dim * max_len * dtype_size) as u64
}

/// Query rows processed at once by the chunked attention (bounds the score buffers).
pub const ATTENTION_QUERY_CHUNK: usize = 512;

/// Largest transient of the vision encoder for a batch of `batch` views of side `size`.
pub fn vision_activation_bytes(cfg: &ModelConfig, size: usize, batch: usize, dtype_size: usize) -> u64 {
    let s = &cfg.sam;
    let g = size / s.patch_size;
    let n = g * g;
    // Inside a SAM block: residual, normed input, qkv, attention output and the MLP hidden
    // state with its activation, all live at the MLP.
    let block = n * (3 * s.width + 2 * s.mlp_dim + 3 * s.width);
    // Attention scores of one query chunk for all heads (scores + softmax + bias).
    let chunk = ATTENTION_QUERY_CHUNK.min(n);
    let attn = 3 * s.heads * chunk * n + n * 3 * s.width * 2;
    let second = match &cfg.vision {
        VisionTower::Clip(c) => {
            let t = (size / 64) * (size / 64) + 1;
            t * (4 * c.width + 2 * c.ffn_dim) + c.heads * t * t * 3
        }
        // OCR 2: 2n rows through the Qwen2 layers (residual, normed input, q/k/v and the
        // attention output, the SwiGLU hidden state ×3), plus one score matrix per head
        // for the non-CPU path.
        VisionTower::Qwen2(q) => {
            let l = 2 * (size / 64) * (size / 64);
            l * (3 * q.hidden + (2 * q.heads + 2 * q.kv_heads) * q.head_dim + 3 * q.intermediate) + q.heads * l * l
        }
    };
    (batch * block.max(attn).max(second) * dtype_size) as u64
}

/// Largest transient of the decoder's prefill over `len` tokens.
pub fn lm_activation_bytes(cfg: &ModelConfig, len: usize, dtype_size: usize) -> u64 {
    let l = &cfg.lm;
    let q = l.num_heads * l.head_dim;
    let dense = len * (3 * l.hidden_size + 3 * q + 3 * l.intermediate_size);
    let moe =
        len * (3 * l.hidden_size + 3 * l.moe_intermediate_size * l.n_shared_experts.max(1) + 2 * l.n_routed_experts);
    let chunk = ATTENTION_QUERY_CHUNK.min(len);
    let attn = 3 * l.num_heads * chunk * len;
    let logits = 2 * l.vocab_size;
    ((dense.max(moe).max(attn) + logits) * dtype_size) as u64
}

/// Memory the system reports available (`MemAvailable` of `/proc/meminfo`), where known.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fixed overhead: runtime, thread stacks, tokenizer, allocator slack.
pub const OVERHEAD_BYTES: u64 = 256 << 20;
