//! The partitions one shard owns: their directories now, their logs,
//! offsets and producer state as the storage engine is wired in.
//!
//! Runs on the owning shard only. The table is brought in line with each
//! new metadata image by [`PartitionTable::reconcile`]: partitions the image
//! gives this shard are created (or opened), partitions it no longer lists
//! are closed and their directories removed. Create, delete, add partitions
//! and start-up are all the same operation.
//!
//! Each partition directory `<data_dir>/<topic>-<partition>/` holds a
//! `partition.metadata` file with the topic ID, as Kafka writes it, so a
//! directory left by a deleted topic is never mistaken for a new topic of the
//! same name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_shards::ShardId;
use uuid::Uuid;

use crate::cluster::metadata::MetadataImage;
use crate::shard::partition_owner;

pub const PARTITION_METADATA_FILE_NAME: &str = "partition.metadata";

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

/// One partition replica, owned by this shard.
#[derive(Debug)]
pub struct Partition {
    pub topic_id: Uuid,
    pub dir: PathBuf,
}

pub struct PartitionTable {
    data_dir: PathBuf,
    me: ShardId,
    partitions: RefCell<BTreeMap<TopicPartition, Partition>>,
}

impl PartitionTable {
    pub fn new(data_dir: PathBuf, me: ShardId) -> PartitionTable {
        PartitionTable {
            data_dir,
            me,
            partitions: RefCell::new(BTreeMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.borrow().is_empty()
    }

    pub fn contains(&self, topic_partition: &TopicPartition) -> bool {
        self.partitions.borrow().contains_key(topic_partition)
    }

    /// Opens what the image gives this shard and drops what it does not.
    pub async fn reconcile(&self, image: &MetadataImage, nr_shards: usize) -> std::io::Result<()> {
        let mut wanted = BTreeMap::new();
        for topic in image.topics.values() {
            for partition in 0..topic.partitions {
                if partition_owner(&topic.name, partition, nr_shards) == self.me {
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
            .filter(|(key, partition)| wanted.get(*key) != Some(&partition.topic_id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            let partition = self.partitions.borrow_mut().remove(&key);
            if let Some(partition) = partition {
                remove_dir(partition.dir).await?;
                tracing::info!(topic = %key.topic, partition = key.partition, "partition removed");
            }
        }
        for (key, topic_id) in wanted {
            if self.contains(&key) {
                continue;
            }
            let dir = self.data_dir.join(key.dir_name());
            open_dir(dir.clone(), topic_id).await?;
            self.partitions
                .borrow_mut()
                .insert(key, Partition { topic_id, dir });
        }
        Ok(())
    }

    /// Closes every partition (clean shutdown).
    pub async fn close_all(&self) {
        self.partitions.borrow_mut().clear();
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

async fn remove_dir(dir: PathBuf) -> std::io::Result<()> {
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
