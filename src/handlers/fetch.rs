//! Fetch (key 1): whole record batches from the owning shards, with long
//! polling and zero-copy.
//!
//! Each round reads every requested partition on its owner (one hop per
//! shard). If fewer than `min_bytes` came back and `max_wait_ms` has not
//! passed, the handler waits on the owners until an append makes one of the
//! partitions grow (never by polling), or the time is up, and reads again.
//! Hot data comes back as bytes from the shard's read cache; cold data as a
//! file region, which the network layer sends with `sendfile` (the response
//! holds a placeholder there, see `protocol::splice`).
//!
//! Sessions (KIP-227) are not kept: every response says session 0, so
//! clients send full fetch requests, which Kafka allows.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName,
};
use sluice_shards::ShardId;

use super::{owners, str_bytes, Answer, ApiSupport, RequestContext};
use crate::partition::replica::DataWait;
use crate::partition::txn_index::AbortedTxn;
use crate::protocol::{error_codes, splice};
use crate::shard;
use crate::storage::{FileRegion, Offset, ReadData, ReadOptions};

pub const API: ApiSupport = super::api(ApiKey::Fetch, 4, 12);

/// Upper bound on how long one Fetch may wait, whatever the client asks.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

#[derive(Clone, Debug)]
struct Target {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// The request's `max_bytes`, for the whole response.
    response_max_bytes: usize,
    /// The broker fetching as a follower, or -1 for a consumer.
    replica_id: i32,
    /// The leader epoch the fetcher knows (-1: not given).
    current_leader_epoch: i32,
    /// `isolation_level` 1: read below the last stable offset only.
    read_committed: bool,
}

#[derive(Clone, Debug)]
struct PartitionRead {
    error_code: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// read_committed: the aborted transactions in the range read.
    aborted: Option<Vec<AbortedTxn>>,
    data: ReadData,
}

impl PartitionRead {
    fn error(error_code: i16) -> PartitionRead {
        PartitionRead {
            error_code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: None,
            data: ReadData::Empty,
        }
    }
}

pub async fn handle(context: &RequestContext, request: FetchRequest) -> Answer {
    if context.api_version >= 7 && request.session_id != 0 {
        let response = FetchResponse::default()
            .with_error_code(FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(0);
        return ResponseKind::Fetch(response).into();
    }
    let image = context.shard.image();
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
    let mut order: Vec<(String, Vec<i32>)> = Vec::new();
    let mut targets: BTreeMap<ShardId, Vec<Target>> = BTreeMap::new();
    let mut known: BTreeMap<(String, i32), PartitionRead> = BTreeMap::new();
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut indexes = Vec::new();
        for partition in &topic.partitions {
            indexes.push(partition.partition);
            let node_id = context.shard.config.node_id;
            if let Err(code) = image.leader_check(&name, partition.partition, node_id) {
                let read = PartitionRead::error(code);
                known.insert((name.clone(), partition.partition), read);
                continue;
            }
            let owner = context.shard.partition_owner(&name, partition.partition);
            targets.entry(owner).or_default().push(Target {
                topic: name.clone(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                max_bytes: usize::try_from(partition.partition_max_bytes).unwrap_or(0),
                response_max_bytes: max_bytes,
                replica_id: request.replica_id.0,
                current_leader_epoch: partition.current_leader_epoch,
                read_committed: request.isolation_level == 1 && request.replica_id.0 < 0,
            });
        }
        order.push((name, indexes));
    }
    let wait_ms = u64::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(FETCH_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = u64::try_from(request.min_bytes).unwrap_or(0);
    let reads = loop {
        let reads = read_all(context, &targets).await;
        let total: u64 = reads.values().map(|read| read.data.len_bytes()).sum();
        let failed = reads
            .values()
            .any(|read| read.error_code != error_codes::NONE);
        if total >= min_bytes.max(1) || failed || Instant::now() >= deadline || targets.is_empty() {
            break reads;
        }
        wait_for_data(context, &targets, deadline).await;
        if Instant::now() >= deadline {
            break read_all(context, &targets).await;
        }
    };
    known.extend(reads);
    let answer = build(order, known, max_bytes);
    let region_bytes: u64 = answer.regions.iter().map(|region| region.len).sum();
    let ResponseKind::Fetch(response) = &answer.body else {
        unreachable!("built above")
    };
    let records_bytes: u64 = response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| partition.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    context
        .shard
        .metrics
        .add_memory_bytes(records_bytes - region_bytes);
    answer
}

/// One round: every target read on its owner.
async fn read_all(
    context: &RequestContext,
    targets: &BTreeMap<ShardId, Vec<Target>>,
) -> BTreeMap<(String, i32), PartitionRead> {
    owners::gather(
        context,
        targets.clone(),
        |target| (target.topic.clone(), target.partition),
        read_on_owner,
        PartitionRead::error(error_codes::NOT_LEADER_OR_FOLLOWER),
    )
    .await
}

/// Reads the owner's targets in request order. What the response can hold
/// is not known here (other owners read the partitions in between), but no
/// more than what is left of its `max_bytes` after this owner's earlier
/// reads: each read asks for at most that (and one batch at least, in case
/// it is the response's first); `build` cuts the reads to the response.
async fn read_on_owner(targets: Vec<Target>) -> Vec<PartitionRead> {
    let shard = shard::current();
    let mut reads = Vec::with_capacity(targets.len());
    let mut read_bytes = 0usize;
    for target in targets {
        let Some(partition) = shard.partitions.get(&target.topic, target.partition) else {
            let code = shard
                .partitions
                .absent_error(&target.topic, target.partition);
            reads.push(PartitionRead::error(code));
            continue;
        };
        if let Err(code) = check_leader_epoch(&partition, &target) {
            reads.push(PartitionRead::error(code));
            continue;
        }
        let follower = target.replica_id >= 0;
        if follower {
            // What a follower fetches from, it has (on disk, when the topic
            // syncs every append): its progress for the ISR and the high
            // watermark.
            let recorded = partition.record_follower_fetch(
                target.replica_id,
                target.offset,
                target.current_leader_epoch,
            );
            if let Err(code) = recorded {
                reads.push(PartitionRead::error(code));
                continue;
            }
        }
        let high_watermark = partition.high_watermark();
        let last_stable_offset = partition.last_stable_offset();
        let log_start_offset = partition.log_start_offset();
        let mut read = PartitionRead {
            error_code: error_codes::NONE,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted: None,
            data: ReadData::Empty,
        };
        // Consumers read below the high watermark (read_committed ones below
        // the last stable offset), followers up to the log end.
        let readable_end = if follower {
            partition.log_end_offset()
        } else if target.read_committed {
            read.aborted = Some(partition.aborted_between(target.offset, last_stable_offset));
            last_stable_offset
        } else {
            high_watermark
        };
        // As Kafka: out of range past the log end; between the high
        // watermark and the log end, nothing to read yet.
        if target.offset < log_start_offset || target.offset > partition.log_end_offset() {
            read.error_code = error_codes::OFFSET_OUT_OF_RANGE;
        } else if target.offset < readable_end {
            let left = target.response_max_bytes.saturating_sub(read_bytes);
            let options = ReadOptions {
                max_bytes: target.max_bytes.min(left),
                min_one_batch: true,
                upper_offset: Some(Offset(readable_end)),
                zero_copy: true,
            };
            match partition
                .log
                .read_with(Offset(target.offset), options)
                .await
            {
                Ok(result) => {
                    read_bytes = read_bytes.saturating_add(result.data.len_bytes() as usize);
                    read.data = result.data;
                }
                Err(error) => {
                    tracing::warn!(topic = %target.topic, partition = target.partition, %error, "fetch read failed");
                    read.error_code = error_codes::KAFKA_STORAGE_ERROR;
                }
            }
        }
        reads.push(read);
    }
    reads
}

/// Kafka's fencing (KIP-320): a fetcher that names a leader epoch must name
/// this leader's. An older one is fenced; a newer one means this broker has
/// not learned of the change yet.
fn check_leader_epoch(partition: &crate::partition::Partition, target: &Target) -> Result<(), i16> {
    if !partition.is_leader() {
        return Err(error_codes::NOT_LEADER_OR_FOLLOWER);
    }
    let epoch = partition.leader_epoch();
    match target.current_leader_epoch {
        requested if requested < 0 => Ok(()),
        requested if requested < epoch => Err(error_codes::FENCED_LEADER_EPOCH),
        requested if requested > epoch => Err(error_codes::UNKNOWN_LEADER_EPOCH),
        _ => Ok(()),
    }
}

/// Waits until a target partition grows past its fetch offset on any owner,
/// or until `deadline`.
async fn wait_for_data(
    context: &RequestContext,
    targets: &BTreeMap<ShardId, Vec<Target>>,
    deadline: Instant,
) {
    let mut replies = Vec::new();
    for (owner, owned) in targets {
        let watched: Vec<Watched> = owned
            .iter()
            .map(|t| Watched {
                topic: t.topic.clone(),
                partition: t.partition,
                offset: t.offset,
                follower: t.replica_id >= 0,
                read_committed: t.read_committed,
            })
            .collect();
        let reply = context
            .shard
            .mesh
            .send_to(*owner, move || wait_on_owner(watched, deadline))
            .await;
        if let Ok(reply) = reply {
            replies.push(Box::pin(async move {
                let _ = reply.await;
            }) as Pin<Box<dyn Future<Output = ()>>>);
        }
    }
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    futures_lite::future::or(AnyOf(replies), timeout_unit(timeout)).await;
}

async fn timeout_unit(timer: impl Future) {
    timer.await;
}

/// A partition a fetch waits on.
struct Watched {
    topic: String,
    partition: i32,
    offset: i64,
    follower: bool,
    read_committed: bool,
}

/// Waits on the owner: a consumer for the high watermark to pass its
/// offset, a follower for the log end to. A read_committed consumer held
/// back by an open transaction waits for the high watermark to move at all
/// (the marker that ends the transaction moves it).
async fn wait_on_owner(watched: Vec<Watched>, deadline: Instant) {
    let shard = shard::current();
    let waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = watched
        .into_iter()
        .filter_map(|watched| {
            let partition = shard.partitions.get(&watched.topic, watched.partition)?;
            if watched.follower {
                let wait = partition.wait_for_append_after(watched.offset);
                return Some(Box::pin(wait) as Pin<Box<dyn Future<Output = ()>>>);
            }
            let offset = if watched.read_committed {
                watched.offset.max(partition.high_watermark())
            } else {
                watched.offset
            };
            let wait: DataWait = Rc::clone(&partition).wait_for_data_after(offset);
            Some(Box::pin(wait) as Pin<Box<dyn Future<Output = ()>>>)
        })
        .collect();
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    futures_lite::future::or(AnyOf(waits), timeout_unit(timeout)).await;
}

/// Resolves when any of its futures does (never, if it holds none).
struct AnyOf(Vec<Pin<Box<dyn Future<Output = ()>>>>);

impl Future for AnyOf {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        for future in self.0.iter_mut() {
            if future.as_mut().poll(context).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// The response in request order, its records within `max_bytes` (KIP-74):
/// each partition's read is cut to the whole batches that fit what is left,
/// except that the first batch of the first partition with data is always
/// returned whole, so that the client progresses. A partition none of whose
/// batches fit is answered without records (its high watermark still
/// reported); the client fetches it next time.
fn build(
    order: Vec<(String, Vec<i32>)>,
    mut reads: BTreeMap<(String, i32), PartitionRead>,
    max_bytes: usize,
) -> Answer {
    let mut regions: Vec<FileRegion> = Vec::new();
    let mut total_bytes = 0usize;
    let mut topics = Vec::with_capacity(order.len());
    for (name, indexes) in order {
        let mut partitions = Vec::with_capacity(indexes.len());
        for index in indexes {
            let read = reads
                .remove(&(name.clone(), index))
                .unwrap_or_else(|| PartitionRead::error(error_codes::UNKNOWN_TOPIC_OR_PARTITION));
            let left = max_bytes.saturating_sub(total_bytes);
            let data = fit(read.data, left as u64, total_bytes == 0);
            total_bytes += data.len_bytes() as usize;
            let records = records_bytes(data, &mut regions);
            partitions.push(
                PartitionData::default()
                    .with_partition_index(index)
                    .with_error_code(read.error_code)
                    .with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(read.last_stable_offset)
                    .with_log_start_offset(read.log_start_offset)
                    .with_aborted_transactions(read.aborted.map(aborted_transactions))
                    .with_records(Some(records)),
            );
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes(name)))
                .with_partitions(partitions),
        );
    }
    Answer {
        body: ResponseKind::Fetch(
            FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics),
        ),
        regions,
    }
}

fn aborted_transactions(aborted: Vec<AbortedTxn>) -> Vec<AbortedTransaction> {
    aborted
        .into_iter()
        .map(|txn| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(txn.producer_id))
                .with_first_offset(txn.first_offset)
        })
        .collect()
}

/// How much of a read to keep: `ends` are the lengths at which it may be
/// cut (whole batches), ascending. The index of the longest cut within
/// `left` bytes; the first cut even past `left` if `take_first`; `None` to
/// keep nothing.
fn fitting_cut(ends: impl IntoIterator<Item = u64>, left: u64, take_first: bool) -> Option<usize> {
    let mut kept = None;
    for (index, end) in ends.into_iter().enumerate() {
        if end <= left || (index == 0 && take_first) {
            kept = Some(index);
        } else {
            break;
        }
    }
    kept
}

/// A read cut to the whole batches within `left` bytes (see `fitting_cut`).
fn fit(data: ReadData, left: u64, take_first: bool) -> ReadData {
    match data {
        ReadData::Empty => ReadData::Empty,
        ReadData::Memory(mut batches) => {
            let ends = batches.iter().scan(0u64, |end, batch| {
                *end += batch.len() as u64;
                Some(*end)
            });
            match fitting_cut(ends, left, take_first) {
                Some(index) => {
                    batches.truncate(index + 1);
                    ReadData::Memory(batches)
                }
                None => ReadData::Empty,
            }
        }
        ReadData::File(region) => {
            if region.len <= left {
                return ReadData::File(region);
            }
            let mut ends: Vec<u64> = region.cuts.iter().map(|&(len, _)| len).collect();
            if ends.is_empty() {
                ends.push(region.len);
            }
            match fitting_cut(ends, left, take_first) {
                Some(index) => ReadData::File(region.cut(index)),
                None => ReadData::Empty,
            }
        }
    }
}

/// The bytes to put in the response: the batches themselves, or a
/// placeholder standing for a file region (`regions` gets the region).
fn records_bytes(data: ReadData, regions: &mut Vec<FileRegion>) -> Bytes {
    match data {
        ReadData::Empty => Bytes::new(),
        ReadData::Memory(batches) if batches.len() == 1 => {
            batches.into_iter().next().unwrap_or_default()
        }
        ReadData::Memory(batches) => {
            let mut joined = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            batches
                .iter()
                .for_each(|batch| joined.extend_from_slice(batch));
            joined.freeze()
        }
        ReadData::File(region) => match splice::placeholder(regions.len(), region.len as usize) {
            Some(placeholder) => {
                regions.push(region);
                placeholder
            }
            None => {
                tracing::warn!("no placeholder for a zero-copy region; answering without records");
                Bytes::new()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn batches(sizes: &[usize]) -> ReadData {
        ReadData::Memory(sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect())
    }

    fn sizes(data: &ReadData) -> Vec<usize> {
        match data {
            ReadData::Memory(batches) => batches.iter().map(Bytes::len).collect(),
            ReadData::Empty => Vec::new(),
            ReadData::File(region) => vec![region.len as usize],
        }
    }

    fn region(cuts: &[u64]) -> FileRegion {
        FileRegion {
            path: "/dev/null".into(),
            file: Arc::new(std::fs::File::open("/dev/null").unwrap()),
            position: 100,
            len: *cuts.last().unwrap(),
            first_offset: Offset(10),
            next_offset: Offset(10 + cuts.len() as i64),
            cuts: (1..)
                .zip(cuts)
                .map(|(i, &len)| (len, Offset(10 + i)))
                .collect(),
        }
    }

    fn read(data: ReadData) -> PartitionRead {
        PartitionRead {
            error_code: error_codes::NONE,
            high_watermark: 42,
            last_stable_offset: 42,
            log_start_offset: 0,
            aborted: None,
            data,
        }
    }

    #[test]
    fn fitting_cut_keeps_whole_batches_within_the_budget() {
        assert_eq!(fitting_cut([10, 20, 30], 25, false), Some(1));
        assert_eq!(fitting_cut([10, 20, 30], 30, false), Some(2));
        assert_eq!(fitting_cut([10, 20, 30], 9, false), None);
        // The first batch of the response is kept even past the budget,
        // but nothing after it.
        assert_eq!(fitting_cut([10, 20, 30], 9, true), Some(0));
        assert_eq!(fitting_cut([10, 20, 30], 0, true), Some(0));
        assert_eq!(fitting_cut([], 100, true), None);
    }

    #[test]
    fn fit_drops_trailing_memory_batches() {
        assert_eq!(
            sizes(&fit(batches(&[400, 400, 400]), 1000, false)),
            [400, 400]
        );
        assert_eq!(
            sizes(&fit(batches(&[400, 400]), 399, false)),
            Vec::<usize>::new()
        );
        assert_eq!(sizes(&fit(batches(&[900, 900]), 500, true)), [900]);
        assert_eq!(sizes(&fit(ReadData::Empty, 0, true)), Vec::<usize>::new());
    }

    #[test]
    fn fit_cuts_a_file_region_at_a_known_batch_end() {
        let ReadData::File(cut) = fit(ReadData::File(region(&[300, 700, 1000])), 800, false) else {
            panic!("expected a region")
        };
        assert_eq!(
            (cut.position, cut.len, cut.next_offset),
            (100, 700, Offset(12))
        );
        assert_eq!(cut.cuts, [(300, Offset(11)), (700, Offset(12))]);
        let ReadData::File(first) = fit(ReadData::File(region(&[300, 700])), 10, true) else {
            panic!("expected a region")
        };
        assert_eq!((first.len, first.next_offset), (300, Offset(11)));
        let whole = fit(ReadData::File(region(&[300, 700])), 700, false);
        assert_eq!(whole.len_bytes(), 700);
        let none = fit(ReadData::File(region(&[300, 700])), 299, false);
        assert!(matches!(none, ReadData::Empty));
    }

    /// Issue 14's case: reads of several batches each, up to the partition
    /// limit; the response holds at most `max_bytes` of them.
    #[test]
    fn build_keeps_the_response_within_max_bytes() {
        let order = vec![("a".to_string(), vec![0, 1, 2]), ("b".to_string(), vec![0])];
        let mut reads = BTreeMap::new();
        reads.insert(("a".to_string(), 0), read(ReadData::Empty));
        reads.insert(("a".to_string(), 1), read(batches(&[512_100, 512_100])));
        reads.insert(("a".to_string(), 2), read(batches(&[512_100, 512_100])));
        reads.insert(
            ("b".to_string(), 0),
            read(batches(&[100_000, 300_000, 100, 90_000])),
        );
        let answer = build(order, reads, 1_000_000);
        let ResponseKind::Fetch(response) = answer.body else {
            panic!("a fetch response")
        };
        let lens: Vec<(usize, i64)> = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|p| (p.records.as_ref().map_or(0, Bytes::len), p.high_watermark))
            .collect();
        assert_eq!(
            lens,
            [(0, 42), (512_100, 42), (0, 42), (400_100, 42)],
            "a-1 loses its second batch, a-2 does not fit, b-0 fits three of four batches"
        );
    }

    #[test]
    fn build_returns_the_first_batch_whole_even_past_max_bytes() {
        let order = vec![("a".to_string(), vec![0, 1])];
        let mut reads = BTreeMap::new();
        reads.insert(("a".to_string(), 0), read(batches(&[2_000, 10])));
        reads.insert(("a".to_string(), 1), read(batches(&[10])));
        let answer = build(order, reads, 1_000);
        let ResponseKind::Fetch(response) = answer.body else {
            panic!("a fetch response")
        };
        let lens: Vec<usize> = response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect();
        assert_eq!(lens, [2_000, 0]);
    }
}
