//! Moves one member towards its target assignment (Kafka's
//! `CurrentAssignmentBuilder`): incremental reconciliation.
//!
//! The rule that keeps two consumers off one partition: a partition goes
//! to its new owner only once no other member holds it, and a member that
//! must give partitions up keeps its epoch until it heartbeats without
//! them. Pure: the caller passes the member, its target, the target epoch,
//! who holds what, and what the member said it owns.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Assignment, ConsumerMember, MemberState};

/// `member` after this heartbeat. `owned` is the request's TopicPartitions
/// (`None`: not sent, unchanged since the last one); `partition_epochs` the
/// holders' epochs of partitions other members hold.
pub fn reconcile(
    member: &ConsumerMember,
    target: &Assignment,
    target_epoch: i32,
    partition_epochs: &BTreeMap<(Uuid, i32), i32>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    match member.state {
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        MemberState::UnrevokedPartitions if still_owns(owned, &member.pending_revocation) => {
            member.clone()
        }
        _ => next_assignment(member, target, target_epoch, partition_epochs, owned),
    }
}

/// Whether the member may still hold some of `revoking`: it did not say
/// what it owns, or it named one of them.
fn still_owns(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    super::flatten(revoking).any(|(topic, partition)| {
        owned
            .get(&topic)
            .is_some_and(|partitions| partitions.contains(&partition))
    })
}

fn next_assignment(
    member: &ConsumerMember,
    target: &Assignment,
    target_epoch: i32,
    partition_epochs: &BTreeMap<(Uuid, i32), i32>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    let mut kept = Assignment::new();
    let mut revoking = Assignment::new();
    let mut gaining = Assignment::new();
    let mut unreleased = false;
    let topics: BTreeSet<Uuid> = member
        .assigned
        .keys()
        .chain(target.keys())
        .copied()
        .collect();
    let empty = BTreeSet::new();
    for topic in topics {
        let wanted = target.get(&topic).unwrap_or(&empty);
        let current = member.assigned.get(&topic).unwrap_or(&empty);
        let keep: BTreeSet<i32> = current.intersection(wanted).copied().collect();
        let revoke: BTreeSet<i32> = current.difference(wanted).copied().collect();
        let mut gain: BTreeSet<i32> = wanted.difference(current).copied().collect();
        let before = gain.len();
        gain.retain(|p| !partition_epochs.contains_key(&(topic, *p)));
        unreleased |= gain.len() != before;
        for (set, into) in [
            (keep, &mut kept),
            (revoke, &mut revoking),
            (gain, &mut gaining),
        ] {
            if !set.is_empty() {
                into.insert(topic, set);
            }
        }
    }
    let mut next = member.clone();
    if !revoking.is_empty() && still_owns(owned, &revoking) {
        // Give up first; the epoch stays until the member confirms.
        next.state = MemberState::UnrevokedPartitions;
        next.assigned = kept;
        next.pending_revocation = revoking;
        return next;
    }
    for (topic, partitions) in gaining {
        kept.entry(topic).or_default().extend(partitions);
    }
    next.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    if next.member_epoch != target_epoch {
        next.previous_member_epoch = next.member_epoch;
        next.member_epoch = target_epoch;
    }
    next.assigned = kept;
    next.pending_revocation = Assignment::new();
    next
}
