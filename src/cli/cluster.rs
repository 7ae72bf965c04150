//! `sluice cluster describe | quorum`: the brokers of the cluster (with
//! fenced ones, over DescribeCluster v2) and the metadata quorum (over
//! DescribeQuorum), as `kafka-cluster.sh` and `kafka-metadata-quorum.sh
//! describe --status | --replication` show them.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
};
use serde_json::{json, Value};

use super::output::{join_ids, render_json, OutputFormat, Table};
use super::{write_stdout, Common};
use sluice_client::{topic_name, Connection, KafkaError};

/// The metadata log, as DescribeQuorum names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The cluster id, the active controller, and every broker with its
    /// endpoint and whether it is live, fenced, or a voter that never registered.
    Describe,
    /// The metadata quorum: leader, epoch, high watermark, voters
    /// (kafka-metadata-quorum.sh describe --status).
    Quorum {
        /// One row per voter: log end offset and lag behind the leader
        /// (kafka-metadata-quorum.sh describe --replication).
        #[arg(long)]
        replication: bool,
    },
}

pub fn run(common: &Common, command: ClusterCommand) -> Result<ExitCode> {
    let mut client = common.connect()?;
    let connection = client.any()?;
    match command {
        ClusterCommand::Describe => describe(connection, common.output),
        ClusterCommand::Quorum { replication } => quorum(connection, common.output, replication),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn describe_cluster(connection: &mut Connection) -> Result<DescribeClusterResponse> {
    let version = connection.version::<DescribeClusterRequest>(2)?;
    let request = DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2);
    let response = connection.call_at(&request, version)?;
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        "describing the cluster",
    )?;
    Ok(response)
}

fn describe_quorum(connection: &mut Connection) -> Result<DescribeQuorumResponse> {
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response = connection.call(&request, 2)?;
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        "describing the metadata quorum",
    )?;
    Ok(response)
}

/// One broker as `cluster describe` shows it.
#[derive(Debug, PartialEq)]
struct BrokerRow {
    id: i32,
    endpoint: Option<String>,
    rack: Option<String>,
    /// `live`, `fenced`, or `missing` (a voter not registered as a broker).
    status: &'static str,
    voter: bool,
}

fn broker_rows(cluster: &DescribeClusterResponse, voters: &[i32]) -> Vec<BrokerRow> {
    let mut rows: Vec<BrokerRow> = cluster
        .brokers
        .iter()
        .map(|broker| BrokerRow {
            id: broker.broker_id.0,
            endpoint: Some(format!("{}:{}", broker.host, broker.port)),
            rack: broker.rack.as_ref().map(|rack| rack.to_string()),
            status: if broker.is_fenced { "fenced" } else { "live" },
            voter: voters.contains(&broker.broker_id.0),
        })
        .collect();
    for id in voters {
        if !rows.iter().any(|row| row.id == *id) {
            rows.push(BrokerRow {
                id: *id,
                endpoint: None,
                rack: None,
                status: "missing",
                voter: true,
            });
        }
    }
    rows.sort_by_key(|row| row.id);
    rows
}

fn voters_of(quorum: &DescribeQuorumResponse) -> Vec<&ReplicaState> {
    quorum
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .flat_map(|partition| &partition.current_voters)
        .collect()
}

fn describe(connection: &mut Connection, output: OutputFormat) -> Result<()> {
    let cluster = describe_cluster(connection)?;
    // A broker without DescribeQuorum (ZooKeeper Kafka) has no voters to show.
    let quorum = if connection.supports::<DescribeQuorumRequest>() {
        Some(describe_quorum(connection)?)
    } else {
        None
    };
    let voters: Vec<i32> = quorum
        .as_ref()
        .map(|q| voters_of(q).iter().map(|v| v.replica_id.0).collect())
        .unwrap_or_default();
    let rows = broker_rows(&cluster, &voters);
    let controller = cluster.controller_id.0;
    match output {
        OutputFormat::Json => {
            let brokers: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "id": row.id,
                        "endpoint": row.endpoint,
                        "rack": row.rack,
                        "status": row.status,
                        "fenced": row.status == "fenced",
                        "voter": row.voter,
                        "controller": row.id == controller,
                    })
                })
                .collect();
            write_stdout(&render_json(&json!({
                "cluster_id": cluster.cluster_id.to_string(),
                "controller_id": controller,
                "brokers": brokers,
            })))
        }
        OutputFormat::Table => write_stdout(&describe_table(&cluster, &rows)),
    }
}

fn describe_table(cluster: &DescribeClusterResponse, rows: &[BrokerRow]) -> String {
    let controller = cluster.controller_id.0;
    let mut text = format!(
        "ClusterId: {}  Controller: {}\n",
        cluster.cluster_id,
        if controller < 0 {
            "none".to_string()
        } else {
            controller.to_string()
        }
    );
    let mut table = Table::new(&[
        "BROKER",
        "ENDPOINT",
        "RACK",
        "STATUS",
        "VOTER",
        "CONTROLLER",
    ]);
    let yes_no = |flag: bool| if flag { "yes" } else { "no" }.to_string();
    for row in rows {
        table.row(vec![
            row.id.to_string(),
            row.endpoint.clone().unwrap_or_else(|| "-".into()),
            row.rack.clone().unwrap_or_else(|| "-".into()),
            row.status.to_string(),
            yes_no(row.voter),
            yes_no(row.id == controller),
        ]);
    }
    text.push_str(&table.render());
    text
}

/// One voter's replication state; lag is the leader's log end minus its own.
#[derive(Debug, PartialEq)]
struct VoterRow {
    id: i32,
    log_end_offset: i64,
    lag: Option<i64>,
    last_fetch_timestamp: i64,
    last_caught_up_timestamp: i64,
    leader: bool,
}

fn voter_rows(voters: &[&ReplicaState], leader: i32) -> Vec<VoterRow> {
    let leader_end = voters
        .iter()
        .find(|voter| voter.replica_id.0 == leader)
        .map(|voter| voter.log_end_offset)
        .filter(|end| *end >= 0);
    let mut rows: Vec<VoterRow> = voters
        .iter()
        .map(|voter| VoterRow {
            id: voter.replica_id.0,
            log_end_offset: voter.log_end_offset,
            lag: leader_end
                .filter(|_| voter.log_end_offset >= 0)
                .map(|end| (end - voter.log_end_offset).max(0)),
            last_fetch_timestamp: voter.last_fetch_timestamp,
            last_caught_up_timestamp: voter.last_caught_up_timestamp,
            leader: voter.replica_id.0 == leader,
        })
        .collect();
    rows.sort_by_key(|row| (!row.leader, row.id));
    rows
}

fn quorum(connection: &mut Connection, output: OutputFormat, replication: bool) -> Result<()> {
    let cluster_id = describe_cluster(connection)?.cluster_id.to_string();
    let response = describe_quorum(connection)?;
    let partition = response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .next()
        .ok_or_else(|| anyhow::anyhow!("the DescribeQuorum response names no partition"))?;
    KafkaError::check(
        partition.error_code,
        partition.error_message.as_ref(),
        "describing the metadata quorum",
    )?;
    let leader = partition.leader_id.0;
    let rows = voter_rows(&partition.current_voters.iter().collect::<Vec<_>>(), leader);
    let max_lag = rows.iter().filter_map(|row| row.lag).max().unwrap_or(0);
    let mut voter_ids: Vec<i32> = rows.iter().map(|row| row.id).collect();
    voter_ids.sort();
    let observers: Vec<i32> = partition.observers.iter().map(|o| o.replica_id.0).collect();
    match output {
        OutputFormat::Json => {
            let voters: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "node_id": row.id,
                        "log_end_offset": row.log_end_offset,
                        "lag": row.lag,
                        "last_fetch_timestamp": row.last_fetch_timestamp,
                        "last_caught_up_timestamp": row.last_caught_up_timestamp,
                        "status": if row.leader { "Leader" } else { "Follower" },
                    })
                })
                .collect();
            write_stdout(&render_json(&json!({
                "cluster_id": cluster_id,
                "leader_id": leader,
                "leader_epoch": partition.leader_epoch,
                "high_watermark": partition.high_watermark,
                "max_follower_lag": max_lag,
                "current_voters": voter_ids,
                "current_observers": observers,
                "voters": voters,
            })))
        }
        OutputFormat::Table if replication => {
            let mut table = Table::new(&[
                "NODE",
                "LOG-END-OFFSET",
                "LAG",
                "LAST-FETCH-TIMESTAMP",
                "LAST-CAUGHT-UP-TIMESTAMP",
                "STATUS",
            ]);
            for row in &rows {
                table.row(vec![
                    row.id.to_string(),
                    row.log_end_offset.to_string(),
                    row.lag.map_or_else(|| "-".into(), |lag| lag.to_string()),
                    row.last_fetch_timestamp.to_string(),
                    row.last_caught_up_timestamp.to_string(),
                    if row.leader { "Leader" } else { "Follower" }.to_string(),
                ]);
            }
            write_stdout(&table.render())
        }
        OutputFormat::Table => {
            let lines = [
                ("ClusterId", cluster_id),
                ("LeaderId", leader.to_string()),
                ("LeaderEpoch", partition.leader_epoch.to_string()),
                ("HighWatermark", partition.high_watermark.to_string()),
                ("MaxFollowerLag", max_lag.to_string()),
                ("CurrentVoters", format!("[{}]", join_ids(&voter_ids))),
                ("CurrentObservers", format!("[{}]", join_ids(&observers))),
            ];
            let text: String = lines
                .iter()
                .map(|(key, value)| format!("{:<24}{value}\n", format!("{key}:")))
                .collect();
            write_stdout(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn fenced_brokers_and_unregistered_voters_are_shown() {
        let broker = |id: i32, fenced: bool| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9090 + id)
                .with_is_fenced(fenced)
        };
        let cluster = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("c1"))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![broker(2, true), broker(1, false)]);
        let rows = broker_rows(&cluster, &[1, 2, 3]);
        let statuses: Vec<(i32, &str)> = rows.iter().map(|r| (r.id, r.status)).collect();
        assert_eq!(statuses, vec![(1, "live"), (2, "fenced"), (3, "missing")]);
        assert_eq!(
            describe_table(&cluster, &rows),
            "ClusterId: c1  Controller: 1\n\
             BROKER  ENDPOINT        RACK  STATUS   VOTER  CONTROLLER\n\
             1       127.0.0.1:9091  -     live     yes    yes\n\
             2       127.0.0.1:9092  -     fenced   yes    no\n\
             3       -               -     missing  yes    no\n"
        );
    }

    #[test]
    fn lag_is_measured_from_the_leaders_log_end() {
        let voter = |id: i32, end: i64| {
            ReplicaState::default()
                .with_replica_id(BrokerId(id))
                .with_log_end_offset(end)
        };
        let voters = [voter(1, 40), voter(2, 42), voter(3, -1)];
        let rows = voter_rows(&voters.iter().collect::<Vec<_>>(), 2);
        let lags: Vec<(i32, Option<i64>, bool)> =
            rows.iter().map(|r| (r.id, r.lag, r.leader)).collect();
        assert_eq!(
            lags,
            vec![(2, Some(0), true), (1, Some(2), false), (3, None, false)]
        );
    }
}
