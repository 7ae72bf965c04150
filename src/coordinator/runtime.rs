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

impl Coordinator {
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
