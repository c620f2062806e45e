//! # deepseek-ocr
//!
//! A pure-Rust inference engine for the DeepSeek-OCR vision-language model, built on
//! Candle. It loads the official checkpoint (SAM-ViT-B + CLIP-L "DeepEncoder", linear
//! projector, DeepSeek-V2 MoE decoder) from memory-mapped safetensors and turns page
//! images into Markdown with layout boxes.
//!
//! The data flows through the modules top to bottom:
//! `job` → `engine` → `generate` → `lm` / `vision` → `model`, `nn`, `memory`, `quant` →
//! `text`, `input`, `output`. Lower modules never use higher ones.

pub mod error;

pub mod input;
pub mod memory;
pub mod model;
pub mod nn;
pub mod output;
pub mod quant;
pub mod text;

pub mod lm;
pub mod vision;

pub mod generate;

pub mod bench;
pub mod device_plan;
pub mod engine;
pub mod parity;

pub mod job;

pub use engine::{Engine, EngineOptions, OcrOutput, RunOptions};
pub use error::{Error, Result};
pub use generate::GenerateOptions;
pub use model::{ModelConfig, ModelVariant, Weights};
pub use text::Task;
pub use vision::Mode;
