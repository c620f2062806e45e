//! Outputs: grounding parsing, markdown rewriting, box drawing.
//! Inputs: images (decode, EXIF, colour modes) and PDF pages.

pub mod atomic;
pub mod boxes;
pub mod grounding;
pub mod json;
pub mod markdown;
