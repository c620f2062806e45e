//! The `dsocr ocr` command as a user runs it: the built binary on the golden mini model.
//!
//! Tests marked "engine" run the whole pipeline and expect the text of the reference
//! (golden `hf_generate_ids` decoded with the mini tokenizer). The error tests check the
//! contract of every failure: non-zero exit, a single `error: …; hint: …` line, and no
//! output file left behind.

mod common;
#[path = "support/minipdf.rs"]
mod minipdf;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dsocr");

fn dsocr(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dsocr")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mini(shared: &Path) -> String {
    shared.join("golden/mini").display().to_string()
}

fn case_png(shared: &Path) -> PathBuf {
    shared.join("golden/mini/portrait_tiny/input.png")
}

/// The expected text of portrait_tiny in tiny mode with 25 new tokens: the reference's
/// `generate()` ids decoded with special tokens kept, EOS dropped, trimmed.
fn expected_text(shared: &Path) -> String {
    let case = common::Case::load(&shared.join("golden/mini/portrait_tiny"));
    let ids: Vec<u32> = case.json["lm"]["hf_generate_ids"]
        .as_array()
        .expect("hf_generate_ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .filter(|&id| id != 1)
        .collect();
    let tok = tokenizers::Tokenizer::from_file(shared.join("golden/mini/tokenizer.json")).expect("mini tokenizer");
    tok.decode(&ids, false).expect("decode").trim().to_string()
}

/// Arguments that make the mini pipeline reproduce the golden case.
fn golden_args(shared: &Path) -> Vec<String> {
    [
        "--model",
        &mini(shared),
        "--mode",
        "tiny",
        "--max-tokens",
        "25",
        "--precision",
        "f32",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_ok(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = dsocr(&refs);
    assert!(o.status.success(), "dsocr {args:?} failed: {}", stderr(&o));
    o
}

/// Asserts the failure contract; returns the error line.
fn assert_clean_failure(o: &Output, out_dir: Option<&Path>, what: &str) -> String {
    assert!(!o.status.success(), "{what}: should fail");
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one error line, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    assert!(lines[0].contains("hint: "), "{what}: no hint in: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    if let Some(dir) = out_dir {
        let files = all_files(dir);
        assert!(files.is_empty(), "{what}: partial output left: {files:?}");
    }
    lines[0].to_string()
}

/// Asserts the keep-going contract for a batch whose only input is bad: exit code 7, one
/// `NAME.error.json` (kind, message naming the problem, hint, stage) and `batch.json`
/// counting it, and no results.
fn assert_recorded_failure(o: &Output, out: &Path, name: &str, needle: &str) {
    assert_eq!(o.status.code(), Some(7), "{name}: {}", stderr(o));
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    let rec = read_json(&out.join(format!("{name}.error.json")));
    assert_eq!(rec["kind"], "input", "{rec}");
    assert_eq!(rec["stage"], "inspect", "{rec}");
    assert!(rec["message"].as_str().unwrap().contains(needle), "{rec}");
    assert!(!rec["hint"].as_str().unwrap().is_empty(), "{rec}");
    let batch = read_json(&out.join("batch.json"));
    assert_eq!(batch["inputs"]["failed"], 1, "{batch}");
    let names: Vec<String> = all_files(out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["batch.json".to_string(), format!("{name}.error.json")]);
    assert!(
        err.lines().last().unwrap().starts_with("error: 1 of 1 inputs failed"),
        "{err}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(all_files(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn pdfium_present() -> bool {
    let dir = std::env::var_os("DSOCR_PDFIUM_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/deepseek-ocr/pdfium")));
    let found = dir.is_some_and(|d| d.join("libpdfium.so").is_file() || d.join("libpdfium.dylib").is_file());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "libpdfium is required in CI (run scripts/install-pdfium.sh)"
        );
        eprintln!("\n!!!!! SKIPPED: libpdfium not installed (run scripts/install-pdfium.sh) !!!!!\n");
    }
    found
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------- no engine needed

#[test]
fn version_and_help() {
    let o = dsocr(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("dsocr "));
    let o = dsocr(&["ocr", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && help.contains("Examples:") && help.contains("--pages"),
        "{help}"
    );
}

#[test]
fn missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = dsocr(&["ocr", "/definitely/not/here.png", "--out", out.to_str().unwrap()]);
    let line = assert_clean_failure(&o, Some(&out), "missing file");
    assert!(line.contains("no such file"), "{line}");
    assert!(!out.exists());
}

#[test]
fn empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not an image").unwrap();
    let out = tmp.path().join("out");
    let o = dsocr(&["ocr", empty.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let line = assert_clean_failure(&o, Some(&out), "empty directory");
    assert!(line.contains("no images or PDFs"), "{line}");
}

#[test]
fn zero_byte_and_corrupt_images() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let zero = tmp.path().join("zero.png");
    std::fs::write(&zero, b"").unwrap();
    let corrupt = tmp.path().join("corrupt.png");
    let mut bytes = std::fs::read(case_png(Path::new(
        &std::env::var("DSOCR_SHARED_DIR").unwrap_or_else(|_| "../shared".into()),
    )))
    .unwrap_or_else(|_| b"\x89PNG\r\n\x1a\n".to_vec());
    bytes.truncate(16);
    std::fs::write(&corrupt, &bytes).unwrap();
    let junk = tmp.path().join("junk.jpg");
    std::fs::write(&junk, b"this is text, not a JPEG").unwrap();
    for p in [&zero, &corrupt, &junk] {
        // Alone (streamed to stdout): one clean error line, exit code 3 (bad input).
        let o = dsocr(&["ocr", p.to_str().unwrap()]);
        let line = assert_clean_failure(&o, None, &p.display().to_string());
        assert!(line.contains("not a readable image"), "{line}");
        assert_eq!(o.status.code(), Some(3));
        // In a batch: recorded, and the batch goes on (issue 15).
        let o = dsocr(&["ocr", p.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let name = p.file_stem().unwrap().to_str().unwrap();
        assert_recorded_failure(&o, &out, name, "not a readable image");
    }
}

#[test]
fn corrupt_and_encrypted_pdfs() {
    if !pdfium_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let corrupt = tmp.path().join("corrupt.pdf");
    std::fs::write(&corrupt, minipdf::corrupt_pdf()).unwrap();
    let locked = tmp.path().join("locked.pdf");
    std::fs::write(&locked, minipdf::make_pdf(2, true)).unwrap();
    let o = dsocr(&["ocr", corrupt.to_str().unwrap()]);
    assert!(assert_clean_failure(&o, None, "corrupt pdf").contains("not a readable PDF"));
    let o = dsocr(&["ocr", locked.to_str().unwrap()]);
    assert!(assert_clean_failure(&o, None, "encrypted pdf").contains("encrypted"));
    let o = dsocr(&["ocr", corrupt.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_recorded_failure(&o, &out, "corrupt", "not a readable PDF");
    let o = dsocr(&["ocr", locked.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_recorded_failure(&o, &out, "locked", "encrypted");
}

#[test]
fn page_range_outside_the_document() {
    if !pdfium_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pdf = tmp.path().join("two.pdf");
    std::fs::write(&pdf, minipdf::make_pdf(2, false)).unwrap();
    let o = dsocr(&["ocr", pdf.to_str().unwrap(), "--pages", "1-3"]);
    let line = assert_clean_failure(&o, None, "page range");
    assert!(line.contains("outside the document"), "{line}");
    let o = dsocr(&[
        "ocr",
        pdf.to_str().unwrap(),
        "--pages",
        "1-3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_recorded_failure(&o, &out, "two", "outside the document");
    let o = dsocr(&[
        "ocr",
        pdf.to_str().unwrap(),
        "--pages",
        "2-1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, Some(&out), "backwards range");
}

#[test]
fn unwritable_output_folder() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, even by root.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let o = dsocr(&[
        "ocr",
        case_png(&shared).to_str().unwrap(),
        "--model",
        &mini(&shared),
        "--out",
        out.to_str().unwrap(),
    ]);
    let line = assert_clean_failure(&o, None, "unwritable out");
    assert!(line.contains("output folder"), "{line}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"x");
}

#[test]
fn unknown_mode_and_task() {
    let shared = shared_or_skip!();
    let img = case_png(&shared);
    let o = dsocr(&["ocr", img.to_str().unwrap(), "--mode", "huge"]);
    assert!(assert_clean_failure(&o, None, "mode").contains("unknown mode"));
    let o = dsocr(&["ocr", img.to_str().unwrap(), "--task", "summarise"]);
    assert!(assert_clean_failure(&o, None, "task").contains("unknown task"));
    let o = dsocr(&["ocr", img.to_str().unwrap(), "--task", "prompt=no image tag"]);
    assert!(assert_clean_failure(&o, None, "prompt").contains("<image>"));
    let o = dsocr(&["ocr", img.to_str().unwrap(), "--device", "tpu"]);
    assert!(assert_clean_failure(&o, None, "device").contains("unknown device"));
}

#[test]
fn bad_batch_size() {
    let shared = shared_or_skip!();
    let img = case_png(&shared);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("res");
    for bad in ["0", "lots", "2.5"] {
        let o = dsocr(&[
            "ocr",
            img.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch",
            bad,
        ]);
        let line = assert_clean_failure(&o, Some(&out), "batch");
        assert!(line.contains(&format!("batch size `{bad}`")), "{line}");
        assert!(!out.exists(), "no output folder for a request error");
    }
}

#[test]
fn incomplete_model_folder() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(shared.join("golden/mini/config.json"), model.join("config.json")).unwrap();
    std::fs::copy(shared.join("golden/mini/tokenizer.json"), model.join("tokenizer.json")).unwrap();
    let out = tmp.path().join("out");
    let o = dsocr(&[
        "ocr",
        case_png(&shared).to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let line = assert_clean_failure(&o, Some(&out), "no weights");
    assert!(line.contains("safetensors"), "{line}");
    assert!(!out.exists(), "the output folder created by a failed run is removed");
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let o = dsocr(&[
        "ocr",
        case_png(&shared).to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(assert_clean_failure(&o, None, "no tokenizer").contains("tokenizer.json is missing"));
}

#[test]
fn hub_model_offline_and_not_cached() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args([
            "ocr",
            case_png(&shared).to_str().unwrap(),
            "--model",
            "someone/not-cached-model",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", tmp.path())
        .output()
        .unwrap();
    let line = assert_clean_failure(&o, None, "offline hub");
    assert!(
        line.contains("not in the Hugging Face cache") && line.contains("HF_HUB_OFFLINE"),
        "{line}"
    );
}

#[test]
fn several_inputs_need_out() {
    let shared = shared_or_skip!();
    let a = shared.join("golden/mini/portrait_tiny/input.png");
    let b = shared.join("golden/mini/wide_gundam/input.png");
    let o = dsocr(&["ocr", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(assert_clean_failure(&o, None, "two inputs").contains("--out"));
    // Same stem in two folders would overwrite each other's results.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = dsocr(&[
        "ocr",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(assert_clean_failure(&o, Some(&out), "same names").contains("same name"));
}

// ---------------------------------------------------------------- engine

#[test]
fn image_to_stdout() {
    let shared = shared_or_skip!();
    let mut args = vec!["ocr".to_string(), case_png(&shared).display().to_string()];
    args.extend(golden_args(&shared));
    let o = run_ok(&args);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), expected_text(&shared));
    assert!(stderr(&o).is_empty(), "--quiet prints nothing: {}", stderr(&o));
}

#[test]
fn image_to_out_folder() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("res");
    let img = tmp.path().join("page.png");
    std::fs::copy(case_png(&shared), &img).unwrap();
    let mut args = vec![
        "ocr".to_string(),
        img.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(golden_args(&shared));
    let o = run_ok(&args);
    assert!(o.stdout.is_empty(), "nothing on stdout with --out");
    let expected = expected_text(&shared);
    let j = read_json(&out.join("page.json"));
    assert_eq!(j["text"].as_str().unwrap(), expected);
    assert_eq!(j["width"], 850);
    assert_eq!(j["height"], 1100);
    assert_eq!(j["mode"], "tiny");
    assert_eq!(j["tokens"]["generated"], 25);
    assert_eq!(j["tokens"]["image"], 73);
    assert_eq!(j["tokens"]["prompt"], 82);
    assert!(j["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    let md = std::fs::read_to_string(out.join("page.md")).unwrap();
    assert_eq!(
        md,
        deepseek_ocr::output::markdown::rewrite(&expected, "page_images/", false).markdown
    );
    let boxes = image::open(out.join("page.boxes.png")).unwrap();
    assert_eq!((boxes.width(), boxes.height()), (850, 1100));
}

#[test]
fn multi_page_pdf() {
    let shared = shared_or_skip!();
    if !pdfium_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("res");
    let pdf = tmp.path().join("doc.pdf");
    std::fs::write(&pdf, minipdf::make_pdf(3, false)).unwrap();
    let mut args = vec![
        "ocr".to_string(),
        pdf.display().to_string(),
        "--pages".into(),
        "1,3".into(),
        "--dpi".into(),
        "72".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(golden_args(&shared));
    run_ok(&args);
    for p in ["page_0001", "page_0003"] {
        let j = read_json(&out.join("doc").join(format!("{p}.json")));
        assert_eq!(
            (j["width"].as_u64(), j["height"].as_u64()),
            (Some(612), Some(792)),
            "72 dpi page size"
        );
        assert!(out.join("doc").join(format!("{p}.md")).is_file());
        assert!(out.join("doc").join(format!("{p}.boxes.png")).is_file());
    }
    assert!(!out.join("doc/page_0002.json").exists(), "page 2 was not selected");
    let combined = read_json(&out.join("doc.json"));
    assert_eq!(combined["page_count"], 3);
    let pages: Vec<u64> = combined["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["page"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, [1, 3]);
    let md = std::fs::read_to_string(out.join("doc.md")).unwrap();
    assert_eq!(md.matches("<--- Page Split --->").count(), 2);
}

#[test]
fn folder_input() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    std::fs::copy(case_png(&shared), inp.join("b.png")).unwrap();
    std::fs::copy(case_png(&shared), inp.join("a.png")).unwrap();
    std::fs::write(inp.join("readme.txt"), "ignored").unwrap();
    let out = tmp.path().join("res");
    let mut args = vec![
        "ocr".to_string(),
        inp.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(golden_args(&shared));
    run_ok(&args);
    let names: Vec<String> = all_files(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.boxes.png", "a.json", "b.boxes.png", "b.json", "batch.json"]);
    assert_eq!(
        read_json(&out.join("a.json"))["text"].as_str().unwrap(),
        expected_text(&shared)
    );
}

/// `--batch 2` and `--batch auto` write what `--batch 1` writes (JSON up to the timings).
#[test]
fn batched_folder_equals_one_page_at_a_time() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    for case in ["portrait_base", "portrait_tiny", "wide_gundam"] {
        std::fs::copy(
            shared.join("golden/mini").join(case).join("input.png"),
            inp.join(format!("{case}.png")),
        )
        .unwrap();
    }
    let run = |batch: &str| {
        let out = tmp.path().join(format!("res-{batch}"));
        let mut args = vec![
            "ocr".to_string(),
            inp.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--format".into(),
            "json".into(),
            "--batch".into(),
            batch.into(),
        ];
        args.extend(golden_args(&shared));
        run_ok(&args);
        out
    };
    let page = |out: &Path, case: &str| {
        let mut j = read_json(&out.join(format!("{case}.json")));
        j.as_object_mut().unwrap().remove("timings");
        j
    };
    let one = run("1");
    for batch in ["2", "auto"] {
        let out = run(batch);
        for case in ["portrait_base", "portrait_tiny", "wide_gundam"] {
            assert_eq!(page(&out, case), page(&one, case), "--batch {batch}: {case}");
        }
        assert_eq!(read_json(&out.join("batch.json"))["pages"]["done"], 3);
    }
    assert_eq!(
        read_json(&one.join("portrait_tiny.json"))["text"].as_str().unwrap(),
        expected_text(&shared)
    );
}

#[test]
fn resumed_batch_after_kill() {
    let shared = shared_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::copy(case_png(&shared), inp.join(format!("{n}.png"))).unwrap();
    }
    let out = tmp.path().join("res");
    let mut args = vec![
        "ocr".to_string(),
        inp.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(golden_args(&shared));
    args.retain(|a| a != "--quiet");

    // First run: kill it as soon as the first input's results are complete.
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = out.join("a.json");
    let t0 = Instant::now();
    while !first.exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "first result never appeared");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dsocr exited early ({status}) before writing a.json");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first_bytes = std::fs::read(&first).unwrap();
    // Whatever exists after the kill is complete: every JSON parses.
    for p in all_files(&out) {
        if p.extension().is_some_and(|e| e == "json") && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            read_json(&p);
        }
    }

    // Second run: `a` is skipped, the rest completed.
    let o = run_ok(&args);
    let err = stderr(&o);
    assert!(err.contains("a.png: skipped (already done)"), "{err}");
    assert_eq!(std::fs::read(&first).unwrap(), first_bytes, "a.json was rewritten");
    let expected = expected_text(&shared);
    for n in ["a", "b", "c"] {
        assert_eq!(
            read_json(&out.join(format!("{n}.json")))["text"].as_str().unwrap(),
            expected
        );
        assert!(out.join(format!("{n}.md")).is_file() && out.join(format!("{n}.boxes.png")).is_file());
    }
    let temps: Vec<PathBuf> = all_files(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".dsocr-tmp"))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");

    // Third run: nothing to do, and it says so without loading the model.
    let o = run_ok(&args);
    assert_eq!(
        stderr(&o).matches("skipped (already done)").count(),
        3,
        "{}",
        stderr(&o)
    );

    // Asking for another mode still skips, but says how the results were made.
    let mut other = args.clone();
    let i = other.iter().position(|a| a == "tiny").unwrap();
    other[i] = "base".into();
    let o = run_ok(&other);
    assert_eq!(
        stderr(&o).matches("made with --mode tiny --task markdown").count(),
        3,
        "{}",
        stderr(&o)
    );
}
