//! Batched generation: pages decoded together (continuous batching through `BatchRunner`
//! and the staged `Engine` API) give each page exactly the ids it gets alone.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use deepseek_ocr::engine::{BatchRunner, PageJob, StopReason};
use deepseek_ocr::generate::{GenerateOptions, NgramGuard, Sampling};
use deepseek_ocr::input::image::load_image;
use deepseek_ocr::nn::{Precision, Taps};
use deepseek_ocr::{Engine, EngineOptions, Mode, RunOptions, Task};
use image::RgbImage;

fn mode_of(case: &common::Case) -> Mode {
    let m = &case.json["mode"];
    Mode {
        base_size: m["base_size"].as_u64().unwrap() as usize,
        image_size: m["image_size"].as_u64().unwrap() as usize,
        crop: m["crop_mode"].as_bool().unwrap(),
        max_tiles: 9,
    }
}

fn ids(case: &common::Case, key: &str) -> Vec<u32> {
    case.json["lm"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// One golden case as a page: image, options, the reference ids.
struct Golden {
    name: String,
    image: RgbImage,
    mode: Mode,
    prompt: String,
    greedy: Vec<u32>,
    hf: Vec<u32>,
    hf_size: usize,
}

fn goldens() -> Option<(std::path::PathBuf, Vec<Golden>)> {
    let shared = common::shared_dir()?;
    let cases = common::golden_cases(&shared)
        .into_iter()
        .map(|dir| {
            let case = common::Case::load(&dir);
            let file = case.json["input_image"]["file"].as_str().unwrap_or("input.png");
            Golden {
                name: case.name(),
                image: load_image(&dir.join(file), &Default::default()).unwrap(),
                mode: mode_of(&case),
                prompt: case.json["prompt"].as_str().unwrap().to_string(),
                greedy: ids(&case, "generated_ids"),
                hf: ids(&case, "hf_generate_ids"),
                hf_size: case.json["lm"]["hf_generate_kwargs"]["no_repeat_ngram_size"]
                    .as_u64()
                    .unwrap() as usize,
            }
        })
        .collect();
    Some((shared.join("golden/mini"), cases))
}

/// The mini model with f32 weights, the precision whose greedy ids are the reference's
/// (the default precision is the fastest one of this CPU).
fn f32_engine(mini: &Path) -> Engine {
    Engine::load(
        mini,
        EngineOptions {
            precision: Precision::F32,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn opts(g: &Golden, n: usize, ngram: NgramGuard) -> RunOptions {
    RunOptions {
        mode: g.mode,
        task: Task::Prompt(g.prompt.clone()),
        generate: GenerateOptions {
            max_new_tokens: n,
            sampling: Sampling::Greedy,
            ngram,
            ignore_eos: false,
        },
    }
}

/// The jobs of the mixed batch: every case, each with its full greedy length and again
/// truncated, half of them with the HF n-gram guard, so pages of every mode and of
/// different lengths share steps and finish at different times.
fn mixed_jobs(cases: &[Golden]) -> Vec<(usize, RunOptions)> {
    let mut jobs = Vec::new();
    for (i, g) in cases.iter().enumerate() {
        jobs.push((i, opts(g, g.greedy.len(), NgramGuard::Off)));
        let short = 3 + (7 * i) % (g.greedy.len() - 3);
        let guard = if i % 2 == 0 {
            NgramGuard::Hf { size: g.hf_size }
        } else {
            NgramGuard::Off
        };
        jobs.push((i, opts(g, short, guard)));
    }
    jobs
}

/// Runs `jobs` through a `BatchRunner` of `batch`, returning each job's ids and stop reason.
fn batched(engine: &Engine, cases: &[Golden], jobs: &[(usize, RunOptions)], batch: usize) -> BTreeMap<usize, Vec<u32>> {
    let mut got = BTreeMap::new();
    let mut runner = BatchRunner::new(engine, batch);
    let stats = runner
        .run(
            jobs.iter()
                .enumerate()
                .map(|(j, (i, o))| PageJob::new(j, cases[*i].image.clone(), o.clone())),
            |j, out, _| {
                got.insert(j, out?.token_ids);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(stats.pages, jobs.len());
    assert_eq!(stats.max_live, batch.min(jobs.len()), "the batch must fill up");
    // Every live page holds a cache, and the pool never holds more than the batch.
    assert!(
        stats.max_live <= stats.max_caches_held && stats.max_caches_held <= batch,
        "{} caches held at once ({} allocated in all) for batch {batch} with {} pages live",
        stats.max_caches_held,
        stats.caches_allocated,
        stats.max_live
    );
    got
}

fn single(engine: &Engine, cases: &[Golden], jobs: &[(usize, RunOptions)]) -> BTreeMap<usize, Vec<u32>> {
    jobs.iter()
        .enumerate()
        .map(|(j, (i, o))| (j, engine.run_with(&cases[*i].image, o, None).unwrap().token_ids))
        .collect()
}

#[test]
fn f32_batched_ids_equal_single_ids_on_every_golden_case() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let jobs = mixed_jobs(&cases);
    let alone = single(&engine, &cases, &jobs);
    // Alone, the full-length greedy runs are the reference's ids (as tests/engine.rs checks).
    for (j, (i, o)) in jobs.iter().enumerate() {
        let g = &cases[*i];
        let n = o.generate.max_new_tokens;
        let want = match o.generate.ngram {
            NgramGuard::Off => &g.greedy[..n],
            _ => &g.hf[..n],
        };
        assert_eq!(alone[&j], want, "{} alone ({n} ids, {:?})", g.name, o.generate.ngram);
    }
    for batch in [2, 3, 10] {
        let got = batched(&engine, &cases, &jobs, batch);
        for (j, (i, _)) in jobs.iter().enumerate() {
            assert_eq!(got[&j], alone[&j], "{}: job {j} in batch {batch}", cases[*i].name);
        }
    }
}

/// bf16 and int8: batched pages give the ids they give alone (the packed kernels compute
/// each row of a thin GEMM like a single-row product).
#[test]
fn fast_precisions_batched_ids_equal_single_ids() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    for precision in [Precision::Bf16, Precision::Int8] {
        let engine = Engine::load(
            &mini,
            EngineOptions {
                precision,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let jobs = mixed_jobs(&cases);
        let alone = single(&engine, &cases, &jobs);
        let got = batched(&engine, &cases, &jobs, 4);
        for (j, (i, _)) in jobs.iter().enumerate() {
            assert_eq!(got[&j], alone[&j], "{precision}: {} job {j}", cases[*i].name);
        }
    }
}

#[test]
fn a_cancelled_page_stops_and_the_others_are_unaffected() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let g = &cases[0];
    let o = opts(g, g.greedy.len(), NgramGuard::Off);
    let mut pieces = 0usize;
    let mut results = BTreeMap::new();
    let mut runner = BatchRunner::new(&engine, 3);
    let jobs = vec![
        PageJob::new(0, g.image.clone(), o.clone()),
        PageJob {
            tag: 1,
            image: g.image.clone(),
            opts: o.clone(),
            // The client "goes away" after its third piece of text.
            on_text: Some(Box::new(|_: &str| {
                pieces += 1;
                pieces < 3
            })),
        },
        PageJob::new(2, cases[1].image.clone(), opts(&cases[1], 25, NgramGuard::Off)),
    ];
    runner
        .run(jobs, |tag, out, _| {
            results.insert(tag, out?);
            Ok(())
        })
        .unwrap();
    assert_eq!(results[&0].token_ids, g.greedy);
    assert!(matches!(results[&0].stop, StopReason::Eos | StopReason::MaxNewTokens));
    assert_eq!(results[&1].stop, StopReason::Callback);
    assert!(results[&1].token_ids.len() < g.greedy.len());
    assert_eq!(results[&1].token_ids[..], g.greedy[..results[&1].token_ids.len()]);
    assert_eq!(results[&2].token_ids, cases[1].greedy);
}

#[test]
fn staged_api_steps_pages_of_different_lengths_together() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let (a, b) = (&cases[0], &cases[cases.len() - 1]);
    let mut pa = engine
        .admit(
            engine
                .prepare(&a.image, &opts(a, 25, NgramGuard::Off), &mut Taps::off())
                .unwrap(),
            None,
            None,
        )
        .unwrap();
    let mut pb = engine
        .admit(
            engine
                .prepare(&b.image, &opts(b, 9, NgramGuard::Off), &mut Taps::off())
                .unwrap(),
            None,
            None,
        )
        .unwrap();
    engine.prefill(&mut pa, &mut Taps::off()).unwrap();
    // `a` runs four steps alone before `b` joins: their caches now differ in length.
    for _ in 0..4 {
        assert_eq!(engine.step(&mut [&mut pa]).unwrap(), 1);
    }
    engine.prefill(&mut pb, &mut Taps::off()).unwrap();
    let mut steps = 0;
    while !(pa.is_finished() && pb.is_finished()) {
        steps += engine.step(&mut [&mut pa, &mut pb]).unwrap();
    }
    assert!(pa.sequence().cache().len() != pb.sequence().cache().len());
    let (oa, _) = engine.finish(pa).unwrap();
    let (ob, _) = engine.finish(pb).unwrap();
    assert_eq!(oa.token_ids, a.greedy);
    assert_eq!(ob.token_ids, b.greedy[..9]);
    assert_eq!(steps, (25 - 1 - 4) + (9 - 1));
}

/// The decode logits of every golden page, stepped alone and stepped together with the
/// others: bit for bit the same in every precision (a row of a batched step is computed as
/// a single-row step computes it; see `lm::rows`).
#[test]
fn batched_step_logits_are_bitwise_those_of_single_steps() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        let engine = Engine::load(
            &mini,
            EngineOptions {
                precision,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let start = |g: &Golden| {
            let prepared = engine
                .prepare(&g.image, &opts(g, 12, NgramGuard::Off), &mut Taps::off())
                .unwrap();
            let mut page = engine.admit(prepared, None, None).unwrap();
            page.sequence_mut().record_logits();
            engine.prefill(&mut page, &mut Taps::off()).unwrap();
            page
        };
        let bits = |page: &deepseek_ocr::engine::Page<'_>| -> Vec<Vec<u32>> {
            page.sequence()
                .recorded_logits()
                .iter()
                .map(|t| {
                    t.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                })
                .collect()
        };
        let mut alone = Vec::new();
        for g in &cases {
            let mut p = start(g);
            while !p.is_finished() {
                engine.step(&mut [&mut p]).unwrap();
            }
            alone.push(bits(&p));
        }
        let mut pages: Vec<_> = cases.iter().map(start).collect();
        while pages.iter().any(|p| !p.is_finished()) {
            let mut refs: Vec<&mut deepseek_ocr::engine::Page<'_>> = pages.iter_mut().collect();
            engine.step(&mut refs).unwrap();
        }
        for ((g, p), want) in cases.iter().zip(&pages).zip(&alone) {
            let got = bits(p);
            assert!(got.len() > 1, "{}: logits recorded", g.name);
            assert!(
                got == *want,
                "{precision}: {}: batched logits differ from the page alone",
                g.name
            );
        }
    }
}
