//! The active controller's commands as functions from the image to
//! records: validation with Kafka's errors, then the records that make the
//! change (a topic and its partitions placed on live brokers, removals,
//! config overrides, producer ID blocks, leader elections).
//!
//! Pure: no I/O, no clock, no quorum. `controller.rs` runs them on the
//! active controller under its change permit and proposes what they return.
//! Must not: apply records (that is `MetadataImage::apply`, on every node).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::metadata::{MetadataImage, TopicMetadata};
use super::placement;
use super::records::{ConfigResource, MetadataRecord};
use crate::protocol::error_codes;

/// Kafka's bound on topic name length (so that `<topic>-<partition>` and
/// its suffixes fit a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// A bound on partitions per topic; beyond it the request is refused.
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// A failed change to one topic, as Kafka reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(code: i16, message: impl Into<String>) -> TopicError {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

/// A topic to create, with defaults already resolved by the handler.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Replicas per partition given by the client, if it gave them.
    #[serde(default)]
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// A topic named by name or, in newer request versions, by ID.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// Where replica placement starts: Kafka picks both at random so that
/// leaders of small topics do not all land on the first broker.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub start: usize,
    pub shift: usize,
}

impl Placement {
    pub fn random() -> Placement {
        let value = Uuid::new_v4().as_u128();
        Placement {
            start: (value & 0xffff) as usize,
            shift: ((value >> 16) & 0xffff) as usize,
        }
    }
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why: String| Err(TopicError::new(error_codes::INVALID_TOPIC_EXCEPTION, why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_BYTES_MAX} characters, topic name: {name}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-' (found {bad:?})"
        ));
    }
    Ok(())
}

fn validate_new_topic(topic: &NewTopic, brokers: i16) -> Result<(), TopicError> {
    validate_topic_name(&topic.name)?;
    if topic.partitions < 1 || topic.partitions > TOPIC_PARTITIONS_MAX {
        return Err(TopicError::new(
            error_codes::INVALID_PARTITIONS,
            format!(
                "Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {}",
                topic.partitions
            ),
        ));
    }
    if topic.replication_factor < 1 {
        return Err(TopicError::new(
            error_codes::INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0.",
        ));
    }
    if topic.replication_factor > brokers {
        return Err(TopicError::new(
            error_codes::INVALID_REPLICATION_FACTOR,
            format!(
                "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only {brokers} broker(s) are registered.",
                topic.replication_factor, topic.replication_factor
            ),
        ));
    }
    for (name, value) in &topic.configs {
        crate::config::validate_topic_config(name, Some(value))
            .map_err(|error| TopicError::new(error_codes::INVALID_CONFIG, error.to_string()))?;
    }
    Ok(())
}

/// What a config change applies to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConfigTarget {
    Topic(String),
    Broker,
}

/// One operation of IncrementalAlterConfigs (AlterConfigs is `Replace`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigChange {
    pub target: ConfigTarget,
    /// AlterConfigs (legacy): the operations' keys replace every override
    /// of the resource; keys not named go back to their defaults.
    pub replace: bool,
    pub ops: Vec<ConfigOp>,
}

fn invalid_config(error: crate::config::ConfigError) -> TopicError {
    TopicError::new(
        error_codes::INVALID_CONFIG,
        format!("{}: {}", error.key, error.message),
    )
}

/// Validates `change` and applies it to `next`'s overrides; on error,
/// `next` is left as it was.
fn apply_config_change(
    next: &mut MetadataImage,
    broker: &crate::config::BrokerConfig,
    change: ConfigChange,
) -> Result<(), TopicError> {
    let effective = broker.with_dynamic(&next.broker_configs);
    let (overrides, entries) = match &change.target {
        ConfigTarget::Topic(name) => {
            let topic = next.topics.get(name).ok_or_else(|| {
                TopicError::new(
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic '{name}' does not exist."),
                )
            })?;
            let entries = crate::config::describe_topic(&effective, &topic.configs);
            (topic.configs.clone(), entries)
        }
        ConfigTarget::Broker => (next.broker_configs.clone(), effective.describe()),
    };
    let validate = |name: &str, value: Option<&str>| match &change.target {
        ConfigTarget::Topic(_) => {
            crate::config::validate_topic_config(name, value).map_err(invalid_config)
        }
        ConfigTarget::Broker => {
            crate::config::validate_dynamic_broker_config(name, value).map_err(invalid_config)
        }
    };
    let mut updated = if change.replace {
        BTreeMap::new()
    } else {
        overrides
    };
    for op in change.ops {
        match op {
            ConfigOp::Set(name, value) => {
                validate(&name, Some(&value))?;
                updated.insert(name, value);
            }
            ConfigOp::Delete(name) => {
                validate(&name, None)?;
                updated.remove(&name);
            }
            ConfigOp::Append(name, value) | ConfigOp::Subtract(name, value)
                if !is_list(&entries, &name) =>
            {
                validate(&name, None)?;
                let _ = value;
                return Err(TopicError::new(
                    error_codes::INVALID_CONFIG,
                    format!("Config value append/subtract is not allowed for config key {name}, since it is not a list"),
                ));
            }
            ConfigOp::Append(name, value) => {
                let mut items = list_value(&updated, &entries, &name);
                for item in split_list(&value) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                let joined = items.join(",");
                validate(&name, Some(&joined))?;
                updated.insert(name, joined);
            }
            ConfigOp::Subtract(name, value) => {
                let removed = split_list(&value);
                let items: Vec<String> = list_value(&updated, &entries, &name)
                    .into_iter()
                    .filter(|item| !removed.contains(item))
                    .collect();
                let joined = items.join(",");
                validate(&name, Some(&joined))?;
                updated.insert(name, joined);
            }
        }
    }
    match &change.target {
        ConfigTarget::Topic(name) => {
            effective
                .check_topic_overrides(&updated)
                .map_err(|message| TopicError::new(error_codes::INVALID_CONFIG, message))?;
            next.topics.get_mut(name).expect("checked above").configs = updated;
        }
        ConfigTarget::Broker => next.broker_configs = updated,
    }
    Ok(())
}

fn is_list(entries: &[crate::config::ConfigEntry], name: &str) -> bool {
    entries
        .iter()
        .any(|entry| entry.name == name && entry.config_type == crate::config::ConfigType::List)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// The current items of list config `name`: its override, else its value.
fn list_value(
    overrides: &BTreeMap<String, String>,
    entries: &[crate::config::ConfigEntry],
    name: &str,
) -> Vec<String> {
    let current = overrides.get(name).cloned().or_else(|| {
        entries
            .iter()
            .find(|entry| entry.name == name)
            .and_then(|entry| entry.value.clone())
    });
    current.as_deref().map(split_list).unwrap_or_default()
}

/// Sorted ids of the brokers that are registered and not fenced.
pub fn live_brokers(image: &MetadataImage) -> Vec<i32> {
    image.live_brokers().map(|broker| broker.node_id).collect()
}

fn invalid_assignment(message: String) -> TopicError {
    TopicError::new(error_codes::INVALID_REPLICA_ASSIGNMENT, message)
}

/// Checks replica lists a client gave (CreateTopics, CreatePartitions).
fn validate_assignments(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
    count: usize,
) -> Result<(), TopicError> {
    if assignments.len() != count {
        return Err(invalid_assignment(format!(
            "{} replica assignments given for {count} partitions",
            assignments.len()
        )));
    }
    for replicas in assignments {
        let mut unique = replicas.clone();
        unique.sort_unstable();
        unique.dedup();
        if replicas.is_empty() || unique.len() != replicas.len() {
            return Err(invalid_assignment(format!(
                "replica assignment {replicas:?} is empty or names a broker twice"
            )));
        }
        if let Some(unknown) = replicas.iter().find(|id| !image.brokers.contains_key(id)) {
            return Err(invalid_assignment(format!(
                "replica assignment {replicas:?} names broker {unknown}, which is not registered"
            )));
        }
    }
    Ok(())
}

/// Records for new partitions `range` of `topic` on the given replicas;
/// each leads on its first live replica.
fn partition_records(
    image: &MetadataImage,
    topic: &str,
    first: i32,
    assignments: Vec<Vec<i32>>,
) -> Vec<MetadataRecord> {
    assignments
        .into_iter()
        .enumerate()
        .map(|(index, replicas)| {
            let leader = replicas
                .iter()
                .copied()
                .find(|id| image.is_live(*id))
                .unwrap_or(crate::cluster::records::NO_LEADER);
            MetadataRecord::Partition {
                topic: topic.to_string(),
                partition: first + index as i32,
                isr: replicas.clone(),
                replicas,
                leader,
            }
        })
        .collect()
}

/// CreateTopics: an outcome per topic, and the records of the valid ones.
pub fn create_topics(
    image: &MetadataImage,
    broker: &crate::config::BrokerConfig,
    topics: Vec<NewTopic>,
    placement: Placement,
) -> (Vec<Result<TopicMetadata, TopicError>>, Vec<MetadataRecord>) {
    let live = live_brokers(image);
    let effective = broker.with_dynamic(&image.broker_configs);
    let mut scratch = image.clone();
    let mut records = Vec::new();
    let mut outcomes = Vec::with_capacity(topics.len());
    for topic in topics {
        let outcome = create_one(&scratch, &effective, &live, topic, placement).map(|made| {
            scratch.apply_batch(scratch.epoch, &made);
            records.extend(made);
        });
        outcomes.push(outcome);
    }
    let results = outcomes_with_topics(outcomes, &scratch, &records);
    (results, records)
}

fn records_names(records: &[MetadataRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match record {
            MetadataRecord::Topic { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Pairs each successful outcome with the topic it created, in order.
fn outcomes_with_topics(
    outcomes: Vec<Result<(), TopicError>>,
    scratch: &MetadataImage,
    records: &[MetadataRecord],
) -> Vec<Result<TopicMetadata, TopicError>> {
    let mut created = records_names(records).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.map(|()| {
                let name = created.next().expect("one topic record per success");
                scratch.topic(&name).expect("applied to scratch").clone()
            })
        })
        .collect()
}

fn create_one(
    image: &MetadataImage,
    broker: &crate::config::BrokerConfig,
    live: &[i32],
    topic: NewTopic,
    placement: Placement,
) -> Result<Vec<MetadataRecord>, TopicError> {
    let replication_factor = match &topic.assignments {
        Some(assignments) => assignments
            .first()
            .map_or(0, |replicas| replicas.len() as i16),
        None => topic.replication_factor,
    };
    let partitions = match &topic.assignments {
        Some(assignments) => assignments.len() as i32,
        None => topic.partitions,
    };
    let checked = NewTopic {
        partitions,
        replication_factor,
        ..topic.clone()
    };
    let brokers = i16::try_from(live.len()).unwrap_or(i16::MAX);
    match &topic.assignments {
        Some(assignments) => {
            validate_new_topic(&checked, i16::MAX)?;
            validate_assignments(image, assignments, assignments.len())?;
        }
        None => validate_new_topic(&checked, brokers)?,
    }
    broker
        .check_topic_overrides(&topic.configs)
        .map_err(|message| TopicError::new(error_codes::INVALID_CONFIG, message))?;
    if image.topics.contains_key(&topic.name) {
        return Err(TopicError::new(
            error_codes::TOPIC_ALREADY_EXISTS,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    let assignments = topic.assignments.unwrap_or_else(|| {
        placement::assign_replicas(
            live,
            0..partitions,
            replication_factor as usize,
            placement.start,
            placement.shift,
        )
    });
    let mut records = vec![MetadataRecord::Topic {
        name: topic.name.clone(),
        topic_id: Uuid::new_v4(),
        replication_factor,
        configs: topic.configs,
        internal: topic.name.starts_with("__"),
    }];
    records.extend(partition_records(image, &topic.name, 0, assignments));
    Ok(records)
}

/// DeleteTopics: an outcome per topic (the deleted topic), and the records.
pub fn delete_topics(
    image: &MetadataImage,
    topics: Vec<TopicRef>,
) -> (Vec<Result<TopicMetadata, TopicError>>, Vec<MetadataRecord>) {
    let mut records = Vec::new();
    let mut removed = std::collections::BTreeSet::new();
    let results = topics
        .into_iter()
        .map(|topic| {
            let found = match &topic {
                TopicRef::Name(name) => image.topic(name),
                TopicRef::Id(id) => image.topic_by_id(*id),
            }
            .filter(|found| !removed.contains(&found.name));
            match (found, topic) {
                (Some(found), _) => {
                    removed.insert(found.name.clone());
                    records.push(MetadataRecord::RemoveTopic {
                        name: found.name.clone(),
                    });
                    Ok(found.clone())
                }
                (None, TopicRef::Name(name)) => Err(TopicError::new(
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic '{name}' does not exist."),
                )),
                (None, TopicRef::Id(id)) => Err(TopicError::new(
                    error_codes::UNKNOWN_TOPIC_ID,
                    format!("Topic id {id} does not exist."),
                )),
            }
        })
        .collect();
    (results, records)
}

/// A CreatePartitions change: the new total count, and replicas for the new
/// partitions if the client gave them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewPartitions {
    pub topic: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// CreatePartitions: raises partition counts.
pub fn create_partitions(
    image: &MetadataImage,
    changes: Vec<NewPartitions>,
    placement: Placement,
) -> (Vec<Result<(), TopicError>>, Vec<MetadataRecord>) {
    let live = live_brokers(image);
    let mut records = Vec::new();
    let results = changes
        .into_iter()
        .map(|change| {
            let name = &change.topic;
            let count = change.count;
            let topic = image.topic(name).ok_or_else(|| {
                TopicError::new(
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The topic '{name}' does not exist."),
                )
            })?;
            if count <= topic.partitions {
                return Err(TopicError::new(
                    error_codes::INVALID_PARTITIONS,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {count}.",
                        topic.partitions
                    ),
                ));
            }
            if count > TOPIC_PARTITIONS_MAX {
                return Err(TopicError::new(
                    error_codes::INVALID_PARTITIONS,
                    format!("Number of partitions must be at most {TOPIC_PARTITIONS_MAX}."),
                ));
            }
            let added = (count - topic.partitions) as usize;
            let assignments = match change.assignments {
                Some(assignments) => {
                    validate_assignments(image, &assignments, added)?;
                    assignments
                }
                None => {
                    let factor = topic.replication_factor.max(1) as usize;
                    if factor > live.len() {
                        return Err(TopicError::new(
                            error_codes::INVALID_REPLICATION_FACTOR,
                            format!(
                                "Unable to replicate the partition {factor} time(s): only {} broker(s) are registered.",
                                live.len()
                            ),
                        ));
                    }
                    placement::assign_replicas(
                        &live,
                        topic.partitions..count,
                        factor,
                        placement.start,
                        placement.shift,
                    )
                }
            };
            records.extend(partition_records(image, name, topic.partitions, assignments));
            Ok(())
        })
        .collect();
    (results, records)
}

/// AlterConfigs and IncrementalAlterConfigs: each change validated whole;
/// the records replace the overrides of each changed resource.
pub fn alter_configs(
    image: &MetadataImage,
    broker: &crate::config::BrokerConfig,
    changes: Vec<ConfigChange>,
) -> (Vec<Result<(), TopicError>>, Vec<MetadataRecord>) {
    let mut next = image.clone();
    let results: Vec<Result<(), TopicError>> = changes
        .into_iter()
        .map(|change| apply_config_change(&mut next, broker, change))
        .collect();
    let mut records = Vec::new();
    for (name, topic) in &next.topics {
        if image
            .topic(name)
            .is_some_and(|old| old.configs != topic.configs)
        {
            records.push(MetadataRecord::Configs {
                resource: ConfigResource::Topic(name.clone()),
                configs: topic.configs.clone(),
            });
        }
    }
    if next.broker_configs != image.broker_configs {
        records.push(MetadataRecord::Configs {
            resource: ConfigResource::Broker,
            configs: next.broker_configs.clone(),
        });
    }
    (results, records)
}

/// A partition leader's request to change the ISR (Kafka's AlterPartition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub node_id: i32,
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// Checks an ISR change against the image as Kafka's controller does: only
/// the current leader, at the current leader and partition epochs, may
/// change the ISR; the ISR holds the leader and only replicas; a replica may
/// join only while it is live (KIP-841).
pub fn alter_partition(
    image: &MetadataImage,
    change: &AlterPartition,
) -> Result<MetadataRecord, i16> {
    let state = image
        .partition(&change.topic, change.partition)
        .ok_or(error_codes::UNKNOWN_TOPIC_OR_PARTITION)?;
    if state.leader != change.node_id {
        return Err(error_codes::NOT_LEADER_OR_FOLLOWER);
    }
    if change.leader_epoch != state.leader_epoch {
        return Err(error_codes::FENCED_LEADER_EPOCH);
    }
    if change.partition_epoch != state.partition_epoch {
        return Err(error_codes::INVALID_UPDATE_VERSION);
    }
    let joins_ok = change
        .isr
        .iter()
        .all(|id| state.isr.contains(id) || image.is_live(*id));
    let members_ok = change.isr.contains(&change.node_id)
        && change
            .isr
            .iter()
            .all(|id| state.replicas.contains(id) || state.adding.contains(id));
    if !members_ok {
        return Err(error_codes::INVALID_REQUEST);
    }
    if !joins_ok {
        return Err(error_codes::INELIGIBLE_REPLICA);
    }
    Ok(MetadataRecord::PartitionChange {
        topic: change.topic.clone(),
        partition: change.partition,
        leader: None,
        isr: Some(change.isr.clone()),
        replicas: None,
        adding: None,
        removing: None,
    })
}

/// Reserves `count` producer IDs: the first, and the record.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    count: i64,
) -> Result<(i64, MetadataRecord), String> {
    assert!(count > 0);
    let first = image.next_producer_id;
    let next = first
        .checked_add(count)
        .ok_or_else(|| "producer IDs exhausted".to_string())?;
    Ok((first, MetadataRecord::ProducerIds { next }))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::PartitionState;
    use crate::cluster::test_images::{image, isr_change};

    #[test]
    fn only_the_current_leader_at_the_current_epochs_changes_the_isr() {
        // Broker 3 is fenced; partition 0 is led by 1 with ISR [1, 2].
        let image = image(
            &[1, 2, 3],
            &[3],
            &[PartitionState::new(vec![1, 2, 3], vec![1, 2], 1)],
        );
        let change = |node_id, leader_epoch, partition_epoch, isr: &[i32]| AlterPartition {
            node_id,
            topic: "t".into(),
            partition: 0,
            leader_epoch,
            partition_epoch,
            isr: isr.to_vec(),
        };
        assert_eq!(
            alter_partition(&image, &change(1, 0, 0, &[1])),
            Ok(isr_change(0, vec![1], None))
        );
        assert_eq!(
            alter_partition(&image, &change(2, 0, 0, &[2])),
            Err(error_codes::NOT_LEADER_OR_FOLLOWER)
        );
        assert_eq!(
            alter_partition(&image, &change(1, 1, 0, &[1])),
            Err(error_codes::FENCED_LEADER_EPOCH)
        );
        assert_eq!(
            alter_partition(&image, &change(1, 0, 7, &[1])),
            Err(error_codes::INVALID_UPDATE_VERSION)
        );
        // A fenced broker may not join; the leader must stay; only replicas.
        assert_eq!(
            alter_partition(&image, &change(1, 0, 0, &[1, 2, 3])),
            Err(error_codes::INELIGIBLE_REPLICA)
        );
        assert_eq!(
            alter_partition(&image, &change(1, 0, 0, &[2])),
            Err(error_codes::INVALID_REQUEST)
        );
        assert_eq!(
            alter_partition(&image, &change(1, 0, 0, &[1, 9])),
            Err(error_codes::INVALID_REQUEST)
        );
        let mut unknown = change(1, 0, 0, &[1]);
        unknown.partition = 5;
        assert_eq!(
            alter_partition(&image, &unknown),
            Err(error_codes::UNKNOWN_TOPIC_OR_PARTITION)
        );
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        let check = |name: &str, ok: bool| {
            assert_eq!(validate_topic_name(name).is_ok(), ok, "{name:?}");
        };
        check("orders", true);
        check("Orders.v2_eu-west", true);
        check("", false);
        check(".", false);
        check("..", false);
        check("bad/name", false);
        check("spaced name", false);
        check(&"a".repeat(249), true);
        check(&"a".repeat(250), false);
    }
}
