//! The administration of groups: ListGroups, DescribeGroups, DeleteGroups.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::GroupManager;
use crate::coordinator::consumer_group::ConsumerGroup;
use crate::coordinator::errors;
use crate::coordinator::group::GroupState;
use crate::coordinator::records;

/// The protocol type a consumer group shows in ListGroups and
/// DescribeGroups, as Kafka shows it.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// The state's name (the two types have different states).
    pub state: &'static str,
    /// "classic" or "consumer".
    pub group_type: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupDescription {
    /// The state's name (a consumer group has its own states).
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

impl GroupManager {
    pub fn list(&self, states_filter: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state_name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: match &g.consumer {
                    Some(_) => CONSUMER_PROTOCOL_TYPE.to_string(),
                    None => g.protocol_type.clone().unwrap_or_default(),
                },
                state: g.state_name(),
                group_type: g.type_name(),
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(group) = self.groups.get(group_id) else {
            return GroupDescription {
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
        if let Some(consumer) = group.consumer.as_deref() {
            return describe_as_classic(consumer);
        }
        let stable = group.is(GroupState::Stable);
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol).cloned().unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupDescription {
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol } else { String::new() },
            members,
        }
    }

    /// DeleteGroups of one group: only an empty group can go.
    pub fn delete_group(&mut self, group_id: &str) -> i16 {
        let partitions = self.config.offsets_partitions;
        let Some(group) = self.groups.get(group_id) else {
            return errors::GROUP_ID_NOT_FOUND;
        };
        if !group.is(GroupState::Empty) || !group.has_no_members() {
            return errors::NON_EMPTY_GROUP;
        }
        let group = self.groups.remove(group_id).expect("present");
        for key in group.offsets.keys() {
            let record = records::offset_commit_record(partitions, group_id, key, None);
            self.outbox.records.push(record);
        }
        self.outbox
            .records
            .push(records::group_tombstone(partitions, group_id));
        errors::NONE
    }
}

/// A consumer group through DescribeGroups, the classic admin API: its
/// state, the assignor as the protocol, and each member's subscription and
/// assignment in the classic consumer protocol's encoding, so tools that
/// know only DescribeGroups (and `sluice groups describe`) show it. Kafka
/// answers DescribeGroups for a consumer group with members only when they
/// use the classic protocol.
fn describe_as_classic(consumer: &ConsumerGroup) -> GroupDescription {
    let names = consumer.topic_names();
    let members = consumer
        .members
        .values()
        .map(|m| {
            let subscription = ConsumerProtocolSubscription::default().with_topics(
                m.subscribed_topic_names
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            );
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                m.assigned
                    .iter()
                    .filter_map(|(topic_id, partitions)| {
                        let name = names.get(topic_id)?;
                        Some(
                            AssignedTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(name.clone())))
                                .with_partitions(partitions.iter().copied().collect()),
                        )
                    })
                    .collect(),
            );
            MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: versioned(&subscription),
                assignment: versioned(&assignment),
            }
        })
        .collect();
    GroupDescription {
        state: consumer.state().name(),
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocol_data: consumer.assignor.clone(),
        members,
    }
}

/// Version 0 of a consumer protocol message, with its version prefix.
fn versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    // Our own message of known sizes: encoding cannot fail.
    message
        .encode(&mut buf, 0)
        .expect("a consumer protocol message encodes at v0");
    buf.freeze()
}
