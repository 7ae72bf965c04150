//! `sluice topics list | create | describe | alter | delete`: what
//! `kafka-topics.sh` does, over Metadata, CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeConfigs and IncrementalAlterConfigs (or
//! AlterConfigs on brokers without it).

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::output::{join_ids, render_json, OutputFormat, Table};
use super::{parse_key_value, replicas, write_stdout, Common};
use anyhow::Result;
use clap::{Args, Subcommand};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use serde_json::{json, Value};
use sluice_client::admin::{self, NewTopic, CONFIG_SOURCE_TOPIC};
use sluice_client::codes::{TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION};
use sluice_client::{Cluster as Client, KafkaError};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts and replication factors.
    List {
        /// Leave out internal topics such as __consumer_offsets.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Create a topic.
    Create(CreateArgs),
    /// Describe topics: partitions, leaders, replicas, ISR and configs.
    Describe(DescribeArgs),
    /// Add partitions or change a topic's configs.
    Alter(AlterArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Move a partition's replicas, cancel a move, or list moves in
    /// progress (kafka-reassign-partitions.sh).
    Reassign(replicas::ReassignArgs),
    /// Elect preferred (or, unclean, any live) replicas as leaders
    /// (kafka-leader-election.sh).
    ElectLeaders(replicas::ElectArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The topic to create.
    #[arg(long)]
    pub topic: String,
    /// Partition count (default: the broker's num.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's default.replication.factor).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config, e.g. --config retention.ms=86400000 (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Succeed if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Ask the broker to check the request without creating the topic.
    #[arg(long)]
    pub validate_only: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topics to describe (repeatable); all non-internal topics if none.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Show every config, not only the topic's own overrides.
    #[arg(long)]
    pub all_configs: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
    .args(["partitions", "configs", "delete_configs"])))]
pub struct AlterArgs {
    /// The topic to change.
    #[arg(long)]
    pub topic: String,
    /// The new, larger partition count.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Set a topic config (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Remove a topic config override, back to the broker default (repeatable).
    #[arg(long = "delete-config", value_name = "KEY")]
    pub delete_configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Topics to delete (repeatable).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Succeed if a topic does not exist.
    #[arg(long)]
    pub if_exists: bool,
}

pub fn run(common: &Common, command: TopicsCommand) -> Result<ExitCode> {
    let mut client = common.connect()?;
    let output = common.output;
    match command {
        TopicsCommand::List { exclude_internal } => list(&mut client, output, exclude_internal),
        TopicsCommand::Create(args) => create(&mut client, output, &args),
        TopicsCommand::Describe(args) => describe(&mut client, output, &args),
        TopicsCommand::Alter(args) => alter(&mut client, output, &args),
        TopicsCommand::Delete(args) => delete(&mut client, output, &args),
        TopicsCommand::Reassign(args) => replicas::reassign(&mut client, output, &args),
        TopicsCommand::ElectLeaders(args) => replicas::elect(&mut client, output, &args),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn name_of(topic: &MetadataResponseTopic) -> &str {
    topic.name.as_ref().map_or("", |name| name.0.as_str())
}

/// The replication factor as Kafka's tools show it: the replica count of
/// the first partition.
fn replication_factor(topic: &MetadataResponseTopic) -> usize {
    topic
        .partitions
        .iter()
        .min_by_key(|partition| partition.partition_index)
        .map_or(0, |partition| partition.replica_nodes.len())
}

fn list(client: &mut Client, output: OutputFormat, exclude_internal: bool) -> Result<()> {
    let metadata = client.metadata(None)?;
    let mut topics: Vec<&MetadataResponseTopic> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0 && !(exclude_internal && topic.is_internal))
        .collect();
    topics.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = topics
                .iter()
                .map(|topic| {
                    json!({
                        "topic": name_of(topic),
                        "topic_id": topic_id_text(topic),
                        "partitions": topic.partitions.len(),
                        "replication_factor": replication_factor(topic),
                        "internal": topic.is_internal,
                    })
                })
                .collect();
            write_stdout(&render_json(&Value::Array(list)))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
            for topic in topics {
                table.row(vec![
                    name_of(topic).to_string(),
                    topic.partitions.len().to_string(),
                    replication_factor(topic).to_string(),
                ]);
            }
            write_stdout(&table.render())
        }
    }
}

fn create(client: &mut Client, output: OutputFormat, args: &CreateArgs) -> Result<()> {
    let result = admin::create_topic(
        client,
        &NewTopic {
            name: args.topic.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            configs: args.configs.clone(),
            validate_only: args.validate_only,
        },
    )?;
    let existed = result.error_code == TOPIC_ALREADY_EXISTS && args.if_not_exists;
    if !existed {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            format!("creating topic '{}'", args.topic),
        )?;
    }
    let verb = match (existed, args.validate_only) {
        (true, _) => "Topic '{}' already exists.",
        (false, true) => "Topic '{}' can be created (validate only).",
        (false, false) => "Created topic '{}'.",
    };
    match output {
        OutputFormat::Json => write_stdout(&render_json(&json!({
            "topic": args.topic,
            "created": !existed && !args.validate_only,
            "already_exists": existed,
            "partitions": (result.num_partitions > 0).then_some(result.num_partitions),
            "replication_factor":
                (result.replication_factor > 0).then_some(result.replication_factor),
        }))),
        OutputFormat::Table => write_stdout(&format!("{}\n", verb.replace("{}", &args.topic))),
    }
}

fn describe(client: &mut Client, output: OutputFormat, args: &DescribeArgs) -> Result<()> {
    let wanted = (!args.topics.is_empty()).then_some(args.topics.as_slice());
    let metadata = client.metadata(wanted)?;
    let mut topics: Vec<&MetadataResponseTopic> = Vec::new();
    for topic in &metadata.topics {
        if wanted.is_none() && (topic.is_internal || topic.error_code != 0) {
            continue;
        }
        let name = name_of(topic);
        let sentence = if topic.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            format!("Topic '{name}' does not exist.")
        } else {
            format!("describing topic '{name}'")
        };
        KafkaError::check(topic.error_code, None, sentence)?;
        topics.push(topic);
    }
    topics.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let names: Vec<String> = topics
        .iter()
        .map(|topic| name_of(topic).to_string())
        .collect();
    let configs = admin::describe_configs(client, &names)?;
    let shown = |topic: &str| -> Vec<(String, String)> {
        configs
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(_, (_, source))| args.all_configs || *source == CONFIG_SOURCE_TOPIC)
            .map(|(name, (value, _))| (name.clone(), value.clone().unwrap_or_default()))
            .collect()
    };
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = topics
                .iter()
                .map(|topic| describe_json(topic, &shown(name_of(topic))))
                .collect();
            write_stdout(&render_json(&Value::Array(list)))
        }
        OutputFormat::Table => {
            let mut text = String::new();
            for (index, topic) in topics.iter().enumerate() {
                if index > 0 {
                    text.push('\n');
                }
                text.push_str(&describe_table(topic, &shown(name_of(topic))));
            }
            write_stdout(&text)
        }
    }
}

fn sorted_partitions(
    topic: &MetadataResponseTopic,
) -> Vec<&kafka_protocol::messages::metadata_response::MetadataResponsePartition> {
    let mut partitions: Vec<_> = topic.partitions.iter().collect();
    partitions.sort_by_key(|partition| partition.partition_index);
    partitions
}

fn ids(brokers: &[kafka_protocol::messages::BrokerId]) -> Vec<i32> {
    brokers.iter().map(|broker| broker.0).collect()
}

fn describe_json(topic: &MetadataResponseTopic, configs: &[(String, String)]) -> Value {
    let partitions: Vec<Value> = sorted_partitions(topic)
        .into_iter()
        .map(|partition| {
            json!({
                "partition": partition.partition_index,
                "leader": partition.leader_id.0,
                "leader_epoch": partition.leader_epoch,
                "replicas": ids(&partition.replica_nodes),
                "isr": ids(&partition.isr_nodes),
                "offline_replicas": ids(&partition.offline_replicas),
            })
        })
        .collect();
    let configs: serde_json::Map<String, Value> = configs
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "topic": name_of(topic),
        "topic_id": topic_id_text(topic),
        "internal": topic.is_internal,
        "partition_count": topic.partitions.len(),
        "replication_factor": replication_factor(topic),
        "configs": configs,
        "partitions": partitions,
    })
}

/// Kafka's layout: one summary line, then a table of partitions.
fn describe_table(topic: &MetadataResponseTopic, configs: &[(String, String)]) -> String {
    let configs = configs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut text = format!(
        "Topic: {}  TopicId: {}  PartitionCount: {}  ReplicationFactor: {}  Configs: {}\n",
        name_of(topic),
        topic_id_text(topic),
        topic.partitions.len(),
        replication_factor(topic),
        configs
    );
    // Offline replicas (on fenced brokers or failed disks) get a column
    // when there are any, as Kafka adds `Offline:`.
    let any_offline = topic
        .partitions
        .iter()
        .any(|partition| !partition.offline_replicas.is_empty());
    let mut header = vec!["PARTITION", "LEADER", "REPLICAS", "ISR"];
    if any_offline {
        header.push("OFFLINE");
    }
    let mut table = Table::new(&header);
    for partition in sorted_partitions(topic) {
        let leader = partition.leader_id.0;
        let mut row = vec![
            partition.partition_index.to_string(),
            if leader < 0 {
                "none".to_string()
            } else {
                leader.to_string()
            },
            join_ids(&ids(&partition.replica_nodes)),
            join_ids(&ids(&partition.isr_nodes)),
        ];
        if any_offline {
            row.push(join_ids(&ids(&partition.offline_replicas)));
        }
        table.row(row);
    }
    text.push_str(&table.render());
    text
}

fn topic_id_text(topic: &MetadataResponseTopic) -> String {
    kafka_uuid(topic.topic_id.as_bytes())
}

/// A UUID as Kafka prints it: URL-safe base64 without padding (22 chars).
pub fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        let characters = chunk.len() + 1; // 1 byte -> 2 chars, 2 -> 3, 3 -> 4
        for index in 0..characters {
            let sextet = (bits >> (18 - 6 * index)) & 0x3f;
            out.push(ALPHABET[sextet as usize] as char);
        }
    }
    out
}

fn alter(client: &mut Client, output: OutputFormat, args: &AlterArgs) -> Result<()> {
    let mut changes = Vec::new();
    if let Some(count) = args.partitions {
        admin::add_partitions(client, &args.topic, count)?;
        changes.push(format!("partitions={count}"));
    }
    if !args.configs.is_empty() || !args.delete_configs.is_empty() {
        admin::alter_configs(client, &args.topic, &args.configs, &args.delete_configs)?;
        changes.extend(args.configs.iter().map(|(k, v)| format!("{k}={v}")));
        changes.extend(args.delete_configs.iter().map(|k| format!("-{k}")));
    }
    match output {
        OutputFormat::Json => write_stdout(&render_json(&json!({
            "topic": args.topic,
            "partitions": args.partitions,
            "set_configs": args.configs.iter().cloned().collect::<BTreeMap<_, _>>(),
            "deleted_configs": args.delete_configs,
        }))),
        OutputFormat::Table => write_stdout(&format!(
            "Altered topic '{}': {}\n",
            args.topic,
            changes.join(", ")
        )),
    }
}

fn delete(client: &mut Client, output: OutputFormat, args: &DeleteArgs) -> Result<()> {
    let responses = admin::delete_topics(client, &args.topics)?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    for result in &responses {
        let name = result
            .name
            .as_ref()
            .map_or("", |name| name.0.as_str())
            .to_string();
        if result.error_code == UNKNOWN_TOPIC_OR_PARTITION && args.if_exists {
            missing.push(name);
            continue;
        }
        let sentence = if result.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            format!("Topic '{name}' does not exist.")
        } else {
            format!("deleting topic '{name}'")
        };
        match KafkaError::check(result.error_code, result.error_message.as_ref(), sentence) {
            Ok(()) => deleted.push(name),
            Err(error) => errors.push(error),
        }
    }
    match output {
        OutputFormat::Json => write_stdout(&render_json(&json!({
            "deleted": deleted,
            "did_not_exist": missing,
            "errors": errors.iter().map(|error| format!("{error:#}")).collect::<Vec<_>>(),
        })))?,
        OutputFormat::Table => {
            let mut text = String::new();
            for name in &deleted {
                text.push_str(&format!("Deleted topic '{name}'.\n"));
            }
            for name in &missing {
                text.push_str(&format!("Topic '{name}' does not exist.\n"));
            }
            write_stdout(&text)?;
        }
    }
    // Every topic's outcome is shown; the first failure is the error.
    for error in errors.iter().skip(1) {
        eprintln!("Error: {error:#}");
    }
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn topic_ids_print_as_kafka_does() {
        // Kafka prints Uuid(0x..., 0x...) as URL-safe base64 without padding.
        assert_eq!(kafka_uuid(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid(&[0xff; 16]), "_____________________w");
        let bytes = *uuid::Uuid::parse_str("eb09990c-46d7-4790-b688-587540b0508c")
            .unwrap()
            .as_bytes();
        assert_eq!(kafka_uuid(&bytes), "6wmZDEbXR5C2iFh1QLBQjA");
    }

    #[test]
    fn describe_table_lists_partitions_in_order() {
        let partition = |index: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1)])
                .with_isr_nodes(vec![BrokerId(1)])
        };
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_partitions(vec![partition(1), partition(0)]);
        let text = describe_table(&topic, &[("retention.ms".into(), "1000".into())]);
        assert_eq!(
            text,
            "Topic: orders  TopicId: AAAAAAAAAAAAAAAAAAAAAA  PartitionCount: 2  \
             ReplicationFactor: 1  Configs: retention.ms=1000\n\
             PARTITION  LEADER  REPLICAS  ISR\n\
             0          1       1         1\n\
             1          1       1         1\n"
        );
    }

    #[test]
    fn offline_replicas_and_missing_leaders_are_shown() {
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_leader_id(BrokerId(-1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])
                .with_offline_replicas(vec![BrokerId(1)])]);
        let text = describe_table(&topic, &[]);
        assert!(
            text.ends_with(
                "PARTITION  LEADER  REPLICAS  ISR  OFFLINE\n\
                 0          none    1,2       1    1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn create_takes_repeated_configs() {
        let cli = Cli::try_parse_from([
            "sluice",
            "topics",
            "create",
            "--topic",
            "t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=10",
            "--config",
            "cleanup.policy=compact",
        ])
        .unwrap();
        let crate::cli::Command::Topics {
            action: TopicsCommand::Create(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.partitions, Some(3));
        assert_eq!(args.replication_factor, None);
        assert_eq!(args.configs.len(), 2);
        assert_eq!(args.configs[1], ("cleanup.policy".into(), "compact".into()));
    }

    #[test]
    fn alter_needs_a_change_and_delete_needs_a_topic() {
        assert!(Cli::try_parse_from(["sluice", "topics", "alter", "--topic", "t"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "topics", "delete"]).is_err());
        assert!(Cli::try_parse_from([
            "sluice",
            "topics",
            "alter",
            "--topic",
            "t",
            "--delete-config",
            "retention.ms"
        ])
        .is_ok());
    }
}
