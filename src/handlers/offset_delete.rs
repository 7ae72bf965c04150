//! OffsetDelete (key 47): forwarded to the group's coordinator shard, which
//! deletes the committed offsets of topics the group no longer consumes.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use super::{ApiSupport, RequestContext};
use crate::coordinator::submit_to_coordinator;

pub const API: ApiSupport = super::api(ApiKey::OffsetDelete, 0, 0);

pub async fn handle(
    context: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Delete,
        request.group_id.as_str(),
    ) {
        return OffsetDeleteResponse::default().with_error_code(code);
    }
    let group_id = request.group_id.to_string();
    let wanted: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
            (t.name.to_string(), partitions)
        })
        .collect();
    let target = group_id.clone();
    let outcome = submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
        coordinator.delete_offsets(&group_id, &wanted).await
    })
    .await
    .unwrap_or_else(Err);
    let codes = match outcome {
        Ok(codes) => codes,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let topics = request
        .topics
        .iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
