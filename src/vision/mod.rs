//! Vision side: preprocessing, SAM ViT-B, CLIP-L, projector and the image-token layout.
//!
//! Order of the data: `preprocess` (with `resize`, `tiles`, `normalize`) → `sam` → `clip`
//! → `projector` → `layout`, tied together by `encoder::DeepEncoder`.

pub mod clip;
pub mod cpu_attention;
pub mod encoder;
pub mod layout;
pub mod mode;
pub mod normalize;
pub mod pos_interp;
pub mod preprocess;
pub mod projector;
pub mod resize;
pub mod sam;
pub mod tiles;

pub use mode::Mode;
