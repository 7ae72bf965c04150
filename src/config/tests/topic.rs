//! Unit tests of topic-level configuration: the retention ladder, the
//! validation of topic configs, every Kafka topic key accepted with Kafka's
//! values, keys without a broker synonym, and the typed topic config.

use super::*;

#[test]
fn retention_ladder() {
    let cases: &[(&str, Option<u64>)] = &[
        ("", Some(604_800_000)),
        ("log.retention.hours = 24", Some(86_400_000)),
        (
            "log.retention.minutes = 5\nlog.retention.hours = 24",
            Some(300_000),
        ),
        ("log.retention.ms = 7\nlog.retention.minutes = 5", Some(7)),
        ("log.retention.hours = -1", None),
        ("log.retention.ms = -1\nlog.retention.hours = 1", None),
    ];
    for (toml, expected) in cases {
        let config = BrokerConfig::from_toml_str(toml).unwrap();
        assert_eq!(config.log.retention_ms, *expected, "{toml}");
    }
    let config = BrokerConfig::from_toml_str("log.roll.hours = 1").unwrap();
    assert_eq!(config.log.segment_ms, 3_600_000);
}

#[test]
fn topic_config_validation() {
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("retention.ms", Some("-1"), true),
        ("retention.ms", Some("86400000"), true),
        ("retention.ms", Some("abc"), false),
        ("retention.ms", Some("-2"), false),
        ("retention.ms", None, true),
        ("retention.bytes", Some("-1"), true),
        ("segment.bytes", Some("1048576"), true),
        ("segment.bytes", Some("3000000000"), false),
        ("segment.bytes", Some("10"), false),
        ("cleanup.policy", Some("compact"), true),
        ("cleanup.policy", Some("compact, delete"), true),
        ("cleanup.policy", Some("delete,archive"), false),
        ("cleanup.policy", Some(""), false),
        ("compression.type", Some("zstd"), true),
        ("compression.type", Some("ZSTD"), false),
        ("message.timestamp.type", Some("LogAppendTime"), true),
        ("message.timestamp.type", Some("AppendTime"), false),
        ("min.cleanable.dirty.ratio", Some("0.1"), true),
        ("min.cleanable.dirty.ratio", Some("1.5"), false),
        ("min.insync.replicas", Some("0"), false),
        ("unclean.leader.election.enable", Some("True"), true),
        ("unclean.leader.election.enable", Some("yes"), false),
        ("flush.messages", Some("0"), false),
        ("bogus", Some("1"), false),
        ("bogus", None, false),
        ("log.retention.ms", Some("5"), false),
    ];
    for (name, value, valid) in cases {
        match validate_topic_config(name, *value) {
            Ok(()) => assert!(valid, "{name}={value:?} accepted"),
            Err(error) => {
                assert!(!valid, "{name}={value:?}: {error}");
                assert_eq!(error.key, *name);
                assert!(error.to_string().contains(&format!("'{name}'")), "{error}");
            }
        }
    }
    for name in topic_config_names() {
        assert!(is_topic_config(name));
    }
    assert!(!is_topic_config("log.retention.ms"));
}

/// Every topic config name of Kafka's `TopicConfig` / `LogConfig` (3.x and
/// 4.x), each with a value Kafka accepts and, where Kafka refuses one, a
/// value it refuses.
#[rustfmt::skip]
const KAFKA_TOPIC_CONFIGS: &[(&str, &str, Option<&str>)] = &[
    ("cleanup.policy", "compact,delete", Some("archive")),
    ("compression.gzip.level", "9", Some("0")),
    ("compression.lz4.level", "17", Some("18")),
    ("compression.type", "lz4", Some("brotli")),
    ("compression.zstd.level", "-131072", Some("23")),
    ("delete.retention.ms", "0", Some("-1")),
    ("file.delete.delay.ms", "0", Some("-1")),
    ("flush.messages", "1", Some("0")),
    ("flush.ms", "0", Some("-1")),
    ("follower.replication.throttled.replicas", "0:1,1:2", Some("0-1")),
    ("index.interval.bytes", "0", Some("-1")),
    ("leader.replication.throttled.replicas", "*", Some("*,0:1")),
    ("local.retention.bytes", "-2", Some("-3")),
    ("local.retention.ms", "86400000", Some("-3")),
    ("max.compaction.lag.ms", "1", Some("0")),
    ("max.message.bytes", "0", Some("-1")),
    ("message.downconversion.enable", "false", Some("no")),
    ("message.format.version", "3.0-IV1", Some("3.x")),
    ("message.timestamp.after.max.ms", "0", Some("-1")),
    ("message.timestamp.before.max.ms", "0", Some("-1")),
    ("message.timestamp.difference.max.ms", "0", Some("-1")),
    ("message.timestamp.type", "LogAppendTime", Some("Now")),
    ("min.cleanable.dirty.ratio", "1", Some("-0.1")),
    ("min.compaction.lag.ms", "0", Some("-1")),
    ("min.insync.replicas", "2", Some("0")),
    ("preallocate", "true", Some("1")),
    ("remote.log.copy.disable", "true", Some("yes")),
    ("remote.log.delete.on.disable", "true", Some("yes")),
    // true: Kafka refuses it while tiered storage is off, as it is in Sluice.
    ("remote.storage.enable", "false", Some("true")),
    ("retention.bytes", "-1", Some("x")),
    ("retention.ms", "-1", Some("-2")),
    ("segment.bytes", "1073741824", Some("2147483648")),
    ("segment.index.bytes", "4", Some("3")),
    ("segment.jitter.ms", "0", Some("-1")),
    ("segment.ms", "1", Some("0")),
    ("unclean.leader.election.enable", "true", Some("maybe")),
];

#[test]
fn every_kafka_topic_config_is_accepted() {
    let names: Vec<&str> = KAFKA_TOPIC_CONFIGS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    assert_eq!(
        topic_config_names(),
        names,
        "Sluice's topic keys are Kafka's"
    );
    for (name, valid, invalid) in KAFKA_TOPIC_CONFIGS {
        assert_eq!(
            validate_topic_config(name, Some(valid)),
            Ok(()),
            "{name}={valid}"
        );
        assert_eq!(validate_topic_config(name, None), Ok(()), "{name} deleted");
        if let Some(invalid) = invalid {
            let error = validate_topic_config(name, Some(invalid)).unwrap_err();
            assert_eq!(error.key, *name, "{name}={invalid}");
        }
    }
    for unknown in [
        "remote.storage.enabled",
        "message.format",
        "log.local.retention.ms",
        "",
    ] {
        assert!(
            validate_topic_config(unknown, Some("1")).is_err(),
            "{unknown}"
        );
    }
}

#[test]
#[rustfmt::skip]
fn kafka_topic_config_values() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        // Kafka's gzip level: 1 to 9, or -1 for the codec's default.
        ("compression.gzip.level", "-1", Some("-1")),
        ("compression.gzip.level", "1", Some("1")),
        ("compression.gzip.level", "10", None),
        ("compression.gzip.level", "-2", None),
        ("compression.lz4.level", "0", None),
        ("compression.zstd.level", "22", Some("22")),
        ("compression.zstd.level", "-131073", None),
        // Throttled replicas: * alone, or PARTITION:BROKER items (empty ones too).
        ("leader.replication.throttled.replicas", "", Some("")),
        ("leader.replication.throttled.replicas", " * ", Some("*")),
        ("leader.replication.throttled.replicas", "0:101, 1:102", Some("0:101,1:102")),
        ("leader.replication.throttled.replicas", "0:1,,", Some("0:1,,")),
        ("leader.replication.throttled.replicas", "0:", None),
        ("leader.replication.throttled.replicas", "a:1", None),
        ("follower.replication.throttled.replicas", "0:1:2", None),
        // message.format.version: any Kafka release, patch or IV step.
        ("message.format.version", "0.10.2", Some("0.10.2")),
        ("message.format.version", "0.10.2.1", Some("0.10.2.1")),
        ("message.format.version", "2.8", Some("2.8")),
        ("message.format.version", "2.8.1", Some("2.8.1")),
        ("message.format.version", "3.0-IV1", Some("3.0-IV1")),
        ("message.format.version", "0.10", None),
        ("message.format.version", "2.9", None),
        ("message.format.version", "3.0-IV9", None),
        ("message.format.version", "", None),
        ("remote.storage.enable", "FALSE", Some("false")),
        ("remote.storage.enable", "TRUE", None),
        ("local.retention.ms", "-1", Some("-1")),
    ];
    for (name, value, expected) in cases {
        let def = definition(Scope::Topic, name).unwrap();
        assert_eq!(
            validate(def, value).ok().as_deref(),
            *expected,
            "{name}={value:?}"
        );
    }
    let error = validate_topic_config("remote.storage.enable", Some("true")).unwrap_err();
    assert!(error.message.contains("tiered storage"), "{error}");
}

/// Topic keys without a broker synonym (as in Kafka) report their fixed
/// default with no synonyms, and an override with source TopicConfig.
#[test]
fn topic_keys_without_synonym() {
    let broker = BrokerConfig::default();
    let find = |entries: &[ConfigEntry], name: &str| {
        entries
            .iter()
            .find(|entry| entry.name == name)
            .unwrap()
            .clone()
    };
    let entries = describe_topic(&broker, &BTreeMap::new());
    let entry = find(&entries, "leader.replication.throttled.replicas");
    assert_eq!(entry.value.as_deref(), Some(""));
    assert_eq!(entry.source, ConfigSource::DefaultConfig);
    assert!(entry.synonyms.is_empty());
    assert_eq!(entry.config_type, ConfigType::List);
    let set = overrides(&[
        ("leader.replication.throttled.replicas", "0:1"),
        ("local.retention.ms", "1000"),
    ]);
    let entries = describe_topic(&broker, &set);
    let entry = find(&entries, "leader.replication.throttled.replicas");
    assert_eq!(entry.value.as_deref(), Some("0:1"));
    assert_eq!(entry.source, ConfigSource::TopicConfig);
    assert_eq!(entry.synonyms.len(), 1);
    let entry = find(&entries, "local.retention.ms");
    assert_eq!(entry.source, ConfigSource::TopicConfig);
    let names: Vec<&str> = entry
        .synonyms
        .iter()
        .map(|(name, _, _)| name.as_str())
        .collect();
    assert_eq!(names, ["local.retention.ms", "log.local.retention.ms"]);
    // The ignored keys leave the typed config as it was.
    assert_eq!(
        broker.topic_config(&set),
        broker.topic_config(&BTreeMap::new())
    );
}

#[test]
fn typed_topic_config() {
    let broker = BrokerConfig::from_toml_str("log.segment.bytes = 1048576").unwrap();
    let topic = broker.topic_config(&overrides(&[
        ("retention.ms", "-1"),
        ("retention.bytes", "1000000"),
        ("cleanup.policy", "compact"),
        ("compression.type", "zstd"),
        ("message.timestamp.type", "LogAppendTime"),
        ("segment.ms", "not a number"), // invalid: ignored, never a panic
        ("unknown.key", "1"),           // unknown: ignored
    ]));
    assert_eq!(topic.retention_ms, None);
    assert_eq!(topic.retention_bytes, Some(1_000_000));
    assert_eq!(
        topic.cleanup_policy,
        CleanupPolicy {
            delete: false,
            compact: true
        }
    );
    assert_eq!(topic.compression_type, CompressionType::Zstd);
    assert_eq!(topic.message_timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(topic.segment_ms, 604_800_000);
    assert_eq!(topic.segment_bytes, 1_048_576, "inherited from the broker");
    let both = broker.topic_config(&overrides(&[("cleanup.policy", "delete,compact")]));
    assert_eq!(
        both.cleanup_policy,
        CleanupPolicy {
            delete: true,
            compact: true
        }
    );
}
