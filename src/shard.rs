//! The state one shard owns, and the way to reach it from code running on
//! that shard.
//!
//! Each executor thread holds exactly one [`Shard`] in a thread-local, set
//! once at start-up. Work that arrives over the mesh finds its shard with
//! [`current`]; nothing else crosses threads. A shard view: the image is a
//! read-only copy of node state, the partition table and the controller are
//! this shard's own.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use sluice_shards::{shard_for_hash, Mesh, ShardId};

use crate::cluster::controller::Controller;
use crate::cluster::metadata::{MetadataDelta, MetadataImage};
use crate::config::BrokerConfig;
use crate::fetch_session::{self, SessionCache};
use crate::metrics::ShardMetrics;
use crate::partition::PartitionTable;
use crate::replication::ShardReplication;
use crate::security::quota::QuotaTracker;
use crate::storage::{ShardStorage, StorageConfig};

/// The shard that owns node metadata (the controller) and its file.
pub const CONTROLLER_SHARD: ShardId = ShardId(0);

pub struct Shard {
    pub mesh: Mesh,
    /// The configuration from the file and flags.
    pub config: Arc<BrokerConfig>,
    /// `config` with the image's runtime broker configs on top.
    effective_config: RefCell<Arc<BrokerConfig>>,
    image: RefCell<Arc<MetadataImage>>,
    pub partitions: PartitionTable,
    /// The replica fetchers of the partitions this shard follows.
    pub replication: ShardReplication,
    pub storage: ShardStorage,
    pub metrics: ShardMetrics,
    /// The fetch sessions (KIP-227) of the connections this shard accepted.
    pub fetch_sessions: RefCell<SessionCache>,
    /// Client byte-rate quotas of the connections this shard accepted.
    pub produce_quota: RefCell<QuotaTracker>,
    pub fetch_quota: RefCell<QuotaTracker>,
    /// Set on [`CONTROLLER_SHARD`] only, once the quorum is open.
    controller: OnceCell<Rc<Controller>>,
}

thread_local! {
    static CURRENT: OnceCell<Rc<Shard>> = const { OnceCell::new() };
}

/// This thread's shard. Calling it off a shard thread is a programmer error.
pub fn current() -> Rc<Shard> {
    CURRENT.with(|cell| cell.get().cloned().expect("called on a shard thread"))
}

impl Shard {
    /// Builds this thread's shard and makes it [`current`].
    pub fn install(mesh: Mesh, config: Arc<BrokerConfig>, image: Arc<MetadataImage>) -> Rc<Shard> {
        let mut storage_config = StorageConfig::new(config.data_dir.clone());
        storage_config.read_cache_bytes = config.cache_bytes;
        storage_config.read_ahead_bytes = config.read_ahead_bytes;
        storage_config.retention_check_interval_ms = config.log.retention_check_interval_ms;
        storage_config.cleaner_backoff_ms = config.log.cleaner_backoff_ms;
        storage_config.cleaner_io_bytes_per_second = config.log.cleaner_io_bytes_per_second;
        let (index, nr_shards) = (mesh.shard_id().0, mesh.nr_shards());
        let fetch_sessions = SessionCache::new(
            fetch_session::slots_for_shard(
                config.max_incremental_fetch_session_cache_slots,
                index,
                nr_shards,
            ),
            config.min_incremental_fetch_session_eviction_ms,
            fetch_session::session_id_range(index, nr_shards),
            uuid::Uuid::new_v4().as_u64_pair().0,
        );
        let shard = Rc::new(Shard {
            fetch_sessions: RefCell::new(fetch_sessions),
            produce_quota: RefCell::new(QuotaTracker::new(config.quota_producer_default)),
            fetch_quota: RefCell::new(QuotaTracker::new(config.quota_consumer_default)),
            partitions: PartitionTable::new(config.data_dir.clone(), mesh.shard_id()),
            replication: ShardReplication::default(),
            storage: ShardStorage::new(storage_config),
            metrics: ShardMetrics::default(),
            effective_config: RefCell::new(Arc::new(config.with_dynamic(&image.broker_configs))),
            mesh,
            config,
            image: RefCell::new(image),
            controller: OnceCell::new(),
        });
        CURRENT.with(|cell| {
            assert!(cell.set(shard.clone()).is_ok(), "one shard per thread");
        });
        shard
    }

    pub fn id(&self) -> ShardId {
        self.mesh.shard_id()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// The configuration in force: file and flags, then runtime changes.
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        self.effective_config.borrow().clone()
    }

    /// The controller, if this is the controller shard.
    pub fn controller(&self) -> Option<&Controller> {
        self.controller.get().map(|controller| controller.as_ref())
    }

    /// Installs the controller (shard 0, at start-up).
    pub fn set_controller(&self, controller: Rc<Controller>) {
        assert_eq!(self.id(), CONTROLLER_SHARD);
        assert!(self.controller.set(controller).is_ok(), "one controller");
    }

    /// Whether this run of the broker is registered and not fenced in the
    /// image this shard has. A restarted broker replays its metadata log
    /// first, whose image still shows its previous run (and leaderships that
    /// may have moved since): it must not serve on that.
    pub fn is_live(&self, incarnation: uuid::Uuid) -> bool {
        let image = self.image.borrow();
        image
            .brokers
            .get(&self.config.node_id)
            .is_some_and(|broker| broker.incarnation == incarnation && !broker.fenced)
    }

    /// Replaces the image with a newer one and brings this shard's
    /// partitions of the topics `delta` names in line with it. Older images
    /// are ignored, so messages that arrive out of order do no harm.
    pub async fn install_image(
        &self,
        image: Arc<MetadataImage>,
        delta: MetadataDelta,
    ) -> Result<(), String> {
        if image.epoch < self.image.borrow().epoch {
            return Ok(());
        }
        let previous = std::mem::replace(&mut *self.image.borrow_mut(), image.clone());
        if previous.broker_configs != image.broker_configs {
            let effective = Arc::new(self.config.with_dynamic(&image.broker_configs));
            *self.effective_config.borrow_mut() = effective;
        }
        if !delta.full && delta.topics.is_empty() && !delta.broker_configs_changed {
            return Ok(());
        }
        let config = self.effective_config();
        let reconciled = self
            .partitions
            .reconcile(
                &image,
                &delta,
                self.mesh.nr_shards(),
                &self.storage,
                &config,
            )
            .await;
        self.replication.sync(&current());
        reconciled
    }

    /// The shard that owns `partition` of `topic`.
    pub fn partition_owner(&self, topic: &str, partition: i32) -> ShardId {
        partition_owner(topic, partition, self.mesh.nr_shards())
    }
}

/// The one placement function: a topic's partitions go round-robin over the
/// shards, starting at a shard chosen by the topic name's CRC-32C, so that
/// small topics do not all start on shard 0.
pub fn partition_owner(topic: &str, partition: i32, nr_shards: usize) -> ShardId {
    let start = u64::from(crc32c::crc32c(topic.as_bytes()));
    shard_for_hash(start + partition.max(0) as u64, nr_shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_over_shards() {
        let owners: Vec<_> = (0..4).map(|p| partition_owner("orders", p, 2)).collect();
        assert_ne!(owners[0], owners[1]);
        assert_eq!(owners[0], owners[2]);
        assert_eq!(partition_owner("orders", 3, 1), ShardId(0));
    }
}
