//! EXIF orientation, read and applied as Pillow's `ImageOps.exif_transpose` does (spec §3.1).
//!
//! The tag (0x0112) comes from the file's EXIF block (JPEG APP1, PNG `eXIf`, WebP `EXIF`);
//! when the block has no such tag, Pillow also accepts `tiff:Orientation` from the XMP
//! packet. A block that cannot be parsed leaves the image as stored, as the reference's
//! `try/except` around `exif_transpose` does.

use image::imageops;
use image::RgbImage;

/// Orientation value of an image stored upright.
pub const UPRIGHT: u32 = 1;

/// The EXIF orientation (1–8; other values mean "unchanged") from the raw EXIF block and
/// the XMP packet of a file, either of which may be absent.
pub fn orientation_from_metadata(exif: Option<&[u8]>, xmp: Option<&[u8]>) -> u32 {
    match exif.map(exif_orientation) {
        // A block that does not parse: the reference falls back to the stored image.
        Some(Err(())) => UPRIGHT,
        Some(Ok(Some(v))) => v,
        Some(Ok(None)) | None => xmp.and_then(xmp_orientation).unwrap_or(UPRIGHT),
    }
}

/// The orientation tag of a raw EXIF block (TIFF data, optionally behind `Exif\0\0`).
/// `Err` when the block is not readable at all.
fn exif_orientation(block: &[u8]) -> Result<Option<u32>, ()> {
    let data = block.strip_prefix(b"Exif\0\0").unwrap_or(block);
    // Pillow reads what it can from a damaged block; keep the fields that parsed.
    let parsed = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(data.to_vec())
        .or_else(|e| e.distill_partial_result(|_| {}));
    let Ok(exif) = parsed else { return Err(()) };
    Ok(exif
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0)))
}

/// Pillow's XMP fallback: the first match of `tiff:Orientation(="|>)([0-9])`.
fn xmp_orientation(xmp: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut rest = xmp;
    while let Some(pos) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let after = &rest[pos + KEY.len()..];
        let digit = match after {
            [b'=', b'"', d, ..] | [b'>', d, ..] => Some(*d),
            _ => None,
        };
        if let Some(d) = digit.filter(u8::is_ascii_digit) {
            return Some(u32::from(d - b'0'));
        }
        rest = after;
    }
    None
}

/// Turns a stored image upright for EXIF orientation `o` (Pillow's `exif_transpose`):
/// 2 mirror left-right, 3 rotate 180°, 4 mirror top-bottom, 5 transpose, 6 rotate 90°
/// clockwise, 7 transverse, 8 rotate 90° counter-clockwise; anything else unchanged.
pub fn apply_orientation(img: RgbImage, o: u32) -> RgbImage {
    match o {
        2 => imageops::flip_horizontal(&img),
        3 => imageops::rotate180(&img),
        4 => imageops::flip_vertical(&img),
        // Transpose: (x, y) → (y, x).
        5 => imageops::flip_horizontal(&imageops::rotate90(&img)),
        6 => imageops::rotate90(&img),
        // Transverse: (x, y) → (H−1−y, W−1−x).
        7 => imageops::flip_horizontal(&imageops::rotate270(&img)),
        8 => imageops::rotate270(&img),
        _ => img,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmp_patterns() {
        assert_eq!(xmp_orientation(b"<x tiff:Orientation=\"6\"/>"), Some(6));
        assert_eq!(xmp_orientation(b"<tiff:Orientation>8</tiff:Orientation>"), Some(8));
        assert_eq!(xmp_orientation(b"tiff:Orientation='6' tiff:Orientation=\"3\""), Some(3));
        assert_eq!(xmp_orientation(b"nothing here"), None);
    }

    #[test]
    fn exif_wins_over_xmp_and_bad_exif_is_ignored() {
        let xmp: &[u8] = b"tiff:Orientation=\"8\"";
        assert_eq!(orientation_from_metadata(None, Some(xmp)), 8);
        assert_eq!(orientation_from_metadata(Some(b"garbage"), Some(xmp)), UPRIGHT);
        assert_eq!(orientation_from_metadata(None, None), UPRIGHT);
    }
}
