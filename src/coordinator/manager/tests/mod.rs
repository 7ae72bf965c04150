//! Data-driven tests of the group state machine: scripts of requests with a
//! fake clock and predictable member ids, checked against Kafka's answers.

use bytes::Bytes;

use super::*;
use crate::coordinator::errors;
use crate::coordinator::group::{GroupState, Protocol};

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn config() -> GroupConfig {
    GroupConfig {
        offsets_partitions: 50,
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 300_000,
        max_size: 100,
        offsets_retention_ms: 7 * 24 * 3_600_000,
        consumer_session_timeout_ms: 45_000,
        consumer_heartbeat_interval_ms: 5_000,
    }
}

/// A manager, a clock, and the answers of parked requests by member.
struct Harness {
    manager: GroupManager,
    now_ms: u64,
    joins: BTreeMap<String, JoinResponse>,
    syncs: BTreeMap<String, SyncResponse>,
    records: Vec<LogRecord>,
}

impl Harness {
    fn new(config: GroupConfig) -> Harness {
        let mut next = 0;
        let ids: MemberIdGenerator = Box::new(move |prefix: &str| {
            next += 1;
            format!("{prefix}-{next}")
        });
        Harness {
            manager: GroupManager::with_member_ids(config, ids),
            now_ms: 1_000_000,
            joins: BTreeMap::new(),
            syncs: BTreeMap::new(),
            records: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let outbox = self.manager.take_outbox();
        self.records.extend(outbox.records);
        for completion in outbox.completions {
            match completion {
                Completion::Join {
                    member_id,
                    response,
                    ..
                } => {
                    self.joins.insert(member_id, response);
                }
                Completion::Sync {
                    member_id,
                    response,
                    ..
                } => {
                    self.syncs.insert(member_id, response);
                }
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.manager.tick(self.now_ms);
        self.drain();
    }

    fn join_request(
        &self,
        member_id: &str,
        instance: Option<&str>,
        protocols: &[&str],
    ) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| Protocol {
                    name: name.to_string(),
                    metadata: Bytes::from(format!("{name}-meta")),
                })
                .collect(),
            require_known_member_id: instance.is_none(),
        }
    }

    fn join_with(&mut self, request: JoinRequest) -> Outcome<JoinResponse> {
        let outcome = self.manager.join(request, self.now_ms);
        self.drain();
        outcome
    }

    fn join(&mut self, member_id: &str) -> Outcome<JoinResponse> {
        let request = self.join_request(member_id, None, &["range"]);
        self.join_with(request)
    }

    /// A new dynamic member through the KIP-394 handshake; returns its id.
    fn new_member(&mut self) -> String {
        let Outcome::Now(first) = self.join("") else {
            panic!("the first join of a new member answers at once");
        };
        assert_eq!(first.error_code, errors::MEMBER_ID_REQUIRED);
        assert!(!first.member_id.is_empty());
        let outcome = self.join(&first.member_id);
        assert_eq!(
            outcome,
            Outcome::Parked {
                member_id: first.member_id.clone()
            }
        );
        first.member_id
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: &[(&str, &str)],
    ) -> Outcome<SyncResponse> {
        let request = SyncRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        let outcome = self.manager.sync(request, self.now_ms);
        self.drain();
        outcome
    }

    fn heartbeat(&mut self, member_id: &str, generation_id: i32) -> i16 {
        let code = self
            .manager
            .heartbeat("g", member_id, None, generation_id, self.now_ms);
        self.drain();
        code
    }

    fn leave(&mut self, members: &[(&str, Option<&str>)]) -> Vec<i16> {
        let leaving: Vec<LeavingMember> = members
            .iter()
            .map(|(m, i)| LeavingMember {
                member_id: m.to_string(),
                group_instance_id: i.map(str::to_string),
            })
            .collect();
        let codes = self.manager.leave("g", &leaving, self.now_ms);
        self.drain();
        codes
    }

    fn state(&self) -> GroupState {
        self.manager
            .group("g")
            .map_or(GroupState::Dead, |g| g.state)
    }

    fn generation(&self) -> i32 {
        self.manager.group("g").map_or(-1, |g| g.generation_id)
    }

    fn commit(&mut self, member_id: &str, generation_id: i32, offset: i64) -> i16 {
        let request = CommitRequest::one("g", member_id, generation_id, offset, Some("meta"));
        let codes = self.manager.commit(&request, self.now_ms);
        self.drain();
        codes[0][0]
    }

    /// Two dynamic members, joined, synced: a Stable group at generation 1.
    fn stable_pair(&mut self) -> (String, String) {
        let a = self.new_member();
        let b = self.new_member();
        self.advance(1);
        assert_eq!(self.state(), GroupState::CompletingRebalance);
        let leader = self.joins[&a].leader.clone();
        let follower = if leader == a { b.clone() } else { a.clone() };
        let generation = self.generation();
        assert!(matches!(
            self.sync(&follower, generation, &[]),
            Outcome::Parked { .. }
        ));
        assert!(matches!(
            self.sync(&leader, generation, &[(a.as_str(), "A"), (b.as_str(), "B")]),
            Outcome::Parked { .. }
        ));
        assert_eq!(self.state(), GroupState::Stable);
        (a, b)
    }
}

mod consumer;
mod load;
mod membership;
mod offsets;
