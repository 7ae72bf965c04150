//! SyncGroup, Heartbeat and LeaveGroup of members, and the clock of the
//! groups: lapsed KIP-394 ids, the end of join phases, members that never
//! synced, expired sessions.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{group_record, Completion, GroupConfig, GroupManager, Outbox, Outcome};
use crate::coordinator::errors;
use crate::coordinator::group::{Group, GroupState, InitialDelay, JoinPhase};

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

/// Who leaves, in a LeaveGroup.
#[derive(Clone, Debug)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl GroupManager {
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
        outbox.fail_parked(&group.group_id, &member, errors::UNKNOWN_MEMBER_ID);
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
    pub(super) fn persist_if_emptied(&mut self, group_id: &str, was_empty: bool) {
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
        self.tick_consumer_groups(now_ms);
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
        if let Some(at) = self.next_consumer_deadline_ms() {
            consider(at);
        }
        deadline
    }
}
