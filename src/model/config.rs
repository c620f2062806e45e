//! `config.json` of a DeepSeek-OCR model folder, in the official schema.
//!
//! The official schema cannot express a few widths that the reference code hard-codes
//! (SAM neck channels, CLIP FFN width, ...). The golden "mini" models carry them in an
//! extra `mini` object; when it is absent the real model's values are used.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

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
    /// `net_3` output channels (1024): the SAM feature width fed to CLIP.
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

/// CLIP-L part of the DeepEncoder.
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

/// Linear projector from `[CLIP | SAM]` features to the LM width.
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
    pub clip: ClipConfig,
    pub projector: ProjectorConfig,
    pub lm: LmConfig,
    pub tokens: TokenIds,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    if cur.is_null() {
        None
    } else {
        Some(cur)
    }
}

struct Reader<'a> {
    root: &'a Value,
    file: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, key: &str, what: &str) -> Error {
        Error::model(
            self.file,
            format!("config field `{key}` {what}"),
            "use the config.json of the official deepseek-ai/DeepSeek-OCR checkpoint",
        )
    }
    fn usize_opt(&self, path: &[&str]) -> Result<Option<usize>> {
        match get(self.root, path) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(&path.join("."), "is not a non-negative integer")),
        }
    }
    fn usize_or(&self, path: &[&str], default: usize) -> Result<usize> {
        Ok(self.usize_opt(path)?.unwrap_or(default))
    }
    fn usize_req(&self, path: &[&str]) -> Result<usize> {
        self.usize_opt(path)?
            .ok_or_else(|| self.err(&path.join("."), "is missing"))
    }
    fn f64_or(&self, path: &[&str], default: f64) -> Result<f64> {
        match get(self.root, path) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(&path.join("."), "is not a number")),
        }
    }
    fn bool_or(&self, path: &[&str], default: bool) -> Result<bool> {
        match get(self.root, path) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(&path.join("."), "is not a boolean")),
        }
    }
    fn usize_list(&self, path: &[&str], default: &[usize]) -> Result<Vec<usize>> {
        match get(self.root, path) {
            None => Ok(default.to_vec()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| self.err(&path.join("."), "holds a non-integer"))
                })
                .collect(),
            Some(_) => Err(self.err(&path.join("."), "is not a list")),
        }
    }
}

impl ModelConfig {
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
        let r = Reader { root, file };
        let sam_w = ["vision_config", "width", "sam_vit_b"];
        let clip_w = ["vision_config", "width", "clip-l-14-224"];
        let p = |base: &[&'static str], k: &'static str| -> Vec<&'static str> {
            let mut v = base.to_vec();
            v.push(k);
            v
        };
        let sam_width = r.usize_or(&p(&sam_w, "width"), 768)?;
        let sam_down = r.usize_list(&p(&sam_w, "downsample_channels"), &[512, 1024])?;
        let mlp_ratio = r.f64_or(&["mini", "sam", "mlp_ratio"], 4.0)?;
        let sam = SamConfig {
            width: sam_width,
            depth: r.usize_or(&p(&sam_w, "layers"), 12)?,
            heads: r.usize_or(&p(&sam_w, "heads"), 12)?,
            global_attn_indexes: r.usize_list(&p(&sam_w, "global_attn_indexes"), &[2, 5, 8, 11])?,
            img_size: r.usize_or(&["mini", "sam", "img_size"], 1024)?,
            patch_size: r.usize_or(&["mini", "sam", "patch_size"], 16)?,
            window_size: r.usize_or(&["mini", "sam", "window_size"], 14)?,
            mlp_dim: (sam_width as f64 * mlp_ratio) as usize,
            norm_eps: r.f64_or(&["mini", "sam", "norm_eps"], 1e-6)?,
            out_chans: r.usize_or(&["mini", "sam", "out_chans"], 256)?,
            net2_chans: *sam_down.first().unwrap_or(&512),
            net3_chans: *sam_down.get(1).unwrap_or(&1024),
        };
        let mut sam = sam;
        // `mini.sam.net_2` / `net_3` are [in, out] channel pairs.
        if let Some(v) = r.usize_list(&["mini", "sam", "net_2"], &[])?.get(1) {
            sam.net2_chans = *v;
        }
        if let Some(v) = r.usize_list(&["mini", "sam", "net_3"], &[])?.get(1) {
            sam.net3_chans = *v;
        }
        let clip = ClipConfig {
            width: r.usize_or(&p(&clip_w, "width"), 1024)?,
            layers: r.usize_or(&p(&clip_w, "layers"), 24)?,
            heads: r.usize_or(&p(&clip_w, "heads"), 16)?,
            ffn_dim: r.usize_or(&["mini", "clip", "ffn_hidden_size"], 4096)?,
            layer_norm_eps: r.f64_or(&["mini", "clip", "layernorm_epsilon"], 1e-5)?,
            pre_layer_norm_eps: r.f64_or(&["mini", "clip", "pre_layernorm_epsilon"], 1e-5)?,
            num_positions: r.usize_or(&["mini", "clip", "num_positions"], 257)?,
        };
        let projector = ProjectorConfig {
            input_dim: r.usize_or(&["projector_config", "input_dim"], clip.width + sam.net3_chans)?,
            n_embed: r.usize_or(&["projector_config", "n_embed"], 1280)?,
        };
        let l = ["language_config"];
        let hidden = r.usize_req(&p(&l, "hidden_size"))?;
        let heads = r.usize_req(&p(&l, "num_attention_heads"))?;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(r.err("language_config.num_attention_heads", "does not divide hidden_size"));
        }
        let lm = LmConfig {
            vocab_size: r.usize_req(&p(&l, "vocab_size"))?,
            hidden_size: hidden,
            num_layers: r.usize_req(&p(&l, "num_hidden_layers"))?,
            num_heads: heads,
            num_kv_heads: r.usize_or(&p(&l, "num_key_value_heads"), heads)?,
            head_dim: r.usize_or(&["mini", "lm", "head_dim"], hidden / heads)?,
            intermediate_size: r.usize_req(&p(&l, "intermediate_size"))?,
            moe_intermediate_size: r.usize_or(&p(&l, "moe_intermediate_size"), 896)?,
            n_routed_experts: r.usize_or(&p(&l, "n_routed_experts"), 0)?,
            n_shared_experts: r.usize_or(&p(&l, "n_shared_experts"), 0)?,
            num_experts_per_tok: r.usize_or(&p(&l, "num_experts_per_tok"), 6)?,
            first_k_dense_replace: r.usize_or(&p(&l, "first_k_dense_replace"), 1)?,
            moe_layer_freq: r.usize_or(&p(&l, "moe_layer_freq"), 1)?,
            rms_norm_eps: r.f64_or(&["mini", "lm", "rms_norm_eps"], r.f64_or(&p(&l, "rms_norm_eps"), 1e-6)?)?,
            rope_theta: r.f64_or(&["mini", "lm", "rope_theta"], r.f64_or(&p(&l, "rope_theta"), 10000.0)?)?,
            max_position_embeddings: r.usize_or(&p(&l, "max_position_embeddings"), 8192)?,
            norm_topk_prob: r.bool_or(&p(&l, "norm_topk_prob"), false)?,
            routed_scaling_factor: r.f64_or(&p(&l, "routed_scaling_factor"), 1.0)?,
        };
        if r.bool_or(&p(&l, "use_mla"), false)? {
            return Err(r.err(
                "language_config.use_mla",
                "is true; only the MHA decoder of DeepSeek-OCR is supported",
            ));
        }
        let tokens = TokenIds {
            bos: r.usize_or(&p(&l, "bos_token_id"), 0)? as u32,
            eos: r.usize_or(&p(&l, "eos_token_id"), 1)? as u32,
            image: r.usize_or(&["mini", "tokens", "image_token_id"], 128815)? as u32,
        };
        let cfg = ModelConfig {
            sam,
            clip,
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
        if self.clip.heads == 0 || !self.clip.width.is_multiple_of(self.clip.heads) {
            return Err(bad(format!(
                "CLIP width {} is not divisible by its {} heads",
                self.clip.width, self.clip.heads
            )));
        }
        if self.sam.net3_chans != self.clip.width {
            return Err(bad(format!(
                "SAM output channels {} differ from the CLIP width {}",
                self.sam.net3_chans, self.clip.width
            )));
        }
        if self.projector.input_dim != self.clip.width + self.sam.net3_chans {
            return Err(bad(format!(
                "projector input_dim {} is not CLIP width + SAM channels = {}",
                self.projector.input_dim,
                self.clip.width + self.sam.net3_chans
            )));
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
        Self::from_value(
            &serde_json::from_str(REAL_CONFIG_JSON).expect("built-in config is valid JSON"),
            Path::new("<built-in>"),
        )
        .expect("built-in config is consistent")
    }
}

/// The language/vision part of the official `config.json` (fields the engine reads).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_config_matches_spec() {
        let c = ModelConfig::deepseek_ocr();
        assert_eq!(c.sam.width, 768);
        assert_eq!(c.sam.mlp_dim, 3072);
        assert_eq!(c.sam.net3_chans, 1024);
        assert_eq!(c.clip.ffn_dim, 4096);
        assert_eq!(c.lm.head_dim, 128);
        assert_eq!(c.tokens.image, 128815);
        assert!(!c.lm.is_moe_layer(0));
        assert!(c.lm.is_moe_layer(11));
    }

    #[test]
    fn missing_field_is_named() {
        let v: Value = serde_json::json!({"language_config": {"hidden_size": 8}});
        let e = ModelConfig::from_value(&v, Path::new("x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_attention_heads"), "{e}");
        assert!(e.contains("x/config.json"), "{e}");
    }
}
