//! `sluice topics reassign` and `sluice topics elect-leaders`: moving a
//! partition's replicas (AlterPartitionReassignments, and
//! ListPartitionReassignments for `--list`), as
//! `kafka-reassign-partitions.sh` does, and leader elections (ElectLeaders),
//! as `kafka-leader-election.sh` does.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest,
};
use serde_json::{json, Value};

use super::output::{join_ids, render_json, OutputFormat, Table};
use super::write_stdout;
use crate::cluster::reassign::Ongoing;
use sluice_client::{error_name, topic_name, Cluster as Client, KafkaError};

const ADMIN_TIMEOUT_MS: i32 = 30_000;
const ELECTION_NOT_NEEDED: i16 = 84;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true)
    .args(["replicas", "cancel", "list"])))]
pub struct ReassignArgs {
    /// The topic (with --list: only its reassignments).
    #[arg(long, required_unless_present = "list")]
    pub topic: Option<String>,
    /// The partition to move.
    #[arg(long, required_unless_present = "list")]
    pub partition: Option<i32>,
    /// The target replicas, preferred leader first, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub replicas: Vec<i32>,
    /// Cancel the partition's reassignment in progress (back to its replicas).
    #[arg(long)]
    pub cancel: bool,
    /// List the reassignments in progress.
    #[arg(long, conflicts_with_all = ["replicas", "cancel", "partition"])]
    pub list: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ElectionType {
    /// Move leadership to each partition's first (preferred) replica.
    Preferred,
    /// Give leaderless partitions a leader even from outside the ISR (may lose data).
    Unclean,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true)
    .args(["topic", "all_topic_partitions"])))]
pub struct ElectArgs {
    /// The topic whose partitions get an election.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only this partition of --topic.
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
    /// Every partition of every topic.
    #[arg(long, conflicts_with = "topic")]
    pub all_topic_partitions: bool,
    #[arg(long, value_enum, default_value_t = ElectionType::Preferred)]
    pub election_type: ElectionType,
}

pub fn reassign(client: &mut Client, output: OutputFormat, args: &ReassignArgs) -> Result<()> {
    if args.list {
        return list(client, output, args.topic.as_deref());
    }
    let (Some(topic), Some(partition)) = (&args.topic, args.partition) else {
        bail!("--topic and --partition name the partition to move");
    };
    let target = (!args.cancel).then(|| args.replicas.clone());
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    target
                        .as_ref()
                        .map(|ids| ids.iter().copied().map(BrokerId).collect()),
                )])]);
    let response = client.any()?.call(&request, 1)?;
    let doing = match &target {
        Some(ids) => format!("reassigning {topic}-{partition} to {}", join_ids(ids)),
        None => format!("cancelling the reassignment of {topic}-{partition}"),
    };
    KafkaError::check(response.error_code, response.error_message.as_ref(), &doing)?;
    for result in response.responses.iter().flat_map(|t| &t.partitions) {
        KafkaError::check(result.error_code, result.error_message.as_ref(), &doing)?;
    }
    match output {
        OutputFormat::Json => write_stdout(&render_json(&json!({
            "topic": topic,
            "partition": partition,
            "replicas": target,
            "cancelled": target.is_none(),
        }))),
        OutputFormat::Table => write_stdout(&match &target {
            Some(ids) => format!(
                "Reassignment of {topic}-{partition} to replicas {} started (`sluice topics reassign --list` shows it until it completes).\n",
                join_ids(ids)
            ),
            None => format!("Reassignment of {topic}-{partition} cancelled.\n"),
        }),
    }
}

fn list(client: &mut Client, output: OutputFormat, topic: Option<&str>) -> Result<()> {
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_topics(None);
    let response = client.any()?.call(&request, 0)?;
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        "listing reassignments",
    )?;
    let ids = |list: &[BrokerId]| list.iter().map(|id| id.0).collect::<Vec<i32>>();
    let mut rows: Vec<Ongoing> = response
        .topics
        .iter()
        .filter(|t| topic.is_none_or(|name| t.name.0.as_str() == name))
        .flat_map(|t| {
            t.partitions.iter().map(|p| Ongoing {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                replicas: ids(&p.replicas),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    match output {
        OutputFormat::Json => write_stdout(&render_json(&json!(rows))),
        OutputFormat::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
            for row in &rows {
                table.row(vec![
                    row.topic.clone(),
                    row.partition.to_string(),
                    join_ids(&row.replicas),
                    join_ids(&row.adding),
                    join_ids(&row.removing),
                ]);
            }
            write_stdout(&table.render())
        }
    }
}

/// One partition's election outcome: `None` elected, else the error.
type Outcome = (String, i32, Option<KafkaError>);

pub fn elect(client: &mut Client, output: OutputFormat, args: &ElectArgs) -> Result<()> {
    let partitions = match (&args.topic, args.partition) {
        (Some(topic), Some(partition)) => Some(vec![(topic.clone(), vec![partition])]),
        (Some(topic), None) => {
            let metadata = client.metadata(Some(std::slice::from_ref(topic)))?;
            let found = metadata.topics.first();
            let code = found.map_or(3, |t| t.error_code);
            KafkaError::check(code, None, format!("Topic '{topic}' does not exist."))?;
            let indexes = found
                .map(|t| t.partitions.iter().map(|p| p.partition_index).collect())
                .unwrap_or_default();
            Some(vec![(topic.clone(), indexes)])
        }
        (None, _) => None,
    };
    let election_type = match args.election_type {
        ElectionType::Preferred => 0,
        ElectionType::Unclean => 1,
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_topic_partitions(partitions.map(|list| {
            list.into_iter()
                .map(|(topic, indexes)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(indexes)
                })
                .collect()
        }));
    let connection = client.any()?;
    let version = connection.version::<ElectLeadersRequest>(2)?;
    if version == 0 && election_type != 0 {
        bail!("the broker supports only preferred leader elections (ElectLeaders v0)");
    }
    let response = connection.call_at(&request, version)?;
    KafkaError::check(response.error_code, None, "electing leaders")?;
    let mut outcomes: Vec<Outcome> = response
        .replica_election_results
        .iter()
        .flat_map(|topic| {
            topic.partition_result.iter().map(|result| {
                let name = topic.topic.0.to_string();
                let error = (result.error_code != 0).then(|| KafkaError {
                    code: result.error_code,
                    message: result.error_message.as_ref().map(|m| m.to_string()),
                    context: format!("electing a leader for {name}-{}", result.partition_id),
                });
                (name, result.partition_id, error)
            })
        })
        .collect();
    outcomes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let kind = format!("{:?}", args.election_type).to_uppercase();
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = outcomes
                .iter()
                .map(|(topic, partition, error)| {
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "error": error.as_ref().map(|e| e.name()),
                        "message": error.as_ref().and_then(|e| e.message.clone()),
                    })
                })
                .collect();
            write_stdout(&render_json(&json!({
                "election_type": kind.to_lowercase(),
                "results": list,
            })))?;
        }
        OutputFormat::Table => write_stdout(&elect_table(&outcomes))?,
    }
    let failures: Vec<&KafkaError> = outcomes
        .iter()
        .filter_map(|(_, _, error)| error.as_ref())
        .filter(|error| error.code != ELECTION_NOT_NEEDED)
        .collect();
    match failures.first() {
        Some(first) => bail!(
            "{} of {} leader elections ({kind}) failed; the first: {first}",
            failures.len(),
            outcomes.len()
        ),
        None => Ok(()),
    }
}

fn elect_table(outcomes: &[Outcome]) -> String {
    let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT", "MESSAGE"]);
    for (topic, partition, error) in outcomes {
        let (result, message) = match error {
            None => ("ELECTED".to_string(), String::new()),
            Some(error) => (
                error_name(error.code),
                error.message.clone().unwrap_or_default(),
            ),
        };
        table.row(vec![topic.clone(), partition.to_string(), result, message]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::topics::TopicsCommand;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(line: &str) -> Result<TopicsCommand, clap::Error> {
        let cli = Cli::try_parse_from(line.split_whitespace())?;
        match cli.command {
            Command::Topics { action } => Ok(action),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reassign_takes_replicas_cancel_or_list() {
        let TopicsCommand::Reassign(args) =
            parse("sluice topics reassign --topic t --partition 0 --replicas 3,1,2").unwrap()
        else {
            panic!()
        };
        assert_eq!(args.replicas, vec![3, 1, 2]);
        assert!(parse("sluice topics reassign --topic t --partition 0 --cancel").is_ok());
        assert!(parse("sluice topics reassign --list").is_ok());
        assert!(parse("sluice topics reassign --topic t --partition 0").is_err());
        assert!(parse("sluice topics reassign --replicas 1").is_err());
        assert!(parse("sluice topics reassign --list --cancel").is_err());
    }

    #[test]
    fn elect_leaders_needs_a_scope() {
        let TopicsCommand::ElectLeaders(args) =
            parse("sluice topics elect-leaders --all-topic-partitions --election-type unclean")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(args.election_type, ElectionType::Unclean);
        assert!(parse("sluice topics elect-leaders").is_err());
        assert!(parse("sluice topics elect-leaders --partition 1").is_err());
        assert!(parse("sluice topics elect-leaders --topic t --all-topic-partitions").is_err());
    }

    #[test]
    fn election_results_print_kafkas_error_names() {
        let outcomes = vec![
            ("t".to_string(), 0, None),
            (
                "t".to_string(),
                1,
                Some(KafkaError {
                    code: ELECTION_NOT_NEEDED,
                    message: None,
                    context: String::new(),
                }),
            ),
        ];
        assert_eq!(
            elect_table(&outcomes),
            "TOPIC  PARTITION  RESULT               MESSAGE\n\
             t      0          ELECTED              \n\
             t      1          ELECTION_NOT_NEEDED  \n"
        );
    }
}
