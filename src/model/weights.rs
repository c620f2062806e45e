//! Memory-mapped safetensors weights with loud, precise errors.
//!
//! A model folder holds either one `*.safetensors` file or a
//! `model.safetensors.index.json` naming shards. Files are memory-mapped, their headers
//! parsed once; tensor bytes are only touched when a module asks for them (so experts
//! that are never loaded are never paged in). [`Weights`] implements candle's
//! [`SimpleBackend`], so every module is built from an ordinary [`VarBuilder`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use memmap2::Mmap;
use safetensors::tensor::Dtype as StDtype;

use crate::error::{Error, Result};

struct File {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    file: usize,
    /// On-disk dtype.
    pub dtype: DType,
    /// On-disk shape.
    pub shape: Vec<usize>,
    /// Stored as safetensors `I8` (candle has no i8 dtype: `dtype` is then `U8`, the type of
    /// the same width). Int8 checkpoints written by `dsocr convert` hold such weights.
    pub int8: bool,
    start: usize,
    end: usize,
}

/// All tensors of a model folder, memory-mapped.
#[derive(Clone)]
pub struct Weights {
    files: Arc<Vec<File>>,
    entries: Arc<HashMap<String, TensorEntry>>,
    /// Process-unique id, so a [`VarBuilder`] built by [`Weights::var_builder`] can be traced
    /// back to these weights (see [`Weights::of_var_builder`]).
    id: u64,
}

/// The bytes of one tensor inside a memory map, kept alive by a shared handle: a layer can
/// compute straight from the checkpoint file without copying it. Cloning is cheap.
#[derive(Clone)]
pub struct MappedBytes {
    files: Arc<Vec<File>>,
    file: usize,
    start: usize,
    end: usize,
}

impl MappedBytes {
    /// The tensor's bytes, as stored on disk (little-endian).
    pub fn bytes(&self) -> &[u8] {
        let f = &self.files[self.file];
        &f.mmap[f.data_start + self.start..f.data_start + self.end]
    }
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl std::fmt::Debug for MappedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MappedBytes({} bytes of {})",
            self.end - self.start,
            self.files[self.file].path.display()
        )
    }
}

/// Name suffix (it holds a NUL, so no real tensor has it) under which [`Weights`], as a
/// candle backend, answers with its own id instead of a tensor.
const ID_PROBE: &str = "\0dsocr-weights-id";

/// The live [`Weights`] by id (weak: a registry entry never keeps a checkpoint mapped).
type Registry = Mutex<Vec<(u64, Weak<Vec<File>>, Weak<HashMap<String, TensorEntry>>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

fn st_dtype(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::BF16 => DType::BF16,
        StDtype::F16 => DType::F16,
        StDtype::F32 => DType::F32,
        StDtype::F64 => DType::F64,
        StDtype::U8 | StDtype::I8 => DType::U8,
        StDtype::U32 => DType::U32,
        StDtype::I64 => DType::I64,
        _ => return None,
    })
}

impl Weights {
    /// Finds and maps the weights of a model folder.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files = if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::model(
                    &index,
                    format!("not valid JSON: {e}"),
                    "re-download model.safetensors.index.json",
                )
            })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                Error::model(
                    &index,
                    "has no `weight_map` object",
                    "re-download model.safetensors.index.json",
                )
            })?;
            let mut names: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect::<Vec<_>>()
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| {
                    Error::model(
                        dir,
                        format!("cannot read the model folder: {e}"),
                        "pass a folder that holds config.json and the .safetensors weights",
                    )
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            found
        };
        if files.is_empty() {
            return Err(Error::model(
                dir,
                "no .safetensors weights found",
                "download the model (e.g. deepseek-ai/DeepSeek-OCR) or pass --model with the folder that holds model*.safetensors",
            ));
        }
        Self::from_files(&files)
    }

    /// Maps the given safetensors files.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let f = std::fs::File::open(path).map_err(|e| {
                Error::model(
                    path,
                    format!("cannot open weights file: {e}"),
                    "check that the file exists and is readable",
                )
            })?;
            // SAFETY: the file is opened read-only; like every mmap-based loader we rely on
            // nobody truncating the checkpoint while it is in use.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
            let corrupt = |msg: String| {
                Error::model(
                    path,
                    format!("not a valid safetensors file: {msg}"),
                    "the file is truncated or corrupt; download it again",
                )
            };
            if mmap.len() < 8 {
                return Err(corrupt(format!("only {} bytes long", mmap.len())));
            }
            let (n, meta) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| corrupt(e.to_string()))?;
            let data_start = 8 + n;
            let data_len = mmap.len() - data_start;
            for (name, info) in meta.tensors() {
                let (start, end) = info.data_offsets;
                if end > data_len || start > end {
                    return Err(corrupt(format!(
                        "tensor `{name}` ends at byte {end} of a {data_len}-byte data section"
                    )));
                }
                let dtype = st_dtype(info.dtype)
                    .ok_or_else(|| corrupt(format!("tensor `{name}` has unsupported dtype {:?}", info.dtype)))?;
                let numel: usize = info.shape.iter().product();
                if numel * dtype.size_in_bytes() != end - start {
                    return Err(corrupt(format!(
                        "tensor `{name}` has {} bytes for shape {:?}",
                        end - start,
                        info.shape
                    )));
                }
                entries.insert(
                    name.clone(),
                    TensorEntry {
                        file: fi,
                        dtype,
                        int8: info.dtype == StDtype::I8,
                        shape: info.shape.clone(),
                        start,
                        end,
                    },
                );
            }
            files.push(File {
                path: path.clone(),
                mmap,
                data_start,
            });
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let w = Weights {
            files: Arc::new(files),
            entries: Arc::new(entries),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        if let Ok(mut reg) = registry().lock() {
            reg.retain(|(_, f, _)| f.strong_count() > 0);
            reg.push((w.id, Arc::downgrade(&w.files), Arc::downgrade(&w.entries)));
        }
        Ok(w)
    }

    /// The weights behind a [`VarBuilder`] made by [`Weights::var_builder`] (any prefix),
    /// or `None` for any other VarBuilder. This lets a layer keep a view into the memory map
    /// ([`Weights::mapped`]) instead of a copy, although candle's VarBuilder only hands out
    /// owned tensors.
    pub fn of_var_builder(vb: &VarBuilder) -> Option<Weights> {
        let t = vb.get_unchecked_dtype(ID_PROBE, DType::I64).ok()?;
        let id = u64::try_from(*t.to_vec1::<i64>().ok()?.first()?).ok()?;
        let reg = registry().lock().ok()?;
        let (_, files, entries) = reg.iter().find(|(i, _, _)| *i == id)?;
        Some(Weights {
            files: files.upgrade()?,
            entries: entries.upgrade()?,
            id,
        })
    }

    /// A shared view of a tensor's bytes inside the memory map (no copy; the pages are read
    /// from the file only when the bytes are first used).
    pub fn mapped(&self, name: &str) -> Option<(MappedBytes, &TensorEntry)> {
        let e = self.entries.get(name)?;
        Some((
            MappedBytes {
                files: self.files.clone(),
                file: e.file,
                start: e.start,
                end: e.end,
            },
            e,
        ))
    }

    /// The `__metadata__` map of the first weights file (empty when it has none).
    pub fn metadata(&self) -> HashMap<String, String> {
        let Some(f) = self.files.first() else {
            return HashMap::new();
        };
        safetensors::SafeTensors::read_metadata(&f.mmap)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    /// Paths of the mapped files.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Looks up a tensor's entry.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.entries.get(name)
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    /// Path of the file that holds a tensor (or of the first file when absent).
    pub fn file_of(&self, name: &str) -> &Path {
        let i = self.entries.get(name).map(|e| e.file).unwrap_or(0);
        &self.files[i].path
    }

    /// The raw little-endian bytes of a tensor as stored on disk (zero copy).
    pub fn raw(&self, name: &str) -> Option<(&[u8], &TensorEntry)> {
        let e = self.entries.get(name)?;
        let f = &self.files[e.file];
        Some((&f.mmap[f.data_start + e.start..f.data_start + e.end], e))
    }

    /// Total bytes of all tensors on disk.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| (e.end - e.start) as u64).sum()
    }

    fn tensor_error(&self, name: &str, message: String) -> Error {
        Error::Tensor {
            file: self.file_of(name).to_path_buf(),
            name: name.to_string(),
            message,
        }
    }

    /// Loads a tensor, checking its shape, converted to `dtype` on `device`.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let (bytes, e) = self
            .raw(name)
            .ok_or_else(|| self.tensor_error(name, "is missing".into()))?;
        if e.shape != shape {
            return Err(self.tensor_error(name, format!("expected shape {shape:?}, found {:?}", e.shape)));
        }
        if e.int8 {
            return self
                .dequantized(name, bytes, e)?
                .to_dtype(dtype)?
                .to_device(device)
                .map_err(Into::into);
        }
        if !matches!(e.dtype, DType::BF16 | DType::F16 | DType::F32) {
            return Err(self.tensor_error(
                name,
                format!("expected a float tensor (bf16/f16/f32), found {:?}", e.dtype),
            ));
        }
        let t = Tensor::from_raw_buffer(bytes, e.dtype, &e.shape, &Device::Cpu)?;
        self.release(e);
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }

    /// An int8 weight (as `dsocr convert` writes it) times its per-row `NAME_scale`, as f32.
    fn dequantized(&self, name: &str, bytes: &[u8], e: &TensorEntry) -> Result<Tensor> {
        let scale_name = format!("{name}_scale");
        let (sb, se) = self
            .raw(&scale_name)
            .ok_or_else(|| self.tensor_error(name, format!("is int8 but `{scale_name}` is missing")))?;
        let rows = e.shape.first().copied().unwrap_or(1);
        if se.dtype != DType::F32 || se.shape != [rows] || e.shape.len() != 2 {
            return Err(self.tensor_error(
                &scale_name,
                format!(
                    "must be f32 [{rows}] for a 2-d int8 weight, found {:?} {:?}",
                    se.dtype, se.shape
                ),
            ));
        }
        let cols = e.shape[1];
        let mut v = Vec::with_capacity(bytes.len());
        for (r, row) in bytes.chunks_exact(cols.max(1)).enumerate() {
            let s = f32::from_le_bytes([sb[4 * r], sb[4 * r + 1], sb[4 * r + 2], sb[4 * r + 3]]);
            v.extend(row.iter().map(|q| *q as i8 as f32 * s));
        }
        Ok(Tensor::from_vec(v, e.shape.as_slice(), &Device::Cpu)?)
    }

    /// Whether the folder was written by `dsocr convert` (its metadata names the scheme).
    pub fn quantization(&self) -> Option<String> {
        self.metadata().get(crate::quant::convert::META_SCHEME).cloned()
    }

    /// Drops this process's mapped pages of tensor `name` (see below); for callers that have
    /// read a tensor through [`Weights::raw`] and will not need it again.
    ///
    /// Drops the mapped pages of a tensor whose bytes were just copied out, so that
    /// loading does not hold the file's pages and the model's own copy at the same time
    /// (the peak would otherwise be file + model). The pages stay in the OS page cache
    /// and are read again from the file if the tensor is ever loaded twice.
    pub fn release_tensor(&self, name: &str) {
        if let Some(e) = self.entries.get(name) {
            self.release(e);
        }
    }

    fn release(&self, e: &TensorEntry) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let f = &self.files[e.file];
            let start = (f.data_start + e.start).div_ceil(PAGE) * PAGE;
            let end = (f.data_start + e.end) / PAGE * PAGE;
            if end > start {
                // SAFETY: the mapping is a read-only file mapping; MADV_DONTNEED only drops
                // clean pages from this process (later accesses re-read the file), and no
                // reference into this range outlives `get` (its bytes were copied).
                let _ = unsafe {
                    f.mmap
                        .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }

    /// A candle [`VarBuilder`] over these weights.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }
}

impl SimpleBackend for Weights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if name.ends_with(ID_PROBE) {
            return self.get_unchecked(name, dtype, dev);
        }
        Weights::get(self, name, s.dims(), dtype, dev).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if name.ends_with(ID_PROBE) {
            let _ = (dtype, dev);
            return Tensor::new(&[self.id as i64], &Device::Cpu);
        }
        let shape = self
            .entries
            .get(name)
            .map(|e| e.shape.clone())
            .ok_or_else(|| candle_core::Error::Msg(self.tensor_error(name, "is missing".into()).to_string()))?;
        Weights::get(self, name, &shape, dtype, dev).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

impl Weights {
    /// Checks that every tensor the configuration needs is present with the right shape and a
    /// float dtype. Reports up to ten problems at once, naming the files.
    pub fn validate(&self, cfg: &crate::model::ModelConfig) -> Result<()> {
        let mut problems = Vec::new();
        for spec in crate::model::layout::checkpoint_tensors(cfg) {
            match self.entry(&spec.name) {
                None => problems.push(format!("`{}` is missing", spec.name)),
                Some(e) if e.shape != spec.shape => problems.push(format!(
                    "`{}` in {} has shape {:?}, config.json implies {:?}",
                    spec.name,
                    self.file_of(&spec.name).display(),
                    e.shape,
                    spec.shape
                )),
                Some(e) if e.int8 && self.entry(&format!("{}_scale", spec.name)).is_some() => {}
                Some(e) if !matches!(e.dtype, DType::BF16 | DType::F16 | DType::F32) => problems.push(format!(
                    "`{}` has dtype {:?}, expected bf16/f16/f32",
                    spec.name, e.dtype
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let n = problems.len();
        problems.truncate(10);
        let first = self.files.first().map(|f| f.path.clone()).unwrap_or_default();
        Err(Error::model(
            first,
            format!(
                "{n} tensor(s) do not match config.json: {}{}",
                problems.join("; "),
                if n > 10 { "; ..." } else { "" }
            ),
            "use the config.json that belongs to these weights, or re-download the model",
        ))
    }
}
