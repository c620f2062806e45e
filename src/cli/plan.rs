//! `dsocr plan`: the device memory plan of a job, printed without a GPU and without loading
//! weights (only `config.json` is read, or the real model's config by default).

use std::path::PathBuf;

use anyhow::Context;

use crate::device_plan::{gib, plan, DeviceJob, DevicePlan};
use crate::model::ModelConfig;
use crate::vision::Mode;

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  dsocr plan --device cuda --mode base --max-tokens 8192\n  dsocr plan --device cuda --mode gundam --image 2480x3508 --precision int8 --batch 4 --json plan.json\n  dsocr plan --device cuda --mode large --memory-budget 8   (fails if it does not fit)"
)]
pub struct Args {
    /// Device the plan is for (only cuda has a device plan; the CPU plan is part of `dsocr bench`).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Model folder whose config.json is used (default: the official DeepSeek-OCR config).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Resolution mode.
    #[arg(long, default_value = "gundam")]
    pub mode: Mode,
    /// Page size WIDTHxHEIGHT (decides the tile grid; default: the mode's largest grid).
    #[arg(long, value_parser = parse_size)]
    pub image: Option<(u32, u32)>,
    /// New tokens per sequence (the context is the prompt plus these, capped at the model's positions).
    #[arg(long, default_value_t = 8192)]
    pub max_tokens: usize,
    /// Weight and activation dtype on the device: f16 or bf16 (2 bytes), f32.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Decoder weight precision: f16 (the dtype) or int8 (weight-only, per-channel scales).
    #[arg(long, default_value = "f16")]
    pub precision: String,
    /// Sequences decoding together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Fail (before anything is allocated) when the plan exceeds this many GB (10⁹ bytes, the unit of
    /// `dsocr ocr --memory-budget`), naming what would fit.
    #[arg(long, value_name = "GB", value_parser = parse_budget)]
    pub memory_budget: Option<f64>,
    /// Also write the plan as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not WIDTHxHEIGHT (e.g. 1240x1754)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of GB")),
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.device != "cuda" && !args.device.starts_with("cuda:") {
        anyhow::bail!(
            "`dsocr plan` plans device memory; `--device {}` is not a CUDA device\nhint: use --device cuda, or `dsocr bench --device cpu` for the CPU plan",
            args.device
        );
    }
    let cfg = match &args.model {
        Some(dir) => ModelConfig::from_file(&dir.join("config.json"))?,
        None => ModelConfig::deepseek_ocr(),
    };
    let dtype_bytes = match args.dtype.as_str() {
        "f16" | "bf16" => 2,
        "f32" => 4,
        d => anyhow::bail!("unknown dtype `{d}`\nhint: use f16, bf16 or f32"),
    };
    let int8_decoder = match args.precision.as_str() {
        "int8" => true,
        "f16" | "bf16" | "f32" => false,
        p => anyhow::bail!("unknown precision `{p}`\nhint: use f16 or int8"),
    };
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let job = DeviceJob {
        mode: args.mode,
        image: args.image,
        max_tokens: args.max_tokens,
        dtype_bytes,
        int8_decoder,
        batch: args.batch,
    };
    let p = plan(&cfg, &job)?;
    print!("{}", render(&p, &args));
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "schema_version": 1,
            "device": args.device,
            "mode": args.mode.to_string(),
            "image": args.image.map(|(w, h)| format!("{w}x{h}")),
            "max_tokens": args.max_tokens,
            "dtype": args.dtype,
            "precision": args.precision,
            "batch": args.batch,
            "plan": p,
            "total_bytes": p.total(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(b) = args.memory_budget {
        let budget = (b * 1e9) as u64;
        p.check(budget, &job, &cfg)?;
    }
    Ok(())
}

fn render(p: &DevicePlan, args: &Args) -> String {
    let rows: [(&str, u64); 11] = [
        ("weights", p.weights),
        ("KV cache", p.kv_cache),
        ("  SAM global attention (chunked)", p.stages.sam_global_attention),
        ("  SAM MLP", p.stages.sam_mlp),
        ("  CLIP", p.stages.clip),
        ("  prefill", p.stages.prefill),
        ("  logits", p.stages.logits),
        ("activations (largest stage)", p.stages.max()),
        ("cuBLAS workspace", p.cublas_workspace),
        ("CUDA context", p.cuda_context),
        ("allocator slack", p.allocator_slack),
    ];
    let mut s = format!(
        "device plan: {} mode {}, {} views, {} prompt + {} new tokens → context {} × batch {}, {} {}\n",
        args.device,
        args.mode,
        p.views,
        p.prompt_tokens,
        args.max_tokens,
        p.context_tokens,
        args.batch,
        args.dtype,
        args.precision
    );
    for (name, b) in rows {
        s += &format!("{name:<34} {:>9.3} GiB\n", gib(b));
    }
    s += &format!("{:<34} {:>9.3} GiB ({} bytes)\n", "total", gib(p.total()), p.total());
    s
}
