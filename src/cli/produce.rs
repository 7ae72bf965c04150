//! `sluice produce --topic T`: each line of stdin becomes one record, as
//! with `kafka-console-producer.sh`.
//!
//! Lines are batched while more input is already buffered (a pipe), and
//! sent at once when the next read would wait (a terminal), so typed lines
//! arrive as they are typed. Records with a key go to Kafka's default
//! partition for it (murmur2, as the Java client); records without one go
//! to one partition per batch, taking the partitions in turn.
//!
//! With `--acks all` (the default) the producer is idempotent: it takes a
//! producer ID (InitProducerId) and numbers each partition's batches, so a
//! batch sent again after a lost connection or a leader change is written
//! once. Each batch goes to its partition's current leader; when a leader
//! moves, Metadata is refreshed and the batch retried there.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;

use super::output::{render_json, OutputFormat};
use super::{parse_key_value, write_stdout, Common};
use sluice_client::codes::LEADER_NOT_AVAILABLE;
use sluice_client::idempotence::{self, batch_outcome, BatchOutcome, ProducerIdentity, Sequences};
use sluice_client::partitioner::partition_for_key;
use sluice_client::{retrying, topic_name, Cluster as Client, KafkaError};

/// The headers of a record, as `Record::headers` holds them.
pub(crate) type Headers = kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>>;

/// Stdin is read in chunks of this size; a batch is sent when it holds
/// this many bytes of keys and values (under Kafka's 1 MiB
/// `message.max.bytes` default even before compression).
const STDIN_BUFFER_BYTES: usize = 1024 * 1024;
const BATCH_BYTES_MAX: usize = 512 * 1024;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to write to (created if the broker auto-creates topics).
    #[arg(long)]
    pub topic: String,
    /// Split each line at the first SEP into key and value; a line without
    /// SEP has no key.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgements: 0 (none), 1 (leader) or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Compression codec of the record batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Write every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// A header added to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// The most records in one request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

pub fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("expected 0, 1 or all, got '{text}'")),
    }
}

/// A line, without its line ending, split into key and value.
pub fn split_line(line: &[u8], separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(separator) = separator.filter(|separator| !separator.is_empty()) {
        if let Some(at) = line
            .windows(separator.len())
            .position(|window| window == separator)
        {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + separator.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

pub fn run(common: &Common, args: ProduceArgs) -> Result<ExitCode> {
    let mut client = common.connect()?;
    let leaders = wait_for_leaders(&mut client, &args.topic, common.timeout())?;
    if let Some(partition) = args.partition {
        if !leaders.contains_key(&partition) {
            bail!(
                "topic '{}' has no partition {partition} (it has {})",
                args.topic,
                leaders.len()
            );
        }
    }
    // Kafka's idempotence needs acks=all: only then is a written batch on
    // every in-sync replica, where a retry finds it.
    let identity = if args.acks == -1 {
        idempotence::init_producer_id(&mut client)?
    } else {
        ProducerIdentity::NONE
    };
    let mut producer = Producer {
        client,
        identity,
        sequences: Sequences::new(),
        topic: args.topic.clone(),
        leaders,
        acks: args.acks,
        compression: args.compression.codec(),
        headers: args
            .headers
            .iter()
            .map(|(key, value)| {
                (
                    StrBytes::from_string(key.clone()),
                    Some(Bytes::from(value.clone().into_bytes())),
                )
            })
            .collect(),
        fixed_partition: args.partition,
        next_partition: 0,
        sent: BTreeMap::new(),
    };
    let stdin = std::io::stdin();
    let mut reader = std::io::BufReader::with_capacity(STDIN_BUFFER_BYTES, stdin.lock());
    let separator = args.key_separator.as_ref().map(|s| s.as_bytes());
    let mut pending: Vec<(Option<Bytes>, Bytes)> = Vec::new();
    let mut pending_bytes = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        let (key, value) = split_line(&line, separator);
        pending_bytes += key.as_ref().map_or(0, Bytes::len) + value.len();
        pending.push((key, value));
        let waiting = reader.buffer().is_empty();
        if waiting || pending.len() >= args.batch_size as usize || pending_bytes >= BATCH_BYTES_MAX
        {
            producer.send(std::mem::take(&mut pending))?;
            pending_bytes = 0;
        }
    }
    producer.send(pending)?;
    if common.output == OutputFormat::Json {
        let total: u64 = producer.sent.values().sum();
        write_stdout(&render_json(&json!({
            "topic": producer.topic,
            "records": total,
            "records_by_partition": producer.sent,
        })))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Partition -> leader of `topic`, waiting while a new (auto-created) topic
/// has no leader yet.
fn wait_for_leaders(
    client: &mut Client,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let metadata = client.metadata_with(Some(&[topic.to_string()]), true)?;
        let found = metadata.topics.iter().find(|found| {
            found
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == topic)
        });
        let mut code = LEADER_NOT_AVAILABLE;
        if let Some(found) = found {
            code = found.error_code;
            let leaders: BTreeMap<i32, i32> = found
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, partition.leader_id.0))
                .collect();
            // Partitions are numbered 0..n; the partitioner relies on it.
            let numbered = leaders.keys().copied().eq(0..leaders.len() as i32);
            let led = leaders.values().all(|leader| *leader >= 0);
            let ready = code == 0 && !leaders.is_empty() && numbered && led;
            if ready {
                return Ok(leaders);
            }
        }
        if code != 0 && code != LEADER_NOT_AVAILABLE || Instant::now() >= deadline {
            KafkaError::check(
                if code == 0 {
                    LEADER_NOT_AVAILABLE
                } else {
                    code
                },
                None,
                format!("Topic '{topic}' is not available for writes."),
            )?;
        }
        sleep(Duration::from_millis(100));
    }
}

struct Producer {
    client: Client,
    identity: ProducerIdentity,
    sequences: Sequences<i32>,
    topic: String,
    /// Partition -> leader broker id.
    leaders: BTreeMap<i32, i32>,
    acks: i16,
    compression: Compression,
    headers: Headers,
    fixed_partition: Option<i32>,
    /// The partition the next batch of keyless records goes to.
    next_partition: usize,
    /// Records written, per partition.
    sent: BTreeMap<i32, u64>,
}

impl Producer {
    fn partition_for(&self, key: Option<&Bytes>) -> i32 {
        if let Some(partition) = self.fixed_partition {
            return partition;
        }
        match key {
            Some(key) => partition_for_key(key, self.leaders.len() as u32) as i32,
            None => (self.next_partition % self.leaders.len()) as i32,
        }
    }

    fn send(&mut self, lines: Vec<(Option<Bytes>, Bytes)>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let timestamp = now_ms();
        let mut by_partition: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>> = BTreeMap::new();
        for (key, value) in lines {
            let partition = self.partition_for(key.as_ref());
            by_partition
                .entry(partition)
                .or_default()
                .push((key, value));
        }
        self.next_partition = self.next_partition.wrapping_add(1);
        let mut pending: BTreeMap<i32, PartitionProduceData> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (partition, lines) in by_partition {
            let count = lines.len() as i32;
            let base_sequence = if self.identity.is_idempotent() {
                self.sequences.assign(&partition, count)
            } else {
                -1
            };
            let batch = encode_batch(
                lines,
                &self.headers,
                &self.identity,
                base_sequence,
                timestamp,
                self.compression,
            )?;
            pending.insert(
                partition,
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch)),
            );
            counts.insert(partition, count as u64);
        }
        let topic = self.topic.clone();
        let (acks, idempotent) = (self.acks, self.identity.is_idempotent());
        retrying(&mut self.client, |client| {
            send_round(client, &topic, acks, idempotent, &mut pending)
        })?;
        for (partition, records) in counts {
            *self.sent.entry(partition).or_default() += records;
        }
        Ok(())
    }
}

/// One record batch of `lines` (key, value), each with `headers`, all
/// stamped `timestamp`; `base_sequence` -1 without idempotence.
pub(crate) fn encode_batch(
    lines: Vec<(Option<Bytes>, Bytes)>,
    headers: &Headers,
    identity: &ProducerIdentity,
    base_sequence: i32,
    timestamp: i64,
    compression: Compression,
) -> Result<Bytes> {
    let records: Vec<Record> = lines
        .into_iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: identity.id,
            producer_epoch: identity.epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch while offset
            // minus sequence is constant; without idempotence the
            // base sequence is -1 (none).
            sequence: if base_sequence < 0 {
                index as i32 - 1
            } else {
                idempotence::increment(base_sequence, index as i32)
            },
            timestamp,
            key,
            value: Some(value),
            headers: headers.clone(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).context("encoding a record batch")?;
    Ok(buf.freeze())
}

/// Sends every pending batch to its partition's current leader, one request
/// per leader, and drops the batches that were written. A batch that must
/// be retried (its leader moved, its connection was lost) stays pending and
/// the round fails with the retriable error, for [`retrying`] to refresh
/// Metadata and call again; an idempotent batch cannot be written twice.
pub(crate) fn send_round(
    client: &mut Client,
    topic: &str,
    acks: i16,
    idempotent: bool,
    pending: &mut BTreeMap<i32, PartitionProduceData>,
) -> Result<()> {
    let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut retry_code = None;
    for (partition, data) in pending.iter() {
        match client.leader(topic, *partition) {
            Some(leader) => by_leader.entry(leader).or_default().push(data.clone()),
            None => retry_code = Some(LEADER_NOT_AVAILABLE),
        }
    }
    for (leader, partitions) in by_leader {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(partitions.clone())]);
        let connection = client.broker(leader)?;
        let version = connection.version::<ProduceRequest>(12)?;
        if acks == 0 {
            // The broker answers nothing to acks=0.
            connection.send(&request, version)?;
            for data in &partitions {
                pending.remove(&data.index);
            }
            continue;
        }
        let response = connection.call_at(&request, version)?;
        for answer in &response.responses {
            for partition in &answer.partition_responses {
                match batch_outcome(partition.error_code, idempotent) {
                    BatchOutcome::Written => {
                        pending.remove(&partition.index);
                    }
                    BatchOutcome::Retry(_) => retry_code = Some(partition.error_code),
                    BatchOutcome::Failed => {
                        let detail = partition
                            .record_errors
                            .iter()
                            .filter_map(|error| error.batch_index_error_message.as_ref())
                            .map(|message| message.to_string())
                            .next();
                        let message = partition.error_message.as_ref().map(|m| m.to_string());
                        KafkaError::check(
                            partition.error_code,
                            message.or(detail).map(StrBytes::from_string).as_ref(),
                            format!("writing to {}-{}", answer.name.0.as_str(), partition.index),
                        )?;
                    }
                }
            }
        }
    }
    match retry_code {
        Some(code) if !pending.is_empty() => KafkaError::check(
            code,
            None,
            format!("writing to {topic} (partitions {:?})", pending.keys()),
        ),
        _ => Ok(()),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let check = |line: &[u8], separator: Option<&[u8]>, key: Option<&str>, value: &str| {
            let (got_key, got_value) = split_line(line, separator);
            assert_eq!(got_key.as_deref(), key.map(str::as_bytes));
            assert_eq!(&got_value[..], value.as_bytes());
        };
        check(b"hello\n", None, None, "hello");
        check(b"hello\r\n", None, None, "hello");
        check(b"k:v:w\n", Some(b":"), Some("k"), "v:w");
        check(b"no-separator\n", Some(b":"), None, "no-separator");
        check(b"k::v", Some(b"::"), Some("k"), "v");
        check(b":v\n", Some(b":"), Some(""), "v");
        check(
            b"last line without newline",
            None,
            None,
            "last line without newline",
        );
    }

    #[test]
    fn acks_take_kafkas_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }
}
