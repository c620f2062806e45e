//! Continuous batching: pages decode together, and a page that finishes frees its slot for
//! the next waiting page at once.
//!
//! [`BatchRunner::run`] pulls page jobs from an iterator only when a slot is free (so a PDF's
//! pages are rendered as they are needed), prepares and prefills each joining page (vision
//! and prompt pass run one page at a time), then advances every live page by one token per
//! [`Engine::step`]. A page that stops is finished, reported through the completion
//! callback, and its KV cache goes back to the pool for the next page. A failure of one page
//! (bad image, prompt too long, over the memory budget) is reported for that page and the
//! others go on; a failure of the batched step itself ends the run.

use std::time::{Duration, Instant};

use image::RgbImage;

use crate::engine::{Engine, OcrOutput, Page, RunOptions, TextSink};
use crate::error::Result;
use crate::memory::KvPool;
use crate::nn::Taps;

/// One page to run: its image, options, optional text sink and a caller's tag.
pub struct PageJob<'a, T> {
    /// Handed back with the result (a file name, a page number, a request id).
    pub tag: T,
    pub image: RgbImage,
    pub opts: RunOptions,
    /// Receives the page's text as it is generated; `false` stops the page.
    pub on_text: Option<TextSink<'a>>,
}

impl<T> PageJob<'_, T> {
    /// A job without a text sink.
    pub fn new(tag: T, image: RgbImage, opts: RunOptions) -> Self {
        Self {
            tag,
            image,
            opts,
            on_text: None,
        }
    }
}

/// What a run did, for throughput reports.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// Pages finished (successfully or not).
    pub pages: usize,
    /// Batched decode steps taken.
    pub steps: usize,
    /// Tokens produced by those steps (the sum of the live pages over all steps).
    pub step_tokens: usize,
    /// Wall time inside the decode steps.
    pub step_time: Duration,
    /// Wall time preparing (preprocessing + vision + prompt) and prefilling joining pages.
    pub join_time: Duration,
    /// Most pages live at once.
    pub max_live: usize,
    /// KV caches allocated by the pool (a free cache too short for the next page is
    /// dropped and a longer one made, so this can exceed the batch size).
    pub caches_allocated: usize,
    /// The most KV caches held at once (in use and free in the pool): never above the
    /// batch size.
    pub max_caches_held: usize,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl BatchStats {
    /// Aggregate decode tokens per second over all pages (decode steps only).
    pub fn decode_tok_per_s(&self) -> f64 {
        self.step_tokens as f64 / self.step_time.as_secs_f64().max(1e-9)
    }

    /// Pages per minute over the whole run.
    pub fn pages_per_min(&self) -> f64 {
        self.pages as f64 * 60.0 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs page jobs through one engine with up to `max_batch` pages decoding together.
pub struct BatchRunner<'e> {
    engine: &'e Engine,
    max_batch: usize,
    pool: KvPool,
}

impl<'e> BatchRunner<'e> {
    /// A runner decoding at most `max_batch` pages at once (at least 1).
    pub fn new(engine: &'e Engine, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        Self {
            engine,
            max_batch,
            pool: KvPool::new(max_batch),
        }
    }

    /// The most pages decoding at once.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Runs every job of `jobs`, calling `on_done(tag, result, elapsed)` as each page ends
    /// (in the order they finish; `elapsed` runs from the moment the page joined).
    /// `on_done` returning an error ends the run with it.
    pub fn run<T, I, F>(&mut self, jobs: I, mut on_done: F) -> Result<BatchStats>
    where
        I: IntoIterator<Item = PageJob<'e, T>>,
        F: FnMut(T, Result<OcrOutput>, Duration) -> Result<()>,
    {
        let t_run = Instant::now();
        let engine = self.engine;
        let mut stats = BatchStats::default();
        let mut jobs = jobs.into_iter();
        let mut live: Vec<(T, Page<'e>, Instant)> = Vec::with_capacity(self.max_batch);
        let mut exhausted = false;
        loop {
            // Fill free slots with waiting pages.
            while live.len() < self.max_batch && !exhausted {
                let Some(job) = jobs.next() else {
                    exhausted = true;
                    break;
                };
                let t0 = Instant::now();
                let tag = job.tag;
                match self.join(job.image, &job.opts, job.on_text) {
                    Ok(page) => {
                        stats.join_time += t0.elapsed();
                        if page.is_finished() {
                            let out = self.retire(page);
                            stats.pages += 1;
                            on_done(tag, out, t0.elapsed())?;
                        } else {
                            live.push((tag, page, t0));
                        }
                    }
                    Err(e) => {
                        stats.join_time += t0.elapsed();
                        stats.pages += 1;
                        on_done(tag, Err(e), t0.elapsed())?;
                    }
                }
            }
            if live.is_empty() {
                break;
            }
            stats.max_live = stats.max_live.max(live.len());
            let t0 = Instant::now();
            let n = {
                let mut pages: Vec<&mut Page<'e>> = live.iter_mut().map(|(_, p, _)| p).collect();
                engine.step(&mut pages)?
            };
            stats.step_time += t0.elapsed();
            stats.steps += 1;
            stats.step_tokens += n;
            let mut i = 0;
            while i < live.len() {
                if live[i].1.is_finished() {
                    let (tag, page, joined) = live.remove(i);
                    let out = self.retire(page);
                    stats.pages += 1;
                    on_done(tag, out, joined.elapsed())?;
                } else {
                    i += 1;
                }
            }
        }
        stats.caches_allocated = self.pool.allocated();
        stats.max_caches_held = self.pool.peak_held();
        stats.wall = t_run.elapsed();
        Ok(stats)
    }

    /// Prepares and prefills one page with a cache from the pool, after checking the memory
    /// plan of a full batch of such pages against the budget.
    fn join(&mut self, image: RgbImage, opts: &RunOptions, on_text: Option<TextSink<'e>>) -> Result<Page<'e>> {
        let engine = self.engine;
        engine
            .memory_plan_batch(opts, image.dimensions(), self.max_batch)?
            .check(engine.options().memory_budget)?;
        let prepared = engine.prepare(&image, opts, &mut Taps::off())?;
        drop(image);
        let need = engine.cache_len_of(&prepared);
        let cache = self.pool.take(need, |n| engine.language_model().new_cache(n))?;
        let mut page = match engine.admit(prepared, Some(cache), on_text) {
            Ok(page) => page,
            Err(e) => {
                self.pool.forget();
                return Err(e);
            }
        };
        if let Err(e) = engine.prefill(&mut page, &mut Taps::off()) {
            // The cache is still good: hand it back.
            if let Ok((_, cache)) = engine.finish(page) {
                self.pool.give(cache);
            } else {
                self.pool.forget();
            }
            return Err(e);
        }
        Ok(page)
    }

    /// Finishes a page and returns its cache to the pool.
    fn retire(&mut self, page: Page<'e>) -> Result<OcrOutput> {
        match self.engine.finish(page) {
            Ok((out, cache)) => {
                self.pool.give(cache);
                Ok(out)
            }
            Err(e) => {
                self.pool.forget();
                Err(e)
            }
        }
    }
}
