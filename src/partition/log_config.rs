//! From a topic's effective configuration (Kafka's names, `config.rs`) to
//! the storage engine's per-log settings. The one place the two meet, so
//! storage stays free of the broker's config types.

use crate::config::{self, TopicConfig};
use crate::storage::{CleanupPolicy, LogConfig, TimestampType};

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Kafka's Long.MAX_VALUE ("no bound") as `None`.
fn bound_ms(value: u64) -> Option<i64> {
    (value < i64::MAX as u64).then(|| millis(value))
}

/// `message.timestamp.before.max.ms` or `.after.max.ms`; left at
/// Long.MAX_VALUE, the deprecated `message.timestamp.difference.max.ms`
/// stands in for it, as in Kafka 3.6 to 3.9 (KIP-937).
fn timestamp_bound_ms(bound: u64, difference_max_ms: u64) -> Option<i64> {
    bound_ms(bound).or_else(|| bound_ms(difference_max_ms))
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
        timestamp_before_max_ms: timestamp_bound_ms(
            topic.message_timestamp_before_max_ms,
            topic.message_timestamp_difference_max_ms,
        ),
        timestamp_after_max_ms: timestamp_bound_ms(
            topic.message_timestamp_after_max_ms,
            topic.message_timestamp_difference_max_ms,
        ),
        min_cleanable_dirty_ratio: topic.min_cleanable_dirty_ratio,
        // Kafka's default is Long.MAX_VALUE: no lag bound.
        max_compaction_lag_ms: bound_ms(topic.max_compaction_lag_ms),
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

    #[test]
    fn timestamp_bounds_fall_back_to_the_deprecated_difference() {
        let broker = BrokerConfig::default();
        let bounds = |pairs: &[(&str, &str)]| {
            let overrides = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let log = log_config(&broker.topic_config(&overrides));
            (log.timestamp_before_max_ms, log.timestamp_after_max_ms)
        };
        const MAX: &str = "9223372036854775807";
        assert_eq!(bounds(&[]), (None, Some(3_600_000)), "Kafka 4.0's defaults");
        let difference = ("message.timestamp.difference.max.ms", "1000");
        assert_eq!(bounds(&[difference]), (Some(1000), Some(3_600_000)));
        let after_unbounded = ("message.timestamp.after.max.ms", MAX);
        assert_eq!(
            bounds(&[difference, after_unbounded]),
            (Some(1000), Some(1000))
        );
        assert_eq!(bounds(&[after_unbounded]), (None, None));
        let before = ("message.timestamp.before.max.ms", "5");
        assert_eq!(bounds(&[difference, before]), (Some(5), Some(3_600_000)));
    }
}
