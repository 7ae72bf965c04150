//! JoinGroup and the rebalance it drives: members join (KIP-394 ids,
//! KIP-345 static members), the group prepares a rebalance, the join phase
//! ends (everyone rejoined, or the timeout) and the next generation starts
//! with a leader that rejoined.

use bytes::Bytes;

use super::{group_record, Completion, GroupConfig, GroupManager, Outbox, Outcome, SyncResponse};
use crate::coordinator::errors;
use crate::coordinator::group::{Group, GroupState, InitialDelay, JoinPhase, Member, Protocol};

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

impl GroupManager {
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
        let group = self.groups.get_mut(&request.group_id).expect("present");
        if let Some(consumer) = &group.consumer {
            if !consumer.members.is_empty() {
                // Kafka 4 can take classic members into a consumer group
                // (online migration); this broker cannot.
                return reject(errors::INCONSISTENT_GROUP_PROTOCOL);
            }
            // An empty consumer group becomes a classic one.
            group.consumer = None;
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
        self.outbox
            .fail_parked(&group_id, &member, errors::FENCED_INSTANCE_ID);
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

    pub(super) fn maybe_prepare_rebalance(
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
    pub(super) fn try_complete_join(group: &mut Group, now_ms: u64, outbox: &mut Outbox) {
        let delaying = group
            .join_phase
            .is_some_and(|phase| phase.initial_delay.is_some());
        if group.is(GroupState::PreparingRebalance) && !delaying && group.all_members_joined() {
            Self::complete_join(group, now_ms, outbox);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin,
    /// start the next generation and answer every parked JoinGroup.
    pub(super) fn complete_join(group: &mut Group, now_ms: u64, outbox: &mut Outbox) {
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
}
