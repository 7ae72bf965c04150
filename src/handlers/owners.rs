//! Per-partition work sent to the shards that own the partitions: queued
//! with every owner first, so the owners work at the same time, then
//! gathered by topic and partition. ListOffsets, DeleteRecords and Fetch
//! reads go through here; Produce keeps its own loop because it must also
//! return once its appends are queued (ordering), before they finish.

use std::collections::BTreeMap;
use std::future::Future;

use sluice_shards::ShardId;

use super::RequestContext;

/// A topic and partition, as results are keyed.
pub type PartitionKey = (String, i32);

/// Runs `work` on each owner with that owner's items, and returns every
/// item's result by key. `work` answers its items in order; an owner that
/// cannot be reached (shutting down) answers `unreachable` for each item.
pub async fn gather<T, R, K, F, Fut>(
    context: &RequestContext,
    jobs: BTreeMap<ShardId, Vec<T>>,
    key: K,
    work: F,
    unreachable: R,
) -> BTreeMap<PartitionKey, R>
where
    T: Send + 'static,
    R: Send + Clone + 'static,
    K: Fn(&T) -> PartitionKey,
    F: FnOnce(Vec<T>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Vec<R>> + 'static,
{
    let mut replies = Vec::with_capacity(jobs.len());
    for (owner, items) in jobs {
        let keys: Vec<PartitionKey> = items.iter().map(&key).collect();
        let work = work.clone();
        let reply = context.shard.mesh.send_to(owner, move || work(items)).await;
        replies.push((keys, reply));
    }
    let mut results = BTreeMap::new();
    for (keys, reply) in replies {
        let answers = match reply {
            Ok(reply) => reply.await.ok(),
            Err(_) => None,
        };
        let answers = answers.unwrap_or_else(|| vec![unreachable.clone(); keys.len()]);
        results.extend(keys.into_iter().zip(answers));
    }
    results
}
