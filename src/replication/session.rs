//! A follower's side of its fetch session with one leader (Kafka's
//! client-side `FetchSessionHandler`): what the next Fetch must send, and
//! what the leader's answer means for the session. Pure; the fetcher
//! (`fetcher.rs`) owns one per leader connection loop.
//!
//! The first request of a session is full (epoch 0, every partition); the
//! next ones are incremental: only partitions whose fetch position or
//! parameters changed, and `forgotten_topics_data` for those that left
//! (truncating, no longer followed). Any session error, lost answer or
//! sessionless answer starts over with a full fetch.

use std::collections::BTreeMap;

use crate::fetch_session::{next_epoch, FetchParams, INITIAL_EPOCH, INVALID_SESSION_ID};
use crate::partition::TopicPartition;

/// What one Fetch request carries for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFetch {
    pub session_id: i32,
    pub epoch: i32,
    pub to_send: Vec<(TopicPartition, FetchParams)>,
    pub to_forget: Vec<TopicPartition>,
    /// The partitions the session holds once the leader accepts this.
    wanted: BTreeMap<TopicPartition, FetchParams>,
}

impl SessionFetch {
    pub fn is_full(&self) -> bool {
        self.epoch == INITIAL_EPOCH
    }
}

#[derive(Debug, Default)]
pub struct FollowerSession {
    session_id: i32,
    /// The epoch of the next request; 0 means the next one is full.
    epoch: i32,
    /// What the leader's session holds, as last sent.
    sent: BTreeMap<TopicPartition, FetchParams>,
}

impl FollowerSession {
    /// The next request for `wanted` (every partition to fetch, with what
    /// to ask of it).
    pub fn build(&self, wanted: BTreeMap<TopicPartition, FetchParams>) -> SessionFetch {
        if self.epoch == INITIAL_EPOCH {
            return SessionFetch {
                session_id: self.session_id,
                epoch: INITIAL_EPOCH,
                to_send: wanted.iter().map(|(k, p)| (k.clone(), *p)).collect(),
                to_forget: Vec::new(),
                wanted,
            };
        }
        let to_send = wanted
            .iter()
            .filter(|(key, params)| self.sent.get(*key) != Some(*params))
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        let to_forget = self
            .sent
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        SessionFetch {
            session_id: self.session_id,
            epoch: self.epoch,
            to_send,
            to_forget,
            wanted,
        }
    }

    /// The leader answered `fetch` with no top-level error and
    /// `session_id`.
    pub fn answered(&mut self, fetch: SessionFetch, session_id: i32) {
        if fetch.is_full() {
            if session_id == INVALID_SESSION_ID {
                // Sessionless (no room, or sessions off): full again.
                *self = FollowerSession::default();
                return;
            }
            self.session_id = session_id;
            self.epoch = next_epoch(INITIAL_EPOCH);
        } else {
            self.epoch = next_epoch(self.epoch);
        }
        self.sent = fetch.wanted;
    }

    /// The leader refused the session (FETCH_SESSION_ID_NOT_FOUND,
    /// INVALID_FETCH_SESSION_EPOCH, or any top-level error), or its answer
    /// was lost: the next request is full and closes the session it names.
    pub fn reset(&mut self) {
        self.epoch = INITIAL_EPOCH;
        self.sent.clear();
    }

    /// The leader does not know the session: forget its id too.
    pub fn forget(&mut self) {
        *self = FollowerSession::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".to_string(),
            partition,
        }
    }

    fn at(fetch_offset: i64) -> FetchParams {
        FetchParams {
            fetch_offset,
            log_start_offset: 0,
            max_bytes: 1024,
            current_leader_epoch: 3,
            last_fetched_epoch: -1,
        }
    }

    fn wanted(offsets: &[(i32, i64)]) -> BTreeMap<TopicPartition, FetchParams> {
        offsets.iter().map(|&(p, o)| (tp(p), at(o))).collect()
    }

    fn sent(fetch: &SessionFetch) -> Vec<(i32, i64)> {
        fetch
            .to_send
            .iter()
            .map(|(k, p)| (k.partition, p.fetch_offset))
            .collect()
    }

    #[test]
    fn full_then_only_what_changed() {
        let mut session = FollowerSession::default();
        let first = session.build(wanted(&[(0, 0), (1, 0), (2, 0)]));
        assert_eq!((first.session_id, first.epoch), (0, 0));
        assert_eq!(sent(&first).len(), 3);
        session.answered(first, 77);
        let second = session.build(wanted(&[(0, 5), (1, 0), (2, 0)]));
        assert_eq!((second.session_id, second.epoch), (77, 1));
        assert_eq!(sent(&second), [(0, 5)]);
        assert!(second.to_forget.is_empty());
        session.answered(second, 77);
        // Partition 2 leaves (truncating), partition 3 joins.
        let third = session.build(wanted(&[(0, 5), (1, 0), (3, 9)]));
        assert_eq!(third.epoch, 2);
        assert_eq!(sent(&third), [(3, 9)]);
        assert_eq!(third.to_forget, [tp(2)]);
        session.answered(third, 77);
        let idle = session.build(wanted(&[(0, 5), (1, 0), (3, 9)]));
        assert!(idle.to_send.is_empty() && idle.to_forget.is_empty());
        assert_eq!(idle.epoch, 3);
    }

    #[test]
    fn errors_start_over_with_a_full_fetch() {
        let mut session = FollowerSession::default();
        let first = session.build(wanted(&[(0, 0)]));
        session.answered(first, 77);
        // INVALID_FETCH_SESSION_EPOCH or a lost answer: close and reopen.
        session.reset();
        let full = session.build(wanted(&[(0, 4)]));
        assert!(full.is_full());
        assert_eq!((full.session_id, sent(&full)), (77, vec![(0, 4)]));
        // FETCH_SESSION_ID_NOT_FOUND: a fresh session.
        session.forget();
        let fresh = session.build(wanted(&[(0, 4)]));
        assert_eq!((fresh.session_id, fresh.epoch), (0, 0));
    }

    #[test]
    fn a_sessionless_answer_keeps_fetching_in_full() {
        let mut session = FollowerSession::default();
        let first = session.build(wanted(&[(0, 0)]));
        session.answered(first, INVALID_SESSION_ID);
        let again = session.build(wanted(&[(0, 1)]));
        assert!(again.is_full());
        assert_eq!(again.session_id, 0);
    }
}
