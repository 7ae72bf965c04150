//! Offsets, administration, loading, deadlines.

use super::*;

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
        api_version: 9,
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
    assert_eq!(listed[0].state, "Stable");
    assert_eq!(listed[0].group_type, "classic");
    assert_eq!(listed[0].protocol_type, "consumer");
    assert_eq!(h.manager.list(&["stable".into()]).len(), 1);
    assert!(h.manager.list(&["Empty".into()]).is_empty());
    let described = h.manager.describe("g");
    assert_eq!(described.protocol_data, "range");
    assert_eq!(described.members.len(), 2);
    assert!(described.members.iter().any(|m| &m.assignment[..] == b"A"));
    assert_eq!(h.manager.describe("nope").state, "Dead");
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
        api_version: 9,
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
