//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, rebalances and timeouts.

use super::*;

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
