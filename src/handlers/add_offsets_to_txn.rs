//! AddOffsetsToTxn (key 25): adds the group's `__consumer_offsets`
//! partition to the producer's transaction (as Kafka does), so the
//! transaction's markers reach the group coordinator, which then makes the
//! TxnOffsetCommit offsets visible or drops them.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};

use super::{ApiSupport, RequestContext};
use crate::coordinator::{ensure_offsets_topic, partition_for_group, OFFSETS_TOPIC};
use crate::txn::{errors, submit_to_txn_coordinator};

pub const API: ApiSupport = super::api(ApiKey::AddOffsetsToTxn, 0, 3);

pub async fn handle(
    context: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    if let Some(code) = context
        .transactional_id_refusal(
            crate::security::acl::Operation::Write,
            request.transactional_id.as_str(),
        )
        .or_else(|| {
            context.group_refusal(
                crate::security::acl::Operation::Read,
                request.group_id.as_str(),
            )
        })
    {
        return AddOffsetsToTxnResponse::default().with_error_code(code);
    }
    if ensure_offsets_topic(&context.shard).await.is_err() {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(errors::COORDINATOR_NOT_AVAILABLE);
    }
    let id = request.transactional_id.to_string();
    let producer_id = request.producer_id.0;
    let epoch = request.producer_epoch;
    let partition = partition_for_group(
        &request.group_id,
        context.shard.config.offsets_topic_num_partitions,
    );
    let asked = vec![(OFFSETS_TOPIC.to_string(), partition)];
    let outcome = submit_to_txn_coordinator(&context.shard, &id.clone(), move |txn| async move {
        txn.add_partitions(&id, producer_id, epoch, &asked).await
    })
    .await
    .and_then(|answer| answer);
    let code = match outcome {
        Ok(()) => errors::NONE,
        Err(code) => crate::txn::fenced_for_version(code, context.api_version, 2),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
