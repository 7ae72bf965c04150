//! Loading: replaying the `__consumer_offsets` records of a partition into
//! groups.

use super::GroupManager;
use crate::coordinator::group::Group;
use crate::coordinator::records;

impl GroupManager {
    /// Applies one `__consumer_offsets` record read back at start-up. A
    /// record that does not decode is skipped (and reported): it is disk
    /// content, never trusted.
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
