//! The benchmark harness behind `dsocr bench`: the same measurement every time, on any machine.
//!
//! One warm-up page, then `runs` measured runs of `pages` pages (at least `batch`), decoded
//! `batch` at a time through [`BatchRunner`], with a fixed decode length (EOS ignored), so
//! runs compare. Reports per-stage times (median, min, max), decode tokens/s (prefill
//! excluded), weights and KV-cache bytes, the predicted and the measured peak memory.
//! The JSON schema is documented in the README ("Benchmark JSON").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::engine::{BatchRunner, Engine, EngineOptions, OcrOutput, PageJob, RunOptions};
use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, NgramGuard};
use crate::model::config::{real_config_json, ModelConfig, ModelVariant};
use crate::model::random::{write_placeholder_tokenizer, write_random_checkpoint};
use crate::text::Task;
use crate::vision::Mode;

/// Version of the JSON layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Which model to measure.
#[derive(Debug, Clone)]
pub enum BenchModel {
    /// An existing model folder.
    Dir(PathBuf),
    /// A random-weight checkpoint with this config (the real one when `None`), written once
    /// to `cache_dir` and then loaded like any model folder.
    Random {
        config: Option<PathBuf>,
        cache_dir: PathBuf,
        seed: u64,
        /// Whose real config to use when `config` is `None`.
        variant: ModelVariant,
    },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub model: BenchModel,
    pub engine: EngineOptions,
    pub mode: Mode,
    /// Page image; a synthetic Letter-size page when `None`.
    pub image: Option<PathBuf>,
    /// Pages per run.
    pub pages: usize,
    /// Fixed number of new tokens per page.
    pub new_tokens: usize,
    /// Measured runs (after one warm-up run).
    pub runs: usize,
    /// Pages decoding together (continuous batching); each run then has at least this many pages.
    pub batch: usize,
}

/// Median, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// The benchmark result (serialised as the documented JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub machine: Machine,
    pub model: ModelInfo,
    pub settings: Settings,
    /// Seconds to load the model with the weight files in the page cache (warm): mmap,
    /// validation, and whatever conversion/packing the precision needs.
    pub load_s: f64,
    /// Seconds to load the model right after the weight files' pages were dropped from the
    /// page cache (`posix_fadvise(DONTNEED)`; pages still mapped by other processes stay).
    pub load_cold_s: f64,
    /// Seconds of the warm-up page, run on the cold-loaded engine: with weights used in place
    /// this is where the file is read.
    pub warmup_page_s: f64,
    pub preprocess_s: Stat,
    pub vision_s: Stat,
    pub prefill_s: Stat,
    /// Decode tokens per second, prefill excluded.
    pub decode_tok_per_s: Stat,
    /// Whole page: preprocessing to last token (with batching: from joining the batch).
    pub page_s: Stat,
    /// Pages decoding together.
    pub batch: usize,
    /// Decode tokens per second of all pages together (per run; batched steps only).
    pub aggregate_decode_tok_per_s: Stat,
    /// Pages per minute of wall time (per run, vision and prefill included).
    pub pages_per_min: Stat,
    pub prompt_tokens: usize,
    pub image_tokens: usize,
    pub kv_cache_bytes: u64,
    /// Peak memory predicted by the memory plan before the first page.
    pub predicted_peak_bytes: u64,
    /// Measured peak: process RSS high-water mark (CPU).
    pub peak_rss_bytes: u64,
}

/// Where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub threads: usize,
    pub device: String,
    /// CPU features the kernels detected (e.g. `avx2 fma avx512f/bw/vl avx512bf16 …`).
    pub cpu_features: String,
    /// The kernel tier each op ran on (`bf16_gemm`, `int8_gemm`, `attention`).
    pub kernels: std::collections::BTreeMap<String, String>,
}

/// What ran.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub source: String,
    pub parameters: u64,
    pub weights_file_bytes: u64,
    /// The plan's weight term: owned copies plus weights mapped in place (upper bound).
    pub resident_weights_bytes: u64,
    /// Weights used in place from the memory map (resident once touched).
    pub mapped_weights_bytes: u64,
}

/// How it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: String,
    pub pages: usize,
    pub new_tokens: usize,
    pub runs: usize,
    pub batch: usize,
    pub dtype: String,
    /// Weight precision of the linear layers.
    pub precision: String,
}

/// A synthetic Letter-size page (850×1100) with dark "text lines" on white, deterministic.
pub fn synthetic_page() -> RgbImage {
    let (w, h) = (850u32, 1100u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut y = 80;
    let mut line = 0u32;
    while y + 14 < h - 80 {
        let len = 500 + (line * 137 % 200);
        for x in 80..(80 + len).min(w - 80) {
            // Words: gaps every few pixels so the page has edges like text.
            if (x / 7 + line).is_multiple_of(9) {
                continue;
            }
            for dy in 0..12 {
                img.put_pixel(x, y + dy, Rgb([20, 20, 20]));
            }
        }
        y += 28;
        line += 1;
    }
    img
}

/// Peak resident set size of this process (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

/// Current resident set size (VmRSS), in bytes; 0 where unknown.
pub fn rss_bytes() -> u64 {
    proc_status_kb("VmRSS:") * 1024
}

fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Makes sure a random checkpoint exists in `cache_dir` (written once) and returns its folder.
/// Without `config`, the real config of `variant` is used.
pub fn ensure_random_model(
    config: Option<&Path>,
    variant: ModelVariant,
    cache_dir: &Path,
    seed: u64,
) -> Result<PathBuf> {
    let text = match config {
        Some(p) => std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?,
        None => real_config_json(variant).to_string(),
    };
    let cfg = ModelConfig::from_value(
        &serde_json::from_str(&text).map_err(|e| {
            Error::model(
                config.unwrap_or(Path::new("<built-in>")),
                format!("invalid JSON: {e}"),
                "fix the config file",
            )
        })?,
        config.unwrap_or(Path::new("<built-in>")),
    )?;
    // One folder per (config, seed): a changed config never reuses a stale checkpoint.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        seed.hash(&mut h);
        h.finish()
    };
    let dir = cache_dir.join(format!("random-{key:016x}"));
    if !dir.join("model.safetensors").is_file() || !dir.join("tokenizer.json").is_file() {
        tracing::info!("writing a random checkpoint to {}", dir.display());
        write_random_checkpoint(&cfg, &text, &dir, seed)?;
        write_placeholder_tokenizer(&cfg, &dir)?;
    }
    Ok(dir)
}

/// Drops the page-cache pages of the model folder's weight files (`posix_fadvise(DONTNEED)`),
/// so the next load reads them from disk. Returns whether every file was advised.
pub fn drop_page_cache(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut ok = true;
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if p.extension().is_none_or(|x| x != "safetensors") {
            continue;
        }
        ok &= fadvise_dontneed(&p);
    }
    ok
}

#[cfg(unix)]
fn fadvise_dontneed(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // Dirty pages cannot be dropped: write them back first (cheap when there are none).
    let _ = f.sync_data();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).is_ok()
}

#[cfg(not(unix))]
fn fadvise_dontneed(_path: &Path) -> bool {
    false
}

/// Runs the benchmark.
pub fn run(opts: &BenchOptions, mut on_progress: impl FnMut(&str)) -> Result<BenchReport> {
    let (dir, source) = match &opts.model {
        BenchModel::Dir(d) => (d.clone(), d.display().to_string()),
        BenchModel::Random {
            config,
            cache_dir,
            seed,
            variant,
        } => {
            on_progress("preparing random checkpoint");
            let d = ensure_random_model(config.as_deref(), *variant, cache_dir, *seed)?;
            (
                d,
                format!(
                    "random weights ({})",
                    config
                        .as_ref()
                        .map(|c| c.display().to_string())
                        .unwrap_or_else(|| format!("real {variant} config"))
                ),
            )
        }
    };
    let image = match &opts.image {
        Some(p) => crate::input::image::load_image(p, &Default::default())?,
        None => synthetic_page(),
    };
    let run_opts = RunOptions {
        mode: opts.mode,
        task: Task::Markdown,
        generate: GenerateOptions {
            max_new_tokens: opts.new_tokens,
            ignore_eos: true,
            ngram: NgramGuard::Hf { size: 20 },
            ..GenerateOptions::default()
        },
    };
    // Cold: the weight files' pages dropped, load, then the warm-up page(s) on that engine.
    on_progress("loading model (cold page cache)");
    let dropped = drop_page_cache(&dir);
    let t0 = Instant::now();
    let engine = Engine::load(&dir, opts.engine.clone())?;
    let load_cold_s = t0.elapsed().as_secs_f64();
    if !dropped {
        tracing::warn!("could not drop the weight files' pages: the cold load ran with a warm cache");
    }
    let t = Instant::now();
    for p in 0..opts.pages.max(1) {
        on_progress(&format!("warm-up page {}", p + 1));
        engine.run_with(&image, &run_opts, None)?;
    }
    let warmup_page_s = t.elapsed().as_secs_f64() / opts.pages.max(1) as f64;
    drop(engine);
    // Warm: load again with the files in the page cache; the measured runs use this engine.
    on_progress("loading model (warm page cache)");
    let t0 = Instant::now();
    let engine = Engine::load(&dir, opts.engine.clone())?;
    let load_s = t0.elapsed().as_secs_f64();
    let batch = opts.batch.max(1);
    let per_run = opts.pages.max(batch);
    let predicted = engine.memory_plan_batch(&run_opts, image.dimensions(), batch)?.total();
    let mut pages: Vec<(OcrOutput, Duration)> = Vec::new();
    let mut aggregate = Vec::new();
    let mut per_min = Vec::new();
    for run in 1..=opts.runs {
        on_progress(&format!("run {run}/{}: {per_run} page(s), batch {batch}", opts.runs));
        let jobs = (0..per_run).map(|p| PageJob::new(p, image.clone(), run_opts.clone()));
        let mut runner = BatchRunner::new(&engine, batch);
        let mut failed = None;
        let stats = runner.run(jobs, |_, out, elapsed| {
            match out {
                Ok(o) => pages.push((o, elapsed)),
                Err(e) => failed = Some(e),
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        aggregate.push(stats.decode_tok_per_s());
        per_min.push(stats.pages_per_min());
    }
    let secs = |f: &dyn Fn(&OcrOutput) -> Duration| Stat::of(pages.iter().map(|(o, _)| f(o).as_secs_f64()).collect());
    let first = pages.first().map(|(o, _)| o.clone());
    let decode = Stat::of(
        pages
            .iter()
            .map(|(o, _)| o.timings.decode_tokens as f64 / o.timings.decode.as_secs_f64().max(1e-9))
            .collect(),
    );
    let cfg = engine.config();
    Ok(BenchReport {
        schema_version: SCHEMA_VERSION,
        machine: Machine {
            cpu: cpu_name(),
            threads: rayon::current_num_threads(),
            device: format!("{:?}", opts.engine.device),
            cpu_features: crate::nn::kernels::cpu_features().names(),
            kernels: crate::nn::kernels::Op::ALL
                .iter()
                .map(|op| (op.label().to_string(), op.active_tier().to_string()))
                .collect(),
        },
        model: ModelInfo {
            source,
            parameters: crate::model::layout::parameter_count(cfg),
            weights_file_bytes: engine.weights_file_bytes(),
            resident_weights_bytes: engine.resident_weights_bytes(),
            mapped_weights_bytes: engine.mapped_weights_bytes(),
        },
        settings: Settings {
            mode: opts.mode.to_string(),
            pages: per_run,
            new_tokens: opts.new_tokens,
            runs: opts.runs,
            batch,
            dtype: format!("{:?}", opts.engine.dtype).to_lowercase(),
            precision: engine.options().precision.to_string(),
        },
        load_s,
        load_cold_s,
        warmup_page_s,
        preprocess_s: secs(&|o| o.timings.preprocess),
        vision_s: secs(&|o| o.timings.vision),
        prefill_s: secs(&|o| o.timings.prefill),
        decode_tok_per_s: decode,
        page_s: Stat::of(pages.iter().map(|(_, d)| d.as_secs_f64()).collect()),
        batch,
        aggregate_decode_tok_per_s: Stat::of(aggregate),
        pages_per_min: Stat::of(per_min),
        prompt_tokens: first.as_ref().map(|o| o.prompt_tokens).unwrap_or(0),
        image_tokens: first.as_ref().map(|o| o.image_tokens).unwrap_or(0),
        kv_cache_bytes: first.as_ref().map(|o| o.kv_cache_bytes).unwrap_or(0),
        predicted_peak_bytes: predicted,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
