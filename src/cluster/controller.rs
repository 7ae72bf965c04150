//! The controller on this node (shard 0): the way every change to cluster
//! metadata is made, and, while this node leads the quorum, the active
//! controller's duties.
//!
//! Any shard reaches it with `mesh.submit_to(CONTROLLER_SHARD, ..)`. A
//! change is a [`ControllerRequest`]: on the active controller it runs
//! under a one-permit semaphore (so two creates of one name cannot both
//! win) against an image that has applied the whole log, its records are
//! proposed, and it is answered once they are applied here; on any other
//! node it is forwarded to the active controller over the controller
//! listener, and answered once this node has applied the same entry, so a
//! client that created a topic through one broker sees it there at once.
//!
//! The active controller also fences brokers whose heartbeats stop for
//! `broker.session.timeout.ms` (moving their leaderships), unfences them
//! when they come back, and moves leaders back to preferred replicas.
//!
//! Must not: touch partition data (each shard does that for its own
//! partitions when the new image reaches it) or apply records itself.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::acls;
use super::commands::{self, Placement};
pub use super::commands::{
    validate_topic_name, ConfigChange, ConfigOp, ConfigTarget, NewPartitions, NewTopic, TopicError,
    TopicRef,
};
use super::credentials;
use super::election;
use super::metadata::{MetadataImage, TopicMetadata};
use super::placement;
use super::quorum::{ProposeError, Quorum, QuorumStatus};
use super::reassign::{self, Reassignment};
use super::records::{Endpoint, MetadataRecord, RecordBatch};
use super::rpc;
use super::voters::VoterAddresses;
use crate::config::BrokerConfig;
use crate::protocol::error_codes;
use crate::security::acl::{AclBinding, AclFilter};

/// How long a change waits for an active controller before it fails with
/// NOT_CONTROLLER.
const CONTROLLER_WAIT_MS: u64 = 10_000;
const RETRY_MS: u64 = 100;
/// How often the active controller looks for brokers to fence.
const DUTY_INTERVAL_MS: u64 = 250;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        topics: Vec<TopicRef>,
    },
    CreatePartitions {
        changes: Vec<NewPartitions>,
        validate_only: bool,
    },
    AlterConfigs {
        changes: Vec<ConfigChange>,
        validate_only: bool,
    },
    AllocateProducerIds {
        count: i64,
    },
    BrokerHeartbeat(BrokerHeartbeat),
    ElectLeaders {
        unclean: bool,
        /// `None`: every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition).
    AlterPartition(commands::AlterPartition),
    /// Start, change or cancel partition reassignments (`reassign.rs`).
    AlterReassignments {
        reassignments: Vec<Reassignment>,
        allow_replication_factor_change: bool,
    },
    /// Reassignments in progress (`None`: of every partition).
    ListReassignments {
        partitions: Option<Vec<(String, i32)>>,
    },
    /// The quorum as the active controller sees it (DescribeQuorum).
    DescribeQuorum,
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// AlterUserScramCredentials (`credentials.rs`).
    AlterScramCredentials {
        changes: Vec<credentials::ScramChange>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub node_id: i32,
    pub incarnation: Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    NotController,
    Topics(Vec<Result<TopicMetadata, TopicError>>),
    Outcomes(Vec<Result<(), TopicError>>),
    ProducerIds(Result<i64, String>),
    Heartbeat {
        fenced: bool,
    },
    Elected(Vec<((String, i32), Result<(), TopicError>)>),
    /// AlterPartition: Kafka's error code, if refused.
    Altered(Result<(), i16>),
    Reassignments(Vec<reassign::Ongoing>),
    /// DeleteAcls: the bindings each filter removed.
    DeletedAcls(Vec<Result<Vec<AclBinding>, TopicError>>),
    Quorum {
        status: QuorumStatus,
        /// Each voter's controller listener.
        voters: Vec<(i32, SocketAddr)>,
    },
}

/// An answer and the log index this node must apply before answering.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControllerReply {
    pub applied_index: u64,
    pub response: ControllerResponse,
}

pub struct Controller {
    quorum: Rc<Quorum>,
    voters: Rc<VoterAddresses>,
    /// Plain TCP or mutual TLS to the active controller.
    transport: Rc<rpc::Transport>,
    config: Arc<BrokerConfig>,
    change_permit: Semaphore,
    /// The active controller's view of broker liveness (not in the log).
    heartbeats: RefCell<BTreeMap<i32, Instant>>,
    leadership_seen: Cell<u64>,
    /// Records that recreate an earlier single-node data dir, proposed by
    /// the first leader of a new log.
    bootstrap: RefCell<Option<Vec<MetadataRecord>>>,
}

fn not_controller() -> TopicError {
    TopicError::new(
        error_codes::NOT_CONTROLLER,
        "No active controller could be reached; retry.",
    )
}

impl Controller {
    pub fn new(
        quorum: Rc<Quorum>,
        voters: Rc<VoterAddresses>,
        transport: Rc<rpc::Transport>,
        config: Arc<BrokerConfig>,
        bootstrap: Option<Vec<MetadataRecord>>,
    ) -> Controller {
        Controller {
            quorum,
            voters,
            transport,
            config,
            change_permit: Semaphore::new(1),
            heartbeats: RefCell::new(BTreeMap::new()),
            leadership_seen: Cell::new(0),
            bootstrap: RefCell::new(bootstrap),
        }
    }

    pub fn quorum(&self) -> &Rc<Quorum> {
        &self.quorum
    }

    /// Makes a change through the active controller, wherever it is.
    pub async fn call(&self, request: ControllerRequest) -> Result<ControllerResponse, TopicError> {
        let deadline = Instant::now() + Duration::from_millis(CONTROLLER_WAIT_MS);
        loop {
            let reply = if self.quorum.is_leader() {
                Some(self.execute(request.clone()).await)
            } else if let Some((leader, address)) = self
                .quorum
                .leader()
                .and_then(|id| Some((id, self.voters.get(id)?)))
            {
                let hello = self.quorum.hello();
                match rpc::call::<_, ControllerReply>(address, &hello, &self.transport, &request)
                    .await
                {
                    Ok(reply) => Some(reply),
                    Err(error) => {
                        tracing::debug!(%error, "forwarding to the active controller failed");
                        self.voters.refresh(leader);
                        None
                    }
                }
            } else {
                None
            };
            match reply {
                Some(ControllerReply {
                    response: ControllerResponse::NotController,
                    ..
                })
                | None => {}
                Some(reply) => {
                    self.quorum.wait_applied(reply.applied_index).await;
                    return Ok(reply.response);
                }
            }
            if Instant::now() >= deadline {
                return Err(not_controller());
            }
            glommio::timer::sleep(Duration::from_millis(RETRY_MS)).await;
        }
    }

    /// Runs a request on this node, which should be the active controller;
    /// answers NotController if it is not (the caller retries elsewhere).
    pub async fn execute(&self, request: ControllerRequest) -> ControllerReply {
        let _permit = self.change_permit.acquire_permit(1).await;
        let not_controller = ControllerReply {
            applied_index: 0,
            response: ControllerResponse::NotController,
        };
        if !self.quorum.is_leader() {
            return not_controller;
        }
        // Decide on an image that has applied every entry of the log,
        // earlier leaders' included.
        self.quorum.wait_caught_up().await;
        let image = self.quorum.image();
        let (response, records) = self.decide(&image, request);
        if records.is_empty() {
            return ControllerReply {
                applied_index: image.epoch,
                response,
            };
        }
        match self.quorum.propose(RecordBatch { records }).await {
            Ok(index) => ControllerReply {
                applied_index: index,
                response: self.refresh(response),
            },
            Err(ProposeError::NotController(_)) => not_controller,
            Err(ProposeError::Failed(error)) => ControllerReply {
                applied_index: 0,
                response: failed(response, &error),
            },
        }
    }

    /// The response and the records of a request, from `image`.
    fn decide(
        &self,
        image: &MetadataImage,
        request: ControllerRequest,
    ) -> (ControllerResponse, Vec<MetadataRecord>) {
        let keep_if = |validate_only: bool, records: Vec<MetadataRecord>| {
            if validate_only {
                Vec::new()
            } else {
                records
            }
        };
        match request {
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => {
                let (results, records) =
                    commands::create_topics(image, &self.config, topics, Placement::random());
                for topic in results.iter().flatten().filter(|_| !validate_only) {
                    tracing::info!(topic = %topic.name, partitions = topic.partitions, replication_factor = topic.replication_factor, "topic created");
                }
                (
                    ControllerResponse::Topics(results),
                    keep_if(validate_only, records),
                )
            }
            ControllerRequest::DeleteTopics { topics } => {
                let (results, records) = commands::delete_topics(image, topics);
                for topic in results.iter().flatten() {
                    tracing::info!(topic = %topic.name, "topic deleted");
                }
                (ControllerResponse::Topics(results), records)
            }
            ControllerRequest::CreatePartitions {
                changes,
                validate_only,
            } => {
                let (results, records) =
                    commands::create_partitions(image, changes, Placement::random());
                (
                    ControllerResponse::Outcomes(results),
                    keep_if(validate_only, records),
                )
            }
            ControllerRequest::AlterConfigs {
                changes,
                validate_only,
            } => {
                let (results, records) = commands::alter_configs(image, &self.config, changes);
                (
                    ControllerResponse::Outcomes(results),
                    keep_if(validate_only, records),
                )
            }
            ControllerRequest::AllocateProducerIds { count } => {
                match commands::allocate_producer_ids(image, count) {
                    Ok((first, record)) => {
                        (ControllerResponse::ProducerIds(Ok(first)), vec![record])
                    }
                    Err(error) => (ControllerResponse::ProducerIds(Err(error)), Vec::new()),
                }
            }
            // Registrations wait for the cluster's first record, its id, so
            // no broker is listed in a cluster without one.
            ControllerRequest::BrokerHeartbeat(_) if image.cluster_id.is_empty() => {
                (ControllerResponse::Heartbeat { fenced: true }, Vec::new())
            }
            ControllerRequest::BrokerHeartbeat(heartbeat) => self.heartbeat(image, heartbeat),
            ControllerRequest::ElectLeaders {
                unclean,
                partitions,
            } => self.elect_leaders(image, unclean, partitions),
            ControllerRequest::AlterPartition(change) => {
                match commands::alter_partition(image, &change) {
                    Ok(record) => (ControllerResponse::Altered(Ok(())), vec![record]),
                    Err(code) => (ControllerResponse::Altered(Err(code)), Vec::new()),
                }
            }
            ControllerRequest::AlterReassignments {
                reassignments,
                allow_replication_factor_change,
            } => {
                let (results, records) = reassign::alter(
                    image,
                    reassignments,
                    allow_replication_factor_change,
                    |image, topic| self.unclean(image, topic),
                );
                (ControllerResponse::Outcomes(results), records)
            }
            ControllerRequest::ListReassignments { partitions } => (
                ControllerResponse::Reassignments(reassign::list(image, partitions.as_deref())),
                Vec::new(),
            ),
            ControllerRequest::CreateAcls { acls } => {
                let (results, records) = acls::create(image, acls);
                (ControllerResponse::Outcomes(results), records)
            }
            ControllerRequest::DeleteAcls { filters } => {
                let (results, records) = acls::delete(image, &filters);
                (ControllerResponse::DeletedAcls(results), records)
            }
            ControllerRequest::AlterScramCredentials { changes } => {
                let (results, records) = credentials::alter(image, changes);
                (ControllerResponse::Outcomes(results), records)
            }
            ControllerRequest::DescribeQuorum => (
                ControllerResponse::Quorum {
                    status: self.quorum.status(),
                    voters: self.voters.all().into_iter().collect(),
                },
                Vec::new(),
            ),
        }
    }

    /// After the records are applied, results that describe topics are
    /// taken from the image (so they carry the applied state).
    fn refresh(&self, response: ControllerResponse) -> ControllerResponse {
        match response {
            ControllerResponse::Topics(results) => {
                let image = self.quorum.image();
                ControllerResponse::Topics(
                    results
                        .into_iter()
                        .map(|result| {
                            result.map(|topic| image.topic(&topic.name).cloned().unwrap_or(topic))
                        })
                        .collect(),
                )
            }
            other => other,
        }
    }

    fn heartbeat(
        &self,
        image: &MetadataImage,
        heartbeat: BrokerHeartbeat,
    ) -> (ControllerResponse, Vec<MetadataRecord>) {
        let node_id = heartbeat.node_id;
        self.heartbeats.borrow_mut().insert(node_id, Instant::now());
        let mut scratch = image.clone();
        let mut records = Vec::new();
        let mut add = |scratch: &mut MetadataImage, more: Vec<MetadataRecord>| {
            scratch.apply_batch(scratch.epoch, &more);
            records.extend(more);
        };
        let registered = scratch.brokers.get(&node_id).is_some_and(|broker| {
            broker.incarnation == heartbeat.incarnation
                && broker.host == heartbeat.host
                && broker.port == heartbeat.port
                && broker.endpoints == heartbeat.endpoints
        });
        if !registered {
            // A restart: what the old incarnation held in memory may be gone,
            // so it leaves every ISR and leadership before it registers anew.
            if scratch.brokers.contains_key(&node_id) {
                let mut fence = vec![MetadataRecord::FenceBroker { node_id }];
                fence.extend(placement::fence_changes(&scratch, node_id, |topic| {
                    self.unclean(&scratch, topic)
                }));
                add(&mut scratch, fence);
            }
            tracing::info!(node_id, host = %heartbeat.host, port = heartbeat.port, "broker registered");
            add(
                &mut scratch,
                vec![MetadataRecord::RegisterBroker {
                    node_id,
                    incarnation: heartbeat.incarnation,
                    host: heartbeat.host,
                    port: heartbeat.port,
                    rack: heartbeat.rack,
                    endpoints: heartbeat.endpoints,
                }],
            );
        }
        if scratch
            .brokers
            .get(&node_id)
            .is_some_and(|broker| broker.fenced)
        {
            tracing::info!(node_id, "broker unfenced");
            add(
                &mut scratch,
                vec![MetadataRecord::UnfenceBroker { node_id }],
            );
            let elect = placement::offline_leader_changes(
                &scratch,
                |id| scratch.is_live(id),
                |topic| self.unclean(&scratch, topic),
            );
            add(&mut scratch, elect);
        }
        (ControllerResponse::Heartbeat { fenced: false }, records)
    }

    fn unclean(&self, image: &MetadataImage, topic: &str) -> bool {
        let configs = image
            .topic(topic)
            .map(|topic| topic.configs.clone())
            .unwrap_or_default();
        self.config
            .with_dynamic(&image.broker_configs)
            .topic_config(&configs)
            .unclean_leader_election_enable
    }

    fn elect_leaders(
        &self,
        image: &MetadataImage,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> (ControllerResponse, Vec<MetadataRecord>) {
        let (results, records) = election::elect_leaders(image, unclean, partitions);
        (ControllerResponse::Elected(results), records)
    }

    /// The active controller's periodic duties; runs for the life of the
    /// node and acts only while this node leads the quorum.
    pub async fn run_duties(self: Rc<Self>) {
        let mut last_rebalance = Instant::now();
        loop {
            glommio::timer::sleep(Duration::from_millis(DUTY_INTERVAL_MS)).await;
            if !self.quorum.is_leader() {
                continue;
            }
            if self.leadership_seen.get() != self.quorum.leadership() {
                self.leadership_seen.set(self.quorum.leadership());
                self.became_leader().await;
                last_rebalance = Instant::now();
            }
            self.fence_silent_brokers().await;
            self.complete_reassignments().await;
            let config = self
                .config
                .with_dynamic(&self.quorum.image().broker_configs);
            let interval = Duration::from_secs(config.leader_imbalance_check_interval_seconds);
            if config.auto_leader_rebalance_enable && last_rebalance.elapsed() >= interval {
                last_rebalance = Instant::now();
                let _ = self
                    .execute(ControllerRequest::ElectLeaders {
                        unclean: false,
                        partitions: None,
                    })
                    .await;
            }
        }
    }

    /// A new active controller gives every broker a full session before
    /// fencing it, and formats a cluster whose log is empty.
    async fn became_leader(&self) {
        let now = Instant::now();
        let image = self.quorum.image();
        {
            let mut heartbeats = self.heartbeats.borrow_mut();
            heartbeats.clear();
            for id in image.brokers.keys() {
                heartbeats.insert(*id, now);
            }
        }
        let _permit = self.change_permit.acquire_permit(1).await;
        self.quorum.wait_caught_up().await;
        if !self.quorum.image().cluster_id.is_empty() {
            return;
        }
        let records = self.bootstrap.borrow_mut().take().unwrap_or_else(|| {
            let cluster_id = self
                .quorum
                .cluster_id()
                .unwrap_or_else(super::metadata::new_cluster_id);
            vec![MetadataRecord::ClusterFormat { cluster_id }]
        });
        match self.quorum.propose(RecordBatch { records }).await {
            Ok(_) => {
                tracing::info!(cluster_id = %self.quorum.image().cluster_id, "cluster formatted")
            }
            Err(error) => tracing::warn!(
                ?error,
                "formatting the cluster failed; the next leader retries"
            ),
        }
    }

    async fn fence_silent_brokers(&self) {
        let timeout = Duration::from_millis(self.config.broker_session_timeout_ms);
        let image = self.quorum.image();
        let now = Instant::now();
        // A live broker this controller has no heartbeat time for gets a
        // full session from now: `became_leader` starts the clock for the
        // brokers of the image it saw, and a broker that registered while
        // it ran (its heartbeat time cleared) is not in it. Without this, a
        // one-node cluster whose partitions take seconds to open fenced
        // itself just after it registered.
        let silent: Vec<i32> = image
            .live_brokers()
            .map(|broker| broker.node_id)
            .filter(|id| {
                let mut heartbeats = self.heartbeats.borrow_mut();
                let last = *heartbeats.entry(*id).or_insert(now);
                now.duration_since(last) >= timeout
            })
            .collect();
        for node_id in silent {
            let _permit = self.change_permit.acquire_permit(1).await;
            let image = self.quorum.image();
            if !image.is_live(node_id) {
                continue;
            }
            let mut records = vec![MetadataRecord::FenceBroker { node_id }];
            let mut scratch = image.as_ref().clone();
            scratch.apply_batch(scratch.epoch, &records);
            records.extend(placement::fence_changes(&scratch, node_id, |topic| {
                self.unclean(&scratch, topic)
            }));
            tracing::warn!(
                node_id,
                moved = records.len() - 1,
                "broker fenced: no heartbeat within broker.session.timeout.ms"
            );
            if let Err(error) = self.quorum.propose(RecordBatch { records }).await {
                tracing::warn!(?error, "fencing failed");
            }
        }
    }

    /// Completes the reassignments whose adding replicas are all in the
    /// ISR (`reassign::completions`).
    async fn complete_reassignments(&self) {
        let _permit = self.change_permit.acquire_permit(1).await;
        self.quorum.wait_caught_up().await;
        let records = reassign::completions(&self.quorum.image());
        if records.is_empty() || !self.quorum.is_leader() {
            return;
        }
        tracing::info!(partitions = records.len(), "reassignments completed");
        if let Err(error) = self.quorum.propose(RecordBatch { records }).await {
            tracing::warn!(?error, "completing reassignments failed");
        }
    }

    // The node's own operations, as the handlers call them.

    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicMetadata, TopicError>> {
        let count = topics.len();
        let request = ControllerRequest::CreateTopics {
            topics,
            validate_only,
        };
        match self.call(request).await {
            Ok(ControllerResponse::Topics(results)) => results,
            Ok(_) => unexpected(count),
            Err(error) => vec![Err(error); count],
        }
    }

    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Vec<Result<TopicMetadata, TopicError>> {
        let count = topics.len();
        match self.call(ControllerRequest::DeleteTopics { topics }).await {
            Ok(ControllerResponse::Topics(results)) => results,
            Ok(_) => unexpected(count),
            Err(error) => vec![Err(error); count],
        }
    }

    /// Raises partition counts: `(topic, new total count)`.
    pub async fn create_partitions(
        &self,
        changes: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let count = changes.len();
        let changes = changes
            .into_iter()
            .map(|(topic, count)| NewPartitions {
                topic,
                count,
                assignments: None,
            })
            .collect();
        let request = ControllerRequest::CreatePartitions {
            changes,
            validate_only,
        };
        self.outcomes(request, count).await
    }

    pub async fn alter_configs(
        &self,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let count = changes.len();
        let request = ControllerRequest::AlterConfigs {
            changes,
            validate_only,
        };
        self.outcomes(request, count).await
    }

    async fn outcomes(
        &self,
        request: ControllerRequest,
        count: usize,
    ) -> Vec<Result<(), TopicError>> {
        match self.call(request).await {
            Ok(ControllerResponse::Outcomes(results)) => results,
            Ok(_) => vec![
                Err(TopicError::new(
                    error_codes::UNKNOWN_SERVER_ERROR,
                    "unexpected answer"
                ));
                count
            ],
            Err(error) => vec![Err(error); count],
        }
    }

    /// Asks the active controller to commit an ISR change; Kafka's error
    /// code if refused or unreachable.
    pub async fn alter_partition(&self, change: commands::AlterPartition) -> Result<(), i16> {
        match self.call(ControllerRequest::AlterPartition(change)).await {
            Ok(ControllerResponse::Altered(result)) => result,
            Ok(_) => Err(error_codes::UNKNOWN_SERVER_ERROR),
            Err(error) => Err(error.code),
        }
    }

    /// Reserves `count` producer IDs and returns the first; the reservation
    /// is in the metadata log before it is answered, so IDs are never reused.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, String> {
        match self
            .call(ControllerRequest::AllocateProducerIds { count })
            .await
        {
            Ok(ControllerResponse::ProducerIds(result)) => result,
            Ok(_) => Err("unexpected answer".into()),
            Err(error) => Err(error.message),
        }
    }
}

fn unexpected(count: usize) -> Vec<Result<TopicMetadata, TopicError>> {
    vec![
        Err(TopicError::new(
            error_codes::UNKNOWN_SERVER_ERROR,
            "unexpected answer"
        ));
        count
    ]
}

/// A response whose records could not be committed: nothing took effect.
fn failed(response: ControllerResponse, error: &str) -> ControllerResponse {
    let failure = TopicError::new(error_codes::KAFKA_STORAGE_ERROR, error);
    match response {
        ControllerResponse::Topics(results) => ControllerResponse::Topics(
            results
                .into_iter()
                .map(|r| r.and(Err(failure.clone())))
                .collect(),
        ),
        ControllerResponse::Outcomes(results) => ControllerResponse::Outcomes(
            results
                .into_iter()
                .map(|r| r.and(Err(failure.clone())))
                .collect(),
        ),
        ControllerResponse::ProducerIds(_) => {
            ControllerResponse::ProducerIds(Err(error.to_string()))
        }
        ControllerResponse::DeletedAcls(results) => ControllerResponse::DeletedAcls(
            results
                .into_iter()
                .map(|r| r.and(Err(failure.clone())))
                .collect(),
        ),
        other => other,
    }
}
