//! Counters and latency histograms shared by the workers, and the reporter
//! that prints a progress line each second and writes the HDR interval log.
//!
//! Workers record into a thread-local histogram and merge it into the shared
//! one at most every [`FLUSH_INTERVAL`] (one lock per flush, not per record).
//! Records completed before the end of the warm-up go only to the interval
//! histograms (progress line and log); the ones after it also go to the
//! `measured` histogram the final results come from. A worker flushes at the
//! moment it crosses the warm-up boundary, so the split is exact.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// Latencies are kept in microseconds up to an hour, to 3 significant digits.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One latency measure (produce acknowledgement, or end to end).
pub struct LatencyMetric {
    pub name: &'static str,
    interval: Mutex<Histogram<u64>>,
    pub measured: Mutex<Histogram<u64>>,
}

impl LatencyMetric {
    fn new(name: &'static str) -> LatencyMetric {
        LatencyMetric {
            name,
            interval: Mutex::new(new_histogram()),
            measured: Mutex::new(new_histogram()),
        }
    }

    fn take_interval(&self) -> Histogram<u64> {
        let mut interval = self.interval.lock().unwrap();
        let taken = interval.clone();
        interval.reset();
        taken
    }

    pub fn measured(&self) -> Histogram<u64> {
        self.measured.lock().unwrap().clone()
    }
}

#[derive(Default)]
pub struct Counter {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Everything the workers share.
pub struct Metrics {
    /// When measuring starts: workers read it through `start()` and
    /// `warmup_end()`, and `begin` moves it once consumers are ready.
    base: Instant,
    start_ns: AtomicU64,
    warmup_end_ns: AtomicU64,
    /// Consumers that have their partitions and are fetching.
    pub consumers_ready: AtomicU64,
    pub produce_latency: LatencyMetric,
    pub e2e_latency: LatencyMetric,
    /// Records acknowledged (or sent, with acks=0), with their value bytes.
    pub produced: Counter,
    pub consumed: Counter,
    /// Records whose produce failed, by Kafka error code (-1: connection).
    pub produce_errors: Mutex<BTreeMap<i16, u64>>,
    pub fetch_errors: Mutex<BTreeMap<i16, u64>>,
    pub produce_requests: AtomicU64,
    pub fetch_requests: AtomicU64,
    /// Records sent again (a leader moved, a connection was lost).
    pub produce_retries: AtomicU64,
    /// Set when workers must stop (duration over, or a fatal error).
    pub stop: AtomicBool,
    /// Fatal worker errors, as messages.
    pub failures: Mutex<Vec<String>>,
}

impl Metrics {
    pub fn new(start: Instant, warmup: Duration) -> Metrics {
        Metrics {
            base: start,
            start_ns: AtomicU64::new(0),
            warmup_end_ns: AtomicU64::new(warmup.as_nanos() as u64),
            consumers_ready: AtomicU64::new(0),
            produce_latency: LatencyMetric::new("produce"),
            e2e_latency: LatencyMetric::new("e2e"),
            produced: Counter::default(),
            consumed: Counter::default(),
            produce_errors: Mutex::default(),
            fetch_errors: Mutex::default(),
            produce_requests: AtomicU64::new(0),
            fetch_requests: AtomicU64::new(0),
            produce_retries: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failures: Mutex::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.base + Duration::from_nanos(self.start_ns.load(Ordering::Relaxed))
    }

    pub fn warmup_end(&self) -> Instant {
        self.base + Duration::from_nanos(self.warmup_end_ns.load(Ordering::Relaxed))
    }

    /// Starts the measured run at `start` (after consumers joined their
    /// group, so joining is not counted as latency).
    pub fn begin(&self, start: Instant, warmup: Duration) {
        let offset = start.saturating_duration_since(self.base);
        self.start_ns
            .store(offset.as_nanos() as u64, Ordering::Relaxed);
        self.warmup_end_ns
            .store((offset + warmup).as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count_error(map: &Mutex<BTreeMap<i16, u64>>, code: i16, records: u64) {
        *map.lock().unwrap().entry(code).or_default() += records;
    }

    pub fn fail(&self, message: String) {
        eprintln!("error: {message}");
        self.failures.lock().unwrap().push(message);
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A worker's own histogram for one metric.
pub struct Recorder {
    metrics: Arc<Metrics>,
    e2e: bool,
    local: Histogram<u64>,
    last_flush: Instant,
    measuring: bool,
}

impl Recorder {
    pub fn produce(metrics: Arc<Metrics>) -> Recorder {
        Recorder::new(metrics, false)
    }

    pub fn e2e(metrics: Arc<Metrics>) -> Recorder {
        Recorder::new(metrics, true)
    }

    fn new(metrics: Arc<Metrics>, e2e: bool) -> Recorder {
        Recorder {
            metrics,
            e2e,
            local: new_histogram(),
            last_flush: Instant::now(),
            measuring: false,
        }
    }

    fn metric(&self) -> &LatencyMetric {
        if self.e2e {
            &self.metrics.e2e_latency
        } else {
            &self.metrics.produce_latency
        }
    }

    /// Call once per response with its completion time, before `record`.
    pub fn at(&mut self, now: Instant) {
        if !self.measuring && now >= self.metrics.warmup_end() {
            self.flush();
            self.measuring = true;
        } else if now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.flush();
        }
    }

    pub fn record(&mut self, latency_us: u64) {
        self.local.saturating_record(latency_us.max(1));
    }

    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.local.is_empty() {
            return;
        }
        let metric = self.metric();
        metric.interval.lock().unwrap().add(&self.local).ok();
        if self.measuring {
            metric.measured.lock().unwrap().add(&self.local).ok();
        }
        self.local.reset();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What the progress line shows.
#[derive(Clone, Copy)]
pub struct ProgressConfig {
    pub show_produce: bool,
    pub show_consume: bool,
    pub quiet: bool,
}

/// Prints progress each second and writes the interval log, until the
/// metrics say stop and `done` is set.
pub fn spawn_reporter(
    metrics: Arc<Metrics>,
    done: Arc<AtomicBool>,
    config: ProgressConfig,
    hdr_log: Option<PathBuf>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::Builder::new()
        .name("reporter".into())
        .spawn(move || reporter(&metrics, &done, config, hdr_log))
        .expect("spawning the reporter")
}

fn reporter(
    metrics: &Metrics,
    done: &AtomicBool,
    config: ProgressConfig,
    hdr_log: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut out: Box<dyn std::io::Write> = match &hdr_log {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::sink()),
    };
    let mut serializer = V2DeflateSerializer::new();
    let start = metrics.start();
    let start_wall = SystemTime::now() - start.elapsed();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("sluice loadgen: latencies in microseconds; tags: produce (acknowledgement), e2e (end to end)")
        .with_start_time(start_wall)
        .with_base_time(start_wall)
        .with_max_value_divisor(1000.0);
    let mut log = builder.begin_log_with(&mut out, &mut serializer)?;
    let mut interval_start = start;
    let mut last = (metrics.produced.snapshot(), metrics.consumed.snapshot());
    loop {
        let next_tick = interval_start + Duration::from_secs(1);
        while !done.load(Ordering::Relaxed) && Instant::now() < next_tick {
            let left = next_tick.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        let finishing = done.load(Ordering::Relaxed);
        let interval_end = if finishing { Instant::now() } else { next_tick };
        let elapsed = interval_end.saturating_duration_since(start);
        let mut p99 = Vec::new();
        for metric in [&metrics.produce_latency, &metrics.e2e_latency] {
            let interval = metric.take_interval();
            if !interval.is_empty() {
                let tag = Tag::new(metric.name);
                log.write_histogram(
                    &interval,
                    interval_start.saturating_duration_since(start),
                    interval_end.saturating_duration_since(interval_start),
                    tag,
                )
                .map_err(|error| anyhow::anyhow!("writing the HDR log: {error:?}"))?;
            }
            let measured = metric.measured.lock().unwrap();
            let source = if measured.is_empty() {
                &interval
            } else {
                &*measured
            };
            if !source.is_empty() {
                p99.push(format!(
                    "{} p99 {}",
                    metric.name,
                    format_us(source.value_at_quantile(0.99))
                ));
            }
        }
        let now = (metrics.produced.snapshot(), metrics.consumed.snapshot());
        if !config.quiet && !finishing {
            let mut line = format!("{:>5.0}s", elapsed.as_secs_f64());
            if interval_end <= metrics.warmup_end() {
                line.push_str(" (warm-up)");
            }
            if config.show_produce {
                line.push_str(&format!(
                    " | produced {:>9} rec/s {:>8.1} MB/s",
                    now.0 .0 - last.0 .0,
                    (now.0 .1 - last.0 .1) as f64 / 1e6
                ));
            }
            if config.show_consume {
                line.push_str(&format!(
                    " | consumed {:>9} rec/s {:>8.1} MB/s",
                    now.1 .0 - last.1 .0,
                    (now.1 .1 - last.1 .1) as f64 / 1e6
                ));
            }
            for part in &p99 {
                line.push_str(" | ");
                line.push_str(part);
            }
            eprintln!("{line}");
        }
        last = now;
        interval_start = interval_end;
        if finishing {
            return Ok(());
        }
    }
}

/// Microseconds as a short human figure.
pub fn format_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_records_stay_out_of_the_measured_histogram() {
        let start = Instant::now();
        let metrics = Arc::new(Metrics::new(start, Duration::from_secs(1)));
        let mut recorder = Recorder::produce(metrics.clone());
        recorder.at(start);
        recorder.record(5_000);
        recorder.at(start + Duration::from_secs(2));
        recorder.record(7);
        recorder.flush();
        let measured = metrics.produce_latency.measured();
        assert_eq!(measured.len(), 1);
        assert_eq!(measured.max(), 7);
        assert_eq!(metrics.produce_latency.take_interval().len(), 2);
    }

    #[test]
    fn formats() {
        assert_eq!(format_us(950), "950 µs");
        assert_eq!(format_us(1_500), "1.50 ms");
        assert_eq!(format_us(25_000), "25.0 ms");
        assert_eq!(format_us(12_000_000), "12.0 s");
    }
}
