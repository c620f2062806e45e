//! The generation loop: prefill once, then one token per step through the KV cache.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::generate::ngram::banned_tokens;
use crate::generate::options::GenerateOptions;
use crate::generate::sampling::Sampler;
use crate::lm::DeepseekV2;
use crate::memory::KvCache;
use crate::nn::taps::Taps;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The end-of-sequence id was generated (it is the last of the returned ids).
    Eos,
    /// `max_new_tokens` ids were generated.
    MaxNewTokens,
    /// The KV cache (the job's position budget) is full.
    CacheFull,
    /// The `on_token` callback asked to stop.
    Callback,
}

/// Result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated ids (EOS included when that is why it stopped, as in HF).
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Time of the prompt pass up to the first chosen token.
    pub prefill_time: Duration,
    /// Time of all later steps.
    pub decode_time: Duration,
}

/// KV-cache positions a job needs: the prompt plus every generated token except the last
/// (the last chosen token is never fed back), capped at `limit` (the position limit).
pub fn cache_positions(prompt_len: usize, max_new_tokens: usize, limit: usize) -> usize {
    (prompt_len + max_new_tokens.saturating_sub(1))
        .min(limit)
        .max(prompt_len.min(limit))
}

/// Generates after the prompt whose embeddings are `inputs_embeds` `(L, D)` and whose ids
/// are `prompt_ids` (length `L`; the n-gram guard reads them).
///
/// `cache` must be empty and have room for the prompt; generation stops when it is full.
/// `on_token` sees every generated id (EOS included) right after it is chosen and returns
/// `false` to stop early.
pub fn generate(
    model: &DeepseekV2,
    inputs_embeds: &Tensor,
    prompt_ids: &[u32],
    opts: &GenerateOptions,
    cache: &mut KvCache,
    eos: u32,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generated> {
    let prompt_len = inputs_embeds.dim(0)?;
    if prompt_len != prompt_ids.len() {
        return Err(Error::request(
            format!("{prompt_len} prompt embeddings but {} prompt ids", prompt_ids.len()),
            "pass the ids the embeddings were built from",
        ));
    }
    if !cache.is_empty() {
        return Err(Error::request(
            "generation needs an empty KV cache",
            "call KvCache::reset before reusing a cache",
        ));
    }
    let mut sampler = Sampler::new(&opts.sampling);
    let mut seq: Vec<u32> = prompt_ids.to_vec();
    let mut taps = Taps::off();
    let t0 = Instant::now();
    if opts.max_new_tokens == 0 {
        return Ok(Generated {
            ids: Vec::new(),
            stop: StopReason::MaxNewTokens,
            prefill_time: Duration::ZERO,
            decode_time: Duration::ZERO,
        });
    }
    let mut logits = model.forward(inputs_embeds, cache, &mut taps)?;
    let mut prefill_time = None;
    let stop = loop {
        let mut row = logits.to_vec1::<f32>()?;
        let banned = banned_tokens(&opts.ngram, &seq, prompt_len);
        let next = sampler.pick(&mut row, &banned);
        if prefill_time.is_none() {
            prefill_time = Some(t0.elapsed());
        }
        seq.push(next);
        let n_new = seq.len() - prompt_len;
        if !on_token(next) {
            break StopReason::Callback;
        }
        if next == eos && !opts.ignore_eos {
            break StopReason::Eos;
        }
        if n_new >= opts.max_new_tokens {
            break StopReason::MaxNewTokens;
        }
        if cache.remaining() == 0 {
            break StopReason::CacheFull;
        }
        let ids = Tensor::new(&[next], model.device())?;
        logits = model.forward(&model.embed(&ids)?, cache, &mut taps)?;
    };
    let prefill_time = prefill_time.unwrap_or_default();
    let decode_time = t0.elapsed().saturating_sub(prefill_time);
    Ok(Generated {
        ids: seq.split_off(prompt_len),
        stop,
        prefill_time,
        decode_time,
    })
}
