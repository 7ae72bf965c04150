//! `sluice transactions list | describe`: what `kafka-transactions.sh`
//! does, over ListTransactions (every broker: each lists the ids it
//! coordinates) and FindCoordinator (key type 1) with DescribeTransactions.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::output::{render_json, OutputFormat, Table};
use super::{write_stdout, Common};
use sluice_client::{retrying, Cluster as Client, KafkaError};

#[derive(Debug, Subcommand)]
pub enum TransactionsCommand {
    /// List transactional ids with their producer ids and states.
    List,
    /// Describe transactional ids: state, producer, timeout, start time, partitions.
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The transactional id to describe (repeatable).
    #[arg(long = "transactional-id", required = true)]
    pub transactional_ids: Vec<String>,
}

pub fn run(common: &Common, command: TransactionsCommand) -> Result<ExitCode> {
    let mut client = common.connect()?;
    match command {
        TransactionsCommand::List => list(&mut client, common.output),
        TransactionsCommand::Describe(args) => describe(&mut client, common.output, &args),
    }
}

/// A transactional id as ListTransactions names it.
struct Listed {
    producer_id: i64,
    state: String,
}

fn list(client: &mut Client, output: OutputFormat) -> Result<ExitCode> {
    client.metadata(Some(&[]))?;
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    for broker in client.broker_ids() {
        let response = client
            .broker(broker)?
            .call(&ListTransactionsRequest::default(), 1)?;
        KafkaError::check(response.error_code, None, "listing transactions")?;
        for state in response.transaction_states {
            listed.insert(
                state.transactional_id.0.to_string(),
                Listed {
                    producer_id: state.producer_id.0,
                    state: state.transaction_state.to_string(),
                },
            );
        }
    }
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = listed
                .iter()
                .map(|(id, l)| {
                    json!({"transactional_id": id, "producer_id": l.producer_id, "state": l.state})
                })
                .collect();
            write_stdout(&render_json(&Value::Array(list)))?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"]);
            for (id, l) in listed {
                table.row(vec![id, l.producer_id.to_string(), l.state]);
            }
            write_stdout(&table.render())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_one(client: &mut Client, id: &str) -> Result<TransactionState> {
    retrying(client, |client| {
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]);
        let response = client.transaction_coordinator(id)?.call(&request, 0)?;
        let Some(state) = response.transaction_states.into_iter().next() else {
            bail!("the broker answered DescribeTransactions with no state");
        };
        KafkaError::check(state.error_code, None, format!("describing '{id}'"))?;
        Ok(state)
    })
}

fn partitions_text(state: &TransactionState) -> String {
    let topics: Vec<String> = state
        .topics
        .iter()
        .map(|topic| {
            let list: Vec<String> = topic.partitions.iter().map(i32::to_string).collect();
            format!("{}({})", topic.topic.as_str(), list.join(","))
        })
        .collect();
    if topics.is_empty() {
        "-".to_string()
    } else {
        topics.join(" ")
    }
}

fn describe(client: &mut Client, output: OutputFormat, args: &DescribeArgs) -> Result<ExitCode> {
    let mut states = Vec::new();
    for id in &args.transactional_ids {
        states.push((id.clone(), describe_one(client, id)?));
    }
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = states
                .iter()
                .map(|(id, s)| {
                    json!({
                        "transactional_id": id,
                        "state": s.transaction_state.as_str(),
                        "producer_id": s.producer_id.0,
                        "producer_epoch": s.producer_epoch,
                        "timeout_ms": s.transaction_timeout_ms,
                        "start_time_ms": s.transaction_start_time_ms,
                        "partitions": partitions_text(s),
                    })
                })
                .collect();
            write_stdout(&render_json(&Value::Array(list)))?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "TRANSACTIONAL-ID",
                "STATE",
                "PRODUCER-ID",
                "EPOCH",
                "TIMEOUT-MS",
                "START-TIME-MS",
                "PARTITIONS",
            ]);
            for (id, s) in &states {
                table.row(vec![
                    id.clone(),
                    s.transaction_state.to_string(),
                    s.producer_id.0.to_string(),
                    s.producer_epoch.to_string(),
                    s.transaction_timeout_ms.to_string(),
                    s.transaction_start_time_ms.to_string(),
                    partitions_text(s),
                ]);
            }
            write_stdout(&table.render())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
