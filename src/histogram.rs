//! Latency histograms, shared by the request metrics, the produce stages and
//! the storage engine's sync rounds.
//!
//! Backed by HdrHistogram (two significant digits, nanosecond values up to
//! a minute), so that p99.9 of microsecond latencies is as exact as p50 of
//! seconds; rendered as a Prometheus histogram (the fixed `le` bounds below)
//! and, where a family asks for it, as quantiles.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds of the Prometheus histogram buckets, in microseconds
/// (Prometheus `le`, plus +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// The largest value kept exactly; longer latencies count as this.
const MAX_NS: u64 = 60_000_000_000;
/// Relative precision: two significant digits (1%).
const SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram. Empty ones allocate nothing.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    values_ns: Option<Box<Histogram<u64>>>,
    sum_ns: u128,
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let values = self.values_ns.get_or_insert_with(|| {
            Box::new(
                Histogram::new_with_bounds(1, MAX_NS, SIGNIFICANT_DIGITS)
                    .expect("constant bounds are valid"),
            )
        });
        values.saturating_record(ns.clamp(1, MAX_NS));
        self.sum_ns += u128::from(ns);
    }

    pub fn record_us(&mut self, latency_us: u64) {
        self.record(Duration::from_micros(latency_us));
    }

    pub fn count(&self) -> u64 {
        self.values_ns.as_ref().map_or(0, |values| values.len())
    }

    pub fn sum(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.sum_ns).unwrap_or(u64::MAX))
    }

    /// The value at `quantile` (0.0 to 1.0); zero when empty.
    pub fn quantile(&self, quantile: f64) -> Duration {
        let ns = self
            .values_ns
            .as_ref()
            .map_or(0, |values| values.value_at_quantile(quantile));
        Duration::from_nanos(ns)
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.values_ns.as_ref().map_or(0, |values| values.max()))
    }

    /// Cumulative counts at each of [`LATENCY_BUCKETS_US`], then the total
    /// (+Inf): a Prometheus histogram's `_bucket` samples.
    pub fn cumulative_buckets(&self) -> [u64; LATENCY_BUCKETS_US.len() + 1] {
        let mut buckets = [0; LATENCY_BUCKETS_US.len() + 1];
        let Some(values) = &self.values_ns else {
            return buckets;
        };
        for (bucket, bound_us) in buckets.iter_mut().zip(LATENCY_BUCKETS_US) {
            *bucket = values.count_between(0, bound_us * 1_000);
        }
        buckets[LATENCY_BUCKETS_US.len()] = values.len();
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_to_two_digits_at_microseconds() {
        let mut histogram = LatencyHistogram::default();
        for us in 1..=1000 {
            histogram.record_us(us);
        }
        let p999 = histogram.quantile(0.999).as_micros() as f64;
        assert!((p999 - 999.0).abs() <= 10.0, "p99.9 {p999}");
        let p50 = histogram.quantile(0.5).as_micros() as f64;
        assert!((p50 - 500.0).abs() <= 5.0, "p50 {p50}");
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.sum(), Duration::from_micros(500_500));
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let mut histogram = LatencyHistogram::default();
        histogram.record_us(50);
        histogram.record_us(300);
        histogram.record_us(10_000_000);
        let buckets = histogram.cumulative_buckets();
        assert_eq!(buckets[0], 1); // le 100 µs
        assert_eq!(buckets[2], 2); // le 500 µs
        assert_eq!(buckets[LATENCY_BUCKETS_US.len() - 1], 2); // le 5 s
        assert_eq!(buckets[LATENCY_BUCKETS_US.len()], 3);
    }

    #[test]
    fn empty_histograms_allocate_nothing() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.count(), 0);
        assert_eq!(histogram.quantile(0.99), Duration::ZERO);
        assert_eq!(
            histogram.cumulative_buckets(),
            [0; LATENCY_BUCKETS_US.len() + 1]
        );
        histogram.record(Duration::from_millis(2));
        assert_eq!(histogram.count(), 1);
        assert_eq!(histogram.max().as_millis(), 2);
    }
}
