//! Huge pages as a mosaic: an image larger than a threshold (large-format scans, maps,
//! newspaper pages) is cut into overlapping tiles that the model sees at full resolution,
//! instead of being shrunk until small print is unreadable.
//!
//! Each tile is OCR'd in grounding mode; its boxes are mapped back to page pixels; boxes
//! found twice in an overlap (IoU > 0.5) are merged, keeping the one farther from its
//! tile's edge (the one the model saw whole), and slivers of boxes cut by a tile edge
//! that another tile saw whole are dropped; the survivors are put in reading order
//! (rows top to bottom, left to right within a row) and written back as one grounded text
//! in the page's 0..999 grid, so the page gets the same Markdown/JSON/boxes outputs as any.
//!
//! Limits: a block larger than the overlap that crosses a tile edge is seen cut by both
//! tiles and comes out as two pieces; the page-level grid quantises boxes to 1/999 of
//! the page side (8 px on an 8000 px page).

use std::time::Duration;

use image::RgbImage;

use super::page_ocr::PageOcr;
use crate::engine::{OcrOutput, RunOptions, Timings};
use crate::error::{Error, Result};
use crate::generate::StopReason;
use crate::output::grounding::{self, GRID_MAX};
use crate::text::Task;

/// Tiling of huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MosaicOptions {
    /// Tile side in pixels (default 1024).
    pub tile: u32,
    /// Overlap between neighbouring tiles in pixels (default 128).
    pub overlap: u32,
    /// Pages whose width or height exceeds this are tiled (default 2048).
    pub threshold: u32,
}

impl Default for MosaicOptions {
    fn default() -> Self {
        Self {
            tile: 1024,
            overlap: 128,
            threshold: 2048,
        }
    }
}

/// Smallest tile side accepted.
pub const MIN_TILE: u32 = 64;

impl MosaicOptions {
    /// Checks the sizes: tile ≥ [`MIN_TILE`], overlap < tile / 2.
    pub fn validate(&self) -> Result<()> {
        if self.tile < MIN_TILE || self.overlap.saturating_mul(2) >= self.tile {
            return Err(Error::request(
                format!("mosaic tile {} with overlap {} is not usable", self.tile, self.overlap),
                format!(
                    "use a tile of at least {MIN_TILE} px and an overlap below half the tile (defaults 1024 and 128)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether a page of this size is tiled.
    pub fn applies(&self, width: u32, height: u32) -> bool {
        width > self.threshold || height > self.threshold
    }
}

/// A tile: its top-left corner and size in page pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Tile starts along one side: stride `tile - overlap`, the last tile flush with the edge.
fn starts(len: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile - overlap;
    let mut v = Vec::new();
    let mut s = 0;
    while s + tile < len {
        v.push(s);
        s += stride;
    }
    v.push(len - tile);
    v
}

/// The tiles covering a `width` × `height` page, row-major.
pub fn tiles(width: u32, height: u32, opts: &MosaicOptions) -> Vec<Tile> {
    let mut v = Vec::new();
    for &y in &starts(height, opts.tile, opts.overlap) {
        for &x in &starts(width, opts.tile, opts.overlap) {
            v.push(Tile {
                x,
                y,
                width: opts.tile.min(width),
                height: opts.tile.min(height),
            });
        }
    }
    v
}

/// A box found in a tile, in page pixels, with its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub label: String,
    /// `[x1, y1, x2, y2]` in page pixels.
    pub bbox: [f64; 4],
    /// The text the model wrote after the reference (up to the next one).
    pub text: String,
    /// Distance of the box from its tile's nearest edge, in pixels.
    pub edge_distance: f64,
    /// The box touches an edge of its tile that is inside the page: the model saw it cut,
    /// and a neighbouring tile (overlapping by more than the box) sees it whole.
    pub cut: bool,
}

/// Boxes this close to an inner tile edge (pixels) count as cut.
pub const CUT_MARGIN: f64 = 3.0;

/// Intersection over union of two boxes.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The boxes of one tile's grounded output, mapped to page pixels (`page`: page size).
pub fn boxes_of_tile(text: &str, tile: &Tile, page: (u32, u32)) -> Vec<Found> {
    let refs = grounding::parse_refs(text);
    let mut out = Vec::new();
    for (k, r) in refs.iter().enumerate() {
        let end = refs.get(k + 1).map_or(text.len(), |n| n.span.start);
        let body = text[r.span.end..end].trim().to_string();
        for b in &r.boxes {
            let p = grounding::to_pixels(*b, tile.width, tile.height);
            let (x1, y1, x2, y2) = (p.x1 as f64, p.y1 as f64, p.x2 as f64, p.y2 as f64);
            let (tw, th) = (tile.width as f64, tile.height as f64);
            let edge = x1.min(y1).min(tw - x2).min(th - y2);
            let cut = (tile.x > 0 && x1 < CUT_MARGIN)
                || (tile.y > 0 && y1 < CUT_MARGIN)
                || (tile.x + tile.width < page.0 && x2 > tw - CUT_MARGIN)
                || (tile.y + tile.height < page.1 && y2 > th - CUT_MARGIN);
            out.push(Found {
                label: r.label.clone(),
                bbox: [
                    x1 + tile.x as f64,
                    y1 + tile.y as f64,
                    x2 + tile.x as f64,
                    y2 + tile.y as f64,
                ],
                text: body.clone(),
                edge_distance: edge,
                cut,
            });
        }
    }
    out
}

/// Share of `b`'s area inside `a`.
fn covered(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    if area > 0.0 {
        iw * ih / area
    } else {
        1.0
    }
}

/// A box grown by [`CUT_MARGIN`] on every side (the model's grid rounds by a pixel or two).
fn grown(b: &[f64; 4]) -> [f64; 4] {
    [
        b[0] - CUT_MARGIN,
        b[1] - CUT_MARGIN,
        b[2] + CUT_MARGIN,
        b[3] + CUT_MARGIN,
    ]
}

/// Removes duplicates from the overlaps: of boxes with IoU > 0.5 the one farther from
/// its tile's edge is kept; a cut box mostly (> 50 %) inside a kept box is dropped too.
pub fn dedupe(mut found: Vec<Found>) -> Vec<Found> {
    // Whole boxes first, then the best-placed: each kept box is the best of its cluster.
    found.sort_by(|a, b| a.cut.cmp(&b.cut).then(b.edge_distance.total_cmp(&a.edge_distance)));
    let mut kept: Vec<Found> = Vec::new();
    for f in found {
        let duplicate = kept
            .iter()
            .any(|k| iou(&k.bbox, &f.bbox) > 0.5 || (f.cut && covered(&grown(&k.bbox), &f.bbox) > 0.5));
        if !duplicate {
            kept.push(f);
        }
    }
    kept
}

/// Reading order: rows top to bottom (a box joins the current row when their vertical
/// extents overlap by at least half the smaller height), left to right within a row.
pub fn reading_order(mut found: Vec<Found>) -> Vec<Found> {
    found.sort_by(|a, b| a.bbox[1].total_cmp(&b.bbox[1]).then(a.bbox[0].total_cmp(&b.bbox[0])));
    let mut rows: Vec<(f64, f64, Vec<Found>)> = Vec::new();
    for f in found {
        let (top, bottom) = (f.bbox[1], f.bbox[3]);
        match rows.last_mut() {
            Some((rt, rb, row)) if (rb.min(bottom) - rt.max(top)) >= 0.5 * (*rb - *rt).min(bottom - top).max(1.0) => {
                *rt = rt.min(top);
                *rb = rb.max(bottom);
                row.push(f);
            }
            _ => rows.push((top, bottom, vec![f])),
        }
    }
    rows.into_iter()
        .flat_map(|(_, _, mut row)| {
            row.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
            row
        })
        .collect()
}

/// The grounded text of the whole page, boxes in the page's 0..999 grid.
pub fn assemble(found: &[Found], width: u32, height: u32) -> String {
    let norm = |v: f64, size: u32| ((v / size as f64) * GRID_MAX).round().clamp(0.0, GRID_MAX) as i64;
    found
        .iter()
        .map(|f| {
            format!(
                "<|ref|>{}<|/ref|><|det|>[[{}, {}, {}, {}]]<|/det|>\n{}",
                f.label,
                norm(f.bbox[0], width),
                norm(f.bbox[1], height),
                norm(f.bbox[2], width),
                norm(f.bbox[3], height),
                f.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// OCRs a huge page tile by tile and merges the result into one page output.
pub fn run_mosaic(
    ocr: &dyn PageOcr,
    page: &RgbImage,
    run: &RunOptions,
    opts: &MosaicOptions,
    mut on_tile: Option<&mut dyn FnMut(usize, usize)>,
) -> Result<OcrOutput> {
    opts.validate()?;
    if !matches!(run.task, Task::Markdown | Task::Ocr) {
        return Err(Error::request(
            format!("mosaic needs a grounding task, not `{}`", run.task),
            "use --task markdown or --task ocr with huge-image tiling",
        ));
    }
    let (w, h) = page.dimensions();
    let grid = tiles(w, h, opts);
    let mut found = Vec::new();
    let mut timings = Timings::default();
    let (mut token_ids, mut prompt_tokens, mut image_tokens, mut kv) = (Vec::new(), 0, 0, 0);
    let mut stop = StopReason::Eos;
    for (k, t) in grid.iter().enumerate() {
        if let Some(cb) = on_tile.as_mut() {
            cb(k, grid.len());
        }
        let view = image::imageops::crop_imm(page, t.x, t.y, t.width, t.height).to_image();
        let out = ocr.ocr_page(&view, run, None)?;
        found.extend(boxes_of_tile(&out.text, t, (w, h)));
        add(&mut timings, &out.timings);
        token_ids.extend_from_slice(&out.token_ids);
        prompt_tokens += out.prompt_tokens;
        image_tokens += out.image_tokens;
        kv = kv.max(out.kv_cache_bytes);
        if out.stop != StopReason::Eos {
            stop = out.stop;
        }
    }
    let merged = reading_order(dedupe(found));
    let cols = starts(w, opts.tile, opts.overlap).len();
    Ok(OcrOutput {
        text: assemble(&merged, w, h),
        token_ids,
        prompt_tokens,
        image_tokens,
        image_size: (w, h),
        tile_grid: (cols, grid.len() / cols.max(1)),
        stop,
        timings,
        kv_cache_bytes: kv,
    })
}

fn add(t: &mut Timings, o: &Timings) {
    let sum = |a: Duration, b: Duration| a + b;
    t.preprocess = sum(t.preprocess, o.preprocess);
    t.vision = sum(t.vision, o.vision);
    t.prefill = sum(t.prefill, o.prefill);
    t.decode = sum(t.decode, o.decode);
    t.decode_tokens += o.decode_tokens;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_page_with_the_overlap() {
        let o = MosaicOptions::default();
        let t = tiles(8000, 6000, &o);
        let xs = starts(8000, 1024, 128);
        assert_eq!(xs.first(), Some(&0));
        assert_eq!(xs.last(), Some(&(8000 - 1024)));
        for w in xs.windows(2) {
            assert!(w[1] - w[0] <= 1024 - 128, "{w:?}");
        }
        assert_eq!(t.len(), xs.len() * starts(6000, 1024, 128).len());
        assert_eq!(
            tiles(500, 400, &o),
            vec![Tile {
                x: 0,
                y: 0,
                width: 500,
                height: 400
            }]
        );
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 30.0, 10.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn bad_tile_sizes_are_refused() {
        for (tile, overlap) in [(10, 0), (1024, 512), (1024, 600)] {
            let o = MosaicOptions {
                tile,
                overlap,
                threshold: 2048,
            };
            assert!(o.validate().is_err(), "{tile}/{overlap}");
        }
    }
}
