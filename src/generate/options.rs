//! Generation settings (spec §9).

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Argmax over all logits, ties to the lowest id (the official setting).
    Greedy,
    /// Temperature sampling with optional top-k / top-p, reproducible with `seed`.
    Sample {
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        seed: u64,
    },
}

/// The no-repeat n-gram guard (spec §9.2).
#[derive(Debug, Clone, PartialEq)]
pub enum NgramGuard {
    /// No guard.
    Off,
    /// HF transformers: bans over the whole sequence (prompt included), no window.
    Hf { size: usize },
    /// vLLM scripts: generated ids only, within a window, whitelisted ids never banned.
    Vllm {
        size: usize,
        window: usize,
        whitelist: Vec<u32>,
    },
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Maximum number of new tokens (official: 8192).
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub ngram: NgramGuard,
    /// Keep generating after EOS (benchmarks use a fixed length).
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    /// The official HF `infer()` settings: greedy, 8192 new tokens, n-gram size 20.
    fn default() -> Self {
        Self {
            max_new_tokens: 8192,
            sampling: Sampling::Greedy,
            ngram: NgramGuard::Hf { size: 20 },
            ignore_eos: false,
        }
    }
}
