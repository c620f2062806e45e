//! Stage-by-stage comparison with the reference implementation's golden dumps
//! (`dsocr debug parity CASE_DIR`).
//!
//! A case folder holds `golden.json` (inputs, ids, tolerances) and `golden.safetensors`
//! (float32 stage tensors). The engine runs the case's input through every stage with
//! recording taps; every golden tensor is compared by name against the tensor the engine
//! recorded under the same name. A golden tensor the engine does not produce is reported
//! as "not implemented" — never skipped silently.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Within tolerance: max |a − g|, that divided by max |g|, and the tolerance.
    Pass { max_abs: f32, max_rel: f32, atol: f32 },
    /// Outside tolerance.
    Fail { max_abs: f32, max_rel: f32, atol: f32 },
    /// Shapes differ.
    Shape { ours: Vec<usize>, golden: Vec<usize> },
    /// Integer data (ids, grids, counts) equal.
    Exact,
    /// Integer data differ (first difference described).
    Mismatch(String),
    /// The engine does not compute this stage.
    NotImplemented,
}

impl Check {
    /// Whether this entry counts as passing.
    pub fn ok(&self) -> bool {
        matches!(self, Check::Pass { .. } | Check::Exact)
    }
}

/// One line of a report.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<usize>,
    pub check: Check,
}

/// The report of one case.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub case: String,
    pub entries: Vec<Entry>,
}

impl Report {
    /// True when every entry passed.
    pub fn passed(&self) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|e| e.check.ok())
    }

    /// Adds an exact comparison of integer sequences.
    pub fn exact<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, ours: &[T], golden: &[T]) {
        let check = if ours == golden {
            Check::Exact
        } else if ours.len() != golden.len() {
            Check::Mismatch(format!("length {} vs golden {}", ours.len(), golden.len()))
        } else {
            let i = ours.iter().zip(golden).position(|(a, b)| a != b).unwrap_or(0);
            Check::Mismatch(format!("first difference at {i}: {:?} vs golden {:?}", ours[i], golden[i]))
        };
        self.entries.push(Entry { name: name.to_string(), shape: vec![golden.len()], check });
    }

    /// Compares a tensor against its golden with tolerance `atol`.
    pub fn close(&mut self, name: &str, ours: Option<&Tensor>, golden: &Tensor, atol: f32) -> Result<()> {
        let shape = golden.dims().to_vec();
        let check = match ours {
            None => Check::NotImplemented,
            Some(t) if t.dims() != golden.dims() && t.elem_count() != golden.elem_count() => {
                Check::Shape { ours: t.dims().to_vec(), golden: shape.clone() }
            }
            Some(t) => {
                let a = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let g = golden.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let mut max_abs = 0f32;
                let mut max_g = 0f32;
                for (x, y) in a.iter().zip(&g) {
                    let d = (x - y).abs();
                    max_abs = if d.is_nan() { f32::INFINITY } else { max_abs.max(d) };
                    max_g = max_g.max(y.abs());
                }
                let max_rel = if max_g > 0.0 { max_abs / max_g } else { max_abs };
                if max_abs <= atol {
                    Check::Pass { max_abs, max_rel, atol }
                } else {
                    Check::Fail { max_abs, max_rel, atol }
                }
            }
        };
        self.entries.push(Entry { name: name.to_string(), shape, check });
        Ok(())
    }

    /// The report as aligned text lines, one per entry, then a summary line.
    pub fn render(&self) -> String {
        let mut s = format!("case {}\n", self.case);
        for e in &self.entries {
            let shape = format!("{:?}", e.shape);
            let status = match &e.check {
                Check::Pass { max_abs, max_rel, atol } => format!("PASS  max abs {max_abs:.3e}  max rel {max_rel:.3e}  (atol {atol:.1e})"),
                Check::Fail { max_abs, max_rel, atol } => format!("FAIL  max abs {max_abs:.3e}  max rel {max_rel:.3e}  (atol {atol:.1e})"),
                Check::Shape { ours, golden } => format!("FAIL  shape {ours:?}, golden {golden:?}"),
                Check::Exact => "PASS  exact".to_string(),
                Check::Mismatch(m) => format!("FAIL  {m}"),
                Check::NotImplemented => "FAIL  not implemented".to_string(),
            };
            s.push_str(&format!("  {:<36} {:<18} {}\n", e.name, shape, status));
        }
        let failed = self.entries.iter().filter(|e| !e.check.ok()).count();
        s.push_str(&format!("{} passed, {} failed\n", self.entries.len() - failed, failed));
        s
    }
}

/// The golden data of one case folder.
pub struct GoldenCase {
    /// golden.json.
    pub json: serde_json::Value,
    /// golden.safetensors, by name.
    pub tensors: BTreeMap<String, Tensor>,
}

impl GoldenCase {
    /// Reads `golden.json` and `golden.safetensors` of a case folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let jp = dir.join("golden.json");
        let text = std::fs::read_to_string(&jp)
            .map_err(|e| Error::input(&jp, format!("cannot read: {e}"), "pass a golden case folder (golden.json + golden.safetensors)"))?;
        let json = serde_json::from_str(&text).map_err(|e| Error::input(&jp, format!("not valid JSON: {e}"), "regenerate the case"))?;
        let sp = dir.join("golden.safetensors");
        let tensors = candle_core::safetensors::load(&sp, &Device::Cpu)
            .map_err(|e| Error::input(&sp, format!("cannot read: {e}"), "regenerate the case"))?
            .into_iter()
            .collect();
        Ok(Self { json, tensors })
    }

    /// The tolerance of a tensor (golden.json `tolerances.atol`); 0 when absent.
    pub fn atol(&self, name: &str) -> f32 {
        self.json["tolerances"]["atol"][name].as_f64().unwrap_or(0.0) as f32
    }

    /// A list of unsigned integers at a JSON path.
    pub fn ids(&self, path: &[&str]) -> Vec<u32> {
        let mut v = &self.json;
        for p in path {
            v = &v[*p];
        }
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect()).unwrap_or_default()
    }
}

/// Compares every golden tensor with the recorded ones, adding one entry per golden tensor.
pub fn compare_all(report: &mut Report, golden: &GoldenCase, ours: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, g) in &golden.tensors {
        report.close(name, ours.get(name), g, golden.atol(name))?;
    }
    Ok(())
}

/// Writes the recorded tensors that the golden file also holds, under the golden names and
/// shapes, as float32 safetensors.
pub fn dump(path: &Path, golden: &GoldenCase, ours: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (name, g) in &golden.tensors {
        if let Some(t) = ours.get(name) {
            if t.elem_count() == g.elem_count() {
                out.push((name.clone(), t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.reshape(g.dims())?.contiguous()?));
            }
        }
    }
    let map: std::collections::HashMap<String, Tensor> = out.into_iter().collect();
    candle_core::safetensors::save(&map, path).map_err(|e| Error::input(path, format!("cannot write: {e}"), "check the output folder"))?;
    Ok(())
}
