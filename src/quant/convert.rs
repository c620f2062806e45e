//! `dsocr convert`: writes an int8 copy of a model folder that loads without quantising.
//!
//! The output is a complete model folder: every non-weight file of the source (config.json,
//! tokenizer.json, ...) copied as is, and one `model.safetensors` in which each linear weight
//! `NAME.weight` (bf16/f16/f32 `[out, in]`) is replaced by
//!
//! * `NAME.weight`: `I8 [out, in]`, row-major, values in `-127..=127`;
//! * `NAME.weight_scale`: `F32 [out]`, so that `weight ≈ NAME.weight[o, i] · NAME.weight_scale[o]`,
//!
//! quantised exactly as [`crate::quant::int8`] does at load (symmetric, one scale per output
//! channel: `max |w| / 127`, round half away from zero), so the converted folder gives the
//! same token ids as `--precision int8` on the source. Every other tensor (norms, embeddings,
//! convolutions, routers, position tables) is copied byte for byte. The file's metadata names
//! the scheme ([`SCHEME`] under [`META_SCHEME`]) and a fingerprint of the source
//! ([`META_SOURCE`]: sha256 of the source shards' safetensors headers and the first and last
//! MiB of their data). Tensors are written in name order, one at a time and one row at a time,
//! from the memory-mapped source, whose pages are released after each tensor, so the
//! conversion needs little memory. The output depends only on the source bytes (no times or
//! paths inside): converting twice gives identical files.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use candle_core::DType;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::layout::{checkpoint_tensors, Init};
use crate::model::{ModelConfig, Weights};
use crate::quant::int8::quantize_row;

/// Metadata key naming the quantisation scheme of a converted folder.
pub const META_SCHEME: &str = "dsocr.quantization";
/// Metadata key holding the fingerprint of the source checkpoint.
pub const META_SOURCE: &str = "dsocr.source_sha256";
/// The scheme written by [`convert_int8`].
pub const SCHEME: &str = "int8-per-output-channel-symmetric";

/// What [`convert_int8`] wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The weights file written.
    pub weights_file: PathBuf,
    /// Linear weights quantised to int8.
    pub quantized: usize,
    /// Tensors copied unchanged.
    pub copied: usize,
    /// Bytes of the source tensors and of the written tensors.
    pub source_bytes: u64,
    pub written_bytes: u64,
    /// Fingerprint of the source (see [`META_SOURCE`]).
    pub source_sha256: String,
}

/// Whether `dsocr convert` quantises this checkpoint tensor: the weights every
/// [`crate::nn::Linear`] loads with `Linear::load_with` (2-d layer weights other than the MoE
/// router, which stays f32 so the expert choice is that of the source).
pub fn is_int8_linear(name: &str, shape: &[usize], init: Init) -> bool {
    matches!(init, Init::Weight { .. }) && shape.len() == 2 && !name.ends_with("mlp.gate.weight")
}

/// One tensor of the output file.
struct OutTensor {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: usize,
    /// What to write: the source tensor copied, or its int8 values / scales.
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Copy,
    Values,
    Scales,
}

fn st_name(d: DType, int8: bool) -> &'static str {
    match d {
        _ if int8 => "I8",
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::U8 => "U8",
        DType::U32 => "U32",
        DType::I64 => "I64",
        _ => "F32",
    }
}

/// Converts the model folder `src` into an int8 model folder `out` (created; it must not
/// exist or be empty). Fails with a hint when `src` is already converted.
pub fn convert_int8(src: &Path, out: &Path) -> Result<ConvertReport> {
    let config = ModelConfig::from_file(&src.join("config.json"))?;
    let weights = Weights::from_model_dir(src)?;
    if let Some(scheme) = weights.quantization() {
        return Err(Error::model(
            src,
            format!("is already converted ({scheme}); converting it again would change nothing"),
            "load it directly with `--model` (it runs as int8), or convert the original bf16 checkpoint",
        ));
    }
    weights.validate(&config)?;
    if out.exists() {
        let non_empty = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_some();
        if non_empty {
            return Err(Error::request(
                format!("output folder {} is not empty", out.display()),
                "pass a new or empty folder as --out",
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;

    let linear: std::collections::HashSet<String> = checkpoint_tensors(&config)
        .into_iter()
        .filter(|t| is_int8_linear(&t.name, &t.shape, t.init))
        .map(|t| t.name)
        .collect();
    let mut names: Vec<&str> = weights.names().collect();
    names.sort_unstable();
    let mut plan = Vec::new();
    let mut source_bytes = 0u64;
    for name in names {
        let e = weights
            .entry(name)
            .ok_or_else(|| Error::request("tensor vanished", "retry"))?;
        let numel: usize = e.shape.iter().product();
        source_bytes += (numel * e.dtype.size_in_bytes()) as u64;
        let float = matches!(e.dtype, DType::BF16 | DType::F16 | DType::F32) && !e.int8;
        if float && linear.contains(name) {
            plan.push(OutTensor {
                name: name.to_string(),
                dtype: "I8",
                shape: e.shape.clone(),
                bytes: numel,
                kind: Kind::Values,
            });
            plan.push(OutTensor {
                name: format!("{name}_scale"),
                dtype: "F32",
                shape: vec![e.shape[0]],
                bytes: e.shape[0] * 4,
                kind: Kind::Scales,
            });
        } else {
            plan.push(OutTensor {
                name: name.to_string(),
                dtype: st_name(e.dtype, e.int8),
                shape: e.shape.clone(),
                bytes: numel * e.dtype.size_in_bytes(),
                kind: Kind::Copy,
            });
        }
    }
    // The data is written in the planned order (each scale right after its values, which it
    // needs); the header's offsets follow the same order.
    let source_sha256 = fingerprint(&weights)?;
    let header = header(&plan, &source_sha256);

    copy_other_files(src, out)?;
    let path = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    let io = |e| Error::io(&tmp, e);
    w.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&header).map_err(io)?;
    let mut scales: Vec<f32> = Vec::new();
    let mut row_f32: Vec<f32> = Vec::new();
    let mut row_i8: Vec<i8> = Vec::new();
    let mut row_u8: Vec<u8> = Vec::new();
    let (mut quantized, mut copied, mut written) = (0, 0, 0u64);
    for t in &plan {
        match t.kind {
            Kind::Copy => {
                let (bytes, _) = weights.raw(&t.name).ok_or_else(|| missing(&weights, &t.name))?;
                for chunk in bytes.chunks(1 << 22) {
                    w.write_all(chunk).map_err(io)?;
                }
                weights.release_tensor(&t.name);
                copied += 1;
            }
            Kind::Values => {
                let (bytes, e) = weights.raw(&t.name).ok_or_else(|| missing(&weights, &t.name))?;
                let (rows, cols) = (e.shape[0], e.shape[1]);
                let es = e.dtype.size_in_bytes();
                scales.clear();
                row_f32.resize(cols, 0.0);
                row_i8.resize(cols, 0);
                for r in 0..rows {
                    let src = &bytes[r * cols * es..(r + 1) * cols * es];
                    to_f32(src, e.dtype, &mut row_f32);
                    scales.push(quantize_row(&row_f32, &mut row_i8).1);
                    row_u8.clear();
                    row_u8.extend(row_i8.iter().map(|q| *q as u8));
                    w.write_all(&row_u8).map_err(io)?;
                }
                weights.release_tensor(&t.name);
                quantized += 1;
            }
            Kind::Scales => {
                let b: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                w.write_all(&b).map_err(io)?;
            }
        }
        written += t.bytes as u64;
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    tracing::info!(
        "converted {} → {}: {quantized} linear weights to int8, {copied} tensors copied, {:.2} GB → {:.2} GB",
        src.display(),
        out.display(),
        source_bytes as f64 / 1e9,
        written as f64 / 1e9
    );
    Ok(ConvertReport {
        weights_file: path,
        quantized,
        copied,
        source_bytes,
        written_bytes: written,
        source_sha256,
    })
}

fn missing(weights: &Weights, name: &str) -> Error {
    Error::model(
        weights.file_of(name),
        format!("tensor `{name}` disappeared while converting"),
        "do not modify the source folder during a conversion",
    )
}

/// Little-endian bf16 / f16 / f32 bytes to f32 (exact for bf16 and f16).
fn to_f32(src: &[u8], dtype: DType, dst: &mut [f32]) {
    match dtype {
        DType::BF16 => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
            }
        }
        DType::F16 => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        _ => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

/// The safetensors header (sorted keys, padded to 8 bytes).
fn header(plan: &[OutTensor], source_sha256: &str) -> Vec<u8> {
    let mut map: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    map.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", META_SCHEME: SCHEME, META_SOURCE: source_sha256}),
    );
    let mut offset = 0usize;
    for t in plan {
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes]}),
        );
        offset += t.bytes;
    }
    let mut h = serde_json::to_vec(&map).unwrap_or_default();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    h
}

/// sha256 over each source shard (in path order): its file name, its safetensors header, and
/// the first and last MiB of its data section. Cheap (a few MiB read), and it changes when the
/// layout or the values of the checkpoint do.
fn fingerprint(weights: &Weights) -> Result<String> {
    const MIB: u64 = 1 << 20;
    let mut h = Sha256::new();
    let mut paths: Vec<&Path> = weights.paths().collect();
    paths.sort();
    for p in paths {
        let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
        let len = f.metadata().map_err(|e| Error::io(p, e))?.len();
        let mut n8 = [0u8; 8];
        f.read_exact(&mut n8).map_err(|e| Error::io(p, e))?;
        let data_start = 8 + u64::from_le_bytes(n8);
        h.update(p.file_name().map(|s| s.as_encoded_bytes()).unwrap_or_default());
        h.update(n8);
        let mut buf = vec![0u8; (data_start - 8).min(len) as usize];
        f.read_exact(&mut buf).map_err(|e| Error::io(p, e))?;
        h.update(&buf);
        let data_len = len.saturating_sub(data_start);
        for start in [data_start, data_start + data_len.saturating_sub(MIB)] {
            let n = data_len.min(MIB) as usize;
            buf.resize(n, 0);
            f.seek(SeekFrom::Start(start)).map_err(|e| Error::io(p, e))?;
            f.read_exact(&mut buf).map_err(|e| Error::io(p, e))?;
            h.update(&buf);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Copies every regular file of `src` except the weights (and their index) into `out`.
fn copy_other_files(src: &Path, out: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap_or_default().to_string_lossy().to_string();
        if name.ends_with(".safetensors") || name == "model.safetensors.index.json" || name.ends_with(".partial") {
            continue;
        }
        let dst = out.join(&name);
        std::fs::copy(&p, &dst).map_err(|e| Error::io(&dst, e))?;
    }
    Ok(())
}
