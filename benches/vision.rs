//! Seconds per page of the full-size DeepEncoder (SAM-ViT-B + CLIP-L + projector) on the CPU,
//! per resolution mode and weight precision, with a per-stage split for the Base global view.
//!
//! The weights are random with the scales of the golden models (speed does not depend on the
//! values), built in memory from the checkpoint layout: no 6.7 GB file is read.
//!
//! `cargo bench --bench vision [-- FILTER...]`: a row runs when every filter word is part of
//! its name (`f32`, `bf16`, `int8`, `tiny`, `base`, `gundam`, `stages`). Each figure is the
//! median of `DSOCR_BENCH_RUNS` (default 3) calls after a warm-up call.

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
    let (mean, std) = deepseek_ocr::model::random::init_scale(init);
    (mean as f64, std as f64)
}

/// Random f32 tensors for every vision tensor of the checkpoint (the decoder is skipped).
fn vision_weights(cfg: &ModelConfig) -> Res<HashMap<String, Tensor>> {
    let keep = [
        "model.sam_model.",
        "model.vision_model.",
        "model.projector.",
        "model.image_newline",
        "model.view_seperator",
    ];
    let mut map = HashMap::new();
    for spec in checkpoint_tensors(cfg) {
        if keep.iter().any(|p| spec.name.starts_with(p)) {
            let (mean, std) = init_scale(spec.init);
            map.insert(
                spec.name.clone(),
                Tensor::randn(mean as f32, std as f32, spec.shape, &Device::Cpu)?,
            );
        }
    }
    Ok(map)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the zero-initialised struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Median wall seconds and median CPU seconds of `runs` calls of `f` after one warm-up call.
///
/// The CPU time is reported too because the build machines are shared: when other jobs
/// take the cores, wall time grows but CPU time stays close to what the page costs, and
/// `cpu / threads` is what a quiet machine would show.
fn time(runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<(f64, f64)> {
    f()?;
    let (mut wall, mut cpu) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_seconds());
        f()?;
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
    }
    wall.sort_by(|a, b| a.total_cmp(b));
    cpu.sort_by(|a, b| a.total_cmp(b));
    Ok((wall[runs / 2], cpu[runs / 2]))
}

/// Pixels of `n` views of side `s`, in the normalised range.
fn views(n: usize, s: usize) -> Res<Tensor> {
    Ok(Tensor::rand(-1f32, 1f32, (n, 3, s, s), &Device::Cpu)?)
}

/// The views of one page in a resolution mode.
struct PageMode {
    name: &'static str,
    /// Side of the global view.
    global: usize,
    /// Local tiles and their side (0 tiles: no crop).
    tiles: usize,
    tile_side: usize,
    /// Tile grid `(w, h)`.
    grid: (usize, usize),
}

const MODES: [PageMode; 3] = [
    PageMode {
        name: "tiny",
        global: 512,
        tiles: 0,
        tile_side: 0,
        grid: (1, 1),
    },
    PageMode {
        name: "base",
        global: 1024,
        tiles: 0,
        tile_side: 0,
        grid: (1, 1),
    },
    PageMode {
        name: "gundam",
        global: 1024,
        tiles: 6,
        tile_side: 640,
        grid: (2, 3),
    },
];

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
    let runs = std::env::var("DSOCR_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        let wanted: Vec<_> = MODES
            .iter()
            .filter(|m| selected(&format!("{precision} {}", m.name), &filters))
            .collect();
        if !wanted.is_empty() {
            let enc = DeepEncoder::load_with(vb.clone(), &cfg, precision)?;
            for mode in wanted {
                let global = views(1, mode.global)?;
                let tiles = if mode.tiles > 0 {
                    Some(views(mode.tiles, mode.tile_side)?)
                } else {
                    None
                };
                let (wall, cpu) = time(runs, || {
                    enc.encode(&global, tiles.as_ref(), mode.grid, &mut Taps::off())?;
                    Ok(())
                })?;
                println!(
                    "vision {precision:>4} {:<6} {wall:8.3} s/page (cpu {cpu:.3} s)",
                    mode.name
                );
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
    let clip = Clip::load(
        m.pp("vision_model"),
        cfg.clip().ok_or("not a DeepSeek-OCR config")?,
        precision,
    )?;
    let projector = Projector::load(m.pp("projector"), &cfg.projector, precision)?;
    let x = views(1, 1024)?;
    let feats = sam.forward(&x, &mut Taps::off())?;
    let tokens = clip.forward(&feats, &mut Taps::off())?;
    let (t_sam, c_sam) = time(runs, || {
        sam.forward(&x, &mut Taps::off())?;
        Ok(())
    })?;
    let (t_clip, c_clip) = time(runs, || {
        clip.forward(&feats, &mut Taps::off())?;
        Ok(())
    })?;
    let (t_proj, c_proj) = time(runs, || {
        projector.forward(&tokens, &feats)?;
        Ok(())
    })?;
    println!(
        "stages {precision:>4} base   sam {t_sam:.3} s (cpu {c_sam:.3}), clip {t_clip:.3} s (cpu {c_clip:.3}), \
         projector {t_proj:.4} s (cpu {c_proj:.4})"
    );
    Ok(())
}
