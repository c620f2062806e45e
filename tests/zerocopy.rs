//! Weights used in place from the memory map, and int8 folders written by `dsocr convert`:
//! the in-place BF16 and INT8 GEMMs against the packed ones on every kernel path, a bf16 layer that
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
    gemm_bf16_inplace_with, gemm_bf16_with, gemm_int8_inplace_with, gemm_int8_with, InplaceStrategy, KernelPath, Op,
    PackedBf16, PackedInt8, RowMajorBf16, RowMajorInt8,
};
use deepseek_ocr::nn::{Linear, Precision};
use deepseek_ocr::quant::int8::{quantize_row, QuantizedInt8};
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

/// (M, N, K) of the in-place GEMM tests: every M of the row-dot blocking below 64 (1, 2, 3,
/// 5, 17, 63) against odd K (1, 7, 33, 896 + 5) and odd N, plus model shapes and M ≥ 64.
fn inplace_shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for (i, m) in [1, 2, 3, 5, 17, 63].into_iter().enumerate() {
        for (j, k) in [1, 7, 33, 901].into_iter().enumerate() {
            // Odd N, cycling through the tails of the 4-row (and 16-column panel) blocking.
            let n = [1, 7, 19, 37][(i + j) % 4];
            v.push((m, n, k));
        }
    }
    v.extend([
        (1, 1280, 1280),
        (1, 1281, 896),
        (3, 33, 31),
        (5, 100, 67),
        (64, 31, 33),
        (70, 130, 97),
        (130, 520, 64),
    ]);
    v
}

/// The tiers of `op` this CPU has; each one, as a ceiling, runs exactly that tier.
fn tiers(op: Op) -> Vec<KernelPath> {
    let t = op.available_tiers();
    for p in op.tiers().iter().filter(|p| !t.contains(p)) {
        eprintln!("SKIPPED {op} on tier {p}: this CPU lacks it");
    }
    assert!(t.iter().all(|p| op.tier_under(*p) == *p));
    t
}

const STRATEGIES: [InplaceStrategy; 3] = [InplaceStrategy::Auto, InplaceStrategy::Dot, InplaceStrategy::Pack];

/// The in-place BF16 GEMM (row dot products and per-call packing) on every tier this CPU has
/// computes the products of the GEMM on a weight packed at load and of a plain f64 reference
/// on the same operands (x rounded to bf16 on the AMX and AVX512-BF16 tiers, kept f32 on the
/// widening ones): differences are only the order of the f32 sums, bound 1e-5 of
/// Σ|x||w| + |bias|.
#[test]
fn inplace_bf16_gemm_matches_the_packed_gemm_on_every_path() {
    let mut rng = Rng::new(3);
    for path in tiers(Op::Bf16Gemm) {
        let x_rounds = matches!(path, KernelPath::Amx | KernelPath::Avx512Bf16);
        let mut worst = [0f64; 3];
        for (case, &(m, n, k)) in inplace_shapes().iter().enumerate() {
            let w = rng.vec(n * k, 0.5);
            let x = rng.vec(m * k, 1.0);
            let bias = rng.vec(n, 1.0);
            let bias = (case % 3 != 2).then_some(&bias[..]);
            let packed = PackedBf16::pack_f32(&w, n, k).unwrap();
            let rm = RowMajorBf16::from_f32(&w, n, k).unwrap();
            let mut packed_out = vec![0f32; m * n];
            gemm_bf16_with(path, &x, m, &packed, bias, &mut packed_out).unwrap();
            // f64 reference on the operands the tier multiplies, and S = Σ|x||w| + |bias|.
            let bf = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
            let (reference, s): (Vec<f64>, Vec<f64>) = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    // The bias counts in S: the f32 result is rounded at its magnitude.
                    let b = bias.map_or(0.0, |b| b[c] as f64);
                    let (mut e, mut s) = (b, b.abs() + 1e-6);
                    for j in 0..k {
                        let xv = x[r * k + j];
                        let xr = if x_rounds { bf(xv) } else { xv as f64 };
                        e += xr * bf(w[c * k + j]);
                        s += (xv as f64 * w[c * k + j] as f64).abs();
                    }
                    (e, s)
                })
                .unzip();
            for (si, strategy) in STRATEGIES.into_iter().enumerate() {
                let mut got = vec![f32::NAN; m * n];
                gemm_bf16_inplace_with(path, strategy, &x, m, &rm, bias, &mut got).unwrap();
                for i in 0..m * n {
                    let vs_packed = (got[i] - packed_out[i]).abs() as f64 / s[i];
                    let vs_ref = (got[i] as f64 - reference[i]).abs() / s[i];
                    assert!(
                        vs_packed <= 1e-5 && vs_ref <= 1e-5,
                        "{path} {strategy:?} {m}×{n}×{k} [{}, {}]: {} vs packed {} / f64 {} (error/S {vs_packed:e} / {vs_ref:e})",
                        i / n,
                        i % n,
                        got[i],
                        packed_out[i],
                        reference[i]
                    );
                    worst[si] = worst[si].max(vs_ref);
                }
            }
        }
        eprintln!(
            "in-place bf16 {path}: max error/S vs f64 (auto, dot, pack) {:.1e} {:.1e} {:.1e}",
            worst[0], worst[1], worst[2]
        );
    }
    let rm = RowMajorBf16::from_f32(&[0.0; 12], 3, 4).unwrap();
    let mut out = [0f32; 6];
    let auto = InplaceStrategy::Auto;
    assert!(gemm_bf16_inplace_with(KernelPath::Portable, auto, &[0.0; 7], 2, &rm, None, &mut out).is_err());
    assert!(gemm_bf16_inplace_with(KernelPath::Portable, auto, &[0.0; 8], 2, &rm, Some(&[0.0; 2]), &mut out).is_err());
}

/// The in-place INT8 GEMM (row dot products and per-call packing) on every tier this CPU has
/// is bit-identical to the GEMM on the same weight packed at load (both sum the quantised
/// products exactly in i32 and rescale alike), and within 1e-5 of Σ|x||w| (plus the f32
/// rounding of the result) of the f64 value of those exact sums. The weight includes -128 (a converted file never holds it, but
/// in-place bytes are not checked) and the activation an all-zero row.
#[test]
fn inplace_int8_gemm_is_bit_identical_to_the_packed_gemm_on_every_path() {
    let mut rng = Rng::new(5);
    for path in tiers(Op::Int8Gemm) {
        for (case, &(m, n, k)) in inplace_shapes().iter().enumerate() {
            let mut x = rng.vec(m * k, 2.0);
            if m > 2 {
                x[k..2 * k].fill(0.0);
            }
            let w = rng.vec(n * k, 0.3);
            let mut q = QuantizedInt8::quantize(&w, n, k).unwrap();
            for v in q.values.iter_mut().step_by(37) {
                *v = -128;
            }
            let bias = rng.vec(n, 1.0);
            let bias = (case % 3 != 1).then_some(&bias[..]);
            let packed = PackedInt8::pack(&q);
            let rm = RowMajorInt8::from_parts(q.values.clone(), q.scales.clone(), n, k).unwrap();
            let mut want = vec![0f32; m * n];
            gemm_int8_with(path, &x, m, &packed, bias, &mut want).unwrap();
            let mut xq = vec![0i8; k];
            for r in 0..m {
                let sx = quantize_row(&x[r * k..(r + 1) * k], &mut xq).1 as f64;
                for c in 0..n {
                    let wr = &q.values[c * k..(c + 1) * k];
                    let isum: i64 = xq.iter().zip(wr).map(|(a, b)| *a as i64 * *b as i64).sum();
                    let s: f64 = xq.iter().zip(wr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                    let sw = q.scales[c] as f64;
                    let exact = isum as f64 * sx * sw + bias.map_or(0.0, |b| b[c] as f64);
                    let got = want[r * n + c] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * (s * sx * sw + 1e-3) + 1e-6 * exact.abs(),
                        "{path} packed {m}×{n}×{k} [{r}, {c}]: {got} vs {exact}"
                    );
                }
            }
            for strategy in STRATEGIES {
                let mut got = vec![f32::NAN; m * n];
                gemm_int8_inplace_with(path, strategy, &x, m, &rm, bias, &mut got).unwrap();
                for i in 0..m * n {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "{path} {strategy:?} {m}×{n}×{k} [{}, {}]: {} vs packed {}",
                        i / n,
                        i % n,
                        got[i],
                        want[i]
                    );
                }
            }
        }
        eprintln!("in-place int8 {path}: bit-identical to the packed GEMM (auto, dot, pack)");
    }
    let rm = RowMajorInt8::from_parts(vec![0; 12], vec![1.0; 3], 3, 4).unwrap();
    let mut out = [0f32; 6];
    let auto = InplaceStrategy::Auto;
    assert!(gemm_int8_inplace_with(KernelPath::Portable, auto, &[0.0; 7], 2, &rm, None, &mut out).is_err());
    assert!(gemm_int8_inplace_with(KernelPath::Portable, auto, &[0.0; 8], 2, &rm, Some(&[0.0; 2]), &mut out).is_err());
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
