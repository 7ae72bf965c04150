//! A partition log's leader epoch cache (Kafka's `leader-epoch-checkpoint`):
//! which leader epoch started at which offset. Leaders add an entry when
//! they take over; followers add the entries they find in the leader's
//! batches; truncation drops the entries past the new end (`truncate.rs`).
//! Answers OffsetForLeaderEpoch's question: where does an epoch end here.
//!
//! Runs on the owning shard, part of [`PartitionLog`]. Must not: know who
//! leads (the partition layer tells it).

use super::checkpoint::{self, EpochEntry};
use super::error::Result;
use super::log::PartitionLog;
use super::Offset;

impl PartitionLog {
    /// Leader epochs (epoch, first offset written in it), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.state.borrow().leader_epochs.clone()
    }

    /// Adds `epoch` at `start_offset` to the epoch cache (not yet on disk).
    pub(super) fn note_leader_epoch(&self, epoch: i32, start_offset: Offset) {
        self.inner
            .state
            .borrow_mut()
            .leader_epochs
            .push(EpochEntry {
                epoch,
                start_offset,
            });
    }

    /// The end offset of `epoch` as this log knows it (Kafka's
    /// OffsetForLeaderEpoch): the greatest epoch at or below it and the
    /// offset where the next epoch starts (the log end for the latest).
    /// `None` when the log knows no epoch at or below it.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, Offset)> {
        let state = self.inner.state.borrow();
        let entries = &state.leader_epochs;
        let index = entries.iter().rposition(|entry| entry.epoch <= epoch)?;
        let end = entries
            .get(index + 1)
            .map_or(state.log_end_offset, |next| next.start_offset);
        Some((entries[index].epoch, end))
    }

    /// Records that `epoch` starts at `start_offset` and checkpoints it.
    pub async fn assign_leader_epoch(&self, epoch: i32, start_offset: Offset) -> Result<()> {
        let entries = {
            let mut state = self.inner.state.borrow_mut();
            if let Some(last) = state.leader_epochs.last() {
                if last.epoch >= epoch {
                    return Ok(());
                }
            }
            state.leader_epochs.push(EpochEntry {
                epoch,
                start_offset,
            });
            state.leader_epochs.clone()
        };
        checkpoint::write_leader_epochs(&self.inner.dir, &entries).await
    }
}
