//! The engine: loads a model folder once and runs pages through
//! preprocessing → DeepEncoder → decoder → text.

use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device};
use image::RgbImage;

use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::model::ModelConfig;
use crate::text::Task;
use crate::vision::Mode;

/// Options fixed when the engine is loaded.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where to compute (CPU by default).
    pub device: Device,
    /// Compute dtype of the activations (f32 on CPU: the parity profile).
    pub dtype: DType,
    /// Defaults used by [`Engine::run`].
    pub defaults: RunOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, defaults: RunOptions::default() }
    }
}

/// What to do with one page.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub mode: Mode,
    pub task: Task,
    pub generate: GenerateOptions,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced the end-of-sentence token.
    Eos,
    /// The maximum number of new tokens was reached.
    MaxTokens,
    /// The streaming callback asked to stop.
    Cancelled,
}

/// Wall-clock time of each stage of one page.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub preprocess: Duration,
    pub vision: Duration,
    pub prefill: Duration,
    pub decode: Duration,
    /// Tokens produced by the decode loop (after the first, which prefill yields).
    pub decode_tokens: usize,
}

/// The result of one page.
#[derive(Debug, Clone)]
pub struct OcrOutput {
    /// Decoded text with special tokens kept, EOS removed, trimmed.
    pub text: String,
    /// Generated token ids (EOS included when generation stopped on it).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens (BOS + image tokens + text).
    pub prompt_tokens: usize,
    /// Number of `<image>` positions.
    pub image_tokens: usize,
    /// Size of the (oriented) input image.
    pub image_size: (u32, u32),
    /// Tile grid `(width_tiles, height_tiles)`; `(1, 1)` when not tiled.
    pub tile_grid: (usize, usize),
    pub stop: StopReason,
    pub timings: Timings,
    /// Bytes of the KV cache preallocated for this page.
    pub kv_cache_bytes: u64,
}

/// A loaded DeepSeek-OCR model.
pub struct Engine {
    config: ModelConfig,
    options: EngineOptions,
}

impl Engine {
    /// Loads a model folder (config.json, *.safetensors, tokenizer.json).
    pub fn load(model_dir: &Path, options: EngineOptions) -> Result<Self> {
        let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
        let _ = (config, options);
        Err(Error::request("Engine::load is not implemented yet", "wait for the engine to land"))
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The options the engine was loaded with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Bytes of the weight files on disk.
    pub fn weights_file_bytes(&self) -> u64 {
        0
    }

    /// Bytes of weights the engine holds in memory (converted or packed copies).
    pub fn resident_weights_bytes(&self) -> u64 {
        0
    }

    /// The predicted peak memory of running one page of `image_size` with `opts`.
    pub fn memory_plan(&self, _opts: &RunOptions, _image_size: (u32, u32)) -> Result<crate::memory::MemoryPlan> {
        Ok(crate::memory::MemoryPlan::default())
    }

    /// Runs one page with the engine's default mode and generation settings.
    pub fn run(&self, image: &RgbImage, task: &Task) -> Result<OcrOutput> {
        let opts = RunOptions { task: task.clone(), ..self.options.defaults.clone() };
        self.run_with(image, &opts, None)
    }

    /// Runs one page, calling `on_text` with each UTF-8-safe piece of text as it is generated.
    pub fn run_streaming(&self, image: &RgbImage, task: &Task, on_text: &mut dyn FnMut(&str)) -> Result<OcrOutput> {
        let opts = RunOptions { task: task.clone(), ..self.options.defaults.clone() };
        self.run_with(image, &opts, Some(on_text))
    }

    /// Runs one page with explicit options.
    pub fn run_with(&self, _image: &RgbImage, _opts: &RunOptions, _on_text: Option<&mut dyn FnMut(&str)>) -> Result<OcrOutput> {
        Err(Error::request("Engine::run is not implemented yet", "wait for the engine to land"))
    }
}
