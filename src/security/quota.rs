//! Client byte-rate quotas, Kafka-style: each client id's produce and fetch
//! bytes per second, measured over `QUOTA_WINDOWS` one-second windows (Kafka's
//! `quota.window.num` 11 and `quota.window.size.seconds` 1), and the throttle
//! time that brings a client over its quota back to it: Kafka's
//! `(observed - quota) / quota * measured window`, bounded by the whole
//! window. Responses carry the time as `throttle_time_ms`, and the
//! connection reads nothing more from the client until it has passed (Kafka
//! mutes the channel).
//!
//! Per shard (a connection stays on the shard that accepted it), so a client
//! id whose connections land on several shards gets the quota on each.
//! Pure: the caller passes the time. Must not: sleep or do I/O.

use std::collections::HashMap;

/// How many one-second windows a rate is measured over (Kafka's default).
pub const QUOTA_WINDOWS: usize = 11;
const WINDOW_MS: u64 = 1_000;
/// The most throttle time one response asks for.
pub const THROTTLE_MS_MAX: u64 = QUOTA_WINDOWS as u64 * WINDOW_MS;
/// Client ids tracked per shard before idle ones are forgotten.
const CLIENTS_MAX: usize = 10_000;

/// The bytes of one client id in its recent windows.
#[derive(Debug, Default)]
struct Samples {
    /// (window start in ms, bytes), oldest first; at most `QUOTA_WINDOWS`.
    windows: Vec<(u64, u64)>,
}

impl Samples {
    fn record(&mut self, now_ms: u64, bytes: u64) {
        let start = now_ms - now_ms % WINDOW_MS;
        let horizon = now_ms.saturating_sub(THROTTLE_MS_MAX);
        self.windows
            .retain(|(window, _)| *window + WINDOW_MS > horizon);
        match self.windows.last_mut() {
            Some((window, total)) if *window == start => *total += bytes,
            _ => self.windows.push((start, bytes)),
        }
        if self.windows.len() > QUOTA_WINDOWS {
            self.windows.remove(0);
        }
    }

    /// Bytes per second over the windows, measured over at least all but
    /// one window's length (Kafka's `Rate`, so a first burst is not judged
    /// over a few milliseconds).
    fn rate(&self, now_ms: u64) -> f64 {
        let Some((oldest, _)) = self.windows.first() else {
            return 0.0;
        };
        let bytes: u64 = self.windows.iter().map(|(_, bytes)| bytes).sum();
        let elapsed_ms = (now_ms - oldest).max((QUOTA_WINDOWS as u64 - 1) * WINDOW_MS);
        bytes as f64 * 1_000.0 / elapsed_ms as f64
    }

    fn elapsed_ms(&self, now_ms: u64) -> u64 {
        self.windows.first().map_or(0, |(oldest, _)| {
            (now_ms - oldest).max((QUOTA_WINDOWS as u64 - 1) * WINDOW_MS)
        })
    }
}

/// One kind of quota (produce or fetch) on one shard.
#[derive(Debug)]
pub struct QuotaTracker {
    /// Bytes per second per client id; `None`: no quota.
    bytes_per_second: Option<u64>,
    clients: HashMap<String, Samples>,
}

impl QuotaTracker {
    /// `bytes_per_second` as configured; Kafka's "no quota" is `i64::MAX`.
    pub fn new(bytes_per_second: u64) -> QuotaTracker {
        QuotaTracker {
            bytes_per_second: (bytes_per_second < i64::MAX as u64).then_some(bytes_per_second),
            clients: HashMap::new(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_second.is_none()
    }

    /// Records `bytes` for `client_id` at `now_ms` and returns how long the
    /// client must wait (0: within its quota).
    pub fn record(&mut self, client_id: &str, bytes: u64, now_ms: u64) -> u64 {
        let Some(quota) = self.bytes_per_second else {
            return 0;
        };
        if self.clients.len() >= CLIENTS_MAX && !self.clients.contains_key(client_id) {
            let horizon = now_ms.saturating_sub(THROTTLE_MS_MAX);
            self.clients
                .retain(|_, samples| samples.windows.last().is_some_and(|(w, _)| *w >= horizon));
        }
        let samples = self.clients.entry(client_id.to_string()).or_default();
        samples.record(now_ms, bytes);
        let rate = samples.rate(now_ms);
        let quota = quota.max(1) as f64;
        if rate <= quota {
            return 0;
        }
        let throttle = (rate - quota) / quota * samples.elapsed_ms(now_ms) as f64;
        (throttle as u64).min(THROTTLE_MS_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_throttles() {
        let mut tracker = QuotaTracker::new(i64::MAX as u64);
        assert!(tracker.is_unlimited());
        assert_eq!(tracker.record("c", u64::MAX / 2, 5), 0);
    }

    #[test]
    fn within_the_quota_is_not_throttled() {
        let mut tracker = QuotaTracker::new(1_000);
        for second in 0..30 {
            assert_eq!(tracker.record("c", 900, 1_000_000 + second * 1_000), 0);
        }
    }

    #[test]
    fn over_the_quota_waits_what_brings_the_rate_back() {
        let mut tracker = QuotaTracker::new(1_000);
        // 20 000 bytes at once: judged over 10 s, 2 000 B/s, twice the quota:
        // wait as long again (10 s) for the rate to fall to 1 000 B/s.
        let throttle = tracker.record("c", 20_000, 1_000_000);
        assert_eq!(throttle, 10_000);
        // Another client is not affected.
        assert_eq!(tracker.record("d", 500, 1_000_000), 0);
        // Bounded by the whole window.
        assert_eq!(tracker.record("c", 10_000_000, 1_000_001), THROTTLE_MS_MAX);
    }

    #[test]
    fn old_windows_are_forgotten() {
        let mut tracker = QuotaTracker::new(1_000);
        assert!(tracker.record("c", 50_000, 1_000_000) > 0);
        // Twelve seconds later the burst is out of every window.
        assert_eq!(tracker.record("c", 100, 1_012_000), 0);
    }
}
