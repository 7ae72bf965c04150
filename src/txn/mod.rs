//! Transactions (KIP-98, with KIP-360 epoch bumps and KIP-447 offsets):
//! the transaction coordinator and the control markers it writes.
//!
//! What it owns: every transactional id whose `__transaction_state`
//! partition this shard owns and this broker leads. As with groups, the
//! coordinator of an id lives on the shard that owns its partition
//! (`abs(hashCode(id)) % transaction.state.log.num.partitions`, Kafka's
//! formula), so its records are local appends; handlers forward to it with
//! [`submit_to_txn_coordinator`].
//!
//! The parts:
//! - [`state`]: the pure state machine (Kafka's `TransactionMetadata`
//!   transitions), returning steps: the answer, the record to make durable
//!   first, the markers to write after.
//! - [`records`]: Kafka's `TransactionLogKey`/`TransactionLogValue` v0.
//! - [`runtime`]: the per-shard async layer: loads a partition's ids when it
//!   is first needed or on the cleanup timer (so a restarted broker resumes
//!   the commits and aborts it had prepared), appends records before
//!   answering, writes markers, aborts timed-out transactions.
//! - [`markers`]: COMMIT/ABORT control batches written on the owning shard
//!   of each partition of a transaction (one hop per shard; WriteTxnMarkers
//!   to the leader when another broker leads it); for
//!   `__consumer_offsets` partitions, the group coordinator there makes the
//!   transaction's offsets visible or drops them.
//!
//! Where it differs from Kafka, and why:
//! - Markers for partitions led by another broker go there with
//!   WriteTxnMarkers, one short-lived connection per call (Kafka keeps a
//!   marker channel per broker).
//! - A transactional Produce is verified against the coordinator when it
//!   is on this broker (KIP-890's verification, with Kafka's
//!   INVALID_TXN_STATE for a partition not in the transaction).

pub mod markers;
pub mod records;
pub mod runtime;
pub mod state;

use std::future::Future;
use std::rc::Rc;

use sluice_shards::MeshError;

use crate::shard::Shard;

/// The internal topic of transaction metadata.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's error codes that transactions answer.
pub mod errors {
    pub use crate::protocol::error_codes::{
        COORDINATOR_NOT_AVAILABLE, INVALID_PRODUCER_EPOCH, NONE, UNKNOWN_TOPIC_OR_PARTITION,
    };
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
}

/// Kafka's `partitionFor(transactionalId)`:
/// `abs(hashCode) % partitions` (Kafka's `Utils.abs` masks the sign bit).
pub fn partition_for_txn(transactional_id: &str, partitions: i32) -> i32 {
    crate::coordinator::partition_for_group(transactional_id, partitions)
}

/// Kafka answers PRODUCER_FENCED only to clients that know it (these API
/// versions and up); older ones get INVALID_PRODUCER_EPOCH.
pub fn fenced_for_version(code: i16, api_version: i16, first_version_knowing: i16) -> i16 {
    if code == errors::PRODUCER_FENCED && api_version < first_version_knowing {
        errors::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// Creates `__transaction_state` (compacted) unless it exists, as Kafka
/// does on the first transactional request.
pub async fn ensure_state_topic(shard: &Shard) -> Result<(), String> {
    crate::coordinator::ensure_internal_topic(
        shard,
        TRANSACTION_STATE_TOPIC,
        shard.config.transaction_state_log_num_partitions,
        shard.config.transaction_state_log_replication_factor,
    )
    .await
}

/// Runs `work` with the coordinator of `transactional_id` on its shard, once
/// it has loaded the id's partition. The error is the code to answer:
/// NOT_COORDINATOR when this broker does not lead the partition,
/// COORDINATOR_NOT_AVAILABLE when it cannot be reached or loaded.
pub async fn submit_to_txn_coordinator<F, Fut, T>(
    shard: &Shard,
    transactional_id: &str,
    work: F,
) -> Result<T, i16>
where
    F: FnOnce(Rc<runtime::TxnCoordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if let Err(error) = ensure_state_topic(shard).await {
        tracing::debug!(transactional_id, %error, "no {TRANSACTION_STATE_TOPIC}");
        return Err(errors::COORDINATOR_NOT_AVAILABLE);
    }
    let partition = partition_for_txn(
        transactional_id,
        shard.config.transaction_state_log_num_partitions,
    );
    let owner = shard.partition_owner(TRANSACTION_STATE_TOPIC, partition);
    shard
        .mesh
        .submit_to(owner, move || async move {
            let coordinator = runtime::current();
            coordinator.admit(partition).await?;
            Ok(work(coordinator).await)
        })
        .await
        .unwrap_or_else(|error: MeshError| {
            tracing::warn!(%error, "could not reach the transaction coordinator shard");
            Err(errors::COORDINATOR_NOT_AVAILABLE)
        })
}
