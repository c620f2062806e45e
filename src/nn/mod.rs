//! Building blocks shared by the vision encoder and the language model.

pub mod linear;
pub mod taps;

pub use linear::Linear;
pub use taps::Taps;
