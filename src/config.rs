//! Broker configuration: command-line flags, the TOML file, Kafka's config
//! names, validation, and the catalogue that DescribeConfigs reports.
//!
//! Owns: turning `argv` and `config/sluice.toml` into a typed, validated
//! [`BrokerConfig`] once at start-up; resolving a topic's effective
//! [`TopicConfig`] from its overrides and the broker defaults; validating
//! topic configs that clients send (CreateTopics, AlterConfigs).
//!
//! Runs: on the main thread before the shards start. Afterwards a
//! `BrokerConfig` is plain immutable data (no `Rc`, no locks): each shard may
//! hold its own clone. It is a node view.
//!
//! Must not: do I/O other than reading the one config file, or know any wire
//! format. The DescribeConfigs and CreateTopics handlers translate
//! [`ConfigEntry`] and [`ConfigError`] into Kafka's messages.
//!
//! One table, `DEFINITIONS`, lists every key: scope, type, default,
//! validator, whether it is read-only, the broker key a topic key inherits
//! from, and the documentation. Validation, defaults and DescribeConfigs all
//! read that table, so they cannot disagree.
//!
//! Decisions, with the reason next to each:
//! - Precedence is built-in default < file < `--set KEY=VALUE` < dedicated
//!   flag (`--shards` ...), so a script can override one key of a shared file.
//! - An unknown key, a key set twice in one file, or a bad value stops
//!   start-up with a message naming the key: a typo in a retention setting must
//!   not silently keep data forever (or delete it early).
//! - `flush.messages` / `log.flush.interval.messages` default to 1, not
//!   Kafka's `i64::MAX`: Sluice promises that data acknowledged to an
//!   `acks=all` producer survives a crash, and on a single node only an fsync
//!   before the answer keeps that promise. Storage syncs once per batch (group
//!   commit), not once per record.
//! - `read_only` on broker keys mirrors Kafka's set of dynamically updatable
//!   broker configs, so that DescribeConfigs looks like Kafka's and a future
//!   AlterConfigs(BROKER) handler can use it as its allow-list. Topic keys are
//!   never read-only.
//! - Kafka's unit ladders are kept: `log.retention.ms` wins over
//!   `log.retention.minutes`, which wins over `log.retention.hours`; likewise
//!   `log.roll.ms` over `log.roll.hours`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The file read when no `--config` flag is given, relative to the working
/// directory. Its absence means built-in defaults, not an error.
pub const DEFAULT_CONFIG_FILE: &str = "config/sluice.toml";

/// Bounds on Sluice's own runtime keys. `shards` above the core count is
/// allowed (tests run 4 shards on 2 cores); the bound only catches typos.
pub const SHARDS_MAX: i64 = 1024;
/// io_uring refuses rings deeper than this.
pub const RING_DEPTH_MAX: i64 = 32_768;
/// glommio refuses a smaller registered buffer pool per executor.
pub const IO_MEMORY_BYTES_MIN: i64 = sluice_shards::IO_MEMORY_BYTES_MIN as i64;

const INT_MAX: i64 = i32::MAX as i64;
const SHORT_MAX: i64 = i16::MAX as i64;
const LONG_MAX: i64 = i64::MAX;
const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;

const _: () = assert!(IO_MEMORY_BYTES_MIN % 4096 == 0);
const _: () = assert!((RING_DEPTH_MAX as u64).is_power_of_two() && RING_DEPTH_MAX <= INT_MAX);

// ---------------------------------------------------------------------------
// Public types.

/// Where a config value came from, as Kafka's DescribeConfigs reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum ConfigSource {
    Unknown = 0,
    TopicConfig = 1,
    DynamicBrokerConfig = 2,
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

/// A config's type, as Kafka's DescribeConfigs (v3+) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum ConfigType {
    Unknown = 0,
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// One config as DescribeConfigs reports it. `synonyms` lists
/// `(name, value, source)` in precedence order, starting with the config
/// itself when it is set at that level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub is_default: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: String,
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// What went wrong, or that the user asked for `--help` / `--version`
/// (clap's convention: those are "errors" that print to stdout and exit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    Invalid,
    Help,
    Version,
}

/// A config that stops start-up, or a topic config a client may not set.
/// `key` names the config key (or the flag, for an unknown flag; empty for a
/// file that is not valid TOML). `origin` says where it was set: a file path,
/// `flag --shards`, `command line`, or empty for topic configs from clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub origin: String,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    fn invalid(key: &str, origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            message: message.into(),
            origin: origin.to_string(),
            kind: ConfigErrorKind::Invalid,
        }
    }

    /// 0 for `--help` and `--version`, 2 (usage error, as clap) otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ConfigErrorKind::Invalid => 2,
            ConfigErrorKind::Help | ConfigErrorKind::Version => 0,
        }
    }

    /// For the binary's edge: print help/version to stdout, an error to
    /// stderr, and exit with [`ConfigError::exit_code`].
    pub fn exit(&self) -> ! {
        match self.kind {
            ConfigErrorKind::Invalid => eprintln!("{self}"),
            ConfigErrorKind::Help | ConfigErrorKind::Version => print!("{self}"),
        }
        std::process::exit(self.exit_code())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != ConfigErrorKind::Invalid {
            return f.write_str(&self.message);
        }
        f.write_str("config error: ")?;
        let what = if self.key.starts_with('-') {
            "flag"
        } else {
            "key"
        };
        match (self.key.is_empty(), self.origin.is_empty()) {
            (true, true) => {}
            (true, false) => write!(f, "{}: ", self.origin)?,
            (false, true) => write!(f, "{what} '{}': ", self.key)?,
            (false, false) => write!(f, "{what} '{}' in {}: ", self.key, self.origin)?,
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// `cleanup.policy`: Kafka allows `delete`, `compact`, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// `compression.type` of a topic. `Producer` keeps whatever the producer
/// sent; the others ask the broker to store batches in that codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A topic's effective configuration: overrides over broker defaults over
/// built-in defaults, already validated and in Kafka's units (milliseconds,
/// bytes). Kafka's -1 for "unlimited" is `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub compression_type: CompressionType,
    pub delete_retention_ms: u64,
    pub file_delete_delay_ms: u64,
    /// Messages appended before an fsync is forced; 1 (Sluice's default)
    /// means every batch is synced before it is acknowledged.
    pub flush_messages: u64,
    pub flush_ms: u64,
    pub index_interval_bytes: u64,
    pub max_compaction_lag_ms: u64,
    pub max_message_bytes: u64,
    pub message_timestamp_type: TimestampType,
    pub message_timestamp_difference_max_ms: u64,
    pub message_timestamp_before_max_ms: u64,
    pub message_timestamp_after_max_ms: u64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: u64,
    pub min_insync_replicas: u32,
    pub preallocate: bool,
    /// `None`: no size limit (`retention.bytes = -1`).
    pub retention_bytes: Option<u64>,
    /// `None`: keep forever (`retention.ms = -1`).
    pub retention_ms: Option<u64>,
    pub segment_bytes: u64,
    pub segment_index_bytes: u64,
    pub segment_jitter_ms: u64,
    pub segment_ms: u64,
    pub unclean_leader_election_enable: bool,
    /// Broker-wide (`log.retention.check.interval.ms`), not settable per
    /// topic; carried here so the retention task finds all it needs in one
    /// place.
    pub retention_check_interval_ms: u64,
}

/// The broker-wide defaults that topics inherit: a topic with no overrides.
pub type TopicDefaults = TopicConfig;

/// The node's configuration, validated. Built once by
/// [`BrokerConfig::from_args`]; read-only afterwards.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// May have port 0 (tests): then main must bind first and write the
    /// bound port into `advertise_port` when `advertise` was not set.
    pub listen: SocketAddr,
    /// The metrics endpoint, if on (key: metrics).
    pub metrics: Option<SocketAddr>,
    /// What Metadata tells clients; defaults to the listen address.
    pub advertise_host: String,
    pub advertise_port: u16,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// glommio per-executor `io_memory` (registered buffers). Small by
    /// default: it is locked memory and `ulimit -l` is 8 MiB on our machines.
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    /// Per-shard read cache.
    pub cache_bytes: usize,
    /// Bound of each cross-shard channel in the mesh.
    pub mesh_channel_capacity: usize,
    pub socket_request_max_bytes: usize,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub offsets_retention_minutes: u64,
    pub offsets_retention_check_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    pub group_max_size: u32,
    /// A tracing filter: a level (`info`) or directives (`sluice=debug,warn`).
    pub log_level: String,
    /// The broker-wide defaults topics inherit (`log.*` keys and friends).
    pub log: TopicDefaults,
    /// The file that was read, if any.
    pub config_file: Option<PathBuf>,
    values: Values,
}

// ---------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Broker,
    Topic,
}

#[derive(Clone, Copy, Debug)]
enum DefaultValue {
    Value(&'static str),
    /// No value (Kafka's `null`): a lower rung of a unit ladder applies.
    Null,
    /// `std::thread::available_parallelism()`.
    Cores,
    /// The effective value of `listen`.
    ListenAddress,
    /// Topic keys: the value inherited from the broker synonym.
    Inherited,
}

#[derive(Clone, Copy, Debug)]
enum Validator {
    /// Inclusive; also clipped to the range of the config's type.
    Range {
        min: i64,
        max: i64,
    },
    Ratio,
    Bool,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
    ListenAddress,
    /// A listen address, or empty for "off".
    OptionalListenAddress,
    HostPort,
    Path,
    LogLevel,
}

#[derive(Debug)]
struct ConfigDef {
    name: &'static str,
    scope: Scope,
    config_type: ConfigType,
    default: DefaultValue,
    validator: Validator,
    read_only: bool,
    /// Topic keys: the broker key they inherit from (Kafka's synonym).
    synonym: Option<&'static str>,
    documentation: &'static str,
}

const fn at_least(min: i64) -> Validator {
    Validator::Range { min, max: LONG_MAX }
}

const fn range(min: i64, max: i64) -> Validator {
    Validator::Range { min, max }
}

const fn broker(
    name: &'static str,
    config_type: ConfigType,
    default: DefaultValue,
    validator: Validator,
    read_only: bool,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        scope: Scope::Broker,
        config_type,
        default,
        validator,
        read_only,
        synonym: None,
        documentation,
    }
}

const fn topic(
    name: &'static str,
    synonym: &'static str,
    config_type: ConfigType,
    validator: Validator,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        scope: Scope::Topic,
        config_type,
        default: DefaultValue::Inherited,
        validator,
        read_only: false,
        synonym: Some(synonym),
        documentation,
    }
}

use ConfigType as T;
use DefaultValue::{Cores, ListenAddress, Null, Value as V};

const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const FLUSH_DOC: &str = "Messages appended to a partition before an fsync is forced. Sluice's \
    default is 1 (Kafka's is 9223372036854775807): every produced batch is fsynced before it is \
    acknowledged, which is what makes acknowledged acks=all data survive a crash on a single \
    node. Storage syncs once per batch, not per record. Larger values answer before the sync and \
    can lose acknowledged data in a crash.";

/// Every config Sluice knows, broker keys then topic keys. DescribeConfigs
/// reports them sorted by name.
#[rustfmt::skip]
static DEFINITIONS: &[ConfigDef] = &[
    // Sluice's own keys (the flags) and runtime bounds.
    broker("node.id", T::Int, V("1"), range(0, INT_MAX), true,
        "The id of this node in the cluster, as Metadata reports it. Flag: --node-id."),
    broker("listen", T::String, V("127.0.0.1:9092"), Validator::ListenAddress, true,
        "IP:PORT the Kafka listener binds (Kafka: listeners). Port 0 picks a free port. Flag: --listen."),
    broker("metrics", T::String, V(""), Validator::OptionalListenAddress, true,
        "IP:PORT of the Prometheus metrics endpoint (HTTP GET /metrics), served by shard 0; \
         empty turns it off. Flag: --metrics."),
    broker("advertise", T::String, ListenAddress, Validator::HostPort, true,
        "HOST:PORT that Metadata tells clients to connect to (Kafka: advertised.listeners). \
        Default: the listen address; required when listening on an unspecified address such as 0.0.0.0. \
        Flag: --advertise."),
    broker("data.dir", T::String, V("./data"), Validator::Path, true,
        "Directory holding all partition logs and metadata (Kafka: log.dirs). Flag: --data-dir."),
    broker("shards", T::Int, Cores, range(1, SHARDS_MAX), true,
        "Executors (shards), one thread pinned per core. Default: one per available core. Flag: --shards."),
    broker("io.memory.bytes", T::Long, V("1048576"), at_least(IO_MEMORY_BYTES_MIN), true,
        "glommio io_memory per executor: registered, locked buffers for direct I/O. Default 1 MiB \
        because it counts against ulimit -l (8 MiB on our machines) once per shard."),
    broker("ring.depth", T::Int, V("128"), range(1, RING_DEPTH_MAX), true,
        "io_uring submission queue depth per executor ring."),
    broker("cache.bytes", T::Long, V("67108864"), at_least(0), true,
        "Read cache per shard, in bytes. Direct I/O bypasses the page cache, so this is what serves \
        tailing consumers from memory."),
    broker("mesh.channel.capacity", T::Int, V("1024"), range(1, INT_MAX), true,
        "Bound of each shard-to-shard channel. A full channel is backpressure, never a blocked reactor."),
    broker("log.level", T::String, V("info"), Validator::LogLevel, true,
        "Log filter: a level (trace, debug, info, warn, error, off) or comma-separated \
        target=level directives, e.g. sluice=debug,glommio=warn."),
    // Kafka broker keys.
    broker("socket.request.max.bytes", T::Int, V("104857600"), at_least(1), true,
        "The maximum number of bytes in a request; larger requests close the connection."),
    broker("num.partitions", T::Int, V("1"), at_least(1), true,
        "Partitions of an auto-created topic, or of a CreateTopics request that leaves it unset (-1)."),
    broker("default.replication.factor", T::Int, V("1"), range(1, SHORT_MAX), true,
        "Replication factor of an auto-created topic, or of a CreateTopics request that leaves it unset (-1)."),
    broker("auto.create.topics.enable", T::Boolean, V("true"), Validator::Bool, true,
        "Create a topic when Metadata or Produce names one that does not exist."),
    broker("offsets.topic.num.partitions", T::Int, V("50"), at_least(1), true,
        "Partitions of __consumer_offsets; a group's coordinator is the owner of partition hash(group) % this."),
    broker("offsets.topic.replication.factor", T::Short, V("1"), range(1, SHORT_MAX), true,
        "Replication factor of __consumer_offsets. Sluice's default is 1 (Kafka's 3) because it runs single-node."),
    broker("offsets.retention.minutes", T::Int, V("10080"), at_least(1), true,
        "Committed offsets of a group that has been empty this long are deleted."),
    broker("offsets.retention.check.interval.ms", T::Long, V("600000"), at_least(1), true,
        "How often expired committed offsets are looked for."),
    broker("group.initial.rebalance.delay.ms", T::Int, V("3000"), at_least(0), true,
        "How long the coordinator waits for more members before the first rebalance of an empty group."),
    broker("group.min.session.timeout.ms", T::Int, V("6000"), at_least(0), true,
        "The smallest session timeout a consumer may ask for."),
    broker("group.max.session.timeout.ms", T::Int, V("1800000"), at_least(0), true,
        "The largest session timeout a consumer may ask for."),
    broker("group.max.size", T::Int, V("2147483647"), at_least(1), true,
        "The most members one consumer group may have."),
    broker("log.retention.ms", T::Long, Null, at_least(-1), false,
        "Default retention.ms: keep a segment this long after its last record. -1: forever. \
        Unset: log.retention.minutes, then log.retention.hours, applies."),
    broker("log.retention.minutes", T::Int, Null, at_least(-1), false,
        "Retention in minutes, used when log.retention.ms is unset. -1: forever."),
    broker("log.retention.hours", T::Int, V("168"), at_least(-1), false,
        "Retention in hours, used when log.retention.ms and log.retention.minutes are unset. -1: forever."),
    broker("log.retention.bytes", T::Long, V("-1"), at_least(-1), false,
        "Default retention.bytes: the most bytes a partition keeps before deleting old segments. -1: no limit."),
    broker("log.retention.check.interval.ms", T::Long, V("300000"), at_least(1), true,
        "How often each shard looks for segments to delete under the retention settings."),
    broker("log.segment.bytes", T::Int, V("1073741824"), at_least(14), false,
        "Default segment.bytes: a segment is rolled when it would grow past this size."),
    broker("log.roll.ms", T::Long, Null, at_least(1), false,
        "Default segment.ms: a segment is rolled when its first record is this old. \
        Unset: log.roll.hours applies."),
    broker("log.roll.hours", T::Int, V("168"), at_least(1), false,
        "Segment roll time in hours, used when log.roll.ms is unset."),
    broker("log.roll.jitter.ms", T::Long, V("0"), at_least(0), false,
        "Default segment.jitter.ms: random jitter subtracted from the roll time."),
    broker("message.max.bytes", T::Int, V("1048588"), at_least(0), false,
        "Default max.message.bytes: the largest record batch a topic accepts."),
    broker("log.cleanup.policy", T::List, V("delete"), Validator::ListOf(CLEANUP_POLICIES), false,
        "Default cleanup.policy: delete, compact, or compact,delete."),
    broker("log.flush.interval.messages", T::Long, V("1"), at_least(1), false, FLUSH_DOC),
    broker("log.flush.interval.ms", T::Long, V("9223372036854775807"), at_least(0), false,
        "Default flush.ms: the longest a written record may stay unsynced. Kafka's default is unset \
        (never by time); Sluice reports 9223372036854775807 for the same meaning."),
    broker("log.index.interval.bytes", T::Int, V("4096"), at_least(0), false,
        "Default index.interval.bytes: bytes of log between two offset-index entries."),
    broker("log.index.size.max.bytes", T::Int, V("10485760"), at_least(4), false,
        "Default segment.index.bytes: the most bytes one segment's offset index may take."),
    broker("log.segment.delete.delay.ms", T::Long, V("60000"), at_least(0), false,
        "Default file.delete.delay.ms: how long a deleted segment's files stay before removal."),
    broker("log.cleaner.delete.retention.ms", T::Long, V("86400000"), at_least(0), false,
        "Default delete.retention.ms: how long tombstones stay in a compacted topic."),
    broker("log.cleaner.min.compaction.lag.ms", T::Long, V("0"), at_least(0), false,
        "Default min.compaction.lag.ms: records younger than this are never compacted."),
    broker("log.cleaner.max.compaction.lag.ms", T::Long, V("9223372036854775807"), at_least(1), false,
        "Default max.compaction.lag.ms: records older than this are eligible for compaction regardless of dirtiness."),
    broker("log.cleaner.min.cleanable.ratio", T::Double, V("0.5"), Validator::Ratio, false,
        "Default min.cleanable.dirty.ratio: the dirty share of a log above which it is compacted."),
    broker("log.message.timestamp.type", T::String, V("CreateTime"), Validator::OneOf(TIMESTAMP_TYPES), false,
        "Default message.timestamp.type: CreateTime (the producer's) or LogAppendTime (the broker's clock)."),
    broker("log.message.timestamp.difference.max.ms", T::Long, V("9223372036854775807"), at_least(0), false,
        "Default message.timestamp.difference.max.ms (deprecated in Kafka for the before/after pair)."),
    broker("log.message.timestamp.before.max.ms", T::Long, V("9223372036854775807"), at_least(0), false,
        "Default message.timestamp.before.max.ms: how far in the past a CreateTime timestamp may be."),
    broker("log.message.timestamp.after.max.ms", T::Long, V("9223372036854775807"), at_least(0), false,
        "Default message.timestamp.after.max.ms: how far in the future a CreateTime timestamp may be."),
    broker("log.preallocate", T::Boolean, V("false"), Validator::Bool, false,
        "Default preallocate: allocate a segment's file at full size when it is created."),
    broker("min.insync.replicas", T::Int, V("1"), at_least(1), false,
        "Default min.insync.replicas: replicas that must have a batch before acks=all is answered."),
    broker("compression.type", T::String, V("producer"), Validator::OneOf(COMPRESSION_TYPES), false,
        "Default compression.type: producer keeps the producer's codec; uncompressed, gzip, snappy, \
        lz4 or zstd store batches in that codec."),
    broker("unclean.leader.election.enable", T::Boolean, V("false"), Validator::Bool, false,
        "Default unclean.leader.election.enable: allow an out-of-sync replica to become leader, losing data."),
    // Topic keys, each inheriting from its broker synonym.
    topic("cleanup.policy", "log.cleanup.policy", T::List, Validator::ListOf(CLEANUP_POLICIES),
        "delete: drop old segments under retention.ms/retention.bytes; compact: keep the last record \
        per key; compact,delete: both."),
    topic("compression.type", "compression.type", T::String, Validator::OneOf(COMPRESSION_TYPES),
        "The codec batches are stored in; producer keeps whatever the producer sent."),
    topic("delete.retention.ms", "log.cleaner.delete.retention.ms", T::Long, at_least(0),
        "How long tombstones stay in a compacted topic, so consumers see the delete."),
    topic("file.delete.delay.ms", "log.segment.delete.delay.ms", T::Long, at_least(0),
        "How long a deleted segment's files stay before removal."),
    topic("flush.messages", "log.flush.interval.messages", T::Long, at_least(1), FLUSH_DOC),
    topic("flush.ms", "log.flush.interval.ms", T::Long, at_least(0),
        "The longest a written record may stay unsynced."),
    topic("index.interval.bytes", "log.index.interval.bytes", T::Int, at_least(0),
        "Bytes of log between two offset-index entries."),
    topic("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", T::Long, at_least(1),
        "Records older than this are eligible for compaction regardless of dirtiness."),
    topic("max.message.bytes", "message.max.bytes", T::Int, at_least(0),
        "The largest record batch the topic accepts, after compression."),
    topic("message.timestamp.difference.max.ms", "log.message.timestamp.difference.max.ms", T::Long, at_least(0),
        "Deprecated: the largest difference between a CreateTime timestamp and the broker's clock."),
    topic("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", T::Long, at_least(0),
        "How far in the past a CreateTime timestamp may be."),
    topic("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", T::Long, at_least(0),
        "How far in the future a CreateTime timestamp may be."),
    topic("message.timestamp.type", "log.message.timestamp.type", T::String, Validator::OneOf(TIMESTAMP_TYPES),
        "CreateTime keeps the producer's timestamp; LogAppendTime stamps batches with the broker's clock."),
    topic("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", T::Double, Validator::Ratio,
        "The dirty share of the log above which it is compacted."),
    topic("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", T::Long, at_least(0),
        "Records younger than this are never compacted."),
    topic("min.insync.replicas", "min.insync.replicas", T::Int, at_least(1),
        "Replicas that must have a batch before an acks=all produce is answered."),
    topic("preallocate", "log.preallocate", T::Boolean, Validator::Bool,
        "Allocate a segment's file at full size when it is created."),
    topic("retention.bytes", "log.retention.bytes", T::Long, at_least(-1),
        "The most bytes a partition keeps before deleting its oldest segments. -1: no limit."),
    topic("retention.ms", "log.retention.ms", T::Long, at_least(-1),
        "How long a segment is kept after its last record. -1: forever."),
    topic("segment.bytes", "log.segment.bytes", T::Int, at_least(14),
        "A segment is rolled when it would grow past this size."),
    topic("segment.index.bytes", "log.index.size.max.bytes", T::Int, at_least(4),
        "The most bytes one segment's offset index may take."),
    topic("segment.jitter.ms", "log.roll.jitter.ms", T::Long, at_least(0),
        "Random jitter subtracted from segment.ms, so segments of many partitions do not roll at once."),
    topic("segment.ms", "log.roll.ms", T::Long, at_least(1),
        "A segment is rolled when its first record is this old, even if not full."),
    topic("unclean.leader.election.enable", "unclean.leader.election.enable", T::Boolean, Validator::Bool,
        "Allow an out-of-sync replica to become leader, losing data."),
];

/// Kafka's unit ladders: broker keys that set one value in different units,
/// most specific first, with the factor to milliseconds.
static LADDERS: &[&[(&str, i64)]] = &[
    &[
        ("log.retention.ms", 1),
        ("log.retention.minutes", MS_PER_MINUTE),
        ("log.retention.hours", MS_PER_HOUR),
    ],
    &[("log.roll.ms", 1), ("log.roll.hours", MS_PER_HOUR)],
];

fn definition(scope: Scope, name: &str) -> Option<&'static ConfigDef> {
    DEFINITIONS
        .iter()
        .find(|def| def.scope == scope && def.name == name)
}

/// The rungs from `name` down its ladder, or `name` alone (factor 1).
fn ladder(name: &'static str) -> Vec<(&'static str, i64)> {
    for rungs in LADDERS {
        if let Some(position) = rungs.iter().position(|(rung, _)| *rung == name) {
            return rungs[position..].to_vec();
        }
    }
    vec![(name, 1)]
}

/// Every broker key, sorted; for callers listing what `--set` accepts.
pub fn broker_config_names() -> Vec<&'static str> {
    sorted_names(Scope::Broker)
}

/// Every topic key, sorted.
pub fn topic_config_names() -> Vec<&'static str> {
    sorted_names(Scope::Topic)
}

/// Whether `name` is a topic config Sluice knows.
pub fn is_topic_config(name: &str) -> bool {
    definition(Scope::Topic, name).is_some()
}

fn sorted_names(scope: Scope) -> Vec<&'static str> {
    let mut names: Vec<_> = DEFINITIONS
        .iter()
        .filter(|def| def.scope == scope)
        .map(|def| def.name)
        .collect();
    names.sort_unstable();
    names
}

// ---------------------------------------------------------------------------
// Validation: every value passes through `validate`, which returns the
// normalized text that is stored and reported.

fn validate(def: &ConfigDef, value: &str) -> Result<String, String> {
    let got = || format!("got {value:?}");
    match def.validator {
        Validator::Range { min, max } => {
            let max = max.min(type_max(def.config_type));
            match value.trim().parse::<i64>() {
                Ok(number) if (min..=max).contains(&number) => Ok(number.to_string()),
                _ => Err(format!("expected {}, {}", integer_phrase(min, max), got())),
            }
        }
        Validator::Ratio => match value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio.to_string()),
            _ => Err(format!("expected a number from 0 to 1, {}", got())),
        },
        Validator::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok("true".to_string()),
            "false" => Ok("false".to_string()),
            _ => Err(format!("expected true or false, {}", got())),
        },
        Validator::OneOf(allowed) => match allowed.iter().find(|item| **item == value.trim()) {
            Some(item) => Ok(item.to_string()),
            None => Err(format!("expected one of {}, {}", allowed.join(", "), got())),
        },
        Validator::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().all(|item| allowed.contains(item)) {
                Ok(items.join(","))
            } else {
                let allowed = allowed.join(", ");
                Err(format!(
                    "expected a comma-separated list of {allowed}, {}",
                    got()
                ))
            }
        }
        Validator::ListenAddress => parse_listen(value)
            .map(|address| address.to_string())
            .ok_or_else(|| format!("expected IP:PORT such as 127.0.0.1:9092, {}", got())),
        Validator::OptionalListenAddress if value.trim().is_empty() => Ok(String::new()),
        Validator::OptionalListenAddress => parse_listen(value)
            .map(|address| address.to_string())
            .ok_or_else(|| {
                format!(
                    "expected IP:PORT such as 127.0.0.1:9644, or empty, {}",
                    got()
                )
            }),
        Validator::HostPort => parse_host_port(value)
            .map(|(host, port)| format_host_port(&host, port))
            .ok_or_else(|| format!("expected HOST:PORT such as broker1:9092, {}", got())),
        Validator::Path if value.trim().is_empty() => Err("expected a directory path".to_string()),
        Validator::Path => Ok(value.to_string()),
        Validator::LogLevel => validate_log_level(value)
            .map(|()| value.trim().to_string())
            .ok_or_else(|| {
                format!(
                    "expected a level (trace, debug, info, warn, error, off) or target=level \
                     directives, {}",
                    got()
                )
            }),
    }
}

fn type_max(config_type: ConfigType) -> i64 {
    match config_type {
        ConfigType::Short => SHORT_MAX,
        ConfigType::Int => INT_MAX,
        _ => LONG_MAX,
    }
}

fn integer_phrase(min: i64, max: i64) -> String {
    let lower = match min {
        -1 => "-1 or a non-negative integer".to_string(),
        0 => "a non-negative integer".to_string(),
        1 => "a positive integer".to_string(),
        _ => format!("an integer of at least {min}"),
    };
    if max == LONG_MAX {
        lower
    } else {
        format!("{lower} up to {max}")
    }
}

/// `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (127.0.0.1): no DNS at
/// start-up, so a listener never depends on a resolver.
fn parse_listen(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Some(address);
    }
    let port = value.strip_prefix("localhost:")?.parse::<u16>().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `HOST:PORT` with a non-empty host (brackets around IPv6 removed) and a
/// non-zero port.
fn parse_host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    let host_valid = !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c == '/');
    (host_valid && port != 0).then(|| (host.to_string(), port))
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// A level, or comma-separated `target=level` / `level` directives. Stricter
/// than tracing's parser on purpose: there a typo such as `degub` is a valid
/// target name and silently turns all logging off.
fn validate_log_level(value: &str) -> Option<()> {
    let is_level = |text: &str| LOG_LEVELS.contains(&text.trim().to_ascii_lowercase().as_str());
    let directives_valid = value
        .split(',')
        .all(|directive| match directive.split_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
            None => is_level(directive),
        });
    directives_valid.then_some(())
}

/// Checks a topic config a client wants to set (CreateTopics,
/// AlterConfigs). `None` is "remove the override" (IncrementalAlterConfigs
/// DELETE) and is valid for every known name; a handler for which a null
/// value is a protocol error (CreateTopics) rejects it itself.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), ConfigError> {
    let Some(def) = definition(Scope::Topic, name) else {
        let message = match definition(Scope::Broker, name) {
            Some(_) => "not a topic config (it is a broker config)".to_string(),
            None => unknown_key_message(name, Scope::Topic),
        };
        return Err(ConfigError::invalid(name, "", message));
    };
    match value {
        None => Ok(()),
        Some(value) => validate(def, value)
            .map(|_| ())
            .map_err(|message| ConfigError::invalid(name, "", message)),
    }
}

fn unknown_key_message(name: &str, scope: Scope) -> String {
    let topic_key = definition(Scope::Topic, name).filter(|_| scope == Scope::Broker);
    if let Some(synonym) = topic_key.and_then(|def| def.synonym) {
        return format!("'{name}' is a topic config; the broker-wide default is '{synonym}'");
    }
    match closest_name(name, scope) {
        Some(suggestion) => format!("unknown key (did you mean '{suggestion}'?)"),
        None => "unknown key".to_string(),
    }
}

/// The known key nearest to a typo, if it is near enough.
fn closest_name(name: &str, scope: Scope) -> Option<&'static str> {
    DEFINITIONS
        .iter()
        .filter(|def| def.scope == scope)
        .map(|def| (edit_distance(name, def.name), def.name))
        .filter(|(distance, _)| *distance <= 3.max(name.len() / 5))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[right.len()]
}

// ---------------------------------------------------------------------------
// Values: what was set explicitly, and the defaults, for every broker key.

#[derive(Clone, Debug)]
struct Setting {
    value: String,
    origin: String,
    /// Set at runtime (AlterConfigs), not by a file or flag.
    dynamic: bool,
}

impl Setting {
    fn source(&self) -> ConfigSource {
        if self.dynamic {
            ConfigSource::DynamicBrokerConfig
        } else {
            ConfigSource::StaticBrokerConfig
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Values {
    explicit: BTreeMap<&'static str, Setting>,
    defaults: BTreeMap<&'static str, Option<String>>,
}

impl Values {
    fn get(&self, name: &str) -> Option<&str> {
        match self.explicit.get(name) {
            Some(setting) => Some(&setting.value),
            None => self.defaults.get(name)?.as_deref(),
        }
    }

    /// Our own invariant: every key read here has a value that passed its
    /// validator (explicit values on the way in, defaults by a unit test).
    fn text(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("broker config '{name}' has no value"))
    }

    fn integer(&self, name: &str) -> i64 {
        let text = self.text(name);
        text.parse()
            .unwrap_or_else(|_| panic!("broker config '{name}' = {text:?} is not an integer"))
    }

    fn unsigned(&self, name: &str) -> u64 {
        u64::try_from(self.integer(name)).expect("validator allows no negative value here")
    }

    fn boolean(&self, name: &str) -> bool {
        self.text(name) == "true"
    }

    fn source(&self, name: &str) -> ConfigSource {
        self.explicit
            .get(name)
            .map_or(ConfigSource::DefaultConfig, Setting::source)
    }

    /// Set a broker key; `replace` false makes a second setting an error
    /// (the same key twice in one file).
    fn set(
        &mut self,
        name: &str,
        value: &str,
        origin: &str,
        replace: bool,
    ) -> Result<(), ConfigError> {
        let Some(def) = definition(Scope::Broker, name) else {
            let message = unknown_key_message(name, Scope::Broker);
            return Err(ConfigError::invalid(name, origin, message));
        };
        let value =
            validate(def, value).map_err(|message| ConfigError::invalid(name, origin, message))?;
        if !replace && self.explicit.contains_key(def.name) {
            return Err(ConfigError::invalid(name, origin, "set twice"));
        }
        let origin = origin.to_string();
        let dynamic = false;
        self.explicit.insert(
            def.name,
            Setting {
                value,
                origin,
                dynamic,
            },
        );
        Ok(())
    }

    /// Fill `defaults` for every broker key, after all explicit settings.
    fn resolve_defaults(&mut self, cores: usize) {
        for def in DEFINITIONS.iter().filter(|def| def.scope == Scope::Broker) {
            let value = match def.default {
                DefaultValue::Value(text) => Some(text.to_string()),
                DefaultValue::Null | DefaultValue::Inherited => None,
                DefaultValue::Cores => Some(cores.clamp(1, SHARDS_MAX as usize).to_string()),
                DefaultValue::ListenAddress => self.get("listen").map(str::to_string),
            };
            self.defaults.insert(def.name, value);
        }
    }

    /// Kafka's synonym list for a broker key: down its unit ladder, the
    /// explicit value then the default of each rung that has one.
    fn synonyms(&self, broker_key: &'static str) -> Vec<(String, Option<String>, ConfigSource)> {
        let mut synonyms = Vec::new();
        for (name, _) in ladder(broker_key) {
            if let Some(setting) = self.explicit.get(name) {
                let value = Some(setting.value.clone());
                synonyms.push((name.to_string(), value, setting.source()));
            }
            if let Some(Some(default)) = self.defaults.get(name) {
                let value = Some(default.clone());
                synonyms.push((name.to_string(), value, ConfigSource::DefaultConfig));
            }
        }
        synonyms
    }

    /// The effective value of a topic key's broker synonym in the topic
    /// key's units, its source, and Kafka's synonym list for it.
    fn inherited(&self, broker_key: &'static str) -> Inherited {
        let rungs = ladder(broker_key);
        let synonyms = self.synonyms(broker_key);
        let explicit_rung = rungs
            .iter()
            .find(|(name, _)| self.explicit.contains_key(name));
        let default_rung = rungs
            .iter()
            .find(|(name, _)| matches!(self.defaults.get(name), Some(Some(_))));
        let (source, rung) = match (explicit_rung, default_rung) {
            (Some(rung), _) => (self.source(rung.0), rung),
            (None, Some(rung)) => (ConfigSource::DefaultConfig, rung),
            (None, None) => panic!("broker config '{broker_key}' has no value on any rung"),
        };
        let (name, factor) = *rung;
        let value = if factor == 1 {
            self.text(name).to_string()
        } else {
            to_milliseconds(self.integer(name), factor).to_string()
        };
        Inherited {
            value,
            source,
            synonyms,
        }
    }
}

struct Inherited {
    value: String,
    source: ConfigSource,
    synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// Kafka: a negative retention in any unit means "forever", which is -1 ms.
fn to_milliseconds(amount: i64, factor: i64) -> i64 {
    if amount < 0 {
        -1
    } else {
        amount.saturating_mul(factor)
    }
}

// ---------------------------------------------------------------------------
// The command line.

#[derive(clap::Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible message broker, thread-per-core on io_uring.",
    allow_negative_numbers = true,
    after_help = "Without --config, config/sluice.toml is read if it exists; otherwise built-in \
        defaults apply.\nPrecedence: default < file < --set < the flags above.\n\
        Config keys use Kafka's names (log.retention.ms, num.partitions, ...); see config/README.md.\n\n\
        With no subcommand, sluice runs the broker. Tools for any Kafka-compatible broker \
        (each with --help):\n  sluice topics list|create|describe|alter|delete\n  \
        sluice produce --topic T\n  sluice consume --topic T\n  \
        sluice groups list|describe|delete|reset-offsets"
)]
struct Cli {
    /// Config file (TOML with Kafka's dotted key names).
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for partition logs and metadata (key: data.dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Address the Kafka listener binds (key: listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address Metadata tells clients (key: advertise).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Number of shards, one per core (key: shards; default: all cores).
    #[arg(long, value_name = "N")]
    shards: Option<String>,
    /// This node's id (key: node.id).
    #[arg(long, value_name = "N")]
    node_id: Option<String>,
    /// Prometheus metrics endpoint (key: metrics; default: off).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Set any broker config key; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Cli {
    /// The dedicated flags that were given, as (key, value, flag).
    fn flags(&self) -> Vec<(&'static str, &str, &'static str)> {
        let flags = [
            ("data.dir", &self.data_dir, "--data-dir"),
            ("listen", &self.listen, "--listen"),
            ("advertise", &self.advertise, "--advertise"),
            ("shards", &self.shards, "--shards"),
            ("node.id", &self.node_id, "--node-id"),
            ("metrics", &self.metrics, "--metrics"),
        ];
        flags
            .into_iter()
            .filter_map(|(key, value, flag)| Some((key, value.as_deref()?, flag)))
            .collect()
    }
}

fn parse_cli<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, ConfigError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::Parser;

    let error = match Cli::try_parse_from(args) {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    let rendered = error.render().to_string();
    let kind = match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigErrorKind::Help
        }
        ErrorKind::DisplayVersion => ConfigErrorKind::Version,
        _ => ConfigErrorKind::Invalid,
    };
    if kind != ConfigErrorKind::Invalid {
        return Err(ConfigError {
            key: String::new(),
            message: rendered,
            origin: String::new(),
            kind,
        });
    }
    let context = |wanted| match error.get(wanted) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => texts.first().cloned(),
        _ => None,
    };
    // clap names an argument as "--shards <N>"; the flag is the first word.
    let key = context(ContextKind::InvalidArg)
        .and_then(|arg| arg.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let mut message = match error.kind() {
        ErrorKind::UnknownArgument => "unknown flag".to_string(),
        _ => rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    };
    if let Some(suggested) = context(ContextKind::SuggestedArg) {
        message.push_str(&format!(" (did you mean '{suggested}'?)"));
    }
    message.push_str("; see sluice --help");
    Err(ConfigError::invalid(&key, "command line", message))
}

// ---------------------------------------------------------------------------
// The TOML file.

/// Flatten a TOML document into `(dotted key, value text)`: in TOML
/// `log.retention.ms = 5` is three nested tables, and `"log.retention.ms" = 5`
/// a single key; both mean Kafka's `log.retention.ms`.
fn flatten_toml(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| ConfigError::invalid("", origin, error.to_string()))?;
    let mut out = Vec::new();
    flatten_table("", &table, origin, &mut out)?;
    Ok(out)
}

fn flatten_table(
    prefix: &str,
    table: &toml::Table,
    origin: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let toml::Value::Table(inner) = value {
            flatten_table(&name, inner, origin, out)?;
            continue;
        }
        let text = toml_value_text(value)
            .ok_or_else(|| ConfigError::invalid(&name, origin, toml_type_message(value)))?;
        out.push((name, text));
    }
    Ok(())
}

/// Integers, booleans, floats and strings as their text; an array of strings
/// as a comma-separated list (`cleanup.policy = ["compact", "delete"]`).
fn toml_value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        // Debug keeps the ".0" so `num.partitions = 1.0` is not taken for 1.
        toml::Value::Float(number) => Some(format!("{number:?}")),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

fn toml_type_message(value: &toml::Value) -> String {
    format!(
        "expected an integer, boolean, string or list of strings, got a TOML {}",
        value.type_str()
    )
}

// ---------------------------------------------------------------------------
// Building the config.

impl BrokerConfig {
    /// Parse `args` (including argv[0]), read the config file (`--config`,
    /// else [`DEFAULT_CONFIG_FILE`] if present), apply the flags, validate.
    /// `--help` and `--version` come back as errors of kind Help/Version;
    /// call [`ConfigError::exit`] on any error.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<BrokerConfig, ConfigError> {
        let cli = parse_cli(args)?;
        let default_file = Path::new(DEFAULT_CONFIG_FILE);
        let file = match &cli.config {
            Some(path) => Some(path.clone()),
            None => default_file.exists().then(|| default_file.to_path_buf()),
        };
        let text = match &file {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|error| {
                let message = format!("cannot read {}: {error}", path.display());
                ConfigError::invalid("--config", "command line", message)
            })?),
        };
        let file = file.zip(text);
        Self::build(
            &cli,
            file.as_ref()
                .map(|(path, text)| (path.as_path(), text.as_str())),
        )
    }

    /// Built-in defaults and `text` as if read from a file; for tests and
    /// tools. No flags.
    pub fn from_toml_str(text: &str) -> Result<BrokerConfig, ConfigError> {
        let cli = parse_cli(["sluice".to_string()])?;
        Self::build(&cli, Some((Path::new("<toml>"), text)))
    }

    fn build(cli: &Cli, file: Option<(&Path, &str)>) -> Result<BrokerConfig, ConfigError> {
        let mut values = Values::default();
        if let Some((path, text)) = file {
            let origin = path.display().to_string();
            for (key, value) in flatten_toml(text, &origin)? {
                values.set(&key, &value, &origin, false)?;
            }
        }
        for assignment in &cli.set {
            let Some((key, value)) = assignment.split_once('=') else {
                let message = format!("expected KEY=VALUE, got {assignment:?}");
                return Err(ConfigError::invalid("--set", "command line", message));
            };
            values.set(key.trim(), value, "flag --set", true)?;
        }
        for (key, value, flag) in cli.flags() {
            values.set(key, value, &format!("flag {flag}"), true)?;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        values.resolve_defaults(cores);
        let config_file = file.map(|(path, _)| path.to_path_buf());
        Self::from_values(values, config_file)
    }

    fn from_values(
        values: Values,
        config_file: Option<PathBuf>,
    ) -> Result<BrokerConfig, ConfigError> {
        check_cross_key_rules(&values)?;
        let listen = parse_listen(values.text("listen")).expect("validated listen address");
        let (advertise_host, advertise_port) = match parse_host_port(values.text("advertise")) {
            Some(host_port) => host_port,
            // Listening on port 0: the port is known only after bind.
            None => (listen.ip().to_string(), listen.port()),
        };
        let log = resolve_topic(&values, &BTreeMap::new()).typed(&values);
        let size = |name| usize::try_from(values.unsigned(name)).unwrap_or(usize::MAX);
        let int = |name| i32::try_from(values.integer(name)).expect("validated as Int");
        let short = |name| i16::try_from(values.integer(name)).expect("validated as Short");
        Ok(BrokerConfig {
            node_id: int("node.id"),
            listen,
            metrics: parse_listen(values.text("metrics")),
            advertise_host,
            advertise_port,
            data_dir: PathBuf::from(values.text("data.dir")),
            shards: size("shards"),
            io_memory_bytes: size("io.memory.bytes"),
            ring_depth: size("ring.depth"),
            cache_bytes: size("cache.bytes"),
            mesh_channel_capacity: size("mesh.channel.capacity"),
            socket_request_max_bytes: size("socket.request.max.bytes"),
            num_partitions: int("num.partitions"),
            default_replication_factor: short("default.replication.factor"),
            auto_create_topics_enable: values.boolean("auto.create.topics.enable"),
            offsets_topic_num_partitions: int("offsets.topic.num.partitions"),
            offsets_topic_replication_factor: short("offsets.topic.replication.factor"),
            offsets_retention_minutes: values.unsigned("offsets.retention.minutes"),
            offsets_retention_check_interval_ms: values
                .unsigned("offsets.retention.check.interval.ms"),
            group_initial_rebalance_delay_ms: values.unsigned("group.initial.rebalance.delay.ms"),
            group_min_session_timeout_ms: values.unsigned("group.min.session.timeout.ms"),
            group_max_session_timeout_ms: values.unsigned("group.max.session.timeout.ms"),
            group_max_size: u32::try_from(values.unsigned("group.max.size")).expect("Int"),
            log_level: values.text("log.level").to_string(),
            log,
            config_file,
            values,
        })
    }

    /// Every broker config, sorted by name, as DescribeConfigs(BROKER)
    /// reports it (with synonyms; a handler drops them if not asked).
    pub fn describe(&self) -> Vec<ConfigEntry> {
        let mut entries: Vec<ConfigEntry> = DEFINITIONS
            .iter()
            .filter(|def| def.scope == Scope::Broker)
            .map(|def| self.describe_broker_key(def))
            .collect();
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        entries
    }

    fn describe_broker_key(&self, def: &'static ConfigDef) -> ConfigEntry {
        let source = self.values.source(def.name);
        let synonyms = self.values.synonyms(def.name);
        ConfigEntry {
            name: def.name.to_string(),
            value: self.values.get(def.name).map(str::to_string),
            source,
            read_only: def.read_only,
            is_default: source == ConfigSource::DefaultConfig,
            sensitive: false,
            config_type: def.config_type,
            documentation: def.documentation.to_string(),
            synonyms,
        }
    }

    /// The effective typed config of a topic with these overrides. Overrides
    /// are validated on the way in ([`validate_topic_config`]); one that
    /// fails here (say, metadata written by a newer Sluice) is ignored, never
    /// a panic.
    pub fn topic_config(&self, overrides: &BTreeMap<String, String>) -> TopicConfig {
        resolve_topic(&self.values, overrides).typed(&self.values)
    }

    /// The effective text of a broker key (`None`: unset and no default, or
    /// unknown).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name)
    }

    /// Whether a broker key was set explicitly (`StaticBrokerConfig`) or is
    /// a default (`DefaultConfig`); `Unknown` for a name that is no broker key.
    pub fn source(&self, name: &str) -> ConfigSource {
        match definition(Scope::Broker, name) {
            Some(_) => self.values.source(name),
            None => ConfigSource::Unknown,
        }
    }

    /// This configuration with runtime overrides (AlterConfigs) on top of
    /// the file and flags. Overrides that are unknown, read-only or invalid
    /// (say, written by a newer Sluice) are ignored, never a panic; the
    /// controller validates them on the way in
    /// ([`validate_dynamic_broker_config`]).
    pub fn with_dynamic(&self, dynamic: &BTreeMap<String, String>) -> BrokerConfig {
        if dynamic.is_empty() {
            return self.clone();
        }
        let mut values = self.values.clone();
        for (name, value) in dynamic {
            let Some(def) = definition(Scope::Broker, name).filter(|def| !def.read_only) else {
                continue;
            };
            if let Ok(value) = validate(def, value) {
                let origin = "dynamic".to_string();
                let dynamic = true;
                values.explicit.insert(
                    def.name,
                    Setting {
                        value,
                        origin,
                        dynamic,
                    },
                );
            }
        }
        match Self::from_values(values, self.config_file.clone()) {
            Ok(mut next) => {
                // Resolved at start-up (port 0), and read-only anyway.
                next.listen = self.listen;
                next.advertise_host = self.advertise_host.clone();
                next.advertise_port = self.advertise_port;
                next.metrics = self.metrics;
                next
            }
            Err(_) => self.clone(),
        }
    }

    /// Where an explicitly set broker key was set: a file path or a flag.
    pub fn origin(&self, name: &str) -> Option<&str> {
        Some(self.values.explicit.get(name)?.origin.as_str())
    }
}

impl Default for BrokerConfig {
    /// Built-in defaults: no file, no flags.
    fn default() -> BrokerConfig {
        let cli = parse_cli(["sluice".to_string()]).expect("no arguments parse");
        BrokerConfig::build(&cli, None).expect("built-in defaults are valid")
    }
}

/// Rules that involve more than one key.
fn check_cross_key_rules(values: &Values) -> Result<(), ConfigError> {
    let origin_of = |name: &str| {
        values
            .explicit
            .get(name)
            .map(|setting| setting.origin.clone())
            .unwrap_or_default()
    };
    let session_min = values.integer("group.min.session.timeout.ms");
    let session_max = values.integer("group.max.session.timeout.ms");
    if session_min > session_max {
        let key = "group.min.session.timeout.ms";
        let message = format!("{session_min} is above group.max.session.timeout.ms {session_max}");
        return Err(ConfigError::invalid(key, &origin_of(key), message));
    }
    let advertise = values.text("advertise");
    let unroutable = parse_listen(advertise).is_some_and(|address| address.ip().is_unspecified());
    if unroutable {
        let message = format!(
            "{advertise} is not an address clients can connect to; set advertise (--advertise) \
             to a routable HOST:PORT"
        );
        return Err(ConfigError::invalid(
            "advertise",
            &origin_of("advertise"),
            message,
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Topic configs.

struct ResolvedTopicKey {
    def: &'static ConfigDef,
    value: String,
    source: ConfigSource,
    synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

struct ResolvedTopic(Vec<ResolvedTopicKey>);

/// Every topic key with its effective value: a valid override, else the
/// broker synonym's value in the topic key's units.
fn resolve_topic(values: &Values, overrides: &BTreeMap<String, String>) -> ResolvedTopic {
    let keys = DEFINITIONS
        .iter()
        .filter(|def| def.scope == Scope::Topic)
        .map(|def| {
            let broker_key = def.synonym.expect("every topic key has a broker synonym");
            let inherited = values.inherited(broker_key);
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

    fn typed(&self, values: &Values) -> TopicConfig {
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
            min_insync_replicas: u32::try_from(self.unsigned("min.insync.replicas"))
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
        }
    }
}

/// Every topic config of a topic with these overrides, sorted by name, as
/// DescribeConfigs(TOPIC) reports it: source `TopicConfig` if overridden,
/// `StaticBrokerConfig` if inherited from an explicitly set broker key, else
/// `DefaultConfig`; synonyms list the topic key, then the broker keys it
/// inherits from.
/// Checks a broker config a client wants to change at runtime: known, not
/// read-only, and a valid value (`None`: back to the static value).
pub fn validate_dynamic_broker_config(name: &str, value: Option<&str>) -> Result<(), ConfigError> {
    let Some(def) = definition(Scope::Broker, name) else {
        let message = unknown_key_message(name, Scope::Broker);
        return Err(ConfigError::invalid(name, "", message));
    };
    if def.read_only {
        let message = "cannot be updated dynamically; set it in the config file or by a flag";
        return Err(ConfigError::invalid(name, "", message));
    }
    match value {
        Some(value) => validate(def, value)
            .map(|_| ())
            .map_err(|message| ConfigError::invalid(name, "", message)),
        None => Ok(()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
            ("compression.type", "producer"),
            ("delete.retention.ms", "86400000"),
            ("file.delete.delay.ms", "60000"),
            ("flush.messages", "1"), // Kafka: 9223372036854775807; see FLUSH_DOC.
            ("flush.ms", "9223372036854775807"),
            ("index.interval.bytes", "4096"),
            ("max.compaction.lag.ms", "9223372036854775807"),
            ("max.message.bytes", "1048588"),
            ("message.timestamp.after.max.ms", "9223372036854775807"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.difference.max.ms", "9223372036854775807"),
            ("message.timestamp.type", "CreateTime"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("min.compaction.lag.ms", "0"),
            ("min.insync.replicas", "1"),
            ("preallocate", "false"),
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
            if let Some(synonym) = def.synonym {
                assert!(definition(Scope::Broker, synonym).is_some(), "{synonym}");
                assert_eq!(def.scope, Scope::Topic);
            }
            // In TOML a key that is a dotted prefix of another could not be
            // written beside it (`a.b = 1` and `a.b.c = 2` collide).
            for other in DEFINITIONS {
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

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
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
        let computed = [&computed[..], &["log.roll.ms"]].concat();
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
}
