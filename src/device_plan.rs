//! The device (GPU) memory plan (at the engine floor: it needs the vision token layout): every byte a CUDA job will hold, computed from the config
//! alone — no GPU, no weights loaded — so a job that cannot fit is refused before anything is
//! allocated.
//!
//! Peak = weights (one FP16/BF16 copy, or INT8 decoder linears with f32 per-channel scales)
//! + the KV cache (allocated once per engine for `batch × context` positions)
//! + the largest per-stage activation transient (stages run one after another, so their
//!   transients never coexist)
//! + the cuBLAS workspace + the CUDA context + allocator slack.
//!
//! The per-stage terms follow the chunked device code the plan is written for: SAM global
//! attention in query chunks of [`ATTENTION_QUERY_CHUNK`] rows with f32 scores (never the full
//! `heads × N × N` matrix), views of one page encoded one at a time, prefill attention in the
//! same chunks, f32 logits only for the last position of each sequence.
//! The CUDA context and slack are estimates to be checked against the measured high-water
//! mark of `scripts/gpu-check.sh`.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::memory::plan::{kv_cache_bytes, ATTENTION_QUERY_CHUNK};
use crate::model::layout::checkpoint_tensors;
use crate::model::ModelConfig;
use crate::vision::preprocess::{num_image_tokens, tile_grid};
use crate::vision::Mode;

/// Driver context, loaded modules (candle's kernels, ours) and the default stream: measured
/// at 400-600 MiB on recent drivers; the plan takes the top of that range.
pub const CUDA_CONTEXT_BYTES: u64 = 600 << 20;
/// cuBLAS workspace of one handle (32 MiB on Hopper, 4 MiB before it): the larger.
pub const CUBLAS_WORKSPACE_BYTES: u64 = 32 << 20;
/// Allocator slack: a fixed part plus a share of the dynamic bytes (stream-ordered pool
/// rounding and fragmentation).
pub const ALLOCATOR_SLACK_FIXED: u64 = 64 << 20;
/// Share of (KV cache + activations) added as slack, in percent.
pub const ALLOCATOR_SLACK_PERCENT: u64 = 5;
/// Prompt tokens besides the image tokens (BOS, the task text, the chat template).
pub const PROMPT_TEXT_TOKENS: usize = 32;

/// What the job is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceJob {
    pub mode: Mode,
    /// Page size in pixels; decides the tile grid in crop modes. `None`: the largest grid the
    /// mode allows (the worst case).
    pub image: Option<(u32, u32)>,
    /// New tokens per sequence; the context is prompt + this, capped at the model's positions.
    pub max_tokens: usize,
    /// Bytes per element of weights and activations (2 for FP16/BF16, 4 for f32).
    pub dtype_bytes: usize,
    /// Decoder linear layers and experts stored as INT8 with f32 per-channel scales.
    pub int8_decoder: bool,
    /// Sequences decoding together (each with its own KV cache).
    pub batch: usize,
}

/// Bytes per activation stage.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StagePeaks {
    /// SAM global-attention layer of the largest view: q/k/v, one chunk of f32 scores and
    /// probabilities, the output.
    pub sam_global_attention: u64,
    /// SAM block MLP of the largest view (input, hidden, activation, output).
    pub sam_mlp: u64,
    /// CLIP layer of the largest view (attention scores of all heads + MLP).
    pub clip: u64,
    /// Decoder prefill over the prompt, per batch.
    pub prefill: u64,
    /// Final-position logits in f32 and the sampling buffers, per batch.
    pub logits: u64,
}

impl StagePeaks {
    /// The largest stage (stages run one after another).
    pub fn max(&self) -> u64 {
        self.sam_global_attention
            .max(self.sam_mlp)
            .max(self.clip)
            .max(self.prefill)
            .max(self.logits)
    }
}

/// The device memory plan of a job.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DevicePlan {
    pub weights: u64,
    pub kv_cache: u64,
    pub stages: StagePeaks,
    pub cublas_workspace: u64,
    pub cuda_context: u64,
    pub allocator_slack: u64,
    /// Positions of one sequence's KV cache.
    pub context_tokens: usize,
    /// Prompt tokens of the job (image tokens + text).
    pub prompt_tokens: usize,
    /// Views per page (the global view plus the tiles).
    pub views: usize,
}

impl DevicePlan {
    /// Predicted peak bytes.
    pub fn total(&self) -> u64 {
        self.weights
            + self.kv_cache
            + self.stages.max()
            + self.cublas_workspace
            + self.cuda_context
            + self.allocator_slack
    }

    /// Refuses the job, before anything is allocated, when the plan exceeds `budget` bytes;
    /// the error names what would fit.
    pub fn check(&self, budget: u64, job: &DeviceJob, cfg: &ModelConfig) -> Result<()> {
        if self.total() <= budget {
            return Ok(());
        }
        let mut fits = Vec::new();
        for (what, alt) in alternatives(job) {
            if let Ok(p) = plan(cfg, &alt) {
                if p.total() <= budget {
                    fits.push(format!("{what} ({:.2} GiB)", gib(p.total())));
                }
            }
        }
        let what = format!(
            "device plan: weights {:.2} GiB, KV cache {:.2} GiB, activations {:.2} GiB, context+workspace+slack {:.2} GiB; {}",
            gib(self.weights),
            gib(self.kv_cache),
            gib(self.stages.max()),
            gib(self.cuda_context + self.cublas_workspace + self.allocator_slack),
            if fits.is_empty() {
                "nothing smaller fits either".to_string()
            } else {
                format!("would fit: {}", fits.join(", "))
            }
        );
        Err(Error::Memory {
            needed: self.total(),
            budget,
            what,
        })
    }
}

/// Bytes as GiB.
pub fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Smaller jobs to suggest when one does not fit.
fn alternatives(job: &DeviceJob) -> Vec<(String, DeviceJob)> {
    let mut v = Vec::new();
    if !job.int8_decoder {
        v.push((
            "--precision int8".to_string(),
            DeviceJob {
                int8_decoder: true,
                ..*job
            },
        ));
    }
    for m in [Mode::BASE, Mode::SMALL, Mode::TINY] {
        if m != job.mode && m.base_size <= job.mode.base_size {
            v.push((format!("--mode {}", m.name()), DeviceJob { mode: m, ..*job }));
        }
    }
    if job.max_tokens > 1024 {
        v.push((
            "--max-tokens 1024".to_string(),
            DeviceJob {
                max_tokens: 1024,
                ..*job
            },
        ));
    }
    if job.batch > 1 {
        v.push(("--batch 1".to_string(), DeviceJob { batch: 1, ..*job }));
    }
    v
}

/// Whether a tensor is a decoder linear weight stored as INT8 in the int8 profile (attention
/// projections, dense MLP, experts, shared experts, lm_head; not the router, embeddings or norms).
pub fn is_int8_decoder_weight(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2
        && (name == "lm_head.weight" || (name.starts_with("model.layers.") && name.ends_with("_proj.weight")))
}

/// The device memory plan of `job` on a model with `cfg`: pure arithmetic, no GPU needed.
pub fn plan(cfg: &ModelConfig, job: &DeviceJob) -> Result<DevicePlan> {
    if job.dtype_bytes == 0 || job.batch == 0 {
        return Err(Error::request(
            "the device plan needs a dtype and a batch of at least 1",
            "pass --dtype f16|bf16 and --batch N with N >= 1",
        ));
    }
    let ds = job.dtype_bytes as u64;
    let weights: u64 = checkpoint_tensors(cfg)
        .iter()
        .map(|t| {
            let n: u64 = t.shape.iter().map(|&d| d as u64).product();
            if job.int8_decoder && is_int8_decoder_weight(&t.name, &t.shape) {
                n + 4 * t.shape[0] as u64
            } else {
                n * ds
            }
        })
        .sum();

    // Views: the global view plus the tiles of the grid (worst case: the largest grid).
    let mode = job.mode;
    let grid = match job.image {
        Some((w, h)) => tile_grid(mode, w, h),
        None if mode.crop => worst_grid(mode),
        None => (1, 1),
    };
    let tiles = if mode.crop && grid.0 * grid.1 > 1 {
        grid.0 * grid.1
    } else {
        0
    };
    let image_tokens = num_image_tokens(mode, grid);
    let prompt_tokens = image_tokens + PROMPT_TEXT_TOKENS;
    let max_pos = cfg.lm.max_position_embeddings.max(1);
    let context_tokens = (prompt_tokens + job.max_tokens).min(max_pos);
    let kv_cache = kv_cache_bytes(cfg, context_tokens, job.dtype_bytes) * job.batch as u64;

    // The largest view decides the vision transients (views are encoded one at a time).
    let side = if mode.crop {
        mode.base_size.max(mode.image_size)
    } else {
        mode.image_size
    };
    let s = &cfg.sam;
    let g = side / s.patch_size.max(1);
    let n = (g * g) as u64;
    let w = s.width as u64;
    let chunk = (ATTENTION_QUERY_CHUNK as u64).min(n);
    let heads = s.heads as u64;
    // qkv + output in the compute dtype; scores and probabilities of one chunk in f32.
    let sam_global_attention = n * 4 * w * ds + 2 * heads * chunk * n * 4;
    let sam_mlp = n * (2 * w + 2 * s.mlp_dim as u64) * ds;
    // CLIP (v1 only) sees SAM's features after the 4× downsampling of net_2/net_3: (side/64)² + CLS.
    let clip = match cfg.clip() {
        Some(c) => {
            let t = ((side / 64) * (side / 64) + 1) as u64;
            t * (4 * c.width as u64 + 2 * c.ffn_dim as u64) * ds + c.heads as u64 * t.min(chunk) * t * 4 * 2
        }
        None => 0,
    };
    let l = &cfg.lm;
    let len = prompt_tokens as u64;
    let q = (l.num_heads * l.head_dim) as u64;
    let hidden = l.hidden_size as u64;
    let mlp_width = (l.intermediate_size as u64).max(l.moe_intermediate_size as u64 * l.num_experts_per_tok as u64);
    let prefill_one =
        len * (3 * hidden + 3 * q + 3 * mlp_width) * ds + l.num_heads as u64 * chunk.min(len) * len * 4 * 2;
    let prefill = prefill_one * job.batch as u64;
    let logits = (l.vocab_size as u64 * 4 * 2 + hidden * ds) * job.batch as u64;
    let stages = StagePeaks {
        sam_global_attention,
        sam_mlp,
        clip,
        prefill,
        logits,
    };
    let allocator_slack = ALLOCATOR_SLACK_FIXED + (kv_cache + stages.max()) * ALLOCATOR_SLACK_PERCENT / 100;
    Ok(DevicePlan {
        weights,
        kv_cache,
        stages,
        cublas_workspace: CUBLAS_WORKSPACE_BYTES,
        cuda_context: CUDA_CONTEXT_BYTES,
        allocator_slack,
        context_tokens,
        prompt_tokens,
        views: 1 + tiles,
    })
}

/// The tile grid (2..=max_tiles tiles) with the most image tokens: the worst case of a mode.
fn worst_grid(mode: Mode) -> (usize, usize) {
    let max = mode.max_tiles.max(1);
    let mut best = (1, 1);
    for wt in 1..=max {
        for ht in 1..=max / wt {
            if wt * ht >= 2 && num_image_tokens(mode, (wt, ht)) > num_image_tokens(mode, best) {
                best = (wt, ht);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plan's stated numbers are tested through the public API in tests/plan.rs.

    #[test]
    fn worst_grid_is_the_tall_nine_tile_column() {
        // (l·wt + 1)·(l·ht) with l = 10 queries per tile side: 1×9 gives 11·90 = 990 tokens,
        // more than 3×3 (31·30 = 930) or 9×1 (91·10 = 910).
        assert_eq!(worst_grid(Mode::GUNDAM), (1, 9));
    }
}
