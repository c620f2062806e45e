//! `dsocr ocr INPUT...`: images, PDFs, folders and globs to Markdown, JSON and
//! annotated page images, as a resumable batch.
//!
//! Order of work, chosen so that mistakes surface before the (slow) model load and
//! never leave partial results: parse the options, expand the inputs, check every
//! input (image headers, PDF encryption and page ranges), see what is already done,
//! resolve and load the model, then process one page at a time, writing each file
//! atomically and the page's JSON last, which marks the page finished.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use image::RgbImage;

mod batched;

use super::model_source;
use super::progress::Progress;
use crate::engine::{Engine, EngineOptions, OcrOutput, RunOptions};
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::input::pdf::{PageRanges, PdfFile, PdfLibrary, DEFAULT_DPI};
use crate::output::json::{DocumentJson, PageJson};
use crate::output::{atomic, boxes, grounding, markdown};
use crate::text::Task;
use crate::vision::Mode;

const EXAMPLES: &str = "\
Examples:
  dsocr ocr page.png                          stream Markdown of one image to stdout
  dsocr ocr scan.pdf --out results            per-page results and results/scan.md
  dsocr ocr scans/ --out results              every image and PDF of a folder (resumable)
  dsocr ocr 'inbox/*.jpg' --mode base --format json --out results
  dsocr ocr paper.pdf --pages 1-3,7 --dpi 200 --out results
  dsocr ocr page.png --task locate='Total amount' --model ./DeepSeek-OCR

Rerunning the same command skips pages whose results already exist.";

/// Image file extensions taken from folders and globs.
const IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "jfif"];

/// Arguments of `dsocr ocr`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Images, PDFs, folders (their images and PDFs, sorted) or glob patterns.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Model folder or Hugging Face repo id [default: deepseek-ai/DeepSeek-OCR].
    #[arg(long, value_name = "DIR|HUB_ID")]
    pub model: Option<String>,
    /// Resolution mode: tiny, small, base, large, gundam or custom:BASE:IMAGE[:crop].
    #[arg(long, default_value = "gundam")]
    pub mode: String,
    /// Task: markdown, ocr, free, figure, describe, locate=TEXT or prompt=TEXT
    /// (a custom prompt holds `<image>` once; `\n` in it is a newline).
    #[arg(long, default_value = "markdown")]
    pub task: String,
    /// Output folder; without it a single input is streamed to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Text output: md (rewritten Markdown), json (only NAME.json), txt (text without layout tags).
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// PDF pages to process, e.g. 1-3,7 or 5- (default: all).
    #[arg(long, value_name = "RANGES")]
    pub pages: Option<String>,
    /// Rendering resolution of PDF pages in dots per inch.
    #[arg(long, default_value_t = DEFAULT_DPI)]
    pub dpi: f32,
    /// Maximum number of generated tokens per page [default: 8192].
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Weight precision of the linear layers on the CPU: f32 (exact parity with the
    /// reference), bf16 (fast) or int8 (fastest decode, least memory).
    #[arg(long, default_value = "f32")]
    pub precision: crate::nn::Precision,
    /// Refuse pages whose predicted peak memory exceeds this many GB (checked before each page).
    #[arg(long, value_name = "GB")]
    pub memory_budget: Option<f64>,
    /// Pages decoding together with --out: a number, or `auto` (as many as the memory budget
    /// allows, at most 8). Results are the same as one page at a time.
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    pub batch: String,
    /// Folder (or file) of libpdfium, for PDF input.
    #[arg(long, value_name = "DIR")]
    pub pdfium: Option<PathBuf>,
}

/// Text output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown with figure links (the official rewrite).
    Md,
    /// The JSON record only.
    Json,
    /// Plain text: layout references removed.
    Txt,
}

/// Compute dtype choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }
    }
}

/// Parses `cpu`, `cuda`, `cuda:N`.
fn parse_device(s: &str) -> Result<Device> {
    let hint = "use --device cpu, or a CUDA build (`--features cuda`) with --device cuda[:N]";
    let ordinal = match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return Err(Error::request(format!("unknown device `{s}`"), hint)),
        },
    };
    Device::new_cuda(ordinal).map_err(|e| Error::request(format!("CUDA device {ordinal} unavailable: {e}"), hint))
}

/// What kind of file an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Pdf,
}

/// One input file and the name its outputs get.
#[derive(Debug, Clone)]
struct Input {
    path: PathBuf,
    kind: Kind,
    /// File stem; outputs are `NAME.*`.
    name: String,
    /// Selected 0-based pages (PDFs only).
    pages: Vec<usize>,
}

fn extension(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_supported(p: &Path) -> bool {
    let e = extension(p);
    e == "pdf" || IMAGE_EXTENSIONS.contains(&e.as_str())
}

/// PDF by extension or by its `%PDF` signature (for files named without one).
fn kind_of(p: &Path) -> Kind {
    if extension(p) == "pdf" {
        return Kind::Pdf;
    }
    let mut head = [0u8; 5];
    let is_pdf = std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"%PDF-";
    if is_pdf {
        Kind::Pdf
    } else {
        Kind::Image
    }
}

const SUPPORTED_HINT: &str = "supported inputs: PNG, JPEG, GIF, BMP, TIFF, WebP images and PDF files";

/// Expands files, folders and globs into sorted, de-duplicated input files.
fn expand_inputs(args: &[String]) -> Result<Vec<PathBuf>> {
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
fn check_image(path: &Path) -> Result<()> {
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

/// Reads an image input: EXIF orientation applied, converted to RGB as the reference does.
fn load_image(path: &Path) -> Result<RgbImage> {
    crate::input::image::load_image(path, &crate::input::image::LoadOptions::default())
}

/// Where the outputs of one page go, and which format.
struct PageTarget {
    /// Folder of the page's files.
    dir: PathBuf,
    /// File stem: `NAME` for an image, `page_0001` for a PDF page.
    stem: String,
    format: Format,
    /// The PDF script collapses blank-line runs; the image path does not.
    collapse_newlines: bool,
}

impl PageTarget {
    fn json(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }
    fn text(&self) -> Option<PathBuf> {
        match self.format {
            Format::Md => Some(self.dir.join(format!("{}.md", self.stem))),
            Format::Txt => Some(self.dir.join(format!("{}.txt", self.stem))),
            Format::Json => None,
        }
    }
    fn boxes(&self) -> PathBuf {
        self.dir.join(format!("{}.boxes.png", self.stem))
    }
    fn images_dir_name(&self) -> String {
        format!("{}_images", self.stem)
    }
    /// Finished pages have their JSON (written last) and text file.
    fn is_done(&self) -> bool {
        self.json().is_file() && self.text().is_none_or(|t| t.is_file())
    }

    /// Writes crops, the annotated page, the text file and finally the JSON.
    fn write(&self, page: &RgbImage, record: &PageJson) -> Result<()> {
        let rewritten = markdown::rewrite(
            &record.text,
            &format!("{}/", self.images_dir_name()),
            self.collapse_newlines,
        );
        let crops = markdown::crop_jobs(&rewritten.image_refs);
        if !crops.is_empty() {
            let dir = self.dir.join(self.images_dir_name());
            atomic::create_dir_all(&dir)?;
            atomic::remove_stale_temps(&dir);
            for job in &crops {
                if let Some(c) = boxes::crop(page, job.norm_box) {
                    atomic::write_png(&dir.join(format!("{}.png", job.crop_index)), &c)?;
                }
            }
        }
        let refs = grounding::parse_refs(&record.text);
        atomic::write_png(&self.boxes(), &boxes::draw(page, &refs))?;
        if let Some(t) = self.text() {
            let body = match self.format {
                Format::Txt => markdown::strip_refs(&record.text),
                _ => rewritten.markdown,
            };
            atomic::write_text(&t, &body)?;
        }
        write_json(&self.json(), record)
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    atomic::write_text(path, &(text + "\n"))
}

/// Runs `dsocr ocr`.
///
/// Every error carries a hint; errors from deeper layers that have none (tensor
/// backend, I/O while writing) get a generic one, since what is finished is kept.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<()> {
    match Ocr::new(args, quiet).and_then(Ocr::run) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("\nhint: ") => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!(
            "{e}\nhint: finished pages are kept and skipped when the same command is rerun; add --verbose for details"
        )),
    }
}

/// The state of one `dsocr ocr` invocation.
struct Ocr {
    args: Args,
    quiet: bool,
    run: RunOptions,
    device: Device,
    pdf_lib: Option<PdfLibrary>,
    inputs: Vec<Input>,
}

impl Ocr {
    /// Parses options and checks every input; no file is written here.
    fn new(args: Args, quiet: bool) -> Result<Self> {
        let mode: Mode = args
            .mode
            .parse()
            .map_err(|e: String| Error::request(e, "see `dsocr ocr --help`"))?;
        let mut task: Task = args
            .task
            .parse()
            .map_err(|e: String| Error::request(e, "see `dsocr ocr --help`"))?;
        if let Task::Prompt(p) = &mut task {
            // Shells make typing a newline awkward; the official prompts need one after `<image>`.
            *p = p.replace("\\n", "\n");
            if p.matches("<image>").count() != 1 {
                return Err(Error::request(
                    "a custom prompt must contain `<image>` exactly once",
                    "e.g. --task 'prompt=<image>\\nFree OCR.'",
                ));
            }
        }
        let ranges: Option<PageRanges> = args
            .pages
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| Error::request(e, "see `dsocr ocr --help`"))?;
        if !(args.dpi.is_finite() && args.dpi >= 10.0 && args.dpi <= 1200.0) {
            return Err(Error::request(
                format!("--dpi {} is out of range", args.dpi),
                "use a value between 10 and 1200 (default 144)",
            ));
        }
        let mut generate = GenerateOptions::default();
        if let Some(n) = args.max_tokens {
            if n == 0 {
                return Err(Error::request(
                    "--max-tokens must be at least 1",
                    "omit it for the default 8192",
                ));
            }
            generate.max_new_tokens = n;
        }
        let device = parse_device(&args.device)?;

        let paths = expand_inputs(&args.inputs)?;
        let mut inputs = Vec::new();
        let mut pdf_lib = None;
        for path in paths {
            let kind = kind_of(&path);
            let mut pages = Vec::new();
            match kind {
                Kind::Image => check_image(&path)?,
                Kind::Pdf => {
                    if pdf_lib.is_none() {
                        pdf_lib = Some(PdfLibrary::load(args.pdfium.as_deref())?);
                    }
                    if let Some(lib) = &pdf_lib {
                        let doc = lib.open(&path)?;
                        pages = match &ranges {
                            Some(r) => r.resolve(doc.page_count(), &path)?,
                            None => (0..doc.page_count()).collect(),
                        };
                    }
                }
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "output".into());
            inputs.push(Input {
                path,
                kind,
                name,
                pages,
            });
        }
        if ranges.is_some() && !inputs.iter().any(|i| i.kind == Kind::Pdf) {
            return Err(Error::request(
                "--pages applies to PDF inputs, and none was given",
                "remove --pages",
            ));
        }
        if args.out.is_none() && inputs.len() > 1 {
            return Err(Error::request(
                format!("{} inputs need an output folder", inputs.len()),
                "add --out DIR (only a single input is streamed to stdout)",
            ));
        }
        // Two inputs with the same stem would overwrite each other's results.
        let mut by_name: HashMap<&str, &Path> = HashMap::new();
        for i in &inputs {
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
        let run = RunOptions { mode, task, generate };
        Ok(Self {
            args,
            quiet,
            run,
            device,
            pdf_lib,
            inputs,
        })
    }

    fn page_target(&self, out: &Path, input: &Input, page: Option<usize>) -> PageTarget {
        match page {
            None => PageTarget {
                dir: out.to_path_buf(),
                stem: input.name.clone(),
                format: self.args.format,
                collapse_newlines: false,
            },
            Some(p) => PageTarget {
                dir: out.join(&input.name),
                stem: format!("page_{:04}", p + 1),
                format: self.args.format,
                collapse_newlines: true,
            },
        }
    }

    /// Whether a whole input is finished: all its pages and, for PDFs, the combined files.
    fn input_done(&self, out: &Path, input: &Input) -> bool {
        match input.kind {
            Kind::Image => self.page_target(out, input, None).is_done(),
            Kind::Pdf => {
                combined_paths(out, input, self.args.format).iter().all(|p| p.is_file())
                    && input
                        .pages
                        .iter()
                        .all(|&p| self.page_target(out, input, Some(p)).is_done())
            }
        }
    }

    /// A warning when finished results were made with another mode or task than asked now.
    fn settings_note(&self, json: &Path) -> String {
        let Some(v) = std::fs::read_to_string(json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return String::new();
        };
        let (mode, task) = (
            v["mode"].as_str().unwrap_or_default(),
            v["task"].as_str().unwrap_or_default(),
        );
        if mode == self.run.mode.to_string() && task == self.run.task.to_string() {
            String::new()
        } else {
            format!(" (made with --mode {mode} --task {task}; delete its results to redo it)")
        }
    }

    fn run(self) -> Result<()> {
        match self.args.out.clone() {
            None => self.run_stdout(),
            Some(out) => self.run_batch(&out),
        }
    }

    fn load_engine(&self) -> Result<Engine> {
        let show_progress = !self.quiet && std::io::stderr().is_terminal();
        let dir = model_source::resolve(self.args.model.as_deref(), show_progress)?;
        tracing::info!(model = %dir.display(), "loading model");
        let options = EngineOptions {
            device: self.device.clone(),
            dtype: self.args.dtype.into(),
            defaults: self.run.clone(),
            memory_budget: self.args.memory_budget.map(|gb| (gb * 1e9) as u64),
            precision: self.args.precision,
        };
        Engine::load(&dir, options)
    }

    /// A single input streamed to stdout.
    fn run_stdout(&self) -> Result<()> {
        let engine = self.load_engine()?;
        let Some(input) = self.inputs.first() else {
            return Ok(());
        };
        let stdout = std::io::stdout();
        let stream = self.args.format == Format::Md;
        let mut on_text = |piece: &str| {
            let mut lock = stdout.lock();
            // A closed pipe (e.g. `| head`) must not abort the run with a panic.
            let _ = lock.write_all(piece.as_bytes());
            let _ = lock.flush();
        };
        let source = input.path.display().to_string();
        let finish = |page: Option<usize>, out: &OcrOutput, records: &mut Vec<PageJson>| {
            let mut lock = stdout.lock();
            match self.args.format {
                Format::Md => {
                    let _ = writeln!(lock);
                }
                Format::Txt => {
                    let _ = writeln!(lock, "{}", markdown::strip_refs(&out.text));
                }
                Format::Json => records.push(PageJson::new(
                    &source,
                    page.map(|p| p + 1),
                    &self.run.mode.to_string(),
                    &self.run.task.to_string(),
                    out,
                )),
            }
        };
        let mut records = Vec::new();
        let mut page_count = 1;
        match input.kind {
            Kind::Image => {
                let img = load_image(&input.path)?;
                let out = engine.run_with(
                    &img,
                    &self.run,
                    if stream {
                        Some(&mut on_text as &mut dyn FnMut(&str))
                    } else {
                        None
                    },
                )?;
                finish(None, &out, &mut records);
            }
            Kind::Pdf => {
                let doc = self.open_pdf(input)?;
                page_count = doc.page_count();
                for &p in &input.pages {
                    let img = doc.render(p, self.args.dpi)?;
                    let out = engine.run_with(
                        &img,
                        &self.run,
                        if stream {
                            Some(&mut on_text as &mut dyn FnMut(&str))
                        } else {
                            None
                        },
                    )?;
                    finish(Some(p), &out, &mut records);
                    if self.args.format != Format::Json {
                        let _ = stdout.lock().write_all(markdown::PAGE_SPLIT.as_bytes());
                    }
                }
            }
        }
        if self.args.format == Format::Json {
            let text = match input.kind {
                Kind::Image => records.first().map(serde_json::to_string_pretty),
                Kind::Pdf => Some(serde_json::to_string_pretty(&DocumentJson {
                    schema_version: crate::output::json::SCHEMA_VERSION,
                    source,
                    page_count,
                    pages: records,
                })),
            };
            if let Some(Ok(t)) = text {
                let _ = writeln!(stdout.lock(), "{t}");
            }
        }
        Ok(())
    }

    fn open_pdf(&self, input: &Input) -> Result<PdfFile<'_>> {
        match &self.pdf_lib {
            Some(lib) => lib.open(&input.path),
            None => Err(Error::input(
                &input.path,
                "PDF support was not initialised",
                "report this as a bug",
            )),
        }
    }

    /// All inputs into `out`, skipping finished pages.
    fn run_batch(&self, out: &Path) -> Result<()> {
        let pending: Vec<&Input> = self.inputs.iter().filter(|i| !self.input_done(out, i)).collect();
        let total_pages: usize = self
            .inputs
            .iter()
            .map(|i| if i.kind == Kind::Pdf { i.pages.len() } else { 1 })
            .sum();
        let progress = Progress::new(total_pages as u64, self.quiet);
        for i in &self.inputs {
            if !pending.iter().any(|p| std::ptr::eq(*p, i)) {
                let first_page = if i.kind == Kind::Pdf {
                    i.pages.first().copied()
                } else {
                    None
                };
                let note = self.settings_note(&self.page_target(out, i, first_page).json());
                progress.println(format!("{}: skipped (already done){note}", i.path.display()));
                progress.inc();
            }
        }
        if pending.is_empty() {
            progress.finish();
            return Ok(());
        }
        let existed = out.is_dir();
        let prepared = prepare_out_dir(out);
        let engine = prepared.and_then(|()| self.load_engine());
        let engine = match engine {
            Ok(e) => e,
            Err(e) => {
                // Leave no trace of a run that produced nothing (only removes an empty folder).
                if !existed {
                    let _ = std::fs::remove_dir(out);
                }
                return Err(e);
            }
        };
        let batch = self.batch_size(&engine)?;
        if batch > 1 {
            self.run_batched(&engine, &progress, out, &pending, batch)?;
            progress.finish();
            return Ok(());
        }
        for input in pending {
            match input.kind {
                Kind::Image => {
                    let target = self.page_target(out, input, None);
                    let img = load_image(&input.path)?;
                    let record = self.run_page(&engine, &progress, input, None, &img)?;
                    target.write(&img, &record)?;
                    progress.inc();
                    progress.println(done_line(&input.path.display().to_string(), &record));
                }
                Kind::Pdf => self.run_pdf(&engine, &progress, out, input)?,
            }
        }
        progress.finish();
        Ok(())
    }

    /// `--batch`: the number given, or for `auto` the largest batch (≤ 8) of pages of a
    /// Letter page's size at 144 dpi whose memory plan fits the budget.
    fn batch_size(&self, engine: &Engine) -> Result<usize> {
        match self.args.batch.trim() {
            "auto" => engine.auto_batch(&self.run, (1224, 1584), 8),
            n => {
                n.parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    Error::request(format!("--batch {n} is not a number ≥ 1 or `auto`"), "e.g. --batch 4")
                })
            }
        }
    }

    fn run_page(
        &self,
        engine: &Engine,
        progress: &Progress,
        input: &Input,
        page: Option<usize>,
        img: &RgbImage,
    ) -> Result<PageJson> {
        let label = match page {
            Some(p) => format!("{} p{}", input.name, p + 1),
            None => input.name.clone(),
        };
        progress.set_message(label.clone());
        let mut chars = 0usize;
        let mut on_text = |piece: &str| {
            chars += piece.chars().count();
            progress.set_message(format!("{label}: {chars} chars"));
        };
        let t0 = Instant::now();
        let out = engine.run_with(img, &self.run, Some(&mut on_text))?;
        tracing::debug!(page = %label, seconds = t0.elapsed().as_secs_f64(), tokens = out.token_ids.len(), "page done");
        Ok(PageJson::new(
            &input.path.display().to_string(),
            page.map(|p| p + 1),
            &self.run.mode.to_string(),
            &self.run.task.to_string(),
            &out,
        ))
    }

    fn run_pdf(&self, engine: &Engine, progress: &Progress, out: &Path, input: &Input) -> Result<()> {
        let doc = self.open_pdf(input)?;
        let page_dir = out.join(&input.name);
        atomic::create_dir_all(&page_dir)?;
        atomic::remove_stale_temps(&page_dir);
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
                continue;
            }
            // One page alive at a time: memory does not grow with the page count.
            let img = doc.render(p, self.args.dpi)?;
            let record = self.run_page(engine, progress, input, Some(p), &img)?;
            target.write(&img, &record)?;
            progress.inc();
            progress.println(done_line(&format!("{} page {}", input.path.display(), p + 1), &record));
        }
        self.write_combined(out, input, doc.page_count())
    }

    /// Assembles `NAME.json` and `NAME.md`/`NAME.txt` of a PDF from its page records.
    fn write_combined(&self, out: &Path, input: &Input, page_count: usize) -> Result<()> {
        let mut pages = Vec::new();
        for &p in &input.pages {
            let path = self.page_target(out, input, Some(p)).json();
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let record: PageJson = serde_json::from_str(&text).map_err(|e| {
                Error::input(
                    &path,
                    format!("unreadable page record: {e}"),
                    "delete this file and rerun to redo the page",
                )
            })?;
            pages.push(record);
        }
        let [json_path, text_path] = combined_paths_all(out, input, self.args.format);
        if let Some(text_path) = text_path {
            let body = match self.args.format {
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
            schema_version: crate::output::json::SCHEMA_VERSION,
            source: input.path.display().to_string(),
            page_count,
            pages,
        };
        let json_path = json_path.unwrap_or_else(|| out.join(format!("{}.json", input.name)));
        write_json(&json_path, &doc)
    }
}

/// The combined files of a PDF: `[NAME.json, NAME.md|NAME.txt]` (text absent for json).
fn combined_paths_all(out: &Path, input: &Input, format: Format) -> [Option<PathBuf>; 2] {
    let text = match format {
        Format::Md => Some(out.join(format!("{}.md", input.name))),
        Format::Txt => Some(out.join(format!("{}.txt", input.name))),
        Format::Json => None,
    };
    [Some(out.join(format!("{}.json", input.name))), text]
}

fn combined_paths(out: &Path, input: &Input, format: Format) -> Vec<PathBuf> {
    combined_paths_all(out, input, format).into_iter().flatten().collect()
}

/// Creates the output folder, checks that files can be created in it and removes
/// temporary files a killed run left behind.
fn prepare_out_dir(out: &Path) -> Result<()> {
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
    atomic::remove_stale_temps(out);
    Ok(())
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
