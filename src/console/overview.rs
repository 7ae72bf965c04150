//! The cluster, topics and topic pages, and the topic changes (create, add
//! partitions, set and remove config overrides, delete): gathers what a
//! page shows from Metadata, ListOffsets, DescribeLogDirs, DescribeConfigs
//! and the groups' OffsetFetch, bounded per page so that a cluster of many
//! partitions costs one page's worth. Renders through `pages`, knows no
//! HTTP beyond the [`Reply`] it returns.

use std::collections::BTreeMap;

use anyhow::Result;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::BrokerId;
use sluice_client::admin::{self, NewTopic, CONFIG_SOURCE_TOPIC};
use sluice_client::offsets::{self, TopicPartition, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use sluice_client::{Cluster as Client, KafkaError};

use super::http::{percent_encode, Params, Reply};
use super::pages::{
    BrokerRow, Chrome, ClusterPage, ConfigRow, Pager, PartitionRow, RateRow, TopicGroupRow,
    TopicPage, TopicRow, TopicsPage,
};
use super::{done, format_bytes, required, user_error};
use crate::cli::groups::list_all;
use crate::cli::output::join_ids;

const TOPICS_PER_PAGE: usize = 50;
const PARTITIONS_PER_PAGE: usize = 200;
/// Groups whose offsets the topic page looks through.
const GROUPS_SCANNED_MAX: usize = 50;

fn name_of(topic: &MetadataResponseTopic) -> &str {
    topic.name.as_ref().map_or("", |name| name.0.as_str())
}

fn ids(brokers: &[BrokerId]) -> Vec<i32> {
    brokers.iter().map(|id| id.0).collect()
}

fn is_under_replicated(
    partition: &kafka_protocol::messages::metadata_response::MetadataResponsePartition,
) -> bool {
    partition.isr_nodes.len() < partition.replica_nodes.len()
}

pub fn cluster(
    client: &mut Client,
    chrome: Chrome,
    source: String,
    broker_rates: Vec<RateRow>,
    topic_rates: Vec<RateRow>,
) -> Result<ClusterPage> {
    let metadata = client.metadata(None)?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut partitions, mut under_replicated, mut offline) = (0, 0, 0);
    for topic in &metadata.topics {
        for partition in &topic.partitions {
            partitions += 1;
            *led.entry(partition.leader_id.0).or_default() += 1;
            under_replicated += usize::from(is_under_replicated(partition));
            offline += usize::from(partition.leader_id.0 < 0);
        }
    }
    let controller = metadata.controller_id.0;
    let brokers = metadata
        .brokers
        .iter()
        .map(|broker| BrokerRow {
            id: broker.node_id.0,
            address: format!("{}:{}", broker.host.as_str(), broker.port),
            rack: broker
                .rack
                .as_ref()
                .map_or("-".into(), |rack| rack.to_string()),
            controller: broker.node_id.0 == controller,
            leaders: led.get(&broker.node_id.0).copied().unwrap_or(0),
        })
        .collect();
    Ok(ClusterPage {
        chrome,
        cluster_id: metadata
            .cluster_id
            .as_ref()
            .map_or("-".into(), |id| id.to_string()),
        controller: if controller >= 0 {
            format!("broker {controller}")
        } else {
            "unknown".into()
        },
        brokers,
        topics: metadata.topics.len(),
        partitions,
        under_replicated,
        offline,
        source,
        broker_rates,
        topic_rates,
    })
}

/// Partition -> (earliest, latest) offset.
type LogRanges = BTreeMap<TopicPartition, (Option<i64>, Option<i64>)>;

/// Earliest and latest offsets of `partitions` (missing: no leader).
fn log_ranges(client: &mut Client, partitions: &[TopicPartition]) -> Result<LogRanges> {
    let led: Vec<TopicPartition> = partitions
        .iter()
        .filter(|(topic, partition)| client.leader(topic, *partition).is_some_and(|l| l >= 0))
        .cloned()
        .collect();
    let earliest = offsets::list_offsets(client, &led, EARLIEST_TIMESTAMP)?;
    let mut latest = offsets::list_offsets(client, &led, LATEST_TIMESTAMP)?;
    Ok(earliest
        .into_iter()
        .map(|(key, start)| {
            let end = latest.remove(&key).flatten();
            (key, (start, end))
        })
        .collect())
}

/// A partition's size: its largest replica.
fn partition_size(
    sizes: &BTreeMap<TopicPartition, BTreeMap<i32, i64>>,
    key: &TopicPartition,
) -> Option<i64> {
    sizes
        .get(key)
        .and_then(|replicas| replicas.values().copied().max())
}

pub fn topics(client: &mut Client, chrome: Chrome, query: &Params) -> Result<TopicsPage> {
    let search = query.get("q").unwrap_or("").to_string();
    let page: usize = query.number("page").map_err(user_error)?.unwrap_or(1);
    let metadata = client.metadata(None)?;
    let mut matching: Vec<&MetadataResponseTopic> = metadata
        .topics
        .iter()
        .filter(|topic| {
            name_of(topic)
                .to_lowercase()
                .contains(&search.to_lowercase())
        })
        .collect();
    matching.sort_by_key(|topic| name_of(topic));
    let base = format!("/topics?q={}&page=", percent_encode(&search));
    let (pager, shown) = Pager::paginate(page, TOPICS_PER_PAGE, &matching, base);
    let names: Vec<String> = shown
        .iter()
        .map(|topic| name_of(topic).to_string())
        .collect();
    let keys: Vec<TopicPartition> = shown
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| (name_of(topic).to_string(), p.partition_index))
        })
        .collect();
    let ranges = log_ranges(client, &keys)?;
    let sizes = admin::replica_sizes(client).unwrap_or_default();
    let configs = admin::describe_configs(client, &names)?;
    let rows = shown
        .iter()
        .map(|topic| {
            let name = name_of(topic);
            let mut records = Some(0i64);
            let mut size = 0;
            for partition in &topic.partitions {
                let key = (name.to_string(), partition.partition_index);
                records = match (records, ranges.get(&key)) {
                    (Some(sum), Some((Some(start), Some(end)))) => Some(sum + (end - start).max(0)),
                    _ => None,
                };
                size += partition_size(&sizes, &key).unwrap_or(0);
            }
            let overrides: Vec<String> = configs
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(_, (_, source))| *source == CONFIG_SOURCE_TOPIC)
                .map(|(key, (value, _))| format!("{key}={}", value.as_deref().unwrap_or("")))
                .collect();
            TopicRow {
                name: name.to_string(),
                internal: topic.is_internal,
                partitions: topic.partitions.len(),
                replication_factor: topic
                    .partitions
                    .iter()
                    .map(|p| p.replica_nodes.len())
                    .max()
                    .unwrap_or(0),
                records: records.map_or("-".into(), |r| r.to_string()),
                size: if sizes.is_empty() {
                    "-".into()
                } else {
                    format_bytes(size)
                },
                under_replicated: topic
                    .partitions
                    .iter()
                    .filter(|p| is_under_replicated(p))
                    .count(),
                overrides: overrides.join(", "),
            }
        })
        .collect();
    Ok(TopicsPage {
        chrome,
        query: search,
        rows,
        pager,
    })
}

fn config_source(source: i8) -> &'static str {
    match source {
        1 => "topic override",
        2 => "broker (dynamic)",
        3 => "cluster default (dynamic)",
        4 => "broker (static)",
        5 => "default",
        6 => "broker logger",
        _ => "other",
    }
}

fn offset_text(offset: Option<i64>) -> String {
    offset.map_or("-".into(), |offset| offset.to_string())
}

pub fn topic(client: &mut Client, chrome: Chrome, query: &Params) -> Result<TopicPage> {
    let name = required(query, "name")?.to_string();
    let page: usize = query.number("page").map_err(user_error)?.unwrap_or(1);
    let metadata = client.metadata(Some(std::slice::from_ref(&name)))?;
    let Some(topic) = metadata.topics.iter().find(|topic| name_of(topic) == name) else {
        return Err(user_error(format!("Topic '{name}' does not exist.")));
    };
    KafkaError::check(topic.error_code, None, format!("Topic '{name}'"))?;
    let mut all = topic.partitions.clone();
    all.sort_by_key(|partition| partition.partition_index);
    let base = format!("/topic?name={}&page=", percent_encode(&name));
    let (pager, shown) = Pager::paginate(page, PARTITIONS_PER_PAGE, &all, base);
    let keys: Vec<TopicPartition> = shown
        .iter()
        .map(|p| (name.clone(), p.partition_index))
        .collect();
    let ranges = log_ranges(client, &keys)?;
    let sizes = admin::replica_sizes(client).unwrap_or_default();
    let partitions = shown
        .iter()
        .map(|partition| {
            let key = (name.clone(), partition.partition_index);
            let (start, end) = ranges.get(&key).copied().unwrap_or((None, None));
            PartitionRow {
                partition: partition.partition_index,
                leader: if partition.leader_id.0 >= 0 {
                    partition.leader_id.0.to_string()
                } else {
                    "none (offline)".into()
                },
                replicas: join_ids(&ids(&partition.replica_nodes)),
                isr: join_ids(&ids(&partition.isr_nodes)),
                start: offset_text(start),
                end: offset_text(end),
                size: partition_size(&sizes, &key).map_or("-".into(), format_bytes),
                under_replicated: is_under_replicated(partition),
            }
        })
        .collect();
    let mut configs: Vec<ConfigRow> = admin::describe_configs(client, std::slice::from_ref(&name))?
        .remove(&name)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, (value, source))| ConfigRow {
            name: key,
            value: value.unwrap_or_else(|| "(sensitive or unset)".into()),
            source: config_source(source),
            is_override: source == CONFIG_SOURCE_TOPIC,
        })
        .collect();
    configs.sort_by(|a, b| b.is_override.cmp(&a.is_override).then(a.name.cmp(&b.name)));
    let all_keys: Vec<i32> = all.iter().map(|p| p.partition_index).collect();
    let (groups, groups_note) = consuming_groups(client, &name, &all_keys)?;
    Ok(TopicPage {
        chrome,
        partition_count: all.len(),
        name,
        partitions,
        pager,
        configs,
        groups,
        groups_note,
    })
}

/// The groups with committed offsets on `topic`, and their lag.
fn consuming_groups(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
) -> Result<(Vec<TopicGroupRow>, Option<String>)> {
    let listed = list_all(client)?;
    let note = (listed.len() > GROUPS_SCANNED_MAX).then(|| {
        format!(
            "Only the first {GROUPS_SCANNED_MAX} of {} groups were looked at.",
            listed.len()
        )
    });
    let wanted: BTreeMap<String, Vec<i32>> = [(topic.to_string(), partitions.to_vec())].into();
    let mut found = Vec::new();
    for group in listed.iter().take(GROUPS_SCANNED_MAX) {
        let committed = offsets::committed(client, &group.group, Some(&wanted))?;
        if !committed.is_empty() {
            found.push((group, committed));
        }
    }
    if found.is_empty() {
        return Ok((Vec::new(), note));
    }
    let keys: Vec<TopicPartition> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let ends = offsets::list_offsets(client, &keys, LATEST_TIMESTAMP)?;
    let rows = found
        .into_iter()
        .map(|(group, committed)| {
            let lag: i64 = committed
                .iter()
                .filter_map(|(key, offset)| {
                    Some((ends.get(key).copied().flatten()? - offset).max(0))
                })
                .sum();
            TopicGroupRow {
                group: group.group.clone(),
                state: group.state.clone(),
                partitions: committed.len(),
                lag: lag.to_string(),
            }
        })
        .collect();
    Ok((rows, note))
}

fn topic_page(topic: &str) -> String {
    format!("/topic?name={}", percent_encode(topic))
}

/// `key=value` lines.
fn key_values(text: Option<&str>) -> Result<Vec<(String, String)>> {
    text.unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| crate::cli::parse_key_value(line).map_err(user_error))
        .collect()
}

pub fn create_topic(client: &mut Client, form: &Params) -> Result<Reply> {
    let name = required(form, "name")?.to_string();
    let new = NewTopic {
        name: name.clone(),
        partitions: form.number("partitions").map_err(user_error)?,
        replication_factor: form.number("replication_factor").map_err(user_error)?,
        configs: key_values(form.get("configs"))?,
        validate_only: false,
    };
    let result = admin::create_topic(client, &new)?;
    KafkaError::check(
        result.error_code,
        result.error_message.as_ref(),
        format!("creating topic '{name}'"),
    )?;
    Ok(done("/topics", &format!("Created topic '{name}'.")))
}

pub fn add_partitions(client: &mut Client, form: &Params) -> Result<Reply> {
    let topic = required(form, "topic")?;
    let count: i32 = form
        .number("count")
        .map_err(user_error)?
        .ok_or_else(|| user_error("'count' is required"))?;
    admin::add_partitions(client, topic, count)?;
    Ok(done(
        &topic_page(topic),
        &format!("Topic '{topic}' now has {count} partitions."),
    ))
}

pub fn set_config(client: &mut Client, form: &Params) -> Result<Reply> {
    let topic = required(form, "topic")?;
    let key = required(form, "key")?.to_string();
    let value = required(form, "value")?.to_string();
    let notice = format!("Set {key}={value}.");
    admin::alter_configs(client, topic, &[(key, value)], &[])?;
    Ok(done(&topic_page(topic), &notice))
}

pub fn delete_config(client: &mut Client, form: &Params) -> Result<Reply> {
    let topic = required(form, "topic")?;
    let key = required(form, "key")?.to_string();
    let notice = format!("Removed the override of {key}.");
    admin::alter_configs(client, topic, &[], &[key])?;
    Ok(done(&topic_page(topic), &notice))
}

pub fn delete_topic(client: &mut Client, form: &Params) -> Result<Reply> {
    let topic = required(form, "topic")?;
    if form.get("confirm") != Some(topic) {
        return Err(user_error(format!(
            "Type the topic's name, '{topic}', to delete it."
        )));
    }
    for result in admin::delete_topics(client, &[topic.to_string()])? {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            format!("deleting topic '{topic}'"),
        )?;
    }
    Ok(done("/topics", &format!("Deleted topic '{topic}'.")))
}
