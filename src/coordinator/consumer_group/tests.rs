//! The assignors and the reconciliation of one member, as pure functions.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assignor::{assign, Subscriptions, RANGE, UNIFORM};
use super::reconcile::reconcile;
use super::*;

fn topic_id(name: &str) -> Uuid {
    Uuid::from_u128(name.bytes().fold(7u128, |h, b| h * 31 + u128::from(b)))
}

fn topics(list: &[(&str, i32)]) -> TopicMetadata {
    list.iter()
        .map(|(name, partitions)| {
            let info = TopicInfo {
                topic_id: topic_id(name),
                partitions: *partitions,
            };
            (name.to_string(), info)
        })
        .collect()
}

fn subscriptions(list: &[(&str, &[&str])]) -> Subscriptions {
    list.iter()
        .map(|(member, topics)| {
            let topics: BTreeSet<String> = topics.iter().map(|t| t.to_string()).collect();
            (member.to_string(), topics)
        })
        .collect()
}

/// `topic:partition` pairs, for readable expectations.
fn parts(list: &[(&str, i32)]) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, partition) in list {
        assignment
            .entry(topic_id(topic))
            .or_default()
            .insert(*partition);
    }
    assignment
}

fn counts(target: &BTreeMap<String, Assignment>) -> Vec<usize> {
    target.values().map(count).collect()
}

/// Every subscribed partition is in exactly one target, of a subscriber.
fn check_complete(
    subs: &Subscriptions,
    meta: &TopicMetadata,
    target: &BTreeMap<String, Assignment>,
) {
    let mut seen = BTreeSet::new();
    for (member, assignment) in target {
        for (topic, partition) in flatten(assignment) {
            let name = meta
                .iter()
                .find(|(_, info)| info.topic_id == topic)
                .map(|(name, _)| name)
                .expect("a known topic");
            assert!(
                subs[member].contains(name),
                "{member} got {name} unsubscribed"
            );
            assert!(seen.insert((topic, partition)), "{name}-{partition} twice");
        }
    }
    let expected: usize = meta
        .iter()
        .filter(|(name, _)| subs.values().any(|t| t.contains(*name)))
        .map(|(_, info)| info.partitions as usize)
        .sum();
    assert_eq!(seen.len(), expected);
}

#[test]
fn range_gives_contiguous_runs_per_topic() {
    let subs = subscriptions(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["t"])]);
    let meta = topics(&[("t", 7), ("u", 3)]);
    let target = assign(RANGE, &subs, &meta, &BTreeMap::new());
    check_complete(&subs, &meta, &target);
    assert_eq!(
        target["a"],
        parts(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)])
    );
    assert_eq!(target["b"], parts(&[("t", 3), ("t", 4), ("u", 2)]));
    assert_eq!(target["c"], parts(&[("t", 5), ("t", 6)]));
}

#[test]
fn uniform_balances_and_keeps_what_it_can() {
    let meta = topics(&[("t", 6), ("u", 5)]);
    let two = subscriptions(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
    let first = assign(UNIFORM, &two, &meta, &BTreeMap::new());
    check_complete(&two, &meta, &first);
    assert_eq!(counts(&first), vec![6, 5]);
    // A third member: each keeps most of what it had, the spread is one.
    let three = subscriptions(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["t", "u"])]);
    let second = assign(UNIFORM, &three, &meta, &first);
    check_complete(&three, &meta, &second);
    let mut sizes = counts(&second);
    sizes.sort();
    assert_eq!(sizes, vec![3, 4, 4]);
    for member in ["a", "b"] {
        let kept = flatten(&second[member])
            .filter(|tp| flatten(&first[member]).any(|old| old == *tp))
            .count();
        assert_eq!(
            kept,
            count(&second[member]),
            "{member} only lost partitions"
        );
    }
    // Same input, same answer.
    assert_eq!(assign(UNIFORM, &three, &meta, &first), second);
}

#[test]
fn uniform_respects_different_subscriptions() {
    let subs = subscriptions(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["u"])]);
    let meta = topics(&[("t", 4), ("u", 4), ("unsubscribed", 3)]);
    let target = assign(UNIFORM, &subs, &meta, &BTreeMap::new());
    check_complete(&subs, &meta, &target);
    let mut sizes = counts(&target);
    sizes.sort();
    assert!(sizes[2] - sizes[0] <= 1, "{sizes:?}");
    // A member with no existing subscribed topic gets nothing.
    let subs = subscriptions(&[("a", &["t"]), ("b", &["missing"])]);
    let target = assign(UNIFORM, &subs, &meta, &BTreeMap::new());
    assert_eq!(count(&target["a"]), 4);
    assert!(target["b"].is_empty());
}

fn member(id: &str, epoch: i32, assigned: Assignment) -> ConsumerMember {
    ConsumerMember {
        member_epoch: epoch,
        assigned,
        ..ConsumerMember::new(id)
    }
}

#[test]
fn a_member_gives_up_partitions_before_moving_to_the_new_epoch() {
    let owner = member("a", 1, parts(&[("t", 0), ("t", 1)]));
    let target = parts(&[("t", 0)]);
    // Epoch 2 takes t-1 away: revoke first, keep epoch 1.
    let next = reconcile(&owner, &target, 2, &BTreeMap::new(), None);
    assert_eq!(next.state, MemberState::UnrevokedPartitions);
    assert_eq!(
        (next.member_epoch, next.assigned.clone()),
        (1, target.clone())
    );
    assert_eq!(next.pending_revocation, parts(&[("t", 1)]));
    // Still owning t-1: nothing moves.
    let still = reconcile(&next, &target, 2, &BTreeMap::new(), Some(&owner.assigned));
    assert_eq!(still, next);
    // Heartbeating without it: the new epoch, stable.
    let done = reconcile(&next, &target, 2, &BTreeMap::new(), Some(&target));
    assert_eq!(done.state, MemberState::Stable);
    assert_eq!((done.member_epoch, done.previous_member_epoch), (2, 1));
    assert!(done.pending_revocation.is_empty());
}

#[test]
fn a_member_waits_for_partitions_others_still_hold() {
    let newcomer = member("b", 0, Assignment::new());
    let target = parts(&[("t", 1), ("t", 2)]);
    // t-1 is still held by someone at epoch 1.
    let held = BTreeMap::from([((topic_id("t"), 1), 1)]);
    let next = reconcile(&newcomer, &target, 2, &held, Some(&Assignment::new()));
    assert_eq!(next.state, MemberState::UnreleasedPartitions);
    assert_eq!(next.member_epoch, 2);
    assert_eq!(next.assigned, parts(&[("t", 2)]));
    // Released: it gets the rest and is stable.
    let done = reconcile(&next, &target, 2, &BTreeMap::new(), None);
    assert_eq!(done.state, MemberState::Stable);
    assert_eq!(done.assigned, target);
}

#[test]
fn group_state_and_preferred_assignor() {
    let mut group = ConsumerGroup::new();
    assert_eq!(group.state(), ConsumerGroupState::Empty);
    assert_eq!(group.preferred_assignor(), UNIFORM);
    let mut a = member("a", 1, Assignment::new());
    a.server_assignor = Some(RANGE.to_string());
    group.members.insert("a".into(), a);
    group.group_epoch = 1;
    assert_eq!(group.state(), ConsumerGroupState::Assigning);
    group.maybe_update_target();
    assert_eq!(group.assignor, RANGE);
    assert_eq!(group.state(), ConsumerGroupState::Stable);
    group.members.get_mut("a").unwrap().state = MemberState::UnreleasedPartitions;
    assert_eq!(group.state(), ConsumerGroupState::Reconciling);
}

#[test]
fn uniform_stays_balanced_and_sticky_as_members_come_and_go() {
    let meta = topics(&[("t", 37), ("u", 1000)]);
    let names: Vec<String> = (0..60).map(|i| format!("m{i:02}")).collect();
    let mut target = BTreeMap::new();
    let mut members: Vec<&str> = Vec::new();
    // Members join one by one, then every third leaves.
    let steps = names
        .iter()
        .map(|n| (n.as_str(), true))
        .chain(names.iter().step_by(3).map(|n| (n.as_str(), false)));
    for (name, joins) in steps {
        if joins {
            members.push(name);
        } else {
            members.retain(|m| *m != name);
        }
        let list: Vec<(&str, &[&str])> = members.iter().map(|m| (*m, &["t", "u"][..])).collect();
        let subs = subscriptions(&list);
        let next = assign(UNIFORM, &subs, &meta, &target);
        check_complete(&subs, &meta, &next);
        let sizes = counts(&next);
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "{sizes:?}");
        // A join only takes partitions away from the others; a leave only
        // gives the leaver's partitions out.
        for (member, assignment) in &next {
            let Some(before) = target.get(member) else {
                continue;
            };
            let moved_in = flatten(assignment).filter(|tp| !flatten(before).any(|b| b == *tp));
            if joins {
                assert_eq!(moved_in.count(), 0, "{member} gained when {name} joined");
            } else {
                let lost = flatten(before).filter(|tp| !flatten(assignment).any(|a| a == *tp));
                assert_eq!(lost.count(), 0, "{member} lost when {name} left");
            }
        }
        target = next;
    }
}
