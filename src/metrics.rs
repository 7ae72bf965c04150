//! Counters of each shard, and the Prometheus text endpoint that reports
//! them.
//!
//! Counters are shard-local `Cell`s (no atomics on the data path). The
//! endpoint runs on shard 0 when `metrics` (`--metrics HOST:PORT`) is set:
//! each scrape asks every shard for a snapshot over the mesh and renders
//! them with a `shard` label. Plain HTTP/1.1, one request per connection.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use kafka_protocol::messages::ApiKey;

use crate::shard::{self, Shard};

/// The most bytes of an HTTP request head the endpoint reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// Upper bounds of the request-latency histogram buckets, in microseconds
/// (Prometheus `le`, plus +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A request-latency histogram: counts per bucket (the last is +Inf) and
/// the sum.
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

#[derive(Default, Debug)]
pub struct ShardMetrics {
    /// Record bytes sent to consumers by `sendfile` (cold reads).
    pub fetch_sendfile_bytes: Cell<u64>,
    /// Record bytes sent to consumers from memory (the read cache).
    pub fetch_memory_bytes: Cell<u64>,
    /// Requests started, by API key.
    pub requests: RefCell<BTreeMap<i16, u64>>,
    /// Connections closed for a bad frame (malformed, oversized, unknown API).
    pub bad_frames: Cell<u64>,
    /// Time from a request's decode to its encoded response, by API key.
    pub latency: RefCell<BTreeMap<i16, LatencyHistogram>>,
}

impl ShardMetrics {
    pub fn add_sendfile_bytes(&self, bytes: u64) {
        self.fetch_sendfile_bytes
            .set(self.fetch_sendfile_bytes.get() + bytes);
    }

    pub fn add_memory_bytes(&self, bytes: u64) {
        self.fetch_memory_bytes
            .set(self.fetch_memory_bytes.get() + bytes);
    }

    pub fn count_request(&self, api_key: ApiKey) {
        *self
            .requests
            .borrow_mut()
            .entry(api_key as i16)
            .or_default() += 1;
    }

    pub fn record_latency(&self, api_key: ApiKey, latency_us: u64) {
        self.latency
            .borrow_mut()
            .entry(api_key as i16)
            .or_default()
            .record(latency_us);
    }

    pub fn count_bad_frame(&self) {
        self.bad_frames.set(self.bad_frames.get() + 1);
    }
}

/// One shard's numbers at one moment: what crosses the mesh to the scraper.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub shard: usize,
    pub fetch_sendfile_bytes: u64,
    pub fetch_memory_bytes: u64,
    pub requests: BTreeMap<i16, u64>,
    pub latency: BTreeMap<i16, LatencyHistogram>,
    pub bad_frames: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub partitions: u64,
    pub log_bytes: u64,
    pub mesh_sent: u64,
    pub mesh_queue_full: u64,
}

pub fn snapshot(shard: &Shard) -> Snapshot {
    let cache = shard.storage.cache_stats();
    let partitions = shard.partitions.all();
    Snapshot {
        shard: shard.id().0,
        fetch_sendfile_bytes: shard.metrics.fetch_sendfile_bytes.get(),
        fetch_memory_bytes: shard.metrics.fetch_memory_bytes.get(),
        requests: shard.metrics.requests.borrow().clone(),
        latency: shard.metrics.latency.borrow().clone(),
        bad_frames: shard.metrics.bad_frames.get(),
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        cache_bytes: cache.bytes as u64,
        partitions: partitions.len() as u64,
        log_bytes: partitions
            .iter()
            .map(|partition| partition.log.size_bytes())
            .sum(),
        mesh_sent: shard.mesh.stats().sent.get(),
        mesh_queue_full: shard.mesh.stats().queue_full.get(),
    }
}

/// Renders snapshots in the Prometheus text format (version 0.0.4).
pub fn render(snapshots: &[Snapshot]) -> String {
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Snapshot) -> u64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for snapshot in snapshots {
            let _ = writeln!(
                text,
                "{name}{{shard=\"{}\"}} {}",
                snapshot.shard,
                value(snapshot)
            );
        }
    };
    family(
        "sluice_fetch_sendfile_bytes_total",
        "counter",
        "Record bytes sent to consumers by sendfile.",
        &|s| s.fetch_sendfile_bytes,
    );
    family(
        "sluice_fetch_memory_bytes_total",
        "counter",
        "Record bytes sent to consumers from memory.",
        &|s| s.fetch_memory_bytes,
    );
    family(
        "sluice_bad_frames_total",
        "counter",
        "Connections closed for a malformed, oversized or unknown frame.",
        &|s| s.bad_frames,
    );
    family(
        "sluice_read_cache_hits_total",
        "counter",
        "Read-cache hits.",
        &|s| s.cache_hits,
    );
    family(
        "sluice_read_cache_misses_total",
        "counter",
        "Read-cache misses.",
        &|s| s.cache_misses,
    );
    family(
        "sluice_read_cache_bytes",
        "gauge",
        "Bytes held by the read cache.",
        &|s| s.cache_bytes,
    );
    family(
        "sluice_partitions",
        "gauge",
        "Partitions owned by the shard.",
        &|s| s.partitions,
    );
    family(
        "sluice_log_bytes",
        "gauge",
        "Bytes of the partition logs owned by the shard.",
        &|s| s.log_bytes,
    );
    family(
        "sluice_mesh_sent_total",
        "counter",
        "Jobs sent to other shards.",
        &|s| s.mesh_sent,
    );
    family(
        "sluice_mesh_queue_full_total",
        "counter",
        "Sends that waited on a full cross-shard queue.",
        &|s| s.mesh_queue_full,
    );
    let _ = writeln!(
        text,
        "# HELP sluice_requests_total Requests started, by API.\n# TYPE sluice_requests_total counter"
    );
    for snapshot in snapshots {
        for (key, count) in &snapshot.requests {
            let _ = writeln!(
                text,
                "sluice_requests_total{{shard=\"{}\",api=\"{}\"}} {count}",
                snapshot.shard,
                api_name(*key)
            );
        }
    }
    let _ = writeln!(
        text,
        "# HELP sluice_request_latency_seconds Time from decode to encoded response, by API.\n# TYPE sluice_request_latency_seconds histogram"
    );
    for snapshot in snapshots {
        for (key, histogram) in &snapshot.latency {
            let labels = format!("shard=\"{}\",api=\"{}\"", snapshot.shard, api_name(*key));
            let mut cumulative = 0;
            for (index, count) in histogram.buckets.iter().enumerate() {
                cumulative += count;
                let bound = LATENCY_BUCKETS_US
                    .get(index)
                    .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(
                    text,
                    "sluice_request_latency_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "sluice_request_latency_seconds_sum{{{labels}}} {}",
                histogram.sum_us as f64 / 1e6
            );
            let _ = writeln!(
                text,
                "sluice_request_latency_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
    }
    text
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |api| format!("{api:?}"))
}

/// Serves the endpoint until the task is dropped.
pub async fn serve(listener: TcpListener, shard: Rc<Shard>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(answer(stream, shard.clone())).detach();
            }
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, shard: Rc<Shard>) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&chunk[..read]),
        }
    }
    let response = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ") {
        let snapshots = shard
            .mesh
            .submit_to_all(|| async { snapshot(&shard::current()) })
            .await
            .unwrap_or_default();
        let body = render(&snapshots);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut first = Snapshot {
            shard: 0,
            fetch_sendfile_bytes: 42,
            ..Snapshot::default()
        };
        first.requests.insert(ApiKey::Produce as i16, 3);
        let mut histogram = LatencyHistogram::default();
        histogram.record(300);
        histogram.record(10_000_000);
        first.latency.insert(ApiKey::Produce as i16, histogram);
        let text = render(&[
            first,
            Snapshot {
                shard: 1,
                ..Snapshot::default()
            },
        ]);
        assert!(text.contains("# TYPE sluice_fetch_sendfile_bytes_total counter"));
        assert!(text.contains("sluice_fetch_sendfile_bytes_total{shard=\"0\"} 42"));
        assert!(text.contains("sluice_fetch_sendfile_bytes_total{shard=\"1\"} 0"));
        assert!(text.contains("sluice_requests_total{shard=\"0\",api=\"Produce\"} 3"));
        let bucket = |le: &str, count: u64| {
            format!("sluice_request_latency_seconds_bucket{{shard=\"0\",api=\"Produce\",le=\"{le}\"}} {count}")
        };
        assert!(text.contains(&bucket("0.00025", 0)), "{text}");
        assert!(text.contains(&bucket("0.0005", 1)), "{text}");
        assert!(text.contains(&bucket("+Inf", 2)), "{text}");
        assert!(
            text.contains("sluice_request_latency_seconds_count{shard=\"0\",api=\"Produce\"} 2")
        );
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
