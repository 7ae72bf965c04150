//! A replica fetcher: on one shard, every partition that shard follows
//! from one leader broker, fetched in one Fetch request per round over one
//! connection (Kafka's `ReplicaFetcherThread`, per shard instead of per
//! thread pool).
//!
//! A partition joins with the leader epoch it follows and first truncates:
//! OffsetForLeaderEpoch tells it where its last epoch ends on the leader,
//! and it cuts what the leader does not have (KIP-101/KIP-279), never to
//! the high watermark alone. Then each round asks for data from the log
//! end, appends what comes at the leader's offsets, and, when the topic
//! syncs every append, waits for the sync before fetching again: the
//! offset a follower fetches from is what it has on disk, which is what
//! the leader counts for the high watermark.
//!
//! Fetches go in an incremental fetch session (KIP-227, `session.rs`):
//! after the first full request, only partitions whose fetch offset or
//! parameters changed are sent, and partitions that stop being fetched
//! (truncating, no longer followed) are forgotten. A session error from
//! the leader (FETCH_SESSION_ID_NOT_FOUND after it restarted or evicted
//! the session, or after a reconnect landed on another of its shards;
//! INVALID_FETCH_SESSION_EPOCH) costs one full fetch.
//!
//! Runs on the shard that owns the partitions. Must not: decide roles (the
//! image does) or touch partitions of other shards.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::LeaderConnection;
use super::session::FollowerSession;
use crate::fetch_session::FetchParams;
use crate::partition::{Partition, TopicPartition};
use crate::protocol::error_codes;
use crate::shard::Shard;
use crate::storage::Offset;

/// The Fetch version followers send (`replica_id` in the body).
pub const FETCH_VERSION: i16 = 12;
pub const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A partition this fetcher follows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Follow {
    leader_epoch: i32,
    /// Truncated to the leader's log for this epoch.
    truncated: bool,
}

pub struct Fetcher {
    leader: i32,
    follows: RefCell<BTreeMap<TopicPartition, Follow>>,
    wake: LocalSender<()>,
    stopped: Cell<bool>,
}

impl Fetcher {
    /// Starts a fetcher for `leader` on this shard.
    pub fn spawn(shard: Rc<Shard>, leader: i32) -> Rc<Fetcher> {
        let (wake, woken) = local_channel::new_bounded(1);
        let fetcher = Rc::new(Fetcher {
            leader,
            follows: RefCell::new(BTreeMap::new()),
            wake,
            stopped: Cell::new(false),
        });
        glommio::spawn_local(fetcher.clone().run(shard, woken)).detach();
        fetcher
    }

    /// Sets what this fetcher follows; a partition new to it, or at a new
    /// leader epoch, truncates first.
    pub fn set(&self, wanted: BTreeMap<TopicPartition, i32>) {
        let mut follows = self.follows.borrow_mut();
        follows.retain(|key, _| wanted.contains_key(key));
        for (key, leader_epoch) in wanted {
            let follow = follows.entry(key).or_insert(Follow {
                leader_epoch,
                truncated: false,
            });
            if follow.leader_epoch != leader_epoch {
                *follow = Follow {
                    leader_epoch,
                    truncated: false,
                };
            }
        }
        drop(follows);
        let _ = self.wake.try_send(());
    }

    pub fn is_empty(&self) -> bool {
        self.follows.borrow().is_empty()
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        let _ = self.wake.try_send(());
    }

    async fn run(self: Rc<Self>, shard: Rc<Shard>, woken: LocalReceiver<()>) {
        let mut connection: Option<LeaderConnection> = None;
        let mut session = FollowerSession::default();
        let backoff = Duration::from_millis(shard.config.replica_fetch_backoff_ms);
        while !self.stopped.get() {
            if self.is_empty() {
                woken.recv().await;
                continue;
            }
            let Some(address) = leader_address(&shard, self.leader) else {
                glommio::timer::sleep(backoff).await;
                continue;
            };
            if connection.is_none() {
                match LeaderConnection::connect(address, CONNECT_TIMEOUT, &shard.config).await {
                    Ok(connected) => connection = Some(connected),
                    Err(error) => {
                        tracing::debug!(leader = self.leader, %address, %error, "cannot reach the leader");
                        glommio::timer::sleep(backoff).await;
                        continue;
                    }
                }
            }
            let live = connection.as_mut().expect("connected above");
            match self.round(&shard, live, &mut session).await {
                Ok(true) => {}
                Ok(false) => glommio::timer::sleep(backoff).await,
                Err(error) => {
                    tracing::debug!(leader = self.leader, %error, "replica fetch failed; reconnecting");
                    connection = None;
                    // The answer is lost: whether the leader moved the
                    // session on is unknown, so start it over.
                    session.reset();
                    glommio::timer::sleep(backoff).await;
                }
            }
        }
    }

    /// One round: truncate what must, then fetch. `Ok(false)` when nothing
    /// could progress (errors from the leader): the caller backs off.
    async fn round(
        &self,
        shard: &Rc<Shard>,
        connection: &mut LeaderConnection,
        session: &mut FollowerSession,
    ) -> std::io::Result<bool> {
        let follows: Vec<(TopicPartition, Follow)> = self
            .follows
            .borrow()
            .iter()
            .map(|(key, follow)| (key.clone(), *follow))
            .collect();
        let untruncated: Vec<_> = follows
            .iter()
            .filter(|(_, f)| !f.truncated)
            .cloned()
            .collect();
        let mut progressed = false;
        if !untruncated.is_empty() {
            progressed |= self.truncate(shard, connection, &untruncated).await?;
        }
        let ready: Vec<(Rc<Partition>, Follow)> = self
            .follows
            .borrow()
            .iter()
            .filter(|(_, follow)| follow.truncated)
            .filter_map(|(key, follow)| {
                Some((shard.partitions.get(&key.topic, key.partition)?, *follow))
            })
            .collect();
        if ready.is_empty() {
            return Ok(progressed);
        }
        progressed |= self.fetch(shard, connection, session, ready).await?;
        Ok(progressed)
    }

    async fn truncate(
        &self,
        shard: &Rc<Shard>,
        connection: &mut LeaderConnection,
        untruncated: &[(TopicPartition, Follow)],
    ) -> std::io::Result<bool> {
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        let mut done_without_asking = Vec::new();
        for (key, follow) in untruncated {
            let Some(partition) = shard.partitions.get(&key.topic, key.partition) else {
                continue;
            };
            match partition.log.leader_epochs().last() {
                Some(last) => topics.entry(key.topic.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(key.partition)
                        .with_current_leader_epoch(follow.leader_epoch)
                        .with_leader_epoch(last.epoch),
                ),
                // A log with no epoch is empty (or from before epochs were
                // kept): nothing can diverge that the leader's offsets would
                // not refuse.
                None => done_without_asking.push(key.clone()),
            }
        }
        for key in done_without_asking {
            self.mark_truncated(&key);
        }
        if topics.is_empty() {
            return Ok(true);
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(shard.config.node_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let timeout = Duration::from_millis(shard.config.replica_fetch_wait_max_ms as u64 + 10_000);
        let response = connection
            .call(&request, OFFSET_FOR_LEADER_EPOCH_VERSION, timeout)
            .await?;
        let mut progressed = false;
        for topic in response.topics {
            let name = topic.topic.0.to_string();
            for answer in topic.partitions {
                let key = TopicPartition {
                    topic: name.clone(),
                    partition: answer.partition,
                };
                let Some(partition) = shard.partitions.get(&key.topic, key.partition) else {
                    continue;
                };
                if answer.error_code != error_codes::NONE {
                    tracing::debug!(topic = %key.topic, partition = key.partition, error = answer.error_code, "OffsetForLeaderEpoch refused");
                    continue;
                }
                let point = truncation_point(&partition, answer.leader_epoch, answer.end_offset);
                if point < partition.log_end_offset() {
                    match partition.truncate_to(point).await {
                        Ok(end) => tracing::info!(
                            topic = %key.topic,
                            partition = key.partition,
                            leader = self.leader,
                            leader_epoch = answer.leader_epoch,
                            log_end_offset = end,
                            "follower truncated to the leader's epoch boundary"
                        ),
                        Err(error) => {
                            tracing::error!(topic = %key.topic, partition = key.partition, %error, "follower truncation failed");
                            continue;
                        }
                    }
                }
                self.mark_truncated(&key);
                progressed = true;
            }
        }
        Ok(progressed)
    }

    fn mark_truncated(&self, key: &TopicPartition) {
        if let Some(follow) = self.follows.borrow_mut().get_mut(key) {
            follow.truncated = true;
        }
    }

    fn mark_untruncated(&self, key: &TopicPartition) {
        if let Some(follow) = self.follows.borrow_mut().get_mut(key) {
            follow.truncated = false;
        }
    }

    async fn fetch(
        &self,
        shard: &Rc<Shard>,
        connection: &mut LeaderConnection,
        session: &mut FollowerSession,
        ready: Vec<(Rc<Partition>, Follow)>,
    ) -> std::io::Result<bool> {
        let config = &shard.config;
        let wanted: BTreeMap<TopicPartition, FetchParams> = ready
            .iter()
            .map(|(partition, follow)| {
                let params = FetchParams {
                    fetch_offset: partition.log_end_offset(),
                    log_start_offset: partition.log_start_offset(),
                    max_bytes: config.replica_fetch_max_bytes,
                    current_leader_epoch: follow.leader_epoch,
                    last_fetched_epoch: -1,
                };
                (partition.key.clone(), params)
            })
            .collect();
        let next = session.build(wanted);
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(config.node_id))
            .with_max_wait_ms(config.replica_fetch_wait_max_ms)
            .with_min_bytes(config.replica_fetch_min_bytes)
            .with_max_bytes(config.replica_fetch_response_max_bytes)
            .with_session_id(next.session_id)
            .with_session_epoch(next.epoch)
            .with_topics(fetch_topics(&next.to_send))
            .with_forgotten_topics_data(forgotten_topics(&next.to_forget));
        let timeout = Duration::from_millis(config.replica_fetch_wait_max_ms as u64 + 10_000);
        let response = connection.call(&request, FETCH_VERSION, timeout).await?;
        match response.error_code {
            error_codes::NONE => session.answered(next, response.session_id),
            code => {
                // A session error costs one full fetch, at once (a full
                // fetch meets no session error); anything else backs off.
                tracing::debug!(
                    leader = self.leader,
                    error = code,
                    session_id = next.session_id,
                    "replica fetch refused"
                );
                match code {
                    error_codes::FETCH_SESSION_ID_NOT_FOUND => session.forget(),
                    _ => session.reset(),
                }
                return Ok(matches!(
                    code,
                    error_codes::FETCH_SESSION_ID_NOT_FOUND
                        | error_codes::INVALID_FETCH_SESSION_EPOCH
                        | error_codes::FETCH_SESSION_TOPIC_ID_ERROR
                ));
            }
        }
        let now_ms = crate::storage::now_ms();
        // An incremental answer naming no partition is the leader's "no
        // news" after its wait: fetch again at once, as after an empty full
        // answer. Only answers whose partitions all failed back off.
        let mut progressed = response
            .responses
            .iter()
            .all(|topic| topic.partitions.is_empty());
        let mut syncs = Vec::new();
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for answer in topic.partitions {
                let Some(partition) = shard.partitions.get(&name, answer.partition_index) else {
                    continue;
                };
                match answer.error_code {
                    error_codes::NONE => {}
                    error_codes::OFFSET_OUT_OF_RANGE => {
                        tracing::warn!(topic = %name, partition = answer.partition_index, "follower fetch out of range; truncating again");
                        self.mark_untruncated(&partition.key);
                        continue;
                    }
                    code => {
                        tracing::debug!(topic = %name, partition = answer.partition_index, error = code, "replica fetch error");
                        continue;
                    }
                }
                progressed = true;
                let records = answer.records.unwrap_or_default();
                let whole = whole_batches(&records);
                if whole > 0 {
                    match partition
                        .append_as_follower(&records[..whole], now_ms)
                        .await
                    {
                        Ok(last) => {
                            if partition.log.syncs_every_append() {
                                syncs.push(partition.log.wait_durable(Offset(last)));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(topic = %name, partition = answer.partition_index, %error, "follower append failed; truncating again");
                            self.mark_untruncated(&partition.key);
                            continue;
                        }
                    }
                }
                partition.set_follower_high_watermark(answer.high_watermark);
            }
        }
        // The next fetch offset tells the leader what is on disk here.
        for sync in syncs {
            if let Err(error) = sync.await {
                tracing::error!(leader = self.leader, %error, "follower sync failed");
            }
        }
        Ok(progressed)
    }
}

/// The partitions to send, by topic (`to_send` is sorted, so a topic's
/// partitions are adjacent).
fn fetch_topics(to_send: &[(TopicPartition, FetchParams)]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (key, params) in to_send {
        let partition = FetchPartition::default()
            .with_partition(key.partition)
            .with_current_leader_epoch(params.current_leader_epoch)
            .with_fetch_offset(params.fetch_offset)
            .with_log_start_offset(params.log_start_offset)
            .with_partition_max_bytes(params.max_bytes);
        match topics.last_mut() {
            Some(topic) if topic.topic.0.as_str() == key.topic => topic.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(&key.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

fn forgotten_topics(to_forget: &[TopicPartition]) -> Vec<ForgottenTopic> {
    let mut topics: Vec<ForgottenTopic> = Vec::new();
    for key in to_forget {
        match topics.last_mut() {
            Some(topic) if topic.topic.0.as_str() == key.topic => {
                topic.partitions.push(key.partition)
            }
            _ => topics.push(
                ForgottenTopic::default()
                    .with_topic(topic_name(&key.topic))
                    .with_partitions(vec![key.partition]),
            ),
        }
    }
    topics
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Where this follower's log stops agreeing with the leader's: the end of
/// the leader's epoch `leader_epoch` (the greatest at or below ours), or
/// our own end of that epoch if ours ends sooner.
fn truncation_point(partition: &Partition, leader_epoch: i32, leader_end_offset: i64) -> i64 {
    let log_end = partition.log_end_offset();
    if leader_epoch < 0 || leader_end_offset < 0 {
        // The leader knows no epoch at or below ours: keep only what was
        // committed.
        return partition.stored_high_watermark().min(log_end);
    }
    let ours = partition
        .log
        .end_offset_for_epoch(leader_epoch)
        .map_or(log_end, |(_, end)| end.0);
    leader_end_offset.min(ours).min(log_end)
}

/// The length of the whole batches at the front of `records` (a fetch
/// answer may end with a partial batch when it hit a size limit).
fn whole_batches(records: &[u8]) -> usize {
    let mut position = 0;
    while let Some(header) = records
        .get(position..)
        .and_then(|rest| crate::storage::batch::BatchHeader::parse(rest).ok())
    {
        let next = position + header.total_bytes();
        if next > records.len() {
            break;
        }
        position = next;
    }
    position
}

/// The Kafka listener address of broker `leader` in the shard's image.
pub(crate) fn leader_address(shard: &Shard, leader: i32) -> Option<SocketAddr> {
    let image = shard.image();
    let broker = image.brokers.get(&leader)?;
    (broker.host.as_str(), broker.port)
        .to_socket_addrs()
        .ok()?
        .next()
}
