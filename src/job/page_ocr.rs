//! What a job needs from a model: OCR one page image, or a stream of them with several
//! decoding together. [`Engine`] implements it; tests script a stand-in.

use image::RgbImage;

use crate::engine::{BatchRunner, Engine, OcrOutput, PageJob, RunOptions, TextSink};
use crate::error::Result;
use crate::nn::Precision;

/// Receives a page's text as it is generated.
pub type PageText<'a> = Box<dyn FnMut(&str) + 'a>;

/// One page handed to [`PageOcr::ocr_batch`].
pub struct BatchPage<'a> {
    /// The caller's id of the page, handed back with its result.
    pub id: usize,
    pub image: RgbImage,
    /// Receives the page's text as it is generated.
    pub on_text: Option<PageText<'a>>,
}

/// OCR of one page (or tile) image.
pub trait PageOcr {
    /// Runs `run` on `image`; `on_text` receives decoded text pieces as they are generated.
    fn ocr_page(&self, image: &RgbImage, run: &RunOptions, on_text: Option<&mut dyn FnMut(&str)>) -> Result<OcrOutput>;

    /// The weight precision pages run with, for the page records (none for stand-ins).
    fn precision(&self) -> Option<Precision> {
        None
    }

    /// Runs every page `next` yields with up to `batch` of them in flight at once, calling
    /// `done(id, result)` as each page ends (in the order they finish). `next` is called
    /// only when a slot is free, so pages can be loaded as they are needed. A page's failure
    /// goes to `done`; an error returned by `done` ends the run with it, and an error of the
    /// run itself (a failed batched step) ends it for the pages in flight.
    ///
    /// The default runs one page at a time through [`ocr_page`](Self::ocr_page).
    fn ocr_batch<'a>(
        &'a self,
        run: &RunOptions,
        batch: usize,
        next: &mut dyn FnMut() -> Option<BatchPage<'a>>,
        done: &mut dyn FnMut(usize, Result<OcrOutput>) -> Result<()>,
    ) -> Result<()> {
        let _ = batch;
        while let Some(mut page) = next() {
            let on_text = page.on_text.as_deref_mut().map(|f| f as &mut dyn FnMut(&str));
            let out = self.ocr_page(&page.image, run, on_text);
            done(page.id, out)?;
        }
        Ok(())
    }

    /// How many pages of `page_size` pixels can decode together within the memory budget,
    /// at most `limit` (1 for a model that runs one page at a time).
    fn auto_batch(&self, run: &RunOptions, page_size: (u32, u32), limit: usize) -> Result<usize> {
        let _ = (run, page_size, limit);
        Ok(1)
    }
}

impl PageOcr for Engine {
    fn ocr_page(&self, image: &RgbImage, run: &RunOptions, on_text: Option<&mut dyn FnMut(&str)>) -> Result<OcrOutput> {
        self.run_with(image, run, on_text)
    }

    fn precision(&self) -> Option<Precision> {
        Some(self.options().precision)
    }

    /// Continuous batching through a [`BatchRunner`].
    fn ocr_batch<'a>(
        &'a self,
        run: &RunOptions,
        batch: usize,
        next: &mut dyn FnMut() -> Option<BatchPage<'a>>,
        done: &mut dyn FnMut(usize, Result<OcrOutput>) -> Result<()>,
    ) -> Result<()> {
        let jobs = std::iter::from_fn(|| {
            next().map(|p| PageJob {
                tag: p.id,
                image: p.image,
                opts: run.clone(),
                on_text: p.on_text.map(|mut f| -> TextSink<'a> {
                    Box::new(move |s: &str| {
                        f(s);
                        true
                    })
                }),
            })
        });
        let stats = BatchRunner::new(self, batch).run(jobs, |id, out, _| done(id, out))?;
        tracing::info!(
            pages = stats.pages,
            max_live = stats.max_live,
            steps = stats.steps,
            decode_tok_per_s = stats.decode_tok_per_s(),
            "batched run done"
        );
        Ok(())
    }

    fn auto_batch(&self, run: &RunOptions, page_size: (u32, u32), limit: usize) -> Result<usize> {
        Engine::auto_batch(self, run, page_size, limit)
    }
}
