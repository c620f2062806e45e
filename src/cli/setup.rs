//! `dsocr setup pdfium`: installs libpdfium for PDF input on a fresh install, without
//! Python or the repository's scripts.
//!
//! The library is taken from the `pypdfium2` wheel for this platform on the Python
//! package index: the index's JSON API names the latest release's wheels with their
//! sha256; the wheel is downloaded, checked against that digest, and its
//! `pypdfium2_raw/libpdfium.*` is written (atomically) into the folder the PDF loader
//! searches: `$DSOCR_PDFIUM_DIR`, else `~/.cache/deepseek-ocr/pdfium`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::input::pdf::PdfLibrary;
use crate::output::atomic;

/// The package's metadata in the index's JSON API (overridable with `DSOCR_PYPI_JSON_URL`,
/// e.g. for a mirror).
const INDEX_JSON_URL: &str = "https://pypi.org/pypi/pypdfium2/json";

/// Largest wheel accepted (the real ones are a few MB).
const MAX_WHEEL_BYTES: u64 = 200 << 20;

/// `dsocr setup ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Download libpdfium (from the pypdfium2 wheel, sha256-checked) for PDF input.
    Pdfium(PdfiumArgs),
}

/// Arguments of `dsocr setup pdfium`.
#[derive(Debug, clap::Args)]
pub struct PdfiumArgs {
    /// Install here instead of $DSOCR_PDFIUM_DIR or ~/.cache/deepseek-ocr/pdfium.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Download again even when the library is already installed.
    #[arg(long)]
    pub force: bool,
}

/// Runs `dsocr setup`.
pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<()> {
    match cmd {
        Command::Pdfium(a) => pdfium(a, quiet),
    }
}

/// The platform library file name.
fn lib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libpdfium.dylib"
    } else if cfg!(target_os = "windows") {
        "pdfium.dll"
    } else {
        "libpdfium.so"
    }
}

/// Whether a wheel file name is for this platform.
pub fn wheel_matches_platform(file: &str) -> bool {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" => {
            let a = if arch == "x86_64" { "x86_64" } else { "aarch64" };
            file.contains("manylinux") && file.contains(a)
        }
        "macos" => file.contains("macosx") && file.contains(if arch == "aarch64" { "arm64" } else { "x86_64" }),
        "windows" => file.contains(if arch == "aarch64" { "win_arm64" } else { "win_amd64" }),
        _ => false,
    }
}

fn default_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("DSOCR_PDFIUM_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set; hint: pass --dir DIR")?;
    Ok(PathBuf::from(home).join(".cache/deepseek-ocr/pdfium"))
}

fn offline() -> bool {
    crate::job::model_source::offline()
}

fn pdfium(args: PdfiumArgs, quiet: bool) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => default_dir()?,
    };
    let target = dir.join(lib_name());
    if target.is_file() && !args.force {
        if !quiet {
            eprintln!(
                "libpdfium already installed: {} (--force downloads it again)",
                target.display()
            );
        }
        return Ok(());
    }
    if offline() {
        // A request the environment forbids: exit code 2, with the message and hint apart.
        return Err(crate::error::Error::request(
            "cannot download libpdfium: HF_HUB_OFFLINE is set",
            format!(
                "rerun with network access, or copy {} into {} by hand",
                lib_name(),
                dir.display()
            ),
        )
        .into());
    }
    let url = std::env::var("DSOCR_PYPI_JSON_URL").unwrap_or_else(|_| INDEX_JSON_URL.to_string());
    let no_network = |e: ureq::Error| {
        anyhow::anyhow!(
            "cannot reach the Python package index ({e}); hint: check the network connection (or a proxy), \
             or copy {} into {} by hand",
            lib_name(),
            dir.display()
        )
    };
    let meta: serde_json::Value = ureq::get(&url)
        .call()
        .map_err(no_network)?
        .into_json()
        .context("the package index answered with something that is not JSON")?;
    let (file, wheel_url, sha256) = pick_wheel(&meta)?;
    // An index (or a mirror) may give the wheel's address relative to the JSON's.
    let wheel_url = url::Url::parse(&url)
        .and_then(|base| base.join(&wheel_url))
        .map(String::from)
        .unwrap_or(wheel_url);
    if !quiet {
        eprintln!("downloading {file}");
    }
    let resp = ureq::get(&wheel_url).call().map_err(no_network)?;
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(MAX_WHEEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("download of {file} broke off"))?;
    if bytes.len() as u64 > MAX_WHEEL_BYTES {
        bail!("{file} is larger than {MAX_WHEEL_BYTES} bytes; hint: the index entry looks wrong");
    }
    let got = hex(&Sha256::digest(&bytes));
    if !got.eq_ignore_ascii_case(&sha256) {
        bail!("{file}: sha256 {got} does not match the index's {sha256}; hint: the download was damaged or tampered with, retry");
    }
    let lib = extract_lib(&bytes, lib_name()).with_context(|| format!("{file}: not a usable wheel"))?;
    atomic::create_dir_all(&dir)?;
    atomic::write_bytes(&target, &lib)?;
    PdfLibrary::load(Some(&dir))
        .with_context(|| format!("{}: the installed library does not load", target.display()))?;
    if !quiet {
        eprintln!("libpdfium installed: {}", target.display());
    }
    Ok(())
}

/// The wheel for this platform in the index's JSON: `(file name, url, sha256)`.
pub fn pick_wheel(meta: &serde_json::Value) -> anyhow::Result<(String, String, String)> {
    let version = meta["info"]["version"].as_str().unwrap_or("?");
    let files = meta["urls"]
        .as_array()
        .context("the package index's answer lists no files")?;
    for f in files {
        let name = f["filename"].as_str().unwrap_or_default();
        if f["packagetype"].as_str() == Some("bdist_wheel") && wheel_matches_platform(name) {
            let url = f["url"].as_str().context("wheel without url")?;
            let sha = f["digests"]["sha256"].as_str().context("wheel without sha256")?;
            return Ok((name.to_string(), url.to_string(), sha.to_string()));
        }
    }
    bail!(
        "pypdfium2 {version} has no wheel for {}-{}; hint: build or find libpdfium for this platform and pass --pdfium",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The library file inside a wheel (a zip archive).
pub fn extract_lib(wheel: &[u8], lib: &str) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(wheel))?;
    let wanted = format!("pypdfium2_raw/{lib}");
    let name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with(&wanted))
        .map(|n| n.into_owned())
        .with_context(|| format!("{wanted} is not in the wheel"))?;
    let mut entry = zip.by_name(&name)?;
    if entry.size() > MAX_WHEEL_BYTES * 4 {
        bail!("{name} claims {} bytes", entry.size());
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut out)?;
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
