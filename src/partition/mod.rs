//! The partitions one shard owns: each a storage log, its idempotent-producer
//! state, and the watch that wakes long-polling fetches on append.
//!
//! Runs on the owning shard only. The table is brought in line with each
//! new metadata image by [`PartitionTable::reconcile`]: partitions the image
//! gives this shard are created (or opened), partitions it no longer lists
//! are closed and their directories removed. Create, delete, add partitions
//! and start-up are all the same operation.
//!
//! A partition whose directory or log cannot be opened is kept **offline**
//! (until restart, or until its topic is deleted): it is logged once, counted
//! in a metric, answered with KAFKA_STORAGE_ERROR and shown as an offline
//! replica in Metadata, and never retried by later reconciles, so one bad
//! directory never stops the shard from opening anything else.
//!
//! Each partition directory `<data_dir>/<topic>-<partition>/` holds a
//! `partition.metadata` file with the topic ID, as Kafka writes it, so a
//! directory left by a deleted topic is never mistaken for a new topic of the
//! same name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sluice_shards::ShardId;
use uuid::Uuid;

use crate::cluster::metadata::{MetadataDelta, MetadataImage};
use crate::config::BrokerConfig;
use crate::protocol::error_codes;
use crate::shard::partition_owner;
use crate::storage::{PartitionLog, ShardStorage};

mod log_config;
mod map;
pub mod producer_state;
pub mod replica;
pub mod replication;
pub mod txn_index;

pub use log_config::log_config;
use map::PartitionMap;
pub use replica::{AppendOutcome, Partition};
use replication::Transition;

pub const PARTITION_METADATA_FILE_NAME: &str = "partition.metadata";
/// The high watermark checkpoint (Kafka keeps one file per data dir,
/// `replication-offset-checkpoint`; one per partition suits shards that
/// share nothing). Written every few seconds; read at open, where the
/// value is capped at the log end.
pub const HIGH_WATERMARK_FILE_NAME: &str = "high-watermark";

/// New partitions a shard opens at once (see [`PartitionTable::open_new`]).
const OPEN_CONCURRENCY: usize = 64;

/// A partition the image gives this shard that is not open yet.
struct Opening {
    key: TopicPartition,
    topic_id: Uuid,
    dir: PathBuf,
    log_config: crate::storage::LogConfig,
    state: crate::cluster::metadata::PartitionState,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

pub struct PartitionTable {
    data_dir: PathBuf,
    me: ShardId,
    partitions: RefCell<PartitionMap>,
    /// Partitions that failed to open, with the topic ID they were opened for.
    offline: RefCell<BTreeMap<TopicPartition, Uuid>>,
}

impl PartitionTable {
    pub fn new(data_dir: PathBuf, me: ShardId) -> PartitionTable {
        PartitionTable {
            data_dir,
            me,
            partitions: RefCell::new(PartitionMap::default()),
            offline: RefCell::new(BTreeMap::new()),
        }
    }

    /// The partitions of this shard that failed to open.
    pub fn offline(&self) -> Vec<TopicPartition> {
        self.offline.borrow().keys().cloned().collect()
    }

    /// The error for a partition this shard does not serve: offline ones are
    /// KAFKA_STORAGE_ERROR, others NOT_LEADER_OR_FOLLOWER (not ours, or gone).
    pub fn absent_error(&self, topic: &str, partition: i32) -> i16 {
        let key = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        if self.offline.borrow().contains_key(&key) {
            error_codes::KAFKA_STORAGE_ERROR
        } else {
            error_codes::NOT_LEADER_OR_FOLLOWER
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &TopicPartition) -> bool {
        self.get(&key.topic, key.partition).is_some()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(topic, partition).cloned()
    }

    /// Every partition, by topic then index.
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().sorted()
    }

    /// Opens what the image gives this node's replicas on this shard and
    /// drops what it no longer does, looking only at the topics `delta`
    /// names (every topic for a full delta, or when broker configs changed);
    /// applies changed topic configs to open logs.
    pub async fn reconcile(
        &self,
        image: &MetadataImage,
        delta: &MetadataDelta,
        nr_shards: usize,
        storage: &ShardStorage,
        config: &BrokerConfig,
    ) -> Result<(), String> {
        let everything = delta.full || delta.broker_configs_changed;
        let in_scope = |topic: &str| everything || delta.topics.contains(topic);
        let mut wanted = BTreeMap::new();
        for topic in image.topics.values().filter(|topic| in_scope(&topic.name)) {
            for (index, state) in topic.states.iter().enumerate() {
                let partition = index as i32;
                let hosted = state.replicas.contains(&config.node_id)
                    || state.adding.contains(&config.node_id);
                if hosted && partition_owner(&topic.name, partition, nr_shards) == self.me {
                    let key = TopicPartition {
                        topic: topic.name.clone(),
                        partition,
                    };
                    wanted.insert(key, topic.topic_id);
                }
            }
        }
        let stale: Vec<TopicPartition> = self
            .partitions
            .borrow()
            .iter()
            .filter(|(key, _)| in_scope(&key.topic))
            .filter(|(key, partition)| wanted.get(key) != Some(&partition.topic_id))
            .map(|(key, _)| key)
            .collect();
        for key in stale {
            let partition = self.partitions.borrow_mut().remove(&key);
            if let Some(partition) = partition {
                partition.close_and_remove().await?;
                tracing::info!(topic = %key.topic, partition = key.partition, "partition removed");
            }
        }
        self.forget_deleted_offline(&wanted, &in_scope).await;
        let mut to_open = Vec::new();
        for (key, topic_id) in wanted {
            let topic = image
                .topic(&key.topic)
                .expect("wanted comes from the image");
            let log_config = log_config(&config.topic_config(&topic.configs));
            let state = topic
                .state(key.partition)
                .expect("wanted comes from the image");
            if let Some(open) = self.get(&key.topic, key.partition) {
                open.log.set_config(log_config);
                update_role(&open, state).await;
                continue;
            }
            if self.offline.borrow().contains_key(&key) {
                continue;
            }
            let dir = self.data_dir.join(key.dir_name());
            to_open.push(Opening {
                key,
                topic_id,
                dir,
                log_config,
                state: state.clone(),
            });
        }
        self.open_new(to_open, storage, config.node_id).await;
        Ok(())
    }

    /// Opens new partitions [`OPEN_CONCURRENCY`] at a time: each open waits
    /// on several syncs (its directory, its log, its leader epoch
    /// checkpoint), so one at a time made a 10,000-partition topic take
    /// 48 s to open on two shards, most of it waiting.
    async fn open_new(&self, to_open: Vec<Opening>, storage: &ShardStorage, node_id: i32) {
        let mut to_open = to_open.into_iter().peekable();
        while to_open.peek().is_some() {
            let wave: Vec<_> = to_open
                .by_ref()
                .take(OPEN_CONCURRENCY)
                .map(|opening| {
                    let storage = storage.clone();
                    glommio::spawn_local(async move {
                        let opened = open_partition(
                            opening.key.clone(),
                            opening.topic_id,
                            &opening.dir,
                            opening.log_config.clone(),
                            &storage,
                            node_id,
                        )
                        .await
                        .map(Rc::new);
                        if let Ok(partition) = &opened {
                            update_role(partition, &opening.state).await;
                        }
                        (opening, opened)
                    })
                })
                .collect();
            for task in wave {
                let (opening, opened) = task.await;
                let key = opening.key;
                match opened {
                    Ok(partition) => {
                        self.partitions.borrow_mut().insert(key, partition);
                    }
                    Err(error) => {
                        tracing::error!(
                            topic = %key.topic,
                            partition = key.partition,
                            dir = %opening.dir.display(),
                            %error,
                            "partition offline: cannot open its directory (KAFKA_STORAGE_ERROR until restart)"
                        );
                        self.offline.borrow_mut().insert(key, opening.topic_id);
                    }
                }
            }
        }
    }

    /// Drops offline partitions the image no longer gives this shard (their
    /// topic was deleted), removing what is left of their directories.
    async fn forget_deleted_offline(
        &self,
        wanted: &BTreeMap<TopicPartition, Uuid>,
        in_scope: &dyn Fn(&str) -> bool,
    ) {
        let deleted: Vec<TopicPartition> = self
            .offline
            .borrow()
            .iter()
            .filter(|(key, _)| in_scope(&key.topic))
            .filter(|(key, topic_id)| wanted.get(*key) != Some(*topic_id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in deleted {
            self.offline.borrow_mut().remove(&key);
            let dir = self.data_dir.join(key.dir_name());
            if let Err(error) = remove_dir(dir.clone()).await {
                tracing::warn!(dir = %dir.display(), %error, "cannot remove an offline partition's directory");
            }
        }
    }

    /// Closes every partition (clean shutdown: each log writes its marker).
    pub async fn close_all(&self) {
        let partitions = std::mem::take(&mut *self.partitions.borrow_mut());
        for (key, partition) in partitions.iter() {
            if let Err(error) = partition.log.close().await {
                tracing::warn!(topic = %key.topic, partition = key.partition, %error, "close failed");
            }
        }
    }
}

/// Opens one partition: its directory, then its log and producer state.
async fn open_partition(
    key: TopicPartition,
    topic_id: Uuid,
    dir: &Path,
    log_config: crate::storage::LogConfig,
    storage: &ShardStorage,
    node_id: i32,
) -> Result<Partition, String> {
    open_dir(dir.to_path_buf(), topic_id)
        .await
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    let log = PartitionLog::open(dir, log_config, storage)
        .await
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    let checkpoint = dir.join(HIGH_WATERMARK_FILE_NAME);
    let high_watermark = glommio::executor()
        .spawn_blocking(move || read_high_watermark(&checkpoint))
        .await;
    Partition::open_replica(key, topic_id, log, node_id, high_watermark).await
}

/// The partition's last checkpointed high watermark (0 if none).
fn read_high_watermark(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes high watermark checkpoints (`(partition dir, value)`), each
/// atomically. Blocking: run it on the blocking pool.
pub fn write_high_watermarks(entries: &[(PathBuf, i64)]) -> std::io::Result<()> {
    for (dir, value) in entries {
        let path = dir.join(HIGH_WATERMARK_FILE_NAME);
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, format!("{value}\n"))?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(())
}

/// Gives an open partition its role from the image.
async fn update_role(partition: &Partition, state: &crate::cluster::metadata::PartitionState) {
    match partition.update_role(state).await {
        Ok(Transition::Unchanged) | Ok(Transition::LeaderUpdated) => {}
        Ok(transition) => tracing::info!(
            topic = %partition.key.topic,
            partition = partition.key.partition,
            ?transition,
            log_end_offset = partition.log_end_offset(),
            "replica role changed"
        ),
        Err(error) => tracing::error!(
            topic = %partition.key.topic,
            partition = partition.key.partition,
            %error,
            "cannot start the leader epoch"
        ),
    }
}

/// Creates (or adopts) a partition directory for `topic_id`. A directory
/// holding another topic ID is a leftover of a deleted topic: replaced.
async fn open_dir(dir: PathBuf, topic_id: Uuid) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || {
            let metadata_path = dir.join(PARTITION_METADATA_FILE_NAME);
            match read_topic_id(&metadata_path) {
                Some(found) if found == topic_id => return Ok(()),
                Some(_) => std::fs::remove_dir_all(&dir)?,
                None => {}
            }
            std::fs::create_dir_all(&dir)?;
            let text = format!("version: 0\ntopic_id: {topic_id}\n");
            std::fs::write(&metadata_path, text)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
}

pub(crate) async fn remove_dir(dir: PathBuf) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        })
        .await
}

fn read_topic_id(path: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

/// Removes partition directories of topics the image no longer has (a crash
/// between writing the image and removing the directories leaves them).
/// Blocking; called once at start-up.
pub fn remove_orphan_dirs(data_dir: &Path, image: &MetadataImage) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let path = entry?.path();
        let Some(topic_id) = read_topic_id(&path.join(PARTITION_METADATA_FILE_NAME)) else {
            continue;
        };
        if image.topic_by_id(topic_id).is_none() {
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}
