//! Parity of the DeepEncoder (SAM, CLIP, projector, image-token layout) against the goldens
//! of the official PyTorch code on the mini random-weight model, for every golden case.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, max_abs_diff, Case};
use deepseek_ocr::model::ModelConfig;
use deepseek_ocr::nn::precision::Precision;
use deepseek_ocr::nn::Taps;
use deepseek_ocr::vision::encoder::DeepEncoder;
use deepseek_ocr::vision::normalize::views_to_tensor;
use deepseek_ocr::Weights;

/// Every golden name the encoder's taps can produce, for any case and block/layer index.
fn is_encoder_tensor(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "sam_global",
        "clip_global",
        "proj_global",
        "sam_local0",
        "clip_local0",
        "proj_local",
        "image_embeds",
        "dbg_sam_patch_embed",
        "dbg_sam_patch_pos",
        "dbg_sam_neck",
        "dbg_sam_net2",
        "dbg_clip_embeddings",
        "dbg_clip_pre_layrnorm",
    ];
    EXACT.contains(&name)
        || name.starts_with("sam_pos_embed_interp_")
        || name.starts_with("clip_pos_embed_interp_")
        || name.starts_with("dbg_sam_block")
        || name.starts_with("dbg_clip_layer")
}

fn load_encoder(mini: &Path) -> DeepEncoder {
    let cfg = ModelConfig::from_file(&mini.join("config.json")).expect("mini config parses");
    let weights = Weights::from_model_dir(mini).expect("mini weights load");
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    DeepEncoder::load(vb, &cfg).expect("encoder loads")
}

fn load_encoder_with(mini: &Path, precision: Precision) -> DeepEncoder {
    let cfg = ModelConfig::from_file(&mini.join("config.json")).expect("mini config parses");
    let weights = Weights::from_model_dir(mini).expect("mini weights load");
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    DeepEncoder::load_with(vb, &cfg, precision).expect("encoder loads")
}

/// The global view and the local tiles (or `None`) of a case, from its PNGs.
fn case_views(case: &Case) -> (Tensor, Option<Tensor>) {
    let dir = &case.dir;
    let global_img = read_png(&dir.join("view_global.png"));
    let global = views_to_tensor(&[&global_img], &Device::Cpu).unwrap();
    let mut crop_paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("view_crop_"))
        })
        .collect();
    crop_paths.sort();
    let crops: Vec<image::RgbImage> = crop_paths.iter().map(|p| read_png(p)).collect();
    assert_eq!(
        crops.len(),
        case.json["preprocessing"]["n_local_crops"].as_u64().unwrap() as usize
    );
    let tiles = if crops.is_empty() {
        None
    } else {
        Some(views_to_tensor(&crops.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap())
    };
    (global, tiles)
}

/// `max|a − g| / max|g|`: the error relative to the tensor's scale, the measure for the
/// reduced precisions (an elementwise absolute tolerance made for f32 does not apply).
fn relative_error(actual: &Tensor, golden: &Tensor) -> f32 {
    let scale = golden
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(scale > 0.0, "golden tensor is all zeros");
    max_abs_diff(actual, golden) / scale
}

/// Encodes every case in `precision` and checks `image_embeds` (and the SAM / CLIP outputs of
/// the global view) against the f32 goldens within `bound` relative error.
fn check_precision(precision: Precision, bound: f32) {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let enc = load_encoder_with(&mini, precision);
    for dir in common::golden_cases(&shared) {
        let case = Case::load(&dir);
        let (global, tiles) = case_views(&case);
        let mut taps = Taps::recording();
        let seq = enc
            .encode(&global, tiles.as_ref(), tile_grid(&case), &mut taps)
            .unwrap();
        for name in ["sam_global", "clip_global", "proj_global"] {
            let actual = taps.get(name).unwrap_or_else(|| panic!("{name} not recorded"));
            let err = relative_error(actual, case.tensor(name));
            eprintln!("{} {precision}: {name}: relative error {err:e}", case.name());
            assert!(
                err <= bound,
                "{} {precision}: {name}: relative error {err:e} > {bound:e}",
                case.name()
            );
        }
        let err = relative_error(&seq, case.tensor("image_embeds"));
        eprintln!(
            "{} {precision}: image_embeds: relative error {err:e} (bound {bound:e})",
            case.name()
        );
        assert!(
            err <= bound,
            "{} {precision}: image_embeds: relative error {err:e} > {bound:e}",
            case.name()
        );
    }
}

fn read_png(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// The case's tile grid `(w, h)` from golden.json.
fn tile_grid(case: &Case) -> (usize, usize) {
    let g = &case.json["preprocessing"]["tile_grid"];
    let w = g["width_tiles"].as_u64().expect("width_tiles") as usize;
    let h = g["height_tiles"].as_u64().expect("height_tiles") as usize;
    (w, h)
}

/// Compares every encoder golden of `case` with the recorded taps; returns how many were checked.
fn compare_all(case: &Case, taps: &Taps) -> usize {
    let mut names: Vec<&String> = case.tensors.keys().filter(|n| is_encoder_tensor(n)).collect();
    names.sort();
    for name in &names {
        let actual = taps
            .get(name)
            .unwrap_or_else(|| panic!("{}: the encoder did not record {name}", case.name()));
        assert_close(case, name, actual);
    }
    names.len()
}

#[test]
fn encoder_matches_goldens_for_every_case() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let enc = load_encoder(&mini);
    for dir in common::golden_cases(&shared) {
        let case = Case::load(&dir);
        let global_img = read_png(&dir.join("view_global.png"));
        let global = views_to_tensor(&[&global_img], &Device::Cpu).unwrap();
        let mut crop_paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("view_crop_"))
            })
            .collect();
        crop_paths.sort();
        let crops: Vec<image::RgbImage> = crop_paths.iter().map(|p| read_png(p)).collect();
        let grid = tile_grid(&case);
        assert_eq!(
            crops.len(),
            case.json["preprocessing"]["n_local_crops"].as_u64().unwrap() as usize
        );
        let tiles = if crops.is_empty() {
            None
        } else {
            Some(views_to_tensor(&crops.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap())
        };
        let mut taps = Taps::recording();
        let seq = enc.encode(&global, tiles.as_ref(), grid, &mut taps).unwrap();
        let n_tokens = case.json["preprocessing"]["num_image_tokens"].as_u64().unwrap() as usize;
        assert_eq!(seq.dim(0).unwrap(), n_tokens, "{}: image token count", case.name());
        let checked = compare_all(&case, &taps);
        // At least SAM, CLIP, projector and the final sequence of the global view.
        assert!(checked >= 4, "{}: only {checked} encoder goldens compared", case.name());
        assert_close(&case, "image_embeds", &seq);
    }
}

/// The tiny case again, fed with the golden `pixel_values_global` instead of the PNG.
#[test]
fn tiny_from_golden_pixels() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let enc = load_encoder(&mini);
    let case = Case::load(&mini.join("portrait_tiny"));
    let pixels = case.tensor("pixel_values_global");
    // The PNG path must give bit-identical model inputs.
    let png = views_to_tensor(&[&read_png(&case.dir.join("view_global.png"))], &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&png, pixels), 0.0);
    let mut taps = Taps::recording();
    let seq = enc.encode(pixels, None, (1, 1), &mut taps).unwrap();
    assert_close(&case, "image_embeds", &seq);
    assert!(compare_all(&case, &taps) >= 20);
}

/// Wrong tile counts are reported as errors, not panics.
#[test]
fn bad_tile_count_is_an_error() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let enc = load_encoder(&mini);
    let global = Tensor::zeros((1, 3, 512, 512), DType::F32, &Device::Cpu).unwrap();
    let tiles = Tensor::zeros((2, 3, 640, 640), DType::F32, &Device::Cpu).unwrap();
    let mut taps = Taps::off();
    assert!(enc.encode(&global, Some(&tiles), (3, 1), &mut taps).is_err());
}

/// Bf16 weights (packed GEMM kernels), f32 activations and attention.
///
/// Measured on the five cases: 2.4e-3 .. 3.9e-3 (one bf16 rounding of a weight is up to
/// 2^-9 ≈ 2e-3 relative; ~30 layers add errors that mostly cancel). The bound leaves 2.5× room
/// while a real defect (a lost bias, a wrong head order) gives errors of order 1.
#[test]
fn bf16_stays_close_to_the_f32_goldens() {
    check_precision(Precision::Bf16, 1e-2);
}

/// Int8 weights with per-channel scales and per-row quantised activations.
///
/// Measured on the five cases: 2.0e-2 .. 3.3e-2 (8-bit steps of ~0.4% of a row's range on both
/// weights and activations, compounded over the layers); bound 6e-2 leaves about 2× room.
#[test]
fn int8_stays_close_to_the_f32_goldens() {
    check_precision(Precision::Int8, 6e-2);
}
