//! The table of every config key: `DEFINITIONS` (scope, type, default,
//! validator, read-only flag, inherited broker key, documentation) and
//! Kafka's unit ladders (`log.retention.ms` / `.minutes` / `.hours`).
//!
//! Owns: what keys exist and what each one is. Validation, defaults and
//! DescribeConfigs all read this table, so they cannot disagree.
//!
//! Must not: hold a second list of keys anywhere else (this stays the one
//! table, the single source of truth), or read values: applying the table
//! is `values.rs`, `validate.rs` and `topic.rs`.

use super::{ConfigType, IO_MEMORY_BYTES_MIN, RING_DEPTH_MAX, SHARDS_MAX};

pub(super) const INT_MAX: i64 = i32::MAX as i64;
pub(super) const SHORT_MAX: i64 = i16::MAX as i64;
pub(super) const LONG_MAX: i64 = i64::MAX;
pub(super) const MS_PER_MINUTE: i64 = 60_000;
pub(super) const MS_PER_HOUR: i64 = 3_600_000;

const _: () = assert!(IO_MEMORY_BYTES_MIN % 4096 == 0);
const _: () = assert!((RING_DEPTH_MAX as u64).is_power_of_two() && RING_DEPTH_MAX <= INT_MAX);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    Broker,
    Topic,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum DefaultValue {
    Value(&'static str),
    /// No value (Kafka's `null`): a lower rung of a unit ladder applies.
    Null,
    /// `std::thread::available_parallelism()`.
    Cores,
    /// The effective value of `listen`.
    ListenAddress,
    /// This node's own entry in `controller.quorum.voters`, resolved to an
    /// address; none without voters (a single node needs no controller
    /// listener). Comes after `node.id` and the voters in the table.
    OwnVoterAddress,
    /// Topic keys: the value inherited from the broker synonym.
    Inherited,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Validator {
    /// Inclusive; also clipped to the range of the config's type.
    Range {
        min: i64,
        max: i64,
    },
    Ratio,
    /// A number at least 0 (Kafka's `atLeast(0)` on a double).
    NonNegative,
    Bool,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
    ListenAddress,
    /// A listen address, or empty for "off".
    OptionalListenAddress,
    HostPort,
    Path,
    LogLevel,
    /// Kafka's `ID@HOST:PORT,...`, or empty.
    QuorumVoters,
    /// Any text; a key whose structure `listeners.rs` checks with the keys
    /// it depends on.
    Text,
    /// An integer in `min..=max`, or the one value `or` (Kafka's gzip level:
    /// 1 to 9, or -1 for the codec's default).
    RangeOr {
        min: i64,
        max: i64,
        or: i64,
    },
    /// Kafka's throttled-replica list: `*`, or comma-separated
    /// `PARTITION:BROKER` pairs, or empty.
    ThrottledReplicas,
    /// A Kafka release as `message.format.version` takes it: `0.10.2`,
    /// `2.8`, `3.0-IV1`.
    KafkaVersion,
    /// A boolean that must be false: the feature is not in Sluice, and Kafka
    /// refuses `true` too while it is off on the broker. The text says why.
    FalseOnly(&'static str),
    /// Kafka's `super.users`: `User:a;User:b`, or empty.
    SuperUsers,
}

#[derive(Debug)]
pub(super) struct ConfigDef {
    pub(super) name: &'static str,
    pub(super) scope: Scope,
    pub(super) config_type: ConfigType,
    pub(super) default: DefaultValue,
    pub(super) validator: Validator,
    pub(super) read_only: bool,
    /// Topic keys: the broker key they inherit from (Kafka's synonym).
    pub(super) synonym: Option<&'static str>,
    pub(super) documentation: &'static str,
}

const fn at_least(min: i64) -> Validator {
    Validator::Range { min, max: LONG_MAX }
}

const fn range(min: i64, max: i64) -> Validator {
    Validator::Range { min, max }
}

const fn range_or(min: i64, max: i64, or: i64) -> Validator {
    Validator::RangeOr { min, max, or }
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

/// A topic key with no broker synonym (Kafka has none either): its default
/// is fixed.
const fn topic_only(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    validator: Validator,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        default: DefaultValue::Value(default),
        synonym: None,
        ..topic(name, "", config_type, validator, documentation)
    }
}

use ConfigType as T;
use DefaultValue::{Cores, ListenAddress, Null, OwnVoterAddress, Value as V};

const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const PROCESS_ROLES: &[&str] = &["broker", "controller"];
const FLUSH_DOC: &str = "Messages appended to a partition before an fsync is forced. Sluice's \
    default is 1 (Kafka's is 9223372036854775807): every produced batch is fsynced before it is \
    acknowledged, which is what makes acknowledged acks=all data survive a crash on a single \
    node. Storage syncs once per batch, not per record. Larger values answer before the sync and \
    can lose acknowledged data in a crash.";
/// Appended to the documentation of keys Sluice accepts and reports but does
/// not act on.
macro_rules! ignored {
    ($doc:literal) => {
        concat!($doc, " Accepted for compatibility; Sluice ignores it.")
    };
}
const GZIP_LEVEL: Validator = range_or(1, 9, -1);
const LZ4_LEVEL: Validator = range(1, 17);
/// zstd's negative levels go down to -(1 << 17).
const ZSTD_LEVEL: Validator = range(-131_072, 22);
const NO_TIERED_STORAGE: &str = "tiered storage is not supported: Sluice keeps every segment \
    locally (Kafka also refuses true while remote.log.storage.system.enable is false)";

/// Every config Sluice knows, broker keys then topic keys. DescribeConfigs
/// reports them sorted by name.
#[rustfmt::skip]
pub(super) static DEFINITIONS: &[ConfigDef] = &[
    // Sluice's own keys (the flags) and runtime bounds.
    broker("node.id", T::Int, V("1"), range(0, INT_MAX), true,
        "The id of this node in the cluster, as Metadata reports it. Flag: --node-id."),
    broker("listen", T::String, V("127.0.0.1:9092"), Validator::ListenAddress, true,
        "IP:PORT the Kafka listener binds (Kafka: listeners). Port 0 picks a free port. Flag: --listen."),
    broker("metrics", T::String, V(""), Validator::OptionalListenAddress, true,
        "IP:PORT of the Prometheus metrics endpoint (HTTP GET /metrics), served by shard 0, \
         with the probes GET /health (200 while the process answers) and GET /ready (200 once \
         this broker joined the quorum, is registered and unfenced and opened its partitions; \
         503 with the reason otherwise); empty turns it off. Flag: --metrics."),
    broker("advertise", T::String, ListenAddress, Validator::HostPort, true,
        "HOST:PORT that Metadata tells clients to connect to (Kafka: advertised.listeners). \
        Default: the listen address; required when listening on an unspecified address such as 0.0.0.0. \
        Flag: --advertise."),
    // Kafka's listener and security keys (src/config/listeners.rs).
    broker("listeners", T::List, V(""), Validator::Text, true,
        "Kafka's NAME://IP:PORT,... listeners, e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9094; \
        every shard accepts on every listener. Empty: one PLAINTEXT listener on listen."),
    broker("advertised.listeners", T::List, V(""), Validator::Text, true,
        "NAME://HOST:PORT that Metadata tells clients who connected through listener NAME. \
        Default: each listener's own address (required for one on 0.0.0.0)."),
    broker("listener.security.protocol.map", T::List,
        V("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"), Validator::Text, true,
        "NAME:PROTOCOL pairs: the security protocol of each listener name."),
    broker("inter.broker.listener.name", T::String, V(""), Validator::Text, true,
        "The listener other brokers replicate through; registered with the controller. \
        Default: the first PLAINTEXT listener, else the first listener. Over TLS brokers verify each \
        other against ssl.truststore.location; over SASL they use inter.broker.sasl.username."),
    broker("inter.broker.sasl.username", T::String, V(""), Validator::Text, true,
        "Sluice's key: the user this broker authenticates as (SASL/PLAIN) on a SASL inter-broker \
        listener (Kafka: the listener's JAAS config). The user is a SCRAM user like any other."),
    broker("inter.broker.sasl.password", T::Password, V(""), Validator::Text, true,
        "Sluice's key: the password of inter.broker.sasl.username. Never shown by DescribeConfigs."),
    broker("controller.listener.names", T::List, V(""), Validator::Text, true,
        "Listener names of the controller (Raft) listener. A listener so named in listeners is \
        not a Kafka listener: its address is controller.listen. PLAINTEXT, or SSL: then controllers \
        talk mutual TLS (ssl.keystore.location shown, peers verified against \
        ssl.truststore.location, client certificates required)."),
    broker("ssl.keystore.location", T::String, V(""), Validator::Text, true,
        "PEM file with this broker's certificate chain (and its private key, unless \
        ssl.key.location names another file). Re-read when its modification time changes."),
    broker("ssl.key.location", T::String, V(""), Validator::Text, true,
        "Sluice's key: a PEM file with the private key of ssl.keystore.location (PKCS#8, PKCS#1 or SEC1). \
        Empty: the key is in the keystore file."),
    broker("ssl.truststore.location", T::String, V(""), Validator::Text, true,
        "PEM file of the CA certificates that client certificates must chain to."),
    broker("ssl.client.auth", T::String, V("none"), Validator::OneOf(&["required", "requested", "none"]), true,
        "Client certificates on SSL listeners (not SASL_SSL, as Kafka): required, requested (verified when sent) or none."),
    broker("sasl.enabled.mechanisms", T::List, V("SCRAM-SHA-256,SCRAM-SHA-512"),
        Validator::ListOf(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]), true,
        "SASL mechanisms served on SASL listeners. PLAIN checks the password against the user's \
        SCRAM credential (SCRAM-SHA-512, else SCRAM-SHA-256)."),
    broker("connections.max.reauth.ms", T::Long, V("0"), at_least(0), true,
        "KIP-368: a SASL session lasts this long; the connection is closed after it unless the \
        client authenticates again. 0: sessions never expire."),
    broker("max.connections", T::Int, V("2147483647"), at_least(1), true,
        "Connections this broker accepts at once, over all listeners; more are closed at once."),
    broker("max.connections.per.ip", T::Int, V("2147483647"), at_least(1), true,
        "Connections this broker accepts at once from one IP address."),
    broker("connections.max.idle.ms", T::Long, V("600000"), at_least(1), true,
        "A connection with no request for this long is closed."),
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
    broker("fetch.cold.read", T::String, V("read"), Validator::OneOf(&["read", "sendfile"]), true,
        "How fetches get data the read cache does not hold. read: io_uring direct-I/O reads into \
        the cache, with read-ahead, so the shard never waits on the disk. sendfile: zero-copy from \
        the kernel's page cache, which reads the disk on the shard's thread when the data is cold."),
    broker("fetch.read.ahead.bytes", T::Long, V("4194304"), at_least(0), true,
        "With fetch.cold.read=read: bytes read ahead of a consumer (and of a follower catching up) \
        per chunk, from the disk into the read cache. 0 disables read-ahead."),
    broker("mesh.channel.capacity", T::Int, V("1024"), range(1, INT_MAX), true,
        "Bound of each shard-to-shard channel. A full channel is backpressure, never a blocked reactor."),
    broker("shutdown.timeout.ms", T::Long, V("25000"), range(1, LONG_MAX), true,
        "The longest a stop on SIGTERM or SIGINT may take (closing listeners, checkpoints, closing \
        partitions); past it the process logs what it was doing and exits with status 1, as a \
        crash would, which recovery handles. Below the runtime's grace period (Kubernetes: 30 s \
        by default; docker stop: 10 s unless --stop-timeout), so Sluice stops itself first."),
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
    broker("offsets.topic.replication.factor", T::Short, V("3"), range(1, SHORT_MAX), true,
        "Replication factor of __consumer_offsets. It is capped to the number of live brokers when \
        __consumer_offsets is created, so a single node creates it with 1."),
    broker("offsets.retention.minutes", T::Int, V("10080"), at_least(1), true,
        "Committed offsets of a group that has been empty this long are deleted."),
    broker("offsets.retention.check.interval.ms", T::Long, V("600000"), at_least(1), true,
        "How often expired committed offsets are looked for."),
    broker("transaction.state.log.num.partitions", T::Int, V("50"), at_least(1), true,
        "Partitions of __transaction_state; a transactional id's coordinator leads partition abs(hash(id)) % this."),
    broker("transaction.state.log.replication.factor", T::Short, V("3"), range(1, SHORT_MAX), true,
        "Replication factor of __transaction_state, capped to the live brokers when it is created."),
    broker("transaction.max.timeout.ms", T::Int, V("900000"), at_least(1), true,
        "The largest transaction.timeout.ms a producer may ask for (larger: INVALID_TRANSACTION_TIMEOUT)."),
    broker("transaction.abort.timed.out.transaction.cleanup.interval.ms", T::Int, V("10000"), at_least(1), true,
        "How often the transaction coordinator aborts transactions open longer than their timeout."),
    broker("group.initial.rebalance.delay.ms", T::Int, V("3000"), at_least(0), true,
        "How long the coordinator waits for more members before the first rebalance of an empty group."),
    broker("group.min.session.timeout.ms", T::Int, V("6000"), at_least(0), true,
        "The smallest session timeout a consumer may ask for."),
    broker("group.max.session.timeout.ms", T::Int, V("1800000"), at_least(0), true,
        "The largest session timeout a consumer may ask for."),
    broker("group.max.size", T::Int, V("2147483647"), at_least(1), true,
        "The most members one consumer group may have."),
    broker("group.consumer.session.timeout.ms", T::Int, V("45000"), at_least(1), true,
        "KIP-848 consumer groups (group.protocol=consumer): a member that sends no heartbeat for this long is removed."),
    broker("group.consumer.heartbeat.interval.ms", T::Int, V("5000"), at_least(1), true,
        "KIP-848 consumer groups: how often members are told to heartbeat."),
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
    broker("log.cleaner.backoff.ms", T::Long, V("15000"), at_least(0), true,
        "How often each shard looks for compacted logs dirty enough to clean (the dirtiest first)."),
    broker("log.cleaner.io.max.bytes.per.second", T::Double, V("1.7976931348623157e308"), Validator::NonNegative, false,
        "The most bytes per second each shard's cleaner rewrites (Kafka's default: no limit)."),
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
        "Default message.timestamp.difference.max.ms (deprecated in Kafka for the before/after pair; it bounds either side left at 9223372036854775807)."),
    broker("log.message.timestamp.before.max.ms", T::Long, V("9223372036854775807"), at_least(0), false,
        "Default message.timestamp.before.max.ms: how far in the past a CreateTime timestamp may be."),
    // Kafka 4.0's default (KIP-1030): one hour ahead of the broker's clock.
    broker("log.message.timestamp.after.max.ms", T::Long, V("3600000"), at_least(0), false,
        "Default message.timestamp.after.max.ms: how far in the future a CreateTime timestamp may be."),
    broker("log.preallocate", T::Boolean, V("false"), Validator::Bool, false,
        "Default preallocate: allocate a segment's file at full size when it is created."),
    broker("min.insync.replicas", T::Int, V("1"), at_least(1), false,
        "Default min.insync.replicas: replicas that must have a batch before acks=all is answered."),
    broker("compression.type", T::String, V("producer"), Validator::OneOf(COMPRESSION_TYPES), false,
        "Default compression.type: producer keeps the producer's codec; uncompressed, gzip, snappy, \
        lz4 or zstd store batches in that codec."),
    broker("compression.gzip.level", T::Int, V("-1"), GZIP_LEVEL, false,
        ignored!("Default compression.gzip.level: 1 to 9, or -1 for the codec's default.")),
    broker("compression.lz4.level", T::Int, V("9"), LZ4_LEVEL, false,
        ignored!("Default compression.lz4.level: 1 to 17.")),
    broker("compression.zstd.level", T::Int, V("3"), ZSTD_LEVEL, false,
        ignored!("Default compression.zstd.level: -131072 to 22.")),
    broker("log.message.format.version", T::String, V("3.0-IV1"), Validator::KafkaVersion, true,
        ignored!("Default message.format.version (deprecated in Kafka 3.0, which ignores it too: \
        batches are always stored in format v2).")),
    broker("log.message.downconversion.enable", T::Boolean, V("true"), Validator::Bool, false,
        ignored!("Default message.downconversion.enable: convert batches to an older format for \
        old fetchers. Sluice always serves format v2.")),
    broker("log.local.retention.ms", T::Long, V("-2"), at_least(-2), false,
        ignored!("Default local.retention.ms of tiered storage; -2: retention.ms.")),
    broker("log.local.retention.bytes", T::Long, V("-2"), at_least(-2), false,
        ignored!("Default local.retention.bytes of tiered storage; -2: retention.bytes.")),
    broker("unclean.leader.election.enable", T::Boolean, V("false"), Validator::Bool, false,
        "Default unclean.leader.election.enable: allow an out-of-sync replica to become leader, losing data."),
    // Authorization (ACLs; src/security/authorizer.rs).
    broker("authorizer.class.name", T::Class, V(""), Validator::OneOf(crate::security::authorizer::AUTHORIZER_CLASS_NAMES), true,
        "Turns ACL authorization on: org.apache.kafka.metadata.authorizer.StandardAuthorizer (or \
        kafka.security.authorizer.AclAuthorizer; both mean Sluice's built-in authorizer). Empty \
        (the default): off, every request is allowed."),
    broker("super.users", T::String, V(""), Validator::SuperUsers, true,
        "Principals that may do everything when the authorizer is on, separated by semicolons: \
        User:admin;User:broker. On a PLAINTEXT listener every client is User:ANONYMOUS."),
    broker("allow.everyone.if.no.acl.found", T::Boolean, V("false"), Validator::Bool, true,
        "With the authorizer on: allow a request on a resource that no ACL covers."),
    // Client quotas (src/security/quota.rs).
    broker("quota.producer.default", T::Long, V("9223372036854775807"), at_least(1), true,
        "Produce bytes per second each client id may send to a broker (per shard it connects to); \
        a client over it is throttled (throttle_time_ms, and its connection muted). Default: no quota."),
    broker("quota.consumer.default", T::Long, V("9223372036854775807"), at_least(1), true,
        "Fetch bytes per second each client id may receive from a broker (per shard it connects to); \
        followers' fetches are not counted. Default: no quota."),
    // Kafka's cluster keys: the Raft metadata quorum (KRaft) and replication.
    broker("process.roles", T::List, V("broker,controller"), Validator::ListOf(PROCESS_ROLES), true,
        "The roles of this node: broker, controller, or both. Only the combined broker,controller \
        is supported in this version."),
    broker("controller.quorum.voters", T::List, V(""), Validator::QuorumVoters, true,
        "The Raft metadata quorum: ID@HOST:PORT of each voter's controller listener, comma-separated, \
        e.g. 1@127.0.0.1:9191,2@127.0.0.1:9192,3@127.0.0.1:9193. node.id must be among them. Empty: \
        a single-node cluster, this node the only voter. Flag: --controller-quorum-voters."),
    broker("controller.listen", T::String, OwnVoterAddress, Validator::ListenAddress, true,
        "IP:PORT the controller (Raft) listener binds (Kafka: the CONTROLLER listener). Default: \
        this node's own entry in controller.quorum.voters, resolved at start-up; unset on a single \
        node. Flag: --controller-listen."),
    broker("broker.session.timeout.ms", T::Int, V("9000"), at_least(1), true,
        "A broker that sends no heartbeat to the controller for this long is fenced."),
    broker("broker.heartbeat.interval.ms", T::Int, V("2000"), at_least(1), true,
        "How often a broker sends a heartbeat to the controller; less than broker.session.timeout.ms."),
    broker("controller.quorum.election.timeout.ms", T::Int, V("1000"), at_least(1), true,
        "How long a voter goes without hearing from the leader before it calls an election."),
    broker("metadata.log.max.record.bytes.between.snapshots", T::Long, V("20971520"), at_least(1), true,
        "Bytes of metadata log records after the last snapshot that make the controller write a new one."),
    broker("replica.lag.time.max.ms", T::Long, V("30000"), at_least(1), true,
        "A follower that has not caught up to the leader's log end for this long leaves the ISR; \
        at least replica.fetch.wait.max.ms."),
    broker("replica.fetch.max.bytes", T::Int, V("1048576"), at_least(0), true,
        "Bytes a follower asks for per partition in one fetch (a larger first batch is still returned)."),
    broker("replica.fetch.wait.max.ms", T::Int, V("500"), at_least(0), true,
        "The longest a follower's fetch waits on the leader for replica.fetch.min.bytes."),
    broker("replica.fetch.min.bytes", T::Int, V("1"), at_least(0), true,
        "Bytes a follower's fetch waits for before the leader answers."),
    broker("replica.fetch.response.max.bytes", T::Int, V("10485760"), at_least(0), true,
        "Bytes a follower asks for in one whole fetch response."),
    broker("replica.fetch.backoff.ms", T::Int, V("1000"), at_least(0), true,
        "How long a follower waits after a fetch error before it fetches again."),
    broker("max.incremental.fetch.session.cache.slots", T::Int, V("1000"), at_least(0), true,
        "Incremental fetch sessions (KIP-227) the broker keeps, split evenly over its shards (each \
        connection's sessions live on the shard that accepted it); 0 disables sessions."),
    broker("min.incremental.fetch.session.eviction.ms", T::Long, V("120000"), at_least(0), true,
        "A fetch session unused for longer is stale: a new session may take its slot. A session \
        created less long ago is safe from eviction by consumers (Kafka: a constant)."),
    broker("auto.leader.rebalance.enable", T::Boolean, V("true"), Validator::Bool, true,
        "Move leadership back to each partition's preferred replica when brokers are imbalanced."),
    broker("leader.imbalance.check.interval.seconds", T::Long, V("300"), at_least(1), true,
        "How often the controller checks leader imbalance."),
    broker("leader.imbalance.per.broker.percentage", T::Int, V("10"), range(0, 100), true,
        "Share of a broker's partitions led elsewhere, in percent, above which leadership is rebalanced."),
    // Topic keys, each inheriting from its broker synonym.
    topic("cleanup.policy", "log.cleanup.policy", T::List, Validator::ListOf(CLEANUP_POLICIES),
        "delete: drop old segments under retention.ms/retention.bytes; compact: keep the last record \
        per key; compact,delete: both."),
    topic("compression.type", "compression.type", T::String, Validator::OneOf(COMPRESSION_TYPES),
        "The codec batches are stored in; producer keeps whatever the producer sent."),
    topic("compression.gzip.level", "compression.gzip.level", T::Int, GZIP_LEVEL,
        ignored!("The gzip level when compression.type is gzip: 1 to 9, or -1 for the codec's default.")),
    topic("compression.lz4.level", "compression.lz4.level", T::Int, LZ4_LEVEL,
        ignored!("The lz4 level when compression.type is lz4: 1 to 17.")),
    topic("compression.zstd.level", "compression.zstd.level", T::Int, ZSTD_LEVEL,
        ignored!("The zstd level when compression.type is zstd: -131072 to 22.")),
    topic("delete.retention.ms", "log.cleaner.delete.retention.ms", T::Long, at_least(0),
        "How long tombstones stay in a compacted topic, so consumers see the delete."),
    topic("file.delete.delay.ms", "log.segment.delete.delay.ms", T::Long, at_least(0),
        "How long a deleted segment's files stay before removal."),
    topic_only("follower.replication.throttled.replicas", T::List, "", Validator::ThrottledReplicas,
        ignored!("Replicas whose follower fetches are throttled: PARTITION:BROKER pairs, or * for all.")),
    topic("flush.messages", "log.flush.interval.messages", T::Long, at_least(1), FLUSH_DOC),
    topic("flush.ms", "log.flush.interval.ms", T::Long, at_least(0),
        "The longest a written record may stay unsynced."),
    topic("index.interval.bytes", "log.index.interval.bytes", T::Int, at_least(0),
        "Bytes of log between two offset-index entries."),
    topic_only("leader.replication.throttled.replicas", T::List, "", Validator::ThrottledReplicas,
        ignored!("Replicas whose leader side is throttled: PARTITION:BROKER pairs, or * for all.")),
    topic("local.retention.bytes", "log.local.retention.bytes", T::Long, at_least(-2),
        ignored!("Bytes kept locally when tiered storage is on; -2: retention.bytes.")),
    topic("local.retention.ms", "log.local.retention.ms", T::Long, at_least(-2),
        ignored!("How long segments stay locally when tiered storage is on; -2: retention.ms.")),
    topic("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", T::Long, at_least(1),
        "Records older than this are eligible for compaction regardless of dirtiness."),
    topic("max.message.bytes", "message.max.bytes", T::Int, at_least(0),
        "The largest record batch the topic accepts, after compression."),
    topic("message.downconversion.enable", "log.message.downconversion.enable", T::Boolean, Validator::Bool,
        ignored!("Convert batches to an older format for old fetchers. Sluice always serves format v2.")),
    topic("message.format.version", "log.message.format.version", T::String, Validator::KafkaVersion,
        ignored!("Deprecated: the format batches are stored in; Kafka 3.0+ ignores it too.")),
    topic("message.timestamp.difference.max.ms", "log.message.timestamp.difference.max.ms", T::Long, at_least(0),
        "Deprecated: the largest difference between a CreateTime timestamp and the broker's clock; bounds a side whose before/after key is 9223372036854775807."),
    topic("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", T::Long, at_least(0),
        "How far in the past a CreateTime timestamp may be; a record older is refused with INVALID_TIMESTAMP."),
    topic("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", T::Long, at_least(0),
        "How far in the future a CreateTime timestamp may be; a record further ahead is refused with INVALID_TIMESTAMP."),
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
    topic_only("remote.log.copy.disable", T::Boolean, "false", Validator::Bool,
        ignored!("Stop copying segments to tiered storage.")),
    topic_only("remote.log.delete.on.disable", T::Boolean, "false", Validator::Bool,
        ignored!("Delete the tiered copy when remote.storage.enable is turned off.")),
    topic_only("remote.storage.enable", T::Boolean, "false", Validator::FalseOnly(NO_TIERED_STORAGE),
        "Tiered storage. Only false is accepted: Sluice keeps every segment locally."),
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
pub(super) static LADDERS: &[&[(&str, i64)]] = &[
    &[
        ("log.retention.ms", 1),
        ("log.retention.minutes", MS_PER_MINUTE),
        ("log.retention.hours", MS_PER_HOUR),
    ],
    &[("log.roll.ms", 1), ("log.roll.hours", MS_PER_HOUR)],
];

pub(super) fn definition(scope: Scope, name: &str) -> Option<&'static ConfigDef> {
    DEFINITIONS
        .iter()
        .find(|def| def.scope == scope && def.name == name)
}

/// The rungs from `name` down its ladder, or `name` alone (factor 1).
pub(super) fn ladder(name: &'static str) -> Vec<(&'static str, i64)> {
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
