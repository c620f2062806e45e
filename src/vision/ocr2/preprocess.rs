//! Views, modes and token counts of DeepSeek-OCR 2 (spec-ocr2 §3, §4).
//!
//! * default ("gundam"/"dynamic"): a 1024² letterboxed global view, plus — when a side
//!   exceeds **768** (trap T7) — the page stretched to a grid of 2–6 tiles of **768²**
//!   (trap T8), cut row-major. Tokens `144·k + 256 + 1`.
//! * no crop: one view of side `image_size` ∈ {768, 1024}: stretched when ≤ 768, else
//!   letterboxed. Tokens `n² + 1` (145 or 257).
//!
//! Resizing and padding are version 1's Pillow-exact functions (including Pillow 13's
//! vertical-first pass order, trap T16); only the sizes and rules differ.

use image::RgbImage;

use crate::error::{Error, Result};
use crate::vision::mode::Mode;
use crate::vision::preprocess::{cut_tiles, pad, PadGeometry, Preprocessed};
use crate::vision::resize::resize_bicubic;
use crate::vision::tiles::{choose_tile_grid_sized, MIN_TILES};

/// Tile side, and the side up to which a page is not tiled.
pub const TILE_SIZE: usize = 768;
/// Most tiles per page (HF and vLLM).
pub const MAX_TILES: usize = 6;
/// Side of the global view in the tiled mode.
pub const BASE_SIZE: usize = 1024;
/// The view sides the model has query tables for (trap T4).
pub const VIEW_SIZES: [usize; 2] = [768, 1024];

/// Tokens the encoder yields for a square view of side `s`: `ceil((s/16)/4)²`.
pub fn view_tokens(side: usize) -> usize {
    let q = (side / 16).div_ceil(4);
    q * q
}

/// Maps a requested mode onto what OCR 2 supports, or explains why it cannot.
///
/// * tiled modes (`gundam`, `dynamic`, `custom:1024:768:crop`): base 1024, tiles 768,
///   at most 6 — the official default; the v1 tile side 640 of `gundam` becomes 768;
/// * single-view modes: `base` (1024² letterboxed) and `nocrop768` (768² stretched).
pub fn resolve_mode(mode: Mode) -> Result<Mode> {
    let hint = "DeepSeek-OCR-2 modes: gundam (= dynamic, the default: 1024² global + 0 or 2-6 tiles of 768²), \
                base (one 1024² view), nocrop768 (one 768² view)";
    if mode.crop {
        if mode.base_size != BASE_SIZE || !matches!(mode.image_size, 640 | 768) {
            return Err(Error::request(
                format!("mode {mode} is not supported by DeepSeek-OCR-2 (tiled views are 1024² + 768² tiles)"),
                hint,
            ));
        }
        return Ok(Mode {
            base_size: BASE_SIZE,
            image_size: TILE_SIZE,
            crop: true,
            max_tiles: mode.max_tiles.clamp(MIN_TILES, MAX_TILES),
        });
    }
    if !VIEW_SIZES.contains(&mode.image_size) {
        return Err(Error::request(
            format!(
                "mode {mode} is not supported by DeepSeek-OCR-2: its encoder has query tables for 768² and 1024² views only"
            ),
            hint,
        ));
    }
    Ok(Mode {
        max_tiles: MAX_TILES,
        ..mode
    })
}

/// The tile grid of a `w × h` page in a resolved `mode`; `(1, 1)` when not tiled.
pub fn tile_grid(mode: Mode, w: u32, h: u32) -> (usize, usize) {
    let small = w as usize <= TILE_SIZE && h as usize <= TILE_SIZE;
    if !mode.crop || small {
        return (1, 1);
    }
    choose_tile_grid_sized(w, h, MIN_TILES, mode.max_tiles.min(MAX_TILES), TILE_SIZE)
}

/// Number of tiles of `grid` (0 when the page is not tiled).
pub fn tile_count(grid: (usize, usize)) -> usize {
    let k = grid.0 * grid.1;
    if k > 1 {
        k
    } else {
        0
    }
}

/// Side of the global (or only) view of a resolved `mode`.
pub fn global_side(mode: Mode) -> usize {
    if mode.crop {
        mode.base_size
    } else {
        mode.image_size
    }
}

/// Image-token positions: `tokens(tile)·k + tokens(global) + 1` (the separator).
pub fn num_image_tokens(mode: Mode, grid: (usize, usize)) -> usize {
    let local = if mode.crop {
        view_tokens(mode.image_size) * tile_count(grid)
    } else {
        0
    };
    local + view_tokens(global_side(mode)) + 1
}

/// Whether the single view of a no-crop `mode` is stretched (else letterboxed).
pub fn stretches(mode: Mode) -> bool {
    !mode.crop && mode.image_size <= TILE_SIZE
}

/// Geometry of the global view when letterboxed (`None` when stretched).
pub fn global_pad_geometry(mode: Mode, w: u32, h: u32) -> Option<PadGeometry> {
    (!stretches(mode)).then(|| crate::vision::preprocess::pad_geometry(w, h, global_side(mode) as u32))
}

/// Cuts `img` into the views of a resolved `mode` and counts its image tokens.
pub fn preprocess(img: &RgbImage, mode: Mode) -> Preprocessed {
    let (w, h) = img.dimensions();
    let side = global_side(mode) as u32;
    let global = if stretches(mode) {
        resize_bicubic(img, side, side)
    } else {
        pad(img, side)
    };
    let grid = tile_grid(mode, w, h);
    let tiles = if tile_count(grid) > 0 {
        cut_tiles(img, grid, TILE_SIZE as u32)
    } else {
        Vec::new()
    };
    Preprocessed {
        global,
        tiles,
        grid,
        num_image_tokens: num_image_tokens(mode, grid),
        image_size: (w, h),
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic() -> Mode {
        resolve_mode(Mode::GUNDAM).unwrap()
    }

    #[test]
    fn spec_tile_table() {
        // spec-ocr2 §3.2 examples: (W, H) → grid (w, h), tokens.
        type Row = ((u32, u32), (usize, usize), usize);
        let table: [Row; 16] = [
            ((640, 480), (1, 1), 257),
            ((768, 768), (1, 1), 257),
            ((760, 700), (1, 1), 257),
            ((769, 500), (3, 2), 1121),
            ((800, 600), (3, 2), 1121),
            ((850, 1100), (2, 3), 1121),
            ((1240, 1754), (2, 3), 1121),
            ((2480, 3508), (2, 3), 1121),
            ((1000, 1000), (2, 2), 833),
            ((1500, 1500), (2, 2), 833),
            ((1000, 800), (2, 2), 833),
            ((1700, 600), (3, 1), 689),
            ((3000, 1000), (3, 1), 689),
            ((1920, 1080), (2, 1), 545),
            ((1024, 2048), (1, 2), 545),
            ((500, 1500), (1, 3), 689),
        ];
        for ((w, h), grid, tokens) in table {
            let g = tile_grid(dynamic(), w, h);
            assert_eq!(g, grid, "{w}x{h}");
            assert_eq!(num_image_tokens(dynamic(), g), tokens, "{w}x{h}");
        }
        assert_eq!(tile_grid(dynamic(), 769, 100), (6, 1));
    }

    #[test]
    fn a_tiled_page_never_has_one_tile_nor_more_than_six() {
        for w in (1..3000u32).step_by(97) {
            for h in (1..3000u32).step_by(89) {
                let g = tile_grid(dynamic(), w, h);
                let k = g.0 * g.1;
                assert!(k == 1 || (2..=6).contains(&k), "{w}x{h}: {g:?}");
                assert_eq!(k == 1, w <= 768 && h <= 768, "{w}x{h}");
            }
        }
    }

    #[test]
    fn no_crop_token_counts_and_geometry() {
        let m768 = resolve_mode("nocrop768".parse().unwrap()).unwrap();
        let m1024 = resolve_mode(Mode::BASE).unwrap();
        assert_eq!(num_image_tokens(m768, (1, 1)), 145);
        assert_eq!(num_image_tokens(m1024, (1, 1)), 257);
        assert!(stretches(m768) && !stretches(m1024));
        let p = preprocess(&RgbImage::new(850, 1100), m768);
        assert_eq!(p.global.dimensions(), (768, 768));
        assert!(p.tiles.is_empty());
    }

    #[test]
    fn unsupported_view_sizes_are_refused() {
        for m in [Mode::TINY, Mode::SMALL, Mode::LARGE] {
            let e = resolve_mode(m).unwrap_err().to_string();
            assert!(e.contains("DeepSeek-OCR-2"), "{e}");
        }
        assert!(resolve_mode("custom:1280:768:crop".parse().unwrap()).is_err());
        assert_eq!(dynamic().image_size, 768);
        assert_eq!(dynamic().max_tiles, 6);
    }

    #[test]
    fn tiled_views_are_768_tiles_and_a_1024_global() {
        let p = preprocess(&RgbImage::new(1700, 600), dynamic());
        assert_eq!(p.grid, (3, 1));
        assert_eq!(p.tiles.len(), 3);
        assert!(p.tiles.iter().all(|t| t.dimensions() == (768, 768)));
        assert_eq!(p.global.dimensions(), (1024, 1024));
        assert_eq!(p.num_image_tokens, 689);
    }
}
