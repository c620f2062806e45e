//! DeepSeek-OCR 2's checkpoint layout against the real checkpoint's tensor list
//! (`spec/weights-ocr2.tsv`) and the mini model; a random OCR-2 checkpoint round trip.

mod common;

use deepseek_ocr::model::layout::checkpoint_tensors;
use deepseek_ocr::model::random::write_random_checkpoint;
use deepseek_ocr::{ModelConfig, Weights};

#[test]
fn layout_matches_the_real_ocr2_tensor_list() {
    let shared = shared_or_skip!();
    let tsv = std::fs::read_to_string(shared.join("spec/weights-ocr2.tsv")).unwrap();
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
    let mut ours: Vec<(String, Vec<usize>)> = checkpoint_tensors(&ModelConfig::deepseek_ocr2())
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    real.sort();
    ours.sort();
    assert_eq!(ours.len(), 2707);
    assert_eq!(ours, real);
}

#[test]
fn mini_ocr2_model_validates_with_every_tensor_used() {
    let shared = shared_or_skip!();
    let dir = shared.join("golden/mini-ocr2");
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let w = Weights::from_model_dir(&dir).unwrap();
    w.validate(&cfg).unwrap();
    assert_eq!(checkpoint_tensors(&cfg).len(), w.names().count());
}

#[test]
fn random_ocr2_checkpoint_roundtrip() {
    let shared = shared_or_skip!();
    let path = shared.join("golden/mini-ocr2/config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = ModelConfig::from_file(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(&cfg, &text, dir.path(), 5).unwrap();
    let w = Weights::from_model_dir(dir.path()).unwrap();
    w.validate(&cfg).unwrap();
    assert_eq!(
        ModelConfig::from_file(&dir.path().join("config.json"))
            .unwrap()
            .variant(),
        deepseek_ocr::ModelVariant::DeepSeekOcr2
    );
}
