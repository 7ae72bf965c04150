//! The coordinator of one shard at run time: the [`GroupManager`] of the
//! groups this shard coordinates, the requests parked in it, the clock and
//! the offsets log.
//!
//! Lives in a thread-local on each shard that coordinates a group, made on
//! first use ([`current`]); handlers reach it after hopping to the group's
//! coordinator shard. A glommio timer ticks the manager's clock
//! ([`TICK_INTERVAL_MS`]) and expires offsets
//! (`offsets.retention.check.interval.ms`). It must not be used from
//! another shard, and it keeps no state of its own beyond parked replies:
//! every rule lives in the manager.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalSender};

use super::errors;
use super::manager::{
    CommitRequest, Completion, FetchedOffsets, GroupConfig, GroupDescription, GroupManager,
    JoinRequest, JoinResponse, LeavingMember, ListedGroup, Outcome, SyncRequest, SyncResponse,
};
use super::storage_log::PartitionOffsetsLog;
use super::store::OffsetsLog;

/// How often the clock of the groups moves: the precision of session,
/// rebalance and initial-delay timeouts.
pub const TICK_INTERVAL_MS: u64 = 25;

/// Wall-clock milliseconds since the Unix epoch (commit timestamps are
/// wall-clock in Kafka's records).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Waiters<T> = RefCell<HashMap<(String, String), Vec<LocalSender<T>>>>;

pub struct Coordinator {
    manager: RefCell<GroupManager>,
    /// Holds no permits until the shard's offsets partitions are replayed;
    /// every operation waits for it (Kafka answers
    /// COORDINATOR_LOAD_IN_PROGRESS instead; waiting is simpler for
    /// clients and loading is short).
    loaded: glommio::sync::Semaphore,
    log: Rc<dyn OffsetsLog>,
    join_waiters: Waiters<JoinResponse>,
    sync_waiters: Waiters<SyncResponse>,
}

thread_local! {
    static COORDINATOR: OnceCell<Rc<Coordinator>> = const { OnceCell::new() };
}

/// Permits [`Coordinator::loaded`] gets once loading is done: more than
/// operations could ever wait at once.
const LOADED_PERMITS: u64 = 1 << 40;

/// This shard's coordinator, made on first use: it replays the offsets
/// partitions this shard owns, then starts its timers.
pub fn current() -> Rc<Coordinator> {
    COORDINATOR.with(|cell| {
        cell.get_or_init(|| {
            let shard = crate::shard::current();
            let config = GroupConfig::from_broker(&shard.config);
            let check_ms = shard.config.offsets_retention_check_interval_ms;
            let owned: Vec<i32> = (0..config.offsets_partitions)
                .filter(|p| shard.partition_owner(super::OFFSETS_TOPIC, *p) == shard.id())
                .collect();
            let coordinator = Rc::new(Coordinator::new(config, Rc::new(PartitionOffsetsLog)));
            let loading = coordinator.clone();
            glommio::spawn_local(async move {
                match loading.load(&owned).await {
                    Ok(count) => tracing::info!(
                        shard = %shard.id(),
                        partitions = owned.len(),
                        records = count,
                        "group coordinator loaded"
                    ),
                    Err(error) => tracing::error!(
                        shard = %shard.id(),
                        %error,
                        "group coordinator could not load __consumer_offsets; starting without it"
                    ),
                }
                loading.loaded.signal(LOADED_PERMITS);
                loading.start_timers(check_ms);
            })
            .detach();
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
    /// The groups for the metrics endpoint, read without waiting: before
    /// the load completes this is what is loaded so far.
    pub fn metrics(&self) -> Vec<GroupMetrics> {
        self.manager
            .borrow()
            .groups()
            .map(|group| GroupMetrics {
                group_id: group.group_id.clone(),
                state: group.state.name(),
                members: group.members.len() as u64,
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

    pub fn new(config: GroupConfig, log: Rc<dyn OffsetsLog>) -> Coordinator {
        Coordinator {
            manager: RefCell::new(GroupManager::new(config)),
            loaded: glommio::sync::Semaphore::new(0),
            log,
            join_waiters: RefCell::new(HashMap::new()),
            sync_waiters: RefCell::new(HashMap::new()),
        }
    }

    fn start_timers(self: Rc<Self>, retention_check_interval_ms: u64) {
        let ticking = self.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
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

    /// Waits until the coordinator has loaded.
    async fn ready(&self) {
        let _ = self.loaded.acquire(1).await;
        self.loaded.signal(1);
    }

    /// Replays the records of the offsets partitions this shard owns.
    pub async fn load(&self, partitions: &[i32]) -> Result<usize, String> {
        let mut count = 0;
        for partition in partitions {
            for record in self.log.read(*partition).await? {
                let value = record.value.as_deref();
                self.manager
                    .borrow_mut()
                    .replay(&record.key, value, now_ms());
                count += 1;
            }
        }
        Ok(count)
    }

    /// Carries out what the manager produced: appends its records, then
    /// answers parked requests.
    async fn flush(&self) -> Result<(), String> {
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
        self.ready().await;
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
        self.ready().await;
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
        self.ready().await;
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
        self.ready().await;
        let codes = self.manager.borrow_mut().leave(group_id, leaving, now_ms());
        let _ = self.flush().await;
        codes
    }

    pub async fn commit(&self, request: CommitRequest) -> Vec<Vec<i16>> {
        self.ready().await;
        let mut codes = self.manager.borrow_mut().commit(&request, now_ms());
        if self.flush().await.is_err() {
            for code in codes.iter_mut().flatten() {
                if *code == errors::NONE {
                    *code = errors::KAFKA_STORAGE_ERROR;
                }
            }
        }
        codes
    }

    pub async fn fetch(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> FetchedOffsets {
        self.ready().await;
        self.manager.borrow().fetch(group_id, topics)
    }

    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<Vec<i16>>, i16> {
        self.ready().await;
        let outcome = self.manager.borrow_mut().delete_offsets(group_id, topics);
        match self.flush().await {
            Ok(()) => outcome,
            Err(_) => Err(errors::KAFKA_STORAGE_ERROR),
        }
    }

    pub async fn list(&self, states_filter: &[String]) -> Vec<ListedGroup> {
        self.ready().await;
        self.manager.borrow().list(states_filter)
    }

    pub async fn describe(&self, group_id: &str) -> GroupDescription {
        self.ready().await;
        self.manager.borrow().describe(group_id)
    }

    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<i16> {
        self.ready().await;
        let codes: Vec<i16> = group_ids
            .iter()
            .map(|id| self.manager.borrow_mut().delete_group(id))
            .collect();
        match self.flush().await {
            Ok(()) => codes,
            Err(_) => vec![errors::KAFKA_STORAGE_ERROR; codes.len()],
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
    flush: impl std::future::Future<Output = Result<(), String>>,
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

    fn coordinator() -> Rc<Coordinator> {
        let config = GroupConfig {
            offsets_partitions: 50,
            initial_rebalance_delay_ms: 0,
            min_session_timeout_ms: 1,
            max_session_timeout_ms: 300_000,
            max_size: 10,
            offsets_retention_ms: 60_000,
        };
        Rc::new(Coordinator::new(config, Rc::new(MemoryLog::default())))
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

    #[test]
    fn parked_join_and_sync_are_answered_and_records_reach_the_log() {
        run(|| async {
            let coordinator = coordinator();
            // Requests wait for the load.
            let early = glommio::spawn_local({
                let coordinator = coordinator.clone();
                async move { coordinator.join(join_request("")).await }
            });
            glommio::yield_if_needed().await;
            coordinator.loaded.signal(LOADED_PERMITS);
            // The join phase of a first rebalance ends at a tick.
            let ticking = coordinator.clone();
            let ticker = glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    ticking.manager.borrow_mut().tick(now_ms());
                    let _ = ticking.flush().await;
                }
            });
            let joined = early.await;
            assert_eq!(joined.error_code, errors::NONE);
            assert_eq!(joined.generation_id, 1);
            assert_eq!(joined.leader, joined.member_id);
            let sync = SyncRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"all"))],
            };
            let synced = coordinator.sync(sync).await;
            assert_eq!(&synced.assignment[..], b"all");
            let commit = CommitRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                retention_time_ms: -1,
                topics: vec![(
                    "t".into(),
                    vec![super::super::manager::PartitionCommit {
                        partition: 0,
                        offset: 3,
                        leader_epoch: -1,
                        metadata: None,
                    }],
                )],
            };
            assert_eq!(coordinator.commit(commit).await, vec![vec![errors::NONE]]);
            let partition = crate::coordinator::partition_for_group("g", 50);
            let logged = coordinator.log.read(partition).await.unwrap();
            assert_eq!(logged.len(), 2, "the group at sync, then the offset");
            // A fresh coordinator replays the same log into the same state.
            let replayed = Coordinator::new(
                coordinator.manager.borrow().config().clone(),
                coordinator.log.clone(),
            );
            assert_eq!(replayed.load(&[partition]).await, Ok(2));
            replayed.loaded.signal(LOADED_PERMITS);
            let fetched = replayed.fetch("g", None).await;
            assert_eq!(fetched[0].1[0].1.as_ref().map(|o| o.offset), Some(3));
            assert_eq!(replayed.describe("g").await.members.len(), 1);
            drop(ticker);
        });
    }
}
