//! The cluster's health as gauges, counted over one node's image: what
//! `sluice_active_controller`, `sluice_fenced_brokers`, the per-broker
//! `sluice_offline_partitions` / `sluice_under_replicated_partitions` and
//! the active controller's cluster-wide counts report (`metrics.rs`).
//!
//! Pure: no I/O; shard 0 counts at scrape time.

use super::metadata::MetadataImage;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// This node is the active controller.
    pub active_controller: bool,
    /// Registered brokers that are fenced.
    pub fenced_brokers: u64,
    /// Partitions with a replica on this node and no leader.
    pub offline_partitions: u64,
    /// Partitions this node leads whose ISR is smaller than their replicas.
    pub under_replicated_partitions: u64,
    /// Over every partition, counted only by the active controller:
    /// `(no leader, ISR smaller than replicas)`.
    pub cluster: Option<(u64, u64)>,
}

pub fn health(image: &MetadataImage, node_id: i32, active_controller: bool) -> Health {
    let mut health = Health {
        active_controller,
        fenced_brokers: image.brokers.values().filter(|b| b.fenced).count() as u64,
        ..Health::default()
    };
    let (mut offline, mut under_replicated) = (0, 0);
    for state in image.topics.values().flat_map(|topic| &topic.states) {
        let lagging = state.isr.len() < state.replicas.len();
        if !state.has_leader() {
            offline += 1;
            if state.replicas.contains(&node_id) {
                health.offline_partitions += 1;
            }
        }
        if lagging {
            under_replicated += 1;
            if state.leader == node_id {
                health.under_replicated_partitions += 1;
            }
        }
    }
    health.cluster = active_controller.then_some((offline, under_replicated));
    health
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::PartitionState;
    use crate::cluster::records::NO_LEADER;
    use crate::cluster::test_images;

    #[test]
    fn counts_this_nodes_partitions_and_the_whole_cluster_on_the_controller() {
        let states = [
            PartitionState::new(vec![1, 2], vec![1], 1), // under-replicated, led by 1
            PartitionState::new(vec![2, 3], vec![2], NO_LEADER), // offline, not on 1
            PartitionState::new(vec![1, 3], vec![3], NO_LEADER), // offline, on 1
            PartitionState::new(vec![2, 1], vec![2, 1], 2), // healthy
        ];
        let image = test_images::image(&[1, 2, 3], &[2, 3], &states);
        let on_one = health(&image, 1, true);
        assert_eq!(
            on_one,
            Health {
                active_controller: true,
                fenced_brokers: 2,
                offline_partitions: 1,
                under_replicated_partitions: 1,
                cluster: Some((2, 3)),
            }
        );
        let on_two = health(&image, 2, false);
        assert_eq!(
            (
                on_two.offline_partitions,
                on_two.under_replicated_partitions
            ),
            (1, 0)
        );
        assert_eq!(on_two.cluster, None);
    }
}
