//! Vision side: preprocessing, SAM ViT-B, CLIP-L, projector and the image-token layout.

pub mod mode;

pub use mode::Mode;
pub mod normalize;
pub mod pos_interp;
pub mod sam;
pub mod clip;
pub mod projector;
pub mod layout;
pub mod encoder;
