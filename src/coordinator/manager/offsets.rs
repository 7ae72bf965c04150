//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and their
//! expiry by retention (Kafka's `removeExpiredOffsets`).

use std::collections::{BTreeMap, BTreeSet};

use super::GroupManager;
use crate::coordinator::errors;
use crate::coordinator::group::{CommittedOffset, Group, GroupState, TopicPartition};
use crate::coordinator::records;

/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct PartitionCommit {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The OffsetCommit version: consumer-protocol members must use v9+,
    /// which carries their member epoch.
    pub api_version: i16,
    /// -1: the broker's retention (OffsetCommit v2 to v4 may set it).
    pub retention_time_ms: i64,
    pub topics: Vec<(String, Vec<PartitionCommit>)>,
}

#[cfg(test)]
impl CommitRequest {
    /// A commit of `offset` for partition 0 of topic `t` (tests).
    pub fn one(
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        offset: i64,
        metadata: Option<&str>,
    ) -> CommitRequest {
        let commit = PartitionCommit {
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: metadata.map(str::to_string),
        };
        CommitRequest {
            group_id: group_id.into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            api_version: 9,
            retention_time_ms: -1,
            topics: vec![("t".into(), vec![commit])],
        }
    }
}

/// The offset `commit` stores, or OFFSET_METADATA_TOO_LARGE.
pub(super) fn committed_offset(
    commit: &PartitionCommit,
    retention_time_ms: i64,
    now_ms: u64,
) -> Result<CommittedOffset, i16> {
    let metadata = commit.metadata.clone().unwrap_or_default();
    if metadata.len() > OFFSET_METADATA_BYTES_MAX {
        return Err(errors::OFFSET_METADATA_TOO_LARGE);
    }
    Ok(CommittedOffset {
        offset: commit.offset,
        leader_epoch: commit.leader_epoch,
        metadata,
        commit_timestamp_ms: now_ms as i64,
        expire_timestamp_ms: (retention_time_ms >= 0)
            .then(|| (now_ms as i64).saturating_add(retention_time_ms)),
    })
}

/// Per topic, per partition: its committed offset, if any.
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

impl GroupManager {
    /// OffsetCommit: errors per topic, per partition, in request order.
    pub fn commit(&mut self, request: &CommitRequest, now_ms: u64) -> Vec<Vec<i16>> {
        let verdict = self.validate_commit(request, now_ms);
        let partitions = self.config.offsets_partitions;
        let mut results = Vec::with_capacity(request.topics.len());
        for (topic, commits) in &request.topics {
            let mut codes = Vec::with_capacity(commits.len());
            for commit in commits {
                if verdict != errors::NONE {
                    codes.push(verdict);
                    continue;
                }
                let committed = match committed_offset(commit, request.retention_time_ms, now_ms) {
                    Ok(committed) => committed,
                    Err(code) => {
                        codes.push(code);
                        continue;
                    }
                };
                let key = (topic.clone(), commit.partition);
                self.outbox.records.push(records::offset_commit_record(
                    partitions,
                    &request.group_id,
                    &key,
                    Some(&committed),
                ));
                let group = self.groups.get_mut(&request.group_id).expect("validated");
                group.offsets.insert(key, committed);
                codes.push(errors::NONE);
            }
            results.push(codes);
        }
        results
    }

    pub(super) fn validate_commit(&mut self, request: &CommitRequest, now_ms: u64) -> i16 {
        let member_id = request.member_id.as_str();
        let instance = request.group_instance_id.as_deref();
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            if request.generation_id >= 0 {
                return errors::ILLEGAL_GENERATION;
            }
            // A simple consumer (or the admin client) keeps offsets here
            // without group management.
            let group = Group::new(&request.group_id, now_ms);
            self.groups.insert(request.group_id.clone(), group);
            return errors::NONE;
        };
        if let Some(consumer) = group.consumer.as_deref() {
            return super::consumer::validate_offset_commit(
                consumer,
                member_id,
                request.generation_id,
                request.api_version,
            );
        }
        if request.generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            if group.is_static_member_fenced(member_id, instance) {
                return errors::FENCED_INSTANCE_ID;
            }
            let Some(member) = group.members.get_mut(member_id) else {
                return errors::UNKNOWN_MEMBER_ID;
            };
            if request.generation_id != group.generation_id {
                return errors::ILLEGAL_GENERATION;
            }
            if group.state == GroupState::CompletingRebalance {
                return errors::REBALANCE_IN_PROGRESS;
            }
            member.last_heartbeat_ms = now_ms;
            errors::NONE
        } else if !group.is(GroupState::Empty) {
            errors::UNKNOWN_MEMBER_ID
        } else {
            errors::NONE
        }
    }

    /// OffsetFetch of one group: the requested partitions, or every
    /// committed offset when `topics` is `None`.
    pub fn fetch(&self, group_id: &str, topics: Option<&[(String, Vec<i32>)]>) -> FetchedOffsets {
        let group = self.groups.get(group_id);
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|p| {
                            let key = (topic.clone(), *p);
                            (*p, group.and_then(|g| g.offsets.get(&key)).cloned())
                        })
                        .collect();
                    (topic.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((topic, partition), offset) in group.iter().flat_map(|g| g.offsets.iter()) {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(offset.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// OffsetDelete: a top-level error, or one error per partition.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<Vec<i16>>, i16> {
        let partitions = self.config.offsets_partitions;
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(errors::GROUP_ID_NOT_FOUND);
        };
        let subscribed = if group.members.is_empty() {
            BTreeSet::new()
        } else if group.protocol_type.as_deref() == Some("consumer") {
            group.subscribed_topics().unwrap_or_default()
        } else {
            return Err(errors::NON_EMPTY_GROUP);
        };
        let mut results = Vec::with_capacity(topics.len());
        for (topic, partition_ids) in topics {
            if subscribed.contains(topic) {
                results.push(vec![errors::GROUP_SUBSCRIBED_TO_TOPIC; partition_ids.len()]);
                continue;
            }
            for partition in partition_ids {
                let key = (topic.clone(), *partition);
                if group.offsets.remove(&key).is_some() {
                    let record = records::offset_commit_record(partitions, group_id, &key, None);
                    self.outbox.records.push(record);
                }
            }
            results.push(vec![errors::NONE; partition_ids.len()]);
        }
        Ok(results)
    }

    /// Deletes committed offsets past their retention (Kafka's
    /// `removeExpiredOffsets`), then groups left empty with no offsets.
    pub fn expire_offsets(&mut self, now_ms: u64) {
        let retention_ms = self.config.offsets_retention_ms as i64;
        let partitions = self.config.offsets_partitions;
        let now = now_ms as i64;
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            let expired: Vec<TopicPartition> = group
                .offsets
                .iter()
                .filter(|(key, offset)| match offset.expire_timestamp_ms {
                    Some(at) => now >= at,
                    None => expiry_base_ms(group, key, offset)
                        .is_some_and(|since| now - since >= retention_ms),
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in expired {
                group.offsets.remove(&key);
                let record = records::offset_commit_record(partitions, &group.group_id, &key, None);
                self.outbox.records.push(record);
            }
            if group.is(GroupState::Empty) && group.offsets.is_empty() && group.has_no_members() {
                dead.push(group.group_id.clone());
            }
        }
        for group_id in dead {
            self.groups.remove(&group_id);
            let record = records::group_tombstone(partitions, &group_id);
            self.outbox.records.push(record);
        }
    }
}

/// Since when an offset's retention runs, by Kafka's rule: an empty
/// consumer group's offsets from when it became empty; a stable consumer
/// group's offsets of topics it no longer subscribes to from their commit;
/// a group without a protocol (simple commits) from each commit; otherwise
/// never.
fn expiry_base_ms(group: &Group, key: &TopicPartition, offset: &CommittedOffset) -> Option<i64> {
    if let Some(consumer) = group.consumer.as_deref() {
        // A consumer group: the same rule, its emptiness noted in the
        // group's state timestamp.
        if consumer.members.is_empty() {
            return Some(group.state_timestamp_ms as i64);
        }
        let subscribed = consumer.subscribed_topics().contains(&key.0);
        return (!subscribed).then_some(offset.commit_timestamp_ms);
    }
    match (&group.protocol_type, group.state) {
        (None, _) => Some(offset.commit_timestamp_ms),
        (Some(_), GroupState::Empty) => Some(group.state_timestamp_ms as i64),
        (Some(_), GroupState::Stable) => {
            let subscribed = group.subscribed_topics()?;
            (!subscribed.contains(&key.0)).then_some(offset.commit_timestamp_ms)
        }
        _ => None,
    }
}
