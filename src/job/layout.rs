//! Output layout of a job folder:
//!
//! ```text
//! OUT/NAME.md  NAME.json  NAME.boxes.png  NAME_images/0.png …      (an image input)
//! OUT/NAME/page_0001.md  page_0001.json  page_0001.boxes.png  …    (each PDF page)
//! OUT/NAME.md  NAME.json                                           (a PDF, combined)
//! ```
//!
//! Every file is written atomically; a page's JSON record is written last and marks the
//! page finished.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::inputs::{Input, InputKind};
use super::request::Format;
use crate::error::{Error, Result};
use crate::output::json::{DocumentJson, PageJson, SCHEMA_VERSION};
use crate::output::{atomic, boxes, grounding, markdown};

/// Where the outputs of one page go, and in which format.
#[derive(Debug, Clone)]
pub struct PageTarget {
    /// Folder of the page's files.
    pub dir: PathBuf,
    /// File stem: `NAME` for an image, `page_0001` for a PDF page.
    pub stem: String,
    pub format: Format,
    /// The PDF script collapses blank-line runs; the image path does not.
    pub collapse_newlines: bool,
}

impl PageTarget {
    /// The JSON record (written last).
    pub fn json(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }
    /// The text file (`.md` or `.txt`; none for the json format).
    pub fn text(&self) -> Option<PathBuf> {
        match self.format {
            Format::Md => Some(self.dir.join(format!("{}.md", self.stem))),
            Format::Txt => Some(self.dir.join(format!("{}.txt", self.stem))),
            Format::Json => None,
        }
    }
    /// The page with its boxes drawn.
    pub fn boxes(&self) -> PathBuf {
        self.dir.join(format!("{}.boxes.png", self.stem))
    }
    /// The error record of a failed page.
    pub fn error(&self) -> PathBuf {
        self.dir.join(format!("{}.error.json", self.stem))
    }
    /// Folder name of the figure crops, relative to [`PageTarget::dir`].
    pub fn images_dir_name(&self) -> String {
        format!("{}_images", self.stem)
    }

    /// Removes what a killed run left of this page's temporaries (only this page's).
    pub fn remove_stale_temps(&self) {
        let mut names = vec![
            format!("{}.json", self.stem),
            format!("{}.boxes.png", self.stem),
            format!("{}.error.json", self.stem),
        ];
        names.extend(
            self.text()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        atomic::remove_stale_temps_of(&self.dir, &names);
        atomic::remove_stale_temps(&self.dir.join(self.images_dir_name()));
    }

    /// Writes crops, the annotated page, the text file and finally the JSON.
    pub fn write(&self, page: &RgbImage, record: &PageJson) -> Result<()> {
        self.remove_stale_temps();
        let rewritten = markdown::rewrite(
            &record.text,
            &format!("{}/", self.images_dir_name()),
            self.collapse_newlines,
        );
        let crops = markdown::crop_jobs(&rewritten.image_refs);
        if !crops.is_empty() {
            let dir = self.dir.join(self.images_dir_name());
            atomic::create_dir_all(&dir)?;
            for job in &crops {
                if let Some(c) = boxes::crop(page, job.norm_box) {
                    atomic::write_png(&dir.join(format!("{}.png", job.crop_index)), &c)?;
                }
            }
        }
        let refs = grounding::parse_refs(&record.text);
        atomic::write_png(&self.boxes(), &boxes::draw(page, &refs))?;
        if let Some(t) = self.text() {
            atomic::write_text(&t, &page_text(record, self.format, &rewritten.markdown))?;
        }
        write_json(&self.json(), record)
    }
}

/// The text file body of a page: the rewritten Markdown, or the text without layout refs.
fn page_text(record: &PageJson, format: Format, rewritten: &str) -> String {
    match format {
        Format::Txt => markdown::strip_refs(&record.text),
        _ => rewritten.to_string(),
    }
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    atomic::write_text(path, &(text + "\n"))
}

/// The layout of one output folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub out: PathBuf,
    pub format: Format,
}

impl Layout {
    /// A layout of `out` in `format`.
    pub fn new(out: impl Into<PathBuf>, format: Format) -> Self {
        Self {
            out: out.into(),
            format,
        }
    }

    /// Where a page's outputs go: `None` for an image input, `Some(p)` (0-based) for a PDF page.
    pub fn page_target(&self, input: &Input, page: Option<usize>) -> PageTarget {
        match page {
            None => PageTarget {
                dir: self.out.clone(),
                stem: input.name.clone(),
                format: self.format,
                collapse_newlines: false,
            },
            Some(p) => PageTarget {
                dir: self.out.join(&input.name),
                stem: format!("page_{:04}", p + 1),
                format: self.format,
                collapse_newlines: true,
            },
        }
    }

    /// The combined files of a PDF: `NAME.json` and `NAME.md`/`NAME.txt` (no text for json).
    pub fn combined_json(&self, input: &Input) -> PathBuf {
        self.out.join(format!("{}.json", input.name))
    }

    /// The combined text file of a PDF (none for the json format).
    pub fn combined_text(&self, input: &Input) -> Option<PathBuf> {
        match self.format {
            Format::Md => Some(self.out.join(format!("{}.md", input.name))),
            Format::Txt => Some(self.out.join(format!("{}.txt", input.name))),
            Format::Json => None,
        }
    }

    /// The error record of a failed input (whole file, before any page).
    pub fn input_error(&self, input_name: &str) -> PathBuf {
        self.out.join(format!("{input_name}.error.json"))
    }

    /// Creates the folder of a PDF's pages (temporaries are cleaned per page, since
    /// shards may be writing other pages of the same folder).
    pub fn prepare_pages_dir(&self, input: &Input) -> Result<()> {
        if input.kind == InputKind::Pdf {
            atomic::create_dir_all(&self.out.join(&input.name))?;
        }
        Ok(())
    }

    /// Assembles `NAME.json` and `NAME.md`/`NAME.txt` of a PDF from its page records.
    pub fn write_combined(&self, input: &Input, pages: Vec<PageJson>) -> Result<()> {
        let names = [
            format!("{}.json", input.name),
            format!("{}.md", input.name),
            format!("{}.txt", input.name),
        ];
        atomic::remove_stale_temps_of(&self.out, &names);
        if let Some(text_path) = self.combined_text(input) {
            let body = match self.format {
                Format::Txt => pages
                    .iter()
                    .map(|r| markdown::strip_refs(&r.text))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                _ => {
                    let md: Vec<String> = pages
                        .iter()
                        .map(|r| {
                            let prefix = format!("{}/page_{:04}_images/", input.name, r.page.unwrap_or(0));
                            markdown::rewrite(&r.text, &prefix, true).markdown
                        })
                        .collect();
                    markdown::join_pages(md.iter().map(String::as_str))
                }
            };
            atomic::write_text(&text_path, &body)?;
        }
        let doc = DocumentJson {
            schema_version: SCHEMA_VERSION,
            source: input.path.display().to_string(),
            page_count: input.page_count,
            pages,
        };
        write_json(&self.combined_json(input), &doc)
    }

    /// Creates the output folder and checks that files can be created in it. (Temporary
    /// files a killed run left are removed per target, just before it is written again.)
    pub fn prepare(&self) -> Result<()> {
        let out = &self.out;
        let hint = "choose a folder you can write to with --out";
        if out.exists() && !out.is_dir() {
            return Err(Error::input(out, "the output path is a file, not a folder", hint));
        }
        std::fs::create_dir_all(out)
            .map_err(|e| Error::input(out, format!("cannot create the output folder: {e}"), hint))?;
        let probe = out.join(format!(".dsocr-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| Error::input(out, format!("the output folder is not writable: {e}"), hint))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}
