//! Model-folder loading: the checkpoint layout against the real index and the mini model,
//! random checkpoints, and every kind of broken model folder.

mod common;

use std::path::Path;

use deepseek_ocr::model::layout::checkpoint_tensors;
use deepseek_ocr::model::random::write_random_checkpoint;
use deepseek_ocr::{ModelConfig, Weights};

#[test]
fn layout_matches_real_checkpoint_index() {
    let shared = shared_or_skip!();
    let tsv = std::fs::read_to_string(shared.join("spec/weights.tsv")).unwrap();
    let mut real: Vec<(String, Vec<usize>)> = tsv
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap().to_string();
            let shape = f.next().unwrap().trim_matches(|c| c == '[' || c == ']');
            (name, shape.split(',').map(|x| x.parse().unwrap()).collect())
        })
        .collect();
    let mut ours: Vec<(String, Vec<usize>)> = checkpoint_tensors(&ModelConfig::deepseek_ocr())
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    real.sort();
    ours.sort();
    assert_eq!(ours.len(), real.len());
    assert_eq!(ours, real);
}

#[test]
fn mini_model_validates() {
    let shared = shared_or_skip!();
    let dir = shared.join("golden/mini");
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let w = Weights::from_model_dir(&dir).unwrap();
    w.validate(&cfg).unwrap();
    assert_eq!(checkpoint_tensors(&cfg).len(), w.names().count());
}

#[test]
fn random_checkpoint_roundtrip() {
    let shared = shared_or_skip!();
    let text = std::fs::read_to_string(shared.join("golden/mini/config.json")).unwrap();
    let cfg = ModelConfig::from_file(&shared.join("golden/mini/config.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(&cfg, &text, dir.path(), 3).unwrap();
    let w = Weights::from_model_dir(dir.path()).unwrap();
    w.validate(&cfg).unwrap();
    let t = w
        .get(
            "model.norm.weight",
            &[cfg.lm.hidden_size],
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
    let mean = t.mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((mean - 1.0).abs() < 0.1, "norm weights centred on 1, got {mean}");
}

fn copy_mini(dst: &Path, shared: &Path) {
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(shared.join("golden/mini").join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn missing_config_and_weights_are_clear_errors() {
    let shared = shared_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    // The hint is kept apart from the message.
    let with_hint = |e: deepseek_ocr::Error| format!("{e}\nhint: {}", e.hint());
    let e = with_hint(ModelConfig::from_file(&dir.path().join("config.json")).unwrap_err());
    assert!(e.contains("config.json") && e.contains("hint"), "{e}");
    let e = with_hint(Weights::from_model_dir(dir.path()).err().unwrap());
    assert!(e.contains("no .safetensors") && e.contains("hint"), "{e}");
    copy_mini(dir.path(), &shared);
    assert!(Weights::from_model_dir(dir.path()).is_ok());
}

#[test]
fn truncated_safetensors_is_a_clear_error() {
    let shared = shared_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shared.join("golden/mini/model.safetensors")).unwrap();
    for cut in [0usize, 5, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.path().join("model.safetensors"), &bytes[..cut]).unwrap();
        let e = Weights::from_model_dir(dir.path())
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"))
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("truncated or corrupt"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn config_disagreeing_with_weights_names_the_tensor() {
    let shared = shared_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    copy_mini(dir.path(), &shared);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    v["language_config"]["intermediate_size"] = serde_json::json!(640);
    let cfg = ModelConfig::from_value(&v, &dir.path().join("config.json")).unwrap();
    let w = Weights::from_model_dir(dir.path()).unwrap();
    let e = w.validate(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[640, 256]"),
        "{e}"
    );
    // A single lookup with a wrong shape names the tensor, both shapes and the file.
    let e = w
        .get(
            "model.norm.weight",
            &[7],
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.norm.weight") && e.contains("[7]") && e.contains("model.safetensors"),
        "{e}"
    );
}
