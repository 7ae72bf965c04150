//! Configuration from the environment, for containers: every broker key as
//! `SLUICE_SET_<KEY>` (the key upper-cased, `.` as `_`:
//! `SLUICE_SET_LOG_RETENTION_MS` is `log.retention.ms`), and each dedicated
//! flag as `SLUICE_<FLAG>` (`SLUICE_NODE_ID`, `SLUICE_LISTEN`,
//! `SLUICE_CONTROLLER_QUORUM_VOTERS`, ...).
//!
//! Owns: turning environment variables into `(key, value, origin)` for
//! `values.rs`. Precedence (applied in `broker.rs`): default < file <
//! environment < `--set` < dedicated flags; within the environment, a
//! `SLUICE_<FLAG>` wins over the `SLUICE_SET_<KEY>` of the same key, as the
//! flag wins over `--set`.
//!
//! Must not: read the process environment itself (the caller passes it, so
//! tests need not touch global state), or know any key: the names come from
//! `DEFINITIONS` and the flag list in `cli.rs`.
//!
//! Decisions:
//! - An unknown `SLUICE_SET_` key stops start-up naming the variable, as an
//!   unknown key in a file does: a misspelt variable in a compose file must
//!   not be silently ignored. Other `SLUICE_` variables that are not flags
//!   are left alone: the test harness and scripts use `SLUICE_BIN` and
//!   friends, and they are not the broker's.
//! - The mapping needs no second table: no key has `_` or `-` in its name
//!   (a unit test checks it), so `_` back to `.` is unambiguous.

use std::ffi::OsString;

use super::cli::FLAG_KEYS;
use super::definitions::{Scope, DEFINITIONS};
use super::validate::unknown_key_message;
use super::ConfigError;

/// Every broker key, settable as `SLUICE_SET_<KEY>`.
pub(super) const ENV_SET_PREFIX: &str = "SLUICE_SET_";
/// A dedicated flag `--node-id` is `SLUICE_NODE_ID`.
pub(super) const ENV_FLAG_PREFIX: &str = "SLUICE_";

/// One setting read from the environment: the key, its text, and the
/// origin an error names (`environment variable SLUICE_SET_NODE_ID`).
pub(super) type EnvSetting = (&'static str, String, String);

/// `log.retention.ms` -> `LOG_RETENTION_MS`.
pub(super) fn env_suffix(key: &str) -> String {
    key.to_ascii_uppercase().replace('.', "_")
}

/// The settings in `vars`, `SLUICE_SET_*` first and the flag variables
/// after them, so that applying them in order gives the flags precedence.
pub(super) fn env_settings<I>(vars: I) -> Result<Vec<EnvSetting>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut set = Vec::new();
    let mut flags = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if let Some(suffix) = name.strip_prefix(ENV_SET_PREFIX) {
            let key = set_key(name, suffix)?;
            set.push((key, text(name, value)?, origin(name)));
        } else if let Some(key) = flag_key(name) {
            flags.push((key, text(name, value)?, origin(name)));
        }
    }
    // The environment's order is arbitrary; sort so errors are stable.
    set.sort();
    flags.sort();
    set.extend(flags);
    Ok(set)
}

fn origin(name: &str) -> String {
    format!("environment variable {name}")
}

fn text(name: &str, value: OsString) -> Result<String, ConfigError> {
    value
        .into_string()
        .map_err(|_| ConfigError::invalid("", &origin(name), "the value is not valid UTF-8"))
}

fn set_key(name: &str, suffix: &str) -> Result<&'static str, ConfigError> {
    let broker_keys = DEFINITIONS.iter().filter(|def| def.scope == Scope::Broker);
    if let Some(def) = broker_keys
        .clone()
        .find(|def| env_suffix(def.name) == suffix)
    {
        return Ok(def.name);
    }
    let guessed = suffix.to_ascii_lowercase().replace('_', ".");
    let message = format!(
        "'{guessed}': {} ({ENV_SET_PREFIX}<KEY> takes a broker config key upper-cased, with \
         '.' as '_'; see config/README.md)",
        unknown_key_message(&guessed, Scope::Broker)
    );
    Err(ConfigError::invalid("", &origin(name), message))
}

fn flag_key(name: &str) -> Option<&'static str> {
    FLAG_KEYS
        .iter()
        .find(|(_, flag)| flag_variable(flag) == name)
        .map(|(key, _)| *key)
}

/// `--node-id` -> `SLUICE_NODE_ID`.
pub(super) fn flag_variable(flag: &str) -> String {
    let flag = flag.trim_start_matches("--").replace('-', "_");
    format!("{ENV_FLAG_PREFIX}{}", flag.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    #[test]
    fn set_variables_name_keys_and_flag_variables_come_last() {
        let settings = env_settings(vars(&[
            ("SLUICE_NODE_ID", "3"),
            ("SLUICE_SET_LOG_RETENTION_MS", "1000"),
            ("SLUICE_SET_NODE_ID", "2"),
            ("SLUICE_CONTROLLER_QUORUM_VOTERS", "1@a:1"),
            ("SLUICE_BIN", "/usr/bin/sluice"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let keys: Vec<_> = settings
            .iter()
            .map(|(key, value, _)| (*key, value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("log.retention.ms", "1000"),
                ("node.id", "2"),
                ("controller.quorum.voters", "1@a:1"),
                ("node.id", "3"),
            ]
        );
        assert_eq!(settings[1].2, "environment variable SLUICE_SET_NODE_ID");
    }

    #[test]
    fn an_unknown_set_variable_is_an_error_naming_it() {
        let error = env_settings(vars(&[("SLUICE_SET_LOG_RETENTION_MSS", "1")])).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("environment variable SLUICE_SET_LOG_RETENTION_MSS"),
            "{text}"
        );
        assert!(text.contains("did you mean 'log.retention.ms'"), "{text}");
    }

    #[test]
    fn precedence_is_file_then_environment_then_set_then_flags() {
        let path = std::env::temp_dir().join(format!("sluice-env-{}.toml", std::process::id()));
        std::fs::write(&path, "node.id = 1\nnum.partitions = 2\nshards = 1\n").unwrap();
        let build = |extra: &[&str], env: &[(&str, &str)]| {
            let mut args = vec!["sluice", "-c", path.to_str().unwrap()];
            args.extend_from_slice(extra);
            let args = args.into_iter().map(str::to_string);
            crate::config::BrokerConfig::from_args_and_env(args, vars(env)).unwrap()
        };
        let env = [
            ("SLUICE_SET_NODE_ID", "2"),
            ("SLUICE_SET_NUM_PARTITIONS", "5"),
            ("SLUICE_SHARDS", "3"),
        ];
        let from_env = build(&[], &env);
        assert_eq!(
            (from_env.node_id, from_env.num_partitions, from_env.shards),
            (2, 5, 3)
        );
        assert_eq!(
            from_env.origin("node.id"),
            Some("environment variable SLUICE_SET_NODE_ID")
        );
        let from_flags = build(&["--set", "num.partitions=7", "--node-id", "4"], &env);
        assert_eq!((from_flags.node_id, from_flags.num_partitions), (4, 7));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_variable() {
        let args = ["sluice".to_string()];
        let error = crate::config::BrokerConfig::from_args_and_env(
            args,
            vars(&[("SLUICE_SET_NUM_PARTITIONS", "zero")]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("'num.partitions' in environment variable SLUICE_SET_NUM_PARTITIONS"),
            "{text}"
        );
    }

    #[test]
    fn lower_case_flag_variables_are_not_read() {
        assert!(env_settings(vars(&[("SLUICE_node_id", "2")]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn every_broker_key_maps_back_from_its_variable() {
        for def in DEFINITIONS.iter().filter(|def| def.scope == Scope::Broker) {
            assert!(
                !def.name.contains(['_', '-']),
                "{} breaks the env mapping",
                def.name
            );
            let name = format!("{ENV_SET_PREFIX}{}", env_suffix(def.name));
            assert_eq!(set_key(&name, &env_suffix(def.name)).unwrap(), def.name);
        }
    }
}
