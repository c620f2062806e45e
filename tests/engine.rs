//! End to end through the library API: a golden case's input.png and prompt through
//! `Engine::run_with` on the mini model folder give exactly the reference's greedy ids.

mod common;

use common::{ids, mode_of};
use deepseek_ocr::generate::{GenerateOptions, NgramGuard, Sampling};
use deepseek_ocr::input::image::load_image;
use deepseek_ocr::nn::Precision;
use deepseek_ocr::{Engine, EngineOptions, Mode, RunOptions, Task};

/// The parity options: f32 weights, exact against the goldens (the default is `auto`).
fn f32_options() -> EngineOptions {
    EngineOptions {
        precision: Precision::F32,
        ..EngineOptions::default()
    }
}

#[test]
fn every_case_end_to_end_gives_the_reference_ids() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let engine = Engine::load(&mini, f32_options()).unwrap();
    for dir in common::golden_cases(&shared) {
        let case = common::Case::load(&dir);
        let image = load_image(
            &dir.join(case.json["input_image"]["file"].as_str().unwrap_or("input.png")),
            &Default::default(),
        )
        .unwrap();
        let greedy = ids(&case, "generated_ids");
        let hf = ids(&case, "hf_generate_ids");
        let task = Task::Prompt(case.json["prompt"].as_str().unwrap().to_string());
        let run = |ngram: NgramGuard, n: usize, streamed: &mut String| {
            let opts = RunOptions {
                mode: mode_of(&case),
                task: task.clone(),
                generate: GenerateOptions {
                    max_new_tokens: n,
                    sampling: Sampling::Greedy,
                    ngram,
                    ignore_eos: false,
                },
            };
            engine
                .run_with(&image, &opts, Some(&mut |s: &str| streamed.push_str(s)))
                .unwrap()
        };
        let mut streamed = String::new();
        let out = run(NgramGuard::Off, greedy.len(), &mut streamed);
        assert_eq!(
            out.prompt_tokens,
            case.json["tokens"]["seq_len"].as_u64().unwrap() as usize,
            "{}",
            case.name()
        );
        assert_eq!(
            out.image_tokens,
            case.json["preprocessing"]["num_image_tokens"].as_u64().unwrap() as usize
        );
        assert_eq!(out.token_ids, greedy, "{}: greedy ids (n-gram guard off)", case.name());
        // Streaming deltas add up to the decoded text (up to the trimming of the final text).
        assert_eq!(streamed.trim(), out.text, "{}: streamed text", case.name());
        let kw = &case.json["lm"]["hf_generate_kwargs"];
        let size = kw["no_repeat_ngram_size"].as_u64().unwrap() as usize;
        let n = kw["max_new_tokens"].as_u64().unwrap() as usize;
        let out = run(NgramGuard::Hf { size }, n, &mut String::new());
        assert_eq!(
            out.token_ids,
            hf,
            "{}: HF generate ids (n-gram guard {size})",
            case.name()
        );
        eprintln!(
            "{}: {} greedy ids and {} HF ids match",
            case.name(),
            greedy.len(),
            hf.len()
        );
    }
}

#[test]
fn default_task_and_streaming_api() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let mut opts = EngineOptions::default();
    opts.defaults.mode = Mode::TINY;
    opts.defaults.generate.max_new_tokens = 6;
    let engine = Engine::load(&mini, opts).unwrap();
    let image = load_image(&mini.join("portrait_tiny/input.png"), &Default::default()).unwrap();
    let a = engine.run(&image, &Task::Markdown).unwrap();
    let mut pieces = Vec::new();
    let b = engine
        .run_streaming(&image, &Task::Markdown, &mut |s| pieces.push(s.to_string()))
        .unwrap();
    assert_eq!(a.token_ids, b.token_ids);
    assert!(a.token_ids.len() <= 6 && !a.token_ids.is_empty());
    assert!(a.kv_cache_bytes > 0);
}

#[test]
fn memory_budget_is_enforced_before_the_page_runs() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let opts = EngineOptions {
        memory_budget: Some(1 << 20),
        ..EngineOptions::default()
    };
    let engine = Engine::load(&mini, opts).unwrap();
    let image = load_image(&mini.join("portrait_tiny/input.png"), &Default::default()).unwrap();
    let e = engine.run(&image, &Task::Free).unwrap_err().to_string();
    assert!(e.contains("memory") && e.contains("budget"), "{e}");
}

#[test]
fn wrong_model_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::load(dir.path(), EngineOptions::default()).err().unwrap();
    // The hint is kept apart from the message.
    let e = format!("{e}\nhint: {}", e.hint());
    assert!(e.contains("config.json") && e.contains("hint"), "{e}");
    let e = Engine::load(&dir.path().join("nope"), EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn fast_precisions_run_and_hold_less_memory() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let case = common::Case::load(&mini.join("portrait_tiny"));
    let greedy = ids(&case, "generated_ids");
    let image = load_image(&mini.join("portrait_tiny/input.png"), &Default::default()).unwrap();
    let f32_bytes = Engine::load(&mini, f32_options()).unwrap().resident_weights_bytes();
    for precision in [Precision::Bf16, Precision::Int8] {
        let engine = Engine::load(
            &mini,
            EngineOptions {
                precision,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        assert!(engine.resident_weights_bytes() < f32_bytes * 3 / 4, "{precision}");
        let opts = RunOptions {
            mode: Mode::TINY,
            task: Task::Prompt(case.json["prompt"].as_str().unwrap().to_string()),
            generate: GenerateOptions {
                max_new_tokens: 8,
                ngram: NgramGuard::Off,
                ..GenerateOptions::default()
            },
        };
        let out = engine.run_with(&image, &opts, None).unwrap();
        // The first token has a wide margin in the golden (prefill); a fast mode must agree there.
        assert_eq!(out.token_ids.len(), 8, "{precision}");
        assert_eq!(out.token_ids[0], greedy[0], "{precision}: first greedy token");
    }
}
