//! The library's error type. Every variant says what went wrong, where, and what to do.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors of the deepseek-ocr library.
///
/// Messages are written for the person running the program: they name the file or
/// tensor involved and end with a hint on how to fix the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file (image, PDF) is missing, unreadable, corrupt or too large.
    #[error("{path}: {message}\nhint: {hint}")]
    Input {
        path: PathBuf,
        message: String,
        hint: String,
    },

    /// The model folder is incomplete or inconsistent (config, weights, tokenizer).
    #[error("model {path}: {message}\nhint: {hint}")]
    Model {
        path: PathBuf,
        message: String,
        hint: String,
    },

    /// A tensor in the weights is missing or has the wrong shape or dtype.
    #[error("weights {file}: tensor `{name}`: {message}\nhint: the weights do not match config.json; re-download the model or fix the config")]
    Tensor {
        file: PathBuf,
        name: String,
        message: String,
    },

    /// A request that cannot be served as asked (bad prompt, too long, bad option).
    #[error("{message}\nhint: {hint}")]
    Request { message: String, hint: String },

    /// The job needs more memory than the budget allows.
    #[error("memory: the job needs {needed} bytes but the budget is {budget} bytes ({what})\nhint: use a smaller mode, fewer max tokens, or raise --memory-budget")]
    Memory { needed: u64, budget: u64, what: String },

    /// An error from the tensor library.
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),

    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Bad input file.
    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
    /// Bad model folder.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
    /// Bad request.
    pub fn request(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Request {
            message: message.into(),
            hint: hint.into(),
        }
    }
    /// I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
