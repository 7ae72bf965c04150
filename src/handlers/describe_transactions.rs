//! DescribeTransactions (key 65): each id's state from its transaction
//! coordinator: state, timeout, start time, producer id and epoch, and the
//! partitions of its open transaction. An id this broker does not
//! coordinate answers NOT_COORDINATOR; an unknown one
//! TRANSACTIONAL_ID_NOT_FOUND.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::security::acl::Operation;
use crate::txn::state::TxnMetadata;
use crate::txn::{errors, submit_to_txn_coordinator};

pub const API: ApiSupport = super::api(ApiKey::DescribeTransactions, 0, 0);

pub async fn handle(
    context: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let key = id.to_string();
        if let Some(code) = context.transactional_id_refusal(Operation::Describe, &key) {
            states.push(
                TransactionState::default()
                    .with_error_code(code)
                    .with_transactional_id(id),
            );
            continue;
        }
        let found =
            submit_to_txn_coordinator(&context.shard, &key.clone(), move |txn| async move {
                txn.describe(&key)
            })
            .await;
        let state = match found {
            Ok(Some(metadata)) => describe(metadata),
            Ok(None) => {
                TransactionState::default().with_error_code(errors::TRANSACTIONAL_ID_NOT_FOUND)
            }
            Err(code) => TransactionState::default().with_error_code(code),
        };
        states.push(state.with_transactional_id(id));
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(metadata: TxnMetadata) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in metadata.partitions {
        match topics.last_mut() {
            Some(data) if data.topic.as_str() == topic => data.partitions.push(partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    TransactionState::default()
        .with_transaction_state(str_bytes(metadata.state.name()))
        .with_transaction_timeout_ms(i32::try_from(metadata.timeout_ms).unwrap_or(i32::MAX))
        .with_transaction_start_time_ms(metadata.start_ms)
        .with_producer_id(ProducerId(metadata.producer_id))
        .with_producer_epoch(metadata.producer_epoch)
        .with_topics(topics)
}
