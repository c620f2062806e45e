//! The DeepEncoder (spec §2, §4-§6): SAM, CLIP and the projector over the views of one
//! image, arranged into the image embedding sequence the language model consumes.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::nn::precision::Precision;
use crate::nn::Taps;
use crate::vision::clip::Clip;
use crate::vision::layout;
use crate::vision::projector::Projector;
use crate::vision::sam::Sam;

/// SAM + CLIP + projector plus the two learned layout vectors.
#[derive(Debug)]
pub struct DeepEncoder {
    sam: Sam,
    clip: Clip,
    projector: Projector,
    /// `(D)`, appended to every grid row.
    image_newline: Tensor,
    /// `(D)`, once after the global block (checkpoint spelling).
    view_seperator: Tensor,
}

impl DeepEncoder {
    /// Loads the encoder from `vb` rooted at the checkpoint root, in f32 (the parity mode).
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Self::load_with(vb, cfg, Precision::F32)
    }

    /// Loads the encoder with every linear layer of SAM, CLIP and the projector (and SAM's
    /// patch embedding and 1×1 neck convolution, which are GEMMs) in `precision`.
    pub fn load_with(vb: VarBuilder, cfg: &ModelConfig, precision: Precision) -> Result<Self> {
        let m = vb.pp("model");
        let d = cfg.projector.n_embed;
        let Some(clip) = cfg.clip() else {
            return Err(Error::request(
                format!("the DeepEncoder needs a DeepSeek-OCR config, got {}", cfg.variant()),
                "load the encoder that matches the model variant (vision::load_encoder)",
            ));
        };
        Ok(Self {
            sam: Sam::load(m.pp("sam_model"), &cfg.sam, precision)?,
            clip: Clip::load(m.pp("vision_model"), clip, precision)?,
            projector: Projector::load(m.pp("projector"), &cfg.projector, precision)?,
            image_newline: m.get(d, "image_newline")?,
            view_seperator: m.get(d, "view_seperator")?,
        })
    }

    /// Runs one batch of equally sized views: `(SAM features, CLIP output, projector output)`.
    fn run_views(&self, views: &Tensor, taps: &mut Taps) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let sam = self.sam.forward(views, taps)?;
        let clip = self.clip.forward(&sam, taps)?;
        let proj = self.projector.forward(&clip, &sam)?;
        Ok((sam, clip, proj))
    }

    /// The image embedding sequence `(n_image_tokens, D)` of one image.
    ///
    /// `global` is the `(1, 3, Sg, Sg)` global view; `tiles` the `(w·h, 3, St, St)` local
    /// tiles in row-major order for a `grid = (w_tiles, h_tiles)`, or `None`. Tiles run as one
    /// batch first, then the global view; the result is local block, global block, separator.
    pub fn encode(
        &self,
        global: &Tensor,
        tiles: Option<&Tensor>,
        grid: (usize, usize),
        taps: &mut Taps,
    ) -> Result<Tensor> {
        let local = match tiles {
            Some(t) => {
                let n = t.dim(0)?;
                if n == 0 || n != grid.0 * grid.1 {
                    return Err(Error::request(
                        format!("{n} tiles were given for a {}x{} tile grid", grid.0, grid.1),
                        "pass exactly w_tiles*h_tiles tiles in row-major order, or no tiles",
                    ));
                }
                let (sam, clip, proj) = self.run_views(t, taps)?;
                if taps.enabled() {
                    taps.put("sam_local0", &sam.narrow(0, 0, 1)?);
                    taps.put("clip_local0", &clip.narrow(0, 0, 1)?);
                    taps.put("proj_local", &proj);
                }
                Some(layout::local_block(&proj, grid, &self.image_newline)?)
            }
            None => None,
        };
        if global.dim(0)? != 1 {
            return Err(Error::request(
                format!("the global view batch holds {} views", global.dim(0)?),
                "pass one (1, 3, S, S) global view per image",
            ));
        }
        let (sam, clip, proj) = self.run_views(global, taps)?;
        taps.put("sam_global", &sam);
        taps.put("clip_global", &clip);
        taps.put("proj_global", &proj);
        let g = layout::global_block(&proj, &self.image_newline)?;
        let seq = layout::sequence(local.as_ref(), &g, &self.view_seperator)?;
        taps.put("image_embeds", &seq);
        Ok(seq)
    }

    /// The `image_newline` vector.
    pub fn image_newline(&self) -> &Tensor {
        &self.image_newline
    }

    /// The `view_seperator` vector.
    pub fn view_seperator(&self) -> &Tensor {
        &self.view_seperator
    }
}
