//! Decomposed relative-position tables of one SAM attention layer (spec §5.4).
//!
//! Each layer stores a height table and a width table of `2·size − 1` rows, one per relative
//! offset. Attention over an `h×w` grid needs them gathered as `R[q, k] = T[q − k + size − 1]`;
//! global layers trained at 64×64 first resample their 127-row tables linearly when the grid
//! differs. The gathered tables depend only on the grid, so they are cached per grid.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::vision::pos_interp::resize_linear;

/// Gathered `(R_h, R_w)` tables, each `(size, size, head_dim)`, and whether they were resampled.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// `R_h[q_row, k_row, :]`.
    pub h: Tensor,
    /// `R_w[q_col, k_col, :]`.
    pub w: Tensor,
    /// Whether the stored tables had to be resampled to fit the grid.
    pub resized: bool,
}

/// The `rel_pos_h` / `rel_pos_w` tables of one attention layer.
#[derive(Debug)]
pub struct RelPos {
    table_h: Tensor,
    table_w: Tensor,
    cache: Mutex<HashMap<(usize, usize), Gathered>>,
}

impl RelPos {
    /// Loads `rel_pos_h` and `rel_pos_w`, each `(len, head_dim)`.
    pub fn load(vb: VarBuilder, len: usize, head_dim: usize) -> Result<Self> {
        Ok(Self {
            table_h: vb.get((len, head_dim), "rel_pos_h")?,
            table_w: vb.get((len, head_dim), "rel_pos_w")?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The tables gathered for an `h×w` grid (cached).
    pub fn gathered(&self, h: usize, w: usize) -> Result<Gathered> {
        // A poisoned lock only means another thread panicked mid-insert of a complete value.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = cache.get(&(h, w)) {
            return Ok(g.clone());
        }
        let (gh, rh) = gather(&self.table_h, h)?;
        let (gw, rw) = gather(&self.table_w, w)?;
        let g = Gathered {
            h: gh,
            w: gw,
            resized: rh || rw,
        };
        cache.insert((h, w), g.clone());
        Ok(g)
    }
}

/// Resamples `table` to `2·size − 1` rows if needed and gathers `(size, size, c)`.
fn gather(table: &Tensor, size: usize) -> Result<(Tensor, bool)> {
    let (len, c) = table.dims2()?;
    let need = 2 * size - 1;
    let host = table.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (host, resized) = if len == need {
        (host, false)
    } else {
        (resize_linear(&host, len, c, need), true)
    };
    let mut out = Vec::with_capacity(size * size * c);
    for q in 0..size {
        for k in 0..size {
            let r = q + size - 1 - k;
            out.extend_from_slice(&host[r * c..(r + 1) * c]);
        }
    }
    let t = Tensor::from_vec(out, (size, size, c), table.device())?.to_dtype(table.dtype())?;
    Ok((t, resized))
}
