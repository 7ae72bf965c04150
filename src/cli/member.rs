//! A consumer-group member for `sluice consume --group`: JoinGroup,
//! SyncGroup (as leader it assigns partitions with Kafka's `range`
//! assignor), Heartbeat, and LeaveGroup on exit, in the classic consumer
//! protocol, so it shares a group's partitions with other `sluice consume`
//! processes and with Kafka clients.
//!
//! It runs on the CLI's one thread, between fetches: a fetch waits at most
//! half a second, so heartbeats every [`HEARTBEAT_INTERVAL_MS`] keep well
//! inside the session timeout.

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

use super::client::{group_id, topic_name, Client, KafkaError};
use super::offsets::TopicPartition;

pub const SESSION_TIMEOUT_MS: i32 = 10_000;
/// Below the default request timeout, since the broker holds JoinGroup
/// open for up to this long while the other members rejoin.
pub const REBALANCE_TIMEOUT_MS: i32 = 20_000;
pub const HEARTBEAT_INTERVAL_MS: u64 = 3_000;
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// How long (re)joining may take before the command gives up.
const JOIN_DEADLINE_MS: u64 = 60_000;
const RETRY_BACKOFF_MS: u64 = 200;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

/// Error codes that mean "rejoin the group", not "give up".
pub fn means_rejoin(code: i16) -> bool {
    matches!(
        code,
        ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS
    )
}

fn is_transient(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// This process's membership of one group, subscribed to one topic.
pub struct Membership {
    pub group: String,
    pub topic: String,
    pub member_id: String,
    pub generation: i32,
    last_heartbeat: Instant,
}

impl Membership {
    pub fn new(group: &str, topic: &str) -> Membership {
        Membership {
            group: group.to_string(),
            topic: topic.to_string(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        }
    }

    /// Joins (or rejoins) the group and returns the partitions of our topic
    /// assigned to this member.
    pub fn join(&mut self, client: &mut Client) -> Result<Vec<i32>> {
        let deadline = Instant::now() + Duration::from_millis(JOIN_DEADLINE_MS);
        loop {
            if Instant::now() > deadline {
                bail!(
                    "could not join group '{}' within {JOIN_DEADLINE_MS} ms",
                    self.group
                );
            }
            let joined = self.join_group(client)?;
            let code = joined.error_code;
            if code == MEMBER_ID_REQUIRED {
                self.member_id = joined.member_id.to_string();
                continue;
            }
            if code == UNKNOWN_MEMBER_ID {
                self.member_id.clear();
                continue;
            }
            if is_transient(code) || code == REBALANCE_IN_PROGRESS {
                client.forget_coordinators();
                sleep(Duration::from_millis(RETRY_BACKOFF_MS));
                continue;
            }
            KafkaError::check(code, None, format!("joining group '{}'", self.group))?;
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                leader_assignments(client, &joined)?
            } else {
                Vec::new()
            };
            let protocol_name = joined
                .protocol_name
                .clone()
                .unwrap_or_else(|| StrBytes::from_static_str(ASSIGNOR));
            match self.sync_group(client, protocol_name, assignments)? {
                Some(assigned) => {
                    self.last_heartbeat = Instant::now();
                    return Ok(assigned);
                }
                None => sleep(Duration::from_millis(RETRY_BACKOFF_MS)),
            }
        }
    }

    fn join_group(&mut self, client: &mut Client) -> Result<JoinGroupResponse> {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(self.topic.clone())]);
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(ASSIGNOR))
                .with_metadata(versioned(&subscription, 0)?)]);
        let connection = client.coordinator(&self.group)?;
        connection.call(&request, 9)
    }

    /// `None` when the group started another rebalance (join again).
    fn sync_group(
        &mut self,
        client: &mut Client,
        protocol_name: StrBytes,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Option<Vec<i32>>> {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(protocol_name))
            .with_assignments(assignments);
        let connection = client.coordinator(&self.group)?;
        let version = connection.version::<SyncGroupRequest>(5)?;
        let mut request = request;
        if version < 5 {
            request = request.with_protocol_type(None).with_protocol_name(None);
        }
        let response = connection.call_at(&request, version)?;
        if is_transient(response.error_code) {
            client.forget_coordinators();
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
                .filter(|(topic, _)| *topic == self.topic)
                .map(|(_, partition)| partition)
                .collect(),
        ))
    }

    /// Sends a heartbeat when one is due; `true` when the group wants this
    /// member to rejoin.
    pub fn heartbeat_if_due(&mut self, client: &mut Client) -> Result<bool> {
        if self.last_heartbeat.elapsed() < Duration::from_millis(HEARTBEAT_INTERVAL_MS) {
            return Ok(false);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let response = client.coordinator(&self.group)?.call(&request, 4)?;
        self.last_heartbeat = Instant::now();
        if is_transient(response.error_code) {
            client.forget_coordinators();
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

    /// Leaves the group, so its other members take over at once instead of
    /// after the session timeout.
    pub fn leave(&mut self, client: &mut Client) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let member = StrBytes::from_string(self.member_id.clone());
        let connection = client.coordinator(&self.group)?;
        let version = connection.version::<LeaveGroupRequest>(5)?;
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.group));
        request = if version >= 3 {
            request.with_members(vec![MemberIdentity::default().with_member_id(member)])
        } else {
            request.with_member_id(member)
        };
        let response = connection.call_at(&request, version)?;
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

fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>> {
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
    client: &mut Client,
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
    let metadata = client.metadata(Some(&topics))?;
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
                super::offsets::by_topic(partitions)
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
