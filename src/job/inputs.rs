//! Input expansion and inspection: files, folders and glob patterns become a sorted,
//! de-duplicated list of images and PDFs, each checked cheaply (image header, PDF
//! encryption and page ranges) before the model is loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::input::pdf::{PageRanges, PdfLibrary};

/// Image file extensions taken from folders and globs.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "jfif"];

/// The hint for unsupported or missing inputs.
pub const SUPPORTED_HINT: &str = "supported inputs: PNG, JPEG, GIF, BMP, TIFF, WebP images and PDF files";

/// What kind of file an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Image,
    Pdf,
}

/// One checked input file and the name its outputs get.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub kind: InputKind,
    /// File stem; outputs are `NAME.*`.
    pub name: String,
    /// Selected 0-based pages (PDFs only; empty for images).
    pub pages: Vec<usize>,
    /// Number of pages in the file (1 for an image).
    pub page_count: usize,
}

impl Input {
    /// The pages a job processes: `[None]` for an image, `Some(p)` per selected PDF page.
    pub fn units(&self) -> Vec<Option<usize>> {
        match self.kind {
            InputKind::Image => vec![None],
            InputKind::Pdf => self.pages.iter().map(|&p| Some(p)).collect(),
        }
    }
}

fn extension(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a file found in a folder or glob is taken (image or PDF extension).
pub fn is_supported(p: &Path) -> bool {
    let e = extension(p);
    e == "pdf" || IMAGE_EXTENSIONS.contains(&e.as_str())
}

/// PDF by extension or by its `%PDF` signature (for files named without one).
pub fn kind_of(p: &Path) -> InputKind {
    if extension(p) == "pdf" {
        return InputKind::Pdf;
    }
    let mut head = [0u8; 5];
    let is_pdf = std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"%PDF-";
    if is_pdf {
        InputKind::Pdf
    } else {
        InputKind::Image
    }
}

/// Expands files, folders and globs into sorted, de-duplicated input files.
pub fn expand(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        let p = Path::new(a);
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_supported(f))
                .collect();
            if files.is_empty() {
                return Err(Error::input(p, "the folder holds no images or PDFs", SUPPORTED_HINT));
            }
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.to_path_buf());
        } else if a.contains(['*', '?', '[']) {
            let paths = glob::glob(a).map_err(|e| {
                Error::request(
                    format!("bad glob pattern `{a}`: {e}"),
                    "quote the pattern and check its brackets",
                )
            })?;
            let mut files: Vec<PathBuf> = paths
                .filter_map(|r| r.ok())
                .filter(|f| f.is_file() && is_supported(f))
                .collect();
            if files.is_empty() {
                return Err(Error::input(p, "the pattern matches no images or PDFs", SUPPORTED_HINT));
            }
            files.sort();
            out.extend(files);
        } else {
            return Err(Error::input(p, "no such file or folder", "check the path"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(out)
}

/// Reads only the image header: catches empty, truncated-header and non-image files
/// before the model is loaded.
pub fn check_image(path: &Path) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::input(
            path,
            format!("not a readable image: {e}"),
            format!("check that the file is a complete image; {SUPPORTED_HINT}"),
        )
    };
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| bad(&e))?;
    let (w, h) = reader.into_dimensions().map_err(|e| bad(&e))?;
    if w == 0 || h == 0 {
        return Err(bad(&"the image is empty"));
    }
    Ok(())
}

/// The output name of a file: its stem.
pub fn output_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into())
}

/// Loads libpdfium on first use and keeps it.
pub struct PdfLoader {
    explicit: Option<PathBuf>,
    lib: Option<PdfLibrary>,
}

impl PdfLoader {
    /// A loader searching `explicit` first (see [`PdfLibrary::load`]).
    pub fn new(explicit: Option<PathBuf>) -> Self {
        Self { explicit, lib: None }
    }
    /// The library, loaded now if needed.
    pub fn get(&mut self) -> Result<&PdfLibrary> {
        if self.lib.is_none() {
            self.lib = Some(PdfLibrary::load(self.explicit.as_deref())?);
        }
        match &self.lib {
            Some(l) => Ok(l),
            None => unreachable!("loaded above"),
        }
    }
    /// The library when it was loaded before.
    pub fn loaded(&self) -> Option<&PdfLibrary> {
        self.lib.as_ref()
    }
}

/// Checks one file and resolves its pages.
pub fn inspect(path: &Path, ranges: Option<&PageRanges>, pdf: &mut PdfLoader) -> Result<Input> {
    let kind = kind_of(path);
    let (pages, page_count) = match kind {
        InputKind::Image => {
            check_image(path)?;
            (Vec::new(), 1)
        }
        InputKind::Pdf => {
            let doc = pdf.get()?.open(path)?;
            let n = doc.page_count();
            let pages = match ranges {
                Some(r) => r.resolve(n, path)?,
                None => (0..n).collect(),
            };
            (pages, n)
        }
    };
    Ok(Input {
        path: path.to_path_buf(),
        kind,
        name: output_name(path),
        pages,
        page_count,
    })
}

/// Two inputs with the same stem would overwrite each other's results.
pub fn check_unique_names(inputs: &[Input]) -> Result<()> {
    let mut by_name: HashMap<&str, &Path> = HashMap::new();
    for i in inputs {
        if let Some(other) = by_name.insert(&i.name, &i.path) {
            return Err(Error::input(
                &i.path,
                format!(
                    "its results would overwrite those of {} (same name `{}`)",
                    other.display(),
                    i.name
                ),
                "rename one of them or process them with different --out folders",
            ));
        }
    }
    Ok(())
}
