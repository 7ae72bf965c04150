//! Unit tests of the config module: flags, files, `--set`, errors naming
//! the key, the table's invariants, DescribeConfigs (topic configs in tests/topic.rs),
//! and the example files in `config/`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

mod cluster;
mod topic;

use super::definitions::{definition, DefaultValue, Scope, DEFINITIONS, LADDERS};
use super::validate::validate;
use super::*;

/// What a `check` expects: these (key, effective value) pairs, or an
/// error naming this key.
#[derive(Clone, Copy)]
enum Expect {
    Values(&'static [(&'static str, &'static str)]),
    ErrorKey(&'static str),
}
use Expect::{ErrorKey, Values};

fn load(args: &[&str], toml: Option<&str>) -> Result<BrokerConfig, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut argv = vec!["sluice".to_string()];
    if let Some(toml) = toml {
        file.write_all(toml.as_bytes()).unwrap();
        argv.extend(["--config".to_string(), file.path().display().to_string()]);
    }
    argv.extend(args.iter().map(|arg| arg.to_string()));
    BrokerConfig::from_args(argv)
}

#[track_caller]
fn check(args: &[&str], toml: Option<&str>, expect: Expect) {
    let result = load(args, toml);
    match (expect, result) {
        (Values(pairs), Ok(config)) => {
            for (key, value) in pairs {
                assert_eq!(config.value(key), Some(*value), "key {key}");
            }
        }
        (ErrorKey(key), Err(error)) => {
            assert_eq!(error.kind, ConfigErrorKind::Invalid, "{error}");
            assert_eq!(error.key, key, "{error}");
            assert!(error.to_string().contains(&format!("'{key}'")), "{error}");
        }
        (Values(_), Err(error)) => panic!("args {args:?} toml {toml:?}: {error}"),
        (ErrorKey(key), Ok(_)) => panic!("args {args:?} toml {toml:?}: no error on {key}"),
    }
}

#[test]
fn defaults() {
    let config = BrokerConfig::default();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(config.node_id, 1);
    assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(
        (config.advertise_host.as_str(), config.advertise_port),
        ("127.0.0.1", 9092)
    );
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.shards, cores);
    assert_eq!(config.io_memory_bytes, 1 << 20);
    assert_eq!(config.ring_depth, 128);
    assert_eq!(config.cache_bytes, 64 << 20);
    assert_eq!(config.socket_request_max_bytes, 104_857_600);
    assert_eq!(config.num_partitions, 1);
    assert_eq!(config.default_replication_factor, 1);
    assert!(config.auto_create_topics_enable);
    assert_eq!(config.offsets_topic_num_partitions, 50);
    assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
    assert_eq!(config.log_level, "info");
    assert_eq!(config.config_file, None);
    let log = &config.log;
    assert_eq!(log.retention_ms, Some(604_800_000));
    assert_eq!(log.retention_bytes, None);
    assert_eq!(log.segment_bytes, 1_073_741_824);
    assert_eq!(log.segment_ms, 604_800_000);
    assert_eq!(log.max_message_bytes, 1_048_588);
    assert_eq!(
        log.cleanup_policy,
        CleanupPolicy {
            delete: true,
            compact: false
        }
    );
    assert_eq!(log.delete_retention_ms, 86_400_000);
    assert_eq!(log.flush_messages, 1, "Sluice syncs before it acknowledges");
    assert_eq!(log.flush_ms, u64::try_from(i64::MAX).unwrap());
    assert_eq!(log.index_interval_bytes, 4096);
    assert_eq!(log.message_timestamp_type, TimestampType::CreateTime);
    assert_eq!(log.min_insync_replicas, 1);
    assert_eq!(log.compression_type, CompressionType::Producer);
    assert_eq!(log.retention_check_interval_ms, 300_000);
    assert_eq!(log.min_cleanable_dirty_ratio, 0.5);
    assert_eq!(config.topic_config(&BTreeMap::new()), config.log);
}

/// Kafka's topic-config defaults, and the one place Sluice differs.
#[test]
fn topic_defaults_are_kafkas() {
    let kafka = [
        ("cleanup.policy", "delete"),
        ("compression.gzip.level", "-1"),
        ("compression.lz4.level", "9"),
        ("compression.type", "producer"),
        ("compression.zstd.level", "3"),
        ("delete.retention.ms", "86400000"),
        ("file.delete.delay.ms", "60000"),
        ("flush.messages", "1"), // Kafka: 9223372036854775807; see FLUSH_DOC.
        ("flush.ms", "9223372036854775807"),
        ("follower.replication.throttled.replicas", ""),
        ("index.interval.bytes", "4096"),
        ("leader.replication.throttled.replicas", ""),
        ("local.retention.bytes", "-2"),
        ("local.retention.ms", "-2"),
        ("max.compaction.lag.ms", "9223372036854775807"),
        ("max.message.bytes", "1048588"),
        ("message.downconversion.enable", "true"),
        ("message.format.version", "3.0-IV1"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("message.timestamp.before.max.ms", "9223372036854775807"),
        ("message.timestamp.difference.max.ms", "9223372036854775807"),
        ("message.timestamp.type", "CreateTime"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("min.compaction.lag.ms", "0"),
        ("min.insync.replicas", "1"),
        ("preallocate", "false"),
        ("remote.log.copy.disable", "false"),
        ("remote.log.delete.on.disable", "false"),
        ("remote.storage.enable", "false"),
        ("retention.bytes", "-1"),
        ("retention.ms", "604800000"),
        ("segment.bytes", "1073741824"),
        ("segment.index.bytes", "10485760"),
        ("segment.jitter.ms", "0"),
        ("segment.ms", "604800000"),
        ("unclean.leader.election.enable", "false"),
    ];
    let entries = describe_topic(&BrokerConfig::default(), &BTreeMap::new());
    let described: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| (entry.name.as_str(), entry.value.as_deref().unwrap()))
        .collect();
    assert_eq!(described, kafka);
    for entry in &entries {
        assert_eq!(entry.source, ConfigSource::DefaultConfig, "{}", entry.name);
        assert!(entry.is_default && !entry.read_only && !entry.sensitive);
    }
}

#[test]
fn table_invariants() {
    let config = BrokerConfig::default();
    let mut seen = std::collections::BTreeSet::new();
    for def in DEFINITIONS {
        assert!(
            seen.insert((def.scope == Scope::Topic, def.name)),
            "{} twice",
            def.name
        );
        assert!(!def.documentation.is_empty(), "{}", def.name);
        // Every default passes its own validator, unchanged.
        if let Some(value) = config
            .value(def.name)
            .filter(|_| def.scope == Scope::Broker)
        {
            assert_eq!(validate(def, value).as_deref(), Ok(value), "{}", def.name);
        }
        if def.scope == Scope::Topic && def.synonym.is_none() {
            let DefaultValue::Value(value) = def.default else {
                panic!(
                    "{}: a topic key without a synonym has a fixed default",
                    def.name
                )
            };
            assert_eq!(validate(def, value).as_deref(), Ok(value), "{}", def.name);
        }
        if let Some(synonym) = def.synonym {
            assert!(definition(Scope::Broker, synonym).is_some(), "{synonym}");
            assert_eq!(def.scope, Scope::Topic);
        }
        // In TOML a key that is a dotted prefix of another could not be
        // written beside it (`a.b = 1` and `a.b.c = 2` collide). Kafka's
        // max.connections and max.connections.per.ip are the one exception:
        // quoted keys ("max.connections" = 100) hold both.
        for other in DEFINITIONS
            .iter()
            .filter(|other| other.name != "max.connections.per.ip")
        {
            let prefix = format!("{}.", def.name);
            assert!(
                !other.name.starts_with(&prefix),
                "{} / {}",
                def.name,
                other.name
            );
        }
    }
    for rungs in LADDERS {
        for (name, _) in rungs.iter() {
            assert!(definition(Scope::Broker, name).is_some(), "{name}");
        }
        let (lowest, _) = rungs.last().unwrap();
        assert!(
            config.value(lowest).is_some(),
            "the last rung has a default"
        );
    }
}

/// (flags, file, expected): one line per case.
#[rustfmt::skip]
const CASES: &[(&[&str], Option<&str>, Expect)] = &[
    (&[], None, Values(&[("listen", "127.0.0.1:9092"), ("node.id", "1")])),
    (&[], None, Values(&[("advertise", "127.0.0.1:9092"), ("data.dir", "./data")])),
    // Flattening: dotted, quoted, table header, inline table.
    (&[], Some("log.retention.ms = 5"), Values(&[("log.retention.ms", "5")])),
    (&[], Some("\"log.retention.ms\" = 5"), Values(&[("log.retention.ms", "5")])),
    (&[], Some("[log]\nretention.ms = 5"), Values(&[("log.retention.ms", "5")])),
    (&[], Some("log = { retention = { ms = 5 } }"), Values(&[("log.retention.ms", "5")])),
    // Value types: strings for numbers and booleans, arrays for lists, floats for ratios.
    (&[], Some("log.retention.ms = \"5\""), Values(&[("log.retention.ms", "5")])),
    (&[], Some("auto.create.topics.enable = \"FALSE\""), Values(&[("auto.create.topics.enable", "false")])),
    (&[], Some("log.cleanup.policy = [\"compact\", \"delete\"]"), Values(&[("log.cleanup.policy", "compact,delete")])),
    (&[], Some("log.cleaner.min.cleanable.ratio = 0.25"), Values(&[("log.cleaner.min.cleanable.ratio", "0.25")])),
    (&[], Some("log.cleaner.min.cleanable.ratio = 1.0"), Values(&[("log.cleaner.min.cleanable.ratio", "1")])),
    (&[], Some("listen = \"localhost:0\""), Values(&[("listen", "127.0.0.1:0"), ("advertise", "127.0.0.1:0")])),
    // Precedence: file < --set < dedicated flag.
    (&["--shards", "3"], Some("shards = 2"), Values(&[("shards", "3")])),
    (&["--set", "shards=4"], Some("shards = 2"), Values(&[("shards", "4")])),
    (&["--set", "shards=4", "--shards=5"], None, Values(&[("shards", "5")])),
    (&["--node-id", "7", "--data-dir", "/tmp/x"], Some("node.id = 1"), Values(&[("node.id", "7"), ("data.dir", "/tmp/x")])),
    (&["--listen", "0.0.0.0:9093", "--advertise", "broker1:9093"], None, Values(&[("listen", "0.0.0.0:9093"), ("advertise", "broker1:9093")])),
    (&["--advertise", "[::1]:9092"], None, Values(&[("advertise", "[::1]:9092")])),
    (&["--set", "log.retention.ms=-1"], None, Values(&[("log.retention.ms", "-1")])),
    // Errors name the key.
    (&[], Some("log.retention.ms = \"abc\""), ErrorKey("log.retention.ms")),
    (&[], Some("log.retention.ms = -2"), ErrorKey("log.retention.ms")),
    (&[], Some("num.partitions = 0"), ErrorKey("num.partitions")),
    (&[], Some("num.partitions = 1.0"), ErrorKey("num.partitions")),
    (&[], Some("segment.bytes = 4096"), ErrorKey("segment.bytes")),
    (&[], Some("log.segment.bytes = 4294967296"), ErrorKey("log.segment.bytes")),
    (&[], Some("num.network.threads = 3"), ErrorKey("num.network.threads")),
    (&[], Some("[log.retention]\nmss = 5"), ErrorKey("log.retention.mss")),
    (&[], Some("log.retention.ms = 1\n\"log.retention.ms\" = 2"), ErrorKey("log.retention.ms")),
    (&[], Some("log.retention.ms = 1979-05-27T07:32:00Z"), ErrorKey("log.retention.ms")),
    (&[], Some("log.cleanup.policy = \"delete,archive\""), ErrorKey("log.cleanup.policy")),
    (&[], Some("log.level = \"degub\""), ErrorKey("log.level")),
    (&[], Some("compression.type = \"brotli\""), ErrorKey("compression.type")),
    (&[], Some("io.memory.bytes = 4096"), ErrorKey("io.memory.bytes")),
    (&[], Some("group.min.session.timeout.ms = 7000\ngroup.max.session.timeout.ms = 6000"), ErrorKey("group.min.session.timeout.ms")),
    (&["--set", "group.consumer.heartbeat.interval.ms=45000"], None, ErrorKey("group.consumer.heartbeat.interval.ms")),
    (&["--shards", "x"], None, ErrorKey("shards")),
    (&["--shards", "0"], None, ErrorKey("shards")),
    (&["--node-id", "-1"], None, ErrorKey("node.id")),
    (&["--listen", "example.com:9092"], None, ErrorKey("listen")),
    (&["--listen", "0.0.0.0:9092"], None, ErrorKey("advertise")),
    (&["--advertise", "broker1"], None, ErrorKey("advertise")),
    (&["--set", "bogus.key=1"], None, ErrorKey("bogus.key")),
    (&["--set", "shards"], None, ErrorKey("--set")),
    (&["--bogus"], None, ErrorKey("--bogus")),
    (&["--shards"], None, ErrorKey("--shards")),
    (&["extra"], None, ErrorKey("extra")),
    (&["--config", "/nonexistent/sluice.toml"], None, ErrorKey("--config")),
];

#[test]
fn files_and_flags() {
    for (args, toml, expect) in CASES {
        check(args, *toml, *expect);
    }
}

#[test]
fn error_messages() {
    let error = BrokerConfig::from_toml_str("log.retention.ms = \"abc\"").unwrap_err();
    assert_eq!(
        error.to_string(),
        "config error: key 'log.retention.ms' in <toml>: \
         expected -1 or a non-negative integer, got \"abc\""
    );
    let error = load(&["--shards", "x"], None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "config error: key 'shards' in flag --shards: \
         expected a positive integer up to 1024, got \"x\""
    );
    let error = BrokerConfig::from_toml_str("retention.ms = 5").unwrap_err();
    assert!(error.message.contains("'log.retention.ms'"), "{error}");
    let error = BrokerConfig::from_toml_str("log.retention.mss = 5").unwrap_err();
    assert!(
        error.message.contains("did you mean 'log.retention.ms'"),
        "{error}"
    );
    let error = load(&["--shard", "2"], None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("config error: flag '--shard'"),
        "{error}"
    );
    assert!(error.message.contains("--shards"), "{error}");
    assert_eq!(error.exit_code(), 2);
    let error = BrokerConfig::from_toml_str("log.retention.ms = ").unwrap_err();
    assert_eq!(error.key, "");
    assert!(
        error.to_string().starts_with("config error: <toml>: "),
        "{error}"
    );
}

#[test]
fn help_and_version() {
    let help = load(&["--help"], None).unwrap_err();
    assert_eq!((help.kind, help.exit_code()), (ConfigErrorKind::Help, 0));
    for flag in [
        "--config",
        "-c",
        "--data-dir",
        "--listen",
        "--advertise",
        "--shards",
    ] {
        assert!(help.to_string().contains(flag), "{flag} in {help}");
    }
    assert!(help.to_string().contains("--node-id"));
    let version = load(&["--version"], None).unwrap_err();
    assert_eq!(version.kind, ConfigErrorKind::Version);
    assert!(version.to_string().contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn short_config_flag_and_origin() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"num.partitions = 3\n").unwrap();
    let path = file.path().display().to_string();
    let config = BrokerConfig::from_args(["sluice", "-c", &path].map(String::from)).unwrap();
    assert_eq!(config.num_partitions, 3);
    assert_eq!(config.config_file.as_deref(), Some(file.path()));
    assert_eq!(config.origin("num.partitions"), Some(path.as_str()));
    assert_eq!(
        config.source("num.partitions"),
        ConfigSource::StaticBrokerConfig
    );
    assert_eq!(config.source("num.io.threads"), ConfigSource::Unknown);
    assert_eq!(config.origin("shards"), None);
}

fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn entry<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
    entries.iter().find(|entry| entry.name == name).unwrap()
}

#[test]
fn dynamic_broker_configs_layer_over_static_ones() {
    let broker = load(&["--set", "log.retention.ms=1000"], None).unwrap();
    let dynamic: BTreeMap<String, String> = [
        ("log.retention.ms", "2000"),
        ("log.segment.bytes", "1048576"),
        ("node.id", "9"),     // read-only: ignored
        ("no.such.key", "1"), // unknown: ignored
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let next = broker.with_dynamic(&dynamic);
    assert_eq!(
        next.source("log.retention.ms"),
        ConfigSource::DynamicBrokerConfig
    );
    assert_eq!(next.value("log.retention.ms"), Some("2000"));
    assert_eq!(next.node_id, broker.node_id);
    let topic = next.topic_config(&BTreeMap::new());
    assert_eq!(topic.retention_ms, Some(2000));
    assert_eq!(topic.segment_bytes, 1 << 20);
    let entries = describe_topic(&next, &BTreeMap::new());
    let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!(retention.source, ConfigSource::DynamicBrokerConfig);
    assert!(validate_dynamic_broker_config("log.retention.ms", Some("5")).is_ok());
    assert_eq!(
        validate_dynamic_broker_config("node.id", Some("5"))
            .unwrap_err()
            .key,
        "node.id"
    );
    assert_eq!(
        validate_dynamic_broker_config("log.retention.ms", Some("x"))
            .unwrap_err()
            .key,
        "log.retention.ms"
    );
}

fn synonyms(entry: &ConfigEntry) -> Vec<(&str, Option<&str>, ConfigSource)> {
    entry
        .synonyms
        .iter()
        .map(|(name, value, source)| (name.as_str(), value.as_deref(), *source))
        .collect()
}

#[test]
fn describe_topic_sources() {
    use ConfigSource::{DefaultConfig, StaticBrokerConfig, TopicConfig};
    let broker = BrokerConfig::from_toml_str("log.retention.hours = 24").unwrap();
    let entries = describe_topic(&broker, &overrides(&[("segment.bytes", "1048576")]));
    assert_eq!(entries.len(), topic_config_names().len());
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, topic_config_names());

    let segment = entry(&entries, "segment.bytes");
    assert_eq!(
        (segment.value.as_deref(), segment.source),
        (Some("1048576"), TopicConfig)
    );
    assert!(!segment.is_default);
    assert_eq!(
        synonyms(segment),
        [
            ("segment.bytes", Some("1048576"), TopicConfig),
            ("log.segment.bytes", Some("1073741824"), DefaultConfig),
        ]
    );
    let retention = entry(&entries, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert_eq!(
        (retention.source, retention.is_default),
        (StaticBrokerConfig, false)
    );
    assert_eq!(
        synonyms(retention),
        [
            ("log.retention.hours", Some("24"), StaticBrokerConfig),
            ("log.retention.hours", Some("168"), DefaultConfig),
        ]
    );
    let policy = entry(&entries, "cleanup.policy");
    assert_eq!((policy.source, policy.is_default), (DefaultConfig, true));
    assert_eq!(policy.config_type, ConfigType::List);
    assert!(entries
        .iter()
        .all(|entry| !entry.read_only && !entry.sensitive));
    assert!(entries.iter().all(|entry| !entry.documentation.is_empty()));
}

#[test]
fn describe_broker_sources() {
    use ConfigSource::{DefaultConfig, StaticBrokerConfig};
    let args = ["sluice", "--node-id", "3", "--set", "log.retention.ms=1000"];
    let broker = BrokerConfig::from_args(args.map(String::from)).unwrap();
    let entries = broker.describe();
    assert_eq!(entries.len(), broker_config_names().len());
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, broker_config_names());

    let node = entry(&entries, "node.id");
    assert_eq!(
        (node.value.as_deref(), node.source),
        (Some("3"), StaticBrokerConfig)
    );
    assert!(node.read_only && !node.is_default);
    assert_eq!(node.config_type, ConfigType::Int);
    assert_eq!(
        synonyms(node),
        [
            ("node.id", Some("3"), StaticBrokerConfig),
            ("node.id", Some("1"), DefaultConfig)
        ]
    );
    let retention = entry(&entries, "log.retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1000"));
    assert!(!retention.read_only, "dynamic in Kafka");
    assert_eq!(
        synonyms(retention),
        [
            ("log.retention.ms", Some("1000"), StaticBrokerConfig),
            ("log.retention.hours", Some("168"), DefaultConfig),
        ]
    );
    let minutes = entry(&entries, "log.retention.minutes");
    assert_eq!(
        (minutes.value.as_deref(), minutes.source),
        (None, DefaultConfig)
    );
    let shards = entry(&entries, "shards");
    assert_eq!(shards.value, Some(broker.shards.to_string()));
    assert!(shards.is_default);
    let topic = describe_topic(&broker, &BTreeMap::new());
    assert_eq!(entry(&topic, "retention.ms").value.as_deref(), Some("1000"));
}

fn example(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn example_single_node_is_the_defaults() {
    let (path, _) = example("single-node.toml");
    let args = [
        "sluice".to_string(),
        "-c".to_string(),
        path.display().to_string(),
    ];
    let config = BrokerConfig::from_args(args).unwrap();
    let defaults = BrokerConfig::default();
    assert_eq!(config.describe().len(), defaults.describe().len());
    for (written, default) in config.describe().iter().zip(defaults.describe()) {
        assert_eq!(written.value, default.value, "{}", written.name);
    }
    // Written out: every key with a fixed default.
    let computed = [
        "shards",
        "advertise",
        "log.retention.ms",
        "log.retention.minutes",
    ];
    let computed = [&computed[..], &["log.roll.ms", "controller.listen"]].concat();
    for name in broker_config_names() {
        let explicit = config.source(name) == ConfigSource::StaticBrokerConfig;
        assert_eq!(
            explicit,
            !computed.contains(&name),
            "{name} in single-node.toml"
        );
    }
}

#[test]
fn example_benchmark_loads() {
    let (path, _) = example("benchmark.toml");
    let args = [
        "sluice".to_string(),
        "-c".to_string(),
        path.display().to_string(),
    ];
    let config = BrokerConfig::from_args(args).unwrap();
    assert_eq!(
        config.log.flush_messages, 1,
        "benchmarks measure the durable path"
    );
}

#[test]
fn readme_examples_load() {
    let (_, text) = example("README.md");
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty());
    for block in blocks {
        BrokerConfig::from_toml_str(block).unwrap_or_else(|error| panic!("{error}\n{block}"));
    }
}
