//! Every group of one shard and every operation on them: Kafka's classic
//! group coordinator as a state machine with no I/O and no clock.
//!
//! Runs on the coordinator shard of the groups it holds. Callers pass the
//! time (`now_ms`, wall-clock milliseconds) and take the effects from
//! [`Outbox`]: replies to parked JoinGroup/SyncGroup requests, and records
//! to append to `__consumer_offsets`. It must not await, read a clock or
//! know the wire format.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::errors;
use super::group::{
    CommittedOffset, Group, GroupState, InitialDelay, JoinPhase, Member, Protocol, TopicPartition,
};
use super::records::{self, LogRecord};

/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

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
        }
    }
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member that has none yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// KIP-394 (JoinGroup v4+): a member without an id first gets one with
    /// MEMBER_ID_REQUIRED and joins again with it.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinResponse {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata; for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(member_id: &str, error_code: i16) -> JoinResponse {
        JoinResponse {
            error_code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id and its bytes.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncResponse {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error_code: i16) -> SyncResponse {
        SyncResponse {
            error_code,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
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

/// Who leaves, in a LeaveGroup.
#[derive(Clone, Debug)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

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
    /// -1: the broker's retention (OffsetCommit v2 to v4 may set it).
    pub retention_time_ms: i64,
    pub topics: Vec<(String, Vec<PartitionCommit>)>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
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
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

/// Per topic, per partition: its committed offset, if any.
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// Makes member ids: given a prefix (client id or instance id), a new id.
pub type MemberIdGenerator = Box<dyn FnMut(&str) -> String>;

pub struct GroupManager {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    new_member_id: MemberIdGenerator,
    pub outbox: Outbox,
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
            new_member_id,
            outbox: Outbox::default(),
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

    // -----------------------------------------------------------------
    // JoinGroup

    pub fn join(&mut self, request: JoinRequest, now_ms: u64) -> Outcome<JoinResponse> {
        let reject = |code| Outcome::Now(JoinResponse::error(&request.member_id, code));
        if request.group_id.is_empty() {
            return reject(errors::INVALID_GROUP_ID);
        }
        let session_ms = i64::from(request.session_timeout_ms);
        if session_ms < self.config.min_session_timeout_ms as i64
            || session_ms > self.config.max_session_timeout_ms as i64
        {
            return reject(errors::INVALID_SESSION_TIMEOUT);
        }
        let known = !request.member_id.is_empty();
        if !self.groups.contains_key(&request.group_id) {
            if known {
                return reject(errors::UNKNOWN_MEMBER_ID);
            }
            let group = Group::new(&request.group_id, now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let max_size = self.config.max_size as usize;
        let group = self.groups.get(&request.group_id).expect("present");
        let is_member = group.members.contains_key(&request.member_id)
            || group.pending_members.contains_key(&request.member_id)
            || request
                .group_instance_id
                .as_ref()
                .is_some_and(|instance| group.static_members.contains_key(instance));
        if !is_member && group.members.len() + group.pending_members.len() >= max_size {
            return reject(errors::GROUP_MAX_SIZE_REACHED);
        }
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return reject(errors::INCONSISTENT_GROUP_PROTOCOL);
        }
        let was_empty = group.is(GroupState::Empty);
        let outcome = if known {
            self.join_known(request.clone(), now_ms)
        } else {
            self.join_unknown(request.clone(), now_ms)
        };
        let group = self.groups.get_mut(&request.group_id).expect("present");
        Self::try_complete_join(group, now_ms, &mut self.outbox);
        self.persist_if_emptied(&request.group_id, was_empty);
        outcome
    }

    fn join_unknown(&mut self, request: JoinRequest, now_ms: u64) -> Outcome<JoinResponse> {
        let prefix = request
            .group_instance_id
            .clone()
            .unwrap_or_else(|| request.client_id.clone());
        let member_id = (self.new_member_id)(&prefix);
        let group = self.groups.get_mut(&request.group_id).expect("present");
        if let Some(instance) = request.group_instance_id.clone() {
            if let Some(old_id) = group.static_members.get(&instance).cloned() {
                return self.replace_static_member(request, old_id, member_id, now_ms);
            }
        } else if request.require_known_member_id {
            let deadline_ms = now_ms + request.session_timeout_ms.max(0) as u64;
            group.pending_members.insert(member_id.clone(), deadline_ms);
            return Outcome::Now(JoinResponse::error(&member_id, errors::MEMBER_ID_REQUIRED));
        }
        self.add_member_and_rebalance(request, member_id, now_ms)
    }

    fn join_known(&mut self, request: JoinRequest, now_ms: u64) -> Outcome<JoinResponse> {
        let member_id = request.member_id.clone();
        let group = self.groups.get_mut(&request.group_id).expect("present");
        if group.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(request, member_id, now_ms);
        }
        let reject = |code| Outcome::Now(JoinResponse::error(&member_id, code));
        if group.is_static_member_fenced(&member_id, request.group_instance_id.as_deref()) {
            return reject(errors::FENCED_INSTANCE_ID);
        }
        let Some(member) = group.members.get(&member_id) else {
            return reject(errors::UNKNOWN_MEMBER_ID);
        };
        let same_protocols = member.same_protocols(&request.protocols);
        match group.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(request, now_ms),
            GroupState::CompletingRebalance if same_protocols => {
                // The member missed the response of this generation's join.
                let with_members = group.is_leader(&member_id);
                Outcome::Now(Self::join_response(group, &member_id, with_members))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(request, now_ms),
            GroupState::Stable if !group.is_leader(&member_id) && same_protocols => {
                let member = group.members.get_mut(&member_id).expect("present");
                member.last_heartbeat_ms = now_ms;
                Outcome::Now(Self::join_response(group, &member_id, false))
            }
            GroupState::Stable => self.update_member_and_rebalance(request, now_ms),
            GroupState::Empty | GroupState::Dead => reject(errors::UNKNOWN_MEMBER_ID),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        member_id: String,
        now_ms: u64,
    ) -> Outcome<JoinResponse> {
        let group = self.groups.get_mut(&request.group_id).expect("present");
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            last_heartbeat_ms: now_ms,
        };
        if group.is(GroupState::PreparingRebalance) && group.generation_id == 0 {
            group.new_member_added = true;
        }
        group.add_member(member);
        Self::maybe_prepare_rebalance(group, &self.config, now_ms, &mut self.outbox);
        Outcome::Parked { member_id }
    }

    fn update_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        now_ms: u64,
    ) -> Outcome<JoinResponse> {
        let group = self.groups.get_mut(&request.group_id).expect("present");
        let member = group
            .members
            .get_mut(&request.member_id)
            .expect("caller checked");
        member.protocols = request.protocols;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.awaiting_join = true;
        member.last_heartbeat_ms = now_ms;
        Self::maybe_prepare_rebalance(group, &self.config, now_ms, &mut self.outbox);
        Outcome::Parked {
            member_id: request.member_id,
        }
    }

    /// KIP-345: a static member rejoins without a member id: it takes over
    /// its instance's place under a new id, and the old id is fenced. In a
    /// stable group whose protocol would not change, no rebalance happens:
    /// the member gets the current generation and, at SyncGroup, its
    /// previous assignment.
    fn replace_static_member(
        &mut self,
        request: JoinRequest,
        old_id: String,
        new_id: String,
        now_ms: u64,
    ) -> Outcome<JoinResponse> {
        let group_id = request.group_id.clone();
        let group = self.groups.get_mut(&group_id).expect("present");
        let current_leader = group.leader_id.clone().unwrap_or_default();
        let mut member = group
            .members
            .remove(&old_id)
            .expect("static member is a member");
        if member.awaiting_join {
            self.outbox.completions.push(Completion::Join {
                group_id: group_id.clone(),
                member_id: old_id.clone(),
                response: JoinResponse::error(&old_id, errors::FENCED_INSTANCE_ID),
            });
        }
        if member.awaiting_sync {
            self.outbox.completions.push(Completion::Sync {
                group_id: group_id.clone(),
                member_id: old_id.clone(),
                response: SyncResponse::error(errors::FENCED_INSTANCE_ID),
            });
        }
        let old_protocols = std::mem::replace(&mut member.protocols, request.protocols);
        member.member_id = new_id.clone();
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.last_heartbeat_ms = now_ms;
        group.members.insert(new_id.clone(), member);
        if let Some(instance) = request.group_instance_id {
            group.static_members.insert(instance, new_id.clone());
        }
        if group.is_leader(&old_id) {
            group.leader_id = Some(new_id.clone());
        }
        if group.pending_sync.remove(&old_id) {
            group.pending_sync.insert(new_id.clone());
        }
        match group.state {
            GroupState::Stable if group.select_protocol() == group.protocol_name => {
                self.outbox
                    .records
                    .push(group_record(group, self.config.offsets_partitions));
                Outcome::Now(JoinResponse {
                    error_code: errors::NONE,
                    generation_id: group.generation_id,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    // The old leader id, so that a leader that restarted
                    // does not think it must assign a stable group.
                    leader: current_leader,
                    member_id: new_id,
                    members: Vec::new(),
                })
            }
            _ => {
                let member = group.members.get_mut(&new_id).expect("inserted");
                member.awaiting_join = true;
                let _ = old_protocols;
                if group.is(GroupState::CompletingRebalance) {
                    Self::prepare_rebalance(group, &self.config, now_ms, &mut self.outbox);
                } else {
                    Self::maybe_prepare_rebalance(group, &self.config, now_ms, &mut self.outbox);
                }
                Outcome::Parked { member_id: new_id }
            }
        }
    }

    fn join_response(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = if with_members {
            group
                .members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error_code: errors::NONE,
            generation_id: group.generation_id,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
            leader: group.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    fn maybe_prepare_rebalance(
        group: &mut Group,
        config: &GroupConfig,
        now_ms: u64,
        outbox: &mut Outbox,
    ) {
        if matches!(
            group.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            Self::prepare_rebalance(group, config, now_ms, outbox);
        }
    }

    fn prepare_rebalance(
        group: &mut Group,
        config: &GroupConfig,
        now_ms: u64,
        outbox: &mut Outbox,
    ) {
        if group.is(GroupState::CompletingRebalance) {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
            }
            Self::propagate_sync_error(group, errors::REBALANCE_IN_PROGRESS, outbox);
        }
        group.pending_sync.clear();
        group.sync_deadline_ms = None;
        let rebalance_ms = group.rebalance_timeout_ms();
        group.join_phase = Some(if group.is(GroupState::Empty) {
            let delay_ms = config.initial_rebalance_delay_ms.min(rebalance_ms);
            JoinPhase {
                deadline_ms: now_ms + delay_ms,
                initial_delay: Some(InitialDelay {
                    delay_ms: config.initial_rebalance_delay_ms,
                    remaining_ms: rebalance_ms.saturating_sub(config.initial_rebalance_delay_ms),
                }),
            }
        } else {
            JoinPhase {
                deadline_ms: now_ms + rebalance_ms,
                initial_delay: None,
            }
        });
        group.transition(GroupState::PreparingRebalance, now_ms);
        tracing::info!(
            group = %group.group_id,
            generation = group.generation_id,
            members = group.members.len(),
            "preparing to rebalance"
        );
        Self::try_complete_join(group, now_ms, outbox);
    }

    fn propagate_sync_error(group: &mut Group, error_code: i16, outbox: &mut Outbox) {
        for member in group.members.values_mut().filter(|m| m.awaiting_sync) {
            member.awaiting_sync = false;
            outbox.completions.push(Completion::Sync {
                group_id: group.group_id.clone(),
                member_id: member.member_id.clone(),
                response: SyncResponse::error(error_code),
            });
        }
    }

    /// Ends the join phase early when every member has rejoined (never
    /// during the initial delay, which waits for more members).
    fn try_complete_join(group: &mut Group, now_ms: u64, outbox: &mut Outbox) {
        let delaying = group
            .join_phase
            .is_some_and(|phase| phase.initial_delay.is_some());
        if group.is(GroupState::PreparingRebalance) && !delaying && group.all_members_joined() {
            Self::complete_join(group, now_ms, outbox);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin,
    /// start the next generation and answer every parked JoinGroup.
    fn complete_join(group: &mut Group, now_ms: u64, outbox: &mut Outbox) {
        let dropped: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in dropped {
            group.remove_member(&member_id);
        }
        if !group.members.is_empty() && !Self::elect_joined_leader(group) {
            // Nobody rejoined (only static members that stay silent): wait
            // another rebalance timeout; their sessions will expire.
            group.join_phase = Some(JoinPhase {
                deadline_ms: now_ms + group.rebalance_timeout_ms(),
                initial_delay: None,
            });
            return;
        }
        group.join_phase = None;
        group.new_member_added = false;
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.transition(GroupState::Empty, now_ms);
            return;
        }
        group.protocol_name = group.select_protocol();
        group.transition(GroupState::CompletingRebalance, now_ms);
        tracing::info!(
            group = %group.group_id,
            generation = group.generation_id,
            members = group.members.len(),
            protocol = group.protocol_name.as_deref().unwrap_or(""),
            "join phase complete"
        );
        group.pending_sync = group.members.keys().cloned().collect();
        group.sync_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
        let leader = group.leader_id.clone().unwrap_or_default();
        let responses: Vec<(String, JoinResponse)> = group
            .members
            .values()
            .filter(|m| m.awaiting_join)
            .map(|m| {
                let with_members = m.member_id == leader;
                let response = Self::join_response(group, &m.member_id, with_members);
                (m.member_id.clone(), response)
            })
            .collect();
        for (member_id, response) in responses {
            let member = group.members.get_mut(&member_id).expect("present");
            member.awaiting_join = false;
            member.last_heartbeat_ms = now_ms;
            outbox.completions.push(Completion::Join {
                group_id: group.group_id.clone(),
                member_id,
                response,
            });
        }
    }

    /// Kafka's `maybeElectNewJoinedLeader`: the leader must be a member that
    /// rejoined; false when none did.
    fn elect_joined_leader(group: &mut Group) -> bool {
        let leader_joined = group
            .leader_id
            .as_ref()
            .and_then(|id| group.members.get(id))
            .is_some_and(|m| m.awaiting_join);
        if leader_joined {
            return true;
        }
        match group.members.values().find(|m| m.awaiting_join) {
            Some(member) => {
                group.leader_id = Some(member.member_id.clone());
                true
            }
            None => false,
        }
    }

    // -----------------------------------------------------------------
    // SyncGroup, Heartbeat, LeaveGroup

    pub fn sync(&mut self, request: SyncRequest, now_ms: u64) -> Outcome<SyncResponse> {
        let reject = |code| Outcome::Now(SyncResponse::error(code));
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return reject(errors::UNKNOWN_MEMBER_ID);
        };
        let member_id = request.member_id.clone();
        if group.is_static_member_fenced(&member_id, request.group_instance_id.as_deref()) {
            return reject(errors::FENCED_INSTANCE_ID);
        }
        if !group.members.contains_key(&member_id) {
            return reject(errors::UNKNOWN_MEMBER_ID);
        }
        if request.generation_id != group.generation_id {
            return reject(errors::ILLEGAL_GENERATION);
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_differs || name_differs {
            return reject(errors::INCONSISTENT_GROUP_PROTOCOL);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => reject(errors::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => reject(errors::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                group.pending_sync.remove(&member_id);
                let member = group.members.get_mut(&member_id).expect("present");
                member.last_heartbeat_ms = now_ms;
                Outcome::Now(SyncResponse {
                    error_code: errors::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                group.pending_sync.remove(&member_id);
                let member = group.members.get_mut(&member_id).expect("present");
                member.awaiting_sync = true;
                member.last_heartbeat_ms = now_ms;
                if group.is_leader(&member_id) {
                    self.complete_sync(&request.group_id, request.assignments, now_ms);
                }
                Outcome::Parked { member_id }
            }
        }
    }

    /// The leader's assignment: every member gets its part (or nothing),
    /// the group is Stable and persisted, parked SyncGroups are answered.
    fn complete_sync(&mut self, group_id: &str, assignments: Vec<(String, Bytes)>, now_ms: u64) {
        let group = self.groups.get_mut(group_id).expect("present");
        let mut assigned: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for member in group.members.values_mut() {
            member.assignment = assigned.remove(&member.member_id).unwrap_or_default();
        }
        group.transition(GroupState::Stable, now_ms);
        if group.pending_sync.is_empty() {
            group.sync_deadline_ms = None;
        }
        self.outbox
            .records
            .push(group_record(group, self.config.offsets_partitions));
        for member in group.members.values_mut().filter(|m| m.awaiting_sync) {
            member.awaiting_sync = false;
            self.outbox.completions.push(Completion::Sync {
                group_id: group.group_id.clone(),
                member_id: member.member_id.clone(),
                response: SyncResponse {
                    error_code: errors::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                },
            });
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: u64,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        if group.is_static_member_fenced(member_id, group_instance_id) {
            return errors::FENCED_INSTANCE_ID;
        }
        let Some(member) = group.members.get_mut(member_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        if generation_id != group.generation_id {
            return errors::ILLEGAL_GENERATION;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => errors::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                member.last_heartbeat_ms = now_ms;
                errors::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat_ms = now_ms;
                errors::NONE
            }
        }
    }

    /// LeaveGroup: one error per leaving member (v3+ batches them).
    pub fn leave(&mut self, group_id: &str, leaving: &[LeavingMember], now_ms: u64) -> Vec<i16> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![errors::UNKNOWN_MEMBER_ID; leaving.len()];
        };
        let was_empty = group.is(GroupState::Empty);
        let mut results = Vec::with_capacity(leaving.len());
        for who in leaving {
            let instance = who.group_instance_id.as_deref();
            let member_id = if who.member_id.is_empty() {
                instance.and_then(|i| group.static_members.get(i)).cloned()
            } else {
                Some(who.member_id.clone())
            };
            let Some(member_id) = member_id else {
                results.push(errors::UNKNOWN_MEMBER_ID);
                continue;
            };
            if group.pending_members.remove(&member_id).is_some() {
                Self::try_complete_join(group, now_ms, &mut self.outbox);
                results.push(errors::NONE);
            } else if group.is_static_member_fenced(&member_id, instance) {
                results.push(errors::FENCED_INSTANCE_ID);
            } else if !group.members.contains_key(&member_id) {
                results.push(errors::UNKNOWN_MEMBER_ID);
            } else {
                Self::remove_member_and_update_group(
                    group,
                    &self.config,
                    &member_id,
                    now_ms,
                    &mut self.outbox,
                );
                results.push(errors::NONE);
            }
        }
        self.persist_if_emptied(group_id, was_empty);
        results
    }

    fn remove_member_and_update_group(
        group: &mut Group,
        config: &GroupConfig,
        member_id: &str,
        now_ms: u64,
        outbox: &mut Outbox,
    ) {
        let Some(member) = group.remove_member(member_id) else {
            return;
        };
        if member.awaiting_join {
            outbox.completions.push(Completion::Join {
                group_id: group.group_id.clone(),
                member_id: member_id.to_string(),
                response: JoinResponse::error(member_id, errors::UNKNOWN_MEMBER_ID),
            });
        }
        if member.awaiting_sync {
            outbox.completions.push(Completion::Sync {
                group_id: group.group_id.clone(),
                member_id: member_id.to_string(),
                response: SyncResponse::error(errors::UNKNOWN_MEMBER_ID),
            });
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                Self::maybe_prepare_rebalance(group, config, now_ms, outbox)
            }
            GroupState::PreparingRebalance => Self::try_complete_join(group, now_ms, outbox),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Writes the group's record when it has just become Empty (Kafka
    /// stores the empty group at the end of its last join phase).
    fn persist_if_emptied(&mut self, group_id: &str, was_empty: bool) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if !was_empty && group.is(GroupState::Empty) && group.generation_id > 0 {
            let record = group_record(group, self.config.offsets_partitions);
            self.outbox.records.push(record);
        }
    }

    // -----------------------------------------------------------------
    // Time

    /// Moves every group's clock to `now_ms`: lapsed KIP-394 ids, the end
    /// of join phases, members that never synced, expired sessions.
    pub fn tick(&mut self, now_ms: u64) {
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let group = self.groups.get_mut(&group_id).expect("present");
            let was_empty = group.is(GroupState::Empty);
            Self::tick_group(group, &self.config, now_ms, &mut self.outbox);
            self.persist_if_emptied(&group_id, was_empty);
        }
    }

    fn tick_group(group: &mut Group, config: &GroupConfig, now_ms: u64, outbox: &mut Outbox) {
        let before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, deadline_ms| *deadline_ms > now_ms);
        if group.pending_members.len() != before {
            Self::try_complete_join(group, now_ms, outbox);
        }
        if let Some(phase) = group.join_phase {
            if group.is(GroupState::PreparingRebalance) && now_ms >= phase.deadline_ms {
                Self::end_join_phase(group, phase, now_ms, outbox);
            }
        }
        if let Some(deadline_ms) = group.sync_deadline_ms {
            if now_ms >= deadline_ms {
                group.sync_deadline_ms = None;
                let late: Vec<String> = group.pending_sync.iter().cloned().collect();
                if matches!(
                    group.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !late.is_empty()
                {
                    for member_id in &late {
                        tracing::info!(group = %group.group_id, member = %member_id, "no SyncGroup within the rebalance timeout: member removed");
                        Self::remove_member_and_update_group(
                            group, config, member_id, now_ms, outbox,
                        );
                    }
                }
                group.pending_sync.clear();
            }
        }
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| m.session_expired(now_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            tracing::info!(group = %group.group_id, member = %member_id, "session timeout: member removed");
            Self::remove_member_and_update_group(group, config, &member_id, now_ms, outbox);
        }
    }

    fn end_join_phase(group: &mut Group, phase: JoinPhase, now_ms: u64, outbox: &mut Outbox) {
        match phase.initial_delay {
            Some(delay)
                if group.new_member_added && delay.remaining_ms > 0 && delay.delay_ms > 0 =>
            {
                group.new_member_added = false;
                let next_ms = delay.delay_ms.min(delay.remaining_ms);
                group.join_phase = Some(JoinPhase {
                    deadline_ms: now_ms + next_ms,
                    initial_delay: Some(InitialDelay {
                        delay_ms: delay.delay_ms,
                        remaining_ms: delay.remaining_ms.saturating_sub(delay.delay_ms),
                    }),
                });
            }
            _ => Self::complete_join(group, now_ms, outbox),
        }
    }

    /// The earliest time at which [`GroupManager::tick`] has work.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let mut deadline: Option<u64> = None;
        let mut consider = |at: u64| deadline = Some(deadline.map_or(at, |d| d.min(at)));
        for group in self.groups.values() {
            group.pending_members.values().for_each(|at| consider(*at));
            if let Some(phase) = group.join_phase {
                consider(phase.deadline_ms);
            }
            if let Some(at) = group.sync_deadline_ms {
                consider(at);
            }
            for member in group.members.values() {
                if !member.awaiting_join && !member.awaiting_sync {
                    consider(member.last_heartbeat_ms + member.session_timeout_ms.max(0) as u64);
                }
            }
        }
        deadline
    }

    // -----------------------------------------------------------------
    // Offsets

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
                let metadata = commit.metadata.clone().unwrap_or_default();
                if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                    codes.push(errors::OFFSET_METADATA_TOO_LARGE);
                    continue;
                }
                let committed = CommittedOffset {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms as i64,
                    expire_timestamp_ms: (request.retention_time_ms >= 0)
                        .then(|| (now_ms as i64).saturating_add(request.retention_time_ms)),
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

    fn validate_commit(&mut self, request: &CommitRequest, now_ms: u64) -> i16 {
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
            if group.is(GroupState::Empty)
                && group.offsets.is_empty()
                && group.members.is_empty()
                && group.pending_members.is_empty()
            {
                dead.push(group.group_id.clone());
            }
        }
        for group_id in dead {
            self.groups.remove(&group_id);
            let record = records::group_tombstone(partitions, &group_id);
            self.outbox.records.push(record);
        }
    }

    // -----------------------------------------------------------------
    // Administration

    /// Every group this manager coordinates, in id order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn list(&self, states_filter: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(group) = self.groups.get(group_id) else {
            return GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
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
            state: group.state,
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
        if !group.is(GroupState::Empty) || !group.pending_members.is_empty() {
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

    // -----------------------------------------------------------------
    // Loading

    /// Applies one `__consumer_offsets` record read back at start-up. A
    /// record that does not decode is skipped (and reported): it is disk
    /// content, never trusted.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: u64) {
        match records::decode(key, value) {
            Ok(records::Decoded::Offset {
                group_id,
                topic_partition,
                offset,
            }) => match offset {
                Some(offset) => {
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(&group_id, now_ms));
                    group.offsets.insert(topic_partition, offset);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.offsets.remove(&topic_partition);
                    }
                }
            },
            Ok(records::Decoded::Group { group_id, metadata }) => match metadata {
                Some(loaded) => {
                    let offsets = self
                        .groups
                        .remove(&group_id)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    let mut group = loaded.into_group(&group_id, now_ms);
                    group.offsets = offsets;
                    self.groups.insert(group_id, group);
                }
                None => {
                    let keep = self
                        .groups
                        .get(&group_id)
                        .is_some_and(|g| !g.offsets.is_empty());
                    if keep {
                        let group = self.groups.get_mut(&group_id).expect("present");
                        let offsets = std::mem::take(&mut group.offsets);
                        *group = Group::new(&group_id, now_ms);
                        group.offsets = offsets;
                    } else {
                        self.groups.remove(&group_id);
                    }
                }
            },
            Ok(records::Decoded::Unknown) => {}
            Err(error) => {
                tracing::warn!(%error, "skipped an undecodable __consumer_offsets record")
            }
        }
    }
}

/// Since when an offset's retention runs, by Kafka's rule: an empty
/// consumer group's offsets from when it became empty; a stable consumer
/// group's offsets of topics it no longer subscribes to from their commit;
/// a group without a protocol (simple commits) from each commit; otherwise
/// never.
fn expiry_base_ms(group: &Group, key: &TopicPartition, offset: &CommittedOffset) -> Option<i64> {
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

/// The group metadata record of `group` as it stands.
fn group_record(group: &Group, offsets_partitions: i32) -> LogRecord {
    records::group_metadata_record(offsets_partitions, group)
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
