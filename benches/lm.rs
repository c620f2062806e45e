//! Speed of the DeepSeek-V2 decoder at the real dimensions, per weight precision.
//!
//! `cargo bench --bench lm [-- f32|bf16|int8 ...]`. The weights are random (drawn while
//! loading through `VarBuilder::from_backend`, nothing is read from disk): speed does not
//! depend on their values, only on the shapes and the kernels, and a 6.7 GB checkpoint is
//! not needed. Scales follow the golden models (projections ~ 1/√fan_in, norms ~ 1), so
//! activations stay in a realistic range.
//!
//! Measured: prefill of a 283-token prompt (the base-mode page of perf-notes.md), then
//! greedy decode of 32 tokens at a ~300 context (tok/s), and the resident memory the
//! loaded model adds. f32 holds ~11 GB at full size, so it runs with fewer layers
//! (`DSOCR_BENCH_F32_LAYERS`, default 3: the dense layer plus two MoE layers) and the
//! report scales its per-layer time to 12 layers.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use deepseek_ocr::generate::sampling::argmax;
use deepseek_ocr::lm::{DeepseekV2, LmOptions};
use deepseek_ocr::model::config::LmConfig;
use deepseek_ocr::nn::kernels;
use deepseek_ocr::nn::precision::Precision;
use deepseek_ocr::nn::taps::Taps;
use deepseek_ocr::ModelConfig;
use rayon::prelude::*;

const PROMPT: usize = 283;
const DECODE_STEPS: usize = 32;

/// Hands out random tensors of the asked shape: norms around 1, everything else uniform
/// with standard deviation 1/√(last dim) (1 for the embedding table).
struct RandomBackend;

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let n = s.elem_count();
        let (centre, std) = if name.contains("norm") {
            (1.0, 0.1)
        } else if name.contains("embed_tokens") {
            (0.0, 1.0)
        } else {
            (0.0, 1.0 / (*s.dims().last().unwrap_or(&1) as f32).sqrt())
        };
        // Uniform on [-√3σ, √3σ] has standard deviation σ.
        let half = 3f32.sqrt() * std;
        let seed = name
            .bytes()
            .fold(0x9e37_79b9u32, |h, b| h.rotate_left(5) ^ b as u32)
            .wrapping_mul(2_654_435_761);
        let mut data = vec![0f32; n];
        data.par_chunks_mut(1 << 16).enumerate().for_each(|(i, chunk)| {
            let mut x = (seed ^ (i as u32).wrapping_mul(0x85eb_ca6b)) | 1;
            for v in chunk {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *v = centre + half * ((x >> 8) as f32 / (1u32 << 23) as f32 - 1.0);
            }
        });
        Tensor::from_vec(data, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random backend: {name} has no known shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Resident set size of this process, bytes (0 where /proc is missing).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(cfg: &LmConfig, precision: Precision) -> Result<()> {
    let before = rss();
    let t = Instant::now();
    let vb = VarBuilder::from_backend(Box::new(RandomBackend), DType::F32, Device::Cpu);
    let model = DeepseekV2::load_with(
        vb,
        cfg,
        &LmOptions {
            precision,
            ..LmOptions::default()
        },
    )?;
    let load_s = t.elapsed().as_secs_f64();
    let resident = rss().saturating_sub(before);

    // A prompt of ordinary token ids; the embeddings are what the decoder sees.
    let ids: Vec<u32> = (0..PROMPT as u32)
        .map(|i| (i * 7919 + 13) % cfg.vocab_size as u32)
        .collect();
    let embeds = model.embed(&Tensor::new(ids.as_slice(), &Device::Cpu)?)?;

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for run in 0..3 {
        let mut cache = model.new_cache(PROMPT + DECODE_STEPS)?;
        let t = Instant::now();
        let mut logits = model.forward(&embeds, &mut cache, &mut Taps::off())?;
        let p = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..DECODE_STEPS {
            let next = argmax(&logits.to_vec1::<f32>()?);
            let e = model.embed(&Tensor::new(&[next], &Device::Cpu)?)?;
            logits = model.forward(&e, &mut cache, &mut Taps::off())?;
        }
        let d = t.elapsed().as_secs_f64();
        // The first run warms caches and page tables.
        if run > 0 {
            prefill.push(p);
            decode.push(d);
        }
    }
    let (p, d) = (median(prefill), median(decode));
    let tok_s = DECODE_STEPS as f64 / d;
    println!(
        "{:<5} layers {:>2}: prefill {PROMPT} tok {:>7.3} s | decode {:>6.2} tok/s ({:>6.1} ms/tok) | resident {:>6.2} GB | load {:.1} s",
        precision.name(),
        cfg.num_layers,
        p,
        tok_s,
        1e3 * d / DECODE_STEPS as f64,
        resident as f64 / 1e9,
        load_s
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; anything else selects precisions.
    let wanted: Vec<Precision> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let wanted = if wanted.is_empty() {
        vec![Precision::Int8, Precision::Bf16, Precision::F32]
    } else {
        wanted
    };
    let full = ModelConfig::deepseek_ocr().lm;
    println!(
        "{} | rayon threads {}",
        kernels::describe(),
        rayon::current_num_threads()
    );
    for precision in wanted {
        let mut cfg = full.clone();
        if precision == Precision::F32 {
            let layers = std::env::var("DSOCR_BENCH_F32_LAYERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3);
            cfg.num_layers = usize::clamp(layers, 1, full.num_layers);
        }
        bench(&cfg, precision)?;
    }
    Ok(())
}
