//! Weights used in place from the memory map, and int8 folders written by `dsocr convert`:
//! the in-place BF16 GEMM against the packed one on every kernel path, a bf16 layer that
//! keeps no copy and pages in only what it touches, and a converted folder that gives exactly
//! the ids of `--precision int8` on its source.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use deepseek_ocr::generate::{GenerateOptions, NgramGuard};
use deepseek_ocr::input::image::load_image;
use deepseek_ocr::model::Weights;
use deepseek_ocr::nn::kernels::{
    gemm_bf16_inplace_with, gemm_bf16_with, InplaceStrategy, KernelPath, PackedBf16, RowMajorBf16,
};
use deepseek_ocr::nn::{Linear, Precision};
use deepseek_ocr::{Engine, EngineOptions, Mode, RunOptions, Task};

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * amp).collect()
    }
}

/// The in-place GEMM (row dot products and per-call packing) computes the same products as
/// the GEMM on a weight packed at load, on every path this CPU has: differences are only the
/// order of the f32 sums (bound 1e-5 of Σ|x||w|).
#[test]
fn inplace_bf16_gemm_matches_the_packed_gemm_on_every_path() {
    let shapes = [
        (1, 1, 1),
        (1, 17, 3),
        (3, 33, 31),
        (5, 100, 67),
        (1, 1280, 1280),
        (17, 31, 33),
        (33, 65, 130),
        (70, 130, 97),
        (130, 520, 64),
        (300, 200, 300),
    ];
    let mut rng = Rng::new(3);
    for path in KernelPath::ALL.into_iter().filter(|p| p.is_available()) {
        for &(m, n, k) in &shapes {
            let w = rng.vec(n * k, 0.5);
            let x = rng.vec(m * k, 1.0);
            let bias = rng.vec(n, 1.0);
            let packed = PackedBf16::pack_f32(&w, n, k).unwrap();
            let rm = RowMajorBf16::from_f32(&w, n, k).unwrap();
            let mut want = vec![0f32; m * n];
            gemm_bf16_with(path, &x, m, &packed, Some(&bias), &mut want).unwrap();
            let s: Vec<f32> = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    (0..k).map(|j| (x[r * k + j] * w[c * k + j]).abs()).sum::<f32>() + 1e-6
                })
                .collect();
            for strategy in [InplaceStrategy::Auto, InplaceStrategy::Dot, InplaceStrategy::Pack] {
                let mut got = vec![f32::NAN; m * n];
                gemm_bf16_inplace_with(path, strategy, &x, m, &rm, Some(&bias), &mut got).unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .zip(&s)
                    .map(|((g, w), s)| (g - w).abs() / s)
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-5, "{path} {strategy:?} {m}×{n}×{k}: error/S {worst}");
            }
        }
    }
    let rm = RowMajorBf16::from_f32(&[0.0; 12], 3, 4).unwrap();
    let mut out = [0f32; 6];
    let auto = InplaceStrategy::Auto;
    assert!(gemm_bf16_inplace_with(KernelPath::Portable, auto, &[0.0; 7], 2, &rm, None, &mut out).is_err());
    assert!(gemm_bf16_inplace_with(KernelPath::Portable, auto, &[0.0; 8], 2, &rm, Some(&[0.0; 2]), &mut out).is_err());
}

/// Writes a safetensors file with the given tensors.
fn write_safetensors(path: &Path, tensors: &[(&str, &Tensor)]) {
    let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), (*t).clone())).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn rss_file_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssFile:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// A bf16 layer of a memory-mapped checkpoint keeps no copy: loading reads none of its
/// pages (file-backed RSS does not grow), the first product reads them, and the result is
/// the f32 layer's within the bf16 bound. An f32 checkpoint is converted (not in place).
#[test]
fn bf16_layer_computes_from_the_memory_map_and_pages_in_only_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let (n, k) = (4096, 4096); // 32 MiB of bf16
    let mut rng = Rng::new(9);
    let dev = Device::Cpu;
    let w32 = Tensor::from_vec(rng.vec(n * k, 0.05), (n, k), &dev).unwrap();
    let b32 = Tensor::from_vec(rng.vec(n, 0.5), n, &dev).unwrap();
    let w16 = w32.to_dtype(DType::BF16).unwrap();
    let file = dir.path().join("model.safetensors");
    write_safetensors(&file, &[("l.weight", &w16), ("l.bias", &b32)]);
    let weights = Weights::from_files(std::slice::from_ref(&file)).unwrap();
    let vb = weights.var_builder(DType::F32, &dev);
    let before = rss_file_bytes();
    let lin = Linear::load_with(vb.pp("l"), k, n, true, Precision::Bf16).unwrap();
    let after_load = rss_file_bytes();
    assert!(lin.weight_in_place());
    assert!(
        after_load.saturating_sub(before) < 4 << 20,
        "loading paged in {} bytes",
        after_load - before
    );
    let x = Tensor::from_vec(rng.vec(k, 1.0), (1, k), &dev).unwrap();
    let got = lin.forward(&x).unwrap();
    let after_use = rss_file_bytes();
    assert!(
        after_use.saturating_sub(after_load) >= (n * k * 2) as u64 * 9 / 10,
        "a product paged in only {} bytes",
        after_use - after_load
    );
    let want = x
        .matmul(&w16.to_dtype(DType::F32).unwrap().t().unwrap())
        .unwrap()
        .broadcast_add(&b32)
        .unwrap();
    let err = (got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err <= 1e-2 * scale, "error {err} of {scale}");
    // A VarBuilder that is not backed by mapped weights, and an f32 file, give owned copies.
    let map: HashMap<String, Tensor> = [("l.weight".to_string(), w32.clone())].into();
    let owned = Linear::load_with(
        VarBuilder::from_tensors(map, DType::F32, &dev).pp("l"),
        k,
        n,
        false,
        Precision::Bf16,
    )
    .unwrap();
    assert!(!owned.weight_in_place());
    let f32_file = dir.path().join("f32.safetensors");
    write_safetensors(&f32_file, &[("l.weight", &w32)]);
    let w = Weights::from_files(&[f32_file]).unwrap();
    let lin = Linear::load_with(w.var_builder(DType::F32, &dev).pp("l"), k, n, false, Precision::Bf16).unwrap();
    assert!(!lin.weight_in_place());
}

fn tiny_run(dir: &Path, precision: Precision, image: &image::RgbImage) -> Vec<u32> {
    let engine = Engine::load(
        dir,
        EngineOptions {
            precision,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let opts = RunOptions {
        mode: Mode::TINY,
        task: Task::Markdown,
        generate: GenerateOptions {
            max_new_tokens: 16,
            ignore_eos: true,
            ngram: NgramGuard::Off,
            ..GenerateOptions::default()
        },
    };
    engine.run_with(image, &opts, None).unwrap().token_ids
}

/// `dsocr convert` (the library call) writes a folder that loads as int8 without
/// quantising and gives exactly the ids of int8-at-load on the source; the output is
/// byte-for-byte reproducible; converting it again fails with a hint; f32 still runs.
#[test]
fn converted_int8_folder_gives_the_ids_of_int8_at_load() {
    use deepseek_ocr::quant::convert::{convert_int8, META_SCHEME, SCHEME};
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let report = convert_int8(&mini, &a).unwrap();
    assert!(report.quantized > 0 && report.copied > 0);
    assert!(report.written_bytes < report.source_bytes);
    for f in ["config.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(mini.join(f)).unwrap(),
            "{f}"
        );
    }
    convert_int8(&mini, &b).unwrap();
    assert!(
        std::fs::read(a.join("model.safetensors")).unwrap() == std::fs::read(b.join("model.safetensors")).unwrap(),
        "two conversions differ"
    );
    let w = Weights::from_model_dir(&a).unwrap();
    assert_eq!(w.quantization().as_deref(), Some(SCHEME));
    assert_eq!(w.metadata().get(META_SCHEME).map(String::as_str), Some(SCHEME));
    let e = w.entry("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert!(e.int8);
    assert!(w.entry("model.layers.0.self_attn.q_proj.weight_scale").is_some());

    let again = convert_int8(&a, &tmp.path().join("c")).unwrap_err().to_string();
    assert!(again.contains("already converted"), "{again}");

    let image = load_image(&mini.join("portrait_tiny/input.png"), &Default::default()).unwrap();
    let want = tiny_run(&mini, Precision::Int8, &image);
    let got = tiny_run(&a, Precision::Int8, &image);
    assert_eq!(got, want, "converted folder vs int8 at load");
    assert_eq!(got.len(), 16);
    // Lossy but runnable in f32 (it warns).
    assert_eq!(tiny_run(&a, Precision::F32, &image).len(), 16);
}
