//! One generation in flight: prompt, KV cache, sampler, n-gram history, stop conditions
//! and callback, advanced by [`prefill`](super::prefill) and [`step`](super::step).

use std::time::Duration;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::generate::decode::{Generated, StopReason};
use crate::generate::ngram::banned_tokens;
use crate::generate::options::GenerateOptions;
use crate::generate::sampling::Sampler;
use crate::memory::KvCache;

/// The KV cache of a [`Sequence`]: its own, or one lent by the caller.
#[derive(Debug)]
pub enum CacheSlot<'a> {
    /// Owned (handed back by [`Sequence::finish`] for reuse).
    Owned(KvCache),
    /// Borrowed for the sequence's lifetime.
    Borrowed(&'a mut KvCache),
}

impl CacheSlot<'_> {
    pub(super) fn get(&mut self) -> &mut KvCache {
        match self {
            CacheSlot::Owned(c) => c,
            CacheSlot::Borrowed(c) => c,
        }
    }

    fn get_ref(&self) -> &KvCache {
        match self {
            CacheSlot::Owned(c) => c,
            CacheSlot::Borrowed(c) => c,
        }
    }
}

/// A per-token callback: sees each generated id right after it is chosen; `false` stops the
/// sequence ([`StopReason::Callback`]), e.g. when the client that streams it went away.
pub type TokenCallback<'a> = Box<dyn FnMut(u32) -> bool + 'a>;

/// One generation in flight: its prompt, its own KV cache, sampler, n-gram history, stop
/// conditions and callback. Made by [`Sequence::new`], started by [`prefill`], advanced by
/// [`step`] (alone or together with other sequences), ended by [`Sequence::finish`].
pub struct Sequence<'a> {
    /// Prompt embeddings until the prefill consumes them.
    pub(super) embeds: Option<Tensor>,
    pub(super) prompt_len: usize,
    /// Prompt ids followed by the generated ids.
    pub(super) ids: Vec<u32>,
    pub(super) opts: GenerateOptions,
    pub(super) eos: u32,
    pub(super) sampler: Sampler,
    pub(super) cache: CacheSlot<'a>,
    pub(super) on_token: Option<TokenCallback<'a>>,
    pub(super) stop: Option<StopReason>,
    /// Ids to feed instead of the sampler's choice (teacher forcing, for parity checks).
    pub(super) forced: std::collections::VecDeque<u32>,
    /// When set, the f32 logits of every step after the prefill are kept here.
    pub(super) logits: Option<Vec<Tensor>>,
    pub(super) prefill_time: Duration,
    pub(super) decode_time: Duration,
}

impl std::fmt::Debug for Sequence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("prompt_len", &self.prompt_len)
            .field("generated", &(self.ids.len() - self.prompt_len))
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl<'a> Sequence<'a> {
    /// A sequence for the prompt `inputs_embeds` `(L, D)` with ids `prompt_ids` (length `L`),
    /// generating with `opts` into `cache` (emptied first; it must hold the prompt).
    pub fn new(
        inputs_embeds: Tensor,
        prompt_ids: Vec<u32>,
        opts: GenerateOptions,
        cache: KvCache,
        eos: u32,
    ) -> Result<Self> {
        Self::with_cache(inputs_embeds, prompt_ids, opts, CacheSlot::Owned(cache), eos)
    }

    /// Like [`Sequence::new`] with an owned or a borrowed cache (which must be empty).
    pub fn with_cache(
        inputs_embeds: Tensor,
        prompt_ids: Vec<u32>,
        opts: GenerateOptions,
        mut cache: CacheSlot<'a>,
        eos: u32,
    ) -> Result<Self> {
        let prompt_len = inputs_embeds.dim(0)?;
        if prompt_len != prompt_ids.len() {
            return Err(Error::request(
                format!("{prompt_len} prompt embeddings but {} prompt ids", prompt_ids.len()),
                "pass the ids the embeddings were built from",
            ));
        }
        if !cache.get().is_empty() {
            return Err(Error::request(
                "generation needs an empty KV cache",
                "call KvCache::reset before reusing a cache",
            ));
        }
        Ok(Self {
            embeds: Some(inputs_embeds),
            prompt_len,
            ids: prompt_ids,
            sampler: Sampler::new(&opts.sampling),
            opts,
            eos,
            cache,
            on_token: None,
            stop: None,
            forced: Default::default(),
            logits: None,
            prefill_time: Duration::ZERO,
            decode_time: Duration::ZERO,
        })
    }

    /// Calls `f` with every generated id; `f` returning `false` stops this sequence.
    pub fn with_callback(mut self, f: TokenCallback<'a>) -> Self {
        self.on_token = Some(f);
        self
    }

    /// Feeds `ids` (in order) as the next tokens instead of the sampler's choices; once they
    /// are used up the sampler chooses again. Parity checks use it for teacher forcing.
    pub fn force(&mut self, ids: &[u32]) {
        self.forced.extend(ids);
    }

    /// Keeps the f32 logits `(vocab)` of every decode step (not the prefill) for
    /// [`Sequence::recorded_logits`].
    pub fn record_logits(&mut self) {
        self.logits = Some(Vec::new());
    }

    /// The logits recorded since [`Sequence::record_logits`].
    pub fn recorded_logits(&self) -> &[Tensor] {
        self.logits.as_deref().unwrap_or(&[])
    }

    /// Whether the prompt pass has run.
    pub fn is_prefilled(&self) -> bool {
        self.embeds.is_none()
    }

    /// Whether the sequence has stopped.
    pub fn is_finished(&self) -> bool {
        self.stop.is_some()
    }

    /// Why it stopped (`None` while running).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Stops the sequence before its next step ([`StopReason::Callback`]).
    pub fn cancel(&mut self) {
        if self.stop.is_none() {
            self.stop = Some(StopReason::Callback);
        }
    }

    /// Prompt length in tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The ids generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }

    /// The sequence's KV cache.
    pub fn cache(&self) -> &KvCache {
        self.cache.get_ref()
    }

    /// The generation settings.
    pub fn options(&self) -> &GenerateOptions {
        &self.opts
    }

    /// Time of the prompt pass up to the first chosen token.
    pub fn prefill_time(&self) -> Duration {
        self.prefill_time
    }

    /// Wall time of the decode steps this sequence took part in.
    pub fn decode_time(&self) -> Duration {
        self.decode_time
    }

    /// The result, and the cache back when the sequence owned it (for reuse by the next one).
    pub fn finish(self) -> (Generated, Option<KvCache>) {
        let ids = self.ids[self.prompt_len..].to_vec();
        (
            Generated {
                ids,
                stop: self.stop.unwrap_or(StopReason::Callback),
                prefill_time: self.prefill_time,
                decode_time: self.decode_time,
            },
            match self.cache {
                CacheSlot::Owned(c) => Some(c),
                CacheSlot::Borrowed(_) => None,
            },
        )
    }

    /// Takes the next id from `logits` (one row, f32) and applies the stop conditions.
    pub(super) fn accept(&mut self, logits: &Tensor) -> Result<()> {
        let mut row = logits.to_vec1::<f32>()?;
        let next = match self.forced.pop_front() {
            Some(id) => id,
            None => {
                let banned = banned_tokens(&self.opts.ngram, &self.ids, self.prompt_len);
                self.sampler.pick(&mut row, &banned)
            }
        };
        self.ids.push(next);
        let n_new = self.ids.len() - self.prompt_len;
        let keep_going = match self.on_token.as_mut() {
            Some(f) => f(next),
            None => true,
        };
        self.stop = if !keep_going {
            Some(StopReason::Callback)
        } else if next == self.eos && !self.opts.ignore_eos {
            Some(StopReason::Eos)
        } else if n_new >= self.opts.max_new_tokens {
            Some(StopReason::MaxNewTokens)
        } else if self.cache.get().remaining() == 0 {
            Some(StopReason::CacheFull)
        } else {
            None
        };
        Ok(())
    }

    /// The last chosen id (the input of the next step).
    pub(super) fn last(&self) -> u32 {
        self.ids.last().copied().unwrap_or(self.eos)
    }
}
