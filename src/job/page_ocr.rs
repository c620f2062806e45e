//! The one operation a job needs from a model: OCR one page image. [`Engine`] implements
//! it; tests script a stand-in.

use image::RgbImage;

use crate::engine::{Engine, OcrOutput, RunOptions};
use crate::error::Result;
use crate::nn::Precision;

/// OCR of one page (or tile) image.
pub trait PageOcr {
    /// Runs `run` on `image`; `on_text` receives decoded text pieces as they are generated.
    fn ocr_page(&self, image: &RgbImage, run: &RunOptions, on_text: Option<&mut dyn FnMut(&str)>) -> Result<OcrOutput>;

    /// The weight precision pages run with, for the page records (none for stand-ins).
    fn precision(&self) -> Option<Precision> {
        None
    }
}

impl PageOcr for Engine {
    fn ocr_page(&self, image: &RgbImage, run: &RunOptions, on_text: Option<&mut dyn FnMut(&str)>) -> Result<OcrOutput> {
        self.run_with(image, run, on_text)
    }

    fn precision(&self) -> Option<Precision> {
        Some(self.options().precision)
    }
}
