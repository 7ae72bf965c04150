//! Images for the cluster's unit tests: registered brokers and one topic
//! `t` with the given partitions.

use uuid::Uuid;

use super::metadata::{MetadataImage, PartitionState};
use super::records::MetadataRecord as R;

/// Brokers `brokers` (live unless in `fenced`) and topic `t` with `states`
/// as its partitions, in order.
pub fn image(brokers: &[i32], fenced: &[i32], states: &[PartitionState]) -> MetadataImage {
    let mut image = MetadataImage::default();
    for id in brokers {
        image.apply(
            1,
            &R::RegisterBroker {
                node_id: *id,
                incarnation: Uuid::new_v4(),
                host: "h".into(),
                port: 1,
                rack: None,
                endpoints: Vec::new(),
            },
        );
        if !fenced.contains(id) {
            image.apply(2, &R::UnfenceBroker { node_id: *id });
        }
    }
    image.apply(
        3,
        &R::Topic {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            replication_factor: 3,
            configs: Default::default(),
            internal: false,
        },
    );
    for (index, state) in states.iter().enumerate() {
        image.apply(
            4,
            &R::Partition {
                topic: "t".into(),
                partition: index as i32,
                replicas: state.replicas.clone(),
                isr: state.isr.clone(),
                leader: state.leader,
            },
        );
    }
    image
}

/// A change of `t`'s `partition` ISR (and leader, if given) and nothing else.
pub fn isr_change(partition: i32, isr: Vec<i32>, leader: Option<i32>) -> R {
    R::PartitionChange {
        topic: "t".into(),
        partition,
        leader,
        isr: Some(isr),
        replicas: None,
        adding: None,
        removing: None,
    }
}
