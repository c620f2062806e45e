//! Mixture-of-experts feed-forward block (layers 1.. of the decoder).
//!
//! `FFN(x) = Σ_k w_k · E_{id_k}(x) + shared(x)` (spec §7.5). Tokens are grouped by expert,
//! so each selected expert runs once on all of its rows (one GEMM per expert at prefill)
//! and experts nobody chose are never touched; at decode only the few selected experts
//! run. The weighted sum is accumulated in f32 and cast to the model dtype once, as the
//! reference does.
//!
//! With f32 activations on the CPU the gather of each expert's rows and the weighted
//! scatter-add run on host slices (same arithmetic, same order as the candle ops), so an
//! expert costs its three projections and one small input tensor; a decode step feeds `x`
//! itself to each of its experts.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lm::host::{is_host_f32, with_f32};
use crate::lm::mlp::Mlp;
use crate::lm::router::{Router, Routing};
use crate::model::config::LmConfig;
use crate::nn::precision::Precision;
use crate::nn::taps::Taps;

/// Routed experts plus the always-on shared experts.
#[derive(Debug, Clone)]
pub struct Moe {
    router: Router,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
}

impl Moe {
    /// Loads `gate`, `experts.N` and `shared_experts` from `vb` (`…mlp`); experts in
    /// `precision`, the router in f32.
    pub fn load(vb: VarBuilder, cfg: &LmConfig, precision: Precision) -> Result<Self> {
        let router = Router::load(vb.pp("gate"), cfg)?;
        let experts = (0..cfg.n_routed_experts)
            .map(|e| {
                Mlp::load(
                    vb.pp("experts").pp(e),
                    cfg.hidden_size,
                    cfg.moe_intermediate_size,
                    precision,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let shared = if cfg.n_shared_experts > 0 {
            Some(Mlp::load(
                vb.pp("shared_experts"),
                cfg.hidden_size,
                cfg.moe_intermediate_size * cfg.n_shared_experts,
                precision,
            )?)
        } else {
            None
        };
        Ok(Self {
            router,
            experts,
            shared,
        })
    }

    /// `x` `(L, D)` → `(L, D)`. Records `moe_l{layer}_topk_weight` / `_topk_idx` in `taps`.
    pub fn forward(&self, x: &Tensor, layer: usize, taps: &mut Taps) -> Result<Tensor> {
        self.forward_with(x, layer, taps, false)
    }

    /// [`forward`](Self::forward) for the rows of a decode step, each row (router and
    /// experts) computed as it is alone (see [`crate::lm::rows`]).
    pub fn forward_step(&self, x: &Tensor, layer: usize, taps: &mut Taps) -> Result<Tensor> {
        self.forward_with(x, layer, taps, true)
    }

    fn forward_with(&self, x: &Tensor, layer: usize, taps: &mut Taps, step: bool) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let routing = if step {
            self.router.route_step(x)?
        } else {
            self.router.route(x)?
        };
        if taps.enabled() {
            let k = routing.top_k;
            taps.put(
                format!("moe_l{layer}_topk_weight"),
                &Tensor::from_vec(routing.weights.clone(), (len, k), x.device())?,
            );
            taps.put(
                format!("moe_l{layer}_topk_idx"),
                &Tensor::from_vec(routing.ids.clone(), (len, k), x.device())?,
            );
        }
        let routed = if is_host_f32(x) {
            self.routed_host(x, &routing, step)?
        } else {
            self.routed(x, &routing, step)?
        };
        match &self.shared {
            Some(shared) => routed + run(shared, x, step)?,
            None => Ok(routed),
        }
    }

    fn expert(&self, e: usize) -> Result<&Mlp> {
        match self.experts.get(e) {
            Some(mlp) => Ok(mlp),
            None => candle_core::bail!("router chose expert {e}, which does not exist"),
        }
    }

    /// Routed part with candle ops (any device and dtype).
    fn routed(&self, x: &Tensor, routing: &Routing, step: bool) -> Result<Tensor> {
        let (len, dim) = x.dims2()?;
        // Weighted expert outputs in f32, stacked expert by expert, then summed into their
        // token rows with a single scatter-add.
        let mut outs = Vec::new();
        let mut all_rows = Vec::with_capacity(routing.ids.len());
        for (expert, (rows, weights)) in group_by_expert(routing, self.experts.len()).into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let mlp = self.expert(expert)?;
            let n = rows.len();
            let index = Tensor::from_vec(rows.clone(), n, x.device())?;
            let w = Tensor::from_vec(weights, (n, 1), x.device())?;
            let out = run(mlp, &x.index_select(&index, 0)?, step)?.to_dtype(DType::F32)?;
            outs.push(out.broadcast_mul(&w)?);
            all_rows.extend(rows);
        }
        let n = all_rows.len();
        let acc = Tensor::zeros((len, dim), DType::F32, x.device())?.index_add(
            &Tensor::from_vec(all_rows, n, x.device())?,
            &Tensor::cat(&outs, 0)?,
            0,
        )?;
        acc.to_dtype(x.dtype())
    }

    /// Routed part for f32 `x` on the CPU: host gather and weighted scatter-add around the
    /// expert calls, in expert order as [`routed`](Self::routed) does.
    fn routed_host(&self, x: &Tensor, routing: &Routing, step: bool) -> Result<Tensor> {
        let (len, dim) = x.dims2()?;
        let mut acc = vec![0f32; len * dim];
        for (expert, (rows, weights)) in group_by_expert(routing, self.experts.len()).into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let mlp = self.expert(expert)?;
            let input = if len == 1 {
                x.clone()
            } else {
                let gathered = with_f32(x, |xs| {
                    let mut g = Vec::with_capacity(rows.len() * dim);
                    for &r in &rows {
                        g.extend_from_slice(&xs[r as usize * dim..][..dim]);
                    }
                    g
                })?;
                Tensor::from_vec(gathered, (rows.len(), dim), x.device())?
            };
            let out = run(mlp, &input, step)?;
            with_f32(&out, |ys| {
                for (i, (&r, &w)) in rows.iter().zip(&weights).enumerate() {
                    let dst = &mut acc[r as usize * dim..][..dim];
                    for (a, &y) in dst.iter_mut().zip(&ys[i * dim..][..dim]) {
                        *a += y * w;
                    }
                }
            })?;
        }
        Tensor::from_vec(acc, (len, dim), x.device())
    }
}

/// An MLP on `x`; on the rows of a decode step (`step`) each row as it is computed alone.
fn run(mlp: &Mlp, x: &Tensor, step: bool) -> Result<Tensor> {
    if step {
        mlp.forward_step(x)
    } else {
        mlp.forward(x)
    }
}

/// For each expert: the token rows routed to it and the matching weights.
fn group_by_expert(r: &Routing, n_experts: usize) -> Vec<(Vec<u32>, Vec<f32>)> {
    let mut groups = vec![(Vec::new(), Vec::new()); n_experts.max(1)];
    for (slot, (&e, &w)) in r.ids.iter().zip(&r.weights).enumerate() {
        let token = (slot / r.top_k) as u32;
        // An out-of-range id gets its own group so `forward` can report it.
        if e as usize >= groups.len() {
            groups.resize(e as usize + 1, (Vec::new(), Vec::new()));
        }
        groups[e as usize].0.push(token);
        groups[e as usize].1.push(w);
    }
    groups
}
