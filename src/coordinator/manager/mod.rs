//! Every group of one shard and every operation on them: Kafka's classic
//! group coordinator as a state machine with no I/O and no clock.
//!
//! Runs on the coordinator shard of the groups it holds. Callers pass the
//! time (`now_ms`, wall-clock milliseconds) and take the effects from
//! [`Outbox`]: replies to parked JoinGroup/SyncGroup requests, and records
//! to append to `__consumer_offsets`. It must not await, read a clock or
//! know the wire format.
//!
//! One [`GroupManager`], its operations split by responsibility, each file
//! an `impl GroupManager` block:
//! - [`rebalance`]: JoinGroup and the rebalance it drives (preparing, the
//!   join phase, completing it, leader election).
//! - [`membership`]: SyncGroup, Heartbeat, LeaveGroup, and the clock
//!   (session, rebalance and sync timeouts).
//! - [`offsets`]: OffsetCommit, OffsetFetch, OffsetDelete, expiry.
//! - [`admin`]: ListGroups, DescribeGroups, DeleteGroups.
//! - [`consumer`]: KIP-848's ConsumerGroupHeartbeat and
//!   ConsumerGroupDescribe, the clock of consumer group members, and the
//!   member-epoch checks of offset commits and fetches.
//! - [`load`]: which `__consumer_offsets` partitions it coordinates
//!   (Kafka's `onElection`/`onResignation`), loading their groups by
//!   replaying records, and turning away groups it does not coordinate.

mod admin;
mod consumer;
mod load;
mod membership;
mod offsets;
mod rebalance;
mod txn_offsets;

use std::collections::BTreeMap;

use super::group::{Group, Member};
use super::records::{self, LogRecord};

pub use admin::{GroupDescription, ListedGroup, MemberDescription};
pub use consumer::{
    validate_offset_fetch, ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatResponse,
    ConsumerMemberDescription, DescribedPartitions, GroupError,
};
pub use load::{LeadershipChanges, OwnedPartition};
pub use membership::{LeavingMember, SyncRequest, SyncResponse};
pub use offsets::{CommitRequest, FetchedOffsets, PartitionCommit, OFFSET_METADATA_BYTES_MAX};
pub use rebalance::{JoinRequest, JoinResponse, JoinedMember};

/// The group settings of the broker configuration, in the units the
/// coordinator uses.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub offsets_partitions: i32,
    pub initial_rebalance_delay_ms: u64,
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    pub max_size: u32,
    pub offsets_retention_ms: u64,
    /// KIP-848: `group.consumer.session.timeout.ms` and
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_session_timeout_ms: u64,
    pub consumer_heartbeat_interval_ms: u64,
}

impl GroupConfig {
    pub fn from_broker(config: &crate::config::BrokerConfig) -> GroupConfig {
        GroupConfig {
            offsets_partitions: config.offsets_topic_num_partitions,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            max_size: config.group_max_size,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            consumer_session_timeout_ms: config.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
        }
    }
}

/// An answer now, or a request parked until the group moves on; its answer
/// then comes out of the [`Outbox`] as a [`Completion`] for `member_id`.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    Now(T),
    Parked { member_id: String },
}

/// The answer to a parked request.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    Join {
        group_id: String,
        member_id: String,
        response: JoinResponse,
    },
    Sync {
        group_id: String,
        member_id: String,
        response: SyncResponse,
    },
}

/// What the operations produced for the runtime to carry out.
#[derive(Debug, Default)]
pub struct Outbox {
    pub completions: Vec<Completion>,
    /// Records to append to `__consumer_offsets`, in order.
    pub records: Vec<LogRecord>,
}

impl Outbox {
    /// Answers `member`'s parked JoinGroup and SyncGroup, if any, with
    /// `error_code` (it is leaving the group, or the group this node).
    fn fail_parked(&mut self, group_id: &str, member: &Member, error_code: i16) {
        let member_id = &member.member_id;
        if member.awaiting_join {
            self.completions.push(Completion::Join {
                group_id: group_id.to_string(),
                member_id: member_id.clone(),
                response: JoinResponse::error(member_id, error_code),
            });
        }
        if member.awaiting_sync {
            self.completions.push(Completion::Sync {
                group_id: group_id.to_string(),
                member_id: member_id.clone(),
                response: SyncResponse::error(error_code),
            });
        }
    }
}

/// Makes member ids: given a prefix (client id or instance id), a new id.
pub type MemberIdGenerator = Box<dyn FnMut(&str) -> String>;

pub struct GroupManager {
    config: GroupConfig,
    /// The groups of the partitions in `partitions`, loaded or loading.
    groups: BTreeMap<String, Group>,
    /// The offsets partitions this manager coordinates (its node leads
    /// them), by partition; no others' groups are served.
    partitions: BTreeMap<i32, OwnedPartition>,
    new_member_id: MemberIdGenerator,
    pub outbox: Outbox,
    /// Transactional offsets awaiting their transaction's marker.
    txn_offsets: txn_offsets::PendingOffsets,
}

fn uuid_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl GroupManager {
    pub fn new(config: GroupConfig) -> GroupManager {
        GroupManager::with_member_ids(config, Box::new(uuid_member_id))
    }

    pub fn with_member_ids(config: GroupConfig, new_member_id: MemberIdGenerator) -> GroupManager {
        GroupManager {
            config,
            groups: BTreeMap::new(),
            partitions: BTreeMap::new(),
            new_member_id,
            outbox: Outbox::default(),
            txn_offsets: Default::default(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    /// Every group this manager coordinates, in id order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }
}

/// The group metadata record of `group` as it stands.
fn group_record(group: &Group, offsets_partitions: i32) -> LogRecord {
    records::group_metadata_record(offsets_partitions, group)
}

#[cfg(test)]
mod tests;
