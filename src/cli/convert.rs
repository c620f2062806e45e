//! `dsocr convert --model SRC --precision int8 --out DIR`

use std::path::PathBuf;

use crate::nn::Precision;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source model folder or Hugging Face repo id (default deepseek-ai/DeepSeek-OCR).
    #[arg(long)]
    pub model: Option<String>,
    /// Target precision of the linear weights (only int8 is supported).
    #[arg(long, default_value = "int8")]
    pub precision: Precision,
    /// Output folder (created; must be new or empty).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(a: Args, quiet: bool) -> anyhow::Result<()> {
    if a.precision != Precision::Int8 {
        anyhow::bail!(
            "`dsocr convert` writes int8 checkpoints only (got --precision {}); bf16 checkpoints already run in place: pass them to --model as they are",
            a.precision
        );
    }
    let src = crate::job::model_source::resolve(a.model.as_deref(), !quiet)?;
    let t = std::time::Instant::now();
    let r = crate::quant::convert::convert_int8(&src, &a.out)?;
    if !quiet {
        println!(
            "wrote {} ({} linear weights int8, {} tensors copied, {:.2} GB from {:.2} GB, {:.1} s; source sha256 {})",
            r.weights_file.display(),
            r.quantized,
            r.copied,
            r.written_bytes as f64 / 1e9,
            r.source_bytes as f64 / 1e9,
            t.elapsed().as_secs_f64(),
            r.source_sha256
        );
    }
    Ok(())
}
