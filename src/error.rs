//! The library's error type. Every variant says what went wrong and where; [`Error::hint`]
//! says what to do, and [`Error::kind`] classifies it for programs (exit codes, HTTP statuses).

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors of the deepseek-ocr library.
///
/// The `Display` text is the message only (it names the file or tensor involved);
/// the advice is kept apart in [`Error::hint`], so a command line can print
/// `error: MESSAGE; hint: HINT` and a server can put both in a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file (image, PDF) is missing, unreadable, corrupt or too large.
    #[error("{}: {message}", path.display())]
    Input {
        path: PathBuf,
        message: String,
        hint: String,
    },

    /// The model folder is incomplete or inconsistent (config, weights, tokenizer).
    #[error("model {}: {message}", path.display())]
    Model {
        path: PathBuf,
        message: String,
        hint: String,
    },

    /// A tensor in the weights is missing or has the wrong shape or dtype.
    #[error("weights {}: tensor `{name}`: {message}", file.display())]
    Tensor {
        file: PathBuf,
        name: String,
        message: String,
    },

    /// A request that cannot be served as asked (bad prompt, too long, bad option).
    #[error("{message}")]
    Request { message: String, hint: String },

    /// The job needs more memory than the budget allows.
    #[error("memory: the job needs {needed} bytes but the budget is {budget} bytes ({what})")]
    Memory { needed: u64, budget: u64, what: String },

    /// An error from the tensor library.
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),

    /// An I/O error with the path it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A machine-readable class of [`Error`], stable across releases (its
/// [`ErrorKind::as_str`] names appear in `NAME.error.json` and server responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad option or request (mode, task, pages, max tokens, prompt …).
    Request,
    /// A bad or unreadable input file.
    Input,
    /// The model folder, its config, tokenizer or weights are wrong.
    Model,
    /// The job does not fit the memory budget.
    Memory,
    /// Reading or writing a file failed (output folder, disk full …).
    Io,
    /// The tensor backend failed (a bug, or the device ran out of memory).
    Backend,
}

impl ErrorKind {
    /// The snake_case name (`request`, `input`, `model`, `memory`, `io`, `backend`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Request => "request",
            ErrorKind::Input => "input",
            ErrorKind::Model => "model",
            ErrorKind::Memory => "memory",
            ErrorKind::Io => "io",
            ErrorKind::Backend => "backend",
        }
    }

    /// The HTTP status a server answers with for this kind: 400 bad request, 422 an input
    /// that cannot be processed, 413 a job that can never fit the memory budget, 500 for
    /// the server's own model, file or backend failures.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Request => 400,
            ErrorKind::Input => 422,
            ErrorKind::Memory => 413,
            ErrorKind::Model | ErrorKind::Io | ErrorKind::Backend => 500,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    /// The machine-readable class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Input { .. } => ErrorKind::Input,
            Error::Model { .. } | Error::Tensor { .. } => ErrorKind::Model,
            Error::Request { .. } => ErrorKind::Request,
            Error::Memory { .. } => ErrorKind::Memory,
            Error::Candle(_) => ErrorKind::Backend,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            Error::Input { hint, .. } | Error::Model { hint, .. } | Error::Request { hint, .. } => hint.clone(),
            Error::Tensor { .. } => {
                "the weights do not match config.json; re-download the model or fix the config".into()
            }
            Error::Memory { .. } => "use a smaller mode, fewer max tokens, or raise --memory-budget".into(),
            Error::Candle(_) => {
                "this is likely a bug or the device ran out of memory; rerun with --verbose for details".into()
            }
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => "check the path".into(),
                std::io::ErrorKind::PermissionDenied => "check the file's permissions".into(),
                _ => "check the disk (space, permissions) and rerun".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_hint_are_kept_apart() {
        let e = Error::input("a.png", "not a readable image", "check the file");
        assert_eq!(e.to_string(), "a.png: not a readable image");
        assert_eq!(e.hint(), "check the file");
        assert_eq!(e.kind(), ErrorKind::Input);
        assert_eq!(e.kind().http_status(), 422);
    }

    #[test]
    fn every_kind_has_a_hint_and_a_status() {
        let errors = [
            Error::request("bad", "fix it"),
            Error::model("m", "bad", "fix it"),
            Error::Memory {
                needed: 2,
                budget: 1,
                what: "page".into(),
            },
            Error::io("x", std::io::Error::other("disk")),
        ];
        for e in errors {
            assert!(!e.hint().is_empty());
            assert!((400..600).contains(&e.kind().http_status()));
        }
    }
}
