//! `dsocr merge --out DIR`: assembles a sharded run once every shard has finished
//! (combined per-document Markdown/JSON of PDFs split over shards, one `batch.json`).

use std::path::PathBuf;

use super::ocr::PartialFailure;
use crate::job;

/// Arguments of `dsocr merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The output folder the shards wrote into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `dsocr merge`.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<()> {
    let summary = job::merge::merge(&args.out)?;
    if !quiet {
        eprintln!("merged: {}", summary.line());
    }
    if summary.inputs.failed > 0 {
        return Err(PartialFailure {
            failed: summary.inputs.failed,
            total: summary.inputs.total(),
        }
        .into());
    }
    Ok(())
}
