//! The job layer: everything between "a user asked for OCR of these files with these
//! settings" and the engine, shared by the `dsocr` command line and a server.
//!
//! - [`request`]: settings as text (mode, task, pages, max tokens, dpi, format) →
//!   a validated [`JobRequest`]; bad values are [`ErrorKind::Request`](crate::error::ErrorKind) errors.
//! - [`inputs`]: files, folders, globs → checked [`Input`]s ([`inputs::expand`],
//!   [`inputs::inspect`] with a lazily loaded libpdfium in [`PdfLoader`]).
//! - [`pages`]: an [`Input`] opened as a [`Document`], its pages produced one at a time.
//! - [`layout`]: where results go ([`Layout`], [`PageTarget`]) and how they are written
//!   (Markdown rewrite, boxes image, crops, JSON record; all atomic, the JSON last).
//! - [`resume`]: which pages are already finished.
//! - [`batch`]: the loop over inputs and pages for an output folder ([`Batch`]), with
//!   progress through a [`Reporter`] and the model behind [`PageOcr`] (implemented by
//!   [`Engine`](crate::Engine), scriptable in tests); with a batch size above 1
//!   ([`BatchSize`]) pages decode together through [`PageOcr::ocr_batch`]. Failures become
//!   [`failure::ErrorRecord`]s (`NAME.error.json`) and the batch goes on; the run ends
//!   with a [`summary::BatchSummary`] (`batch.json`).
//! - [`shard`]: `K/N` of the job's pages for array jobs; [`merge`] assembles the shards.
//! - [`mosaic`]: huge pages as overlapping tiles, boxes merged back into one page.
//! - [`model_source`]: a model folder or, with the `hub` cargo feature, a Hugging Face
//!   repo id such as `deepseek-ai/DeepSeek-OCR` → a checked local folder.
//!
//! A server handles one upload like this:
//!
//! ```no_run
//! # fn demo(engine: &deepseek_ocr::Engine, path: &std::path::Path) -> deepseek_ocr::Result<()> {
//! use deepseek_ocr::job::{self, Document, JobRequest, PageOcr, PdfLoader, RawRequest};
//! let request = JobRequest::parse(&RawRequest { mode: "base", ..Default::default() })?;
//! let mut pdf = PdfLoader::new(None);
//! let input = job::inputs::inspect(path, request.pages.as_ref(), &mut pdf)?;
//! let doc = Document::open(&input, pdf.loaded())?;
//! for page in input.units() {
//!     let image = doc.page(page, request.dpi)?;
//!     let out = engine.ocr_page(&image, &request.run, None)?;
//!     let record = job::batch::page_record(&input, page, &request, &out);
//!     println!("{}", serde_json::to_string(&record).unwrap());
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry [`Error::kind`](crate::Error::kind) (map it with
//! [`ErrorKind::http_status`](crate::error::ErrorKind::http_status)) and
//! [`Error::hint`](crate::Error::hint).

pub mod batch;
pub mod failure;
pub mod inputs;
pub mod layout;
pub mod merge;
pub mod model_source;
pub mod mosaic;
pub mod page_ocr;
pub mod pages;
pub mod request;
pub mod resume;
pub mod shard;
pub mod summary;

pub use batch::{Batch, Entry, Reporter, Silent, Unreadable};
pub use failure::{ErrorRecord, Stage};
pub use inputs::{Input, InputKind, PdfLoader};
pub use layout::{Layout, PageTarget};
pub use mosaic::MosaicOptions;
pub use page_ocr::{BatchPage, PageOcr};
pub use pages::Document;
pub use request::{BatchSize, Format, JobRequest, RawRequest};
pub use shard::Shard;
pub use summary::{BatchSummary, Counts, Status};
