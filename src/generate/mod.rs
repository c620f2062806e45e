//! Generation: the decode loop, sampling and the no-repeat n-gram guard.

pub mod options;

pub use options::{GenerateOptions, NgramGuard, Sampling};
