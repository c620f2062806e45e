//! PDF pages as images, rendered one at a time with pdfium (spec §10.4).
//!
//! libpdfium is loaded at run time, so the binary works without it until a PDF is
//! given. It is looked for, in order: the explicit folder or file (`--pdfium`), the
//! `DSOCR_PDFIUM_DIR` and `PDFIUM_DYNAMIC_LIB_PATH` environment variables, the folder of
//! the running binary, the per-user cache `~/.cache/deepseek-ocr/pdfium` (where
//! `dsocr setup pdfium` puts it), then the system library paths.

use std::path::{Path, PathBuf};

use image::RgbImage;
use pdfium_render::prelude::{PdfDocument, PdfRenderConfig, Pdfium, PdfiumError, PdfiumInternalError};

use crate::error::{Error, Result};

/// The official PDF script renders at zoom 2, i.e. 144 dots per inch.
pub const DEFAULT_DPI: f32 = 144.0;

/// Largest page side in pixels we agree to render; beyond it a typo in `--dpi` or an
/// absurd page size would exhaust memory.
pub const MAX_SIDE: f32 = 20_000.0;

const INSTALL_HINT: &str =
    "run `dsocr setup pdfium`, or pass --pdfium DIR / set DSOCR_PDFIUM_DIR to a folder holding libpdfium";

/// Folders (or files) where libpdfium may be, in search order; `explicit` first.
pub fn pdfium_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = explicit {
        v.push(p.to_path_buf());
    }
    for var in ["DSOCR_PDFIUM_DIR", "PDFIUM_DYNAMIC_LIB_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            v.push(PathBuf::from(p));
        }
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(home).join(".cache/deepseek-ocr/pdfium"));
    }
    v
}

/// The library file for a candidate: the path itself when it is a file, else the
/// platform's library name inside it.
fn library_file(candidate: &Path) -> PathBuf {
    if candidate.is_file() {
        candidate.to_path_buf()
    } else {
        Pdfium::pdfium_platform_library_name_at_path(candidate)
    }
}

/// A loaded libpdfium.
///
/// pdfium is not thread-safe; pdfium-render serialises all use behind a process-wide
/// lock held for the lifetime of this value, so keep one per thread of work and drop
/// it when done.
pub struct PdfLibrary {
    pdfium: Pdfium,
    path: PathBuf,
}

impl PdfLibrary {
    /// Finds and loads libpdfium (see the module documentation for the search order).
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let candidates = pdfium_candidates(explicit);
        for c in &candidates {
            let file = library_file(c);
            if !file.is_file() {
                if explicit == Some(c.as_path()) {
                    return Err(Error::input(c, "libpdfium not found here", INSTALL_HINT));
                }
                continue;
            }
            return match Pdfium::bind_to_library(&file) {
                Ok(b) => Ok(Self {
                    pdfium: Pdfium::new(b),
                    path: file,
                }),
                Err(e) => Err(Error::input(
                    &file,
                    format!("cannot load libpdfium: {e:?}"),
                    INSTALL_HINT,
                )),
            };
        }
        match Pdfium::bind_to_system_library() {
            Ok(b) => Ok(Self {
                pdfium: Pdfium::new(b),
                path: PathBuf::from(Pdfium::pdfium_platform_library_name()),
            }),
            Err(_) => {
                let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
                Err(Error::request(
                    format!(
                        "PDF input needs libpdfium, which was not found (looked in {} and the system paths)",
                        looked.join(", ")
                    ),
                    INSTALL_HINT,
                ))
            }
        }
    }

    /// The library file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a PDF. Encrypted (password-protected) and corrupt files give an
    /// [`Error::Input`] saying so.
    pub fn open(&self, path: &Path) -> Result<PdfFile<'_>> {
        if !path.is_file() {
            return Err(Error::input(path, "no such file", "check the path"));
        }
        let doc = self
            .pdfium
            .load_pdf_from_file(path, None)
            .map_err(|e| open_error(path, e))?;
        let page_count = doc.pages().len() as usize;
        if page_count == 0 {
            return Err(Error::input(
                path,
                "the PDF has no pages",
                "check that this is the right file",
            ));
        }
        Ok(PdfFile {
            doc,
            path: path.to_path_buf(),
            page_count,
        })
    }
}

fn open_error(path: &Path, e: PdfiumError) -> Error {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError)
        | PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => Error::input(
            path,
            "the PDF is encrypted (password protected)",
            "remove the protection first, e.g. `qpdf --decrypt in.pdf out.pdf`, or print it to a new PDF",
        ),
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FormatError)
        | PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FileError) => Error::input(
            path,
            "not a readable PDF (corrupt or truncated)",
            "check that the file is a complete PDF; re-download or re-export it",
        ),
        PdfiumError::IoError(io) => Error::io(path, io),
        other => Error::input(
            path,
            format!("cannot open the PDF: {other:?}"),
            "check that the file is a valid PDF",
        ),
    }
}

/// An open PDF document.
pub struct PdfFile<'a> {
    doc: PdfDocument<'a>,
    path: PathBuf,
    page_count: usize,
}

impl PdfFile<'_> {
    /// Number of pages.
    pub fn page_count(&self) -> usize {
        self.page_count
    }

    /// Renders page `index` (0-based) at `dpi` onto white, as RGB.
    ///
    /// Only this page's bitmap is alive afterwards, so memory does not grow with the
    /// number of pages rendered.
    pub fn render(&self, index: usize, dpi: f32) -> Result<RgbImage> {
        let page_no = index + 1;
        if index >= self.page_count {
            return Err(Error::input(
                &self.path,
                format!("page {page_no} does not exist (the PDF has {} pages)", self.page_count),
                "choose pages inside the document with --pages",
            ));
        }
        if !(dpi.is_finite() && dpi > 0.0) {
            return Err(Error::request(
                format!("invalid DPI {dpi}"),
                "use a positive --dpi such as 144",
            ));
        }
        let page = self
            .doc
            .pages()
            .get(index as u16)
            .map_err(|e| self.page_error(page_no, e))?;
        // Page sizes are in points (1/72 inch).
        let scale = dpi / 72.0;
        let (w, h) = (page.width().value * scale, page.height().value * scale);
        if !(w >= 1.0 && h >= 1.0) || w > MAX_SIDE || h > MAX_SIDE {
            return Err(Error::input(
                &self.path,
                format!("page {page_no} would render at {w:.0}x{h:.0} pixels"),
                "use a smaller --dpi (default 144)",
            ));
        }
        let config = PdfRenderConfig::new()
            .scale_page_by_factor(scale)
            .render_form_data(true);
        let bitmap = page
            .render_with_config(&config)
            .map_err(|e| self.page_error(page_no, e))?;
        Ok(bitmap.as_image().to_rgb8())
    }

    fn page_error(&self, page_no: usize, e: PdfiumError) -> Error {
        Error::input(
            &self.path,
            format!("cannot render page {page_no}: {e:?}"),
            "the PDF may be damaged; try re-exporting it",
        )
    }
}

/// A page selection such as `1-3,7` or `5-` (1-based, inclusive, as written by the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRanges {
    /// `(first, last)` pairs, 1-based inclusive; `last = None` means "to the end".
    ranges: Vec<(usize, Option<usize>)>,
}

impl std::str::FromStr for PageRanges {
    type Err = String;

    /// Parses `N`, `A-B`, `A-` items separated by commas.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("invalid page range `{s}`: {why} (example: 1-3,7 or 5-)");
        let mut ranges = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(bad("empty item"));
            }
            let num = |t: &str| -> std::result::Result<usize, String> {
                let n: usize = t
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("`{t}` is not a page number")))?;
                if n == 0 {
                    return Err(bad("pages are numbered from 1"));
                }
                Ok(n)
            };
            match item.split_once('-') {
                None => {
                    let n = num(item)?;
                    ranges.push((n, Some(n)));
                }
                Some((a, b)) => {
                    let first = num(a)?;
                    let last = if b.trim().is_empty() { None } else { Some(num(b)?) };
                    if matches!(last, Some(l) if l < first) {
                        return Err(bad(&format!("`{item}` runs backwards")));
                    }
                    ranges.push((first, last));
                }
            }
        }
        Ok(Self { ranges })
    }
}

impl PageRanges {
    /// The selected 0-based page indices of a document with `page_count` pages, in
    /// document order, without duplicates. A page past the end is an error.
    pub fn resolve(&self, page_count: usize, path: &Path) -> Result<Vec<usize>> {
        let mut pages = Vec::new();
        for &(first, last) in &self.ranges {
            let last = last.unwrap_or(page_count);
            if first > page_count || last > page_count {
                return Err(Error::input(
                    path,
                    format!("page {} is outside the document ({page_count} pages)", first.max(last)),
                    format!("use --pages within 1-{page_count}"),
                ));
            }
            pages.extend(first - 1..last);
        }
        pages.sort_unstable();
        pages.dedup();
        Ok(pages)
    }
}
