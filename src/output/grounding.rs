//! Grounding references in generated text (spec §10.1, §10.2).
//!
//! The model writes layout blocks as
//! `<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>` with coordinates
//! normalised to 0..999. The official scripts find them with a non-greedy,
//! dot-matches-newline regex and `eval` the box list; this parser finds the same
//! matches without a regex and reads the boxes tolerantly, because a model that ran
//! out of tokens or drifted writes broken brackets, stray words or huge numbers.

use std::ops::Range;

const REF_OPEN: &str = "<|ref|>";
/// The regex requires `<|/ref|>` to be followed immediately by `<|det|>`.
const REF_CLOSE_DET_OPEN: &str = "<|/ref|><|det|>";
const DET_CLOSE: &str = "<|/det|>";

/// Largest normalised coordinate: the model's grid is 0..=999.
pub const GRID_MAX: f64 = 999.0;

/// One `<|ref|>…<|/det|>` match in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Ref {
    /// Byte range of the whole match in the text it was parsed from.
    pub span: Range<usize>,
    /// The exact matched text (the official rewrite replaces this string).
    pub whole: String,
    /// The text between `<|ref|>` and `<|/ref|>`, e.g. `title`, `text`, `image`.
    pub label: String,
    /// Boxes in the model's normalised 0..999 grid, each `[x1, y1, x2, y2]`, in order.
    /// Malformed boxes are left out; the list may be empty.
    pub boxes: Vec<[f64; 4]>,
}

/// A box in pixels of the page image, `x1 <= x2`, `y1 <= y2`, inside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PixelBox {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
}

impl PixelBox {
    /// Width in pixels (zero for a degenerate box).
    pub fn width(&self) -> u32 {
        self.x2 - self.x1
    }
    /// Height in pixels (zero for a degenerate box).
    pub fn height(&self) -> u32 {
        self.y2 - self.y1
    }
}

/// Finds every grounding reference, left to right, like the official regex
/// `(<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>)` with DOTALL.
///
/// A reference whose closing tags are missing is not a match (its text stays as is).
pub fn parse_refs(text: &str) -> Vec<Ref> {
    let mut refs = Vec::new();
    let mut pos = 0;
    while let Some(open) = text[pos..].find(REF_OPEN).map(|i| pos + i) {
        let label_start = open + REF_OPEN.len();
        // No closing tags after this opening tag means none after any later one either.
        let Some(mid) = text[label_start..].find(REF_CLOSE_DET_OPEN).map(|i| label_start + i) else {
            break;
        };
        let boxes_start = mid + REF_CLOSE_DET_OPEN.len();
        let Some(close) = text[boxes_start..].find(DET_CLOSE).map(|i| boxes_start + i) else {
            break;
        };
        let end = close + DET_CLOSE.len();
        refs.push(Ref {
            span: open..end,
            whole: text[open..end].to_string(),
            label: text[label_start..mid].to_string(),
            boxes: parse_boxes(&text[boxes_start..close]),
        });
        pos = end;
    }
    refs
}

/// Reads the quadruples of a box list such as `[[1, 2, 3, 4], [5, 6, 7, 8]]`.
///
/// Every innermost `[...]` group holding exactly four finite numbers is a box; other
/// groups (wrong arity, words, unbalanced brackets) are skipped, so one broken box does
/// not lose the others. A bare `[x1, y1, x2, y2]` is accepted too.
pub fn parse_boxes(s: &str) -> Vec<[f64; 4]> {
    let mut boxes = Vec::new();
    let mut group_start = None;
    for (i, c) in s.char_indices() {
        match c {
            '[' => group_start = Some(i + 1),
            ']' => {
                if let Some(start) = group_start.take() {
                    if let Some(b) = parse_quad(&s[start..i]) {
                        boxes.push(b);
                    }
                }
            }
            _ => {}
        }
    }
    boxes
}

fn parse_quad(s: &str) -> Option<[f64; 4]> {
    let mut out = [0.0; 4];
    let mut n = 0;
    for part in s.split(',') {
        let v: f64 = part.trim().parse().ok()?;
        if !v.is_finite() || n == 4 {
            return None;
        }
        out[n] = v;
        n += 1;
    }
    (n == 4).then_some(out)
}

/// Maps a normalised box to pixels of a `width` × `height` image.
///
/// The official formula is `int(x / 999 * W)` (truncation). Coordinates outside
/// 0..999 are clamped first and swapped corners are ordered, so the result always
/// lies inside the image.
pub fn to_pixels(b: [f64; 4], width: u32, height: u32) -> PixelBox {
    let px = |v: f64, size: u32| -> u32 {
        let v = v.clamp(0.0, GRID_MAX);
        // Truncation toward zero of a non-negative value, as Python's int().
        ((v / GRID_MAX * size as f64) as u32).min(size)
    };
    let (x1, x2) = (px(b[0], width), px(b[2], width));
    let (y1, y2) = (px(b[1], height), px(b[3], height));
    PixelBox {
        x1: x1.min(x2),
        y1: y1.min(y2),
        x2: x1.max(x2),
        y2: y1.max(y2),
    }
}
