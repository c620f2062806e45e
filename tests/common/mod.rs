//! Shared helpers for the integration tests: where the shared golden data is, and
//! tensor comparison with stated tolerances.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// The shared data folder (`DSOCR_SHARED_DIR`, default `../shared`), or `None` with a loud
/// message when it is absent. `.ci/run` sets the variable and fails if the folder is missing,
/// so a skip can only happen on a developer's machine without the data.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DSOCR_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("golden").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n!!!!! SKIPPED: shared golden data not found at {} (set DSOCR_SHARED_DIR) !!!!!\n",
            dir.display()
        );
        None
    }
}

/// Returns the shared dir or returns from the test early (with a loud message).
#[macro_export]
macro_rules! shared_or_skip {
    () => {
        match common::shared_dir() {
            Some(d) => d,
            None => return,
        }
    };
}

/// All case folders of the golden mini model (those holding a golden.json).
pub fn golden_cases(shared: &Path) -> Vec<PathBuf> {
    golden_cases_of(shared, "mini")
}

/// All case folders of the golden set `golden/{set}` (`mini`, `mini-ocr2`).
pub fn golden_cases_of(shared: &Path, set: &str) -> Vec<PathBuf> {
    let mini = shared.join("golden").join(set);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&mini)
        .expect("the golden set is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.json").is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no golden cases under {}", mini.display());
    v
}

/// A parsed golden case.
/// The golden case's preprocessing mode, as golden.json states it.
pub fn mode_of(case: &Case) -> deepseek_ocr::Mode {
    let m = &case.json["mode"];
    deepseek_ocr::Mode {
        base_size: m["base_size"].as_u64().unwrap() as usize,
        image_size: m["image_size"].as_u64().unwrap() as usize,
        crop: m["crop_mode"].as_bool().unwrap(),
        max_tiles: 9,
    }
}

/// The token ids `lm.KEY` of the golden case.
pub fn ids(case: &Case, key: &str) -> Vec<u32> {
    case.json["lm"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub struct Case {
    pub dir: PathBuf,
    pub json: serde_json::Value,
    pub tensors: std::collections::HashMap<String, Tensor>,
}

impl Case {
    pub fn load(dir: &Path) -> Case {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join("golden.safetensors"), &candle_core::Device::Cpu).unwrap();
        Case {
            dir: dir.to_path_buf(),
            json,
            tensors,
        }
    }
    pub fn name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }
    pub fn atol(&self, name: &str) -> f32 {
        self.json["tolerances"]["atol"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("no tolerance for {name}")) as f32
    }
    pub fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}: no golden tensor {name}", self.name()))
    }
}

/// Max |a - b| after checking shapes.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = b
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) })
}

/// Asserts `|actual - golden| <= atol` elementwise for a golden tensor of `case`.
pub fn assert_close(case: &Case, name: &str, actual: &Tensor) {
    let golden = case.tensor(name);
    let atol = case.atol(name);
    assert_eq!(actual.dims(), golden.dims(), "{}: {name}: shape", case.name());
    let d = max_abs_diff(actual, golden);
    assert!(d <= atol, "{}: {name}: max abs diff {d:e} > atol {atol:e}", case.name());
    eprintln!("{}: {name}: max abs diff {d:e} <= {atol:e}", case.name());
}
