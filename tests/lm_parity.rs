//! Parity of the decoder with the float32 reference on every golden case of the mini
//! model: prefill taps, router choices, logits, teacher-forced decode and greedy ids.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, max_abs_diff, Case};
use deepseek_ocr::generate::{generate, GenerateOptions, NgramGuard, Sampling, StopReason};
use deepseek_ocr::lm::{merge_image_embeddings, prompt_embeddings, DeepseekV2, LmOptions};
use deepseek_ocr::nn::precision::Precision;
use deepseek_ocr::nn::taps::Taps;
use deepseek_ocr::text::PromptIds;
use deepseek_ocr::{ModelConfig, Weights};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn load_model(shared: &std::path::Path) -> (ModelConfig, DeepseekV2) {
    load_model_in(shared, Precision::F32)
}

fn load_model_in(shared: &std::path::Path, precision: Precision) -> (ModelConfig, DeepseekV2) {
    let dir = shared.join("golden/mini");
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = Weights::from_model_dir(&dir).unwrap();
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    let opts = LmOptions {
        precision,
        ..LmOptions::default()
    };
    let model = DeepseekV2::load_with(vb, &cfg.lm, &opts).unwrap();
    assert_eq!(model.precision(), precision);
    (cfg, model)
}

/// `‖a − b‖₂ / ‖b‖₂` over all elements.
fn rel_l2(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let num: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt() as f32
}

/// What a reduced-precision model is held to against the f32 goldens, on every case.
struct Bounds {
    /// Relative L2 error of the last prefill logits.
    prefill_rel: f32,
    /// Median over a case's teacher-forced decode rows of their relative L2 error.
    decode_median_rel: f32,
    /// Worst decode row: a near-tie in a router can send one token to another expert
    /// under rounding, which moves that row's logits far more than rounding itself.
    decode_max_rel: f32,
    /// Fraction of teacher-forced steps (prefill's last position included) whose argmax is
    /// the golden greedy id.
    min_top1: f32,
}

/// Prefill and teacher-forced decode of every golden case in `precision`; returns the
/// worst relative error and the overall top-1 agreement after asserting `bounds`.
fn check_precision(precision: Precision, bounds: &Bounds) -> (f32, f32) {
    let shared = shared_dir_or_none();
    let Some(shared) = shared else { return (0.0, 1.0) };
    let (_, model) = load_model_in(&shared, precision);
    let (mut worst, mut agree, mut total) = (0f32, 0usize, 0usize);
    for dir in common::golden_cases(&shared) {
        let case = Case::load(&dir);
        let name = case.name();
        let lm = &case.json["lm"];
        let embeds = case.tensor("inputs_embeds");
        let generated = ids(&lm["generated_ids"]);
        let steps = lm["n_decode_steps"].as_u64().unwrap() as usize;
        let mut cache = model.new_cache(embeds.dim(0).unwrap() + steps).unwrap();
        let last = model.forward(embeds, &mut cache, &mut Taps::off()).unwrap();
        let e_prefill = rel_l2(&last, case.tensor("prefill_logits_last"));
        let mut greedy = vec![deepseek_ocr::generate::sampling::argmax(
            &last.to_vec1::<f32>().unwrap(),
        )];
        let mut rows = Vec::with_capacity(steps);
        for &id in &generated[..steps] {
            let e = model.embed(&Tensor::new(&[id], &Device::Cpu).unwrap()).unwrap();
            let logits = model.forward(&e, &mut cache, &mut Taps::off()).unwrap();
            greedy.push(deepseek_ocr::generate::sampling::argmax(
                &logits.to_vec1::<f32>().unwrap(),
            ));
            rows.push(logits);
        }
        let golden_rows = case.tensor("decode_logits");
        let mut e_rows: Vec<f32> = (0..steps)
            .map(|i| rel_l2(&rows[i], &golden_rows.get(i).unwrap()))
            .collect();
        e_rows.sort_by(f32::total_cmp);
        let (e_median, e_max) = (e_rows[steps / 2], e_rows[steps - 1]);
        let hits = greedy.iter().zip(&generated).filter(|(a, b)| a == b).count();
        eprintln!(
            "{precision} {name}: logits rel L2: prefill {e_prefill:.2e}, decode median {e_median:.2e} max {e_max:.2e}; top-1 {hits}/{}",
            greedy.len()
        );
        assert!(
            e_prefill <= bounds.prefill_rel,
            "{precision} {name}: prefill logits rel error {e_prefill:e}"
        );
        assert!(
            e_median <= bounds.decode_median_rel,
            "{precision} {name}: decode median rel error {e_median:e}"
        );
        assert!(
            e_max <= bounds.decode_max_rel,
            "{precision} {name}: worst decode row rel error {e_max:e}"
        );
        worst = worst.max(e_prefill).max(e_max);
        agree += hits;
        total += greedy.len();
    }
    let rate = agree as f32 / total.max(1) as f32;
    eprintln!("{precision}: worst logits rel {worst:.2e}, top-1 agreement {agree}/{total} = {rate:.3}");
    assert!(
        rate >= bounds.min_top1,
        "{precision}: top-1 agreement {rate} < {}",
        bounds.min_top1
    );
    (worst, rate)
}

fn shared_dir_or_none() -> Option<std::path::PathBuf> {
    let s = common::shared_dir();
    if s.is_none() {
        eprintln!("skipping: DSOCR_SHARED_DIR not set");
    }
    s
}

#[test]
fn prefill_decode_and_greedy_match_goldens() {
    let shared = shared_or_skip!();
    let (cfg, model) = load_model(&shared);
    for dir in common::golden_cases(&shared) {
        let case = Case::load(&dir);
        let name = case.name();
        let lm = &case.json["lm"];
        let embeds = case.tensor("inputs_embeds");
        let seq = embeds.dim(0).unwrap();
        let generated = ids(&lm["generated_ids"]);
        let steps = lm["n_decode_steps"].as_u64().unwrap() as usize;

        // Embedding merge: token embeddings + image embeddings at the masked positions.
        let input_ids = ids(&case.json["tokens"]["input_ids"]);
        let mask: Vec<bool> = ids(&case.json["tokens"]["images_seq_mask"])
            .iter()
            .map(|&m| m != 0)
            .collect();
        let text = model
            .embed(&Tensor::new(input_ids.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        let merged = merge_image_embeddings(&text, &mask, case.tensor("image_embeds")).unwrap();
        assert_close(&case, "inputs_embeds", &merged);
        let prompt = PromptIds {
            ids: input_ids.clone(),
            image_mask: mask.clone(),
        };
        let via_prompt = prompt_embeddings(&model, &prompt, Some(case.tensor("image_embeds"))).unwrap();
        assert_eq!(max_abs_diff(&via_prompt, &merged), 0.0);
        // A count mismatch or missing image embeddings is an error, not a panic.
        let short = case
            .tensor("image_embeds")
            .narrow(0, 1, mask.iter().filter(|&&m| m).count() - 1)
            .unwrap();
        assert!(merge_image_embeddings(&text, &mask, &short).is_err());
        assert!(prompt_embeddings(&model, &prompt, None).is_err());

        // Prefill with every tap.
        let mut cache = model.new_cache(seq + steps).unwrap();
        let mut taps = Taps::recording();
        let last = model.forward(embeds, &mut cache, &mut taps).unwrap();
        assert_eq!(cache.len(), seq);
        for t in [
            "layer0_out",
            "layer1_out",
            "moe_l1_topk_weight",
            "final_hidden",
            "prefill_logits_max",
        ] {
            assert_close(&case, t, taps.get(t).unwrap_or_else(|| panic!("tap {t}")));
        }
        assert_close(&case, "prefill_logits_last", &last);
        assert_eq!(max_abs_diff(&last, taps.get("prefill_logits_last").unwrap()), 0.0);
        if case.tensors.contains_key("prefill_logits") {
            assert_close(
                &case,
                "prefill_logits",
                taps.get("prefill_logits").expect("prefill_logits tap"),
            );
        }
        let topk_idx: Vec<Vec<u32>> = taps.get("moe_l1_topk_idx").unwrap().to_vec2().unwrap();
        let golden_idx: Vec<Vec<u32>> = lm["moe_l1_topk_idx"].as_array().unwrap().iter().map(ids).collect();
        assert_eq!(topk_idx, golden_idx, "{name}: layer-1 router choices");
        let argmax: Vec<u32> = taps.get("prefill_argmax").unwrap().to_vec1().unwrap();
        assert_eq!(argmax, ids(&lm["prefill_argmax"]), "{name}: prefill argmax");

        // Teacher-forced decode with the reference's own greedy ids.
        let mut rows = Vec::with_capacity(steps);
        let mut greedy = vec![deepseek_ocr::generate::sampling::argmax(
            &last.to_vec1::<f32>().unwrap(),
        )];
        for &id in &generated[..steps] {
            let e = model.embed(&Tensor::new(&[id], &Device::Cpu).unwrap()).unwrap();
            let logits = model.forward(&e, &mut cache, &mut Taps::off()).unwrap();
            greedy.push(deepseek_ocr::generate::sampling::argmax(
                &logits.to_vec1::<f32>().unwrap(),
            ));
            rows.push(logits);
        }
        assert_eq!(cache.len(), seq + steps);
        assert_close(&case, "decode_logits", &Tensor::stack(&rows, 0).unwrap());
        assert_eq!(greedy, generated, "{name}: teacher-forced greedy ids");

        // Full generation loop: pure argmax, then the HF guard as the reference infer() uses it.
        let prompt = input_ids.as_slice();
        let n_new = generated.len();
        let run = |ngram: NgramGuard| {
            let opts = GenerateOptions {
                max_new_tokens: n_new,
                sampling: Sampling::Greedy,
                ngram,
                ignore_eos: false,
            };
            let mut cache = model.new_cache(seq + n_new).unwrap();
            let mut seen = Vec::new();
            let g = generate(&model, embeds, prompt, &opts, &mut cache, cfg.tokens.eos, &mut |t| {
                seen.push(t);
                true
            })
            .unwrap();
            assert_eq!(seen, g.ids, "{name}: callback sees every id");
            g
        };
        let g = run(NgramGuard::Off);
        assert_eq!(g.ids, generated, "{name}: generate() without guard");
        let kw = &lm["hf_generate_kwargs"];
        let size = kw["no_repeat_ngram_size"].as_u64().unwrap() as usize;
        assert_eq!(kw["max_new_tokens"].as_u64().unwrap() as usize, n_new);
        let hf = run(NgramGuard::Hf { size });
        let hf_ids = ids(&lm["hf_generate_ids"]);
        assert_eq!(hf.ids, hf_ids, "{name}: generate() with the HF guard");
        let expect_stop = if hf_ids.last() == Some(&cfg.tokens.eos) {
            StopReason::Eos
        } else {
            StopReason::MaxNewTokens
        };
        assert_eq!(hf.stop, expect_stop);
        eprintln!("{name}: ids ok ({} greedy, {} hf)", generated.len(), hf_ids.len());
    }
}

#[test]
fn split_and_chunked_prefill_match_goldens() {
    // Feeding the prompt in two parts (second part through the cache) must give the same
    // last logits as one pass: positions and the causal mask continue from the cache.
    // Small query chunks in attention must not change anything either.
    let shared = shared_or_skip!();
    let (_, model) = load_model(&shared);
    let case = Case::load(&shared.join("golden/mini/portrait_tiny"));
    let embeds = case.tensor("inputs_embeds");
    let seq = embeds.dim(0).unwrap();
    let mut cache = model.new_cache(seq).unwrap();
    let split = seq / 2;
    model
        .forward(&embeds.narrow(0, 0, split).unwrap(), &mut cache, &mut Taps::off())
        .unwrap();
    let last = model
        .forward(
            &embeds.narrow(0, split, seq - split).unwrap(),
            &mut cache,
            &mut Taps::off(),
        )
        .unwrap();
    let d = max_abs_diff(&last, case.tensor("prefill_logits_last"));
    assert!(d <= case.atol("prefill_logits_last"), "split prefill: {d}");
    // Query chunks of 7 rows (4 heads × 7 rows × ≤ 82 keys) give the same logits.
    let mut chunked = model.clone();
    chunked.set_attention_chunk(4 * 7 * seq);
    let mut c2 = chunked.new_cache(seq).unwrap();
    let mut taps = Taps::recording();
    chunked.forward(embeds, &mut c2, &mut taps).unwrap();
    for t in [
        "layer0_out",
        "layer1_out",
        "final_hidden",
        "prefill_logits_last",
        "prefill_logits",
    ] {
        assert_close(&case, t, taps.get(t).unwrap());
    }
    // The cache is full now: one more position is an error, not a panic or a regrowth.
    let one = embeds.narrow(0, 0, 1).unwrap();
    assert!(model.forward(&one, &mut cache, &mut Taps::off()).is_err());
}

// Bounds for the reduced precisions, measured on the five mini cases (AMX kernel path):
//   bf16: prefill rel L2 2.9e-3..3.4e-3, decode median ≤ 3.1e-3, worst row 7.6e-2,
//         top-1 123/125 (0.984);
//   int8: prefill 2.2e-2..2.6e-2, decode median ≤ 2.3e-2, worst row 3.8e-2,
//         top-1 120/125 (0.960).
// A bf16 weight keeps 8 significant bits (≤ 2^-9 relative rounding), so typical rows sit
// near 3e-3; int8 per-channel weights with int8 per-row activations give about 2e-2. The
// typical-row bounds leave ~3x headroom (a wrong row, a dropped expert or a misplaced
// cache row gives errors of order 1 and fails them). The worst-row bound is loose on
// purpose: the random mini model has near-tied router scores, and the outlier rows
// (7.6e-2 for bf16 on wide_gundam) are tokens sent to a different expert. Top-1 bounds
// allow a couple more flips than measured over 125 teacher-forced steps.

#[test]
fn bf16_tracks_goldens() {
    check_precision(
        Precision::Bf16,
        &Bounds {
            prefill_rel: 1e-2,
            decode_median_rel: 1e-2,
            decode_max_rel: 0.2,
            min_top1: 0.95,
        },
    );
}

#[test]
fn int8_tracks_goldens() {
    check_precision(
        Precision::Int8,
        &Bounds {
            prefill_rel: 6e-2,
            decode_median_rel: 6e-2,
            decode_max_rel: 0.2,
            min_top1: 0.9,
        },
    );
}
