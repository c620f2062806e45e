//! Seconds per page of the full-size DeepEncoder (SAM-ViT-B + CLIP-L + projector) on the CPU,
//! per resolution mode and weight precision, with a per-stage split for the Base global view.
//!
//! The weights are random with the scales of the golden models (speed does not depend on the
//! values), built in memory from the checkpoint layout: no 6.7 GB file is read.
//!
//! `cargo bench --bench vision [-- FILTER...]`: a row runs when every filter word is part of
//! its name (`f32`, `bf16`, `int8`, `tiny`, `base`, `gundam`, `stages`). Each figure is the
//! median of a few calls after a warm-up call.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use deepseek_ocr::model::layout::{checkpoint_tensors, Init};
use deepseek_ocr::model::ModelConfig;
use deepseek_ocr::nn::precision::Precision;
use deepseek_ocr::nn::{kernels, Taps};
use deepseek_ocr::vision::clip::Clip;
use deepseek_ocr::vision::encoder::DeepEncoder;
use deepseek_ocr::vision::projector::Projector;
use deepseek_ocr::vision::sam::Sam;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Mean and standard deviation of a tensor kind, as the random checkpoints use.
fn init_scale(init: Init) -> (f64, f64) {
    match init {
        Init::Weight { fan_in } => (0.0, 1.0 / (fan_in.max(1) as f64).sqrt()),
        Init::Bias => (0.0, 0.02),
        Init::NormWeight => (1.0, 0.1),
        Init::NormBias => (0.0, 0.05),
        Init::Embedding => (0.0, 1.0),
        Init::Position => (0.0, 0.5),
        Init::RelPos => (0.0, 0.1),
    }
}

/// Random f32 tensors for every vision tensor of the checkpoint (the decoder is skipped).
fn vision_weights(cfg: &ModelConfig) -> Res<HashMap<String, Tensor>> {
    let keep = ["model.sam_model.", "model.vision_model.", "model.projector.", "model.image_newline", "model.view_seperator"];
    let mut map = HashMap::new();
    for spec in checkpoint_tensors(cfg) {
        if keep.iter().any(|p| spec.name.starts_with(p)) {
            let (mean, std) = init_scale(spec.init);
            map.insert(spec.name.clone(), Tensor::randn(mean as f32, std as f32, spec.shape, &Device::Cpu)?);
        }
    }
    Ok(map)
}

/// Median seconds of `runs` calls of `f` after one warm-up call.
fn time(runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(samples[samples.len() / 2])
}

/// Pixels of `n` views of side `s`, in the normalised range.
fn views(n: usize, s: usize) -> Res<Tensor> {
    Ok(Tensor::rand(-1f32, 1f32, (n, 3, s, s), &Device::Cpu)?)
}

fn selected(name: &str, filters: &[String]) -> bool {
    filters.iter().all(|f| name.contains(f.as_str()))
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; every other argument is a filter word.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let cfg = ModelConfig::deepseek_ocr();
    println!("{}", kernels::describe());
    let weights = vision_weights(&cfg)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let runs = 3;
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        // (name, global side, tiles (count, side) and grid)
        let modes: [(&str, usize, Option<(usize, usize)>, (usize, usize)); 3] =
            [("tiny", 512, None, (1, 1)), ("base", 1024, None, (1, 1)), ("gundam", 1024, Some((6, 640)), (2, 3))];
        let wanted: Vec<_> = modes.iter().filter(|m| selected(&format!("{precision} {}", m.0), &filters)).collect();
        if !wanted.is_empty() {
            let enc = DeepEncoder::load_with(vb.clone(), &cfg, precision)?;
            for (name, side, tiles, grid) in wanted {
                let global = views(1, *side)?;
                let tiles = match tiles {
                    Some((n, s)) => Some(views(*n, *s)?),
                    None => None,
                };
                let secs = time(runs, || {
                    enc.encode(&global, tiles.as_ref(), *grid, &mut Taps::off())?;
                    Ok(())
                })?;
                println!("vision {precision:>4} {name:<6} {secs:8.3} s/page");
            }
        }
        if selected(&format!("{precision} stages"), &filters) {
            stages(&vb, &cfg, precision, runs)?;
        }
    }
    Ok(())
}

/// SAM, CLIP and projector timed apart on one Base (1024²) global view.
fn stages(vb: &VarBuilder, cfg: &ModelConfig, precision: Precision, runs: usize) -> Res<()> {
    let m = vb.pp("model");
    let sam = Sam::load(m.pp("sam_model"), &cfg.sam, precision)?;
    let clip = Clip::load(m.pp("vision_model"), &cfg.clip, precision)?;
    let projector = Projector::load(m.pp("projector"), &cfg.projector, precision)?;
    let x = views(1, 1024)?;
    let feats = sam.forward(&x, &mut Taps::off())?;
    let tokens = clip.forward(&feats, &mut Taps::off())?;
    let t_sam = time(runs, || {
        sam.forward(&x, &mut Taps::off())?;
        Ok(())
    })?;
    let t_clip = time(runs, || {
        clip.forward(&feats, &mut Taps::off())?;
        Ok(())
    })?;
    let t_proj = time(runs, || {
        projector.forward(&tokens, &feats)?;
        Ok(())
    })?;
    println!("stages {precision:>4} base   sam {t_sam:.3} s, clip {t_clip:.3} s, projector {t_proj:.4} s");
    Ok(())
}
