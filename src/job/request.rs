//! Validation of a job's settings as text (command-line flags or HTTP form fields):
//! mode, task, page ranges, max tokens, dpi, output format and batch size, all checked
//! before any file is opened or the model is loaded.

use std::fmt;
use std::str::FromStr;

use crate::engine::RunOptions;
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::input::pdf::{PageRanges, DEFAULT_DPI};
use crate::text::Task;
use crate::vision::Mode;

/// Lowest and highest accepted PDF rendering resolution.
pub const DPI_RANGE: (f32, f32) = (10.0, 1200.0);

/// Text output format of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Markdown with figure links (the official rewrite).
    #[default]
    Md,
    /// The JSON record only.
    Json,
    /// Plain text: layout references removed.
    Txt,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(Format::Md),
            "json" => Ok(Format::Json),
            "txt" | "text" => Ok(Format::Txt),
            other => Err(format!("unknown format `{other}` (use md, json or txt)")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Md => "md",
            Format::Json => "json",
            Format::Txt => "txt",
        })
    }
}

/// A job's settings as given (strings and numbers, unchecked).
#[derive(Debug, Clone)]
pub struct RawRequest<'a> {
    pub mode: &'a str,
    pub task: &'a str,
    pub pages: Option<&'a str>,
    pub max_tokens: Option<usize>,
    pub dpi: f32,
    pub format: Format,
    /// Pages decoding together: a number ≥ 1 or `auto` (see [`BatchSize`]).
    pub batch: &'a str,
}

impl Default for RawRequest<'_> {
    fn default() -> Self {
        Self {
            mode: "gundam",
            task: "markdown",
            pages: None,
            max_tokens: None,
            dpi: DEFAULT_DPI,
            format: Format::Md,
            batch: "1",
        }
    }
}

/// The most pages `auto` lets decode together.
pub const AUTO_BATCH_LIMIT: usize = 8;

/// How many pages of a batch decode together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many (1: one page at a time).
    Pages(usize),
    /// As many Letter pages at the job's dpi as the memory budget allows, at most
    /// [`AUTO_BATCH_LIMIT`] (the model decides, see [`PageOcr::auto_batch`](super::PageOcr::auto_batch)).
    Auto,
}

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize::Pages(1)
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Pages(n) => write!(f, "{n}"),
            BatchSize::Auto => f.write_str("auto"),
        }
    }
}

/// The size in pixels of a US Letter page (8.5 × 11 in) rendered at `dpi`: the page
/// `auto` sizes the batch for.
pub fn letter_page(dpi: f32) -> (u32, u32) {
    ((8.5 * dpi).round() as u32, (11.0 * dpi).round() as u32)
}

/// Validated settings of a job.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// What the engine runs on each page.
    pub run: RunOptions,
    /// Selected PDF pages (`None` = all).
    pub pages: Option<PageRanges>,
    /// PDF rendering resolution.
    pub dpi: f32,
    pub format: Format,
    /// Pages decoding together in a [`Batch`](super::Batch).
    pub batch: BatchSize,
}

impl JobRequest {
    /// Checks every setting; the first bad one is a [`Error::Request`].
    pub fn parse(raw: &RawRequest<'_>) -> Result<Self> {
        let mode = parse_mode(raw.mode)?;
        let task = parse_task(raw.task)?;
        let pages = parse_pages(raw.pages)?;
        check_dpi(raw.dpi)?;
        let batch = parse_batch(raw.batch)?;
        let mut generate = GenerateOptions::default();
        if let Some(n) = parse_max_tokens(raw.max_tokens)? {
            generate.max_new_tokens = n;
        }
        Ok(Self {
            run: RunOptions { mode, task, generate },
            pages,
            dpi: raw.dpi,
            format: raw.format,
            batch,
        })
    }
}

const MODE_HINT: &str = "modes: tiny, small, base, large, gundam or custom:BASE:IMAGE[:crop]";

/// A resolution mode name.
pub fn parse_mode(s: &str) -> Result<Mode> {
    s.parse().map_err(|e: String| Error::request(e, MODE_HINT))
}

/// A task; in a custom prompt `\n` (two characters) becomes a newline and `<image>`
/// must appear exactly once.
pub fn parse_task(s: &str) -> Result<Task> {
    let mut task: Task = s.parse().map_err(|e: String| {
        Error::request(
            e,
            "tasks: markdown, ocr, free, figure, describe, locate=TEXT or prompt=TEXT",
        )
    })?;
    if let Task::Prompt(p) = &mut task {
        // Shells make typing a newline awkward; the official prompts need one after `<image>`.
        *p = p.replace("\\n", "\n");
        if p.matches("<image>").count() != 1 {
            return Err(Error::request(
                "a custom prompt must contain `<image>` exactly once",
                "e.g. prompt=<image>\\nFree OCR.",
            ));
        }
    }
    Ok(task)
}

/// PDF page ranges such as `1-3,7` or `5-`.
pub fn parse_pages(s: Option<&str>) -> Result<Option<PageRanges>> {
    s.map(str::parse)
        .transpose()
        .map_err(|e: String| Error::request(e, "page ranges look like 1-3,7 or 5- (pages count from 1)"))
}

/// The generation limit: at least 1; `None` keeps the default.
pub fn parse_max_tokens(n: Option<usize>) -> Result<Option<usize>> {
    match n {
        Some(0) => Err(Error::request(
            "max tokens must be at least 1",
            "omit it for the default 8192",
        )),
        other => Ok(other),
    }
}

/// A batch size: a whole number ≥ 1, or `auto`.
pub fn parse_batch(s: &str) -> Result<BatchSize> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(BatchSize::Auto);
    }
    match t.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(BatchSize::Pages(n)),
        _ => Err(Error::request(
            format!("batch size `{s}` is not a whole number ≥ 1 or `auto`"),
            "e.g. 4 pages decoding together, 1 for one page at a time, or auto",
        )),
    }
}

/// The PDF rendering resolution, within [`DPI_RANGE`].
pub fn check_dpi(dpi: f32) -> Result<()> {
    if dpi.is_finite() && dpi >= DPI_RANGE.0 && dpi <= DPI_RANGE.1 {
        Ok(())
    } else {
        Err(Error::request(
            format!("dpi {dpi} is out of range"),
            format!(
                "use a value between {} and {} (default {DEFAULT_DPI})",
                DPI_RANGE.0, DPI_RANGE.1
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn defaults_parse() {
        let r = JobRequest::parse(&RawRequest::default()).unwrap();
        assert_eq!(r.run.mode, Mode::GUNDAM);
        assert_eq!(r.format, Format::Md);
        assert!(r.pages.is_none());
    }

    #[test]
    fn bad_settings_are_request_errors() {
        for raw in [
            RawRequest {
                mode: "huge",
                ..Default::default()
            },
            RawRequest {
                task: "dance",
                ..Default::default()
            },
            RawRequest {
                task: "prompt=no image tag",
                ..Default::default()
            },
            RawRequest {
                pages: Some("3-1"),
                ..Default::default()
            },
            RawRequest {
                max_tokens: Some(0),
                ..Default::default()
            },
            RawRequest {
                dpi: f32::NAN,
                ..Default::default()
            },
            RawRequest {
                batch: "0",
                ..Default::default()
            },
            RawRequest {
                batch: "many",
                ..Default::default()
            },
            RawRequest {
                batch: "-2",
                ..Default::default()
            },
        ] {
            let e = JobRequest::parse(&raw).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Request, "{raw:?}: {e}");
            assert!(!e.hint().is_empty());
        }
    }

    #[test]
    fn batch_sizes_parse() {
        let batch = |s| {
            JobRequest::parse(&RawRequest {
                batch: s,
                ..Default::default()
            })
            .map(|r| r.batch)
        };
        assert_eq!(
            JobRequest::parse(&RawRequest::default()).unwrap().batch,
            BatchSize::Pages(1)
        );
        assert_eq!(batch("3").unwrap(), BatchSize::Pages(3));
        assert_eq!(batch(" 1 ").unwrap(), BatchSize::Pages(1));
        assert_eq!(batch("auto").unwrap(), BatchSize::Auto);
        assert_eq!(batch("AUTO").unwrap(), BatchSize::Auto);
        let e = batch("0").unwrap_err();
        assert!(e.to_string().contains("batch size `0`"), "{e}");
        assert_eq!(letter_page(144.0), (1224, 1584));
    }

    #[test]
    fn prompt_newlines_are_unescaped() {
        let t = parse_task("prompt=<image>\\nFree OCR.").unwrap();
        assert_eq!(t, Task::Prompt("<image>\nFree OCR.".into()));
    }

    #[test]
    fn formats_round_trip() {
        for f in [Format::Md, Format::Json, Format::Txt] {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert!("pdf".parse::<Format>().is_err());
    }
}
