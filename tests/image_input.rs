//! Image input: bad files give clear errors (file named, hint given), EXIF orientation
//! is applied for all eight values (EXIF in PNG `eXIf` and JPEG APP1, XMP fallback).

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use deepseek_ocr::input::image::{decode_image, load_image, ImageLimits, LoadOptions};
use image::{ImageFormat, Rgb, RgbImage};

/// Writes `bytes` to `name` in `dir` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

/// A small image whose pixels are all different, so any misplacement shows.
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 40) as u8, (y * 50) as u8, (x * 7 + y * 13) as u8])
    })
}

/// A noisy image (for lossy encodings that must be large enough to truncate meaningfully).
fn noise(w: u32, h: u32) -> RgbImage {
    let mut s = 0x1234_5678u32;
    RgbImage::from_fn(w, h, |_, _| {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let b = s.to_be_bytes();
        Rgb([b[0], b[1], b[2]])
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// Asserts that loading `path` fails with a message naming the file, containing `needle`,
/// and carrying a hint.
fn assert_input_error(path: &Path, opts: &LoadOptions, needle: &str) {
    let err = match load_image(path, opts) {
        Ok(img) => panic!(
            "{}: expected an error, got a {}x{} image",
            path.display(),
            img.width(),
            img.height()
        ),
        // The hint is kept apart from the message.
        Err(e) => format!("{e}\nhint: {}", e.hint()),
    };
    eprintln!("{err}");
    assert!(
        err.contains(&path.display().to_string()),
        "error does not name the file: {err}"
    );
    assert!(err.contains("hint: "), "error has no hint: {err}");
    assert!(err.contains(needle), "error should mention `{needle}`: {err}");
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_input_error(&dir.path().join("nope.png"), &LoadOptions::default(), "not found");
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "empty.jpg", b"");
    assert_input_error(&p, &LoadOptions::default(), "empty");
}

#[test]
fn text_file_named_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "notes.png", b"These are my notes, not a picture.\n");
    assert_input_error(&p, &LoadOptions::default(), "not an image");
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = 42u32;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (s >> 16) as u8
        })
        .collect();
    let p = write(dir.path(), "random.jpg", &bytes);
    assert_input_error(&p, &LoadOptions::default(), "not an image");
}

#[test]
fn truncated_jpeg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = encode(&noise(128, 96), ImageFormat::Jpeg);
    // The complete file decodes; cut anywhere in the scan, it must not.
    assert!(decode_image(&full, Path::new("full.jpg"), &LoadOptions::default()).is_ok());
    for cut in [full.len() * 3 / 5, full.len() - 2] {
        let p = write(dir.path(), "cut.jpg", &full[..cut]);
        assert_input_error(&p, &LoadOptions::default(), "truncated");
    }
}

#[test]
fn truncated_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = encode(&noise(128, 96), ImageFormat::Png);
    assert!(decode_image(&full, Path::new("full.png"), &LoadOptions::default()).is_ok());
    let p = write(dir.path(), "cut.png", &full[..full.len() / 2]);
    assert_input_error(&p, &LoadOptions::default(), "PNG");
}

#[test]
fn over_the_pixel_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "big.png", &encode(&pattern(100, 60), ImageFormat::Png));
    let small = LoadOptions {
        limits: ImageLimits { max_pixels: 5_999 },
        ..LoadOptions::default()
    };
    assert_input_error(&p, &small, "100×60 = 6000 pixels, over the limit of 5999");
    let exact = LoadOptions {
        limits: ImageLimits { max_pixels: 6_000 },
        ..LoadOptions::default()
    };
    assert!(load_image(&p, &exact).is_ok());
}

/// A PNG whose header claims 100000×100000 pixels followed by a few bytes of data: the
/// limit must be enforced from the header, before any pixel buffer is allocated.
#[test]
fn pixel_limit_is_checked_on_the_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x00, 0x00]));
    png.extend(chunk(b"IEND", &[]));
    let p = write(dir.path(), "bomb.png", &png);
    assert_input_error(
        &p,
        &LoadOptions::default(),
        &format!("over the limit of {}", ImageLimits::DEFAULT_MAX_PIXELS),
    );
}

// ---------------------------------------------------------------- EXIF orientation

/// CRC-32 (ISO-HDLC) as PNG chunks need it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A minimal big-endian TIFF block holding only the Orientation tag.
fn exif_block(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2a".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes()); // first IFD offset
    t.extend_from_slice(&1u16.to_be_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_be_bytes()); // count
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    t
}

/// Inserts an `eXIf` chunk right after IHDR (8-byte signature + 25-byte IHDR chunk).
fn png_with_exif(png: &[u8], block: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend(chunk(b"eXIf", block));
    out.extend_from_slice(&png[33..]);
    out
}

/// Inserts an APP1 segment (`header` + `payload`) right after SOI.
fn jpeg_with_app1(jpeg: &[u8], header: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = (2 + header.len() + payload.len()) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The upright image for EXIF orientation `o`, written out pixel by pixel from the
/// definitions (independently of the library's transforms).
fn expected(src: &RgbImage, o: u16) -> RgbImage {
    let (w, h) = src.dimensions();
    let swap = (5..=8).contains(&o);
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    RgbImage::from_fn(ow, oh, |x, y| {
        let (sx, sy) = match o {
            2 => (w - 1 - x, y),
            3 => (w - 1 - x, h - 1 - y),
            4 => (x, h - 1 - y),
            5 => (y, x),
            6 => (y, h - 1 - x),
            7 => (w - 1 - y, h - 1 - x),
            8 => (w - 1 - y, x),
            _ => (x, y),
        };
        *src.get_pixel(sx, sy)
    })
}

#[test]
fn exif_orientation_all_eight_values_png() {
    let src = pattern(5, 3);
    let png = encode(&src, ImageFormat::Png);
    for o in 1..=8u16 {
        let tagged = png_with_exif(&png, &exif_block(o));
        let img = decode_image(&tagged, Path::new("exif.png"), &LoadOptions::default()).expect("decode");
        assert_eq!(img, expected(&src, o), "PNG orientation {o}");
    }
    // Values outside 1..=8 and unreadable EXIF leave the image as stored.
    for block in [exif_block(0), exif_block(9), b"MM\0\x2a garbage".to_vec()] {
        let img = decode_image(
            &png_with_exif(&png, &block),
            Path::new("exif.png"),
            &LoadOptions::default(),
        )
        .expect("decode");
        assert_eq!(img, src);
    }
}

#[test]
fn exif_orientation_all_eight_values_jpeg() {
    let jpeg = encode(&noise(24, 16), ImageFormat::Jpeg);
    let plain = decode_image(&jpeg, Path::new("plain.jpg"), &LoadOptions::default()).expect("decode");
    for o in 1..=8u16 {
        let tagged = jpeg_with_app1(&jpeg, b"Exif\0\0", &exif_block(o));
        let img = decode_image(&tagged, Path::new("exif.jpg"), &LoadOptions::default()).expect("decode");
        assert_eq!(img, expected(&plain, o), "JPEG orientation {o}");
    }
}

#[test]
fn xmp_orientation_is_the_fallback() {
    let jpeg = encode(&noise(24, 16), ImageFormat::Jpeg);
    let plain = decode_image(&jpeg, Path::new("plain.jpg"), &LoadOptions::default()).expect("decode");
    let xmp = br#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>"#;
    let tagged = jpeg_with_app1(&jpeg, b"http://ns.adobe.com/xap/1.0/\0", xmp);
    let img = decode_image(&tagged, Path::new("xmp.jpg"), &LoadOptions::default()).expect("decode");
    assert_eq!(img, expected(&plain, 6));
    // EXIF wins over XMP.
    let both = jpeg_with_app1(&tagged, b"Exif\0\0", &exif_block(3));
    let img = decode_image(&both, Path::new("both.jpg"), &LoadOptions::default()).expect("decode");
    assert_eq!(img, expected(&plain, 3));
}

#[test]
fn exif6_golden_input_is_upright() {
    let shared = shared_or_skip!();
    let dir = shared.join("golden-preprocess/exif6_jpeg");
    let img = load_image(&dir.join("input.jpg"), &LoadOptions::default()).expect("decode");
    // Stored 692×292, tagged 6: upright 292×692.
    assert_eq!(img.dimensions(), (292, 692));
}

#[test]
fn format_comes_from_content_not_extension() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = pattern(7, 4);
    let p = write(dir.path(), "really_a_png.jpg", &encode(&src, ImageFormat::Png));
    assert_eq!(load_image(&p, &LoadOptions::default()).expect("decode"), src);
}
