//! The topic metadata image: cluster id, topics with their IDs, partition
//! counts and configs. A node view.
//!
//! Shard 0 owns the authoritative copy and its file (see
//! [`super::controller`]); every shard holds a read-only `Arc` of the latest
//! image, swapped whole by a message from shard 0. The image is immutable
//! once built, so sharing the `Arc` shares nothing mutable.
//!
//! Persistence: the whole image as JSON in `<data_dir>/cluster-metadata.json`,
//! replaced atomically (write a temporary file, fsync it, rename, fsync the
//! directory). Admin changes are rare and small, so a snapshot per change is
//! simpler than a log and just as durable; the replicated metadata log comes
//! with clustering (ARCHITECTURE.md records this change to the design).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const METADATA_FILE_NAME: &str = "cluster-metadata.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Only the configs set on the topic; the rest come from the broker.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub format_version: u32,
    pub cluster_id: String,
    pub node_id: i32,
    /// Bumped by every change; a shard ignores an older image.
    pub epoch: u64,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// The first producer ID not yet handed out (idempotent producers).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Broker configs set at runtime (AlterConfigs on the broker resource),
    /// layered over the file and flags.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, String>,
}

impl MetadataImage {
    pub fn new(cluster_id: String, node_id: i32) -> MetadataImage {
        MetadataImage {
            format_version: FORMAT_VERSION,
            cluster_id,
            node_id,
            epoch: 0,
            topics: BTreeMap::new(),
            next_producer_id: 0,
            broker_configs: BTreeMap::new(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == topic_id)
    }
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64, 22 chars.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = Uuid::new_v4().as_u128();
    (0..22)
        .map(|index| ALPHABET[((value >> (index * 6)) & 63) as usize] as char)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}; it is the only record of the topics, so Sluice will not overwrite it (restore it, or remove it to start empty)")]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn metadata_path(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_FILE_NAME)
}

/// Loads the image, or `None` when the data dir has none yet. Blocking:
/// called once at start-up, before the shard serves anything.
pub fn load(data_dir: &Path) -> Result<Option<MetadataImage>, MetadataFileError> {
    let path = metadata_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MetadataFileError::Read { path, source }),
    };
    let image: MetadataImage =
        serde_json::from_str(&text).map_err(|error| MetadataFileError::Damaged {
            path: path.clone(),
            reason: error.to_string(),
        })?;
    if image.format_version != FORMAT_VERSION {
        return Err(MetadataFileError::Damaged {
            path,
            reason: format!("unknown format version {}", image.format_version),
        });
    }
    Ok(Some(image))
}

/// Writes the image durably and atomically. Blocking: run it off the reactor
/// (`spawn_blocking`).
pub fn store(data_dir: &Path, image: &MetadataImage) -> Result<(), MetadataFileError> {
    let path = metadata_path(data_dir);
    let temporary = path.with_extension("json.tmp");
    let write_error = |source| MetadataFileError::Write {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_vec_pretty(image).expect("the image always serializes");
    let mut file = std::fs::File::create(&temporary).map_err(write_error)?;
    file.write_all(&text).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&temporary, &path).map_err(write_error)?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn an_image_survives_store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let mut image = MetadataImage::new(new_cluster_id(), 1);
        image.topics.insert(
            "orders".into(),
            TopicMetadata {
                name: "orders".into(),
                topic_id: Uuid::new_v4(),
                partitions: 3,
                replication_factor: 1,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                internal: false,
            },
        );
        store(dir.path(), &image).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(image));
    }

    #[test]
    fn a_damaged_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(metadata_path(dir.path()), b"{ not json").unwrap();
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("damaged"), "{error}");
    }
}
