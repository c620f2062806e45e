//! The `dsocr` binary. The command line lives here, outside the library, so that library
//! users do not depend on clap, indicatif or tracing-subscriber.

// The library's modules at the binary's root, so `crate::engine` etc. work in `cli`.
pub use deepseek_ocr::{
    bench, device_plan, engine, error, generate, input, job, lm, memory, model, nn, output, parity, quant, text, vision,
};

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
