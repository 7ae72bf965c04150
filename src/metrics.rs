//! Counters of one shard, read by whoever reports them (logs today, the
//! metrics endpoint later). Shard-local `Cell`s: no atomics on the data path.

use std::cell::Cell;

#[derive(Default, Debug)]
pub struct ShardMetrics {
    /// Record bytes sent to consumers by `sendfile` (cold reads).
    pub fetch_sendfile_bytes: Cell<u64>,
    /// Record bytes sent to consumers from memory (the read cache).
    pub fetch_memory_bytes: Cell<u64>,
}

impl ShardMetrics {
    pub fn add_sendfile_bytes(&self, bytes: u64) {
        self.fetch_sendfile_bytes
            .set(self.fetch_sendfile_bytes.get() + bytes);
    }

    pub fn add_memory_bytes(&self, bytes: u64) {
        self.fetch_memory_bytes
            .set(self.fetch_memory_bytes.get() + bytes);
    }
}
