//! The health and readiness probes of the metrics endpoint, for container
//! runtimes and load balancers: `GET /health` (the process answers) and
//! `GET /ready` (this broker may take clients).
//!
//! Owns: gathering the facts readiness depends on (shard 0's quorum view,
//! each shard's image and serving state, over the mesh) and the verdict,
//! a pure function of those facts so the rules are unit-tested.
//!
//! Runs: on shard 0, inside the metrics endpoint. Must not: change any
//! state, or wait on anything but one round over the mesh.
//!
//! Ready means, in this order (the first that fails is the 503's reason):
//! not shutting down; the metadata quorum has a leader this node knows
//! (it joined the quorum); every shard's image shows this run of the broker
//! registered (Kafka's broker registration, with this incarnation) and
//! unfenced; every shard has bound the Kafka listener; every partition the
//! shard's image places on this node and shard is open (none still being
//! opened, none failed to open).

use std::rc::Rc;

use crate::cluster::metadata::MetadataImage;
use crate::partition::TopicPartition;
use crate::shard::{self, Shard};

/// This broker in one shard's metadata image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Not registered (yet).
    Absent,
    /// The image still shows an earlier run (replayed from the log).
    PreviousRun,
    Fenced,
    Unfenced,
}

/// One shard's part of readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReadiness {
    pub shard: usize,
    pub registration: Registration,
    /// The Kafka listener is bound on this shard.
    pub serving: bool,
    pub partitions: usize,
    pub partitions_offline: usize,
    /// Partitions the image gives this node on this shard that are neither
    /// open nor offline: still being opened.
    pub partitions_unopened: usize,
}

/// What the verdict is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessFacts {
    pub shutting_down: bool,
    pub node_id: i32,
    /// The quorum leader this node knows; `None` before it joined.
    pub quorum_leader: Option<i32>,
    pub shards: Vec<ShardReadiness>,
}

/// `Ok(summary)` when ready, `Err(reason)` otherwise; both one line.
pub fn verdict(facts: &ReadinessFacts) -> Result<String, String> {
    if facts.shutting_down {
        return Err("shutting down".to_string());
    }
    let Some(leader) = facts.quorum_leader else {
        return Err("not joined to the metadata quorum: no known quorum leader".to_string());
    };
    if facts.shards.is_empty() {
        return Err("shards not answering".to_string());
    }
    for shard in &facts.shards {
        let id = shard.shard;
        let node = facts.node_id;
        match shard.registration {
            Registration::Unfenced => {}
            Registration::Absent => {
                return Err(format!(
                    "broker {node} not registered with the controller (shard {id})"
                ))
            }
            Registration::PreviousRun => {
                return Err(format!(
                "broker {node} not yet registered for this run (shard {id} sees the previous one)"
            ))
            }
            Registration::Fenced => return Err(format!("broker {node} is fenced (shard {id})")),
        }
        if !shard.serving {
            return Err(format!("shard {id} has not opened the Kafka listener"));
        }
        if shard.partitions_unopened > 0 {
            return Err(format!(
                "{} partition(s) of shard {id} not opened yet",
                shard.partitions_unopened
            ));
        }
        if shard.partitions_offline > 0 {
            return Err(format!(
                "{} partition(s) failed to open on shard {id}",
                shard.partitions_offline
            ));
        }
    }
    let partitions: usize = facts.shards.iter().map(|shard| shard.partitions).sum();
    Ok(format!(
        "ready: broker {} registered and unfenced, quorum leader {leader}, {partitions} partition(s) open on {} shard(s)",
        facts.node_id,
        facts.shards.len()
    ))
}

/// This shard's part; runs on each shard.
fn shard_readiness(shard: &Shard) -> ShardReadiness {
    let image = shard.image();
    let registration = match image.brokers.get(&shard.config.node_id) {
        None => Registration::Absent,
        Some(broker) if broker.incarnation != crate::server::incarnation() => {
            Registration::PreviousRun
        }
        Some(broker) if broker.fenced => Registration::Fenced,
        Some(_) => Registration::Unfenced,
    };
    let offline = shard.partitions.offline();
    ShardReadiness {
        shard: shard.id().0,
        registration,
        serving: crate::server::shard_is_serving(),
        partitions: shard.partitions.len(),
        partitions_offline: offline.len(),
        partitions_unopened: unopened(shard, &image, &offline),
    }
}

/// The partitions the image places on this node and this shard that the
/// shard has neither opened nor marked offline.
fn unopened(shard: &Shard, image: &MetadataImage, offline: &[TopicPartition]) -> usize {
    let node_id = shard.config.node_id;
    let mut count = 0;
    for (name, topic) in &image.topics {
        for (index, state) in topic.states.iter().enumerate() {
            let partition = index as i32;
            let here = state.replicas.contains(&node_id)
                && shard.partition_owner(name, partition) == shard.id();
            if !here || shard.partitions.get(name, partition).is_some() {
                continue;
            }
            let key = TopicPartition {
                topic: name.clone(),
                partition,
            };
            if !offline.contains(&key) {
                count += 1;
            }
        }
    }
    count
}

/// The facts, from shard 0 (which has the controller) and every shard.
pub async fn gather(shard: &Rc<Shard>) -> ReadinessFacts {
    let shards = shard
        .mesh
        .submit_to_all(|| async { shard_readiness(&shard::current()) })
        .await
        .unwrap_or_default();
    ReadinessFacts {
        shutting_down: crate::server::shutdown_requested(),
        node_id: shard.config.node_id,
        quorum_leader: shard
            .controller()
            .and_then(|controller| controller.quorum().leader()),
        shards,
    }
}

/// The HTTP response for `GET /ready`: 200 or 503, the reason as the body.
pub async fn ready_response(shard: &Rc<Shard>) -> (u16, String) {
    match verdict(&gather(shard).await) {
        Ok(summary) => (200, summary),
        Err(reason) => (503, format!("not ready: {reason}")),
    }
}

/// A plain-text HTTP/1.1 answer, one request per connection.
pub fn http_response(status: u16, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_shard(shard: usize) -> ShardReadiness {
        ShardReadiness {
            shard,
            registration: Registration::Unfenced,
            serving: true,
            partitions: 2,
            partitions_offline: 0,
            partitions_unopened: 0,
        }
    }

    fn ready_facts() -> ReadinessFacts {
        ReadinessFacts {
            shutting_down: false,
            node_id: 2,
            quorum_leader: Some(1),
            shards: vec![ready_shard(0), ready_shard(1)],
        }
    }

    fn check(change: impl FnOnce(&mut ReadinessFacts), expected: Result<&str, &str>) {
        let mut facts = ready_facts();
        change(&mut facts);
        let got = verdict(&facts);
        match (&got, expected) {
            (Ok(summary), Ok(wanted)) | (Err(summary), Err(wanted)) => {
                assert!(summary.contains(wanted), "{got:?} lacks {wanted:?}")
            }
            _ => panic!("{got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn ready_only_when_every_fact_holds() {
        check(|_| {}, Ok("4 partition(s) open on 2 shard(s)"));
        check(|f| f.shutting_down = true, Err("shutting down"));
        check(|f| f.quorum_leader = None, Err("not joined"));
        check(|f| f.shards.clear(), Err("shards not answering"));
        check(
            |f| f.shards[1].registration = Registration::Absent,
            Err("broker 2 not registered"),
        );
        check(
            |f| f.shards[0].registration = Registration::PreviousRun,
            Err("previous one"),
        );
        check(
            |f| f.shards[1].registration = Registration::Fenced,
            Err("fenced (shard 1)"),
        );
        check(|f| f.shards[0].serving = false, Err("Kafka listener"));
        check(
            |f| f.shards[0].partitions_unopened = 2,
            Err("2 partition(s) of shard 0 not opened yet"),
        );
        check(
            |f| f.shards[1].partitions_offline = 3,
            Err("3 partition(s) failed to open on shard 1"),
        );
    }
}
