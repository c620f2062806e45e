//! Conversion of decoded pixels to 8-bit RGB with Pillow's `convert("RGB")` semantics
//! (spec §3.1, golden-preprocess README step 3).
//!
//! * gray → R = G = B; palette → palette colour, transparency ignored;
//! * alpha is dropped, never composited (a transparent pixel shows the colour stored in it);
//! * 16-bit samples: see [`Bits16`];
//! * CMYK JPEG: Adobe-inverted samples, then Pillow's integer CMYK → RGB formula.

use image::{DynamicImage, RgbImage};

/// How 16-bit samples become 8-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bits16 {
    /// Proper scaling, `round(v · 255 / 65535)`. What a 16-bit scan needs to look right.
    #[default]
    Scale,
    /// Pillow's behaviour, bit for bit: 16-bit gray is clamped (`min(v, 255)`, which turns a
    /// full-range scan into black and white), other 16-bit images keep the high byte (`v >> 8`).
    PillowClamp,
}

/// `round(v · 255 / 65535)` in integers.
fn scale16(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

/// Drops every channel after the first `keep` of an interleaved 16-bit buffer and maps
/// the kept samples to u8 with `f`, then widens gray to RGB when `keep == 1`.
fn from16(w: u32, h: u32, data: &[u16], channels: usize, gray: bool, f: impl Fn(u16) -> u8) -> RgbImage {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in data.chunks_exact(channels) {
        if gray {
            let v = f(px[0]);
            out.extend_from_slice(&[v, v, v]);
        } else {
            out.extend_from_slice(&[f(px[0]), f(px[1]), f(px[2])]);
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Converts any decoded image to 8-bit RGB as Pillow's `convert("RGB")` does.
///
/// 8-bit images go through the `image` crate's `to_rgb8`, which already drops alpha and
/// replicates gray; only the 16-bit cases need care.
pub fn to_rgb8(img: &DynamicImage, bits16: Bits16) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let high = |v: u16| (v >> 8) as u8;
    match (img, bits16) {
        (DynamicImage::ImageLuma16(b), Bits16::PillowClamp) => from16(w, h, b.as_raw(), 1, true, |v| v.min(255) as u8),
        (DynamicImage::ImageLumaA16(b), Bits16::PillowClamp) => from16(w, h, b.as_raw(), 2, true, high),
        (DynamicImage::ImageRgb16(b), Bits16::PillowClamp) => from16(w, h, b.as_raw(), 3, false, high),
        (DynamicImage::ImageRgba16(b), Bits16::PillowClamp) => from16(w, h, b.as_raw(), 4, false, high),
        (DynamicImage::ImageLuma16(b), Bits16::Scale) => from16(w, h, b.as_raw(), 1, true, scale16),
        (DynamicImage::ImageLumaA16(b), Bits16::Scale) => from16(w, h, b.as_raw(), 2, true, scale16),
        (DynamicImage::ImageRgb16(b), Bits16::Scale) => from16(w, h, b.as_raw(), 3, false, scale16),
        (DynamicImage::ImageRgba16(b), Bits16::Scale) => from16(w, h, b.as_raw(), 4, false, scale16),
        _ => img.to_rgb8(),
    }
}

/// Pillow's `MULDIV255`: `a·b / 255`, rounded, in integers.
fn muldiv255(a: u8, b: u8) -> i32 {
    let t = i32::from(a) * i32::from(b) + 128;
    ((t >> 8) + t) >> 8
}

/// RGB from the raw samples of a 4-component (CMYK) JPEG, as Pillow computes it.
///
/// Pillow reads such files with the Adobe convention (samples stored inverted), so it
/// first inverts each sample, then applies `X = clip(nk − MULDIV255(C, nk))` with
/// `nk = 255 − K` for C, M, Y → R, G, B.
pub fn cmyk_to_rgb8(w: u32, h: u32, raw_cmyk: &[u8]) -> RgbImage {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in raw_cmyk.chunks_exact(4) {
        // nk = 255 − K after inversion, i.e. the stored K sample.
        let nk = px[3];
        for &s in &px[..3] {
            let c = 255 - s;
            out.push((i32::from(nk) - muldiv255(c, nk)).clamp(0, 255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    #[test]
    fn sixteen_bit_gray_both_ways() {
        let g: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_raw(4, 1, vec![0, 200, 257 * 100, 65535]).unwrap_or_default();
        let img = DynamicImage::ImageLuma16(g);
        let clamp = to_rgb8(&img, Bits16::PillowClamp);
        assert_eq!(clamp.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), [0, 200, 255, 255]);
        let scale = to_rgb8(&img, Bits16::Scale);
        assert_eq!(scale.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), [0, 1, 100, 255]);
        assert!(scale.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    }

    #[test]
    fn sixteen_bit_rgb_keeps_the_high_byte_in_pillow_mode() {
        let b: ImageBuffer<Rgb<u16>, Vec<u16>> =
            ImageBuffer::from_raw(1, 1, vec![0x12ff, 0x8000, 0xffff]).unwrap_or_default();
        let img = DynamicImage::ImageRgb16(b);
        assert_eq!(to_rgb8(&img, Bits16::PillowClamp).get_pixel(0, 0).0, [0x12, 0x80, 0xff]);
        assert_eq!(to_rgb8(&img, Bits16::Scale).get_pixel(0, 0).0, [0x13, 0x80, 0xff]);
    }

    #[test]
    fn cmyk_formula() {
        // Stored (inverted) 255 everywhere = no ink: white.
        assert_eq!(cmyk_to_rgb8(1, 1, &[255, 255, 255, 255]).get_pixel(0, 0).0, [255; 3]);
        // Full black ink (stored K = 0): black.
        assert_eq!(cmyk_to_rgb8(1, 1, &[255, 255, 255, 0]).get_pixel(0, 0).0, [0; 3]);
        // C ink 100 (stored 155), no K: R = 255 − round(100·255/255) = 155.
        assert_eq!(
            cmyk_to_rgb8(1, 1, &[155, 255, 255, 255]).get_pixel(0, 0).0,
            [155, 255, 255]
        );
    }
}
