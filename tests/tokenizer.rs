//! Tokenizer ids against `shared/tokenizer/expected_ids.json`, prompt building against the
//! golden cases, and the errors for bad prompts and bad tokenizer files.

mod common;

use deepseek_ocr::model::config::TokenIds;
use deepseek_ocr::text::{build_prompt, Tokenizer};
use deepseek_ocr::{Error, ModelConfig};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

const REAL: TokenIds = TokenIds {
    bos: 0,
    eos: 1,
    image: 128815,
};

#[test]
fn real_tokenizer_matches_expected_ids() {
    let shared = shared_or_skip!();
    let dir = shared.join("tokenizer");
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_ids.json")).unwrap()).unwrap();
    assert_eq!(
        tok.vocab_size() as u64,
        exp["vocab_size_with_added_tokens"].as_u64().unwrap()
    );
    let cases = exp["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        assert_eq!(tok.encode_plain(text).unwrap(), want, "{name}: encode");
        assert_eq!(
            tok.decode(&want).unwrap(),
            c["decode"].as_str().unwrap(),
            "{name}: decode"
        );
        let tokens: Vec<String> = want.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        let want_tokens: Vec<String> = c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tokens, want_tokens, "{name}: tokens");
    }
    for c in exp["decode_cases"].as_array().unwrap() {
        assert_eq!(
            tok.decode(&ids(&c["ids"])).unwrap(),
            c["decode"].as_str().unwrap(),
            "{}",
            c["name"]
        );
    }
    // Special ids named in the file.
    assert_eq!(
        tok.image_token_id(REAL.image).unwrap(),
        exp["image_token"]["id"].as_u64().unwrap() as u32
    );
    assert_eq!(tok.token_to_id(exp["bos"]["content"].as_str().unwrap()), Some(0));
    for (id, s) in exp["ngram_whitelist_token_ids"].as_object().unwrap() {
        assert_eq!(tok.token_to_id(s.as_str().unwrap()), Some(id.parse::<u32>().unwrap()));
    }
    // A mismatch between tokenizer and config is reported, not ignored.
    assert!(matches!(tok.image_token_id(4000), Err(Error::Model { .. })));
}

#[test]
fn real_tokenizer_prompt_layout() {
    let shared = shared_or_skip!();
    let tok = Tokenizer::from_model_dir(&shared.join("tokenizer")).unwrap();
    // Surrounding whitespace is stripped (HF plain template): the trailing space adds no 223.
    let p = build_prompt(&tok, "  <image>\nFree OCR. ", 3, &REAL, 8192).unwrap();
    assert_eq!(p.ids, vec![0, 128815, 128815, 128815, 201, 21431, 126041, 16]);
    assert_eq!(p.image_mask, vec![false, true, true, true, false, false, false, false]);
    // Text-only prompt: BOS + text.
    let t = build_prompt(&tok, "Hello", 0, &REAL, 8192).unwrap();
    assert_eq!(t.ids, vec![0, 19923]);
    assert!(t.image_mask.iter().all(|m| !m));
}

#[test]
fn mini_prompt_building_reproduces_golden_input_ids() {
    let shared = shared_or_skip!();
    let mini = shared.join("golden/mini");
    let tok = Tokenizer::from_model_dir(&mini).unwrap();
    let cfg = ModelConfig::from_file(&mini.join("config.json")).unwrap();
    assert_eq!(tok.image_token_id(cfg.tokens.image).unwrap(), 4000);
    for dir in common::golden_cases(&shared) {
        let case = common::Case::load(&dir);
        let j = &case.json;
        let n = j["preprocessing"]["num_image_tokens"].as_u64().unwrap() as usize;
        let p = build_prompt(
            &tok,
            j["prompt"].as_str().unwrap(),
            n,
            &cfg.tokens,
            cfg.lm.max_position_embeddings,
        )
        .unwrap();
        assert_eq!(p.ids, ids(&j["tokens"]["input_ids"]), "{}: input_ids", case.name());
        let mask: Vec<bool> = ids(&j["tokens"]["images_seq_mask"]).iter().map(|&m| m != 0).collect();
        assert_eq!(p.image_mask, mask, "{}: images_seq_mask", case.name());
        assert_eq!(p.image_mask.iter().filter(|&&m| m).count(), n);
    }
}

#[test]
fn bad_prompts_are_request_errors() {
    let shared = shared_or_skip!();
    let tok = Tokenizer::from_model_dir(&shared.join("tokenizer")).unwrap();
    let bad = |text: &str, n: usize, max_len: usize| match build_prompt(&tok, text, n, &REAL, max_len) {
        Err(Error::Request { message, .. }) => message,
        other => panic!("{text:?}: expected a request error, got {other:?}"),
    };
    assert!(bad("Free OCR.", 10, 8192).contains("no `<image>`"));
    assert!(bad("<image><image>\nFree OCR.", 10, 8192).contains("2 `<image>`"));
    assert!(bad("", 10, 8192).contains("empty"));
    assert!(bad(" \n\t ", 0, 8192).contains("empty"));
    assert!(bad("<image>\nFree OCR.", 0, 8192).contains("no image"));
    // 1 BOS + 10 image ids + 4 text ids = 15 positions: no room left at 15, fine at 16.
    assert!(bad("<image>\nFree OCR.", 10, 15).contains("15 positions"));
    assert_eq!(
        build_prompt(&tok, "<image>\nFree OCR.", 10, &REAL, 16).unwrap().len(),
        15
    );
}

#[test]
fn missing_or_corrupt_tokenizer_is_a_model_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Tokenizer::from_model_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(e, Error::Model { .. }) && e.to_string().contains("missing"),
        "{e}"
    );
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, "{\"version\": \"1.0\", \"model\": 42").unwrap();
    let e = Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(e, Error::Model { .. }) && e.to_string().contains("cannot be loaded"),
        "{e}"
    );
    std::fs::write(&path, [0xffu8, 0xfe, 0x00]).unwrap();
    assert!(matches!(Tokenizer::from_file(&path), Err(Error::Model { .. })));
}

#[test]
fn output_text_and_vllm_whitelist_from_the_tokenizer() {
    use deepseek_ocr::generate::ngram::vllm_guard;
    use deepseek_ocr::generate::NgramGuard;
    let shared = shared_or_skip!();
    let real = Tokenizer::from_model_dir(&shared.join("tokenizer")).unwrap();
    let mini = Tokenizer::from_model_dir(&shared.join("golden/mini")).unwrap();
    assert_eq!(
        vllm_guard(&real, 30, 90),
        NgramGuard::Vllm {
            size: 30,
            window: 90,
            whitelist: vec![128821, 128822]
        }
    );
    assert_eq!(
        vllm_guard(&mini, 20, 50),
        NgramGuard::Vllm {
            size: 20,
            window: 50,
            whitelist: vec![4006, 4007]
        }
    );
    // "Hello world.<EOS>" → EOS text removed, whitespace stripped; an EOS mid-text stays.
    let hello = real.encode_plain("\n Hello world.").unwrap();
    let mut ids = hello.clone();
    ids.push(1);
    assert_eq!(real.decode_output(&ids, 1).unwrap(), "Hello world.");
    let mut mid = vec![1];
    mid.extend(&hello);
    assert_eq!(
        real.decode_output(&mid, 1).unwrap(),
        "<｜end▁of▁sentence｜>\n Hello world."
    );
}
