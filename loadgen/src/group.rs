//! Consumer-group membership (Kafka's classic protocol): FindCoordinator,
//! JoinGroup (with KIP-394's member id round trip), range assignment by the
//! leader, SyncGroup, Heartbeat, OffsetFetch, OffsetCommit and LeaveGroup.
//!
//! A [`GroupMember`] belongs to one consumer thread and talks to the
//! coordinator over its own connection; the consumer calls
//! [`GroupMember::poll`] between fetches, which heartbeats when due and
//! answers a new assignment when the group rebalanced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::admin::topic_name;
use crate::wire::Connection;

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const MEMBER_ID_REQUIRED: i16 = 79;

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Attempts at joining before giving up (each may wait for a rebalance).
const JOIN_ATTEMPTS_MAX: usize = 20;

struct Versions {
    join: i16,
    sync: i16,
    heartbeat: i16,
    leave: i16,
    commit: i16,
    fetch: i16,
}

pub struct GroupMember {
    connection: Connection,
    versions: Versions,
    group_id: GroupId,
    topic: String,
    partitions_total: usize,
    member_id: StrBytes,
    generation_id: i32,
    last_heartbeat: Instant,
}

/// What `poll` found.
pub enum Poll {
    /// Nothing changed.
    Steady,
    /// The group rebalanced: these are the partitions now assigned.
    Reassigned(Vec<i32>),
}

impl GroupMember {
    /// Finds the coordinator (asking `bootstrap`), joins and syncs; returns
    /// the member and its first assignment.
    pub fn join(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions_total: usize,
        client_id: &str,
        timeout: Duration,
    ) -> Result<(GroupMember, Vec<i32>)> {
        let address = find_coordinator(bootstrap, group, client_id, timeout)?;
        let connection = Connection::connect(
            &address,
            client_id,
            timeout.max(REBALANCE_TIMEOUT) + Duration::from_secs(5),
        )?;
        let picked = &connection.versions;
        let versions = Versions {
            join: picked.pick::<JoinGroupRequest>(9)?,
            sync: picked.pick::<SyncGroupRequest>(5)?,
            heartbeat: picked.pick::<HeartbeatRequest>(4)?,
            leave: picked.pick::<LeaveGroupRequest>(5)?,
            commit: picked.pick::<OffsetCommitRequest>(8)?,
            fetch: picked.pick::<OffsetFetchRequest>(7)?,
        };
        let mut member = GroupMember {
            connection,
            versions,
            group_id: GroupId(StrBytes::from_string(group.to_string())),
            topic: topic.to_string(),
            partitions_total,
            member_id: StrBytes::default(),
            generation_id: -1,
            last_heartbeat: Instant::now(),
        };
        let assigned = member.join_and_sync()?;
        Ok((member, assigned))
    }

    fn join_and_sync(&mut self) -> Result<Vec<i32>> {
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let request = JoinGroupRequest::default()
                .with_group_id(self.group_id.clone())
                .with_session_timeout_ms(SESSION_TIMEOUT.as_millis() as i32)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT.as_millis() as i32)
                .with_member_id(self.member_id.clone())
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(subscription(&self.topic)?)]);
            let joined = self.connection.call(&request, self.versions.join)?;
            match joined.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = joined.member_id.clone();
                    continue;
                }
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                    self.member_id = StrBytes::default();
                    continue;
                }
                REBALANCE_IN_PROGRESS | COORDINATOR_LOAD_IN_PROGRESS => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                code => bail!("JoinGroup failed with error code {code}"),
            }
            self.member_id = joined.member_id.clone();
            self.generation_id = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                let members: Vec<StrBytes> = joined
                    .members
                    .iter()
                    .map(|member| member.member_id.clone())
                    .collect();
                assign_range(&members, self.partitions_total)
                    .into_iter()
                    .map(
                        |(member, partitions)| -> Result<SyncGroupRequestAssignment> {
                            Ok(SyncGroupRequestAssignment::default()
                                .with_member_id(member)
                                .with_assignment(assignment(&self.topic, &partitions)?))
                        },
                    )
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let mut request = SyncGroupRequest::default()
                .with_group_id(self.group_id.clone())
                .with_generation_id(self.generation_id)
                .with_member_id(self.member_id.clone())
                .with_assignments(assignments);
            if self.versions.sync >= 5 {
                request = request
                    .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                    .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)));
            }
            let synced = self.connection.call(&request, self.versions.sync)?;
            match synced.error_code {
                0 => {
                    self.last_heartbeat = Instant::now();
                    return partitions_of(&synced.assignment, &self.topic);
                }
                REBALANCE_IN_PROGRESS => continue,
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                    self.member_id = StrBytes::default();
                    continue;
                }
                code => bail!("SyncGroup failed with error code {code}"),
            }
        }
        bail!(
            "could not join group {} in {JOIN_ATTEMPTS_MAX} attempts",
            self.group_id.0.as_str()
        )
    }

    /// Heartbeats when due; on a rebalance commits `offsets`, rejoins and
    /// returns the new assignment.
    pub fn poll(&mut self, offsets: &BTreeMap<i32, i64>) -> Result<Poll> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(Poll::Steady);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id.clone())
            .with_generation_id(self.generation_id)
            .with_member_id(self.member_id.clone());
        let response = self
            .connection
            .call(&request, self.versions.heartbeat)
            .with_context(|| format!("Heartbeat v{}", self.versions.heartbeat))?;
        self.last_heartbeat = Instant::now();
        match response.error_code {
            0 => Ok(Poll::Steady),
            REBALANCE_IN_PROGRESS => {
                self.commit(offsets)?;
                Ok(Poll::Reassigned(self.join_and_sync()?))
            }
            UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                self.member_id = StrBytes::default();
                Ok(Poll::Reassigned(self.join_and_sync()?))
            }
            code => bail!("Heartbeat failed with error code {code}"),
        }
    }

    /// Commits the positions of the partitions given.
    pub fn commit(&mut self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let partitions = offsets
            .iter()
            .map(|(partition, offset)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group_id.clone())
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(self.member_id.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(&self.topic))
                .with_partitions(partitions)]);
        let response = self
            .connection
            .call(&request, self.versions.commit)
            .with_context(|| format!("OffsetCommit v{}", self.versions.commit))?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                match partition.error_code {
                    // A commit that lost to a rebalance is not fatal: the
                    // next owner re-reads from the last good commit.
                    0 | REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => {}
                    code => bail!(
                        "OffsetCommit of partition {} failed with error code {code}",
                        partition.partition_index
                    ),
                }
            }
        }
        Ok(())
    }

    /// Committed offsets of `partitions` (absent when none).
    pub fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let request = OffsetFetchRequest::default()
            .with_group_id(self.group_id.clone())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(&self.topic))
                .with_partition_indexes(partitions.to_vec())]));
        let response = self.connection.call(&request, self.versions.fetch)?;
        if response.error_code != 0 {
            bail!("OffsetFetch failed with error code {}", response.error_code);
        }
        let mut committed = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                if partition.error_code == 0 && partition.committed_offset >= 0 {
                    committed.insert(partition.partition_index, partition.committed_offset);
                }
            }
        }
        Ok(committed)
    }

    /// Commits and leaves, so the others rebalance at once.
    pub fn leave(&mut self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        self.commit(offsets)?;
        // v3 and up name the leaving members in a list.
        let request = if self.versions.leave >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(self.group_id.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(self.member_id.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(self.group_id.clone())
                .with_member_id(self.member_id.clone())
        };
        self.connection
            .call(&request, self.versions.leave)
            .with_context(|| format!("LeaveGroup v{}", self.versions.leave))?;
        Ok(())
    }
}

fn find_coordinator(
    bootstrap: &str,
    group: &str,
    client_id: &str,
    timeout: Duration,
) -> Result<String> {
    let mut connection = Connection::connect(bootstrap, client_id, timeout)?;
    // v4 and up ask for a list of keys; one key is all we need.
    let version = connection.versions.pick::<FindCoordinatorRequest>(3)?;
    let deadline = Instant::now() + timeout;
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let response = connection.call(&request, version)?;
        match response.error_code {
            0 => return Ok(format!("{}:{}", response.host.as_str(), response.port)),
            COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS | NOT_COORDINATOR
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            code => bail!("FindCoordinator for group {group} failed with error code {code}"),
        }
    }
}

/// The embedded consumer protocol: a version, then the message at it.
const EMBEDDED_VERSION: i16 = 0;

fn subscription(topic: &str) -> Result<Bytes> {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())]);
    let mut buf = BytesMut::new();
    buf.put_i16(EMBEDDED_VERSION);
    message.encode(&mut buf, EMBEDDED_VERSION)?;
    Ok(buf.freeze())
}

fn assignment(topic: &str, partitions: &[i32]) -> Result<Bytes> {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedPartitions::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut buf = BytesMut::new();
    buf.put_i16(EMBEDDED_VERSION);
    message.encode(&mut buf, EMBEDDED_VERSION)?;
    Ok(buf.freeze())
}

fn partitions_of(assignment: &Bytes, topic: &str) -> Result<Vec<i32>> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = assignment.clone();
    let version = buf.get_i16().clamp(0, 3);
    let decoded =
        ConsumerProtocolAssignment::decode(&mut buf, version).context("decoding an assignment")?;
    let mut partitions: Vec<i32> = decoded
        .assigned_partitions
        .iter()
        .filter(|assigned| assigned.topic.0.as_str() == topic)
        .flat_map(|assigned| assigned.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// Kafka's range assignor for one topic: members sorted by id, each gets a
/// contiguous range, the first `partitions % members` one more.
pub fn assign_range(members: &[StrBytes], partitions: usize) -> Vec<(StrBytes, Vec<i32>)> {
    let mut sorted: Vec<StrBytes> = members.to_vec();
    sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    sorted.dedup();
    let count = sorted.len().max(1);
    let (base, extra) = (partitions / count, partitions % count);
    let mut next = 0usize;
    sorted
        .into_iter()
        .enumerate()
        .map(|(index, member)| {
            let take = base + usize::from(index < extra);
            let range = (next..next + take)
                .map(|partition| partition as i32)
                .collect();
            next += take;
            (member, range)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_matches_kafka() {
        let members: Vec<StrBytes> = ["c", "a", "b"]
            .iter()
            .map(|m| StrBytes::from_static_str(m))
            .collect();
        let assigned = assign_range(&members, 7);
        let shape: Vec<(&str, Vec<i32>)> = assigned
            .iter()
            .map(|(m, p)| (m.as_str(), p.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![("a", vec![0, 1, 2]), ("b", vec![3, 4]), ("c", vec![5, 6])]
        );
        let more_members = assign_range(&members, 2);
        assert_eq!(more_members[2].1, Vec::<i32>::new());
    }

    #[test]
    fn assignments_round_trip_through_the_embedded_protocol() {
        let bytes = assignment("topic", &[3, 1, 2]).unwrap();
        assert_eq!(partitions_of(&bytes, "topic").unwrap(), vec![1, 2, 3]);
        assert_eq!(partitions_of(&bytes, "other").unwrap(), Vec::<i32>::new());
        assert_eq!(
            partitions_of(&Bytes::new(), "topic").unwrap(),
            Vec::<i32>::new()
        );
        let mut subscribed = subscription("topic").unwrap();
        assert_eq!(subscribed.get_i16(), 0);
        let decoded = ConsumerProtocolSubscription::decode(&mut subscribed, 0).unwrap();
        assert_eq!(decoded.topics[0].as_str(), "topic");
    }
}
