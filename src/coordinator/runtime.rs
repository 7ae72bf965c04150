//! The coordinator of one shard at run time: the [`GroupManager`] of the
//! groups this shard coordinates, the requests parked in it, the clock and
//! the offsets log.
//!
//! Lives in a thread-local on each shard that coordinates a group, made on
//! first use ([`current`]); handlers reach it after hopping to the group's
//! coordinator shard, and are let in by [`Coordinator::admit`]. A glommio
//! timer ticks the manager's clock ([`TICK_INTERVAL_MS`]) and expires
//! offsets (`offsets.retention.check.interval.ms`). It must not be used
//! from another shard, and it keeps no state of its own beyond parked
//! replies and the last leadership it saw: every rule lives in the manager.
//!
//! Leadership (issues 12/13): a broker coordinates the groups of exactly
//! the `__consumer_offsets` partitions it leads. The coordinator follows
//! the shard's metadata image by polling it ([`Coordinator::follow_leadership`]):
//! on every tick, and before admitting each request, it asks which offsets
//! partitions of this shard this node leads, at which leader epoch
//! ([`shard_leadership`], which looks again only when the image epoch
//! moved), and hands that to [`GroupManager::follow`]: partitions it no
//! longer leads (or leads at a new epoch) are resigned (groups dropped,
//! parked requests answered NOT_COORDINATOR), new ones are elected and
//! loaded from the local log by a spawned task. Polling rather than a hook
//! in `Shard::install_image`: the shard needs no knowledge of the
//! coordinator (no dependency cycle, no registration order at start-up),
//! a coordinator that does not exist yet has nothing to unload and
//! catches up on first use, and the check before each request means a
//! request never sees older leadership than the image it was routed by.
//! The cost is a comparison of two small maps per request and per 25 ms.
//! On a single node, the node leads every offsets partition from the
//! start, so the first request loads them all, as before clusters.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalSender};

use super::consumer_group::{TopicInfo, TopicSource};
use super::errors;
use super::manager::{
    validate_offset_fetch, CommitRequest, Completion, ConsumerGroupDescription, ConsumerHeartbeat,
    ConsumerHeartbeatResponse, FetchedOffsets, GroupConfig, GroupDescription, GroupError,
    GroupManager, JoinRequest, JoinResponse, LeavingMember, ListedGroup, Outcome, SyncRequest,
    SyncResponse,
};
use super::storage_log::PartitionOffsetsLog;
use super::store::{AppendError, OffsetsLog};
use super::OFFSETS_TOPIC;

/// How often the clock of the groups moves: the precision of session,
/// rebalance and initial-delay timeouts, and how late a change of
/// leadership is noticed when no request comes.
pub const TICK_INTERVAL_MS: u64 = 25;

/// How long a request waits for its group's partition to load before it
/// answers COORDINATOR_LOAD_IN_PROGRESS, and how often it looks.
const LOAD_WAIT_MS: u64 = 10_000;
const LOAD_POLL_MS: u64 = 5;

/// How long after a failed load its partition is tried again.
const LOAD_RETRY_MS: u64 = 1_000;

/// Wall-clock milliseconds since the Unix epoch (commit timestamps are
/// wall-clock in Kafka's records).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Waiters<T> = RefCell<HashMap<(String, String), Vec<LocalSender<T>>>>;

/// Which `__consumer_offsets` partitions this coordinator may hold that
/// its node leads now, each with its leader epoch; `None` when that cannot
/// have changed since the last call.
pub type Leadership = Box<dyn Fn() -> Option<BTreeMap<i32, i32>>>;

/// The topics consumer groups subscribe to.
pub type TopicLookup = Box<dyn TopicSource>;

/// The topics of this shard's metadata image.
struct ShardTopics;

impl TopicSource for ShardTopics {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        let shard = crate::shard::current();
        let image = shard.image();
        image.topic(name).map(|topic| TopicInfo {
            topic_id: topic.topic_id,
            partitions: topic.partitions,
        })
    }

    fn names(&self) -> Vec<String> {
        crate::shard::current()
            .image()
            .topics
            .keys()
            .cloned()
            .collect()
    }
}

pub fn shard_topics() -> TopicLookup {
    Box::new(ShardTopics)
}

pub struct Coordinator {
    manager: RefCell<GroupManager>,
    log: Rc<dyn OffsetsLog>,
    leadership: Leadership,
    topics: TopicLookup,
    /// What `leadership` said last.
    led: RefCell<BTreeMap<i32, i32>>,
    join_waiters: Waiters<JoinResponse>,
    sync_waiters: Waiters<SyncResponse>,
}

thread_local! {
    static COORDINATOR: OnceCell<Rc<Coordinator>> = const { OnceCell::new() };
}

/// This shard's coordinator, made on first use, with its timers running.
/// It loads the offsets partitions this node leads as it notices them.
pub fn current() -> Rc<Coordinator> {
    COORDINATOR.with(|cell| {
        cell.get_or_init(|| {
            let shard = crate::shard::current();
            let config = GroupConfig::from_broker(&shard.config);
            let check_ms = shard.config.offsets_retention_check_interval_ms;
            let log = Rc::new(PartitionOffsetsLog);
            let coordinator = Rc::new(Coordinator::new(
                config,
                log,
                shard_leadership(),
                shard_topics(),
            ));
            coordinator.clone().start_timers(check_ms);
            coordinator
        })
        .clone()
    })
}

/// This shard's coordinator if something already made it; never starts
/// one (a metrics scrape must not load `__consumer_offsets`).
pub fn existing() -> Option<Rc<Coordinator>> {
    COORDINATOR.with(|cell| cell.get().cloned())
}

/// The [`Leadership`] of this shard: the `__consumer_offsets` partitions it
/// owns ([`crate::shard::partition_owner`]) whose leader in the shard's
/// image is this node. Recomputed only when the image epoch moved.
pub fn shard_leadership() -> Leadership {
    let seen: Cell<Option<u64>> = Cell::new(None);
    Box::new(move || {
        let shard = crate::shard::current();
        let image = shard.image();
        if seen.get() == Some(image.epoch) {
            return None;
        }
        seen.set(Some(image.epoch));
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return Some(BTreeMap::new());
        };
        let node_id = shard.config.node_id;
        let led = (0..shard.config.offsets_topic_num_partitions)
            .filter(|partition| shard.partition_owner(OFFSETS_TOPIC, *partition) == shard.id())
            .filter_map(|partition| {
                let state = topic.state(partition)?;
                (state.leader == node_id).then_some((partition, state.leader_epoch))
            })
            .collect();
        Some(led)
    })
}

/// What the metrics report of one group.
#[derive(Clone, Debug)]
pub struct GroupMetrics {
    pub group_id: String,
    pub state: &'static str,
    pub members: u64,
    /// Committed offsets: topic, partition, offset.
    pub offsets: Vec<(String, i32, i64)>,
}

impl Coordinator {
    /// The groups for the metrics endpoint, read without waiting: the
    /// groups of the partitions loaded so far.
    pub fn metrics(&self) -> Vec<GroupMetrics> {
        self.manager
            .borrow()
            .groups()
            .map(|group| GroupMetrics {
                group_id: group.group_id.clone(),
                state: group.state_name(),
                members: group.member_count() as u64,
                offsets: group
                    .offsets
                    .iter()
                    .map(|((topic, partition), committed)| {
                        (topic.clone(), *partition, committed.offset)
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn new(
        config: GroupConfig,
        log: Rc<dyn OffsetsLog>,
        leadership: Leadership,
        topics: TopicLookup,
    ) -> Coordinator {
        Coordinator {
            manager: RefCell::new(GroupManager::new(config)),
            log,
            leadership,
            topics,
            led: RefCell::new(BTreeMap::new()),
            join_waiters: RefCell::new(HashMap::new()),
            sync_waiters: RefCell::new(HashMap::new()),
        }
    }

    fn start_timers(self: Rc<Self>, retention_check_interval_ms: u64) {
        let ticking = self.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
                ticking.follow_leadership();
                ticking.manager.borrow_mut().tick(now_ms());
                let _ = ticking.flush().await;
            }
        })
        .detach();
        glommio::spawn_local(async move {
            let interval = Duration::from_millis(retention_check_interval_ms.max(1));
            loop {
                glommio::timer::sleep(interval).await;
                self.manager.borrow_mut().expire_offsets(now_ms());
                let _ = self.flush().await;
            }
        })
        .detach();
    }

    /// Brings the groups in line with what this node leads (see the module
    /// docs): resigns partitions, elects new ones and starts their loads.
    pub fn follow_leadership(self: &Rc<Self>) {
        if let Some(led) = (self.leadership)() {
            *self.led.borrow_mut() = led;
        }
        let changes = self.manager.borrow_mut().follow(&self.led.borrow());
        for (partition, groups) in &changes.resigned {
            tracing::info!(
                partition,
                groups,
                "group coordinator resigned {OFFSETS_TOPIC} partition: groups unloaded"
            );
        }
        if !changes.resigned.is_empty() {
            // Parked requests of dropped groups learn NOT_COORDINATOR now.
            let flushing = self.clone();
            glommio::spawn_local(async move {
                let _ = flushing.flush().await;
            })
            .detach();
        }
        for (partition, leader_epoch) in changes.elected {
            let loading = self.clone();
            glommio::spawn_local(async move { loading.load(partition, leader_epoch).await })
                .detach();
        }
    }

    /// Reads `partition` and replays it into the manager (unless leadership
    /// moved meanwhile). A failed load is retried after [`LOAD_RETRY_MS`].
    async fn load(&self, partition: i32, leader_epoch: i32) {
        match self.log.read(partition).await {
            Ok(read) => {
                let mut manager = self.manager.borrow_mut();
                let loaded =
                    manager.complete_load(partition, leader_epoch, &read.records, now_ms());
                if loaded.is_some() {
                    manager.restore_txn_offsets(&read.pending, now_ms());
                }
                drop(manager);
                if let Some(count) = loaded {
                    tracing::info!(
                        partition,
                        leader_epoch,
                        records = count,
                        "group coordinator loaded {OFFSETS_TOPIC} partition"
                    );
                }
            }
            Err(error) => {
                tracing::error!(
                    partition,
                    leader_epoch,
                    %error,
                    "group coordinator could not load {OFFSETS_TOPIC} partition; trying again"
                );
                glommio::timer::sleep(Duration::from_millis(LOAD_RETRY_MS)).await;
                self.manager
                    .borrow_mut()
                    .abandon_load(partition, leader_epoch);
            }
        }
    }

    /// Lets a request for `group_id` in: Ok once this node leads the
    /// group's partition and has loaded it (waiting up to [`LOAD_WAIT_MS`]
    /// for a load); else NOT_COORDINATOR (the client looks for the
    /// coordinator again) or COORDINATOR_LOAD_IN_PROGRESS. The caller must
    /// go on to the operation without awaiting in between.
    pub async fn admit(self: &Rc<Self>, group_id: &str) -> Result<(), i16> {
        for _ in 0..LOAD_WAIT_MS / LOAD_POLL_MS {
            self.follow_leadership();
            match self.manager.borrow().admit(group_id) {
                Err(errors::COORDINATOR_LOAD_IN_PROGRESS) => {}
                verdict => return verdict,
            }
            glommio::timer::sleep(Duration::from_millis(LOAD_POLL_MS)).await;
        }
        self.follow_leadership();
        self.manager.borrow().admit(group_id)
    }

    /// Carries out what the manager produced: appends its records, then
    /// answers parked requests.
    async fn flush(&self) -> Result<(), AppendError> {
        let outbox = self.manager.borrow_mut().take_outbox();
        let appended = if outbox.records.is_empty() {
            Ok(())
        } else {
            self.log.append(outbox.records).await
        };
        if let Err(error) = &appended {
            tracing::error!(%error, "could not append to __consumer_offsets");
        }
        for completion in outbox.completions {
            match completion {
                Completion::Join {
                    group_id,
                    member_id,
                    response,
                } => deliver(&self.join_waiters, group_id, member_id, response),
                Completion::Sync {
                    group_id,
                    member_id,
                    response,
                } => deliver(&self.sync_waiters, group_id, member_id, response),
            }
        }
        appended
    }

    pub async fn join(&self, request: JoinRequest) -> JoinResponse {
        let group_id = request.group_id.clone();
        let outcome = self.manager.borrow_mut().join(request, now_ms());
        park(
            &self.join_waiters,
            self.flush(),
            group_id,
            outcome,
            |member| JoinResponse::error(member, errors::UNKNOWN_MEMBER_ID),
        )
        .await
    }

    pub async fn sync(&self, request: SyncRequest) -> SyncResponse {
        let group_id = request.group_id.clone();
        let outcome = self.manager.borrow_mut().sync(request, now_ms());
        park(&self.sync_waiters, self.flush(), group_id, outcome, |_| {
            SyncResponse::error(errors::UNKNOWN_MEMBER_ID)
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let code = self.manager.borrow_mut().heartbeat(
            group_id,
            member_id,
            group_instance_id,
            generation_id,
            now_ms(),
        );
        let _ = self.flush().await;
        code
    }

    pub async fn leave(&self, group_id: &str, leaving: &[LeavingMember]) -> Vec<i16> {
        let codes = self.manager.borrow_mut().leave(group_id, leaving, now_ms());
        let _ = self.flush().await;
        codes
    }

    pub async fn commit(&self, request: CommitRequest) -> Vec<Vec<i16>> {
        let mut codes = self.manager.borrow_mut().commit(&request, now_ms());
        if let Err(error) = self.flush().await {
            for code in codes.iter_mut().flatten() {
                if *code == errors::NONE {
                    *code = error.code();
                }
            }
        }
        codes
    }

    /// TxnOffsetCommit: the offsets are appended as a transactional batch
    /// of the producer and wait for the transaction's marker.
    pub async fn txn_commit(&self, request: CommitRequest, producer: (i64, i16)) -> Vec<Vec<i16>> {
        let (mut codes, records) =
            self.manager
                .borrow_mut()
                .txn_commit(&request, producer.0, now_ms());
        let _ = self.flush().await;
        if records.is_empty() {
            return codes;
        }
        if let Err(error) = self.log.append_transactional(records, producer).await {
            tracing::warn!(%error, "could not append transactional offsets");
            for code in codes.iter_mut().flatten() {
                if *code == errors::NONE {
                    *code = error.code();
                }
            }
        }
        codes
    }

    /// A transaction marker reached `partition` of `__consumer_offsets` (it
    /// is in the log): the transaction's offsets are committed or dropped.
    pub async fn complete_txn_offsets(
        &self,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), AppendError> {
        self.manager
            .borrow_mut()
            .complete_txn_offsets(partition, producer_id, commit, now_ms());
        self.flush().await
    }

    /// Partitions of `group_id` whose transactional offsets are pending.
    pub fn unstable_offsets(&self, group_id: &str) -> std::collections::BTreeSet<(String, i32)> {
        self.manager.borrow().unstable_offsets(group_id)
    }

    pub async fn fetch(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> FetchedOffsets {
        self.manager.borrow().fetch(group_id, topics)
    }

    /// OffsetFetch v9 of a consumer group member: its epoch is checked
    /// first (the error code, or the offsets).
    pub async fn member_fetch(
        &self,
        group_id: &str,
        member: (Option<&str>, i32),
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<FetchedOffsets, i16> {
        let manager = self.manager.borrow();
        match validate_offset_fetch(manager.group(group_id), member.0, member.1) {
            errors::NONE => Ok(manager.fetch(group_id, topics)),
            code => Err(code),
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        request: ConsumerHeartbeat,
        member_id_required: bool,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let outcome = self.manager.borrow_mut().consumer_heartbeat(
            request,
            member_id_required,
            self.topics.as_ref(),
            now_ms(),
        );
        let _ = self.flush().await;
        outcome
    }

    pub async fn consumer_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        self.manager.borrow().consumer_describe(group_id)
    }

    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<Vec<i16>>, i16> {
        let outcome = self.manager.borrow_mut().delete_offsets(group_id, topics);
        match self.flush().await {
            Ok(()) => outcome,
            Err(error) => Err(error.code()),
        }
    }

    /// The groups of this shard, once no partition is loading (waiting up
    /// to [`LOAD_WAIT_MS`]; then COORDINATOR_LOAD_IN_PROGRESS, as Kafka
    /// answers while any partition loads).
    pub async fn list(self: &Rc<Self>, states_filter: &[String]) -> Result<Vec<ListedGroup>, i16> {
        for _ in 0..LOAD_WAIT_MS / LOAD_POLL_MS {
            self.follow_leadership();
            if !self.manager.borrow().is_loading() {
                return Ok(self.manager.borrow().list(states_filter));
            }
            glommio::timer::sleep(Duration::from_millis(LOAD_POLL_MS)).await;
        }
        Err(errors::COORDINATOR_LOAD_IN_PROGRESS)
    }

    pub async fn describe(&self, group_id: &str) -> GroupDescription {
        self.manager.borrow().describe(group_id)
    }

    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<i16> {
        let codes: Vec<i16> = group_ids
            .iter()
            .map(|id| self.manager.borrow_mut().delete_group(id))
            .collect();
        match self.flush().await {
            Ok(()) => codes,
            Err(error) => vec![error.code(); codes.len()],
        }
    }
}

fn deliver<T: Clone>(waiters: &Waiters<T>, group_id: String, member_id: String, response: T) {
    let parked = waiters.borrow_mut().remove(&(group_id, member_id));
    for sender in parked.into_iter().flatten() {
        // The asker may have gone (connection closed): nothing to do.
        let _ = sender.try_send(response.clone());
    }
}

/// Answers now, or parks the request until its completion arrives. The
/// waiter is registered before the outbox is flushed, because the request
/// may itself have completed the phase it waits for.
async fn park<T: Clone>(
    waiters: &Waiters<T>,
    flush: impl std::future::Future<Output = Result<(), AppendError>>,
    group_id: String,
    outcome: Outcome<T>,
    gone: impl Fn(&str) -> T,
) -> T {
    match outcome {
        Outcome::Now(response) => {
            let _ = flush.await;
            response
        }
        Outcome::Parked { member_id } => {
            let (sender, receiver) = local_channel::new_bounded(1);
            waiters
                .borrow_mut()
                .entry((group_id, member_id.clone()))
                .or_default()
                .push(sender);
            let _ = flush.await;
            match receiver.recv().await {
                Some(response) => response,
                None => gone(&member_id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::coordinator::group::Protocol;
    use crate::coordinator::store::MemoryLog;

    const PARTITIONS: i32 = 50;

    fn run<F: std::future::Future<Output = ()> + 'static>(
        test: impl FnOnce() -> F + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .ring_depth(128)
            .spawn(move || async move { test().await })
            .expect("executor")
            .join()
            .expect("test ran");
    }

    /// What the test says this node leads.
    #[derive(Clone, Default)]
    struct Led(Rc<RefCell<BTreeMap<i32, i32>>>);

    impl Led {
        /// Every partition at `leader_epoch`, or none.
        fn set(&self, leader_epoch: Option<i32>) {
            *self.0.borrow_mut() = match leader_epoch {
                Some(epoch) => (0..PARTITIONS).map(|p| (p, epoch)).collect(),
                None => BTreeMap::new(),
            };
        }

        fn view(&self) -> Leadership {
            let led = self.0.clone();
            Box::new(move || Some(led.borrow().clone()))
        }
    }

    fn coordinator(log: Rc<dyn OffsetsLog>, led: &Led) -> Rc<Coordinator> {
        let config = GroupConfig {
            offsets_partitions: PARTITIONS,
            initial_rebalance_delay_ms: 0,
            min_session_timeout_ms: 1,
            max_session_timeout_ms: 300_000,
            max_size: 10,
            offsets_retention_ms: 60_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        };
        Rc::new(Coordinator::new(
            config,
            log,
            led.view(),
            Box::new(crate::coordinator::consumer_group::TopicMetadata::new()),
        ))
    }

    /// The coordinator's tick, faster.
    fn ticking(coordinator: &Rc<Coordinator>) -> glommio::Task<()> {
        let ticking = coordinator.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                ticking.follow_leadership();
                ticking.manager.borrow_mut().tick(now_ms());
                let _ = ticking.flush().await;
            }
        })
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"m"),
            }],
            require_known_member_id: false,
        }
    }

    fn sync_request(member_id: &str) -> SyncRequest {
        SyncRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(member_id.into(), Bytes::from_static(b"all"))],
        }
    }

    /// One member joined, synced and committed `offset`: its id.
    async fn stable_member(coordinator: &Rc<Coordinator>, offset: i64) -> String {
        assert_eq!(coordinator.admit("g").await, Ok(()));
        // The join phase of a first rebalance ends at a tick.
        let joined = coordinator.join(join_request("")).await;
        assert_eq!(joined.error_code, errors::NONE);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        let synced = coordinator.sync(sync_request(&joined.member_id)).await;
        assert_eq!(&synced.assignment[..], b"all");
        let commit = CommitRequest::one("g", &joined.member_id, 1, offset, None);
        assert_eq!(coordinator.commit(commit).await, vec![vec![errors::NONE]]);
        joined.member_id
    }

    #[test]
    fn parked_join_and_sync_are_answered_and_records_reach_the_log() {
        run(|| async {
            let led = Led::default();
            let log: Rc<dyn OffsetsLog> = Rc::new(MemoryLog::default());
            let coordinator = coordinator(log.clone(), &led);
            // Nothing led: not the coordinator.
            assert_eq!(coordinator.admit("g").await, Err(errors::NOT_COORDINATOR));
            led.set(Some(0));
            let ticker = ticking(&coordinator);
            stable_member(&coordinator, 3).await;
            let partition = crate::coordinator::partition_for_group("g", PARTITIONS);
            let logged = log.read(partition).await.unwrap();
            assert_eq!(
                logged.records.len(),
                2,
                "the group at sync, then the offset"
            );
            // A fresh coordinator loads the same log into the same state.
            let replayed = self::coordinator(log, &led);
            assert_eq!(replayed.admit("g").await, Ok(()));
            let fetched = replayed.fetch("g", None).await;
            assert_eq!(fetched[0].1[0].1.as_ref().map(|o| o.offset), Some(3));
            assert_eq!(replayed.describe("g").await.members.len(), 1);
            assert_eq!(replayed.list(&[]).await.map(|groups| groups.len()), Ok(1));
            drop(ticker);
        });
    }

    #[test]
    fn losing_leadership_unloads_and_regaining_it_reloads() {
        run(|| async {
            let led = Led::default();
            led.set(Some(0));
            let log: Rc<dyn OffsetsLog> = Rc::new(MemoryLog::default());
            let coordinator = coordinator(log, &led);
            let ticker = ticking(&coordinator);
            let first = stable_member(&coordinator, 7).await;
            // A second member starts a rebalance and waits in JoinGroup.
            let parked = glommio::spawn_local({
                let coordinator = coordinator.clone();
                async move { coordinator.join(join_request("")).await }
            });
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(coordinator.metrics()[0].state, "PreparingRebalance");
            // Leadership moves away: the waiter learns it at the next tick.
            led.set(None);
            let answer = parked.await;
            assert_eq!(answer.error_code, errors::NOT_COORDINATOR);
            assert!(coordinator.metrics().is_empty(), "groups unloaded");
            assert_eq!(coordinator.admit("g").await, Err(errors::NOT_COORDINATOR));
            assert_eq!(coordinator.list(&[]).await, Ok(Vec::new()));
            // It comes back: the group is read again from the log.
            led.set(Some(1));
            assert_eq!(coordinator.admit("g").await, Ok(()));
            let fetched = coordinator.fetch("g", None).await;
            assert_eq!(fetched[0].1[0].1.as_ref().map(|o| o.offset), Some(7));
            let described = coordinator.describe("g").await;
            assert_eq!(described.members.len(), 1);
            assert_eq!(described.members[0].member_id, first);
            drop(ticker);
        });
    }
}
