//! KIP-848 consumer groups on the manager: scripts of ConsumerGroupHeartbeats
//! with a fake clock and a fake topic table, checked against Kafka's rules.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::*;
use crate::coordinator::consumer_group::{count, flatten, Assignment, TopicInfo, TopicMetadata};
use crate::coordinator::errors;

const GROUP: &str = "g";
const TOPIC_ID: Uuid = Uuid::from_u128(0x7);
const OTHER_ID: Uuid = Uuid::from_u128(0x8);

/// A consumer's view of itself: what it owns and its epoch.
#[derive(Clone, Debug, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

struct Consumers {
    h: Harness,
    /// Topic "t" and its partitions; `None`: deleted.
    partitions: Option<i32>,
}

impl Consumers {
    fn new() -> Consumers {
        Consumers {
            h: Harness::new(config()),
            partitions: Some(6),
        }
    }

    fn request(&self, client: &Client) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            group_id: GROUP.into(),
            member_id: client.id.clone(),
            member_epoch: client.epoch,
            rebalance_timeout_ms: if client.epoch == 0 { 30_000 } else { -1 },
            subscribed_topic_names: (client.epoch == 0).then(|| vec!["t".to_string()]),
            owned: Some(client.owned.clone()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            ..ConsumerHeartbeat::default()
        }
    }

    fn send(&mut self, request: ConsumerHeartbeat) -> Result<ConsumerHeartbeatResponse, i16> {
        let mut topics = TopicMetadata::new();
        if let Some(partitions) = self.partitions {
            let t = TopicInfo {
                topic_id: TOPIC_ID,
                partitions,
            };
            topics.insert("t".into(), t);
        }
        let other = TopicInfo {
            topic_id: OTHER_ID,
            partitions: 2,
        };
        topics.insert("other".into(), other);
        let outcome = self
            .h
            .manager
            .consumer_heartbeat(request, true, &topics, self.h.now_ms);
        self.h.drain();
        outcome.map_err(|error| error.code)
    }

    /// One heartbeat of `client`, which then does what the answer says (it
    /// revokes and takes partitions at once).
    fn beat(&mut self, client: &mut Client) -> Result<(), i16> {
        let answer = self.send(self.request(client))?;
        client.epoch = answer.member_epoch;
        if let Some(assigned) = answer.assignment {
            client.owned = assigned;
        }
        Ok(())
    }

    fn join(&mut self, id: &str) -> Client {
        let mut client = Client {
            id: id.into(),
            ..Client::default()
        };
        self.beat(&mut client).expect("joins");
        client
    }

    /// Heartbeats every client in turn until nothing changes, checking at
    /// every step that no partition has two owners.
    fn settle(&mut self, clients: &mut [&mut Client]) {
        for _ in 0..10 {
            let before: Vec<(i32, Assignment)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            for index in 0..clients.len() {
                self.beat(clients[index]).expect("heartbeat");
                assert_disjoint(clients_owned(clients));
            }
            let after: Vec<(i32, Assignment)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            if before == after {
                return;
            }
        }
        panic!("no convergence");
    }

    fn epochs(&self) -> (i32, i32) {
        let group = self.h.manager.group(GROUP).expect("group");
        let consumer = group.consumer.as_deref().expect("a consumer group");
        (consumer.group_epoch, consumer.target_assignment_epoch)
    }
}

fn clients_owned(clients: &[&mut Client]) -> Vec<Assignment> {
    clients.iter().map(|c| c.owned.clone()).collect()
}

fn assert_disjoint(owned: Vec<Assignment>) {
    let mut seen = BTreeSet::new();
    for assignment in &owned {
        for tp in flatten(assignment) {
            assert!(seen.insert(tp), "{tp:?} owned twice: {owned:?}");
        }
    }
}

fn partitions(client: &Client) -> Vec<i32> {
    flatten(&client.owned).map(|(_, p)| p).collect()
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let mut c = Consumers::new();
    let mut a = c.join("a");
    assert_eq!((a.epoch, partitions(&a)), (1, vec![0, 1, 2, 3, 4, 5]));
    let mut b = c.join("b");
    assert_eq!(c.epochs(), (2, 2));
    // Everything b should get is still a's: it waits at epoch 2.
    assert_eq!((b.epoch, count(&b.owned)), (2, 0));
    // a is told to give three up and keeps epoch 1 until it has.
    c.beat(&mut a).unwrap();
    assert_eq!((a.epoch, count(&a.owned)), (1, 3));
    c.beat(&mut b).unwrap();
    assert_eq!(count(&b.owned), 0, "a has not confirmed yet");
    c.beat(&mut a).unwrap();
    assert_eq!(a.epoch, 2);
    c.beat(&mut b).unwrap();
    assert_eq!(count(&b.owned), 3);
    assert_disjoint(vec![a.owned.clone(), b.owned.clone()]);
    let described = c.h.manager.consumer_describe(GROUP).unwrap();
    assert_eq!(described.state, "Stable");
    assert_eq!(described.members.len(), 2);
    assert_eq!(c.h.manager.list(&[])[0].group_type, "consumer");
}

#[test]
fn leaving_and_session_timeouts_free_partitions() {
    let mut c = Consumers::new();
    let (mut a, mut b, mut d) = (c.join("a"), c.join("b"), c.join("d"));
    c.settle(&mut [&mut a, &mut b, &mut d]);
    assert_eq!([&a, &b, &d].map(|x| count(&x.owned)), [2, 2, 2]);
    // b leaves (epoch -1).
    let mut leave = c.request(&b);
    leave.member_epoch = -1;
    assert_eq!(c.send(leave).unwrap().member_epoch, -1);
    c.settle(&mut [&mut a, &mut d]);
    assert_eq!([&a, &d].map(|x| count(&x.owned)), [3, 3]);
    // d goes silent: after the session timeout a takes everything.
    c.h.advance(40_000);
    c.beat(&mut a).unwrap();
    c.h.advance(6_000);
    c.settle(&mut [&mut a]);
    assert_eq!(count(&a.owned), 6);
    assert_eq!(c.beat(&mut d), Err(errors::UNKNOWN_MEMBER_ID));
    // Rejoining with epoch 0 works.
    let mut d = c.join("d");
    c.settle(&mut [&mut a, &mut d]);
    assert_eq!([&a, &d].map(|x| count(&x.owned)), [3, 3]);
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut c = Consumers::new();
    let mut a = c.join("a");
    let mut b = c.join("b");
    let stubborn = a.owned.clone();
    c.beat(&mut a).unwrap();
    assert_eq!(count(&a.owned), 3, "told to give three up");
    for _ in 0..3 {
        // It keeps heartbeating, but keeps everything.
        a.owned = stubborn.clone();
        c.h.advance(9_000);
        c.beat(&mut a).unwrap();
        c.beat(&mut b).unwrap();
        assert_eq!(count(&b.owned), 0);
    }
    // 36 s > the 30 s rebalance timeout.
    c.h.advance(9_000);
    assert_eq!(c.beat(&mut a), Err(errors::UNKNOWN_MEMBER_ID));
    c.settle(&mut [&mut b]);
    assert_eq!(count(&b.owned), 6);
}

#[test]
fn epochs_and_requests_are_checked_as_kafka_does() {
    let mut c = Consumers::new();
    let mut a = c.join("a");
    let mut ahead = a.clone();
    ahead.epoch += 5;
    assert_eq!(c.beat(&mut ahead), Err(errors::FENCED_MEMBER_EPOCH));
    let mut ghost = Client {
        id: "ghost".into(),
        epoch: 3,
        ..Client::default()
    };
    assert_eq!(c.beat(&mut ghost), Err(errors::UNKNOWN_MEMBER_ID));
    let check = |c: &mut Consumers, edit: &dyn Fn(&mut ConsumerHeartbeat), code: i16| {
        let mut request = c.request(&Client {
            id: "new".into(),
            ..Client::default()
        });
        edit(&mut request);
        assert_eq!(c.send(request).map(|_| ()), Err(code));
    };
    check(&mut c, &|r| r.member_id.clear(), errors::INVALID_REQUEST);
    check(&mut c, &|r| r.group_id.clear(), errors::INVALID_REQUEST);
    check(
        &mut c,
        &|r| r.rebalance_timeout_ms = -1,
        errors::INVALID_REQUEST,
    );
    check(
        &mut c,
        &|r| r.subscribed_topic_names = None,
        errors::INVALID_REQUEST,
    );
    check(
        &mut c,
        &|r| r.subscribed_topic_regex = Some("t(".into()),
        errors::INVALID_REGULAR_EXPRESSION,
    );
    check(
        &mut c,
        &|r| r.server_assignor = Some("sticky".into()),
        errors::UNSUPPORTED_ASSIGNOR,
    );
    // A rejoin with epoch 0 of a known member answers its full assignment.
    a.epoch = 0;
    a.owned.clear();
    c.beat(&mut a).unwrap();
    assert_eq!((a.epoch, count(&a.owned)), (1, 6));
    // v0 lets the broker make the member id.
    let mut v0 = c.request(&Client::default());
    v0.member_id.clear();
    let topics = TopicMetadata::new();
    let made =
        c.h.manager
            .consumer_heartbeat(v0, false, &topics, c.h.now_ms);
    assert!(made.is_ok_and(|answer| answer.member_id.starts_with("client-")));
}

#[test]
fn offset_commits_carry_the_member_epoch() {
    let mut c = Consumers::new();
    let a = c.join("a");
    assert_eq!(c.h.commit("a", a.epoch, 5), errors::NONE);
    assert_eq!(c.h.commit("a", a.epoch + 1, 5), errors::FENCED_MEMBER_EPOCH);
    let _b = c.join("b");
    let mut a = a;
    c.beat(&mut a).unwrap();
    c.beat(&mut a).unwrap();
    assert_eq!(a.epoch, 2);
    assert_eq!(c.h.commit("a", 1, 5), errors::STALE_MEMBER_EPOCH);
    assert_eq!(c.h.commit("zed", 2, 5), errors::UNKNOWN_MEMBER_ID);
    let mut old = CommitRequest::one(GROUP, "a", 2, 5, None);
    old.api_version = 8;
    assert_eq!(
        c.h.manager.commit(&old, c.h.now_ms),
        vec![vec![errors::UNSUPPORTED_VERSION]]
    );
    assert_eq!(
        c.h.commit("", -1, 5),
        errors::UNKNOWN_MEMBER_ID,
        "not while members"
    );
    let group = c.h.manager.group(GROUP);
    assert_eq!(
        validate_offset_fetch(group, Some("a"), 1),
        errors::STALE_MEMBER_EPOCH
    );
    assert_eq!(validate_offset_fetch(group, Some("a"), 2), errors::NONE);
    assert_eq!(validate_offset_fetch(group, None, -1), errors::NONE);
    assert_eq!(
        c.h.manager.fetch(GROUP, None)[0].1[0]
            .1
            .as_ref()
            .map(|o| o.offset),
        Some(5)
    );
}

#[test]
fn the_two_group_types_do_not_mix() {
    let mut c = Consumers::new();
    // A classic group with members refuses a consumer member.
    let _classic = c.h.new_member();
    let mut x = Client {
        id: "x".into(),
        ..Client::default()
    };
    assert_eq!(c.beat(&mut x), Err(errors::GROUP_ID_NOT_FOUND));
    assert_eq!(
        c.h.manager.consumer_describe(GROUP).map_err(|e| e.code),
        Err(errors::GROUP_ID_NOT_FOUND)
    );

    // A consumer group with members refuses a classic join.
    let mut c = Consumers::new();
    let a = c.join("a");
    let Outcome::Now(refused) = c.h.join("") else {
        panic!("answered at once")
    };
    assert_eq!(refused.error_code, errors::INCONSISTENT_GROUP_PROTOCOL);
    // Empty again, it becomes classic for a classic member; offsets stay.
    assert_eq!(c.h.commit("a", a.epoch, 9), errors::NONE);
    let mut leave = c.request(&a);
    leave.member_epoch = -1;
    c.send(leave).unwrap();
    c.h.new_member();
    let group = c.h.manager.group(GROUP).unwrap();
    assert_eq!(group.type_name(), "classic");
    assert_eq!(group.offsets.len(), 1);
}

#[test]
fn topic_changes_move_the_target() {
    let mut c = Consumers::new();
    let mut a = c.join("a");
    let mut b = c.join("b");
    c.settle(&mut [&mut a, &mut b]);
    let epoch = c.epochs().0;
    c.partitions = Some(8);
    c.settle(&mut [&mut a, &mut b]);
    assert!(c.epochs().0 > epoch);
    assert_eq!(count(&a.owned) + count(&b.owned), 8);
    c.partitions = None;
    c.settle(&mut [&mut a, &mut b]);
    assert_eq!(count(&a.owned) + count(&b.owned), 0);
    let described = c.h.manager.consumer_describe(GROUP).unwrap();
    assert!(described
        .members
        .iter()
        .all(|m| m.target_assignment.is_empty()));
}

#[test]
fn a_regex_subscribes_to_every_topic_it_matches_whole() {
    let mut c = Consumers::new();
    let mut request = c.request(&Client {
        id: "r".into(),
        ..Client::default()
    });
    request.subscribed_topic_names = Some(Vec::new());
    request.subscribed_topic_regex = Some("o.*".into());
    let answer = c.send(request.clone()).unwrap();
    let assigned = answer.assignment.unwrap();
    assert_eq!(assigned.keys().copied().collect::<Vec<_>>(), vec![OTHER_ID]);
    // "t" matches "t|o.*" but not "o.*" nor a part of it ("th" would not).
    request.member_epoch = answer.member_epoch;
    request.subscribed_topic_regex = Some("t|o.*".into());
    request.rebalance_timeout_ms = -1;
    request.owned = Some(assigned);
    let answer = c.send(request).unwrap();
    assert_eq!(count(&answer.assignment.unwrap()), 8);
    let described = c.h.manager.consumer_describe(GROUP).unwrap();
    assert_eq!(
        described.members[0].subscribed_topic_regex.as_deref(),
        Some("t|o.*")
    );
}

#[test]
fn a_static_member_that_leaves_with_epoch_minus_two_gets_its_partitions_back() {
    let mut c = Consumers::new();
    let static_request = |c: &Consumers, client: &Client| {
        let mut request = c.request(client);
        request.instance_id = Some("instance-1".into());
        request
    };
    let mut s = Client {
        id: "s1".into(),
        ..Client::default()
    };
    let answer = c.send(static_request(&c, &s)).unwrap();
    s.epoch = answer.member_epoch;
    s.owned = answer.assignment.unwrap();
    let mut d = c.join("d");
    let mut ss = s.clone();
    c.settle(&mut [&mut ss, &mut d]);
    let kept = ss.owned.clone();
    assert_eq!(count(&kept), 3);
    let epoch = c.epochs().0;

    // Another member id with the same instance id, while s1 is in: refused.
    let twin = Client {
        id: "s2".into(),
        ..Client::default()
    };
    let refused = c.send(static_request(&c, &twin)).map(|_| ());
    assert_eq!(refused, Err(errors::UNRELEASED_INSTANCE_ID));

    // s1 leaves for a while: nobody takes its partitions, the epoch stays.
    let mut leave = static_request(&c, &ss);
    leave.member_epoch = -2;
    assert_eq!(c.send(leave).unwrap().member_epoch, -2);
    c.settle(&mut [&mut d]);
    assert_eq!(count(&d.owned), 3);
    assert_eq!(c.epochs().0, epoch);
    // A heartbeat under another member id with an epoch is fenced.
    let mut zombie = static_request(&c, &twin);
    zombie.member_epoch = 3;
    assert_eq!(c.send(zombie).map(|_| ()), Err(errors::FENCED_INSTANCE_ID));

    // It restarts as s2: s1's partitions come back at once.
    let answer = c.send(static_request(&c, &twin)).unwrap();
    assert_eq!(answer.assignment, Some(kept));
    assert_eq!(answer.member_epoch, epoch);
    assert_eq!(c.epochs().0, epoch);

    // Gone for good once its session ends after another -2.
    let mut s2 = Client {
        id: "s2".into(),
        epoch: answer.member_epoch,
        owned: answer.assignment.unwrap(),
    };
    let mut leave = static_request(&c, &s2);
    leave.member_epoch = -2;
    c.send(leave).unwrap();
    c.h.advance(30_000);
    c.beat(&mut d).unwrap();
    c.h.advance(16_000);
    c.settle(&mut [&mut d]);
    assert_eq!(count(&d.owned), 6);
    assert_eq!(c.beat(&mut s2), Err(errors::UNKNOWN_MEMBER_ID));
}
