//! A consumer: one thread reading assigned partitions with Fetch, from the
//! partitions' leaders, one fetch in flight per leader (as Kafka's own
//! consumer does). It measures throughput, end-to-end latency (from the
//! intended send time in each record's value header to the moment the
//! record is parsed) and, in verify mode, logs every record it sees.
//!
//! Leaders may move during a run (a broker dies, restarts, stalls): a
//! partition's fetch then fails with NOT_LEADER_OR_FOLLOWER (or the
//! connection is lost), the consumer refreshes Metadata through its
//! [`Cluster`] and fetches from the new leader at the same position.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};

use sluice_client::admin::TopicLayout;
use sluice_client::codes::OFFSET_OUT_OF_RANGE;
use sluice_client::group::{GroupConfig, GroupMember};
use sluice_client::offsets::TopicPartition;
use sluice_client::retry::{classify, Refresh, RetryPolicy};
use sluice_client::{topic_name, Cluster, ConnectionError};

use crate::batch::parse_batches;
use crate::payload::ValueHeader;
use crate::rate::WallClock;
use crate::stats::{Metrics, Recorder};
use crate::verify::SeenLog;

/// Group timeouts: generous, since a consumer thread may wait out a fetch
/// and a leader change between heartbeats.
const GROUP: GroupConfig = GroupConfig {
    session_timeout: Duration::from_secs(30),
    rebalance_timeout: Duration::from_secs(30),
    heartbeat_interval: Duration::from_secs(3),
    join_deadline: Duration::from_secs(60),
};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub layout: TopicLayout,
    pub client_id: String,
    pub run_id: u32,
    pub max_wait: Duration,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub check_crc: bool,
    pub verify: bool,
    /// Self-test: pretend not to have seen this (producer, partition,
    /// sequence), so verify mode must report it lost.
    pub drop_record: Option<(u32, i32, u64)>,
    pub request_timeout: Duration,
    pub wall_clock: WallClock,
    pub records_max: Option<u64>,
    /// Consumer group to join; `None` reads assigned partitions.
    pub group: Option<String>,
    pub bootstrap: String,
}

/// Where consumers stop: set by the coordinator when the producers are done
/// (end to end) or at the start (`--until-end`).
pub type EndOffsets = Arc<Mutex<Option<BTreeMap<i32, i64>>>>;

/// What a consumer returns.
#[derive(Debug, Default)]
pub struct ConsumerOutcome {
    pub seen: SeenLog,
    pub foreign_records: u64,
    pub offsets: BTreeMap<i32, i64>,
}

pub fn run_consumer(
    config: Arc<ConsumerConfig>,
    index: usize,
    start_offsets: BTreeMap<i32, i64>,
    end_offsets: EndOffsets,
    metrics: Arc<Metrics>,
) -> Result<ConsumerOutcome> {
    let result = consume(&config, index, start_offsets, &end_offsets, &metrics);
    if let Err(error) = &result {
        metrics.fail(format!("consumer {index}: {error:#}"));
    }
    result
}

fn consume(
    config: &ConsumerConfig,
    index: usize,
    start_offsets: BTreeMap<i32, i64>,
    end_offsets: &EndOffsets,
    metrics: &Arc<Metrics>,
) -> Result<ConsumerOutcome> {
    let client_id = format!("{}-c{index}", config.client_id);
    let topic = config.layout.topic.clone();
    let mut cluster = Cluster::connect(
        &config.bootstrap,
        &client_id,
        config.request_timeout + config.max_wait,
    )?;
    cluster.refresh(std::slice::from_ref(&topic))?;
    // In a group, the coordinator decides the partitions; `start_offsets`
    // then only says where to start a partition nobody committed.
    let (mut member, mut offsets) = match &config.group {
        Some(group) => {
            let mut member = GroupMember::new(group, std::slice::from_ref(&topic), GROUP);
            let assigned = member.join(&mut cluster)?;
            let offsets = starting_positions(&mut cluster, &member, &assigned, &start_offsets)?;
            (Some(member), offsets)
        }
        None => (None, start_offsets.clone()),
    };
    metrics.consumers_ready.fetch_add(1, Ordering::Relaxed);
    let mut outcome = ConsumerOutcome::default();
    let mut recorder = Recorder::e2e(metrics.clone());
    let policy = RetryPolicy::default();
    let mut failures = 0u32;
    loop {
        if metrics.stopping() || reached_records_max(config, metrics) {
            break;
        }
        if let Some(ends) = end_offsets.lock().unwrap().as_ref() {
            let done = offsets
                .iter()
                .all(|(partition, offset)| ends.get(partition).is_none_or(|end| offset >= end));
            if done {
                break;
            }
        }
        if let Some(member) = member.as_mut() {
            if member.heartbeat_if_due(&mut cluster)? {
                // Commit what was read while the generation may take it.
                member.commit(&mut cluster, &positions(&topic, &offsets))?;
                let assigned = member.join(&mut cluster)?;
                offsets = starting_positions(&mut cluster, member, &assigned, &start_offsets)?;
            }
        }
        if offsets.is_empty() {
            // A group member without partitions waits for a rebalance.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut refresh = false;
        for partition in offsets.keys() {
            match cluster.leader(&topic, *partition) {
                Some(leader) => by_leader.entry(leader).or_default().push(*partition),
                None => refresh = true,
            }
        }
        for (leader, partitions) in by_leader {
            let fetched = fetch_once(
                config,
                &mut cluster,
                leader,
                &partitions,
                &mut offsets,
                &mut outcome,
                &mut recorder,
                metrics,
            );
            match fetched {
                Ok(moved) => refresh |= moved,
                Err(error) if ConnectionError::find(&error).is_some() => {
                    // The leader went away: find the new one, fetch there
                    // from the same positions.
                    Metrics::count_error(&metrics.fetch_errors, -1, 1);
                    cluster.recover(&error, Refresh::Nothing);
                    refresh = true;
                }
                Err(error) => return Err(error),
            }
        }
        if refresh {
            std::thread::sleep(policy.backoff(failures));
            failures += 1;
            if let Err(error) = cluster.refresh(std::slice::from_ref(&topic)) {
                // Every broker may be briefly unreachable; keep trying
                // until the run ends.
                Metrics::count_error(&metrics.fetch_errors, -1, 1);
                cluster.recover(&error, Refresh::Nothing);
            }
        } else {
            failures = 0;
        }
    }
    if let Some(member) = member.as_mut() {
        // What was read stays valid if leaving fails; the group then
        // notices by session timeout.
        let left = member
            .commit(&mut cluster, &positions(&topic, &offsets))
            .and_then(|_| member.leave(&mut cluster));
        if let Err(error) = left {
            eprintln!("warning: consumer {index} could not leave the group: {error:#}");
        }
    }
    outcome.offsets = offsets;
    Ok(outcome)
}

fn positions(topic: &str, offsets: &BTreeMap<i32, i64>) -> BTreeMap<TopicPartition, i64> {
    offsets
        .iter()
        .map(|(partition, offset)| ((topic.to_string(), *partition), *offset))
        .collect()
}

/// Committed offsets of a new assignment, else the run's start offsets.
fn starting_positions(
    cluster: &mut Cluster,
    member: &GroupMember,
    assigned: &[TopicPartition],
    start_offsets: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>> {
    let committed = member.committed(cluster, assigned)?;
    assigned
        .iter()
        .map(|key| {
            let offset = committed
                .get(key)
                .or_else(|| start_offsets.get(&key.1))
                .copied()
                .with_context(|| format!("no start offset for partition {}", key.1))?;
            Ok((key.1, offset))
        })
        .collect()
}

fn reached_records_max(config: &ConsumerConfig, metrics: &Metrics) -> bool {
    config
        .records_max
        .is_some_and(|max| metrics.consumed.records.load(Ordering::Relaxed) >= max)
}

/// One Fetch from `leader` for `partitions`; `Ok(true)` when a partition
/// answered that its leader moved (refresh Metadata).
#[allow(clippy::too_many_arguments)]
fn fetch_once(
    config: &ConsumerConfig,
    cluster: &mut Cluster,
    leader: i32,
    partitions: &[i32],
    offsets: &mut BTreeMap<i32, i64>,
    outcome: &mut ConsumerOutcome,
    recorder: &mut Recorder,
    metrics: &Metrics,
) -> Result<bool> {
    let partitions = partitions
        .iter()
        .map(|&partition| {
            FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offsets[&partition])
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(config.partition_max_bytes)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(config.max_wait.as_millis() as i32)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&config.layout.topic))
            .with_partitions(partitions)]);
    let connection = cluster.broker(leader)?;
    let version = connection.version::<FetchRequest>(12)?;
    if version < 4 {
        bail!("the broker serves Fetch only below v4 (no v2 record batches)");
    }
    let response = connection.call_at(&request, version)?;
    metrics.fetch_requests.fetch_add(1, Ordering::Relaxed);
    if response.error_code != 0 {
        Metrics::count_error(&metrics.fetch_errors, response.error_code, 1);
        std::thread::sleep(Duration::from_millis(100));
        return Ok(classify(response.error_code) == Some(Refresh::Metadata));
    }
    let mut moved = false;
    let now = Instant::now();
    recorder.at(now);
    let now_ns = config.wall_clock.unix_ns(now);
    for topic in &response.responses {
        for data in &topic.partitions {
            let partition = data.partition_index;
            let Some(offset) = offsets.get_mut(&partition) else {
                bail!("Fetch answered partition {partition}, which was not asked for");
            };
            if data.error_code == OFFSET_OUT_OF_RANGE && data.log_start_offset > *offset {
                // The broker no longer has these records: move on; verify
                // mode will name them.
                Metrics::count_error(&metrics.fetch_errors, data.error_code, 1);
                *offset = data.log_start_offset;
                continue;
            }
            if data.error_code != 0 {
                // A leader that moved, or a new leader whose high
                // watermark has not caught up yet: ask again.
                Metrics::count_error(&metrics.fetch_errors, data.error_code, 1);
                moved |= data.error_code == OFFSET_OUT_OF_RANGE
                    || classify(data.error_code) == Some(Refresh::Metadata);
                continue;
            }
            let Some(records) = &data.records else {
                continue;
            };
            let fetch_offset = *offset;
            let mut records_seen = 0u64;
            let mut value_bytes = 0u64;
            let summary = parse_batches(records, config.check_crc, |record| {
                if record.offset < fetch_offset {
                    return; // the batch holding fetch_offset starts earlier
                }
                records_seen += 1;
                let value = record.value.unwrap_or_default();
                value_bytes += value.len() as u64;
                match ValueHeader::decode(value) {
                    Some(header) if header.run_id == config.run_id => {
                        if config.drop_record == Some((header.producer, partition, header.sequence))
                        {
                            return;
                        }
                        recorder.record(now_ns.saturating_sub(header.intended_send_ns) / 1_000);
                        if config.verify {
                            outcome.seen.see(
                                (header.producer, partition),
                                header.sequence,
                                record.offset,
                            );
                        }
                    }
                    _ => outcome.foreign_records += 1,
                }
            })
            .with_context(|| format!("partition {partition} at offset {fetch_offset}"))?;
            if let Some(next) = summary.next_offset {
                *offset = next.max(*offset);
            }
            metrics.consumed.add(records_seen, value_bytes);
        }
    }
    Ok(moved)
}
