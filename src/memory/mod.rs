//! Memory planning: KV cache and buffer sizes known before a job starts.
