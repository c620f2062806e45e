//! The generation loop: prefill once, then one token per step through the KV cache.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::generate::options::GenerateOptions;
use crate::generate::sequence::{CacheSlot, Sequence};
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
/// `false` to stop early. This is a one-sequence run of the staged API
/// ([`Sequence`], [`prefill`], [`step`]).
pub fn generate(
    model: &DeepseekV2,
    inputs_embeds: &Tensor,
    prompt_ids: &[u32],
    opts: &GenerateOptions,
    cache: &mut KvCache,
    eos: u32,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generated> {
    let mut seq = Sequence::with_cache(
        inputs_embeds.clone(),
        prompt_ids.to_vec(),
        opts.clone(),
        CacheSlot::Borrowed(cache),
        eos,
    )?
    .with_callback(Box::new(on_token));
    run_to_end(model, &mut seq)?;
    Ok(seq.finish().0)
}

/// Prefills `seq` and steps it alone until it stops.
fn run_to_end(model: &DeepseekV2, seq: &mut Sequence<'_>) -> Result<()> {
    prefill(model, seq, &mut Taps::off())?;
    while !seq.is_finished() {
        step(model, &mut [&mut *seq])?;
    }
    Ok(())
}

/// Runs the prompt pass of `seq` (recording into `taps`) and chooses its first token.
/// A sequence asking for no new tokens stops at once.
pub fn prefill(model: &DeepseekV2, seq: &mut Sequence<'_>, taps: &mut Taps) -> Result<()> {
    let Some(embeds) = seq.embeds.take() else {
        return Err(Error::request(
            "the sequence is already prefilled",
            "call prefill once per sequence",
        ));
    };
    if seq.opts.max_new_tokens == 0 {
        seq.stop = Some(StopReason::MaxNewTokens);
        return Ok(());
    }
    let t0 = Instant::now();
    let logits = model.forward(&embeds, seq.cache.get(), taps)?;
    drop(embeds);
    seq.accept(&logits)?;
    seq.prefill_time = t0.elapsed();
    Ok(())
}

/// Advances every live (prefilled, unfinished) sequence of `seqs` by one token, in one
/// batched forward pass; finished ones are skipped. Returns how many advanced.
pub fn step(model: &DeepseekV2, seqs: &mut [&mut Sequence<'_>]) -> Result<usize> {
    let mut live: Vec<&mut Sequence<'_>> = seqs
        .iter_mut()
        .map(|s| &mut **s)
        .filter(|s| s.is_prefilled() && !s.is_finished())
        .collect();
    if live.is_empty() {
        return Ok(0);
    }
    let t0 = Instant::now();
    let ids: Vec<u32> = live.iter().map(|s| s.last()).collect();
    let embeds = model.embed(&Tensor::new(ids.as_slice(), model.device())?)?;
    let logits = {
        let mut caches: Vec<&mut KvCache> = live.iter_mut().map(|s| s.cache.get()).collect();
        model.forward_step(&embeds, &mut caches, &mut Taps::off())?
    };
    for (i, s) in live.iter_mut().enumerate() {
        let row = logits.get(i)?;
        if let Some(rec) = s.logits.as_mut() {
            rec.push(row.clone());
        }
        s.accept(&row)?;
    }
    let dt = t0.elapsed();
    for s in live.iter_mut() {
        s.decode_time += dt;
    }
    Ok(live.len())
}
