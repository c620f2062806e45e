//! The checkpoint layout of DeepSeek-OCR 2's encoder part (spec-ocr2 §9): the Qwen2
//! decoder-as-encoder (`model.qwen2_model.model.model.*` — the triple `model` is real), its
//! query tables, the projector and the view separator. SAM and the language model are
//! listed by [`crate::model::layout`], which calls this for the OCR-2 variant.

use crate::model::config::{ModelConfig, Qwen2EncoderConfig};
use crate::model::layout::{Init, Specs};

/// Prefix of the encoder's layers and final norm.
pub const ENCODER_PREFIX: &str = "model.qwen2_model.model.model";

/// Prefix of the query tables (`{QUERY_PREFIX}.query_768.weight`).
pub const QUERY_PREFIX: &str = "model.qwen2_model";

/// Appends the encoder, query tables, projector and separator.
pub(crate) fn encoder_tensors(s: &mut Specs, cfg: &ModelConfig, enc: &Qwen2EncoderConfig) {
    let h = enc.hidden;
    let qd = enc.heads * enc.head_dim;
    let kvd = enc.kv_heads * enc.head_dim;
    for i in 0..enc.layers {
        let b = format!("{ENCODER_PREFIX}.layers.{i}");
        s.linear(&format!("{b}.self_attn.q_proj"), qd, h, true);
        s.linear(&format!("{b}.self_attn.k_proj"), kvd, h, true);
        s.linear(&format!("{b}.self_attn.v_proj"), kvd, h, true);
        s.linear(&format!("{b}.self_attn.o_proj"), h, qd, false);
        s.linear(&format!("{b}.mlp.gate_proj"), enc.intermediate, h, false);
        s.linear(&format!("{b}.mlp.up_proj"), enc.intermediate, h, false);
        s.linear(&format!("{b}.mlp.down_proj"), h, enc.intermediate, false);
        s.norm(&format!("{b}.input_layernorm"), h, false);
        s.norm(&format!("{b}.post_attention_layernorm"), h, false);
    }
    s.norm(&format!("{ENCODER_PREFIX}.norm"), h, false);
    for q in &enc.query_tables {
        s.add(
            format!("{QUERY_PREFIX}.{}.weight", q.name()),
            &[q.tokens, h],
            Init::Embedding,
        );
    }
    s.linear(
        "model.projector.layers",
        cfg.projector.n_embed,
        cfg.projector.input_dim,
        true,
    );
    s.add("model.view_seperator".into(), &[cfg.projector.n_embed], Init::Embedding);
}

#[cfg(test)]
mod tests {
    use crate::model::layout::{checkpoint_tensors, parameter_count};
    use crate::model::ModelConfig;

    #[test]
    fn real_ocr2_parameter_count() {
        // spec-ocr2 §9: 2707 tensors, 3,389,119,360 parameters.
        let cfg = ModelConfig::deepseek_ocr2();
        assert_eq!(checkpoint_tensors(&cfg).len(), 2707);
        assert_eq!(parameter_count(&cfg), 3_389_119_360);
    }
}
