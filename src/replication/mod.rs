//! Partition replication on one shard: the replica fetchers that copy the
//! partitions this shard follows from their leaders (`fetcher.rs`, over
//! `client.rs`), and the leader's upkeep: ISR changes asked of the
//! controller (AlterPartition) and high watermark checkpoints.
//!
//! Runs on every shard for the partitions it owns; replication traffic
//! stays on the owning shard at both ends (a follower's fetcher connects
//! from the owning shard; on the leader the request lands on whichever
//! shard accepted the connection and hops once to the owner, like a
//! client's fetch). Must not: decide leaders or the ISR (the controller
//! does, through the image).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::cluster::commands::AlterPartition;
use crate::partition::replication::Role;
use crate::partition::TopicPartition;
use crate::shard::{Shard, CONTROLLER_SHARD};

pub mod client;
pub mod fetcher;
pub mod session;

use fetcher::Fetcher;

/// How often leaders look at their followers' lag.
const ISR_CHECK_INTERVAL_MS: u64 = 500;
/// How long a leader waits after a refused ISR change before asking again.
const ALTER_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// How often changed high watermarks are checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` is 5000).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: u64 = 2_000;

/// This shard's replica fetchers, by leader broker.
#[derive(Default)]
pub struct ShardReplication {
    fetchers: RefCell<BTreeMap<i32, Rc<Fetcher>>>,
    checkpointed: RefCell<BTreeMap<TopicPartition, i64>>,
}

impl ShardReplication {
    /// Brings the fetchers in line with the roles of this shard's
    /// partitions (after every image).
    pub fn sync(&self, shard: &Rc<Shard>) {
        let mut wanted: BTreeMap<i32, BTreeMap<TopicPartition, i32>> = BTreeMap::new();
        for partition in shard.partitions.all() {
            if let Role::Follower {
                leader,
                leader_epoch,
            } = partition.role()
            {
                if leader >= 0 {
                    wanted
                        .entry(leader)
                        .or_default()
                        .insert(partition.key.clone(), leader_epoch);
                }
            }
        }
        let mut fetchers = self.fetchers.borrow_mut();
        for (leader, fetcher) in fetchers.iter() {
            if !wanted.contains_key(leader) {
                fetcher.set(BTreeMap::new());
            }
        }
        for (leader, partitions) in wanted {
            fetchers
                .entry(leader)
                .or_insert_with(|| Fetcher::spawn(shard.clone(), leader))
                .set(partitions);
        }
        fetchers.retain(|_, fetcher| {
            let keep = !fetcher.is_empty();
            if !keep {
                fetcher.stop();
            }
            keep
        });
    }

    /// Stops every fetcher (shutdown).
    pub fn stop(&self) {
        for fetcher in std::mem::take(&mut *self.fetchers.borrow_mut()).into_values() {
            fetcher.stop();
        }
    }

    /// The leader's upkeep, for the life of the shard: ISR changes and
    /// high watermark checkpoints.
    pub async fn run_upkeep(shard: Rc<Shard>) {
        let mut since_checkpoint_ms = 0;
        loop {
            glommio::timer::sleep(Duration::from_millis(ISR_CHECK_INTERVAL_MS)).await;
            check_isr(&shard).await;
            since_checkpoint_ms += ISR_CHECK_INTERVAL_MS;
            if since_checkpoint_ms >= HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS {
                since_checkpoint_ms = 0;
                shard.replication.checkpoint(&shard).await;
            }
        }
    }

    /// Writes the high watermarks that moved since the last checkpoint.
    pub async fn checkpoint(&self, shard: &Shard) {
        let mut changed: Vec<(PathBuf, i64)> = Vec::new();
        let mut keys = Vec::new();
        for partition in shard.partitions.all() {
            let value = partition.stored_high_watermark();
            if self.checkpointed.borrow().get(&partition.key) != Some(&value) {
                changed.push((partition.log.dir().to_path_buf(), value));
                keys.push((partition.key.clone(), value));
            }
        }
        if changed.is_empty() {
            return;
        }
        let outcome = glommio::executor()
            .spawn_blocking(move || crate::partition::write_high_watermarks(&changed))
            .await;
        match outcome {
            Ok(()) => self.checkpointed.borrow_mut().extend(keys),
            Err(error) => tracing::warn!(%error, "cannot checkpoint high watermarks"),
        }
    }
}

/// Asks the controller for the ISR changes this shard's leaders need.
async fn check_isr(shard: &Rc<Shard>) {
    let lag_max = Duration::from_millis(shard.config.replica_lag_time_max_ms);
    for partition in shard.partitions.all() {
        let Some(change) = partition.isr_change(lag_max) else {
            continue;
        };
        let request = AlterPartition {
            node_id: shard.config.node_id,
            topic: partition.key.topic.clone(),
            partition: partition.key.partition,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
        };
        tracing::info!(topic = %request.topic, partition = request.partition, isr = ?request.isr, "asking the controller to change the ISR");
        let partition = partition.clone();
        let outcome = shard
            .mesh
            .submit_to(CONTROLLER_SHARD, move || async move {
                let shard = crate::shard::current();
                match shard.controller() {
                    Some(controller) => controller.alter_partition(request).await,
                    None => Err(crate::protocol::error_codes::NOT_CONTROLLER),
                }
            })
            .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(code)) => {
                tracing::info!(topic = %partition.key.topic, partition = partition.key.partition, error = code, "ISR change refused");
                partition.isr_change_failed(ALTER_RETRY_BACKOFF);
            }
            Err(error) => {
                tracing::warn!(%error, "ISR change not sent");
                partition.isr_change_failed(ALTER_RETRY_BACKOFF);
            }
        }
    }
}
