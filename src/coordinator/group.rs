//! One consumer group: its members, generation, state and committed
//! offsets. Pure data with small invariant-keeping helpers; the operations
//! that move a group between states live in [`super::manager`].
//!
//! Runs on the group's coordinator shard only. Knows no wire format and no
//! clock (times are passed in, in milliseconds since the Unix epoch).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::consumer_group::ConsumerGroup;

/// The group types of ListGroups v5 (KIP-848).
pub const GROUP_TYPE_CLASSIC: &str = "classic";
pub const GROUP_TYPE_CONSUMER: &str = "consumer";

/// Kafka's group states (`GroupState` in the classic coordinator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Deleted or expired; a dead group is removed from its manager, so
    /// this state is seen only by DescribeGroups of an unknown group.
    Dead,
}

impl GroupState {
    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One protocol a member offers: an assignor name and its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// What the leader assigned this member in the current generation.
    pub assignment: Bytes,
    /// A JoinGroup of this member is parked, waiting for the join phase.
    pub awaiting_join: bool,
    /// A SyncGroup of this member is parked, waiting for the leader's.
    pub awaiting_sync: bool,
    pub last_heartbeat_ms: u64,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    pub fn same_protocols(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Kafka's `shouldKeepAlive`: parked members wait on the group, not on
    /// their session (the join and sync phases have their own deadlines).
    pub fn session_expired(&self, now_ms: u64) -> bool {
        if self.awaiting_join || self.awaiting_sync {
            return false;
        }
        now_ms >= self.last_heartbeat_ms + self.session_timeout_ms.max(0) as u64
    }
}

/// A committed offset, as OffsetCommit stored it.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2 to v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// The join phase of a rebalance: when it ends at the latest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JoinPhase {
    pub deadline_ms: u64,
    /// Present while the first rebalance of an empty group waits
    /// `group.initial.rebalance.delay.ms` for more members.
    pub initial_delay: Option<InitialDelay>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitialDelay {
    pub delay_ms: u64,
    pub remaining_ms: u64,
}

/// Topic and partition, ordered, as offsets are keyed.
pub type TopicPartition = (String, i32);

#[derive(Clone, Debug)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub state_timestamp_ms: u64,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, and when
    /// they lapse if the member does not rejoin with them.
    pub pending_members: BTreeMap<String, u64>,
    /// KIP-345: `group.instance.id` to the member id that holds it.
    pub static_members: HashMap<String, String>,
    pub join_phase: Option<JoinPhase>,
    /// Members that have not sent SyncGroup since the join phase ended, and
    /// the deadline for them (the rebalance timeout).
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<u64>,
    /// A member joined during the initial delay (extends the delay).
    pub new_member_added: bool,
    pub offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// Present when the group is a KIP-848 consumer group (its members
    /// use ConsumerGroupHeartbeat); the classic fields above are then
    /// unused but for the offsets. A group is of one type at a time.
    pub consumer: Option<Box<ConsumerGroup>>,
}

impl Group {
    pub fn new(group_id: &str, now_ms: u64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: HashMap::new(),
            join_phase: None,
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            new_member_added: false,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    /// KIP-848's group type: "consumer" or "classic".
    pub fn type_name(&self) -> &'static str {
        if self.consumer.is_some() {
            GROUP_TYPE_CONSUMER
        } else {
            GROUP_TYPE_CLASSIC
        }
    }

    /// The state's name as the admin APIs show it, for either type.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(consumer) => consumer.state().name(),
            None => self.state.name(),
        }
    }

    pub fn member_count(&self) -> usize {
        self.consumer
            .as_ref()
            .map_or(self.members.len(), |consumer| consumer.members.len())
    }

    /// No members of either type and none on the way in.
    pub fn has_no_members(&self) -> bool {
        self.member_count() == 0 && self.members.is_empty() && self.pending_members.is_empty()
    }

    pub fn transition(&mut self, state: GroupState, now_ms: u64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; a new leader is the first remaining member.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// KIP-345: a known `group.instance.id` sent with another member id than
    /// the one that holds it is a zombie: fenced.
    pub fn is_static_member_fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        match instance.and_then(|instance| self.static_members.get(instance)) {
            Some(holder) => holder != member_id,
            None => false,
        }
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    /// The largest rebalance timeout of the members: how long a join phase
    /// may last.
    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// Whether `protocol_type` and `protocols` fit this group: an empty
    /// group takes any non-empty offer; otherwise the type must match and
    /// one protocol must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.metadata(&p.name).is_some()))
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports,
    /// each member votes for the first in its own preference order; most
    /// votes win, ties go to the candidate the leader prefers.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self
            .leader_id
            .as_ref()
            .and_then(|id| self.members.get(id))
            .or_else(|| self.members.values().next())?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.metadata(name).is_some()))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| *c == p.name));
            if let Some(index) = choice {
                votes[index] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|v| *v == best)?;
        Some(candidates[index].to_string())
    }

    /// Topics the group's consumers subscribe to, when the group uses the
    /// consumer protocol and every member's subscription decodes.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(decode_subscription(member.metadata(protocol)?)?);
        }
        Some(topics)
    }
}

/// The topics of a `ConsumerProtocolSubscription`; `None` if it does not
/// decode (it is client data: never trusted).
pub fn decode_subscription(metadata: &Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions only add fields at the end: read them as the newest
    // version we know, as Kafka does.
    let version = version.clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| Protocol {
                    name: name.to_string(),
                    metadata: Bytes::from_static(b"m"),
                })
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: false,
            awaiting_sync: false,
            last_heartbeat_ms: 0,
        }
    }

    #[test]
    fn protocol_selection_votes_among_common_protocols() {
        let check = |members: &[&[&str]], expected: Option<&str>| {
            let mut group = Group::new("g", 0);
            for (index, protocols) in members.iter().enumerate() {
                group.add_member(member(&format!("m{index}"), protocols));
            }
            assert_eq!(group.select_protocol().as_deref(), expected, "{members:?}");
        };
        check(&[&["range"]], Some("range"));
        check(
            &[&["range", "roundrobin"], &["roundrobin", "range"]],
            Some("range"),
        );
        check(
            &[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["roundrobin"],
            ],
            Some("roundrobin"),
        );
        check(&[&["sticky", "range"], &["range"]], Some("range"));
        check(&[&["a"], &["b"]], None);
        check(&[], None);
    }

    #[test]
    fn supports_protocols_checks_type_and_overlap() {
        let mut group = Group::new("g", 0);
        let offer = |names: &[&str]| member("x", names).protocols;
        assert!(group.supports_protocols("consumer", &offer(&["range"])));
        assert!(!group.supports_protocols("", &offer(&["range"])));
        assert!(!group.supports_protocols("consumer", &[]));
        group.add_member(member("m0", &["range", "roundrobin"]));
        assert!(group.supports_protocols("consumer", &offer(&["roundrobin"])));
        assert!(!group.supports_protocols("connect", &offer(&["range"])));
        assert!(!group.supports_protocols("consumer", &offer(&["sticky"])));
    }

    #[test]
    fn removing_the_leader_elects_the_first_remaining_member() {
        let mut group = Group::new("g", 0);
        group.add_member(member("b", &["range"]));
        group.add_member(member("a", &["range"]));
        assert!(group.is_leader("b"));
        group.remove_member("b");
        assert!(group.is_leader("a"));
        group.remove_member("a");
        assert_eq!(group.leader_id, None);
    }

    #[test]
    fn subscriptions_that_do_not_decode_are_none() {
        assert_eq!(decode_subscription(&Bytes::from_static(b"")), None);
        assert_eq!(
            decode_subscription(&Bytes::from_static(b"\x00\x00\xff")),
            None
        );
        // v0: topics ["t1"], user_data null.
        let v0 = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x02t1\xff\xff\xff\xff");
        assert_eq!(decode_subscription(&v0), Some(vec!["t1".to_string()]));
    }
}
