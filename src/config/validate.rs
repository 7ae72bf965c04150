//! Checking one value against its definition: `validate` returns the
//! normalized text that is stored and reported, or a message. Also the
//! parsers for addresses and the messages for unknown keys (with a
//! suggestion), and the public checks for topic configs and dynamic broker
//! configs that clients send.
//!
//! Must not: know where a value came from (file, flag, client) or combine
//! keys: cross-key rules are `broker.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::cluster::{format_voters, parse_voters};
use super::definitions::{definition, ConfigDef, Scope, Validator, DEFINITIONS};
use super::definitions::{INT_MAX, LONG_MAX, SHORT_MAX};
use super::{ConfigError, ConfigType};

pub(super) fn validate(def: &ConfigDef, value: &str) -> Result<String, String> {
    let got = || format!("got {value:?}");
    match def.validator {
        Validator::Range { min, max } => {
            let max = max.min(type_max(def.config_type));
            match value.trim().parse::<i64>() {
                Ok(number) if (min..=max).contains(&number) => Ok(number.to_string()),
                _ => Err(format!("expected {}, {}", integer_phrase(min, max), got())),
            }
        }
        Validator::RangeOr { min, max, or } => match value.trim().parse::<i64>() {
            Ok(number) if number == or || (min..=max).contains(&number) => Ok(number.to_string()),
            _ => Err(format!(
                "expected {or} or an integer from {min} to {max}, {}",
                got()
            )),
        },
        Validator::ThrottledReplicas => parse_throttled_replicas(value).ok_or_else(|| {
            format!(
                "expected * or comma-separated PARTITION:BROKER pairs such as 0:1,1:2, {}",
                got()
            )
        }),
        Validator::KafkaVersion => is_kafka_version(value.trim())
            .then(|| value.trim().to_string())
            .ok_or_else(|| format!("expected a Kafka version such as 2.8 or 3.0-IV1, {}", got())),
        Validator::FalseOnly(reason) => match value.trim().to_ascii_lowercase().as_str() {
            "false" => Ok("false".to_string()),
            "true" => Err(format!("only false is accepted: {reason}")),
            _ => Err(format!("expected false, {}", got())),
        },
        Validator::Ratio => match value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio.to_string()),
            _ => Err(format!("expected a number from 0 to 1, {}", got())),
        },
        Validator::NonNegative => match value.trim().parse::<f64>() {
            Ok(number) if number >= 0.0 => Ok(value.trim().to_string()),
            _ => Err(format!("expected a number of at least 0, {}", got())),
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
        Validator::QuorumVoters => parse_voters(value).map(|voters| format_voters(&voters)),
        Validator::Text => Ok(value.trim().to_string()),
        Validator::Path if value.trim().is_empty() => Err("expected a directory path".to_string()),
        Validator::Path => Ok(value.to_string()),
        Validator::SuperUsers => crate::security::authorizer::parse_super_users(value)
            .map(|users| users.join(";"))
            .map_err(|error| format!("expected principals separated by ';', {error}")),
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

/// Kafka's `ThrottledReplicaListValidator`: `*` alone, or items that are
/// each `PARTITION:BROKER` or empty. Normalized without spaces.
fn parse_throttled_replicas(value: &str) -> Option<String> {
    if value.trim() == "*" {
        return Some("*".to_string());
    }
    let is_number = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    let valid = items.iter().all(|item| {
        item.is_empty()
            || item
                .split_once(':')
                .is_some_and(|(partition, broker)| is_number(partition) && is_number(broker))
    });
    valid.then(|| items.join(","))
}

/// Kafka releases whose version `message.format.version` names
/// (`MetadataVersion.fromVersionString` of Kafka 3.x).
const KAFKA_RELEASES: &[&str] = &[
    "0.8.0", "0.8.1", "0.8.2", "0.9.0", "0.10.0", "0.10.1", "0.10.2", "0.11.0", "1.0", "1.1",
    "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "3.0", "3.1", "3.2", "3.3",
    "3.4", "3.5", "3.6", "3.7", "3.8", "3.9",
];

/// A release (`2.8`, `0.10.2`), a patch of one (`2.8.1`, `0.10.2.0`), or an
/// inter-broker protocol step of one (`3.0-IV1`). Kafka knows the exact
/// steps; Sluice accepts IV0 to IV3 of any release, as the value is ignored.
fn is_kafka_version(value: &str) -> bool {
    let (version, step) = match value.split_once("-IV") {
        Some((version, step)) => (version, Some(step)),
        None => (value, None),
    };
    let step_valid = step.is_none_or(|step| matches!(step, "0" | "1" | "2" | "3"));
    let parts: Vec<&str> = version.split('.').collect();
    let release_parts = if parts.first() == Some(&"0") { 3 } else { 2 };
    if parts.len() < release_parts || parts.iter().any(|part| part.parse::<u16>().is_err()) {
        return false;
    }
    // A step names one release exactly, not a patch of it.
    let exact = parts.len() == release_parts;
    let release = parts[..release_parts].join(".");
    step_valid && (step.is_none() || exact) && KAFKA_RELEASES.contains(&release.as_str())
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
pub(super) fn parse_listen(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Some(address);
    }
    let port = value.strip_prefix("localhost:")?.parse::<u16>().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `HOST:PORT` with a non-empty host (brackets around IPv6 removed) and a
/// non-zero port.
pub(super) fn parse_host_port(value: &str) -> Option<(String, u16)> {
    split_host_port(value).filter(|(_, port)| *port != 0)
}

/// `HOST:PORT` with a non-empty host (brackets around IPv6 removed); the
/// port may be 0.
pub(super) fn split_host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    let host_valid = !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c == '/');
    host_valid.then(|| (host.to_string(), port))
}

pub(super) fn format_host_port(host: &str, port: u16) -> String {
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

pub(super) fn unknown_key_message(name: &str, scope: Scope) -> String {
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
