//! The records of the cluster metadata log (Kafka's `__cluster_metadata`):
//! what the active controller proposes and every node applies, in log order,
//! to its [`MetadataImage`](super::metadata::MetadataImage).
//!
//! One Raft entry carries one [`RecordBatch`]: the records of one change
//! (a topic and its partitions, a broker fenced and the leaders it loses),
//! applied atomically, as KRaft applies a record batch.
//!
//! Encoding: JSON. The log is small (admin changes, fencing, ISR changes)
//! and a readable log is worth more than the bytes; the records are ours,
//! not a wire format any client sees.
//!
//! Must not: do I/O or decide anything. Deciding is the controller's
//! (`controller.rs`, `placement.rs`); applying is `metadata.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

/// "No leader" in a partition record, as in Kafka.
pub const NO_LEADER: i32 = -1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    Broker,
}

/// A broker's advertised address on one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record of a cluster: its id, agreed through the quorum.
    ClusterFormat {
        cluster_id: String,
    },
    /// A broker (re)registered; a new `incarnation` is a restart. A
    /// registered broker starts fenced until its first heartbeat.
    RegisterBroker {
        node_id: i32,
        incarnation: Uuid,
        host: String,
        port: u16,
        rack: Option<String>,
        /// Every Kafka listener's advertised address (`host`/`port` are the
        /// inter-broker listener's); empty in records of earlier versions.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
    },
    FenceBroker {
        node_id: i32,
    },
    UnfenceBroker {
        node_id: i32,
    },
    Topic {
        name: String,
        topic_id: Uuid,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        internal: bool,
    },
    /// A new partition (topic creation or CreatePartitions).
    Partition {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
    },
    /// A change to a partition; fields left `None` keep their value. A new
    /// leader bumps the leader epoch; every change bumps the partition epoch.
    PartitionChange {
        topic: String,
        partition: i32,
        leader: Option<i32>,
        isr: Option<Vec<i32>>,
        replicas: Option<Vec<i32>>,
        /// Replicas being added or removed by a reassignment (empty when
        /// none is in progress); `Some(vec![])` completes one.
        adding: Option<Vec<i32>>,
        removing: Option<Vec<i32>>,
    },
    RemoveTopic {
        name: String,
    },
    /// Replaces every override of the resource.
    Configs {
        resource: ConfigResource,
        configs: BTreeMap<String, String>,
    },
    /// Producer IDs below `next` are handed out.
    ProducerIds {
        next: i64,
    },
    /// ACLs added (Kafka's AccessControlEntryRecord); one already present
    /// stays once.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// ACLs removed (Kafka's RemoveAccessControlEntryRecord).
    RemoveAcls {
        acls: Vec<AclBinding>,
    },
    /// A user's SCRAM credential for one mechanism, added or replaced
    /// (AlterUserScramCredentials). Never the password.
    UserScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    RemoveUserScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
}

impl MetadataRecord {
    /// A change of leader and nothing else.
    pub fn leader_change(topic: &str, partition: i32, leader: i32) -> MetadataRecord {
        MetadataRecord::PartitionChange {
            topic: topic.to_string(),
            partition,
            leader: Some(leader),
            isr: None,
            replicas: None,
            adding: None,
            removing: None,
        }
    }
}

/// The records of one change, applied together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub records: Vec<MetadataRecord>,
}

impl RecordBatch {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordBatch, String> {
        serde_json::from_slice(bytes).map_err(|error| format!("bad metadata record batch: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let batch = RecordBatch {
            records: vec![
                MetadataRecord::ClusterFormat {
                    cluster_id: "abc".into(),
                },
                MetadataRecord::leader_change("orders", 2, 3),
            ],
        };
        assert_eq!(RecordBatch::decode(&batch.encode()).unwrap(), batch);
        assert!(RecordBatch::decode(b"{").is_err());
    }
}
