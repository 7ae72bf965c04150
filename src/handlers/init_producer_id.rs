//! InitProducerId (key 22): hands idempotent producers an ID and epoch.
//!
//! IDs come in blocks reserved durably by the controller (shard 0); each
//! shard hands out its block locally, so most requests need no hop. A
//! producer that names its current ID and epoch (KIP-360, v3+) gets the
//! epoch bumped. Transactions are not supported yet: a transactional ID is
//! refused.

use std::cell::Cell;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::shard::{self, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::InitProducerId, 0, 4);

/// Producer IDs reserved per trip to the controller.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

thread_local! {
    /// This shard's unspent block: `[next, end)`.
    static BLOCK: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

pub async fn handle(
    context: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(error_codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let current = request.producer_id.0;
    if current >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(ProducerId(current))
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match next_producer_id(context).await {
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

async fn next_producer_id(context: &RequestContext) -> Result<i64, String> {
    if let Some(id) = take_local() {
        return Ok(id);
    }
    let first = context
        .shard
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
