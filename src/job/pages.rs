//! Page iteration: an input opened once, its pages produced one at a time as RGB images
//! (decoded image with EXIF orientation applied, or a rendered PDF page), so memory does
//! not grow with the page count.

use image::RgbImage;

use super::inputs::{Input, InputKind};
use crate::error::{Error, Result};
use crate::input::image::{load_image, LoadOptions};
use crate::input::pdf::{PdfFile, PdfLibrary};

/// An opened input.
#[allow(clippy::large_enum_variant)] // one is alive at a time
pub enum Document<'a> {
    Image(&'a Input),
    Pdf(&'a Input, Box<PdfFile<'a>>),
}

impl<'a> Document<'a> {
    /// Opens an input; PDFs need the loaded library.
    pub fn open(input: &'a Input, pdf: Option<&'a PdfLibrary>) -> Result<Self> {
        match input.kind {
            InputKind::Image => Ok(Document::Image(input)),
            InputKind::Pdf => match pdf {
                Some(lib) => Ok(Document::Pdf(input, Box::new(lib.open(&input.path)?))),
                None => Err(Error::input(
                    &input.path,
                    "PDF support was not initialised",
                    "load libpdfium before opening PDF inputs",
                )),
            },
        }
    }

    /// Pages in the file (1 for an image).
    pub fn page_count(&self) -> usize {
        match self {
            Document::Image(_) => 1,
            Document::Pdf(_, d) => d.page_count(),
        }
    }

    /// The image of one unit: `None` for an image input, `Some(p)` (0-based) for a PDF page.
    pub fn page(&self, page: Option<usize>, dpi: f32) -> Result<RgbImage> {
        match (self, page) {
            (Document::Image(i), _) => load_image(&i.path, &LoadOptions::default()),
            (Document::Pdf(_, d), Some(p)) => d.render(p, dpi),
            (Document::Pdf(i, _), None) => Err(Error::input(
                &i.path,
                "a PDF page number is needed",
                "this is a bug in the caller",
            )),
        }
    }
}
