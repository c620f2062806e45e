//! The engine: loads a model folder once and runs pages through
//! preprocessing → vision encoder (DeepEncoder of DeepSeek-OCR or DeepEncoder V2 of
//! DeepSeek-OCR 2, chosen by config.json) → decoder → text.
//!
//! ```no_run
//! use deepseek_ocr::{Engine, EngineOptions, Task};
//! # fn main() -> deepseek_ocr::Result<()> {
//! let engine = Engine::load("DeepSeek-OCR".as_ref(), EngineOptions::default())?;
//! let page = deepseek_ocr::input::image::load_image("page.png".as_ref(), &Default::default())?;
//! let out = engine.run(&page, &Task::Markdown)?;
//! println!("{}", out.text);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::error::{Error, Result};
use crate::generate::{self as gen, GenerateOptions, Sequence, TextStream};
use crate::lm::{merge_image_embeddings, DeepseekV2, LmOptions};
use crate::memory::plan::{kv_cache_bytes, lm_activation_bytes, vision_activation_bytes, OVERHEAD_BYTES};
use crate::memory::{KvCache, MemoryPlan};
use crate::model::{ModelConfig, Weights};
use crate::nn::{Precision, Taps};
use crate::text::{build_prompt, PromptIds, Task, Tokenizer};
use crate::vision::normalize::views_to_tensor;
use crate::vision::preprocess::Preprocessed;
use crate::vision::{load_encoder, Mode, VisionEncoder};

pub mod batch;

pub use crate::generate::StopReason;
pub use batch::{BatchRunner, BatchStats, PageJob};

/// Options fixed when the engine is loaded.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where to compute (CPU by default).
    pub device: Device,
    /// Compute dtype of weights and activations (f32 on CPU: the parity profile).
    pub dtype: DType,
    /// Defaults used by [`Engine::run`].
    pub defaults: RunOptions,
    /// Refuse a page whose predicted peak memory exceeds this many bytes.
    pub memory_budget: Option<u64>,
    /// Weight precision of the linear layers on the CPU: f32 (the parity mode), bf16 or int8;
    /// the default, [`Precision::Auto`], is resolved at load ([`Precision::resolve`]) and
    /// [`Engine::options`] then holds the precision chosen.
    pub precision: Precision,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            defaults: RunOptions::default(),
            memory_budget: None,
            precision: Precision::Auto,
        }
    }
}

/// What to do with one page.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub mode: Mode,
    pub task: Task,
    pub generate: GenerateOptions,
}

/// Wall-clock time of each stage of one page.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub preprocess: Duration,
    pub vision: Duration,
    /// Prompt pass up to the first chosen token.
    pub prefill: Duration,
    /// All later decode steps.
    pub decode: Duration,
    /// Tokens produced by the decode steps (all generated tokens but the first).
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

/// Weight memory of a loaded model, computed once from the checkpoint layout.
#[derive(Debug, Clone, Copy)]
struct WeightMemory {
    /// Upper bound of the weight bytes in memory after loading: `owned + mapped`
    /// (see [`Engine::resident_weights_bytes`]).
    resident: u64,
    /// Bytes of weights used in place from the memory map (bf16 of a bf16 checkpoint, int8 of
    /// a converted folder): resident only once touched (an
    /// expert no token is routed to is never read), so this is an upper bound.
    mapped: u64,
    /// Largest transient while one tensor loads.
    load_transient: u64,
}

impl WeightMemory {
    fn of(config: &ModelConfig, options: &EngineOptions, weights: &Weights) -> Self {
        let ds = options.dtype.size_in_bytes() as u64;
        let on_cpu = options.device.is_cpu();
        let mut m = WeightMemory {
            resident: 0,
            mapped: 0,
            load_transient: 0,
        };
        for t in crate::model::layout::checkpoint_tensors(config) {
            let n: u64 = t.shape.iter().map(|&d| d as u64).product();
            let name = t.name.as_str();
            if name.ends_with("embeddings.patch_embedding.weight") {
                continue;
            }
            let entry = weights.entry(name);
            let bf16_file = entry.is_some_and(|e| e.dtype == DType::BF16 && !e.int8);
            let int8_file = entry.is_some_and(|e| e.int8);
            let in_place_linear = crate::model::layout::is_linear_weight(name, &t.shape, t.init);
            let linear =
                in_place_linear || name.ends_with("patch_embed.proj.weight") || name.ends_with("neck.0.weight");
            let precision = if crate::model::layout::is_vision_tensor(name) {
                options.precision.for_vision()
            } else {
                options.precision
            };
            // (bytes owned after loading, bytes mapped in place, transient per element while
            // loading: the bytes read from the file, then per precision the converted tensor,
            // the host copy handed to the packer and the packed result).
            let (owned, mapped, transient_per_elem) = match (linear && on_cpu, precision) {
                (true, Precision::Bf16) if in_place_linear && bf16_file => (0, n * 2, 0),
                (true, Precision::Bf16) => (n * 2, 0, 2 + 2 + 2),
                // A converted file's int8 values are used in place (their scales copied);
                // otherwise int8 values plus one f32 scale and one offset per output row.
                (true, Precision::Int8) if in_place_linear && int8_file => (4 * t.shape[0] as u64, n, 0),
                (true, Precision::Int8) => (n + 8 * t.shape[0] as u64, 0, 2 + 4 + 4 + 1),
                _ => (n * ds, 0, 2 + ds),
            };
            m.load_transient = m.load_transient.max(n * transient_per_elem);
            m.resident += owned + mapped;
            m.mapped += mapped;
        }
        m
    }
}

/// A loaded DeepSeek-OCR model.
pub struct Engine {
    config: ModelConfig,
    options: EngineOptions,
    model_dir: PathBuf,
    weights_file_bytes: u64,
    weight_memory: WeightMemory,
    encoder: Box<dyn VisionEncoder>,
    lm: DeepseekV2,
    tokenizer: Tokenizer,
}

impl Engine {
    /// Loads a model folder (config.json, *.safetensors, tokenizer.json).
    ///
    /// The weights are validated against config.json first, so a mismatched or truncated
    /// checkpoint fails here with the name of the tensor and file, not in the middle of a page.
    pub fn load(model_dir: &Path, mut options: EngineOptions) -> Result<Self> {
        if !model_dir.is_dir() {
            return Err(Error::model(
                model_dir,
                "is not a folder",
                "pass the model folder (config.json, model*.safetensors, tokenizer.json)",
            ));
        }
        let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
        let tokenizer = Tokenizer::from_model_dir(model_dir)?;
        tokenizer.image_token_id(config.tokens.image)?;
        let weights = Weights::from_model_dir(model_dir)?;
        weights.validate(&config)?;
        options.precision = options.precision.resolve(weights.quantization().is_some());
        if let Some(scheme) = weights.quantization() {
            if options.precision != Precision::Int8 {
                tracing::warn!(
                    "{} holds {scheme} weights converted from another checkpoint: running it in {} is lossy \
                     (the int8 rounding stays), so results are not parity results; use the original checkpoint for that",
                    model_dir.display(),
                    options.precision
                );
            }
        }
        let vb = weights.var_builder(options.dtype, &options.device);
        // int8 mode keeps the vision encoder in bf16 where this CPU's int8 GEMM is the slower.
        let encoder = load_encoder(vb.clone(), &config, options.precision.for_vision())?;
        let lm = DeepseekV2::load_with(
            vb,
            &config.lm,
            &LmOptions {
                precision: options.precision,
                ..LmOptions::default()
            },
        )?;
        tracing::info!(
            "loaded {} ({}, {:.2} B parameters, {} weights (vision {}), {} activations on {:?}; {})",
            model_dir.display(),
            config.variant(),
            crate::model::layout::parameter_count(&config) as f64 / 1e9,
            options.precision,
            options.precision.for_vision(),
            format!("{:?}", options.dtype).to_lowercase(),
            options.device,
            crate::nn::kernels::tiers_summary()
        );
        Ok(Engine {
            weights_file_bytes: weights.total_bytes(),
            weight_memory: WeightMemory::of(&config, &options, &weights),
            config,
            options,
            model_dir: model_dir.to_path_buf(),
            encoder,
            lm,
            tokenizer,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The options the engine was loaded with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The model folder.
    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The vision encoder of the model's variant.
    pub fn encoder(&self) -> &dyn VisionEncoder {
        self.encoder.as_ref()
    }

    /// Cuts a page into the views of `mode` as the model's variant does (OCR 2 maps
    /// `gundam` onto its 768² tiles and refuses sizes it has no query table for).
    pub fn preprocess(&self, image: &RgbImage, mode: Mode) -> Result<Preprocessed> {
        self.encoder.preprocess(image, mode)
    }

    /// The language model.
    pub fn language_model(&self) -> &DeepseekV2 {
        &self.lm
    }

    /// Bytes of the weight files on disk.
    pub fn weights_file_bytes(&self) -> u64 {
        self.weights_file_bytes
    }

    /// Bytes of weights the engine holds in memory: linear layers at the chosen precision
    /// (packed), everything else (embeddings, norms, position tables, 3×3 convs, routers)
    /// in the compute dtype; the unused CLIP patch convolution is never loaded.
    ///
    /// Weights used in place from the memory map (bf16 linear layers of a bf16 checkpoint)
    /// are counted in full: an upper bound of the bytes that become resident as they are
    /// touched ([`Engine::mapped_weights_bytes`]).
    pub fn resident_weights_bytes(&self) -> u64 {
        self.weight_memory.resident
    }

    /// Bytes of weights used in place from the memory-mapped checkpoint (part of
    /// [`Engine::resident_weights_bytes`]); they are read from the file only when a product
    /// first touches them.
    pub fn mapped_weights_bytes(&self) -> u64 {
        self.weight_memory.mapped
    }

    /// The most positions a page may take (prompt + new tokens): the model's position limit.
    pub fn max_positions(&self) -> usize {
        self.config.lm.max_position_embeddings
    }

    /// KV-cache length for a prompt of `prompt_len` and `max_new_tokens` new tokens:
    /// prompt + new tokens, capped at the position limit (as the official vLLM path does).
    fn cache_len(&self, prompt_len: usize, max_new_tokens: usize) -> usize {
        (prompt_len + max_new_tokens).min(self.max_positions())
    }

    /// The predicted peak memory of running one page of `image_size` with `opts`.
    pub fn memory_plan(&self, opts: &RunOptions, image_size: (u32, u32)) -> Result<MemoryPlan> {
        self.memory_plan_batch(opts, image_size, 1)
    }

    /// The predicted peak memory of decoding `batch` such pages together: one KV cache per
    /// page (the pool of [`BatchRunner`]); vision and prefill still run one page at a time,
    /// and the decode activations of `batch` rows are far below the prefill's.
    pub fn memory_plan_batch(&self, opts: &RunOptions, image_size: (u32, u32), batch: usize) -> Result<MemoryPlan> {
        let (w, h) = image_size;
        let views = self.encoder.view_plan(opts.mode, w, h)?;
        // Prompt text is short; the image tokens dominate. 64 covers every preset.
        let prompt_len = views.image_tokens + 64;
        let ds = self.options.dtype.size_in_bytes();
        let vision = vision_activation_bytes(&self.config, views.global_side, 1, ds).max(vision_activation_bytes(
            &self.config,
            views.tile_side,
            views.tiles,
            ds,
        ));
        Ok(MemoryPlan {
            weights: self.weight_memory.resident,
            kv_cache: batch.max(1) as u64
                * kv_cache_bytes(
                    &self.config,
                    self.cache_len(prompt_len, opts.generate.max_new_tokens),
                    ds,
                ),
            vision_activations: vision,
            lm_activations: lm_activation_bytes(&self.config, prompt_len, ds),
            load_transient: self.weight_memory.load_transient,
            overhead: OVERHEAD_BYTES,
        })
    }

    /// Runs one page with the engine's default mode and generation settings.
    pub fn run(&self, image: &RgbImage, task: &Task) -> Result<OcrOutput> {
        let opts = RunOptions {
            task: task.clone(),
            ..self.options.defaults.clone()
        };
        self.run_with(image, &opts, None)
    }

    /// Runs one page, calling `on_text` with each UTF-8-safe piece of text as it is generated.
    pub fn run_streaming(&self, image: &RgbImage, task: &Task, on_text: &mut dyn FnMut(&str)) -> Result<OcrOutput> {
        let opts = RunOptions {
            task: task.clone(),
            ..self.options.defaults.clone()
        };
        self.run_with(image, &opts, Some(on_text))
    }

    /// Preprocesses a page and runs the vision encoder: the image embedding sequence
    /// `(n_image_tokens, D)`, with the named stage tensors recorded in `taps`.
    pub fn encode_image(&self, pre: &Preprocessed, taps: &mut Taps) -> Result<Tensor> {
        let dev = &self.options.device;
        let global = views_to_tensor(&[&pre.global], dev)?.to_dtype(self.options.dtype)?;
        taps.put("pixel_values_global", &global);
        let tiles = if pre.tiles.is_empty() {
            None
        } else {
            let views: Vec<&RgbImage> = pre.tiles.iter().collect();
            Some(views_to_tensor(&views, dev)?.to_dtype(self.options.dtype)?)
        };
        self.encoder.encode(&global, tiles.as_ref(), pre.grid, taps)
    }

    /// The largest batch (at most `limit`) whose [`memory_plan_batch`](Self::memory_plan_batch)
    /// fits the memory budget: the engine's `memory_budget`, else the weights plus half of
    /// the memory the system reports available. At least 1.
    pub fn auto_batch(&self, opts: &RunOptions, image_size: (u32, u32), limit: usize) -> Result<usize> {
        let budget = match self.options.memory_budget {
            Some(b) => b,
            None => match crate::memory::plan::available_bytes() {
                Some(avail) => self.weight_memory.resident + avail / 2,
                None => return Ok(1),
            },
        };
        let mut best = 1;
        for b in 1..=limit.max(1) {
            if self.memory_plan_batch(opts, image_size, b)?.total() <= budget {
                best = b;
            }
        }
        Ok(best)
    }

    /// Stage 1 of a page: preprocessing, the vision encoder and the prompt, giving the
    /// prompt embeddings ready to prefill. Records `image_embeds`, `inputs_embeds` and the
    /// vision stage tensors in `taps`. Checks the page's memory plan first.
    pub fn prepare(&self, image: &RgbImage, opts: &RunOptions, taps: &mut Taps) -> Result<Prepared> {
        self.memory_plan(opts, image.dimensions())?
            .check(self.options.memory_budget)?;
        let t0 = Instant::now();
        let pre = self.encoder.preprocess(image, opts.mode)?;
        let preprocess_time = t0.elapsed();

        let t1 = Instant::now();
        // The one call into the vision encoder.
        let image_embeds = self.encode_image(&pre, taps)?;
        taps.put("image_embeds", &image_embeds);
        let vision_time = t1.elapsed();

        let prompt = build_prompt(
            &self.tokenizer,
            &opts.task.prompt(),
            pre.num_image_tokens,
            &self.config.tokens,
            self.max_positions(),
        )?;
        let ids = Tensor::new(prompt.ids.as_slice(), &self.options.device)?;
        let embeds = merge_image_embeddings(&self.lm.embed(&ids)?, &prompt.image_mask, &image_embeds)?;
        taps.put("inputs_embeds", &embeds);
        Ok(Prepared {
            embeds,
            prompt,
            opts: opts.clone(),
            image_tokens: pre.num_image_tokens,
            image_size: pre.image_size,
            tile_grid: pre.grid,
            preprocess_time,
            vision_time,
        })
    }

    /// KV-cache positions a prepared page reserves.
    pub fn cache_len_of(&self, prepared: &Prepared) -> usize {
        self.cache_len(prepared.prompt.len(), prepared.opts.generate.max_new_tokens)
    }

    /// Stage 2a: a prepared page with its KV cache, not yet prefilled. The cache is `cache`
    /// when given and long enough (emptied; see [`cache_len_of`](Self::cache_len_of)) or a
    /// new one. `on_text` receives the text as it is generated and returns `false` to stop
    /// the page (e.g. the client went away).
    pub fn admit<'a>(
        &'a self,
        prepared: Prepared,
        cache: Option<KvCache>,
        on_text: Option<TextSink<'a>>,
    ) -> Result<Page<'a>> {
        let need = self.cache_len_of(&prepared);
        let cache = match cache {
            Some(mut c) if c.capacity() >= need && c.num_layers() == self.config.lm.num_layers => {
                c.reset();
                c
            }
            _ => self.lm.new_cache(need)?,
        };
        let Prepared {
            embeds,
            prompt,
            opts,
            image_tokens,
            image_size,
            tile_grid,
            preprocess_time,
            vision_time,
        } = prepared;
        let prompt_tokens = prompt.len();
        let seq = Sequence::new(embeds, prompt.ids, opts.generate, cache, self.config.tokens.eos)?;
        Ok(Page {
            seq,
            stream: TextStream::new(&self.tokenizer),
            sink: on_text,
            streamed: 0,
            stream_error: None,
            eos: self.config.tokens.eos,
            prompt_tokens,
            image_tokens,
            image_size,
            tile_grid,
            preprocess_time,
            vision_time,
        })
    }

    /// Stage 2b: the prompt pass of an admitted page and its first token, recording the
    /// prefill taps (`layer{i}_out`, router choices, logits; see [`DeepseekV2::forward`]).
    pub fn prefill(&self, page: &mut Page<'_>, taps: &mut Taps) -> Result<()> {
        gen::prefill(&self.lm, &mut page.seq, taps)?;
        page.stream_new_text();
        Ok(())
    }

    /// Stage 3: advances every live page of `pages` by one token in one batched decode step
    /// (finished pages are skipped). Returns how many pages advanced.
    pub fn step(&self, pages: &mut [&mut Page<'_>]) -> Result<usize> {
        let n = {
            let mut seqs: Vec<&mut Sequence<'_>> = pages.iter_mut().map(|p| &mut p.seq).collect();
            gen::step(&self.lm, &mut seqs)?
        };
        for p in pages.iter_mut() {
            p.stream_new_text();
        }
        Ok(n)
    }

    /// Stage 4: the result of a finished (or abandoned) page, and its KV cache for reuse.
    pub fn finish(&self, page: Page<'_>) -> Result<(OcrOutput, KvCache)> {
        let Page {
            seq,
            mut stream,
            mut sink,
            stream_error,
            prompt_tokens,
            image_tokens,
            image_size,
            tile_grid,
            preprocess_time,
            vision_time,
            ..
        } = page;
        if let Some(e) = stream_error {
            return Err(e);
        }
        if let Some(f) = sink.as_mut() {
            if let Some(rest) = stream.finish()? {
                f(&rest);
            }
        }
        let (g, cache) = seq.finish();
        let cache = match cache {
            Some(c) => c,
            None => return Err(Error::request("the page's KV cache was lent", "internal error")),
        };
        let text = self.tokenizer.decode_output(&g.ids, self.config.tokens.eos)?;
        Ok((
            OcrOutput {
                text,
                prompt_tokens,
                image_tokens,
                image_size,
                tile_grid,
                stop: g.stop,
                timings: Timings {
                    preprocess: preprocess_time,
                    vision: vision_time,
                    prefill: g.prefill_time,
                    decode: g.decode_time,
                    decode_tokens: g.ids.len().saturating_sub(1),
                },
                kv_cache_bytes: cache.bytes(),
                token_ids: g.ids,
            },
            cache,
        ))
    }

    /// Runs one page with explicit options. `on_text` receives the text as it is generated.
    pub fn run_with(
        &self,
        image: &RgbImage,
        opts: &RunOptions,
        on_text: Option<&mut dyn FnMut(&str)>,
    ) -> Result<OcrOutput> {
        let sink: Option<TextSink<'_>> = on_text.map(|f| -> TextSink<'_> {
            Box::new(move |s: &str| {
                f(s);
                true
            })
        });
        self.run_with_sink(image, opts, sink)
    }

    /// Like [`run_with`](Self::run_with) with a sink that can stop the page by returning
    /// `false` ([`StopReason::Callback`]).
    pub fn run_with_sink<'a>(
        &'a self,
        image: &RgbImage,
        opts: &RunOptions,
        on_text: Option<TextSink<'a>>,
    ) -> Result<OcrOutput> {
        let prepared = self.prepare(image, opts, &mut Taps::off())?;
        let mut page = self.admit(prepared, None, on_text)?;
        self.prefill(&mut page, &mut Taps::off())?;
        while !page.is_finished() {
            self.step(&mut [&mut page])?;
        }
        Ok(self.finish(page)?.0)
    }
}

/// Receives a page's text as it is generated; returning `false` stops the page.
pub type TextSink<'a> = Box<dyn FnMut(&str) -> bool + 'a>;

/// A page after [`Engine::prepare`]: prompt embeddings and ids, ready to prefill.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Prompt embeddings `(L, D)` with the image embeddings merged in.
    pub embeds: Tensor,
    /// Prompt ids and image mask.
    pub prompt: PromptIds,
    /// The page's options (its generation settings are used at prefill).
    pub opts: RunOptions,
    /// Number of `<image>` positions.
    pub image_tokens: usize,
    /// Size of the (oriented) input image.
    pub image_size: (u32, u32),
    /// Tile grid.
    pub tile_grid: (usize, usize),
    /// Time of the preprocessing.
    pub preprocess_time: Duration,
    /// Time of the vision encoder.
    pub vision_time: Duration,
}

/// A page being generated: made by [`Engine::admit`], started by [`Engine::prefill`],
/// advanced by [`Engine::step`], ended by [`Engine::finish`].
pub struct Page<'a> {
    seq: Sequence<'a>,
    stream: TextStream<'a>,
    sink: Option<TextSink<'a>>,
    /// Generated ids already pushed into `stream`.
    streamed: usize,
    stream_error: Option<Error>,
    eos: u32,
    prompt_tokens: usize,
    image_tokens: usize,
    image_size: (u32, u32),
    tile_grid: (usize, usize),
    preprocess_time: Duration,
    vision_time: Duration,
}

impl std::fmt::Debug for Page<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("seq", &self.seq)
            .field("prompt_tokens", &self.prompt_tokens)
            .finish_non_exhaustive()
    }
}

impl<'a> Page<'a> {
    /// Whether generation has stopped.
    pub fn is_finished(&self) -> bool {
        self.seq.is_finished()
    }

    /// Stops the page before its next step.
    pub fn cancel(&mut self) {
        self.seq.cancel();
    }

    /// The generation in flight (ids so far, cache, settings).
    pub fn sequence(&self) -> &Sequence<'a> {
        &self.seq
    }

    /// The generation in flight, mutably (teacher forcing, logit recording).
    pub fn sequence_mut(&mut self) -> &mut Sequence<'a> {
        &mut self.seq
    }

    /// Pushes the ids generated since the last call through the text stream into the sink;
    /// a sink returning `false` or a stream error stops the page.
    fn stream_new_text(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let ids = self.seq.generated()[self.streamed.min(self.seq.generated().len())..].to_vec();
        for id in ids {
            self.streamed += 1;
            if id == self.eos {
                continue;
            }
            match self.stream.push(id) {
                Ok(Some(delta)) => {
                    if !sink(&delta) {
                        self.seq.cancel();
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.stream_error = Some(e);
                    self.seq.cancel();
                    return;
                }
            }
        }
    }
}
