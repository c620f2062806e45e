//! Generation: the decode loop, sampling and the no-repeat n-gram guard.

pub mod decode;
pub mod ngram;
pub mod options;
pub mod sampling;
pub mod sequence;
pub mod stream;

pub use decode::{cache_positions, generate, prefill, step, Generated, StopReason};
pub use options::{GenerateOptions, NgramGuard, Sampling};
pub use sequence::{CacheSlot, Sequence, TokenCallback};
pub use stream::TextStream;
