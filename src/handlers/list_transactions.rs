//! ListTransactions (key 66): asks every shard's transaction coordinator
//! for the ids it holds and merges them, filtered by state names, producer
//! ids and (v1+) by running longer than `duration_filter` ms. Unknown state
//! names are echoed in `unknown_state_filters`, as Kafka does. v2's id
//! pattern is not served.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ApiKey, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::security::acl::Operation;
use crate::txn::state::{TxnMetadata, TxnState};
use crate::txn::{errors, runtime};

pub const API: ApiSupport = super::api(ApiKey::ListTransactions, 0, 1);

const STATE_NAMES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub async fn handle(
    context: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let outcome = context
        .shard
        .mesh
        .submit_to_all(|| async { Some(runtime::current().list()) })
        .await;
    let Ok(per_shard) = outcome else {
        return ListTransactionsResponse::default()
            .with_error_code(errors::COORDINATOR_NOT_AVAILABLE);
    };
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<_> = states
        .iter()
        .filter(|s| !STATE_NAMES.iter().any(|known| known.name() == s.as_str()))
        .map(|s| str_bytes(s.clone()))
        .collect();
    let now_ms = crate::storage::now_ms();
    let duration_ms = if context.api_version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let wanted = |metadata: &TxnMetadata| {
        (states.is_empty() || states.iter().any(|s| s == metadata.state.name()))
            && (request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(metadata.producer_id)))
            && (duration_ms < 0
                || (metadata.start_ms >= 0 && now_ms - metadata.start_ms > duration_ms))
    };
    let listed = per_shard
        .into_iter()
        .flatten()
        .flatten()
        .filter(|metadata| wanted(metadata))
        // Kafka lists the ids the principal may DESCRIBE.
        .filter(|metadata| {
            context
                .transactional_id_refusal(Operation::Describe, &metadata.transactional_id)
                .is_none()
        })
        .map(|metadata| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(metadata.transactional_id)))
                .with_producer_id(ProducerId(metadata.producer_id))
                .with_transaction_state(str_bytes(metadata.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
