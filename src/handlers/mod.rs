//! One file per Kafka API, and the closed table of every API Sluice serves.
//!
//! Handlers run on the shard that accepted the connection. A handler that
//! needs state owned elsewhere (a partition, the controller) finds the owner
//! and sends the work there with `mesh.submit_to`, so the hop is visible in
//! the handler. Handlers never see bytes: `protocol` decoded the request and
//! encodes the response.
//!
//! Architecture Invariant: [`SUPPORTED`] is the only source of the versions
//! ApiVersions advertises and of the versions the decoder accepts, so the
//! broker never advertises a version it does not serve.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::cluster::controller::{
    validate_topic_name, ControllerRequest, ControllerResponse, NewTopic, TopicError,
};
use crate::protocol::error_codes;
use crate::security::acl::{AclBinding, Operation, ResourceType};
use crate::security::authorizer::{
    authorize, authorize_any, AuthorizerConfig, Requester, Resource,
};
use crate::shard::{self, Shard, CONTROLLER_SHARD};
use crate::storage::FileRegion;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod owners;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// An API and the versions of it this broker serves.
#[derive(Clone, Copy, Debug)]
pub struct ApiSupport {
    pub api_key: ApiKey,
    pub versions: VersionRange,
}

const fn api(api_key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        api_key,
        versions: VersionRange { min, max },
    }
}

/// Every API Sluice serves, with the versions that really work. Each range
/// lies inside what `kafka-protocol` can decode (checked by a test).
pub const SUPPORTED: &[ApiSupport] = &[
    api_versions::API,
    metadata::API,
    create_topics::API,
    delete_topics::API,
    create_partitions::API,
    describe_configs::API,
    produce::API,
    fetch::API,
    list_offsets::API,
    init_producer_id::API,
    alter_configs::API,
    alter_configs::INCREMENTAL_API,
    describe_cluster::API,
    delete_records::API,
    describe_log_dirs::API,
    find_coordinator::API,
    join_group::API,
    sync_group::API,
    heartbeat::API,
    leave_group::API,
    offset_commit::API,
    offset_fetch::API,
    offset_delete::API,
    list_groups::API,
    describe_groups::API,
    delete_groups::API,
    offset_for_leader_epoch::API,
    elect_leaders::API,
    alter_partition_reassignments::API,
    list_partition_reassignments::API,
    describe_quorum::API,
    consumer_group_heartbeat::API,
    consumer_group_describe::API,
    add_partitions_to_txn::API,
    add_offsets_to_txn::API,
    end_txn::API,
    txn_offset_commit::API,
    describe_transactions::API,
    list_transactions::API,
    write_txn_markers::API,
    describe_acls::API,
    create_acls::API,
    delete_acls::API,
    sasl_handshake::API,
    sasl_authenticate::API,
    describe_user_scram_credentials::API,
    alter_user_scram_credentials::API,
];

pub fn supported_range(api_key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|support| support.api_key == api_key)
        .map(|support| support.versions)
}

/// What a handler knows of the request it serves.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub api_version: i16,
    pub header: RequestHeader,
    /// The client's address, when the socket knows it.
    pub client_address: Option<std::net::SocketAddr>,
    /// The connection's principal (`User:ANONYMOUS` until authenticated).
    pub session: Rc<crate::security::Session>,
}

impl RequestContext {
    /// Whether the connection's principal, from its address, may do
    /// `operation` on `resource`: always with the authorizer off, else as
    /// the ACLs of this shard's image say (`security::authorizer`).
    pub fn authorized(&self, operation: Operation, resource: Resource<'_>) -> bool {
        let allowed = self.ask_authorizer(|config, acls, requester| {
            authorize(config, acls, requester, operation, resource)
        });
        if !allowed {
            let principal = self.session.principal();
            tracing::debug!(%principal, ?operation, ?resource, "denied");
        }
        allowed
    }

    /// Kafka's `authorizeByResourceType`: `operation` on some resource of
    /// `resource_type` (`security::authorizer::authorize_any`).
    pub fn authorized_on_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        self.ask_authorizer(|config, acls, requester| {
            authorize_any(config, acls, requester, operation, resource_type)
        })
    }

    /// Runs `decide` with the authorizer's config, this shard's ACLs and the
    /// connection's principal and host; yes at once when the authorizer is off.
    fn ask_authorizer(
        &self,
        decide: impl FnOnce(&AuthorizerConfig, &BTreeSet<AclBinding>, Requester<'_>) -> bool,
    ) -> bool {
        let config = &self.shard.config.authorizer;
        if !config.enabled {
            return true;
        }
        let principal = self.session.principal();
        let requester = Requester {
            principal: &principal,
            host: self.client_address.map(|address| address.ip()),
        };
        decide(config, &self.shard.image().acls, requester)
    }

    /// Whether the principal may create topic `name`: CREATE on the
    /// cluster or on the topic, as Kafka asks.
    pub fn may_create_topic(&self, name: &str) -> bool {
        self.authorized_on_cluster(Operation::Create)
            || self.authorized(Operation::Create, Resource::topic(name))
    }

    /// Whether this broker leads `partition` of `topic` for a principal
    /// allowed `operation` on the topic: TOPIC_AUTHORIZATION_FAILED first,
    /// then [`MetadataImage::leader_check`](crate::cluster::metadata::MetadataImage::leader_check)'s errors.
    pub fn topic_leader_check(
        &self,
        image: &crate::cluster::metadata::MetadataImage,
        operation: Operation,
        topic: &str,
        partition: i32,
    ) -> Result<(), i16> {
        if !self.authorized(operation, Resource::topic(topic)) {
            return Err(error_codes::TOPIC_AUTHORIZATION_FAILED);
        }
        image.leader_check(topic, partition, self.shard.config.node_id)
    }

    /// GROUP_AUTHORIZATION_FAILED unless the principal may do `operation`
    /// on the group.
    pub fn group_refusal(&self, operation: Operation, group: &str) -> Option<i16> {
        (!self.authorized(operation, Resource::group(group)))
            .then_some(error_codes::GROUP_AUTHORIZATION_FAILED)
    }

    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED unless the principal may do
    /// `operation` on the transactional id.
    pub fn transactional_id_refusal(&self, operation: Operation, id: &str) -> Option<i16> {
        (!self.authorized(operation, Resource::transactional_id(id)))
            .then_some(error_codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    }

    /// CLUSTER_AUTHORIZATION_FAILED unless the principal may do `operation`
    /// on the cluster.
    pub fn cluster_refusal(&self, operation: Operation) -> Option<i16> {
        (!self.authorized_on_cluster(operation))
            .then_some(error_codes::CLUSTER_AUTHORIZATION_FAILED)
    }

    /// Counts `bytes` against this client id's quota in `tracker` (one of
    /// the shard's) and mutes the connection for the throttle time it
    /// earns; returns that time for the response's `throttle_time_ms`.
    pub fn throttle(
        &self,
        tracker: &std::cell::RefCell<crate::security::quota::QuotaTracker>,
        bytes: u64,
    ) -> i32 {
        if tracker.borrow().is_unlimited() {
            return 0;
        }
        let client_id = self.header.client_id.as_deref().unwrap_or("");
        let now_ms = u64::try_from(crate::storage::now_ms()).unwrap_or(0);
        let throttle_ms = tracker.borrow_mut().record(client_id, bytes, now_ms);
        self.session.throttle(throttle_ms);
        i32::try_from(throttle_ms).unwrap_or(i32::MAX)
    }

    /// [`RequestContext::authorized`] on the cluster resource.
    pub fn authorized_on_cluster(&self, operation: Operation) -> bool {
        self.authorized(operation, Resource::cluster())
    }
}

/// A handler's answer: the response body, and the file regions its
/// placeholders stand for (zero-copy Fetch; empty for every other API).
pub struct Answer {
    pub body: ResponseKind,
    pub regions: Vec<FileRegion>,
}

impl From<ResponseKind> for Answer {
    fn from(body: ResponseKind) -> Answer {
        Answer {
            body,
            regions: Vec::new(),
        }
    }
}

/// The rest of a request's work once its ordered part is done; `None` when
/// the request wants no response (Produce with acks=0).
pub type Remainder = Pin<Box<dyn Future<Output = Option<Answer>>>>;

/// Starts a request. The connection awaits this before it reads the next
/// request, so whatever a handler does here happens in arrival order (a
/// Produce queues its appends on the owning shards); the remainder runs
/// concurrently with later requests and is answered in order by the writer.
pub async fn start(context: RequestContext, body: RequestKind) -> Remainder {
    match body {
        RequestKind::Produce(request) => produce::start(context, request).await,
        RequestKind::Fetch(request) => {
            Box::pin(async move { Some(fetch::handle(&context, request).await) })
        }
        // The SASL exchange moves on before the next request is read.
        RequestKind::SaslHandshake(request) => {
            let body = ResponseKind::SaslHandshake(sasl_handshake::handle(&context, request));
            Box::pin(async move { Some(body.into()) })
        }
        RequestKind::SaslAuthenticate(request) => {
            let body = ResponseKind::SaslAuthenticate(sasl_authenticate::handle(&context, request));
            Box::pin(async move { Some(body.into()) })
        }
        body => Box::pin(async move { Some(dispatch(&context, body).await.into()) }),
    }
}

/// Runs the handler for `body`. The decoder admits only APIs in
/// [`SUPPORTED`], so every variant reaching here has a handler.
pub async fn dispatch(context: &RequestContext, body: RequestKind) -> ResponseKind {
    match body {
        RequestKind::ApiVersions(request) => {
            ResponseKind::ApiVersions(api_versions::handle(context, request))
        }
        RequestKind::DescribeUserScramCredentials(request) => {
            ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials::handle(
                context, request,
            ))
        }
        RequestKind::AlterUserScramCredentials(request) => ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(context, request).await,
        ),
        RequestKind::Metadata(request) => {
            ResponseKind::Metadata(metadata::handle(context, request).await)
        }
        RequestKind::CreateTopics(request) => {
            ResponseKind::CreateTopics(create_topics::handle(context, request).await)
        }
        RequestKind::DeleteTopics(request) => {
            ResponseKind::DeleteTopics(delete_topics::handle(context, request).await)
        }
        RequestKind::CreatePartitions(request) => {
            ResponseKind::CreatePartitions(create_partitions::handle(context, request).await)
        }
        RequestKind::DescribeConfigs(request) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(context, request))
        }
        RequestKind::AlterConfigs(request) => {
            ResponseKind::AlterConfigs(alter_configs::handle(context, request).await)
        }
        RequestKind::IncrementalAlterConfigs(request) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(context, request).await,
        ),
        RequestKind::DescribeCluster(request) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(context, request))
        }
        RequestKind::DeleteRecords(request) => {
            ResponseKind::DeleteRecords(delete_records::handle(context, request).await)
        }
        RequestKind::DescribeLogDirs(request) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(context, request).await)
        }
        RequestKind::ListOffsets(request) => {
            ResponseKind::ListOffsets(list_offsets::handle(context, request).await)
        }
        RequestKind::OffsetForLeaderEpoch(request) => ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(context, request).await,
        ),
        RequestKind::InitProducerId(request) => {
            ResponseKind::InitProducerId(init_producer_id::handle(context, request).await)
        }
        RequestKind::FindCoordinator(request) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(context, request).await)
        }
        RequestKind::JoinGroup(request) => {
            ResponseKind::JoinGroup(join_group::handle(context, request).await)
        }
        RequestKind::SyncGroup(request) => {
            ResponseKind::SyncGroup(sync_group::handle(context, request).await)
        }
        RequestKind::Heartbeat(request) => {
            ResponseKind::Heartbeat(heartbeat::handle(context, request).await)
        }
        RequestKind::LeaveGroup(request) => {
            ResponseKind::LeaveGroup(leave_group::handle(context, request).await)
        }
        RequestKind::OffsetCommit(request) => {
            ResponseKind::OffsetCommit(offset_commit::handle(context, request).await)
        }
        RequestKind::OffsetFetch(request) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(context, request).await)
        }
        RequestKind::OffsetDelete(request) => {
            ResponseKind::OffsetDelete(offset_delete::handle(context, request).await)
        }
        RequestKind::ListGroups(request) => {
            ResponseKind::ListGroups(list_groups::handle(context, request).await)
        }
        RequestKind::DescribeGroups(request) => {
            ResponseKind::DescribeGroups(describe_groups::handle(context, request).await)
        }
        RequestKind::DeleteGroups(request) => {
            ResponseKind::DeleteGroups(delete_groups::handle(context, request).await)
        }
        RequestKind::ElectLeaders(request) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(context, request).await)
        }
        RequestKind::AlterPartitionReassignments(request) => {
            ResponseKind::AlterPartitionReassignments(
                alter_partition_reassignments::handle(context, request).await,
            )
        }
        RequestKind::ListPartitionReassignments(request) => {
            ResponseKind::ListPartitionReassignments(
                list_partition_reassignments::handle(context, request).await,
            )
        }
        RequestKind::DescribeQuorum(request) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(context, request).await)
        }
        RequestKind::ConsumerGroupHeartbeat(request) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(context, request).await,
        ),
        RequestKind::ConsumerGroupDescribe(request) => ResponseKind::ConsumerGroupDescribe(
            consumer_group_describe::handle(context, request).await,
        ),
        RequestKind::AddPartitionsToTxn(request) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(context, request).await)
        }
        RequestKind::AddOffsetsToTxn(request) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(context, request).await)
        }
        RequestKind::EndTxn(request) => {
            ResponseKind::EndTxn(end_txn::handle(context, request).await)
        }
        RequestKind::TxnOffsetCommit(request) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(context, request).await)
        }
        RequestKind::DescribeTransactions(request) => ResponseKind::DescribeTransactions(
            describe_transactions::handle(context, request).await,
        ),
        RequestKind::ListTransactions(request) => {
            ResponseKind::ListTransactions(list_transactions::handle(context, request).await)
        }
        RequestKind::WriteTxnMarkers(request) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(context, request).await)
        }
        RequestKind::DescribeAcls(request) => {
            ResponseKind::DescribeAcls(describe_acls::handle(context, request))
        }
        RequestKind::CreateAcls(request) => {
            ResponseKind::CreateAcls(create_acls::handle(context, request).await)
        }
        RequestKind::DeleteAcls(request) => {
            ResponseKind::DeleteAcls(delete_acls::handle(context, request).await)
        }
        other => unreachable!("decoder admitted an API without a handler: {other:?}"),
    }
}

/// Creates the named topics that do not exist, with the broker's defaults
/// (`num.partitions`, `default.replication.factor`), on the controller
/// shard; returns the error of each that could not be created. The caller
/// decides whether auto-creation is allowed.
pub(crate) async fn auto_create_topics(
    context: &RequestContext,
    names: impl Iterator<Item = String>,
) -> BTreeMap<String, i16> {
    let image = context.shard.image();
    let config = &context.shard.config;
    let mut errors = BTreeMap::new();
    let mut to_create = Vec::new();
    for name in names {
        if image.topic(&name).is_some() || to_create.iter().any(|t: &NewTopic| t.name == name) {
            continue;
        }
        match validate_topic_name(&name) {
            Ok(()) => to_create.push(NewTopic {
                name: name.clone(),
                partitions: config.num_partitions,
                replication_factor: config.default_replication_factor,
                configs: BTreeMap::new(),
                assignments: None,
            }),
            Err(error) => {
                errors.insert(name, error.code);
            }
        }
    }
    if to_create.is_empty() {
        return errors;
    }
    let names: Vec<String> = to_create.iter().map(|topic| topic.name.clone()).collect();
    let outcome = context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.create_topics(to_create, false).await
        })
        .await;
    match outcome {
        Ok(results) => {
            for (name, result) in names.into_iter().zip(results) {
                match result {
                    // Created concurrently by someone else: fine.
                    Err(error) if error.code != error_codes::TOPIC_ALREADY_EXISTS => {
                        errors.insert(name, error.code);
                    }
                    _ => {}
                }
            }
        }
        Err(_) => {
            for name in names {
                errors.insert(name, error_codes::LEADER_NOT_AVAILABLE);
            }
        }
    }
    errors
}

/// Sends `request` to this node's controller (shard 0), which forwards it
/// to the active controller; a failed hop is NOT_CONTROLLER-like for the
/// caller (`UNKNOWN_SERVER_ERROR` with the reason).
pub(crate) async fn call_controller(
    context: &RequestContext,
    request: ControllerRequest,
) -> Result<ControllerResponse, TopicError> {
    context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.call(request).await
        })
        .await
        .unwrap_or_else(|error| {
            Err(TopicError::new(
                error_codes::UNKNOWN_SERVER_ERROR,
                error.to_string(),
            ))
        })
}

/// The results of a request's items in order, where only the `allowed`
/// ones were sent and `sent` holds their results: each refused item gets
/// `refused()`, a sent one missing from `sent` gets `missing()`.
pub(crate) fn with_refused<R>(
    allowed: &[bool],
    sent: Vec<R>,
    refused: impl Fn() -> R,
    missing: impl Fn() -> R,
) -> Vec<R> {
    let mut sent = sent.into_iter();
    allowed
        .iter()
        .map(|allowed| match allowed {
            true => sent.next().unwrap_or_else(&missing),
            false => refused(),
        })
        .collect()
}

/// TOPIC_AUTHORIZATION_FAILED as a controller outcome.
pub(crate) fn topic_refused<T>() -> Result<T, TopicError> {
    Err(TopicError::new(
        error_codes::TOPIC_AUTHORIZATION_FAILED,
        "Authorization failed.",
    ))
}

/// UNKNOWN_SERVER_ERROR for an outcome that never came.
pub(crate) fn no_answer<T>() -> Result<T, TopicError> {
    Err(TopicError::new(
        error_codes::UNKNOWN_SERVER_ERROR,
        "no answer",
    ))
}

/// A request's partitions, named by topic and indexes, as `(topic, index)`.
pub(crate) fn partition_pairs<'a>(
    topics: impl Iterator<Item = (&'a str, &'a [i32])>,
) -> Vec<(String, i32)> {
    topics
        .flat_map(|(topic, indexes)| indexes.iter().map(move |index| (topic.to_string(), *index)))
        .collect()
}

pub(crate) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_range_is_decodable_by_kafka_protocol() {
        for support in SUPPORTED {
            let codec = support.api_key.valid_versions();
            assert!(support.versions.min >= codec.min, "{support:?}");
            assert!(support.versions.max <= codec.max, "{support:?}");
            assert!(!support.versions.is_empty(), "{support:?}");
        }
    }

    #[test]
    fn each_api_appears_once() {
        for (index, support) in SUPPORTED.iter().enumerate() {
            assert!(SUPPORTED[index + 1..]
                .iter()
                .all(|other| other.api_key != support.api_key));
        }
    }
}
