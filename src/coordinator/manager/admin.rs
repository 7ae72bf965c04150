//! The administration of groups: ListGroups, DescribeGroups, DeleteGroups.

use bytes::Bytes;

use super::GroupManager;
use crate::coordinator::errors;
use crate::coordinator::group::GroupState;
use crate::coordinator::records;

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

impl GroupManager {
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
}
