//! `dsocr bench` smoke test: a random-weight model (the mini config, so CI stays fast) runs
//! end to end and the JSON report has the documented schema with sane values.

mod common;

use std::process::Command;

#[test]
fn bench_random_weights_json_schema() {
    let shared = shared_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dsocr"))
        .args([
            "bench",
            "--random-weights",
            "--mode",
            "tiny",
            "--new-tokens",
            "8",
            "--runs",
            "2",
        ])
        .arg("--config")
        .arg(shared.join("golden/mini/config.json"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("decode") && stdout.contains("peak"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    for key in [
        "machine",
        "model",
        "settings",
        "load_s",
        "preprocess_s",
        "vision_s",
        "prefill_s",
        "decode_tok_per_s",
        "page_s",
        "prompt_tokens",
        "image_tokens",
        "kv_cache_bytes",
        "predicted_peak_bytes",
        "peak_rss_bytes",
    ] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    for stat in ["preprocess_s", "vision_s", "prefill_s", "decode_tok_per_s", "page_s"] {
        let (med, min, max) = (
            v[stat]["median"].as_f64().unwrap(),
            v[stat]["min"].as_f64().unwrap(),
            v[stat]["max"].as_f64().unwrap(),
        );
        assert!(min <= med && med <= max && min > 0.0, "{stat}: {min} {med} {max}");
    }
    assert_eq!(v["settings"]["new_tokens"], 8);
    assert_eq!(v["settings"]["mode"], "tiny");
    // The default precision is `auto`, resolved for this CPU.
    assert_eq!(v["settings"]["precision"], deepseek_ocr::nn::Precision::auto().name());
    assert!(v["machine"]["kernels"]["int8_gemm"].is_string());
    assert_eq!(v["image_tokens"], 73);
    assert!(v["kv_cache_bytes"].as_u64().unwrap() > 0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(v["predicted_peak_bytes"].as_u64().unwrap() > 0);
    // The memory plan made before the first page holds.
    let (peak, predicted) = (
        v["peak_rss_bytes"].as_u64().unwrap(),
        v["predicted_peak_bytes"].as_u64().unwrap(),
    );
    assert!(
        peak <= predicted,
        "measured peak {peak} above the prediction {predicted}"
    );
    // The random checkpoint is written once and reused.
    let n = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert_eq!(n, 1);
}
