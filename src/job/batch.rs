//! A batch: every page of every input into an output folder. Finished pages are skipped,
//! a failing input or page writes `NAME.error.json` and the batch goes on, a shard runs
//! only its pages, and the run ends with a [`BatchSummary`]. Progress goes to a
//! [`Reporter`]; the model is any [`PageOcr`]. With a batch size above 1
//! ([`JobRequest::batch`]) several pages decode together (see `batched`).

use std::path::PathBuf;
use std::time::Instant;

use image::RgbImage;

use super::failure::{self, ErrorRecord, Stage};
use super::inputs::{Input, InputKind};
use super::layout::{Layout, PageTarget};
use super::mosaic::{run_mosaic, MosaicOptions};
use super::page_ocr::PageOcr;
use super::pages::Document;
use super::request::{letter_page, BatchSize, JobRequest, AUTO_BATCH_LIMIT};
use super::resume;
use super::shard::Shard;
use super::summary::{BatchSummary, InputSummary, PageSummary, Status};
use crate::engine::OcrOutput;
use crate::error::{Error, Result};
use crate::input::pdf::PdfLibrary;
use crate::output::json::PageJson;

mod batched;

/// Receives a batch's progress (a progress bar, logs, a server's event stream).
pub trait Reporter {
    /// A status line (page done, skipped, failed …).
    fn line(&self, msg: &str);
    /// Work on a page started or advanced (`label`: `NAME` or `NAME pN`, with the characters so far).
    fn working(&self, label: &str, chars: usize) {
        let _ = (label, chars);
    }
    /// A page finished, was skipped or failed.
    fn page_finished(&self) {}
}

/// A reporter that says nothing.
pub struct Silent;
impl Reporter for Silent {
    fn line(&self, _: &str) {}
}

/// An input that could not be inspected: it stays in the batch (one page) as a failure.
#[derive(Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub name: String,
    pub error: Error,
}

/// One input of a batch, checked or not.
pub type Entry = std::result::Result<Input, Unreadable>;

impl Unreadable {
    /// The failure of `path`.
    pub fn new(path: PathBuf, error: Error) -> Self {
        Self {
            name: super::inputs::output_name(&path),
            path,
            error,
        }
    }
}

fn entry_units(e: &Entry) -> Vec<Option<usize>> {
    match e {
        Ok(i) => i.units(),
        Err(_) => vec![None],
    }
}

/// How an input's run begins ([`Batch::start_entry`]).
#[allow(clippy::large_enum_variant)] // one is alive at a time
enum Start<'b> {
    /// Nothing of it runs (unreadable, already done, or it cannot be opened): its summary is final.
    Settled(InputSummary),
    /// Its pages run from the opened document.
    Open(&'b Input, Document<'b>, InputSummary),
}

/// The pages of a set of inputs, run into one output folder.
pub struct Batch<'a> {
    pub request: &'a JobRequest,
    pub layout: Layout,
    pub entries: &'a [Entry],
    /// The loaded libpdfium when some input is a PDF.
    pub pdf: Option<&'a PdfLibrary>,
    /// Run only this shard's pages.
    pub shard: Option<Shard>,
    /// Tile pages above the threshold.
    pub mosaic: Option<MosaicOptions>,
}

impl Batch<'_> {
    /// Every page of the job in order, as `(entry index, page)`.
    pub fn all_units(&self) -> Vec<(usize, Option<usize>)> {
        self.entries
            .iter()
            .enumerate()
            .flat_map(|(k, e)| entry_units(e).into_iter().map(move |p| (k, p)))
            .collect()
    }

    /// This shard's pages (all of them when not sharded).
    pub fn units(&self) -> Vec<(usize, Option<usize>)> {
        let all = self.all_units();
        match self.shard {
            Some(s) => all[s.range(all.len())].to_vec(),
            None => all,
        }
    }

    /// Pages of this run.
    pub fn total_pages(&self) -> usize {
        self.units().len()
    }

    /// Whether some page of this run needs the model (so it must be loaded).
    pub fn needs_model(&self) -> bool {
        self.units().into_iter().any(|(k, p)| match &self.entries[k] {
            Ok(i) => !resume::page_done(&self.layout.page_target(i, p)) || !self.combined_done(i),
            Err(_) => false,
        })
    }

    fn owns_whole(&self, k: usize) -> bool {
        let units = self.units();
        entry_units(&self.entries[k]).iter().all(|p| units.contains(&(k, *p)))
    }

    fn combined_done(&self, input: &Input) -> bool {
        input.kind == InputKind::Image || resume::input_done(&self.layout, input)
    }

    /// Pages decoding together: the request's [`BatchSize`], `auto` asking the model for a
    /// Letter page at the job's dpi (1 without a model, or when the model cannot say).
    pub fn batch_size(&self, ocr: Option<&dyn PageOcr>) -> usize {
        match (self.request.batch, ocr) {
            (BatchSize::Pages(n), _) => n.max(1),
            (BatchSize::Auto, None) => 1,
            (BatchSize::Auto, Some(ocr)) => {
                match ocr.auto_batch(&self.request.run, letter_page(self.request.dpi), AUTO_BATCH_LIMIT) {
                    Ok(n) => n.max(1),
                    Err(e) => {
                        tracing::warn!("no batch size for auto ({e}); running one page at a time");
                        1
                    }
                }
            }
        }
    }

    /// Runs this shard's unfinished pages; `ocr` may be `None` when [`Batch::needs_model`] is false.
    ///
    /// With a [`batch_size`](Self::batch_size) above 1 the pages go through
    /// [`PageOcr::ocr_batch`], several decoding together; every file, record, summary count
    /// and reporter call is the same as one page at a time, except that pages finish (and
    /// are reported) in the order they end.
    ///
    /// Failures of inputs and pages are recorded and counted, not returned; an error is
    /// returned only when even the error record cannot be written.
    pub fn run(&self, ocr: Option<&dyn PageOcr>, reporter: &dyn Reporter) -> Result<BatchSummary> {
        let t0 = Instant::now();
        let mut summary = BatchSummary::new(self.shard, &self.layout.format.to_string());
        let units = self.units();
        let mut groups: Vec<(usize, Vec<Option<usize>>)> = Vec::new();
        let mut k = 0;
        while k < units.len() {
            let entry = units[k].0;
            let mut pages = Vec::new();
            while k < units.len() && units[k].0 == entry {
                pages.push(units[k].1);
                k += 1;
            }
            groups.push((entry, pages));
        }
        let batch = self.batch_size(ocr);
        match ocr {
            Some(ocr) if batch > 1 => {
                tracing::info!(batch, "decoding up to {batch} pages together");
                self.run_batched(ocr, batch, &groups, reporter, &mut summary)?;
            }
            _ => {
                for (entry, pages) in &groups {
                    let item = self.run_entry(ocr, *entry, pages, reporter, &mut summary.tokens)?;
                    summary.items.push(item);
                }
            }
        }
        summary.recount();
        summary.seconds = t0.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// One input's pages, one page at a time.
    fn run_entry(
        &self,
        ocr: Option<&dyn PageOcr>,
        k: usize,
        pages: &[Option<usize>],
        reporter: &dyn Reporter,
        tokens: &mut usize,
    ) -> Result<InputSummary> {
        let (input, doc, mut item) = match self.start_entry(k, pages, reporter)? {
            Start::Settled(item) => return Ok(item),
            Start::Open(input, doc, item) => (input, doc, item),
        };
        for &page in pages {
            let target = self.layout.page_target(input, page);
            let status = if self.page_skipped(input, page, &target, reporter) {
                Status::Skipped
            } else {
                let result = self.run_page(ocr, &doc, input, page, &target, reporter);
                self.settle_page(input, page, &target, result, reporter, tokens)?
            };
            reporter.page_finished();
            item.pages.push(PageSummary {
                page: page.map(|p| p + 1),
                status,
            });
        }
        self.end_entry(k, input, item, reporter)
    }

    /// Begins an input: an unreadable, finished or unopenable one is settled at once
    /// (records written, its pages reported); otherwise its document is opened.
    fn start_entry(&self, k: usize, pages: &[Option<usize>], reporter: &dyn Reporter) -> Result<Start<'_>> {
        let input = match &self.entries[k] {
            Ok(i) => i,
            Err(u) => {
                let record = ErrorRecord::new(&u.path, None, Stage::Inspect, &u.error);
                record.write(&self.layout.input_error(&u.name))?;
                reporter.line(&failed_line(&u.path.display().to_string(), &u.error));
                reporter.page_finished();
                return Ok(Start::Settled(InputSummary {
                    source: u.path.display().to_string(),
                    name: u.name.clone(),
                    kind: "unknown".into(),
                    page_count: 0,
                    selected_pages: Vec::new(),
                    pages: vec![PageSummary {
                        page: None,
                        status: Status::Failed,
                    }],
                    status: Status::Failed,
                }));
            }
        };
        let mut item = InputSummary {
            source: input.path.display().to_string(),
            name: input.name.clone(),
            kind: match input.kind {
                InputKind::Image => "image".into(),
                InputKind::Pdf => "pdf".into(),
            },
            page_count: input.page_count,
            selected_pages: input.pages.iter().map(|p| p + 1).collect(),
            pages: Vec::new(),
            status: Status::Done,
        };
        let all_done = pages
            .iter()
            .all(|&p| resume::page_done(&self.layout.page_target(input, p)))
            && (!self.owns_whole(k) || self.combined_done(input));
        if all_done {
            let first = pages.first().copied().flatten();
            let note = resume::settings_note(&self.layout.page_target(input, first).json(), &self.request.run);
            reporter.line(&format!("{}: skipped (already done){note}", input.path.display()));
            for &p in pages {
                reporter.page_finished();
                item.pages.push(PageSummary {
                    page: p.map(|p| p + 1),
                    status: Status::Skipped,
                });
            }
            item.settle();
            return Ok(Start::Settled(item));
        }
        let input_error = self.layout.input_error(&input.name);
        let opened = Document::open(input, self.pdf).and_then(|d| self.layout.prepare_pages_dir(input).map(|()| d));
        let doc = match opened {
            Ok(d) => d,
            Err(e) => {
                ErrorRecord::new(&input.path, None, Stage::Decode, &e).write(&input_error)?;
                reporter.line(&failed_line(&input.path.display().to_string(), &e));
                for &p in pages {
                    reporter.page_finished();
                    item.pages.push(PageSummary {
                        page: p.map(|p| p + 1),
                        status: Status::Failed,
                    });
                }
                item.settle();
                return Ok(Start::Settled(item));
            }
        };
        if input.kind == InputKind::Pdf {
            failure::clear(&input_error);
        }
        Ok(Start::Open(input, doc, item))
    }

    /// Whether a page is already finished (reported as skipped).
    fn page_skipped(&self, input: &Input, page: Option<usize>, target: &PageTarget, reporter: &dyn Reporter) -> bool {
        if !resume::page_done(target) {
            return false;
        }
        if page.is_some() {
            let note = resume::settings_note(&target.json(), &self.request.run);
            reporter.line(&format!("{}: skipped (already done){note}", what(input, page)));
        }
        true
    }

    /// Records the outcome of a page that ran: its error record cleared or written, its line.
    fn settle_page(
        &self,
        input: &Input,
        page: Option<usize>,
        target: &PageTarget,
        result: std::result::Result<PageJson, (Stage, Error)>,
        reporter: &dyn Reporter,
        tokens: &mut usize,
    ) -> Result<Status> {
        match result {
            Ok(record) => {
                failure::clear(&target.error());
                *tokens += record.tokens.generated;
                reporter.line(&done_line(&what(input, page), &record));
                Ok(Status::Done)
            }
            Err((stage, e)) => self.page_failed(input, page, target, stage, &e, reporter),
        }
    }

    /// Writes a failed page's error record and reports it.
    fn page_failed(
        &self,
        input: &Input,
        page: Option<usize>,
        target: &PageTarget,
        stage: Stage,
        e: &Error,
        reporter: &dyn Reporter,
    ) -> Result<Status> {
        ErrorRecord::new(&input.path, page, stage, e).write(&target.error())?;
        reporter.line(&failed_line(&what(input, page), e));
        Ok(Status::Failed)
    }

    /// Ends an input whose pages are all settled: its status and, for a PDF this run holds
    /// whole, the combined files.
    fn end_entry(
        &self,
        k: usize,
        input: &Input,
        mut item: InputSummary,
        reporter: &dyn Reporter,
    ) -> Result<InputSummary> {
        item.settle();
        // The combined files of a PDF, when this run holds all its pages and they are done.
        if input.kind == InputKind::Pdf && item.status != Status::Failed && self.owns_whole(k) {
            if let Err(e) = self.write_combined(input) {
                let input_error = self.layout.input_error(&input.name);
                ErrorRecord::new(&input.path, None, Stage::Write, &e).write(&input_error)?;
                reporter.line(&failed_line(&input.path.display().to_string(), &e));
                item.status = Status::Failed;
            }
        }
        Ok(item)
    }

    /// Assembles a PDF's combined files from its page records.
    pub fn write_combined(&self, input: &Input) -> Result<()> {
        let mut records = Vec::new();
        for &p in &input.pages {
            records.push(resume::read_record(&self.layout.page_target(input, Some(p)).json())?);
        }
        self.layout.write_combined(input, records)
    }

    fn run_page(
        &self,
        ocr: Option<&dyn PageOcr>,
        doc: &Document<'_>,
        input: &Input,
        page: Option<usize>,
        target: &PageTarget,
        reporter: &dyn Reporter,
    ) -> std::result::Result<PageJson, (Stage, Error)> {
        let ocr = ocr.ok_or_else(|| {
            (
                Stage::Ocr,
                Error::request("the model was not loaded", "this is a bug in the caller"),
            )
        })?;
        // One page alive at a time: memory does not grow with the page count.
        let img = doc.page(page, self.request.dpi).map_err(|e| (Stage::Decode, e))?;
        let out = self
            .ocr_image(ocr, input, page, &img, reporter)
            .map_err(|e| (Stage::Ocr, e))?;
        self.write_page(ocr, input, page, &img, target, &out)
    }

    /// Writes a page's files from its result, the JSON record last.
    fn write_page(
        &self,
        ocr: &dyn PageOcr,
        input: &Input,
        page: Option<usize>,
        img: &RgbImage,
        target: &PageTarget,
        out: &OcrOutput,
    ) -> std::result::Result<PageJson, (Stage, Error)> {
        let mut record = page_record(input, page, self.request, out);
        if let Some(p) = ocr.precision() {
            record = record.with_precision(p.name());
        }
        target.write(img, &record).map_err(|e| (Stage::Write, e))?;
        Ok(record)
    }

    fn ocr_image(
        &self,
        ocr: &dyn PageOcr,
        input: &Input,
        page: Option<usize>,
        img: &RgbImage,
        reporter: &dyn Reporter,
    ) -> Result<OcrOutput> {
        let label = label(input, page);
        reporter.working(&label, 0);
        let t0 = Instant::now();
        let out = match &self.mosaic {
            Some(m) if m.applies(img.width(), img.height()) => {
                let mut on_tile = |k: usize, n: usize| reporter.working(&format!("{label} tile {}/{n}", k + 1), 0);
                run_mosaic(ocr, img, &self.request.run, m, Some(&mut on_tile))?
            }
            _ => {
                let mut chars = 0usize;
                let mut on_text = |piece: &str| {
                    chars += piece.chars().count();
                    reporter.working(&label, chars);
                };
                ocr.ocr_page(img, &self.request.run, Some(&mut on_text))?
            }
        };
        tracing::debug!(page = %label, seconds = t0.elapsed().as_secs_f64(), tokens = out.token_ids.len(), "page done");
        Ok(out)
    }
}

/// The JSON record of one page (`page` 0-based).
pub fn page_record(input: &Input, page: Option<usize>, request: &JobRequest, out: &OcrOutput) -> PageJson {
    PageJson::new(
        &input.path.display().to_string(),
        page.map(|p| p + 1),
        &request.run.mode.to_string(),
        &request.run.task.to_string(),
        out,
    )
}

/// A page as the reporter's lines name it: `FILE` or `FILE page N`.
fn what(input: &Input, page: Option<usize>) -> String {
    match page {
        Some(p) => format!("{} page {}", input.path.display(), p + 1),
        None => input.path.display().to_string(),
    }
}

/// A page as [`Reporter::working`] names it: `NAME` or `NAME pN`.
fn label(input: &Input, page: Option<usize>) -> String {
    match page {
        Some(p) => format!("{} p{}", input.name, p + 1),
        None => input.name.clone(),
    }
}

fn done_line(what: &str, r: &PageJson) -> String {
    format!(
        "{what}: done ({} tokens, {} boxes, {:.1} s, stop: {})",
        r.tokens.generated,
        r.boxes.len(),
        r.timings.total_ms / 1e3,
        r.stop
    )
}

fn failed_line(what: &str, e: &Error) -> String {
    format!("{what}: failed ({}): {e}", e.kind())
}
