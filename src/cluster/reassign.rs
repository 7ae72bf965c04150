//! Partition reassignment as Kafka does it (KIP-455), as pure functions from
//! the image to records.
//!
//! Moving a partition with replicas `R` to target replicas `T` first grows
//! it: replicas become `T` then `R − T` (targets first), `adding = T − R`,
//! `removing = R − T`; the new replicas open on their brokers and catch up.
//! Once every adding replica is in the ISR the active controller completes
//! it ([`completions`], each round of its duties): replicas become `T`, the
//! ISR loses the removed ones, and a removed leader hands over to the first
//! replica of `T` in the ISR. A reassignment that adds nothing completes in
//! the same change that starts it. Cancelling (a null target) goes back to
//! the original replicas (`replicas − adding`).
//!
//! Must not: do I/O or keep state; `controller.rs` proposes the records.

use serde::{Deserialize, Serialize};

use super::commands::TopicError;
use super::metadata::{MetadataImage, PartitionState};
use super::placement;
use super::records::{MetadataRecord, NO_LEADER};
use crate::protocol::error_codes;

/// One partition's requested reassignment: `target: None` cancels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Ongoing {
    fn of(topic: &str, partition: i32, state: &PartitionState) -> Option<Ongoing> {
        is_reassigning(state).then(|| Ongoing {
            topic: topic.to_string(),
            partition,
            replicas: state.replicas.clone(),
            adding: state.adding.clone(),
            removing: state.removing.clone(),
        })
    }
}

fn is_reassigning(state: &PartitionState) -> bool {
    !state.adding.is_empty() || !state.removing.is_empty()
}

fn minus(from: &[i32], taken: &[i32]) -> Vec<i32> {
    from.iter()
        .copied()
        .filter(|id| !taken.contains(id))
        .collect()
}

/// The members of `isr` that are in `replicas`.
fn within(isr: &[i32], replicas: &[i32]) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|id| replicas.contains(id))
        .collect()
}

/// The first live replica of `replicas` (in order) that is in `isr`.
fn first_live_in_sync(image: &MetadataImage, replicas: &[i32], isr: &[i32]) -> Option<i32> {
    let next = PartitionState::new(replicas.to_vec(), isr.to_vec(), NO_LEADER);
    placement::elect_leader(&next, |id| image.is_live(id), false).map(|(leader, _)| leader)
}

/// The record that gives a partition `replicas`, `isr` and `leader`, with
/// no reassignment in progress (leader and ISR only where they change).
fn settle(
    topic: &str,
    partition: i32,
    state: &PartitionState,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
) -> MetadataRecord {
    MetadataRecord::PartitionChange {
        topic: topic.to_string(),
        partition,
        leader: (leader != state.leader).then_some(leader),
        isr: (isr != state.isr).then_some(isr),
        replicas: Some(replicas),
        adding: Some(Vec::new()),
        removing: Some(Vec::new()),
    }
}

fn invalid(message: String) -> TopicError {
    TopicError::new(error_codes::INVALID_REPLICA_ASSIGNMENT, message)
}

/// Starts, changes or cancels reassignments, one result per request in
/// order. Each accepted one is applied to a scratch image before the next
/// is decided, so the records fit together. `unclean` says whether a topic
/// allows unclean leader election (a cancel that would need one is refused
/// otherwise, as Kafka does).
pub fn alter(
    image: &MetadataImage,
    requests: Vec<Reassignment>,
    allow_replication_factor_change: bool,
    unclean: impl Fn(&MetadataImage, &str) -> bool,
) -> (Vec<Result<(), TopicError>>, Vec<MetadataRecord>) {
    let mut scratch = image.clone();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for request in requests {
        let outcome = alter_one(
            &scratch,
            &request,
            allow_replication_factor_change,
            |topic| unclean(&scratch, topic),
        );
        match outcome {
            Ok(changes) => {
                scratch.apply_batch(scratch.epoch, &changes);
                // Completes at once what needs no catching up.
                let done = completion(&scratch, &request.topic, request.partition);
                scratch.apply_batch(scratch.epoch, &done);
                records.extend(changes);
                records.extend(done);
                results.push(Ok(()));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    (results, records)
}

fn alter_one(
    image: &MetadataImage,
    request: &Reassignment,
    allow_replication_factor_change: bool,
    unclean: impl Fn(&str) -> bool,
) -> Result<Vec<MetadataRecord>, TopicError> {
    let (topic, partition) = (request.topic.as_str(), request.partition);
    let state = image.partition(topic, partition).ok_or_else(|| {
        TopicError::new(
            error_codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Unable to find partition {topic}:{partition}."),
        )
    })?;
    let original = minus(&state.replicas, &state.adding);
    let Some(target) = &request.target else {
        if !is_reassigning(state) {
            return Err(TopicError::new(
                error_codes::NO_REASSIGNMENT_IN_PROGRESS,
                format!("No ongoing reassignment for partition {topic}:{partition}."),
            ));
        }
        return revert(image, topic, partition, state, original, unclean(topic)).map(|r| vec![r]);
    };
    validate_target(image, target)?;
    if !allow_replication_factor_change && target.len() != original.len() {
        return Err(TopicError::new(
            error_codes::INVALID_REPLICATION_FACTOR,
            format!(
                "The replication factor is changed from {} to {}",
                original.len(),
                target.len()
            ),
        ));
    }
    if *target == state.replicas && !is_reassigning(state) {
        return Ok(Vec::new());
    }
    let adding = minus(target, &original);
    let removing = minus(&original, target);
    let mut merged = target.clone();
    merged.extend(&removing);
    // Replicas an earlier reassignment was adding and this one drops leave
    // at once: they were never part of the partition's committed set.
    let isr = within(&state.isr, &merged);
    let leader = if merged.contains(&state.leader) {
        state.leader
    } else {
        first_live_in_sync(image, &merged, &isr).unwrap_or(NO_LEADER)
    };
    if isr.is_empty() {
        return Err(invalid(format!(
            "Reassigning partition {topic}:{partition} to {target:?} would leave it no in-sync replica."
        )));
    }
    Ok(vec![MetadataRecord::PartitionChange {
        topic: topic.to_string(),
        partition,
        leader: (leader != state.leader).then_some(leader),
        isr: (isr != state.isr).then_some(isr),
        replicas: Some(merged),
        adding: Some(adding),
        removing: Some(removing),
    }])
}

/// Kafka's checks of a manual assignment.
fn validate_target(image: &MetadataImage, target: &[i32]) -> Result<(), TopicError> {
    if target.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    for (index, id) in target.iter().enumerate() {
        if target[..index].contains(id) {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {id} more than once."
            )));
        }
        if !image.brokers.contains_key(id) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

/// Back to the original replicas: the adding ones leave the replicas and
/// the ISR; if no original replica is in the ISR, only an unclean election
/// can revert (the first live original replica becomes the ISR).
fn revert(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    state: &PartitionState,
    original: Vec<i32>,
    unclean: bool,
) -> Result<MetadataRecord, TopicError> {
    let mut isr = within(&state.isr, &original);
    let mut leader = state.leader;
    if isr.is_empty() {
        let live = original.iter().copied().find(|id| image.is_live(*id));
        match live {
            Some(id) if unclean => {
                isr = vec![id];
                leader = id;
            }
            _ => {
                return Err(invalid(format!(
                    "Unable to revert partition assignment for {topic}:{partition} because it would require an unclean leader election."
                )))
            }
        }
    } else if !isr.contains(&leader) {
        leader = first_live_in_sync(image, &original, &isr).unwrap_or(NO_LEADER);
    }
    Ok(settle(topic, partition, state, original, isr, leader))
}

/// The record that completes `topic`'s `partition` reassignment, if it is
/// in progress and may complete now: every adding replica is in the ISR,
/// some target replica stays in the ISR, and if the leader leaves, a live
/// target replica in the ISR takes over.
fn completion(image: &MetadataImage, topic: &str, partition: i32) -> Vec<MetadataRecord> {
    let Some(state) = image.partition(topic, partition) else {
        return Vec::new();
    };
    if !is_reassigning(state) || !state.adding.iter().all(|id| state.isr.contains(id)) {
        return Vec::new();
    }
    let target = minus(&state.replicas, &state.removing);
    let isr = within(&state.isr, &target);
    if target.is_empty() || isr.is_empty() {
        return Vec::new();
    }
    let leader = if target.contains(&state.leader) {
        state.leader
    } else {
        match first_live_in_sync(image, &target, &isr) {
            Some(leader) => leader,
            // Wait for a target replica in the ISR to be live.
            None if state.has_leader() => return Vec::new(),
            None => NO_LEADER,
        }
    };
    vec![settle(topic, partition, state, target, isr, leader)]
}

/// The records that complete every reassignment that may complete now; the
/// active controller proposes them each round of its duties (empty: none).
pub fn completions(image: &MetadataImage) -> Vec<MetadataRecord> {
    reassigning(image)
        .flat_map(|(topic, partition, _)| completion(image, topic, partition))
        .collect()
}

/// Every partition with a reassignment in progress.
fn reassigning(image: &MetadataImage) -> impl Iterator<Item = (&str, i32, &PartitionState)> {
    placement::partitions(image).filter(|(_, _, state)| is_reassigning(state))
}

/// Reassignments in progress: of the named partitions (those not
/// reassigning are left out, as Kafka does), or of every partition.
pub fn list(image: &MetadataImage, partitions: Option<&[(String, i32)]>) -> Vec<Ongoing> {
    match partitions {
        Some(wanted) => wanted
            .iter()
            .filter_map(|(topic, partition)| {
                Ongoing::of(topic, *partition, image.partition(topic, *partition)?)
            })
            .collect(),
        None => reassigning(image)
            .filter_map(|(topic, partition, state)| Ongoing::of(topic, partition, state))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::MetadataRecord as R;
    use crate::cluster::test_images::{self, isr_change};

    /// Brokers 1..=4 (all live unless `fenced`) and topic "t".
    fn image(fenced: &[i32], states: &[PartitionState]) -> MetadataImage {
        test_images::image(&[1, 2, 3, 4], fenced, states)
    }

    fn to(partition: i32, target: Option<Vec<i32>>) -> Reassignment {
        Reassignment {
            topic: "t".into(),
            partition,
            target,
        }
    }

    /// Runs `alter` and applies its records; returns the results.
    fn run(image: &mut MetadataImage, requests: Vec<Reassignment>) -> Vec<Result<(), i16>> {
        let (results, records) = alter(image, requests, true, |_, _| false);
        image.apply_batch(image.epoch + 1, &records);
        results
            .into_iter()
            .map(|r| r.map_err(|error| error.code))
            .collect()
    }

    fn state(image: &MetadataImage, partition: i32) -> PartitionState {
        image.partition("t", partition).unwrap().clone()
    }

    /// The partition's (replicas, leader, ISR), checking that no
    /// reassignment is left in progress.
    fn settled(image: &MetadataImage, partition: i32) -> (Vec<i32>, i32, Vec<i32>) {
        let state = state(image, partition);
        assert!(
            state.adding.is_empty() && state.removing.is_empty(),
            "{state:?}"
        );
        (state.replicas, state.leader, state.isr)
    }

    /// One partition on 1,2,3, all in sync, led by 1.
    fn on_one_two_three() -> MetadataImage {
        image(&[], &[PartitionState::new(vec![1, 2, 3], vec![1, 2, 3], 1)])
    }

    #[test]
    fn adding_a_replica_grows_the_set_and_completes_once_it_is_in_the_isr() {
        let mut image = on_one_two_three();
        assert_eq!(
            run(&mut image, vec![to(0, Some(vec![2, 3, 4]))]),
            vec![Ok(())]
        );
        let grown = state(&image, 0);
        assert_eq!(grown.replicas, vec![2, 3, 4, 1]);
        assert_eq!(
            (grown.adding.clone(), grown.removing.clone()),
            (vec![4], vec![1])
        );
        assert_eq!((grown.leader, grown.isr.clone()), (1, vec![1, 2, 3]));
        // Nothing completes while 4 is not in the ISR.
        assert!(completions(&image).is_empty());
        assert_eq!(list(&image, None).len(), 1);
        // Replication adds 4 to the ISR; the controller completes, and the
        // removed leader hands over to the first target replica in the ISR.
        image.apply(9, &isr_change(0, vec![1, 2, 3, 4], None));
        let records = completions(&image);
        assert_eq!(records.len(), 1);
        image.apply_batch(10, &records);
        assert_eq!(settled(&image, 0), (vec![2, 3, 4], 2, vec![2, 3, 4]));
        assert!(completions(&image).is_empty());
        assert!(list(&image, None).is_empty());
    }

    #[test]
    fn removing_a_replica_completes_at_once() {
        let mut image = on_one_two_three();
        assert_eq!(run(&mut image, vec![to(0, Some(vec![2, 3]))]), vec![Ok(())]);
        assert_eq!(settled(&image, 0), (vec![2, 3], 2, vec![2, 3]));
    }

    #[test]
    fn reordering_completes_at_once_and_keeps_the_leader() {
        let mut image = on_one_two_three();
        assert_eq!(
            run(&mut image, vec![to(0, Some(vec![3, 2, 1]))]),
            vec![Ok(())]
        );
        assert_eq!(settled(&image, 0), (vec![3, 2, 1], 1, vec![1, 2, 3]));
        // The same target again changes nothing.
        let (results, records) =
            alter(&image, vec![to(0, Some(vec![3, 2, 1]))], true, |_, _| false);
        assert_eq!(results, vec![Ok(())]);
        assert!(records.is_empty());
    }

    #[test]
    fn cancelling_goes_back_to_the_original_replicas() {
        let mut image = image(&[], &[PartitionState::new(vec![1, 2], vec![1, 2], 1)]);
        run(&mut image, vec![to(0, Some(vec![3, 4]))]);
        assert_eq!(state(&image, 0).replicas, vec![3, 4, 1, 2]);
        assert_eq!(run(&mut image, vec![to(0, None)]), vec![Ok(())]);
        let back = state(&image, 0);
        assert_eq!(
            (back.replicas.clone(), back.isr.clone(), back.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
        assert!(back.adding.is_empty() && back.removing.is_empty());
        // Nothing left to cancel.
        assert_eq!(
            run(&mut image, vec![to(0, None)]),
            vec![Err(error_codes::NO_REASSIGNMENT_IN_PROGRESS)]
        );
    }

    #[test]
    fn a_cancel_that_needs_an_unclean_election_is_refused_unless_allowed() {
        let mut image = image(&[], &[PartitionState::new(vec![1], vec![1], 1)]);
        run(&mut image, vec![to(0, Some(vec![2]))]);
        // Only the new replica is left in the ISR (say, 1 fell behind).
        image.apply(9, &isr_change(0, vec![2], Some(2)));
        let (results, _) = alter(&image, vec![to(0, None)], true, |_, _| false);
        assert_eq!(
            results[0].as_ref().unwrap_err().code,
            error_codes::INVALID_REPLICA_ASSIGNMENT
        );
        let (results, records) = alter(&image, vec![to(0, None)], true, |_, _| true);
        assert!(results[0].is_ok());
        image.apply_batch(10, &records);
        let back = state(&image, 0);
        assert_eq!(
            (back.replicas.clone(), back.isr.clone(), back.leader),
            (vec![1], vec![1], 1)
        );
    }

    #[test]
    fn bad_targets_get_kafkas_errors() {
        let mut image = image(&[], &[PartitionState::new(vec![1, 2], vec![1, 2], 1)]);
        let results = run(
            &mut image,
            vec![
                to(0, Some(vec![])),
                to(0, Some(vec![1, 1])),
                to(0, Some(vec![1, 9])),
                to(5, Some(vec![1])),
                Reassignment {
                    topic: "nope".into(),
                    partition: 0,
                    target: Some(vec![1]),
                },
            ],
        );
        assert_eq!(
            results,
            vec![
                Err(error_codes::INVALID_REPLICA_ASSIGNMENT),
                Err(error_codes::INVALID_REPLICA_ASSIGNMENT),
                Err(error_codes::INVALID_REPLICA_ASSIGNMENT),
                Err(error_codes::UNKNOWN_TOPIC_OR_PARTITION),
                Err(error_codes::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        let (results, _) = alter(&image, vec![to(0, Some(vec![1]))], false, |_, _| false);
        assert_eq!(
            results[0].as_ref().unwrap_err().code,
            error_codes::INVALID_REPLICATION_FACTOR
        );
        assert_eq!(state(&image, 0).replicas, vec![1, 2]);
    }

    #[test]
    fn a_removed_leader_waits_for_a_live_successor() {
        // 2 is fenced: removing leader 1 must not leave the partition leaderless.
        let mut image = image(&[2], &[PartitionState::new(vec![1, 2], vec![1, 2], 1)]);
        assert_eq!(run(&mut image, vec![to(0, Some(vec![2]))]), vec![Ok(())]);
        let waiting = state(&image, 0);
        assert_eq!(
            (waiting.replicas.clone(), waiting.removing.clone()),
            (vec![2, 1], vec![1])
        );
        assert_eq!(waiting.leader, 1);
        image.apply(9, &R::UnfenceBroker { node_id: 2 });
        image.apply_batch(10, &completions(&image));
        let done = state(&image, 0);
        assert_eq!(
            (done.replicas.clone(), done.leader, done.isr.clone()),
            (vec![2], 2, vec![2])
        );
    }

    #[test]
    fn listing_named_partitions_leaves_out_those_not_moving() {
        let mut image = image(
            &[],
            &[
                PartitionState::new(vec![1, 2], vec![1, 2], 1),
                PartitionState::new(vec![1, 2], vec![1, 2], 1),
            ],
        );
        run(&mut image, vec![to(1, Some(vec![1, 2, 3]))]);
        let wanted = [
            ("t".to_string(), 0),
            ("t".to_string(), 1),
            ("x".to_string(), 0),
        ];
        let ongoing = list(&image, Some(&wanted));
        assert_eq!(
            ongoing,
            vec![Ongoing {
                topic: "t".into(),
                partition: 1,
                replicas: vec![1, 2, 3],
                adding: vec![3],
                removing: vec![],
            }]
        );
    }
}
