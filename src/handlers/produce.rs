//! Produce (key 0): appends record batches to partitions on their owning
//! shards and answers after the durability `acks` asks for.
//!
//! The ordered part ([`start`]) runs before the connection reads its next
//! request: it groups the request's partitions by owning shard and queues
//! one job per shard (`mesh.send_to`), so the appends of pipelined requests
//! reach each partition in the order they were sent, which idempotent
//! producers rely on. The rest awaits the jobs and builds the response.
//! Per-partition errors never fail the other partitions.
//!
//! Authorization (Kafka's): WRITE on the transactional id for a
//! transactional request (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
//! all), WRITE on each topic (else TOPIC_AUTHORIZATION_FAILED for its
//! partitions); auto-creation also needs CREATE.
//!
//! Quota: the request's record bytes count against the client id's
//! `quota.producer.default` (`throttle_time_ms`, the connection muted).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind};
use sluice_shards::{Reply, ShardId};

use super::{str_bytes, ApiSupport, Remainder, RequestContext};
use crate::partition::replica::AppendError;
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;
use crate::shard;
use crate::stages::{JobTiming, Stage};
use crate::storage::{ErrorKind, RecordError};

pub const API: ApiSupport = super::api(ApiKey::Produce, 3, 12);

/// One partition's records, on its way to the owning shard.
struct PartitionAppend {
    topic: String,
    partition: i32,
    records: Bytes,
}

/// One partition's answer.
#[derive(Clone, Debug)]
struct PartitionResult {
    error_code: i16,
    error_message: Option<String>,
    /// The records that made the batch invalid (KIP-467; answered from
    /// Produce v8, dropped by the encoder below).
    record_errors: Vec<RecordError>,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

impl PartitionResult {
    fn error(error_code: i16, message: impl Into<Option<String>>) -> PartitionResult {
        PartitionResult {
            error_code,
            error_message: message.into(),
            record_errors: Vec::new(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// Where each partition of the request went: a job on a shard (and its
/// index in that job), or an answer known without asking anyone.
enum Slot {
    Queued { shard: ShardId, index: usize },
    Known(PartitionResult),
}

pub async fn start(context: RequestContext, request: ProduceRequest) -> Remainder {
    let routing_at = Instant::now();
    let acks = request.acks;
    // Kafka's producer default (request.timeout.ms) when the request has none.
    let timeout = Duration::from_millis(match request.timeout_ms {
        ms if ms > 0 => ms as u64,
        _ => PRODUCE_TIMEOUT_MS_DEFAULT,
    });
    if !matches!(acks, -1..=1) {
        let response = respond_all(&request, error_codes::INVALID_REQUIRED_ACKS);
        return Box::pin(async move { Some(ResponseKind::Produce(response).into()) });
    }
    if let Some(id) = &request.transactional_id {
        if !context.authorized(Operation::Write, Resource::transactional_id(id)) {
            let code = error_codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            let response = respond_all(&request, code);
            return Box::pin(async move { Some(ResponseKind::Produce(response).into()) });
        }
    }
    let writable = |name: &str| context.authorized(Operation::Write, Resource::topic(name));
    if context.shard.config.auto_create_topics_enable {
        let names = request
            .topic_data
            .iter()
            .map(|topic| topic.name.0.to_string())
            .filter(|name| writable(name) && context.may_create_topic(name))
            .collect::<Vec<_>>();
        super::auto_create_topics(&context, names.into_iter()).await;
    }
    let refused = verify_transaction(&context, &request).await;
    let produced_bytes: u64 = request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .map(|data| {
            data.records
                .as_ref()
                .map_or(0, |records| records.len() as u64)
        })
        .sum();
    let throttle_time_ms = context.throttle(&context.shard.produce_quota, produced_bytes);
    let image = context.shard.image();
    let mut slots: Vec<(String, Vec<(i32, Slot)>)> = Vec::new();
    let mut jobs: BTreeMap<ShardId, Vec<PartitionAppend>> = BTreeMap::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut topic_slots = Vec::with_capacity(topic.partition_data.len());
        let authorized = writable(&name);
        for data in topic.partition_data {
            let routed = match authorized {
                true => image.leader_check(&name, data.index, context.shard.config.node_id),
                false => Err(error_codes::TOPIC_AUTHORIZATION_FAILED),
            };
            let slot = match (routed, data.records) {
                (Ok(()), Some(_)) if refused.is_some() => {
                    let code = refused.unwrap_or_default();
                    Slot::Known(PartitionResult::error(code, None))
                }
                (Ok(()), Some(records)) => {
                    let owner = context.shard.partition_owner(&name, data.index);
                    let job = jobs.entry(owner).or_default();
                    job.push(PartitionAppend {
                        topic: name.clone(),
                        partition: data.index,
                        records,
                    });
                    Slot::Queued {
                        shard: owner,
                        index: job.len() - 1,
                    }
                }
                (Ok(()), None) => Slot::Known(PartitionResult::error(
                    error_codes::CORRUPT_MESSAGE,
                    "no records".to_string(),
                )),
                (Err(code), _) => Slot::Known(PartitionResult::error(code, None)),
            };
            topic_slots.push((data.index, slot));
        }
        slots.push((name, topic_slots));
    }
    // The ordered part: queue every job before the next request is read.
    let mut replies: BTreeMap<ShardId, (Instant, Reply<OwnerAnswer>)> = BTreeMap::new();
    for (owner, appends) in jobs {
        let queued_at = Instant::now();
        let queued = context
            .shard
            .mesh
            .send_to(owner, move || append_on_owner(appends, acks, timeout))
            .await;
        if let Ok(reply) = queued {
            replies.insert(owner, (queued_at, reply));
        }
    }
    let shard = context.shard.clone();
    let stages = &shard.metrics.produce_stages;
    stages.record_between(Stage::Route, routing_at, Instant::now());
    Box::pin(async move {
        let stages = &shard.metrics.produce_stages;
        let mut results: BTreeMap<ShardId, Vec<PartitionResult>> = BTreeMap::new();
        for (owner, (queued_at, reply)) in replies {
            if let Ok((answer, timing)) = reply.await {
                timing.record(stages, queued_at, Instant::now());
                results.insert(owner, answer);
            }
        }
        if acks == 0 {
            return None;
        }
        let responses = slots
            .into_iter()
            .map(|(name, topic_slots)| {
                let partitions = topic_slots
                    .into_iter()
                    .map(|(index, slot)| {
                        let result = match slot {
                            Slot::Known(result) => result,
                            Slot::Queued { shard, index } => results
                                .get(&shard)
                                .and_then(|answers| answers.get(index).cloned())
                                .unwrap_or_else(|| {
                                    PartitionResult::error(
                                        error_codes::NOT_LEADER_OR_FOLLOWER,
                                        None,
                                    )
                                }),
                        };
                        partition_response(index, result)
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(str_bytes(name)))
                    .with_partition_responses(partitions)
            })
            .collect();
        let response = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_time_ms);
        Some(ResponseKind::Produce(response).into())
    })
}

const PRODUCE_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// A job's answers, one per partition in its order, and when it ran.
type OwnerAnswer = (Vec<PartitionResult>, JobTiming);

/// A transactional Produce may write only to partitions its transaction
/// holds (KIP-890's verification, answered as Kafka does:
/// INVALID_TXN_STATE; a fenced epoch INVALID_PRODUCER_EPOCH). Checked with
/// the transaction coordinator when it is on this broker; `None`: go on.
async fn verify_transaction(context: &RequestContext, request: &ProduceRequest) -> Option<i16> {
    let id = request.transactional_id.as_ref()?.to_string();
    let mut producer = None;
    let mut partitions = Vec::new();
    for topic in &request.topic_data {
        for data in &topic.partition_data {
            let Some(records) = &data.records else {
                continue;
            };
            let header = crate::storage::batch::BatchHeader::parse(records).ok()?;
            if !header.is_transactional() {
                continue;
            }
            let epoch = records
                .get(51..53)
                .map(|bytes| i16::from_be_bytes([bytes[0], bytes[1]]))?;
            producer = Some((header.producer_id, epoch));
            partitions.push((topic.name.to_string(), data.index));
        }
    }
    let (producer_id, epoch) = producer?;
    let key = id.clone();
    let verdict =
        crate::txn::submit_to_txn_coordinator(&context.shard, &key, move |txn| async move {
            txn.verify(&id, producer_id, epoch, &partitions)
        })
        .await;
    match verdict {
        Ok(Ok(())) => None,
        Ok(Err(code)) => Some(code),
        // Coordinated elsewhere (or unreachable): the partitions' own
        // producer state still fences older epochs.
        Err(_) => None,
    }
}

/// Runs on the owning shard: appends each partition's records in order,
/// then, for `acks=all`, waits until the high watermark covers them (every
/// in-sync replica has them on disk). `min.insync.replicas` is checked
/// before the append (NOT_ENOUGH_REPLICAS) and while waiting.
async fn append_on_owner(
    appends: Vec<PartitionAppend>,
    acks: i16,
    timeout: Duration,
) -> OwnerAnswer {
    let started = Instant::now();
    let shard = shard::current();
    let now_ms = crate::storage::now_ms();
    let image = shard.image();
    let config = shard.effective_config();
    let mut results = Vec::with_capacity(appends.len());
    let mut commit_waits = Vec::new();
    let durable_at = Rc::new(Cell::new(None));
    for append in appends {
        let Some(partition) = shard.partitions.get(&append.topic, append.partition) else {
            let code = shard
                .partitions
                .absent_error(&append.topic, append.partition);
            results.push(PartitionResult::error(code, None));
            continue;
        };
        if !partition.is_leader() {
            results.push(PartitionResult::error(
                error_codes::NOT_LEADER_OR_FOLLOWER,
                None,
            ));
            continue;
        }
        let topic_configs = image
            .topic(&append.topic)
            .map(|topic| topic.configs.clone())
            .unwrap_or_default();
        let min_insync = config
            .topic_config(&topic_configs)
            .min_insync_replicas
            .max(1) as usize;
        if acks == -1 && partition.isr_size() < min_insync {
            let message = format!(
                "The in-sync replicas ({}) are fewer than min.insync.replicas ({min_insync})",
                partition.isr_size()
            );
            results.push(PartitionResult::error(
                error_codes::NOT_ENOUGH_REPLICAS,
                message,
            ));
            continue;
        }
        match partition.append(&append.records, now_ms).await {
            Ok(outcome) => {
                if acks == -1 {
                    let durable_at = durable_at.clone();
                    let wait = committed(
                        partition,
                        outcome.last_offset,
                        min_insync,
                        timeout,
                        durable_at,
                    );
                    commit_waits.push((results.len(), wait));
                }
                results.push(PartitionResult {
                    error_code: error_codes::NONE,
                    error_message: None,
                    record_errors: Vec::new(),
                    base_offset: outcome.base_offset,
                    log_append_time_ms: outcome.log_append_time_ms.unwrap_or(-1),
                    log_start_offset: outcome.log_start_offset,
                });
            }
            Err(error) => results.push(append_error(error)),
        }
    }
    let appended = Instant::now();
    let waited = !commit_waits.is_empty();
    for (index, wait) in commit_waits {
        if let Err((code, message)) = wait.await {
            results[index] = PartitionResult::error(code, message);
        }
    }
    let finished = Instant::now();
    let timing = JobTiming {
        started,
        appended,
        durable: durable_at.get(),
        replicated: waited.then_some(finished),
        finished,
    };
    (results, timing)
}

/// Ends when the high watermark passes `last_offset`, or with Kafka's error
/// (a failed sync is KAFKA_STORAGE_ERROR at once). Sets `durable_at` to
/// when the local sync covered the records, if that is later than it is.
async fn committed(
    partition: Rc<crate::partition::Partition>,
    last_offset: i64,
    min_insync: usize,
    timeout: Duration,
    durable_at: Rc<Cell<Option<Instant>>>,
) -> Result<(), (i16, Option<String>)> {
    let durable = partition
        .log
        .wait_durable(crate::storage::Offset(last_offset));
    let failed_sync = async move {
        match durable.await {
            Err(error) => Err((error_codes::KAFKA_STORAGE_ERROR, Some(error.to_string()))),
            Ok(()) => {
                durable_at.set(Some(Instant::now()));
                std::future::pending().await
            }
        }
    };
    let replicated = async {
        partition
            .wait_committed(last_offset, min_insync, timeout)
            .await
            .map_err(|code| (code, None))
    };
    // The sync first, so that its time is taken when both are ready.
    futures_lite::future::or(failed_sync, replicated).await
}

fn append_error(error: AppendError) -> PartitionResult {
    match error {
        AppendError::OutOfOrderSequence => {
            PartitionResult::error(error_codes::OUT_OF_ORDER_SEQUENCE_NUMBER, None)
        }
        AppendError::InvalidProducerEpoch => {
            PartitionResult::error(error_codes::INVALID_PRODUCER_EPOCH, None)
        }
        AppendError::Storage(error) => {
            let code = match error.kind() {
                ErrorKind::CorruptMessage => error_codes::CORRUPT_MESSAGE,
                ErrorKind::InvalidRecord => error_codes::INVALID_RECORD,
                ErrorKind::InvalidTimestamp => error_codes::INVALID_TIMESTAMP,
                ErrorKind::MessageTooLarge => error_codes::MESSAGE_TOO_LARGE,
                ErrorKind::OffsetOutOfRange => error_codes::OFFSET_OUT_OF_RANGE,
                ErrorKind::StorageError => error_codes::KAFKA_STORAGE_ERROR,
            };
            PartitionResult {
                record_errors: error.record_errors().to_vec(),
                ..PartitionResult::error(code, error.to_string())
            }
        }
    }
}

fn partition_response(index: i32, result: PartitionResult) -> PartitionProduceResponse {
    let record_errors = result
        .record_errors
        .into_iter()
        .map(|record| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(record.batch_index)
                .with_batch_index_error_message(Some(str_bytes(record.message)))
        })
        .collect();
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(result.error_code)
        .with_base_offset(result.base_offset)
        .with_log_append_time_ms(result.log_append_time_ms)
        .with_log_start_offset(result.log_start_offset)
        .with_error_message(result.error_message.map(str_bytes))
        .with_record_errors(record_errors)
}

fn respond_all(request: &ProduceRequest, error_code: i16) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|data| {
                    partition_response(data.index, PartitionResult::error(error_code, None))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;
    use crate::storage::StorageError;

    fn refused() -> PartitionProduceResponse {
        let error = StorageError::InvalidRecords {
            message: "2 record(s) rejected".into(),
            records: vec![
                RecordError {
                    batch_index: 3,
                    kind: crate::storage::ErrorKind::InvalidRecord,
                    message: "no key".into(),
                },
                RecordError {
                    batch_index: 7,
                    kind: crate::storage::ErrorKind::InvalidRecord,
                    message: "no key".into(),
                },
            ],
        };
        partition_response(0, append_error(AppendError::Storage(error)))
    }

    fn round_trip(version: i16) -> PartitionProduceResponse {
        let mut buf = BytesMut::new();
        refused().encode(&mut buf, version).unwrap();
        PartitionProduceResponse::decode(&mut buf.freeze(), version).unwrap()
    }

    #[test]
    fn record_errors_are_answered_with_invalid_record() {
        let response = refused();
        assert_eq!(response.error_code, error_codes::INVALID_RECORD);
        assert_eq!(response.base_offset, -1);
        let named: Vec<(i32, String)> = response
            .record_errors
            .iter()
            .map(|r| {
                let message = r.batch_index_error_message.as_ref().unwrap();
                (r.batch_index, message.to_string())
            })
            .collect();
        assert_eq!(named, vec![(3, "no key".into()), (7, "no key".into())]);
        assert!(response
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("2 record(s) rejected")));
    }

    #[test]
    fn record_errors_are_on_the_wire_from_v8_only() {
        for version in [8, 9, 12] {
            let decoded = round_trip(version);
            let indexes: Vec<i32> = decoded
                .record_errors
                .iter()
                .map(|r| r.batch_index)
                .collect();
            assert_eq!(indexes, vec![3, 7], "v{version}");
        }
        for version in [3, 7] {
            let decoded = round_trip(version);
            assert!(decoded.record_errors.is_empty(), "v{version}");
            assert_eq!(decoded.error_code, error_codes::INVALID_RECORD);
        }
    }
}
