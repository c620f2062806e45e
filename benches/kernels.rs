//! Throughput of the CPU kernels at the model's shapes, every tier this CPU has forced one by
//! one and printed side by side, with candle's f32 matmul (and naive attention) as the
//! baseline measured in the same run.
//!
//! `cargo bench --bench kernels [-- FILTER]`. The portable tier is slow at M > 1 and only
//! benched with `DSOCR_BENCH_PORTABLE=1`. GEMMs at M > 1
//! report GF/s (2·M·N·K per call); at M = 1 they report GB/s of weight bytes read (the
//! decode step is memory-bound), 4 B per weight for candle f32, 2 for bf16, 1 for int8.
//! Each figure is the median of several timed calls after a warm-up call. The in-place GEMMs
//! (weights in the checkpoint's row-major layout) report µs per call, with the default
//! strategy and with per-call packing.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use deepseek_ocr::nn::kernels::{
    self, AttnBias, AttnShape, InplaceStrategy, KernelPath, Op, PackedBf16, PackedInt8, RowMajorBf16, RowMajorInt8,
};
use deepseek_ocr::quant::QuantizedInt8;

/// Median seconds of `f` over repeated calls (at least 3, about `budget` in total).
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 3 || (start.elapsed() < budget && samples.len() < 50) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn rand_vec(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Whether a row is selected by the command-line filters (`cargo bench --bench kernels -- lm_head`).
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The tiers of `op` to bench: every one the CPU has (portable only when asked, or at M = 1).
fn bench_tiers(op: Op, m: usize) -> Vec<KernelPath> {
    let portable = m == 1 || std::env::var_os("DSOCR_BENCH_PORTABLE").is_some();
    op.available_tiers()
        .into_iter()
        .filter(|t| portable || *t != KernelPath::Portable)
        .collect()
}

/// One GEMM row of the report: `name`, `N×K`, `M`; candle f32, then every bf16 tier, then
/// every int8 tier.
fn bench_gemm(name: &str, n: usize, k: usize, m: usize) {
    if !selected(name) {
        return;
    }
    let budget = Duration::from_millis(if m == 1 { 300 } else { 800 });
    let w = rand_vec(n * k, 1);
    let x = rand_vec(m * k, 2);
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(w.clone(), (n, k), &dev).expect("tensor");
    let xt = Tensor::from_vec(x.clone(), (m, k), &dev).expect("tensor");
    let wtt = wt.t().expect("t");
    let t_candle = time(budget, || {
        let _ = xt.matmul(&wtt).expect("matmul");
    });
    drop((wt, wtt, xt));
    let bf = PackedBf16::pack_f32(&w, n, k).expect("pack");
    let q8 = PackedInt8::quantize(&w, n, k).expect("quantize");
    drop(w);
    let mut out = vec![0f32; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    let weights = (n * k) as f64;
    let fmt = |t: f64, bytes: f64| {
        if m == 1 {
            format!("{:>6.1} GB/s", weights * bytes / t / 1e9)
        } else {
            format!("{:>6.0} GF/s", flops / t / 1e9)
        }
    };
    let mut cells = vec![format!("f32 {}", fmt(t_candle, 4.0))];
    for tier in bench_tiers(Op::Bf16Gemm, m) {
        let t = time(budget, || {
            kernels::gemm_bf16_with(tier, &x, m, &bf, None, &mut out).expect("gemm")
        });
        cells.push(format!("{tier} {}", fmt(t, 2.0)));
    }
    cells.push("·".into());
    for tier in bench_tiers(Op::Int8Gemm, m) {
        let t = time(budget, || {
            kernels::gemm_int8_with(tier, &x, m, &q8, None, &mut out).expect("gemm")
        });
        cells.push(format!("{tier} {}", fmt(t, 1.0)));
    }
    println!("| {name:<16} | {n:>6}×{k:<5} | {m:>4} | {} |", cells.join(" | "));
}

/// One in-place GEMM row: the weight in its checkpoint layout (row-major bf16, and row-major
/// int8 + per-row scales as `dsocr convert` writes it), µs per call on every tier with the
/// default strategy (row dots below M = 64) and, for contrast, per-call packing.
fn bench_inplace(name: &str, n: usize, k: usize, m: usize) {
    if !selected(name) {
        return;
    }
    let budget = Duration::from_millis(300);
    // Built a block of rows at a time (the lm_head weight is 662 MB as f32).
    let (mut bits, mut values, mut scales) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k), Vec::new());
    for (b, r0) in (0..n).step_by(1024).enumerate() {
        let rows = 1024.min(n - r0);
        let w = rand_vec(rows * k, 11 + b as u32);
        bits.extend(w.iter().map(|v| half::bf16::from_f32(*v).to_bits()));
        let q = QuantizedInt8::quantize(&w, rows, k).expect("quantize");
        values.extend_from_slice(&q.values);
        scales.extend_from_slice(&q.scales);
    }
    let bf = RowMajorBf16::from_bits(bits, n, k).expect("bf16 weight");
    let q8 = RowMajorInt8::from_parts(values, scales, n, k).expect("int8 weight");
    let x = rand_vec(m * k, 2);
    let mut out = vec![0f32; m * n];
    let us = |t: f64| format!("{:>8.1}", t * 1e6);
    let mut cells = Vec::new();
    for tier in bench_tiers(Op::Bf16Gemm, m) {
        let mut run = |s| {
            time(budget, || {
                kernels::gemm_bf16_inplace_with(tier, s, &x, m, &bf, None, &mut out).expect("gemm")
            })
        };
        let (auto, pack) = (run(InplaceStrategy::Auto), run(InplaceStrategy::Pack));
        cells.push(format!("{tier} {} ({} pack)", us(auto), us(pack)));
    }
    cells.push("·".into());
    for tier in bench_tiers(Op::Int8Gemm, m) {
        let mut run = |s| {
            time(budget, || {
                kernels::gemm_int8_inplace_with(tier, s, &x, m, &q8, None, &mut out).expect("gemm")
            })
        };
        let (auto, pack) = (run(InplaceStrategy::Auto), run(InplaceStrategy::Pack));
        cells.push(format!("{tier} {} ({} pack)", us(auto), us(pack)));
    }
    println!("| {name:<16} | {n:>6}×{k:<5} | {m:>4} | {} |", cells.join(" | "));
}

/// Naive candle attention (matmul, softmax, matmul) vs the blockwise kernel.
fn bench_attention(name: &str, heads: usize, len: usize, d: usize, rel: Option<usize>, naive: bool) {
    if !selected(name) {
        return;
    }
    let budget = Duration::from_millis(2000);
    let q = rand_vec(heads * len * d, 3);
    let k = rand_vec(heads * len * d, 4);
    let v = rand_vec(heads * len * d, 5);
    let scale = 1.0 / (d as f32).sqrt();
    let naive = naive && std::env::var_os("DSOCR_BENCH_NO_NAIVE").is_none();
    let t_candle = if naive {
        let dev = Device::Cpu;
        let qt = Tensor::from_vec(q.clone(), (heads, len, d), &dev).expect("tensor");
        let kt = Tensor::from_vec(k.clone(), (heads, len, d), &dev).expect("tensor");
        let vt = Tensor::from_vec(v.clone(), (heads, len, d), &dev).expect("tensor");
        Some(time(budget, || {
            let s = (qt.matmul(&kt.t().expect("t")).expect("mm") * scale as f64).expect("scale");
            let p = candle_nn::ops::softmax_last_dim(&s).expect("softmax");
            let _ = p.matmul(&vt).expect("mm");
        }))
    } else {
        None
    };
    let (rel_h, rel_w) = match rel {
        Some(g) => (rand_vec(heads * len * g, 6), rand_vec(heads * len * g, 7)),
        None => (vec![], vec![]),
    };
    let bias = match rel {
        Some(g) => AttnBias::RelPos {
            rel_h: &rel_h,
            rel_w: &rel_w,
            kh: g,
            kw: g,
        },
        None => AttnBias::None,
    };
    let shape = AttnShape {
        heads,
        kv_heads: heads,
        q_len: len,
        kv_len: len,
        head_dim: d,
    };
    let mut out = vec![0f32; q.len()];
    let flops = 4.0 * (heads * len * len * d) as f64;
    let fmt = |t: f64| format!("{:>8.1} ms {:>6.0} GF/s", t * 1e3, flops / t / 1e9);
    let mut cells = vec![format!(
        "naive {}",
        t_candle.map_or_else(|| format!("{:>23}", "(skipped)"), fmt)
    )];
    for tier in bench_tiers(Op::Attention, 2) {
        let t = time(budget, || {
            kernels::attention_with(tier, &q, &k, &v, shape, bias, scale, false, &mut out).expect("attention")
        });
        cells.push(format!("{tier} {}", fmt(t)));
    }
    println!("| {name:<34} | {} |", cells.join(" | "));
}

fn main() {
    println!("{}", kernels::describe());
    println!();
    println!("GEMM: GB/s of weight bytes at M = 1, GF/s at M > 1; per tier, bf16 tiers, then · int8 tiers");
    println!(
        "| {:<16} | {:>12} | {:>4} | candle | bf16 tiers … | · | int8 tiers … |",
        "op", "N×K", "M"
    );
    println!("|---|---|---|---|---|---|---|");
    bench_gemm("attention proj", 1280, 1280, 1);
    bench_gemm("expert up", 896, 1280, 1);
    bench_gemm("expert down", 1280, 896, 1);
    bench_gemm("dense up", 6848, 1280, 1);
    bench_gemm("dense down", 1280, 6848, 1);
    bench_gemm("lm_head", 129280, 1280, 1);
    bench_gemm("attention proj", 1280, 1280, 283);
    bench_gemm("expert down", 1280, 896, 283);
    bench_gemm("dense down", 1280, 6848, 283);
    bench_gemm("SAM qkv", 2304, 768, 4096);
    bench_gemm("SAM mlp fc1", 3072, 768, 4096);
    bench_gemm("CLIP fc1", 4096, 1024, 257);
    println!();
    println!("In-place GEMM (checkpoint layout): µs per call, default strategy (per-call packing in parentheses); bf16 tiers, then · int8 tiers");
    println!(
        "| {:<16} | {:>12} | {:>4} | bf16 tiers … | · | int8 tiers … |",
        "op", "N×K", "M"
    );
    println!("|---|---|---|---|---|---|");
    bench_inplace("inplace proj", 1280, 1280, 1);
    bench_inplace("inplace exp down", 1280, 896, 1);
    bench_inplace("inplace lm_head", 129280, 1280, 1);
    println!();
    println!("| {:<34} | candle naive | tiers … |", "attention (f32)");
    println!("|---|---|---|");
    bench_attention("SAM global 12×4096×64 + rel-pos", 12, 4096, 64, Some(64), true);
    bench_attention("SAM window 25×12 heads×196×64 +rel", 300, 196, 64, Some(14), true);
    bench_attention("CLIP 16×257×64", 16, 257, 64, None, true);
}
