//! FindCoordinator (key 10): a group's coordinator is the broker that leads
//! its `__consumer_offsets` partition (key type 0), a transactional id's
//! the one that leads its `__transaction_state` partition (key type 1);
//! the shard inside it is found per request by the handlers.
//! v0 to v3 ask for one key, v4+ for a batch. On first use it has the
//! controller create `__consumer_offsets` (compacted, internal), as Kafka
//! does.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::errors;
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::FindCoordinator, 0, 4);

/// `FindCoordinatorRequest.key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `FindCoordinatorRequest.key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let batched = context.api_version >= 4;
    let keys: Vec<String> = if batched {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    let (topic_name, ensured) = match request.key_type {
        KEY_TYPE_GROUP => (
            crate::coordinator::OFFSETS_TOPIC,
            crate::coordinator::ensure_offsets_topic(&context.shard).await,
        ),
        KEY_TYPE_TRANSACTION => (
            crate::txn::TRANSACTION_STATE_TOPIC,
            crate::txn::ensure_state_topic(&context.shard).await,
        ),
        _ => (
            crate::coordinator::OFFSETS_TOPIC,
            Err("Sluice coordinates consumer groups and transactions only".to_string()),
        ),
    };
    let error = match ensured {
        Ok(()) => None,
        Err(message) if request.key_type > KEY_TYPE_TRANSACTION || request.key_type < 0 => {
            Some((errors::INVALID_REQUEST, message))
        }
        Err(message) => Some((errors::COORDINATOR_NOT_AVAILABLE, message)),
    };
    let image = context.shard.image();
    let listener = context.session.listener();
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            // Both topics place keys with Kafka's abs(hashCode) % partitions.
            let leader = image
                .topic(topic_name)
                .map(|topic| crate::coordinator::partition_for_group(&key, topic.partitions))
                .and_then(|partition| image.leader_of(topic_name, partition))
                .and_then(|leader| image.brokers.get(&leader).filter(|broker| !broker.fenced));
            // Kafka: DESCRIBE on the group or transactional id, checked first.
            let refused = match request.key_type {
                KEY_TYPE_GROUP => context.group_refusal(Operation::Describe, &key),
                KEY_TYPE_TRANSACTION => context.transactional_id_refusal(Operation::Describe, &key),
                _ => None,
            };
            let refused = refused.map(|code| (code, "Authorization failed.".to_string()));
            let error = refused.or_else(|| error.clone()).or_else(|| {
                leader.is_none().then(|| {
                    let why = format!("The coordinator's {topic_name} partition has no leader");
                    (errors::COORDINATOR_NOT_AVAILABLE, why)
                })
            });
            match (error, leader) {
                (None, Some(broker)) => Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(broker.node_id))
                    .with_host(str_bytes(broker.endpoint(&listener).0.to_string()))
                    .with_port(i32::from(broker.endpoint(&listener).1)),
                (error, _) => {
                    let (code, message) = error.unwrap_or_default();
                    Coordinator::default()
                        .with_key(str_bytes(key))
                        .with_node_id(BrokerId(-1))
                        .with_host(str_bytes(""))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message)))
                }
            }
        })
        .collect();
    if batched {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let only = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(only.error_code)
        .with_error_message(only.error_message)
        .with_node_id(only.node_id)
        .with_host(only.host)
        .with_port(only.port)
}
