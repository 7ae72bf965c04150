//! Which `__consumer_offsets` partitions this manager coordinates, and
//! their groups coming and going with the partitions' leadership (Kafka's
//! `onElection` and `onResignation`).
//!
//! A partition is elected (this node leads it at some leader epoch), then
//! loading while the runtime reads its records, then loaded: its groups are
//! served. Resigned, its groups are dropped; their parked JoinGroup and
//! SyncGroup requests are answered NOT_COORDINATOR, and their members find
//! the new coordinator on their next request. A group's requests are
//! admitted only while its partition is loaded ([`GroupManager::admit`]).

use std::collections::BTreeMap;

use super::GroupManager;
use crate::coordinator::group::Group;
use crate::coordinator::records::{self, LogRecord};
use crate::coordinator::{errors, partition_for_group};

/// An offsets partition this manager coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedPartition {
    /// The leader epoch at which this node was elected to lead it.
    pub leader_epoch: i32,
    /// Its records are replayed: its groups are served.
    pub loaded: bool,
}

/// What [`GroupManager::follow`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadershipChanges {
    /// Partitions given up, with how many groups went with each.
    pub resigned: Vec<(i32, usize)>,
    /// Partitions to load now, with their leader epochs.
    pub elected: Vec<(i32, i32)>,
}

impl GroupManager {
    /// The offsets partition of `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.config.offsets_partitions)
    }

    /// Whether requests for `group_id` may be served now: NOT_COORDINATOR
    /// when this manager does not coordinate its partition,
    /// COORDINATOR_LOAD_IN_PROGRESS while the partition loads.
    pub fn admit(&self, group_id: &str) -> Result<(), i16> {
        match self.partitions.get(&self.partition_of(group_id)) {
            Some(owned) if owned.loaded => Ok(()),
            Some(_) => Err(errors::COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(errors::NOT_COORDINATOR),
        }
    }

    /// The partitions this manager coordinates or is loading.
    pub fn partitions(&self) -> &BTreeMap<i32, OwnedPartition> {
        &self.partitions
    }

    /// Whether some partition is still loading.
    pub fn is_loading(&self) -> bool {
        self.partitions.values().any(|owned| !owned.loaded)
    }

    /// Follows leadership: `led` holds every offsets partition this node
    /// leads now (among those this manager may hold), with its leader
    /// epoch. Resigns the partitions not in it, or led at another epoch
    /// (leadership went away and came back: the log may have changed
    /// meanwhile), and elects the new ones. The caller reads each elected
    /// partition and calls [`GroupManager::complete_load`].
    pub fn follow(&mut self, led: &BTreeMap<i32, i32>) -> LeadershipChanges {
        let mut changes = LeadershipChanges::default();
        let gone: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(partition, owned)| led.get(*partition) != Some(&owned.leader_epoch))
            .map(|(partition, _)| *partition)
            .collect();
        for partition in gone {
            let groups = self.resign(partition);
            changes.resigned.push((partition, groups));
        }
        for (partition, leader_epoch) in led {
            if self.elect(*partition, *leader_epoch) {
                changes.elected.push((*partition, *leader_epoch));
            }
        }
        changes
    }

    /// Kafka's `onElection`: this node leads `partition` from
    /// `leader_epoch`. True when a load must start; false when the
    /// partition is already held at that epoch. Held at another epoch, it
    /// is resigned first.
    pub fn elect(&mut self, partition: i32, leader_epoch: i32) -> bool {
        match self.partitions.get(&partition) {
            Some(owned) if owned.leader_epoch == leader_epoch => return false,
            Some(_) => {
                self.resign(partition);
            }
            None => {}
        }
        let loading = OwnedPartition {
            leader_epoch,
            loaded: false,
        };
        self.partitions.insert(partition, loading);
        true
    }

    /// Replays `records`, read from `partition`, and serves its groups from
    /// now on. Does nothing (None) unless the partition is still loading at
    /// `leader_epoch`: leadership may have moved while the records were
    /// read. Returns how many records were replayed.
    pub fn complete_load(
        &mut self,
        partition: i32,
        leader_epoch: i32,
        records: &[LogRecord],
        now_ms: u64,
    ) -> Option<usize> {
        let owned = self.partitions.get_mut(&partition)?;
        if owned.loaded || owned.leader_epoch != leader_epoch {
            return None;
        }
        owned.loaded = true;
        for record in records {
            self.replay(&record.key, record.value.as_deref(), now_ms);
        }
        Some(records.len())
    }

    /// A load of `partition` at `leader_epoch` failed: forgets the
    /// partition, so that the next [`GroupManager::follow`] elects it again.
    pub fn abandon_load(&mut self, partition: i32, leader_epoch: i32) {
        let loading = OwnedPartition {
            leader_epoch,
            loaded: false,
        };
        if self.partitions.get(&partition) == Some(&loading) {
            self.resign(partition);
        }
    }

    /// Kafka's `onResignation`: this node no longer leads `partition`.
    /// Drops its groups; their parked JoinGroup and SyncGroup requests are
    /// answered NOT_COORDINATOR. Returns how many groups went.
    pub fn resign(&mut self, partition: i32) -> usize {
        self.partitions.remove(&partition);
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|group_id| self.partition_of(group_id) == partition)
            .cloned()
            .collect();
        for group_id in &gone {
            let group = self.groups.remove(group_id).expect("listed");
            for member in group.members.values() {
                self.outbox
                    .fail_parked(group_id, member, errors::NOT_COORDINATOR);
            }
        }
        gone.len()
    }

    /// Applies one `__consumer_offsets` record read back from the log (see
    /// [`GroupManager::complete_load`]). A record that does not decode is
    /// skipped (and reported): it is disk content, never trusted.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: u64) {
        match records::decode(key, value) {
            Ok(records::Decoded::Offset {
                group_id,
                topic_partition,
                offset,
            }) => match offset {
                Some(offset) => {
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(&group_id, now_ms));
                    group.offsets.insert(topic_partition, offset);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.offsets.remove(&topic_partition);
                    }
                }
            },
            Ok(records::Decoded::Group { group_id, metadata }) => match metadata {
                Some(loaded) => {
                    let offsets = self
                        .groups
                        .remove(&group_id)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    let mut group = loaded.into_group(&group_id, now_ms);
                    group.offsets = offsets;
                    self.groups.insert(group_id, group);
                }
                None => {
                    let keep = self
                        .groups
                        .get(&group_id)
                        .is_some_and(|g| !g.offsets.is_empty());
                    if keep {
                        let group = self.groups.get_mut(&group_id).expect("present");
                        let offsets = std::mem::take(&mut group.offsets);
                        *group = Group::new(&group_id, now_ms);
                        group.offsets = offsets;
                    } else {
                        self.groups.remove(&group_id);
                    }
                }
            },
            Ok(records::Decoded::Unknown) => {}
            Err(error) => {
                tracing::warn!(%error, "skipped an undecodable __consumer_offsets record")
            }
        }
    }
}
