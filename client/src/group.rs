//! A consumer-group member in the classic consumer protocol, the one
//! implementation the tools share: FindCoordinator (through the
//! [`Cluster`]), JoinGroup (with KIP-394's member id round trip), SyncGroup
//! (as leader it assigns partitions with Kafka's `range` assignor),
//! Heartbeat, OffsetCommit and OffsetFetch as a member, and LeaveGroup, so
//! it shares a group's partitions with other members and with Kafka
//! clients.
//!
//! A member runs on its consumer's thread, between fetches: the consumer
//! calls [`GroupMember::heartbeat_if_due`], which says when the group wants
//! it to rejoin. A fetch must wait well below the heartbeat interval.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::cluster::{retrying, Cluster};
use crate::errors::codes::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ILLEGAL_GENERATION,
    MEMBER_ID_REQUIRED, NOT_COORDINATOR, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use crate::errors::KafkaError;
use crate::offsets::{self, TopicPartition};
use crate::{group_id, topic_name};

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// A member's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    pub session_timeout: Duration,
    /// Below the request timeout, since the broker holds JoinGroup open
    /// for up to this long while the other members rejoin.
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// How long (re)joining may take before giving up.
    pub join_deadline: Duration,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(3),
            join_deadline: Duration::from_secs(60),
        }
    }
}

/// Error codes that mean "rejoin the group", not "give up".
pub fn means_rejoin(code: i16) -> bool {
    matches!(
        code,
        ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS
    )
}

/// True when `error` is the group asking this member to rejoin.
pub fn is_rejoin_error(error: &anyhow::Error) -> bool {
    KafkaError::code_of(error).is_some_and(means_rejoin)
}

fn is_transient(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// This process's membership of one group.
pub struct GroupMember {
    pub group: String,
    /// The topics subscribed to.
    pub topics: Vec<String>,
    pub member_id: String,
    pub generation: i32,
    pub config: GroupConfig,
    last_heartbeat: Instant,
}

impl GroupMember {
    pub fn new(group: &str, topics: &[String], config: GroupConfig) -> GroupMember {
        GroupMember {
            group: group.to_string(),
            topics: topics.to_vec(),
            member_id: String::new(),
            generation: -1,
            config,
            last_heartbeat: Instant::now(),
        }
    }

    /// Joins (or rejoins) the group and returns the partitions assigned to
    /// this member, sorted.
    pub fn join(&mut self, cluster: &mut Cluster) -> Result<Vec<TopicPartition>> {
        let deadline = Instant::now() + self.config.join_deadline;
        loop {
            if Instant::now() > deadline {
                bail!(
                    "could not join group '{}' within {} ms",
                    self.group,
                    self.config.join_deadline.as_millis()
                );
            }
            let joined = match self.join_group(cluster) {
                Ok(joined) => joined,
                Err(error) if crate::wire::ConnectionError::find(&error).is_some() => {
                    // The coordinator went away: find it again.
                    cluster.recover(&error, crate::retry::Refresh::Metadata);
                    sleep(RETRY_BACKOFF);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let code = joined.error_code;
            if code == MEMBER_ID_REQUIRED {
                self.member_id = joined.member_id.to_string();
                continue;
            }
            if code == UNKNOWN_MEMBER_ID || code == ILLEGAL_GENERATION {
                self.member_id.clear();
                continue;
            }
            if is_transient(code) || code == REBALANCE_IN_PROGRESS {
                cluster.forget_coordinators();
                sleep(RETRY_BACKOFF);
                continue;
            }
            KafkaError::check(code, None, format!("joining group '{}'", self.group))?;
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                leader_assignments(cluster, &joined)?
            } else {
                Vec::new()
            };
            let protocol_name = joined
                .protocol_name
                .clone()
                .unwrap_or_else(|| StrBytes::from_static_str(ASSIGNOR));
            match self.sync_group(cluster, protocol_name, assignments) {
                Ok(Some(mut assigned)) => {
                    assigned.sort();
                    self.last_heartbeat = Instant::now();
                    return Ok(assigned);
                }
                Ok(None) => sleep(RETRY_BACKOFF),
                Err(error) if crate::wire::ConnectionError::find(&error).is_some() => {
                    cluster.recover(&error, crate::retry::Refresh::Metadata);
                    sleep(RETRY_BACKOFF);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn join_group(&mut self, cluster: &mut Cluster) -> Result<JoinGroupResponse> {
        let subscription = ConsumerProtocolSubscription::default().with_topics(
            self.topics
                .iter()
                .map(|topic| StrBytes::from_string(topic.clone()))
                .collect(),
        );
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(ASSIGNOR))
                .with_metadata(versioned(&subscription, 0)?)]);
        let connection = cluster.coordinator(&self.group)?;
        connection.call(&request, 9)
    }

    /// `None` when the group started another rebalance (join again).
    fn sync_group(
        &mut self,
        cluster: &mut Cluster,
        protocol_name: StrBytes,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Option<Vec<TopicPartition>>> {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(protocol_name))
            .with_assignments(assignments);
        let connection = cluster.coordinator(&self.group)?;
        let version = connection.version::<SyncGroupRequest>(5)?;
        let mut request = request;
        if version < 5 {
            request = request.with_protocol_type(None).with_protocol_name(None);
        }
        let response = connection.call_at(&request, version)?;
        if is_transient(response.error_code) {
            cluster.forget_coordinators();
        }
        if means_rejoin(response.error_code) || is_transient(response.error_code) {
            if response.error_code == UNKNOWN_MEMBER_ID {
                self.member_id.clear();
            }
            return Ok(None);
        }
        KafkaError::check(
            response.error_code,
            None,
            format!("syncing group '{}'", self.group),
        )?;
        let assigned = decode_assignment(&response.assignment)?;
        Ok(Some(
            assigned
                .into_iter()
                .filter(|(topic, _)| self.topics.contains(topic))
                .collect(),
        ))
    }

    /// Sends a heartbeat when one is due; `true` when the group wants this
    /// member to rejoin (a lost coordinator included).
    pub fn heartbeat_if_due(&mut self, cluster: &mut Cluster) -> Result<bool> {
        if self.last_heartbeat.elapsed() < self.config.heartbeat_interval {
            return Ok(false);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let response = match cluster
            .coordinator(&self.group)
            .and_then(|connection| connection.call(&request, 4))
        {
            Ok(response) => response,
            Err(error) if crate::wire::ConnectionError::find(&error).is_some() => {
                cluster.recover(&error, crate::retry::Refresh::Metadata);
                return Ok(true);
            }
            Err(error) => return Err(error),
        };
        self.last_heartbeat = Instant::now();
        if is_transient(response.error_code) {
            cluster.forget_coordinators();
        }
        if means_rejoin(response.error_code) || is_transient(response.error_code) {
            if response.error_code == UNKNOWN_MEMBER_ID {
                self.member_id.clear();
            }
            return Ok(true);
        }
        KafkaError::check(
            response.error_code,
            None,
            format!("heartbeat to group '{}'", self.group),
        )?;
        Ok(false)
    }

    /// Commits `offsets` as this member. `Ok(false)`: the group is
    /// rebalancing and refused the commit; rejoin (the next owner reads
    /// from the last good commit).
    pub fn commit(
        &mut self,
        cluster: &mut Cluster,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<bool> {
        match offsets::commit_as(
            cluster,
            &self.group,
            self.generation,
            &self.member_id,
            offsets,
        ) {
            Ok(()) => Ok(true),
            Err(error) if is_rejoin_error(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The group's committed offsets of `partitions` (absent when none).
    pub fn committed(
        &self,
        cluster: &mut Cluster,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let topics = offsets::by_topic(partitions.iter().cloned());
        offsets::committed(cluster, &self.group, Some(&topics))
    }

    /// Leaves the group, so its other members take over at once instead of
    /// after the session timeout.
    pub fn leave(&mut self, cluster: &mut Cluster) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let member = StrBytes::from_string(self.member_id.clone());
        let group = self.group.clone();
        let response = retrying(cluster, |cluster| {
            let connection = cluster.coordinator(&group)?;
            let version = connection.version::<LeaveGroupRequest>(5)?;
            let mut request = LeaveGroupRequest::default().with_group_id(group_id(&group));
            request = if version >= 3 {
                request.with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
            } else {
                request.with_member_id(member.clone())
            };
            connection.call_at(&request, version)
        })?;
        self.member_id.clear();
        if response.error_code != UNKNOWN_MEMBER_ID {
            KafkaError::check(
                response.error_code,
                None,
                format!("leaving group '{}'", self.group),
            )?;
        }
        Ok(())
    }
}

/// An embedded consumer-protocol message: version (i16) then the body.
fn versioned<M: Encodable>(message: &M, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable + kafka_protocol::protocol::Message>(bytes: &Bytes) -> Result<M> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        bail!("a consumer-protocol message of {} bytes", buf.remaining());
    }
    let version = buf.get_i16().clamp(M::VERSIONS.min, M::VERSIONS.max);
    M::decode(&mut buf, version)
}

pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Ok(Vec::new()); // nothing assigned to this member
    }
    let assignment: ConsumerProtocolAssignment =
        decode_versioned(bytes).context("decoding this member's assignment")?;
    Ok(assignment
        .assigned_partitions
        .iter()
        .flat_map(|topic| {
            let name = topic.topic.0.to_string();
            topic.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect())
}

/// As the group's leader: every member's subscription, the partition
/// counts of the topics subscribed to, and the range assignment of them.
fn leader_assignments(
    cluster: &mut Cluster,
    joined: &JoinGroupResponse,
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let mut subscriptions = Vec::new();
    for member in &joined.members {
        let subscription: ConsumerProtocolSubscription = decode_versioned(&member.metadata)
            .with_context(|| {
                format!(
                    "decoding the subscription of member {}",
                    member.member_id.as_str()
                )
            })?;
        let topics = subscription.topics.iter().map(|t| t.to_string()).collect();
        subscriptions.push((member.member_id.to_string(), topics));
    }
    let mut topics: Vec<String> = subscriptions
        .iter()
        .flat_map(|(_, topics): &(String, Vec<String>)| topics.iter().cloned())
        .collect();
    topics.sort();
    topics.dedup();
    let metadata = cluster.metadata(Some(&topics))?;
    let partition_counts: BTreeMap<String, i32> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .filter_map(|topic| {
            let name = topic.name.as_ref()?.0.to_string();
            Some((name, topic.partitions.len() as i32))
        })
        .collect();
    let plan = range_assign(&subscriptions, &partition_counts);
    subscriptions
        .iter()
        .map(|(member, _)| {
            let partitions = plan.get(member).cloned().unwrap_or_default();
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                offsets::by_topic(partitions)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        AssignedTopic::default()
                            .with_topic(topic_name(&topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignment(versioned(&assignment, 0)?))
        })
        .collect()
}

/// Kafka's `range` assignor: per topic, the subscribed members in member
/// id order each take a run of consecutive partitions; the first
/// `partitions % members` take one more.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut plan: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .iter()
        .map(|(member, _)| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let mut members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        members.sort();
        let each = count / members.len() as i32;
        let extra = count % members.len() as i32;
        let mut next = 0;
        for (index, member) in members.into_iter().enumerate() {
            let take = each + i32::from((index as i32) < extra);
            let partitions = plan.get_mut(member).expect("every member has an entry");
            partitions.extend((next..next + take).map(|p| (topic.clone(), p)));
            next += take;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        members
            .iter()
            .map(|(m, topics)| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn partitions(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn range_gives_the_first_members_one_more() {
        let counts = BTreeMap::from([("t".to_string(), 5)]);
        let plan = range_assign(&subscriptions(&[("b", &["t"]), ("a", &["t"])]), &counts);
        assert_eq!(plan["a"], partitions(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(plan["b"], partitions(&[("t", 3), ("t", 4)]));
    }

    #[test]
    fn range_skips_members_not_subscribed_and_leaves_extra_members_idle() {
        let counts = BTreeMap::from([("t".to_string(), 1), ("u".to_string(), 2)]);
        let plan = range_assign(
            &subscriptions(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["u"])]),
            &counts,
        );
        assert_eq!(plan["a"], partitions(&[("t", 0)]));
        assert_eq!(plan["b"], partitions(&[("u", 0)]));
        assert_eq!(plan["c"], partitions(&[("u", 1)]));
        let plan = range_assign(&subscriptions(&[("a", &["t"]), ("b", &["t"])]), &counts);
        assert_eq!(plan["b"], Vec::new());
    }

    #[test]
    fn assignments_round_trip_and_garbage_is_an_error() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![1, 3]),
        ]);
        let bytes = versioned(&assignment, 0).unwrap();
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            partitions(&[("t", 1), ("t", 3)])
        );
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0x7f])).is_err());
    }
}
