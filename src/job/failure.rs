//! `NAME.error.json`: what went wrong with an input or a page, written instead of its
//! results so that a batch goes on and a person (or program) can see why.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::write_json;
use crate::error::{Error, ErrorKind, Result};

/// Version of the error record schema.
pub const ERROR_SCHEMA_VERSION: u32 = 1;

/// The step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Checking the file (header, PDF structure, page ranges).
    Inspect,
    /// Opening, decoding the image or rendering the PDF page.
    Decode,
    /// The model run (memory plan, vision, generation).
    Ocr,
    /// Writing the results.
    Write,
}

/// The record of a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub schema_version: u32,
    /// The input file as given.
    pub source: String,
    /// 1-based PDF page, when one page failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub page: Option<usize>,
    pub stage: Stage,
    pub kind: ErrorKind,
    pub message: String,
    pub hint: String,
}

impl ErrorRecord {
    /// The record of `error` at `stage` for `source` (page 0-based).
    pub fn new(source: &Path, page: Option<usize>, stage: Stage, error: &Error) -> Self {
        Self {
            schema_version: ERROR_SCHEMA_VERSION,
            source: source.display().to_string(),
            page: page.map(|p| p + 1),
            stage,
            kind: error.kind(),
            message: error.to_string(),
            hint: error.hint(),
        }
    }

    /// Writes the record atomically to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// Removes the error record of a unit that now succeeded (missing is fine).
pub fn clear(path: &Path) {
    let _ = std::fs::remove_file(path);
}
