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
//! Fetch sessions (KIP-227): the shard's `fetch_session::SessionCache`
//! decides per request whether it is sessionless, full (and may open a
//! session) or incremental (the session's partitions are read, and only
//! those with news answered); `session.rs` converts to and from it,
//! `response.rs` builds the response.
//!
//! Authorization (Kafka's): a consumer needs READ on each topic, a follower
//! (replica_id >= 0) CLUSTER_ACTION on the cluster; else its partitions
//! answer TOPIC_AUTHORIZATION_FAILED.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ResponseKind};
use sluice_shards::ShardId;

use super::{owners, Answer, ApiSupport, RequestContext};
use crate::fetch_session::{
    FetchContext, FetchParams, SessionRequest, INVALID_SESSION_ID, TOPIC_IDS_VERSION,
};
use crate::partition::replica::DataWait;
use crate::partition::txn_index::AbortedTxn;
use crate::partition::TopicPartition;
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;
use crate::shard;
use crate::storage::{Offset, ReadData, ReadOptions};

mod response;
mod session;

pub const API: ApiSupport = super::api(ApiKey::Fetch, 4, 12);

/// Upper bound on how long one Fetch may wait, whatever the client asks.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;

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
pub(super) struct PartitionRead {
    pub(super) error_code: i16,
    pub(super) high_watermark: i64,
    pub(super) last_stable_offset: i64,
    pub(super) log_start_offset: i64,
    /// read_committed: the aborted transactions in the range read.
    pub(super) aborted: Option<Vec<AbortedTxn>>,
    pub(super) data: ReadData,
}

impl PartitionRead {
    pub(super) fn error(error_code: i16) -> PartitionRead {
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
    let (asked, forgotten) = session::asked(&request);
    let privileged = request.replica_id.0 >= 0;
    let session_context = context.shard.fetch_sessions.borrow_mut().new_context(
        now_ms(),
        &SessionRequest {
            version: context.api_version,
            session_id: request.session_id,
            epoch: request.session_epoch,
            privileged,
            partitions: &asked,
            forgotten: &forgotten,
        },
    );
    let partitions = match &session_context {
        FetchContext::Error(code) => {
            let response = FetchResponse::default()
                .with_error_code(*code)
                .with_session_id(INVALID_SESSION_ID);
            return ResponseKind::Fetch(response).into();
        }
        FetchContext::Incremental { partitions, .. } => partitions.as_slice(),
        FetchContext::Full | FetchContext::Sessionless => asked.as_slice(),
    };
    let mut answer = serve(context, &request, partitions).await;
    let ResponseKind::Fetch(response) = &mut answer.body else {
        unreachable!("serve answers Fetch")
    };
    let mut sessions = context.shard.fetch_sessions.borrow_mut();
    match session_context {
        FetchContext::Full => {
            let answered = session::answered(&asked, session::outcomes(response));
            let uses_topic_ids = context.api_version >= TOPIC_IDS_VERSION;
            response.session_id =
                sessions.create_session(now_ms(), privileged, uses_topic_ids, &answered);
        }
        FetchContext::Incremental { session_id, .. } => {
            let keep = sessions.incremental_response(session_id, &session::outcomes(response));
            session::retain(response, &keep);
            response.session_id = session_id;
        }
        FetchContext::Sessionless | FetchContext::Error(_) => {}
    }
    // Consumers' bytes count against `quota.consumer.default`; followers'
    // do not (Kafka has separate replication quotas).
    if !privileged {
        // Zero-copy regions stand in the records as placeholders of their
        // size, so the records' length is every byte sent.
        let fetched = records_bytes(response);
        response.throttle_time_ms = context.throttle(&context.shard.fetch_quota, fetched);
    }
    answer
}

fn now_ms() -> u64 {
    u64::try_from(crate::storage::now_ms()).unwrap_or(0)
}

/// Reads `partitions` (waiting up to the request's `max_wait_ms` for
/// `min_bytes`) and answers every one of them, in their order.
async fn serve(
    context: &RequestContext,
    request: &FetchRequest,
    partitions: &[(TopicPartition, FetchParams)],
) -> Answer {
    let image = context.shard.image();
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
    let order = session::answer_order(partitions);
    let mut targets: BTreeMap<ShardId, Vec<Target>> = BTreeMap::new();
    let mut known: BTreeMap<(String, i32), PartitionRead> = BTreeMap::new();
    let node_id = context.shard.config.node_id;
    let cluster_action =
        request.replica_id.0 >= 0 && context.authorized_on_cluster(Operation::ClusterAction);
    let mut readable: BTreeMap<&str, bool> = BTreeMap::new();
    for (key, params) in partitions {
        let authorized =
            *readable
                .entry(&key.topic)
                .or_insert_with(|| match request.replica_id.0 {
                    replica if replica >= 0 => cluster_action,
                    _ => context.authorized(Operation::Read, Resource::topic(&key.topic)),
                });
        let checked = match authorized {
            true => image.leader_check(&key.topic, key.partition, node_id),
            false => Err(error_codes::TOPIC_AUTHORIZATION_FAILED),
        };
        if let Err(code) = checked {
            known.insert(
                (key.topic.clone(), key.partition),
                PartitionRead::error(code),
            );
            continue;
        }
        let owner = context.shard.partition_owner(&key.topic, key.partition);
        targets.entry(owner).or_default().push(Target {
            topic: key.topic.clone(),
            partition: key.partition,
            offset: params.fetch_offset,
            max_bytes: usize::try_from(params.max_bytes).unwrap_or(0),
            response_max_bytes: max_bytes,
            replica_id: request.replica_id.0,
            current_leader_epoch: params.current_leader_epoch,
            read_committed: request.isolation_level == 1 && request.replica_id.0 < 0,
        });
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
    let answer = response::build(order, known, max_bytes);
    let region_bytes: u64 = answer.regions.iter().map(|region| region.len).sum();
    let ResponseKind::Fetch(response) = &answer.body else {
        unreachable!("built above")
    };
    context
        .shard
        .metrics
        .add_memory_bytes(records_bytes(response) - region_bytes);
    answer
}

/// The length of every partition's records in `response`, placeholders of
/// zero-copy regions included.
fn records_bytes(response: &FetchResponse) -> u64 {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| partition.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum()
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
                zero_copy: shard.config.fetch_sendfile,
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
