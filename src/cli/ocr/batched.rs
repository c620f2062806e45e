//! `dsocr ocr --out DIR --batch N`: every pending page (image files and PDF pages) goes
//! through one [`BatchRunner`], so up to `N` pages decode together and a finished page's
//! slot is taken by the next one at once. Pages are loaded or rendered only when a slot
//! frees; each page's files are written as soon as it finishes.

use std::path::Path;

use image::RgbImage;

use super::{done_line, load_image, Input, Kind, Ocr, PageTarget};
use crate::cli::progress::Progress;
use crate::engine::{BatchRunner, Engine, PageJob};
use crate::error::Result;
use crate::input::pdf::PdfFile;
use crate::output::atomic;
use crate::output::json::PageJson;

/// Where a finished page goes.
struct Tag<'a> {
    input: &'a Input,
    page: Option<usize>,
    target: PageTarget,
    /// The page image, kept for the annotated copy and the figure crops.
    image: RgbImage,
}

impl Ocr {
    /// Runs `pending` into `out` with up to `batch` pages decoding together.
    pub(super) fn run_batched(
        &self,
        engine: &Engine,
        progress: &Progress,
        out: &Path,
        pending: &[&Input],
        batch: usize,
    ) -> Result<()> {
        let mut docs: Vec<(&Input, PdfFile<'_>)> = Vec::new();
        for input in pending.iter().filter(|i| i.kind == Kind::Pdf) {
            let page_dir = out.join(&input.name);
            atomic::create_dir_all(&page_dir)?;
            atomic::remove_stale_temps(&page_dir);
            docs.push((input, self.open_pdf(input)?));
        }
        // (input, page) in order, finished pages reported and left out.
        let mut work: Vec<(&Input, Option<usize>)> = Vec::new();
        for &input in pending {
            match input.kind {
                Kind::Image => work.push((input, None)),
                Kind::Pdf => {
                    for &p in &input.pages {
                        let target = self.page_target(out, input, Some(p));
                        if target.is_done() {
                            let note = self.settings_note(&target.json());
                            progress.println(format!(
                                "{} page {}: skipped (already done){note}",
                                input.path.display(),
                                p + 1
                            ));
                            progress.inc();
                        } else {
                            work.push((input, Some(p)));
                        }
                    }
                }
            }
        }
        let mut load_error = None;
        let jobs = work.into_iter().map_while(|(input, page)| {
            let image = match page {
                None => load_image(&input.path),
                Some(p) => match docs.iter().find(|(i, _)| std::ptr::eq(*i, input)) {
                    Some((_, doc)) => doc.render(p, self.args.dpi),
                    None => return None,
                },
            };
            match image {
                Ok(image) => Some(PageJob::new(
                    Tag {
                        input,
                        page,
                        target: self.page_target(out, input, page),
                        image: image.clone(),
                    },
                    image,
                    self.run.clone(),
                )),
                Err(e) => {
                    load_error = Some(e);
                    None
                }
            }
        });
        progress.set_message(format!("decoding up to {batch} pages together"));
        let mut runner = BatchRunner::new(engine, batch);
        let stats = runner.run(jobs, |tag, result, _elapsed| {
            let out = result?;
            let record = PageJson::new(
                &tag.input.path.display().to_string(),
                tag.page.map(|p| p + 1),
                &self.run.mode.to_string(),
                &self.run.task.to_string(),
                &out,
            );
            tag.target.write(&tag.image, &record)?;
            progress.inc();
            let what = match tag.page {
                Some(p) => format!("{} page {}", tag.input.path.display(), p + 1),
                None => tag.input.path.display().to_string(),
            };
            progress.println(done_line(&what, &record));
            Ok(())
        })?;
        tracing::info!(
            pages = stats.pages,
            max_live = stats.max_live,
            decode_tok_per_s = stats.decode_tok_per_s(),
            "batched run done"
        );
        if let Some(e) = load_error {
            return Err(e);
        }
        for (input, doc) in &docs {
            self.write_combined(out, input, doc.page_count())?;
        }
        Ok(())
    }
}
