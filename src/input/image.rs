//! Reading an image file into the oriented 8-bit RGB page the reference works on
//! (spec §3.1, golden-preprocess README steps 1–3).
//!
//! Steps: read the bytes; detect the format from the content (the extension is ignored);
//! read the header and refuse images over the pixel limit before decoding anything;
//! decode at full resolution; convert to RGB as Pillow's `convert("RGB")` does; apply the
//! EXIF orientation.
//!
//! # Exactness
//!
//! PNG (and the other lossless formats) decode exactly as in the reference when
//! [`Bits16::PillowClamp`] is chosen. JPEG goes through the `image` crate (zune-jpeg),
//! whose IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels: the
//! accepted bound against the reference decode is a max |diff| ≤ 3 on u8 values with
//! fewer than 2 % of the values differing (measured on the golden set: max 1, ≤ 1 %).
//! The same bound applies to the views made from such a decode.
//!
//! Known, rare differences from Pillow: a GIF's transparent palette index decodes as
//! black instead of its palette colour; a 16-bit gray PNG with a `tRNS` chunk keeps the
//! high byte instead of being clamped; YCCK JPEGs use zune-jpeg's colour conversion (±1);
//! EXIF stored in a PNG after the image data or in a "Raw profile type exif" text chunk is
//! not read.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};
use crate::input::convert::{cmyk_to_rgb8, to_rgb8};
use crate::input::orientation::{apply_orientation, orientation_from_metadata};

pub use crate::input::convert::Bits16;

/// Pixel-count limit of a decoded image, checked on the header before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels (`width × height`) an image may have.
    pub max_pixels: u64,
}

impl ImageLimits {
    /// The default limit, 178,956,970 pixels: where Pillow (and so the reference) refuses an
    /// image as a decompression bomb (`2 × Image.MAX_IMAGE_PIXELS`; Pillow only warns at
    /// half of it). About 512 MiB of RGB pixels.
    pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
        }
    }
}

/// How an image file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Size limit.
    pub limits: ImageLimits,
    /// 16-bit to 8-bit conversion (default: proper scaling).
    pub bits16: Bits16,
}

/// Formats this build can read, for error hints.
const SUPPORTED: &str = "PNG, JPEG, GIF, BMP, TIFF, WebP";

/// Reads the image file at `path` as an upright 8-bit RGB image.
///
/// Errors name the file and carry a hint: missing or unreadable file, empty file, content
/// that is no supported image format, corrupt or truncated data, an image over the limit.
pub fn load_image(path: &Path, opts: &LoadOptions) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::input(
            path,
            "file not found",
            "check the path (relative paths start at the current directory)",
        ),
        std::io::ErrorKind::PermissionDenied => {
            Error::input(path, "permission denied", "make the file readable for this user")
        }
        _ => Error::input(
            path,
            format!("cannot read the file: {e}"),
            "check that the path names a readable image file",
        ),
    })?;
    decode_image(&bytes, path, opts)
}

/// Decodes an image held in memory; `source` names it in errors.
///
/// See [`load_image`]; the format is detected from the content only.
pub fn decode_image(bytes: &[u8], source: &Path, opts: &LoadOptions) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::input(
            source,
            "the file is empty (0 bytes)",
            "the file was not written completely; export or download it again",
        ));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        Error::input(
            source,
            "not an image in a supported format (the content was checked, not the file name)",
            format!("supported formats: {SUPPORTED}; convert the file to PNG or JPEG"),
        )
    })?;
    if !format.reading_enabled() {
        return Err(Error::input(
            source,
            format!("{} images are not supported", name(format)),
            format!("convert the file to one of {SUPPORTED}"),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Our own pixel limit replaces the crate's allocation limit (checked just below).
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(source, format, &e))?;

    let (w, h) = decoder.dimensions();
    check_size(source, w, h, &opts.limits)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(truncated(source, format));
    }

    // Metadata problems never stop decoding: the reference ignores them too.
    let exif = decoder.exif_metadata().ok().flatten();
    let xmp = decoder.xmp_metadata().ok().flatten();
    let orientation = orientation_from_metadata(exif.as_deref(), xmp.as_deref());

    let cmyk = if format == ImageFormat::Jpeg {
        cmyk_jpeg(bytes)
    } else {
        None
    };
    let rgb = match cmyk {
        Some(mut cmyk) => {
            let raw = cmyk
                .decode()
                .map_err(|e| Error::input(source, format!("corrupt JPEG data: {e}"), HINT_CORRUPT))?;
            cmyk_to_rgb8(w, h, &raw)
        }
        _ => {
            let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(source, format, &e))?;
            to_rgb8(&img, opts.bits16)
        }
    };
    if rgb.dimensions() != (w, h) {
        return Err(Error::input(
            source,
            format!(
                "decoded {}×{} pixels where the header says {w}×{h}",
                rgb.width(),
                rgb.height()
            ),
            HINT_CORRUPT,
        ));
    }
    Ok(apply_orientation(rgb, orientation))
}

/// The usual upper-case name of a format ("PNG", "JPEG", "WEBP").
fn name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

const HINT_CORRUPT: &str =
    "the file is damaged or incomplete; open it in an image viewer, re-save it as PNG or JPEG, or download it again";

fn decode_error(source: &Path, format: ImageFormat, e: &image::ImageError) -> Error {
    use image::ImageError as E;
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => truncated(source, format),
        E::Unsupported(u) => Error::input(
            source,
            format!("unsupported {} variant: {u}", name(format)),
            format!("re-save the image as PNG or JPEG (supported: {SUPPORTED})"),
        ),
        E::Limits(l) => Error::input(
            source,
            format!("image too large to decode: {l}"),
            "reduce the image's resolution",
        ),
        _ => Error::input(
            source,
            format!("corrupt or truncated {} data: {e}", name(format)),
            HINT_CORRUPT,
        ),
    }
}

fn truncated(source: &Path, format: ImageFormat) -> Error {
    Error::input(
        source,
        format!("truncated {} file (the image data ends early)", name(format)),
        HINT_CORRUPT,
    )
}

/// Refuses empty images and images over the pixel limit, from header dimensions.
fn check_size(source: &Path, w: u32, h: u32, limits: &ImageLimits) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::input(
            source,
            format!("the image has no pixels ({w}×{h})"),
            HINT_CORRUPT,
        ));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(Error::input(
            source,
            format!("the image is {w}×{h} = {pixels} pixels, over the limit of {} pixels", limits.max_pixels),
            "scale the image down (pages need no more than about 300 dpi), or raise the pixel limit if you trust the file",
        ));
    }
    Ok(())
}

/// Whether a JPEG stream reaches its end-of-image marker after the first scan.
///
/// The decoder fills a truncated scan with grey and reports success; the reference
/// (Pillow) refuses such files ("image file is truncated"), and so do we. Markers are
/// walked up to the first start-of-scan so that an EOI inside an embedded thumbnail
/// does not count; inside entropy-coded data a 0xFF byte is always stuffed, so `FF D9`
/// there is the real end.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = bytes.get(i + 2 + len..).unwrap_or(&[]);
            return scan.windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// A zune-jpeg decoder set to return the raw samples when the JPEG has four components
/// (CMYK), whose RGB conversion must follow Pillow's formula; `None` for other JPEGs.
fn cmyk_jpeg(bytes: &[u8]) -> Option<zune_jpeg::JpegDecoder<zune_core::bytestream::ZCursor<&[u8]>>> {
    use zune_core::colorspace::ColorSpace;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options);
    dec.decode_headers().ok()?;
    if dec.input_colorspace()? != ColorSpace::CMYK {
        return None;
    }
    let options = dec.options().jpeg_set_out_colorspace(ColorSpace::CMYK);
    dec.set_options(options);
    Some(dec)
}
