//! Outputs: grounding parsing, markdown rewriting, box drawing.

pub mod atomic;

pub use atomic::atomic_write;
