//! The generation loop on the golden mini model: guards against an independent step loop,
//! stop conditions, sampling reproducibility, and the UTF-8-safe text stream.

mod common;

use candle_core::{DType, Device, Tensor};
use common::Case;
use deepseek_ocr::generate::{generate, GenerateOptions, Generated, NgramGuard, Sampling, StopReason, TextStream};
use deepseek_ocr::lm::DeepseekV2;
use deepseek_ocr::nn::taps::Taps;
use deepseek_ocr::text::Tokenizer;
use deepseek_ocr::{ModelConfig, Weights};

struct Setup {
    model: DeepseekV2,
    embeds: Tensor,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
}

fn setup(shared: &std::path::Path) -> Setup {
    let dir = shared.join("golden/mini");
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let vb = Weights::from_model_dir(&dir)
        .unwrap()
        .var_builder(DType::F32, &Device::Cpu);
    let model = DeepseekV2::load(vb, &cfg.lm).unwrap();
    let case = Case::load(&dir.join("portrait_tiny"));
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<u32>>()
    };
    Setup {
        model,
        embeds: case.tensor("inputs_embeds").clone(),
        prompt: ids(&case.json["tokens"]["input_ids"]),
        greedy: ids(&case.json["lm"]["generated_ids"]),
    }
}

fn run(s: &Setup, opts: &GenerateOptions, cache_len: usize, eos: u32, stop_after: Option<usize>) -> Generated {
    let mut cache = s.model.new_cache(cache_len).unwrap();
    let mut n = 0;
    generate(&s.model, &s.embeds, &s.prompt, opts, &mut cache, eos, &mut |_| {
        n += 1;
        stop_after != Some(n)
    })
    .unwrap()
}

fn opts(max_new_tokens: usize, sampling: Sampling, ngram: NgramGuard) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        sampling,
        ngram,
        ignore_eos: false,
    }
}

/// Brute-force ban sets, written from spec §9.2 independently of the library.
fn banned(guard: &NgramGuard, seq: &[u32], prompt_len: usize) -> Vec<u32> {
    let (hist, n, window, white): (&[u32], usize, usize, Vec<u32>) = match guard {
        NgramGuard::Off => return vec![],
        NgramGuard::Hf { size } => (seq, *size, usize::MAX, vec![]),
        NgramGuard::Vllm {
            size,
            window,
            whitelist,
        } => (&seq[prompt_len..], *size, *window, whitelist.clone()),
    };
    let mut out = vec![];
    if hist.len() < n {
        return out;
    }
    let tail = &hist[hist.len() + 1 - n..];
    for (i, w) in hist.windows(n).enumerate() {
        if i.saturating_add(window) >= hist.len() && w[..n - 1] == *tail && !white.contains(&w[n - 1]) {
            out.push(w[n - 1]);
        }
    }
    out
}

/// The step loop written out: prefill, then per step ban, argmax (ties low), feed back.
fn reference_loop(s: &Setup, guard: &NgramGuard, steps: usize) -> Vec<u32> {
    let mut cache = s.model.new_cache(s.prompt.len() + steps).unwrap();
    let mut logits = s.model.forward(&s.embeds, &mut cache, &mut Taps::off()).unwrap();
    let mut seq = s.prompt.clone();
    for _ in 0..steps {
        let mut row: Vec<f32> = logits.to_vec1().unwrap();
        for b in banned(guard, &seq, s.prompt.len()) {
            row[b as usize] = f32::NEG_INFINITY;
        }
        let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32;
        seq.push(best);
        let e = s.model.embed(&Tensor::new(&[best], &Device::Cpu).unwrap()).unwrap();
        logits = s.model.forward(&e, &mut cache, &mut Taps::off()).unwrap();
    }
    seq.split_off(s.prompt.len())
}

#[test]
fn ngram_guards_match_an_independent_loop_and_change_the_output() {
    let shared = shared_or_skip!();
    let s = setup(&shared);
    let n = s.greedy.len();
    // The golden greedy ids repeat a 6-gram 7 positions apart (ids 3..8 and 10..15), so
    // size-3 guards must act, except a window of 5 that cannot see back that far.
    let guards = [
        (NgramGuard::Hf { size: 3 }, true),
        (
            NgramGuard::Vllm {
                size: 3,
                window: 90,
                whitelist: vec![],
            },
            true,
        ),
        (
            NgramGuard::Vllm {
                size: 3,
                window: 90,
                whitelist: vec![3236, 1407, 1795],
            },
            true,
        ),
        (
            NgramGuard::Vllm {
                size: 3,
                window: 5,
                whitelist: vec![],
            },
            false,
        ),
    ];
    let mut outputs = vec![];
    for (g, changes) in &guards {
        let got = run(&s, &opts(n, Sampling::Greedy, g.clone()), s.prompt.len() + n, 1, None);
        assert_eq!(got.stop, StopReason::MaxNewTokens);
        assert_eq!(got.ids, reference_loop(&s, g, n), "{g:?}");
        assert_eq!(got.ids != s.greedy, *changes, "{g:?}: {:?}", got.ids);
        outputs.push(got.ids);
    }
    assert_ne!(outputs[1], outputs[2], "the whitelist must matter");
}

#[test]
fn stop_conditions() {
    let shared = shared_or_skip!();
    let s = setup(&shared);
    let len = s.prompt.len();
    let greedy = |max| opts(max, Sampling::Greedy, NgramGuard::Off);

    // EOS: pretend the 4th greedy id is EOS.
    let eos = s.greedy[3];
    let g = run(&s, &greedy(25), len + 25, eos, None);
    assert_eq!((g.stop, g.ids.as_slice()), (StopReason::Eos, &s.greedy[..4]));
    let mut o = greedy(10);
    o.ignore_eos = true;
    let g = run(&s, &o, len + 25, eos, None);
    assert_eq!((g.stop, g.ids.as_slice()), (StopReason::MaxNewTokens, &s.greedy[..10]));

    // The callback stops after its 2nd id; the cache budget stops after 1 + 5 ids.
    let g = run(&s, &greedy(25), len + 25, 1, Some(2));
    assert_eq!((g.stop, g.ids.as_slice()), (StopReason::Callback, &s.greedy[..2]));
    let g = run(&s, &greedy(25), len + 5, 1, None);
    assert_eq!((g.stop, g.ids.as_slice()), (StopReason::CacheFull, &s.greedy[..6]));
    let g = run(&s, &greedy(0), len + 5, 1, None);
    assert!(g.ids.is_empty());
    // `cache_positions` is exactly enough: 25 new ids fit in prompt + 24 positions.
    let exact = deepseek_ocr::generate::cache_positions(len, 25, 8192);
    assert_eq!(exact, len + 24);
    let g = run(&s, &greedy(25), exact, 1, None);
    assert_eq!((g.stop, g.ids.as_slice()), (StopReason::MaxNewTokens, &s.greedy[..]));
    assert_eq!(deepseek_ocr::generate::cache_positions(len, 25, len + 3), len + 3);

    // Misuse is an error, not a panic.
    let mut cache = s.model.new_cache(len + 5).unwrap();
    assert!(generate(
        &s.model,
        &s.embeds,
        &s.prompt[1..],
        &greedy(3),
        &mut cache,
        1,
        &mut |_| true
    )
    .is_err());
    let mut small = s.model.new_cache(len - 1).unwrap();
    assert!(generate(&s.model, &s.embeds, &s.prompt, &greedy(3), &mut small, 1, &mut |_| true).is_err());
    s.model
        .forward(&s.embeds.narrow(0, 0, 2).unwrap(), &mut cache, &mut Taps::off())
        .unwrap();
    assert!(generate(&s.model, &s.embeds, &s.prompt, &greedy(3), &mut cache, 1, &mut |_| true).is_err());
}

#[test]
fn sampling_is_reproducible_and_near_greedy_at_low_temperature() {
    let shared = shared_or_skip!();
    let s = setup(&shared);
    let len = s.prompt.len();
    let sample = |seed, temperature| {
        opts(
            12,
            Sampling::Sample {
                temperature,
                top_k: Some(50),
                top_p: Some(0.95),
                seed,
            },
            NgramGuard::Off,
        )
    };
    let a = run(&s, &sample(7, 1.5), len + 12, 1, None);
    assert_eq!(a.ids, run(&s, &sample(7, 1.5), len + 12, 1, None).ids);
    assert_ne!(a.ids, run(&s, &sample(8, 1.5), len + 12, 1, None).ids);
    assert_ne!(a.ids, s.greedy[..12]);
    // At a tiny temperature sampling is argmax.
    assert_eq!(run(&s, &sample(7, 1e-4), len + 12, 1, None).ids, s.greedy[..12]);
}

#[test]
fn text_stream_never_splits_characters() {
    let shared = shared_or_skip!();
    let tok = Tokenizer::from_model_dir(&shared.join("tokenizer")).unwrap();
    for text in [
        "深度求索发布了光学上下文压缩模型，准确率约为97%。",
        "Café naïve — 😀 ✓",
        "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# 标题",
    ] {
        let ids = tok.encode_plain(text).unwrap();
        let mut stream = TextStream::new(&tok);
        let mut out = String::new();
        let mut held_back = 0;
        for &id in &ids {
            match stream.push(id).unwrap() {
                Some(delta) => {
                    assert!(!delta.contains('\u{FFFD}'), "{text}: {delta:?}");
                    out.push_str(&delta);
                }
                None => held_back += 1,
            }
        }
        if let Some(rest) = stream.finish().unwrap() {
            out.push_str(&rest);
        }
        assert_eq!(out, text);
        assert_eq!(out, tok.decode(&ids).unwrap());
        if text.contains('😀') {
            assert!(held_back > 0, "byte-level pieces of the emoji must be held back");
        }
    }
    // An incomplete character at the very end is flushed by finish() as decoded.
    let emoji = tok.encode_plain("😀").unwrap();
    assert!(emoji.len() > 1);
    let mut stream = TextStream::new(&tok);
    assert_eq!(stream.push(emoji[0]).unwrap(), None);
    assert_eq!(stream.finish().unwrap(), Some(tok.decode(&emoji[..1]).unwrap()));
}
