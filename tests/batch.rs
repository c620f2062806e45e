//! Batched generation: pages decoded together (continuous batching through `BatchRunner`
//! and the staged `Engine` API) give each page exactly the ids it gets alone, and a job
//! batch with several pages decoding together writes what one page at a time writes.

mod common;
#[path = "support/minipdf.rs"]
mod minipdf;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{ids, mode_of};
use deepseek_ocr::engine::{BatchRunner, OcrOutput, PageJob, StopReason, Timings};
use deepseek_ocr::generate::{GenerateOptions, NgramGuard, Sampling};
use deepseek_ocr::input::image::load_image;
use deepseek_ocr::job::{
    self, Batch, BatchPage, BatchSize, BatchSummary, Entry, Format, JobRequest, Layout, PageOcr, PdfLoader, RawRequest,
    Reporter, Unreadable,
};
use deepseek_ocr::nn::{Precision, Taps};
use deepseek_ocr::{Engine, EngineOptions, Mode, RunOptions, Task};
use image::RgbImage;

/// One golden case as a page: image, options, the reference ids.
struct Golden {
    name: String,
    image: RgbImage,
    mode: Mode,
    prompt: String,
    greedy: Vec<u32>,
    hf: Vec<u32>,
    hf_size: usize,
}

fn goldens() -> Option<(std::path::PathBuf, Vec<Golden>)> {
    let shared = common::shared_dir()?;
    let cases = common::golden_cases(&shared)
        .into_iter()
        .map(|dir| {
            let case = common::Case::load(&dir);
            let file = case.json["input_image"]["file"].as_str().unwrap_or("input.png");
            Golden {
                name: case.name(),
                image: load_image(&dir.join(file), &Default::default()).unwrap(),
                mode: mode_of(&case),
                prompt: case.json["prompt"].as_str().unwrap().to_string(),
                greedy: ids(&case, "generated_ids"),
                hf: ids(&case, "hf_generate_ids"),
                hf_size: case.json["lm"]["hf_generate_kwargs"]["no_repeat_ngram_size"]
                    .as_u64()
                    .unwrap() as usize,
            }
        })
        .collect();
    Some((shared.join("golden/mini"), cases))
}

/// The mini model with f32 weights, the precision whose greedy ids are the reference's
/// (the default precision is the fastest one of this CPU).
fn f32_engine(mini: &Path) -> Engine {
    Engine::load(
        mini,
        EngineOptions {
            precision: Precision::F32,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn opts(g: &Golden, n: usize, ngram: NgramGuard) -> RunOptions {
    RunOptions {
        mode: g.mode,
        task: Task::Prompt(g.prompt.clone()),
        generate: GenerateOptions {
            max_new_tokens: n,
            sampling: Sampling::Greedy,
            ngram,
            ignore_eos: false,
        },
    }
}

/// The jobs of the mixed batch: every case, each with its full greedy length and again
/// truncated, half of them with the HF n-gram guard, so pages of every mode and of
/// different lengths share steps and finish at different times.
fn mixed_jobs(cases: &[Golden]) -> Vec<(usize, RunOptions)> {
    let mut jobs = Vec::new();
    for (i, g) in cases.iter().enumerate() {
        jobs.push((i, opts(g, g.greedy.len(), NgramGuard::Off)));
        let short = 3 + (7 * i) % (g.greedy.len() - 3);
        let guard = if i % 2 == 0 {
            NgramGuard::Hf { size: g.hf_size }
        } else {
            NgramGuard::Off
        };
        jobs.push((i, opts(g, short, guard)));
    }
    jobs
}

/// Runs `jobs` through a `BatchRunner` of `batch`, returning each job's ids and stop reason.
fn batched(engine: &Engine, cases: &[Golden], jobs: &[(usize, RunOptions)], batch: usize) -> BTreeMap<usize, Vec<u32>> {
    let mut got = BTreeMap::new();
    let mut runner = BatchRunner::new(engine, batch);
    let stats = runner
        .run(
            jobs.iter()
                .enumerate()
                .map(|(j, (i, o))| PageJob::new(j, cases[*i].image.clone(), o.clone())),
            |j, out, _| {
                got.insert(j, out?.token_ids);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(stats.pages, jobs.len());
    assert_eq!(stats.max_live, batch.min(jobs.len()), "the batch must fill up");
    // Every live page holds a cache, and the pool never holds more than the batch.
    assert!(
        stats.max_live <= stats.max_caches_held && stats.max_caches_held <= batch,
        "{} caches held at once ({} allocated in all) for batch {batch} with {} pages live",
        stats.max_caches_held,
        stats.caches_allocated,
        stats.max_live
    );
    got
}

fn single(engine: &Engine, cases: &[Golden], jobs: &[(usize, RunOptions)]) -> BTreeMap<usize, Vec<u32>> {
    jobs.iter()
        .enumerate()
        .map(|(j, (i, o))| (j, engine.run_with(&cases[*i].image, o, None).unwrap().token_ids))
        .collect()
}

#[test]
fn f32_batched_ids_equal_single_ids_on_every_golden_case() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let jobs = mixed_jobs(&cases);
    let alone = single(&engine, &cases, &jobs);
    // Alone, the full-length greedy runs are the reference's ids (as tests/engine.rs checks).
    for (j, (i, o)) in jobs.iter().enumerate() {
        let g = &cases[*i];
        let n = o.generate.max_new_tokens;
        let want = match o.generate.ngram {
            NgramGuard::Off => &g.greedy[..n],
            _ => &g.hf[..n],
        };
        assert_eq!(alone[&j], want, "{} alone ({n} ids, {:?})", g.name, o.generate.ngram);
    }
    for batch in [2, 3, 10] {
        let got = batched(&engine, &cases, &jobs, batch);
        for (j, (i, _)) in jobs.iter().enumerate() {
            assert_eq!(got[&j], alone[&j], "{}: job {j} in batch {batch}", cases[*i].name);
        }
    }
}

/// bf16 and int8: batched pages give the ids they give alone (the packed kernels compute
/// each row of a thin GEMM like a single-row product).
#[test]
fn fast_precisions_batched_ids_equal_single_ids() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    for precision in [Precision::Bf16, Precision::Int8] {
        let engine = Engine::load(
            &mini,
            EngineOptions {
                precision,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let jobs = mixed_jobs(&cases);
        let alone = single(&engine, &cases, &jobs);
        let got = batched(&engine, &cases, &jobs, 4);
        for (j, (i, _)) in jobs.iter().enumerate() {
            assert_eq!(got[&j], alone[&j], "{precision}: {} job {j}", cases[*i].name);
        }
    }
}

#[test]
fn a_cancelled_page_stops_and_the_others_are_unaffected() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let g = &cases[0];
    let o = opts(g, g.greedy.len(), NgramGuard::Off);
    let mut pieces = 0usize;
    let mut results = BTreeMap::new();
    let mut runner = BatchRunner::new(&engine, 3);
    let jobs = vec![
        PageJob::new(0, g.image.clone(), o.clone()),
        PageJob {
            tag: 1,
            image: g.image.clone(),
            opts: o.clone(),
            // The client "goes away" after its third piece of text.
            on_text: Some(Box::new(|_: &str| {
                pieces += 1;
                pieces < 3
            })),
        },
        PageJob::new(2, cases[1].image.clone(), opts(&cases[1], 25, NgramGuard::Off)),
    ];
    runner
        .run(jobs, |tag, out, _| {
            results.insert(tag, out?);
            Ok(())
        })
        .unwrap();
    assert_eq!(results[&0].token_ids, g.greedy);
    assert!(matches!(results[&0].stop, StopReason::Eos | StopReason::MaxNewTokens));
    assert_eq!(results[&1].stop, StopReason::Callback);
    assert!(results[&1].token_ids.len() < g.greedy.len());
    assert_eq!(results[&1].token_ids[..], g.greedy[..results[&1].token_ids.len()]);
    assert_eq!(results[&2].token_ids, cases[1].greedy);
}

#[test]
fn staged_api_steps_pages_of_different_lengths_together() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let engine = f32_engine(&mini);
    let (a, b) = (&cases[0], &cases[cases.len() - 1]);
    let mut pa = engine
        .admit(
            engine
                .prepare(&a.image, &opts(a, 25, NgramGuard::Off), &mut Taps::off())
                .unwrap(),
            None,
            None,
        )
        .unwrap();
    let mut pb = engine
        .admit(
            engine
                .prepare(&b.image, &opts(b, 9, NgramGuard::Off), &mut Taps::off())
                .unwrap(),
            None,
            None,
        )
        .unwrap();
    engine.prefill(&mut pa, &mut Taps::off()).unwrap();
    // `a` runs four steps alone before `b` joins: their caches now differ in length.
    for _ in 0..4 {
        assert_eq!(engine.step(&mut [&mut pa]).unwrap(), 1);
    }
    engine.prefill(&mut pb, &mut Taps::off()).unwrap();
    let mut steps = 0;
    while !(pa.is_finished() && pb.is_finished()) {
        steps += engine.step(&mut [&mut pa, &mut pb]).unwrap();
    }
    assert!(pa.sequence().cache().len() != pb.sequence().cache().len());
    let (oa, _) = engine.finish(pa).unwrap();
    let (ob, _) = engine.finish(pb).unwrap();
    assert_eq!(oa.token_ids, a.greedy);
    assert_eq!(ob.token_ids, b.greedy[..9]);
    assert_eq!(steps, (25 - 1 - 4) + (9 - 1));
}

/// The decode logits of every golden page, stepped alone and stepped together with the
/// others: bit for bit the same in every precision (a row of a batched step is computed as
/// a single-row step computes it; see `lm::rows`).
#[test]
fn batched_step_logits_are_bitwise_those_of_single_steps() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        let engine = Engine::load(
            &mini,
            EngineOptions {
                precision,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let start = |g: &Golden| {
            let prepared = engine
                .prepare(&g.image, &opts(g, 12, NgramGuard::Off), &mut Taps::off())
                .unwrap();
            let mut page = engine.admit(prepared, None, None).unwrap();
            page.sequence_mut().record_logits();
            engine.prefill(&mut page, &mut Taps::off()).unwrap();
            page
        };
        let bits = |page: &deepseek_ocr::engine::Page<'_>| -> Vec<Vec<u32>> {
            page.sequence()
                .recorded_logits()
                .iter()
                .map(|t| {
                    t.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                })
                .collect()
        };
        let mut alone = Vec::new();
        for g in &cases {
            let mut p = start(g);
            while !p.is_finished() {
                engine.step(&mut [&mut p]).unwrap();
            }
            alone.push(bits(&p));
        }
        let mut pages: Vec<_> = cases.iter().map(start).collect();
        while pages.iter().any(|p| !p.is_finished()) {
            let mut refs: Vec<&mut deepseek_ocr::engine::Page<'_>> = pages.iter_mut().collect();
            engine.step(&mut refs).unwrap();
        }
        for ((g, p), want) in cases.iter().zip(&pages).zip(&alone) {
            let got = bits(p);
            assert!(got.len() > 1, "{}: logits recorded", g.name);
            assert!(
                got == *want,
                "{precision}: {}: batched logits differ from the page alone",
                g.name
            );
        }
    }
}

// ------------------------------------------------------------------ through the job layer

/// pdfium is process-global: the tests that render PDFs run one at a time.
static PDFIUM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A reporter that remembers what it was told.
#[derive(Default)]
struct Recorder {
    lines: RefCell<Vec<String>>,
    finished: Cell<usize>,
    working: Cell<usize>,
}

impl Reporter for Recorder {
    fn line(&self, msg: &str) {
        self.lines.borrow_mut().push(msg.to_string());
    }
    fn working(&self, _label: &str, _chars: usize) {
        self.working.set(self.working.get() + 1);
    }
    fn page_finished(&self) {
        self.finished.set(self.finished.get() + 1);
    }
}

/// Runs a job over `inputs` into `out` as the CLI does (unreadable inputs stay as failures).
fn run_job(ocr: &dyn PageOcr, inputs: &[PathBuf], out: &Path, raw: &RawRequest<'_>) -> (BatchSummary, Recorder) {
    let request = JobRequest::parse(raw).unwrap();
    let mut pdf = PdfLoader::new(None);
    let mut entries: Vec<Entry> = Vec::new();
    for p in inputs {
        entries.push(match job::inputs::inspect(p, request.pages.as_ref(), &mut pdf) {
            Ok(i) => Ok(i),
            Err(e) => Err(Unreadable::new(p.clone(), e)),
        });
    }
    let batch = Batch {
        request: &request,
        layout: Layout::new(out, request.format),
        entries: &entries,
        pdf: pdf.loaded(),
        shard: None,
        mosaic: None,
    };
    batch.layout.prepare().unwrap();
    let reporter = Recorder::default();
    let summary = batch.run(Some(ocr), &reporter).unwrap();
    (summary, reporter)
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, d: &Path, v: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, v);
            } else {
                v.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// A JSON file without its wall-clock parts (`timings`, `seconds`).
fn json_without_times(p: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("timings");
                m.remove("seconds");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// Both folders hold the same files with the same contents (JSON up to timings).
fn assert_same_outputs(a: &Path, b: &Path) {
    let (fa, fb) = (files_under(a), files_under(b));
    assert_eq!(fa, fb, "the same files");
    for f in &fa {
        if f.extension().is_some_and(|x| x == "json") {
            assert_eq!(
                json_without_times(&a.join(f)),
                json_without_times(&b.join(f)),
                "{}",
                f.display()
            );
        } else {
            assert!(
                std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                "{}",
                f.display()
            );
        }
    }
}

fn fnv(image: &RgbImage) -> u64 {
    image.as_raw().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A scripted model: a page's text and ids follow from its pixels, a page whose corner
/// pixel is pure red fails, and `ocr_batch` (when `batched`) keeps up to `batch` pages in
/// flight and finishes the newest first, so pages end out of order.
struct Scripted {
    batched: bool,
    /// Most pages handed out and not yet finished.
    most_in_flight: Cell<usize>,
    /// Pages handed out through `ocr_batch`.
    batched_pages: Cell<usize>,
}

impl Scripted {
    fn new(batched: bool) -> Self {
        Self {
            batched,
            most_in_flight: Cell::new(0),
            batched_pages: Cell::new(0),
        }
    }
}

fn scripted_output(image: &RgbImage) -> deepseek_ocr::Result<OcrOutput> {
    let (w, h) = image.dimensions();
    let p = image.get_pixel(0, 0).0;
    if p == [255, 0, 0] {
        return Err(deepseek_ocr::Error::request("scripted failure", "the page is red"));
    }
    let text = format!(
        "<|ref|>title<|/ref|><|det|>[[100, 100, 600, 300]]<|/det|>\n# Page {w}x{h}\n\ncolour {} {} {} sum {}",
        p[0],
        p[1],
        p[2],
        fnv(image) % 1000
    );
    Ok(OcrOutput {
        text,
        token_ids: vec![w, h, p[0] as u32, p[1] as u32, p[2] as u32],
        prompt_tokens: 10,
        image_tokens: 8,
        image_size: (w, h),
        tile_grid: (1, 1),
        stop: StopReason::Eos,
        timings: Timings::default(),
        kv_cache_bytes: 0,
    })
}

impl PageOcr for Scripted {
    fn ocr_page(
        &self,
        image: &RgbImage,
        _run: &RunOptions,
        on_text: Option<&mut dyn FnMut(&str)>,
    ) -> deepseek_ocr::Result<OcrOutput> {
        let out = scripted_output(image)?;
        if let Some(f) = on_text {
            f(&out.text);
        }
        Ok(out)
    }

    fn ocr_batch<'a>(
        &'a self,
        _run: &RunOptions,
        batch: usize,
        next: &mut dyn FnMut() -> Option<BatchPage<'a>>,
        done: &mut dyn FnMut(usize, deepseek_ocr::Result<OcrOutput>) -> deepseek_ocr::Result<()>,
    ) -> deepseek_ocr::Result<()> {
        assert!(self.batched, "one page at a time must not come here");
        let mut live: Vec<BatchPage<'a>> = Vec::new();
        let mut exhausted = false;
        loop {
            while live.len() < batch && !exhausted {
                match next() {
                    Some(p) => {
                        self.batched_pages.set(self.batched_pages.get() + 1);
                        live.push(p);
                    }
                    None => exhausted = true,
                }
            }
            self.most_in_flight.set(self.most_in_flight.get().max(live.len()));
            let Some(mut p) = live.pop() else {
                return Ok(());
            };
            let out = scripted_output(&p.image);
            if let (Ok(o), Some(f)) = (&out, p.on_text.as_mut()) {
                f(&o.text);
            }
            done(p.id, out)?;
        }
    }
}

fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, image::Rgb(c));
    for x in 0..w / 2 {
        img.put_pixel(x, h / 2, image::Rgb([0, 0, 0]));
    }
    img
}

/// Images (one of them fails in the model), an unreadable file and, with libpdfium, a
/// four-page PDF: the inputs of the scripted batch tests.
fn scripted_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (name, w, h, c) in [
        ("a.png", 64, 48, [20, 40, 200]),
        ("b.png", 50, 70, [255, 0, 0]),
        ("c.png", 80, 30, [10, 200, 30]),
        ("e.png", 33, 33, [90, 90, 90]),
    ] {
        let p = dir.join(name);
        solid(w, h, c).save(&p).unwrap();
        v.push(p);
    }
    let bad = dir.join("d.png");
    std::fs::write(&bad, b"").unwrap();
    v.insert(3, bad);
    if deepseek_ocr::input::pdf::PdfLibrary::load(None).is_ok() {
        let pdf = dir.join("f.pdf");
        std::fs::write(&pdf, minipdf::make_pdf(4, false)).unwrap();
        v.push(pdf);
    } else {
        eprintln!("\n!!!!! libpdfium not found: the scripted batch runs without a PDF !!!!!\n");
    }
    v
}

#[test]
fn job_batches_write_what_one_page_at_a_time_writes() {
    let _pdfium = PDFIUM.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let inputs_dir = tmp.path().join("in");
    std::fs::create_dir(&inputs_dir).unwrap();
    let inputs = scripted_inputs(&inputs_dir);
    let pages = inputs.len()
        + if inputs.iter().any(|p| p.ends_with("f.pdf")) {
            3
        } else {
            0
        };
    let raw = |batch| RawRequest {
        mode: "tiny",
        dpi: 36.0,
        batch,
        ..Default::default()
    };
    let one = tmp.path().join("one");
    let (s1, r1) = run_job(&Scripted::new(false), &inputs, &one, &raw("1"));
    assert_eq!((s1.pages.done, s1.pages.failed), (pages - 2, 2), "{s1:?}");
    assert!(one.join("b.error.json").is_file() && one.join("d.error.json").is_file());
    for batch in ["2", "3", "16"] {
        let n: usize = batch.parse().unwrap();
        let out = tmp.path().join(format!("batch{batch}"));
        let ocr = Scripted::new(true);
        let (s, r) = run_job(&ocr, &inputs, &out, &raw(batch));
        assert_same_outputs(&one, &out);
        assert_eq!(
            serde_json::to_value(&s.items).unwrap(),
            serde_json::to_value(&s1.items).unwrap()
        );
        assert_eq!((s.inputs, s.pages, s.tokens), (s1.inputs, s1.pages, s1.tokens));
        assert_eq!(r.finished.get(), pages, "one page_finished per page");
        assert!(r.working.get() >= r1.working.get());
        let (mut l, mut l1) = (r.lines.borrow().clone(), r1.lines.borrow().clone());
        l.sort();
        l1.sort();
        assert_eq!(l, l1, "the same lines, in the order pages end");
        // The model saw every page that loads, and never more than `batch` at once.
        assert_eq!(ocr.batched_pages.get(), pages - 1);
        assert_eq!(ocr.most_in_flight.get(), n.min(pages - 1));
    }

    // Resume: finished pages are skipped, the rest are redone the same way.
    let out = tmp.path().join("batch2");
    std::fs::remove_file(out.join("c.json")).unwrap();
    let pdf = out.join("f/page_0002.json").is_file();
    if pdf {
        std::fs::remove_file(out.join("f/page_0002.json")).unwrap();
        std::fs::remove_file(out.join("f.json")).unwrap();
    }
    let ocr = Scripted::new(true);
    let (s, r) = run_job(&ocr, &inputs, &out, &raw("2"));
    assert_same_outputs(&one, &out);
    // Redone: c, b (it failed), and page 2 of the PDF.
    assert_eq!(ocr.batched_pages.get(), 2 + pdf as usize);
    assert_eq!(s.pages.done, 1 + pdf as usize, "{s:?}");
    assert_eq!(s.pages.failed, 2);
    assert_eq!(r.finished.get(), pages);
    assert!(r
        .lines
        .borrow()
        .iter()
        .any(|l| l.contains("a.png: skipped (already done)")));
}

#[test]
fn bad_batch_sizes_are_request_errors() {
    for bad in ["0", "-1", "two", "", "1.5"] {
        let e = JobRequest::parse(&RawRequest {
            batch: bad,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.kind(), deepseek_ocr::error::ErrorKind::Request, "{bad}");
        assert!(e.to_string().contains("batch size"), "{bad}: {e}");
    }
    for (good, want) in [
        ("1", BatchSize::Pages(1)),
        ("4", BatchSize::Pages(4)),
        ("auto", BatchSize::Auto),
    ] {
        let r = JobRequest::parse(&RawRequest {
            batch: good,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.batch, want);
    }
}

/// The engine behind the job layer, recording each page's generated ids by its pixels.
struct Recording<'e> {
    engine: &'e Engine,
    ids: RefCell<BTreeMap<u64, Vec<u32>>>,
    batched: Cell<usize>,
}

impl PageOcr for Recording<'_> {
    fn ocr_page(
        &self,
        image: &RgbImage,
        run: &RunOptions,
        on_text: Option<&mut dyn FnMut(&str)>,
    ) -> deepseek_ocr::Result<OcrOutput> {
        let out = self.engine.ocr_page(image, run, on_text)?;
        self.ids.borrow_mut().insert(fnv(image), out.token_ids.clone());
        Ok(out)
    }

    fn precision(&self) -> Option<Precision> {
        self.engine.precision()
    }

    fn ocr_batch<'a>(
        &'a self,
        run: &RunOptions,
        batch: usize,
        next: &mut dyn FnMut() -> Option<BatchPage<'a>>,
        done: &mut dyn FnMut(usize, deepseek_ocr::Result<OcrOutput>) -> deepseek_ocr::Result<()>,
    ) -> deepseek_ocr::Result<()> {
        let hashes = RefCell::new(BTreeMap::new());
        let mut next = || {
            let p = next()?;
            self.batched.set(self.batched.get() + 1);
            hashes.borrow_mut().insert(p.id, fnv(&p.image));
            Some(p)
        };
        let mut done = |id: usize, out: deepseek_ocr::Result<OcrOutput>| {
            if let Ok(o) = &out {
                self.ids.borrow_mut().insert(hashes.borrow()[&id], o.token_ids.clone());
            }
            done(id, out)
        };
        self.engine.ocr_batch(run, batch, &mut next, &mut done)
    }
}

#[test]
fn golden_pages_through_the_job_layer_batch_2_equal_batch_1() {
    let Some((mini, cases)) = goldens() else {
        eprintln!("skipped: no shared dir");
        return;
    };
    let _pdfium = PDFIUM.lock().unwrap_or_else(|e| e.into_inner());
    let engine = f32_engine(&mini);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let mut inputs = Vec::new();
    for g in &cases {
        let p = dir.join(format!("{}.png", g.name));
        g.image.save(&p).unwrap();
        inputs.push(p);
    }
    assert!(inputs.len() >= 3);
    if deepseek_ocr::input::pdf::PdfLibrary::load(None).is_ok() {
        let pdf = dir.join("letters.pdf");
        std::fs::write(&pdf, minipdf::make_pdf(3, false)).unwrap();
        inputs.push(pdf);
    }
    fn raw(batch: &str) -> RawRequest<'_> {
        RawRequest {
            mode: "tiny",
            max_tokens: Some(40),
            dpi: 72.0,
            format: Format::Json,
            batch,
            ..Default::default()
        }
    }
    let run = |batch: &str, out: &Path| {
        let ocr = Recording {
            engine: &engine,
            ids: RefCell::new(BTreeMap::new()),
            batched: Cell::new(0),
        };
        let (s, _) = run_job(&ocr, &inputs, out, &raw(batch));
        assert_eq!(s.pages.failed, 0, "{s:?}");
        (ocr.ids.into_inner(), ocr.batched.get(), s)
    };
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let (ids1, batched1, s1) = run("1", &one);
    let (ids2, batched2, s2) = run("2", &two);
    assert_eq!(batched1, 0, "batch 1 runs one page at a time");
    assert_eq!(
        batched2, s2.pages.done,
        "batch 2 feeds every page through the batched entry point"
    );
    assert_eq!(ids2, ids1, "the same generated ids for every page");
    assert!(ids1.values().any(|v| v.len() > 1));
    assert_eq!((s1.pages, s1.tokens), (s2.pages, s2.tokens));
    assert_same_outputs(&one, &two);
}
