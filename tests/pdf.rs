//! PDF input: rendering, page ranges, encrypted and corrupt files, memory per page.
//!
//! Needs libpdfium (`scripts/install-pdfium.sh`, found via `DSOCR_PDFIUM_DIR` or
//! `~/.cache/deepseek-ocr/pdfium`). Without it these tests skip loudly on a developer
//! machine and FAIL when `CI` is set.

#[path = "support/minipdf.rs"]
mod minipdf;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use deepseek_ocr::input::pdf::{PageRanges, PdfLibrary, DEFAULT_DPI};
use deepseek_ocr::Error;

/// pdfium is process-global and the memory test reads the process RSS: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn library() -> Option<PdfLibrary> {
    match PdfLibrary::load(None) {
        Ok(l) => Some(l),
        Err(e) if std::env::var_os("CI").is_some() => panic!("libpdfium is required in CI: {e}"),
        Err(e) => {
            eprintln!("\n!!!!! SKIPPED: {e} !!!!!\n");
            None
        }
    }
}

macro_rules! pdfium_or_skip {
    () => {
        match library() {
            Some(l) => l,
            None => return,
        }
    };
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn page_ranges_parse() {
    let r: PageRanges = "1-3,7".parse().unwrap();
    assert_eq!(r.resolve(10, Path::new("x.pdf")).unwrap(), vec![0, 1, 2, 6]);
    let r: PageRanges = " 5- , 2".parse().unwrap();
    assert_eq!(r.resolve(6, Path::new("x.pdf")).unwrap(), vec![1, 4, 5]);
    let r: PageRanges = "3,1-3".parse().unwrap();
    assert_eq!(
        r.resolve(3, Path::new("x.pdf")).unwrap(),
        vec![0, 1, 2],
        "sorted, no duplicates"
    );
    assert!("1-".parse::<PageRanges>().is_ok(), "open-ended range");
    for bad in ["", "0", "a", "3-1", "1,,2", "-2", "1-b", "2-0"] {
        assert!(bad.parse::<PageRanges>().is_err(), "`{bad}` should not parse");
    }
}

#[test]
fn page_range_outside_document() {
    let r: PageRanges = "2-5".parse().unwrap();
    let e = r.resolve(3, Path::new("doc.pdf")).unwrap_err();
    assert!(matches!(e, Error::Input { .. }));
    let msg = format!("{e}\nhint: {}", e.hint());
    assert!(
        msg.contains("outside the document") && msg.contains("3 pages") && msg.contains("hint:"),
        "{msg}"
    );
    let r: PageRanges = "9".parse().unwrap();
    assert!(r.resolve(3, Path::new("doc.pdf")).is_err());
}

#[test]
fn renders_pages_of_a_multi_page_pdf() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lib = pdfium_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_temp(tmp.path(), "three.pdf", &minipdf::make_pdf(3, false));
    let doc = lib.open(&path).unwrap();
    assert_eq!(doc.page_count(), 3);
    // 612 x 792 pt at 144 dpi = 1224 x 1584 px.
    let p0 = doc.render(0, DEFAULT_DPI).unwrap();
    assert_eq!(p0.dimensions(), (1224, 1584));
    let p2 = doc.render(2, 72.0).unwrap();
    assert_eq!(p2.dimensions(), (612, 792));
    // Background white, the drawn bar black: at 144 dpi the bar spans x 144..(144+2*60),
    // y from the top 1584 - 2*(700+36) .. 1584 - 2*700.
    assert_eq!(p0.get_pixel(10, 10).0, [255, 255, 255]);
    assert_eq!(p0.get_pixel(150, 1584 - 2 * 700 - 10).0, [0, 0, 0]);
    // Page 3's bar is wider than page 1's.
    let bar_end = |img: &image::RgbImage, y: u32| {
        (0..img.width())
            .rev()
            .find(|&x| img.get_pixel(x, y).0 == [0, 0, 0])
            .unwrap()
    };
    assert!(bar_end(&p2, 792 - 700 - 5) > bar_end(&doc.render(0, 72.0).unwrap(), 792 - 700 - 5));
    // Text was rendered (dark pixels around "Page 1" at y = 600 pt from the bottom).
    let text_row = 1584 - 2 * 600 - 10;
    assert!(
        (144..600).any(|x| p0.get_pixel(x, text_row).0[0] < 128),
        "no text pixels"
    );
    let e = doc.render(3, DEFAULT_DPI).unwrap_err().to_string();
    assert!(e.contains("page 4 does not exist"), "{e}");
}

#[test]
fn encrypted_pdf_is_a_clear_error() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lib = pdfium_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_temp(tmp.path(), "locked.pdf", &minipdf::make_pdf(2, true));
    let e = lib.open(&path).err().expect("an encrypted PDF must not open");
    let msg = format!("{e}\nhint: {}", e.hint());
    assert!(matches!(e, Error::Input { .. }), "{msg}");
    assert!(msg.contains("encrypted") && msg.contains("hint:"), "{msg}");
}

#[test]
fn corrupt_and_empty_pdfs_are_clear_errors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lib = pdfium_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("corrupt.pdf", minipdf::corrupt_pdf()),
        ("empty.pdf", Vec::new()),
        ("text.pdf", b"hello".to_vec()),
    ] {
        let path = write_temp(tmp.path(), name, &bytes);
        let e = lib.open(&path).err().unwrap_or_else(|| panic!("{name} must not open"));
        let msg = format!("{e}\nhint: {}", e.hint());
        assert!(
            msg.contains("not a readable PDF") && msg.contains("hint:"),
            "{name}: {msg}"
        );
    }
    let e = lib.open(&tmp.path().join("missing.pdf")).err().expect("missing file");
    assert!(e.to_string().contains("no such file"));
}

#[test]
fn explicit_pdfium_folder_without_library_is_an_error() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let e = PdfLibrary::load(Some(tmp.path()))
        .err()
        .expect("no library in an empty folder");
    assert!(e.to_string().contains("libpdfium not found"), "{e}");
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn memory_does_not_grow_with_page_count() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lib = pdfium_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_temp(tmp.path(), "long.pdf", &minipdf::make_pdf(22, false));
    let doc = lib.open(&path).unwrap();
    // Each page at 144 dpi is 1224 x 1584 RGB = 5.8 MB (7.8 MB as the RGBA bitmap);
    // keeping 20 of them would add over 100 MB.
    let mut checksum = 0u64;
    for p in 0..2 {
        checksum += doc
            .render(p, DEFAULT_DPI)
            .unwrap()
            .as_raw()
            .iter()
            .map(|&v| v as u64)
            .sum::<u64>();
    }
    let after_two = rss_kib();
    for p in 2..22 {
        checksum += doc
            .render(p, DEFAULT_DPI)
            .unwrap()
            .as_raw()
            .iter()
            .map(|&v| v as u64)
            .sum::<u64>();
    }
    let after_twenty_two = rss_kib();
    assert!(checksum > 0);
    let growth_mib = after_twenty_two.saturating_sub(after_two) as f64 / 1024.0;
    eprintln!(
        "RSS after 2 pages: {} MiB, after 22: {} MiB, growth {growth_mib:.1} MiB",
        after_two / 1024,
        after_twenty_two / 1024
    );
    assert!(growth_mib < 30.0, "RSS grew by {growth_mib:.1} MiB over 20 more pages");
}
