//! `config.json` of a DeepSeek-OCR model folder, in the official schema, for both model
//! variants: DeepSeek-OCR (SAM + CLIP "DeepEncoder") and DeepSeek-OCR 2 (SAM + Qwen2
//! "DeepEncoder V2").
//!
//! The file is deserialised once into serde types ([`RawConfig`] and friends; unknown fields
//! are ignored, `null` counts as absent) and then turned into a [`ModelConfig`] per variant.
//!
//! **Variant selection.** Both official checkpoints say `"model_type": "deepseek_vl_v2"`, so
//! the model type alone cannot tell them apart: it must be `deepseek_vl_v2` (anything else is
//! an error naming the supported types), and the variant is then chosen by `architectures[0]`
//! (`DeepseekOCRForCausalLM` / `DeepseekOCR2ForCausalLM`), or, when that is absent, by
//! `vision_config.model_name` (`deeplip_b_l` / `deepencoderv2`). See [`ModelVariant`].
//!
//! The official schema cannot express a few widths that the reference code hard-codes
//! (SAM neck channels, CLIP FFN width, the whole OCR-2 encoder, ...). The golden "mini" models
//! carry them in an extra `mini` object; when it is absent the real model's values are used.
//! Bounds on the values (sizes that would exhaust memory, ...) are checked elsewhere; this
//! module only checks that the widths fit together.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The two supported model variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelVariant {
    /// DeepSeek-OCR (`deepseek-ai/DeepSeek-OCR`): SAM + CLIP-L, 2D token grid with newlines.
    DeepSeekOcr,
    /// DeepSeek-OCR 2 (`deepseek-ai/DeepSeek-OCR-2`): SAM + Qwen2 decoder-as-encoder with
    /// learnable queries, flat token blocks.
    DeepSeekOcr2,
}

impl ModelVariant {
    /// The `model_type` both official checkpoints declare.
    pub const MODEL_TYPE: &'static str = "deepseek_vl_v2";

    /// `architectures[0]` of the official config.json.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelVariant::DeepSeekOcr => "DeepseekOCRForCausalLM",
            ModelVariant::DeepSeekOcr2 => "DeepseekOCR2ForCausalLM",
        }
    }

    /// `vision_config.model_name` of the official config.json.
    pub fn vision_model_name(self) -> &'static str {
        match self {
            ModelVariant::DeepSeekOcr => "deeplip_b_l",
            ModelVariant::DeepSeekOcr2 => "deepencoderv2",
        }
    }

    /// The Hugging Face repo of the official checkpoint.
    pub fn hub_repo(self) -> &'static str {
        match self {
            ModelVariant::DeepSeekOcr => "deepseek-ai/DeepSeek-OCR",
            ModelVariant::DeepSeekOcr2 => "deepseek-ai/DeepSeek-OCR-2",
        }
    }

    /// Every variant.
    pub const ALL: [ModelVariant; 2] = [ModelVariant::DeepSeekOcr, ModelVariant::DeepSeekOcr2];

    /// The human-readable list of what config.json may say, for error messages.
    pub fn supported() -> String {
        ModelVariant::ALL
            .iter()
            .map(|v| {
                format!(
                    "model_type `{}` with architectures [\"{}\"] (vision model_name `{}`, {v})",
                    Self::MODEL_TYPE,
                    v.architecture(),
                    v.vision_model_name()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for ModelVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelVariant::DeepSeekOcr => "DeepSeek-OCR",
            ModelVariant::DeepSeekOcr2 => "DeepSeek-OCR-2",
        })
    }
}

/// SAM ViT-B image encoder dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub global_attn_indexes: Vec<usize>,
    pub img_size: usize,
    pub patch_size: usize,
    pub window_size: usize,
    pub mlp_dim: usize,
    pub norm_eps: f64,
    /// Neck output channels (256 in the real model).
    pub out_chans: usize,
    /// `net_2` output channels (512).
    pub net2_chans: usize,
    /// `net_3` output channels: the SAM feature width fed to the second encoder
    /// (1024 for CLIP in DeepSeek-OCR, 896 for the Qwen2 encoder of OCR 2).
    pub net3_chans: usize,
}

impl SamConfig {
    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
    /// Side of the pretraining patch grid (64 for img 1024 / patch 16).
    pub fn pos_grid(&self) -> usize {
        self.img_size / self.patch_size
    }
}

/// CLIP-L part of the DeepEncoder (DeepSeek-OCR).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    pub layer_norm_eps: f64,
    pub pre_layer_norm_eps: f64,
    /// Rows of the position table including CLS (257).
    pub num_positions: usize,
}

impl ClipConfig {
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

/// One learnable query table of the OCR-2 encoder: `query_{view_size}` with `tokens` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTable {
    /// Side of the square view the table serves (768 or 1024).
    pub view_size: usize,
    /// Rows of the table = tokens of such a view (144 or 256).
    pub tokens: usize,
}

impl QueryTable {
    /// The checkpoint name below `model.qwen2_model` (`query_768`).
    pub fn name(&self) -> String {
        format!("query_{}", self.view_size)
    }
}

/// The Qwen2 "decoder as encoder" of DeepSeek-OCR 2 (spec-ocr2 §6.1). The reference
/// hard-codes these values; config.json only hints at the width (`qwen2-0-5b.dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2EncoderConfig {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    /// The query tables, ascending view size.
    pub query_tables: Vec<QueryTable>,
}

impl Qwen2EncoderConfig {
    /// The query table for a view of side `size`, if the model has one.
    pub fn query_table_for(&self, size: usize) -> Option<QueryTable> {
        self.query_tables.iter().copied().find(|q| q.view_size == size)
    }
}

/// The second encoder stage of a variant.
#[derive(Debug, Clone, PartialEq)]
pub enum VisionTower {
    /// CLIP-L over SAM features (DeepSeek-OCR).
    Clip(ClipConfig),
    /// Qwen2 decoder-as-encoder with learnable queries (DeepSeek-OCR 2).
    Qwen2(Qwen2EncoderConfig),
}

/// Linear projector from the encoder features to the LM width.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorConfig {
    pub input_dim: usize,
    pub n_embed: usize,
}

/// DeepSeek-V2 decoder (MHA variant, `use_mla = false`).
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub moe_intermediate_size: usize,
    pub n_routed_experts: usize,
    pub n_shared_experts: usize,
    pub num_experts_per_tok: usize,
    pub first_k_dense_replace: usize,
    pub moe_layer_freq: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f64,
}

impl LmConfig {
    /// Whether decoder layer `i` uses the MoE block (else the dense MLP).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.n_routed_experts > 0 && i >= self.first_k_dense_replace && i.is_multiple_of(self.moe_layer_freq.max(1))
    }
}

/// Special token ids the pipeline needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIds {
    pub bos: u32,
    pub eos: u32,
    pub image: u32,
}

/// Everything in `config.json` the engine uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub sam: SamConfig,
    /// CLIP (DeepSeek-OCR) or the Qwen2 encoder (OCR 2); decides the variant.
    pub vision: VisionTower,
    pub projector: ProjectorConfig,
    pub lm: LmConfig,
    pub tokens: TokenIds,
}

// ---------------------------------------------------------------------------------------
// serde types of the file

/// `config.json` as written by the official checkpoints (the fields the engine reads).
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub vision_config: Option<RawVisionConfig>,
    #[serde(default)]
    pub projector_config: Option<RawProjectorConfig>,
    pub language_config: RawLanguageConfig,
    /// Extra dimensions of the golden mini models.
    #[serde(default)]
    pub mini: Option<RawMini>,
}

/// `vision_config`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawVisionConfig {
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub width: RawVisionWidth,
}

/// `vision_config.width`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawVisionWidth {
    #[serde(default)]
    pub sam_vit_b: Option<RawSamWidth>,
    #[serde(default, rename = "clip-l-14-224")]
    pub clip_l_14_224: Option<RawClipWidth>,
    #[serde(default, rename = "qwen2-0-5b")]
    pub qwen2_0_5b: Option<RawQwen2Width>,
}

/// `vision_config.width.sam_vit_b`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawSamWidth {
    pub width: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub global_attn_indexes: Option<Vec<usize>>,
    /// `[net_2, net_3]` channels. Stale for OCR 2 (says 1024; the code uses 896, trap T6).
    pub downsample_channels: Option<Vec<usize>>,
}

/// `vision_config.width.clip-l-14-224`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawClipWidth {
    pub width: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
}

/// `vision_config.width.qwen2-0-5b`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawQwen2Width {
    pub dim: Option<usize>,
}

/// `projector_config`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawProjectorConfig {
    pub input_dim: Option<usize>,
    pub n_embed: Option<usize>,
}

/// `language_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawLanguageConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub moe_intermediate_size: Option<usize>,
    #[serde(default)]
    pub n_routed_experts: Option<usize>,
    #[serde(default)]
    pub n_shared_experts: Option<usize>,
    #[serde(default)]
    pub num_experts_per_tok: Option<usize>,
    #[serde(default)]
    pub first_k_dense_replace: Option<usize>,
    #[serde(default)]
    pub moe_layer_freq: Option<usize>,
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub norm_topk_prob: Option<bool>,
    #[serde(default)]
    pub routed_scaling_factor: Option<f64>,
    #[serde(default)]
    pub use_mla: Option<bool>,
    #[serde(default)]
    pub bos_token_id: Option<usize>,
    #[serde(default)]
    pub eos_token_id: Option<usize>,
}

/// The golden mini models' `mini` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMini {
    #[serde(default)]
    pub sam: RawMiniSam,
    #[serde(default)]
    pub clip: RawMiniClip,
    #[serde(default)]
    pub encoder: RawMiniEncoder,
    #[serde(default)]
    pub lm: RawMiniLm,
    #[serde(default)]
    pub tokens: RawMiniTokens,
}

/// `mini.sam`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMiniSam {
    pub img_size: Option<usize>,
    pub patch_size: Option<usize>,
    pub window_size: Option<usize>,
    pub mlp_ratio: Option<f64>,
    pub norm_eps: Option<f64>,
    pub out_chans: Option<usize>,
    /// `[in, out]` channels.
    pub net_2: Option<Vec<usize>>,
    /// `[in, out]` channels.
    pub net_3: Option<Vec<usize>>,
}

/// `mini.clip`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMiniClip {
    pub ffn_hidden_size: Option<usize>,
    pub layernorm_epsilon: Option<f64>,
    pub pre_layernorm_epsilon: Option<f64>,
    pub num_positions: Option<usize>,
}

/// `mini.encoder` (OCR 2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMiniEncoder {
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub intermediate: Option<usize>,
    pub rope_theta: Option<f64>,
    pub rms_norm_eps: Option<f64>,
    /// `query_{view size}` → rows.
    pub query_tables: Option<BTreeMap<String, usize>>,
}

/// `mini.lm`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMiniLm {
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
}

/// `mini.tokens`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMiniTokens {
    pub image_token_id: Option<usize>,
}

impl RawConfig {
    /// Which variant this file describes (see the module docs).
    pub fn variant(&self, file: &Path) -> Result<ModelVariant> {
        let unsupported = |what: String| Error::model(file, what, format!("supported: {}", ModelVariant::supported()));
        match self.model_type.as_deref() {
            Some(ModelVariant::MODEL_TYPE) => {}
            Some(other) => return Err(unsupported(format!("unsupported model_type `{other}`"))),
            None => return Err(unsupported("config.json has no `model_type`".into())),
        }
        if let Some(arch) = self.architectures.as_ref().and_then(|a| a.first()) {
            return ModelVariant::ALL
                .into_iter()
                .find(|v| v.architecture() == arch)
                .ok_or_else(|| unsupported(format!("unsupported architecture `{arch}`")));
        }
        match self.vision_config.as_ref().and_then(|v| v.model_name.as_deref()) {
            Some(name) => ModelVariant::ALL
                .into_iter()
                .find(|v| v.vision_model_name() == name)
                .ok_or_else(|| unsupported(format!("unsupported vision_config.model_name `{name}`"))),
            // Files written before the variants existed (random checkpoints) are version 1.
            None => Ok(ModelVariant::DeepSeekOcr),
        }
    }
}

impl ModelConfig {
    /// The model variant.
    pub fn variant(&self) -> ModelVariant {
        match self.vision {
            VisionTower::Clip(_) => ModelVariant::DeepSeekOcr,
            VisionTower::Qwen2(_) => ModelVariant::DeepSeekOcr2,
        }
    }

    /// The CLIP configuration (DeepSeek-OCR only).
    pub fn clip(&self) -> Option<&ClipConfig> {
        match &self.vision {
            VisionTower::Clip(c) => Some(c),
            VisionTower::Qwen2(_) => None,
        }
    }

    /// The Qwen2 encoder configuration (DeepSeek-OCR 2 only).
    pub fn qwen2_encoder(&self) -> Option<&Qwen2EncoderConfig> {
        match &self.vision {
            VisionTower::Qwen2(q) => Some(q),
            VisionTower::Clip(_) => None,
        }
    }

    /// Reads `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::model(
                path,
                format!("cannot read config.json: {e}"),
                "point --model at a DeepSeek-OCR model folder (config.json, *.safetensors, tokenizer.json)",
            )
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::model(
                path,
                format!("config.json is not valid JSON: {e}"),
                "re-download config.json",
            )
        })?;
        Self::from_value(&value, path)
    }

    /// Parses a `config.json` value; `file` is only used in error messages.
    pub fn from_value(root: &Value, file: &Path) -> Result<Self> {
        let raw = RawConfig::deserialize(root).map_err(|e| {
            Error::model(
                file,
                format!("config.json does not have the official schema: {e}"),
                "use the config.json of the official deepseek-ai/DeepSeek-OCR or DeepSeek-OCR-2 checkpoint",
            )
        })?;
        Self::from_raw(&raw, file)
    }

    /// Builds the configuration of the variant `raw` describes.
    pub fn from_raw(raw: &RawConfig, file: &Path) -> Result<Self> {
        let variant = raw.variant(file)?;
        let mini = raw.mini.clone().unwrap_or_default();
        let width = raw.vision_config.clone().unwrap_or_default().width;
        let sam_w = width.sam_vit_b.clone().unwrap_or_default();
        let sam_width = sam_w.width.unwrap_or(768);
        let down = sam_w.downsample_channels.clone().unwrap_or_else(|| vec![512, 1024]);
        let mlp_ratio = mini.sam.mlp_ratio.unwrap_or(4.0);
        let pair_out = |p: &Option<Vec<usize>>| p.as_ref().and_then(|v| v.get(1).copied());
        let mut sam = SamConfig {
            width: sam_width,
            depth: sam_w.layers.unwrap_or(12),
            heads: sam_w.heads.unwrap_or(12),
            global_attn_indexes: sam_w.global_attn_indexes.clone().unwrap_or_else(|| vec![2, 5, 8, 11]),
            img_size: mini.sam.img_size.unwrap_or(1024),
            patch_size: mini.sam.patch_size.unwrap_or(16),
            window_size: mini.sam.window_size.unwrap_or(14),
            mlp_dim: (sam_width as f64 * mlp_ratio) as usize,
            norm_eps: mini.sam.norm_eps.unwrap_or(1e-6),
            out_chans: mini.sam.out_chans.unwrap_or(256),
            net2_chans: pair_out(&mini.sam.net_2).unwrap_or(*down.first().unwrap_or(&512)),
            net3_chans: 0,
        };
        let vision = match variant {
            ModelVariant::DeepSeekOcr => {
                sam.net3_chans = pair_out(&mini.sam.net_3).unwrap_or(*down.get(1).unwrap_or(&1024));
                let c = width.clip_l_14_224.clone().unwrap_or_default();
                VisionTower::Clip(ClipConfig {
                    width: c.width.unwrap_or(1024),
                    layers: c.layers.unwrap_or(24),
                    heads: c.heads.unwrap_or(16),
                    ffn_dim: mini.clip.ffn_hidden_size.unwrap_or(4096),
                    layer_norm_eps: mini.clip.layernorm_epsilon.unwrap_or(1e-5),
                    pre_layer_norm_eps: mini.clip.pre_layernorm_epsilon.unwrap_or(1e-5),
                    num_positions: mini.clip.num_positions.unwrap_or(257),
                })
            }
            ModelVariant::DeepSeekOcr2 => {
                let e = &mini.encoder;
                let hidden = e
                    .hidden
                    .or(width.qwen2_0_5b.as_ref().and_then(|q| q.dim))
                    .unwrap_or(896);
                // Trap T6: `downsample_channels[1]` says 1024, but net_3 feeds the encoder
                // and so has its width.
                sam.net3_chans = pair_out(&mini.sam.net_3).unwrap_or(hidden);
                let heads = e.heads.unwrap_or(14);
                let query_tables = match &e.query_tables {
                    Some(map) => {
                        let mut v = Vec::new();
                        for (name, &tokens) in map {
                            let size = name
                                .strip_prefix("query_")
                                .and_then(|s| s.parse::<usize>().ok())
                                .ok_or_else(|| {
                                    Error::model(
                                        file,
                                        format!("mini.encoder.query_tables has a key `{name}`"),
                                        "name the tables query_<view size>, e.g. query_768",
                                    )
                                })?;
                            v.push(QueryTable {
                                view_size: size,
                                tokens,
                            });
                        }
                        v.sort_by_key(|q| q.view_size);
                        v
                    }
                    None => vec![
                        QueryTable {
                            view_size: 768,
                            tokens: 144,
                        },
                        QueryTable {
                            view_size: 1024,
                            tokens: 256,
                        },
                    ],
                };
                VisionTower::Qwen2(Qwen2EncoderConfig {
                    layers: e.layers.unwrap_or(24),
                    hidden,
                    heads,
                    kv_heads: e.kv_heads.unwrap_or(2),
                    head_dim: e.head_dim.unwrap_or(hidden.checked_div(heads).unwrap_or(0)),
                    intermediate: e.intermediate.unwrap_or(4864),
                    rope_theta: e.rope_theta.unwrap_or(1_000_000.0),
                    rms_norm_eps: e.rms_norm_eps.unwrap_or(1e-6),
                    query_tables,
                })
            }
        };
        let default_input = match &vision {
            VisionTower::Clip(c) => c.width + sam.net3_chans,
            VisionTower::Qwen2(q) => q.hidden,
        };
        let p = raw.projector_config.clone().unwrap_or_default();
        let projector = ProjectorConfig {
            input_dim: p.input_dim.unwrap_or(default_input),
            n_embed: p.n_embed.unwrap_or(1280),
        };
        let l = &raw.language_config;
        let bad = |key: &str, what: &str| {
            Error::model(
                file,
                format!("config field `{key}` {what}"),
                "use the config.json of the official deepseek-ai/DeepSeek-OCR checkpoint",
            )
        };
        let (hidden, heads) = (l.hidden_size, l.num_attention_heads);
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(bad(
                "language_config.num_attention_heads",
                "does not divide hidden_size",
            ));
        }
        if l.use_mla.unwrap_or(false) {
            return Err(bad(
                "language_config.use_mla",
                "is true; only the MHA decoder of DeepSeek-OCR is supported",
            ));
        }
        let lm = LmConfig {
            vocab_size: l.vocab_size,
            hidden_size: hidden,
            num_layers: l.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: l.num_key_value_heads.unwrap_or(heads),
            head_dim: mini.lm.head_dim.unwrap_or(hidden / heads),
            intermediate_size: l.intermediate_size,
            moe_intermediate_size: l.moe_intermediate_size.unwrap_or(896),
            n_routed_experts: l.n_routed_experts.unwrap_or(0),
            n_shared_experts: l.n_shared_experts.unwrap_or(0),
            num_experts_per_tok: l.num_experts_per_tok.unwrap_or(6),
            first_k_dense_replace: l.first_k_dense_replace.unwrap_or(1),
            moe_layer_freq: l.moe_layer_freq.unwrap_or(1),
            rms_norm_eps: mini.lm.rms_norm_eps.or(l.rms_norm_eps).unwrap_or(1e-6),
            rope_theta: mini.lm.rope_theta.or(l.rope_theta).unwrap_or(10000.0),
            max_position_embeddings: l.max_position_embeddings.unwrap_or(8192),
            norm_topk_prob: l.norm_topk_prob.unwrap_or(false),
            routed_scaling_factor: l.routed_scaling_factor.unwrap_or(1.0),
        };
        let tokens = TokenIds {
            bos: l.bos_token_id.unwrap_or(0) as u32,
            eos: l.eos_token_id.unwrap_or(1) as u32,
            image: mini.tokens.image_token_id.unwrap_or(128815) as u32,
        };
        let cfg = ModelConfig {
            sam,
            vision,
            projector,
            lm,
            tokens,
        };
        cfg.check(file)?;
        Ok(cfg)
    }

    fn check(&self, file: &Path) -> Result<()> {
        let bad = |what: String| Error::model(file, what, "fix config.json so that its widths agree with each other");
        if self.sam.heads == 0 || !self.sam.width.is_multiple_of(self.sam.heads) {
            return Err(bad(format!(
                "SAM width {} is not divisible by its {} heads",
                self.sam.width, self.sam.heads
            )));
        }
        match &self.vision {
            VisionTower::Clip(clip) => {
                if clip.heads == 0 || !clip.width.is_multiple_of(clip.heads) {
                    return Err(bad(format!(
                        "CLIP width {} is not divisible by its {} heads",
                        clip.width, clip.heads
                    )));
                }
                if self.sam.net3_chans != clip.width {
                    return Err(bad(format!(
                        "SAM output channels {} differ from the CLIP width {}",
                        self.sam.net3_chans, clip.width
                    )));
                }
                if self.projector.input_dim != clip.width + self.sam.net3_chans {
                    return Err(bad(format!(
                        "projector input_dim {} is not CLIP width + SAM channels = {}",
                        self.projector.input_dim,
                        clip.width + self.sam.net3_chans
                    )));
                }
            }
            VisionTower::Qwen2(q) => {
                if q.heads == 0 || q.kv_heads == 0 || !q.heads.is_multiple_of(q.kv_heads) {
                    return Err(bad(format!(
                        "encoder heads {} are not a multiple of its {} key/value heads",
                        q.heads, q.kv_heads
                    )));
                }
                if q.head_dim == 0 || !q.head_dim.is_multiple_of(2) {
                    return Err(bad(format!(
                        "encoder head_dim {} must be even (rotary halves)",
                        q.head_dim
                    )));
                }
                if self.sam.net3_chans != q.hidden {
                    return Err(bad(format!(
                        "SAM output channels {} differ from the encoder width {}",
                        self.sam.net3_chans, q.hidden
                    )));
                }
                if self.projector.input_dim != q.hidden {
                    return Err(bad(format!(
                        "projector input_dim {} is not the encoder width {}",
                        self.projector.input_dim, q.hidden
                    )));
                }
                if q.query_tables.is_empty() {
                    return Err(bad("the encoder has no query tables".into()));
                }
            }
        }
        if self.projector.n_embed != self.lm.hidden_size {
            return Err(bad(format!(
                "projector n_embed {} differs from the LM hidden size {}",
                self.projector.n_embed, self.lm.hidden_size
            )));
        }
        if self.lm.num_experts_per_tok > self.lm.n_routed_experts && self.lm.n_routed_experts > 0 {
            return Err(bad("num_experts_per_tok exceeds n_routed_experts".into()));
        }
        Ok(())
    }

    /// The configuration of the real DeepSeek-OCR checkpoint (used for random-weight benchmarks
    /// when no config.json is at hand).
    pub fn deepseek_ocr() -> Self {
        Self::builtin(ModelVariant::DeepSeekOcr)
    }

    /// The configuration of the real DeepSeek-OCR-2 checkpoint.
    pub fn deepseek_ocr2() -> Self {
        Self::builtin(ModelVariant::DeepSeekOcr2)
    }

    /// The real checkpoint's configuration of `variant`.
    pub fn builtin(variant: ModelVariant) -> Self {
        Self::from_value(
            &serde_json::from_str(real_config_json(variant)).expect("built-in config is valid JSON"),
            Path::new("<built-in>"),
        )
        .expect("built-in config is consistent")
    }
}

/// The built-in `config.json` text of the real checkpoint of `variant`.
pub fn real_config_json(variant: ModelVariant) -> &'static str {
    match variant {
        ModelVariant::DeepSeekOcr => REAL_CONFIG_JSON,
        ModelVariant::DeepSeekOcr2 => REAL_CONFIG_OCR2_JSON,
    }
}

/// The language/vision part of the official `config.json` (fields the engine reads). The text
/// is kept as it was before the variants existed (random checkpoints are cached by its hash);
/// `vision_config.model_name` selects the variant.
pub const REAL_CONFIG_JSON: &str = r#"{
  "model_type": "deepseek_vl_v2",
  "projector_config": {"input_dim": 2048, "model_type": "mlp_projector", "n_embed": 1280, "projector_type": "linear"},
  "vision_config": {"image_size": 1024, "mlp_ratio": 3.7362, "model_name": "deeplip_b_l", "model_type": "vision",
    "width": {"clip-l-14-224": {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024},
              "sam_vit_b": {"downsample_channels": [512, 1024], "global_attn_indexes": [2, 5, 8, 11], "heads": 12, "layers": 12, "width": 768}}},
  "language_config": {"bos_token_id": 0, "eos_token_id": 1, "first_k_dense_replace": 1, "hidden_size": 1280,
    "intermediate_size": 6848, "kv_lora_rank": null, "lm_head": true, "max_position_embeddings": 8192,
    "moe_intermediate_size": 896, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
    "num_attention_heads": 10, "num_experts_per_tok": 6, "num_hidden_layers": 12, "num_key_value_heads": 10,
    "q_lora_rank": null, "qk_nope_head_dim": 0, "qk_rope_head_dim": 0, "rm_head": false, "topk_group": 1,
    "topk_method": "greedy", "torch_dtype": "bfloat16", "use_mla": false, "v_head_dim": 0, "vocab_size": 129280}
}"#;

/// The language/vision part of the official DeepSeek-OCR-2 `config.json` (spec-ocr2 §8: the
/// LM part is identical to version 1; `downsample_channels` is stale as in the original).
pub const REAL_CONFIG_OCR2_JSON: &str = r#"{
  "architectures": ["DeepseekOCR2ForCausalLM"],
  "model_type": "deepseek_vl_v2",
  "projector_config": {"input_dim": 896, "model_type": "mlp_projector", "n_embed": 1280, "projector_type": "linear"},
  "vision_config": {"image_size": 1024, "mlp_ratio": 3.7362, "model_name": "deepencoderv2", "model_type": "vision",
    "width": {"qwen2-0-5b": {"dim": 896},
              "sam_vit_b": {"downsample_channels": [512, 1024], "global_attn_indexes": [2, 5, 8, 11], "heads": 12, "layers": 12, "width": 768}}},
  "language_config": {"bos_token_id": 0, "eos_token_id": 1, "first_k_dense_replace": 1, "hidden_size": 1280,
    "intermediate_size": 6848, "kv_lora_rank": null, "lm_head": true, "max_position_embeddings": 8192,
    "moe_intermediate_size": 896, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
    "num_attention_heads": 10, "num_experts_per_tok": 6, "num_hidden_layers": 12, "num_key_value_heads": 10,
    "q_lora_rank": null, "qk_nope_head_dim": 0, "qk_rope_head_dim": 0, "rm_head": false, "topk_group": 1,
    "topk_method": "greedy", "torch_dtype": "bfloat16", "use_mla": false, "v_head_dim": 0, "vocab_size": 129280}
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_config_matches_spec() {
        let c = ModelConfig::deepseek_ocr();
        assert_eq!(c.variant(), ModelVariant::DeepSeekOcr);
        assert_eq!(c.sam.width, 768);
        assert_eq!(c.sam.mlp_dim, 3072);
        assert_eq!(c.sam.net3_chans, 1024);
        assert_eq!(c.clip().unwrap().ffn_dim, 4096);
        assert_eq!(c.lm.head_dim, 128);
        assert_eq!(c.tokens.image, 128815);
        assert!(!c.lm.is_moe_layer(0));
        assert!(c.lm.is_moe_layer(11));
    }

    #[test]
    fn real_ocr2_config_ignores_the_stale_net3_width() {
        let c = ModelConfig::deepseek_ocr2();
        assert_eq!(c.variant(), ModelVariant::DeepSeekOcr2);
        assert_eq!(c.sam.net3_chans, 896);
        let q = c.qwen2_encoder().unwrap();
        assert_eq!(
            (q.layers, q.hidden, q.heads, q.kv_heads, q.head_dim, q.intermediate),
            (24, 896, 14, 2, 64, 4864)
        );
        assert_eq!(q.rope_theta, 1e6);
        assert_eq!(q.query_table_for(768).unwrap().tokens, 144);
        assert_eq!(q.query_table_for(1024).unwrap().tokens, 256);
        assert_eq!(q.query_table_for(640), None);
        assert_eq!(c.projector.input_dim, 896);
        // The LM is version 1's.
        assert_eq!(c.lm, ModelConfig::deepseek_ocr().lm);
    }

    #[test]
    fn variant_comes_from_architectures_then_vision_model_name() {
        let mut v: Value = serde_json::from_str(REAL_CONFIG_OCR2_JSON).unwrap();
        v.as_object_mut().unwrap().remove("architectures");
        let c = ModelConfig::from_value(&v, Path::new("c.json")).unwrap();
        assert_eq!(c.variant(), ModelVariant::DeepSeekOcr2);
        v["architectures"] = serde_json::json!(["DeepseekOCRForCausalLM"]);
        // Version-1 architecture with the OCR-2 vision part: no CLIP width, so the defaults
        // apply and the projector width no longer fits.
        assert!(ModelConfig::from_value(&v, Path::new("c.json")).is_err());
    }

    #[test]
    fn unknown_model_types_name_the_supported_ones() {
        for (key, value) in [
            ("model_type", serde_json::json!("llava")),
            ("architectures", serde_json::json!(["DeepseekOCR3ForCausalLM"])),
        ] {
            let mut v: Value = serde_json::from_str(REAL_CONFIG_JSON).unwrap();
            v[key] = value;
            let e = ModelConfig::from_value(&v, Path::new("x/config.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("unsupported"), "{e}");
            assert!(e.contains("DeepseekOCRForCausalLM"), "{e}");
            assert!(e.contains("DeepseekOCR2ForCausalLM"), "{e}");
            assert!(e.contains("deepseek_vl_v2"), "{e}");
        }
    }

    #[test]
    fn missing_field_is_named() {
        let v: Value = serde_json::json!({"model_type": "deepseek_vl_v2", "language_config": {"hidden_size": 8}});
        let e = ModelConfig::from_value(&v, Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vocab_size") || e.contains("num_attention_heads"), "{e}");
        assert!(e.contains("x/config.json"), "{e}");
    }

    #[test]
    fn wrong_types_are_errors() {
        let mut v: Value = serde_json::from_str(REAL_CONFIG_JSON).unwrap();
        v["language_config"]["hidden_size"] = serde_json::json!("wide");
        let e = ModelConfig::from_value(&v, Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
    }
}
