//! The partitions a shard hosts, by topic name and index.
//!
//! Owns: lookups on the produce and fetch paths, which come with a topic
//! name as `&str`: hashing it (ahash) finds the topic without building a
//! key (the `BTreeMap<TopicPartition, _>` before cost a `String` per lookup
//! and O(log n) string comparisons). Iteration is in no particular order;
//! [`PartitionMap::sorted`] is for the callers that show partitions.

use std::rc::Rc;

use ahash::AHashMap;

use super::{Partition, TopicPartition};

#[derive(Default)]
pub(super) struct PartitionMap {
    topics: AHashMap<String, AHashMap<i32, Rc<Partition>>>,
    len: usize,
}

impl PartitionMap {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<Partition>> {
        self.topics.get(topic)?.get(&partition)
    }

    pub fn insert(&mut self, key: TopicPartition, partition: Rc<Partition>) {
        let previous = self
            .topics
            .entry(key.topic)
            .or_default()
            .insert(key.partition, partition);
        if previous.is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, key: &TopicPartition) -> Option<Rc<Partition>> {
        let partitions = self.topics.get_mut(&key.topic)?;
        let removed = partitions.remove(&key.partition)?;
        if partitions.is_empty() {
            self.topics.remove(&key.topic);
        }
        self.len -= 1;
        Some(removed)
    }

    /// Every partition with its key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TopicPartition, &Rc<Partition>)> {
        self.topics.iter().flat_map(|(topic, partitions)| {
            partitions.iter().map(move |(index, partition)| {
                let key = TopicPartition {
                    topic: topic.clone(),
                    partition: *index,
                };
                (key, partition)
            })
        })
    }

    /// Every partition, by topic then index.
    pub fn sorted(&self) -> Vec<Rc<Partition>> {
        let mut all: Vec<(TopicPartition, Rc<Partition>)> = self
            .iter()
            .map(|(key, partition)| (key, partition.clone()))
            .collect();
        all.sort_by(|(a, _), (b, _)| a.cmp(b));
        all.into_iter().map(|(_, partition)| partition).collect()
    }
}
