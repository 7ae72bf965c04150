//! KIP-848's consumer group: the group type of the consumer protocol
//! (ConsumerGroupHeartbeat), next to the classic group of [`super::group`].
//!
//! What it owns: one consumer group's members with their epochs and
//! subscriptions, the group epoch, the target assignment and its epoch,
//! and the metadata of the subscribed topics the target was computed from.
//! Pure data and pure functions: [`assignor`] computes target assignments
//! (the server-side `uniform` and `range` assignors), [`reconcile`] moves
//! one member towards its target (Kafka's `CurrentAssignmentBuilder`). The
//! operations that take requests live in `manager/consumer.rs`.
//!
//! Runs on the group's coordinator shard only; knows no wire format, no
//! clock (times come in as `now_ms`) and no I/O.
//!
//! Membership is kept in memory only (Kafka persists ConsumerGroupMetadata,
//! member and target assignment records in `__consumer_offsets`): after a
//! restart or a coordinator move the group comes back with its committed
//! offsets and no members, and a member's next heartbeat gets
//! UNKNOWN_MEMBER_ID, after which the client rejoins with epoch 0.

pub mod assignor;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id, as the consumer protocol names them.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignor a member gets when it names none (Kafka's first entry of
/// `group.consumer.assignors`).
pub const DEFAULT_ASSIGNOR: &str = assignor::UNIFORM;

/// A topic as the assignors see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic_id: Uuid,
    pub partitions: i32,
}

/// The subscribed topics that exist, by name.
pub type TopicMetadata = BTreeMap<String, TopicInfo>;

/// The broker's topics as consumer groups see them (the shard's metadata
/// image at run time, a table in tests).
pub trait TopicSource {
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// Every topic's name, for regex subscriptions.
    fn names(&self) -> Vec<String>;
}

impl TopicSource for TopicMetadata {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.get(name).copied()
    }

    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// A subscription regex as Kafka matches it (RE2/J `matches()`: the whole
/// name); `None` when it does not compile.
pub fn compile_regex(regex: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{regex})$")).ok()
}

/// The topics `regex` subscribes to: matching names, internal topics
/// (`__` prefix) left out.
pub fn resolve_regex(regex: &regex::Regex, names: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|name| !name.starts_with("__") && regex.is_match(name))
        .cloned()
        .collect()
}

/// Kafka's `MemberState` of a consumer group member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// At the target epoch with its whole target.
    Stable,
    /// Must give partitions up first; stays at its epoch until it
    /// heartbeats without them.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions others still own.
    UnreleasedPartitions,
}

/// Kafka's consumer group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout_ms: i32,
    /// The assignor the member asked for, if any.
    pub server_assignor: Option<String>,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    /// The topics the regex matched when last resolved.
    pub regex_topics: BTreeSet<String>,
    /// What the member owns and may consume.
    pub assigned: Assignment,
    /// What it still owns but must give up.
    pub pending_revocation: Assignment,
    /// When the session ends without a heartbeat.
    pub session_deadline_ms: u64,
    /// When a pending revocation must be done by, else the member is
    /// fenced (the rebalance timeout).
    pub revocation_deadline_ms: Option<u64>,
}

impl ConsumerMember {
    pub fn new(member_id: &str) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            rebalance_timeout_ms: -1,
            server_assignor: None,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            regex_topics: BTreeSet::new(),
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
        }
    }

    /// The topics it subscribes to, by name or by its regex.
    pub fn subscription(&self) -> BTreeSet<String> {
        self.subscribed_topic_names
            .union(&self.regex_topics)
            .cloned()
            .collect()
    }

    /// Every partition the member holds: assigned or being revoked.
    pub fn owned(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        flatten(&self.assigned).chain(flatten(&self.pending_revocation))
    }
}

/// The (topic, partition) pairs of an assignment.
pub fn flatten(assignment: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    assignment
        .iter()
        .flat_map(|(topic, partitions)| partitions.iter().map(move |p| (*topic, *p)))
}

/// The number of partitions in an assignment.
pub fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsumerGroup {
    /// Moves on every change of membership, subscriptions, assignor or
    /// subscribed topic metadata.
    pub group_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// The group epoch the target assignment was computed at.
    pub target_assignment_epoch: i32,
    pub target_assignment: BTreeMap<String, Assignment>,
    /// The assignor of the last target assignment.
    pub assignor: String,
    /// The subscribed topics the target assignment was computed from.
    pub subscription_metadata: TopicMetadata,
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup {
            assignor: DEFAULT_ASSIGNOR.to_string(),
            ..ConsumerGroup::default()
        }
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch != self.target_assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().all(|m| {
            m.state == MemberState::Stable && m.member_epoch == self.target_assignment_epoch
        }) {
            ConsumerGroupState::Stable
        } else {
            ConsumerGroupState::Reconciling
        }
    }

    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscription())
            .collect()
    }

    /// The assignor for the next target: the one most members asked for
    /// (ties to the smaller name), else the default, as Kafka picks it.
    pub fn preferred_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max();
        votes
            .iter()
            .find(|(_, count)| Some(**count) == best)
            .map_or(DEFAULT_ASSIGNOR.to_string(), |(name, _)| name.to_string())
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    pub fn maybe_update_target(&mut self) {
        if self.group_epoch == self.target_assignment_epoch {
            return;
        }
        let assignor = self.preferred_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscription()))
            .collect();
        self.target_assignment = assignor::assign(
            &assignor,
            &subscriptions,
            &self.subscription_metadata,
            &self.target_assignment,
        );
        self.assignor = assignor;
        self.target_assignment_epoch = self.group_epoch;
    }

    /// The owner's member epoch of each partition someone holds, except
    /// `but` (Kafka's `currentPartitionEpoch`).
    pub fn partition_epochs(&self, but: &str) -> BTreeMap<(Uuid, i32), i32> {
        self.members
            .values()
            .filter(|m| m.member_id != but)
            .flat_map(|m| m.owned().map(|tp| (tp, m.member_epoch)))
            .collect()
    }

    /// Removes a member and moves the group epoch: its partitions are free
    /// and the target is computed again.
    pub fn remove_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let member = self.members.remove(member_id)?;
        self.target_assignment.remove(member_id);
        self.group_epoch += 1;
        self.maybe_update_target();
        Some(member)
    }

    /// Resolves every member's regex against `names`; true when a
    /// member's topics changed.
    pub fn resolve_regexes(&mut self, names: &[String]) -> bool {
        let mut changed = false;
        for member in self.members.values_mut() {
            let Some(regex) = member.subscribed_topic_regex.as_deref() else {
                changed |= !member.regex_topics.is_empty();
                member.regex_topics.clear();
                continue;
            };
            // Checked when the member sent it.
            let topics = compile_regex(regex)
                .map(|regex| resolve_regex(&regex, names))
                .unwrap_or_default();
            changed |= topics != member.regex_topics;
            member.regex_topics = topics;
        }
        changed
    }

    pub fn has_regexes(&self) -> bool {
        self.members
            .values()
            .any(|m| m.subscribed_topic_regex.is_some() || !m.regex_topics.is_empty())
    }

    /// The member that holds static instance id `instance`.
    pub fn static_member_id(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.member_id.clone())
    }

    /// KIP-345 on the consumer protocol: a static member rejoining under a
    /// new member id takes the place of the one that left with epoch -2:
    /// its assignment and target, at epoch 0. The group epoch stays.
    pub fn replace_static_member(&mut self, old_id: &str, new_id: &str) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        member.member_id = new_id.to_string();
        member.member_epoch = 0;
        member.previous_member_epoch = 0;
        self.members.insert(new_id.to_string(), member);
        if let Some(target) = self.target_assignment.remove(old_id) {
            self.target_assignment.insert(new_id.to_string(), target);
        }
    }

    /// The topic names of this group's subscription metadata, by id.
    pub fn topic_names(&self) -> BTreeMap<Uuid, String> {
        self.subscription_metadata
            .iter()
            .map(|(name, info)| (info.topic_id, name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
