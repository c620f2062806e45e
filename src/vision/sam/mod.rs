//! SAM ViT-B image encoder (spec §5): patch embedding plus absolute position, windowed and
//! global pre-norm blocks with decomposed relative position, then the neck and two stride-2
//! convolutions. Input `(B, 3, S, S)` pixels, output `(B, C3, S/64, S/64)` features.

pub mod attention;
pub mod biased_softmax;
pub mod block;
pub mod neck;
pub mod patch_embed;
pub mod rel_pos;
pub mod window;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::config::SamConfig;
use crate::nn::precision::Precision;
use crate::nn::Taps;
use crate::vision::pos_interp::resize_bicubic_aa;

use self::block::Block;
use self::neck::Neck;
use self::patch_embed::PatchEmbed;

/// The SAM image encoder (`ImageEncoderViT`).
#[derive(Debug)]
pub struct Sam {
    patch_embed: PatchEmbed,
    /// `(1, P, P, E)` table of the pretraining grid.
    pos_embed: Tensor,
    /// Position tables resampled to other grids, by grid side.
    pos_cache: Mutex<HashMap<usize, Tensor>>,
    blocks: Vec<Block>,
    neck: Neck,
    cfg: SamConfig,
}

impl Sam {
    /// Loads the encoder from `vb` (= `model.sam_model`), its linear layers (and the GEMM-shaped
    /// convolutions) in `precision`.
    pub fn load(vb: VarBuilder, cfg: &SamConfig, precision: Precision) -> Result<Self> {
        if cfg.patch_size == 0 {
            candle_core::bail!("SAM patch size must be positive");
        }
        let p = cfg.pos_grid();
        let blocks = (0..cfg.depth)
            .map(|i| Block::load(vb.pp("blocks").pp(i), cfg, i, precision))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embed: PatchEmbed::load(vb.pp("patch_embed"), 3, cfg.width, cfg.patch_size, precision)?,
            pos_embed: vb.get((1, p, p, cfg.width), "pos_embed")?,
            pos_cache: Mutex::new(HashMap::new()),
            blocks,
            neck: Neck::load(vb.clone(), cfg, precision)?,
            cfg: cfg.clone(),
        })
    }

    /// The absolute position table for a `g×g` token grid, `(1, g, g, E)`.
    ///
    /// Other grids than the pretraining one get the antialiased bicubic resample, computed
    /// once on the host in f32 and cached (tap `sam_pos_embed_interp_{g}`).
    pub fn pos_embed_for(&self, g: usize, taps: &mut Taps) -> Result<Tensor> {
        let p = self.cfg.pos_grid();
        if g == p {
            return Ok(self.pos_embed.clone());
        }
        let t = {
            let mut cache = self.pos_cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.get(&g) {
                Some(t) => t.clone(),
                None => {
                    let e = self.cfg.width;
                    let host = self.pos_embed.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    let out = resize_bicubic_aa(&host, p, p, e, g, g);
                    let t = Tensor::from_vec(out, (1, g, g, e), self.pos_embed.device())?
                        .to_dtype(self.pos_embed.dtype())?;
                    cache.insert(g, t.clone());
                    t
                }
            }
        };
        if taps.enabled() {
            taps.put(format!("sam_pos_embed_interp_{g}"), &t);
        }
        Ok(t)
    }

    /// `(B, 3, S, S)` → `(B, C3, S/64, S/64)`.
    ///
    /// Debug taps (`dbg_sam_*`) describe the batch of this call; the encoder runs the global
    /// view last, so after a full encode they hold the global view's values.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let (_, c, hgt, wid) = x.dims4()?;
        if c != 3 || hgt != wid || hgt < self.cfg.patch_size {
            candle_core::bail!(
                "SAM expects square (B, 3, S, S) views with S >= {}, got {:?}",
                self.cfg.patch_size,
                x.dims()
            );
        }
        let x = self.patch_embed.forward(x)?;
        taps.put("dbg_sam_patch_embed", &x);
        let g = x.dim(1)?;
        let mut x = x.broadcast_add(&self.pos_embed_for(g, taps)?)?;
        taps.put("dbg_sam_patch_pos", &x);
        for (i, blk) in self.blocks.iter().enumerate() {
            x = blk.forward(&x, taps)?;
            if taps.enabled() {
                taps.put(format!("dbg_sam_block{i}"), &x);
            }
        }
        self.neck.forward(&x, taps)
    }
}
