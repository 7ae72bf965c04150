//! When to retry, what to refresh first, and how long to wait: a pure
//! function of an attempt's outcome, so every request path (and the tests)
//! follow one policy.
//!
//! - A partition that moved or is moving (NOT_LEADER_OR_FOLLOWER,
//!   LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
//!   UNKNOWN_LEADER_EPOCH) and a lost connection: refresh Metadata, retry.
//! - A coordinator that moved or is loading: find the coordinator again, retry.
//! - Transient broker states (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, ...):
//!   retry as is.
//! - Anything else: give up and report.
//!
//! Waits grow exponentially from `backoff` to `backoff_max`; nothing is
//! retried once `budget` has passed since the first attempt.

use std::time::Duration;

use crate::errors::codes;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The broker answered with this error code.
    Error(i16),
    /// The connection failed; the request's fate is unknown.
    ConnectionLost,
}

/// What to refresh before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Nothing,
    /// Leaders and broker addresses (Metadata).
    Metadata,
    /// The group coordinator (FindCoordinator).
    Coordinator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Done,
    GiveUp,
    Retry { refresh: Refresh, after: Duration },
}

/// The class of an error code: what refreshing it needs, or `None` when
/// retrying cannot help.
pub fn classify(code: i16) -> Option<Refresh> {
    use codes::*;
    match code {
        NOT_LEADER_OR_FOLLOWER
        | LEADER_NOT_AVAILABLE
        | UNKNOWN_TOPIC_OR_PARTITION
        | FENCED_LEADER_EPOCH
        | UNKNOWN_LEADER_EPOCH
        | KAFKA_STORAGE_ERROR => Some(Refresh::Metadata),
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => Some(Refresh::Coordinator),
        REQUEST_TIMED_OUT
        | NETWORK_EXCEPTION
        | NOT_ENOUGH_REPLICAS
        | NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | COORDINATOR_LOAD_IN_PROGRESS
        | OFFSET_NOT_AVAILABLE => Some(Refresh::Nothing),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// No retry starts later than this after the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub fn with_budget(budget: Duration) -> RetryPolicy {
        RetryPolicy {
            budget,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }

    /// What to do after attempt number `attempt` (0 for the first) ended
    /// with `outcome`, `elapsed` after the first attempt started.
    pub fn decide(&self, outcome: Outcome, attempt: u32, elapsed: Duration) -> Decision {
        let refresh = match outcome {
            Outcome::Ok => return Decision::Done,
            Outcome::ConnectionLost => Refresh::Metadata,
            Outcome::Error(code) => match classify(code) {
                Some(refresh) => refresh,
                None => return Decision::GiveUp,
            },
        };
        let after = self.backoff(attempt);
        if elapsed + after > self.budget {
            return Decision::GiveUp;
        }
        Decision::Retry { refresh, after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn leader_moves_refresh_metadata() {
        let policy = RetryPolicy::default();
        for code in [
            codes::NOT_LEADER_OR_FOLLOWER,
            codes::LEADER_NOT_AVAILABLE,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            codes::FENCED_LEADER_EPOCH,
        ] {
            assert_eq!(
                policy.decide(Outcome::Error(code), 0, Duration::ZERO),
                Decision::Retry {
                    refresh: Refresh::Metadata,
                    after: 100 * MS
                },
                "code {code}"
            );
        }
        assert_eq!(
            policy.decide(Outcome::ConnectionLost, 1, Duration::ZERO),
            Decision::Retry {
                refresh: Refresh::Metadata,
                after: 200 * MS
            }
        );
    }

    #[test]
    fn coordinators_transients_and_the_rest() {
        let policy = RetryPolicy::default();
        let refresh_of = |code| match policy.decide(Outcome::Error(code), 0, Duration::ZERO) {
            Decision::Retry { refresh, .. } => Some(refresh),
            _ => None,
        };
        assert_eq!(
            refresh_of(codes::NOT_COORDINATOR),
            Some(Refresh::Coordinator)
        );
        assert_eq!(refresh_of(codes::REQUEST_TIMED_OUT), Some(Refresh::Nothing));
        assert_eq!(
            refresh_of(codes::NOT_ENOUGH_REPLICAS),
            Some(Refresh::Nothing)
        );
        assert_eq!(refresh_of(codes::TOPIC_ALREADY_EXISTS), None);
        assert_eq!(refresh_of(codes::INVALID_PRODUCER_EPOCH), None);
        assert_eq!(
            policy.decide(Outcome::Ok, 3, Duration::from_secs(99)),
            Decision::Done
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_and_the_budget_ends_retries() {
        let policy = RetryPolicy::with_budget(Duration::from_secs(2));
        let waits: Vec<u64> = (0..6)
            .map(|attempt| policy.backoff(attempt).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(1));
        let late = policy.decide(
            Outcome::Error(codes::NOT_LEADER_OR_FOLLOWER),
            4,
            Duration::from_millis(1500),
        );
        assert_eq!(late, Decision::GiveUp);
    }
}
