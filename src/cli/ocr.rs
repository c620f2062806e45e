//! `dsocr ocr INPUT...`: images, PDFs, folders and globs to Markdown, JSON and
//! annotated page images, as a resumable batch.
//!
//! A thin caller of [`crate::job`]. Order of work, chosen so that mistakes surface before the (slow) model load and
//! never leave partial results: parse the options, expand the inputs, check every
//! input (image headers, PDF encryption and page ranges), see what is already done,
//! resolve and load the model, then process one page at a time, writing each file
//! atomically and the page's JSON last, which marks the page finished.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::progress::Progress;
use crate::engine::{Engine, EngineOptions, OcrOutput};
use crate::error::{Error, Result};
use crate::input::pdf::DEFAULT_DPI;
use crate::job::{
    self, model_source, Batch, Document, Entry, Format, Input, InputKind, JobRequest, Layout, MosaicOptions, PageOcr,
    PdfLoader, RawRequest, Shard, Unreadable,
};
use crate::output::json::DocumentJson;
use crate::output::markdown;

const EXAMPLES: &str = "\
Examples:
  dsocr ocr page.png                          stream Markdown of one image to stdout
  dsocr ocr scan.pdf --out results            per-page results and results/scan.md
  dsocr ocr scans/ --out results              every image and PDF of a folder (resumable)
  dsocr ocr 'inbox/*.jpg' --mode base --format json --out results
  dsocr ocr paper.pdf --pages 1-3,7 --dpi 200 --out results
  dsocr ocr page.png --task locate='Total amount' --model ./DeepSeek-OCR

Rerunning the same command skips pages whose results already exist.";

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
    /// Resolution mode: tiny, small, base, large, gundam (= dynamic), nocrop768 or custom:BASE:IMAGE[:crop]
    /// (DeepSeek-OCR-2: gundam, base, nocrop768).
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
    #[arg(long, default_value = "md", value_parser = ["md", "json", "txt"])]
    pub format: String,
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
    /// Weight precision of the linear layers on the CPU: auto (bf16 read in place from the
    /// checkpoint, or int8 for a folder written by `dsocr convert --precision int8`), f32
    /// (exact parity with the reference), bf16, or int8 (fastest decode, least memory).
    #[arg(long, default_value = "auto")]
    pub precision: crate::nn::Precision,
    /// Refuse pages whose predicted peak memory exceeds this many GB (checked before each page).
    #[arg(long, value_name = "GB")]
    pub memory_budget: Option<f64>,
    /// Pages decoding together with --out: a number (1 = one page at a time), or `auto` (as
    /// many Letter pages at --dpi as the memory budget allows, at most 8). The results are
    /// those of one page at a time.
    #[arg(long, default_value = "1", value_name = "N|auto")]
    pub batch: String,
    /// Folder (or file) of libpdfium, for PDF input.
    #[arg(long, value_name = "DIR")]
    pub pdfium: Option<PathBuf>,
    /// Run only shard K of N (1-based) of the job's pages, for array jobs on a cluster.
    /// Without it, JOB_COMPLETION_INDEX (+ DSOCR_SHARD_COUNT or --shard-count) and
    /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT are read. Combine with `dsocr merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// The number of shards when the index comes from JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
    /// Pages larger than --huge-threshold: shrink them (the model's own modes) or tile
    /// them into overlapping full-resolution tiles whose boxes are merged back.
    #[arg(long, value_name = "HOW", default_value = "shrink", value_parser = ["shrink", "tile"])]
    pub huge_images: String,
    /// Tile side in pixels for --huge-images tile.
    #[arg(long, value_name = "PX", default_value_t = 1024)]
    pub tile_size: u32,
    /// Overlap between tiles in pixels for --huge-images tile.
    #[arg(long, value_name = "PX", default_value_t = 128)]
    pub tile_overlap: u32,
    /// Pages whose width or height exceeds this many pixels count as huge.
    #[arg(long, value_name = "PX", default_value_t = 2048)]
    pub huge_threshold: u32,
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

/// Not every input of a batch succeeded (some have `NAME.error.json`).
#[derive(Debug)]
pub struct PartialFailure {
    pub failed: usize,
    pub total: usize,
}

impl PartialFailure {
    /// [`super::exit::PARTIAL`].
    pub fn exit_code(&self) -> u8 {
        super::exit::PARTIAL
    }
}

impl std::fmt::Display for PartialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} inputs failed; hint: see NAME.error.json in the output folder, fix them and rerun (finished pages are skipped)",
            self.failed, self.total
        )
    }
}

impl std::error::Error for PartialFailure {}

/// Runs `dsocr ocr`.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<()> {
    Ocr::new(args, quiet)?.run()
}

/// The state of one `dsocr ocr` invocation.
struct Ocr {
    args: Args,
    quiet: bool,
    request: JobRequest,
    device: Device,
    pdf: PdfLoader,
    /// Checked inputs; in a batch, unreadable ones stay as failures.
    entries: Vec<Entry>,
    shard: Option<Shard>,
    mosaic: Option<MosaicOptions>,
}

/// The progress bar as a job reporter.
impl job::Reporter for Progress {
    fn line(&self, msg: &str) {
        self.println(msg);
    }
    fn working(&self, label: &str, chars: usize) {
        if chars == 0 {
            self.set_message(label.to_string());
        } else {
            self.set_message(format!("{label}: {chars} chars"));
        }
    }
    fn page_finished(&self) {
        self.inc();
    }
}

impl Ocr {
    /// Parses options and checks every input; no file is written here.
    fn new(args: Args, quiet: bool) -> Result<Self> {
        let format: Format = args
            .format
            .parse()
            .map_err(|e: String| Error::request(e, "see `dsocr ocr --help`"))?;
        let request = JobRequest::parse(&RawRequest {
            mode: &args.mode,
            task: &args.task,
            pages: args.pages.as_deref(),
            max_tokens: args.max_tokens,
            dpi: args.dpi,
            format,
            batch: &args.batch,
        })?;
        let device = parse_device(&args.device)?;
        let shard = match &args.shard {
            Some(s) => Some(s.parse::<Shard>()?),
            None => Shard::from_env(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()), args.shard_count)?,
        };
        if shard.is_some() && args.out.is_none() {
            return Err(Error::request(
                "a shard needs an output folder",
                "add --out DIR (shared by all shards)",
            ));
        }
        let mosaic = (args.huge_images == "tile")
            .then_some(MosaicOptions {
                tile: args.tile_size,
                overlap: args.tile_overlap,
                threshold: args.huge_threshold,
            })
            .map(|m| m.validate().map(|()| m))
            .transpose()?;
        let paths = job::inputs::expand(&args.inputs)?;
        let any_pdf = paths.iter().any(|p| job::inputs::kind_of(p) == InputKind::Pdf);
        if request.pages.is_some() && !any_pdf {
            return Err(Error::request(
                "--pages applies to PDF inputs, and none was given",
                "remove --pages",
            ));
        }
        if args.out.is_none() && paths.len() > 1 {
            return Err(Error::request(
                format!("{} inputs need an output folder", paths.len()),
                "add --out DIR (only a single input is streamed to stdout)",
            ));
        }
        let mut pdf = PdfLoader::new(args.pdfium.clone());
        if any_pdf {
            // A missing libpdfium concerns every PDF: one clear error, not one per file.
            pdf.get()?;
        }
        let mut entries = Vec::new();
        for path in paths {
            match job::inputs::inspect(&path, request.pages.as_ref(), &mut pdf) {
                Ok(i) => entries.push(Ok(i)),
                // A single input streamed to stdout fails as a whole; a batch goes on.
                Err(e) if args.out.is_some() => entries.push(Err(Unreadable::new(path, e))),
                Err(e) => return Err(e),
            }
        }
        let named: Vec<Input> = entries
            .iter()
            .map(|e| match e {
                Ok(i) => i.clone(),
                Err(u) => Input {
                    path: u.path.clone(),
                    kind: InputKind::Image,
                    name: u.name.clone(),
                    pages: Vec::new(),
                    page_count: 0,
                },
            })
            .collect();
        job::inputs::check_unique_names(&named)?;
        Ok(Self {
            args,
            quiet,
            request,
            device,
            pdf,
            entries,
            shard,
            mosaic,
        })
    }

    fn run(self) -> anyhow::Result<()> {
        match self.args.out.clone() {
            None => Ok(self.run_stdout()?),
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
            defaults: self.request.run.clone(),
            memory_budget: self.args.memory_budget.map(|gb| (gb * 1e9) as u64),
            precision: self.args.precision,
        };
        Engine::load(&dir, options)
    }

    /// A single input streamed to stdout.
    fn run_stdout(&self) -> Result<()> {
        let Some(Ok(input)) = self.entries.first() else {
            return Ok(());
        };
        let engine = self.load_engine()?;
        let format = self.request.format;
        let stdout = std::io::stdout();
        let stream = format == Format::Md;
        let mut on_text = |piece: &str| {
            let mut lock = stdout.lock();
            // A closed pipe (e.g. `| head`) must not abort the run with a panic.
            let _ = lock.write_all(piece.as_bytes());
            let _ = lock.flush();
        };
        let doc = Document::open(input, self.pdf.loaded())?;
        let mut records = Vec::new();
        for page in input.units() {
            let img = doc.page(page, self.request.dpi)?;
            let out: OcrOutput = match &self.mosaic {
                Some(m) if m.applies(img.width(), img.height()) => {
                    let out = job::mosaic::run_mosaic(&engine, &img, &self.request.run, m, None)?;
                    if stream {
                        on_text(&out.text);
                    }
                    out
                }
                _ => engine.run_with(
                    &img,
                    &self.request.run,
                    if stream {
                        Some(&mut on_text as &mut dyn FnMut(&str))
                    } else {
                        None
                    },
                )?,
            };
            let mut lock = stdout.lock();
            match format {
                Format::Md => {
                    let _ = writeln!(lock);
                }
                Format::Txt => {
                    let _ = writeln!(lock, "{}", markdown::strip_refs(&out.text));
                }
                Format::Json => records.push(
                    job::batch::page_record(input, page, &self.request, &out)
                        .with_precision(engine.options().precision.name()),
                ),
            }
            if page.is_some() && format != Format::Json {
                let _ = lock.write_all(markdown::PAGE_SPLIT.as_bytes());
            }
        }
        if format == Format::Json {
            let text = match input.kind {
                InputKind::Image => records.first().map(serde_json::to_string_pretty),
                InputKind::Pdf => Some(serde_json::to_string_pretty(&DocumentJson {
                    schema_version: crate::output::json::SCHEMA_VERSION,
                    source: input.path.display().to_string(),
                    page_count: doc.page_count(),
                    pages: records,
                })),
            };
            if let Some(Ok(t)) = text {
                let _ = writeln!(stdout.lock(), "{t}");
            }
        }
        Ok(())
    }

    /// All inputs into `out`, skipping finished pages; failures are recorded and the batch goes on.
    fn run_batch(&self, out: &Path) -> anyhow::Result<()> {
        let batch = Batch {
            request: &self.request,
            layout: Layout::new(out, self.request.format),
            entries: &self.entries,
            pdf: self.pdf.loaded(),
            shard: self.shard,
            mosaic: self.mosaic,
        };
        let progress = Progress::new(batch.total_pages() as u64, self.quiet);
        let existed = out.is_dir();
        let engine = match batch.layout.prepare().and_then(|()| {
            if batch.needs_model() {
                self.load_engine().map(Some)
            } else {
                Ok(None)
            }
        }) {
            Ok(e) => e,
            Err(e) => {
                // Leave no trace of a run that produced nothing (only removes an empty folder).
                if !existed {
                    let _ = std::fs::remove_dir(out);
                }
                return Err(e.into());
            }
        };
        let summary = batch.run(engine.as_ref().map(|e| e as &dyn PageOcr), &progress)?;
        progress.finish();
        job::layout::write_json(&out.join(summary.file_name()), &summary)?;
        if !self.quiet {
            eprintln!("{}", summary.line());
        }
        if summary.inputs.failed > 0 {
            return Err(PartialFailure {
                failed: summary.inputs.failed,
                total: summary.inputs.total(),
            }
            .into());
        }
        Ok(())
    }
}
