//! The active controller's decisions about replicas and leaders, as pure
//! functions from the image to records: where a new partition's replicas
//! go, who leads after a broker is fenced or comes back, and moving leaders
//! back to their preferred replica.
//!
//! Must not: do I/O, keep state, or apply anything (the records go through
//! the quorum and come back through `MetadataImage::apply`, on every node).

use super::metadata::{MetadataImage, PartitionState};
use super::records::{MetadataRecord, NO_LEADER};

/// Kafka's rack-unaware assignment: partition `p`'s first replica is broker
/// `(start + p) % n`, and the others follow at a shift that grows by one
/// every `n` partitions, so that leaders and followers spread evenly.
/// `brokers` must be sorted and hold at least `replication_factor` ids.
pub fn assign_replicas(
    brokers: &[i32],
    partitions: std::ops::Range<i32>,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    assert!(replication_factor >= 1 && replication_factor <= n);
    partitions
        .map(|partition| {
            let partition = partition as usize;
            let first = (start + partition) % n;
            let mut shift = shift;
            if partition > 0 && partition % n == 0 {
                shift += partition / n;
            }
            let mut replicas = vec![brokers[first]];
            for j in 0..replication_factor - 1 {
                let step = if n > 1 { 1 + (shift + j) % (n - 1) } else { 0 };
                replicas.push(brokers[(first + step) % n]);
            }
            replicas
        })
        .collect()
}

/// A leader for a partition that needs one: the first replica (in replica
/// order, so the preferred one when it can) that is in the ISR and live;
/// or, when `unclean` is allowed and no ISR member is live, the first live
/// replica, which then becomes the whole ISR. Returns `(leader, isr)`.
pub fn elect_leader(
    state: &PartitionState,
    is_live: impl Fn(i32) -> bool,
    unclean: bool,
) -> Option<(i32, Vec<i32>)> {
    let clean = state
        .replicas
        .iter()
        .copied()
        .find(|replica| state.isr.contains(replica) && is_live(*replica));
    if let Some(leader) = clean {
        return Some((leader, state.isr.clone()));
    }
    if unclean {
        let leader = state.replicas.iter().copied().find(|r| is_live(*r))?;
        return Some((leader, vec![leader]));
    }
    None
}

fn change(
    topic: &str,
    partition: i32,
    leader: Option<i32>,
    isr: Option<Vec<i32>>,
) -> MetadataRecord {
    MetadataRecord::PartitionChange {
        topic: topic.to_string(),
        partition,
        leader,
        isr,
        replicas: None,
        adding: None,
        removing: None,
    }
}

/// Every partition of the image, with its topic name and index.
pub(crate) fn partitions(
    image: &MetadataImage,
) -> impl Iterator<Item = (&str, i32, &PartitionState)> {
    image.topics.values().flat_map(|topic| {
        topic
            .states
            .iter()
            .enumerate()
            .map(move |(index, state)| (topic.name.as_str(), index as i32, state))
    })
}

/// What fencing `node_id` changes: it leaves every ISR it is in (unless it
/// is the last member: Kafka keeps the last one, so that the partition
/// knows whose log is complete), and the partitions it led get a new leader
/// from the rest of the ISR, or none.
pub fn fence_changes(
    image: &MetadataImage,
    node_id: i32,
    unclean: impl Fn(&str) -> bool,
) -> Vec<MetadataRecord> {
    let is_live = |id: i32| id != node_id && image.is_live(id);
    let mut records = Vec::new();
    for (topic, partition, state) in partitions(image) {
        if !state.isr.contains(&node_id) && state.leader != node_id {
            continue;
        }
        let mut next = state.clone();
        if next.isr.len() > 1 {
            next.isr.retain(|id| *id != node_id);
        }
        let (leader, isr) = if state.leader == node_id || !state.has_leader() {
            match elect_leader(&next, is_live, unclean(topic)) {
                Some((leader, isr)) => (leader, isr),
                None => (NO_LEADER, next.isr.clone()),
            }
        } else {
            (state.leader, next.isr.clone())
        };
        let leader = (leader != state.leader).then_some(leader);
        let isr = (isr != state.isr).then_some(isr);
        if leader.is_some() || isr.is_some() {
            records.push(change(topic, partition, leader, isr));
        }
    }
    records
}

/// Leaders for partitions that have none, now that `node_id` is live again
/// (or unclean election was allowed).
pub fn offline_leader_changes(
    image: &MetadataImage,
    is_live: impl Fn(i32) -> bool,
    unclean: impl Fn(&str) -> bool,
) -> Vec<MetadataRecord> {
    partitions(image)
        .filter(|(_, _, state)| !state.has_leader())
        .filter_map(|(topic, partition, state)| {
            let (leader, isr) = elect_leader(state, &is_live, unclean(topic))?;
            let isr = (isr != state.isr).then_some(isr);
            Some(change(topic, partition, Some(leader), isr))
        })
        .collect()
}

/// Picks partitions by topic and index.
pub type PartitionFilter<'a> = &'a dyn Fn(&str, i32) -> bool;

/// Moves leadership back to the preferred (first) replica wherever it is
/// live, in the ISR, and not leading. `only` limits it to some partitions.
pub fn preferred_leader_changes(
    image: &MetadataImage,
    only: Option<PartitionFilter>,
) -> Vec<MetadataRecord> {
    partitions(image)
        .filter(|(topic, partition, _)| only.is_none_or(|only| only(topic, *partition)))
        .filter_map(|(topic, partition, state)| {
            let preferred = *state.replicas.first()?;
            let eligible = preferred != state.leader
                && state.isr.contains(&preferred)
                && image.is_live(preferred);
            eligible.then(|| MetadataRecord::leader_change(topic, partition, preferred))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::MetadataRecord as R;

    fn image_with(brokers: &[i32], states: Vec<PartitionState>) -> MetadataImage {
        crate::cluster::test_images::image(brokers, &[], &states)
    }

    #[test]
    fn replicas_spread_leaders_and_never_repeat_a_broker() {
        let brokers = [1, 2, 3];
        let assignment = assign_replicas(&brokers, 0..6, 3, 1, 0);
        let leaders: Vec<i32> = assignment.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![2, 3, 1, 2, 3, 1]);
        for replicas in &assignment {
            let mut sorted = replicas.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "{replicas:?}");
        }
        assert_eq!(assign_replicas(&[7], 0..2, 1, 5, 3), vec![vec![7], vec![7]]);
    }

    #[test]
    fn election_prefers_replica_order_within_the_isr() {
        let state = PartitionState::new(vec![1, 2, 3], vec![3, 2], NO_LEADER);
        assert_eq!(elect_leader(&state, |_| true, false), Some((2, vec![3, 2])));
        assert_eq!(elect_leader(&state, |id| id == 1, false), None);
        assert_eq!(elect_leader(&state, |id| id == 1, true), Some((1, vec![1])));
    }

    #[test]
    fn fencing_a_leader_moves_leadership_within_the_isr() {
        let image = image_with(
            &[1, 2, 3],
            vec![
                PartitionState::new(vec![1, 2, 3], vec![1, 2, 3], 1),
                PartitionState::new(vec![2, 3, 1], vec![2, 3, 1], 2),
                PartitionState::new(vec![1], vec![1], 1),
            ],
        );
        let records = fence_changes(&image, 1, |_| false);
        assert_eq!(records.len(), 3);
        let mut after = image.clone();
        after.apply_batch(9, &records);
        let p0 = after.partition("t", 0).unwrap();
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (2, vec![2, 3], 1)
        );
        let p1 = after.partition("t", 1).unwrap();
        assert_eq!(
            (p1.leader, p1.isr.clone(), p1.leader_epoch),
            (2, vec![2, 3], 0)
        );
        // The last ISR member stays, and the partition is offline.
        let p2 = after.partition("t", 2).unwrap();
        assert_eq!((p2.leader, p2.isr.clone()), (NO_LEADER, vec![1]));
        // When it comes back it leads again.
        let back = offline_leader_changes(&after, |_| true, |_| false);
        assert_eq!(back, vec![R::leader_change("t", 2, 1)]);
    }

    #[test]
    fn the_preferred_replica_gets_leadership_back() {
        let image = image_with(
            &[1, 2],
            vec![
                PartitionState::new(vec![1, 2], vec![1, 2], 2),
                PartitionState::new(vec![1, 2], vec![2], 2),
            ],
        );
        assert_eq!(
            preferred_leader_changes(&image, None),
            vec![R::leader_change("t", 0, 1)]
        );
        let none: PartitionFilter = &|_, partition| partition == 1;
        assert!(preferred_leader_changes(&image, Some(none)).is_empty());
    }
}
