//! `dsocr debug preprocess IMAGE --mode MODE --out DIR [--compat pillow]`

use std::path::PathBuf;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image file.
    pub image: PathBuf,
    /// tiny, small, base, large, gundam or custom:BASE:IMAGE[:crop]
    #[arg(long, default_value = "gundam")]
    pub mode: crate::vision::Mode,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Reproduce the reference's Pillow behaviour bit for bit (16-bit images clamped).
    #[arg(long, value_enum)]
    pub compat: Option<Compat>,
}

/// Compatibility profiles.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Compat {
    /// Pillow as used by the reference implementation.
    Pillow,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("debug preprocess: not implemented yet")
}
