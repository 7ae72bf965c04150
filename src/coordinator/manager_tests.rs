//! Data-driven tests of the group state machine: scripts of requests with a
//! fake clock and predictable member ids, checked against Kafka's answers.

use super::*;

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
        let request = CommitRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            retention_time_ms: -1,
            topics: vec![(
                "t".into(),
                vec![PartitionCommit {
                    partition: 0,
                    offset,
                    leader_epoch: -1,
                    metadata: Some("meta".into()),
                }],
            )],
        };
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

#[test]
fn kip_394_handshake_then_first_generation() {
    let mut h = Harness::new(config());
    let a = h.new_member();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    // The initial delay (0 here) ends at the next tick.
    h.advance(1);
    let response = &h.joins[&a];
    assert_eq!(response.error_code, errors::NONE);
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader, a);
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1);
    assert_eq!(&response.members[0].metadata[..], b"range-meta");
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert!(matches!(
        h.sync(&a, 1, &[(a.as_str(), "all")]),
        Outcome::Parked { .. }
    ));
    assert_eq!(&h.syncs[&a].assignment[..], b"all");
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(&a, 1), errors::NONE);
    // A group record was written when the group became Stable.
    assert!(h
        .records
        .iter()
        .any(|r| r.key == records::group_metadata_key("g")));
}

#[test]
fn join_errors() {
    let check = |mutate: &dyn Fn(&mut JoinRequest), expected: i16| {
        let mut h = Harness::new(config());
        let mut request = h.join_request("", None, &["range"]);
        mutate(&mut request);
        let Outcome::Now(response) = h.join_with(request) else {
            panic!("an error answers at once");
        };
        assert_eq!(response.error_code, expected);
    };
    check(&|r| r.group_id.clear(), errors::INVALID_GROUP_ID);
    check(
        &|r| r.session_timeout_ms = 10,
        errors::INVALID_SESSION_TIMEOUT,
    );
    check(
        &|r| r.session_timeout_ms = 400_000,
        errors::INVALID_SESSION_TIMEOUT,
    );
    check(
        &|r| r.member_id = "nobody".into(),
        errors::UNKNOWN_MEMBER_ID,
    );
    check(
        &|r| r.protocols.clear(),
        errors::INCONSISTENT_GROUP_PROTOCOL,
    );
    check(
        &|r| r.protocol_type.clear(),
        errors::INCONSISTENT_GROUP_PROTOCOL,
    );
    check(&|_| {}, errors::MEMBER_ID_REQUIRED);
}

#[test]
fn members_must_share_protocol_type_and_a_protocol() {
    let mut h = Harness::new(config());
    h.stable_pair();
    let mut other = h.join_request("", None, &["sticky"]);
    let Outcome::Now(response) = h.join_with(other.clone()) else {
        panic!()
    };
    assert_eq!(response.error_code, errors::INCONSISTENT_GROUP_PROTOCOL);
    other.protocols = h.join_request("", None, &["range"]).protocols;
    other.protocol_type = "connect".into();
    let Outcome::Now(response) = h.join_with(other) else {
        panic!()
    };
    assert_eq!(response.error_code, errors::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn group_max_size_counts_pending_members() {
    let mut h = Harness::new(GroupConfig {
        max_size: 1,
        ..config()
    });
    let Outcome::Now(first) = h.join("") else {
        panic!()
    };
    assert_eq!(first.error_code, errors::MEMBER_ID_REQUIRED);
    let Outcome::Now(second) = h.join("") else {
        panic!()
    };
    assert_eq!(second.error_code, errors::GROUP_MAX_SIZE_REACHED);
    assert!(matches!(h.join(&first.member_id), Outcome::Parked { .. }));
}

#[test]
fn leader_gets_members_followers_do_not() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let leader = h.joins[&a].leader.clone();
    for member in [&a, &b] {
        let response = &h.joins[member];
        assert_eq!(response.generation_id, 1);
        assert_eq!(
            response.members.len(),
            if *member == leader { 2 } else { 0 }
        );
    }
    assert_eq!(&h.syncs[&a].assignment[..], b"A");
    assert_eq!(&h.syncs[&b].assignment[..], b"B");
}

#[test]
fn a_new_member_rebalances_a_stable_group() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let c = h.new_member();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, 1), errors::REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat(&b, 1), errors::REBALANCE_IN_PROGRESS);
    // Commits of the current generation are still accepted while preparing.
    assert_eq!(h.commit(&a, 1, 5), errors::NONE);
    assert!(matches!(h.join(&a), Outcome::Parked { .. }));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(matches!(h.join(&b), Outcome::Parked { .. }));
    // Everyone is in: the join phase ends without waiting for the timeout.
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.generation(), 2);
    for member in [&a, &b, &c] {
        assert_eq!(h.joins[member].generation_id, 2);
    }
    assert_eq!(h.heartbeat(&a, 1), errors::ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat(&a, 2), errors::NONE);
    assert_eq!(h.commit(&a, 2, 6), errors::REBALANCE_IN_PROGRESS);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let c = h.new_member();
    assert!(matches!(h.join(&a), Outcome::Parked { .. }));
    // b keeps heartbeating but never rejoins (a consumer stuck in poll).
    for _ in 0..((REBALANCE_MS as u64) / 5_000) {
        h.advance(5_000 - 1);
        assert_eq!(h.heartbeat(&b, 1), errors::REBALANCE_IN_PROGRESS);
    }
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    h.advance(REBALANCE_MS as u64);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let group = h.manager.group("g").unwrap();
    assert!(group.members.contains_key(&a) && group.members.contains_key(&c));
    assert!(!group.members.contains_key(&b));
    assert_eq!(h.heartbeat(&b, 2), errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn silent_members_expire_after_the_session_timeout() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    h.advance(SESSION_MS as u64 / 2);
    assert_eq!(h.heartbeat(&a, 1), errors::NONE);
    h.advance(SESSION_MS as u64 / 2 - 1);
    assert!(h.manager.group("g").unwrap().members.contains_key(&b));
    h.advance(1);
    // b sent nothing for a session timeout: gone, and a rebalance began.
    assert!(!h.manager.group("g").unwrap().members.contains_key(&b));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, 1), errors::REBALANCE_IN_PROGRESS);
    assert!(matches!(h.join(&a), Outcome::Parked { .. }));
    assert_eq!(h.joins[&a].generation_id, 2);
    assert_eq!(h.joins[&a].leader, a);
}

#[test]
fn last_member_leaving_empties_the_group() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    assert_eq!(
        h.leave(&[(&a, None), (&b, None), ("ghost", None)]),
        vec![errors::NONE, errors::NONE, errors::UNKNOWN_MEMBER_ID]
    );
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.generation(), 2);
    let group_records = |h: &Harness| {
        let key = records::group_metadata_key("g");
        h.records.iter().filter(|r| r.key == key).count()
    };
    // Stable at sync, then Empty: two group records; nothing more for
    // requests that change nothing.
    assert_eq!(group_records(&h), 2);
    h.leave(&[(&a, None)]);
    let Outcome::Now(_) = h.join("") else {
        panic!()
    };
    assert_eq!(group_records(&h), 2);
    assert_eq!(h.heartbeat(&a, 2), errors::UNKNOWN_MEMBER_ID);
    // Simple commits are allowed again once the group is empty.
    assert_eq!(h.commit("", -1, 9), errors::NONE);
    assert_eq!(h.commit("", 2, 9), errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn leaving_during_the_join_phase_completes_it() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    assert!(matches!(h.join(&a), Outcome::Parked { .. }));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.leave(&[(&b, None)]), vec![errors::NONE]);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.joins[&a].generation_id, 2);
}

#[test]
fn leader_sync_answers_parked_followers_and_rebalance_fails_them() {
    let mut h = Harness::new(config());
    let a = h.new_member();
    let b = h.new_member();
    h.advance(1);
    let leader = h.joins[&a].leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    assert!(matches!(h.sync(&follower, 1, &[]), Outcome::Parked { .. }));
    assert!(!h.syncs.contains_key(&follower));
    // A new member arrives before the leader syncs: the follower is told.
    let _c = h.new_member();
    assert_eq!(h.syncs[&follower].error_code, errors::REBALANCE_IN_PROGRESS);
    assert_eq!(
        h.sync(&leader, 1, &[]),
        Outcome::Now(SyncResponse::error(errors::REBALANCE_IN_PROGRESS))
    );
}

#[test]
fn sync_errors() {
    let mut h = Harness::new(config());
    let (a, _b) = h.stable_pair();
    let check = |h: &mut Harness, member: &str, generation: i32, expected: i16| match h.sync(
        member,
        generation,
        &[],
    ) {
        Outcome::Now(response) => assert_eq!(response.error_code, expected),
        parked => panic!("{parked:?}"),
    };
    check(&mut h, "ghost", 1, errors::UNKNOWN_MEMBER_ID);
    check(&mut h, &a, 7, errors::ILLEGAL_GENERATION);
    // Stable: a resync returns the member's assignment at once.
    check(&mut h, &a, 1, errors::NONE);
}

#[test]
fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new(config());
    let a = h.new_member();
    let b = h.new_member();
    h.advance(1);
    let leader = h.joins[&a].leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    assert!(matches!(h.sync(&leader, 1, &[]), Outcome::Parked { .. }));
    assert_eq!(h.state(), GroupState::Stable);
    for _ in 0..(REBALANCE_MS / 5_000 - 1) {
        h.advance(5_000);
        assert_eq!(h.heartbeat(&leader, 1), errors::NONE);
        assert_eq!(h.heartbeat(&follower, 1), errors::NONE);
    }
    h.advance(5_000);
    assert!(!h
        .manager
        .group("g")
        .unwrap()
        .members
        .contains_key(&follower));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn unjoined_kip_394_ids_lapse_after_the_session_timeout() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let Outcome::Now(pending) = h.join("") else {
        panic!()
    };
    assert_eq!(pending.error_code, errors::MEMBER_ID_REQUIRED);
    // A pending id does not start a rebalance by itself.
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(SESSION_MS as u64 / 2);
    assert_eq!(h.heartbeat(&a, 1), errors::NONE);
    assert_eq!(h.heartbeat(&b, 1), errors::NONE);
    h.advance(SESSION_MS as u64 / 2 + 1);
    assert!(h.manager.group("g").unwrap().pending_members.is_empty());
    let Outcome::Now(late) = h.join(&pending.member_id) else {
        panic!()
    };
    assert_eq!(late.error_code, errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn stable_follower_rejoin_with_same_metadata_answers_at_once() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let leader = h.joins[&a].leader.clone();
    let follower = if leader == a { b } else { a };
    let Outcome::Now(response) = h.join(&follower) else {
        panic!()
    };
    assert_eq!(response.error_code, errors::NONE);
    assert_eq!(response.generation_id, 1);
    assert_eq!(h.state(), GroupState::Stable);
    // The leader rejoining always rebalances (it may want to reassign).
    assert!(matches!(h.join(&leader), Outcome::Parked { .. }));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn changed_metadata_rebalances() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let leader = h.joins[&a].leader.clone();
    let follower = if leader == a { b } else { a };
    let request = h.join_request(&follower, None, &["range", "roundrobin"]);
    assert!(matches!(h.join_with(request), Outcome::Parked { .. }));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn static_member_restart_keeps_its_assignment_without_rebalance() {
    let mut h = Harness::new(config());
    let request = h.join_request("", Some("instance-1"), &["range"]);
    let Outcome::Parked { member_id: first } = h.join_with(request.clone()) else {
        panic!("static members skip the KIP-394 handshake")
    };
    let other = h.join_request("", Some("instance-2"), &["range"]);
    let Outcome::Parked { member_id: second } = h.join_with(other) else {
        panic!()
    };
    h.advance(1);
    let leader = h.joins[&first].leader.clone();
    assert_eq!(leader, first);
    h.sync(&second, 1, &[]);
    h.sync(
        &first,
        1,
        &[(first.as_str(), "P0"), (second.as_str(), "P1")],
    );
    assert_eq!(h.state(), GroupState::Stable);
    // The leader restarts: same instance id, no member id.
    let Outcome::Now(rejoined) = h.join_with(request) else {
        panic!("a known static member in a stable group answers at once")
    };
    assert_eq!(rejoined.error_code, errors::NONE);
    assert_ne!(rejoined.member_id, first);
    assert_eq!(rejoined.generation_id, 1);
    assert_eq!(
        rejoined.leader, first,
        "the old leader id, so no reassignment"
    );
    assert_eq!(h.state(), GroupState::Stable);
    match h.sync(&rejoined.member_id, 1, &[]) {
        Outcome::Now(response) => assert_eq!(&response.assignment[..], b"P0"),
        parked => panic!("{parked:?}"),
    }
    // The old incarnation is fenced.
    let fenced = h
        .manager
        .heartbeat("g", &first, Some("instance-1"), 1, h.now_ms);
    assert_eq!(fenced, errors::FENCED_INSTANCE_ID);
    assert_eq!(
        h.manager
            .heartbeat("g", &rejoined.member_id, Some("instance-1"), 1, h.now_ms),
        errors::NONE
    );
}

#[test]
fn static_members_survive_a_rebalance_without_rejoining_and_expire_by_session() {
    let mut h = Harness::new(config());
    let s = h.join_request("", Some("instance-1"), &["range"]);
    let Outcome::Parked {
        member_id: static_id,
    } = h.join_with(s)
    else {
        panic!()
    };
    h.advance(1);
    h.sync(&static_id, 1, &[]);
    let d = h.new_member();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    for _ in 0..(REBALANCE_MS / 5_000) {
        h.advance(5_000);
        let code = h
            .manager
            .heartbeat("g", &static_id, Some("instance-1"), 1, h.now_ms);
        assert!(code == errors::REBALANCE_IN_PROGRESS || code == errors::ILLEGAL_GENERATION);
    }
    // The static member did not rejoin but is kept; d leads.
    let group = h.manager.group("g").unwrap();
    assert!(group.members.contains_key(&static_id));
    assert_eq!(group.leader_id.as_deref(), Some(d.as_str()));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    h.sync(&d, 2, &[]);
    h.advance(SESSION_MS as u64);
    assert!(!h
        .manager
        .group("g")
        .unwrap()
        .members
        .contains_key(&static_id));
}

#[test]
fn static_leave_by_instance_id() {
    let mut h = Harness::new(config());
    let s = h.join_request("", Some("instance-1"), &["range"]);
    let Outcome::Parked { member_id } = h.join_with(s) else {
        panic!()
    };
    h.advance(1);
    h.sync(&member_id, 1, &[]);
    assert_eq!(
        h.leave(&[
            ("", Some("instance-9")),
            ("other", Some("instance-1")),
            ("", Some("instance-1"))
        ]),
        vec![
            errors::UNKNOWN_MEMBER_ID,
            errors::FENCED_INSTANCE_ID,
            errors::NONE
        ]
    );
    assert_eq!(h.state(), GroupState::Empty);
}

#[test]
fn initial_delay_waits_for_more_members() {
    let mut h = Harness::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..config()
    });
    let a = h.new_member();
    h.advance(2_000);
    let b = h.new_member();
    // Both joined, but the initial delay holds the phase open...
    h.advance(1_500);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    // ...and was extended by one delay because b arrived during it.
    h.advance(3_000);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.joins[&a].generation_id, 1);
    assert_eq!(h.joins[&b].generation_id, 1);
}

#[test]
fn heartbeat_errors() {
    let mut h = Harness::new(config());
    assert_eq!(h.heartbeat("x", 0), errors::UNKNOWN_MEMBER_ID);
    let (a, _) = h.stable_pair();
    assert_eq!(h.heartbeat("x", 1), errors::UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat(&a, 0), errors::ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat(&a, 1), errors::NONE);
}

#[test]
fn commit_validation() {
    let mut h = Harness::new(config());
    // No group yet: a simple commit creates one; a generation does not.
    assert_eq!(h.commit("m", 3, 1), errors::ILLEGAL_GENERATION);
    assert_eq!(h.commit("", -1, 1), errors::NONE);
    assert_eq!(h.state(), GroupState::Empty);
    let mut h = Harness::new(config());
    let (a, _) = h.stable_pair();
    assert_eq!(h.commit(&a, 1, 10), errors::NONE);
    assert_eq!(h.commit(&a, 0, 10), errors::ILLEGAL_GENERATION);
    assert_eq!(h.commit("ghost", 1, 10), errors::UNKNOWN_MEMBER_ID);
    assert_eq!(h.commit("", -1, 10), errors::UNKNOWN_MEMBER_ID);
    let fetched = h.manager.fetch("g", Some(&[("t".into(), vec![0, 1])]));
    let partitions = &fetched[0].1;
    assert_eq!(partitions[0].1.as_ref().map(|o| o.offset), Some(10));
    assert_eq!(
        partitions[0].1.as_ref().map(|o| o.metadata.as_str()),
        Some("meta")
    );
    assert_eq!(partitions[1].1, None);
    assert_eq!(h.manager.fetch("g", None)[0].1.len(), 1);
    assert!(h.manager.fetch("unknown", None).is_empty());
}

#[test]
fn oversized_metadata_is_refused_per_partition() {
    let mut h = Harness::new(config());
    let request = CommitRequest {
        group_id: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: vec![(
            "t".into(),
            vec![
                PartitionCommit {
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: Some("x".repeat(OFFSET_METADATA_BYTES_MAX + 1)),
                },
                PartitionCommit {
                    partition: 1,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                },
            ],
        )],
    };
    let codes = h.manager.commit(&request, h.now_ms);
    assert_eq!(
        codes,
        vec![vec![errors::OFFSET_METADATA_TOO_LARGE, errors::NONE]]
    );
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention_and_the_group_goes() {
    let retention_ms = 60_000;
    let mut h = Harness::new(GroupConfig {
        offsets_retention_ms: retention_ms,
        ..config()
    });
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 1, 10), errors::NONE);
    h.manager.expire_offsets(h.now_ms + 10 * retention_ms);
    assert!(
        !h.manager.group("g").unwrap().offsets.is_empty(),
        "a live group keeps its offsets"
    );
    h.leave(&[(&a, None), (&b, None)]);
    h.manager.expire_offsets(h.now_ms + retention_ms - 1);
    assert!(!h.manager.group("g").unwrap().offsets.is_empty());
    h.manager.expire_offsets(h.now_ms + retention_ms);
    h.drain();
    assert!(h.manager.group("g").is_none());
    let tombstones = h.records.iter().filter(|r| r.value.is_none()).count();
    assert_eq!(tombstones, 2, "the offset and the group");
}

#[test]
fn list_describe_delete() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    let listed = h.manager.list(&[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, GroupState::Stable);
    assert_eq!(listed[0].protocol_type, "consumer");
    assert_eq!(h.manager.list(&["stable".into()]).len(), 1);
    assert!(h.manager.list(&["Empty".into()]).is_empty());
    let described = h.manager.describe("g");
    assert_eq!(described.protocol_data, "range");
    assert_eq!(described.members.len(), 2);
    assert!(described.members.iter().any(|m| &m.assignment[..] == b"A"));
    assert_eq!(h.manager.describe("nope").state, GroupState::Dead);
    assert_eq!(h.manager.delete_group("g"), errors::NON_EMPTY_GROUP);
    assert_eq!(h.manager.delete_group("nope"), errors::GROUP_ID_NOT_FOUND);
    h.commit(&a, 1, 3);
    h.leave(&[(&a, None), (&b, None)]);
    assert_eq!(h.manager.delete_group("g"), errors::NONE);
    assert!(h.manager.group("g").is_none());
    assert!(h.manager.fetch("g", None).is_empty());
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut subscription = bytes::BytesMut::new();
    subscription.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .encode(&mut subscription, 0)
        .unwrap();
    let mut h = Harness::new(config());
    let mut request = h.join_request("", None, &["range"]);
    request.protocols[0].metadata = subscription.freeze();
    let Outcome::Now(first) = h.join_with(request.clone()) else {
        panic!()
    };
    request.member_id = first.member_id.clone();
    h.join_with(request);
    h.advance(1);
    h.sync(&first.member_id, 1, &[]);
    h.commit(&first.member_id, 1, 4);
    let mut other = CommitRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: first.member_id.clone(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: vec![(
            "u".into(),
            vec![PartitionCommit {
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    assert_eq!(h.manager.commit(&other, h.now_ms), vec![vec![errors::NONE]]);
    let topics = vec![("t".to_string(), vec![0]), ("u".to_string(), vec![0])];
    assert_eq!(
        h.manager.delete_offsets("g", &topics),
        Ok(vec![
            vec![errors::GROUP_SUBSCRIBED_TO_TOPIC],
            vec![errors::NONE]
        ])
    );
    assert_eq!(
        h.manager.delete_offsets("none", &topics),
        Err(errors::GROUP_ID_NOT_FOUND)
    );
    other.topics.clear();
    let fetched = h.manager.fetch("g", None);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].0, "t");
}

#[test]
fn replay_restores_offsets_and_the_last_assignment() {
    let mut h = Harness::new(config());
    let (a, b) = h.stable_pair();
    h.commit(&a, 1, 77);
    let mut resumed = Harness::new(config());
    for record in &h.records {
        resumed
            .manager
            .replay(&record.key, record.value.as_deref(), 5_000_000);
    }
    let group = resumed.manager.group("g").unwrap();
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.generation_id, 1);
    assert_eq!(&group.members[&a].assignment[..], b"A");
    assert_eq!(&group.members[&b].assignment[..], b"B");
    assert_eq!(group.offsets[&("t".to_string(), 0)].offset, 77);
    // Members that do not come back expire by session timeout.
    resumed.now_ms = 5_000_000;
    resumed.advance(SESSION_MS as u64);
    resumed.advance(1);
    assert_eq!(resumed.state(), GroupState::Empty);
    // Deleted groups stay deleted after a replay.
    resumed.leave(&[]);
    assert_eq!(resumed.manager.delete_group("g"), errors::NONE);
    resumed.drain();
    let mut again = Harness::new(config());
    for record in h.records.iter().chain(resumed.records.iter()) {
        again
            .manager
            .replay(&record.key, record.value.as_deref(), 6_000_000);
    }
    assert!(again.manager.group("g").is_none());
}

#[test]
fn next_deadline_tracks_sessions_and_phases() {
    let mut h = Harness::new(config());
    assert_eq!(h.manager.next_deadline_ms(), None);
    let (_a, _b) = h.stable_pair();
    assert_eq!(
        h.manager.next_deadline_ms(),
        Some(h.now_ms + SESSION_MS as u64)
    );
}
