//! `dsocr debug parity CASE_DIR [--model DIR] [--dump OUT.safetensors]`

use std::path::PathBuf;

use anyhow::Context;

use crate::engine::{Engine, EngineOptions};

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dsocr debug parity ../shared/golden/mini/portrait_tiny")]
pub struct Args {
    /// Case folders (golden.json + golden.safetensors + the input image).
    #[arg(required = true)]
    pub cases: Vec<PathBuf>,
    /// Model folder (default: the case's parent folder).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Write the engine's stage tensors here, under the golden names and shapes (one case only).
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

/// Runs the command; fails when any comparison fails.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.dump.is_some() && a.cases.len() > 1 {
        anyhow::bail!("--dump takes one case folder; hint: run the cases one at a time");
    }
    let mut failed = 0;
    let mut engine: Option<(PathBuf, Engine)> = None;
    for case in &a.cases {
        let model = match &a.model {
            Some(m) => m.clone(),
            None => case
                .parent()
                .map(|p| p.to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("..")),
        };
        if engine.as_ref().map(|(d, _)| d != &model).unwrap_or(true) {
            // Parity is checked in the f32 mode, whatever `auto` picks on this CPU.
            let options = EngineOptions {
                precision: crate::nn::Precision::F32,
                ..EngineOptions::default()
            };
            let e =
                Engine::load(&model, options).with_context(|| format!("loading the model in {}", model.display()))?;
            engine = Some((model.clone(), e));
        }
        let Some((_, e)) = engine.as_ref() else { continue };
        let report = crate::parity::run_case(e, case, a.dump.as_deref())?;
        print!("{}", report.render());
        if !report.passed() {
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} case(s) failed parity");
    }
    Ok(())
}
