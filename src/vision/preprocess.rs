//! From an oriented RGB page to the exact u8 views the encoder sees (spec §3.3–3.4, §4).
//!
//! * single view, side `S ≤ 640` (Tiny, Small): the page is stretched to `S×S`;
//! * single view, `S > 640` (Base, Large): the page is letterboxed into `S×S` on grey 127;
//! * tiled (Gundam): a letterboxed `base_size` global view, plus — when either side exceeds
//!   640 — the page stretched to a grid of `image_size` tiles, cut row-major.
//!
//! All resizing is Pillow's bicubic ([`resize_bicubic`]); normalisation to tensors is
//! [`crate::vision::normalize::views_to_tensor`].

use image::{Rgb, RgbImage};

use crate::vision::mode::Mode;
use crate::vision::resize::resize_bicubic;
use crate::vision::tiles::{choose_tile_grid_sized, MIN_TILES, TILE_SIZE};

/// Grey of the letterbox bars: the reference computes `int(0.5 · 255)` = 127 (not 128).
pub const PAD_GREY: u8 = 127;

/// The views of one page, ready for normalisation.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The global view (`base_size²` when tiling, else `image_size²`).
    pub global: RgbImage,
    /// The local tiles (`image_size²` each), row-major; empty when the page is not tiled.
    pub tiles: Vec<RgbImage>,
    /// `(width_tiles, height_tiles)`; `(1, 1)` when there are no tiles.
    pub grid: (usize, usize),
    /// Number of `<image>` token positions the page takes in the prompt.
    pub num_image_tokens: usize,
    /// Size `(W, H)` of the page that was preprocessed.
    pub image_size: (u32, u32),
    /// The mode used.
    pub mode: Mode,
}

/// Where the resized page sits inside a letterboxed view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PadGeometry {
    /// Side of the square view.
    pub side: u32,
    /// Size of the aspect-preserving resize.
    pub resized: (u32, u32),
    /// Top-left corner where it is pasted.
    pub offset: (u32, u32),
    /// The offset before rounding (`.5` values are where half-to-even matters).
    pub offset_before_rounding: (f64, f64),
}

/// How the global view is made from the page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlobalGeometry {
    /// Stretched to a square, aspect ignored.
    Squash {
        /// Side of the view.
        side: u32,
    },
    /// Resized keeping the aspect ratio and centred on grey.
    Pad(PadGeometry),
}

/// Side of the view for `S`-pixel input: `ceil((S / 16) / 4)` features per row (spec §4).
fn queries(side: usize) -> usize {
    (side / 16).div_ceil(4)
}

/// Number of image-token positions for a page in `mode` cut into `grid` tiles (spec §4):
/// `n_g·(n_g+1) + 1`, plus `(n_l·w_t + 1)·(n_l·h_t)` when tiled.
pub fn num_image_tokens(mode: Mode, grid: (usize, usize)) -> usize {
    let global_side = if mode.crop { mode.base_size } else { mode.image_size };
    let g = queries(global_side);
    let mut n = g * (g + 1) + 1;
    let (wt, ht) = grid;
    if mode.crop && (wt > 1 || ht > 1) {
        let l = queries(mode.image_size);
        n += (l * wt + 1) * (l * ht);
    }
    n
}

/// Python's `round` (ties to even) of a non-negative value, as u32.
fn round_even(x: f64) -> u32 {
    x.round_ties_even().max(0.0) as u32
}

/// Geometry of Pillow's `ImageOps.pad(image, (side, side))` for a `w × h` page.
///
/// The ratio tests and the rounding copy Pillow exactly (f64, `H / W · S`, ties to even).
/// Pillow would fail on a page so thin that the short side rounds to 0; it is kept at 1 here.
pub fn pad_geometry(w: u32, h: u32, side: u32) -> PadGeometry {
    let (wf, hf, s) = (f64::from(w.max(1)), f64::from(h.max(1)), f64::from(side));
    let ratio = wf / hf;
    let resized = if ratio == 1.0 {
        (side, side)
    } else if ratio > 1.0 {
        (side, round_even(hf / wf * s).max(1))
    } else {
        (round_even(wf / hf * s).max(1), side)
    };
    let (mut offset, mut before) = ((0, 0), (0.0, 0.0));
    if resized != (side, side) {
        if resized.0 != side {
            before.0 = f64::from(side - resized.0) * 0.5;
            offset.0 = round_even(before.0);
        } else {
            before.1 = f64::from(side - resized.1) * 0.5;
            offset.1 = round_even(before.1);
        }
    }
    PadGeometry {
        side,
        resized,
        offset,
        offset_before_rounding: before,
    }
}

/// Pillow's `ImageOps.pad(image, (side, side), BICUBIC, color=(127,127,127))`.
pub fn pad(img: &RgbImage, side: u32) -> RgbImage {
    let g = pad_geometry(img.width(), img.height(), side);
    let resized = resize_bicubic(img, g.resized.0, g.resized.1);
    if g.resized == (side, side) {
        return resized;
    }
    let mut out = RgbImage::from_pixel(side, side, Rgb([PAD_GREY; 3]));
    image::imageops::replace(&mut out, &resized, i64::from(g.offset.0), i64::from(g.offset.1));
    out
}

/// How [`preprocess`] makes the global view of a `w × h` page in `mode`.
pub fn global_geometry(mode: Mode, w: u32, h: u32) -> GlobalGeometry {
    let side = global_side(mode);
    if !mode.crop && mode.image_size <= TILE_SIZE {
        GlobalGeometry::Squash { side }
    } else {
        GlobalGeometry::Pad(pad_geometry(w, h, side))
    }
}

fn global_side(mode: Mode) -> u32 {
    let s = if mode.crop { mode.base_size } else { mode.image_size };
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The tile grid of a `w × h` page in `mode`; `(1, 1)` when the page is not tiled.
///
/// The reference tiles only pages with a side over 640 (a constant in its code, equal to
/// the tile side of every official tiled mode).
pub fn tile_grid(mode: Mode, w: u32, h: u32) -> (usize, usize) {
    let small = w as usize <= TILE_SIZE && h as usize <= TILE_SIZE;
    if !mode.crop || small {
        return (1, 1);
    }
    choose_tile_grid_sized(w, h, MIN_TILES, mode.max_tiles, mode.image_size)
}

/// Cuts `img` into the views of `mode` (spec §3.3–3.4) and counts its image tokens.
pub fn preprocess(img: &RgbImage, mode: Mode) -> Preprocessed {
    let (w, h) = img.dimensions();
    let global = match global_geometry(mode, w, h) {
        GlobalGeometry::Squash { side } => resize_bicubic(img, side, side),
        GlobalGeometry::Pad(g) => pad(img, g.side),
    };
    let grid = tile_grid(mode, w, h);
    let tiles = if grid.0 * grid.1 > 1 {
        cut_tiles(img, grid, mode.image_size as u32)
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

/// Stretches the page to `grid` tiles of `tile` pixels and cuts them row-major.
pub fn cut_tiles(img: &RgbImage, grid: (usize, usize), tile: u32) -> Vec<RgbImage> {
    let (wt, ht) = (grid.0 as u32, grid.1 as u32);
    let big = resize_bicubic(img, tile * wt, tile * ht);
    let mut tiles = Vec::with_capacity((wt * ht) as usize);
    for r in 0..ht {
        for c in 0..wt {
            tiles.push(image::imageops::crop_imm(&big, c * tile, r * tile, tile, tile).to_image());
        }
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_of_the_official_modes() {
        assert_eq!(num_image_tokens(Mode::TINY, (1, 1)), 73);
        assert_eq!(num_image_tokens(Mode::SMALL, (1, 1)), 111);
        assert_eq!(num_image_tokens(Mode::BASE, (1, 1)), 273);
        assert_eq!(num_image_tokens(Mode::LARGE, (1, 1)), 421);
        assert_eq!(num_image_tokens(Mode::GUNDAM, (1, 1)), 273);
        assert_eq!(num_image_tokens(Mode::GUNDAM, (2, 3)), 903);
        assert_eq!(num_image_tokens(Mode::GUNDAM, (3, 3)), 1203);
        assert_eq!(num_image_tokens(Mode::GUNDAM, (6, 1)), 883);
    }

    #[test]
    fn spec_examples() {
        for ((w, h), tokens) in [
            ((640, 480), 273),
            ((800, 600), 893),
            ((1240, 1754), 903),
            ((1920, 1080), 1093),
            ((1024, 2048), 1113),
            ((3000, 1000), 583),
        ] {
            let grid = tile_grid(Mode::GUNDAM, w, h);
            assert_eq!(num_image_tokens(Mode::GUNDAM, grid), tokens, "{w}x{h}");
        }
    }

    #[test]
    fn pad_rounds_half_to_even() {
        // 300×200 → 1024×683, offset (1024 − 683)/2 = 170.5 → 170.
        let g = pad_geometry(300, 200, 1024);
        assert_eq!(g.resized, (1024, 683));
        assert_eq!(g.offset, (0, 170));
        assert_eq!(g.offset_before_rounding, (0.0, 170.5));
        let g = pad_geometry(1000, 1000, 1024);
        assert_eq!((g.resized, g.offset), ((1024, 1024), (0, 0)));
    }

    #[test]
    fn degenerate_pages_do_not_panic() {
        let thin = RgbImage::new(5000, 1);
        let p = preprocess(&thin, Mode::GUNDAM);
        assert_eq!(p.global.dimensions(), (1024, 1024));
        assert_eq!(p.tiles.len(), p.grid.0 * p.grid.1);
        let empty = RgbImage::new(0, 0);
        let p = preprocess(&empty, Mode::BASE);
        assert_eq!(p.global.dimensions(), (1024, 1024));
    }
}
