//! The command line (clap) and the TOML file, each turned into
//! `(key, text)` pairs for `values.rs`: dedicated flags name their key, and
//! TOML's nested tables are flattened back into Kafka's dotted names.
//!
//! Must not: validate values or know defaults; an unknown flag or a file
//! that is not TOML is the only error found here.

use std::path::PathBuf;

use super::{ConfigError, ConfigErrorKind};

#[derive(clap::Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible message broker, thread-per-core on io_uring.",
    allow_negative_numbers = true,
    after_help = "Without --config, config/sluice.toml is read if it exists; otherwise built-in \
        defaults apply.\nPrecedence: default < file < environment < --set < the flags above.\n\
        Environment: SLUICE_SET_<KEY> sets any key (upper-cased, '.' as '_': SLUICE_SET_NODE_ID), \
        and SLUICE_<FLAG> each flag above (SLUICE_NODE_ID, SLUICE_CONTROLLER_QUORUM_VOTERS).\n\
        Config keys use Kafka's names (log.retention.ms, num.partitions, ...); see config/README.md.\n\n\
        With no subcommand, sluice runs the broker. Tools for any Kafka-compatible broker \
        (each with --help):\n  sluice topics list|create|describe|alter|delete\n  \
        sluice produce --topic T\n  sluice consume --topic T\n  \
        sluice groups list|describe|delete|reset-offsets\n  \
        sluice transactions list|describe"
)]
pub(super) struct Cli {
    /// Config file (TOML with Kafka's dotted key names).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
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
    /// Address the controller (Raft) listener binds (key: controller.listen;
    /// default: this node's entry in the voters).
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// The Raft quorum, ID@HOST:PORT,... (key: controller.quorum.voters;
    /// default: none, a single node).
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum_voters: Option<String>,
    /// Set any broker config key; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(super) set: Vec<String>,
}

/// The dedicated flags and the key each sets, in the order of the fields
/// `Cli::flags` reads. `env.rs` derives the `SLUICE_<FLAG>` variables from it.
pub(super) const FLAG_KEYS: [(&str, &str); 8] = [
    ("data.dir", "--data-dir"),
    ("listen", "--listen"),
    ("advertise", "--advertise"),
    ("shards", "--shards"),
    ("node.id", "--node-id"),
    ("metrics", "--metrics"),
    ("controller.listen", "--controller-listen"),
    ("controller.quorum.voters", "--controller-quorum-voters"),
];

impl Cli {
    /// The dedicated flags that were given, as (key, value, flag).
    pub(super) fn flags(&self) -> Vec<(&'static str, &str, &'static str)> {
        let values = [
            &self.data_dir,
            &self.listen,
            &self.advertise,
            &self.shards,
            &self.node_id,
            &self.metrics,
            &self.controller_listen,
            &self.controller_quorum_voters,
        ];
        FLAG_KEYS
            .into_iter()
            .zip(values)
            .filter_map(|((key, flag), value)| Some((key, value.as_deref()?, flag)))
            .collect()
    }
}

pub(super) fn parse_cli<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, ConfigError> {
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
pub(super) fn flatten_toml(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
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
