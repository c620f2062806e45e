//! Text side: tokenizer and prompt construction.

pub mod task;

pub use task::Task;
