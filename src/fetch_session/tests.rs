//! The session state machine, driven request by request.

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.to_string(),
        partition,
    }
}

fn params(fetch_offset: i64) -> FetchParams {
    FetchParams {
        fetch_offset,
        log_start_offset: -1,
        max_bytes: 1 << 20,
        current_leader_epoch: -1,
        last_fetched_epoch: -1,
    }
}

fn outcome(high_watermark: i64, has_records: bool) -> PartitionOutcome {
    PartitionOutcome {
        error_code: error_codes::NONE,
        high_watermark,
        last_stable_offset: high_watermark,
        log_start_offset: 0,
        has_records,
        has_preferred_replica: false,
    }
}

fn cache(slots: usize, eviction_ms: u64) -> SessionCache {
    SessionCache::new(slots, eviction_ms, (1, 1000), 7)
}

fn request<'a>(
    session_id: i32,
    epoch: i32,
    partitions: &'a [(TopicPartition, FetchParams)],
    forgotten: &'a [TopicPartition],
) -> SessionRequest<'a> {
    SessionRequest {
        version: 12,
        session_id,
        epoch,
        privileged: false,
        partitions,
        forgotten,
    }
}

/// A full fetch of `partitions` (all at offset 0, high watermark 10) that
/// opens a session; its id.
fn open(
    cache: &mut SessionCache,
    now_ms: u64,
    privileged: bool,
    partitions: &[TopicPartition],
) -> i32 {
    let asked: Vec<_> = partitions
        .iter()
        .map(|key| (key.clone(), params(0)))
        .collect();
    let full = SessionRequest {
        privileged,
        ..request(0, INITIAL_EPOCH, &asked, &[])
    };
    assert_eq!(cache.new_context(now_ms, &full), FetchContext::Full);
    let answered: Vec<_> = asked
        .into_iter()
        .map(|(key, params)| (key, params, outcome(10, false)))
        .collect();
    cache.create_session(now_ms, privileged, false, &answered)
}

fn targets(context: &FetchContext) -> Vec<(String, i32, i64)> {
    let FetchContext::Incremental { partitions, .. } = context else {
        panic!("expected an incremental context, got {context:?}")
    };
    partitions
        .iter()
        .map(|(key, params)| (key.topic.clone(), key.partition, params.fetch_offset))
        .collect()
}

#[test]
fn next_epoch_wraps_to_one_and_keeps_final() {
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(41), 42);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(-1), FINAL_EPOCH);
    assert_eq!(next_epoch(-7), FINAL_EPOCH);
}

#[test]
fn slots_split_over_shards_add_up() {
    for (broker_slots, nr_shards) in [(1000, 4), (2, 2), (1, 2), (0, 3), (7, 3)] {
        let split: Vec<usize> = (0..nr_shards)
            .map(|shard| slots_for_shard(broker_slots, shard, nr_shards))
            .collect();
        assert_eq!(split.iter().sum::<usize>(), broker_slots, "{split:?}");
        assert!(split.iter().max().unwrap() - split.iter().min().unwrap() <= 1);
    }
}

#[test]
fn session_ids_name_their_shard() {
    for nr_shards in [1, 2, 3, 64] {
        for shard in 0..nr_shards {
            let (low, high) = session_id_range(shard, nr_shards);
            assert!(low >= 1 && low < high);
            assert_eq!(shard_of_session(low, nr_shards), Some(shard));
            assert_eq!(shard_of_session(high - 1, nr_shards), Some(shard));
        }
    }
    assert_eq!(shard_of_session(0, 2), None);
    assert_eq!(shard_of_session(-5, 2), None);
    let mut cache = SessionCache::new(100, 0, session_id_range(1, 3), 1);
    for _ in 0..50 {
        let id = open(&mut cache, 0, false, &[tp("a", 0)]);
        assert_eq!(shard_of_session(id, 3), Some(1));
    }
}

#[test]
fn a_full_fetch_opens_a_session_at_epoch_one() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0), tp("a", 1)]);
    assert_ne!(id, INVALID_SESSION_ID);
    let stats = cache.stats();
    assert_eq!(
        (stats.sessions, stats.partitions, stats.full_fetches_total),
        (1, 2, 1)
    );
    // Epoch 1 continues it; the same epoch again is refused.
    let context = cache.new_context(1, &request(id, 1, &[], &[]));
    assert_eq!(targets(&context), [("a".into(), 0, 0), ("a".into(), 1, 0)]);
    assert_eq!(
        cache.new_context(2, &request(id, 1, &[], &[])),
        FetchContext::Error(error_codes::INVALID_FETCH_SESSION_EPOCH)
    );
    assert!(matches!(
        cache.new_context(3, &request(id, 2, &[], &[])),
        FetchContext::Incremental { .. }
    ));
    assert_eq!(cache.stats().incremental_fetches_total, 2);
    assert_eq!(cache.stats().session_errors_total, 1);
}

#[test]
fn an_unknown_session_is_not_found() {
    let mut cache = cache(10, 1000);
    assert_eq!(
        cache.new_context(0, &request(123, 1, &[], &[])),
        FetchContext::Error(error_codes::FETCH_SESSION_ID_NOT_FOUND)
    );
}

#[test]
fn incremental_requests_add_update_and_forget_partitions() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0), tp("a", 1)]);
    let changed = [(tp("a", 1), params(5)), (tp("b", 0), params(0))];
    let context = cache.new_context(1, &request(id, 1, &changed, &[tp("a", 0)]));
    assert_eq!(targets(&context), [("a".into(), 1, 5), ("b".into(), 0, 0)]);
    assert_eq!(cache.stats().partitions, 2);
    // Forgetting what the session does not hold is no error.
    let context = cache.new_context(2, &request(id, 2, &[], &[tp("zz", 9)]));
    assert_eq!(targets(&context).len(), 2);
}

#[test]
fn forgetting_every_partition_closes_the_session() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0)]);
    assert_eq!(
        cache.new_context(1, &request(id, 1, &[], &[tp("a", 0)])),
        FetchContext::Sessionless
    );
    assert_eq!(cache.stats().sessions, 0);
    assert_eq!(cache.stats().partitions, 0);
}

#[test]
fn full_fetches_close_the_session_they_name() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0)]);
    // Epoch 0 with the id: closed, and a new full fetch (a new session).
    assert_eq!(
        cache.new_context(1, &request(id, 0, &[], &[])),
        FetchContext::Full
    );
    assert_eq!(cache.stats().sessions, 0);
    let id = open(&mut cache, 2, false, &[tp("a", 0)]);
    // Epoch -1: closed, and no new session.
    assert_eq!(
        cache.new_context(3, &request(id, FINAL_EPOCH, &[], &[])),
        FetchContext::Sessionless
    );
    assert_eq!(cache.stats().sessions, 0);
    assert_eq!(
        cache.new_context(4, &request(id, 1, &[], &[])),
        FetchContext::Error(error_codes::FETCH_SESSION_ID_NOT_FOUND)
    );
}

#[test]
fn a_session_opened_with_names_is_not_continued_with_ids() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0)]);
    let with_ids = SessionRequest {
        version: TOPIC_IDS_VERSION,
        ..request(id, 1, &[], &[])
    };
    assert_eq!(
        cache.new_context(1, &with_ids),
        FetchContext::Error(error_codes::FETCH_SESSION_TOPIC_ID_ERROR)
    );
}

#[test]
fn incremental_responses_name_only_partitions_with_news() {
    let mut cache = cache(10, 1000);
    let keys = [tp("a", 0), tp("a", 1), tp("a", 2), tp("a", 3), tp("a", 4)];
    let id = open(&mut cache, 0, false, &keys);
    cache.new_context(1, &request(id, 1, &[], &[]));
    let mut moved_start = outcome(10, false);
    moved_start.log_start_offset = 3;
    let mut failed = outcome(10, false);
    failed.error_code = error_codes::NOT_LEADER_OR_FOLLOWER;
    let mut preferred = outcome(10, false);
    preferred.has_preferred_replica = true;
    let outcomes = [
        (keys[0].clone(), outcome(10, false)), // nothing new
        (keys[1].clone(), outcome(11, false)), // high watermark moved
        (keys[2].clone(), moved_start),
        (keys[3].clone(), failed),
        (keys[4].clone(), preferred),
    ];
    assert_eq!(
        cache.incremental_response(id, &outcomes),
        [false, true, true, true, true]
    );
    // What was said is remembered; the failed partition is sent again
    // once it recovers (its high watermark was forgotten).
    cache.new_context(2, &request(id, 2, &[], &[]));
    let outcomes = [
        (keys[0].clone(), outcome(10, true)), // records
        (keys[1].clone(), outcome(11, false)),
        (keys[2].clone(), moved_start),
        (keys[3].clone(), outcome(10, false)),
        (keys[4].clone(), outcome(10, false)),
    ];
    assert_eq!(
        cache.incremental_response(id, &outcomes),
        [true, false, false, true, false]
    );
}

#[test]
fn partitions_that_got_records_read_last_next_time() {
    let mut cache = cache(10, 1000);
    let keys = [tp("a", 0), tp("a", 1), tp("b", 0)];
    let id = open(&mut cache, 0, false, &keys);
    cache.new_context(1, &request(id, 1, &[], &[]));
    let outcomes = [
        (keys[0].clone(), outcome(10, true)),
        (keys[1].clone(), outcome(10, false)),
        (keys[2].clone(), outcome(10, false)),
    ];
    cache.incremental_response(id, &outcomes);
    let context = cache.new_context(2, &request(id, 2, &[], &[]));
    assert_eq!(
        targets(&context),
        [("a".into(), 1, 0), ("b".into(), 0, 0), ("a".into(), 0, 0)]
    );
}

#[test]
fn an_evicted_session_answers_everything() {
    let mut cache = cache(10, 1000);
    assert_eq!(
        cache.incremental_response(99, &[(tp("a", 0), outcome(10, false))]),
        [true]
    );
}

#[test]
fn zero_slots_open_no_session() {
    let mut cache = cache(0, 0);
    assert_eq!(open(&mut cache, 0, true, &[tp("a", 0)]), INVALID_SESSION_ID);
    assert_eq!(cache.stats().sessions, 0);
}

#[test]
fn a_full_cache_evicts_a_stale_session_first() {
    let mut cache = cache(2, 100);
    let old = open(&mut cache, 0, false, &[tp("a", 0)]);
    let recent = open(&mut cache, 50, false, &[tp("a", 0)]);
    // Both in use within 100 ms, same size: no room, nothing evicted.
    assert_eq!(
        open(&mut cache, 60, false, &[tp("a", 0)]),
        INVALID_SESSION_ID
    );
    // At 120 ms the first is stale (unused for more than 100 ms).
    let new = open(&mut cache, 120, false, &[tp("a", 0)]);
    assert_ne!(new, INVALID_SESSION_ID);
    assert_eq!(cache.stats().evictions_total, 1);
    assert_eq!(
        cache.new_context(121, &request(old, 1, &[], &[])),
        FetchContext::Error(error_codes::FETCH_SESSION_ID_NOT_FOUND)
    );
    assert!(matches!(
        cache.new_context(122, &request(recent, 1, &[], &[])),
        FetchContext::Incremental { .. }
    ));
}

#[test]
fn a_larger_session_evicts_a_smaller_one_only_once_it_is_not_new() {
    let mut cache = cache(1, 100);
    let small = open(&mut cache, 0, false, &[tp("a", 0)]);
    let three = [tp("b", 0), tp("b", 1), tp("b", 2)];
    // The small session is recent (created 50 ms ago, used 0 ms ago).
    assert!(matches!(
        cache.new_context(50, &request(small, 1, &[], &[])),
        FetchContext::Incremental { .. }
    ));
    assert_eq!(open(&mut cache, 60, false, &three), INVALID_SESSION_ID);
    // Used again at 140: not stale, but created over 100 ms ago.
    cache.new_context(140, &request(small, 2, &[], &[]));
    let large = open(&mut cache, 150, false, &three);
    assert_ne!(large, INVALID_SESSION_ID);
    assert_eq!(cache.stats().evictions_total, 1);
    assert_eq!(cache.stats().partitions, 3);
    // A smaller one cannot push the larger one out.
    cache.new_context(260, &request(large, 1, &[], &[]));
    assert_eq!(
        open(&mut cache, 270, false, &[tp("a", 0)]),
        INVALID_SESSION_ID
    );
}

#[test]
fn followers_evict_consumers_and_are_evicted_last() {
    let mut cache = cache(1, 100_000);
    let consumer = open(&mut cache, 0, false, &[tp("a", 0), tp("a", 1), tp("a", 2)]);
    // A privileged (follower) session evicts even a new, larger consumer
    // session.
    let follower = open(&mut cache, 1, true, &[tp("a", 0)]);
    assert_ne!(follower, INVALID_SESSION_ID);
    assert_eq!(
        cache.new_context(2, &request(consumer, 1, &[], &[])),
        FetchContext::Error(error_codes::FETCH_SESSION_ID_NOT_FOUND)
    );
    // A consumer cannot evict the follower, however large.
    let many: Vec<_> = (0..50).map(|p| tp("c", p)).collect();
    assert_eq!(open(&mut cache, 3, false, &many), INVALID_SESSION_ID);
    // Nor can another follower while it is new.
    assert_eq!(open(&mut cache, 4, true, &many), INVALID_SESSION_ID);
    assert_eq!(cache.stats().evictions_total, 1);
}

#[test]
fn duplicate_partitions_in_a_full_fetch_are_cached_once() {
    let mut cache = cache(10, 1000);
    let id = open(&mut cache, 0, false, &[tp("a", 0), tp("a", 0)]);
    assert_eq!(cache.stats().partitions, 1);
    let context = cache.new_context(1, &request(id, 1, &[], &[]));
    assert_eq!(targets(&context).len(), 1);
}

/// The cache's bookkeeping agrees with its sessions.
fn check_invariants(cache: &SessionCache, context: &str) {
    assert!(cache.sessions.len() <= cache.slots, "{context}");
    let partitions: usize = cache.sessions.values().map(|s| s.partitions.len()).sum();
    assert_eq!(cache.stats.partitions, partitions as u64, "{context}");
    assert_eq!(cache.last_used.len(), cache.sessions.len(), "{context}");
    for (id, session) in &cache.sessions {
        assert_eq!(session.id, *id, "{context}");
        assert!(
            cache.last_used.contains(&(session.last_used_ms, *id)),
            "{context}"
        );
        assert_eq!(session.cached_size, session.partitions.len(), "{context}");
        assert_eq!(session.order.len(), session.partitions.len(), "{context}");
        for (position, key) in &session.order {
            assert_eq!(session.partitions[key].position, *position, "{context}");
        }
    }
    for key in cache
        .evictable_by_all
        .iter()
        .chain(&cache.evictable_by_privileged)
    {
        let session = &cache.sessions[&key.id];
        assert_eq!(session.evictable_key(), *key, "{context}");
    }
}

/// Reproducible churn.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        splitmix64(&mut self.0) % bound
    }
}

/// Followers' client sessions (`replication::session`) against one cache
/// with too few slots, under random churn of what each fetches: whenever
/// the cache serves a request incrementally, it reads exactly what that
/// client wants, at the offsets it last sent; errors lead the client back
/// to a full fetch; the bookkeeping stays consistent.
#[test]
fn client_sessions_and_the_cache_agree_under_churn() {
    use crate::replication::session::FollowerSession;
    use std::collections::BTreeMap;

    for seed in 0..40u64 {
        let mut random = Random(seed);
        let mut cache = SessionCache::new(2, 15, (1, 1 << 20), seed);
        let mut clients: Vec<(FollowerSession, BTreeMap<TopicPartition, FetchParams>)> =
            (0..4).map(|_| Default::default()).collect();
        let mut now_ms = 0;
        let mut served = [0u32; 3];
        for step in 0..400 {
            let context = format!("seed {seed} step {step}");
            now_ms += random.below(10);
            let index = random.below(clients.len() as u64) as usize;
            let (client, wanted) = &mut clients[index];
            let key = tp(["a", "b"][random.below(2) as usize], random.below(6) as i32);
            match random.below(4) {
                0 => {
                    wanted.insert(key, params(random.below(100) as i64));
                }
                1 => {
                    wanted.remove(&key);
                }
                2 => {
                    if let Some(params) = wanted.values_mut().next() {
                        params.fetch_offset += 1;
                    }
                }
                _ => {}
            }
            if wanted.is_empty() {
                continue;
            }
            let fetch = client.build(wanted.clone());
            let request = SessionRequest {
                version: 12,
                session_id: fetch.session_id,
                epoch: fetch.epoch,
                privileged: index == 0,
                partitions: &fetch.to_send,
                forgotten: &fetch.to_forget,
            };
            match cache.new_context(now_ms, &request) {
                FetchContext::Error(code) if code == error_codes::FETCH_SESSION_ID_NOT_FOUND => {
                    served[2] += 1;
                    client.forget();
                }
                FetchContext::Error(code) => panic!("{context}: a well-behaved client got {code}"),
                FetchContext::Sessionless => panic!("{context}: a client that never closes"),
                FetchContext::Full => {
                    served[0] += 1;
                    let asked: BTreeMap<_, _> = fetch.to_send.iter().cloned().collect();
                    assert_eq!(&asked, wanted, "{context}");
                    let answered: Vec<_> = fetch
                        .to_send
                        .iter()
                        .map(|(key, params)| (key.clone(), *params, outcome(10, false)))
                        .collect();
                    let id = cache.create_session(now_ms, index == 0, false, &answered);
                    client.answered(fetch, id);
                }
                FetchContext::Incremental {
                    session_id,
                    partitions,
                } => {
                    served[1] += 1;
                    let read: BTreeMap<_, _> = partitions.iter().cloned().collect();
                    assert_eq!(partitions.len(), read.len(), "{context}: read once each");
                    assert_eq!(&read, wanted, "{context}");
                    let outcomes: Vec<_> = partitions
                        .iter()
                        .map(|(key, _)| (key.clone(), outcome(10, random.below(3) == 0)))
                        .collect();
                    cache.incremental_response(session_id, &outcomes);
                    client.answered(fetch, session_id);
                }
            }
            check_invariants(&cache, &context);
        }
        assert!(
            served.iter().all(|&n| n > 0),
            "seed {seed}: full, incremental, not found: {served:?}"
        );
    }
}
