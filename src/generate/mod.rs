//! Generation: the decode loop, sampling and the no-repeat n-gram guard.

pub mod decode;
pub mod ngram;
pub mod options;
pub mod sampling;
pub mod stream;

pub use decode::{cache_positions, generate, Generated, StopReason};
pub use options::{GenerateOptions, NgramGuard, Sampling};
pub use stream::TextStream;
