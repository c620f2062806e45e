//! `dsocr debug random-checkpoint --config config.json --out DIR`

use std::path::PathBuf;

use anyhow::Context;

use crate::model::config::{real_config_json, ModelConfig};
use crate::model::random::{write_placeholder_tokenizer, write_random_checkpoint};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// config.json to follow (default: the real config of --variant).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Variant whose real config is used without --config: ocr or ocr2.
    #[arg(long, default_value = "ocr", value_parser = crate::cli::parse_variant, conflicts_with = "config")]
    pub variant: crate::model::ModelVariant,
    /// Output folder (model.safetensors, config.json, tokenizer.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let text = match &a.config {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => real_config_json(a.variant).to_string(),
    };
    let value = serde_json::from_str(&text).context("config is not valid JSON")?;
    let cfg = ModelConfig::from_value(
        &value,
        a.config.as_deref().unwrap_or(std::path::Path::new("<built-in>")),
    )?;
    let path = write_random_checkpoint(&cfg, &text, &a.out, a.seed)?;
    write_placeholder_tokenizer(&cfg, &a.out)?;
    println!(
        "wrote {} ({} parameters, {:.2} GB)",
        path.display(),
        crate::model::layout::parameter_count(&cfg),
        std::fs::metadata(&path).map(|m| m.len() as f64 / 1e9).unwrap_or(0.0)
    );
    Ok(())
}
