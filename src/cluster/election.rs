//! ElectLeaders as Kafka's controller answers it, as a pure function from
//! the image to per-partition results and records.
//!
//! Preferred: the first replica becomes leader if it is live and in the ISR
//! (ELECTION_NOT_NEEDED when it already leads, PREFERRED_LEADER_NOT_AVAILABLE
//! when it cannot). Unclean: a partition with no leader gets one, from the
//! ISR if any member is live, else the first live replica
//! (ELECTION_NOT_NEEDED when it has a leader, ELIGIBLE_LEADERS_NOT_AVAILABLE
//! when no replica is live). With no partitions named, every partition is
//! tried and those that needed no election are left out of the results.
//!
//! Must not: do I/O or keep state; `controller.rs` proposes the records.

use std::collections::BTreeSet;

use super::commands::TopicError;
use super::metadata::{MetadataImage, PartitionState};
use super::placement;
use super::records::MetadataRecord;
use crate::protocol::error_codes;

/// One partition's election result.
pub type Elected = ((String, i32), Result<(), TopicError>);

fn elect_one(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    state: &PartitionState,
    unclean: bool,
) -> Result<MetadataRecord, TopicError> {
    let not_needed = || {
        TopicError::new(
            error_codes::ELECTION_NOT_NEEDED,
            "Leader election not needed for topic partition.",
        )
    };
    if unclean {
        if state.has_leader() {
            return Err(not_needed());
        }
        let (leader, isr) = placement::elect_leader(state, |id| image.is_live(id), true)
            .ok_or_else(|| {
                TopicError::new(
                    error_codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    format!("No live replica of {topic}-{partition} can lead."),
                )
            })?;
        return Ok(MetadataRecord::PartitionChange {
            topic: topic.to_string(),
            partition,
            leader: Some(leader),
            isr: (isr != state.isr).then_some(isr),
            replicas: None,
            adding: None,
            removing: None,
        });
    }
    let preferred = state.replicas.first().copied();
    if preferred == Some(state.leader) {
        return Err(not_needed());
    }
    match preferred {
        Some(id) if state.isr.contains(&id) && image.is_live(id) => {
            Ok(MetadataRecord::leader_change(topic, partition, id))
        }
        _ => Err(TopicError::new(
            error_codes::PREFERRED_LEADER_NOT_AVAILABLE,
            format!(
                "Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy"
            ),
        )),
    }
}

/// Elects leaders for `partitions` (`None`: all) and returns the results
/// and the records that make the elections.
pub fn elect_leaders(
    image: &MetadataImage,
    unclean: bool,
    partitions: Option<Vec<(String, i32)>>,
) -> (Vec<Elected>, Vec<MetadataRecord>) {
    let all = partitions.is_none();
    let named = partitions.unwrap_or_else(|| {
        image
            .topics
            .values()
            .flat_map(|topic| (0..topic.partitions).map(|index| (topic.name.clone(), index)))
            .collect()
    });
    let mut records = Vec::new();
    let mut done = BTreeSet::new();
    let mut results = Vec::new();
    for (topic, partition) in named {
        let outcome = match image.partition(&topic, partition) {
            None => Err(TopicError::new(
                error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                "The partition does not exist.",
            )),
            Some(_) if done.contains(&(topic.clone(), partition)) => Ok(()),
            Some(state) => elect_one(image, &topic, partition, state, unclean).map(|record| {
                records.push(record);
                done.insert((topic.clone(), partition));
            }),
        };
        let skip =
            all && matches!(&outcome, Err(error) if error.code == error_codes::ELECTION_NOT_NEEDED);
        if !skip {
            results.push(((topic, partition), outcome));
        }
    }
    (results, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::{MetadataRecord as R, NO_LEADER};
    use crate::cluster::test_images;

    /// Brokers 1..=3, live only if in `live`, and topic "t".
    fn image(live: &[i32], states: &[PartitionState]) -> MetadataImage {
        let fenced: Vec<i32> = (1..=3).filter(|id| !live.contains(id)).collect();
        test_images::image(&[1, 2, 3], &fenced, states)
    }

    fn codes(results: &[Elected]) -> Vec<(i32, i16)> {
        results
            .iter()
            .map(|((_, p), r)| (*p, r.as_ref().err().map_or(0, |e| e.code)))
            .collect()
    }

    fn all_of_t(count: i32) -> Option<Vec<(String, i32)>> {
        Some((0..count).map(|p| ("t".to_string(), p)).collect())
    }

    #[test]
    fn preferred_elections_answer_with_kafkas_errors() {
        let image = image(
            &[1, 2],
            &[
                PartitionState::new(vec![1, 2], vec![1, 2], 2), // elected
                PartitionState::new(vec![1, 2], vec![1, 2], 1), // already leads
                PartitionState::new(vec![3, 1], vec![3, 1], 1), // 3 not live
                PartitionState::new(vec![1, 2], vec![2], 2),    // 1 not in ISR
            ],
        );
        let mut named = all_of_t(4).unwrap();
        named.push(("t".into(), 9));
        let (results, records) = elect_leaders(&image, false, Some(named));
        assert_eq!(
            codes(&results),
            vec![
                (0, 0),
                (1, error_codes::ELECTION_NOT_NEEDED),
                (2, error_codes::PREFERRED_LEADER_NOT_AVAILABLE),
                (3, error_codes::PREFERRED_LEADER_NOT_AVAILABLE),
                (9, error_codes::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert_eq!(records, vec![R::leader_change("t", 0, 1)]);
        // All partitions: those that need no election are left out.
        let (results, _) = elect_leaders(&image, false, None);
        assert_eq!(
            codes(&results),
            vec![
                (0, 0),
                (2, error_codes::PREFERRED_LEADER_NOT_AVAILABLE),
                (3, error_codes::PREFERRED_LEADER_NOT_AVAILABLE)
            ]
        );
    }

    #[test]
    fn unclean_elections_lead_leaderless_partitions_from_any_live_replica() {
        let image = image(
            &[2],
            &[
                PartitionState::new(vec![1, 2], vec![1], NO_LEADER), // 2 leads uncleanly
                PartitionState::new(vec![2, 1], vec![2, 1], 2),      // has a leader
                PartitionState::new(vec![1, 3], vec![1], NO_LEADER), // nobody live
            ],
        );
        let (results, records) = elect_leaders(&image, true, all_of_t(3));
        assert_eq!(
            codes(&results),
            vec![
                (0, 0),
                (1, error_codes::ELECTION_NOT_NEEDED),
                (2, error_codes::ELIGIBLE_LEADERS_NOT_AVAILABLE),
            ]
        );
        let mut after = image.clone();
        after.apply_batch(9, &records);
        let p0 = after.partition("t", 0).unwrap();
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
    }
}
