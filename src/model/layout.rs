//! The checkpoint layout: every tensor name and shape the official checkpoint holds for a
//! given configuration. Used to validate a model folder up front (one clear error instead of
//! a failure deep inside a layer) and to write random checkpoints for benchmarks.

use crate::model::config::{ClipConfig, ModelConfig, VisionTower};

/// Kind of tensor, which decides how a random checkpoint initialises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Weight of a linear or conv layer: N(0, 1/fan_in).
    Weight { fan_in: usize },
    /// A bias: small noise.
    Bias,
    /// Gain of a norm: around 1.
    NormWeight,
    /// Shift of a norm: small noise.
    NormBias,
    /// Embedding-like table with unit scale (token embeddings, newline, separator, CLS).
    Embedding,
    /// Position tables.
    Position,
    /// Relative position tables (small).
    RelPos,
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

/// A growing list of tensor specs with helpers for the usual layer kinds.
pub(crate) struct Specs(pub(crate) Vec<TensorSpec>);

impl Specs {
    pub(crate) fn add(&mut self, name: String, shape: &[usize], init: Init) {
        self.0.push(TensorSpec {
            name,
            shape: shape.to_vec(),
            init,
        });
    }
    pub(crate) fn linear(&mut self, prefix: &str, out: usize, inp: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[out, inp], Init::Weight { fan_in: inp });
        if bias {
            self.add(format!("{prefix}.bias"), &[out], Init::Bias);
        }
    }
    pub(crate) fn norm(&mut self, prefix: &str, dim: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[dim], Init::NormWeight);
        if bias {
            self.add(format!("{prefix}.bias"), &[dim], Init::NormBias);
        }
    }
    pub(crate) fn conv(&mut self, name: &str, out: usize, inp: usize, k: usize) {
        self.add(
            name.to_string(),
            &[out, inp, k, k],
            Init::Weight { fan_in: inp * k * k },
        );
    }
}

/// Every tensor of a checkpoint of this configuration (either variant), in a stable order.
pub fn checkpoint_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let mut s = Specs(Vec::new());
    sam_tensors(&mut s, cfg);
    match &cfg.vision {
        VisionTower::Clip(clip) => clip_tensors(&mut s, cfg, clip),
        VisionTower::Qwen2(enc) => crate::model::layout_ocr2::encoder_tensors(&mut s, cfg, enc),
    }
    lm_tensors(&mut s, cfg);
    s.0
}

/// SAM (both variants; `net_3`'s width differs).
fn sam_tensors(s: &mut Specs, cfg: &ModelConfig) {
    let sam = &cfg.sam;
    let g = sam.pos_grid();
    let sp = "model.sam_model";
    s.add(format!("{sp}.pos_embed"), &[1, g, g, sam.width], Init::Position);
    s.conv(&format!("{sp}.patch_embed.proj.weight"), sam.width, 3, sam.patch_size);
    s.add(format!("{sp}.patch_embed.proj.bias"), &[sam.width], Init::Bias);
    for i in 0..sam.depth {
        let b = format!("{sp}.blocks.{i}");
        s.norm(&format!("{b}.norm1"), sam.width, true);
        s.linear(&format!("{b}.attn.qkv"), 3 * sam.width, sam.width, true);
        s.linear(&format!("{b}.attn.proj"), sam.width, sam.width, true);
        let size = if sam.global_attn_indexes.contains(&i) {
            g
        } else {
            sam.window_size
        };
        s.add(
            format!("{b}.attn.rel_pos_h"),
            &[2 * size - 1, sam.head_dim()],
            Init::RelPos,
        );
        s.add(
            format!("{b}.attn.rel_pos_w"),
            &[2 * size - 1, sam.head_dim()],
            Init::RelPos,
        );
        s.norm(&format!("{b}.norm2"), sam.width, true);
        s.linear(&format!("{b}.mlp.lin1"), sam.mlp_dim, sam.width, true);
        s.linear(&format!("{b}.mlp.lin2"), sam.width, sam.mlp_dim, true);
    }
    s.conv(&format!("{sp}.neck.0.weight"), sam.out_chans, sam.width, 1);
    s.norm(&format!("{sp}.neck.1"), sam.out_chans, true);
    s.conv(&format!("{sp}.neck.2.weight"), sam.out_chans, sam.out_chans, 3);
    s.norm(&format!("{sp}.neck.3"), sam.out_chans, true);
    s.conv(&format!("{sp}.net_2.weight"), sam.net2_chans, sam.out_chans, 3);
    s.conv(&format!("{sp}.net_3.weight"), sam.net3_chans, sam.net2_chans, 3);
}

/// CLIP, projector and the two layout vectors of DeepSeek-OCR.
fn clip_tensors(s: &mut Specs, cfg: &ModelConfig, clip: &ClipConfig) {
    let cp = "model.vision_model";
    s.add(
        format!("{cp}.embeddings.class_embedding"),
        &[clip.width],
        Init::Embedding,
    );
    s.conv(&format!("{cp}.embeddings.patch_embedding.weight"), clip.width, 3, 14);
    s.add(
        format!("{cp}.embeddings.position_embedding.weight"),
        &[clip.num_positions, clip.width],
        Init::Position,
    );
    s.norm(&format!("{cp}.pre_layrnorm"), clip.width, true);
    for i in 0..clip.layers {
        let b = format!("{cp}.transformer.layers.{i}");
        s.norm(&format!("{b}.layer_norm1"), clip.width, true);
        s.linear(&format!("{b}.self_attn.qkv_proj"), 3 * clip.width, clip.width, true);
        s.linear(&format!("{b}.self_attn.out_proj"), clip.width, clip.width, true);
        s.norm(&format!("{b}.layer_norm2"), clip.width, true);
        s.linear(&format!("{b}.mlp.fc1"), clip.ffn_dim, clip.width, true);
        s.linear(&format!("{b}.mlp.fc2"), clip.width, clip.ffn_dim, true);
    }
    s.linear(
        "model.projector.layers",
        cfg.projector.n_embed,
        cfg.projector.input_dim,
        true,
    );
    s.add("model.image_newline".into(), &[cfg.projector.n_embed], Init::Embedding);
    s.add("model.view_seperator".into(), &[cfg.projector.n_embed], Init::Embedding);
}

/// The DeepSeek-V2 language model (both variants).
fn lm_tensors(s: &mut Specs, cfg: &ModelConfig) {
    let lm = &cfg.lm;
    let d = lm.hidden_size;
    s.add("model.embed_tokens.weight".into(), &[lm.vocab_size, d], Init::Embedding);
    for i in 0..lm.num_layers {
        let b = format!("model.layers.{i}");
        s.norm(&format!("{b}.input_layernorm"), d, false);
        s.norm(&format!("{b}.post_attention_layernorm"), d, false);
        let qd = lm.num_heads * lm.head_dim;
        let kvd = lm.num_kv_heads * lm.head_dim;
        s.linear(&format!("{b}.self_attn.q_proj"), qd, d, false);
        s.linear(&format!("{b}.self_attn.k_proj"), kvd, d, false);
        s.linear(&format!("{b}.self_attn.v_proj"), kvd, d, false);
        s.linear(&format!("{b}.self_attn.o_proj"), d, qd, false);
        if lm.is_moe_layer(i) {
            s.add(
                format!("{b}.mlp.gate.weight"),
                &[lm.n_routed_experts, d],
                Init::Weight { fan_in: d },
            );
            let m = lm.moe_intermediate_size;
            for e in 0..lm.n_routed_experts {
                let p = format!("{b}.mlp.experts.{e}");
                s.linear(&format!("{p}.gate_proj"), m, d, false);
                s.linear(&format!("{p}.up_proj"), m, d, false);
                s.linear(&format!("{p}.down_proj"), d, m, false);
            }
            if lm.n_shared_experts > 0 {
                let sm = m * lm.n_shared_experts;
                let p = format!("{b}.mlp.shared_experts");
                s.linear(&format!("{p}.gate_proj"), sm, d, false);
                s.linear(&format!("{p}.up_proj"), sm, d, false);
                s.linear(&format!("{p}.down_proj"), d, sm, false);
            }
        } else {
            let m = lm.intermediate_size;
            s.linear(&format!("{b}.mlp.gate_proj"), m, d, false);
            s.linear(&format!("{b}.mlp.up_proj"), m, d, false);
            s.linear(&format!("{b}.mlp.down_proj"), d, m, false);
        }
    }
    s.norm("model.norm", d, false);
    s.linear("lm_head", lm.vocab_size, d, false);
}

/// Total number of parameters of a checkpoint with this configuration.
pub fn parameter_count(cfg: &ModelConfig) -> u64 {
    checkpoint_tensors(cfg)
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_model_parameter_count() {
        // spec §11: 3,336,106,240 parameters, 2710 tensors.
        let cfg = ModelConfig::deepseek_ocr();
        assert_eq!(checkpoint_tensors(&cfg).len(), 2710);
        assert_eq!(parameter_count(&cfg), 3_336_106_240);
    }
}
