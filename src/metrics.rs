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
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::cluster::health::Health;
use crate::coordinator::runtime::{self, GroupMetrics};
use crate::fetch_session::SessionStats;
pub use crate::histogram::{LatencyHistogram, LATENCY_BUCKETS_US};
use crate::protocol::response_errors::{error_name, visit_error_codes};

use crate::shard::{self, Shard};
use crate::stages::{ProduceStages, Stage, StageHistograms};

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
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
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
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        cache_bytes: cache.bytes as u64,
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

/// A family's name, type and help text.
type Family<'a> = (&'a str, &'a str, &'a str);

/// Reads one per-shard value from a snapshot.
type ShardValue = fn(&Snapshot) -> u64;

/// Prometheus text, one family at a time.
struct Writer {
    text: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.text, "{name}");
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(text));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// The samples of one histogram: cumulative buckets, sum and count.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        for (index, cumulative) in histogram.cumulative_buckets().into_iter().enumerate() {
            let bound = LATENCY_BUCKETS_US
                .get(index)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let mut with_bound = labels.to_vec();
            with_bound.push(("le", &bound));
            self.sample(&format!("{name}_bucket"), &with_bound, cumulative);
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            histogram.sum().as_secs_f64(),
        );
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    /// The samples of one summary: quantiles, sum and count.
    fn summary(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        for quantile in ["0.5", "0.99", "0.999", "1"] {
            let value = histogram.quantile(quantile.parse().unwrap_or(1.0));
            let mut with_quantile = labels.to_vec();
            with_quantile.push(("quantile", quantile));
            self.sample(name, &with_quantile, value.as_secs_f64());
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            histogram.sum().as_secs_f64(),
        );
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    /// A family with one sample per shard.
    fn per_shard(
        &mut self,
        snapshots: &[Snapshot],
        (name, kind, help): Family,
        value: impl Fn(&Snapshot) -> u64,
    ) {
        self.family(name, kind, help);
        for snapshot in snapshots {
            self.sample(
                name,
                &[("shard", &snapshot.shard.to_string())],
                value(snapshot),
            );
        }
    }

    /// A family with one sample per shard and API.
    fn per_api(
        &mut self,
        snapshots: &[Snapshot],
        (name, help): (&str, &str),
        value: impl Fn(&ApiMetrics) -> u64,
    ) {
        self.family(name, "counter", help);
        for snapshot in snapshots {
            let shard = snapshot.shard.to_string();
            for (key, api) in &snapshot.apis {
                self.sample(
                    name,
                    &[("shard", &shard), ("api", &api_name(*key))],
                    value(api),
                );
            }
        }
    }
}

/// Escapes a label value as the text format asks (`\\`, `\"`, `\n`):
/// group ids are arbitrary client strings.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Renders snapshots in the Prometheus text format (version 0.0.4).
pub fn render(snapshots: &[Snapshot]) -> String {
    let mut out = Writer {
        text: String::new(),
    };
    let shard_families: [(Family, ShardValue); 14] = [
        (
            (
                "sluice_log_syncs_total",
                "counter",
                "fdatasync calls on partition log segments.",
            ),
            |s| s.syncs,
        ),
        (
            (
                "sluice_fetch_sendfile_bytes_total",
                "counter",
                "Record bytes sent to consumers by sendfile.",
            ),
            |s| s.fetch_sendfile_bytes,
        ),
        (
            (
                "sluice_fetch_memory_bytes_total",
                "counter",
                "Record bytes sent to consumers from memory.",
            ),
            |s| s.fetch_memory_bytes,
        ),
        (
            (
                "sluice_bad_frames_total",
                "counter",
                "Connections closed for a malformed, oversized or unknown frame.",
            ),
            |s| s.bad_frames,
        ),
        (
            (
                "sluice_connections_accepted_total",
                "counter",
                "Client connections accepted.",
            ),
            |s| s.connections_accepted,
        ),
        (
            ("sluice_connections", "gauge", "Client connections open."),
            |s| s.connections_open,
        ),
        (
            (
                "sluice_read_cache_hits_total",
                "counter",
                "Read-cache hits.",
            ),
            |s| s.cache_hits,
        ),
        (
            (
                "sluice_read_cache_misses_total",
                "counter",
                "Read-cache misses.",
            ),
            |s| s.cache_misses,
        ),
        (
            (
                "sluice_read_cache_bytes",
                "gauge",
                "Bytes held by the read cache.",
            ),
            |s| s.cache_bytes,
        ),
        (
            (
                "sluice_partitions",
                "gauge",
                "Partitions owned by the shard.",
            ),
            |s| s.partitions.len() as u64,
        ),
        (
            (
                "sluice_partitions_offline",
                "gauge",
                "Partitions of the shard that failed to open (KAFKA_STORAGE_ERROR until restart).",
            ),
            |s| s.partitions_offline,
        ),
        (
            (
                "sluice_log_bytes",
                "gauge",
                "Bytes of the partition logs owned by the shard.",
            ),
            |s| s.log_bytes,
        ),
        (
            (
                "sluice_mesh_sent_total",
                "counter",
                "Jobs sent to other shards.",
            ),
            |s| s.mesh_sent,
        ),
        (
            (
                "sluice_mesh_queue_full_total",
                "counter",
                "Sends that waited on a full cross-shard queue.",
            ),
            |s| s.mesh_queue_full,
        ),
    ];
    for (family, value) in shard_families {
        out.per_shard(snapshots, family, value);
    }
    for (index, family) in SessionStats::FAMILIES.into_iter().enumerate() {
        out.per_shard(snapshots, family, |s| s.fetch_sessions.values()[index]);
    }
    let name = "sluice_read_cache_hit_ratio";
    out.family(
        name,
        "gauge",
        "Read-cache hits over lookups since start (0 before any lookup).",
    );
    for snapshot in snapshots {
        let lookups = snapshot.cache_hits + snapshot.cache_misses;
        let ratio = if lookups == 0 {
            0.0
        } else {
            snapshot.cache_hits as f64 / lookups as f64
        };
        out.sample(name, &[("shard", &snapshot.shard.to_string())], ratio);
    }
    out.per_api(
        snapshots,
        ("sluice_requests_total", "Requests started, by API."),
        |api| api.requests,
    );
    out.per_api(
        snapshots,
        (
            "sluice_request_bytes_total",
            "Request bytes received, by API (size prefix included).",
        ),
        |api| api.request_bytes,
    );
    out.per_api(
        snapshots,
        (
            "sluice_response_bytes_total",
            "Response bytes sent, by API (size prefix and sendfile bytes included).",
        ),
        |api| api.response_bytes,
    );
    render_errors(&mut out, snapshots);
    render_latency(&mut out, snapshots);
    render_partitions(&mut out, snapshots);
    render_groups(&mut out, snapshots);
    out.text
}

fn render_errors(out: &mut Writer, snapshots: &[Snapshot]) {
    let name = "sluice_request_errors_total";
    out.family(
        name,
        "counter",
        "Error codes answered, by API and Kafka error name (one per partition or resource in error).",
    );
    for snapshot in snapshots {
        let shard = snapshot.shard.to_string();
        for (key, api) in &snapshot.apis {
            let api_label = api_name(*key);
            for (code, count) in &api.errors {
                out.sample(
                    name,
                    &[
                        ("shard", &shard),
                        ("api", &api_label),
                        ("error", &error_name(*code)),
                    ],
                    count,
                );
            }
        }
    }
}

fn render_latency(out: &mut Writer, snapshots: &[Snapshot]) {
    let name = "sluice_request_latency_seconds";
    out.family(
        name,
        "histogram",
        "Time from decode to encoded response, by API.",
    );
    for snapshot in snapshots {
        let shard = snapshot.shard.to_string();
        for (key, api) in &snapshot.apis {
            let api_label = api_name(*key);
            out.histogram(
                name,
                &[("shard", &shard), ("api", &api_label)],
                &api.latency,
            );
        }
    }
    let name = "sluice_produce_stage_seconds";
    out.family(
        name,
        "summary",
        "Where produce time goes, by stage, on the shard the request came in on (see src/stages.rs).",
    );
    for snapshot in snapshots {
        let shard = snapshot.shard.to_string();
        for stage in Stage::ALL {
            let histogram = snapshot.produce_stages.get(stage);
            if histogram.count() > 0 {
                out.summary(
                    name,
                    &[("shard", &shard), ("stage", stage.name())],
                    histogram,
                );
            }
        }
    }
    let name = "sluice_log_sync_round_seconds";
    out.family(
        name,
        "histogram",
        "Time of a group-commit round: writing out the due logs' tails and fdatasync of each.",
    );
    for snapshot in snapshots {
        out.histogram(
            name,
            &[("shard", &snapshot.shard.to_string())],
            &snapshot.sync_rounds,
        );
    }
}

fn render_partitions(out: &mut Writer, snapshots: &[Snapshot]) {
    type Field = fn(&PartitionOffsets) -> u64;
    let families: [(&str, &str, Field); 4] = [
        (
            "sluice_partition_high_watermark",
            "The offset below which consumers read (on disk, by default).",
            |p| p.high_watermark.max(0) as u64,
        ),
        (
            "sluice_partition_log_end_offset",
            "The offset the next record appended to the partition gets.",
            |p| p.log_end_offset.max(0) as u64,
        ),
        (
            "sluice_partition_log_start_offset",
            "The first offset still in the partition.",
            |p| p.log_start_offset.max(0) as u64,
        ),
        (
            "sluice_partition_log_bytes",
            "Bytes of the partition's log segments.",
            |p| p.size_bytes,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for snapshot in snapshots {
            for partition in &snapshot.partitions {
                out.sample(
                    name,
                    &[
                        ("topic", &partition.topic),
                        ("partition", &partition.partition.to_string()),
                    ],
                    value(partition),
                );
            }
        }
    }
}

fn render_groups(out: &mut Writer, snapshots: &[Snapshot]) {
    let groups: Vec<&GroupMetrics> = snapshots.iter().flat_map(|s| &s.groups).collect();
    let name = "sluice_consumer_groups";
    out.family(
        name,
        "gauge",
        "Consumer groups this broker coordinates, by state.",
    );
    for state in [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        // KIP-848 consumer groups' own states.
        "Assigning",
        "Reconciling",
    ] {
        let count = groups.iter().filter(|g| g.state == state).count();
        out.sample(name, &[("state", state)], count);
    }
    let name = "sluice_consumer_group_members";
    out.family(name, "gauge", "Members of each consumer group.");
    for group in &groups {
        out.sample(name, &[("group", &group.group_id)], group.members);
    }
    // Lag joins a group's committed offsets (its coordinator shard) with
    // high watermarks (the partitions' owner shards) from the same scrape,
    // as `kafka-consumer-groups.sh` measures it.
    let ends: BTreeMap<(&str, i32), i64> = snapshots
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    type GroupValue<'a> = Box<dyn Fn(&str, i32, i64) -> Option<i64> + 'a>;
    let families: [(&str, &str, GroupValue); 2] = [
        (
            "sluice_consumer_group_committed_offset",
            "The offset a consumer group committed, per partition.",
            Box::new(|_, _, offset| Some(offset)),
        ),
        (
            "sluice_consumer_group_lag",
            "High watermark minus committed offset, per group and partition (partitions this broker has).",
            Box::new(|topic, partition, offset| {
                ends.get(&(topic, partition)).map(|end| (end - offset).max(0))
            }),
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for group in &groups {
            for (topic, partition, offset) in &group.offsets {
                let Some(value) = value(topic, *partition, *offset) else {
                    continue;
                };
                out.sample(
                    name,
                    &[
                        ("group", &group.group_id),
                        ("topic", topic),
                        ("partition", &partition.to_string()),
                    ],
                    value,
                );
            }
        }
    }
}

/// The cluster gauges of this node (shard 0's image): every node reports
/// its own; only the active controller reports the cluster-wide counts.
pub fn render_health(health: &Health) -> String {
    let mut out = Writer {
        text: String::new(),
    };
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    };
    gauge(
        "sluice_active_controller",
        "1 on the node that is the active controller, else 0.",
        u64::from(health.active_controller),
    );
    gauge(
        "sluice_fenced_brokers",
        "Registered brokers that are fenced, in this node's metadata image.",
        health.fenced_brokers,
    );
    gauge(
        "sluice_offline_partitions",
        "Partitions with a replica on this node and no leader.",
        health.offline_partitions,
    );
    gauge(
        "sluice_under_replicated_partitions",
        "Partitions this node leads whose ISR is smaller than their replica set.",
        health.under_replicated_partitions,
    );
    if let Some((offline, under_replicated)) = health.cluster {
        gauge(
            "sluice_cluster_offline_partitions",
            "Partitions with no leader, cluster-wide (active controller only).",
            offline,
        );
        gauge(
            "sluice_cluster_under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set, cluster-wide (active controller only).",
            under_replicated,
        );
    }
    out.text
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
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests;
