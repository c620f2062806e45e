//! Random-weight checkpoints in the official layout, for benchmarks.
//!
//! The real weights (6.7 GB) are not always at hand; speed and memory do not depend on the
//! weight values, so a checkpoint with the same tensor names, shapes and dtype (bf16) and
//! plausible value scales measures the same thing. The file is streamed to disk tensor by
//! tensor in small chunks: the model is never held in memory, and other engines can be
//! measured on the very same file.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::bf16;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::layout::{checkpoint_tensors, Init, TensorSpec};

/// Centre and standard deviation of a tensor kind, as in the golden models. Benchmarks that
/// build random weights in memory use the same scales.
pub fn init_scale(init: Init) -> (f32, f32) {
    match init {
        Init::Weight { fan_in } => (0.0, 1.0 / (fan_in.max(1) as f32).sqrt()),
        Init::Bias => (0.0, 0.02),
        Init::NormWeight => (1.0, 0.1),
        Init::NormBias => (0.0, 0.05),
        Init::Embedding => (0.0, 1.0),
        Init::Position => (0.0, 0.5),
        Init::RelPos => (0.0, 0.1),
    }
}

fn header(specs: &[TensorSpec]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "generator": "deepseek-ocr random-checkpoint"}),
    );
    let mut offset = 0usize;
    for t in specs {
        let bytes = t.shape.iter().product::<usize>() * 2;
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": t.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default();
    // The data section starts 8-byte aligned, as the format recommends.
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    h
}

/// Writes `model.safetensors` and `config.json` for `config` into `out_dir`, with values drawn
/// from a seeded generator (uniform with the target standard deviation). Returns the path of
/// the weights file. `config_json` is the text written as `config.json`.
pub fn write_random_checkpoint(config: &ModelConfig, config_json: &str, out_dir: &Path, seed: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let specs = checkpoint_tensors(config);
    let path = out_dir.join("model.safetensors");
    let tmp = out_dir.join("model.safetensors.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    let io = |e| Error::io(&tmp, e);
    let h = header(&specs);
    w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&h).map_err(io)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 21);
    for t in &specs {
        let (centre, std) = init_scale(t.init);
        // Uniform on [-a, a] has standard deviation a / sqrt(3).
        let a = std * 3f32.sqrt();
        let mut left: usize = t.shape.iter().product();
        while left > 0 {
            let n = left.min(1 << 20);
            chunk.clear();
            for _ in 0..n {
                let u: f32 = rng.random::<f32>() * 2.0 - 1.0;
                chunk.extend_from_slice(&bf16::from_f32(centre + a * u).to_bits().to_le_bytes());
            }
            w.write_all(&chunk).map_err(io)?;
            left -= n;
        }
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let cfg_path = out_dir.join("config.json");
    std::fs::write(&cfg_path, config_json).map_err(|e| Error::io(&cfg_path, e))?;
    Ok(path)
}

/// Writes a placeholder `tokenizer.json` (word-level, tokens `<tN>`) whose special tokens sit
/// at the ids the configuration uses (`<image>` at the config's image id, the grounding and
/// table tokens after it, as in the real vocabulary). Enough to build prompts of realistic
/// length and to decode ids for benchmarks; the text it decodes is meaningless.
pub fn write_placeholder_tokenizer(config: &ModelConfig, out_dir: &Path) -> Result<PathBuf> {
    let vocab_size = config.lm.vocab_size;
    let image = config.tokens.image as usize;
    let specials: Vec<(usize, String)> = [
        (config.tokens.bos as usize, "<｜begin▁of▁sentence｜>".to_string()),
        (config.tokens.eos as usize, "<｜end▁of▁sentence｜>".to_string()),
        (2, "<｜▁pad▁｜>".to_string()),
    ]
    .into_iter()
    .chain(
        [
            "<image>",
            "<|ref|>",
            "<|/ref|>",
            "<|det|>",
            "<|/det|>",
            "<|grounding|>",
            "<td>",
            "</td>",
            "<tr>",
            "</tr>",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (image + i, s.to_string())),
    )
    .filter(|(id, _)| *id < vocab_size)
    .collect();
    let mut vocab = serde_json::Map::new();
    for id in 0..vocab_size {
        let tok = specials
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| format!("<t{id}>"));
        vocab.insert(tok, serde_json::json!(id));
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(|(id, s)| {
            serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                               "normalized": false, "special": true})
        })
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "<\\|[a-z_/]+\\|>|\\n| ?[A-Za-z]+| ?[0-9]+|[^\\sA-Za-z0-9]| "},
                          "behavior": "Isolated", "invert": false},
        "post_processor": null, "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<t3>"}
    });
    let path = out_dir.join("tokenizer.json");
    let text =
        serde_json::to_string(&tok).map_err(|e| Error::request(format!("tokenizer JSON: {e}"), "report a bug"))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
