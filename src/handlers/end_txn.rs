//! EndTxn (key 26): commits or aborts the producer's transaction. The
//! coordinator answers once PrepareCommit/PrepareAbort is durable in
//! `__transaction_state`; the markers and the Complete state follow.
//! v0 to v4 (v5 is KIP-890's transaction version 2).

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse, ProducerId};

use super::{ApiSupport, RequestContext};
use crate::txn::{errors, submit_to_txn_coordinator};

pub const API: ApiSupport = super::api(ApiKey::EndTxn, 0, 4);

pub async fn handle(context: &RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    if let Some(code) = context.transactional_id_refusal(
        crate::security::acl::Operation::Write,
        request.transactional_id.as_str(),
    ) {
        return EndTxnResponse::default().with_error_code(code);
    }
    let id = request.transactional_id.to_string();
    let producer_id = request.producer_id.0;
    let epoch = request.producer_epoch;
    let commit = request.committed;
    let outcome = submit_to_txn_coordinator(&context.shard, &id.clone(), move |txn| async move {
        txn.end_txn(&id, producer_id, epoch, commit).await
    })
    .await
    .and_then(|answer| answer);
    let code = match outcome {
        Ok(()) => errors::NONE,
        Err(code) => crate::txn::fenced_for_version(code, context.api_version, 2),
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
