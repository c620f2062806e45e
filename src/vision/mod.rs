//! Vision side: preprocessing, SAM ViT-B, CLIP-L, projector and the image-token layout.
//!
//! Order of the data: `preprocess` (with `resize`, `tiles`, `normalize`) → `sam` → `clip`
//! → `projector` → `layout`, tied together by `encoder::DeepEncoder` (DeepSeek-OCR); `ocr2`
//! holds DeepSeek-OCR 2's encoder (`ocr2::DeepEncoderV2`). Both implement
//! [`VisionEncoder`], the interface the engine uses.

pub mod clip;
pub mod cpu_attention;
pub mod encoder;
pub mod layout;
pub mod mode;
pub mod normalize;
pub mod ocr2;
pub mod pos_interp;
pub mod preprocess;
pub mod projector;
pub mod resize;
pub mod sam;
pub mod tiles;
pub mod vision_encoder;

pub use mode::Mode;
pub use vision_encoder::{load_encoder, ViewPlan, VisionEncoder};
