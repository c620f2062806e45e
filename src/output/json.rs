//! The `NAME.json` result schema: everything about one page (or one PDF) that a
//! program reading the results needs, without re-parsing the Markdown.

use serde::{Deserialize, Serialize};

use super::grounding::{self, PixelBox};
use crate::engine::{OcrOutput, Timings};

/// Version of this schema; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// One layout box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxJson {
    /// The reference label (`title`, `text`, `image`, `table`, …).
    pub label: String,
    /// Pixel coordinates in the page image: `[x1, y1, x2, y2]`.
    pub bbox: [u32; 4],
    /// The model's coordinates in its 0..999 grid, as written.
    pub bbox_norm: [f64; 4],
}

/// Token counts of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensJson {
    /// Prompt length (BOS + image tokens + text).
    pub prompt: usize,
    /// Image positions in the prompt.
    pub image: usize,
    /// Generated tokens (EOS included when generation stopped on it).
    pub generated: usize,
}

/// Stage timings of one page in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimingsJson {
    pub preprocess_ms: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// Decode throughput (0 when nothing was decoded).
    pub decode_tokens_per_s: f64,
}

impl From<&Timings> for TimingsJson {
    fn from(t: &Timings) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let decode_s = t.decode.as_secs_f64();
        Self {
            preprocess_ms: ms(t.preprocess),
            vision_ms: ms(t.vision),
            prefill_ms: ms(t.prefill),
            decode_ms: ms(t.decode),
            total_ms: ms(t.preprocess + t.vision + t.prefill + t.decode),
            decode_tokens_per_s: if decode_s > 0.0 {
                t.decode_tokens as f64 / decode_s
            } else {
                0.0
            },
        }
    }
}

/// The result of one page (an image input, or one page of a PDF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageJson {
    pub schema_version: u32,
    /// The input file as given.
    pub source: String,
    /// 1-based page number for PDF pages.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub page: Option<usize>,
    /// Page image size in pixels.
    pub width: u32,
    pub height: u32,
    /// Resolution mode name (`gundam`, `base`, …).
    pub mode: String,
    /// Task (`markdown`, `free`, `locate=…`, …).
    pub task: String,
    /// Tile grid `[width_tiles, height_tiles]`.
    pub tiles: [usize; 2],
    /// Raw model output (special tokens kept, EOS removed).
    pub text: String,
    /// Why generation stopped: `eos`, `max_tokens` or `cancelled`.
    pub stop: String,
    pub boxes: Vec<BoxJson>,
    pub tokens: TokensJson,
    pub timings: TimingsJson,
    /// Weight precision the page ran with (`f32`, `bf16`, `int8`; `auto` resolved), empty
    /// when not recorded.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub precision: String,
}

impl PageJson {
    /// The record with the weight precision it ran with.
    pub fn with_precision(mut self, precision: &str) -> Self {
        self.precision = precision.to_string();
        self
    }

    /// Builds the record of one page from the engine's output.
    pub fn new(source: &str, page: Option<usize>, mode: &str, task: &str, out: &OcrOutput) -> Self {
        let (w, h) = out.image_size;
        let boxes = grounding::parse_refs(&out.text)
            .into_iter()
            .flat_map(|r| {
                r.boxes.into_iter().map(move |b| {
                    let p: PixelBox = grounding::to_pixels(b, w, h);
                    BoxJson {
                        label: r.label.clone(),
                        bbox: [p.x1, p.y1, p.x2, p.y2],
                        bbox_norm: b,
                    }
                })
            })
            .collect();
        let stop = serde_json::to_value(out.stop)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Self {
            schema_version: SCHEMA_VERSION,
            source: source.to_string(),
            page,
            width: w,
            height: h,
            mode: mode.to_string(),
            task: task.to_string(),
            tiles: [out.tile_grid.0, out.tile_grid.1],
            text: out.text.clone(),
            stop,
            boxes,
            tokens: TokensJson {
                prompt: out.prompt_tokens,
                image: out.image_tokens,
                generated: out.token_ids.len(),
            },
            timings: TimingsJson::from(&out.timings),
            precision: String::new(),
        }
    }
}

/// The combined record of a PDF: its pages in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentJson {
    pub schema_version: u32,
    pub source: String,
    /// Number of pages in the PDF (not only the processed ones).
    pub page_count: usize,
    pub pages: Vec<PageJson>,
}
