//! Group commit: one `fdatasync` per dirty segment file covers every batch
//! appended on the shard since the previous round.
//!
//! Owns: the set of logs with unsynced appends and the flusher task that
//! syncs them under Kafka's `flush.messages` / `flush.ms` policy and then
//! wakes the durability waiters. One task per shard. While a round's syncs
//! are in flight, new appends accumulate for the next round: that is the
//! grouping. Must not hold any log borrow across an await.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures_lite::future;

use super::fault::{self, Fault, FaultPoint};
use super::log::LogInner;
use super::notify::{Completion, Signal};
use super::shard::ShardInner;
use crate::histogram::LatencyHistogram;

/// Counters of the group commit.
#[derive(Clone, Debug, Default)]
pub struct FlushStats {
    /// Rounds that synced at least one file.
    pub rounds: u64,
    /// `fdatasync` calls issued.
    pub syncs: u64,
    /// Records made durable.
    pub records: u64,
    /// Time of each round, from taking its logs to their last sync.
    pub round_latency: LatencyHistogram,
}

#[derive(Default)]
pub(crate) struct Flusher {
    dirty: RefCell<Vec<Rc<LogInner>>>,
    signal: Signal,
    stopped: Cell<bool>,
    stats: RefCell<FlushStats>,
}

impl Flusher {
    pub fn mark_dirty(&self, log: &Rc<LogInner>) {
        let mut dirty = self.dirty.borrow_mut();
        if !dirty.iter().any(|l| Rc::ptr_eq(l, log)) {
            dirty.push(log.clone());
        }
        drop(dirty);
        self.signal.notify();
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        self.signal.notify();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    pub fn stats(&self) -> FlushStats {
        self.stats.borrow().clone()
    }

    /// Removes and returns the logs due for a sync now; returns also how long
    /// until the next one is due.
    fn take_due(&self, now: Instant) -> (Vec<Rc<LogInner>>, Option<Duration>) {
        let mut due = Vec::new();
        let mut next_due: Option<Duration> = None;
        self.dirty
            .borrow_mut()
            .retain(|log| match log.sync_due_in(now) {
                None => false,
                Some(wait) if wait.is_zero() => {
                    due.push(log.clone());
                    false
                }
                Some(wait) => {
                    next_due = Some(next_due.map_or(wait, |n| n.min(wait)));
                    true
                }
            });
        (due, next_due)
    }
}

/// Sync rounds allowed in flight at once. A second round may start while
/// the first one's fdatasync runs: appends that arrived meanwhile do not
/// wait for it to finish before their own sync is issued.
const ROUNDS_IN_FLIGHT_MAX: usize = 2;

pub(crate) async fn run(shard: Weak<ShardInner>) {
    let mut next_due: Option<Duration> = None;
    let mut rounds: VecDeque<Completion> = VecDeque::new();
    loop {
        let Some(signal) = shard.upgrade().map(|s| s.flusher.signal.clone()) else {
            return;
        };
        match next_due {
            Some(wait) => {
                future::or(signal.wait(), glommio::timer::sleep(wait)).await;
            }
            None => signal.wait().await,
        }
        let Some(inner) = shard.upgrade() else { return };
        if inner.flusher.stopped.get() {
            return;
        }
        let (due, next) = inner.flusher.take_due(Instant::now());
        next_due = next;
        drop(inner);
        if due.is_empty() {
            continue;
        }
        rounds.retain(|round| round.outcome().is_none());
        while rounds.len() >= ROUNDS_IN_FLIGHT_MAX {
            let _ = rounds.pop_front().expect("a round").wait().await;
        }
        let shard = shard.clone();
        let done = Completion::default();
        rounds.push_back(done.clone());
        glommio::spawn_local(async move {
            let started = Instant::now();
            let stats = sync_round(due).await;
            let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            if let Some(inner) = shard.upgrade() {
                let mut total = inner.flusher.stats.borrow_mut();
                total.rounds += 1;
                total.syncs += stats.syncs;
                total.records += stats.records;
                total.round_latency.record_us(latency_us);
            }
            done.complete(Ok(()));
        })
        .detach();
    }
}

/// Writes out every due log's tail, waits for all writes, syncs each file
/// once (concurrently), then wakes the waiters.
async fn sync_round(due: Vec<Rc<LogInner>>) -> FlushStats {
    let jobs: Vec<_> = due
        .into_iter()
        .filter_map(|log| log.prepare_sync().map(|job| (log, job)))
        .collect();
    let mut tasks = Vec::with_capacity(jobs.len());
    for (_, job) in &jobs {
        let completions = job.completions.clone();
        let file = job.file.clone();
        tasks.push(glommio::spawn_local(async move {
            for completion in completions {
                completion.wait().await?;
            }
            if let Some(Fault::Eio) = fault::take(FaultPoint::SegmentSync) {
                return Err("injected EIO in fdatasync".to_string());
            }
            file.fdatasync()
                .await
                .map_err(|e| format!("fdatasync: {e}"))
        }));
    }
    let mut stats = FlushStats::default();
    for ((log, job), task) in jobs.into_iter().zip(tasks) {
        let outcome = task.await;
        stats.syncs += 1;
        stats.records += job.records;
        log.finish_sync(job.target, outcome);
    }
    stats
}
