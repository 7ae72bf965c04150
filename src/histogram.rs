//! A fixed-bucket latency histogram, shared by the request metrics and the
//! storage engine's sync rounds, rendered as a Prometheus histogram.

/// Upper bounds of the latency histogram buckets, in microseconds
/// (Prometheus `le`, plus +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A latency histogram: counts per bucket (the last is +Inf) and the sum.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, latency_us: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| latency_us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index] += 1;
        self.sum_us += latency_us;
        self.count += 1;
    }
}
