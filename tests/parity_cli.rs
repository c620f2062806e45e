//! `dsocr debug parity`: PASS for every stage of every shared case, and loud failures for a
//! tampered case (a perturbed tensor fails, an unknown stage is "not implemented").

mod common;

use std::collections::HashMap;
use std::process::Command;

use candle_core::{Device, Tensor};

fn dsocr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsocr"))
}

#[test]
fn every_shared_case_passes_and_dump_matches_golden_names() {
    let shared = shared_or_skip!();
    let cases = common::golden_cases(&shared);
    let out = dsocr().args(["debug", "parity"]).args(&cases).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(text.matches(" 0 failed").count(), cases.len(), "{text}");
    // Every golden tensor is listed (none skipped).
    for dir in &cases {
        let golden = candle_core::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu).unwrap();
        for name in golden.keys() {
            assert!(text.contains(&format!("  {name} ")), "{name} not reported");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.safetensors");
    let out = dsocr()
        .args(["debug", "parity"])
        .arg(&cases[0])
        .arg("--dump")
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success());
    let ours = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let golden = candle_core::safetensors::load(cases[0].join("golden.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ours.len(), golden.len());
    for (k, g) in &golden {
        assert_eq!(ours[k].dims(), g.dims(), "{k}");
    }
}

#[test]
fn tampered_case_fails_loudly() {
    let shared = shared_or_skip!();
    let src = shared.join("golden/mini/portrait_tiny");
    let model = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(shared.join("golden/mini").join(f), model.path().join(f)).unwrap();
    }
    let case = model.path().join("case");
    std::fs::create_dir(&case).unwrap();
    for f in ["golden.json", "input.png", "view_global.png"] {
        std::fs::copy(src.join(f), case.join(f)).unwrap();
    }
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("golden.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let s = tensors["sam_global"].clone();
    tensors.insert("sam_global".into(), (s + 1e-3).unwrap());
    tensors.insert(
        "dbg_future_stage".into(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, case.join("golden.safetensors")).unwrap();
    let out = dsocr().args(["debug", "parity"]).arg(&case).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.contains("sam_global") && l.contains("FAIL")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("dbg_future_stage") && l.contains("not implemented")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("clip_global") && l.contains("PASS")),
        "{text}"
    );
}
