//! Memory planning: KV cache and buffer sizes known before a job starts.

pub mod kv_cache;
pub mod plan;

pub use kv_cache::KvCache;
pub use plan::MemoryPlan;
