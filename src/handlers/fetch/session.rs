//! Fetch's side of fetch sessions (KIP-227): the request's partitions as
//! the session cache (`crate::fetch_session`) takes them, and the
//! response as it judges it. No I/O; the cache is the shard's own.

use std::collections::HashMap;

use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use crate::fetch_session::{FetchParams, PartitionOutcome};
use crate::partition::TopicPartition;

/// The partitions a request names, in its order, and those it forgets.
pub(super) fn asked(
    request: &FetchRequest,
) -> (Vec<(TopicPartition, FetchParams)>, Vec<TopicPartition>) {
    let partitions = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                let params = FetchParams {
                    fetch_offset: partition.fetch_offset,
                    log_start_offset: partition.log_start_offset,
                    max_bytes: partition.partition_max_bytes,
                    current_leader_epoch: partition.current_leader_epoch,
                    last_fetched_epoch: partition.last_fetched_epoch,
                };
                (key(&topic.topic, partition.partition), params)
            })
        })
        .collect();
    let forgotten = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|&partition| key(&topic.topic, partition))
        })
        .collect();
    (partitions, forgotten)
}

fn key(topic: &TopicName, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.0.to_string(),
        partition,
    }
}

/// Topics in the order to answer them: runs of the same topic, as Kafka
/// groups a session's partitions.
pub(super) fn answer_order(
    partitions: &[(TopicPartition, FetchParams)],
) -> Vec<(String, Vec<i32>)> {
    let mut order: Vec<(String, Vec<i32>)> = Vec::new();
    for (key, _) in partitions {
        match order.last_mut() {
            Some((topic, indexes)) if *topic == key.topic => indexes.push(key.partition),
            _ => order.push((key.topic.clone(), vec![key.partition])),
        }
    }
    order
}

/// What the response says of each partition, in its order.
pub(super) fn outcomes(response: &FetchResponse) -> Vec<(TopicPartition, PartitionOutcome)> {
    response
        .responses
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                let outcome = PartitionOutcome {
                    error_code: partition.error_code,
                    high_watermark: partition.high_watermark,
                    last_stable_offset: partition.last_stable_offset,
                    log_start_offset: partition.log_start_offset,
                    has_records: partition.records.as_ref().is_some_and(|r| !r.is_empty()),
                    has_preferred_replica: partition.preferred_read_replica.0 >= 0,
                };
                (key(&topic.topic, partition.partition_index), outcome)
            })
        })
        .collect()
}

/// The response's partitions with what was asked of them, for a new
/// session.
pub(super) fn answered(
    asked: &[(TopicPartition, FetchParams)],
    outcomes: Vec<(TopicPartition, PartitionOutcome)>,
) -> Vec<(TopicPartition, FetchParams, PartitionOutcome)> {
    let params: HashMap<&TopicPartition, FetchParams> =
        asked.iter().map(|(k, p)| (k, *p)).collect();
    outcomes
        .into_iter()
        .filter_map(|(key, outcome)| {
            let params = *params.get(&key)?;
            Some((key, params, outcome))
        })
        .collect()
}

/// Keeps the partitions `keep` marks (in response order), and the topics
/// left with any.
pub(super) fn retain(response: &mut FetchResponse, keep: &[bool]) {
    let mut keep = keep.iter();
    for topic in &mut response.responses {
        topic
            .partitions
            .retain(|_| keep.next().copied().unwrap_or(true));
    }
    response
        .responses
        .retain(|topic| !topic.partitions.is_empty());
}
