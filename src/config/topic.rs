//! A topic's effective config: each topic key's valid override, else the
//! value inherited from its broker synonym, typed as [`TopicConfig`] or
//! listed as DescribeConfigs(TOPIC) reports it.
//!
//! Must not: validate overrides as errors (clients' values are checked on
//! the way in; an override that fails here is ignored, never a panic).

use std::collections::BTreeMap;

use super::definitions::{ConfigDef, DefaultValue, Scope, DEFINITIONS};
use super::validate::validate;
use super::values::{Inherited, Values};
use super::{
    BrokerConfig, CleanupPolicy, CompressionType, ConfigEntry, ConfigSource, TimestampType,
    TopicConfig,
};

struct ResolvedTopicKey {
    def: &'static ConfigDef,
    value: String,
    source: ConfigSource,
    synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

pub(super) struct ResolvedTopic(Vec<ResolvedTopicKey>);

/// Every topic key with its effective value: a valid override, else the
/// broker synonym's value in the topic key's units.
pub(super) fn resolve_topic(
    values: &Values,
    overrides: &BTreeMap<String, String>,
) -> ResolvedTopic {
    let keys = DEFINITIONS
        .iter()
        .filter(|def| def.scope == Scope::Topic)
        .map(|def| {
            let inherited = match def.synonym {
                Some(broker_key) => values.inherited(broker_key),
                None => fixed_default(def),
            };
            let valid_override = overrides
                .get(def.name)
                .and_then(|value| validate(def, value).ok());
            match valid_override {
                None => ResolvedTopicKey {
                    def,
                    value: inherited.value,
                    source: inherited.source,
                    synonyms: inherited.synonyms,
                },
                Some(value) => {
                    let mut synonyms = vec![(
                        def.name.to_string(),
                        Some(value.clone()),
                        ConfigSource::TopicConfig,
                    )];
                    synonyms.extend(inherited.synonyms);
                    ResolvedTopicKey {
                        def,
                        value,
                        source: ConfigSource::TopicConfig,
                        synonyms,
                    }
                }
            }
        })
        .collect();
    ResolvedTopic(keys)
}

/// A topic key without a broker synonym: its own default, as Kafka reports
/// it (source DEFAULT_CONFIG, no synonyms).
fn fixed_default(def: &ConfigDef) -> Inherited {
    let DefaultValue::Value(value) = def.default else {
        panic!(
            "topic config '{}' has neither a synonym nor a fixed default",
            def.name
        )
    };
    Inherited {
        value: value.to_string(),
        source: ConfigSource::DefaultConfig,
        synonyms: Vec::new(),
    }
}

impl ResolvedTopic {
    fn text(&self, name: &str) -> &str {
        let key = self.0.iter().find(|key| key.def.name == name);
        &key.unwrap_or_else(|| panic!("no topic config '{name}'"))
            .value
    }

    fn integer(&self, name: &str) -> i64 {
        let text = self.text(name);
        text.parse()
            .unwrap_or_else(|_| panic!("topic config '{name}' = {text:?} is not an integer"))
    }

    fn unsigned(&self, name: &str) -> u64 {
        u64::try_from(self.integer(name)).expect("validator allows no negative value here")
    }

    /// Kafka's -1 ("unlimited") as `None`.
    fn limit(&self, name: &str) -> Option<u64> {
        u64::try_from(self.integer(name)).ok()
    }

    pub(super) fn typed(&self, values: &Values) -> TopicConfig {
        let policy = self.text("cleanup.policy");
        TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: policy.split(',').any(|item| item == "delete"),
                compact: policy.split(',').any(|item| item == "compact"),
            },
            compression_type: match self.text("compression.type") {
                "uncompressed" => CompressionType::Uncompressed,
                "gzip" => CompressionType::Gzip,
                "snappy" => CompressionType::Snappy,
                "lz4" => CompressionType::Lz4,
                "zstd" => CompressionType::Zstd,
                _ => CompressionType::Producer,
            },
            delete_retention_ms: self.unsigned("delete.retention.ms"),
            file_delete_delay_ms: self.unsigned("file.delete.delay.ms"),
            flush_messages: self.unsigned("flush.messages"),
            flush_ms: self.unsigned("flush.ms"),
            index_interval_bytes: self.unsigned("index.interval.bytes"),
            max_compaction_lag_ms: self.unsigned("max.compaction.lag.ms"),
            max_message_bytes: self.unsigned("max.message.bytes"),
            message_timestamp_type: match self.text("message.timestamp.type") {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            message_timestamp_difference_max_ms: self
                .unsigned("message.timestamp.difference.max.ms"),
            message_timestamp_before_max_ms: self.unsigned("message.timestamp.before.max.ms"),
            message_timestamp_after_max_ms: self.unsigned("message.timestamp.after.max.ms"),
            min_cleanable_dirty_ratio: self
                .text("min.cleanable.dirty.ratio")
                .parse()
                .expect("validated ratio"),
            min_compaction_lag_ms: self.unsigned("min.compaction.lag.ms"),
            min_insync_replicas: i32::try_from(self.integer("min.insync.replicas"))
                .expect("validated as Int"),
            preallocate: self.text("preallocate") == "true",
            retention_bytes: self.limit("retention.bytes"),
            retention_ms: self.limit("retention.ms"),
            segment_bytes: self.unsigned("segment.bytes"),
            segment_index_bytes: self.unsigned("segment.index.bytes"),
            segment_jitter_ms: self.unsigned("segment.jitter.ms"),
            segment_ms: self.unsigned("segment.ms"),
            unclean_leader_election_enable: self.text("unclean.leader.election.enable") == "true",
            retention_check_interval_ms: values.unsigned("log.retention.check.interval.ms"),
            cleaner_backoff_ms: values.unsigned("log.cleaner.backoff.ms"),
            cleaner_io_bytes_per_second: values
                .text("log.cleaner.io.max.bytes.per.second")
                .parse()
                .unwrap_or(f64::MAX),
        }
    }
}

/// Every topic config of a topic with these overrides, sorted by name, as
/// DescribeConfigs(TOPIC) reports it: source `TopicConfig` if overridden,
/// `StaticBrokerConfig` if inherited from an explicitly set broker key, else
/// `DefaultConfig`; synonyms list the topic key, then the broker keys it
/// inherits from.
pub fn describe_topic(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let mut entries: Vec<ConfigEntry> = resolve_topic(&broker.values, overrides)
        .0
        .into_iter()
        .map(|key| ConfigEntry {
            name: key.def.name.to_string(),
            value: Some(key.value),
            source: key.source,
            read_only: false,
            is_default: key.source == ConfigSource::DefaultConfig,
            sensitive: false,
            config_type: key.def.config_type,
            documentation: key.def.documentation.to_string(),
            synonyms: key.synonyms,
        })
        .collect();
    entries.sort_by(|left, right| left.name.cmp(&right.name));
    entries
}
