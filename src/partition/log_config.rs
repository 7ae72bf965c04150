//! From a topic's effective configuration (Kafka's names, `config.rs`) to
//! the storage engine's per-log settings. The one place the two meet, so
//! storage stays free of the broker's config types.

use crate::config::{self, TopicConfig};
use crate::storage::{CleanupPolicy, LogConfig, TimestampType};

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn log_config(topic: &TopicConfig) -> LogConfig {
    let cleanup_policy = match (topic.cleanup_policy.compact, topic.cleanup_policy.delete) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    };
    LogConfig {
        segment_bytes: topic.segment_bytes,
        segment_ms: millis(topic.segment_ms),
        index_interval_bytes: topic.index_interval_bytes,
        max_message_bytes: usize::try_from(topic.max_message_bytes).unwrap_or(usize::MAX),
        retention_ms: topic.retention_ms.map(millis),
        retention_bytes: topic.retention_bytes,
        cleanup_policy,
        delete_retention_ms: millis(topic.delete_retention_ms),
        flush_messages: topic.flush_messages,
        // Kafka's default is Long.MAX_VALUE: no time-based flush.
        flush_ms: (topic.flush_ms < i64::MAX as u64).then(|| millis(topic.flush_ms)),
        timestamp_type: match topic.message_timestamp_type {
            config::TimestampType::CreateTime => TimestampType::CreateTime,
            config::TimestampType::LogAppendTime => TimestampType::LogAppendTime,
        },
        min_cleanable_dirty_ratio: topic.min_cleanable_dirty_ratio,
        // Kafka's default is Long.MAX_VALUE: no lag bound.
        max_compaction_lag_ms: (topic.max_compaction_lag_ms < i64::MAX as u64)
            .then(|| millis(topic.max_compaction_lag_ms)),
        min_compaction_lag_ms: millis(topic.min_compaction_lag_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use std::collections::BTreeMap;

    #[test]
    fn topic_overrides_reach_the_log() {
        let broker = BrokerConfig::default();
        let overrides: BTreeMap<String, String> = [
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "-1"),
            ("segment.bytes", "1048576"),
            ("message.timestamp.type", "LogAppendTime"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let log = log_config(&broker.topic_config(&overrides));
        assert_eq!(log.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.segment_bytes, 1 << 20);
        assert_eq!(log.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(
            log.flush_messages, 1,
            "acks=all is answered after fsync by default"
        );
        assert_eq!(log.flush_ms, None);
    }
}
