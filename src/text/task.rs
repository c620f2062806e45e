//! What the model is asked to do with a page (spec §8, official prompt presets).

use std::fmt;
use std::str::FromStr;

/// A task preset or a custom prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Task {
    /// Document to markdown with layout boxes (grounding). The official default.
    #[default]
    Markdown,
    /// Other image with layout boxes ("OCR this image.").
    Ocr,
    /// Plain text, no layout.
    Free,
    /// Parse a figure.
    Figure,
    /// Describe the image in detail.
    Describe,
    /// Locate the given text in the image.
    Locate(String),
    /// A custom prompt; must contain `<image>` exactly once when an image is given.
    Prompt(String),
}

impl Task {
    /// The prompt text, with `<image>` where the image goes.
    pub fn prompt(&self) -> String {
        match self {
            Task::Markdown => "<image>\n<|grounding|>Convert the document to markdown.".into(),
            Task::Ocr => "<image>\n<|grounding|>OCR this image.".into(),
            Task::Free => "<image>\nFree OCR.".into(),
            Task::Figure => "<image>\nParse the figure.".into(),
            Task::Describe => "<image>\nDescribe this image in detail.".into(),
            Task::Locate(t) => format!("<image>\nLocate <|ref|>{t}<|/ref|> in the image."),
            Task::Prompt(p) => p.clone(),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Markdown => f.write_str("markdown"),
            Task::Ocr => f.write_str("ocr"),
            Task::Free => f.write_str("free"),
            Task::Figure => f.write_str("figure"),
            Task::Describe => f.write_str("describe"),
            Task::Locate(t) => write!(f, "locate={t}"),
            Task::Prompt(p) => write!(f, "prompt={p}"),
        }
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(t) = s.strip_prefix("locate=") {
            return Ok(Task::Locate(t.to_string()));
        }
        if let Some(p) = s.strip_prefix("prompt=") {
            return Ok(Task::Prompt(p.to_string()));
        }
        match s {
            "markdown" => Ok(Task::Markdown),
            "ocr" => Ok(Task::Ocr),
            "free" => Ok(Task::Free),
            "figure" => Ok(Task::Figure),
            "describe" => Ok(Task::Describe),
            _ => Err(format!(
                "unknown task `{s}`: use markdown, ocr, free, figure, describe, locate=TEXT or prompt=TEXT"
            )),
        }
    }
}
