//! Outputs: grounding parsing, markdown rewriting, box drawing, atomic files, JSON.

pub mod atomic;
pub mod boxes;
pub mod grounding;
pub mod json;
pub mod markdown;
