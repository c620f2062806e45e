//! Choosing the next token from the logits (spec §9).
//!
//! Greedy is an argmax over every logit with ties going to the lowest id, as torch's
//! argmax does (trap 22). Sampling (temperature, then top-k, then top-p) is reproducible
//! from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::generate::options::Sampling;

/// Index of the largest value; ties go to the lowest index; NaN counts as largest (as in
/// torch). Returns 0 for an empty slice.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in values.iter().enumerate().skip(1) {
        let b = values[best];
        if !b.is_nan() && (v > b || v.is_nan()) {
            best = i;
        }
    }
    best as u32
}

/// A token chooser with its own random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `sampling` (the seed of [`Sampling::Sample`] fixes the random stream).
    pub fn new(sampling: &Sampling) -> Self {
        let seed = match sampling {
            Sampling::Greedy => 0,
            Sampling::Sample { seed, .. } => *seed,
        };
        Self {
            sampling: sampling.clone(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Picks the next id from `logits` (modified in place: `banned` ids become −∞).
    /// A sampling temperature ≤ 0 means greedy, as in the official scripts.
    pub fn pick(&mut self, logits: &mut [f32], banned: &[u32]) -> u32 {
        for &id in banned {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        match self.sampling {
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
                ..
            } if temperature > 0.0 => self.sample(logits, temperature, top_k, top_p),
            _ => argmax(logits),
        }
    }

    fn sample(&mut self, logits: &[f32], temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> u32 {
        let max = logits
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return argmax(logits);
        }
        // Candidates by descending logit (ties by id), with unnormalised probabilities.
        let mut cand: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (i as u32, ((v - max) as f64 / temperature).exp()))
            .collect();
        cand.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        if let Some(k) = top_k {
            cand.truncate(k.max(1));
        }
        let total: f64 = cand.iter().map(|c| c.1).sum();
        if let Some(p) = top_p {
            // Keep the smallest head whose mass reaches p (at least one candidate).
            let mut mass = 0.0;
            let mut keep = 0;
            for c in &cand {
                mass += c.1 / total;
                keep += 1;
                if mass >= p {
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        let total: f64 = cand.iter().map(|c| c.1).sum();
        let mut r = self.rng.random::<f64>() * total;
        for c in &cand {
            if r < c.1 {
                return c.0;
            }
            r -= c.1;
        }
        cand.last().map(|c| c.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_ties_and_bans() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        let mut s = Sampler::new(&Sampling::Greedy);
        assert_eq!(s.pick(&mut [1.0, 3.0, 3.0, 2.0], &[1]), 2);
        assert_eq!(s.pick(&mut [1.0, 3.0], &[7]), 1);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits = vec![0.0f32, 1.0, 2.0, 3.0, 2.5];
        let opts = Sampling::Sample {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
            seed: 42,
        };
        let draw = |o: &Sampling| {
            let mut s = Sampler::new(o);
            (0..50).map(|_| s.pick(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = draw(&opts);
        assert_eq!(a, draw(&opts));
        assert!(a.iter().all(|&t| t == 3 || t == 4), "{a:?}");
        assert!(a.contains(&3) && a.contains(&4));
        let p = Sampling::Sample {
            temperature: 1.0,
            top_k: None,
            top_p: Some(1e-6),
            seed: 1,
        };
        assert!(draw(&p).iter().all(|&t| t == 3));
    }
}
