//! Transactional offset commits (TxnOffsetCommit, KIP-98 and KIP-447): the
//! offsets a transaction commits wait here, per group and producer, until
//! the transaction's marker reaches the group's `__consumer_offsets`
//! partition: COMMIT makes them committed offsets (with their records),
//! ABORT drops them. While any wait, OffsetFetch with `require_stable`
//! answers UNSTABLE_OFFSET_COMMIT for their partitions.
//!
//! The records are in the log too, as the producer's transactional batch
//! (the runtime appends them); a load replays committed ones at their
//! marker and hands the open ones to [`GroupManager::restore_txn_offsets`].

use std::collections::{BTreeMap, BTreeSet};

use super::offsets::committed_offset;
use super::{CommitRequest, GroupManager};
use crate::coordinator::errors;
use crate::coordinator::group::{CommittedOffset, Group, TopicPartition};
use crate::coordinator::records::{self, LogRecord};

/// Group -> producer id -> partition -> offset.
pub type PendingOffsets =
    BTreeMap<String, BTreeMap<i64, BTreeMap<TopicPartition, CommittedOffset>>>;

impl GroupManager {
    /// TxnOffsetCommit: errors per topic, per partition, in request order,
    /// and the records to append as the producer's transactional batch.
    pub fn txn_commit(
        &mut self,
        request: &CommitRequest,
        producer_id: i64,
        now_ms: u64,
    ) -> (Vec<Vec<i16>>, Vec<LogRecord>) {
        let verdict = self.validate_commit(request, now_ms);
        let partitions = self.config.offsets_partitions;
        let mut logged = Vec::new();
        let mut results = Vec::with_capacity(request.topics.len());
        for (topic, commits) in &request.topics {
            let mut codes = Vec::with_capacity(commits.len());
            for commit in commits {
                if verdict != errors::NONE {
                    codes.push(verdict);
                    continue;
                }
                let committed = match committed_offset(commit, -1, now_ms) {
                    Ok(committed) => committed,
                    Err(code) => {
                        codes.push(code);
                        continue;
                    }
                };
                let key = (topic.clone(), commit.partition);
                logged.push(records::offset_commit_record(
                    partitions,
                    &request.group_id,
                    &key,
                    Some(&committed),
                ));
                self.txn_offsets
                    .entry(request.group_id.clone())
                    .or_default()
                    .entry(producer_id)
                    .or_default()
                    .insert(key, committed);
                codes.push(errors::NONE);
            }
            results.push(codes);
        }
        (results, logged)
    }

    /// After a load: the offsets of transactions still open in the log
    /// (by producer id) wait for their markers again.
    pub fn restore_txn_offsets(&mut self, pending: &BTreeMap<i64, Vec<LogRecord>>, now_ms: u64) {
        for (producer_id, logged) in pending {
            for record in logged {
                let decoded = records::decode(&record.key, record.value.as_deref());
                if let Ok(records::Decoded::Offset {
                    group_id,
                    topic_partition,
                    offset: Some(offset),
                }) = decoded
                {
                    self.groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(&group_id, now_ms));
                    self.txn_offsets
                        .entry(group_id)
                        .or_default()
                        .entry(*producer_id)
                        .or_default()
                        .insert(topic_partition, offset);
                }
            }
        }
    }

    /// The marker of `producer_id`'s transaction reached `offsets_partition`
    /// (after its transactional records, so a load applies them the same
    /// way): its offsets for the groups of that partition become committed,
    /// or are dropped.
    pub fn complete_txn_offsets(
        &mut self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
        now_ms: u64,
    ) {
        let partitions = self.config.offsets_partitions;
        let groups: Vec<String> = self
            .txn_offsets
            .keys()
            .filter(|group| {
                crate::coordinator::partition_for_group(group, partitions) == offsets_partition
            })
            .cloned()
            .collect();
        for group_id in groups {
            let Some(by_producer) = self.txn_offsets.get_mut(&group_id) else {
                continue;
            };
            let offsets = by_producer.remove(&producer_id);
            if by_producer.is_empty() {
                self.txn_offsets.remove(&group_id);
            }
            let Some(offsets) = offsets.filter(|_| commit) else {
                continue;
            };
            let group = self
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now_ms));
            group.offsets.extend(offsets);
        }
    }

    /// The partitions of `group_id` with transactional offsets pending.
    pub fn unstable_offsets(&self, group_id: &str) -> BTreeSet<TopicPartition> {
        self.txn_offsets
            .get(group_id)
            .into_iter()
            .flat_map(|by_producer| by_producer.values())
            .flat_map(|offsets| offsets.keys().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::manager::GroupConfig;

    fn manager() -> GroupManager {
        GroupManager::new(GroupConfig {
            offsets_partitions: 50,
            initial_rebalance_delay_ms: 0,
            min_session_timeout_ms: 0,
            max_session_timeout_ms: 100_000,
            max_size: 10,
            offsets_retention_ms: 1_000_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        })
    }

    #[test]
    fn offsets_wait_for_the_commit_marker() {
        let mut m = manager();
        let request = CommitRequest::one("g", "", -1, 42, None);
        let (codes, logged) = m.txn_commit(&request, 7, 0);
        assert_eq!(codes, vec![vec![errors::NONE]]);
        assert_eq!(logged.len(), 1);
        let key = ("t".to_string(), 0);
        assert!(m.fetch("g", None).is_empty());
        assert_eq!(m.unstable_offsets("g"), BTreeSet::from([key.clone()]));
        let partition = crate::coordinator::partition_for_group("g", 50);
        // Another partition's marker changes nothing.
        m.complete_txn_offsets(partition + 1, 7, true, 0);
        assert!(!m.unstable_offsets("g").is_empty());
        m.complete_txn_offsets(partition, 7, true, 0);
        assert!(m.unstable_offsets("g").is_empty());
        assert_eq!(m.group("g").unwrap().offsets[&key].offset, 42);
    }

    #[test]
    fn aborted_offsets_are_dropped() {
        let mut m = manager();
        let request = CommitRequest::one("g", "", -1, 42, None);
        m.txn_commit(&request, 7, 0);
        let partition = crate::coordinator::partition_for_group("g", 50);
        m.complete_txn_offsets(partition, 7, false, 0);
        assert!(m.unstable_offsets("g").is_empty());
        assert!(m.group("g").unwrap().offsets.is_empty());
        assert!(m.take_outbox().records.is_empty());
    }

    #[test]
    fn open_transactions_offsets_are_restored_by_a_load() {
        let mut m = manager();
        let request = CommitRequest::one("g", "", -1, 42, None);
        let (_, logged) = m.txn_commit(&request, 7, 0);
        let mut fresh = manager();
        fresh.restore_txn_offsets(&BTreeMap::from([(7, logged)]), 0);
        assert_eq!(fresh.unstable_offsets("g").len(), 1);
        let partition = crate::coordinator::partition_for_group("g", 50);
        fresh.complete_txn_offsets(partition, 7, true, 0);
        assert_eq!(
            fresh.group("g").unwrap().offsets[&("t".to_string(), 0)].offset,
            42
        );
    }
}
