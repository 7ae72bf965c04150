//! The server-side assignors of the consumer protocol: a member picks one
//! with `group.remote.assignor` (ConsumerGroupHeartbeat's ServerAssignor).
//!
//! Pure functions from the members' subscriptions, the subscribed topics
//! and the current target to the next target. Deterministic: members in id
//! order, topics in name order.
//!
//! - `uniform` (the default): every partition of the subscribed topics goes
//!   to a subscribed member, the counts of members that could take each
//!   other's partitions differ by one at most, and a partition stays with
//!   its current target owner when balance allows (sticky). When every
//!   member subscribes to the same topics (Kafka's "homogeneous" case) it
//!   is one pass; otherwise a balancing pass moves partitions. Kafka's
//!   `UniformAssignor` has the same goals; its exact choices may differ.
//! - `range`: per topic, the subscribed members in id order get contiguous
//!   ranges, the first `partitions % members` one more (Kafka's
//!   `RangeAssignor` without its stickiness).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{count, Assignment, TopicMetadata};

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// The assignors this broker offers (`group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

pub fn is_supported(name: &str) -> bool {
    ASSIGNORS.contains(&name)
}

/// Members' subscriptions: member id to topic names.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// The target assignment of every member by `assignor` (an unknown name is
/// `uniform`; names are checked when members send them).
pub fn assign(
    assignor: &str,
    subscriptions: &Subscriptions,
    topics: &TopicMetadata,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    if assignor == RANGE {
        range(subscriptions, topics, &mut target);
    } else {
        uniform(subscriptions, topics, current, &mut target);
    }
    target
}

fn subscribers<'a>(subscriptions: &'a Subscriptions, topic: &str) -> Vec<&'a String> {
    subscriptions
        .iter()
        .filter(|(_, topics)| topics.contains(topic))
        .map(|(id, _)| id)
        .collect()
}

fn range(
    subscriptions: &Subscriptions,
    topics: &TopicMetadata,
    target: &mut BTreeMap<String, Assignment>,
) {
    for (name, info) in topics {
        let members = subscribers(subscriptions, name);
        if members.is_empty() {
            continue;
        }
        let partitions = info.partitions.max(0) as usize;
        let (quota, extra) = (partitions / members.len(), partitions % members.len());
        let mut next = 0;
        for (index, member) in members.iter().enumerate() {
            let take = quota + usize::from(index < extra);
            let mine: BTreeSet<i32> = (next..next + take).map(|p| p as i32).collect();
            next += take;
            if !mine.is_empty() {
                target
                    .get_mut(*member)
                    .expect("every member has a target")
                    .insert(info.topic_id, mine);
            }
        }
    }
}

fn uniform(
    subscriptions: &Subscriptions,
    topics: &TopicMetadata,
    current: &BTreeMap<String, Assignment>,
    target: &mut BTreeMap<String, Assignment>,
) {
    // Who may take each partition.
    let mut eligible: BTreeMap<(Uuid, i32), Vec<&String>> = BTreeMap::new();
    for (name, info) in topics {
        let members = subscribers(subscriptions, name);
        if members.is_empty() {
            continue;
        }
        for partition in 0..info.partitions.max(0) {
            eligible.insert((info.topic_id, partition), members.clone());
        }
    }
    let mut subscriptions_seen = subscriptions.values();
    let first = subscriptions_seen.next();
    let owner = if subscriptions_seen.all(|topics| Some(topics) == first) {
        homogeneous(subscriptions, &eligible, current)
    } else {
        general(subscriptions, &eligible, current)
    };
    for ((topic, partition), member) in owner {
        target
            .get_mut(&member)
            .expect("every member has a target")
            .entry(topic)
            .or_default()
            .insert(partition);
    }
    debug_assert_eq!(
        target.values().map(count).sum::<usize>(),
        eligible.len(),
        "every subscribed partition is assigned once"
    );
}

/// Every member may take every partition (the common case): each gets
/// `partitions / members` or one more, keeping what it had first; no
/// balancing pass is needed. O(partitions x members).
fn homogeneous(
    subscriptions: &Subscriptions,
    eligible: &BTreeMap<(Uuid, i32), Vec<&String>>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<(Uuid, i32), String> {
    let members = subscriptions.len();
    if members == 0 {
        return BTreeMap::new();
    }
    let base = eligible.len() / members;
    let mut extras = eligible.len() % members;
    // Those that had the most keep the extra partitions.
    let mut previous: Vec<(&String, Vec<(Uuid, i32)>)> = subscriptions
        .keys()
        .map(|id| {
            let had = current
                .get(id)
                .map(|assignment| {
                    super::flatten(assignment)
                        .filter(|tp| eligible.contains_key(tp))
                        .collect()
                })
                .unwrap_or_default();
            (id, had)
        })
        .collect();
    previous.sort_by_key(|(id, had)| (std::cmp::Reverse(had.len()), *id));
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut quota: BTreeMap<&String, usize> = BTreeMap::new();
    let mut load: BTreeMap<&String, usize> = BTreeMap::new();
    for (id, had) in previous {
        let extra = extras > 0 && had.len() > base;
        extras -= usize::from(extra);
        let limit = base + usize::from(extra);
        let mut kept = 0;
        for tp in had {
            if kept < limit && !owner.contains_key(&tp) {
                owner.insert(tp, id.clone());
                kept += 1;
            }
        }
        quota.insert(id, limit);
        load.insert(id, kept);
    }
    for tp in eligible.keys() {
        if owner.contains_key(tp) {
            continue;
        }
        let under = load
            .iter()
            .filter(|(id, count)| **count < quota[**id])
            .min_by_key(|(id, count)| (**count, **id))
            .map(|(id, _)| *id);
        let chosen = under.unwrap_or_else(|| {
            // Every quota is full: one more member takes an extra.
            let id = load
                .iter()
                .filter(|(id, _)| quota[**id] == base)
                .min_by_key(|(id, count)| (**count, **id))
                .map(|(id, _)| *id)
                .expect("the quotas add up to the partitions");
            *quota.get_mut(id).expect("a member") += 1;
            id
        });
        *load.get_mut(chosen).expect("a member") += 1;
        owner.insert(*tp, chosen.clone());
    }
    owner
}

/// Members subscribe to different topics: sticky first, then the least
/// loaded eligible member, then moves until no partition could go to an
/// eligible member with two or more fewer.
fn general(
    subscriptions: &Subscriptions,
    eligible: &BTreeMap<(Uuid, i32), Vec<&String>>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<(Uuid, i32), String> {
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    // Sticky: what the current target gave a member it keeps, if it may.
    for (member, assignment) in current {
        for tp in super::flatten(assignment) {
            let allowed = eligible
                .get(&tp)
                .is_some_and(|members| members.contains(&member));
            if allowed && !owner.contains_key(&tp) {
                owner.insert(tp, member.clone());
            }
        }
    }
    let mut load: BTreeMap<&String, usize> = subscriptions.keys().map(|id| (id, 0)).collect();
    for member in owner.values() {
        *load.get_mut(member).expect("eligible members subscribe") += 1;
    }
    for (tp, members) in eligible {
        if owner.contains_key(tp) {
            continue;
        }
        let chosen = least_loaded(members, &load);
        *load.get_mut(chosen).expect("subscribed") += 1;
        owner.insert(*tp, chosen.clone());
    }
    // Each move lowers the sum of squared loads, so this ends; the bound
    // only guards against a mistake.
    let moves_max = eligible.len() * subscriptions.len() + 1;
    for _ in 0..moves_max {
        let Some((tp, to)) = eligible.iter().find_map(|(tp, members)| {
            let from = &owner[tp];
            let to = least_loaded(members, &load);
            (load[to] + 1 < load[from]).then(|| (*tp, to.clone()))
        }) else {
            break;
        };
        let from = owner.insert(tp, to.clone()).expect("owned");
        *load.get_mut(&from).expect("subscribed") -= 1;
        *load.get_mut(&to).expect("subscribed") += 1;
    }
    owner
}

fn least_loaded<'a>(members: &[&'a String], load: &BTreeMap<&String, usize>) -> &'a String {
    members
        .iter()
        .min_by_key(|id| (load[**id], **id))
        .expect("a subscribed partition has members")
}
