//! A batch with several pages decoding together: the pending pages, in the batch's order,
//! are fed to [`PageOcr::ocr_batch`], which asks for the next page whenever a slot is free
//! and hands each page back as it ends. A page is loaded or rendered only when it is asked
//! for, so at most `batch` page images are alive at once whatever the page count; finished
//! pages are skipped, failures recorded, and a PDF's combined files written as soon as its
//! last page is settled, exactly as one page at a time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use image::RgbImage;

use super::{label, Batch, Reporter, Start};
use crate::engine::OcrOutput;
use crate::error::{Error, Result};
use crate::job::failure::Stage;
use crate::job::inputs::Input;
use crate::job::page_ocr::{BatchPage, PageOcr};
use crate::job::pages::Document;
use crate::job::summary::{BatchSummary, InputSummary, PageSummary, Status};

/// One input of the batch: its entry index and the pages of this run.
pub(super) type Group = (usize, Vec<Option<usize>>);

/// An input whose pages are being settled.
struct Running<'b> {
    entry: usize,
    input: &'b Input,
    pages: &'b [Option<usize>],
    item: InputSummary,
    status: Vec<Option<Status>>,
    /// Pages not yet settled.
    left: usize,
}

/// A page handed to the model and not yet back.
struct Flight {
    group: usize,
    index: usize,
    /// Kept for the annotated copy and the figure crops.
    image: RgbImage,
    t0: Instant,
}

/// The state shared by the page source and the completion callback.
struct Feed<'b> {
    /// The input being fed and its next page.
    group: usize,
    next_page: usize,
    /// The open document of `group`.
    doc: Option<Document<'b>>,
    running: Vec<Option<Running<'b>>>,
    /// Settled inputs' summaries, in the batch's order.
    items: Vec<Option<InputSummary>>,
    in_flight: BTreeMap<usize, Flight>,
    next_id: usize,
    tokens: usize,
    /// Every page has been handed out.
    exhausted: bool,
    /// An error record could not be written: the run ends with this.
    fatal: Option<Error>,
}

impl<'a> Batch<'a> {
    /// Runs `groups` with up to `batch` pages decoding together.
    pub(super) fn run_batched(
        &self,
        ocr: &dyn PageOcr,
        batch: usize,
        groups: &[Group],
        reporter: &dyn Reporter,
        summary: &mut BatchSummary,
    ) -> Result<()> {
        let feed = RefCell::new(Feed {
            group: 0,
            next_page: 0,
            doc: None,
            running: groups.iter().map(|_| None).collect(),
            items: groups.iter().map(|_| None).collect(),
            in_flight: BTreeMap::new(),
            next_id: 0,
            tokens: 0,
            exhausted: false,
            fatal: None,
        });
        let mut next = || -> Option<BatchPage<'_>> {
            let mut f = feed.borrow_mut();
            if f.fatal.is_some() {
                return None;
            }
            match self.pull(ocr, groups, &mut f, reporter) {
                Ok(Some((id, image, label))) => {
                    let mut chars = 0usize;
                    Some(BatchPage {
                        id,
                        image,
                        on_text: Some(Box::new(move |piece: &str| {
                            chars += piece.chars().count();
                            reporter.working(&label, chars);
                        })),
                    })
                }
                Ok(None) => {
                    f.exhausted = true;
                    None
                }
                Err(e) => {
                    f.fatal = Some(e);
                    None
                }
            }
        };
        let mut done = |id: usize, out: Result<OcrOutput>| -> Result<()> {
            let mut f = feed.borrow_mut();
            match self.returned(ocr, &mut f, id, out, reporter) {
                Ok(()) => Ok(()),
                Err(e) => {
                    f.fatal = Some(e);
                    Err(Error::request("the batch stopped", "see the error before this one"))
                }
            }
        };
        loop {
            let pulled = feed.borrow().next_id;
            let result = ocr.ocr_batch(&self.request.run, batch, &mut next, &mut done);
            let mut f = feed.borrow_mut();
            if let Some(e) = f.fatal.take() {
                return Err(e);
            }
            // Pages the run did not hand back: a failed batched step ends every page in flight.
            let lost = std::mem::take(&mut f.in_flight);
            let error = match result {
                Ok(()) => Error::request(
                    "the model returned no result for this page",
                    "this is a bug in the model's batched entry point",
                ),
                // Nothing was handed out: the run cannot make progress.
                Err(e) if f.next_id == pulled => return Err(e),
                Err(e) => e,
            };
            for (_, flight) in lost {
                let r = f.running[flight.group]
                    .as_ref()
                    .expect("a page in flight has a running input");
                let (input, page) = (r.input, r.pages[flight.index]);
                let target = self.layout.page_target(input, page);
                let status = self.page_failed(input, page, &target, Stage::Ocr, &error, reporter)?;
                self.page_settled(&mut f, flight.group, flight.index, status, reporter)?;
            }
            if f.exhausted {
                break;
            }
        }
        let f = feed.into_inner();
        summary.tokens += f.tokens;
        for (item, (entry, _)) in f.items.into_iter().zip(groups) {
            // Every page was handed out and settled, so every input is settled.
            let item = item.ok_or_else(|| {
                Error::request(
                    format!("input {entry} of the batch was left unsettled"),
                    "this is a bug in the batch",
                )
            })?;
            summary.items.push(item);
        }
        Ok(())
    }

    /// The next page to decode: `(id, image, label)`. Inputs are started, finished pages
    /// skipped, pages that fail to render recorded and huge pages (with a mosaic) run on
    /// their own on the way.
    fn pull<'b>(
        &'b self,
        ocr: &dyn PageOcr,
        groups: &'b [Group],
        f: &mut Feed<'b>,
        reporter: &dyn Reporter,
    ) -> Result<Option<(usize, RgbImage, String)>> {
        loop {
            let g = f.group;
            let Some((entry, pages)) = groups.get(g) else {
                f.doc = None;
                return Ok(None);
            };
            if f.running[g].is_none() && f.items[g].is_none() {
                match self.start_entry(*entry, pages, reporter)? {
                    Start::Settled(item) => {
                        f.items[g] = Some(item);
                        f.group += 1;
                        continue;
                    }
                    Start::Open(input, doc, item) => {
                        f.doc = Some(doc);
                        f.next_page = 0;
                        f.running[g] = Some(Running {
                            entry: *entry,
                            input,
                            pages,
                            item,
                            status: vec![None; pages.len()],
                            left: pages.len(),
                        });
                    }
                }
            }
            if f.next_page >= pages.len() {
                // Every page of this input is handed out: its document can go.
                f.doc = None;
                f.group += 1;
                f.next_page = 0;
                continue;
            }
            let i = f.next_page;
            f.next_page += 1;
            let page = pages[i];
            let input = f.running[g].as_ref().expect("a started input").input;
            let target = self.layout.page_target(input, page);
            if self.page_skipped(input, page, &target, reporter) {
                self.page_settled(f, g, i, Status::Skipped, reporter)?;
                continue;
            }
            let doc = f.doc.as_ref().expect("the document of the input being fed");
            let image = match doc.page(page, self.request.dpi) {
                Ok(image) => image,
                Err(e) => {
                    let status = self.page_failed(input, page, &target, Stage::Decode, &e, reporter)?;
                    self.page_settled(f, g, i, status, reporter)?;
                    continue;
                }
            };
            if self.mosaic.is_some_and(|m| m.applies(image.width(), image.height())) {
                // Tiles run one at a time, like the page alone would.
                let result = self
                    .ocr_image(ocr, input, page, &image, reporter)
                    .map_err(|e| (Stage::Ocr, e))
                    .and_then(|out| self.write_page(ocr, input, page, &image, &target, &out));
                let status = self.settle_page(input, page, &target, result, reporter, &mut f.tokens)?;
                self.page_settled(f, g, i, status, reporter)?;
                continue;
            }
            let label = label(input, page);
            reporter.working(&label, 0);
            let id = f.next_id;
            f.next_id += 1;
            f.in_flight.insert(
                id,
                Flight {
                    group: g,
                    index: i,
                    image: image.clone(),
                    t0: Instant::now(),
                },
            );
            return Ok(Some((id, image, label)));
        }
    }

    /// A page came back from the model: its files (or its error record) are written.
    fn returned(
        &self,
        ocr: &dyn PageOcr,
        f: &mut Feed<'_>,
        id: usize,
        out: Result<OcrOutput>,
        reporter: &dyn Reporter,
    ) -> Result<()> {
        let Some(flight) = f.in_flight.remove(&id) else {
            return Err(Error::request(
                format!("the model returned page {id}, which is not in flight"),
                "this is a bug in the model's batched entry point",
            ));
        };
        let r = f.running[flight.group]
            .as_ref()
            .expect("a page in flight has a running input");
        let (input, page) = (r.input, r.pages[flight.index]);
        let target = self.layout.page_target(input, page);
        let result = out.map_err(|e| (Stage::Ocr, e)).and_then(|out| {
            tracing::debug!(
                page = %label(input, page),
                seconds = flight.t0.elapsed().as_secs_f64(),
                tokens = out.token_ids.len(),
                "page done"
            );
            self.write_page(ocr, input, page, &flight.image, &target, &out)
        });
        let (g, index) = (flight.group, flight.index);
        drop(flight);
        let status = self.settle_page(input, page, &target, result, reporter, &mut f.tokens)?;
        self.page_settled(f, g, index, status, reporter)
    }

    /// Counts a settled page; the input's last one ends the input.
    fn page_settled(
        &self,
        f: &mut Feed<'_>,
        g: usize,
        index: usize,
        status: Status,
        reporter: &dyn Reporter,
    ) -> Result<()> {
        reporter.page_finished();
        let r = f.running[g].as_mut().expect("a settled page has a running input");
        r.status[index] = Some(status);
        r.left -= 1;
        if r.left == 0 {
            let Running {
                entry,
                input,
                pages,
                mut item,
                status,
                ..
            } = f.running[g].take().expect("checked above");
            item.pages = pages
                .iter()
                .zip(status)
                .map(|(p, s)| PageSummary {
                    page: p.map(|p| p + 1),
                    status: s.expect("every page is settled"),
                })
                .collect();
            f.items[g] = Some(self.end_entry(entry, input, item, reporter)?);
        }
        Ok(())
    }
}
