//! Building [`BrokerConfig`]: read the file, layer built-in default < file
//! < environment (`env.rs`) < `--set KEY=VALUE` < dedicated flags, check
//! the rules that involve more than one key, and fill the typed fields. Also DescribeConfigs(BROKER)
//! and runtime (AlterConfigs) overrides over the static values.
//!
//! Must not: read anything but the one config file, or change a
//! `BrokerConfig` once built (`with_dynamic` returns a new one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cli::{flatten_toml, parse_cli, Cli};
use super::cluster;
use super::definitions::{definition, ConfigDef, Scope, DEFINITIONS};
use super::env::{env_settings, EnvSetting};
use super::listeners;
use super::topic::resolve_topic;
use super::validate::{parse_listen, validate};
use super::values::{Setting, Values};
use super::{
    BrokerConfig, ConfigEntry, ConfigError, ConfigSource, ConfigType, TopicConfig,
    DEFAULT_CONFIG_FILE,
};

impl BrokerConfig {
    /// Parse `args` (including argv[0]), read the config file (`--config`,
    /// else [`DEFAULT_CONFIG_FILE`] if present), apply the process's
    /// `SLUICE_SET_*` / `SLUICE_<FLAG>` variables and the flags, validate.
    /// `--help` and `--version` come back as errors of kind Help/Version;
    /// call [`ConfigError::exit`] on any error.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<BrokerConfig, ConfigError> {
        Self::from_args_and_env(args, std::env::vars_os())
    }

    /// [`BrokerConfig::from_args`] with the environment given as `env`.
    pub fn from_args_and_env<I, E>(args: I, env: E) -> Result<BrokerConfig, ConfigError>
    where
        I: IntoIterator<Item = String>,
        E: IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    {
        let cli = parse_cli(args)?;
        let env = env_settings(env)?;
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
            &env,
        )
    }

    /// Built-in defaults and `text` as if read from a file; for tests and
    /// tools. No flags.
    pub fn from_toml_str(text: &str) -> Result<BrokerConfig, ConfigError> {
        let cli = parse_cli(["sluice".to_string()])?;
        Self::build(&cli, Some((Path::new("<toml>"), text)), &[])
    }

    fn build(
        cli: &Cli,
        file: Option<(&Path, &str)>,
        env: &[EnvSetting],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut values = Values::default();
        if let Some((path, text)) = file {
            let origin = path.display().to_string();
            for (key, value) in flatten_toml(text, &origin)? {
                values.set(&key, &value, &origin, false)?;
            }
        }
        for (key, value, origin) in env {
            values.set(key, value, origin, true)?;
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
        let security = listeners::security_config(&values)?;
        let inter_broker = security.inter_broker();
        let listen = inter_broker.address;
        let (advertise_host, advertise_port) = (
            inter_broker.advertised_host.clone(),
            inter_broker.advertised_port,
        );
        let controller_listen = match values.source("controller.listen") {
            ConfigSource::DefaultConfig => security.controller_listener,
            _ => None,
        }
        .or_else(|| values.get("controller.listen").and_then(parse_listen));
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
            fetch_sendfile: values.text("fetch.cold.read") == "sendfile",
            read_ahead_bytes: values.unsigned("fetch.read.ahead.bytes"),
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
            transaction_state_log_num_partitions: int("transaction.state.log.num.partitions"),
            transaction_state_log_replication_factor: short(
                "transaction.state.log.replication.factor",
            ),
            transaction_max_timeout_ms: values.unsigned("transaction.max.timeout.ms"),
            transaction_cleanup_interval_ms: values
                .unsigned("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
            group_initial_rebalance_delay_ms: values.unsigned("group.initial.rebalance.delay.ms"),
            group_min_session_timeout_ms: values.unsigned("group.min.session.timeout.ms"),
            group_max_session_timeout_ms: values.unsigned("group.max.session.timeout.ms"),
            group_max_size: u32::try_from(values.unsigned("group.max.size")).expect("Int"),
            group_consumer_session_timeout_ms: values.unsigned("group.consumer.session.timeout.ms"),
            group_consumer_heartbeat_interval_ms: values
                .unsigned("group.consumer.heartbeat.interval.ms"),
            process_roles: values
                .text("process.roles")
                .split(',')
                .map(str::to_string)
                .collect(),
            controller_listen,
            controller_quorum_voters: cluster::voters(&values),
            broker_session_timeout_ms: values.unsigned("broker.session.timeout.ms"),
            broker_heartbeat_interval_ms: values.unsigned("broker.heartbeat.interval.ms"),
            controller_quorum_election_timeout_ms: values
                .unsigned("controller.quorum.election.timeout.ms"),
            metadata_log_max_record_bytes_between_snapshots: values
                .unsigned("metadata.log.max.record.bytes.between.snapshots"),
            replica_lag_time_max_ms: values.unsigned("replica.lag.time.max.ms"),
            replica_fetch_max_bytes: int("replica.fetch.max.bytes"),
            replica_fetch_wait_max_ms: int("replica.fetch.wait.max.ms"),
            replica_fetch_min_bytes: int("replica.fetch.min.bytes"),
            replica_fetch_response_max_bytes: int("replica.fetch.response.max.bytes"),
            replica_fetch_backoff_ms: values.unsigned("replica.fetch.backoff.ms"),
            max_incremental_fetch_session_cache_slots: size(
                "max.incremental.fetch.session.cache.slots",
            ),
            min_incremental_fetch_session_eviction_ms: values
                .unsigned("min.incremental.fetch.session.eviction.ms"),
            unclean_leader_election_enable: values.boolean("unclean.leader.election.enable"),
            quota_producer_default: values.unsigned("quota.producer.default"),
            quota_consumer_default: values.unsigned("quota.consumer.default"),
            authorizer: crate::security::authorizer::AuthorizerConfig {
                enabled: !values.text("authorizer.class.name").is_empty(),
                super_users: crate::security::authorizer::parse_super_users(
                    values.text("super.users"),
                )
                .expect("validated super.users"),
                allow_everyone_if_no_acl_found: values.boolean("allow.everyone.if.no.acl.found"),
            },
            auto_leader_rebalance_enable: values.boolean("auto.leader.rebalance.enable"),
            leader_imbalance_check_interval_seconds: values
                .unsigned("leader.imbalance.check.interval.seconds"),
            leader_imbalance_per_broker_percentage: u32::try_from(
                values.unsigned("leader.imbalance.per.broker.percentage"),
            )
            .expect("validated as 0 to 100"),
            log_level: values.text("log.level").to_string(),
            security,
            shutdown_timeout_ms: values.unsigned("shutdown.timeout.ms"),
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
        let sensitive = def.config_type == ConfigType::Password;
        ConfigEntry {
            name: def.name.to_string(),
            value: (!sensitive)
                .then(|| self.values.get(def.name).map(str::to_string))
                .flatten(),
            source,
            read_only: def.read_only,
            is_default: source == ConfigSource::DefaultConfig,
            sensitive,
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

    /// Kafka's `LogConfig.validateValues`, the rule between keys that each
    /// pass alone: a topic's effective `min.compaction.lag.ms` (its override,
    /// else this broker's default) may not exceed its effective
    /// `max.compaction.lag.ms`. The error is Kafka's wording.
    pub fn check_topic_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let topic = self.topic_config(overrides);
        if topic.min_compaction_lag_ms > topic.max_compaction_lag_ms {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                topic.min_compaction_lag_ms, topic.max_compaction_lag_ms
            ));
        }
        Ok(())
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
                next.security = self.security.clone();
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
        BrokerConfig::build(&cli, None, &[]).expect("built-in defaults are valid")
    }
}

/// Rules that involve more than one key.
fn check_cross_key_rules(values: &Values) -> Result<(), ConfigError> {
    let session_min = values.integer("group.min.session.timeout.ms");
    let session_max = values.integer("group.max.session.timeout.ms");
    if session_min > session_max {
        let key = "group.min.session.timeout.ms";
        let message = format!("{session_min} is above group.max.session.timeout.ms {session_max}");
        return Err(ConfigError::invalid(key, values.origin_of(key), message));
    }
    // Kafka's rule: members must get several chances to heartbeat.
    let consumer_session = values.integer("group.consumer.session.timeout.ms");
    let consumer_interval = values.integer("group.consumer.heartbeat.interval.ms");
    if consumer_interval >= consumer_session {
        let key = "group.consumer.heartbeat.interval.ms";
        let message = format!(
            "{consumer_interval} is not below group.consumer.session.timeout.ms {consumer_session}"
        );
        return Err(ConfigError::invalid(key, values.origin_of(key), message));
    }
    cluster::check_rules(values)
}
