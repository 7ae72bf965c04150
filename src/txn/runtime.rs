//! The transaction coordinator of one shard at run time: the
//! [`TxnManager`] of the ids this shard coordinates, the loads of its
//! `__transaction_state` partitions, the appends that make each step
//! durable before it is answered, the marker writers, and the cleanup
//! timer.
//!
//! Lives in a thread-local on each shard ([`current`]), started with the
//! shard ([`start`]) so that a restarted broker reloads its partitions and
//! finishes the transactions it had prepared without waiting for a client.
//! Leadership is followed by looking at the shard's image: before each
//! request for the partition ([`TxnCoordinator::admit`]) and on every
//! cleanup tick. It must not be used from another shard.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use super::errors;
use super::markers;
use super::state::{Answer, MarkerJob, Step, TxnConfig, TxnManager, TxnMetadata};
use super::TRANSACTION_STATE_TOPIC;
use crate::coordinator::storage_log;
use crate::coordinator::store::AppendError;

/// How long a request waits for its partition to load, and how often it
/// looks.
const LOAD_WAIT_MS: u64 = 10_000;
const LOAD_POLL_MS: u64 = 5;
/// How often the coordinator looks for `__transaction_state` partitions
/// gained or lost without a request.
const LEADERSHIP_CHECK_MS: u64 = 1_000;
/// How long after a failed marker write it is tried again: doubling from
/// the first to the last.
const MARKER_RETRY_MS: u64 = 100;
const MARKER_RETRY_MS_MAX: u64 = 2_000;

pub struct TxnCoordinator {
    manager: RefCell<TxnManager>,
    /// Loaded partitions and the leader epoch they were loaded at.
    loaded: RefCell<BTreeMap<i32, i32>>,
    loading: RefCell<BTreeSet<i32>>,
}

thread_local! {
    static TXN_COORDINATOR: OnceCell<Rc<TxnCoordinator>> = const { OnceCell::new() };
}

/// This shard's transaction coordinator, made (with its timer) on first use.
pub fn current() -> Rc<TxnCoordinator> {
    TXN_COORDINATOR.with(|cell| {
        cell.get_or_init(|| {
            let shard = crate::shard::current();
            let config = TxnConfig {
                log_partitions: shard.config.transaction_state_log_num_partitions,
                max_timeout_ms: shard.config.transaction_max_timeout_ms,
            };
            let coordinator = Rc::new(TxnCoordinator {
                manager: RefCell::new(TxnManager::new(config)),
                loaded: RefCell::new(BTreeMap::new()),
                loading: RefCell::new(BTreeSet::new()),
            });
            let interval_ms = shard.config.transaction_cleanup_interval_ms;
            coordinator.clone().start_timer(interval_ms);
            coordinator
        })
        .clone()
    })
}

/// Starts this shard's coordinator: called once per shard at start-up.
pub fn start() {
    let _ = current();
}

/// This node's leader epoch of `partition` of `__transaction_state`, if it
/// leads it.
fn led_epoch(partition: i32) -> Option<i32> {
    let shard = crate::shard::current();
    let image = shard.image();
    let state = image.topic(TRANSACTION_STATE_TOPIC)?.state(partition)?;
    (state.leader == shard.config.node_id).then_some(state.leader_epoch)
}

fn now_ms() -> i64 {
    crate::storage::now_ms()
}

impl TxnCoordinator {
    fn start_timer(self: Rc<Self>, interval_ms: u64) {
        glommio::spawn_local(async move {
            // A first pass soon after start: resume prepared transactions.
            glommio::timer::sleep(Duration::from_millis(500)).await;
            let mut since_cleanup_ms = 0;
            loop {
                // Leadership is followed every second (a partition gained
                // is loaded and its prepared transactions finished even if
                // no client asks); timeouts every cleanup interval.
                self.follow_leadership().await;
                if since_cleanup_ms >= interval_ms {
                    since_cleanup_ms = 0;
                    self.abort_expired();
                }
                let step_ms = LEADERSHIP_CHECK_MS.min(interval_ms.max(1));
                glommio::timer::sleep(Duration::from_millis(step_ms)).await;
                since_cleanup_ms += step_ms;
            }
        })
        .detach();
    }

    /// Fences and aborts the transactions open past their timeout.
    fn abort_expired(self: &Rc<Self>) {
        for step in self.manager.borrow_mut().expire(now_ms()) {
            tracing::info!("aborting a transaction past its timeout");
            let coordinator = self.clone();
            glommio::spawn_local(async move {
                let _ = coordinator.run_step(step).await;
            })
            .detach();
        }
    }

    /// Loads the partitions this shard owns and this node leads, and drops
    /// those it no longer leads.
    async fn follow_leadership(self: &Rc<Self>) {
        let shard = crate::shard::current();
        if shard.image().topic(TRANSACTION_STATE_TOPIC).is_none() {
            return;
        }
        let partitions = shard.config.transaction_state_log_num_partitions;
        for partition in 0..partitions {
            if shard.partition_owner(TRANSACTION_STATE_TOPIC, partition) != shard.id() {
                continue;
            }
            if let Err(code) = self.admit(partition).await {
                if code != errors::NOT_COORDINATOR {
                    tracing::debug!(partition, code, "transaction partition not loaded yet");
                }
            }
        }
    }

    /// Lets a request for `partition` in once this node leads it and has
    /// loaded it; NOT_COORDINATOR otherwise.
    pub async fn admit(self: &Rc<Self>, partition: i32) -> Result<(), i16> {
        for _ in 0..LOAD_WAIT_MS / LOAD_POLL_MS {
            let Some(epoch) = led_epoch(partition) else {
                if self.loaded.borrow_mut().remove(&partition).is_some() {
                    self.manager.borrow_mut().unload(partition);
                }
                return Err(errors::NOT_COORDINATOR);
            };
            if self.loaded.borrow().get(&partition) == Some(&epoch) {
                return Ok(());
            }
            if self.loading.borrow_mut().insert(partition) {
                let loaded = self.load(partition, epoch).await;
                self.loading.borrow_mut().remove(&partition);
                if let Err(error) = loaded {
                    tracing::warn!(partition, %error, "could not load {TRANSACTION_STATE_TOPIC}");
                    return Err(errors::COORDINATOR_NOT_AVAILABLE);
                }
                continue;
            }
            glommio::timer::sleep(Duration::from_millis(LOAD_POLL_MS)).await;
        }
        Err(errors::COORDINATOR_NOT_AVAILABLE)
    }

    async fn load(self: &Rc<Self>, partition: i32, epoch: i32) -> Result<(), String> {
        let records = storage_log::read_topic_partition(TRANSACTION_STATE_TOPIC, partition).await?;
        // `__transaction_state` is never written transactionally.
        let (count, resume) = self.manager.borrow_mut().load(partition, &records.records);
        self.loaded.borrow_mut().insert(partition, epoch);
        tracing::info!(
            partition,
            transactional_ids = count,
            resumed = resume.len(),
            "transaction coordinator loaded {TRANSACTION_STATE_TOPIC} partition"
        );
        for job in resume {
            self.spawn_markers(job);
        }
        Ok(())
    }

    /// Makes `step`'s record durable, settles it, and starts its markers.
    async fn run_step(self: &Rc<Self>, step: Step) -> Result<(), i16> {
        let Some(record) = step.record.clone() else {
            return Ok(());
        };
        let partition = record.partition;
        let appended =
            storage_log::append_committed_to(TRANSACTION_STATE_TOPIC, partition, vec![record])
                .await;
        self.manager.borrow_mut().settle(&step, appended.is_ok());
        match appended {
            Ok(()) => {
                if let Some(job) = step.markers {
                    self.spawn_markers(job);
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "could not append to {TRANSACTION_STATE_TOPIC}");
                Err(match error {
                    AppendError::NotLeader(_) => errors::NOT_COORDINATOR,
                    AppendError::Storage(_) => errors::COORDINATOR_NOT_AVAILABLE,
                })
            }
        }
    }

    /// Writes `job`'s markers until every partition has one (or the
    /// coordinator lost the partition), then completes the transaction.
    fn spawn_markers(self: &Rc<Self>, job: MarkerJob) {
        let coordinator = self.clone();
        glommio::spawn_local(async move {
            let shard = crate::shard::current();
            let state_partition = super::partition_for_txn(
                &job.transactional_id,
                shard.config.transaction_state_log_num_partitions,
            );
            let mut pending = job.clone();
            let mut retry_ms = MARKER_RETRY_MS;
            loop {
                let Some(epoch) = led_epoch(state_partition) else {
                    return;
                };
                pending.partitions = markers::write_all(&shard, &pending, epoch).await;
                if pending.partitions.is_empty() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(retry_ms)).await;
                retry_ms = (retry_ms * 2).min(MARKER_RETRY_MS_MAX);
            }
            let step = coordinator.manager.borrow_mut().complete(&job, now_ms());
            if let Err(code) = coordinator.run_step(step).await {
                tracing::warn!(code, "could not complete a transaction");
            }
        })
        .detach();
    }

    pub async fn init_producer_id(
        self: &Rc<Self>,
        transactional_id: &str,
        timeout_ms: i64,
        expected: Option<(i64, i16)>,
    ) -> Answer {
        let new_producer_id = if self.manager.borrow().needs_producer_id(transactional_id) {
            let shard = crate::shard::current();
            match crate::handlers::init_producer_id::allocate_producer_id(&shard).await {
                Ok(id) => Some(id),
                Err(error) => {
                    tracing::warn!(%error, "could not allocate a producer id");
                    return Err(errors::COORDINATOR_NOT_AVAILABLE);
                }
            }
        } else {
            None
        };
        let (answer, step) = self.manager.borrow_mut().init_producer_id(
            transactional_id,
            timeout_ms,
            expected,
            new_producer_id,
            now_ms(),
        );
        self.run_step(step).await?;
        answer
    }

    pub async fn add_partitions(
        self: &Rc<Self>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        let (answer, step) = self.manager.borrow_mut().add_partitions(
            transactional_id,
            producer_id,
            epoch,
            partitions,
            now_ms(),
        );
        answer?;
        self.run_step(step).await
    }

    pub async fn end_txn(
        self: &Rc<Self>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), i16> {
        let (answer, step) = self.manager.borrow_mut().end_txn(
            transactional_id,
            producer_id,
            epoch,
            commit,
            now_ms(),
        );
        answer?;
        self.run_step(step).await
    }

    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        self.manager
            .borrow()
            .verify(transactional_id, producer_id, epoch, partitions)
    }

    pub fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.manager.borrow().get(transactional_id).cloned()
    }

    /// Every id of the loaded partitions.
    pub fn list(&self) -> Vec<TxnMetadata> {
        self.manager.borrow().all().cloned().collect()
    }
}
