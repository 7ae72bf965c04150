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
//! from (a few topic keys have none, as in Kafka, and a fixed default), and
//! the documentation. Validation, defaults and DescribeConfigs all
//! read that table, so they cannot disagree.
//!
//! Decisions, with the reason next to each:
//! - Precedence is built-in default < file < environment < `--set
//!   KEY=VALUE` < dedicated flag (`--shards` ...), so a script can override
//!   one key of a shared file, and a container's environment one key of a
//!   mounted file while its command line still wins.
//! - The environment (`env.rs`): `SLUICE_SET_<KEY>` for any broker key
//!   (upper-cased, `.` as `_`) and `SLUICE_<FLAG>` for each dedicated flag.
//! - An unknown key, a key set twice in one file, or a bad value stops
//!   start-up with a message naming the key: a typo in a retention setting must
//!   not silently keep data forever (or delete it early).
//! - `flush.messages` / `log.flush.interval.messages` default to 1, not
//!   Kafka's `i64::MAX`: Sluice promises that data acknowledged to an
//!   `acks=all` producer survives a crash, and on a single node only an fsync
//!   before the answer keeps that promise. Storage syncs once per batch (group
//!   commit), not once per record.
//! - Every topic config name of Kafka's `TopicConfig` is accepted and
//!   validated as Kafka does, also those Sluice does not act on (throttled
//!   replicas, tiered storage, compression levels, the old format keys): a
//!   client or tool that sets them must not fail. Their documentation says
//!   they are ignored; `remote.storage.enable` accepts only false, because
//!   turning on a feature that is not there must not look like success.
//! - `read_only` on broker keys mirrors Kafka's set of dynamically updatable
//!   broker configs, so that DescribeConfigs looks like Kafka's and a future
//!   AlterConfigs(BROKER) handler can use it as its allow-list. Topic keys are
//!   never read-only.
//! - Kafka's unit ladders are kept: `log.retention.ms` wins over
//!   `log.retention.minutes`, which wins over `log.retention.hours`; likewise
//!   `log.roll.ms` over `log.roll.hours`.
//!
//! Files, one responsibility each:
//! - `mod.rs`: these docs, the public types and the re-exports; no logic
//!   beyond `ConfigError`'s formatting.
//! - `definitions.rs`: the one table `DEFINITIONS` and the unit ladders.
//! - `validate.rs`: checking and normalizing one value against its
//!   definition; unknown-key messages.
//! - `values.rs`: the layered broker values (explicit settings over
//!   defaults) and what a topic key inherits from them.
//! - `cli.rs`: flag parsing and TOML flattening into `(key, text)` pairs.
//! - `env.rs`: `SLUICE_SET_*` / `SLUICE_<FLAG>` variables into the same.
//! - `broker.rs`: building [`BrokerConfig`] (default < file < `--set` <
//!   flags), cross-key rules, DescribeConfigs(BROKER), runtime overrides.
//! - `cluster.rs`: the cluster keys (`process.roles`, the quorum voters,
//!   `controller.listen`) and the rules between them.
//! - `topic.rs`: a topic's effective config and DescribeConfigs(TOPIC).

mod broker;
mod cli;
mod cluster;
mod definitions;
mod env;
mod listeners;
#[cfg(test)]
mod tests;
mod topic;
mod validate;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use definitions::{broker_config_names, is_topic_config, topic_config_names};
pub use listeners::{ClientAuth, ListenerConfig, SecurityConfig, SecurityProtocol, TlsFiles};
pub use topic::describe_topic;
pub use validate::{validate_dynamic_broker_config, validate_topic_config};

use values::Values;

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
    /// Replicas that must have a batch before an `acks=all` produce is
    /// answered (`min.insync.replicas`, Kafka's INT).
    pub min_insync_replicas: i32,
    pub preallocate: bool,
    /// `None`: no size limit (`retention.bytes = -1`).
    pub retention_bytes: Option<u64>,
    /// `None`: keep forever (`retention.ms = -1`).
    pub retention_ms: Option<u64>,
    pub segment_bytes: u64,
    pub segment_index_bytes: u64,
    pub segment_jitter_ms: u64,
    pub segment_ms: u64,
    /// Whether an out-of-sync replica may become leader, losing data.
    pub unclean_leader_election_enable: bool,
    /// Broker-wide (`log.retention.check.interval.ms`), not settable per
    /// topic; carried here so the retention task finds all it needs in one
    /// place.
    pub retention_check_interval_ms: u64,
    /// Broker-wide (`log.cleaner.backoff.ms`): how often the cleaner looks.
    pub cleaner_backoff_ms: u64,
    /// Broker-wide (`log.cleaner.io.max.bytes.per.second`).
    pub cleaner_io_bytes_per_second: f64,
}

/// One entry of `controller.quorum.voters` (Kafka's `ID@HOST:PORT`): a
/// node of the Raft metadata quorum and the address of its controller
/// listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
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
    /// `fetch.cold.read=sendfile`: cold fetch data by `sendfile` rather than
    /// io_uring reads into the cache.
    pub fetch_sendfile: bool,
    /// `fetch.read.ahead.bytes`.
    pub read_ahead_bytes: u64,
    /// Bound of each cross-shard channel in the mesh.
    pub mesh_channel_capacity: usize,
    pub socket_request_max_bytes: usize,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub offsets_topic_num_partitions: i32,
    /// Kafka's default, 3. `__consumer_offsets` is created with this capped
    /// to the number of live brokers, so one node still gets RF 1.
    pub offsets_topic_replication_factor: i16,
    pub offsets_retention_minutes: u64,
    pub offsets_retention_check_interval_ms: u64,
    /// Partitions of `__transaction_state` (Kafka's default, 50).
    pub transaction_state_log_num_partitions: i32,
    /// Capped to the live brokers when `__transaction_state` is created.
    pub transaction_state_log_replication_factor: i16,
    pub transaction_max_timeout_ms: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub transaction_cleanup_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    pub group_max_size: u32,
    pub group_consumer_session_timeout_ms: u64,
    pub group_consumer_heartbeat_interval_ms: u64,
    // --- The cluster: Raft metadata quorum and replication (Kafka's names).
    /// `process.roles`: only the combined `broker,controller` is supported.
    pub process_roles: Vec<String>,
    /// Where the controller (Raft) listener binds. `None` only on a single
    /// node (no voters); with voters it defaults to this node's own entry in
    /// `controller.quorum.voters`, resolved at start-up.
    pub controller_listen: Option<SocketAddr>,
    /// The Raft quorum. Empty (the default): a single-node cluster, this
    /// node the only voter, no controller listener needed. Otherwise
    /// `node_id` is one of them and their node ids are distinct.
    pub controller_quorum_voters: Vec<QuorumVoter>,
    pub broker_session_timeout_ms: u64,
    /// Always less than `broker_session_timeout_ms`.
    pub broker_heartbeat_interval_ms: u64,
    pub controller_quorum_election_timeout_ms: u64,
    pub metadata_log_max_record_bytes_between_snapshots: u64,
    /// Never less than `replica_fetch_wait_max_ms`.
    pub replica_lag_time_max_ms: u64,
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_wait_max_ms: i32,
    pub replica_fetch_min_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    pub replica_fetch_backoff_ms: u64,
    /// Fetch sessions the broker keeps (0: none), split over its shards
    /// by `fetch_session::slots_for_shard`.
    pub max_incremental_fetch_session_cache_slots: usize,
    pub min_incremental_fetch_session_eviction_ms: u64,
    /// The broker default; a topic's own value is in its [`TopicConfig`].
    pub unclean_leader_election_enable: bool,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    pub leader_imbalance_per_broker_percentage: u32,
    /// `authorizer.class.name`, `super.users`,
    /// `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::authorizer::AuthorizerConfig,
    /// `quota.producer.default`, `quota.consumer.default`: bytes per
    /// second per client id; `i64::MAX` is no quota.
    pub quota_producer_default: u64,
    pub quota_consumer_default: u64,
    /// A tracing filter: a level (`info`) or directives (`sluice=debug,warn`).
    pub log_level: String,
    /// The bound on a stop after SIGTERM (`shutdown.timeout.ms`).
    pub shutdown_timeout_ms: u64,
    /// The broker-wide defaults topics inherit (`log.*` keys and friends).
    pub log: TopicDefaults,
    /// Listeners, TLS, SASL and connection limits.
    pub security: SecurityConfig,
    /// The file that was read, if any.
    pub config_file: Option<PathBuf>,
    values: Values,
}
