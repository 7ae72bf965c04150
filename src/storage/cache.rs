//! The shard read cache: a memory-bounded LRU of whole batches.
//!
//! Owns: recently appended and recently read batches of every log on the
//! shard, keyed by (log id, base offset), with hit and miss counters.
//! O_DIRECT bypasses the kernel page cache, so hot fetches are served from
//! here. One per shard (inside `ShardStorage`), never shared across shards.
//! Does no I/O. Must stay within its byte bound, and must be invalidated by
//! whoever rewrites or removes log data (truncation, retention, compaction).

use std::collections::BTreeMap;

use bytes::Bytes;

/// Counters of the shard read cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes: usize,
    pub entries: usize,
    pub capacity_bytes: usize,
    /// Bytes read from the disk by reads into memory (cold reads and
    /// read-ahead), and of those, by read-ahead.
    pub disk_read_bytes: u64,
    pub read_ahead_bytes: u64,
}

struct Entry {
    batch: Bytes,
    last_offset: i64,
    tick: u64,
}

type Key = (u64, i64);

pub(crate) struct ReadCache {
    capacity_bytes: usize,
    bytes: usize,
    entries: BTreeMap<Key, Entry>,
    lru: BTreeMap<u64, Key>,
    next_tick: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    /// Counts invalidations: a reader that read the disk before one landed
    /// must not insert what it read (see [`ReadCache::generation`]).
    generation: u64,
    disk_read_bytes: u64,
    read_ahead_bytes: u64,
}

/// A read limit: whole batches, up to `max_bytes` (or one if
/// `min_one_batch`), each ending below `upper_offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limit {
    pub max_bytes: usize,
    pub min_one_batch: bool,
    pub upper_offset: i64,
}

impl Limit {
    /// Whether a batch of `len` bytes ending at `last_offset` may be added
    /// after `taken_bytes` bytes of `taken_batches` batches.
    pub fn admits(
        &self,
        taken_batches: usize,
        taken_bytes: usize,
        len: usize,
        last_offset: i64,
    ) -> bool {
        if last_offset >= self.upper_offset {
            return false;
        }
        taken_bytes + len <= self.max_bytes || (taken_batches == 0 && self.min_one_batch)
    }
}

impl ReadCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ReadCache {
            capacity_bytes,
            bytes: 0,
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            next_tick: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            generation: 0,
            disk_read_bytes: 0,
            read_ahead_bytes: 0,
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            bytes: self.bytes,
            entries: self.entries.len(),
            capacity_bytes: self.capacity_bytes,
            disk_read_bytes: self.disk_read_bytes,
            read_ahead_bytes: self.read_ahead_bytes,
        }
    }

    /// Counts `bytes` read from the disk to serve a read or, with `ahead`,
    /// to read ahead of one.
    pub fn count_disk_read(&mut self, bytes: usize, ahead: bool) {
        self.disk_read_bytes += bytes as u64;
        if ahead {
            self.read_ahead_bytes += bytes as u64;
        }
    }

    /// Changes whenever batches are invalidated. Take it before reading the
    /// disk and insert the bytes read only if it is unchanged afterwards:
    /// a truncation, retention or compaction in between may have rewritten
    /// what was read.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the batch holding `offset` of `log_id` is cached.
    pub fn contains(&self, log_id: u64, offset: i64) -> bool {
        self.entries
            .range((log_id, i64::MIN)..=(log_id, offset))
            .next_back()
            .is_some_and(|(_, entry)| entry.last_offset >= offset)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    pub fn insert(&mut self, log_id: u64, base_offset: i64, last_offset: i64, batch: Bytes) {
        if batch.len() > self.capacity_bytes {
            return;
        }
        self.remove((log_id, base_offset));
        while self.bytes + batch.len() > self.capacity_bytes {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.batch.len();
                self.evictions += 1;
            }
        }
        let tick = self.tick();
        self.bytes += batch.len();
        self.lru.insert(tick, (log_id, base_offset));
        let entry = Entry {
            batch,
            last_offset,
            tick,
        };
        self.entries.insert((log_id, base_offset), entry);
        assert!(self.bytes <= self.capacity_bytes);
    }

    fn remove(&mut self, key: Key) {
        if let Some(entry) = self.entries.remove(&key) {
            self.bytes -= entry.batch.len();
            self.lru.remove(&entry.tick);
        }
    }

    /// The cached run of consecutive batches starting with the one that
    /// contains `offset`, or an empty vector (a miss).
    pub fn read(&mut self, log_id: u64, offset: i64, limit: Limit) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut taken_bytes = 0;
        let first = self
            .entries
            .range((log_id, i64::MIN)..=(log_id, offset))
            .next_back()
            .filter(|(_, entry)| entry.last_offset >= offset)
            .map(|(key, _)| *key);
        let mut next = first;
        while let Some(key) = next {
            let tick = self.tick();
            let Some(entry) = self.entries.get_mut(&key) else {
                break;
            };
            if !limit.admits(out.len(), taken_bytes, entry.batch.len(), entry.last_offset) {
                break;
            }
            self.lru.remove(&entry.tick);
            entry.tick = tick;
            self.lru.insert(tick, key);
            taken_bytes += entry.batch.len();
            out.push(entry.batch.clone());
            let following = (log_id, entry.last_offset + 1);
            next = self.entries.contains_key(&following).then_some(following);
        }
        if out.is_empty() {
            self.misses += 1;
        } else {
            self.hits += 1;
        }
        out
    }

    /// Drops cached batches of `log_id` with base offsets in `[from, to)`.
    pub fn invalidate(&mut self, log_id: u64, from: i64, to: i64) {
        self.generation += 1;
        let keys: Vec<Key> = self
            .entries
            .range((log_id, from)..(log_id, to))
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            self.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_bytes: usize) -> Limit {
        Limit {
            max_bytes,
            min_one_batch: true,
            upper_offset: i64::MAX,
        }
    }

    #[test]
    fn reads_runs_and_evicts_least_recent() {
        let mut cache = ReadCache::new(300);
        cache.insert(1, 0, 9, Bytes::from(vec![0; 100]));
        cache.insert(1, 10, 19, Bytes::from(vec![1; 100]));
        cache.insert(1, 20, 29, Bytes::from(vec![2; 100]));
        assert_eq!(cache.read(1, 5, limit(1000)).len(), 3);
        assert_eq!(cache.read(1, 15, limit(150)).len(), 1);
        assert_eq!(cache.read(1, 15, limit(10)).len(), 1, "min one batch");
        // Touch 0 and 10, so that 20 is the least recent and goes first.
        cache.read(1, 0, limit(200));
        cache.insert(2, 0, 0, Bytes::from(vec![3; 100]));
        assert!(cache.read(1, 25, limit(1000)).is_empty());
        assert_eq!(cache.read(1, 0, limit(1000)).len(), 2);
        let stats = cache.stats();
        assert_eq!((stats.bytes, stats.evictions, stats.misses), (300, 1, 1));
        cache.invalidate(1, 10, i64::MAX);
        assert_eq!(cache.read(1, 0, limit(1000)).len(), 1);
        assert!(cache.read(1, 10, limit(1000)).is_empty());
    }

    #[test]
    fn upper_offset_and_gaps_stop_a_run() {
        let mut cache = ReadCache::new(1000);
        cache.insert(1, 0, 9, Bytes::from(vec![0; 10]));
        cache.insert(1, 10, 19, Bytes::from(vec![0; 10]));
        cache.insert(1, 25, 29, Bytes::from(vec![0; 10]));
        let bounded = Limit {
            upper_offset: 15,
            ..limit(1000)
        };
        assert_eq!(cache.read(1, 0, bounded).len(), 1);
        assert_eq!(cache.read(1, 0, limit(1000)).len(), 2);
        assert!(cache.read(1, 22, limit(1000)).is_empty());
    }
}
