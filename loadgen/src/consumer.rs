//! A consumer: one thread reading assigned partitions with Fetch, from the
//! partitions' leaders, one fetch in flight per leader (as Kafka's own
//! consumer does). It measures throughput, end-to-end latency (from the
//! intended send time in each record's value header to the moment the
//! record is parsed) and, in verify mode, logs every record it sees.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};

use crate::admin::{topic_name, TopicLayout};
use crate::batch::parse_batches;
use crate::group::{GroupMember, Poll};
use crate::payload::ValueHeader;
use crate::rate::WallClock;
use crate::stats::{Metrics, Recorder};
use crate::verify::SeenLog;
use crate::wire::Connection;

const OFFSET_OUT_OF_RANGE: i16 = 1;

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

struct LeaderSession {
    leader: i32,
    connection: Connection,
    version: i16,
    partitions: Vec<i32>,
}

fn consume(
    config: &ConsumerConfig,
    index: usize,
    start_offsets: BTreeMap<i32, i64>,
    end_offsets: &EndOffsets,
    metrics: &Arc<Metrics>,
) -> Result<ConsumerOutcome> {
    let client_id = format!("{}-c{index}", config.client_id);
    let mut connections: BTreeMap<i32, Connection> = BTreeMap::new();
    // In a group, the coordinator decides the partitions; `start_offsets`
    // then only says where to start a partition nobody committed.
    let (mut member, mut offsets) = match &config.group {
        Some(group) => {
            let (mut member, assigned) = GroupMember::join(
                &config.bootstrap,
                group,
                &config.layout.topic,
                config.layout.partitions(),
                &client_id,
                config.request_timeout,
            )?;
            let offsets = starting_positions(&mut member, &assigned, &start_offsets)?;
            (Some(member), offsets)
        }
        None => (None, start_offsets.clone()),
    };
    let mut sessions = sessions_for(config, &client_id, &offsets, &mut connections)?;
    metrics.consumers_ready.fetch_add(1, Ordering::Relaxed);
    let mut outcome = ConsumerOutcome::default();
    let mut recorder = Recorder::e2e(metrics.clone());
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
            if let Poll::Reassigned(assigned) = member.poll(&offsets)? {
                offsets = starting_positions(member, &assigned, &start_offsets)?;
                for session in sessions.drain(..) {
                    connections.insert(session.leader, session.connection);
                }
                sessions = sessions_for(config, &client_id, &offsets, &mut connections)?;
            }
        }
        if sessions.is_empty() {
            // A group member without partitions waits for a rebalance.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        for session in &mut sessions {
            fetch_once(
                config,
                session,
                &mut offsets,
                &mut outcome,
                &mut recorder,
                metrics,
            )?;
        }
    }
    if let Some(member) = member.as_mut() {
        // What was read stays valid if leaving fails; the group then
        // notices by session timeout.
        if let Err(error) = member.leave(&offsets) {
            eprintln!("warning: consumer {index} could not leave the group: {error:#}");
        }
    }
    outcome.offsets = offsets;
    Ok(outcome)
}

/// Committed offsets of a new assignment, else the run's start offsets.
fn starting_positions(
    member: &mut GroupMember,
    assigned: &[i32],
    start_offsets: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>> {
    let committed = member.committed(assigned)?;
    assigned
        .iter()
        .map(|partition| {
            let offset = committed
                .get(partition)
                .or_else(|| start_offsets.get(partition))
                .copied()
                .with_context(|| format!("no start offset for partition {partition}"))?;
            Ok((*partition, offset))
        })
        .collect()
}

/// One session per leader of the partitions in `offsets`, reusing open
/// connections.
fn sessions_for(
    config: &ConsumerConfig,
    client_id: &str,
    offsets: &BTreeMap<i32, i64>,
    connections: &mut BTreeMap<i32, Connection>,
) -> Result<Vec<LeaderSession>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for partition in offsets.keys() {
        by_leader
            .entry(config.layout.leaders[*partition as usize])
            .or_default()
            .push(*partition);
    }
    let mut sessions = Vec::new();
    for (leader, partitions) in by_leader {
        let connection = match connections.remove(&leader) {
            Some(connection) => connection,
            None => Connection::connect(
                config.layout.address(leader)?,
                client_id,
                config.request_timeout + config.max_wait,
            )?,
        };
        let version = connection.versions.pick::<FetchRequest>(12)?;
        if version < 4 {
            bail!("the broker serves Fetch only below v4 (no v2 record batches)");
        }
        sessions.push(LeaderSession {
            leader,
            connection,
            version,
            partitions,
        });
    }
    Ok(sessions)
}

fn reached_records_max(config: &ConsumerConfig, metrics: &Metrics) -> bool {
    config
        .records_max
        .is_some_and(|max| metrics.consumed.records.load(Ordering::Relaxed) >= max)
}

fn fetch_once(
    config: &ConsumerConfig,
    session: &mut LeaderSession,
    offsets: &mut BTreeMap<i32, i64>,
    outcome: &mut ConsumerOutcome,
    recorder: &mut Recorder,
    metrics: &Metrics,
) -> Result<()> {
    let partitions = session
        .partitions
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
    let response = session.connection.call(&request, session.version)?;
    metrics.fetch_requests.fetch_add(1, Ordering::Relaxed);
    if response.error_code != 0 {
        Metrics::count_error(&metrics.fetch_errors, response.error_code, 1);
        std::thread::sleep(Duration::from_millis(100));
        return Ok(());
    }
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
                Metrics::count_error(&metrics.fetch_errors, data.error_code, 1);
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
    Ok(())
}
