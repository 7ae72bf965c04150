//! The node's controller: the one writer of topic metadata.
//!
//! Lives on shard 0 ([`crate::shard::CONTROLLER_SHARD`]); handlers on other
//! shards reach it with `mesh.submit_to`. Every change is validated against
//! the authoritative image, written to disk, and only then copied to every
//! shard, which opens or removes its partitions before the change is
//! answered. Changes are serialized by a one-permit semaphore, so two
//! concurrent creates of one name cannot both succeed.
//!
//! It must not touch partition data itself: each shard does that for the
//! partitions it owns when the new image reaches it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use glommio::sync::Semaphore;
use uuid::Uuid;

use super::metadata::{self, MetadataImage, TopicMetadata};
use crate::protocol::error_codes;
use crate::shard;

/// Kafka's bound on topic name length (so that `<topic>-<partition>` and
/// its suffixes fit a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// A bound on partitions per topic; beyond it the request is refused.
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// A failed change to one topic, as Kafka reports it.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// A topic named by name or, in newer request versions, by ID.
#[derive(Clone, Debug)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

pub struct Controller {
    data_dir: PathBuf,
    image: RefCell<Arc<MetadataImage>>,
    change_permit: Semaphore,
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

impl Controller {
    pub fn new(data_dir: PathBuf, image: Arc<MetadataImage>) -> Controller {
        Controller {
            data_dir,
            image: RefCell::new(image),
            change_permit: Semaphore::new(1),
        }
    }

    /// Brokers in the cluster; one until clustering arrives.
    fn broker_count(&self) -> i16 {
        1
    }

    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicMetadata, TopicError>> {
        let _permit = self.change_permit.acquire_permit(1).await;
        let mut next = (**self.image.borrow()).clone();
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let outcome = validate_new_topic(&topic, self.broker_count()).and_then(|()| {
                if next.topics.contains_key(&topic.name) {
                    return Err(TopicError::new(
                        error_codes::TOPIC_ALREADY_EXISTS,
                        format!("Topic '{}' already exists.", topic.name),
                    ));
                }
                Ok(TopicMetadata {
                    name: topic.name.clone(),
                    topic_id: Uuid::new_v4(),
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    configs: topic.configs,
                    internal: topic.name.starts_with("__"),
                })
            });
            if let Ok(created) = &outcome {
                next.topics.insert(created.name.clone(), created.clone());
            }
            results.push(outcome);
        }
        let changed = results.iter().any(Result::is_ok);
        if changed && !validate_only {
            if let Err(failed) = self.commit_results(next, &results).await {
                return failed;
            }
            for topic in results.iter().flatten() {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, "topic created");
            }
        }
        results
    }

    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Vec<Result<TopicMetadata, TopicError>> {
        let _permit = self.change_permit.acquire_permit(1).await;
        let mut next = (**self.image.borrow()).clone();
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let name = match &topic {
                TopicRef::Name(name) => Some(name.clone()),
                TopicRef::Id(id) => next.topic_by_id(*id).map(|t| t.name.clone()),
            };
            let removed = name.and_then(|name| next.topics.remove(&name));
            results.push(removed.ok_or_else(|| match topic {
                TopicRef::Name(name) => TopicError::new(
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic '{name}' does not exist."),
                ),
                TopicRef::Id(id) => TopicError::new(
                    error_codes::UNKNOWN_TOPIC_ID,
                    format!("Topic id {id} does not exist."),
                ),
            }));
        }
        if results.iter().any(Result::is_ok) {
            if let Err(failed) = self.commit_results(next, &results).await {
                return failed;
            }
            for topic in results.iter().flatten() {
                tracing::info!(topic = %topic.name, "topic deleted");
            }
        }
        results
    }

    /// Raises partition counts: `(topic, new total count)`.
    pub async fn create_partitions(
        &self,
        changes: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let _permit = self.change_permit.acquire_permit(1).await;
        let mut next = (**self.image.borrow()).clone();
        let mut results = Vec::with_capacity(changes.len());
        for (name, count) in changes {
            let outcome = match next.topics.get_mut(&name) {
                None => Err(TopicError::new(
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(topic) if count <= topic.partitions => Err(TopicError::new(
                    error_codes::INVALID_PARTITIONS,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {count}.",
                        topic.partitions
                    ),
                )),
                Some(_) if count > TOPIC_PARTITIONS_MAX => Err(TopicError::new(
                    error_codes::INVALID_PARTITIONS,
                    format!("Number of partitions must be at most {TOPIC_PARTITIONS_MAX}."),
                )),
                Some(topic) => {
                    topic.partitions = count;
                    Ok(())
                }
            };
            results.push(outcome);
        }
        if !validate_only && results.iter().any(Result::is_ok) {
            if let Err(failed) = self.commit_results(next, &results).await {
                return failed;
            }
        }
        results
    }

    /// Applies config changes to topics and to this broker. Each change is
    /// validated whole before any is applied; all valid changes of the
    /// request are persisted together. Applied on every shard before the
    /// answer (a lowered `retention.ms` acts on the next retention check).
    pub async fn alter_configs(
        &self,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let _permit = self.change_permit.acquire_permit(1).await;
        let mut next = (**self.image.borrow()).clone();
        let broker = shard::current().config.clone();
        let results: Vec<Result<(), TopicError>> = changes
            .into_iter()
            .map(|change| apply_config_change(&mut next, &broker, change))
            .collect();
        if !validate_only && results.iter().any(Result::is_ok) {
            if let Err(failed) = self.commit_results(next, &results).await {
                return failed;
            }
            tracing::info!("configs altered");
        }
        results
    }

    /// Reserves `count` producer IDs and returns the first. The reservation
    /// is on disk before it is answered, so IDs are never reused after a
    /// restart (a restart skips whatever a shard had not handed out yet).
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, String> {
        assert!(count > 0);
        let _permit = self.change_permit.acquire_permit(1).await;
        let mut next = (**self.image.borrow()).clone();
        let first = next.next_producer_id;
        next.next_producer_id = first
            .checked_add(count)
            .ok_or_else(|| "producer IDs exhausted".to_string())?;
        self.commit(next).await?;
        Ok(first)
    }

    /// Commits `next` for a request whose per-topic `results` are known; if
    /// the commit fails, returns those results with every success turned
    /// into KAFKA_STORAGE_ERROR (nothing of the request took effect).
    async fn commit_results<T: Clone>(
        &self,
        next: MetadataImage,
        results: &[Result<T, TopicError>],
    ) -> Result<(), Vec<Result<T, TopicError>>> {
        self.commit(next).await.map_err(|error| {
            let failure = TopicError::new(error_codes::KAFKA_STORAGE_ERROR, error);
            results
                .iter()
                .map(|r| r.clone().and(Err(failure.clone())))
                .collect()
        })
    }

    /// Persists `next`, then installs it on every shard. An error leaves the
    /// previous image in force everywhere.
    async fn commit(&self, mut next: MetadataImage) -> Result<(), String> {
        next.epoch = self.image.borrow().epoch + 1;
        let next = Arc::new(next);
        let data_dir = self.data_dir.clone();
        let to_store = next.clone();
        glommio::executor()
            .spawn_blocking(move || metadata::store(&data_dir, &to_store))
            .await
            .map_err(|error| error.to_string())?;
        *self.image.borrow_mut() = next.clone();
        broadcast(next).await
    }
}

/// What a config change applies to.
#[derive(Clone, Debug)]
pub enum ConfigTarget {
    Topic(String),
    Broker,
}

/// One operation of IncrementalAlterConfigs (AlterConfigs is `Replace`).
#[derive(Clone, Debug)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

#[derive(Clone, Debug)]
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

/// Installs `image` on every shard and waits until each has reconciled its
/// partitions.
pub async fn broadcast(image: Arc<MetadataImage>) -> Result<(), String> {
    let outcomes = shard::current()
        .mesh
        .submit_to_all(move || {
            let image = image.clone();
            async move {
                shard::current()
                    .install_image(image)
                    .await
                    .map_err(|error| format!("{}: {error}", shard::current().id()))
            }
        })
        .await
        .map_err(|error| error.to_string())?;
    outcomes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
