//! The command-line tools of the `sluice` binary: `topics`, `produce`,
//! `consume`, `groups` and `cluster`, what Kafka's `kafka-topics.sh` (with
//! `kafka-reassign-partitions.sh` and `kafka-leader-election.sh`),
//! `kafka-console-producer.sh`, `kafka-console-consumer.sh`,
//! `kafka-consumer-groups.sh`, `kafka-metadata-quorum.sh`, `kafka-acls.sh` (`acls`) and
//! `kafka-configs.sh --entity-type users` (`users`) do, speaking the Kafka protocol to any broker
//! named by `--bootstrap-server` (Sluice or another Kafka). `console` starts
//! the web console (`crate::console`).
//!
//! This module owns the client side only. It runs on the process's main
//! thread as a short-lived blocking client (the `sluice-client` crate,
//! which follows partition leaders across a cluster); it must not start
//! glommio, shards or any broker state, and
//! it reaches the broker only through the wire protocol, so it behaves the
//! same against Sluice and Kafka.
//!
//! `sluice` with no subcommand (or broker flags) still starts the broker:
//! [`run_if_subcommand`] answers `None` unless argv[1] names a tool.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sluice_client::Cluster;

pub mod acls;
pub mod cluster;
pub mod consume;
pub mod datetime;
pub mod groups;
pub mod output;
pub mod produce;
pub mod replicas;
pub mod topics;
pub mod transactions;
pub mod users;

use output::OutputFormat;

/// The client id the tools give brokers.
const CLIENT_ID: &str = "sluice-cli";

/// The first arguments that select a tool rather than the broker.
pub const SUBCOMMANDS: &[&str] = &[
    "topics",
    "produce",
    "consume",
    "groups",
    "cluster",
    "transactions",
    "console",
    "acls",
    "users",
];

/// Kafka clients and tools for Sluice or any Kafka broker.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka command-line tools (run `sluice` with no subcommand to start the broker)",
    after_help = "Examples:\n  \
        sluice topics create --topic orders --partitions 3 --config retention.ms=86400000\n  \
        seq 1 10 | sluice produce --topic orders\n  \
        sluice consume --topic orders --from-beginning --max-messages 10\n  \
        sluice groups describe --group billing"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every tool takes, anywhere on the command line.
#[derive(Debug, Args)]
pub struct Common {
    /// Broker(s) to bootstrap from, `host:port[,host:port...]`.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
    /// Output format: aligned tables for people, or JSON for programs.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// How long to wait for a connection or a response.
    #[arg(long, global = true, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
}

impl Common {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub fn connect(&self) -> anyhow::Result<Cluster> {
        Cluster::connect(&self.bootstrap_server, CLIENT_ID, self.timeout())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, create, describe, alter and delete topics (kafka-topics.sh).
    Topics {
        #[command(subcommand)]
        action: topics::TopicsCommand,
    },
    /// Send lines from stdin as records (kafka-console-producer.sh).
    Produce(produce::ProduceArgs),
    /// Print records to stdout (kafka-console-consumer.sh).
    Consume(consume::ConsumeArgs),
    /// List, describe and delete consumer groups, reset their offsets
    /// (kafka-consumer-groups.sh).
    Groups {
        #[command(subcommand)]
        action: groups::GroupsCommand,
    },
    /// Describe the cluster's brokers and its metadata quorum
    /// (kafka-cluster.sh, kafka-metadata-quorum.sh).
    Cluster {
        #[command(subcommand)]
        action: cluster::ClusterCommand,
    },
    /// List and describe transactional ids (kafka-transactions.sh).
    Transactions {
        #[command(subcommand)]
        action: transactions::TransactionsCommand,
    },
    /// A web console for the cluster: brokers, topics, messages, groups.
    Console(crate::console::ConsoleArgs),
    /// Add, list and remove ACLs (kafka-acls.sh).
    Acls {
        #[command(subcommand)]
        action: acls::AclsCommand,
    },
    /// Create, list and delete SCRAM users (kafka-configs.sh --entity-type users).
    Users {
        #[command(subcommand)]
        action: users::UsersCommand,
    },
}

/// Runs the tool named by `args[1]` and returns its exit code, or `None`
/// when `args[1]` is not a tool (the caller then starts the broker).
pub fn run_if_subcommand(args: Vec<String>) -> Option<ExitCode> {
    let first = args.get(1)?;
    if !SUBCOMMANDS.contains(&first.as_str()) {
        return None;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version land here too, with exit code 0.
            let _ = error.print();
            return Some(ExitCode::from(error.exit_code().clamp(0, 255) as u8));
        }
    };
    Some(match run(cli) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    })
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let common = &cli.common;
    match cli.command {
        Command::Topics { action } => topics::run(common, action),
        Command::Produce(args) => produce::run(common, args),
        Command::Consume(args) => consume::run(common, args),
        Command::Groups { action } => groups::run(common, action),
        Command::Cluster { action } => cluster::run(common, action),
        Command::Transactions { action } => transactions::run(common, action),
        Command::Console(args) => crate::console::run(common, args),
        Command::Acls { action } => acls::run(common, action),
        Command::Users { action } => users::run(common, action),
    }
}

/// A reader of our stdout went away (`sluice consume ... | head`): stop
/// quietly, as Unix tools do.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses `key=value` (for `--config`, `--header`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// Writes `text` to stdout, returning the error (a closed pipe included)
/// instead of panicking as `print!` does.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn the_broker_starts_when_argv1_is_not_a_tool() {
        assert!(run_if_subcommand(vec!["sluice".into()]).is_none());
        let broker_flags = ["sluice", "--listen", "127.0.0.1:9092"];
        assert!(run_if_subcommand(broker_flags.iter().map(|s| s.to_string()).collect()).is_none());
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse("sluice topics list --bootstrap-server h:1 --output json").unwrap();
        assert_eq!(cli.common.bootstrap_server, "h:1");
        assert_eq!(cli.common.output, OutputFormat::Json);
        let cli = parse("sluice --output json topics list").unwrap();
        assert_eq!(cli.common.output, OutputFormat::Json);
        assert_eq!(cli.common.bootstrap_server, "127.0.0.1:9092");
    }

    #[test]
    fn bad_output_format_is_a_usage_error() {
        let error = parse("sluice topics list --output yaml").unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            parse_key_value("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("k="), Ok(("k".into(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing records");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
