//! Huge pages as a mosaic, with the model replaced by a scripted stand-in that "reads"
//! the tile it is given: it finds the coloured blocks in the tile pixels (each block's
//! colour encodes its word) and answers in the model's grounding format, relative to the
//! tile, as the real model does. The page is 8000×6000 with blocks whose geometry is known.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use deepseek_ocr::engine::{OcrOutput, RunOptions, Timings};
use deepseek_ocr::generate::StopReason;
use deepseek_ocr::job::mosaic::{run_mosaic, tiles, MosaicOptions};
use deepseek_ocr::job::PageOcr;
use deepseek_ocr::output::grounding;
use image::{Rgb, RgbImage};

/// A block of the synthetic page: `[x1, y1, x2, y2]` (exclusive ends) and its word id.
#[derive(Debug, Clone, Copy)]
struct Block {
    bbox: [u32; 4],
}

fn colour(id: u32) -> Rgb<u8> {
    Rgb([(id % 200) as u8, (id / 200) as u8, 0])
}

fn id_of(p: &Rgb<u8>) -> Option<u32> {
    (p[2] < 128).then(|| p[0] as u32 + 200 * p[1] as u32)
}

/// Blocks on a grid with jitter so that many of them fall into tile overlaps; sides up to
/// 120 px (below the 128 px overlap).
fn page() -> (RgbImage, Vec<Block>) {
    let (w, h) = (8000u32, 6000u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut blocks = Vec::new();
    let mut id = 0;
    let mut y = 20;
    let mut row = 0u32;
    while y + 130 < h {
        let mut x = 15 + (row * 37) % 90;
        while x + 130 < w {
            let bw = 40 + (id * 13) % 80;
            let bh = 20 + (id * 7) % 90;
            let b = Block {
                bbox: [x, y, x + bw, y + bh],
            };
            for yy in b.bbox[1]..b.bbox[3] {
                for xx in b.bbox[0]..b.bbox[2] {
                    img.put_pixel(xx, yy, colour(id));
                }
            }
            blocks.push(b);
            id += 1;
            x += bw + 150 + (id * 31) % 200;
        }
        y += 260 + (row * 17) % 60;
        row += 1;
    }
    (img, blocks)
}

/// The scripted model: every block visible in the tile (possibly cut by its edge).
struct StandIn {
    calls: Cell<usize>,
}

impl PageOcr for StandIn {
    fn ocr_page(
        &self,
        image: &RgbImage,
        _run: &RunOptions,
        _on_text: Option<&mut dyn FnMut(&str)>,
    ) -> deepseek_ocr::Result<OcrOutput> {
        self.calls.set(self.calls.get() + 1);
        let (w, h) = image.dimensions();
        let mut boxes: HashMap<u32, [u32; 4]> = HashMap::new();
        for (x, y, p) in image.enumerate_pixels() {
            if let Some(id) = id_of(p) {
                let b = boxes.entry(id).or_insert([x, y, x + 1, y + 1]);
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x + 1);
                b[3] = b[3].max(y + 1);
            }
        }
        let mut v: Vec<_> = boxes.into_iter().collect();
        v.sort_by_key(|(_, b)| (b[1], b[0]));
        let norm = |p: u32, s: u32| (p as f64 / s as f64 * 999.0).round() as u32;
        let text = v
            .iter()
            .map(|(id, b)| {
                format!(
                    "<|ref|>text<|/ref|><|det|>[[{}, {}, {}, {}]]<|/det|>\nword{id}",
                    norm(b[0], w),
                    norm(b[1], h),
                    norm(b[2], w),
                    norm(b[3], h)
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(OcrOutput {
            text,
            token_ids: vec![0; 3],
            prompt_tokens: 10,
            image_tokens: 8,
            image_size: (w, h),
            tile_grid: (1, 1),
            stop: StopReason::Eos,
            timings: Timings::default(),
            kv_cache_bytes: 0,
        })
    }
}

#[test]
fn mosaic_finds_every_block_of_a_huge_page_once_in_reading_order() {
    let (img, truth) = page();
    let opts = MosaicOptions::default();
    let ocr = StandIn { calls: Cell::new(0) };
    let out = run_mosaic(&ocr, &img, &RunOptions::default(), &opts, None).expect("mosaic");
    assert_eq!(ocr.calls.get(), tiles(8000, 6000, &opts).len());
    assert_eq!(out.image_size, (8000, 6000));

    // The same record a page gets: boxes in page pixels.
    let refs = grounding::parse_refs(&out.text);
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for (k, r) in refs.iter().enumerate() {
        let end = refs.get(k + 1).map_or(out.text.len(), |n| n.span.start);
        let word = out.text[r.span.end..end].trim();
        let id: u32 = word.strip_prefix("word").expect("word").parse().expect("id");
        assert!(seen.insert(id), "block {id} found twice");
        order.push(id);
        assert_eq!(r.boxes.len(), 1);
        let p = grounding::to_pixels(r.boxes[0], 8000, 6000);
        let t = truth[id as usize].bbox;
        // The page grid is 1/999 of a side (8 and 6 px), plus the model grid's rounding.
        for (got, want, tol) in [(p.x1, t[0], 12), (p.y1, t[1], 10), (p.x2, t[2], 12), (p.y2, t[3], 10)] {
            assert!(got.abs_diff(want) <= tol, "block {id}: {p:?} vs {t:?}");
        }
    }
    assert_eq!(seen.len(), truth.len(), "every block is found");
    // Reading order: the blocks were laid out row by row, left to right, ids ascending.
    assert_eq!(order, (0..truth.len() as u32).collect::<Vec<_>>());
    // Many blocks do lie in overlaps (the test would be empty otherwise).
    let in_overlap = truth
        .iter()
        .filter(|b| {
            tiles(8000, 6000, &opts)
                .iter()
                .filter(|t| {
                    b.bbox[0] >= t.x && b.bbox[2] <= t.x + t.width && b.bbox[1] >= t.y && b.bbox[3] <= t.y + t.height
                })
                .count()
                > 1
        })
        .count();
    assert!(in_overlap > 20, "only {in_overlap} blocks in overlaps");
}

#[test]
fn small_pages_are_not_tiled_and_non_grounding_tasks_are_refused() {
    let opts = MosaicOptions::default();
    assert!(!opts.applies(2048, 2048));
    assert!(opts.applies(2049, 100));
    let img = RgbImage::from_pixel(3000, 3000, Rgb([255, 255, 255]));
    let ocr = StandIn { calls: Cell::new(0) };
    let run = RunOptions {
        task: deepseek_ocr::Task::Free,
        ..Default::default()
    };
    let e = run_mosaic(&ocr, &img, &run, &opts, None).unwrap_err();
    assert_eq!(e.kind(), deepseek_ocr::error::ErrorKind::Request);
    assert_eq!(ocr.calls.get(), 0);
}
