//! Consumer groups and committed offsets (Kafka's classic group protocol).
//!
//! What it owns: every group whose `__consumer_offsets` partition this shard
//! owns, with its members, generation and committed offsets. The coordinator
//! of a group lives on the shard that owns the group's offsets partition
//! ([`coordinator_shard`]), so commits are local appends; handlers on other
//! shards forward group requests there with `mesh.submit_to`.
//!
//! The parts:
//! - [`group`]: one group's state machine and offsets, pure data.
//! - [`manager`]: all groups of a shard and every group operation (join,
//!   sync, heartbeat, leave, commit, fetch, list, describe, delete, expiry).
//!   No I/O and no clock: time comes in as `now_ms`, member ids from an
//!   injected generator, and the effects go out through an outbox (replies
//!   to parked requests, records to persist), so it is tested without a
//!   runtime.
//! - [`records`]: Kafka's key/value schemas of `__consumer_offsets` records.
//! - [`store`]: where those records go: the [`store::OffsetsLog`] trait.
//! - [`runtime`]: the thin async layer on a shard: parks JoinGroup and
//!   SyncGroup requests until their rebalance completes, drives the clock
//!   with a glommio timer, appends records before answering.
//!
//! It must not touch other shards' groups, and the core must not do I/O.
//!
//! Where it differs from Kafka's classic coordinator, and why:
//! - While a shard replays `__consumer_offsets`, group requests wait for
//!   the load instead of answering COORDINATOR_LOAD_IN_PROGRESS: loading a
//!   node's own partitions is short, and waiting spares clients a retry.
//! - Timeouts (session, rebalance, initial delay, KIP-394 pending ids, sync)
//!   are checked on a 25 ms tick ([`runtime::TICK_INTERVAL_MS`]), not by a
//!   timer wheel per member: a timeout fires up to 25 ms late.
//! - A zero `group.initial.rebalance.delay.ms` is never extended (Kafka
//!   extends a zero delay by zero once more); a first rebalance completes at
//!   the next tick.
//! - FindCoordinator answers only consumer groups (key type 0); there is no
//!   transaction coordinator yet (key type 1 is INVALID_REQUEST).
//! - A second JoinGroup or SyncGroup from a member that already has one
//!   parked gets the same answer as the first (Kafka drops the first
//!   callback, so that request only times out).
//! - If an append to `__consumer_offsets` fails, OffsetCommit answers
//!   KAFKA_STORAGE_ERROR but the offsets stay in memory (Kafka reverts
//!   them); group metadata records that fail to append are logged only.
//! - DescribeGroups shows the client host as `/unknown` until the request
//!   context carries the peer address.
//! - OffsetFetch `require_stable` is accepted and ignored (no transactional
//!   offset commits exist to wait for).
//! - OffsetCommit, and the leader's SyncGroup, are answered once their
//!   records are synced to disk (`fdatasync`, group-committed with the
//!   shard's other appends); Kafka answers once the append is replicated,
//!   without a sync. Costs a few milliseconds, more on a busy disk.
//! - Group requests wait (up to 10 s) for the group's `__consumer_offsets`
//!   partition to open right after the topic is created, instead of
//!   answering COORDINATOR_NOT_AVAILABLE at once.

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
/// `__consumer_offsets` exists first, so the coordinator can append.
pub async fn submit_to_coordinator<F, Fut, T>(
    shard: &Shard,
    group_id: &str,
    work: F,
) -> Result<T, String>
where
    F: FnOnce(Rc<runtime::Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    ensure_offsets_topic(shard).await?;
    let partitions = shard.config.offsets_topic_num_partitions;
    let partition = partition_for_group(group_id, partitions);
    let owner = crate::shard::partition_owner(OFFSETS_TOPIC, partition, shard.mesh.nr_shards());
    shard
        .mesh
        .submit_to(owner, move || async move {
            wait_for_offsets_partition(partition).await?;
            let coordinator = runtime::current();
            Ok(work(coordinator).await)
        })
        .await
        .map_err(|error: MeshError| error.to_string())?
}

/// How long a group request waits for its `__consumer_offsets` partition to
/// open on the coordinator shard, and how often it looks.
const OFFSETS_PARTITION_WAIT_MS: u64 = 10_000;
const OFFSETS_PARTITION_POLL_MS: u64 = 5;

/// Right after `__consumer_offsets` is created, a shard may already see the
/// topic in its image while the coordinator shard is still opening the
/// partitions; appends would fail. Wait (bounded) until this shard has the
/// group's partition open; otherwise the request answers
/// COORDINATOR_NOT_AVAILABLE and the client retries, as with Kafka.
async fn wait_for_offsets_partition(partition: i32) -> Result<(), String> {
    let shard = crate::shard::current();
    let polls = OFFSETS_PARTITION_WAIT_MS / OFFSETS_PARTITION_POLL_MS;
    for _ in 0..polls {
        if shard.partitions.get(OFFSETS_TOPIC, partition).is_some() {
            return Ok(());
        }
        glommio::timer::sleep(std::time::Duration::from_millis(OFFSETS_PARTITION_POLL_MS)).await;
    }
    Err(format!(
        "{OFFSETS_TOPIC}-{partition} is not open on {}",
        shard.id()
    ))
}

/// Creates `__consumer_offsets` (compacted, `offsets.topic.num.partitions`
/// partitions) through the controller unless this shard's image has it, as
/// Kafka does on first use. A concurrent creation elsewhere is fine.
pub async fn ensure_offsets_topic(shard: &Shard) -> Result<(), String> {
    if shard.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let config = &shard.config;
    // Capped to the live brokers at creation, as Kafka does.
    let live = i16::try_from(shard.image().live_brokers().count()).unwrap_or(i16::MAX);
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: config.offsets_topic_num_partitions,
        replication_factor: config.offsets_topic_replication_factor.min(live).max(1),
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
