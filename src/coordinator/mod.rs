//! Consumer groups and committed offsets (Kafka's classic group protocol).
//!
//! What it owns: every group whose `__consumer_offsets` partition this shard
//! owns and this broker leads, with its members, generation and committed
//! offsets. The coordinator of a group lives on the shard that owns the
//! group's offsets partition ([`coordinator_shard`]), so commits are local
//! appends; handlers on other shards forward group requests there with
//! `mesh.submit_to` ([`submit_to_coordinator`]). In a cluster, the broker
//! that leads the partition coordinates its groups (FindCoordinator names
//! it); the coordinator follows that leadership, loading a partition's
//! groups when it gains it and dropping them when it loses it (Kafka's
//! `onElection`/`onResignation`; see [`runtime`]), and answers
//! NOT_COORDINATOR for groups of partitions it does not lead.
//!
//! The parts:
//! - [`group`]: one group's state machine and offsets, pure data.
//! - [`consumer_group`]: KIP-848's consumer group (the consumer protocol,
//!   ConsumerGroupHeartbeat): members with epochs, server-side assignors,
//!   incremental reconciliation. A [`group::Group`] holds one when it is of
//!   that type; the offsets are shared by both types.
//! - [`manager`]: all groups of a shard and every group operation (join,
//!   sync, heartbeat, leave, commit, fetch, list, describe, delete, expiry,
//!   loading and unloading partitions).
//!   No I/O and no clock: time comes in as `now_ms`, member ids from an
//!   injected generator, and the effects go out through an outbox (replies
//!   to parked requests, records to persist), so it is tested without a
//!   runtime.
//! - [`records`]: Kafka's key/value schemas of `__consumer_offsets` records.
//! - [`store`]: where those records go: the [`store::OffsetsLog`] trait.
//! - [`runtime`]: the thin async layer on a shard: parks JoinGroup and
//!   SyncGroup requests until their rebalance completes, drives the clock
//!   with a glommio timer, follows leadership and loads partitions, appends
//!   records before answering.
//! - [`storage_log`]: the offsets log on `__consumer_offsets` partitions;
//!   [`storage_log::append_committed`] is where an append becomes
//!   committed.
//!
//! It must not touch other shards' groups, and the core must not do I/O.
//!
//! Where it differs from Kafka's classic coordinator, and why:
//! - While a partition loads, its group requests wait for the load (up to
//!   10 s) before answering COORDINATOR_LOAD_IN_PROGRESS: loading is short,
//!   and waiting spares clients a retry (a single node loads its partitions
//!   on the first group request).
//! - Timeouts (session, rebalance, initial delay, KIP-394 pending ids, sync)
//!   are checked on a 25 ms tick ([`runtime::TICK_INTERVAL_MS`]), not by a
//!   timer wheel per member: a timeout fires up to 25 ms late.
//! - A zero `group.initial.rebalance.delay.ms` is never extended (Kafka
//!   extends a zero delay by zero once more); a first rebalance completes at
//!   the next tick.
//! - Transactional offsets (TxnOffsetCommit) are appended as a
//!   transactional batch of the producer, as Kafka does, and count once the
//!   transaction's COMMIT marker is in the partition (`manager::txn_offsets`;
//!   a load replays them at the marker, and restores those still open).
//! - A second JoinGroup or SyncGroup from a member that already has one
//!   parked gets the same answer as the first (Kafka drops the first
//!   callback, so that request only times out).
//! - If an append to `__consumer_offsets` fails, OffsetCommit answers
//!   KAFKA_STORAGE_ERROR but the offsets stay in memory (Kafka reverts
//!   them); group metadata records that fail to append are logged only.
//! - DescribeGroups shows the client host as `/unknown` until the request
//!   context carries the peer address.
//! - OffsetCommit, and the leader's SyncGroup, are answered once their
//!   records are synced to disk (`fdatasync`, group-committed with the
//!   shard's other appends); Kafka answers once the append is replicated,
//!   without a sync. Costs a few milliseconds, more on a busy disk. Until
//!   partition replication lands, a commit lives only on the leader: when
//!   leadership moves, the new coordinator loads what its own copy holds.
//! - A load waits (up to 10 s) for the group's `__consumer_offsets`
//!   partition to open right after the topic is created or leadership
//!   arrives, instead of answering COORDINATOR_NOT_AVAILABLE at once.
//! - Leadership is noticed by polling the shard's image (each request, and
//!   every 25 ms), not by a callback from the metadata log.
//!
//! Where KIP-848 consumer groups differ from Kafka's:
//! - Membership, epochs and target assignments live in memory only; Kafka
//!   persists them as ConsumerGroupMetadata, member, target assignment and
//!   current assignment records. After a restart or a coordinator move the
//!   group has its committed offsets and no members; a member's heartbeat
//!   gets UNKNOWN_MEMBER_ID and the client rejoins with epoch 0 (its
//!   partitions are briefly unowned, never doubly owned). A commit it
//!   sends before rejoining is refused with UNKNOWN_MEMBER_ID (the
//!   application sees the failed commit; the records are read again).
//! - No online migration (Kafka 4's `group.consumer.migration.policy`,
//!   default bidirectional): a classic member cannot join a consumer group
//!   with members (INCONSISTENT_GROUP_PROTOCOL) and a consumer-protocol
//!   member cannot join a classic group with members (GROUP_ID_NOT_FOUND).
//!   An empty group of either type becomes the other, as in Kafka.
//! - Regex subscriptions are resolved against the shard's image on each
//!   heartbeat of the group's members (Kafka resolves them in the
//!   background, at most every `group.consumer.regex.refresh.interval.ms`);
//!   internal topics (`__` prefix) never match.
//! - No rack-aware assignment (the rack id is kept and shown).
//! - The `uniform` assignor is balanced and sticky like Kafka's, but its
//!   choices may differ; `range` is not sticky.
//! - Subscribed topics' metadata is compared on each member's heartbeat
//!   (Kafka refreshes it on a deadline); a topic deleted or grown moves the
//!   group epoch at the next heartbeat.
//! - DescribeGroups describes a consumer group (its state, the assignor as
//!   the protocol, members with their subscriptions and assignments in the
//!   classic consumer protocol's encoding); Kafka describes only classic
//!   members there.

pub mod consumer_group;
pub mod errors;
pub mod group;
pub mod manager;
pub mod records;
pub mod runtime;
pub mod storage_log;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use sluice_shards::{MeshError, ShardId};

use crate::cluster::controller::NewTopic;
use crate::shard::{Shard, CONTROLLER_SHARD};

/// The internal topic that holds group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units, as Kafka computes it.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    })
}

/// Kafka's `partitionFor(groupId)`: the `__consumer_offsets` partition that
/// holds the group. `offsets_partitions` is at least 1 (validated config).
pub fn partition_for_group(group_id: &str, offsets_partitions: i32) -> i32 {
    let partitions = offsets_partitions.max(1);
    (java_string_hash(group_id) & 0x7fff_ffff) % partitions
}

/// The shard that coordinates `group_id`.
pub fn coordinator_shard(group_id: &str, offsets_partitions: i32, nr_shards: usize) -> ShardId {
    let partition = partition_for_group(group_id, offsets_partitions);
    crate::shard::partition_owner(OFFSETS_TOPIC, partition, nr_shards)
}

/// Runs `work` with the coordinator of `group_id`, on its shard: the one
/// hop every group request makes. Its result travels back here. Makes sure
/// `__consumer_offsets` exists first, so the coordinator can append. The
/// error is the code to answer: NOT_COORDINATOR when this broker does not
/// lead the group's partition, COORDINATOR_LOAD_IN_PROGRESS while it loads
/// it, COORDINATOR_NOT_AVAILABLE when the topic or the shard is out of
/// reach.
pub async fn submit_to_coordinator<F, Fut, T>(
    shard: &Shard,
    group_id: &str,
    work: F,
) -> Result<T, i16>
where
    F: FnOnce(Rc<runtime::Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if let Err(error) = ensure_offsets_topic(shard).await {
        tracing::debug!(group_id, %error, "no {OFFSETS_TOPIC} for a group request");
        return Err(errors::COORDINATOR_NOT_AVAILABLE);
    }
    let partitions = shard.config.offsets_topic_num_partitions;
    let partition = partition_for_group(group_id, partitions);
    let owner = crate::shard::partition_owner(OFFSETS_TOPIC, partition, shard.mesh.nr_shards());
    let group = group_id.to_string();
    shard
        .mesh
        .submit_to(owner, move || async move {
            let coordinator = runtime::current();
            coordinator.admit(&group).await?;
            Ok(work(coordinator).await)
        })
        .await
        .unwrap_or_else(|error: MeshError| {
            tracing::warn!(group_id, %error, "could not reach the coordinator shard");
            Err(errors::COORDINATOR_NOT_AVAILABLE)
        })
}

/// Creates `__consumer_offsets` (compacted, `offsets.topic.num.partitions`
/// partitions) through the controller unless this shard's image has it, as
/// Kafka does on first use. A concurrent creation elsewhere is fine.
pub async fn ensure_offsets_topic(shard: &Shard) -> Result<(), String> {
    let config = &shard.config;
    ensure_internal_topic(
        shard,
        OFFSETS_TOPIC,
        config.offsets_topic_num_partitions,
        config.offsets_topic_replication_factor,
    )
    .await
}

/// Creates the compacted internal topic `name` unless this shard's image
/// has it (`__consumer_offsets`, `__transaction_state`).
pub async fn ensure_internal_topic(
    shard: &Shard,
    name: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<(), String> {
    if shard.image().topic(name).is_some() {
        return Ok(());
    }
    // Capped to the live brokers at creation, as Kafka does.
    let live = i16::try_from(shard.image().live_brokers().count()).unwrap_or(i16::MAX);
    let topic = NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor: replication_factor.min(live).max(1),
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        assignments: None,
    };
    let outcome = shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = crate::shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.create_topics(vec![topic], false).await
        })
        .await
        .map_err(|error| error.to_string())?;
    match outcome.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err(error)) if error.code == crate::protocol::error_codes::TOPIC_ALREADY_EXISTS => {
            Ok(())
        }
        Some(Err(error)) => Err(error.message),
        None => Err("the controller answered nothing".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_the_jvm() {
        // `"hello".hashCode()` is 99162322 on a JVM; the rest follow the same
        // formula (h = 31 * h + utf16 unit, wrapping).
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("test-consumer-group"), -1_793_216_381);
    }

    #[test]
    fn partition_for_group_is_kafkas_formula() {
        let check = |group: &str, expected: i32| {
            assert_eq!(partition_for_group(group, 50), expected, "{group}");
        };
        check("", 0);
        check("a", 47);
        check("hello", 22);
        check("my-group", 36);
        check("test-consumer-group", 17);
        // Negative hashes are masked, never negative partitions.
        for group in ["x", "yy", "\u{ffff}\u{ffff}\u{ffff}"] {
            let partition = partition_for_group(group, 7);
            assert!((0..7).contains(&partition));
        }
        assert_eq!(partition_for_group("anything", 0), 0);
    }
}
