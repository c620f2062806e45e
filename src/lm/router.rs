//! The MoE router ("gate"): which experts each token goes to, and with what weight.
//!
//! Scores are a softmax (in f32) over `gate.weight · x`; the top-k experts are chosen
//! greedily, ordered by descending score with ties going to the lower expert index
//! (torch leaves tie order unspecified; trap 7). Weights are the raw scores — the
//! official config does not renormalise — times `routed_scaling_factor`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lm::rows::linear_rows;
use crate::model::config::LmConfig;
use crate::nn::Linear;

/// The routing decision for a block of tokens, on the host (it drives the expert loop).
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Experts per token.
    pub top_k: usize,
    /// `(tokens × top_k)` expert ids, row-major, each row by descending score.
    pub ids: Vec<u32>,
    /// `(tokens × top_k)` weights matching `ids`.
    pub weights: Vec<f32>,
}

/// The router of one MoE layer.
#[derive(Debug, Clone)]
pub struct Router {
    gate: Linear,
    top_k: usize,
    norm_topk_prob: bool,
    scaling: f64,
}

impl Router {
    /// Loads `weight` `(n_routed_experts, hidden)` from `vb` (`…mlp.gate`).
    pub fn load(vb: VarBuilder, cfg: &LmConfig) -> Result<Self> {
        if cfg.num_experts_per_tok == 0 || cfg.num_experts_per_tok > cfg.n_routed_experts {
            candle_core::bail!(
                "cannot route to {} of {} experts",
                cfg.num_experts_per_tok,
                cfg.n_routed_experts
            )
        }
        Ok(Self {
            gate: Linear::load(vb, cfg.hidden_size, cfg.n_routed_experts, false)?,
            top_k: cfg.num_experts_per_tok,
            norm_topk_prob: cfg.norm_topk_prob,
            scaling: cfg.routed_scaling_factor,
        })
    }

    /// Routes `x` `(L, D)`.
    pub fn route(&self, x: &Tensor) -> Result<Routing> {
        self.choose(&self.gate.forward(x)?)
    }

    /// Routes the rows of a decode step, each row's scores computed as they are alone
    /// (see [`linear_rows`]).
    pub fn route_step(&self, x: &Tensor) -> Result<Routing> {
        self.choose(&linear_rows(&self.gate, x)?)
    }

    /// The top-k experts and weights of each row of the gate logits.
    fn choose(&self, logits: &Tensor) -> Result<Routing> {
        let logits = logits.to_dtype(DType::F32)?;
        let scores = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        let k = self.top_k;
        let mut ids = Vec::with_capacity(scores.len() * k);
        let mut weights = Vec::with_capacity(scores.len() * k);
        for row in &scores {
            let top = top_k_lowest_index(row, k);
            let mut w: Vec<f32> = top.iter().map(|&e| row[e]).collect();
            if self.norm_topk_prob {
                // Same small guard against a zero sum as the reference.
                let sum: f32 = w.iter().sum::<f32>() + 1e-20;
                w.iter_mut().for_each(|x| *x /= sum);
            }
            if self.scaling != 1.0 {
                w.iter_mut().for_each(|x| *x = (*x as f64 * self.scaling) as f32);
            }
            ids.extend(top.iter().map(|&e| e as u32));
            weights.extend(w);
        }
        Ok(Routing { top_k: k, ids, weights })
    }
}

/// Indices of the `k` largest values, largest first, equal values by ascending index.
/// NaN scores sort last.
pub fn top_k_lowest_index(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (row[a], row[b]);
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_lower_index() {
        assert_eq!(top_k_lowest_index(&[0.1, 0.3, 0.3, 0.2, 0.3], 3), vec![1, 2, 4]);
        assert_eq!(top_k_lowest_index(&[0.5, f32::NAN, 0.7], 2), vec![2, 0]);
    }
}
