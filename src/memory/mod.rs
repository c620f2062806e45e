//! Memory planning: KV cache and buffer sizes known before a job starts.

pub mod plan;

pub use plan::MemoryPlan;
