//! The `dsocr` command line: a thin layer over the library.
//!
//! Each subcommand lives in its own file with its own argument struct.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub mod bench;
pub mod debug_preprocess;
pub mod debug_random;

/// DeepSeek-OCR in pure Rust: images and PDFs to Markdown with layout boxes.
#[derive(Debug, Parser)]
#[command(name = "dsocr", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for checking the engine against the reference implementation.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Measure speed and memory (per-stage timings, tokens/s, peak memory).
    Bench(bench::Args),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `dsocr debug ...`
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Write the exact preprocessed views of an image (PNG) and preprocess.json.
    Preprocess(debug_preprocess::Args),
    /// Write a random-weight checkpoint in the official layout (streamed to disk).
    RandomCheckpoint(debug_random::Args),
}

/// Entry point of the `dsocr` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(DebugCommand::Preprocess(a)) => debug_preprocess::run(a),
        Command::Debug(DebugCommand::RandomCheckpoint(a)) => debug_random::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dsocr", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
