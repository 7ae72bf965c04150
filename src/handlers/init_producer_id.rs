//! InitProducerId (key 22): hands idempotent producers an ID and epoch.
//!
//! IDs come in blocks reserved durably by the controller (shard 0); each
//! shard hands out its block locally, so most requests need no hop. A
//! producer that names its current ID and epoch (KIP-360, v3+) gets the
//! epoch bumped. A request with a transactional id goes to that id's
//! transaction coordinator (`txn::runtime`), which gives a new producer id
//! or bumps the epoch, fencing the older producer (and aborting what it
//! left open first: the client is answered CONCURRENT_TRANSACTIONS and
//! retries).

use std::cell::Cell;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::{Operation, ResourceType};
use crate::shard::{self, Shard, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::InitProducerId, 0, 4);

/// Producer IDs reserved per trip to the controller.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

thread_local! {
    /// This shard's unspent block: `[next, end)`.
    static BLOCK: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

fn refused(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub async fn handle(
    context: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
    {
        if let Some(code) = context.transactional_id_refusal(Operation::Write, id.as_str()) {
            return refused(code);
        }
        return transactional(context, id.to_string(), &request).await;
    }
    // Kafka (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
    if !context.authorized_on_cluster(Operation::IdempotentWrite)
        && !context.authorized_on_any(Operation::Write, ResourceType::Topic)
    {
        return refused(error_codes::CLUSTER_AUTHORIZATION_FAILED);
    }
    let current = request.producer_id.0;
    if current >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(ProducerId(current))
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match allocate_producer_id(&context.shard).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::warn!(%error, "could not allocate a producer id");
            InitProducerIdResponse::default()
                .with_error_code(error_codes::COORDINATOR_NOT_AVAILABLE)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

async fn transactional(
    context: &RequestContext,
    id: String,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let timeout_ms = i64::from(request.transaction_timeout_ms);
    let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
        .then_some((request.producer_id.0, request.producer_epoch));
    let key = id.clone();
    let answer =
        crate::txn::submit_to_txn_coordinator(&context.shard, &key, move |txn| async move {
            txn.init_producer_id(&id, timeout_ms, expected).await
        })
        .await
        .and_then(|answer| answer);
    match answer {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(crate::txn::fenced_for_version(code, context.api_version, 4))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// A producer id from this shard's block, reserving a new block with the
/// controller (shard 0) when it is spent.
pub async fn allocate_producer_id(shard: &Shard) -> Result<i64, String> {
    if let Some(id) = take_local() {
        return Ok(id);
    }
    let first = shard
        .mesh
        .submit_to(CONTROLLER_SHARD, || async {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller
                .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
                .await
        })
        .await
        .map_err(|error| error.to_string())??;
    // Another request may have refilled the block meanwhile: the new block
    // replaces it; the rest of the old one is simply never used.
    BLOCK.with(|block| block.set((first + 1, first + PRODUCER_ID_BLOCK_SIZE)));
    Ok(first)
}

fn take_local() -> Option<i64> {
    BLOCK.with(|block| {
        let (next, end) = block.get();
        (next < end).then(|| {
            block.set((next + 1, end));
            next
        })
    })
}
