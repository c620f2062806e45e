//! Text side: tokenizer and prompt construction.

pub mod prompt;
pub mod task;
pub mod tokenizer;

pub use prompt::{build_prompt, PromptIds};
pub use task::Task;
pub use tokenizer::Tokenizer;
