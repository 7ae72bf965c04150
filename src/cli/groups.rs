//! `sluice groups list | describe | delete | reset-offsets`: what
//! `kafka-consumer-groups.sh` does, over ListGroups (every broker),
//! FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets, DeleteGroups
//! and OffsetCommit.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest};
use serde_json::{json, Value};

use super::datetime::parse_datetime_ms;
use super::output::{offset_cell, render_json, OutputFormat, Table};
use super::{write_stdout, Common};
use sluice_client::codes::{GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP};
use sluice_client::offsets::{self, Leaders, TopicPartition, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use sluice_client::{group_id, retrying, Cluster as Client, Connection, KafkaError};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their states.
    List,
    /// Describe groups: members, assignments, committed offsets, log-end offsets, lag.
    Describe(DescribeArgs),
    /// Delete groups (only groups without active members).
    Delete(DeleteArgs),
    /// Set a group's committed offsets (only while it has no active members).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["groups", "all_groups"])))]
pub struct DescribeArgs {
    /// The group to describe (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Describe every group.
    #[arg(long)]
    pub all_groups: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The group to delete (repeatable).
    #[arg(long = "group", required = true)]
    pub groups: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("scope").required(true).args(["topics", "all_topics"])),
    group(clap::ArgGroup::new("target").required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])),
    after_help = "Without --execute the new offsets are only shown (--dry-run is the default).\n\
        The group must have no active members (state Empty or Dead).\n\
        --to-datetime takes YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM] (UTC when no zone \
        is given) or epoch milliseconds."
)]
pub struct ResetArgs {
    /// The group whose offsets to reset.
    #[arg(long)]
    pub group: String,
    /// A topic, or `topic:0,1,2` for some of its partitions (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic_scope)]
    pub topics: Vec<TopicScope>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// To the earliest offset of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log-end offset of each partition.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (kept within each partition's earliest and log-end offsets).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first offset at or after this time.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime_ms)]
    pub to_datetime: Option<i64>,
    /// Move each committed offset by N (negative: back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Show the new offsets without committing them (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
}

/// `--topic orders` or `--topic orders:0,2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicScope {
    pub topic: String,
    /// `None`: every partition.
    pub partitions: Option<Vec<i32>>,
}

pub fn parse_topic_scope(text: &str) -> Result<TopicScope, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                .collect::<Option<Vec<i32>>>()
                .ok_or_else(|| format!("expected TOPIC:PARTITION[,PARTITION...], got '{text}'"))?;
            (topic, Some(partitions))
        }
    };
    if topic.is_empty() {
        return Err(format!("no topic name in '{text}'"));
    }
    Ok(TopicScope {
        topic: topic.to_string(),
        partitions,
    })
}

pub fn run(common: &Common, command: GroupsCommand) -> Result<ExitCode> {
    let mut client = common.connect()?;
    let output = common.output;
    match command {
        GroupsCommand::List => list(&mut client, output),
        GroupsCommand::Describe(args) => describe(&mut client, output, &args),
        GroupsCommand::Delete(args) => delete(&mut client, output, &args),
        GroupsCommand::ResetOffsets(args) => reset_offsets(&mut client, output, &args),
    }
}

/// A group as ListGroups names it.
pub(crate) struct ListedGroup {
    pub(crate) group: String,
    pub(crate) state: String,
    pub(crate) protocol_type: String,
    /// KIP-848's group type ("classic" or "consumer"); empty from brokers
    /// before ListGroups v5.
    pub(crate) group_type: String,
}

/// Every group of every broker (each broker lists the groups it coordinates).
pub(crate) fn list_all(client: &mut Client) -> Result<Vec<ListedGroup>> {
    client.metadata(Some(&[]))?;
    let mut groups = BTreeMap::new();
    for broker in client.broker_ids() {
        let response = client
            .broker(broker)?
            .call(&ListGroupsRequest::default(), 5)?;
        KafkaError::check(response.error_code, None, "listing groups")?;
        for listed in response.groups {
            let group = listed.group_id.0.to_string();
            groups.insert(
                group.clone(),
                ListedGroup {
                    group,
                    state: listed.group_state.to_string(),
                    protocol_type: listed.protocol_type.to_string(),
                    group_type: listed.group_type.to_string(),
                },
            );
        }
    }
    Ok(groups.into_values().collect())
}

fn list(client: &mut Client, output: OutputFormat) -> Result<ExitCode> {
    let groups = list_all(client)?;
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = groups
                .iter()
                .map(|g| {
                    json!({"group": g.group, "type": g.group_type, "state": g.state,
                           "protocol_type": g.protocol_type})
                })
                .collect();
            write_stdout(&render_json(&Value::Array(list)))?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["GROUP", "TYPE", "STATE", "PROTOCOL-TYPE"]);
            let or_dash = |text: String| {
                if text.is_empty() {
                    "-".to_string()
                } else {
                    text
                }
            };
            for g in groups {
                table.row(vec![
                    g.group,
                    or_dash(g.group_type),
                    or_dash(g.state),
                    g.protocol_type,
                ]);
            }
            write_stdout(&table.render())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn describe_group(client: &mut Client, group: &str) -> Result<DescribedGroup> {
    retrying(client, |client| {
        describe_group_once(client.coordinator(group)?, group)
    })
}

fn describe_group_once(connection: &mut Connection, group: &str) -> Result<DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = connection.call(&request, 5)?;
    let Some(described) = response.groups.into_iter().next() else {
        bail!("the broker answered DescribeGroups with no group");
    };
    let sentence = if described.error_code == GROUP_ID_NOT_FOUND {
        format!("Consumer group '{group}' does not exist.")
    } else {
        format!("describing group '{group}'")
    };
    KafkaError::check(
        described.error_code,
        described.error_message.as_ref(),
        sentence,
    )?;
    Ok(described)
}

/// A member's assigned partitions, decoded from the consumer protocol's
/// assignment bytes; empty for other protocols or bytes that do not decode.
pub fn decode_assignment(protocol_type: &str, bytes: &[u8]) -> Vec<TopicPartition> {
    if protocol_type != "consumer" {
        return Vec::new();
    }
    let mut partitions =
        sluice_client::group::decode_assignment(&bytes::Bytes::copy_from_slice(bytes))
            .unwrap_or_default();
    partitions.sort();
    partitions
}

pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) host: String,
    pub(crate) assignment: Vec<TopicPartition>,
}

pub(crate) struct OffsetRow {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) current: Option<i64>,
    pub(crate) log_end: Option<i64>,
    /// Index into the members of the one assigned this partition.
    pub(crate) member: Option<usize>,
}

impl OffsetRow {
    pub(crate) fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.current?).max(0))
    }
}

pub(crate) struct GroupView {
    pub(crate) group: String,
    /// KIP-848's group type; empty when the broker does not say.
    pub(crate) group_type: String,
    pub(crate) state: String,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<Member>,
    pub(crate) offsets: Vec<OffsetRow>,
}

/// Leaders of the partitions of those `topics` that still exist (a group
/// may hold offsets of deleted topics).
fn existing_leaders(client: &mut Client, topics: &BTreeSet<String>) -> Result<Leaders> {
    if topics.is_empty() {
        return Ok(Leaders::new());
    }
    let names: Vec<String> = topics.iter().cloned().collect();
    let metadata = client.metadata(Some(&names))?;
    let mut leaders = Leaders::new();
    for topic in metadata.topics.iter().filter(|topic| topic.error_code == 0) {
        let name = topic
            .name
            .as_ref()
            .map_or("", |name| name.0.as_str())
            .to_string();
        let partitions = leaders.entry(name).or_default();
        for partition in &topic.partitions {
            partitions.insert(partition.partition_index, partition.leader_id.0);
        }
    }
    Ok(leaders)
}

fn has_partition(leaders: &Leaders, (topic, partition): &TopicPartition) -> bool {
    leaders
        .get(topic)
        .is_some_and(|partitions| partitions.contains_key(partition))
}

/// The type of `group` ("classic" or "consumer", ListGroups v5) as its
/// coordinator lists it; empty from a broker that does not say.
fn group_type(client: &mut Client, group: &str) -> Result<String> {
    let listed = retrying(client, |client| {
        client
            .coordinator(group)?
            .call(&ListGroupsRequest::default(), 5)
    })?;
    Ok(listed
        .groups
        .iter()
        .find(|listed| listed.group_id.0.as_str() == group)
        .map(|listed| listed.group_type.to_string())
        .unwrap_or_default())
}

pub(crate) fn view_group(client: &mut Client, group: &str) -> Result<GroupView> {
    let described = describe_group(client, group)?;
    let committed = offsets::committed(client, group, None)?;
    if described.group_state.as_str() == "Dead" && committed.is_empty() {
        KafkaError::check(
            GROUP_ID_NOT_FOUND,
            None,
            format!("Consumer group '{group}' does not exist."),
        )?;
    }
    let protocol_type = described.protocol_type.to_string();
    let members: Vec<Member> = described
        .members
        .iter()
        .map(|member| Member {
            member_id: member.member_id.to_string(),
            group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            client_id: member.client_id.to_string(),
            host: member.client_host.to_string(),
            assignment: decode_assignment(&protocol_type, &member.member_assignment),
        })
        .collect();
    let mut partitions: BTreeMap<TopicPartition, Option<usize>> =
        committed.keys().map(|key| (key.clone(), None)).collect();
    for (index, member) in members.iter().enumerate() {
        for key in &member.assignment {
            partitions.insert(key.clone(), Some(index));
        }
    }
    let topics: BTreeSet<String> = partitions.keys().map(|(topic, _)| topic.clone()).collect();
    let leaders = existing_leaders(client, &topics)?;
    let known: Vec<TopicPartition> = partitions
        .keys()
        .filter(|key| has_partition(&leaders, key))
        .cloned()
        .collect();
    let log_end = offsets::list_offsets(client, &known, LATEST_TIMESTAMP)?;
    let offsets = partitions
        .into_iter()
        .map(|(key, member)| OffsetRow {
            current: committed.get(&key).copied(),
            log_end: log_end.get(&key).copied().flatten(),
            topic: key.0,
            partition: key.1,
            member,
        })
        .collect();
    Ok(GroupView {
        group: group.to_string(),
        group_type: group_type(client, group)?,
        state: described.group_state.to_string(),
        protocol_type,
        protocol: described.protocol_data.to_string(),
        members,
        offsets,
    })
}

fn describe(client: &mut Client, output: OutputFormat, args: &DescribeArgs) -> Result<ExitCode> {
    let names: Vec<String> = if args.all_groups {
        list_all(client)?.into_iter().map(|g| g.group).collect()
    } else {
        args.groups.clone()
    };
    let mut views = Vec::new();
    for name in &names {
        views.push(view_group(client, name)?);
    }
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = views.iter().map(view_json).collect();
            write_stdout(&render_json(&Value::Array(list)))?;
        }
        OutputFormat::Table => {
            let text: Vec<String> = views.iter().map(view_table).collect();
            write_stdout(&text.join("\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `orders(0,1) payments(2)`.
pub(crate) fn assignment_text(assignment: &[TopicPartition]) -> String {
    offsets::by_topic(assignment.iter().cloned())
        .iter()
        .map(|(topic, partitions)| {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}({})", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn members_table(members: &[Member]) -> Table {
    let mut table = Table::new(&[
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for member in members {
        table.row(vec![
            member.member_id.clone(),
            member
                .group_instance_id
                .clone()
                .unwrap_or_else(|| "-".into()),
            member.host.clone(),
            member.client_id.clone(),
            member.assignment.len().to_string(),
            assignment_text(&member.assignment),
        ]);
    }
    table
}

fn offsets_table(view: &GroupView) -> Table {
    let mut table = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for row in &view.offsets {
        let member = row.member.map(|index| &view.members[index]);
        let cell =
            |field: fn(&Member) -> &String| member.map_or("-".to_string(), |m| field(m).clone());
        table.row(vec![
            view.group.clone(),
            row.topic.clone(),
            row.partition.to_string(),
            offset_cell(row.current),
            offset_cell(row.log_end),
            offset_cell(row.lag()),
            cell(|m| &m.member_id),
            cell(|m| &m.host),
            cell(|m| &m.client_id),
        ]);
    }
    table
}

fn view_table(view: &GroupView) -> String {
    let protocol = if view.protocol.is_empty() {
        "-"
    } else {
        &view.protocol
    };
    let group_type = if view.group_type.is_empty() {
        "-"
    } else {
        &view.group_type
    };
    let mut text = format!(
        "Group: {}  State: {}  Type: {group_type}  Protocol: {protocol}  Members: {}\n",
        view.group,
        view.state,
        view.members.len()
    );
    if view.members.is_empty() {
        text.push_str(&format!(
            "Consumer group '{}' has no active members.\n",
            view.group
        ));
    } else {
        text.push('\n');
        text.push_str(&members_table(&view.members).render());
    }
    text.push('\n');
    text.push_str(&offsets_table(view).render());
    text
}

fn view_json(view: &GroupView) -> Value {
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|member| {
            let assignment: Vec<Value> = offsets::by_topic(member.assignment.iter().cloned())
                .into_iter()
                .map(|(topic, partitions)| json!({"topic": topic, "partitions": partitions}))
                .collect();
            json!({
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "host": member.host,
                "assignment": assignment,
            })
        })
        .collect();
    let offsets: Vec<Value> = view
        .offsets
        .iter()
        .map(|row| {
            json!({
                "topic": row.topic,
                "partition": row.partition,
                "current_offset": row.current,
                "log_end_offset": row.log_end,
                "lag": row.lag(),
                "member_id": row.member.map(|index| view.members[index].member_id.clone()),
            })
        })
        .collect();
    json!({
        "group": view.group,
        "type": view.group_type,
        "state": view.state,
        "protocol_type": view.protocol_type,
        "protocol": view.protocol,
        "members": members,
        "offsets": offsets,
    })
}

fn delete(client: &mut Client, output: OutputFormat, args: &DeleteArgs) -> Result<ExitCode> {
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for group in &args.groups {
        match delete_one(client, group) {
            Ok(()) => deleted.push(group.clone()),
            Err(error) => failed.push((group.clone(), format!("{error:#}"))),
        }
    }
    match output {
        OutputFormat::Json => {
            let errors: BTreeMap<&str, &str> = failed
                .iter()
                .map(|(group, error)| (group.as_str(), error.as_str()))
                .collect();
            write_stdout(&render_json(&json!({"deleted": deleted, "errors": errors})))?;
        }
        OutputFormat::Table => {
            let lines: String = deleted
                .iter()
                .map(|group| format!("Deleted consumer group '{group}'.\n"))
                .collect();
            write_stdout(&lines)?;
        }
    }
    for (_, error) in &failed {
        eprintln!("Error: {error}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn delete_one(client: &mut Client, group: &str) -> Result<()> {
    let connection = client.coordinator(group)?;
    let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let response = connection.call(&request, 2)?;
    for result in &response.results {
        let sentence = match result.error_code {
            GROUP_ID_NOT_FOUND => format!("Consumer group '{group}' does not exist."),
            NON_EMPTY_GROUP => format!("Consumer group '{group}' has active members."),
            _ => format!("deleting group '{group}'"),
        };
        KafkaError::check(result.error_code, None, sentence)?;
    }
    Ok(())
}

/// How each partition's new offset is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
    ShiftBy(i64),
}

impl ResetArgs {
    fn target(&self) -> Target {
        if self.to_earliest {
            Target::Earliest
        } else if self.to_latest {
            Target::Latest
        } else if let Some(offset) = self.to_offset {
            Target::Offset(offset)
        } else if let Some(timestamp) = self.to_datetime {
            Target::Timestamp(timestamp)
        } else {
            Target::ShiftBy(self.shift_by.expect("clap requires one target"))
        }
    }
}

/// A group with members is being consumed: offsets changed under it would
/// be overwritten by its next commit, so Kafka's tool refuses, and so do we.
pub(crate) fn check_inactive(described: &DescribedGroup, group: &str) -> Result<()> {
    let state = described.group_state.as_str();
    if matches!(state, "Empty" | "Dead") && described.members.is_empty() {
        return Ok(());
    }
    bail!(
        "Offsets can only be reset while group '{group}' is inactive, but it is {state} \
         with {} member(s). Stop its consumers first.",
        described.members.len()
    );
}

/// The partitions `--topic`/`--all-topics` name, and their leaders.
pub(crate) fn reset_scope(
    client: &mut Client,
    args: &ResetArgs,
    committed: &BTreeMap<TopicPartition, i64>,
) -> Result<(Vec<TopicPartition>, Leaders)> {
    if args.all_topics {
        let topics: BTreeSet<String> = committed.keys().map(|(topic, _)| topic.clone()).collect();
        let leaders = existing_leaders(client, &topics)?;
        let partitions = committed
            .keys()
            .filter(|key| has_partition(&leaders, key))
            .cloned()
            .collect();
        return Ok((partitions, leaders));
    }
    let topics: Vec<String> = args
        .topics
        .iter()
        .map(|scope| scope.topic.clone())
        .collect();
    let leaders = offsets::leaders(client, &topics)?;
    let mut partitions = Vec::new();
    for scope in &args.topics {
        let all = &leaders[&scope.topic];
        let chosen = scope
            .partitions
            .clone()
            .unwrap_or_else(|| all.keys().copied().collect());
        for partition in chosen {
            if !all.contains_key(&partition) {
                bail!("topic '{}' has no partition {partition}", scope.topic);
            }
            partitions.push((scope.topic.clone(), partition));
        }
    }
    Ok((partitions, leaders))
}

fn reset_offsets(client: &mut Client, output: OutputFormat, args: &ResetArgs) -> Result<ExitCode> {
    let group = &args.group;
    let described = describe_group(client, group)?;
    check_inactive(&described, group)?;
    let committed = offsets::committed(client, group, None)?;
    let (partitions, _) = reset_scope(client, args, &committed)?;
    let plan = plan_offsets(client, &partitions, &committed, args.target())?;
    if args.execute && !plan.is_empty() {
        let new: BTreeMap<TopicPartition, i64> = plan
            .iter()
            .map(|(key, (_, new))| (key.clone(), *new))
            .collect();
        offsets::commit(client, group, &new)?;
    }
    match output {
        OutputFormat::Json => {
            let rows: Vec<Value> = plan
                .iter()
                .map(|((topic, partition), (current, new))| {
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "current_offset": current,
                        "new_offset": new,
                    })
                })
                .collect();
            write_stdout(&render_json(
                &json!({"group": group, "executed": args.execute, "offsets": rows}),
            ))?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "NEW-OFFSET",
            ]);
            for ((topic, partition), (current, new)) in &plan {
                table.row(vec![
                    group.clone(),
                    topic.clone(),
                    partition.to_string(),
                    offset_cell(*current),
                    new.to_string(),
                ]);
            }
            write_stdout(&table.render())?;
        }
    }
    if !args.execute {
        eprintln!("Dry run: nothing was committed. Add --execute to commit these offsets.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Partition -> (current committed offset, new offset).
pub(crate) type Plan = BTreeMap<TopicPartition, (Option<i64>, i64)>;

/// Each partition's new offset, kept within the partition's earliest and
/// log-end offsets as Kafka's tool does.
pub(crate) fn plan_offsets(
    client: &mut Client,
    partitions: &[TopicPartition],
    committed: &BTreeMap<TopicPartition, i64>,
    target: Target,
) -> Result<Plan> {
    let earliest = offsets::list_offsets(client, partitions, EARLIEST_TIMESTAMP)?;
    let latest = offsets::list_offsets(client, partitions, LATEST_TIMESTAMP)?;
    let at_time = match target {
        Target::Timestamp(timestamp) => offsets::list_offsets(client, partitions, timestamp)?,
        _ => BTreeMap::new(),
    };
    let mut plan = Plan::new();
    for key in partitions {
        let range = LogRange {
            earliest: earliest.get(key).copied().flatten(),
            latest: latest.get(key).copied().flatten(),
            at_time: at_time.get(key).copied().flatten(),
        };
        let current = committed.get(key).copied();
        let new = new_offset(target, range, current).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot shift the offset of {}-{}: the group has no committed offset there",
                key.0,
                key.1
            )
        })?;
        plan.insert(key.clone(), (current, new));
    }
    Ok(plan)
}

/// What ListOffsets said of one partition.
#[derive(Debug, Clone, Copy, Default)]
struct LogRange {
    earliest: Option<i64>,
    latest: Option<i64>,
    /// The first offset at or after `--to-datetime`, if any.
    at_time: Option<i64>,
}

/// A partition's new offset, kept within its earliest and log-end offsets
/// as Kafka's tool does; `None` for a shift without a committed offset.
fn new_offset(target: Target, range: LogRange, current: Option<i64>) -> Option<i64> {
    let low = range.earliest.unwrap_or(0);
    let high = range.latest.unwrap_or(low).max(low);
    let wanted = match target {
        Target::Earliest => low,
        Target::Latest => high,
        Target::Offset(offset) => offset,
        // No record that recent: the end of the log.
        Target::Timestamp(_) => range.at_time.unwrap_or(high),
        Target::ShiftBy(shift) => current?.saturating_add(shift),
    };
    Some(wanted.clamp(low, high))
}
#[cfg(test)]
mod tests;
