//! The cluster metadata image: cluster id, brokers, topics with their
//! partitions (replicas, ISR, leader, epochs), configs and producer IDs. A
//! cluster view, the same on every node once it has applied the same log.
//!
//! Built by applying the metadata log's records in order
//! ([`MetadataImage::apply`], pure); shard 0's quorum driver applies each
//! committed batch and hands every shard the new immutable `Arc` together
//! with a [`MetadataDelta`] naming what changed, so a shard looks only at
//! the topics it must. The whole image is serialized only as the Raft
//! snapshot (JSON) and at start.
//!
//! Must not: decide anything (the controller does) or do I/O, except
//! reading the single-node file of earlier versions once, to migrate it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{ConfigResource, Endpoint, MetadataRecord, NO_LEADER};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

/// The single-node metadata file of earlier versions (migrated at start).
pub const LEGACY_METADATA_FILE_NAME: &str = "cluster-metadata.json";
const LEGACY_FORMAT_VERSION: u32 = 1;

/// One partition's replication state, as the controller decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// [`NO_LEADER`] when offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    pub fn new(replicas: Vec<i32>, isr: Vec<i32>, leader: i32) -> PartitionState {
        PartitionState {
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Uuid,
    /// Always `states.len()`.
    pub partitions: i32,
    pub replication_factor: i16,
    /// Only the configs set on the topic; the rest come from the broker.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    /// Indexed by partition.
    #[serde(default)]
    pub states: Vec<PartitionState>,
}

impl TopicMetadata {
    pub fn state(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.states.get(index))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub incarnation: Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Per listener; empty when registered by an earlier version.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub fenced: bool,
    /// The log index of its registration (Kafka's broker epoch).
    pub epoch: u64,
}

impl BrokerRegistration {
    /// Where clients of `listener` reach this broker: Kafka answers each
    /// client with the endpoints of the listener it came through. A broker
    /// registered by an earlier version (no endpoints) or without that
    /// listener answers its inter-broker address.
    pub fn endpoint(&self, listener: &str) -> (&str, u16) {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.listener == listener)
            .map_or((self.host.as_str(), self.port), |endpoint| {
                (endpoint.host.as_str(), endpoint.port)
            })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Empty until the cluster is formatted (its first record).
    pub cluster_id: String,
    /// The index of the last metadata log entry applied; 0 for none.
    pub epoch: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// The first producer ID not yet handed out (idempotent producers).
    pub next_producer_id: i64,
    /// Broker configs set at runtime (AlterConfigs on the broker resource),
    /// layered over the file and flags. Cluster-wide.
    pub broker_configs: BTreeMap<String, String>,
    /// The cluster's ACLs (every broker authorizes against its copy).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<AclBinding>,
    /// SCRAM credentials by user, then mechanism.
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// The active controller as this node last saw it (not from the log).
    #[serde(skip)]
    pub controller_id: Option<i32>,
}

/// What one applied batch changed: shards reconcile only these topics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataDelta {
    /// Topics created, removed, or with a changed partition or config.
    pub topics: BTreeSet<String>,
    pub brokers_changed: bool,
    pub broker_configs_changed: bool,
    pub acls_changed: bool,
    /// The whole image is new (start-up, snapshot): reconcile everything.
    pub full: bool,
}

impl MetadataDelta {
    pub fn full() -> MetadataDelta {
        MetadataDelta {
            full: true,
            ..MetadataDelta::default()
        }
    }

    pub fn merge(&mut self, other: MetadataDelta) {
        self.topics.extend(other.topics);
        self.brokers_changed |= other.brokers_changed;
        self.broker_configs_changed |= other.broker_configs_changed;
        self.acls_changed |= other.acls_changed;
        self.full |= other.full;
    }

    pub fn is_empty(&self) -> bool {
        *self == MetadataDelta::default()
    }
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == topic_id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topic(topic).and_then(|topic| topic.state(partition))
    }

    /// The partition's leader, if it has one.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition)
            .filter(|state| state.has_leader())
            .map(|state| state.leader)
    }

    /// Whether `node_id` may serve `partition` of `topic` to clients (it
    /// leads it), else the Kafka error: UNKNOWN_TOPIC_OR_PARTITION or
    /// NOT_LEADER_OR_FOLLOWER (clients then refresh metadata and move).
    pub fn leader_check(&self, topic: &str, partition: i32, node_id: i32) -> Result<(), i16> {
        use crate::protocol::error_codes;
        match self.partition(topic, partition) {
            None => Err(error_codes::UNKNOWN_TOPIC_OR_PARTITION),
            Some(state) if state.leader == node_id => Ok(()),
            Some(_) => Err(error_codes::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers
            .get(&node_id)
            .is_some_and(|broker| !broker.fenced)
    }

    /// Applies one record at log index `index`. Records are produced by the
    /// controller from this same image, so a record that does not fit (a
    /// change to a topic that is gone) is skipped with a warning rather than
    /// stopping the node: every node skips it alike.
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        match record {
            MetadataRecord::ClusterFormat { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation,
                host,
                port,
                rack,
                endpoints,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        incarnation: *incarnation,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        endpoints: endpoints.clone(),
                        fenced: true,
                        epoch: index,
                    },
                );
                delta.brokers_changed = true;
            }
            MetadataRecord::FenceBroker { node_id } | MetadataRecord::UnfenceBroker { node_id } => {
                let fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                match self.brokers.get_mut(node_id) {
                    Some(broker) => broker.fenced = fenced,
                    None => tracing::warn!(node_id, "metadata record for an unknown broker"),
                }
                delta.brokers_changed = true;
            }
            MetadataRecord::Topic {
                name,
                topic_id,
                replication_factor,
                configs,
                internal,
            } => {
                self.topics.insert(
                    name.clone(),
                    TopicMetadata {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: 0,
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                        internal: *internal,
                        states: Vec::new(),
                    },
                );
                delta.topics.insert(name.clone());
            }
            MetadataRecord::Partition {
                topic,
                partition,
                replicas,
                isr,
                leader,
            } => {
                let Some(metadata) = self.topics.get_mut(topic) else {
                    return skipped(record);
                };
                if *partition != metadata.partitions {
                    return skipped(record);
                }
                let state = PartitionState::new(replicas.clone(), isr.clone(), *leader);
                metadata.states.push(state);
                metadata.partitions += 1;
                delta.topics.insert(topic.clone());
            }
            MetadataRecord::PartitionChange {
                topic,
                partition,
                leader,
                isr,
                replicas,
                adding,
                removing,
            } => {
                let Some(state) = self.topics.get_mut(topic).and_then(|metadata| {
                    metadata.states.get_mut(usize::try_from(*partition).ok()?)
                }) else {
                    return skipped(record);
                };
                if let Some(leader) = leader {
                    if *leader != state.leader {
                        state.leader = *leader;
                        state.leader_epoch += 1;
                    }
                }
                if let Some(isr) = isr {
                    state.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    state.replicas = replicas.clone();
                }
                if let Some(adding) = adding {
                    state.adding = adding.clone();
                }
                if let Some(removing) = removing {
                    state.removing = removing.clone();
                }
                state.partition_epoch += 1;
                delta.topics.insert(topic.clone());
            }
            MetadataRecord::RemoveTopic { name } => {
                self.topics.remove(name);
                delta.topics.insert(name.clone());
            }
            MetadataRecord::Configs { resource, configs } => match resource {
                ConfigResource::Topic(name) => {
                    let Some(metadata) = self.topics.get_mut(name) else {
                        return skipped(record);
                    };
                    metadata.configs = configs.clone();
                    delta.topics.insert(name.clone());
                }
                ConfigResource::Broker => {
                    self.broker_configs = configs.clone();
                    delta.broker_configs_changed = true;
                }
            },
            MetadataRecord::ProducerIds { next } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                delta.acls_changed = true;
            }
            MetadataRecord::RemoveAcls { acls } => {
                for acl in acls {
                    self.acls.remove(acl);
                }
                delta.acls_changed = true;
            }
            MetadataRecord::UserScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram_credentials
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            MetadataRecord::RemoveUserScramCredential { user, mechanism } => {
                if let Some(mechanisms) = self.scram_credentials.get_mut(user) {
                    mechanisms.remove(mechanism);
                    if mechanisms.is_empty() {
                        self.scram_credentials.remove(user);
                    }
                }
            }
        }
        delta
    }

    /// Applies a batch at log index `index` and moves the image's epoch there.
    pub fn apply_batch(&mut self, index: u64, records: &[MetadataRecord]) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        for record in records {
            delta.merge(self.apply(index, record));
        }
        self.epoch = self.epoch.max(index);
        delta
    }

    /// The image as a Raft snapshot's data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the image always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<MetadataImage, String> {
        if bytes.is_empty() {
            return Ok(MetadataImage::default());
        }
        serde_json::from_slice(bytes).map_err(|error| format!("bad metadata snapshot: {error}"))
    }
}

fn skipped(record: &MetadataRecord) -> MetadataDelta {
    tracing::warn!(?record, "metadata record does not fit the image; skipped");
    MetadataDelta::default()
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64, 22 chars.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = Uuid::new_v4().as_u128();
    (0..22)
        .map(|index| ALPHABET[((value >> (index * 6)) & 63) as usize] as char)
        .collect()
}

/// The single-node file of earlier versions.
#[derive(Deserialize)]
struct LegacyImage {
    format_version: u32,
    cluster_id: String,
    node_id: i32,
    topics: BTreeMap<String, LegacyTopic>,
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    broker_configs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct LegacyTopic {
    name: String,
    topic_id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
    internal: bool,
}

pub fn legacy_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LEGACY_METADATA_FILE_NAME)
}

/// Reads the single-node metadata file of earlier versions, if the data dir
/// has one, as the records that recreate it on this node (`node_id`).
/// Blocking; called once at start-up.
pub fn load_legacy(data_dir: &Path, node_id: i32) -> Result<Option<Vec<MetadataRecord>>, String> {
    let path = legacy_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let legacy: LegacyImage = serde_json::from_str(&text)
        .map_err(|error| format!("{} is damaged: {error}", path.display()))?;
    if legacy.format_version != LEGACY_FORMAT_VERSION {
        return Err(format!(
            "{}: unknown format version {}",
            path.display(),
            legacy.format_version
        ));
    }
    if legacy.node_id != node_id {
        return Err(format!(
            "data dir {} belongs to node.id {}, but this broker is node.id {node_id} (key 'node.id')",
            data_dir.display(),
            legacy.node_id
        ));
    }
    let mut records = vec![MetadataRecord::ClusterFormat {
        cluster_id: legacy.cluster_id,
    }];
    for topic in legacy.topics.into_values() {
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            replication_factor: 1,
            configs: topic.configs,
            internal: topic.internal,
        });
        records.extend(
            (0..topic.partitions).map(|partition| MetadataRecord::Partition {
                topic: topic.name.clone(),
                partition,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
            }),
        );
    }
    records.push(MetadataRecord::Configs {
        resource: ConfigResource::Broker,
        configs: legacy.broker_configs,
    });
    records.push(MetadataRecord::ProducerIds {
        next: legacy.next_producer_id,
    });
    Ok(Some(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::new_v4(),
            replication_factor: 3,
            configs: BTreeMap::new(),
            internal: false,
        }
    }

    fn partition(name: &str, partition: i32, leader: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic: name.into(),
            partition,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader,
        }
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn a_topic_and_its_partitions_apply_as_one_delta() {
        let mut image = MetadataImage::default();
        let delta = image.apply_batch(
            7,
            &[
                topic("orders"),
                partition("orders", 0, 1),
                partition("orders", 1, 2),
            ],
        );
        assert_eq!(delta.topics, BTreeSet::from(["orders".to_string()]));
        assert_eq!(image.epoch, 7);
        let orders = image.topic("orders").unwrap();
        assert_eq!(orders.partitions, 2);
        assert_eq!(image.leader_of("orders", 1), Some(2));
        assert_eq!(image.leader_of("orders", 2), None);
        // A partition out of order is skipped, not applied at the wrong index.
        image.apply(8, &partition("orders", 5, 1));
        assert_eq!(image.topic("orders").unwrap().partitions, 2);
    }

    #[test]
    fn a_new_leader_bumps_the_leader_epoch_and_an_isr_change_only_the_partition_epoch() {
        let mut image = MetadataImage::default();
        image.apply_batch(1, &[topic("t"), partition("t", 0, 1)]);
        image.apply(2, &MetadataRecord::leader_change("t", 0, 2));
        let state = image.partition("t", 0).unwrap().clone();
        assert_eq!(
            (state.leader, state.leader_epoch, state.partition_epoch),
            (2, 1, 1)
        );
        image.apply(
            3,
            &MetadataRecord::PartitionChange {
                topic: "t".into(),
                partition: 0,
                leader: None,
                isr: Some(vec![2, 3]),
                replicas: None,
                adding: None,
                removing: None,
            },
        );
        let state = image.partition("t", 0).unwrap();
        assert_eq!((state.leader_epoch, state.partition_epoch), (1, 2));
        assert_eq!(state.isr, vec![2, 3]);
    }

    #[test]
    fn brokers_register_fenced_and_are_unfenced_by_record() {
        let mut image = MetadataImage::default();
        let register = MetadataRecord::RegisterBroker {
            node_id: 2,
            incarnation: Uuid::new_v4(),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            endpoints: Vec::new(),
        };
        let delta = image.apply(4, &register);
        assert!(delta.brokers_changed);
        assert!(!image.is_live(2));
        assert_eq!(image.brokers[&2].epoch, 4);
        image.apply(5, &MetadataRecord::UnfenceBroker { node_id: 2 });
        assert!(image.is_live(2));
        assert_eq!(image.live_brokers().count(), 1);
    }

    #[test]
    fn the_image_round_trips_as_a_snapshot() {
        let mut image = MetadataImage::default();
        image.apply_batch(3, &[topic("t"), partition("t", 0, 1)]);
        assert_eq!(MetadataImage::decode(&image.encode()).unwrap(), image);
        assert_eq!(
            MetadataImage::decode(&[]).unwrap(),
            MetadataImage::default()
        );
    }

    #[test]
    fn a_legacy_single_node_file_becomes_records() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_legacy(dir.path(), 1).unwrap(), None);
        let id = Uuid::new_v4();
        let text = format!(
            r#"{{"format_version":1,"cluster_id":"c1","node_id":1,"epoch":4,"next_producer_id":3000,
               "topics":{{"orders":{{"name":"orders","topic_id":"{id}","partitions":2,"replication_factor":1,
               "configs":{{"retention.ms":"1000"}},"internal":false}}}}}}"#
        );
        std::fs::write(legacy_path(dir.path()), text).unwrap();
        let records = load_legacy(dir.path(), 1).unwrap().unwrap();
        let mut image = MetadataImage::default();
        image.apply_batch(1, &records);
        assert_eq!(image.cluster_id, "c1");
        assert_eq!(image.next_producer_id, 3000);
        let orders = image.topic("orders").unwrap();
        assert_eq!((orders.topic_id, orders.partitions), (id, 2));
        assert_eq!(image.leader_of("orders", 1), Some(1));
        assert!(load_legacy(dir.path(), 2).unwrap_err().contains("node.id"));
    }
}
