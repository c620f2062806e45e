//! The CPU kernels against plain f64 references, on every tier of every op this CPU has
//! (each forced in turn; tiers the CPU lacks, e.g. AMX off Intel, are skipped and named).
//!
//! Accuracy bounds (stated per element, with `S = Σ_k |x_k|·|w_k|`):
//! * BF16 GEMM vs the exact product of the *bf16-rounded* operands: `1e-5·S` (f32 sums only);
//!   vs the exact f32 product: `1e-2·S` (two bf16 roundings, ≤ 2⁻⁸ relative each).
//! * INT8 GEMM vs the exact integer product of the quantised operands: `1e-5·S'` (S' the
//!   same sum over dequantised values); vs the exact f32 product: the analytic quantisation
//!   bound `sw/2·Σ|x| + sx/2·Σ|w| + K·sx·sw/4` (+1e-5·S).
//! * Attention vs an f64 softmax reference: 1e-4 absolute on outputs of size ~1.

use deepseek_ocr::nn::kernels::{
    self, attention_with, gemm_bf16_with, gemm_int8_with, AttnBias, AttnShape, KernelPath, Op, PackedBf16, PackedInt8,
};
use deepseek_ocr::quant::int8::{quantize_row, QuantizedInt8};

/// Deterministic xorshift generator (no dependence on a crate's sequence).
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

/// The tiers of `op` this CPU can run; prints which ones are skipped.
fn paths(op: Op) -> Vec<KernelPath> {
    op.tiers()
        .iter()
        .copied()
        .filter(|p| {
            let ok = p.is_available();
            if !ok {
                eprintln!("SKIPPED {op} on tier {p}: this CPU lacks it");
            }
            // Each tier, forced as the ceiling, runs exactly that tier.
            assert!(!ok || op.tier_under(*p) == *p);
            ok
        })
        .collect()
}

fn bf16_round(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

/// (M, N, K) cases: tiny, odd, tails of every blocking, M = 1, and one model-size GEMV.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 17, 3),
    (2, 5, 2),
    (3, 33, 31),
    (5, 100, 67),
    (1, 1280, 1280),
    (1, 130, 896),
    (15, 47, 65),
    (16, 32, 32),
    (17, 31, 33),
    (33, 65, 130),
    (64, 96, 256),
    (70, 130, 97),
    (100, 200, 300),
    (4, 64, 96),
    (9, 256, 128),
    (1, 200, 4096),
];

#[test]
fn bf16_gemm_matches_reference_on_every_path() {
    for path in paths(Op::Bf16Gemm) {
        let mut worst_rounded = 0f64;
        let mut worst_true = 0f64;
        for (case, &(m, n, k)) in SHAPES.iter().enumerate() {
            let mut rng = Rng::new(case as u64 + 1);
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(n * k, 0.5);
            let bias = rng.vec(n, 1.0);
            let packed = PackedBf16::pack_f32(&w, n, k).unwrap();
            let with_bias = case % 2 == 0;
            let mut out = vec![f32::NAN; m * n];
            gemm_bf16_with(path, &x, m, &packed, with_bias.then_some(&bias[..]), &mut out).unwrap();
            // AMX and AVX512-BF16 round x to bf16; the widening tiers keep it f32.
            let x_rounds = matches!(path, KernelPath::Amx | KernelPath::Avx512Bf16);
            for i in 0..m {
                for j in 0..n {
                    let (mut exact_rounded, mut exact, mut s) = (0f64, 0f64, 0f64);
                    for kk in 0..k {
                        let xv = x[i * k + kk];
                        let xr = if x_rounds { bf16_round(xv) } else { xv };
                        exact_rounded += xr as f64 * bf16_round(w[j * k + kk]) as f64;
                        exact += xv as f64 * w[j * k + kk] as f64;
                        s += (xv as f64 * w[j * k + kk] as f64).abs();
                    }
                    let b = if with_bias { bias[j] as f64 } else { 0.0 };
                    let got = out[i * n + j] as f64;
                    let e1 = (got - exact_rounded - b).abs() / (s + 1e-6);
                    let e2 = (got - exact - b).abs() / (s + 1e-6);
                    assert!(
                        e1 <= 1e-5,
                        "{path} {m}x{n}x{k} [{i},{j}]: {got} vs {} (rel {e1:e})",
                        exact_rounded + b
                    );
                    assert!(
                        e2 <= 1e-2,
                        "{path} {m}x{n}x{k} [{i},{j}]: {got} vs {} (rel {e2:e})",
                        exact + b
                    );
                    worst_rounded = worst_rounded.max(e1);
                    worst_true = worst_true.max(e2);
                }
            }
        }
        eprintln!("bf16 gemm {path}: max err/S vs rounded operands {worst_rounded:.2e}, vs f32 {worst_true:.2e}");
    }
}

#[test]
fn bf16_pack_keeps_every_element() {
    let (n, k) = (37, 45);
    let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
    let p = PackedBf16::pack_f32(&w, n, k).unwrap();
    assert_eq!(p.k_padded() % 32, 0);
    assert_eq!(p.panels() % 2, 0);
    for j in 0..n {
        for kk in 0..k {
            assert_eq!(p.get(j, kk), bf16_round(w[j * k + kk]));
        }
    }
    assert!(PackedBf16::pack_f32(&w, n, k + 1).is_none());
}

#[test]
fn gemm_rejects_bad_lengths() {
    let p = PackedBf16::pack_f32(&[0.0; 12], 3, 4).unwrap();
    let mut out = vec![0f32; 6];
    assert!(gemm_bf16_with(KernelPath::Portable, &[0.0; 7], 2, &p, None, &mut out).is_err());
    assert!(gemm_bf16_with(KernelPath::Portable, &[0.0; 8], 2, &p, Some(&[0.0; 2]), &mut out).is_err());
    assert!(gemm_bf16_with(KernelPath::Portable, &[0.0; 8], 2, &p, None, &mut out[..5]).is_err());
    let q = PackedInt8::quantize(&[0.0; 12], 3, 4).unwrap();
    assert!(gemm_int8_with(KernelPath::Portable, &[0.0; 7], 2, &q, None, &mut out).is_err());
}

#[test]
fn int8_gemm_matches_reference_on_every_path() {
    // K values of the model that are not multiples of 256 are included (896; 6848 is in
    // the bench), plus odd and tiny ones.
    let shapes: Vec<(usize, usize, usize)> = SHAPES
        .iter()
        .copied()
        .chain([(1, 64, 896), (20, 40, 6848 / 8)])
        .collect();
    for path in paths(Op::Int8Gemm) {
        let mut worst_exact = 0f64;
        let mut worst_true = 0f64;
        for (case, &(m, n, k)) in shapes.iter().enumerate() {
            let mut rng = Rng::new(100 + case as u64);
            let x = rng.vec(m * k, 2.0);
            let w = rng.vec(n * k, 0.3);
            let bias = rng.vec(n, 1.0);
            let q = QuantizedInt8::quantize(&w, n, k).unwrap();
            let packed = PackedInt8::pack(&q);
            let with_bias = case % 2 == 1;
            let mut out = vec![f32::NAN; m * n];
            gemm_int8_with(path, &x, m, &packed, with_bias.then_some(&bias[..]), &mut out).unwrap();
            for i in 0..m {
                let xrow = &x[i * k..(i + 1) * k];
                let mut xq = vec![0i8; k];
                let sx = quantize_row(xrow, &mut xq).1 as f64;
                let sum_x: f64 = xrow.iter().map(|v| v.abs() as f64).sum();
                for j in 0..n {
                    let sw = q.scales[j] as f64;
                    let wrow = &w[j * k..(j + 1) * k];
                    let mut isum = 0i64;
                    let (mut exact, mut s) = (0f64, 0f64);
                    for kk in 0..k {
                        isum += xq[kk] as i64 * q.values[j * k + kk] as i64;
                        exact += xrow[kk] as f64 * wrow[kk] as f64;
                        s += (xrow[kk] as f64 * wrow[kk] as f64).abs();
                    }
                    let b = if with_bias { bias[j] as f64 } else { 0.0 };
                    let got = out[i * n + j] as f64;
                    let want_q = isum as f64 * sx * sw + b;
                    let e1 = (got - want_q).abs() / (s + 1e-3);
                    assert!(e1 <= 1e-5, "{path} {m}x{n}x{k} [{i},{j}]: {got} vs {want_q}");
                    let sum_w: f64 = wrow.iter().map(|v| v.abs() as f64).sum();
                    let bound = sw / 2.0 * sum_x + sx / 2.0 * sum_w + k as f64 * sx * sw / 4.0 + 1e-5 * s + 1e-6;
                    let e2 = (got - exact - b).abs();
                    assert!(
                        e2 <= bound,
                        "{path} {m}x{n}x{k} [{i},{j}]: {got} vs {} beyond bound {bound}",
                        exact + b
                    );
                    worst_exact = worst_exact.max(e1);
                    worst_true = worst_true.max(e2 / (s + 1e-6));
                }
            }
        }
        eprintln!("int8 gemm {path}: max err/S vs exact int product {worst_exact:.2e}, vs f32 {worst_true:.2e}");
    }
}

#[test]
fn int8_quantisation_is_symmetric_per_channel() {
    let w = [1.0f32, -2.0, 0.5, 0.0, 0.0, 0.0, 3.0, 0.03];
    let q = QuantizedInt8::quantize(&w, 4, 2).unwrap();
    assert_eq!(q.values, vec![64, -127, 127, 0, 0, 0, 127, 1]);
    assert_eq!(q.scales[1], 0.5 / 127.0);
    assert_eq!(q.scales[2], 0.0);
    let d = q.dequantize();
    for (a, b) in d.iter().zip(&w) {
        assert!((a - b).abs() <= 3.0 / 127.0 / 2.0 + 1e-7);
    }
}

/// f64 reference attention.
#[allow(clippy::too_many_arguments)]
fn attention_ref(q: &[f32], k: &[f32], v: &[f32], s: AttnShape, bias: AttnBias, scale: f32, causal: bool) -> Vec<f32> {
    let d = s.head_dim;
    let mut out = vec![0f32; q.len()];
    for h in 0..s.heads {
        let kvh = h / (s.heads / s.kv_heads);
        for i in 0..s.q_len {
            let qi = &q[(h * s.q_len + i) * d..][..d];
            let limit = if causal { i + s.kv_len - s.q_len + 1 } else { s.kv_len };
            let mut logits = vec![f64::NEG_INFINITY; s.kv_len];
            for (j, l) in logits.iter_mut().enumerate().take(limit) {
                let kj = &k[(kvh * s.kv_len + j) * d..][..d];
                let mut dot: f64 = qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                dot *= scale as f64;
                if let AttnBias::RelPos { rel_h, rel_w, kh, kw } = bias {
                    dot +=
                        rel_h[(h * s.q_len + i) * kh + j / kw] as f64 + rel_w[(h * s.q_len + i) * kw + j % kw] as f64;
                }
                *l = dot;
            }
            let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
            let sum: f64 = p.iter().sum();
            for dd in 0..d {
                let mut acc = 0f64;
                for (j, pj) in p.iter().enumerate() {
                    acc += pj * v[(kvh * s.kv_len + j) * d + dd] as f64;
                }
                out[(h * s.q_len + i) * d + dd] = (acc / sum) as f32;
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference_on_every_path() {
    struct Case {
        name: &'static str,
        shape: AttnShape,
        grid: Option<(usize, usize)>,
        causal: bool,
    }
    let sh = |heads, kv_heads, q_len, kv_len, head_dim| AttnShape {
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    };
    let cases = [
        Case {
            name: "clip-like",
            shape: sh(2, 2, 37, 37, 64),
            grid: None,
            causal: false,
        },
        Case {
            name: "sam window rel-pos",
            shape: sh(2, 2, 63, 63, 16),
            grid: Some((7, 9)),
            causal: false,
        },
        Case {
            name: "sam global rel-pos",
            shape: sh(1, 1, 196, 196, 64),
            grid: Some((14, 14)),
            causal: false,
        },
        Case {
            name: "prefill causal",
            shape: sh(3, 3, 70, 70, 32),
            grid: None,
            causal: true,
        },
        Case {
            name: "prefill causal gqa",
            shape: sh(4, 2, 65, 65, 8),
            grid: None,
            causal: true,
        },
        Case {
            name: "prefill with cache",
            shape: sh(2, 2, 5, 130, 24),
            grid: None,
            causal: true,
        },
        Case {
            name: "decode",
            shape: sh(3, 3, 1, 100, 128),
            grid: None,
            causal: true,
        },
        Case {
            name: "odd head dim",
            shape: sh(1, 1, 3, 2, 5),
            grid: None,
            causal: false,
        },
        Case {
            name: "single",
            shape: sh(1, 1, 1, 1, 1),
            grid: None,
            causal: true,
        },
    ];
    for path in paths(Op::Attention) {
        let mut worst = 0f32;
        for (ci, c) in cases.iter().enumerate() {
            let s = c.shape;
            let mut rng = Rng::new(200 + ci as u64);
            let q = rng.vec(s.heads * s.q_len * s.head_dim, 2.0);
            let k = rng.vec(s.kv_heads * s.kv_len * s.head_dim, 2.0);
            let v = rng.vec(s.kv_heads * s.kv_len * s.head_dim, 1.0);
            let (rel_h, rel_w) = match c.grid {
                Some((gh, gw)) => (
                    rng.vec(s.heads * s.q_len * gh, 3.0),
                    rng.vec(s.heads * s.q_len * gw, 3.0),
                ),
                None => (vec![], vec![]),
            };
            let bias = match c.grid {
                Some((kh, kw)) => AttnBias::RelPos {
                    rel_h: &rel_h,
                    rel_w: &rel_w,
                    kh,
                    kw,
                },
                None => AttnBias::None,
            };
            let scale = 1.0 / (s.head_dim as f32).sqrt();
            let want = attention_ref(&q, &k, &v, s, bias, scale, c.causal);
            let mut got = vec![f32::NAN; q.len()];
            attention_with(path, &q, &k, &v, s, bias, scale, c.causal, &mut got).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let e = (g - w).abs();
                assert!(e <= 1e-4, "{path} {}: [{i}] {g} vs {w}", c.name);
                worst = worst.max(e);
            }
        }
        eprintln!("attention {path}: max abs err {worst:.2e}");
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let s = AttnShape {
        heads: 2,
        kv_heads: 2,
        q_len: 3,
        kv_len: 2,
        head_dim: 4,
    };
    let (q, kv) = (vec![0f32; 24], vec![0f32; 16]);
    let mut out = vec![0f32; 24];
    // More queries than keys cannot be causal.
    assert!(attention_with(
        KernelPath::Portable,
        &q,
        &kv,
        &kv,
        s,
        AttnBias::None,
        1.0,
        true,
        &mut out
    )
    .is_err());
    let bad = AttnShape { kv_heads: 3, ..s };
    assert!(attention_with(
        KernelPath::Portable,
        &q,
        &kv,
        &kv,
        bad,
        AttnBias::None,
        1.0,
        false,
        &mut out
    )
    .is_err());
    let bias = AttnBias::RelPos {
        rel_h: &[0.0; 6],
        rel_w: &[0.0; 5],
        kh: 1,
        kw: 2,
    };
    assert!(attention_with(KernelPath::Portable, &q, &kv, &kv, s, bias, 1.0, false, &mut out).is_err());
    assert!(attention_with(
        KernelPath::Portable,
        &q,
        &kv,
        &kv,
        s,
        AttnBias::None,
        1.0,
        false,
        &mut out
    )
    .is_ok());
}

#[test]
fn dispatch_parses_forces_and_describes() {
    for p in KernelPath::ALL {
        assert_eq!(KernelPath::parse(p.name()), Some(p));
    }
    assert_eq!(KernelPath::parse("AMX"), Some(KernelPath::Amx));
    assert_eq!(KernelPath::parse("sse"), None);
    assert!(KernelPath::Portable.is_available());
    for op in Op::ALL {
        assert_eq!(Op::parse(op.name()), Some(op));
    }
    assert_eq!(kernels::force(Some(KernelPath::Portable)), KernelPath::Portable);
    for op in Op::ALL {
        assert_eq!(op.active_tier(), KernelPath::Portable);
    }
    assert!(kernels::describe().contains("bf16 gemm portable"));
    let restored = kernels::force(None);
    assert!(restored.is_available());
    let env_forced = std::env::var_os("DSOCR_KERNEL").is_some();
    for op in Op::ALL {
        // Without forcing, each op runs on its best tier the CPU has.
        let best = *op.available_tiers().last().unwrap();
        if !env_forced {
            assert_eq!(op.active_tier(), best, "{op}");
        }
        assert!(kernels::describe().contains(op.active_tier().name()));
    }
    // A per-op ceiling lowers one op only.
    let bf16_before = Op::Bf16Gemm.active_tier();
    assert_eq!(
        kernels::force_op(Op::Int8Gemm, Some(KernelPath::Portable)),
        KernelPath::Portable
    );
    assert_eq!(Op::Bf16Gemm.active_tier(), bf16_before);
    kernels::force_op(Op::Int8Gemm, None);
    // Ice Lake-like choice: AVX-512 without BF16 still uses AVX512-VNNI for int8.
    assert_eq!(
        Op::Bf16Gemm.tier_under(KernelPath::Avx512Vnni),
        Op::Bf16Gemm.tier_under(KernelPath::Avx512)
    );
    if KernelPath::Avx512Vnni.is_available() {
        assert_eq!(Op::Int8Gemm.tier_under(KernelPath::Avx512Vnni), KernelPath::Avx512Vnni);
    }
    eprintln!("{}", kernels::describe());
}

mod linear {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Module, Tensor};
    use candle_nn::VarBuilder;
    use deepseek_ocr::nn::kernels::KernelPath;
    use deepseek_ocr::nn::{Linear, Precision};

    use super::Rng;

    #[test]
    fn packed_linear_layers_match_f32() {
        let (n, k) = (70, 97);
        let mut rng = Rng::new(7);
        let dev = Device::Cpu;
        let w = Tensor::from_vec(rng.vec(n * k, 0.5), (n, k), &dev).unwrap();
        let b = Tensor::from_vec(rng.vec(n, 1.0), n, &dev).unwrap();
        let x = Tensor::from_vec(rng.vec(2 * 3 * k, 1.0), (2, 3, k), &dev).unwrap();
        let map: HashMap<String, Tensor> =
            [("l.weight".to_string(), w.clone()), ("l.bias".to_string(), b.clone())].into();
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let reference = Linear::load(vb.pp("l"), k, n, true).unwrap();
        let want = reference.forward(&x).unwrap();
        // Σ|x||w| per output bounds the error, as in the kernel tests.
        let s = x
            .abs()
            .unwrap()
            .broadcast_matmul(&w.abs().unwrap().t().unwrap())
            .unwrap();
        for (precision, rel) in [(Precision::Bf16, 1e-2f32), (Precision::Int8, 2e-2)] {
            let lin = Linear::load_with(vb.pp("l"), k, n, true, precision).unwrap();
            assert_eq!(lin.precision(), precision);
            assert!(lin.weight().is_none());
            let got = lin.forward(&x).unwrap();
            assert_eq!(got.dims(), &[2, 3, n]);
            let err = (got.clone() - &want).unwrap().abs().unwrap();
            let ratio = (err / (s.clone() + 1e-6).unwrap())
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(ratio <= rel, "{precision}: error/S {ratio}");
            eprintln!("linear {precision}: max error/S {ratio:.2e}");
            // Non-contiguous and non-f32 inputs go through the same kernel.
            let xt = x.transpose(0, 1).unwrap();
            let got_t = lin.forward(&xt).unwrap().transpose(0, 1).unwrap();
            let diff = (got_t - &got)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff <= 1e-6);
            assert!(lin.forward(&x.narrow(2, 0, k - 1).unwrap()).is_err());
        }
        let f32_lin = Linear::load_with(vb.pp("l"), k, n, true, Precision::F32).unwrap();
        assert!(f32_lin.weight().is_some());
        let same = (f32_lin.forward(&x).unwrap() - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(same, 0.0);
    }

    #[test]
    fn precision_parses() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("INT8".parse::<Precision>().unwrap(), Precision::Int8);
        assert_eq!(" f32 ".parse::<Precision>().unwrap(), Precision::F32);
        assert!("fp8".parse::<Precision>().is_err());
    }

    /// `auto` (the default) is the fastest tested precision the kernel tiers allow: int8
    /// wherever the int8 GEMM has a SIMD tier; its vision encoder stays int8 only on tiers
    /// whose int8 multiply-add outruns the bf16 one.
    #[test]
    fn auto_precision_follows_the_kernel_tiers() {
        use deepseek_ocr::nn::kernels::Op;
        let auto = "auto".parse::<Precision>().unwrap();
        assert_eq!(auto, Precision::auto());
        assert_eq!(Precision::default(), auto);
        assert_eq!(deepseek_ocr::EngineOptions::default().precision, auto);
        let int8 = Op::Int8Gemm.active_tier();
        if int8 > KernelPath::Portable {
            assert_eq!(auto, Precision::Int8, "int8 tier {int8}");
        } else {
            assert_ne!(auto, Precision::Int8);
        }
        assert_eq!(Precision::F32.for_vision(), Precision::F32);
        assert_eq!(Precision::Bf16.for_vision(), Precision::Bf16);
        let vision = Precision::Int8.for_vision();
        match int8 {
            KernelPath::Amx | KernelPath::Avx512Vnni => assert_eq!(vision, Precision::Int8),
            KernelPath::Portable => assert_eq!(vision, Precision::Bf16),
            _ => assert!(vision == Precision::Int8 || vision == Precision::Bf16),
        }
    }
}

#[test]
fn attention_on_tensors_matches_the_slice_api() {
    use candle_core::{Device, Tensor};
    let (b, heads, len, d, g) = (2, 3, 12, 8, (3, 4));
    let mut rng = Rng::new(300);
    let dev = Device::Cpu;
    let q = rng.vec(b * heads * len * d, 1.0);
    let k = rng.vec(b * heads * len * d, 1.0);
    let v = rng.vec(b * heads * len * d, 1.0);
    let rh = rng.vec(b * heads * len * g.0, 1.0);
    let rw = rng.vec(b * heads * len * g.1, 1.0);
    let t = |x: &Vec<f32>, last: usize| Tensor::from_vec(x.clone(), (b, heads, len, last), &dev).unwrap();
    let (qt, kt, vt, rht, rwt) = (t(&q, d), t(&k, d), t(&v, d), t(&rh, g.0), t(&rw, g.1));
    let shape = AttnShape {
        heads: b * heads,
        kv_heads: b * heads,
        q_len: len,
        kv_len: len,
        head_dim: d,
    };
    let bias = AttnBias::RelPos {
        rel_h: &rh,
        rel_w: &rw,
        kh: g.0,
        kw: g.1,
    };
    let want = attention_ref(&q, &k, &v, shape, bias, 0.3, false);
    let got = kernels::attention_tensors(&qt, &kt, &vt, Some((&rht, &rwt)), 0.3, false).unwrap();
    assert_eq!(got.dims(), &[b, heads, len, d]);
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
    // Causal without bias, and a non-contiguous input (transposed twice back to the shape).
    let want = attention_ref(&q, &k, &v, shape, AttnBias::None, 0.5, true);
    let qnc = qt
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let got = kernels::attention_tensors(&qnc, &kt, &vt, None, 0.5, true).unwrap();
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
}
