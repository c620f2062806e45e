//! DeepEncoder V2 of DeepSeek-OCR 2 (spec-ocr2 §2, §5–§7): SAM (version 1's blocks, `net_3`
//! to the encoder width), the Qwen2 decoder-as-encoder with learnable queries and the mixed
//! mask, a linear projector of the query outputs, and the flat token layout
//! `[tile_0 … tile_{k−1} ; global ; view_seperator]` (no newlines, no grid, trap T5).

pub mod attention;
pub mod mask;
pub mod preprocess;
pub mod qwen2;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelVariant};
use crate::nn::precision::Precision;
use crate::nn::{Linear, Taps};
use crate::vision::sam::Sam;

use self::qwen2::{Qwen2Encoder, ViewRole};

/// SAM + Qwen2 encoder + projector + separator.
#[derive(Debug)]
pub struct DeepEncoderV2 {
    sam: Sam,
    encoder: Qwen2Encoder,
    projector: Linear,
    /// `(D)`, once after the global block (checkpoint spelling).
    view_seperator: Tensor,
}

impl DeepEncoderV2 {
    /// Loads from `vb` rooted at the checkpoint root, in f32 (the parity mode).
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Self::load_with(vb, cfg, Precision::F32)
    }

    /// Loads with every linear layer (SAM, encoder, projector) in `precision`.
    pub fn load_with(vb: VarBuilder, cfg: &ModelConfig, precision: Precision) -> Result<Self> {
        let Some(enc) = cfg.qwen2_encoder() else {
            return Err(Error::request(
                format!("DeepEncoder V2 needs a DeepSeek-OCR-2 config, got {}", cfg.variant()),
                "load the encoder that matches the model variant (vision::load_encoder)",
            ));
        };
        let m = vb.pp("model");
        let p = &cfg.projector;
        Ok(Self {
            sam: Sam::load(m.pp("sam_model"), &cfg.sam, precision)?,
            encoder: Qwen2Encoder::load(m.pp("qwen2_model"), enc, precision)?,
            projector: Linear::load_with(m.pp("projector").pp("layers"), p.input_dim, p.n_embed, true, precision)?,
            view_seperator: m.get(p.n_embed, "view_seperator")?,
        })
    }

    /// The Qwen2 encoder.
    pub fn encoder(&self) -> &Qwen2Encoder {
        &self.encoder
    }

    /// The `view_seperator` vector.
    pub fn view_seperator(&self) -> &Tensor {
        &self.view_seperator
    }

    /// SAM → encoder → projector for a batch of equal views: `(B, n, D)`.
    fn run_views(&self, views: &Tensor, role: ViewRole, taps: &mut Taps) -> candle_core::Result<(Tensor, Tensor)> {
        let sam = self.sam.forward(views, taps)?;
        let q = self.encoder.forward(&sam, role, taps)?;
        Ok((sam, self.projector.forward(&q)?))
    }

    /// The image embedding sequence `(144·k + n_global + 1, D)` of one image: `global` is the
    /// `(1, 3, S, S)` global view (S ∈ {768, 1024}); `tiles` the `(k, 3, 768, 768)` tiles in
    /// row-major order for `grid = (w_tiles, h_tiles)`, or `None`.
    ///
    /// Tiles run as one batch first, then the global view. Taps: `sam_local0`, `sam_global`,
    /// `enc_*` (see [`Qwen2Encoder::forward`]), `proj_global`, `image_embeds`; SAM's debug
    /// taps describe the first view processed (tile 0, else the global view), as the goldens.
    pub fn encode(
        &self,
        global: &Tensor,
        tiles: Option<&Tensor>,
        grid: (usize, usize),
        taps: &mut Taps,
    ) -> Result<Tensor> {
        let d = self.view_seperator.dim(0)?;
        let mut parts = Vec::new();
        let tiled = tiles.is_some();
        if let Some(t) = tiles {
            let n = t.dim(0)?;
            if n < 2 || n != grid.0 * grid.1 {
                return Err(Error::request(
                    format!("{n} tiles were given for a {}x{} tile grid", grid.0, grid.1),
                    "pass exactly w_tiles*h_tiles (2..6) tiles in row-major order, or no tiles",
                ));
            }
            let (sam, proj) = self.run_views(t, ViewRole::Local, taps)?;
            if taps.enabled() {
                taps.put("sam_local0", &sam.narrow(0, 0, 1)?);
                taps.put("proj_local", &proj);
            }
            // Tiles simply concatenate, each in query order.
            parts.push(proj.reshape(((), d))?);
        }
        if global.dim(0)? != 1 {
            return Err(Error::request(
                format!("the global view batch holds {} views", global.dim(0)?),
                "pass one (1, 3, S, S) global view per image",
            ));
        }
        let (sam, proj) = if tiled && taps.enabled() {
            // Keep SAM's debug taps of tile 0: record the global pass separately.
            let mut g = Taps::recording();
            let r = self.run_views(global, ViewRole::Global, &mut g)?;
            for (name, t) in g.into_map() {
                if !name.starts_with("dbg_sam_") && !name.starts_with("sam_pos_embed_interp_") {
                    taps.put(name, &t);
                }
            }
            r
        } else {
            self.run_views(global, ViewRole::Global, taps)?
        };
        taps.put("sam_global", &sam);
        taps.put("proj_global", &proj);
        parts.push(proj.reshape(((), d))?);
        parts.push(self.view_seperator.to_dtype(proj.dtype())?.reshape((1, d))?);
        let seq = Tensor::cat(&parts, 0)?;
        taps.put("image_embeds", &seq);
        Ok(seq)
    }

    /// The variant this encoder belongs to.
    pub fn variant(&self) -> ModelVariant {
        ModelVariant::DeepSeekOcr2
    }
}
