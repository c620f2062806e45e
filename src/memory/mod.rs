//! Memory planning: KV cache and buffer sizes known before a job starts.

pub mod kv_cache;
pub mod kv_pool;
pub mod plan;

pub use kv_cache::KvCache;
pub use kv_pool::KvPool;
pub use plan::MemoryPlan;
