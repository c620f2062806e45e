//! Vision side: preprocessing, SAM ViT-B, CLIP-L, projector and the image-token layout.

pub mod mode;

pub use mode::Mode;
pub mod normalize;
pub mod preprocess;
pub mod resize;
pub mod tiles;
