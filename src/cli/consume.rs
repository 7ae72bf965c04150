//! `sluice consume --topic T`: print records to stdout, as with
//! `kafka-console-consumer.sh`.
//!
//! With `--group` the consumer joins the group as a real member (JoinGroup,
//! SyncGroup, heartbeats, LeaveGroup on exit; see
//! [`sluice_client::group`]), reads
//! the partitions it is assigned from the group's committed offsets, and
//! commits what it printed. With `--partition` or `--offset` it chooses its
//! partitions by hand and, given `--group`, commits as a client outside the
//! group (generation -1, no member id), which Kafka accepts only while the
//! group has no active members.
//!
//! Fetches go to each partition's current leader; when a leader moves
//! (NOT_LEADER_OR_FOLLOWER and the like, or its connection is lost) the
//! consumer refreshes Metadata and carries on from the same position.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::{Record, TimestampType};
use serde_json::{json, Value};

use super::output::OutputFormat;
use super::Common;
use sluice_client::group::{GroupConfig, GroupMember};
use sluice_client::offsets::{self, Leaders, TopicPartition, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use sluice_client::records::fetch_request;
pub use sluice_client::records::{decode_batch, split_batches, Batch};
use sluice_client::retry::{classify, Refresh};
use sluice_client::{Cluster as Client, ConnectionError, KafkaError};

/// Fetch limits: how long the broker may hold a fetch open, and how many
/// bytes it may answer per partition and in all.
const FETCH_WAIT_MS_MAX: u64 = 500;
const PARTITION_FETCH_BYTES: i32 = 1024 * 1024;
const PARTITION_FETCH_BYTES_MAX: i32 = 64 * 1024 * 1024;
const FETCH_BYTES_MAX: i32 = 16 * 1024 * 1024;

use sluice_client::codes::OFFSET_OUT_OF_RANGE;

#[derive(Debug, Args)]
#[command(
    after_help = "With --group the consumer joins the group (range assignor), shares \
    its partitions with the group's other members, and commits what it prints. With --group \
    and --partition or --offset it does not join: it commits as a client outside the group \
    (generation -1, no member id), which works only while the group has no active members."
)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Start at the earliest offset when there is no committed offset
    /// (default: only records written from now on).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Join this group, start at its committed offsets and commit what is printed.
    #[arg(long)]
    pub group: Option<String>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start: an offset, `earliest` or `latest` (overrides committed offsets).
    #[arg(long, value_parser = parse_start_offset)]
    pub offset: Option<StartOffset>,
    /// Exit after printing this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print each record's key.
    #[arg(long)]
    pub print_key: bool,
    /// Print each record's headers (`k:v,k2:v2`, or NO_HEADERS).
    #[arg(long)]
    pub print_headers: bool,
    /// Print each record's timestamp (`CreateTime:ms` or `LogAppendTime:ms`).
    #[arg(long)]
    pub print_timestamp: bool,
    /// Print each record's offset.
    #[arg(long)]
    pub print_offset: bool,
    /// Print each record's partition.
    #[arg(long)]
    pub print_partition: bool,
    /// What separates the printed fields.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    pub separator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    At(i64),
}

pub fn parse_start_offset(text: &str) -> Result<StartOffset, String> {
    match text {
        "earliest" | "beginning" => Ok(StartOffset::Earliest),
        "latest" | "end" => Ok(StartOffset::Latest),
        _ => match text.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(StartOffset::At(offset)),
            _ => Err(format!(
                "expected a non-negative offset, 'earliest' or 'latest', got '{text}'"
            )),
        },
    }
}

/// What to print of each record.
#[derive(Debug, Clone, Default)]
pub struct Format {
    pub key: bool,
    pub headers: bool,
    pub timestamp: bool,
    pub offset: bool,
    pub partition: bool,
    pub separator: String,
    pub json: bool,
}

fn text(bytes: Option<&Bytes>) -> String {
    bytes.map_or_else(
        || "null".to_string(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}

fn json_text(bytes: Option<&Bytes>) -> Value {
    bytes.map_or(Value::Null, |b| {
        Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

/// One record as a line (without the newline), in Kafka's field order:
/// timestamp, partition, offset, headers, key, value.
pub fn format_record(format: &Format, topic: &str, partition: i32, record: &Record) -> String {
    let timestamp_type = match record.timestamp_type {
        TimestampType::Creation => "CreateTime",
        TimestampType::LogAppend => "LogAppendTime",
    };
    if format.json {
        let headers: serde_json::Map<String, Value> = record
            .headers
            .iter()
            .map(|(key, value)| (key.to_string(), json_text(value.as_ref())))
            .collect();
        return json!({
            "topic": topic,
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "timestamp_type": timestamp_type,
            "key": json_text(record.key.as_ref()),
            "value": json_text(record.value.as_ref()),
            "headers": headers,
        })
        .to_string();
    }
    let mut fields = Vec::new();
    if format.timestamp {
        fields.push(format!("{timestamp_type}:{}", record.timestamp));
    }
    if format.partition {
        fields.push(format!("Partition:{partition}"));
    }
    if format.offset {
        fields.push(format!("Offset:{}", record.offset));
    }
    if format.headers {
        if record.headers.is_empty() {
            fields.push("NO_HEADERS".to_string());
        } else {
            let headers: Vec<String> = record
                .headers
                .iter()
                .map(|(key, value)| format!("{key}:{}", text(value.as_ref())))
                .collect();
            fields.push(headers.join(","));
        }
    }
    if format.key {
        fields.push(text(record.key.as_ref()));
    }
    fields.push(text(record.value.as_ref()));
    fields.join(&format.separator)
}

pub fn run(common: &Common, args: ConsumeArgs) -> Result<ExitCode> {
    let mut client = common.connect()?;
    let topic = args.topic.clone();
    let leaders = offsets::leaders(&mut client, std::slice::from_ref(&topic))?;
    let all: Vec<i32> = leaders[&topic].keys().copied().collect();
    if let Some(partition) = args.partition.filter(|p| !all.contains(p)) {
        bail!(
            "topic '{topic}' has no partition {partition} (it has {})",
            all.len()
        );
    }
    // --partition and --offset choose partitions by hand; otherwise a
    // --group consumer joins the group and reads what it is assigned.
    let joins = args.group.is_some() && args.partition.is_none() && args.offset.is_none();
    let mut consumer = Consumer {
        client,
        leaders,
        topic: topic.clone(),
        group: args.group.clone(),
        membership: None,
        needs_rejoin: false,
        positions: BTreeMap::new(),
        committed: BTreeMap::new(),
        partition_fetch_bytes: BTreeMap::new(),
        from_beginning: args.from_beginning,
        format: Format {
            key: args.print_key,
            headers: args.print_headers,
            timestamp: args.print_timestamp,
            offset: args.print_offset,
            partition: args.print_partition,
            separator: args.separator.clone(),
            json: common.output == OutputFormat::Json,
        },
    };
    if joins {
        let group = args.group.as_deref().expect("joins implies a group");
        consumer.membership = Some(GroupMember::new(
            group,
            std::slice::from_ref(&topic),
            GroupConfig::default(),
        ));
        consumer.rejoin()?;
    } else {
        let partitions = args.partition.map_or(all, |partition| vec![partition]);
        let wanted: Vec<TopicPartition> = partitions.iter().map(|p| (topic.clone(), *p)).collect();
        consumer.load_committed(&wanted)?;
        consumer.seek(&wanted, args.offset)?;
    }
    if consumer.group.is_some() {
        stop_on_interrupt();
    }
    let polled = consumer.poll_until(&args);
    // Commit what was printed and leave the group even after an error
    // (a closed stdout included), then report the first error.
    let committed = consumer.commit();
    let left = consumer.leave();
    let printed = polled?;
    committed?;
    left?;
    if args.max_messages.is_some_and(|max| printed < max) {
        eprintln!("Processed {printed} messages (fewer than --max-messages).");
    }
    Ok(ExitCode::SUCCESS)
}

struct Consumer {
    client: Client,
    leaders: Leaders,
    topic: String,
    /// `--group`: commit there (as a member when `membership` is set).
    group: Option<String>,
    membership: Option<GroupMember>,
    /// The group asked this member to rejoin (seen on a commit).
    needs_rejoin: bool,
    /// Partition -> the next offset to read.
    positions: BTreeMap<i32, i64>,
    /// What the group has committed (or we committed last).
    committed: BTreeMap<TopicPartition, i64>,
    partition_fetch_bytes: BTreeMap<i32, i32>,
    from_beginning: bool,
    format: Format,
}

impl Consumer {
    fn log_offsets(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>> {
        let found = offsets::list_offsets(&mut self.client, partitions, timestamp)?;
        let offsets: BTreeMap<i32, i64> = found
            .into_iter()
            .map(|((_, partition), offset)| (partition, offset.unwrap_or(0)))
            .collect();
        for (topic, partition) in partitions {
            if !offsets.contains_key(partition) {
                bail!("the broker listed no offset for {topic}-{partition}");
            }
        }
        Ok(offsets)
    }

    /// The group's committed offsets of `partitions` (none without --group).
    fn load_committed(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.committed.clear();
        let Some(group) = &self.group else {
            return Ok(());
        };
        if partitions.is_empty() {
            return Ok(());
        }
        let topics = offsets::by_topic(partitions.to_vec());
        self.committed = offsets::committed(&mut self.client, group, Some(&topics))?;
        Ok(())
    }

    /// Sets each partition's starting position: `--offset`, else the
    /// committed offset, else the earliest (`--from-beginning`) or latest.
    fn seek(&mut self, partitions: &[TopicPartition], start: Option<StartOffset>) -> Result<()> {
        self.positions.clear();
        if partitions.is_empty() {
            return Ok(());
        }
        let earliest = self.log_offsets(partitions, EARLIEST_TIMESTAMP)?;
        let latest = self.log_offsets(partitions, LATEST_TIMESTAMP)?;
        for (topic, partition) in partitions {
            let committed = self.committed.get(&(topic.clone(), *partition)).copied();
            let position = match (start, committed) {
                (Some(StartOffset::At(offset)), _) => offset,
                (Some(StartOffset::Earliest), _) => earliest[partition],
                (Some(StartOffset::Latest), _) => latest[partition],
                (None, Some(offset)) => offset,
                (None, None) if self.from_beginning => earliest[partition],
                (None, None) => latest[partition],
            };
            self.positions.insert(*partition, position);
        }
        Ok(())
    }

    /// Joins the group (again) and starts reading what it assigned us.
    fn rejoin(&mut self) -> Result<()> {
        let membership = self.membership.as_mut().expect("only members rejoin");
        let assigned: Vec<i32> = membership
            .join(&mut self.client)?
            .into_iter()
            .filter(|(topic, _)| *topic == self.topic)
            .map(|(_, partition)| partition)
            .collect();
        self.needs_rejoin = false;
        // The topic may have gained partitions since we last looked.
        self.leaders = offsets::leaders(&mut self.client, std::slice::from_ref(&self.topic))?;
        let known = &self.leaders[&self.topic];
        if let Some(partition) = assigned.iter().find(|p| !known.contains_key(p)) {
            bail!(
                "the group assigned {}-{partition}, which the broker's metadata does not list",
                self.topic
            );
        }
        let wanted: Vec<TopicPartition> = assigned
            .iter()
            .map(|partition| (self.topic.clone(), *partition))
            .collect();
        self.load_committed(&wanted)?;
        self.seek(&wanted, None)
    }

    /// Keeps the membership alive; rejoins when the group rebalances.
    fn keep_membership(&mut self) -> Result<()> {
        let Some(membership) = self.membership.as_mut() else {
            return Ok(());
        };
        if membership.heartbeat_if_due(&mut self.client)? || self.needs_rejoin {
            // Commit what was printed while the generation may still take it.
            self.commit()?;
            self.rejoin()?;
        }
        Ok(())
    }

    /// Fetches and prints until `--max-messages` or `--timeout-ms`;
    /// commits after each round when consuming for a group.
    fn poll_until(&mut self, args: &ConsumeArgs) -> Result<u64> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut printed = 0u64;
        let mut last_record_at = Instant::now();
        loop {
            let remaining = args.max_messages.map(|max| max.saturating_sub(printed));
            if remaining == Some(0) || stop_requested() {
                break;
            }
            let mut wait_ms = FETCH_WAIT_MS_MAX;
            if let Some(timeout_ms) = args.timeout_ms {
                let idle_ms = last_record_at.elapsed().as_millis() as u64;
                if idle_ms >= timeout_ms {
                    break;
                }
                wait_ms = wait_ms.min(timeout_ms - idle_ms);
            }
            self.keep_membership()?;
            if self.positions.is_empty() {
                // More members than partitions: this one waits its turn.
                std::thread::sleep(std::time::Duration::from_millis(wait_ms));
                continue;
            }
            let lines = self.fetch_round(wait_ms, remaining)?;
            if !lines.is_empty() {
                last_record_at = Instant::now();
                printed += lines.len() as u64;
                for line in &lines {
                    out.write_all(line.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                out.flush()?;
                self.commit()?;
            }
        }
        Ok(printed)
    }

    /// One Fetch to each leader; returns the lines to print (at most
    /// `limit`) and moves the positions past them.
    fn fetch_round(&mut self, wait_ms: u64, limit: Option<u64>) -> Result<Vec<String>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut leaderless = false;
        for partition in self.positions.keys() {
            match self.client.leader(&self.topic, *partition) {
                Some(leader) => by_leader.entry(leader).or_default().push(*partition),
                None => leaderless = true,
            }
        }
        if leaderless {
            // A partition between leaders: look again after a pause.
            std::thread::sleep(std::time::Duration::from_millis(wait_ms.min(100)));
            self.client.refresh(std::slice::from_ref(&self.topic))?;
        }
        let mut lines = Vec::new();
        for (leader, partitions) in by_leader {
            let fetched = match self.fetch_from(leader, &partitions, wait_ms) {
                Ok(fetched) => fetched,
                Err(error) if ConnectionError::find(&error).is_some() => {
                    // The leader went away: find the new one, fetch there
                    // from the same positions next round.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    self.client.recover(&error, Refresh::Metadata);
                    continue;
                }
                Err(error) => return Err(error),
            };
            for (partition, records) in fetched {
                self.take(partition, records, limit, &mut lines)?;
            }
            if limit.is_some_and(|limit| lines.len() as u64 >= limit) {
                break;
            }
        }
        Ok(lines)
    }

    fn fetch_from(
        &mut self,
        leader: i32,
        partitions: &[i32],
        wait_ms: u64,
    ) -> Result<Vec<(i32, Option<Bytes>)>> {
        let wanted: Vec<(i32, i64, i32)> = partitions
            .iter()
            .map(|partition| {
                let offset = self.positions[partition];
                (*partition, offset, self.fetch_bytes(*partition))
            })
            .collect();
        let request = fetch_request(&self.topic, &wanted, wait_ms, FETCH_BYTES_MAX);
        let connection = self.client.broker(leader)?;
        let version = connection.version::<FetchRequest>(12)?;
        // The broker may hold the fetch for wait_ms beyond its usual answer time.
        let response = connection.call_at(&request, version)?;
        KafkaError::check(response.error_code, None, "fetching records")?;
        let mut fetched = Vec::new();
        let mut refresh_needed = false;
        for topic in response.responses {
            for partition in topic.partitions {
                let index = partition.partition_index;
                if !self.positions.contains_key(&index) {
                    continue;
                }
                if partition.error_code == OFFSET_OUT_OF_RANGE {
                    self.reset_out_of_range(index)?;
                    continue;
                }
                if let Some(refresh) = classify(partition.error_code) {
                    // Not served here (any more, or yet): a leader moved or
                    // a broker is restarting. Try again next round, which
                    // the fetch wait paces.
                    std::thread::sleep(std::time::Duration::from_millis(wait_ms.min(100)));
                    if refresh == Refresh::Metadata {
                        refresh_needed = true;
                    }
                    continue;
                }
                KafkaError::check(
                    partition.error_code,
                    None,
                    format!("fetching {}-{index}", self.topic),
                )?;
                fetched.push((index, partition.records));
            }
        }
        if refresh_needed {
            self.client.refresh(std::slice::from_ref(&self.topic))?;
        }
        Ok(fetched)
    }

    fn fetch_bytes(&self, partition: i32) -> i32 {
        self.partition_fetch_bytes
            .get(&partition)
            .copied()
            .unwrap_or(PARTITION_FETCH_BYTES)
    }

    fn reset_out_of_range(&mut self, partition: i32) -> Result<()> {
        let wanted = [(self.topic.clone(), partition)];
        let timestamp = if self.from_beginning {
            EARLIEST_TIMESTAMP
        } else {
            LATEST_TIMESTAMP
        };
        let offsets = self.log_offsets(&wanted, timestamp)?;
        let old = self.positions[&partition];
        let new = offsets[&partition];
        eprintln!(
            "Offset {old} of {}-{partition} is out of range; continuing from {new}.",
            self.topic
        );
        self.positions.insert(partition, new);
        Ok(())
    }

    /// Turns one partition's fetched bytes into lines, from its position on.
    fn take(
        &mut self,
        partition: i32,
        records: Option<Bytes>,
        limit: Option<u64>,
        lines: &mut Vec<String>,
    ) -> Result<()> {
        let Some(records) = records.filter(|records| !records.is_empty()) else {
            return Ok(());
        };
        let batches = split_batches(records);
        if batches.is_empty() {
            // Data but not one whole batch: the batch is larger than the
            // per-partition limit. Ask for more next time.
            let bytes = self.fetch_bytes(partition);
            if bytes >= PARTITION_FETCH_BYTES_MAX {
                bail!(
                    "a record batch in {}-{partition} is larger than {bytes} bytes",
                    self.topic
                );
            }
            self.partition_fetch_bytes.insert(partition, bytes * 2);
            return Ok(());
        }
        let position = self
            .positions
            .get_mut(&partition)
            .expect("fetched partitions are ours");
        for batch in batches {
            let batch = decode_batch(batch)?;
            for record in &batch.records {
                if record.offset < *position {
                    continue; // a batch may begin before the fetch offset
                }
                if limit.is_some_and(|limit| lines.len() as u64 >= limit) {
                    return Ok(());
                }
                lines.push(format_record(&self.format, &self.topic, partition, record));
                *position = record.offset + 1;
            }
            *position = (*position).max(batch.next_offset);
        }
        Ok(())
    }

    /// Commits positions that moved past what the group has committed
    /// (nothing without --group). A commit the group refuses because it is
    /// rebalancing marks this member for a rejoin instead of failing.
    fn commit(&mut self) -> Result<()> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        let changed: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .map(|(partition, position)| ((self.topic.clone(), *partition), *position))
            .filter(|(key, position)| self.committed.get(key) != Some(position))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let committed = match self.membership.as_mut() {
            Some(member) => member.commit(&mut self.client, &changed)?,
            None => {
                offsets::commit(&mut self.client, &group, &changed)?;
                true
            }
        };
        if committed {
            self.committed.extend(changed);
        } else {
            // The group is rebalancing: rejoin, then read from its commits.
            self.needs_rejoin = true;
        }
        Ok(())
    }

    fn leave(&mut self) -> Result<()> {
        match self.membership.as_mut() {
            Some(membership) => membership.leave(&mut self.client),
            None => Ok(()),
        }
    }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::Relaxed)
}

/// The first Ctrl-C (or SIGTERM) ends the loop after the current fetch, so
/// a group consumer commits what it printed and leaves the group; a second
/// one kills the process as usual (SA_RESETHAND).
fn stop_on_interrupt() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an
        // atomic, installed for signals we own in this short-lived process.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests;
