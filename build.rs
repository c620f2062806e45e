//! Build script: with the `cuda` feature, compiles every `kernels/*.cu` to PTX with nvcc into
//! `OUT_DIR` (the CUDA module of the crate embeds it with `include_str!`). Without the
//! feature it does nothing, so CPU builds need no CUDA toolchain.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_ROOT");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = match env::var_os("OUT_DIR") {
        Some(d) => PathBuf::from(d),
        None => fail("OUT_DIR is not set"),
    };
    // The same variable candle-kernels reads, so both are built for one architecture.
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".to_string());
    let cap = cap.trim().replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        fail(&format!("CUDA_COMPUTE_CAP must be a number like 80 or 90, got `{cap}`"));
    }
    let nvcc = nvcc();

    let mut sources: Vec<PathBuf> = match std::fs::read_dir("kernels") {
        Ok(dir) => dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "cu"))
            .collect(),
        Err(e) => fail(&format!("cannot read kernels/: {e}")),
    };
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&nvcc, src, &out_dir, &cap);
    }
}

/// `NVCC`, else `$CUDA_ROOT/bin/nvcc`, else `nvcc` from `PATH`.
fn nvcc() -> PathBuf {
    if let Some(p) = env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(root) = env::var_os("CUDA_ROOT") {
        let p = Path::new(&root).join("bin").join("nvcc");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nvcc")
}

fn compile(nvcc: &Path, src: &Path, out_dir: &Path, cap: &str) {
    let stem = match src.file_stem() {
        Some(s) => s.to_string_lossy().into_owned(),
        None => fail(&format!("bad kernel file name {}", src.display())),
    };
    let ptx = out_dir.join(format!("{stem}.ptx"));
    let status = Command::new(nvcc)
        .arg("--ptx")
        .arg(format!("-arch=sm_{cap}"))
        .args(["-O3", "-std=c++17", "-o"])
        .arg(&ptx)
        .arg(src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("nvcc failed on {} ({s})", src.display())),
        Err(e) => fail(&format!(
            "cannot run {} ({e}); the `cuda` feature needs the CUDA compiler (set NVCC or CUDA_ROOT, or put nvcc on PATH)",
            nvcc.display()
        )),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
