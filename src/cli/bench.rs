//! `dsocr bench`: per-stage timings, tokens/s and peak memory, as a table and as JSON.

use std::path::PathBuf;

use anyhow::Context;

use crate::bench::{self, BenchModel, BenchOptions};
use crate::engine::EngineOptions;
use crate::vision::Mode;

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  dsocr bench --random-weights --mode base --new-tokens 128 --json base.json\n  dsocr bench --random-weights --variant ocr2 --mode gundam\n  dsocr bench --model ./DeepSeek-OCR --mode gundam --image page.png --runs 5"
)]
pub struct Args {
    /// Model folder to measure.
    #[arg(long, conflicts_with = "random_weights")]
    pub model: Option<PathBuf>,
    /// Measure a full-size model with random weights (written once to the cache folder).
    #[arg(long)]
    pub random_weights: bool,
    /// config.json for --random-weights (default: the real config of --variant).
    #[arg(long, requires = "random_weights")]
    pub config: Option<PathBuf>,
    /// Model variant of --random-weights without --config: ocr (DeepSeek-OCR) or ocr2
    /// (DeepSeek-OCR-2).
    #[arg(long, default_value = "ocr", value_parser = crate::cli::parse_variant, conflicts_with = "config")]
    pub variant: crate::model::ModelVariant,
    /// Where random checkpoints are kept (default: ~/.cache/deepseek-ocr).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Resolution mode.
    #[arg(long, default_value = "base")]
    pub mode: Mode,
    /// Page image (default: a synthetic Letter page).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Pages per run.
    #[arg(long, default_value_t = 1)]
    pub pages: usize,
    /// Fixed number of new tokens per page (EOS ignored).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Measured runs after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Pages decoding together (continuous batching); a run then has at least this many pages.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compute device: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Activation dtype: f32 (parity), bf16, f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Weight precision of the linear layers on the CPU: auto (bf16 read in place from the
    /// checkpoint, or int8 for a folder written by `dsocr convert --precision int8`), f32
    /// (exact parity with the reference), bf16, or int8 (fastest decode, least memory).
    #[arg(long, default_value = "auto")]
    pub precision: crate::nn::Precision,
}

/// Default cache folder for generated checkpoints.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("deepseek-ocr")
}

/// Parses `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> anyhow::Result<candle_core::Device> {
    match s {
        "cpu" => Ok(candle_core::Device::Cpu),
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .trim_start_matches(':')
                    .parse()
                    .with_context(|| format!("bad device `{s}`: use cpu, cuda or cuda:N"))?,
                None => anyhow::bail!("unknown device `{s}`: use cpu, cuda or cuda:N"),
            };
            candle_core::Device::new_cuda(ordinal).with_context(|| {
                format!("cannot open CUDA device {ordinal} (is this binary built with --features cuda?)")
            })
        }
    }
}

/// Parses `f32`, `f16`, `bf16`.
pub fn parse_dtype(s: &str) -> anyhow::Result<candle_core::DType> {
    match s {
        "f32" => Ok(candle_core::DType::F32),
        "f16" => Ok(candle_core::DType::F16),
        "bf16" => Ok(candle_core::DType::BF16),
        _ => anyhow::bail!("unknown dtype `{s}`: use f32, f16 or bf16"),
    }
}

fn mb(b: u64) -> String {
    format!("{:.0} MB", b as f64 / 1e6)
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = match (a.model, a.random_weights) {
        (Some(d), false) => BenchModel::Dir(d),
        (None, true) => BenchModel::Random {
            config: a.config,
            cache_dir: a.cache_dir.unwrap_or_else(default_cache_dir),
            seed: 0,
            variant: a.variant,
        },
        _ => anyhow::bail!("pass --model DIR or --random-weights"),
    };
    let engine = EngineOptions {
        device: parse_device(&a.device)?,
        dtype: parse_dtype(&a.dtype)?,
        precision: a.precision,
        ..EngineOptions::default()
    };
    let opts = BenchOptions {
        model,
        engine,
        mode: a.mode,
        image: a.image,
        pages: a.pages,
        new_tokens: a.new_tokens,
        runs: a.runs.max(1),
        batch: a.batch.max(1),
    };
    let quiet = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let r = bench::run(&opts, |msg| {
        if !quiet {
            eprintln!("bench: {msg}");
        }
    })?;
    println!(
        "machine      {} ({} threads, {})",
        r.machine.cpu, r.machine.threads, r.machine.device
    );
    println!(
        "model        {} ({:.2} B params)",
        r.model.source,
        r.model.parameters as f64 / 1e9
    );
    println!(
        "settings     mode {}, {} new tokens, {} run(s) of {} page(s), batch {}, dtype {}, precision {}",
        r.settings.mode,
        r.settings.new_tokens,
        r.settings.runs,
        r.settings.pages,
        r.settings.batch,
        r.settings.dtype,
        r.settings.precision
    );
    println!(
        "load         {:.2} s warm, {:.2} s cold (page cache dropped); warm-up page after the cold load {:.2} s",
        r.load_s, r.load_cold_s, r.warmup_page_s
    );
    let row = |name: &str, s: &bench::Stat, unit: &str| {
        println!("{name:<12} {:.3} {unit} (min {:.3}, max {:.3})", s.median, s.min, s.max)
    };
    row("preprocess", &r.preprocess_s, "s");
    row("vision", &r.vision_s, "s");
    row("prefill", &r.prefill_s, "s");
    row("decode", &r.decode_tok_per_s, "tok/s");
    row("page", &r.page_s, "s");
    row(
        "aggregate",
        &r.aggregate_decode_tok_per_s,
        "tok/s (all pages, decode steps)",
    );
    row("throughput", &r.pages_per_min, "pages/min");
    println!("tokens       prompt {} (image {})", r.prompt_tokens, r.image_tokens);
    println!(
        "memory       weights ≤ {} resident ({} of it mapped in place, touched on use; {} on disk), KV cache {}, predicted peak {}, measured peak RSS {}",
        mb(r.model.resident_weights_bytes),
        mb(r.model.mapped_weights_bytes),
        mb(r.model.weights_file_bytes),
        mb(r.kv_cache_bytes),
        mb(r.predicted_peak_bytes),
        mb(r.peak_rss_bytes)
    );
    if let Some(p) = a.json {
        let text = serde_json::to_string_pretty(&r)?;
        crate::output::atomic::write_text(&p, &text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
