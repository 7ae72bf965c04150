//! Incremental fetch sessions (KIP-227): one shard's cache of them, as a
//! pure state machine (no I/O, no clock: callers pass `now_ms`).
//!
//! A client (or a follower) opens a session with a FULL fetch (epoch 0);
//! the broker remembers what it asked for and what it was told (high
//! watermark, log start offset) per partition. Its next requests are
//! incremental: they name only the partitions whose fetch position or
//! parameters changed (plus `forgotten_topics_data` to drop some), and the
//! response names only the partitions with something to say. Epoch -1
//! closes a session (a sessionless full fetch). This follows Kafka's
//! `FetchManager`, `FetchSession` and `FetchSessionCacheShard`.
//!
//! Owns: the sessions of the connections one shard accepted, their ids
//! (a range per shard, as Kafka's cache shards), eviction, and the
//! counters `metrics.rs` reports. Runs on that shard only; a connection
//! never moves, so a session is only ever used where it was made. A client
//! that reconnects onto another shard is answered FETCH_SESSION_ID_NOT_FOUND
//! and starts over with a full fetch, as after a Kafka broker restart.
//!
//! Must not: read partitions or know the wire format (`handlers/fetch.rs`
//! turns requests into [`SessionRequest`] and outcomes back into responses).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::partition::TopicPartition;
use crate::protocol::error_codes;

#[cfg(test)]
mod tests;

/// Kafka's `INVALID_SESSION_ID`: no session.
pub const INVALID_SESSION_ID: i32 = 0;
/// A full fetch that opens a session (closing the one it names).
pub const INITIAL_EPOCH: i32 = 0;
/// A full fetch that closes the session it names and opens none.
pub const FINAL_EPOCH: i32 = -1;
/// The first Fetch version that names topics by id (KIP-516). A session
/// opened with ids is continued only with ids, and one opened with names
/// only with names.
pub const TOPIC_IDS_VERSION: i16 = 13;

/// The epoch a session expects after `epoch` (Kafka's `nextEpoch`: it
/// wraps to 1, never to 0, which would mean a full fetch).
pub fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        epoch if epoch < 0 => FINAL_EPOCH,
        i32::MAX => 1,
        epoch => epoch + 1,
    }
}

/// How many of the broker's `max.incremental.fetch.session.cache.slots`
/// shard `shard` of `nr_shards` holds: an even split, the remainder to the
/// lowest shards, so the shards' slots add up to the broker's.
pub fn slots_for_shard(broker_slots: usize, shard: usize, nr_shards: usize) -> usize {
    assert!(shard < nr_shards);
    broker_slots / nr_shards + usize::from(shard < broker_slots % nr_shards)
}

/// The session ids shard `shard` hands out: `[low, high)`, disjoint per
/// shard and never 0, so a session id names its shard (Kafka's
/// `sessionIdRange` per cache shard).
pub fn session_id_range(shard: usize, nr_shards: usize) -> (i32, i32) {
    assert!(shard < nr_shards && nr_shards <= i32::MAX as usize);
    let width = i32::MAX / nr_shards as i32;
    let low = (shard as i32 * width).max(1);
    (low, shard as i32 * width + width)
}

/// The shard that made session `session_id`, if any could have.
pub fn shard_of_session(session_id: i32, nr_shards: usize) -> Option<usize> {
    if session_id <= INVALID_SESSION_ID {
        return None;
    }
    let shard = (session_id / (i32::MAX / nr_shards as i32)) as usize;
    (shard < nr_shards).then_some(shard)
}

/// What a fetcher asks of one partition (the request's per-partition
/// fields a session remembers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchParams {
    pub fetch_offset: i64,
    /// The fetcher's own log start offset (followers), or -1.
    pub log_start_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

/// What the response says of one partition, as far as a session cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Records in the response (after the response's size limit).
    pub has_records: bool,
    pub has_preferred_replica: bool,
}

/// A Fetch request, as the session cache sees it.
#[derive(Clone, Copy, Debug)]
pub struct SessionRequest<'a> {
    pub version: i16,
    pub session_id: i32,
    pub epoch: i32,
    /// From a follower (`replica_id` >= 0): Kafka's privileged sessions.
    pub privileged: bool,
    pub partitions: &'a [(TopicPartition, FetchParams)],
    pub forgotten: &'a [TopicPartition],
}

/// How to serve a request (Kafka's `FetchContext`s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchContext {
    /// Answer only this top-level error, with session 0.
    Error(i16),
    /// Read the request's partitions; answer all of them with session 0.
    Sessionless,
    /// Read the request's partitions, answer all of them, then offer a new
    /// session ([`SessionCache::create_session`]).
    Full,
    /// Read these (the whole session, in its order); answer with
    /// `session_id` and only the partitions
    /// [`SessionCache::incremental_response`] keeps.
    Incremental {
        session_id: i32,
        partitions: Vec<(TopicPartition, FetchParams)>,
    },
}

/// A partition a session remembers.
#[derive(Clone, Debug)]
struct CachedPartition {
    params: FetchParams,
    /// As last sent to the fetcher; -1 after an error, so that the
    /// partition is sent again once the error is gone.
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// Its place in the session's order.
    position: u64,
}

impl CachedPartition {
    /// Whether the response must name this partition, remembering what it
    /// says (Kafka's `maybeUpdateResponseData`).
    fn must_respond(&mut self, outcome: &PartitionOutcome) -> bool {
        let mut respond = outcome.has_records || outcome.has_preferred_replica;
        if self.high_watermark != outcome.high_watermark {
            respond = true;
            self.high_watermark = outcome.high_watermark;
        }
        if self.last_stable_offset != outcome.last_stable_offset {
            respond = true;
            self.last_stable_offset = outcome.last_stable_offset;
        }
        if self.log_start_offset != outcome.log_start_offset {
            respond = true;
            self.log_start_offset = outcome.log_start_offset;
        }
        if outcome.error_code != error_codes::NONE {
            respond = true;
            self.high_watermark = -1;
        }
        respond
    }
}

/// Eviction order: unprivileged before privileged, then smaller before
/// larger, then by id (Kafka's `EvictableKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EvictableKey {
    privileged: bool,
    size: usize,
    id: i32,
}

#[derive(Debug)]
struct Session {
    id: i32,
    /// The epoch the next incremental request must carry.
    epoch: i32,
    privileged: bool,
    uses_topic_ids: bool,
    created_ms: u64,
    last_used_ms: u64,
    /// The size under which the session sits in the eviction sets.
    cached_size: usize,
    partitions: HashMap<TopicPartition, CachedPartition>,
    order: BTreeMap<u64, TopicPartition>,
    next_position: u64,
}

impl Session {
    fn evictable_key(&self) -> EvictableKey {
        EvictableKey {
            privileged: self.privileged,
            size: self.cached_size,
            id: self.id,
        }
    }

    /// Adds a partition at the end, or updates its parameters in place.
    fn upsert(&mut self, key: &TopicPartition, params: FetchParams) -> bool {
        if let Some(cached) = self.partitions.get_mut(key) {
            cached.params = params;
            return false;
        }
        let position = self.next_position;
        self.next_position += 1;
        self.order.insert(position, key.clone());
        self.partitions.insert(
            key.clone(),
            CachedPartition {
                params,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                position,
            },
        );
        true
    }

    fn remove(&mut self, key: &TopicPartition) -> bool {
        let Some(cached) = self.partitions.remove(key) else {
            return false;
        };
        self.order.remove(&cached.position);
        true
    }

    /// Moves a partition to the end of the order, so that partitions that
    /// got no data read first next time (the response's size limit cuts
    /// from the end).
    fn move_to_end(&mut self, key: &TopicPartition) {
        let position = self.next_position;
        let Some(cached) = self.partitions.get_mut(key) else {
            return;
        };
        self.next_position += 1;
        let old = std::mem::replace(&mut cached.position, position);
        if let Some(key) = self.order.remove(&old) {
            self.order.insert(position, key);
        }
    }

    fn targets(&self) -> Vec<(TopicPartition, FetchParams)> {
        self.order
            .values()
            .map(|key| (key.clone(), self.partitions[key].params))
            .collect()
    }
}

/// One shard's counters, for `metrics.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub sessions: u64,
    pub partitions: u64,
    pub evictions_total: u64,
    /// Fetch requests served incrementally (a session continued).
    pub incremental_fetches_total: u64,
    /// Full fetch requests (epoch 0 or -1, and pre-session versions).
    pub full_fetches_total: u64,
    /// Requests refused with a session error.
    pub session_errors_total: u64,
}

impl SessionStats {
    /// The metric families (name, type, help) of [`SessionStats::values`].
    pub const FAMILIES: [(&'static str, &'static str, &'static str); 6] = [
        (
            "sluice_fetch_sessions",
            "gauge",
            "Incremental fetch sessions (KIP-227) the shard keeps.",
        ),
        (
            "sluice_fetch_session_partitions",
            "gauge",
            "Partitions in the shard's fetch sessions.",
        ),
        (
            "sluice_fetch_session_evictions_total",
            "counter",
            "Fetch sessions evicted for new ones.",
        ),
        (
            "sluice_fetch_requests_incremental_total",
            "counter",
            "Fetch requests served in a session.",
        ),
        (
            "sluice_fetch_requests_full_total",
            "counter",
            "Full Fetch requests (epoch 0 or -1).",
        ),
        (
            "sluice_fetch_session_errors_total",
            "counter",
            "Fetch requests refused with a session error.",
        ),
    ];

    pub fn values(&self) -> [u64; 6] {
        [
            self.sessions,
            self.partitions,
            self.evictions_total,
            self.incremental_fetches_total,
            self.full_fetches_total,
            self.session_errors_total,
        ]
    }
}

/// One shard's fetch sessions (Kafka's `FetchSessionCacheShard`).
#[derive(Debug)]
pub struct SessionCache {
    slots: usize,
    eviction_ms: u64,
    id_range: (i32, i32),
    rng_state: u64,
    sessions: HashMap<i32, Session>,
    last_used: BTreeSet<(u64, i32)>,
    /// Sessions any new session may evict (older than `eviction_ms`).
    evictable_by_all: BTreeSet<EvictableKey>,
    /// Sessions a new privileged session may evict: every unprivileged
    /// one, and privileged ones older than `eviction_ms`.
    evictable_by_privileged: BTreeSet<EvictableKey>,
    stats: SessionStats,
}

impl SessionCache {
    /// `slots` sessions at most (0: no sessions), ids from `id_range`,
    /// random ids from `seed`.
    pub fn new(slots: usize, eviction_ms: u64, id_range: (i32, i32), seed: u64) -> SessionCache {
        assert!(INVALID_SESSION_ID < id_range.0 && id_range.0 < id_range.1);
        SessionCache {
            slots,
            eviction_ms,
            id_range,
            rng_state: seed,
            sessions: HashMap::new(),
            last_used: BTreeSet::new(),
            evictable_by_all: BTreeSet::new(),
            evictable_by_privileged: BTreeSet::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.sessions.len() as u64,
            ..self.stats
        }
    }

    /// Decides how to serve `request`, updating the session it continues
    /// (Kafka's `FetchManager.newContext`).
    pub fn new_context(&mut self, now_ms: u64, request: &SessionRequest<'_>) -> FetchContext {
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            if request.session_id != INVALID_SESSION_ID {
                self.remove(request.session_id);
            }
            self.stats.full_fetches_total += 1;
            return if request.epoch == FINAL_EPOCH {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
        }
        let refused = match self.sessions.get(&request.session_id) {
            None => Some(error_codes::FETCH_SESSION_ID_NOT_FOUND),
            Some(session) if session.epoch != request.epoch => {
                Some(error_codes::INVALID_FETCH_SESSION_EPOCH)
            }
            Some(session) if session.uses_topic_ids != (request.version >= TOPIC_IDS_VERSION) => {
                Some(error_codes::FETCH_SESSION_TOPIC_ID_ERROR)
            }
            Some(_) => None,
        };
        if let Some(code) = refused {
            self.stats.session_errors_total += 1;
            return FetchContext::Error(code);
        }
        let session = self
            .sessions
            .get_mut(&request.session_id)
            .expect("checked above");
        for (key, params) in request.partitions {
            session.upsert(key, *params);
        }
        for key in request.forgotten {
            session.remove(key);
        }
        if session.partitions.is_empty() {
            // Emptied by its own request: Kafka closes it.
            self.remove(request.session_id);
            self.stats.full_fetches_total += 1;
            return FetchContext::Sessionless;
        }
        session.epoch = next_epoch(session.epoch);
        let partitions = session.targets();
        self.touch(request.session_id, now_ms);
        self.stats.incremental_fetches_total += 1;
        FetchContext::Incremental {
            session_id: request.session_id,
            partitions,
        }
    }

    /// After a full fetch: a new session remembering what was asked and
    /// answered, if there is room or a session can be evicted for it
    /// (Kafka's `maybeCreateSession`). Its id, or `INVALID_SESSION_ID`.
    pub fn create_session(
        &mut self,
        now_ms: u64,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: &[(TopicPartition, FetchParams, PartitionOutcome)],
    ) -> i32 {
        if self.slots == 0 {
            return INVALID_SESSION_ID;
        }
        let key = EvictableKey {
            privileged,
            size: partitions.len(),
            id: 0,
        };
        if self.sessions.len() >= self.slots && !self.try_evict(key, now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = self.new_session_id();
        let mut session = Session {
            id,
            epoch: next_epoch(INITIAL_EPOCH),
            privileged,
            uses_topic_ids,
            created_ms: now_ms,
            last_used_ms: now_ms,
            cached_size: 0,
            partitions: HashMap::with_capacity(partitions.len()),
            order: BTreeMap::new(),
            next_position: 0,
        };
        for (key, params, outcome) in partitions {
            session.upsert(key, *params);
            let cached = session.partitions.get_mut(key).expect("just added");
            cached.high_watermark = outcome.high_watermark;
            cached.last_stable_offset = outcome.last_stable_offset;
            cached.log_start_offset = outcome.log_start_offset;
        }
        self.last_used.insert((now_ms, id));
        self.sessions.insert(id, session);
        self.index(id, now_ms);
        id
    }

    /// After an incremental fetch: which partitions of `outcomes` (the
    /// session's, in the order read) the response names. Remembers what
    /// it tells the fetcher and moves partitions that got records to the
    /// end. A session gone meanwhile (evicted) keeps every partition.
    pub fn incremental_response(
        &mut self,
        session_id: i32,
        outcomes: &[(TopicPartition, PartitionOutcome)],
    ) -> Vec<bool> {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return vec![true; outcomes.len()];
        };
        outcomes
            .iter()
            .map(|(key, outcome)| {
                let Some(cached) = session.partitions.get_mut(key) else {
                    return true;
                };
                let respond = cached.must_respond(outcome);
                if respond && outcome.has_records {
                    session.move_to_end(key);
                }
                respond
            })
            .collect()
    }

    /// Kafka's `tryEvict`: the least recently used session if it is stale;
    /// otherwise the first evictable session if `key` is worth at least as
    /// much.
    fn try_evict(&mut self, key: EvictableKey, now_ms: u64) -> bool {
        let Some(&(last_used_ms, oldest)) = self.last_used.first() else {
            return false;
        };
        if now_ms.saturating_sub(last_used_ms) > self.eviction_ms {
            self.remove(oldest);
            self.stats.evictions_total += 1;
            return true;
        }
        let candidates = if key.privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        match candidates.first() {
            Some(&first) if key >= first => {
                self.remove(first.id);
                self.stats.evictions_total += 1;
                true
            }
            _ => false,
        }
    }

    /// Marks a session used now and refiles it (Kafka's `touch`).
    fn touch(&mut self, id: i32, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        self.last_used.remove(&(session.last_used_ms, id));
        session.last_used_ms = now_ms;
        self.last_used.insert((now_ms, id));
        self.index(id, now_ms);
    }

    /// Files a session in the eviction sets under its current size.
    fn index(&mut self, id: i32, now_ms: u64) {
        let session = self.sessions.get_mut(&id).expect("indexed sessions exist");
        let old = session.evictable_key();
        self.evictable_by_all.remove(&old);
        self.evictable_by_privileged.remove(&old);
        self.stats.partitions -= session.cached_size as u64;
        session.cached_size = session.partitions.len();
        self.stats.partitions += session.cached_size as u64;
        let key = session.evictable_key();
        let old_enough = now_ms.saturating_sub(session.created_ms) > self.eviction_ms;
        if !session.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
    }

    fn remove(&mut self, id: i32) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        self.last_used.remove(&(session.last_used_ms, id));
        let key = session.evictable_key();
        self.evictable_by_all.remove(&key);
        self.evictable_by_privileged.remove(&key);
        self.stats.partitions -= session.cached_size as u64;
        true
    }

    /// A random unused id of this shard's range (random, as Kafka's, so a
    /// client's id from before a restart is unlikely to name another
    /// client's session).
    fn new_session_id(&mut self) -> i32 {
        let (low, high) = self.id_range;
        let width = (high - low) as u64;
        loop {
            let id = low + (self.next_random() % width) as i32;
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        splitmix64(&mut self.rng_state)
    }
}

/// splitmix64: a small, seeded, good-enough source of session ids.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
