//! KIP-848's consumer protocol on the manager: ConsumerGroupHeartbeat
//! (join with epoch 0, heartbeat, leave with epoch -1 or -2),
//! ConsumerGroupDescribe, static members (KIP-345: `-2` leaves keeping the
//! partitions, a new member id with the instance id takes them back), the
//! clock of consumer group members (session and revocation timeouts), and
//! the member-epoch checks of OffsetCommit and OffsetFetch. The group type
//! itself is [`crate::coordinator::consumer_group`]. Pure like the rest of
//! the manager: no I/O, no clock, no wire format.
//!
//! Type rules, as Kafka's: a heartbeat to an empty classic group turns it
//! into a consumer group (the committed offsets stay); to a classic group
//! with members it is GROUP_ID_NOT_FOUND. A classic JoinGroup to a consumer
//! group with members is INCONSISTENT_GROUP_PROTOCOL (see `rebalance.rs`).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::GroupManager;
use crate::coordinator::consumer_group::{
    assignor, compile_regex, count, flatten, reconcile::reconcile, Assignment, ConsumerGroup,
    ConsumerMember, MemberState, TopicSource,
};
use crate::coordinator::errors;
use crate::coordinator::group::{Group, GroupState};

/// Kafka's epochs with a meaning of their own.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// ConsumerGroupHeartbeat, without the wire format. `None` fields are
/// "unchanged since the last heartbeat", as in the request.
#[derive(Clone, Debug, Default)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    /// Empty only in v0's first heartbeat, where the broker makes it.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed, on a join, or when the member owns something
    /// else.
    pub assignment: Option<Assignment>,
}

/// An error answer, with Kafka's message.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupError {
    pub code: i16,
    pub message: String,
}

fn fail<T>(code: i16, message: impl Into<String>) -> Result<T, GroupError> {
    Err(GroupError {
        code,
        message: message.into(),
    })
}

/// A topic's partitions, named both ways.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribedPartitions {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partitions: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Vec<DescribedPartitions>,
    pub target_assignment: Vec<DescribedPartitions>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

/// Kafka's request checks (`throwIfConsumerGroupHeartbeatRequestIsInvalid`).
fn validate(request: &ConsumerHeartbeat, member_id_required: bool) -> Result<(), GroupError> {
    let invalid = |message: &str| fail(errors::INVALID_REQUEST, message);
    if request.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if request.member_id.is_empty() && (member_id_required || request.member_epoch != JOIN_EPOCH) {
        return invalid("MemberId can't be empty.");
    }
    if request.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if request.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if request.member_epoch == JOIN_EPOCH {
        if request.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if request.owned.as_ref().is_some_and(|owned| count(owned) > 0) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return invalid(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    }
    if request.member_epoch == LEAVE_STATIC_EPOCH && request.instance_id.is_none() {
        return invalid("InstanceId can't be null.");
    }
    // An empty regex means none (librdkafka sends one with topic names).
    if let Some(regex) = request.subscribed_topic_regex.as_deref() {
        if !regex.is_empty() && compile_regex(regex).is_none() {
            return fail(
                errors::INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex `{regex}` is not a valid regular expression."),
            );
        }
    }
    if let Some(name) = &request.server_assignor {
        if !assignor::is_supported(name) {
            return fail(
                errors::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    assignor::ASSIGNORS.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Whether a classic group has anyone in it.
fn classic_in_use(group: &Group) -> bool {
    !group.members.is_empty() || !group.pending_members.is_empty()
}

impl GroupManager {
    /// ConsumerGroupHeartbeat. `topics` looks subscribed topics up in the
    /// broker's metadata; `member_id_required` is v1+ (the client makes
    /// its member id).
    pub fn consumer_heartbeat(
        &mut self,
        mut request: ConsumerHeartbeat,
        member_id_required: bool,
        topics: &dyn TopicSource,
        now_ms: u64,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        validate(&request, member_id_required)?;
        if matches!(request.member_epoch, LEAVE_EPOCH | LEAVE_STATIC_EPOCH) {
            return self.consumer_leave(&request, now_ms);
        }
        if request.member_id.is_empty() {
            request.member_id = (self.new_member_id)(&request.client_id);
        }
        let session_ms = self.config.consumer_session_timeout_ms;
        let interval_ms =
            i32::try_from(self.config.consumer_heartbeat_interval_ms).unwrap_or(i32::MAX);
        let max_size = self.config.max_size as usize;
        let joining = request.member_epoch == JOIN_EPOCH;
        let group = self.consumer_group_mut(&request.group_id, joining, now_ms)?;
        if let Some(instance) = request.instance_id.as_deref() {
            claim_instance(group, &request, instance)?;
        }
        let (mut member, mut bump) = match group.members.get(&request.member_id) {
            Some(member) => {
                check_epoch(member, &request)?;
                (member.clone(), false)
            }
            None if joining => {
                if group.members.len() >= max_size {
                    return fail(
                        errors::GROUP_MAX_SIZE_REACHED,
                        format!("The consumer group has reached its maximum capacity of {max_size} members."),
                    );
                }
                (ConsumerMember::new(&request.member_id), true)
            }
            None => {
                return fail(
                    errors::UNKNOWN_MEMBER_ID,
                    format!(
                        "Member {} is not a member of group {}.",
                        request.member_id, request.group_id
                    ),
                )
            }
        };
        let before = member.clone();
        bump |= update_member(&mut member, &request);
        member.session_deadline_ms = now_ms + session_ms;
        group
            .members
            .insert(member.member_id.clone(), member.clone());
        if group.has_regexes() {
            bump |= group.resolve_regexes(&topics.names());
            member = group.members[&member.member_id].clone();
        }
        let metadata = group
            .subscribed_topics()
            .into_iter()
            .filter_map(|name| topics.topic(&name).map(|info| (name, info)))
            .collect();
        if metadata != group.subscription_metadata {
            group.subscription_metadata = metadata;
            bump = true;
        }
        if bump {
            group.group_epoch += 1;
        }
        group.maybe_update_target();
        let target = group
            .target_assignment
            .get(&member.member_id)
            .cloned()
            .unwrap_or_default();
        let epochs = group.partition_epochs(&member.member_id);
        let owned = request.owned.as_ref();
        let mut next = reconcile(
            &member,
            &target,
            group.target_assignment_epoch,
            &epochs,
            owned,
        );
        next.revocation_deadline_ms = match next.state {
            MemberState::UnrevokedPartitions
                if before.state != MemberState::UnrevokedPartitions
                    || before.member_epoch != next.member_epoch =>
            {
                Some(now_ms + next.rebalance_timeout_ms.max(0) as u64)
            }
            MemberState::UnrevokedPartitions => before.revocation_deadline_ms,
            _ => None,
        };
        let send_assignment = joining
            || next.assigned != before.assigned
            || next.member_epoch != before.member_epoch
            || owned.is_some_and(|owned| *owned != next.assigned);
        let response = ConsumerHeartbeatResponse {
            member_id: next.member_id.clone(),
            member_epoch: next.member_epoch,
            heartbeat_interval_ms: interval_ms,
            assignment: send_assignment.then(|| next.assigned.clone()),
        };
        group.members.insert(next.member_id.clone(), next);
        Ok(response)
    }

    /// The consumer group `group_id`, made (or turned from an empty classic
    /// group) when `create`.
    fn consumer_group_mut(
        &mut self,
        group_id: &str,
        create: bool,
        now_ms: u64,
    ) -> Result<&mut ConsumerGroup, GroupError> {
        let unknown = || {
            fail(
                errors::UNKNOWN_MEMBER_ID,
                format!("Group {group_id} has no such member (it may have moved coordinator)."),
            )
        };
        if !self.groups.contains_key(group_id) {
            if !create {
                return unknown();
            }
            self.groups
                .insert(group_id.to_string(), Group::new(group_id, now_ms));
        }
        let group = self.groups.get_mut(group_id).expect("present");
        if group.consumer.is_none() {
            if classic_in_use(group) {
                return fail(
                    errors::GROUP_ID_NOT_FOUND,
                    format!("Group {group_id} is not a consumer group."),
                );
            }
            if !create {
                return unknown();
            }
            group.consumer = Some(Box::new(ConsumerGroup::new()));
            group.transition(GroupState::Empty, now_ms);
        }
        Ok(group.consumer.as_deref_mut().expect("a consumer group"))
    }

    fn consumer_leave(
        &mut self,
        request: &ConsumerHeartbeat,
        now_ms: u64,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let group = self.consumer_group_mut(&request.group_id, false, now_ms)?;
        if let Some(instance) = request.instance_id.as_deref() {
            claim_instance(group, request, instance)?;
        }
        let static_leave = request.member_epoch == LEAVE_STATIC_EPOCH;
        if let Some(member) = group
            .members
            .get_mut(&request.member_id)
            .filter(|_| static_leave)
        {
            // It comes back soon: it keeps its partitions until then, or
            // until its session ends.
            member.member_epoch = LEAVE_STATIC_EPOCH;
        } else if group.remove_member(&request.member_id).is_none() {
            return fail(
                errors::UNKNOWN_MEMBER_ID,
                format!(
                    "Member {} is not a member of group {}.",
                    request.member_id, request.group_id
                ),
            );
        }
        self.note_if_emptied(&request.group_id, now_ms);
        Ok(ConsumerHeartbeatResponse {
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Offsets of an emptied group expire from now on.
    fn note_if_emptied(&mut self, group_id: &str, now_ms: u64) {
        if let Some(group) = self.groups.get_mut(group_id) {
            if group
                .consumer
                .as_ref()
                .is_some_and(|c| c.members.is_empty())
            {
                group.transition(GroupState::Empty, now_ms);
            }
        }
    }

    /// Consumer group members whose session ended, or that did not give
    /// partitions up within their rebalance timeout, are removed (fenced).
    pub(super) fn tick_consumer_groups(&mut self, now_ms: u64) {
        let mut emptied = Vec::new();
        for group in self.groups.values_mut() {
            let Some(consumer) = group.consumer.as_deref_mut() else {
                continue;
            };
            let expired: Vec<(String, &'static str)> = consumer
                .members
                .values()
                .filter_map(|m| {
                    if now_ms >= m.session_deadline_ms {
                        Some((m.member_id.clone(), "session timeout"))
                    } else if m.revocation_deadline_ms.is_some_and(|at| now_ms >= at) {
                        Some((
                            m.member_id.clone(),
                            "no revocation within the rebalance timeout",
                        ))
                    } else {
                        None
                    }
                })
                .collect();
            for (member_id, why) in &expired {
                tracing::info!(group = %group.group_id, member = %member_id, "{why}: consumer group member fenced");
                consumer.remove_member(member_id);
            }
            if !expired.is_empty() && consumer.members.is_empty() {
                emptied.push(group.group_id.clone());
            }
        }
        for group_id in emptied {
            self.note_if_emptied(&group_id, now_ms);
        }
    }

    /// The earliest consumer-member deadline, for [`GroupManager::next_deadline_ms`].
    pub(super) fn next_consumer_deadline_ms(&self) -> Option<u64> {
        self.groups
            .values()
            .filter_map(|g| g.consumer.as_deref())
            .flat_map(|c| c.members.values())
            .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.revocation_deadline_ms))
            .min()
    }

    /// ConsumerGroupDescribe of one group.
    pub fn consumer_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return fail(
                errors::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} not found."),
            );
        };
        let Some(consumer) = group.consumer.as_deref() else {
            return fail(
                errors::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} is not a consumer group."),
            );
        };
        let names = consumer.topic_names();
        let describe = |assignment: &Assignment| -> Vec<DescribedPartitions> {
            assignment
                .iter()
                .map(|(topic_id, partitions)| DescribedPartitions {
                    topic_id: *topic_id,
                    topic_name: names.get(topic_id).cloned().unwrap_or_default(),
                    partitions: partitions.iter().copied().collect(),
                })
                .collect()
        };
        let members = consumer
            .members
            .values()
            .map(|m| ConsumerMemberDescription {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.member_epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                assignment: describe(&m.assigned),
                target_assignment: describe(
                    consumer
                        .target_assignment
                        .get(&m.member_id)
                        .unwrap_or(&Assignment::new()),
                ),
            })
            .collect();
        Ok(ConsumerGroupDescription {
            state: consumer.state().name(),
            group_epoch: consumer.group_epoch,
            assignment_epoch: consumer.target_assignment_epoch,
            assignor: consumer.assignor.clone(),
            members,
        })
    }
}

/// KIP-345's checks of a static member's heartbeat: an instance id held by
/// another member id fences this one, unless this is a join (epoch 0) and
/// the holder left with epoch -2, which this member then replaces; a
/// holder still in the group is UNRELEASED_INSTANCE_ID.
fn claim_instance(
    group: &mut ConsumerGroup,
    request: &ConsumerHeartbeat,
    instance: &str,
) -> Result<(), GroupError> {
    let Some(holder) = group.static_member_id(instance) else {
        return Ok(());
    };
    if holder == request.member_id {
        return Ok(());
    }
    if request.member_epoch != JOIN_EPOCH {
        return fail(
            errors::FENCED_INSTANCE_ID,
            format!(
                "Static member {} with instance id {instance} was fenced by another member.",
                request.member_id
            ),
        );
    }
    if group.members[&holder].member_epoch != LEAVE_STATIC_EPOCH {
        return fail(
            errors::UNRELEASED_INSTANCE_ID,
            format!("Static member {holder} with instance id {instance} is not released yet."),
        );
    }
    group.replace_static_member(&holder, &request.member_id);
    Ok(())
}

/// Kafka's member epoch check: a newer epoch than the member's is fenced;
/// an older one only if it is the previous epoch and the member owns no
/// more than it is assigned (its last response was lost).
fn check_epoch(member: &ConsumerMember, request: &ConsumerHeartbeat) -> Result<(), GroupError> {
    let received = request.member_epoch;
    if received == JOIN_EPOCH || received == member.member_epoch {
        return Ok(());
    }
    let owned_is_assigned = request.owned.as_ref().is_none_or(|owned| {
        flatten(owned).all(|(topic, partition)| {
            member
                .assigned
                .get(&topic)
                .is_some_and(|partitions| partitions.contains(&partition))
        })
    });
    if received < member.member_epoch
        && received == member.previous_member_epoch
        && owned_is_assigned
    {
        return Ok(());
    }
    fail(
        errors::FENCED_MEMBER_EPOCH,
        format!(
            "The consumer group member has a smaller or larger member epoch ({received}) than the one known by the group coordinator ({}).",
            member.member_epoch
        ),
    )
}

/// Applies the request's set fields to the member; true when the group
/// epoch must move (subscription or assignor changed, or a new member).
fn update_member(member: &mut ConsumerMember, request: &ConsumerHeartbeat) -> bool {
    let mut changed = false;
    if let Some(names) = &request.subscribed_topic_names {
        let names: BTreeSet<String> = names.iter().cloned().collect();
        changed |= names != member.subscribed_topic_names;
        member.subscribed_topic_names = names;
    }
    if let Some(name) = &request.server_assignor {
        changed |= member.server_assignor.as_ref() != Some(name);
        member.server_assignor = Some(name.clone());
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        let regex = (!regex.is_empty()).then(|| regex.clone());
        changed |= regex != member.subscribed_topic_regex;
        member.subscribed_topic_regex = regex;
    }
    if request.rebalance_timeout_ms >= 0 {
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if request.instance_id.is_some() {
        member.instance_id = request.instance_id.clone();
    }
    if request.rack_id.is_some() {
        member.rack_id = request.rack_id.clone();
    }
    member.client_id = request.client_id.clone();
    member.client_host = request.client_host.clone();
    changed
}

/// OffsetCommit from a consumer group (Kafka's `ConsumerGroup.validateOffsetCommit`):
/// a commit outside the group (epoch < 0) only while it has no members;
/// otherwise the member must exist, use v9+ and send its current epoch.
pub(super) fn validate_offset_commit(
    consumer: &ConsumerGroup,
    member_id: &str,
    member_epoch: i32,
    api_version: i16,
) -> i16 {
    if member_epoch < 0 && consumer.members.is_empty() {
        return errors::NONE;
    }
    let Some(member) = consumer.members.get(member_id) else {
        return errors::UNKNOWN_MEMBER_ID;
    };
    if api_version < 9 {
        return errors::UNSUPPORTED_VERSION;
    }
    compare_epochs(member_epoch, member.member_epoch)
}

/// OffsetFetch v9 with a member (Kafka's `validateOffsetFetch`): the admin
/// client (no member, epoch -1) may always fetch.
pub fn validate_offset_fetch(
    group: Option<&Group>,
    member_id: Option<&str>,
    member_epoch: i32,
) -> i16 {
    let Some(consumer) = group.and_then(|g| g.consumer.as_deref()) else {
        return errors::NONE;
    };
    let member_id = member_id.unwrap_or_default();
    if member_epoch < 0 && member_id.is_empty() {
        return errors::NONE;
    }
    let Some(member) = consumer.members.get(member_id) else {
        return errors::UNKNOWN_MEMBER_ID;
    };
    compare_epochs(member_epoch, member.member_epoch)
}

fn compare_epochs(received: i32, expected: i32) -> i16 {
    match received.cmp(&expected) {
        std::cmp::Ordering::Greater => errors::FENCED_MEMBER_EPOCH,
        std::cmp::Ordering::Less => errors::STALE_MEMBER_EPOCH,
        std::cmp::Ordering::Equal => errors::NONE,
    }
}
