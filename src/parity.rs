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
            Check::Mismatch(format!(
                "first difference at {i}: {:?} vs golden {:?}",
                ours[i], golden[i]
            ))
        };
        self.entries.push(Entry {
            name: name.to_string(),
            shape: vec![golden.len()],
            check,
        });
    }

    /// Compares a tensor against its golden with tolerance `atol`.
    pub fn close(&mut self, name: &str, ours: Option<&Tensor>, golden: &Tensor, atol: f32) -> Result<()> {
        let shape = golden.dims().to_vec();
        let check = match ours {
            None => Check::NotImplemented,
            Some(t) if t.dims() != golden.dims() && t.elem_count() != golden.elem_count() => Check::Shape {
                ours: t.dims().to_vec(),
                golden: shape.clone(),
            },
            Some(t) => {
                let a = t
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
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
        self.entries.push(Entry {
            name: name.to_string(),
            shape,
            check,
        });
        Ok(())
    }

    /// The report as aligned text lines, one per entry, then a summary line.
    pub fn render(&self) -> String {
        let mut s = format!("case {}\n", self.case);
        for e in &self.entries {
            let shape = format!("{:?}", e.shape);
            let status = match &e.check {
                Check::Pass { max_abs, max_rel, atol } => {
                    format!("PASS  max abs {max_abs:.3e}  max rel {max_rel:.3e}  (atol {atol:.1e})")
                }
                Check::Fail { max_abs, max_rel, atol } => {
                    format!("FAIL  max abs {max_abs:.3e}  max rel {max_rel:.3e}  (atol {atol:.1e})")
                }
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
        let text = std::fs::read_to_string(&jp).map_err(|e| {
            Error::input(
                &jp,
                format!("cannot read: {e}"),
                "pass a golden case folder (golden.json + golden.safetensors)",
            )
        })?;
        let json = serde_json::from_str(&text)
            .map_err(|e| Error::input(&jp, format!("not valid JSON: {e}"), "regenerate the case"))?;
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
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect())
            .unwrap_or_default()
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
                out.push((
                    name.clone(),
                    t.to_device(&Device::Cpu)?
                        .to_dtype(DType::F32)?
                        .reshape(g.dims())?
                        .contiguous()?,
                ));
            }
        }
    }
    let map: std::collections::HashMap<String, Tensor> = out.into_iter().collect();
    candle_core::safetensors::save(&map, path)
        .map_err(|e| Error::input(path, format!("cannot write: {e}"), "check the output folder"))?;
    Ok(())
}

fn tensor_ids(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?)
}

/// Runs the case in `case_dir` (input image, mode and prompt as golden.json describes them)
/// through `engine` with recording taps and compares every stage: preprocessing integers,
/// prompt ids, every golden tensor, router choices, argmaxes and greedy ids.
/// With `dump`, writes the engine's tensors under the golden names.
pub fn run_case(engine: &crate::engine::Engine, case_dir: &Path, dump_to: Option<&Path>) -> Result<Report> {
    use crate::engine::RunOptions;
    use crate::generate::{GenerateOptions, NgramGuard, Sampling};
    use crate::nn::Taps;
    use crate::text::Task;
    use crate::vision::Mode;

    let golden = GoldenCase::load(case_dir)?;
    let j = &golden.json;
    let mut report = Report {
        case: case_dir.display().to_string(),
        entries: Vec::new(),
    };
    let bad = |what: &str| {
        Error::input(
            case_dir.join("golden.json"),
            format!("missing or invalid `{what}`"),
            "regenerate the case",
        )
    };

    // Inputs as golden.json describes them.
    let image_file = j["input_image"]["file"].as_str().unwrap_or("input.png");
    let image = crate::input::image::load_image(&case_dir.join(image_file), &Default::default())?;
    let m = &j["mode"];
    let mode = Mode {
        base_size: m["base_size"].as_u64().ok_or_else(|| bad("mode.base_size"))? as usize,
        image_size: m["image_size"].as_u64().ok_or_else(|| bad("mode.image_size"))? as usize,
        crop: m["crop_mode"].as_bool().ok_or_else(|| bad("mode.crop_mode"))?,
        max_tiles: 9,
    };
    let prompt_text = j["prompt"].as_str().ok_or_else(|| bad("prompt"))?;

    // Preprocessing.
    let pre = engine.preprocess(&image, mode)?;
    let grid = golden.ids(&["preprocessing", "images_spatial_crop"]);
    report.exact(
        "preprocessing.images_spatial_crop",
        &[pre.grid.0 as u32, pre.grid.1 as u32],
        &grid,
    );
    let n_tok = j["preprocessing"]["num_image_tokens"]
        .as_u64()
        .ok_or_else(|| bad("preprocessing.num_image_tokens"))? as u32;
    report.exact(
        "preprocessing.num_image_tokens",
        &[pre.num_image_tokens as u32],
        &[n_tok],
    );
    let views: Vec<(String, &image::RgbImage)> = std::iter::once(("view_global.png".to_string(), &pre.global))
        .chain(
            pre.tiles
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("view_crop_{i:02}.png"), t)),
        )
        .collect();
    for (file, view) in views {
        let p = case_dir.join(&file);
        if let Ok(g) = image::open(&p) {
            let g = g.to_rgb8();
            let same = g.dimensions() == view.dimensions() && g.as_raw() == view.as_raw();
            let check = if same {
                Check::Exact
            } else {
                Check::Mismatch("pixels differ".into())
            };
            report.entries.push(Entry {
                name: format!("{file} (u8 pixels)"),
                shape: vec![3, g.height() as usize, g.width() as usize],
                check,
            });
        }
    }

    // Vision and prompt: the engine's first stage, recording the stage tensors.
    let generated = golden.ids(&["lm", "generated_ids"]);
    let steps = golden
        .tensors
        .get("decode_logits")
        .map(|t| t.dim(0))
        .transpose()?
        .unwrap_or(0);
    let opts = RunOptions {
        mode,
        task: Task::Prompt(prompt_text.to_string()),
        generate: GenerateOptions {
            // The teacher-forced pass: the first `steps` golden ids are fed back.
            max_new_tokens: steps + 1,
            sampling: Sampling::Greedy,
            ngram: NgramGuard::Off,
            ignore_eos: true,
        },
    };
    let mut taps = Taps::recording();
    let prepared = engine.prepare(&image, &opts, &mut taps)?;
    report.exact(
        "tokens.input_ids",
        &prepared.prompt.ids,
        &golden.ids(&["tokens", "input_ids"]),
    );
    let mask: Vec<u32> = prepared.prompt.image_mask.iter().map(|&b| b as u32).collect();
    report.exact(
        "tokens.images_seq_mask",
        &mask,
        &golden.ids(&["tokens", "images_seq_mask"]),
    );

    // Prefill with every position's logits, then the teacher-forced decode steps, all
    // through the staged API (the forced ids replace the sampler's choices, the prefill's
    // included).
    let mut page = engine.admit(prepared.clone(), None, None)?;
    page.sequence_mut().force(&generated[..steps.min(generated.len())]);
    page.sequence_mut().record_logits();
    engine.prefill(&mut page, &mut taps)?;
    while !page.is_finished() {
        engine.step(&mut [&mut page])?;
    }
    let rows: Vec<Tensor> = page
        .sequence()
        .recorded_logits()
        .iter()
        .map(|t| t.unsqueeze(0))
        .collect::<candle_core::Result<_>>()?;
    if !rows.is_empty() {
        taps.put("decode_logits", &Tensor::cat(&rows, 0)?);
    }
    drop(page);
    if let (Some(t), true) = (taps.get("moe_l1_topk_idx"), j["lm"].get("moe_l1_topk_idx").is_some()) {
        let want: Vec<u32> = j["lm"]["moe_l1_topk_idx"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                    .filter_map(|x| x.as_u64().map(|x| x as u32))
                    .collect()
            })
            .unwrap_or_default();
        report.exact("lm.moe_l1_topk_idx", &tensor_ids(t)?, &want);
    }
    if let Some(t) = taps.get("prefill_argmax") {
        report.exact(
            "lm.prefill_argmax",
            &tensor_ids(t)?,
            &golden.ids(&["lm", "prefill_argmax"]),
        );
    }

    // Every golden tensor by name.
    let mut ours = taps.into_map();
    add_variant_names(engine, &mut ours)?;
    check_router_ids_by_layer(&mut report, &golden, &ours)?;
    compare_all(&mut report, &golden, &ours)?;

    // Greedy generation, without and with the HF n-gram guard, from the same prepared page.
    let run = |ngram: NgramGuard, n: usize| -> Result<Vec<u32>> {
        let mut p = prepared.clone();
        p.opts.generate = GenerateOptions {
            max_new_tokens: n,
            sampling: Sampling::Greedy,
            ngram,
            ignore_eos: false,
        };
        let mut page = engine.admit(p, None, None)?;
        engine.prefill(&mut page, &mut Taps::off())?;
        while !page.is_finished() {
            engine.step(&mut [&mut page])?;
        }
        Ok(engine.finish(page)?.0.token_ids)
    };
    report.exact(
        "lm.generated_ids (n-gram guard off)",
        &run(NgramGuard::Off, generated.len())?,
        &generated,
    );
    let hf = golden.ids(&["lm", "hf_generate_ids"]);
    if !hf.is_empty() {
        let kw = &j["lm"]["hf_generate_kwargs"];
        let size = kw["no_repeat_ngram_size"].as_u64().unwrap_or(20) as usize;
        let n = kw["max_new_tokens"].as_u64().map(|n| n as usize).unwrap_or(hf.len());
        report.exact(
            &format!("lm.hf_generate_ids (HF n-gram guard {size})"),
            &run(NgramGuard::Hf { size }, n)?,
            &hf,
        );
    }
    if let Some(path) = dump_to {
        dump(path, &golden, &ours)?;
    }
    Ok(report)
}

/// The per-variant tensor-name map: records the tensors the engine computes under the extra
/// names a variant's golden set uses.
///
/// * DeepSeek-OCR 2 goldens name SAM's resized rel-pos tables with their grid
///   (`dbg_sam_block1_rel_pos_h_resized_48`) and hold both RoPE frequency tables
///   (`lm_rope_inv_freq`; the encoder records `enc_rope_inv_freq` itself).
/// * DeepSeek-OCR goldens use the engine's names as they are.
pub fn add_variant_names(engine: &crate::engine::Engine, ours: &mut BTreeMap<String, Tensor>) -> Result<()> {
    if engine.config().variant() != crate::model::ModelVariant::DeepSeekOcr2 {
        return Ok(());
    }
    let mut extra = Vec::new();
    for (name, t) in ours.iter() {
        if name.starts_with("dbg_sam_block") && name.ends_with("_resized") {
            extra.push((format!("{name}_{}", t.dim(0)?), t.clone()));
        }
    }
    // Router choices: the OCR-2 goldens list each position's experts in ascending id order
    // (version 1: descending weight), for every MoE layer.
    for (name, ids) in ours.iter() {
        let Some(layer) = name.strip_prefix("moe_l").and_then(|r| r.strip_suffix("_topk_idx")) else {
            continue;
        };
        let Some(w) = ours.get(&format!("moe_l{layer}_topk_weight")) else {
            continue;
        };
        let (len, k) = ids.dims2()?;
        let ids_v = tensor_ids(ids)?;
        let w_v = w
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (mut si, mut sw) = (Vec::with_capacity(len * k), Vec::with_capacity(len * k));
        for r in 0..len {
            let mut row: Vec<(u32, f32)> = (0..k).map(|c| (ids_v[r * k + c], w_v[r * k + c])).collect();
            row.sort_by_key(|&(id, _)| id);
            si.extend(row.iter().map(|&(id, _)| id));
            sw.extend(row.iter().map(|&(_, w)| w));
        }
        extra.push((name.clone(), Tensor::from_vec(si, (len, k), &Device::Cpu)?));
        extra.push((
            format!("moe_l{layer}_topk_weight"),
            Tensor::from_vec(sw, (len, k), &Device::Cpu)?,
        ));
    }
    let f = engine.language_model().rope_inv_freq();
    extra.push((
        "lm_rope_inv_freq".to_string(),
        Tensor::from_slice(f, f.len(), &Device::Cpu)?,
    ));
    ours.extend(extra);
    Ok(())
}

/// Exact router ids of every MoE layer listed in golden.json `lm.moe_topk_idx`
/// (`{"layer1": [[ids…] per position], …}`, the OCR-2 goldens' form).
pub fn check_router_ids_by_layer(
    report: &mut Report,
    golden: &GoldenCase,
    ours: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let Some(layers) = golden.json["lm"]["moe_topk_idx"].as_object() else {
        return Ok(());
    };
    for (layer, rows) in layers {
        let want: Vec<u32> = rows
            .as_array()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                    .filter_map(|x| x.as_u64().map(|x| x as u32))
                    .collect()
            })
            .unwrap_or_default();
        let n = layer.trim_start_matches("layer");
        let name = format!("lm.moe_topk_idx.{layer}");
        match ours.get(&format!("moe_l{n}_topk_idx")) {
            Some(t) => report.exact(&name, &tensor_ids(t)?, &want),
            None => report.entries.push(Entry {
                name,
                shape: vec![want.len()],
                check: Check::NotImplemented,
            }),
        }
    }
    Ok(())
}
