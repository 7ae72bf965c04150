//! When records are due, and the clock latencies are measured against.
//!
//! Coordinated omission: a load generator that waits for a slow broker
//! before sending the next record stops measuring exactly when things are
//! bad. In fixed-rate mode every record has an *intended* send time,
//! `start + index / rate`, fixed before the run; its latency is measured
//! from that time, whether or not the generator was able to send it then.
//! A stall of one second at 1,000 records/s thus shows up as 1,000 records
//! with latencies from one second down to zero, as a user of the broker
//! would have seen. In max-throughput mode there is no schedule, and a
//! record's intended time is when it was created.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A schedule of records at a fixed rate, or none (as fast as possible).
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Nanoseconds between records; `None` is max-throughput mode.
    interval_ns: Option<f64>,
    /// Records handed out so far.
    issued: u64,
}

impl Pacer {
    pub fn new(start: Instant, records_per_second: Option<f64>) -> Pacer {
        if let Some(rate) = records_per_second {
            assert!(rate > 0.0, "a fixed rate is positive");
        }
        Pacer {
            start,
            interval_ns: records_per_second.map(|rate| 1e9 / rate),
            issued: 0,
        }
    }

    pub fn is_fixed_rate(&self) -> bool {
        self.interval_ns.is_some()
    }

    /// The intended send time of record `index` of this schedule.
    pub fn intended(&self, index: u64) -> Instant {
        match self.interval_ns {
            Some(interval) => self.start + Duration::from_nanos((index as f64 * interval) as u64),
            None => self.start,
        }
    }

    /// How many more records are due at `now` (all of them in
    /// max-throughput mode, up to `limit`).
    pub fn due(&self, now: Instant, limit: u64) -> u64 {
        match self.interval_ns {
            None => limit,
            Some(interval) => {
                if now < self.start {
                    return 0;
                }
                let elapsed = now.duration_since(self.start).as_nanos() as f64;
                let scheduled = (elapsed / interval).floor() as u64 + 1;
                scheduled.saturating_sub(self.issued).min(limit)
            }
        }
    }

    /// Takes the next record: its index and intended send time (`now` in
    /// max-throughput mode).
    pub fn issue(&mut self, now: Instant) -> (u64, Instant) {
        let index = self.issued;
        self.issued += 1;
        let intended = if self.is_fixed_rate() {
            self.intended(index)
        } else {
            now
        };
        (index, intended)
    }

    /// When the next record is due (`None` in max-throughput mode).
    pub fn next_due(&self) -> Option<Instant> {
        self.interval_ns.map(|_| self.intended(self.issued))
    }
}

/// Latency of a record acknowledged at `done`, measured from its intended
/// send time (never negative).
pub fn latency_us(intended: Instant, done: Instant) -> u64 {
    done.saturating_duration_since(intended).as_micros() as u64
}

/// Maps the monotonic clock to wall-clock nanoseconds, so producers and
/// consumers (possibly in another process on this machine) share a clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_instant: Instant,
    base_unix_ns: u64,
}

impl WallClock {
    pub fn new() -> WallClock {
        WallClock {
            base_instant: Instant::now(),
            base_unix_ns: unix_ns(SystemTime::now()),
        }
    }

    pub fn unix_ns(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base_instant) {
            Some(after) => self.base_unix_ns + after.as_nanos() as u64,
            None => self.base_unix_ns - self.base_instant.duration_since(at).as_nanos() as u64,
        }
    }

    pub fn now_unix_ns(&self) -> u64 {
        self.unix_ns(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    #[test]
    fn fixed_rate_schedule() {
        let start = Instant::now();
        let pacer = Pacer::new(start, Some(1000.0));
        assert_eq!(pacer.due(start, u64::MAX), 1);
        assert_eq!(pacer.due(start + Duration::from_micros(999), u64::MAX), 1);
        assert_eq!(pacer.due(start + Duration::from_millis(1), u64::MAX), 2);
        assert_eq!(pacer.due(start + Duration::from_secs(1), u64::MAX), 1001);
        assert_eq!(pacer.due(start + Duration::from_secs(1), 10), 10);
        assert_eq!(pacer.intended(500), start + Duration::from_millis(500));
    }

    #[test]
    fn issuing_advances_the_schedule_not_the_clock() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, Some(100.0));
        let late = start + Duration::from_secs(1);
        let (index, intended) = pacer.issue(late);
        assert_eq!(index, 0);
        assert_eq!(intended, start, "a late record keeps its intended time");
        let (_, intended) = pacer.issue(late);
        assert_eq!(intended, start + Duration::from_millis(10));
        assert_eq!(pacer.due(late, u64::MAX), 99);
        assert_eq!(pacer.next_due(), Some(start + Duration::from_millis(20)));
    }

    /// The textbook case: 1,000 records/s for 10 s, each answered in 0.1 ms,
    /// except that the broker stalls for 1 s at t = 5 s. A generator that
    /// waits sends nothing during the stall; measured from the intended
    /// times, the stall's records count with the latency they really had.
    #[test]
    fn a_stall_is_measured_from_the_intended_times() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, Some(1000.0));
        let mut corrected = Histogram::<u64>::new(3).unwrap();
        let mut naive = Histogram::<u64>::new(3).unwrap();
        let stall_start = start + Duration::from_secs(5);
        let stall_end = stall_start + Duration::from_secs(1);
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            let due = pacer.due(now, u64::MAX);
            for _ in 0..due {
                let (_, intended) = pacer.issue(now);
                let send = now;
                let mut done = send + Duration::from_micros(100);
                if send >= stall_start && send < stall_end {
                    done = stall_end; // the one request sent into the stall
                }
                corrected.record(latency_us(intended, done)).unwrap();
                naive.record(latency_us(send, done)).unwrap();
                now = done; // the generator waits for the answer
            }
            if due == 0 {
                now = pacer.next_due().unwrap();
            }
        }
        assert_eq!(corrected.len(), 10_000);
        // About 10% of records fall in the stall or its backlog: p90 sees
        // it, and p95 is around half the stall.
        assert!(corrected.value_at_quantile(0.5) <= 200);
        assert!(corrected.value_at_quantile(0.95) >= 400_000);
        assert!(corrected.max() >= 999_000);
        // Waiting for the answer hides the stall in all but one record.
        assert!(naive.value_at_quantile(0.999) <= 200);
        assert!(naive.max() >= 999_000);
    }

    #[test]
    fn max_throughput_latency_starts_at_creation() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, None);
        let later = start + Duration::from_secs(3);
        assert_eq!(pacer.issue(later).1, later);
        assert_eq!(pacer.due(later, 42), 42);
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn wall_clock_is_monotonic_around_its_base() {
        let clock = WallClock::new();
        let now = Instant::now();
        let before = clock.unix_ns(now - Duration::from_millis(5));
        let after = clock.unix_ns(now + Duration::from_millis(5));
        assert_eq!(after - before, 10_000_000);
    }
}
