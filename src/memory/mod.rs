//! Memory planning: KV cache and buffer sizes known before a job starts.

pub mod kv_cache;

pub use kv_cache::KvCache;
