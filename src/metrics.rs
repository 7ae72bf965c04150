//! Counters of each shard, and the Prometheus text endpoint that reports
//! them.
//!
//! Counters are shard-local `Cell`s (no atomics on the data path). The
//! endpoint runs on shard 0 when `metrics` (`--metrics HOST:PORT`) is set:
//! each scrape asks every shard for a snapshot over the mesh and renders
//! them with a `shard` label. Plain HTTP/1.1, one request per connection.
//! The same port answers the probes `GET /health` and `GET /ready`
//! (`probes.rs`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::coordinator::runtime::{self, GroupMetrics};
use crate::fetch_session::SessionStats;
pub use crate::histogram::{LatencyHistogram, LATENCY_BUCKETS_US};
use crate::protocol::response_errors::visit_error_codes;

use crate::shard::{self, Shard};
use crate::stages::{ProduceStages, StageHistograms};

/// The most bytes of an HTTP request head the endpoint reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// What one API has seen on one shard.
#[derive(Clone, Debug, Default)]
pub struct ApiMetrics {
    /// Requests started.
    pub requests: u64,
    /// Request frame bytes read, size prefix included.
    pub request_bytes: u64,
    /// Response bytes written, size prefix and file regions included.
    pub response_bytes: u64,
    /// Error codes in responses, by code (an error per partition or
    /// resource counts once each, as Kafka's `ErrorsPerSec`).
    pub errors: BTreeMap<i16, u64>,
    /// Time from a request's decode to its encoded response.
    pub latency: LatencyHistogram,
}

#[derive(Default, Debug)]
pub struct ShardMetrics {
    /// Record bytes sent to consumers by `sendfile` (cold reads).
    pub fetch_sendfile_bytes: Cell<u64>,
    /// Record bytes sent to consumers from memory (the read cache).
    pub fetch_memory_bytes: Cell<u64>,
    /// Connections closed for a bad frame (malformed, oversized, unknown API).
    pub bad_frames: Cell<u64>,
    /// Client connections accepted, and those open now.
    pub connections_accepted: Cell<u64>,
    pub connections_open: Cell<u64>,
    /// SASL exchanges that failed (wrong credentials, malformed tokens).
    pub sasl_authentication_failures: Cell<u64>,
    /// TLS handshakes that failed (bad certificate, not TLS, timeout).
    pub tls_handshake_failures: Cell<u64>,
    /// Connections closed at accept by max.connections(.per.ip).
    pub connections_refused: Cell<u64>,
    /// Connections closed after connections.max.idle.ms without a request.
    pub connections_idle_closed: Cell<u64>,
    /// By API key.
    pub apis: RefCell<BTreeMap<i16, ApiMetrics>>,
    /// Where the time of produce requests goes.
    pub produce_stages: ProduceStages,
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

    fn with_api(&self, api_key: ApiKey, update: impl FnOnce(&mut ApiMetrics)) {
        update(self.apis.borrow_mut().entry(api_key as i16).or_default());
    }

    /// A request of `frame_bytes` (size prefix included) has started.
    pub fn count_request(&self, api_key: ApiKey, frame_bytes: u64) {
        self.with_api(api_key, |api| {
            api.requests += 1;
            api.request_bytes += frame_bytes;
        });
    }

    /// A request has been answered: how long it took, and its response.
    pub fn record_response(&self, api_key: ApiKey, latency_us: u64, body: Option<&ResponseKind>) {
        self.with_api(api_key, |api| {
            api.latency.record_us(latency_us);
            if let Some(body) = body {
                visit_error_codes(body, &mut |code| {
                    *api.errors.entry(code).or_default() += 1;
                });
            }
        });
    }

    pub fn add_response_bytes(&self, api_key: ApiKey, bytes: u64) {
        self.with_api(api_key, |api| api.response_bytes += bytes);
    }

    pub fn count_bad_frame(&self) {
        self.bad_frames.set(self.bad_frames.get() + 1);
    }

    pub fn count(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }

    pub fn connection_opened(&self) {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
        self.connections_open.set(self.connections_open.get() + 1);
    }

    pub fn connection_closed(&self) {
        self.connections_open
            .set(self.connections_open.get().saturating_sub(1));
    }
}

/// One partition's offsets, for lag.
#[derive(Clone, Debug)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    /// Consumers read below it; lag is measured from it.
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// One shard's numbers at one moment: what crosses the mesh to the scraper.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub shard: usize,
    pub fetch_sendfile_bytes: u64,
    pub fetch_memory_bytes: u64,
    pub apis: BTreeMap<i16, ApiMetrics>,
    pub bad_frames: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub sasl_authentication_failures: u64,
    pub tls_handshake_failures: u64,
    pub connections_refused: u64,
    pub connections_idle_closed: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub disk_read_bytes: u64,
    pub read_ahead_bytes: u64,
    pub log_bytes: u64,
    pub mesh_sent: u64,
    pub mesh_queue_full: u64,
    pub partitions: Vec<PartitionOffsets>,
    /// Partitions of this shard that failed to open.
    pub partitions_offline: u64,
    /// The groups this shard coordinates.
    pub groups: Vec<GroupMetrics>,
    /// fdatasync calls, and the group-commit rounds' durations.
    pub syncs: u64,
    pub sync_rounds: LatencyHistogram,
    pub produce_stages: StageHistograms,
    /// The shard's fetch sessions (KIP-227).
    pub fetch_sessions: SessionStats,
}

pub fn snapshot(shard: &Shard) -> Snapshot {
    let cache = shard.storage.cache_stats();
    let flush = shard.storage.flush_stats();
    let partitions: Vec<PartitionOffsets> = shard
        .partitions
        .all()
        .iter()
        .map(|partition| PartitionOffsets {
            topic: partition.key.topic.clone(),
            partition: partition.key.partition,
            log_start_offset: partition.log_start_offset(),
            high_watermark: partition.high_watermark(),
            log_end_offset: partition.log_end_offset(),
            size_bytes: partition.log.size_bytes(),
        })
        .collect();
    Snapshot {
        shard: shard.id().0,
        fetch_sendfile_bytes: shard.metrics.fetch_sendfile_bytes.get(),
        fetch_memory_bytes: shard.metrics.fetch_memory_bytes.get(),
        apis: shard.metrics.apis.borrow().clone(),
        bad_frames: shard.metrics.bad_frames.get(),
        connections_accepted: shard.metrics.connections_accepted.get(),
        connections_open: shard.metrics.connections_open.get(),
        sasl_authentication_failures: shard.metrics.sasl_authentication_failures.get(),
        tls_handshake_failures: shard.metrics.tls_handshake_failures.get(),
        connections_refused: shard.metrics.connections_refused.get(),
        connections_idle_closed: shard.metrics.connections_idle_closed.get(),
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        cache_bytes: cache.bytes as u64,
        disk_read_bytes: cache.disk_read_bytes,
        read_ahead_bytes: cache.read_ahead_bytes,
        log_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
        mesh_sent: shard.mesh.stats().sent.get(),
        mesh_queue_full: shard.mesh.stats().queue_full.get(),
        partitions,
        partitions_offline: shard.partitions.offline().len() as u64,
        groups: runtime::existing().map_or_else(Vec::new, |c| c.metrics()),
        syncs: flush.syncs,
        sync_rounds: flush.round_latency,
        produce_stages: shard.metrics.produce_stages.snapshot(),
        fetch_sessions: shard.fetch_sessions.borrow().stats(),
    }
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
        let mut body = render(&snapshots);
        if let Some(controller) = shard.controller() {
            let quorum = controller.quorum();
            let health = crate::cluster::health::health(
                &quorum.image(),
                shard.config.node_id,
                quorum.is_leader(),
            );
            body.push_str(&render_health(&health));
        }
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else if head.starts_with(b"GET /health ") {
        probes::http_response(200, "ok")
    } else if head.starts_with(b"GET /ready ") {
        let (status, body) = probes::ready_response(&shard).await;
        probes::http_response(status, &body)
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

pub mod probes;
mod render;
pub use render::{render, render_health};
#[cfg(test)]
mod tests;
