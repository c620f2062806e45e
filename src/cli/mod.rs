//! The `dsocr` command line: a thin layer over the library.
//!
//! Each subcommand lives in its own file with its own argument struct.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod bench;
pub mod convert;
pub mod debug_parity;
pub mod debug_preprocess;
pub mod debug_random;
pub mod merge;
pub mod ocr;
pub mod plan;
pub mod progress;
pub mod setup;

/// DeepSeek-OCR in pure Rust: images and PDFs to Markdown with layout boxes.
#[derive(Debug, Parser)]
#[command(name = "dsocr", version, about, long_about = None, after_help = "Examples:\n  dsocr ocr page.png\n  dsocr ocr scans/ report.pdf --out results\n  dsocr ocr --help")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors (no progress, no status lines).
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print debug logs (RUST_LOG overrides the level).
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Images and PDFs to Markdown/JSON with layout boxes (resumable batches).
    Ocr(ocr::Args),
    /// Assemble a sharded run: combined documents and one batch.json.
    Merge(merge::Args),
    /// Install optional pieces (libpdfium for PDF input).
    #[command(subcommand)]
    Setup(setup::Command),
    /// Tools for checking the engine against the reference implementation.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Measure speed and memory (per-stage timings, tokens/s, peak memory).
    Bench(bench::Args),
    /// Write an int8 copy of a model folder that loads without quantising (`--precision int8`).
    Convert(convert::Args),
    /// Device (GPU) memory plan of a job, without a GPU and without loading weights.
    Plan(plan::Args),
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
    /// Compare every stage with a golden case of the reference implementation.
    Parity(debug_parity::Args),
    /// Write a random-weight checkpoint in the official layout (streamed to disk).
    RandomCheckpoint(debug_random::Args),
}

/// Entry point of the `dsocr` binary.
pub fn main() -> ExitCode {
    // The version line also names the CPU kernel path chosen at start-up.
    let version = format!("{} ({})", env!("CARGO_PKG_VERSION"), crate::nn::kernels::describe());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_tracing(cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Ocr(a) => ocr::run(a, cli.quiet),
        Command::Merge(a) => merge::run(a, cli.quiet),
        Command::Setup(c) => setup::run(c, cli.quiet),
        Command::Debug(DebugCommand::Preprocess(a)) => debug_preprocess::run(a),
        Command::Debug(DebugCommand::RandomCheckpoint(a)) => debug_random::run(a),
        Command::Debug(DebugCommand::Parity(a)) => debug_parity::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Convert(a) => convert::run(a, cli.quiet),
        Command::Plan(a) => plan::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dsocr", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Exit codes of `dsocr` (also in the README):
///
/// | code | meaning |
/// |------|---------|
/// | 0 | success |
/// | 1 | internal error (tensor backend, a bug) |
/// | 2 | bad command line or request (flags, mode, task, pages …) |
/// | 3 | bad input file |
/// | 4 | bad model folder, config, tokenizer or weights |
/// | 5 | the job does not fit the memory budget |
/// | 6 | reading or writing a file failed (output folder, disk full) |
/// | 7 | a batch finished, but some inputs or pages failed (see `NAME.error.json`) |
pub mod exit {
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT: u8 = 3;
    pub const MODEL: u8 = 4;
    pub const MEMORY: u8 = 5;
    pub const IO: u8 = 6;
    pub const PARTIAL: u8 = 7;
}

/// The one place where error kinds become exit codes.
pub fn exit_code_of_kind(kind: crate::error::ErrorKind) -> u8 {
    use crate::error::ErrorKind as K;
    match kind {
        K::Request => exit::USAGE,
        K::Input => exit::INPUT,
        K::Model => exit::MODEL,
        K::Memory => exit::MEMORY,
        K::Io => exit::IO,
        K::Backend => exit::INTERNAL,
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(p) = e.downcast_ref::<ocr::PartialFailure>() {
        return p.exit_code();
    }
    match e.downcast_ref::<crate::error::Error>() {
        Some(le) => exit_code_of_kind(le.kind()),
        None => exit::INTERNAL,
    }
}

/// Prints one line per failure: `error: MESSAGE; hint: HINT`.
fn report(e: &anyhow::Error) {
    let one_line = |t: &str| {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let text = match e.downcast_ref::<crate::error::Error>() {
        Some(le) => format!("{}; hint: {}", one_line(&le.to_string()), one_line(&le.hint())),
        None => one_line(&format!("{e:#}")),
    };
    eprintln!("error: {text}");
}

/// Logs to stderr: errors only with `--quiet`, debug with `--verbose`, else warnings;
/// `RUST_LOG` wins when set.
fn init_tracing(quiet: bool, verbose: bool) {
    let level = if quiet {
        "error"
    } else if verbose {
        "debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Parses a `--variant` value: `ocr` / `deepseek-ocr` or `ocr2` / `deepseek-ocr-2`.
pub fn parse_variant(s: &str) -> Result<crate::model::ModelVariant, String> {
    use crate::model::ModelVariant;
    match s.to_ascii_lowercase().as_str() {
        "ocr" | "ocr1" | "v1" | "deepseek-ocr" => Ok(ModelVariant::DeepSeekOcr),
        "ocr2" | "ocr-2" | "v2" | "deepseek-ocr-2" | "deepseek-ocr2" => Ok(ModelVariant::DeepSeekOcr2),
        _ => Err(format!(
            "unknown variant `{s}`: use ocr (DeepSeek-OCR) or ocr2 (DeepSeek-OCR-2)"
        )),
    }
}
