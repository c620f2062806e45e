//! Resume: which pages of a job folder are finished and can be skipped.

use std::path::Path;

use super::inputs::{Input, InputKind};
use super::layout::{Layout, PageTarget};
use crate::engine::RunOptions;
use crate::error::{Error, Result};
use crate::output::json::PageJson;

/// A finished page has its JSON record (written last) and its text file.
pub fn page_done(target: &PageTarget) -> bool {
    target.json().is_file() && target.text().is_none_or(|t| t.is_file())
}

/// Whether a whole input is finished: all its pages and, for PDFs, the combined files.
pub fn input_done(layout: &Layout, input: &Input) -> bool {
    match input.kind {
        InputKind::Image => page_done(&layout.page_target(input, None)),
        InputKind::Pdf => {
            layout.combined_json(input).is_file()
                && layout.combined_text(input).is_none_or(|t| t.is_file())
                && input
                    .pages
                    .iter()
                    .all(|&p| page_done(&layout.page_target(input, Some(p))))
        }
    }
}

/// Reads a page record back.
pub fn read_record(path: &Path) -> Result<PageJson> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::input(
            path,
            format!("unreadable page record: {e}"),
            "delete this file and rerun to redo the page",
        )
    })
}

/// A note when a finished record was made with another mode or task than asked now.
pub fn settings_note(json: &Path, run: &RunOptions) -> String {
    let Some(v) = std::fs::read_to_string(json)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return String::new();
    };
    let (mode, task) = (
        v["mode"].as_str().unwrap_or_default(),
        v["task"].as_str().unwrap_or_default(),
    );
    if mode == run.mode.to_string() && task == run.task.to_string() {
        String::new()
    } else {
        format!(" (made with --mode {mode} --task {task}; delete its results to redo it)")
    }
}
