//! The sparse offset index (`.index`) and time index (`.timeindex`) of one
//! segment, in memory and in Kafka's file formats.
//!
//! Owns: lookups (offset -> position, timestamp -> offset) and the encoding
//! of index files (offset index: 8-byte entries, relative offset i32 then
//! position i32, big endian; time index: 12-byte entries, timestamp i64 then
//! relative offset i32). Offset-index keys are the *base* offset of the
//! indexed batch, so an entry always points at a batch boundary. Pure data,
//! no I/O; decoding untrusted file bytes returns `None`, never panics.

/// Offset index of one segment: sorted (relative base offset, position).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

impl OffsetIndex {
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            assert!(relative_offset > last_offset && position > last_position);
        }
        self.entries.push((relative_offset, position));
    }

    /// The last entry whose offset is at most `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let after = self.entries.partition_point(|e| e.0 <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose position is at most `position`.
    pub fn lookup_position(&self, position: u32) -> Option<(u32, u32)> {
        let after = self.entries.partition_point(|e| e.1 <= position);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Drops entries at or after `relative_offset`.
    pub fn truncate_from_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|e| e.0 < relative_offset);
        self.entries.truncate(keep);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(offset, position) in &self.entries {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// Decodes an index file; `None` if it is damaged: a partial entry,
    /// entries out of order, or a position at or past `segment_bytes`.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Option<OffsetIndex> {
        if bytes.len() % OFFSET_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let offset = u32::from_be_bytes(chunk[0..4].try_into().ok()?);
            let position = u32::from_be_bytes(chunk[4..8].try_into().ok()?);
            if let Some((last_offset, last_position)) = index.last() {
                if offset <= last_offset || position <= last_position {
                    return None;
                }
            }
            if position as u64 >= segment_bytes {
                return None;
            }
            index.entries.push((offset, position));
        }
        Some(index)
    }
}

/// Time index of one segment: (max timestamp so far, relative offset of the
/// batch holding it), timestamps strictly increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Appends when `timestamp_ms` is above the last entry's; else ignores.
    pub fn maybe_append(&mut self, timestamp_ms: i64, relative_offset: u32) {
        if let Some(&(last_timestamp, last_offset)) = self.entries.last() {
            // Entries loaded from disk are checked only for order among
            // themselves; one pointing past this batch is ignored, not
            // trusted, and never a panic.
            if timestamp_ms <= last_timestamp || relative_offset < last_offset {
                return;
            }
        }
        self.entries.push((timestamp_ms, relative_offset));
    }

    /// The last entry whose timestamp is strictly below `timestamp_ms`: every
    /// record up to its offset is older than `timestamp_ms`.
    pub fn lookup_below(&self, timestamp_ms: i64) -> Option<(i64, u32)> {
        let after = self.entries.partition_point(|e| e.0 < timestamp_ms);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn truncate_from_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|e| e.1 < relative_offset);
        self.entries.truncate(keep);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(timestamp, offset) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    /// Decodes a time index file; `None` if damaged (partial entry, or
    /// timestamps or offsets going backwards, or an offset past `next_relative_offset`).
    pub fn decode(bytes: &[u8], next_relative_offset: u64) -> Option<TimeIndex> {
        if bytes.len() % TIME_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().ok()?);
            let offset = u32::from_be_bytes(chunk[8..12].try_into().ok()?);
            if let Some((last_timestamp, last_offset)) = index.last() {
                if timestamp <= last_timestamp || offset < last_offset {
                    return None;
                }
            }
            if offset as u64 >= next_relative_offset {
                return None;
            }
            index.entries.push((timestamp, offset));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut index = OffsetIndex::default();
        index.append(10, 4096);
        index.append(20, 9000);
        assert_eq!(index.lookup(5), None);
        assert_eq!(index.lookup(10), Some((10, 4096)));
        assert_eq!(index.lookup(19), Some((10, 4096)));
        assert_eq!(index.lookup(25), Some((20, 9000)));
        assert_eq!(index.lookup_position(9000), Some((20, 9000)));
        let decoded = OffsetIndex::decode(&index.encode(), 10_000).unwrap();
        assert_eq!(decoded, index);
        assert!(OffsetIndex::decode(&index.encode(), 9000).is_none());
        assert!(OffsetIndex::decode(&index.encode()[..7], 10_000).is_none());
        index.truncate_from_offset(20);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn time_lookup_is_strictly_below() {
        let mut index = TimeIndex::default();
        index.maybe_append(100, 0);
        index.maybe_append(90, 3);
        index.maybe_append(200, 5);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup_below(100), None);
        assert_eq!(index.lookup_below(101), Some((100, 0)));
        assert_eq!(index.lookup_below(500), Some((200, 5)));
        let decoded = TimeIndex::decode(&index.encode(), 6).unwrap();
        assert_eq!(decoded, index);
        assert!(TimeIndex::decode(&index.encode(), 5).is_none());
    }
}
